//! `hubworker sample-db`, `validate` and `run` as real processes, over the examples in
//! `examples/` and a freshly generated sample database.

use std::path::{Path, PathBuf};

use polars::prelude::*;
use sqlx::Connection;

use crate::util::run;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A fresh sample database in `dir`.
fn sample_db(dir: &Path) -> PathBuf {
    let db = dir.join("shop.db");
    let out = run(&["sample-db", db.to_str().expect("utf-8 path")], "", dir);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // It never overwrites.
    let again = run(&["sample-db", db.to_str().expect("utf-8 path")], "", dir);
    assert_eq!(again.status.code(), Some(2));
    assert!(text(&again.stderr).contains("already exists"));
    db
}

#[test]
fn validate_prints_schemas_then_the_hash_last() {
    let dir = tempfile::tempdir().unwrap();
    let path = examples().join("region_targets.json");
    let out = run(&["validate", path.to_str().unwrap()], "", dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let last = stdout.lines().last().unwrap();
    let doc = std::fs::read_to_string(&path).unwrap();
    let hash = hubworker::workflow::workflow_sha256(&doc).unwrap();
    assert_eq!(last, format!("sha256:{hash}"));
    assert!(
        stdout.contains("targets (inline): region: str, target: f64, manager: str\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("sales (sql): (known when the query runs)\n"),
        "{stdout}"
    );

    // Stdin works too, and the JSON form carries the same hash.
    let out = run(&["validate", "--json", "-"], &doc, dir.path());
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["sha256"], hash.as_str());
    assert_eq!(
        v["nodes"][0]["schema"][1],
        serde_json::json!({"name": "target", "type": "f64"})
    );
}

#[test]
fn validate_reports_every_problem_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let doc = r#"{"version": 1, "nodes": [
        {"id": "q", "tool": "sql", "connection": "shop", "dialect": "sqlite", "query": "DELETE FROM orders"},
        {"id": "f", "tool": "formula", "input": "q", "formulas": [{"column": "x", "expression": "pl.col('a').map_elements(print)"}]},
        {"id": "o", "tool": "output", "input": "nope", "name": "out"}
    ]}"#;
    let out = run(&["validate", "-"], doc, dir.path());
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(
        lines[0].starts_with("node \"q\", query: ") && lines[0].ends_with("[not_read_only]"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with("node \"f\", formulas[0].expression: ")
            && lines[1].ends_with("[unsupported_method]"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].starts_with("node \"o\", input: no node has id \"nope\""),
        "{}",
        lines[2]
    );
    assert_eq!(lines[3], "invalid: 3 problems");
    assert!(!stdout.contains("sha256:"));

    let out = run(&["validate", "--json", "-"], doc, dir.path());
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["problems"][0]["node"], "q");
    assert_eq!(v["problems"][0]["field"], "query");
    assert_eq!(v["problems"][0]["code"], "not_read_only");

    let missing = run(&["validate", "/nonexistent/wf.json"], "", dir.path());
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn every_example_validates_and_runs_on_the_sample_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = sample_db(dir.path());
    let conn = format!("shop=sqlite://{}", db.display());
    let mut names: Vec<PathBuf> = std::fs::read_dir(examples())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    names.sort();
    assert!(names.len() >= 4, "{names:?}");
    for wf in &names {
        let out_dir = dir.path().join(wf.file_stem().unwrap());
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(wf).unwrap()).unwrap();
        // A required run parameter gets its first choice (`--param`, read by its type).
        let params: Vec<String> = doc["params"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, d)| d.get("default").is_none())
            .map(|(name, d)| format!("{name}={}", d["choices"][0].as_str().unwrap()))
            .collect();
        let mut args = vec![
            "run",
            wf.to_str().unwrap(),
            "--connection",
            &conn,
            "--output",
            out_dir.to_str().unwrap(),
        ];
        for p in &params {
            args.extend(["--param", p.as_str()]);
        }
        let out = run(&args, "", dir.path());
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{}: {stderr}", wf.display());
        // A progress line per node: every node starts and finishes.
        for node in doc["nodes"].as_array().unwrap() {
            let id = node["id"].as_str().unwrap();
            let tool = node["tool"].as_str().unwrap();
            assert!(
                stderr.contains(&format!("] {id} ({tool}) started")),
                "{id}: {stderr}"
            );
            assert!(
                stderr.contains(&format!("] {id} ({tool}) finished")),
                "{id}: {stderr}"
            );
        }
    }
}

fn names(df: &DataFrame) -> Vec<&str> {
    df.get_column_names()
        .into_iter()
        .map(|n| n.as_str())
        .collect()
}

/// The rows of `sql` asked of the SQLite file `db` directly (the question a workflow answers).
fn ask_sqlite<T>(db: &Path, sql: &str) -> Vec<T>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> + Send + Unpin,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
            .await
            .expect("the sample database");
        sqlx::query_as(sql)
            .fetch_all(&mut c)
            .await
            .expect("the query")
    })
}

fn read(path: &Path) -> DataFrame {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    ParquetReader::new(f).finish().expect("parquet")
}

#[test]
fn revenue_example_matches_the_same_question_asked_in_sql() {
    let dir = tempfile::tempdir().unwrap();
    let db = sample_db(dir.path());
    let wf = examples().join("revenue_by_region.json");
    let out_dir = dir.path().join("out");
    let out = run(
        &[
            "run",
            wf.to_str().unwrap(),
            "--connection",
            &format!("shop=sqlite://{}", db.display()),
            "--output",
            out_dir.to_str().unwrap(),
        ],
        "",
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("revenue_by_region: 4 rows → "));
    let got = read(&out_dir.join("revenue_by_region.parquet"));
    assert_eq!(
        names(&got),
        ["region", "revenue", "orders", "customers", "avg_order"]
    );

    let want: Vec<(String, f64, i64, i64)> = ask_sqlite(
        &db,
        "SELECT c.region, SUM(o.qty * p.unit_price * (1 - COALESCE(o.discount, 0))) AS revenue,
                COUNT(*), COUNT(DISTINCT o.customer_id)
         FROM orders o JOIN products p ON p.id = o.product_id JOIN customers c ON c.id = o.customer_id
         WHERE o.status = 'shipped' GROUP BY c.region ORDER BY revenue DESC",
    );
    assert_eq!(want.len(), 4);
    let regions: Vec<&str> = got
        .column("region")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .flatten()
        .collect();
    let revenue: Vec<f64> = got
        .column("revenue")
        .unwrap()
        .f64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    let orders: Vec<u32> = got
        .column("orders")
        .unwrap()
        .u32()
        .unwrap()
        .into_no_null_iter()
        .collect();
    let customers: Vec<u32> = got
        .column("customers")
        .unwrap()
        .u32()
        .unwrap()
        .into_no_null_iter()
        .collect();
    for (i, (region, rev, n, cust)) in want.iter().enumerate() {
        assert_eq!(regions[i], region);
        // The workflow rounds each order to cents; SQL sums unrounded: at most half a cent
        // apart per order.
        assert!(
            (revenue[i] - rev).abs() <= 0.005 * *n as f64,
            "{region}: {} vs {rev}",
            revenue[i]
        );
        assert_eq!(i64::from(orders[i]), *n);
        assert_eq!(i64::from(customers[i]), *cust);
    }
}

#[test]
fn run_refuses_invalid_workflows_and_unknown_connections_without_running() {
    let dir = tempfile::tempdir().unwrap();
    let db = sample_db(dir.path());
    let wf = examples().join("revenue_by_region.json");
    // No connection named shop: refused before any query, with a stable code.
    let out = run(
        &[
            "run",
            wf.to_str().unwrap(),
            "--connection",
            &format!("other=sqlite://{}", db.display()),
        ],
        "",
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("[unknown_connection]"),
        "{}",
        text(&out.stderr)
    );
    assert!(!text(&out.stderr).contains("started"));
    // A URL with a password given through a file is never echoed.
    let url_file = dir.path().join("url");
    std::fs::write(&url_file, "postgres://alice:s3cret-pw@127.0.0.1:1/x").unwrap();
    let out = run(
        &[
            "run",
            wf.to_str().unwrap(),
            "--connection",
            &format!("shop=@{}", url_file.display()),
        ],
        "",
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("[dialect_mismatch]"),
        "{}",
        text(&out.stderr)
    );
    assert!(!text(&out.stderr).contains("s3cret-pw") && !text(&out.stdout).contains("s3cret-pw"));
    // Invalid workflow: problems on stderr, exit 1, nothing run.
    let out = run(
        &[
            "run",
            "-",
            "--connection",
            &format!("shop=sqlite://{}", db.display()),
        ],
        r#"{"version": 1, "nodes": [{"id": "x", "tool": "nope"}]}"#,
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("[unknown_tool]"));
    // Printing tables (no --output).
    let out = run(
        &[
            "run",
            examples().join("region_targets.json").to_str().unwrap(),
            "--connection",
            &format!("shop=sqlite://{}", db.display()),
        ],
        "",
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("== h1_targets (4 rows)\n"),
        "{}",
        text(&out.stdout)
    );
}

fn inline_int(x: &str) -> String {
    format!(
        r#"{{"version": 1, "nodes": [
  {{"id": "t", "tool": "inline", "columns": [{{"name": "x", "type": "Int64"}}], "rows": [[{x}]]}},
  {{"id": "o", "tool": "output", "input": "t", "name": "out"}}]}}"#
    )
}

/// Issue 16, point 8: the canonical hash writes numbers as doubles, so a token for
/// `x = 9007199254740992` ran a document with `x = 9007199254740993`. Both are refused now
/// (`number_out_of_range`, I-JSON); `9007199254740991` validates, hashes stably and runs as
/// exactly itself.
#[test]
fn issue16_integers_beyond_2_pow_53_are_refused_by_validate() {
    let dir = tempfile::tempdir().unwrap();
    for x in [
        "9007199254740993",
        "9007199254740992",
        "-9007199254740992",
        "-0.0",
    ] {
        let out = run(&["validate", "-"], &inline_int(x), dir.path());
        assert_eq!(out.status.code(), Some(1), "{x}");
        let stdout = text(&out.stdout);
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 2, "{stdout}");
        assert!(
            lines[0].starts_with(&format!("workflow: the number {x} at line 2 column 88 "))
                && lines[0].ends_with("[number_out_of_range]"),
            "{}",
            lines[0]
        );
        assert_eq!(lines[1], "invalid: 1 problem");
        let out = run(&["validate", "--json", "-"], &inline_int(x), dir.path());
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["valid"], false);
        assert_eq!(v["problems"][0]["code"], "number_out_of_range");
        assert_eq!(v["problems"][0]["node"], serde_json::Value::Null);
        assert!(hubworker::workflow::workflow_sha256(&inline_int(x)).is_err());
    }
    // The largest exact integer: valid, the same hash however it is written, and it runs
    // as exactly itself.
    let doc = inline_int("9007199254740991");
    let out = run(&["validate", "-"], &doc, dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let hash = hubworker::workflow::workflow_sha256(&doc).unwrap();
    assert_eq!(
        text(&out.stdout).lines().last().unwrap(),
        format!("sha256:{hash}")
    );
    let compact: String = doc.split_whitespace().collect::<Vec<_>>().join("");
    let out = run(&["validate", "-"], &compact, dir.path());
    assert_eq!(
        text(&out.stdout).lines().last().unwrap(),
        format!("sha256:{hash}")
    );
    let out_dir = dir.path().join("out");
    let out = run(
        &["run", "-", "--output", out_dir.to_str().unwrap()],
        &doc,
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let df = read(&out_dir.join("out.parquet"));
    let x: Vec<Option<i64>> = df.column("x").unwrap().i64().unwrap().iter().collect();
    assert_eq!(x, [Some(9_007_199_254_740_991)]);
}

/// `joins` self-joins in a chain (node i joins node i-1 with itself) over three rows.
fn diamond(joins: usize) -> String {
    let mut nodes = vec![serde_json::json!({"id": "n0", "tool": "inline",
        "columns": [{"name": "k", "type": "Int64"}, {"name": "v", "type": "String"}],
        "rows": [[1, "a"], [2, "b"], [3, "c"]]})];
    for i in 1..=joins {
        let prev = format!("n{}", i - 1);
        nodes.push(
            serde_json::json!({"id": format!("n{i}"), "tool": "join", "left": prev,
            "right": prev, "how": "semi", "on": [{"left": "k", "right": "k"}]}),
        );
    }
    nodes.push(serde_json::json!({"id": "out", "tool": "output",
        "input": format!("n{joins}"), "name": "out"}));
    serde_json::json!({"version": 1, "nodes": nodes}).to_string()
}

/// Issue 16, point 10: the review's 22-node self-join diamond (28 s and 4.6 GB in `run`) is
/// refused by `validate` and `run` with `plan_too_large`, naming the node where the unfolded
/// plan passes the limit; a workflow reading shared branches twice still runs with exact
/// values.
#[test]
fn issue16_a_self_join_diamond_is_refused_and_shared_branches_still_run() {
    let dir = tempfile::tempdir().unwrap();
    let attack = diamond(20);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&attack).unwrap()["nodes"]
            .as_array()
            .unwrap()
            .len(),
        22
    );
    let out = run(&["validate", "-"], &attack, dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stdout),
        "node \"n17\", input: the plan up to this node has size 393214 once its inputs are \
         unfolded (an input read twice counts twice); the limit is 250000 [plan_too_large]\n\
         invalid: 1 problem\n"
    );
    let out = run(&["run", "-"], &attack, dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("[plan_too_large]"));
    assert!(!text(&out.stderr).contains("started"));

    // Shared branches: a self-join (inner, both sides kept), a filter read on both outputs,
    // and a formula read by three nodes.
    let doc = r#"{"version": 1, "nodes": [
      {"id": "t", "tool": "inline", "columns": [{"name": "k", "type": "Int64"}], "rows": [[1], [2], [3]]},
      {"id": "f", "tool": "formula", "input": "t", "formulas": [{"column": "w", "expression": "pl.col(\"k\") * 10"}]},
      {"id": "j", "tool": "join", "left": "f", "right": "f", "how": "inner", "on": [{"left": "k", "right": "k"}]},
      {"id": "big", "tool": "filter", "input": "j", "expression": "pl.col(\"w\") > 10"},
      {"id": "u", "tool": "union", "inputs": ["big", "big.false"]},
      {"id": "s", "tool": "summarize", "input": "f", "aggregations": [{"op": "sum", "column": "w"}]},
      {"id": "o1", "tool": "output", "input": "u", "name": "joined"},
      {"id": "o2", "tool": "output", "input": "s", "name": "total"}]}"#;
    let out_dir = dir.path().join("out");
    let out = run(
        &["run", "-", "--output", out_dir.to_str().unwrap()],
        doc,
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let joined = read(&out_dir.join("joined.parquet"));
    assert_eq!(names(&joined), ["k", "w", "w_right"]);
    let col = |df: &DataFrame, c: &str| -> Vec<Option<i64>> {
        df.column(c).unwrap().i64().unwrap().iter().collect()
    };
    assert_eq!(col(&joined, "k"), [2, 3, 1].map(Some));
    assert_eq!(col(&joined, "w"), [20, 30, 10].map(Some));
    assert_eq!(col(&joined, "w_right"), [20, 30, 10].map(Some));
    let total = read(&out_dir.join("total.parquet"));
    assert_eq!(col(&total, "w_sum"), [Some(60)]);
}

/// Issue 16, point 12: a panic inside Polars while a workflow runs (a date offset leaving
/// chrono's calendar) fails the run with `execution_failed`, never a crash.
#[test]
fn issue16_a_panic_inside_polars_fails_the_run_with_execution_failed() {
    let dir = tempfile::tempdir().unwrap();
    let doc = |expr: &str| {
        serde_json::json!({"version": 1, "nodes": [
            {"id": "t", "tool": "inline", "columns": [{"name": "k", "type": "Int64"}], "rows": [[1]]},
            {"id": "f", "tool": "formula", "input": "t", "formulas": [{"column": "d", "expression": expr}]},
            {"id": "o", "tool": "output", "input": "f", "name": "out"}]})
        .to_string()
    };
    let out = run(
        &["run", "-"],
        &doc("pl.date(262142, 12, 31).dt.offset_by(\"2y\")"),
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(
            "run failed: execution failed: the engine failed on this workflow (internal error) \
             [execution_failed]"
        ),
        "{}",
        text(&out.stderr)
    );
    // A result only printing would trip over (a date past the calendar): exit 1, not a crash.
    let out = run(
        &["run", "-"],
        &doc("pl.date(262142, 12, 31).dt.offset_by(\"1d\")"),
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("[execution_failed]"));
    let out = run(
        &["run", "-"],
        &doc("pl.date(2024, 1, 31).dt.offset_by(\"1mo\")"),
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("2024-02-29"),
        "{}",
        text(&out.stdout)
    );
}

/// Issue 21: `hubworker run --param` binds `:region`/`:since` in SQL and `pl.param("min_qty")`
/// in a filter; the result is the same question asked in SQL with the values written in.
#[test]
fn issue21_run_binds_param_values_into_sql_and_expressions() {
    let dir = tempfile::tempdir().unwrap();
    let db = sample_db(dir.path());
    let wf = examples().join("region_orders.json");
    let out_dir = dir.path().join("out");
    let out = run(
        &[
            "run",
            wf.to_str().unwrap(),
            "--connection",
            &format!("shop=sqlite://{}", db.display()),
            "--output",
            out_dir.to_str().unwrap(),
            "--param",
            "region=south",
            "--param",
            "min_qty=3",
            "--param",
            "since=2024-03-01",
        ],
        "",
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let got = read(&out_dir.join("region_orders.parquet"));
    assert_eq!(names(&got), ["region", "status", "orders", "units"]);
    let want: Vec<(String, String, i64, i64)> = ask_sqlite(
        &db,
        "SELECT c.region, o.status, COUNT(*), SUM(o.qty) FROM orders o
         JOIN customers c ON c.id = o.customer_id
         WHERE c.region = 'south' AND o.order_date >= '2024-03-01' AND o.qty >= 3
         GROUP BY c.region, o.status ORDER BY o.status",
    );
    assert!(!want.is_empty());
    let col = |n: &str| got.column(n).unwrap().clone();
    let statuses: Vec<String> = col("status")
        .str()
        .unwrap()
        .iter()
        .flatten()
        .map(str::to_owned)
        .collect();
    let regions: Vec<String> = col("region")
        .str()
        .unwrap()
        .iter()
        .flatten()
        .map(str::to_owned)
        .collect();
    let orders = col("orders").cast(&DataType::Int64).unwrap();
    let units = col("units").cast(&DataType::Int64).unwrap();
    let got: Vec<(String, String, i64, i64)> = (0..got.height())
        .map(|i| {
            (
                regions[i].clone(),
                statuses[i].clone(),
                orders.i64().unwrap().get(i).unwrap(),
                units.i64().unwrap().get(i).unwrap(),
            )
        })
        .collect();
    assert_eq!(got, want);
    // A value its declaration refuses: nothing runs, the rule is named, the value is not.
    let out = run(
        &[
            "run",
            wf.to_str().unwrap(),
            "--connection",
            &format!("shop=sqlite://{}", db.display()),
            "--param",
            "region=atlantis",
        ],
        "",
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("[param_choice]"), "{stderr}");
    assert!(!stderr.contains("atlantis"), "{stderr}");
}
