//! Local sinks: JSON lines to a size-rotated file, or to standard output.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, IoSlice, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Chunk, Intake};
use crate::metrics::Metrics;

/// Bytes a local sink gathers before it writes. The dispatcher hands over a
/// chunk about every millisecond (tens of KiB under load); appending them to
/// the page cache a quarter of a MiB at a time lets the kernel use large
/// folios. On ext4 (Linux 6.18) appends that size took 0.36 s of system time
/// per GiB against 0.6–0.7 s in 16–40 KiB appends; in a node under load the
/// drain's write path cost about an eighth less (docs/benchmarks.md,
/// session 15).
const GATHER_BYTES: usize = 256 * 1024;

/// The longest a gathered line waits for more before it is written anyway.
const GATHER_WAIT: Duration = Duration::from_millis(20);

/// Most chunks in one write (one `writev`, well under `IOV_MAX`).
const GATHER_CHUNKS: usize = 256;

/// Space a log file is given ahead of its writes, in one `fallocate` (the
/// file's size unchanged). Appending into blocks the file already has
/// spares ext4 its per-page delayed-allocation work (reservations, the
/// extent status tree): on this project's machine, appends of 256 KiB took
/// about a fifth less system time per GiB. What is left ahead of the end is
/// given back when the file is rotated or closed.
const RESERVE_BYTES: u64 = 8 << 20;

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
/// larger than `max_bytes` gets a file of its own. Only a regular file is
/// rotated: a device or a pipe (`/dev/null`, a FIFO a collector reads) is
/// written to as it is, never renamed.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    file: Option<BufWriter<File>>,
    size: u64,
    /// Whether the open file is a regular one (and so rotates).
    regular: bool,
    /// The offset up to which the file has space reserved.
    reserved: u64,
    /// Whether the file system takes reservations (cleared when one fails).
    reserving: bool,
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
            regular: true,
            reserved: 0,
            reserving: true,
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
            let meta = f.metadata()?;
            self.regular = meta.is_file();
            self.size = if self.regular { meta.len() } else { 0 };
            if self.regular {
                // Space left reserved past the end by a node that did not
                // stop cleanly: a truncation to the size frees it. Best
                // effort (an append-only file refuses it): the log matters
                // more than the space.
                let _ = f.set_len(self.size);
            }
            self.reserved = self.size;
            let mut f = BufWriter::with_capacity(64 * 1024, f);
            // Unreadable (a write-only file): left as it is.
            let cut = self.regular
                && self.size > 0
                && !ends_with_newline(&self.path, self.size).unwrap_or(true);
            if cut {
                // A line cut short (a full disk, a crash): end it, so the
                // next line is not glued to it.
                f.write_all(b"\n")?;
                self.size += 1;
            }
            self.file = Some(f);
        }
        // Just set above when it was missing.
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("log file not open"))
    }

    /// Makes sure `len` more bytes have space reserved, reserving the next
    /// [`RESERVE_BYTES`] when they do not (never past the rotation size).
    fn reserve(&mut self, len: u64) {
        let end = self.size + len;
        if !self.regular || !self.reserving || end <= self.reserved {
            return;
        }
        let Some(f) = self.file.as_ref() else { return };
        let from = self.reserved.max(self.size);
        let upto = (from + RESERVE_BYTES).min(self.max_bytes).max(end);
        match rustix::fs::fallocate(
            f.get_ref(),
            rustix::fs::FallocateFlags::KEEP_SIZE,
            from,
            upto - from,
        ) {
            Ok(()) => self.reserved = upto,
            // Not supported here, or no space: write as before (a write
            // that finds no space reports it).
            Err(_) => self.reserving = false,
        }
    }

    /// Gives back the space reserved past the end of the file; not if the
    /// file has grown past what this drain wrote (someone else appends to
    /// it: a truncation would cut their lines).
    fn release(&mut self) -> io::Result<()> {
        if let Some(f) = self.file.as_mut() {
            f.flush()?;
            let file = f.get_ref();
            if self.regular
                && self.reserved > self.size
                && file.metadata().is_ok_and(|m| m.len() == self.size)
            {
                // Best effort, as in `open`.
                let _ = file.set_len(self.size);
            }
            self.reserved = self.size;
        }
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.release()?;
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
        if self.regular && self.size > 0 && self.size + len > self.max_bytes {
            self.rotate()?;
        }
        self.reserve(len);
        self.open()?.write_all(line)?;
        self.size += len;
        Ok(())
    }

    /// Appends chunks of complete lines: the longest run of them that fits
    /// in the live file in one `writev`, a chunk that would take it past its
    /// size line by line (rotating between them).
    fn append_chunks(&mut self, mut chunks: &[Chunk]) -> io::Result<()> {
        while let Some(first) = chunks.first() {
            self.open()?;
            let mut fit = 0;
            let mut size = 0u64;
            for c in chunks {
                let len = c.bytes.len() as u64;
                if self.regular && self.size + size + len > self.max_bytes {
                    break;
                }
                size += len;
                fit += 1;
            }
            if fit == 0 {
                for line in first.lines() {
                    self.append_line(&line)?;
                }
                chunks = &chunks[1..];
                continue;
            }
            // Straight to the file, after what the buffer holds.
            self.reserve(size);
            let f = self.open()?;
            f.flush()?;
            write_all_chunks(f.get_mut(), &chunks[..fit])?;
            self.size += size;
            chunks = &chunks[fit..];
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

impl Drop for RotatingFile {
    fn drop(&mut self) {
        // Best effort: the file is closing either way.
        let _ = self.release();
    }
}

impl LineTarget for RotatingFile {
    fn write_chunks(&mut self, chunks: &[Chunk]) -> io::Result<()> {
        self.append_chunks(chunks)?;
        self.flush()
    }
}

/// Whether the file at `path`, `size` bytes long, ends with a newline.
fn ends_with_newline(path: &Path, size: u64) -> io::Result<bool> {
    use std::os::unix::fs::FileExt;
    let mut last = [0u8; 1];
    File::open(path)?.read_exact_at(&mut last, size - 1)?;
    Ok(last[0] == b'\n')
}

/// Writes every byte of `chunks`, in order, with as few `writev` calls as
/// the writer allows (it may take part of a call's bytes).
fn write_all_chunks(w: &mut impl Write, chunks: &[Chunk]) -> io::Result<()> {
    // The next byte to write: chunk `i`, offset `at` in it.
    let (mut i, mut at) = (0, 0);
    loop {
        while chunks.get(i).is_some_and(|c| at == c.bytes.len()) {
            i += 1;
            at = 0;
        }
        let Some(c) = chunks.get(i) else {
            return Ok(());
        };
        let slices: Vec<IoSlice<'_>> = std::iter::once(&c.bytes[at..])
            .chain(chunks[i + 1..].iter().map(|c| &c.bytes[..]))
            .map(IoSlice::new)
            .collect();
        let mut n = match w.write_vectored(&slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        while let Some(c) = chunks.get(i).filter(|_| n > 0) {
            let left = c.bytes.len() - at;
            if n < left {
                at += n;
                break;
            }
            n -= left;
            i += 1;
            at = 0;
        }
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

/// How often a busy local sink looks for new lines.
const POLL_BUSY: Duration = Duration::from_millis(2);
/// How often an idle one looks (after [`IDLE_AFTER`] empty looks).
const POLL_IDLE: Duration = Duration::from_millis(20);
const IDLE_AFTER: u32 = 50;

/// The blocking loop of a local sink: gather what is queued until it holds
/// [`GATHER_BYTES`] or [`GATHER_CHUNKS`] chunks, or its first line has
/// waited [`GATHER_WAIT`], or the sink is closing; then write and flush.
/// Between looks it sleeps [`POLL_BUSY`] (or [`POLL_IDLE`] once it has been
/// idle for a while). It never parks on the channel, so the dispatcher never
/// has to wake this thread: under load a wake-up per handful of lines (a
/// futex call and a context switch on the request path's core) cost more
/// than writing them.
pub(crate) fn run_blocking<T: LineTarget>(
    mut rx: Intake,
    mut target: T,
    metrics: Arc<Metrics>,
    name: String,
) {
    let mut gathered = Gathered::default();
    let mut failing = false;
    let mut empty_looks = 0u32;
    loop {
        let closed = gathered.take(&mut rx);
        if !gathered.due(closed, Instant::now()) {
            if gathered.chunks.is_empty() {
                if closed {
                    return;
                }
                empty_looks = empty_looks.saturating_add(1);
            } else {
                empty_looks = 0;
            }
            std::thread::sleep(if empty_looks > IDLE_AFTER {
                POLL_IDLE
            } else {
                POLL_BUSY
            });
            continue;
        }
        empty_looks = 0;
        let lines = gathered.lines;
        match target.write_chunks(&gathered.chunks) {
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
        gathered.clear();
    }
}

/// Chunks taken from a local sink's intake and not written yet.
#[derive(Default)]
struct Gathered {
    chunks: Vec<Chunk>,
    bytes: usize,
    lines: usize,
    /// When the first of them was taken.
    since: Option<Instant>,
}

impl Gathered {
    fn full(&self) -> bool {
        self.bytes >= GATHER_BYTES || self.chunks.len() >= GATHER_CHUNKS
    }

    /// Takes what is queued, until full; returns whether the intake is
    /// closed and empty.
    fn take(&mut self, rx: &mut Intake) -> bool {
        while !self.full() {
            match rx.try_recv() {
                Ok(c) => {
                    self.bytes += c.bytes.len();
                    self.lines += c.lines;
                    self.chunks.push(c);
                    self.since.get_or_insert_with(Instant::now);
                }
                Err(closed) => return closed,
            }
        }
        false
    }

    /// Whether to write now.
    fn due(&self, closed: bool, now: Instant) -> bool {
        !self.chunks.is_empty()
            && (closed
                || self.full()
                || self
                    .since
                    .is_some_and(|t| now.saturating_duration_since(t) >= GATHER_WAIT))
    }

    fn clear(&mut self) {
        self.chunks.clear();
        self.bytes = 0;
        self.lines = 0;
        self.since = None;
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

    /// An append-only file (`chattr +a`, kept for audit) refuses
    /// truncation: the drain still writes to it.
    #[test]
    fn an_append_only_file_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        std::fs::write(&path, "{\"old\":1}\n").unwrap();
        let chattr = |flag: &str| {
            std::process::Command::new("chattr")
                .arg(flag)
                .arg(&path)
                .status()
                .is_ok_and(|s| s.success())
        };
        if !chattr("+a") {
            eprintln!("chattr +a is not available here: nothing to check");
            return;
        }
        let mut f = RotatingFile::new(path.clone(), 1 << 20, 2);
        let written = f.write_all_lines(&[Bytes::from_static(b"{\"new\":2}\n")]);
        drop(f);
        assert!(chattr("-a"));
        written.unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"old\":1}\n{\"new\":2}\n"
        );
    }

    /// A file whose last line was cut short gets that line ended before
    /// new lines are appended.
    #[test]
    fn a_cut_line_is_ended_before_appending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        std::fs::write(&path, "{\"whole\":1}\n{\"cut\":").unwrap();
        let mut f = RotatingFile::new(path.clone(), 1 << 20, 2);
        f.write_all_lines(&[Bytes::from_static(b"{\"next\":2}\n")])
            .unwrap();
        drop(f);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"whole\":1}\n{\"cut\":\n{\"next\":2}\n"
        );
        // A whole file is appended to as it is.
        let mut g = RotatingFile::new(path.clone(), 1 << 20, 2);
        g.write_all_lines(&[Bytes::from_static(b"{}\n")]).unwrap();
        drop(g);
        assert!(std::fs::read_to_string(&path)
            .unwrap()
            .ends_with("{\"next\":2}\n{}\n"));
    }

    /// Space is reserved ahead of the writes and given back at rotation
    /// and close: no file keeps more blocks than its lines need.
    #[test]
    fn reserved_space_is_given_back() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let allocated = |p: &Path| std::fs::metadata(p).unwrap().blocks() * 512;
        // Ten lines fit in the 1 MiB limit, 48,576 bytes short of it: the
        // reservation (up to the limit) outgrows a full file by 11 blocks.
        let line = Bytes::from(format!("{}\n", "x".repeat(99_999)));
        let mut f = RotatingFile::new(path.clone(), 1 << 20, 2);
        f.write_all_lines(std::slice::from_ref(&line)).unwrap();
        let live = std::fs::metadata(&path).unwrap().len();
        assert_eq!(live, 100_000);
        if f.reserving {
            // Reserved up to the rotation size, the file's size unchanged.
            assert!(allocated(&path) >= 1 << 20, "{}", allocated(&path));
        }
        for _ in 0..11 {
            f.write_all_lines(std::slice::from_ref(&line)).unwrap();
        }
        let rotated = f.rotated(1);
        let full = std::fs::metadata(&rotated).unwrap().len();
        assert_eq!(full, 10 * 100_000);
        // Given back at rotation: a block of slack at most.
        assert!(
            allocated(&rotated) <= full + 4096,
            "{}",
            allocated(&rotated)
        );
        drop(f);
        let live = std::fs::metadata(&path).unwrap().len();
        assert_eq!(live, 2 * 100_000);
        assert!(allocated(&path) <= live + 4096, "{}", allocated(&path));
        // A node that stopped without giving it back: the next one does.
        {
            let file = OpenOptions::new().append(true).open(&path).unwrap();
            let _ =
                rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::KEEP_SIZE, live, 1 << 20);
        }
        let mut again = RotatingFile::new(path.clone(), 1 << 20, 2);
        again.open().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), live);
        assert!(allocated(&path) <= live + 4096, "{}", allocated(&path));
        // Lines another writer appended are never cut off.
        again.write_all_lines(std::slice::from_ref(&line)).unwrap();
        let mut other = OpenOptions::new().append(true).open(&path).unwrap();
        other.write_all(&line).unwrap();
        drop(again);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), live + 200_000);
    }

    /// A drain to a pipe or a device (`/dev/null`) writes through it and
    /// never renames it, however much goes through.
    #[test]
    fn a_fifo_is_written_through_never_rotated() {
        use std::os::unix::fs::FileTypeExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("collector.fifo");
        let made = std::process::Command::new("mkfifo").arg(&path).status();
        assert!(made.is_ok_and(|s| s.success()), "mkfifo failed");
        let reader = {
            let path = path.clone();
            std::thread::spawn(move || std::fs::read(path).unwrap())
        };
        let line = Bytes::from(format!("{}\n", "x".repeat(39)));
        let mut f = RotatingFile::new(path.clone(), 100, 2);
        for _ in 0..5 {
            f.write_all_lines(std::slice::from_ref(&line)).unwrap();
        }
        let chunk = Chunk {
            bytes: Bytes::from(line.repeat(4)),
            lines: 4,
        };
        f.write_chunks(&[chunk]).unwrap();
        drop(f);
        assert_eq!(reader.join().unwrap(), line.repeat(9));
        assert!(std::fs::metadata(&path).unwrap().file_type().is_fifo());
        assert!(!dir.path().join("collector.fifo.1").exists());
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

        // Chunks of any size, after lines written one by one: the order of
        // lines is kept.
        let path = dir.path().join("big.log");
        let mut f = RotatingFile::new(path.clone(), 1 << 30, 3);
        f.write_all_lines(&[Bytes::from_static(b"first\n")])
            .unwrap();
        let big = 500;
        let chunks = [
            chunk(2, 'c'),
            chunk(big, 'd'),
            chunk(1, 'e'),
            chunk(big, 'f'),
        ];
        f.write_chunks(&chunks).unwrap();
        let mut want = b"first\n".to_vec();
        want.extend(chunks.iter().flat_map(|c| c.bytes.to_vec()));
        assert_eq!(std::fs::read(&path).unwrap(), want);
    }

    /// A chunk that crosses the size limit goes line by line through the
    /// file's buffer; the chunks after it in the same call go straight to
    /// the file, so the buffer must be flushed first.
    #[test]
    fn lines_written_one_by_one_stay_before_the_chunks_that_follow_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let mut f = RotatingFile::new(path.clone(), 100, 3);
        let chunk = |n: usize, c: char| Chunk {
            bytes: Bytes::from(format!("{}\n", c.to_string().repeat(19)).repeat(n)),
            lines: n,
        };
        f.write_chunks(&[chunk(4, 'a')]).unwrap();
        // 'b' crosses 100 bytes (one line fills the file, one starts the
        // next); 'c' then fits after it in the new file.
        f.write_chunks(&[chunk(2, 'b'), chunk(2, 'c')]).unwrap();
        let live = String::from_utf8(std::fs::read(&path).unwrap()).unwrap();
        let want = format!(
            "{}\n{}\n{}\n",
            "b".repeat(19),
            "c".repeat(19),
            "c".repeat(19)
        );
        assert_eq!(live, want);
    }

    /// A writer that takes at most 7 bytes a call and refuses every third
    /// call with `Interrupted`, as a signal may.
    struct Trickle {
        out: Vec<u8>,
        calls: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.calls += 1;
            if self.calls % 3 == 0 {
                return Err(io::ErrorKind::Interrupted.into());
            }
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(7 - n);
                self.out.extend_from_slice(&b[..take]);
                n += take;
                if n == 7 {
                    break;
                }
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn chunks_are_written_whole_and_in_order_across_partial_writes() {
        let chunk = |s: &str| Chunk {
            bytes: Bytes::from(s.to_owned()),
            lines: s.matches('\n').count(),
        };
        let chunks = [
            chunk("a\n"),
            chunk(""),
            chunk("bbbbbbbbbbbbbbbbbbbb\ncc\n"),
            chunk("d\n"),
            chunk(""),
        ];
        let mut w = Trickle {
            out: Vec::new(),
            calls: 0,
        };
        write_all_chunks(&mut w, &chunks).unwrap();
        assert_eq!(w.out, b"a\nbbbbbbbbbbbbbbbbbbbb\ncc\nd\n");
        // 28 bytes, 7 a call, with a refused call after every two.
        assert!(w.calls >= 5 && w.calls <= 8, "{} calls", w.calls);
        write_all_chunks(&mut w, &[]).unwrap();
        write_all_chunks(&mut w, &[chunk("")]).unwrap();
        assert_eq!(w.out.len(), 28);
    }

    #[test]
    fn gathered_lines_are_written_when_full_waited_long_enough_or_closing() {
        let t0 = Instant::now();
        let mut g = Gathered::default();
        assert!(!g.due(true, t0), "nothing to write");
        g.chunks.push(Chunk {
            bytes: Bytes::from_static(b"x\n"),
            lines: 1,
        });
        g.bytes = 2;
        g.since = Some(t0);
        assert!(!g.due(false, t0));
        assert!(!g.due(false, t0 + GATHER_WAIT - Duration::from_millis(1)));
        assert!(g.due(false, t0 + GATHER_WAIT));
        assert!(g.due(true, t0), "closing writes what is left");
        g.bytes = GATHER_BYTES;
        assert!(g.due(false, t0));
        g.clear();
        assert!(g.chunks.is_empty() && g.bytes == 0 && g.lines == 0 && g.since.is_none());
    }

    /// Records what each write was given.
    struct Recorder(Arc<std::sync::Mutex<Vec<Vec<u8>>>>);

    impl LineTarget for Recorder {
        fn write_chunks(&mut self, chunks: &[Chunk]) -> io::Result<()> {
            let all = chunks.iter().flat_map(|c| c.bytes.to_vec()).collect();
            self.0.lock().unwrap().push(all);
            Ok(())
        }
    }

    #[test]
    fn the_sink_gathers_chunks_into_large_writes_and_writes_the_rest_without_closing() {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let pending = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let rx = Intake {
            rx,
            pending: pending.clone(),
        };
        // Five dispatcher batches of 64 KiB each, queued before the sink
        // looks: one write, not five.
        let line = format!("{}\n", "z".repeat(1023));
        let batch = Chunk {
            bytes: Bytes::from(line.repeat(64)),
            lines: 64,
        };
        for _ in 0..5 {
            tx.send(batch.clone()).unwrap();
        }
        let writes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let metrics = Arc::new(Metrics::default());
        let sink = {
            let (writes, metrics) = (writes.clone(), metrics.clone());
            std::thread::spawn(move || run_blocking(rx, Recorder(writes), metrics, "test".into()))
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let count = |w: &Arc<std::sync::Mutex<Vec<Vec<u8>>>>| w.lock().unwrap().len();
        while count(&writes) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        {
            let w = writes.lock().unwrap();
            assert!(!w.is_empty(), "nothing written");
            assert!(
                w[0].len() >= GATHER_BYTES,
                "first write {} bytes",
                w[0].len()
            );
        }
        // One more line, and the sink stays open: written after its wait.
        tx.send(Chunk {
            bytes: Bytes::from_static(b"last\n"),
            lines: 1,
        })
        .unwrap();
        while writes.lock().unwrap().concat().len() < 5 * batch.bytes.len() + 5
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        let all = writes.lock().unwrap().concat();
        assert_eq!(all.len(), 5 * batch.bytes.len() + 5);
        assert!(all.ends_with(b"z\nlast\n"));
        assert_eq!(metrics.sink_written.load(Relaxed), 5 * 64 + 1);
        drop(tx);
        sink.join().unwrap();
    }
}
