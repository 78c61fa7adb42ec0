//! Random frame sequences against a connection: whatever a client sends, the
//! connection neither panics nor hangs once the client has closed.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use ledge_h2::frame::{self, kind};
use ledge_h2::{Config, RecvBody, Reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type TestBody = BoxBody<Bytes, std::io::Error>;
type Later = Pin<Box<dyn Future<Output = Response<TestBody>> + Send>>;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Answers at once, later, or after reading the body, by the path's length.
fn handler(req: Request<RecvBody>) -> Reply<Later, TestBody> {
    match req.uri().path().len() % 3 {
        0 => Reply::Ready(Response::new(
            Full::new(Bytes::from_static(b"now"))
                .map_err(|e| match e {})
                .boxed(),
        )),
        1 => Reply::Later(Box::pin(async move {
            let n = match req.into_body().collect().await {
                Ok(c) => c.to_bytes().len(),
                Err(_) => 0,
            };
            Response::new(
                Full::new(Bytes::from(n.to_string()))
                    .map_err(|e| match e {})
                    .boxed(),
            )
        })),
        _ => Reply::Later(Box::pin(async {
            tokio::time::sleep(Duration::from_millis(1)).await;
            Response::new(
                Full::new(Bytes::from(vec![b'x'; 70_000]))
                    .map_err(|e| match e {})
                    .boxed(),
            )
        })),
    }
}

/// One frame a client may well send: requests on new streams, their bodies,
/// window updates, pings, settings, resets and priorities.
fn valid_frame(
    rng: &mut Rng,
    enc: &mut ledge_hpack::Encoder,
    next_id: &mut u32,
    out: &mut Vec<u8>,
) {
    let recent = next_id.saturating_sub(2 * (1 + rng.below(3) as u32)).max(1);
    match rng.below(7) {
        0 | 1 => {
            let mut b = Vec::new();
            enc.begin(&mut b);
            enc.field(b":method", b"POST", false, &mut b);
            enc.field(b":scheme", b"https", false, &mut b);
            let path = "/".repeat(1 + rng.below(5) as usize);
            enc.field(b":path", path.as_bytes(), false, &mut b);
            let end = if rng.below(2) == 0 {
                frame::flag::END_STREAM
            } else {
                0
            };
            frame::write_head(
                out,
                b.len(),
                kind::HEADERS,
                frame::flag::END_HEADERS | end,
                *next_id,
            );
            out.extend_from_slice(&b);
            *next_id += 2;
        }
        2 => {
            let len = rng.below(120) as usize;
            let end = if rng.below(3) == 0 {
                frame::flag::END_STREAM
            } else {
                0
            };
            frame::write_head(out, len, kind::DATA, end, recent);
            out.extend(std::iter::repeat_n(b'd', len));
        }
        3 => {
            let stream = if rng.below(2) == 0 { 0 } else { recent };
            frame::write_window_update(out, stream, 1 + rng.below(100_000) as u32);
        }
        4 => {
            frame::write_head(out, 8, kind::PING, 0, 0);
            out.extend_from_slice(&rng.next().to_be_bytes());
        }
        5 => {
            let v = [
                (
                    frame::setting::INITIAL_WINDOW_SIZE,
                    rng.below(70_000) as u32,
                ),
                (
                    frame::setting::MAX_FRAME_SIZE,
                    16_384 + rng.below(50_000) as u32,
                ),
                (frame::setting::HEADER_TABLE_SIZE, rng.below(5000) as u32),
            ];
            frame::write_settings(out, &v[..1 + rng.below(3) as usize]);
        }
        _ => frame::write_rst(out, recent, frame::Reason::CANCEL),
    }
}

/// One random frame: mostly well-formed types on small stream ids, with
/// random flags and payloads, and sometimes a real request head.
fn random_frame(rng: &mut Rng, enc: &mut ledge_hpack::Encoder, out: &mut Vec<u8>) {
    let kinds = [
        kind::DATA,
        kind::HEADERS,
        kind::PRIORITY,
        kind::RST_STREAM,
        kind::SETTINGS,
        kind::PING,
        kind::GOAWAY,
        kind::WINDOW_UPDATE,
        kind::CONTINUATION,
        0x42,
    ];
    let k = kinds[rng.below(kinds.len() as u64) as usize];
    let stream = match rng.below(4) {
        0 => 0,
        _ => rng.below(12) as u32,
    };
    let flags = rng.next() as u8;
    let payload: Vec<u8> = if k == kind::HEADERS && rng.below(2) == 0 {
        let mut b = Vec::new();
        enc.begin(&mut b);
        enc.field(
            b":method",
            if rng.below(2) == 0 { b"GET" } else { b"POST" },
            false,
            &mut b,
        );
        enc.field(b":scheme", b"https", false, &mut b);
        let path = "/".repeat(1 + rng.below(5) as usize);
        enc.field(b":path", path.as_bytes(), false, &mut b);
        if rng.below(4) == 0 {
            enc.field(
                b"content-length",
                rng.below(30).to_string().as_bytes(),
                false,
                &mut b,
            );
        }
        b
    } else {
        let len = match k {
            kind::PRIORITY | kind::GOAWAY => 5 + rng.below(5) as usize,
            kind::RST_STREAM | kind::WINDOW_UPDATE => 3 + rng.below(3) as usize,
            kind::PING => 7 + rng.below(3) as usize,
            kind::SETTINGS => 6 * rng.below(3) as usize + rng.below(2) as usize,
            _ => rng.below(100) as usize,
        };
        (0..len).map(|_| rng.next() as u8).collect()
    };
    frame::write_head(out, payload.len(), k, flags, stream);
    out.extend_from_slice(&payload);
}

#[tokio::test]
async fn random_frames_neither_panic_nor_hang() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let config = Config {
        max_concurrent_streams: 4,
        stream_window: 100,
        connection_window: 1000,
        resets_per_second: 1000,
        ..Config::default()
    };
    let mut outcomes = [0usize; 2];
    for _ in 0..400 {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let cfg = config.clone();
        let served = tokio::spawn(async move {
            ledge_h2::serve(server, &cfg, handler, std::future::pending()).await
        });
        let mut input = frame::PREFACE.to_vec();
        frame::write_settings(&mut input, &[]);
        let mut enc = ledge_hpack::Encoder::new();
        let mut next_id = 1;
        for _ in 0..1 + rng.below(40) {
            if rng.below(20) == 0 {
                random_frame(&mut rng, &mut enc, &mut input);
            } else {
                valid_frame(&mut rng, &mut enc, &mut next_id, &mut input);
            }
        }
        let (mut rd, mut wr) = tokio::io::split(client);
        let reader = tokio::spawn(async move {
            let mut sink = Vec::new();
            let _ = rd.read_to_end(&mut sink).await;
        });
        let _ = wr.write_all(&input).await;
        let _ = wr.shutdown().await;
        drop(wr);
        let r = tokio::time::timeout(Duration::from_secs(10), served)
            .await
            .expect("the connection ends once the client has closed")
            .expect("the connection does not panic");
        outcomes[usize::from(r.is_ok())] += 1;
        let _ = reader.await;
    }
    // Both endings happen: the sequences are neither all valid nor all broken.
    assert!(outcomes[0] > 20 && outcomes[1] > 20, "{outcomes:?}");
}
