//! The sections of the config file, each key with its default. Parsing and checking are in
//! [`super::schema`] and [`super::checks`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

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
    /// `dev` or `production` as written in the file (unset: `HUBWORKER_ENV` decides).
    #[serde(default, rename = "mode")]
    pub(super) mode_setting: Option<ModeSetting>,
    /// The mode in force: the file's `mode` and `HUBWORKER_ENV` resolved into one switch
    /// (see [`super::Config::parse`]; they must agree when both are set).
    #[serde(skip)]
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

/// `mode`: the one production switch (`worker.mode` or `HUBWORKER_ENV`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ModeSetting {
    /// Development.
    #[default]
    Dev,
    /// Production: mutual TLS, an `https://` Hub, process isolation, strong secrets.
    Production,
}

impl ModeSetting {
    /// Its name in the file and in `HUBWORKER_ENV`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ModeSetting::Dev => "dev",
            ModeSetting::Production => "production",
        }
    }
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
    /// The Polars engine workflows run on: `"streaming"` (the default: morsels, results
    /// streamed as they are produced, memory bounded by the plan's state) or `"in-memory"`
    /// (every node materialised; for comparison, or if a plan misbehaves on streaming).
    #[serde(default)]
    pub engine: crate::workflow::Engine,
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
            engine: crate::workflow::Engine::default(),
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
    /// Largest result that is cached, bytes (its in-memory size; default: an eighth of
    /// `max_bytes`). A larger one is used by its run and not kept: encoding it for the cache
    /// would take its size again in the run, and it would push out most of the cache.
    #[serde(default)]
    pub max_entry_bytes: Option<u64>,
}

impl CacheSection {
    /// [`CacheSection::max_entry_bytes`], defaulted.
    pub(crate) fn entry_bytes(&self) -> u64 {
        self.max_entry_bytes.unwrap_or(self.max_bytes / 8)
    }
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
            max_entry_bytes: None,
        }
    }
}
