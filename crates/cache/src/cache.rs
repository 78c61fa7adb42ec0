//! The cache: lookups, coalesced fills, revalidation, the two tiers and purge.

use std::collections::HashMap;
use std::future::poll_fn;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap};
use http::{Method, StatusCode};
use http_body::Body as _;
use quick_cache::sync::Cache as QCache;
use quick_cache::{UnitWeighter, Weighter};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use crate::body::{CacheBody, ChunkSender, MapErr};
use crate::clock::Clock;
use crate::disk::{self, DiskStore};
use crate::entry::{Entry, StoredBody};
use crate::generations::Generations;
use crate::policy::{
    self, cache_status_headers, CacheStatus, Decision, Fwd, NotStored, PolicyRequest,
    ResponseSource, RuleVary, VariantInput, VariantSpec,
};

/// Settings of the cache.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Name of this cache in `Cache-Status`.
    pub name: String,
    /// Bytes the memory tier may hold (bodies, headers, keys).
    pub memory_capacity: u64,
    /// Largest body kept in the memory tier; larger ones go to disk only.
    pub memory_max_body: u64,
    /// Largest body stored at all; larger responses stream through.
    pub max_body: u64,
    /// The disk tier, if any.
    pub disk: Option<DiskConfig>,
    /// Most requests waiting for one fill; more go to the origin themselves.
    pub max_waiters: usize,
    /// Longest a request waits for another's fill before going to the origin
    /// itself.
    pub coalesce_timeout: Duration,
    /// How long a URL whose response could not be stored is passed straight
    /// to the origin without coalescing ("hit-for-pass").
    pub pass_ttl: Duration,
    /// Bytes a disk read, or a request following a fill, may read ahead of
    /// its client before it waits for it (memory held per slow client). A
    /// fill itself may run ahead of its client by the larger of this and
    /// `memory_max_body` (its chunks are shared with the stored copy, so
    /// that costs nothing extra), so a slow client never slows a small fill
    /// or the requests waiting for it.
    pub client_buffer: usize,
    /// Most URLs whose variant spec is remembered.
    pub max_urls: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            name: "Ledge Edge".into(),
            memory_capacity: 256 * 1024 * 1024,
            memory_max_body: 1024 * 1024,
            max_body: 512 * 1024 * 1024,
            disk: None,
            max_waiters: 1024,
            coalesce_timeout: Duration::from_secs(10),
            pass_ttl: Duration::from_secs(30),
            client_buffer: 256 * 1024,
            max_urls: 1_000_000,
        }
    }
}

/// The disk tier's place and size.
#[derive(Debug, Clone)]
pub struct DiskConfig {
    /// Folder (created if missing; kept across restarts).
    pub path: PathBuf,
    /// Bytes of bodies it may hold.
    pub capacity: u64,
}

/// What the cache needs to know about a request.
#[derive(Debug, Clone, Copy)]
pub struct CacheRequest<'a> {
    /// Site name (purge scope).
    pub site: &'a str,
    /// The deploy serving the request: stored responses of another deploy are
    /// void unless they carried `Netlify-Cache-ID` (spec §5.4).
    pub deploy: Option<&'a str>,
    /// Method (`GET` and `HEAD` use the cache).
    pub method: &'a Method,
    /// Normalised host (deploy contexts have their own hosts, so their own
    /// namespaces).
    pub host: &'a str,
    /// Request path as received.
    pub path: &'a str,
    /// Query string, without `?`.
    pub query: Option<&'a str>,
    /// Request headers.
    pub headers: &'a HeaderMap,
    /// Visitor country, when known.
    pub country: Option<&'a str>,
}

/// A response served from the cache, with `Age` and `Cache-Status` set.
#[derive(Debug)]
pub struct CachedResponse {
    /// Status.
    pub status: StatusCode,
    /// Headers for the client.
    pub headers: HeaderMap,
    /// Body.
    pub body: CacheBody,
    /// What `Cache-Status` says.
    pub cache_status: CacheStatus,
}

impl CachedResponse {
    /// As an `http::Response`.
    pub fn into_response(self) -> http::Response<CacheBody> {
        let mut r = http::Response::new(self.body);
        *r.status_mut() = self.status;
        *r.headers_mut() = self.headers;
        r
    }
}

/// The outcome of a lookup.
#[derive(Debug)]
pub enum Lookup {
    /// Fresh: serve it.
    Hit(CachedResponse),
    /// Stale within `stale-while-revalidate`: serve it now. When `refresh` is
    /// given, this request was chosen to refresh the entry in the background
    /// (one refresh per key at a time): fetch from the origin with
    /// [`FillGuard::origin_headers`] and hand the response to
    /// [`FillGuard::store`] off the request path.
    Stale {
        /// The stale response.
        response: CachedResponse,
        /// The background refresh to run, if this request owns it.
        refresh: Option<FillGuard>,
    },
    /// Go to the origin and store what comes back through the guard. Other
    /// requests for the key wait for it (bounded).
    Miss(FillGuard),
    /// Go to the origin and do not store; put this status on the response
    /// ([`Cache::pass_headers`]).
    Pass(CacheStatus),
}

#[derive(Clone)]
enum SpecState {
    Spec(Arc<VariantSpec>),
    Pass { until_ms: u64 },
}

struct Flight {
    state: watch::Sender<FlightState>,
    waiters: AtomicUsize,
}

#[derive(Clone)]
struct MemWeighter;

impl Weighter<String, Arc<Entry>> for MemWeighter {
    fn weight(&self, _key: &String, val: &Arc<Entry>) -> u64 {
        val.weight()
    }
}

struct Inner {
    config: CacheConfig,
    clock: Arc<dyn Clock>,
    generations: Arc<Generations>,
    memory: QCache<String, Arc<Entry>, MemWeighter>,
    specs: QCache<String, SpecState, UnitWeighter>,
    disk: Option<DiskStore>,
    inflight: Mutex<HashMap<String, Arc<Flight>>>,
    fills: AtomicU64,
    buffer_peak: AtomicU64,
}

/// Counters for tests and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Weight held by the memory tier (bytes).
    pub memory_bytes: u64,
    /// Entries in the memory tier.
    pub memory_entries: usize,
    /// Bytes indexed by the disk tier.
    pub disk_bytes: u64,
    /// Entries in the disk tier.
    pub disk_entries: usize,
    /// Fills started (misses and refreshes handed out).
    pub fills_started: u64,
    /// Most body bytes any fill held in memory at once while streaming.
    pub fill_buffer_peak: u64,
    /// Requests waiting for another request's fill right now.
    pub waiting: usize,
}

/// The HTTP cache of one edge node.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("stats", &self.stats())
            .finish()
    }
}

/// Holds the right to fill one key; other requests for it wait until it is
/// stored or dropped.
struct Ticket {
    inner: Arc<Inner>,
    key: String,
    flight: Arc<Flight>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut map = self
            .inner
            .inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if map
            .get(&self.key)
            .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
        {
            map.remove(&self.key);
        }
        drop(map);
        self.flight.state.send_replace(FlightState::Done);
    }
}

/// One request waiting for a flight; uncounted when dropped.
struct Waiting(Arc<Flight>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.waiters.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Where a fill stands, for the requests waiting for it.
#[derive(Clone)]
enum FlightState {
    /// Not stored yet.
    Pending,
    /// A large body with a known length is being written to a file: waiting
    /// requests can follow it instead of waiting for the end.
    Streaming(Arc<Streaming>),
    /// Stored, or given up: look up again.
    Done,
}

/// What a request needs to follow a fill that is being written.
struct Streaming {
    status: StatusCode,
    headers: HeaderMap,
    len: u64,
    fresh_until_ms: u64,
    path: PathBuf,
    progress: watch::Receiver<Progress>,
}

enum Begin {
    Start(Ticket),
    Wait(watch::Receiver<FlightState>, Arc<Flight>),
    Busy,
}

/// The right and the means to fill (or refresh) one cache key from the
/// origin. Dropping it without storing releases waiting requests, which then
/// go to the origin themselves.
pub struct FillGuard {
    inner: Arc<Inner>,
    ticket: Ticket,
    primary: String,
    site: String,
    deploy: Option<String>,
    query: Option<String>,
    headers: HeaderMap,
    country: Option<String>,
    previous: Option<Arc<Entry>>,
    fwd: Fwd,
    collapsed: bool,
}

impl std::fmt::Debug for FillGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FillGuard")
            .field("key", &self.ticket.key)
            .field("fwd", &self.fwd)
            .field("revalidation", &self.previous.is_some())
            .finish()
    }
}

impl Cache {
    /// A cache with the given settings; opens (blocking) the disk tier and
    /// rebuilds its index when configured. `generations` is shared with the
    /// change-feed follower that applies purges.
    pub fn open(
        config: CacheConfig,
        clock: Arc<dyn Clock>,
        generations: Arc<Generations>,
    ) -> io::Result<Self> {
        let memory = QCache::with_weighter(1024, config.memory_capacity.max(1), MemWeighter);
        let specs = QCache::with_weighter(1024, config.max_urls.max(1) as u64, UnitWeighter);
        let mut disk_store = None;
        if let Some(d) = &config.disk {
            let (store, found) = DiskStore::open(&d.path, d.capacity)?;
            for e in found {
                specs.insert(e.primary.clone(), SpecState::Spec(Arc::new(e.spec())));
            }
            disk_store = Some(store);
        }
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                clock,
                generations,
                memory,
                specs,
                disk: disk_store,
                inflight: Mutex::new(HashMap::new()),
                fills: AtomicU64::new(0),
                buffer_peak: AtomicU64::new(0),
            }),
        })
    }

    /// The purge generations this cache checks entries against.
    pub fn generations(&self) -> &Arc<Generations> {
        &self.inner.generations
    }

    /// Purges one site (local bump; on a fleet, purges arrive as
    /// [`crate::PurgeEvent`]s applied to [`Cache::generations`]).
    pub fn purge_site(&self, site: &str) -> u64 {
        self.inner.generations.bump_site(site)
    }

    /// Purges tags of one site (case-insensitive).
    pub fn purge_tags(&self, site: &str, tags: &[&str]) -> Vec<(String, u64)> {
        self.inner.generations.bump_tags(site, tags)
    }

    /// Purges everything.
    pub fn purge_all(&self) -> u64 {
        self.inner.generations.bump_all()
    }

    /// Counters.
    pub fn stats(&self) -> CacheStats {
        let (disk_bytes, disk_entries) = self.inner.disk.as_ref().map_or((0, 0), DiskStore::usage);
        CacheStats {
            memory_bytes: self.inner.memory.weight(),
            memory_entries: self.inner.memory.len(),
            disk_bytes,
            disk_entries,
            fills_started: self.inner.fills.load(Ordering::Relaxed),
            fill_buffer_peak: self.inner.buffer_peak.load(Ordering::Relaxed),
            waiting: self
                .inner
                .inflight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .map(|f| f.waiters.load(Ordering::Relaxed))
                .sum(),
        }
    }

    /// For a response the cache did not handle ([`Lookup::Pass`]): removes
    /// the edge-only headers and adds `Cache-Status`.
    pub fn pass_headers(&self, headers: &mut HeaderMap, status: &CacheStatus) {
        policy::downstream_headers(headers);
        cache_status_headers(headers, &self.inner.config.name, status, None);
    }

    /// Looks a request up. Memory-tier hits do not suspend; disk hits read
    /// and verify the body first; a miss may wait for another request's fill
    /// (at most `max_waiters` requests, each for at most `coalesce_timeout`).
    pub async fn lookup(&self, req: &CacheRequest<'_>) -> Lookup {
        let head = *req.method == Method::HEAD;
        if *req.method != Method::GET && !head {
            return Lookup::Pass(CacheStatus {
                fwd: Some(Fwd::Method),
                ..CacheStatus::default()
            });
        }
        let inner = &self.inner;
        let primary = primary_key(req);
        let input = VariantInput {
            query: req.query,
            headers: req.headers,
            country: req.country,
        };
        let mut collapsed = false;
        let mut last_fwd = Fwd::UriMiss;
        for _ in 0..3 {
            let now = inner.clock.now_ms();
            let spec = match inner.specs.get(&primary) {
                Some(SpecState::Pass { until_ms }) if until_ms > now => {
                    return Lookup::Pass(CacheStatus {
                        fwd: Some(Fwd::Bypass),
                        ..CacheStatus::default()
                    })
                }
                Some(SpecState::Spec(s)) => Some(s),
                _ => None,
            };
            let (flight_key, fwd, previous) = match spec {
                None => (primary.clone(), Fwd::UriMiss, None),
                Some(spec) => {
                    let mut full = String::with_capacity(primary.len() + 64);
                    full.push_str(&primary);
                    full.push('\u{0}');
                    spec.variant_key(&input, &mut full);
                    match inner.find(&full) {
                        None => (full, Fwd::VaryMiss, None),
                        Some(e) if !inner.usable(&e, req) => {
                            inner.forget(&e.key);
                            (full, Fwd::Miss, None)
                        }
                        Some(e) if now < e.fresh_until_ms => {
                            let status = CacheStatus {
                                hit: true,
                                collapsed,
                                ttl: Some(ttl_secs(&e, now)),
                                ..CacheStatus::default()
                            };
                            let nm = not_modified(req, &e);
                            match inner.respond(&e, now, head || nm, status).await {
                                Some(r) => return Lookup::Hit(finish(r, nm)),
                                None => (full, Fwd::Miss, None),
                            }
                        }
                        Some(e) => {
                            let past = now - e.fresh_until_ms;
                            if !e.must_revalidate && past < e.swr_ms {
                                let refresh = if head {
                                    None
                                } else {
                                    match inner.begin(&full, false) {
                                        Begin::Start(ticket) => Some(self.guard(
                                            ticket,
                                            primary.clone(),
                                            req,
                                            Some(e.clone()),
                                            Fwd::Stale,
                                            false,
                                        )),
                                        _ => None,
                                    }
                                };
                                let status = CacheStatus {
                                    hit: true,
                                    fwd: Some(Fwd::Stale),
                                    ttl: Some(ttl_secs(&e, now)),
                                    ..CacheStatus::default()
                                };
                                let nm = not_modified(req, &e);
                                if let Some(r) = inner.respond(&e, now, head || nm, status).await {
                                    return Lookup::Stale {
                                        response: finish(r, nm),
                                        refresh,
                                    };
                                }
                                drop(refresh);
                                (full, Fwd::Miss, None)
                            } else {
                                (full, Fwd::Stale, Some(e))
                            }
                        }
                    }
                }
            };
            last_fwd = fwd;
            if head {
                break;
            }
            match inner.begin(&flight_key, true) {
                Begin::Start(ticket) => {
                    return Lookup::Miss(
                        self.guard(ticket, primary, req, previous, fwd, collapsed),
                    );
                }
                Begin::Busy => break,
                Begin::Wait(mut rx, flight) => {
                    collapsed = true;
                    // Counted until this point is passed or the lookup is
                    // dropped (client gone).
                    let counted = Waiting(flight);
                    let waited = tokio::time::timeout(
                        inner.config.coalesce_timeout,
                        rx.wait_for(|s| !matches!(s, FlightState::Pending)),
                    )
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .map(|state| state.clone());
                    drop(counted);
                    match waited {
                        None => break,
                        Some(FlightState::Streaming(s)) => {
                            if let Some(r) = inner.follow_fill(&s, fwd, head).await {
                                return Lookup::Hit(r);
                            }
                        }
                        Some(_) => {}
                    }
                }
            }
        }
        Lookup::Pass(CacheStatus {
            fwd: Some(last_fwd),
            collapsed,
            ..CacheStatus::default()
        })
    }

    fn guard(
        &self,
        ticket: Ticket,
        primary: String,
        req: &CacheRequest<'_>,
        previous: Option<Arc<Entry>>,
        fwd: Fwd,
        collapsed: bool,
    ) -> FillGuard {
        self.inner.fills.fetch_add(1, Ordering::Relaxed);
        FillGuard {
            inner: self.inner.clone(),
            ticket,
            primary,
            site: req.site.to_owned(),
            deploy: req.deploy.map(str::to_owned),
            query: req.query.map(str::to_owned),
            headers: req.headers.clone(),
            country: req.country.map(str::to_owned),
            previous,
            fwd,
            collapsed,
        }
    }
}

/// The client's own conditional request is satisfied by the stored 200.
fn not_modified(req: &CacheRequest<'_>, e: &Entry) -> bool {
    e.status == StatusCode::OK && policy::client_not_modified(req.headers, &e.out_headers)
}

/// Turns a served response into a `304 Not Modified` when `nm`.
fn finish(mut r: CachedResponse, nm: bool) -> CachedResponse {
    if nm {
        r.status = StatusCode::NOT_MODIFIED;
        r.headers.remove(header::CONTENT_LENGTH);
        r.body = CacheBody::Empty;
    }
    r
}

/// Seconds of freshness left (negative: past expiry).
fn ttl_secs(e: &Entry, now: u64) -> i64 {
    let diff = i128::from(e.fresh_until_ms) - i128::from(now);
    i64::try_from(diff.div_euclid(1000)).unwrap_or(0)
}

/// `site \0 host \0 normalised path`: the URL part of every key (`GET` and
/// `HEAD` share entries; the query is part of the variant, spec §5.3).
fn primary_key(req: &CacheRequest<'_>) -> String {
    let mut k = String::with_capacity(req.site.len() + req.host.len() + req.path.len() + 3);
    k.push_str(req.site);
    k.push('\u{0}');
    let at = k.len();
    k.push_str(req.host);
    if let Some(h) = k.get_mut(at..) {
        h.make_ascii_lowercase();
    }
    k.push('\u{0}');
    policy::normalize_path(req.path, &mut k);
    k
}

impl Inner {
    fn find(&self, key: &str) -> Option<Arc<Entry>> {
        self.memory
            .get(key)
            .or_else(|| self.disk.as_ref().and_then(|d| d.get(key)))
    }

    fn usable(&self, e: &Entry, req: &CacheRequest<'_>) -> bool {
        if !self.generations.is_current(&e.site, &e.tags, &e.stamp) {
            return false;
        }
        match (&e.deploy, req.deploy) {
            (Some(stored), Some(now)) => stored == now || e.keep_across_deploys,
            _ => true,
        }
    }

    fn forget(&self, key: &str) {
        self.memory.remove(key);
        if let Some(d) = &self.disk {
            d.remove(key);
        }
    }

    fn begin(self: &Arc<Self>, key: &str, wait: bool) -> Begin {
        let mut map = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = map.get(key) {
            if !wait {
                return Begin::Busy;
            }
            if f.waiters.fetch_add(1, Ordering::AcqRel) >= self.config.max_waiters {
                f.waiters.fetch_sub(1, Ordering::AcqRel);
                return Begin::Busy;
            }
            return Begin::Wait(f.state.subscribe(), f.clone());
        }
        let (state, _) = watch::channel(FlightState::Pending);
        let flight = Arc::new(Flight {
            state,
            waiters: AtomicUsize::new(0),
        });
        map.insert(key.to_owned(), flight.clone());
        Begin::Start(Ticket {
            inner: Arc::clone(self),
            key: key.to_owned(),
            flight,
        })
    }

    async fn respond(
        &self,
        e: &Arc<Entry>,
        now: u64,
        head: bool,
        status: CacheStatus,
    ) -> Option<CachedResponse> {
        let body = if head {
            CacheBody::Empty
        } else {
            match &e.body {
                StoredBody::Memory(b) => CacheBody::full(b.clone()),
                StoredBody::Disk { len, crc } => self.disk_body(e, *len, *crc).await?,
            }
        };
        let mut headers = e.out_headers.clone();
        let age = e
            .initial_age_s
            .saturating_add(now.saturating_sub(e.stored_at_ms) / 1000);
        cache_status_headers(&mut headers, &self.config.name, &status, Some(age));
        Some(CachedResponse {
            status: e.status,
            headers,
            body,
            cache_status: status,
        })
    }

    async fn disk_body(&self, e: &Arc<Entry>, len: u64, crc: u32) -> Option<CacheBody> {
        let d = self.disk.as_ref()?;
        let path = d.path(&e.key);
        if len <= self.config.memory_max_body {
            let p = path.clone();
            let read = tokio::task::spawn_blocking(move || disk::read_body(&p, len, crc)).await;
            match read {
                Ok(Ok(buf)) => {
                    let bytes = Bytes::from(buf);
                    let mut promoted = Entry::clone(e);
                    promoted.body = StoredBody::Memory(bytes.clone());
                    self.memory.insert(e.key.clone(), Arc::new(promoted));
                    Some(CacheBody::full(bytes))
                }
                _ => {
                    tracing::warn!(key = %e.key, "cache: corrupt or unreadable disk entry dropped");
                    self.forget(&e.key);
                    None
                }
            }
        } else {
            let verified =
                tokio::task::spawn_blocking(move || disk::open_verified(&path, len, crc)).await;
            let Ok(Ok(file)) = verified else {
                tracing::warn!(key = %e.key, "cache: corrupt or unreadable disk entry dropped");
                self.forget(&e.key);
                return None;
            };
            let (tx, body) = ChunkSender::new(self.config.client_buffer, Some(len));
            tokio::spawn(stream_file(tokio::fs::File::from_std(file), len, crc, tx));
            Some(body)
        }
    }

    /// Serves a waiting request from a fill in progress (the file being
    /// written). `None` when the file is already gone (stored: look up again).
    async fn follow_fill(&self, s: &Streaming, fwd: Fwd, head: bool) -> Option<CachedResponse> {
        let now = self.clock.now_ms();
        let status = CacheStatus {
            fwd: Some(fwd),
            stored: true,
            collapsed: true,
            ttl: Some(
                i64::try_from((i128::from(s.fresh_until_ms) - i128::from(now)).div_euclid(1000))
                    .unwrap_or(0),
            ),
            ..CacheStatus::default()
        };
        let body = if head {
            CacheBody::Empty
        } else {
            let file = tokio::fs::File::open(&s.path).await.ok()?;
            let (tx, body) = ChunkSender::new(self.config.client_buffer, Some(s.len));
            tokio::spawn(follow(file, 0, s.progress.clone(), tx));
            body
        };
        let mut headers = s.headers.clone();
        cache_status_headers(&mut headers, &self.config.name, &status, None);
        Some(CachedResponse {
            status: s.status,
            headers,
            body,
            cache_status: status,
        })
    }

    fn note_buffer(&self, n: u64) {
        self.buffer_peak.fetch_max(n, Ordering::Relaxed);
    }
}

/// Streams a verified file's body to a channel, checking the checksum again
/// as it goes (defence in depth: the same open file was just verified). An
/// async task (each read is a short blocking call inside `tokio::fs`), so a
/// slow client holds no blocking-pool thread.
async fn stream_file(file: tokio::fs::File, len: u64, crc: u32, tx: ChunkSender) {
    use tokio::io::AsyncReadExt;
    let mut f = file.take(len);
    let mut h = crc32fast::Hasher::new();
    let mut seen = 0u64;
    loop {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let n = match f.read_buf(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                tx.send(Err(e)).await;
                return;
            }
        };
        h.update(&buf);
        seen += n as u64;
        if !tx.send(Ok(buf.freeze())).await {
            return;
        }
    }
    if seen != len || h.finalize() != crc {
        tx.send(Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "cache body changed while it was read",
        )))
        .await;
    }
}

impl FillGuard {
    /// True when a stored response exists and this fill revalidates it.
    pub fn is_revalidation(&self) -> bool {
        self.previous.as_ref().is_some_and(|e| e.has_validator())
    }

    /// Conditional headers for the origin request (`If-None-Match`,
    /// `If-Modified-Since`) when revalidating a stored response.
    pub fn revalidation_headers(&self) -> Option<HeaderMap> {
        let prev = self.previous.as_ref()?;
        let h = policy::revalidation_headers(&prev.origin_headers);
        (!h.is_empty()).then_some(h)
    }

    /// The headers to send to the origin for this fill: the client's, without
    /// its own conditional and range headers (the cache needs a whole
    /// response), plus the revalidation headers when revalidating.
    pub fn origin_headers(&self, client: &HeaderMap) -> HeaderMap {
        let mut h = client.clone();
        for name in policy::CLIENT_CONDITIONALS {
            h.remove(name);
        }
        if let Some(cond) = self.revalidation_headers() {
            for (k, v) in cond {
                if let Some(k) = k {
                    h.insert(k, v);
                }
            }
        }
        h
    }

    /// The origin answered `304 Not Modified` to a revalidation: refreshes the
    /// stored entry (headers and freshness, RFC 9111 §4.3.4) and returns it to
    /// serve. `None` when there was nothing to revalidate or its body could no
    /// longer be read. [`FillGuard::store`] does this by itself for a 304.
    pub async fn not_modified(self, parts: &http::response::Parts) -> Option<CachedResponse> {
        if !self.is_revalidation() {
            return None;
        }
        self.refreshed(parts).await
    }

    /// When the origin could not be reached (or answered 5xx): the stored
    /// response if `stale-if-error` still allows it.
    pub async fn stale_if_error(
        &self,
        origin_status: Option<StatusCode>,
    ) -> Option<CachedResponse> {
        let prev = self.previous.as_ref()?;
        let now = self.inner.clock.now_ms();
        if prev.must_revalidate || now >= prev.fresh_until_ms.saturating_add(prev.sie_ms) {
            return None;
        }
        let status = CacheStatus {
            fwd: Some(Fwd::Stale),
            fwd_status: origin_status.map(|s| s.as_u16()),
            ttl: Some(ttl_secs(prev, now)),
            detail: Some("stale-if-error"),
            ..CacheStatus::default()
        };
        self.inner.respond(prev, now, false, status).await
    }

    /// Hands the origin's response to the cache and returns the response for
    /// the client (edge-only headers removed, `Cache-Status` added).
    ///
    /// - a `304` to a revalidation refreshes the stored entry and serves it;
    /// - a 5xx within `stale-if-error` serves the stored entry;
    /// - a storable response streams to the client while a task writes it to
    ///   the memory tier (small) or the disk tier (large, in chunks, never
    ///   whole in memory); waiting requests are released when it is stored;
    /// - anything else passes through untouched.
    ///
    /// `rule` names the inputs of conditional rules that shaped the response
    /// (spec §1.8); they join the key. Must run inside a Tokio runtime.
    pub async fn store<B>(
        self,
        parts: http::response::Parts,
        body: B,
        source: ResponseSource,
        rule: &RuleVary,
    ) -> http::Response<CacheBody>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let inner = self.inner.clone();
        if parts.status == StatusCode::NOT_MODIFIED && self.is_revalidation() {
            if let Some(r) = self.refreshed(&parts).await {
                return r.into_response();
            }
            // The stored body could not be read: pass the 304 on.
            let mut parts = parts;
            inner.finish_pass(&mut parts.headers, self.fwd, parts.status, self.collapsed);
            return http::Response::from_parts(
                parts,
                CacheBody::Origin(Box::pin(MapErr::new(body))),
            );
        }
        if parts.status.is_server_error() {
            if let Some(r) = self.stale_if_error(Some(parts.status)).await {
                return r.into_response();
            }
        }
        let now = inner.clock.now();
        let get = Method::GET;
        let decision = policy::evaluate(
            &PolicyRequest {
                method: &get,
                headers: &self.headers,
            },
            parts.status,
            &parts.headers,
            source,
            now,
        );
        let declared_len = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let decision = match decision {
            Decision::Store(_) if declared_len.is_some_and(|n| n > inner.config.max_body) => {
                Decision::DontStore(NotStored::TooLarge)
            }
            d => d,
        };
        let plan = match decision {
            Decision::Store(plan) => plan,
            Decision::DontStore(reason) => {
                let now_ms = inner.clock.now_ms();
                let lasting = !matches!(
                    reason,
                    NotStored::Status | NotStored::Authorization | NotStored::Method
                );
                if lasting && self.fwd == Fwd::UriMiss {
                    let until_ms = now_ms.saturating_add(
                        u64::try_from(inner.config.pass_ttl.as_millis()).unwrap_or(u64::MAX),
                    );
                    inner
                        .specs
                        .insert(self.primary.clone(), SpecState::Pass { until_ms });
                }
                if lasting {
                    if let Some(prev) = &self.previous {
                        inner.forget(&prev.key);
                    }
                }
                let mut parts = parts;
                inner.finish_pass(&mut parts.headers, self.fwd, parts.status, self.collapsed);
                return http::Response::from_parts(
                    parts,
                    CacheBody::Origin(Box::pin(MapErr::new(body))),
                );
            }
        };

        let spec = VariantSpec::from_response(&plan.headers, rule);
        let mut key = String::with_capacity(self.primary.len() + 64);
        key.push_str(&self.primary);
        key.push('\u{0}');
        spec.variant_key(
            &VariantInput {
                query: self.query.as_deref(),
                headers: &self.headers,
                country: self.country.as_deref(),
            },
            &mut key,
        );
        let now_ms = inner.clock.now_ms();
        let stamp = inner.generations.stamp(&self.site, &plan.tags);
        let mut out_headers = plan.headers.clone();
        policy::downstream_headers(&mut out_headers);
        let ttl_ms = u64::try_from(plan.ttl.as_millis()).unwrap_or(u64::MAX);
        let entry = Entry {
            key,
            primary: self.primary.clone(),
            site: self.site.clone(),
            deploy: self.deploy.clone(),
            source,
            rule: rule.clone(),
            status: parts.status,
            origin_headers: plan.headers,
            out_headers,
            body: StoredBody::Memory(Bytes::new()),
            stored_at_ms: now_ms,
            fresh_until_ms: now_ms.saturating_add(ttl_ms),
            initial_age_s: plan.initial_age.as_secs(),
            swr_ms: u64::try_from(plan.swr.as_millis()).unwrap_or(u64::MAX),
            sie_ms: u64::try_from(plan.sie.as_millis()).unwrap_or(u64::MAX),
            must_revalidate: plan.must_revalidate,
            tags: plan.tags,
            keep_across_deploys: plan.keep_across_deploys,
            stamp,
        };
        let mut client_headers = entry.out_headers.clone();
        let status = CacheStatus {
            fwd: Some(self.fwd),
            fwd_status: Some(parts.status.as_u16()),
            stored: true,
            collapsed: self.collapsed,
            ttl: Some(plan.ttl.as_secs().try_into().unwrap_or(i64::MAX)),
            ..CacheStatus::default()
        };
        let age = (entry.initial_age_s > 0).then_some(entry.initial_age_s);
        cache_status_headers(&mut client_headers, &inner.config.name, &status, age);
        let budget = inner
            .config
            .client_buffer
            .max(usize::try_from(inner.config.memory_max_body).unwrap_or(usize::MAX));
        let (tx, client_body) = ChunkSender::new(budget, declared_len);
        let spec = Arc::new(spec);
        tokio::spawn(fill(
            inner,
            body,
            entry,
            spec,
            self.ticket,
            tx,
            declared_len,
        ));
        let mut resp = http::Response::new(client_body);
        *resp.status_mut() = parts.status;
        *resp.headers_mut() = client_headers;
        *resp.version_mut() = parts.version;
        resp
    }

    /// A 304 refreshed the stored entry: update its headers and freshness.
    async fn refreshed(&self, parts: &http::response::Parts) -> Option<CachedResponse> {
        let inner = &self.inner;
        let prev = self.previous.as_ref()?;
        let merged = policy::merge_not_modified(&prev.origin_headers, &parts.headers);
        let get = Method::GET;
        let decision = policy::evaluate(
            &PolicyRequest {
                method: &get,
                headers: &self.headers,
            },
            prev.status,
            &merged,
            prev.source,
            inner.clock.now(),
        );
        let now = inner.clock.now_ms();
        let Decision::Store(plan) = decision else {
            // No longer storable: serve the stored body once, then forget it.
            let mut once = Entry::clone(prev);
            once.out_headers = merged.clone();
            policy::downstream_headers(&mut once.out_headers);
            let status = CacheStatus {
                fwd: Some(Fwd::Stale),
                fwd_status: Some(304),
                collapsed: self.collapsed,
                ..CacheStatus::default()
            };
            let r = inner.respond(&Arc::new(once), now, false, status).await;
            inner.forget(&prev.key);
            return r;
        };
        let mut out_headers = plan.headers.clone();
        policy::downstream_headers(&mut out_headers);
        let update = |e: &Entry| -> Entry {
            let mut n = Entry::clone(e);
            n.origin_headers = plan.headers.clone();
            n.out_headers = out_headers.clone();
            n.stored_at_ms = now;
            n.fresh_until_ms =
                now.saturating_add(u64::try_from(plan.ttl.as_millis()).unwrap_or(u64::MAX));
            n.initial_age_s = plan.initial_age.as_secs();
            n.swr_ms = u64::try_from(plan.swr.as_millis()).unwrap_or(u64::MAX);
            n.sie_ms = u64::try_from(plan.sie.as_millis()).unwrap_or(u64::MAX);
            n.must_revalidate = plan.must_revalidate;
            n.tags = plan.tags.clone();
            n.keep_across_deploys = plan.keep_across_deploys;
            n.stamp = inner.generations.stamp(&n.site, &n.tags);
            n
        };
        let fresh = Arc::new(update(prev));
        if matches!(fresh.body, StoredBody::Memory(_)) {
            inner.memory.insert(fresh.key.clone(), fresh.clone());
        }
        if let Some(d) = &inner.disk {
            if let Some(on_disk) = d.get(&prev.key) {
                let updated = Arc::new(update(&on_disk));
                let inner2 = inner.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    if let Some(d) = &inner2.disk {
                        if d.rewrite_meta(updated.clone()).is_err() {
                            d.remove(&updated.key);
                        }
                    }
                })
                .await;
            }
        }
        let status = CacheStatus {
            fwd: Some(Fwd::Stale),
            fwd_status: Some(304),
            stored: true,
            collapsed: self.collapsed,
            ttl: Some(ttl_secs(&fresh, now)),
            ..CacheStatus::default()
        };
        inner.respond(&fresh, now, false, status).await
    }
}

impl Inner {
    fn finish_pass(&self, headers: &mut HeaderMap, fwd: Fwd, status: StatusCode, collapsed: bool) {
        policy::downstream_headers(headers);
        let s = CacheStatus {
            fwd: Some(fwd),
            fwd_status: Some(status.as_u16()),
            collapsed,
            ..CacheStatus::default()
        };
        cache_status_headers(headers, &self.config.name, &s, None);
    }
}

/// Where a fill keeps the body so far.
enum Sink {
    /// Small so far: chunks in memory.
    Memory(Vec<Bytes>, u64),
    /// Large: a temporary file in the disk tier.
    File(PathBuf, tokio::fs::File),
    /// Not storing any more (too large, write error, no disk tier).
    Abandoned,
}

/// Reads the origin body, forwards every chunk to the client (bounded
/// lag: back-pressure once the client is `client_buffer` bytes behind) and
/// writes it to the cache. Keeps going if the client leaves, so requests
/// waiting for the fill still get it.
#[allow(clippy::too_many_arguments)]
async fn fill<B>(
    inner: Arc<Inner>,
    body: B,
    mut entry: Entry,
    spec: Arc<VariantSpec>,
    ticket: Ticket,
    tx: ChunkSender,
    declared_len: Option<u64>,
) where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut body = MapErr::new(body);
    let mut sink = Sink::Memory(Vec::new(), 0);
    let mut hasher = crc32fast::Hasher::new();
    let mut total = 0u64;
    // The client's channel while this task feeds it; `None` once the client
    // left or was handed to a follower of the file.
    let mut client = Some(tx);
    let mut sent = 0u64;
    let progress = ProgressGuard(watch::channel(Progress::default()).0);
    loop {
        let frame = poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await;
        let chunk = match frame {
            None => break,
            Some(Err(e)) => {
                if let Sink::File(path, _) = &sink {
                    let _ = tokio::fs::remove_file(path).await;
                }
                if let Some(tx) = &client {
                    tx.send(Err(e)).await;
                }
                return;
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(d) => d,
                Err(_) => continue,
            },
        };
        total += chunk.len() as u64;
        if total > inner.config.max_body {
            abandon(&mut sink).await;
        }
        match &mut sink {
            Sink::Abandoned => {}
            Sink::Memory(chunks, held) => {
                hasher.update(&chunk);
                *held += chunk.len() as u64;
                chunks.push(chunk.clone());
                inner.note_buffer(*held);
                if *held > inner.config.memory_max_body {
                    sink = spill(&inner, std::mem::take(chunks)).await;
                    progress.written(total);
                    // Requests waiting for this fill can follow the file.
                    if let (Sink::File(path, _), Some(len)) = (&sink, declared_len) {
                        let streaming = Streaming {
                            status: entry.status,
                            headers: entry.out_headers.clone(),
                            len,
                            fresh_until_ms: entry.fresh_until_ms,
                            path: path.clone(),
                            progress: progress.0.subscribe(),
                        };
                        ticket
                            .flight
                            .state
                            .send_replace(FlightState::Streaming(Arc::new(streaming)));
                    }
                }
            }
            Sink::File(_, f) => {
                hasher.update(&chunk);
                // Flushed chunk by chunk, so a follower reading the file sees
                // every byte counted in `progress`.
                if f.write_all(&chunk).await.is_err() || f.flush().await.is_err() {
                    abandon(&mut sink).await;
                } else {
                    progress.written(total);
                }
            }
        }
        let Some(tx) = &client else {
            if matches!(sink, Sink::Abandoned) {
                return;
            }
            continue;
        };
        // A client lagging by the whole buffer would slow the fill (and the
        // requests waiting for it): from here it reads the file being
        // written instead, at its own pace. Only with a declared length, so
        // storing cannot be abandoned for size under the follower's feet.
        if let (Sink::File(path, _), Some(_)) = (&sink, declared_len) {
            if tx.would_wait(chunk.len()) {
                if let Ok(reader) = tokio::fs::File::open(path).await {
                    if let Some(tx) = client.take() {
                        tokio::spawn(follow(reader, sent, progress.0.subscribe(), tx));
                    }
                    continue;
                }
            }
        }
        if tx.send(Ok(chunk.clone())).await {
            sent += chunk.len() as u64;
        } else {
            client = None;
            if matches!(sink, Sink::Abandoned) {
                return;
            }
        }
    }
    if matches!(sink, Sink::File(..)) {
        progress.finish(total);
    }
    let crc = hasher.finalize();
    // Order matters: the entry is visible before waiters are released, and
    // the client's stream ends only once the entry is written (so "response
    // complete" means "stored").
    match sink {
        Sink::Abandoned => {}
        Sink::Memory(chunks, held) => {
            let mut buf = BytesMut::with_capacity(usize::try_from(held).unwrap_or(0));
            for c in &chunks {
                buf.extend_from_slice(c);
            }
            drop(chunks);
            let bytes = buf.freeze();
            entry.body = StoredBody::Memory(bytes.clone());
            let mem = Arc::new(entry);
            inner.memory.insert(mem.key.clone(), mem.clone());
            inner
                .specs
                .insert(mem.primary.clone(), SpecState::Spec(spec));
            drop(ticket);
            if inner.disk.is_some() {
                let mut on_disk = Entry::clone(&mem);
                on_disk.body = StoredBody::Disk { len: total, crc };
                let on_disk = Arc::new(on_disk);
                let inner2 = inner.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    if let Some(d) = &inner2.disk {
                        if let Err(e) = d.write_whole(on_disk, &bytes) {
                            tracing::warn!(error = %e, "cache: disk write failed");
                        }
                    }
                })
                .await;
            }
        }
        Sink::File(path, mut f) => {
            if f.flush().await.is_err() {
                let _ = tokio::fs::remove_file(&path).await;
                return;
            }
            drop(f);
            entry.body = StoredBody::Disk { len: total, crc };
            let primary = entry.primary.clone();
            let e = Arc::new(entry);
            let inner2 = inner.clone();
            let committed = tokio::task::spawn_blocking(move || match &inner2.disk {
                Some(d) => d.commit(&path, e).map_err(|err| (err, path)),
                None => Err((io::Error::other("no disk tier"), path)),
            })
            .await;
            match committed {
                Ok(Ok(())) => {
                    inner.specs.insert(primary, SpecState::Spec(spec));
                }
                Ok(Err((err, path))) => {
                    tracing::warn!(error = %err, "cache: disk commit failed");
                    let _ = tokio::fs::remove_file(&path).await;
                }
                Err(_) => {}
            }
        }
    }
    drop(client);
}

/// How far a fill has written its file.
#[derive(Debug, Clone, Copy, Default)]
struct Progress {
    /// Bytes written and flushed.
    written: u64,
    /// `Some(true)`: the body is complete; `Some(false)`: the fill failed.
    done: Option<bool>,
}

/// Publishes a fill's progress; a fill that ends without finishing reports
/// failure to its followers.
struct ProgressGuard(watch::Sender<Progress>);

impl ProgressGuard {
    fn written(&self, n: u64) {
        self.0.send_modify(|p| p.written = n);
    }

    fn finish(&self, n: u64) {
        self.0.send_modify(|p| {
            p.written = n;
            p.done = Some(true);
        });
    }
}

impl Drop for ProgressGuard {
    fn drop(&mut self) {
        self.0.send_modify(|p| {
            if p.done.is_none() {
                p.done = Some(false);
            }
        });
    }
}

/// Feeds a client that fell behind a fill from the file the fill is
/// writing, starting at `offset`, following it as it grows.
async fn follow(
    mut file: tokio::fs::File,
    mut offset: u64,
    mut progress: watch::Receiver<Progress>,
    tx: ChunkSender,
) {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    if let Err(e) = file.seek(io::SeekFrom::Start(offset)).await {
        tx.send(Err(e)).await;
        return;
    }
    let mut closed = false;
    loop {
        let p = *progress.borrow_and_update();
        while offset < p.written {
            let want = usize::try_from((p.written - offset).min(64 * 1024)).unwrap_or(64 * 1024);
            let mut buf = BytesMut::with_capacity(want);
            match (&mut file).take(want as u64).read_buf(&mut buf).await {
                Ok(0) => {
                    tx.send(Err(io::Error::other("cache fill file ended early")))
                        .await;
                    return;
                }
                Ok(n) => {
                    offset += n as u64;
                    if !tx.send(Ok(buf.freeze())).await {
                        return;
                    }
                }
                Err(e) => {
                    tx.send(Err(e)).await;
                    return;
                }
            }
        }
        match p.done {
            Some(true) => return,
            Some(false) => {
                tx.send(Err(io::Error::other("origin body failed"))).await;
                return;
            }
            None if closed => {
                tx.send(Err(io::Error::other("cache fill stopped"))).await;
                return;
            }
            None => {}
        }
        if progress.changed().await.is_err() {
            closed = true;
        }
    }
}

/// Moves a fill that outgrew the memory tier to a temporary file.
async fn spill(inner: &Inner, chunks: Vec<Bytes>) -> Sink {
    let Some(d) = &inner.disk else {
        return Sink::Abandoned;
    };
    let path = d.temp_path();
    let Ok(mut f) = tokio::fs::File::create(&path).await else {
        return Sink::Abandoned;
    };
    for c in &chunks {
        if f.write_all(c).await.is_err() {
            let _ = tokio::fs::remove_file(&path).await;
            return Sink::Abandoned;
        }
    }
    if f.flush().await.is_err() {
        let _ = tokio::fs::remove_file(&path).await;
        return Sink::Abandoned;
    }
    Sink::File(path, f)
}

async fn abandon(sink: &mut Sink) {
    if let Sink::File(path, _) = &*sink {
        let _ = tokio::fs::remove_file(path).await;
    }
    *sink = Sink::Abandoned;
}
