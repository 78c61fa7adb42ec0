//! Bodies the host keeps: a response of `context.next()` or `fetch()` whose
//! body stays with the host until the function reads it, and goes back
//! unread when the function answers with it.

mod common;

use common::*;
use ledge_functions::*;

/// Runs `src` for one request against `host`.
async fn run_on(host: &TestHost, src: &str) -> Invocation {
    let bundle = Bundle::single("kept", src);
    engine()
        .invoke(&bundle, &request("https://site.example/p"), host)
        .await
}

const ECHO: &str = "next GET https://site.example/p body=";

#[tokio::test]
async fn an_unread_body_goes_back_by_handle() {
    for src in [
        // The response itself, headers changed.
        r#"export default async (req, context) => {
          const r = await context.next();
          r.headers.set('x-fn', '1');
          return r;
        }"#,
        // Its body stream in a new Response (status and headers changed).
        r#"export default async (req, context) => {
          const r = await context.next();
          const h = new Headers(r.headers);
          h.set('x-fn', '1');
          return new Response(r.body, { status: 203, headers: h });
        }"#,
        // The same from fetch().
        r#"export default async () => {
          const r = await fetch('https://o.example/');
          return new Response(r.body, { status: 203, headers: { 'x-fn': '1' } });
        }"#,
    ] {
        let host = TestHost::keeping(5);
        let inv = run_on(&host, src).await;
        let r = response(&inv);
        assert_eq!(r.body_handle, Some(0), "{src}\n{inv:?}");
        assert!(r.body.is_empty());
        assert_eq!(r.header("x-fn"), Some("1"));
        assert_eq!(host.read_of(0), 0, "no byte crossed: {src}");
    }
}

#[tokio::test]
async fn a_body_read_in_any_way_is_read_whole_in_chunks() {
    for (src, want) in [
        (
            r#"export default async (req, context) => {
              const r = await context.next();
              return new Response((await r.text()).toUpperCase());
            }"#,
            ECHO.to_uppercase(),
        ),
        (
            r#"export default async (req, context) => {
              const r = await context.next();
              const reader = r.body.getReader();
              let n = 0, s = '';
              for (;;) {
                const { value, done } = await reader.read();
                if (done) break;
                n++;
                s += new TextDecoder().decode(value);
              }
              return new Response(n + ':' + s);
            }"#,
            format!("{}:{ECHO}", ECHO.len().div_ceil(5)),
        ),
        (
            r#"export default async (req, context) => {
              const r = await context.next();
              const upper = new TransformStream({
                transform(c, ctl) { ctl.enqueue(new TextEncoder().encode(new TextDecoder().decode(c).toUpperCase())); },
              });
              return new Response(r.body.pipeThrough(upper), r);
            }"#,
            ECHO.to_uppercase(),
        ),
        (
            // A clone reads the body for itself; the original is still whole.
            r#"export default async (req, context) => {
              const r = await context.next();
              const copy = await r.clone().arrayBuffer();
              return new Response(r.body, { headers: { 'x-len': String(copy.byteLength) } });
            }"#,
            ECHO.to_string(),
        ),
        (
            // As the body of a request sent on.
            r#"export default async (req, context) => {
              const r = await context.next();
              const sent = await fetch('https://o.example/up', { method: 'POST', body: r.body });
              const back = await fetch('https://o.example/up2', { method: 'POST', body: await sent.blob() });
              return new Response(await back.text());
            }"#,
            format!(
                "fetch POST https://o.example/up2 body=fetch POST https://o.example/up body={ECHO}"
            ),
        ),
    ] {
        let host = TestHost::keeping(5);
        let inv = run_on(&host, src).await;
        let r = response(&inv);
        assert_eq!(r.body_handle, None, "{src}\n{inv:?}");
        assert_eq!(body(&inv), want, "{src}");
        assert_eq!(host.read_of(0), ECHO.len(), "{src}");
        if let Some(len) = r.header("x-len") {
            assert_eq!(len, ECHO.len().to_string());
        }
    }
}

#[tokio::test]
async fn a_kept_body_is_read_once_and_only_by_its_own_request() {
    // Read twice: the second read is refused like any used body.
    let host = TestHost::keeping(7);
    let inv = run_on(
        &host,
        r#"export default async (req, context) => {
          const r = await context.next();
          await r.text();
          try { await r.text(); return new Response('read twice'); }
          catch (e) { return new Response(e.name + ': ' + e.message); }
        }"#,
    )
    .await;
    assert!(
        body(&inv).starts_with("TypeError: Body is unusable"),
        "{inv:?}"
    );

    // Kept in a global and read by a later request in the same isolate.
    let e = engine();
    let bundle = Bundle::single(
        "leak",
        r#"export default async (req, context) => {
          if (globalThis.saved) {
            try { await globalThis.saved.text(); return new Response('read another request'); }
            catch (e) { return new Response(e.name + ': ' + e.message); }
          }
          globalThis.saved = await context.next();
          return new Response('saved');
        }"#,
    );
    let first = TestHost::keeping(7);
    let req = request("https://site.example/p");
    let inv = e.invoke(&bundle, &req, &first).await;
    assert_eq!(body(&inv), "saved");
    let second = TestHost::keeping(7);
    let inv = e.invoke(&bundle, &req, &second).await;
    assert_eq!(
        body(&inv),
        "TypeError: a response body of context.next() or fetch can only be read while handling its request"
    );
    assert_eq!(first.read_of(0), 0);
}

#[tokio::test]
async fn a_read_body_is_not_handed_back() {
    // Partly read through a reader, the rest passed on in a new stream: it is
    // collected here, never handed back by handle.
    let host = TestHost::keeping(4);
    let inv = run_on(
        &host,
        r#"export default async (req, context) => {
          const r = await context.next();
          const reader = r.body.getReader();
          await reader.read();
          return new Response(new ReadableStream({
            async pull(c) { const { value, done } = await reader.read(); if (done) c.close(); else c.enqueue(value); },
          }));
        }"#,
    )
    .await;
    let r = response(&inv);
    assert_eq!(r.body_handle, None);
    assert_eq!(body(&inv), &ECHO[4..]);
}

#[tokio::test]
async fn a_host_read_error_rejects_the_read() {
    let host = TestHost {
        fail_reads: true,
        ..TestHost::keeping(4)
    };
    let inv = run_on(
        &host,
        r#"export default async (req, context) => {
          const r = await context.next();
          try { await r.text(); return new Response('read'); }
          catch (e) { return new Response(e.name + ': ' + e.message); }
        }"#,
    )
    .await;
    assert_eq!(
        body(&inv),
        "TypeError: reading the response body failed: connection reset"
    );
}

#[tokio::test]
async fn a_body_handed_back_is_not_read_afterwards() {
    // The stream goes back as the response; later work that tries to read
    // it is refused instead of racing the node for the bytes.
    let host = TestHost::keeping(4);
    let inv = run_on(
        &host,
        r#"export default async (req, context) => {
          const r = await context.next();
          const s = r.body;
          context.waitUntil(new Promise((done) => setTimeout(() => {
            s.getReader().read().then(
              () => console.log('read after hand-back'),
              (e) => console.log(e.name + ': ' + e.message),
            ).then(done);
          }, 0)));
          return new Response(s);
        }"#,
    )
    .await;
    assert_eq!(response(&inv).body_handle, Some(0), "{inv:?}");
    assert_eq!(host.read_of(0), 0);
    assert_eq!(
        console(&inv),
        ["TypeError: the body was handed back as the function's response"]
    );
}
