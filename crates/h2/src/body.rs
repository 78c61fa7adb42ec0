//! A request's body as the handler reads it: DATA frames handed over by the
//! connection, with the bytes the handler has read given back to the
//! connection so that it can reopen the peer's flow-control windows.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Frame, SizeHint};

use crate::frame::Reason;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the connection learns from its request bodies, and the waker of the
/// connection's task.
#[derive(Default)]
pub(crate) struct Returns {
    inner: Mutex<ReturnsInner>,
}

#[derive(Default)]
struct ReturnsInner {
    released: Vec<Release>,
    waker: Option<Waker>,
}

/// Bytes of one stream that its reader has consumed (or dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Release {
    pub stream: u32,
    pub bytes: usize,
    /// The reader is gone: later DATA on the stream is released on arrival.
    pub dropped: bool,
}

impl Returns {
    fn push(&self, r: Release) {
        let waker = {
            let mut g = lock(&self.inner);
            g.released.push(r);
            g.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Takes the releases so far into `into`, and registers the connection's
    /// waker for the next.
    pub(crate) fn take(&self, into: &mut Vec<Release>, waker: &Waker) {
        let mut g = lock(&self.inner);
        std::mem::swap(&mut g.released, into);
        match &g.waker {
            Some(w) if w.will_wake(waker) => {}
            _ => g.waker = Some(waker.clone()),
        }
    }
}

/// The state shared by a stream's body and the connection.
pub(crate) struct Shared {
    state: Mutex<State>,
    returns: Arc<Returns>,
    stream: u32,
}

#[derive(Default)]
struct State {
    chunks: VecDeque<Bytes>,
    trailers: Option<HeaderMap>,
    end: bool,
    reset: Option<Reason>,
    dropped: bool,
    waker: Option<Waker>,
}

impl Shared {
    pub(crate) fn new(stream: u32, returns: Arc<Returns>) -> Arc<Shared> {
        Arc::new(Shared {
            state: Mutex::new(State::default()),
            returns,
            stream,
        })
    }

    /// Hands a DATA frame's bytes to the reader; `false` when the reader is
    /// gone (the caller releases them at once).
    pub(crate) fn deliver(&self, data: Bytes) -> bool {
        let waker = {
            let mut s = lock(&self.state);
            if s.dropped {
                return false;
            }
            s.chunks.push_back(data);
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        true
    }

    /// The body ended, with or without trailers.
    pub(crate) fn finish(&self, trailers: Option<HeaderMap>) {
        self.update(|s| {
            s.end = true;
            s.trailers = trailers;
        });
    }

    /// The stream was reset: the reader gets an error after what it has.
    pub(crate) fn reset(&self, reason: Reason) {
        self.update(|s| {
            if !s.end {
                s.reset = Some(reason);
            }
        });
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        let waker = {
            let mut s = lock(&self.state);
            f(&mut s);
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// A request body read from an HTTP/2 stream.
pub struct RecvBody {
    shared: Option<Arc<Shared>>,
    content_length: Option<u64>,
}

/// Why a request body ended early: the stream was reset, by the client or
/// because the connection failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyError(pub Reason);

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the request body's stream was reset: {}", self.0)
    }
}

impl std::error::Error for BodyError {}

impl RecvBody {
    /// A body with no bytes (the request's HEADERS ended the stream).
    pub fn empty() -> RecvBody {
        RecvBody {
            shared: None,
            content_length: Some(0),
        }
    }

    pub(crate) fn streaming(shared: Arc<Shared>, content_length: Option<u64>) -> RecvBody {
        RecvBody {
            shared: Some(shared),
            content_length,
        }
    }
}

impl std::fmt::Debug for RecvBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBody")
            .field("streaming", &self.shared.is_some())
            .field("content_length", &self.content_length)
            .finish()
    }
}

impl http_body::Body for RecvBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let Some(shared) = &self.shared else {
            return Poll::Ready(None);
        };
        let mut s = lock(&shared.state);
        if let Some(chunk) = s.chunks.pop_front() {
            drop(s);
            shared.returns.push(Release {
                stream: shared.stream,
                bytes: chunk.len(),
                dropped: false,
            });
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if let Some(reason) = s.reset {
            return Poll::Ready(Some(Err(BodyError(reason))));
        }
        if s.end {
            return Poll::Ready(s.trailers.take().map(|t| Ok(Frame::trailers(t))));
        }
        match &s.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => s.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        match &self.shared {
            None => true,
            Some(shared) => {
                let s = lock(&shared.state);
                s.end && s.chunks.is_empty() && s.trailers.is_none()
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self.content_length {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

impl Drop for RecvBody {
    fn drop(&mut self) {
        let Some(shared) = self.shared.take() else {
            return;
        };
        let unread: usize = {
            let mut s = lock(&shared.state);
            s.dropped = true;
            s.waker = None;
            s.chunks.drain(..).map(|c| c.len()).sum()
        };
        shared.returns.push(Release {
            stream: shared.stream,
            bytes: unread,
            dropped: true,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn chunks_trailers_and_releases_reach_their_sides() {
        let returns = Arc::new(Returns::default());
        let shared = Shared::new(5, returns.clone());
        let mut body = RecvBody::streaming(shared.clone(), Some(5));
        assert!(shared.deliver(Bytes::from_static(b"hel")));
        assert!(shared.deliver(Bytes::from_static(b"lo")));
        let mut t = HeaderMap::new();
        t.insert("x-sum", "1".parse().unwrap());
        shared.finish(Some(t));
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "hel");
        assert!(!http_body::Body::is_end_stream(&body));
        let second = body.frame().await.unwrap().unwrap();
        assert_eq!(second.into_data().unwrap(), "lo");
        let trailers = body.frame().await.unwrap().unwrap();
        assert_eq!(trailers.into_trailers().unwrap()["x-sum"], "1");
        assert!(body.frame().await.is_none());
        let mut got = Vec::new();
        returns.take(&mut got, futures_noop_waker());
        assert_eq!(
            got,
            vec![
                Release {
                    stream: 5,
                    bytes: 3,
                    dropped: false
                },
                Release {
                    stream: 5,
                    bytes: 2,
                    dropped: false
                }
            ]
        );
    }

    #[tokio::test]
    async fn a_dropped_reader_gives_back_what_it_left_and_refuses_more() {
        let returns = Arc::new(Returns::default());
        let shared = Shared::new(7, returns.clone());
        let body = RecvBody::streaming(shared.clone(), None);
        assert!(shared.deliver(Bytes::from_static(b"abcd")));
        drop(body);
        assert!(!shared.deliver(Bytes::from_static(b"more")));
        let mut got = Vec::new();
        returns.take(&mut got, futures_noop_waker());
        assert_eq!(
            got,
            vec![Release {
                stream: 7,
                bytes: 4,
                dropped: true
            }]
        );
    }

    #[tokio::test]
    async fn a_reset_is_an_error_after_the_data_already_there() {
        let returns = Arc::new(Returns::default());
        let shared = Shared::new(9, returns);
        let mut body = RecvBody::streaming(shared.clone(), None);
        assert!(shared.deliver(Bytes::from_static(b"x")));
        shared.reset(Reason::CANCEL);
        assert_eq!(
            body.frame().await.unwrap().unwrap().into_data().unwrap(),
            "x"
        );
        assert_eq!(
            body.frame().await.unwrap().unwrap_err(),
            BodyError(Reason::CANCEL)
        );
    }

    fn futures_noop_waker() -> &'static Waker {
        Waker::noop()
    }
}
