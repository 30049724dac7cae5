//! Owns the translation between the sandbox protocol (`proto/hubworker/sandbox`) and the run's
//! domain types, in both directions and for both ends of the pipe: the task and its limits,
//! events, inspect tables and failures. Nothing else in the crate builds or reads these
//! messages' fields. Never logs: a `Setup` carries keys and sealed credentials.

use std::time::Duration;

use crate::connector::{QueryOptions, ResultLimits, TableRef};
use crate::proto::sandbox as pb;
use crate::run::{ColumnInfo, FailureClass, Limits, RunEvent, TableInfo, Task, TaskFailure};
use crate::workflow;

/// What the daemon hands a child besides the task: sealed credentials, the keys to open and
/// fingerprint them, the limits.
#[derive(Debug)]
pub(crate) struct Provisions<'a> {
    /// The credentials, still sealed by the Hub.
    pub(crate) sealed: Vec<crate::proto::SealedCredential>,
    /// The Fernet transport key's text (the child alone opens the credentials).
    pub(crate) transport_key: &'a [u8],
    /// The cache's fingerprint key.
    pub(crate) fingerprint_key: &'a [u8],
    /// The largest result the cache keeps, bytes.
    pub(crate) cache_entry_max_bytes: u64,
    /// How old a sealed credential may be.
    pub(crate) credential_ttl: Duration,
    /// The run's limits.
    pub(crate) limits: Limits,
    /// Unix time, seconds, for credential expiry.
    pub(crate) now: i64,
}

/// The first frame for a child.
pub(super) fn setup(task: &Task, p: Provisions<'_>) -> pb::Setup {
    let task = match task {
        Task::Run(wf) => pb::setup::Task::Run(pb::RunTask {
            workflow_json: wf.source_json().to_owned(),
            params_json: wf.params_json().to_owned(),
        }),
        Task::Inspect { connection } => pb::setup::Task::Inspect(pb::InspectTask {
            connection: connection.clone(),
        }),
        Task::Preview {
            connection,
            table,
            rows,
        } => pb::setup::Task::Preview(pb::PreviewTask {
            connection: connection.clone(),
            schema: table.schema.clone().unwrap_or_default(),
            table: table.name.clone(),
            rows: u32::try_from(*rows).unwrap_or(u32::MAX),
        }),
    };
    pb::Setup {
        task: Some(task),
        transport_key: p.transport_key.to_vec(),
        credentials: p
            .sealed
            .into_iter()
            .map(|s| pb::SealedCredential {
                connection: s.connection,
                sealed: s.sealed,
            })
            .collect(),
        credential_ttl_secs: p.credential_ttl.as_secs(),
        fingerprint_key: p.fingerprint_key.to_vec(),
        cache_entry_max_bytes: p.cache_entry_max_bytes,
        query_timeout_ms: u64::try_from(p.limits.query.timeout.as_millis()).unwrap_or(u64::MAX),
        max_rows: p.limits.query.limits.max_rows as u64,
        // The daemon alone enforces the run's deadline (SIGTERM, then SIGKILL), so that a
        // timeout is always the same, classified event; the child gets none of its own.
        deadline_ms: u64::MAX,
        now: p.now,
        output_chunk_bytes: p.limits.chunk_bytes as u64,
        engine: p.limits.engine.name().to_owned(),
    }
}

/// The task and limits a `Setup` carries (the child's side). A workflow is validated again.
pub(super) fn task_of(setup: &mut pb::Setup) -> Result<(Task, Limits), TaskFailure> {
    let limits = Limits {
        query: QueryOptions {
            limits: ResultLimits {
                max_rows: usize::try_from(setup.max_rows).unwrap_or(usize::MAX),
                ..ResultLimits::default()
            },
            timeout: Duration::from_millis(setup.query_timeout_ms),
        },
        chunk_bytes: usize::try_from(setup.output_chunk_bytes).unwrap_or(usize::MAX),
        engine: match setup.engine.as_str() {
            "in-memory" => workflow::Engine::InMemory,
            _ => workflow::Engine::Streaming,
        },
    };
    let task = match setup.task.take() {
        Some(pb::setup::Task::Run(run)) => Task::Run(Box::new(
            workflow::validate_bound(&run.workflow_json, &run.params_json)
                .map_err(TaskFailure::InvalidWorkflow)?,
        )),
        Some(pb::setup::Task::Inspect(i)) => Task::Inspect {
            connection: i.connection,
        },
        Some(pb::setup::Task::Preview(p)) => Task::Preview {
            connection: p.connection,
            table: TableRef {
                schema: (!p.schema.is_empty()).then_some(p.schema),
                name: p.table,
            },
            rows: p.rows as usize,
        },
        None => return Err(TaskFailure::Internal("a Setup without a task")),
    };
    Ok((task, limits))
}

/// An event as the frame that carries it (the child's side); `None` for none.
pub(super) fn frame_of(event: RunEvent) -> pb::from_child::Msg {
    match event {
        RunEvent::Progress {
            node,
            tool,
            finished,
            rows,
        } => pb::from_child::Msg::Progress(pb::Progress {
            node,
            tool,
            finished,
            rows,
        }),
        RunEvent::Input { node, rows, cached } => {
            pb::from_child::Msg::Input(pb::Input { node, rows, cached })
        }
        RunEvent::Output { name, ipc, last } => pb::from_child::Msg::Output(pb::Output {
            name,
            arrow_ipc: ipc,
            last,
        }),
        RunEvent::Tables(tables) => pb::from_child::Msg::Tables(pb::Tables {
            tables: tables
                .into_iter()
                .map(|t| pb::Table {
                    schema: t.schema,
                    name: t.name,
                    columns: t
                        .columns
                        .into_iter()
                        .map(|c| pb::Column {
                            name: c.name,
                            r#type: c.kind,
                        })
                        .collect(),
                })
                .collect(),
        }),
    }
}

/// The event a frame carries (the daemon's side); `None` for frames that are not events.
pub(super) fn event_of(msg: pb::from_child::Msg) -> Result<RunEvent, pb::from_child::Msg> {
    Ok(match msg {
        pb::from_child::Msg::Progress(p) => RunEvent::Progress {
            node: p.node,
            tool: p.tool,
            finished: p.finished,
            rows: p.rows,
        },
        pb::from_child::Msg::Input(i) => RunEvent::Input {
            node: i.node,
            rows: i.rows,
            cached: i.cached,
        },
        pb::from_child::Msg::Output(o) => RunEvent::Output {
            name: o.name,
            ipc: o.arrow_ipc,
            last: o.last,
        },
        pb::from_child::Msg::Tables(t) => RunEvent::Tables(
            t.tables
                .into_iter()
                .map(|t| TableInfo {
                    schema: t.schema,
                    name: t.name,
                    columns: t
                        .columns
                        .into_iter()
                        .map(|c| ColumnInfo {
                            name: c.name,
                            kind: c.r#type,
                        })
                        .collect(),
                })
                .collect(),
        ),
        other => return Err(other),
    })
}

/// A failure as the child reports it.
pub(super) fn failure(f: &TaskFailure) -> pb::Failure {
    let class = match f.class() {
        FailureClass::Invalid => pb::FailureClass::Invalid,
        FailureClass::Precondition => pb::FailureClass::Precondition,
        FailureClass::Unauthenticated => pb::FailureClass::Unauthenticated,
        FailureClass::Timeout => pb::FailureClass::Timeout,
        FailureClass::Exhausted => pb::FailureClass::Exhausted,
        FailureClass::Cancelled => pb::FailureClass::Cancelled,
        FailureClass::Aborted => pb::FailureClass::Aborted,
        FailureClass::Internal => pb::FailureClass::Internal,
    };
    pb::Failure {
        code: f.code(),
        message: f.message(),
        class: class as i32,
    }
}

/// A failure the child reported, as the daemon keeps it.
pub(super) fn failure_of(f: pb::Failure) -> TaskFailure {
    let class = match pb::FailureClass::try_from(f.class).unwrap_or(pb::FailureClass::Internal) {
        pb::FailureClass::Invalid => FailureClass::Invalid,
        pb::FailureClass::Precondition => FailureClass::Precondition,
        pb::FailureClass::Unauthenticated => FailureClass::Unauthenticated,
        pb::FailureClass::Timeout => FailureClass::Timeout,
        pb::FailureClass::Exhausted => FailureClass::Exhausted,
        pb::FailureClass::Cancelled => FailureClass::Cancelled,
        pb::FailureClass::Aborted => FailureClass::Aborted,
        pb::FailureClass::Internal => FailureClass::Internal,
    };
    TaskFailure::Reported {
        class,
        code: f.code,
        message: f.message,
    }
}
