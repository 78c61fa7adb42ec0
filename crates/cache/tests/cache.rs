//! The cache around an origin: hits, expiry, revalidation, stale serving,
//! keys, purge, deploys, pass-through, Cache-Status and Age.

mod common;

use std::time::Duration;

use common::*;
use http::Method;
use ledge_cache::{CacheConfig, Lookup, ResponseSource, RuleVary};

#[tokio::test]
async fn k01_second_request_is_a_hit_and_edge_headers_never_reach_the_client() {
    let (cache, clock) = cache();
    let origin = Origin::new(
        200,
        &[
            ("netlify-cdn-cache-control", "public, s-maxage=60"),
            ("cache-control", "public, max-age=0, must-revalidate"),
            ("cdn-cache-control", "public, s-maxage=60"),
            ("netlify-cache-tag", "a"),
            ("cache-tag", "b"),
        ],
        "hello",
    );
    let req = Req::get("/f");
    let first = through(&cache, &req, &origin, PROXY).await;
    assert_eq!(first.text(), "hello");
    assert_eq!(
        first.cache_status(),
        "\"Ledge Edge\"; fwd=uri-miss; fwd-status=200; stored; ttl=60"
    );
    clock.advance(Duration::from_secs(30));
    let second = through(&cache, &req, &origin, PROXY).await;
    assert_eq!(origin.calls(), 1);
    assert_eq!(second.text(), "hello");
    assert_eq!(second.cache_status(), "\"Ledge Edge\"; hit; ttl=30");
    assert_eq!(second.headers.get("age").unwrap(), "30");
    for got in [&first, &second] {
        assert!(!got.headers.contains_key("netlify-cdn-cache-control"));
        assert!(!got.headers.contains_key("netlify-cache-tag"));
        assert_eq!(
            got.headers.get("cache-control").unwrap(),
            "public, max-age=0, must-revalidate"
        );
        assert_eq!(
            got.headers.get("cdn-cache-control").unwrap(),
            "public, s-maxage=60"
        );
        assert_eq!(got.headers.get("cache-tag").unwrap(), "b");
    }
}

#[tokio::test]
async fn uncacheable_responses_pass_with_edge_headers_removed() {
    let (cache, _clock) = cache();
    let origin = Origin::new(
        200,
        &[
            ("cache-control", "private, max-age=60"),
            ("netlify-vary", "query"),
        ],
        "mine",
    );
    let req = Req::get("/p");
    let got = through(&cache, &req, &origin, PROXY).await;
    assert!(!got.headers.contains_key("netlify-vary"));
    assert_eq!(
        got.cache_status(),
        "\"Ledge Edge\"; fwd=uri-miss; fwd-status=200"
    );
    // Hit-for-pass: the next request does not coalesce and goes straight on.
    match cache.lookup(&req.as_cache()).await {
        Lookup::Pass(s) => assert_eq!(s.format("x"), "\"x\"; fwd=bypass"),
        other => panic!("expected a pass, got {other:?}"),
    }
    through(&cache, &req, &origin, PROXY).await;
    assert_eq!(origin.calls(), 2);
}

#[tokio::test]
async fn pass_marker_expires() {
    let (cache, clock) = cache_with(CacheConfig {
        pass_ttl: Duration::from_secs(5),
        ..CacheConfig::default()
    });
    let req = Req::get("/p");
    through(
        &cache,
        &req,
        &Origin::new(200, &[("cache-control", "no-store")], "x"),
        PROXY,
    )
    .await;
    assert!(matches!(
        cache.lookup(&req.as_cache()).await,
        Lookup::Pass(_)
    ));
    clock.advance(Duration::from_secs(6));
    let origin = Origin::new(200, &[("cache-control", "max-age=60")], "now cacheable");
    through(&cache, &req, &origin, PROXY).await;
    assert!(through(&cache, &req, &origin, PROXY).await.hit());
    assert_eq!(origin.calls(), 1);
}

#[tokio::test]
async fn k11_post_is_never_cached() {
    let (cache, _clock) = cache();
    let origin = Origin::new(200, &[("cache-control", "public, max-age=60")], "x");
    let req = Req::get("/f").method(Method::POST);
    let got = through(&cache, &req, &origin, PROXY).await;
    assert_eq!(got.cache_status(), "\"Ledge Edge\"; fwd=method");
    through(&cache, &req, &origin, PROXY).await;
    assert_eq!(origin.calls(), 2);
    // And a POST did not create an entry for GET.
    let get = Req::get("/f");
    assert!(matches!(
        cache.lookup(&get.as_cache()).await,
        Lookup::Miss(_)
    ));
}

#[tokio::test]
async fn head_uses_get_entries_and_never_fills() {
    let (cache, _clock) = cache();
    let origin = Origin::new(200, &[("cache-control", "max-age=60")], "body");
    let head = Req::get("/h").method(Method::HEAD);
    assert!(matches!(
        cache.lookup(&head.as_cache()).await,
        Lookup::Pass(_)
    ));
    through(&cache, &Req::get("/h"), &origin, PROXY).await;
    let got = through(&cache, &head, &origin, PROXY).await;
    assert!(got.hit());
    assert!(got.body.is_empty());
    assert_eq!(origin.calls(), 1);
}

#[tokio::test]
async fn expiry_age_and_upstream_age() {
    let (cache, clock) = cache();
    let origin = Origin::new(200, &[("cache-control", "max-age=10"), ("age", "3")], "v");
    let req = Req::get("/e");
    through(&cache, &req, &origin, PROXY).await;
    clock.advance(Duration::from_secs(5));
    let got = through(&cache, &req, &origin, PROXY).await;
    assert!(got.hit());
    assert_eq!(got.headers.get("age").unwrap(), "8");
    assert_eq!(got.cache_status(), "\"Ledge Edge\"; hit; ttl=2");
    clock.advance(Duration::from_secs(3));
    let got = through(&cache, &req, &origin, PROXY).await;
    assert!(
        !got.hit(),
        "expired at 7 s of residence (10 s - 3 s upstream)"
    );
    assert!(got.cache_status().contains("fwd=stale"));
    assert_eq!(origin.calls(), 2);
}

#[tokio::test]
async fn revalidation_304_refreshes_the_entry() {
    let (cache, clock) = cache();
    let origin = Origin::new(
        200,
        &[
            ("cache-control", "max-age=10"),
            ("etag", "\"v1\""),
            ("x-gen", "1"),
        ],
        "body-v1",
    );
    let req = Req::get("/r").header("if-none-match", "\"client\"");
    through(&cache, &req, &origin, PROXY).await;
    clock.advance(Duration::from_secs(20));
    let fill = match cache.lookup(&req.as_cache()).await {
        Lookup::Miss(f) => f,
        other => panic!("expected a revalidation, got {other:?}"),
    };
    assert!(fill.is_revalidation());
    let sent = fill.origin_headers(&req.headers);
    assert_eq!(
        sent.get("if-none-match").unwrap(),
        "\"v1\"",
        "the client's own validator is replaced"
    );
    let not_modified = Origin::new(304, &[("cache-control", "max-age=100"), ("x-gen", "2")], "");
    let (parts, body) = not_modified.respond(sent);
    let resp = fill.store(parts, body, PROXY, &RuleVary::default()).await;
    let (parts, body) = resp.into_parts();
    assert_eq!(parts.status, 200);
    assert_eq!(collect(body).await, "body-v1");
    assert_eq!(parts.headers.get("x-gen").unwrap(), "2");
    let cs = parts
        .headers
        .get("cache-status")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        cs,
        "\"Ledge Edge\"; fwd=stale; fwd-status=304; stored; ttl=100"
    );
    clock.advance(Duration::from_secs(50));
    let got = through(&cache, &req, &origin, PROXY).await;
    assert!(got.hit(), "fresh for 100 s after the 304");
    assert_eq!(got.headers.get("x-gen").unwrap(), "2");
    assert_eq!(got.text(), "body-v1");
    assert_eq!(origin.calls(), 1);
}

#[tokio::test]
async fn revalidation_with_a_new_body_replaces_the_entry() {
    let (cache, clock) = cache();
    let v1 = Origin::new(
        200,
        &[("cache-control", "max-age=10"), ("etag", "\"v1\"")],
        "one",
    );
    let req = Req::get("/r2");
    through(&cache, &req, &v1, PROXY).await;
    clock.advance(Duration::from_secs(11));
    let v2 = Origin::new(
        200,
        &[("cache-control", "max-age=10"), ("etag", "\"v2\"")],
        "two",
    );
    assert_eq!(through(&cache, &req, &v2, PROXY).await.text(), "two");
    let got = through(&cache, &req, &v2, PROXY).await;
    assert!(got.hit());
    assert_eq!(got.text(), "two");
}

#[tokio::test]
async fn k09_stale_while_revalidate_serves_at_once_with_one_refresh() {
    let (cache, clock) = cache();
    let cc = [(
        "netlify-cdn-cache-control",
        "public, s-maxage=10, stale-while-revalidate=60",
    )];
    let v1 = Origin::new(200, &cc, "v1");
    let req = Req::get("/swr");
    through(&cache, &req, &v1, PROXY).await;
    clock.advance(Duration::from_secs(30));
    let (first, refresh) = match cache.lookup(&req.as_cache()).await {
        Lookup::Stale { response, refresh } => (response, refresh),
        other => panic!("expected stale, got {other:?}"),
    };
    let refresh = refresh.expect("the first stale request owns the refresh");
    let cs = first
        .headers
        .get("cache-status")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(cs, "\"Ledge Edge\"; hit; fwd=stale; ttl=-20");
    assert_eq!(collect(first.body).await, "v1");
    // While the refresh runs, others get the stale copy and no refresh.
    for _ in 0..5 {
        match cache.lookup(&req.as_cache()).await {
            Lookup::Stale {
                refresh: None,
                response,
            } => {
                assert_eq!(collect(response.body).await, "v1")
            }
            other => panic!("expected stale without refresh, got {other:?}"),
        }
    }
    let v2 = Origin::new(200, &cc, "v2");
    let (parts, body) = v2.respond(refresh.origin_headers(&req.headers));
    let resp = refresh
        .store(parts, body, PROXY, &RuleVary::default())
        .await;
    drop(resp); // a background refresh need not read the body
    let mut got = None;
    for _ in 0..1000 {
        let g = through(&cache, &req, &v2, PROXY).await;
        if g.hit() && !g.cache_status().contains("stale") {
            got = Some(g);
            break;
        }
        tokio::task::yield_now().await;
    }
    let got = got.expect("the refresh was stored");
    assert_eq!(got.text(), "v2");
    assert_eq!(v2.calls(), 1);
    // Past max-age + stale-while-revalidate: a plain miss.
    clock.advance(Duration::from_secs(71));
    let got = through(&cache, &req, &v2, PROXY).await;
    assert!(!got.hit());
    assert_eq!(v2.calls(), 2);
}

#[tokio::test]
async fn dropped_refresh_lets_the_next_request_refresh() {
    let (cache, clock) = cache();
    let cc = [("cache-control", "max-age=1, stale-while-revalidate=60")];
    let req = Req::get("/swr2");
    through(&cache, &req, &Origin::new(200, &cc, "v1"), PROXY).await;
    clock.advance(Duration::from_secs(5));
    match cache.lookup(&req.as_cache()).await {
        Lookup::Stale {
            refresh: Some(r), ..
        } => drop(r),
        other => panic!("{other:?}"),
    }
    match cache.lookup(&req.as_cache()).await {
        Lookup::Stale {
            refresh: Some(_), ..
        } => {}
        other => panic!("expected a new refresh owner, got {other:?}"),
    }
}

#[tokio::test]
async fn stale_if_error_serves_stored_on_5xx_and_on_origin_failure() {
    let (cache, clock) = cache();
    let ok = Origin::new(
        200,
        &[("cache-control", "max-age=10, stale-if-error=60")],
        "good",
    );
    let req = Req::get("/sie");
    through(&cache, &req, &ok, PROXY).await;
    clock.advance(Duration::from_secs(30));
    let down = Origin::new(503, &[], "down");
    let got = through(&cache, &req, &down, PROXY).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.text(), "good");
    assert_eq!(
        got.cache_status(),
        "\"Ledge Edge\"; fwd=stale; fwd-status=503; ttl=-20; detail=stale-if-error"
    );
    // Transport failure: the pipeline asks the guard.
    match cache.lookup(&req.as_cache()).await {
        Lookup::Miss(fill) => {
            let r = fill
                .stale_if_error(None)
                .await
                .expect("within stale-if-error");
            assert_eq!(collect(r.body).await, "good");
        }
        other => panic!("{other:?}"),
    }
    clock.advance(Duration::from_secs(60));
    let got = through(&cache, &req, &down, PROXY).await;
    assert_eq!(
        got.status, 503,
        "past stale-if-error the error goes through"
    );
    // The stored response was not thrown away by errors.
    match cache.lookup(&req.as_cache()).await {
        Lookup::Miss(fill) => assert!(fill.stale_if_error(None).await.is_none()),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn must_revalidate_forbids_stale() {
    let (cache, clock) = cache();
    let cc = [
        (
            "cache-control",
            "max-age=10, must-revalidate, stale-while-revalidate=60, stale-if-error=60",
        ),
        ("etag", "\"x\""),
    ];
    let req = Req::get("/mr");
    through(&cache, &req, &Origin::new(200, &cc, "x"), PROXY).await;
    clock.advance(Duration::from_secs(20));
    match cache.lookup(&req.as_cache()).await {
        Lookup::Miss(fill) => {
            assert!(fill.is_revalidation());
            assert!(fill.stale_if_error(None).await.is_none());
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn k02_k03_query_keys() {
    let (cache, _clock) = cache();
    let plain = Origin::new(200, &[("cache-control", "max-age=60")], "q");
    through(&cache, &Req::get("/k?a=1"), &plain, PROXY).await;
    through(&cache, &Req::get("/k?a=2"), &plain, PROXY).await;
    assert_eq!(plain.calls(), 2, "K-02: the query is in the key");
    assert!(through(&cache, &Req::get("/k?a=1"), &plain, PROXY)
        .await
        .hit());

    let nv = Origin::new(
        200,
        &[("cache-control", "max-age=60"), ("netlify-vary", "query=a")],
        "nv",
    );
    through(&cache, &Req::get("/nv?a=1"), &nv, PROXY).await;
    let got = through(&cache, &Req::get("/nv?a=1&utm=x"), &nv, PROXY).await;
    assert!(got.hit(), "K-03");
    assert!(!got.headers.contains_key("netlify-vary"));
    let got = through(&cache, &Req::get("/nv?a=2"), &nv, PROXY).await;
    assert!(!got.hit());
    assert!(got.cache_status().contains("fwd=vary-miss"));
}

#[tokio::test]
async fn k04_cookie_and_vary_header_variants() {
    let (cache, _clock) = cache();
    let o = Origin::new(
        200,
        &[
            ("cache-control", "max-age=60"),
            ("netlify-vary", "cookie=ab"),
        ],
        "c",
    );
    through(&cache, &Req::get("/c").header("cookie", "ab=1"), &o, PROXY).await;
    assert!(through(
        &cache,
        &Req::get("/c").header("cookie", "x=9; ab=1"),
        &o,
        PROXY
    )
    .await
    .hit());
    assert!(
        !through(&cache, &Req::get("/c").header("cookie", "ab=2"), &o, PROXY)
            .await
            .hit()
    );
    assert_eq!(o.calls(), 2);

    let v = Origin::new(
        200,
        &[("cache-control", "max-age=60"), ("vary", "Accept-Language")],
        "v",
    );
    through(
        &cache,
        &Req::get("/v").header("accept-language", "en"),
        &v,
        PROXY,
    )
    .await;
    assert!(!through(
        &cache,
        &Req::get("/v").header("accept-language", "de"),
        &v,
        PROXY
    )
    .await
    .hit());
    assert!(through(
        &cache,
        &Req::get("/v").header("accept-language", "en"),
        &v,
        PROXY
    )
    .await
    .hit());
    assert!(through(
        &cache,
        &Req::get("/v").header("accept-language", "de"),
        &v,
        PROXY
    )
    .await
    .hit());
}

#[tokio::test]
async fn conditional_rule_inputs_split_entries() {
    let (cache, _clock) = cache();
    let rule = RuleVary {
        country: true,
        ..RuleVary::default()
    };
    let o = Origin::new(200, &[("cache-control", "max-age=60")], "geo");
    through_rule(&cache, &Req::get("/g").country("US"), &o, PROXY, &rule).await;
    let de = through_rule(&cache, &Req::get("/g").country("DE"), &o, PROXY, &rule).await;
    assert!(!de.hit());
    assert!(
        through_rule(&cache, &Req::get("/g").country("us"), &o, PROXY, &rule)
            .await
            .hit()
    );
}

#[tokio::test]
async fn k05_k06_purge_by_tag_site_and_everything() {
    let (cache, _clock) = cache();
    let tagged = Origin::new(
        200,
        &[
            ("cache-control", "max-age=600"),
            ("netlify-cache-tag", "Product, news"),
        ],
        "t",
    );
    let other = Origin::new(
        200,
        &[("cache-control", "max-age=600"), ("cache-tag", "blog")],
        "o",
    );
    through(&cache, &Req::get("/t"), &tagged, PROXY).await;
    through(&cache, &Req::get("/o"), &other, PROXY).await;
    through(&cache, &Req::get("/t").site("s2"), &tagged, PROXY).await;

    cache.purge_tags("s1", &[]);
    assert!(
        through(&cache, &Req::get("/t"), &tagged, PROXY).await.hit(),
        "K-06: no tags, nothing purged"
    );
    cache.purge_tags("s1", &["PRODUCT"]);
    let got = through(&cache, &Req::get("/t"), &tagged, PROXY).await;
    assert!(!got.hit(), "K-05");
    assert!(got.cache_status().contains("fwd=miss"));
    assert!(through(&cache, &Req::get("/o"), &other, PROXY).await.hit());
    assert!(
        through(&cache, &Req::get("/t").site("s2"), &tagged, PROXY)
            .await
            .hit(),
        "tags are per site"
    );
    // Stored again after the purge, it stays.
    assert!(through(&cache, &Req::get("/t"), &tagged, PROXY).await.hit());

    cache.purge_site("s1");
    assert!(!through(&cache, &Req::get("/o"), &other, PROXY).await.hit());
    assert!(through(&cache, &Req::get("/t").site("s2"), &tagged, PROXY)
        .await
        .hit());

    cache.purge_all();
    assert!(!through(&cache, &Req::get("/t").site("s2"), &tagged, PROXY)
        .await
        .hit());
}

#[tokio::test]
async fn k08_a_new_deploy_voids_responses_unless_cache_id() {
    let (cache, _clock) = cache();
    let plain = Origin::new(200, &[("cache-control", "max-age=600")], "p");
    let kept = Origin::new(
        200,
        &[("cache-control", "max-age=600"), ("netlify-cache-id", "x")],
        "k",
    );
    through(&cache, &Req::get("/p"), &plain, PROXY).await;
    through(&cache, &Req::get("/k"), &kept, PROXY).await;
    assert!(through(&cache, &Req::get("/p"), &plain, PROXY).await.hit());
    assert!(
        !through(&cache, &Req::get("/p").deploy("d2"), &plain, PROXY)
            .await
            .hit()
    );
    let got = through(&cache, &Req::get("/k").deploy("d2"), &kept, PROXY).await;
    assert!(got.hit(), "Netlify-Cache-ID survives the deploy");
    assert!(!got.headers.contains_key("netlify-cache-id"));
    cache.purge_tags("s1", &["x"]);
    assert!(
        !through(&cache, &Req::get("/k").deploy("d2"), &kept, PROXY)
            .await
            .hit(),
        "ids are tags"
    );
}

#[tokio::test]
async fn edge_functions_are_cached_only_with_manual_cache() {
    let (cache, _clock) = cache();
    let o = Origin::new(200, &[("cache-control", "public, max-age=60")], "fn");
    let auto = ResponseSource::EdgeFunction { manual: false };
    let manual = ResponseSource::EdgeFunction { manual: true };
    through(&cache, &Req::get("/fa"), &o, auto).await;
    assert!(!through(&cache, &Req::get("/fa"), &o, auto).await.hit());
    through(&cache, &Req::get("/fm"), &o, manual).await;
    assert!(through(&cache, &Req::get("/fm"), &o, manual).await.hit());
}

#[tokio::test]
async fn authorization_requests_share_only_when_allowed() {
    let (cache, _clock) = cache();
    let private = Origin::new(200, &[("cache-control", "max-age=60")], "secret");
    let req = Req::get("/a").header("authorization", "Bearer 1");
    through(&cache, &req, &private, PROXY).await;
    through(&cache, &req, &private, PROXY).await;
    assert_eq!(private.calls(), 2);
    let public = Origin::new(200, &[("cache-control", "public, max-age=60")], "shared");
    through(
        &cache,
        &Req::get("/b").header("authorization", "Bearer 1"),
        &public,
        PROXY,
    )
    .await;
    assert!(through(&cache, &Req::get("/b"), &public, PROXY).await.hit());
}

#[tokio::test]
async fn max_body_streams_large_responses_without_storing() {
    let (cache, _clock) = cache_with(CacheConfig {
        max_body: 10,
        ..CacheConfig::default()
    });
    let declared = Origin::new(
        200,
        &[("cache-control", "max-age=60"), ("content-length", "20")],
        "01234567890123456789",
    );
    let got = through(&cache, &Req::get("/big"), &declared, PROXY).await;
    assert_eq!(got.body.len(), 20);
    assert!(!got.cache_status().contains("stored"));
    let undeclared = Origin::new(
        200,
        &[("cache-control", "max-age=60")],
        "01234567890123456789",
    );
    let got = through(&cache, &Req::get("/big2"), &undeclared, PROXY).await;
    assert_eq!(got.body.len(), 20, "the client gets everything");
    assert!(!through(&cache, &Req::get("/big2"), &undeclared, PROXY)
        .await
        .hit());
}

#[tokio::test]
async fn memory_tier_is_bounded() {
    let (cache, _clock) = cache_with(CacheConfig {
        memory_capacity: 64 * 1024,
        ..CacheConfig::default()
    });
    let body = "x".repeat(4096);
    let o = Origin::new(200, &[("cache-control", "max-age=600")], &body);
    for i in 0..100 {
        through(&cache, &Req::get(&format!("/m{i}")), &o, PROXY).await;
    }
    let s = cache.stats();
    assert!(s.memory_bytes <= 64 * 1024, "{s:?}");
    assert!(s.memory_entries < 100);
}

#[tokio::test]
async fn client_conditionals_on_hits_get_304() {
    let (cache, _clock) = cache();
    let o = Origin::new(
        200,
        &[
            ("cache-control", "max-age=60"),
            ("etag", "W/\"v1\""),
            ("last-modified", "Thu, 01 Jan 2026 00:00:00 GMT"),
            ("content-length", "4"),
        ],
        "body",
    );
    through(&cache, &Req::get("/cond"), &o, PROXY).await;
    let got = through(
        &cache,
        &Req::get("/cond").header("if-none-match", "\"x\", \"v1\""),
        &o,
        PROXY,
    )
    .await;
    assert_eq!(got.status, 304);
    assert!(got.body.is_empty());
    assert!(got.hit());
    assert!(!got.headers.contains_key("content-length"));
    assert_eq!(got.headers["etag"], "W/\"v1\"");
    let got = through(
        &cache,
        &Req::get("/cond").header("if-none-match", "\"v2\""),
        &o,
        PROXY,
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.text(), "body");
    let got = through(
        &cache,
        &Req::get("/cond").header("if-modified-since", "Fri, 02 Jan 2026 00:00:00 GMT"),
        &o,
        PROXY,
    )
    .await;
    assert_eq!(got.status, 304);
    let got = through(
        &cache,
        &Req::get("/cond").header("if-modified-since", "Wed, 31 Dec 2025 00:00:00 GMT"),
        &o,
        PROXY,
    )
    .await;
    assert_eq!(got.status, 200);
    // If-None-Match wins over If-Modified-Since.
    let got = through(
        &cache,
        &Req::get("/cond")
            .header("if-none-match", "\"v2\"")
            .header("if-modified-since", "Fri, 02 Jan 2026 00:00:00 GMT"),
        &o,
        PROXY,
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(o.calls(), 1);
}

#[tokio::test]
async fn a_slow_client_does_not_hold_up_a_small_fill() {
    let (cache, _clock) = cache();
    let body = "s".repeat(200_000);
    let o = Origin::new(200, &[("cache-control", "max-age=60")], &body);
    let req = Req::get("/slow-client");
    let Lookup::Miss(fill) = cache.lookup(&req.as_cache()).await else {
        panic!()
    };
    let (parts, _) = o.respond(req.headers.clone());
    // 50 chunks of 4 KB: more chunks than any fixed-size channel would queue.
    let chunks: Vec<Result<http_body::Frame<bytes::Bytes>, std::convert::Infallible>> = (0..50)
        .map(|_| Ok(http_body::Frame::data(bytes::Bytes::from(vec![b's'; 4000]))))
        .collect();
    let b = http_body_util::StreamBody::new(futures_util::stream::iter(chunks));
    let resp = fill.store(parts, b, PROXY, &RuleVary::default()).await;
    // The first client reads nothing yet; the entry is stored regardless.
    for _ in 0..10_000 {
        if cache.stats().memory_entries == 1 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(
        cache.stats().memory_entries,
        1,
        "stored while the first client was idle"
    );
    let Lookup::Hit(hit) = cache.lookup(&req.as_cache()).await else {
        panic!("expected a hit")
    };
    assert_eq!(collect(hit.body).await.len(), 200_000);
    assert_eq!(collect(resp.into_body()).await.len(), 200_000);
}

/// The pipeline runs on a multi-threaded runtime: everything it holds across
/// an await must be `Send`.
#[test]
fn handles_and_futures_are_send() {
    fn send<T: Send>(_: &T) {}
    fn send_sync<T: Send + Sync>() {}
    send_sync::<ledge_cache::Cache>();
    send_sync::<ledge_cache::Generations>();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (cache, _clock) = cache();
        let req = Req::get("/send");
        let r = req.as_cache();
        let lookup = cache.lookup(&r);
        send(&lookup);
        let Lookup::Miss(fill) = lookup.await else {
            panic!()
        };
        send(&fill);
        let (parts, body) = Origin::new(200, &[], "").respond(req.headers.clone());
        let rule = RuleVary::default();
        let store = fill.store(parts, body, PROXY, &rule);
        send(&store);
        let resp = store.await;
        send(resp.body());
    });
}

#[tokio::test]
async fn hostile_numbers_do_not_panic() {
    let (cache, clock) = cache();
    let max = "18446744073709551615";
    let huge = "99999999999999999999999";
    for (i, h) in [
        vec![
            ("cache-control", format!("max-age={max}")),
            ("age", max.to_owned()),
        ],
        vec![
            (
                "cache-control",
                format!("max-age={max}, stale-while-revalidate=99999999999"),
            ),
            ("age", "18446744073709551605".to_owned()),
        ],
        vec![(
            "cache-control",
            format!("s-maxage={max}, stale-while-revalidate={max}, stale-if-error={max}"),
        )],
        vec![
            (
                "cache-control",
                format!("max-age={huge}, stale-while-revalidate={huge}"),
            ),
            ("age", huge.to_owned()),
        ],
        vec![
            ("expires", "Fri, 31 Dec 9999 23:59:59 GMT".to_owned()),
            ("date", "Thu, 01 Jan 1970 00:00:00 GMT".to_owned()),
        ],
        vec![(
            "cache-control",
            "max-age=-5, s-maxage=1e9, max-age=\"".to_owned(),
        )],
    ]
    .into_iter()
    .enumerate()
    {
        let pairs: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let o = Origin::new(200, &pairs, "x");
        let req = Req::get(&format!("/n{i}"));
        through(&cache, &req, &o, PROXY).await;
        through(&cache, &req, &o, PROXY).await;
        clock.advance(Duration::from_secs(1_000_000_000));
        through(&cache, &req, &o, PROXY).await;
    }
}
