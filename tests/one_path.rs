//! One run path: the same workflows through `hubworker run` (a real process), a worker with
//! inline isolation and a worker with process isolation (real gRPC on loopback) give the same
//! outputs, the same progress and the same error codes: a healthy run, a second run served
//! from the cache (the workers' caches; the CLI has none), a query the database refuses, and
//! a result over the row limit.

// Test helpers (not only #[test] fns) unwrap: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used)]

use std::io::Cursor;
use std::path::Path;

use hubworker::demo::Stack;
use hubworker::proto::{ExecuteRequest, execute_event::Event, progress::State};
use polars::prelude::*;

const REVENUE: &str = include_str!("../examples/revenue_by_region.json");

/// Rows a query may return, in all three places.
const MAX_ROWS: usize = 2_000;

fn limits() -> String {
    format!("[limits]\nmax_rows_per_query = {MAX_ROWS}\n")
}

fn single(query: &str) -> String {
    serde_json::json!({"version": 1, "nodes": [
        {"id": "q", "tool": "sql", "connection": "shop", "dialect": "sqlite", "query": query},
        {"id": "o", "tool": "output", "input": "q", "name": "out"}]})
    .to_string()
}

/// A query SQLite refuses when it runs (the guard cannot know the column does not exist).
fn failing() -> String {
    single("SELECT no_such_column FROM orders")
}

/// 1,000 orders times every product: over the row limit.
fn too_large() -> String {
    single("SELECT o.id, p.id AS product FROM orders AS o CROSS JOIN products AS p")
}

/// What one place reported for one run.
#[derive(Debug, Default)]
struct Seen {
    outputs: Vec<(String, DataFrame)>,
    /// (node, tool, finished, rows), in order.
    progress: Vec<(String, String, bool, Option<u64>)>,
    /// `from_cache` of each finished sql node.
    cached: Vec<bool>,
    error: Option<String>,
}

async fn via_worker(stack: &Stack, doc: &str) -> Seen {
    let token = stack.token("alice", doc, &["shop"]).await.unwrap();
    let mut client = stack.client().await.unwrap();
    let request = ExecuteRequest {
        token: token.expose().to_owned(),
        workflow_json: doc.to_owned(),
        ..Default::default()
    };
    let mut stream = client.execute(request).await.unwrap().into_inner();
    let mut seen = Seen::default();
    let mut ipc: Vec<(String, Vec<u8>)> = Vec::new();
    while let Some(e) = stream.message().await.unwrap() {
        match e.event {
            Some(Event::Progress(p)) => {
                let finished = p.state() == State::Finished;
                if finished && p.tool == "sql" {
                    seen.cached.push(p.from_cache);
                }
                seen.progress.push((p.node, p.tool, finished, p.rows));
            }
            Some(Event::Result(r)) => match ipc.iter_mut().find(|(n, _)| *n == r.output) {
                Some((_, b)) => b.extend_from_slice(&r.arrow_ipc),
                None => ipc.push((r.output, r.arrow_ipc)),
            },
            Some(Event::Error(e)) => {
                // The last event; the stream's status carries the same code.
                seen.error = Some(e.code);
                break;
            }
            _ => {}
        }
    }
    seen.outputs = ipc
        .into_iter()
        .map(|(n, b)| (n, IpcStreamReader::new(Cursor::new(b)).finish().unwrap()))
        .collect();
    seen
}

fn via_cli(db: &Path, doc: &str, dir: &Path) -> Seen {
    let wf = dir.join("wf.json");
    std::fs::write(&wf, doc).unwrap();
    let out_dir = dir.join("out");
    let _ = std::fs::remove_dir_all(&out_dir);
    let out = crate::util::run(
        &[
            "run",
            wf.to_str().unwrap(),
            "--connection",
            &format!("shop=sqlite://{}", db.display()),
            "--max-rows",
            &MAX_ROWS.to_string(),
            "--output",
            out_dir.to_str().unwrap(),
        ],
        "",
        dir,
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let mut seen = Seen::default();
    for line in stderr.lines() {
        if line.starts_with("run failed") {
            let code = line.rsplit_once('[').and_then(|(_, c)| c.strip_suffix(']'));
            seen.error = code.map(str::to_owned);
            continue;
        }
        // `[   0.012s] node (tool) started` / `finished: N rows` / `finished`
        let Some((_, rest)) = line.split_once("] ") else {
            continue;
        };
        let (node, rest) = rest.split_once(" (").unwrap();
        let (tool, state) = rest.split_once(") ").unwrap();
        let finished = state.starts_with("finished");
        let rows = state
            .strip_prefix("finished: ")
            .and_then(|r| r.strip_suffix(" rows"))
            .map(|r| r.parse().unwrap());
        if finished && tool == "sql" {
            seen.cached.push(false);
        }
        seen.progress
            .push((node.into(), tool.into(), finished, rows));
    }
    if out.status.code() != Some(0) {
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(seen.error.is_some(), "{stderr}");
        return seen;
    }
    for entry in std::fs::read_dir(&out_dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let frame = ParquetReader::new(std::fs::File::open(&path).unwrap())
            .finish()
            .unwrap();
        seen.outputs.push((name, frame));
    }
    seen
}

fn same(a: &Seen, b: &Seen, what: &str) {
    assert_eq!(a.progress, b.progress, "{what}: progress");
    assert_eq!(a.error, b.error, "{what}: error");
    assert_eq!(a.outputs.len(), b.outputs.len(), "{what}: outputs");
    for ((na, fa), (nb, fb)) in a.outputs.iter().zip(&b.outputs) {
        assert_eq!(na, nb, "{what}");
        assert!(fa.equals_missing(fb), "{what}: output {na}:\n{fa}\n{fb}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cli_inline_and_process_isolation_run_the_same_path() {
    let inline = Stack::start(
        2,
        &format!("[sandbox]\nisolation = \"inline\"\n{}", limits()),
    )
    .await
    .unwrap();
    let process = Stack::start(2, &format!("{}{}", crate::util::sandboxed(""), limits()))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (name, doc) in [
        ("revenue", REVENUE.to_owned()),
        ("query failure", failing()),
        ("row limit", too_large()),
    ] {
        let cli = via_cli(&process.db, &doc, dir.path());
        assert!(
            !cli.progress.is_empty(),
            "{name}: the CLI reported progress"
        );
        let first_inline = via_worker(&inline, &doc).await;
        let first_process = via_worker(&process, &doc).await;
        same(&cli, &first_inline, &format!("{name}: cli vs inline"));
        same(&cli, &first_process, &format!("{name}: cli vs process"));
        match name {
            "revenue" => {
                assert_eq!(cli.error, None);
                assert_eq!(cli.outputs[0].1.height(), 4, "four regions");
                // Every node reported, sql inputs with their row counts.
                assert_eq!(cli.progress.len(), 20, "{:?}", cli.progress);
                assert!(
                    cli.progress
                        .contains(&("orders".into(), "sql".into(), true, Some(1000)))
                );
                assert_eq!(cli.cached, [false, false, false]);
                assert_eq!(first_inline.cached, [false, false, false]);
                assert_eq!(first_process.cached, [false, false, false]);
                // A second run is served from each worker's cache, with the same results.
                let again_inline = via_worker(&inline, &doc).await;
                let again_process = via_worker(&process, &doc).await;
                assert_eq!(again_inline.cached, [true, true, true]);
                assert_eq!(again_process.cached, [true, true, true]);
                same(&cli, &again_inline, "revenue: cli vs inline, cached");
                same(&cli, &again_process, "revenue: cli vs process, cached");
            }
            "query failure" => assert_eq!(cli.error.as_deref(), Some("query_failed")),
            _ => assert_eq!(cli.error.as_deref(), Some("result_too_large")),
        }
    }
    inline.shutdown().await;
    process.shutdown().await;
}

/// Issue 20: a result larger than `[cache] max_entry_bytes` is used by its run and not kept
/// (encoding it for the cache would take its size again in the run), inline and in a run
/// child alike; a small result beside it is cached as before; concurrent runs of the large
/// one each load it and all agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn issue20_results_too_large_for_the_cache_are_used_not_kept() {
    let doc = serde_json::json!({"version": 1, "nodes": [
        {"id": "big", "tool": "sql", "connection": "shop", "dialect": "sqlite",
         "query": "SELECT id, customer_id, product_id, qty FROM orders ORDER BY id"},
        {"id": "small", "tool": "sql", "connection": "shop", "dialect": "sqlite",
         "query": "SELECT COUNT(*) AS n FROM orders"},
        {"id": "o1", "tool": "output", "input": "big", "name": "big"},
        {"id": "o2", "tool": "output", "input": "small", "name": "small"}]})
    .to_string();
    // 1,000 rows of four integer columns: 32 kB in memory; the count: 8 bytes.
    let cache = "[cache]\nmax_entry_bytes = 4096\n";
    let inline = Stack::start(4, &format!("[sandbox]\nisolation = \"inline\"\n{cache}"))
        .await
        .unwrap();
    let process = Stack::start(4, &format!("{}{cache}", crate::util::sandboxed("")))
        .await
        .unwrap();
    for (stack, place) in [(&inline, "inline"), (&process, "process")] {
        let first = via_worker(stack, &doc).await;
        assert_eq!(first.error, None, "{place}");
        assert_eq!(first.cached, [false, false], "{place}");
        let big = &first.outputs.iter().find(|(n, _)| n == "big").unwrap().1;
        assert_eq!(big.height(), 1_000, "{place}");
        let again = via_worker(stack, &doc).await;
        assert_eq!(
            again.cached,
            [false, true],
            "{place}: only the small result is kept"
        );
        let (a, b, c) = tokio::join!(
            via_worker(stack, &doc),
            via_worker(stack, &doc),
            via_worker(stack, &doc)
        );
        for seen in [&again, &a, &b, &c] {
            assert_eq!(seen.error, None, "{place}");
            assert!(!seen.cached[0], "{place}");
            let got = &seen.outputs.iter().find(|(n, _)| n == "big").unwrap().1;
            assert!(got.equals_missing(big), "{place}");
        }
    }
    inline.shutdown().await;
    process.shutdown().await;
}
