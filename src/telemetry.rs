//! Tracing setup. Logs go to stderr (stdout carries command output); `RUST_LOG` or
//! `HUBWORKER_LOG` picks the level. Span fields carry ids, never secrets or data values.

use tracing_subscriber::EnvFilter;

/// Environment variable that sets the log filter (falls back to `RUST_LOG`, then `warn`).
pub(crate) const ENV_LOG: &str = "HUBWORKER_LOG";

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields`, `target`, and the span's
    /// `run_id` / `worker_id`): journald and log collectors index the fields.
    Json,
}

/// Installs the global subscriber once; later calls are no-ops.
pub fn init(format: LogFormat) {
    let filter = std::env::var(ENV_LOG)
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new(default_level(format)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}

/// A daemon logging JSON is watched by a collector: tell it about starts, reloads and drains.
fn default_level(format: LogFormat) -> &'static str {
    match format {
        LogFormat::Text => "warn",
        LogFormat::Json => "info",
    }
}
