//! The run child: `hubworker __sandbox-child`, started by the daemon for exactly one task.
//!
//! Order of business: confine ([`super::jail::enter`]) before reading a byte of input → say
//! `Ready` → read `Setup` → open the sealed credentials into locked, zeroizing buffers → load
//! the inputs (asking the daemon's cache first) → drop the credentials and every key → install
//! the compute-phase filter (no sockets, no files) → compute → send the outputs → exit.
//!
//! Failures that belong to the task (a query error, an invalid workflow) travel as a
//! `Failure` frame and the child exits 0; everything else is an exit code or a signal that
//! the daemon classifies (see [`super::exit`]).

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use polars::prelude::*;

use super::exit;
use super::policy::Limits;
use super::{Fault, ZeroizeAll, jail, wire};
use crate::connector::{self, QueryOptions, ResultLimits, TableRef};
use crate::creds::{Credential, TransportKey};
use crate::locked::LockedBytes;
use crate::proto::sandbox::{
    Done, Failure, FromChild, Loaded, Need, Output, Progress, Ready, Setup, answer, from_child,
    setup, to_child,
};
use crate::worker::RunFailure;
use crate::workflow::{self, Event, RunControl};

/// Largest frame the child accepts from the daemon (a workflow, cached inputs).
const MAX_FRAME_IN: usize = 1 << 30;

/// The child's command line (all of it public: limits and the daemon's pid).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildArgs {
    /// The daemon's pid.
    pub parent: u32,
    /// Resource limits.
    pub limits: Limits,
    /// A deliberate misbehaviour, for the sandbox's own tests (see [`Fault`]).
    pub fault: Option<Fault>,
}

impl ChildArgs {
    /// The arguments after the hidden subcommand's name.
    pub fn to_args(&self) -> Vec<String> {
        let mut v = vec![
            "--parent".to_owned(),
            self.parent.to_string(),
            "--memory".to_owned(),
            self.limits.memory_bytes.to_string(),
            "--cpu".to_owned(),
            self.limits.cpu_secs.to_string(),
            "--files".to_owned(),
            self.limits.open_files.to_string(),
        ];
        if let Some(f) = self.fault {
            v.push("--fault".to_owned());
            v.push(f.as_str().to_owned());
        }
        v
    }

    /// Parses what [`to_args`](Self::to_args) wrote.
    pub fn parse(args: &[OsString]) -> Result<ChildArgs, String> {
        let mut out = ChildArgs {
            parent: 0,
            limits: Limits::default(),
            fault: None,
        };
        let mut it = args.iter().map(|a| a.to_string_lossy());
        while let Some(flag) = it.next() {
            let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
            let num = || {
                value
                    .parse::<u64>()
                    .map_err(|_| format!("{flag}: not a number"))
            };
            match flag.as_ref() {
                "--parent" => {
                    out.parent = u32::try_from(num()?).map_err(|_| "--parent: too large")?;
                }
                "--memory" => out.limits.memory_bytes = num()?,
                "--cpu" => out.limits.cpu_secs = num()?,
                "--files" => out.limits.open_files = num()?,
                "--fault" => out.fault = Some(value.parse()?),
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        if out.parent == 0 {
            return Err("--parent is required".into());
        }
        Ok(out)
    }
}

/// Runs the child and returns its exit code. `args` are the arguments after the hidden
/// subcommand's name.
pub fn main(args: &[OsString]) -> i32 {
    let args = match ChildArgs::parse(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("hubworker sandbox child: {e}");
            return exit::USAGE;
        }
    };
    let confinements = match jail::enter(&args.limits, args.parent) {
        Ok(c) => c,
        Err(f) => {
            eprintln!("hubworker sandbox child: {} failed: {}", f.step, f.why);
            return f.code;
        }
    };
    let mut io = Io {
        input: std::io::stdin().lock(),
        output: Out(std::io::stdout()),
        chunk: 0,
    };
    if io
        .send(from_child::Msg::Ready(Ready {
            confinements: confinements.iter().map(|c| (*c).to_owned()).collect(),
        }))
        .is_err()
    {
        return exit::PROTOCOL;
    }
    // Faults in the database phase: each must be stopped by the first filter.
    match args.fault {
        Some(Fault::Execve) => {
            let _ = nix::unistd::execv(c"/bin/true", &[c"/bin/true"]);
        }
        Some(Fault::Ptrace) => {
            let parent = nix::unistd::Pid::from_raw(i32::try_from(args.parent).unwrap_or(1));
            let _ = nix::sys::ptrace::attach(parent);
        }
        _ => {}
    }
    // Ready for work: start what every task needs while nobody waits (a pooled child sits here
    // until the daemon has a task for it): the runtime and Polars' thread pool.
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return exit::PROTOCOL;
    };
    let _ = polars_core::runtime::RAYON.current_num_threads();
    warm_up();
    let setup = match io.read() {
        Ok(Some(to_child::Msg::Setup(s))) => s,
        // The daemon closed the pipe: a pre-started child that was never needed.
        Ok(None) => return exit::OK,
        Ok(Some(_)) | Err(_) => return exit::PROTOCOL,
    };
    match perform(setup, runtime, &mut io, args.fault) {
        Ok(()) => exit::OK,
        Err(Stop::Failed(f)) => {
            let failure = Failure {
                code: f.code(),
                message: f.message(),
                grpc_code: f.grpc_code() as i32,
            };
            match io.send(from_child::Msg::Failure(failure)) {
                Ok(()) => exit::OK,
                Err(_) => exit::PROTOCOL,
            }
        }
        Err(Stop::Exit(code)) => code,
    }
}

/// How a task stops early.
enum Stop {
    /// An ordinary failure, reported to the daemon.
    Failed(RunFailure),
    /// The pipe broke or a confinement step failed: leave with this code.
    Exit(i32),
}

impl From<RunFailure> for Stop {
    fn from(f: RunFailure) -> Self {
        Stop::Failed(f)
    }
}

/// Stdout written with plain `write(2)` calls: no line buffering splitting frames.
struct Out(std::io::Stdout);

impl Write for Out {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        nix::unistd::write(self.0.as_fd(), buf).map_err(std::io::Error::from)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Io<R: Read> {
    input: R,
    output: Out,
    /// Largest output piece per frame (0: whole outputs).
    chunk: usize,
}

impl<R: Read> Io<R> {
    fn send(&mut self, msg: from_child::Msg) -> Result<(), Stop> {
        wire::write(&mut self.output, &FromChild { msg: Some(msg) })
            .map_err(|_| Stop::Exit(exit::PROTOCOL))
    }

    fn read(&mut self) -> Result<Option<to_child::Msg>, Stop> {
        match wire::read::<crate::proto::sandbox::ToChild, _>(&mut self.input, MAX_FRAME_IN) {
            Ok(Some(m)) => Ok(m.msg),
            Ok(None) => Ok(None),
            Err(_) => Err(Stop::Exit(exit::PROTOCOL)),
        }
    }

    fn progress(&mut self, e: &Event) -> Result<(), Stop> {
        let p = match e {
            Event::Started { node, tool } => Progress {
                node: node.clone(),
                tool: (*tool).to_owned(),
                finished: false,
                rows: None,
            },
            Event::Finished { node, tool, rows } => Progress {
                node: node.clone(),
                tool: (*tool).to_owned(),
                finished: true,
                rows: rows.map(|r| r as u64),
            },
        };
        self.send(from_child::Msg::Progress(p))
    }

    /// Sends one output as pieces of at most `chunk` bytes. Each write blocks while the
    /// daemon reads nothing (its client is behind): the pipe is the backpressure.
    fn output(&mut self, name: &str, frame: &mut DataFrame) -> Result<(), Stop> {
        let ipc = to_ipc(frame)?;
        let size = if self.chunk == 0 {
            ipc.len().max(1)
        } else {
            self.chunk
        };
        let mut pieces = ipc.chunks(size).peekable();
        if pieces.peek().is_none() {
            return self.send(from_child::Msg::Output(Output {
                name: name.to_owned(),
                arrow_ipc: Vec::new(),
                last: true,
            }));
        }
        while let Some(piece) = pieces.next() {
            self.send(from_child::Msg::Output(Output {
                name: name.to_owned(),
                arrow_ipc: piece.to_vec(),
                last: pieces.peek().is_none(),
            }))?;
        }
        Ok(())
    }
}

fn to_ipc(frame: &mut DataFrame) -> Result<Vec<u8>, Stop> {
    let mut ipc = Vec::new();
    IpcStreamWriter::new(&mut ipc)
        .finish(frame)
        .map_err(|_| Stop::Failed(RunFailure::Internal))?;
    Ok(ipc)
}

fn from_ipc(bytes: &[u8]) -> Result<DataFrame, Stop> {
    IpcStreamReader::new(std::io::Cursor::new(bytes))
        .finish()
        .map_err(|_| Stop::Exit(exit::PROTOCOL))
}

/// What the database phase leaves for the compute phase.
enum Loaded2 {
    Run {
        wf: Box<workflow::Workflow>,
        inputs: HashMap<String, DataFrame>,
        control: RunControl,
    },
    Table(&'static str, DataFrame),
}

fn perform<R: Read>(
    mut setup: Setup,
    runtime: tokio::runtime::Runtime,
    io: &mut Io<R>,
    fault: Option<Fault>,
) -> Result<(), Stop> {
    let started = Instant::now();
    io.chunk = usize::try_from(setup.output_chunk_bytes).unwrap_or(usize::MAX);
    let loaded = {
        // Everything secret lives in this block and is dropped (zeroized) at its end.
        let key = LockedBytes::take(&mut setup.transport_key);
        let ttl = Duration::from_secs(setup.credential_ttl_secs);
        let credentials = open_all(&key, &setup.credentials, ttl)?;
        drop(key);
        let fingerprint_key = LockedBytes::take(&mut setup.fingerprint_key);
        let options = QueryOptions {
            limits: ResultLimits {
                max_rows: usize::try_from(setup.max_rows).unwrap_or(usize::MAX),
                ..ResultLimits::default()
            },
            timeout: Duration::from_millis(setup.query_timeout_ms),
        };
        let target_of = |connection: &str| {
            let cred = credentials
                .iter()
                .find(|c| c.connection == connection)
                .ok_or_else(|| RunFailure::MissingCredential(connection.to_owned()))?;
            let target = cred.target(setup.now).map_err(RunFailure::Credential)?;
            Ok::<_, RunFailure>((cred, target))
        };
        let loaded = match setup.task.take() {
            Some(setup::Task::Run(task)) => {
                let wf =
                    workflow::validate(&task.workflow_json).map_err(RunFailure::InvalidWorkflow)?;
                let control = RunControl::with_timeout(Duration::from_millis(setup.deadline_ms));
                let mut inputs = HashMap::new();
                for (node, connection, query) in wf.queries() {
                    control.check().map_err(RunFailure::Run)?;
                    let (cred, target) = target_of(connection)?;
                    if target.dialect != query.dialect() {
                        return Err(RunFailure::DialectMismatch(node.to_owned()).into());
                    }
                    io.progress(&Event::Started {
                        node: node.to_owned(),
                        tool: "sql",
                    })?;
                    io.send(from_child::Msg::Need(Need {
                        node: node.to_owned(),
                        fingerprint: crate::cache::fingerprint(fingerprint_key.expose(), cred)
                            .to_vec(),
                        connection: connection.to_owned(),
                        query: query.sql().to_owned(),
                    }))?;
                    let answer = match io.read()? {
                        Some(to_child::Msg::Answer(a)) if a.node == node => a.answer,
                        _ => return Err(Stop::Exit(exit::PROTOCOL)),
                    };
                    let frame = match answer {
                        Some(answer::Answer::CachedIpc(bytes)) => from_ipc(&bytes)?,
                        Some(answer::Answer::Fetch(send_back)) => {
                            let mut frame = runtime
                                .block_on(connector::query(&target, query, options))
                                .map_err(|e| RunFailure::Query(e.code()))?;
                            let arrow_ipc = if send_back {
                                to_ipc(&mut frame)?
                            } else {
                                Vec::new()
                            };
                            io.send(from_child::Msg::Loaded(Loaded {
                                node: node.to_owned(),
                                rows: frame.height() as u64,
                                arrow_ipc,
                            }))?;
                            frame
                        }
                        None => return Err(Stop::Exit(exit::PROTOCOL)),
                    };
                    inputs.insert(node.to_owned(), frame);
                }
                Loaded2::Run {
                    wf: Box::new(wf),
                    inputs,
                    control,
                }
            }
            Some(setup::Task::Inspect(task)) => {
                let (_, target) = target_of(&task.connection)?;
                Loaded2::Table("columns", runtime.block_on(inspect(&target, options))?)
            }
            Some(setup::Task::Preview(task)) => {
                let (_, target) = target_of(&task.connection)?;
                let table = TableRef {
                    schema: (!task.schema.is_empty()).then_some(task.schema),
                    name: task.table,
                };
                let rows = (task.rows as usize).clamp(1, connector::inspect::MAX_PREVIEW_ROWS);
                let frame = runtime
                    .block_on(connector::inspect::preview(&target, &table, rows, options))
                    .map_err(|e| RunFailure::Query(e.code()))?;
                Loaded2::Table("preview", frame)
            }
            None => return Err(Stop::Exit(exit::PROTOCOL)),
        };
        // Closes the database connections and ends the runtime's threads.
        drop(runtime);
        drop(credentials);
        drop(fingerprint_key);
        setup.zeroize_all();
        loaded
    };
    let load = started.elapsed();

    // The compute phase (Polars' thread pool, which reads /proc and /sys as it starts, runs
    // already): forbid sockets and files for good.
    jail::enter_compute_phase().map_err(|f| {
        eprintln!("hubworker sandbox child: {} failed: {}", f.step, f.why);
        Stop::Exit(f.code)
    })?;
    compute_phase_fault(fault);

    let started = Instant::now();
    let mut encode = Duration::ZERO;
    match loaded {
        Loaded2::Run {
            wf,
            inputs,
            control,
        } => {
            let mut sink: Result<(), Stop> = Ok(());
            let outputs = workflow::execute(&wf, inputs, &control, &mut |e| {
                if sink.is_ok() {
                    sink = io.progress(&e);
                }
            });
            sink?;
            let outputs = outputs.map_err(RunFailure::Run)?;
            let computed = Instant::now();
            for mut o in outputs {
                io.output(&o.name, &mut o.frame)?;
            }
            encode = computed.elapsed();
        }
        Loaded2::Table(name, mut frame) => io.output(name, &mut frame)?,
    }
    let compute = started.elapsed().saturating_sub(encode);
    io.send(from_child::Msg::Done(Done {
        load_us: load.as_micros() as u64,
        compute_us: compute.as_micros() as u64,
        encode_us: encode.as_micros() as u64,
    }))
}

/// Opens every sealed credential. The plaintext lands in a locked buffer that is wiped when
/// dropped; the parsed fields are zeroizing [`crate::secret::Secret`]s.
fn open_all(
    key: &LockedBytes,
    sealed: &[crate::proto::sandbox::SealedCredential],
    ttl: Duration,
) -> Result<Vec<Credential>, RunFailure> {
    let text = std::str::from_utf8(key.expose())
        .map_err(|_| RunFailure::Credential(crate::creds::CredError::BadKey))?;
    let transport = TransportKey::from_text(text).map_err(RunFailure::Credential)?;
    sealed
        .iter()
        .map(|s| {
            transport
                .open(&s.connection, &s.sealed, ttl)
                .map_err(RunFailure::Credential)
        })
        .collect()
}

/// The tables-and-columns listing for a multi-threaded runtime: on a blocking thread (the drivers' futures are
/// not `Send`), owning its target.
pub async fn inspect_owned(
    target: connector::Target,
    options: QueryOptions,
) -> Result<DataFrame, RunFailure> {
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || handle.block_on(inspect(&target, options)))
        .await
        .unwrap_or(Err(RunFailure::Internal))
}

/// Tables and columns of one connection as one frame: schema, table, column, type.
async fn inspect(
    target: &connector::Target,
    options: QueryOptions,
) -> Result<DataFrame, RunFailure> {
    let tables = connector::inspect::tables(target, options)
        .await
        .map_err(|e| RunFailure::Query(e.code()))?;
    let strings = |df: &DataFrame, name: &str| -> Vec<String> {
        df.column(name)
            .ok()
            .and_then(|c| {
                c.str()
                    .ok()
                    .map(|s| s.iter().map(|v| v.unwrap_or_default().to_owned()).collect())
            })
            .unwrap_or_default()
    };
    let (mut schema, mut table, mut column, mut kind) = (vec![], vec![], vec![], vec![]);
    for (s, t) in strings(&tables, "schema")
        .into_iter()
        .zip(strings(&tables, "table"))
    {
        let table_ref = TableRef {
            schema: (!s.is_empty()).then(|| s.clone()),
            name: t.clone(),
        };
        let cols = connector::inspect::columns(target, &table_ref, options)
            .await
            .map_err(|e| RunFailure::Query(e.code()))?;
        let names = strings(&cols, "column");
        let types = strings(&cols, "type");
        if names.is_empty() {
            schema.push(s.clone());
            table.push(t.clone());
            column.push(None);
            kind.push(None);
        }
        for (n, k) in names.into_iter().zip(types) {
            schema.push(s.clone());
            table.push(t.clone());
            column.push(Some(n));
            kind.push(Some(k));
        }
    }
    let height = schema.len();
    DataFrame::new(
        height,
        vec![
            Column::new("schema".into(), schema),
            Column::new("table".into(), table),
            Column::new("column".into(), column),
            Column::new("type".into(), kind),
        ],
    )
    .map_err(|_| RunFailure::Internal)
}

/// A tiny workflow over inline rows (no files, no network): validating and running it once,
/// and writing and reading its result as Arrow IPC, pays the process's first-use costs (lazy
/// tables, the allocator's first pages, Polars' first plan) before a task waits on them.
const WARM_UP: &str = r#"{"version": 1, "nodes": [
  {"id": "a", "tool": "inline", "columns": [{"name": "k", "type": "String"}, {"name": "x", "type": "Int64"}, {"name": "p", "type": "Float64"}],
   "rows": [["a", 1, 1.5], ["b", 2, 2.5], ["a", 3, 3.5]]},
  {"id": "f", "tool": "formula", "input": "a", "formulas": [{"column": "v", "expression": "(pl.col('p') * pl.col('x')).round(2)"}, {"column": "u", "expression": "pl.col('k').str.to_uppercase()"}]},
  {"id": "w", "tool": "filter", "input": "f", "expression": "pl.col('x') > 0"},
  {"id": "s", "tool": "summarize", "input": "w", "group_by": ["u"], "aggregations": [{"op": "sum", "column": "v", "as": "total"}]},
  {"id": "o", "tool": "output", "input": "s", "name": "out"}]}"#;

fn warm_up() {
    let Ok(wf) = workflow::validate(WARM_UP) else {
        return;
    };
    let control = RunControl::with_timeout(Duration::from_secs(10));
    if let Ok(outputs) = workflow::execute(&wf, HashMap::new(), &control, &mut |_| {}) {
        for mut o in outputs {
            if let Ok(ipc) = to_ipc(&mut o.frame) {
                let _ = from_ipc(&ipc);
            }
        }
    }
}

/// Faults in the compute phase: each must be stopped by the second filter or a limit.
fn compute_phase_fault(fault: Option<Fault>) {
    match fault {
        Some(Fault::SocketAfterLoad) => {
            let _ = std::net::TcpStream::connect(("127.0.0.1", 9));
        }
        Some(Fault::OpenAfterLoad) => {
            let _ = std::fs::File::open("/etc/hostname");
        }
        Some(Fault::Spin) => {
            let mut x: u64 = 1;
            loop {
                x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
            }
        }
        Some(Fault::Allocate) => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 64 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        Some(Fault::Crash) => std::process::abort(),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_warm_up_workflow_is_valid_and_runs() {
        let wf = workflow::validate(WARM_UP).expect("valid");
        let control = RunControl::with_timeout(Duration::from_secs(10));
        let out = workflow::execute(&wf, HashMap::new(), &control, &mut |_| {}).expect("runs");
        assert_eq!(out[0].frame.height(), 2);
    }
}
