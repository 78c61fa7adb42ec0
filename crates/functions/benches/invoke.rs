//! Warm "hello" invocation and cold isolate creation.

use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
use ledge_functions::worker::{worker_main, WorkerOptions, WorkerPool};
use ledge_functions::*;

#[path = "support/common.rs"]
mod common;
use common::{hello_request, NoHost};

const HELLO: &str = "export default async (request, context) => new Response('Hello, world!', { headers: { 'content-type': 'text/plain' } });";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime")
}

fn warm(c: &mut Criterion) {
    let rt = rt();
    let engine = Engine::new(Limits::default());
    let bundle = Bundle::single("bench/hello", HELLO);
    let req = hello_request();
    c.bench_function("warm hello invocation", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let t = Instant::now();
                for _ in 0..iters {
                    let inv = engine.invoke(&bundle, &req, &NoHost).await;
                    assert!(matches!(inv.outcome, InvocationOutcome::Response(_)));
                }
                t.elapsed()
            })
        })
    });
}

fn warm_pass(c: &mut Criterion) {
    let rt = rt();
    let engine = Engine::new(Limits::default());
    let bundle = Bundle::single("bench/pass", "export default () => {}");
    let req = hello_request();
    c.bench_function("warm pass-through invocation", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let t = Instant::now();
                for _ in 0..iters {
                    let inv = engine.invoke(&bundle, &req, &NoHost).await;
                    assert!(matches!(inv.outcome, InvocationOutcome::PassThrough));
                }
                t.elapsed()
            })
        })
    });
}

fn cold(c: &mut Criterion) {
    // max_isolates 0: every isolate is dropped after use, so each call creates one.
    let engine = Engine::new(Limits {
        max_isolates: 0,
        ..Limits::default()
    });
    let bundle = Bundle::single("bench/hello", HELLO);
    let mut samples: Vec<Duration> = Vec::new();
    c.bench_function("cold isolate (create + evaluate + drop)", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                engine.config(&bundle).expect("isolate");
                let d = t.elapsed();
                samples.push(d);
                total += d;
            }
            total
        })
    });
    // Percentiles over every measured call (criterion reports means).
    if !samples.is_empty() {
        samples.sort();
        let pct = |p: f64| samples[((samples.len() as f64 - 1.0) * p) as usize];
        eprintln!(
            "cold isolate over {} calls: p50 {:?}  p90 {:?}  p99 {:?}  max {:?}",
            samples.len(),
            pct(0.5),
            pct(0.9),
            pct(0.99),
            pct(1.0)
        );
    }
}

/// The same warm "hello" through a pool of worker processes (this bench
/// binary re-executed as the worker), beside the in-process engine.
fn warm_pool(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let exe = std::env::current_exe().expect("current exe");
    let mut opts = WorkerOptions::new(exe, Vec::new());
    opts.envs.push((WORKER_ENV.into(), "1".into()));
    opts.workers = 1;
    let pool = WorkerPool::start(opts).expect("worker pool");
    assert!(rt.block_on(pool.ready(Duration::from_secs(10))));
    let bundle = Bundle::single("bench/hello", HELLO);
    let req = hello_request();
    c.bench_function("warm hello invocation, worker pool (1 worker)", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let t = Instant::now();
                for _ in 0..iters {
                    let inv = pool.invoke(&bundle, &req, &NoHost).await;
                    assert!(matches!(inv.outcome, InvocationOutcome::Response(_)));
                }
                t.elapsed()
            })
        })
    });
    // Throughput with 16 in flight (batched frames), per invocation.
    c.bench_function("warm hello invocation, worker pool, 16 in flight", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let t = Instant::now();
                let mut left = iters;
                while left > 0 {
                    let n = left.min(16);
                    left -= n;
                    let runs = (0..n).map(|_| pool.invoke(&bundle, &req, &NoHost));
                    for inv in futures_util::future::join_all(runs).await {
                        assert!(matches!(inv.outcome, InvocationOutcome::Response(_)));
                    }
                }
                t.elapsed()
            })
        })
    });
}

const WORKER_ENV: &str = "LEDGE_BENCH_WORKER";

criterion_group!(benches, warm, warm_pool, warm_pass, cold);

fn main() -> std::process::ExitCode {
    if std::env::var_os(WORKER_ENV).is_some() {
        return worker_main();
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
    std::process::ExitCode::SUCCESS
}
