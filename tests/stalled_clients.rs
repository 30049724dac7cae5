//! Issue 16, point 2: a client that reads `Accepted` and then stops reading (while holding its
//! stream open) must not keep its slot and memory past every limit. Real slow gRPC clients on
//! loopback against a real daemon: workflows whose output (64 MB of Arrow IPC) fills the
//! HTTP/2 windows many times over. The send timeout frees the slot (`client_stalled`, counted,
//! logged, the child killed, the daemon's memory bounded); `Cancel` and the run's deadline stop
//! a stalled run too; a healthy run beside the stalled ones returns exact values. Both
//! isolation modes.

// Test helpers (not only #[test] fns) unwrap: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use hubworker::demo::Stack;
use hubworker::proto::worker_client::WorkerClient;
use hubworker::proto::{
    CancelRequest, ExecuteEvent, ExecuteRequest, StatusRequest, execute_event::Event,
};
use polars::prelude::*;
use tonic::Streaming;
use tonic::transport::Channel;

use crate::daemon::{Daemon, eventually};

/// Rows of the inline column; the output is its cross join: ROWS² rows of two Int64 columns.
const ROWS: usize = 2_000;

/// A 4,000,000-row output (64 MB as Arrow IPC), computed in about a second. `tag` changes the
/// hash so that every run has a token of its own.
fn big(tag: usize) -> String {
    let rows: Vec<String> = (0..ROWS).map(|i| format!("[{i}]")).collect();
    format!(
        r#"{{"version": 1, "nodes": [
          {{"id": "a", "tool": "inline", "columns": [{{"name": "x", "type": "Int64"}}], "rows": [{}]}},
          {{"id": "j", "tool": "join", "left": "a", "right": "a", "how": "cross"}},
          {{"id": "f", "tool": "formula", "input": "j", "formulas": [{{"column": "t", "expression": "pl.col('x') + {tag}"}}]}},
          {{"id": "s", "tool": "select", "input": "f", "columns": ["t", "x_right"]}},
          {{"id": "o", "tool": "output", "input": "s", "name": "out"}}]}}"#,
        rows.join(",")
    )
}

const HEALTHY: &str = r#"{"version": 1, "nodes": [
  {"id": "q", "tool": "sql", "connection": "shop", "dialect": "sqlite", "query": "SELECT COUNT(*) AS n, SUM(id) AS s FROM orders"},
  {"id": "o", "tool": "output", "input": "q", "name": "out"}]}"#;

fn request(token: &hubworker::secret::Secret, doc: &str) -> ExecuteRequest {
    ExecuteRequest {
        token: token.expose().to_owned(),
        workflow_json: doc.to_owned(),
        bypass_cache: true,
        update_cache: false,
        params_json: String::new(),
    }
}

/// A stalled client: its own connection, `Accepted` read, then never polled again while held.
struct Stalled {
    _client: WorkerClient<Channel>,
    _stream: Streaming<ExecuteEvent>,
    run_id: String,
    cancel_secret: String,
}

async fn stall(daemon: &Daemon, stack: &Stack, tag: usize, deadline: Option<Duration>) -> Stalled {
    let doc = big(tag);
    let token = stack.token("alice", &doc, &[]).await.unwrap();
    let mut client = daemon.client().await;
    let mut req = tonic::Request::new(request(&token, &doc));
    if let Some(d) = deadline {
        req.set_timeout(d);
    }
    let mut stream = client.execute(req).await.unwrap().into_inner();
    let Some(Event::Accepted(a)) = stream.message().await.unwrap().unwrap().event else {
        panic!("Accepted first")
    };
    Stalled {
        _client: client,
        _stream: stream,
        run_id: a.run_id,
        cancel_secret: a.cancel_secret,
    }
}

/// Reads a run to its end; the outputs' row count and the error code, if any.
async fn read_all(daemon: &Daemon, req: ExecuteRequest) -> (Option<DataFrame>, Option<String>) {
    let mut client = daemon.client().await;
    let mut stream = client.execute(req).await.unwrap().into_inner();
    let mut ipc = Vec::new();
    while let Some(e) = stream.message().await.unwrap() {
        match e.event {
            Some(Event::Result(r)) => ipc.extend_from_slice(&r.arrow_ipc),
            Some(Event::Error(e)) => return (None, Some(e.code)),
            Some(Event::Finished(_)) => {
                let df = IpcStreamReader::new(std::io::Cursor::new(ipc))
                    .finish()
                    .unwrap();
                return (Some(df), None);
            }
            _ => {}
        }
    }
    (None, Some("no end".into()))
}

async fn in_flight(daemon: &Daemon) -> u32 {
    daemon
        .client()
        .await
        .status(StatusRequest {})
        .await
        .unwrap()
        .into_inner()
        .runs_in_flight
}

async fn idle_within(daemon: &Daemon, within: Duration) -> bool {
    eventually(within, || async {
        in_flight(daemon).await == 0 && daemon.children().is_empty()
    })
    .await
}

fn outcome(daemon: &Daemon, outcome: &str) -> u64 {
    daemon.metric(&format!(
        "hubworker_runs_finished_total{{outcome=\"{outcome}\"}}"
    ))
}

async fn stalled_clients_lose_their_runs(isolation: &str) {
    let stack = Stack::start(1, &crate::util::sandboxed("")).await.unwrap();
    let sandbox = format!("[sandbox]\nisolation = \"{isolation}\"\npool = 0\n");

    // Cancel and the deadline reach a run whose client stopped reading (a send timeout far
    // away, so that only they can stop it).
    let patient = Daemon::start(
        &stack,
        &format!("patient-{isolation}"),
        2,
        &format!("[limits]\nsend_timeout_secs = 120\n\n{sandbox}"),
    )
    .await;
    let s = stall(&patient, &stack, 1, None).await;
    // The output is computed and the windows fill in about a second; then it waits on us.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(in_flight(&patient).await, 1);
    let cancelled = patient
        .client()
        .await
        .cancel(CancelRequest {
            run_id: s.run_id.clone(),
            cancel_secret: s.cancel_secret.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .cancelled;
    assert!(cancelled);
    assert!(
        idle_within(&patient, Duration::from_secs(20)).await,
        "Cancel stops a stalled run"
    );
    assert_eq!(outcome(&patient, "cancelled"), 1);
    let s2 = stall(&patient, &stack, 2, Some(Duration::from_secs(4))).await;
    assert!(
        idle_within(&patient, Duration::from_secs(30)).await,
        "the deadline stops a stalled run"
    );
    assert_eq!(outcome(&patient, "deadline_exceeded"), 1);
    assert_eq!(outcome(&patient, "client_stalled"), 0);
    drop((s, s2, patient));

    // Four clients that stop reading lose their runs after the send timeout; the fifth slot
    // serves a healthy run meanwhile; the daemon's memory stays bounded.
    let daemon = Daemon::start(
        &stack,
        &format!("stalls-{isolation}"),
        5,
        &format!("[limits]\nsend_timeout_secs = 3\n\n{sandbox}"),
    )
    .await;
    let token = stack.token("alice", &big(10), &[]).await.unwrap();
    let (df, error) = read_all(&daemon, request(&token, &big(10))).await;
    assert_eq!(error, None);
    assert_eq!(
        df.unwrap().height(),
        ROWS * ROWS,
        "a reading client gets it all"
    );
    let before = daemon.rss_kib();
    let mut stalled = Vec::new();
    for tag in 11..15 {
        stalled.push(stall(&daemon, &stack, tag, None).await);
    }
    let token = stack.token("bob", HEALTHY, &["shop"]).await.unwrap();
    let (df, error) = read_all(&daemon, request(&token, HEALTHY)).await;
    assert_eq!(error, None);
    let df = df.unwrap();
    assert_eq!(df.column("n").unwrap().i64().unwrap().get(0), Some(1000));
    assert_eq!(df.column("s").unwrap().i64().unwrap().get(0), Some(500_500));
    let mut peak = before;
    let freed = eventually(Duration::from_secs(60), || {
        peak = peak.max(daemon.rss_kib());
        let daemon = &daemon;
        async move { in_flight(daemon).await == 0 && daemon.children().is_empty() }
    })
    .await;
    let after = daemon.rss_kib();
    eprintln!(
        "{isolation}: daemon RSS before {} MiB, peak {} MiB, after {} MiB (4 stalled clients, 64 MB outputs)",
        before / 1024,
        peak / 1024,
        after / 1024
    );
    assert!(
        freed,
        "the stalled runs still hold slots: {} in flight",
        in_flight(&daemon).await
    );
    assert_eq!(outcome(&daemon, "client_stalled"), 4);
    assert_eq!(outcome(&daemon, "ok"), 2);
    let log = daemon.log();
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("WARN") && l.contains("client_stalled"))
            .count(),
        4,
        "{log}"
    );
    if isolation == "process" {
        // Bounded buffers: a few MB per stalled run, not its 64 MB output (twice over).
        assert!(
            peak < before + 160 * 1024,
            "peak {peak} KiB vs {before} KiB"
        );
        assert!(
            after < before + 160 * 1024,
            "after {after} KiB vs {before} KiB"
        );
    }
    // The slots are free for new runs while the stalled clients still hold their streams.
    let token = stack.token("bob", HEALTHY, &["shop"]).await.unwrap();
    let (df, _) = read_all(&daemon, request(&token, HEALTHY)).await;
    assert_eq!(
        df.unwrap().column("n").unwrap().i64().unwrap().get(0),
        Some(1000)
    );
    drop(stalled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stalled_clients_lose_their_runs_in_process_isolation() {
    stalled_clients_lose_their_runs("process").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stalled_clients_lose_their_runs_inline() {
    stalled_clients_lose_their_runs("inline").await;
}
