mod common;
use std::sync::Arc;

use common::*;
use ledge_functions::*;

#[tokio::test]
async fn hello() {
    let e = engine();
    let inv = run(
        &e,
        "export default async () => new Response('hello')",
        &request("https://site.example/"),
    )
    .await;
    assert_eq!(body(&inv), "hello");
    assert_eq!(
        response(&inv).header("content-type"),
        Some("text/plain;charset=UTF-8")
    );
    assert!(inv.telemetry.cold_start);
    let inv = run(
        &e,
        "export default async () => new Response('hello')",
        &request("https://site.example/"),
    )
    .await;
    assert!(!inv.telemetry.cold_start);
    assert_eq!(e.idle_isolates(), 1);
}

/// A text body reaches Rust as text; one with lone surrogates is made
/// well-formed first (each becomes U+FFFD), as its bytes would be.
#[tokio::test]
async fn text_bodies_are_sent_as_utf8() {
    let e = engine();
    for (src, want) in [
        (
            "new Response('caf\\u00e9 \\u{1F600}')",
            "caf\u{e9} \u{1F600}".as_bytes().to_vec(),
        ),
        (
            "new Response('a\\ud800b\\udc00')",
            vec![b'a', 0xEF, 0xBF, 0xBD, b'b', 0xEF, 0xBF, 0xBD],
        ),
        ("new Response('')", Vec::new()),
        (
            "Response.json({ s: '\\ud83d' })",
            br#"{"s":"\ud83d"}"#.to_vec(),
        ),
    ] {
        let inv = run(
            &e,
            &format!("export default () => {src}"),
            &request("https://site.example/"),
        )
        .await;
        assert_eq!(response(&inv).body, want, "{src}");
    }
}

/// A returned `Response` made in Rust (quick.rs) reaches the outcome
/// without the glue; one the glue made goes through it. Both must send the
/// same status, headers (with the cookies set) and body, and a quick one
/// that JavaScript changed must send the change.
#[tokio::test]
async fn quick_responses_answer_like_the_glue() {
    let e = engine();
    let cases = [
        (
            "'hi'",
            "{ status: 201, headers: H({ 'X-A': ' 1 ', 'content-type': 'text/html' }) }",
        ),
        ("'hi'", "{ headers: H({ b: '2', a: '1' }) }"),
        ("null", "{ status: 204, headers: H({ a: '1' }) }"),
        ("undefined", "undefined"),
        ("''", "{ headers: H({}) }"),
        ("'caf\\u00e9'", "{ headers: H({ latin: 'caf\\u00e9' }) }"),
    ];
    for (body, init) in cases {
        let mut sent = Vec::new();
        // `H` gives the headers as a record (the quick path) or as pairs
        // (which only the glue reads).
        for h in ["(h) => h", "(h) => Object.entries(h)"] {
            let src = format!(
                "const H = {h};
                 export default (req, context) => {{
                   context.cookies.set({{ name: 'k', value: 'v' }});
                   return new Response({body}, {init});
                 }}"
            );
            let inv = run(&e, &src, &request("https://site.example/")).await;
            let r = response(&inv);
            sent.push((r.status, r.headers.clone(), r.body.clone()));
        }
        assert_eq!(sent[0], sent[1], "new Response({body}, {init})");
        assert!(
            sent[0]
                .1
                .iter()
                .any(|(k, v)| k == "set-cookie" && v.starts_with("k=v")),
            "{:?}",
            sent[0].1
        );
    }

    let inv = run(
        &e,
        "export default async () => {
           const r = new Response('body', { status: 202, headers: { a: '1' } });
           r.headers.set('b', '2');
           return r;
         }",
        &request("https://site.example/"),
    )
    .await;
    let r = response(&inv);
    assert_eq!(r.status, 202);
    assert_eq!(r.body, b"body");
    let names: Vec<&str> = r.headers.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["a", "content-type", "b"], "{:?}", r.headers);

    // Read, then returned: the body was used, which cannot be sent.
    let inv = run(
        &e,
        "export default async () => { const r = new Response('x'); await r.text(); return r; }",
        &request("https://site.example/"),
    )
    .await;
    assert_eq!(error_kind(&inv), Some(ErrorKind::InvalidReturn));
}

#[tokio::test]
async fn eval_helper() {
    assert_eq!(eval("return 1 + 1").await, "2");
}

fn assert_send<T: Send>(t: T) -> T {
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invocations_run_concurrently_on_a_multi_thread_runtime() {
    let engine = Arc::new(engine());
    let bundle = Bundle::single("conc", "let n = 0; export default async () => { await new Promise(r => setTimeout(r, 20)); return new Response(String(++n)); }");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let engine = Arc::clone(&engine);
        let bundle = bundle.clone();
        // The invoke future is Send, so it can be spawned.
        tasks.push(tokio::spawn(assert_send(async move {
            engine
                .invoke(
                    &bundle,
                    &request("https://s.example/"),
                    &TestHost::default(),
                )
                .await
        })));
    }
    let started = std::time::Instant::now();
    let mut cold = 0;
    for t in tasks {
        let inv = t.await.unwrap();
        assert_eq!(
            body(&inv),
            "1",
            "each concurrent request had its own isolate"
        );
        cold += usize::from(inv.telemetry.cold_start);
    }
    assert_eq!(cold, 8);
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    assert_eq!(engine.idle_isolates(), 8);
}

#[tokio::test]
async fn catastrophic_regex_hits_cpu_limit() {
    let inv = run(
        &engine(),
        "export default () => new Response(String(/^(a+)+$/.test('a'.repeat(40) + 'b')))",
        &request("https://s.example/"),
    )
    .await;
    assert_eq!(error_kind(&inv), Some(ErrorKind::CpuLimit));
}

/// A handler that answers at once settles without a promise; what it queued
/// still runs within the invocation, and its outcomes are those of the
/// async form.
#[tokio::test]
async fn synchronous_handlers() {
    let e = engine();
    let req = request("https://site.example/a");
    // A Response, with a microtask that logs and sets a cookie.
    let inv = run(
        &e,
        "export default (req, ctx) => {
           queueMicrotask(() => console.log('after'));
           ctx.cookies.set('k', 'v');
           return new Response('now', { status: 201 });
         }",
        &req,
    )
    .await;
    assert_eq!(response(&inv).status, 201);
    assert_eq!(body(&inv), "now");
    assert_eq!(console(&inv), ["after"]);
    assert_eq!(response(&inv).header("set-cookie"), Some("k=v"));
    // Nothing: pass through.
    let inv = run(&e, "export default () => {}", &req).await;
    assert!(matches!(inv.outcome, InvocationOutcome::PassThrough));
    // A URL: a rewrite.
    let inv = run(&e, "export default (req) => new URL('/b', req.url)", &req).await;
    match &inv.outcome {
        InvocationOutcome::Rewrite { url } => assert_eq!(url, "https://site.example/b"),
        other => panic!("{other:?}"),
    }
    // A throw: uncaught, as a rejected promise would be.
    let inv = run(&e, "export default () => { throw new Error('boom') }", &req).await;
    assert_eq!(error_kind(&inv), Some(ErrorKind::Uncaught));
    assert!(format!("{:?}", inv.outcome).contains("boom"));
    // Anything else is still an invalid return value.
    let inv = run(&e, "export default () => 42", &req).await;
    assert_eq!(error_kind(&inv), Some(ErrorKind::InvalidReturn));
    // Async handlers: settled at return, or after awaiting, or rejected.
    let inv = run(
        &e,
        "export default async () => new Response('at once')",
        &req,
    )
    .await;
    assert_eq!(body(&inv), "at once");
    let inv = run(&e, "export default async () => {}", &req).await;
    assert!(matches!(inv.outcome, InvocationOutcome::PassThrough));
    let inv = run(
        &e,
        "export default async () => { await null; return new Response('awaited') }",
        &req,
    )
    .await;
    assert_eq!(body(&inv), "awaited");
    let inv = run(
        &e,
        "export default async () => { throw new Error('late') }",
        &req,
    )
    .await;
    assert_eq!(error_kind(&inv), Some(ErrorKind::Uncaught));
    assert!(
        console(&inv).is_empty(),
        "a rejection the runtime handled is not logged: {:?}",
        console(&inv)
    );
    let inv = run(&e, "export default async () => 42", &req).await;
    assert_eq!(error_kind(&inv), Some(ErrorKind::InvalidReturn));
    // A thenable that is not a promise is awaited.
    let inv = run(
        &e,
        "export default () => ({ then(ok) { ok(new Response('later')) } })",
        &req,
    )
    .await;
    assert_eq!(body(&inv), "later");
}

/// `idle_work` makes a blank isolate; the next cold start evaluates its
/// bundle in it, with the deploy's env at module top level, and a later
/// bundle's blank one never sees what an earlier bundle left in its globals.
#[tokio::test]
async fn blank_isolates_serve_cold_starts() {
    let e = engine();
    assert!(!e.has_spare() && e.evicted_isolates() == 0);
    while e.idle_work() {}
    assert!(e.has_spare() && e.evicted_isolates() == 0);

    let mut env = std::collections::BTreeMap::new();
    env.insert("K".to_string(), "deploy-a".to_string());
    let a = Bundle::single(
        "site-a",
        "globalThis.mark = 'a'; const k = Netlify.env.get('K'); \
         export default () => new Response(`${k} ${globalThis.mark}`); \
         export const config = { path: '/a' };",
    )
    .with_env(env);
    let req = request("https://site.example/");
    let inv = e.invoke(&a, &req, &TestHost::default()).await;
    assert!(inv.telemetry.cold_start);
    assert_eq!(body(&inv), "deploy-a a");
    assert!(!e.has_spare());

    // The warm isolate is reused; the next bundle gets a new blank one.
    let inv = e.invoke(&a, &req, &TestHost::default()).await;
    assert!(!inv.telemetry.cold_start);
    while e.idle_work() {}
    assert!(e.has_spare());
    let b = Bundle::single(
        "site-b",
        "const seen = typeof globalThis.mark; \
         export default () => new Response(`${seen} ${typeof globalThis.mark} ${Netlify.env.get('K')}`);",
    );
    let inv = e.invoke(&b, &req, &TestHost::default()).await;
    assert!(inv.telemetry.cold_start);
    assert_eq!(body(&inv), "undefined undefined undefined");

    // `config` is read the same way from a blank isolate.
    while e.idle_work() {}
    let c = Bundle::single(
        "site-c",
        "export default () => {}; export const config = { path: '/c' };",
    );
    let config = e.config(&c).expect("config").expect("an inline config");
    assert_eq!(config.path, vec!["/c".to_string()]);
    assert!(!e.has_spare());
}

/// A bundle that fails in a blank isolate fails as it would in a new one,
/// and the blank isolate is not used again.
#[tokio::test]
async fn failing_modules_in_blank_isolates() {
    let e = engine();
    let req = request("https://site.example/");
    for (src, kind) in [
        (
            "throw new Error('at load'); export default () => {}",
            ErrorKind::Module,
        ),
        ("export default () => {", ErrorKind::Module),
        ("export const x = 1;", ErrorKind::NoHandler),
        ("for (;;) {} export default () => {}", ErrorKind::CpuLimit),
    ] {
        while e.idle_work() {}
        assert!(e.has_spare());
        let bundle = Bundle::single("bad", src);
        let inv = e.invoke(&bundle, &req, &TestHost::default()).await;
        match &inv.outcome {
            InvocationOutcome::Error(err) => assert_eq!(err.kind, kind, "{src}"),
            o => panic!("{src}: {o:?}"),
        }
        assert!(!e.has_spare(), "{src}");
        assert_eq!(e.idle_isolates(), 0, "{src}");
    }
    while e.idle_work() {}
    let ok = run(&e, "export default () => new Response('fine')", &req).await;
    assert_eq!(body(&ok), "fine");
}

/// Once an embedder does idle work, evicted isolates wait for it to be
/// dropped, at most eight of them: past that an eviction drops its isolate
/// at once. Before, every eviction drops at once.
#[tokio::test]
async fn evicted_isolates_wait_for_idle_work() {
    let e = Engine::new(Limits {
        max_isolates: 1,
        ..Limits::default()
    });
    let req = request("https://site.example/");
    for i in 0..3 {
        let b = Bundle::single(&format!("a{i}"), "export default () => new Response('x')");
        assert_eq!(body(&e.invoke(&b, &req, &TestHost::default()).await), "x");
    }
    assert_eq!(e.idle_isolates(), 1);
    assert_eq!(e.evicted_isolates(), 0);
    assert!(!e.has_spare());

    while e.idle_work() {}
    for i in 0..3 {
        let b = Bundle::single(&format!("b{i}"), "export default () => new Response('x')");
        assert_eq!(body(&e.invoke(&b, &req, &TestHost::default()).await), "x");
    }
    // The a-bundle's isolate left over, and b0's and b1's.
    assert_eq!(e.idle_isolates(), 1);
    assert_eq!(e.evicted_isolates(), 3);
    assert!(e.idle_work());
    assert_eq!(e.evicted_isolates(), 2);
    e.drop_evicted();
    assert_eq!(e.evicted_isolates(), 0);

    for i in 0..20 {
        let b = Bundle::single(&format!("c{i}"), "export default () => new Response('x')");
        assert_eq!(body(&e.invoke(&b, &req, &TestHost::default()).await), "x");
        assert!(e.evicted_isolates() <= 8);
    }
    assert_eq!(e.evicted_isolates(), 8);
    while e.idle_work() {}
    assert_eq!(e.evicted_isolates(), 0);
    assert!(e.has_spare());

    // Nor do they hold more than 16 MiB of engine memory together: an
    // isolate holding 20 MiB is dropped when it is evicted.
    let big = Bundle::single(
        "big",
        "const keep = new Uint8Array(20 << 20); export default () => new Response(String(keep.length))",
    );
    assert_eq!(
        body(&e.invoke(&big, &req, &TestHost::default()).await),
        (20 << 20).to_string()
    );
    // (The isolate `big` evicted was small: kept.)
    assert_eq!(e.evicted_isolates(), 1);
    e.drop_evicted();
    let small = Bundle::single("small", "export default () => new Response('x')");
    assert_eq!(
        body(&e.invoke(&small, &req, &TestHost::default()).await),
        "x"
    );
    assert_eq!(e.idle_isolates(), 1);
    assert_eq!(e.evicted_isolates(), 0);
    // A small one evicted in turn is kept for idle work.
    assert_eq!(
        body(&e.invoke(&big, &req, &TestHost::default()).await),
        (20 << 20).to_string()
    );
    assert_eq!(e.evicted_isolates(), 1);
}
