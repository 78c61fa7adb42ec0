//! Deploys end to end: the real CLI against a real node over sockets.

mod common;
use common::*;

#[test]
fn second_deploy_uploads_only_changed_files_and_rollback_works() {
    let node = Node::start();
    node.ok(&["sites", "create", "blog"]);
    let dir = site(&[
        ("index.html", "<h1>v1</h1>"),
        ("a.css", "body{}"),
        ("img/logo.svg", "<svg/>"),
    ]);
    let d1 = node.deploy(dir.path(), "blog", &["--prod", "--message", "first"]);
    assert_eq!(d1["state"], "ready", "{d1}");
    assert_eq!(d1["uploaded"], 3);
    assert_eq!(d1["reused"], 0);
    assert_eq!(d1["published"], true);
    let live = get(node.edge, "blog.localhost", "/", &[]);
    assert_eq!(live.status, 200);
    assert_eq!(live.text(), "<h1>v1</h1>");

    write_files(dir.path(), &[("index.html", "<h1>v2</h1>")]);
    let d2 = node.deploy(dir.path(), "blog", &["--prod"]);
    assert_eq!(d2["uploaded"], 1, "{d2}");
    assert_eq!(d2["reused"], 2);
    assert_eq!(
        get(node.edge, "blog.localhost", "/", &[]).text(),
        "<h1>v2</h1>"
    );
    // Host normalisation: case, port, trailing dot.
    assert_eq!(
        get(node.edge, "BLOG.localhost.:8080", "/", &[]).text(),
        "<h1>v2</h1>"
    );

    // Roll back to the previous published deploy, then forward by id.
    let out = node.ok(&["rollback", "--site", "blog"]);
    assert!(out.contains(d1["id"].as_str().unwrap()), "{out}");
    assert_eq!(
        get(node.edge, "blog.localhost", "/", &[]).text(),
        "<h1>v1</h1>"
    );
    node.ok(&[
        "rollback",
        "--site",
        "blog",
        "--to",
        d2["id"].as_str().unwrap(),
    ]);
    assert_eq!(
        get(node.edge, "blog.localhost", "/", &[]).text(),
        "<h1>v2</h1>"
    );

    let list = node.ok(&["deploys", "list", "--site", "blog"]);
    assert_eq!(list.lines().count(), 2, "{list}");
    assert!(
        list.lines().next().unwrap().contains("(published)"),
        "{list}"
    );
}

#[test]
fn permalinks_aliases_and_drafts() {
    let node = Node::start();
    node.ok(&["sites", "create", "shop"]);
    let dir = site(&[("index.html", "prod")]);
    let prod = node.deploy(dir.path(), "shop", &["--prod"]);
    write_files(dir.path(), &[("index.html", "staging")]);
    let staged = node.deploy(dir.path(), "shop", &["--alias", "staging"]);
    assert_eq!(staged["published"], false);
    let alias_url = staged["urls"]["alias"].as_str().unwrap();
    assert!(
        alias_url.starts_with("http://staging--shop.localhost:"),
        "{alias_url}"
    );

    // Production is untouched by a draft.
    assert_eq!(get(node.edge, "shop.localhost", "/", &[]).text(), "prod");
    let alias = get(node.edge, "staging--shop.localhost", "/", &[]);
    assert_eq!(alias.text(), "staging");
    assert_eq!(alias.header("x-robots-tag"), Some("noindex"));
    assert_eq!(
        get(node.edge, "shop.localhost", "/", &[]).header("x-robots-tag"),
        None
    );

    // Each permalink serves exactly its deploy, even after newer ones.
    for (d, body) in [(&prod, "prod"), (&staged, "staging")] {
        let host = format!("{}--shop.localhost", d["id"].as_str().unwrap());
        let r = get(node.edge, &host, "/", &[]);
        assert_eq!(r.text(), body);
        assert_eq!(r.header("x-robots-tag"), Some("noindex"));
    }
    // A permalink of another site's deploy, an unknown alias, an unknown host.
    node.ok(&["sites", "create", "other"]);
    let foreign = format!("{}--other.localhost", prod["id"].as_str().unwrap());
    assert_eq!(get(node.edge, &foreign, "/", &[]).status, 404);
    assert_eq!(get(node.edge, "nope--shop.localhost", "/", &[]).status, 404);
    assert_eq!(get(node.edge, "unknown.localhost", "/", &[]).status, 404);
    assert_eq!(get(node.edge, "example.org", "/", &[]).status, 404);
    // A site with nothing published.
    assert_eq!(get(node.edge, "other.localhost", "/", &[]).status, 404);

    // A newer deploy with the same alias moves it.
    write_files(dir.path(), &[("index.html", "staging 2")]);
    node.deploy(dir.path(), "shop", &["--alias", "staging"]);
    assert_eq!(
        get(node.edge, "staging--shop.localhost", "/", &[]).text(),
        "staging 2"
    );
}

#[test]
fn config_files_travel_but_are_never_served() {
    let node = Node::start();
    node.ok(&["sites", "create", "cfg"]);
    let dir = site(&[
        ("netlify.toml", "[build]\npublish = \"public\"\n"),
        ("public/index.html", "home"),
        ("public/_redirects", "/old /new 301\n"),
        ("public/_headers", "/*\n  X-Test: 1\n"),
        (
            "netlify/edge-functions/hello.js",
            "export default () => new Response('hi')",
        ),
        ("README.md", "not published"),
    ]);
    let d = node.deploy(dir.path(), "cfg", &["--prod"]);
    assert_eq!(d["uploaded"], 5, "{d}");
    assert_eq!(get(node.edge, "cfg.localhost", "/", &[]).text(), "home");
    for p in [
        "/_redirects",
        "/_headers",
        "/netlify.toml",
        "/netlify/edge-functions/hello.js",
        "/README.md",
        "/public/index.html",
    ] {
        assert_eq!(get(node.edge, "cfg.localhost", p, &[]).status, 404, "{p}");
    }
}

#[test]
fn older_production_deploy_finishing_late_does_not_replace_newer() {
    let node = Node::start();
    node.ok(&["sites", "create", "race"]);
    let http = http();
    let auth = format!("Bearer {}", node.token);
    let sha = |s: &str| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(s.as_bytes()))
    };
    let create = |content: &str| -> serde_json::Value {
        http.post(node.api_url("/api/v1/sites/race/deploys"))
            .header("authorization", &auth)
            .json(&serde_json::json!({"files": {"/index.html": sha(content)}, "prod": true}))
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    let old = create("old");
    let new = create("new");
    assert_eq!(old["required"][0], sha("old"));
    let upload = |d: &serde_json::Value, content: &str| {
        let r = http
            .put(node.api_url(&format!(
                "/api/v1/deploys/{}/blobs/{}",
                d["id"].as_str().unwrap(),
                sha(content)
            )))
            .header("authorization", &auth)
            .body(content.to_owned())
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
    };
    let state = |d: &serde_json::Value| -> String {
        let v: serde_json::Value = http
            .get(node.api_url(&format!("/api/v1/deploys/{}", d["id"].as_str().unwrap())))
            .header("authorization", &auth)
            .send()
            .unwrap()
            .json()
            .unwrap();
        v["state"].as_str().unwrap().to_owned()
    };
    upload(&new, "new");
    eventually("new deploy ready", || state(&new) == "ready");
    assert_eq!(get(node.edge, "race.localhost", "/", &[]).text(), "new");
    upload(&old, "old");
    eventually("old deploy ready", || state(&old) == "ready");
    assert_eq!(get(node.edge, "race.localhost", "/", &[]).text(), "new");

    // Wrong content for a digest is refused and keeps nothing.
    let third = create("third");
    let r = http
        .put(node.api_url(&format!(
            "/api/v1/deploys/{}/blobs/{}",
            third["id"].as_str().unwrap(),
            sha("third")
        )))
        .header("authorization", &auth)
        .body("forged")
        .send()
        .unwrap();
    assert_eq!(r.status(), 422);
    let e: serde_json::Value = r.json().unwrap();
    assert_eq!(e["error"]["code"], "digest_mismatch");
    assert_eq!(state(&third), "uploading");
}

#[test]
fn lock_stops_auto_publishing() {
    let node = Node::start();
    node.ok(&["sites", "create", "locked"]);
    let dir = site(&[("index.html", "one")]);
    node.deploy(dir.path(), "locked", &["--prod"]);
    node.ok(&["lock", "--site", "locked"]);
    write_files(dir.path(), &[("index.html", "two")]);
    let d = node.deploy(dir.path(), "locked", &["--prod"]);
    assert_eq!(d["state"], "ready");
    assert_eq!(d["published"], false);
    assert_eq!(get(node.edge, "locked.localhost", "/", &[]).text(), "one");
    node.ok(&["unlock", "--site", "locked"]);
    node.ok(&[
        "rollback",
        "--site",
        "locked",
        "--to",
        d["id"].as_str().unwrap(),
    ]);
    assert_eq!(get(node.edge, "locked.localhost", "/", &[]).text(), "two");
}

#[test]
fn killed_during_upload_keeps_serving_and_retry_completes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut node = Node::start_in(&data, &[]);
    node.ok(&["sites", "create", "crash"]);
    let v1 = site(&[("index.html", "v1")]);
    node.deploy(v1.path(), "crash", &["--prod"]);

    // A second deploy with a large file, uploaded by hand and cut off midway.
    let big: String = "x".repeat(8 << 20);
    let v2 = site(&[("index.html", "v2"), ("big.bin", &big)]);
    let sha = |s: &str| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(s.as_bytes()))
    };
    let http = http();
    let created: serde_json::Value = http
        .post(node.api_url("/api/v1/sites/crash/deploys"))
        .header("authorization", format!("Bearer {}", node.token))
        .json(&serde_json::json!({"files": {"/index.html": sha("v2"), "/big.bin": sha(&big)}, "prod": true}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let id = created["id"].as_str().unwrap();
    // Upload the small blob fully, then start the big one and kill the node
    // while its body is still arriving.
    let r = http
        .put(node.api_url(&format!("/api/v1/deploys/{id}/blobs/{}", sha("v2"))))
        .header("authorization", format!("Bearer {}", node.token))
        .body("v2")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(node.api).unwrap();
        write!(
            s,
            "PUT /api/v1/deploys/{id}/blobs/{} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\n\r\n",
            sha(&big),
            node.token,
            big.len()
        )
        .unwrap();
        s.write_all(&big.as_bytes()[..3 << 20]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));
        node.kill();
    }
    let node = Node::start_in(&data, &[]);
    // Still the previous deploy, and no half-written blob is left behind.
    assert_eq!(get(node.edge, "crash.localhost", "/", &[]).text(), "v1");
    assert_eq!(
        std::fs::read_dir(data.join("blobs/tmp")).unwrap().count(),
        0
    );
    // The retried deploy uploads what is missing and completes.
    let d = node.deploy(v2.path(), "crash", &["--prod"]);
    assert_eq!(d["state"], "ready", "{d}");
    assert_eq!(d["uploaded"], 1, "only the big file was missing: {d}");
    assert_eq!(get(node.edge, "crash.localhost", "/", &[]).text(), "v2");
    let big_resp = get(node.edge, "crash.localhost", "/big.bin", &[]);
    assert_eq!(big_resp.body.len(), big.len());
}

#[test]
fn cli_errors_are_one_line_and_nonzero() {
    let node = Node::start();
    let dir = site(&[("index.html", "x")]);
    let out = node.cli(&["deploy", dir.path().to_str().unwrap(), "--site", "missing"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("site \"missing\" not found"), "{err}");

    let out = node.cli(&["sites", "create", "Bad_Name"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not valid"));

    let out = Command::new(BIN)
        .args(["sites", "list"])
        .env("LEDGE_API", "http://127.0.0.1:1")
        .env("LEDGE_TOKEN", "x")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the Ledge API"));
}

use std::process::Command;
