//! Ledge's HTTP cache for proxied and edge-function responses.
//!
//! - [`policy`]: pure RFC 9111 / RFC 9213 / Netlify rules (no runtime);
//! - [`Cache`]: memory tier, disk tier, coalesced fills, revalidation,
//!   `stale-while-revalidate`, `stale-if-error`;
//! - [`Generations`]: purge counters checked on every read.
//!
//! How the edge pipeline calls it (lookup → hit / stale / miss → store or
//! revalidate → headers) is in the crate's `README.md`.
//!
//! Benchmark (`cargo bench -p ledge-cache --bench hit`): a memory-tier hit,
//! lookup plus response headers, costs about 0.9 µs (903 ns/op; 1,336 ns/op
//! under heavier load; measured on 2 cores shared with other builds; see the
//! README).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod body;
mod cache;
pub mod clock;
mod disk;
mod entry;
pub mod generations;
pub mod policy;

pub use body::CacheBody;
pub use cache::{
    Cache, CacheConfig, CacheRequest, CacheStats, CachedResponse, DiskConfig, FillGuard, Lookup,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use generations::{GenerationSnapshot, Generations, PurgeEvent, Stamp};
pub use policy::{
    cache_status_headers, downstream_headers, CacheStatus, Fwd, ResponseSource, RuleVary,
};
