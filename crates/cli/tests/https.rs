//! The HTTPS policy: redirect plain HTTP, HSTS on HTTPS, ACME challenges exempt.

mod common;
use common::*;

#[test]
fn https_policy_redirects_and_sends_hsts() {
    let node = Node::start_with(&["--trusted-proxy", "127.0.0.1/32"]);
    node.ok(&["sites", "create", "secure"]);
    let dir = site(&[("index.html", "home")]);
    node.deploy(dir.path(), "secure", &["--prod"]);
    let e = node.edge;
    // Off by default.
    let r = get(e, "secure.localhost", "/", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("strict-transport-security"), None);

    node.ok(&["sites", "set", "secure", "https=redirect"]);
    assert_eq!(get(e, "secure.localhost", "/", &[]).status, 301);
    let r = get(e, "Secure.localhost:8080", "/a/b?x=1&y=2", &[]);
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location"),
        Some("https://secure.localhost/a/b?x=1&y=2")
    );
    // ACME HTTP-01 challenges are answered over plain HTTP.
    let r = get(
        e,
        "secure.localhost",
        "/.well-known/acme-challenge/token",
        &[],
    );
    assert_eq!(r.status, 404);
    // Behind a trusted TLS-terminating proxy the request is HTTPS: served, with HSTS.
    let r = get(
        e,
        "secure.localhost",
        "/",
        &[("x-forwarded-proto", "https")],
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("strict-transport-security"),
        Some("max-age=31536000")
    );
}

#[test]
fn forwarded_proto_from_untrusted_peers_is_ignored() {
    let node = Node::start();
    node.ok(&["sites", "create", "secure"]);
    node.ok(&["sites", "set", "secure", "https=redirect"]);
    let dir = site(&[("index.html", "home")]);
    node.deploy(dir.path(), "secure", &["--prod"]);
    let r = get(
        node.edge,
        "secure.localhost",
        "/",
        &[("x-forwarded-proto", "https")],
    );
    assert_eq!(r.status, 301);
}
