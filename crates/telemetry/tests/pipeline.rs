//! The telemetry pipeline end to end, without external services: records,
//! the file sink, backpressure, statistics, live tail, metrics.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{access, function};
use ledge_telemetry::stats::{Bucket, Counters};
use ledge_telemetry::{
    CacheStatus, DrainSpec, MemoryStore, Outcome, Phase, Record, Resolution, StatusFilter,
    TailEvent, TailFilter, Telemetry, TelemetryConfig,
};
use serde_json::Value;

const ACCESS_FIELDS: [&str; 28] = [
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

#[test]
fn access_record_serializes_every_field() {
    let r = access("blog", 0);
    let line = Record::Access(Box::new(r.clone())).to_json_line(false);
    assert_eq!(line.last(), Some(&b'\n'));
    assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
    let v: Value = serde_json::from_slice(&line).unwrap();
    let obj = v.as_object().unwrap();
    let keys: BTreeSet<&str> = obj.keys().map(String::as_str).collect();
    assert_eq!(keys, ACCESS_FIELDS.into_iter().collect::<BTreeSet<_>>());
    assert_eq!(v["log_type"], "traffic");
    assert_eq!(v["timestamp"], "2026-11-28T12:05:45.123Z");
    assert_eq!(v["request_id"], "req-blog-0");
    assert_eq!(v["site_id"], "blog");
    assert_eq!(v["deploy_id"], "dep123");
    assert_eq!(v["host"], "blog.ledge.example");
    assert_eq!(v["path"], "/posts/0");
    assert_eq!(v["query"], "page=2");
    assert_eq!(v["status_code"], 200);
    assert_eq!(v["response_size"], 1234);
    assert_eq!(v["duration"], 1.5);
    assert_eq!(v["time_to_first_byte"], 0.7);
    assert_eq!(v["client_ip"], "203.0.113.9");
    assert_eq!(v["country"], "DE");
    assert_eq!(v["user_agent"], "curl/8.5");
    assert_eq!(v["referrer"], "https://news.example/");
    assert_eq!(v["cache_status"], "miss");
    assert_eq!(v["answered_by"], "proxy");
    assert_eq!(v["rule"], "_redirects:3");
    assert_eq!(v["tls_version"], "TLSv1.3");
    assert_eq!(v["http_version"], "HTTP/2");
    assert_eq!(v["error_class"], "upstream_timeout");
    assert!(v["function_name"].is_null() && v["firewall_rule"].is_null());
    // It reads back into the same record.
    let back: ledge_telemetry::AccessRecord = serde_json::from_value(v).unwrap();
    assert_eq!(back, r);

    // exclude_pii leaves out exactly client_ip and user_agent.
    let v: Value = serde_json::from_slice(&Record::Access(Box::new(r)).to_json_line(true)).unwrap();
    let keys: BTreeSet<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    let mut expect: BTreeSet<&str> = ACCESS_FIELDS.into_iter().collect();
    expect.remove("client_ip");
    expect.remove("user_agent");
    assert_eq!(keys, expect);
}

#[test]
fn function_record_serializes_every_field() {
    let f = function("blog", 1);
    let v: Value =
        serde_json::from_slice(&Record::Function(Box::new(f.clone())).to_json_line(false)).unwrap();
    let keys: BTreeSet<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    let expect: BTreeSet<&str> = [
        "log_type",
        "timestamp",
        "request_id",
        "site_id",
        "deploy_id",
        "function_name",
        "duration",
        "cpu_time",
        "outcome",
        "status_code",
        "method",
        "path",
        "console",
    ]
    .into_iter()
    .collect();
    assert_eq!(keys, expect);
    assert_eq!(v["log_type"], "edge_functions");
    assert_eq!(v["function_name"], "hello");
    assert_eq!(v["cpu_time"], 0.8);
    assert_eq!(v["outcome"], "ok");
    assert_eq!(
        v["console"],
        serde_json::json!([{"level": "log", "message": "hi"}])
    );
    let back: ledge_telemetry::FunctionRecord = serde_json::from_value(v).unwrap();
    assert_eq!(back, f);
}

/// The records of these tests carry fixed 2026 timestamps: keep their
/// buckets whatever the machine's clock says.
fn keep_forever() -> TelemetryConfig {
    TelemetryConfig {
        minute_retention: Duration::from_secs(1 << 40),
        hour_retention: Duration::from_secs(1 << 40),
        ..TelemetryConfig::default()
    }
}

fn far_future() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1 << 36)
}

fn config_with(drains: Vec<DrainSpec>) -> TelemetryConfig {
    TelemetryConfig {
        node_drains: drains,
        ..TelemetryConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_sink_writes_json_lines_and_rotates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs/access.log");
    let spec: DrainSpec = format!("file://{}?max_bytes=65536&keep=20", path.display())
        .parse()
        .unwrap();
    let (t, bg) = Telemetry::start(config_with(vec![spec])).unwrap();
    for i in 0..400 {
        t.record_access(access("blog", i));
        if i % 50 == 0 {
            t.record_function(function("blog", i));
        }
    }
    t.shutdown();
    bg.join().await;

    let mut files = vec![path.clone()];
    for i in 1..=20 {
        let p = std::path::PathBuf::from(format!("{}.{i}", path.display()));
        if p.exists() {
            files.push(p);
        }
    }
    assert!(
        files.len() >= 3,
        "expected rotation, got {} files",
        files.len()
    );
    let mut ids = BTreeSet::new();
    let mut functions = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(
            text.len() <= 65_536,
            "{} is {} bytes",
            f.display(),
            text.len()
        );
        assert!(text.ends_with('\n'));
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            match v["log_type"].as_str() {
                Some("traffic") => {
                    assert!(ids.insert(v["request_id"].as_str().unwrap().to_owned()))
                }
                Some("edge_functions") => functions += 1,
                other => panic!("log_type {other:?}"),
            }
        }
    }
    assert_eq!(ids.len(), 400);
    assert_eq!(functions, 8);
    assert_eq!(t.dropped(), 0);
    assert_eq!(t.metrics().sink_dropped(), 0);
}

#[tokio::test(flavor = "current_thread")]
async fn full_queue_drops_and_never_blocks() {
    // On a current-thread runtime the dispatcher cannot run while this loop
    // runs: the queue fills and every further record must be dropped at
    // once, never waited for.
    let config = TelemetryConfig {
        queue_capacity: 100,
        ..keep_forever()
    };
    let (t, bg) = Telemetry::start(config).unwrap();
    let mut slowest = Duration::ZERO;
    let started = Instant::now();
    for i in 0..50_000 {
        let r = access("blog", i);
        let s = Instant::now();
        t.record_access(r);
        slowest = slowest.max(s.elapsed());
    }
    let total = started.elapsed();
    assert_eq!(t.dropped(), 50_000 - 100);
    assert!(total < Duration::from_secs(5), "50k records took {total:?}");
    assert!(
        slowest < Duration::from_millis(250),
        "one call took {slowest:?}"
    );
    // Metrics count every request, dropped or not: the dropped ones at
    // once, the queued ones when the dispatcher takes them.
    t.shutdown();
    bg.join().await;
    assert_eq!(t.metrics().requests_total(), 50_000);
    let report = t
        .stats("blog", UNIX_EPOCH, far_future(), Resolution::Hour)
        .await
        .unwrap();
    assert_eq!(report.total.counters.requests, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_drain_never_blocks_requests() {
    // A drain whose intake accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let mut config = TelemetryConfig {
        site_sink_buffer: 64,
        shutdown_timeout: Duration::from_secs(2),
        ..TelemetryConfig::default()
    };
    config.batch.max_records = 10;
    config.batch.linger = Duration::from_millis(10);
    config.batch.attempt_timeout = Duration::from_secs(60);
    let (t, bg) = Telemetry::start(config).unwrap();
    t.set_site_drains(
        "blog",
        vec![format!("http://127.0.0.1:{port}/in").parse().unwrap()],
    )
    .unwrap();
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for i in 0..20_000 {
        let r = access("blog", i);
        let s = Instant::now();
        t.record_access(r);
        slowest = slowest.max(s.elapsed());
        if i % 1000 == 0 {
            tokio::task::yield_now().await;
        }
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        slowest < Duration::from_millis(250),
        "one call took {slowest:?}"
    );
    // Wait for the dispatcher to hand everything over: the drain holds at
    // most its buffer plus one batch; the rest is dropped and counted.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let dropped = t.metrics().sink_dropped() + t.dropped();
        if dropped >= 20_000 - 64 - 10 {
            break;
        }
        assert!(Instant::now() < deadline, "only {dropped} dropped");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(t.metrics().requests_total(), 20_000);
    hold.abort();
    t.shutdown();
    // The stuck drain is abandoned after the shutdown timeout.
    tokio::time::timeout(Duration::from_secs(30), bg.join())
        .await
        .expect("shutdown finishes despite a stuck drain");
}

/// A known request mix over three sites and three minutes.
fn mix() -> Vec<Record> {
    let base = 1_795_867_200u64; // 12:00:00 UTC, an hour boundary
    let mut out = Vec::new();
    for i in 0..3000u64 {
        let site = ["blog", "shop", "docs"][(i % 3) as usize];
        let mut r = access(site, i);
        r.timestamp = UNIX_EPOCH + Duration::from_secs(base + (i % 180));
        Arc::make_mut(&mut r.answer).status_code =
            [200, 200, 304, 404, 500, 502, 101, 201][(i % 8) as usize];
        r.response_size = i * 7 % 5000;
        r.request_size = i % 13;
        Arc::make_mut(&mut r.answer).cache_status = [
            CacheStatus::Hit,
            CacheStatus::Miss,
            CacheStatus::Stale,
            CacheStatus::None,
            CacheStatus::Bypass,
        ][(i % 5) as usize];
        r.error_class = (i % 11 == 0).then_some(ledge_telemetry::ErrorClass::Internal);
        Arc::make_mut(&mut r.answer).path = format!("/p/{}", i % 97).into();
        r.country = Some(["DE", "FR", "US", "JP"][(i % 4) as usize].into());
        r.duration = Duration::from_micros(100 + i * 37 % 100_000);
        out.push(Record::Access(Box::new(r)));
        if i % 4 == 0 {
            let mut f = function(site, i);
            f.timestamp = UNIX_EPOCH + Duration::from_secs(base + (i % 180));
            f.outcome = [
                Outcome::Ok,
                Outcome::Ok,
                Outcome::Error,
                Outcome::Timeout,
                Outcome::CpuLimit,
            ][(i % 5) as usize];
            f.cpu_time = Duration::from_micros(50 + i * 13 % 20_000);
            out.push(Record::Function(Box::new(f)));
        }
    }
    out
}

/// Counters computed the plain way, per (site, minute).
fn expected(records: &[Record]) -> BTreeMap<(String, u64), Counters> {
    let mut m: BTreeMap<(String, u64), Counters> = BTreeMap::new();
    for r in records {
        let t = r.timestamp().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let c = m.entry((r.site().to_owned(), t / 60 * 60)).or_default();
        match r {
            Record::Access(a) => {
                c.requests += 1;
                c.bytes_out += a.response_size;
                c.bytes_in += a.request_size;
                match a.answer.status_code / 100 {
                    1 => c.status_1xx += 1,
                    2 => c.status_2xx += 1,
                    3 => c.status_3xx += 1,
                    4 => c.status_4xx += 1,
                    5 => c.status_5xx += 1,
                    _ => {}
                }
                if matches!(a.answer.cache_status, CacheStatus::Hit | CacheStatus::Stale) {
                    c.cache_hits += 1;
                }
                if a.answer.cache_status == CacheStatus::Miss {
                    c.cache_misses += 1;
                }
                if a.error_class.is_some() {
                    c.edge_errors += 1;
                }
            }
            Record::Function(f) => {
                c.function_invocations += 1;
                if f.outcome != Outcome::Ok {
                    c.function_errors += 1;
                }
                c.function_cpu_micros += f.cpu_time.as_micros() as u64;
            }
        }
    }
    m
}

fn sum(cs: impl Iterator<Item = Counters>) -> Counters {
    let mut b = Bucket::new("x", Resolution::Hour, 0);
    for c in cs {
        let mut o = Bucket::new("x", Resolution::Hour, 0);
        o.counters = c;
        b.merge(&o);
    }
    b.counters
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_counters_match_a_known_mix() {
    let records = mix();
    let expect = expected(&records);
    let store = MemoryStore::new();
    let config = TelemetryConfig {
        store: Arc::new(store.clone()),
        ..keep_forever()
    };
    let (t, bg) = Telemetry::start(config).unwrap();
    for r in records.clone() {
        match r {
            Record::Access(a) => t.record_access(a),
            Record::Function(f) => t.record_function(f),
        }
    }
    t.shutdown();
    bg.join().await;
    assert_eq!(t.dropped(), 0);
    assert_eq!(t.metrics().processed(), records.len() as u64);
    let since = UNIX_EPOCH + Duration::from_secs(1_795_867_200);
    let until = since + Duration::from_secs(3600);
    for site in ["blog", "shop", "docs"] {
        let minutes = t
            .stats(site, since, until, Resolution::Minute)
            .await
            .unwrap();
        assert_eq!(minutes.buckets.len(), 3, "{site}");
        for b in &minutes.buckets {
            assert_eq!(b.resolution, Resolution::Minute);
            assert_eq!(
                &b.counters,
                &expect[&(site.to_owned(), b.start)],
                "{site} {}",
                b.start
            );
        }
        let hours = t.stats(site, since, until, Resolution::Hour).await.unwrap();
        assert_eq!(hours.buckets.len(), 1);
        let all = sum(expect
            .iter()
            .filter(|((s, _), _)| s == site)
            .map(|(_, c)| c.clone()));
        assert_eq!(hours.buckets[0].counters, all);
        assert_eq!(hours.total.counters, all);
        // Top countries: 4 values, all kept exactly.
        let top = hours.buckets[0].top_countries.top(4);
        let mut truth: BTreeMap<String, u64> = BTreeMap::new();
        for r in &records {
            if let Record::Access(a) = r {
                if &*a.answer.site == site {
                    *truth.entry(a.country.clone().unwrap()).or_default() += 1;
                }
            }
        }
        for (k, c) in top {
            assert_eq!(truth[&k], c);
        }
    }
    // 3 sites × (3 minutes + 1 hour) buckets in the store.
    assert_eq!(store.len(), 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_include_the_open_minute() {
    let (t, bg) = Telemetry::start(TelemetryConfig::default()).unwrap();
    for i in 0..25 {
        t.record_access(common::now(access("blog", i)));
    }
    let since = SystemTime::now() - Duration::from_secs(3600);
    let until = SystemTime::now() + Duration::from_secs(120);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = t
            .stats("blog", since, until, Resolution::Minute)
            .await
            .unwrap();
        if r.total.counters.requests == 25 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "saw {}",
            r.total.counters.requests
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    t.shutdown();
    bg.join().await;
}

#[test]
fn merged_buckets_equal_the_bucket_of_combined_input() {
    let records = mix();
    let (a, b) = records.split_at(records.len() / 3);
    let fill = |rs: &[Record]| {
        let mut bk = Bucket::new("blog", Resolution::Hour, 1_795_867_200);
        for r in rs {
            bk.add(r);
        }
        bk
    };
    let (mut ba, bb, all) = (fill(a), fill(b), fill(&records));
    ba.merge(&bb);
    assert_eq!(ba.counters, all.counters);
    // Quantile sketches merge exactly (bucket counts add); only the float
    // sum may differ in its last bits.
    for (m, w) in [
        (&ba.duration_ms, &all.duration_ms),
        (&ba.function_cpu_ms, &all.function_cpu_ms),
    ] {
        assert_eq!(m.count(), w.count());
        for q in [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(m.quantile(q), w.quantile(q), "q={q}");
        }
        assert!((m.sum() - w.sum()).abs() <= 1e-9 * w.sum());
    }
    assert_eq!(ba.top_countries.top(10), all.top_countries.top(10));
    for (k, c) in all.top_paths.top(64) {
        let merged = ba.top_paths.estimate(&k);
        let truth = c + all.top_paths.error_bound(); // upper bound on the true count
        assert!(merged <= truth, "{k}");
        assert!(truth - merged <= ba.top_paths.error_bound() + all.top_paths.error_bound());
    }
    // Serialized through JSON (as the store keeps them) and merged again.
    let json = serde_json::to_string(&ba).unwrap();
    let back: Bucket = serde_json::from_str(&json).unwrap();
    assert_eq!(back.counters, ba.counters);
    assert_eq!(back.top_paths, ba.top_paths);
    assert_eq!(back.duration_ms.count(), ba.duration_ms.count());
    assert_eq!(back.duration_ms.quantile(0.5), ba.duration_ms.quantile(0.5));
    let p99 = back.duration_ms.quantile(0.99).unwrap();
    let mut durs: Vec<f64> = records
        .iter()
        .filter_map(|r| match r {
            Record::Access(a) => Some(a.duration.as_secs_f64() * 1000.0),
            _ => None,
        })
        .collect();
    durs.sort_by(|x, y| x.total_cmp(y));
    let truth = durs[(0.99 * (durs.len() - 1) as f64) as usize];
    assert!(
        (p99 - truth).abs() / truth <= 0.01 + 1e-9,
        "p99 {p99} vs {truth}"
    );
}

async fn next(s: &mut ledge_telemetry::TailSubscription) -> Arc<Record> {
    match tokio::time::timeout(Duration::from_secs(5), s.next()).await {
        Ok(Some(TailEvent::Record(r))) => r,
        other => panic!("expected a record, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_tail_filters_by_site_kind_and_status() {
    let (t, bg) = Telemetry::start(TelemetryConfig::default()).unwrap();
    let mut errors = t.subscribe(TailFilter {
        site: "blog".into(),
        functions: false,
        status: Some("5xx".parse::<StatusFilter>().unwrap()),
    });
    let mut everything = t.subscribe(TailFilter {
        site: "blog".into(),
        functions: true,
        status: None,
    });
    for (i, status) in [200u16, 503, 404, 500].into_iter().enumerate() {
        let mut r = access("blog", i as u64);
        Arc::make_mut(&mut r.answer).status_code = status;
        t.record_access(r);
        t.record_access(access("other", i as u64));
    }
    t.record_function(function("blog", 9));
    let statuses: Vec<u16> = [next(&mut errors).await, next(&mut errors).await]
        .iter()
        .map(|r| match &**r {
            Record::Access(a) => a.answer.status_code,
            _ => 0,
        })
        .collect();
    assert_eq!(statuses, [503, 500]);
    let mut kinds = Vec::new();
    for _ in 0..5 {
        let r = next(&mut everything).await;
        assert_eq!(r.site(), "blog");
        // What the control API sends over server-sent events.
        let frame = TailEvent::Record(r.clone()).sse_frame();
        let (head, data) = frame.split_once("\ndata: ").unwrap();
        assert!(
            head == "event: traffic" || head == "event: edge_functions",
            "{head}"
        );
        assert!(data.ends_with("\n\n"));
        let v: Value = serde_json::from_str(data.trim_end()).unwrap();
        assert_eq!(v["site_id"], "blog");
        kinds.push(matches!(&*r, Record::Function(_)));
    }
    assert_eq!(kinds, [false, false, false, false, true]);
    t.shutdown();
    assert!(
        errors.next().await.is_none(),
        "subscriptions end at shutdown"
    );
    bg.join().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_output_parses() {
    let (t, bg) = Telemetry::start(TelemetryConfig::default()).unwrap();
    for i in 0..10 {
        let mut r = access("blog", i);
        Arc::make_mut(&mut r.answer).status_code = if i < 7 { 200 } else { 503 };
        Arc::make_mut(&mut r.answer).answered_by = if i < 7 { Phase::Static } else { Phase::Proxy };
        Arc::make_mut(&mut r.answer).cache_status = CacheStatus::Hit;
        t.record_access(r);
    }
    // Access records are counted when the dispatcher takes them (within a
    // few milliseconds).
    let deadline = Instant::now() + Duration::from_secs(10);
    while t.metrics().requests_total() < 10 {
        assert!(Instant::now() < deadline, "the records were never counted");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut f = function("blog", 1);
    f.outcome = Outcome::Timeout;
    t.record_function(f);
    t.metrics()
        .observe_upstream(Duration::from_millis(30), false);
    let conn = t.metrics().connection();
    let text = t.render_metrics();
    drop(conn);

    // Every line is a comment or a sample the parser recognises.
    for line in text.lines() {
        let info = prometheus_parse::LineInfo::parse(line);
        assert!(
            !matches!(
                info,
                prometheus_parse::LineInfo::Ignored | prometheus_parse::LineInfo::Empty
            ),
            "unparsed line {line:?}"
        );
    }
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let get = |name: &str, labels: &[(&str, &str)]| -> prometheus_parse::Value {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .unwrap_or_else(|| panic!("no sample {name} {labels:?}"))
            .value
            .clone()
    };
    use prometheus_parse::Value::{Counter, Gauge, Histogram};
    assert_eq!(
        get(
            "ledge_requests_total",
            &[("phase", "static"), ("class", "2xx")]
        ),
        Counter(7.0)
    );
    assert_eq!(
        get(
            "ledge_requests_total",
            &[("phase", "proxy"), ("class", "5xx")]
        ),
        Counter(3.0)
    );
    assert_eq!(
        get(
            "ledge_requests_total",
            &[("phase", "static"), ("class", "5xx")]
        ),
        Counter(0.0)
    );
    assert_eq!(
        get("ledge_cache_requests_total", &[("status", "hit")]),
        Counter(10.0)
    );
    assert_eq!(
        get(
            "ledge_function_invocations_total",
            &[("outcome", "timeout")]
        ),
        Counter(1.0)
    );
    assert_eq!(
        get("ledge_upstream_requests_total", &[("result", "error")]),
        Counter(1.0)
    );
    assert_eq!(get("ledge_response_bytes_total", &[]), Counter(12340.0));
    assert_eq!(get("ledge_open_connections", &[]), Gauge(1.0));
    assert_eq!(
        get("ledge_telemetry_queue_dropped_total", &[]),
        Counter(0.0)
    );
    match get("ledge_request_duration_seconds", &[]) {
        Histogram(buckets) => {
            // 1.5 ms each: not below 1 ms, all below 2.5 ms.
            let at = |le: f64| buckets.iter().find(|b| b.less_than == le).unwrap().count;
            assert_eq!(at(0.001), 0.0);
            assert_eq!(at(0.0025), 10.0);
            assert_eq!(at(f64::INFINITY), 10.0);
        }
        other => panic!("not a histogram: {other:?}"),
    }
    let count = scrape
        .samples
        .iter()
        .find(|s| s.metric == "ledge_request_duration_seconds_count")
        .map(|s| s.value.clone());
    assert!(
        matches!(count, Some(prometheus_parse::Value::Untyped(c)) | Some(Counter(c)) if c == 10.0),
        "{count:?}"
    );
    assert!(text.contains("process_start_time_seconds"));
    assert!(text.contains("process_resident_memory_bytes"));
    t.shutdown();
    bg.join().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn site_drains_are_replaced_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.log");
    let b = dir.path().join("b.log");
    // Tenants may not name local drains by default.
    let (strict, strict_bg) = Telemetry::start(TelemetryConfig::default()).unwrap();
    let err = strict
        .set_site_drains("blog", vec![DrainSpec::stdout()])
        .unwrap_err();
    assert!(err.to_string().contains("https, nats or kafka"), "{err}");
    assert!(strict.site_drains("blog").is_empty());
    strict.shutdown();
    strict_bg.join().await;

    let (t, bg) = Telemetry::start(TelemetryConfig {
        allow_local_site_drains: true,
        ..TelemetryConfig::default()
    })
    .unwrap();
    let spec_a: DrainSpec = a.display().to_string().parse().unwrap();
    let spec_b: DrainSpec = b.display().to_string().parse().unwrap();
    t.set_site_drains("blog", vec![spec_a.clone(), spec_a.clone()])
        .unwrap();
    assert_eq!(t.site_drains("blog"), vec![spec_a.clone()]);
    t.record_access(access("blog", 1));
    t.record_access(access("shop", 2));
    let wait_lines = |p: std::path::PathBuf, n: usize| async move {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let got = std::fs::read_to_string(&p)
                .map(|s| s.lines().count())
                .unwrap_or(0);
            if got >= n {
                return got;
            }
            assert!(Instant::now() < deadline, "{} has {got} lines", p.display());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    assert_eq!(wait_lines(a.clone(), 1).await, 1);
    t.set_site_drains("blog", vec![spec_b.clone()]).unwrap();
    t.record_access(access("blog", 3));
    assert_eq!(wait_lines(b.clone(), 1).await, 1);
    t.set_site_drains("blog", vec![]).unwrap();
    assert!(t.site_drains("blog").is_empty());
    t.record_access(access("blog", 4));
    t.shutdown();
    bg.join().await;
    assert_eq!(std::fs::read_to_string(&a).unwrap().lines().count(), 1);
    let only_b = std::fs::read_to_string(&b).unwrap();
    assert_eq!(only_b.lines().count(), 1);
    assert!(only_b.contains("req-blog-3"));
}

/// Node and site drains get their own buffers of each batch: a site's drain
/// without PII gets the site's lines as the node's drain has them (copied),
/// one with `exclude_pii` gets them without client IP and user agent
/// (written for it), and other sites' lines go to neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn site_drains_get_their_sites_lines_in_their_form() {
    let dir = tempfile::tempdir().unwrap();
    let node = dir.path().join("node.log");
    let site_full = dir.path().join("blog.log");
    let site_redacted = dir.path().join("blog-redacted.log");
    let config = TelemetryConfig {
        allow_local_site_drains: true,
        ..config_with(vec![DrainSpec::file(&node)])
    };
    let (t, bg) = Telemetry::start(config).unwrap();
    let redacted: DrainSpec = format!("file://{}?exclude_pii", site_redacted.display())
        .parse()
        .unwrap();
    t.set_site_drains("blog", vec![DrainSpec::file(&site_full), redacted])
        .unwrap();
    for i in 0..300 {
        t.record_access(access(if i % 3 == 0 { "shop" } else { "blog" }, i));
        if i % 100 == 0 {
            // Spread over several batches.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    t.shutdown();
    bg.join().await;
    assert_eq!(t.metrics().sink_dropped(), 0);

    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap();
    let node_lines = read(&node);
    assert_eq!(node_lines.lines().count(), 300);
    let blog: String = node_lines
        .lines()
        .filter(|l| l.contains("\"site_id\":\"blog\""))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(blog.lines().count(), 200);
    assert_eq!(read(&site_full), blog);
    let redacted_lines = read(&site_redacted);
    assert_eq!(redacted_lines.lines().count(), 200);
    for (r, full) in redacted_lines.lines().zip(blog.lines()) {
        let mut want: Value = serde_json::from_str(full).unwrap();
        let obj = want.as_object_mut().unwrap();
        assert!(obj.remove("client_ip").is_some());
        assert!(obj.remove("user_agent").is_some());
        assert_eq!(serde_json::from_str::<Value>(r).unwrap(), want);
    }
}
