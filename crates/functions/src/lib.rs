//! Ledge's edge function runtime: QuickJS isolates (via `rquickjs` 0.14,
//! QuickJS-ng), the Netlify edge function API, Web globals as bindings over
//! Rust, and the limits that keep tenant code from hurting the host.
//!
//! # How the edge calls it
//!
//! ```ignore
//! // once per process
//! let engine = Engine::new(Limits::default());
//! // once per deploy and function (at deploy time: prepare::prepare_bundle
//! // strips TypeScript and checks imports). Keep this Bundle with the loaded
//! // deploy: it caches the modules' bytecode for the isolates created later.
//! let bundle = Bundle::new(BundleSource { id: "deploy-id/fn-name".into(), entry: "index.js".into(), modules })?;
//! let config = engine.config(&bundle)?;            // inline `export const config`
//! // per request
//! let inv = engine.invoke(&bundle, &InvocationRequest { method, url, headers, body, context }, &host).await;
//! match inv.outcome {
//!     InvocationOutcome::Response(r) => { /* send r; chain stops */ }
//!     InvocationOutcome::Rewrite { url } => { /* same-site check, internal rewrite */ }
//!     InvocationOutcome::PassThrough => { /* continue as if not declared */ }
//!     InvocationOutcome::Error(e) => { /* apply config.on_error; e.kind says why */ }
//! }
//! // inv.set_cookies: add to the final response when it was not a Response
//! // inv.telemetry: duration, cpu_time, cold_start, console lines, host calls
//! ```
//!
//! `host` implements [`Host`]: `next()` runs the rest of the pipeline for
//! `context.next()`, `fetch()` is the node's origin client with the tenant's
//! outbound policy. Everything crossing [`Engine::invoke`] is plain serde
//! data, so the engine also runs in sandboxed worker processes (seccomp +
//! Landlock) behind the same [`Runner`] API, with `Host` calls proxied over
//! a socket: [`worker::WorkerPool`], see [`worker`].
//!
//! # Isolates and limits
//!
//! One QuickJS runtime + context per [`Bundle`] (deploy id + function + a
//! digest of the code), so deploys never share globals. Isolates are kept
//! warm in an LRU pool bounded by [`Limits::max_isolates`]; an isolate runs one
//! invocation at a time (a concurrent request for the same bundle gets another
//! isolate). Per isolate: a memory limit (default 128 MiB, enforced by the
//! isolate's own allocator, which also tells a refused allocation apart from
//! a tenant's `throw null`) and a JS stack limit;
//! per invocation: a CPU-time budget (default 50 ms of time spent running JS,
//! enforced by QuickJS's interrupt handler and between jobs, covering
//! `waitUntil` work too; measured with the thread's CPU clock, so time the
//! thread spends preempted is not charged) and a wall-clock limit; per host call its own timeout,
//! since the interrupt hook only runs while JS runs. An isolate that hit a
//! limit is dropped, never reused, and the next request gets a fresh one.
//! Error kinds: [`ErrorKind`].
//!
//! The JS stack limit is measured on the thread that runs the invocation:
//! call [`Engine::invoke`] on threads with at least 1 MiB of stack beyond
//! [`Limits::stack_bytes`] (tokio's workers have 2 MiB). Tenant code runs on
//! the caller's thread: a busy function holds it for up to its CPU budget.
//!
//! # Globals
//!
//! `Request`, `Response` (`json`, `redirect`, `error`; `text`, `json`,
//! `arrayBuffer`, `bytes`, `blob`, `formData`; `clone`; `body` is a
//! `ReadableStream` of `Uint8Array`, and a stream may be a body), `Headers`,
//! `URL`, `URLSearchParams`, `URLPattern`, `FormData`, `File`, `Blob`
//! (`stream()`), `TextEncoder`, `TextDecoder` (UTF-8, streaming), `atob`,
//! `btoa`, `console`, `crypto.getRandomValues`, `crypto.randomUUID`,
//! `crypto.subtle` (`digest` SHA-1/256/384/512; HMAC and ECDSA P-256/P-384
//! `generateKey`/`importKey`/`exportKey`/`sign`/`verify`; key formats
//! `raw`, `jwk`, `spki`, `pkcs8`), `setTimeout`/`setInterval` and their
//! `clear*`, `queueMicrotask`, `performance.now`, `structuredClone`,
//! `AbortController`, `AbortSignal` (`abort`, `timeout`, `any`), `Event`,
//! `EventTarget`, `DOMException`, streams (`ReadableStream` with
//! `getReader`, `tee`, `pipeTo`, `pipeThrough`, `from` and async iteration;
//! `WritableStream`; `TransformStream`; their readers, writers and
//! controllers; `CountQueuingStrategy`, `ByteLengthQueuingStrategy`,
//! `TextEncoderStream`, `TextDecoderStream`), `fetch`, and `Netlify.env` /
//! `Netlify.context`. Streams and `URLPattern` are built on first use, so
//! an invocation that never touches them does not pay for them.
//!
//! A returned `Response` whose body is a stream is drained before the
//! invocation ends (the invocation API carries a whole body), up to 32 MiB
//! (`isolate::MAX_STREAMED_BODY_BYTES`; past it the invocation fails with
//! [`ErrorKind::InvalidReturn`]); a stream that never ends is stopped by
//! that cap or by the CPU-time and wall-clock limits.
//! Unhandled promise rejections are logged as `console.error` lines when the
//! invocation ends.
//!
//! # Benchmarks
//!
//! `cargo bench -p ledge-functions` (criterion, `benches/invoke.rs`), release
//! profile, one thread, on the shared 2-core development machine while other
//! engineers were building (load average 1.4–4). Ranges are over several
//! runs; the spread is the machine, not the code. Wall time on this machine
//! is too noisy to compare small changes: `examples/invoke_count.rs` runs N
//! warm invocations for callgrind, and the instruction counts below are
//! `(total(N = 11000) - total(N = 1000)) / 10000`.
//!
//! | what | result |
//! |---|---|
//! | warm "hello" invocation (`async () => new Response('Hello, world!', {headers})`), full `invoke` round trip | 10.0–10.3 µs/op (load 1.4–1.6), 106k instructions (2026-11-28, before the changes below: 17.3 µs/op in the same session, 171k instructions) |
//! | warm pass-through invocation (`() => {}`): the fixed cost of request, context and event loop | 5.0–5.1 µs/op, 55k instructions (before: 10.3 µs/op, 103k instructions) |
//! | cold isolate: create runtime + context, load the glue (bytecode), evaluate the module, drop | 2026-11-28, load ~0.8: **p50 0.67 ms, p99 0.93 ms** with the streams and URLPattern glue loaded on first use (p50 0.98 ms, p99 1.16–1.29 ms while every isolate read them; p50 475–540 µs before they existed) |
//! | warm "hello" through a [`worker::WorkerPool`] of 1 worker, one at a time (2026-11-29, before the changes below, same run as the in-process row at 20.1–33.5 µs, load 1.5–6.5) | 65–96 µs/op: ×2.9–3.3 the in-process engine, i.e. +45–63 µs per round trip |
//! | the same with 16 invocations in flight (frames batched both ways) | 26.8–38.1 µs/op: ×1.1–1.3 the in-process engine, +5–7 µs per invocation |
//!
//! Session 10 (2026-11-29), same callgrind method: a handler that answers
//! at once, or an async one whose promise is already fulfilled when it
//! returns, settles without a promise reaction or a job; a `Response`
//! makes its `Headers` object only when asked for it; hot records are
//! literals over prototypes that hold their usual values (a property
//! added costs ~400 instructions); the context's per-deploy members are
//! JSON written once per isolate; a request URL the parser would give back
//! unchanged is not parsed.
//!
//! | warm invocation | before | after |
//! |---|---:|---:|
//! | pass-through (`() => {}`) | 55.0k | **31.8k** |
//! | synchronous hello with a header | 107.1k | **77.6k** |
//! | async hello with a header | 110.1k | **85.1k** |
//!
//! Session 19 (quick objects, `quick.rs`; see `docs/benchmarks.md`):
//! pass-through 21.8k → **14.0k**, synchronous hello 51.5k → **27.4k**,
//! async hello 58.6k → **37.3k**.
//!
//! The cold budget (< 1 ms p99) holds when the cores are not oversubscribed
//! (the p99 outliers above are scheduling, not work). What a warm invocation
//! costs is mostly QuickJS building objects: the `Request`, `context` and
//! `Response` and their records, and the promise jobs of an async handler.
//! What keeps it down:
//!
//! - the request reaches the glue as a quick object (`quick.rs`) that holds
//!   its method, URL, headers (one `name\nvalue\n…` string, split only when
//!   `request.headers` is first read) and body in Rust until JavaScript
//!   first looks at it; the usual `new Response(text, { headers })` is a
//!   quick object too, and returned untouched it is answered from Rust
//!   (`N.answerQuick`); other outcomes come back through one native call
//!   per kind (`N.answer` a Response, `N.passed`, `N.rewrote` a URL,
//!   `N.settled` a failure), not an outcome record read field by field;
//! - QuickJS frees an object shape, and the cached transition to it, as soon
//!   as no object has it: the glue keeps one object per prefix of each hot
//!   record's keys, so a record's properties are added along cached
//!   transitions (about 5k instructions saved per six-key record);
//! - header names and values that passed validation once skip the regular
//!   expressions (a `test` builds a match object) — a bounded cache;
//! - no array destructuring or `for…of` on the hot paths (the iterator
//!   protocol allocates), no per-invocation `Map`s, no spare closures;
//! - the end-of-invocation call into JS only runs when a promise rejection
//!   is left to log; otherwise the next `run` replaces the state.
//!
//! Kept on purpose: the thread's CPU clock is read at the start and end of
//! every segment (two system calls per invocation, ~1 µs). Reading it lazily
//! would charge a short segment its wall time, so a thread preempted on a
//! busy node could be stopped for CPU it never used.
//!
//! The worker pool's one-at-a-time cost is three wake-ups across threads and
//! processes (node → worker process → the node's reader thread → the
//! invoking task), each several µs in this VM and more when its two cores
//! are oversubscribed; the JavaScript costs the same as in process. Under
//! concurrency the wake-ups are shared by batches of frames, and the
//! overhead falls to a few µs per invocation.

#![deny(unsafe_code)]

mod alloc;
mod bundle;
mod cpu;
#[cfg(feature = "typescript")]
pub mod deploy;
mod ecdsa;
mod engine;
mod isolate;
mod multipart;
mod natives;
mod quick;
pub mod routes;
mod types;
#[cfg(feature = "typescript")]
mod typescript;
pub mod worker;

pub use bundle::{Bundle, BundleError, BundleSource};
pub use engine::{Engine, Host, HostError, Limits, Runner};
pub use types::*;

/// Deploy-time preparation of sources (feature `typescript`).
#[cfg(feature = "typescript")]
pub mod prepare {
    pub use crate::typescript::{check_imports, prepare_bundle, strip_typescript, Diagnostic};
}
