//! Listeners: accept loop, per-connection limits, HTTP/1.1 and h2 (prior
//! knowledge on cleartext), graceful drain.
//!
//! Limits enforced here, before any request reaches the pipeline:
//! - header bytes (hyper's read buffer; over it → 431) and header count;
//! - time to the first byte and to a complete request head, which also bounds
//!   how long an idle keep-alive connection is kept;
//! - h2 (served by `ledge_h2`): concurrent streams, header list size (over
//!   it → 431), a budget of resets per second against rapid reset, and the
//!   flow-control windows that bound buffered request bodies; a connection
//!   with no stream for the header-read timeout gets a graceful `GOAWAY`, as
//!   an idle HTTP/1.1 one is closed;
//! - concurrent connections (a new one past the cap is closed at once).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use ledge_tls::CertResolver;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::body::Body;
use crate::h1::{self, Ended, Rewind};
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
    let h2 = ledge_h2::Config {
        max_concurrent_streams: limits.max_h2_streams,
        max_header_list_size: u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX),
        idle_timeout: limits.header_read_timeout,
        handshake_timeout: limits.header_read_timeout,
        ..ledge_h2::Config::default()
    };
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

/// Answers a request: an h2 `GET` may get a kept answer (`crate::hot`) at
/// once, when `hot_ok` (h2, and a peer whose forwarding headers are not
/// believed); everything else is a future of the pipeline's answer.
fn answer<B>(
    edge: &Arc<Edge>,
    conn: &Arc<ConnInfo>,
    req: http::Request<B>,
    hot_ok: bool,
) -> ledge_h2::Reply<Later, Body>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
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
            Some(Ok(resp)) => return ledge_h2::Reply::Ready(resp),
            Some(Err(keep)) => Some(keep),
            None => None,
        };
        let req = http::Request::from_parts(parts, body);
        let (edge, conn) = (edge.clone(), conn.clone());
        return ledge_h2::Reply::Later(Box::pin(async move {
            match keep {
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
            }
        }));
    }
    let (edge, conn) = (edge.clone(), conn.clone());
    // Boxed: the connection keeps each stream's future until it is done.
    ledge_h2::Reply::Later(Box::pin(async move { edge.handle(req, &conn).await }))
}

/// The pipeline's answer to a request, to be waited for.
type Later = Pin<Box<dyn Future<Output = http::Response<Body>> + Send>>;

/// A request's answer as hyper's service gives it.
type Answer = Pin<Box<dyn Future<Output = Result<hyper::Response<Body>, Infallible>> + Send>>;

/// The HTTP/1.1 connection builder and the h2 configuration, made once,
/// and the limits of the HTTP/1.1 fast path.
struct Protocols {
    h1: http1::Builder,
    h2: ledge_h2::Config,
    fast: h1::Limits,
}

impl Protocols {
    /// Serves one connection until it ends or the drain closes it: HTTP/1.1
    /// through the fast path until a request needs hyper, h2 through
    /// `ledge_h2`.
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
        // Held until the connection is done: the drain waits for every holder.
        let _held = drain.clone();
        if is_h2 {
            let hot_ok = !edge
                .config
                .trusted_proxies
                .iter()
                .any(|c| c.contains(peer.ip()));
            let drained = async move {
                let _ = drain.wait_for(|d| *d).await;
            };
            let handler = move |req| answer(&edge, &conn, req, hot_ok);
            if let Err(e) = ledge_h2::serve(io, &self.h2, handler, drained).await {
                tracing::debug!(error = %e, %peer, "h2 connection ended with an error");
            }
            return;
        }
        let io = match h1::serve(io, &edge, &conn, self.fast, &mut drain).await {
            Ended::Closed => return,
            Ended::Handoff(io, read) => Rewind::new(io, read),
        };
        let svc = service_fn(move |req| -> Answer {
            match answer(&edge, &conn, req, false) {
                ledge_h2::Reply::Ready(resp) => Box::pin(std::future::ready(Ok(resp))),
                ledge_h2::Reply::Later(f) => Box::pin(async move { Ok(f.await) }),
            }
        });
        // Resolves once a drain starts (or the server is gone).
        let drained = async move {
            let _ = drain.wait_for(|d| *d).await;
        };
        // Upgrades (WebSocket) hand the socket to the proxy once answered.
        let conn = self
            .h1
            .serve_connection(TokioIo::new(io), svc)
            .with_upgrades();
        tokio::pin!(conn);
        let result = tokio::select! {
            r = conn.as_mut() => r,
            () = drained => {
                conn.as_mut().graceful_shutdown();
                conn.await
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
