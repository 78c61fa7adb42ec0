//! Listeners: accept loop, per-connection limits, HTTP/1.1 and h2 (prior
//! knowledge on cleartext), graceful drain.
//!
//! Limits enforced here, before any request reaches the pipeline:
//! - header bytes (hyper's read buffer; over it → 431) and header count;
//! - time to the first byte and to a complete request head, which also bounds
//!   how long an idle keep-alive connection is kept;
//! - h2: concurrent streams, header list size, and hyper's rapid-reset guards
//!   (pending-accept and locally-errored reset stream caps); a connection
//!   that starts no request for the header-read timeout gets a graceful
//!   `GOAWAY` (`h2io::drive`), as an idle HTTP/1.1 one is closed;
//! - concurrent connections (a new one past the cap is closed at once).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use ledge_tls::CertResolver;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::h1::{self, Ended, Rewind};
use crate::h2io::{self, InlineExecutor};
use crate::hot;
use crate::pipeline::{ConnInfo, Edge};

/// Connection-level limits.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Most bytes of request head (request line + headers); at least 8 KiB.
    pub max_header_bytes: usize,
    /// Most request headers.
    pub max_headers: usize,
    /// Time allowed for a complete request head, and for an idle keep-alive
    /// connection to start its next request.
    pub header_read_timeout: Duration,
    /// Most concurrent h2 streams per connection.
    pub max_h2_streams: u32,
    /// Most concurrent connections.
    pub max_connections: usize,
    /// How long a graceful drain waits for in-flight requests.
    pub drain_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_header_bytes: 32 * 1024,
            max_headers: 100,
            header_read_timeout: Duration::from_secs(30),
            max_h2_streams: 128,
            max_connections: 16 * 1024,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// Serves `listener` until `shutdown` resolves, then stops accepting and waits
/// (up to the drain timeout) for in-flight requests to finish. With a
/// certificate resolver the listener speaks TLS (ALPN `h2`, `http/1.1`);
/// without one it is cleartext (HTTP/1.1, or h2 with prior knowledge).
pub async fn serve(
    listener: TcpListener,
    edge: Arc<Edge>,
    limits: ServerLimits,
    tls: Option<Arc<CertResolver>>,
    shutdown: impl Future<Output = ()>,
) {
    let mut h1 = http1::Builder::new();
    h1.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(limits.max_headers);
    let mut h2 = http2::Builder::new(InlineExecutor);
    h2.timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_h2_streams)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_pending_accept_reset_streams(20)
        .max_local_error_reset_streams(1024)
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10));
    let protocols = Arc::new(Protocols {
        h1,
        h2,
        fast: h1::Limits {
            max_header_bytes: limits.max_header_bytes.max(8192),
            max_headers: limits.max_headers,
            header_read_timeout: limits.header_read_timeout,
        },
    });
    // The drain: every connection holds a receiver; `true` asks it to finish
    // its in-flight requests and close; the sender sees when all are gone.
    let (drain, _) = tokio::sync::watch::channel(false);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    // Accepted sockets inherit `TCP_NODELAY` from the listener on Linux: one
    // call here instead of one per connection. If the listener refuses it,
    // each connection is set on its own.
    let nodelay_inherited = rustix::net::sockopt::set_tcp_nodelay(&listener, true).is_ok();
    tokio::pin!(shutdown);

    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        if !nodelay_inherited {
            let _ = stream.set_nodelay(true);
        }
        let edge = edge.clone();
        let protocols = protocols.clone();
        let watcher = drain.subscribe();
        let first_bytes = limits.header_read_timeout;
        let tls = tls.clone();
        tokio::spawn(async move {
            // hyper's own timer starts once it knows the protocol: bound the wait
            // for the first bytes (or the whole TLS handshake) here.
            match tls {
                None => {
                    let Ok(Some(is_h2)) =
                        tokio::time::timeout(first_bytes, sniff_h2(&stream)).await
                    else {
                        return;
                    };
                    let conn = ConnInfo {
                        peer,
                        tls: false,
                        sni: None,
                        tls_version: None,
                    };
                    protocols.drive(stream, is_h2, edge, conn, watcher).await;
                }
                Some(resolver) => {
                    let Ok(Some((stream, sni))) =
                        tokio::time::timeout(first_bytes, handshake(stream, resolver)).await
                    else {
                        return;
                    };
                    let is_h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
                    let tls_version = match stream.get_ref().1.protocol_version() {
                        Some(rustls::ProtocolVersion::TLSv1_3) => Some("TLSv1.3"),
                        Some(rustls::ProtocolVersion::TLSv1_2) => Some("TLSv1.2"),
                        _ => None,
                    };
                    let conn = ConnInfo {
                        peer,
                        tls: true,
                        sni,
                        tls_version,
                    };
                    protocols.drive(stream, is_h2, edge, conn, watcher).await;
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    let _ = drain.send(true);
    if tokio::time::timeout(limits.drain_timeout, drain.closed())
        .await
        .is_err()
    {
        tracing::warn!("drain timeout: closing the connections still open");
    }
}

/// Answers a request that came through hyper. An h2 `GET` may get a kept
/// answer (`crate::hot`), when `hot_ok` (h2, and a peer whose forwarding
/// headers are not believed).
fn answer(
    edge: &Arc<Edge>,
    conn: &Arc<ConnInfo>,
    req: hyper::Request<hyper::body::Incoming>,
    hot_ok: bool,
) -> Answer {
    use http_body::Body as _;
    thread_local! {
        /// The key of the request being looked up, reused.
        static KEY: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    if hot_ok && req.body().is_end_stream() {
        let (parts, body) = req.into_parts();
        let found = KEY.with(|key| {
            let mut key = key.borrow_mut();
            let shape = hot::h2_key(&parts, conn, &mut key)?;
            let version = edge.router.version();
            match hot::lookup(version, &key) {
                hot::Lookup::Hit(entry) => hot::h2_response(edge, conn, &entry, shape).map(Ok),
                hot::Lookup::Keep => Some(Err((version, key.clone()))),
                hot::Lookup::Pass => None,
            }
        });
        let keep = match found {
            Some(Ok(resp)) => return Box::pin(std::future::ready(Ok(resp))),
            Some(Err(keep)) => Some(keep),
            None => None,
        };
        let req = hyper::Request::from_parts(parts, body);
        let (edge, conn) = (edge.clone(), conn.clone());
        return Box::pin(async move {
            Ok(match keep {
                Some((version, key)) => {
                    let (resp, info) = edge.handle_hot(req, &conn).await;
                    if let Some(entry) =
                        info.and_then(|info| hot::entry(&resp, info, hot::Form::Http2))
                    {
                        hot::keep(version, &key, entry);
                    }
                    resp
                }
                None => edge.handle(req, &conn).await,
            })
        });
    }
    let (edge, conn) = (edge.clone(), conn.clone());
    // Boxed: hyper moves each stream's future around.
    Box::pin(async move { Ok(edge.handle(req, &conn).await) })
}

/// A request's answer as hyper's service gives it.
type Answer =
    Pin<Box<dyn Future<Output = Result<hyper::Response<crate::body::Body>, Infallible>> + Send>>;

/// The HTTP/1.1 and h2 connection builders, configured once, and the limits
/// of the HTTP/1.1 fast path.
struct Protocols {
    h1: http1::Builder,
    h2: http2::Builder<InlineExecutor>,
    fast: h1::Limits,
}

impl Protocols {
    /// Serves one connection until it ends or the drain closes it: HTTP/1.1
    /// through the fast path until a request needs hyper, h2 through hyper.
    async fn drive<S>(
        &self,
        io: S,
        is_h2: bool,
        edge: Arc<Edge>,
        conn: ConnInfo,
        mut drain: tokio::sync::watch::Receiver<bool>,
    ) where
        S: h1::Stream + Send + 'static,
    {
        let peer = conn.peer;
        let conn = Arc::new(conn);
        let io = if is_h2 {
            Rewind::new(io, bytes::Bytes::new())
        } else {
            match h1::serve(io, &edge, &conn, self.fast, &mut drain).await {
                Ended::Closed => return,
                Ended::Handoff(io, read) => Rewind::new(io, read),
            }
        };
        let hot_ok = is_h2
            && !edge
                .config
                .trusted_proxies
                .iter()
                .any(|c| c.contains(peer.ip()));
        // Requests, for the h2 idle limit (`h2io::drive`).
        let activity = h2io::Activity::default();
        let marks = activity.clone();
        let svc = service_fn(move |req| {
            marks.mark();
            answer(&edge, &conn, req, hot_ok)
        });
        // Held until the connection is done: the drain waits for every holder.
        let _held = drain.clone();
        // Resolves once a drain starts (or the server is gone).
        let drained = async move {
            let _ = drain.wait_for(|d| *d).await;
        };
        let result = if is_h2 {
            // Writes leave once per wake-up of the connection (`h2io`).
            let (io, sender) = h2io::coalesce(io);
            let conn = self.h2.serve_connection(TokioIo::new(io), svc);
            let idle = (self.fast.header_read_timeout, activity);
            h2io::drive(conn, sender, drained, idle, |c| c.graceful_shutdown()).await
        } else {
            // Upgrades (WebSocket) hand the socket to the proxy once answered.
            let conn = self
                .h1
                .serve_connection(TokioIo::new(io), svc)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => r,
                () = drained => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            }
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, %peer, "connection ended with an error");
        }
    }
}

/// Reads the ClientHello, picks the certificate for its SNI name without
/// blocking a thread, and finishes the handshake (with an alert when there is
/// no certificate for the name). Returns the stream and the SNI name.
async fn handshake(
    stream: tokio::net::TcpStream,
    resolver: Arc<CertResolver>,
) -> Option<(
    tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    Option<Arc<str>>,
)> {
    let acceptor =
        tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream);
    let start = acceptor.await.ok()?;
    let sni: Option<Arc<str>> = start
        .client_hello()
        .server_name()
        .map(|n| n.to_ascii_lowercase().into());
    let config = match resolver.resolve(sni.as_deref()).await {
        Some(key) => resolver.server_config(key),
        None => {
            tracing::debug!(sni = ?sni, "no certificate for this name: refusing the handshake");
            resolver.refusing_config()
        }
    };
    let stream = start.into_stream(config).await.ok()?;
    Some((stream, sni))
}

/// The h2 client preface starts with `PRI`; no HTTP/1.1 method does.
const H2_PREFIX: &[u8] = b"PRI";

/// Waits for enough bytes to tell h2 (prior knowledge) from HTTP/1.x.
/// `None` when the peer closed without sending anything.
async fn sniff_h2(stream: &tokio::net::TcpStream) -> Option<bool> {
    let mut buf = [0u8; 3];
    loop {
        let n = stream.peek(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        if buf[..n] != H2_PREFIX[..n] {
            return Some(false);
        }
        if n == H2_PREFIX.len() {
            return Some(true);
        }
        // A partial "P" or "PR": wait for the rest (bounded by the caller).
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[cfg(test)]
mod tests {
    /// `serve` sets `TCP_NODELAY` once, on the listener, and relies on the
    /// kernel to give it to every accepted socket.
    #[tokio::test]
    async fn accepted_sockets_inherit_nodelay_from_the_listener() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let plain = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (before, _) = listener.accept().await.unwrap();
        assert!(!before.nodelay().unwrap(), "off unless asked for");
        rustix::net::sockopt::set_tcp_nodelay(&listener, true).unwrap();
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (after, _) = listener.accept().await.unwrap();
        assert!(after.nodelay().unwrap());
        drop(plain);
    }
}
