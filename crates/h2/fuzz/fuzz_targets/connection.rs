//! Whatever a client sends, a connection must neither panic nor hang once
//! the client has closed its side.
//!
//! Input: the bytes a client sends after its preface and an empty SETTINGS
//! frame, which the target puts first. They go to `ledge_h2::serve` over an
//! in-memory pipe; the client then closes its sending side and reads what the
//! server writes until the server closes. The clock is paused, so timers fire
//! as soon as nothing else can run: the whole exchange must end within
//! `LIMIT` of virtual time, which is less than the idle timeout, so a
//! connection that ends only by idling out counts as a hang. A connection
//! that keeps itself busy without end never lets the clock move; libFuzzer's
//! `-timeout` catches that.

#![no_main]
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use ledge_h2::frame::{self, kind};
use ledge_h2::{Config, RecvBody, Reply};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Runtime;

/// Virtual time the exchange may take.
const LIMIT: Duration = Duration::from_secs(20);
/// Bytes the pipe holds each way.
const PIPE: usize = 64 * 1024;

type Answer = Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>>;

thread_local! {
    /// One runtime per process: building one per input costs more than most
    /// inputs take to run.
    static RUNTIME: Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime");
}

/// Small limits, so that short inputs reach them.
fn config() -> Config {
    Config {
        max_concurrent_streams: 8,
        max_header_list_size: 2048,
        stream_window: 256,
        connection_window: 100_000,
        resets_per_second: 10,
        ..Config::default()
    }
}

/// Picks an answer by the path's length: at once; after reading the whole
/// body; or after a short wait, with a body larger than the default window.
fn handler(req: Request<RecvBody>) -> Reply<Answer, Full<Bytes>> {
    match req.uri().path().len() % 3 {
        0 => Reply::Ready(Response::new(Full::new(Bytes::from_static(b"at once")))),
        1 => Reply::Later(Box::pin(async move {
            let read = match req.into_body().collect().await {
                Ok(body) => body.to_bytes().len().to_string(),
                Err(e) => e.to_string(),
            };
            Response::new(Full::new(Bytes::from(read)))
        })),
        _ => Reply::Later(Box::pin(async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Response::new(Full::new(Bytes::from(vec![b'z'; 80_000])))
        })),
    }
}

/// Runs the exchange; returns whether it ended in time, and what the server
/// wrote.
async fn exchange(input: &[u8]) -> (bool, Vec<u8>) {
    let config = config();
    let (client, server) = tokio::io::duplex(PIPE);
    let (mut from_server, mut to_server) = tokio::io::split(client);
    let mut output = Vec::new();

    let serve = async {
        let _ = ledge_h2::serve(server, &config, handler, std::future::pending()).await;
    };
    let send = async move {
        let _ = to_server.write_all(input).await;
        let _ = to_server.shutdown().await;
    };
    let receive = async {
        let mut buf = vec![0; 16 * 1024];
        while let Ok(n @ 1..) = from_server.read(&mut buf).await {
            output.extend_from_slice(&buf[..n]);
        }
    };
    let all = async { tokio::join!(serve, send, receive) };
    let ended = tokio::time::timeout(LIMIT, all).await.is_ok();
    (ended, output)
}

fn check(data: &[u8]) {
    let mut input = frame::PREFACE.to_vec();
    frame::write_settings(&mut input, &[]);
    input.extend_from_slice(data);
    let (ended, output) = RUNTIME.with(|rt| rt.block_on(exchange(&input)));

    assert!(
        ended,
        "the connection did not end once the client had closed"
    );
    // The server's preface is a SETTINGS frame on stream 0 (RFC 9113 §3.4).
    let first = output
        .get(..frame::HEADER_LEN)
        .expect("the server wrote its preface");
    assert_eq!(first[3], kind::SETTINGS, "the server's preface is SETTINGS");
    assert_eq!(first[5..], [0; 4], "the server's preface is on stream 0");
}

fuzz_target!(|data: &[u8]| check(data));
