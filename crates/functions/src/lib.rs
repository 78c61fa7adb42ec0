//! Ledge's edge function runtime: QuickJS isolates (via `rquickjs`), the
//! Netlify edge function API, Web globals as bindings over Rust, and limits.
//!
//! # Use
//!
//! ```ignore
//! let engine = Engine::new(Limits::default());
//! let bundle = Bundle::new(BundleSource { id, entry: "index.js".into(), modules })?;
//! let inv = engine.invoke(&bundle, &request, &my_host).await;
//! match inv.outcome { InvocationOutcome::Response(r) => ..., Rewrite { url } => ...,
//!                     PassThrough => ..., Error(e) => /* apply onError */ }
//! ```
//!
//! Everything crossing [`Engine::invoke`] is plain serde data, so the engine
//! can move into a sandboxed worker process with the same API.
//!
//! # Isolates and limits
//!
//! One QuickJS runtime + context per [`Bundle`] (deploy id + function), kept
//! warm in an LRU pool bounded by [`Limits::max_isolates`]; an isolate runs
//! one invocation at a time (a second concurrent request for the same bundle
//! gets another isolate). Each isolate has a memory limit and a JS stack
//! limit; each invocation a CPU-time budget (time spent running JS, enforced
//! by QuickJS's interrupt handler and between jobs) and a wall-clock limit;
//! each host call (`fetch`, `context.next()`) its own timeout, since the
//! interrupt handler only runs while JS runs. An isolate that hit a limit is
//! dropped, never reused.
//!
//! The JS stack limit is measured on the thread that runs the invocation:
//! call [`Engine::invoke`] on threads with at least 1 MiB of stack beyond
//! [`Limits::stack_bytes`] (tokio's workers have 2 MiB).
//!
//! # Benchmarks
//!
//! `cargo bench -p ledge-functions` (criterion, `benches/invoke.rs`), on the
//! shared 2-core development machine (numbers in the crate README section
//! below are updated by hand):
//!
//! BENCHMARK-NUMBERS

#![deny(unsafe_code)]

mod bundle;
mod engine;
mod isolate;
mod natives;
mod types;
#[cfg(feature = "typescript")]
mod typescript;

pub use bundle::{Bundle, BundleError, BundleSource};
pub use engine::{Engine, Host, HostError, Limits};
pub use types::*;

/// Deploy-time preparation of sources (feature `typescript`).
#[cfg(feature = "typescript")]
pub mod prepare {
    pub use crate::typescript::{check_imports, prepare_bundle, strip_typescript, Diagnostic};
}
