//! The NATS drain against a real nats-server with JetStream.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, stream};
use common::{access, function, start_nats};
use futures_util::StreamExt;
use ledge_telemetry::{Telemetry, TelemetryConfig};
use serde_json::Value;

/// A fresh server's JetStream context and a stream on `ledge.logs.>`.
async fn stream(port: u16) -> (jetstream::Context, stream::Stream) {
    let client = async_nats::connect(format!("nats://127.0.0.1:{port}"))
        .await
        .unwrap();
    let js = jetstream::new(client);
    let stream = js
        .create_stream(stream::Config {
            name: "LEDGE_LOGS".into(),
            subjects: vec!["ledge.logs.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    (js, stream)
}

/// Telemetry with a NATS drain for site `blog` (batches sent after 50 ms).
fn draining_blog_to(drain: &str) -> (Telemetry, ledge_telemetry::Background) {
    let mut config = TelemetryConfig::default();
    config.batch.linger = Duration::from_millis(50);
    let (t, bg) = Telemetry::start(config).unwrap();
    t.set_site_drains("blog", vec![drain.parse().unwrap()])
        .unwrap();
    (t, bg)
}

/// A durable pull consumer of everything in the stream.
async fn consumer(
    stream: &stream::Stream,
) -> async_nats::jetstream::consumer::Consumer<pull::Config> {
    stream
        .create_consumer(pull::Config {
            durable_name: Some("test".into()),
            ..Default::default()
        })
        .await
        .unwrap()
}

/// The consumer's next message (within 10 s).
async fn next_message(
    messages: &mut async_nats::jetstream::consumer::pull::Stream,
) -> async_nats::jetstream::Message {
    tokio::time::timeout(Duration::from_secs(10), messages.next())
        .await
        .expect("messages within 10 s")
        .expect("stream open")
        .expect("message")
}

async fn stored_messages(js: &jetstream::Context) -> u64 {
    js.get_stream("LEDGE_LOGS")
        .await
        .unwrap()
        .cached_info()
        .state
        .messages
}

/// Checks one record line of site `blog` without PII; returns its kind and
/// request id.
fn check_line(line: &[u8]) -> (String, String) {
    let v: Value = serde_json::from_slice(line).unwrap();
    assert_eq!(v["site_id"], "blog");
    assert!(v.get("client_ip").is_none(), "exclude_pii");
    (
        v["log_type"].as_str().unwrap().to_owned(),
        v["request_id"].as_str().unwrap().to_owned(),
    )
}

/// 60 access and 6 function records of `blog` (and as many of `shop`,
/// which has no drain).
fn record_mix(t: &Telemetry) {
    for i in 0..60 {
        t.record_access(access("blog", i));
        t.record_access(access("shop", i));
        if i % 10 == 0 {
            t.record_function(function("blog", i));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_json_lines_in_few_messages_to_a_jetstream_consumer() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = start_nats(dir.path());
    let (js, stream) = stream(port).await;

    let (t, bg) = draining_blog_to(&format!(
        "nats://127.0.0.1:{port}/ledge.logs.blog?exclude_pii"
    ));
    record_mix(&t);
    // A lone record, as a batch of its own.
    tokio::time::sleep(Duration::from_millis(300)).await;
    t.record_access(access("blog", 1000));
    t.shutdown();
    bg.join().await;
    assert_eq!(t.metrics().sink_dropped(), 0);

    let consumer = consumer(&stream).await;
    let stored = stored_messages(&js).await;
    assert!(
        (2..=10).contains(&stored),
        "67 records in a few messages: {stored}"
    );
    let mut messages = consumer.messages().await.unwrap();
    let mut traffic = BTreeSet::new();
    let mut functions = 0;
    for _ in 0..stored {
        let msg = next_message(&mut messages).await;
        assert_eq!(msg.subject.as_str(), "ledge.logs.blog");
        assert!(msg.payload.ends_with(b"\n"), "JSON lines");
        for line in msg.payload.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            match check_line(line) {
                (kind, id) if kind == "traffic" => assert!(traffic.insert(id), "once"),
                (kind, _) if kind == "edge_functions" => functions += 1,
                other => panic!("{other:?}"),
            }
        }
        msg.ack().await.unwrap();
    }
    assert_eq!(traffic.len(), 61);
    assert!(traffic.contains("req-blog-1000"));
    assert_eq!(functions, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_record_delivers_one_message_per_record() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = start_nats(dir.path());
    let (js, stream) = stream(port).await;

    let (t, bg) = draining_blog_to(&format!(
        "nats://127.0.0.1:{port}/ledge.logs.blog?exclude_pii&per_record"
    ));
    record_mix(&t);
    t.shutdown();
    bg.join().await;
    assert_eq!(t.metrics().sink_dropped(), 0);

    let mut messages = consumer(&stream).await.messages().await.unwrap();
    let mut traffic = BTreeSet::new();
    let mut functions = 0;
    while traffic.len() + functions < 66 {
        let msg = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .expect("66 messages within 10 s")
            .expect("stream open")
            .expect("message");
        assert_eq!(msg.subject.as_str(), "ledge.logs.blog");
        assert!(!msg.payload.ends_with(b"\n"));
        match check_line(&msg.payload) {
            (kind, id) if kind == "traffic" => assert!(traffic.insert(id)),
            (kind, _) if kind == "edge_functions" => functions += 1,
            other => panic!("{other:?}"),
        }
        msg.ack().await.unwrap();
    }
    assert_eq!(traffic.len(), 60);
    assert_eq!(functions, 6);
    assert_eq!(stored_messages(&js).await, 66);
}

/// A batch whose delivery fails after some of its messages were stored is
/// sent again, cut into the same messages with the same `Nats-Msg-Id`s: the
/// stream keeps each stored message once, however many attempts there are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_batch_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = start_nats(dir.path());
    let client = async_nats::connect(format!("nats://127.0.0.1:{port}"))
        .await
        .unwrap();
    let js = jetstream::new(client);
    // Messages over 40 KiB are refused: a batch of ~30 KiB of small lines
    // and then one 50 KiB line makes two messages, the first stored and the
    // second refused on every attempt.
    js.create_stream(stream::Config {
        name: "LEDGE_LOGS".into(),
        subjects: vec!["ledge.logs.>".into()],
        max_message_size: 40 * 1024,
        ..Default::default()
    })
    .await
    .unwrap();
    let mut config = TelemetryConfig::default();
    config.batch.linger = Duration::from_millis(200);
    config.batch.max_attempts = 3;
    config.batch.backoff_initial = Duration::from_millis(20);
    let (t, bg) = Telemetry::start(config).unwrap();
    t.set_site_drains(
        "blog",
        vec![format!("nats://127.0.0.1:{port}/ledge.logs.blog")
            .parse()
            .unwrap()],
    )
    .unwrap();
    for i in 0..50 {
        t.record_access(access("blog", i));
    }
    let mut big = access("blog", 50);
    big.user_agent = Some("x".repeat(50 * 1024).into());
    t.record_access(big);
    // Three attempts, 20 and 40 ms apart (± half).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    t.shutdown();
    bg.join().await;
    assert!(
        t.metrics().sink_dropped() >= 1,
        "the refused line is dropped after its attempts"
    );

    let stored = stored_messages(&js).await;
    let stream = js.get_stream("LEDGE_LOGS").await.unwrap();
    let mut messages = consumer(&stream).await.messages().await.unwrap();
    let mut ids = BTreeSet::new();
    let mut lines = 0;
    for _ in 0..stored {
        let msg = next_message(&mut messages).await;
        for line in msg.payload.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let v: Value = serde_json::from_slice(line).unwrap();
            ids.insert(v["request_id"].as_str().unwrap().to_owned());
            lines += 1;
        }
        msg.ack().await.unwrap();
    }
    assert_eq!(ids.len(), 50, "every small record is stored");
    assert_eq!(
        lines, 50,
        "and only once, after three attempts: {stored} messages"
    );
    assert!(!ids.contains("req-blog-50"));
}
