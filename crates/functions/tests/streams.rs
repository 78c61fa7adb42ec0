//! Streams, WPT-style: ReadableStream, WritableStream, TransformStream, the
//! text streams, stream bodies, and the limits on a returned stream.

mod common;
use std::time::Duration;

use common::*;
use ledge_functions::*;

#[tokio::test]
async fn readable_basics() {
    check(r#"
      let ctl;
      const rs = new ReadableStream({ start(c) { ctl = c; c.enqueue('a'); c.enqueue('b'); } });
      eq(ctl.desiredSize, -1, 'desiredSize with hwm 1 and two queued');
      ok(!rs.locked, 'not locked');
      const r = rs.getReader();
      ok(rs.locked, 'locked by reader');
      throws(() => rs.getReader(), 'TypeError', 'second reader');
      eq(await r.read(), { value: 'a', done: false }, 'first read');
      eq(await r.read(), { value: 'b', done: false }, 'second read');
      const pending = r.read();
      ctl.enqueue('c');
      eq(await pending, { value: 'c', done: false }, 'pending read fulfilled by enqueue');
      ctl.close();
      throws(() => ctl.enqueue('d'), 'TypeError', 'enqueue after close');
      throws(() => ctl.close(), 'TypeError', 'close twice');
      eq(await r.read(), { done: true }, 'done after close');
      eq(await r.closed, undefined, 'closed resolves');
      eq(ctl.desiredSize, 0, 'desiredSize of a closed stream');
      r.releaseLock();
      ok(!rs.locked, 'released');
      await rejects(r.read(), 'TypeError', 'read after releaseLock');
      await rejects(r.closed, 'TypeError', 'closed after releaseLock');
      throws(() => rs.getReader({ mode: 'byob' }), 'TypeError', 'byob reader');
      throws(() => rs.getReader({ mode: 'nope' }), 'TypeError', 'bad mode');
      throws(() => new ReadableStream({ type: 'nope' }), 'RangeError', 'bad type');
      throws(() => new ReadableStream({}, { highWaterMark: -1 }), 'RangeError', 'negative hwm');
      throws(() => new ReadableStream({ start() { throw new SyntaxError('x'); } }), 'SyntaxError', 'start throws');
      throws(() => new ReadableStream({ pull: 1 }), 'TypeError', 'pull not a function');
      throws(() => new ReadableStreamDefaultController(), 'TypeError', 'controller constructor');
      const r2 = new ReadableStreamDefaultReader(new ReadableStream());
      ok(r2 instanceof ReadableStreamDefaultReader, 'reader constructor');
      throws(() => new ReadableStreamDefaultReader({}), 'TypeError', 'reader of a non-stream');
      eq(Object.prototype.toString.call(rs), '[object ReadableStream]', 'toStringTag');
    "#).await;
}

#[tokio::test]
async fn readable_pull_errors_and_cancel() {
    check(r#"
      let pulls = 0;
      const rs = new ReadableStream({ pull(c) { pulls++; c.enqueue(pulls); if (pulls === 3) c.close(); } },
        { highWaterMark: 0 });
      await tick();
      eq(pulls, 0, 'hwm 0: no pull before a read');
      const r = rs.getReader();
      const got = [];
      for (;;) { const { value, done } = await r.read(); if (done) break; got.push(value); }
      eq(got, [1, 2, 3], 'pulled on demand');
      let ctl;
      const es = new ReadableStream({ start(c) { ctl = c; } });
      const er = es.getReader();
      const p = er.read();
      ctl.error(new RangeError('boom'));
      await rejects(p, 'RangeError', 'pending read rejects');
      await rejects(er.read(), 'RangeError', 'later read rejects');
      await rejects(er.closed, 'RangeError', 'closed rejects');
      const pe = new ReadableStream({ pull() { throw new URIError('pull'); } });
      await rejects(pe.getReader().read(), 'URIError', 'pull throwing errors the stream');
      const se = new ReadableStream({ start() { return Promise.reject(new EvalError('start')); } });
      await rejects(se.getReader().read(), 'EvalError', 'start rejecting errors the stream');
      let reason;
      const cs = new ReadableStream({ start(c) { c.enqueue(1); }, cancel(r) { reason = r; } });
      eq(await cs.cancel('why'), undefined, 'cancel resolves');
      eq(reason, 'why', 'cancel reason reaches the source');
      eq(await cs.getReader().read(), { done: true }, 'canceled stream is closed');
      const locked = new ReadableStream(); locked.getReader();
      await rejects(locked.cancel(), 'TypeError', 'cancel a locked stream');
      const sized = new ReadableStream({ start(c) { c.enqueue('abcd'); eq(c.desiredSize, 6, 'size strategy'); } },
        { highWaterMark: 10, size: (ch) => ch.length });
      const bl = new ReadableStream({ start(c) { c.enqueue(new Uint8Array(3)); eq(c.desiredSize, 1, 'byte length strategy'); } },
        new ByteLengthQueuingStrategy({ highWaterMark: 4 }));
      eq(new CountQueuingStrategy({ highWaterMark: 3 }).highWaterMark, 3, 'count strategy');
      throws(() => new CountQueuingStrategy({}), 'TypeError', 'count strategy without highWaterMark');
      throws(() => new ByteLengthQueuingStrategy(null), 'TypeError', 'byte strategy without init');
      const bad = new ReadableStream({ start(c) { throws(() => c.enqueue('x'), 'RangeError', 'bad size'); } },
        { size: () => -1 });
      await rejects(bad.getReader().read(), 'RangeError', 'bad size errors the stream');
    "#).await;
}

#[tokio::test]
async fn readable_iteration_tee_from() {
    check(r#"
      const mk = () => new ReadableStream({ start(c) { c.enqueue(1); c.enqueue(2); c.enqueue(3); c.close(); } });
      const got = [];
      for await (const v of mk()) got.push(v);
      eq(got, [1, 2, 3], 'for await');
      let canceled = false;
      const inf = new ReadableStream({ pull(c) { c.enqueue(0); }, cancel() { canceled = true; } });
      for await (const v of inf) break;
      ok(canceled, 'break cancels');
      ok(!inf.locked, 'break releases');
      canceled = false;
      const inf2 = new ReadableStream({ pull(c) { c.enqueue(0); }, cancel() { canceled = true; } });
      for await (const v of inf2.values({ preventCancel: true })) break;
      ok(!canceled, 'preventCancel');
      const [a, b] = mk().tee();
      const ra = [], rb = [];
      for await (const v of a) ra.push(v);
      for await (const v of b) rb.push(v);
      eq([ra, rb], [[1, 2, 3], [1, 2, 3]], 'tee');
      let reasons;
      const src = new ReadableStream({ cancel(r) { reasons = r; } });
      const [x, y] = src.tee();
      ok(src.locked, 'tee locks the source');
      const c1 = x.cancel('r1'); await tick(); eq(reasons, undefined, 'one branch canceled: source untouched');
      await y.cancel('r2'); await c1; eq(reasons, ['r1', 'r2'], 'both canceled: reasons');
      const fromArr = [];
      for await (const v of ReadableStream.from([1, Promise.resolve(2)])) fromArr.push(v);
      eq(fromArr, [1, 2], 'from(array), promises awaited');
      async function* gen() { yield 'x'; yield 'y'; }
      const fromGen = [];
      for await (const v of ReadableStream.from(gen())) fromGen.push(v);
      eq(fromGen, ['x', 'y'], 'from(async generator)');
      let returned = false;
      const it = { [Symbol.asyncIterator]() { return { next: async () => ({ value: 1, done: false }), return: async () => { returned = true; return {}; } }; } };
      await ReadableStream.from(it).cancel();
      ok(returned, 'cancel calls return()');
      throws(() => ReadableStream.from(5), 'TypeError', 'from(non-iterable)');
      const errGen = ReadableStream.from((async function* () { yield 1; throw new RangeError('gen'); })());
      const er = errGen.getReader();
      await er.read();
      await rejects(er.read(), 'RangeError', 'iterator error errors the stream');
    "#).await;
}

#[tokio::test]
async fn writable_stream() {
    check(r#"
      const log = [];
      const ws = new WritableStream({
        start() { log.push('start'); },
        async write(chunk) { await tick(); log.push('w:' + chunk); },
        close() { log.push('close'); },
      }, { highWaterMark: 2 });
      const w = ws.getWriter();
      ok(ws.locked, 'locked');
      throws(() => ws.getWriter(), 'TypeError', 'second writer');
      eq(w.desiredSize, 2, 'desiredSize');
      const p1 = w.write('a'), p2 = w.write('b');
      eq(w.desiredSize, 0, 'desiredSize after two writes');
      let ready = false; w.ready.then(() => { ready = true; });
      await tick();
      ok(!ready, 'backpressure: ready pending');
      await p1; await p2;
      await w.close();
      eq(log, ['start', 'w:a', 'w:b', 'close'], 'sink calls in order');
      await w.closed;
      await rejects(w.write('c'), 'TypeError', 'write after close');
      await rejects(w.close(), 'TypeError', 'close twice');
      w.releaseLock();
      await rejects(w.write('x'), 'TypeError', 'write after releaseLock');
      throws(() => w.desiredSize, 'TypeError', 'desiredSize after releaseLock');

      let abortReason, signalAborted = false;
      const aw = new WritableStream({
        start(c) { c.signal.addEventListener('abort', () => { signalAborted = true; }); },
        write() { return new Promise(() => {}); },
        abort(r) { abortReason = r; },
      });
      const awr = aw.getWriter();
      const pending = awr.write('x');
      const ab = awr.abort('stop');
      ok(signalAborted, 'controller.signal aborted');
      eq(await pending.then(() => 'resolved', (e) => e), 'stop', 'a queued write rejects with the abort reason');
      eq(await ab, undefined, 'abort resolves');
      eq(abortReason, 'stop', 'sink abort called with the reason');

      const ew = new WritableStream({ write() { throw new URIError('sink'); } });
      const eww = ew.getWriter();
      await rejects(eww.write(1), 'URIError', 'sink write error rejects the write');
      await rejects(eww.closed, 'URIError', 'and errors the stream');
      await rejects(eww.write(2), 'URIError', 'later writes reject');

      let ctl;
      const cw = new WritableStream({ start(c) { ctl = c; } });
      const cww = cw.getWriter();
      ctl.error(new EvalError('ctl'));
      await rejects(cww.closed, 'EvalError', 'controller.error');
      await rejects(cww.ready, 'EvalError', 'ready rejects too');

      let aborted;
      const plain = new WritableStream({ abort(r) { aborted = r; } });
      await plain.abort('r');
      eq(aborted, 'r', 'WritableStream.abort');
      const locked = new WritableStream(); locked.getWriter();
      await rejects(locked.abort(), 'TypeError', 'abort locked');
      await rejects(locked.close(), 'TypeError', 'close locked');
      throws(() => new WritableStream({ type: 'x' }), 'RangeError', 'sink type');
    "#).await;
}

#[tokio::test]
async fn transform_and_pipes() {
    check(r#"
      const upper = () => new TransformStream({
        transform(chunk, c) { c.enqueue(String(chunk).toUpperCase()); },
        flush(c) { c.enqueue('!'); },
      });
      const src = () => new ReadableStream({ start(c) { c.enqueue('a'); c.enqueue('b'); c.close(); } });
      const out = [];
      for await (const v of src().pipeThrough(upper())) out.push(v);
      eq(out, ['A', 'B', '!'], 'pipeThrough with flush');
      const ident = new TransformStream();
      const w = ident.writable.getWriter();
      w.write('x'); w.close();
      const r = [];
      for await (const v of ident.readable) r.push(v);
      eq(r, ['x'], 'identity transform');
      const collected = [];
      const sink = new WritableStream({ write(c) { collected.push(c); } });
      await src().pipeThrough(upper()).pipeThrough(new TransformStream({ transform(c, k) { k.enqueue(c + c); } })).pipeTo(sink);
      eq(collected, ['AA', 'BB', '!!'], 'chained pipes into a sink');
      const failing = new TransformStream({ transform() { throw new RangeError('t'); } });
      const fr = src().pipeThrough(failing).getReader();
      await rejects(fr.read(), 'RangeError', 'transform error reaches the readable');
      let canceled;
      const errSrc = new ReadableStream({ start(c) { c.error(new SyntaxError('src')); } });
      let abortedWith;
      await rejects(errSrc.pipeTo(new WritableStream({ abort(r) { abortedWith = r; } })), 'SyntaxError', 'source error rejects pipeTo');
      eq(abortedWith && abortedWith.name, 'SyntaxError', 'and aborts the destination');
      const badSink = new WritableStream({ write() { throw new EvalError('sink'); } });
      const infinite = new ReadableStream({ pull(c) { c.enqueue(1); }, cancel(r) { canceled = r; } });
      await rejects(infinite.pipeTo(badSink), 'EvalError', 'destination error rejects pipeTo');
      eq(canceled && canceled.name, 'EvalError', 'and cancels the source');
      const keepOpen = new WritableStream();
      await src().pipeTo(keepOpen, { preventClose: true });
      const kw = keepOpen.getWriter();
      await kw.write('still open');
      const ac = new AbortController();
      const slow = new ReadableStream({ pull(c) { return tick().then(() => c.enqueue(1)); } });
      const piping = slow.pipeTo(new WritableStream(), { signal: ac.signal });
      ac.abort();
      await rejects(piping, 'AbortError', 'signal aborts pipeTo');
      throws(() => src().pipeThrough({}), 'TypeError', 'pipeThrough without a pair');
      await rejects(src().pipeTo({}), 'TypeError', 'pipeTo a non-stream');
      const term = new TransformStream({ transform(c, k) { k.enqueue(c); k.terminate(); } });
      const tw = term.writable.getWriter();
      tw.write('only').catch(() => {});
      const tr = [];
      for await (const v of term.readable) tr.push(v);
      eq(tr, ['only'], 'terminate closes the readable');
      const enc = [];
      for await (const v of ReadableStream.from(['h', 'é', '\ud83d', '\ude00']).pipeThrough(new TextEncoderStream())) enc.push(...v);
      eq(enc, [104, 195, 169, 240, 159, 152, 128], 'TextEncoderStream joins surrogate pairs');
      const dec = [];
      const euro = bytes('x€');
      for await (const v of ReadableStream.from([euro.subarray(0, 2), euro.subarray(2)]).pipeThrough(new TextDecoderStream())) dec.push(v);
      eq(dec.join(''), 'x€', 'TextDecoderStream across chunks');
      eq(new TextDecoderStream().encoding, 'utf-8', 'encoding');
    "#).await;
}

#[tokio::test]
async fn stream_bodies() {
    check(r#"
      const gen = () => new ReadableStream({ async pull(c) {
        this.n = (this.n || 0) + 1;
        await tick();
        if (this.n > 3) c.close(); else c.enqueue(bytes('p' + this.n));
      } });
      const r = new Response(gen(), { headers: { 'content-type': 'text/plain' } });
      ok(!r.bodyUsed, 'not used yet');
      eq(await r.text(), 'p1p2p3', 'text() drains the stream');
      ok(r.bodyUsed, 'used');
      await rejects(r.text(), 'TypeError', 'read twice');
      const body = new Response('hello').body;
      ok(body instanceof ReadableStream, 'body is a ReadableStream');
      const rd = body.getReader();
      const c1 = await rd.read();
      ok(c1.value instanceof Uint8Array, 'chunks are Uint8Array');
      eq(text(c1.value), 'hello', 'chunk content');
      eq((await rd.read()).done, true, 'then done');
      const locked = new Response('x'); locked.body.getReader();
      await rejects(locked.text(), 'TypeError', 'locked body cannot be read');
      ok(!locked.bodyUsed, 'locked is not used');
      const partly = new Response(gen()); await partly.body.getReader().read();
      ok(partly.bodyUsed, 'disturbed body is used');
      throws(() => new Response(partly.body), 'TypeError', 'locked stream as a body');
      const tc = new Response(gen());
      const tclone = tc.clone();
      eq([await tc.text(), await tclone.text()], ['p1p2p3', 'p1p2p3'], 'clone tees a stream body');
      const req = new Request('https://a.example/', { method: 'POST', body: gen() });
      eq(await req.text(), 'p1p2p3', 'Request with a stream body');
      throws(() => new Request('https://a.example/', { body: gen() }), 'TypeError', 'GET with a stream body');
      const moved = new Request(new Request('https://a.example/', { method: 'PUT', body: gen() }));
      eq(await moved.text(), 'p1p2p3', 'new Request(request) moves the stream');
      eq(await new Response(new Blob(['bl', 'ob']).stream()).text(), 'blob', 'Blob.stream()');
      eq(await new Response(new Response('re').body).text(), 're', 'known body through .body');
      eq(await new Response(gen()).json().catch((e) => e.name), 'SyntaxError', 'json() of a non-JSON stream');
      const bad = new Response(new ReadableStream({ start(c) { c.enqueue(42); c.close(); } }));
      await rejects(bad.text(), 'TypeError', 'non-bytes chunk');
      const errored = new Response(new ReadableStream({ start(c) { c.error(new RangeError('e')); } }));
      await rejects(errored.arrayBuffer(), 'RangeError', 'stream error rejects the read');
      throws(() => new Response(gen(), { status: 204 }), 'TypeError', 'null-body status with a stream');
    "#).await;
}

#[tokio::test]
async fn returned_stream_is_drained() {
    let src = r#"export default async () => {
      let n = 0;
      const s = new ReadableStream({ async pull(c) {
        await new Promise((r) => setTimeout(r, 1));
        n++; if (n > 3) c.close(); else c.enqueue(new TextEncoder().encode(`chunk${n};`));
      } });
      return new Response(s, { status: 201, headers: { 'x-s': '1' } });
    }"#;
    let inv = run(&engine(), src, &request("https://site.example/")).await;
    let r = response(&inv);
    assert_eq!(r.status, 201);
    assert_eq!(r.header("x-s"), Some("1"));
    assert_eq!(body(&inv), "chunk1;chunk2;chunk3;");
}

#[tokio::test]
async fn next_body_transformed_and_returned() {
    let src = r#"export default async (req, context) => {
      const resp = await context.next();
      const upper = new TransformStream({
        transform(chunk, c) { c.enqueue(new TextEncoder().encode(new TextDecoder().decode(chunk).toUpperCase())); },
      });
      context.cookies.set({ name: 'a', value: 'b' });
      return new Response(resp.body.pipeThrough(upper), resp);
    }"#;
    let inv = run(&engine(), src, &request("https://site.example/x")).await;
    let r = response(&inv);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-origin"), Some("1"));
    assert_eq!(body(&inv), "NEXT GET HTTPS://SITE.EXAMPLE/X BODY=");
    assert!(r
        .headers
        .iter()
        .any(|(k, v)| k == "set-cookie" && v == "a=b"));

    // A fetch body read with a reader, and a stream body sent with fetch.
    let src = r#"export default async () => {
      const resp = await fetch('https://o.example/');
      const reader = resp.body.getReader();
      let s = '';
      for (;;) { const { value, done } = await reader.read(); if (done) break; s += new TextDecoder().decode(value); }
      const sent = await fetch('https://o.example/post', { method: 'POST',
        body: ReadableStream.from(['a', 'b']).pipeThrough(new TextEncoderStream()) });
      return new Response(s + ' | ' + await sent.text());
    }"#;
    let inv = run(&engine(), src, &request("https://site.example/")).await;
    assert_eq!(
        body(&inv),
        "fetch GET https://o.example/ body= | fetch POST https://o.example/post body=ab"
    );
}

#[tokio::test]
async fn returned_stream_errors() {
    let e = engine();
    let bundle = Bundle::single(
        "errs",
        r#"export default async (req) => {
          const u = new URL(req.url);
          if (u.pathname === '/error') return new Response(new ReadableStream({ start(c) { c.enqueue(new Uint8Array(1)); }, pull(c) { c.error(new RangeError('gone')); } }));
          if (u.pathname === '/type') return new Response(new ReadableStream({ start(c) { c.enqueue({}); c.close(); } }));
          if (u.pathname === '/read') { const r = new Response(ReadableStream.from(['x'])); await r.text(); return r; }
          return new Response('fine');
        }"#,
    );
    let host = TestHost::default();
    for (path, kind) in [
        ("/error", ErrorKind::Uncaught),
        ("/type", ErrorKind::InvalidReturn),
        ("/read", ErrorKind::InvalidReturn),
    ] {
        let inv = e
            .invoke(
                &bundle,
                &request(&format!("https://s.example{path}")),
                &host,
            )
            .await;
        assert_eq!(error_kind(&inv), Some(kind), "{path}: {:?}", inv.outcome);
    }
    let inv = e
        .invoke(&bundle, &request("https://s.example/"), &host)
        .await;
    assert_eq!(body(&inv), "fine");
    assert!(
        !inv.telemetry.cold_start,
        "these errors do not poison the isolate"
    );
}

/// A returned stream that never ends is stopped by the body cap, the CPU
/// limit or the wall-clock limit; the host is never held.
#[tokio::test]
async fn endless_returned_streams_are_stopped() {
    let e = Engine::new(Limits {
        wall_time: Duration::from_millis(400),
        ..Limits::default()
    });
    let bundle = Bundle::single(
        "endless",
        r#"export default async (req) => {
          const u = new URL(req.url);
          const big = new Uint8Array(1 << 20);
          if (u.pathname === '/big') return new Response(new ReadableStream({ pull(c) { c.enqueue(big); } }));
          if (u.pathname === '/tiny') return new Response(new ReadableStream({ pull(c) { c.enqueue(new Uint8Array(1)); } }));
          if (u.pathname === '/slow') return new Response(new ReadableStream({ pull(c) { return new Promise((r) => setTimeout(() => { c.enqueue(new Uint8Array(1)); r(); }, 5)); } }));
          if (u.pathname === '/stuck') return new Response(new ReadableStream({ start() {} }));
          return new Response('fine');
        }"#,
    );
    let host = TestHost::default();
    let ok = |path: &str| request(&format!("https://s.example{path}"));

    // The cap: an error, and the isolate (not poisoned) serves the next request.
    let inv = e.invoke(&bundle, &ok("/big"), &host).await;
    assert_eq!(
        error_kind(&inv),
        Some(ErrorKind::InvalidReturn),
        "{:?}",
        inv.outcome
    );
    match &inv.outcome {
        InvocationOutcome::Error(err) => assert!(
            err.message.contains("larger than 33554432 bytes"),
            "{}",
            err.message
        ),
        _ => unreachable!(),
    }
    let inv = e.invoke(&bundle, &ok("/"), &host).await;
    assert_eq!(body(&inv), "fine");
    assert!(!inv.telemetry.cold_start);

    // CPU and wall-clock limits poison the isolate: the next request gets a fresh one.
    for (path, kind) in [
        ("/tiny", ErrorKind::CpuLimit),
        ("/slow", ErrorKind::WallTimeout),
    ] {
        let inv = e.invoke(&bundle, &ok(path), &host).await;
        assert_eq!(error_kind(&inv), Some(kind), "{path}: {:?}", inv.outcome);
        assert_eq!(e.idle_isolates(), 0, "{path}: the isolate is dropped");
        let inv = e.invoke(&bundle, &ok("/"), &host).await;
        assert_eq!(body(&inv), "fine");
        assert!(inv.telemetry.cold_start, "{path}: a fresh isolate");
    }

    // A stream that waits for nothing can never end.
    let inv = e.invoke(&bundle, &ok("/stuck"), &host).await;
    assert_eq!(
        error_kind(&inv),
        Some(ErrorKind::NoResponse),
        "{:?}",
        inv.outcome
    );
}
