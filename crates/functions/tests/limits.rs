//! Runaway functions are stopped with the right error kind, the isolate is
//! thrown away, and the next invocation runs on a fresh one.

mod common;
use std::time::Duration;

use common::*;
use ledge_functions::*;

const OK: &str = "if (new URL(request.url).pathname === '/ok') return new Response('fine');";

fn src(bad: &str) -> String {
    format!("let calls = 0; export default async (request) => {{ calls++; {OK} {bad} }}")
}

async fn stopped_then_fresh(engine: &Engine, bad: &str, kind: ErrorKind) {
    let bundle = Bundle::single("limits", &src(bad));
    let host = TestHost::default();
    // Warm the isolate first so the failure happens on a reused one.
    let inv = engine
        .invoke(&bundle, &request("https://s.example/ok"), &host)
        .await;
    assert_eq!(body(&inv), "fine");
    assert_eq!(engine.idle_isolates(), 1);

    let inv = engine
        .invoke(&bundle, &request("https://s.example/bad"), &host)
        .await;
    assert_eq!(error_kind(&inv), Some(kind), "outcome: {:?}", inv.outcome);
    assert_eq!(
        engine.idle_isolates(),
        0,
        "an isolate that hit a limit is not kept"
    );

    let inv = engine
        .invoke(&bundle, &request("https://s.example/ok"), &host)
        .await;
    assert_eq!(body(&inv), "fine");
    assert!(
        inv.telemetry.cold_start,
        "the next invocation gets a fresh isolate"
    );
}

#[tokio::test]
async fn infinite_loop_hits_cpu_limit() {
    let e = engine();
    stopped_then_fresh(&e, "for (;;) {}", ErrorKind::CpuLimit).await;
}

#[tokio::test]
async fn loop_with_try_catch_cannot_swallow_the_interrupt() {
    let e = engine();
    stopped_then_fresh(
        &e,
        "for (;;) { try { for (;;) {} } catch (e) {} }",
        ErrorKind::CpuLimit,
    )
    .await;
}

#[tokio::test]
async fn cpu_limit_counts_time_across_awaits() {
    let e = engine();
    let bad = "for (let i = 0; i < 1000; i++) { const t = Date.now(); while (Date.now() - t < 5) {} await null; } return new Response('x');";
    stopped_then_fresh(&e, bad, ErrorKind::CpuLimit).await;
}

#[tokio::test]
async fn memory_bomb_hits_memory_limit() {
    let e = Engine::new(Limits {
        memory_bytes: 16 << 20,
        cpu_time: Duration::from_secs(5),
        ..Limits::default()
    });
    stopped_then_fresh(
        &e,
        "const a = []; for (;;) a.push(new Array(10000).fill(1.5));",
        ErrorKind::MemoryLimit,
    )
    .await;
}

/// Cyclic garbage is collected in tenant code: a blank isolate is built
/// with cycle collection off, and its threshold must be back before any
/// tenant code runs. Four times the memory limit of pairs that refer to
/// each other, each dropped at once: without collections it hits the limit.
#[tokio::test]
async fn cyclic_garbage_is_collected() {
    let e = Engine::new(Limits {
        memory_bytes: 16 << 20,
        cpu_time: Duration::from_secs(5),
        ..Limits::default()
    });
    let inv = run(
        &e,
        "export default () => { \
           for (let i = 0; i < 64 * 1024; i++) { const a = { buf: new Uint8Array(1024) }; a.self = { a }; } \
           return new Response('collected'); }",
        &request("https://s.example/"),
    )
    .await;
    assert_eq!(body(&inv), "collected", "outcome: {:?}", inv.outcome);
}

#[tokio::test]
async fn string_memory_bomb_hits_memory_limit() {
    let e = Engine::new(Limits {
        memory_bytes: 16 << 20,
        cpu_time: Duration::from_secs(5),
        ..Limits::default()
    });
    stopped_then_fresh(
        &e,
        "const a = []; for (let i = 0; ; i++) a.push('x'.repeat(1 << 16) + i);",
        ErrorKind::MemoryLimit,
    )
    .await;
}

/// A quick `Response` keeps its text in Rust, which the engine's allocator
/// does not see: it is counted in the isolate's budget all the same.
#[tokio::test]
async fn quick_response_memory_bomb_hits_memory_limit() {
    let e = Engine::new(Limits {
        memory_bytes: 16 << 20,
        cpu_time: Duration::from_secs(1),
        ..Limits::default()
    });
    stopped_then_fresh(
        &e,
        "const a = []; for (let i = 0; ; i++) a.push(new Response('x'.repeat(1 << 16) + i, { headers: { a: 'b' } }));",
        ErrorKind::MemoryLimit,
    )
    .await;
}

/// The invocation's request and context keep their fields in Rust until
/// JavaScript reads them: a function that keeps every request in a global
/// fills its budget all the same, and its isolate is replaced (the global
/// starts again) long before 200 requests of 256 KiB.
#[tokio::test]
async fn kept_requests_count_against_the_memory_limit() {
    let e = Engine::new(Limits {
        memory_bytes: 16 << 20,
        ..Limits::default()
    });
    let bundle = Bundle::single(
        "keep",
        "const kept = []; export default (req, context) => { kept.push([req, context]); return new Response(String(kept.length)); }",
    );
    let host = TestHost::default();
    let mut req = request("https://s.example/upload");
    req.method = "POST".into();
    req.body = vec![b'x'; 256 << 10];
    let mut replaced_at = None;
    for i in 1..=200usize {
        let inv = e.invoke(&bundle, &req, &host).await;
        match error_kind(&inv) {
            Some(kind) => assert_eq!(kind, ErrorKind::MemoryLimit, "invocation {i}"),
            None if body(&inv) == i.to_string() => continue,
            None => assert_eq!(body(&inv), "1", "invocation {i}"),
        }
        replaced_at = Some(i);
        break;
    }
    let at = replaced_at.expect("200 kept requests of 256 KiB stayed in one 16 MiB isolate");
    assert!(at <= 64, "replaced only at invocation {at}");
}

#[tokio::test]
async fn buffer_memory_bomb_hits_memory_limit() {
    let e = Engine::new(Limits {
        memory_bytes: 16 << 20,
        cpu_time: Duration::from_secs(5),
        ..Limits::default()
    });
    stopped_then_fresh(
        &e,
        "const a = []; for (;;) a.push(new Uint8Array(1 << 20));",
        ErrorKind::MemoryLimit,
    )
    .await;
}

#[tokio::test]
async fn caught_memory_error_still_discards_the_isolate() {
    let e = Engine::new(Limits {
        memory_bytes: 16 << 20,
        cpu_time: Duration::from_secs(5),
        ..Limits::default()
    });
    let bundle = Bundle::single("oom-caught", "const keep = []; export default () => { try { for (;;) keep.push(new Uint8Array(1 << 20)); } catch (e) { return new Response(String(e)); } }");
    let inv = e
        .invoke(
            &bundle,
            &request("https://s.example/"),
            &TestHost::default(),
        )
        .await;
    assert!(body(&inv).contains("out of memory"), "{}", body(&inv));
    assert_eq!(
        e.idle_isolates(),
        0,
        "an isolate that had an allocation refused is dropped"
    );
}

#[tokio::test]
async fn deep_recursion_hits_stack_limit() {
    let e = engine();
    stopped_then_fresh(
        &e,
        "const f = (n) => f(n + 1) + 1; f(0);",
        ErrorKind::StackOverflow,
    )
    .await;
}

#[tokio::test]
async fn promise_flood_hits_cpu_limit() {
    let e = engine();
    stopped_then_fresh(
        &e,
        "const f = () => Promise.resolve().then(f); f(); await new Promise(() => {});",
        ErrorKind::CpuLimit,
    )
    .await;
}

#[tokio::test]
async fn promise_flood_after_the_response_is_a_late_cpu_limit() {
    let e = engine();
    let inv = run(&e, "export default () => { const f = () => { Promise.resolve().then(f); Promise.resolve().then(f); }; f(); return new Response('x'); }", &request("https://s.example/")).await;
    assert_eq!(body(&inv), "x");
    assert_eq!(
        inv.telemetry.late_error.as_ref().map(|e| e.kind),
        Some(ErrorKind::CpuLimit)
    );
    assert_eq!(e.idle_isolates(), 0);
}

#[tokio::test]
async fn timer_flood_is_bounded() {
    let e = engine();
    stopped_then_fresh(&e, "const f = () => { setTimeout(f, 0); setTimeout(f, 0); }; f(); await new Promise(() => {});", ErrorKind::CpuLimit).await;
}

#[tokio::test]
async fn never_settling_promise_is_no_response() {
    let e = engine();
    let inv = run(
        &e,
        "export default () => new Promise(() => {})",
        &request("https://s.example/"),
    )
    .await;
    assert_eq!(error_kind(&inv), Some(ErrorKind::NoResponse));
}

#[tokio::test]
async fn long_timer_hits_wall_limit() {
    let e = Engine::new(Limits {
        wall_time: Duration::from_millis(200),
        ..Limits::default()
    });
    let inv = run(&e, "export default async () => { await new Promise(r => setTimeout(r, 60000)); return new Response('late'); }", &request("https://s.example/")).await;
    assert_eq!(error_kind(&inv), Some(ErrorKind::WallTimeout));
    assert!(inv.telemetry.duration < Duration::from_secs(5));
    assert_eq!(e.idle_isolates(), 0);
}

#[tokio::test]
async fn slow_host_call_times_out() {
    let e = Engine::new(Limits {
        host_call_timeout: Duration::from_millis(100),
        ..Limits::default()
    });
    let host = TestHost {
        delay: Some(Duration::from_secs(30)),
        ..Default::default()
    };
    let bundle = Bundle::single("slow", "export default async (req, ctx) => { try { await ctx.next(); return new Response('no'); } catch (e) { return new Response(e.message, { status: 504 }); } }");
    let inv = e
        .invoke(&bundle, &request("https://s.example/"), &host)
        .await;
    assert_eq!(response(&inv).status, 504);
    assert!(body(&inv).contains("timed out"), "{}", body(&inv));
    assert!(inv.telemetry.duration < Duration::from_secs(5));
}

#[tokio::test]
async fn cpu_limit_in_module_evaluation() {
    let e = engine();
    let inv = run(
        &e,
        "for (;;) {} export default () => {}",
        &request("https://s.example/"),
    )
    .await;
    assert_eq!(error_kind(&inv), Some(ErrorKind::CpuLimit));
}

#[tokio::test]
async fn cpu_limit_in_wait_until_is_reported_late() {
    let e = engine();
    let inv = run(&e, "export default async (r, ctx) => { ctx.waitUntil((async () => { await new Promise(r => setTimeout(r, 1)); for (;;) {} })()); return new Response('ok'); }", &request("https://s.example/")).await;
    assert_eq!(body(&inv), "ok");
    assert_eq!(
        inv.telemetry.late_error.as_ref().map(|e| e.kind),
        Some(ErrorKind::CpuLimit)
    );
    assert_eq!(e.idle_isolates(), 0);
}

#[tokio::test]
async fn too_many_host_calls_are_refused() {
    let e = Engine::new(Limits {
        max_host_calls: 3,
        ..Limits::default()
    });
    let inv = run(&e, "export default async () => { let ok = 0, failed = 0; for (let i = 0; i < 5; i++) { try { await fetch('https://o.example/' + i); ok++; } catch (e) { failed++; } } return new Response(ok + ' ' + failed); }", &request("https://s.example/")).await;
    assert_eq!(body(&inv), "3 2");
}

#[tokio::test]
async fn console_is_capped() {
    let e = Engine::new(Limits {
        max_console_lines: 5,
        max_console_line_bytes: 10,
        ..Limits::default()
    });
    let inv = run(&e, "export default () => { for (let i = 0; i < 100; i++) console.log('line', i, 'x'.repeat(100)); return new Response('ok'); }", &request("https://s.example/")).await;
    assert_eq!(inv.telemetry.console.len(), 5);
    assert_eq!(inv.telemetry.console_dropped, 95);
    assert!(inv.telemetry.console[0].message.len() <= 13);
}

#[tokio::test]
async fn host_call_bodies_are_bounded() {
    let e = Engine::new(Limits {
        max_host_body_bytes: 1000,
        ..Limits::default()
    });
    let inv = run(&e, "export default async () => { try { await fetch('https://o.example/', { method: 'POST', body: 'x'.repeat(1001) }); return new Response('sent'); } catch (e) { return new Response(e.message); } }", &request("https://s.example/")).await;
    assert!(body(&inv).contains("too large"), "{}", body(&inv));
    let inv = run(&e, "export default async () => { const r = await fetch('https://o.example/', { method: 'POST', body: 'x'.repeat(1000) }); return new Response(String(r.status)); }", &request("https://s.example/")).await;
    assert_eq!(body(&inv), "200");
}

#[tokio::test]
async fn tampering_with_builtins_only_breaks_the_tenants_own_isolate() {
    let e = engine();
    let sources = [
        "export default () => { JSON.parse = () => { throw new Error('no'); }; return new Response('x'); }",
        "export default () => { Promise.prototype.then = function () { return this; }; return new Response('x'); }",
        "export default () => { Object.keys = null; WeakMap.prototype.get = () => undefined; return new Response('x'); }",
        "export default () => { globalThis.Response = class { constructor() { return { status: 'x' }; } }; return new Response('x'); }",
        "export default () => { Array.prototype.push = () => { throw 1; }; return new Response('x', { headers: { a: 'b' } }); }",
        "Object.defineProperty(globalThis, 'Netlify', { get() { throw new Error('hostile'); } }); export default () => new Response(String(Netlify))",
    ];
    for (i, src) in sources.iter().enumerate() {
        let bundle = Bundle::single(&format!("tamper{i}"), src);
        for _ in 0..3 {
            let inv = e
                .invoke(
                    &bundle,
                    &request("https://s.example/"),
                    &TestHost::default(),
                )
                .await;
            // Any outcome is fine; the process must not panic or hang.
            let _ = inv.outcome;
        }
    }
    // An unrelated deploy on the same engine is unaffected.
    let inv = run(
        &e,
        "export default () => Response.json({ ok: JSON.stringify([1]) })",
        &request("https://s.example/"),
    )
    .await;
    assert_eq!(body(&inv), r#"{"ok":"[1]"}"#);
}

#[tokio::test]
async fn dropping_an_invocation_midway_drops_its_isolate() {
    let e = engine();
    let host = TestHost {
        delay: Some(Duration::from_secs(30)),
        ..Default::default()
    };
    let bundle = Bundle::single("cancel", "export default async (r, ctx) => { if (r.url.endsWith('/slow')) return ctx.next(); return new Response('fast'); }");
    let warm = e
        .invoke(&bundle, &request("https://s.example/fast"), &host)
        .await;
    assert_eq!(body(&warm), "fast");
    let slow = tokio::time::timeout(
        Duration::from_millis(50),
        e.invoke(&bundle, &request("https://s.example/slow"), &host),
    )
    .await;
    assert!(slow.is_err(), "the caller gave up");
    assert_eq!(
        e.idle_isolates(),
        0,
        "the isolate of the abandoned invocation is gone"
    );
    let inv = e
        .invoke(&bundle, &request("https://s.example/fast"), &host)
        .await;
    assert_eq!(body(&inv), "fast");
}

/// Isolates made from blank ones that another thread made (as the worker's
/// idle thread does) keep every limit: the stack's is measured from the
/// thread that runs them, and the CPU clock is that thread's.
#[tokio::test]
async fn limits_hold_in_isolates_made_on_another_thread() {
    let e = std::sync::Arc::new(Engine::new(Limits {
        memory_bytes: 16 << 20,
        cpu_time: Duration::from_millis(200),
        ..Limits::default()
    }));
    let prepare = |e: &std::sync::Arc<Engine>| {
        let other = std::sync::Arc::clone(e);
        std::thread::spawn(move || while other.idle_work() {})
            .join()
            .expect("idle work");
        assert!(e.has_spare());
    };
    let host = TestHost::default();
    let req = request("https://s.example/");
    for (i, (bad, kind)) in [
        (
            "const f = (n) => f(n + 1) + 1; f(0);",
            ErrorKind::StackOverflow,
        ),
        ("for (;;) {}", ErrorKind::CpuLimit),
        (
            "const a = []; for (;;) a.push(new Array(10000).fill(1.5));",
            ErrorKind::MemoryLimit,
        ),
    ]
    .into_iter()
    .enumerate()
    {
        prepare(&e);
        let bundle = Bundle::single(&format!("far-{i}"), &src(bad));
        let inv = e.invoke(&bundle, &req, &host).await;
        assert!(inv.telemetry.cold_start);
        assert_eq!(error_kind(&inv), Some(kind), "{bad}: {:?}", inv.outcome);
        // The same at module top level, where the blank isolate is adopted.
        prepare(&e);
        let top = Bundle::single(
            &format!("far-top-{i}"),
            &format!("{bad} export default () => {{}}"),
        );
        let inv = e.invoke(&top, &req, &host).await;
        assert_eq!(
            error_kind(&inv),
            Some(kind),
            "top level {bad}: {:?}",
            inv.outcome
        );
    }
    prepare(&e);
    let ok = Bundle::single("far-ok", "export default () => new Response('fine')");
    assert_eq!(body(&e.invoke(&ok, &req, &host).await), "fine");
}
