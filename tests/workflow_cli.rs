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
        let out = run(
            &[
                "run",
                wf.to_str().unwrap(),
                "--connection",
                &conn,
                "--output",
                out_dir.to_str().unwrap(),
            ],
            "",
            dir.path(),
        );
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{}: {stderr}", wf.display());
        // A progress line per node: every node starts and finishes.
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(wf).unwrap()).unwrap();
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

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let want: Vec<(String, f64, i64, i64)> = rt.block_on(async {
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await.unwrap();
        sqlx::query_as(
            "SELECT c.region, SUM(o.qty * p.unit_price * (1 - COALESCE(o.discount, 0))) AS revenue,
                    COUNT(*), COUNT(DISTINCT o.customer_id)
             FROM orders o JOIN products p ON p.id = o.product_id JOIN customers c ON c.id = o.customer_id
             WHERE o.status = 'shipped' GROUP BY c.region ORDER BY revenue DESC",
        )
        .fetch_all(&mut c)
        .await
        .unwrap()
    });
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
