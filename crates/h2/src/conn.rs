//! One HTTP/2 connection: the frame loop, streams, flow control.
//!
//! The connection is a single future. Each time it is polled it
//! - applies what request bodies have read (reopening windows),
//! - reads from the socket and handles every whole frame,
//! - polls the answers still pending and the response bodies the windows
//!   allow,
//! - and writes what all of that produced in one write.
//!
//! Connection errors end the connection with a GOAWAY; stream errors reset
//! the stream and leave the others alone (RFC 9113 §5.4).

use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, DATE};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use ledge_hpack::{DecodeError, Decoder, Encoder};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::body::{Release, Returns, Shared};
use crate::frame::{self, flag, kind, setting, Head, Reason, HEADER_LEN};
use crate::{Config, Error, Handler, RecvBody, Reply};

/// The largest frame the server accepts (its advertised maximum is the
/// protocol's default, which every client honours without a setting).
const MAX_FRAME: usize = frame::MIN_MAX_FRAME_SIZE as usize;
/// Output above this stops reading until the client takes some: a client
/// that sends but never reads cannot make the connection buffer without end.
const HIGH_WATER: usize = 128 * 1024;
/// Passes of the loop before the task yields to others.
const PASSES: u32 = 16;
/// How long a closing connection waits for the client to close its side.
const LINGER: Duration = Duration::from_secs(2);

/// Serves one HTTP/2 connection on `io` (after TLS, or cleartext with prior
/// knowledge) until the client closes it, an error ends it, or `shutdown`
/// resolves and the streams in flight have finished.
pub fn serve<'c, IO, H, S>(
    io: IO,
    config: &'c Config,
    handler: H,
    shutdown: S,
) -> impl Future<Output = Result<(), Error>> + Send + 'c
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'c,
    H: Handler,
    S: Future<Output = ()> + Send + 'c,
{
    Serve {
        conn: Conn::new(io, config, handler),
        shutdown: Box::pin(shutdown),
        draining: false,
    }
}

/// The future [`serve`] returns.
struct Serve<'c, IO, H: Handler, S> {
    conn: Conn<'c, IO, H>,
    shutdown: Pin<Box<S>>,
    draining: bool,
}

// Nothing in a `Serve` is pinned in place: the shutdown future and the timer
// are boxed, and the handler is only called through `&mut`.
impl<IO, H: Handler, S> Unpin for Serve<'_, IO, H, S> {}

impl<IO, H, S> Future for Serve<'_, IO, H, S>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    H: Handler,
    S: Future<Output = ()>,
{
    type Output = Result<(), Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if !this.draining && this.shutdown.as_mut().poll(cx).is_ready() {
            this.draining = true;
            this.conn.go_away(Reason::NO_ERROR);
        }
        this.conn.poll(cx)
    }
}

/// A hasher for stream ids: they are distinct odd numbers, so a multiply
/// spreads them well enough.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8 | u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type Streams<F, B> = HashMap<u32, Stream<F, B>, BuildHasherDefault<IdHasher>>;

/// One open stream (open or half-closed, RFC 9113 §5.1).
struct Stream<F, B> {
    /// The request body's state, while the client may still send it.
    recv: Option<Arc<Shared>>,
    /// The client has not ended its side.
    recv_open: bool,
    /// Bytes the client may still send before a WINDOW_UPDATE.
    recv_window: i64,
    /// Bytes read (or dropped) by the handler, not yet given back to the
    /// stream's window. They are already counted in the connection's, so a
    /// stream that ends does not give them back again.
    recv_unacked: usize,
    /// The handler dropped the body: DATA is released on arrival.
    recv_dropped: bool,
    /// The request's `content-length`, checked against its DATA.
    content_length: Option<u64>,
    received: u64,
    /// The answer being waited for.
    reply: Option<F>,
    /// The response body, once its head is sent.
    body: Option<B>,
    /// Body bytes waiting for window.
    pending: Bytes,
    /// The body has no more frames after `pending`.
    body_done: bool,
    /// Bytes the server may still send on the stream.
    send_window: i64,
    /// The server has not ended its side.
    send_open: bool,
    /// The request was HEAD: its answer carries no body.
    head_request: bool,
}

/// A header block that continues in CONTINUATION frames.
struct Continuation {
    stream: u32,
    end_stream: bool,
    block: Vec<u8>,
}

/// Resets the client caused, as a bucket that refills each second.
struct ResetBudget {
    tokens: u32,
    per_second: u32,
    refilled: Instant,
}

impl ResetBudget {
    fn take(&mut self) -> bool {
        if self.tokens == 0 {
            let now = Instant::now();
            let secs = now.duration_since(self.refilled).as_secs();
            if secs == 0 {
                return false;
            }
            self.refilled = now;
            let refill = u32::try_from(secs)
                .unwrap_or(u32::MAX)
                .saturating_mul(self.per_second);
            self.tokens = refill.min(self.per_second.saturating_mul(2));
        }
        self.tokens = self.tokens.saturating_sub(1);
        true
    }
}

/// How the connection is ending.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Serving.
    No,
    /// GOAWAY sent (or a drain asked for): finish the streams, then close.
    Graceful,
    /// A connection error: write what is buffered (the GOAWAY), then close.
    Failed(Reason),
}

struct Conn<'c, IO, H: Handler> {
    io: IO,
    config: &'c Config,
    handler: H,
    rbuf: Vec<u8>,
    rstart: usize,
    rend: usize,
    read_closed: bool,
    preface: bool,
    settings_seen: bool,
    wbuf: Vec<u8>,
    wpos: usize,
    /// Bytes were written since the last flush (a TLS stream may hold
    /// records until flushed).
    unflushed: bool,
    /// The sending side is closed; input is read and dropped.
    shut: bool,
    decoder: Decoder,
    /// Decoded field text, shared by the fields of one block.
    text: BytesMut,
    /// Each decoded field's start in `text`, name length, value length.
    spans: Vec<(usize, usize, usize)>,
    encoder: Encoder,
    block: Vec<u8>,
    streams: Streams<H::Future, H::Body>,
    last_stream: u32,
    continuation: Option<Continuation>,
    peer_initial_window: i64,
    peer_max_frame: usize,
    send_window: i64,
    recv_window: i64,
    recv_unacked: usize,
    returns: Arc<Returns>,
    releases: Vec<Release>,
    ready: Vec<(u32, Response<H::Body>)>,
    /// Decoded fields of the header block being handled.
    fields: Vec<(Bytes, Bytes)>,
    /// Streams whose answers `poll_bodies` finished (with an error, if
    /// reset).
    finished: Vec<(u32, Option<Reason>)>,
    ending: Ending,
    goaway_stream: u32,
    resets: ResetBudget,
    timer: Pin<Box<Sleep>>,
    /// Streams opened or closed since the timer last fired: the idle check
    /// needs no clock read per request.
    activity: u64,
    seen_activity: u64,
    /// WINDOW_UPDATEs received, and the count when the timer last fired.
    window_updates: u64,
    seen_window_updates: u64,
    /// Answers waited for window when the timer last fired.
    stall_suspected: bool,
    /// The connection was closed because the client stopped opening windows.
    stalled: bool,
    /// The `date` value of the response being encoded.
    date: Vec<u8>,
}

impl<'c, IO, H> Conn<'c, IO, H>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    H: Handler,
{
    fn new(io: IO, config: &'c Config, handler: H) -> Self {
        let mut wbuf = Vec::with_capacity(16 * 1024);
        let stream_window = config.stream_window.min(frame::MAX_WINDOW as u32);
        frame::write_settings(
            &mut wbuf,
            &[
                (
                    setting::MAX_CONCURRENT_STREAMS,
                    config.max_concurrent_streams,
                ),
                (setting::INITIAL_WINDOW_SIZE, stream_window),
                (setting::MAX_HEADER_LIST_SIZE, config.max_header_list_size),
            ],
        );
        let connection_window =
            i64::from(config.connection_window).clamp(frame::DEFAULT_WINDOW, frame::MAX_WINDOW);
        if connection_window > frame::DEFAULT_WINDOW {
            let raise = u32::try_from(connection_window - frame::DEFAULT_WINDOW).unwrap_or(0);
            frame::write_window_update(&mut wbuf, 0, raise);
        }
        Conn {
            io,
            config,
            handler,
            rbuf: vec![0; 2 * (HEADER_LEN + MAX_FRAME)],
            rstart: 0,
            rend: 0,
            read_closed: false,
            preface: false,
            settings_seen: false,
            wbuf,
            wpos: 0,
            unflushed: false,
            shut: false,
            decoder: Decoder::new(4096),
            text: BytesMut::with_capacity(4096),
            spans: Vec::with_capacity(16),
            encoder: Encoder::new(),
            block: Vec::with_capacity(512),
            streams: Streams::default(),
            last_stream: 0,
            continuation: None,
            peer_initial_window: frame::DEFAULT_WINDOW,
            peer_max_frame: MAX_FRAME,
            send_window: frame::DEFAULT_WINDOW,
            recv_window: connection_window,
            recv_unacked: 0,
            returns: Arc::new(Returns::default()),
            releases: Vec::new(),
            ready: Vec::new(),
            fields: Vec::with_capacity(16),
            finished: Vec::new(),
            ending: Ending::No,
            goaway_stream: u32::MAX,
            resets: ResetBudget {
                tokens: config.resets_per_second.saturating_mul(2),
                per_second: config.resets_per_second,
                refilled: Instant::now(),
            },
            timer: Box::pin(tokio::time::sleep(config.handshake_timeout)),
            activity: 0,
            seen_activity: 0,
            window_updates: 0,
            seen_window_updates: 0,
            stall_suspected: false,
            stalled: false,
            date: Vec::with_capacity(29),
        }
    }

    /// Sends GOAWAY and stops taking new streams; the connection closes
    /// once the streams in flight are done.
    fn go_away(&mut self, reason: Reason) {
        if self.ending != Ending::No {
            return;
        }
        frame::write_goaway(&mut self.wbuf, self.last_stream, reason);
        self.goaway_stream = self.last_stream;
        self.ending = Ending::Graceful;
    }

    /// Ends the connection for a connection error.
    fn fail(&mut self, reason: Reason) {
        if matches!(self.ending, Ending::Failed(_)) {
            return;
        }
        frame::write_goaway(&mut self.wbuf, self.last_stream, reason);
        self.goaway_stream = self.last_stream;
        self.ending = Ending::Failed(reason);
        for (_, s) in self.streams.drain() {
            if let Some(shared) = &s.recv {
                shared.reset(reason);
            }
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let mut passes = 0;
        loop {
            if let Ending::Failed(reason) = self.ending {
                let error = if self.stalled {
                    Error::Stalled
                } else {
                    Error::Protocol(reason)
                };
                return self.poll_finish(cx).map(|r| r.and(Err(error)));
            }
            let mut progress = self.apply_releases(cx);
            if !self.read_closed && self.wbuf.len() < HIGH_WATER {
                match self.poll_read(cx) {
                    Poll::Ready(Ok(())) => progress = true,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {}
                }
                if matches!(self.ending, Ending::Failed(_)) {
                    continue;
                }
            }
            progress |= self.poll_replies(cx);
            progress |= self.poll_bodies(cx);
            match self.poll_write(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(Error::Io(e))),
                Poll::Pending => {
                    // Writing waits for the client; reading continues only
                    // while the output is under the high water mark.
                    if self.wbuf.len() >= HIGH_WATER {
                        progress = false;
                    }
                }
            }
            if self.read_closed {
                // The client can send no more WINDOW_UPDATEs: a stream that
                // waits for window would wait for ever.
                self.drop_blocked();
            }
            // A header block still open cannot complete once the client has
            // closed, and after a GOAWAY its stream would be ignored anyway.
            if self.streams.is_empty() {
                let finished = match self.ending {
                    Ending::Graceful => true,
                    _ => self.read_closed,
                };
                if finished {
                    return self.poll_finish(cx);
                }
            }
            if !progress {
                break;
            }
            passes += 1;
            if passes == PASSES {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
        self.poll_timer(cx)
    }

    /// A stream has response bytes to send and no window to send them in.
    fn is_blocked(send_window: i64, s: &Stream<H::Future, H::Body>) -> bool {
        !s.pending.is_empty() && (send_window <= 0 || s.send_window <= 0)
    }

    fn any_blocked(&self) -> bool {
        self.streams
            .values()
            .any(|s| Self::is_blocked(self.send_window, s))
    }

    /// Forgets the streams that wait for window.
    fn drop_blocked(&mut self) {
        let window = self.send_window;
        let before = self.streams.len();
        self.streams.retain(|_, s| {
            let keep = !Self::is_blocked(window, s);
            if !keep {
                if let Some(shared) = &s.recv {
                    shared.reset(Reason::CANCEL);
                }
            }
            keep
        });
        if self.streams.len() != before {
            self.activity += 1;
        }
    }

    /// The handshake, idle and stall limits.
    fn poll_timer(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        while self.timer.as_mut().poll(cx).is_ready() {
            if !self.settings_seen {
                return Poll::Ready(Err(Error::HandshakeTimeout));
            }
            let idle = self.streams.is_empty() && self.activity == self.seen_activity;
            self.seen_activity = self.activity;
            if idle && self.ending == Ending::No {
                self.go_away(Reason::NO_ERROR);
                return self.poll(cx);
            }
            // Answers waiting for window at two firings in a row, with no
            // WINDOW_UPDATE in between (so for at least a whole period): the
            // client does not read, and it holds the streams.
            let waiting = self.window_updates == self.seen_window_updates && self.any_blocked();
            self.seen_window_updates = self.window_updates;
            let stalled = waiting && self.stall_suspected;
            self.stall_suspected = self.any_blocked();
            if stalled {
                self.fail(Reason::ENHANCE_YOUR_CALM);
                self.stalled = true;
                return self.poll(cx);
            }
            let next = Instant::now() + self.config.idle_timeout;
            self.timer.as_mut().reset(next);
        }
        Poll::Pending
    }

    /// Writes what is left and closes the socket's sending side, then
    /// reads and discards until the client closes too (or [`LINGER`]
    /// passes): closing with unread input would make the kernel reset the
    /// connection, and the client could lose the GOAWAY.
    fn poll_finish(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if !self.shut {
            match self.poll_write(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(Error::Io(e))),
                Poll::Pending => return Poll::Pending,
            }
            match Pin::new(&mut self.io).poll_shutdown(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
            self.shut = true;
            if self.read_closed {
                return Poll::Ready(Ok(()));
            }
            self.timer.as_mut().reset(Instant::now() + LINGER);
        }
        loop {
            let mut rb = ReadBuf::new(&mut self.rbuf);
            match Pin::new(&mut self.io).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) if !rb.filled().is_empty() => continue,
                Poll::Ready(_) => return Poll::Ready(Ok(())),
                Poll::Pending => break,
            }
        }
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.wpos < self.wbuf.len() {
            match Pin::new(&mut self.io).poll_write(cx, &self.wbuf[self.wpos..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    self.wpos += n;
                    self.unflushed = true;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    if self.wpos > 0 && self.wpos * 2 >= self.wbuf.len() {
                        self.wbuf.drain(..self.wpos);
                        self.wpos = 0;
                    }
                    return Poll::Pending;
                }
            }
        }
        self.wbuf.clear();
        self.wpos = 0;
        if !self.unflushed {
            return Poll::Ready(Ok(()));
        }
        let flushed = Pin::new(&mut self.io).poll_flush(cx);
        if flushed.is_ready() {
            self.unflushed = false;
        }
        flushed
    }

    /// Reads once and handles every whole frame read so far.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.rstart == self.rend {
            self.rstart = 0;
            self.rend = 0;
        } else if self.rbuf.len() - self.rend < HEADER_LEN + MAX_FRAME {
            self.rbuf.copy_within(self.rstart..self.rend, 0);
            self.rend -= self.rstart;
            self.rstart = 0;
        }
        let mut rb = ReadBuf::new(&mut self.rbuf[self.rend..]);
        match Pin::new(&mut self.io).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(Error::Io(e))),
            Poll::Pending => return Poll::Pending,
        }
        let n = rb.filled().len();
        if n == 0 {
            // The client sends nothing more: request bodies still open end
            // with an error, and each stream waits only for its answer.
            self.read_closed = true;
            let mut ids = Vec::new();
            for (&id, s) in &mut self.streams {
                if let Some(shared) = s.recv.take() {
                    shared.reset(Reason::CANCEL);
                }
                s.recv_open = false;
                ids.push(id);
            }
            for id in ids {
                self.close_if_done(id);
            }
            return Poll::Ready(Ok(()));
        }
        self.rend += n;
        let buf = std::mem::take(&mut self.rbuf);
        let used = self.frames(&buf[self.rstart..self.rend]);
        self.rbuf = buf;
        self.rstart += used;
        Poll::Ready(Ok(()))
    }

    /// Handles the whole frames at the start of `input`; returns the bytes
    /// used.
    fn frames(&mut self, input: &[u8]) -> usize {
        let mut at = 0;
        if !self.preface {
            let have = input.len().min(frame::PREFACE.len());
            if input[..have] != frame::PREFACE[..have] {
                // Not HTTP/2: nothing sensible can be sent back.
                self.read_closed = true;
                self.ending = Ending::Failed(Reason::PROTOCOL_ERROR);
                return input.len();
            }
            if have < frame::PREFACE.len() {
                return 0;
            }
            self.preface = true;
            at = frame::PREFACE.len();
        }
        while matches!(self.ending, Ending::No | Ending::Graceful) {
            let Some(head) = input.get(at..at + HEADER_LEN) else {
                break;
            };
            let Ok(head) = <&[u8; HEADER_LEN]>::try_from(head) else {
                break;
            };
            let head = Head::parse(head);
            if head.len > MAX_FRAME {
                self.fail(Reason::FRAME_SIZE_ERROR);
                return input.len();
            }
            let Some(payload) = input.get(at + HEADER_LEN..at + HEADER_LEN + head.len) else {
                break;
            };
            at += HEADER_LEN + head.len;
            if let Err(reason) = self.frame(head, payload) {
                self.fail(reason);
                return input.len();
            }
        }
        at
    }

    /// Handles one frame; `Err` is a connection error.
    fn frame(&mut self, head: Head, payload: &[u8]) -> Result<(), Reason> {
        if !self.settings_seen {
            if head.kind != kind::SETTINGS || head.has(flag::ACK) {
                return Err(Reason::PROTOCOL_ERROR);
            }
            self.settings_seen = true;
            self.timer
                .as_mut()
                .reset(Instant::now() + self.config.idle_timeout);
        }
        if let Some(c) = &self.continuation {
            if head.kind != kind::CONTINUATION || head.stream != c.stream {
                return Err(Reason::PROTOCOL_ERROR);
            }
        }
        match head.kind {
            kind::DATA => self.data(head, payload),
            kind::HEADERS => self.headers(head, payload),
            kind::CONTINUATION => self.continuation(head, payload),
            kind::PRIORITY => {
                if head.stream == 0 {
                    return Err(Reason::PROTOCOL_ERROR);
                }
                if payload.len() != 5 {
                    self.reset_stream(head.stream, Reason::FRAME_SIZE_ERROR);
                } else if dependency(payload) == head.stream {
                    self.reset_stream(head.stream, Reason::PROTOCOL_ERROR);
                }
                Ok(())
            }
            kind::RST_STREAM => {
                if head.stream == 0 {
                    return Err(Reason::PROTOCOL_ERROR);
                }
                let code: [u8; 4] = payload.try_into().map_err(|_| Reason::FRAME_SIZE_ERROR)?;
                if self.is_idle(head.stream) {
                    return Err(Reason::PROTOCOL_ERROR);
                }
                if let Some(s) = self.streams.remove(&head.stream) {
                    self.activity += 1;
                    if let Some(shared) = &s.recv {
                        shared.reset(Reason(u32::from_be_bytes(code)));
                    }
                    if s.send_open && !self.resets.take() {
                        return Err(Reason::ENHANCE_YOUR_CALM);
                    }
                }
                Ok(())
            }
            kind::SETTINGS => self.settings(head, payload),
            kind::PUSH_PROMISE => Err(Reason::PROTOCOL_ERROR),
            kind::PING => {
                if head.stream != 0 {
                    return Err(Reason::PROTOCOL_ERROR);
                }
                if payload.len() != 8 {
                    return Err(Reason::FRAME_SIZE_ERROR);
                }
                if !head.has(flag::ACK) {
                    frame::write_head(&mut self.wbuf, 8, kind::PING, flag::ACK, 0);
                    self.wbuf.extend_from_slice(payload);
                }
                Ok(())
            }
            kind::GOAWAY => {
                if head.stream != 0 {
                    return Err(Reason::PROTOCOL_ERROR);
                }
                if payload.len() < 8 {
                    return Err(Reason::FRAME_SIZE_ERROR);
                }
                // The client will open no more streams; those in flight finish.
                if self.ending == Ending::No {
                    self.ending = Ending::Graceful;
                    self.goaway_stream = self.last_stream;
                }
                Ok(())
            }
            kind::WINDOW_UPDATE => self.window_update(head, payload),
            // Unknown types are ignored (RFC 9113 §4.1).
            _ => Ok(()),
        }
    }

    /// A stream id the client has not used yet.
    fn is_idle(&self, id: u32) -> bool {
        id > self.last_stream
    }

    fn settings(&mut self, head: Head, payload: &[u8]) -> Result<(), Reason> {
        if head.stream != 0 {
            return Err(Reason::PROTOCOL_ERROR);
        }
        if head.has(flag::ACK) {
            return if payload.is_empty() {
                Ok(())
            } else {
                Err(Reason::FRAME_SIZE_ERROR)
            };
        }
        if payload.len() % 6 != 0 {
            return Err(Reason::FRAME_SIZE_ERROR);
        }
        for s in payload.chunks_exact(6) {
            let id = u16::from_be_bytes([s[0], s[1]]);
            let value = u32::from_be_bytes([s[2], s[3], s[4], s[5]]);
            match id {
                setting::HEADER_TABLE_SIZE => {
                    self.encoder.set_peer_max_table_size(value as usize);
                }
                setting::ENABLE_PUSH if value > 1 => return Err(Reason::PROTOCOL_ERROR),
                setting::INITIAL_WINDOW_SIZE => {
                    let value = i64::from(value);
                    if value > frame::MAX_WINDOW {
                        return Err(Reason::FLOW_CONTROL_ERROR);
                    }
                    let delta = value - self.peer_initial_window;
                    self.peer_initial_window = value;
                    self.window_updates += 1;
                    for s in self.streams.values_mut() {
                        s.send_window += delta;
                        if s.send_window > frame::MAX_WINDOW {
                            return Err(Reason::FLOW_CONTROL_ERROR);
                        }
                    }
                }
                setting::MAX_FRAME_SIZE => {
                    if !(frame::MIN_MAX_FRAME_SIZE..=frame::MAX_MAX_FRAME_SIZE).contains(&value) {
                        return Err(Reason::PROTOCOL_ERROR);
                    }
                    self.peer_max_frame = value as usize;
                }
                _ => {}
            }
        }
        frame::write_head(&mut self.wbuf, 0, kind::SETTINGS, flag::ACK, 0);
        Ok(())
    }

    fn window_update(&mut self, head: Head, payload: &[u8]) -> Result<(), Reason> {
        let b: [u8; 4] = payload.try_into().map_err(|_| Reason::FRAME_SIZE_ERROR)?;
        self.window_updates += 1;
        let increment = i64::from(u32::from_be_bytes(b) & 0x7fff_ffff);
        if head.stream == 0 {
            if increment == 0 {
                return Err(Reason::PROTOCOL_ERROR);
            }
            self.send_window += increment;
            if self.send_window > frame::MAX_WINDOW {
                return Err(Reason::FLOW_CONTROL_ERROR);
            }
            return Ok(());
        }
        if self.is_idle(head.stream) {
            return Err(Reason::PROTOCOL_ERROR);
        }
        let Some(s) = self.streams.get_mut(&head.stream) else {
            return Ok(());
        };
        if increment == 0 {
            self.reset_stream(head.stream, Reason::PROTOCOL_ERROR);
            return Ok(());
        }
        s.send_window += increment;
        if s.send_window > frame::MAX_WINDOW {
            self.reset_stream(head.stream, Reason::FLOW_CONTROL_ERROR);
        }
        Ok(())
    }

    fn data(&mut self, head: Head, payload: &[u8]) -> Result<(), Reason> {
        if head.stream == 0 {
            return Err(Reason::PROTOCOL_ERROR);
        }
        let (start, end) = frame::unpad(&head, payload).ok_or(Reason::PROTOCOL_ERROR)?;
        let len = payload.len();
        self.recv_window -= len as i64;
        if self.recv_window < 0 {
            return Err(Reason::FLOW_CONTROL_ERROR);
        }
        if self.is_idle(head.stream) {
            return Err(Reason::PROTOCOL_ERROR);
        }
        let id = head.stream;
        let Some(s) = self.streams.get_mut(&id) else {
            // A stream already closed or reset: its window is the
            // connection's to give back.
            self.give_back(None, len);
            return Ok(());
        };
        if !s.recv_open {
            self.give_back(None, len);
            self.reset_stream(id, Reason::STREAM_CLOSED);
            return Ok(());
        }
        s.recv_window -= len as i64;
        if s.recv_window < 0 {
            self.give_back(None, len);
            self.reset_stream(id, Reason::FLOW_CONTROL_ERROR);
            return Ok(());
        }
        let data = &payload[start..end];
        s.received += data.len() as u64;
        if s.content_length.is_some_and(|cl| s.received > cl)
            || (head.has(flag::END_STREAM) && s.content_length.is_some_and(|cl| s.received != cl))
        {
            self.give_back(None, len);
            self.reset_stream(id, Reason::PROTOCOL_ERROR);
            return Ok(());
        }
        // Padding, and data nobody will read, go back at once.
        let mut back = len - data.len();
        match &s.recv {
            Some(shared) if !s.recv_dropped && !data.is_empty() => {
                if !shared.deliver(Bytes::copy_from_slice(data)) {
                    s.recv_dropped = true;
                    back += data.len();
                }
            }
            _ => back += data.len(),
        }
        if head.has(flag::END_STREAM) {
            s.recv_open = false;
            if let Some(shared) = s.recv.take() {
                shared.finish(None);
            }
        }
        self.give_back(Some(id), back);
        self.close_if_done(id);
        Ok(())
    }

    fn headers(&mut self, head: Head, payload: &[u8]) -> Result<(), Reason> {
        if head.stream == 0 || head.stream % 2 == 0 {
            return Err(Reason::PROTOCOL_ERROR);
        }
        let (mut start, end) = frame::unpad(&head, payload).ok_or(Reason::PROTOCOL_ERROR)?;
        if head.has(flag::PRIORITY) {
            let p = payload
                .get(start..start + 5)
                .ok_or(Reason::PROTOCOL_ERROR)?;
            if start + 5 > end {
                return Err(Reason::PROTOCOL_ERROR);
            }
            if dependency(p) == head.stream {
                // The block must still be decoded to keep the table in step.
                let mut ignored = Vec::new();
                self.decode(&payload[start + 5..end], &mut ignored)?;
                self.reset_stream(head.stream, Reason::PROTOCOL_ERROR);
                return Ok(());
            }
            start += 5;
        }
        let fragment = &payload[start..end];
        let end_stream = head.has(flag::END_STREAM);
        if head.has(flag::END_HEADERS) {
            return self.header_block(head.stream, end_stream, fragment);
        }
        self.continuation = Some(Continuation {
            stream: head.stream,
            end_stream,
            block: fragment.to_vec(),
        });
        Ok(())
    }

    fn continuation(&mut self, head: Head, payload: &[u8]) -> Result<(), Reason> {
        let Some(c) = &mut self.continuation else {
            return Err(Reason::PROTOCOL_ERROR);
        };
        // An encoded block longer than the decoded limit allows (plus the
        // encoding's overhead) is refused before it is held.
        if c.block.len() + payload.len() > self.config.max_header_list_size as usize + 16 * 1024 {
            return Err(Reason::ENHANCE_YOUR_CALM);
        }
        c.block.extend_from_slice(payload);
        if !head.has(flag::END_HEADERS) {
            return Ok(());
        }
        let Some(c) = self.continuation.take() else {
            return Ok(());
        };
        self.header_block(c.stream, c.end_stream, &c.block)
    }

    /// Decodes a header block into `fields` (name, value); `Ok(false)` when
    /// the list is over the limit. The fields' text is copied once, into one
    /// buffer that they share (slices, not an allocation each).
    fn decode(&mut self, block: &[u8], fields: &mut Vec<(Bytes, Bytes)>) -> Result<bool, Reason> {
        let limit = self.config.max_header_list_size as usize;
        let text = &mut self.text;
        let spans = &mut self.spans;
        spans.clear();
        let r = self
            .decoder
            .decode(block, limit, |name, value, _sensitive| {
                let at = text.len();
                text.extend_from_slice(name);
                text.extend_from_slice(value);
                spans.push((at, name.len(), value.len()));
            });
        let all = text.split().freeze();
        // The next block writes into what is left of this allocation, or a
        // new one once it is used up.
        if text.capacity() < 256 {
            text.reserve(4096);
        }
        fields.reserve(spans.len());
        for &(at, n, v) in spans.iter() {
            fields.push((all.slice(at..at + n), all.slice(at + n..at + n + v)));
        }
        match r {
            Ok(()) => Ok(true),
            Err(DecodeError::ListTooLarge) => Ok(false),
            Err(_) => Err(Reason::COMPRESSION_ERROR),
        }
    }

    /// A complete header block: a request, or a request's trailers. The
    /// fields' vector is the connection's, reused from block to block.
    fn header_block(&mut self, id: u32, end_stream: bool, block: &[u8]) -> Result<(), Reason> {
        let mut fields = std::mem::take(&mut self.fields);
        let r = self.fields_block(id, end_stream, block, &mut fields);
        fields.clear();
        self.fields = fields;
        r
    }

    fn fields_block(
        &mut self,
        id: u32,
        end_stream: bool,
        block: &[u8],
        fields: &mut Vec<(Bytes, Bytes)>,
    ) -> Result<(), Reason> {
        let within = self.decode(block, fields)?;
        if let Some(s) = self.streams.get_mut(&id) {
            // Trailers.
            if !s.recv_open {
                return Err(Reason::STREAM_CLOSED);
            }
            let trailers = if end_stream && within {
                trailer_map(fields)
            } else {
                None
            };
            let Some(trailers) = trailers else {
                self.reset_stream(id, Reason::PROTOCOL_ERROR);
                return Ok(());
            };
            s.recv_open = false;
            if s.content_length.is_some_and(|cl| cl != s.received) {
                self.reset_stream(id, Reason::PROTOCOL_ERROR);
                return Ok(());
            }
            if let Some(shared) = s.recv.take() {
                shared.finish(Some(trailers));
            }
            self.close_if_done(id);
            return Ok(());
        }
        if id <= self.last_stream {
            return Err(Reason::STREAM_CLOSED);
        }
        self.last_stream = id;
        if self.ending != Ending::No && id > self.goaway_stream {
            // After GOAWAY, new streams are ignored (RFC 9113 §6.8).
            return Ok(());
        }
        if self.streams.len() >= self.config.max_concurrent_streams as usize {
            self.reset_stream(id, Reason::REFUSED_STREAM);
            return Ok(());
        }
        self.activity += 1;
        let mut stream = Stream {
            recv: None,
            recv_open: !end_stream,
            recv_window: i64::from(self.config.stream_window.min(frame::MAX_WINDOW as u32)),
            recv_unacked: 0,
            recv_dropped: false,
            content_length: None,
            received: 0,
            reply: None,
            body: None,
            pending: Bytes::new(),
            body_done: false,
            send_window: self.peer_initial_window,
            head_request: false,
            send_open: true,
        };
        if !within {
            stream.recv_dropped = true;
            self.streams.insert(id, stream);
            let resp = Response::builder()
                .status(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
                .body(())
                .unwrap_or_default();
            self.send_head(id, resp.status(), resp.headers(), true);
            self.close_if_done(id);
            return Ok(());
        }
        let Some((parts, content_length)) = request_parts(fields.drain(..)) else {
            self.reset_stream(id, Reason::PROTOCOL_ERROR);
            return Ok(());
        };
        if end_stream && content_length.is_some_and(|cl| cl != 0) {
            self.reset_stream(id, Reason::PROTOCOL_ERROR);
            return Ok(());
        }
        stream.content_length = content_length;
        stream.head_request = parts.method == Method::HEAD;
        let body = if end_stream {
            RecvBody::empty()
        } else {
            let shared = Shared::new(id, self.returns.clone());
            stream.recv = Some(shared.clone());
            RecvBody::streaming(shared, content_length)
        };
        let mut req = Request::new(body);
        *req.method_mut() = parts.method;
        *req.uri_mut() = parts.uri;
        *req.version_mut() = Version::HTTP_2;
        *req.headers_mut() = parts.headers;
        match self.handler.call(req) {
            Reply::Ready(resp) => {
                self.streams.insert(id, stream);
                self.respond(id, resp);
            }
            Reply::Later(f) => {
                stream.reply = Some(f);
                self.streams.insert(id, stream);
            }
        }
        Ok(())
    }

    /// Resets a stream for a stream error, counting it against the budget.
    fn reset_stream(&mut self, id: u32, reason: Reason) {
        frame::write_rst(&mut self.wbuf, id, reason);
        if let Some(s) = self.streams.remove(&id) {
            self.activity += 1;
            if let Some(shared) = &s.recv {
                shared.reset(reason);
            }
        }
        if !self.resets.take() {
            self.fail(Reason::ENHANCE_YOUR_CALM);
        }
    }

    /// Gives `n` received bytes back to the client's windows (the stream's
    /// too, when it is given and still receiving), with a WINDOW_UPDATE
    /// once half a window is owed.
    fn give_back(&mut self, stream: Option<u32>, n: usize) {
        if n == 0 {
            return;
        }
        self.recv_unacked += n;
        let conn_window = i64::from(self.config.connection_window).max(frame::DEFAULT_WINDOW);
        if self.recv_unacked as i64 >= conn_window / 2 {
            let inc = self.recv_unacked;
            self.recv_unacked = 0;
            self.recv_window += inc as i64;
            frame::write_window_update(&mut self.wbuf, 0, u32::try_from(inc).unwrap_or(0));
        }
        let Some(id) = stream else { return };
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        if !s.recv_open {
            return;
        }
        s.recv_unacked += n;
        let window = i64::from(self.config.stream_window.min(frame::MAX_WINDOW as u32));
        if s.recv_unacked as i64 >= window / 2 {
            let inc = s.recv_unacked;
            s.recv_unacked = 0;
            s.recv_window += inc as i64;
            frame::write_window_update(&mut self.wbuf, id, u32::try_from(inc).unwrap_or(0));
        }
    }

    /// Applies what request bodies have read since the last pass.
    fn apply_releases(&mut self, cx: &mut Context<'_>) -> bool {
        let mut releases = std::mem::take(&mut self.releases);
        self.returns.take(&mut releases, cx.waker());
        let any = !releases.is_empty();
        for r in releases.drain(..) {
            if r.dropped {
                if let Some(s) = self.streams.get_mut(&r.stream) {
                    s.recv_dropped = true;
                }
            }
            self.give_back(Some(r.stream), r.bytes);
            if r.dropped {
                self.close_if_done(r.stream);
            }
        }
        self.releases = releases;
        any
    }

    /// Polls the answers being waited for; true if any came.
    fn poll_replies(&mut self, cx: &mut Context<'_>) -> bool {
        let mut ready = std::mem::take(&mut self.ready);
        for (id, s) in &mut self.streams {
            if let Some(f) = &mut s.reply {
                if let Poll::Ready(resp) = Pin::new(f).poll(cx) {
                    s.reply = None;
                    ready.push((*id, resp));
                }
            }
        }
        let any = !ready.is_empty();
        for (id, resp) in ready.drain(..) {
            self.respond(id, resp);
        }
        self.ready = ready;
        any
    }

    /// Sends a response's head, and keeps its body to send.
    fn respond(&mut self, id: u32, resp: Response<H::Body>) {
        let (mut parts, body) = resp.into_parts();
        let end = body.is_end_stream();
        // A body of known size gets its `content-length`, as hyper gave it,
        // except where the status or a HEAD request means there is none.
        let head = self.streams.get(&id).is_some_and(|s| s.head_request);
        let bodiless = head
            || parts.status.is_informational()
            || parts.status == StatusCode::NO_CONTENT
            || parts.status == StatusCode::NOT_MODIFIED;
        if !bodiless && !parts.headers.contains_key(CONTENT_LENGTH) {
            if let Some(n) = body.size_hint().exact() {
                parts.headers.insert(CONTENT_LENGTH, HeaderValue::from(n));
            }
        }
        self.send_head(id, parts.status, &parts.headers, end);
        if let Some(s) = self.streams.get_mut(&id) {
            if !end {
                s.body = Some(body);
            }
        }
        self.close_if_done(id);
    }

    fn send_head(&mut self, id: u32, status: StatusCode, headers: &HeaderMap, end: bool) {
        let mut block = std::mem::take(&mut self.block);
        block.clear();
        self.encoder.begin(&mut block);
        self.encoder.status(status.as_u16(), &mut block);
        self.encode_fields(headers, &mut block);
        if !headers.contains_key(DATE) {
            self.date.clear();
            ledge_core::date::push_http_date(&mut self.date);
            self.encoder.field(b"date", &self.date, false, &mut block);
        }
        frame::write_header_block(&mut self.wbuf, id, &block, end, self.peer_max_frame);
        self.block = block;
        if end {
            if let Some(s) = self.streams.get_mut(&id) {
                s.send_open = false;
            }
        }
    }

    fn encode_fields(&mut self, headers: &HeaderMap, block: &mut Vec<u8>) {
        for (name, value) in headers {
            if is_connection_specific(name) {
                continue;
            }
            self.encoder.field(
                name.as_str().as_bytes(),
                value.as_bytes(),
                value.is_sensitive(),
                block,
            );
        }
    }

    /// Sends what response bodies have, as far as windows and the high
    /// water mark allow; true if anything was sent or ended.
    fn poll_bodies(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        let mut done = std::mem::take(&mut self.finished);
        let mut trailers: Vec<(u32, HeaderMap)> = Vec::new();
        for (&id, s) in &mut self.streams {
            if s.body.is_none() && s.pending.is_empty() && !s.body_done {
                continue;
            }
            loop {
                if !s.pending.is_empty() {
                    let room = self
                        .send_window
                        .min(s.send_window)
                        .min(self.peer_max_frame as i64);
                    if room <= 0 || self.wbuf.len() >= HIGH_WATER {
                        break;
                    }
                    let n = (room as usize).min(s.pending.len());
                    let chunk = s.pending.split_to(n);
                    let last = s.pending.is_empty() && s.body_done;
                    let flags = if last { flag::END_STREAM } else { 0 };
                    frame::write_head(&mut self.wbuf, n, kind::DATA, flags, id);
                    self.wbuf.extend_from_slice(&chunk);
                    self.send_window -= n as i64;
                    s.send_window -= n as i64;
                    progress = true;
                    if last {
                        done.push((id, None));
                        break;
                    }
                    continue;
                }
                if s.body_done {
                    // Ended with no bytes left: an empty DATA ends the stream.
                    frame::write_head(&mut self.wbuf, 0, kind::DATA, flag::END_STREAM, id);
                    done.push((id, None));
                    progress = true;
                    break;
                }
                let Some(body) = &mut s.body else { break };
                if self.wbuf.len() >= HIGH_WATER {
                    break;
                }
                match Pin::new(body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(f))) => match f.into_data() {
                        Ok(data) => {
                            s.pending = data;
                            if s.body.as_ref().is_some_and(|b| b.is_end_stream()) {
                                s.body = None;
                                s.body_done = true;
                            }
                        }
                        Err(f) => {
                            if let Ok(t) = f.into_trailers() {
                                s.body = None;
                                trailers.push((id, t));
                                break;
                            }
                        }
                    },
                    Poll::Ready(None) => {
                        s.body = None;
                        s.body_done = true;
                    }
                    Poll::Ready(Some(Err(_))) => {
                        s.body = None;
                        done.push((id, Some(Reason::INTERNAL_ERROR)));
                        progress = true;
                        break;
                    }
                    Poll::Pending => break,
                }
            }
        }
        for (id, t) in trailers {
            let mut block = std::mem::take(&mut self.block);
            block.clear();
            self.encoder.begin(&mut block);
            self.encode_fields(&t, &mut block);
            frame::write_header_block(&mut self.wbuf, id, &block, true, self.peer_max_frame);
            self.block = block;
            done.push((id, None));
            progress = true;
        }
        for (id, error) in done.drain(..) {
            match error {
                Some(reason) => {
                    frame::write_rst(&mut self.wbuf, id, reason);
                    if let Some(s) = self.streams.remove(&id) {
                        self.activity += 1;
                        if let Some(shared) = &s.recv {
                            shared.reset(reason);
                        }
                    }
                }
                None => {
                    if let Some(s) = self.streams.get_mut(&id) {
                        s.send_open = false;
                        s.body_done = false;
                    }
                    self.close_if_done(id);
                }
            }
        }
        self.finished = done;
        progress
    }

    /// Forgets a stream both sides have ended. A stream whose answer is
    /// complete while the client still sends a body nobody reads is reset
    /// with NO_ERROR, so the client stops (RFC 9113 §8.1).
    fn close_if_done(&mut self, id: u32) {
        let Some(s) = self.streams.get(&id) else {
            return;
        };
        if s.send_open || s.reply.is_some() || s.body.is_some() || !s.pending.is_empty() {
            return;
        }
        if s.recv_open {
            if !s.recv_dropped {
                return;
            }
            frame::write_rst(&mut self.wbuf, id, Reason::NO_ERROR);
        }
        if self.streams.remove(&id).is_some() {
            self.activity += 1;
        }
    }
}

/// The stream a PRIORITY field depends on.
fn dependency(p: &[u8]) -> u32 {
    match p {
        [a, b, c, d, ..] => u32::from_be_bytes([*a, *b, *c, *d]) & 0x7fff_ffff,
        _ => 0,
    }
}

/// Header fields that HTTP/2 forbids (RFC 9113 §8.2.2).
fn is_connection_specific(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection" | "keep-alive" | "proxy-connection" | "transfer-encoding" | "upgrade"
    )
}

/// A request's method, target and fields.
struct Parts {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

/// Builds a request from its decoded fields; `None` when it is malformed
/// (RFC 9113 §8.1.1, §8.2, §8.3). Also gives its `content-length`.
fn request_parts(
    fields: impl ExactSizeIterator<Item = (Bytes, Bytes)>,
) -> Option<(Parts, Option<u64>)> {
    let mut method = None;
    let mut scheme = None;
    let mut authority = None;
    let mut path = None;
    let mut headers = HeaderMap::with_capacity(fields.len());
    let mut regular = false;
    let mut content_length = None;
    for (name, value) in fields {
        if let Some(pseudo) = name.strip_prefix(b":") {
            if regular {
                return None;
            }
            let slot = match pseudo {
                b"method" => &mut method,
                b"scheme" => &mut scheme,
                b"authority" => &mut authority,
                b"path" => &mut path,
                _ => return None,
            };
            if slot.replace(value).is_some() {
                return None;
            }
            continue;
        }
        regular = true;
        if name.iter().any(u8::is_ascii_uppercase) {
            return None;
        }
        let name = HeaderName::from_bytes(&name).ok()?;
        if is_connection_specific(&name) || (name == http::header::TE && value != "trailers") {
            return None;
        }
        if name == CONTENT_LENGTH {
            let n: u64 = std::str::from_utf8(&value).ok()?.parse().ok()?;
            if content_length.replace(n).is_some_and(|m| m != n) {
                return None;
            }
        }
        let value = HeaderValue::from_maybe_shared(value).ok()?;
        headers.append(name, value);
    }
    let method = Method::from_bytes(&method?).ok()?;
    let mut uri = http::uri::Parts::default();
    if method == Method::CONNECT {
        if scheme.is_some() || path.is_some() {
            return None;
        }
        uri.authority = Some(http::uri::Authority::from_maybe_shared(authority?).ok()?);
    } else {
        let path = path?;
        if path.is_empty() {
            return None;
        }
        uri.scheme = Some(http::uri::Scheme::try_from(&scheme?[..]).ok()?);
        if let Some(a) = authority {
            uri.authority = Some(http::uri::Authority::from_maybe_shared(a).ok()?);
        }
        uri.path_and_query = Some(http::uri::PathAndQuery::from_maybe_shared(path).ok()?);
    }
    let uri = Uri::from_parts(uri).ok()?;
    Some((
        Parts {
            method,
            uri,
            headers,
        },
        content_length,
    ))
}

/// Trailer fields: no pseudo-fields, lowercase names.
fn trailer_map(fields: &[(Bytes, Bytes)]) -> Option<HeaderMap> {
    let mut map = HeaderMap::with_capacity(fields.len());
    for (name, value) in fields {
        if name.starts_with(b":") || name.iter().any(u8::is_ascii_uppercase) {
            return None;
        }
        let name = HeaderName::from_bytes(name).ok()?;
        let value = HeaderValue::from_maybe_shared(value.clone()).ok()?;
        map.append(name, value);
    }
    Some(map)
}
