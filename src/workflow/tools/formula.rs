//! The `formula` tool: `with_columns`, one expression after another (later ones see earlier
//! ones). Owns its expressions' compilation and their column and type checks; never evaluates
//! anything at validation (schemas come from empty frames).

use polars::prelude::*;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{ToolKind, by_plan, expr_nodes, expression, first};
use crate::workflow::plan::{self, Built, Compiled, Input};
use crate::workflow::problem::Report;

/// Compute columns from expressions, in order (later ones see earlier ones).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Formula {
    /// Input reference.
    pub(crate) input: String,
    /// Columns to compute (a new name adds a column, an existing one replaces it).
    pub(crate) formulas: Vec<FormulaColumn>,
}

/// One computed column.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FormulaColumn {
    /// Name of the column to write.
    pub(crate) column: String,
    /// A Polars expression in Python syntax, e.g. `pl.col("price") * pl.col("qty")`.
    pub(crate) expression: String,
}

/// The fields of a valid node of this tool (an input, if any, is `src`: columns `k: Int64` and
/// `v: String`); the registry's tests run every tool through the dispatch with it.
#[cfg(test)]
pub(super) const SAMPLE: &str = r#"{"input": "src", "formulas": [{"column": "w", "expression": "pl.col('k') * 2"}]}"#;

impl ToolKind for Formula {
    fn inputs(&self) -> Vec<(String, &str)> {
        vec![("input".to_owned(), self.input.as_str())]
    }

    fn check(&self, report: &mut Report<'_>) -> Compiled {
        if self.formulas.is_empty() {
            report.push(
                "formulas",
                "invalid_value",
                "at least one formula is needed",
            );
        }
        let mut exprs = Vec::with_capacity(self.formulas.len());
        for (i, fc) in self.formulas.iter().enumerate() {
            if fc.column.is_empty() {
                report.push(
                    format!("formulas[{i}].column"),
                    "invalid_value",
                    "a column name is not empty",
                );
            }
            if let Some(e) = expression(report, &fc.expression, format!("formulas[{i}].expression"))
            {
                exprs.push(e);
            }
        }
        Compiled::Exprs(exprs)
    }

    /// Column by column, so a problem names the formula it is in.
    fn predict(
        &self,
        compiled: &Compiled,
        inputs: &[SchemaRef],
        report: &mut Report<'_>,
    ) -> Option<SchemaRef> {
        let Compiled::Exprs(exprs) = compiled else {
            return by_plan(self, compiled, inputs, report);
        };
        let mut schema = first(inputs);
        for (i, (fc, e)) in self.formulas.iter().zip(exprs).enumerate() {
            match plan::empty(&schema)
                .with_column(e.clone().alias(fc.column.as_str()))
                .collect_schema()
            {
                Ok(s) => schema = s,
                Err(err) => {
                    report.polars(format!("formulas[{i}].expression"), &err);
                    return None;
                }
            }
        }
        Some(schema)
    }

    fn plan(&self, compiled: &Compiled, inputs: Vec<Input>) -> PolarsResult<Built> {
        let Compiled::Exprs(exprs) = compiled else {
            return Err(plan::not_built("formula"));
        };
        let mut lf = plan::single(inputs)?.frame;
        for (fc, e) in self.formulas.iter().zip(exprs) {
            lf = lf.with_column(e.clone().alias(fc.column.as_str()));
        }
        Ok(Built::main(lf))
    }

    fn weight(&self, compiled: &Compiled) -> u64 {
        match compiled {
            Compiled::Exprs(es) => es.iter().map(expr_nodes).sum(),
            _ => 0,
        }
    }
}
