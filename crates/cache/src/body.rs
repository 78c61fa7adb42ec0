//! The body type the cache hands to the pipeline.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use std::sync::Arc;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// A boxed origin body with its errors as `io::Error`.
pub(crate) type BoxedBody = Pin<Box<dyn http_body::Body<Data = Bytes, Error = io::Error> + Send>>;

/// A response body from the cache: a stored buffer, a stream fed by a fill or
/// a disk read, or the origin's body passed through.
pub enum CacheBody {
    /// No body.
    Empty,
    /// One buffer (memory-tier hits).
    Full(Option<Bytes>),
    /// Chunks from a task (a fill teeing into the cache, a disk read).
    Channel {
        /// Chunks, or the error that ended the stream.
        rx: mpsc::UnboundedReceiver<Chunk>,
        /// Exact length when known.
        len: Option<u64>,
    },
    /// The origin's body, untouched (responses not stored).
    Origin(BoxedBody),
}

impl std::fmt::Debug for CacheBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CacheBody::Empty => f.write_str("CacheBody::Empty"),
            CacheBody::Full(b) => {
                write!(f, "CacheBody::Full({:?} bytes)", b.as_ref().map(Bytes::len))
            }
            CacheBody::Channel { len, .. } => write!(f, "CacheBody::Channel({len:?})"),
            CacheBody::Origin(_) => f.write_str("CacheBody::Origin"),
        }
    }
}

impl CacheBody {
    /// A body of `bytes`.
    pub fn full(bytes: Bytes) -> Self {
        if bytes.is_empty() {
            CacheBody::Empty
        } else {
            CacheBody::Full(Some(bytes))
        }
    }
}

impl http_body::Body for CacheBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            CacheBody::Empty => Poll::Ready(None),
            CacheBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            CacheBody::Channel { rx, .. } => match rx.poll_recv(cx) {
                // The chunk's permit is released here: the producer may run
                // ahead again.
                Poll::Ready(Some(Chunk { data: Ok(b), .. })) => {
                    Poll::Ready(Some(Ok(Frame::data(b))))
                }
                Poll::Ready(Some(Chunk { data: Err(e), .. })) => Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
            CacheBody::Origin(b) => b.as_mut().poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            CacheBody::Empty => true,
            CacheBody::Full(b) => b.is_none(),
            CacheBody::Channel { .. } => false,
            CacheBody::Origin(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            CacheBody::Empty | CacheBody::Full(None) => SizeHint::with_exact(0),
            CacheBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            CacheBody::Channel { len: Some(n), .. } => SizeHint::with_exact(*n),
            CacheBody::Channel { len: None, .. } => SizeHint::default(),
            CacheBody::Origin(b) => b.size_hint(),
        }
    }
}

/// An origin body with its error type mapped to `io::Error`.
pub(crate) struct MapErr<B> {
    inner: Pin<Box<B>>,
}

impl<B> MapErr<B> {
    pub(crate) fn new(inner: B) -> Self {
        Self {
            inner: Box::pin(inner),
        }
    }
}

impl<B> http_body::Body for MapErr<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut().inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(io::Error::other(e.into())))),
            Poll::Ready(Some(Ok(f))) => Poll::Ready(Some(Ok(f))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// One chunk on its way to a client, holding its share of the lag budget.
pub struct Chunk {
    data: io::Result<Bytes>,
    _permit: Option<OwnedSemaphorePermit>,
}

/// The producing side of [`CacheBody::Channel`]: a producer may run ahead of
/// its client by at most `budget` bytes; past that, `send` waits. So a fill
/// is not slowed by a slow client until the client lags by the whole budget,
/// and memory per stream stays bounded.
pub(crate) struct ChunkSender {
    tx: mpsc::UnboundedSender<Chunk>,
    lag: Arc<Semaphore>,
    budget: usize,
}

impl ChunkSender {
    /// A sender and the body that receives from it.
    pub(crate) fn new(budget: usize, len: Option<u64>) -> (Self, CacheBody) {
        let budget = budget.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Self {
                tx,
                lag: Arc::new(Semaphore::new(budget)),
                budget,
            },
            CacheBody::Channel { rx, len },
        )
    }

    /// True when sending `n` bytes now would wait for the client.
    pub(crate) fn would_wait(&self, n: usize) -> bool {
        self.lag.available_permits() < n.min(self.budget)
    }

    /// Sends a chunk (or the error ending the stream), waiting while the
    /// client lags by the whole budget. False when the client is gone.
    pub(crate) async fn send(&self, data: io::Result<Bytes>) -> bool {
        let want = match &data {
            Ok(b) => b.len().min(self.budget),
            Err(_) => 0,
        };
        let permit = if want == 0 {
            None
        } else {
            let n = u32::try_from(want).unwrap_or(u32::MAX);
            // Never stuck after the client leaves: dropping the receiver
            // drops the queued chunks and so their permits.
            match self.lag.clone().acquire_many_owned(n).await {
                Ok(p) => Some(p),
                Err(_) => return false,
            }
        };
        self.tx
            .send(Chunk {
                data,
                _permit: permit,
            })
            .is_ok()
    }
}
