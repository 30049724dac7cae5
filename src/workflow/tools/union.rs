//! The `union` tool: rows of every input, matched by column name, in input order, with a
//! policy for columns some inputs lack. Owns the check that the inputs' columns agree; never
//! drops or invents a column the policy does not ask for.

use std::collections::HashSet;

use polars::prelude::*;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{ToolKind, by_plan, first};
use crate::workflow::plan::{Built, Compiled, Input};
use crate::workflow::problem::Report;

/// Stack inputs by column name.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Union {
    /// Input references (at least two).
    pub(crate) inputs: Vec<String>,
    /// What to do when the inputs' column names differ.
    #[serde(default)]
    pub(crate) missing: MissingColumns,
}

/// Union policy for columns absent from some inputs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum MissingColumns {
    /// Inputs must have the same column names (order may differ).
    #[default]
    Error,
    /// Keep every column; fill nulls where an input lacks one.
    Null,
    /// Keep only columns every input has.
    Drop,
}

/// The fields of a valid node of this tool (an input, if any, is `src`: columns `k: Int64` and
/// `v: String`); the registry's tests run every tool through the dispatch with it.
#[cfg(test)]
pub(super) const SAMPLE: &str = r#"{"inputs": ["src", "src"]}"#;

impl ToolKind for Union {
    fn inputs(&self) -> Vec<(String, &str)> {
        self.inputs
            .iter()
            .enumerate()
            .map(|(i, r)| (format!("inputs[{i}]"), r.as_str()))
            .collect()
    }

    fn check(&self, report: &mut Report<'_>) -> Compiled {
        if self.inputs.len() < 2 {
            report.push("inputs", "invalid_value", "a union needs at least two inputs");
        }
        Compiled::Plain
    }

    fn predict(
        &self,
        compiled: &Compiled,
        inputs: &[SchemaRef],
        report: &mut Report<'_>,
    ) -> Option<SchemaRef> {
        if self.missing == MissingColumns::Error {
            let first = first(inputs);
            let names: HashSet<&str> = first.iter_names().map(|n| n.as_str()).collect();
            for (i, s) in inputs.iter().enumerate().skip(1) {
                let other: HashSet<&str> = s.iter_names().map(|n| n.as_str()).collect();
                if other != names {
                    let mut missing: Vec<&str> = names.difference(&other).copied().collect();
                    let mut extra: Vec<&str> = other.difference(&names).copied().collect();
                    missing.sort_unstable();
                    extra.sort_unstable();
                    report.push(
                        format!("inputs[{i}]"),
                        "schema_mismatch",
                        format!(
                            "columns differ from inputs[0]: missing {missing:?}, extra \
                             {extra:?}; set `missing` to \"null\" or \"drop\" to allow it"
                        ),
                    );
                }
            }
        }
        if !report.is_clean() {
            return None;
        }
        by_plan(self, compiled, inputs, report)
    }

    fn plan(&self, _compiled: &Compiled, inputs: Vec<Input>) -> PolarsResult<Built> {
        union(self.missing, inputs).map(Built::main)
    }

    fn weight(&self, _compiled: &Compiled) -> u64 {
        self.inputs.len() as u64
    }
}

fn union(policy: MissingColumns, inputs: Vec<Input>) -> PolarsResult<LazyFrame> {
    let args = UnionArgs {
        to_supertypes: true,
        maintain_order: true,
        ..UnionArgs::default()
    };
    match policy {
        MissingColumns::Null => concat_lf_diagonal(
            inputs.into_iter().map(|i| i.frame).collect::<Vec<_>>(),
            args,
        ),
        MissingColumns::Error | MissingColumns::Drop => {
            // Columns in the first input's order; validation made sure every input has them
            // (`error`), or this keeps only the shared ones (`drop`).
            let first = inputs.first().map(|i| i.schema.clone()).unwrap_or_default();
            let shared: Vec<Expr> = first
                .iter_names()
                .filter(|n| inputs.iter().all(|i| i.schema.contains(n)))
                .map(|n| col(n.clone()))
                .collect();
            let frames: Vec<LazyFrame> = inputs
                .into_iter()
                .map(|i| i.frame.select(shared.clone()))
                .collect();
            concat(frames, args)
        }
    }
}
