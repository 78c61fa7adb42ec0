//! NATS JetStream drains: one message per record, published and
//! acknowledged by the stream that covers the subject. Each message carries
//! `Nats-Msg-Id` = a 128-bit hash of its line, so a batch sent again after a
//! partial failure is de-duplicated by the stream (within its duplicate
//! window, 2 minutes by default): delivery is effectively once.

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
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(
                async_nats::header::NATS_MESSAGE_ID,
                message_id(line).as_str(),
            );
            match js
                .publish_with_headers(self.subject.clone(), headers, message(line))
                .await
            {
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

/// A stable id for a line: two 64-bit SipHash values (fixed keys) as hex.
fn message_id(line: &[u8]) -> String {
    use std::hash::{Hash, Hasher};
    let half = |salt: u8| {
        let mut h = std::hash::DefaultHasher::new();
        salt.hash(&mut h);
        line.hash(&mut h);
        h.finish()
    };
    format!("{:016x}{:016x}", half(0), half(1))
}

#[cfg(test)]
mod tests {
    #[test]
    fn message_ids_are_stable_and_distinct() {
        let a = super::message_id(b"{\"request_id\":\"a\"}\n");
        assert_eq!(a, super::message_id(b"{\"request_id\":\"a\"}\n"));
        assert_ne!(a, super::message_id(b"{\"request_id\":\"b\"}\n"));
        assert_eq!(a.len(), 32);
    }
}
