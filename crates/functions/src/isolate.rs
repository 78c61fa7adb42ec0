//! One QuickJS runtime + context running one bundle, and the event loop of an
//! invocation (jobs, host calls, timers) with its limits.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use rquickjs::{
    Array, CatchResultExt, CaughtError, Context, Ctx, Function, Module, Object, Persistent,
    Runtime, TypedArray, Value, WriteOptions,
};
use serde::Deserialize;

use crate::alloc::{Budget, LimitedAllocator};
use crate::bundle::{declare_module, Bundle, BundleLoader, BundleResolver, KeepAlive};
use crate::natives;
use crate::types::{
    ConsoleLine, ErrorKind, FunctionConfig, HostRequest, HttpResponse, InvocationError,
    InvocationOutcome, InvocationRequest, Telemetry,
};
use crate::{Host, HostError, Limits};

/// QuickJS's first threshold for a cycle collection (bytes allocated).
const FIRST_GC_THRESHOLD: usize = 256 << 10;

/// The glue module.
const GLUE: &str = include_str!("js/runtime.js");

/// A lazily built part of the glue: its name, and its source with the
/// builder function as the module's default export.
macro_rules! lazy_glue {
    ($name:literal, $file:literal, $builder:ident) => {
        (
            $name,
            concat!(
                include_str!($file),
                "\nexport default ",
                stringify!($builder),
                ";\n"
            ),
        )
    };
}

/// Parts of the glue loaded on first use (`N.lazyGlue(name)`), so a cold
/// isolate does not read their bytecode: each module's default export is the
/// builder the glue calls with what it shares.
const LAZY_GLUE: [(&str, &str); 6] = [
    lazy_glue!("streams", "js/streams.js", ledgeStreams),
    lazy_glue!("urlpattern", "js/urlpattern.js", ledgeURLPattern),
    lazy_glue!("formdata", "js/formdata.js", ledgeFormData),
    lazy_glue!("abort", "js/abort.js", ledgeAbort),
    lazy_glue!("subtle", "js/subtle.js", ledgeSubtle),
    lazy_glue!("clone", "js/clone.js", ledgeClone),
];

/// Largest response body drained from a stream when a handler returns a
/// `Response` whose body is a `ReadableStream` (also the cap on a streamed
/// body sent with `fetch`/`next()`). Past it the invocation fails.
// TODO: a `Limits` field once `engine.rs` is free to change.
pub(crate) const MAX_STREAMED_BODY_BYTES: usize = 32 << 20;

/// A segment of tenant code shorter than this (wall time) is charged its
/// wall time, without reading the thread's CPU clock (a system call); a
/// preempted one takes longer and is measured with that clock.
const SHORT_SEGMENT_NS: u64 = 100_000;
/// How old a reading of the thread's CPU clock may be to serve as the start
/// of a segment: a segment measured from it is charged at most this much of
/// the thread's CPU time from before it began.
const RECENT_CPU_READING: Duration = Duration::from_micros(200);

/// How long a segment of JavaScript runs before the thread's
/// [`on_long_segment`] hook is called (then at each interrupt check).
const LONG_SEGMENT: Duration = Duration::from_millis(1);

thread_local! {
    static LONG_SEGMENT_HOOK: std::cell::RefCell<Option<std::rc::Rc<dyn Fn()>>> =
        const { std::cell::RefCell::new(None) };
}

/// Sets what the interrupt handler of an isolate running on this thread
/// calls once a segment has run for [`LONG_SEGMENT`], and at each of its
/// checks after that (every few thousand bytecode instructions). The
/// worker process writes the answers finished before the segment: they
/// would otherwise wait for it to end, up to a CPU limit. It must not run
/// JavaScript.
pub(crate) fn on_long_segment(hook: Option<std::rc::Rc<dyn Fn()>>) {
    LONG_SEGMENT_HOOK.with(|h| *h.borrow_mut() = hook);
}

fn long_segment() {
    let hook = LONG_SEGMENT_HOOK.with(|h| h.borrow().clone());
    if let Some(hook) = hook {
        hook();
    }
}

/// State shared between the isolate's owner and its native functions and
/// interrupt handler.
pub(crate) struct Shared {
    base: Instant,
    /// Nanoseconds since `base` after which running JS is interrupted.
    deadline_ns: AtomicU64,
    interrupted: AtomicBool,
    invocation_start_ns: AtomicU64,
    /// Set by the glue when the handler's promise settled.
    pub(crate) settled: AtomicBool,
    /// What it settled with (or why that could not be read), from the glue.
    pub(crate) outcome: Mutex<Option<Result<Settled, String>>>,
    /// `waitUntil` promises of the current invocation still pending.
    pub(crate) waits: AtomicI32,
    /// The glue was told of a promise rejection since it last ran `end`.
    rejections: AtomicBool,
    /// Whether the current segment is measured with the thread's CPU clock.
    precise: AtomicBool,
    /// When the current segment was armed (`now_ns`).
    armed_at_ns: AtomicU64,
    /// The isolate's memory budget (its allocator's counters).
    budget: Arc<Budget>,
    pub(crate) console: Mutex<ConsoleBuf>,
    pub(crate) host_ops: Mutex<Vec<HostOp>>,
    pub(crate) max_host_body_bytes: usize,
}

#[derive(Default)]
pub(crate) struct ConsoleBuf {
    pub(crate) lines: Vec<ConsoleLine>,
    pub(crate) dropped: u32,
    pub(crate) max_lines: usize,
    pub(crate) max_line_bytes: usize,
}

pub(crate) struct HostOp {
    pub(crate) kind: String,
    pub(crate) id: f64,
    pub(crate) meta: String,
    pub(crate) body: Vec<u8>,
}

/// Locks a mutex, recovering the data if a panic poisoned it (the data here
/// stays consistent: every critical section is a single push or take).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// The isolate's memory budget.
    pub(crate) fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }

    fn new(limits: &Limits, budget: Arc<Budget>) -> Shared {
        Shared {
            budget,
            base: Instant::now(),
            deadline_ns: AtomicU64::new(u64::MAX),
            interrupted: AtomicBool::new(false),
            invocation_start_ns: AtomicU64::new(0),
            settled: AtomicBool::new(false),
            outcome: Mutex::new(None),
            waits: AtomicI32::new(0),
            rejections: AtomicBool::new(false),
            precise: AtomicBool::new(false),
            armed_at_ns: AtomicU64::new(0),
            console: Mutex::new(ConsoleBuf {
                max_lines: limits.max_console_lines,
                max_line_bytes: limits.max_console_line_bytes,
                ..ConsoleBuf::default()
            }),
            host_ops: Mutex::new(Vec::new()),
            max_host_body_bytes: limits.max_host_body_bytes,
        }
    }

    fn now_ns(&self) -> u64 {
        self.ns_at(Instant::now())
    }

    /// `at` on the clock of [`Shared::now_ns`].
    fn ns_at(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX)
    }

    /// The clock the budget is measured with in the current segment: the
    /// thread's CPU time while tenant code runs (wall time if that clock is
    /// unavailable), wall time for the glue's own short bookkeeping calls
    /// (reading the thread's CPU clock is a system call, ~0.7 µs here).
    fn clock_ns(&self) -> u64 {
        if self.precise.load(Ordering::Relaxed) {
            crate::cpu::thread_cpu_ns().unwrap_or_else(|| self.now_ns())
        } else {
            self.now_ns()
        }
    }

    fn should_interrupt(&self) -> bool {
        let running = self
            .now_ns()
            .saturating_sub(self.armed_at_ns.load(Ordering::Relaxed));
        if running >= LONG_SEGMENT.as_nanos() as u64 {
            long_segment();
        }
        if self.clock_ns() > self.deadline_ns.load(Ordering::Relaxed) {
            self.interrupted.store(true, Ordering::Relaxed);
            true
        } else {
            false
        }
    }

    /// Starts a segment with `budget` left; returns the clock reading it
    /// started at. `precise`: the segment runs tenant code (CPU clock).
    fn arm(&self, budget: Duration, precise: bool) -> u64 {
        self.precise.store(precise, Ordering::Relaxed);
        let budget = u64::try_from(budget.as_nanos()).unwrap_or(u64::MAX);
        let at = Instant::now();
        let now = self.ns_at(at);
        self.armed_at_ns.store(now, Ordering::Relaxed);
        // A reading of the CPU clock taken on this thread within the last
        // RECENT_CPU_READING serves as the start (it can only be earlier).
        let start = if precise {
            crate::cpu::thread_cpu_ns_at_most(RECENT_CPU_READING, at).unwrap_or(now)
        } else {
            now
        };
        self.deadline_ns
            .store(start.saturating_add(budget), Ordering::Relaxed);
        start
    }

    /// What the segment armed at `start` (`arm`'s answer) has spent: its
    /// wall time if that is under SHORT_SEGMENT (a thread cannot use more
    /// CPU time than wall time, so this never undercharges, and it needs no
    /// system call), else the CPU clock's advance since `start`.
    fn spent_since(&self, start: u64) -> u64 {
        let wall = self
            .now_ns()
            .saturating_sub(self.armed_at_ns.load(Ordering::Relaxed));
        if !self.precise.load(Ordering::Relaxed) || wall < SHORT_SEGMENT_NS {
            return wall;
        }
        self.clock_ns().saturating_sub(start)
    }

    /// How the handler settled (from the glue's natives), for the
    /// invocation's loop to read.
    pub(crate) fn set_outcome(&self, settled: Result<Settled, String>) {
        *lock(&self.outcome) = Some(settled);
        self.settled.store(true, Ordering::Relaxed);
    }

    /// The handler settled with `outcome` (`N.answer`, `passed`, `rewrote`).
    pub(crate) fn settle_with(&self, outcome: InvocationOutcome, cookies: Vec<String>) {
        self.set_outcome(Ok(Settled {
            done: 1,
            result: Some(outcome),
            error: None,
            cookies,
        }));
    }

    fn disarm(&self) {
        self.deadline_ns.store(u64::MAX, Ordering::Relaxed);
    }

    fn past_deadline(&self) -> bool {
        self.clock_ns() > self.deadline_ns.load(Ordering::Relaxed)
    }

    /// Milliseconds since the start of the current invocation.
    pub(crate) fn now_ms(&self) -> f64 {
        let start = self.invocation_start_ns.load(Ordering::Relaxed);
        self.now_ns().saturating_sub(start) as f64 / 1e6
    }

    pub(crate) fn log(&self, level: &str, message: String) {
        let mut c = lock(&self.console);
        if c.lines.len() >= c.max_lines {
            c.dropped = c.dropped.saturating_add(1);
            return;
        }
        let mut message = message;
        if message.len() > c.max_line_bytes {
            let mut cut = c.max_line_bytes;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        c.lines.push(ConsoleLine {
            level: level.to_string(),
            message,
        });
    }
}

/// The glue's values the host keeps between calls (never reachable from
/// tenant code).
struct GlueHandles {
    internals: Persistent<Object<'static>>,
    /// The glue's `run` (kept, not looked up by name per invocation).
    run: Persistent<Function<'static>>,
    /// `Request.prototype` and the glue's `Context.prototype`, for the
    /// invocation's request and context (made in Rust).
    request_proto: Persistent<Object<'static>>,
    context_proto: Persistent<Object<'static>>,
}

/// The JS values the host keeps between calls: the glue's and the bundle's
/// default export.
struct Handles {
    glue: GlueHandles,
    handler: Persistent<Function<'static>>,
}

// SAFETY (both impls): `Persistent` is `!Send` only because it holds raw
// engine pointers. These values belong to the isolate's runtime, which is
// itself `Send` (the `parallel` feature serialises every use behind the
// runtime's lock): they are only restored inside `Context::with` (holding
// that lock), and dropped with the `Blank` or `Isolate` that owns them
// exclusively, before its context and runtime (field order). Neither is ever
// shared between threads (the handles are not `Sync`), only moved, and
// QuickJS has no thread affinity besides the stack top, which rquickjs
// refreshes on every entry.
#[allow(unsafe_code)]
unsafe impl Send for GlueHandles {}
#[allow(unsafe_code)]
unsafe impl Send for Handles {}

/// An isolate with its glue loaded and no bundle yet, made ahead of need
/// (`Engine::idle_work`) so that a cold start only evaluates the tenant's
/// modules. No tenant code has run in it. Field order matters as for
/// [`Isolate`].
pub(crate) struct Blank {
    glue: GlueHandles,
    ctx: Context,
    rt: Runtime,
    shared: Arc<Shared>,
}

/// A warm isolate for one bundle. Field order matters: JS handles are dropped
/// before the context, the context before the runtime.
pub(crate) struct Isolate {
    handles: Handles,
    ctx: Context,
    rt: Runtime,
    shared: Arc<Shared>,
    pub(crate) key: String,
    /// [`crate::Bundle::key_hash`] of `key`.
    pub(crate) key_hash: u64,
    pub(crate) config: Option<FunctionConfig>,
    /// Set once a limit was hit: never run this isolate again.
    pub(crate) poisoned: bool,
    /// The last invocation's env and its JSON: a site's env rarely changes
    /// between requests, and comparing costs less than serialising.
    env_cache: Option<(Arc<Env>, Arc<str>)>,
    /// The context's per-deploy members as JSON (see [`DeployContext`]).
    deploy_context: Option<DeployContext>,
    /// Bytecode buffers QuickJS may point into: dropped after `rt` (last field).
    _keep: KeepAlive,
}

fn err(kind: ErrorKind, message: impl Into<String>) -> InvocationError {
    InvocationError {
        kind,
        message: message.into(),
    }
}

fn caught_message(e: &CaughtError<'_>) -> String {
    match e {
        CaughtError::Exception(ex) => {
            let msg = ex.message().unwrap_or_default();
            let stack = ex.stack().unwrap_or_default();
            let name = ex
                .get::<_, Option<String>>("name")
                .ok()
                .flatten()
                .unwrap_or_else(|| "Error".to_string());
            if stack.is_empty() {
                format!("{name}: {msg}")
            } else {
                format!("{name}: {msg}\n{}", stack.trim_end())
            }
        }
        CaughtError::Value(v) => format!("Uncaught {}", natives::display_value(v)),
        CaughtError::Error(e) => e.to_string(),
    }
}

impl Blank {
    /// Creates the runtime and its context and loads the glue (most of a
    /// cold isolate's cost), for a bundle to be named later.
    pub(crate) fn new(limits: &Limits) -> Result<Blank, InvocationError> {
        Blank::new_pausing(limits, &mut || {})
    }

    /// [`Blank::new`], calling `pause` between its steps (each a few hundred
    /// microseconds at most), where idle work lets the scheduler run others.
    pub(crate) fn new_pausing(
        limits: &Limits,
        pause: &mut dyn FnMut(),
    ) -> Result<Blank, InvocationError> {
        let budget = Budget::new(limits.memory_bytes);
        let rt = Runtime::new_with_alloc(LimitedAllocator::new(Arc::clone(&budget)))
            .map_err(|e| err(ErrorKind::Internal, e.to_string()))?;
        rt.set_max_stack_size(limits.stack_bytes);
        // No cycle collection while the glue is built: what it makes stays
        // alive, its temporaries are freed by their counts, and the
        // collection QuickJS would start at its first threshold (256 KiB,
        // about halfway) costs some 4 % of a blank isolate.
        rt.set_gc_threshold(usize::MAX);
        let shared = Arc::new(Shared::new(limits, budget));
        let watcher = Arc::clone(&shared);
        rt.set_interrupt_handler(Some(Box::new(move || watcher.should_interrupt())));
        let tracker = Arc::clone(&shared);
        rt.set_host_promise_rejection_tracker(Some(Box::new(
            move |ctx, promise, reason, handled| {
                tracker.rejections.store(true, Ordering::Relaxed);
                // Nothing is pending when QuickJS calls this; whatever our own
                // calls below leave pending is cleared, never propagated.
                let pending_before = ctx.has_exception();
                // The glue keeps the list; it is logged when the invocation ends.
                if let Ok(track) = ctx.globals().get::<_, Function>("__ledgeRejection") {
                    let _ = track.call::<_, ()>((promise, reason, handled));
                }
                if !pending_before && ctx.has_exception() {
                    let _ = ctx.catch();
                }
            },
        )));
        let ctx = Context::full(&rt).map_err(|e| err(ErrorKind::Internal, e.to_string()))?;
        pause();
        shared.arm(limits.cpu_time, true);
        let glue = ctx.with(|ctx| glue_setup(&ctx, &shared, pause));
        shared.disarm();
        let glue = glue.map_err(|e| classify(&shared, limits, e))?;
        // The threshold QuickJS sets after a collection: half as much again
        // as is in use (never below its first one), before any tenant code.
        let used = shared.budget.used();
        rt.set_gc_threshold((used + used / 2).max(FIRST_GC_THRESHOLD));
        Ok(Blank {
            glue,
            ctx,
            rt,
            shared,
        })
    }
}

impl Isolate {
    /// Creates the runtime, installs the globals and evaluates the bundle.
    pub(crate) fn new(bundle: &Bundle, limits: &Limits) -> Result<Isolate, InvocationError> {
        Isolate::from_blank(Blank::new(limits)?, bundle, limits)
    }

    /// Evaluates the bundle in a blank isolate (which no tenant code has
    /// run in).
    pub(crate) fn from_blank(
        blank: Blank,
        bundle: &Bundle,
        limits: &Limits,
    ) -> Result<Isolate, InvocationError> {
        // Declared first, so that on failure it is dropped after the runtime
        // (QuickJS may point into the bytecode it keeps).
        let keep = KeepAlive::default();
        let Blank {
            glue,
            ctx,
            rt,
            shared,
        } = blank;
        rt.set_loader(
            BundleResolver(bundle.shared_modules()),
            BundleLoader {
                modules: bundle.shared_modules(),
                cache: bundle.bytecode_cache(),
                keep: KeepAlive::clone(&keep),
            },
        );
        shared.arm(limits.cpu_time, true);
        let setup = ctx.with(|ctx| setup(&ctx, bundle, glue, &keep));
        shared.disarm();
        let classify = |e: InvocationError| classify(&shared, limits, e);
        let (handles, config) = setup.map_err(classify)?;
        Ok(Isolate {
            handles,
            ctx,
            rt,
            shared,
            key: bundle.key().to_string(),
            key_hash: bundle.key_hash(),
            config,
            poisoned: false,
            env_cache: None,
            deploy_context: None,
            _keep: keep,
        })
    }

    /// Bytes its engine has allocated.
    pub(crate) fn memory_used(&self) -> usize {
        self.shared.budget.used()
    }

    /// Drops the isolate in steps (its JS values, its context, a garbage
    /// collection, its runtime), calling `pause` between them, as
    /// [`Blank::new_pausing`] does.
    pub(crate) fn dispose(self, pause: &mut dyn FnMut()) {
        let Isolate {
            handles,
            ctx,
            rt,
            shared,
            key,
            key_hash: _,
            config,
            poisoned: _,
            env_cache,
            deploy_context,
            _keep: keep,
        } = self;
        drop(handles);
        drop((key, config, env_cache, deploy_context));
        pause();
        drop(ctx);
        pause();
        rt.run_gc();
        pause();
        drop(rt);
        // After the runtime, as in the struct's field order.
        drop(keep);
        drop(shared);
    }

    /// Runs one invocation, begun at `started`, to its end (including
    /// `waitUntil` work). Fills `telemetry` but for its `duration` (the
    /// caller's, which knows what came before).
    pub(crate) async fn invoke(
        &mut self,
        request: Cow<'_, InvocationRequest>,
        host: &dyn Host,
        limits: &Limits,
        telemetry: &mut Telemetry,
        started: Instant,
    ) -> (InvocationOutcome, Vec<String>) {
        self.begin(limits, started);
        let mut run = Run {
            cpu: Duration::ZERO,
            outcome: None,
            cookies: Vec::new(),
            host_calls: 0,
        };
        let result = self.drive(request, host, limits, &mut run, started).await;
        if let Err(e) = result {
            let e = classify(&self.shared, limits, e);
            if e.kind.poisons_isolate() {
                self.poisoned = true;
            }
            if run.outcome.is_some() {
                telemetry.late_error = Some(e);
            } else {
                run.outcome = Some(InvocationOutcome::Error(e));
            }
        }
        // Microtasks left behind by a failed invocation run now, within the
        // budget, so they never run inside the next one.
        if !self.poisoned && self.rt.is_job_pending() {
            if let Err(e) = self.segment(&mut run, limits, true, |_, _, _| Ok(())) {
                let e = classify(&self.shared, limits, e);
                self.poisoned |= e.kind.poisons_isolate();
                telemetry.late_error.get_or_insert(e);
            }
        }
        // Log the rejections left unhandled, and reset the invocation state in
        // JS (timers, pending host calls). Without rejections to log this is
        // left to the next `run`, which replaces that state before any JS
        // runs (nothing runs in an isolate between invocations), and every
        // callback of an earlier invocation checks that it is still current.
        if !self.poisoned && self.shared.rejections.swap(false, Ordering::Relaxed) {
            self.shared.arm(limits.cpu_time, false);
            let reset = self.ctx.with(|ctx| -> rquickjs::Result<()> {
                let internals = self.handles.glue.internals.clone().restore(&ctx)?;
                let end: Function = internals.get("end")?;
                end.call::<_, ()>(())
            });
            self.shared.disarm();
            if reset.is_err() {
                self.poisoned = true;
            }
        }
        // A tenant may catch an out-of-memory error and carry on: an isolate
        // that had an allocation refused, or is close to its limit, is not
        // worth keeping.
        if self.shared.budget.refused() || self.shared.budget.used() > limits.memory_bytes / 10 * 9
        {
            self.poisoned = true;
        }
        telemetry.cpu_time = run.cpu;
        telemetry.host_calls = run.host_calls;
        {
            let mut c = lock(&self.shared.console);
            telemetry.console = std::mem::take(&mut c.lines);
            telemetry.console_dropped = std::mem::take(&mut c.dropped);
        }
        let outcome = run
            .outcome
            .unwrap_or_else(|| InvocationOutcome::Error(err(ErrorKind::Internal, "no outcome")));
        (outcome, run.cookies)
    }

    /// What the function's `context` is made of (the env travels
    /// separately): the per-deploy members' JSON from the isolate's cache,
    /// and the request's own members, made JSON only if read.
    fn context_source(
        &mut self,
        c: &Arc<crate::types::RequestContext>,
    ) -> serde_json::Result<crate::quick::ContextSource> {
        let deploy = match &self.deploy_context {
            Some(d) if d.matches(c) => Arc::clone(&d.json),
            _ => {
                let d = DeployContext::new(c)?;
                let json = Arc::clone(&d.json);
                self.deploy_context = Some(d);
                json
            }
        };
        Ok(crate::quick::ContextSource {
            deploy,
            request: Arc::clone(c),
        })
    }

    fn begin(&self, limits: &Limits, started: Instant) {
        self.shared.interrupted.store(false, Ordering::Relaxed);
        self.shared.settled.store(false, Ordering::Relaxed);
        *lock(&self.shared.outcome) = None;
        self.shared.waits.store(0, Ordering::Relaxed);
        self.shared.budget.reset_refused();
        self.shared
            .invocation_start_ns
            .store(self.shared.ns_at(started), Ordering::Relaxed);
        lock(&self.shared.host_ops).clear();
        let mut c = lock(&self.shared.console);
        c.lines.clear();
        c.dropped = 0;
        c.max_lines = limits.max_console_lines;
        c.max_line_bytes = limits.max_console_line_bytes;
    }

    async fn drive(
        &mut self,
        request: Cow<'_, InvocationRequest>,
        host: &dyn Host,
        limits: &Limits,
        run: &mut Run,
        started: Instant,
    ) -> Result<(), InvocationError> {
        let wall_deadline = tokio::time::Instant::from_std(started + limits.wall_time);
        let context = Arc::clone(&request.context);
        let meta = request_parts(request)?;
        let ctx_source = self
            .context_source(&context)
            .map_err(|e| err(ErrorKind::Internal, e.to_string()))?;
        let env_json = match &self.env_cache {
            // The same map (requests to a site share it), or an equal one
            // (the site's settings were saved again).
            Some((env, json)) if Arc::ptr_eq(env, &context.env) || *env == context.env => {
                Arc::clone(json)
            }
            _ => {
                let json: Arc<str> = serde_json::to_string(&context.env)
                    .map_err(|e| err(ErrorKind::Internal, e.to_string()))?
                    .into();
                self.env_cache = Some((Arc::clone(&context.env), Arc::clone(&json)));
                json
            }
        };

        let start = &self.handles.glue.run;
        let request_proto = &self.handles.glue.request_proto;
        let context_proto = &self.handles.glue.context_proto;
        let shared = &self.shared;
        self.segment(run, limits, true, |ctx, _, handler| {
            let start = start.clone().restore(ctx)?;
            let proto = request_proto.clone().restore(ctx)?;
            let budget = shared.budget();
            let req = crate::quick::Quick::request(meta, budget);
            let req = rquickjs::Class::instance_proto(req, proto)?;
            let context = rquickjs::Class::instance_proto(
                crate::quick::Quick::context(ctx_source, budget),
                context_proto.clone().restore(ctx)?,
            )?;
            start.call::<_, ()>((handler, req, context, &*env_json))
        })?;

        // Made at the first host call (most invocations make none).
        let mut inflight: Option<FuturesUnordered<ReplyFuture<'_>>> = None;
        loop {
            if run.outcome.is_none() {
                let settled = lock(&self.shared.outcome).take();
                match settled {
                    None => {}
                    Some(Err(message)) => return Err(err(ErrorKind::Internal, message)),
                    Some(Ok(state)) => {
                        run.cookies = state.cookies;
                        match state.done {
                            1 => {
                                run.outcome = Some(state.result.ok_or_else(|| {
                                    err(ErrorKind::Internal, "the handler settled without a result")
                                })?);
                            }
                            2 => return Err(err(ErrorKind::Uncaught, error_message(state.error))),
                            _ => {
                                return Err(err(
                                    ErrorKind::InvalidReturn,
                                    error_message(state.error),
                                ))
                            }
                        }
                    }
                }
            }
            if run.outcome.is_some() && self.shared.waits.load(Ordering::Relaxed) <= 0 {
                if self.rt.is_job_pending() {
                    // Leftover microtasks run now, within the budget, so they
                    // never leak into the next invocation.
                    self.segment(run, limits, true, |_, _, _| Ok(()))?;
                    continue;
                }
                return Ok(());
            }

            let ops = std::mem::take(&mut *lock(&self.shared.host_ops));
            let mut refused = Vec::new();
            for op in ops {
                let timeout = limits.host_call_timeout;
                let id = op.id;
                if op.kind == "read" {
                    // Reading a kept body is not a new call: it is bounded
                    // by the CPU and wall limits like any other wait.
                    let Ok(handle) = op.meta.parse::<u32>() else {
                        refused.push((op.id, "no such body".to_string()));
                        continue;
                    };
                    inflight
                        .get_or_insert_with(FuturesUnordered::new)
                        .push(Box::pin(async move {
                            let res =
                                match tokio::time::timeout(timeout, host.read_body(handle)).await {
                                    Ok(r) => r.map(Reply::Chunk),
                                    Err(_) => Err(HostError::new("timed out")),
                                };
                            (id, res)
                        }));
                    continue;
                }
                if run.host_calls >= limits.max_host_calls {
                    refused.push((op.id, "too many host calls in one invocation".to_string()));
                    continue;
                }
                run.host_calls += 1;
                match serde_json::from_str::<HostRequestMeta>(&op.meta) {
                    Ok(meta) => {
                        let req = HostRequest {
                            method: meta.method,
                            url: meta.url,
                            headers: meta.headers,
                            body: op.body,
                            send_conditional_request: meta.send_conditional_request,
                        };
                        let is_next = op.kind == "next";
                        inflight
                            .get_or_insert_with(FuturesUnordered::new)
                            .push(Box::pin(async move {
                                let call = async {
                                    if is_next {
                                        host.next(req).await
                                    } else {
                                        host.fetch(req).await
                                    }
                                };
                                let res = match tokio::time::timeout(timeout, call).await {
                                    Ok(r) => r.map(Reply::Response),
                                    Err(_) => Err(HostError::new("timed out")),
                                };
                                (id, res)
                            }));
                    }
                    Err(e) => refused.push((op.id, e.to_string())),
                }
            }
            if !refused.is_empty() {
                self.segment(run, limits, true, |ctx, internals, _| {
                    for (id, message) in &refused {
                        deliver(ctx, &internals, *id, Err(HostError::new(message.clone())))?;
                    }
                    Ok(())
                })?;
                continue;
            }

            let next_timer = self.segment(run, limits, false, |_, internals, _| {
                let f: Function = internals.get("nextTimer")?;
                f.call::<_, f64>(())
            })?;
            let timer_at = (next_timer >= 0.0 && next_timer.is_finite()).then(|| {
                let start = tokio::time::Instant::from_std(started);
                start + Duration::from_secs_f64(next_timer / 1000.0)
            });
            let waiting = inflight.as_ref().is_some_and(|f| !f.is_empty());
            if !waiting && timer_at.is_none() {
                if run.outcome.is_some() {
                    // waitUntil promises that can never settle.
                    return Ok(());
                }
                return Err(err(
                    ErrorKind::NoResponse,
                    "the handler's promise never settled and nothing is left to wait for",
                ));
            }
            let far = wall_deadline + Duration::from_secs(1);
            tokio::select! {
                Some((id, res)) = async { inflight.as_mut()?.next().await }, if waiting => {
                    self.segment(run, limits, true, |ctx, internals, _| deliver(ctx, &internals, id, res))?;
                }
                _ = tokio::time::sleep_until(timer_at.unwrap_or(far)), if timer_at.is_some() => {
                    self.segment(run, limits, true, |_, internals, _| {
                        let f: Function = internals.get("fireTimers")?;
                        f.call::<_, ()>(())
                    })?;
                }
                _ = tokio::time::sleep_until(wall_deadline) => {
                    return Err(err(
                        ErrorKind::WallTimeout,
                        format!("the invocation did not finish within {:?}", limits.wall_time),
                    ));
                }
            }
        }
    }

    /// Runs `f` and then every pending job, within the remaining CPU budget.
    fn segment<R>(
        &self,
        run: &mut Run,
        limits: &Limits,
        jobs: bool,
        f: impl for<'js> FnOnce(&Ctx<'js>, Object<'js>, Function<'js>) -> rquickjs::Result<R>,
    ) -> Result<R, InvocationError> {
        let Some(budget) = limits.cpu_time.checked_sub(run.cpu) else {
            return Err(cpu_error(limits));
        };
        let t0 = self.shared.arm(budget, jobs);
        let result = self.ctx.with(|ctx| -> Result<R, InvocationError> {
            let internals = self
                .handles
                .glue
                .internals
                .clone()
                .restore(&ctx)
                .map_err(|e| err(ErrorKind::Internal, e.to_string()))?;
            let handler = self
                .handles
                .handler
                .clone()
                .restore(&ctx)
                .map_err(|e| err(ErrorKind::Internal, e.to_string()))?;
            let r = f(&ctx, internals, handler)
                .catch(&ctx)
                .map_err(|e| err(ErrorKind::Internal, caught_message(&e)))?;
            Ok(r)
        });
        let jobs = if jobs && result.is_ok() {
            self.run_jobs()
        } else {
            Ok(())
        };
        let spent = self.shared.spent_since(t0);
        self.shared.disarm();
        run.cpu += Duration::from_nanos(spent);
        if self.shared.interrupted.load(Ordering::Relaxed) || run.cpu > limits.cpu_time {
            return Err(cpu_error(limits));
        }
        jobs?;
        result
    }

    fn run_jobs(&self) -> Result<(), InvocationError> {
        let mut n: u32 = 0;
        loop {
            match self.rt.execute_pending_job() {
                Ok(true) => {}
                Ok(false) => return Ok(()),
                Err(job) => {
                    let message = job.0.with(|ctx| {
                        let v = ctx.catch();
                        natives::display_value(&v)
                    });
                    return Err(err(ErrorKind::Internal, message));
                }
            }
            if self.shared.settled.swap(false, Ordering::Relaxed) {
                return Ok(());
            }
            n = n.wrapping_add(1);
            if n % 64 == 0 && self.shared.past_deadline() {
                self.shared.interrupted.store(true, Ordering::Relaxed);
                return Ok(());
            }
        }
    }
}

struct Run {
    cpu: Duration,
    outcome: Option<InvocationOutcome>,
    cookies: Vec<String>,
    host_calls: u32,
}

fn cpu_error(limits: &Limits) -> InvocationError {
    err(
        ErrorKind::CpuLimit,
        format!("the CPU-time limit of {:?} was reached", limits.cpu_time),
    )
}

/// Turns an error into the limit it really was, from what the isolate saw.
fn classify(shared: &Shared, limits: &Limits, e: InvocationError) -> InvocationError {
    if shared.interrupted.load(Ordering::Relaxed) {
        return cpu_error(limits);
    }
    let m = e.message.as_str();
    if m.contains("out of memory") || shared.budget.refused() {
        return err(
            ErrorKind::MemoryLimit,
            format!(
                "the memory limit of {} bytes was reached",
                limits.memory_bytes
            ),
        );
    }
    if m.contains("Maximum call stack size exceeded") || m.contains("stack overflow") {
        return err(ErrorKind::StackOverflow, format!("stack overflow: {m}"));
    }

    e
}

type Setup = (Handles, Option<FunctionConfig>);

/// The glue compiled to bytecode once per process (parsing it is most of the
/// cost of a cold isolate). `None` if compiling failed; then every isolate
/// parses the source.
fn glue_bytecode() -> Option<&'static [u8]> {
    static BYTECODE: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    BYTECODE
        .get_or_init(|| compile_glue(GLUE_NAME, GLUE))
        .as_deref()
}

/// Compiles the glue to bytecode now unless it was already.
pub(crate) fn compile_glue_now() {
    glue_bytecode();
}

/// Compiles a glue module to bytecode.
fn compile_glue(name: &str, source: &str) -> Option<Vec<u8>> {
    let rt = Runtime::new().ok()?;
    let ctx = Context::full(&rt).ok()?;
    ctx.with(|ctx| {
        Module::declare(ctx, name, source)
            .and_then(|m| {
                m.write(WriteOptions {
                    strip_source: true,
                    strip_debug: true,
                    ..WriteOptions::default()
                })
            })
            .ok()
    })
}

/// Loads a lazily built part of the glue and returns its builder (its
/// default export). Each part is compiled to bytecode once per process, when
/// an isolate first needs it.
pub(crate) fn load_lazy_glue<'js>(ctx: &Ctx<'js>, name: &str) -> rquickjs::Result<Function<'js>> {
    static BYTECODE: [OnceLock<Option<Vec<u8>>>; LAZY_GLUE.len()] =
        [const { OnceLock::new() }; LAZY_GLUE.len()];
    let Some(at) = LAZY_GLUE.iter().position(|(n, _)| *n == name) else {
        return Err(rquickjs::Error::new_from_js("string", "glue part"));
    };
    let module_name = format!("ledge:{name}");
    let compiled = BYTECODE[at].get_or_init(|| compile_glue(&module_name, LAZY_GLUE[at].1));
    let declared = match compiled.as_deref() {
        #[allow(unsafe_code)]
        // SAFETY: as in `load_glue`: bytes written by `Module::write` in this
        // process from our own source, kept in a static that outlives every
        // runtime.
        Some(bytes) => unsafe { Module::load(ctx.clone(), bytes)? },
        None => Module::declare(ctx.clone(), module_name, LAZY_GLUE[at].1)?,
    };
    let (module, promise) = declared.eval()?;
    promise.finish::<()>()?;
    module.get("default")
}

const GLUE_NAME: &str = "ledge:runtime";

fn load_glue<'js>(ctx: &Ctx<'js>) -> rquickjs::Result<Function<'js>> {
    let declared = match glue_bytecode() {
        #[allow(unsafe_code)]
        // SAFETY: the bytes were written by `Module::write` in this process,
        // by the same QuickJS build, from our own glue source; they never come
        // from outside. They live in a static, so they outlive every runtime
        // (QuickJS may reference them in place).
        Some(bytes) => unsafe { Module::load(ctx.clone(), bytes)? },
        None => Module::declare(ctx.clone(), GLUE_NAME, GLUE)?,
    };
    let (module, promise) = declared.eval()?;
    promise.finish::<()>()?;
    module.get("default")
}

/// Loads the glue and its natives into a new context.
fn glue_setup(
    ctx: &Ctx<'_>,
    shared: &Arc<Shared>,
    pause: &mut dyn FnMut(),
) -> Result<GlueHandles, InvocationError> {
    let internal = |e: CaughtError<'_>| err(ErrorKind::Internal, caught_message(&e));
    let glue: Function = load_glue(ctx).catch(ctx).map_err(internal)?;
    pause();
    let n = natives::install(ctx, Arc::clone(shared))
        .catch(ctx)
        .map_err(internal)?;
    pause();
    let internals: Object = glue.call((n,)).catch(ctx).map_err(internal)?;
    let run: Function = internals.get("run").catch(ctx).map_err(internal)?;
    let request_proto: Object = internals.get("requestProto").catch(ctx).map_err(internal)?;
    let context_proto: Object = internals.get("contextProto").catch(ctx).map_err(internal)?;
    Ok(GlueHandles {
        run: Persistent::save(ctx, run),
        request_proto: Persistent::save(ctx, request_proto),
        context_proto: Persistent::save(ctx, context_proto),
        internals: Persistent::save(ctx, internals),
    })
}

/// Gives the glue the deploy's env, evaluates the bundle's entry module and
/// reads its default export and `config`.
fn setup<'js>(
    ctx: &Ctx<'js>,
    bundle: &Bundle,
    glue: GlueHandles,
    keep: &KeepAlive,
) -> Result<Setup, InvocationError> {
    let internal = |e: CaughtError<'_>| err(ErrorKind::Internal, caught_message(&e));
    let internals = glue
        .internals
        .clone()
        .restore(ctx)
        .map_err(|e| err(ErrorKind::Internal, e.to_string()))?;
    if !bundle.env().is_empty() {
        let env_json = serde_json::to_string(bundle.env())
            .map_err(|e| err(ErrorKind::Internal, e.to_string()))?;
        let set_env: Function = internals.get("deployEnv").catch(ctx).map_err(internal)?;
        set_env
            .call::<_, ()>((env_json,))
            .catch(ctx)
            .map_err(internal)?;
    }

    let module_err = |e: CaughtError<'_>| err(ErrorKind::Module, caught_message(&e));
    let entry = bundle.entry();
    let source = bundle
        .modules()
        .get(entry)
        .ok_or_else(|| err(ErrorKind::Module, format!("entry {entry:?} missing")))?;
    let declared = declare_module(ctx, entry, source, &bundle.bytecode_cache(), keep)
        .catch(ctx)
        .map_err(module_err)?;
    let (module, promise) = declared.eval().catch(ctx).map_err(module_err)?;
    promise.finish::<()>().catch(ctx).map_err(module_err)?;
    let ns = module.namespace().catch(ctx).map_err(module_err)?;
    let default: Value = ns.get("default").catch(ctx).map_err(module_err)?;
    let Some(handler) = default.as_function().cloned() else {
        return Err(err(
            ErrorKind::NoHandler,
            format!("{entry} has no default export function"),
        ));
    };
    let config_fn: Function = internals.get("config").catch(ctx).map_err(internal)?;
    let config_json: Option<String> = config_fn.call((ns,)).catch(ctx).map_err(module_err)?;
    let config = match config_json {
        None => None,
        Some(json) => Some(
            serde_json::from_str::<FunctionConfig>(&json)
                .map_err(|e| err(ErrorKind::Module, format!("invalid `config` export: {e}")))?,
        ),
    };
    let handles = Handles {
        glue,
        handler: Persistent::save(ctx, handler),
    };
    Ok((handles, config))
}

/// A site's environment variables.
type Env = std::collections::BTreeMap<String, String>;

/// Appends `key` (the member's name, its quotes, colon and any leading
/// comma) and `value` as JSON.
fn json_member(
    out: &mut Vec<u8>,
    key: &str,
    value: &impl serde::Serialize,
) -> serde_json::Result<()> {
    out.extend_from_slice(key.as_bytes());
    serde_json::to_writer(out, value)
}

/// The context's members of this request (`,"geo":…,"ip":…,"params":…,
/// "requestId":…`), as serde_json writes them, with its machinery only for
/// what needs it: an empty geo or params is `{}`, and text that needs no
/// escape is copied as it is (the address and the request id always are).
pub(crate) fn request_context_members(
    out: &mut Vec<u8>,
    c: &crate::types::RequestContext,
) -> serde_json::Result<()> {
    fn text(out: &mut Vec<u8>, key: &str, s: &str) -> serde_json::Result<()> {
        // serde_json escapes `"`, `\` and the control characters, and
        // nothing else.
        if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
            out.extend_from_slice(key.as_bytes());
            out.push(b'"');
            out.extend_from_slice(s.as_bytes());
            out.push(b'"');
            Ok(())
        } else {
            json_member(out, key, &s)
        }
    }
    let g = &c.geo;
    let no_geo = g.city.is_none()
        && g.country.is_none()
        && g.subdivision.is_none()
        && g.postal_code.is_none()
        && g.latitude.is_none()
        && g.longitude.is_none()
        && g.timezone.is_none();
    if no_geo {
        out.extend_from_slice(b",\"geo\":{}");
    } else {
        json_member(out, ",\"geo\":", g)?;
    }
    text(out, ",\"ip\":", &c.ip)?;
    if c.params.is_empty() {
        out.extend_from_slice(b",\"params\":{}");
    } else {
        json_member(out, ",\"params\":", &c.params)?;
    }
    text(out, ",\"requestId\":", &c.request_id)
}

/// The parts of the context that are the same for every request to a
/// deploy, and their JSON members (`"account":…,"deploy":…,"server":…,
/// "site":…`), written once per isolate while they stay the same.
struct DeployContext {
    fixed: Arc<crate::types::FixedContext>,
    json: Arc<str>,
}

impl DeployContext {
    fn matches(&self, c: &crate::types::RequestContext) -> bool {
        // Requests share one (the worker keeps the last one sent).
        Arc::ptr_eq(&self.fixed, &c.fixed) || self.fixed == c.fixed
    }

    fn new(c: &crate::types::RequestContext) -> serde_json::Result<Self> {
        let f = &c.fixed;
        let mut json = Vec::with_capacity(256);
        json_member(&mut json, "\"account\":", &f.account)?;
        json_member(&mut json, ",\"deploy\":", &f.deploy)?;
        json_member(&mut json, ",\"server\":", &f.server)?;
        json_member(&mut json, ",\"site\":", &f.site)?;
        Ok(Self {
            fixed: Arc::clone(&c.fixed),
            // serde_json writes UTF-8, so this never copies.
            json: String::from_utf8(json)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
                .into(),
        })
    }
}

/// The bytes of an HTTP token (RFC 9110 `tchar`).
const TOKEN_BYTES: [bool; 256] = byte_table(b"!#$%&'*+-.^_`|~");

/// The UTF-8 bytes of a header value `Headers` takes: all but NUL, CR and
/// LF, and the lead bytes of characters above U+00FF (0xC4 and up; the
/// characters up to U+00FF are ASCII or start with 0xC2 or 0xC3, and
/// continuation bytes are below 0xC0).
const VALUE_BYTES: [bool; 256] = {
    let mut t = [true; 256];
    t[0] = false;
    t[b'\r' as usize] = false;
    t[b'\n' as usize] = false;
    let mut i = 0xC4;
    while i < 256 {
        t[i] = false;
        i += 1;
    }
    t
};

pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| TOKEN_BYTES[usize::from(b)])
}

/// `v` without leading and trailing spaces, tabs, CRs and LFs (ASCII, so
/// the cut is always at a character boundary).
pub(crate) fn trim_http_whitespace(v: &str) -> &str {
    let white = |b: &u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    let bytes = v.as_bytes();
    let start = bytes.iter().position(|b| !white(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !white(b))
        .map_or(start, |i| i + 1);
    v.get(start..end).unwrap_or("")
}

/// Whether a header value is one `Headers` takes: no NUL, CR or LF, and
/// every character at most U+00FF (see [`VALUE_BYTES`]).
pub(crate) fn is_byte_string(v: &str) -> bool {
    v.bytes().all(|b| VALUE_BYTES[usize::from(b)])
}

/// Validates and normalises the incoming request the way the `Request`
/// constructor would, so the glue can build it without checks. Its headers
/// stay as they came until the function first looks at the request
/// ([`joined_headers`]). An owned request gives up its text and body
/// instead of copying them.
fn request_parts(
    request: Cow<'_, InvocationRequest>,
) -> Result<crate::quick::RequestParts, InvocationError> {
    use crate::quick::RequestHeaders;
    type Parts<'a> = (Cow<'a, str>, Cow<'a, str>, RequestHeaders, Cow<'a, [u8]>);
    let (method, url, headers, body): Parts<'_> = match request {
        Cow::Borrowed(r) => (
            r.method.as_str().into(),
            r.url.as_str().into(),
            RequestHeaders::Joined(joined_headers(&r.headers)),
            r.body.as_slice().into(),
        ),
        Cow::Owned(r) => (
            r.method.into(),
            r.url.into(),
            RequestHeaders::Pairs(r.headers),
            r.body.into(),
        ),
    };
    let url = if is_canonical_http_url(&url) {
        url.into_owned()
    } else {
        url::Url::parse(&url)
            .map_err(|e| err(ErrorKind::Internal, format!("invalid request URL: {e}")))?
            .into()
    };
    if !is_token(&method) {
        return Err(err(ErrorKind::Internal, "invalid request method"));
    }
    // The methods the Fetch standard normalises, in upper case.
    const NORMALISED: [&str; 6] = ["DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT"];
    let method = match NORMALISED.iter().find(|m| m.eq_ignore_ascii_case(&method)) {
        Some(m) if **m != *method => (*m).to_owned(),
        _ => method.into_owned(),
    };
    // GET and HEAD requests have no body.
    let body = (method != "GET" && method != "HEAD").then(|| body.into_owned());
    Ok(crate::quick::RequestParts {
        method,
        url,
        headers,
        body,
    })
}

/// The request's headers as the glue takes them, checked the way the
/// `Headers` constructor would check them: "name\nvalue\n...", names
/// lowercased, values trimmed, and the pairs `Headers` would refuse left
/// out (so the separator never occurs inside a name or a value).
pub(crate) fn joined_headers(pairs: &[(String, String)]) -> String {
    let mut headers = String::with_capacity(pairs.iter().map(|(k, v)| k.len() + v.len() + 2).sum());
    for (k, v) in pairs {
        let v = trim_http_whitespace(v);
        if !is_token(k) || !is_byte_string(v) {
            continue;
        }
        if !headers.is_empty() {
            headers.push('\n');
        }
        // A token is ASCII: lowercase it in place, byte by byte.
        let at = headers.len();
        headers.push_str(k);
        if let Some(name) = headers.get_mut(at..) {
            name.make_ascii_lowercase();
        }
        headers.push('\n');
        headers.push_str(v);
    }
    headers
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HostRequestMeta {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    #[serde(default)]
    send_conditional_request: bool,
}

/// How the handler settled, as the glue reports it (`N.settled`).
pub(crate) struct Settled {
    /// 1 ok, 2 rejected, 3 invalid return value.
    pub(crate) done: i32,
    pub(crate) result: Option<InvocationOutcome>,
    /// `{message, stack}` as JSON.
    pub(crate) error: Option<String>,
    pub(crate) cookies: Vec<String>,
}

fn error_message(error: Option<String>) -> String {
    #[derive(Deserialize)]
    struct E {
        message: String,
        #[serde(default)]
        stack: String,
    }
    match error.as_deref().map(serde_json::from_str::<E>) {
        Some(Ok(e)) if e.stack.is_empty() => e.message,
        Some(Ok(e)) => format!("{}\n{}", e.message, e.stack.trim_end()),
        _ => "unknown error".to_string(),
    }
}

/// The outcome of a returned Response (`N.answer`): its status, its
/// `[name, value]` pairs, its bytes or the handle of a kept body handed back
/// unread, with a `Set-Cookie` header for each cookie the function set.
pub(crate) fn read_answer(
    status: f64,
    list: &Array<'_>,
    body: Vec<u8>,
    handle: Option<f64>,
    cookies: &[String],
) -> rquickjs::Result<InvocationOutcome> {
    let mut headers = Vec::with_capacity(list.len() + cookies.len());
    for pair in list.iter::<Array>() {
        let pair = pair?;
        headers.push((pair.get::<String>(0)?, pair.get::<String>(1)?));
    }
    let handle = handle
        .filter(|h| h.fract() == 0.0 && *h >= 0.0 && *h <= f64::from(u32::MAX))
        .map(|h| h as u32);
    Ok(crate::quick::outcome(
        status as u16,
        headers,
        body,
        handle,
        cookies,
    ))
}

/// What a host call answers: a response, or the next bytes of a kept body
/// (`None` at its end).
enum Reply {
    Response(HttpResponse),
    Chunk(Option<Vec<u8>>),
}

type ReplyFuture<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = (f64, Result<Reply, HostError>)> + Send + 'a>,
>;

fn deliver<'js>(
    ctx: &Ctx<'js>,
    internals: &Object<'js>,
    id: f64,
    res: Result<Reply, HostError>,
) -> rquickjs::Result<()> {
    let f: Function = internals.get("resolveHost")?;
    match res {
        Ok(Reply::Response(resp)) => {
            let meta = serde_json::json!({
                "status": resp.status,
                "headers": resp.headers,
                "handle": resp.body_handle,
            })
            .to_string();
            let body = TypedArray::<u8>::new(ctx.clone(), resp.body)?;
            f.call::<_, ()>((id, true, meta, body))
        }
        Ok(Reply::Chunk(Some(bytes))) => {
            let body = TypedArray::<u8>::new(ctx.clone(), bytes)?;
            f.call::<_, ()>((id, true, "", body))
        }
        Ok(Reply::Chunk(None)) => f.call::<_, ()>((id, true, "", rquickjs::Null)),
        Err(e) => f.call::<_, ()>((id, false, e.to_string(), rquickjs::Undefined)),
    }
}

/// Whether `s` is an `http`/`https` URL that the WHATWG URL parser would
/// give back unchanged, by a conservative check (false means "parse it",
/// never "invalid"): a lowercase host name or dotted-quad address with an
/// optional non-default port, then a path of plain characters and `%XX`
/// escapes with no dot segments, and a plain query; no fragment. The edge's
/// own request URLs are of this kind, and checking costs a tenth of parsing.
fn is_canonical_http_url(s: &str) -> bool {
    let (rest, default_port) = if let Some(r) = s.strip_prefix("http://") {
        (r, "80")
    } else if let Some(r) = s.strip_prefix("https://") {
        (r, "443")
    } else {
        return false;
    };
    let b = rest.as_bytes();
    let host_end = b
        .iter()
        .position(|&c| matches!(c, b'/' | b'?' | b'#'))
        .unwrap_or(b.len());
    let (authority, tail) = rest.split_at(host_end);
    let (host, port) = match authority.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    if let Some(p) = port {
        let ok = !p.is_empty()
            && p.len() <= 5
            && p.bytes().all(|c| c.is_ascii_digit())
            && !p.starts_with('0')
            && p != default_port
            && p.parse::<u32>().is_ok_and(|n| n <= 65535);
        if !ok {
            return false;
        }
    }
    if !canonical_host(host) || !tail.starts_with('/') {
        return false;
    }
    let (path, query) = match tail.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (tail, None),
    };
    plain_path(path.as_bytes()) && query.is_none_or(|q| plain(q.as_bytes(), &QUERY_BYTES))
}

/// A table of the bytes in `extra` and the ASCII letters and digits.
const fn byte_table(extra: &[u8]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = (i as u8).is_ascii_alphanumeric();
        i += 1;
    }
    let mut j = 0;
    while j < extra.len() {
        t[extra[j] as usize] = true;
        j += 1;
    }
    t
}

/// A path's plain bytes: unreserved, sub-delimiters, ':', '@' and '/'.
const PATH_BYTES: [bool; 256] = byte_table(b"-._~!$&'()*+,;=:@/");
/// A query's: the same without the apostrophe (which the parser escapes in
/// special URLs), with '?'.
const QUERY_BYTES: [bool; 256] = byte_table(b"-._~!$&()*+,;=:@/?");

/// A path of plain bytes and `%XX` escapes with no dot segment: none is `.`
/// or `..`, and no `%2e` (an escaped dot) anywhere.
fn plain_path(b: &[u8]) -> bool {
    plain(b, &PATH_BYTES)
        && !b
            .split(|&c| c == b'/')
            .any(|seg| seg == b"." || seg == b"..")
        && !b
            .windows(3)
            .any(|w| w[0] == b'%' && w[1] == b'2' && (w[2] | 0x20) == b'e')
}

/// Every byte in `ok`, or a `%` followed by two hex digits.
fn plain(b: &[u8], ok: &[bool; 256]) -> bool {
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            match (b.get(i + 1), b.get(i + 2)) {
                (Some(x), Some(y)) if x.is_ascii_hexdigit() && y.is_ascii_hexdigit() => i += 3,
                _ => return false,
            }
        } else if ok[usize::from(c)] {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

/// A host the parser keeps as it is: lowercase LDH labels (none empty, no
/// punycode, the last not numeric), or four decimal octets without leading
/// zeros.
fn canonical_host(h: &str) -> bool {
    let b = h.as_bytes();
    // The standard parser takes exactly four decimal octets, without
    // leading zeros: the form the URL parser writes.
    if b.iter().all(|&c| c.is_ascii_digit() || c == b'.') && h.parse::<std::net::Ipv4Addr>().is_ok()
    {
        return true;
    }
    if b.is_empty() || b.len() > 253 {
        return false;
    }
    // A numeric or hex last label makes the parser read an IPv4 address.
    let last = b.rsplit(|&c| c == b'.').next().unwrap_or(&[]);
    let numeric = !last.is_empty() && last.iter().all(u8::is_ascii_digit);
    let hexish = last.len() > 1 && (last.starts_with(b"0x") || last.starts_with(b"0X"));
    !numeric
        && !hexish
        && b.split(|&c| c == b'.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with(b"xn--")
                && l.iter()
                    .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        })
}

/// A repeatable stream of pseudo-random numbers (a linear congruential
/// generator's high bits) for the tests' random inputs.
#[cfg(test)]
fn test_numbers(mut seed: u64) -> impl FnMut() -> usize {
    move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as usize
    }
}

#[cfg(test)]
mod context_json_tests {
    use crate::types::{CodeName, Geo, RequestContext};

    /// The members as serde_json alone writes them.
    fn plain(c: &RequestContext) -> Vec<u8> {
        let mut out = Vec::new();
        super::json_member(&mut out, ",\"geo\":", &c.geo).unwrap();
        super::json_member(&mut out, ",\"ip\":", &c.ip).unwrap();
        super::json_member(&mut out, ",\"params\":", &c.params).unwrap();
        super::json_member(&mut out, ",\"requestId\":", &c.request_id).unwrap();
        out
    }

    #[test]
    fn request_members_are_what_serde_json_writes() {
        let texts = [
            "",
            "203.0.113.7",
            "2001:db8::1",
            "01JD8ZQ4X5N6P7R8S9T0V1W2X3",
            "a\"b",
            "a\\b",
            "tab\there",
            "line\nbreak",
            "\u{1}\u{1f}\u{7f}",
            "caf\u{e9} \u{2713} \u{1f600}",
            "</script>",
        ];
        let geos = [
            Geo::default(),
            Geo {
                city: Some("Lyon".into()),
                ..Geo::default()
            },
            Geo {
                country: Some(CodeName {
                    code: "FR".into(),
                    name: "Fran\"ce".into(),
                }),
                latitude: Some(45.75),
                longitude: Some(-4.5e-7),
                timezone: Some("Europe/Paris".into()),
                ..Geo::default()
            },
        ];
        for (i, ip) in texts.iter().enumerate() {
            let id = texts[(i * 7 + 3) % texts.len()];
            for geo in &geos {
                for params in [vec![], vec![("slug", "a\"b"), ("id", "7")]] {
                    let c = RequestContext {
                        ip: (*ip).into(),
                        request_id: id.into(),
                        geo: geo.clone(),
                        params: params
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect(),
                        ..RequestContext::default()
                    };
                    let mut ours = Vec::new();
                    super::request_context_members(&mut ours, &c).unwrap();
                    assert_eq!(
                        String::from_utf8_lossy(&ours),
                        String::from_utf8_lossy(&plain(&c)),
                        "{c:?}"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod url_tests {
    use super::is_canonical_http_url;

    /// Every URL the check accepts parses to itself.
    fn agrees(u: &str) {
        if is_canonical_http_url(u) {
            let parsed = url::Url::parse(u).map(String::from);
            assert_eq!(
                parsed.as_deref(),
                Ok(u),
                "accepted but not canonical: {u:?}"
            );
        }
    }

    #[test]
    fn accepts_the_edges_urls() {
        for u in [
            "http://127.0.0.1/hello",
            "https://site.example/a/b.html?x=1&y=%20z",
            "http://demo.localhost:8080/",
            "https://abc123def456abc123def456--blog.ledge.example/p/%E2%9C%93?q=a/b?c",
        ] {
            assert!(is_canonical_http_url(u), "{u}");
            agrees(u);
        }
    }

    #[test]
    fn leaves_everything_else_to_the_parser() {
        for u in [
            "http://Site.example/",
            "http://site.example",
            "http://site.example:80/",
            "https://site.example:443/",
            "http://site.example:08080/",
            "http://1.2.3/",
            "http://0x7f.1/",
            "http://127.000.0.1/",
            "http://site.123/",
            "http://xn--nxasmq6b.example/",
            "http://a..b/",
            "http://site.example/a/../b",
            "http://site.example/a/%2e%2E/b",
            "http://site.example/./b",
            "http://site.example/a b",
            "http://site.example/a\\b",
            "http://site.example/?a='b'",
            "http://site.example/#f",
            "http://site.example/%zz",
            "http://site.example/a|b",
            "ftp://site.example/",
            "http://user@site.example/",
        ] {
            assert!(!is_canonical_http_url(u), "{u}");
        }
    }

    /// Random strings over the characters that matter: whatever the check
    /// accepts, the parser gives back unchanged.
    #[test]
    fn never_accepts_what_the_parser_changes() {
        const ALPHABET: &[u8] = b"aAz09.-:/?#%2eE'@[]\\ _~!$&()*+,;=|x";
        let mut next = super::test_numbers(0x5eed);
        let prefixes = [
            "http://",
            "https://",
            "http://a.b",
            "https://1.2.3.4",
            "http://x.y:81/",
        ];
        let mut accepted = 0;
        for _ in 0..200_000 {
            let mut u = prefixes[next() % prefixes.len()].to_string();
            for _ in 0..next() % 16 {
                u.push(ALPHABET[next() % ALPHABET.len()] as char);
            }
            accepted += usize::from(is_canonical_http_url(&u));
            agrees(&u);
        }
        assert!(
            accepted > 1000,
            "the check accepted too few to mean anything: {accepted}"
        );
    }
}

#[cfg(test)]
mod header_tests {
    use super::{is_byte_string, trim_http_whitespace};

    /// The checks by bytes agree with their definitions by characters, on
    /// random strings of the characters that matter (ASCII, the top of
    /// Latin-1, the first characters past it, and wider ones).
    #[test]
    fn byte_checks_agree_with_the_character_definitions() {
        const CHARS: &[char] = &[
            'a',
            'Z',
            ' ',
            '\t',
            '\r',
            '\n',
            '\u{c}',
            '\0',
            '~',
            '\u{7f}',
            '\u{80}',
            '\u{bf}',
            '\u{c0}',
            '\u{ff}',
            '\u{100}',
            '\u{17f}',
            '\u{2028}',
            '\u{fffd}',
            '\u{1f600}',
        ];
        let mut next = super::test_numbers(0xbeef);
        for _ in 0..100_000 {
            let s: String = (0..next() % 8)
                .map(|_| CHARS[next() % CHARS.len()])
                .collect();
            let trimmed = s.trim_matches(|c| matches!(c, ' ' | '\t' | '\r' | '\n'));
            assert_eq!(trim_http_whitespace(&s), trimmed, "{s:?}");
            let ok = s
                .chars()
                .all(|c| c != '\0' && c != '\r' && c != '\n' && u32::from(c) <= 0xff);
            assert_eq!(is_byte_string(&s), ok, "{s:?}");
        }
    }

    /// The request the glue gets: names lowercased, values trimmed, and
    /// the pairs `Headers` would refuse left out.
    #[test]
    fn request_headers_are_normalised_and_filtered() {
        let request = crate::types::InvocationRequest {
            method: "get".into(),
            url: "https://site.example/a".into(),
            headers: vec![
                ("X-Mixed-Case".into(), "  padded\t".into()),
                ("bad name".into(), "x".into()),
                ("x-wide".into(), "\u{100}".into()),
                ("x-crlf".into(), "a\r\nb".into()),
                ("x-latin1".into(), "caf\u{e9}".into()),
                ("".into(), "empty name".into()),
            ],
            body: Vec::new(),
            context: Default::default(),
        };
        let meta = super::request_parts(std::borrow::Cow::Borrowed(&request))
            .map_err(|e| e.message)
            .unwrap();
        assert_eq!(meta.method, "GET");
        assert!(meta.body.is_none());
        // An owned request gives the same parts, its headers joined later.
        let owned = super::request_parts(std::borrow::Cow::Owned(request.clone()))
            .map_err(|e| e.message)
            .unwrap();
        assert!(matches!(
            owned.headers,
            crate::quick::RequestHeaders::Pairs(_)
        ));
        assert_eq!(
            (&owned.method, &owned.url, &owned.body),
            (&meta.method, &meta.url, &meta.body)
        );
        for parts in [meta, owned] {
            assert_eq!(
                parts.headers.joined(),
                "x-mixed-case\npadded\nx-latin1\ncaf\u{e9}"
            );
        }
    }

    #[test]
    fn values_are_trimmed_and_checked() {
        assert_eq!(trim_http_whitespace(" \t a b \r\n"), "a b");
        assert_eq!(trim_http_whitespace(" \t\r\n"), "");
        assert!(is_byte_string("caf\u{e9} \u{ff}"));
        assert!(!is_byte_string("\u{100}"));
        assert!(!is_byte_string("a\0b"));
        assert!(!is_byte_string("a\rb"));
    }
}

#[cfg(test)]
mod clock_tests {
    use super::{Shared, SHORT_SEGMENT_NS};
    use crate::alloc::Budget;
    use crate::engine::Limits;
    use std::time::{Duration, Instant};

    fn busy(d: Duration) {
        let start = crate::cpu::thread_cpu_ns().unwrap_or(0);
        let mut x = 0u64;
        while crate::cpu::thread_cpu_ns().unwrap_or(u64::MAX) < start + d.as_nanos() as u64 {
            for i in 0..1000u64 {
                x = x.wrapping_mul(31).wrapping_add(i);
            }
        }
        std::hint::black_box(x);
    }

    /// A segment is charged at least the CPU time it used: a short one its
    /// wall time, a long one by the thread's CPU clock.
    #[test]
    fn segments_are_never_undercharged() {
        let limits = Limits::default();
        let shared = Shared::new(&limits, Budget::new(limits.memory_bytes));
        for work in [Duration::from_micros(20), Duration::from_millis(3)] {
            let wall = Instant::now();
            let t0 = shared.arm(limits.cpu_time, true);
            busy(work);
            let spent = shared.spent_since(t0);
            let wall = wall.elapsed().as_nanos() as u64;
            shared.disarm();
            assert!(
                spent >= work.as_nanos() as u64,
                "{work:?}: charged {spent} ns"
            );
            if wall < SHORT_SEGMENT_NS {
                assert!(spent <= wall, "a short segment is charged its wall time");
            }
        }
    }
}
