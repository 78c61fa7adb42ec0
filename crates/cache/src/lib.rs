//! Ledge's HTTP cache for proxied and edge-function responses.
//!
//! - [`policy`]: pure RFC 9111 / RFC 9213 / Netlify rules (no runtime);
//! - [`Cache`]: memory tier, disk tier, coalesced fills, revalidation,
//!   `stale-while-revalidate`, `stale-if-error`;
//! - [`Generations`]: purge counters checked on every read.
//!
//! See the crate's `README.md` for how the edge pipeline calls it.

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
