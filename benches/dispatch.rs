//! Criterion benchmark for issue #6: one tiny workflow end to end (reference Hub token, gRPC
//! `Execute` on a loopback worker, Redeem, run, streamed results). `hubworker bench dispatch`
//! reports p50/p99, runs/s at concurrency 16 and the worker's breakdown.

// criterion_group! generates an undocumented function; nothing here is public API.
#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use hubworker::bench::dispatch::dispatch_once;
use hubworker::demo::Stack;

fn dispatch(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // The run child is the hubworker binary (this bench's own executable is not one).
    let sandboxed = format!(
        "[sandbox]\nprogram = {:?}\n",
        env!("CARGO_BIN_EXE_hubworker")
    );
    let mut g = c.benchmark_group("dispatch");
    g.sample_size(50);
    for (name, config) in [
        ("process", sandboxed.as_str()),
        ("inline", "[sandbox]\nisolation = \"inline\"\n"),
    ] {
        let stack = rt.block_on(Stack::start(8, config)).expect("stack");
        g.bench_function(format!("tiny_workflow_cached/{name}"), |b| {
            b.iter(|| rt.block_on(dispatch_once(&stack, false)).expect("run"))
        });
        g.bench_function(format!("tiny_workflow_uncached/{name}"), |b| {
            b.iter(|| rt.block_on(dispatch_once(&stack, true)).expect("run"))
        });
        rt.block_on(stack.shutdown());
    }
    g.finish();
}

criterion_group!(benches, dispatch);
criterion_main!(benches);
