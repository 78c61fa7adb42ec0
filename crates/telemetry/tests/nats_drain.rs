//! The NATS drain against a real nats-server with JetStream.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, stream};
use common::{access, function, start_nats};
use futures_util::StreamExt;
use ledge_telemetry::{Telemetry, TelemetryConfig};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_to_a_jetstream_consumer() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = start_nats(dir.path());

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

    let mut config = TelemetryConfig::default();
    config.batch.linger = Duration::from_millis(50);
    let (t, bg) = Telemetry::start(config).unwrap();
    t.set_site_drains(
        "blog",
        vec![
            format!("nats://127.0.0.1:{port}/ledge.logs.blog?exclude_pii")
                .parse()
                .unwrap(),
        ],
    )
    .unwrap();
    for i in 0..60 {
        t.record_access(access("blog", i));
        t.record_access(access("shop", i));
        if i % 10 == 0 {
            t.record_function(function("blog", i));
        }
    }
    // The same record again (as a retried batch would send it) is
    // de-duplicated by the stream through Nats-Msg-Id.
    tokio::time::sleep(Duration::from_millis(300)).await;
    t.record_access(access("blog", 0));
    t.shutdown();
    bg.join().await;
    assert_eq!(t.metrics().sink_dropped(), 0);

    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("test".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut traffic = BTreeSet::new();
    let mut functions = 0;
    while traffic.len() + functions < 66 {
        let msg = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .expect("66 messages within 10 s")
            .expect("stream open")
            .expect("message");
        assert_eq!(msg.subject.as_str(), "ledge.logs.blog");
        let v: Value = serde_json::from_slice(&msg.payload).unwrap();
        assert!(!msg.payload.ends_with(b"\n"));
        assert_eq!(v["site_id"], "blog");
        match v["log_type"].as_str() {
            Some("traffic") => {
                assert!(v.get("client_ip").is_none(), "exclude_pii");
                assert!(traffic.insert(v["request_id"].as_str().unwrap().to_owned()));
            }
            Some("edge_functions") => functions += 1,
            other => panic!("{other:?}"),
        }
        msg.ack().await.unwrap();
    }
    assert_eq!(traffic.len(), 60);
    assert_eq!(functions, 6);
    let info = js
        .get_stream("LEDGE_LOGS")
        .await
        .unwrap()
        .cached_info()
        .clone();
    assert_eq!(info.state.messages, 66);
}
