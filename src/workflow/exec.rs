//! Execution: a validated workflow plus its already-loaded `sql` inputs → named result
//! frames. The whole graph is one Polars lazy plan with one sink per output, optimised and run
//! together (a subplan several outputs share is computed once), under a cancel flag and a
//! wall-clock limit. This module never opens a connection: inputs arrive as frames, so a cache
//! or a sandbox can sit in front of it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use polars::prelude::*;

use super::engine::{self, Engine, Halt};
use super::plan::{Built, Input};
use super::problem::{Problem, Problems};
use super::tools::Role;
use super::validate::Workflow;

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

/// Where a run's progress and rows go, on the calling thread.
pub(crate) trait Sink {
    /// A node started or finished.
    fn event(&mut self, event: Event);
    /// Rows of the output named `name`, in order, as the engine produces them. Every output
    /// gets at least one batch (an empty frame of its schema when it has no rows); its last
    /// batch has come when [`end`](Self::end) is called for it. `false` stops the run.
    fn rows(&mut self, name: &str, rows: DataFrame) -> bool;
    /// The output named `name` is complete (right after its node's [`Event::Finished`]).
    fn end(&mut self, _name: &str) {}
}

/// Runs `workflow` over `inputs` (one frame per `sql` node id) on the default engine and
/// collects each output whole. Events arrive in order on the calling thread.
pub(crate) fn execute(
    workflow: &Workflow,
    inputs: HashMap<String, DataFrame>,
    control: &RunControl,
    events: &mut dyn FnMut(Event),
) -> Result<Vec<Output>, RunError> {
    execute_on(workflow, inputs, control, Engine::default(), events)
}

/// [`execute`] on a chosen engine.
pub(crate) fn execute_on(
    workflow: &Workflow,
    inputs: HashMap<String, DataFrame>,
    control: &RunControl,
    engine: Engine,
    events: &mut dyn FnMut(Event),
) -> Result<Vec<Output>, RunError> {
    struct Collect<'a> {
        events: &'a mut dyn FnMut(Event),
        outputs: Vec<Output>,
    }
    impl Sink for Collect<'_> {
        fn event(&mut self, event: Event) {
            (self.events)(event);
        }
        fn rows(&mut self, name: &str, rows: DataFrame) -> bool {
            match self.outputs.iter_mut().find(|o| o.name == name) {
                Some(o) => o.frame.vstack_mut_owned(rows).is_ok(),
                None => {
                    self.outputs.push(Output {
                        name: name.to_owned(),
                        frame: rows,
                    });
                    true
                }
            }
        }
    }
    let mut collect = Collect {
        events,
        outputs: Vec::new(),
    };
    stream(workflow, inputs, control, engine, &mut collect)?;
    // In the workflow's output order (the order the outputs' nodes come in).
    let order: Vec<&str> = workflow
        .steps
        .iter()
        .filter_map(|s| match s.tool.kind().role() {
            Role::Output { name } => Some(name),
            _ => None,
        })
        .collect();
    let mut outputs = collect.outputs;
    outputs.sort_by_key(|o| order.iter().position(|n| *n == o.name));
    Ok(outputs)
}

/// Runs `workflow` over `inputs` on `engine`; progress and rows go to `sink` as they come.
///
/// Events come in plan order: every node built from its inputs is `Started` before anything
/// runs (typed rows are started and finished first: their rows are known), and `Finished`, in
/// the workflow's node order, once the plan has run; an output's `Finished` carries its row
/// count and follows its last batch.
///
/// A panic inside Polars (building, optimising or running the plan; e.g. a date offset that
/// leaves the calendar chrono can represent) is caught and answered as
/// [`RunError::Failed`] (`execution_failed`), never a crash. Nothing shared is left behind
/// half-changed: the plan, its frames and its thread belong to this call, and the only state
/// it touches outside (Polars' thread pools and caches) takes no poisoning locks.
pub(crate) fn stream(
    workflow: &Workflow,
    inputs: HashMap<String, DataFrame>,
    control: &RunControl,
    engine: Engine,
    sink: &mut dyn Sink,
) -> Result<(), RunError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        stream_unguarded(workflow, inputs, control, engine, sink)
    }))
    .unwrap_or_else(|_| Err(RunError::Failed(ENGINE_PANICKED.into())))
}

/// What a run reports when Polars panicked (its panic text stays in the log).
pub(super) const ENGINE_PANICKED: &str = "the engine failed on this workflow (internal error)";

fn stream_unguarded(
    workflow: &Workflow,
    mut inputs: HashMap<String, DataFrame>,
    control: &RunControl,
    engine: Engine,
    sink: &mut dyn Sink,
) -> Result<(), RunError> {
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

    let halt = Halt::new(control);
    // The streaming engine stops at checkpoints; the in-memory one has a stop flag.
    let checkpoints = (engine == Engine::Streaming).then_some(&halt);
    let built = build(workflow, &sources, &schemas, checkpoints, &mut |e| {
        sink.event(e)
    })?;

    let is_output = |i: usize| matches!(steps[i].tool.kind().role(), Role::Output { .. });
    let outputs: Vec<usize> = (0..steps.len())
        .filter(|&i| is_output(i) && built[i].is_some())
        .collect();
    let plans: Vec<LazyFrame> = outputs
        .iter()
        .filter_map(|&i| built[i].as_ref().map(|b| b.main.clone()))
        .collect();
    drop(built);
    for (i, step) in steps.iter().enumerate() {
        if sources[i].is_none() {
            sink.event(Event::Started {
                node: step.id.clone(),
                tool: step.tool.name(),
            });
        }
    }
    let name_of = |k: usize| match steps[outputs[k]].tool.kind().role() {
        Role::Output { name } => name,
        _ => "",
    };
    let rows = engine::run(plans, engine, &halt, &mut |k, df| sink.rows(name_of(k), df))?;
    for (i, step) in steps.iter().enumerate() {
        if sources[i].is_none() {
            let output = outputs.iter().position(|&o| o == i);
            sink.event(Event::Finished {
                node: step.id.clone(),
                tool: step.tool.name(),
                rows: output.and_then(|k| rows.get(k).copied()),
            });
            if let Some(k) = output {
                sink.end(name_of(k));
            }
        }
    }
    Ok(())
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
    checkpoints: Option<&Halt>,
    events: &mut dyn FnMut(Event),
) -> Result<Vec<Option<Built>>, RunError> {
    let checked = |lf: LazyFrame| match checkpoints {
        Some(halt) => halt.checkpoint(lf),
        None => lf,
    };
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
                    main: checked(df.clone().lazy()),
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
                if !matches!(role, Role::Output { .. }) {
                    b.main = checked(b.main);
                    b.rejected = b.rejected.map(checked);
                }
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

pub(super) fn failed(e: PolarsError) -> RunError {
    RunError::Failed(super::problem::polars_problem(&e).1)
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
