//! Why a run (or a call) failed, and the one map from that to gRPC statuses. Messages are
//! safe to show: database error text, paths and secrets never reach the client; the reason code
//! travels in the message (`[code] ...`) and in `hubworker-reason` metadata.

use tonic::{Code, Status};

use crate::creds::CredError;
use crate::hub_client::{HubCallError, HubReason};
use crate::run::{FailureClass, TaskFailure};
use crate::token::TokenError;
use crate::workflow::{Problems, RunControl, RunError};

/// Why a run or call failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RunFailure {
    /// All run slots are taken: try another worker.
    #[error("the worker is at capacity")]
    OverCapacity,
    /// The worker is draining.
    #[error("the worker is draining and accepts no new runs")]
    Draining,
    /// The token was refused.
    #[error("token refused: {0}")]
    Token(#[from] TokenError),
    /// The document is not a workflow at all (JSON, size, a number the hash cannot hold).
    #[error("the workflow document is unusable: {0}")]
    BadWorkflowDocument(crate::workflow::HashError),
    /// The workflow has problems.
    #[error("the workflow is invalid: {0}")]
    InvalidWorkflow(Problems),
    /// The run's parameter values do not fit the workflow's declarations.
    #[error("the run's parameters are refused: {0}")]
    InvalidParams(Problems),
    /// Redeeming failed.
    #[error("{0}")]
    Hub(HubCallError),
    /// The task failed (or was stopped): a connection, a credential, a query, the engine.
    #[error("{0}")]
    Task(TaskFailure),
    /// The sandboxed run child ended abnormally (a limit, a violation, a crash, a stop).
    #[error("{0}")]
    Sandbox(crate::sandbox::Exit),
    /// The client did not read the run's events within `limits.send_timeout_secs`: the run
    /// was stopped and its slot freed.
    #[error("the client did not read the run's results in time; the run was stopped")]
    ClientStalled,
    /// `Cancel` without the run's cancel secret (or with a wrong one).
    #[error("cancelling this run needs its cancel secret (from the Accepted event)")]
    CancelNotAuthorized,
    /// This token has had its validations (`limits.validations_per_token`).
    #[error("this token has used up its validations")]
    ValidationBudgetExhausted,
    /// Every validation permit is taken (`worker.validate_concurrency`); retry shortly.
    #[error("the worker is busy validating; retry shortly")]
    ValidationBusy,
    /// The audit spool is full: no task is taken until the Hub takes records.
    #[error("the worker's audit spool is full; it takes no task until the hub takes its records")]
    AuditSpoolFull,
    /// An outbound request (the AI proxy) was refused, or its upstream failed.
    #[error("{}", .0.message)]
    Egress(crate::egress::Refusal),
    /// A bug; details are in the worker's log.
    #[error("internal error")]
    Internal,
}

impl RunFailure {
    /// Stable reason code.
    pub(crate) fn code(&self) -> String {
        match self {
            RunFailure::OverCapacity => "over_capacity".into(),
            RunFailure::Draining => "draining".into(),
            RunFailure::Token(e) => e.reason.code().into(),
            RunFailure::BadWorkflowDocument(
                e @ crate::workflow::HashError::NumberOutOfRange(_),
            ) => e.code().into(),
            // A document over the size limit has always been answered as `invalid_json` here.
            RunFailure::BadWorkflowDocument(_) => "invalid_json".into(),
            RunFailure::InvalidWorkflow(_) => "invalid_workflow".into(),
            // The first problem's code (`missing_param`, `param_type`, ...); all are listed in
            // the message.
            RunFailure::InvalidParams(p) => p.0.first().map_or("invalid_params", |p| p.code).into(),
            RunFailure::Hub(e) => e.code(),
            RunFailure::Task(f) => f.code(),
            RunFailure::Sandbox(e) => e.code().into(),
            RunFailure::ClientStalled => "client_stalled".into(),
            RunFailure::CancelNotAuthorized => "cancel_not_authorized".into(),
            RunFailure::ValidationBudgetExhausted => "validation_budget_exhausted".into(),
            RunFailure::ValidationBusy => "validation_busy".into(),
            RunFailure::Egress(r) => r.code.into(),
            RunFailure::AuditSpoolFull => "audit_spool_full".into(),
            RunFailure::Internal => "internal".into(),
        }
    }

    /// The `outcome` label of a run that ended this way: `client_stalled`, or the gRPC
    /// status name (a closed set either way).
    pub(crate) fn outcome(&self) -> &'static str {
        match self {
            RunFailure::ClientStalled => crate::metrics::CLIENT_STALLED,
            other => crate::metrics::outcome(other.grpc_code()),
        }
    }

    /// The gRPC status code.
    pub(crate) fn grpc_code(&self) -> Code {
        match self {
            RunFailure::OverCapacity => Code::ResourceExhausted,
            RunFailure::Draining => Code::Unavailable,
            RunFailure::Token(e) => match e.reason {
                crate::token::Reason::ConnectionNotInScope
                | crate::token::Reason::WrongScope
                | crate::token::Reason::RoleNotAllowed
                | crate::token::Reason::WorkflowMismatch
                | crate::token::Reason::ParamsMismatch => Code::PermissionDenied,
                _ => Code::Unauthenticated,
            },
            RunFailure::BadWorkflowDocument(_)
            | RunFailure::InvalidWorkflow(_)
            | RunFailure::InvalidParams(_) => Code::InvalidArgument,
            RunFailure::Hub(HubCallError::Refused {
                reason: HubReason::AlreadyRedeemed,
                ..
            }) => Code::Unauthenticated,
            RunFailure::Hub(HubCallError::Credential(CredError::Expired(_))) => {
                Code::Unauthenticated
            }
            RunFailure::Hub(_) => Code::Unavailable,
            RunFailure::Task(f) => match f.class() {
                FailureClass::Invalid => Code::InvalidArgument,
                FailureClass::Precondition => Code::FailedPrecondition,
                FailureClass::Unauthenticated => Code::Unauthenticated,
                FailureClass::Timeout => Code::DeadlineExceeded,
                FailureClass::Exhausted => Code::ResourceExhausted,
                FailureClass::Cancelled => Code::Cancelled,
                FailureClass::Aborted => Code::Aborted,
                FailureClass::Internal => Code::Internal,
            },
            RunFailure::Sandbox(e) => e.grpc_code(),
            // The run could not deliver within its send timeout.
            RunFailure::ClientStalled => Code::DeadlineExceeded,
            RunFailure::CancelNotAuthorized => Code::PermissionDenied,
            RunFailure::ValidationBudgetExhausted | RunFailure::ValidationBusy => {
                Code::ResourceExhausted
            }
            RunFailure::Egress(r) => egress_code(r.code),
            RunFailure::AuditSpoolFull => Code::ResourceExhausted,
            RunFailure::Internal => Code::Internal,
        }
    }

    /// A message safe to send.
    pub(crate) fn message(&self) -> String {
        match self {
            // Hub and query failures: only the code; their details can hold host names.
            RunFailure::Hub(e) => format!("the hub call failed ({})", e.code()),
            RunFailure::Task(f) => f.message(),
            other => other.to_string(),
        }
    }

    /// Why a run stops now, as its control says (a cancel if it says nothing).
    pub(crate) fn stopped(control: &RunControl) -> RunFailure {
        RunFailure::Task(TaskFailure::Engine(
            control.check().err().unwrap_or(RunError::Cancelled),
        ))
    }
}

/// The gRPC status of an egress refusal: what the caller asked for is wrong
/// (INVALID_ARGUMENT), the target is forbidden (PERMISSION_DENIED), the provider is unknown
/// (NOT_FOUND), or the upstream failed (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED).
fn egress_code(code: &str) -> Code {
    match code {
        "unknown_provider" => Code::NotFound,
        "method_not_allowed" | "path_not_allowed" | "header_not_allowed" | "bad_header"
        | "too_many_headers" | "internal_token" | "request_too_large" | "bad_url" => {
            Code::InvalidArgument
        }
        "upstream_timeout" => Code::DeadlineExceeded,
        "response_too_large" => Code::ResourceExhausted,
        "connect_failed" | "upstream_error" | "resolve_failed" => Code::Unavailable,
        "redirect_not_followed" => Code::FailedPrecondition,
        "tls_config" => Code::Internal,
        // The address and name rules.
        _ => Code::PermissionDenied,
    }
}

/// The one map from failures to gRPC statuses.
pub(crate) fn to_status(f: &RunFailure) -> Status {
    let code = f.code();
    let mut status = Status::new(f.grpc_code(), format!("[{code}] {}", f.message()));
    if let Ok(v) = code.parse() {
        status.metadata_mut().insert("hubworker-reason", v);
    }
    status
}
