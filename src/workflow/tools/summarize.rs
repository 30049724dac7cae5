//! The `summarize` tool: group by columns (first-appearance order) and aggregate; without
//! `group_by`, one row over everything. Owns the aggregate functions, their default output
//! names and the type checks Polars itself would only make while running.

use polars::prelude::*;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{ToolKind, by_plan, first, need};
use crate::workflow::plan::{self, Built, Compiled, Input};
use crate::workflow::problem::Report;

/// Group and aggregate.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Summarize {
    /// Input reference.
    pub(crate) input: String,
    /// Grouping columns.
    #[serde(default)]
    pub(crate) group_by: Vec<String>,
    /// Aggregations, in output order after the grouping columns.
    pub(crate) aggregations: Vec<Aggregation>,
}

/// One aggregation.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Aggregation {
    /// Aggregate function.
    pub(crate) op: AggOp,
    /// Input column (optional for `count`, which then counts rows).
    #[serde(default)]
    pub(crate) column: Option<String>,
    /// Output column name (default `COLUMN_OP`, or `count` for a row count).
    #[serde(default, rename = "as")]
    pub(crate) alias: Option<String>,
    /// Separator for `concat` (default `,`).
    #[serde(default)]
    pub(crate) separator: Option<String>,
}

/// Aggregate functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum AggOp {
    /// Sum of non-null values.
    Sum,
    /// Mean of non-null values.
    Mean,
    /// Smallest value.
    Min,
    /// Largest value.
    Max,
    /// Non-null values (rows, without a column).
    Count,
    /// Distinct non-null values.
    CountDistinct,
    /// First value in input order.
    First,
    /// Last value in input order.
    Last,
    /// Median.
    Median,
    /// Sample standard deviation (ddof 1).
    Std,
    /// Non-null values as text, joined with `separator`, in input order.
    Concat,
}

impl AggOp {
    /// The op's name as written in the document.
    pub(crate) fn name(self) -> &'static str {
        match self {
            AggOp::Sum => "sum",
            AggOp::Mean => "mean",
            AggOp::Min => "min",
            AggOp::Max => "max",
            AggOp::Count => "count",
            AggOp::CountDistinct => "count_distinct",
            AggOp::First => "first",
            AggOp::Last => "last",
            AggOp::Median => "median",
            AggOp::Std => "std",
            AggOp::Concat => "concat",
        }
    }

    /// Whether the op accepts a column of type `dtype` (the checks Polars itself would only
    /// make while running).
    fn accepts(self, dtype: &DataType) -> bool {
        match self {
            AggOp::Sum | AggOp::Mean | AggOp::Median | AggOp::Std => {
                dtype.is_primitive_numeric() || dtype.is_bool() || dtype.is_decimal()
            }
            _ => true,
        }
    }
}

/// The fields of a valid node of this tool (an input, if any, is `src`: columns `k: Int64` and
/// `v: String`); the registry's tests run every tool through the dispatch with it.
#[cfg(test)]
pub(super) const SAMPLE: &str = r#"{"input": "src", "group_by": ["v"], "aggregations": [{"op": "sum", "column": "k"}]}"#;

impl ToolKind for Summarize {
    fn inputs(&self) -> Vec<(String, &str)> {
        vec![("input".to_owned(), self.input.as_str())]
    }

    fn check(&self, report: &mut Report<'_>) -> Compiled {
        if self.aggregations.is_empty() {
            report.push(
                "aggregations",
                "invalid_value",
                "at least one aggregation is needed",
            );
        }
        for (i, a) in self.aggregations.iter().enumerate() {
            if a.column.is_none() && a.op != AggOp::Count {
                report.push(
                    format!("aggregations[{i}].column"),
                    "missing_field",
                    format!("`{}` needs a column", a.op.name()),
                );
            }
            if a.separator.is_some() && a.op != AggOp::Concat {
                report.push(
                    format!("aggregations[{i}].separator"),
                    "invalid_value",
                    "only `concat` takes a separator",
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
        for (i, c) in self.group_by.iter().enumerate() {
            need(report, &first, c, format!("group_by[{i}]"));
        }
        for (i, a) in self.aggregations.iter().enumerate() {
            let Some(c) = &a.column else { continue };
            if need(report, &first, c, format!("aggregations[{i}].column"))
                && let Some(dtype) = first.get(c)
                && !a.op.accepts(dtype)
            {
                report.push(
                    format!("aggregations[{i}].op"),
                    "type_mismatch",
                    format!("`{}` needs a numeric column; {c:?} is {dtype}", a.op.name()),
                );
            }
        }
        if !report.is_clean() {
            return None;
        }
        by_plan(self, compiled, inputs, report)
    }

    fn plan(&self, _compiled: &Compiled, inputs: Vec<Input>) -> PolarsResult<Built> {
        let lf = plan::single(inputs)?.frame;
        let aggs: Vec<Expr> = self.aggregations.iter().map(aggregation).collect();
        Ok(Built::main(if self.group_by.is_empty() {
            lf.select(aggs)
        } else {
            let keys: Vec<Expr> = self.group_by.iter().map(|c| col(c.as_str())).collect();
            lf.group_by_stable(keys).agg(aggs)
        }))
    }

    fn weight(&self, _compiled: &Compiled) -> u64 {
        (self.group_by.len() + self.aggregations.len()) as u64
    }
}

/// Default output name of an aggregation.
fn aggregation_name(a: &Aggregation) -> String {
    match (&a.alias, &a.column) {
        (Some(alias), _) => alias.clone(),
        (None, Some(c)) => format!("{c}_{}", a.op.name()),
        (None, None) => a.op.name().to_owned(),
    }
}

fn aggregation(a: &Aggregation) -> Expr {
    let name = aggregation_name(a);
    let c = || col(a.column.as_deref().unwrap_or_default());
    let e = match a.op {
        AggOp::Count if a.column.is_none() => len(),
        AggOp::Count => c().count(),
        AggOp::Sum => c().sum(),
        AggOp::Mean => c().mean(),
        AggOp::Min => c().min(),
        AggOp::Max => c().max(),
        AggOp::CountDistinct => c().drop_nulls().n_unique(),
        AggOp::First => c().first(),
        AggOp::Last => c().last(),
        AggOp::Median => c().median(),
        AggOp::Std => c().std(1),
        AggOp::Concat => c()
            .cast(DataType::String)
            .str()
            .join(a.separator.as_deref().unwrap_or(","), true),
    };
    e.alias(name.as_str())
}
