//! Kafka drains (rskafka, plaintext): each batch is produced, gzip
//! compressed, to one partition of the topic, partitions taken in turn.

use std::time::Duration;

use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::BackoffConfig;

use super::{allowed_addrs, message, Batch, BatchWriter, ConnectCheck, SinkError};

pub(crate) struct KafkaWriter {
    brokers: Vec<String>,
    topic: String,
    check: Option<ConnectCheck>,
    conn: Option<(Client, Vec<PartitionClient>)>,
    next: usize,
}

impl KafkaWriter {
    pub(crate) fn new(brokers: Vec<String>, topic: String, check: Option<ConnectCheck>) -> Self {
        Self {
            brokers,
            topic,
            check,
            conn: None,
            next: 0,
        }
    }

    async fn connect(&mut self) -> Result<(), SinkError> {
        if self.conn.is_some() {
            return Ok(());
        }
        // Bootstrap brokers are resolved and checked here. (The brokers the
        // cluster's metadata names afterwards are connected to by rskafka
        // itself; operators who do not trust tenants' Kafka clusters should
        // not allow tenant Kafka drains.)
        let mut bootstrap = Vec::new();
        for b in &self.brokers {
            match allowed_addrs(b, self.check.as_ref()).await {
                Ok(addrs) => bootstrap.extend(addrs.iter().map(|a| a.to_string())),
                Err(e) if self.check.is_some() => return Err(e),
                Err(_) => bootstrap.push(b.clone()),
            }
        }
        let client = ClientBuilder::new(bootstrap)
            .client_id("ledge-log-drain")
            .backoff_config(BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(2),
                base: 2.0,
                deadline: Some(Duration::from_secs(10)),
            })
            .build()
            .await
            .map_err(|e| SinkError::Retry(format!("connecting: {e}")))?;
        let topics = client
            .list_topics()
            .await
            .map_err(|e| SinkError::Retry(format!("listing topics: {e}")))?;
        let partitions = topics
            .into_iter()
            .find(|t| t.name == self.topic)
            .map(|t| t.partitions)
            .ok_or_else(|| SinkError::Retry(format!("topic {} does not exist", self.topic)))?;
        let mut clients = Vec::with_capacity(partitions.len());
        for p in partitions {
            clients.push(
                client
                    .partition_client(self.topic.clone(), p, UnknownTopicHandling::Retry)
                    .await
                    .map_err(|e| SinkError::Retry(format!("partition {p}: {e}")))?,
            );
        }
        if clients.is_empty() {
            return Err(SinkError::Retry(format!(
                "topic {} has no partitions",
                self.topic
            )));
        }
        self.conn = Some((client, clients));
        Ok(())
    }
}

impl BatchWriter for KafkaWriter {
    async fn write(&mut self, batch: &Batch) -> Result<(), SinkError> {
        self.connect().await?;
        let Some((_, partitions)) = &self.conn else {
            return Err(SinkError::Retry("not connected".into()));
        };
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let now = rskafka::chrono::DateTime::from_timestamp_millis(millis).unwrap_or_default();
        let records = batch
            .lines()
            .map(|l| rskafka::record::Record {
                key: None,
                value: Some(message(&l).to_vec()),
                headers: Default::default(),
                timestamp: now,
            })
            .collect();
        self.next = self.next.wrapping_add(1);
        let pc = &partitions[self.next % partitions.len()];
        if let Err(e) = pc.produce(records, Compression::Gzip).await {
            // Reconnect on the next attempt (leaders may have moved).
            self.conn = None;
            return Err(SinkError::Retry(format!("producing: {e}")));
        }
        Ok(())
    }
}
