//! NATS JetStream drains: one message per record, published and
//! acknowledged by the stream that covers the subject.

use std::time::Duration;

use bytes::Bytes;

use super::{allowed_addrs, message, BatchWriter, ConnectCheck, SinkError};

pub(crate) struct NatsWriter {
    server: String,
    subject: String,
    check: Option<ConnectCheck>,
    js: Option<async_nats::jetstream::Context>,
}

impl NatsWriter {
    pub(crate) fn new(server: String, subject: String, check: Option<ConnectCheck>) -> Self {
        Self {
            server,
            subject,
            check,
            js: None,
        }
    }

    async fn connect(&mut self) -> Result<async_nats::jetstream::Context, SinkError> {
        if let Some(js) = &self.js {
            return Ok(js.clone());
        }
        // Resolve and check here, then connect to the checked address only;
        // servers the cluster announces are ignored, so a tenant drain
        // cannot be steered elsewhere.
        let addrs = allowed_addrs(&self.server, self.check.as_ref()).await?;
        let target: Vec<String> = addrs.iter().map(|a| format!("nats://{a}")).collect();
        let client = async_nats::ConnectOptions::new()
            .ignore_discovered_servers()
            .connection_timeout(Duration::from_secs(5))
            .name("ledge-log-drain")
            .connect(target.as_slice())
            .await
            .map_err(|e| SinkError::Retry(format!("connecting to {}: {e}", self.server)))?;
        let js = async_nats::jetstream::new(client);
        self.js = Some(js.clone());
        Ok(js)
    }
}

impl BatchWriter for NatsWriter {
    async fn write(&mut self, batch: &[Bytes]) -> Result<(), SinkError> {
        let js = self.connect().await?;
        let mut acks = Vec::with_capacity(batch.len());
        for line in batch {
            match js.publish(self.subject.clone(), message(line)).await {
                Ok(ack) => acks.push(ack),
                Err(e) => return Err(SinkError::Retry(format!("publishing: {e}"))),
            }
        }
        for ack in acks {
            ack.await
                .map_err(|e| SinkError::Retry(format!("acknowledgement: {e}")))?;
        }
        Ok(())
    }
}
