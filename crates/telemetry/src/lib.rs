//! Ledge's telemetry: access and edge-function records, log drains,
//! per-site statistics, live tail and operator metrics.
//!
//! # Shape
//!
//! ```text
//!  edge: record_access / record_function ──push──▶ inbox ──(1 ms batches)──▶ dispatcher task
//!        (O(1), never waits; a full inbox           (Vec behind a mutex,       ├─▶ operator metrics (one add per counter per batch)
//!         drops the record, counted)                 bounded; drops counted)   ├─▶ per-site minute buckets ──▶ BucketStore (minute + hour)
//!                                                                              ├─▶ live tail (broadcast)
//!                                                                              └─▶ one buffer of JSON lines per audience ──▶ each sink's own bounded buffer ──▶ sink task
//!                                                                                  (node drains: all records; site drains: that site's)
//! ```
//!
//! * [`Telemetry::record_access`] / [`Telemetry::record_function`] push the
//!   boxed record onto the inbox; when it is full the record is dropped and
//!   counted ([`Telemetry::dropped`]), and its request is counted in the
//!   operator [`Metrics`] there. They never await or block (the inbox lock
//!   is held for a pointer move), and only the push that finds the inbox
//!   empty wakes the dispatcher. (Function records are counted in the
//!   metrics when recorded.)
//! * The dispatcher, once woken, lets records gather for 1 ms, takes the
//!   whole inbox, counts each access record in the batch's metrics tally
//!   (added to the shared atomics once per batch), adds each record to the
//!   open minute [`stats::Bucket`] of its site, sends it to live-tail
//!   subscribers, and writes its JSON line into the batch's buffers: one
//!   for the node drains, one per site with drains. Fields a record shares
//!   with the previous one (above all its [`Answer`], which all records of
//!   a kept answer share) come from a [`LineCache`]. Each buffer
//!   becomes one shared chunk offered to every drain of its audience. Each
//!   drain has its own buffer, bounded in lines, so a slow drain loses its
//!   own lines and nobody else's.
//! * Closed minutes (5 s after they end) are merged into the [`BucketStore`]
//!   at minute and hour resolution; old buckets are swept hourly.
//! * [`Telemetry::shutdown`] stops intake, drains the inbox, writes open
//!   buckets and lets every sink flush (bounded by `shutdown_timeout`);
//!   awaiting [`Background::join`] waits for that.
//!
//! Drain URL syntax: see [`drain`]. Record fields: see [`record`]. Sketch
//! error bounds: see [`sketch`].
//!
//! # Measured cost
//!
//! Criterion, `benches/record.rs`, release build, on the project's 2-core
//! machine (session 8; noisy to ±10 %):
//!
//! | what | time per record |
//! |---|---|
//! | `record_access`, inbox has room | 116–135 ns |
//! | `record_access`, with a stalled drain attached | 217–254 ns |
//! | `record_access`, inbox full (dropped, counted; the record freed) | 206–207 ns |
//! | statistics of one record (`Bucket::add`) | 65–69 ns |
//! | its JSON line, into a batch buffer | 240 ns; 212–223 ns with the [`LineCache`] |
//! | push + dispatcher: statistics only | 537–566 ns |
//! | push + dispatcher: statistics + file drain | 770–850 ns |
//!
//! In a node serving 1 KB files, logging to the default file costs about
//! 2.5k instructions per request (callgrind, session 13) and 1.2–1.6 µs of
//! CPU, 10–15 % of such a request here (`bench/log-cost.sh`,
//! `bench/log-anchor.sh`). About 0.6 µs of it is the kernel appending the
//! ~620-byte line to the page cache, on the drain's thread. nginx's access
//! log with the same fields as JSON cost about five times as much in the
//! same runs (`docs/benchmarks.md`, session 17).
//!
//! # Wiring (edge and CLI)
//!
//! ```no_run
//! # async fn wire() -> Result<(), Box<dyn std::error::Error>> {
//! use ledge_telemetry::{Telemetry, TelemetryConfig, TailFilter, stats::Resolution};
//! let mut config = TelemetryConfig::with_data_dir("/var/lib/ledge");
//! // config.http_client = Some(origin.client.clone());   // the node's policy-checked client
//! // config.connect_check = Some(Arc::new(move |a| policy.check(a).map_err(|e| e.to_string())));
//! let (telemetry, background) = Telemetry::start(config)?;
//! telemetry.set_site_drains("blog", ledge_telemetry::drain::parse_drains(&["https://logs.example/in"])?)?;
//! let mut tail = telemetry.subscribe(TailFilter::site("blog"));
//! let _metrics_text = telemetry.render_metrics();
//! telemetry.shutdown();
//! background.join().await;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod drain;
pub mod metrics;
pub mod record;
mod sink;
pub mod sketch;
pub mod stats;
pub mod tail;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::sync::{broadcast, watch, Notify};
use tokio::task::JoinHandle;

pub use drain::{DrainError, DrainSpec, DrainTarget};
pub use metrics::Metrics;
pub use record::{
    AccessRecord, Answer, CacheStatus, ConsoleLine, ErrorClass, FunctionRecord, LineCache, Outcome,
    Phase, Record,
};
pub use sink::{BatchConfig, ConnectCheck};
pub use stats::{Bucket, BucketStore, MemoryStore, Resolution, StatsReport, StoreError};
pub use tail::{StatusFilter, TailEvent, TailFilter, TailSubscription};

use sink::{SinkContext, SinkHandle};
use stats::Aggregator;

/// How the telemetry of a node is set up.
#[derive(Clone)]
pub struct TelemetryConfig {
    /// Records the queue holds before new ones are dropped.
    pub queue_capacity: usize,
    /// Lines each node drain buffers before its new lines are dropped.
    pub sink_buffer: usize,
    /// Lines each site drain buffers (smaller: there may be many).
    pub site_sink_buffer: usize,
    /// Whether sites may have local drains (file, stdout). Off by default:
    /// drain strings come from tenants, and a tenant must never make the
    /// node write to a path of its choosing. For tests and `ledge dev`.
    pub allow_local_site_drains: bool,
    /// Records a live-tail subscriber may fall behind before it loses some.
    pub tail_capacity: usize,
    /// The node's own drains; they get every record of every site. The
    /// node's default is [`DrainSpec::file`] of `DATA/logs/access.log`
    /// ([`TelemetryConfig::with_data_dir`]).
    pub node_drains: Vec<DrainSpec>,
    /// Where closed statistics buckets go.
    pub store: Arc<dyn BucketStore>,
    /// The client HTTP drains use. Pass the node's origin client, whose
    /// resolver enforces the outbound policy; `None` builds one (for site
    /// drains, with a resolver that applies `connect_check`).
    pub http_client: Option<reqwest::Client>,
    /// The outbound policy, applied to site (tenant) drains: IP-literal
    /// HTTP hosts and resolved NATS/Kafka addresses are checked with it.
    pub connect_check: Option<ConnectCheck>,
    /// Batching and retries of remote drains.
    pub batch: BatchConfig,
    /// Minute buckets older than this are deleted.
    pub minute_retention: Duration,
    /// Hour buckets older than this are deleted.
    pub hour_retention: Duration,
    /// How long a minute stays open after it ends (late records).
    pub close_grace: Duration,
    /// Longest wait for drains to flush at shutdown.
    pub shutdown_timeout: Duration,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 65_536,
            sink_buffer: 16_384,
            site_sink_buffer: 4096,
            allow_local_site_drains: false,
            tail_capacity: 1024,
            node_drains: Vec::new(),
            store: Arc::new(MemoryStore::new()),
            http_client: None,
            connect_check: None,
            batch: BatchConfig::default(),
            minute_retention: Duration::from_secs(48 * 3600),
            hour_retention: Duration::from_secs(90 * 24 * 3600),
            close_grace: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

impl TelemetryConfig {
    /// Defaults plus the default node drain: `DATA/logs/access.log`, rotated
    /// at 100 MiB, 5 files kept.
    pub fn with_data_dir(data: impl AsRef<Path>) -> Self {
        Self {
            node_drains: vec![DrainSpec::file(data.as_ref().join("logs/access.log"))],
            ..Self::default()
        }
    }
}

impl std::fmt::Debug for TelemetryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetryConfig")
            .field("queue_capacity", &self.queue_capacity)
            .field("sink_buffer", &self.sink_buffer)
            .field("node_drains", &self.node_drains)
            .field("batch", &self.batch)
            .finish_non_exhaustive()
    }
}

/// Telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// `start` was called outside a Tokio runtime.
    #[error("telemetry must start inside a Tokio runtime")]
    NoRuntime,
    /// The default HTTP client could not be built.
    #[error("building the HTTP client for log drains: {0}")]
    Http(#[from] reqwest::Error),
}

struct Shared {
    inbox: Inbox,
    metrics: Arc<Metrics>,
    tail: broadcast::Sender<Arc<Record>>,
    agg: Mutex<Aggregator>,
    store: Arc<dyn BucketStore>,
    site_drains: Mutex<HashMap<String, Vec<Arc<SinkHandle>>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    site_ctx: SinkContext,
    allow_local_site_drains: bool,
    rt: tokio::runtime::Handle,
    shutdown: watch::Sender<bool>,
}

/// Never panic on a poisoned lock: the data is counters and handles, still
/// usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The handle the edge, the control API and the CLI use. Cheap to clone.
#[derive(Clone)]
pub struct Telemetry {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

/// The background work of telemetry (dispatcher, drains).
#[derive(Debug)]
pub struct Background {
    task: JoinHandle<()>,
}

impl Background {
    /// Waits until telemetry has shut down and flushed (after
    /// [`Telemetry::shutdown`]).
    pub async fn join(self) {
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "telemetry dispatcher ended abnormally");
        }
    }
}

impl Telemetry {
    /// Starts telemetry on the current Tokio runtime: the dispatcher and the
    /// node drains.
    pub fn start(config: TelemetryConfig) -> Result<(Telemetry, Background), StartError> {
        let rt = tokio::runtime::Handle::try_current().map_err(|_| StartError::NoRuntime)?;
        let builder = || {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(Duration::from_secs(5))
        };
        // The node's own client (its resolver enforces the policy) serves
        // both; without it, node drains get a plain client and site drains
        // one whose resolver applies `connect_check`.
        let (http, site_http) = match (config.http_client.clone(), &config.connect_check) {
            (Some(c), _) => (c.clone(), c),
            (None, None) => {
                let c = builder().build()?;
                (c.clone(), c)
            }
            (None, Some(check)) => (
                builder().build()?,
                builder()
                    .dns_resolver(Arc::new(sink::CheckedResolver(check.clone())))
                    .build()?,
            ),
        };
        let metrics = Arc::new(Metrics::default());
        let (tail, _) = broadcast::channel(config.tail_capacity.max(1));
        let (shutdown, shutdown_rx) = watch::channel(false);
        let node_ctx = SinkContext {
            metrics: metrics.clone(),
            batch: config.batch.clone(),
            http,
            check: None,
            buffer: config.sink_buffer,
        };
        let site_ctx = SinkContext {
            check: config.connect_check.clone(),
            http: site_http,
            buffer: config.site_sink_buffer,
            ..node_ctx.clone()
        };
        let mut tasks = Vec::new();
        let mut node_sinks = Vec::new();
        for spec in &config.node_drains {
            let (h, t) = sink::spawn(spec.clone(), &node_ctx, &rt);
            node_sinks.push(h);
            tasks.push(t);
        }
        let shared = Arc::new(Shared {
            inbox: Inbox::new(config.queue_capacity),
            metrics,
            tail,
            agg: Mutex::new(Aggregator::default()),
            store: config.store.clone(),
            site_drains: Mutex::new(HashMap::new()),
            tasks: Mutex::new(tasks),
            site_ctx,
            allow_local_site_drains: config.allow_local_site_drains,
            rt: rt.clone(),
            shutdown,
        });
        let task = rt.spawn(dispatch(
            shared.clone(),
            node_sinks,
            shutdown_rx,
            DispatchTimes {
                grace: config.close_grace,
                minute_retention: config.minute_retention,
                hour_retention: config.hour_retention,
                shutdown_timeout: config.shutdown_timeout,
            },
        ));
        Ok((Telemetry { shared }, Background { task }))
    }

    /// Records one request. Counts it in the metrics and queues it without
    /// waiting; if the queue is full the record is dropped and counted.
    pub fn record_access(&self, record: impl Into<Box<AccessRecord>>) {
        // Counted in the metrics by the dispatcher, or here if dropped.
        if let Some(Record::Access(r)) = self.enqueue(Record::Access(record.into())) {
            self.shared.metrics.observe_access(&r);
        }
    }

    /// Records one edge function invocation (same rules as
    /// [`Telemetry::record_access`]).
    pub fn record_function(&self, record: impl Into<Box<FunctionRecord>>) {
        let record = record.into();
        self.shared.metrics.observe_function(&record);
        // Counted above either way; a drop is counted in `enqueue`.
        let _ = self.enqueue(Record::Function(record));
    }

    /// Queues a record; gives it back if it was dropped (counted).
    fn enqueue(&self, r: Record) -> Option<Record> {
        let refused = self.shared.inbox.push(r);
        if refused.is_some() {
            self.shared.metrics.queue_dropped.fetch_add(1, Relaxed);
        }
        refused
    }

    /// Records waiting in the queue now.
    pub fn queued(&self) -> usize {
        lock(&self.shared.inbox.records).len()
    }

    /// Records dropped because the queue was full (or telemetry had shut
    /// down).
    pub fn dropped(&self) -> u64 {
        self.shared.metrics.queue_dropped()
    }

    /// The operator metrics (also for upstream and connection counts).
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// The metrics in the Prometheus text format.
    pub fn render_metrics(&self) -> String {
        let mut text = self.shared.metrics.render();
        text.push_str(&format!(
            "# HELP ledge_telemetry_queue_length Records waiting for the telemetry dispatcher.\n# TYPE ledge_telemetry_queue_length gauge\nledge_telemetry_queue_length {}\n",
            self.queued()
        ));
        text
    }

    /// Follows the records that pass `filter` from now on.
    pub fn subscribe(&self, filter: TailFilter) -> TailSubscription {
        TailSubscription {
            rx: self.shared.tail.subscribe(),
            filter,
            metrics: self.shared.metrics.clone(),
            shutdown: self.shared.shutdown.subscribe(),
        }
    }

    /// Replaces the drains of a site (call when its `log_drains` setting
    /// changes; an empty list removes them). Drains that stay the same keep
    /// running with their buffers and connections; removed ones flush what
    /// they hold and stop. Local drains (file, stdout) are refused unless
    /// [`TelemetryConfig::allow_local_site_drains`]; then nothing changes.
    pub fn set_site_drains(&self, site: &str, drains: Vec<DrainSpec>) -> Result<(), DrainError> {
        if !self.shared.allow_local_site_drains {
            if let Some(local) = drains.iter().find(|d| !d.is_remote()) {
                return Err(DrainError {
                    input: local.to_string(),
                    why: "sites may only drain to https, nats or kafka".into(),
                });
            }
        }
        if *self.shared.shutdown.borrow() {
            return Ok(());
        }
        let mut map = lock(&self.shared.site_drains);
        let old = map.remove(site).unwrap_or_default();
        let mut next = Vec::with_capacity(drains.len());
        let mut tasks = lock(&self.shared.tasks);
        tasks.retain(|t| !t.is_finished());
        for spec in drains {
            if next.iter().any(|h: &Arc<SinkHandle>| h.spec == spec) {
                continue;
            }
            if let Some(h) = old.iter().find(|h| h.spec == spec) {
                next.push(h.clone());
            } else {
                let (h, t) = sink::spawn(spec, &self.shared.site_ctx, &self.shared.rt);
                next.push(Arc::new(h));
                tasks.push(t);
            }
        }
        if !next.is_empty() {
            map.insert(site.to_owned(), next);
        }
        Ok(())
    }

    /// The drains a site has now.
    pub fn site_drains(&self, site: &str) -> Vec<DrainSpec> {
        lock(&self.shared.site_drains)
            .get(site)
            .map(|v| v.iter().map(|h| h.spec.clone()).collect())
            .unwrap_or_default()
    }

    /// A site's statistics for buckets starting in `since..until`, at
    /// `resolution`, including the minutes not yet written to the store.
    pub async fn stats(
        &self,
        site: &str,
        since: SystemTime,
        until: SystemTime,
        resolution: Resolution,
    ) -> Result<StatsReport, StoreError> {
        let (since, until) = (stats::unix_secs(since), stats::unix_secs(until));
        let stored = self
            .shared
            .store
            .get(site, resolution, resolution.align(since), until)
            .await?;
        let open = lock(&self.shared.agg).open_for(site);
        Ok(stats::report(site, resolution, since, until, stored, open))
    }

    /// Stops intake and starts the flush; await [`Background::join`] for
    /// its end. Records offered afterwards are dropped and counted.
    pub fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
    }
}

#[derive(Clone, Copy)]
struct DispatchTimes {
    grace: Duration,
    minute_retention: Duration,
    hour_retention: Duration,
    shutdown_timeout: Duration,
}

/// The queue between the edge and the dispatcher: a vector behind a mutex,
/// taken whole by the dispatcher. A push is a lock, a move of one pointer
/// and an unlock; only the push that finds the queue empty wakes the
/// dispatcher, which then waits [`GATHER`] for more before taking them, so
/// under load it runs about every [`GATHER`] on a batch, not once per
/// request (each wake-up and poll of a task cost more than the record).
struct Inbox {
    records: Mutex<Vec<Record>>,
    capacity: usize,
    wake: Notify,
    closed: std::sync::atomic::AtomicBool,
}

/// How long the dispatcher lets records gather after the first one.
const GATHER: Duration = Duration::from_millis(1);

impl Inbox {
    fn new(capacity: usize) -> Self {
        Self {
            records: Mutex::new(Vec::new()),
            capacity: capacity.max(1),
            wake: Notify::new(),
            closed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Queues a record; gives it back when the queue is full or closed.
    fn push(&self, r: Record) -> Option<Record> {
        let mut q = lock(&self.records);
        if q.len() >= self.capacity || self.closed.load(Relaxed) {
            return Some(r);
        }
        q.push(r);
        let first = q.len() == 1;
        drop(q);
        if first {
            self.wake.notify_one();
        }
        None
    }

    /// Swaps the queued records into `into` (which must be empty), keeping
    /// both vectors' allocations in use.
    fn take(&self, into: &mut Vec<Record>) {
        std::mem::swap(&mut *lock(&self.records), into);
    }

    /// Refuses records from now on.
    fn close(&self) {
        self.closed.store(true, Relaxed);
    }
}

async fn dispatch(
    shared: Arc<Shared>,
    node_sinks: Vec<SinkHandle>,
    mut shutdown: watch::Receiver<bool>,
    times: DispatchTimes,
) {
    let mut buf = Vec::new();
    let mut lines = LineBuffers::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut swept_hour = 0;
    loop {
        tokio::select! {
            () = shared.inbox.wake.notified() => {
                tokio::time::sleep(GATHER).await;
                shared.inbox.take(&mut buf);
                process(&shared, &node_sinks, &mut buf, &mut lines);
            }
            _ = tick.tick() => {
                let now = stats::unix_secs(SystemTime::now());
                close_minutes(&shared, Some(now.saturating_sub(times.grace.as_secs()))).await;
                if now / 3600 != swept_hour {
                    swept_hour = now / 3600;
                    sweep(&shared, now, &times).await;
                }
            }
            _ = shutdown.changed() => break,
        }
    }
    // Intake is closed: records already queued are still processed.
    shared.inbox.close();
    shared.inbox.take(&mut buf);
    process(&shared, &node_sinks, &mut buf, &mut lines);
    close_minutes(&shared, None).await;
    drop(node_sinks);
    lock(&shared.site_drains).clear();
    let tasks: Vec<JoinHandle<()>> = std::mem::take(&mut *lock(&shared.tasks));
    let deadline = tokio::time::Instant::now() + times.shutdown_timeout;
    for t in tasks {
        let abort = t.abort_handle();
        if tokio::time::timeout_at(deadline, t).await.is_err() {
            abort.abort();
            tracing::warn!("a log drain did not flush before the shutdown timeout");
        }
    }
}

/// JSON lines of one batch, one buffer per audience: all records for node
/// drains (with and without PII), and each site's records for its drains.
#[derive(Default)]
struct LineBuffers {
    full: Lines,
    redacted: Lines,
    sites: HashMap<String, (Lines, Lines)>,
    cache: LineCache,
    /// The batch's access metrics, added to the shared ones at its end.
    tally: metrics::AccessTally,
}

/// Takes a finished buffer as a chunk for sinks, leaving `l` empty with a
/// fresh allocation of about the same size for the next batch.
fn seal(l: &mut Lines) -> Option<sink::Chunk> {
    if l.count == 0 {
        return None;
    }
    let next = Vec::with_capacity(l.bytes.len() + l.bytes.len() / 4);
    let bytes = std::mem::replace(&mut l.bytes, next);
    Some(sink::Chunk {
        bytes: Bytes::from(bytes),
        lines: std::mem::take(&mut l.count),
    })
}

/// Complete JSON lines being gathered for sinks.
#[derive(Default)]
struct Lines {
    bytes: Vec<u8>,
    count: usize,
}

impl Lines {
    /// Appends `record`'s line; returns where it starts.
    fn write(&mut self, record: &Record, exclude_pii: bool, cache: &mut LineCache) -> usize {
        let at = self.bytes.len();
        record.write_json_line_cached(&mut self.bytes, exclude_pii, cache);
        self.count += 1;
        at
    }
    /// Appends a line already written elsewhere.
    fn copy(&mut self, line: &[u8]) {
        self.bytes.extend_from_slice(line);
        self.count += 1;
    }
}

fn process(
    shared: &Shared,
    node_sinks: &[SinkHandle],
    buf: &mut Vec<Record>,
    out: &mut LineBuffers,
) {
    if buf.is_empty() {
        return;
    }
    let n = buf.len() as u64;
    let site_drains = lock(&shared.site_drains);
    let mut agg = lock(&shared.agg);
    let tail = shared.tail.receiver_count() > 0;
    let node_full = node_sinks.iter().any(|s| !s.spec.exclude_pii);
    let node_redacted = node_sinks.iter().any(|s| s.spec.exclude_pii);
    for record in buf.drain(..) {
        agg.add(&record);
        if let Record::Access(a) = &record {
            out.tally.observe(a);
        }
        let cache = &mut out.cache;
        let full = node_full.then(|| (out.full.write(&record, false, cache), out.full.bytes.len()));
        let redacted = node_redacted.then(|| {
            (
                out.redacted.write(&record, true, cache),
                out.redacted.bytes.len(),
            )
        });
        if let Some(drains) = site_drains.get(record.site()) {
            let (site_full, site_redacted) = match out.sites.get_mut(record.site()) {
                Some(s) => s,
                None => out.sites.entry(record.site().to_owned()).or_default(),
            };
            // A site's drains get the same line the node's drains got,
            // copied, or written when no node drain needed that form.
            if drains.iter().any(|d| !d.spec.exclude_pii) {
                match full {
                    Some((a, b)) => site_full.copy(&out.full.bytes[a..b]),
                    None => {
                        site_full.write(&record, false, &mut out.cache);
                    }
                }
            }
            if drains.iter().any(|d| d.spec.exclude_pii) {
                match redacted {
                    Some((a, b)) => site_redacted.copy(&out.redacted.bytes[a..b]),
                    None => {
                        site_redacted.write(&record, true, &mut out.cache);
                    }
                }
            }
        }
        if tail {
            // An error only means nobody is listening any more.
            let _ = shared.tail.send(Arc::new(record));
        }
    }
    // Before the statistics are released: whoever sees a record in them
    // also sees it in the metrics.
    shared.metrics.add_tally(&mut out.tally);
    drop(agg);
    let full = seal(&mut out.full);
    let redacted = seal(&mut out.redacted);
    for sink in node_sinks {
        let chunk = if sink.spec.exclude_pii {
            &redacted
        } else {
            &full
        };
        if let Some(c) = chunk {
            sink.offer(c, &shared.metrics);
        }
    }
    for (site, (f, r)) in out.sites.iter_mut() {
        let (f, r) = (seal(f), seal(r));
        for sink in site_drains.get(site).into_iter().flatten() {
            let chunk = if sink.spec.exclude_pii { &r } else { &f };
            if let Some(c) = chunk {
                sink.offer(c, &shared.metrics);
            }
        }
    }
    // Sites whose drains are gone keep no buffers.
    out.sites.retain(|site, _| site_drains.contains_key(site));
    shared.metrics.processed.fetch_add(n, Relaxed);
}

/// Writes minutes that ended before `cutoff` (all of them with `None`).
async fn close_minutes(shared: &Shared, cutoff: Option<u64>) {
    let closed = {
        let mut agg = lock(&shared.agg);
        match cutoff {
            Some(c) => agg.take_closed(c),
            None => agg.take_all(),
        }
    };
    for b in closed {
        if let Err(e) = stats::persist(&*shared.store, &b).await {
            tracing::warn!(site = %b.site, start = b.start, error = %e, "statistics bucket lost");
        }
    }
}

async fn sweep(shared: &Shared, now: u64, times: &DispatchTimes) {
    for (res, keep) in [
        (Resolution::Minute, times.minute_retention),
        (Resolution::Hour, times.hour_retention),
    ] {
        let cutoff = now.saturating_sub(keep.as_secs());
        if let Err(e) = shared.store.delete_before(res, cutoff).await {
            tracing::warn!(error = %e, "statistics retention sweep failed");
        }
    }
}
