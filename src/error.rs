//! The top-level error: composes module errors and owns the map to process exit codes.
//! Never formats secrets; module errors are built to be safe to show.

use std::path::PathBuf;

use crate::expr::ExprError;

/// Anything a subcommand can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An expression was rejected (a user error, not a crash).
    #[error("expression rejected: {0}")]
    Expr(#[from] ExprError),
    /// Reading or writing a data file failed.
    #[error("{path}: {source}")]
    Frame {
        /// The file involved.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: crate::frames::FrameError,
    },
    /// Polars failed while executing.
    #[error("execution failed: {0}")]
    Polars(#[from] polars::prelude::PolarsError),
    /// A database query failed (the message never holds credentials).
    #[error("{0}")]
    Connector(#[from] crate::connector::ConnectorError),
    /// Standard input/output failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The command line or its input is unusable (a flag, a file's content, a name).
    #[error("{0}")]
    Usage(String),
    /// A configuration file or its secrets are unusable.
    #[error("{0}")]
    Config(String),
    /// The worker daemon could not start: its configuration is at fault (exit 2: a bad
    /// config or secret, a registration secret the Hub refuses), or the moment is (a port
    /// taken, a sandbox that does not work here: exit 1). An unreachable Hub is waited for,
    /// not an error.
    #[error("{message}")]
    Start {
        /// What failed (names settings, never values).
        message: String,
        /// Whether the configuration is at fault.
        config: bool,
    },
    /// Something failed while running (a peer unreachable, a server stopped, a check of the
    /// demo that did not hold).
    #[error("{0}")]
    Failed(String),
}

impl Error {
    /// The process exit code: 0 ok, 1 runtime failure, 2 usage or configuration error (as
    /// clap). The one map from errors to exit codes.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) | Error::Config(_) | Error::Expr(_) => 2,
            Error::Start { config: true, .. } => 2,
            Error::Start { .. }
            | Error::Failed(_)
            | Error::Frame { .. }
            | Error::Polars(_)
            | Error::Io(_)
            | Error::Connector(_) => 1,
        }
    }
}
