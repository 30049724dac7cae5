//! The registry's promise: every file in `tools/` is listed once, and every listed tool parses
//! under its name, has its entry in the JSON Schema, checks, predicts and plans through the one
//! dispatch point, with a prediction that matches what runs.

use std::collections::{HashMap, HashSet};

use polars::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::workflow::problem::ProblemSource;
use crate::workflow::{RunControl, execute, model, validate};

fn src() -> Value {
    json!({"id": "src", "tool": "inline",
        "columns": [{"name": "k", "type": "Int64"}, {"name": "v", "type": "String"}],
        "rows": [[1, "a"], [2, "b"], [3, "a"]]})
}

/// Every `tools/<tool>.rs` is in the list: a file without its line would not even compile
/// into the crate, so only this test can notice it.
#[test]
fn every_tool_file_is_listed_once() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/workflow/tools");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|f| f.strip_suffix(".rs").map(str::to_owned))
        .filter(|f| f != "mod" && f != "tests")
        .collect();
    files.sort();
    let mut names: Vec<String> = Tool::NAMES.iter().map(|n| (*n).to_owned()).collect();
    let unique: HashSet<&String> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "a tool is listed twice");
    names.sort();
    assert_eq!(files, names);
}

/// The JSON Schema has one entry per tool, in list order, each tagged with the tool's name
/// (serde's snake_case of its type is the file's name) and described.
#[test]
fn every_tool_has_its_json_schema_entry() {
    let schema: Value = serde_json::from_str(&model::json_schema()).unwrap();
    let variants = schema
        .pointer("/$defs/NodeDoc/oneOf")
        .and_then(Value::as_array)
        .unwrap();
    let tags: Vec<&str> = variants
        .iter()
        .map(|v| {
            v.pointer("/properties/tool/const")
                .unwrap()
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(tags, Tool::NAMES);
    for v in variants {
        let description = v["description"].as_str().unwrap_or_default();
        assert!(!description.is_empty(), "{v}");
    }
}

/// Each tool, through `Tool::parse` and `Tool::kind` only: parses under its name, validates in
/// a workflow, predicts a schema (a query's is known only when it runs) and runs to exactly
/// that schema.
#[test]
fn every_tool_checks_predicts_and_plans_through_the_dispatch() {
    let names: Vec<&str> = Tool::SAMPLES.iter().map(|(name, _)| *name).collect();
    assert_eq!(names, Tool::NAMES);
    for &(name, sample) in Tool::SAMPLES {
        let fields: Value = serde_json::from_str(sample).unwrap();
        let tool = match Tool::parse(name, fields.clone()) {
            Some(Ok(tool)) => tool,
            other => panic!("{name}: {other:?}"),
        };
        assert_eq!(tool.name(), name);
        let reads = tool.kind().inputs();
        assert!(reads.iter().all(|(_, r)| *r == "src"), "{name}: {reads:?}");

        let mut node = fields;
        node["id"] = json!("t");
        node["tool"] = json!(name);
        let mut nodes = vec![src(), node];
        let role = tool.kind().role();
        if !matches!(role, Role::Output { .. }) {
            nodes.push(json!({"id": "out", "tool": "output", "input": "t", "name": "out"}));
        }
        let doc = json!({"version": 1, "nodes": nodes}).to_string();
        let wf = validate(&doc).unwrap_or_else(|p| panic!("{name}: {p}"));
        let (_, tool_name, predicted) = wf.schemas().find(|(id, _, _)| *id == "t").unwrap();
        assert_eq!(tool_name, name);

        let mut inputs = HashMap::new();
        if let Role::Query { connection } = role {
            assert_eq!(connection, "shop");
            assert!(predicted.is_none(), "{name}");
            assert_eq!(wf.connections(), ["shop"]);
            inputs.insert("t".to_owned(), df!("k" => [1i64, 2]).unwrap());
        } else {
            assert!(predicted.is_some(), "{name}");
        }
        let predicted = predicted.cloned();
        let outs = execute(&wf, inputs, &RunControl::default(), &mut |_| {})
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(outs.len(), 1, "{name}");
        if let Some(schema) = predicted {
            assert_eq!(outs[0].frame.schema(), &schema, "{name}");
        }
    }
}

/// Problems carry the checker that found them; the JSON of a problem does not.
#[test]
fn problems_name_their_source() {
    let doc = json!({"version": 1, "nodes": [
        src(),
        {"id": "q", "tool": "sql", "connection": "shop", "dialect": "sqlite",
         "query": "DELETE FROM t"},
        {"id": "f", "tool": "formula", "input": "src",
         "formulas": [{"column": "x", "expression": "eval('1')"},
                      {"column": "", "expression": "pl.col('k')"}]},
        {"id": "g", "tool": "formula", "input": "src",
         "formulas": [{"column": "x", "expression": "pl.col('nope')"}]},
        {"id": "h", "tool": "filter", "input": "src", "expression": "pl.col('k')"},
        {"id": "out", "tool": "output", "input": "f", "name": "out"}]})
    .to_string();
    let problems = validate(&doc).unwrap_err().0;
    let found: Vec<(&str, &str, &str, ProblemSource)> = problems
        .iter()
        .map(|p| {
            let node = p.node.as_deref().unwrap_or_default();
            (node, p.field.as_str(), p.code, p.source)
        })
        .collect();
    assert_eq!(
        found,
        [
            ("q", "query", "not_read_only", ProblemSource::Sql),
            (
                "f",
                "formulas[0].expression",
                "forbidden_name",
                ProblemSource::Expression
            ),
            (
                "f",
                "formulas[1].column",
                "invalid_value",
                ProblemSource::Workflow
            ),
            // Polars' verdict on an expression the checker passed is the workflow's.
            (
                "g",
                "formulas[0].expression",
                "unknown_column",
                ProblemSource::Workflow
            ),
            ("h", "expression", "type_mismatch", ProblemSource::Workflow),
        ]
    );
    let json = serde_json::to_value(&problems[0]).unwrap();
    let mut keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["code", "field", "message", "node"]);
}
