// Sends the same requests to `netlify dev --offline` and to Ledge, both serving
// tests/compat/edge-functions/, and compares the answers. Run by
// scripts/compat-functions.sh, which starts both servers:
//
//   node scripts/compat-functions.mjs http://127.0.0.1:NETLIFY http://127.0.0.1:LEDGE
//
// Prints one line per request (same / DIFFERENT), the details of every
// difference, and exits 1 if there is any.
//
// What is compared, for every request:
//   - the status code;
//   - the body, byte for byte (unless a case says otherwise, with the reason);
//   - these headers: content-type, location, set-cookie (every value, in
//     order), www-authenticate, and every `x-…` header except the servers'
//     own (`x-nf-…` from Netlify, `x-ledge-…` from Ledge); plus the headers a
//     case lists in `alsoHeaders`.
// Not compared, because they legitimately differ between any two servers:
// date, server, age, etag, last-modified, accept-ranges, connection,
// content-length / transfer-encoding (framing: Netlify dev streams some
// responses that Ledge sends with a length; the body is compared instead),
// request ids, and cache-control on responses the function did not give one
// (static file defaults: Netlify dev sends `public, max-age=0`, Ledge sends
// `public, max-age=0, must-revalidate` like Netlify's production CDN).
//
// `_headers` (X-Site on every path) and responses an edge function makes
// itself: Netlify documents that custom headers "won't be applied" to a URL
// handled by an edge function (docs.netlify.com/manage/routing/headers,
// Limitations; spec §4.3 and case E-14), and Ledge follows that. Netlify dev
// does apply them (it runs `_headers` over every response of its proxy). So
// for cases marked `madeByFunction` the custom headers are not compared with
// Netlify dev; Ledge is checked to leave them out instead. Responses a
// function got from `context.next()` (static files) carry them on both sides
// and are compared as usual.
//
// Both servers are asked with `Host: compat.localhost` (no port): Ledge picks
// the site by that name, Netlify dev builds `request.url` from it, so absolute
// URLs made by functions (redirect Locations) are the same on both sides.

import http from "node:http";

const HOST = "compat.localhost";
const TIMEOUT_MS = 20000;
// What public/_headers adds to every path of the site.
const CUSTOM_HEADERS = ["x-site"];

// Requests, each with what it exercises. `headers`/`body` are sent as given;
// `compareBody: false` needs a `why`; `madeByFunction` marks responses an edge
// function built itself (see CUSTOM_HEADERS).
const CASES = [
  // Static files and rules without functions: the baseline.
  { path: "/", note: "static index, no function" },
  { path: "/data.json", note: "static JSON, no function" },
  { path: "/news", note: "_redirects 200 rewrite, no function" },
  { path: "/nope", note: "site's own 404.html" },

  // ab-test.ts: cookies + rewrite by returning a URL.
  { path: "/ab", note: "A/B: new visitor gets bucket b, cookie set, rewrite" },
  { path: "/ab?bucket=a", note: "A/B: forced bucket a, cookie set" },
  { path: "/ab", headers: { cookie: "ab-bucket=a" }, note: "A/B: returning visitor keeps a, no cookie" },

  // api/index.ts: context.params from /api/:name, method list, JSON.
  { path: "/api/kettle", note: "JSON API, params", madeByFunction: true },
  { path: "/api/kettle?lang=fr", note: "JSON API, query", madeByFunction: true },
  {
    method: "POST",
    path: "/api/teapot",
    headers: { "content-type": "application/json" },
    body: '{"size":2,"colour":"blue"}',
    note: "JSON API, POST body echoed, 201",
    madeByFunction: true,
  },
  {
    method: "DELETE",
    path: "/api/teapot",
    note: "method not declared: function skipped, platform 405",
    compareBody: false,
    why: "the 405 page is each platform's own (Netlify dev: text/plain 'Method Not Allowed' with the site's _headers; Ledge: its HTML error page without them); the status is compared",
    ignoreHeaders: ["content-type", ...CUSTOM_HEADERS],
  },
  { path: "/api/a/b", note: "/api/:name matches one segment only: 404" },

  // members-gate.ts then members-stamp.ts, declared in netlify.toml in that order.
  { path: "/members/", note: "toml chain: gate refuses with 401 before stamp runs", madeByFunction: true },
  {
    path: "/members/",
    headers: { authorization: "Bearer open-sesame" },
    note: "toml chain: gate passes (undefined), stamp adds a header via next()",
  },
  { path: "/members/style.css", note: "toml excludedPath: gate skipped, stamp runs" },

  // transform.ts: next() and an HTML transformation, or undefined.
  { path: "/about", note: "transform: undefined, static page" },
  { path: "/about?method=transform", note: "transform: next(), body and header changed" },

  // old-blog.ts: Response.redirect, ahead of a forced _redirects rule.
  { path: "/old-blog/hello-world", note: "Response.redirect 301 beats a forced 302 rule", madeByFunction: true },
  { path: "/blog/hello-world", note: "redirect target, static" },

  // docs-json.ts: inline excludedPath array, undefined pass-through.
  { path: "/docs/intro", note: "docs: undefined, static page" },
  { path: "/docs/intro?format=json", note: "docs: JSON answer", madeByFunction: true },
  { path: "/docs/raw/notes?format=json", note: "docs: inline excludedPath, static page" },

  // contact.mts: method "POST" only.
  { path: "/contact", note: "method POST only: GET serves the static form" },
  {
    method: "POST",
    path: "/contact",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: "name=Ada&topic=tea",
    note: "method POST: function reads the form",
    madeByFunction: true,
  },

  // flaky.ts / broken.ts: onError.
  { path: "/flaky", note: 'onError "bypass": static page' },
  { path: "/broken", note: 'onError "/maintenance": that page' },

  // whoami.js: request headers, query, cookies get/set/delete.
  {
    path: "/whoami?x=1&y=two",
    headers: { "x-client": "compat-test" },
    note: "headers, query, cookie set",
    madeByFunction: true,
  },
  {
    path: "/whoami",
    headers: { cookie: "session=abc123; legacy=1" },
    note: "cookie get, cookie delete",
    madeByFunction: true,
  },

  // greeting.ts: Netlify.env (a .env file for Netlify dev, `ledge sites set
  // env.…` for Ledge: the same variable, each platform's way to set it).
  { path: "/greeting", note: "Netlify.env.get", alsoHeaders: ["cache-control"], madeByFunction: true },
];

// Headers never compared (see the top of this file).
const IGNORED = new Set([
  "date",
  "server",
  "age",
  "etag",
  "last-modified",
  "accept-ranges",
  "connection",
  "keep-alive",
  "content-length",
  "transfer-encoding",
  "cache-control",
  "vary",
]);

function compared(name, c) {
  if (c.madeByFunction && CUSTOM_HEADERS.includes(name)) return false;
  if (c.ignoreHeaders?.includes(name)) return false;
  if (c.alsoHeaders?.includes(name)) return true;
  if (IGNORED.has(name)) return false;
  if (["content-type", "location", "set-cookie", "www-authenticate"].includes(name)) return true;
  return name.startsWith("x-") && !name.startsWith("x-nf-") && !name.startsWith("x-ledge-");
}

function send(base, c) {
  const url = new URL(c.path, base);
  const body = c.body === undefined ? null : Buffer.from(c.body);
  const headers = { host: HOST, ...(c.headers ?? {}) };
  if (body) headers["content-length"] = String(body.length);
  return new Promise((resolve) => {
    const req = http.request(
      {
        host: url.hostname,
        port: url.port,
        path: url.pathname + url.search,
        method: c.method ?? "GET",
        headers,
        timeout: TIMEOUT_MS,
      },
      (res) => {
        const chunks = [];
        res.on("data", (d) => chunks.push(d));
        res.on("end", () => {
          // rawHeaders keeps repeated headers (set-cookie) apart and in order.
          const h = new Map();
          for (let i = 0; i < res.rawHeaders.length; i += 2) {
            const k = res.rawHeaders[i].toLowerCase();
            if (!h.has(k)) h.set(k, []);
            h.get(k).push(res.rawHeaders[i + 1]);
          }
          resolve({ status: res.statusCode, headers: h, body: Buffer.concat(chunks) });
        });
        res.on("error", (e) => resolve({ error: String(e) }));
      },
    );
    req.on("timeout", () => req.destroy(new Error(`no answer in ${TIMEOUT_MS} ms`)));
    req.on("error", (e) => resolve({ error: String(e) }));
    if (body) req.write(body);
    req.end();
  });
}

function show(v) {
  if (v === undefined) return "(absent)";
  if (Buffer.isBuffer(v)) {
    const s = v.toString("utf8");
    return JSON.stringify(s.length > 300 ? s.slice(0, 300) + "…" : s);
  }
  return JSON.stringify(v);
}

function differences(c, n, l) {
  const out = [];
  if (n.error || l.error) {
    out.push(["request", n.error ?? "ok", l.error ?? "ok"]);
    return out;
  }
  if (n.status !== l.status) out.push(["status", n.status, l.status]);
  if (c.compareBody !== false && !n.body.equals(l.body)) out.push(["body", n.body, l.body]);
  const names = new Set([...n.headers.keys(), ...l.headers.keys()]);
  for (const name of [...names].sort()) {
    if (!compared(name, c)) continue;
    const a = n.headers.get(name);
    const b = l.headers.get(name);
    if (JSON.stringify(a) !== JSON.stringify(b)) {
      out.push([name, a && (a.length === 1 ? a[0] : a), b && (b.length === 1 ? b[0] : b)]);
    }
  }
  if (c.madeByFunction) {
    for (const name of CUSTOM_HEADERS) {
      const b = l.headers.get(name);
      if (b) out.push([`${name} (must be absent on a function's own response)`, n.headers.get(name)?.[0], b[0]]);
    }
  }
  return out;
}

async function main() {
  const [netlify, ledge] = process.argv.slice(2);
  if (!netlify || !ledge) {
    console.error("usage: compat-functions.mjs NETLIFY_DEV_URL LEDGE_URL");
    process.exit(2);
  }
  const rows = [];
  for (const c of CASES) {
    const n = await send(netlify, c);
    const l = await send(ledge, c);
    rows.push({ c, n, diffs: differences(c, n, l) });
  }
  const label = (c) => `${c.method ?? "GET"} ${c.path}${c.headers?.cookie ? ` [cookie ${c.headers.cookie}]` : ""}`;
  const width = Math.max(...rows.map((r) => label(r.c).length));
  console.log(`${"request".padEnd(width)}  status  result     what`);
  for (const r of rows) {
    const status = r.n.error ? "-" : String(r.n.status);
    const verdict = r.diffs.length ? "DIFFERENT" : "same";
    console.log(`${label(r.c).padEnd(width)}  ${status.padEnd(6)}  ${verdict.padEnd(9)}  ${r.c.note}`);
  }
  const bad = rows.filter((r) => r.diffs.length);
  for (const r of bad) {
    console.log(`\n${label(r.c)}: ${r.c.note}`);
    for (const [field, a, b] of r.diffs) {
      console.log(`  ${field}:\n    netlify dev: ${show(a)}\n    ledge:       ${show(b)}`);
    }
  }
  const skipped = rows.filter((r) => r.c.compareBody === false);
  for (const r of skipped) console.log(`\nnote: ${label(r.c)}: body not compared: ${r.c.why}`);
  console.log(`\n${rows.length - bad.length} of ${rows.length} requests answered the same${bad.length ? `; ${bad.length} differ${bad.length === 1 ? "s" : ""}` : ""}`);
  process.exit(bad.length ? 1 : 0);
}

main().catch((e) => {
  console.error(e);
  process.exit(2);
});
