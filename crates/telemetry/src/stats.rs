//! Per-site statistics in time buckets (one minute, rolled up to one hour).
//!
//! A [`Bucket`] holds exact counters (requests, bytes, status classes, cache
//! hits, function invocations and errors) and bounded sketches: top paths,
//! referrers and countries ([`TopK`], Misra–Gries, 64/32/32 counters) and
//! request-duration and function-CPU-time percentiles ([`QuantileSketch`],
//! 1 % relative error). See [`crate::sketch`] for the error bounds. Buckets
//! are serde-serializable and mergeable: merging the buckets of two nodes
//! gives exactly the counters of the combined traffic, and sketches within
//! their stated error.
//!
//! Memory per open bucket is bounded: 128 keys of at most 256 bytes in the
//! top-k summaries (≈ 40 KiB at worst, typically a few KiB) plus at most
//! 2 × 2,048 sketch buckets (in practice < 300 each, ≈ 10 KiB). The
//! aggregator keeps only the open minute buckets of sites that had traffic
//! (at most two per site around a minute boundary); closed buckets go to the
//! [`BucketStore`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::record::{AccessRecord, Answer, FunctionRecord, Record};
use crate::sketch::{QuantileSketch, TopK};

/// Counters kept for the top paths.
pub const TOP_PATHS: usize = 64;
/// Counters kept for the top referrers.
pub const TOP_REFERRERS: usize = 32;
/// Counters kept for the top countries.
pub const TOP_COUNTRIES: usize = 32;

/// Bucket width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// 60 seconds.
    Minute,
    /// 3,600 seconds.
    Hour,
}

impl Resolution {
    /// Width in seconds.
    pub fn seconds(self) -> u64 {
        match self {
            Self::Minute => 60,
            Self::Hour => 3600,
        }
    }
    /// The start of the bucket holding `t` (Unix seconds).
    pub fn align(self, t: u64) -> u64 {
        t - t % self.seconds()
    }
}

/// Exact counters of a bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Requests.
    pub requests: u64,
    /// Response bytes sent.
    pub bytes_out: u64,
    /// Request bytes received.
    pub bytes_in: u64,
    /// Responses 100–199.
    pub status_1xx: u64,
    /// Responses 200–299.
    pub status_2xx: u64,
    /// Responses 300–399.
    pub status_3xx: u64,
    /// Responses 400–499.
    pub status_4xx: u64,
    /// Responses 500–599.
    pub status_5xx: u64,
    /// Responses served from the cache (hit or stale).
    pub cache_hits: u64,
    /// Cache lookups that missed.
    pub cache_misses: u64,
    /// Requests the edge answered with an error of its own.
    pub edge_errors: u64,
    /// Edge function invocations.
    pub function_invocations: u64,
    /// Invocations that did not end well (error, timeout, limits).
    pub function_errors: u64,
    /// CPU time of all invocations, microseconds.
    pub function_cpu_micros: u64,
}

impl Counters {
    fn merge(&mut self, o: &Counters) {
        self.requests += o.requests;
        self.bytes_out += o.bytes_out;
        self.bytes_in += o.bytes_in;
        self.status_1xx += o.status_1xx;
        self.status_2xx += o.status_2xx;
        self.status_3xx += o.status_3xx;
        self.status_4xx += o.status_4xx;
        self.status_5xx += o.status_5xx;
        self.cache_hits += o.cache_hits;
        self.cache_misses += o.cache_misses;
        self.edge_errors += o.edge_errors;
        self.function_invocations += o.function_invocations;
        self.function_errors += o.function_errors;
        self.function_cpu_micros += o.function_cpu_micros;
    }
}

/// One site's statistics over one time bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    /// The site's name.
    pub site: String,
    /// Bucket width.
    pub resolution: Resolution,
    /// Start, Unix seconds (aligned to the resolution).
    pub start: u64,
    /// Exact counters.
    pub counters: Counters,
    /// Most requested paths.
    pub top_paths: TopK,
    /// Most frequent referrers.
    pub top_referrers: TopK,
    /// Most frequent client countries.
    pub top_countries: TopK,
    /// Request durations, milliseconds.
    pub duration_ms: QuantileSketch,
    /// Edge function CPU time per invocation, milliseconds.
    pub function_cpu_ms: QuantileSketch,
}

impl Bucket {
    /// An empty bucket.
    pub fn new(site: impl Into<String>, resolution: Resolution, start: u64) -> Self {
        Self {
            site: site.into(),
            resolution,
            start: resolution.align(start),
            counters: Counters::default(),
            top_paths: TopK::new(TOP_PATHS),
            top_referrers: TopK::new(TOP_REFERRERS),
            top_countries: TopK::new(TOP_COUNTRIES),
            duration_ms: QuantileSketch::default(),
            function_cpu_ms: QuantileSketch::default(),
        }
    }

    /// Counts a request.
    pub fn add_access(&mut self, r: &AccessRecord) {
        self.add_access_counts(r);
        self.top_paths.insert(&r.answer.path);
        if let Some(referrer) = counted_referrer(r) {
            self.top_referrers.insert(referrer);
        }
    }

    /// [`Bucket::add_access`] without the path and the referrer, which the
    /// aggregator adds once per run of records that share them.
    fn add_access_counts(&mut self, r: &AccessRecord) {
        let (a, c) = (&r.answer, &mut self.counters);
        c.requests += 1;
        c.bytes_out += r.response_size;
        c.bytes_in += r.request_size;
        match a.status_code {
            100..=199 => c.status_1xx += 1,
            200..=299 => c.status_2xx += 1,
            300..=399 => c.status_3xx += 1,
            400..=499 => c.status_4xx += 1,
            500..=599 => c.status_5xx += 1,
            _ => {}
        }
        if a.cache_status.is_hit() {
            c.cache_hits += 1;
        } else if a.cache_status == crate::record::CacheStatus::Miss {
            c.cache_misses += 1;
        }
        if r.error_class.is_some() {
            c.edge_errors += 1;
        }
        if let Some(country) = r.country.as_deref().filter(|s| !s.is_empty()) {
            self.top_countries.insert(country);
        }
        self.duration_ms.insert(r.duration.as_secs_f64() * 1000.0);
    }

    /// Counts an edge function invocation.
    pub fn add_function(&mut self, r: &FunctionRecord) {
        let c = &mut self.counters;
        c.function_invocations += 1;
        if r.outcome.is_error() {
            c.function_errors += 1;
        }
        c.function_cpu_micros += r.cpu_time.as_micros().min(u64::MAX as u128) as u64;
        self.function_cpu_ms
            .insert(r.cpu_time.as_secs_f64() * 1000.0);
    }

    /// Counts either kind of record.
    pub fn add(&mut self, r: &Record) {
        match r {
            Record::Access(a) => self.add_access(a),
            Record::Function(f) => self.add_function(f),
        }
    }

    /// Adds another bucket's content (same site; the caller decides which
    /// buckets belong together, e.g. minutes into their hour, or the same
    /// minute from two nodes). Counters add exactly.
    pub fn merge(&mut self, other: &Bucket) {
        self.counters.merge(&other.counters);
        self.top_paths.merge(&other.top_paths);
        self.top_referrers.merge(&other.top_referrers);
        self.top_countries.merge(&other.top_countries);
        self.duration_ms.merge(&other.duration_ms);
        self.function_cpu_ms.merge(&other.function_cpu_ms);
    }

    /// The bucket's time range.
    pub fn range(&self) -> std::ops::Range<SystemTime> {
        let s = UNIX_EPOCH + Duration::from_secs(self.start);
        s..s + Duration::from_secs(self.resolution.seconds())
    }
}

/// The referrer a record counts in the top referrers: an empty one is not.
fn counted_referrer(r: &AccessRecord) -> Option<&Arc<str>> {
    r.referrer.as_ref().filter(|s| !s.is_empty())
}

/// Error from a [`BucketStore`].
#[derive(Debug, thiserror::Error)]
#[error("statistics store: {0}")]
pub struct StoreError(pub String);

/// Where closed buckets are kept (the node's metadata store).
///
/// Keyed by (site, resolution, start). The aggregator writes through
/// [`BucketStore::merge`] (one task per node); `get` serves queries and
/// `delete_before` retention. A SQLite implementation needs only `get`,
/// `put` and `delete_before` (one row per key, the bucket as JSON).
#[async_trait::async_trait]
pub trait BucketStore: Send + Sync + 'static {
    /// Buckets of `site` at `resolution` with `since <= start < until`
    /// (Unix seconds), ordered by start.
    async fn get(
        &self,
        site: &str,
        resolution: Resolution,
        since: u64,
        until: u64,
    ) -> Result<Vec<Bucket>, StoreError>;

    /// Stores a bucket, replacing one with the same key.
    async fn put(&self, bucket: &Bucket) -> Result<(), StoreError>;

    /// Removes buckets at `resolution` that start before `cutoff`; returns
    /// how many.
    async fn delete_before(&self, resolution: Resolution, cutoff: u64) -> Result<u64, StoreError>;

    /// Adds `bucket` to the stored bucket with the same key (or stores it).
    /// The default reads, merges and puts; a store shared by several nodes
    /// (Postgres) should override it with one transaction so concurrent
    /// merges are not lost.
    async fn merge(&self, bucket: &Bucket) -> Result<(), StoreError> {
        let existing = self
            .get(
                &bucket.site,
                bucket.resolution,
                bucket.start,
                bucket.start + 1,
            )
            .await?;
        let mut b = existing
            .into_iter()
            .next()
            .unwrap_or_else(|| Bucket::new(bucket.site.clone(), bucket.resolution, bucket.start));
        b.merge(bucket);
        self.put(&b).await
    }
}

type BucketKey = (String, Resolution, u64);

/// An in-memory [`BucketStore`] (tests, `ledge dev`).
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<BTreeMap<BucketKey, Bucket>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
    /// Number of buckets held.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|m| m.len()).unwrap_or(0)
    }
    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn poisoned<T>(_: T) -> StoreError {
    StoreError("memory store lock poisoned".into())
}

#[async_trait::async_trait]
impl BucketStore for MemoryStore {
    async fn get(
        &self,
        site: &str,
        resolution: Resolution,
        since: u64,
        until: u64,
    ) -> Result<Vec<Bucket>, StoreError> {
        let map = self.inner.lock().map_err(poisoned)?;
        if since >= until {
            return Ok(Vec::new());
        }
        let lo = (site.to_owned(), resolution, since);
        let hi = (site.to_owned(), resolution, until);
        Ok(map.range(lo..hi).map(|(_, b)| b.clone()).collect())
    }

    async fn put(&self, bucket: &Bucket) -> Result<(), StoreError> {
        let mut map = self.inner.lock().map_err(poisoned)?;
        map.insert(
            (bucket.site.clone(), bucket.resolution, bucket.start),
            bucket.clone(),
        );
        Ok(())
    }

    async fn delete_before(&self, resolution: Resolution, cutoff: u64) -> Result<u64, StoreError> {
        let mut map = self.inner.lock().map_err(poisoned)?;
        let before = map.len();
        map.retain(|(_, r, start), _| *r != resolution || *start >= cutoff);
        Ok((before - map.len()) as u64)
    }
}

/// Statistics of a site over a time range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsReport {
    /// The buckets, oldest first (including the open minute, if in range).
    pub buckets: Vec<Bucket>,
    /// Everything in `buckets` merged.
    pub total: Bucket,
}

/// A bucket reduced to what `ledge stats` shows: counters, top lists with
/// their error bound, percentiles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Exact counters.
    pub counters: Counters,
    /// Top paths, most requested first.
    pub top_paths: Vec<(String, u64)>,
    /// Top referrers.
    pub top_referrers: Vec<(String, u64)>,
    /// Top countries.
    pub top_countries: Vec<(String, u64)>,
    /// The most any top-list count can be below the true count.
    pub top_error_bound: u64,
    /// Request duration p50, p90, p99 (ms), within 1 %.
    pub duration_ms: Option<[f64; 3]>,
    /// Function CPU time p50, p90, p99 (ms), within 1 %.
    pub function_cpu_ms: Option<[f64; 3]>,
}

fn percentiles(s: &QuantileSketch) -> Option<[f64; 3]> {
    Some([s.quantile(0.5)?, s.quantile(0.9)?, s.quantile(0.99)?])
}

impl Bucket {
    /// The bucket as `ledge stats` shows it, with `n` entries per top list.
    pub fn summary(&self, n: usize) -> Summary {
        Summary {
            counters: self.counters.clone(),
            top_paths: self.top_paths.top(n),
            top_referrers: self.top_referrers.top(n),
            top_countries: self.top_countries.top(n),
            top_error_bound: self
                .top_paths
                .error_bound()
                .max(self.top_referrers.error_bound())
                .max(self.top_countries.error_bound()),
            duration_ms: percentiles(&self.duration_ms),
            function_cpu_ms: percentiles(&self.function_cpu_ms),
        }
    }
}

/// Open minute buckets, filled by the dispatcher: site → minute → bucket.
#[derive(Debug, Default)]
pub(crate) struct Aggregator {
    // Keys are site names (valid labels); a fast hash, as this is looked
    // up whenever the site or minute changes from one record to the next.
    open: HashMap<String, BTreeMap<u64, Bucket>, foldhash::fast::RandomState>,
    /// The bucket the last record went to, taken out of `open` (records of
    /// a batch mostly share their site and minute, so most need no map
    /// lookup). Every other method puts it back first.
    current: Option<Bucket>,
    /// The answer of the last records added to `current` and how many
    /// there were in a row. Their path is counted in `current` when the run
    /// ends (one summary lookup for the run, not one per record; the summary
    /// is the same as with a lookup per record).
    path_run: Option<(Arc<Answer>, u64)>,
    /// The same for the referrer that the last records shared.
    referrer_run: Option<(Arc<str>, u64)>,
}

impl Aggregator {
    pub(crate) fn add(&mut self, r: &Record) {
        let start = Resolution::Minute.align(unix_secs(r.timestamp()));
        let site = r.site();
        let b = match &mut self.current {
            Some(b) if b.start == start && b.site == site => b,
            _ => {
                self.settle();
                // Borrowed lookup: the common case allocates nothing.
                let minutes = match self.open.get_mut(site) {
                    Some(m) => m,
                    None => self.open.entry(site.to_owned()).or_default(),
                };
                let b = minutes
                    .remove(&start)
                    .unwrap_or_else(|| Bucket::new(site, Resolution::Minute, start));
                self.current.insert(b)
            }
        };
        match r {
            Record::Access(a) => {
                b.add_access_counts(a);
                match &mut self.path_run {
                    Some((answer, n)) if Arc::ptr_eq(answer, &a.answer) => *n += 1,
                    run => {
                        if let Some((answer, n)) = run.replace((a.answer.clone(), 1)) {
                            b.top_paths.insert_n(&answer.path, n);
                        }
                    }
                }
                match (&mut self.referrer_run, counted_referrer(a)) {
                    (Some((last, n)), Some(r)) if Arc::ptr_eq(last, r) => *n += 1,
                    (run, r) => {
                        if let Some((last, n)) = run.take() {
                            b.top_referrers.insert_n(&last, n);
                        }
                        *run = r.map(|r| (r.clone(), 1));
                    }
                }
            }
            Record::Function(f) => b.add_function(f),
        }
    }

    /// Counts the runs' path and referrer in the current bucket.
    fn end_run(&mut self) {
        let (path_run, referrer_run) = (self.path_run.take(), self.referrer_run.take());
        if let Some(b) = self.current.as_mut() {
            if let Some((answer, n)) = path_run {
                b.top_paths.insert_n(&answer.path, n);
            }
            if let Some((referrer, n)) = referrer_run {
                b.top_referrers.insert_n(&referrer, n);
            }
        }
    }

    /// Puts the current bucket back in its place.
    fn settle(&mut self) {
        self.end_run();
        if let Some(b) = self.current.take() {
            let minutes = match self.open.get_mut(&b.site) {
                Some(m) => m,
                None => self.open.entry(b.site.clone()).or_default(),
            };
            minutes.insert(b.start, b);
        }
    }

    /// Removes and returns the buckets whose minute ended at or before
    /// `cutoff`.
    pub(crate) fn take_closed(&mut self, cutoff: u64) -> Vec<Bucket> {
        self.settle();
        let mut out = Vec::new();
        self.open.retain(|_, minutes| {
            while let Some(entry) = minutes.first_entry() {
                if entry.key() + 60 > cutoff {
                    break;
                }
                out.push(entry.remove());
            }
            !minutes.is_empty()
        });
        out
    }

    pub(crate) fn take_all(&mut self) -> Vec<Bucket> {
        self.settle();
        self.open
            .drain()
            .flat_map(|(_, minutes)| minutes.into_values())
            .collect()
    }

    pub(crate) fn open_for(&mut self, site: &str) -> Vec<Bucket> {
        self.end_run();
        let mut out: Vec<Bucket> = self
            .open
            .get(site)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        if let Some(b) = self.current.as_ref().filter(|b| b.site == site) {
            // Taken out of `open`, so no bucket of `out` has its minute.
            out.push(b.clone());
            out.sort_by_key(|b| b.start);
        }
        out
    }
}

/// Persists a closed minute bucket: merged into the stored minute (a restart
/// within the minute) and into its hour.
pub(crate) async fn persist(store: &dyn BucketStore, minute: &Bucket) -> Result<(), StoreError> {
    store.merge(minute).await?;
    let mut hour = Bucket::new(
        minute.site.clone(),
        Resolution::Hour,
        Resolution::Hour.align(minute.start),
    );
    hour.merge(minute);
    store.merge(&hour).await
}

/// Builds a report from stored buckets plus the open minutes.
pub(crate) fn report(
    site: &str,
    resolution: Resolution,
    since: u64,
    until: u64,
    stored: Vec<Bucket>,
    open: Vec<Bucket>,
) -> StatsReport {
    let mut by_start: BTreeMap<u64, Bucket> = BTreeMap::new();
    for b in stored {
        by_start.insert(b.start, b);
    }
    for m in open {
        let start = resolution.align(m.start);
        if start < resolution.align(since) || start >= until {
            continue;
        }
        by_start
            .entry(start)
            .or_insert_with(|| Bucket::new(site, resolution, start))
            .merge(&m);
    }
    let mut total = Bucket::new(site, resolution, resolution.align(since));
    for b in by_start.values() {
        total.merge(b);
    }
    StatsReport {
        buckets: by_start.into_values().collect(),
        total,
    }
}

/// Unix seconds of a time (0 before the epoch).
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Answer, CacheStatus, Phase};
    use std::sync::Arc;

    fn req(site: &str, secs: u64, status: u16) -> Record {
        Record::Access(Box::new(AccessRecord {
            timestamp: UNIX_EPOCH + Duration::from_secs(secs),
            request_id: "r".into(),
            answer: Arc::new(Answer {
                site: site.into(),
                deploy: None,
                host: "h".into(),
                method: "GET".into(),
                path: "/".into(),
                query: None,
                status_code: status,
                content_type: None,
                cache_status: CacheStatus::None,
                answered_by: Phase::Static,
                rule: None,
                function_name: None,
                firewall_rule: None,
                block_reason: None,
            }),
            request_size: 0,
            response_size: 10,
            duration: Duration::from_millis(2),
            ttfb: Duration::from_millis(1),
            client_ip: None,
            country: None,
            user_agent: None,
            referrer: None,
            tls_version: None,
            http_version: "HTTP/1.1".into(),
            error_class: None,
        }))
    }

    #[test]
    fn minutes_close_after_their_end_only() {
        let mut agg = Aggregator::default();
        agg.add(&req("a", 120, 200));
        agg.add(&req("a", 179, 200));
        agg.add(&req("a", 180, 404));
        agg.add(&req("b", 130, 500));
        assert!(agg.take_closed(179).is_empty());
        let mut closed = agg.take_closed(180);
        closed.sort_by(|x, y| x.site.cmp(&y.site));
        assert_eq!(closed.len(), 2);
        assert_eq!(
            (closed[0].site.as_str(), closed[0].counters.requests),
            ("a", 2)
        );
        assert_eq!(
            (closed[1].site.as_str(), closed[1].counters.status_5xx),
            ("b", 1)
        );
        assert_eq!(agg.open_for("a").len(), 1);
        assert_eq!(agg.take_all().len(), 1);
        assert!(agg.open_for("a").is_empty());
    }

    /// Records that share an answer or a referrer are counted in runs; the
    /// buckets are the same as adding each record on its own, with more
    /// paths and referrers than the summaries hold, and runs cut by other
    /// sites, other minutes, function records and reads of the open
    /// buckets.
    #[test]
    fn runs_of_one_answer_count_like_single_records() {
        let answers = |site: &str| -> Vec<Arc<Answer>> {
            (0..TOP_PATHS as u64 * 2)
                .map(|i| {
                    let Record::Access(a) = req(site, 0, 200) else {
                        unreachable!()
                    };
                    let mut answer = (*a.answer).clone();
                    answer.path = format!("/p/{}", i % (TOP_PATHS as u64 + 9)).into();
                    Arc::new(answer)
                })
                .collect()
        };
        let (for_a, for_b) = (answers("a"), answers("b"));
        let referrers: Vec<Arc<str>> = (0..TOP_REFERRERS + 5)
            .map(|i| format!("https://r{i}.example/").into())
            .collect();
        let mut agg = Aggregator::default();
        let mut want: BTreeMap<(String, u64), Bucket> = BTreeMap::new();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for k in 0..20_000u64 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let site = if seed % 11 == 0 { "b" } else { "a" };
            let t = 60 + (k / 5_000) * 60 + seed % 7;
            let mut r = req(site, t, 200);
            if let Record::Access(a) = &mut r {
                // Mostly long runs of one answer.
                let answers = if site == "a" { &for_a } else { &for_b };
                a.answer =
                    answers[((k / 37 + seed % 3 / 2) % answers.len() as u64) as usize].clone();
                // Referrers: shared runs, equal text in other blocks, none
                // and empty ones, and more of them than the summary holds.
                a.referrer = match seed % 5 {
                    0 => None,
                    1 => Some("".into()),
                    2 => Some(format!("https://r{}.example/", k % 50).into()),
                    _ => Some(referrers[((k / 23) % referrers.len() as u64) as usize].clone()),
                };
            }
            if seed % 97 == 0 {
                r = Record::Function(Box::new(FunctionRecord {
                    timestamp: UNIX_EPOCH + Duration::from_secs(t),
                    request_id: "f".into(),
                    site: site.into(),
                    deploy: "d".into(),
                    function_name: "f".into(),
                    duration: Duration::from_millis(1),
                    cpu_time: Duration::from_micros(300),
                    outcome: crate::record::Outcome::Ok,
                    status_code: Some(200),
                    method: "GET".into(),
                    path: "/".into(),
                    console: Vec::new(),
                }));
            }
            agg.add(&r);
            want.entry((site.to_owned(), t / 60 * 60))
                .or_insert_with(|| Bucket::new(site, Resolution::Minute, t))
                .add(&r);
            if k % 4_999 == 0 {
                let open = agg.open_for("a");
                let open_want: Vec<&Bucket> = want
                    .iter()
                    .filter(|((s, _), _)| s == "a")
                    .map(|(_, b)| b)
                    .collect();
                assert_eq!(open.iter().collect::<Vec<_>>(), open_want);
            }
        }
        let got: BTreeMap<(String, u64), Bucket> = agg
            .take_all()
            .into_iter()
            .map(|b| ((b.site.clone(), b.start), b))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn interleaved_sites_and_minutes_count_exactly() {
        // Records alternate between two sites and two minutes, so the
        // bucket kept out of the map changes often; every open minute must
        // still see exactly its own records.
        let mut agg = Aggregator::default();
        let mut want: BTreeMap<(String, u64), u64> = BTreeMap::new();
        for k in 0..200u64 {
            let site = if k % 3 == 0 { "a" } else { "b" };
            let t = if k % 7 < 4 { 60 + k % 50 } else { 120 + k % 50 };
            agg.add(&req(site, t, 200));
            *want.entry((site.to_owned(), t / 60 * 60)).or_default() += 1;
            if k == 100 {
                // Seen while a bucket is out: every minute once, none lost.
                let open = agg.open_for("b");
                assert_eq!(open.len(), 2);
                assert!(open[0].start < open[1].start);
            }
        }
        let got: BTreeMap<(String, u64), u64> = agg
            .take_all()
            .into_iter()
            .map(|b| ((b.site.clone(), b.start), b.counters.requests))
            .collect();
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn persist_merges_into_minute_and_hour_and_retention_sweeps() {
        let store = MemoryStore::new();
        let mut m1 = Bucket::new("a", Resolution::Minute, 3600);
        m1.add(&req("a", 3600, 200));
        let mut m2 = Bucket::new("a", Resolution::Minute, 3660);
        m2.add(&req("a", 3660, 500));
        persist(&store, &m1).await.unwrap();
        // The same minute again (a restart within it) adds up.
        persist(&store, &m1).await.unwrap();
        persist(&store, &m2).await.unwrap();
        let minutes = store.get("a", Resolution::Minute, 0, 10_000).await.unwrap();
        assert_eq!(minutes.len(), 2);
        assert_eq!(minutes[0].counters.requests, 2);
        let hours = store.get("a", Resolution::Hour, 0, 10_000).await.unwrap();
        assert_eq!(hours.len(), 1);
        assert_eq!(hours[0].start, 3600);
        assert_eq!(hours[0].counters.requests, 3);
        assert_eq!(hours[0].counters.status_5xx, 1);
        assert!(store
            .get("a", Resolution::Hour, 3601, 10_000)
            .await
            .unwrap()
            .is_empty());
        assert!(store
            .get("b", Resolution::Hour, 0, 10_000)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            store.delete_before(Resolution::Minute, 3660).await.unwrap(),
            1
        );
        assert_eq!(store.len(), 2);
        // report() folds an open minute into its hour.
        let mut open = Bucket::new("a", Resolution::Minute, 3720);
        open.add(&req("a", 3720, 200));
        let r = report("a", Resolution::Hour, 0, 10_000, hours, vec![open]);
        assert_eq!(r.buckets.len(), 1);
        assert_eq!(r.total.counters.requests, 4);
        let sum = r.total.summary(5);
        assert_eq!(sum.top_paths, vec![("/".to_owned(), 4)]);
        assert_eq!(sum.top_error_bound, 0);
        let [p50, _, p99] = sum.duration_ms.unwrap();
        assert!((p50 - 2.0).abs() <= 0.02 && (p99 - 2.0).abs() <= 0.02);
        assert_eq!(sum.function_cpu_ms, None);
    }
}
