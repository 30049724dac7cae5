//! The checks on values that each parse on their own but are wrong, alone or together, and the
//! one production switch.

use super::{Config, Isolation, ModeSetting};
use crate::keys::Env;

/// The environment variable that also selects the mode (`production` or `dev`).
pub(crate) const ENV_MODE: &str = "HUBWORKER_ENV";

impl Config {
    /// The mode in force: `worker.mode` and `HUBWORKER_ENV` are one switch. Either may set it;
    /// when both are set they must agree (else a problem, and production rules apply, so a
    /// conflict never loosens anything). Neither: dev.
    pub(super) fn resolve_mode(&mut self, env: &dyn Env, problems: &mut Vec<String>) {
        let mut unknown = false;
        let from_env = match env.var(ENV_MODE).as_deref().map(str::trim) {
            None | Some("") => None,
            Some("production" | "prod") => Some(ModeSetting::Production),
            Some("dev" | "development") => Some(ModeSetting::Dev),
            Some(other) => {
                problems.push(format!(
                    "{ENV_MODE}: \"production\" or \"dev\", not {other:?}"
                ));
                unknown = true;
                None
            }
        };
        self.worker.mode = match (self.worker.mode_setting, from_env) {
            (Some(file), Some(env)) if file != env => {
                problems.push(format!(
                    "worker.mode: \"{}\" in the file but {ENV_MODE}={} in the environment; \
                     production is one switch: set it in one place, or the same in both",
                    file.as_str(),
                    env.as_str()
                ));
                ModeSetting::Production
            }
            _ if unknown => ModeSetting::Production,
            (Some(mode), _) | (None, Some(mode)) => mode,
            (None, None) => ModeSetting::Dev,
        };
    }

    /// `[worker]`.
    pub(super) fn worker_problems(&self, problems: &mut Vec<String>) {
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
    pub(super) fn hub_problems(&self, problems: &mut Vec<String>) {
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
    pub(super) fn limits_problems(&self, problems: &mut Vec<String>) {
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
    pub(super) fn sandbox_problems(&self, problems: &mut Vec<String>) {
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
        if sb.uid == 0 {
            problems.push("sandbox.uid: must not be 0 (run children never keep root)".to_owned());
        }
        for name in &sb.require {
            if !crate::sandbox::isolate::ALL.contains(&name.as_str()) {
                problems.push(format!(
                    "sandbox.require: unknown confinement {name:?} (known: {})",
                    crate::sandbox::isolate::ALL.join(", ")
                ));
            }
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
    pub(super) fn tls_problems(&self, problems: &mut Vec<String>) {
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
}
