//! The disk tier: restart, corruption, purges while down, large streamed
//! bodies with bounded memory, eviction.

mod common;

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures_util::stream;
use http_body::{Body as _, Frame};
use http_body_util::{BodyExt, StreamBody};
use ledge_cache::{
    Cache, CacheConfig, Clock, DiskConfig, GenerationSnapshot, Generations, Lookup, ManualClock,
    PurgeEvent, RuleVary,
};

fn config(dir: &Path) -> CacheConfig {
    CacheConfig {
        disk: Some(DiskConfig {
            path: dir.to_path_buf(),
            capacity: 1 << 30,
        }),
        ..CacheConfig::default()
    }
}

fn open(config: CacheConfig, clock: &Arc<ManualClock>, gens: Arc<Generations>) -> Cache {
    let clock: Arc<dyn Clock> = clock.clone();
    Cache::open(config, clock, gens).unwrap()
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for shard in std::fs::read_dir(dir.join("objects")).unwrap() {
        for f in std::fs::read_dir(shard.unwrap().path()).unwrap() {
            out.push(f.unwrap().path());
        }
    }
    out
}

#[tokio::test]
async fn entries_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::fixed());
    let origin = Origin::new(
        200,
        &[("cache-control", "max-age=600"), ("x-h", "1")],
        "persisted",
    );
    {
        let cache = open(config(dir.path()), &clock, Arc::new(Generations::new()));
        through(&cache, &Req::get("/p?q=1"), &origin, PROXY).await;
        assert_eq!(cache.stats().disk_entries, 1);
    }
    clock.advance(Duration::from_secs(100));
    let cache = open(config(dir.path()), &clock, Arc::new(Generations::new()));
    assert_eq!(cache.stats().memory_entries, 0);
    let got = through(&cache, &Req::get("/p?q=1"), &origin, PROXY).await;
    assert!(got.hit(), "{}", got.cache_status());
    assert_eq!(got.text(), "persisted");
    assert_eq!(got.headers["x-h"], "1");
    assert_eq!(got.headers["age"], "100");
    assert_eq!(origin.calls(), 1);
    assert_eq!(
        cache.stats().memory_entries,
        1,
        "small bodies are promoted to memory"
    );
}

#[tokio::test]
async fn a_corrupt_body_is_a_miss_and_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::fixed());
    let origin = Origin::new(200, &[("cache-control", "max-age=600")], "precious bytes");
    {
        let cache = open(config(dir.path()), &clock, Arc::new(Generations::new()));
        through(&cache, &Req::get("/c"), &origin, PROXY).await;
    }
    let f = files(dir.path());
    assert_eq!(f.len(), 1);
    let mut bytes = std::fs::read(&f[0]).unwrap();
    bytes[0] ^= 0x20;
    std::fs::write(&f[0], &bytes).unwrap();
    let cache = open(config(dir.path()), &clock, Arc::new(Generations::new()));
    assert_eq!(cache.stats().disk_entries, 1, "metadata is intact");
    let got = through(&cache, &Req::get("/c"), &origin, PROXY).await;
    assert!(!got.hit());
    assert_eq!(got.text(), "precious bytes");
    assert_eq!(origin.calls(), 2);
    // The refill replaced the corrupt file.
    let cache = open(config(dir.path()), &clock, Arc::new(Generations::new()));
    assert!(through(&cache, &Req::get("/c"), &origin, PROXY).await.hit());
}

#[tokio::test]
async fn corrupt_metadata_and_stray_files_are_dropped_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::fixed());
    let origin = Origin::new(200, &[("cache-control", "max-age=600")], "meta");
    {
        let cache = open(config(dir.path()), &clock, Arc::new(Generations::new()));
        through(&cache, &Req::get("/m"), &origin, PROXY).await;
    }
    let f = files(dir.path());
    let mut bytes = std::fs::read(&f[0]).unwrap();
    let n = bytes.len();
    bytes[n - 40] ^= 0x01; // inside the metadata
    std::fs::write(&f[0], &bytes).unwrap();
    std::fs::write(f[0].parent().unwrap().join("junk"), b"not an entry").unwrap();
    std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
    std::fs::write(dir.path().join("tmp/leftover"), b"half").unwrap();
    let cache = open(config(dir.path()), &clock, Arc::new(Generations::new()));
    assert_eq!(cache.stats().disk_entries, 0);
    assert!(files(dir.path()).is_empty());
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0
    );
    assert!(!through(&cache, &Req::get("/m"), &origin, PROXY).await.hit());
}

#[tokio::test]
async fn purges_while_down_apply_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::fixed());
    let tagged = Origin::new(
        200,
        &[("cache-control", "max-age=600"), ("cache-tag", "product")],
        "t",
    );
    let plain = Origin::new(200, &[("cache-control", "max-age=600")], "u");
    let snapshot: GenerationSnapshot;
    {
        let gens = Arc::new(Generations::new());
        gens.apply(&PurgeEvent::Tags {
            site: "s1".into(),
            tags: vec![("product".into(), 4)],
        });
        let cache = open(config(dir.path()), &clock, gens.clone());
        through(&cache, &Req::get("/t"), &tagged, PROXY).await;
        through(&cache, &Req::get("/u"), &plain, PROXY).await;
        through(&cache, &Req::get("/u").site("s2"), &plain, PROXY).await;
        snapshot = gens.snapshot();
    }
    // While the node was down, the store recorded a purge of tag "product".
    let gens = Arc::new(Generations::from_snapshot(&snapshot));
    gens.apply(&PurgeEvent::Tags {
        site: "s1".into(),
        tags: vec![("Product".into(), 5)],
    });
    let cache = open(config(dir.path()), &clock, gens.clone());
    assert!(!through(&cache, &Req::get("/t"), &tagged, PROXY).await.hit());
    assert!(through(&cache, &Req::get("/u"), &plain, PROXY).await.hit());
    // A replayed (older) event changes nothing.
    gens.apply(&PurgeEvent::Tags {
        site: "s1".into(),
        tags: vec![("product".into(), 5)],
    });
    assert!(through(&cache, &Req::get("/t"), &tagged, PROXY).await.hit());
    drop(cache);

    // A site purge while down.
    let gens = Arc::new(Generations::from_snapshot(&gens.snapshot()));
    gens.apply(&PurgeEvent::Site {
        site: "s1".into(),
        generation: 1,
    });
    let cache = open(config(dir.path()), &clock, gens.clone());
    assert!(!through(&cache, &Req::get("/u"), &plain, PROXY).await.hit());
    assert!(through(&cache, &Req::get("/u").site("s2"), &plain, PROXY)
        .await
        .hit());
    drop(cache);

    // Everything.
    let gens = Arc::new(Generations::from_snapshot(&gens.snapshot()));
    gens.apply(&PurgeEvent::All { generation: 1 });
    let cache = open(config(dir.path()), &clock, gens);
    assert!(!through(&cache, &Req::get("/u").site("s2"), &plain, PROXY)
        .await
        .hit());
}

const CHUNK: usize = 64 * 1024;

fn pattern(offset: u64) -> u8 {
    ((offset / CHUNK as u64) % 251) as u8
}

/// Reads a body frame by frame, checking every byte against the pattern;
/// returns the length.
async fn check_stream<B>(mut body: B) -> u64
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Debug,
{
    let mut offset = 0u64;
    while let Some(frame) = body.frame().await {
        let data = frame.unwrap().into_data().unwrap();
        for b in data.iter() {
            assert_eq!(*b, pattern(offset), "byte {offset}");
            offset += 1;
        }
    }
    offset
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_body_streams_to_disk_with_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::fixed());
    let mem_max = 1024 * 1024u64;
    let cache = open(
        CacheConfig {
            memory_max_body: mem_max,
            max_body: 200 * 1024 * 1024,
            ..config(dir.path())
        },
        &clock,
        Arc::new(Generations::new()),
    );
    const TOTAL: u64 = 100 * 1024 * 1024;
    let chunks = (TOTAL / CHUNK as u64) as usize;
    let req = Req::get("/video.mp4");
    let Lookup::Miss(fill) = cache.lookup(&req.as_cache()).await else {
        panic!()
    };
    // Chunks are made as the fill asks for them: the test holds none.
    let body = StreamBody::new(stream::iter(0..chunks).map(|i| {
        Ok::<_, Infallible>(Frame::data(Bytes::from(vec![
            ((i as u64) % 251) as u8;
            CHUNK
        ])))
    }));
    let (parts, _) = Origin::new(200, &[("cache-control", "public, max-age=3600")], "")
        .respond(req.headers.clone());
    let resp = fill.store(parts, body, PROXY, &RuleVary::default()).await;
    assert!(resp.headers()["cache-status"]
        .to_str()
        .unwrap()
        .contains("stored"));
    let body = resp.into_body();
    assert_eq!(check_stream(body).await, TOTAL);

    let s = cache.stats();
    assert!(
        s.fill_buffer_peak <= mem_max + CHUNK as u64,
        "the fill held at most the memory threshold plus one chunk: {s:?}"
    );
    assert!(
        s.memory_bytes < 64 * 1024,
        "no body in the memory tier: {s:?}"
    );
    assert_eq!(s.memory_entries, 0);
    assert_eq!(s.disk_entries, 1);
    assert!(s.disk_bytes >= TOTAL);

    // A hit streams it back from disk, verified.
    match cache.lookup(&req.as_cache()).await {
        Lookup::Hit(r) => {
            assert_eq!(r.body.size_hint().exact(), Some(TOTAL));
            assert_eq!(check_stream(r.body).await, TOTAL);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(cache.stats().memory_entries, 0, "large bodies stay on disk");
}

use futures_util::StreamExt as _;

#[tokio::test]
async fn a_corrupt_large_body_is_a_miss() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::fixed());
    let cfg = CacheConfig {
        memory_max_body: 1024,
        ..config(dir.path())
    };
    let big = "z".repeat(100_000);
    let origin = Origin::new(200, &[("cache-control", "max-age=600")], &big);
    let cache = open(cfg.clone(), &clock, Arc::new(Generations::new()));
    through(&cache, &Req::get("/big"), &origin, PROXY).await;
    assert!(through(&cache, &Req::get("/big"), &origin, PROXY)
        .await
        .hit());
    let f = files(dir.path());
    let mut bytes = std::fs::read(&f[0]).unwrap();
    bytes[50_000] = b'y';
    std::fs::write(&f[0], &bytes).unwrap();
    let got = through(&cache, &Req::get("/big"), &origin, PROXY).await;
    assert!(!got.hit());
    assert_eq!(got.body.len(), 100_000);
    assert_eq!(origin.calls(), 2);
}

#[tokio::test]
async fn the_disk_tier_is_bounded_and_evicted_files_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::fixed());
    let cfg = CacheConfig {
        memory_max_body: 1024,
        disk: Some(DiskConfig {
            path: dir.path().to_path_buf(),
            capacity: 200 * 1024,
        }),
        ..CacheConfig::default()
    };
    let cache = open(cfg, &clock, Arc::new(Generations::new()));
    let body = "b".repeat(30 * 1024);
    let origin = Origin::new(200, &[("cache-control", "max-age=600")], &body);
    for i in 0..30 {
        through(&cache, &Req::get(&format!("/e{i}")), &origin, PROXY).await;
    }
    let s = cache.stats();
    assert!(s.disk_bytes <= 200 * 1024, "{s:?}");
    assert!(s.disk_entries < 30);
    assert_eq!(files(dir.path()).len(), s.disk_entries);
}

#[tokio::test]
async fn revalidated_disk_entries_keep_their_new_metadata_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::fixed());
    let origin = Origin::new(
        200,
        &[("cache-control", "max-age=10"), ("etag", "\"e\"")],
        "body",
    );
    let cache = open(config(dir.path()), &clock, Arc::new(Generations::new()));
    through(&cache, &Req::get("/rv"), &origin, PROXY).await;
    clock.advance(Duration::from_secs(20));
    let nm = Origin::new(304, &[("cache-control", "max-age=1000")], "");
    let got = through(&cache, &Req::get("/rv"), &nm, PROXY).await;
    assert_eq!(got.text(), "body");
    drop(cache);
    clock.advance(Duration::from_secs(500));
    let cache = open(config(dir.path()), &clock, Arc::new(Generations::new()));
    let got = through(&cache, &Req::get("/rv"), &origin, PROXY).await;
    assert!(got.hit(), "{}", got.cache_status());
    assert_eq!(got.text(), "body");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_of_a_large_fill_reads_from_the_file_and_does_not_hold_it_up() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::fixed());
    let cache = open(
        CacheConfig {
            memory_max_body: 64 * 1024,
            client_buffer: 256 * 1024,
            ..config(dir.path())
        },
        &clock,
        Arc::new(Generations::new()),
    );
    const TOTAL: u64 = 8 * 1024 * 1024;
    let chunks = (TOTAL / CHUNK as u64) as usize;
    let req = Req::get("/big.bin");
    let Lookup::Miss(fill) = cache.lookup(&req.as_cache()).await else {
        panic!()
    };
    let body = StreamBody::new(stream::iter(0..chunks).map(|i| {
        Ok::<_, Infallible>(Frame::data(Bytes::from(vec![
            ((i as u64) % 251) as u8;
            CHUNK
        ])))
    }));
    let len = TOTAL.to_string();
    let (parts, _) = Origin::new(
        200,
        &[
            ("cache-control", "public, max-age=3600"),
            ("content-length", &len),
        ],
        "",
    )
    .respond(req.headers.clone());
    let resp = fill.store(parts, body, PROXY, &RuleVary::default()).await;
    // The client reads nothing while the whole body is stored.
    for _ in 0..1_000_000 {
        if cache.stats().disk_entries == 1 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(
        cache.stats().disk_entries,
        1,
        "stored though the client is idle"
    );
    assert!(cache.stats().fill_buffer_peak <= 64 * 1024 + CHUNK as u64);
    // Then it gets every byte, in order.
    assert_eq!(check_stream(resp.into_body()).await, TOTAL);
    match cache.lookup(&req.as_cache()).await {
        Lookup::Hit(r) => assert_eq!(check_stream(r.body).await, TOTAL),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_waiting_for_a_large_fill_follow_it_while_it_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::fixed());
    let cache = open(
        CacheConfig {
            memory_max_body: 64 * 1024,
            client_buffer: 128 * 1024,
            ..config(dir.path())
        },
        &clock,
        Arc::new(Generations::new()),
    );
    const TOTAL: u64 = 4 * 1024 * 1024;
    let chunks = (TOTAL / CHUNK as u64) as usize;
    let req = Req::get("/live.bin");
    let Lookup::Miss(fill) = cache.lookup(&req.as_cache()).await else {
        panic!()
    };
    // The origin sends half the body, then stalls until the test says so.
    let (release, gate) = tokio::sync::oneshot::channel::<()>();
    let first = stream::iter(0..chunks / 2).map(|i| {
        Ok::<_, Infallible>(Frame::data(Bytes::from(vec![
            ((i as u64) % 251) as u8;
            CHUNK
        ])))
    });
    let rest = stream::once(async move {
        let _ = gate.await;
        stream::iter(chunks / 2..chunks).map(|i| {
            Ok::<_, Infallible>(Frame::data(Bytes::from(vec![
                ((i as u64) % 251) as u8;
                CHUNK
            ])))
        })
    })
    .flatten();
    let body = StreamBody::new(first.chain(rest));
    let len = TOTAL.to_string();
    let (parts, _) = Origin::new(
        200,
        &[
            ("cache-control", "public, max-age=3600"),
            ("content-length", &len),
        ],
        "",
    )
    .respond(req.headers.clone());
    let resp = fill.store(parts, body, PROXY, &RuleVary::default()).await;
    let first_client = tokio::spawn(check_stream(resp.into_body()));
    // Once the fill is on disk, a new request follows it at once, although
    // the origin has not finished.
    for _ in 0..1_000_000 {
        if cache.stats().fill_buffer_peak > 64 * 1024 {
            break;
        }
        tokio::task::yield_now().await;
    }
    let follower =
        match tokio::time::timeout(Duration::from_secs(5), cache.lookup(&req.as_cache())).await {
            Ok(Lookup::Hit(r)) => r,
            Ok(other) => panic!("{other:?}"),
            Err(_) => panic!("the waiter did not follow the fill"),
        };
    assert!(follower.cache_status.collapsed);
    assert_eq!(cache.stats().disk_entries, 0, "not stored yet");
    release.send(()).unwrap();
    assert_eq!(check_stream(follower.body).await, TOTAL);
    assert_eq!(first_client.await.unwrap(), TOTAL);
    assert_eq!(cache.stats().disk_entries, 1);
}
