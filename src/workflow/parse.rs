//! JSON text → nodes, node by node, so that one bad node does not hide another's problems.
//! Owns the document-level rules (size, version, node count, ids, tool names); each tool's
//! fields are its own (`tools/`), and nothing here looks inside expressions or queries.

use std::collections::HashSet;

use serde_json::Value;

use super::hash::{self, HashError};
use super::model::VERSION;
use super::params::Params;
use super::problem::Problem;
use super::tools::Tool;

/// Most nodes in one workflow. Canvases people build have tens to a few hundred tools; the
/// limit keeps validation and plan optimisation bounded.
pub(crate) const MAX_NODES: usize = 2_000;

/// Longest chain of nodes (the plan's depth).
pub(crate) const MAX_DEPTH: usize = 500;

/// Longest node id or result name.
pub(crate) const MAX_ID_LEN: usize = 64;

/// One parsed node.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    /// Its id.
    pub(crate) id: String,
    /// Its tool and fields.
    pub(crate) tool: Tool,
}

/// Whether `s` is a valid node id or result name: 1 to 64 of `[A-Za-z0-9_-]`.
pub(crate) fn is_valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Parses the document. Returns the nodes that parsed (in document order), the sound
/// parameter declarations and every problem found; a node with problems is left out. A document that is not even a workflow (bad JSON,
/// wrong version, too many nodes) returns no nodes.
pub(crate) fn parse(doc: &str) -> (Vec<Node>, Params, Vec<Problem>) {
    let mut problems = Vec::new();
    let value = match hash::parse_strict(doc) {
        Ok(v) => v,
        Err(e) => {
            let code = match e {
                HashError::TooLarge(_) => "limit_exceeded",
                HashError::Json(_) => "invalid_json",
                HashError::NumberOutOfRange(_) => "number_out_of_range",
            };
            problems.push(Problem::new(None, "", code, e.to_string()));
            return (Vec::new(), Params::new(), problems);
        }
    };
    let Value::Object(mut top) = value else {
        problems.push(Problem::new(
            None,
            "",
            "invalid_value",
            "a workflow is a JSON object {\"version\": 1, \"nodes\": [...]}",
        ));
        return (Vec::new(), Params::new(), problems);
    };
    for key in top.keys() {
        if key != "version" && key != "nodes" && key != "params" {
            problems.push(Problem::new(
                None,
                key.as_str(),
                "unknown_field",
                format!("unknown field `{key}`, expected `version`, `params` or `nodes`"),
            ));
        }
    }
    match top.get("version") {
        Some(Value::Number(n)) if n.as_u64() == Some(VERSION) => {}
        Some(other) => problems.push(Problem::new(
            None,
            "version",
            "unsupported_version",
            format!("version {other} is not supported; this worker runs version {VERSION}"),
        )),
        None => problems.push(Problem::new(
            None,
            "version",
            "missing_field",
            "missing field `version`",
        )),
    }
    let params = match top.remove("params") {
        Some(raw) => super::params::declarations(&raw, &mut problems),
        None => Params::new(),
    };
    let nodes = match top.remove("nodes") {
        Some(Value::Array(nodes)) => nodes,
        Some(_) => {
            problems.push(Problem::new(
                None,
                "nodes",
                "invalid_value",
                "`nodes` must be an array",
            ));
            return (Vec::new(), Params::new(), problems);
        }
        None => {
            problems.push(Problem::new(
                None,
                "nodes",
                "missing_field",
                "missing field `nodes`",
            ));
            return (Vec::new(), Params::new(), problems);
        }
    };
    if nodes.len() > MAX_NODES {
        problems.push(Problem::new(
            None,
            "nodes",
            "limit_exceeded",
            format!(
                "the workflow has {} nodes; the limit is {MAX_NODES}",
                nodes.len()
            ),
        ));
        return (Vec::new(), Params::new(), problems);
    }
    if !problems.is_empty() {
        return (Vec::new(), Params::new(), problems);
    }

    let mut seen = HashSet::with_capacity(nodes.len());
    let mut out = Vec::with_capacity(nodes.len());
    for (i, raw) in nodes.into_iter().enumerate() {
        if let Some(node) = parse_node(i, raw, &mut seen, &mut problems) {
            out.push(node);
        }
    }
    (out, params, problems)
}

fn parse_node(
    index: usize,
    raw: Value,
    seen: &mut HashSet<String>,
    problems: &mut Vec<Problem>,
) -> Option<Node> {
    let at = format!("nodes[{index}]");
    let Value::Object(mut map) = raw else {
        problems.push(Problem::new(
            None,
            at,
            "invalid_value",
            "a node is a JSON object",
        ));
        return None;
    };
    let id = match map.remove("id") {
        Some(Value::String(id)) if is_valid_name(&id) => id,
        Some(Value::String(id)) => {
            problems.push(Problem::new(
                None,
                format!("{at}.id"),
                "bad_id",
                format!("node id {id:?} must be 1 to {MAX_ID_LEN} of letters, digits, `_` and `-`"),
            ));
            return None;
        }
        Some(_) => {
            problems.push(Problem::new(
                None,
                format!("{at}.id"),
                "bad_id",
                "a node id is a string",
            ));
            return None;
        }
        None => {
            problems.push(Problem::new(
                None,
                format!("{at}.id"),
                "missing_field",
                "missing field `id`",
            ));
            return None;
        }
    };
    if !seen.insert(id.clone()) {
        problems.push(Problem::new(
            Some(&id),
            "id",
            "duplicate_id",
            format!("another node already has id {id:?}"),
        ));
        return None;
    }
    let tool = match map.remove("tool") {
        Some(Value::String(t)) => t,
        Some(_) => {
            problems.push(Problem::new(
                Some(&id),
                "tool",
                "invalid_value",
                "`tool` is a string",
            ));
            return None;
        }
        None => {
            problems.push(Problem::new(
                Some(&id),
                "tool",
                "missing_field",
                "missing field `tool`",
            ));
            return None;
        }
    };
    let Some(parsed) = Tool::parse(&tool, Value::Object(map)) else {
        let hint = did_you_mean(&tool, Tool::NAMES.iter().copied())
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default();
        problems.push(Problem::new(
            Some(&id),
            "tool",
            "unknown_tool",
            format!(
                "unknown tool {tool:?}{hint} (tools: {})",
                Tool::NAMES.join(", ")
            ),
        ));
        return None;
    };
    match parsed {
        Ok(tool) => Some(Node { id, tool }),
        Err(e) => {
            problems.push(serde_problem(&id, &e));
            None
        }
    }
}

/// A tool's fields that did not deserialize, with the path to the field.
pub(crate) type FieldError = serde_path_to_error::Error<serde_json::Error>;

/// Maps a field error to a problem: the path names the field; for a missing or unknown
/// field, the name serde reports joins the path.
fn serde_problem(id: &str, e: &FieldError) -> Problem {
    let message = e.inner().to_string();
    let path = e.path().to_string();
    let path = if path == "." { String::new() } else { path };
    let named = |prefix: &str| -> Option<String> {
        let rest = message.strip_prefix(prefix)?;
        let name = rest.split('`').nth(1)?;
        Some(if path.is_empty() {
            name.to_owned()
        } else if path == name || path.ends_with(&format!(".{name}")) {
            path.clone()
        } else {
            format!("{path}.{name}")
        })
    };
    let (code, field) = if let Some(f) = named("missing field") {
        ("missing_field", f)
    } else if let Some(f) = named("unknown field") {
        ("unknown_field", f)
    } else {
        ("invalid_value", path)
    };
    Problem::new(Some(id), field, code, message)
}

/// The closest of `options` to `name`, if it is close enough to be a likely typo.
pub(crate) fn did_you_mean<'a>(
    name: &str,
    options: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    options
        .into_iter()
        .map(|o| (strsim::jaro_winkler(name, o), o))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, o)| o)
}
