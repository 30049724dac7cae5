//! Tracing setup. Logs go to stderr (stdout carries command output); `RUST_LOG` or
//! `HUBWORKER_LOG` picks the level. Span fields carry ids, never secrets or data values.

use tracing_subscriber::EnvFilter;

/// Environment variable that sets the log filter (falls back to `RUST_LOG`, then `warn`).
pub const ENV_LOG: &str = "HUBWORKER_LOG";

/// Installs the global subscriber once; later calls are no-ops.
pub fn init() {
    let filter = std::env::var(ENV_LOG)
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
