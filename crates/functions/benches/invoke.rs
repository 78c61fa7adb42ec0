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

/// The same warm "hello", but taking turns over as many deploys as the
/// pool keeps warm: each request's isolate is the one idle longest, the
/// far end of the pool from where `checkout` starts looking.
fn warm_many(c: &mut Criterion) {
    let rt = rt();
    let limits = Limits::default();
    let deploys = limits.max_isolates;
    let engine = Engine::new(limits);
    let bundles: Vec<Bundle> = (0..deploys)
        .map(|i| Bundle::single(&format!("bench/deploy-{i:04}"), HELLO))
        .collect();
    let req = hello_request();
    rt.block_on(async {
        for bundle in &bundles {
            engine.invoke(bundle, &req, &NoHost).await;
        }
    });
    assert_eq!(engine.idle_isolates(), deploys);
    let name = format!("warm hello invocation, {deploys} deploys in turn");
    c.bench_function(&name, |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let t = Instant::now();
                for bundle in bundles.iter().cycle().take(iters as usize) {
                    let inv = engine.invoke(bundle, &req, &NoHost).await;
                    assert!(!inv.telemetry.cold_start);
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

/// Percentiles over every measured call (criterion reports means).
fn report(what: &str, samples: &mut [Duration]) {
    if samples.is_empty() {
        return;
    }
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 - 1.0) * p) as usize];
    eprintln!(
        "{what} over {} calls: p50 {:?}  p90 {:?}  p99 {:?}  max {:?}",
        samples.len(),
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0)
    );
}

/// Runs `setup` (untimed) then `timed` for each iteration of the bench
/// `name`, and prints the percentiles of the timed part as `label`.
fn timed_case(
    c: &mut Criterion,
    name: &str,
    label: &str,
    mut setup: impl FnMut(),
    mut timed: impl FnMut(),
) {
    let mut samples: Vec<Duration> = Vec::new();
    c.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                setup();
                let t = Instant::now();
                timed();
                let d = t.elapsed();
                samples.push(d);
                total += d;
            }
            total
        })
    });
    report(label, &mut samples);
}

/// A cold start in process: the bundle evaluated in a new isolate (and its
/// `config` read). With `max_isolates` 0 each isolate is evicted at once;
/// its drop is left to `idle_work` (untimed, as in a worker, where it runs
/// after the answer is out).
fn cold(c: &mut Criterion) {
    let engine = Engine::new(Limits {
        max_isolates: 0,
        ..Limits::default()
    });
    let bundle = Bundle::single("bench/hello", HELLO);
    let config = |b: &Bundle| {
        engine.config(b).expect("isolate");
    };
    // As a worker that was idle since its last cold start: a blank isolate
    // (runtime, context, glue) is ready, and the cold start evaluates the
    // tenant's module in it.
    timed_case(
        c,
        "cold isolate, blank one ready (evaluate)",
        "cold isolate, blank one ready",
        || while engine.idle_work() {},
        || config(&bundle),
    );
    // The same for a bundle no isolate has compiled yet (a deploy's first
    // request): its module is compiled from source too.
    let n = std::cell::Cell::new(0u64);
    let fresh = std::cell::RefCell::new(bundle.clone());
    timed_case(
        c,
        "cold isolate of a new bundle, blank one ready (compile + evaluate)",
        "cold isolate of a new bundle, blank one ready",
        || {
            n.set(n.get() + 1);
            *fresh.borrow_mut() = Bundle::single(&format!("bench/new-{}", n.get()), HELLO);
            while engine.idle_work() {}
        },
        || config(&fresh.borrow()),
    );
    // Cold starts back to back, with no idle time between them: each makes
    // its isolate from nothing.
    timed_case(
        c,
        "cold isolate, none ready (create + evaluate)",
        "cold isolate, none ready",
        || {
            // A blank isolate left from the cases above is not used.
            while engine.has_spare() {
                config(&Bundle::single("bench/other", HELLO));
            }
            engine.drop_evicted();
        },
        || config(&bundle),
    );
    // What `idle_work` does off the answer's path: drop an evicted isolate.
    timed_case(
        c,
        "dropping an isolate (idle work)",
        "dropping an isolate",
        || config(&bundle),
        || engine.drop_evicted(),
    );
}

/// A runtime for the node's side and a pool of one worker process (this
/// bench binary re-executed as the worker), ready.
fn one_worker() -> (tokio::runtime::Runtime, WorkerPool) {
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
    (rt, pool)
}

/// The same warm "hello" through a pool of worker processes (this bench
/// binary re-executed as the worker), beside the in-process engine.
fn warm_pool(c: &mut Criterion) {
    let (rt, pool) = one_worker();
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

/// A deploy's first request through a worker process: a bundle the worker
/// has not seen (sent, compiled, evaluated in a new isolate), after the
/// worker was idle for 5 ms (time for its idle work: a blank isolate ready)
/// or right after the previous one (none ready).
fn cold_pool(c: &mut Criterion) {
    let (rt, pool) = one_worker();
    let req = hello_request();
    let mut n = 0u64;
    let warm = Bundle::single("bench/warm", HELLO);
    rt.block_on(pool.invoke(&warm, &req, &NoHost));
    for (name, pause, fresh) in [
        // The anchor: a warm invocation after the same pause (waking an
        // idle process costs more than one that is running).
        (
            "warm invocation, worker pool, after 5 ms idle",
            Duration::from_millis(5),
            false,
        ),
        (
            "first request of a deploy, worker pool, after 5 ms idle",
            Duration::from_millis(5),
            true,
        ),
        (
            "first request of a deploy, worker pool, back to back",
            Duration::ZERO,
            true,
        ),
    ] {
        let mut samples: Vec<Duration> = Vec::new();
        c.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        n += 1;
                        let made;
                        let bundle = if fresh {
                            made = Bundle::single(&format!("bench/deploy-{n}"), HELLO);
                            &made
                        } else {
                            &warm
                        };
                        if !pause.is_zero() {
                            tokio::time::sleep(pause).await;
                        }
                        let t = Instant::now();
                        let inv = pool.invoke(bundle, &req, &NoHost).await;
                        let d = t.elapsed();
                        assert_eq!(inv.telemetry.cold_start, fresh);
                        assert!(matches!(inv.outcome, InvocationOutcome::Response(_)));
                        samples.push(d);
                        total += d;
                    }
                    total
                })
            })
        });
        report(name, &mut samples);
    }
}

const WORKER_ENV: &str = "LEDGE_BENCH_WORKER";

criterion_group!(benches, warm, warm_many, warm_pool, warm_pass, cold, cold_pool);

fn main() -> std::process::ExitCode {
    if std::env::var_os(WORKER_ENV).is_some() {
        return worker_main();
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
    std::process::ExitCode::SUCCESS
}
