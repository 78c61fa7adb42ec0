//! CPU time of the current thread: what the per-invocation budget counts, so
//! that time the thread spends preempted on a busy node is not charged to the
//! tenant (and I/O waits never are: no JS runs then).

#![allow(unsafe_code)]

use std::cell::Cell;
use std::time::{Duration, Instant};

thread_local! {
    /// The calling thread's last reading of its CPU clock, and when it was
    /// taken.
    static LAST: Cell<Option<(u64, Instant)>> = const { Cell::new(None) };
}

/// A reading of the calling thread's CPU clock that is not later than the
/// clock at `now` (the caller's reading of the monotonic clock): the last one
/// taken on this thread if it was younger than `fresh` then, else a new
/// one. Reading the CPU clock is a system call (0.7 µs here); a segment of
/// tenant code that starts from an older reading is charged the thread's
/// CPU time since then, at most `fresh` more.
pub(crate) fn thread_cpu_ns_at_most(fresh: Duration, now: Instant) -> Option<u64> {
    match LAST.get() {
        Some((ns, at)) if now.saturating_duration_since(at) < fresh => Some(ns),
        _ => thread_cpu_ns(),
    }
}

/// Nanoseconds of CPU time used by the calling thread, or `None` if the
/// clock is unavailable.
pub(crate) fn thread_cpu_ns() -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` writes one `timespec` through the pointer, which
    // points to a live, properly aligned local; the result is checked.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return None;
    }
    let secs = u64::try_from(ts.tv_sec).ok()?;
    let nanos = u64::try_from(ts.tv_nsec).ok()?;
    let ns = secs.saturating_mul(1_000_000_000).saturating_add(nanos);
    LAST.set(Some((ns, Instant::now())));
    Some(ns)
}

#[cfg(test)]
mod tests {
    #[test]
    fn advances_with_work() {
        let a = super::thread_cpu_ns().unwrap_or(0);
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let b = super::thread_cpu_ns().unwrap_or(0);
        assert!(b > a);
    }

    #[test]
    fn a_recent_reading_is_reused_and_never_ahead() {
        use std::time::Duration;
        let a = super::thread_cpu_ns().unwrap_or(0);
        // Young enough: the same reading, no new one.
        assert_eq!(
            super::thread_cpu_ns_at_most(Duration::from_secs(3600), std::time::Instant::now()),
            Some(a)
        );
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        // Too old: a new reading, later than the first.
        let b =
            super::thread_cpu_ns_at_most(Duration::ZERO, std::time::Instant::now()).unwrap_or(0);
        assert!(b > a);
        // Each thread has its own.
        let other = std::thread::spawn(|| {
            super::thread_cpu_ns_at_most(Duration::from_secs(3600), std::time::Instant::now())
        })
        .join()
        .ok()
        .flatten()
        .unwrap_or(u64::MAX);
        assert!(other < b, "another thread's reading is its own clock's");
    }
}
