//! Tracing setup. Logs go to stderr (stdout carries command output), colour only when stderr is
//! a terminal (and `NO_COLOR` is unset), one JSON object per line in JSON mode. The filter comes
//! from `HUBWORKER_LOG`, else `RUST_LOG`, else the default; a filter that does not parse is a
//! usage error naming the variable. Span fields carry ids, never secrets or data values.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Environment variable that sets the log filter (falls back to [`ENV_RUST_LOG`], then the
/// default of the command).
pub(crate) const ENV_LOG: &str = "HUBWORKER_LOG";
/// The conventional fallback.
pub(crate) const ENV_RUST_LOG: &str = "RUST_LOG";
/// The services' default (`serve`, `hub serve`): the daemon's lifecycle (listening, registered,
/// draining, drained, reloaded, stopping) at INFO, dependencies at WARN.
pub(crate) const SERVICE_DEFAULT: &str = "warn,hubworker=info";
/// The one-shot commands' default: warnings and errors only.
pub(crate) const COMMAND_DEFAULT: &str = "warn";

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

/// A log filter variable that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: invalid log filter {value:?}: {why}")]
pub struct FilterError {
    /// `HUBWORKER_LOG` or `RUST_LOG`.
    pub variable: &'static str,
    /// What it held.
    pub value: String,
    /// The parser's complaint.
    pub why: String,
}

/// The filter in force: the first of `HUBWORKER_LOG` and `RUST_LOG` that is set and not
/// empty, else `default`. `var` reads the environment (a map in tests).
pub(crate) fn filter(
    var: &dyn Fn(&str) -> Option<String>,
    default: &str,
) -> Result<EnvFilter, FilterError> {
    for variable in [ENV_LOG, ENV_RUST_LOG] {
        let Some(value) = var(variable).filter(|v| !v.trim().is_empty()) else {
            continue;
        };
        return EnvFilter::builder().parse(&value).map_err(|e| FilterError {
            variable,
            why: e.to_string(),
            value,
        });
    }
    Ok(EnvFilter::new(default))
}

/// Installs the global subscriber once (later calls are no-ops). `service` picks the default
/// filter: INFO for hubworker's own lines in a daemon, WARN for one-shot commands.
pub fn init(format: LogFormat, service: bool) -> Result<(), FilterError> {
    let default = if service {
        SERVICE_DEFAULT
    } else {
        COMMAND_DEFAULT
    };
    let filter = filter(&|name| std::env::var(name).ok(), default)?;
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(colour).try_init(),
        LogFormat::Json => builder
            .json()
            .with_ansi(false)
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        let pairs = pairs.to_vec();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn the_filter_comes_from_hubworker_log_then_rust_log_and_is_validated() {
        let f = filter(&env(&[]), SERVICE_DEFAULT).unwrap();
        assert_eq!(f.to_string(), "hubworker=info,warn");
        let f = filter(&env(&[(ENV_RUST_LOG, "debug")]), SERVICE_DEFAULT).unwrap();
        assert_eq!(f.to_string(), "debug");
        let f = filter(
            &env(&[(ENV_LOG, "hubworker=trace"), (ENV_RUST_LOG, "debug")]),
            SERVICE_DEFAULT,
        )
        .unwrap();
        assert_eq!(f.to_string(), "hubworker=trace");
        // Empty counts as unset.
        let f = filter(&env(&[(ENV_LOG, " ")]), COMMAND_DEFAULT).unwrap();
        assert_eq!(f.to_string(), "warn");
        let e = filter(&env(&[(ENV_LOG, "hubworker=loud")]), SERVICE_DEFAULT).unwrap_err();
        assert_eq!(e.variable, "HUBWORKER_LOG");
        assert!(
            e.to_string()
                .starts_with("HUBWORKER_LOG: invalid log filter \"hubworker=loud\": "),
            "{e}"
        );
        let e = filter(&env(&[(ENV_RUST_LOG, "x=[")]), SERVICE_DEFAULT).unwrap_err();
        assert_eq!(e.variable, "RUST_LOG");
    }
}
