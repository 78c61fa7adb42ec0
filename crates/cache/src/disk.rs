//! The disk tier: one file per entry under `objects/xx/<sha256 of key>`,
//! laid out as `body | metadata | trailer`, so a large body is written as it
//! streams and read back from offset 0. The trailer carries the lengths, a
//! CRC-32 of the body and one of the metadata; metadata is checked when the
//! index is rebuilt at start, the body on every read, and a mismatch deletes
//! the file and counts as a miss. Files are written under `tmp/` and renamed
//! into place, so a crash leaves no half entry under `objects/` (and `tmp/`
//! is cleared at start).
//!
//! Why not `foyer`'s hybrid cache, which the design named: its values are
//! whole in-memory objects serialised on insert, so a 100 MB body would have to
//! be buffered entirely before it could be stored (the issue forbids that), it
//! needs Rust 1.91 (the workspace promises 1.85) and a large dependency tree.
//! The index here is a `quick_cache` weighted by body size (its eviction is
//! CLOCK-Pro-like); an evicted entry's file is deleted.

use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use quick_cache::sync::Cache as QCache;
use quick_cache::{DefaultHashBuilder, Lifecycle, Weighter};
use sha2::{Digest, Sha256};

use crate::entry::{Entry, StoredBody};

const MAGIC: &[u8; 8] = b"LEDGEC01";
/// `meta_len u32 | body_crc u32 | meta_crc u32 | body_len u64 | magic`.
pub(crate) const TRAILER: usize = 4 + 4 + 4 + 8 + 8;
/// Largest metadata block accepted when reading.
const MAX_META: usize = 4 * 1024 * 1024;

#[derive(Clone)]
struct DiskWeighter;

impl Weighter<String, Arc<Entry>> for DiskWeighter {
    fn weight(&self, _key: &String, val: &Arc<Entry>) -> u64 {
        val.body_len().max(1) + 512
    }
}

/// Notes the keys the index lets go. `quick_cache` reports a replaced value
/// like an evicted one, so the file is deleted later ([`DiskStore::reap`]) and
/// only if the key is really gone (a replacement renamed a new file into the
/// same place).
#[derive(Clone)]
struct NoteEvicted {
    evicted: Arc<Mutex<Vec<String>>>,
}

impl Lifecycle<String, Arc<Entry>> for NoteEvicted {
    type RequestState = ();

    fn begin_request(&self) -> Self::RequestState {}

    fn on_evict(&self, _state: &mut Self::RequestState, key: String, _val: Arc<Entry>) {
        self.evicted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(key);
    }
}

type Index = QCache<String, Arc<Entry>, DiskWeighter, DefaultHashBuilder, NoteEvicted>;

/// The disk tier.
pub(crate) struct DiskStore {
    root: Arc<PathBuf>,
    index: Index,
    evicted: Arc<Mutex<Vec<String>>>,
}

/// The file of `key` under `root`.
pub(crate) fn object_path(root: &Path, key: &str) -> PathBuf {
    let digest = hex::encode(Sha256::digest(key.as_bytes()));
    let mut p = root.join("objects");
    p.push(&digest[..2]);
    p.push(&digest);
    p
}

impl DiskStore {
    /// Opens (or creates) the store at `root`, keeping at most `capacity`
    /// bytes. Blocking: call at start. Rebuilds the index from the files'
    /// metadata; unreadable files are deleted. Returns the entries found.
    pub fn open(root: &Path, capacity: u64) -> io::Result<(Self, Vec<Arc<Entry>>)> {
        let tmp = root.join("tmp");
        if tmp.exists() {
            fs::remove_dir_all(&tmp)?;
        }
        fs::create_dir_all(&tmp)?;
        fs::create_dir_all(root.join("objects"))?;
        let root = Arc::new(root.to_path_buf());
        let evicted = Arc::new(Mutex::new(Vec::new()));
        let index = Index::with(
            1024,
            capacity.max(1),
            DiskWeighter,
            DefaultHashBuilder::default(),
            NoteEvicted {
                evicted: evicted.clone(),
            },
        );
        let store = Self {
            root,
            index,
            evicted,
        };
        let mut found = Vec::new();
        for shard in fs::read_dir(store.root.join("objects"))? {
            let shard = shard?.path();
            if !shard.is_dir() {
                continue;
            }
            for file in fs::read_dir(&shard)? {
                let path = file?.path();
                match read_meta(&path) {
                    Some(e) if object_path(&store.root, &e.key) == path => {
                        let e = Arc::new(e);
                        store.index.insert(e.key.clone(), e.clone());
                        found.push(e);
                    }
                    _ => {
                        tracing::warn!(path = %path.display(), "cache: dropping unreadable disk entry");
                        let _ = fs::remove_file(&path);
                    }
                }
            }
        }
        store.reap();
        found.retain(|e| store.index.contains_key(&e.key));
        Ok((store, found))
    }

    /// Deletes the files of keys the index evicted (not of replaced ones).
    fn reap(&self) {
        let keys = std::mem::take(&mut *self.evicted.lock().unwrap_or_else(|p| p.into_inner()));
        for key in keys {
            if !self.index.contains_key(&key) {
                let _ = fs::remove_file(object_path(&self.root, &key));
            }
        }
    }

    /// The entry stored for `key`, if indexed.
    pub fn get(&self, key: &str) -> Option<Arc<Entry>> {
        self.index.get(key)
    }

    /// Forgets `key` and deletes its file.
    pub fn remove(&self, key: &str) {
        if self.index.remove(key).is_some() {
            let _ = fs::remove_file(object_path(&self.root, key));
        }
    }

    /// Bytes and entries indexed.
    pub fn usage(&self) -> (u64, usize) {
        (self.index.weight(), self.index.len())
    }

    /// The file of `key`.
    pub fn path(&self, key: &str) -> PathBuf {
        object_path(&self.root, key)
    }

    /// A new temporary file for a body being written.
    pub fn temp_path(&self) -> PathBuf {
        let n: u64 = u64::from(std::process::id()) << 32
            ^ TEMP_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.root.join("tmp").join(format!("{n:016x}"))
    }

    /// Finishes a file whose body (`entry.body_len()` bytes, CRC in
    /// `entry.body`) is already written to `tmp`: appends metadata and trailer,
    /// renames it into place and indexes it. Blocking.
    pub fn commit(&self, tmp: &Path, entry: Arc<Entry>) -> io::Result<()> {
        let mut f = fs::OpenOptions::new().append(true).open(tmp)?;
        write_tail(&mut f, &entry)?;
        drop(f);
        let dest = self.path(&entry.key);
        if let Some(dir) = dest.parent() {
            fs::create_dir_all(dir)?;
        }
        fs::rename(tmp, &dest)?;
        self.index.insert(entry.key.clone(), entry);
        self.reap();
        Ok(())
    }

    /// Writes a whole small entry. Blocking.
    pub fn write_whole(&self, entry: Arc<Entry>, body: &[u8]) -> io::Result<()> {
        let tmp = self.temp_path();
        let mut f = fs::File::create(&tmp)?;
        f.write_all(body)?;
        drop(f);
        let r = self.commit(&tmp, entry);
        if r.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        r
    }

    /// Replaces the metadata of a stored entry (after a 304), keeping its
    /// body. Blocking.
    pub fn rewrite_meta(&self, entry: Arc<Entry>) -> io::Result<()> {
        let path = self.path(&entry.key);
        let mut f = fs::OpenOptions::new().write(true).open(&path)?;
        f.set_len(entry.body_len())?;
        f.seek(SeekFrom::End(0))?;
        write_tail(&mut f, &entry)?;
        self.index.insert(entry.key.clone(), entry);
        self.reap();
        Ok(())
    }
}

static TEMP_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn write_tail(f: &mut fs::File, entry: &Entry) -> io::Result<()> {
    let StoredBody::Disk { len, crc } = entry.body else {
        return Err(io::Error::other("disk entry without a disk body"));
    };
    let meta = entry.encode_meta();
    let mut tail = Vec::with_capacity(meta.len() + TRAILER);
    tail.extend_from_slice(&meta);
    tail.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    tail.extend_from_slice(&crc.to_le_bytes());
    tail.extend_from_slice(&crc32fast::hash(&meta).to_le_bytes());
    tail.extend_from_slice(&len.to_le_bytes());
    tail.extend_from_slice(MAGIC);
    f.write_all(&tail)
}

/// Reads and checks a file's metadata (not its body).
fn read_meta(path: &Path) -> Option<Entry> {
    let mut f = fs::File::open(path).ok()?;
    let file_len = f.metadata().ok()?.len();
    if file_len < TRAILER as u64 {
        return None;
    }
    f.seek(SeekFrom::End(-(TRAILER as i64))).ok()?;
    let mut t = [0u8; TRAILER];
    f.read_exact(&mut t).ok()?;
    let word =
        |i: usize| -> Option<u32> { Some(u32::from_le_bytes(t.get(i..i + 4)?.try_into().ok()?)) };
    let meta_len = word(0)? as usize;
    let body_crc = word(4)?;
    let meta_crc = word(8)?;
    let body_len = u64::from_le_bytes(t.get(12..20)?.try_into().ok()?);
    if t.get(20..28)? != MAGIC || meta_len > MAX_META {
        return None;
    }
    if body_len
        .checked_add(meta_len as u64)?
        .checked_add(TRAILER as u64)?
        != file_len
    {
        return None;
    }
    f.seek(SeekFrom::Start(body_len)).ok()?;
    let mut meta = vec![0u8; meta_len];
    f.read_exact(&mut meta).ok()?;
    if crc32fast::hash(&meta) != meta_crc {
        return None;
    }
    Entry::decode_meta(&meta, body_len, body_crc)
}

/// Reads the first `len` bytes of `path` and checks them against `crc`.
/// Blocking.
pub(crate) fn read_body(path: &Path, len: u64, crc: u32) -> io::Result<Vec<u8>> {
    let f = fs::File::open(path)?;
    let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    f.take(len).read_to_end(&mut buf)?;
    if buf.len() as u64 != len || crc32fast::hash(&buf) != crc {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "cache body checksum mismatch",
        ));
    }
    Ok(buf)
}

/// Opens `path` and checks its first `len` bytes against `crc` without
/// keeping them; returns the file rewound, so the body streamed afterwards is
/// the one checked even if a newer fill renames another file into place.
/// Blocking.
pub(crate) fn open_verified(path: &Path, len: u64, crc: u32) -> io::Result<fs::File> {
    let mut file = fs::File::open(path)?;
    let mut h = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut seen = 0u64;
    {
        let mut f = (&mut file).take(len);
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            seen += n as u64;
            h.update(buf.get(..n).unwrap_or_default());
        }
    }
    if seen != len || h.finalize() != crc {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "cache body checksum mismatch",
        ));
    }
    file.seek(SeekFrom::Start(0))?;
    Ok(file)
}
