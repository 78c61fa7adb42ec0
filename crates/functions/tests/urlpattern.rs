//! URLPattern, WPT-style: construction from strings and init objects,
//! matching with `test`/`exec`, groups, modifiers, wildcards, regexp groups,
//! escapes, base URLs, component getters and errors.

mod common;
use common::*;

#[tokio::test]
async fn construct_and_getters() {
    check(r#"
      const p = new URLPattern('https://example.com/books/:id');
      eq([p.protocol, p.username, p.password, p.hostname, p.port, p.pathname, p.search, p.hash],
         ['https', '*', '*', 'example.com', '', '/books/:id', '*', '*'], 'components from a string');
      const q = new URLPattern({ pathname: '/a/:b' });
      eq([q.protocol, q.hostname, q.pathname, q.search], ['*', '*', '/a/:b', '*'], 'init object: the rest is *');
      const r = new URLPattern('/x/*', 'https://base.example/y');
      eq([r.protocol, r.hostname, r.pathname], ['https', 'base.example', '/x/*'], 'relative string + base');
      const s = new URLPattern({ pathname: 'rel', baseURL: 'https://b.example/dir/file' });
      eq(s.pathname, '/dir/rel', 'relative pathname resolved against baseURL');
      eq(new URLPattern({ protocol: 'https', port: '443' }).port, '', 'default port dropped');
      eq(new URLPattern({ protocol: 'http:' }).protocol, 'http', 'trailing colon stripped');
      eq(new URLPattern({ search: '?a=1', hash: '#h' }).search, 'a=1', 'leading ? stripped');
      eq(new URLPattern('https://example.com:8080/p?q=1#f').port, '8080', 'port from string');
      eq(new URLPattern('https://example.com/p?q=1#f').search, 'q=1', 'search from string');
      eq(new URLPattern('https://example.com/p?q=1#f').hash, 'f', 'hash from string');
      eq(new URLPattern('https://example.com').pathname, '*', 'pathname missing from string is wildcard');
      eq(new URLPattern({ pathname: '/:a(\\d+)' }).pathname, '/:a(\\d+)', 'regexp group in the pattern string');
      ok(new URLPattern({ pathname: '/:a(\\d+)' }).hasRegExpGroups, 'hasRegExpGroups');
      ok(!p.hasRegExpGroups, 'no regexp groups');
      eq(new URLPattern({ pathname: '/foo/(.*)' }).pathname, '/foo/*', 'full wildcard normalized');
      eq(new URLPattern({ pathname: '/caf\u00e9' }).pathname, '/caf%C3%A9', 'fixed text is percent-encoded');
      eq(new URLPattern({ hostname: 'EXAMPLE.com' }).hostname, 'example.com', 'hostname canonicalized');
      eq(Object.prototype.toString.call(p), '[object URLPattern]', 'toStringTag');
    "#).await;
}

#[tokio::test]
async fn matching() {
    check(r#"
      const p = new URLPattern({ pathname: '/books/:id' });
      ok(p.test('https://example.com/books/123'), 'test matches');
      ok(!p.test('https://example.com/books'), 'missing segment');
      ok(!p.test('https://example.com/books/1/2'), 'segment wildcard stops at /');
      const m = p.exec('https://example.com/books/123?x=1');
      eq(m.pathname, { input: '/books/123', groups: { id: '123' } }, 'exec pathname');
      eq(m.search, { input: 'x=1', groups: { '0': 'x=1' } }, 'wildcard search group');
      eq(m.inputs, ['https://example.com/books/123?x=1'], 'inputs');
      eq(m.protocol.input, 'https', 'protocol input');
      eq(p.exec('https://example.com/other'), null, 'exec null on mismatch');
      eq(p.exec('not a url'), null, 'invalid input URL is no match');
      ok(p.test('/books/7', 'https://a.example'), 'input + base');
      eq(p.exec('/books/7', 'https://a.example').inputs, ['/books/7', 'https://a.example'], 'inputs with base');
      ok(p.test({ pathname: '/books/9' }), 'init input');
      ok(p.test(new URL('https://x.example/books/1')), 'URL input');

      const opt = new URLPattern({ pathname: '/product/:id?' });
      ok(opt.test('https://a.example/product'), 'optional absent');
      ok(opt.test('https://a.example/product/4'), 'optional present');
      eq(opt.exec('https://a.example/product').pathname.groups, { id: undefined }, 'optional group undefined');
      const plus = new URLPattern({ pathname: '/files/:path+' });
      eq(plus.exec('https://a.example/files/a/b/c').pathname.groups.path, 'a/b/c', 'one-or-more');
      ok(!plus.test('https://a.example/files'), 'one-or-more needs one');
      const star = new URLPattern({ pathname: '/files/:path*' });
      ok(star.test('https://a.example/files'), 'zero-or-more with none');
      eq(star.exec('https://a.example/files/x/y').pathname.groups.path, 'x/y', 'zero-or-more');
      const wild = new URLPattern({ pathname: '/static/*' });
      eq(wild.exec('https://a.example/static/css/x.css').pathname.groups, { '0': 'css/x.css' }, 'wildcard group');
      const re = new URLPattern({ pathname: '/post/:id(\\d+)' });
      ok(re.test('https://a.example/post/42'), 'regexp group match');
      ok(!re.test('https://a.example/post/abc'), 'regexp group mismatch');
      const unnamed = new URLPattern({ pathname: '/(\\d+)/(foo|bar)' });
      eq(unnamed.exec('https://a.example/1/bar').pathname.groups, { '0': '1', '1': 'bar' }, 'numbered regexp groups');
      const grp = new URLPattern({ pathname: '/blog/:year{-:month}?' });
      eq(grp.exec('https://a.example/blog/2024-05').pathname.groups, { year: '2024', month: '05' }, 'group with prefix');
      eq(grp.exec('https://a.example/blog/2024').pathname.groups, { year: '2024', month: undefined }, 'optional group absent');
      const esc = new URLPattern({ pathname: '/a\\:b\\*' });
      ok(esc.test('https://x.example/a:b*'), 'escaped : and *');
      ok(!esc.test('https://x.example/a:bc'), 'escaped * is literal');
      const host = new URLPattern({ hostname: ':sub.example.com' });
      eq(host.exec('https://api.example.com/').hostname.groups, { sub: 'api' }, 'hostname group');
      ok(!host.test('https://a.b.example.com/'), 'hostname segment stops at .');
      const anySub = new URLPattern({ hostname: '{*.}?example.com' });
      ok(anySub.test('https://example.com/') && anySub.test('https://www.example.com/'), 'optional subdomain group');
      const full = new URLPattern('https://:host.example.com/:p*\\?q=:q#:h');
      const fm = full.exec('https://shop.example.com/a/b?q=1#top');
      eq([fm.hostname.groups.host, fm.pathname.groups.p, fm.search.groups.q, fm.hash.groups.h],
         ['shop', 'a/b', '1', 'top'], 'groups across components');
      const proto = new URLPattern({ protocol: 'http{s}?' });
      ok(proto.test('http://a.example/') && proto.test('https://a.example/') && !proto.test('ftp://a.example/'), 'protocol group');
      const port = new URLPattern({ port: '(80|8080)' });
      ok(port.test('http://a.example:8080/') && !port.test('http://a.example:81/'), 'port regexp');
      const ci = new URLPattern({ pathname: '/Case' }, { ignoreCase: true });
      ok(ci.test('https://a.example/case'), 'ignoreCase');
      ok(!new URLPattern({ pathname: '/Case' }).test('https://a.example/case'), 'case-sensitive by default');
      const enc = new URLPattern({ pathname: '/caf\u00e9' });
      ok(enc.test('https://a.example/caf\u00e9'), 'encoded fixed text matches an encoded URL');
      const dot = new URLPattern({ pathname: '/a.b' });
      ok(!dot.test('https://x.example/aXb'), '. is literal');
    "#).await;
}

#[tokio::test]
async fn errors() {
    check(r#"
      throws(() => new URLPattern('/relative'), 'TypeError', 'relative without base');
      throws(() => new URLPattern({ pathname: '/:id/:id' }), 'TypeError', 'duplicate names');
      throws(() => new URLPattern({ pathname: '/(' }), 'TypeError', 'unbalanced group');
      throws(() => new URLPattern({ pathname: '/()' }), 'TypeError', 'empty regexp');
      throws(() => new URLPattern({ pathname: '/(?=x)' }), 'TypeError', 'regexp starting with ?');
      throws(() => new URLPattern({ pathname: '/((a))' }), 'TypeError', 'capturing group inside a group');
      throws(() => new URLPattern({ pathname: '/:' }), 'TypeError', 'empty name');
      throws(() => new URLPattern({ pathname: '/{a' }), 'TypeError', 'unclosed brace');
      throws(() => new URLPattern({ pathname: '/a\\' }), 'TypeError', 'trailing backslash');
      throws(() => new URLPattern({ pathname: '/([)' }), 'TypeError', 'invalid regexp');
      throws(() => new URLPattern({ pathname: '/:a(\u00e9)' }), 'TypeError', 'non-ASCII regexp');
      throws(() => new URLPattern({ protocol: 'ht tp' }), 'TypeError', 'invalid protocol');
      throws(() => new URLPattern({ port: 'abc' }), 'TypeError', 'invalid port');
      throws(() => new URLPattern({ pathname: '/' }, 'https://a.example'), 'TypeError', 'base with an init object');
      throws(() => new URLPattern({ baseURL: 'nope' }), 'TypeError', 'invalid baseURL');
      throws(() => new URLPattern(5), 'TypeError', 'non-object init');
      const p = new URLPattern({ pathname: '/x' });
      throws(() => p.test({ pathname: '/x' }, 'https://a.example'), 'TypeError', 'base with an init input');
      eq(p.test({ port: 'abc' }), false, 'invalid init input is no match');
    "#).await;
}
