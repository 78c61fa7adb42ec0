//! Operator metrics: a small fixed registry of atomic counters, gauges and
//! histograms, rendered in the Prometheus text exposition format (0.0.4).
//!
//! Everything is a fixed array of atomics indexed by enum labels, so an
//! observation is a handful of relaxed atomic adds: no locks, no allocation,
//! no hashing. Access records are not even that on the request path: the
//! dispatcher counts a batch in an [`AccessTally`] of plain integers and adds
//! it once (nine locked adds per request were about 1 % of a static hit's
//! CPU).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::record::{AccessRecord, CacheStatus, FunctionRecord, Outcome, Phase};

/// Histogram upper bounds, seconds.
const LATENCY_BOUNDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const NBOUNDS: usize = LATENCY_BOUNDS.len();

/// A latency histogram with fixed bounds.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Per-bucket (non-cumulative) counts; the last is `+Inf`.
    buckets: [AtomicU64; NBOUNDS + 1],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

/// The bucket of a duration. Most requests take less than the first bound,
/// which is checked before the search.
fn bucket_of(d: Duration) -> usize {
    if d <= FIRST_BOUND {
        return 0;
    }
    let secs = d.as_secs_f64();
    LATENCY_BOUNDS.partition_point(|&b| b < secs)
}

/// `LATENCY_BOUNDS[0]` as a duration.
const FIRST_BOUND: Duration = Duration::from_micros(500);

/// Whole nanoseconds, saturating (without `as_nanos`' 128-bit product).
fn nanos(d: Duration) -> u64 {
    d.as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(d.subsec_nanos()))
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        self.buckets[bucket_of(d)].fetch_add(1, Relaxed);
        self.sum_nanos.fetch_add(nanos(d), Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    /// Adds a tally's observations.
    fn add(&self, t: &LocalHistogram) {
        for (b, n) in self.buckets.iter().zip(&t.buckets) {
            if *n > 0 {
                b.fetch_add(*n, Relaxed);
            }
        }
        self.sum_nanos.fetch_add(t.sum_nanos, Relaxed);
        self.count.fetch_add(t.count, Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut acc = 0;
        for (i, b) in LATENCY_BOUNDS.iter().enumerate() {
            acc += self.buckets[i].load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {acc}");
        }
        acc += self.buckets[NBOUNDS].load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {acc}");
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let sum = self.sum_nanos.load(Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {acc}");
    }
}

const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];
const CACHE: [CacheStatus; 5] = [
    CacheStatus::Hit,
    CacheStatus::Stale,
    CacheStatus::Miss,
    CacheStatus::Bypass,
    CacheStatus::None,
];

fn class_index(status: u16) -> usize {
    match status {
        100..=599 => (status / 100 - 1) as usize,
        _ => 5,
    }
}

/// A [`Histogram`]'s counts for one thread, in plain integers.
#[derive(Debug, Default)]
struct LocalHistogram {
    buckets: [u64; NBOUNDS + 1],
    sum_nanos: u64,
    count: u64,
}

impl LocalHistogram {
    fn observe(&mut self, d: Duration) {
        self.buckets[bucket_of(d)] += 1;
        self.sum_nanos = self.sum_nanos.saturating_add(nanos(d));
        self.count += 1;
    }
}

/// What [`Metrics::observe_access`] counts, gathered over a batch of
/// records by one thread and added with [`Metrics::add_tally`].
#[derive(Debug, Default)]
pub(crate) struct AccessTally {
    requests: [[u64; 6]; Phase::ALL.len()],
    request_duration: LocalHistogram,
    ttfb: LocalHistogram,
    bytes_out: u64,
    bytes_in: u64,
    cache: [u64; 5],
}

impl AccessTally {
    pub(crate) fn observe(&mut self, r: &AccessRecord) {
        let a = &r.answer;
        self.requests[a.answered_by.index()][class_index(a.status_code)] += 1;
        self.request_duration.observe(r.duration);
        self.ttfb.observe(r.ttfb);
        self.bytes_out = self.bytes_out.saturating_add(r.response_size);
        self.bytes_in = self.bytes_in.saturating_add(r.request_size);
        self.cache[cache_index(a.cache_status)] += 1;
    }
}

fn cache_index(c: CacheStatus) -> usize {
    CACHE.iter().position(|x| *x == c).unwrap_or(4)
}

/// The node's operator metrics.
#[derive(Debug)]
pub struct Metrics {
    requests: [[AtomicU64; 6]; Phase::ALL.len()],
    request_duration: Histogram,
    ttfb: Histogram,
    bytes_out: AtomicU64,
    bytes_in: AtomicU64,
    cache: [AtomicU64; 5],
    functions: [AtomicU64; Outcome::ALL.len()],
    function_duration: Histogram,
    function_cpu: Histogram,
    upstream_ok: AtomicU64,
    upstream_err: AtomicU64,
    upstream_duration: Histogram,
    open_connections: AtomicI64,
    hot_answers: AtomicU64,
    pub(crate) queue_dropped: AtomicU64,
    pub(crate) processed: AtomicU64,
    pub(crate) sink_dropped: AtomicU64,
    pub(crate) sink_failed_batches: AtomicU64,
    pub(crate) sink_written: AtomicU64,
    pub(crate) tail_lagged: AtomicU64,
    started: SystemTime,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests: Default::default(),
            request_duration: Histogram::default(),
            ttfb: Histogram::default(),
            bytes_out: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            cache: Default::default(),
            functions: Default::default(),
            function_duration: Histogram::default(),
            function_cpu: Histogram::default(),
            upstream_ok: AtomicU64::new(0),
            upstream_err: AtomicU64::new(0),
            upstream_duration: Histogram::default(),
            open_connections: AtomicI64::new(0),
            hot_answers: AtomicU64::new(0),
            queue_dropped: AtomicU64::new(0),
            processed: AtomicU64::new(0),
            sink_dropped: AtomicU64::new(0),
            sink_failed_batches: AtomicU64::new(0),
            sink_written: AtomicU64::new(0),
            tail_lagged: AtomicU64::new(0),
            started: SystemTime::now(),
        }
    }
}

/// Counts an open connection while alive (see [`Metrics::connection`]).
#[derive(Debug)]
pub struct ConnectionGuard<'a>(&'a Metrics);

impl Drop for ConnectionGuard<'_> {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Relaxed);
    }
}

impl Metrics {
    /// Counts a request. The dispatcher counts the records it takes with
    /// an [`AccessTally`]; this is for one it never sees (dropped at a full
    /// queue), so every request is counted either way.
    pub fn observe_access(&self, r: &AccessRecord) {
        let mut t = AccessTally::default();
        t.observe(r);
        self.add_tally(&mut t);
    }

    /// Adds a tally's counts and empties it.
    pub(crate) fn add_tally(&self, t: &mut AccessTally) {
        let t = std::mem::take(t);
        for (row, counts) in self.requests.iter().zip(&t.requests) {
            for (a, n) in row.iter().zip(counts) {
                if *n > 0 {
                    a.fetch_add(*n, Relaxed);
                }
            }
        }
        self.request_duration.add(&t.request_duration);
        self.ttfb.add(&t.ttfb);
        self.bytes_out.fetch_add(t.bytes_out, Relaxed);
        self.bytes_in.fetch_add(t.bytes_in, Relaxed);
        for (a, n) in self.cache.iter().zip(&t.cache) {
            if *n > 0 {
                a.fetch_add(*n, Relaxed);
            }
        }
    }

    /// Counts an edge function invocation.
    pub fn observe_function(&self, r: &FunctionRecord) {
        let i = Outcome::ALL
            .iter()
            .position(|o| *o == r.outcome)
            .unwrap_or(1);
        self.functions[i].fetch_add(1, Relaxed);
        self.function_duration.observe(r.duration);
        self.function_cpu.observe(r.cpu_time);
    }

    /// Counts one origin request (proxy, cache fill, function `fetch`).
    pub fn observe_upstream(&self, duration: Duration, ok: bool) {
        if ok {
            self.upstream_ok.fetch_add(1, Relaxed);
        } else {
            self.upstream_err.fetch_add(1, Relaxed);
        }
        self.upstream_duration.observe(duration);
    }

    /// Counts an open client connection until the guard is dropped.
    pub fn connection(&self) -> ConnectionGuard<'_> {
        self.open_connections.fetch_add(1, Relaxed);
        ConnectionGuard(self)
    }

    /// Client connections open now.
    pub fn open_connections(&self) -> i64 {
        self.open_connections.load(Relaxed)
    }

    /// Counts an answer the edge sent from those it keeps, without
    /// running the pipeline.
    pub fn hot_answer(&self) {
        self.hot_answers.fetch_add(1, Relaxed);
    }

    /// Answers sent from those the edge keeps.
    pub fn hot_answers(&self) -> u64 {
        self.hot_answers.load(Relaxed)
    }

    /// Records dropped because the telemetry queue was full.
    pub fn queue_dropped(&self) -> u64 {
        self.queue_dropped.load(Relaxed)
    }

    /// Records the dispatcher has handled (counted, sent to live tails and
    /// handed to drains).
    pub fn processed(&self) -> u64 {
        self.processed.load(Relaxed)
    }

    /// Lines dropped because a sink's buffer was full or a batch failed
    /// for good.
    pub fn sink_dropped(&self) -> u64 {
        self.sink_dropped.load(Relaxed)
    }

    /// Requests counted, all phases and classes.
    pub fn requests_total(&self) -> u64 {
        self.requests
            .iter()
            .flatten()
            .map(|a| a.load(Relaxed))
            .sum()
    }

    /// Renders everything in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut o = String::with_capacity(8192);
        header(
            &mut o,
            "ledge_requests_total",
            "counter",
            "Requests answered, by status class and the phase that answered.",
        );
        for p in Phase::ALL {
            for (ci, class) in CLASSES.iter().enumerate() {
                let v = self.requests[p.index()][ci].load(Relaxed);
                let _ = writeln!(
                    o,
                    "ledge_requests_total{{phase=\"{}\",class=\"{class}\"}} {v}",
                    p.as_str()
                );
            }
        }
        header(
            &mut o,
            "ledge_request_duration_seconds",
            "histogram",
            "Time from request head to last response byte.",
        );
        self.request_duration
            .render(&mut o, "ledge_request_duration_seconds", "");
        header(
            &mut o,
            "ledge_request_ttfb_seconds",
            "histogram",
            "Time from request head to response head.",
        );
        self.ttfb.render(&mut o, "ledge_request_ttfb_seconds", "");
        counter(
            &mut o,
            "ledge_response_bytes_total",
            "Response body bytes sent.",
            self.bytes_out.load(Relaxed),
        );
        counter(
            &mut o,
            "ledge_request_bytes_total",
            "Request body bytes received.",
            self.bytes_in.load(Relaxed),
        );
        header(
            &mut o,
            "ledge_cache_requests_total",
            "counter",
            "Requests by cache status.",
        );
        for (i, c) in CACHE.iter().enumerate() {
            let _ = writeln!(
                o,
                "ledge_cache_requests_total{{status=\"{}\"}} {}",
                c.as_str(),
                self.cache[i].load(Relaxed)
            );
        }
        header(
            &mut o,
            "ledge_function_invocations_total",
            "counter",
            "Edge function invocations by outcome.",
        );
        for (i, out) in Outcome::ALL.iter().enumerate() {
            let _ = writeln!(
                o,
                "ledge_function_invocations_total{{outcome=\"{}\"}} {}",
                out.as_str(),
                self.functions[i].load(Relaxed)
            );
        }
        header(
            &mut o,
            "ledge_function_duration_seconds",
            "histogram",
            "Edge function wall-clock time.",
        );
        self.function_duration
            .render(&mut o, "ledge_function_duration_seconds", "");
        header(
            &mut o,
            "ledge_function_cpu_seconds",
            "histogram",
            "Edge function CPU time.",
        );
        self.function_cpu
            .render(&mut o, "ledge_function_cpu_seconds", "");
        header(
            &mut o,
            "ledge_upstream_requests_total",
            "counter",
            "Origin requests by result.",
        );
        let _ = writeln!(
            o,
            "ledge_upstream_requests_total{{result=\"ok\"}} {}",
            self.upstream_ok.load(Relaxed)
        );
        let _ = writeln!(
            o,
            "ledge_upstream_requests_total{{result=\"error\"}} {}",
            self.upstream_err.load(Relaxed)
        );
        header(
            &mut o,
            "ledge_upstream_duration_seconds",
            "histogram",
            "Origin request time to response head.",
        );
        self.upstream_duration
            .render(&mut o, "ledge_upstream_duration_seconds", "");
        header(
            &mut o,
            "ledge_open_connections",
            "gauge",
            "Client connections open now.",
        );
        let _ = writeln!(
            o,
            "ledge_open_connections {}",
            self.open_connections.load(Relaxed)
        );
        counter(
            &mut o,
            "ledge_hot_answers_total",
            "Answers (files, redirects, rewrites) sent from those the edge keeps, without running the pipeline.",
            self.hot_answers.load(Relaxed),
        );
        counter(
            &mut o,
            "ledge_telemetry_queue_dropped_total",
            "Records dropped because the telemetry queue was full.",
            self.queue_dropped.load(Relaxed),
        );
        counter(
            &mut o,
            "ledge_telemetry_records_processed_total",
            "Records the telemetry dispatcher has handled.",
            self.processed.load(Relaxed),
        );
        counter(
            &mut o,
            "ledge_telemetry_sink_dropped_total",
            "Log lines dropped by sinks (buffer full or batch failed for good).",
            self.sink_dropped.load(Relaxed),
        );
        counter(
            &mut o,
            "ledge_telemetry_sink_failed_batches_total",
            "Sink batch attempts that failed (each retry counts).",
            self.sink_failed_batches.load(Relaxed),
        );
        counter(
            &mut o,
            "ledge_telemetry_sink_written_total",
            "Log lines delivered by sinks.",
            self.sink_written.load(Relaxed),
        );
        counter(
            &mut o,
            "ledge_telemetry_tail_lagged_total",
            "Records live-tail subscribers missed because they were slow.",
            self.tail_lagged.load(Relaxed),
        );
        self.render_process(&mut o);
        o
    }

    fn render_process(&self, o: &mut String) {
        let start = self
            .started
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        header(
            o,
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since the Unix epoch.",
        );
        let _ = writeln!(o, "process_start_time_seconds {start}");
        let p = ProcessStats::read();
        if let Some(cpu) = p.cpu_seconds {
            header(
                o,
                "process_cpu_seconds_total",
                "counter",
                "User and system CPU time spent, seconds.",
            );
            let _ = writeln!(o, "process_cpu_seconds_total {cpu}");
        }
        if let Some(rss) = p.resident_bytes {
            header(
                o,
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size, bytes.",
            );
            let _ = writeln!(o, "process_resident_memory_bytes {rss}");
        }
        if let Some(fds) = p.open_fds {
            header(o, "process_open_fds", "gauge", "Open file descriptors.");
            let _ = writeln!(o, "process_open_fds {fds}");
        }
        if let Some(threads) = p.threads {
            header(o, "process_threads", "gauge", "OS threads.");
            let _ = writeln!(o, "process_threads {threads}");
        }
    }
}

fn header(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn counter(o: &mut String, name: &str, help: &str, v: u64) {
    header(o, name, "counter", help);
    let _ = writeln!(o, "{name} {v}");
}

/// Process figures read from `/proc/self` (Linux; `None` elsewhere).
#[derive(Debug, Default)]
struct ProcessStats {
    cpu_seconds: Option<f64>,
    resident_bytes: Option<u64>,
    open_fds: Option<u64>,
    threads: Option<u64>,
}

impl ProcessStats {
    fn read() -> Self {
        let mut p = Self::default();
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
            // Fields after the command name (which may hold spaces and is
            // closed by the last ')'): state is field 3, utime 14, stime 15.
            if let Some(rest) = stat.rfind(')').and_then(|i| stat.get(i + 2..)) {
                let f: Vec<&str> = rest.split_whitespace().collect();
                let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
                if let (Some(u), Some(s)) = (ticks(11), ticks(12)) {
                    // USER_HZ is 100 on Linux for every /proc interface.
                    p.cpu_seconds = Some((u + s) as f64 / 100.0);
                }
            }
        }
        if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
            for line in status.lines() {
                let kb = |l: &str| {
                    l.split_whitespace()
                        .nth(1)
                        .and_then(|v| v.parse::<u64>().ok())
                };
                if line.starts_with("VmRSS:") {
                    p.resident_bytes = kb(line).map(|k| k * 1024);
                } else if line.starts_with("Threads:") {
                    p.threads = kb(line);
                }
            }
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            p.open_fds = Some(dir.count() as u64);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The short cut for the first bucket and the whole-nanosecond count
    /// agree with the plain search and `as_nanos` around every bound.
    #[test]
    fn buckets_and_nanoseconds_match_the_plain_forms() {
        assert_eq!(FIRST_BOUND.as_secs_f64(), LATENCY_BOUNDS[0]);
        let mut ds = vec![Duration::ZERO, Duration::MAX, Duration::from_nanos(1)];
        for b in LATENCY_BOUNDS {
            let at = Duration::from_secs_f64(b);
            ds.extend([at, at + Duration::from_nanos(1)]);
            ds.extend(at.checked_sub(Duration::from_nanos(1)));
        }
        for d in ds {
            let secs = d.as_secs_f64();
            assert_eq!(
                bucket_of(d),
                LATENCY_BOUNDS.partition_point(|&b| b < secs),
                "{d:?}"
            );
            assert_eq!(
                u128::from(nanos(d)),
                d.as_nanos().min(u128::from(u64::MAX)),
                "{d:?}"
            );
        }
    }
}
