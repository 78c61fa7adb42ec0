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
//! `Invoke` (invocation id, bundle key, request), `HostResult` (call id,
//! response or error), `Evict` (bundle id), `Ping`. Worker → node: `Ready`
//! (its [`SandboxReport`]), `HostCall` (invocation id, call id, next or fetch,
//! request), `Done` (invocation id, [`crate::Invocation`]), `UnknownBundle`
//! (it dropped the bundle from its LRU of [`WorkerOptions::max_bundles`]: the
//! node sends `Load` + `Invoke` again), `Pong`. Writers coalesce whatever is
//! queued into one write: in the node the caller that finds the socket idle
//! writes for everyone (non-blocking; a full socket hands the rest to the
//! worker's writer thread), in the worker a writer task drains its queue into
//! one buffer. Readers are buffered (64 KiB), so a burst costs one syscall.
//! Nothing is created per request: no process, no thread, no socket.
//!
//! Host calls (`context.next()`, `fetch`) come back to the `invoke` future
//! of their invocation on its own channel; it calls the [`crate::Host`] and
//! answers, several at a time if the function makes them concurrently.
//!
//! # Choosing a worker
//!
//! An invocation goes to its bundle's *home* worker (a hash of the bundle
//! key), where its isolates are warm — unless the home worker already has
//! [`WorkerOptions::spill_after`] runnable invocations (sent and not waiting
//! for a host call), or is *stalled*: it owes an answer and has sent nothing
//! for [`WorkerOptions::stall_after`] (1 ms), i.e. it is running JavaScript.
//! Then it goes to the least loaded worker, non-stalled first. Queues are
//! therefore bounded by `spill_after` per worker unless every worker is busy.
//!
//! **Latency bound.** A worker runs one isolate at a time; tenant code is
//! interrupted when its CPU budget ([`crate::Limits::cpu_time`], default
//! 50 ms) is spent. So an invocation that is already queued on a worker
//! behind a runaway isolate waits at most that isolate's CPU limit (plus the
//! rest of the queue, at most `spill_after` invocations), and one that arrives
//! later than `stall_after` after the runaway started goes to another worker
//! and is not delayed at all (measured in `tests/worker.rs`: with one
//! function spinning for its whole 500 ms CPU budget on one of two workers,
//! the ~55 hello invocations issued meanwhile took p50 0.3–0.5 ms, max
//! 5.7–22 ms over four runs of the debug build at load up to 6.6; the test
//! asserts max < 125 ms, a quarter of the runaway's budget).
//!
//! # Supervision
//!
//! A worker whose socket closes, that sends a malformed frame, that leaves an
//! invocation without `Done` past its wall time + [`WorkerOptions::hang_grace`],
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
//! | warm "hello" | µs/op | vs in process |
//! |---|---|---|
//! | in-process [`crate::Engine`] | 20.1–33.5 | 1 |
//! | pool, one invocation at a time | 65–96 | ×2.9–3.3 (+45–63 µs) |
//! | pool, 16 in flight | 26.8–38.1 | ×1.1–1.3 (+5–7 µs) |
//!
//! The sequential overhead is three cross-thread/process wake-ups (see the
//! crate doc); batching amortises them under load, which is when it matters.
//! Removing one (reading worker frames on the invoking runtime's own I/O
//! driver instead of a reader thread) is the next step if it is needed.

mod child;
mod pool;
pub(crate) mod protocol;
pub mod sandbox;

pub use child::worker_main;
pub use pool::{WorkerOptions, WorkerPool};
pub use sandbox::SandboxReport;
