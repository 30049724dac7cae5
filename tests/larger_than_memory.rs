//! Issue 20: 50M rows from PostgreSQL (`generate_series`) through a sandboxed run limited to
//! 1 GiB of address space. The streaming engine computes the aggregates batch by batch and
//! finishes with exact values; the same run forced onto the in-memory engine, which
//! materialises every derived column, ends as `memory_limit`.

// Test helpers unwrap: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used)]

use hubworker::demo::Stack;
use polars::prelude::*;

use crate::sandbox::{Ended, execute};
use crate::util::sandboxed;

const ROWS: i64 = 50_000_000;

/// One `int4` column of 50M rows (200 MB as a column); three derived columns (1 GB more if
/// materialised), grouped ten ways.
const DOC: &str = r#"{"version": 1, "nodes": [
  {"id": "q", "tool": "sql", "connection": "pg", "dialect": "postgres",
   "query": "SELECT g AS i FROM generate_series(1, 50000000) AS g"},
  {"id": "f", "tool": "formula", "input": "q", "formulas": [
    {"column": "k", "expression": "pl.col('i') % 10"},
    {"column": "big", "expression": "pl.col('i').cast(pl.Int64) * 3"},
    {"column": "half", "expression": "pl.col('i').cast(pl.Float64) / 2"}]},
  {"id": "s", "tool": "summarize", "input": "f", "group_by": ["k"], "aggregations": [
    {"op": "count", "as": "n"},
    {"op": "sum", "column": "big", "as": "big_sum"},
    {"op": "max", "column": "i", "as": "i_max"},
    {"op": "mean", "column": "half", "as": "half_mean"}]},
  {"id": "o", "tool": "output", "input": "s", "name": "by_k"}]}"#;

async fn stack(engine: &str) -> Stack {
    let config = format!(
        "{}\n[limits]\nengine = {engine:?}\nmax_rows_per_query = 60000000\nquery_timeout_secs = 600\nrun_timeout_secs = 900\n",
        sandboxed("memory_bytes = 1073741824")
    );
    let stack = Stack::start(1, &config).await.unwrap();
    crate::daemon::add_postgres(&stack, "pg").await;
    stack
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn issue20_fifty_million_rows_under_one_gib_stream_and_the_in_memory_engine_runs_out() {
    let streaming = stack("streaming").await;
    let ended = execute(&streaming, DOC, &["pg"]).await;
    streaming.shutdown().await;
    let Ended::Finished(outputs) = ended else {
        panic!("the streaming run did not finish: {ended:?}")
    };
    let df = outputs[0]
        .1
        .sort(["k"], SortMultipleOptions::default())
        .unwrap();
    assert_eq!(df.height(), 10);
    let per_k = ROWS / 10;
    for row in 0..10 {
        let k = df.column("k").unwrap().i32().unwrap().get(row).unwrap() as i64;
        assert_eq!(k, row as i64);
        // i = 10m + k: m in 1..=N for k = 0, m in 0..N for the others.
        let (first_m, last_m) = if k == 0 { (1, per_k) } else { (0, per_k - 1) };
        let sum_i: i64 = 10 * (first_m + last_m) * per_k / 2 + k * per_k;
        let n = df.column("n").unwrap().u32().unwrap().get(row).unwrap();
        assert_eq!(i64::from(n), per_k, "count for k = {k}");
        let big = df
            .column("big_sum")
            .unwrap()
            .i64()
            .unwrap()
            .get(row)
            .unwrap();
        assert_eq!(big, 3 * sum_i, "sum for k = {k}");
        let max = df.column("i_max").unwrap().i32().unwrap().get(row).unwrap();
        assert_eq!(i64::from(max), 10 * last_m + k, "max for k = {k}");
        let mean = df
            .column("half_mean")
            .unwrap()
            .f64()
            .unwrap()
            .get(row)
            .unwrap();
        let want = sum_i as f64 / 2.0 / per_k as f64;
        assert!(
            (mean - want).abs() < 1e-6 * want,
            "mean for k = {k}: {mean} vs {want}"
        );
    }

    let in_memory = stack("in-memory").await;
    let ended = execute(&in_memory, DOC, &["pg"]).await;
    in_memory.shutdown().await;
    match ended {
        Ended::Error(code, _) => assert_eq!(code, "memory_limit"),
        Ended::Finished(_) => panic!("the in-memory engine finished under 1 GiB"),
    }
}
