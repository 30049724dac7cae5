//! Every tool with exact expected frames (nulls and empty inputs included), and malformed
//! workflows with their exact problem codes and fields.

use std::collections::HashMap;
use std::time::Duration;

use polars::prelude::*;
use serde_json::{Value, json};

use super::*;

/// The sample rows most tests start from.
fn sales() -> Value {
    json!({"id": "src", "tool": "inline",
    "columns": [
        {"name": "region", "type": "String"},
        {"name": "product", "type": "String"},
        {"name": "qty", "type": "Int64"},
        {"name": "price", "type": "Float64"}
    ],
    "rows": [
        ["north", "tea", 2, 5.0],
        ["south", "coffee", 1, 12.5],
        ["north", "coffee", null, 12.5],
        [null, "tea", 4, 5.0],
        ["east", "mug", 3, null]
    ]})
}

fn empty_sales() -> Value {
    let mut v = sales();
    v["rows"] = json!([]);
    v
}

fn doc(nodes: Vec<Value>) -> String {
    json!({"version": 1, "nodes": nodes}).to_string()
}

/// `nodes` plus an output named `out` reading `from`.
fn with_output(mut nodes: Vec<Value>, from: &str) -> String {
    nodes.push(json!({"id": "out", "tool": "output", "input": from, "name": "out"}));
    doc(nodes)
}

fn run_all(text: &str) -> Vec<Output> {
    let wf = validate(text).unwrap_or_else(|p| panic!("invalid: {p}"));
    execute(&wf, HashMap::new(), &RunControl::default(), &mut |_| {})
        .unwrap_or_else(|e| panic!("run failed: {e}"))
}

fn run_one(nodes: Vec<Value>, from: &str) -> DataFrame {
    let mut outs = run_all(&with_output(nodes, from));
    assert_eq!(outs.len(), 1);
    outs.remove(0).frame
}

fn run_err(nodes: Vec<Value>, from: &str) -> RunError {
    let wf = validate(&with_output(nodes, from)).unwrap_or_else(|p| panic!("invalid: {p}"));
    execute(&wf, HashMap::new(), &RunControl::default(), &mut |_| {}).expect_err("must fail")
}

fn problems(text: &str) -> Vec<(Option<String>, String, &'static str)> {
    match validate(text) {
        Ok(_) => panic!("expected problems"),
        Err(p) => p.0.into_iter().map(|p| (p.node, p.field, p.code)).collect(),
    }
}

fn p(node: &str, field: &str, code: &'static str) -> (Option<String>, String, &'static str) {
    (Some(node.to_owned()), field.to_owned(), code)
}

fn names(df: &DataFrame) -> Vec<&str> {
    df.get_column_names()
        .into_iter()
        .map(|n| n.as_str())
        .collect()
}

#[track_caller]
fn assert_frame(got: &DataFrame, want: &DataFrame) {
    assert_eq!(
        got.schema(),
        want.schema(),
        "schema\ngot:\n{got}\nwant:\n{want}"
    );
    assert!(
        got.equals_missing(want),
        "values\ngot:\n{got}\nwant:\n{want}"
    );
}

#[test]
fn inline_types_nulls_and_empty() {
    let node = json!({"id": "t", "tool": "inline",
    "columns": [
        {"name": "b", "type": "Boolean"}, {"name": "u", "type": "UInt8"},
        {"name": "d", "type": "Date"}, {"name": "ts", "type": "Datetime"},
        {"name": "tm", "type": "Time"}, {"name": "dur", "type": "Duration"},
        {"name": "s", "type": "String"}, {"name": "f", "type": "Float32"}
    ],
    "rows": [
        [true, 255, "2024-02-29", "2024-02-29T13:45:00.5", "23:59:59", 1500000, "x", 1.5],
        [null, null, null, null, null, null, null, null]
    ]});
    let got = run_one(vec![node.clone()], "t");
    let want = df!(
        "b" => [Some(true), None],
        "u" => [Some(255u8), None],
        "d" => [Some(19782i32), None],
        "ts" => [Some(1_709_214_300_500_000i64), None],
        "tm" => [Some(86_399_000_000_000i64), None],
        "dur" => [Some(1_500_000i64), None],
        "s" => [Some("x"), None],
        "f" => [Some(1.5f32), None],
    )
    .and_then(|df| {
        df.lazy()
            .with_columns([
                col("d").cast(DataType::Date),
                col("ts").cast(DataType::Datetime(TimeUnit::Microseconds, None)),
                col("tm").cast(DataType::Time),
                col("dur").cast(DataType::Duration(TimeUnit::Microseconds)),
            ])
            .collect()
    })
    .unwrap();
    assert_frame(&got, &want);

    let mut empty = node;
    empty["rows"] = json!([]);
    let got = run_one(vec![empty], "t");
    assert_eq!(got.height(), 0);
    assert_eq!(got.schema(), want.schema());
}

#[test]
fn inline_bad_cells_are_each_named() {
    let node = json!({"id": "t", "tool": "inline",
        "columns": [{"name": "a", "type": "Int8"}, {"name": "b", "type": "Date"}, {"name": "a", "type": "String"}],
        "rows": [[1, "2024-01-01", "x"]]});
    assert_eq!(
        problems(&with_output(vec![node], "t")),
        vec![p("t", "columns[2].name", "duplicate_column")]
    );
    let node = json!({"id": "t", "tool": "inline",
        "columns": [{"name": "a", "type": "Int8"}, {"name": "b", "type": "Date"}],
        "rows": [[128, "2024-13-01"], [1.5, "x"], ["1", null], [1]]});
    assert_eq!(
        problems(&with_output(vec![node.clone()], "t")),
        vec![p("t", "rows[3]", "invalid_value")]
    );
    let mut node = node;
    node["rows"] = json!([[128, "2024-13-01"], [1.5, "x"], ["1", null]]);
    assert_eq!(
        problems(&with_output(vec![node], "t")),
        vec![
            p("t", "rows[0][0]", "invalid_value"),
            p("t", "rows[1][0]", "invalid_value"),
            p("t", "rows[2][0]", "invalid_value"),
            p("t", "rows[0][1]", "invalid_value"),
            p("t", "rows[1][1]", "invalid_value"),
        ]
    );
}

#[test]
fn formula_chains_replaces_and_propagates_nulls() {
    let f = json!({"id": "f", "tool": "formula", "input": "src", "formulas": [
        {"column": "revenue", "expression": "pl.col('qty') * pl.col('price')"},
        {"column": "big", "expression": "pl.col('revenue') > 20"},
        {"column": "qty", "expression": "pl.col('qty').fill_null(0)"}
    ]});
    let got = run_one(vec![sales(), f.clone()], "f");
    let want = df!(
        "region" => [Some("north"), Some("south"), Some("north"), None, Some("east")],
        "product" => ["tea", "coffee", "coffee", "tea", "mug"],
        "qty" => [2i64, 1, 0, 4, 3],
        "price" => [Some(5.0), Some(12.5), Some(12.5), Some(5.0), None],
        "revenue" => [Some(10.0), Some(12.5), None, Some(20.0), None],
        "big" => [Some(false), Some(false), None, Some(false), None],
    )
    .unwrap();
    assert_frame(&got, &want);
    let got = run_one(vec![empty_sales(), f], "f");
    assert_eq!(got.height(), 0);
    assert_eq!(got.schema(), want.schema());
}

#[test]
fn formula_problems_name_the_formula() {
    let f = json!({"id": "f", "tool": "formula", "input": "src", "formulas": [
        {"column": "a", "expression": "pl.col('qty') + 1"},
        {"column": "b", "expression": "pl.col('qtty') * 2"},
        {"column": "c", "expression": "__import__('os')"},
        {"column": "", "expression": "pl.read_csv('/etc/passwd')"}
    ]});
    assert_eq!(
        problems(&with_output(vec![sales(), f], "f")),
        vec![
            p("f", "formulas[2].expression", "forbidden_name"),
            p("f", "formulas[3].column", "invalid_value"),
            p("f", "formulas[3].expression", "unsupported_method"),
        ]
    );
    // Once the expressions compile, the schema check finds the unknown column.
    let f = json!({"id": "f", "tool": "formula", "input": "src", "formulas": [
        {"column": "a", "expression": "pl.col('qty') + 1"},
        {"column": "b", "expression": "pl.col('qtty') * 2"}
    ]});
    assert_eq!(
        problems(&with_output(vec![sales(), f], "f")),
        vec![p("f", "formulas[1].expression", "unknown_column")]
    );
}

#[test]
fn filter_true_and_false_outputs() {
    let f =
        json!({"id": "flt", "tool": "filter", "input": "src", "expression": "pl.col('qty') >= 2"});
    let text = doc(vec![
        sales(),
        f,
        json!({"id": "yes", "tool": "output", "input": "flt.true", "name": "yes"}),
        json!({"id": "no", "tool": "output", "input": "flt.false", "name": "no"}),
        json!({"id": "plain", "tool": "output", "input": "flt", "name": "plain"}),
    ]);
    let outs = run_all(&text);
    let names: Vec<&str> = outs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["yes", "no", "plain"]);
    let product = |df: &DataFrame| -> Vec<Option<String>> {
        df.column("product")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .map(|s| s.map(str::to_owned))
            .collect()
    };
    let s = |v: &[&str]| v.iter().map(|x| Some((*x).to_owned())).collect::<Vec<_>>();
    assert_eq!(product(&outs[0].frame), s(&["tea", "tea", "mug"]));
    // The null-qty row is not true, so it goes to the false output: nothing is lost.
    assert_eq!(product(&outs[1].frame), s(&["coffee", "coffee"]));
    assert_eq!(product(&outs[2].frame), s(&["tea", "tea", "mug"]));
}

#[test]
fn filter_must_be_boolean() {
    let f =
        json!({"id": "flt", "tool": "filter", "input": "src", "expression": "pl.col('qty') + 1"});
    assert_eq!(
        problems(&with_output(vec![sales(), f], "flt")),
        vec![p("flt", "expression", "type_mismatch")]
    );
    let f = json!({"id": "flt", "tool": "filter", "input": "src", "expression": "pl.col('qty') > 1 and pl.col('qty') < 3"});
    assert_eq!(
        problems(&with_output(vec![sales(), f], "flt")),
        vec![p("flt", "expression", "boolean_operator")]
    );
}

#[test]
fn select_keeps_orders_drops_casts_renames() {
    let s = json!({"id": "s", "tool": "select", "input": "src",
        "columns": ["qty", "product", "region"], "drop": ["region"],
        "cast": {"qty": "Float64"}, "rename": {"product": "item"}});
    let got = run_one(vec![sales(), s], "s");
    let want = df!(
        "qty" => [Some(2.0), Some(1.0), None, Some(4.0), Some(3.0)],
        "item" => ["tea", "coffee", "coffee", "tea", "mug"],
    )
    .unwrap();
    assert_frame(&got, &want);
    // Without `columns`, everything stays in input order.
    let s = json!({"id": "s", "tool": "select", "input": "src", "drop": ["price", "qty"]});
    let got = run_one(vec![sales(), s], "s");
    assert_eq!(names(&got), ["region", "product"]);
}

#[test]
fn select_parses_text_into_dates_and_times() {
    let d = part(
        "d",
        &[("day", "String"), ("at", "String"), ("n", "String")],
        json!([
            ["2024-02-29", "2024-02-29 13:45:00", "7"],
            [null, null, null]
        ]),
    );
    let s = json!({"id": "s", "tool": "select", "input": "d", "cast": {"day": "Date", "at": "Datetime", "n": "Int32"}});
    let got = run_one(vec![d, s], "s");
    let want = df!("day" => [Some(19782i32), None], "at" => [Some(1_709_214_300_000_000i64), None], "n" => [Some(7i32), None])
        .unwrap()
        .lazy()
        .with_columns([col("day").cast(DataType::Date), col("at").cast(DataType::Datetime(TimeUnit::Microseconds, None))])
        .collect()
        .unwrap();
    assert_frame(&got, &want);
    let bad = part(
        "d",
        &[("day", "String")],
        json!([["2024-02-29"], ["yesterday"]]),
    );
    let s = json!({"id": "s", "tool": "select", "input": "d", "cast": {"day": "Date"}});
    assert_eq!(run_err(vec![bad, s], "s").code(), "execution_failed");
}

#[test]
fn select_problems() {
    let s = json!({"id": "s", "tool": "select", "input": "src",
        "columns": ["qty", "prodct"], "drop": ["nope"], "cast": {"x": "Int64"}, "rename": {"qty": ""}});
    assert_eq!(
        problems(&with_output(vec![sales(), s], "s")),
        vec![p("s", "rename.qty", "invalid_value")]
    );
    let s = json!({"id": "s", "tool": "select", "input": "src",
        "columns": ["qty", "prodct"], "drop": ["nope"], "cast": {"x": "Int64"}, "rename": {"price": "qty"}});
    assert_eq!(
        problems(&with_output(vec![sales(), s], "s")),
        vec![
            p("s", "columns[1]", "unknown_column"),
            p("s", "drop[0]", "unknown_column"),
            p("s", "cast.x", "unknown_column")
        ]
    );
    let s = json!({"id": "s", "tool": "select", "input": "src", "rename": {"price": "qty"}});
    assert_eq!(
        problems(&with_output(vec![sales(), s], "s")),
        vec![p("s", "", "duplicate_column")]
    );
    let s = json!({"id": "s", "tool": "select", "input": "src", "cast": {"fancy": "Int128"}});
    assert_eq!(
        problems(&with_output(vec![sales(), s], "s")),
        vec![p("s", "cast.fancy", "invalid_value")]
    );
    // A strict cast that meets a value it cannot convert fails the run, naming no data.
    let s = json!({"id": "s", "tool": "select", "input": "src", "cast": {"region": "Int64"}});
    let e = run_err(vec![sales(), s], "s");
    assert_eq!(e.code(), "execution_failed", "{e}");
}

#[test]
fn sort_multi_key_descending_nulls_last_and_stable() {
    let s = json!({"id": "s", "tool": "sort", "input": "src", "by": [
        {"column": "price", "descending": true, "nulls_last": true},
        {"column": "qty"}
    ]});
    let got = run_one(vec![sales(), s], "s");
    let want = df!(
        "region" => [Some("north"), Some("south"), Some("north"), None, Some("east")],
        "product" => ["coffee", "coffee", "tea", "tea", "mug"],
        "qty" => [None, Some(1i64), Some(2), Some(4), Some(3)],
        "price" => [Some(12.5), Some(12.5), Some(5.0), Some(5.0), None],
    )
    .unwrap();
    assert_frame(&got, &want);
    let s = json!({"id": "s", "tool": "sort", "input": "src", "by": [{"column": "product"}]});
    let got = run_one(vec![sales(), s], "s");
    // Stable: equal keys keep input order.
    let regions: Vec<Option<&str>> = got
        .column("region")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(
        regions,
        [
            Some("south"),
            Some("north"),
            Some("east"),
            Some("north"),
            None
        ]
    );
    let s = json!({"id": "s", "tool": "sort", "input": "src", "by": []});
    assert_eq!(
        problems(&with_output(vec![sales(), s], "s")),
        vec![p("s", "by", "invalid_value")]
    );
}

fn dims() -> Value {
    json!({"id": "dim", "tool": "inline",
        "columns": [{"name": "product", "type": "String"}, {"name": "category", "type": "String"}, {"name": "qty", "type": "Int64"}],
        "rows": [["coffee", "drinks", 10], ["tea", "drinks", 20], ["cake", "food", 30]]})
}

fn join(how: &str) -> DataFrame {
    let j = json!({"id": "j", "tool": "join", "left": "src", "right": "dim", "how": how,
        "on": if how == "cross" { json!([]) } else { json!([{"left": "product", "right": "product"}]) }});
    let left = json!({"id": "src", "tool": "inline",
        "columns": [{"name": "product", "type": "String"}, {"name": "qty", "type": "Int64"}],
        "rows": [["tea", 1], ["mug", 2], ["coffee", 3], [null, 4]]});
    run_one(vec![left, dims(), j], "j")
}

#[test]
fn join_every_kind() {
    let want = df!(
        "product" => ["tea", "coffee"], "qty" => [1i64, 3],
        "category" => ["drinks", "drinks"], "qty_right" => [20i64, 10],
    )
    .unwrap();
    assert_frame(&join("inner"), &want);
    let want = df!(
        "product" => [Some("tea"), Some("mug"), Some("coffee"), None], "qty" => [1i64, 2, 3, 4],
        "category" => [Some("drinks"), None, Some("drinks"), None], "qty_right" => [Some(20i64), None, Some(10), None],
    )
    .unwrap();
    assert_frame(&join("left"), &want);
    let want = df!(
        "qty" => [Some(3i64), Some(1), None], "product" => ["coffee", "tea", "cake"],
        "category" => ["drinks", "drinks", "food"], "qty_right" => [10i64, 20, 30],
    )
    .unwrap();
    assert_frame(&join("right"), &want);
    let full = join("full");
    assert_eq!(
        names(&full),
        ["product", "qty", "product_right", "category", "qty_right"]
    );
    assert_eq!(full.height(), 5);
    let want = df!("product" => ["tea", "coffee"], "qty" => [1i64, 3]).unwrap();
    assert_frame(&join("semi"), &want);
    let want = df!("product" => [Some("mug"), None], "qty" => [2i64, 4]).unwrap();
    assert_frame(&join("anti"), &want);
    let cross = join("cross");
    assert_eq!(cross.height(), 12);
    assert_eq!(
        names(&cross),
        ["product", "qty", "product_right", "category", "qty_right"]
    );
}

#[test]
fn join_problems() {
    let j = json!({"id": "j", "tool": "join", "left": "src", "right": "dim", "how": "inner",
        "on": [{"left": "qty", "right": "product"}, {"left": "prodct", "right": "product"}]});
    assert_eq!(
        problems(&with_output(vec![sales(), dims(), j], "j")),
        vec![
            p("j", "on[0]", "type_mismatch"),
            p("j", "on[1].left", "unknown_column")
        ]
    );
    let j = json!({"id": "j", "tool": "join", "left": "src", "right": "dim", "how": "cross", "on": [{"left": "qty", "right": "qty"}]});
    assert_eq!(
        problems(&with_output(vec![sales(), dims(), j], "j")),
        vec![p("j", "on", "invalid_value")]
    );
    let j = json!({"id": "j", "tool": "join", "left": "src", "right": "dim", "how": "outer"});
    assert_eq!(
        problems(&with_output(vec![sales(), dims(), j], "j")),
        vec![p("j", "how", "invalid_value")]
    );
}

fn part(id: &str, cols: &[(&str, &str)], rows: Value) -> Value {
    json!({"id": id, "tool": "inline",
        "columns": cols.iter().map(|(n, t)| json!({"name": n, "type": t})).collect::<Vec<_>>(),
        "rows": rows})
}

#[test]
fn union_policies() {
    let a = part(
        "a",
        &[("x", "Int64"), ("y", "String")],
        json!([[1, "a"], [2, null]]),
    );
    let b = part("b", &[("y", "String"), ("x", "Int32")], json!([["c", 3]]));
    let c = part("c", &[("x", "Int64"), ("z", "Boolean")], json!([[4, true]]));
    let u = json!({"id": "u", "tool": "union", "inputs": ["a", "b"]});
    let got = run_one(vec![a.clone(), b.clone(), u], "u");
    let want = df!("x" => [1i64, 2, 3], "y" => [Some("a"), None, Some("c")]).unwrap();
    assert_frame(&got, &want);

    let u = json!({"id": "u", "tool": "union", "inputs": ["a", "b", "c"], "missing": "null"});
    let got = run_one(vec![a.clone(), b.clone(), c.clone(), u], "u");
    let want = df!(
        "x" => [1i64, 2, 3, 4], "y" => [Some("a"), None, Some("c"), None],
        "z" => [None, None, None, Some(true)],
    )
    .unwrap();
    assert_frame(&got, &want);

    let u = json!({"id": "u", "tool": "union", "inputs": ["a", "c"], "missing": "drop"});
    let got = run_one(vec![a.clone(), c.clone(), u], "u");
    assert_frame(&got, &df!("x" => [1i64, 2, 4]).unwrap());

    let u = json!({"id": "u", "tool": "union", "inputs": ["a", "c"]});
    assert_eq!(
        problems(&with_output(vec![a.clone(), c, u], "u")),
        vec![p("u", "inputs[1]", "schema_mismatch")]
    );
    let u = json!({"id": "u", "tool": "union", "inputs": ["a"]});
    assert_eq!(
        problems(&with_output(vec![a, u], "u")),
        vec![p("u", "inputs", "invalid_value")]
    );
}

#[test]
fn summarize_every_aggregation() {
    let s = json!({"id": "s", "tool": "summarize", "input": "src", "group_by": ["product"], "aggregations": [
        {"op": "sum", "column": "qty"}, {"op": "mean", "column": "price"},
        {"op": "min", "column": "qty"}, {"op": "max", "column": "qty"},
        {"op": "count", "column": "qty"}, {"op": "count", "as": "rows"},
        {"op": "count_distinct", "column": "region"}, {"op": "first", "column": "region"},
        {"op": "last", "column": "region"}, {"op": "median", "column": "qty"},
        {"op": "std", "column": "qty"}, {"op": "concat", "column": "region", "separator": "|"}
    ]});
    let got = run_one(vec![sales(), s], "s");
    let want = df!(
        "product" => ["tea", "coffee", "mug"],
        "qty_sum" => [6i64, 1, 3],
        "price_mean" => [Some(5.0), Some(12.5), None],
        "qty_min" => [Some(2i64), Some(1), Some(3)],
        "qty_max" => [Some(4i64), Some(1), Some(3)],
        "qty_count" => [2u32, 1, 1],
        "rows" => [2u32, 2, 1],
        "region_count_distinct" => [1u32, 2, 1],
        "region_first" => [Some("north"), Some("south"), Some("east")],
        "region_last" => [None, Some("north"), Some("east")],
        "qty_median" => [Some(3.0), Some(1.0), Some(3.0)],
        "qty_std" => [Some(std::f64::consts::SQRT_2), None, None],
        "region_concat" => ["north", "south|north", "east"],
    )
    .unwrap();
    assert_frame(&got, &want);
}

#[test]
fn summarize_without_groups_and_on_empty_input() {
    let s = json!({"id": "s", "tool": "summarize", "input": "src", "aggregations": [
        {"op": "sum", "column": "qty", "as": "total"}, {"op": "count"}]});
    let got = run_one(vec![sales(), s.clone()], "s");
    assert_frame(&got, &df!("total" => [10i64], "count" => [5u32]).unwrap());
    let got = run_one(vec![empty_sales(), s], "s");
    assert_frame(&got, &df!("total" => [0i64], "count" => [0u32]).unwrap());
    let s = json!({"id": "s", "tool": "summarize", "input": "src", "group_by": ["region"], "aggregations": [{"op": "count"}]});
    let got = run_one(vec![empty_sales(), s], "s");
    assert_eq!(got.height(), 0);
}

#[test]
fn summarize_problems() {
    let s = json!({"id": "s", "tool": "summarize", "input": "src", "group_by": ["regoin"], "aggregations": [
        {"op": "sum", "column": "product"}, {"op": "mean"}, {"op": "max", "column": "qty", "separator": ","}]});
    assert_eq!(
        problems(&with_output(vec![sales(), s], "s")),
        vec![
            p("s", "aggregations[1].column", "missing_field"),
            p("s", "aggregations[2].separator", "invalid_value")
        ]
    );
    let s = json!({"id": "s", "tool": "summarize", "input": "src", "group_by": ["regoin"], "aggregations": [
        {"op": "sum", "column": "product"}, {"op": "median", "column": "qty"}, {"op": "avg", "column": "qty"}]});
    assert_eq!(
        problems(&with_output(vec![sales(), s], "s")),
        vec![p("s", "aggregations[2].op", "invalid_value")]
    );
    let s = json!({"id": "s", "tool": "summarize", "input": "src", "group_by": ["regoin"], "aggregations": [
        {"op": "sum", "column": "product"}, {"op": "median", "column": "qty"}]});
    assert_eq!(
        problems(&with_output(vec![sales(), s], "s")),
        vec![
            p("s", "group_by[0]", "unknown_column"),
            p("s", "aggregations[0].op", "type_mismatch")
        ]
    );
}

#[test]
fn unique_keeps_first_last_or_none() {
    let u = |keep: &str| json!({"id": "u", "tool": "unique", "input": "src", "columns": ["product"], "keep": keep});
    let regions = |df: DataFrame| -> Vec<Option<String>> {
        df.column("region")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .map(|s| s.map(str::to_owned))
            .collect()
    };
    let s = |v: &[Option<&str>]| v.iter().map(|x| x.map(str::to_owned)).collect::<Vec<_>>();
    assert_eq!(
        regions(run_one(vec![sales(), u("first")], "u")),
        s(&[Some("north"), Some("south"), Some("east")])
    );
    assert_eq!(
        regions(run_one(vec![sales(), u("last")], "u")),
        s(&[Some("north"), None, Some("east")])
    );
    assert_eq!(
        regions(run_one(vec![sales(), u("none")], "u")),
        s(&[Some("east")])
    );
    let all = json!({"id": "u", "tool": "unique", "input": "d"});
    let d = part(
        "d",
        &[("a", "Int64")],
        json!([[1], [1], [null], [2], [null]]),
    );
    let got = run_one(vec![d, all], "u");
    assert_frame(&got, &df!("a" => [Some(1i64), None, Some(2)]).unwrap());
}

#[test]
fn limit_and_seeded_sample() {
    let l = json!({"id": "l", "tool": "limit", "input": "src", "n": 2, "offset": 1});
    let got = run_one(vec![sales(), l], "l");
    assert_eq!(
        got.column("product")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .collect::<Vec<_>>(),
        [Some("coffee"), Some("coffee")]
    );
    let l = json!({"id": "l", "tool": "limit", "input": "src", "n": 10, "offset": 9});
    assert_eq!(run_one(vec![sales(), l], "l").height(), 0);

    let rows: Vec<Value> = (0..100).map(|i| json!([i, i * 2])).collect();
    let d = part("d", &[("a", "Int64"), ("b", "Int64")], json!(rows));
    let s = json!({"id": "s", "tool": "sample", "input": "d", "n": 10, "seed": 7});
    let first = run_one(vec![d.clone(), s.clone()], "s");
    let again = run_one(vec![d.clone(), s], "s");
    assert_eq!(first.height(), 10);
    assert!(first.equals(&again), "same seed, same rows");
    // Rows stay whole: every sampled b is its a doubled.
    let a = first.column("a").unwrap().i64().unwrap();
    let b = first.column("b").unwrap().i64().unwrap();
    for (a, b) in a.iter().zip(b.iter()) {
        assert_eq!(a.map(|a| a * 2), b);
    }
    let other = run_one(
        vec![
            d.clone(),
            json!({"id": "s", "tool": "sample", "input": "d", "n": 10, "seed": 8}),
        ],
        "s",
    );
    assert!(!first.equals(&other), "another seed, other rows");
    let frac = run_one(
        vec![
            d.clone(),
            json!({"id": "s", "tool": "sample", "input": "d", "fraction": 0.25}),
        ],
        "s",
    );
    assert_eq!(frac.height(), 25);
    let s = json!({"id": "s", "tool": "sample", "input": "d", "n": 1, "fraction": 0.5});
    assert_eq!(
        problems(&with_output(vec![d.clone(), s], "s")),
        vec![p("s", "n", "invalid_value")]
    );
    let s = json!({"id": "s", "tool": "sample", "input": "d", "fraction": 1.5});
    assert_eq!(
        problems(&with_output(vec![d.clone(), s], "s")),
        vec![p("s", "fraction", "invalid_value")]
    );
    // More rows than there are, without replacement: a run-time error, not a panic.
    let s = json!({"id": "s", "tool": "sample", "input": "d", "n": 1000});
    assert_eq!(run_err(vec![d, s], "s").code(), "execution_failed");
}

#[test]
fn document_level_problems() {
    assert_eq!(problems("{"), vec![(None, String::new(), "invalid_json")]);
    assert_eq!(problems("[]"), vec![(None, String::new(), "invalid_value")]);
    assert_eq!(
        problems(r#"{"version": 2, "nodes": [], "extra": 1}"#),
        vec![
            (None, "extra".into(), "unknown_field"),
            (None, "version".into(), "unsupported_version")
        ]
    );
    assert_eq!(
        problems(r#"{"version": 1}"#),
        vec![(None, "nodes".into(), "missing_field")]
    );
    assert_eq!(
        problems(r#"{"version": 1, "nodes": []}"#),
        vec![(None, "nodes".into(), "no_outputs")]
    );
    assert_eq!(
        problems(&doc(vec![sales()])),
        vec![(None, "nodes".into(), "no_outputs")]
    );
    assert_eq!(
        problems(r#"{"version": 1, "nodes": [], "nodes": []}"#),
        vec![(None, String::new(), "invalid_json")]
    );
}

/// Between equally close ids, the did-you-mean of an unknown input is the same on every
/// validation (it once depended on a hash map's order).
#[test]
fn unknown_input_hint_is_deterministic() {
    let text = with_output(
        vec![
            sales(),
            json!({"id": "rates", "tool": "limit", "input": "src", "n": 1}),
            json!({"id": "ratex", "tool": "limit", "input": "src", "n": 1}),
            json!({"id": "tidy", "tool": "limit", "input": "rate", "n": 1}),
        ],
        "tidy",
    );
    for _ in 0..20 {
        let e = validate(&text).unwrap_err();
        assert_eq!(
            e.0[0].message,
            "no node has id \"rate\"; did you mean \"ratex\"?"
        );
    }
}

#[test]
fn node_level_problems_are_all_reported() {
    let text = doc(vec![
        sales(),
        json!({"id": "src", "tool": "inline", "columns": [], "rows": []}),
        json!({"id": "bad id", "tool": "limit", "input": "src", "n": 1}),
        json!({"id": "x1", "tool": "fliter", "input": "src", "expression": "True"}),
        json!({"id": "x2", "tool": "limit", "input": "src", "n": -1}),
        json!({"id": "x3", "tool": "limit", "input": "src", "n": 1, "colour": "red"}),
        json!({"id": "x4", "tool": "limit", "n": 1}),
        json!({"id": "x5", "tool": "limit", "input": "nowhere", "n": 1}),
        json!({"id": "x6", "tool": "limit", "input": "src.false", "n": 1}),
        json!({"id": "x7", "tool": "sql", "connection": "db", "dialect": "postgres", "query": "DROP TABLE users"}),
        json!({"id": "x8", "tool": "sql", "connection": "db", "dialect": "oracle", "query": "SELECT 1"}),
        json!({"id": "o1", "tool": "output", "input": "x5", "name": "r"}),
        json!({"id": "o2", "tool": "output", "input": "o1", "name": "r"}),
        json!({"id": "x9", "tool": "formula", "input": "x1", "formulas": [{"column": "a", "expression": "pl.col('a')"}]}),
    ]);
    let got = problems(&text);
    assert_eq!(
        got,
        vec![
            p("src", "id", "duplicate_id"),
            (None, "nodes[2].id".into(), "bad_id"),
            p("x1", "tool", "unknown_tool"),
            p("x2", "n", "invalid_value"),
            p("x3", "colour", "unknown_field"),
            p("x4", "input", "missing_field"),
            p("x8", "dialect", "invalid_value"),
            p("x7", "query", "not_read_only"),
            p("x5", "input", "unknown_input"),
            p("x6", "input", "unknown_output"),
            p("o2", "input", "bad_input"),
            p("o2", "name", "duplicate_output"),
        ],
        "{got:#?}"
    );
    let e = validate(&text).unwrap_err();
    let x1 =
        e.0.iter()
            .find(|p| p.node.as_deref() == Some("x1"))
            .unwrap();
    assert!(
        x1.message.contains("did you mean `filter`?"),
        "{}",
        x1.message
    );
    let x5 =
        e.0.iter()
            .find(|p| p.node.as_deref() == Some("x5"))
            .unwrap();
    assert!(
        x5.to_string()
            .starts_with("node \"x5\", input: no node has id \"nowhere\""),
        "{x5}"
    );
}

#[test]
fn cycles_are_found_and_only_cycle_members_reported() {
    let text = doc(vec![
        sales(),
        json!({"id": "a", "tool": "limit", "input": "c", "n": 1}),
        json!({"id": "b", "tool": "limit", "input": "a", "n": 1}),
        json!({"id": "c", "tool": "limit", "input": "b", "n": 1}),
        json!({"id": "d", "tool": "limit", "input": "c", "n": 1}),
        json!({"id": "self", "tool": "limit", "input": "self", "n": 1}),
        json!({"id": "out", "tool": "output", "input": "d", "name": "out"}),
    ]);
    assert_eq!(
        problems(&text),
        vec![
            p("a", "input", "cycle"),
            p("b", "input", "cycle"),
            p("c", "input", "cycle"),
            p("self", "input", "cycle")
        ]
    );
}

fn chain(len: usize) -> String {
    let mut nodes = vec![sales()];
    let mut prev = "src".to_owned();
    for i in 0..len {
        let id = format!("n{i}");
        nodes.push(json!({"id": id, "tool": "formula", "input": prev, "formulas": [{"column": "qty", "expression": "pl.col('qty') + 1"}]}));
        prev = id;
    }
    with_output(nodes, &prev)
}

#[test]
fn deep_chains_run_or_are_refused_without_overflow() {
    // src + 498 formulas + output = 500 deep: the limit, and it runs.
    let outs = run_all(&chain(498));
    let qty: Vec<Option<i64>> = outs[0]
        .frame
        .column("qty")
        .unwrap()
        .i64()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(qty, [Some(500), Some(499), None, Some(502), Some(501)]);
    let got = problems(&chain(499));
    assert_eq!(got, vec![p("out", "input", "limit_exceeded")]);
}

#[test]
fn huge_workflows_are_refused_before_any_work() {
    let nodes: Vec<Value> = (0..100_000)
        .map(|i| json!({"id": format!("n{i}"), "tool": "limit", "input": "n0", "n": 1}))
        .collect();
    assert_eq!(
        problems(&doc(nodes)),
        vec![(None, "nodes".into(), "limit_exceeded")]
    );
    // A long cycle is found iteratively; the first few members are named, the rest counted.
    let mut nodes: Vec<Value> = (0..1_999).map(|i| json!({"id": format!("n{i}"), "tool": "limit", "input": format!("n{}", (i + 1) % 1_999), "n": 1})).collect();
    nodes.push(json!({"id": "out", "tool": "output", "input": "n0", "name": "out"}));
    let got = problems(&doc(nodes));
    assert_eq!(got.len(), 11, "{got:?}");
    assert!(
        got[..10].iter().all(|p| p.1 == "input" && p.2 == "cycle"),
        "{got:?}"
    );
    assert_eq!(got[10], (None, "nodes".into(), "cycle"));
    // A long chain is refused at the depth limit, naming the first node past it.
    let mut nodes: Vec<Value> = vec![sales()];
    nodes.extend((0..1_998).map(|i| json!({"id": format!("n{i}"), "tool": "limit", "input": if i == 0 { "src".to_owned() } else { format!("n{}", i - 1) }, "n": 1})));
    nodes.push(json!({"id": "out", "tool": "output", "input": "n1997", "name": "out"}));
    assert_eq!(
        problems(&doc(nodes)),
        vec![p("n499", "input", "limit_exceeded")]
    );
}

#[test]
fn predicted_schemas_without_data() {
    let text = with_output(
        vec![
            json!({"id": "q", "tool": "sql", "connection": "db", "dialect": "sqlite", "query": "SELECT 1 AS one"}),
            sales(),
            json!({"id": "f", "tool": "formula", "input": "src", "formulas": [{"column": "revenue", "expression": "pl.col('qty') * pl.col('price')"}]}),
            json!({"id": "s", "tool": "summarize", "input": "f", "group_by": ["region"], "aggregations": [{"op": "sum", "column": "revenue"}, {"op": "count"}]}),
            json!({"id": "j", "tool": "join", "left": "s", "right": "q", "how": "cross"}),
        ],
        "j",
    );
    let wf = validate(&text).unwrap();
    let schemas: Vec<(&str, Option<String>)> = wf
        .schemas()
        .map(|(id, _, s)| {
            (
                id,
                s.map(|s| {
                    s.iter()
                        .map(|(n, t)| format!("{n}:{t}"))
                        .collect::<Vec<_>>()
                        .join(",")
                }),
            )
        })
        .collect();
    assert_eq!(
        schemas,
        [
            ("q", None),
            (
                "src",
                Some("region:str,product:str,qty:i64,price:f64".to_owned())
            ),
            (
                "f",
                Some("region:str,product:str,qty:i64,price:f64,revenue:f64".to_owned())
            ),
            ("s", Some("region:str,revenue_sum:f64,count:u32".to_owned())),
            ("j", None),
            ("out", None),
        ]
    );
    assert_eq!(wf.connections(), ["db"]);
    assert_eq!(wf.sha256(), workflow_sha256(&text).unwrap());
}

#[test]
fn sql_inputs_are_checked_again_with_their_real_schema() {
    let text = with_output(
        vec![
            json!({"id": "q", "tool": "sql", "connection": "db", "dialect": "sqlite", "query": "SELECT 1 AS one"}),
            json!({"id": "f", "tool": "formula", "input": "q", "formulas": [{"column": "two", "expression": "pl.col('won') * 2"}]}),
        ],
        "f",
    );
    let wf = validate(&text).unwrap();
    let run = |frame: DataFrame| {
        let inputs = HashMap::from([("q".to_owned(), frame)]);
        execute(&wf, inputs, &RunControl::default(), &mut |_| {})
    };
    match run(df!("one" => [1i64]).unwrap()) {
        Err(RunError::Invalid(p)) => assert_eq!(p.0[0].code, "unknown_column"),
        other => panic!("{other:?}"),
    }
    let outs = run(df!("won" => [1i64, 2]).unwrap()).unwrap();
    assert_frame(
        &outs[0].frame,
        &df!("won" => [1i64, 2], "two" => [2i64, 4]).unwrap(),
    );
    let e = execute(&wf, HashMap::new(), &RunControl::default(), &mut |_| {}).unwrap_err();
    assert_eq!(e.code(), "missing_input");
}

#[test]
fn progress_events_in_order() {
    let text = with_output(
        vec![
            sales(),
            json!({"id": "l", "tool": "limit", "input": "src", "n": 2}),
        ],
        "l",
    );
    let wf = validate(&text).unwrap();
    let mut events = Vec::new();
    execute(&wf, HashMap::new(), &RunControl::default(), &mut |e| {
        events.push(e)
    })
    .unwrap();
    let started = |n: &str, t| Event::Started {
        node: n.into(),
        tool: t,
    };
    let finished = |n: &str, t, rows| Event::Finished {
        node: n.into(),
        tool: t,
        rows,
    };
    assert_eq!(
        events,
        [
            started("src", "inline"),
            finished("src", "inline", Some(5)),
            started("l", "limit"),
            started("out", "output"),
            finished("l", "limit", None),
            finished("out", "output", Some(2)),
        ]
    );
}

#[test]
fn shared_branches_feed_several_outputs() {
    let text = doc(vec![
        sales(),
        json!({"id": "f", "tool": "formula", "input": "src", "formulas": [{"column": "r", "expression": "pl.col('qty') * pl.col('price')"}]}),
        json!({"id": "s1", "tool": "summarize", "input": "f", "aggregations": [{"op": "sum", "column": "r"}]}),
        json!({"id": "s2", "tool": "summarize", "input": "f", "aggregations": [{"op": "max", "column": "r"}]}),
        json!({"id": "o1", "tool": "output", "input": "s1", "name": "total"}),
        json!({"id": "o2", "tool": "output", "input": "s2", "name": "largest"}),
    ]);
    let outs = run_all(&text);
    assert_frame(&outs[0].frame, &df!("r_sum" => [42.5]).unwrap());
    assert_frame(&outs[1].frame, &df!("r_max" => [Some(20.0)]).unwrap());
}

fn heavy() -> (Workflow, HashMap<String, DataFrame>) {
    let text = with_output(
        vec![
            json!({"id": "q", "tool": "sql", "connection": "db", "dialect": "sqlite", "query": "SELECT a FROM t"}),
            json!({"id": "j", "tool": "join", "left": "q", "right": "q", "how": "cross"}),
            json!({"id": "s", "tool": "sort", "input": "j", "by": [{"column": "a"}, {"column": "a_right", "descending": true}]}),
        ],
        "s",
    );
    let wf = validate(&text).unwrap();
    let a: Vec<i64> = (0..4_000).collect();
    let inputs = HashMap::from([("q".to_owned(), df!("a" => a).unwrap())]);
    (wf, inputs)
}

#[test]
fn cancel_and_time_limit_stop_a_run() {
    let (wf, inputs) = heavy();
    let control = RunControl::default();
    control.cancel();
    let e = execute(&wf, inputs.clone(), &control, &mut |_| {}).unwrap_err();
    assert_eq!(e.code(), "cancelled");

    // 16M-row cross join plus sort, stopped by a 50 ms limit while it runs.
    let control = RunControl::with_timeout(Duration::from_millis(50));
    let started = std::time::Instant::now();
    let e = execute(&wf, inputs.clone(), &control, &mut |_| {}).unwrap_err();
    assert_eq!(e.code(), "timeout");
    assert!(started.elapsed() < Duration::from_secs(30));

    // Cancelled from another thread while running.
    let control = RunControl::default();
    let remote = control.clone();
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        remote.cancel();
    });
    let e = execute(&wf, inputs, &control, &mut |_| {}).unwrap_err();
    canceller.join().unwrap();
    assert_eq!(e.code(), "cancelled");
}

#[test]
fn json_schema_file_is_generated_from_the_model() {
    let committed = include_str!("../../schema/workflow.schema.json");
    assert_eq!(
        committed,
        model::json_schema(),
        "schema/workflow.schema.json is stale: run `hubworker doc workflow-schema > schema/workflow.schema.json`"
    );
}

#[test]
fn every_tool_on_empty_input_gives_an_empty_frame_of_the_predicted_schema() {
    let tools = [
        json!({"id": "t", "tool": "formula", "input": "src", "formulas": [{"column": "r", "expression": "pl.col('qty') * 2"}]}),
        json!({"id": "t", "tool": "filter", "input": "src", "expression": "pl.col('qty') > 1"}),
        json!({"id": "t", "tool": "select", "input": "src", "columns": ["qty"], "cast": {"qty": "Float32"}}),
        json!({"id": "t", "tool": "sort", "input": "src", "by": [{"column": "qty"}]}),
        json!({"id": "t", "tool": "join", "left": "src", "right": "src", "how": "left", "on": [{"left": "qty", "right": "qty"}]}),
        json!({"id": "t", "tool": "join", "left": "src", "right": "src", "how": "cross"}),
        json!({"id": "t", "tool": "union", "inputs": ["src", "src"]}),
        json!({"id": "t", "tool": "summarize", "input": "src", "group_by": ["region"], "aggregations": [{"op": "concat", "column": "product"}]}),
        json!({"id": "t", "tool": "unique", "input": "src"}),
        json!({"id": "t", "tool": "limit", "input": "src", "n": 3}),
        json!({"id": "t", "tool": "sample", "input": "src", "fraction": 0.5}),
    ];
    for tool in tools {
        let text = with_output(vec![empty_sales(), tool.clone()], "t");
        let wf = validate(&text).unwrap_or_else(|p| panic!("{tool}: {p}"));
        let predicted = wf
            .schemas()
            .find(|(id, _, _)| *id == "t")
            .and_then(|(_, _, s)| s.cloned())
            .unwrap();
        let outs = execute(&wf, HashMap::new(), &RunControl::default(), &mut |_| {})
            .unwrap_or_else(|e| panic!("{tool}: {e}"));
        assert_eq!(outs[0].frame.height(), 0, "{tool}");
        assert_eq!(outs[0].frame.schema(), &predicted, "{tool}");
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

    /// Cutting, duplicating and retyping parts of real workflows never panics: every result
    /// is a workflow or a list of problems.
    #[test]
    fn mangled_examples_never_panic(
        which in 0usize..4,
        cuts in proptest::collection::vec((0usize..4096, 0usize..64, 0u8..4), 1..6),
    ) {
        let names = ["revenue_by_region", "returns_split", "region_targets", "customer_sample"];
        let path = format!("{}/examples/{}.json", env!("CARGO_MANIFEST_DIR"), names[which]);
        let mut text = std::fs::read_to_string(path).unwrap().into_bytes();
        for (at, len, how) in cuts {
            let at = at % text.len().max(1);
            let end = (at + len).min(text.len());
            match how {
                0 => { text.drain(at..end); }
                1 => { let piece: Vec<u8> = text[at..end].to_vec(); text.splice(at..at, piece); }
                2 => { text.splice(at..end, b"null".iter().copied()); }
                _ => { text.splice(at..end, b"[{\"id\":\"x\"}]".iter().copied()); }
            }
        }
        let text = String::from_utf8_lossy(&text).into_owned();
        if let Ok(wf) = validate(&text) {
            let _ = execute(&wf, HashMap::new(), &RunControl::default(), &mut |_| {});
        }
    }
}
