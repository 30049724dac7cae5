//! Criterion benchmarks for the expression compiler (issue #2):
//! (a) front end per expression: bare rustpython parse vs cold check+compile vs warm cache hit,
//!     for short (~25 chars), medium (~90) and long (~500) expressions;
//! (b) a Formula -> Formula -> Filter -> group_by plan compiled from strings vs hand-written.
//! `hubworker bench expr` prints the same comparisons as ratios in one run.

// criterion_group! generates an undocumented function; nothing here is public API.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hubworker::bench::{
    Size, WARM_WORKING_SET, compiled_plan, corpus, generate_frame, handwritten_plan,
};
use hubworker::expr::{self, ExprCache, check};

fn front_end(c: &mut Criterion) {
    let mut g = c.benchmark_group("front_end");
    for size in Size::ALL {
        let texts = corpus(size, 256);
        g.throughput(Throughput::Elements(texts.len() as u64));
        g.bench_with_input(
            BenchmarkId::new("bare_parse", size.name()),
            &texts,
            |b, t| {
                b.iter(|| {
                    for s in t {
                        let _ = black_box(expr::parse_expression(black_box(s), Default::default()));
                    }
                })
            },
        );
        g.bench_with_input(BenchmarkId::new("cold", size.name()), &texts, |b, t| {
            b.iter(|| {
                for s in t {
                    let _ = black_box(check(black_box(s)));
                }
            })
        });
        // Warm hits cycle over a working set of a few workflows' worth, as `bench expr` does.
        let hot = &texts[..WARM_WORKING_SET.min(texts.len())];
        let cache = ExprCache::default();
        for s in hot {
            let _ = cache.get(s);
        }
        g.throughput(Throughput::Elements(hot.len() as u64));
        g.bench_with_input(BenchmarkId::new("warm", size.name()), hot, |b, t| {
            b.iter(|| {
                for s in t {
                    let _ = black_box(cache.with(black_box(s), Result::is_ok));
                }
            })
        });
    }
    g.finish();
}

fn execution(c: &mut Criterion) {
    let rows = std::env::var("HUBWORKER_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let df = generate_frame(rows, 1984);
    let mut g = c.benchmark_group("execution");
    g.sample_size(10);
    g.throughput(Throughput::Elements(rows as u64));
    g.bench_function("compiled_from_strings", |b| {
        b.iter(|| compiled_plan(&df).and_then(|lf| Ok(lf.collect()?)))
    });
    g.bench_function("hand_written", |b| {
        b.iter(|| handwritten_plan(&df).collect())
    });
    g.finish();
}

criterion_group!(benches, front_end, execution);
criterion_main!(benches);
