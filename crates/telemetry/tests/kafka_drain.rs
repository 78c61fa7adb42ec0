//! The Kafka drain against a real Kafka-protocol broker (tansu).

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{access, start_tansu};
use ledge_telemetry::{DrainSpec, Telemetry, TelemetryConfig};
use rskafka::client::partition::UnknownTopicHandling;
use rskafka::client::ClientBuilder;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_to_a_kafka_consumer() {
    let (_broker, port) = start_tansu();
    let bootstrap = format!("127.0.0.1:{port}");
    let client = ClientBuilder::new(vec![bootstrap.clone()])
        .build()
        .await
        .expect("connecting to tansu");
    client
        .controller_client()
        .unwrap()
        .create_topic("ledge-logs", 1, 1, 5_000)
        .await
        .expect("creating the topic");

    let drain: DrainSpec = format!("kafka://{bootstrap}/ledge-logs").parse().unwrap();
    let mut config = TelemetryConfig {
        node_drains: vec![drain],
        ..TelemetryConfig::default()
    };
    config.batch.max_records = 25;
    config.batch.linger = Duration::from_millis(50);
    let (t, bg) = Telemetry::start(config).unwrap();
    for i in 0..40 {
        t.record_access(access(if i % 2 == 0 { "blog" } else { "shop" }, i));
    }
    t.shutdown();
    bg.join().await;
    assert_eq!(t.metrics().sink_dropped(), 0, "{}", t.render_metrics());

    let pc = client
        .partition_client("ledge-logs", 0, UnknownTopicHandling::Retry)
        .await
        .unwrap();
    let mut ids = BTreeSet::new();
    let mut offset = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while ids.len() < 40 {
        assert!(
            Instant::now() < deadline,
            "only {} records consumed",
            ids.len()
        );
        let (records, _high) = pc.fetch_records(offset, 1..1_000_000, 500).await.unwrap();
        for r in records {
            offset = r.offset + 1;
            let value = r.record.value.expect("a value");
            let v: Value = serde_json::from_slice(&value).unwrap();
            assert_eq!(v["log_type"], "traffic");
            assert_eq!(v["client_ip"], "203.0.113.9");
            assert!(ids.insert(v["request_id"].as_str().unwrap().to_owned()));
        }
    }
    assert_eq!(ids.len(), 40);
}
