//! The run child: `hubworker __sandbox-child`, started by the daemon for exactly one task.
//!
//! Order of business: confine (`super::jail::enter`) before reading a byte of input → say
//! `Ready` → read `Setup` → open the sealed credentials into locked, zeroizing buffers → load
//! the inputs (asking the daemon's cache first) → drop the credentials and every key → install
//! the compute-phase filter (no sockets, no files) → compute → send the outputs → exit.
//!
//! The task itself is `crate::run::execute`, as everywhere: this file only turns the pipe
//! into its input source and event sink (`pipe.rs`) and the `Setup` into its task
//! (`message.rs`). Failures that belong to the task (a query error, an invalid workflow)
//! travel as a `Failure` frame and the child exits 0; everything else is an exit code or a
//! signal that the daemon classifies (see [`super::exit`]).

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Read;
use std::rc::Rc;
use std::time::Duration;

use super::exit;
use super::pipe::{Out, Pipe, PipeEvents, PipeSource};
use super::policy::Limits;
use super::{Fault, ZeroizeAll, jail, message};
use crate::creds::{Credential, TransportKey};
use crate::locked::LockedBytes;
use crate::proto::sandbox::{Done, Ready, Setup, from_child, to_child};
use crate::run::{RunTimings, TaskFailure};
use crate::workflow::{self, RunControl};

/// The child's command line (all of it public: limits and the daemon's pid).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChildArgs {
    /// The daemon's pid.
    pub parent: u32,
    /// Resource limits.
    pub limits: Limits,
    /// A deliberate misbehaviour, for the sandbox's own tests (see [`Fault`]).
    pub fault: Option<Fault>,
}

impl ChildArgs {
    /// The arguments after the hidden subcommand's name.
    pub(crate) fn to_args(&self) -> Vec<String> {
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
    pub(crate) fn parse(args: &[OsString]) -> Result<ChildArgs, String> {
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
    let pipe = Rc::new(RefCell::new(Pipe::new(
        std::io::stdin().lock(),
        Out(std::io::stdout()),
    )));
    let ready = from_child::Msg::Ready(Ready {
        confinements: confinements.iter().map(|c| (*c).to_owned()).collect(),
    });
    if pipe.borrow_mut().send(ready).is_err() {
        return exit::PROTOCOL;
    }
    super::fault::database_phase(args.fault, args.parent);
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
    let setup = match pipe.borrow_mut().read() {
        Ok(Some(to_child::Msg::Setup(s))) => s,
        // The daemon closed the pipe: a pre-started child that was never needed.
        Ok(None) => return exit::OK,
        Ok(Some(_)) | Err(_) => return exit::PROTOCOL,
    };
    let result = perform(setup, runtime, &pipe, args.fault);
    let mut pipe = pipe.borrow_mut();
    if let Some(code) = pipe.exit {
        return code;
    }
    let sent = match result {
        Ok(t) => pipe.send(from_child::Msg::Done(Done {
            load_us: t.load.as_micros() as u64,
            compute_us: t.compute.as_micros() as u64,
            encode_us: t.encode.as_micros() as u64,
        })),
        Err(f) => pipe.send(from_child::Msg::Failure(message::failure(&f))),
    };
    match (sent, pipe.exit) {
        (_, Some(code)) => code,
        (Ok(()), None) => exit::OK,
        (Err(_), None) => exit::PROTOCOL,
    }
}

/// The task: credentials opened into locked, zeroizing buffers and turned into connections
/// (every key wiped right after), then [`crate::run::execute`] with the pipe as its input
/// source and event sink.
fn perform<R: Read>(
    mut setup: Setup,
    runtime: tokio::runtime::Runtime,
    pipe: &Rc<RefCell<Pipe<R>>>,
    fault: Option<Fault>,
) -> Result<RunTimings, TaskFailure> {
    let prepared = prepare(&mut setup);
    setup.zeroize_all();
    let (task, limits, connections) = prepared?;
    // The daemon enforces the run's deadline; the child has none of its own.
    let control = RunControl::with_timeout(Duration::MAX);
    let mut inputs = PipeSource {
        pipe: pipe.clone(),
        runtime: Some(runtime),
        compute_fault: super::fault::compute_phase(fault),
    };
    let mut events = PipeEvents { pipe: pipe.clone() };
    crate::run::execute(
        task,
        connections,
        &limits,
        &control,
        &mut inputs,
        &mut events,
    )
}

type Prepared = (
    crate::run::Task,
    crate::run::Limits,
    Vec<crate::run::Connection>,
);

fn prepare(setup: &mut Setup) -> Result<Prepared, TaskFailure> {
    let (task, limits) = message::task_of(setup)?;
    let key = LockedBytes::take(&mut setup.transport_key);
    let ttl = Duration::from_secs(setup.credential_ttl_secs);
    let credentials = open_all(&key, &setup.credentials, ttl)?;
    drop(key);
    let fingerprint_key = LockedBytes::take(&mut setup.fingerprint_key);
    let connections =
        crate::run::connections(credentials, setup.now, Some(fingerprint_key.expose()))?;
    drop(fingerprint_key);
    Ok((task, limits, connections))
}

/// Opens every sealed credential. The plaintext lands in a locked buffer that is wiped when
/// dropped; the parsed fields are zeroizing [`crate::secret::Secret`]s.
fn open_all(
    key: &LockedBytes,
    sealed: &[crate::proto::sandbox::SealedCredential],
    ttl: Duration,
) -> Result<Vec<Credential>, TaskFailure> {
    let text = std::str::from_utf8(key.expose())
        .map_err(|_| TaskFailure::Credential(crate::creds::CredError::BadKey))?;
    let transport = TransportKey::from_text(text).map_err(TaskFailure::Credential)?;
    sealed
        .iter()
        .map(|s| {
            transport
                .open(&s.connection, &s.sealed, ttl)
                .map_err(TaskFailure::Credential)
        })
        .collect()
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
            if let Ok(ipc) = crate::run::to_ipc(&mut o.frame) {
                let _ = crate::run::from_ipc(&ipc);
            }
        }
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
