//! The engine: limits, the host interface, the isolate pool and `invoke`.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::bundle::Bundle;
use crate::isolate::{lock, Blank, Isolate};
use crate::types::{
    ErrorKind, FunctionConfig, HostRequest, HttpResponse, Invocation, InvocationError,
    InvocationOutcome, InvocationRequest, Telemetry,
};

/// Limits applied to isolates and invocations.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Memory limit of one isolate (QuickJS heap). Default 128 MiB.
    pub memory_bytes: usize,
    /// JS stack limit. Default 512 KiB.
    pub stack_bytes: usize,
    /// CPU-time budget of one invocation (time spent running JS, including
    /// `waitUntil` work and module evaluation on a cold start). Default 50 ms.
    pub cpu_time: Duration,
    /// Wall-clock limit of one invocation. Default 40 s.
    pub wall_time: Duration,
    /// Timeout of one host call (`fetch`, `context.next()`). Default 30 s.
    pub host_call_timeout: Duration,
    /// Host calls allowed in one invocation. Default 50.
    pub max_host_calls: u32,
    /// Largest request body a function may send through `fetch`/`next()`.
    /// Default 16 MiB.
    pub max_host_body_bytes: usize,
    /// Console lines kept per invocation. Default 200.
    pub max_console_lines: usize,
    /// Longest console line kept (longer ones are cut). Default 8 KiB.
    pub max_console_line_bytes: usize,
    /// Warm isolates kept across all bundles (LRU). Default 64.
    pub max_isolates: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 128 << 20,
            stack_bytes: 512 << 10,
            cpu_time: Duration::from_millis(50),
            wall_time: Duration::from_secs(40),
            host_call_timeout: Duration::from_secs(30),
            max_host_calls: 50,
            max_host_body_bytes: 16 << 20,
            max_console_lines: 200,
            max_console_line_bytes: 8 << 10,
            max_isolates: 64,
        }
    }
}

/// A failed host call; the function sees a rejected promise (`TypeError`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct HostError {
    pub message: String,
}

impl HostError {
    pub fn new(message: impl Into<String>) -> HostError {
        HostError {
            message: message.into(),
        }
    }
}

/// What the embedder provides to a running function.
#[async_trait]
pub trait Host: Send + Sync {
    /// `context.next()` / `context.next(request)`: the rest of Ledge's
    /// pipeline (next edge function, rules, static files) for this request.
    async fn next(&self, request: HostRequest) -> Result<HttpResponse, HostError>;
    /// `fetch()`: the node's origin client, with the tenant's outbound policy.
    async fn fetch(&self, request: HostRequest) -> Result<HttpResponse, HostError>;
    /// The next bytes of a body this host kept ([`HttpResponse::body_handle`]),
    /// `None` at its end. A host that keeps no bodies has none to read.
    async fn read_body(&self, handle: u32) -> Result<Option<Vec<u8>>, HostError> {
        Err(HostError::new(format!("no response body {handle} to read")))
    }
}

/// Something that runs edge functions: the in-process [`Engine`] or a pool of
/// sandboxed worker processes. The edge holds one `Arc<dyn Runner>`.
#[async_trait]
pub trait Runner: Send + Sync {
    /// Runs `bundle`'s default export for one request; host calls
    /// (`context.next()`, `fetch`) go to `host`.
    async fn invoke(
        &self,
        bundle: &Bundle,
        request: &InvocationRequest,
        host: &dyn Host,
    ) -> Invocation;

    /// Drops warm isolates of every bundle with this id (a deploy that will
    /// not run again).
    fn evict(&self, bundle_id: &str);
}

#[async_trait]
impl Runner for Engine {
    async fn invoke(
        &self,
        bundle: &Bundle,
        request: &InvocationRequest,
        host: &dyn Host,
    ) -> Invocation {
        Engine::invoke(self, bundle, request, host).await
    }

    fn evict(&self, bundle_id: &str) {
        Engine::evict(self, bundle_id)
    }
}

/// The lock, unless another thread holds it.
fn try_lock<T>(m: &Mutex<T>) -> Option<std::sync::MutexGuard<'_, T>> {
    match m.try_lock() {
        Ok(g) => Some(g),
        Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => None,
    }
}

/// Evicted isolates kept for [`Engine::idle_work`] to drop (dropping one
/// costs about a third of making one), and the engine memory they may hold
/// together; past either, an eviction drops its isolate at once.
const MAX_EVICTED: usize = 8;
const MAX_EVICTED_BYTES: usize = 16 << 20;

/// An idle isolate in [`Engine`]'s pool, beside its bundle key's hash: a
/// checkout compares the hashes in the pool's own memory, and reads an
/// isolate (one cache miss each, cold for all but the recently used) only
/// where they match.
struct Warm {
    key_hash: u64,
    /// (Boxed: an isolate moves in and out for every invocation, and its
    /// struct is several hundred bytes.)
    isolate: Box<Isolate>,
}

/// Runs edge functions in a pool of warm isolates.
///
/// Work that need not delay an answer waits for [`Engine::idle_work`],
/// which the embedder calls when the CPU is otherwise idle (the worker
/// process, from a thread of its own in the `SCHED_IDLE` class): dropping evicted
/// isolates, and making a blank isolate (runtime, context and glue, no
/// bundle) for the next cold start, which then only evaluates the tenant's
/// modules. An embedder that never calls it gets neither: evicted isolates
/// are then dropped at once.
pub struct Engine {
    limits: Limits,
    /// Idle isolates, least recently used first.
    idle: Mutex<VecDeque<Warm>>,
    /// The blank isolate the next cold start takes, if one was made.
    spare: Mutex<Option<Blank>>,
    /// Evicted isolates not dropped yet.
    // Boxed as in `idle`, whose boxes move here as they are.
    #[allow(clippy::vec_box)]
    evicted: Mutex<Vec<Box<Isolate>>>,
    /// Whether `idle_work` was ever called: until then, an evicted isolate
    /// is dropped at once.
    deferring: AtomicBool,
    /// Blank isolates `idle_work` made.
    blanks_made: AtomicU64,
}

impl Engine {
    /// Also compiles the glue to bytecode (once per process) if no engine
    /// did yet. Otherwise the first isolate made compiles it, and an
    /// invocation's cold start could wait for the idle-work thread to finish
    /// doing so: a thread of the lowest priority, which gets no CPU while
    /// anything else runs, and which the node does not count as running.
    pub fn new(limits: Limits) -> Engine {
        crate::isolate::compile_glue_now();
        Engine {
            limits,
            idle: Mutex::new(VecDeque::new()),
            spare: Mutex::new(None),
            evicted: Mutex::new(Vec::new()),
            deferring: AtomicBool::new(false),
            blanks_made: AtomicU64::new(0),
        }
    }

    /// Does one piece of deferred work: drops one evicted isolate, or else
    /// makes the blank isolate for the next cold start if there is none.
    /// Returns whether there may be more (call it again while idle). Each
    /// piece takes about as long as a cold start at most, and yields the
    /// thread's CPU (`sched_yield`) between its steps of a few hundred
    /// microseconds: a thread of lower priority that runs it lets others
    /// that were waiting for the CPU go first.
    pub fn idle_work(&self) -> bool {
        self.deferring.store(true, Ordering::Relaxed);
        if self.drop_one_evicted() {
            return true;
        }
        if lock(&self.spare).is_some() {
            return false;
        }
        match Blank::new_pausing(&self.limits, &mut std::thread::yield_now) {
            Ok(blank) => {
                *lock(&self.spare) = Some(blank);
                self.blanks_made.fetch_add(1, Ordering::Relaxed);
                !lock(&self.evicted).is_empty()
            }
            // Cold starts make their own (and report why that fails).
            Err(_) => false,
        }
    }

    /// Drops the evicted isolates now (part of [`Engine::idle_work`]).
    pub fn drop_evicted(&self) {
        while self.drop_one_evicted() {}
    }

    fn drop_one_evicted(&self) -> bool {
        let one = lock(&self.evicted).pop();
        match one {
            Some(isolate) => {
                isolate.dispose(&mut std::thread::yield_now);
                true
            }
            None => false,
        }
    }

    /// Whether a blank isolate is ready for the next cold start.
    pub fn has_spare(&self) -> bool {
        lock(&self.spare).is_some()
    }

    /// Blank isolates [`Engine::idle_work`] has made so far.
    pub fn blanks_made(&self) -> u64 {
        self.blanks_made.load(Ordering::Relaxed)
    }

    /// Evicted isolates waiting to be dropped.
    pub fn evicted_isolates(&self) -> usize {
        lock(&self.evicted).len()
    }

    /// A new isolate for `bundle`: from the blank one if it is ready.
    fn cold(&self, bundle: &Bundle) -> Result<Box<Isolate>, InvocationError> {
        // Never waits for `idle_work` (another thread may be storing one).
        let spare = try_lock(&self.spare).and_then(|mut s| s.take());
        match spare {
            Some(blank) => Isolate::from_blank(blank, bundle, &self.limits).map(Box::new),
            None => Isolate::new(bundle, &self.limits).map(Box::new),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Idle warm isolates in the pool.
    pub fn idle_isolates(&self) -> usize {
        lock(&self.idle).len()
    }

    /// Drops the warm isolates of every bundle with this id.
    pub fn evict(&self, bundle_id: &str) {
        let prefix = format!("{bundle_id}#");
        let dropped: Vec<Warm> = {
            let mut idle = lock(&self.idle);
            let (drop, keep): (Vec<_>, Vec<_>) = idle
                .drain(..)
                .partition(|w| w.isolate.key.starts_with(&prefix));
            idle.extend(keep);
            drop
        };
        drop(dropped);
    }

    /// Evaluates the bundle (on a warm isolate if there is one) and returns
    /// its inline `export const config`, or `None` if it has none.
    pub fn config(&self, bundle: &Bundle) -> Result<Option<FunctionConfig>, InvocationError> {
        let isolate = match self.checkout(bundle) {
            Some(i) => i,
            None => self.cold(bundle)?,
        };
        let config = isolate.config.clone();
        self.checkin(isolate);
        Ok(config)
    }

    /// Runs the bundle's default export for one request.
    pub async fn invoke(
        &self,
        bundle: &Bundle,
        request: &InvocationRequest,
        host: &dyn Host,
    ) -> Invocation {
        self.invoke_cow(bundle, Cow::Borrowed(request), host).await
    }

    /// [`Engine::invoke`] with a request it may take apart: its text and
    /// body move into the function's `Request` instead of being copied.
    pub async fn invoke_owned(
        &self,
        bundle: &Bundle,
        request: InvocationRequest,
        host: &dyn Host,
    ) -> Invocation {
        self.invoke_cow(bundle, Cow::Owned(request), host).await
    }

    async fn invoke_cow(
        &self,
        bundle: &Bundle,
        request: Cow<'_, InvocationRequest>,
        host: &dyn Host,
    ) -> Invocation {
        let started = Instant::now();
        let mut telemetry = Telemetry::default();
        // When the invocation starts (its wall time counts from there): now,
        // or after a cold isolate was made.
        let mut begun = started;
        let mut isolate = match self.checkout(bundle) {
            Some(i) => i,
            None => {
                telemetry.cold_start = true;
                let made = self.cold(bundle);
                begun = Instant::now();
                match made {
                    Ok(i) => i,
                    Err(e) => {
                        telemetry.duration = started.elapsed();
                        return Invocation {
                            outcome: InvocationOutcome::Error(e),
                            set_cookies: Vec::new(),
                            telemetry,
                        };
                    }
                }
            }
        };
        let (outcome, set_cookies) = isolate
            .invoke(request, host, &self.limits, &mut telemetry, begun)
            .await;
        telemetry.duration = started.elapsed();
        self.checkin(isolate);
        Invocation {
            outcome,
            set_cookies,
            telemetry,
        }
    }

    fn checkout(&self, bundle: &Bundle) -> Option<Box<Isolate>> {
        let mut idle = lock(&self.idle);
        let hash = bundle.key_hash();
        let at = idle
            .iter()
            .rposition(|w| w.key_hash == hash && w.isolate.key == bundle.key())?;
        idle.remove(at).map(|w| w.isolate)
    }

    fn checkin(&self, isolate: Box<Isolate>) {
        if isolate.poisoned {
            return;
        }
        let evicted = {
            let mut idle = lock(&self.idle);
            idle.push_back(Warm {
                key_hash: isolate.key_hash,
                isolate,
            });
            let excess = idle.len().saturating_sub(self.limits.max_isolates);
            idle.drain(..excess).map(|w| w.isolate).collect::<Vec<_>>()
        };
        // (The usual case, a warm isolate back in the pool, stops here.)
        if evicted.is_empty() || !self.deferring.load(Ordering::Relaxed) {
            drop(evicted);
            return;
        }
        // Dropped by `idle_work`, after this invocation's answer is out
        // (at once if `idle_work` holds the list).
        let mut now = Vec::new();
        match try_lock(&self.evicted) {
            Some(mut kept) => {
                let mut bytes: usize = kept.iter().map(|i| i.memory_used()).sum();
                for isolate in evicted {
                    let size = isolate.memory_used();
                    if kept.len() < MAX_EVICTED && bytes + size <= MAX_EVICTED_BYTES {
                        bytes += size;
                        kept.push(isolate);
                    } else {
                        now.push(isolate);
                    }
                }
            }
            None => now = evicted,
        }
        drop(now);
    }
}

impl InvocationError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> InvocationError {
        InvocationError {
            kind,
            message: message.into(),
        }
    }
}
