//! Request rules at the edge, end to end: redirects, rewrites, shadowing,
//! conditions, `_headers`, proxies to a real local origin, and diagnostics.

mod common;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc;

use common::*;

const H: &str = "rules.localhost";

fn deploy_rules(node: &Node, files: &[(&str, &str)]) -> (tempfile::TempDir, serde_json::Value) {
    let dir = site(files);
    let d = node.deploy(dir.path(), "rules", &["--prod"]);
    assert_eq!(d["state"], "ready", "{d}");
    (dir, d)
}

#[test]
fn redirects_rewrites_shadowing_and_headers() {
    let node = Node::start();
    node.ok(&["sites", "create", "rules"]);
    let (_dir, d) = deploy_rules(
        &node,
        &[
            ("index.html", "home"),
            ("exists.html", "the file"),
            ("app/index.html", "spa shell"),
            ("404.html", "custom 404"),
            ("gone.html", "gone page"),
            (
                "_redirects",
                "/old/*  /new/:splat  301\n\
                 /exists  /elsewhere  302\n\
                 /forced  /index.html  200!\n\
                 /exists.html  /index.html  200!\n\
                 /shop/:id  /store?item=:id  302\n\
                 /q  id=:id  /items/:id  301\n\
                 /removed  /gone.html  410\n\
                 /private/*  /404.html  404\n\
                 /app/*  /app/index.html  200\n\
                 https://old.example/*  https://new.example/:splat  301!\n\
                 this line is broken\n",
            ),
            (
                "_headers",
                "/*\n  X-Frame-Options: DENY\n/app/*\n  Cache-Control: public, max-age=60\n  X-App: yes\n",
            ),
        ],
    );
    // The broken line is reported on the deploy, and the deploy still published.
    let diags = d["diagnostics"].as_array().unwrap();
    assert!(
        diags
            .iter()
            .any(|x| x["file"] == "_redirects" && x["line"] == 11 && x["severity"] == "error"),
        "{diags:?}"
    );
    let e = node.edge;

    let r = get(e, H, "/old/a/b?x=1", &[]);
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/new/a/b?x=1"));
    // Framed as empty, so the connection can carry the next request.
    assert_eq!(r.header("content-length"), Some("0"));
    assert!(r.header("transfer-encoding").is_none());
    // An unforced rule is shadowed by the file that exists.
    let r = get(e, H, "/exists", &[]);
    assert_eq!((r.status, r.text().as_str()), (200, "the file"));
    // Forced rewrites apply regardless of files.
    assert_eq!(get(e, H, "/exists.html", &[]).text(), "home");
    assert_eq!(get(e, H, "/forced", &[]).text(), "home");
    // Placeholders and query matching.
    assert_eq!(
        get(e, H, "/shop/42", &[]).header("location"),
        Some("/store?item=42")
    );
    // The request query is passed on (spec §1.7; the pinned oracle agrees).
    assert_eq!(
        get(e, H, "/q?id=7", &[]).header("location"),
        Some("/items/7?id=7")
    );
    assert_eq!(get(e, H, "/q", &[]).status, 404);
    // Custom status with a file body.
    let r = get(e, H, "/removed", &[]);
    assert_eq!((r.status, r.text().as_str()), (410, "gone page"));
    let r = get(e, H, "/private/secret", &[]);
    assert_eq!((r.status, r.text().as_str()), (404, "custom 404"));
    // SPA fallback, with _headers matched on the request path.
    let r = get(e, H, "/app/deep/link", &[]);
    assert_eq!((r.status, r.text().as_str()), (200, "spa shell"));
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    // Host-specific forced rule.
    let r = get(e, H, "/x", &[("x-forwarded-proto", "https")]);
    assert_eq!(r.status, 404, "host rules only match their host");

    // _headers on a plain file, replacing the platform default, and on 404s.
    let r = get(e, H, "/app/", &[]);
    assert_eq!(r.header("cache-control"), Some("public, max-age=60"));
    assert_eq!(r.header("x-app"), Some("yes"));
    let r = get(e, H, "/nothing-here", &[]);
    assert_eq!((r.status, r.header("x-frame-options")), (404, Some("DENY")));
    assert_eq!(r.text(), "custom 404");
    // …but not on 304s.
    let etag = get(e, H, "/", &[]).header("etag").unwrap().to_owned();
    let r = get(e, H, "/", &[("if-none-match", &etag)]);
    assert_eq!(r.status, 304);
    assert_eq!(r.header("x-frame-options"), None);
}

#[test]
fn host_rules_and_custom_domains() {
    let node = Node::start();
    node.ok(&["sites", "create", "rules"]);
    deploy_rules(
        &node,
        &[
            ("index.html", "home"),
            (
                "_redirects",
                "http://old.example/*  https://new.example/:splat  301!\n",
            ),
        ],
    );
    node.ok(&["domains", "add", "old.example", "--site", "rules"]);
    let r = get(node.edge, "old.example", "/a?b=1", &[]);
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("https://new.example/a?b=1"));
    assert_eq!(get(node.edge, H, "/a", &[]).status, 404);
}

fn b64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

fn jwt(secret: &str, claims: &serde_json::Value) -> String {
    use hmac::Mac;
    let head = b64(br#"{"alg":"HS256","typ":"JWT"}"#);
    let body = b64(claims.to_string().as_bytes());
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{head}.{body}").as_bytes());
    format!("{head}.{body}.{}", b64(&mac.finalize().into_bytes()))
}

#[test]
fn conditions_country_language_role_cookie() {
    let node = Node::start_with(&[
        "--trusted-proxy",
        "127.0.0.1/32",
        "--geo-header",
        "X-Geo-Country",
    ]);
    node.ok(&["sites", "create", "rules"]);
    node.ok(&["sites", "set", "rules", "jwt_secret=topsecret"]);
    deploy_rules(
        &node,
        &[
            ("index.html", "home"),
            ("de.html", "deutsch"),
            ("fr.html", "français"),
            ("admin/index.html", "admin area"),
            ("beta.html", "beta"),
            (
                "_redirects",
                "/  /de.html  200!  Country=de\n\
                 /  /fr.html  200!  Language=fr\n\
                 /admin/*  /admin/:splat  200!  Role=admin\n\
                 /feature  /beta.html  200  Cookie=beta\n",
            ),
        ],
    );
    let e = node.edge;
    assert_eq!(get(e, H, "/", &[]).text(), "home");
    assert_eq!(get(e, H, "/", &[("x-geo-country", "DE")]).text(), "deutsch");
    assert_eq!(
        get(e, H, "/", &[("accept-language", "fr-FR,fr;q=0.9")]).text(),
        "français"
    );
    assert_eq!(
        get(e, H, "/feature", &[("cookie", "beta=1")]).text(),
        "beta"
    );
    assert_eq!(get(e, H, "/feature", &[]).status, 404);
    // Role: a valid token with the role passes; others get 404.
    let admin = jwt(
        "topsecret",
        &serde_json::json!({"app_metadata": {"authorization": {"roles": ["admin"]}}, "exp": 4102444800u64}),
    );
    let user = jwt(
        "topsecret",
        &serde_json::json!({"app_metadata": {"authorization": {"roles": ["user"]}}, "exp": 4102444800u64}),
    );
    let forged = jwt(
        "wrong",
        &serde_json::json!({"app_metadata": {"authorization": {"roles": ["admin"]}}}),
    );
    assert_eq!(
        get(e, H, "/admin/", &[("cookie", &format!("nf_jwt={admin}"))]).text(),
        "admin area"
    );
    assert_eq!(
        get(e, H, "/admin/", &[("cookie", &format!("nf_jwt={user}"))]).status,
        404
    );
    assert_eq!(
        get(e, H, "/admin/", &[("cookie", &format!("nf_jwt={forged}"))]).status,
        404
    );
    assert_eq!(get(e, H, "/admin/", &[]).status, 404);
}

#[test]
fn geo_header_is_ignored_from_untrusted_peers() {
    let node = Node::start_with(&["--geo-header", "X-Geo-Country"]);
    node.ok(&["sites", "create", "rules"]);
    deploy_rules(
        &node,
        &[
            ("index.html", "home"),
            ("de.html", "deutsch"),
            ("_redirects", "/  /de.html  200!  Country=de\n"),
        ],
    );
    assert_eq!(
        get(node.edge, H, "/", &[("x-geo-country", "DE")]).text(),
        "home"
    );
}

/// A one-thread origin: answers each request with what it received, and
/// reports the raw request head on `tx`.
fn origin(tx: mpsc::Sender<String>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in l.incoming() {
            let Ok(mut s) = stream else { return };
            let mut reader = BufReader::new(s.try_clone().unwrap());
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let lower = head.to_lowercase();
            let mut body = Vec::new();
            if let Some(len) = lower
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
            {
                body.resize(len, 0);
                reader.read_exact(&mut body).unwrap();
            } else if lower.contains("transfer-encoding: chunked") {
                loop {
                    let mut size = String::new();
                    reader.read_line(&mut size).unwrap();
                    let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                    let mut chunk = vec![0u8; n + 2];
                    reader.read_exact(&mut chunk).unwrap();
                    if n == 0 {
                        break;
                    }
                    body.extend_from_slice(&chunk[..n]);
                }
            }
            let _ = tx.send(head.clone());
            let reply = format!(
                "origin saw {} body bytes: {}",
                body.len(),
                String::from_utf8_lossy(&body)
            );
            let _ = write!(
                s,
                "HTTP/1.1 201 Created\r\nContent-Length: {}\r\nX-Origin: yes\r\nConnection: close\r\nKeep-Alive: timeout=5\r\n\r\n{reply}",
                reply.len()
            );
        }
    });
    addr
}

#[test]
fn proxies_to_a_local_origin() {
    let (tx, rx) = mpsc::channel();
    let upstream = origin(tx);
    let node = Node::start_with(&[
        "--outbound-allow",
        "127.0.0.0/8",
        "--trusted-proxy",
        "127.0.0.1/32",
        "--geo-header",
        "X-Geo-Country",
    ]);
    node.ok(&["sites", "create", "rules"]);
    node.ok(&["sites", "set", "rules", "env.PROXY_SECRET=shh"]);
    let toml = format!(
        "[[redirects]]\nfrom = \"/api/*\"\nto = \"http://{upstream}/v1/:splat\"\nstatus = 200\nforce = true\nsigned = \"PROXY_SECRET\"\n[redirects.headers]\n  X-From-Rule = \"rule-value\"\n"
    );
    deploy_rules(&node, &[("index.html", "home"), ("netlify.toml", &toml)]);
    let r = get(
        node.edge,
        H,
        "/api/things?x=1",
        &[
            ("connection", "close, x-hop"),
            ("x-hop", "secret"),
            ("accept-language", "de"),
            ("x-geo-country", "at"),
        ],
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("x-origin"), Some("yes"));
    assert_eq!(
        r.header("keep-alive"),
        None,
        "hop-by-hop response headers are dropped"
    );
    let id = r.header("x-ledge-id").unwrap().to_owned();
    let head = rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
    let lower = head.to_lowercase();
    assert!(head.starts_with("GET /v1/things?x=1 HTTP/1.1"), "{head}");
    assert!(lower.contains("x-forwarded-for: 127.0.0.1"), "{head}");
    assert!(lower.contains("x-forwarded-proto: http"), "{head}");
    assert!(
        lower.contains("x-forwarded-host: rules.localhost"),
        "{head}"
    );
    assert!(lower.contains("via: 1.1 ledge"), "{head}");
    assert!(lower.contains("x-language: de"), "{head}");
    assert!(head.contains("x-country: AT"), "{head}");
    assert!(lower.contains(&format!("x-nf-request-id: {id}")), "{head}");
    assert!(lower.contains("x-from-rule: rule-value"), "{head}");
    assert!(lower.contains("x-nf-sign: ey"), "{head}");
    assert!(
        !lower.contains("x-hop"),
        "headers named in Connection are dropped: {head}"
    );
    assert!(lower.contains(&format!("host: {upstream}")), "{head}");

    // A request body is streamed through.
    let mut s = std::net::TcpStream::connect(node.edge).unwrap();
    write!(s, "POST /api/echo HTTP/1.1\r\nHost: {H}\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let r = parse_raw(&buf);
    assert_eq!(r.status, 201);
    assert!(
        r.text().ends_with("origin saw 11 body bytes: hello world"),
        "{}",
        r.text()
    );
}

#[test]
fn outbound_policy_and_origin_failures() {
    // An origin that accepts and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in silent.incoming() {
            held.push(s);
        }
    });
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("ledge.toml");
    std::fs::write(&cfg, "[limits]\norigin_response_timeout_secs = 1\n").unwrap();
    let node = Node::start_with(&[
        "--config",
        cfg.to_str().unwrap(),
        "--outbound-allow",
        "127.0.0.0/8",
    ]);
    node.ok(&["sites", "create", "rules"]);
    let api = node.api;
    deploy_rules(
        &node,
        &[
            ("index.html", "home"),
            (
                "_redirects",
                &format!(
                    "/silent  http://{silent_addr}/  200\n\
                     /closed  http://{closed}/  200\n\
                     /control  http://{api}/api/v1/sites  200\n\
                     /metadata  http://169.254.169.254/latest/  200\n\
                     /private  http://10.1.2.3/  200\n\
                     /signed  http://{silent_addr}/  200  Sign=NOPE\n"
                ),
            ),
        ],
    );
    let e = node.edge;
    let r = get(e, H, "/silent", &[]);
    assert_eq!(r.status, 504, "{}", r.text());
    let r = get(e, H, "/closed", &[]);
    assert_eq!(r.status, 502, "{}", r.text());
    let r = get(e, H, "/control", &[]);
    assert_eq!(r.status, 502);
    assert!(r.text().contains("control API"), "{}", r.text());
    for p in ["/metadata", "/private"] {
        let r = get(e, H, p, &[]);
        assert_eq!(r.status, 502, "{p}");
        assert!(r.text().contains("not allowed"), "{p}: {}", r.text());
    }
    let r = get(e, H, "/signed", &[]);
    assert_eq!(r.status, 502);
    assert!(r.text().contains("NOPE"), "{}", r.text());
}

#[test]
fn loopback_is_refused_without_an_allow_rule() {
    let (tx, _rx) = mpsc::channel();
    let upstream = origin(tx);
    let node = Node::start();
    node.ok(&["sites", "create", "rules"]);
    deploy_rules(
        &node,
        &[
            ("index.html", "home"),
            (
                "_redirects",
                &format!(
                    "/p  http://{upstream}/  200\n/n  http://localhost:{}/  200\n",
                    upstream.port()
                ),
            ),
        ],
    );
    for p in ["/p", "/n"] {
        let r = get(node.edge, H, p, &[]);
        assert_eq!(r.status, 502, "{p}");
        assert!(r.text().contains("not allowed"), "{p}: {}", r.text());
    }
}

#[test]
fn deploy_prints_diagnostics_and_rules_commands_work() {
    let node = Node::start();
    node.ok(&["sites", "create", "rules"]);
    let dir = site(&[
        ("index.html", "home"),
        ("about.html", "about"),
        ("_redirects", "/a  /about  301\nnot a rule\n/b /about 301 Country=de\n"),
        ("netlify.toml", "[[redirects]]\nfrom = \"/limited\"\nto = \"/about\"\n[redirects.rate_limit]\nwindow_limit = 2\n"),
    ]);
    let out = node.cli(&[
        "deploy",
        dir.path().to_str().unwrap(),
        "--site",
        "rules",
        "--prod",
    ]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("_redirects:2: error"), "{err}");
    assert!(err.contains("netlify.toml"), "{err}");
    assert!(err.contains("rate_limit"), "{err}");
    assert!(err.contains("1 error(s)"), "{err}");

    let out = node.cli(&["rules", "check", dir.path().to_str().unwrap()]);
    assert!(!out.status.success(), "an invalid line fails the check");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("_redirects:2"), "{text}");
    let out = node.ok(&[
        "rules",
        "explain",
        dir.path().to_str().unwrap(),
        "https://x.example/a?q=1",
    ]);
    assert!(out.contains("301"), "{out}");
    assert!(out.contains("/about"), "{out}");
    let out = node.ok(&[
        "rules",
        "explain",
        dir.path().to_str().unwrap(),
        "https://x.example/b",
        "--country",
        "de",
    ]);
    assert!(out.contains("301"), "{out}");
    let out = node.ok(&[
        "rules",
        "explain",
        dir.path().to_str().unwrap(),
        "https://x.example/about",
    ]);
    assert!(out.contains("static: serves /about.html"), "{out}");
    let ok = site(&[("index.html", "x"), ("_redirects", "/a /b 301\n")]);
    let out = node.ok(&["rules", "check", ok.path().to_str().unwrap()]);
    assert!(out.contains("1 redirect rules"), "{out}");
}

/// A country database mapping 127.0.0.0/8 to `country`.
fn write_country_mmdb(path: &std::path::Path, country: &str) {
    write_mmdb(
        path,
        "GeoIP2-Country",
        &format!("{{'country': {{'iso_code': '{country}'}}}}"),
    );
}

#[test]
fn country_from_a_maxmind_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("country.mmdb");
    write_country_mmdb(&db, "JP");
    let node = Node::start_with(&["--geoip-db", db.to_str().unwrap()]);
    node.ok(&["sites", "create", "rules"]);
    deploy_rules(
        &node,
        &[
            ("index.html", "home"),
            ("jp.html", "日本"),
            ("_redirects", "/  /jp.html  200!  Country=jp\n"),
        ],
    );
    assert_eq!(get(node.edge, H, "/", &[]).text(), "日本");
    // A site can opt out of geolocation.
    node.ok(&["sites", "set", "rules", "geo_source=none"]);
    assert_eq!(get(node.edge, H, "/", &[]).text(), "home");
    // A database that is not one is a clear startup error.
    let bad = dir.path().join("bad.mmdb");
    std::fs::write(&bad, "not a database").unwrap();
    let out = std::process::Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--api-listen",
            "127.0.0.1:0",
            "--geoip-db",
        ])
        .arg(&bad)
        .arg("--data")
        .arg(dir.path().join("data2"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("GeoIP database"));
}
