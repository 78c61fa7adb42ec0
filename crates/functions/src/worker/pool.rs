//! The node's side: spawning, feeding and supervising worker processes.

use std::collections::{HashMap, HashSet, VecDeque};

/// The hasher of the maps every invocation looks up.
type Fast = foldhash::fast::RandomState;
use std::ffi::OsString;
use std::io::{self, BufReader, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::oneshot;

use crate::bundle::Bundle;
use crate::engine::{Host, Limits, Runner};
use crate::isolate::lock;
use crate::types::{
    ErrorKind, HostRequest, Invocation, InvocationError, InvocationOutcome, InvocationRequest,
    Telemetry,
};
use crate::worker::mailbox::{inbox, Delivery, Inbox, Mailbox};
use crate::worker::protocol::Beside;
use crate::worker::protocol::{self, CallKind, HostOutcome, InvokeRef, ToParent, ToWorker};
use crate::worker::sandbox::SandboxReport;

thread_local! {
    /// This runtime thread's mailbox for workers' answers (see
    /// [`crate::worker::mailbox`]).
    static MAILBOX: std::cell::RefCell<Option<Arc<Mailbox<Event>>>> =
        const { std::cell::RefCell::new(None) };
}

/// How to start and run the workers. [`WorkerOptions::new`] gives defaults.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// The program of a worker (the node's own binary) and its arguments
    /// (`function-worker`). It gets the socket as fd 0, stdout on
    /// `/dev/null`, the node's stderr, and only the variables in `envs`.
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub envs: Vec<(OsString, OsString)>,
    /// Worker processes. Default: the available parallelism (at least 1).
    pub workers: usize,
    /// Limits of every worker's engine.
    pub limits: Limits,
    /// Bundles a worker keeps loaded (LRU). Default 256.
    pub max_bundles: usize,
    /// Runnable invocations (sent and not waiting for a host call) a worker
    /// may have queued: at this many it gets no new invocation. An invocation
    /// of a CPU-heavy bundle counts as this many; one of a tiny bundle (see
    /// `tiny_below`) as a sixteenth. Default 4.
    pub spill_after: usize,
    /// An invocation that used less CPU time than this makes its bundle
    /// tiny: sixteen of its invocations count as one light one, so a worker
    /// takes up to `16 × spill_after` of them (at most that many times this
    /// much queued work). Default 250 µs.
    pub tiny_below: Duration,
    /// A worker that owes an answer and has sent nothing for this long is
    /// busy running JavaScript: it gets no new invocation. Default 1 ms.
    pub stall_after: Duration,
    /// An invocation that used this much CPU time (or hit the CPU limit)
    /// makes its bundle CPU-heavy: its invocations then only go to a worker
    /// with nothing else runnable, and nothing else joins them. Default 4 ms.
    pub heavy_after: Duration,
    /// Invocations of one tenant (the deploy: the bundle id before its `/`)
    /// waiting for a worker, beyond which more fail at once with
    /// [`ErrorKind::Overloaded`]. Default 1024.
    pub max_queued: usize,
    /// An invocation without `Done` by `limits.wall_time + hang_grace` means
    /// the worker hangs: it is killed (the monitor thread checks every
    /// `ping_interval`). Default 2 s.
    pub hang_grace: Duration,
    /// Pings: one every `ping_interval`; no answer within `ping_timeout`
    /// (at least 4 × `limits.cpu_time`) and the worker is killed. Defaults 1 s
    /// and 5 s.
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    /// Longest wait before respawning a worker that keeps dying (the wait
    /// doubles from 10 ms while workers live less than 5 s). Default 5 s.
    pub max_backoff: Duration,
    /// How long `invoke` waits for a worker when none is running. Default 2 s.
    pub spawn_wait: Duration,
}

impl WorkerOptions {
    pub fn new(program: impl Into<PathBuf>, args: Vec<OsString>) -> WorkerOptions {
        WorkerOptions {
            program: program.into(),
            args,
            envs: Vec::new(),
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            limits: Limits::default(),
            max_bundles: 256,
            spill_after: 4,
            tiny_below: Duration::from_micros(250),
            stall_after: Duration::from_millis(1),
            heavy_after: Duration::from_millis(4),
            max_queued: 1024,
            hang_grace: Duration::from_secs(2),
            ping_interval: Duration::from_secs(1),
            ping_timeout: Duration::from_secs(5),
            max_backoff: Duration::from_secs(5),
            spawn_wait: Duration::from_secs(2),
        }
    }
}

/// Runs edge functions in sandboxed worker processes; see [`crate::worker`].
pub struct WorkerPool {
    inner: Arc<Inner>,
}

struct Inner {
    opts: WorkerOptions,
    slots: Vec<Slot>,
    next_id: AtomicU64,
    restarts: AtomicU64,
    shutdown: AtomicBool,
    epoch: Instant,
    /// Invocations waiting for a worker, by tenant.
    sched: Mutex<Sched>,
    /// How many wait in `sched` (read without the lock on the fast path).
    queued: AtomicUsize,
    /// CPU appetite of bundles, by a hash of their key: 0 unknown, `TINY`,
    /// `LIGHT`, above that heavy (set to `HEAVY` by a heavy invocation,
    /// lowered by each light or tiny one).
    heat: Box<[AtomicU8]>,
}

const HEAT_SLOTS: usize = 1024;
const TINY: u8 = 1;
const LIGHT: u8 = 2;
const HEAVY: u8 = 10;
/// Weight of a light invocation; a tiny one weighs 1.
const UNIT: i64 = 16;

/// The node-side queue: FIFO per tenant, tenants served round-robin.
#[derive(Default)]
struct Sched {
    groups: HashMap<String, VecDeque<Waiter>, Fast>,
    /// Tenants with waiters, the next to be served first.
    order: VecDeque<String>,
    next_seq: u64,
}

struct Waiter {
    seq: u64,
    home: usize,
    weight: i64,
    tx: oneshot::Sender<Claim>,
}

/// A place on a worker: `weight` counted in its `load` until the invocation
/// is registered (the count moves to its [`Call`]) or the claim is dropped.
struct Claim {
    conn: Arc<Conn>,
    weight: i64,
    armed: bool,
}

impl Claim {
    /// Gives the place back without waking waiters (the caller does).
    fn release_quietly(mut self) {
        self.armed = false;
        self.conn.load.fetch_sub(self.weight, Ordering::Relaxed);
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if self.armed {
            self.conn.load.fetch_sub(self.weight, Ordering::Relaxed);
            if let Some(inner) = self.conn.pool.upgrade() {
                inner.pump();
            }
        }
    }
}

/// Takes a waiter out of the queue if its invocation stops waiting.
struct Queued<'a> {
    inner: &'a Inner,
    group: String,
    seq: u64,
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        let mut sched = lock(&self.inner.sched);
        let Some(q) = sched.groups.get_mut(&self.group) else {
            return;
        };
        let before = q.len();
        q.retain(|w| w.seq != self.seq);
        if q.len() < before {
            self.inner.queued.fetch_sub(1, Ordering::Relaxed);
        }
        if q.is_empty() {
            sched.groups.remove(&self.group);
            sched.order.retain(|g| *g != self.group);
        }
    }
}

#[derive(Default)]
struct Slot {
    current: Mutex<Option<Arc<Conn>>>,
}

/// What a worker tells one invocation.
enum Event {
    HostCall {
        call: u32,
        kind: CallKind,
        request: HostRequest,
    },
    Done(Invocation),
    UnknownBundle,
    Lost(String),
}

/// Where an answer for an invocation goes.
struct Route {
    tx: Inbox<Event>,
    mailbox: Option<Arc<Mailbox<Event>>>,
}

/// One running worker process.
struct Conn {
    pool: Weak<Inner>,
    pid: u32,
    child: Mutex<Child>,
    sock: UnixStream,
    out: Mutex<OutState>,
    out_cv: Condvar,
    state: Mutex<ConnState>,
    /// Its runnable work: the weights of its runnable invocations (see
    /// [`Call`]) and of the claims not yet registered.
    load: AtomicI64,
    /// When the worker last made progress or got work while it had none
    /// (ns since the pool's epoch).
    progress_ns: AtomicU64,
    /// The last [`Conn::idle`] check: when, and whether it was running.
    checked_ns: AtomicU64,
    checked_running: AtomicBool,
    ping: Mutex<Option<(u64, Instant)>>,
    sandbox: Mutex<Option<SandboxReport>>,
    /// What its last `Pong` said: a blank isolate is ready; blank isolates
    /// made so far.
    blank: AtomicBool,
    blanks_made: AtomicU64,
    /// Why the node killed it, if it did.
    killed: Mutex<Option<String>>,
}

/// An invocation sent to a worker and not `Done`.
struct Call {
    /// `None` once its `invoke` future is gone (the worker still runs it).
    tx: Option<Inbox<Event>>,
    /// Where its answers go first: its runtime thread's mailbox, if any.
    mailbox: Option<Arc<Mailbox<Event>>>,
    /// Answers owed: 1 + host results sent − frames received. Runnable while
    /// positive (several concurrent host calls make it negative).
    owed: i64,
    /// What it counts in the worker's `load` while runnable (1, or
    /// `spill_after` for a CPU-heavy bundle) ...
    weight: i64,
    /// ... and what it counts now (0 when not runnable, or forgiven).
    counted: i64,
    /// Its bundle's slot in `Inner::heat`.
    heat: usize,
    /// When the worker is hung if it has not sent `Done` (its wall time +
    /// `hang_grace` after it was sent, ns since the pool's epoch): the
    /// monitor thread checks, so no invocation arms a timer of its own.
    due_ns: u64,
}

#[derive(Default)]
struct ConnState {
    dead: bool,
    calls: HashMap<u64, Call, Fast>,
    /// Bundle keys sent with `Load`.
    loaded: HashSet<String, Fast>,
    /// What the last `Invoke` of each bundle key sent beside its request.
    sent: HashMap<String, Beside, Fast>,
}

#[derive(Default)]
struct OutState {
    buf: Vec<u8>,
    /// Someone is writing `buf` out; appenders just append.
    flushing: bool,
    /// The socket was full: the writer thread owns the flush.
    handoff: bool,
    /// A task will flush `buf` soon ([`Conn::send_soon`]).
    scheduled: bool,
    closed: bool,
}

impl WorkerPool {
    /// Spawns the workers (and one supervising thread per worker plus one
    /// pinging them). Fails if the first spawn of a worker fails.
    pub fn start(mut opts: WorkerOptions) -> io::Result<WorkerPool> {
        opts.workers = opts.workers.max(1);
        let inner = Arc::new(Inner {
            slots: (0..opts.workers).map(|_| Slot::default()).collect(),
            opts,
            next_id: AtomicU64::new(1),
            restarts: AtomicU64::new(0),
            shutdown: AtomicBool::new(false),
            epoch: Instant::now(),
            sched: Mutex::new(Sched::default()),
            queued: AtomicUsize::new(0),
            heat: (0..HEAT_SLOTS).map(|_| AtomicU8::new(0)).collect(),
        });
        let pool = WorkerPool {
            inner: Arc::clone(&inner),
        };
        for slot in 0..inner.slots.len() {
            let (conn, reader) = spawn_worker(&inner, slot)?;
            *lock(&inner.slots[slot].current) = Some(Arc::clone(&conn));
            let sup = Arc::clone(&inner);
            std::thread::Builder::new()
                .name(format!("fn-worker-{slot}"))
                .spawn(move || supervise(sup, slot, Some((conn, reader))))?;
        }
        let mon = Arc::clone(&inner);
        std::thread::Builder::new()
            .name("fn-worker-ping".into())
            .spawn(move || monitor(mon))?;
        Ok(pool)
    }

    pub fn workers(&self) -> usize {
        self.inner.slots.len()
    }

    /// Process id of each worker (`None` while one is being replaced).
    pub fn pids(&self) -> Vec<Option<u32>> {
        self.conns()
            .iter()
            .map(|c| c.as_ref().map(|c| c.pid))
            .collect()
    }

    /// What each worker reported about its sandbox (`None` until it is ready).
    pub fn sandbox_reports(&self) -> Vec<Option<SandboxReport>> {
        self.conns()
            .iter()
            .map(|c| c.as_ref().and_then(|c| lock(&c.sandbox).clone()))
            .collect()
    }

    /// Per worker, at its last ping: whether it had a blank isolate ready
    /// for its next cold start (it makes one while idle), and how many it
    /// has made.
    pub fn blank_isolates(&self) -> Vec<Option<(bool, u64)>> {
        self.conns()
            .iter()
            .map(|c| {
                c.as_ref().map(|c| {
                    (
                        c.blank.load(Ordering::Relaxed),
                        c.blanks_made.load(Ordering::Relaxed),
                    )
                })
            })
            .collect()
    }

    /// Workers replaced since the start.
    pub fn restarts(&self) -> u64 {
        self.inner.restarts.load(Ordering::Relaxed)
    }

    /// Waits until every worker is running and reported ready; `false` on timeout.
    pub async fn ready(&self, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        loop {
            if self.sandbox_reports().iter().all(Option::is_some) {
                return true;
            }
            if Instant::now() > until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    fn conns(&self) -> Vec<Option<Arc<Conn>>> {
        self.inner
            .slots
            .iter()
            .map(|s| lock(&s.current).clone())
            .collect()
    }

    /// Waits in the tenant's queue until [`Inner::pump`] hands this
    /// invocation a place on a worker.
    async fn wait_for_worker(
        &self,
        bundle: &Bundle,
        home: usize,
        weight: i64,
        started: Instant,
    ) -> Result<Claim, InvocationError> {
        let inner = &*self.inner;
        let group = tenant(bundle.id()).to_string();
        let (tx, mut rx) = oneshot::channel();
        let seq = {
            let mut sched = lock(&inner.sched);
            let s = &mut *sched;
            let waiting = s.groups.get(&group).map_or(0, VecDeque::len);
            if waiting >= inner.opts.max_queued {
                return Err(InvocationError::new(
                    ErrorKind::Overloaded,
                    format!("{waiting} invocations of this site already wait for a worker"),
                ));
            }
            let seq = s.next_seq;
            s.next_seq += 1;
            if waiting == 0 {
                // A tenant that had nothing waiting goes first.
                s.order.push_front(group.clone());
            }
            s.groups
                .entry(group.clone())
                .or_default()
                .push_back(Waiter {
                    seq,
                    home,
                    weight,
                    tx,
                });
            inner.queued.fetch_add(1, Ordering::Relaxed);
            seq
        };
        let _queued = Queued { inner, group, seq };
        inner.pump();
        let wall = started + inner.opts.limits.wall_time;
        // Time alone makes a worker eligible again only when it has been
        // silent so long that it cannot be running JavaScript (`doze`).
        let recheck = inner.doze().min(inner.opts.spawn_wait);
        loop {
            let until = (Instant::now() + recheck).min(wall);
            match tokio::time::timeout_at(until.into(), &mut rx).await {
                Ok(Ok(claim)) => return Ok(claim),
                Ok(Err(_)) => return Err(lost("the worker pool was dropped")),
                Err(_) => {
                    if Instant::now() >= wall {
                        return Err(InvocationError::new(
                            ErrorKind::WallTimeout,
                            format!(
                                "no worker was free within the wall time ({:?})",
                                inner.opts.limits.wall_time
                            ),
                        ));
                    }
                    if inner.shutdown.load(Ordering::Relaxed)
                        || (started.elapsed() > inner.opts.spawn_wait
                            && inner.slots.iter().all(|s| lock(&s.current).is_none()))
                    {
                        return Err(lost("no worker process is running"));
                    }
                    inner.pump();
                }
            }
        }
    }

    async fn run(
        &self,
        bundle: &Bundle,
        request: &InvocationRequest,
        host: &dyn Host,
        started: Instant,
    ) -> Result<Invocation, InvocationError> {
        let inner = &*self.inner;
        let hash = bundle.key_hash();
        let home = (hash % inner.slots.len() as u64) as usize;
        let heat = ((hash >> 32) % HEAT_SLOTS as u64) as usize;
        let weight = inner.weight(heat);
        // Fast path: nobody waits and a worker can start it promptly.
        let fast = if inner.queued.load(Ordering::Relaxed) == 0 {
            inner.place(home, weight)
        } else {
            None
        };
        let mut claim = match fast {
            Some(c) => c,
            None => self.wait_for_worker(bundle, home, weight, started).await?,
        };
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        // Room for the usual frame at once (growing a buffer from empty
        // cost a few reallocations per request).
        let mut frames = Vec::with_capacity(invoke_frame_estimate(request));
        claim
            .conn
            .frames_for_invoke(id, bundle, request, false, &mut frames)?;
        let (tx, mut rx) = inbox();
        let limits = &self.inner.opts.limits;
        let due_ns = inner.now_ns().saturating_add(
            (limits.wall_time + inner.opts.hang_grace)
                .as_nanos()
                .try_into()
                .unwrap_or(u64::MAX),
        );
        let _registration = claim
            .conn
            .register(id, tx, claim.weight, heat, due_ns)
            .ok_or_else(|| lost("the worker process exited"))?;
        // The call counts the weight now.
        claim.armed = false;
        claim.conn.send_soon(&frames);
        let conn = &*claim.conn;

        // Made at the first host call (most invocations make none).
        let mut calls: Option<FuturesUnordered<_>> = None;
        let mut resent = false;
        loop {
            tokio::select! {
                event = rx.recv() => match event {
                    Some(Event::HostCall { call, kind, request }) => {
                        calls.get_or_insert_with(FuturesUnordered::new).push(async move {
                            let r = match kind {
                                CallKind::Next => host.next(request).await.map(HostOutcome::Ok),
                                CallKind::Fetch => host.fetch(request).await.map(HostOutcome::Ok),
                                CallKind::Read(h) => host.read_body(h).await.map(|c| match c {
                                    Some(bytes) => HostOutcome::Chunk(bytes),
                                    None => HostOutcome::End,
                                }),
                            };
                            (call, r)
                        });
                    }
                    Some(Event::Done(inv)) => return Ok(inv),
                    Some(Event::UnknownBundle) if !resent => {
                        resent = true;
                        frames.clear();
                        conn.frames_for_invoke(id, bundle, request, true, &mut frames)?;
                        conn.owe(id, inner);
                        conn.send(&frames);
                    }
                    Some(Event::UnknownBundle) => {
                        return Err(InvocationError::new(ErrorKind::Internal, "the worker did not keep the bundle"));
                    }
                    Some(Event::Lost(reason)) => return Err(lost(&reason)),
                    None => return Err(lost("the worker process exited")),
                },
                Some((call, result)) = async { calls.as_mut()?.next().await },
                    if calls.as_ref().is_some_and(|c| !c.is_empty()) => {
                    let result = result.unwrap_or_else(|e| HostOutcome::Err(e.message));
                    frames.clear();
                    if protocol::encode(&ToWorker::HostResult { id, call, result }, &mut frames).is_err() {
                        frames.clear();
                        let result = HostOutcome::Err("response too large".into());
                        protocol::encode(&ToWorker::HostResult { id, call, result }, &mut frames)
                            .map_err(|e| InvocationError::new(ErrorKind::Internal, e.to_string()))?;
                    }
                    conn.owe(id, inner);
                    conn.send(&frames);
                }
            }
        }
    }
}

/// About the size of an `Invoke` frame for `request`: its text and body,
/// and room for the ids, the context and the frame's own fields.
fn invoke_frame_estimate(request: &InvocationRequest) -> usize {
    let headers: usize = request
        .headers
        .iter()
        .map(|(k, v)| k.len() + v.len() + 4)
        .sum();
    256 + request.method.len() + request.url.len() + headers + request.body.len()
}

fn lost(message: &str) -> InvocationError {
    InvocationError::new(ErrorKind::WorkerLost, message)
}

#[async_trait]
impl Runner for WorkerPool {
    async fn invoke(
        &self,
        bundle: &Bundle,
        request: &InvocationRequest,
        host: &dyn Host,
    ) -> Invocation {
        let started = Instant::now();
        match self.run(bundle, request, host, started).await {
            Ok(inv) => inv,
            Err(e) => Invocation {
                outcome: InvocationOutcome::Error(e),
                set_cookies: Vec::new(),
                telemetry: Telemetry {
                    duration: started.elapsed(),
                    ..Telemetry::default()
                },
            },
        }
    }

    fn evict(&self, bundle_id: &str) {
        let prefix = format!("{bundle_id}#");
        let mut frames = Vec::new();
        if protocol::encode(
            &ToWorker::Evict {
                bundle_id: bundle_id.to_string(),
            },
            &mut frames,
        )
        .is_err()
        {
            return;
        }
        for conn in self.conns().into_iter().flatten() {
            let mut st = lock(&conn.state);
            st.loaded.retain(|k| !k.starts_with(&prefix));
            st.sent.retain(|k, _| !k.starts_with(&prefix));
            drop(st);
            conn.send(&frames);
        }
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        self.inner.shutdown.store(true, Ordering::Relaxed);
        for conn in self.conns().into_iter().flatten() {
            conn.kill("the pool was dropped");
        }
    }
}

impl Inner {
    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// What a worker may have runnable (`spill_after`), the weight of a
    /// CPU-heavy invocation.
    fn cap(&self) -> i64 {
        self.opts.spill_after.max(1) as i64 * UNIT
    }

    /// A worker silent this long with runnable work is not running
    /// JavaScript (no isolate segment lasts longer than the CPU limit): its
    /// invocations wait for timers or promises the node cannot see.
    fn doze(&self) -> Duration {
        self.opts.limits.cpu_time * 3 / 2 + self.opts.stall_after
    }

    /// Weight of an invocation of the bundle in heat slot `heat`: 1 when it
    /// is known to be tiny, `UNIT` when light, else (CPU-heavy or not seen
    /// yet) a whole worker.
    fn weight(&self, heat: usize) -> i64 {
        match self.heat[heat].load(Ordering::Relaxed) {
            TINY => 1,
            LIGHT => UNIT,
            _ => self.cap(),
        }
    }

    /// A place for an invocation of `weight` on a worker that can start it
    /// promptly: its home worker if it can, else the least loaded one.
    fn place(&self, home: usize, weight: i64) -> Option<Claim> {
        let now = self.now_ns();
        if let Some(c) = lock(&self.slots[home].current).as_ref() {
            if c.try_claim(weight, now, self) {
                return Some(Claim {
                    conn: Arc::clone(c),
                    weight,
                    armed: true,
                });
            }
        }
        for _ in 1..self.slots.len() {
            let mut best: Option<(i64, Arc<Conn>)> = None;
            for (i, slot) in self.slots.iter().enumerate() {
                if i == home {
                    continue;
                }
                let guard = lock(&slot.current);
                let Some(c) = guard.as_ref() else {
                    continue;
                };
                let load = c.load.load(Ordering::Relaxed);
                if c.eligible(load, weight, now, self) && best.as_ref().is_none_or(|b| load < b.0) {
                    best = Some((load, Arc::clone(c)));
                }
            }
            let (_, c) = best?;
            if c.try_claim(weight, now, self) {
                return Some(Claim {
                    conn: c,
                    weight,
                    armed: true,
                });
            }
        }
        None
    }

    /// Hands waiting invocations places on workers while there are any:
    /// tenants in turn, each tenant's invocations in order. Called whenever a
    /// worker's load drops, a worker starts, and by waiters now and then.
    fn pump(&self) {
        if self.queued.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut sched = lock(&self.sched);
        let s = &mut *sched;
        // Tenants in order; one that is served goes to the back, one whose
        // next invocation finds no place keeps its turn.
        let mut i = 0;
        while let Some(group) = s.order.get(i) {
            let Some(q) = s.groups.get_mut(group) else {
                s.order.remove(i);
                continue;
            };
            while q.front().is_some_and(|w| w.tx.is_closed()) {
                q.pop_front();
                self.queued.fetch_sub(1, Ordering::Relaxed);
            }
            let Some((home, weight)) = q.front().map(|w| (w.home, w.weight)) else {
                if let Some(g) = s.order.remove(i) {
                    s.groups.remove(&g);
                }
                continue;
            };
            let Some(claim) = self.place(home, weight) else {
                i += 1;
                continue;
            };
            if let Some(w) = q.pop_front() {
                self.queued.fetch_sub(1, Ordering::Relaxed);
                if let Err(claim) = w.tx.send(claim) {
                    claim.release_quietly();
                }
            }
            let empty = q.is_empty();
            if let Some(g) = s.order.remove(i) {
                if empty {
                    s.groups.remove(&g);
                } else {
                    s.order.push_back(g);
                }
            }
        }
    }
}

/// The tenant of a bundle id (`"{deploy_id}/{function}"`): its deploy.
fn tenant(bundle_id: &str) -> &str {
    bundle_id.split_once('/').map_or(bundle_id, |(t, _)| t)
}

/// Unregisters an invocation when its future ends or is dropped.
struct Registration<'a> {
    conn: &'a Conn,
    id: u64,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        // The worker runs it to its `Done` anyway: keep counting it.
        if let Some(call) = lock(&self.conn.state).calls.get_mut(&self.id) {
            call.tx = None;
        }
    }
}

impl Conn {
    /// Whether an invocation of `weight` may join: the worker has nothing
    /// runnable, or it made progress within `stall_after` (it is not stuck
    /// in JavaScript) and has room, or it is silent but not running at all
    /// (its invocations wait for timers: [`Conn::idle`]).
    fn eligible(&self, load: i64, weight: i64, now: u64, inner: &Inner) -> bool {
        if load <= 0 {
            return true;
        }
        let silence = now.saturating_sub(self.progress_ns.load(Ordering::Relaxed));
        if silence > inner.opts.stall_after.as_nanos() as u64 {
            return self.idle(now, silence, inner);
        }
        load + weight <= inner.cap()
    }

    /// Whether a silent worker is idle rather than running JavaScript: its
    /// isolate thread is not runnable (`/proc/<pid>/task/<tid>/stat`), or,
    /// where that cannot be read, it has been silent past `doze`. Cached
    /// for `stall_after`.
    fn idle(&self, now: u64, silence: u64, inner: &Inner) -> bool {
        // Frames not written to it yet (a batch waiting for its write, a
        // full socket) hold work it cannot have started: it only looks
        // idle. Without this, an invocation claimed a moment ago, whose
        // `Invoke` still waits in `send_soon`'s batch, could be forgiven
        // and another placed beside it.
        if self.unsent() {
            return false;
        }
        let stall = inner.opts.stall_after.as_nanos() as u64;
        if now.saturating_sub(self.checked_ns.load(Ordering::Relaxed)) < stall {
            return !self.checked_running.load(Ordering::Relaxed);
        }
        let running = match threads_running(self.pid) {
            Some(r) => r,
            None => silence <= inner.doze().as_nanos() as u64,
        };
        self.checked_running.store(running, Ordering::Relaxed);
        self.checked_ns.store(now, Ordering::Relaxed);
        !running
    }

    /// Whether frames for the worker wait to be written.
    fn unsent(&self) -> bool {
        let st = lock(&self.out);
        !st.buf.is_empty() || st.scheduled || st.flushing || st.handoff
    }

    /// Claims `weight` of the worker's room if it is [`Conn::eligible`].
    fn try_claim(&self, weight: i64, now: u64, inner: &Inner) -> bool {
        let silence = now.saturating_sub(self.progress_ns.load(Ordering::Relaxed));
        let mut fresh = silence <= inner.opts.stall_after.as_nanos() as u64;
        if !fresh && self.load.load(Ordering::Relaxed) > 0 {
            if !self.idle(now, silence, inner) {
                return false;
            }
            self.forgive();
            fresh = true;
        }
        let cap = inner.cap();
        let claimed = self
            .load
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| {
                (l <= 0 || (fresh && l + weight <= cap)).then_some(l + weight)
            });
        match claimed {
            Ok(before) => {
                if before <= 0 {
                    self.progress_ns.store(now, Ordering::Relaxed);
                }
                true
            }
            Err(_) => false,
        }
    }

    /// The worker is idle although invocations count as runnable: they wait
    /// for something the node does not see (a timer).
    /// They stop counting until they next get a host result.
    fn forgive(&self) {
        let mut st = lock(&self.state);
        for call in st.calls.values_mut() {
            if call.counted > 0 {
                self.load.fetch_sub(call.counted, Ordering::Relaxed);
                call.counted = 0;
            }
        }
    }

    /// Registers an invocation that holds a claim of `weight`.
    fn register(
        &self,
        id: u64,
        tx: Inbox<Event>,
        weight: i64,
        heat: usize,
        due_ns: u64,
    ) -> Option<Registration<'_>> {
        let mailbox = Mailbox::current(&MAILBOX);
        let mut st = lock(&self.state);
        if st.dead {
            return None;
        }
        st.calls.insert(
            id,
            Call {
                tx: Some(tx),
                mailbox,
                owed: 1,
                weight,
                counted: weight,
                heat,
                due_ns,
            },
        );
        Some(Registration { conn: self, id })
    }

    /// Before sending a host result (or the invocation again): one more
    /// answer owed, so the invocation may be runnable again.
    fn owe(&self, id: u64, inner: &Inner) {
        let mut st = lock(&self.state);
        let Some(call) = st.calls.get_mut(&id) else {
            return;
        };
        call.owed += 1;
        if call.owed > 0 && call.counted == 0 {
            call.counted = call.weight;
            if self.load.fetch_add(call.weight, Ordering::Relaxed) <= 0 {
                self.progress_ns.store(inner.now_ns(), Ordering::Relaxed);
            }
        }
    }

    /// A frame for invocation `id` came (a host call, `Done` or `UnknownBundle`):
    /// one answer less owed. Returns where to deliver it and whether the
    /// worker's load dropped. `Done` also updates the bundle's heat.
    fn answered(&self, id: u64, done: Option<&Invocation>, inner: &Inner) -> (Option<Route>, bool) {
        let mut st = lock(&self.state);
        let Some(call) = st.calls.get_mut(&id) else {
            return (None, false);
        };
        call.owed -= 1;
        let mut released = false;
        if call.owed <= 0 || done.is_some() {
            released = call.counted > 0;
            self.load.fetch_sub(call.counted, Ordering::Relaxed);
            call.counted = 0;
        }
        let tx = call.tx.clone().map(|tx| Route {
            tx,
            mailbox: call.mailbox.clone(),
        });
        let heat = call.heat;
        let Some(inv) = done else {
            return (tx, released);
        };
        st.calls.remove(&id);
        let heavy = inv.telemetry.cpu_time >= inner.opts.heavy_after
            || matches!(&inv.outcome, InvocationOutcome::Error(e) if e.kind == ErrorKind::CpuLimit);
        if heavy {
            inner.heat[heat].store(HEAVY, Ordering::Relaxed);
            // Its siblings queued on this worker weigh a whole worker too.
            let cap = inner.cap();
            for c in st.calls.values_mut().filter(|c| c.heat == heat) {
                if c.counted > 0 && c.counted < cap {
                    self.load.fetch_add(cap - c.counted, Ordering::Relaxed);
                    c.counted = cap;
                }
                c.weight = cap;
            }
        } else {
            // Heavy cools down one light invocation at a time; below that the
            // last invocation decides between tiny and light.
            let tiny = inv.telemetry.cpu_time < inner.opts.tiny_below;
            let _ = inner.heat[heat].fetch_update(Ordering::Relaxed, Ordering::Relaxed, |h| {
                let next = if h > LIGHT {
                    h - 1
                } else if tiny {
                    TINY
                } else {
                    LIGHT
                };
                (next != h).then_some(next)
            });
        }
        (tx, released)
    }

    /// `Load` (when this worker has not been sent the bundle, or `reload`)
    /// and `Invoke`.
    fn frames_for_invoke(
        &self,
        id: u64,
        bundle: &Bundle,
        request: &InvocationRequest,
        reload: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), InvocationError> {
        let internal =
            |e: postcard::Error| InvocationError::new(ErrorKind::Internal, e.to_string());
        let key = bundle.key();
        let context = &request.context;
        let (load, send_env, send_fixed) = {
            let mut st = lock(&self.state);
            let fresh = !st.loaded.contains(key) && st.loaded.insert(key.to_string());
            let load = fresh || reload;
            // Requests to a site share its settings' map and their fixed
            // context: the same as last time is not sent again.
            match st.sent.get_mut(key) {
                Some(last) if !load => {
                    let env = !Arc::ptr_eq(&last.env, &context.env);
                    let fixed = !Arc::ptr_eq(&last.fixed, &context.fixed);
                    if env {
                        last.env = Arc::clone(&context.env);
                    }
                    if fixed {
                        last.fixed = Arc::clone(&context.fixed);
                    }
                    (false, env, fixed)
                }
                _ => {
                    let beside = Beside {
                        env: Arc::clone(&context.env),
                        fixed: Arc::clone(&context.fixed),
                    };
                    st.sent.insert(key.to_string(), beside);
                    (load, true, true)
                }
            }
        };
        if load {
            let msg = ToWorker::Load {
                key: key.to_string(),
                source: bundle.to_source(),
                env: bundle.has_env().then(|| bundle.env().clone()),
            };
            if let Err(e) = protocol::encode(&msg, out) {
                let mut st = lock(&self.state);
                st.loaded.remove(key);
                st.sent.remove(key);
                return Err(internal(e));
            }
        }
        protocol::encode(
            &InvokeRef {
                id,
                key,
                request,
                env: send_env.then_some(&*context.env),
                fixed: send_fixed.then_some(&*context.fixed),
            },
            out,
        )
        .map_err(|e| {
            lock(&self.state).sent.remove(key);
            internal(e)
        })
    }

    /// Queues frames (the caller accounted for the answers they ask for)
    /// and writes them out now.
    fn send(&self, frames: &[u8]) {
        let mut st = lock(&self.out);
        if st.closed {
            return;
        }
        st.buf.extend_from_slice(frames);
        self.flush(st);
    }

    /// Queues frames to be written once the other tasks ready on this
    /// runtime thread have queued theirs: under load, one write carries
    /// many invocations and wakes the worker once, where a write per
    /// invocation cost a system call and a wake-up each. Outside a tokio
    /// runtime, the same as [`Conn::send`].
    fn send_soon(self: &Arc<Self>, frames: &[u8]) {
        if tokio::runtime::Handle::try_current().is_err() {
            return self.send(frames);
        }
        let mut st = lock(&self.out);
        if st.closed {
            return;
        }
        st.buf.extend_from_slice(frames);
        if st.flushing || st.scheduled {
            return;
        }
        st.scheduled = true;
        drop(st);
        let conn = Arc::clone(self);
        tokio::spawn(async move {
            // Runs again after the runtime's other ready tasks (and its I/O
            // poll), so their frames join this write.
            tokio::task::yield_now().await;
            let mut st = lock(&conn.out);
            st.scheduled = false;
            if !st.closed {
                conn.flush(st);
            }
        });
    }

    /// Writes `buf` out unless someone else is (appenders only append).
    fn flush<'a>(&'a self, mut st: MutexGuard<'a, OutState>) {
        if st.flushing || st.buf.is_empty() {
            return;
        }
        st.flushing = true;
        loop {
            let data = std::mem::take(&mut st.buf);
            drop(st);
            let written = send_nowait(&self.sock, &data);
            st = lock(&self.out);
            match written {
                Ok(n) if n == data.len() => {
                    if st.buf.is_empty() {
                        let mut data = data;
                        data.clear();
                        st.buf = data;
                        st.flushing = false;
                        return;
                    }
                }
                Ok(n) => {
                    let mut rest = data[n..].to_vec();
                    rest.extend_from_slice(&st.buf);
                    st.buf = rest;
                    st.handoff = true;
                    self.out_cv.notify_one();
                    return;
                }
                Err(_) => {
                    st.closed = true;
                    st.buf = Vec::new();
                    self.out_cv.notify_one();
                    return;
                }
            }
        }
    }

    /// An answer for invocation `id` nobody took (its future was dropped):
    /// a host call gets an error, so the worker can finish the invocation.
    fn abandoned(&self, id: u64, event: Event) {
        if let Event::HostCall { call, .. } = event {
            let result = HostOutcome::Err("the invocation was cancelled".into());
            if let Ok(f) = protocol::frame(&ToWorker::HostResult { id, call, result }) {
                if let Some(inner) = self.pool.upgrade() {
                    self.owe(id, &inner);
                }
                self.send(&f);
            }
        }
    }

    fn kill(&self, why: &str) {
        lock(&self.killed).get_or_insert_with(|| why.to_string());
        let _ = lock(&self.child).kill();
    }

    /// After the worker's socket closed: reap it, fail its invocations.
    fn fail(&self, reason: String) {
        let status = {
            let mut child = lock(&self.child);
            let _ = child.kill();
            child.wait()
        };
        let reason = match lock(&self.killed).take() {
            Some(why) => why,
            None => match status {
                Ok(s) => format!("{reason} (worker {}: {s})", self.pid),
                Err(_) => reason,
            },
        };
        let calls = {
            let mut st = lock(&self.state);
            st.dead = true;
            std::mem::take(&mut st.calls)
        };
        for tx in calls.values().filter_map(|c| c.tx.as_ref()) {
            let _ = tx.send(Event::Lost(reason.clone()));
        }
        let mut out = lock(&self.out);
        out.closed = true;
        out.buf = Vec::new();
        self.out_cv.notify_all();
    }
}

/// Writes as much of `data` as the socket takes without blocking.
fn send_nowait(sock: &UnixStream, data: &[u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < data.len() {
        let rest = &data[done..];
        #[allow(unsafe_code)]
        // SAFETY: `rest` is a live slice for the duration of the call and the
        // kernel reads at most `rest.len()` bytes from it; the descriptor is
        // owned by `sock`, which outlives the call.
        let n = unsafe {
            libc::send(
                sock.as_raw_fd(),
                rest.as_ptr().cast(),
                rest.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if n >= 0 {
            done += n as usize;
            continue;
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => return Ok(done),
            _ => return Err(e),
        }
    }
    Ok(done)
}

/// Whether a thread of process `pid` other than its main thread (which only
/// waits for the isolate thread) is running or runnable; `None` if `/proc`
/// cannot tell.
fn threads_running(pid: u32) -> Option<bool> {
    let main = pid.to_string();
    let mut seen = false;
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let name = entry.ok()?.file_name();
        if name.to_str() == Some(main.as_str()) {
            continue;
        }
        let mut path = PathBuf::from(format!("/proc/{pid}/task"));
        path.push(&name);
        path.push("stat");
        let stat = std::fs::read_to_string(path).ok()?;
        if runs_work(&stat)? {
            return Some(true);
        }
        seen = true;
    }
    seen.then_some(false)
}

/// Whether a worker thread's `/proc/<pid>/task/<tid>/stat` line says it is
/// runnable, unless it is in the `SCHED_IDLE` class (the idle work's
/// thread, which runs no invocation and yields to everything). `None` if
/// the line does not parse.
fn runs_work(stat: &str) -> Option<bool> {
    // "tid (comm) S ...": the state follows the last ')'; the policy is the
    // 41st field, 38 after the state.
    let mut fields = stat.rsplit_once(')')?.1.split_ascii_whitespace();
    let state = fields.next()?;
    if state != "R" {
        return Some(false);
    }
    let policy: i32 = fields.nth(37)?.parse().ok()?;
    Some(policy != libc::SCHED_IDLE)
}

fn spawn_worker(inner: &Arc<Inner>, slot: usize) -> io::Result<(Arc<Conn>, UnixStream)> {
    let opts = &inner.opts;
    let (ours, theirs) = UnixStream::pair()?;
    let mut cmd = Command::new(&opts.program);
    cmd.args(&opts.args)
        .env_clear()
        .envs(opts.envs.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let child = cmd.spawn()?;
    drop(cmd);
    let reader = ours.try_clone()?;
    let conn = Arc::new(Conn {
        pool: Arc::downgrade(inner),
        pid: child.id(),
        child: Mutex::new(child),
        sock: ours,
        out: Mutex::new(OutState::default()),
        out_cv: Condvar::new(),
        state: Mutex::new(ConnState::default()),
        load: AtomicI64::new(0),
        progress_ns: AtomicU64::new(inner.now_ns()),
        checked_ns: AtomicU64::new(0),
        checked_running: AtomicBool::new(false),
        ping: Mutex::new(None),
        sandbox: Mutex::new(None),
        blank: AtomicBool::new(false),
        blanks_made: AtomicU64::new(0),
        killed: Mutex::new(None),
    });
    let writer = Arc::clone(&conn);
    if let Err(e) = std::thread::Builder::new()
        .name(format!("fn-worker-{slot}-w"))
        .spawn(move || write_loop(&writer))
    {
        conn.kill("no writer thread");
        conn.fail(String::new());
        return Err(e);
    }
    let init = protocol::frame(&ToWorker::Init {
        limits: opts.limits.clone(),
        max_bundles: opts.max_bundles,
    })
    .map_err(|e| io::Error::other(e.to_string()))?;
    conn.send(&init);
    Ok((conn, reader))
}

/// Takes over the flush when the socket was full (a busy worker).
fn write_loop(conn: &Conn) {
    let mut st = lock(&conn.out);
    loop {
        while !st.closed && !st.handoff {
            st = conn.out_cv.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        if st.closed {
            return;
        }
        let data = std::mem::take(&mut st.buf);
        drop(st);
        let ok = (&conn.sock).write_all(&data).is_ok();
        st = lock(&conn.out);
        if !ok {
            st.closed = true;
            st.buf = Vec::new();
            return;
        }
        if st.buf.is_empty() {
            st.handoff = false;
            st.flushing = false;
        }
    }
}

/// One per slot: reads the worker's frames; when it dies, fails its
/// invocations and spawns the next one.
fn supervise(inner: Arc<Inner>, slot: usize, mut first: Option<(Arc<Conn>, UnixStream)>) {
    let mut backoff = Duration::ZERO;
    loop {
        let started = Instant::now();
        let spawned = match first.take() {
            Some(c) => Ok(c),
            None => spawn_worker(&inner, slot),
        };
        match spawned {
            Ok((conn, reader)) => {
                *lock(&inner.slots[slot].current) = Some(Arc::clone(&conn));
                inner.pump();
                let reason = read_loop(&inner, &conn, reader);
                *lock(&inner.slots[slot].current) = None;
                if !inner.shutdown.load(Ordering::Relaxed) {
                    eprintln!("ledge: function worker {} lost: {reason}", conn.pid);
                }
                conn.fail(reason);
            }
            Err(e) => eprintln!("ledge: cannot start a function worker: {e}"),
        }
        if inner.shutdown.load(Ordering::Relaxed) {
            return;
        }
        inner.restarts.fetch_add(1, Ordering::Relaxed);
        backoff = if started.elapsed() > Duration::from_secs(5) {
            Duration::ZERO
        } else {
            (backoff * 2)
                .max(Duration::from_millis(10))
                .min(inner.opts.max_backoff)
        };
        std::thread::sleep(backoff);
    }
}

/// Reads frames until the worker goes away or misbehaves; returns why.
fn read_loop(inner: &Inner, conn: &Arc<Conn>, sock: UnixStream) -> String {
    let mut rd = BufReader::with_capacity(64 << 10, sock);
    let mut payload = Vec::new();
    // Mailboxes given answers since the last wake (woken on every way out).
    let mut touched = Touched(Vec::new());
    loop {
        // Before waiting for more bytes: hand on what was read.
        if !frame_buffered(rd.buffer()) {
            touched.wake();
        }
        let mut header = [0u8; 4];
        if let Err(e) = rd.read_exact(&mut header) {
            return if e.kind() == io::ErrorKind::UnexpectedEof {
                "the worker process exited".to_string()
            } else {
                format!("reading from the worker: {e}")
            };
        }
        let Some(len) = protocol::payload_len(header) else {
            conn.kill("malformed frame from the worker (too large)");
            return "malformed frame".into();
        };
        payload.resize(len, 0);
        if let Err(e) = rd.read_exact(&mut payload) {
            return format!("reading from the worker: {e}");
        }
        let msg: ToParent = match protocol::decode(&payload) {
            Ok(m) => m,
            Err(e) => {
                let why = format!("malformed frame from the worker: {e}");
                conn.kill(&why);
                return why;
            }
        };
        conn.progress_ns.store(inner.now_ns(), Ordering::Relaxed);
        let (id, event) = match msg {
            ToParent::Ready { sandbox } => {
                *lock(&conn.sandbox) = Some(sandbox);
                continue;
            }
            ToParent::Pong {
                seq,
                blank,
                blanks_made,
            } => {
                conn.blank.store(blank, Ordering::Relaxed);
                conn.blanks_made.store(blanks_made, Ordering::Relaxed);
                let mut ping = lock(&conn.ping);
                if ping.is_some_and(|(s, _)| s == seq) {
                    *ping = None;
                }
                continue;
            }
            ToParent::HostCall {
                id,
                call,
                kind,
                request,
            } => (
                id,
                Event::HostCall {
                    call,
                    kind,
                    request,
                },
            ),
            ToParent::Done { id, invocation } => (id, Event::Done(invocation)),
            ToParent::UnknownBundle { id } => (id, Event::UnknownBundle),
        };
        let done = match &event {
            Event::Done(inv) => Some(inv),
            _ => None,
        };
        let (route, released) = conn.answered(id, done, inner);
        if released {
            inner.pump();
        }
        let undelivered = match route {
            Some(Route {
                tx,
                mailbox: Some(mb),
            }) if !mb.is_closed() => {
                // Only a host call needs an answer if nobody takes it.
                let undelivered = matches!(event, Event::HostCall { .. }).then(|| {
                    let conn = Arc::clone(conn);
                    Box::new(move |event| conn.abandoned(id, event))
                        as Box<dyn FnOnce(Event) + Send>
                });
                mb.put(Delivery {
                    tx,
                    event,
                    undelivered,
                });
                if !touched.0.iter().any(|t| Arc::ptr_eq(t, &mb)) {
                    touched.0.push(mb);
                }
                None
            }
            Some(Route { tx, .. }) => tx.send(event).err(),
            None => Some(event),
        };
        if let Some(event) = undelivered {
            conn.abandoned(id, event);
        }
    }
}

/// Mailboxes with answers not yet handed on.
struct Touched(Vec<Arc<Mailbox<Event>>>);

impl Touched {
    fn wake(&mut self) {
        for mb in self.0.drain(..) {
            mb.wake();
        }
    }
}

impl Drop for Touched {
    fn drop(&mut self) {
        self.wake();
    }
}

/// Whether `buf` starts with a whole frame (so reading it will not wait).
fn frame_buffered(buf: &[u8]) -> bool {
    let Some(header) = buf.get(..4) else {
        return false;
    };
    let mut h = [0u8; 4];
    h.copy_from_slice(header);
    protocol::payload_len(h).is_some_and(|len| buf.len() - 4 >= len)
}

/// Pings every worker; kills those that do not answer in time.
fn monitor(inner: Arc<Inner>) {
    let mut seq = 0u64;
    // A worker answers between isolate segments, each at most a CPU budget.
    let timeout = inner.opts.ping_timeout.max(inner.opts.limits.cpu_time * 4);
    loop {
        std::thread::sleep(inner.opts.ping_interval);
        if inner.shutdown.load(Ordering::Relaxed) {
            return;
        }
        for slot in &inner.slots {
            let Some(conn) = lock(&slot.current).clone() else {
                continue;
            };
            let overdue = {
                let mut ping = lock(&conn.ping);
                match *ping {
                    Some((_, sent)) => sent.elapsed() > timeout,
                    None => {
                        seq += 1;
                        *ping = Some((seq, Instant::now()));
                        if let Ok(f) = protocol::frame(&ToWorker::Ping { seq }) {
                            conn.send(&f);
                        }
                        false
                    }
                }
            };
            if overdue {
                conn.kill(&format!(
                    "no answer to a ping within {timeout:?}: killed as hung"
                ));
                continue;
            }
            let now = inner.now_ns();
            let late = lock(&conn.state).calls.values().any(|c| c.due_ns <= now);
            if late {
                conn.kill(&format!(
                    "the worker gave no answer within the wall time + {:?}: killed as hung",
                    inner.opts.hang_grace
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::runs_work;

    /// A stat line as the kernel writes it, with `comm`, state and policy.
    fn stat(comm: &str, state: &str, policy: i32) -> String {
        format!(
            "4242 ({comm}) {state} 1 1 1 0 -1 4194304 191 0 0 0 5 3 0 0 20 0 3 0 5991305 \
             3133440 390 18446744073709551615 1 2 3 0 0 0 0 0 0 0 0 0 17 0 0 {policy} 0 0 0 \
             0 0 0 0 0 0 0 0"
        )
    }

    #[test]
    fn idle_class_threads_do_not_count_as_running() {
        assert_eq!(runs_work(&stat("ledge", "R", 0)), Some(true));
        assert_eq!(runs_work(&stat("ledge", "S", 0)), Some(false));
        assert_eq!(
            runs_work(&stat("ledge", "R", libc::SCHED_BATCH)),
            Some(true)
        );
        assert_eq!(
            runs_work(&stat("ledge", "R", libc::SCHED_IDLE)),
            Some(false)
        );
        assert_eq!(
            runs_work(&stat("ledge", "D", libc::SCHED_IDLE)),
            Some(false)
        );
        // A name with spaces and parentheses: fields count from the last ')'.
        assert_eq!(runs_work(&stat("a) R (b", "S", 0)), Some(false));
        assert_eq!(
            runs_work(&stat("a) S (b", "R", libc::SCHED_IDLE)),
            Some(false)
        );
        assert_eq!(runs_work("4242 (x) R 1 2"), None);
        assert_eq!(runs_work("garbage"), None);
        // This process's own threads parse.
        for entry in std::fs::read_dir("/proc/self/task").expect("/proc") {
            let path = entry.expect("task").path().join("stat");
            let line = std::fs::read_to_string(path).expect("stat");
            assert!(runs_work(&line).is_some(), "{line}");
        }
    }
}
