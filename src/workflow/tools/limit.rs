//! The `limit` tool: rows `offset .. offset + n`. Nothing to check beyond its fields (their
//! ranges are the document's: integers up to 2^53 - 1).

use polars::prelude::*;
use schemars::JsonSchema;
use serde::Deserialize;

use super::ToolKind;
use crate::workflow::plan::{self, Built, Compiled, Input};
use crate::workflow::problem::Report;

/// The first `n` rows after `offset`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Limit {
    /// Input reference.
    pub(crate) input: String,
    /// Most rows kept.
    #[schemars(range(max = 9_007_199_254_740_991u64))]
    pub(crate) n: u64,
    /// Rows skipped first.
    #[serde(default)]
    #[schemars(range(max = 9_007_199_254_740_991u64))]
    pub(crate) offset: u64,
}

/// The fields of a valid node of this tool (an input, if any, is `src`: columns `k: Int64` and
/// `v: String`); the registry's tests run every tool through the dispatch with it.
#[cfg(test)]
pub(super) const SAMPLE: &str = r#"{"input": "src", "n": 2}"#;

impl ToolKind for Limit {
    fn inputs(&self) -> Vec<(String, &str)> {
        vec![("input".to_owned(), self.input.as_str())]
    }

    fn check(&self, _report: &mut Report<'_>) -> Compiled {
        Compiled::Plain
    }

    fn plan(&self, _compiled: &Compiled, inputs: Vec<Input>) -> PolarsResult<Built> {
        let lf = plan::single(inputs)?.frame;
        let offset = i64::try_from(self.offset).unwrap_or(i64::MAX);
        let n = IdxSize::try_from(self.n).unwrap_or(IdxSize::MAX);
        Ok(Built::main(lf.slice(offset, n)))
    }
}
