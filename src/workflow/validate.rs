//! Validation: parsed nodes → a [`Workflow`] that is safe to run, or every problem at once.
//! Owns the graph: ids and references, cycles and depth (iteratively: no recursion over the
//! graph), result names; asks each tool to check its own fields (expressions, queries, names,
//! options: `tools/`), bounds the plan's size and predicts each node's output schema without
//! data. Knows tools only through their `Role`.

use std::collections::{HashMap, HashSet};

use polars::prelude::*;

use super::params::{Bound, Params};
use super::parse::{self, MAX_DEPTH, Node};
use super::plan::Compiled;
use super::problem::{Problem, Problems, Report};
use super::tools::{Role, Tool};

/// Nodes on cycles reported one by one (the rest are counted).
const MAX_CYCLE_PROBLEMS: usize = 10;

/// A workflow that passed validation: nodes in an order where inputs come first.
#[derive(Debug)]
pub(crate) struct Workflow {
    pub(crate) steps: Vec<Step>,
    sha256: String,
    predicted: Vec<Option<SchemaRef>>,
    source: std::sync::Arc<str>,
    params: super::params::Params,
    /// One run's values, once [`bind`](Workflow::bind) checked them (a workflow that
    /// declares no parameters is bound from the start).
    values: Option<Bound>,
    /// The values as the run brought them (JSON text; a sandboxed run child binds them again).
    params_json: String,
}

/// One validated node.
#[derive(Debug)]
pub(crate) struct Step {
    pub(crate) id: String,
    pub(crate) tool: Tool,
    pub(crate) inputs: Vec<Port>,
    pub(crate) compiled: Compiled,
}

/// A reference to a node's output: its main one, or a filter's rejected rows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Port {
    pub(crate) step: usize,
    pub(crate) rejected: bool,
}

impl Workflow {
    /// The canonical hash (64 lowercase hex digits) server tokens are bound to.
    pub(crate) fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The declared parameters, by name.
    pub(crate) fn params(&self) -> &super::params::Params {
        &self.params
    }

    /// Binds one run's values (from [`params::bind`](super::params::bind), which checked them
    /// against the declarations; `json` is the text they came in): each `pl.param(...)`
    /// becomes a typed literal, and each query's parameters have their binds.
    pub(crate) fn bind(&mut self, values: Bound, json: &str) -> Result<(), Problems> {
        let mut problems = Vec::new();
        for step in &mut self.steps {
            let Compiled::Exprs(exprs) = &mut step.compiled else {
                continue;
            };
            for e in exprs.iter_mut() {
                match super::params::literals(&self.params, Some(&values), e.clone()) {
                    Ok(bound) => *e = bound,
                    Err(name) => problems.push(Problem::new(
                        Some(&step.id),
                        "",
                        "missing_param",
                        format!("parameter `{name}` has no value"),
                    )),
                }
            }
        }
        if !problems.is_empty() {
            return Err(Problems(problems));
        }
        self.values = Some(values);
        json.clone_into(&mut self.params_json);
        Ok(())
    }

    /// Whether the run's values are bound (always, without declared parameters).
    pub(crate) fn is_bound(&self) -> bool {
        self.values.is_some()
    }

    /// The run's values as they came (empty: none).
    pub(crate) fn params_json(&self) -> &str {
        &self.params_json
    }

    /// The binds of one of this workflow's queries, in its bind order; the name of a
    /// parameter without a value if any.
    pub(crate) fn binds(
        &self,
        query: &crate::sql::ReadOnlyQuery,
    ) -> Result<Vec<crate::sql::Bind>, String> {
        match &self.values {
            Some(values) => super::params::binds(values, query.params()),
            None => query
                .params()
                .first()
                .map_or(Ok(Vec::new()), |n| Err(n.clone())),
        }
    }

    /// The document it was validated from (a sandboxed run child validates it again).
    pub(crate) fn source_json(&self) -> &str {
        &self.source
    }

    /// Each node's id, tool and predicted output schema (`None` where it depends on a
    /// query's result), in execution order.
    pub(crate) fn schemas(&self) -> impl Iterator<Item = (&str, &'static str, Option<&SchemaRef>)> {
        self.steps
            .iter()
            .zip(&self.predicted)
            .map(|(s, p)| (s.id.as_str(), s.tool.name(), p.as_ref()))
    }

    /// The `sql` nodes: (node id, connection name, guarded query).
    pub(crate) fn queries(&self) -> impl Iterator<Item = (&str, &str, &crate::sql::ReadOnlyQuery)> {
        self.steps
            .iter()
            .filter_map(|s| match (s.tool.kind().role(), &s.compiled) {
                (Role::Query { connection }, Compiled::Query(checked)) => {
                    Some((s.id.as_str(), connection, checked))
                }
                _ => None,
            })
    }

    /// The connection names the workflow uses, sorted, without duplicates.
    pub(crate) fn connections(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.queries().map(|(_, c, _)| c).collect();
        names.sort_unstable();
        names.dedup();
        names
    }
}

/// Validates a workflow document completely.
pub(crate) fn validate(doc: &str) -> Result<Workflow, Problems> {
    let (nodes, params, mut problems) = parse::parse(doc);
    if nodes.is_empty() && !problems.is_empty() {
        return Err(Problems(problems));
    }
    // Nodes that failed to parse still exist for their neighbours: no "unknown input" noise.
    let broken: HashSet<String> = problems.iter().filter_map(|p| p.node.clone()).collect();

    let compiled: Vec<Option<Compiled>> = nodes
        .iter()
        .map(|n| compile(n, &params, &mut problems))
        .collect();
    let index: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();
    let ports: Vec<Option<Vec<Port>>> = nodes
        .iter()
        .map(|n| resolve(n, &nodes, &index, &broken, &mut problems))
        .collect();
    let order = topological(&nodes, &ports, &mut problems);
    check_outputs(&nodes, &mut problems);
    if nodes.is_empty() {
        problems.push(Problem::new(
            None,
            "nodes",
            "no_outputs",
            "the workflow has no nodes",
        ));
    }

    // Steps in topological order; a node whose fields or references failed stays out and
    // its dependants get no schema (so its problem is not repeated downstream).
    let mut position = vec![usize::MAX; nodes.len()];
    let mut steps = Vec::with_capacity(order.len());
    let mut usable = Vec::with_capacity(order.len());
    let mut nodes: Vec<Option<Node>> = nodes.into_iter().map(Some).collect();
    let mut compiled = compiled;
    for &i in &order {
        let (Some(node), Some(inputs)) = (nodes[i].take(), ports[i].as_ref()) else {
            continue;
        };
        let ok = compiled[i].is_some() && inputs.iter().all(|p| position[p.step] != usize::MAX);
        let inputs = inputs
            .iter()
            .map(|p| Port {
                step: position[p.step],
                rejected: p.rejected,
            })
            .collect();
        position[i] = steps.len();
        steps.push(Step {
            id: node.id,
            tool: node.tool,
            inputs,
            compiled: compiled[i].take().unwrap_or(Compiled::Plain),
        });
        usable.push(ok);
    }
    super::size::check(&steps, &mut problems);
    // Predicted with each parameter's typed stand-in; the steps keep their markers for a run's
    // values.
    let marked = stand_ins(&mut steps, &params);
    let predicted = super::predict::predict(&steps, &usable, &|_| None, &mut problems);
    for (i, compiled) in marked {
        steps[i].compiled = compiled;
    }
    if !problems.is_empty() {
        return Err(Problems(problems));
    }
    let sha256 = match super::hash::workflow_sha256(doc) {
        Ok(h) => h,
        Err(e) => {
            // Unreachable in practice: `parse` read the same document the same way.
            return Err(Problems(vec![Problem::new(
                None,
                "",
                e.code(),
                e.to_string(),
            )]));
        }
    };
    Ok(Workflow {
        steps,
        sha256,
        predicted,
        source: doc.into(),
        values: params.is_empty().then(Bound::new),
        params,
        params_json: String::new(),
    })
}

/// [`validate`], then the run's values (`params_json`, a JSON object; empty: none) checked
/// against the declarations and bound.
pub(crate) fn validate_bound(doc: &str, params_json: &str) -> Result<Workflow, Problems> {
    let mut wf = validate(doc)?;
    let values = super::params::bind_text(wf.params(), params_json).map_err(Problems)?;
    wf.bind(values, params_json)?;
    Ok(wf)
}

/// Replaces each `pl.param(...)` in `steps` with its declared type's stand-in; returns what
/// the changed steps held before.
fn stand_ins(steps: &mut [Step], params: &Params) -> Vec<(usize, Compiled)> {
    let mut before = Vec::new();
    if params.is_empty() {
        return before;
    }
    for (i, step) in steps.iter_mut().enumerate() {
        let Compiled::Exprs(exprs) = &step.compiled else {
            continue;
        };
        if exprs.iter().all(|e| crate::expr::param_names(e).is_empty()) {
            continue;
        }
        let typed = exprs
            .iter()
            .map(|e| super::params::literals(params, None, e.clone()).unwrap_or_else(|_| e.clone()))
            .collect();
        before.push((
            i,
            std::mem::replace(&mut step.compiled, Compiled::Exprs(typed)),
        ));
    }
    before
}

/// Field checks that need no schema (each tool's own): what runs, if nothing was reported.
fn compile(node: &Node, params: &Params, problems: &mut Vec<Problem>) -> Option<Compiled> {
    let mut report = Report::new(&node.id, problems).with_params(params);
    let compiled = node.tool.kind().check(&mut report);
    report.is_clean().then_some(compiled)
}

/// Resolves a node's input references. `None` if any is wrong.
fn resolve(
    node: &Node,
    nodes: &[Node],
    index: &HashMap<&str, usize>,
    broken: &HashSet<String>,
    problems: &mut Vec<Problem>,
) -> Option<Vec<Port>> {
    let mut ports = Vec::new();
    let mut ok = true;
    for (field, reference) in node.tool.kind().inputs() {
        let (target, branch) = match reference.rsplit_once('.') {
            Some((t, b)) => (t, Some(b)),
            None => (reference, None),
        };
        let Some(&step) = index.get(target) else {
            ok = false;
            if !broken.contains(target) {
                // Candidates in document order, not the index's (hash) order: between equally
                // close ids the hint must not change from one run to the next.
                let ids = nodes.iter().map(|n| n.id.as_str());
                let hint = parse::did_you_mean(target, ids)
                    .map(|s| format!("; did you mean {s:?}?"))
                    .unwrap_or_default();
                problems.push(Problem::new(
                    Some(&node.id),
                    field,
                    "unknown_input",
                    format!("no node has id {target:?}{hint}"),
                ));
            }
            continue;
        };
        let role = nodes[step].tool.kind().role();
        let is_filter = role == Role::Split;
        let rejected = match branch {
            None | Some("true") if !matches!(role, Role::Output { .. }) => false,
            None | Some("true") => {
                ok = false;
                problems.push(Problem::new(
                    Some(&node.id),
                    field,
                    "bad_input",
                    format!("{target:?} is an output node; it has no rows to pass on"),
                ));
                continue;
            }
            Some("false") if is_filter => true,
            Some(b) => {
                ok = false;
                let why = if is_filter {
                    "a filter's outputs are `ID.true` (or `ID`) and `ID.false`".to_owned()
                } else {
                    format!(
                        "{target:?} is a {} node; only filters have a `{b}` output",
                        nodes[step].tool.name()
                    )
                };
                problems.push(Problem::new(Some(&node.id), field, "unknown_output", why));
                continue;
            }
        };
        ports.push(Port { step, rejected });
    }
    ok.then_some(ports)
}

/// Kahn's algorithm over the resolved edges. Reports cycles and chains over [`MAX_DEPTH`];
/// returns the order of nodes outside any cycle.
fn topological(
    nodes: &[Node],
    ports: &[Option<Vec<Port>>],
    problems: &mut Vec<Problem>,
) -> Vec<usize> {
    let n = nodes.len();
    let mut indegree = vec![0usize; n];
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, p) in ports.iter().enumerate() {
        for port in p.iter().flatten() {
            indegree[i] += 1;
            users[port.step].push(i);
        }
    }
    let mut depth = vec![1usize; n];
    let mut ready: Vec<usize> = (0..n).filter(|&i| indegree[i] == 0).rev().collect();
    let mut order = Vec::with_capacity(n);
    let mut too_deep = false;
    while let Some(i) = ready.pop() {
        order.push(i);
        if depth[i] > MAX_DEPTH && !too_deep {
            too_deep = true;
            problems.push(Problem::new(
                Some(&nodes[i].id),
                "input",
                "limit_exceeded",
                format!(
                    "this node is {} nodes deep; the limit is {MAX_DEPTH}",
                    depth[i]
                ),
            ));
        }
        for &u in users[i].iter().rev() {
            depth[u] = depth[u].max(depth[i] + 1);
            indegree[u] -= 1;
            if indegree[u] == 0 {
                ready.push(u);
            }
        }
    }
    if order.len() < n {
        // What is left is on a cycle or downstream of one; peel off the downstream part
        // (nodes no remaining node reads from) so only the cycle itself is reported.
        let mut left: Vec<bool> = vec![true; n];
        for &i in &order {
            left[i] = false;
        }
        let mut readers = vec![0usize; n];
        for (i, p) in ports.iter().enumerate() {
            if left[i] {
                for port in p.iter().flatten() {
                    readers[port.step] += 1;
                }
            }
        }
        let mut sinks: Vec<usize> = (0..n).filter(|&i| left[i] && readers[i] == 0).collect();
        while let Some(i) = sinks.pop() {
            left[i] = false;
            for port in ports[i].iter().flatten() {
                readers[port.step] -= 1;
                if readers[port.step] == 0 && left[port.step] {
                    sinks.push(port.step);
                }
            }
        }
        // One problem per node on a cycle, up to a few; then one line for the rest.
        let on_cycle: Vec<usize> = (0..n).filter(|&i| left[i]).collect();
        let listed: Vec<&str> = on_cycle
            .iter()
            .take(MAX_CYCLE_PROBLEMS)
            .map(|&i| nodes[i].id.as_str())
            .collect();
        for &i in on_cycle.iter().take(MAX_CYCLE_PROBLEMS) {
            problems.push(Problem::new(
                Some(&nodes[i].id),
                "input",
                "cycle",
                format!(
                    "node is on a cycle (nodes on cycles: {})",
                    listed.join(", ")
                ),
            ));
        }
        if on_cycle.len() > MAX_CYCLE_PROBLEMS {
            problems.push(Problem::new(
                None,
                "nodes",
                "cycle",
                format!(
                    "{} more nodes are on cycles",
                    on_cycle.len() - MAX_CYCLE_PROBLEMS
                ),
            ));
        }
    }
    order
}

fn check_outputs(nodes: &[Node], problems: &mut Vec<Problem>) {
    let mut names = HashSet::new();
    let mut any = false;
    for n in nodes {
        if let Role::Output { name } = n.tool.kind().role() {
            any = true;
            if !names.insert(name) {
                problems.push(Problem::new(
                    Some(&n.id),
                    "name",
                    "duplicate_output",
                    format!("another output is also named {name:?}"),
                ));
            }
        }
    }
    if !any && !nodes.is_empty() {
        problems.push(Problem::new(
            None,
            "nodes",
            "no_outputs",
            "the workflow has no output node, so it would return nothing",
        ));
    }
}
