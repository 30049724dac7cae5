//! Issue 16, point 3: run children follow the daemon process, not the thread that started them.
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits; the Validate calls
//! of another user made tokio hand a worker thread over (Polars' `block_in_place`) and the
//! thread exited ten seconds later, killing a healthy run. Here a real daemon serves a long
//! PostgreSQL run while many Validate calls go by, and the run must finish with its exact
//! count; then a child killed from outside is reported as `crashed (signal SIGKILL)`, a run
//! waiting on that child's single-flight load loads for itself, and no zombie is left.

// Test helpers (not only #[test] fns) unwrap: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use hubworker::demo::Stack;
use hubworker::proto::worker_client::WorkerClient;
use hubworker::proto::{ExecuteRequest, ValidateRequest, execute_event::Event};
use polars::prelude::*;
use tonic::transport::Channel;

use crate::daemon::{Daemon, add_postgres, eventually};

/// A PostgreSQL count over an `a` x `b` cross join of two series: seconds of server time and
/// one exact number. `tag` makes the text (so the cache key) differ.
fn counting(a: u64, b: u64, tag: u64) -> String {
    format!(
        r#"{{"version": 1, "nodes": [
          {{"id": "q", "tool": "sql", "connection": "pg", "dialect": "postgres", "query": "SELECT count(*) + {tag} AS n FROM generate_series(1, {a}) AS x, generate_series(1, {b}) AS y"}},
          {{"id": "o", "tool": "output", "input": "q", "name": "out"}}]}}"#
    )
}

/// A workflow over inline rows whose validation predicts schemas (Polars builds the plan).
fn predicted(tag: usize) -> String {
    let rows: Vec<String> = (0..200).map(|i| format!("[\"k{}\", {i}]", i % 7)).collect();
    format!(
        r#"{{"version": 1, "nodes": [
          {{"id": "a", "tool": "inline", "columns": [{{"name": "k", "type": "String"}}, {{"name": "x", "type": "Int64"}}], "rows": [{}]}},
          {{"id": "f", "tool": "formula", "input": "a", "formulas": [{{"column": "y", "expression": "pl.col('x') * {tag}"}}]}},
          {{"id": "s", "tool": "summarize", "input": "f", "group_by": ["k"], "aggregations": [{{"op": "sum", "column": "y", "as": "t"}}]}},
          {{"id": "o", "tool": "output", "input": "s", "name": "out"}}]}}"#,
        rows.join(",")
    )
}

/// How a run ended.
#[derive(Debug)]
enum Ended {
    Finished(DataFrame),
    Error(String, String),
}

async fn execute(mut client: WorkerClient<Channel>, token: String, doc: String) -> Ended {
    let req = ExecuteRequest {
        token,
        workflow_json: doc,
        bypass_cache: false,
        update_cache: false,
        params_json: String::new(),
    };
    let mut stream = client.execute(req).await.unwrap().into_inner();
    let mut ipc = Vec::new();
    while let Some(e) = stream.message().await.unwrap() {
        match e.event {
            Some(Event::Result(r)) => ipc.extend_from_slice(&r.arrow_ipc),
            Some(Event::Error(e)) => return Ended::Error(e.code, e.message),
            Some(Event::Finished(_)) => {
                return Ended::Finished(
                    IpcStreamReader::new(std::io::Cursor::new(ipc))
                        .finish()
                        .unwrap(),
                );
            }
            _ => {}
        }
    }
    panic!("the stream ended without Finished or Error")
}

/// A run child in its database phase, seen from the host, on every one of its threads
/// (capabilities, and the seccomp state the kernel reports, belong to a thread): not root
/// (65534, the default `[sandbox] uid`, when the daemon is root; the daemon's own uid
/// otherwise) in every uid field, every capability set empty, no_new_privs, seccomp filtering.
fn assert_unprivileged(pid: i32) {
    let tasks: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|t| t.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        tasks.contains(&pid.to_string()),
        "threads of {pid}: {tasks:?}"
    );
    for tid in tasks {
        assert_thread_unprivileged(pid, &tid);
    }
}

fn assert_thread_unprivileged(pid: i32, tid: &str) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).unwrap();
    let field = |name: &str| -> Vec<String> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .unwrap_or_else(|| panic!("{name} missing from {status}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    let want_uid = if nix::unistd::geteuid().is_root() {
        "65534".to_owned()
    } else {
        nix::unistd::geteuid().as_raw().to_string()
    };
    assert_eq!(field("Uid"), vec![want_uid.clone(); 4], "{status}");
    assert_ne!(want_uid, "0");
    for caps in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(field(caps), vec!["0000000000000000"], "{caps}: {status}");
    }
    assert_eq!(field("NoNewPrivs"), vec!["1"]);
    assert_eq!(field("Seccomp"), vec!["2"]);
}

/// A process's group and nice value (`/proc/<pid>/stat`).
fn group_and_nice(pid: i32) -> (i32, i32) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    // After the name: state, ppid, pgrp, ..., nice the 17th.
    (fields[2].parse().unwrap(), fields[16].parse().unwrap())
}

fn count(ended: Ended) -> i64 {
    match ended {
        Ended::Finished(df) => df.column("n").unwrap().i64().unwrap().get(0).unwrap(),
        Ended::Error(code, message) => panic!("the run failed: [{code}] {message}"),
    }
}

/// The daemon's children once exactly `n` are alive (none a zombie).
async fn wait_children(daemon: &Daemon, n: usize) -> Vec<i32> {
    assert!(
        eventually(Duration::from_secs(30), || async {
            daemon.children().len() == n
        })
        .await,
        "want {n} children, have {:?}",
        daemon.children()
    );
    daemon.children().into_iter().map(|(pid, _)| pid).collect()
}

/// Whether PostgreSQL is running a statement containing `needle` (its other sessions).
async fn pg_running(needle: &str) -> bool {
    let url = std::env::var("HUBWORKER_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let Ok(pool) = sqlx::PgPool::connect(&url).await else {
        return false;
    };
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid() AND strpos(query, $1) > 0",
    )
    .bind(needle)
    .fetch_one(&pool)
    .await
    .unwrap_or(0);
    pool.close().await;
    n > 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn run_children_outlive_threads_and_their_deaths_are_crashes_without_zombies() {
    let stack = Stack::start(1, &crate::util::sandboxed("")).await.unwrap();
    add_postgres(&stack, "pg").await;
    // No pool: every child is started for its run, so the daemon's children are the runs'.
    let daemon = Daemon::start(
        &stack,
        "children-worker",
        4,
        "[limits]\nquery_timeout_secs = 240\nrun_timeout_secs = 300\n\n[sandbox]\npool = 0\n",
    )
    .await;

    // 1. A long run (9e8 rows counted: ~20 s on a quiet 2-core machine, more under load), and
    //    meanwhile other users' Validates.
    let (a, b) = (30_000u64, 30_000u64);
    let long = counting(a, b, 0);
    let token = stack.token("alice", &long, &["pg"]).await.unwrap();
    let started = Instant::now();
    let run = tokio::spawn(execute(
        daemon.client().await,
        token.expose().to_owned(),
        long,
    ));
    let running = wait_children(&daemon, 1).await;
    // Seen once its confinement is complete, which its query running proves (the child says
    // `Ready` only then): a child found a few milliseconds before still has its user
    // namespace's capabilities on its main thread (cleared once its root is built).
    let confined = eventually(Duration::from_secs(20), || {
        pg_running("count(*) + 0 AS n FROM generate_series(1, 30000)")
    })
    .await;
    assert!(confined, "the run child's query never started");
    assert_unprivileged(running[0]);
    // Its own process group (what it lowers, every thread at once, as it exits), at the
    // normal priority while it runs.
    let (group, nice) = group_and_nice(running[0]);
    assert_eq!((group, nice), (running[0], 0));
    let mut validated = 0;
    for round in 0..10 {
        let mut calls = Vec::new();
        for i in 0..4 {
            let doc = predicted(round * 4 + i + 1);
            let token = stack.token("bob", &doc, &[]).await.unwrap();
            let mut client = daemon.client().await;
            calls.push(tokio::spawn(async move {
                client
                    .validate(ValidateRequest {
                        token: token.expose().to_owned(),
                        workflow_json: doc,
                        params_json: String::new(),
                    })
                    .await
                    .map(|r| r.into_inner().valid)
            }));
        }
        for c in calls {
            if matches!(c.await.unwrap(), Ok(true)) {
                validated += 1;
            }
        }
    }
    assert_eq!(validated, 40);
    // Past tokio's 10 s keep-alive for idle threads: the run still finishes, exactly.
    assert_eq!(count(run.await.unwrap()), (a * b) as i64);
    let took = started.elapsed();
    assert!(
        took > Duration::from_secs(11),
        "the run should outlast the blocking threads' keep-alive; it took {took:?}: make it longer"
    );

    // 2. A child killed from outside: `crashed` with the signal; a run that waited on its
    //    single-flight load loads for itself and returns the exact count. (First the last
    //    run's child is gone: it is reaped in the background once its run finished.)
    assert!(
        eventually(Duration::from_secs(10), || async {
            daemon.children().is_empty()
        })
        .await,
        "the first run's child is still there: {:?}",
        daemon.children()
    );
    // It ended cleanly after its `Done`: lowering its group's priority on the way out is one
    // call its seccomp filter allows (a refused call would kill it, and the daemon say so).
    let log = daemon.log();
    assert!(!log.contains("ended abnormally after finishing"), "{log}");
    let (a, b) = (12_000u64, 12_000u64);
    let shared = counting(a, b, 1);
    let loader = tokio::spawn(execute(
        daemon.client().await,
        stack
            .token("alice", &shared, &["pg"])
            .await
            .unwrap()
            .expose()
            .to_owned(),
        shared.clone(),
    ));
    let first = wait_children(&daemon, 1).await;
    assert!(
        eventually(Duration::from_secs(30), || pg_running("count(*) + 1")).await,
        "the loader's query runs"
    );
    let waiter = tokio::spawn(execute(
        daemon.client().await,
        stack
            .token("bob", &shared, &["pg"])
            .await
            .unwrap()
            .expose()
            .to_owned(),
        shared,
    ));
    wait_children(&daemon, 2).await;
    // Let the waiter's Need reach the cache, where it waits for the loader's load.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first[0]),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    match loader.await.unwrap() {
        Ended::Error(code, message) => {
            assert_eq!(code, "crashed", "{message}");
            assert!(message.contains("signal SIGKILL"), "{message}");
        }
        Ended::Finished(_) => panic!("a killed child's run finished"),
    }
    assert_eq!(count(waiter.await.unwrap()), (a * b + 1) as i64);

    // 3. Nothing left behind: no child, no zombie; the death was logged and counted.
    assert!(
        eventually(Duration::from_secs(10), || async {
            daemon.children().is_empty()
        })
        .await,
        "children left: {:?}",
        daemon.children()
    );
    let log = daemon.log();
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("crashed") && l.contains("SIGKILL")),
        "{log}"
    );
    assert_eq!(
        daemon.metric("hubworker_sandbox_kills_total{reason=\"crashed\"}"),
        1
    );
    assert_eq!(
        daemon.metric("hubworker_runs_finished_total{outcome=\"ok\"}"),
        2
    );
}
