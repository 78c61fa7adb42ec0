//! Cost of the hot path: `Telemetry::record_access`.
//!
//! * `accepted`: the queue has room (it is drained between timed chunks).
//! * `dropped`: the queue is full (its dispatcher never runs).
//! * `accepted_slow_drain`: as `accepted`, with a site drain whose intake
//!   never answers, so its buffer is full and every line is dropped.
//! * `dispatch_*`: enqueue plus the dispatcher's work (statistics, JSON,
//!   file sink) until the queue is empty: the node's sustained capacity.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant, SystemTime};

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use std::sync::Arc;

use ledge_telemetry::{
    AccessRecord, Answer, CacheStatus, DrainSpec, Phase, Telemetry, TelemetryConfig,
};

fn record(i: u64) -> AccessRecord {
    AccessRecord {
        timestamp: SystemTime::now(),
        request_id: format!("01JD6Q{i:020}").into(),
        answer: Arc::new(Answer {
            site: if i % 2 == 0 {
                "blog".into()
            } else {
                "shop".into()
            },
            deploy: Some("6745a1b2c3d4e5f6a7b8c9d0".into()),
            host: "blog.ledge.example".into(),
            method: "GET".into(),
            path: format!("/posts/{}", i % 50).into(),
            query: None,
            status_code: 200,
            content_type: Some("text/html; charset=utf-8".into()),
            cache_status: CacheStatus::None,
            answered_by: Phase::Static,
            rule: None,
            function_name: None,
            firewall_rule: None,
            block_reason: None,
        }),
        request_size: 0,
        response_size: 5120,
        duration: Duration::from_micros(850 + i % 1000),
        ttfb: Duration::from_micros(400),
        client_ip: Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, (i % 250) as u8))),
        country: Some("DE".into()),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/133.0".into()),
        referrer: Some("https://news.example/".into()),
        tls_version: Some("TLSv1.3".into()),
        http_version: "HTTP/2".into(),
        error_class: None,
    }
}

const CHUNK: u64 = 4096;

/// Times `iters` calls in chunks, waiting (untimed) for the queue to empty
/// between chunks, so every timed call finds room.
fn timed_accepted(t: &Telemetry, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let n = CHUNK.min(iters - done);
        let recs: Vec<AccessRecord> = (done..done + n).map(record).collect();
        let start = Instant::now();
        for r in recs {
            t.record_access(r);
        }
        total += start.elapsed();
        done += n;
        while t.queued() > 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    total
}

/// Records per timed dispatch run: the dispatcher waits 1 ms for records to
/// gather after the first, which this many make a small part of the time.
const DISPATCH_CHUNK: u64 = 60_000;

/// Times enqueue plus the dispatcher's processing of `iters` records.
fn timed_dispatch(t: &Telemetry, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let n = DISPATCH_CHUNK.min(iters - done);
        let target = t.metrics().processed() + n;
        let recs: Vec<AccessRecord> = (done..done + n).map(record).collect();
        let start = Instant::now();
        for r in recs {
            t.record_access(r);
        }
        // Sleep rather than spin: on a small machine a spinning waiter
        // takes the core the dispatcher needs.
        while t.metrics().processed() < target {
            std::thread::sleep(Duration::from_micros(20));
        }
        total += start.elapsed();
        done += n;
    }
    total
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("record_access");
    g.measurement_time(Duration::from_secs(4));
    g.warm_up_time(Duration::from_secs(1));

    g.bench_function("build_record", |b| {
        let mut i = 0;
        b.iter(|| {
            i += 1;
            black_box(record(i))
        })
    });

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let t = {
        let _g = rt.enter();
        Telemetry::start(TelemetryConfig::default()).unwrap().0
    };
    g.bench_function("accepted", |b| {
        b.iter_custom(|iters| timed_accepted(&t, iters))
    });

    // A site drain whose intake accepts and never answers.
    let stalled = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = stalled.local_addr().unwrap().port();
    let _hold = std::thread::spawn(move || {
        let mut held = Vec::new();
        while let Ok((s, _)) = stalled.accept() {
            held.push(s);
        }
    });
    let slow = {
        let _g = rt.enter();
        let mut config = TelemetryConfig {
            site_sink_buffer: 256,
            ..TelemetryConfig::default()
        };
        config.batch.attempt_timeout = Duration::from_secs(3600);
        let (t, _) = Telemetry::start(config).unwrap();
        let drain: DrainSpec = format!("http://127.0.0.1:{port}/in").parse().unwrap();
        t.set_site_drains("blog", vec![drain.clone()]).unwrap();
        t.set_site_drains("shop", vec![drain]).unwrap();
        t
    };
    g.bench_function("accepted_slow_drain", |b| {
        b.iter_custom(|iters| timed_accepted(&slow, iters))
    });

    // A runtime that is never driven: its dispatcher never runs, so the
    // queue stays full and every call takes the drop path.
    let idle = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let full = {
        let _g = idle.enter();
        let config = TelemetryConfig {
            queue_capacity: 1024,
            ..TelemetryConfig::default()
        };
        Telemetry::start(config).unwrap().0
    };
    for i in 0..2048 {
        full.record_access(record(i));
    }
    g.bench_function("dropped", |b| {
        b.iter_batched(
            || record(7),
            |r| full.record_access(r),
            criterion::BatchSize::SmallInput,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("parts");
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_secs(1));
    let recs: Vec<ledge_telemetry::Record> = (0..1024)
        .map(|i| ledge_telemetry::Record::Access(Box::new(record(i))))
        .collect();
    g.bench_function("bucket_add", |b| {
        let mut bucket =
            ledge_telemetry::Bucket::new("blog", ledge_telemetry::Resolution::Minute, 0);
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % recs.len();
            bucket.add(&recs[i]);
        })
    });
    g.bench_function("to_json_line", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % recs.len();
            black_box(recs[i].to_json_line(false))
        })
    });
    // As the dispatcher does it: appended to a batch buffer.
    g.bench_function("write_json_line", |b| {
        let mut i = 0;
        let mut out = Vec::with_capacity(1 << 20);
        b.iter(|| {
            i = (i + 1) % recs.len();
            if out.len() > (1 << 20) - 4096 {
                out.clear();
            }
            recs[i].write_json_line(&mut out, false);
            black_box(out.len())
        })
    });
    // With the dispatcher's cache of repeated runs of fields.
    g.bench_function("write_json_line_cached", |b| {
        let mut i = 0;
        let mut out = Vec::with_capacity(1 << 20);
        let mut cache = ledge_telemetry::LineCache::default();
        b.iter(|| {
            i = (i + 1) % recs.len();
            if out.len() > (1 << 20) - 4096 {
                out.clear();
            }
            recs[i].write_json_line_cached(&mut out, false, &mut cache);
            black_box(out.len())
        })
    });
    g.finish();

    let mut g = c.benchmark_group("dispatch");
    g.measurement_time(Duration::from_secs(4));
    g.warm_up_time(Duration::from_secs(1));
    g.bench_function("stats_only", |b| {
        b.iter_custom(|iters| timed_dispatch(&t, iters))
    });
    let dir = tempfile::tempdir().unwrap();
    let filed = {
        let _g = rt.enter();
        Telemetry::start(TelemetryConfig {
            node_drains: vec![DrainSpec::file(dir.path().join("access.log"))],
            ..TelemetryConfig::default()
        })
        .unwrap()
        .0
    };
    g.bench_function("stats_and_file_sink", |b| {
        b.iter_custom(|iters| timed_dispatch(&filed, iters))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
