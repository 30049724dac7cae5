//! Scaling the fleet (issue 24): the reference Hub's dispatcher over worker processes on
//! loopback. 300 concurrent runs while a worker drains and another joins; a refusal before
//! redemption moving the same token to another worker; a SIGKILLed worker's runs failing to
//! their clients, and the worker dropped after missed heartbeats; `hub dispatch` on the pool.

// Test helpers (not only #[test] fns) unwrap: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hubworker::demo::Stack;
use hubworker::hub::dispatch::{Attempt, DispatchOptions, Dispatcher, Job, Outcome, Policy};
use hubworker::hub::pick;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use polars::prelude::{IpcStreamReader, SerReader};

use crate::daemon::Daemon;
use crate::util::{bin, cross_join, jti_of, request, sandboxed};

/// Query `k` of ten: different results, so different cache entries and affinity keys. Each
/// run also computes a million-row cross join (output `pairs`: 1,000 rows of 1,000), so that
/// runs overlap the scale events.
fn query(k: usize) -> String {
    let rows: Vec<String> = (0..1000).map(|i| format!("[{i}]")).collect();
    format!(
        r#"{{"version": 1, "nodes": [
          {{"id": "q", "tool": "sql", "connection": "shop", "dialect": "sqlite",
            "query": "SELECT COUNT(*) AS n, SUM(id) AS s FROM orders WHERE id % 10 = {k}"}},
          {{"id": "o", "tool": "output", "input": "q", "name": "totals"}},
          {{"id": "a", "tool": "inline", "columns": [{{"name": "x", "type": "Int64"}}], "rows": [{}]}},
          {{"id": "j", "tool": "join", "left": "a", "right": "a", "how": "cross"}},
          {{"id": "g", "tool": "summarize", "input": "j", "group_by": ["x"], "aggregations": [{{"op": "count", "as": "c"}}]}},
          {{"id": "p", "tool": "output", "input": "g", "name": "pairs"}}]}}"#,
        rows.join(",")
    )
}

/// What query `k` must return, read from the sample database directly.
async fn expected(stack: &Stack) -> Vec<(i64, i64)> {
    let url = format!("sqlite://{}?mode=ro", stack.db.display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let mut out = Vec::new();
    for k in 0..10 {
        let row: (i64, i64) =
            sqlx::query_as("SELECT COUNT(*), SUM(id) FROM orders WHERE id % 10 = ?")
                .bind(k as i64)
                .fetch_one(&pool)
                .await
                .unwrap();
        out.push(row);
    }
    out
}

/// The (n, s) a run returned; its `pairs` checked on the way.
fn totals(outcome: &Outcome) -> (i64, i64) {
    let frame = |name: &str| {
        let (_, ipc) = outcome.outputs.iter().find(|(n, _)| n == name).unwrap();
        IpcStreamReader::new(std::io::Cursor::new(ipc.clone()))
            .finish()
            .unwrap()
    };
    let pairs = frame("pairs");
    assert_eq!(pairs.height(), 1000);
    let c = pairs
        .column("c")
        .unwrap()
        .cast(&polars::prelude::DataType::Int64);
    let c = c.unwrap();
    let c = c.i64().unwrap();
    assert!((0..c.len()).all(|i| c.get(i) == Some(1000)));
    let df = frame("totals");
    let get = |c: &str| {
        df.column(c)
            .unwrap()
            .cast(&polars::prelude::DataType::Int64)
    };
    let (n, s) = (get("n").unwrap(), get("s").unwrap());
    (
        n.i64().unwrap().get(0).unwrap(),
        s.i64().unwrap().get(0).unwrap(),
    )
}

fn options(fresh_secs: i64) -> DispatchOptions {
    DispatchOptions {
        fresh_secs,
        max_attempts: 10_000,
        patience: Duration::from_secs(120),
        policy: Policy::Affinity,
    }
}

/// A job for `doc` on `pool`, with its token's jti.
async fn pool_job(stack: &Stack, pool: &str, doc: &str) -> (Job, String) {
    let token = stack
        .pool_token(pool, "alice", (doc, ""), &["shop"])
        .await
        .unwrap();
    let jti = jti_of(token.expose());
    let conns = ["shop".to_owned()];
    let job = Job::new(token, pool, doc.to_owned(), String::new(), &conns).unwrap();
    (job, jti)
}

/// Waits until the dispatcher sees exactly `ids` as the live workers of `pool`.
async fn wait_live(dispatcher: &Dispatcher, pool: &str, ids: &[&str]) {
    let want: HashSet<String> = ids.iter().map(|s| (*s).to_owned()).collect();
    let start = Instant::now();
    loop {
        let live: HashSet<String> = dispatcher
            .live(pool)
            .await
            .unwrap()
            .into_iter()
            .map(|w| w.id)
            .collect();
        if live == want {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "live {live:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `hubworker hub workers` on `stack`'s store: its stdout.
async fn hub_workers(stack: &Stack, fresh_secs: i64) -> String {
    let db = stack.dir().join("hub.db");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(bin())
            .args([
                "hub",
                "workers",
                "--fresh-secs",
                &fresh_secs.to_string(),
                "--db",
            ])
            .arg(db)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn signal(daemon: &mut Daemon, sig: Signal) {
    kill(Pid::from_raw(daemon.pid() as i32), sig).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_hundred_concurrent_runs_complete_exactly_once_while_a_worker_drains_and_one_joins() {
    const POOL: &str = "fleet";
    let mut stack = Stack::start(1, &sandboxed("")).await.unwrap();
    stack.set_heartbeat_secs(1).await.unwrap();
    let stack = Arc::new(stack);
    let want = expected(&stack).await;
    let w1 = Daemon::start_in_pool(&stack, POOL, "fleet-1", 4, "").await;
    let mut w2 = Daemon::start_in_pool(&stack, POOL, "fleet-2", 4, "").await;
    let w3 = Daemon::start_in_pool(&stack, POOL, "fleet-3", 4, "").await;
    let dispatcher = Dispatcher::new(stack.store.clone(), options(3));
    wait_live(&dispatcher, POOL, &["fleet-1", "fleet-2", "fleet-3"]).await;

    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..300 {
        let (stack, dispatcher, done) = (stack.clone(), dispatcher.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let (job, jti) = pool_job(&stack, POOL, &query(i % 10)).await;
            let outcome = match dispatcher.dispatch(&job).await {
                Ok(run) => run.finish().await,
                Err(e) => panic!("run {i} not dispatched: [{}] {e}", e.code()),
            };
            done.fetch_add(1, Ordering::SeqCst);
            (i % 10, jti, outcome)
        }));
    }
    // Part-way: fleet-2 drains (SIGTERM) and fleet-4 joins.
    while done.load(Ordering::SeqCst) < 60 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    signal(&mut w2, Signal::SIGTERM);
    let w4 = Daemon::start_in_pool(&stack, POOL, "fleet-4", 4, "").await;
    let joined_at = done.load(Ordering::SeqCst);
    // It serves once it has registered: in the pool within one heartbeat (1 s) from then.
    let serving = Instant::now();
    while !dispatcher
        .live(POOL)
        .await
        .unwrap()
        .iter()
        .any(|w| w.id == "fleet-4")
    {
        assert!(
            serving.elapsed() < Duration::from_secs(1),
            "fleet-4 not live"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    assert!(joined_at < 280, "the run was over before fleet-4 joined");

    // All 300 finished with their exact values, each on one worker, each token its own.
    let mut per_worker: HashMap<String, u64> = HashMap::new();
    let mut run_ids = HashSet::new();
    let mut jtis = HashSet::new();
    for (k, jti, outcome) in &outcomes {
        assert!(outcome.finished, "{:?}", outcome.error);
        assert_eq!(outcome.error, None);
        assert_eq!(totals(outcome), want[*k], "query {k}");
        assert!(run_ids.insert(outcome.run_id.clone()));
        assert!(jtis.insert(jti.clone()));
        *per_worker.entry(outcome.worker_id.clone()).or_default() += 1;
        // A refusal before redemption is all a retry ever follows.
        for Attempt { reason, .. } in &outcome.attempts {
            assert!(
                ["over_capacity", "draining", "unreachable"].contains(&reason.as_str()),
                "{reason}"
            );
        }
    }
    assert_eq!(per_worker.values().sum::<u64>(), 300);
    assert!(
        per_worker.get("fleet-4").copied().unwrap_or(0) > 0,
        "{per_worker:?}"
    );
    assert!(
        per_worker.get("fleet-2").copied().unwrap_or(0) > 0,
        "{per_worker:?}"
    );
    // The Hub's store: 300 redemptions, one per token.
    for jti in &jtis {
        let (_, redeemed) = stack.store.token(jti).await.unwrap().unwrap();
        assert!(redeemed, "{jti}");
    }
    // Every worker that is still up started exactly the runs its clients saw: nothing ran
    // twice, nothing ran unseen.
    for (id, daemon) in [("fleet-1", &w1), ("fleet-3", &w3), ("fleet-4", &w4)] {
        assert_eq!(
            daemon.metric("hubworker_runs_started_total "),
            per_worker.get(id).copied().unwrap_or(0),
            "{id}"
        );
    }
    // The drained worker finished its runs and left cleanly; the pool is the three others.
    let status = w2.process().wait().unwrap();
    assert!(status.success(), "{status}: {}", w2.log());
    let fresh = Dispatcher::new(stack.store.clone(), options(3));
    wait_live(&fresh, POOL, &["fleet-1", "fleet-3", "fleet-4"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refusal_before_redemption_moves_the_same_token_and_other_refusals_are_the_answer() {
    const POOL: &str = "retry";
    let stack = Stack::start(1, &sandboxed("")).await.unwrap();
    let busy = Daemon::start_in_pool(&stack, POOL, "retry-busy", 1, "").await;
    let _idle = Daemon::start_in_pool(&stack, POOL, "retry-idle", 1, "").await;
    let dispatcher = Dispatcher::new(stack.store.clone(), options(45));
    wait_live(&dispatcher, POOL, &["retry-busy", "retry-idle"]).await;
    // Another client (not this dispatcher) holds retry-busy's only slot with a long run.
    let long = cross_join(4000);
    let token = stack
        .pool_token("retry-busy", "alice", (&long, ""), &[])
        .await
        .unwrap();
    let mut holder = busy.client().await;
    let mut held = holder
        .execute(request(token.expose(), &long))
        .await
        .unwrap()
        .into_inner();
    held.message().await.unwrap(); // Accepted: the slot is taken.
    // A run whose preferred worker is retry-busy.
    let live = dispatcher.live(POOL).await.unwrap();
    let mut k = 0;
    let (job, jti) = loop {
        let (job, jti) = pool_job(&stack, POOL, &query(k % 10)).await;
        let first = pick::order(&live, &job.affinity, hubworker::hub::now(), 45)[0]
            .id
            .clone();
        if first == "retry-busy" {
            break (job, jti);
        }
        k += 1;
        assert!(k < 10, "no query prefers retry-busy");
    };
    let outcome = dispatcher.dispatch(&job).await.unwrap().finish().await;
    assert_eq!(outcome.worker_id, "retry-idle");
    assert_eq!(
        outcome.attempts,
        [Attempt {
            worker_id: "retry-busy".into(),
            reason: "over_capacity".into()
        }]
    );
    assert!(outcome.finished, "{:?}", outcome.error);
    let (_, redeemed) = stack.store.token(&jti).await.unwrap().unwrap();
    assert!(redeemed);
    // The same token again: refused as replayed by the worker that sees it, and not retried.
    let err = dispatcher.dispatch(&job).await.unwrap_err();
    assert!(
        matches!(
            &err,
            hubworker::hub::dispatch::DispatchError::Refused { .. }
        ),
        "{err}"
    );
    assert_eq!(err.code(), "token_replayed", "{err}");
    // No worker of the audience: reported at once.
    let (nobody, _) = pool_job(&stack, "nobody", &query(0)).await;
    let started = Instant::now();
    let err = dispatcher.dispatch(&nobody).await.unwrap_err();
    assert_eq!(err.code(), "no_worker_available");
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_workers_runs_fail_to_their_clients_and_it_is_dropped_after_missed_heartbeats() {
    const POOL: &str = "killed";
    const FRESH: i64 = 4;
    let mut stack = Stack::start(1, &sandboxed("")).await.unwrap();
    stack.set_heartbeat_secs(1).await.unwrap();
    let stack = Arc::new(stack);
    let mut a = Daemon::start_in_pool(&stack, POOL, "killed-a", 2, "").await;
    let mut b = Daemon::start_in_pool(&stack, POOL, "killed-b", 2, "").await;
    let dispatcher = Dispatcher::new(stack.store.clone(), options(FRESH));
    wait_live(&dispatcher, POOL, &["killed-a", "killed-b"]).await;
    // Four long runs of one workflow: two on its preferred worker, two on the other.
    let long = cross_join(2500);
    let mut runs = Vec::new();
    for _ in 0..4 {
        let token = stack
            .pool_token(POOL, "alice", (&long, ""), &[])
            .await
            .unwrap();
        let jti = jti_of(token.expose());
        let job = Job::new(token, POOL, long.clone(), String::new(), &[]).unwrap();
        let run = dispatcher.dispatch(&job).await.unwrap();
        assert!(run.attempts.is_empty());
        runs.push((jti, run));
    }
    let on = |id: &str| runs.iter().filter(|(_, r)| r.worker_id == id).count();
    assert_eq!((on("killed-a"), on("killed-b")), (2, 2));
    let victim = runs[2].1.worker_id.clone();
    // Killed mid-run: once the Hub has redeemed its two tokens (the runs are executing).
    let start = Instant::now();
    for (jti, _) in runs.iter().filter(|(_, r)| r.worker_id == victim) {
        while !stack.store.token(jti).await.unwrap().unwrap().1 {
            assert!(start.elapsed() < Duration::from_secs(20), "not redeemed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let killed_at = Instant::now();
    match victim.as_str() {
        "killed-a" => signal(&mut a, Signal::SIGKILL),
        _ => signal(&mut b, Signal::SIGKILL),
    }
    let finishing: Vec<_> = runs
        .into_iter()
        .map(|(jti, run)| tokio::spawn(async move { (jti, run.finish().await) }))
        .collect();
    // Until its heartbeats are missed the Hub still lists it: a run that prefers it finds it
    // unreachable and goes to the survivor with the same token (once a slot there is free).
    let survivor = if victim == "killed-a" {
        "killed-b"
    } else {
        "killed-a"
    };
    let listed = Dispatcher::new(stack.store.clone(), options(FRESH));
    let live = listed.live(POOL).await.unwrap();
    assert_eq!(live.len(), 2, "{live:?}");
    let mut k = 0;
    let job = loop {
        let (job, _) = pool_job(&stack, POOL, &query(k)).await;
        if pick::order(&live, &job.affinity, hubworker::hub::now(), FRESH)[0].id == victim {
            break job;
        }
        k += 1;
        assert!(k < 10, "no query prefers {victim}");
    };
    let moved = tokio::spawn(async move { listed.dispatch(&job).await.unwrap().finish().await });
    // After the missed-heartbeat timeout it is dropped from the pool for every dispatcher.
    let fresh = Dispatcher::new(stack.store.clone(), options(FRESH));
    wait_live(&fresh, POOL, &[survivor]).await;
    assert!(killed_at.elapsed() < Duration::from_secs(FRESH as u64 + 3));
    // `hub workers` shows the operator the same.
    let listed = hub_workers(&stack, FRESH).await;
    let line = |id: &str| {
        listed
            .lines()
            .find(|l| l.starts_with(&format!("{id}\t")))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(line(&victim).contains("\tkilled\tsilent\t"), "{listed}");
    assert!(line(survivor).contains("\tkilled\tlive\t"), "{listed}");
    let outcome = moved.await.unwrap();
    assert_eq!(outcome.worker_id, survivor);
    assert_eq!(outcome.attempts[0].reason, "unreachable");
    assert!(outcome.finished, "{:?}", outcome.error);
    for task in finishing {
        let (jti, outcome) = task.await.unwrap();
        let (_, redeemed) = stack.store.token(&jti).await.unwrap().unwrap();
        assert!(
            redeemed,
            "each run's token was redeemed once, by the worker that took it"
        );
        assert!(outcome.attempts.is_empty(), "never sent anywhere else");
        if outcome.worker_id == victim {
            let (code, _) = outcome.error.clone().expect("the client hears of it");
            assert_eq!(code, "worker_lost");
            assert!(!outcome.finished);
        } else {
            assert!(outcome.finished, "{:?}", outcome.error);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_dispatch_without_worker_runs_on_the_pool() {
    let stack = Stack::start(2, &sandboxed("")).await.unwrap();
    let dir = stack.dir().to_owned();
    std::fs::write(dir.join("q.json"), query(3)).unwrap();
    let hub = |extra: &[&str]| {
        let args: Vec<String> = [
            "hub",
            "dispatch",
            "--db",
            "hub.db",
            "--secrets",
            "keys",
            "--hub-id",
            "demo-hub",
            "--user",
            "alice",
            "--workflow",
            "q.json",
        ]
        .into_iter()
        .chain(extra.iter().copied())
        .map(str::to_owned)
        .collect();
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(bin())
                .args(&args)
                .current_dir(&dir)
                .output()
                .unwrap()
        })
    };
    let out = hub(&[]).await.unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("dispatched to worker demo-worker (http://127.0.0.1:"),
        "{stderr}"
    );
    assert!(stdout.contains("accepted: run "), "{stdout}");
    assert!(stdout.contains("finished: run "), "{stdout}");
    let want = expected(&stack).await[3];
    assert!(stdout.contains(&want.1.to_string()), "{stdout}");
    let listed = hub_workers(&stack, 45).await;
    assert!(
        listed.starts_with("worker\taddress\tpool\tstate\tin flight\tlast heard\n"),
        "{listed}"
    );
    assert!(
        listed.contains("demo-worker\thttp://127.0.0.1:") && listed.contains("\thubworker\tlive\t"),
        "{listed}"
    );
    // A pool no worker serves: reported at once, exit 1.
    let out = hub(&["--audience", "nobody"]).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "[no_worker_available] no worker took the run (0 refusals): no registered worker \
             accepts this audience"
        ),
        "{stderr}"
    );
}
