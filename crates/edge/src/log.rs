//! Phase 10 (log): one access record per request. The record is started when
//! the response head is ready (time to first byte) and finished when the body
//! is done or dropped (duration, bytes sent, a client that left), then handed
//! to telemetry's bounded queue, which never makes a request wait.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use ledge_telemetry::{AccessRecord, ErrorClass, Telemetry};

use crate::body::Body;

/// The wall-clock time of `at`, from a per-thread pair of readings of both
/// clocks taken at most a second before `at` (or else at most a second
/// before `now`, refreshed if need be). It saves reading the wall clock for
/// every request: the clocks drift apart by far less than the record's
/// millisecond precision within a second.
pub(crate) fn wall_clock(at: Instant, now: Instant) -> SystemTime {
    use std::cell::Cell;
    thread_local! {
        static ANCHOR: Cell<Option<(Instant, SystemTime)>> = const { Cell::new(None) };
    }
    let anchor = ANCHOR.with(Cell::get);
    if let Some((mono, wall)) = anchor {
        // The common case, one subtraction: `at` a little after a fresh
        // anchor (`now` is at or after `at`, so the anchor is fresh for
        // `now` too, give or take the request's own duration).
        if let Some(after) = at.checked_duration_since(mono) {
            if after < Duration::from_secs(1) {
                return wall.checked_add(after).unwrap_or(wall);
            }
        }
    }
    let (mono, wall) = ANCHOR.with(|a| match a.get() {
        Some((mono, wall)) if now.saturating_duration_since(mono) < Duration::from_secs(1) => {
            (mono, wall)
        }
        _ => {
            let fresh = (now, SystemTime::now());
            a.set(Some(fresh));
            fresh
        }
    });
    // Checked: a clock far out of range gives the anchor's time, not a
    // panic on the request path.
    match at.checked_duration_since(mono) {
        Some(after) => wall.checked_add(after),
        None => wall.checked_sub(mono.saturating_duration_since(at)),
    }
    .unwrap_or(wall)
}

/// A response body that finishes its access record when it ends.
pub struct Logged {
    inner: Body,
    record: Option<Box<AccessRecord>>,
    start: Instant,
    bytes: u64,
    /// The body's length when known (`Content-Length`): hyper stops polling
    /// once it has written that many bytes, so the end may never be seen.
    expected: Option<u64>,
    finished: bool,
    sink: Telemetry,
}

impl Logged {
    /// Wraps `inner`; the record is sent once the body is done or dropped.
    pub fn new(
        inner: Body,
        record: Box<AccessRecord>,
        start: Instant,
        sink: Telemetry,
        expected: Option<u64>,
    ) -> Self {
        Self {
            expected: expected.or_else(|| http_body::Body::size_hint(&inner).exact()),
            inner,
            record: Some(record),
            start,
            bytes: 0,
            finished: false,
            sink,
        }
    }

    fn finish(&mut self) {
        let Some(mut record) = self.record.take() else {
            return;
        };
        record.duration = self.start.elapsed();
        record.response_size = self.bytes;
        let complete = self.finished
            || http_body::Body::is_end_stream(&self.inner)
            || self.expected.is_some_and(|n| self.bytes >= n);
        if !complete && record.error_class.is_none() {
            record.error_class = Some(ErrorClass::ClientClosed);
        }
        self.sink.record_access(record);
    }
}

impl Logged {
    /// The body this one wraps.
    pub(crate) fn inner(&self) -> &Body {
        &self.inner
    }

    /// The file behind the body, when it is one the connection may
    /// `sendfile`.
    pub(crate) fn file_body(&self) -> Option<&crate::body::FileBody> {
        match &self.inner {
            Body::File(f) => Some(f),
            _ => None,
        }
    }

    /// Records that the connection sent the whole body itself, `n` bytes.
    pub(crate) fn sent_whole(&mut self, n: u64) {
        self.bytes += n;
        self.finished = true;
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        self.finish();
    }
}

impl http_body::Body for Logged {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.bytes += d.len() as u64;
                }
            }
            Poll::Ready(None) => this.finished = true,
            Poll::Ready(Some(Err(_))) => {
                if let Some(r) = this.record.as_mut() {
                    r.error_class.get_or_insert(ErrorClass::UpstreamError);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_clock_matches_the_system_clock() {
        let start = Instant::now();
        let wall = SystemTime::now();
        std::thread::sleep(Duration::from_millis(5));
        let now = Instant::now();
        // The request's start (before the anchor) and the present.
        for at in [start, now] {
            let got = wall_clock(at, now);
            let want = wall + at.duration_since(start);
            let diff = got.duration_since(want).unwrap_or_else(|e| e.duration());
            assert!(diff < Duration::from_millis(2), "{diff:?}");
        }
    }
}
