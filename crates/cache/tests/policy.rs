//! The pure policy: precedence, storability, freshness, tags, keys, headers.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use ledge_cache::policy::{
    self, evaluate, governing_control, ControlSource, Decision, NotStored, PolicyRequest,
    StorePlan, VariantInput, VariantSpec,
};
use ledge_cache::{CacheStatus, Fwd, ResponseSource, RuleVary};

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_767_225_600)
}

fn headers(list: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in list {
        h.append(
            http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn decide_with(
    req: &HeaderMap,
    status: u16,
    res: &[(&str, &str)],
    source: ResponseSource,
) -> Decision {
    evaluate(
        &PolicyRequest {
            method: &Method::GET,
            headers: req,
        },
        StatusCode::from_u16(status).unwrap(),
        &headers(res),
        source,
        now(),
    )
}

fn decide(res: &[(&str, &str)]) -> Decision {
    decide_with(&HeaderMap::new(), 200, res, ResponseSource::Proxy)
}

fn stored(d: Decision) -> StorePlan {
    match d {
        Decision::Store(p) => p,
        Decision::DontStore(r) => panic!("expected to store, got {r:?}"),
    }
}

fn refused(d: Decision) -> NotStored {
    match d {
        Decision::Store(p) => panic!("expected not to store, got ttl {:?}", p.ttl),
        Decision::DontStore(r) => r,
    }
}

#[test]
fn targeted_fields_take_precedence_in_order() {
    let all = headers(&[
        ("cache-control", "max-age=1"),
        ("cdn-cache-control", "max-age=2"),
        ("netlify-cdn-cache-control", "max-age=3"),
        ("ledge-cdn-cache-control", "max-age=4"),
    ]);
    assert_eq!(governing_control(&all).0, ControlSource::LedgeCdn);
    let mut h = all.clone();
    h.remove("ledge-cdn-cache-control");
    assert_eq!(governing_control(&h).0, ControlSource::NetlifyCdn);
    h.remove("netlify-cdn-cache-control");
    assert_eq!(governing_control(&h).0, ControlSource::Cdn);
    h.remove("cdn-cache-control");
    assert_eq!(governing_control(&h).0, ControlSource::CacheControl);
    assert_eq!(
        stored(decide(&[
            ("cache-control", "max-age=1"),
            ("cdn-cache-control", "max-age=2"),
            ("netlify-cdn-cache-control", "max-age=3"),
            ("ledge-cdn-cache-control", "max-age=4"),
        ]))
        .ttl,
        Duration::from_secs(4)
    );
    assert_eq!(
        stored(decide(&[
            ("cache-control", "max-age=1"),
            ("cdn-cache-control", "max-age=2"),
            ("netlify-cdn-cache-control", "s-maxage=3"),
        ]))
        .ttl,
        Duration::from_secs(3)
    );
}

#[test]
fn k01_netlify_cdn_header_overrides_browser_cache_control() {
    let plan = stored(decide(&[
        ("netlify-cdn-cache-control", "public, s-maxage=60"),
        ("cache-control", "public, max-age=0, must-revalidate"),
    ]));
    assert_eq!(plan.ttl, Duration::from_secs(60));
    assert!(
        !plan.must_revalidate,
        "the browser's must-revalidate is not the edge's"
    );
}

#[test]
fn targeted_no_store_wins_and_cache_control_no_store_loses() {
    assert_eq!(
        refused(decide(&[
            ("cdn-cache-control", "no-store"),
            ("cache-control", "public, max-age=60"),
        ])),
        NotStored::NoStore
    );
    let plan = stored(decide(&[
        ("cdn-cache-control", "max-age=30"),
        ("cache-control", "no-store"),
    ]));
    assert_eq!(plan.ttl, Duration::from_secs(30));
}

#[test]
fn targeted_field_ignores_expires() {
    let date = httpdate(now());
    let expires = httpdate(now() + Duration::from_secs(600));
    // CDN-Cache-Control without a lifetime: Expires does not count, no
    // validator: nothing to keep.
    assert_eq!(
        refused(decide(&[
            ("cdn-cache-control", "public"),
            ("date", &date),
            ("expires", &expires),
        ])),
        NotStored::NotReusable
    );
}

fn httpdate(t: SystemTime) -> String {
    // RFC 1123 date without a date crate: 2026-01-01 is a Thursday.
    let secs = t.duration_since(UNIX_EPOCH).unwrap().as_secs();
    let base = 1_767_225_600u64;
    let off = secs - base;
    assert!(off < 86_400, "helper only formats times on 2026-01-01");
    format!(
        "Thu, 01 Jan 2026 {:02}:{:02}:{:02} GMT",
        off / 3600,
        (off / 60) % 60,
        off % 60
    )
}

#[test]
fn expires_gives_freshness_relative_to_date() {
    let plan = stored(decide(&[
        ("date", &httpdate(now())),
        ("expires", &httpdate(now() + Duration::from_secs(120))),
    ]));
    assert_eq!(plan.ttl, Duration::from_secs(120));
    // An invalid Expires means already expired.
    assert_eq!(refused(decide(&[("expires", "0")])), NotStored::NotReusable);
    // max-age beats Expires.
    let plan = stored(decide(&[
        ("cache-control", "max-age=5"),
        ("date", &httpdate(now())),
        ("expires", &httpdate(now() + Duration::from_secs(120))),
    ]));
    assert_eq!(plan.ttl, Duration::from_secs(5));
}

#[test]
fn s_maxage_beats_max_age_for_the_shared_cache() {
    let plan = stored(decide(&[("cache-control", "max-age=10, s-maxage=100")]));
    assert_eq!(plan.ttl, Duration::from_secs(100));
}

#[test]
fn no_opt_in_no_store_and_no_heuristic() {
    assert_eq!(refused(decide(&[])), NotStored::NoCacheHeaders);
    assert_eq!(
        refused(decide(&[(
            "last-modified",
            "Thu, 01 Jan 2025 00:00:00 GMT"
        )])),
        NotStored::NoCacheHeaders
    );
    assert_eq!(
        refused(decide(&[("cache-control", "no-store, max-age=60")])),
        NotStored::NoStore
    );
}

#[test]
fn private_is_never_stored_but_qualified_private_drops_only_the_field() {
    assert_eq!(
        refused(decide(&[("cache-control", "private, max-age=60")])),
        NotStored::Private
    );
    let plan = stored(decide(&[
        (
            "cache-control",
            "public, max-age=60, private=\"set-cookie\"",
        ),
        ("set-cookie", "session=abc"),
        ("x-kept", "1"),
    ]));
    assert!(!plan.headers.contains_key("set-cookie"));
    assert!(plan.headers.contains_key("x-kept"));
    let plan = stored(decide(&[
        ("cache-control", "max-age=60, no-cache=\"x-secret\""),
        ("x-secret", "s"),
    ]));
    assert!(!plan.headers.contains_key("x-secret"));
    assert_eq!(plan.ttl, Duration::from_secs(60));
}

#[test]
fn set_cookie_needs_an_explicit_public() {
    assert_eq!(
        refused(decide(&[
            ("cache-control", "max-age=60"),
            ("set-cookie", "a=1")
        ])),
        NotStored::SetCookie
    );
    let plan = stored(decide(&[
        ("cache-control", "public, max-age=60"),
        ("set-cookie", "a=1"),
    ]));
    assert_eq!(plan.headers.get("set-cookie").unwrap(), "a=1");
}

#[test]
fn authorization_needs_public_s_maxage_or_must_revalidate() {
    let auth = headers(&[("authorization", "Bearer x")]);
    assert_eq!(
        refused(decide_with(
            &auth,
            200,
            &[("cache-control", "max-age=60")],
            ResponseSource::Proxy
        )),
        NotStored::Authorization
    );
    for cc in [
        "public, max-age=60",
        "s-maxage=60",
        "max-age=60, must-revalidate",
    ] {
        stored(decide_with(
            &auth,
            200,
            &[("cache-control", cc)],
            ResponseSource::Proxy,
        ));
    }
}

#[test]
fn client_cache_control_does_not_bypass_the_edge() {
    let req = headers(&[("cache-control", "no-store"), ("pragma", "no-cache")]);
    stored(decide_with(
        &req,
        200,
        &[("cache-control", "max-age=60")],
        ResponseSource::Proxy,
    ));
}

#[test]
fn methods_statuses_and_vary_star() {
    let d = evaluate(
        &PolicyRequest {
            method: &Method::POST,
            headers: &HeaderMap::new(),
        },
        StatusCode::OK,
        &headers(&[("cache-control", "public, max-age=60")]),
        ResponseSource::Proxy,
        now(),
    );
    assert_eq!(refused(d), NotStored::Method);
    for status in [206, 500, 502, 503] {
        assert_eq!(
            refused(decide_with(
                &HeaderMap::new(),
                status,
                &[("cache-control", "public, max-age=60")],
                ResponseSource::Proxy
            )),
            NotStored::Status,
            "{status}"
        );
    }
    stored(decide_with(
        &HeaderMap::new(),
        404,
        &[("cache-control", "max-age=60")],
        ResponseSource::Proxy,
    ));
    stored(decide_with(
        &HeaderMap::new(),
        301,
        &[("cache-control", "max-age=60")],
        ResponseSource::Proxy,
    ));
    assert_eq!(
        refused(decide(&[
            ("cache-control", "max-age=60"),
            ("vary", "Accept, *")
        ])),
        NotStored::VaryStar
    );
}

#[test]
fn edge_functions_need_manual_cache_and_cache_headers() {
    let cc = [("cache-control", "public, max-age=60")];
    assert_eq!(
        refused(decide_with(
            &HeaderMap::new(),
            200,
            &cc,
            ResponseSource::EdgeFunction { manual: false }
        )),
        NotStored::FunctionNotManual
    );
    stored(decide_with(
        &HeaderMap::new(),
        200,
        &cc,
        ResponseSource::EdgeFunction { manual: true },
    ));
    assert_eq!(
        refused(decide_with(
            &HeaderMap::new(),
            200,
            &[("x", "y")],
            ResponseSource::EdgeFunction { manual: true }
        )),
        NotStored::NoCacheHeaders
    );
    stored(decide_with(
        &HeaderMap::new(),
        200,
        &[("netlify-cdn-cache-control", "s-maxage=5")],
        ResponseSource::EdgeFunction { manual: true },
    ));
}

#[test]
fn stale_directives_and_what_forbids_them() {
    let plan = stored(decide(&[(
        "netlify-cdn-cache-control",
        "public, s-maxage=10, stale-while-revalidate=60, stale-if-error=300",
    )]));
    assert_eq!(plan.ttl, Duration::from_secs(10));
    assert_eq!(plan.swr, Duration::from_secs(60));
    assert_eq!(plan.sie, Duration::from_secs(300));
    assert!(!plan.must_revalidate);
    for cc in [
        "s-maxage=10, stale-while-revalidate=60, stale-if-error=60, must-revalidate",
        "s-maxage=10, stale-while-revalidate=60, stale-if-error=60, proxy-revalidate",
    ] {
        let plan = stored(decide(&[("cache-control", cc), ("etag", "\"1\"")]));
        assert!(plan.must_revalidate, "{cc}");
        assert_eq!(plan.swr, Duration::ZERO);
        assert_eq!(plan.sie, Duration::ZERO);
    }
    // no-cache: stored for revalidation only (needs a validator).
    let plan = stored(decide(&[("cache-control", "no-cache"), ("etag", "\"1\"")]));
    assert_eq!(plan.ttl, Duration::ZERO);
    assert!(plan.must_revalidate);
    assert_eq!(
        refused(decide(&[("cache-control", "no-cache")])),
        NotStored::NotReusable
    );
}

#[test]
fn age_from_upstream_counts() {
    let plan = stored(decide(&[("cache-control", "max-age=60"), ("age", "15")]));
    assert_eq!(plan.initial_age, Duration::from_secs(15));
    assert_eq!(plan.ttl, Duration::from_secs(45));
    assert!(!plan.headers.contains_key("age"));
}

#[test]
fn hop_by_hop_headers_are_not_stored() {
    let plan = stored(decide(&[
        ("cache-control", "max-age=60"),
        ("connection", "x-conn-scoped"),
        ("x-conn-scoped", "1"),
        ("keep-alive", "timeout=5"),
        ("x-normal", "1"),
    ]));
    for h in ["connection", "x-conn-scoped", "keep-alive"] {
        assert!(!plan.headers.contains_key(h), "{h}");
    }
    assert!(plan.headers.contains_key("x-normal"));
}

#[test]
fn only_edge_headers_are_removed_downstream() {
    let mut h = headers(&[
        ("ledge-cdn-cache-control", "max-age=1"),
        ("netlify-cdn-cache-control", "max-age=1"),
        ("netlify-vary", "query"),
        ("netlify-cache-tag", "a"),
        ("netlify-cache-id", "b"),
        ("cdn-cache-control", "max-age=1"),
        ("cache-control", "max-age=1"),
        ("cache-tag", "a"),
        ("vary", "accept"),
    ]);
    policy::downstream_headers(&mut h);
    let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
    left.sort_unstable();
    assert_eq!(
        left,
        ["cache-control", "cache-tag", "cdn-cache-control", "vary"]
    );
}

#[test]
fn tags_netlify_wins_lowercased_limited_and_ids_keep_across_deploys() {
    let (tags, keep) = policy::tags(&headers(&[
        ("netlify-cache-tag", "Product, News ,,product"),
        ("cache-tag", "ignored"),
    ]));
    assert_eq!(tags, ["product", "news"]);
    assert!(!keep);
    let (tags, keep) = policy::tags(&headers(&[("cache-tag", "a,b"), ("netlify-cache-id", "X")]));
    assert_eq!(tags, ["a", "b", "x"]);
    assert!(keep);
    let many: Vec<String> = (0..600).map(|i| format!("t{i}")).collect();
    let long = "x".repeat(1025);
    let value = format!("{},{long}", many.join(","));
    let (tags, _) = policy::tags(&headers(&[("cache-tag", &value)]));
    assert_eq!(tags.len(), policy::MAX_TAGS);
    assert!(!tags.contains(&long));
}

fn key(
    res: &[(&str, &str)],
    rule: &RuleVary,
    query: Option<&str>,
    req: &[(&str, &str)],
    country: Option<&str>,
) -> String {
    let spec = VariantSpec::from_response(&headers(res), rule);
    let h = headers(req);
    let mut out = String::new();
    spec.variant_key(
        &VariantInput {
            query,
            headers: &h,
            country,
        },
        &mut out,
    );
    out
}

#[test]
fn k02_whole_query_is_in_the_key_by_default() {
    let none = RuleVary::default();
    assert_ne!(
        key(&[], &none, Some("a=1"), &[], None),
        key(&[], &none, Some("a=2"), &[], None)
    );
    assert_ne!(
        key(&[], &none, Some("a=1&utm=x"), &[], None),
        key(&[], &none, Some("a=1"), &[], None)
    );
}

#[test]
fn k03_netlify_vary_query_selects_params_in_any_order() {
    let none = RuleVary::default();
    let nv = [("netlify-vary", "query=a|b")];
    assert_eq!(
        key(&nv, &none, Some("a=1&utm=x"), &[], None),
        key(&nv, &none, Some("a=1"), &[], None)
    );
    assert_eq!(
        key(&nv, &none, Some("b=2&a=1"), &[], None),
        key(&nv, &none, Some("a=1&b=2&c=3"), &[], None)
    );
    assert_ne!(
        key(&nv, &none, Some("a=1"), &[], None),
        key(&nv, &none, Some("a=2"), &[], None)
    );
    assert_ne!(
        key(&nv, &none, Some("A=1"), &[], None),
        key(&nv, &none, Some("a=1"), &[], None)
    );
    let all = [("netlify-vary", "query")];
    assert_eq!(
        key(&all, &none, Some("b=2&a=1"), &[], None),
        key(&all, &none, Some("a=1&b=2"), &[], None)
    );
    assert_ne!(
        key(&all, &none, Some("a=1&c=1"), &[], None),
        key(&all, &none, Some("a=1"), &[], None)
    );
}

#[test]
fn k04_netlify_vary_cookie_keys_on_named_cookie_values_only() {
    let none = RuleVary::default();
    let nv = [("netlify-vary", "cookie=ab")];
    let k = |c: &str| key(&nv, &none, None, &[("cookie", c)], None);
    assert_ne!(k("ab=1"), k("ab=2"));
    assert_eq!(k("ab=1; other=x"), k("other=y; ab=1"));
    assert_ne!(k("ab=1"), key(&nv, &none, None, &[], None));
}

#[test]
fn netlify_vary_headers_language_and_country_buckets() {
    let none = RuleVary::default();
    let nv = [(
        "netlify-vary",
        "header=Device-Type|User-Agent, language=en|es+pt, country=us|es+pt",
    )];
    let k = |req: &[(&str, &str)], country: Option<&str>| key(&nv, &none, None, req, country);
    assert_ne!(
        k(&[("device-type", "mobile")], None),
        k(&[("device-type", "desktop")], None)
    );
    // User-Agent may not be named: it does not split the key.
    assert_eq!(
        k(&[("user-agent", "a")], None),
        k(&[("user-agent", "b")], None)
    );
    // es and pt share a bucket; q-weights pick the best language.
    assert_eq!(
        k(&[("accept-language", "es-ES")], None),
        k(&[("accept-language", "pt-BR,en;q=0.5")], None)
    );
    assert_eq!(
        k(&[("accept-language", "fr, en;q=0.9")], None),
        k(&[("accept-language", "en")], None)
    );
    assert_ne!(
        k(&[("accept-language", "en")], None),
        k(&[("accept-language", "es")], None)
    );
    assert_eq!(k(&[], Some("ES")), k(&[], Some("pt")));
    assert_ne!(k(&[], Some("us")), k(&[], Some("es")));
    assert_eq!(
        k(&[], Some("fr")),
        k(&[], Some("de")),
        "unlisted countries share one bucket"
    );
}

#[test]
fn vary_headers_split_the_key_and_accept_encoding_is_normalised() {
    let none = RuleVary::default();
    let v = [("vary", "Accept-Language, Accept-Encoding")];
    let k = |req: &[(&str, &str)]| key(&v, &none, None, req, None);
    assert_ne!(
        k(&[("accept-language", "en"), ("accept-encoding", "gzip")]),
        k(&[("accept-language", "de"), ("accept-encoding", "gzip")])
    );
    assert_eq!(
        k(&[
            ("accept-language", "en"),
            ("accept-encoding", "gzip, deflate, br")
        ]),
        k(&[
            ("accept-language", "en"),
            ("accept-encoding", "br;q=0.9, gzip")
        ])
    );
    assert_ne!(
        k(&[("accept-language", "en"), ("accept-encoding", "gzip")]),
        k(&[
            ("accept-language", "en"),
            ("accept-encoding", "br;q=0, gzip;q=0")
        ])
    );
    // Different specs never share keys.
    assert_ne!(
        key(&[("vary", "x-a")], &none, None, &[], None),
        key(&[("vary", "x-b")], &none, None, &[], None)
    );
}

#[test]
fn conditional_rule_inputs_join_the_key() {
    let rule = RuleVary {
        country: true,
        language: true,
        cookies: vec!["logged_in".into()],
    };
    let k = |req: &[(&str, &str)], country: Option<&str>| key(&[], &rule, None, req, country);
    assert_ne!(k(&[], Some("us")), k(&[], Some("de")));
    assert_eq!(k(&[], Some("US")), k(&[], Some("us")));
    assert_eq!(
        k(&[("cookie", "nf_country=de")], Some("us")),
        k(&[], Some("de"))
    );
    assert_ne!(
        k(&[("accept-language", "de-AT")], None),
        k(&[("accept-language", "en")], None)
    );
    assert_eq!(
        k(&[("accept-language", "de-AT")], None),
        k(&[("accept-language", "de")], None)
    );
    assert_eq!(
        k(&[("cookie", "nf_lang=fr")], None),
        k(&[("accept-language", "fr")], None)
    );
    assert_ne!(k(&[("cookie", "logged_in=1")], None), k(&[], None));
    assert_eq!(
        k(&[("cookie", "logged_in=1")], None),
        k(&[("cookie", "logged_in=2")], None)
    );
    assert_eq!(
        key(&[], &RuleVary::default(), None, &[], Some("us")),
        key(&[], &RuleVary::default(), None, &[], Some("de")),
        "without country rules the country is not in the key"
    );
}

#[test]
fn cache_status_format() {
    let hit = CacheStatus {
        hit: true,
        ttl: Some(42),
        ..CacheStatus::default()
    };
    assert_eq!(hit.format("Ledge Edge"), "\"Ledge Edge\"; hit; ttl=42");
    let stale = CacheStatus {
        hit: true,
        fwd: Some(Fwd::Stale),
        ttl: Some(-20),
        ..CacheStatus::default()
    };
    assert_eq!(
        stale.format("Ledge Edge"),
        "\"Ledge Edge\"; hit; fwd=stale; ttl=-20"
    );
    let miss = CacheStatus {
        fwd: Some(Fwd::UriMiss),
        fwd_status: Some(200),
        stored: true,
        ttl: Some(3600),
        ..CacheStatus::default()
    };
    assert_eq!(
        miss.format("Netlify Edge"),
        "\"Netlify Edge\"; fwd=uri-miss; fwd-status=200; stored; ttl=3600"
    );
    // A name with a quote or a backslash is escaped as a quoted string.
    assert_eq!(hit.format(r#"a"b\c"#), r#""a\"b\\c"; hit; ttl=42"#);
    let mut h = headers(&[("cache-status", "\"Origin\"; hit")]);
    policy::cache_status_headers(&mut h, "Ledge Edge", &hit, Some(7));
    assert_eq!(h.get("age").unwrap(), "7");
    let all: Vec<&str> = h
        .get_all("cache-status")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(all, ["\"Origin\"; hit", "\"Ledge Edge\"; hit; ttl=42"]);
}

#[test]
fn not_modified_replaces_fields_but_not_body_ones() {
    let stored = headers(&[
        ("etag", "\"1\""),
        ("content-length", "10"),
        ("cache-control", "max-age=1"),
        ("x-a", "old"),
    ]);
    let nm = headers(&[
        ("cache-control", "max-age=100"),
        ("content-length", "0"),
        ("x-a", "new"),
        ("x-b", "added"),
    ]);
    let m = policy::merge_not_modified(&stored, &nm);
    assert_eq!(m.get("content-length").unwrap(), "10");
    assert_eq!(m.get("cache-control").unwrap(), "max-age=100");
    assert_eq!(m.get("x-a").unwrap(), "new");
    assert_eq!(m.get("x-b").unwrap(), "added");
    assert_eq!(m.get("etag").unwrap(), "\"1\"");
    let cond = policy::revalidation_headers(&headers(&[
        ("etag", "\"1\""),
        ("last-modified", "Thu, 01 Jan 2026 00:00:00 GMT"),
    ]));
    assert_eq!(cond.get("if-none-match").unwrap(), "\"1\"");
    assert!(cond.contains_key("if-modified-since"));
}

#[test]
fn paths_are_normalised() {
    let n = |p: &str| {
        let mut s = String::new();
        policy::normalize_path(p, &mut s);
        s
    };
    assert_eq!(n("/a%2db"), "/a-b");
    assert_eq!(n("/%7euser"), "/~user");
    assert_eq!(n("/a%2fb"), "/a%2Fb");
    assert_eq!(n("/bad%zz%"), "/bad%zz%");
    assert_eq!(n("/é%4"), "/é%4");
    assert_eq!(n("/plain"), "/plain");
}
