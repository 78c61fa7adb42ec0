//! Telemetry end to end on a real node: access records with every field for
//! static, redirect, proxy, 404 and upstream-error requests; exact statistics
//! through `ledge stats`; the live stream through `ledge logs`; `/metrics`
//! through a Prometheus parser; JSON diagnostics; the access log switched off.

mod common;
use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::Value;

const SITE: &str = "tele";
const HOST: &str = "tele.localhost";
const PAGE: &str = "<!doctype html><p>the telemetry page</p>\n";
const ORIGIN_BODY: &str = "hello from the origin\n";
const UA: &str = "telemetry-test/1.0 (+ledge)";
const REFERER: &str = "https://referrer.example/from?x=1";

/// Every field of a traffic record, `log_type` included.
const TRAFFIC_FIELDS: [&str; 28] = [
    "log_type",
    "timestamp",
    "request_id",
    "site_id",
    "deploy_id",
    "host",
    "method",
    "path",
    "query",
    "status_code",
    "request_size",
    "response_size",
    "content_type",
    "duration",
    "time_to_first_byte",
    "client_ip",
    "country",
    "user_agent",
    "referrer",
    "cache_status",
    "answered_by",
    "rule",
    "function_name",
    "firewall_rule",
    "block_reason",
    "tls_version",
    "http_version",
    "error_class",
];

/// A tiny HTTP origin: answers every request with `ORIGIN_BODY`.
fn origin() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut s) = conn else { continue };
            std::thread::spawn(move || {
                let mut r = BufReader::new(s.try_clone().unwrap());
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                }
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{ORIGIN_BODY}",
                    ORIGIN_BODY.len()
                );
            });
        }
    });
    addr
}

/// A local port nobody listens on, for the whole test run: a socket bound to
/// it and never listening holds it, so connections are refused and no other
/// test's listener can be given the same port (a port merely found free
/// could be).
fn closed_port() -> u16 {
    static HELD: std::sync::OnceLock<(tokio::net::TcpSocket, u16)> = std::sync::OnceLock::new();
    HELD.get_or_init(|| {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let port = s.local_addr().unwrap().port();
        (s, port)
    })
    .1
}

/// The CLI pointed at a node's API.
struct Api {
    addr: SocketAddr,
    token: String,
}

impl Api {
    fn of(node: &Node) -> Api {
        Api {
            addr: node.api,
            token: node.token.clone(),
        }
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = Command::new(BIN)
            .args(args)
            .env("LEDGE_API", format!("http://{}", self.addr))
            .env("LEDGE_TOKEN", &self.token)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ledge {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn deploy(&self, dir: &std::path::Path, site: &str) -> Value {
        let out = self.ok(&[
            "deploy",
            dir.to_str().unwrap(),
            "--site",
            site,
            "--json",
            "--prod",
        ]);
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
    }
}

/// Creates and deploys the test site; returns the deploy id.
fn deploy_site(node: &Api, site_name: &str) -> String {
    let origin = origin();
    let dead = closed_port();
    node.ok(&["sites", "create", site_name]);
    let redirects = format!(
        "/old /page.html 301\n/api/* http://{origin}/:splat 200\n/dead/* http://127.0.0.1:{dead}/:splat 200\n"
    );
    let dir = site(&[
        ("page.html", PAGE),
        ("index.html", "home"),
        ("_redirects", &redirects),
    ]);
    let d = node.deploy(dir.path(), site_name);
    assert_eq!(d["state"], "ready", "{d}");
    d["id"].as_str().unwrap().to_owned()
}

/// What a request of the mix should leave in its record.
#[derive(Debug, Clone)]
struct Expect {
    kind: &'static str,
    path: &'static str,
    query: Option<&'static str>,
    status: u16,
    answered_by: &'static str,
    rule: Option<&'static str>,
    error_class: Option<&'static str>,
}

/// A response and what it should have left.
struct Sent {
    expect: Expect,
    id: String,
    body_len: u64,
    content_type: Option<String>,
}

fn mix() -> Vec<Expect> {
    let e = |kind, path, query, status, answered_by, rule, error_class| Expect {
        kind,
        path,
        query,
        status,
        answered_by,
        rule,
        error_class,
    };
    vec![
        e("static", "/page.html", None, 200, "static", None, None),
        e(
            "static",
            "/page.html",
            Some("v=2"),
            200,
            "static",
            None,
            None,
        ),
        e("static", "/page.html", None, 200, "static", None, None),
        e(
            "redirect",
            "/old",
            None,
            301,
            "redirect",
            Some("_redirects:1"),
            None,
        ),
        e(
            "redirect",
            "/old",
            Some("keep=1"),
            301,
            "redirect",
            Some("_redirects:1"),
            None,
        ),
        e(
            "proxy",
            "/api/hello",
            Some("q=1"),
            200,
            "proxy",
            Some("_redirects:2"),
            None,
        ),
        e(
            "proxy",
            "/api/other",
            None,
            200,
            "proxy",
            Some("_redirects:2"),
            None,
        ),
        e("missing", "/missing", None, 404, "static", None, None),
        e(
            "dead",
            "/dead/x",
            None,
            502,
            "error",
            Some("_redirects:3"),
            Some("upstream_unreachable"),
        ),
    ]
}

fn send(node: &Node, host: &str, e: &Expect) -> Sent {
    let target = match e.query {
        Some(q) => format!("{}?{q}", e.path),
        None => e.path.to_owned(),
    };
    let r = get(
        node.edge,
        host,
        &target,
        &[("User-Agent", UA), ("Referer", REFERER)],
    );
    assert_eq!(r.status, e.status, "{target}: {}", r.text());
    if e.kind == "static" {
        assert_eq!(r.text(), PAGE);
    }
    if e.kind == "proxy" {
        assert_eq!(r.text(), ORIGIN_BODY);
    }
    let id = r
        .header("x-ledge-id")
        .unwrap_or_else(|| panic!("{target}: no x-ledge-id"))
        .to_owned();
    Sent {
        expect: e.clone(),
        id,
        body_len: r.body.len() as u64,
        content_type: r.header("content-type").map(str::to_owned),
    }
}

/// Reads `DATA/logs/access.log` until it holds `n` records of `site`
/// (bounded), and returns them.
fn access_records(data: &std::path::Path, site: &str, n: usize) -> Vec<Value> {
    let path = data.join("logs/access.log");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        // Only whole lines: the writer may be mid-line.
        let whole = text.rfind('\n').map_or("", |i| &text[..i]);
        let records: Vec<Value> = whole
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .filter(|v: &Value| v["site_id"] == site)
            .collect();
        if records.len() >= n {
            assert_eq!(records.len(), n, "more records than requests: {records:#?}");
            return records;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} records in {} after 20 s",
            records.len(),
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn parse_time(s: &str) -> SystemTime {
    // 2026-11-28T12:05:45.123Z
    assert_eq!(s.len(), 24, "{s}");
    assert!(s.ends_with('Z'), "{s}");
    let n = |r: std::ops::Range<usize>| -> i64 { s[r].parse().unwrap() };
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    let (y2, m2) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y2.div_euclid(400);
    let yoe = y2.rem_euclid(400);
    let doy = (153 * m2 + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let secs = days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19);
    UNIX_EPOCH + Duration::from_secs(secs as u64) + Duration::from_millis(n(20..23) as u64)
}

fn check_record(r: &Value, s: &Sent, deploy: &str, window: (SystemTime, SystemTime)) {
    let e = &s.expect;
    let keys: BTreeSet<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
    let want: BTreeSet<&str> = TRAFFIC_FIELDS.into_iter().collect();
    assert_eq!(keys, want, "fields of {r}");
    let ctx = format!("{} {:?}: {r}", e.kind, e.path);
    assert_eq!(r["log_type"], "traffic", "{ctx}");
    assert_eq!(r["request_id"], s.id.as_str(), "{ctx}");
    assert_eq!(r["site_id"], SITE, "{ctx}");
    assert_eq!(r["deploy_id"], deploy, "{ctx}");
    assert_eq!(r["host"], HOST, "{ctx}");
    assert_eq!(r["method"], "GET", "{ctx}");
    assert_eq!(r["path"], e.path, "{ctx}");
    assert_eq!(r["query"].as_str(), e.query, "{ctx}");
    assert_eq!(r["status_code"], e.status, "{ctx}");
    assert_eq!(r["request_size"], 0, "{ctx}");
    assert_eq!(r["response_size"], s.body_len, "{ctx}");
    assert_eq!(
        r["content_type"].as_str(),
        s.content_type.as_deref(),
        "{ctx}"
    );
    assert_eq!(r["client_ip"], "127.0.0.1", "{ctx}");
    assert_eq!(r["country"], Value::Null, "{ctx}");
    assert_eq!(r["user_agent"], UA, "{ctx}");
    assert_eq!(r["referrer"], REFERER, "{ctx}");
    // Proxied requests go through the HTTP cache (the origin sends no
    // caching headers, so every one is a miss); the rest never reach it.
    let cache = if e.kind == "proxy" { "miss" } else { "none" };
    assert_eq!(r["cache_status"], cache, "{ctx}");
    assert_eq!(r["answered_by"], e.answered_by, "{ctx}");
    assert_eq!(r["rule"].as_str(), e.rule, "{ctx}");
    // A complete proxied response must have no error class; that is pinned
    // by its own test (`complete_streamed_responses_are_not_client_closed`)
    // so a failure there names the problem.
    if e.kind != "proxy" {
        assert_eq!(r["error_class"].as_str(), e.error_class, "{ctx}");
    }
    for absent in [
        "function_name",
        "firewall_rule",
        "block_reason",
        "tls_version",
    ] {
        assert_eq!(r[absent], Value::Null, "{absent} of {ctx}");
    }
    assert_eq!(r["http_version"], "HTTP/1.1", "{ctx}");
    let duration = r["duration"].as_f64().unwrap();
    let ttfb = r["time_to_first_byte"].as_f64().unwrap();
    assert!(ttfb >= 0.0 && duration >= ttfb, "{ctx}");
    assert!(duration < 10_000.0, "{ctx}");
    let t = parse_time(r["timestamp"].as_str().unwrap());
    // Millisecond timestamps: allow the truncation.
    assert!(
        t + Duration::from_millis(1) >= window.0 && t <= window.1,
        "{ctx}: timestamp outside the test's window"
    );
}

fn cli_json(node: &Api, args: &[&str]) -> Value {
    let out = node.ok(args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// Checks the exposition format line by line (the parser below skips lines
/// it does not understand, so it alone would not catch a broken line).
fn check_exposition(text: &str) {
    let mut typed = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            let name = it.next().unwrap();
            let kind = it.next().unwrap();
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(typed.insert(name.to_owned()), "TYPE twice: {line}");
            continue;
        }
        if line.starts_with("# HELP ") || line.is_empty() {
            continue;
        }
        assert!(!line.starts_with('#'), "stray comment: {line}");
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value = value.to_ascii_lowercase();
        assert!(
            value.parse::<f64>().is_ok() || ["+inf", "-inf", "nan"].contains(&value.as_str()),
            "value of {line}"
        );
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, Some(l.strip_suffix('}').expect(line))),
            None => (series, None),
        };
        assert!(
            !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "name of {line}"
        );
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains(*f)))
            .unwrap_or(name);
        assert!(typed.contains(family), "sample before its TYPE: {line}");
        for kv in labels.into_iter().flat_map(|l| l.split(',')) {
            let (k, v) = kv.split_once('=').expect(line);
            assert!(
                k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{line}"
            );
            assert!(
                v.len() >= 2 && v.starts_with('"') && v.ends_with('"'),
                "{line}"
            );
        }
    }
}

fn requests_total(scrape: &prometheus_parse::Scrape, phase: &str, class: &str) -> f64 {
    let s = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "ledge_requests_total"
                && s.labels.get("phase") == Some(phase)
                && s.labels.get("class") == Some(class)
        })
        .unwrap_or_else(|| panic!("no ledge_requests_total{{phase={phase},class={class}}}"));
    match s.value {
        prometheus_parse::Value::Counter(v) => v,
        ref other => panic!("ledge_requests_total is {other:?}"),
    }
}

/// (a) records, (b) `ledge stats`, (d) `/metrics`, from one known mix.
#[test]
fn records_stats_and_metrics_match_a_known_mix() {
    let node = Node::start_with(&["--outbound-allow", "127.0.0.0/8"]);
    let deploy = deploy_site(&Api::of(&node), SITE);
    let before = SystemTime::now();
    let sent: Vec<Sent> = mix().iter().map(|e| send(&node, HOST, e)).collect();
    let after = SystemTime::now();

    // (a) One record per request, every field right.
    let records = access_records(&node.data, SITE, sent.len());
    let by_id: HashMap<&str, &Value> = records
        .iter()
        .map(|r| (r["request_id"].as_str().unwrap(), r))
        .collect();
    assert_eq!(by_id.len(), sent.len(), "request ids repeat: {records:#?}");
    for s in &sent {
        let r = by_id
            .get(s.id.as_str())
            .unwrap_or_else(|| panic!("no record for {} ({})", s.expect.path, s.id));
        check_record(r, s, &deploy, (before, after));
    }

    // (b) Exact counters through `ledge stats`; since=1h covers every minute
    // of the mix, even if it straddled a minute boundary.
    let v = cli_json(&Api::of(&node), &["stats", "--site", SITE, "--json"]);
    assert_eq!(v["site"], SITE);
    assert_eq!(v["resolution"], "minute");
    let c = &v["total"]["counters"];
    let count = |status: u16| {
        sent.iter()
            .filter(|s| s.expect.status / 100 == status)
            .count()
    };
    let bytes: u64 = sent.iter().map(|s| s.body_len).sum();
    let want = serde_json::json!({
        "requests": sent.len(),
        "bytes_out": bytes,
        "bytes_in": 0,
        "status_1xx": 0,
        "status_2xx": count(2),
        "status_3xx": count(3),
        "status_4xx": count(4),
        "status_5xx": count(5),
        "cache_hits": 0,
        "cache_misses": sent.iter().filter(|s| s.expect.kind == "proxy").count(),
        "edge_errors": records.iter().filter(|r| !r["error_class"].is_null()).count(),
        "function_invocations": 0,
        "function_errors": 0,
        "function_cpu_micros": 0,
    });
    assert_eq!(c, &want, "{v:#}");
    let bucket_requests: u64 = v["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["counters"]["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(bucket_requests, sent.len() as u64, "{v:#}");
    assert_eq!(v["total"]["top_error_bound"], 0, "{v:#}");
    let top = &v["total"]["top_paths"];
    assert_eq!(top[0], serde_json::json!(["/page.html", 3]), "{v:#}");
    assert_eq!(
        v["total"]["top_referrers"],
        serde_json::json!([[REFERER, sent.len()]]),
        "{v:#}"
    );
    let p = v["total"]["duration_ms"].as_array().unwrap();
    assert!(p.len() == 3 && p[0].as_f64() <= p[2].as_f64(), "{v:#}");
    // A range that holds none of it is empty.
    let v = cli_json(
        &Api::of(&node),
        &[
            "stats", "--site", SITE, "--json", "--since", "100", "--until", "200",
        ],
    );
    assert_eq!(v["total"]["counters"]["requests"], 0, "{v:#}");
    // The table a person reads.
    let table = node.ok(&["stats", "--site", SITE, "--resolution", "hour"]);
    assert!(
        table.contains(&format!("  requests        {}\n", sent.len())),
        "{table}"
    );
    assert!(table.contains(&format!("{bytes} B")), "{table}");
    assert!(table.contains("2xx 5  3xx 2  4xx 1  5xx 1"), "{table}");
    assert!(table.contains("/page.html"), "{table}");
    assert!(table.contains("requests per hour"), "{table}");
    // Bad input gets a clear error.
    let out = node.cli(&["stats", "--site", SITE, "--since", "yesterday"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("15m, 1h, 7d"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // (d) /metrics: no token needed, parses, counts what was sent.
    let resp = http().get(node.api_url("/metrics")).send().unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .starts_with("text/plain; version=0.0.4"));
    let text = resp.text().unwrap();
    check_exposition(&text);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let kind = |k: &str, status: u16| {
        sent.iter()
            .filter(|s| s.expect.kind == k && s.expect.status == status)
            .count() as f64
    };
    assert_eq!(
        requests_total(&scrape, "static", "2xx"),
        kind("static", 200)
    );
    assert_eq!(
        requests_total(&scrape, "static", "4xx"),
        kind("missing", 404)
    );
    assert_eq!(
        requests_total(&scrape, "redirect", "3xx"),
        kind("redirect", 301)
    );
    assert_eq!(requests_total(&scrape, "proxy", "2xx"), kind("proxy", 200));
    assert_eq!(requests_total(&scrape, "error", "5xx"), kind("dead", 502));
    let bytes_total = scrape
        .samples
        .iter()
        .find(|s| s.metric == "ledge_response_bytes_total")
        .map(|s| s.value.clone());
    assert_eq!(
        bytes_total,
        Some(prometheus_parse::Value::Counter(bytes as f64))
    );
    let hist = scrape
        .samples
        .iter()
        .find(|s| s.metric == "ledge_request_duration_seconds")
        .expect("duration histogram");
    match &hist.value {
        prometheus_parse::Value::Histogram(b) => {
            let inf = b.iter().find(|h| h.less_than.is_infinite()).expect("+Inf");
            assert_eq!(inf.count, sent.len() as f64);
        }
        other => panic!("duration is {other:?}"),
    }
}

/// A streamed response the client read to its end is complete: no error
/// class, every byte counted, in the record and in the statistics. Both
/// kinds of streamed body: a proxied one, and a static file served from
/// disk rather than the memory cache (`[cache] max_object_mb = 0` streams
/// every file).
#[test]
fn complete_streamed_responses_are_not_client_closed() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ledge.toml");
    std::fs::write(&config, "[cache]\nmax_object_mb = 0\n").unwrap();
    let node = Node::start_with(&[
        "--outbound-allow",
        "127.0.0.0/8",
        "--config",
        config.to_str().unwrap(),
    ]);
    deploy_site(&Api::of(&node), SITE);
    let (proxied, file) = (&mix()[5], &mix()[0]);
    assert_eq!((proxied.kind, file.kind), ("proxy", "static"));
    let sent = [send(&node, HOST, proxied), send(&node, HOST, file)];
    assert_eq!(sent[0].body_len, ORIGIN_BODY.len() as u64);
    assert_eq!(sent[1].body_len, PAGE.len() as u64);
    let records = access_records(&node.data, SITE, 2);
    let mut wrong = Vec::new();
    for (r, s) in records.iter().zip(&sent) {
        assert_eq!(r["request_id"], s.id.as_str(), "{r}");
        assert_eq!(r["response_size"], s.body_len, "{r}");
        if !r["error_class"].is_null() {
            wrong.push(format!(
                "the client read the whole {} response, yet the record says {}: {r}",
                s.expect.kind, r["error_class"]
            ));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    let v = cli_json(&Api::of(&node), &["stats", "--site", SITE, "--json"]);
    assert_eq!(v["total"]["counters"]["edge_errors"], 0, "{v:#}");
}

/// (c) `ledge logs --follow`: the live records of one site, raw or filtered.
#[test]
fn logs_follow_streams_one_sites_records() {
    let node = Node::start_with(&["--outbound-allow", "127.0.0.0/8"]);
    let deploy = deploy_site(&Api::of(&node), SITE);
    deploy_site(&Api::of(&node), "elsewhere");
    let other_host = "elsewhere.localhost";

    let mut all = Streaming::start(&node, &["logs", "--site", SITE, "--follow", "--json"]);
    let probes = all.wait_live(|| {
        get(node.edge, HOST, "/index.html?probe", &[]);
    });
    for r in json_lines(&probes) {
        assert_eq!(r["path"], "/index.html", "{r}");
    }
    let before = SystemTime::now();
    let mut sent = Vec::new();
    for e in mix() {
        // Another site's traffic in between must not show.
        get(node.edge, other_host, "/page.html", &[]);
        sent.push(send(&node, HOST, &e));
    }
    let after = SystemTime::now();
    let last = sent.last().unwrap().id.clone();
    let lines = all.read_until(|got| got.iter().any(|l| l.contains(&last)));
    let records: Vec<Value> = json_lines(&lines)
        .into_iter()
        .filter(|r| r["path"] != "/index.html")
        .collect();
    for r in &records {
        assert_eq!(r["site_id"], SITE, "another site's record: {r}");
    }
    assert_eq!(records.len(), sent.len(), "{records:#?}");
    for (r, s) in records.iter().zip(&sent) {
        check_record(r, s, &deploy, (before, after));
    }

    // --status 5xx: only the 502s.
    let mut errors = Streaming::start(
        &node,
        &[
            "logs", "--site", SITE, "--follow", "--json", "--status", "5xx",
        ],
    );
    errors.wait_live(|| {
        get(node.edge, HOST, "/dead/probe", &[]);
    });
    let ok = send(&node, HOST, &mix()[0]);
    let dead = send(&node, HOST, &mix()[8]);
    let lines = errors.read_until(|got| got.iter().any(|l| l.contains(&dead.id)));
    for r in json_lines(&lines) {
        assert_eq!(r["status_code"], 502, "{r}");
        assert_ne!(r["request_id"], ok.id.as_str());
    }
    // The unfiltered stream saw both.
    let lines = all.read_until(|got| got.iter().any(|l| l.contains(&dead.id)));
    assert!(lines.iter().any(|l| l.contains(&ok.id)), "{lines:#?}");

    // Without --follow: readable lines for --for, then exit 0.
    let mut brief = Streaming::start(&node, &["logs", "--site", SITE, "--for", "8s"]);
    let started = Instant::now();
    let lines = brief.wait_live(|| {
        get(node.edge, HOST, "/page.html?brief=1", &[("User-Agent", UA)]);
    });
    let line = &lines[0];
    assert!(
        line.contains(" 200 GET tele.localhost/page.html?brief=1 ")
            && line.contains(&format!(" {}B static cache=none id=", PAGE.len())),
        "{line}"
    );
    let status = loop {
        if let Some(s) = brief.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "ledge logs --for 8s did not exit"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    assert!(started.elapsed() >= Duration::from_secs(7));

    // Unknown site and bad filter: clear errors.
    let out = node.cli(&["logs", "--site", "nosuch", "--for", "1s"]);
    assert!(!out.status.success());
    let out = node.cli(&["logs", "--site", SITE, "--status", "9xx", "--for", "1s"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid status filter"), "{err}");
}

/// Reads the listening lines of a node started by hand.
fn listening(child: &mut Child) -> (SocketAddr, SocketAddr) {
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let (mut edge, mut api) = (None, None);
    while edge.is_none() || api.is_none() {
        let line = lines.next().expect("node exited").unwrap();
        if let Some(a) = line.strip_prefix("ledge: edge listening on http://") {
            edge = Some(a.parse().unwrap());
        }
        if let Some(a) = line.strip_prefix("ledge: API listening on http://") {
            api = Some(a.parse().unwrap());
        }
    }
    std::thread::spawn(move || for _ in lines {});
    (edge.unwrap(), api.unwrap())
}

/// A node started by hand with `--log-format json`, its stderr lines on a
/// channel. Killed when dropped.
struct JsonNode {
    child: Child,
    edge: SocketAddr,
    stderr: mpsc::Receiver<String>,
    _dir: tempfile::TempDir,
}

impl Drop for JsonNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl JsonNode {
    /// Starts the node, deploys the test site and makes a proxied request
    /// fail (the edge logs that at debug).
    fn start_and_fail_a_request() -> JsonNode {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let mut child = Command::new(BIN)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--api-listen",
                "127.0.0.1:0",
            ])
            .args([
                "--outbound-allow",
                "127.0.0.0/8",
                "--log-format",
                "json",
                "--data",
            ])
            .arg(&data)
            .env("LEDGE_LOG", "info,ledge_edge=debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (edge, api) = listening(&mut child);
        let node = JsonNode {
            child,
            edge,
            stderr: rx,
            _dir: dir,
        };
        let token = std::fs::read_to_string(data.join("admin-token")).unwrap();
        let cli = Api {
            addr: api,
            token: token.trim().to_owned(),
        };
        deploy_site(&cli, SITE);
        let r = get(node.edge, HOST, "/dead/x", &[]);
        assert_eq!(r.status, 502);
        node
    }

    /// Reads stderr lines until `done` holds for the last one, or (with
    /// `None`) until stderr closes. Bounded.
    fn read(&self, done: Option<&dyn Fn(&str) -> bool>) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(l) => {
                    let stop = done.is_some_and(|f| f(&l));
                    lines.push(l);
                    if stop {
                        return lines;
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) if done.is_none() => return lines,
                Err(e) => panic!("stderr {e:?}; read so far: {lines:#?}"),
            }
        }
    }
}

/// Every non-empty line parses as a JSON object with a time and a level.
fn all_json(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {l:?} among {lines:#?}"));
            assert!(v.is_object(), "{l}");
            assert!(v["timestamp"].is_string() && v["level"].is_string(), "{l}");
            v
        })
        .collect()
}

/// (e) `--log-format json`: the node's own diagnostics are JSON objects.
#[test]
fn log_format_json_makes_diagnostics_json() {
    let node = JsonNode::start_and_fail_a_request();
    let failed = |l: &str| {
        serde_json::from_str::<Value>(l).is_ok_and(|v| v["fields"]["message"] == "request failed")
    };
    let lines = node.read(Some(&failed));
    let objects = all_json(&lines);
    let last = objects.last().unwrap();
    assert_eq!(last["level"], "DEBUG", "{last}");
    assert!(
        last["fields"]["error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{last}"
    );
}

/// (e) continued: what the node says while it stops is JSON too.
#[test]
fn log_format_json_covers_shutdown_messages() {
    let mut node = JsonNode::start_and_fail_a_request();
    Command::new("kill")
        .args(["-TERM", &node.child.id().to_string()])
        .status()
        .unwrap();
    let lines = node.read(None);
    assert!(node.child.wait().unwrap().success());
    all_json(&lines);
}

/// (f) `--access-log off`: no file, and the observing endpoints say why.
#[test]
fn access_log_off_writes_nothing_and_says_so() {
    let mut node = Node::start_with(&["--access-log", "off"]);
    node.ok(&["sites", "create", SITE]);
    let dir = site(&[("page.html", PAGE)]);
    node.deploy(dir.path(), SITE, &["--prod"]);
    assert_eq!(get(node.edge, HOST, "/page.html", &[]).status, 200);

    let resp = http().get(node.api_url("/metrics")).send().unwrap();
    assert_eq!(resp.status(), 503);
    let v: Value = resp.json().unwrap();
    assert_eq!(v["error"]["code"], "telemetry_off", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--access-log off"),
        "{v}"
    );
    for args in [
        &["stats", "--site", SITE][..],
        &["logs", "--site", SITE, "--for", "1s"][..],
    ] {
        let out = node.cli(args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--access-log off"), "{args:?}: {err}");
    }

    // After a clean stop nothing can still be on its way to the file.
    node.terminate();
    let _ = node.child.wait();
    assert!(
        !node.data.join("logs/access.log").exists(),
        "access.log written with --access-log off"
    );
}

/// Statistics outlive the node: a graceful stop writes the open minutes to
/// the metadata store, and the next node on the same data folder reads
/// them back (minute and hour) through `ledge stats`. The site has no edge
/// functions, so its buckets hold an empty CPU-time sketch.
#[test]
fn stats_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut node = Node::start_in(&data, &[]);
    node.ok(&["sites", "create", "kept"]);
    let site_dir = site(&[("index.html", "home"), ("a.html", "page a")]);
    Api::of(&node).deploy(site_dir.path(), "kept");
    let host = "kept.localhost";
    for path in ["/", "/a.html", "/a.html", "/missing"] {
        get(node.edge, host, path, &[]);
    }
    node.terminate();
    let _ = node.child.wait();

    let node = Node::start_in(&data, &[]);
    for resolution in ["minute", "hour"] {
        let v = cli_json(
            &Api::of(&node),
            &[
                "stats",
                "--site",
                "kept",
                "--json",
                "--resolution",
                resolution,
            ],
        );
        let c = &v["total"]["counters"];
        assert_eq!(c["requests"], 4, "{resolution}: {v:#}");
        assert_eq!(c["status_2xx"], 3, "{resolution}: {v:#}");
        assert_eq!(c["status_4xx"], 1, "{resolution}: {v:#}");
        assert_eq!(
            v["total"]["top_paths"][0],
            serde_json::json!(["/a.html", 2]),
            "{resolution}: {v:#}"
        );
    }
}
