//! The `filter` tool: rows where the expression is true go to `ID` (or `ID.true`); every other
//! row (false or null) goes to `ID.false`. Owns its predicate's compilation and the check that
//! it is Boolean; the graph decides which output a reader takes.

use polars::prelude::*;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{Role, ToolKind, by_plan, expr_nodes, expression, first};
use crate::workflow::plan::{self, Built, Compiled, Input};
use crate::workflow::problem::Report;

/// Split rows by a boolean expression into a `true` and a `false` output.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Filter {
    /// Input reference.
    pub(crate) input: String,
    /// A boolean Polars expression in Python syntax.
    pub(crate) expression: String,
}

/// The compiled predicate, if `compiled` is one.
fn predicate(compiled: &Compiled) -> Option<&Expr> {
    match compiled {
        Compiled::Exprs(es) if es.len() == 1 => es.first(),
        _ => None,
    }
}

/// The fields of a valid node of this tool (an input, if any, is `src`: columns `k: Int64` and
/// `v: String`); the registry's tests run every tool through the dispatch with it.
#[cfg(test)]
pub(super) const SAMPLE: &str = r#"{"input": "src", "expression": "pl.col('k') > 1"}"#;

impl ToolKind for Filter {
    fn inputs(&self) -> Vec<(String, &str)> {
        vec![("input".to_owned(), self.input.as_str())]
    }

    fn role(&self) -> Role<'_> {
        Role::Split
    }

    fn check(&self, report: &mut Report<'_>) -> Compiled {
        match expression(report, &self.expression, "expression".into()) {
            Some(e) => Compiled::Exprs(vec![e]),
            None => Compiled::Plain,
        }
    }

    /// The input's schema, once the predicate is known to be Boolean.
    fn predict(
        &self,
        compiled: &Compiled,
        inputs: &[SchemaRef],
        report: &mut Report<'_>,
    ) -> Option<SchemaRef> {
        let Some(e) = predicate(compiled) else {
            return by_plan(self, compiled, inputs, report);
        };
        let first = first(inputs);
        match plan::empty(&first).select([e.clone()]).collect_schema() {
            Ok(s) => match s.get_at_index(0) {
                Some((_, DataType::Boolean)) => return Some(first),
                Some((_, dtype)) => report.push(
                    "expression",
                    "type_mismatch",
                    format!("a filter expression must be Boolean; this one is {dtype}"),
                ),
                None => {}
            },
            Err(err) => report.polars("expression", &err),
        }
        None
    }

    fn plan(&self, compiled: &Compiled, inputs: Vec<Input>) -> PolarsResult<Built> {
        let e = predicate(compiled).ok_or_else(|| plan::not_built("filter"))?;
        let lf = plan::single(inputs)?.frame;
        let rejected = lf.clone().filter(e.clone().fill_null(lit(false)).not());
        Ok(Built {
            main: lf.filter(e.clone()),
            rejected: Some(rejected),
        })
    }

    /// Its predicate twice: the rows that pass and the rows that do not.
    fn weight(&self, compiled: &Compiled) -> u64 {
        predicate(compiled).map_or(0, |e| 2 * expr_nodes(e))
    }
}
