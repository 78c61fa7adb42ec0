//! HTTP/1.1 connection handling over raw sockets: keep-alive, pipelining,
//! `HEAD`, `Connection: close`, requests the fast path hands to hyper in the
//! middle of a connection, and chunked streaming that reaches the client
//! frame by frame.

mod common;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use common::*;

const H: &str = "conn.localhost";

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn read_head(r: &mut impl BufRead) -> (u16, Vec<(String, String)>) {
    let mut status_line = String::new();
    r.read_line(&mut status_line).unwrap();
    assert!(
        status_line.starts_with("HTTP/1.1 ") && status_line.ends_with("\r\n"),
        "status line {status_line:?}"
    );
    let status = status_line[9..12].parse().unwrap();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        if line == "\r\n" {
            return (status, headers);
        }
        let (k, v) = line.trim_end().split_once(':').unwrap();
        headers.push((k.to_owned(), v.trim().to_owned()));
    }
}

/// Reads one chunk of a chunked body; `None` at the last chunk (and its
/// terminating blank line).
fn read_chunk(r: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut size = String::new();
    r.read_line(&mut size).unwrap();
    let n = usize::from_str_radix(size.trim_end(), 16).unwrap();
    let mut data = vec![0; n + 2];
    r.read_exact(&mut data).unwrap();
    assert_eq!(&data[n..], b"\r\n");
    data.truncate(n);
    (n > 0).then_some(data)
}

/// Reads one whole response, framed by its `Content-Length` or chunks.
fn read_response(r: &mut impl BufRead, head_request: bool) -> Resp {
    let (status, headers) = read_head(r);
    let mut resp = Resp {
        status,
        headers,
        body: Vec::new(),
    };
    if head_request || status == 304 || status == 204 {
        return resp;
    }
    if let Some(n) = resp.header("content-length") {
        let mut body = vec![0; n.parse().unwrap()];
        r.read_exact(&mut body).unwrap();
        resp.body = body;
    } else {
        assert_eq!(resp.header("transfer-encoding"), Some("chunked"));
        while let Some(c) = read_chunk(r) {
            resp.body.extend_from_slice(&c);
        }
    }
    resp
}

fn connect(node: &Node) -> (TcpStream, BufReader<TcpStream>) {
    let s = TcpStream::connect(node.edge).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let r = BufReader::new(s.try_clone().unwrap());
    (s, r)
}

fn node_with_site() -> (Node, tempfile::TempDir) {
    let node = Node::start();
    node.ok(&["sites", "create", "conn"]);
    let dir = site(&[
        ("index.html", "home"),
        ("a.txt", "alpha"),
        ("b.txt", &"b".repeat(40_000)),
        ("_redirects", "/old /a.txt 301\n"),
    ]);
    let d = node.deploy(dir.path(), "conn", &["--prod"]);
    assert_eq!(d["state"], "ready", "{d}");
    (node, dir)
}

#[test]
fn keep_alive_pipelining_and_hand_over() {
    let (node, _d) = node_with_site();
    let (mut s, mut r) = connect(&node);

    // Sequential requests on one connection.
    for _ in 0..3 {
        write!(s, "GET /a.txt HTTP/1.1\r\nHost: {H}\r\n\r\n").unwrap();
        let resp = read_response(&mut r, false);
        assert_eq!(resp.status, 200);
        assert_eq!(resp.body, b"alpha");
        assert_eq!(resp.header("content-length"), Some("5"));
        let date = resp.header("date").expect("a Date header");
        assert!(httpdate::parse_http_date(date).is_ok(), "bad Date {date:?}");
        assert_eq!(resp.header("connection"), None);
        let ids: Vec<&str> = resp
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("x-ledge-id"))
            .map(|(_, v)| v.as_str())
            .collect();
        assert!(ids.len() == 1 && ids[0].len() == 16, "{ids:?}");
        // A revalidation answers 304 with the id too.
        let etag = resp.header("etag").unwrap().to_owned();
        write!(
            s,
            "GET /a.txt HTTP/1.1\r\nHost: {H}\r\nIf-None-Match: {etag}\r\n\r\n"
        )
        .unwrap();
        let not_modified = read_response(&mut r, false);
        assert_eq!(not_modified.status, 304);
        assert_eq!(not_modified.header("x-ledge-id").map(str::len), Some(16));
    }

    // Pipelined in one write: HEAD (no body may follow its head), a large
    // GET, a redirect, a POST with a body (hyper's from here on), then GETs.
    let mut batch = Vec::new();
    write!(batch, "HEAD /b.txt HTTP/1.1\r\nHost: {H}\r\n\r\n").unwrap();
    write!(batch, "GET /b.txt HTTP/1.1\r\nHost: {H}\r\n\r\n").unwrap();
    write!(batch, "GET /old?q=1 HTTP/1.1\r\nHost: {H}\r\n\r\n").unwrap();
    write!(
        batch,
        "POST /a.txt HTTP/1.1\r\nHost: {H}\r\nContent-Length: 4\r\n\r\nbody"
    )
    .unwrap();
    write!(batch, "GET /a.txt HTTP/1.1\r\nHost: {H}\r\n\r\n").unwrap();
    write!(
        batch,
        "GET /index.html HTTP/1.1\r\nHost: {H}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    s.write_all(&batch).unwrap();

    let head = read_response(&mut r, true);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("40000"));
    let big = read_response(&mut r, false);
    assert_eq!(big.status, 200);
    assert_eq!(big.body, "b".repeat(40_000).as_bytes());
    let redirect = read_response(&mut r, false);
    assert_eq!(redirect.status, 301);
    assert_eq!(redirect.header("location"), Some("/a.txt?q=1"));
    let post = read_response(&mut r, false);
    assert!(
        post.status == 200 || post.status == 405,
        "POST answered {}",
        post.status
    );
    let after = read_response(&mut r, false);
    assert_eq!(after.status, 200);
    assert_eq!(after.body, b"alpha");
    let last = read_response(&mut r, false);
    assert_eq!(last.body, b"home");
    assert_eq!(last.header("connection"), Some("close"));
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "bytes after the last response: {rest:?}");
}

#[test]
fn requests_split_across_writes_and_bad_heads() {
    let (node, _d) = node_with_site();
    let (mut s, mut r) = connect(&node);
    // A head that arrives a few bytes at a time.
    let req = format!("GET /a.txt HTTP/1.1\r\nHost: {H}\r\nAccept: */*\r\n\r\n");
    for piece in req.as_bytes().chunks(7) {
        s.write_all(piece).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    let resp = read_response(&mut r, false);
    assert_eq!(resp.body, b"alpha");

    // HTTP/1.0 and an absolute-form target are still answered (by hyper).
    write!(s, "GET http://{H}/a.txt HTTP/1.1\r\nHost: {H}\r\n\r\n").unwrap();
    let resp = read_response(&mut r, false);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"alpha");
    let one_oh = raw(
        node.edge,
        format!("GET /a.txt HTTP/1.0\r\nHost: {H}\r\n\r\n").as_bytes(),
    );
    assert_eq!(one_oh.status, 200);
    assert_eq!(one_oh.body, b"alpha");

    // A malformed head gets hyper's 400, and the node keeps serving.
    let bad = raw(node.edge, b"GET /a.txt HTTP/1.1\r\nBad Header: x\r\n\r\n");
    assert_eq!(bad.status, 400);
    assert_eq!(get(node.edge, H, "/a.txt", &[]).text(), "alpha");
}

/// Reads a request head up to its blank line (an origin's side).
fn skip_request_head(r: &mut impl BufRead) {
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            return;
        }
    }
}

/// A node whose site `conn` proxies `path` to the origin on `port`.
fn proxy_node(path: &str, port: u16) -> (Node, tempfile::TempDir) {
    let node = Node::start_with(&["--outbound-allow", "127.0.0.0/8"]);
    node.ok(&["sites", "create", "conn"]);
    let dir = site(&[
        ("index.html", "home"),
        (
            "_redirects",
            &format!("{path} http://127.0.0.1:{port}{path} 200\n"),
        ),
    ]);
    let d = node.deploy(dir.path(), "conn", &["--prod"]);
    assert_eq!(d["state"], "ready", "{d}");
    (node, dir)
}

/// A chunked origin whose second chunk is sent only once the test says so.
fn chunked_origin() -> (u16, mpsc::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (go, wait) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        skip_request_head(&mut BufReader::new(s.try_clone().unwrap()));
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
            .unwrap();
        s.flush().unwrap();
        let _ = wait.recv_timeout(Duration::from_secs(20));
        s.write_all(b"6\r\nsecond\r\n0\r\n\r\n").unwrap();
        let _ = s.flush();
        std::thread::sleep(Duration::from_millis(200));
    });
    (port, go)
}

/// An origin that sends a chunked head and one chunk, then drops the
/// connection in the middle of the body.
fn broken_origin() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for _ in 0..2 {
            let Ok((mut s, _)) = listener.accept() else {
                return;
            };
            skip_request_head(&mut BufReader::new(s.try_clone().unwrap()));
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nCache-Control: no-store\r\n\r\n5\r\nfirst\r\n",
            );
            let _ = s.flush();
            std::thread::sleep(Duration::from_millis(100));
            drop(s);
        }
    });
    port
}

#[test]
fn a_body_cut_short_upstream_is_never_completed_downstream() {
    let (node, _d) = proxy_node("/cut", broken_origin());

    let (mut s, mut r) = connect(&node);
    write!(s, "GET /cut HTTP/1.1\r\nHost: {H}\r\n\r\n").unwrap();
    let (status, _) = read_head(&mut r);
    assert_eq!(status, 200);
    assert_eq!(read_chunk(&mut r).as_deref(), Some(&b"first"[..]));
    // No last chunk: the connection ends, so the client knows the body is
    // incomplete.
    let mut rest = Vec::new();
    let _ = r.read_to_end(&mut rest);
    assert!(
        !rest.windows(5).any(|w| w == b"0\r\n\r\n"),
        "a terminating chunk after a broken upstream: {:?}",
        String::from_utf8_lossy(&rest)
    );
    // The node keeps serving.
    assert_eq!(get(node.edge, H, "/", &[]).body, b"home");
}

#[test]
fn streamed_bodies_reach_the_client_chunk_by_chunk() {
    let (port, go) = chunked_origin();
    let (node, _d) = proxy_node("/live", port);

    let (mut s, mut r) = connect(&node);
    write!(s, "GET /live HTTP/1.1\r\nHost: {H}\r\n\r\n").unwrap();
    let (status, headers) = read_head(&mut r);
    assert_eq!(status, 200);
    assert!(
        headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v == "chunked"),
        "{headers:?}"
    );
    // The first chunk arrives while the origin is still holding the second.
    assert_eq!(read_chunk(&mut r).as_deref(), Some(&b"first"[..]));
    go.send(()).unwrap();
    assert_eq!(read_chunk(&mut r).as_deref(), Some(&b"second"[..]));
    assert_eq!(read_chunk(&mut r), None);
    // The connection is still good for the next request.
    write!(s, "GET / HTTP/1.1\r\nHost: {H}\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut r, false).body, b"home");
}

/// Bytes that differ at every offset (a wrong offset shows).
fn patterned(len: usize) -> String {
    (0..len)
        .map(|i| char::from(b'a' + ((i * 7 + i / 26) % 26) as u8))
        .collect()
}

#[test]
fn large_files_are_sent_whole_and_in_ranges_and_logged() {
    let (node, _d) = node_with_site();
    let big = patterned(300_000);
    let dir = site(&[("index.html", "home"), ("big.txt", &big)]);
    let d = node.deploy(dir.path(), "conn", &["--prod"]);
    assert_eq!(d["state"], "ready", "{d}");

    let (mut s, mut r) = connect(&node);
    for _ in 0..2 {
        write!(s, "GET /big.txt HTTP/1.1\r\nHost: {H}\r\n\r\n").unwrap();
        let whole = read_response(&mut r, false);
        assert_eq!(whole.status, 200);
        assert_eq!(whole.header("content-length"), Some("300000"));
        assert!(whole.body == big.as_bytes(), "the body differs");
    }
    write!(
        s,
        "GET /big.txt HTTP/1.1\r\nHost: {H}\r\nRange: bytes=70001-210000\r\n\r\n"
    )
    .unwrap();
    let part = read_response(&mut r, false);
    assert_eq!(part.status, 206);
    assert_eq!(
        part.header("content-range"),
        Some("bytes 70001-210000/300000")
    );
    assert!(
        part.body == big.as_bytes()[70_001..=210_000],
        "the range differs"
    );
    // The connection is still in step.
    write!(s, "GET / HTTP/1.1\r\nHost: {H}\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut r, false).body, b"home");

    // The access log has the bytes sent, and no error.
    let path = node.data.join("logs/access.log");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let records = loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let whole = text.rfind('\n').map_or("", |i| &text[..i]);
        let records: Vec<serde_json::Value> = whole
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .filter(|v: &serde_json::Value| v["site_id"] == "conn" && v["path"] == "/big.txt")
            .collect();
        if records.len() >= 3 || std::time::Instant::now() > deadline {
            break records;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(records.len(), 3, "{records:#?}");
    let sizes: Vec<u64> = records
        .iter()
        .map(|v| v["response_size"].as_u64().unwrap())
        .collect();
    assert_eq!(sizes, [300_000, 300_000, 140_000]);
    for v in &records {
        assert!(v["error_class"].is_null(), "{v}");
    }
}

#[test]
fn header_limits_hold_on_the_fast_path() {
    let node = Node::start_configured("[limits]\nmax_header_bytes = 8192\nmax_headers = 5\n", &[]);
    node.ok(&["sites", "create", "conn"]);
    let site_dir = site(&[("a.txt", "alpha")]);
    let d = node.deploy(site_dir.path(), "conn", &["--prod"]);
    assert_eq!(d["state"], "ready", "{d}");

    // Five headers (Host and Connection among them) pass; six are refused.
    let ok = get(
        node.edge,
        H,
        "/a.txt",
        &[("a", "1"), ("b", "2"), ("c", "3")],
    );
    assert_eq!(ok.status, 200);
    assert_eq!(ok.body, b"alpha");
    let many = get(
        node.edge,
        H,
        "/a.txt",
        &[("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")],
    );
    assert_eq!(many.status, 431);
    // A complete head over the byte limit, arriving in one write.
    let big = "x".repeat(9000);
    let long = raw(
        node.edge,
        format!("GET /a.txt HTTP/1.1\r\nHost: {H}\r\nX-Big: {big}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(long.status, 431);
    assert_eq!(get(node.edge, H, "/a.txt", &[]).body, b"alpha");
}
