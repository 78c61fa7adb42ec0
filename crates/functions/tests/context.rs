//! The Netlify edge function API: outcomes, context, next(), cookies, env,
//! module loading, config extraction and isolation between deploys.

mod common;
use std::collections::BTreeMap;

use common::*;
use ledge_functions::*;

#[tokio::test]
async fn response_outcome_keeps_status_headers_and_body() {
    let inv = run(&engine(), "export default () => new Response('made', { status: 201, headers: { 'x-a': '1', 'Set-Cookie': 'z=1' } })", &request("https://s.example/")).await;
    let r = response(&inv);
    assert_eq!(r.status, 201);
    assert_eq!(r.header("x-a"), Some("1"));
    assert_eq!(r.header("set-cookie"), Some("z=1"));
    assert_eq!(body(&inv), "made");
}

#[tokio::test]
async fn url_outcome_is_a_rewrite() {
    let inv = run(
        &engine(),
        "export default (req) => new URL('/b?x=1', req.url)",
        &request("https://s.example/a"),
    )
    .await;
    assert_eq!(
        inv.outcome,
        InvocationOutcome::Rewrite {
            url: "https://s.example/b?x=1".into()
        }
    );
}

#[tokio::test]
async fn undefined_outcome_passes_through() {
    for src in [
        "export default () => {}",
        "export default async () => undefined",
        "export default () => { return; }",
    ] {
        let inv = run(&engine(), src, &request("https://s.example/")).await;
        assert_eq!(inv.outcome, InvocationOutcome::PassThrough, "{src}");
    }
}

#[tokio::test]
async fn other_return_values_are_invalid() {
    for src in [
        "export default () => 'text'",
        "export default () => ({status: 200})",
        "export default () => Response.error()",
        "export default async () => { const r = new Response('x'); await r.text(); return r; }",
        "export default () => { const r = new Response('x'); r.body.getReader(); return r; }",
        "export default () => Object.create(Response.prototype)",
        "export default (req) => Object.setPrototypeOf(req, Response.prototype)",
    ] {
        let e = engine();
        let inv = run(&e, src, &request("https://s.example/")).await;
        assert_eq!(error_kind(&inv), Some(ErrorKind::InvalidReturn), "{src}");
        assert_eq!(
            e.idle_isolates(),
            1,
            "a bad return value does not discard the isolate"
        );
    }
}

#[tokio::test]
async fn thrown_errors_are_uncaught_with_message_and_stack() {
    let inv = run(
        &engine(),
        "function inner() { throw new TypeError('boom'); }\nexport default () => inner()",
        &request("https://s.example/"),
    )
    .await;
    match &inv.outcome {
        InvocationOutcome::Error(e) => {
            assert_eq!(e.kind, ErrorKind::Uncaught);
            assert!(e.message.starts_with("TypeError: boom"), "{}", e.message);
            assert!(e.message.contains("index.js:1"), "{}", e.message);
        }
        o => panic!("{o:?}"),
    }
    let inv = run(
        &engine(),
        "export default async () => { throw 'plain'; }",
        &request("https://s.example/"),
    )
    .await;
    match &inv.outcome {
        InvocationOutcome::Error(e) => assert_eq!(e.message, "Uncaught plain"),
        o => panic!("{o:?}"),
    }
}

#[tokio::test]
async fn module_errors() {
    let inv = run(
        &engine(),
        "export default (",
        &request("https://s.example/"),
    )
    .await;
    assert_eq!(error_kind(&inv), Some(ErrorKind::Module));
    let inv = run(
        &engine(),
        "throw new Error('at load')",
        &request("https://s.example/"),
    )
    .await;
    assert_eq!(error_kind(&inv), Some(ErrorKind::Module));
    let inv = run(
        &engine(),
        "export const x = 1",
        &request("https://s.example/"),
    )
    .await;
    assert_eq!(error_kind(&inv), Some(ErrorKind::NoHandler));
    let inv = run(
        &engine(),
        "import x from 'npm:left-pad'; export default () => {}",
        &request("https://s.example/"),
    )
    .await;
    match &inv.outcome {
        InvocationOutcome::Error(e) => {
            assert_eq!(e.kind, ErrorKind::Module);
            assert!(e.message.contains("npm:left-pad"), "{}", e.message);
        }
        o => panic!("{o:?}"),
    }
}

fn bundle(id: &str, files: &[(&str, &str)]) -> Bundle {
    let modules: BTreeMap<String, String> = files
        .iter()
        .map(|(p, s)| (p.to_string(), s.to_string()))
        .collect();
    Bundle::new(BundleSource {
        id: id.into(),
        entry: files[0].0.into(),
        modules,
    })
    .unwrap()
}

#[tokio::test]
async fn relative_imports_resolve_inside_the_bundle() {
    let b = bundle("d/imports", &[
        ("fn/index.js", "import { greet } from './lib/greet.js'; import top from '../shared.js'; export default () => new Response(greet(top));"),
        ("fn/lib/greet.js", "import { suffix } from '../../shared.js'; export const greet = (n) => `hello ${n}${suffix}`;"),
        ("shared.js", "export const suffix = '!'; export default 'world';"),
    ]);
    let inv = engine()
        .invoke(&b, &request("https://s.example/"), &TestHost::default())
        .await;
    assert_eq!(body(&inv), "hello world!");
    let b = bundle(
        "d/missing",
        &[("index.js", "import './nope.js'; export default () => {}")],
    );
    let inv = engine()
        .invoke(&b, &request("https://s.example/"), &TestHost::default())
        .await;
    assert_eq!(error_kind(&inv), Some(ErrorKind::Module));
}

#[tokio::test]
async fn inline_config_is_extracted() {
    let e = engine();
    let b = Bundle::single(
        "cfg",
        r#"export default () => {};
        export const config = { path: ["/", "/x/*"], excludedPath: "/x/public/*", method: "GET",
          cache: "manual", onError: "bypass", header: { "x-flag": true, "x-re": "^a" }, name: "My fn" };"#,
    );
    let c = e.config(&b).unwrap().unwrap();
    assert_eq!(c.path, vec!["/", "/x/*"]);
    assert_eq!(c.excluded_path, vec!["/x/public/*"]);
    assert_eq!(c.method, vec!["GET"]);
    assert_eq!(c.cache.as_deref(), Some("manual"));
    assert_eq!(c.on_error.as_deref(), Some("bypass"));
    assert_eq!(
        c.header.get("x-flag"),
        Some(&HeaderCondition::Present(true))
    );
    assert_eq!(
        c.header.get("x-re"),
        Some(&HeaderCondition::Matches("^a".into()))
    );
    assert_eq!(c.name.as_deref(), Some("My fn"));
    assert_eq!(
        e.idle_isolates(),
        1,
        "the isolate used for the config stays warm"
    );
    assert_eq!(
        e.config(&Bundle::single("nocfg", "export default () => {}"))
            .unwrap(),
        None
    );
    let c = e
        .config(&Bundle::single(
            "pat",
            "export default () => {}; export const config = { pattern: '^/a$' }",
        ))
        .unwrap()
        .unwrap();
    assert_eq!(c.pattern, vec!["^/a$"]);
    assert!(e
        .config(&Bundle::single(
            "badcfg",
            "export default () => {}; export const config = { path: 5 }"
        ))
        .is_err());
}

/// The invocation's request is made in Rust and gets its record the first
/// time JavaScript looks at it, whichever way that is: each way, first,
/// must see the same request (and a body read once is used).
#[tokio::test]
async fn the_request_is_the_same_whichever_way_it_is_first_used() {
    let mut req = request("https://s.example/p?x=1");
    req.method = "post".into();
    req.headers.push(("X-Thing".into(), " v ".into()));
    // Pairs `Headers` refuses: left out, however the request is first used.
    req.headers.push(("bad name".into(), "x".into()));
    req.headers.push(("x-wide".into(), "\u{100}".into()));
    req.body = b"payload".to_vec();
    let e = engine();
    let firsts = [
        "req.method",
        "req.url",
        "req.headers.get('x-thing')",
        "await req.text()",
        "req.bodyUsed",
        "(await req.clone().text())",
        "(await new Request(req).text())",
        "await ctx.next(req).then((r) => r.status)",
        "Object.keys(req).length",
        "req instanceof Request",
        "Object.prototype.toString.call(req)",
        "(await req.arrayBuffer()).byteLength",
        "typeof req.body.getReader",
    ];
    let mut seen = Vec::new();
    for first in firsts {
        let src = format!(
            r#"export default async (req, ctx) => {{
                 const first = {first};
                 let text;
                 try {{ text = await req.text(); }} catch (e) {{ text = e.constructor.name; }}
                 return Response.json({{ first, method: req.method, url: req.url,
                   headers: [...req.headers], text, used: req.bodyUsed }});
               }}"#
        );
        let inv = run(&e, &src, &req).await;
        // A request the engine owns (the worker's) is taken apart, its
        // headers checked only when first read: the function sees the same.
        let owned = e
            .invoke_owned(
                &Bundle::single("test", &src),
                req.clone(),
                &TestHost::default(),
            )
            .await;
        assert_eq!(response(&owned).body, response(&inv).body, "{first}");
        let v: serde_json::Value = serde_json::from_slice(&response(&inv).body)
            .unwrap_or_else(|err| panic!("{first}: {err} {:?}", response(&inv)));
        assert_eq!(v["method"], "POST", "{first}");
        assert_eq!(v["url"], "https://s.example/p?x=1", "{first}");
        assert_eq!(
            v["headers"],
            serde_json::json!([["host", "site.example"], ["x-thing", "v"]]),
            "{first}"
        );
        assert_eq!(v["used"], true, "{first}");
        seen.push((first, v["first"].clone(), v["text"].clone()));
    }
    let text = |i: usize| seen[i].2.as_str().unwrap_or_default().to_string();
    // Read first, the body is gone for the second read; otherwise it is there.
    for (i, (first, _, _)) in seen.iter().enumerate() {
        // (`context.next(req)` sends the body without consuming it.)
        let consumed = first.contains("req.text()")
            || first.contains("arrayBuffer")
            || first.contains("new Request(req)");
        let want = if consumed { "TypeError" } else { "payload" };
        assert_eq!(text(i), want, "{first}");
    }
    assert_eq!(seen[0].1, "POST");
    assert_eq!(seen[3].1, "payload");
    assert_eq!(seen[4].1, false);
    assert_eq!(seen[5].1, "payload");
    assert_eq!(seen[6].1, "payload");
    assert_eq!(seen[7].1, 200);
    assert_eq!(seen[8].1, 0);
    assert_eq!(seen[9].1, true);
    assert_eq!(seen[10].1, "[object Request]");
    assert_eq!(seen[11].1, 7);
    assert_eq!(seen[12].1, "function");
}

#[tokio::test]
async fn request_and_context_fields() {
    let mut req = request("https://s.example/p/q?x=1");
    req.method = "POST".into();
    req.headers.push(("X-Thing".into(), "v".into()));
    req.body = b"payload".to_vec();
    req.context_mut().geo.city = Some("Paris".into());
    req.context_mut().geo.country = Some(CodeName {
        code: "FR".into(),
        name: "France".into(),
    });
    req.context_mut().params.insert("name".into(), "q".into());
    let src = r#"export default async (req, ctx) => Response.json({
        method: req.method, url: req.url, thing: req.headers.get('x-thing'), body: await req.text(),
        ip: ctx.ip, requestId: ctx.requestId, city: ctx.geo.city, country: ctx.geo.country.code,
        site: ctx.site.name, deploy: ctx.deploy.context, region: ctx.server.region, params: ctx.params,
        path: ctx.url.pathname, same: Netlify.context === ctx })"#;
    let inv = run(&engine(), src, &req).await;
    let v: serde_json::Value = serde_json::from_slice(&response(&inv).body).unwrap();
    assert_eq!(v["method"], "POST");
    assert_eq!(v["url"], "https://s.example/p/q?x=1");
    assert_eq!(v["thing"], "v");
    assert_eq!(v["body"], "payload");
    assert_eq!(v["ip"], "203.0.113.7");
    assert_eq!(v["requestId"], "req-1");
    assert_eq!(v["city"], "Paris");
    assert_eq!(v["country"], "FR");
    assert_eq!(v["site"], "site");
    assert_eq!(v["deploy"], "production");
    assert_eq!(v["region"], "eu-1");
    assert_eq!(v["params"]["name"], "q");
    assert_eq!(v["path"], "/p/q");
    assert_eq!(v["same"], true);
    assert_eq!(
        response(&inv).header("content-type"),
        Some("application/json")
    );
}

#[tokio::test]
async fn netlify_context_is_null_outside_a_handler() {
    let inv = run(
        &engine(),
        "const outside = Netlify.context; export default () => new Response(String(outside))",
        &request("https://s.example/"),
    )
    .await;
    assert_eq!(body(&inv), "null");
}

#[tokio::test]
async fn next_passes_the_request_on_and_transforms_the_response() {
    let host = TestHost::default();
    let mut req = request("https://s.example/page");
    req.headers.push(("x-in".into(), "1".into()));
    let b = Bundle::single(
        "next",
        r#"export default async (req, ctx) => {
        const res = await ctx.next();
        const text = await res.text();
        res.headers.set('x-transformed', 'yes');
        return new Response(text.toUpperCase(), { status: res.status, headers: res.headers });
    }"#,
    );
    let inv = engine().invoke(&b, &req, &host).await;
    let r = response(&inv);
    assert_eq!(
        String::from_utf8_lossy(&r.body),
        "NEXT GET HTTPS://S.EXAMPLE/PAGE BODY="
    );
    assert_eq!(r.header("x-transformed"), Some("yes"));
    assert_eq!(r.header("x-origin"), Some("1"));
    assert_eq!(r.header("echo-x-in"), Some("1"));
    let seen = host.seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0, "next");
    assert_eq!(inv.telemetry.host_calls, 1);
}

#[tokio::test]
async fn next_with_a_modified_request() {
    let host = TestHost::default();
    let b = Bundle::single(
        "next2",
        r#"export default async (req, ctx) => {
        const h = new Headers(req.headers); h.set('x-added', 'a');
        const r = new Request(req, { method: 'POST', headers: h, body: 'new body' });
        return ctx.next(r, { sendConditionalRequest: true });
    }"#,
    );
    let inv = engine()
        .invoke(&b, &request("https://s.example/x"), &host)
        .await;
    assert_eq!(body(&inv), "next POST https://s.example/x body=new body");
    let seen = host.seen.lock().unwrap();
    let sent = &seen[0].1;
    assert!(sent.headers.contains(&("x-added".into(), "a".into())));
    assert!(sent.send_conditional_request);
    assert_eq!(response(&inv).header("echo-x-added"), Some("a"));
}

#[tokio::test]
async fn fetch_goes_to_the_host_and_failures_reject() {
    let host = TestHost::default();
    let b = Bundle::single(
        "fetch",
        r#"export default async () => {
        const a = await fetch('https://origin.example/api', { method: 'PUT', body: 'x', headers: { 'x-k': 'v' } });
        let failed;
        try { await fetch('https://fail.invalid/'); } catch (e) { failed = e instanceof TypeError && e.message; }
        let bad;
        try { await fetch('not a url'); } catch (e) { bad = e instanceof TypeError; }
        const [p, q] = await Promise.all([fetch('https://o.example/1'), fetch('https://o.example/2')]);
        return Response.json({ a: await a.text(), url: a.url, ok: a.ok, failed, bad, p: await p.text(), q: await q.text() });
    }"#,
    );
    let inv = engine()
        .invoke(&b, &request("https://s.example/"), &host)
        .await;
    let v: serde_json::Value = serde_json::from_slice(&response(&inv).body).unwrap();
    assert_eq!(v["a"], "fetch PUT https://origin.example/api body=x");
    assert_eq!(v["url"], "https://origin.example/api");
    assert_eq!(v["ok"], true);
    assert!(
        v["failed"].as_str().unwrap().contains("connection refused"),
        "{v}"
    );
    assert_eq!(v["bad"], true);
    assert_eq!(v["p"], "fetch GET https://o.example/1 body=");
    assert_eq!(v["q"], "fetch GET https://o.example/2 body=");
    assert_eq!(inv.telemetry.host_calls, 4);
}

#[tokio::test]
async fn aborted_fetch_rejects_with_abort_error() {
    let src = r#"export default async () => {
        const c = new AbortController(); c.abort();
        try { await fetch('https://o.example/', { signal: c.signal }); return new Response('no'); }
        catch (e) { return new Response(e.name); }
    }"#;
    let inv = run(&engine(), src, &request("https://s.example/")).await;
    assert_eq!(body(&inv), "AbortError");
}

#[tokio::test]
async fn cookies_read_set_and_delete() {
    let mut req = request("https://s.example/");
    req.headers
        .push(("cookie".into(), "a=1; b=\"two\"; c=3".into()));
    let src = r#"export default async (req, ctx) => {
        ctx.cookies.set({ name: 'session', value: 'abc', path: '/', httpOnly: true, secure: true, sameSite: 'Lax', maxAge: 60 });
        ctx.cookies.set('plain', 'v');
        ctx.cookies.delete('c');
        ctx.cookies.delete({ name: 'd', path: '/app', domain: 'example.com' });
        let bad = false;
        try { ctx.cookies.set('bad name', 'x'); } catch (e) { bad = e instanceof TypeError; }
        return new Response([ctx.cookies.get('a'), ctx.cookies.get('b'), ctx.cookies.get('zz'), bad].join(','));
    }"#;
    let inv = run(&engine(), src, &req).await;
    assert_eq!(body(&inv), "1,two,,true");
    let cookies: Vec<&str> = response(&inv)
        .headers
        .iter()
        .filter(|(k, _)| k == "set-cookie")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(
        cookies,
        vec![
            "session=abc; Secure; HttpOnly; Max-Age=60; SameSite=Lax; Path=/",
            "plain=v",
            "c=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
            "d=; Domain=example.com; Path=/app; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
        ]
    );
    assert_eq!(inv.set_cookies.len(), 4);
}

#[tokio::test]
async fn cookies_set_before_next_reach_the_final_response() {
    // Spec E-15.
    let inv = run(&engine(), "export default (req, ctx) => { ctx.cookies.set({ name: 'a', value: '1' }); return ctx.next(); }", &request("https://s.example/")).await;
    assert!(response(&inv)
        .headers
        .contains(&("set-cookie".into(), "a=1".into())));
}

#[tokio::test]
async fn cookies_on_pass_through_are_handed_to_the_edge() {
    let inv = run(
        &engine(),
        "export default (req, ctx) => { ctx.cookies.set('seen', '1'); }",
        &request("https://s.example/"),
    )
    .await;
    assert_eq!(inv.outcome, InvocationOutcome::PassThrough);
    assert_eq!(inv.set_cookies, vec!["seen=1".to_string()]);
}

#[tokio::test]
async fn netlify_env() {
    let mut req = request("https://s.example/");
    std::sync::Arc::make_mut(&mut req.context_mut().env).insert("API_KEY".into(), "k1".into());
    let src = r#"export default () => {
        const a = [Netlify.env.get('API_KEY'), Netlify.env.has('API_KEY'), Netlify.env.get('NOPE'), Netlify.env.has('NOPE')];
        Netlify.env.set('TEMP', 't');
        const b = JSON.stringify(Netlify.env.toObject());
        Netlify.env.delete('API_KEY');
        return new Response(JSON.stringify(a) + ' ' + b + ' ' + Netlify.env.has('API_KEY'));
    }"#;
    let e = engine();
    let inv = run(&e, src, &req).await;
    assert_eq!(
        body(&inv),
        r#"[ "k1",true,null,false] {"API_KEY":"k1","TEMP":"t"} false"#.replace("[ ", "[")
    );
    // set/delete are invocation-local.
    let inv = run(&e, "export default () => new Response(String(Netlify.env.get('API_KEY')) + Netlify.env.has('TEMP'))", &req).await;
    assert_eq!(body(&inv), "k1false");
}

#[tokio::test]
async fn wait_until_work_finishes_before_invoke_returns() {
    let src = r#"let log = []; export default (req, ctx) => {
        ctx.waitUntil(new Promise(r => setTimeout(() => { console.log('later'); r(); }, 5)));
        ctx.waitUntil(Promise.reject(new Error('bg')));
        return new Response('now');
    }"#;
    let inv = run(&engine(), src, &request("https://s.example/")).await;
    assert_eq!(body(&inv), "now");
    let lines = console(&inv);
    assert!(lines.contains(&"later"), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("Uncaught (in waitUntil) Error: bg")),
        "{lines:?}"
    );
    assert!(inv.telemetry.late_error.is_none());
}

#[tokio::test]
async fn console_is_captured_with_levels() {
    let src = "export default () => { console.log('a', 1, {b: [2]}, null, undefined); console.error(new Error('e')); console.warn('w'); console.info('i'); console.debug('d'); return new Response('ok'); }";
    let inv = run(&engine(), src, &request("https://s.example/")).await;
    let lines: Vec<(String, String)> = inv
        .telemetry
        .console
        .iter()
        .map(|l| (l.level.clone(), l.message.clone()))
        .collect();
    assert_eq!(
        lines,
        vec![
            ("log".into(), "a 1 {\"b\":[2]} null undefined".into()),
            ("error".into(), "Error: e".into()),
            ("warn".into(), "w".into()),
            ("info".into(), "i".into()),
            ("debug".into(), "d".into()),
        ]
    );
    assert!(inv.telemetry.cpu_time > std::time::Duration::ZERO);
    assert!(inv.telemetry.duration >= inv.telemetry.cpu_time);
}

#[tokio::test]
async fn deploys_do_not_see_each_others_globals() {
    let e = engine();
    let a = Bundle::single("deploy-a", "globalThis.secret = 'a-secret'; Object.prototype.polluted = 1; Array.prototype.push = () => 0; export default () => new Response(String(globalThis.secret))");
    let b = Bundle::single("deploy-b", "export default () => new Response(String(globalThis.secret) + ' ' + ({}).polluted + ' ' + [].push(1))");
    assert_eq!(
        body(
            &e.invoke(&a, &request("https://a.example/"), &TestHost::default())
                .await
        ),
        "a-secret"
    );
    assert_eq!(
        body(
            &e.invoke(&b, &request("https://b.example/"), &TestHost::default())
                .await
        ),
        "undefined undefined 1"
    );
}

#[tokio::test]
async fn a_warm_isolate_keeps_module_state_for_the_same_deploy() {
    let e = engine();
    let a = Bundle::single(
        "counter",
        "let n = 0; export default () => new Response(String(++n))",
    );
    for want in ["1", "2", "3"] {
        assert_eq!(
            body(
                &e.invoke(&a, &request("https://a.example/"), &TestHost::default())
                    .await
            ),
            want
        );
    }
    // The same id with other code is another bundle.
    let a2 = Bundle::single(
        "counter",
        "let n = 100; export default () => new Response(String(++n))",
    );
    assert_eq!(
        body(
            &e.invoke(&a2, &request("https://a.example/"), &TestHost::default())
                .await
        ),
        "101"
    );
    e.evict("counter");
    assert_eq!(e.idle_isolates(), 0);
    assert_eq!(
        body(
            &e.invoke(&a, &request("https://a.example/"), &TestHost::default())
                .await
        ),
        "1"
    );
}

#[tokio::test]
async fn lru_bounds_the_pool() {
    let e = Engine::new(Limits {
        max_isolates: 2,
        ..Limits::default()
    });
    for id in ["a", "b", "c"] {
        let b = Bundle::single(id, "export default () => new Response('x')");
        e.invoke(&b, &request("https://a.example/"), &TestHost::default())
            .await;
    }
    assert_eq!(e.idle_isolates(), 2);
    let inv = e
        .invoke(
            &Bundle::single("a", "export default () => new Response('x')"),
            &request("https://a.example/"),
            &TestHost::default(),
        )
        .await;
    assert!(
        inv.telemetry.cold_start,
        "the least recently used isolate was evicted"
    );
    let inv = e
        .invoke(
            &Bundle::single("c", "export default () => new Response('x')"),
            &request("https://a.example/"),
            &TestHost::default(),
        )
        .await;
    assert!(!inv.telemetry.cold_start);
}

#[tokio::test]
async fn timers_left_pending_do_not_leak_into_the_next_invocation() {
    let e = engine();
    let src = "let fired = 0; export default (req) => { if (req.url.endsWith('/set')) setTimeout(() => fired++, 1); return new Response(String(fired)); }";
    assert_eq!(
        body(&run(&e, src, &request("https://a.example/set")).await),
        "0"
    );
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    assert_eq!(
        body(&run(&e, src, &request("https://a.example/get")).await),
        "0"
    );
}

#[tokio::test]
async fn invocation_outcome_round_trips_through_json() {
    let inv = run(
        &engine(),
        "export default () => new Response(new Uint8Array([0, 255, 10]))",
        &request("https://s.example/"),
    )
    .await;
    let json = serde_json::to_string(&inv).unwrap();
    let back: Invocation = serde_json::from_str(&json).unwrap();
    assert_eq!(back, inv);
    assert_eq!(response(&back).body, vec![0, 255, 10]);
    let req = request("https://s.example/");
    let back: InvocationRequest =
        serde_json::from_str(&serde_json::to_string(&req).unwrap()).unwrap();
    assert_eq!(back, req);
}

#[tokio::test]
async fn incoming_request_is_normalised_and_invalid_headers_dropped() {
    let mut req = request("HTTPS://S.Example/a/../b");
    req.method = "post".into();
    req.headers.push(("Bad Name".into(), "x".into()));
    req.headers.push(("x-ok".into(), "  padded  ".into()));
    req.headers.push(("x-crlf".into(), "a\r\nb".into()));
    req.headers.push(("x-wide".into(), "€".into()));
    let src = "export default (req) => Response.json({ url: req.url, method: req.method, headers: [...req.headers] })";
    let inv = run(&engine(), src, &req).await;
    let v: serde_json::Value = serde_json::from_slice(&response(&inv).body).unwrap();
    assert_eq!(v["url"], "https://s.example/b");
    assert_eq!(v["method"], "POST");
    assert_eq!(
        v["headers"],
        serde_json::json!([["host", "site.example"], ["x-ok", "padded"]])
    );
    let mut bad = request("not a url");
    bad.method = "GET".into();
    let inv = run(&engine(), src, &bad).await;
    assert_eq!(error_kind(&inv), Some(ErrorKind::Internal));
}

#[cfg(feature = "typescript")]
#[tokio::test]
async fn a_prepared_typescript_bundle_runs() {
    let mut s = BTreeMap::new();
    s.insert("hello.ts".to_string(), "import type { Context } from 'https://edge.netlify.com';\nimport { greet } from './lib/greet.ts';\nexport default async (req: Request, ctx: Context): Promise<Response> => new Response(greet(ctx.site.name as string));\nexport const config: { path: string } = { path: '/hello' };".to_string());
    s.insert("lib/greet.ts".to_string(), "enum Mark { Bang = '!' }\nexport function greet(n: string): string { return `hi ${n}${Mark.Bang}`; }".to_string());
    let b = ledge_functions::prepare::prepare_bundle("d/hello", "hello.ts", &s).unwrap();
    let e = engine();
    let inv = e
        .invoke(
            &b,
            &request("https://s.example/hello"),
            &TestHost::default(),
        )
        .await;
    assert_eq!(body(&inv), "hi site!");
    assert_eq!(e.config(&b).unwrap().unwrap().path, vec!["/hello"]);
}

#[tokio::test]
async fn work_left_by_a_failed_invocation_does_not_run_in_the_next() {
    let e = engine();
    let src = "let log = []; export default async (req) => { if (req.url.endsWith('/fail')) { Promise.resolve().then(() => Promise.resolve()).then(() => log.push('late')); throw new Error('x'); } return new Response(log.join(',')); }";
    let inv = run(&e, src, &request("https://s.example/fail")).await;
    assert_eq!(error_kind(&inv), Some(ErrorKind::Uncaught));
    assert_eq!(e.idle_isolates(), 1, "an uncaught error keeps the isolate");
    // The leftover job ran at the end of the failed invocation, not during this one.
    let inv = run(&e, src, &request("https://s.example/ok")).await;
    assert_eq!(body(&inv), "late");
}

#[tokio::test]
async fn later_isolates_load_the_bundle_from_bytecode() {
    // max_isolates 0: every invocation creates a fresh isolate; after the
    // first, the modules come from the bundle's bytecode cache.
    let e = Engine::new(Limits {
        max_isolates: 0,
        ..Limits::default()
    });
    let b = bundle("d/bytecode", &[
        ("index.js", "import { twice } from './lib.js';\nexport default (req) => {\n  if (req.url.endsWith('/throw')) throw new Error('boom');\n  return new Response(String(twice(21)));\n};\nexport const config = { path: '/bc' };"),
        ("lib.js", "export const twice = (n) => n * 2;"),
    ]);
    for _ in 0..3 {
        let inv = e
            .invoke(&b, &request("https://s.example/"), &TestHost::default())
            .await;
        assert!(inv.telemetry.cold_start);
        assert_eq!(body(&inv), "42");
        assert_eq!(e.config(&b).unwrap().unwrap().path, vec!["/bc"]);
    }
    let inv = e
        .invoke(
            &b,
            &request("https://s.example/throw"),
            &TestHost::default(),
        )
        .await;
    match &inv.outcome {
        InvocationOutcome::Error(err) => {
            assert!(err.message.contains("index.js:3"), "{}", err.message)
        }
        o => panic!("{o:?}"),
    }
}

#[tokio::test]
async fn deploy_env_is_visible_at_module_top_level() {
    let mut env = BTreeMap::new();
    env.insert("API_KEY".to_string(), "deploy-key".to_string());
    let src = "const atLoad = Netlify.env.get('API_KEY'); export default () => new Response(atLoad + ' ' + Netlify.env.get('API_KEY'))";
    let b = Bundle::single("env-top", src).with_env(env.clone());
    let mut req = request("https://s.example/");
    std::sync::Arc::make_mut(&mut req.context_mut().env)
        .insert("API_KEY".into(), "request-key".into());
    let e = engine();
    assert_eq!(
        body(&e.invoke(&b, &req, &TestHost::default()).await),
        "deploy-key request-key"
    );
    // Another env is another isolate.
    env.insert("API_KEY".to_string(), "rotated".to_string());
    let b2 = Bundle::single("env-top", src).with_env(env);
    assert_ne!(b.key(), b2.key());
    let b3 = Bundle::single("env+top", src)
        .with_env(BTreeMap::new())
        .with_env(BTreeMap::new());
    assert!(b3.key().starts_with("env+top#"), "{}", b3.key());
    assert_eq!(b3.key().matches("+env:").count(), 1);
    assert_eq!(
        body(&e.invoke(&b2, &req, &TestHost::default()).await),
        "rotated request-key"
    );
}

#[tokio::test]
async fn unhandled_rejections_are_logged_handled_ones_are_not() {
    let src = r#"export default async () => {
        Promise.reject(new TypeError('lost'));
        const later = Promise.reject(new Error('caught later'));
        await null;
        later.catch(() => {});
        fetch('https://fail.invalid/').then(() => {});
        await new Promise((r) => setTimeout(r, 5));
        return new Response('ok');
    }"#;
    let inv = run(&engine(), src, &request("https://s.example/")).await;
    assert_eq!(body(&inv), "ok");
    let errors: Vec<&str> = inv
        .telemetry
        .console
        .iter()
        .filter(|l| l.level == "error")
        .map(|l| l.message.as_str())
        .collect();
    assert_eq!(
        errors,
        vec![
            "Uncaught (in promise) TypeError: lost",
            "Uncaught (in promise) TypeError: fetch failed: connection refused",
        ]
    );
}

#[tokio::test]
async fn rejections_are_logged_by_the_invocation_that_left_them_once() {
    // A rejection at module top level is logged by the first invocation; one
    // left by an invocation by that invocation; none by the ones after.
    let src = r#"Promise.reject(new Error('at load'));
        let n = 0;
        export default async (request, context) => {
            n++;
            if (n === 2) Promise.reject(new Error('second'));
            return new Response(String(n) + ' ' + new URL(request.url).pathname + ' ' + context.requestId);
        }"#;
    let engine = engine();
    let bundle = Bundle::single("test", src);
    let errors = |inv: &Invocation| -> Vec<String> {
        inv.telemetry
            .console
            .iter()
            .filter(|l| l.level == "error")
            .map(|l| l.message.clone())
            .collect()
    };
    let mut req = request("https://s.example/a");
    req.context_mut().request_id = "r1".into();
    let first = engine.invoke(&bundle, &req, &TestHost::default()).await;
    assert_eq!(body(&first), "1 /a r1");
    assert_eq!(errors(&first), vec!["Uncaught (in promise) Error: at load"]);
    let mut req = request("https://s.example/b");
    req.context_mut().request_id = "r2".into();
    let second = engine.invoke(&bundle, &req, &TestHost::default()).await;
    assert_eq!(body(&second), "2 /b r2");
    assert_eq!(errors(&second), vec!["Uncaught (in promise) Error: second"]);
    let mut req = request("https://s.example/c");
    req.context_mut().request_id = "r3".into();
    let third = engine.invoke(&bundle, &req, &TestHost::default()).await;
    assert_eq!(body(&third), "3 /c r3");
    assert!(errors(&third).is_empty());
}

/// A getter of one class called on a quick object of another is an
/// `Illegal invocation`, and leaves the object as it was.
#[tokio::test]
async fn getters_called_on_the_wrong_quick_object_leave_it_alone() {
    let src = r#"
        const get = (cls, name, o) => {
          try { Object.getOwnPropertyDescriptor(cls.prototype, name).get.call(o); return 'read'; }
          catch (e) { return e.constructor.name; }
        };
        export default (req, context) => {
          const Context = Object.getPrototypeOf(context).constructor;
          const res = new Response('x', { headers: { a: '1' } });
          const tries = [
            get(Request, 'url', context),
            get(Response, 'status', context),
            get(Response, 'status', req),
            get(Request, 'url', res),
            get(Context, 'ip', req),
            get(Context, 'ip', res),
          ];
          return Response.json({ tries, id: context.requestId, url: req.url, status: res.status,
            a: res.headers.get('a') });
        }"#;
    let inv = run(&engine(), src, &request("https://s.example/p")).await;
    let v: serde_json::Value = serde_json::from_slice(&response(&inv).body).unwrap();
    assert_eq!(v["tries"], serde_json::json!(vec!["TypeError"; 6]));
    assert_eq!(v["id"], "req-1");
    assert_eq!(v["url"], "https://s.example/p");
    assert_eq!(v["status"], 200);
    assert_eq!(v["a"], "1");
}

/// A `context` and a `request` kept in a global from an earlier invocation
/// (both quick objects, never looked at then) still read as their own
/// invocation's, and the current ones as theirs.
#[tokio::test]
async fn kept_contexts_and_requests_stay_their_own() {
    let src = r#"
        let kept = null;
        export default async (req, context) => {
          if (kept === null) { kept = { req, context }; return new Response('kept'); }
          return Response.json({
            oldId: kept.context.requestId, oldUrl: kept.req.url, oldIp: kept.context.ip,
            id: context.requestId, url: req.url, same: Netlify.context === context,
            oldIsNot: Netlify.context !== kept.context,
          });
        }"#;
    let engine = engine();
    let bundle = Bundle::single("test", src);
    let mut req = request("https://s.example/first");
    req.context_mut().request_id = "r1".into();
    let first = engine.invoke(&bundle, &req, &TestHost::default()).await;
    assert_eq!(body(&first), "kept");
    let mut req = request("https://s.example/second");
    req.context_mut().request_id = "r2".into();
    req.context_mut().ip = "198.51.100.9".into();
    let second = engine.invoke(&bundle, &req, &TestHost::default()).await;
    let v: serde_json::Value = serde_json::from_slice(&response(&second).body).unwrap();
    assert_eq!(v["oldId"], "r1");
    assert_eq!(v["oldUrl"], "https://s.example/first");
    assert_eq!(v["oldIp"], "203.0.113.7");
    assert_eq!(v["id"], "r2");
    assert_eq!(v["url"], "https://s.example/second");
    assert_eq!(v["same"], true);
    assert_eq!(v["oldIsNot"], true);
}

#[tokio::test]
async fn incoming_headers_keep_empty_values_duplicates_and_none() {
    let mut req = request("https://s.example/");
    req.headers.push(("X-Empty".into(), "   ".into()));
    req.headers.push(("X-Dup".into(), "1".into()));
    req.headers.push(("x-dup".into(), "2".into()));
    let src = "export default (req) => { const c = req.clone(); return Response.json({ same: req.headers === req.headers, all: [...req.headers], dup: c.headers.get('x-dup'), empty: req.headers.get('x-empty'), body: req.body }); }";
    let inv = run(&engine(), src, &req).await;
    let v: serde_json::Value = serde_json::from_slice(&response(&inv).body).unwrap();
    assert_eq!(
        v,
        serde_json::json!({ "same": true, "dup": "1, 2", "empty": "", "body": null,
            "all": [["host", "site.example"], ["x-dup", "1, 2"], ["x-empty", ""]] })
    );
    req.headers.clear();
    let src = "export default (req) => Response.json([...req.headers])";
    let inv = run(&engine(), src, &req).await;
    assert_eq!(body(&inv), "[]");
}

#[tokio::test]
async fn a_warm_isolate_sees_the_env_of_each_request() {
    let src = "export default () => new Response(String(Netlify.env.get('K')))";
    let e = engine();
    let mut req = request("https://s.example/");
    for (value, expected) in [
        (Some("1"), "1"),
        (Some("1"), "1"),
        (Some("2"), "2"),
        (None, "undefined"),
    ] {
        std::sync::Arc::make_mut(&mut req.context_mut().env).clear();
        if let Some(v) = value {
            std::sync::Arc::make_mut(&mut req.context_mut().env).insert("K".into(), v.into());
        }
        let inv = run(&e, src, &req).await;
        assert!(!inv.telemetry.cold_start || expected == "1");
        assert_eq!(body(&inv), expected);
    }
}
