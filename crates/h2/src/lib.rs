//! Ledge's HTTP/2 server side (RFC 9113): one connection served by one task,
//! with no task per stream and no queue of frames between layers.
//!
//! A connection reads what the socket has, handles every whole frame in it,
//! calls the [`Handler`] for each request as soon as its header block is
//! complete, and answers that are ready at once (kept answers) are encoded
//! into the connection's write buffer in the same pass. Everything the pass
//! produced leaves in one write. Answers that take time are futures the
//! connection polls; response bodies are polled while the peer's
//! flow-control windows allow.
//!
//! Header compression is [`ledge_hpack`]: responses use the static table and
//! literals only, so an encoded block depends on nothing but the fields, and
//! the encoder keeps no per-field state.
//!
//! What a client can make the connection spend is bounded: streams
//! ([`Config::max_concurrent_streams`]), header lists
//! ([`Config::max_header_list_size`], and a header block's encoded size),
//! buffered request bytes (the flow-control windows it advertises), output
//! waiting for a client that does not read (reading stops above a high
//! water mark), and resets (a budget per second, against rapid reset).
#![forbid(unsafe_code)]

mod body;
mod conn;
pub mod frame;

use std::future::Future;
use std::time::Duration;

pub use body::{BodyError, RecvBody};
pub use conn::serve;
pub use frame::Reason;

/// A connection's limits and windows.
#[derive(Debug, Clone)]
pub struct Config {
    /// Streams a client may have open at once (advertised).
    pub max_concurrent_streams: u32,
    /// Largest decoded header list (RFC 9113 §6.5.2), advertised; a request
    /// over it gets 431.
    pub max_header_list_size: u32,
    /// Each stream's receive window: request bytes a client may send before
    /// the handler reads them.
    pub stream_window: u32,
    /// The connection's receive window, across its streams.
    pub connection_window: u32,
    /// A connection with no open stream for this long is closed (with a
    /// GOAWAY), after one to two times this. So is one whose answers wait
    /// for window while the client opens none: after one to three times
    /// this, checked at the same timer.
    pub idle_timeout: Duration,
    /// Time for the client's preface and first SETTINGS.
    pub handshake_timeout: Duration,
    /// Streams a client may reset (or cause to be reset) per second, after a
    /// burst of twice this; past it the connection ends with
    /// `ENHANCE_YOUR_CALM`.
    pub resets_per_second: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_concurrent_streams: 128,
            max_header_list_size: 64 * 1024,
            stream_window: 1 << 20,
            connection_window: 2 << 20,
            idle_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            resets_per_second: 100,
        }
    }
}

/// What a handler gives for a request: an answer now, or a future of one.
pub enum Reply<F, B> {
    /// The answer, ready: it is encoded in the same pass as the request.
    Ready(http::Response<B>),
    /// An answer to wait for; the connection polls it.
    Later(F),
}

/// Answers the requests of a connection.
pub trait Handler: Send + 'static {
    /// Response bodies.
    type Body: http_body::Body<Data = bytes::Bytes> + Send + Unpin + 'static;
    /// An answer that takes time.
    type Future: Future<Output = http::Response<Self::Body>> + Send + Unpin + 'static;

    /// Called once per request, when its header block is complete.
    fn call(&mut self, req: http::Request<RecvBody>) -> Reply<Self::Future, Self::Body>;
}

impl<F, Fut, B> Handler for F
where
    F: FnMut(http::Request<RecvBody>) -> Reply<Fut, B> + Send + 'static,
    Fut: Future<Output = http::Response<B>> + Send + Unpin + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
{
    type Body = B;
    type Future = Fut;

    fn call(&mut self, req: http::Request<RecvBody>) -> Reply<Fut, B> {
        self(req)
    }
}

/// Why a connection ended other than by a clean close.
#[derive(Debug)]
pub enum Error {
    /// The socket failed.
    Io(std::io::Error),
    /// The client broke the protocol; the connection sent GOAWAY with this.
    Protocol(Reason),
    /// The client did not start the connection in time.
    HandshakeTimeout,
    /// Answers waited for window and the client opened none for a whole
    /// idle period: it was not reading.
    Stalled,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Io(e) => write!(f, "i/o error: {e}"),
            Error::Protocol(r) => write!(f, "the client broke the protocol: {r}"),
            Error::HandshakeTimeout => f.write_str("no connection preface in time"),
            Error::Stalled => f.write_str("the client stopped opening flow-control windows"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}
