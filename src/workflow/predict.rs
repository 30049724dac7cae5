//! Schema prediction: every step's output schema from its inputs' schemas, without data. Each
//! tool predicts its own (most by building their plan over empty frames: the same builder that
//! runs it) and checks column names and types on the way; this module walks the steps in order
//! and never knows a tool by name. Used by validation (query schemas unknown) and again by the
//! executor once the queries' results are loaded.

use polars::prelude::*;

use super::problem::{Problem, Report};
use super::tools::Role;
use super::validate::Step;

/// Predicts every step's output schema. `source` gives the schema of a query step where it
/// is known (at run time, from the loaded frame). Steps marked unusable, and their
/// dependants, get `None`.
pub(crate) fn predict(
    steps: &[Step],
    usable: &[bool],
    source: &dyn Fn(usize) -> Option<SchemaRef>,
    problems: &mut Vec<Problem>,
) -> Vec<Option<SchemaRef>> {
    let mut out: Vec<Option<SchemaRef>> = Vec::with_capacity(steps.len());
    for (i, step) in steps.iter().enumerate() {
        let tool = step.tool.kind();
        let schema = if !usable[i] {
            None
        } else if let Role::Query { .. } = tool.role() {
            source(i)
        } else {
            let inputs: Option<Vec<SchemaRef>> =
                step.inputs.iter().map(|p| out[p.step].clone()).collect();
            inputs.and_then(|inputs| {
                let mut report = Report::new(&step.id, problems);
                tool.predict(&step.compiled, &inputs, &mut report)
            })
        };
        out.push(schema);
    }
    out
}
