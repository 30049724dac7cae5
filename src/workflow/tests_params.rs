use serde_json::json;

use super::*;
use crate::sql::Bind;
use crate::workflow::validate;

fn doc(params: Json) -> String {
    json!({"version": 1, "params": params, "nodes": [
        {"id": "a", "tool": "inline", "columns": [{"name": "x", "type": "Int64"}], "rows": [[1]]},
        {"id": "o", "tool": "output", "input": "a", "name": "out"}]})
    .to_string()
}

fn declared() -> Params {
    let wf = validate(&doc(json!({
        "region": {"type": "str", "choices": ["north", "south"], "default": "north"},
        "since": {"type": "date", "min": "2020-01-01"},
        "qty": {"type": "int", "min": 1, "max": 100, "default": 1},
        "ratio": {"type": "float", "max": 1.5},
        "code": {"type": "str", "pattern": "[A-Z]{3}", "max_length": 3},
        "ids": {"type": "list[int]", "max_length": 3, "min": 0},
        "at": {"type": "datetime"},
        "flag": {"type": "bool", "default": false}
    })))
    .expect("valid declarations");
    wf.params().clone()
}

/// (field, code) of each problem.
fn codes(problems: &[Problem]) -> Vec<(String, &'static str)> {
    problems.iter().map(|p| (p.field.clone(), p.code)).collect()
}

#[test]
fn values_are_typed_and_defaults_fill_in() {
    let params = declared();
    let bound = bind(
        &params,
        &json!({"since": "2024-02-29", "ratio": 1, "code": "ABC", "ids": [1, 2],
                "at": "2024-01-02T03:04:05.5"}),
    )
    .expect("valid values");
    assert_eq!(bound["region"], Value::One(Bind::Str("north".into())));
    assert_eq!(bound["qty"], Value::One(Bind::Int(1)));
    assert_eq!(bound["flag"], Value::One(Bind::Bool(false)));
    assert_eq!(bound["ratio"], Value::One(Bind::Float(1.0)));
    assert_eq!(
        bound["since"],
        Value::One(Bind::Date(
            NaiveDate::from_ymd_opt(2024, 2, 29).expect("date")
        ))
    );
    assert_eq!(bound["ids"], Value::List(vec![Bind::Int(1), Bind::Int(2)]));
    assert_eq!(bound.len(), 8);
    // A value's Debug never shows it.
    assert_eq!(format!("{:?}", bound["code"]), "One(Bind(str, ***))");
}

#[test]
fn every_problem_is_reported_at_once_without_echoing_values() {
    let params = declared();
    let long = "x".repeat(70_000);
    let problems = bind(
        &params,
        &json!({"region": "west", "qty": 0, "ratio": "1", "code": long, "ids": [1, 2, 3, 4],
                "at": "2024-01-02 03:04", "regoin": "north", "flag": 1}),
    )
    .expect_err("refused");
    let mut got = codes(&problems);
    got.sort();
    assert_eq!(
        got,
        [
            ("params.at".to_owned(), "param_type"),
            ("params.code".to_owned(), "param_too_long"),
            ("params.flag".to_owned(), "param_type"),
            ("params.ids".to_owned(), "param_too_long"),
            ("params.qty".to_owned(), "param_out_of_range"),
            ("params.ratio".to_owned(), "param_type"),
            ("params.region".to_owned(), "param_choice"),
            ("params.regoin".to_owned(), "unknown_param"),
            ("params.since".to_owned(), "missing_param"),
        ]
    );
    let unknown = problems
        .iter()
        .find(|p| p.code == "unknown_param")
        .expect("unknown");
    assert!(
        unknown.message.contains("did you mean `region`?"),
        "{}",
        unknown.message
    );
    for p in &problems {
        assert!(!p.message.contains("xxxxxxxx"), "{}", p.message);
        assert!(!p.message.contains("west"), "{}", p.message);
        assert!(p.message.len() < 200, "{}", p.message);
    }
}

#[test]
fn patterns_match_whole_strings_and_list_items_are_checked_one_by_one() {
    let params = declared();
    let base = json!({"since": "2024-01-01", "at": "2024-01-01T00:00:00", "ratio": 0.5,
                      "ids": [], "code": "XYZ"});
    let with = |k: &str, v: Json| {
        let mut m = base.clone();
        m[k] = v;
        bind(&params, &m).map(|_| ()).map_err(|p| codes(&p))
    };
    assert_eq!(with("code", json!("ABC")), Ok(()));
    assert_eq!(
        with("code", json!("AB1")),
        Err(vec![("params.code".to_owned(), "param_pattern")])
    );
    assert_eq!(
        with("ids", json!([1, -1])),
        Err(vec![("params.ids".to_owned(), "param_out_of_range")])
    );
    assert_eq!(
        with("ids", json!("1,2")),
        Err(vec![("params.ids".to_owned(), "param_type")])
    );
    assert_eq!(
        with("since", json!("2019-12-31")),
        Err(vec![("params.since".to_owned(), "param_out_of_range")])
    );
    assert_eq!(
        with("qty", json!(2.5)),
        Err(vec![("params.qty".to_owned(), "param_type")])
    );
    assert_eq!(
        bind(&params, &json!(["north"])).map_err(|p| codes(&p)),
        Err(vec![("params".to_owned(), "param_type")])
    );
    // No parameters at all: null and {} are the same.
    assert_eq!(bind(&Params::new(), &Json::Null).map(|b| b.len()), Ok(0));
    assert_eq!(bind(&Params::new(), &json!({})).map(|b| b.len()), Ok(0));
}

#[test]
fn unsound_declarations_are_refused_field_by_field() {
    let problems = validate(&doc(json!({
        "1bad": {"type": "int"},
        "t": {"type": "integer"},
        "m": {"type": "str", "min": "a"},
        "r": {"type": "int", "min": 5, "max": 1},
        "l": {"type": "int", "max_length": 3},
        "p": {"type": "str", "pattern": "("},
        "c": {"type": "int", "choices": [1, "two"]},
        "d": {"type": "int", "max": 3, "default": 4},
        "u": {"type": "int", "unit": "kg"}
    })))
    .expect_err("refused")
    .0;
    let mut got = codes(&problems);
    got.sort();
    assert_eq!(
        got,
        [
            ("params.1bad".to_owned(), "bad_param_name"),
            ("params.c.choices[1]".to_owned(), "invalid_value"),
            ("params.d.default".to_owned(), "invalid_value"),
            ("params.l.max_length".to_owned(), "invalid_value"),
            ("params.m.min".to_owned(), "invalid_value"),
            ("params.p.pattern".to_owned(), "invalid_value"),
            ("params.r.min".to_owned(), "invalid_value"),
            ("params.t.type".to_owned(), "invalid_value"),
            ("params.u".to_owned(), "invalid_value"),
        ]
    );
    assert!(problems.iter().all(|p| p.node.is_none()));
}

#[test]
fn the_declarations_are_part_of_the_hash_and_a_document_without_them_is_unchanged() {
    let a = validate(&doc(json!({"q": {"type": "int", "default": 1}}))).expect("a");
    let b = validate(&doc(json!({"q": {"type": "int", "default": 2}}))).expect("b");
    assert_ne!(a.sha256(), b.sha256());
    let plain = json!({"version": 1, "nodes": [
        {"id": "a", "tool": "inline", "columns": [{"name": "x", "type": "Int64"}], "rows": [[1]]},
        {"id": "o", "tool": "output", "input": "a", "name": "out"}]})
    .to_string();
    assert!(validate(&plain).expect("plain").params().is_empty());
}
