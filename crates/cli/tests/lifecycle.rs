//! Publishing under load, and draining on SIGTERM.

mod common;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

/// Content of version `v`: one repeated marker, so a mix is visible.
fn page(v: usize) -> String {
    format!("v{v:02};").repeat(8192)
}

#[test]
fn every_response_is_entirely_one_deploy_during_publishes() {
    let node = Node::start();
    node.ok(&["sites", "create", "atomic"]);
    let dir = site(&[("index.html", &page(0)), ("other.html", &page(0))]);
    node.deploy(dir.path(), "atomic", &["--prod"]);

    let stop = Arc::new(AtomicBool::new(false));
    let checked = Arc::new(AtomicUsize::new(0));
    let edge = node.edge;
    let clients: Vec<_> = (0..6)
        .map(|i| {
            let stop = stop.clone();
            let checked = checked.clone();
            std::thread::spawn(move || {
                let path = if i % 2 == 0 { "/" } else { "/other.html" };
                // Keep-alive connections, like a browser.
                let mut s = std::net::TcpStream::connect(edge).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut seen = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    write!(s, "GET {path} HTTP/1.1\r\nHost: atomic.localhost\r\n\r\n").unwrap();
                    let body = read_response(&mut s);
                    let marker = &body[..4];
                    assert!(body.len() == page(0).len(), "short body");
                    assert!(
                        body.chunks(4).all(|c| c == marker),
                        "a response mixed two deploys"
                    );
                    seen.push(String::from_utf8_lossy(marker).into_owned());
                    checked.fetch_add(1, Ordering::Relaxed);
                }
                seen
            })
        })
        .collect();
    for v in 1..=5 {
        write_files(
            dir.path(),
            &[("index.html", &page(v)), ("other.html", &page(v))],
        );
        node.deploy(dir.path(), "atomic", &["--prod"]);
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    let mut versions = std::collections::BTreeSet::new();
    for c in clients {
        let seen = c.join().expect("a client saw a torn response");
        // Versions only move forward on one connection.
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(seen, sorted, "a connection went back to an older deploy");
        versions.extend(seen);
    }
    assert!(checked.load(Ordering::Relaxed) > 50);
    assert!(versions.len() >= 3, "{versions:?}");
    assert!(versions.contains("v05;"));
}

/// Reads one HTTP/1.1 response with Content-Length from a keep-alive stream.
fn read_response(s: &mut std::net::TcpStream) -> Vec<u8> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    body
}

/// A node serving a 24 MiB `big.bin` of `fill` bytes (streamed from disk:
/// larger than the in-memory object limit) at `drain.localhost`.
fn node_with_big_file(fill: char) -> (Node, usize) {
    let node = Node::start();
    node.ok(&["sites", "create", "drain"]);
    let big = fill.to_string().repeat(24 << 20);
    let dir = site(&[("big.bin", &big)]);
    node.deploy(dir.path(), "drain", &["--prod"]);
    (node, big.len())
}

/// Reads a little of `r`, asks the node to stop while the rest is in
/// flight, checks that new connections are refused, and reads to the end.
/// Returns every byte read.
fn terminate_mid_read(node: &Node, r: &mut impl Read) -> Vec<u8> {
    let mut all = vec![0u8; 64 * 1024];
    r.read_exact(&mut all).unwrap();
    node.terminate();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        std::net::TcpStream::connect(node.edge).is_err(),
        "the listener should be closed while draining"
    );
    r.read_to_end(&mut all).unwrap();
    all
}

#[test]
fn sigterm_drains_in_flight_requests() {
    let (mut node, len) = node_with_big_file('z');
    let mut s = std::net::TcpStream::connect(node.edge).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: drain.localhost\r\n\r\n")
        .unwrap();
    let all = terminate_mid_read(&node, &mut s);
    let body_start = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(
        all.len() - body_start,
        len,
        "the in-flight response was cut"
    );
    let status = node.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn sigterm_drains_in_flight_h2_streams() {
    let (mut node, len) = node_with_big_file('y');
    let client = reqwest::blocking::Client::builder()
        .http2_prior_knowledge()
        .resolve("drain.localhost", node.edge)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut r = client
        .get(format!(
            "http://drain.localhost:{}/big.bin",
            node.edge.port()
        ))
        .send()
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let all = terminate_mid_read(&node, &mut r);
    assert_eq!(all.len(), len, "the in-flight stream was cut");
    assert!(all.iter().all(|&b| b == b'y'));
    // The connection, idle in the client's pool, was closed by the drain's
    // GOAWAY: the node exits well before its 30 s drain timeout.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = node.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the node still waits for an idle h2 connection"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    drop(client);
}
