//! The `sample` tool: `n` rows or a `fraction` of them, reproducible for a given `seed`. Owns
//! the check that exactly one size is given and in range; rows always stay whole.

use polars::prelude::*;
use schemars::JsonSchema;
use serde::Deserialize;

use super::ToolKind;
use crate::workflow::plan::{self, Built, Compiled, Input};
use crate::workflow::problem::Report;

/// A seeded random sample of rows.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Sample {
    /// Input reference.
    pub(crate) input: String,
    /// Number of rows (give this or `fraction`).
    #[serde(default)]
    #[schemars(range(max = 9_007_199_254_740_991u64))]
    pub(crate) n: Option<u64>,
    /// Fraction of rows, 0 to 1 (or more with replacement).
    #[serde(default)]
    pub(crate) fraction: Option<f64>,
    /// Random seed (default 0): the same seed and input give the same rows.
    #[serde(default)]
    #[schemars(range(max = 9_007_199_254_740_991u64))]
    pub(crate) seed: u64,
    /// Draw with replacement.
    #[serde(default)]
    pub(crate) with_replacement: bool,
}

/// The fields of a valid node of this tool (an input, if any, is `src`: columns `k: Int64` and
/// `v: String`); the registry's tests run every tool through the dispatch with it.
#[cfg(test)]
pub(super) const SAMPLE: &str = r#"{"input": "src", "n": 2, "seed": 7}"#;

impl ToolKind for Sample {
    fn inputs(&self) -> Vec<(String, &str)> {
        vec![("input".to_owned(), self.input.as_str())]
    }

    fn check(&self, report: &mut Report<'_>) -> Compiled {
        match (self.n, self.fraction) {
            (Some(_), Some(_)) | (None, None) => report.push(
                "n",
                "invalid_value",
                "give exactly one of `n` and `fraction`",
            ),
            (None, Some(f))
                if !(f.is_finite() && f >= 0.0 && (f <= 1.0 || self.with_replacement)) =>
            {
                report.push(
                    "fraction",
                    "invalid_value",
                    format!("fraction {f} must be between 0 and 1 (or above 1 with replacement)"),
                );
            }
            _ => {}
        }
        Compiled::Plain
    }

    fn plan(&self, _compiled: &Compiled, inputs: Vec<Input>) -> PolarsResult<Built> {
        let lf = plan::single(inputs)?.frame;
        // Every column draws with the same seed over the same length, so they draw the same
        // row positions: rows stay whole (a test asserts it).
        let e = match (self.n, self.fraction) {
            (Some(n), _) => all().as_expr().sample_n(
                lit(n),
                self.with_replacement,
                Some(false),
                Some(self.seed),
            ),
            (None, Some(f)) => all().as_expr().sample_frac(
                lit(f),
                self.with_replacement,
                Some(false),
                Some(self.seed),
            ),
            (None, None) => polars_bail!(ComputeError: "sample needs `n` or `fraction`"),
        };
        Ok(Built::main(lf.select([e])))
    }
}
