//! Deploy snapshots and file bytes in memory.
//!
//! [`DeployCache`] loads a deploy's snapshot from the blob store on its first
//! request and keeps it (an `Arc`, shared by every request on that deploy) in an
//! LRU bounded by entry count. [`BlobCache`] keeps file bytes by digest and
//! encoding, bounded in bytes; files larger than its per-object limit are
//! streamed from the blob store instead.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http::HeaderValue;
use ledge_core::{DeployId, Digest, SiteName};
use ledge_rules::{RuleSet, Sources};
use ledge_store::{BlobError, BlobStore, Encoding, FileEntry, Snapshot};
use quick_cache::sync::Cache;
use quick_cache::Weighter;

/// One servable file with its response headers computed once.
#[derive(Debug)]
pub struct ServedFile {
    /// Content digest.
    pub digest: Digest,
    /// Identity size.
    pub size: u64,
    /// `Content-Type`.
    pub content_type: HeaderValue,
    /// `ETag` of the identity bytes.
    pub etag: HeaderValue,
    /// Brotli variant: size and `ETag`.
    pub br: Option<(u64, HeaderValue)>,
    /// gzip variant: size and `ETag`.
    pub gz: Option<(u64, HeaderValue)>,
}

impl ServedFile {
    fn new(e: &FileEntry) -> Self {
        let short = &e.digest.as_str()[..32];
        let tag = |suffix: &str| {
            HeaderValue::from_str(&format!("\"{short}{suffix}\""))
                .unwrap_or(HeaderValue::from_static("\"\""))
        };
        Self {
            digest: e.digest.clone(),
            size: e.size,
            content_type: HeaderValue::from_str(&e.content_type)
                .unwrap_or(HeaderValue::from_static("application/octet-stream")),
            etag: tag(""),
            br: e.br.map(|n| (n, tag("-br"))),
            gz: e.gz.map(|n| (n, tag("-gz"))),
        }
    }

    /// True when a compressed variant exists, so responses must `Vary`.
    pub fn has_variants(&self) -> bool {
        self.br.is_some() || self.gz.is_some()
    }
}

/// A deploy ready to serve.
#[derive(Debug)]
pub struct LoadedDeploy {
    /// The deploy.
    pub id: DeployId,
    /// Its site.
    pub site: SiteName,
    /// `Last-Modified` for its files (the deploy's creation time).
    pub last_modified: HeaderValue,
    /// The same, in Unix seconds.
    pub last_modified_secs: i64,
    /// Compiled `_redirects`, `_headers` and `netlify.toml` rules.
    pub rules: Arc<RuleSet>,
    files: HashMap<Box<str>, Arc<ServedFile>>,
}

impl LoadedDeploy {
    /// Builds the in-memory form of a snapshot, compiling its rules (the
    /// diagnostics were recorded when the deploy was processed).
    pub fn from_snapshot(s: Snapshot) -> Self {
        let text = |p: &str| s.config.get(p).map(String::as_str);
        let (rules, _) = RuleSet::compile(&Sources {
            redirects: text("/_redirects"),
            headers: text("/_headers"),
            netlify_toml: text("/netlify.toml"),
        });
        let files = s
            .files
            .iter()
            .map(|(p, e)| (p.as_str().into(), Arc::new(ServedFile::new(e))))
            .collect();
        let when = std::time::UNIX_EPOCH
            + std::time::Duration::from_secs(u64::try_from(s.created_at).unwrap_or(0));
        Self {
            id: s.deploy,
            site: s.site,
            last_modified: HeaderValue::from_str(&httpdate::fmt_http_date(when))
                .unwrap_or(HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT")),
            last_modified_secs: s.created_at,
            rules: Arc::new(rules),
            files,
        }
    }

    /// The file at an exact path (leading `/`).
    pub fn file(&self, path: &str) -> Option<&Arc<ServedFile>> {
        self.files.get(path)
    }

    /// Number of servable files.
    pub fn file_count(&self) -> usize {
        self.files.len()
    }
}

/// Deploy snapshots by id, loaded on first use.
pub struct DeployCache {
    blobs: Arc<dyn BlobStore>,
    cache: Cache<DeployId, Arc<LoadedDeploy>>,
}

impl DeployCache {
    /// A cache of at most `capacity` deploys.
    pub fn new(blobs: Arc<dyn BlobStore>, capacity: usize) -> Self {
        Self {
            blobs,
            cache: Cache::new(capacity.max(1)),
        }
    }

    /// The deploy, loading its snapshot if needed; `None` when the deploy has no
    /// snapshot (not ready, unknown) or belongs to another site.
    pub async fn get(
        &self,
        site: &SiteName,
        id: &DeployId,
    ) -> Result<Option<Arc<LoadedDeploy>>, BlobError> {
        if let Some(d) = self.cache.get(id) {
            return Ok((&d.site == site).then_some(d));
        }
        let Some(raw) = self.blobs.get_snapshot(id).await? else {
            return Ok(None);
        };
        let snap: Snapshot = serde_json::from_slice(&raw)
            .map_err(|e| BlobError::Io(std::io::Error::other(format!("snapshot {id}: {e}"))))?;
        // Compiling a large rule set takes milliseconds: keep it off the reactor.
        let loaded = tokio::task::spawn_blocking(move || LoadedDeploy::from_snapshot(snap))
            .await
            .map(Arc::new)
            .map_err(|e| BlobError::Io(std::io::Error::other(e.to_string())))?;
        self.cache.insert(*id, loaded.clone());
        Ok((&loaded.site == site).then_some(loaded))
    }
}

#[derive(Clone)]
struct ByteWeight;

impl Weighter<(Digest, u8), Bytes> for ByteWeight {
    fn weight(&self, _k: &(Digest, u8), v: &Bytes) -> u64 {
        // Count the key and bookkeeping too, so empty files are not free.
        v.len() as u64 + 128
    }
}

/// File bytes by digest and encoding, bounded in bytes.
pub struct BlobCache {
    blobs: Arc<dyn BlobStore>,
    cache: Cache<(Digest, u8), Bytes, ByteWeight>,
    max_object: u64,
}

fn enc_key(enc: Encoding) -> u8 {
    match enc {
        Encoding::Identity => 0,
        Encoding::Gzip => 1,
        Encoding::Brotli => 2,
    }
}

impl BlobCache {
    /// A cache of `capacity_bytes`, holding objects of at most `max_object` bytes.
    pub fn new(blobs: Arc<dyn BlobStore>, capacity_bytes: u64, max_object: u64) -> Self {
        let items = (capacity_bytes / 4096).clamp(16, 1 << 22) as usize;
        Self {
            blobs,
            cache: Cache::with_weighter(items, capacity_bytes.max(1), ByteWeight),
            max_object,
        }
    }

    /// True when an object of `size` bytes is served from memory.
    pub fn cacheable(&self, size: u64) -> bool {
        size <= self.max_object
    }

    /// The whole object (only for cacheable sizes).
    pub async fn get(&self, digest: &Digest, enc: Encoding) -> Result<Bytes, BlobError> {
        let key = (digest.clone(), enc_key(enc));
        if let Some(b) = self.cache.get(&key) {
            return Ok(b);
        }
        let b = self.blobs.read(digest, enc).await?;
        self.cache.insert(key, b.clone());
        Ok(b)
    }

    /// The blob store behind the cache, for streaming large objects.
    pub fn store(&self) -> &Arc<dyn BlobStore> {
        &self.blobs
    }
}
