//! One task (a workflow run, an inspect, a preview), for every caller: `hubworker run`, the
//! worker's inline isolation and the sandbox's run child all call [`execute`]. The order of
//! checks, the database phase (inputs through an [`InputSource`], which is where the caller's
//! cache and transport live), its end (connections dropped, the source closed: in a run child
//! that is where the compute-phase filter goes on), the compute phase and the events are
//! written here once. Knows nothing of gRPC, processes, the daemon or the Hub.
//!
//! Layout: `failure.rs` (why a task failed, by class), `inputs.rs` (the [`InputSource`]
//! contract and the direct source), `tables.rs` (inspect and preview), `channel.rs` (the
//! byte-bounded event channel the worker and the sandbox share).

pub(crate) mod channel;
mod encode;
mod failure;
mod inputs;
mod tables;

use std::time::{Duration, Instant};

use polars::prelude::*;

pub(crate) use failure::{FailureClass, TaskFailure};
pub(crate) use inputs::{Call, Direct, Input, InputSource, Need, Stopped, until_stopped};
pub(crate) use tables::{ColumnInfo, TableInfo};

use crate::connector::{QueryOptions, TableRef, Target};
use crate::creds::Credential;
use crate::workflow::{self, Event, RunControl, Workflow};

/// What one task does.
#[derive(Debug)]
pub(crate) enum Task {
    /// Run a checked workflow.
    Run(Box<Workflow>),
    /// List the tables and columns of one connection.
    Inspect {
        /// The connection.
        connection: String,
    },
    /// The first rows of one table.
    Preview {
        /// The connection.
        connection: String,
        /// The table.
        table: TableRef,
        /// Rows wanted (clamped to the preview limit).
        rows: usize,
    },
}

/// One connection a task may use: where to connect, and (where a cache is used) the
/// fingerprint of the credential it came from. Dropping it zeroizes the URL.
#[derive(Debug)]
pub(crate) struct Connection {
    /// The connection's name in the workflow.
    pub(crate) name: String,
    /// Where to connect.
    pub(crate) target: Target,
    /// HMAC of the credential under the cache's key (`None` where nothing is cached).
    pub(crate) fingerprint: Option<[u8; 32]>,
}

/// Turns opened credentials into connections: each checked (a role, an expiry) at `now`, each
/// fingerprinted under `fingerprint_key` when a cache will see it.
pub(crate) fn connections(
    credentials: Vec<Credential>,
    now: i64,
    fingerprint_key: Option<&[u8]>,
) -> Result<Vec<Connection>, TaskFailure> {
    credentials
        .into_iter()
        .map(|c| {
            Ok(Connection {
                target: c.target(now).map_err(TaskFailure::Credential)?,
                fingerprint: fingerprint_key.map(|k| crate::cache::fingerprint(k, &c)),
                name: c.connection.clone(),
            })
        })
        .collect()
}

/// The limits one task runs under.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Per query: row and byte caps, statement timeout.
    pub(crate) query: QueryOptions,
    /// Largest piece of an output per [`RunEvent::Output`] (0: whole outputs).
    pub(crate) chunk_bytes: usize,
    /// The engine a workflow runs on.
    pub(crate) engine: workflow::Engine,
}

/// Something a task reports while it goes.
#[derive(Debug)]
pub(crate) enum RunEvent {
    /// A node started or finished.
    Progress {
        /// Node id.
        node: String,
        /// Tool name.
        tool: String,
        /// Finished (else started).
        finished: bool,
        /// Rows, where known.
        rows: Option<u64>,
    },
    /// An `sql` node's rows are loaded.
    Input {
        /// The node.
        node: String,
        /// Rows.
        rows: u64,
        /// Served from a cache.
        cached: bool,
    },
    /// A piece of one output: an output's pieces, in order, are one Arrow IPC stream.
    Output {
        /// The output's name (`preview` for a preview).
        name: String,
        /// At most [`Limits::chunk_bytes`] of the IPC bytes.
        ipc: Vec<u8>,
        /// The output's last piece.
        last: bool,
    },
    /// An inspect's answer.
    Tables(Vec<TableInfo>),
}

impl channel::Weigh for RunEvent {
    fn weight(&self) -> usize {
        // Small events weigh a little too, so that a flood of them is bounded as well.
        match self {
            RunEvent::Output { name, ipc, .. } => 64 + name.len() + ipc.len(),
            RunEvent::Tables(tables) => tables.iter().map(TableInfo::weight).sum::<usize>() + 64,
            _ => 256,
        }
    }
}

impl From<Event> for RunEvent {
    fn from(e: Event) -> RunEvent {
        match e {
            Event::Started { node, tool } => RunEvent::Progress {
                node,
                tool: tool.to_owned(),
                finished: false,
                rows: None,
            },
            Event::Finished { node, tool, rows } => RunEvent::Progress {
                node,
                tool: tool.to_owned(),
                finished: true,
                rows: rows.map(|r| r as u64),
            },
        }
    }
}

/// Where a task's events go. Failing means nobody listens any more: the task stops.
pub(crate) trait Events {
    /// Reports one event (may wait while the listener is behind).
    fn emit(&mut self, event: RunEvent) -> Result<(), TaskFailure>;
}

/// Where one task's time went.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RunTimings {
    /// Loading inputs (queries or cache).
    pub(crate) load: Duration,
    /// The plan.
    pub(crate) compute: Duration,
    /// Encoding results as Arrow IPC.
    pub(crate) encode: Duration,
}

/// Runs one task: the database phase through `inputs` (connections are dropped and the source
/// closed before anything is computed), then the compute phase; events go to `events`. The
/// task stops when `control` is cancelled or out of time.
pub(crate) fn execute(
    task: Task,
    connections: Vec<Connection>,
    limits: &Limits,
    control: &RunControl,
    inputs: &mut dyn InputSource,
    events: &mut dyn Events,
) -> Result<RunTimings, TaskFailure> {
    control.check().map_err(TaskFailure::Engine)?;
    match task {
        Task::Run(wf) => run_workflow(&wf, connections, limits, control, inputs, events),
        Task::Inspect { connection } => {
            let started = Instant::now();
            let conn = find(&connections, &connection, None)?;
            let tables = tables::inspect(&conn.target, limits.query, control, inputs)?;
            end_of_database_phase(connections, inputs)?;
            let load = started.elapsed();
            events.emit(RunEvent::Tables(tables))?;
            Ok(RunTimings {
                load,
                ..RunTimings::default()
            })
        }
        Task::Preview {
            connection,
            table,
            rows,
        } => {
            let started = Instant::now();
            let conn = find(&connections, &connection, None)?;
            let frame = tables::preview(&conn.target, &table, rows, limits.query, control, inputs)?;
            end_of_database_phase(connections, inputs)?;
            let load = started.elapsed();
            let started = Instant::now();
            emit_output(events, "preview", frame, limits.chunk_bytes)?;
            Ok(RunTimings {
                load,
                encode: started.elapsed(),
                ..RunTimings::default()
            })
        }
    }
}

/// The connection named `name`, for `node` (a workflow's `sql` node) or a table task.
fn find<'a>(
    connections: &'a [Connection],
    name: &str,
    node: Option<&str>,
) -> Result<&'a Connection, TaskFailure> {
    connections
        .iter()
        .find(|c| c.name == name)
        .ok_or_else(|| TaskFailure::UnknownConnection {
            node: node.map(str::to_owned),
            connection: name.to_owned(),
        })
}

/// Credentials are not needed past this point: drop (zeroize) them, then close the source.
fn end_of_database_phase(
    connections: Vec<Connection>,
    inputs: &mut dyn InputSource,
) -> Result<(), TaskFailure> {
    drop(connections);
    inputs.close()
}

/// One input a workflow loads: its node, connection, query and bound values.
pub(crate) struct PlannedInput<'a> {
    node: &'a str,
    connection: &'a Connection,
    query: &'a crate::sql::ReadOnlyQuery,
    binds: Vec<crate::sql::Bind>,
}

impl PlannedInput<'_> {
    /// The input as the task asks its source for it.
    pub(crate) fn need(&self, limits: &Limits) -> Need<'_> {
        Need {
            node: self.node,
            connection: self.connection,
            query: self.query,
            binds: &self.binds,
            options: limits.query,
        }
    }
}

/// The inputs a workflow will load, in the order it loads them, once every connection is
/// checked against its query's dialect and every query has its values: what a run child
/// announces with `Ready` so that the daemon can answer before it asks.
pub(crate) fn planned_inputs<'a>(
    wf: &'a Workflow,
    connections: &'a [Connection],
) -> Result<Vec<PlannedInput<'a>>, TaskFailure> {
    // Every connection is checked before the first query runs.
    for (node, name, query) in wf.queries() {
        let conn = find(connections, name, Some(node))?;
        if conn.target.dialect != query.dialect() {
            return Err(TaskFailure::DialectMismatch {
                node: node.to_owned(),
                declared: query.dialect().as_str(),
                actual: conn.target.dialect.as_str(),
            });
        }
    }
    if !wf.is_bound() {
        return Err(TaskFailure::Internal("a run without its parameter values"));
    }
    wf.queries()
        .map(|(node, name, query)| {
            Ok(PlannedInput {
                node,
                connection: find(connections, name, Some(node))?,
                query,
                binds: wf
                    .binds(query)
                    .map_err(|_| TaskFailure::Internal("a query parameter without a value"))?,
            })
        })
        .collect()
}

fn run_workflow(
    wf: &Workflow,
    connections: Vec<Connection>,
    limits: &Limits,
    control: &RunControl,
    inputs: &mut dyn InputSource,
    events: &mut dyn Events,
) -> Result<RunTimings, TaskFailure> {
    let started = Instant::now();
    let planned = planned_inputs(wf, &connections)?;
    let mut frames = std::collections::HashMap::new();
    for input in &planned {
        control.check().map_err(TaskFailure::Engine)?;
        events.emit(RunEvent::Progress {
            node: input.node.to_owned(),
            tool: "sql".to_owned(),
            finished: false,
            rows: None,
        })?;
        let loaded = inputs.load(input.need(limits), control)?;
        events.emit(RunEvent::Input {
            node: input.node.to_owned(),
            rows: loaded.frame.height() as u64,
            cached: loaded.cached,
        })?;
        frames.insert(input.node.to_owned(), loaded.frame);
    }
    drop(planned);
    end_of_database_phase(connections, inputs)?;
    let load = started.elapsed();

    let started = Instant::now();
    let mut sink = Streamed {
        events,
        encoder: encode::Encoder::new(limits.chunk_bytes),
        encoding: Duration::ZERO,
        failed: None,
    };
    let ran = workflow::stream(wf, frames, control, limits.engine, &mut sink);
    if let Some(f) = sink.failed {
        return Err(f);
    }
    ran.map_err(TaskFailure::Engine)?;
    // Outputs are encoded while the plan runs: the time spent encoding (and reporting) is
    // counted apart.
    Ok(RunTimings {
        load,
        compute: started.elapsed().saturating_sub(sink.encoding),
        encode: sink.encoding,
    })
}

/// A workflow's progress and rows on their way to the task's events: outputs encoded as the
/// engine produces them. The first failure to report stops the run and is kept.
struct Streamed<'a> {
    events: &'a mut dyn Events,
    encoder: encode::Encoder,
    /// Time spent encoding and reporting rows.
    encoding: Duration,
    failed: Option<TaskFailure>,
}

impl Streamed<'_> {
    fn keep(&mut self, result: Result<(), TaskFailure>) -> bool {
        match result {
            Ok(()) => true,
            Err(f) => {
                self.failed.get_or_insert(f);
                false
            }
        }
    }
}

impl workflow::Sink for Streamed<'_> {
    fn event(&mut self, event: Event) {
        if self.failed.is_none() {
            let sent = self.events.emit(event.into());
            self.keep(sent);
        }
    }

    fn rows(&mut self, name: &str, rows: DataFrame) -> bool {
        if self.failed.is_some() {
            return false;
        }
        let started = Instant::now();
        let sent = self.encoder.rows(self.events, name, rows);
        self.encoding += started.elapsed();
        self.keep(sent)
    }

    fn end(&mut self, name: &str) {
        if self.failed.is_none() {
            let started = Instant::now();
            let sent = self.encoder.end(self.events, name);
            self.encoding += started.elapsed();
            self.keep(sent);
        }
    }
}

/// Encodes one result as an Arrow IPC stream and reports it in pieces of at most `chunk`
/// bytes (0: one piece).
fn emit_output(
    events: &mut dyn Events,
    name: &str,
    frame: DataFrame,
    chunk: usize,
) -> Result<(), TaskFailure> {
    let mut encoder = encode::Encoder::new(chunk);
    encoder.rows(events, name, frame)?;
    encoder.end(events, name)
}

/// A frame as one Arrow IPC stream.
pub(crate) fn to_ipc(frame: &mut DataFrame) -> Result<Vec<u8>, TaskFailure> {
    let mut ipc = Vec::new();
    IpcStreamWriter::new(&mut ipc)
        .finish(frame)
        .map_err(|_| TaskFailure::Internal("encoding rows as Arrow IPC"))?;
    Ok(ipc)
}

/// One Arrow IPC stream as a frame.
pub(crate) fn from_ipc(bytes: &[u8]) -> Result<DataFrame, TaskFailure> {
    IpcStreamReader::new(std::io::Cursor::new(bytes))
        .finish()
        .map_err(|_| TaskFailure::Internal("decoding Arrow IPC rows"))
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_params;
