//! Edge functions end to end: a real node, real deploys through the CLI
//! (sources in `netlify/edge-functions/`, bundled on the server), requests over
//! real sockets.

mod common;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;

use common::*;

const H: &str = "fns.localhost";

fn deploy_site(node: &Node, files: &[(&str, &str)]) -> tempfile::TempDir {
    deploy_site_with_id(node, files).0
}

/// The site's folder and the deploy's id.
fn deploy_site_with_id(node: &Node, files: &[(&str, &str)]) -> (tempfile::TempDir, String) {
    let dir = site(files);
    let d = node.deploy(dir.path(), "fns", &["--prod"]);
    assert_eq!(d["state"], "ready", "{d}");
    let id = d["id"].as_str().unwrap_or_default().to_owned();
    (dir, id)
}

fn node_with_site() -> Node {
    let node = Node::start_with(&[
        "--trusted-proxy",
        "127.0.0.1/32",
        "--geo-header",
        "X-Geo-Country",
        "--outbound-allow",
        "127.0.0.0/8",
    ]);
    node.ok(&["sites", "create", "fns"]);
    node
}

/// A tiny origin on loopback: answers every request with its method, path
/// and a header, and counts nothing.
fn origin() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let (first, body) = read_request(&mut BufReader::new(s.try_clone().unwrap()));
                let mut parts = first.split(' ');
                let method = parts.next().unwrap_or("");
                let path = parts.next().unwrap_or("");
                if path == "/moved" {
                    let _ = s.write_all(
                        b"HTTP/1.1 302 Found\r\nLocation: /data\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    return;
                }
                let text = format!(
                    "{{\"method\":\"{method}\",\"path\":\"{path}\",\"body\":\"{}\"}}",
                    String::from_utf8_lossy(&body)
                );
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Origin: yes\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                );
            });
        }
    });
    addr
}

#[test]
fn realistic_functions_run_in_the_request() {
    let node = node_with_site();
    node.ok(&["sites", "set", "fns", "env.GREETING=hello from env"]);
    let up = origin();
    let ab = r#"
export default async (request, context) => {
  let bucket = context.cookies.get("ab");
  if (!bucket) {
    bucket = new URL(request.url).searchParams.get("force") || "b";
    context.cookies.set({ name: "ab", value: bucket, path: "/" });
  }
  return new URL(bucket === "a" ? "/a.html" : "/b.html", request.url);
};
export const config = { path: "/ab" };
"#;
    let geo = r#"
export default async (request, context) => {
  const c = context.geo.country;
  return new Response(c ? `Hello, visitor from ${c.name} (${c.code})` : "Hello, visitor", {
    headers: { "content-type": "text/plain" },
  });
};
export const config = { path: "/geo" };
"#;
    let auth = r#"
export default async (request, context) => {
  if (request.headers.get("authorization") !== "Bearer letmein") {
    return new Response("unauthorized", { status: 401, headers: { "www-authenticate": "Bearer" } });
  }
};
export const config = { path: "/admin/*" };
"#;
    let api = r#"
export default async (request, context) => {
  return Response.json({
    user: context.params.id,
    method: request.method,
    ip: context.ip,
    site: context.site.name,
    siteId: context.site.id,
    deployId: context.deploy.id,
    greeting: Netlify.env.get("GREETING"),
    requestId: context.requestId,
  });
};
export const config = { path: "/api/users/:id", method: ["GET", "POST"] };
"#;
    let transform = r#"
export default async (request, context) => {
  const resp = await context.next();
  const html = await resp.text();
  const out = new Response(html.replace("</body>", "<p>injected</p></body>"), resp);
  out.headers.set("x-transformed", "1");
  // The id is set once the whole response is known, not in next()'s answer.
  out.headers.set("x-next-had-id", String(resp.headers.has("x-ledge-id")));
  return out;
};
export const config = { path: "/page" };
"#;
    let fetcher = format!(
        r#"
export default async (request) => {{
  const r = await fetch("http://{up}/moved");
  const data = await r.json();
  return Response.json({{ status: r.status, origin: r.headers.get("x-origin"), data }});
}};
export const config = {{ path: "/proxy-fetch" }};
"#
    );
    let ts_main = r#"
import { shout } from "./lib/text.ts";
import type { Context } from "@netlify/edge-functions";
export default async (req: Request, context: Context): Promise<Response> => {
  const n: number = 3;
  return new Response(shout("typed") + n);
};
export const config = { path: "/ts" };
"#;
    let ts_lib = "export function shout(s: string): string { return s.toUpperCase() + \"!\"; }\n";
    let (_dir, deploy_id) = deploy_site_with_id(
        &node,
        &[
            ("index.html", "<html><body>home</body></html>"),
            ("a.html", "variant A"),
            ("b.html", "variant B"),
            ("page.html", "<html><body>page</body></html>"),
            ("admin/index.html", "admin area"),
            ("netlify/edge-functions/ab.js", ab),
            ("netlify/edge-functions/geo.js", geo),
            ("netlify/edge-functions/auth.mjs", auth),
            ("netlify/edge-functions/api.js", api),
            ("netlify/edge-functions/transform.js", transform),
            ("netlify/edge-functions/fetcher.js", &fetcher),
            ("netlify/edge-functions/typed/index.ts", ts_main),
            ("netlify/edge-functions/typed/lib/text.ts", ts_lib),
        ],
    );
    let e = node.edge;

    // A/B by cookie: the first visit is assigned and remembered.
    let first = get(e, H, "/ab", &[]);
    assert_eq!(first.status, 200);
    assert_eq!(first.text(), "variant B");
    assert!(
        first.header("set-cookie").unwrap().starts_with("ab=b"),
        "{first:?}"
    );
    assert_eq!(get(e, H, "/ab", &[("cookie", "ab=a")]).text(), "variant A");
    assert!(get(e, H, "/ab", &[("cookie", "ab=a")])
        .header("set-cookie")
        .is_none());
    assert_eq!(get(e, H, "/ab?force=a", &[]).text(), "variant A");

    // Geolocation from the trusted front proxy's header.
    assert_eq!(
        get(e, H, "/geo", &[("x-geo-country", "DE")]).text(),
        "Hello, visitor from Germany (DE)"
    );
    assert_eq!(get(e, H, "/geo", &[]).text(), "Hello, visitor");

    // Auth gate: 401 without the token; with it the function passes on.
    let denied = get(e, H, "/admin/", &[]);
    assert_eq!(denied.status, 401);
    assert_eq!(denied.header("www-authenticate"), Some("Bearer"));
    let allowed = get(e, H, "/admin/", &[("authorization", "Bearer letmein")]);
    assert_eq!(
        (allowed.status, allowed.text().as_str()),
        (200, "admin area")
    );

    // JSON API with params, env and context.
    let r = get(e, H, "/api/users/42", &[]);
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["user"], "42");
    assert_eq!(v["method"], "GET");
    assert_eq!(v["ip"], "127.0.0.1");
    assert_eq!(v["site"], "fns");
    assert_eq!(v["siteId"], "fns");
    assert!(!deploy_id.is_empty());
    assert_eq!(v["deployId"], deploy_id.as_str());
    assert_eq!(v["greeting"], "hello from env");
    assert_eq!(v["requestId"].as_str(), r.header("x-ledge-id"));
    // `method` restricts it: DELETE is not declared, so static handling answers.
    assert_eq!(request(e, "DELETE", H, "/api/users/42", &[]).status, 405);

    // next() and a transformed body and header.
    let r = get(e, H, "/page", &[]);
    assert_eq!(r.text(), "<html><body>page<p>injected</p></body></html>");
    assert_eq!(r.header("x-transformed"), Some("1"));
    assert_eq!(r.header("x-next-had-id"), Some("false"));
    assert_eq!(r.header("x-ledge-id").map(str::len), Some(16));
    assert_eq!(
        r.header("content-length").map(str::to_owned),
        Some(r.body.len().to_string())
    );

    // fetch to a local origin (allowed by --outbound-allow), redirect followed.
    let r = get(e, H, "/proxy-fetch", &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["status"], 200);
    assert_eq!(v["origin"], "yes");
    assert_eq!(v["data"]["path"], "/data");

    // TypeScript with a relative import, stripped at deploy.
    assert_eq!(get(e, H, "/ts", &[]).text(), "TYPED!3");

    // Paths without functions are untouched.
    assert_eq!(get(e, H, "/", &[]).text(), "<html><body>home</body></html>");
}

#[test]
fn declarations_order_and_precedence() {
    let node = node_with_site();
    let tag = |name: &str| {
        format!(
            "export default async (req, ctx) => {{\n  const r = await ctx.next();\n  const t = await r.text();\n  return new Response(t + \"<{name}\", r);\n}};\n"
        )
    };
    let zeta = format!("{}export const config = {{ path: \"/x\" }};\n", tag("zeta"));
    let alpha = format!(
        "{}export const config = {{ path: \"/x\" }};\n",
        tag("alpha")
    );
    let first = tag("first");
    let _dir = deploy_site(
        &node,
        &[
            ("x.html", "x"),
            ("old.html", "old"),
            ("admin/x.css", "css"),
            ("admin/x.html", "adminx"),
            (
                "netlify.toml",
                "[[edge_functions]]\nfunction = \"first\"\npath = \"/x\"\n\n[[edge_functions]]\nfunction = \"guard\"\npath = \"/admin/*\"\nexcludedPath = \"/admin/*.css\"\n",
            ),
            ("_redirects", "/old  /x  301!\n"),
            ("_headers", "/*\n  X-Custom: 1\n"),
            ("netlify/edge-functions/zeta.js", &zeta),
            ("netlify/edge-functions/alpha.js", &alpha),
            ("netlify/edge-functions/first.js", &first),
            (
                "netlify/edge-functions/guard.js",
                "export default () => new Response('guarded');",
            ),
            (
                "netlify/edge-functions/old.js",
                "export default () => new Response('from function');\nexport const config = { path: '/old' };",
            ),
            (
                "netlify/edge-functions/flag.js",
                "export default () => new Response('flagged');\nexport const config = { path: '/flag', header: { 'x-flag': true } };",
            ),
            (
                "netlify/edge-functions/slash.js",
                "export default () => new Response('hello');\nexport const config = { path: '/hello' };",
            ),
            (
                "netlify/edge-functions/wild.js",
                "export default () => new Response('wild');\nexport const config = { path: '/products/*' };",
            ),
            (
                "netlify/edge-functions/undeclared.js",
                "export default () => new Response('never');",
            ),
        ],
    );
    let e = node.edge;
    // E-07/E-08: toml first, then inline alphabetically; innermost runs last.
    assert_eq!(get(e, H, "/x", &[]).text(), "x<zeta<alpha<first");
    // E-03: excludedPath.
    assert_eq!(get(e, H, "/admin/x.html", &[]).text(), "guarded");
    assert_eq!(get(e, H, "/admin/x.css", &[]).text(), "css");
    // E-06 and E-14: the function answers before the forced redirect, and
    // `_headers` do not apply to its response.
    let r = get(e, H, "/old", &[]);
    assert_eq!((r.status, r.text().as_str()), (200, "from function"));
    assert_eq!(r.header("x-custom"), None);
    assert_eq!(get(e, H, "/x.html", &[]).header("x-custom"), Some("1"));
    // E-10: header condition.
    assert_eq!(get(e, H, "/flag", &[]).status, 404);
    assert_eq!(get(e, H, "/flag", &[("x-flag", "1")]).text(), "flagged");
    // E-01 and E-02: trailing slash, no prefix match, case, `/*` needs a slash.
    assert_eq!(get(e, H, "/hello/", &[]).text(), "hello");
    assert_eq!(get(e, H, "/hello/x", &[]).status, 404);
    assert_eq!(get(e, H, "/HELLO", &[]).status, 404);
    assert_eq!(get(e, H, "/products", &[]).status, 404);
    assert_eq!(get(e, H, "/products/a/b", &[]).text(), "wild");
    // A function without a path never runs.
    assert_eq!(get(e, H, "/undeclared", &[]).status, 404);
}

#[test]
fn failures_follow_on_error() {
    let node = node_with_site();
    let thrower = |on_error: &str| {
        format!(
            "export default () => {{ throw new Error('boom'); }};\nexport const config = {{ path: '/{}', onError: '{}' }};\n",
            on_error.trim_start_matches('/').replace('/', "-"),
            on_error
        )
    };
    let _dir = deploy_site(
        &node,
        &[
            ("bypass.html", "bypassed to static"),
            ("oops.html", "the error page"),
            ("netlify/edge-functions/f1.js", &thrower("fail")),
            ("netlify/edge-functions/f2.js", &thrower("bypass")),
            ("netlify/edge-functions/f3.js", &thrower("/oops")),
            (
                "netlify/edge-functions/spin.js",
                "export default () => { for (;;) {} };\nexport const config = { path: '/spin', onError: 'bypass' };",
            ),
            (
                "netlify/edge-functions/hog.js",
                "export default () => { const a = []; for (;;) { a.push(new Array(1e6).fill(1)); } };\nexport const config = { path: '/hog' };",
            ),
            (
                "netlify/edge-functions/deep.js",
                "const f = (n) => f(n + 1) + 1;\nexport default () => new Response(String(f(0)));\nexport const config = { path: '/deep' };",
            ),
            (
                "netlify/edge-functions/wrong.js",
                "export default () => 42;\nexport const config = { path: '/wrong' };",
            ),
            (
                "netlify/edge-functions/elsewhere.js",
                "export default () => new URL('https://example.com/');\nexport const config = { path: '/elsewhere' };",
            ),
        ],
    );
    let e = node.edge;
    let r = get(e, H, "/fail", &[]);
    assert_eq!(r.status, 502);
    assert!(r.text().contains("f1"), "{}", r.text());
    assert!(
        !r.text().contains("boom"),
        "tenant error details leak: {}",
        r.text()
    );
    assert_eq!(get(e, H, "/bypass", &[]).text(), "bypassed to static");
    let r = get(e, H, "/oops", &[]);
    assert_eq!((r.status, r.text().as_str()), (200, "the error page"));
    // Runaway code is stopped by its limits; the node keeps serving.
    assert_eq!(
        get(e, H, "/spin", &[]).status,
        404,
        "bypass after the CPU limit"
    );
    let r = get(e, H, "/hog", &[]);
    assert_eq!(r.status, 502);
    assert!(r.text().contains("memory"), "{}", r.text());
    let r = get(e, H, "/deep", &[]);
    assert_eq!(r.status, 502);
    assert!(r.text().contains("recursed"), "{}", r.text());
    assert_eq!(get(e, H, "/wrong", &[]).status, 502);
    assert_eq!(get(e, H, "/elsewhere", &[]).status, 502);
    assert_eq!(get(e, H, "/oops.html", &[]).text(), "the error page");
    // Operator metrics count invocations by outcome.
    let count = |outcome: &str| {
        metric(
            &node,
            &format!("ledge_function_invocations_total{{outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!(count("cpu_limit"), 1);
    assert_eq!(count("memory_limit"), 1);
    // fail, bypass, /oops, deep (stack), wrong (return value); elsewhere
    // returned a URL, which is not an error of the invocation.
    assert_eq!(count("error"), 5);
    assert_eq!(count("ok"), 1);
}

fn deploy_expect_error(node: &Node, dir: &Path) -> String {
    let out = node.cli(&["deploy", dir.to_str().unwrap(), "--site", "fns", "--prod"]);
    assert!(!out.status.success(), "deploy should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A published deploy the failing ones below must leave in place: `/` is
/// "v1", `/hi` a function answering "hi v1".
fn deploy_hi_v1(node: &Node) -> tempfile::TempDir {
    deploy_site(
        node,
        &[
            ("index.html", "v1"),
            (
                "netlify/edge-functions/hi.js",
                "export default () => new Response('hi v1');\nexport const config = { path: '/hi' };",
            ),
        ],
    )
}

#[test]
fn broken_functions_fail_the_deploy_and_nothing_is_published() {
    let node = node_with_site();
    let _good = deploy_hi_v1(&node);
    assert_eq!(get(node.edge, H, "/hi", &[]).text(), "hi v1");
    let cases: &[(&str, &str, &str)] = &[
        (
            "netlify/edge-functions/hi.ts",
            "export default () => {\n  const x: = 1;\n};",
            "netlify/edge-functions/hi.ts:2",
        ),
        (
            "netlify/edge-functions/hi.js",
            "import pad from 'npm:left-pad';\nexport default () => {};",
            "netlify/edge-functions/hi.js:1",
        ),
        (
            "netlify/edge-functions/hi.js",
            "\nimport { x } from './missing.js';\nexport default () => {};",
            "netlify/edge-functions/hi.js:2",
        ),
        (
            "netlify/edge-functions/hi.js",
            "import m from 'https://deno.land/x/mod.ts';\nexport default () => {};",
            "netlify/edge-functions/hi.js:1",
        ),
    ];
    for (path, source, expect) in cases {
        let dir = site(&[("index.html", "v2"), (path, source)]);
        let err = deploy_expect_error(&node, dir.path());
        assert!(err.contains(expect), "expected {expect} in: {err}");
        assert_eq!(
            get(node.edge, H, "/", &[]).text(),
            "v1",
            "nothing published"
        );
        assert_eq!(get(node.edge, H, "/hi", &[]).text(), "hi v1");
    }
    // A toml declaration of a function that does not exist.
    let dir = site(&[
        ("index.html", "v2"),
        (
            "netlify.toml",
            "[[edge_functions]]\nfunction = \"ghost\"\npath = \"/g\"\n",
        ),
    ]);
    let err = deploy_expect_error(&node, dir.path());
    assert!(err.contains("ghost"), "{err}");
    // Sources are never served as files.
    assert_eq!(
        get(node.edge, H, "/netlify/edge-functions/hi.js", &[]).status,
        404
    );
}

/// Sources that crash the TypeScript parser (nested type arguments past
/// any stack) or stall it (exponential speculation) are parsed in a child
/// process: the deploy fails with a message, the node serves on.
#[test]
fn sources_that_break_the_parser_fail_the_deploy_and_the_node_serves_on() {
    let node = node_with_site();
    let _good = deploy_hi_v1(&node);
    let deep = format!(
        "export default () => new Response('x');\nexport const config = {{ path: '/hi' }};\nconst t = {}b;\n",
        "a<".repeat(200_000)
    );
    for _ in 0..2 {
        let dir = site(&[
            ("index.html", "v2"),
            ("netlify/edge-functions/hi.ts", &deep),
        ]);
        let err = deploy_expect_error(&node, dir.path());
        assert!(err.contains("ran out of stack"), "{err}");
        assert_eq!(
            get(node.edge, H, "/", &[]).text(),
            "v1",
            "nothing published"
        );
        assert_eq!(get(node.edge, H, "/hi", &[]).text(), "hi v1");
    }
}

/// The child build directly: an answer, a crash, and a stall stopped at
/// its deadline.
#[test]
fn builds_in_a_child_answer_crash_or_stop_in_time() {
    use std::collections::BTreeMap;
    use std::time::{Duration, Instant};
    let exe = Path::new(env!("CARGO_BIN_EXE_ledge"));
    let config = BTreeMap::new();
    let one = |path: &str, source: String| BTreeMap::from([(path.to_owned(), source)]);

    let ok = ledge_edge::functions::build_in_child(
        exe,
        Duration::from_secs(60),
        &config,
        &one(
            "hi.ts",
            "export default (r: Request) => new Response('hi');".into(),
        ),
    )
    .expect("a plain function builds");
    assert_eq!(ok.len(), 1);
    assert_eq!(ok[0].name, "hi");

    let errors = ledge_edge::functions::build_in_child(
        exe,
        Duration::from_secs(60),
        &config,
        &one(
            "hi.ts",
            "export default () => {\n  const x: = 1;\n};".into(),
        ),
    )
    .expect_err("a syntax error fails");
    assert_eq!(errors[0].line, Some(2), "{errors:?}");

    let crash = ledge_edge::functions::build_in_child(
        exe,
        Duration::from_secs(60),
        &config,
        &one("deep.ts", format!("const t = {}b;", "a<".repeat(200_000))),
    )
    .expect_err("a stack overflow fails");
    assert!(crash[0].message.contains("ran out of stack"), "{crash:?}");

    // Each `i<A<{[` about triples the parser's work: 30 of them take
    // far longer than any deadline.
    let started = Instant::now();
    let stalled = ledge_edge::functions::build_in_child(
        exe,
        Duration::from_secs(2),
        &config,
        &one("slow.ts", "i<A<{[".repeat(30)),
    )
    .expect_err("a stalled parse is stopped");
    let took = started.elapsed();
    assert!(
        stalled[0].message.contains("longer than 2 s"),
        "{stalled:?}"
    );
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(20),
        "{took:?}"
    );
}

#[test]
fn invocations_are_recorded_in_the_access_log() {
    let node = node_with_site();
    let _dir = deploy_site(
        &node,
        &[
            (
                "netlify/edge-functions/logger.js",
                "export default (req) => { console.log('seen', new URL(req.url).pathname); return new Response('ok'); };\nexport const config = { path: '/log' };",
            ),
            ("pass.html", "static page"),
            (
                "netlify/edge-functions/passer.js",
                "export default () => {};\nexport const config = { path: '/pass' };",
            ),
        ],
    );
    let r = get(node.edge, H, "/log", &[]);
    assert_eq!(r.text(), "ok");
    let id = r.header("x-ledge-id").unwrap().to_owned();
    let log = node.data.join("logs").join("access.log");
    let mut lines = Vec::new();
    eventually("the function and access records", || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        lines = text
            .lines()
            .filter(|l| l.contains(&id))
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .collect();
        lines.len() == 2
    });
    let func = lines.iter().find(|v| v.get("console").is_some()).unwrap();
    assert_eq!(func["function_name"], "logger");
    assert_eq!(func["outcome"], "ok");
    assert_eq!(func["status_code"], 200);
    assert_eq!(func["console"][0]["message"], "seen /log");
    let access = lines.iter().find(|v| v.get("console").is_none()).unwrap();
    assert_eq!(access["function_name"], "logger");
    assert_eq!(access["answered_by"], "function");
    assert_eq!(access["status_code"], 200);

    // A function that passes the request on ran, but the file answered.
    let r = get(node.edge, H, "/pass", &[]);
    assert_eq!(r.text(), "static page");
    let id = r.header("x-ledge-id").unwrap().to_owned();
    let mut access = serde_json::Value::Null;
    eventually("the pass-through access record", || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        match text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|v| v["request_id"] == id.as_str() && v.get("console").is_none())
        {
            Some(v) => {
                access = v;
                true
            }
            None => false,
        }
    });
    assert_eq!(access["function_name"], "passer", "{access}");
    assert_eq!(access["answered_by"], "static", "{access}");
}

#[test]
fn manual_cache_stores_function_responses() {
    let node = node_with_site();
    let counter = |path: &str, manual: bool| {
        format!(
            "let n = 0;\nexport default () => new Response(`call ${{++n}}`, {{ headers: {{ 'cache-control': 'public, s-maxage=3600', 'netlify-cache-tag': 'fn' }} }});\nexport const config = {{ path: '{path}'{} }};\n",
            if manual { ", cache: 'manual'" } else { "" }
        )
    };
    let _dir = deploy_site(
        &node,
        &[
            ("netlify/edge-functions/plain.js", &counter("/plain", false)),
            ("netlify/edge-functions/cached.js", &counter("/cached", true)),
            (
                "netlify/edge-functions/pre.js",
                "export default async (req, ctx) => { const r = await ctx.next(); r.headers.set('x-pre', 'ran'); return r; };\nexport const config = { path: '/cached' };",
            ),
        ],
    );
    let e = node.edge;
    // E-12: without cache: "manual" every request invokes the function.
    assert_eq!(get(e, H, "/plain", &[]).text(), "call 1");
    assert_eq!(get(e, H, "/plain", &[]).text(), "call 2");
    // E-13: with it the second request is a cache hit; functions before the
    // cache still run on every request.
    let first = get(e, H, "/cached", &[]);
    assert_eq!(first.text(), "call 1");
    assert!(
        first.header("cache-status").unwrap().contains("miss"),
        "{first:?}"
    );
    let second = get(e, H, "/cached", &[]);
    assert_eq!(second.text(), "call 1");
    assert!(
        second.header("cache-status").unwrap().contains("hit"),
        "{second:?}"
    );
    assert_eq!(second.header("x-pre"), Some("ran"));
    // A purge by tag makes the next request invoke the function again.
    node.ok(&["purge", "--site", "fns", "--tag", "fn"]);
    assert_eq!(get(e, H, "/cached", &[]).text(), "call 2");
    assert_eq!(get(e, H, "/cached", &[]).text(), "call 2");
}

#[test]
fn logs_functions_streams_invocations_with_console_lines() {
    let node = node_with_site();
    let _dir = deploy_site(
        &node,
        &[
            ("index.html", "home"),
            (
                "netlify/edge-functions/chatty.js",
                "export default async (req, ctx) => { console.log('hello', ctx.params.n); console.error('careful'); return ctx.next(); };\nexport const config = { path: '/talk/:n' };",
            ),
        ],
    );
    let mut stream = Streaming::start(
        &node,
        &["logs", "--site", "fns", "--functions", "--follow", "--json"],
    );
    let seen = stream.wait_live(|| {
        get(node.edge, H, "/talk/probe", &[]);
    });
    let records = json_lines(&seen);
    // With --functions the invocations join the requests.
    assert!(
        records
            .iter()
            .all(|r| r["log_type"] == "edge_functions" || r["log_type"] == "traffic"),
        "{records:#?}"
    );
    let r = get(node.edge, H, "/talk/7", &[]);
    let id = r.header("x-ledge-id").unwrap().to_owned();
    let lines = stream.read_until(|got| {
        got.iter()
            .any(|l| l.contains(&id) && l.contains("\"edge_functions\""))
    });
    let rec = json_lines(&lines)
        .into_iter()
        .find(|r| r["request_id"] == id.as_str() && r["log_type"] == "edge_functions")
        .unwrap_or_else(|| panic!("no invocation record in {lines:#?}"));
    assert_eq!(rec["function_name"], "chatty", "{rec}");
    assert_eq!(rec["path"], "/talk/7", "{rec}");
    assert_eq!(rec["console"][0]["level"], "log", "{rec}");
    assert_eq!(rec["console"][0]["message"], "hello 7", "{rec}");
    assert_eq!(rec["console"][1]["level"], "error", "{rec}");
    assert_eq!(rec["outcome"], "ok", "{rec}");
    // The site's statistics count the invocations.
    let mut stats = serde_json::Value::Null;
    eventually("invocations in the statistics", || {
        let out = node.ok(&["stats", "--site", "fns", "--json"]);
        stats = serde_json::from_str(out.trim()).unwrap();
        stats["total"]["counters"]["function_invocations"].as_u64() >= Some(2)
    });
    assert_eq!(stats["total"]["counters"]["function_errors"], 0, "{stats}");
}

/// Pids of the processes whose parent is `parent` (the node's function workers).
fn children(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            out.push(pid);
        }
    }
    out
}

/// An origin that answers after `delay`.
fn slow_origin(delay: std::time::Duration) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                std::thread::sleep(delay);
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nslow",
                );
            });
        }
    });
    addr
}

#[test]
fn functions_run_in_sandboxed_workers_that_are_replaced_when_they_die() {
    let node = node_with_site();
    let up = slow_origin(std::time::Duration::from_secs(3));
    let waiter = |path: &str, on_error: &str| {
        format!(
            "export default async () => {{ const r = await fetch('http://{up}/'); return new Response(await r.text()); }};\nexport const config = {{ path: '{path}'{on_error} }};\n"
        )
    };
    let _dir = deploy_site(
        &node,
        &[
            ("fallback.html", "static fallback"),
            ("netlify/edge-functions/wait.js", &waiter("/wait", "")),
            (
                "netlify/edge-functions/fallback.js",
                &waiter("/fallback", ", onError: 'bypass'"),
            ),
            (
                "netlify/edge-functions/hi.js",
                "export default () => new Response('hi');\nexport const config = { path: '/hi' };",
            ),
        ],
    );
    let e = node.edge;
    assert_eq!(get(e, H, "/hi", &[]).text(), "hi");
    let workers = children(node.child.id());
    assert!(!workers.is_empty(), "no worker processes under the node");
    for pid in &workers {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        assert!(
            String::from_utf8_lossy(&cmdline).contains("function-worker"),
            "{:?}",
            String::from_utf8_lossy(&cmdline)
        );
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .map(|l| l[name.len()..].trim().to_owned())
        };
        assert_eq!(field("NoNewPrivs:").as_deref(), Some("1"), "{status}");
        assert_eq!(
            field("Seccomp:").as_deref(),
            Some("2"),
            "seccomp filter mode: {status}"
        );
    }
    // A stop signal to the process group (a service manager, a terminal)
    // leaves the workers to the node: they keep answering while it drains.
    for pid in &workers {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(
        children(node.child.id()),
        workers,
        "SIGTERM stopped a worker"
    );
    assert_eq!(get(e, H, "/hi", &[]).text(), "hi");
    // Requests in flight on the workers when they die get onError.
    let failing = std::thread::spawn(move || get(e, H, "/wait", &[]));
    let bypassed = std::thread::spawn(move || get(e, H, "/fallback", &[]));
    std::thread::sleep(std::time::Duration::from_millis(700));
    for pid in children(node.child.id()) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    let r = failing.join().unwrap();
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(bypassed.join().unwrap().text(), "static fallback");
    // Fresh workers take over.
    eventually("a fresh worker", || get(e, H, "/hi", &[]).text() == "hi");
    let fresh = children(node.child.id());
    assert!(!fresh.is_empty());
    assert!(
        fresh.iter().all(|p| !workers.contains(p)),
        "{fresh:?} {workers:?}"
    );
}

#[test]
fn streamed_bodies_and_stream_transforms() {
    let node = node_with_site();
    let _dir = deploy_site(
        &node,
        &[
            ("page.html", "<p>hello world</p>"),
            (
                "netlify/edge-functions/ticker.js",
                r#"export default () => {
  const enc = new TextEncoder();
  let i = 0;
  const body = new ReadableStream({
    async pull(c) {
      await new Promise((r) => setTimeout(r, 5));
      if (i < 5) c.enqueue(enc.encode(`chunk ${i++}\n`)); else c.close();
    },
  });
  return new Response(body, { headers: { "content-type": "text/plain" } });
};
export const config = { path: "/ticker" };"#,
            ),
            (
                "netlify/edge-functions/upper.ts",
                r#"import type { Context } from "@netlify/edge-functions";
export default async (req: Request, context: Context) => {
  const resp = await context.next();
  const upper = new TransformStream<string, string>({
    transform(chunk, controller) { controller.enqueue(chunk.toUpperCase()); },
  });
  const body = resp.body!
    .pipeThrough(new TextDecoderStream())
    .pipeThrough(upper)
    .pipeThrough(new TextEncoderStream());
  return new Response(body, resp);
};
export const config = { path: "/page.html" };"#,
            ),
            (
                "netlify/edge-functions/echo.js",
                r#"export default async (req) => {
  const form = await req.formData();
  return Response.json({ name: form.get("name"), tags: form.getAll("tag") });
};
export const config = { path: "/form", method: "POST" };"#,
            ),
        ],
    );
    let e = node.edge;
    let r = get(e, H, "/ticker", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "chunk 0\nchunk 1\nchunk 2\nchunk 3\nchunk 4\n");
    assert_eq!(get(e, H, "/page.html", &[]).text(), "<P>HELLO WORLD</P>");
    let body = "name=ledge&tag=a&tag=b";
    let raw_req = format!(
        "POST /form HTTP/1.1\r\nHost: {H}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let r = raw(e, raw_req.as_bytes());
    let v: serde_json::Value =
        serde_json::from_slice(&r.body).unwrap_or_else(|_| panic!("{}", r.text()));
    assert_eq!(v, serde_json::json!({"name": "ledge", "tags": ["a", "b"]}));
}

#[test]
fn a_new_deploy_never_sees_the_old_ones_globals() {
    let node = node_with_site();
    let stateful = |version: &str| {
        format!(
            "globalThis.seen = globalThis.seen || [];\nexport default () => {{ globalThis.seen.push('{version}'); return new Response(globalThis.seen.join(',')); }};\nexport const config = {{ path: '/state' }};\n"
        )
    };
    let v1 = stateful("v1");
    let _one = deploy_site(&node, &[("netlify/edge-functions/state.js", &v1)]);
    assert_eq!(get(node.edge, H, "/state", &[]).text(), "v1");
    // A warm isolate keeps its module state between requests of one deploy.
    assert_eq!(get(node.edge, H, "/state", &[]).text(), "v1,v1");
    let v2 = stateful("v2");
    let _two = deploy_site(&node, &[("netlify/edge-functions/state.js", &v2)]);
    assert_eq!(get(node.edge, H, "/state", &[]).text(), "v2");
    // Rolling back serves the first deploy's code again, still apart from v2.
    node.ok(&["rollback", "--site", "fns"]);
    let back = get(node.edge, H, "/state", &[]).text();
    assert!(back.starts_with("v1") && !back.contains("v2"), "{back}");
}

/// A City database placing 127.0.0.0/8 in Kyoto.
fn write_city_mmdb(path: &Path) {
    write_mmdb(
        path,
        "GeoIP2-City",
        "{'country': {'iso_code': 'JP', 'names': {'en': 'Japan'}}, \
          'city': {'names': {'en': 'Kyoto'}}, \
          'subdivisions': [{'iso_code': '26', 'names': {'en': 'Kyoto'}}], \
          'postal': {'code': '600-8216'}, \
          'location': {'latitude': 34.9858, 'longitude': 135.7588, 'time_zone': 'Asia/Tokyo'}}",
    );
}

#[test]
fn context_geo_has_what_a_city_database_knows() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("city.mmdb");
    write_city_mmdb(&db);
    let node = Node::start_with(&["--geoip-db", db.to_str().unwrap()]);
    node.ok(&["sites", "create", "fns"]);
    let _site = deploy_site(
        &node,
        &[(
            "netlify/edge-functions/where.js",
            "export default (req, ctx) => Response.json(ctx.geo);\nexport const config = { path: '/where' };",
        )],
    );
    let r = get(node.edge, H, "/where", &[]);
    let v: serde_json::Value =
        serde_json::from_slice(&r.body).unwrap_or_else(|_| panic!("{}", r.text()));
    assert_eq!(
        v,
        serde_json::json!({
            "city": "Kyoto",
            "country": {"code": "JP", "name": "Japan"},
            "subdivision": {"code": "26", "name": "Kyoto"},
            "postalCode": "600-8216",
            "latitude": 34.9858,
            "longitude": 135.7588,
            "timezone": "Asia/Tokyo",
        })
    );
    // A site that opts out of geolocation sees none of it.
    node.ok(&["sites", "set", "fns", "geo_source=none"]);
    let r = get(node.edge, H, "/where", &[]);
    assert_eq!(r.text(), "{}");
}

/// An origin that streams `first\n`, then waits until the test says so
/// (or 20 s) before it sends `second\n` and ends.
fn gated_origin() -> (SocketAddr, std::sync::mpsc::Sender<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut r = BufReader::new(s.try_clone().unwrap());
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
            }
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n6\r\nfirst\n\r\n",
            );
            let _ = rx.recv_timeout(std::time::Duration::from_secs(20));
            let _ = s.write_all(b"7\r\nsecond\n\r\n0\r\n\r\n");
        }
    });
    (addr, tx)
}

/// Reads from `s` until `buf` holds `want` (panics after the read timeout).
fn read_until_seen(s: &mut std::net::TcpStream, buf: &mut Vec<u8>, want: &str) {
    let mut chunk = [0u8; 65536];
    while !String::from_utf8_lossy(buf).contains(want) {
        match s.read(&mut chunk) {
            Ok(0) => panic!("closed before {want:?}: {}", String::from_utf8_lossy(buf)),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("no {want:?} yet ({e}): {}", String::from_utf8_lossy(buf)),
        }
    }
}

#[test]
fn responses_passed_through_a_function_stream_whole_at_any_size() {
    let node = node_with_site();
    let (live, release) = gated_origin();
    // Larger than a function may read into memory (32 MiB).
    let mut big = String::with_capacity(40 << 20);
    let mut x: u32 = 7;
    while big.len() < 40 << 20 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        big.push(char::from(b'a' + (x >> 16) as u8 % 26));
    }
    let long = "<p>hello world</p>\n".repeat(200);
    let stamp = r#"export default async (req, context) => {
  const r = await context.next();
  r.headers.set("x-stamp", "1");
  return r;
};"#;
    let fetcher = format!(
        r#"export default async () => {{
  const r = await fetch("http://{live}/live");
  return new Response(r.body, {{ status: 203, headers: {{ "x-fetched": "1" }} }});
}};
export const config = {{ path: "/fetched" }};"#
    );
    let _dir = deploy_site(
        &node,
        &[
            ("big.bin", big.as_str()),
            ("_redirects", &format!("/live  http://{live}/live  200\n")),
            (
                "netlify/edge-functions/stamp.js",
                &format!("{stamp}\nexport const config = {{ path: [\"/big.bin\", \"/live\"] }};"),
            ),
            ("netlify/edge-functions/fetcher.js", &fetcher),
            ("long.html", &long),
            (
                "netlify/edge-functions/upper.js",
                r#"export default async (req, context) => {
  const r = await context.next();
  return new Response((await r.text()).toUpperCase(), r);
};
export const config = { path: "/long.html" };"#,
            ),
        ],
    );
    let e = node.edge;

    // A browser asks for gzip or brotli; a function that reads the page
    // still reads the page itself.
    let plain = get(e, H, "/long.html", &[]);
    assert!(plain.header("content-encoding").is_none());
    let r = get(e, H, "/long.html", &[("Accept-Encoding", "gzip, br")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-encoding"), None, "{:?}", r.headers);
    assert_eq!(r.text(), long.to_uppercase());

    // A static file larger than any function body, untouched by the
    // function, whole and with its own length.
    let r = http()
        .get(format!("http://{e}/big.bin"))
        .header("host", H)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-stamp"], "1");
    assert_eq!(
        r.headers()["content-length"].to_str().unwrap(),
        big.len().to_string()
    );
    let got = r.bytes().unwrap();
    assert!(
        got == big.as_bytes(),
        "the body differs ({} bytes)",
        got.len()
    );
    // A range of it.
    let r = get(e, H, "/big.bin", &[("Range", "bytes=1000-1099")]);
    assert_eq!(r.status, 206);
    assert_eq!(r.header("x-stamp"), Some("1"));
    assert_eq!(r.body, &big.as_bytes()[1000..1100]);

    // A proxied stream through next(), and a fetched one: the client gets
    // the first chunk while the origin still holds back the second.
    for (path, marker) in [("/live", "x-stamp: 1"), ("/fetched", "x-fetched: 1")] {
        let mut s = std::net::TcpStream::connect(e).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {H}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut buf = Vec::new();
        read_until_seen(&mut s, &mut buf, "first\n");
        let text = String::from_utf8_lossy(&buf).to_ascii_lowercase();
        assert!(text.contains(marker), "{text}");
        assert!(!text.contains("second"), "{text}");
        release.send(()).unwrap();
        read_until_seen(&mut s, &mut buf, "second\n");
    }
}
