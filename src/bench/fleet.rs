//! `hubworker bench fleet`: the reference Hub's dispatcher over 1, 2, 3... worker processes
//! on loopback (this binary's `serve`), each count with cold caches: runs/s, latency p50/p99
//! and the result cache's hit rate, with cache affinity, and at the largest count with random
//! dispatch beside it, on the same sequence of runs.

use std::fmt::Write as _;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::demo::Stack;
use crate::error::Error;
use crate::hub::dispatch::{DispatchOptions, Dispatcher, Job, Policy};
use crate::proto::worker_client::WorkerClient;

/// `hubworker bench fleet` options.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct FleetBenchArgs {
    /// Worker counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    pub workers: Vec<usize>,
    /// Runs per measurement.
    #[arg(long, default_value_t = 600)]
    pub runs: usize,
    /// Distinct queries the runs draw from (each is a cache entry).
    #[arg(long, default_value_t = 40)]
    pub keys: usize,
    /// Runs in flight at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Run slots per worker.
    #[arg(long, default_value_t = 4)]
    pub capacity: u32,
}

/// Query `k`: a distinct result (and cache entry) per `k`.
fn query(k: usize, keys: usize) -> String {
    format!(
        r#"{{"version": 1, "nodes": [
  {{"id": "q", "tool": "sql", "connection": "shop", "dialect": "sqlite", "query": "SELECT id, name, unit_price FROM products WHERE id % {keys} = {k}"}},
  {{"id": "f", "tool": "formula", "input": "q", "formulas": [{{"column": "with_vat", "expression": "(pl.col(\"unit_price\") * 1.2).round(2)"}}]}},
  {{"id": "o", "tool": "output", "input": "f", "name": "prices"}}]}}"#
    )
}

/// A worker process, killed if still running when dropped.
struct Process {
    child: Child,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16, Error> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts `hubworker serve` as worker `id` of `pool` and waits until it answers.
async fn spawn(stack: &Stack, id: &str, pool: &str, capacity: u32) -> Result<Process, Error> {
    let ports = (free_port()?, free_port()?);
    let config = stack.dir().join(format!("{id}.toml"));
    std::fs::write(&config, stack.worker_toml((id, pool, capacity), ports, ""))?;
    let log = std::fs::File::create(stack.dir().join(format!("{id}.log")))?;
    let mut process = Process {
        child: Command::new(std::env::current_exe()?)
            .args(["serve", "--config"])
            .arg(&config)
            .env_clear()
            .env("HUBWORKER_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?,
    };
    let url = format!("http://127.0.0.1:{}", ports.0);
    let started = Instant::now();
    loop {
        if let Ok(mut c) = WorkerClient::connect(url.clone()).await
            && c.status(crate::proto::StatusRequest {}).await.is_ok()
        {
            return Ok(process);
        }
        if let Some(status) = process.child.try_wait()? {
            return Err(Error::Failed(format!("worker {id} exited: {status}")));
        }
        if started.elapsed() > Duration::from_secs(30) {
            return Err(Error::Failed(format!("worker {id} does not serve")));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What one configuration measured.
struct Measured {
    per_second: f64,
    p50: f64,
    p99: f64,
    sql: u32,
    hits: u32,
    refusals: usize,
}

impl Measured {
    fn hit_rate(&self) -> f64 {
        f64::from(self.hits) / f64::from(self.sql.max(1))
    }
}

/// The keys of the runs, in order: the same pseudo-random sequence for every configuration.
fn sequence(runs: usize, keys: usize) -> Vec<usize> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..runs)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((x >> 33) as usize) % keys.max(1)
        })
        .collect()
}

async fn measure(
    stack: &Arc<Stack>,
    workers: usize,
    policy: Policy,
    args: &FleetBenchArgs,
) -> Result<Measured, Error> {
    let pool = format!("bench-{workers}-{policy:?}").to_lowercase();
    let mut processes = Vec::new();
    for i in 1..=workers {
        processes.push(spawn(stack, &format!("{pool}-{i}"), &pool, args.capacity).await?);
    }
    let dispatcher = Dispatcher::new(
        stack.store.clone(),
        DispatchOptions {
            policy,
            ..DispatchOptions::default()
        },
    );
    while dispatcher.live(&pool).await.map_err(store)?.len() < workers {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Tokens first (the Hub's side, not measured).
    let mut jobs = Vec::with_capacity(args.runs);
    for k in sequence(args.runs, args.keys) {
        let doc = query(k, args.keys);
        let token = stack
            .pool_token(&pool, "alice", (&doc, ""), &["shop"])
            .await?;
        let job = Job::new(token, &pool, doc, String::new(), &["shop".to_owned()])
            .ok_or_else(|| Error::Failed("bench fleet: a query is not JSON".into()))?;
        jobs.push(job);
    }
    let jobs = Arc::new(jobs);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (jobs, next, dispatcher) = (jobs.clone(), next.clone(), dispatcher.clone());
        clients.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(i) else { break };
                let t = Instant::now();
                let run = dispatcher.dispatch(job).await;
                let outcome = match run {
                    Ok(run) => run.finish().await,
                    Err(e) => return Err(format!("[{}] {e}", e.code())),
                };
                if let Some((code, message)) = outcome.error {
                    return Err(format!("a run failed: [{code}] {message}"));
                }
                let ms = t.elapsed().as_secs_f64() * 1000.0;
                seen.push((
                    ms,
                    outcome.sql_nodes,
                    outcome.from_cache,
                    outcome.attempts.len(),
                ));
            }
            Ok(seen)
        }));
    }
    let mut all = Vec::with_capacity(args.runs);
    for c in clients {
        let seen = c
            .await
            .map_err(|e| Error::Failed(format!("bench fleet: {e}")))?
            .map_err(|e| Error::Failed(format!("bench fleet: {e}")))?;
        all.extend(seen);
    }
    let elapsed = started.elapsed().as_secs_f64();
    // SIGTERM: each drains (nothing in flight), deregisters and exits.
    for p in &processes {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(p.child.id()).unwrap_or(0));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    }
    tokio::task::spawn_blocking(move || {
        for mut p in processes {
            let _ = p.child.wait();
        }
    })
    .await
    .map_err(|e| Error::Failed(format!("bench fleet: {e}")))?;
    let mut latencies: Vec<f64> = all.iter().map(|s| s.0).collect();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies.get(i).copied().unwrap_or(f64::NAN)
    };
    Ok(Measured {
        per_second: all.len() as f64 / elapsed,
        p50: pct(0.5),
        p99: pct(0.99),
        sql: all.iter().map(|s| s.1).sum(),
        hits: all.iter().map(|s| s.2).sum(),
        refusals: all.iter().map(|s| s.3).sum(),
    })
}

fn store(e: crate::hub::StoreError) -> Error {
    Error::Failed(format!("bench fleet: hub store: {e}"))
}

/// Runs the benchmark; returns the report.
pub(crate) fn run(args: &FleetBenchArgs) -> Result<String, Error> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let stack = Arc::new(Stack::start(1, "").await?);
        let mut counts = args.workers.clone();
        counts.retain(|n| *n > 0);
        counts.sort_unstable();
        counts.dedup();
        let largest = counts.last().copied().unwrap_or(1);
        let mut rows = Vec::new();
        for &n in &counts {
            rows.push((n, Policy::Affinity, measure(&stack, n, Policy::Affinity, args).await?));
        }
        if largest > 1 {
            let random = measure(&stack, largest, Policy::Random, args).await?;
            rows.push((largest, Policy::Random, random));
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut out = String::new();
        let _ = writeln!(
            out,
            "fleet benchmark: {} runs over {} distinct queries (SQLite, sandboxed workers, cold \
             caches), {} in flight, {} slots per worker; worker processes on loopback, {cores} cores\n",
            args.runs, args.keys, args.concurrency, args.capacity
        );
        let _ = writeln!(
            out,
            "workers  dispatch   runs/s   p50 ms   p99 ms  cache hits  refusals"
        );
        for (n, policy, m) in &rows {
            let _ = writeln!(
                out,
                "{n:>7}  {:<8} {:>8.1} {:>8.2} {:>8.2}  {:>9.1}%  {:>8}",
                format!("{policy:?}").to_lowercase(),
                m.per_second,
                m.p50,
                m.p99,
                100.0 * m.hit_rate(),
                m.refusals
            );
        }
        let single = rows.iter().find(|(n, p, _)| *n == 1 && *p == Policy::Affinity);
        let at = |policy| {
            rows.iter()
                .find(|(n, p, _)| *n == largest && *p == policy)
        };
        if let (Some((_, _, one)), Some((_, _, aff)), Some((_, _, rnd))) =
            (single, at(Policy::Affinity), at(Policy::Random))
        {
            let base = one.hit_rate().max(f64::MIN_POSITIVE);
            let _ = writeln!(
                out,
                "\ncache hit rate at {largest} workers: affinity {:.1}% = {:.2}× the single \
                 worker's {:.1}% (goal ≥ 0.90×); random {:.1}% = {:.2}×",
                100.0 * aff.hit_rate(),
                aff.hit_rate() / base,
                100.0 * one.hit_rate(),
                100.0 * rnd.hit_rate(),
                rnd.hit_rate() / base
            );
        }
        if let Ok(stack) = Arc::try_unwrap(stack) {
            stack.shutdown().await;
        }
        Ok(out)
    })
}
