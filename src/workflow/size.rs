//! The size of the plan a workflow runs as, bounded before anything runs. Polars optimises the
//! whole graph as one lazy plan and walks it as a tree: a node read twice (a self-join, two
//! branches that meet again) is walked twice, even where the executor shares it (`exec.rs`
//! marks such subplans so they are converted and computed once), so a chain of "diamonds"
//! doubles the work at every step while the document grows by one node.
//!
//! A node's own size is 1 + the nodes of its expressions (a filter's twice: the rows that pass
//! and the rows that do not) + the names it lists (columns, keys, aggregations); its unfolded
//! size adds its inputs' unfolded sizes, counted with repetition, saturating. A node over
//! [`MAX_PLAN_SIZE`] is refused with `plan_too_large`, and so are outputs whose plans together
//! exceed it (they are optimised together). Linear in the document, no recursion.

use super::problem::Problem;
use super::tools::Role;
use super::validate::Step;

/// Largest unfolded plan, per node and for all outputs together. Every example and test
/// workflow is far below it (a tree-shaped workflow's size is its own size); Polars optimises
/// a plan of this size in about 0.3 s (see the README's "Validation").
pub(crate) const MAX_PLAN_SIZE: u64 = 250_000;

/// A node's own size (without its inputs): 1 plus its tool's
/// [`weight`](super::tools::ToolKind::weight).
pub(crate) fn own_size(step: &Step) -> u64 {
    step.tool.kind().weight(&step.compiled).saturating_add(1)
}

/// Each step's unfolded plan size, in step order (inputs come first).
pub(crate) fn sizes(steps: &[Step]) -> Vec<u64> {
    let mut size: Vec<u64> = Vec::with_capacity(steps.len());
    for step in steps {
        // An input that is not a step (its node failed validation) counts as one.
        let inputs = step.inputs.iter().fold(0u64, |sum, p| {
            sum.saturating_add(size.get(p.step).copied().unwrap_or(1))
        });
        size.push(inputs.saturating_add(own_size(step)));
    }
    size
}

/// Reports the nodes where the plan first grows past [`MAX_PLAN_SIZE`] (not every node
/// downstream of them); when no node does, the output at which the outputs together pass it.
pub(crate) fn check(steps: &[Step], problems: &mut Vec<Problem>) {
    let size = sizes(steps);
    let over = |i: usize| size.get(i).is_some_and(|&s| s > MAX_PLAN_SIZE);
    let mut any_over = false;
    let mut outputs: u64 = 0;
    let mut crossed: Option<(usize, u64)> = None;
    for (i, step) in steps.iter().enumerate() {
        if over(i) {
            any_over = true;
            if !step.inputs.iter().any(|p| over(p.step)) {
                problems.push(Problem::new(
                    Some(&step.id),
                    "input",
                    "plan_too_large",
                    format!(
                        "the plan up to this node has size {} once its inputs are unfolded (an \
                         input read twice counts twice); the limit is {MAX_PLAN_SIZE}",
                        shown(size[i])
                    ),
                ));
            }
        }
        if let Role::Output { .. } = step.tool.kind().role() {
            outputs = outputs.saturating_add(size[i]);
            if outputs > MAX_PLAN_SIZE && crossed.is_none() {
                crossed = Some((i, outputs));
            }
        }
    }
    if let (false, Some((i, total))) = (any_over, crossed) {
        problems.push(Problem::new(
            Some(&steps[i].id),
            "input",
            "plan_too_large",
            format!(
                "the outputs up to this one have size {} together once their inputs are \
                 unfolded (all outputs are optimised together); the limit is {MAX_PLAN_SIZE}",
                shown(total)
            ),
        ));
    }
}

fn shown(n: u64) -> String {
    if n == u64::MAX {
        format!("at least {n}")
    } else {
        n.to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use polars::prelude::*;
    use serde_json::{Value, json};

    use super::*;
    use crate::workflow::tools::Tool;
    use crate::workflow::{RunControl, execute, validate};

    fn inline() -> Value {
        json!({"id": "n0", "tool": "inline",
            "columns": [{"name": "k", "type": "Int64"}, {"name": "v", "type": "String"}],
            "rows": [[1, "a"], [2, "b"], [3, "c"]]})
    }

    /// The review's attack: node i joins node i-1 with itself, `joins` times, then an output.
    fn diamond(joins: usize) -> Vec<Value> {
        let mut nodes = vec![inline()];
        for i in 1..=joins {
            let prev = format!("n{}", i - 1);
            nodes.push(
                json!({"id": format!("n{i}"), "tool": "join", "left": prev, "right": prev,
                "how": "semi", "on": [{"left": "k", "right": "k"}]}),
            );
        }
        nodes
    }

    fn doc(nodes: Vec<Value>) -> String {
        json!({"version": 1, "nodes": nodes}).to_string()
    }

    fn output(id: &str, from: &str) -> Value {
        json!({"id": id, "tool": "output", "input": from, "name": id})
    }

    fn problems(text: &str) -> Vec<(Option<String>, String, &'static str, String)> {
        match validate(text) {
            Ok(_) => Vec::new(),
            Err(p) => {
                p.0.into_iter()
                    .map(|p| (p.node, p.field, p.code, p.message))
                    .collect()
            }
        }
    }

    #[test]
    fn sizes_count_expressions_listed_names_and_repeated_inputs() {
        let mut nodes = vec![inline()];
        nodes.push(json!({"id": "f", "tool": "formula", "input": "n0",
            "formulas": [{"column": "w", "expression": "pl.col(\"k\") + 1"}]}));
        nodes.push(json!({"id": "flt", "tool": "filter", "input": "f",
            "expression": "pl.col(\"k\") > 1"}));
        nodes.push(
            json!({"id": "j", "tool": "join", "left": "flt", "right": "flt.false",
            "how": "inner", "on": [{"left": "k", "right": "k"}]}),
        );
        nodes.push(output("out", "j"));
        let wf = validate(&doc(nodes)).unwrap_or_else(|p| panic!("{p}"));
        // inline 1; formula 1 + 3 expression nodes (col, literal, +) over 1; filter
        // 1 + 2 * 3 over 5; join 1 + 1 key over 12 twice; output 1 over 26.
        assert_eq!(sizes(&wf.steps), vec![1, 5, 12, 26, 27]);
    }

    #[test]
    fn a_chain_of_self_joins_is_refused_where_it_passes_the_limit() {
        // Each join: 1 + 1 key + twice its input, so node i has 3 * 2^i - 2.
        let mut nodes = diamond(16);
        nodes.push(output("out", "n16"));
        let wf = validate(&doc(nodes)).unwrap_or_else(|p| panic!("{p}"));
        assert_eq!(sizes(&wf.steps)[16], 196_606);
        // 22 nodes, as in the review: only the first node past the limit is named.
        let mut nodes = diamond(20);
        nodes.push(output("out", "n20"));
        assert_eq!(
            problems(&doc(nodes)),
            vec![(
                Some("n17".to_owned()),
                "input".to_owned(),
                "plan_too_large",
                "the plan up to this node has size 393214 once its inputs are unfolded (an \
                 input read twice counts twice); the limit is 250000"
                    .to_owned()
            )]
        );
        // Far past u64: saturates, no overflow, still one problem, next to other problems.
        let mut nodes = diamond(200);
        nodes.push(json!({"id": "bad", "tool": "formula", "input": "n0",
            "formulas": [{"column": "x", "expression": "eval('1')"}]}));
        nodes.push(output("out", "n200"));
        nodes.push(output("out2", "bad"));
        let got = problems(&doc(nodes));
        let codes: Vec<(Option<&str>, &str)> = got.iter().map(|p| (p.0.as_deref(), p.2)).collect();
        assert_eq!(
            codes,
            vec![
                (Some("bad"), "forbidden_name"),
                (Some("n17"), "plan_too_large")
            ]
        );
    }

    /// The examples are tree-shaped and small: their plans are far below the limit.
    #[test]
    fn every_example_is_far_below_the_limit() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
        let mut seen = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            // examples/ also holds the sample worker config.
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let wf = validate(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let size = sizes(&wf.steps);
            let outputs: u64 = wf
                .steps
                .iter()
                .zip(&size)
                .filter(|(s, _)| matches!(s.tool, Tool::Output(_)))
                .map(|(_, n)| n)
                .sum();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            seen.push((name, outputs));
        }
        seen.sort();
        eprintln!("{seen:?}");
        assert_eq!(seen.len(), 5);
        assert!(
            seen.iter().all(|(_, n)| *n < MAX_PLAN_SIZE / 1_000),
            "{seen:?}"
        );
    }

    #[test]
    fn outputs_together_are_bounded_too() {
        // n15 has 98,302: one or two outputs of it pass, the third crosses 250,000.
        let mut nodes = diamond(15);
        nodes.push(output("o0", "n15"));
        nodes.push(output("o1", "n15"));
        assert_eq!(problems(&doc(nodes.clone())), Vec::new());
        nodes.push(output("o2", "n15"));
        let got = problems(&doc(nodes));
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(
            (got[0].0.as_deref(), got[0].2),
            (Some("o2"), "plan_too_large")
        );
        assert!(got[0].3.contains("size 294909 together"), "{}", got[0].3);
    }

    /// A branch read twice is built once (a shared subplan) and gives exact values; a filter
    /// read on both outputs shares its input the same way.
    #[test]
    fn shared_branches_run_with_exact_values() {
        let mut nodes = diamond(12);
        nodes.push(json!({"id": "f", "tool": "formula", "input": "n12",
            "formulas": [{"column": "w", "expression": "pl.col(\"k\") * 10"}]}));
        nodes.push(json!({"id": "flt", "tool": "filter", "input": "f",
            "expression": "pl.col(\"k\") >= 2"}));
        nodes.push(json!({"id": "u", "tool": "union", "inputs": ["flt.false", "flt", "f"]}));
        nodes.push(output("all", "u"));
        nodes.push(output("kept", "flt"));
        let wf = validate(&doc(nodes)).unwrap_or_else(|p| panic!("{p}"));
        let outs = execute(&wf, HashMap::new(), &RunControl::default(), &mut |_| {})
            .unwrap_or_else(|e| panic!("{e}"));
        let col = |df: &DataFrame, c: &str| -> Vec<Option<i64>> {
            df.column(c).unwrap().i64().unwrap().iter().collect()
        };
        assert_eq!(outs[0].name, "all");
        assert_eq!(col(&outs[0].frame, "k"), [1, 2, 3, 1, 2, 3].map(Some));
        assert_eq!(col(&outs[0].frame, "w"), [10, 20, 30, 10, 20, 30].map(Some));
        let v: Vec<Option<&str>> = outs[0]
            .frame
            .column("v")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(v, ["a", "b", "c", "a", "b", "c"].map(Some));
        assert_eq!(outs[1].name, "kept");
        assert_eq!(col(&outs[1].frame, "w"), [20, 30].map(Some));
    }
}
