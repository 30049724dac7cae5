//! The `join` tool: rows of `left` matched with rows of `right` on key pairs, in a deterministic
//! order (left order first; right order for `right` joins). Owns the checks of its keys (names
//! and matching types); never casts a key (a `select` does that, visibly).

use polars::prelude::*;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{ToolKind, by_plan, first, need};
use crate::workflow::plan::{Built, Compiled, Input};
use crate::workflow::problem::Report;

/// Join two inputs.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Join {
    /// Left input reference.
    pub(crate) left: String,
    /// Right input reference.
    pub(crate) right: String,
    /// Join kind.
    pub(crate) how: JoinHow,
    /// Key pairs (empty for `cross`, required otherwise).
    #[serde(default)]
    pub(crate) on: Vec<JoinKey>,
    /// Appended to right column names that clash with left ones.
    #[serde(default = "default_suffix")]
    pub(crate) suffix: String,
}

fn default_suffix() -> String {
    "_right".to_owned()
}

/// Join kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum JoinHow {
    /// Matching rows only.
    Inner,
    /// Every left row.
    Left,
    /// Every right row.
    Right,
    /// Every row of both (key columns of both sides are kept).
    Full,
    /// Left rows that have a match (left columns only).
    Semi,
    /// Left rows without a match (left columns only).
    Anti,
    /// Every pair of rows (no keys).
    Cross,
}

/// One key pair.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct JoinKey {
    /// Column of the left input.
    pub(crate) left: String,
    /// Column of the right input.
    pub(crate) right: String,
}

/// The fields of a valid node of this tool (an input, if any, is `src`: columns `k: Int64` and
/// `v: String`); the registry's tests run every tool through the dispatch with it.
#[cfg(test)]
pub(super) const SAMPLE: &str = r#"{"left": "src", "right": "src", "how": "inner", "on": [{"left": "k", "right": "k"}]}"#;

impl ToolKind for Join {
    fn inputs(&self) -> Vec<(String, &str)> {
        vec![
            ("left".to_owned(), self.left.as_str()),
            ("right".to_owned(), self.right.as_str()),
        ]
    }

    fn check(&self, report: &mut Report<'_>) -> Compiled {
        match (self.how, self.on.is_empty()) {
            (JoinHow::Cross, false) => {
                report.push("on", "invalid_value", "a cross join takes no keys");
            }
            (how, true) if how != JoinHow::Cross => {
                report.push("on", "invalid_value", "at least one key pair is needed");
            }
            _ => {}
        }
        Compiled::Plain
    }

    fn predict(
        &self,
        compiled: &Compiled,
        inputs: &[SchemaRef],
        report: &mut Report<'_>,
    ) -> Option<SchemaRef> {
        let left = first(inputs);
        let right = inputs.get(1).cloned().unwrap_or_default();
        for (i, k) in self.on.iter().enumerate() {
            let l = need(report, &left, &k.left, format!("on[{i}].left"));
            let r = need(report, &right, &k.right, format!("on[{i}].right"));
            if let (true, true, Some(lt), Some(rt)) = (l, r, left.get(&k.left), right.get(&k.right))
                && lt != rt
            {
                report.push(
                    format!("on[{i}]"),
                    "type_mismatch",
                    format!(
                        "key {:?} is {lt} but {:?} is {rt}; cast one with a select",
                        k.left, k.right
                    ),
                );
            }
        }
        if !report.is_clean() {
            return None;
        }
        by_plan(self, compiled, inputs, report)
    }

    fn plan(&self, _compiled: &Compiled, mut inputs: Vec<Input>) -> PolarsResult<Built> {
        polars_ensure!(inputs.len() == 2, ComputeError: "join needs two inputs");
        let right = inputs.swap_remove(1).frame;
        let left = inputs.swap_remove(0).frame;
        Ok(Built::main(join(self, left, right)))
    }

    fn weight(&self, _compiled: &Compiled) -> u64 {
        self.on.len() as u64
    }
}

fn join(j: &Join, left: LazyFrame, right: LazyFrame) -> LazyFrame {
    let suffix = Some(PlSmallStr::from_str(&j.suffix));
    if j.how == JoinHow::Cross {
        return left.cross_join(right, suffix);
    }
    let (how, order) = match j.how {
        JoinHow::Inner => (JoinType::Inner, MaintainOrderJoin::LeftRight),
        JoinHow::Left => (JoinType::Left, MaintainOrderJoin::LeftRight),
        JoinHow::Right => (JoinType::Right, MaintainOrderJoin::RightLeft),
        JoinHow::Full => (JoinType::Full, MaintainOrderJoin::LeftRight),
        JoinHow::Semi => (JoinType::Semi, MaintainOrderJoin::Left),
        JoinHow::Anti | JoinHow::Cross => (JoinType::Anti, MaintainOrderJoin::Left),
    };
    let mut args = JoinArgs::new(how).with_suffix(suffix);
    args.maintain_order = order;
    let left_on: Vec<Expr> = j.on.iter().map(|k| col(k.left.as_str())).collect();
    let right_on: Vec<Expr> = j.on.iter().map(|k| col(k.right.as_str())).collect();
    left.join(right, left_on, right_on, args)
}
