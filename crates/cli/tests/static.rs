//! Static serving to the byte, over real sockets.

mod common;
use std::io::Read;

use common::*;

fn node_with_site() -> (Node, tempfile::TempDir) {
    let node = Node::start();
    node.ok(&["sites", "create", "web"]);
    let css = "body { color: red; }\n".repeat(200);
    let dir = site(&[
        ("index.html", "<h1>home</h1>"),
        ("about.html", "about"),
        ("docs/index.html", "docs index"),
        ("404.html", "custom not found"),
        ("style.css", &css),
        ("digits.txt", "0123456789"),
        ("empty.txt", ""),
        ("data.json", "{\"a\":1}"),
    ]);
    let d = node.deploy(dir.path(), "web", &["--prod"]);
    assert_eq!(d["state"], "ready");
    (node, dir)
}

const H: &str = "web.localhost";

#[test]
fn path_resolution_and_404() {
    let (node, _d) = node_with_site();
    let e = node.edge;
    assert_eq!(get(e, H, "/", &[]).text(), "<h1>home</h1>");
    assert_eq!(get(e, H, "/about", &[]).text(), "about");
    assert_eq!(get(e, H, "/about/", &[]).text(), "about");
    let r = get(e, H, "/docs?x=1&y=2", &[]);
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/docs/?x=1&y=2"));
    assert_eq!(get(e, H, "/docs/", &[]).text(), "docs index");
    assert_eq!(get(e, H, "/docs/index.html", &[]).text(), "docs index");
    assert_eq!(get(e, H, "/ABOUT", &[]).status, 404);
    let nf = get(e, H, "/missing", &[]);
    assert_eq!(nf.status, 404);
    assert_eq!(nf.text(), "custom not found");
    assert_eq!(nf.header("content-type"), Some("text/html; charset=utf-8"));
    // POST on a static file.
    let p = request(e, "POST", H, "/", &[("content-length", "0")]);
    assert_eq!(p.status, 405);
    assert_eq!(p.header("allow"), Some("GET, HEAD"));
    // Platform headers.
    let r = get(e, H, "/", &[]);
    assert_eq!(r.header("x-ledge-id").map(str::len), Some(16));
    assert_eq!(
        r.header("cache-control"),
        Some("public, max-age=0, must-revalidate")
    );
    assert_eq!(
        get(e, H, "/data.json", &[]).header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let empty = get(e, H, "/empty.txt", &[]);
    assert_eq!(
        (empty.status, empty.header("content-length")),
        (200, Some("0"))
    );
}

#[test]
fn default_404_without_custom_page() {
    let node = Node::start();
    node.ok(&["sites", "create", "bare"]);
    let dir = site(&[("index.html", "x")]);
    node.deploy(dir.path(), "bare", &["--prod"]);
    let r = get(node.edge, "bare.localhost", "/nope", &[]);
    assert_eq!(r.status, 404);
    assert!(r.text().contains("Page not found"));
}

#[test]
fn conditional_requests() {
    let (node, _d) = node_with_site();
    let e = node.edge;
    let first = get(e, H, "/about", &[]);
    let etag = first.header("etag").unwrap().to_owned();
    let lm = first.header("last-modified").unwrap().to_owned();
    let r = get(e, H, "/about", &[("if-none-match", &etag)]);
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    assert_eq!(
        get(
            e,
            H,
            "/about",
            &[("if-none-match", &format!("\"x\", W/{etag}"))]
        )
        .status,
        304
    );
    assert_eq!(
        get(e, H, "/about", &[("if-none-match", "\"other\"")]).status,
        200
    );
    assert_eq!(
        get(e, H, "/about", &[("if-modified-since", &lm)]).status,
        304
    );
    assert_eq!(
        get(
            e,
            H,
            "/about",
            &[("if-modified-since", "Thu, 01 Jan 1970 00:00:00 GMT")]
        )
        .status,
        200
    );
    // If-None-Match wins over If-Modified-Since.
    assert_eq!(
        get(
            e,
            H,
            "/about",
            &[("if-none-match", "\"other\""), ("if-modified-since", &lm)]
        )
        .status,
        200
    );
    // HEAD: same headers, no body.
    let h = request(e, "HEAD", H, "/about", &[]);
    assert_eq!(h.status, 200);
    assert_eq!(h.header("content-length"), Some("5"));
    assert!(h.body.is_empty());
}

#[test]
fn ranges() {
    let (node, _d) = node_with_site();
    let e = node.edge;
    let r = get(e, H, "/digits.txt", &[("range", "bytes=2-5")]);
    assert_eq!(r.status, 206);
    assert_eq!(r.text(), "2345");
    assert_eq!(r.header("content-range"), Some("bytes 2-5/10"));
    assert_eq!(
        get(e, H, "/digits.txt", &[("range", "bytes=-3")]).text(),
        "789"
    );
    assert_eq!(
        get(e, H, "/digits.txt", &[("range", "bytes=7-")]).text(),
        "789"
    );
    let bad = get(e, H, "/digits.txt", &[("range", "bytes=20-30")]);
    assert_eq!(bad.status, 416);
    assert_eq!(bad.header("content-range"), Some("bytes */10"));
    // Malformed ranges are ignored.
    assert_eq!(
        get(e, H, "/digits.txt", &[("range", "bytes=5-1")]).status,
        200
    );
    // Multiple ranges: multipart/byteranges.
    let m = get(e, H, "/digits.txt", &[("range", "bytes=0-1,8-9")]);
    assert_eq!(m.status, 206);
    let ct = m.header("content-type").unwrap();
    let boundary = ct.strip_prefix("multipart/byteranges; boundary=").unwrap();
    let body = m.text();
    assert!(body.contains(&format!("--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Range: bytes 0-1/10\r\n\r\n01\r\n")), "{body}");
    assert!(
        body.contains("Content-Range: bytes 8-9/10\r\n\r\n89\r\n"),
        "{body}"
    );
    assert!(body.ends_with(&format!("--{boundary}--\r\n")));
    assert_eq!(
        m.header("content-length")
            .unwrap()
            .parse::<usize>()
            .unwrap(),
        m.body.len()
    );
    // If-Range with a stale validator → the whole file.
    let etag = get(e, H, "/digits.txt", &[])
        .header("etag")
        .unwrap()
        .to_owned();
    assert_eq!(
        get(
            e,
            H,
            "/digits.txt",
            &[("range", "bytes=0-0"), ("if-range", &etag)]
        )
        .status,
        206
    );
    assert_eq!(
        get(
            e,
            H,
            "/digits.txt",
            &[("range", "bytes=0-0"), ("if-range", "\"stale\"")]
        )
        .status,
        200
    );
}

#[test]
fn compressed_variants() {
    let (node, _d) = node_with_site();
    let e = node.edge;
    let plain = get(e, H, "/style.css", &[]);
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.header("vary"), Some("Accept-Encoding"));
    let br = get(e, H, "/style.css", &[("accept-encoding", "gzip, br")]);
    assert_eq!(br.header("content-encoding"), Some("br"));
    assert!(br.body.len() < plain.body.len() / 5);
    let mut out = Vec::new();
    brotli::BrotliDecompress(&mut &br.body[..], &mut out).unwrap();
    assert_eq!(out, plain.body);
    let gz = get(e, H, "/style.css", &[("accept-encoding", "gzip")]);
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&gz.body[..])
        .read_to_end(&mut out)
        .unwrap();
    assert_eq!(out, plain.body);
    // Three encodings, three ETags; each revalidates on its own.
    let tags = [plain.header("etag"), br.header("etag"), gz.header("etag")];
    assert!(
        tags[0] != tags[1] && tags[1] != tags[2] && tags[0] != tags[2],
        "{tags:?}"
    );
    let br_tag = br.header("etag").unwrap();
    assert_eq!(
        get(
            e,
            H,
            "/style.css",
            &[("accept-encoding", "br"), ("if-none-match", br_tag)]
        )
        .status,
        304
    );
    assert_eq!(
        get(e, H, "/style.css", &[("if-none-match", br_tag)]).status,
        200
    );
    // q=0 refuses an encoding.
    assert_eq!(
        get(e, H, "/style.css", &[("accept-encoding", "br;q=0, gzip")]).header("content-encoding"),
        Some("gzip")
    );
    // Tiny files are not compressed.
    assert_eq!(
        get(e, H, "/about", &[("accept-encoding", "br")]).header("content-encoding"),
        None
    );
}

#[test]
fn large_files_stream_with_ranges() {
    let node = Node::start();
    node.ok(&["sites", "create", "big"]);
    // Larger than the in-memory object limit (8 MiB): streamed from disk.
    let big: String = (0..(10 << 20))
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let dir = site(&[("big.txt", &big)]);
    node.deploy(dir.path(), "big", &["--prod"]);
    let r = get(node.edge, "big.localhost", "/big.txt", &[]);
    assert_eq!(r.status, 200);
    assert!(r.body == big.as_bytes());
    let start = 9 << 20;
    let r = get(
        node.edge,
        "big.localhost",
        "/big.txt",
        &[("range", &format!("bytes={start}-{}", start + 99))],
    );
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &big.as_bytes()[start..start + 100]);
}

#[test]
fn http2_prior_knowledge() {
    let (node, _d) = node_with_site();
    let client = reqwest::blocking::Client::builder()
        .http2_prior_knowledge()
        .resolve("web.localhost", node.edge)
        .build()
        .unwrap();
    let r = client
        .get(format!("http://web.localhost:{}/about", node.edge.port()))
        .send()
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap(), "about");
}
