//! The worker's configuration: a TOML file, every key documented, unknown keys refused, every
//! problem reported at once, then read-only. Secrets are never in the file itself: it names
//! a directory of secret files (or systemd's `$CREDENTIALS_DIRECTORY` supplies them).
//!
//! * [`sections`]: the keys and their defaults; [`sandbox`]: `[sandbox]`;
//! * [`schema`]: text to sections, unknown keys and refused values all at once;
//! * [`checks`]: values wrong alone or together, and the one production switch;
//! * [`preflight`]: what `serve` and `validate-config` both check and warn about beyond the
//!   file (the secrets, the cgroup's memory).

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

pub(crate) mod ai;
mod audit;
mod cgroup;
mod checks;
pub(crate) mod preflight;
mod sandbox;
mod schema;
mod sections;
#[cfg(test)]
mod tests;
pub(crate) mod validate;

pub(crate) use ai::AiSection;
pub(crate) use audit::AuditSection;
pub(crate) use checks::ENV_MODE;
pub(crate) use sandbox::{Isolation, SandboxSection};
pub(crate) use sections::{
    CacheSection, HubSection, LimitsSection, MetricsSection, ModeSetting, SecretsSection,
    TlsSection, TokensSection, WorkerSection,
};

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Config {
    /// This worker.
    pub worker: WorkerSection,
    /// The Hub it serves.
    pub hub: HubSection,
    /// Where the worker's secrets are.
    #[serde(default)]
    pub secrets: SecretsSection,
    /// Token policy.
    #[serde(default)]
    pub tokens: TokensSection,
    /// Limits per run and per message.
    #[serde(default)]
    pub limits: LimitsSection,
    /// The query-result cache.
    #[serde(default)]
    pub cache: CacheSection,
    /// TLS for the `Worker` service (required in production).
    #[serde(default)]
    pub tls: Option<TlsSection>,
    /// How runs are isolated.
    #[serde(default)]
    pub sandbox: SandboxSection,
    /// The Prometheus endpoint.
    #[serde(default)]
    pub metrics: MetricsSection,
    /// The AI proxy: providers, and the caps on outbound requests.
    #[serde(default)]
    pub ai: AiSection,
    /// The audit trail's spool.
    #[serde(default)]
    pub audit: AuditSection,
}

/// Every problem with a config file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub(crate) struct ConfigProblems(pub Vec<String>);

impl Config {
    /// Parses and checks a config text; every problem at once. `env` supplies
    /// `HUBWORKER_ENV`, the other half of the production switch.
    pub(crate) fn parse(text: &str, env: &dyn crate::keys::Env) -> Result<Config, ConfigProblems> {
        match Config::parse_report(text, env) {
            (Some(config), problems) if problems.is_empty() => Ok(config),
            (_, problems) => Err(ConfigProblems(problems)),
        }
    }

    /// Every problem of a config text, and the config as far as it could be read (with
    /// placeholders for refused values when there are problems: only for further checks,
    /// such as the secrets `[secrets] dir` names; never to run with).
    pub(crate) fn parse_report(
        text: &str,
        env: &dyn crate::keys::Env,
    ) -> (Option<Config>, Vec<String>) {
        let (mut config, mut problems) = match schema::read(text) {
            Ok(read) => read,
            Err(problems) => return (None, problems),
        };
        config.resolve_mode(env, &mut problems);
        let mut checked = Vec::new();
        config.worker_problems(&mut checked);
        config.hub_problems(&mut checked);
        config.limits_problems(&mut checked);
        config.sandbox_problems(&mut checked);
        config.tls_problems(&mut checked);
        let production = config.worker.mode == ModeSetting::Production;
        config.ai.problems(production, &mut checked);
        config.audit.problems(production, &mut checked);
        // A key already reported (its value refused or missing) stood in as a placeholder:
        // nothing more is said about it.
        let key = |p: &str| p.split(':').next().unwrap_or_default().to_owned();
        let reported: Vec<String> = problems.iter().map(|p| key(p)).collect();
        checked.retain(|p| !reported.contains(&key(p)));
        problems.extend(checked);
        (Some(config), problems)
    }

    /// Reads and checks a config file.
    pub(crate) fn load(path: &Path, env: &dyn crate::keys::Env) -> Result<Config, ConfigProblems> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigProblems(vec![format!("{}: {e}", path.display())]))?;
        Config::parse(&text, env)
    }

    /// Reads a config file for slot `instance` of a fleet (systemd `hubworker@N`): the worker
    /// id gets `@N`, and the listen, advertised and metrics ports move up by N, so one file
    /// serves every slot of a host.
    pub(crate) fn load_instance(
        path: &Path,
        instance: Option<u32>,
    ) -> Result<Config, ConfigProblems> {
        Config::load_instance_in(path, instance, &crate::keys::ProcessEnv)
    }

    /// [`load_instance`](Self::load_instance) with `HUBWORKER_ENV` read from `env`.
    pub(crate) fn load_instance_in(
        path: &Path,
        instance: Option<u32>,
        env: &dyn crate::keys::Env,
    ) -> Result<Config, ConfigProblems> {
        let config = Config::load(path, env)?;
        match instance {
            None => Ok(config),
            Some(n) => config.for_instance(n),
        }
    }

    /// This config for slot `n` (see [`load_instance`](Self::load_instance)).
    pub(crate) fn for_instance(mut self, n: u32) -> Result<Config, ConfigProblems> {
        let shift = |port: u16, what: &str| {
            if port == 0 {
                return Ok(0);
            }
            u16::try_from(u32::from(port) + n).map_err(|_| {
                ConfigProblems(vec![format!(
                    "{what}: port {port} + instance {n} is past 65535"
                )])
            })
        };
        if n == 0 || n > 10_000 {
            return Err(ConfigProblems(vec![format!(
                "--instance: 1 to 10000, not {n}"
            )]));
        }
        self.worker.id = format!("{}@{n}", self.worker.id);
        if self.worker.id.len() > 128 {
            return Err(ConfigProblems(vec![
                "worker.id: too long with the instance suffix".into(),
            ]));
        }
        let port = shift(self.worker.listen.port(), "worker.listen")?;
        self.worker.listen.set_port(port);
        if let Some(advertise) = &self.worker.advertise
            && let Some((head, port)) = advertise.rsplit_once(':')
            && let Ok(p) = port.trim_end_matches('/').parse::<u16>()
        {
            self.worker.advertise = Some(format!("{head}:{}", shift(p, "worker.advertise")?));
        }
        let port = shift(self.metrics.listen.port(), "metrics.listen")?;
        self.metrics.listen.set_port(port);
        // Each slot chains and spools its own records.
        if let Some(dir) = &self.audit.dir {
            self.audit.dir = Some(dir.join(n.to_string()));
        }
        Ok(self)
    }

    /// The token audiences this worker accepts: `tokens.audiences`, else its pool
    /// (`worker.audience`) and its own id (`worker.id`, instance suffix included).
    pub(crate) fn token_audiences(&self) -> Vec<String> {
        match &self.tokens.audiences {
            Some(list) => list.clone(),
            None if self.worker.id == self.worker.audience => vec![self.worker.audience.clone()],
            None => vec![self.worker.audience.clone(), self.worker.id.clone()],
        }
    }

    /// The run time limit.
    pub(crate) fn run_timeout(&self) -> Duration {
        Duration::from_secs(self.limits.run_timeout_secs)
    }

    /// How long a run waits for its client to take an event.
    pub(crate) fn send_timeout(&self) -> Duration {
        Duration::from_secs(self.limits.send_timeout_secs)
    }

    /// The cache TTL for `connection`.
    pub(crate) fn cache_ttl(&self, connection: &str) -> Duration {
        Duration::from_secs(
            self.cache
                .connection_ttl_secs
                .get(connection)
                .copied()
                .unwrap_or(self.cache.ttl_secs),
        )
    }
}
