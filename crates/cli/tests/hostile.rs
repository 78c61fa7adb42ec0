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

/// Reads h2 frames, answering PINGs (a graceful GOAWAY waits for one), to
/// the end of the connection; returns when the first GOAWAY came, `None` if
/// none did.
fn h2_goaway(s: &mut std::net::TcpStream) -> Option<std::time::Instant> {
    use std::io::{Read, Write};
    let mut goaway = None;
    loop {
        let mut head = [0u8; 9];
        if s.read_exact(&mut head).is_err() {
            return goaway;
        }
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let mut payload = vec![0u8; len];
        if s.read_exact(&mut payload).is_err() {
            return goaway;
        }
        if head[3] == 0x7 && goaway.is_none() {
            goaway = Some(std::time::Instant::now());
        }
        if head[3] == 0x6 && head[4] & 0x1 == 0 {
            let mut ack = vec![0, 0, 8, 0x6, 0x1, 0, 0, 0, 0];
            ack.extend_from_slice(&payload);
            let _ = s.write_all(&ack);
        }
    }
}

/// An h2 `GET /` for host `x` on `stream`: a HEADERS frame that ends the
/// headers and the stream (`:method GET`, `:scheme http`, `:path /` from
/// HPACK's static table, `:authority` as a literal).
fn h2_get(stream: u32) -> Vec<u8> {
    let block = [0x82, 0x86, 0x84, 0x01, 0x01, b'x'];
    let mut f = vec![0, 0, block.len() as u8, 0x1, 0x5];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(&block);
    f
}

#[test]
fn idle_h2_connections_are_closed() {
    use std::io::Write;
    use std::time::{Duration, Instant};
    let node = Node::start_configured("[limits]\nheader_read_timeout_secs = 1\n", &[]);
    let open = || {
        let mut s = std::net::TcpStream::connect(node.edge).unwrap();
        // The client preface and an empty SETTINGS frame.
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s
    };
    // A connection that starts no request, only PINGs every 200 ms (a
    // keep-alive, like hyper's own, is not use): GOAWAY after about a
    // second, then closed.
    let mut s = open();
    let mut w = s.try_clone().unwrap();
    let reader = std::thread::spawn(move || {
        let goaway = h2_goaway(&mut s);
        (goaway, Instant::now())
    });
    let start = Instant::now();
    let ping = [0, 0, 8, 0x6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
    while !reader.is_finished() && start.elapsed() < Duration::from_secs(10) {
        // The server may have closed already.
        let _ = w.write_all(&ping);
        std::thread::sleep(Duration::from_millis(200));
    }
    let (goaway, closed) = reader.join().unwrap();
    let goaway = goaway.expect("the server said GOAWAY before closing");
    let (to_goaway, to_close) = (goaway - start, closed - start);
    assert!(
        to_goaway >= Duration::from_millis(900),
        "GOAWAY after {to_goaway:?}: the connection was not idle yet"
    );
    assert!(
        to_close < Duration::from_secs(5),
        "an idle h2 connection was held {to_close:?}"
    );

    // A connection in use is not idle: a request every 300 ms for 3 s,
    // then nothing.
    let mut s = open();
    let mut w = s.try_clone().unwrap();
    let reader = std::thread::spawn(move || h2_goaway(&mut s));
    let start = Instant::now();
    for i in 0..10u32 {
        w.write_all(&h2_get(2 * i + 1)).unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }
    let last = Instant::now();
    let goaway = reader
        .join()
        .unwrap()
        .expect("the server said GOAWAY before closing");
    assert!(
        goaway > last,
        "GOAWAY {:?} after the first request, while requests came every 300 ms",
        goaway - start
    );
    assert!(
        goaway - last < Duration::from_secs(4),
        "{:?}",
        goaway - last
    );
}
