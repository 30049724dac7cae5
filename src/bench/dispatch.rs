//! The dispatch benchmark: a tiny workflow end to end through the reference Hub (token issued
//! and recorded), gRPC `Execute` on a worker on loopback, Redeem, the run and the streamed
//! results; latency p50/p99 one run at a time, then runs/s at a concurrency, with the worker's
//! own breakdown (check, redeem, load, compute, encode; the rest is gRPC and streaming).
//! Shared by `hubworker bench dispatch` and `benches/dispatch.rs`.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use crate::demo::Stack;
use crate::error::Error;
use crate::proto::execute_event::Event;
use crate::proto::{ExecuteRequest, Finished};

/// `hubworker bench dispatch` options.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct DispatchBenchArgs {
    /// Sequential runs for the latency figures.
    #[arg(long, default_value_t = 300)]
    pub runs: usize,
    /// Concurrent clients for the throughput figure.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Runs per client in the throughput figure.
    #[arg(long, default_value_t = 50)]
    pub per_client: usize,
    /// Skip the result cache (every run queries SQLite).
    #[arg(long)]
    pub bypass_cache: bool,
    /// The Polars engine both workers run on (`[limits] engine`).
    #[arg(long, value_enum, default_value_t = EngineArg::Streaming)]
    pub engine: EngineArg,
}

/// `--engine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum EngineArg {
    /// Polars' streaming engine (the default).
    Streaming,
    /// Polars' in-memory engine.
    InMemory,
}

/// The tiny workflow: one query, one formula, one output.
pub(crate) const TINY: &str = r#"{"version": 1, "nodes": [
  {"id": "q", "tool": "sql", "connection": "shop", "dialect": "sqlite", "query": "SELECT id, name, unit_price FROM products"},
  {"id": "f", "tool": "formula", "input": "q", "formulas": [{"column": "with_vat", "expression": "(pl.col(\"unit_price\") * 1.2).round(2)"}]},
  {"id": "o", "tool": "output", "input": "f", "name": "prices"}]}"#;

/// One dispatch: issue a token, Execute, drain the stream. Returns the worker's breakdown.
pub async fn dispatch_once(stack: &Stack, bypass_cache: bool) -> Result<Finished, Error> {
    let token = stack.token("alice", TINY, &["shop"]).await?;
    let mut client = stack.client().await?;
    let req = ExecuteRequest {
        token: token.expose().to_owned(),
        workflow_json: TINY.to_owned(),
        bypass_cache,
        update_cache: false,
        params_json: String::new(),
    };
    let mut stream = client
        .execute(req)
        .await
        .map_err(|s| Error::Failed(format!("execute refused: {}", s.message())))?
        .into_inner();
    let mut finished = None;
    while let Some(e) = stream
        .message()
        .await
        .map_err(|s| Error::Failed(format!("stream failed: {}", s.message())))?
    {
        match e.event {
            Some(Event::Finished(f)) => finished = Some(f),
            Some(Event::Error(e)) => return Err(Error::Failed(format!("run failed [{}]", e.code))),
            _ => {}
        }
    }
    finished.ok_or_else(|| Error::Failed("the run ended without Finished".into()))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn median_us(v: &mut [u64]) -> f64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or_default() as f64 / 1000.0
}

/// What one configuration measured.
struct Measured {
    p50: f64,
    p99: f64,
    runs: usize,
    check: f64,
    redeem: f64,
    load: f64,
    compute: f64,
    encode: f64,
    per_second: f64,
    total: usize,
    elapsed: f64,
}

async fn measure(stack: Arc<Stack>, args: &DispatchBenchArgs) -> Result<Measured, Error> {
    // Warm up: connections, caches, the first plan.
    for _ in 0..10 {
        dispatch_once(&stack, args.bypass_cache).await?;
    }
    let mut latencies = Vec::with_capacity(args.runs);
    let (mut check, mut redeem, mut load, mut compute, mut encode) =
        (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..args.runs.max(1) {
        let t = Instant::now();
        let f = dispatch_once(&stack, args.bypass_cache).await?;
        latencies.push(t.elapsed().as_secs_f64() * 1e3);
        check.push(f.check_us);
        redeem.push(f.redeem_us);
        load.push(f.load_us);
        compute.push(f.compute_us);
        encode.push(f.encode_us);
    }
    latencies.sort_by(f64::total_cmp);

    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let stack = stack.clone();
        let (n, bypass) = (args.per_client, args.bypass_cache);
        tasks.push(tokio::spawn(async move {
            for _ in 0..n {
                dispatch_once(&stack, bypass).await?;
            }
            Ok::<_, Error>(())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| Error::Failed(e.to_string()))??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let total = args.concurrency.max(1) * args.per_client;
    if let Ok(stack) = Arc::try_unwrap(stack) {
        stack.shutdown().await;
    }
    Ok(Measured {
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        runs: latencies.len(),
        check: median_us(&mut check),
        redeem: median_us(&mut redeem),
        load: median_us(&mut load),
        compute: median_us(&mut compute),
        encode: median_us(&mut encode),
        per_second: total as f64 / elapsed,
        total,
        elapsed,
    })
}

fn render(out: &mut String, name: &str, m: &Measured, concurrency: usize, per_client: usize) {
    let _ = writeln!(
        out,
        "  {name}: latency over {} runs one at a time: p50 {:.2} ms, p99 {:.2} ms; {:.0} runs/s with {concurrency} clients x {per_client} ({} runs in {:.2} s)",
        m.runs, m.p50, m.p99, m.per_second, m.total, m.elapsed
    );
    let _ = writeln!(
        out,
        "  {name}: worker breakdown (medians, ms): check {:.3}, redeem {:.3}, load {:.3}, compute {:.3}, encode {:.3}",
        m.check, m.redeem, m.load, m.compute, m.encode
    );
}

/// Runs the benchmark (sandboxed and inline, in the same run) and renders the report.
pub(crate) fn run(args: &DispatchBenchArgs) -> Result<String, Error> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let capacity = u32::try_from(args.concurrency.max(1) * 2).unwrap_or(64);
        // The sandbox alone: start a child, let it confine itself, see it exit.
        let sandbox = crate::sandbox::Sandbox::new(crate::sandbox::Settings::default());
        let mut spawn = Vec::with_capacity(50);
        for _ in 0..50 {
            let t = Instant::now();
            sandbox
                .probe()
                .await
                .map_err(|e| Error::Failed(format!("sandbox probe: {e}")))?;
            spawn.push(t.elapsed().as_secs_f64() * 1e3);
        }
        spawn.sort_by(f64::total_cmp);

        let engine = match args.engine {
            EngineArg::Streaming => "[limits]\nengine = \"streaming\"\n",
            EngineArg::InMemory => "[limits]\nengine = \"in-memory\"\n",
        };
        let process = measure(Arc::new(Stack::start(capacity, engine).await?), args).await?;
        let inline = measure(
            Arc::new(
                Stack::start(
                    capacity,
                    &format!("[sandbox]\nisolation = \"inline\"\n{engine}"),
                )
                .await?,
            ),
            args,
        )
        .await?;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "dispatch benchmark: tiny workflow (1 query, 1 formula, 8 rows) via reference Hub token + gRPC Execute on loopback{}, {} engine",
            if args.bypass_cache { ", cache bypassed" } else { ", inputs from the cache after the first run" },
            match args.engine {
                EngineArg::Streaming => "streaming",
                EngineArg::InMemory => "in-memory",
            }
        );
        render(&mut out, "process (sandboxed)", &process, args.concurrency, args.per_client);
        render(&mut out, "inline (baseline)  ", &inline, args.concurrency, args.per_client);
        let _ = writeln!(
            out,
            "  sandbox per-run overhead: p50 +{:.2} ms ({:.2}x inline), throughput {:.2}x inline; a child's start, confinement and exit alone: p50 {:.2} ms, p99 {:.2} ms",
            process.p50 - inline.p50,
            process.p50 / inline.p50,
            process.per_second / inline.per_second,
            percentile(&spawn, 0.50),
            percentile(&spawn, 0.99)
        );
        Ok(out)
    })
}
