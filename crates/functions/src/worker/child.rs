//! The worker process: sandbox, then an [`Engine`] on a current-thread tokio
//! runtime serving frames from the node on fd 0.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::io::{AsyncReadExt, BufReader};
use tokio::sync::{oneshot, Notify};

use crate::bundle::Bundle;
use crate::engine::{Engine, Host, HostError};
use crate::isolate::lock;
use crate::types::{HostRequest, HttpResponse};
use crate::worker::protocol::{self, Beside, CallKind, HostOutcome, ToParent, ToWorker};
use crate::worker::sandbox;

/// Stack of the thread that runs the isolates (see the crate doc on
/// `Limits::stack_bytes`).
const STACK_BYTES: usize = 8 << 20;

/// Exit codes, for the node's log.
const EXIT_SETUP: u8 = 70;
const EXIT_PROTOCOL: u8 = 71;

/// The worker process's entry point. See [`crate::worker`] for the contract:
/// the node's socket is fd 0. Call it first thing in the process, before any
/// other thread or runtime is started.
pub fn worker_main() -> ExitCode {
    run(true)
}

/// [`worker_main`] without the sandbox, for counting the worker's
/// instructions under valgrind (whose own system calls the seccomp filter
/// refuses). Only in builds with the `unconfined-worker` feature, which
/// nothing ships with.
#[cfg(feature = "unconfined-worker")]
pub fn worker_main_unconfined() -> ExitCode {
    run(false)
}

fn run(confine: bool) -> ExitCode {
    if let Err(e) = sandbox::ignore_stop_signals() {
        eprintln!("ledge function worker: signals: {e}");
        return ExitCode::from(EXIT_SETUP);
    }
    let std_stream = match socket_from_stdin() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ledge function worker: fd 0 is not usable: {e}");
            return ExitCode::from(EXIT_SETUP);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        // Look at the socket often: pings and host results are answered
        // between isolate segments.
        .event_interval(8)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ledge function worker: runtime: {e}");
            return ExitCode::from(EXIT_SETUP);
        }
    };
    let report = if confine {
        sandbox::apply()
    } else {
        sandbox::SandboxReport {
            errors: vec!["not confined: a build for profiling".into()],
            ..Default::default()
        }
    };
    if confine && !report.confined() {
        eprintln!("ledge function worker: sandbox not applied: {report:?}");
        return ExitCode::from(EXIT_SETUP);
    }
    let thread = std::thread::Builder::new()
        .stack_size(STACK_BYTES)
        .spawn(move || serve(runtime, std_stream, report));
    match thread.map(|t| t.join()) {
        Ok(Ok(code)) => code,
        Ok(Err(_)) => ExitCode::from(EXIT_PROTOCOL),
        Err(e) => {
            eprintln!("ledge function worker: thread: {e}");
            ExitCode::from(EXIT_SETUP)
        }
    }
}

fn socket_from_stdin() -> std::io::Result<std::os::unix::net::UnixStream> {
    #[allow(unsafe_code)]
    // SAFETY: fd 0 is open for the life of the process (the node passed the
    // socket as stdin) and nothing else in this process uses or closes it,
    // so taking ownership of it here is sound.
    let fd = unsafe { OwnedFd::from_raw_fd(0) };
    let stream = std::os::unix::net::UnixStream::from(fd);
    stream.set_nonblocking(true)?;
    Ok(stream)
}

fn serve(
    runtime: tokio::runtime::Runtime,
    stream: std::os::unix::net::UnixStream,
    report: sandbox::SandboxReport,
) -> ExitCode {
    let local = tokio::task::LocalSet::new();
    let result = local.block_on(&runtime, async move {
        let stream = tokio::net::UnixStream::from_std(stream)?;
        let (rd, wr) = stream.into_split();
        let out = Arc::new(Outbox {
            pending: Mutex::new(Vec::new()),
            ready: Notify::new(),
            wr,
        });
        tokio::task::spawn_local(write_loop(Arc::clone(&out)));
        // A segment of JavaScript that runs long writes the answers
        // finished before it, instead of holding them until it ends.
        let early = Arc::clone(&out);
        crate::isolate::on_long_segment(Some(Rc::new(move || {
            // A failed write is the write loop's to see.
            let _ = early.write_some();
        })));
        Worker::new(out, report).read_loop(rd).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ledge function worker: {e}");
            ExitCode::from(EXIT_PROTOCOL)
        }
    }
}

/// Frames for the node not written yet. The write loop writes them when
/// the thread is free (everything queued by then in one write), and the
/// interrupt handler of a segment of JavaScript that runs long writes them
/// too ([`crate::isolate::on_long_segment`]): an answer finished before
/// that segment does not wait for its end.
struct Outbox {
    pending: Mutex<Vec<u8>>,
    ready: Notify,
    wr: tokio::net::unix::OwnedWriteHalf,
}

impl Outbox {
    fn push(&self, frame: &[u8]) {
        let was_empty = {
            let mut pending = lock(&self.pending);
            let was_empty = pending.is_empty();
            pending.extend_from_slice(frame);
            was_empty
        };
        // Frames already waiting had the write loop woken, and it writes
        // until nothing is left.
        if was_empty {
            self.ready.notify_one();
        }
    }

    /// Writes what the socket takes without waiting: `Ok(true)` when
    /// nothing is left. (Only this thread writes, and never between the
    /// start and end of this call, so frames are never interleaved.)
    fn write_some(&self) -> std::io::Result<bool> {
        let mut pending = lock(&self.pending);
        while !pending.is_empty() {
            match self.wr.try_write(&pending) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    pending.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

async fn write_loop(out: Arc<Outbox>) {
    loop {
        out.ready.notified().await;
        loop {
            let written = match out.write_some() {
                Ok(true) => break,
                Ok(false) => out.wr.writable().await,
                Err(e) => Err(e),
            };
            if written.is_err() {
                // The node went away: nothing left to serve.
                std::process::exit(0);
            }
        }
    }
}

type PendingCalls =
    Arc<Mutex<HashMap<(u64, u32), oneshot::Sender<HostOutcome>, foldhash::fast::RandomState>>>;

struct Worker {
    out: Arc<Outbox>,
    report: Option<sandbox::SandboxReport>,
    engine: Option<Arc<Engine>>,
    max_bundles: usize,
    /// Bundle key → (bundle, last use); shared with the invocations that
    /// run it (a `Bundle`'s clone copies its names).
    bundles: HashMap<String, (Rc<Bundle>, u64), foldhash::fast::RandomState>,
    /// Bundle key → the environment and the fixed context its invocations
    /// were last sent with.
    beside: HashMap<String, Beside, foldhash::fast::RandomState>,
    tick: u64,
    calls: PendingCalls,
    idle: Option<Rc<IdleWork>>,
}

/// The thread that does the engine's idle work (dropping evicted isolates,
/// making the blank isolate for the next cold start) in the `SCHED_IDLE`
/// class: on a CPU that has anything else to run, it waits, so it never
/// delays an invocation or the node.
struct IdleWork(std::sync::mpsc::SyncSender<()>);

impl IdleWork {
    fn start(engine: Arc<Engine>) -> std::io::Result<IdleWork> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("fn-idle".into())
            .stack_size(STACK_BYTES)
            .spawn(move || {
                if let Err(e) = sandbox::lower_to_idle_priority() {
                    eprintln!("ledge function worker: idle work at normal priority: {e}");
                }
                while rx.recv().is_ok() {
                    while engine.idle_work() {}
                }
            })?;
        let work = IdleWork(tx);
        // The first blank isolate, before the first invocation.
        work.wake();
        Ok(work)
    }

    /// Has the thread look for work (a wake-up already pending is enough).
    fn wake(&self) {
        let _ = self.0.try_send(());
    }
}

fn send(out: &Outbox, msg: &ToParent) {
    match protocol::frame(msg) {
        Ok(f) => out.push(&f),
        Err(e) => eprintln!("ledge function worker: cannot encode a frame: {e}"),
    }
}

impl Worker {
    fn new(out: Arc<Outbox>, report: sandbox::SandboxReport) -> Worker {
        Worker {
            out,
            report: Some(report),
            engine: None,
            max_bundles: 1,
            bundles: HashMap::default(),
            beside: HashMap::default(),
            tick: 0,
            calls: PendingCalls::default(),
            idle: None,
        }
    }

    async fn read_loop(mut self, rd: tokio::net::unix::OwnedReadHalf) -> std::io::Result<()> {
        let mut rd = BufReader::with_capacity(64 << 10, rd);
        let mut payload = Vec::new();
        loop {
            let mut header = [0u8; 4];
            match rd.read_exact(&mut header).await {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            }
            let len = protocol::payload_len(header).ok_or_else(|| bad("frame too large"))?;
            payload.resize(len, 0);
            rd.read_exact(&mut payload).await?;
            let msg: ToWorker = protocol::decode(&payload).map_err(|e| bad(&e.to_string()))?;
            self.handle(msg)?;
        }
    }

    fn handle(&mut self, msg: ToWorker) -> std::io::Result<()> {
        match msg {
            ToWorker::Init {
                limits,
                max_bundles,
            } => {
                if self.engine.is_some() {
                    return Err(bad("a second init"));
                }
                let engine = Arc::new(Engine::new(limits));
                // Without the thread, cold starts make their isolates.
                self.idle = match IdleWork::start(Arc::clone(&engine)) {
                    Ok(work) => Some(Rc::new(work)),
                    Err(e) => {
                        eprintln!("ledge function worker: no idle-work thread: {e}");
                        None
                    }
                };
                self.engine = Some(engine);
                self.max_bundles = max_bundles.max(1);
                if let Some(sandbox) = self.report.take() {
                    send(&self.out, &ToParent::Ready { sandbox });
                }
            }
            ToWorker::Load { key, source, env } => self.load(key, source, env)?,
            ToWorker::Invoke {
                id,
                key,
                mut request,
                env,
                fixed,
            } => {
                let engine = self
                    .engine
                    .clone()
                    .ok_or_else(|| bad("invoke before init"))?;
                self.tick += 1;
                let Some((bundle, used)) = self.bundles.get_mut(&key) else {
                    send(&self.out, &ToParent::UnknownBundle { id });
                    return Ok(());
                };
                *used = self.tick;
                let bundle = Rc::clone(bundle);
                // The node sends both with the first invocation after a
                // `Load`; without them, have the node load again.
                let beside = match (self.beside.get_mut(&key), env, fixed) {
                    (Some(last), env, fixed) => {
                        if let Some(env) = env {
                            last.env = env;
                        }
                        if let Some(fixed) = fixed {
                            last.fixed = fixed;
                        }
                        last
                    }
                    (None, Some(env), Some(fixed)) => {
                        self.beside.entry(key).or_insert(Beside { env, fixed })
                    }
                    (None, _, _) => {
                        send(&self.out, &ToParent::UnknownBundle { id });
                        return Ok(());
                    }
                };
                let context = request.context_mut();
                context.env = Arc::clone(&beside.env);
                context.fixed = Arc::clone(&beside.fixed);
                let host = WorkerHost {
                    id,
                    out: Arc::clone(&self.out),
                    calls: Arc::clone(&self.calls),
                    next_call: AtomicU32::new(0),
                };
                let out = Arc::clone(&self.out);
                let idle = self.idle.clone();
                // The invocation's future is large (an isolate's event loop,
                // ~1.6 KB): boxed, so that a task made of it, which the
                // runtime copies when it spawns it and at each change of
                // its stage, stays small.
                let mut invocation = Box::pin(async move {
                    let invocation = engine.invoke_owned(&bundle, request, &host).await;
                    // A cold start took the blank isolate, and may have
                    // evicted one.
                    let cold = invocation.telemetry.cold_start;
                    send(&out, &ToParent::Done { id, invocation });
                    if let Some(idle) = idle.filter(|_| cold) {
                        // Once the answer is written: the write loop, woken
                        // by the send, runs before this task's next poll.
                        // (An idle-class thread woken first can still take
                        // the CPU the answer needs, until its next pause.)
                        tokio::task::yield_now().await;
                        idle.wake();
                    }
                });
                // Most invocations finish without waiting (a function that
                // answers at once): polled here first, only one that waits
                // becomes a task. That task's first poll, which the runtime
                // makes at once, registers its real waker wherever this
                // poll left the no-op one.
                let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                if invocation.as_mut().poll(&mut cx).is_pending() {
                    tokio::task::spawn_local(invocation);
                }
            }
            ToWorker::HostResult { id, call, result } => {
                if let Some(tx) = lock(&self.calls).remove(&(id, call)) {
                    let _ = tx.send(result);
                }
            }
            ToWorker::Evict { bundle_id } => {
                let prefix = format!("{bundle_id}#");
                self.bundles.retain(|k, _| !k.starts_with(&prefix));
                self.beside.retain(|k, _| !k.starts_with(&prefix));
                if let Some(engine) = &self.engine {
                    engine.evict(&bundle_id);
                }
            }
            ToWorker::Ping { seq } => {
                let (blank, blanks_made) = self
                    .engine
                    .as_ref()
                    .map_or((false, 0), |e| (e.has_spare(), e.blanks_made()));
                send(
                    &self.out,
                    &ToParent::Pong {
                        seq,
                        blank,
                        blanks_made,
                    },
                );
            }
        }
        Ok(())
    }

    fn load(
        &mut self,
        key: String,
        source: crate::bundle::BundleSource,
        env: Option<BTreeMap<String, String>>,
    ) -> std::io::Result<()> {
        let bundle = Bundle::new(source).map_err(|e| bad(&e.to_string()))?;
        let bundle = match env {
            Some(env) => bundle.with_env(env),
            None => bundle,
        };
        if bundle.key() != key {
            return Err(bad("bundle key does not match its source"));
        }
        self.tick += 1;
        self.bundles.insert(key, (Rc::new(bundle), self.tick));
        while self.bundles.len() > self.max_bundles {
            let oldest = self
                .bundles
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => {
                    self.bundles.remove(&k);
                    self.beside.remove(&k);
                }
                None => break,
            }
        }
        Ok(())
    }
}

fn bad(what: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("bad frame: {what}"),
    )
}

/// The [`Host`] of invocations in the worker: host calls become frames to the
/// node, answered by `HostResult`.
struct WorkerHost {
    id: u64,
    out: Arc<Outbox>,
    calls: PendingCalls,
    next_call: AtomicU32,
}

/// Forgets a pending call whose future was dropped (host call timeout).
struct CallGuard<'a> {
    calls: &'a PendingCalls,
    key: (u64, u32),
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        lock(self.calls).remove(&self.key);
    }
}

impl WorkerHost {
    async fn call(&self, kind: CallKind, request: HostRequest) -> Result<HostOutcome, HostError> {
        let call = self.next_call.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.calls).insert((self.id, call), tx);
        let _guard = CallGuard {
            calls: &self.calls,
            key: (self.id, call),
        };
        send(
            &self.out,
            &ToParent::HostCall {
                id: self.id,
                call,
                kind,
                request,
            },
        );
        match rx.await {
            Ok(HostOutcome::Err(m)) => Err(HostError::new(m)),
            Ok(outcome) => Ok(outcome),
            Err(_) => Err(HostError::new("host call lost")),
        }
    }

    async fn response(
        &self,
        kind: CallKind,
        request: HostRequest,
    ) -> Result<HttpResponse, HostError> {
        match self.call(kind, request).await? {
            HostOutcome::Ok(r) => Ok(r),
            _ => Err(HostError::new(
                "the node answered with a body, not a response",
            )),
        }
    }
}

#[async_trait]
impl Host for WorkerHost {
    async fn next(&self, request: HostRequest) -> Result<HttpResponse, HostError> {
        self.response(CallKind::Next, request).await
    }

    async fn fetch(&self, request: HostRequest) -> Result<HttpResponse, HostError> {
        self.response(CallKind::Fetch, request).await
    }

    async fn read_body(&self, handle: u32) -> Result<Option<Vec<u8>>, HostError> {
        match self
            .call(CallKind::Read(handle), HostRequest::default())
            .await?
        {
            HostOutcome::Chunk(bytes) => Ok(Some(bytes)),
            HostOutcome::End => Ok(None),
            _ => Err(HostError::new(
                "the node answered with a response, not a body",
            )),
        }
    }
}
