//! The `select` tool: `columns` keeps and orders (all columns in input order when absent), then
//! `drop`, `cast` and `rename` apply, each naming input columns. Owns the checks of those names
//! and the cast rules (text to dates and times is strict parsing); never coerces silently.

use std::collections::BTreeMap;

use polars::prelude::*;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{ToolKind, by_plan, first, need};
use crate::workflow::model::ColumnType;
use crate::workflow::plan::{self, Built, Compiled, Input};
use crate::workflow::problem::Report;

/// Keep, drop, rename, reorder and cast columns.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Select {
    /// Input reference.
    pub(crate) input: String,
    /// Columns to keep, in output order.
    #[serde(default)]
    pub(crate) columns: Option<Vec<String>>,
    /// Columns to remove.
    #[serde(default)]
    pub(crate) drop: Vec<String>,
    /// Column → new type (strict: a value that does not convert fails the run).
    #[serde(default)]
    pub(crate) cast: BTreeMap<String, ColumnType>,
    /// Column → new name.
    #[serde(default)]
    pub(crate) rename: BTreeMap<String, String>,
}

/// The fields of a valid node of this tool (an input, if any, is `src`: columns `k: Int64` and
/// `v: String`); the registry's tests run every tool through the dispatch with it.
#[cfg(test)]
pub(super) const SAMPLE: &str = r#"{"input": "src", "columns": ["v", "k"], "rename": {"k": "key"}}"#;

impl ToolKind for Select {
    fn inputs(&self) -> Vec<(String, &str)> {
        vec![("input".to_owned(), self.input.as_str())]
    }

    fn check(&self, report: &mut Report<'_>) -> Compiled {
        for (from, to) in &self.rename {
            if to.is_empty() {
                report.push(
                    format!("rename.{from}"),
                    "invalid_value",
                    "a column name is not empty",
                );
            }
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
        for (i, c) in self.drop.iter().enumerate() {
            need(report, &first, c, format!("drop[{i}]"));
        }
        for c in self.cast.keys() {
            need(report, &first, c, format!("cast.{c}"));
        }
        for c in self.rename.keys() {
            need(report, &first, c, format!("rename.{c}"));
        }
        if !report.is_clean() {
            return None;
        }
        by_plan(self, compiled, inputs, report)
    }

    fn plan(&self, _compiled: &Compiled, inputs: Vec<Input>) -> PolarsResult<Built> {
        let input = plan::single(inputs)?;
        let names: Vec<PlSmallStr> = match &self.columns {
            Some(cols) => cols.iter().map(|c| PlSmallStr::from_str(c)).collect(),
            None => input.schema.iter_names().cloned().collect(),
        };
        let exprs: Vec<Expr> = names
            .iter()
            .filter(|n| !self.drop.iter().any(|d| d.as_str() == n.as_str()))
            .map(|n| {
                let mut e = col(n.clone());
                if let Some(t) = self.cast.get(n.as_str()) {
                    let text = input.schema.get(n) == Some(&DataType::String);
                    e = if text && t.dtype().is_temporal() && *t != ColumnType::Duration {
                        // Text to dates and times is parsing (the format inferred from the
                        // values, strictly), not a cast; Polars deprecates the cast.
                        let options = StrptimeOptions {
                            strict: true,
                            ..StrptimeOptions::default()
                        };
                        e.str().strptime(t.dtype(), options, lit("raise"))
                    } else {
                        e.strict_cast(t.dtype())
                    };
                }
                if let Some(to) = self.rename.get(n.as_str()) {
                    e = e.alias(to.as_str());
                }
                e
            })
            .collect();
        Ok(Built::main(input.frame.select(exprs)))
    }

    fn weight(&self, _compiled: &Compiled) -> u64 {
        let listed = self.columns.as_ref().map_or(0, Vec::len)
            + self.drop.len()
            + self.cast.len()
            + self.rename.len();
        listed as u64
    }
}
