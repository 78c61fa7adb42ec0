//! The HTTP/2 server over real sockets: the `h2` crate as a client for
//! ordinary traffic, and hand-written frames for what a client must not do.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use ledge_h2::frame::{self, flag, kind, Head, Reason};
use ledge_h2::{Config, RecvBody, Reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

type TestBody = BoxBody<Bytes, std::io::Error>;
type Later = Pin<Box<dyn Future<Output = Response<TestBody>> + Send>>;

fn full(b: impl Into<Bytes>) -> TestBody {
    Full::new(b.into()).map_err(|e| match e {}).boxed()
}

/// A body fed through a channel, to answer over time.
struct Channel(mpsc::Receiver<Bytes>);

impl http_body::Body for Channel {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

/// What the test server does with a request, by its path.
fn route(req: Request<RecvBody>, seen: Arc<AtomicUsize>) -> Reply<Later, TestBody> {
    seen.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path().to_string();
    match path.as_str() {
        "/hello" => {
            let mut resp = Response::new(full("hello"));
            resp.headers_mut()
                .insert("content-type", "text/plain".parse().unwrap());
            resp.headers_mut().insert("x-path", path.parse().unwrap());
            Reply::Ready(resp)
        }
        "/echo" => Reply::Later(Box::pin(async move {
            let (parts, body) = req.into_parts();
            let collected = body.collect().await.unwrap();
            let trailers = collected.trailers().cloned();
            let bytes = collected.to_bytes();
            let mut resp = Response::new(full(bytes));
            if let Some(t) = trailers {
                for (k, v) in &t {
                    resp.headers_mut().insert(k.clone(), v.clone());
                }
            }
            if let Some(a) = parts.uri.authority() {
                resp.headers_mut()
                    .insert("x-authority", a.as_str().parse().unwrap());
            }
            resp
        })),
        "/big" => {
            let body: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
            Reply::Ready(Response::new(full(body)))
        }
        "/big-head" => {
            let mut resp = Response::new(full("x"));
            for i in 0..40 {
                let v = "v".repeat(1000);
                resp.headers_mut().append(
                    http::HeaderName::from_bytes(format!("x-long-{i}").as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            Reply::Ready(resp)
        }
        "/stream" => {
            let (tx, rx) = mpsc::channel(4);
            tokio::spawn(async move {
                for i in 0..5 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    if tx.send(Bytes::from(format!("part{i};"))).await.is_err() {
                        return;
                    }
                }
            });
            Reply::Ready(Response::new(Channel(rx).boxed()))
        }
        "/slow" => Reply::Later(Box::pin(async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Response::new(full("slow"))
        })),
        "/never" => Reply::Later(Box::pin(std::future::pending())),
        // Answers at once, and keeps the request body, unread, for ever.
        "/hello-held" => {
            let (_, body) = req.into_parts();
            tokio::spawn(async move {
                let _body = body;
                std::future::pending::<()>().await;
            });
            Reply::Ready(Response::new(full("held")))
        }
        "/no-content" => {
            let mut resp = Response::new(full(""));
            *resp.status_mut() = StatusCode::NO_CONTENT;
            Reply::Ready(resp)
        }
        // Holds the request body without reading it.
        "/hold" => Reply::Later(Box::pin(async move {
            let _body = req;
            std::future::pending().await
        })),
        _ => {
            let mut resp = Response::new(full("not here"));
            *resp.status_mut() = StatusCode::NOT_FOUND;
            Reply::Ready(resp)
        }
    }
}

struct Server {
    addr: SocketAddr,
    seen: Arc<AtomicUsize>,
    drain: watch::Sender<bool>,
    ended: mpsc::UnboundedReceiver<Result<(), String>>,
}

async fn start(config: Config) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let (drain, drain_rx) = watch::channel(false);
    let (ended_tx, ended) = mpsc::unbounded_channel();
    let counter = seen.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let config = config.clone();
            let seen = counter.clone();
            let mut drain = drain_rx.clone();
            let ended = ended_tx.clone();
            tokio::spawn(async move {
                let handler = move |req| route(req, seen.clone());
                let drained = async move {
                    let _ = drain.wait_for(|d| *d).await;
                };
                let r = ledge_h2::serve(tcp, &config, handler, drained).await;
                let _ = ended.send(r.map_err(|e| e.to_string()));
            });
        }
    });
    Server {
        addr,
        seen,
        drain,
        ended,
    }
}

async fn client(addr: SocketAddr) -> h2::client::SendRequest<Bytes> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client.ready().await.unwrap()
}

async fn read_all(mut body: h2::RecvStream) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        body.flow_control().release_capacity(chunk.len()).unwrap();
        out.extend_from_slice(&chunk);
    }
    out
}

fn get(path: &str) -> Request<()> {
    Request::get(format!("https://example.test{path}"))
        .body(())
        .unwrap()
}

#[tokio::test]
async fn answers_requests_on_concurrent_streams() {
    let server = start(Config::default()).await;
    let mut c = client(server.addr).await;
    let mut waiting = Vec::new();
    for _ in 0..20 {
        let (resp, _) = c.send_request(get("/hello"), true).unwrap();
        waiting.push(resp);
        c = c.ready().await.unwrap();
    }
    let (slow, _) = c.send_request(get("/slow"), true).unwrap();
    for resp in waiting {
        let resp = resp.await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/plain");
        assert_eq!(resp.headers()["x-path"], "/hello");
        // Added from the body's exact size.
        assert_eq!(resp.headers()["content-length"], "5");
        assert!(resp.headers().contains_key("date"));
        assert_eq!(read_all(resp.into_body()).await, b"hello");
    }
    let slow = slow.await.unwrap();
    assert_eq!(read_all(slow.into_body()).await, b"slow");
    let missing = c.send_request(get("/nope"), true).unwrap().0.await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(server.seen.load(Ordering::SeqCst), 22);
}

#[tokio::test]
async fn request_and_response_bodies_follow_flow_control_both_ways() {
    let server = start(Config {
        stream_window: 70_000,
        connection_window: 100_000,
        ..Config::default()
    })
    .await;
    let mut c = client(server.addr).await;
    // 2 MB up, through windows far smaller than the body.
    let upload: Vec<u8> = (0..2_000_000u32).map(|i| (i % 241) as u8).collect();
    let req = Request::post("https://example.test/echo").body(()).unwrap();
    let (resp, mut send) = c.send_request(req, false).unwrap();
    let data = Bytes::from(upload.clone());
    let mut at = 0;
    while at < data.len() {
        send.reserve_capacity(data.len() - at);
        let cap = std::future::poll_fn(|cx| send.poll_capacity(cx))
            .await
            .unwrap()
            .unwrap();
        let n = cap.min(data.len() - at);
        send.send_data(data.slice(at..at + n), false).unwrap();
        at += n;
    }
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", "abc".parse().unwrap());
    send.send_trailers(trailers).unwrap();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-checksum"], "abc");
    assert_eq!(resp.headers()["x-authority"], "example.test");
    assert_eq!(read_all(resp.into_body()).await, upload);
    // 3 MB down, through the client's default 64 KiB windows.
    let big = c.send_request(get("/big"), true).unwrap().0.await.unwrap();
    let got = read_all(big.into_body()).await;
    assert_eq!(got.len(), 3_000_000);
    assert!(got.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
}

#[tokio::test]
async fn large_heads_use_continuation_and_bodies_stream() {
    let server = start(Config::default()).await;
    let mut c = client(server.addr).await;
    let resp = c
        .send_request(get("/big-head"), true)
        .unwrap()
        .0
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-long-39"].len(), 1000);
    // 40 long fields, `date`, and `content-length` from the body's size.
    assert_eq!(resp.headers().len(), 42);
    let stream = c
        .send_request(get("/stream"), true)
        .unwrap()
        .0
        .await
        .unwrap();
    // A body of unknown size has no `content-length`.
    assert!(!stream.headers().contains_key("content-length"));
    assert_eq!(
        read_all(stream.into_body()).await,
        b"part0;part1;part2;part3;part4;"
    );
}

#[tokio::test]
async fn a_drain_sends_goaway_and_lets_streams_in_flight_finish() {
    let mut server = start(Config::default()).await;
    let mut c = client(server.addr).await;
    let (slow, _) = c.send_request(get("/slow"), true).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    server.drain.send(true).unwrap();
    let slow = slow.await.unwrap();
    assert_eq!(read_all(slow.into_body()).await, b"slow");
    let ended = tokio::time::timeout(Duration::from_secs(5), server.ended.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ended, Ok(()));
}

// ---- hand-written frames ----

/// A raw client: writes frames, reads frames.
struct Raw {
    tcp: TcpStream,
    buf: Vec<u8>,
    enc: ledge_hpack::Encoder,
}

impl Raw {
    async fn connect(addr: SocketAddr) -> Raw {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        tcp.write_all(frame::PREFACE).await.unwrap();
        let mut out = Vec::new();
        frame::write_settings(&mut out, &[]);
        tcp.write_all(&out).await.unwrap();
        let mut raw = Raw {
            tcp,
            buf: Vec::new(),
            enc: ledge_hpack::Encoder::new(),
        };
        // The server's SETTINGS, maybe a WINDOW_UPDATE, and the ACK of ours.
        let mut acked = false;
        while !acked {
            let (h, _) = raw.next().await.expect("handshake");
            acked = h.kind == kind::SETTINGS && h.has(flag::ACK);
        }
        raw
    }

    async fn send(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let mut out = Vec::new();
        frame::write_head(&mut out, payload.len(), kind, flags, stream);
        out.extend_from_slice(payload);
        self.tcp.write_all(&out).await.unwrap();
    }

    fn request_block(&mut self, method: &str, path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
        let mut b = Vec::new();
        self.enc.begin(&mut b);
        self.enc.field(b":method", method.as_bytes(), false, &mut b);
        self.enc.field(b":scheme", b"https", false, &mut b);
        self.enc
            .field(b":authority", b"example.test", false, &mut b);
        self.enc.field(b":path", path.as_bytes(), false, &mut b);
        for (n, v) in extra {
            self.enc.field(n.as_bytes(), v.as_bytes(), false, &mut b);
        }
        b
    }

    /// The next frame, or `None` once the server closed.
    async fn next(&mut self) -> Option<(Head, Vec<u8>)> {
        loop {
            if self.buf.len() >= 9 {
                let h = Head::parse(self.buf[..9].try_into().unwrap());
                if self.buf.len() >= 9 + h.len {
                    let payload = self.buf[9..9 + h.len].to_vec();
                    self.buf.drain(..9 + h.len);
                    return Some((h, payload));
                }
            }
            let mut chunk = vec![0u8; 65536];
            let n = tokio::time::timeout(Duration::from_secs(5), self.tcp.read(&mut chunk))
                .await
                .expect("the server answers within 5 s")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads until a frame of `kind` arrives (skipping others).
    async fn until(&mut self, want: u8) -> Option<(Head, Vec<u8>)> {
        while let Some((h, p)) = self.next().await {
            if h.kind == want {
                return Some((h, p));
            }
        }
        None
    }

    /// Reads until GOAWAY and returns its error code; the connection must
    /// then close.
    async fn goaway(&mut self) -> Reason {
        let (_, p) = self.until(kind::GOAWAY).await.expect("a GOAWAY");
        Reason(u32::from_be_bytes(p[4..8].try_into().unwrap()))
    }

    /// The error code of the next RST_STREAM, and its stream.
    async fn rst(&mut self) -> (u32, Reason) {
        let (h, p) = self.until(kind::RST_STREAM).await.expect("a RST_STREAM");
        (
            h.stream,
            Reason(u32::from_be_bytes(p[..4].try_into().unwrap())),
        )
    }
}

fn status_of(block: &[u8]) -> String {
    fields_of(block)
        .into_iter()
        .find(|(n, _)| n == ":status")
        .map(|(_, v)| v)
        .unwrap_or_default()
}

#[tokio::test]
async fn pings_and_settings_are_acknowledged() {
    let server = start(Config::default()).await;
    let mut raw = Raw::connect(server.addr).await;
    raw.send(kind::PING, 0, 0, b"12345678").await;
    let (h, p) = raw.until(kind::PING).await.unwrap();
    assert!(h.has(flag::ACK));
    assert_eq!(p, b"12345678");
    raw.send(kind::SETTINGS, 0, 0, &[0, 4, 0, 1, 0, 0]).await;
    let (h, p) = raw.until(kind::SETTINGS).await.unwrap();
    assert!(h.has(flag::ACK) && p.is_empty());
    // A request still works after the settings change.
    let block = raw.request_block("GET", "/hello", &[]);
    raw.send(
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        1,
        &block,
    )
    .await;
    let (h, p) = raw.until(kind::HEADERS).await.unwrap();
    assert_eq!(h.stream, 1);
    assert_eq!(status_of(&p), "200");
}

#[tokio::test]
async fn connection_errors_end_with_goaway() {
    let server = start(Config::default()).await;
    // DATA on stream 0.
    let mut raw = Raw::connect(server.addr).await;
    raw.send(kind::DATA, 0, 0, b"x").await;
    assert_eq!(raw.goaway().await, Reason::PROTOCOL_ERROR);
    assert!(raw.next().await.is_none(), "closed after the GOAWAY");
    // A frame over the maximum size.
    let mut raw = Raw::connect(server.addr).await;
    raw.send(kind::DATA, 0, 1, &vec![0; 20_000]).await;
    assert_eq!(raw.goaway().await, Reason::FRAME_SIZE_ERROR);
    // A connection window pushed past 2^31-1.
    let mut raw = Raw::connect(server.addr).await;
    raw.send(kind::WINDOW_UPDATE, 0, 0, &0x7fff_ffffu32.to_be_bytes())
        .await;
    assert_eq!(raw.goaway().await, Reason::FLOW_CONTROL_ERROR);
    // A header block that is not valid HPACK.
    let mut raw = Raw::connect(server.addr).await;
    raw.send(
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        1,
        &[0x80],
    )
    .await;
    assert_eq!(raw.goaway().await, Reason::COMPRESSION_ERROR);
    // A frame between HEADERS and its CONTINUATION.
    let mut raw = Raw::connect(server.addr).await;
    let block = raw.request_block("GET", "/hello", &[]);
    raw.send(kind::HEADERS, flag::END_STREAM, 1, &block).await;
    raw.send(kind::PING, 0, 0, b"12345678").await;
    assert_eq!(raw.goaway().await, Reason::PROTOCOL_ERROR);
    // A stream id going backwards.
    let mut raw = Raw::connect(server.addr).await;
    let block = raw.request_block("GET", "/hello", &[]);
    raw.send(
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        5,
        &block,
    )
    .await;
    let block = raw.request_block("GET", "/hello", &[]);
    raw.send(
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        3,
        &block,
    )
    .await;
    assert_eq!(raw.goaway().await, Reason::STREAM_CLOSED);
    // Not HTTP/2 at all: closed.
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap_or(0);
    assert!(!rest.windows(4).any(|w| w == b"HTTP"));
}

#[tokio::test]
async fn malformed_requests_reset_only_their_stream() {
    let server = start(Config::default()).await;
    let mut raw = Raw::connect(server.addr).await;
    let cases: &[&[(&str, &str)]] = &[
        &[("Upper", "x")],
        &[("connection", "keep-alive")],
        &[("te", "gzip")],
        &[("content-length", "5")],
        &[(":unknown", "x")],
    ];
    let mut id = 1;
    for extra in cases {
        let block = raw.request_block("GET", "/hello", extra);
        raw.send(
            kind::HEADERS,
            flag::END_HEADERS | flag::END_STREAM,
            id,
            &block,
        )
        .await;
        assert_eq!(raw.rst().await, (id, Reason::PROTOCOL_ERROR), "{extra:?}");
        id += 2;
    }
    // A request with no :path.
    let mut b = Vec::new();
    raw.enc.begin(&mut b);
    raw.enc.field(b":method", b"GET", false, &mut b);
    raw.enc.field(b":scheme", b"https", false, &mut b);
    raw.send(kind::HEADERS, flag::END_HEADERS | flag::END_STREAM, id, &b)
        .await;
    assert_eq!(raw.rst().await, (id, Reason::PROTOCOL_ERROR));
    id += 2;
    // The connection still serves.
    let block = raw.request_block("GET", "/hello", &[]);
    raw.send(
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        id,
        &block,
    )
    .await;
    let (h, p) = raw.until(kind::HEADERS).await.unwrap();
    assert_eq!((h.stream, status_of(&p)), (id, "200".to_string()));
    assert_eq!(server.seen.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn too_many_streams_are_refused_and_oversized_heads_get_431() {
    let server = start(Config {
        max_concurrent_streams: 2,
        max_header_list_size: 4096,
        ..Config::default()
    })
    .await;
    let mut raw = Raw::connect(server.addr).await;
    for id in [1, 3] {
        let block = raw.request_block("GET", "/never", &[]);
        raw.send(
            kind::HEADERS,
            flag::END_HEADERS | flag::END_STREAM,
            id,
            &block,
        )
        .await;
    }
    let block = raw.request_block("GET", "/hello", &[]);
    raw.send(
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        5,
        &block,
    )
    .await;
    assert_eq!(raw.rst().await, (5, Reason::REFUSED_STREAM));
    // Free the two and send a head over the list limit.
    raw.send(kind::RST_STREAM, 0, 1, &8u32.to_be_bytes()).await;
    raw.send(kind::RST_STREAM, 0, 3, &8u32.to_be_bytes()).await;
    let big = "a".repeat(5000);
    let block = raw.request_block("GET", "/hello", &[("x-big", &big)]);
    raw.send(
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        7,
        &block,
    )
    .await;
    let (h, p) = raw.until(kind::HEADERS).await.unwrap();
    assert_eq!((h.stream, status_of(&p)), (7, "431".to_string()));
}

#[tokio::test]
async fn rapid_resets_end_the_connection() {
    let server = start(Config {
        resets_per_second: 10,
        ..Config::default()
    })
    .await;
    let mut raw = Raw::connect(server.addr).await;
    let mut out = Vec::new();
    for i in 0..100u32 {
        let id = 1 + 2 * i;
        let block = raw.request_block("GET", "/never", &[]);
        frame::write_head(
            &mut out,
            block.len(),
            kind::HEADERS,
            flag::END_HEADERS | flag::END_STREAM,
            id,
        );
        out.extend_from_slice(&block);
        frame::write_rst(&mut out, id, Reason::CANCEL);
    }
    raw.tcp.write_all(&out).await.unwrap();
    assert_eq!(raw.goaway().await, Reason::ENHANCE_YOUR_CALM);
    assert!(server.seen.load(Ordering::SeqCst) <= 25);
}

#[tokio::test]
async fn continuation_floods_are_refused() {
    let server = start(Config {
        max_header_list_size: 8192,
        ..Config::default()
    })
    .await;
    let mut raw = Raw::connect(server.addr).await;
    let block = raw.request_block("GET", "/hello", &[]);
    raw.send(kind::HEADERS, flag::END_STREAM, 1, &block).await;
    // Literal fields with empty names, never ending: 20 frames of 16 KB.
    let filler = vec![0x40u8; 16_000];
    let mut out = Vec::new();
    for _ in 0..20 {
        frame::write_head(&mut out, filler.len(), kind::CONTINUATION, 0, 1);
        out.extend_from_slice(&filler);
    }
    raw.tcp.write_all(&out).await.unwrap();
    assert_eq!(raw.goaway().await, Reason::ENHANCE_YOUR_CALM);
    assert_eq!(server.seen.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn idle_connections_and_silent_clients_are_closed() {
    let server = start(Config {
        idle_timeout: Duration::from_millis(100),
        handshake_timeout: Duration::from_millis(100),
        ..Config::default()
    })
    .await;
    let mut raw = Raw::connect(server.addr).await;
    assert_eq!(raw.goaway().await, Reason::NO_ERROR);
    assert!(raw.next().await.is_none());
    // A client that never sends the preface.
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut rest))
        .await
        .expect("closed by the handshake timeout")
        .unwrap();
}

#[tokio::test]
async fn data_beyond_the_window_resets_the_stream() {
    let server = start(Config {
        stream_window: 1000,
        ..Config::default()
    })
    .await;
    let mut raw = Raw::connect(server.addr).await;
    // A handler that drops the body gives its window back as data comes.
    let block = raw.request_block("POST", "/never", &[]);
    raw.send(kind::HEADERS, flag::END_HEADERS, 1, &block).await;
    raw.send(kind::DATA, 0, 1, &[1; 800]).await;
    let (h, p) = raw.until(kind::WINDOW_UPDATE).await.unwrap();
    assert_eq!(h.stream, 1);
    assert_eq!(p, 800u32.to_be_bytes());
    // One that holds it unread does not, and more is a stream error.
    let block = raw.request_block("POST", "/hold", &[]);
    raw.send(kind::HEADERS, flag::END_HEADERS, 3, &block).await;
    raw.send(kind::DATA, 0, 3, &[1; 800]).await;
    raw.send(kind::DATA, 0, 3, &[1; 800]).await;
    assert_eq!(raw.rst().await, (3, Reason::FLOW_CONTROL_ERROR));
}

/// The next connection's ending, as `serve` returned it.
async fn ending(server: &mut Server) -> Result<(), String> {
    tokio::time::timeout(Duration::from_secs(5), server.ended.recv())
        .await
        .expect("the connection ends")
        .expect("an ending")
}

#[tokio::test]
async fn a_header_block_left_open_does_not_hold_the_connection() {
    let mut server = start(Config {
        idle_timeout: Duration::from_millis(100),
        ..Config::default()
    })
    .await;
    // The client closes with the block unfinished.
    let mut raw = Raw::connect(server.addr).await;
    let block = raw.request_block("GET", "/hello", &[]);
    raw.send(kind::HEADERS, flag::END_STREAM, 1, &block).await;
    raw.tcp.shutdown().await.unwrap();
    assert!(raw.until(kind::HEADERS).await.is_none());
    assert_eq!(ending(&mut server).await, Ok(()));
    // The client stays, silent: the idle limit closes it.
    let mut raw = Raw::connect(server.addr).await;
    let block = raw.request_block("GET", "/hello", &[]);
    raw.send(kind::HEADERS, flag::END_STREAM, 1, &block).await;
    assert_eq!(raw.goaway().await, Reason::NO_ERROR);
    assert!(raw.next().await.is_none());
    assert_eq!(ending(&mut server).await, Ok(()));
}

#[tokio::test]
async fn answers_waiting_for_window_do_not_hold_the_connection() {
    let mut server = start(Config {
        idle_timeout: Duration::from_millis(100),
        ..Config::default()
    })
    .await;
    // The client closes while an answer waits for window.
    let mut raw = Raw::connect(server.addr).await;
    let block = raw.request_block("GET", "/big", &[]);
    raw.send(
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        1,
        &block,
    )
    .await;
    let mut got = 0;
    while got < 65_535 {
        let (h, p) = raw.until(kind::DATA).await.unwrap();
        assert!(!h.has(flag::END_STREAM));
        got += p.len();
    }
    raw.tcp.shutdown().await.unwrap();
    assert_eq!(ending(&mut server).await, Ok(()));
    // The client stays but never opens the window again.
    let mut raw = Raw::connect(server.addr).await;
    let block = raw.request_block("GET", "/big", &[]);
    raw.send(
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        1,
        &block,
    )
    .await;
    assert_eq!(raw.goaway().await, Reason::ENHANCE_YOUR_CALM);
    assert_eq!(
        ending(&mut server).await,
        Err("the client stopped opening flow-control windows".to_string())
    );
    // One that keeps opening it gets the whole answer, however slowly.
    let mut raw = Raw::connect(server.addr).await;
    let block = raw.request_block("GET", "/big", &[]);
    raw.send(
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        1,
        &block,
    )
    .await;
    let mut got = 0;
    loop {
        let Some((h, p)) = raw.until(kind::DATA).await else {
            panic!("closed after {got} bytes: {:?}", ending(&mut server).await);
        };
        got += p.len();
        if h.has(flag::END_STREAM) {
            break;
        }
        if got % 65_535 == 0 {
            tokio::time::sleep(Duration::from_millis(60)).await;
            let mut out = Vec::new();
            frame::write_window_update(&mut out, 0, 65_535);
            frame::write_window_update(&mut out, 1, 65_535);
            raw.tcp.write_all(&out).await.unwrap();
        }
    }
    assert_eq!(got, 3_000_000);
}

#[tokio::test]
async fn the_connection_window_never_reopens_more_than_was_sent() {
    let server = start(Config {
        stream_window: 1000,
        connection_window: 65_535,
        ..Config::default()
    })
    .await;
    let mut raw = Raw::connect(server.addr).await;
    // Room for all the answers.
    let mut out = Vec::new();
    frame::write_window_update(&mut out, 0, 1 << 30);
    raw.tcp.write_all(&out).await.unwrap();
    // Uploads that each leave part of a stream's window unacknowledged when
    // the stream ends, some read by the handler, some reset by the client.
    let mut sent = 0u64;
    let mut credited = 0u64;
    for i in 0..200u32 {
        let id = 1 + 2 * i;
        let path = if i % 3 == 0 { "/hold" } else { "/echo" };
        let block = raw.request_block("POST", path, &[]);
        raw.send(kind::HEADERS, flag::END_HEADERS, id, &block).await;
        raw.send(kind::DATA, 0, id, &[7; 300]).await;
        sent += 300;
        if path == "/hold" {
            raw.send(kind::RST_STREAM, 0, id, &8u32.to_be_bytes()).await;
        } else {
            // The handler reads while the stream is open: 600 bytes (the
            // stream's WINDOW_UPDATE shows it), then 300 more, which stay
            // owed to the stream's window when it ends.
            raw.send(kind::DATA, 0, id, &[7; 300]).await;
            sent += 300;
            loop {
                let (h, p) = raw.next().await.expect("the connection stays up");
                if h.kind == kind::WINDOW_UPDATE && h.stream == 0 {
                    credited += u64::from(u32::from_be_bytes(p[..4].try_into().unwrap()));
                }
                if h.kind == kind::WINDOW_UPDATE && h.stream == id {
                    break;
                }
            }
            raw.send(kind::DATA, 0, id, &[7; 300]).await;
            sent += 300;
            tokio::time::sleep(Duration::from_millis(10)).await;
            raw.send(kind::DATA, flag::END_STREAM, id, &[]).await;
            loop {
                let (h, p) = raw.next().await.expect("the connection stays up");
                if h.kind == kind::WINDOW_UPDATE && h.stream == 0 {
                    credited += u64::from(u32::from_be_bytes(p[..4].try_into().unwrap()));
                }
                if h.kind == kind::DATA && h.stream == id && h.has(flag::END_STREAM) {
                    break;
                }
            }
        }
    }
    raw.send(kind::PING, 0, 0, b"finished").await;
    while let Some((h, p)) = raw.next().await {
        if h.kind == kind::WINDOW_UPDATE && h.stream == 0 {
            credited += u64::from(u32::from_be_bytes(p[..4].try_into().unwrap()));
        }
        if h.kind == kind::PING {
            break;
        }
    }
    assert!(credited <= sent, "credited {credited} of {sent} bytes sent");
    assert!(
        credited > sent / 2,
        "the window does reopen: {credited} of {sent}"
    );
}

#[tokio::test]
async fn a_closed_client_does_not_wait_on_a_body_the_handler_holds() {
    let mut server = start(Config::default()).await;
    let mut raw = Raw::connect(server.addr).await;
    // The handler answers at once but keeps the request body unread.
    let block = raw.request_block("POST", "/hello-held", &[]);
    raw.send(kind::HEADERS, flag::END_HEADERS, 1, &block).await;
    raw.send(kind::DATA, 0, 1, b"part").await;
    let (h, _) = raw.until(kind::HEADERS).await.unwrap();
    assert_eq!(h.stream, 1);
    raw.tcp.shutdown().await.unwrap();
    assert_eq!(ending(&mut server).await, Ok(()));
}

#[tokio::test]
async fn a_client_that_never_reads_cannot_make_the_server_buffer_without_end() {
    // A small pipe each way: the server's answers back up at once.
    let (client, server) = tokio::io::duplex(16 * 1024);
    let config = Config::default();
    tokio::spawn(async move {
        let seen = Arc::new(AtomicUsize::new(0));
        let handler = move |req| route(req, seen.clone());
        let _ = ledge_h2::serve(server, &config, handler, std::future::pending()).await;
    });
    let (_unread, mut to_server) = tokio::io::split(client);
    let mut hello = frame::PREFACE.to_vec();
    frame::write_settings(&mut hello, &[]);
    to_server.write_all(&hello).await.unwrap();
    // PINGs, each answered by a PING ACK the client never reads.
    let mut chunk = Vec::new();
    for i in 0..1000u64 {
        frame::write_head(&mut chunk, 8, kind::PING, 0, 0);
        chunk.extend_from_slice(&i.to_be_bytes());
    }
    let mut written = 0usize;
    while written < 20 << 20 {
        let w = tokio::time::timeout(Duration::from_millis(500), to_server.write_all(&chunk));
        if w.await.is_err() {
            break;
        }
        written += chunk.len();
    }
    // The server stops reading once its answers pass the high water mark
    // (128 KiB): what it took is that, in PINGs, plus the pipe and its read
    // buffer.
    assert!(written < 1 << 20, "the server took {written} bytes");
}

/// The decoded fields of a header block.
fn fields_of(block: &[u8]) -> Vec<(String, String)> {
    let mut dec = ledge_hpack::Decoder::new(4096);
    let mut out = Vec::new();
    dec.decode(block, 1 << 20, |n, v, _| {
        out.push((
            String::from_utf8(n.to_vec()).unwrap(),
            String::from_utf8(v.to_vec()).unwrap(),
        ));
    })
    .unwrap();
    out
}

#[tokio::test]
async fn no_content_length_is_added_where_there_is_no_body() {
    let server = start(Config::default()).await;
    let mut raw = Raw::connect(server.addr).await;
    for (id, method, path) in [
        (1, "HEAD", "/hello"),
        (3, "GET", "/no-content"),
        (5, "GET", "/hello"),
    ] {
        let block = raw.request_block(method, path, &[]);
        raw.send(
            kind::HEADERS,
            flag::END_HEADERS | flag::END_STREAM,
            id,
            &block,
        )
        .await;
        let (h, p) = raw.until(kind::HEADERS).await.unwrap();
        assert_eq!(h.stream, id);
        let has_length = fields_of(&p).iter().any(|(n, _)| n == "content-length");
        assert_eq!(has_length, id == 5, "{method} {path}");
    }
}
