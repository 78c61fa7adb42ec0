//! The control API: auth, scopes, errors, domains, settings.

mod common;
use common::*;
use serde_json::{json, Value};

struct Api<'a> {
    node: &'a Node,
    http: reqwest::blocking::Client,
}

impl Api<'_> {
    fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(m, self.node.api_url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().unwrap();
        let status = r.status().as_u16();
        let text = r.text().unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
    fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call(method, path, Some(&self.node.token), body)
    }
}

fn assert_error(r: &(u16, Value), status: u16, code: &str) {
    assert_eq!(r.0, status, "{:?}", r.1);
    assert_eq!(r.1["error"]["code"], code, "{:?}", r.1);
    assert!(r.1["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
}

#[test]
fn auth_and_scopes() {
    let node = Node::start();
    let api = Api {
        node: &node,
        http: http(),
    };
    // The admin token file is private.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(node.data.join("admin-token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    assert_error(
        &api.call("GET", "/api/v1/sites", None, None),
        401,
        "unauthorized",
    );
    assert_error(
        &api.call("GET", "/api/v1/sites", Some("wrong"), None),
        401,
        "unauthorized",
    );
    assert_eq!(
        api.admin("POST", "/api/v1/sites", Some(json!({"name": "a"})))
            .0,
        201
    );
    assert_eq!(
        api.admin("POST", "/api/v1/sites", Some(json!({"name": "b"})))
            .0,
        201
    );

    let (s, t) = api.admin("POST", "/api/v1/tokens", Some(json!({"site": "a"})));
    assert_eq!(s, 201);
    let site_token = t["token"].as_str().unwrap().to_owned();
    let tok = Some(site_token.as_str());
    // A site token sees and deploys its own site only.
    let (s, list) = api.call("GET", "/api/v1/sites", tok, None);
    assert_eq!(s, 200);
    assert_eq!(list["sites"].as_array().unwrap().len(), 1);
    assert_eq!(api.call("GET", "/api/v1/sites/a", tok, None).0, 200);
    assert_error(
        &api.call("GET", "/api/v1/sites/b", tok, None),
        404,
        "not_found",
    );
    assert_error(
        &api.call("POST", "/api/v1/sites", tok, Some(json!({"name": "c"}))),
        403,
        "forbidden",
    );
    assert_error(
        &api.call("DELETE", "/api/v1/sites/a", tok, None),
        403,
        "forbidden",
    );
    assert_error(
        &api.call(
            "POST",
            "/api/v1/sites/b/deploys",
            tok,
            Some(json!({"files": {}})),
        ),
        404,
        "not_found",
    );
    assert_error(
        &api.call(
            "PATCH",
            "/api/v1/sites/a/settings",
            tok,
            Some(json!({"https": "redirect"})),
        ),
        403,
        "forbidden",
    );

    // The CLI with the site token deploys its site and nothing else.
    let dir = site(&[("index.html", "scoped")]);
    let out = node.cli_as(
        &site_token,
        &[
            "deploy",
            dir.path().to_str().unwrap(),
            "--site",
            "a",
            "--prod",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(get(node.edge, "a.localhost", "/", &[]).text(), "scoped");
    let out = node.cli_as(
        &site_token,
        &["deploy", dir.path().to_str().unwrap(), "--site", "b"],
    );
    assert!(!out.status.success());
    let out = node.cli_as(&site_token, &["tokens", "create", "--site", "b"]);
    assert!(!out.status.success());
    // The admin can mint one through the CLI.
    let minted = node.ok(&["tokens", "create", "--site", "b"]);
    assert_eq!(minted.trim().len(), 64);
}

#[test]
fn errors_are_json_with_the_right_status() {
    let node = Node::start();
    let api = Api {
        node: &node,
        http: http(),
    };
    assert_error(
        &api.admin("POST", "/api/v1/sites", Some(json!({"name": "UPPER"}))),
        400,
        "invalid_request",
    );
    assert_error(
        &api.admin(
            "POST",
            "/api/v1/sites",
            Some(json!({"name": "a".repeat(38)})),
        ),
        400,
        "invalid_request",
    );
    assert_error(
        &api.admin("POST", "/api/v1/sites", Some(json!({"nom": "x"}))),
        400,
        "invalid_request",
    );
    let r = api
        .http
        .post(node.api_url("/api/v1/sites"))
        .bearer_auth(&node.token)
        .body("{not json")
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        api.admin("POST", "/api/v1/sites", Some(json!({"name": "dup"})))
            .0,
        201
    );
    assert_error(
        &api.admin("POST", "/api/v1/sites", Some(json!({"name": "dup"}))),
        409,
        "conflict",
    );
    assert_error(
        &api.admin("GET", "/api/v1/sites/nosuch", None),
        404,
        "not_found",
    );
    assert_error(&api.admin("GET", "/api/v1/nowhere", None), 404, "not_found");
    assert_error(
        &api.admin("PUT", "/api/v1/sites", None),
        405,
        "method_not_allowed",
    );
    assert_error(
        &api.admin("GET", "/api/v1/deploys/zzz", None),
        404,
        "not_found",
    );
    // Deploy manifests are validated.
    let sha = "a".repeat(64);
    for files in [
        json!({"no-slash": sha}),
        json!({"/a/../b": sha}),
        json!({"/dir/": sha}),
        json!({"/a": "not-a-digest"}),
        json!({"/a": sha.to_uppercase()}),
    ] {
        assert_error(
            &api.admin(
                "POST",
                "/api/v1/sites/dup/deploys",
                Some(json!({"files": files})),
            ),
            400,
            "invalid_request",
        );
    }
    assert_error(
        &api.admin(
            "POST",
            "/api/v1/sites/dup/deploys",
            Some(json!({"files": {}, "alias": "0123456789abcdef01234567"})),
        ),
        400,
        "invalid_request",
    );
    // A blob that is not part of the deploy.
    let (_, d) = api.admin(
        "POST",
        "/api/v1/sites/dup/deploys",
        Some(json!({"files": {"/a": sha}})),
    );
    let id = d["id"].as_str().unwrap();
    assert_eq!(d["state"], "uploading");
    assert_eq!(d["required"], json!([sha]));
    let r = api
        .http
        .put(node.api_url(&format!("/api/v1/deploys/{id}/blobs/{}", "b".repeat(64))))
        .bearer_auth(&node.token)
        .body("x")
        .send()
        .unwrap();
    assert_eq!(r.status(), 422);
    // Rolling back with nothing to roll back to.
    assert_error(
        &api.admin("POST", "/api/v1/sites/dup/rollback", None),
        409,
        "conflict",
    );
    // Deleting a site removes it from the edge and the API.
    assert_eq!(api.admin("DELETE", "/api/v1/sites/dup", None).0, 204);
    assert_error(
        &api.admin("GET", "/api/v1/sites/dup", None),
        404,
        "not_found",
    );
}

#[test]
fn custom_domains() {
    let node = Node::start();
    node.ok(&["sites", "create", "one"]);
    node.ok(&["sites", "create", "two"]);
    let dir = site(&[("index.html", "one")]);
    node.deploy(dir.path(), "one", &["--prod"]);
    node.ok(&["domains", "add", "WWW.Example.COM.", "--site", "one"]);
    // The API answers only once this node's edge routes the change.
    assert_eq!(get(node.edge, "www.example.com", "/", &[]).status, 200);
    assert_eq!(
        get(node.edge, "www.example.com:443", "/", &[]).text(),
        "one"
    );
    // A domain belongs to one site.
    let out = node.cli(&["domains", "add", "www.example.com", "--site", "two"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already belongs"));
    for bad in ["http://x.com", "x.com:80", "nodot", "two.localhost"] {
        let out = node.cli(&["domains", "add", bad, "--site", "two"]);
        assert!(!out.status.success(), "{bad} accepted");
    }
    let shown = node.ok(&["sites", "get", "one"]);
    assert!(shown.contains("www.example.com"));
    node.ok(&["domains", "remove", "www.example.com", "--site", "one"]);
    assert_eq!(get(node.edge, "www.example.com", "/", &[]).status, 404);
}

#[test]
fn settings_hide_secrets() {
    let node = Node::start();
    node.ok(&["sites", "create", "cfg"]);
    let out = node.ok(&[
        "sites",
        "set",
        "cfg",
        "jwt_secret=s3cret",
        "env.API_URL=https://x",
        "https=redirect",
    ]);
    assert!(!out.contains("s3cret"), "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["secrets"]["jwt_secret"], true);
    assert_eq!(v["env"]["API_URL"], "https://x");
    assert_eq!(v["https"], "redirect");
    let shown = node.ok(&["sites", "get", "cfg"]);
    assert!(!shown.contains("s3cret"));
    assert!(shown.contains("API_URL"));
    // Unset, and bad input changes nothing.
    node.ok(&["sites", "set", "cfg", "env.API_URL="]);
    let out = node.cli(&["sites", "set", "cfg", "https=sometimes"]);
    assert!(!out.status.success());
    let out = node.cli(&["sites", "set", "cfg", "nonsense=1"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown setting"));
    let v: Value = serde_json::from_str(&node.ok(&["sites", "get", "cfg"])).unwrap();
    assert_eq!(v["settings"]["env"], json!({}));
    assert_eq!(v["settings"]["https"], "redirect");
}

#[test]
fn large_manifests_and_bad_queries() {
    let node = Node::start();
    let api = Api {
        node: &node,
        http: http(),
    };
    assert_eq!(
        api.admin("POST", "/api/v1/sites", Some(json!({"name": "big"})))
            .0,
        201
    );
    // 40,000 paths: a JSON body of several megabytes, over axum's default limit.
    let files: serde_json::Map<String, Value> = (0..40_000)
        .map(|i| {
            (
                format!("/files/page-{i:05}.html"),
                json!(format!("{:064x}", i)),
            )
        })
        .collect();
    let (status, d) = api.admin(
        "POST",
        "/api/v1/sites/big/deploys",
        Some(json!({"files": files})),
    );
    assert_eq!(status, 201, "{d}");
    assert_eq!(d["file_count"], 40_000);
    assert_eq!(d["required"].as_array().unwrap().len(), 40_000);
    // Query parameters are validated like the rest.
    let (status, v) = api.admin("GET", "/api/v1/sites/big/deploys?limit=1", None);
    assert_eq!((status, v["deploys"].as_array().unwrap().len()), (200, 1));
    assert_error(
        &api.admin("GET", "/api/v1/sites/big/deploys?limit=lots", None),
        400,
        "invalid_request",
    );
}

#[test]
fn purge_requests_are_scoped_and_validated() {
    let node = Node::start();
    let api = Api {
        node: &node,
        http: http(),
    };
    node.ok(&["sites", "create", "a"]);
    node.ok(&["sites", "create", "b"]);
    let token = node.ok(&["tokens", "create", "--site", "a"]);
    let token = token.trim();
    let (status, v) = api.call("POST", "/api/v1/sites/a/purge", Some(token), None);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["purged"], "site");
    let (status, v) = api.call(
        "POST",
        "/api/v1/sites/a/purge",
        Some(token),
        Some(json!({"tags": ["Blog", "home"]})),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["purged"], "tags");
    assert_eq!(v["tags"], json!(["blog", "home"]));
    // Another site is invisible to a site token; unknown sites; bad bodies.
    assert_error(
        &api.call("POST", "/api/v1/sites/b/purge", Some(token), None),
        404,
        "not_found",
    );
    assert_error(
        &api.admin("POST", "/api/v1/sites/zzz/purge", None),
        404,
        "not_found",
    );
    assert_error(
        &api.admin("POST", "/api/v1/sites/a/purge", Some(json!({"tags": [""]}))),
        400,
        "invalid_request",
    );
    assert_error(
        &api.admin("POST", "/api/v1/sites/a/purge", Some(json!({"tag": "x"}))),
        400,
        "invalid_request",
    );
    let many: Vec<String> = (0..101).map(|i| format!("t{i}")).collect();
    assert_error(
        &api.admin("POST", "/api/v1/sites/a/purge", Some(json!({"tags": many}))),
        400,
        "invalid_request",
    );
    // The CLI.
    let out = node.ok(&["purge", "--site", "a", "--tag", "news"]);
    assert!(out.contains("tagged news"), "{out}");
    let out = node.ok(&["purge", "--site", "b"]);
    assert!(out.contains("every cached response"), "{out}");
}
