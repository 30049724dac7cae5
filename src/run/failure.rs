//! Owns why a task failed: a narrow enum by cause (an invalid workflow, a connection or
//! credential problem, a query failure with its connector error, the engine, a stop), each with
//! a stable code and a [`FailureClass`] that callers map to their own vocabulary (gRPC status,
//! exit code) in one place. Never carries database text in what it offers to send to a client.

use crate::connector::ConnectorError;
use crate::creds::CredError;
use crate::workflow::{Problems, RunError};

/// What kind of failure a [`TaskFailure`] is, for mapping it to a protocol's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureClass {
    /// The request itself is wrong (an invalid workflow, a plan Polars refuses).
    Invalid,
    /// Something the task depends on is not as required (a connection, a credential, a
    /// database error).
    Precondition,
    /// A credential is no longer valid.
    Unauthenticated,
    /// A time limit passed.
    Timeout,
    /// A size limit was reached.
    Exhausted,
    /// The task was cancelled.
    Cancelled,
    /// The engine failed while running.
    Aborted,
    /// A bug.
    Internal,
}

/// Why a task did not finish.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TaskFailure {
    /// The workflow is invalid (a run child validates it again).
    #[error("the workflow is invalid: {0}")]
    InvalidWorkflow(Problems),
    /// The task names a connection that was not supplied.
    #[error("{}no connection named {connection:?} was supplied", node_prefix(node.as_deref()))]
    UnknownConnection {
        /// The `sql` node (none for inspect and preview).
        node: Option<String>,
        /// The connection name.
        connection: String,
    },
    /// A connection is of another dialect than its node says.
    #[error("node {node:?}: the connection is {actual}, the node says {declared}")]
    DialectMismatch {
        /// The `sql` node.
        node: String,
        /// What the node declares.
        declared: &'static str,
        /// What the connection is.
        actual: &'static str,
    },
    /// A credential could not be used.
    #[error("{0}")]
    Credential(CredError),
    /// A query failed (its connector error kept whole).
    #[error("{}{error}", node_prefix(node.as_deref()))]
    Query {
        /// The `sql` node (none for inspect and preview).
        node: Option<String>,
        /// What failed.
        #[source]
        error: ConnectorError,
    },
    /// The engine failed, or the task was stopped (cancelled, out of time).
    #[error("{0}")]
    Engine(RunError),
    /// A failure a run child reported over its pipe (its class, code and safe message).
    #[error("{message}")]
    Reported {
        /// The class.
        class: FailureClass,
        /// The stable code.
        code: String,
        /// The message (already safe to send).
        message: String,
    },
    /// A bug (what was being done; details are in the log).
    #[error("internal error ({0})")]
    Internal(&'static str),
}

fn node_prefix(node: Option<&str>) -> String {
    node.map(|n| format!("node {n:?}: ")).unwrap_or_default()
}

impl TaskFailure {
    /// The stable reason code.
    pub(crate) fn code(&self) -> String {
        match self {
            TaskFailure::InvalidWorkflow(_) => "invalid_workflow".into(),
            TaskFailure::UnknownConnection { .. } => "unknown_connection".into(),
            TaskFailure::DialectMismatch { .. } => "dialect_mismatch".into(),
            TaskFailure::Credential(e) => e.code().into(),
            TaskFailure::Query { error, .. } => error.code().into(),
            TaskFailure::Engine(e) => e.code().into(),
            TaskFailure::Reported { code, .. } => code.clone(),
            TaskFailure::Internal(_) => "internal".into(),
        }
    }

    /// The class, for the caller's status mapping.
    pub(crate) fn class(&self) -> FailureClass {
        match self {
            TaskFailure::InvalidWorkflow(_) => FailureClass::Invalid,
            TaskFailure::UnknownConnection { .. } | TaskFailure::DialectMismatch { .. } => {
                FailureClass::Precondition
            }
            TaskFailure::Credential(CredError::Expired(_)) => FailureClass::Unauthenticated,
            TaskFailure::Credential(_) => FailureClass::Precondition,
            TaskFailure::Query { error, .. } => match error {
                ConnectorError::Timeout => FailureClass::Timeout,
                ConnectorError::ResultTooLarge(_) => FailureClass::Exhausted,
                _ => FailureClass::Precondition,
            },
            TaskFailure::Engine(e) => match e {
                RunError::Timeout => FailureClass::Timeout,
                RunError::Cancelled => FailureClass::Cancelled,
                RunError::Invalid(_) => FailureClass::Invalid,
                _ => FailureClass::Aborted,
            },
            TaskFailure::Reported { class, .. } => *class,
            TaskFailure::Internal(_) => FailureClass::Internal,
        }
    }

    /// A message safe to send to a client: a query failure says only its code (the
    /// database's text can name hosts and users; it stays in the worker's log).
    pub(crate) fn message(&self) -> String {
        match self {
            TaskFailure::Query { .. } => format!("a query failed [{}]", self.code()),
            TaskFailure::Internal(_) => "internal error".to_owned(),
            other => other.to_string(),
        }
    }
}
