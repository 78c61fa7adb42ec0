//! Web globals, WPT-style: each test runs assertions inside the isolate and
//! fails with the list of the assertions that did not hold.

mod common;
use common::*;

#[tokio::test]
async fn headers() {
    check(r#"
      const h = new Headers({ 'Content-Type': 'text/html', 'X-B': ' 1 ' });
      eq(h.get('content-type'), 'text/html', 'case-insensitive get');
      eq(h.get('x-b'), '1', 'values are trimmed');
      eq(h.get('missing'), null, 'missing is null');
      h.append('x-b', '2');
      eq(h.get('X-B'), '1, 2', 'append combines');
      h.set('x-b', '3');
      eq(h.get('x-b'), '3', 'set replaces all');
      ok(h.has('X-b'), 'has');
      h.delete('x-B');
      ok(!h.has('x-b'), 'delete');
      h.append('set-cookie', 'a=1'); h.append('set-cookie', 'b=2'); h.append('a-first', 'z');
      eq([...h], [['a-first', 'z'], ['content-type', 'text/html'], ['set-cookie', 'a=1'], ['set-cookie', 'b=2']], 'sorted iteration, set-cookie unsplit');
      eq(h.getSetCookie(), ['a=1', 'b=2'], 'getSetCookie');
      eq([...h.keys()].length, 4, 'keys');
      eq(new Headers([['a', '1'], ['a', '2']]).get('a'), '1, 2', 'from pairs');
      eq(new Headers(new Headers({ q: 'r' })).get('q'), 'r', 'from Headers');
      throws(() => new Headers({ 'bad name': 'x' }), 'TypeError', 'invalid name');
      throws(() => new Headers({ a: 'x\r\ny: z' }), 'TypeError', 'CRLF in value');
      throws(() => new Headers([['a']]), 'TypeError', 'bad pair');
      throws(() => new Headers().set('ä', '1'), 'TypeError', 'non-token name');
      const seen = []; new Headers({ b: '2', a: '1' }).forEach((v, k) => seen.push(k + v));
      eq(seen, ['a1', 'b2'], 'forEach');
      eq(Object.prototype.toString.call(h), '[object Headers]', 'toStringTag');
    "#).await;
}

/// A record (`{ name: value }`) is read by Rust, a sequence of pairs by the
/// glue: both must give the same list and refuse with the same error.
#[tokio::test]
async fn headers_from_a_record_match_headers_from_pairs() {
    check(r#"
      const list = (init) => { try { return [...new Headers(init)]; } catch (e) { return e.constructor.name + ': ' + e.message; } };
      const same = (rec, label) => eq(list(rec), list(Object.keys(rec).map((k) => [k, rec[k]])), label);
      same({ 'Content-Type': 'text/plain', 'X-UP': 'A' }, 'names lowercased');
      same({ a: ' \t padded \r\n', b: '', c: ' ', d: 'in  side' }, 'trimmed values, empty values');
      same({ n: 1, f: 1.5, t: true, u: undefined, z: null, o: { toString: () => 'obj' } }, 'values made strings');
      same({ 2: 'two', b: 'b', 1: 'one', a: 'a' }, 'key order');
      same({ latin: 'caf\u00e9 \u00ff' }, 'Latin-1 values');
      same({ 'bad name': 'x' }, 'invalid name');
      same({ 'ä': 'x' }, 'non-ASCII name');
      same({ '': 'x' }, 'empty name');
      same({ a: 'x\r\ny: z' }, 'CRLF in value');
      same({ a: 'nul\0' }, 'NUL in value');
      same({ a: '\u0100' }, 'a character above U+00FF');
      same({ a: '\ud800' }, 'a lone surrogate');
      same({ a: { toString() { throw new RangeError('no string'); } } }, 'toString throws');
      eq(list({ a: Symbol('s') }).startsWith('TypeError'), true, 'a symbol value');
      let reads = 0;
      const rec = { get a() { reads++; return 'v'; } };
      eq(list(rec), [['a', 'v']], 'a getter');
      eq(reads, 1, 'the getter runs once');
      const hidden = Object.defineProperty({ shown: '1' }, 'hidden', { value: '2', enumerable: false });
      eq(list(hidden), [['shown', '1']], 'non-enumerable keys skipped');
      eq(list({ [Symbol('k')]: 'x', k: 'y' }), [['k', 'y']], 'symbol keys skipped');
      const withIter = { a: '1', [Symbol.iterator]: function* () { yield ['b', '2']; } };
      eq(list(withIter), [['b', '2']], 'an own iterator makes it a sequence');
      const inherited = Object.create({ up: 'x' }); inherited.own = 'y';
      eq(list(inherited), [['own', 'y']], 'inherited keys skipped');
      const fn = () => {}; fn.k = 'v';
      eq(list(fn), [['k', 'v']], 'a function is a record');
      eq(list(new Proxy({ p: 'q' }, {})), [['p', 'q']], 'a proxy');
      eq(list(42), 'TypeError: Headers init must be an object or iterable', 'a number');
      eq(new Response('x', { headers: { 'X-A': ' b ' } }).headers.get('x-a'), 'b', 'through Response');
      eq(new Request('https://s.example/', { headers: { 'X-A': 'b' } }).headers.get('x-a'), 'b', 'through Request');
    "#).await;
}

/// The usual `new Response(text, { status, headers: { ... } })` is made in
/// Rust (quick.rs) and the rest by the glue: built both ways (headers as a
/// record, or as pairs, which the glue reads), a response must look the
/// same, refuse the same inputs with the same error, and read each member
/// of its init once, in the glue's order.
#[tokio::test]
async fn quick_responses_match_the_glue() {
    check(r#"
      const view = async (make) => {
        let r;
        try { r = make(); } catch (e) { return e.constructor.name + ': ' + e.message; }
        const head = [r.status, r.statusText, r.ok, r.type, r.url, r.redirected, r.bodyUsed, [...r.headers]];
        return [head, r.body === null, await r.text(), r.bodyUsed];
      };
      const pairs = (h) => (h && typeof h === 'object' ? Object.keys(h).map((k) => [k, h[k]]) : h);
      const same = async (body, init, label) => {
        const slow = init && typeof init === 'object' ? { ...init, headers: pairs(init.headers) } : init;
        eq(await view(() => new Response(body, init)), await view(() => new Response(body, slow)), label);
      };
      await same(undefined, undefined, 'nothing');
      await same(null, null, 'null body, null init');
      await same('hi', undefined, 'text');
      await same('', {}, 'empty text');
      await same('hi', { status: 201 }, 'a status');
      await same('hi', { status: 599 }, 'the highest status');
      await same(null, { status: 204 }, 'a null body status without a body');
      await same('x', { status: 204 }, 'a null body status with text');
      await same('x', { status: 199 }, 'a status too low');
      await same('x', { status: 600 }, 'a status too high');
      await same('x', { status: 200.5 }, 'a fractional status');
      await same('x', { status: '201' }, 'a status as a string');
      await same('x', { status: NaN }, 'NaN');
      await same('x', { status: 302, statusText: 'Found' }, 'a statusText');
      await same('x', { statusText: 'bad\n' }, 'a bad statusText');
      await same('x', { headers: { 'Content-Type': 'text/html', 'X-Up': ' padded ' } }, 'headers, content-type given');
      await same('x', { headers: { 'x-a': '1', 'content-type': 'a/b' }, status: 203 }, 'content-type given last');
      await same('x', { headers: { 'bad name': '1' } }, 'a bad header name');
      await same('x', { headers: { a: 'x\r\nb: y' } }, 'a bad header value');
      await same('x', { headers: { n: 1, o: { toString: () => 'obj' } } }, 'values made strings');
      await same('x', { headers: { latin: 'caf\u00e9' } }, 'a Latin-1 value');
      await same('caf\u00e9 \u{1F600}', undefined, 'non-ASCII text');
      await same('a\ud800b', undefined, 'a lone surrogate');
      await same(new Uint8Array([104, 105]), { headers: { a: '1' } }, 'bytes');
      await same(new URLSearchParams('a=1'), { status: 201 }, 'form text');
      await same('x', 5, 'a number for init');
      await same('x', 'init', 'a string for init');
      eq(await view(() => new Response('x', { headers: new Headers({ a: '1' }) })),
         await view(() => new Response('x', { headers: { a: '1' } })), 'headers from a Headers');
      const jsame = async (init, label) => {
        const slow = init && typeof init === 'object' ? { ...init, headers: pairs(init.headers) } : init;
        eq(await view(() => Response.json({ k: [1] }, init)), await view(() => Response.json({ k: [1] }, slow)), label);
      };
      await jsame(undefined, 'json');
      await jsame(null, 'json, null init');
      await jsame({ status: 201, headers: { 'X-J': 'y' } }, 'json with headers');
      await jsame({ headers: { 'Content-Type': 'text/x' } }, 'json with a type of its own');
      await jsame({ status: '202' }, 'json, a status for the glue');
      await jsame({ status: 204 }, 'json with a null body status');
      eq((await view(() => Response.json({ k: 1 }, { headers: { a: '1' } })))[0][7],
         [['a', '1'], ['content-type', 'application/json']], 'json type');
      let jsonReads = 0;
      Response.json(1, { get headers() { jsonReads++; return { a: '1' }; } });
      eq(jsonReads, 1, 'json reads its headers once');

      // Each member read once, in order, on every path.
      for (const [label, values] of [
        ['quick', { status: 200, statusText: undefined, headers: { a: '1' } }],
        ['a status for the glue', { status: '200', statusText: undefined, headers: { a: '1' } }],
        ['a statusText', { status: 200, statusText: 'OK', headers: { a: '1' } }],
        ['pairs', { status: 200, statusText: undefined, headers: [['a', '1']] }],
      ]) {
        const reads = [];
        const init = {};
        for (const k of Object.keys(values)) Object.defineProperty(init, k, { get() { reads.push(k); return values[k]; }, enumerable: true });
        const r = new Response(new Uint8Array(1), init);
        eq(reads, ['status', 'statusText', 'headers'], label + ': reads');
        eq(r.headers.get('a'), '1', label + ': headers');
      }
      const order = [];
      const init = { get status() { order.push('status'); return 700; }, get headers() { order.push('headers'); return {}; } };
      throws(() => new Response('x', init), 'RangeError', 'a bad status from a getter');
      eq(order, ['status'], 'nothing read after a bad status');

      // The class.
      class Mine extends Response { constructor(t) { super(t, { status: 202 }); this.extra = 1; } }
      const m = new Mine('sub');
      ok(m instanceof Mine && m instanceof Response, 'a subclass instance');
      eq([m.status, m.extra, Object.getPrototypeOf(m) === Mine.prototype], [202, 1, true], 'a subclass keeps its prototype');
      eq(await m.text(), 'sub', 'a subclass body');
      eq(Object.getPrototypeOf(Response), Function.prototype, 'the constructor is a plain function');
      eq(Object.getPrototypeOf(Response.prototype), Object.prototype, 'the prototype chain');
      eq([Response.name, Response.length], ['Response', 0], 'name and length');
      throws(() => Response('x'), 'TypeError', 'called without new');
      eq(Object.prototype.toString.call(new Response('x')), '[object Response]', 'toStringTag');
      eq(Object.keys(new Response('x', { headers: { a: '1' } })), [], 'no own properties');
      throws(() => Object.getOwnPropertyDescriptor(Response.prototype, 'status').get.call({}), 'TypeError', 'a getter on a plain object');
      const c = new Response('orig', { headers: { a: '1' } }).clone();
      eq([c.headers.get('a'), await c.text()], ['1', 'orig'], 'clone');
    "#).await;
}

#[tokio::test]
async fn url() {
    check(r#"
      const u = new URL('https://user:pw@Example.COM:8080/a/./b/../c?x=1&y=2#frag');
      eq(u.href, 'https://user:pw@example.com:8080/a/c?x=1&y=2#frag', 'href normalised');
      eq([u.protocol, u.username, u.password, u.host, u.hostname, u.port, u.pathname, u.search, u.hash],
         ['https:', 'user', 'pw', 'example.com:8080', 'example.com', '8080', '/a/c', '?x=1&y=2', '#frag'], 'parts');
      eq(u.origin, 'https://example.com:8080', 'origin');
      eq(new URL('../x?q', 'https://a.example/b/c/d').href, 'https://a.example/b/x?q', 'relative with base');
      eq(new URL('https://a.example:443/').port, '', 'default port dropped');
      eq(new URL('https://münchen.example/').hostname, 'xn--mnchen-3ya.example', 'IDNA');
      eq(new URL('https://a.example/a b').pathname, '/a%20b', 'percent-encoding');
      throws(() => new URL('nope'), 'TypeError', 'invalid');
      throws(() => new URL('/x'), 'TypeError', 'relative without base');
      throws(() => new URL('/x', 'also bad'), 'TypeError', 'bad base');
      ok(URL.canParse('https://a.example/'), 'canParse');
      ok(!URL.canParse('x'), 'canParse false');
      eq(URL.parse('x'), null, 'parse null');
      const v = new URL('http://a.example/p');
      v.pathname = '/new path'; eq(v.href, 'http://a.example/new%20path', 'set pathname');
      v.search = 'k=v'; eq(v.search, '?k=v', 'set search');
      v.hash = 'h'; eq(v.hash, '#h', 'set hash');
      v.host = 'b.example:81'; eq(v.host, 'b.example:81', 'set host');
      v.port = 'x'; eq(v.port, '81', 'bad port ignored');
      v.protocol = 'https'; eq(v.protocol, 'https:', 'set protocol');
      v.href = 'https://c.example/'; eq(v.hostname, 'c.example', 'set href');
      throws(() => { v.href = 'bad'; }, 'TypeError', 'bad href');
      eq(JSON.stringify({ u: new URL('https://a.example') }), '{"u":"https://a.example/"}', 'toJSON');
      eq(String(new URL('https://a.example/x')), 'https://a.example/x', 'toString');
      const s = new URL('https://a.example/?a=1&b=2');
      s.searchParams.append('c', '3 4');
      eq(s.href, 'https://a.example/?a=1&b=2&c=3+4', 'searchParams write-through');
      s.search = '?z=9';
      eq(s.searchParams.get('z'), '9', 'search updates searchParams');
      s.searchParams.delete('z');
      eq(s.href, 'https://a.example/', 'empty params remove the query');
    "#).await;
}

#[tokio::test]
async fn url_search_params() {
    check(r#"
      const p = new URLSearchParams('?a=1&b=x%20y&a=2&c=+&d');
      eq(p.get('a'), '1', 'first value');
      eq(p.getAll('a'), ['1', '2'], 'getAll');
      eq(p.get('b'), 'x y', 'decoding');
      eq(p.get('c'), ' ', 'plus is space');
      eq(p.get('d'), '', 'no value');
      eq(p.size, 5, 'size');
      ok(p.has('a', '2') && !p.has('a', '3'), 'has with value');
      p.delete('a', '1');
      eq(p.getAll('a'), ['2'], 'delete with value');
      p.set('a', 'é&=');
      eq(p.toString(), 'b=x+y&a=%C3%A9%26%3D&c=+&d=', 'serialise (set keeps the position)');
      const q = new URLSearchParams({ z: '1', a: '2' }); q.append('b', '3'); q.sort();
      eq([...q.keys()], ['a', 'b', 'z'], 'sort');
      eq([...new URLSearchParams([['x', '1'], ['y', '2']])], [['x', '1'], ['y', '2']], 'from pairs');
      throws(() => new URLSearchParams([['x']]), 'TypeError', 'bad pair');
      eq(new URLSearchParams(q).toString(), q.toString(), 'copy');
    "#).await;
}

#[tokio::test]
async fn request_class() {
    check(r#"
      const r = new Request('https://a.example/x', { method: 'post', headers: { 'x-a': '1' }, body: 'hi' });
      eq(r.method, 'POST', 'method normalised');
      eq(r.url, 'https://a.example/x', 'url');
      eq(r.headers.get('x-a'), '1', 'headers');
      eq(r.headers.get('content-type'), 'text/plain;charset=UTF-8', 'default content-type');
      ok(!r.bodyUsed, 'not used');
      const c = r.clone();
      eq(await r.text(), 'hi', 'text');
      ok(r.bodyUsed, 'used');
      await rejects(r.text(), 'TypeError', 'second read');
      eq(await c.text(), 'hi', 'clone has its own body');
      eq(new Request('https://a.example/', { method: 'patch' }).method, 'patch', 'patch kept as is');
      throws(() => new Request('https://a.example/', { method: 'CONNECT' }), 'TypeError', 'forbidden method');
      throws(() => new Request('https://a.example/', { body: 'x' }), 'TypeError', 'GET with body');
      throws(() => new Request('/relative'), 'TypeError', 'relative url');
      throws(() => new Request('https://u:p@a.example/'), 'TypeError', 'credentials');
      const d = new Request(new Request('https://a.example/', { method: 'PUT', body: 'b' }), { headers: { y: '2' } });
      eq([d.method, d.headers.get('y'), await d.text()], ['PUT', '2', 'b'], 'from Request');
      const j = new Request('https://a.example/', { method: 'POST', body: JSON.stringify({ k: [1] }) });
      eq(await j.json(), { k: [1] }, 'json');
      const ab = await new Request('https://a.example/', { method: 'POST', body: new Uint8Array([1, 2]) }).arrayBuffer();
      eq([...new Uint8Array(ab)], [1, 2], 'arrayBuffer');
      eq(await new Request('https://a.example/', { method: 'POST', body: new URLSearchParams('a=1') }).text(), 'a=1', 'form body');
      eq(request.method, 'GET', 'incoming request');
      eq(request.body, null, 'GET has null body');
      ok(request.signal instanceof AbortSignal, 'signal');
    "#).await;
}

#[tokio::test]
async fn response_class() {
    check(r#"
      const r = new Response('body', { status: 404, statusText: 'Nope', headers: { 'x-a': '1' } });
      eq([r.status, r.statusText, r.ok, r.type, r.redirected, r.url], [404, 'Nope', false, 'default', false, ''], 'fields');
      eq(await r.text(), 'body', 'text');
      eq([...new Uint8Array(await new Response('a\ud800b\udc00\ud83d\ude00').arrayBuffer())],
        [97, 239, 191, 189, 98, 239, 191, 189, 240, 159, 152, 128], 'lone surrogates in a string body become U+FFFD');
      const getter = (C, k) => Object.getOwnPropertyDescriptor(C.prototype, k).get;
      throws(() => getter(Request, 'method').call(new Response('x')), 'TypeError', 'a Request getter on a Response');
      throws(() => getter(Request, 'url').call({}), 'TypeError', 'a Request getter on an object');
      throws(() => getter(Response, 'status').call(new Request('https://s.example/')), 'TypeError', 'a Response getter on a Request');
      throws(() => getter(Response, 'headers').call(Object.create(Response.prototype)), 'TypeError', 'a Response getter on a bare prototype object');
      eq(new Response().status, 200, 'default status');
      ok(new Response().ok, 'ok');
      eq(new Response().body, null, 'null body');
      throws(() => new Response('x', { status: 199 }), 'RangeError', 'status < 200');
      throws(() => new Response('x', { status: 600 }), 'RangeError', 'status > 599');
      throws(() => new Response('x', { status: 204 }), 'TypeError', 'null-body status with body');
      eq(new Response(null, { status: 204 }).status, 204, '204 without body');
      const j = Response.json({ a: 1 }, { status: 201, headers: { 'x-j': 'y' } });
      eq([j.status, j.headers.get('content-type'), j.headers.get('x-j'), await j.text()], [201, 'application/json', 'y', '{"a":1}'], 'json');
      throws(() => Response.json(undefined), 'TypeError', 'json of undefined');
      const red = Response.redirect('https://a.example/to', 301);
      eq([red.status, red.headers.get('location')], [301, 'https://a.example/to'], 'redirect');
      throws(() => red.headers.set('x', 'y'), 'TypeError', 'redirect headers are immutable');
      throws(() => Response.redirect('https://a.example/', 200), 'RangeError', 'redirect status');
      throws(() => Response.redirect('/relative'), 'TypeError', 'redirect relative');
      const e = Response.error();
      eq([e.status, e.type], [0, 'error'], 'error');
      const c = new Response('twice');
      const c2 = c.clone();
      eq([await c.text(), await c2.text()], ['twice', 'twice'], 'clone');
      const b = new Response(new Uint8Array([104, 105]));
      eq(await b.text(), 'hi', 'bytes body');
      eq(b.headers.get('content-type'), null, 'no type for bytes');
      const s = new Response('streamed');
      const copy = new Response(s.body, s);
      eq(await copy.text(), 'streamed', 'new Response(res.body, res)');
      ok(s.bodyUsed, 'source body used');
      const chunks = [];
      for await (const ch of new Response('abc').body) chunks.push(...ch);
      eq(chunks, [97, 98, 99], 'body async iteration');
      const blob = await new Response('xy', { headers: { 'content-type': 'text/x' } }).blob();
      eq([blob.size, blob.type, await blob.text()], [2, 'text/x', 'xy'], 'blob');
      eq(await new Response(new Blob(['a', new Uint8Array([98])])).text(), 'ab', 'Blob body');
      const gen = new ReadableStream({ start(c) { c.enqueue(new TextEncoder().encode('g')); c.enqueue('h'); c.close(); } });
      eq(await new Response(gen).text(), 'gh', 'ReadableStream body');
      eq(Object.prototype.toString.call(r), '[object Response]', 'toStringTag');
    "#).await;
}

#[tokio::test]
async fn text_encoding() {
    check(r#"
      const enc = new TextEncoder();
      eq(enc.encoding, 'utf-8', 'encoding');
      eq([...enc.encode('aé€😀')], [97, 195, 169, 226, 130, 172, 240, 159, 152, 128], 'encode');
      eq([...enc.encode('\ud800')], [239, 191, 189], 'lone surrogate becomes U+FFFD');
      eq([...enc.encode()], [], 'encode()');
      const dest = new Uint8Array(5);
      eq(enc.encodeInto('a€b', dest), { read: 3, written: 5 }, 'encodeInto fits');
      eq(enc.encodeInto('€€', new Uint8Array(4)), { read: 1, written: 3 }, 'encodeInto stops at a whole char');
      const dec = new TextDecoder();
      eq(dec.decode(new Uint8Array([0xef, 0xbb, 0xbf, 104, 105])), 'hi', 'BOM stripped');
      eq(new TextDecoder('utf-8', { ignoreBOM: true }).decode(new Uint8Array([0xef, 0xbb, 0xbf, 104])), '\ufeffh', 'ignoreBOM');
      eq(dec.decode(new Uint8Array([104, 0xff, 105])), 'h\ufffdi', 'replacement');
      throws(() => new TextDecoder('utf-8', { fatal: true }).decode(new Uint8Array([0xff])), 'TypeError', 'fatal');
      throws(() => new TextDecoder('latin1'), 'RangeError', 'unsupported label');
      eq(dec.decode(), '', 'decode()');
      eq(dec.decode(new Uint16Array([0x6968]).buffer), 'hi', 'ArrayBuffer input');
      const bytes = enc.encode('x€y');
      eq(dec.decode(new DataView(bytes.buffer, 1, 3)), '€', 'view input');
      const s = new TextDecoder();
      eq(s.decode(bytes.subarray(0, 2), { stream: true }) + s.decode(bytes.subarray(2, 4), { stream: true }) + s.decode(bytes.subarray(4)), 'x€y', 'streaming split char');
      throws(() => dec.decode('str'), 'TypeError', 'string input');
    "#).await;
}

#[tokio::test]
async fn base64() {
    check(
        r#"
      eq(btoa('hello'), 'aGVsbG8=', 'btoa');
      eq(btoa('\xff\xfe'), '//4=', 'btoa latin1');
      throws(() => btoa('€'), 'InvalidCharacterError', 'btoa non-latin1');
      eq(atob('aGVsbG8='), 'hello', 'atob');
      eq(atob(' aGVs\nbG8 '), 'hello', 'atob whitespace');
      eq(atob('aGk'), 'hi', 'atob without padding');
      throws(() => atob('a'), 'InvalidCharacterError', 'atob bad length');
      throws(() => atob('*'), 'InvalidCharacterError', 'atob bad char');
      eq(atob(btoa('\x00\x01\x80')), '\x00\x01\x80', 'round trip');
      throws(() => btoa(), 'TypeError', 'btoa no argument');
    "#,
    )
    .await;
}

#[tokio::test]
async fn crypto() {
    check(r#"
      const a = new Uint8Array(32);
      ok(crypto.getRandomValues(a) === a, 'returns its argument');
      ok(a.some((x) => x !== 0), 'filled');
      const w = new Uint32Array(4); crypto.getRandomValues(w); ok(w.some((x) => x !== 0), 'Uint32Array');
      throws(() => crypto.getRandomValues(new Float64Array(2)), 'TypeMismatchError', 'float array');
      throws(() => crypto.getRandomValues(new Uint8Array(65537)), 'QuotaExceededError', 'too large');
      const u = crypto.randomUUID();
      ok(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(u), 'uuid v4: ' + u);
      ok(u !== crypto.randomUUID(), 'uuid unique');
      const hex = (b) => [...new Uint8Array(b)].map((x) => x.toString(16).padStart(2, '0')).join('');
      eq(hex(await crypto.subtle.digest('SHA-256', new TextEncoder().encode('abc'))),
         'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad', 'sha-256');
      eq(hex(await crypto.subtle.digest({ name: 'SHA-1' }, new Uint8Array(0))), 'da39a3ee5e6b4b0d3255bfef95601890afd80709', 'sha-1');
      await rejects(crypto.subtle.digest('MD5', new Uint8Array(0)), 'NotSupportedError', 'unknown digest');
      const key = await crypto.subtle.importKey('raw', new TextEncoder().encode('key'), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify']);
      const data = new TextEncoder().encode('The quick brown fox jumps over the lazy dog');
      const sig = await crypto.subtle.sign('HMAC', key, data);
      eq(hex(sig), 'f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8', 'hmac-sha256');
      ok(await crypto.subtle.verify('HMAC', key, sig, data), 'verify');
      ok(!(await crypto.subtle.verify('HMAC', key, new Uint8Array(32), data)), 'verify wrong');
      eq(key.algorithm.name, 'HMAC', 'key algorithm');
      await rejects(crypto.subtle.exportKey('raw', key), 'InvalidAccessError', 'not extractable');
    "#).await;
}

#[tokio::test]
async fn timers() {
    check(
        r#"
      const order = [];
      await new Promise((resolve) => {
        setTimeout(() => order.push('b'), 60);
        setTimeout((x) => order.push(x), 0, 'a');
        const c = setTimeout(() => order.push('never'), 5);
        clearTimeout(c);
        let n = 0;
        const i = setInterval(() => { order.push('i' + n); if (++n === 3) clearInterval(i); }, 1);
        setTimeout(resolve, 90);
      });
      eq(order, ['a', 'i0', 'i1', 'i2', 'b'], 'order');
      const t0 = performance.now();
      await new Promise((r) => setTimeout(r, 20));
      ok(performance.now() - t0 >= 19, 'setTimeout waits');
      const q = [];
      queueMicrotask(() => q.push(1));
      await null;
      eq(q, [1], 'queueMicrotask');
    "#,
    )
    .await;
}

#[tokio::test]
async fn structured_clone() {
    check(r#"
      const src = { a: [1, { b: 'c' }], d: new Date(5), m: new Map([[1, 'x']]), s: new Set([2]), r: /x/gi, u8: new Uint8Array([1, 2]), n: null, e: new RangeError('r') };
      src.self = src;
      const c = structuredClone(src);
      ok(c !== src && c.a !== src.a && c.a[1] !== src.a[1], 'deep');
      eq(c.a, [1, { b: 'c' }], 'values');
      ok(c.self === c, 'cycles');
      ok(c.d instanceof Date && c.d.getTime() === 5, 'Date');
      eq([...c.m], [[1, 'x']], 'Map');
      ok(c.s.has(2), 'Set');
      eq([c.r.source, c.r.flags], ['x', 'gi'], 'RegExp');
      ok(c.u8 instanceof Uint8Array && c.u8[1] === 2 && c.u8.buffer !== src.u8.buffer, 'typed array');
      ok(c.e instanceof RangeError && c.e.message === 'r', 'Error');
      throws(() => structuredClone({ f() {} }), 'DataCloneError', 'function');
      throws(() => structuredClone(Symbol('s')), 'DataCloneError', 'symbol');
      eq(structuredClone(3), 3, 'primitive');
      throws(() => structuredClone(), 'TypeError', 'no argument');
    "#).await;
}

#[tokio::test]
async fn abort_controller() {
    check(
        r#"
      const c = new AbortController();
      const events = [];
      c.signal.addEventListener('abort', (e) => events.push(e.type));
      c.signal.onabort = () => events.push('on');
      ok(!c.signal.aborted, 'not aborted');
      c.abort();
      c.abort();
      ok(c.signal.aborted, 'aborted');
      eq(c.signal.reason.name, 'AbortError', 'default reason');
      eq(events, ['abort', 'on'], 'events fire once');
      throws(() => c.signal.throwIfAborted(), 'AbortError', 'throwIfAborted');
      const r = AbortSignal.abort('why');
      eq([r.aborted, r.reason], [true, 'why'], 'AbortSignal.abort');
      throws(() => new AbortSignal(), 'TypeError', 'no constructor');
      const t = AbortSignal.timeout(5);
      await new Promise((res) => setTimeout(res, 15));
      eq([t.aborted, t.reason.name], [true, 'TimeoutError'], 'timeout');
      const x = new AbortController();
      const any = AbortSignal.any([x.signal, new AbortController().signal]);
      x.abort('first');
      eq(any.reason, 'first', 'any');
    "#,
    )
    .await;
}

#[tokio::test]
async fn dom_exception() {
    check(
        r#"
      const e = new DOMException('m', 'AbortError');
      eq([e.name, e.message, e.code], ['AbortError', 'm', 20], 'fields');
      ok(e instanceof Error, 'is an Error');
    "#,
    )
    .await;
}

#[tokio::test]
async fn absent_globals_are_absent() {
    // No ambient host access from tenant code.
    check(r#"
      for (const name of ['require', 'process', 'Deno', 'std', 'os', 'scriptArgs']) eq(typeof globalThis[name], 'undefined', name);
    "#).await;
}

/// Parts of the glue a cold isolate does not build (streams, URLPattern,
/// FormData and File, events and abort signals, crypto.subtle and
/// CryptoKey, structuredClone) are built on first use, whichever way it
/// comes: the global, or a value the glue makes. Each is built once, and
/// what the glue made is an instance of the global the tenant sees.
#[tokio::test]
async fn lazy_globals_are_built_on_first_use() {
    check(r#"
      const lazy = ['FormData', 'File', 'Event', 'EventTarget', 'AbortSignal', 'AbortController', 'CryptoKey',
        'structuredClone', 'ReadableStream', 'WritableStream', 'TransformStream', 'URLPattern'];
      const built = (n) => 'value' in Object.getOwnPropertyDescriptor(globalThis, n);
      for (const n of lazy) ok(!built(n), `${n} is not built before its first use`);
      ok(typeof Object.getOwnPropertyDescriptor(crypto, 'subtle').get === 'function', 'crypto.subtle is not built before use');

      // Through values the glue makes.
      const signal = new Request('https://site.example/').signal;
      ok(signal instanceof AbortSignal && built('AbortSignal'), 'a request\'s signal is an AbortSignal');
      ok(!signal.aborted, 'not aborted');
      const form = await new Response('a=1&b=2', { headers: { 'content-type': 'application/x-www-form-urlencoded' } }).formData();
      ok(!built('FormData') && form instanceof FormData, 'formData() gives a FormData');
      eq([...form], [['a', '1'], ['b', '2']], 'its entries');
      const sent = new Response(form);
      ok(sent.headers.get('content-type').startsWith('multipart/form-data; boundary='), 'a FormData body');
      ok((await sent.formData()).get('b') === '2', 'read back');
      const key = await crypto.subtle.importKey('raw', bytes('k'), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
      ok(!built('CryptoKey') && key instanceof CryptoKey, 'an imported key is a CryptoKey');
      ok(crypto.subtle === crypto.subtle, 'one subtle');
      throws(() => { 'use strict'; crypto.subtle = null; }, 'TypeError', 'subtle cannot be replaced');
      const ac = new AbortController();
      const piped = new ReadableStream({ start(c) { c.enqueue(1); } }).pipeTo(new WritableStream(), { signal: ac.signal });
      ac.abort();
      await rejects(piped, 'AbortError', 'a stream piped with a signal stops when it aborts');
      eq(structuredClone({ a: [1] }), { a: [1] }, 'structuredClone');

      // A global a tenant replaces before its first use stays replaced.
      globalThis.File = 'mine';
      eq(File, 'mine', 'replaced');
      // Read once, a global becomes a plain property.
      for (const n of lazy.filter((n) => n !== 'File')) ok(typeof globalThis[n] === 'function' && built(n), `${n} is built now`);
      ok(Object.getPrototypeOf(AbortSignal) === EventTarget, 'AbortSignal extends the global EventTarget');
      ok(new AbortController().signal.constructor === AbortSignal, 'one AbortSignal');
    "#).await;
}

/// A global built on first use is defined by the glue's own means, not by
/// whatever tenant code put in `Object.defineProperty` before that use.
#[tokio::test]
async fn lazy_globals_do_not_call_tenant_replacements() {
    check(r#"
      const own = Object.defineProperty;
      Object.defineProperty = () => { throw new Error('the tenant\'s defineProperty'); };
      let cloned;
      try { cloned = structuredClone({ a: 1 }); } catch (e) { cloned = e.message; }
      Object.defineProperty = own;
      eq(cloned, { a: 1 }, 'structuredClone built and called');
      ok('value' in Object.getOwnPropertyDescriptor(globalThis, 'structuredClone'), 'now a plain property');
    "#).await;
}
