//! Criterion benchmark for issue #4: a realistic workflow (formula, formula, filter, join
//! with a dimension table, summarize) through the workflow engine, next to the same plan
//! hand-written in Rust Polars, over the same loaded frames. Rows: `HUBWORKER_BENCH_ROWS`
//! (default 1M here; `hubworker bench workflow` runs the 10M-row comparison).

// criterion_group! generates an undocumented function; nothing here is public API.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hubworker::bench::workflow::{engine, generate, handwritten};

fn workflow(c: &mut Criterion) {
    let rows = std::env::var("HUBWORKER_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000usize);
    let (sales, products) = generate(rows);
    let mut g = c.benchmark_group("workflow");
    g.sample_size(10);
    g.throughput(Throughput::Elements(rows as u64));
    g.bench_function("handwritten", |b| {
        b.iter(|| black_box(handwritten(&sales, &products).expect("plan")))
    });
    g.bench_function("engine", |b| {
        b.iter(|| black_box(engine(&sales, &products).expect("engine")))
    });
    g.finish();
}

criterion_group!(benches, workflow);
criterion_main!(benches);
