//! The HTTP/1.1 fast path: bodiless `GET` and `HEAD` requests, which are
//! nearly all of an edge's traffic, parsed and answered without hyper's
//! per-request machinery.
//!
//! The path is deliberately narrow. Anything it does not handle itself (a
//! request body, an upgrade, `Expect`, HTTP/1.0, an unusual request target,
//! any parse error, a head over the limits) hands the connection, with the
//! bytes already read, to hyper for the rest of its life, so hyper's checks
//! and error answers stay the only ones for everything unusual.
//!
//! What it does per request: one `httparse` pass over the buffered head, an
//! `http::Request` whose URI and header values share the read buffer, the
//! pipeline, then the response head and (for bodies up to
//! [`COALESCE_BYTES`]) the body written with one `write` call. Bodies with no
//! known length are sent chunked, each frame as soon as it comes.
//!
//! The header-read timeout is one timer per connection, moved only when its
//! deadline falls more than a little behind (see [`Deadline`]), instead of a
//! timer armed per request.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use http::{HeaderName, HeaderValue, Method, Request, StatusCode, Uri, Version};
use http_body::Body as _;
use http_body_util::{BodyExt, Empty};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::body::Body;
use crate::hot;
use crate::pipeline::{ConnInfo, Edge, X_LEDGE_ID};

/// Most headers the fast path parses; a request with more goes to hyper,
/// which applies the configured limit.
const MAX_FAST_HEADERS: usize = 64;

/// Bodies up to this size go out in the same `write` as the head.
pub const COALESCE_BYTES: usize = 16 * 1024;

/// A connection's byte stream; plain TCP sockets also offer `sendfile`.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin {
    /// The socket, when the stream is plain TCP.
    fn tcp(&self) -> Option<&tokio::net::TcpStream> {
        None
    }
}

impl Stream for tokio::net::TcpStream {
    fn tcp(&self) -> Option<&tokio::net::TcpStream> {
        Some(self)
    }
}

impl Stream for tokio_rustls::server::TlsStream<tokio::net::TcpStream> {}

/// The connection limits the fast path applies (the same as hyper's).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Most bytes of a request head.
    pub max_header_bytes: usize,
    /// Most request headers.
    pub max_headers: usize,
    /// Time allowed for a complete head, and for an idle connection.
    pub header_read_timeout: Duration,
}

/// How the fast path left a connection.
pub(crate) enum Ended<S> {
    /// The connection is finished (closed by either side, timed out, drained
    /// or failed).
    Closed,
    /// hyper must take over: the stream and the bytes read but not answered.
    Handoff(S, Bytes),
}

/// Serves simple requests on `io` until the connection ends or a request needs
/// hyper.
pub(crate) async fn serve<S>(
    mut io: S,
    edge: &Edge,
    conn: &ConnInfo,
    limits: Limits,
    drain: &mut tokio::sync::watch::Receiver<bool>,
) -> Ended<S>
where
    S: Stream,
{
    let mut buf = BytesMut::with_capacity(8192);
    let mut out: Vec<u8> = Vec::with_capacity(1024);
    let mut spans: Spans = Vec::with_capacity(16);
    let mut key: Vec<u8> = Vec::new();
    let mut seen = SeenText::default();
    // Kept answers are for peers whose forwarding headers are not believed
    // (see crate::hot); over TLS, their bodies are kept in memory.
    let hot_ok = !edge
        .config
        .trusted_proxies
        .iter()
        .any(|c| c.contains(conn.peer.ip()));
    let form = hot::Form::Http1 {
        sendfile: io.tcp().is_some(),
    };
    let mut deadline = Deadline::new(limits.header_read_timeout);
    let timer = tokio::time::sleep_until(deadline.at);
    tokio::pin!(timer);
    // One wait for the drain signal for the connection's whole life: made
    // per request, its registration and removal cost more than the parse.
    let draining = drain.clone();
    let drained = drain.wait_for(|d| *d);
    tokio::pin!(drained);
    loop {
        // A new request starts: it has the whole timeout for its head.
        if deadline.extend() {
            timer.as_mut().reset(deadline.at);
        }
        let head = loop {
            match parse(&buf, &mut spans) {
                // Over a limit: hyper gives the 431.
                Parse::Simple(head)
                    if head.len <= limits.max_header_bytes && spans.len() <= limits.max_headers =>
                {
                    break head
                }
                Parse::Partial if buf.len() < limits.max_header_bytes => {}
                Parse::Simple(_) | Parse::Partial | Parse::Other => {
                    return Ended::Handoff(io, buf.freeze())
                }
            }
            if buf.capacity() - buf.len() < 1024 {
                buf.reserve(4096);
            }
            let idle = buf.is_empty();
            let read = tokio::select! {
                biased;
                r = io.read_buf(&mut buf) => r,
                () = &mut timer => return Ended::Closed,
                _ = &mut drained, if idle => return Ended::Closed,
            };
            match read {
                Ok(0) | Err(_) => return Ended::Closed,
                Ok(_) => {}
            }
        };
        let bytes = buf.split_to(head.len).freeze();
        let close = head.close || *draining.borrow();
        // A kept answer (crate::hot), or the version to keep this one under.
        let mut hit = None;
        let mut hot_version = None;
        if hot_ok && !head.is_head {
            if let Some(shape) = hot::shape(&bytes, head.target, &spans) {
                hot::key(&bytes, head.target, &shape, conn, &mut key);
                let version = edge.router.version();
                match hot::lookup(version, &key) {
                    hot::Lookup::Hit(entry) if matches!(entry.head, hot::Head::Http1(_)) => {
                        hit = Some((entry, shape));
                    }
                    hot::Lookup::Hit(_) => {}
                    hot::Lookup::Keep => hot_version = Some(version),
                    hot::Lookup::Pass => {}
                }
            }
        }
        let written = match hit {
            Some((entry, shape)) => {
                let request = HotRequest {
                    head: &bytes,
                    shape: &shape,
                    seen: &mut seen,
                };
                answer_hot(&mut io, &mut out, edge, conn, &entry, request, close).await
            }
            None => {
                let Some(req) = head.request(&bytes, &spans) else {
                    // Unreachable in practice (httparse checked every byte);
                    // hyper gives the exact error answer.
                    let mut rest = BytesMut::with_capacity(bytes.len() + buf.len());
                    rest.extend_from_slice(&bytes);
                    rest.extend_from_slice(&buf);
                    return Ended::Handoff(io, rest.freeze());
                };
                let resp = match hot_version {
                    Some(version) => {
                        let (resp, info) = edge.handle_hot(req, conn).await;
                        if let Some(entry) = info.and_then(|info| hot::entry(&resp, info, form)) {
                            hot::keep(version, &key, entry);
                        }
                        resp
                    }
                    None => edge.handle(req, conn).await,
                };
                write_response(&mut io, &mut out, resp, head.is_head, close).await
            }
        };
        drop(bytes);
        if written.is_err() {
            return Ended::Closed;
        }
        if close {
            let _ = io.shutdown().await;
            return Ended::Closed;
        }
    }
}

/// The parts of a request that a kept answer's access record reads.
struct HotRequest<'a> {
    head: &'a [u8],
    shape: &'a hot::Shape,
    /// The connection's last agent and referrer.
    seen: &'a mut SeenText,
}

/// The `User-Agent` and `Referer` of a connection's last kept answer's
/// record: the next request on the connection mostly sends the same ones,
/// and then its record shares them instead of copying them.
#[derive(Default)]
struct SeenText {
    user_agent: Option<Arc<str>>,
    referer: Option<Arc<str>>,
}

/// `bytes` as shared text: `seen`'s when it holds the same, else new and
/// kept in `seen`. `None` when absent or not UTF-8.
fn seen_text(seen: &mut Option<Arc<str>>, bytes: Option<&[u8]>) -> Option<Arc<str>> {
    let bytes = bytes?;
    if let Some(s) = seen.as_ref().filter(|s| s.as_bytes() == bytes) {
        return Some(s.clone());
    }
    let text: Arc<str> = Arc::from(std::str::from_utf8(bytes).ok()?);
    *seen = Some(text.clone());
    Some(text)
}

/// Sends a kept answer with a new request id and `Date`, and finishes its
/// access record as the pipeline's log phase would.
async fn answer_hot<S>(
    io: &mut S,
    out: &mut Vec<u8>,
    edge: &Edge,
    conn: &ConnInfo,
    entry: &hot::Entry,
    request: HotRequest<'_>,
    close: bool,
) -> io::Result<()>
where
    S: Stream,
{
    let start = edge.telemetry.as_ref().map(|_| std::time::Instant::now());
    let id = crate::pipeline::request_id_bytes();
    out.clear();
    if let hot::Head::Http1(head) = &entry.head {
        out.extend_from_slice(head);
    }
    push_field(out, X_LEDGE_ID.as_str().as_bytes(), &id);
    out.extend_from_slice(b"date: ");
    ledge_core::date::push_http_date(out);
    out.extend_from_slice(b"\r\n");
    if close {
        push_field(out, b"connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
    let sent = async {
        match &entry.body {
            hot::HotBody::Bytes(b) if b.len() <= COALESCE_BYTES => {
                out.extend_from_slice(b);
                io.write_all(out).await?;
            }
            hot::HotBody::Bytes(b) => write_two(io, out, b).await?,
            hot::HotBody::File { file, offset, len } => match io.tcp() {
                Some(tcp) => send_file(tcp, out, file, *offset, *len).await?,
                None => return Err(io::Error::other("sendfile needs a TCP stream")),
            },
        }
        io.flush().await
    }
    .await;
    if let (Some(t), Some(start)) = (&edge.telemetry, start) {
        t.metrics().hot_answer();
        t.record_access(hot_record(
            edge,
            conn,
            entry,
            request,
            &id,
            start,
            sent.is_ok(),
        ));
    }
    sent
}

/// The access record of a kept answer: the same fields the log phase
/// writes for the request that was answered in full.
fn hot_record(
    edge: &Edge,
    conn: &ConnInfo,
    entry: &hot::Entry,
    request: HotRequest<'_>,
    id: &[u8],
    start: std::time::Instant,
    complete: bool,
) -> Box<ledge_telemetry::AccessRecord> {
    let head = request.head;
    let bytes = |span: Option<(usize, usize)>| {
        let (s, e) = span?;
        head.get(s..e)
    };
    let seen = request.seen;
    let mut record = hot::record(
        edge,
        conn,
        entry,
        id,
        // The head is ready a fraction of a microsecond after `start`, below
        // what the record resolves: the time to it is recorded as zero
        // without reading the clock for it (one read less per request).
        (start, start),
        (
            seen_text(&mut seen.user_agent, bytes(request.shape.user_agent)),
            seen_text(&mut seen.referer, bytes(request.shape.referer)),
        ),
        "HTTP/1.1",
    );
    record.duration = std::time::Instant::now().saturating_duration_since(start);
    if complete {
        record.response_size = entry.body.len() as u64;
    } else {
        record.error_class = Some(ledge_telemetry::ErrorClass::ClientClosed);
    }
    record
}

/// The header-read deadline of a connection, moved forward only when it would
/// fall short of `now + timeout`, and then a little further (an eighth of the
/// timeout, at most a second), so back-to-back requests re-arm no timer.
struct Deadline {
    at: Instant,
    timeout: Duration,
    slack: Duration,
}

impl Deadline {
    fn new(timeout: Duration) -> Self {
        let slack = (timeout / 8).min(Duration::from_secs(1));
        Self {
            at: Instant::now() + timeout + slack,
            timeout,
            slack,
        }
    }

    /// Gives the next request its full timeout; true if the timer must move.
    fn extend(&mut self) -> bool {
        let want = Instant::now() + self.timeout;
        if self.at >= want {
            return false;
        }
        self.at = want + self.slack;
        true
    }
}

enum Parse {
    /// A complete, simple request head.
    Simple(Head),
    /// More bytes are needed.
    Partial,
    /// Not for the fast path (or not valid): hyper decides.
    Other,
}

/// Where the parts of a simple request head lie in the read buffer (the
/// headers' spans are in the connection's [`Spans`]).
struct Head {
    len: usize,
    is_head: bool,
    close: bool,
    target: (usize, usize),
}

/// Name and value spans of each header of the last parsed head, kept across
/// requests so parsing allocates nothing.
type Spans = Vec<[usize; 4]>;

impl Head {
    /// Builds the request; URI and header values share `bytes`.
    fn request(&self, bytes: &Bytes, spans: &Spans) -> Option<Request<Empty<Bytes>>> {
        let mut req = Request::new(Empty::new());
        *req.method_mut() = if self.is_head {
            Method::HEAD
        } else {
            Method::GET
        };
        *req.version_mut() = Version::HTTP_11;
        let (a, b) = self.target;
        *req.uri_mut() = Uri::from_maybe_shared(bytes.slice(a..b)).ok()?;
        let map = req.headers_mut();
        map.reserve(spans.len());
        for &[ns, ne, vs, ve] in spans {
            let name = HeaderName::from_bytes(bytes.get(ns..ne)?).ok()?;
            let value = HeaderValue::from_maybe_shared(bytes.slice(vs..ve)).ok()?;
            map.append(name, value);
        }
        Some(req)
    }
}

/// Parses the head at the start of `buf` and decides whether the fast path
/// takes it.
fn parse(buf: &[u8], spans: &mut Spans) -> Parse {
    if buf.is_empty() {
        return Parse::Partial;
    }
    let mut slots =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FAST_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parse::Partial,
        Err(_) => return Parse::Other,
    };
    let is_head = match req.method {
        Some("GET") => false,
        Some("HEAD") => true,
        _ => return Parse::Other,
    };
    if req.version != Some(1) {
        return Parse::Other;
    }
    let Some(path) = req.path.filter(|p| p.starts_with('/')) else {
        return Parse::Other;
    };
    let base = buf.as_ptr() as usize;
    let offset = |s: &[u8]| s.as_ptr() as usize - base;
    let start = offset(path.as_bytes());
    let mut head = Head {
        len,
        is_head,
        close: false,
        target: (start, start + path.len()),
    };
    spans.clear();
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        // Whatever frames a body or changes the protocol is hyper's.
        if name.eq_ignore_ascii_case(b"content-length")
            || name.eq_ignore_ascii_case(b"transfer-encoding")
            || name.eq_ignore_ascii_case(b"upgrade")
            || name.eq_ignore_ascii_case(b"expect")
        {
            return Parse::Other;
        }
        if name.eq_ignore_ascii_case(b"connection") {
            let v = h.value.trim_ascii();
            if v.eq_ignore_ascii_case(b"close") {
                head.close = true;
            } else if !v.eq_ignore_ascii_case(b"keep-alive") {
                return Parse::Other;
            }
        }
        let ns = offset(name);
        let vs = offset(h.value);
        spans.push([ns, ns + name.len(), vs, vs + h.value.len()]);
    }
    Parse::Simple(head)
}

/// Writes `resp` as an HTTP/1.1 response. `Err` means the connection cannot be
/// reused (a write failed, or the body broke or did not match its length).
async fn write_response<S>(
    io: &mut S,
    out: &mut Vec<u8>,
    resp: http::Response<Body>,
    is_head: bool,
    close: bool,
) -> io::Result<()>
where
    S: Stream,
{
    let (parts, mut body) = resp.into_parts();
    let status = parts.status;
    out.clear();
    push_status_line(out, status);
    let mut has_date = false;
    let mut declared: Option<u64> = None;
    let mut chunked = false;
    for (name, value) in &parts.headers {
        if name == CONNECTION {
            continue; // this layer decides whether the connection stays
        } else if name == DATE {
            has_date = true;
        } else if name == CONTENT_LENGTH {
            declared = value.to_str().ok().and_then(|v| v.trim().parse().ok());
        } else if name == TRANSFER_ENCODING {
            chunked = true;
        }
        push_field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    if !has_date {
        out.extend_from_slice(b"date: ");
        ledge_core::date::push_http_date(out);
        out.extend_from_slice(b"\r\n");
    }
    let bodiless = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let mut length = declared;
    if !bodiless && declared.is_none() && !chunked {
        if let Some(n) = body.size_hint().exact() {
            out.extend_from_slice(b"content-length: ");
            push_u64(out, n);
            out.extend_from_slice(b"\r\n");
            length = Some(n);
        } else if !is_head {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n");
            chunked = true;
        }
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !is_head && !bodiless && !chunked {
        if let Some(tcp) = io.tcp() {
            let file = match &body {
                Body::File(f) => Some(&**f),
                Body::Logged(l) => l.file_body(),
                _ => None,
            };
            let len = file.and_then(|f| f.bytes.as_ref()).map_or(0, Bytes::len);
            if let Some(f) = file.filter(|_| length == Some(len as u64)) {
                send_file(tcp, out, &f.file, f.offset, len).await?;
                if let Body::Logged(l) = &mut body {
                    l.sent_whole(len as u64);
                }
                return Ok(());
            }
        }
    }
    if is_head || bodiless {
        io.write_all(out).await?;
        drop(body);
        return io.flush().await;
    }

    let mut sent: u64 = 0;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(io::Error::other)?.into_data() else {
            continue; // trailers are not sent on HTTP/1.1
        };
        if data.is_empty() {
            continue;
        }
        sent += data.len() as u64;
        // Never past the declared length: the bytes would read as the start
        // of the next response.
        if length.is_some_and(|n| sent > n) {
            return Err(io::Error::other("body longer than its content-length"));
        }
        if chunked {
            push_hex(out, data.len());
            out.extend_from_slice(b"\r\n");
        }
        if data.len() <= COALESCE_BYTES {
            out.extend_from_slice(&data);
        } else {
            write_two(io, out, &data).await?;
            out.clear();
        }
        if chunked {
            out.extend_from_slice(b"\r\n");
        }
        // A stream's frames go out as they come; a whole body waits for the
        // end (the next poll) so the head and body share one write.
        if !body.is_end_stream() {
            io.write_all(out).await?;
            out.clear();
            io.flush().await?;
        }
    }
    if chunked {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    if !out.is_empty() {
        io.write_all(out).await?;
    }
    io.flush().await?;
    if length.is_some_and(|n| n != sent) {
        return Err(io::Error::other("body length differs from content-length"));
    }
    Ok(())
}

/// Sends `head`, then `len` bytes of `file` from `offset` with `sendfile`:
/// the head goes with `MSG_MORE`, so it leaves in the same segments as the
/// start of the body.
async fn send_file(
    tcp: &tokio::net::TcpStream,
    head: &[u8],
    file: &std::fs::File,
    mut offset: u64,
    mut len: usize,
) -> io::Result<()> {
    use rustix::net::SendFlags;
    use tokio::io::Interest;
    let mut head = head;
    while !head.is_empty() {
        let sent = tcp.try_io(Interest::WRITABLE, || {
            rustix::net::send(tcp, head, SendFlags::MORE).map_err(io::Error::from)
        });
        match sent {
            Ok(n) => head = &head[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => tcp.writable().await?,
            Err(e) => return Err(e),
        }
    }
    while len > 0 {
        let sent = tcp.try_io(Interest::WRITABLE, || {
            rustix::fs::sendfile(tcp, file, Some(&mut offset), len).map_err(io::Error::from)
        });
        match sent {
            // The file ended early: the response cannot be completed.
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => len = len.saturating_sub(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => tcp.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes `a` then `b`, with vectored writes where the stream has them.
async fn write_two<S>(io: &mut S, a: &[u8], b: &[u8]) -> io::Result<()>
where
    S: AsyncWrite + Unpin,
{
    let (mut a, mut b) = (a, b);
    while !a.is_empty() {
        let n = io
            .write_vectored(&[io::IoSlice::new(a), io::IoSlice::new(b)])
            .await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        if n < a.len() {
            a = &a[n..];
        } else {
            b = &b[n - a.len()..];
            a = &[];
        }
    }
    io.write_all(b).await
}

/// `HTTP/1.1 200 OK` and its CRLF.
pub(crate) fn push_status_line(out: &mut Vec<u8>, status: StatusCode) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// One header line with its CRLF.
pub(crate) fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn push_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(ledge_core::num::decimal_bytes(n, &mut [0; 20]));
}

fn push_hex(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b"0123456789abcdef"[n & 15];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// A stream that first yields bytes already read from it: how the fast path
/// hands a connection to hyper.
pub(crate) struct Rewind<S> {
    pre: Bytes,
    inner: S,
}

impl<S> Rewind<S> {
    pub(crate) fn new(inner: S, pre: Bytes) -> Self {
        Self { pre, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.pre.is_empty() {
            let n = this.pre.len().min(buf.remaining());
            buf.put_slice(&this.pre.split_to(n));
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn simple(req: &[u8]) -> (Head, Spans) {
        let mut spans = Vec::new();
        match parse(req, &mut spans) {
            Parse::Simple(h) => (h, spans),
            Parse::Partial => panic!("partial: {:?}", String::from_utf8_lossy(req)),
            Parse::Other => panic!("other: {:?}", String::from_utf8_lossy(req)),
        }
    }

    fn is_other(req: &[u8]) -> bool {
        matches!(parse(req, &mut Vec::new()), Parse::Other)
    }

    #[test]
    fn takes_bodiless_get_and_head() {
        let raw = b"GET /a/b?c=d HTTP/1.1\r\nHost: x.test\r\nAccept: */*\r\n\r\nGET /next";
        let (h, spans) = simple(raw);
        assert_eq!(h.len, raw.len() - "GET /next".len());
        let bytes = Bytes::copy_from_slice(&raw[..h.len]);
        let req = h.request(&bytes, &spans).unwrap();
        assert_eq!(req.method(), Method::GET);
        assert_eq!(req.uri().path(), "/a/b");
        assert_eq!(req.uri().query(), Some("c=d"));
        assert_eq!(req.headers()["host"], "x.test");
        assert_eq!(req.headers()["accept"], "*/*");
        assert!(!h.close);

        let (h, _) = simple(b"HEAD / HTTP/1.1\r\nConnection: Close\r\n\r\n");
        assert!(h.is_head && h.close);
        let (h, _) = simple(b"GET / HTTP/1.1\r\nconnection: keep-alive\r\n\r\n");
        assert!(!h.close);
    }

    #[test]
    fn leaves_everything_else_to_hyper() {
        let mut spans = Vec::new();
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nHost: x", &mut spans),
            Parse::Partial
        ));
        assert!(matches!(parse(b"", &mut spans), Parse::Partial));
        for raw in [
            &b"POST / HTTP/1.1\r\nContent-Length: 1\r\n\r\nx"[..],
            b"GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            b"GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            b"GET / HTTP/1.1\r\nConnection: close, TE\r\n\r\n",
            b"GET / HTTP/1.0\r\n\r\n",
            b"GET http://x.test/ HTTP/1.1\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\n\r\n",
            b"DELETE /x HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
            b"GET /\x01 HTTP/1.1\r\n\r\n",
            // Control characters in a value: `hot::shape` relies on the
            // parser refusing them (every value it sees is one
            // `HeaderValue` takes).
            b"GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: x\x01y\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: x\x7fy\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: x\x00y\r\n\r\n",
            b"GET / HTTP/2.0\r\n\r\n",
        ] {
            assert!(is_other(raw), "{:?}", String::from_utf8_lossy(raw));
        }
        // More headers than the fast path holds.
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_FAST_HEADERS {
            many.extend_from_slice(format!("x-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert!(is_other(&many));
    }

    #[test]
    fn numbers_and_dates() {
        let mut out = Vec::new();
        push_u64(&mut out, 0);
        out.push(b' ');
        push_u64(&mut out, 18_446_744_073_709_551_615);
        out.push(b' ');
        push_hex(&mut out, 0x1f40);
        out.push(b' ');
        push_hex(&mut out, 0);
        assert_eq!(out, b"0 18446744073709551615 1f40 0");
    }

    #[test]
    fn deadline_moves_only_when_it_falls_short() {
        let mut d = Deadline::new(Duration::from_secs(8));
        let first = d.at;
        assert!(!d.extend(), "a fresh deadline has its slack");
        assert_eq!(d.at, first);
        d.at = Instant::now();
        assert!(d.extend());
        assert!(d.at >= Instant::now() + Duration::from_secs(8));
    }

    impl Stream for tokio::io::DuplexStream {}

    /// What `write_response` puts on the wire for `resp`, and its result.
    async fn written(resp: http::Response<Body>) -> (io::Result<()>, Vec<u8>) {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let r = write_response(&mut a, &mut Vec::new(), resp, false, false).await;
        drop(a);
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        (r, got)
    }

    #[tokio::test]
    async fn bodies_never_pass_their_declared_length() {
        let framed = |body: &'static str, len: &'static str| {
            let mut r = http::Response::new(Body::full(body));
            r.headers_mut()
                .insert(CONTENT_LENGTH, HeaderValue::from_static(len));
            r
        };
        let (r, got) = written(framed("abc", "3")).await;
        assert!(r.is_ok());
        assert!(got.ends_with(b"\r\n\r\nabc"), "{got:?}");
        // Longer than declared: nothing of the body goes out.
        let (r, got) = written(framed("abcdef", "3")).await;
        assert!(r.is_err());
        assert!(!got.windows(3).any(|w| w == b"abc"), "{got:?}");
        // Shorter: what there is goes out, and the connection is not reused.
        let (r, got) = written(framed("ab", "3")).await;
        assert!(r.is_err());
        assert!(got.ends_with(b"ab"), "{got:?}");
    }
}
