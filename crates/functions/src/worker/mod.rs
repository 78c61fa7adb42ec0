//! Isolates in sandboxed worker processes, behind the same [`crate::Runner`] API as
//! the in-process [`crate::Engine`].
//!
//! # Processes
//!
//! [`WorkerPool::start`] spawns [`WorkerOptions::workers`] processes (default:
//! one per core) running `program args` — the node's own binary with its
//! hidden `function-worker` subcommand, which calls [`worker_main`]. Each gets
//! one end of a Unix stream socket pair **as fd 0** (stdin), stdout on
//! `/dev/null`, the node's stderr and an empty environment (plus
//! [`WorkerOptions::envs`]). The worker applies its sandbox ([`sandbox`]:
//! no_new_privs, rlimits, Landlock, a seccomp allowlist) before it reads a
//! byte, then runs an [`crate::Engine`] on a current-thread tokio runtime, on
//! a thread with an 8 MiB stack; every invocation is a local task, so many
//! are in flight at once, interleaved where they wait (host calls, timers).
//!
//! # Protocol
//!
//! Length-prefixed postcard frames (`u32` LE length, then the payload) in both
//! directions. Node → worker: `Init` (limits; first frame), `Load` (bundle key,
//! [`crate::BundleSource`], env; sent once per worker and bundle key),
//! `Invoke` (invocation id, bundle key, request; the site's environment
//! beside it only when it is not the map last sent for that bundle, which
//! the worker keeps with the bundle), `HostResult` (call id,
//! response or error), `Evict` (bundle id), `Ping`. Worker → node: `Ready`
//! (its [`SandboxReport`]), `HostCall` (invocation id, call id, next or fetch,
//! request), `Done` (invocation id, [`crate::Invocation`]), `UnknownBundle`
//! (it dropped the bundle from its LRU of [`WorkerOptions::max_bundles`]: the
//! node sends `Load` + `Invoke` again), `Pong` (with whether a blank isolate
//! is ready for the next cold start, and how many were made: the worker's
//! idle work, see [`crate::Engine::idle_work`]). Writers coalesce whatever is
//! queued into one write. In the node, an invocation's frames wait for the
//! end of its runtime thread's current round of ready tasks (a task spawned
//! per round yields once, then writes for everyone), so under load one
//! write carries many invocations and wakes the worker once; host results
//! and pings go at once; whoever finds the socket idle writes for everyone
//! (non-blocking; a full socket hands the rest to the writer thread). In
//! the worker a writer task drains its queue into one buffer. Readers are
//! buffered (64 KiB), so a burst costs one syscall. The node's reader thread
//! hands what one read brought to the invoking tasks through one mailbox per
//! runtime thread (`mailbox.rs`), woken once per read: waking each task
//! from the reader thread cost an eventfd write per frame.
//! Nothing is created per request: no process, no thread, no socket.
//!
//! Host calls (`context.next()`, `fetch`) come back to the `invoke` future
//! of their invocation on its own channel; it calls the [`crate::Host`] and
//! answers, several at a time if the function makes them concurrently.
//!
//! # Choosing a worker
//!
//! A worker runs one isolate at a time and cannot be preempted, so the node
//! only gives a worker an invocation it can start promptly. A worker is
//! *eligible* when it has nothing runnable, or when it made progress within
//! [`WorkerOptions::stall_after`] (1 ms: it is not stuck in JavaScript) and
//! its runnable invocations (sent, not `Done`, not waiting for a host call)
//! leave room under [`WorkerOptions::spill_after`] (4 light invocations). A *silent* worker
//! (runnable work, nothing sent for `stall_after`) is eligible only if its
//! isolate thread is not running (`/proc/<pid>/task/*/stat`, where its
//! `SCHED_IDLE` idle-work thread does not count; its invocations wait for
//! timers) — or, where `/proc` cannot say, after 1.5 CPU limits.
//!
//! Invocations weigh one slot when their bundle is known to be light, a
//! sixteenth of a slot when it is *tiny* (its last invocation used less than
//! [`WorkerOptions::tiny_below`], 250 µs, of CPU: hello-world functions, so
//! up to 64 of them batch on a worker, at most ~16 ms of queued work); a
//! bundle not seen yet, or whose last invocation used
//! [`WorkerOptions::heavy_after`] (4 ms) of CPU or hit its CPU limit, is
//! *heavy*: its invocations weigh a whole worker (they go only to a worker
//! with nothing runnable, and nothing joins them). A heavy bundle turns
//! light again after 8 light invocations.
//!
//! An invocation goes to its bundle's *home* worker (a hash of the bundle
//! key, where its isolates are warm) if that one is eligible, else to the
//! least loaded eligible worker (one lock per slot looked at, no allocation:
//! as before). If none is eligible, or others already wait, it waits in a
//! queue on the node: one FIFO per tenant (the bundle id before its `/`:
//! the deploy), tenants served in turn, a tenant that had nothing waiting
//! first. At [`WorkerOptions::max_queued`] (1024) waiting invocations of a
//! tenant, more fail at once with [`crate::ErrorKind::Overloaded`]. The wait
//! ends with [`crate::ErrorKind::WallTimeout`] after the wall time. Waiters
//! are handed a worker when one's load drops (a `Done`, a host call, an
//! unknown bundle — on the reader thread, which checks one atomic when
//! nobody waits), when a worker starts, and by the waiters themselves every
//! 1.5 CPU limits (a worker becomes eligible by time alone only then).
//!
//! **Latency bound.** While other tenants' invocations run, an invocation
//! waits for a worker at most **one CPU limit** ([`crate::Limits::cpu_time`],
//! 50 ms by default) plus `stall_after` and a dispatch (tens of µs), as long
//! as (1) there are at most as many tenants with CPU-bound invocations
//! waiting as there are workers (each takes one turn per freed worker), (2)
//! the CPU-bound bundles have run once before (a bundle that turns CPU-bound
//! while classed light or tiny can hold the worker's other queued
//! invocations behind it, once), (3) the workers get their cores (the limit
//! is CPU time: on an oversubscribed machine it takes longer in wall time),
//! and (4) the runaway does not spin while it waits for a host call or after
//! a timer (the node then counts it as waiting). Measured in `tests/worker.rs`
//! (`noisy_tenant_does_not_delay_quiet_one`, debug build, shared 2-core VM at
//! load 2–2.5): 8 clients of tenant A spinning to a 100 ms CPU limit on two
//! workers, tenant B's hello invocations took p50 80–140 ms, max 164–237 ms
//! (the old dispatch: p50 605 ms, max 1.2 s); the test asserts max < 250 ms.
//! The p50 is high because the quiet client is phase-locked to the spins: it
//! sends its next request just after a spin ended and waits for the next end.
//! Unrelated traffic is not slowed (`runaway_does_not_block_others`: one
//! function spinning 500 ms on one of two workers, hello max 10–23 ms).
//!
//! # Supervision
//!
//! A worker whose socket closes, that sends a malformed frame, that leaves an
//! invocation without `Done` past its wall time + [`WorkerOptions::hang_grace`]
//! (the pinging thread checks, so no invocation arms a timer of its own),
//! or that does not answer a ping within [`WorkerOptions::ping_timeout`] is
//! killed (SIGKILL) and reaped; its in-flight invocations end with
//! [`crate::ErrorKind::WorkerLost`] (the edge applies the function's
//! `onError`), and a fresh worker is spawned for its slot, after a backoff
//! that doubles (10 ms … [`WorkerOptions::max_backoff`]) while workers keep
//! dying young. Other workers are not touched. A limit hit inside a worker
//! (CPU, memory, stack, wall) is an ordinary outcome: the worker drops that
//! isolate and goes on.
//!
//! # Benchmarks
//!
//! `cargo bench -p ledge-functions -- "warm hello"` (`benches/invoke.rs`
//! runs the in-process engine and a one-worker pool in the same process;
//! the bench binary is its own worker). On the shared 2-core VM, load
//! 1.5–6.5, two runs:
//!
//! After the fair dispatch (same VM, old and new binaries alternated three
//! times): one at a time 82.9–103.4 → 81.2–83.6 µs (no change); 16 in flight
//! 25.9–27.2 → 36.0–36.8 µs (+38%: one worker now takes 4 light invocations
//! at a time, not 16, so frames batch less). Tiny bundles then got their
//! sixteenth-slot weight: on a real node (harness `fn-hello`, one worker on
//! the server's core, 64 connections) 19.5k → see `docs/benchmarks.md`.
//!
//! | warm "hello" | µs/op | vs in process |
//! |---|---|---|
//! | in-process [`crate::Engine`] | 20.1–33.5 | 1 |
//! | pool, one invocation at a time | 65–96 | ×2.9–3.3 (+45–63 µs) |
//! | pool, 16 in flight | 26.8–38.1 | ×1.1–1.3 (+5–7 µs) |
//!
//! The sequential overhead is three cross-thread/process wake-ups (see the
//! crate doc); batching amortises them under load, which is when it matters.
//! Under load the node now makes one write per round of invocations and one
//! wake-up of its runtime per read of answers (session 10: the node's
//! system calls per `fn-hello` request fell from five to the two of its own
//! HTTP exchange; `docs/benchmarks.md`).

mod child;
mod mailbox;
mod pool;
pub(crate) mod protocol;
pub mod sandbox;

pub use child::worker_main;
#[cfg(feature = "unconfined-worker")]
pub use child::worker_main_unconfined;
pub use pool::{WorkerOptions, WorkerPool};
pub use sandbox::SandboxReport;
