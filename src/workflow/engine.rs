//! The two ways a built plan runs, both under the run's cancel flag and wall-clock limit:
//!
//! - **streaming** (the default): Polars' streaming engine (`polars-stream`). Each output is a
//!   callback sink (`sink_batches`), all of them under one multi-sink root, so a subplan
//!   several outputs share is computed once. Rows reach the caller batch by batch while the
//!   plan runs, through a bounded channel (the engine waits while the caller is behind), so a
//!   run's memory is bounded by the plan's state, not by its outputs. The engine has no stop
//!   flag of its own: every source and every tool's output passes a *checkpoint* (a streamable
//!   identity map that fails once the run must stop), and every sink asks the same before it
//!   hands a batch over, so a run stops within one morsel of work per pipeline.
//! - **in-memory**: Polars' in-memory engine (`polars-mem-engine`), every node materialised,
//!   stopped through its execution state's cancel token. Kept for comparison (`hubworker
//!   bench expr` prints both) and as the fallback for a plan the streaming engine cannot run
//!   (it panics with "not yet implemented" before it runs anything).

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::mpsc::{RecvTimeoutError, sync_channel};
use std::time::Duration;

use polars::lazy::frame::BUILD_STREAMING_EXECUTOR;
use polars::prelude::*;
use polars_plan::plans::IR;

use super::exec::{RunControl, RunError};

/// Stack for the thread that optimises and runs the plan: Polars walks plans recursively,
/// and a workflow may be [`MAX_DEPTH`](super::parse::MAX_DEPTH) tools deep.
const PLAN_STACK: usize = 256 << 20;

/// How often the caller's thread looks at the cancel flag and the clock.
const WATCH_INTERVAL: Duration = Duration::from_millis(5);

/// Batches in flight between the engine and the caller, per run.
const IN_FLIGHT: usize = 2;

/// Which Polars engine runs a plan (`[limits] engine` in the worker's configuration).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Engine {
    /// Polars' streaming engine: morsels, outputs in batches.
    #[default]
    Streaming,
    /// Polars' in-memory engine: every node materialised, each output one frame.
    InMemory,
}

impl Engine {
    /// Polars' name for it.
    pub(crate) fn polars(self) -> polars::prelude::Engine {
        match self {
            Engine::Streaming => polars::prelude::Engine::Streaming,
            Engine::InMemory => polars::prelude::Engine::InMemory,
        }
    }

    /// Its name, as `hubworker bench expr` prints it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Engine::Streaming => "streaming",
            Engine::InMemory => "in-memory",
        }
    }
}

/// Why a run must stop, as every checkpoint, sink and the caller's thread see it: the run's
/// control (cancelled, out of time) or the caller (nobody listens any more).
#[derive(Debug, Clone)]
pub(crate) struct Halt {
    control: RunControl,
    caller: Arc<AtomicBool>,
}

impl Halt {
    pub(crate) fn new(control: &RunControl) -> Self {
        Halt {
            control: control.clone(),
            caller: Arc::default(),
        }
    }

    /// Whether the run must stop now.
    fn must_stop(&self) -> bool {
        self.caller.load(Ordering::Relaxed) || self.control.check().is_err()
    }

    /// `lf`, passing through a checkpoint: rows flow unchanged (pushdowns pass it), and the
    /// run fails at the next morsel once it must stop.
    pub(crate) fn checkpoint(&self, lf: LazyFrame) -> LazyFrame {
        let halt = self.clone();
        lf.map(
            move |df| {
                if halt.must_stop() {
                    polars_bail!(ComputeError: "{STOPPED}");
                }
                Ok(df)
            },
            OptFlags::PREDICATE_PUSHDOWN
                | OptFlags::PROJECTION_PUSHDOWN
                | OptFlags::SLICE_PUSHDOWN
                | OptFlags::STREAMING,
            None,
            Some("checkpoint"),
        )
    }
}

/// What a checkpoint fails with (never shown: the run's stop reason replaces it).
const STOPPED: &str = "the run was stopped";

/// Runs `plans` (one per output, in output order) on `engine`; each output's rows go to
/// `deliver` in order, on the calling thread, as `(output index, rows)`. Every output is
/// delivered at least once (an empty frame of its schema when it has no rows). `deliver`
/// returning `false` stops the run. What it returns: the rows delivered per output.
pub(crate) fn run(
    plans: Vec<LazyFrame>,
    engine: Engine,
    halt: &Halt,
    deliver: &mut dyn FnMut(usize, DataFrame) -> bool,
) -> Result<Vec<usize>, RunError> {
    if plans.is_empty() {
        return Ok(Vec::new());
    }
    // Kept for the fallback and for the schema of an output that gets no rows.
    let kept = plans.clone();
    let rows: Vec<Cell<usize>> = plans.iter().map(|_| Cell::new(0)).collect();
    let seen: Vec<Cell<bool>> = plans.iter().map(|_| Cell::new(false)).collect();
    let mut take = |k: usize, df: DataFrame| {
        rows[k].set(rows[k].get() + df.height());
        seen[k].set(true);
        if !deliver(k, df) {
            halt.caller.store(true, Ordering::Relaxed);
        }
    };
    let outcome = match engine {
        Engine::Streaming => match streaming(plans, halt, &mut take) {
            Err(Ran::NotImplemented) if !seen.iter().any(Cell::get) => {
                tracing::debug!("the streaming engine cannot run this plan: running it in memory");
                in_memory(kept.clone(), halt, &mut take)
            }
            other => other,
        },
        Engine::InMemory => in_memory(plans, halt, &mut take),
    };
    if let Some(why) = stop_reason(halt) {
        return Err(why);
    }
    outcome.map_err(|r| match r {
        Ran::Failed(e) => e,
        Ran::NotImplemented => RunError::Failed(super::exec::ENGINE_PANICKED.into()),
    })?;
    for (k, mut plan) in kept.into_iter().enumerate() {
        if !seen[k].get() {
            let schema = plan.collect_schema().map_err(super::exec::failed)?;
            take(k, DataFrame::empty_with_schema(&schema));
        }
    }
    match stop_reason(halt) {
        Some(why) => Err(why),
        None => Ok(rows.iter().map(Cell::get).collect()),
    }
}

/// Why the run stopped, if it was stopped (the caller's own failure is the caller's to tell;
/// here it reads as a cancel).
fn stop_reason(halt: &Halt) -> Option<RunError> {
    match halt.control.check() {
        Err(e) => Some(e),
        Ok(()) if halt.caller.load(Ordering::Relaxed) => Some(RunError::Cancelled),
        Ok(()) => None,
    }
}

/// How an engine's run ended, short of being stopped.
enum Ran {
    /// Polars failed (or panicked).
    Failed(RunError),
    /// The streaming engine does not implement part of the plan (it panicked saying so).
    NotImplemented,
}

impl From<PolarsError> for Ran {
    fn from(e: PolarsError) -> Self {
        Ran::Failed(super::exec::failed(e))
    }
}

/// The streaming engine: callback sinks under one multi-sink root, run on a big-stack thread;
/// batches come back over a bounded channel.
fn streaming(
    plans: Vec<LazyFrame>,
    halt: &Halt,
    take: &mut dyn FnMut(usize, DataFrame),
) -> Result<(), Ran> {
    let (tx, rx) = sync_channel::<(usize, DataFrame)>(IN_FLIGHT);
    let mut sinks = Vec::with_capacity(plans.len());
    for (k, lf) in plans.into_iter().enumerate() {
        let tx = tx.clone();
        let halt = halt.clone();
        let callback = PlanCallback::new(move |df: DataFrame| {
            // `true` stops this sink; the checkpoints stop the rest of the plan.
            Ok(halt.must_stop() || tx.send((k, df)).is_err())
        });
        sinks.push(lf.sink_batches(callback, true, None)?.logical_plan);
    }
    drop(tx);
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("workflow-plan".into())
            .stack_size(PLAN_STACK)
            .spawn_scoped(scope, move || {
                LazyFrame::from(DslPlan::SinkMultiple { inputs: sinks })
                    .collect_with_engine(polars::prelude::Engine::Streaming)
                    .map(drop)
            })
            .map_err(|e| {
                Ran::Failed(RunError::Failed(format!(
                    "cannot start the plan thread: {e}"
                )))
            })?;
        loop {
            match rx.recv_timeout(WATCH_INTERVAL) {
                // Rows that arrive once the run must stop are dropped, not delivered.
                Ok((k, df)) if !halt.must_stop() => take(k, df),
                Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        match worker.join() {
            Ok(result) => result.map_err(Ran::from),
            Err(panic) if not_implemented(&*panic) => Err(Ran::NotImplemented),
            Err(_) => Err(Ran::Failed(RunError::Failed(
                super::exec::ENGINE_PANICKED.into(),
            ))),
        }
    })
}

/// Whether a panic is the streaming engine's `todo!()`.
fn not_implemented(panic: &(dyn std::any::Any + Send)) -> bool {
    let text = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str));
    text.is_some_and(|t| t.starts_with("not yet implemented"))
}

/// Why the watchdog stopped the in-memory plan.
const STOP_NONE: u8 = 0;
const STOP_NOW: u8 = 1;

/// The in-memory engine: the plans optimised together (one `SinkMultiple` root, so common
/// subplans are cached and computed once) and run on a big-stack thread, while this thread
/// watches the halt and trips Polars' own stop flag, which every operator checks.
fn in_memory(
    plans: Vec<LazyFrame>,
    halt: &Halt,
    take: &mut dyn FnMut(usize, DataFrame),
) -> Result<(), Ran> {
    let (tx, rx) = std::sync::mpsc::channel::<(usize, DataFrame)>();
    let stopped = AtomicU8::new(STOP_NONE);
    std::thread::scope(|scope| {
        let (token_tx, token_rx) = std::sync::mpsc::channel();
        let worker = std::thread::Builder::new()
            .name("workflow-plan".into())
            .stack_size(PLAN_STACK)
            .spawn_scoped(scope, move || -> PolarsResult<()> {
                let root = LazyFrame::from(DslPlan::SinkMultiple {
                    inputs: plans.into_iter().map(|lf| lf.logical_plan).collect(),
                });
                let mut ir = root.to_alp_optimized()?;
                let roots = match ir.root() {
                    IR::SinkMultiple { inputs } => inputs.clone(),
                    _ => polars_bail!(ComputeError: "the optimiser dropped the multi-output root"),
                };
                let physical = polars_mem_engine::create_multiple_physical_plans(
                    &roots,
                    &mut ir.lp_arena,
                    &mut ir.expr_arena,
                    BUILD_STREAMING_EXECUTOR,
                )?;
                let state = polars_expr::state::ExecutionState::new();
                let _ = token_tx.send(state.cancel_token());
                let mut state = state;
                if let Some(mut prefill) = physical.cache_prefiller {
                    prefill.execute(&mut state)?;
                }
                for (k, mut p) in physical.physical_plans.into_iter().enumerate() {
                    let mut branch = state.split();
                    branch.branch_idx += k;
                    let df = p.execute(&mut branch)?;
                    if tx.send((k, df)).is_err() {
                        break;
                    }
                }
                Ok(())
            })
            .map_err(|e| {
                Ran::Failed(RunError::Failed(format!(
                    "cannot start the plan thread: {e}"
                )))
            })?;
        let mut token = None;
        loop {
            if token.is_none() {
                token = token_rx.try_recv().ok();
            }
            match rx.recv_timeout(WATCH_INTERVAL) {
                Ok((k, df)) if stopped.load(Ordering::SeqCst) == STOP_NONE => take(k, df),
                Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if halt.must_stop() {
                stopped.store(STOP_NOW, Ordering::SeqCst);
                if token.is_none() {
                    token = token_rx.try_recv().ok();
                }
            }
            if let (true, Some(t)) = (stopped.load(Ordering::SeqCst) != STOP_NONE, &token) {
                t.store(true);
            }
        }
        worker
            .join()
            .map_err(|_| Ran::Failed(RunError::Failed(super::exec::ENGINE_PANICKED.into())))?
            .map_err(Ran::from)
    })
}

/// One plan run the way a workflow's output runs (a checkpoint before its sink, rows through
/// the batch channel), collected whole: what `hubworker bench expr` times.
pub(crate) fn collect(plan: LazyFrame, engine: Engine) -> Result<DataFrame, RunError> {
    let halt = Halt::new(&RunControl::default());
    let plan = match engine {
        Engine::Streaming => halt.checkpoint(plan),
        Engine::InMemory => plan,
    };
    let mut out: Option<DataFrame> = None;
    run(vec![plan], engine, &halt, &mut |_, df| match &mut out {
        Some(all) => all.vstack_mut_owned(df).is_ok(),
        None => {
            out = Some(df);
            true
        }
    })?;
    out.ok_or_else(|| RunError::Failed("the plan delivered no rows".into()))
}
