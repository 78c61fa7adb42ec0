//! Ledge's storage: the metadata store ([`MetaStore`], SQLite today, PostgreSQL
//! later), the content-addressed blob store ([`BlobStore`]), the deploy snapshot
//! format the edge loads, and the change feed ([`ChangeEvent`]).
//!
//! Invariants kept here:
//! - a blob is only ever visible under the sha256 of its bytes (written to a temp
//!   file, fsynced, verified, renamed);
//! - publish and rollback are one transaction that also appends a change event,
//!   so the edge can always rebuild its state from the store at a sequence number;
//! - production deploys publish in creation order: an older deploy finishing late
//!   never replaces a newer published one.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod blobs;
pub mod events;
pub mod meta;
pub mod model;
pub mod settings;
pub mod snapshot;
pub mod sqlite;

pub use blobs::{BlobError, BlobStore, Encoding, FsBlobStore};
pub use events::{ChangeEvent, EventKind, Feed, PendingWrite};
pub use meta::{MetaError, MetaStore};
pub use model::*;
pub use settings::{SettingsError, SiteSettings};
pub use snapshot::{FileEntry, Snapshot, SnapshotFunction, CONFIG_PATHS};
pub use sqlite::SqliteStore;

/// Seconds since the Unix epoch, the store's clock.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
