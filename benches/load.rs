//! Criterion benchmark for issue #3's loading speed: an 8-column PostgreSQL query loaded into a
//! DataFrame by the connector, next to the same `COPY ... (FORMAT binary)` drained to nothing.
//! Needs PostgreSQL at `HUBWORKER_TEST_PG_URL` (default: the local test database).
//! `hubworker bench load` prints the same comparison as a ratio on one connection.

// criterion_group! generates an undocumented function; nothing here is public API.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_util::TryStreamExt;
use hubworker::bench::load_query;
use hubworker::connector::{QueryOptions, Target, query};
use hubworker::secret::Secret;
use sqlx::Connection;

fn load(c: &mut Criterion) {
    let url = std::env::var("HUBWORKER_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let rows = std::env::var("HUBWORKER_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000usize);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let sql = load_query(rows);
    let target = Target::from_url(Secret::new(url.clone())).expect("target");
    let checked = hubworker::sql::guard(&sql, target.dialect).expect("guard");
    let mut g = c.benchmark_group("load");
    g.sample_size(10);
    g.throughput(Throughput::Elements(rows as u64));
    g.bench_function("copy_binary_drained", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
                let copy = format!("COPY ({sql}) TO STDOUT (FORMAT binary)");
                let mut s = conn.copy_out_raw(&copy).await.expect("copy");
                let mut n = 0usize;
                while let Some(chunk) = s.try_next().await.expect("chunk") {
                    n += chunk.len();
                }
                black_box(n)
            })
        })
    });
    g.bench_function("into_dataframe", |b| {
        b.iter(|| {
            rt.block_on(query(&target, &checked, &[], QueryOptions::default()))
                .expect("query")
        })
    });
    g.finish();
}

criterion_group!(benches, load);
criterion_main!(benches);
