//! NATS JetStream drains, published and acknowledged by the stream that
//! covers the subject. By default a message holds several records as JSON
//! lines (each ending in `\n`, up to [`MESSAGE_BYTES`] per message, a line
//! larger than that alone), so a busy node publishes a few hundred messages
//! a second, not one per request (a publish and its acknowledgement cost
//! about as much as serving a small file). With `per_record`, each record
//! is its own message, without the newline.
//!
//! Each message carries a `Nats-Msg-Id` made of a random number drawn when
//! the drain starts, the batch's sequence number and the message's place in
//! the batch. A batch sent again after a partial failure is cut into the
//! same messages with the same ids, so the stream drops the repeats (within
//! its duplicate window, 2 minutes by default): delivery is effectively
//! once. Naming a message costs a few instructions, where hashing its
//! payload cost about half an instruction per byte.

use std::time::Duration;

use bytes::Bytes;

use super::{allowed_addrs, message, Batch, BatchWriter, Chunk, ConnectCheck, SinkError};

/// Most bytes of JSON lines in one message (well under the servers'
/// default `max_payload` of 1 MiB).
pub(crate) const MESSAGE_BYTES: usize = 64 * 1024;

pub(crate) struct NatsWriter {
    server: String,
    subject: String,
    per_record: bool,
    check: Option<ConnectCheck>,
    js: Option<async_nats::jetstream::Context>,
    /// Drawn once: tells this drain's messages from those of a restarted
    /// node or of another node publishing to the same stream.
    nonce: u64,
}

impl NatsWriter {
    pub(crate) fn new(
        server: String,
        subject: String,
        per_record: bool,
        check: Option<ConnectCheck>,
    ) -> Self {
        Self {
            server,
            subject,
            per_record,
            check,
            js: None,
            nonce: rand::random(),
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
    async fn write(&mut self, batch: &Batch) -> Result<(), SinkError> {
        let js = self.connect().await?;
        let messages = if self.per_record {
            batch.lines().map(|l| message(&l)).collect()
        } else {
            messages(&batch.chunks, MESSAGE_BYTES)
        };
        let mut acks = Vec::with_capacity(messages.len());
        for (i, payload) in messages.into_iter().enumerate() {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(
                async_nats::header::NATS_MESSAGE_ID,
                message_id(self.nonce, batch.seq, i).as_str(),
            );
            match js
                .publish_with_headers(self.subject.clone(), headers, payload)
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

/// Where to cut `bytes` (longer than `limit`) so that the front is the
/// most whole lines that fit in `limit`, or the first line alone when even
/// that is longer; `None` when `bytes` is one line. The search runs back
/// from the limit, so it reads about one line, not the whole front.
fn cut_within(bytes: &[u8], limit: usize) -> Option<usize> {
    let window = bytes.get(..limit)?;
    let cut = match memchr::memrchr(b'\n', window) {
        Some(i) => i + 1,
        None => memchr::memchr(b'\n', bytes)? + 1,
    };
    (cut < bytes.len()).then_some(cut)
}

/// The chunks' lines packed in order into payloads of at most `limit`
/// bytes, cut only between lines (a longer line is a payload of its own).
/// A chunk that fits is used as it is, without a copy; small neighbours are
/// joined. The same chunks always give the same payloads.
fn messages(chunks: &[Chunk], limit: usize) -> Vec<Bytes> {
    // Pieces of at most `limit` bytes (or a single long line), in order.
    let mut pieces = Vec::new();
    for c in chunks {
        let mut rest = c.bytes.clone();
        while rest.len() > limit {
            match cut_within(&rest, limit) {
                Some(cut) => {
                    pieces.push(rest.split_to(cut));
                }
                None => break,
            }
        }
        if !rest.is_empty() {
            pieces.push(rest);
        }
    }
    let mut out = Vec::new();
    let mut group: Vec<Bytes> = Vec::new();
    let mut size = 0;
    let flush = |group: &mut Vec<Bytes>, out: &mut Vec<Bytes>| match group.len() {
        0 => {}
        1 => out.extend(group.pop()),
        _ => {
            out.push(Bytes::from(group.concat()));
            group.clear();
        }
    };
    for p in pieces {
        if size + p.len() > limit {
            flush(&mut group, &mut out);
            size = 0;
        }
        size += p.len();
        group.push(p);
    }
    flush(&mut group, &mut out);
    out
}

/// The id of message `index` of batch `seq` of the drain named `nonce`.
fn message_id(nonce: u64, seq: u64, index: usize) -> String {
    format!("{nonce:016x}-{seq:x}-{index:x}")
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    fn chunk(lines: &[Bytes]) -> super::Chunk {
        super::Chunk {
            bytes: Bytes::from(lines.concat()),
            lines: lines.len(),
        }
    }

    #[test]
    fn lines_are_packed_into_bounded_messages_in_order() {
        let lines: Vec<Bytes> = (0..10)
            .map(|i| Bytes::from(format!("{{\"n\":{i}}}\n")))
            .collect(); // 8 bytes each
        let all = lines.concat();
        // One chunk of ten lines, cut at line boundaries into 16-byte parts.
        let m = super::messages(&[chunk(&lines)], 20);
        assert_eq!(m.len(), 5);
        assert!(m.iter().all(|p| p.len() == 16));
        assert_eq!(m.concat(), all);
        // Chunks that fit together are joined; one that fits alone is kept.
        let parts = [chunk(&lines[..1]), chunk(&lines[1..2]), chunk(&lines[2..4])];
        let m = super::messages(&parts, 20);
        assert_eq!(m, vec![lines[..2].concat(), lines[2..4].concat()]);
        assert_eq!(
            super::messages(&[chunk(&lines)], 1 << 16),
            vec![all.clone()]
        );
        // A line over the limit goes alone; the others around it are cut
        // between lines.
        let big = Bytes::from(format!("{}\n", "x".repeat(40)));
        let mixed = [lines[0].clone(), big.clone(), lines[1].clone()];
        let m = super::messages(&[chunk(&mixed)], 20);
        assert_eq!(m, vec![lines[0].clone(), big, lines[1].clone()]);
        // The same chunks give the same payloads (and so the same ids).
        assert_eq!(
            super::messages(&[chunk(&lines)], 20),
            super::messages(&[chunk(&lines)], 20)
        );
        assert!(super::messages(&[], 20).is_empty());
    }

    /// Cutting back from the limit gives the payloads that taking whole
    /// lines from the front would, for lines of every length around it.
    #[test]
    fn cuts_match_taking_lines_from_the_front() {
        let mut seed = 0x853c_49e6_748f_ea9bu64;
        for _ in 0..300 {
            let lines: Vec<Bytes> = (0..(seed % 40) as usize)
                .map(|i| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    Bytes::from(format!("{}\n", "x".repeat((seed % 50) as usize + i % 3)))
                })
                .collect();
            let limit = (seed % 60) as usize + 1;
            let c = chunk(&lines);
            // The reference: whole lines from the front, as a batch cuts.
            let mut want = Vec::new();
            let mut rest = c.clone();
            while rest.bytes.len() > limit {
                match rest.split_front(usize::MAX, limit, true) {
                    Some((front, back)) => {
                        want.push(front.bytes);
                        rest = back;
                    }
                    None => break,
                }
            }
            if !rest.bytes.is_empty() {
                want.push(rest.bytes);
            }
            let mut got = Vec::new();
            let mut rest = c.bytes.clone();
            while rest.len() > limit {
                match super::cut_within(&rest, limit) {
                    Some(cut) => got.push(rest.split_to(cut)),
                    None => break,
                }
            }
            if !rest.is_empty() {
                got.push(rest);
            }
            assert_eq!(got, want, "limit {limit}");
        }
    }

    #[test]
    fn message_ids_are_stable_and_distinct() {
        let a = super::message_id(7, 3, 1);
        assert_eq!(a, super::message_id(7, 3, 1));
        assert_eq!(a, "0000000000000007-3-1");
        assert_ne!(a, super::message_id(7, 3, 2));
        assert_ne!(a, super::message_id(7, 4, 1));
        assert_ne!(a, super::message_id(8, 3, 1));
    }
}
