//! The HTTP cache end to end: a real node in front of a real local origin
//! that counts what it is asked. Time-dependent behaviour (expiry, the
//! arithmetic of freshness) is tested in `ledge-cache` with a manual clock;
//! these tests use only what needs no waiting.

mod common;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

const H: &str = "cache.localhost";

/// What the origin answers for a path: (status line, headers, body).
type Answer = (String, Vec<(String, String)>, Vec<u8>);

/// A counting origin. The answer for each request comes from `route(path,
/// request head, how many times this path was asked before)`.
struct Origin {
    addr: SocketAddr,
    counts: Arc<Mutex<HashMap<String, usize>>>,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Origin {
    fn start(route: impl Fn(&str, &str, usize) -> Answer + Send + Sync + 'static) -> Origin {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let counts: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let heads: Arc<Mutex<Vec<String>>> = Arc::default();
        let route = Arc::new(route);
        let (c, h) = (counts.clone(), heads.clone());
        std::thread::spawn(move || {
            for stream in l.incoming() {
                let Ok(mut s) = stream else { return };
                let (c, h, route) = (c.clone(), h.clone(), route.clone());
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(s.try_clone().unwrap());
                    let mut head = String::new();
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                            break;
                        }
                        head.push_str(&line);
                    }
                    let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
                    let n = {
                        let mut c = c.lock().unwrap();
                        let e = c.entry(path.clone()).or_insert(0);
                        *e += 1;
                        *e - 1
                    };
                    h.lock().unwrap().push(head.clone());
                    let (status, headers, body) = route(&path, &head, n);
                    let mut out = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
                    if !headers
                        .iter()
                        .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    {
                        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
                    }
                    for (k, v) in headers {
                        out.push_str(&format!("{k}: {v}\r\n"));
                    }
                    out.push_str("\r\n");
                    let _ = s.write_all(out.as_bytes());
                    let _ = s.write_all(&body);
                });
            }
        });
        Origin {
            addr,
            counts,
            heads,
        }
    }

    fn count(&self, path: &str) -> usize {
        self.counts.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    fn last_head(&self) -> String {
        self.heads
            .lock()
            .unwrap()
            .last()
            .cloned()
            .unwrap_or_default()
    }
}

fn ok(headers: &[(&str, &str)], body: &str) -> Answer {
    (
        "200 OK".into(),
        headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body.as_bytes().to_vec(),
    )
}

fn node_for(origin: &Origin) -> (Node, tempfile::TempDir) {
    let node = Node::start_with(&["--outbound-allow", "127.0.0.0/8"]);
    node.ok(&["sites", "create", "cache"]);
    let dir = site(&[
        ("index.html", "home"),
        (
            "_redirects",
            &format!("/o/*  http://{}/:splat  200\n", origin.addr),
        ),
    ]);
    let d = node.deploy(dir.path(), "cache", &["--prod"]);
    assert_eq!(d["state"], "ready", "{d}");
    (node, dir)
}

fn cache_status(r: &Raw) -> String {
    r.header("cache-status").unwrap_or("").to_owned()
}

#[test]
fn hits_revalidation_and_stale_while_revalidate() {
    let origin = Origin::start(|path, head, n| match path {
        "/fresh" => ok(
            &[
                ("Cache-Control", "public, max-age=3600"),
                ("Cache-Tag", "a, b"),
            ],
            "fresh body",
        ),
        // Stored, but every use is revalidated: 304 after the first.
        "/etag" if head.to_lowercase().contains("if-none-match: \"v1\"") => (
            "304 Not Modified".into(),
            vec![("ETag".into(), "\"v1\"".into())],
            vec![],
        ),
        "/etag" => ok(
            &[("Cache-Control", "public, no-cache"), ("ETag", "\"v1\"")],
            "validated body",
        ),
        // Always stale, usable for a minute while refreshed in the background.
        "/swr" => ok(
            &[(
                "Cache-Control",
                "public, max-age=0, stale-while-revalidate=60",
            )],
            &format!("version {n}"),
        ),
        _ => ("404 Not Found".into(), vec![], b"nope".to_vec()),
    });
    let (node, _d) = node_for(&origin);
    let e = node.edge;

    // Miss, then hits: the origin is asked once.
    let first = get(e, H, "/o/fresh", &[]);
    assert_eq!(first.status, 200);
    assert_eq!(first.text(), "fresh body");
    assert!(cache_status(&first).contains("fwd=uri-miss"), "{first:?}");
    for _ in 0..3 {
        let r = get(e, H, "/o/fresh", &[]);
        assert_eq!(r.text(), "fresh body");
        assert!(cache_status(&r).contains("hit"), "{r:?}");
        assert!(r.header("age").is_some(), "{r:?}");
        // Tags pass downstream as Cache-Tag (spec §5.4).
        assert_eq!(r.header("cache-tag"), Some("a, b"));
    }
    assert_eq!(origin.count("/fresh"), 1);

    // Revalidation: the origin answers 304 and the client still gets the body.
    assert_eq!(get(e, H, "/o/etag", &[]).text(), "validated body");
    let r = get(e, H, "/o/etag", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "validated body");
    assert_eq!(origin.count("/etag"), 2);
    assert!(
        origin
            .last_head()
            .to_lowercase()
            .contains("if-none-match: \"v1\""),
        "{}",
        origin.last_head()
    );

    // stale-while-revalidate: the stale copy is served at once, one refresh
    // happens behind it, later requests see the refreshed copy.
    assert_eq!(get(e, H, "/o/swr", &[]).text(), "version 0");
    let r = get(e, H, "/o/swr", &[]);
    assert_eq!(r.text(), "version 0", "served stale without waiting");
    assert!(cache_status(&r).contains("fwd=stale"), "{r:?}");
    eventually("background refresh stored", || {
        get(e, H, "/o/swr", &[]).text() != "version 0"
    });
    assert!(origin.count("/swr") >= 2);
}

#[test]
fn concurrent_misses_coalesce_into_one_origin_request() {
    let origin = Origin::start(|_, _, n| {
        std::thread::sleep(Duration::from_millis(300));
        ok(
            &[("Cache-Control", "public, max-age=3600")],
            &format!("fill {n}"),
        )
    });
    let (node, _d) = node_for(&origin);
    let e = node.edge;
    let handles: Vec<_> = (0..100)
        .map(|_| std::thread::spawn(move || get(e, H, "/o/herd", &[])))
        .collect();
    for h in handles {
        let r = h.join().unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "fill 0");
    }
    assert_eq!(origin.count("/herd"), 1, "one fill for a hundred misses");
}

#[test]
fn keys_vary_and_private_responses_are_not_stored() {
    let origin = Origin::start(|path, head, n| {
        let lower = head.to_lowercase();
        let lang = lower
            .lines()
            .find_map(|l| l.strip_prefix("accept-language: "))
            .unwrap_or("none")
            .to_owned();
        match path.split('?').next().unwrap_or("") {
            "/netlify-vary" => ok(
                &[
                    ("Cache-Control", "public, max-age=3600"),
                    ("Netlify-Vary", "query=lang"),
                ],
                &format!("{path} #{n}"),
            ),
            "/vary" => ok(
                &[
                    ("Cache-Control", "public, max-age=3600"),
                    ("Vary", "Accept-Language"),
                ],
                &format!("lang {lang} #{n}"),
            ),
            "/private" => ok(
                &[("Cache-Control", "private, max-age=3600")],
                &format!("#{n}"),
            ),
            "/cookie" => ok(
                &[("Cache-Control", "max-age=3600"), ("Set-Cookie", "s=1")],
                &format!("#{n}"),
            ),
            "/auth" => ok(&[("Cache-Control", "max-age=3600")], &format!("#{n}")),
            "/edge-only" => ok(
                &[
                    ("Netlify-CDN-Cache-Control", "public, max-age=3600"),
                    ("Cache-Control", "no-store"),
                ],
                &format!("#{n}"),
            ),
            _ => ("404 Not Found".into(), vec![], vec![]),
        }
    });
    let (node, _d) = node_for(&origin);
    let e = node.edge;

    // Netlify-Vary: only `lang` of the query is in the key.
    let en = get(e, H, "/o/netlify-vary?lang=en&x=1", &[]).text();
    assert_eq!(get(e, H, "/o/netlify-vary?lang=en&x=2", &[]).text(), en);
    let de = get(e, H, "/o/netlify-vary?lang=de", &[]).text();
    assert_ne!(de, en);
    assert_eq!(origin.count("/netlify-vary?lang=en&x=1"), 1);
    assert_eq!(origin.count("/netlify-vary?lang=en&x=2"), 0);

    // Vary: one entry per Accept-Language.
    let a = get(e, H, "/o/vary", &[("Accept-Language", "en")]).text();
    let b = get(e, H, "/o/vary", &[("Accept-Language", "fr")]).text();
    assert!(a.starts_with("lang en"), "{a}");
    assert!(b.starts_with("lang fr"), "{b}");
    assert_eq!(get(e, H, "/o/vary", &[("Accept-Language", "en")]).text(), a);
    assert_eq!(origin.count("/vary"), 2);

    // Private, Set-Cookie and authorized responses go to the origin each time.
    for _ in 0..2 {
        get(e, H, "/o/private", &[]);
        get(e, H, "/o/cookie", &[]);
        get(e, H, "/o/auth", &[("Authorization", "Bearer x")]);
    }
    assert_eq!(origin.count("/private"), 2);
    assert_eq!(origin.count("/cookie"), 2);
    assert_eq!(origin.count("/auth"), 2);

    // An edge-targeted control wins over Cache-Control, and is not sent on.
    let r1 = get(e, H, "/o/edge-only", &[]);
    let r2 = get(e, H, "/o/edge-only", &[]);
    assert_eq!(r1.text(), r2.text());
    assert_eq!(origin.count("/edge-only"), 1);
    assert_eq!(r2.header("netlify-cdn-cache-control"), None);
    assert_eq!(r2.header("cache-control"), Some("no-store"));
}

#[test]
fn purges_take_effect_before_the_api_answers() {
    let origin = Origin::start(|path, _, n| match path {
        "/blog" => ok(
            &[
                ("Cache-Control", "public, max-age=3600"),
                ("Netlify-Cache-Tag", "blog"),
            ],
            &format!("blog #{n}"),
        ),
        "/shop" => ok(
            &[
                ("Cache-Control", "public, max-age=3600"),
                ("Cache-Tag", "shop"),
            ],
            &format!("shop #{n}"),
        ),
        _ => ("404 Not Found".into(), vec![], vec![]),
    });
    let (node, _d) = node_for(&origin);
    let e = node.edge;
    assert_eq!(get(e, H, "/o/blog", &[]).text(), "blog #0");
    assert_eq!(get(e, H, "/o/shop", &[]).text(), "shop #0");
    assert_eq!(get(e, H, "/o/blog", &[]).text(), "blog #0");
    // Netlify-Cache-Tag is for the edge only.
    assert_eq!(get(e, H, "/o/blog", &[]).header("netlify-cache-tag"), None);

    // By tag: only that tag's entries, and at once.
    node.ok(&["purge", "--site", "cache", "--tag", "blog"]);
    assert_eq!(get(e, H, "/o/blog", &[]).text(), "blog #1");
    assert_eq!(get(e, H, "/o/shop", &[]).text(), "shop #0");

    // The whole site.
    node.ok(&["purge", "--site", "cache"]);
    assert_eq!(get(e, H, "/o/shop", &[]).text(), "shop #1");
    assert_eq!(get(e, H, "/o/blog", &[]).text(), "blog #2");
    assert_eq!(get(e, H, "/o/blog", &[]).text(), "blog #2");
}

#[test]
fn the_disk_tier_survives_a_restart_and_purges_still_apply() {
    let origin = Origin::start(|_, _, n| {
        ok(
            &[
                ("Cache-Control", "public, max-age=3600"),
                ("Cache-Tag", "t"),
            ],
            &format!("stored #{n}"),
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut node = Node::start_in(&data, &["--outbound-allow", "127.0.0.0/8"]);
    node.ok(&["sites", "create", "cache"]);
    let site_dir = site(&[
        ("index.html", "home"),
        (
            "_redirects",
            &format!("/o/*  http://{}/:splat  200\n", origin.addr),
        ),
    ]);
    node.deploy(site_dir.path(), "cache", &["--prod"]);
    assert_eq!(get(node.edge, H, "/o/a", &[]).text(), "stored #0");
    assert_eq!(get(node.edge, H, "/o/b", &[]).text(), "stored #0");
    node.ok(&["purge", "--site", "cache", "--tag", "t"]);
    assert_eq!(get(node.edge, H, "/o/a", &[]).text(), "stored #1");
    node.terminate();
    let _ = node.child.wait();

    let node = Node::start_in(&data, &["--outbound-allow", "127.0.0.0/8"]);
    // Stored after the purge: served from disk without asking the origin.
    let r = get(node.edge, H, "/o/a", &[]);
    assert_eq!(r.text(), "stored #1");
    assert!(cache_status(&r).contains("hit"), "{r:?}");
    assert_eq!(origin.count("/a"), 2);
    // Stored before it: the purge still applies after the restart.
    assert_eq!(get(node.edge, H, "/o/b", &[]).text(), "stored #1");
    assert_eq!(origin.count("/b"), 2);
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[test]
fn a_large_body_streams_through_without_being_held_in_memory() {
    const SIZE: usize = 100 << 20;
    let origin = Origin::start(|_, _, _| ok(&[("Cache-Control", "public, max-age=3600")], ""));
    // The body is written by a dedicated origin: 100 MB of a repeating pattern.
    let big = TcpListener::bind("127.0.0.1:0").unwrap();
    let big_addr = big.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in big.incoming() {
            let Ok(mut s) = stream else { return };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                    line.clear();
                }
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Length: {SIZE}\r\nCache-Control: public, max-age=3600\r\nConnection: close\r\n\r\n"
                );
                let chunk = vec![b'x'; 1 << 16];
                for _ in 0..SIZE / chunk.len() {
                    if s.write_all(&chunk).is_err() {
                        return;
                    }
                }
            });
        }
    });
    drop(origin);
    let node = Node::start_with(&["--outbound-allow", "127.0.0.0/8"]);
    node.ok(&["sites", "create", "cache"]);
    let d = site(&[
        ("index.html", "home"),
        ("_redirects", &format!("/big  http://{big_addr}/big  200\n")),
    ]);
    node.deploy(d.path(), "cache", &["--prod"]);
    let before = rss_kib(node.child.id());
    // A miss (streamed to the client while written to the disk tier), then
    // hits from the file. The allocator hands back what the miss used only
    // as later requests allocate again, so the node's size is read after
    // the hits: it must not hold the body.
    for round in 0..4 {
        let mut s = std::net::TcpStream::connect(node.edge).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        write!(
            s,
            "GET /big HTTP/1.1\r\nHost: {H}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut reader = BufReader::new(s);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let mut n = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let got = reader.read(&mut buf).unwrap();
            if got == 0 {
                break;
            }
            assert!(buf[..got].iter().all(|b| *b == b'x'));
            n += got;
        }
        assert_eq!(n, SIZE, "round {round}: every byte arrives");
    }
    let grown = rss_kib(node.child.id()).saturating_sub(before);
    assert!(
        grown < 40 * 1024,
        "the node grew by {grown} KiB for a 100 MiB body: it must stream, not buffer"
    );
}
