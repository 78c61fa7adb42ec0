//! Cost of a memory-tier hit: `lookup` (key, spec, variant key, generations,
//! freshness) plus building the response (`Age`, `Cache-Status`, headers).

use std::sync::Arc;

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use futures_util::FutureExt;
use http::{HeaderMap, HeaderValue, Method};
use http_body_util::{BodyExt, Full};
use ledge_cache::{
    Cache, CacheConfig, CacheRequest, Generations, Lookup, ManualClock, ResponseSource, RuleVary,
};

fn headers(list: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in list {
        h.append(*k, HeaderValue::from_static(v));
    }
    h
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let clock = Arc::new(ManualClock::fixed());
    let cache =
        Cache::open(CacheConfig::default(), clock, Arc::new(Generations::new())).expect("cache");
    let req_headers = headers(&[
        ("host", "www.example.com"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36",
        ),
        ("accept", "text/html,application/xhtml+xml"),
        ("accept-encoding", "gzip, deflate, br"),
        ("accept-language", "en-GB,en;q=0.9"),
        ("cookie", "ab=1; session=xyz"),
    ]);
    let res_headers = headers(&[
        ("content-type", "text/html; charset=utf-8"),
        ("content-length", "1024"),
        (
            "netlify-cdn-cache-control",
            "public, s-maxage=3600, stale-while-revalidate=60",
        ),
        ("cache-control", "public, max-age=0, must-revalidate"),
        ("etag", "\"abc123\""),
        ("vary", "Accept-Encoding"),
        ("netlify-vary", "query=page, cookie=ab"),
        ("cache-tag", "product,listing"),
        ("date", "Thu, 01 Jan 2026 00:00:00 GMT"),
    ]);
    let get = Method::GET;
    let req = CacheRequest {
        site: "shop",
        deploy: Some("66f0c0ffee"),
        method: &get,
        host: "www.example.com",
        path: "/products/shoes",
        query: Some("page=2&utm_source=news"),
        headers: &req_headers,
        country: Some("GB"),
    };
    rt.block_on(async {
        let Lookup::Miss(fill) = cache.lookup(&req).await else {
            panic!("first lookup must miss");
        };
        let mut parts = http::Response::new(()).into_parts().0;
        parts.headers = res_headers.clone();
        let body = Full::new(Bytes::from(vec![b'x'; 1024]));
        let resp = fill
            .store(parts, body, ResponseSource::Proxy, &RuleVary::default())
            .await;
        resp.into_body().collect().await.expect("body");
        assert!(matches!(cache.lookup(&req).await, Lookup::Hit(_)));
    });

    c.bench_function("lookup_hit_memory", |b| {
        b.iter(|| {
            let r = cache.lookup(black_box(&req)).now_or_never();
            match r {
                Some(Lookup::Hit(resp)) => black_box(resp),
                _ => panic!("expected a hit"),
            }
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
