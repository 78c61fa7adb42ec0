//! Local sinks: JSON lines to a size-rotated file, or to standard output.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::{Chunk, Intake};
use crate::metrics::Metrics;

/// Lines written per write-and-flush (at least: chunks are not split).
const BATCH: usize = 1024;

/// Chunks at least this large skip the file's buffer (a copy saved).
const DIRECT: usize = 8 * 1024;

/// Somewhere lines can be written synchronously.
pub(crate) trait LineTarget: Send + 'static {
    /// Writes chunks of complete lines, then flushes.
    fn write_chunks(&mut self, chunks: &[Chunk]) -> io::Result<()>;
}

/// Standard output.
pub(crate) struct Stdout;

impl LineTarget for Stdout {
    fn write_chunks(&mut self, chunks: &[Chunk]) -> io::Result<()> {
        let mut out = io::stdout().lock();
        for c in chunks {
            out.write_all(&c.bytes)?;
        }
        out.flush()
    }
}

/// A file rotated by size: when the next line would take `path` past
/// `max_bytes`, `path.{keep-1}` → `path.{keep}` … `path` → `path.1`, and a
/// new `path` is started. A line is never split across files; a single line
/// larger than `max_bytes` gets a file of its own.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    file: Option<BufWriter<File>>,
    size: u64,
}

impl RotatingFile {
    /// A rotating file at `path` (opened on first write; appends to what is
    /// there).
    pub fn new(path: PathBuf, max_bytes: u64, keep: usize) -> Self {
        Self {
            path,
            max_bytes: max_bytes.max(1),
            keep: keep.max(1),
            file: None,
            size: 0,
        }
    }

    fn rotated(&self, i: usize) -> PathBuf {
        let mut s = self.path.clone().into_os_string();
        s.push(format!(".{i}"));
        PathBuf::from(s)
    }

    fn open(&mut self) -> io::Result<&mut BufWriter<File>> {
        if self.file.is_none() {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            self.size = f.metadata()?.len();
            self.file = Some(BufWriter::with_capacity(64 * 1024, f));
        }
        // Just set above when it was missing.
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("log file not open"))
    }

    fn rotate(&mut self) -> io::Result<()> {
        if let Some(mut f) = self.file.take() {
            f.flush()?;
        }
        remove_if_exists(&self.rotated(self.keep))?;
        for i in (1..self.keep).rev() {
            rename_if_exists(&self.rotated(i), &self.rotated(i + 1))?;
        }
        rename_if_exists(&self.path, &self.rotated(1))?;
        self.size = 0;
        Ok(())
    }

    /// Appends lines, rotating as needed, then flushes.
    #[cfg(test)]
    fn write_all_lines(&mut self, lines: &[bytes::Bytes]) -> io::Result<()> {
        for line in lines {
            self.append_line(line)?;
        }
        self.flush()
    }

    fn append_line(&mut self, line: &[u8]) -> io::Result<()> {
        self.open()?;
        let len = line.len() as u64;
        if self.size > 0 && self.size + len > self.max_bytes {
            self.rotate()?;
        }
        self.open()?.write_all(line)?;
        self.size += len;
        Ok(())
    }

    /// Appends a chunk of complete lines: in one write when it fits in the
    /// live file, line by line (rotating between them) when it does not.
    fn append_chunk(&mut self, chunk: &Chunk) -> io::Result<()> {
        self.open()?;
        if self.size + chunk.bytes.len() as u64 <= self.max_bytes {
            let f = self.open()?;
            if chunk.bytes.len() >= DIRECT {
                // Large: straight to the file, not through the buffer.
                f.flush()?;
                f.get_mut().write_all(&chunk.bytes)?;
            } else {
                f.write_all(&chunk.bytes)?;
            }
            self.size += chunk.bytes.len() as u64;
            return Ok(());
        }
        for line in chunk.lines() {
            self.append_line(&line)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl LineTarget for RotatingFile {
    fn write_chunks(&mut self, chunks: &[Chunk]) -> io::Result<()> {
        for c in chunks {
            self.append_chunk(c)?;
        }
        self.flush()
    }
}

fn remove_if_exists(p: &Path) -> io::Result<()> {
    match std::fs::remove_file(p) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn rename_if_exists(from: &Path, to: &Path) -> io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// How often a busy local sink looks for new lines when it found none:
/// often enough that the lines it writes are still in the cache.
const POLL_BUSY: std::time::Duration = std::time::Duration::from_millis(2);
/// How often an idle one looks (after [`IDLE_AFTER`] empty looks).
const POLL_IDLE: std::time::Duration = std::time::Duration::from_millis(20);
const IDLE_AFTER: u32 = 50;

/// The blocking loop of a local sink: take what is queued (up to [`BATCH`]),
/// write and flush; when nothing is queued, sleep [`POLL_BUSY`] (or
/// [`POLL_IDLE`] once it has been idle for a while). It never
/// parks on the channel, so the dispatcher never has to wake this thread:
/// under load a wake-up per handful of lines (a futex call and a context
/// switch on the request path's core) cost more than writing them.
pub(crate) fn run_blocking<T: LineTarget>(
    mut rx: Intake,
    mut target: T,
    metrics: Arc<Metrics>,
    name: String,
) {
    let mut chunks = Vec::new();
    let mut failing = false;
    let mut empty_looks = 0u32;
    loop {
        let mut closed = false;
        let mut lines = 0;
        while lines < BATCH {
            match rx.try_recv() {
                Ok(c) => {
                    lines += c.lines;
                    chunks.push(c);
                }
                Err(gone) => {
                    closed = gone;
                    break;
                }
            }
        }
        if chunks.is_empty() {
            if closed {
                return;
            }
            empty_looks = empty_looks.saturating_add(1);
            std::thread::sleep(if empty_looks > IDLE_AFTER {
                POLL_IDLE
            } else {
                POLL_BUSY
            });
            continue;
        }
        empty_looks = 0;
        match target.write_chunks(&chunks) {
            Ok(()) => {
                metrics.sink_written.fetch_add(lines as u64, Relaxed);
                if failing {
                    tracing::info!(drain = %name, "log sink writes again");
                    failing = false;
                }
            }
            Err(e) => {
                metrics.sink_dropped.fetch_add(lines as u64, Relaxed);
                metrics.sink_failed_batches.fetch_add(1, Relaxed);
                if !failing {
                    tracing::warn!(drain = %name, error = %e, "log sink cannot write; dropping lines until it can");
                    failing = true;
                }
            }
        }
        chunks.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn rotates_by_size_keeping_n_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/access.log");
        let mut f = RotatingFile::new(path.clone(), 100, 2);
        let line = Bytes::from(format!("{}\n", "x".repeat(39))); // 40 bytes
                                                                 // 2 lines fit in 100 bytes, the 3rd rotates.
        for i in 0..7 {
            f.write_all_lines(std::slice::from_ref(&line)).unwrap();
            let live = std::fs::metadata(&path).unwrap().len();
            assert!(live <= 100, "after {i}: {live}");
        }
        // 7 lines: live has 1, .1 has 2, .2 has 2, the oldest 2 are gone.
        let len = |p: &Path| std::fs::read(p).map(|b| b.len()).unwrap_or(0);
        assert_eq!(len(&path), 40);
        assert_eq!(len(&f.rotated(1)), 80);
        assert_eq!(len(&f.rotated(2)), 80);
        assert!(!f.rotated(3).exists());
        // A line larger than the limit gets a file of its own, unsplit.
        let big = Bytes::from(format!("{}\n", "y".repeat(299)));
        f.write_all_lines(&[big.clone(), line.clone()]).unwrap();
        assert_eq!(std::fs::read(f.rotated(1)).unwrap(), big);
        assert_eq!(len(&path), 40);
        // Reopening appends to what is there.
        let mut again = RotatingFile::new(path.clone(), 100, 2);
        again.write_all_lines(&[line]).unwrap();
        assert_eq!(len(&path), 80);
    }

    #[test]
    fn a_chunk_is_written_whole_or_split_at_lines_when_it_crosses_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let mut f = RotatingFile::new(path.clone(), 100, 3);
        let chunk = |n: usize, c: char| Chunk {
            bytes: Bytes::from(format!("{}\n", c.to_string().repeat(19)).repeat(n)),
            lines: n,
        };
        // 4 lines of 20 bytes fit: one write, no rotation.
        f.write_chunks(&[chunk(4, 'a')]).unwrap();
        assert_eq!(std::fs::read(&path).unwrap().len(), 80);
        assert!(!f.rotated(1).exists());
        // 3 more cross 100 bytes: the first fills the file, the other two
        // start a new one; no line is split.
        f.write_chunks(&[chunk(3, 'b')]).unwrap();
        let old = String::from_utf8(std::fs::read(f.rotated(1)).unwrap()).unwrap();
        let live = String::from_utf8(std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(old.len(), 100);
        assert!(old.ends_with(&format!("{}\n", "b".repeat(19))));
        assert_eq!(live, format!("{}\n", "b".repeat(19)).repeat(2));
        assert!(old.lines().chain(live.lines()).all(|l| l.len() == 19));

        // Small chunks go through the buffer, large ones straight to the
        // file: the order of lines is kept either way.
        let path = dir.path().join("big.log");
        let mut f = RotatingFile::new(path.clone(), 1 << 30, 3);
        let big = DIRECT / 20 + 1;
        let chunks = [
            chunk(2, 'c'),
            chunk(big, 'd'),
            chunk(1, 'e'),
            chunk(big, 'f'),
        ];
        f.write_chunks(&chunks).unwrap();
        let want: Vec<u8> = chunks.iter().flat_map(|c| c.bytes.to_vec()).collect();
        assert_eq!(std::fs::read(&path).unwrap(), want);
    }
}
