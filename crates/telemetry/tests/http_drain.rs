//! HTTP drains against a real local intake (axum) that fails at first.

mod common;

use std::collections::BTreeSet;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use common::access;
use ledge_telemetry::{Telemetry, TelemetryConfig};
use serde_json::Value;

#[derive(Default)]
struct Intake {
    /// Answer 503 to this many requests first.
    fail_first: usize,
    attempts: Vec<Instant>,
    /// Bodies accepted, gunzipped, with their content type.
    accepted: Vec<(String, Vec<u8>)>,
}

type Shared = Arc<Mutex<Intake>>;

async fn receive(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let mut intake = s.lock().unwrap();
    intake.attempts.push(Instant::now());
    if intake.attempts.len() <= intake.fail_first {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    assert_eq!(headers.get("content-encoding").unwrap(), "gzip");
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_end(&mut plain)
        .expect("body is gzip");
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    intake.accepted.push((ct, plain));
    StatusCode::ACCEPTED
}

async fn start_intake(fail_first: usize) -> (Shared, u16) {
    let state: Shared = Arc::new(Mutex::new(Intake {
        fail_first,
        ..Intake::default()
    }));
    let app = axum::Router::new()
        .route("/in", post(receive))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (state, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_gzips_and_retries_with_backoff() {
    let (intake, port) = start_intake(3).await;
    let mut config = TelemetryConfig::default();
    config.batch.max_records = 50;
    config.batch.linger = Duration::from_millis(200);
    config.batch.backoff_initial = Duration::from_millis(200);
    let (t, bg) = Telemetry::start(config).unwrap();
    t.set_site_drains(
        "blog",
        vec![format!("http://127.0.0.1:{port}/in?token=abc")
            .parse()
            .unwrap()],
    )
    .unwrap();
    for i in 0..120 {
        t.record_access(access("blog", i));
        t.record_access(access("shop", i)); // not this drain's site
    }
    t.shutdown();
    bg.join().await;

    let intake = intake.lock().unwrap();
    // Three 503s, then every batch delivered once.
    let mut ids = BTreeSet::new();
    for (ct, body) in &intake.accepted {
        assert_eq!(ct, "application/x-ndjson");
        let text = std::str::from_utf8(body).unwrap();
        let n = text.lines().count();
        assert!((1..=50).contains(&n), "batch of {n}");
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["site_id"], "blog");
            assert!(ids.insert(v["request_id"].as_str().unwrap().to_owned()));
        }
    }
    assert_eq!(ids.len(), 120);
    assert!(intake.accepted.len() >= 3, "120 records in batches of ≤ 50");
    assert_eq!(intake.attempts.len(), 3 + intake.accepted.len());
    // Backoff between the failed attempts of the first batch: 200 ms, then
    // 400 ms, each with ± 50 % jitter.
    let gap1 = intake.attempts[1] - intake.attempts[0];
    let gap2 = intake.attempts[2] - intake.attempts[1];
    let gap3 = intake.attempts[3] - intake.attempts[2];
    assert!(gap1 >= Duration::from_millis(100), "{gap1:?}");
    assert!(gap2 >= Duration::from_millis(200), "{gap2:?}");
    assert!(gap3 >= Duration::from_millis(400), "{gap3:?}");
    assert_eq!(t.metrics().sink_dropped(), 0);
    let text = t.render_metrics();
    assert!(
        text.contains("ledge_telemetry_sink_failed_batches_total 3"),
        "{text}"
    );
    assert!(text.contains("ledge_telemetry_sink_written_total 120"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_arrays_without_pii_and_gives_up_after_max_attempts() {
    let (intake, port) = start_intake(0).await;
    let (failing, fport) = start_intake(usize::MAX).await;
    let mut config = TelemetryConfig::default();
    config.batch.linger = Duration::from_millis(50);
    config.batch.backoff_initial = Duration::from_millis(10);
    config.batch.max_attempts = 3;
    let (t, bg) = Telemetry::start(config).unwrap();
    t.set_site_drains(
        "blog",
        vec![
            format!("http://127.0.0.1:{port}/in#format=json&exclude_pii")
                .parse()
                .unwrap(),
            format!("http://127.0.0.1:{fport}/in").parse().unwrap(),
        ],
    )
    .unwrap();
    for i in 0..10 {
        t.record_access(access("blog", i));
    }
    t.shutdown();
    bg.join().await;
    let intake = intake.lock().unwrap();
    let mut n = 0;
    for (ct, body) in &intake.accepted {
        assert_eq!(ct, "application/json");
        let arr: Vec<Value> = serde_json::from_slice(body).unwrap();
        for v in arr {
            let o = v.as_object().unwrap();
            assert!(!o.contains_key("client_ip") && !o.contains_key("user_agent"));
            assert!(o.contains_key("referrer"));
            n += 1;
        }
    }
    assert_eq!(n, 10);
    // The always-failing intake saw exactly 3 attempts per batch, then the
    // batch was dropped and counted.
    let failing = failing.lock().unwrap();
    assert_eq!(failing.attempts.len() % 3, 0);
    assert!(failing.accepted.is_empty());
    assert_eq!(t.metrics().sink_dropped(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_drains_obey_the_outbound_policy() {
    let (intake, port) = start_intake(0).await;
    let config = TelemetryConfig {
        connect_check: Some(Arc::new(|addr: std::net::SocketAddr| {
            if addr.ip().is_loopback() {
                Err(format!("{addr} is a loopback address"))
            } else {
                Ok(())
            }
        })),
        ..TelemetryConfig::default()
    };
    let mut config = config;
    config.batch.max_attempts = 2;
    config.batch.backoff_initial = Duration::from_millis(10);
    let (t, bg) = Telemetry::start(config).unwrap();
    // An IP literal (checked before sending) and a name (checked by the
    // resolver of the site drains' client).
    t.set_site_drains(
        "blog",
        vec![
            format!("http://127.0.0.1:{port}/in").parse().unwrap(),
            format!("http://localhost:{port}/in").parse().unwrap(),
        ],
    )
    .unwrap();
    for i in 0..5 {
        t.record_access(access("blog", i));
    }
    t.shutdown();
    bg.join().await;
    assert!(intake.lock().unwrap().attempts.is_empty());
    assert_eq!(t.metrics().sink_dropped(), 10);
}
