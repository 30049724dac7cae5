//! Execution: a validated workflow plus its already-loaded `sql` inputs → named result
//! frames. The whole graph is one Polars lazy plan with one sink per output, optimised and run
//! together (a subplan several outputs share is computed once), under a cancel flag and a
//! wall-clock limit. This module never opens a connection: inputs arrive as frames, so a cache
//! or a sandbox can sit in front of it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use polars::lazy::frame::BUILD_STREAMING_EXECUTOR;
use polars::prelude::*;
use polars_plan::plans::IR;

use super::plan::{Built, Input};
use super::problem::{Problem, Problems};
use super::tools::Role;
use super::validate::Workflow;

/// Stack for the thread that optimises and runs the plan: Polars walks plans recursively,
/// and a workflow may be [`MAX_DEPTH`](super::parse::MAX_DEPTH) tools deep.
const PLAN_STACK: usize = 256 << 20;

/// How often the watchdog looks at the cancel flag and the clock.
const WATCH_INTERVAL: Duration = Duration::from_millis(5);

/// A progress event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// A node started (for tools fused into the plan: when the plan starts running).
    Started {
        /// Node id.
        node: String,
        /// Tool name.
        tool: &'static str,
    },
    /// A node finished; `rows` where the node's output was materialised (sources, outputs).
    Finished {
        /// Node id.
        node: String,
        /// Tool name.
        tool: &'static str,
        /// Rows produced, where known.
        rows: Option<usize>,
    },
}

/// Cooperative cancellation and the wall-clock limit of one run. Clones share the flag.
#[derive(Debug, Clone, Default)]
pub(crate) struct RunControl {
    cancel: Arc<AtomicBool>,
    deadline: Option<Instant>,
}

impl RunControl {
    /// A control that stops the run `limit` after now.
    pub(crate) fn with_timeout(limit: Duration) -> Self {
        RunControl {
            cancel: Arc::default(),
            deadline: Instant::now().checked_add(limit),
        }
    }

    /// Asks the run to stop at the next operator boundary.
    pub(crate) fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }

    /// Whether [`cancel`](Self::cancel) was called.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    /// Why the run must stop now, if it must.
    pub(crate) fn check(&self) -> Result<(), RunError> {
        if self.is_cancelled() {
            return Err(RunError::Cancelled);
        }
        match self.deadline {
            Some(d) if Instant::now() >= d => Err(RunError::Timeout),
            _ => Ok(()),
        }
    }
}

/// Why a run did not produce its results.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RunError {
    /// The loaded inputs do not fit the workflow (e.g. a query's columns are not the ones
    /// later tools use).
    #[error("{0}")]
    Invalid(Problems),
    /// A `sql` node's frame was not supplied.
    #[error("no input frame for sql node {0:?}")]
    MissingInput(String),
    /// [`RunControl::cancel`] was called.
    #[error("the run was cancelled")]
    Cancelled,
    /// The wall-clock limit passed.
    #[error("the run exceeded its time limit")]
    Timeout,
    /// Polars failed while running (e.g. a strict cast met a value it cannot convert).
    #[error("execution failed: {0}")]
    Failed(String),
}

impl RunError {
    /// Stable error code.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            RunError::Invalid(_) => "invalid_workflow",
            RunError::MissingInput(_) => "missing_input",
            RunError::Cancelled => "cancelled",
            RunError::Timeout => "timeout",
            RunError::Failed(_) => "execution_failed",
        }
    }
}

/// One named result.
#[derive(Debug, Clone)]
pub(crate) struct Output {
    /// The output node's `name`.
    pub(crate) name: String,
    /// The rows.
    pub(crate) frame: DataFrame,
}

/// Runs `workflow` over `inputs` (one frame per `sql` node id). Events arrive in order on
/// the calling thread.
///
/// A panic inside Polars (building, optimising or running the plan; e.g. a date offset that
/// leaves the calendar chrono can represent) is caught and answered as
/// [`RunError::Failed`] (`execution_failed`), never a crash. Nothing shared is left behind
/// half-changed: the plan, its frames and its thread belong to this call, and the only state
/// it touches outside (Polars' thread pool and caches) takes no poisoning locks.
pub(crate) fn execute(
    workflow: &Workflow,
    inputs: HashMap<String, DataFrame>,
    control: &RunControl,
    events: &mut dyn FnMut(Event),
) -> Result<Vec<Output>, RunError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        execute_unguarded(workflow, inputs, control, events)
    }))
    .unwrap_or_else(|_| Err(RunError::Failed(ENGINE_PANICKED.into())))
}

/// What a run reports when Polars panicked (its panic text stays in the log).
const ENGINE_PANICKED: &str = "the engine failed on this workflow (internal error)";

fn execute_unguarded(
    workflow: &Workflow,
    mut inputs: HashMap<String, DataFrame>,
    control: &RunControl,
    events: &mut dyn FnMut(Event),
) -> Result<Vec<Output>, RunError> {
    control.check()?;
    let steps = &workflow.steps;
    let sources = source_frames(workflow, &mut inputs)?;
    // The schemas of the queries' results are known now: check every node again with them.
    let mut problems: Vec<Problem> = Vec::new();
    let usable = vec![true; steps.len()];
    let schemas = super::predict::predict(
        steps,
        &usable,
        &|i| sources[i].as_ref().map(|df| df.schema().clone()),
        &mut problems,
    );
    if !problems.is_empty() {
        return Err(RunError::Invalid(Problems(problems)));
    }

    let built = build(workflow, &sources, &schemas, events)?;

    let is_output = |i: usize| matches!(steps[i].tool.kind().role(), Role::Output { .. });
    let outputs: Vec<usize> = (0..steps.len()).filter(|&i| is_output(i)).collect();
    let plans: Vec<LazyFrame> = outputs
        .iter()
        .filter_map(|&i| built[i].as_ref().map(|b| b.main.clone()))
        .collect();
    drop(built);
    for (i, step) in steps.iter().enumerate() {
        if sources[i].is_none() {
            events(Event::Started {
                node: step.id.clone(),
                tool: step.tool.name(),
            });
        }
    }

    let mut results = Vec::with_capacity(outputs.len());
    run_plans(plans, control, &mut |k, df| {
        let step = &steps[outputs[k]];
        events(Event::Finished {
            node: step.id.clone(),
            tool: step.tool.name(),
            rows: Some(df.height()),
        });
        if let Role::Output { name } = step.tool.kind().role() {
            results.push(Output {
                name: name.to_owned(),
                frame: df,
            });
        }
    })?;
    for (i, step) in steps.iter().enumerate() {
        if sources[i].is_none() && !is_output(i) {
            events(Event::Finished {
                node: step.id.clone(),
                tool: step.tool.name(),
                rows: None,
            });
        }
    }
    Ok(results)
}

/// The frames the plan starts from, per step: a query's (from the run's inputs) and typed
/// rows; `None` for steps built from their inputs.
fn source_frames(
    workflow: &Workflow,
    inputs: &mut HashMap<String, DataFrame>,
) -> Result<Vec<Option<DataFrame>>, RunError> {
    let steps = &workflow.steps;
    let mut sources: Vec<Option<DataFrame>> = Vec::with_capacity(steps.len());
    for step in steps {
        sources.push(match step.tool.kind().role() {
            Role::Query { .. } => Some(
                inputs
                    .remove(&step.id)
                    .ok_or_else(|| RunError::MissingInput(step.id.clone()))?,
            ),
            Role::Rows => step.compiled.frame().cloned(),
            _ => None,
        });
    }
    Ok(sources)
}

/// Every step as a lazy frame over its inputs', in step order. Typed rows are reported
/// finished here: their rows are known before anything runs.
fn build(
    workflow: &Workflow,
    sources: &[Option<DataFrame>],
    schemas: &[Option<SchemaRef>],
    events: &mut dyn FnMut(Event),
) -> Result<Vec<Option<Built>>, RunError> {
    let steps = &workflow.steps;
    // How often each node's main and rejected rows are read. A frame read twice is built
    // once and marked as a shared subplan (`cache`), so Polars converts and runs it once
    // instead of unfolding it into every reader (a chain of self-joins would otherwise double
    // the plan at every step; see `size.rs`). A filter read on both of its outputs shares its
    // input the same way.
    let mut reads = vec![[0u32; 2]; steps.len()];
    for step in steps {
        for p in &step.inputs {
            if let Some(r) = reads.get_mut(p.step) {
                r[usize::from(p.rejected)] += 1;
            }
        }
    }
    let mut built: Vec<Option<Built>> = Vec::with_capacity(steps.len());
    for (i, step) in steps.iter().enumerate() {
        let role = step.tool.kind().role();
        let b = match &sources[i] {
            Some(df) => {
                if role == Role::Rows {
                    events(Event::Started {
                        node: step.id.clone(),
                        tool: step.tool.name(),
                    });
                    events(Event::Finished {
                        node: step.id.clone(),
                        tool: step.tool.name(),
                        rows: Some(df.height()),
                    });
                }
                Built {
                    main: df.clone().lazy(),
                    rejected: None,
                }
            }
            None => {
                let both = role == Role::Split && reads[i].iter().all(|&n| n > 0);
                let ins = step
                    .inputs
                    .iter()
                    .map(|p| {
                        let b = built[p.step].as_ref();
                        let frame = match (b, p.rejected) {
                            (Some(b), true) => b.rejected.clone().unwrap_or_else(|| b.main.clone()),
                            (Some(b), false) => b.main.clone(),
                            (None, _) => DataFrame::empty().lazy(),
                        };
                        Input {
                            frame: if both { frame.cache() } else { frame },
                            schema: schemas[p.step].clone().unwrap_or_default(),
                        }
                    })
                    .collect();
                let mut b = step.tool.kind().plan(&step.compiled, ins).map_err(failed)?;
                if reads[i][0] > 1 {
                    b.main = b.main.cache();
                }
                if reads[i][1] > 1 {
                    b.rejected = b.rejected.map(LazyFrame::cache);
                }
                b
            }
        };
        built.push(Some(b));
    }
    Ok(built)
}

fn failed(e: PolarsError) -> RunError {
    RunError::Failed(super::problem::polars_problem(&e).1)
}

/// Why the watchdog stopped the plan.
const STOP_NONE: u8 = 0;
const STOP_CANCEL: u8 = 1;
const STOP_TIMEOUT: u8 = 2;

/// Optimises the plans together (one `SinkMultiple` root, so common subplans are cached and
/// computed once) and runs them on a big-stack thread, while this thread watches the cancel
/// flag and the clock and trips Polars' own stop flag, which every operator checks.
fn run_plans(
    plans: Vec<LazyFrame>,
    control: &RunControl,
    done: &mut dyn FnMut(usize, DataFrame),
) -> Result<(), RunError> {
    if plans.is_empty() {
        return Ok(());
    }
    let (tx, rx) = std::sync::mpsc::channel::<(usize, DataFrame)>();
    let stopped = AtomicU8::new(STOP_NONE);
    let outcome = std::thread::scope(|scope| {
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
            });
        let worker = match worker {
            Ok(w) => w,
            Err(e) => {
                return Err(RunError::Failed(format!(
                    "cannot start the plan thread: {e}"
                )));
            }
        };
        let mut token = None;
        loop {
            if token.is_none() {
                token = token_rx.try_recv().ok();
            }
            match rx.recv_timeout(WATCH_INTERVAL) {
                Ok((k, df)) => done(k, df),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            }
            if stopped.load(Ordering::SeqCst) == STOP_NONE {
                let why = match control.check() {
                    Err(RunError::Cancelled) => STOP_CANCEL,
                    Err(_) => STOP_TIMEOUT,
                    Ok(()) => STOP_NONE,
                };
                if why != STOP_NONE {
                    stopped.store(why, Ordering::SeqCst);
                    if token.is_none() {
                        token = token_rx.try_recv().ok();
                    }
                }
            }
            if let (true, Some(t)) = (stopped.load(Ordering::SeqCst) != STOP_NONE, &token) {
                t.store(true);
            }
        }
        worker
            .join()
            .map_err(|_| RunError::Failed(ENGINE_PANICKED.into()))?
            .map_err(failed)
    });
    match stopped.load(Ordering::SeqCst) {
        STOP_CANCEL => Err(RunError::Cancelled),
        STOP_TIMEOUT => Err(RunError::Timeout),
        _ => outcome,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::workflow::validate;

    fn formula(expression: &str) -> String {
        json!({"version": 1, "nodes": [
            {"id": "src", "tool": "inline", "columns": [{"name": "k", "type": "Int64"}],
             "rows": [[1], [2]]},
            {"id": "f", "tool": "formula", "input": "src",
             "formulas": [{"column": "d", "expression": expression}]},
            {"id": "out", "tool": "output", "input": "f", "name": "out"}]})
        .to_string()
    }

    fn run(expression: &str) -> Result<Vec<Output>, RunError> {
        let wf = validate(&formula(expression)).unwrap_or_else(|p| panic!("{p}"));
        execute(&wf, HashMap::new(), &RunControl::default(), &mut |_| {})
    }

    /// polars-time panics when a date offset leaves chrono's calendar (year 262142 + 2y): the
    /// run fails with `execution_failed`, and the next run on the same thread is unaffected.
    #[test]
    fn a_panic_inside_polars_is_a_run_error() {
        for _ in 0..2 {
            let e = run("pl.date(262142, 12, 31).dt.offset_by(\"2y\")").unwrap_err();
            assert_eq!(e.code(), "execution_failed");
            assert_eq!(
                e.to_string(),
                "execution failed: the engine failed on this workflow (internal error)"
            );
            let outs = run("pl.date(2024, 1, 31).dt.offset_by(\"1mo\")").expect("healthy");
            let d = outs[0]
                .frame
                .column("d")
                .unwrap()
                .cast(&DataType::String)
                .unwrap();
            let d: Vec<Option<&str>> = d.str().unwrap().iter().collect();
            assert_eq!(d, [Some("2024-02-29"), Some("2024-02-29")]);
        }
    }
}
