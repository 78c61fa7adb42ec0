//! h2 connection plumbing around hyper: one write per connection wake-up, and
//! stream futures that finish at once run without a task of their own.
//!
//! hyper's h2 layer flushes after every `DATA` frame whose payload it does not
//! copy, and under TLS every write is a record and a system call. With four
//! streams answered per read, that was four records and four `writev`s. Here
//! the socket side of a connection is a [`Coalesced`] buffer: hyper's writes
//! and flushes only fill it, and [`drive`] sends it once hyper's connection
//! future has done what it can in this wake-up. Its size is bounded: past
//! [`HIGH_WATER`] bytes a write first sends what is queued, and waits (the
//! usual backpressure) when the socket is full.
//!
//! [`InlineExecutor`] polls each new stream future once where hyper hands it
//! over. A stream whose answer is ready (a static file, a redirect) finishes
//! there and puts its frames in the same wake-up's write; only a stream that
//! must wait (an origin, a function) becomes a task.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes a connection may queue before a write waits for the socket.
pub(crate) const HIGH_WATER: usize = 64 * 1024;

/// The socket and the bytes queued for it, shared by hyper's side
/// ([`Coalesced`]) and the driver ([`drive`]). Both run on the connection's
/// task, so the lock is never contended.
struct Shared<S> {
    io: S,
    /// Bytes queued; `out[sent..]` is still to be written.
    out: Vec<u8>,
    sent: usize,
    /// A write error met by the driver, reported to hyper at its next call.
    failed: Option<io::ErrorKind>,
}

impl<S: AsyncWrite + Unpin> Shared<S> {
    /// Writes what is queued, then flushes the socket (TLS keeps records of
    /// its own until flushed). `Pending` once the socket is full: its waker
    /// is the connection task's.
    fn send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.out.len() {
            match Pin::new(&mut self.io).poll_write(cx, &self.out[self.sent..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.sent += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.out.clear();
        self.sent = 0;
        Pin::new(&mut self.io).poll_flush(cx)
    }
}

impl<S> Shared<S> {
    fn queued(&self) -> usize {
        self.out.len() - self.sent
    }

    fn check(&self) -> io::Result<()> {
        match self.failed {
            Some(kind) => Err(kind.into()),
            None => Ok(()),
        }
    }
}

/// The socket as hyper sees it: reads go through, writes and flushes queue.
pub(crate) struct Coalesced<S> {
    shared: Arc<Mutex<Shared<S>>>,
}

/// Sends a [`Coalesced`] socket's queue after each poll of its connection.
pub(crate) struct Sender<S> {
    shared: Arc<Mutex<Shared<S>>>,
}

/// Wraps `io` for hyper, and returns the handle that sends its queue.
pub(crate) fn coalesce<S>(io: S) -> (Coalesced<S>, Sender<S>) {
    let shared = Arc::new(Mutex::new(Shared {
        io,
        out: Vec::new(),
        sent: 0,
        failed: None,
    }));
    (
        Coalesced {
            shared: shared.clone(),
        },
        Sender { shared },
    )
}

fn lock<S>(shared: &Mutex<Shared<S>>) -> MutexGuard<'_, Shared<S>> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<S: AsyncWrite + Unpin> Sender<S> {
    /// Sends what the connection queued during this wake-up. A failure is
    /// kept for hyper's next read or write, and the connection is woken to
    /// see it.
    fn after_poll(&self, cx: &mut Context<'_>) {
        let mut shared = lock(&self.shared);
        if shared.queued() == 0 || shared.failed.is_some() {
            return;
        }
        if let Poll::Ready(Err(e)) = shared.send(cx) {
            shared.failed = Some(e.kind());
            cx.waker().wake_by_ref();
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Coalesced<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut shared = lock(&self.shared);
        shared.check()?;
        Pin::new(&mut shared.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> Coalesced<S> {
    /// Makes room for more bytes: below the high-water mark there is room;
    /// above it, what is queued goes to the socket first.
    fn room(shared: &mut Shared<S>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        shared.check()?;
        if shared.queued() >= HIGH_WATER {
            match shared.send(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => {
                    shared.failed = Some(e.kind());
                    return Poll::Ready(Err(e));
                }
                // Still room for this write if the socket took some.
                Poll::Pending if shared.queued() < HIGH_WATER => {}
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalesced<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut shared = lock(&self.shared);
        std::task::ready!(Self::room(&mut shared, cx))?;
        shared.out.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut shared = lock(&self.shared);
        std::task::ready!(Self::room(&mut shared, cx))?;
        let mut n = 0;
        for b in bufs {
            shared.out.extend_from_slice(b);
            n += b.len();
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    /// Deferred: [`drive`] sends the queue once the connection's poll ends,
    /// which is never later than hyper's next wait.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        lock(&self.shared).check()?;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut shared = lock(&self.shared);
        shared.check()?;
        std::task::ready!(shared.send(cx))?;
        Pin::new(&mut shared.io).poll_shutdown(cx)
    }
}

/// Whether a connection started a request lately: marked by its service
/// for every request, looked at (and cleared) by [`drive`]'s idle check.
/// Requests, not bytes: hyper's keep-alive PINGs (every 30 s, idle or not)
/// would otherwise keep an idle connection forever.
#[derive(Clone, Debug, Default)]
pub(crate) struct Activity(Arc<AtomicBool>);

impl Activity {
    /// A request started.
    pub(crate) fn mark(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn take(&self) -> bool {
        self.0.swap(false, Ordering::Relaxed)
    }
}

/// Polls `conn` (an h2 connection over a [`Coalesced`] socket) to its end,
/// sending the socket's queue after every poll. `shutdown` (a graceful
/// `GOAWAY`: open streams finish, no new ones start) is called once, when
/// `drain` resolves or when the connection started no request for a whole
/// period of `idle` (hyper's h2 server has no idle limit of its own;
/// HTTP/1.1's is its header-read timeout).
pub(crate) fn drive<C, S, D>(
    conn: C,
    sender: Sender<S>,
    drain: D,
    (idle, activity): (Duration, Activity),
    shutdown: fn(Pin<&mut C>),
) -> Drive<C, S, D> {
    Drive {
        conn: Box::pin(conn),
        drain: Some(Box::pin(drain)),
        idle,
        idle_check: Box::pin(tokio::time::sleep(idle)),
        activity,
        sender,
        shutdown,
    }
}

/// The future [`drive`] returns.
pub(crate) struct Drive<C, S, D> {
    conn: Pin<Box<C>>,
    /// `None` once shutdown has started.
    drain: Option<Pin<Box<D>>>,
    idle: Duration,
    /// When to look at whether the connection was active.
    idle_check: Pin<Box<tokio::time::Sleep>>,
    activity: Activity,
    sender: Sender<S>,
    shutdown: fn(Pin<&mut C>),
}

impl<C, S, D: Future<Output = ()>> Drive<C, S, D> {
    /// Whether the connection should close: a drain started, or it started
    /// no request for a whole period. A request moves the next check a
    /// period on.
    fn should_close(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(drain) = &mut self.drain else {
            return false;
        };
        if drain.as_mut().poll(cx).is_ready() {
            return true;
        }
        while self.idle_check.as_mut().poll(cx).is_ready() {
            if !self.activity.take() {
                return true;
            }
            let next = tokio::time::Instant::now() + self.idle;
            self.idle_check.as_mut().reset(next);
        }
        false
    }
}

impl<C, S, D> Future for Drive<C, S, D>
where
    C: Future,
    S: AsyncWrite + Unpin,
    D: Future<Output = ()>,
{
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let this = self.get_mut();
        if this.should_close(cx) {
            this.drain = None;
            (this.shutdown)(this.conn.as_mut());
        }
        let polled = this.conn.as_mut().poll(cx);
        this.sender.after_poll(cx);
        polled
    }
}

/// hyper's executor for h2 streams: polls a new stream's future once where
/// it is handed over, and spawns it only if it has to wait.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct InlineExecutor;

impl<F> hyper::rt::Executor<F> for InlineExecutor
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, fut: F) {
        let mut fut = Box::pin(fut);
        // The first poll's waker is never woken: a future that is not done
        // registers again with its task's waker on the task's first poll.
        if fut
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_pending()
        {
            tokio::spawn(fut);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn writes_wait_for_the_driver_and_leave_in_one_piece() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let (mut io, sender) = coalesce(a);
        io.write_all(b"one ").await.unwrap();
        io.flush().await.unwrap();
        io.write_all(b"two").await.unwrap();
        // Nothing has reached the peer: flush only queues.
        let mut probe = [0u8; 16];
        let early =
            tokio::time::timeout(std::time::Duration::from_millis(50), b.read(&mut probe)).await;
        assert!(early.is_err(), "bytes left before the driver sent them");
        std::future::poll_fn(|cx| {
            sender.after_poll(cx);
            Poll::Ready(())
        })
        .await;
        let mut got = vec![0u8; 7];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(got, b"one two");
    }

    #[tokio::test]
    async fn a_full_queue_waits_for_the_socket() {
        // A pipe that holds 1 KiB: the queue fills to the high-water mark,
        // then writes wait until the reader makes room.
        let (a, mut b) = tokio::io::duplex(1024);
        let (mut io, sender) = coalesce(a);
        let chunk = vec![7u8; 8 * 1024];
        let mut accepted = 0;
        loop {
            let r =
                std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut io).poll_write(cx, &chunk)))
                    .await;
            match r {
                Poll::Ready(Ok(n)) => accepted += n,
                Poll::Ready(Err(e)) => panic!("{e}"),
                Poll::Pending => break,
            }
            assert!(
                accepted <= HIGH_WATER + chunk.len() + 1024,
                "no backpressure"
            );
        }
        assert!(accepted >= HIGH_WATER);
        // The reader drains; the driver then sends everything queued.
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            b.read_to_end(&mut all).await.map(|_| all.len())
        });
        std::future::poll_fn(|cx| {
            sender.after_poll(cx);
            if lock(&sender.shared).queued() == 0 {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
        io.shutdown().await.unwrap();
        drop(io);
        drop(sender);
        assert_eq!(reader.await.unwrap().unwrap(), accepted);
    }

    #[tokio::test]
    async fn a_send_error_reaches_the_next_write() {
        let (a, b) = tokio::io::duplex(64);
        drop(b);
        let (mut io, sender) = coalesce(a);
        io.write_all(b"lost").await.unwrap();
        std::future::poll_fn(|cx| {
            sender.after_poll(cx);
            Poll::Ready(())
        })
        .await;
        assert!(io.write_all(b"more").await.is_err());
        let mut buf = [0u8; 4];
        assert!(io.read(&mut buf).await.is_err());
    }

    #[tokio::test]
    async fn ready_streams_run_inline_and_waiting_ones_become_tasks() {
        use hyper::rt::Executor;
        use std::sync::atomic::{AtomicBool, Ordering};
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        InlineExecutor.execute(async move { d.store(true, Ordering::SeqCst) });
        assert!(
            done.load(Ordering::SeqCst),
            "a ready future was not run inline"
        );

        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (fin_tx, fin_rx) = tokio::sync::oneshot::channel::<()>();
        InlineExecutor.execute(async move {
            let _ = rx.await;
            let _ = fin_tx.send(());
        });
        tx.send(()).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), fin_rx)
            .await
            .expect("the waiting future was never polled again")
            .unwrap();
    }
}
