//! Concurrent misses for one key: one fill, bounded waiting.

mod common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures_util::stream;
use http_body::Frame;
use http_body_util::StreamBody;
use ledge_cache::{CacheConfig, Lookup, RuleVary};
use tokio::sync::oneshot;

async fn until(mut cond: impl FnMut() -> bool) {
    for _ in 0..1_000_000 {
        if cond() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("condition not reached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_misses_make_exactly_one_fill() {
    let (cache, _clock) = cache();
    let fills = Arc::new(AtomicUsize::new(0));
    let (release, gate) = oneshot::channel::<()>();
    let gate = Arc::new(Mutex::new(Some(gate)));
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let cache = cache.clone();
        let fills = fills.clone();
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            let req = Req::get("/hot?x=1");
            match cache.lookup(&req.as_cache()).await {
                Lookup::Miss(fill) => {
                    fills.fetch_add(1, Ordering::SeqCst);
                    let gate = gate.lock().unwrap().take().expect("one filler");
                    // The origin's body arrives only when the test says so.
                    let body = StreamBody::new(stream::once(async move {
                        let _ = gate.await;
                        Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"shared")))
                    }));
                    let (parts, _) =
                        Origin::new(200, &[("cache-control", "public, max-age=60")], "")
                            .respond(fill.origin_headers(&req.headers));
                    let resp = fill.store(parts, body, PROXY, &RuleVary::default()).await;
                    let cs = resp.headers()["cache-status"].to_str().unwrap().to_owned();
                    (cs, collect(resp.into_body()).await)
                }
                Lookup::Hit(r) => {
                    let cs = r.headers["cache-status"].to_str().unwrap().to_owned();
                    (cs, collect(r.body).await)
                }
                other => panic!("unexpected {other:?}"),
            }
        }));
    }
    until(|| fills.load(Ordering::SeqCst) == 1 && cache.stats().waiting == 99).await;
    release.send(()).unwrap();
    let mut collapsed = 0;
    for t in tasks {
        let (cs, body) = t.await.unwrap();
        assert_eq!(body, "shared");
        if cs.contains("collapsed") {
            assert!(cs.contains("; hit"), "{cs}");
            collapsed += 1;
        }
    }
    assert_eq!(fills.load(Ordering::SeqCst), 1);
    assert_eq!(cache.stats().fills_started, 1);
    assert_eq!(collapsed, 99);
    assert_eq!(cache.stats().waiting, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_beyond_the_bound_go_to_the_origin_themselves() {
    let (cache, _clock) = cache_with(CacheConfig {
        max_waiters: 3,
        ..CacheConfig::default()
    });
    let req = Req::get("/busy");
    let Lookup::Miss(fill) = cache.lookup(&req.as_cache()).await else {
        panic!("first lookup fills")
    };
    let mut waiters = Vec::new();
    for _ in 0..3 {
        let cache = cache.clone();
        waiters.push(tokio::spawn(async move {
            let req = Req::get("/busy");
            match cache.lookup(&req.as_cache()).await {
                Lookup::Miss(f) => drop(f),
                Lookup::Pass(_) => {}
                other => panic!("{other:?}"),
            }
        }));
    }
    until(|| cache.stats().waiting == 3).await;
    match cache.lookup(&req.as_cache()).await {
        Lookup::Pass(s) => assert_eq!(s.format("x"), "\"x\"; fwd=uri-miss"),
        other => panic!("the fourth waiter must not wait: {other:?}"),
    }
    // A fill given up releases the waiters; each then fills or passes.
    drop(fill);
    for w in waiters {
        w.await.unwrap();
    }
    assert_eq!(cache.stats().waiting, 0);
}

#[tokio::test(start_paused = true)]
async fn waiting_is_bounded_in_time() {
    let (cache, _clock) = cache_with(CacheConfig {
        coalesce_timeout: Duration::from_secs(5),
        ..CacheConfig::default()
    });
    let req = Req::get("/slow");
    let Lookup::Miss(_fill) = cache.lookup(&req.as_cache()).await else {
        panic!("first lookup fills")
    };
    let start = tokio::time::Instant::now();
    match cache.lookup(&req.as_cache()).await {
        Lookup::Pass(s) => assert!(s.collapsed),
        other => panic!("{other:?}"),
    }
    assert!(start.elapsed() >= Duration::from_secs(5));
    assert_eq!(cache.stats().waiting, 0);
}

#[tokio::test]
async fn a_failed_fill_releases_waiters_to_try_again() {
    let (cache, _clock) = cache();
    let req = Req::get("/err");
    let Lookup::Miss(fill) = cache.lookup(&req.as_cache()).await else {
        panic!()
    };
    let c2 = cache.clone();
    let waiter = tokio::spawn(async move {
        let req = Req::get("/err");
        matches!(c2.lookup(&req.as_cache()).await, Lookup::Miss(_))
    });
    until(|| cache.stats().waiting == 1).await;
    // The origin body fails mid-way: nothing is stored, the client sees the error.
    let body = StreamBody::new(stream::iter(vec![
        Ok(Frame::data(Bytes::from_static(b"part"))),
        Err(std::io::Error::other("origin reset")),
    ]));
    let (parts, _) =
        Origin::new(200, &[("cache-control", "max-age=60")], "").respond(req.headers.clone());
    let resp = fill.store(parts, body, PROXY, &RuleVary::default()).await;
    use http_body_util::BodyExt;
    assert!(resp.into_body().collect().await.is_err());
    assert!(waiter.await.unwrap(), "the waiter becomes the next filler");
}

#[tokio::test]
async fn a_waiter_that_goes_away_is_uncounted() {
    let (cache, _clock) = cache();
    let req = Req::get("/gone");
    let Lookup::Miss(_fill) = cache.lookup(&req.as_cache()).await else {
        panic!()
    };
    let c2 = cache.clone();
    let waiter = tokio::spawn(async move {
        let req = Req::get("/gone");
        let _ = c2.lookup(&req.as_cache()).await;
    });
    until(|| cache.stats().waiting == 1).await;
    waiter.abort();
    let _ = waiter.await;
    assert_eq!(cache.stats().waiting, 0);
}
