//! Hot answers: static files the HTTP/1.1 fast path keeps and sends again
//! without the pipeline. Each test compares kept answers with the answers
//! the whole pipeline gave, byte for byte but for the request id and
//! `Date`, and reads `ledge_hot_answers_total` to know which ones were
//! kept. The node runs on one thread (`TOKIO_WORKER_THREADS=1`), so every
//! request sees the same kept answers.

mod common;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use serde_json::Value;

const H: &str = "hot.localhost";

fn one_thread_node() -> Node {
    Node::start_with_env(&[], &[("TOKIO_WORKER_THREADS", "1")])
}

/// One keep-alive connection.
struct Conn {
    r: BufReader<TcpStream>,
}

#[derive(Debug, Clone, PartialEq)]
struct Answer {
    status: u16,
    /// Lowercased names, sorted, without `x-ledge-id` and `date`.
    headers: Vec<(String, String)>,
    id: String,
    body: Vec<u8>,
}

impl Conn {
    fn open(node: &Node) -> Conn {
        let s = TcpStream::connect(node.edge).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Conn {
            r: BufReader::new(s),
        }
    }

    fn send(&mut self, method: &str, target: &str, headers: &[(&str, &str)]) -> Answer {
        let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {H}\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        self.r.get_mut().write_all(req.as_bytes()).unwrap();
        let mut line = String::new();
        self.r.read_line(&mut line).unwrap();
        let status = line[9..12].parse().unwrap();
        let (mut headers, mut id, mut len) = (Vec::new(), String::new(), 0usize);
        let mut dates = 0;
        loop {
            let mut line = String::new();
            self.r.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            let (k, v) = line.trim_end().split_once(':').unwrap();
            let (k, v) = (k.to_ascii_lowercase(), v.trim().to_owned());
            match k.as_str() {
                "x-ledge-id" => id = v,
                "date" => dates += 1,
                _ => {
                    if k == "content-length" {
                        len = v.parse().unwrap();
                    }
                    headers.push((k, v));
                }
            }
        }
        assert_eq!(dates, 1, "one Date header");
        assert_eq!(id.len(), 16, "a request id");
        headers.sort();
        let mut body = vec![
            0;
            if method == "HEAD" || status == 304 {
                0
            } else {
                len
            }
        ];
        self.r.read_exact(&mut body).unwrap();
        Answer {
            status,
            headers,
            id,
            body,
        }
    }

    fn get(&mut self, target: &str, headers: &[(&str, &str)]) -> Answer {
        self.send("GET", target, headers)
    }
}

/// Asserts that `again` is `first` with another request id.
fn same_answer(first: &Answer, again: &Answer, what: &str) {
    assert_eq!(first.status, again.status, "{what}");
    assert_eq!(first.headers, again.headers, "{what}");
    assert_eq!(first.body, again.body, "{what}");
    assert_ne!(first.id, again.id, "{what}: request ids repeat");
}

fn deploy(node: &Node, files: &[(&str, &str)]) -> String {
    let dir = site(files);
    let d = node.deploy(dir.path(), "hot", &["--prod"]);
    assert_eq!(d["state"], "ready", "{d}");
    d["id"].as_str().unwrap().to_owned()
}

#[test]
fn kept_answers_are_the_pipelines_answers() {
    let node = one_thread_node();
    node.ok(&["sites", "create", "hot"]);
    let css = "body { color: red; }\n".repeat(200);
    let big = "0123456789abcdef".repeat(8 * 1024); // 128 KiB: sendfile
    deploy(
        &node,
        &[
            ("index.html", "<h1>home</h1>"),
            ("style.css", &css),
            ("big.txt", &big),
            ("empty.txt", ""),
            ("404.html", "custom not found"),
            (
                "_redirects",
                "/old  /new.html  301\n/pretty  /index.html  200\n",
            ),
            (
                "_headers",
                "/style.css\n  X-Custom: yes\n  Cache-Control: public, max-age=60\n",
            ),
        ],
    );
    let mut c = Conn::open(&node);
    let cases: [(&str, &[(&str, &str)]); 11] = [
        ("/", &[]),
        (
            "/index.html",
            &[("User-Agent", "test/1"), ("Accept", "*/*")],
        ),
        ("/style.css", &[]),
        ("/style.css", &[("Accept-Encoding", "br")]),
        ("/style.css", &[("Accept-Encoding", "gzip")]),
        ("/style.css?v=2", &[("Accept-Encoding", "gzip, br")]),
        ("/big.txt", &[]),
        ("/empty.txt", &[("Referer", "http://x.example/")]),
        ("/old?from=here", &[]),
        ("/pretty", &[]),
        ("/missing", &[]),
    ];
    let before = hot_answers(&node);
    let mut firsts = Vec::new();
    for (target, headers) in cases {
        firsts.push(c.get(target, headers));
    }
    // The same requests again, three times: the first time their answers
    // are kept (a key is kept when it comes a second time), then they are
    // kept answers.
    for round in 0..3 {
        for ((target, headers), first) in cases.iter().zip(&firsts) {
            let again = c.get(target, headers);
            same_answer(
                first,
                &again,
                &format!("{target} {headers:?} round {round}"),
            );
        }
    }
    assert_eq!(hot_answers(&node) - before, 2 * cases.len() as u64);
    // What the answers are, so that a wrong first answer cannot pass.
    let [root, _, css_plain, css_br, css_gzip, _, big_plain, empty, moved, pretty, missing] =
        &firsts[..]
    else {
        unreachable!()
    };
    assert_eq!(root.body, b"<h1>home</h1>");
    assert_eq!(css_plain.body, css.as_bytes());
    let header = |a: &Answer, n: &str| {
        a.headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(header(css_plain, "x-custom").as_deref(), Some("yes"));
    assert_eq!(header(css_br, "content-encoding").as_deref(), Some("br"));
    assert_eq!(
        header(css_gzip, "content-encoding").as_deref(),
        Some("gzip")
    );
    assert_ne!(css_br.body, css_gzip.body);
    assert_eq!(big_plain.body, big.as_bytes());
    assert_eq!(header(empty, "content-length").as_deref(), Some("0"));
    assert_eq!(moved.status, 301);
    assert_eq!(
        header(moved, "location").as_deref(),
        Some("/new.html?from=here")
    );
    assert_eq!(
        (pretty.status, pretty.body.as_slice()),
        (200, &b"<h1>home</h1>"[..])
    );
    assert_eq!(
        (missing.status, missing.body.as_slice()),
        (404, &b"custom not found"[..])
    );

    // HEAD, conditional and range requests take the pipeline, and still
    // get what they ask for once the file is kept.
    let etag = header(css_plain, "etag").unwrap();
    let kept = hot_answers(&node);
    let head = c.send("HEAD", "/style.css", &[]);
    assert_eq!((head.status, head.body.len()), (200, 0));
    assert_eq!(
        header(&head, "content-length"),
        header(css_plain, "content-length")
    );
    let not_modified = c.get("/style.css", &[("If-None-Match", &etag)]);
    assert_eq!(not_modified.status, 304);
    let range = c.get("/big.txt", &[("Range", "bytes=16-31")]);
    assert_eq!(
        (range.status, range.body.as_slice()),
        (206, &big.as_bytes()[16..32])
    );
    let forwarded = c.get("/style.css", &[("X-Forwarded-For", "203.0.113.9")]);
    same_answer(css_plain, &forwarded, "a request with another header");
    assert_eq!(hot_answers(&node), kept, "none of these is a kept answer");
}

#[test]
fn a_publish_replaces_kept_answers_at_once() {
    let node = one_thread_node();
    node.ok(&["sites", "create", "hot"]);
    deploy(&node, &[("a.txt", "first")]);
    let mut c = Conn::open(&node);
    for _ in 0..4 {
        assert_eq!(c.get("/a.txt", &[]).body, b"first");
    }
    assert_eq!(hot_answers(&node), 2);
    deploy(&node, &[("a.txt", "second")]);
    // The deploy command returns once the node has published; the edge
    // follows the change feed, so the very next answers may lag by a moment,
    // but never come back once the new one is seen.
    eventually("the new deploy is served", || {
        c.get("/a.txt", &[]).body == b"second"
    });
    for _ in 0..5 {
        assert_eq!(c.get("/a.txt", &[]).body, b"second");
    }
    // The key is known, so the new answer is kept at once.
    assert!(hot_answers(&node) >= 2 + 4, "the new answer is kept too");
    // And a rollback brings the first one back.
    node.ok(&["rollback", "--site", "hot"]);
    eventually("the rollback is served", || {
        c.get("/a.txt", &[]).body == b"first"
    });
    for _ in 0..3 {
        assert_eq!(c.get("/a.txt", &[]).body, b"first");
    }
}

#[test]
fn rules_that_read_cookies_are_never_kept() {
    let node = one_thread_node();
    node.ok(&["sites", "create", "hot"]);
    deploy(
        &node,
        &[
            ("page.html", "plain"),
            ("beta.html", "beta"),
            ("_redirects", "/page.html  /beta.html  200!  Cookie=beta\n"),
        ],
    );
    let mut c = Conn::open(&node);
    for _ in 0..3 {
        assert_eq!(c.get("/page.html", &[]).body, b"plain");
        assert_eq!(c.get("/page.html", &[("Cookie", "beta=1")]).body, b"beta");
    }
    assert_eq!(hot_answers(&node), 0);
}

/// The first `n` access records of `site` in the node's access log, once
/// they are all written (and no more than `n`).
fn access_records(node: &Node, site: &str, n: usize) -> Vec<Value> {
    let path = node.data.join("logs/access.log");
    let mut records: Vec<Value> = Vec::new();
    eventually(&format!("{n} access records"), || {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let whole = text.rfind('\n').map_or("", |i| &text[..i]);
        records = whole
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|v| v["site_id"] == site)
            .collect();
        records.len() >= n
    });
    assert_eq!(records.len(), n);
    records
}

#[test]
fn kept_answers_leave_the_same_access_records() {
    let node = one_thread_node();
    node.ok(&["sites", "create", "hot"]);
    let deploy_id = deploy(
        &node,
        &[
            ("doc.txt", "some text"),
            ("_redirects", "/go  /doc.txt  302\n"),
        ],
    );
    let mut c = Conn::open(&node);
    let headers = [("User-Agent", "agent/2"), ("Referer", "http://r.example/")];
    let answers: Vec<Answer> = (0..4).map(|_| c.get("/doc.txt?q=1", &headers)).collect();
    let redirects: Vec<Answer> = (0..4).map(|_| c.get("/go", &[])).collect();
    assert_eq!(redirects[3].status, 302);
    assert_eq!(hot_answers(&node), 4);
    let mut records = access_records(&node, "hot", 8);
    let redirect_records = records.split_off(4);
    let varying = ["timestamp", "request_id", "duration", "time_to_first_byte"];
    let strip = |r: &Value| {
        let mut r = r.clone();
        for k in varying {
            r.as_object_mut().unwrap().remove(k);
        }
        r
    };
    for (r, a) in records.iter().zip(&answers) {
        assert_eq!(r["request_id"], a.id.as_str());
        assert_eq!(strip(r), strip(&records[0]), "{r:#}");
        for k in varying {
            assert!(!r[k].is_null(), "{k} in {r:#}");
        }
    }
    let r = &records[0];
    assert_eq!(r["deploy_id"], deploy_id.as_str());
    assert_eq!(r["path"], "/doc.txt");
    assert_eq!(r["query"], "q=1");
    assert_eq!(r["status_code"], 200);
    assert_eq!(r["response_size"], 9);
    assert_eq!(r["user_agent"], "agent/2");
    assert_eq!(r["referrer"], "http://r.example/");
    assert_eq!(r["answered_by"], "static");
    assert_eq!(r["host"], H);
    for (r, a) in redirect_records.iter().zip(&redirects) {
        assert_eq!(r["request_id"], a.id.as_str());
        assert_eq!(strip(r), strip(&redirect_records[0]), "{r:#}");
    }
    let r = &redirect_records[0];
    assert_eq!(r["status_code"], 302);
    assert_eq!(r["answered_by"], "redirect");
    assert_eq!(r["rule"], "_redirects:1");
    assert_eq!(r["path"], "/go");
    assert!(r["query"].is_null());
    assert_eq!(r["response_size"], 0);
}

/// Kept answers on one connection name each request's own agent and
/// referrer, however they change from one request to the next (the
/// connection reuses the text of the last ones it saw).
#[test]
fn kept_answers_record_each_requests_agent_and_referrer() {
    let node = one_thread_node();
    node.ok(&["sites", "create", "hot"]);
    deploy(&node, &[("doc.txt", "some text")]);
    let mut c = Conn::open(&node);
    let sent: [(Option<&str>, Option<&str>); 8] = [
        (Some("a/1"), Some("http://r1.example/")),
        (Some("a/1"), Some("http://r1.example/")),
        (Some("a/1"), Some("http://r1.example/")),
        (Some("b/2 \"quoted\""), Some("http://r1.example/")),
        (None, Some("http://r2.example/")),
        (Some("b/2 \"quoted\""), None),
        (Some("a/1"), Some("http://r1.example/")),
        (None, None),
    ];
    let ids: Vec<String> = sent
        .iter()
        .map(|(agent, referer)| {
            let mut headers = Vec::new();
            headers.extend(agent.map(|a| ("User-Agent", a)));
            headers.extend(referer.map(|r| ("Referer", r)));
            let a = c.get("/doc.txt", &headers);
            assert_eq!(a.status, 200);
            a.id
        })
        .collect();
    assert!(
        hot_answers(&node) >= 5,
        "the later requests were kept answers"
    );
    let records = access_records(&node, "hot", sent.len());
    for ((r, id), (agent, referer)) in records.iter().zip(&ids).zip(&sent) {
        assert_eq!(r["request_id"], id.as_str());
        assert_eq!(
            r["user_agent"],
            agent.map_or(Value::Null, Value::from),
            "{r:#}"
        );
        assert_eq!(
            r["referrer"],
            referer.map_or(Value::Null, Value::from),
            "{r:#}"
        );
    }
}

/// An answer over h2, in the form `Answer` has.
fn h2_get(
    client: &reqwest::blocking::Client,
    node: &Node,
    target: &str,
    headers: &[(&str, &str)],
) -> Answer {
    let mut req = client.get(format!("http://{H}:{}{target}", node.edge.port()));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let status = r.status().as_u16();
    let (mut headers, mut id, mut dates) = (Vec::new(), String::new(), 0);
    for (k, v) in r.headers() {
        let v = v.to_str().unwrap().to_owned();
        match k.as_str() {
            "x-ledge-id" => id = v,
            "date" => dates += 1,
            _ => headers.push((k.as_str().to_owned(), v)),
        }
    }
    assert_eq!(dates, 1, "one Date header");
    assert_eq!(id.len(), 16, "a request id");
    headers.sort();
    Answer {
        status,
        headers,
        id,
        body: r.bytes().unwrap().to_vec(),
    }
}

/// h2 keeps answers too: the same answers and access records as the
/// pipeline's, and requests with other headers still take the pipeline.
#[test]
fn kept_h2_answers_are_the_pipelines_answers() {
    let node = one_thread_node();
    node.ok(&["sites", "create", "hot"]);
    let css = "body { color: blue; }\n".repeat(200);
    let big = "fedcba9876543210".repeat(8 * 1024);
    deploy(
        &node,
        &[
            ("index.html", "<h1>h2 home</h1>"),
            ("style.css", &css),
            ("big.txt", &big),
            ("empty.txt", ""),
            ("404.html", "h2 not found"),
            (
                "_redirects",
                "/old  /new.html  301\n/pretty  /index.html  200\n",
            ),
            ("_headers", "/style.css\n  X-Custom: h2\n"),
        ],
    );
    let client = reqwest::blocking::Client::builder()
        .http2_prior_knowledge()
        .resolve(H, node.edge)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let cases: [(&str, &[(&str, &str)]); 9] = [
        ("/", &[("user-agent", "h2/1")]),
        ("/style.css", &[]),
        ("/style.css", &[("accept-encoding", "br")]),
        ("/style.css?v=3", &[("accept-encoding", "gzip")]),
        ("/big.txt", &[]),
        ("/empty.txt", &[("referer", "http://r.example/")]),
        ("/old?from=h2", &[]),
        ("/pretty", &[]),
        ("/missing", &[]),
    ];
    let before = hot_answers(&node);
    let firsts: Vec<Answer> = cases
        .iter()
        .map(|(t, h)| h2_get(&client, &node, t, h))
        .collect();
    for round in 0..3 {
        for ((target, headers), first) in cases.iter().zip(&firsts) {
            let again = h2_get(&client, &node, target, headers);
            same_answer(
                first,
                &again,
                &format!("h2 {target} {headers:?} round {round}"),
            );
        }
    }
    assert_eq!(hot_answers(&node) - before, 2 * cases.len() as u64);
    let header = |a: &Answer, n: &str| {
        a.headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
    };
    let [root, css_plain, css_br, css_gzip, big_plain, empty, moved, pretty, missing] = &firsts[..]
    else {
        unreachable!()
    };
    assert_eq!(root.body, b"<h1>h2 home</h1>");
    assert_eq!(css_plain.body, css.as_bytes());
    assert_eq!(header(css_plain, "x-custom").as_deref(), Some("h2"));
    assert_eq!(header(css_br, "content-encoding").as_deref(), Some("br"));
    assert_eq!(
        header(css_gzip, "content-encoding").as_deref(),
        Some("gzip")
    );
    assert_eq!(big_plain.body, big.as_bytes());
    assert_eq!(header(empty, "content-length").as_deref(), Some("0"));
    assert_eq!(moved.status, 301);
    assert_eq!(
        header(moved, "location").as_deref(),
        Some("/new.html?from=h2")
    );
    assert_eq!(pretty.body, b"<h1>h2 home</h1>");
    assert_eq!(
        (missing.status, missing.body.as_slice()),
        (404, &b"h2 not found"[..])
    );

    // Other headers take the pipeline, and get what they ask for.
    let kept = hot_answers(&node);
    let etag = header(css_plain, "etag").unwrap();
    let not_modified = h2_get(&client, &node, "/style.css", &[("if-none-match", &etag)]);
    assert_eq!(not_modified.status, 304);
    let range = h2_get(&client, &node, "/big.txt", &[("range", "bytes=16-31")]);
    assert_eq!(
        (range.status, range.body.as_slice()),
        (206, &big.as_bytes()[16..32])
    );
    let other = client
        .get(format!("http://{H}:{}/", node.edge.port()))
        .header("x-other", "b")
        .send()
        .unwrap();
    assert_eq!(other.status(), 200);
    assert_eq!(hot_answers(&node), kept, "none of these is a kept answer");

    // The access records of kept answers are the pipeline's.
    let path = node.data.join("logs/access.log");
    let mut records: Vec<Value> = Vec::new();
    let want = 4 * cases.len() + 3;
    eventually("the h2 access records", || {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let whole = text.rfind('\n').map_or("", |i| &text[..i]);
        records = whole
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|v| v["site_id"] == "hot" && v["http_version"] == "HTTP/2")
            .collect();
        records.len() >= want
    });
    let varying = ["timestamp", "request_id", "duration", "time_to_first_byte"];
    let strip = |r: &Value| {
        let mut r = r.clone();
        for k in varying {
            r.as_object_mut().unwrap().remove(k);
        }
        r
    };
    for (i, first) in firsts.iter().enumerate() {
        let of_case: Vec<&Value> = (0..4)
            .map(|round| &records[round * cases.len() + i])
            .collect();
        assert_eq!(of_case[0]["request_id"], first.id.as_str());
        for r in &of_case[1..] {
            assert_eq!(strip(r), strip(of_case[0]), "case {i}: {r:#}");
        }
        assert_eq!(
            of_case[3]["response_size"].as_u64(),
            Some(first.body.len() as u64),
            "case {i}"
        );
    }
    assert_eq!(records[0]["user_agent"], "h2/1");
    assert_eq!(records[5]["referrer"], "http://r.example/");
}
