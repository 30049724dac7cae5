//! The `output` tool: a named result sent back to the caller. Owns the rule for result names;
//! it passes no rows on to other nodes (the graph refuses readers of an output).

use polars::prelude::*;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{Role, ToolKind};
use crate::workflow::parse;
use crate::workflow::plan::{self, Built, Compiled, Input};
use crate::workflow::problem::Report;

/// A named result sent back to the caller.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Output {
    /// Input reference.
    pub(crate) input: String,
    /// Result name (unique; letters, digits, `_`, `-`).
    pub(crate) name: String,
}

/// The fields of a valid node of this tool (an input, if any, is `src`: columns `k: Int64` and
/// `v: String`); the registry's tests run every tool through the dispatch with it.
#[cfg(test)]
pub(super) const SAMPLE: &str = r#"{"input": "src", "name": "t"}"#;

impl ToolKind for Output {
    fn inputs(&self) -> Vec<(String, &str)> {
        vec![("input".to_owned(), self.input.as_str())]
    }

    fn role(&self) -> Role<'_> {
        Role::Output { name: &self.name }
    }

    fn check(&self, report: &mut Report<'_>) -> Compiled {
        if !parse::is_valid_name(&self.name) {
            report.push(
                "name",
                "bad_name",
                format!(
                    "result name {:?} must be 1 to 64 of letters, digits, `_` and `-`",
                    self.name
                ),
            );
        }
        Compiled::Plain
    }

    fn plan(&self, _compiled: &Compiled, inputs: Vec<Input>) -> PolarsResult<Built> {
        Ok(Built::main(plan::single(inputs)?.frame))
    }
}
