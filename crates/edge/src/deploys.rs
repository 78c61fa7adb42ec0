//! Deploy snapshots and file bytes in memory.
//!
//! [`DeployCache`] loads a deploy's snapshot from the blob store on its first
//! request and keeps it (an `Arc`, shared by every request on that deploy) in an
//! LRU bounded by entry count. [`BlobCache`] keeps file bytes by digest and
//! encoding, bounded in bytes; files larger than its per-object limit are
//! streamed from the blob store instead.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use ledge_core::{DeployId, Digest, SiteName};

use crate::files::STATIC_CACHE_CONTROL;
use ledge_rules::{RuleSet, Sources};
use ledge_store::{BlobError, BlobStore, Encoding, FileEntry, Snapshot};
use quick_cache::sync::Cache;
use quick_cache::Weighter;

/// The cache key of a blob: its binary digest.
pub type BlobKey = [u8; 32];

/// One servable file with its response headers computed once.
#[derive(Debug)]
pub struct ServedFile {
    /// Content digest.
    pub digest: Digest,
    /// The digest in binary, the blob cache key.
    pub key: BlobKey,
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
    /// Response headers of a full 200 per encoding (identity, gzip, br), built
    /// once so serving a file copies a header map instead of filling one.
    pub templates: [Option<HeaderMap>; 3],
}

impl ServedFile {
    fn new(e: &FileEntry, last_modified: &HeaderValue) -> Self {
        let short = &e.digest.as_str()[..32];
        let tag = |suffix: &str| {
            HeaderValue::from_str(&format!("\"{short}{suffix}\""))
                .unwrap_or(HeaderValue::from_static("\"\""))
        };
        let mut key = [0u8; 32];
        // A stored digest is always 64 hex characters.
        let _ = hex_decode(e.digest.as_str(), &mut key);
        let content_type = HeaderValue::from_str(&e.content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream"));
        let mut file = Self {
            digest: e.digest.clone(),
            key,
            size: e.size,
            content_type,
            etag: tag(""),
            br: e.br.map(|n| (n, tag("-br"))),
            gz: e.gz.map(|n| (n, tag("-gz"))),
            templates: [None, None, None],
        };
        let vary = file.has_variants();
        let template = |size: u64, etag: &HeaderValue, encoding: Option<&'static str>| {
            let mut h = HeaderMap::with_capacity(10);
            h.insert(header::CONTENT_TYPE, file.content_type.clone());
            h.insert(header::ETAG, etag.clone());
            h.insert(header::LAST_MODIFIED, last_modified.clone());
            h.insert(header::CACHE_CONTROL, STATIC_CACHE_CONTROL);
            if vary {
                h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
            }
            h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            if let Some(token) = encoding {
                h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(token));
            }
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
            // The request id's slot, filled by the pipeline's headers phase:
            // a clone of this map has no spare capacity, so adding the id
            // as a new header would reallocate the map on every response.
            h.insert(crate::pipeline::X_LEDGE_ID, HeaderValue::from_static(""));
            h
        };
        // Indexed like `enc_key`: identity, gzip, brotli.
        file.templates = [
            Some(template(file.size, &file.etag, None)),
            file.gz.as_ref().map(|(n, t)| template(*n, t, Some("gzip"))),
            file.br.as_ref().map(|(n, t)| template(*n, t, Some("br"))),
        ];
        file
    }

    /// The prepared headers of a full 200 in `enc`.
    pub fn template(&self, enc: Encoding) -> Option<&HeaderMap> {
        self.templates[enc_key(enc) as usize].as_ref()
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
    /// Its id as shared text (for the access records of its requests).
    pub id_text: Arc<str>,
    /// Its site.
    pub site: SiteName,
    /// `Last-Modified` for its files (the deploy's creation time).
    pub last_modified: HeaderValue,
    /// The same, in Unix seconds.
    pub last_modified_secs: i64,
    /// Compiled `_redirects`, `_headers` and `netlify.toml` rules.
    pub rules: Arc<RuleSet>,
    files: HashMap<Box<str>, Arc<ServedFile>, foldhash::fast::RandomState>,
    /// Every request path that resolves to a file or a folder redirect.
    resolvable: HashSet<Box<str>, foldhash::fast::RandomState>,
    /// Its edge functions, when any can run.
    pub functions: Option<Arc<crate::functions::DeployFunctions>>,
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
        let when = std::time::UNIX_EPOCH
            + std::time::Duration::from_secs(u64::try_from(s.created_at).unwrap_or(0));
        let last_modified = HeaderValue::from_str(&httpdate::fmt_http_date(when))
            .unwrap_or(HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"));
        let files = s
            .files
            .iter()
            .map(|(p, e)| {
                (
                    p.as_str().into(),
                    Arc::new(ServedFile::new(e, &last_modified)),
                )
            })
            .collect();
        let resolvable = ledge_core::path::resolvable_paths(s.files.keys().map(String::as_str))
            .into_iter()
            .map(String::into_boxed_str)
            .collect();
        let functions =
            crate::functions::DeployFunctions::load(s.deploy.as_str(), &s.edge_functions, &rules);
        Self {
            functions,
            id_text: s.deploy.as_str().into(),
            id: s.deploy,
            site: s.site,
            resolvable,
            last_modified,
            last_modified_secs: s.created_at,
            rules: Arc::new(rules),
            files,
        }
    }

    /// The file at an exact path (leading `/`).
    pub fn file(&self, path: &str) -> Option<&Arc<ServedFile>> {
        self.files.get(path)
    }

    /// True when a request for `path` finds a file or a folder redirect.
    pub fn resolves(&self, path: &str) -> bool {
        self.resolvable.contains(path)
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
        // One load per deploy however many requests wait for it: the first
        // gets the cache's placeholder and loads, the others wait for its
        // value (or, if it fails, the next one tries). Without this, a burst
        // of requests for a deploy not yet loaded compiled it once each.
        let guard = match self.cache.get_value_or_guard_async(id).await {
            Ok(d) => return Ok((&d.site == site).then_some(d)),
            Err(guard) => guard,
        };
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
        let _ = guard.insert(loaded.clone());
        Ok((&loaded.site == site).then_some(loaded))
    }
}

#[derive(Clone)]
struct ByteWeight;

impl Weighter<(BlobKey, u8), Bytes> for ByteWeight {
    fn weight(&self, _k: &(BlobKey, u8), v: &Bytes) -> u64 {
        // Count the key and bookkeeping too, so empty files are not free.
        v.len() as u64 + 128
    }
}

/// File bytes by digest and encoding, bounded in bytes.
pub struct BlobCache {
    blobs: Arc<dyn BlobStore>,
    cache: Cache<(BlobKey, u8), Bytes, ByteWeight>,
    max_object: u64,
    /// Open files of large blobs, for `sendfile` (bounded in descriptors).
    files: Cache<(BlobKey, u8), Arc<std::fs::File>>,
}

/// Most blob files kept open for `sendfile`.
const OPEN_FILES: usize = 256;

fn hex_decode(hex: &str, out: &mut [u8; 32]) -> Option<()> {
    let b = hex.as_bytes();
    if b.len() != 64 {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        let hi = (b[2 * i] as char).to_digit(16)?;
        let lo = (b[2 * i + 1] as char).to_digit(16)?;
        *o = (hi << 4 | lo) as u8;
    }
    Some(())
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
            files: Cache::new(OPEN_FILES),
        }
    }

    /// True when an object of `size` bytes is served from memory.
    pub fn cacheable(&self, size: u64) -> bool {
        size <= self.max_object
    }

    /// The whole object (only for cacheable sizes).
    pub async fn get(&self, file: &ServedFile, enc: Encoding) -> Result<Bytes, BlobError> {
        let key = (file.key, enc_key(enc));
        // One read per blob however many requests wait for it (as deploys).
        let guard = match self.cache.get_value_or_guard_async(&key).await {
            Ok(b) => return Ok(b),
            Err(guard) => guard,
        };
        let b = self.blobs.read(&file.digest, enc).await?;
        let _ = guard.insert(b.clone());
        Ok(b)
    }

    /// The blob as an open local file, when the store keeps it on a local
    /// filesystem (cached; `None` otherwise or on any error).
    pub async fn file(&self, file: &ServedFile, enc: Encoding) -> Option<Arc<std::fs::File>> {
        let key = (file.key, enc_key(enc));
        let guard = match self.files.get_value_or_guard_async(&key).await {
            Ok(f) => return Some(f),
            Err(guard) => guard,
        };
        let f = Arc::new(self.blobs.open_local(&file.digest, enc).await.ok()??);
        let _ = guard.insert(f.clone());
        Some(f)
    }

    /// The blob store behind the cache, for streaming large objects.
    pub fn store(&self) -> &Arc<dyn BlobStore> {
        &self.blobs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use ledge_store::blobs::ByteStream;
    use ledge_store::FsBlobStore;

    /// A blob store that counts snapshot loads and whole-blob reads.
    struct Counting {
        inner: FsBlobStore,
        snapshots: AtomicUsize,
        reads: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl BlobStore for Counting {
        async fn has(&self, d: &Digest) -> Result<bool, BlobError> {
            self.inner.has(d).await
        }
        async fn put_stream(&self, d: &Digest, body: ByteStream) -> Result<u64, BlobError> {
            self.inner.put_stream(d, body).await
        }
        async fn len(&self, d: &Digest, enc: Encoding) -> Result<Option<u64>, BlobError> {
            self.inner.len(d, enc).await
        }
        async fn read(&self, d: &Digest, enc: Encoding) -> Result<Bytes, BlobError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            // Slow enough that every request of the burst arrives meanwhile.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            self.inner.read(d, enc).await
        }
        async fn open_local(
            &self,
            d: &Digest,
            enc: Encoding,
        ) -> Result<Option<std::fs::File>, BlobError> {
            self.inner.open_local(d, enc).await
        }
        async fn read_range(
            &self,
            d: &Digest,
            enc: Encoding,
            offset: u64,
            len: usize,
        ) -> Result<Bytes, BlobError> {
            self.inner.read_range(d, enc, offset, len).await
        }
        async fn put_variant(
            &self,
            d: &Digest,
            enc: Encoding,
            data: &[u8],
        ) -> Result<(), BlobError> {
            self.inner.put_variant(d, enc, data).await
        }
        async fn put_snapshot(&self, id: &DeployId, data: &[u8]) -> Result<(), BlobError> {
            self.inner.put_snapshot(id, data).await
        }
        async fn get_snapshot(&self, id: &DeployId) -> Result<Option<Bytes>, BlobError> {
            self.snapshots.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            self.inner.get_snapshot(id).await
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_requests_loads_a_deploy_and_reads_a_blob_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Counting {
            inner: FsBlobStore::open(dir.path()).await.unwrap(),
            snapshots: AtomicUsize::new(0),
            reads: AtomicUsize::new(0),
        });
        let body = Bytes::from_static(b"hello, burst");
        let hex = {
            use sha2::Digest as _;
            format!("{:x}", sha2::Sha256::digest(&body))
        };
        let digest = Digest::parse(&hex).unwrap();
        let stream: ByteStream = Box::pin(futures_util::stream::iter([Ok(body.clone())]));
        store.put_stream(&digest, stream).await.unwrap();
        let id = DeployId::parse("0123456789abcdef01234567").unwrap();
        let site = SiteName::parse("burst").unwrap();
        let snap = Snapshot {
            deploy: id,
            site: site.clone(),
            created_at: 0,
            prod: true,
            files: BTreeMap::from([(
                "/a.txt".to_owned(),
                FileEntry {
                    digest,
                    size: body.len() as u64,
                    content_type: "text/plain".into(),
                    br: None,
                    gz: None,
                },
            )]),
            config: BTreeMap::new(),
            functions: BTreeMap::new(),
            edge_functions: Vec::new(),
            diagnostics: Vec::new(),
        };
        store
            .put_snapshot(&id, &serde_json::to_vec(&snap).unwrap())
            .await
            .unwrap();
        let deploys = Arc::new(DeployCache::new(store.clone(), 8));
        let blobs = Arc::new(BlobCache::new(store.clone(), 1 << 20, 1 << 16));
        let burst = (0..32).map(|_| {
            let (deploys, blobs, site) = (deploys.clone(), blobs.clone(), site.clone());
            tokio::spawn(async move {
                let d = deploys.get(&site, &id).await.unwrap().unwrap();
                let f = d.file("/a.txt").unwrap().clone();
                blobs.get(&f, Encoding::Identity).await.unwrap()
            })
        });
        for task in burst.collect::<Vec<_>>() {
            assert_eq!(task.await.unwrap(), body);
        }
        assert_eq!(store.snapshots.load(Ordering::SeqCst), 1);
        assert_eq!(store.reads.load(Ordering::SeqCst), 1);
        // Another site's name for the same deploy is still refused.
        let other = SiteName::parse("other").unwrap();
        assert!(deploys.get(&other, &id).await.unwrap().is_none());
    }
}
