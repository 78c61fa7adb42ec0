//! Sinks: each drain runs as its own task behind its own bounded buffer of
//! serialized lines, so a slow or dead drain only ever loses its own lines
//! (counted in `ledge_telemetry_sink_dropped_total`), never delays the
//! dispatcher, other drains, or requests.
//!
//! Local sinks (file, stdout) write from a blocking thread. Remote sinks
//! (HTTP, NATS, Kafka) collect a batch (up to `max_records` lines or
//! `max_bytes`, or whatever arrived within `linger` of the first line),
//! deliver it, and retry a failed batch with exponential backoff and jitter
//! up to `max_attempts` times before dropping it. Delivery is at least once:
//! a batch that failed half way is sent again whole (NATS messages carry a
//! message id, so the stream drops those duplicates).

mod file;
mod http;
mod kafka;
mod nats;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::drain::{DrainSpec, DrainTarget};
use crate::metrics::Metrics;

pub(crate) use file::RotatingFile;

/// Decides whether a drain may connect to an address (the node's outbound
/// policy for tenant-configured drains). Returns why not.
pub type ConnectCheck = Arc<dyn Fn(SocketAddr) -> Result<(), String> + Send + Sync>;

/// Batching and retry limits of remote sinks.
#[derive(Debug, Clone)]
pub struct BatchConfig {
    /// Most lines in one batch.
    pub max_records: usize,
    /// Most bytes (uncompressed) in one batch.
    pub max_bytes: usize,
    /// How long a batch waits for more lines after its first.
    pub linger: Duration,
    /// Attempts per batch before it is dropped.
    pub max_attempts: u32,
    /// Wait after the first failure (doubles each time, ± 50 % jitter).
    pub backoff_initial: Duration,
    /// Longest wait between attempts.
    pub backoff_max: Duration,
    /// Time allowed for one attempt (connect + send + acknowledgement).
    pub attempt_timeout: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_records: 500,
            max_bytes: 1024 * 1024,
            linger: Duration::from_secs(1),
            max_attempts: 8,
            backoff_initial: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(15),
        }
    }
}

/// Why a batch was not delivered.
#[derive(Debug)]
pub(crate) enum SinkError {
    /// Worth another attempt (network, 5xx, 429, broker unavailable).
    Retry(String),
    /// Will not succeed as is (4xx, refused by policy); the batch is dropped.
    Permanent(String),
}

/// What a running sink needs from the node.
#[derive(Clone)]
pub(crate) struct SinkContext {
    pub metrics: Arc<Metrics>,
    pub batch: BatchConfig,
    pub http: reqwest::Client,
    /// Applied to tenant drains only.
    pub check: Option<ConnectCheck>,
    pub buffer: usize,
}

/// Complete JSON lines (each ending in `\n`) handed to a sink at once: the
/// dispatcher writes a batch into one buffer and every sink that wants it
/// shares that buffer.
#[derive(Debug, Clone)]
pub(crate) struct Chunk {
    pub bytes: Bytes,
    pub lines: usize,
}

impl Chunk {
    /// The lines, each with its `\n` (a last line without one too).
    pub fn lines(&self) -> impl Iterator<Item = Bytes> + '_ {
        let b = &self.bytes;
        let mut at = 0;
        let mut ends = memchr::memchr_iter(b'\n', b);
        std::iter::from_fn(move || {
            let end = match ends.next() {
                Some(i) => i + 1,
                None if at < b.len() => b.len(),
                None => return None,
            };
            let line = b.slice(at..end);
            at = end;
            Some(line)
        })
    }

    /// Splits off the longest run of whole lines at the front with at most
    /// `max_lines` lines and `max_bytes` bytes (at least one line, however
    /// long, when `at_least_one`); returns it and the rest, or `None` when
    /// nothing may be taken.
    fn split_front(
        &self,
        max_lines: usize,
        max_bytes: usize,
        at_least_one: bool,
    ) -> Option<(Chunk, Chunk)> {
        let mut cut = 0;
        let mut lines = 0;
        for end in memchr::memchr_iter(b'\n', &self.bytes).map(|i| i + 1) {
            if lines == max_lines || (end > max_bytes && !(at_least_one && lines == 0)) {
                break;
            }
            cut = end;
            lines += 1;
        }
        if lines == 0 {
            return None;
        }
        Some((
            Chunk {
                bytes: self.bytes.slice(..cut),
                lines,
            },
            Chunk {
                bytes: self.bytes.slice(cut..),
                lines: self.lines.saturating_sub(lines),
            },
        ))
    }
}

/// Lines a remote sink delivers at once: whole chunks as the dispatcher
/// made them (split only where a chunk crosses the batch's limits).
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub chunks: Vec<Chunk>,
    pub lines: usize,
    pub bytes: usize,
    /// This sink's count of batches before this one: the same on every
    /// attempt to deliver the batch, so a sink can name what it sends and
    /// let the receiver drop a repeat (NATS message ids).
    pub seq: u64,
}

impl Batch {
    /// Every line, each with its `\n`.
    pub fn lines(&self) -> impl Iterator<Item = Bytes> + '_ {
        self.chunks.iter().flat_map(Chunk::lines)
    }

    fn is_empty(&self) -> bool {
        self.lines == 0
    }

    fn clear(&mut self) {
        self.chunks.clear();
        self.lines = 0;
        self.bytes = 0;
    }

    /// Adds as much of `chunk` as the limits allow; returns the rest.
    fn add(&mut self, chunk: Chunk, cfg: &BatchConfig) -> Option<Chunk> {
        let max_lines = cfg.max_records.max(1).saturating_sub(self.lines);
        let max_bytes = cfg.max_bytes.saturating_sub(self.bytes);
        let (take, rest) = if chunk.lines <= max_lines && chunk.bytes.len() <= max_bytes {
            (chunk, None)
        } else {
            match chunk.split_front(max_lines, max_bytes, self.is_empty()) {
                Some((take, rest)) => (take, (rest.lines > 0).then_some(rest)),
                None => return Some(chunk),
            }
        };
        self.lines += take.lines;
        self.bytes += take.bytes.len();
        self.chunks.push(take);
        rest
    }

    fn full(&self, cfg: &BatchConfig) -> bool {
        self.lines >= cfg.max_records.max(1) || self.bytes >= cfg.max_bytes
    }
}

/// The dispatcher's side of a running sink.
#[derive(Debug)]
pub(crate) struct SinkHandle {
    pub spec: DrainSpec,
    tx: mpsc::UnboundedSender<Chunk>,
    /// Lines sent and not yet taken by the sink; bounded by `limit`.
    pending: Arc<AtomicUsize>,
    limit: usize,
}

impl SinkHandle {
    /// Offers lines; drops (and counts) them all if the sink's buffer has
    /// no room for them.
    pub fn offer(&self, chunk: &Chunk, metrics: &Metrics) {
        let before = self.pending.fetch_add(chunk.lines, Relaxed);
        if before + chunk.lines > self.limit || self.tx.send(chunk.clone()).is_err() {
            self.pending.fetch_sub(chunk.lines, Relaxed);
            metrics.sink_dropped.fetch_add(chunk.lines as u64, Relaxed);
        }
    }
}

/// The sink's side of its buffer.
pub(crate) struct Intake {
    rx: mpsc::UnboundedReceiver<Chunk>,
    pending: Arc<AtomicUsize>,
}

impl Intake {
    fn taken(&self, c: &Chunk) {
        self.pending.fetch_sub(c.lines, Relaxed);
    }
    /// The next chunk; `None` once the handle is gone and all is taken.
    pub async fn recv(&mut self) -> Option<Chunk> {
        let c = self.rx.recv().await?;
        self.taken(&c);
        Some(c)
    }
    /// A chunk if one is waiting; `Err(true)` once the handle is gone and
    /// all is taken.
    pub fn try_recv(&mut self) -> Result<Chunk, bool> {
        match self.rx.try_recv() {
            Ok(c) => {
                self.taken(&c);
                Ok(c)
            }
            Err(mpsc::error::TryRecvError::Empty) => Err(false),
            Err(mpsc::error::TryRecvError::Disconnected) => Err(true),
        }
    }
}

/// Starts a sink; it runs until its handle is dropped and its buffer is
/// drained.
pub(crate) fn spawn(
    spec: DrainSpec,
    ctx: &SinkContext,
    rt: &tokio::runtime::Handle,
) -> (SinkHandle, JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let pending = Arc::new(AtomicUsize::new(0));
    let rx = Intake {
        rx,
        pending: pending.clone(),
    };
    let metrics = ctx.metrics.clone();
    let name = spec.to_string();
    let task = match &spec.target {
        DrainTarget::File {
            path,
            max_bytes,
            keep,
        } => {
            let target = RotatingFile::new(path.clone(), *max_bytes, *keep);
            rt.spawn_blocking(move || file::run_blocking(rx, target, metrics, name))
        }
        DrainTarget::Stdout => {
            rt.spawn_blocking(move || file::run_blocking(rx, file::Stdout, metrics, name))
        }
        DrainTarget::Http { url, format } => {
            let w =
                http::HttpWriter::new(ctx.http.clone(), url.clone(), *format, ctx.check.clone());
            rt.spawn(run_batched(rx, w, ctx.batch.clone(), metrics, name))
        }
        DrainTarget::Nats {
            server,
            subject,
            per_record,
        } => {
            let w = nats::NatsWriter::new(
                server.clone(),
                subject.clone(),
                *per_record,
                ctx.check.clone(),
            );
            rt.spawn(run_batched(rx, w, ctx.batch.clone(), metrics, name))
        }
        DrainTarget::Kafka { brokers, topic } => {
            let w = kafka::KafkaWriter::new(brokers.clone(), topic.clone(), ctx.check.clone());
            rt.spawn(run_batched(rx, w, ctx.batch.clone(), metrics, name))
        }
    };
    (
        SinkHandle {
            spec,
            tx,
            pending,
            limit: ctx.buffer.max(1),
        },
        task,
    )
}

/// A remote sink's delivery of one batch.
pub(crate) trait BatchWriter: Send + 'static {
    fn write<'a>(
        &'a mut self,
        batch: &'a Batch,
    ) -> impl Future<Output = Result<(), SinkError>> + Send + 'a;
}

async fn run_batched<W: BatchWriter>(
    mut rx: Intake,
    mut w: W,
    cfg: BatchConfig,
    metrics: Arc<Metrics>,
    name: String,
) {
    let mut batch = Batch::default();
    let mut carry = None;
    loop {
        let closed = fill(&mut rx, &mut carry, &mut batch, &cfg).await;
        if !batch.is_empty() {
            deliver(&mut w, &batch, &cfg, &metrics, &name).await;
            batch.clear();
            batch.seq += 1;
        }
        if closed && carry.is_none() {
            break;
        }
    }
}

/// Collects one batch: up to `max_records` lines or `max_bytes`, or what
/// arrived within `linger` of the first line. What is left of a chunk that
/// crossed the limits waits in `carry` for the next batch. Returns whether
/// the intake is closed (flush and stop).
async fn fill(
    rx: &mut Intake,
    carry: &mut Option<Chunk>,
    batch: &mut Batch,
    cfg: &BatchConfig,
) -> bool {
    let first = match carry.take() {
        Some(c) => c,
        None => match rx.recv().await {
            Some(c) => c,
            None => return true,
        },
    };
    let deadline = tokio::time::Instant::now() + cfg.linger;
    let mut next = Some(first);
    loop {
        let chunk = match next.take() {
            Some(c) => c,
            None => match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(c)) => c,
                Ok(None) => return true,
                Err(_) => return false,
            },
        };
        *carry = batch.add(chunk, cfg);
        if batch.full(cfg) || carry.is_some() {
            return false;
        }
    }
}

async fn deliver<W: BatchWriter>(
    w: &mut W,
    batch: &Batch,
    cfg: &BatchConfig,
    metrics: &Metrics,
    name: &str,
) {
    let mut delay = cfg.backoff_initial;
    let attempts = cfg.max_attempts.max(1);
    for attempt in 1..=attempts {
        let result = match tokio::time::timeout(cfg.attempt_timeout, w.write(batch)).await {
            Ok(r) => r,
            Err(_) => Err(SinkError::Retry("timed out".into())),
        };
        match result {
            Ok(()) => {
                metrics.sink_written.fetch_add(batch.lines as u64, Relaxed);
                return;
            }
            Err(SinkError::Permanent(why)) => {
                metrics.sink_failed_batches.fetch_add(1, Relaxed);
                tracing::warn!(drain = %redact(name), %why, lines = batch.lines, "log drain refused a batch; dropped");
                break;
            }
            Err(SinkError::Retry(why)) => {
                metrics.sink_failed_batches.fetch_add(1, Relaxed);
                if attempt == attempts {
                    tracing::warn!(drain = %redact(name), %why, attempts, lines = batch.lines, "log drain failed; batch dropped");
                    break;
                }
                tracing::debug!(drain = %redact(name), %why, attempt, "log drain failed; retrying");
                tokio::time::sleep(jitter(delay)).await;
                delay = (delay * 2).min(cfg.backoff_max);
            }
        }
    }
    metrics.sink_dropped.fetch_add(batch.lines as u64, Relaxed);
}

/// `d` scaled by a factor in [0.5, 1.5), from the clock's low bits (enough
/// to keep many nodes from retrying in step).
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    let f = 0.5 + (nanos % 1000) as f64 / 1000.0;
    d.mul_f64(f)
}

/// A drain URL without userinfo or query (they may hold secrets), for logs.
fn redact(name: &str) -> String {
    match url::Url::parse(name) {
        Ok(mut u) if u.scheme().starts_with("http") => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        _ => name.to_owned(),
    }
}

/// Resolves `host:port` and returns the addresses the check allows; an
/// error names the refusal.
pub(crate) async fn allowed_addrs(
    host_port: &str,
    check: Option<&ConnectCheck>,
) -> Result<Vec<SocketAddr>, SinkError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(host_port)
        .await
        .map_err(|e| SinkError::Retry(format!("resolving {host_port}: {e}")))?
        .collect();
    let Some(check) = check else {
        return Ok(addrs);
    };
    let mut refusal = None;
    let allowed: Vec<SocketAddr> = addrs
        .into_iter()
        .filter(|a| match check(*a) {
            Ok(()) => true,
            Err(e) => {
                refusal = Some(e);
                false
            }
        })
        .collect();
    if allowed.is_empty() {
        return Err(SinkError::Permanent(
            refusal.unwrap_or_else(|| format!("{host_port} did not resolve")),
        ));
    }
    Ok(allowed)
}

/// A resolver that only returns addresses the check allows (for the HTTP
/// client of tenant drains when the node did not pass its own).
pub(crate) struct CheckedResolver(pub ConnectCheck);

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let check = self.0.clone();
        Box::pin(async move {
            let host = format!("{}:0", name.as_str());
            match allowed_addrs(&host, Some(&check)).await {
                Ok(addrs) => Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs),
                Err(SinkError::Retry(e) | SinkError::Permanent(e)) => {
                    Err(Box::new(std::io::Error::other(e))
                        as Box<dyn std::error::Error + Send + Sync>)
                }
            }
        })
    }
}

/// A line without its trailing newline (one message per record).
pub(crate) fn message(line: &Bytes) -> Bytes {
    match line.last() {
        Some(b'\n') => line.slice(..line.len() - 1),
        _ => line.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(n: usize, from: usize) -> Chunk {
        let text: String = (from..from + n).map(|i| format!("{i:03}\n")).collect();
        Chunk {
            bytes: Bytes::from(text),
            lines: n,
        }
    }

    fn text(b: &Batch) -> String {
        b.lines()
            .map(|l| String::from_utf8(l.to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn chunks_yield_their_lines() {
        let c = chunk(3, 0);
        let lines: Vec<Bytes> = c.lines().collect();
        assert_eq!(lines, ["000\n", "001\n", "002\n"]);
        let open = Chunk {
            bytes: Bytes::from_static(b"a\nb"),
            lines: 2,
        };
        assert_eq!(open.lines().collect::<Vec<_>>(), ["a\n", "b"]);
    }

    /// Batches keep whole chunks and split one only where it crosses the
    /// line or byte limit; nothing is lost or reordered.
    #[test]
    fn batches_split_chunks_only_at_their_limits() {
        let cfg = BatchConfig {
            max_records: 5,
            max_bytes: 14, // three 4-byte lines and a bit
            ..BatchConfig::default()
        };
        let mut b = Batch::default();
        assert!(b.add(chunk(2, 0), &cfg).is_none());
        assert!(!b.full(&cfg));
        // 2 more lines fit the line limit but only 1 the byte limit.
        let rest = b.add(chunk(2, 2), &cfg).expect("split");
        assert_eq!((b.lines, b.bytes, b.chunks.len()), (3, 12, 2));
        assert_eq!(text(&b), "000\n001\n002\n");
        assert_eq!((rest.lines, &rest.bytes[..]), (1, &b"003\n"[..]));
        // A full batch takes nothing more.
        let mut b2 = Batch {
            chunks: b.chunks.clone(),
            lines: b.lines,
            bytes: b.bytes,
            seq: 0,
        };
        let back = b2.add(rest.clone(), &cfg).expect("refused");
        assert_eq!(back.lines, 1);
        // The line limit: 7 lines into an empty batch give 5 and 2.
        let cfg = BatchConfig {
            max_records: 5,
            ..BatchConfig::default()
        };
        let mut b = Batch::default();
        let rest = b.add(chunk(7, 0), &cfg).expect("split");
        assert!(b.full(&cfg));
        assert_eq!(text(&b), "000\n001\n002\n003\n004\n");
        assert_eq!(rest.lines().collect::<Vec<_>>(), ["005\n", "006\n"]);
        // A line longer than the byte limit still goes, alone.
        let cfg = BatchConfig {
            max_bytes: 2,
            ..BatchConfig::default()
        };
        let mut b = Batch::default();
        let rest = b.add(chunk(2, 0), &cfg).expect("split");
        assert_eq!((b.lines, rest.lines), (1, 1));
    }
}
