//! Content-addressed blob storage.
//!
//! A blob is stored under the sha256 of its bytes and nothing else: an upload is
//! streamed into a temp file while hashed, fsynced, compared with the digest it
//! claims, and only then renamed into place (and the folder fsynced). A crash at
//! any point leaves either no blob or a whole, verified one.
//!
//! Compressed variants (`br`, `gzip`) of a blob are derived once and kept beside
//! it, keyed by the original's digest. Deploy snapshots are kept here too.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use ledge_core::{DeployId, Digest};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// Largest blob accepted, in bytes.
pub const MAX_BLOB_SIZE: u64 = 1 << 30;

/// A content encoding a blob may be stored in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// The bytes as uploaded.
    Identity,
    /// gzip (RFC 1952).
    Gzip,
    /// Brotli (RFC 7932).
    Brotli,
}

impl Encoding {
    /// The `Content-Encoding` token, or `None` for identity.
    pub fn token(self) -> Option<&'static str> {
        match self {
            Self::Identity => None,
            Self::Gzip => Some("gzip"),
            Self::Brotli => Some("br"),
        }
    }

    fn dir(self) -> &'static str {
        match self {
            Self::Identity => "sha256",
            Self::Gzip => "gzip",
            Self::Brotli => "br",
        }
    }
}

/// Why a blob operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The uploaded bytes do not hash to the claimed digest.
    #[error("content does not match digest {expected}: it hashes to {actual}")]
    DigestMismatch {
        /// Claimed.
        expected: Digest,
        /// Computed.
        actual: Digest,
    },
    /// The upload is larger than [`MAX_BLOB_SIZE`].
    #[error("blob larger than {MAX_BLOB_SIZE} bytes")]
    TooLarge,
    /// No such blob.
    #[error("blob {0} not found")]
    NotFound(String),
    /// The upload stream broke off.
    #[error("upload interrupted: {0}")]
    Interrupted(String),
    /// The filesystem failed.
    #[error("blob store I/O error: {0}")]
    Io(#[from] io::Error),
}

/// An upload body.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, io::Error>> + Send>>;

/// Where blobs, their variants and deploy snapshots live.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// True when the blob is stored.
    async fn has(&self, digest: &Digest) -> Result<bool, BlobError>;
    /// Streams an upload in, verifying it against `expected`. Idempotent.
    async fn put_stream(&self, expected: &Digest, body: ByteStream) -> Result<u64, BlobError>;
    /// Size of a stored blob or variant, `None` when absent.
    async fn len(&self, digest: &Digest, enc: Encoding) -> Result<Option<u64>, BlobError>;
    /// A whole blob or variant.
    async fn read(&self, digest: &Digest, enc: Encoding) -> Result<Bytes, BlobError>;
    /// The blob or variant as an open local file, for stores that keep blobs
    /// on a local filesystem (so the edge can `sendfile` it); `None` for
    /// the others. Blobs are never modified once stored, so the file stays
    /// valid (even if the blob is later deleted) for as long as it is open.
    async fn open_local(
        &self,
        _digest: &Digest,
        _enc: Encoding,
    ) -> Result<Option<std::fs::File>, BlobError> {
        Ok(None)
    }
    /// `len` bytes from `offset` of a blob or variant.
    async fn read_range(
        &self,
        digest: &Digest,
        enc: Encoding,
        offset: u64,
        len: usize,
    ) -> Result<Bytes, BlobError>;
    /// Stores a compressed variant of `digest`.
    async fn put_variant(
        &self,
        digest: &Digest,
        enc: Encoding,
        data: &[u8],
    ) -> Result<(), BlobError>;
    /// Stores a deploy's snapshot.
    async fn put_snapshot(&self, id: &DeployId, data: &[u8]) -> Result<(), BlobError>;
    /// A deploy's snapshot, `None` when absent.
    async fn get_snapshot(&self, id: &DeployId) -> Result<Option<Bytes>, BlobError>;
}

/// Blobs as files under one folder: `sha256/ab/<digest>`, `br/…`, `gzip/…`,
/// `snapshots/<deploy>.json`, and `tmp/` for uploads in progress.
#[derive(Debug, Clone)]
pub struct FsBlobStore {
    root: PathBuf,
}

impl FsBlobStore {
    /// Opens (creating) the store under `root`, and clears abandoned temp files.
    pub async fn open(root: impl Into<PathBuf>) -> Result<Self, BlobError> {
        let root = root.into();
        for sub in ["sha256", "br", "gzip", "snapshots"] {
            tokio::fs::create_dir_all(root.join(sub)).await?;
        }
        let tmp = root.join("tmp");
        if tmp.exists() {
            tokio::fs::remove_dir_all(&tmp).await?;
        }
        tokio::fs::create_dir_all(&tmp).await?;
        Ok(Self { root })
    }

    /// The file holding a blob or variant.
    pub fn path(&self, digest: &Digest, enc: Encoding) -> PathBuf {
        let d = digest.as_str();
        self.root.join(enc.dir()).join(&d[..2]).join(d)
    }

    fn tmp_path(&self) -> PathBuf {
        let n: u64 = rand::random();
        self.root.join("tmp").join(format!("{n:016x}"))
    }

    /// Writes `data` atomically to `dest` (temp file, fsync, rename, fsync dir).
    async fn write_atomic(&self, dest: &Path, data: &[u8]) -> Result<(), BlobError> {
        let tmp = self.tmp_path();
        let mut f = tokio::fs::File::create(&tmp).await?;
        f.write_all(data).await?;
        f.sync_all().await?;
        drop(f);
        self.install(&tmp, dest).await
    }

    async fn install(&self, tmp: &Path, dest: &Path) -> Result<(), BlobError> {
        let dir = dest.parent().unwrap_or(&self.root);
        tokio::fs::create_dir_all(dir).await?;
        tokio::fs::rename(tmp, dest).await?;
        sync_dir(dir).await?;
        Ok(())
    }
}

async fn sync_dir(dir: &Path) -> io::Result<()> {
    tokio::fs::File::open(dir).await?.sync_all().await
}

fn not_found(e: io::Error, what: &dyn std::fmt::Display) -> BlobError {
    if e.kind() == io::ErrorKind::NotFound {
        BlobError::NotFound(what.to_string())
    } else {
        BlobError::Io(e)
    }
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn has(&self, digest: &Digest) -> Result<bool, BlobError> {
        Ok(tokio::fs::try_exists(self.path(digest, Encoding::Identity)).await?)
    }

    async fn open_local(
        &self,
        digest: &Digest,
        enc: Encoding,
    ) -> Result<Option<std::fs::File>, BlobError> {
        match tokio::fs::File::open(self.path(digest, enc)).await {
            Ok(f) => Ok(Some(f.into_std().await)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn put_stream(&self, expected: &Digest, mut body: ByteStream) -> Result<u64, BlobError> {
        let tmp = self.tmp_path();
        let result = async {
            let mut file = tokio::fs::File::create(&tmp).await?;
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| BlobError::Interrupted(e.to_string()))?;
                size += chunk.len() as u64;
                if size > MAX_BLOB_SIZE {
                    return Err(BlobError::TooLarge);
                }
                hasher.update(&chunk);
                file.write_all(&chunk).await?;
            }
            let actual = Digest::from_hasher(hasher);
            if &actual != expected {
                return Err(BlobError::DigestMismatch {
                    expected: expected.clone(),
                    actual,
                });
            }
            file.sync_all().await?;
            drop(file);
            let dest = self.path(expected, Encoding::Identity);
            self.install(&tmp, &dest).await?;
            Ok(size)
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }

    async fn len(&self, digest: &Digest, enc: Encoding) -> Result<Option<u64>, BlobError> {
        match tokio::fs::metadata(self.path(digest, enc)).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn read(&self, digest: &Digest, enc: Encoding) -> Result<Bytes, BlobError> {
        tokio::fs::read(self.path(digest, enc))
            .await
            .map(Bytes::from)
            .map_err(|e| not_found(e, digest))
    }

    async fn read_range(
        &self,
        digest: &Digest,
        enc: Encoding,
        offset: u64,
        len: usize,
    ) -> Result<Bytes, BlobError> {
        let mut f = tokio::fs::File::open(self.path(digest, enc))
            .await
            .map_err(|e| not_found(e, digest))?;
        f.seek(io::SeekFrom::Start(offset)).await?;
        let mut buf = Vec::with_capacity(len);
        (&mut f).take(len as u64).read_to_end(&mut buf).await?;
        Ok(Bytes::from(buf))
    }

    async fn put_variant(
        &self,
        digest: &Digest,
        enc: Encoding,
        data: &[u8],
    ) -> Result<(), BlobError> {
        let dest = self.path(digest, enc);
        self.write_atomic(&dest, data).await
    }

    async fn put_snapshot(&self, id: &DeployId, data: &[u8]) -> Result<(), BlobError> {
        let dest = self.root.join("snapshots").join(format!("{id}.json"));
        self.write_atomic(&dest, data).await
    }

    async fn get_snapshot(&self, id: &DeployId) -> Result<Option<Bytes>, BlobError> {
        match tokio::fs::read(self.root.join("snapshots").join(format!("{id}.json"))).await {
            Ok(b) => Ok(Some(Bytes::from(b))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// Compresses `data` for `enc` (brotli quality 9, gzip level 9): done once per
/// blob, so spend CPU for smaller transfers.
pub fn compress(enc: Encoding, data: &[u8]) -> io::Result<Vec<u8>> {
    use std::io::Write;
    match enc {
        Encoding::Identity => Ok(data.to_vec()),
        Encoding::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            e.write_all(data)?;
            e.finish()
        }
        Encoding::Brotli => {
            let mut out = Vec::new();
            {
                let mut w = brotli::CompressorWriter::new(&mut out, 4096, 9, 22);
                w.write_all(data)?;
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(parts: Vec<&'static [u8]>) -> ByteStream {
        Box::pin(futures_util::stream::iter(
            parts.into_iter().map(|p| Ok(Bytes::from_static(p))),
        ))
    }

    #[tokio::test]
    async fn verified_put_and_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path()).await.unwrap();
        let d = Digest::of(b"hello world");
        assert!(!store.has(&d).await.unwrap());
        let n = store
            .put_stream(&d, stream(vec![b"hello ", b"world"]))
            .await
            .unwrap();
        assert_eq!(n, 11);
        assert!(store.has(&d).await.unwrap());
        assert_eq!(
            store.read(&d, Encoding::Identity).await.unwrap(),
            "hello world"
        );
        assert_eq!(
            store
                .read_range(&d, Encoding::Identity, 6, 5)
                .await
                .unwrap(),
            "world"
        );
    }

    #[tokio::test]
    async fn mismatch_keeps_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path()).await.unwrap();
        let d = Digest::of(b"expected");
        let err = store
            .put_stream(&d, stream(vec![b"something else"]))
            .await
            .unwrap_err();
        assert!(matches!(err, BlobError::DigestMismatch { .. }));
        assert!(!store.has(&d).await.unwrap());
        let tmp_left = std::fs::read_dir(dir.path().join("tmp")).unwrap().count();
        assert_eq!(tmp_left, 0);
    }

    #[test]
    fn compression_round_trips() {
        let data = b"<html>".repeat(500);
        let br = compress(Encoding::Brotli, &data).unwrap();
        let mut out = Vec::new();
        brotli::BrotliDecompress(&mut &br[..], &mut out).unwrap();
        assert_eq!(out, data);
        assert!(br.len() < data.len() / 10);
        let gz = compress(Encoding::Gzip, &data).unwrap();
        let mut d = flate2::read::GzDecoder::new(&gz[..]);
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut d, &mut out).unwrap();
        assert_eq!(out, data);
    }
}
