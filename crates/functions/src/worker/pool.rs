//! The node's side: spawning, feeding and supervising worker processes.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::io::{self, BufReader, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::mpsc;

use crate::bundle::Bundle;
use crate::engine::{Host, Limits, Runner};
use crate::isolate::lock;
use crate::types::{
    ErrorKind, HostRequest, Invocation, InvocationError, InvocationOutcome, InvocationRequest,
    Telemetry,
};
use crate::worker::protocol::{self, HostOutcome, InvokeRef, ToParent, ToWorker};
use crate::worker::sandbox::SandboxReport;

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
    /// Invocations runnable in its home worker (not waiting for a host call)
    /// above which a new invocation goes to the least loaded worker. Default 4.
    pub spill_after: usize,
    /// A worker that owes an answer and has sent nothing for this long is
    /// busy running JavaScript: new invocations avoid it. Default 1 ms.
    pub stall_after: Duration,
    /// An invocation without `Done` by `limits.wall_time + hang_grace` means
    /// the worker hangs: it is killed. Default 2 s.
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
            stall_after: Duration::from_millis(1),
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
}

#[derive(Default)]
struct Slot {
    current: Mutex<Option<Arc<Conn>>>,
}

/// What a worker tells one invocation.
enum Event {
    HostCall {
        call: u32,
        fetch: bool,
        request: HostRequest,
    },
    Done(Invocation),
    UnknownBundle,
    Lost(String),
}

/// One running worker process.
struct Conn {
    slot: usize,
    pid: u32,
    child: Mutex<Child>,
    sock: UnixStream,
    out: Mutex<OutState>,
    out_cv: Condvar,
    state: Mutex<ConnState>,
    /// Answers the worker owes (invocations and host results sent, minus
    /// host calls and `Done`s received): its runnable work.
    owed: AtomicI64,
    /// When the worker last made progress (ns since the pool's epoch).
    progress_ns: AtomicU64,
    ping: Mutex<Option<(u64, Instant)>>,
    sandbox: Mutex<Option<SandboxReport>>,
    /// Why the node killed it, if it did.
    killed: Mutex<Option<String>>,
}

#[derive(Default)]
struct ConnState {
    dead: bool,
    calls: HashMap<u64, mpsc::UnboundedSender<Event>>,
    /// Bundle keys sent with `Load`.
    loaded: HashSet<String>,
}

#[derive(Default)]
struct OutState {
    buf: Vec<u8>,
    /// Someone is writing `buf` out; appenders just append.
    flushing: bool,
    /// The socket was full: the writer thread owns the flush.
    handoff: bool,
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

    /// The worker for an invocation of `key`: its home worker (hash of the
    /// key, where its isolates are warm) unless that one is stalled or has
    /// `spill_after` runnable invocations; then the least loaded one.
    fn choose(&self, key: &str) -> Option<Arc<Conn>> {
        let inner = &*self.inner;
        let n = inner.slots.len();
        let home = (fnv1a(key.as_bytes()) % n as u64) as usize;
        let now = inner.now_ns();
        let stall = inner.opts.stall_after.as_nanos() as u64;
        if let Some(c) = lock(&inner.slots[home].current).as_ref() {
            if c.owed() < inner.opts.spill_after as i64 && !c.stalled(now, stall) {
                return Some(Arc::clone(c));
            }
        }
        let mut best: Option<((bool, i64, bool), Arc<Conn>)> = None;
        for slot in &inner.slots {
            let Some(c) = lock(&slot.current).clone() else {
                continue;
            };
            let rank = (c.stalled(now, stall), c.owed(), c.slot != home);
            if best.as_ref().is_none_or(|(r, _)| rank < *r) {
                best = Some((rank, c));
            }
        }
        best.map(|(_, c)| c)
    }

    async fn pick(&self, key: &str) -> Option<Arc<Conn>> {
        let until = Instant::now() + self.inner.opts.spawn_wait;
        loop {
            if let Some(c) = self.choose(key) {
                return Some(c);
            }
            if Instant::now() > until || self.inner.shutdown.load(Ordering::Relaxed) {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    async fn run(
        &self,
        bundle: &Bundle,
        request: &InvocationRequest,
        host: &dyn Host,
    ) -> Result<Invocation, InvocationError> {
        let conn = self
            .pick(bundle.key())
            .await
            .ok_or_else(|| lost("no worker process is running"))?;
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let _registration = conn
            .register(id, tx)
            .ok_or_else(|| lost("the worker process exited"))?;
        let mut frames = Vec::new();
        conn.frames_for_invoke(id, bundle, request, false, &mut frames)?;
        conn.send(&frames, 1, &self.inner);

        let limits = &self.inner.opts.limits;
        let deadline = tokio::time::sleep(limits.wall_time + self.inner.opts.hang_grace);
        tokio::pin!(deadline);
        let mut calls = FuturesUnordered::new();
        let mut resent = false;
        loop {
            tokio::select! {
                event = rx.recv() => match event {
                    Some(Event::HostCall { call, fetch, request }) => {
                        calls.push(async move {
                            let r = if fetch { host.fetch(request).await } else { host.next(request).await };
                            (call, r)
                        });
                    }
                    Some(Event::Done(inv)) => return Ok(inv),
                    Some(Event::UnknownBundle) if !resent => {
                        resent = true;
                        frames.clear();
                        conn.frames_for_invoke(id, bundle, request, true, &mut frames)?;
                        conn.send(&frames, 1, &self.inner);
                    }
                    Some(Event::UnknownBundle) => {
                        return Err(InvocationError::new(ErrorKind::Internal, "the worker did not keep the bundle"));
                    }
                    Some(Event::Lost(reason)) => return Err(lost(&reason)),
                    None => return Err(lost("the worker process exited")),
                },
                Some((call, result)) = calls.next(), if !calls.is_empty() => {
                    let result = match result {
                        Ok(r) => HostOutcome::Ok(r),
                        Err(e) => HostOutcome::Err(e.message),
                    };
                    frames.clear();
                    if protocol::encode(&ToWorker::HostResult { id, call, result }, &mut frames).is_err() {
                        frames.clear();
                        let result = HostOutcome::Err("response too large".into());
                        protocol::encode(&ToWorker::HostResult { id, call, result }, &mut frames)
                            .map_err(|e| InvocationError::new(ErrorKind::Internal, e.to_string()))?;
                    }
                    conn.send(&frames, 1, &self.inner);
                }
                _ = &mut deadline => {
                    let why = format!(
                        "the worker gave no answer within the wall time + {:?}: killed as hung",
                        self.inner.opts.hang_grace
                    );
                    conn.kill(&why);
                    return Err(lost(&why));
                }
            }
        }
    }
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
        match self.run(bundle, request, host).await {
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
            lock(&conn.state).loaded.retain(|k| !k.starts_with(&prefix));
            conn.send(&frames, 0, &self.inner);
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
}

/// Unregisters an invocation when its future ends or is dropped.
struct Registration<'a> {
    conn: &'a Conn,
    id: u64,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        lock(&self.conn.state).calls.remove(&self.id);
    }
}

impl Conn {
    fn owed(&self) -> i64 {
        self.owed.load(Ordering::Relaxed)
    }

    fn stalled(&self, now: u64, stall_ns: u64) -> bool {
        self.owed() > 0 && now.saturating_sub(self.progress_ns.load(Ordering::Relaxed)) > stall_ns
    }

    fn register(&self, id: u64, tx: mpsc::UnboundedSender<Event>) -> Option<Registration<'_>> {
        let mut st = lock(&self.state);
        if st.dead {
            return None;
        }
        st.calls.insert(id, tx);
        Some(Registration { conn: self, id })
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
        let load = {
            let mut st = lock(&self.state);
            let fresh = !st.loaded.contains(key) && st.loaded.insert(key.to_string());
            fresh || reload
        };
        if load {
            let msg = ToWorker::Load {
                key: key.to_string(),
                source: bundle.to_source(),
                env: bundle.has_env().then(|| bundle.env().clone()),
            };
            if let Err(e) = protocol::encode(&msg, out) {
                lock(&self.state).loaded.remove(key);
                return Err(internal(e));
            }
        }
        protocol::encode(&InvokeRef { id, key, request }, out).map_err(internal)
    }

    /// Queues frames; `owes` is how many answers they ask for.
    fn send(&self, frames: &[u8], owes: i64, inner: &Inner) {
        if owes > 0 && self.owed.fetch_add(owes, Ordering::Relaxed) <= 0 {
            self.progress_ns.store(inner.now_ns(), Ordering::Relaxed);
        }
        let mut st = lock(&self.out);
        if st.closed {
            return;
        }
        st.buf.extend_from_slice(frames);
        if st.flushing {
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
        for tx in calls.values() {
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

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
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
        slot,
        pid: child.id(),
        child: Mutex::new(child),
        sock: ours,
        out: Mutex::new(OutState::default()),
        out_cv: Condvar::new(),
        state: Mutex::new(ConnState::default()),
        owed: AtomicI64::new(0),
        progress_ns: AtomicU64::new(inner.now_ns()),
        ping: Mutex::new(None),
        sandbox: Mutex::new(None),
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
    conn.send(&init, 0, inner);
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
fn read_loop(inner: &Inner, conn: &Conn, sock: UnixStream) -> String {
    let mut rd = BufReader::with_capacity(64 << 10, sock);
    let mut payload = Vec::new();
    loop {
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
            ToParent::Pong { seq } => {
                let mut ping = lock(&conn.ping);
                if ping.is_some_and(|(s, _)| s == seq) {
                    *ping = None;
                }
                continue;
            }
            ToParent::HostCall {
                id,
                call,
                fetch,
                request,
            } => (
                id,
                Event::HostCall {
                    call,
                    fetch,
                    request,
                },
            ),
            ToParent::Done { id, invocation } => (id, Event::Done(invocation)),
            ToParent::UnknownBundle { id } => (id, Event::UnknownBundle),
        };
        conn.owed.fetch_sub(1, Ordering::Relaxed);
        let tx = lock(&conn.state).calls.get(&id).cloned();
        let undelivered = match tx {
            Some(tx) => tx.send(event).err().map(|e| e.0),
            None => Some(event),
        };
        // The invocation was abandoned (its future dropped): answer its host
        // calls so the worker can finish it.
        if let Some(Event::HostCall { call, .. }) = undelivered {
            let result = HostOutcome::Err("the invocation was cancelled".into());
            if let Ok(f) = protocol::frame(&ToWorker::HostResult { id, call, result }) {
                conn.send(&f, 1, inner);
            }
        }
    }
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
                            conn.send(&f, 0, &inner);
                        }
                        false
                    }
                }
            };
            if overdue {
                conn.kill(&format!(
                    "no answer to a ping within {timeout:?}: killed as hung"
                ));
            }
        }
    }
}
