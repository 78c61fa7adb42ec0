//! Hostile requests: never outside the deploy, never a 500, never a crash.

mod common;
use common::*;

#[test]
fn hostile_paths_and_oversized_requests() {
    let node = Node::start();
    node.ok(&["sites", "create", "safe"]);
    let dir = site(&[
        ("index.html", "ok"),
        ("a b.html", "space"),
        ("café.html", "accent"),
    ]);
    node.deploy(dir.path(), "safe", &["--prod"]);
    let e = node.edge;
    let h = "safe.localhost";

    // Encoded names resolve.
    assert_eq!(get(e, h, "/a%20b.html", &[]).text(), "space");
    assert_eq!(get(e, h, "/caf%C3%A9.html", &[]).text(), "accent");

    for path in [
        "/../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/%2E%2E%2Fetc%2Fpasswd",
        "/a/./b",
        "/index.html%00",
        "/a%5c..%5cb",
        "/a\\b",
        "/%zz",
        "/%ff%fe",
        "/..%2f..%2fmeta.db",
    ] {
        let r = get(e, h, path, &[]);
        assert!(matches!(r.status, 400 | 404), "{path}: {}", r.status);
        assert!(!r.text().contains("root:"), "{path}");
    }
    // Absolute-form and asterisk targets.
    let r = raw(
        e,
        b"GET http://safe.localhost/ HTTP/1.1\r\nHost: safe.localhost\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let r = raw(
        e,
        b"OPTIONS * HTTP/1.1\r\nHost: safe.localhost\r\nConnection: close\r\n\r\n",
    );
    assert!(matches!(r.status, 400 | 405), "{}", r.status);

    // Overlong URI.
    let long = format!("/{}", "a".repeat(20_000));
    let r = get(e, h, &long, &[]);
    assert!(matches!(r.status, 414 | 431), "{}", r.status);
    // Huge header and too many headers.
    let huge = "x".repeat(100_000);
    let r = get(e, h, "/", &[("x-big", &huge)]);
    assert_eq!(r.status, 431);
    let many: Vec<(String, String)> = (0..500).map(|i| (format!("x-h{i}"), "v".into())).collect();
    let many_ref: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = get(e, h, "/", &many_ref);
    assert_eq!(r.status, 431);
    // Bad hosts.
    assert_eq!(get(e, "bad host", "/", &[]).status, 400);
    let r = raw(e, b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 400);
    // A declared body larger than the limit.
    let r = request(e, "GET", h, "/", &[("content-length", "999999999999")]);
    assert_eq!(r.status, 413);
    // Garbage instead of HTTP: the connection is closed, the server lives on.
    let _ = std::panic::catch_unwind(|| raw(e, b"\x16\x03\x01\x00\xff garbage\r\n\r\n"));

    assert_eq!(
        get(e, h, "/", &[]).text(),
        "ok",
        "server still serves after all that"
    );
}

#[test]
fn slow_clients_are_cut_off() {
    let node = Node::start_configured("[limits]\nheader_read_timeout_secs = 1\n", &[]);
    use std::io::{Read, Write};
    // Sends half a request head and stalls.
    let mut s = std::net::TcpStream::connect(node.edge).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let start = std::time::Instant::now();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(
        start.elapsed() < std::time::Duration::from_secs(5),
        "connection held {:?}",
        start.elapsed()
    );
    // Connects and says nothing.
    let mut s = std::net::TcpStream::connect(node.edge).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let start = std::time::Instant::now();
    let _ = s.read_to_end(&mut buf);
    assert!(
        start.elapsed() < std::time::Duration::from_secs(5),
        "idle connection held {:?}",
        start.elapsed()
    );
}
