//! The worker's configuration: a TOML file, every key documented, unknown keys refused, every
//! problem reported at once, then read-only. Secrets are never in the file itself: it names
//! a directory of secret files (or systemd's `$CREDENTIALS_DIRECTORY` supplies them).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
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
}

/// `[tls]`: rustls for the gRPC server; with `client_ca_file`, mutual TLS (the Hub must
/// present a certificate signed by that CA).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
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
pub struct WorkerSection {
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
}

fn default_capacity() -> u32 {
    8
}

/// `mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModeSetting {
    /// Development.
    #[default]
    Dev,
    /// Production: strong secrets required.
    Production,
}

/// `[hub]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubSection {
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
}

/// `[secrets]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsSection {
    /// Directory with `transport.key`, `registration.secret` and optionally
    /// `token-keys.jwks` (else `$CREDENTIALS_DIRECTORY`).
    #[serde(default)]
    pub dir: Option<PathBuf>,
}

/// `[tokens]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokensSection {
    /// Longest token lifetime accepted, seconds.
    #[serde(default = "default_lifetime")]
    pub max_lifetime_secs: u64,
    /// Roles that may run workflows (`admin` and `auditor` never may).
    #[serde(default = "default_roles")]
    pub run_roles: Vec<String>,
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
            credential_ttl_secs: default_open_ttl(),
        }
    }
}

/// `[limits]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
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

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            run_timeout_secs: default_run_timeout(),
            query_timeout_secs: default_query_timeout(),
            max_rows_per_query: default_max_rows(),
            max_message_bytes: default_message_bytes(),
            result_chunk_bytes: default_chunk_bytes(),
        }
    }
}

/// `[cache]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSection {
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
pub struct ConfigProblems(pub Vec<String>);

impl Config {
    /// Parses and checks a config text; every problem at once.
    pub fn parse(text: &str) -> Result<Config, ConfigProblems> {
        let config: Config = toml::from_str(text)
            .map_err(|e| ConfigProblems(vec![e.to_string().trim().to_owned()]))?;
        let mut problems = Vec::new();
        let w = &config.worker;
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
        if !(config.hub.url.starts_with("http://") || config.hub.url.starts_with("https://")) {
            problems.push("hub.url: an http:// or https:// address".to_owned());
        }
        if config.hub.client_cert_file.is_some() != config.hub.client_key_file.is_some() {
            problems.push("hub.client_cert_file and hub.client_key_file go together".to_owned());
        }
        if config.hub.url.starts_with("https://") && config.hub.ca_file.is_none() {
            problems.push("hub.ca_file: required for an https:// hub".to_owned());
        }
        if config.worker.mode == ModeSetting::Production && !config.hub.url.starts_with("https://")
        {
            problems.push("hub.url: production talks to the hub over https://".to_owned());
        }
        if config.hub.issuer.is_empty() {
            problems.push("hub.issuer: must not be empty".to_owned());
        }
        let t = &config.tokens;
        if t.max_lifetime_secs == 0 || t.max_lifetime_secs > 3_600 {
            problems.push("tokens.max_lifetime_secs: 1 to 3600".to_owned());
        }
        for r in &t.run_roles {
            if crate::token::NEVER_RUN_ROLES.contains(&r.as_str()) {
                problems.push(format!("tokens.run_roles: {r:?} may never run workflows"));
            }
        }
        if t.credential_ttl_secs == 0 || t.credential_ttl_secs > 600 {
            problems.push("tokens.credential_ttl_secs: 1 to 600".to_owned());
        }
        let l = &config.limits;
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
        match (&config.tls, config.worker.mode) {
            (None, ModeSetting::Production) => {
                problems.push(
                    "tls: required in production mode (cert_file, key_file, client_ca_file)"
                        .to_owned(),
                );
            }
            (Some(tls), _) => {
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
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigProblems(problems))
        }
    }

    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigProblems> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigProblems(vec![format!("{}: {e}", path.display())]))?;
        Config::parse(&text)
    }

    /// The run time limit.
    pub fn run_timeout(&self) -> Duration {
        Duration::from_secs(self.limits.run_timeout_secs)
    }

    /// The cache TTL for `connection`.
    pub fn cache_ttl(&self, connection: &str) -> Duration {
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
        assert_eq!(c.worker.capacity, 8);
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
}
