//! The `sort` tool: a stable sort by one or more columns. Owns the check of its keys; never
//! reorders rows that compare equal.

use polars::prelude::*;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{ToolKind, by_plan, first, need};
use crate::workflow::plan::{self, Built, Compiled, Input};
use crate::workflow::problem::Report;

/// Order rows (stable).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Sort {
    /// Input reference.
    pub(crate) input: String,
    /// Sort keys, most significant first.
    pub(crate) by: Vec<SortKey>,
}

/// One sort key.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SortKey {
    /// Column name.
    pub(crate) column: String,
    /// Largest first.
    #[serde(default)]
    pub(crate) descending: bool,
    /// Nulls after every value (default: before, as Polars).
    #[serde(default)]
    pub(crate) nulls_last: bool,
}

/// The fields of a valid node of this tool (an input, if any, is `src`: columns `k: Int64` and
/// `v: String`); the registry's tests run every tool through the dispatch with it.
#[cfg(test)]
pub(super) const SAMPLE: &str = r#"{"input": "src", "by": [{"column": "k", "descending": true}]}"#;

impl ToolKind for Sort {
    fn inputs(&self) -> Vec<(String, &str)> {
        vec![("input".to_owned(), self.input.as_str())]
    }

    fn check(&self, report: &mut Report<'_>) -> Compiled {
        if self.by.is_empty() {
            report.push("by", "invalid_value", "at least one sort key is needed");
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
        for (i, k) in self.by.iter().enumerate() {
            need(report, &first, &k.column, format!("by[{i}].column"));
        }
        if !report.is_clean() {
            return None;
        }
        by_plan(self, compiled, inputs, report)
    }

    fn plan(&self, _compiled: &Compiled, inputs: Vec<Input>) -> PolarsResult<Built> {
        let lf = plan::single(inputs)?.frame;
        let by: Vec<Expr> = self.by.iter().map(|k| col(k.column.as_str())).collect();
        let options = SortMultipleOptions::default()
            .with_order_descending_multi(self.by.iter().map(|k| k.descending))
            .with_nulls_last_multi(self.by.iter().map(|k| k.nulls_last))
            .with_maintain_order(true);
        Ok(Built::main(lf.sort_by_exprs(by, options)))
    }

    fn weight(&self, _compiled: &Compiled) -> u64 {
        self.by.len() as u64
    }
}
