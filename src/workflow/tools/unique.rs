//! The `unique` tool: one row per distinct value of `columns` (all columns when absent),
//! stable. Owns the check of those names and which duplicate it keeps.

use polars::prelude::*;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{ToolKind, by_plan, first, need};
use crate::workflow::plan::{self, Built, Compiled, Input};
use crate::workflow::problem::Report;

/// Drop duplicate rows (stable).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Unique {
    /// Input reference.
    pub(crate) input: String,
    /// Columns that define a duplicate.
    #[serde(default)]
    pub(crate) columns: Option<Vec<String>>,
    /// Which of the duplicates to keep.
    #[serde(default)]
    pub(crate) keep: Keep,
}

/// Which duplicate `unique` keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Keep {
    /// The first in input order.
    #[default]
    First,
    /// The last in input order.
    Last,
    /// Rows that have no duplicate at all.
    None,
}

/// The fields of a valid node of this tool (an input, if any, is `src`: columns `k: Int64` and
/// `v: String`); the registry's tests run every tool through the dispatch with it.
#[cfg(test)]
pub(super) const SAMPLE: &str = r#"{"input": "src", "columns": ["v"]}"#;

impl ToolKind for Unique {
    fn inputs(&self) -> Vec<(String, &str)> {
        vec![("input".to_owned(), self.input.as_str())]
    }

    fn check(&self, report: &mut Report<'_>) -> Compiled {
        if self.columns.as_ref().is_some_and(Vec::is_empty) {
            report.push(
                "columns",
                "invalid_value",
                "omit `columns` to compare whole rows",
            );
        }
        Compiled::Plain
    }

    fn predict(
        &self,
        compiled: &Compiled,
        inputs: &[SchemaRef],
        report: &mut Report<'_>,
    ) -> Option<SchemaRef> {
        let first = first(inputs);
        for (i, c) in self.columns.iter().flatten().enumerate() {
            need(report, &first, c, format!("columns[{i}]"));
        }
        if !report.is_clean() {
            return None;
        }
        by_plan(self, compiled, inputs, report)
    }

    fn plan(&self, _compiled: &Compiled, inputs: Vec<Input>) -> PolarsResult<Built> {
        let lf = plan::single(inputs)?.frame;
        let subset = self
            .columns
            .as_ref()
            .map(|cols| cols.iter().map(|c| col(c.as_str())).collect());
        let keep = match self.keep {
            Keep::First => UniqueKeepStrategy::First,
            Keep::Last => UniqueKeepStrategy::Last,
            Keep::None => UniqueKeepStrategy::None,
        };
        Ok(Built::main(lf.unique_stable_generic(subset, keep)))
    }

    fn weight(&self, _compiled: &Compiled) -> u64 {
        self.columns.as_ref().map_or(0, Vec::len) as u64
    }
}
