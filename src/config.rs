//! The worker's configuration: a TOML file, every key documented, unknown keys refused, every
//! problem reported at once, then read-only. Secrets are never in the file itself: it names
//! a directory of secret files (or systemd's `$CREDENTIALS_DIRECTORY` supplies them).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod sandbox;
pub(crate) use sandbox::{Isolation, SandboxSection};

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
}

/// `[tls]`: rustls for the gRPC server; with `client_ca_file`, mutual TLS (the Hub must
/// present a certificate signed by that CA).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsSection {
    /// Server certificate chain, PEM.
    pub cert_file: PathBuf,
    /// Server private key, PEM (a secret: keep it 0600).
    pub key_file: PathBuf,
    /// CA that client certificates must chain to (mutual TLS).
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

/// `[worker]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WorkerSection {
    /// Worker id (1-128 of `A-Z a-z 0-9 . _ - @ :`).
    pub id: String,
    /// Address the gRPC server binds (`127.0.0.1:7200`; port 0 picks one).
    pub listen: SocketAddr,
    /// Address the Hub should call (default: `http://` + the bound address).
    #[serde(default)]
    pub advertise: Option<String>,
    /// The token audience this worker accepts (its pool or its id).
    pub audience: String,
    /// Runs at once; more are refused with RESOURCE_EXHAUSTED.
    #[serde(default = "default_capacity")]
    pub capacity: u32,
    /// `dev` or `production` (production also follows `HUBWORKER_ENV=production`).
    #[serde(default)]
    pub mode: ModeSetting,
    /// On SIGTERM, how long runs in flight may take to finish before they are cancelled,
    /// seconds (keep the unit's `TimeoutStopSec=` above it).
    #[serde(default = "default_drain_grace")]
    pub drain_grace_secs: u64,
    /// `Validate` calls running at once, on blocking threads; more wait up to 2 s for a turn,
    /// then get RESOURCE_EXHAUSTED (`validation_busy`).
    #[serde(default = "default_validate_concurrency")]
    pub validate_concurrency: usize,
}

/// 2 runs x `sandbox.memory_bytes` 4 GiB = 8 GiB: within the unit's `MemoryMax=9G`, which
/// leaves 1 GiB for the daemon itself (its cache is 256 MiB by default).
fn default_capacity() -> u32 {
    2
}
fn default_validate_concurrency() -> usize {
    4
}
fn default_drain_grace() -> u64 {
    60
}

/// `[metrics]`: the Prometheus endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MetricsSection {
    /// Serve `GET /metrics` (default true).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Where (default `127.0.0.1:9464`: loopback; a `--instance N` adds N to the port).
    #[serde(default = "default_metrics_listen")]
    pub listen: SocketAddr,
}

fn default_true() -> bool {
    true
}
fn default_metrics_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9464))
}

impl Default for MetricsSection {
    fn default() -> Self {
        MetricsSection {
            enabled: true,
            listen: default_metrics_listen(),
        }
    }
}

/// `mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ModeSetting {
    /// Development.
    #[default]
    Dev,
    /// Production: strong secrets required.
    Production,
}

/// `[hub]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HubSection {
    /// The Hub's gRPC address (`http://127.0.0.1:7100`).
    pub url: String,
    /// The Hub's id: the tokens' `iss`.
    pub issuer: String,
    /// CA certificate (PEM) to verify an `https://` Hub with.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS with the Hub.
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    /// Its private key (PEM).
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
    /// While the Hub cannot be reached at start, the first wait between registration
    /// attempts, milliseconds; it doubles per attempt (full jitter) up to
    /// `register_backoff_max_ms`. Lower both only in tests.
    #[serde(default = "default_backoff_initial_ms")]
    pub register_backoff_initial_ms: u64,
    /// The longest wait between registration attempts, milliseconds.
    #[serde(default = "default_backoff_max_ms")]
    pub register_backoff_max_ms: u64,
}

fn default_backoff_initial_ms() -> u64 {
    500
}
fn default_backoff_max_ms() -> u64 {
    30_000
}

/// `[secrets]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SecretsSection {
    /// Directory with `transport.key`, `registration.secret` and optionally
    /// `token-keys.jwks` (else `$CREDENTIALS_DIRECTORY`).
    #[serde(default)]
    pub dir: Option<PathBuf>,
}

/// `[tokens]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokensSection {
    /// Longest token lifetime accepted, seconds.
    #[serde(default = "default_lifetime")]
    pub max_lifetime_secs: u64,
    /// Roles that may run workflows (default `["user"]`; `admin` and `auditor` never may, and
    /// listing them is a config problem).
    #[serde(default = "default_roles")]
    pub run_roles: Vec<String>,
    /// Token audiences this worker accepts: a token's `aud` must name one of them. Default:
    /// `worker.audience` (its pool) and `worker.id` (itself, with the `@N` of an instance).
    /// See [`Config::token_audiences`].
    #[serde(default)]
    pub audiences: Option<Vec<String>>,
    /// How long a sealed credential stays openable, seconds.
    #[serde(default = "default_open_ttl")]
    pub credential_ttl_secs: u64,
}

fn default_lifetime() -> u64 {
    300
}
fn default_roles() -> Vec<String> {
    crate::token::DEFAULT_RUN_ROLES
        .iter()
        .map(|r| (*r).to_owned())
        .collect()
}
fn default_open_ttl() -> u64 {
    60
}

impl Default for TokensSection {
    fn default() -> Self {
        TokensSection {
            max_lifetime_secs: default_lifetime(),
            run_roles: default_roles(),
            audiences: None,
            credential_ttl_secs: default_open_ttl(),
        }
    }
}

/// `[limits]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitsSection {
    /// Longest run, seconds (a shorter gRPC deadline wins).
    #[serde(default = "default_run_timeout")]
    pub run_timeout_secs: u64,
    /// Longest single query, seconds.
    #[serde(default = "default_query_timeout")]
    pub query_timeout_secs: u64,
    /// Most rows one query may return.
    #[serde(default = "default_max_rows")]
    pub max_rows_per_query: usize,
    /// Largest gRPC message, bytes (requests and responses).
    #[serde(default = "default_message_bytes")]
    pub max_message_bytes: usize,
    /// Size of the Arrow IPC chunks results are streamed in, bytes.
    #[serde(default = "default_chunk_bytes")]
    pub result_chunk_bytes: usize,
    /// How long a run waits for its client to take the next event, seconds; a client that
    /// reads nothing for that long loses its run (`client_stalled`).
    #[serde(default = "default_send_timeout")]
    pub send_timeout_secs: u64,
    /// `Validate` calls one token may make (it is not consumed by them).
    #[serde(default = "default_validations_per_token")]
    pub validations_per_token: u32,
}

impl LimitsSection {
    /// Bytes of a run's results that may wait for its client at each of the two hand-offs
    /// (run → forwarder, forwarder → gRPC stream): two chunks, plus room for small events.
    pub(crate) fn event_budget(&self) -> usize {
        self.result_chunk_bytes
            .saturating_mul(2)
            .saturating_add(64 << 10)
    }
}

fn default_run_timeout() -> u64 {
    300
}
fn default_query_timeout() -> u64 {
    60
}
fn default_max_rows() -> usize {
    1_000_000
}
fn default_message_bytes() -> usize {
    4 << 20
}
fn default_chunk_bytes() -> usize {
    1 << 20
}
fn default_send_timeout() -> u64 {
    30
}
fn default_validations_per_token() -> u32 {
    5
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            run_timeout_secs: default_run_timeout(),
            query_timeout_secs: default_query_timeout(),
            max_rows_per_query: default_max_rows(),
            max_message_bytes: default_message_bytes(),
            result_chunk_bytes: default_chunk_bytes(),
            send_timeout_secs: default_send_timeout(),
            validations_per_token: default_validations_per_token(),
        }
    }
}

/// `[cache]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CacheSection {
    /// Default time to live of a cached query result, seconds.
    #[serde(default = "default_cache_ttl")]
    pub ttl_secs: u64,
    /// Per-connection TTL overrides, seconds (`0` disables caching for that connection).
    #[serde(default)]
    pub connection_ttl_secs: BTreeMap<String, u64>,
    /// Memory budget for all cached results, bytes.
    #[serde(default = "default_cache_bytes")]
    pub max_bytes: u64,
}

fn default_cache_ttl() -> u64 {
    300
}
fn default_cache_bytes() -> u64 {
    256 << 20
}

impl Default for CacheSection {
    fn default() -> Self {
        CacheSection {
            ttl_secs: default_cache_ttl(),
            connection_ttl_secs: BTreeMap::new(),
            max_bytes: default_cache_bytes(),
        }
    }
}

/// Every problem with a config file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub(crate) struct ConfigProblems(pub Vec<String>);

impl Config {
    /// Parses and checks a config text; every problem at once.
    pub(crate) fn parse(text: &str) -> Result<Config, ConfigProblems> {
        let config: Config = toml::from_str(text)
            .map_err(|e| ConfigProblems(vec![e.to_string().trim().to_owned()]))?;
        let mut problems = Vec::new();
        config.worker_problems(&mut problems);
        config.hub_problems(&mut problems);
        config.limits_problems(&mut problems);
        config.sandbox_problems(&mut problems);
        config.tls_problems(&mut problems);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigProblems(problems))
        }
    }

    /// `[worker]`.
    fn worker_problems(&self, problems: &mut Vec<String>) {
        let w = &self.worker;
        if w.id.is_empty()
            || w.id.len() > 128
            || !w
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@' | b':'))
        {
            problems.push("worker.id: 1-128 of A-Z a-z 0-9 . _ - @ :".to_owned());
        }
        if w.audience.is_empty() {
            problems.push("worker.audience: must not be empty".to_owned());
        }
        if w.capacity == 0 || w.capacity > 10_000 {
            problems.push("worker.capacity: 1 to 10000".to_owned());
        }
        if w.validate_concurrency == 0 || w.validate_concurrency > 1_024 {
            problems.push("worker.validate_concurrency: 1 to 1024".to_owned());
        }
    }

    /// `[hub]` and `[tokens]`.
    fn hub_problems(&self, problems: &mut Vec<String>) {
        if !(self.hub.url.starts_with("http://") || self.hub.url.starts_with("https://")) {
            problems.push("hub.url: an http:// or https:// address".to_owned());
        }
        if self.hub.client_cert_file.is_some() != self.hub.client_key_file.is_some() {
            problems.push("hub.client_cert_file and hub.client_key_file go together".to_owned());
        }
        if self.hub.url.starts_with("https://") && self.hub.ca_file.is_none() {
            problems.push("hub.ca_file: required for an https:// hub".to_owned());
        }
        if self.worker.mode == ModeSetting::Production && !self.hub.url.starts_with("https://") {
            problems.push("hub.url: production talks to the hub over https://".to_owned());
        }
        if self.hub.issuer.is_empty() {
            problems.push("hub.issuer: must not be empty".to_owned());
        }
        let (initial, max) = (
            self.hub.register_backoff_initial_ms,
            self.hub.register_backoff_max_ms,
        );
        if initial == 0 || max < initial || max > 3_600_000 {
            problems.push(
                "hub.register_backoff_initial_ms / register_backoff_max_ms: 1 <= initial <= max <= 3600000"
                    .to_owned(),
            );
        }
        let t = &self.tokens;
        if t.max_lifetime_secs == 0 || t.max_lifetime_secs > 3_600 {
            problems.push("tokens.max_lifetime_secs: 1 to 3600".to_owned());
        }
        problems.extend(crate::token::policy_problems(
            &t.run_roles,
            t.audiences.as_deref(),
            &self.worker.audience,
        ));
        if t.credential_ttl_secs == 0 || t.credential_ttl_secs > 600 {
            problems.push("tokens.credential_ttl_secs: 1 to 600".to_owned());
        }
    }

    /// `[limits]`.
    fn limits_problems(&self, problems: &mut Vec<String>) {
        let l = &self.limits;
        if l.run_timeout_secs == 0 {
            problems.push("limits.run_timeout_secs: at least 1".to_owned());
        }
        if l.query_timeout_secs == 0 {
            problems.push("limits.query_timeout_secs: at least 1".to_owned());
        }
        if l.max_message_bytes < 64 * 1024 {
            problems.push("limits.max_message_bytes: at least 65536".to_owned());
        }
        if l.result_chunk_bytes == 0 || l.result_chunk_bytes > l.max_message_bytes / 2 {
            problems.push("limits.result_chunk_bytes: 1 to half of max_message_bytes".to_owned());
        }
        if l.send_timeout_secs == 0 || l.send_timeout_secs > 3_600 {
            problems.push("limits.send_timeout_secs: 1 to 3600".to_owned());
        }
        if l.validations_per_token == 0 || l.validations_per_token > 1_000 {
            problems.push("limits.validations_per_token: 1 to 1000".to_owned());
        }
    }

    /// `[sandbox]`.
    fn sandbox_problems(&self, problems: &mut Vec<String>) {
        let sb = &self.sandbox;
        if self.worker.mode == ModeSetting::Production && sb.isolation != Isolation::Process {
            problems.push(
            "sandbox.isolation: production runs every workflow in a sandboxed process (\"process\")"
                .to_owned(),
        );
        }
        if sb.memory_bytes < 64 << 20 {
            problems.push("sandbox.memory_bytes: at least 67108864 (64 MiB)".to_owned());
        }
        if sb.cpu_secs == 0 {
            problems.push("sandbox.cpu_secs: at least 1".to_owned());
        }
        if !(16..=65_536).contains(&sb.open_files) {
            problems.push("sandbox.open_files: 16 to 65536".to_owned());
        }
        if sb.pool > 64 {
            problems.push("sandbox.pool: 0 to 64".to_owned());
        }
        if sb.max_output_bytes == 0 {
            problems.push("sandbox.max_output_bytes: at least 1".to_owned());
        }
        if let Some(p) = &sb.program
            && !p.is_file()
        {
            problems.push(format!("sandbox.program: {} is not a file", p.display()));
        }
    }

    /// `[tls]` (mutual TLS in production).
    fn tls_problems(&self, problems: &mut Vec<String>) {
        match (&self.tls, self.worker.mode) {
            (None, ModeSetting::Production) => {
                problems.push(
                    "tls: required in production mode (cert_file, key_file, client_ca_file)"
                        .to_owned(),
                );
            }
            (Some(tls), mode) => {
                if mode == ModeSetting::Production && tls.client_ca_file.is_none() {
                    problems.push(
                    "tls.client_ca_file: required in production mode (mutual TLS: only clients with a certificate from this CA, i.e. the Hub, may call the worker)"
                        .to_owned(),
                );
                }
                for (key, path) in [
                    ("tls.cert_file", Some(&tls.cert_file)),
                    ("tls.key_file", Some(&tls.key_file)),
                    ("tls.client_ca_file", tls.client_ca_file.as_ref()),
                ] {
                    if let Some(path) = path
                        && !path.is_file()
                    {
                        problems.push(format!("{key}: {} is not a readable file", path.display()));
                    }
                }
            }
            (None, ModeSetting::Dev) => {}
        }
    }

    /// Reads and checks a config file.
    pub(crate) fn load(path: &Path) -> Result<Config, ConfigProblems> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigProblems(vec![format!("{}: {e}", path.display())]))?;
        Config::parse(&text)
    }

    /// Reads a config file for slot `instance` of a fleet (systemd `hubworker@N`): the worker
    /// id gets `@N`, and the listen, advertised and metrics ports move up by N, so one file
    /// serves every slot of a host.
    pub(crate) fn load_instance(
        path: &Path,
        instance: Option<u32>,
    ) -> Result<Config, ConfigProblems> {
        let config = Config::load(path)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[worker]
id = "w1"
listen = "127.0.0.1:0"
audience = "pool-a"

[hub]
url = "http://127.0.0.1:7100"
issuer = "hub"
"#;

    #[test]
    fn minimal_config_gets_documented_defaults() {
        let c = Config::parse(MINIMAL).unwrap();
        assert_eq!(c.worker.capacity, 2);
        assert_eq!(c.tokens.max_lifetime_secs, 300);
        assert_eq!(c.cache.ttl_secs, 300);
        assert_eq!(c.cache_ttl("shop"), Duration::from_secs(300));
        assert_eq!(c.limits.result_chunk_bytes, 1 << 20);
    }

    #[test]
    fn unknown_keys_and_all_problems_are_reported() {
        let e = Config::parse(&format!("{MINIMAL}\n[cache]\nttl = 5\n")).unwrap_err();
        assert!(e.0[0].contains("unknown field `ttl`"), "{e}");
        let bad = MINIMAL
            .replace("id = \"w1\"", "id = \"has space\"\ncapacity = 0")
            .replace("http://127", "ftp://127")
            + "\n[tokens]\nrun_roles = [\"admin\"]\nmax_lifetime_secs = 0\n";
        let e = Config::parse(&bad).unwrap_err();
        assert_eq!(e.0.len(), 5, "{e}");
        assert!(e.0.iter().any(|p| p.starts_with("worker.id")));
        assert!(e.0.iter().any(|p| p.starts_with("worker.capacity")));
        assert!(e.0.iter().any(|p| p.starts_with("hub.url")));
        assert!(e.0.iter().any(|p| p.contains("\"admin\" may never run")));
        assert!(
            e.0.iter()
                .any(|p| p.starts_with("tokens.max_lifetime_secs"))
        );
    }

    #[test]
    fn token_audiences_default_to_pool_and_id_and_roles_to_user() {
        let c = Config::parse(MINIMAL).unwrap();
        assert_eq!(c.token_audiences(), ["pool-a", "w1"]);
        assert_eq!(c.tokens.run_roles, ["user"]);
        // An instance accepts its own id, suffix included.
        assert_eq!(
            c.clone().for_instance(2).unwrap().token_audiences(),
            ["pool-a", "w1@2"]
        );
        let set = Config::parse(&format!(
            "{MINIMAL}\n[tokens]\naudiences = [\"pool-a\", \"pool-b\"]\nrun_roles = [\"user\", \"reporter\"]\n"
        ))
        .unwrap();
        assert_eq!(set.token_audiences(), ["pool-a", "pool-b"]);
        assert_eq!(set.tokens.run_roles, ["user", "reporter"]);
        let bad = Config::parse(&format!(
            "{MINIMAL}\n[tokens]\naudiences = [\"pool-b\", \"pool-b\", \"\", \"a b\"]\nrun_roles = [\"auditor\", \"\"]\n"
        ))
        .unwrap_err();
        assert_eq!(
            bad.0,
            [
                "tokens.run_roles: \"auditor\" may never run workflows",
                "tokens.run_roles: each role is 1 to 64 bytes",
                "tokens.audiences: \"pool-b\" is listed twice",
                "tokens.audiences: \"\" is not 1 to 128 printable characters without spaces",
                "tokens.audiences: \"a b\" is not 1 to 128 printable characters without spaces",
                "tokens.audiences: must include worker.audience (\"pool-a\"), the audience the worker registers with",
            ],
            "{bad}"
        );
        let empty = Config::parse(&format!(
            "{MINIMAL}\n[tokens]\naudiences = []\nrun_roles = []\n"
        ))
        .unwrap_err();
        assert_eq!(
            empty.0,
            [
                "tokens.run_roles: at least one role",
                "tokens.audiences: at least one audience"
            ]
        );
    }

    #[test]
    fn process_isolation_is_the_default_and_required_in_production() {
        let c = Config::parse(MINIMAL).unwrap();
        assert_eq!(c.sandbox.isolation, Isolation::Process);
        assert_eq!(c.sandbox.settings().limits.memory_bytes, 4 << 30);
        let inline = format!("{MINIMAL}\n[sandbox]\nisolation = \"inline\"\n");
        assert_eq!(
            Config::parse(&inline).unwrap().sandbox.isolation,
            Isolation::Inline
        );
        let production = inline.replace(
            "audience = \"pool-a\"",
            "audience = \"pool-a\"\nmode = \"production\"",
        );
        let e = Config::parse(&production).unwrap_err();
        assert!(
            e.0.iter()
                .any(|p| p.starts_with("sandbox.isolation: production")),
            "{e}"
        );
        let e = Config::parse(&format!(
            "{MINIMAL}\n[sandbox]\nmemory_bytes = 1000\nopen_files = 3\ncpu_secs = 0\n"
        ))
        .unwrap_err();
        assert_eq!(e.0.len(), 3, "{e}");
    }

    #[test]
    fn production_requires_mutual_tls() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["server.pem", "server.key", "ca.pem", "hub-ca.pem"] {
            std::fs::write(dir.path().join(f), "x").unwrap();
        }
        let file = |f: &str| format!("{:?}", dir.path().join(f).display().to_string());
        let production = MINIMAL
            .replace(
                "audience = \"pool-a\"",
                "audience = \"pool-a\"\nmode = \"production\"",
            )
            .replace(
                "url = \"http://127.0.0.1:7100\"",
                &format!(
                    "url = \"https://hub:7100\"\nca_file = {}",
                    file("hub-ca.pem")
                ),
            );
        let server_only = format!(
            "{production}\n[tls]\ncert_file = {}\nkey_file = {}\n",
            file("server.pem"),
            file("server.key")
        );
        let e = Config::parse(&server_only).unwrap_err();
        assert_eq!(e.0.len(), 1, "{e}");
        assert!(
            e.0[0].starts_with("tls.client_ca_file: required in production mode"),
            "{e}"
        );
        let mutual = format!("{server_only}client_ca_file = {}\n", file("ca.pem"));
        assert!(Config::parse(&mutual).is_ok());
        // In dev, TLS without a client CA (server authentication only) stays allowed.
        let dev = server_only.replace("mode = \"production\"", "mode = \"dev\"");
        assert!(Config::parse(&dev).is_ok());
    }

    #[test]
    fn send_and_validation_limits_have_defaults_and_bounds() {
        let c = Config::parse(MINIMAL).unwrap();
        assert_eq!(c.send_timeout(), Duration::from_secs(30));
        assert_eq!(c.limits.validations_per_token, 5);
        assert_eq!(c.worker.validate_concurrency, 4);
        assert_eq!(c.limits.event_budget(), (2 << 20) + (64 << 10));
        let e = Config::parse(
            &(MINIMAL.replace(
                "audience = \"pool-a\"",
                "audience = \"pool-a\"\nvalidate_concurrency = 0",
            ) + "\n[limits]\nsend_timeout_secs = 0\nvalidations_per_token = 0\n"),
        )
        .unwrap_err();
        assert_eq!(e.0.len(), 3, "{e}");
        assert!(
            e.0.iter()
                .any(|p| p.starts_with("limits.send_timeout_secs"))
        );
        assert!(
            e.0.iter()
                .any(|p| p.starts_with("limits.validations_per_token"))
        );
        assert!(
            e.0.iter()
                .any(|p| p.starts_with("worker.validate_concurrency"))
        );
    }

    #[test]
    fn an_instance_gets_its_own_id_and_ports() {
        let text = MINIMAL.replace("127.0.0.1:0", "127.0.0.1:7200").replace(
            "audience = \"pool-a\"",
            "audience = \"pool-a\"\nadvertise = \"https://10.0.0.5:7200\"",
        );
        let c = Config::parse(&text).unwrap();
        let three = c.clone().for_instance(3).unwrap();
        assert_eq!(three.worker.id, "w1@3");
        assert_eq!(three.worker.listen.port(), 7203);
        assert_eq!(
            three.worker.advertise.as_deref(),
            Some("https://10.0.0.5:7203")
        );
        assert_eq!(three.metrics.listen.port(), 9467);
        assert!(c.clone().for_instance(0).is_err());
        let mut high = c;
        high.worker.listen.set_port(65_535);
        assert!(high.for_instance(1).is_err());
    }
}
