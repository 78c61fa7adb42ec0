//! The worker pool end to end: this test binary is also the worker program
//! (it re-executes itself with `LEDGE_TEST_WORKER=1` and calls
//! `worker_main`), so there is no second binary in the workspace.
//!
//! `harness = false`: run with `cargo test -p ledge-functions --test worker
//! [name-filter]`.

mod common;

use std::collections::BTreeMap;
use std::ffi::CString;
use std::future::Future;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use common::*;
use ledge_functions::worker::{worker_main, WorkerOptions, WorkerPool};
use ledge_functions::*;

/// As in the node's binary: the sandbox must suit this allocator.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const WORKER_ENV: &str = "LEDGE_TEST_WORKER";
const PROBE_ENV: &str = "LEDGE_TEST_SANDBOX_PROBE";
const FAKE_ENV: &str = "LEDGE_TEST_FAKE_WORKER";

const HELLO: &str = "export default async () => new Response('Hello, world!')";

fn main() -> ExitCode {
    if std::env::var_os(WORKER_ENV).is_some() {
        return worker_main();
    }
    if std::env::var_os(PROBE_ENV).is_some() {
        return probe();
    }
    if let Some(kind) = std::env::var_os(FAKE_ENV) {
        return fake_worker(&kind.to_string_lossy());
    }
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let tests: &[(&str, fn())] = &[
        ("hello_round_trip", || block_on(hello_round_trip())),
        ("host_calls_are_proxied", || {
            block_on(host_calls_are_proxied())
        }),
        ("env_reaches_the_worker", || {
            block_on(env_reaches_the_worker())
        }),
        ("fixed_context_reaches_the_worker", || {
            block_on(fixed_context_reaches_the_worker())
        }),
        ("hundred_in_flight", || block_on(hundred_in_flight())),
        ("a_dropped_invocations_host_call_is_refused", || {
            block_on(a_dropped_invocations_host_call_is_refused())
        }),
        ("killed_worker_fails_its_invocation", || {
            block_on(killed_worker_fails_its_invocation())
        }),
        ("runaway_does_not_block_others", || {
            block_on(runaway_does_not_block_others())
        }),
        ("noisy_tenant_does_not_delay_quiet_one", || {
            block_on(noisy_tenant_does_not_delay_quiet_one())
        }),
        ("queue_overflow_is_overloaded", || {
            block_on(queue_overflow_is_overloaded())
        }),
        ("unsent_work_is_not_forgiven", unsent_work_is_not_forgiven),
        (
            "an_answer_does_not_wait_for_a_long_segment",
            an_answer_does_not_wait_for_a_long_segment,
        ),
        ("memory_bomb", || block_on(memory_bomb())),
        ("sandbox_refuses_files_sockets_exec", sandbox_refuses),
        ("eviction_and_unknown_bundle", || {
            block_on(eviction_and_unknown_bundle())
        }),
        ("deploys_do_not_share_globals", || {
            block_on(deploys_do_not_share_globals())
        }),
        ("blank_isolates_are_made_while_idle", || {
            block_on(blank_isolates_are_made_while_idle())
        }),
        ("malformed_frame_kills_the_worker", || {
            block_on(malformed_frame_kills_the_worker())
        }),
        (
            "hung_worker_is_killed",
            || block_on(hung_worker_is_killed()),
        ),
        ("large_bodies_both_ways", || {
            block_on(large_bodies_both_ways())
        }),
    ];
    let mut failed = Vec::new();
    let mut ran = 0;
    for (name, test) in tests {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        ran += 1;
        let t = Instant::now();
        let ok = std::panic::catch_unwind(test).is_ok();
        println!(
            "test {name} ... {} ({:.2?})",
            if ok { "ok" } else { "FAILED" },
            t.elapsed()
        );
        if !ok {
            failed.push(*name);
        }
    }
    println!(
        "\nworker tests: {} passed; {} failed {failed:?}",
        ran - failed.len(),
        failed.len()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn block_on<F: std::future::Future<Output = ()>>(f: F) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

fn options(workers: usize, limits: Limits) -> WorkerOptions {
    let exe = std::env::current_exe().expect("current exe");
    let mut o = WorkerOptions::new(exe, Vec::new());
    o.envs.push((WORKER_ENV.into(), "1".into()));
    o.workers = workers;
    o.limits = limits;
    o
}

async fn start(o: WorkerOptions) -> WorkerPool {
    let pool = WorkerPool::start(o).expect("pool");
    assert!(pool.ready(Duration::from_secs(10)).await, "workers ready");
    pool
}

async fn pool(workers: usize) -> WorkerPool {
    start(options(workers, Limits::default())).await
}

async fn hello_round_trip() {
    let pool = pool(2).await;
    let bundle = Bundle::single("site/hello", HELLO);
    let host = TestHost::default();
    let inv = pool
        .invoke(&bundle, &request("https://site.example/"), &host)
        .await;
    assert_eq!(body(&inv), "Hello, world!");
    assert!(inv.telemetry.cold_start);
    let inv = pool
        .invoke(&bundle, &request("https://site.example/"), &host)
        .await;
    assert_eq!(body(&inv), "Hello, world!");
    assert!(!inv.telemetry.cold_start, "the isolate stays warm");
    for report in pool.sandbox_reports() {
        let report = report.expect("ready");
        assert!(report.confined(), "{report:?}");
        eprintln!("  sandbox: {report:?}");
    }
}

async fn host_calls_are_proxied() {
    let pool = pool(2).await;
    let src = r#"export default async (request, context) => {
        const n = await context.next();
        const [a, b] = await Promise.all([
            fetch('https://origin.example/a', { method: 'POST', body: 'ping' }),
            fetch('https://origin.example/b', { headers: { 'x-k': 'v' } }),
        ]);
        const bad = await fetch('https://fail.invalid/').then(() => 'ok', (e) => 'failed: ' + e.message);
        return new Response([await n.text(), await a.text(), await b.text(), b.headers.get('echo-x-k'), bad].join('|'));
    }"#;
    let bundle = Bundle::single("site/proxy", src);
    let host = TestHost::default();
    let inv = pool
        .invoke(&bundle, &request("https://site.example/p"), &host)
        .await;
    assert_eq!(
        body(&inv),
        "next GET https://site.example/p body=|fetch POST https://origin.example/a body=ping|fetch GET https://origin.example/b body=|v|failed: fetch failed: connection refused"
    );
    assert_eq!(inv.telemetry.host_calls, 4);
    assert_eq!(host.seen.lock().unwrap().len(), 3);
}

async fn env_reaches_the_worker() {
    let pool = pool(1).await;
    let src = "const top = Netlify.env.get('GREETING'); export default async () => new Response(top + '/' + Netlify.env.get('REQ'))";
    let mut env = BTreeMap::new();
    env.insert("GREETING".to_string(), "hi".to_string());
    let bundle = Bundle::single("site/env", src).with_env(env);
    let mut req = request("https://site.example/");
    std::sync::Arc::make_mut(&mut req.context_mut().env).insert("REQ".into(), "r".into());
    let inv = pool.invoke(&bundle, &req, &TestHost::default()).await;
    assert_eq!(body(&inv), "hi/r");

    // The environment goes to a worker only when it is not the one last
    // sent for the bundle: the same map again, a changed one, the first
    // one again, each seen as it is.
    let first = std::sync::Arc::clone(&req.context.env);
    let mut changed = req.clone();
    std::sync::Arc::make_mut(&mut changed.context_mut().env).insert("REQ".into(), "r2".into());
    for (r, want) in [
        (&req, "hi/r"),
        (&req, "hi/r"),
        (&changed, "hi/r2"),
        (&req, "hi/r"),
    ] {
        let inv = pool.invoke(&bundle, r, &TestHost::default()).await;
        assert_eq!(body(&inv), want);
    }
    assert!(std::sync::Arc::ptr_eq(&first, &req.context.env));

    // A worker that keeps one bundle drops the other's environment with
    // it: the pool loads the bundle again and sends the environment too.
    let mut o = options(1, Limits::default());
    o.max_bundles = 1;
    let pool = start(o).await;
    let other = Bundle::single(
        "site/other",
        "export default () => new Response(String(Netlify.env.get('REQ')))",
    );
    for _ in 0..3 {
        assert_eq!(
            body(&pool.invoke(&bundle, &req, &TestHost::default()).await),
            "hi/r"
        );
        assert_eq!(
            body(&pool.invoke(&other, &changed, &TestHost::default()).await),
            "r2"
        );
        assert_eq!(
            body(&pool.invoke(&other, &changed, &TestHost::default()).await),
            "r2"
        );
    }
}

/// The context's site, deploy and server go to a worker beside the
/// request, and only when they are not the ones last sent for the bundle.
async fn fixed_context_reaches_the_worker() {
    let src = "export default (req, context) => new Response([context.site.url, context.deploy.context, context.server.region, context.ip].join(' '))";
    let bundle = Bundle::single("site/fixed", src);
    let req = request("https://site.example/");
    let mut preview = req.clone();
    {
        let c = preview.context_mut();
        c.ip = "198.51.100.9".into();
        let f = std::sync::Arc::make_mut(&mut c.fixed);
        f.site.url = "https://preview--site.example".into();
        f.deploy.context = "deploy-preview".into();
    }
    // The same fixed context as `req`'s, in a map of its own.
    let mut equal = req.clone();
    equal.context_mut().fixed = std::sync::Arc::new((*req.context.fixed).clone());
    let want = "https://site.example production eu-1 203.0.113.7";
    let want_preview = "https://preview--site.example deploy-preview eu-1 198.51.100.9";
    let pool = pool(1).await;
    for (r, want) in [
        (&req, want),
        (&req, want),
        (&preview, want_preview),
        (&req, want),
        (&equal, want),
        (&preview, want_preview),
    ] {
        let inv = pool.invoke(&bundle, r, &TestHost::default()).await;
        assert_eq!(body(&inv), want);
    }
    // A worker that keeps one bundle drops the other's with it: the pool
    // loads it again and sends what goes beside the request too.
    let mut o = options(1, Limits::default());
    o.max_bundles = 1;
    let pool = start(o).await;
    let other = Bundle::single("site/other", src);
    for _ in 0..3 {
        let inv = pool.invoke(&bundle, &req, &TestHost::default()).await;
        assert_eq!(body(&inv), want);
        let inv = pool.invoke(&other, &preview, &TestHost::default()).await;
        assert_eq!(body(&inv), want_preview);
    }
}

/// An invocation whose future is dropped before its function calls the
/// host: the pool answers the call with an error, so the worker finishes
/// the invocation at once (its isolate then serves the next request, which
/// sees what the first one recorded) instead of waiting for the call's
/// timeout.
async fn a_dropped_invocations_host_call_is_refused() {
    let pool = pool(1).await;
    let src = "export default async (request, context) => {
        if (globalThis.seen !== undefined) return new Response(globalThis.seen);
        await new Promise((r) => setTimeout(r, 100));
        try { await context.next(); globalThis.seen = 'answered'; }
        catch (e) { globalThis.seen = String(e.message); }
        return new Response('first');
    }";
    let bundle = Bundle::single("site/dropped", src);
    let req = request("https://site.example/");
    let host = TestHost::default();
    let first = tokio::time::timeout(Duration::from_millis(20), pool.invoke(&bundle, &req, &host));
    assert!(first.await.is_err(), "dropped while the function waits");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let inv = pool.invoke(&bundle, &req, &host).await;
    assert_eq!(
        body(&inv),
        "context.next() failed: the invocation was cancelled"
    );
}

async fn hundred_in_flight() {
    let pool = pool(2).await;
    let host = TestHost {
        delay: Some(Duration::from_millis(50)),
        ..Default::default()
    };
    let src = "export default async (request, context) => { await context.next(); return new Response(new URL(request.url).searchParams.get('i')); }";
    let bundles = [
        Bundle::single("site/a", src),
        Bundle::single("site/b", src),
        Bundle::single("site/c", src),
    ];
    let t = Instant::now();
    let runs = (0..100).map(|i| {
        let bundle = &bundles[i % 3];
        let pool = &pool;
        let host = &host;
        async move {
            let inv = pool
                .invoke(
                    bundle,
                    &request(&format!("https://site.example/?i={i}")),
                    host,
                )
                .await;
            assert_eq!(body(&inv), i.to_string());
        }
    });
    futures_util::future::join_all(runs).await;
    let took = t.elapsed();
    eprintln!("  100 invocations with a 50 ms host call each: {took:?}");
    assert!(took < Duration::from_secs(3), "they ran concurrently");
    assert_eq!(host.seen.lock().unwrap().len(), 100);
}

/// A host whose `next()` says it was entered, then waits.
struct SlowHost {
    entered: AtomicBool,
}

#[async_trait]
impl Host for SlowHost {
    async fn next(&self, _: HostRequest) -> Result<HttpResponse, HostError> {
        self.entered.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(5)).await;
        Err(HostError::new("too late"))
    }
    async fn fetch(&self, _: HostRequest) -> Result<HttpResponse, HostError> {
        Err(HostError::new("no"))
    }
}

async fn killed_worker_fails_its_invocation() {
    let pool = Arc::new(pool(1).await);
    let pid = pool.pids()[0].expect("pid");
    let host = Arc::new(SlowHost {
        entered: AtomicBool::new(false),
    });
    let bundle = Bundle::single(
        "site/slow",
        "export default async (r, context) => { await context.next(); return new Response('x'); }",
    );
    let running = {
        let (pool, host, bundle) = (Arc::clone(&pool), Arc::clone(&host), bundle.clone());
        tokio::spawn(async move {
            pool.invoke(&bundle, &request("https://site.example/"), &*host)
                .await
        })
    };
    while !host.entered.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    #[allow(unsafe_code)]
    // SAFETY: kill(2) with integer arguments; the pid is our own live child.
    let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    assert_eq!(rc, 0);
    let inv = running.await.expect("join");
    assert_eq!(
        error_kind(&inv),
        Some(ErrorKind::WorkerLost),
        "{:?}",
        inv.outcome
    );
    let inv = pool
        .invoke(
            &Bundle::single("site/hello", HELLO),
            &request("https://site.example/"),
            &TestHost::default(),
        )
        .await;
    assert_eq!(body(&inv), "Hello, world!");
    assert_eq!(pool.restarts(), 1);
    assert_ne!(pool.pids()[0], Some(pid));
}

fn cpu_limit(cpu: Duration) -> Limits {
    Limits {
        cpu_time: cpu,
        ..Limits::default()
    }
}

async fn runaway_does_not_block_others() {
    let cpu = Duration::from_millis(500);
    let pool = Arc::new(start(options(2, cpu_limit(cpu))).await);
    let spin = Bundle::single(
        "tenant-a/spin",
        "export default async (request) => { if (new URL(request.url).pathname === '/ok') return new Response('fine'); for (;;) {} }",
    );
    let hello = Bundle::single("tenant-b/hello", HELLO);
    let host = TestHost::default();
    // Warm both.
    for b in [&spin, &hello] {
        let inv = pool
            .invoke(b, &request("https://s.example/ok"), &host)
            .await;
        assert!(matches!(inv.outcome, InvocationOutcome::Response(_)));
    }
    let started = Instant::now();
    let runaway = {
        let (pool, spin) = (Arc::clone(&pool), spin.clone());
        tokio::spawn(async move {
            pool.invoke(
                &spin,
                &request("https://s.example/spin"),
                &TestHost::default(),
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut latencies = Vec::new();
    while started.elapsed() < cpu - Duration::from_millis(100) {
        let t = Instant::now();
        let inv = pool
            .invoke(&hello, &request("https://s.example/"), &host)
            .await;
        latencies.push(t.elapsed());
        assert_eq!(body(&inv), "Hello, world!");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let inv = runaway.await.expect("join");
    assert_eq!(
        error_kind(&inv),
        Some(ErrorKind::CpuLimit),
        "{:?}",
        inv.outcome
    );
    latencies.sort();
    let max = latencies[latencies.len() - 1];
    eprintln!(
        "  while a function spun for {cpu:?}: {} hello invocations, p50 {:?}, max {max:?}",
        latencies.len(),
        latencies[latencies.len() / 2]
    );
    assert!(latencies.len() >= 10);
    // Loose (the machine is shared): far below the runaway's budget.
    assert!(max < cpu / 4, "max latency {max:?}");
    let inv = pool
        .invoke(&spin, &request("https://s.example/ok"), &host)
        .await;
    assert_eq!(body(&inv), "fine");
}

/// The isolation bound of `crate::worker` (module doc): tenant A keeps 8
/// invocations that spin to their CPU limit in flight on two workers; tenant
/// B's hello invocations wait at most about one CPU limit.
/// Past `max_queued` waiting invocations of one tenant, more fail at once
/// with `Overloaded`; another tenant still gets its turn.
async fn queue_overflow_is_overloaded() {
    let cpu = Duration::from_millis(300);
    let mut o = options(
        1,
        Limits {
            cpu_time: cpu,
            ..Limits::default()
        },
    );
    o.max_queued = 2;
    let pool = Arc::new(start(o).await);
    let spin = Bundle::single("tenant-a/spin", "export default () => { for (;;) {} }");
    let hello = Bundle::single("tenant-b/hello", HELLO);
    // One spin runs (a worker to itself: the bundle is not known yet), two
    // wait, the fourth is refused at once.
    let running: Vec<_> = (0..3)
        .map(|_| {
            let (pool, spin) = (Arc::clone(&pool), spin.clone());
            tokio::spawn(async move {
                pool.invoke(&spin, &request("https://s.example/"), &TestHost::default())
                    .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = Instant::now();
    let refused = pool
        .invoke(&spin, &request("https://s.example/"), &TestHost::default())
        .await;
    assert_eq!(
        error_kind(&refused),
        Some(ErrorKind::Overloaded),
        "{:?}",
        refused.outcome
    );
    assert!(t.elapsed() < cpu / 2, "refused after {:?}", t.elapsed());
    // Another tenant's queue is its own, and a tenant with nothing waiting
    // goes first: it runs when the current spin ends, before the two queued
    // ones (which would take two more CPU limits).
    let t = Instant::now();
    let other = pool
        .invoke(&hello, &request("https://s.example/"), &TestHost::default())
        .await;
    assert_eq!(body(&other), "Hello, world!");
    assert!(
        t.elapsed() < cpu * 2,
        "the other tenant waited {:?}",
        t.elapsed()
    );
    for r in running {
        let inv = r.await.expect("join");
        assert_eq!(
            error_kind(&inv),
            Some(ErrorKind::CpuLimit),
            "{:?}",
            inv.outcome
        );
    }
}

async fn noisy_tenant_does_not_delay_quiet_one() {
    let cpu = Duration::from_millis(100);
    let pool = Arc::new(start(options(2, cpu_limit(cpu))).await);
    let spin = Bundle::single("tenant-a/spin", "export default () => { for (;;) {} }");
    let hello = Bundle::single("tenant-b/hello", HELLO);
    let host = TestHost::default();
    let inv = pool
        .invoke(&hello, &request("https://s.example/"), &host)
        .await;
    assert_eq!(body(&inv), "Hello, world!");
    let stop = Arc::new(AtomicBool::new(false));
    let noise: Vec<_> = (0..8)
        .map(|_| {
            let (pool, spin, stop) = (Arc::clone(&pool), spin.clone(), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut spins = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let inv = pool
                        .invoke(&spin, &request("https://s.example/"), &TestHost::default())
                        .await;
                    assert_eq!(
                        error_kind(&inv),
                        Some(ErrorKind::CpuLimit),
                        "{:?}",
                        inv.outcome
                    );
                    spins += 1;
                }
                spins
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let started = Instant::now();
    let mut latencies = Vec::new();
    while started.elapsed() < Duration::from_secs(3) {
        let t = Instant::now();
        let inv = pool
            .invoke(&hello, &request("https://s.example/"), &host)
            .await;
        latencies.push(t.elapsed());
        assert_eq!(body(&inv), "Hello, world!");
        tokio::time::sleep(Duration::from_millis(7)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut spins = 0;
    for n in noise {
        spins += n.await.expect("join");
    }
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    let max = latencies[latencies.len() - 1];
    eprintln!(
        "  8 clients spinning to a {cpu:?} CPU limit on 2 workers ({spins} spins): {} hello invocations, p50 {:?}, p99 {:?}, max {max:?}",
        latencies.len(),
        pct(0.5),
        pct(0.99),
    );
    assert!(latencies.len() >= 20, "{} samples", latencies.len());
    assert!(spins >= 20, "the noise ran ({spins} spins)");
    assert!(max < cpu * 5 / 2, "max latency {max:?}");
}

/// An invocation whose `Invoke` still waits in the node's write batch
/// (`send_soon`) has a worker that looks idle: no thread of it runs. It
/// must not be forgiven for that, or a second CPU-heavy invocation is
/// placed beside it while another worker is free. On a current-thread
/// runtime the batch's write waits until the test yields: the first spin
/// is claimed, the thread then blocks past `stall_after`, and the second
/// spin is placed before the write. It must go to the other worker and
/// run beside the first, not after it.
fn unsent_work_is_not_forgiven() {
    on_one_thread(async {
        let cpu = Duration::from_millis(300);
        let pool = pool_with_cpu_limit(2, cpu).await;
        let spin = Bundle::single("tenant-a/spin", "export default () => { for (;;) {} }");
        let host = TestHost::default();
        let req = request("https://s.example/");
        let timed = || {
            let (pool, spin, host, req) = (&pool, &spin, &host, &req);
            async move { pool.invoke(spin, req, host).await }
        };
        let pids: Vec<u32> = pool.pids().into_iter().flatten().collect();
        assert_eq!(pids.len(), 2, "two workers");
        let before: Vec<Duration> = pids.iter().map(|p| process_cpu(*p)).collect();
        let mut first = Box::pin(timed());
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        // Claimed and batched, not written: nothing else ran on this thread.
        assert!(first.as_mut().poll(&mut cx).is_pending());
        std::thread::sleep(Duration::from_millis(20));
        let mut second = Box::pin(timed());
        assert!(second.as_mut().poll(&mut cx).is_pending());
        let (a, b) = tokio::join!(first, second);
        assert_eq!(error_kind(&a), Some(ErrorKind::CpuLimit), "{:?}", a.outcome);
        assert_eq!(error_kind(&b), Some(ErrorKind::CpuLimit), "{:?}", b.outcome);
        // Each worker ran one spin (its CPU limit); placed together, one
        // would have run both and the other none.
        let spent: Vec<Duration> = pids
            .iter()
            .zip(&before)
            .map(|(p, b)| process_cpu(*p).saturating_sub(*b))
            .collect();
        eprintln!("  CPU time per worker: {spent:?}");
        for s in &spent {
            assert!(*s >= cpu / 2, "a worker ran no spin: {spent:?}");
        }
    });
}

/// Two invocations reach the worker in one write: a quick one, then one
/// that spins to its CPU limit (of a function whose requests were all
/// quick so far, so the node sends both to the same worker). The first
/// one's answer is written while the second still runs, not when it
/// stops.
fn an_answer_does_not_wait_for_a_long_segment() {
    on_one_thread(async {
        let cpu = Duration::from_millis(300);
        let pool = pool_with_cpu_limit(1, cpu).await;
        let f = Bundle::single(
            "tenant-a/sometimes-slow",
            "export default (req) => { if (req.url.endsWith('?spin')) { for (;;) {} } return new Response('quick'); }",
        );
        let host = TestHost::default();
        let quick = request("https://s.example/");
        let slow = request("https://s.example/?spin");
        // Known as quick: its invocations weigh little, so both go out at once.
        for _ in 0..5 {
            let inv = pool.invoke(&f, &quick, &host).await;
            assert_eq!(body(&inv), "quick");
        }
        let started = Instant::now();
        let first = async {
            let inv = pool.invoke(&f, &quick, &host).await;
            (inv, started.elapsed())
        };
        let second = async {
            let inv = pool.invoke(&f, &slow, &host).await;
            (inv, started.elapsed())
        };
        let mut first = Box::pin(first);
        let mut second = Box::pin(second);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        // Both claimed and batched before the batch's write runs.
        assert!(first.as_mut().poll(&mut cx).is_pending());
        assert!(second.as_mut().poll(&mut cx).is_pending());
        let ((a, a_took), (b, b_took)) = tokio::join!(first, second);
        assert_eq!(body(&a), "quick");
        assert_eq!(error_kind(&b), Some(ErrorKind::CpuLimit), "{:?}", b.outcome);
        eprintln!("  the quick answer after {a_took:?}, the spin's after {b_took:?}");
        assert!(b_took >= cpu, "the spin ran its limit ({b_took:?})");
        assert!(a_took < cpu / 3, "the quick answer waited {a_took:?}");
    });
}

/// Runs `f` on a current-thread runtime, where the node's batch of frames
/// is written only when the test yields.
fn on_one_thread<F: Future<Output = ()>>(f: F) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

async fn pool_with_cpu_limit(workers: usize, cpu: Duration) -> WorkerPool {
    start(options(
        workers,
        Limits {
            cpu_time: cpu,
            ..Limits::default()
        },
    ))
    .await
}

/// User + system CPU time of a process so far (`/proc/<pid>/stat`).
fn process_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("a worker's stat");
    let after = stat.rsplit_once(')').expect("a stat line").1;
    let fields: Vec<&str> = after.split_ascii_whitespace().collect();
    // utime and stime: the 14th and 15th fields, 12th and 13th after `)`.
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    #[allow(unsafe_code)]
    // SAFETY: sysconf takes a name and reads a constant of the system.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

async fn memory_bomb() {
    let pool = start(options(
        1,
        Limits {
            memory_bytes: 16 << 20,
            cpu_time: Duration::from_secs(5),
            ..Limits::default()
        },
    ))
    .await;
    let bomb = Bundle::single(
        "site/bomb",
        "export default async () => { const a = []; for (;;) a.push(new Array(10000).fill(1.5)); }",
    );
    let host = TestHost::default();
    let inv = pool
        .invoke(&bomb, &request("https://s.example/"), &host)
        .await;
    assert_eq!(
        error_kind(&inv),
        Some(ErrorKind::MemoryLimit),
        "{:?}",
        inv.outcome
    );
    let inv = pool
        .invoke(
            &Bundle::single("site/hello", HELLO),
            &request("https://s.example/"),
            &host,
        )
        .await;
    assert_eq!(body(&inv), "Hello, world!");
    assert_eq!(pool.restarts(), 0, "the worker survived");
}

/// Applies the sandbox to this process, then tries what it must not do.
fn probe() -> ExitCode {
    let report = ledge_functions::worker::sandbox::apply();
    println!("report={report:?}");
    println!("confined={}", report.confined());
    let show = |name: &str, r: Result<(), std::io::Error>| match r {
        Ok(()) => println!("{name}=allowed"),
        Err(e) => println!("{name}=refused({})", e.raw_os_error().unwrap_or(0)),
    };
    show("open", std::fs::File::open("/etc/passwd").map(drop));
    show(
        "create",
        std::fs::File::create("/tmp/ledge-sandbox-probe").map(drop),
    );
    show("tcp", std::net::TcpStream::connect("127.0.0.1:9").map(drop));
    show("udp", std::net::UdpSocket::bind("127.0.0.1:0").map(drop));
    show(
        "spawn",
        std::process::Command::new("/bin/true").status().map(drop),
    );
    let path = CString::new("/bin/true").expect("cstring");
    let argv = [path.as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null()];
    #[allow(unsafe_code)]
    // SAFETY: execve with NUL-terminated path and NULL-terminated argv/envp
    // arrays that live across the call; on success the process is replaced.
    let rc = unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    show(
        "execve",
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        },
    );
    #[allow(unsafe_code)]
    // SAFETY: fork in a single-threaded process; the child only calls _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        #[allow(unsafe_code)]
        // SAFETY: _exit ends the forked child at once.
        unsafe {
            libc::_exit(0)
        };
    }
    show(
        "fork",
        if pid > 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        },
    );
    // A thread may lower itself to SCHED_IDLE (the idle work's), and do
    // nothing else with the scheduler: not another policy, not another
    // thread's or process's.
    let policy = |pid: libc::pid_t, policy: libc::c_int| {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `param` is valid for the call, which only reads it.
        let rc = unsafe { libc::sched_setscheduler(pid, policy, &param) };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    let parent = std::os::unix::process::parent_id() as libc::pid_t;
    show("sched_other_parent", policy(parent, libc::SCHED_IDLE));
    show("sched_batch", policy(0, libc::SCHED_BATCH));
    let idle = std::thread::spawn(move || policy(0, libc::SCHED_IDLE)).join();
    println!(
        "sched_idle={}",
        if matches!(idle, Ok(Ok(()))) {
            "ok"
        } else {
            "failed"
        }
    );
    // Threads still work (the worker's runtime runs on one).
    let thread = std::thread::spawn(|| 7).join();
    println!(
        "thread={}",
        if matches!(thread, Ok(7)) {
            "ok"
        } else {
            "failed"
        }
    );
    ExitCode::SUCCESS
}

fn sandbox_refuses() {
    let out = std::process::Command::new(std::env::current_exe().expect("exe"))
        .env(PROBE_ENV, "1")
        .env_remove(WORKER_ENV)
        .output()
        .expect("probe");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{}", stdout.trim_end().replace('\n', "\n  "));
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("confined=true"), "{stdout}");
    for what in [
        "open",
        "create",
        "tcp",
        "udp",
        "spawn",
        "execve",
        "fork",
        "sched_other_parent",
        "sched_batch",
    ] {
        assert!(
            stdout.contains(&format!("{what}=refused(")),
            "{what} must be refused: {stdout}"
        );
    }
    assert!(stdout.contains("thread=ok"), "{stdout}");
    assert!(stdout.contains("sched_idle=ok"), "{stdout}");
}

async fn eviction_and_unknown_bundle() {
    let pool = pool(1).await;
    let host = TestHost::default();
    let a = Bundle::single("ev/a", HELLO);
    let req = request("https://s.example/");
    assert!(pool.invoke(&a, &req, &host).await.telemetry.cold_start);
    assert!(!pool.invoke(&a, &req, &host).await.telemetry.cold_start);
    pool.evict("ev/a");
    let inv = pool.invoke(&a, &req, &host).await;
    assert_eq!(body(&inv), "Hello, world!");
    assert!(inv.telemetry.cold_start, "evicted isolates are gone");

    // A worker that keeps one bundle answers "unknown bundle" for the other,
    // and the pool sends it again.
    let mut o = options(1, Limits::default());
    o.max_bundles = 1;
    let pool = start(o).await;
    let x = Bundle::single("ev/x", "export default () => new Response('x')");
    let y = Bundle::single("ev/y", "export default () => new Response('y')");
    for _ in 0..3 {
        assert_eq!(body(&pool.invoke(&x, &req, &host).await), "x");
        assert_eq!(body(&pool.invoke(&y, &req, &host).await), "y");
    }
}

async fn deploys_do_not_share_globals() {
    let pool = pool(1).await;
    let src = "let n = 0; export default () => { const seen = globalThis.mark ?? 'none'; globalThis.mark = 'set'; return new Response(++n + ':' + seen); }";
    let d1 = Bundle::single("deploy-1/fn", src);
    let d2 = Bundle::single("deploy-2/fn", src);
    let host = TestHost::default();
    let req = request("https://s.example/");
    assert_eq!(body(&pool.invoke(&d1, &req, &host).await), "1:none");
    assert_eq!(body(&pool.invoke(&d1, &req, &host).await), "2:set");
    assert_eq!(body(&pool.invoke(&d2, &req, &host).await), "1:none");
}

/// A worker makes a blank isolate while idle (at its start, and after each
/// cold start took the one it had), never while invocations run, and not
/// again while one is ready.
async fn blank_isolates_are_made_while_idle() {
    let mut o = options(1, Limits::default());
    o.ping_interval = Duration::from_millis(10);
    let pool = start(o).await;
    // What the worker reports a while from now (waiting up to 10 s for a
    // blank isolate to be reported ready).
    let report_later = || {
        let pool = &pool;
        async move {
            // Pings go out every 10 ms: the answer read 40 ms from now
            // reflects the worker's state after now.
            tokio::time::sleep(Duration::from_millis(40)).await;
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let report = pool.blank_isolates()[0].expect("a worker");
                if report.0 || Instant::now() > deadline {
                    return report;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    let (ready, made) = report_later().await;
    assert!(
        ready && made == 1,
        "one blank isolate at the start: {ready} {made}"
    );

    let host = TestHost::default();
    let req = request("https://s.example/");
    let mut expected = made;
    for i in 0..3 {
        let bundle = Bundle::single(
            &format!("deploy-{i}/fn"),
            "export default () => new Response('cold')",
        );
        let inv = pool.invoke(&bundle, &req, &host).await;
        assert_eq!(body(&inv), "cold");
        assert!(inv.telemetry.cold_start);
        expected += 1;
        let (ready, made) = report_later().await;
        assert!(ready && made == expected, "cold start {i}: {ready} {made}");
        // Warm invocations leave the blank one unused.
        for _ in 0..5 {
            let inv = pool.invoke(&bundle, &req, &host).await;
            assert!(!inv.telemetry.cold_start);
        }
        let (ready, made) = report_later().await;
        assert!(ready && made == expected, "warm after {i}: {ready} {made}");
    }
}

/// Workers that misbehave: `garbage` writes a malformed frame, `silent`
/// reads and never answers.
fn fake_worker(kind: &str) -> ExitCode {
    use std::io::{Read, Write};
    use std::os::fd::FromRawFd;
    #[allow(unsafe_code)]
    // SAFETY: fd 0 is the pool's socket, used by nothing else here.
    let mut sock = unsafe { std::fs::File::from_raw_fd(0) };
    if kind == "garbage" {
        let _ = sock.write_all(&[5, 0, 0, 0, 250, 251, 252, 253, 254]);
    }
    let mut buf = [0u8; 4096];
    while let Ok(n) = sock.read(&mut buf) {
        if n == 0 {
            break;
        }
    }
    ExitCode::SUCCESS
}

fn fake(kind: &str, limits: Limits) -> WorkerOptions {
    let mut o = options(1, limits);
    o.envs = vec![(FAKE_ENV.into(), kind.into())];
    o.spawn_wait = Duration::from_millis(100);
    o
}

/// Invokes a hello function on `pool`, whose fake worker misbehaves, and
/// checks the invocation fails with `WorkerLost`.
async fn hello_is_lost(pool: &WorkerPool) -> Invocation {
    let inv = pool
        .invoke(
            &Bundle::single("s/h", HELLO),
            &request("https://s.example/"),
            &TestHost::default(),
        )
        .await;
    assert_eq!(
        error_kind(&inv),
        Some(ErrorKind::WorkerLost),
        "{:?}",
        inv.outcome
    );
    inv
}

async fn malformed_frame_kills_the_worker() {
    let pool = WorkerPool::start(fake("garbage", Limits::default())).expect("pool");
    hello_is_lost(&pool).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(pool.restarts() >= 1);
}

async fn hung_worker_is_killed() {
    let mut o = fake(
        "silent",
        Limits {
            wall_time: Duration::from_millis(300),
            ..Limits::default()
        },
    );
    o.hang_grace = Duration::from_millis(200);
    let pool = WorkerPool::start(o).expect("pool");
    let t = Instant::now();
    let inv = hello_is_lost(&pool).await;
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(3),
        "{took:?}"
    );
    let message = match &inv.outcome {
        InvocationOutcome::Error(e) => e.message.clone(),
        _ => String::new(),
    };
    assert!(message.contains("hung"), "{message}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(pool.restarts() >= 1, "a fresh worker replaced it");
}

/// Bodies larger than the socket buffer: the node's non-blocking write hands
/// the rest to the writer thread; the worker's reader and writer loop.
async fn large_bodies_both_ways() {
    let pool = start(options(
        2,
        Limits {
            cpu_time: Duration::from_secs(5),
            ..Limits::default()
        },
    ))
    .await;
    let src = r#"export default async (request, context) => {
        const mine = new Uint8Array(await request.arrayBuffer());
        const next = new Uint8Array(await (await context.next({ method: 'POST', body: mine })).arrayBuffer());
        let sum = 0;
        for (const b of mine) sum = (sum + b) % 65521;
        return new Response(mine, { headers: { 'x-len': String(mine.length), 'x-next': String(next.length), 'x-sum': String(sum) } });
    }"#;
    let bundle = Bundle::single("site/big", src);
    let host = TestHost::default();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut req = request("https://site.example/");
    req.method = "POST".into();
    req.body = big.clone();
    let runs = (0..4).map(|_| pool.invoke(&bundle, &req, &host));
    for inv in futures_util::future::join_all(runs).await {
        let r = response(&inv);
        assert_eq!(r.header("x-len"), Some("3000000"));
        // The echo host answers "next POST <url> body=<3 MB>".
        assert!(
            r.header("x-next")
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(0)
                > 3_000_000
        );
        assert!(r.body == big, "the body came back intact");
    }
}
