//! The pure part of the cache: which responses may be stored, for how long,
//! under which key, and which headers leave the node. No I/O, no runtime.
//!
//! Precedence of the edge's own controls (RFC 9213 targeted fields, spec §5.2):
//! `Ledge-CDN-Cache-Control`, then `Netlify-CDN-Cache-Control`, then
//! `CDN-Cache-Control`; when one of them is present the edge ignores
//! `Cache-Control` and `Expires`. Otherwise `Cache-Control`, then `Expires`.
//! RFC 9111 storability, freshness and age come from the
//! `http-cache-semantics` crate evaluated as a shared cache; what it does not
//! know (`stale-while-revalidate`, `stale-if-error`, targeted fields, tags,
//! `Netlify-Vary`) is decided here.
//!
//! Decisions worth knowing:
//! - dynamic responses are stored only when they opt in with a cache header
//!   (spec §5.2): no heuristic freshness from `Last-Modified`;
//! - the client's own `Cache-Control` / `Pragma` do not bypass the edge (as on
//!   common CDNs); `Authorization` on the request does, unless the response
//!   says `public`, `s-maxage` or `must-revalidate` (RFC 9111 §3.5);
//! - `Set-Cookie` does not prevent storing (RFC 9111 §7.3 note), but as in
//!   `http-cache-semantics` a shared cache requires an explicit `public` for
//!   such responses; `private="set-cookie"` or `no-cache="set-cookie"` stores
//!   the response without that field;
//! - `must-revalidate`, `proxy-revalidate` and `no-cache` forbid serving stale
//!   (neither `stale-while-revalidate` nor `stale-if-error` apply).

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use http_cache_semantics::{CacheOptions, CachePolicy};

/// `Ledge-CDN-Cache-Control`: for Ledge only, never sent to clients.
pub const LEDGE_CDN_CACHE_CONTROL: HeaderName = HeaderName::from_static("ledge-cdn-cache-control");
/// `Netlify-CDN-Cache-Control`: for the edge only, never sent to clients.
pub const NETLIFY_CDN_CACHE_CONTROL: HeaderName =
    HeaderName::from_static("netlify-cdn-cache-control");
/// `CDN-Cache-Control` (RFC 9213): used by the edge and passed downstream.
pub const CDN_CACHE_CONTROL: HeaderName = HeaderName::from_static("cdn-cache-control");
/// `Netlify-Vary`: cache key refinement, never sent to clients.
pub const NETLIFY_VARY: HeaderName = HeaderName::from_static("netlify-vary");
/// `Netlify-Cache-Tag`: purge tags for the edge only (wins over `Cache-Tag`).
pub const NETLIFY_CACHE_TAG: HeaderName = HeaderName::from_static("netlify-cache-tag");
/// `Cache-Tag`: purge tags, also passed downstream.
pub const CACHE_TAG: HeaderName = HeaderName::from_static("cache-tag");
/// `Netlify-Cache-ID`: survives deploys; the ids are purge tags too.
pub const NETLIFY_CACHE_ID: HeaderName = HeaderName::from_static("netlify-cache-id");
/// `Cache-Status` (RFC 9211).
pub const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// Headers only the edge reads; removed before a response leaves the node.
const EDGE_ONLY: [HeaderName; 5] = [
    LEDGE_CDN_CACHE_CONTROL,
    NETLIFY_CDN_CACHE_CONTROL,
    NETLIFY_VARY,
    NETLIFY_CACHE_TAG,
    NETLIFY_CACHE_ID,
];

/// Connection-scoped headers (RFC 9110 §7.6.1): never stored, never
/// forwarded by the edge's proxy either.
pub const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Most tags kept per response (spec §5.4), for tags and for ids each.
pub const MAX_TAGS: usize = 500;
/// Longest tag kept (characters); longer ones are ignored.
pub const MAX_TAG_LEN: usize = 1024;

/// What produced a response the cache may store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseSource {
    /// A proxy rule's origin (or a serverless function).
    Proxy,
    /// An edge function; `manual` is its `cache: "manual"` declaration
    /// (spec §5.6). Without it the response is never stored.
    EdgeFunction {
        /// Declared `cache: "manual"`.
        manual: bool,
    },
}

impl ResponseSource {
    pub(crate) fn code(self) -> u8 {
        match self {
            ResponseSource::Proxy => 0,
            ResponseSource::EdgeFunction { manual: false } => 1,
            ResponseSource::EdgeFunction { manual: true } => 2,
        }
    }

    pub(crate) fn from_code(c: u8) -> Self {
        match c {
            1 => ResponseSource::EdgeFunction { manual: false },
            2 => ResponseSource::EdgeFunction { manual: true },
            _ => ResponseSource::Proxy,
        }
    }
}

/// Which field governs the edge's caching of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlSource {
    /// `Ledge-CDN-Cache-Control`.
    LedgeCdn,
    /// `Netlify-CDN-Cache-Control`.
    NetlifyCdn,
    /// `CDN-Cache-Control`.
    Cdn,
    /// `Cache-Control` (and `Expires`).
    CacheControl,
    /// Only `Expires`.
    Expires,
    /// No cache header at all.
    None,
}

/// Parsed cache directives: lowercased names with optional unquoted values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directives {
    items: Vec<(String, Option<String>)>,
}

impl Directives {
    /// Parses every value of a `Cache-Control`-like field. Commas inside
    /// quoted strings (`private="a, b"`) do not split.
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a HeaderValue>) -> Self {
        let mut items = Vec::new();
        for v in values {
            let Ok(s) = v.to_str() else { continue };
            for part in split_outside_quotes(s, ',') {
                let part = part.trim();
                if part.is_empty() {
                    continue;
                }
                let (name, value) = match part.split_once('=') {
                    Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"').to_owned())),
                    None => (part, None),
                };
                if name.is_empty() {
                    continue;
                }
                items.push((name.to_ascii_lowercase(), value));
            }
        }
        Self { items }
    }

    /// True when the directive is present.
    pub fn has(&self, name: &str) -> bool {
        self.items.iter().any(|(n, _)| n == name)
    }

    /// The directive's value, when present with one.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.items
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }

    /// A delta-seconds directive (`max-age=60`); invalid values are `None`.
    pub fn seconds(&self, name: &str) -> Option<u64> {
        self.value(name).and_then(|v| v.parse::<u64>().ok())
    }

    /// True when no directive is present.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The directives as one field value.
    pub fn to_value(&self) -> String {
        let mut out = String::new();
        for (n, v) in &self.items {
            if !out.is_empty() {
                out.push_str(", ");
            }
            out.push_str(n);
            if let Some(v) = v {
                out.push('=');
                if v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') && !v.is_empty() {
                    out.push_str(v);
                } else {
                    out.push('"');
                    out.push_str(&v.replace('"', ""));
                    out.push('"');
                }
            }
        }
        out
    }

    fn remove(&mut self, name: &str) {
        self.items.retain(|(n, _)| n != name);
    }
}

fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, c) in s.char_indices() {
        if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            out.push(&s[start..i]);
            start = i + c.len_utf8();
        }
    }
    out.push(&s[start..]);
    out
}

/// The field that governs the edge, and its directives (RFC 9213: the most
/// specific targeted field present wins; an empty one is ignored).
pub fn governing_control(headers: &HeaderMap) -> (ControlSource, Directives) {
    for (name, source) in [
        (LEDGE_CDN_CACHE_CONTROL, ControlSource::LedgeCdn),
        (NETLIFY_CDN_CACHE_CONTROL, ControlSource::NetlifyCdn),
        (CDN_CACHE_CONTROL, ControlSource::Cdn),
    ] {
        let d = Directives::parse(headers.get_all(name));
        if !d.is_empty() {
            return (source, d);
        }
    }
    let d = Directives::parse(headers.get_all(header::CACHE_CONTROL));
    if !d.is_empty() {
        return (ControlSource::CacheControl, d);
    }
    if headers.contains_key(header::EXPIRES) {
        return (ControlSource::Expires, d);
    }
    (ControlSource::None, d)
}

/// Why a response is not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStored {
    /// Only `GET` responses are stored.
    Method,
    /// An edge function without `cache: "manual"`.
    FunctionNotManual,
    /// No cache header opts the response in (spec §5.2).
    NoCacheHeaders,
    /// `no-store`.
    NoStore,
    /// `private` (the edge is a shared cache).
    Private,
    /// The request carried `Authorization` and the response did not allow
    /// sharing it (RFC 9111 §3.5).
    Authorization,
    /// `Set-Cookie` without an explicit `public`.
    SetCookie,
    /// A status the cache does not store (206, 5xx...).
    Status,
    /// `Vary: *`.
    VaryStar,
    /// Not fresh, no validator and no stale-while-revalidate: useless to keep.
    NotReusable,
    /// Larger than the configured maximum.
    TooLarge,
}

/// The request facts storing depends on.
#[derive(Debug, Clone, Copy)]
pub struct PolicyRequest<'a> {
    /// Request method.
    pub method: &'a Method,
    /// Request headers (only `Authorization` matters here).
    pub headers: &'a HeaderMap,
}

/// What to store and for how long.
#[derive(Debug, Clone)]
pub struct StorePlan {
    /// Freshness left at the time of the response.
    pub ttl: Duration,
    /// Age of the response when it arrived (its `Age` header).
    pub initial_age: Duration,
    /// `stale-while-revalidate` window after expiry.
    pub swr: Duration,
    /// `stale-if-error` window after expiry.
    pub sie: Duration,
    /// Serving stale is forbidden (`must-revalidate`, `proxy-revalidate`,
    /// `no-cache`).
    pub must_revalidate: bool,
    /// Purge tags (lowercased).
    pub tags: Vec<String>,
    /// `Netlify-Cache-ID` present: survives a new deploy (spec §5.4).
    pub keep_across_deploys: bool,
    /// The origin headers to store (hop-by-hop and privately-qualified fields
    /// removed, `Age` removed); still including the edge-only ones, which
    /// [`downstream_headers`] removes when serving.
    pub headers: HeaderMap,
}

/// Whether and how to store a response.
#[derive(Debug, Clone)]
pub enum Decision {
    /// Store it.
    Store(StorePlan),
    /// Do not.
    DontStore(NotStored),
}

/// Decides whether a response may be stored by the shared edge cache.
pub fn evaluate(
    req: &PolicyRequest<'_>,
    status: StatusCode,
    headers: &HeaderMap,
    source: ResponseSource,
    now: SystemTime,
) -> Decision {
    if *req.method != Method::GET {
        return Decision::DontStore(NotStored::Method);
    }
    if source == (ResponseSource::EdgeFunction { manual: false }) {
        return Decision::DontStore(NotStored::FunctionNotManual);
    }
    let (control, mut directives) = governing_control(headers);
    if control == ControlSource::None {
        return Decision::DontStore(NotStored::NoCacheHeaders);
    }
    if directives.has("no-store") {
        return Decision::DontStore(NotStored::NoStore);
    }
    if headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim() == "*"))
    {
        return Decision::DontStore(NotStored::VaryStar);
    }

    // Fields named by qualified private / no-cache are not stored.
    let mut stored = HeaderMap::with_capacity(headers.len());
    let mut dropped: Vec<String> = Vec::new();
    for directive in ["private", "no-cache"] {
        if let Some(list) = directives.value(directive) {
            dropped.extend(
                list.split(',')
                    .map(|f| f.trim().to_ascii_lowercase())
                    .filter(|f| !f.is_empty()),
            );
        }
    }
    let qualified_private = directives.value("private").is_some();
    let qualified_no_cache = directives.value("no-cache").is_some();
    if directives.has("private") && !qualified_private {
        return Decision::DontStore(NotStored::Private);
    }
    let connection_named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    for (name, value) in headers {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n)
            || n == "age"
            || dropped.iter().any(|d| d == n)
            || connection_named.iter().any(|c| c == n)
        {
            continue;
        }
        stored.append(name.clone(), value.clone());
    }

    // The view http-cache-semantics evaluates: the governing directives as
    // Cache-Control, qualified private / no-cache reduced to what remains.
    if qualified_private {
        directives.remove("private");
    }
    if qualified_no_cache {
        directives.remove("no-cache");
    }
    let mut view = stored.clone();
    if let Some(age) = headers.get(header::AGE) {
        view.insert(header::AGE, age.clone());
    }
    if matches!(
        control,
        ControlSource::LedgeCdn | ControlSource::NetlifyCdn | ControlSource::Cdn
    ) {
        view.remove(header::EXPIRES);
        view.remove(header::PRAGMA);
    }
    view.remove(header::CACHE_CONTROL);
    if !directives.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&directives.to_value()) {
            view.insert(header::CACHE_CONTROL, v);
        }
    }
    let mut policy_req = http::Request::new(());
    *policy_req.method_mut() = Method::GET;
    if let Some(auth) = req.headers.get(header::AUTHORIZATION) {
        policy_req
            .headers_mut()
            .insert(header::AUTHORIZATION, auth.clone());
    }
    let mut policy_res = http::Response::new(());
    *policy_res.status_mut() = status;
    *policy_res.headers_mut() = view;
    let opts = CacheOptions {
        shared: true,
        cache_heuristic: 0.0,
        ..CacheOptions::default()
    };
    let policy = CachePolicy::new_options(&policy_req, &policy_res, now, opts);
    if !policy.is_storable() {
        let reason = if req.headers.contains_key(header::AUTHORIZATION)
            && !(directives.has("public")
                || directives.has("s-maxage")
                || directives.has("must-revalidate"))
        {
            NotStored::Authorization
        } else {
            NotStored::Status
        };
        return Decision::DontStore(reason);
    }
    if status == StatusCode::PARTIAL_CONTENT || status.is_server_error() {
        return Decision::DontStore(NotStored::Status);
    }
    let set_cookie = stored.contains_key(header::SET_COOKIE);
    if set_cookie && !directives.has("public") && !directives.has("immutable") {
        return Decision::DontStore(NotStored::SetCookie);
    }
    let ttl = policy.time_to_live(now);
    let initial_age = policy.age(now);
    let must_revalidate = directives.has("must-revalidate")
        || directives.has("proxy-revalidate")
        || directives.has("no-cache");
    let swr = if must_revalidate {
        Duration::ZERO
    } else {
        Duration::from_secs(directives.seconds("stale-while-revalidate").unwrap_or(0))
    };
    let sie = if must_revalidate {
        Duration::ZERO
    } else {
        Duration::from_secs(directives.seconds("stale-if-error").unwrap_or(0))
    };
    let has_validator =
        stored.contains_key(header::ETAG) || stored.contains_key(header::LAST_MODIFIED);
    if ttl.is_zero() && swr.is_zero() && !has_validator {
        return Decision::DontStore(NotStored::NotReusable);
    }
    let (tags, keep_across_deploys) = tags(headers);
    Decision::Store(StorePlan {
        ttl,
        initial_age,
        swr,
        sie,
        must_revalidate,
        tags,
        keep_across_deploys,
        headers: stored,
    })
}

/// Purge tags of a response and whether it survives deploys: `Netlify-Cache-Tag`
/// wins over `Cache-Tag`; `Netlify-Cache-ID` values are tags too and keep the
/// response across deploys. Tags are trimmed and lowercased; empty or
/// over-long tags are ignored; at most [`MAX_TAGS`] of each kind.
pub fn tags(headers: &HeaderMap) -> (Vec<String>, bool) {
    let list = |name: HeaderName| -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for v in headers.get_all(name) {
            let Ok(s) = std::str::from_utf8(v.as_bytes()) else {
                continue;
            };
            for t in s.split(',') {
                let t = t.trim();
                if t.is_empty() || t.chars().count() > MAX_TAG_LEN {
                    continue;
                }
                let t = t.to_lowercase();
                if !out.contains(&t) && out.len() < MAX_TAGS {
                    out.push(t);
                }
            }
        }
        out
    };
    let mut tags = if headers.contains_key(NETLIFY_CACHE_TAG) {
        list(NETLIFY_CACHE_TAG)
    } else {
        list(CACHE_TAG)
    };
    let ids = list(NETLIFY_CACHE_ID);
    let keep = !ids.is_empty();
    for id in ids {
        if !tags.contains(&id) {
            tags.push(id);
        }
    }
    (tags, keep)
}

/// Removes the headers only the edge reads (`Ledge-CDN-Cache-Control`,
/// `Netlify-CDN-Cache-Control`, `Netlify-Vary`, `Netlify-Cache-Tag`,
/// `Netlify-Cache-ID`). `CDN-Cache-Control`, `Cache-Control`, `Vary` and
/// `Cache-Tag` pass downstream (spec §5.2, §5.4). Apply to every dynamic
/// response, stored or not.
pub fn downstream_headers(headers: &mut HeaderMap) {
    for name in EDGE_ONLY {
        headers.remove(name);
    }
}

/// Conditional request headers for revalidating a stored response:
/// `If-None-Match` from its `ETag`, `If-Modified-Since` from its
/// `Last-Modified`. Empty when it has no validator.
pub fn revalidation_headers(stored: &HeaderMap) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Some(etag) = stored.get(header::ETAG) {
        h.insert(header::IF_NONE_MATCH, etag.clone());
    }
    if let Some(lm) = stored.get(header::LAST_MODIFIED) {
        h.insert(header::IF_MODIFIED_SINCE, lm.clone());
    }
    h
}

/// True when the client's conditional request is satisfied by a stored
/// response with headers `stored`, so it can be answered `304 Not Modified`
/// (RFC 9110 §13.2.2: `If-None-Match` with weak comparison, or — only without
/// it — `If-Modified-Since` against `Last-Modified`).
pub fn client_not_modified(req: &HeaderMap, stored: &HeaderMap) -> bool {
    let inm = req.get_all(header::IF_NONE_MATCH);
    let mut any = false;
    for v in inm.iter() {
        any = true;
        let Ok(list) = v.to_str() else { continue };
        if list.trim() == "*" {
            return true;
        }
        let Some(etag) = stored.get(header::ETAG).and_then(|e| e.to_str().ok()) else {
            continue;
        };
        let opaque = |t: &str| t.trim().trim_start_matches("W/").to_owned();
        let mine = opaque(etag);
        if list.split(',').any(|t| opaque(t) == mine) {
            return true;
        }
    }
    if any {
        return false;
    }
    // Most requests are unconditional: the stored date is parsed only for a
    // request that has one to compare.
    let Some(since) = req
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
    else {
        return false;
    };
    stored
        .get(header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
        .is_some_and(|m| m <= since)
}

/// The client's own conditional and range headers, removed from a request
/// that fills the cache so the origin sends a whole response.
pub const CLIENT_CONDITIONALS: [HeaderName; 6] = [
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_MATCH,
    header::IF_UNMODIFIED_SINCE,
    header::IF_RANGE,
    header::RANGE,
];

/// Stored headers updated by a `304 Not Modified` (RFC 9111 §4.3.4): every
/// field the 304 carries replaces the stored one, except those describing the
/// body and connection-scoped ones.
pub fn merge_not_modified(stored: &HeaderMap, not_modified: &HeaderMap) -> HeaderMap {
    const KEEP: [&str; 4] = [
        "content-length",
        "content-encoding",
        "transfer-encoding",
        "content-range",
    ];
    let mut out = stored.clone();
    let mut replaced: Vec<&HeaderName> = Vec::new();
    for (name, value) in not_modified {
        let n = name.as_str();
        if KEEP.contains(&n) || HOP_BY_HOP.contains(&n) {
            continue;
        }
        if !replaced.contains(&name) {
            out.remove(name);
            replaced.push(name);
        }
        out.append(name.clone(), value.clone());
    }
    out
}

/// Key refinement requested by conditional redirect rules that shaped the
/// response (spec §1.8): their inputs join the cache key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleVary {
    /// A `Country=` condition was evaluated.
    pub country: bool,
    /// A `Language=` condition was evaluated.
    pub language: bool,
    /// Cookies whose presence a `Cookie=` condition tested (lowercase names
    /// are not assumed: cookie names are case-sensitive).
    pub cookies: Vec<String>,
}

impl RuleVary {
    /// True when no rule input joins the key.
    pub fn is_empty(&self) -> bool {
        !self.country && !self.language && self.cookies.is_empty()
    }
}

/// Which query parameters are part of the key.
#[derive(Debug, Clone, PartialEq, Eq)]
enum QueryVary {
    /// The whole query string as sent (the default, spec §5.3).
    Whole,
    /// Every parameter, order ignored (`Netlify-Vary: query`).
    All,
    /// Only these parameters, order ignored (`Netlify-Vary: query=a|b`).
    Only(Vec<String>),
}

/// Headers `Netlify-Vary: header=` may not name (spec §5.3).
fn netlify_vary_header_allowed(name: &str) -> bool {
    !(name.starts_with("accept")
        || name.starts_with("if-")
        || matches!(
            name,
            "cache-control"
                | "connection"
                | "content-length"
                | "cookie"
                | "host"
                | "range"
                | "referer"
                | "upgrade"
                | "user-agent"
        ))
}

/// How requests for one URL map to stored variants: the response's `Vary`
/// fields, its `Netlify-Vary` refinements and the inputs of conditional rules.
/// Built from a stored response; the request side of the key is
/// [`VariantSpec::variant_key`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariantSpec {
    query: QueryVary,
    vary: Vec<HeaderName>,
    headers: Vec<HeaderName>,
    cookies: Vec<String>,
    languages: Option<Vec<Vec<String>>>,
    countries: Option<Vec<Vec<String>>>,
    rule: RuleVary,
    canonical: String,
}

/// The request inputs a variant key reads.
#[derive(Debug, Clone, Copy)]
pub struct VariantInput<'a> {
    /// The query string, without `?`.
    pub query: Option<&'a str>,
    /// Request headers.
    pub headers: &'a HeaderMap,
    /// The visitor's country (ISO 3166-1 alpha-2), when known.
    pub country: Option<&'a str>,
}

impl VariantSpec {
    /// The spec of a response with these (origin) headers, refined by `rule`.
    pub fn from_response(headers: &HeaderMap, rule: &RuleVary) -> Self {
        let mut vary: Vec<HeaderName> = Vec::new();
        for v in headers.get_all(header::VARY) {
            let Ok(s) = v.to_str() else { continue };
            for t in s.split(',') {
                let t = t.trim().to_ascii_lowercase();
                if let Ok(n) = HeaderName::from_bytes(t.as_bytes()) {
                    if !vary.contains(&n) {
                        vary.push(n);
                    }
                }
            }
        }
        vary.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        let mut spec = Self {
            query: QueryVary::Whole,
            vary,
            headers: Vec::new(),
            cookies: Vec::new(),
            languages: None,
            countries: None,
            rule: rule.clone(),
            canonical: String::new(),
        };
        for v in headers.get_all(NETLIFY_VARY) {
            let Ok(s) = v.to_str() else { continue };
            spec.add_netlify_vary(s);
        }
        spec.rule.cookies.sort();
        spec.rule.cookies.dedup();
        spec.canonical = spec.canonical_form();
        spec
    }

    fn add_netlify_vary(&mut self, value: &str) {
        for directive in value.split(',') {
            let directive = directive.trim();
            let (name, list) = match directive.split_once('=') {
                Some((n, l)) => (n.trim().to_ascii_lowercase(), Some(l.trim())),
                None => (directive.to_ascii_lowercase(), None),
            };
            let values = |l: &str| -> Vec<String> {
                l.split('|')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            };
            match (name.as_str(), list) {
                ("query", None) => self.query = QueryVary::All,
                ("query", Some(l)) => {
                    let mut names = values(l);
                    names.sort();
                    names.dedup();
                    self.query = QueryVary::Only(names);
                }
                ("header", Some(l)) => {
                    for h in values(l) {
                        let h = h.to_ascii_lowercase();
                        if !netlify_vary_header_allowed(&h) {
                            continue;
                        }
                        if let Ok(n) = HeaderName::from_bytes(h.as_bytes()) {
                            if !self.headers.contains(&n) {
                                self.headers.push(n);
                            }
                        }
                    }
                    self.headers.sort_by(|a, b| a.as_str().cmp(b.as_str()));
                }
                ("cookie", Some(l)) => {
                    self.cookies.extend(values(l));
                    self.cookies.sort();
                    self.cookies.dedup();
                }
                ("language", Some(l)) => {
                    self.languages = Some(buckets(l));
                }
                ("country", Some(l)) => {
                    self.countries = Some(buckets(l));
                }
                _ => {}
            }
        }
    }

    fn canonical_form(&self) -> String {
        let mut s = String::new();
        match &self.query {
            QueryVary::Whole => s.push_str("q*"),
            QueryVary::All => s.push_str("qa"),
            QueryVary::Only(names) => {
                let _ = write!(s, "q={}", names.join("|"));
            }
        }
        for (tag, names) in [("v", &self.vary), ("h", &self.headers)] {
            if !names.is_empty() {
                let _ = write!(s, ";{tag}=");
                for n in names {
                    s.push_str(n.as_str());
                    s.push('|');
                }
            }
        }
        if !self.cookies.is_empty() {
            let _ = write!(s, ";c={}", self.cookies.join("|"));
        }
        for (tag, b) in [("l", &self.languages), ("g", &self.countries)] {
            if let Some(b) = b {
                let joined: Vec<String> = b.iter().map(|g| g.join("+")).collect();
                let _ = write!(s, ";{tag}={}", joined.join("|"));
            }
        }
        if self.rule.country {
            s.push_str(";rc");
        }
        if self.rule.language {
            s.push_str(";rl");
        }
        if !self.rule.cookies.is_empty() {
            let _ = write!(s, ";rk={}", self.rule.cookies.join("|"));
        }
        s
    }

    /// A stable text form of the spec (part of every key under it).
    pub fn canonical(&self) -> &str {
        &self.canonical
    }

    /// The request's side of the key under this spec.
    pub fn variant_key(&self, input: &VariantInput<'_>, out: &mut String) {
        out.push_str(&self.canonical);
        out.push('\u{0}');
        let q = input.query.unwrap_or("");
        match &self.query {
            QueryVary::Whole => push_part(out, q),
            QueryVary::All | QueryVary::Only(_) => {
                let mut pairs: Vec<(&str, &str)> = q
                    .split('&')
                    .filter(|p| !p.is_empty())
                    .map(|p| p.split_once('=').unwrap_or((p, "")))
                    .filter(|(n, _)| match &self.query {
                        QueryVary::Only(names) => names.iter().any(|x| x == n),
                        _ => true,
                    })
                    .collect();
                pairs.sort_unstable();
                for (n, v) in pairs {
                    push_part(out, n);
                    push_part(out, v);
                }
            }
        }
        for name in self.vary.iter().chain(self.headers.iter()) {
            if *name == header::ACCEPT_ENCODING {
                push_part(out, accepted_codings(input.headers));
                continue;
            }
            let mut first = true;
            out.push('[');
            for v in input.headers.get_all(name) {
                if !first {
                    out.push(',');
                }
                first = false;
                push_part(out, &String::from_utf8_lossy(v.as_bytes()));
            }
            out.push(']');
        }
        for c in &self.cookies {
            push_part(out, cookie(input.headers, c).unwrap_or("\u{1}"));
        }
        if let Some(b) = &self.languages {
            let i = language_bucket(input.headers, b);
            push_part(out, &i.map_or("-".to_owned(), |i| i.to_string()));
        }
        if let Some(b) = &self.countries {
            let c = input.country.map(str::to_ascii_lowercase);
            let i = c
                .as_deref()
                .and_then(|c| b.iter().position(|g| g.iter().any(|x| x == c)));
            push_part(out, &i.map_or("-".to_owned(), |i| i.to_string()));
        }
        if self.rule.country {
            let c = cookie(input.headers, "nf_country")
                .or(input.country)
                .unwrap_or("")
                .to_ascii_lowercase();
            push_part(out, &c);
        }
        if self.rule.language {
            let l = cookie(input.headers, "nf_lang")
                .map(str::to_owned)
                .or_else(|| first_language(input.headers))
                .unwrap_or_default();
            let primary = l.split('-').next().unwrap_or("").to_ascii_lowercase();
            push_part(out, &primary);
        }
        for c in &self.rule.cookies {
            out.push(if cookie(input.headers, c).is_some() {
                '1'
            } else {
                '0'
            });
        }
    }
}

fn push_part(out: &mut String, s: &str) {
    let _ = write!(out, "{}:", s.len());
    out.push_str(s);
}

fn buckets(l: &str) -> Vec<Vec<String>> {
    l.split('|')
        .map(|g| {
            g.split('+')
                .map(|x| x.trim().to_ascii_lowercase())
                .filter(|x| !x.is_empty())
                .collect::<Vec<_>>()
        })
        .filter(|g| !g.is_empty())
        .collect()
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (n, v) = pair.trim().split_once('=')?;
            (n.trim() == name).then_some(v.trim())
        })
}

/// `Accept-Language` ranges with their weights, best first.
fn languages(headers: &HeaderMap) -> Vec<(String, f32)> {
    let mut out: Vec<(String, f32)> = Vec::new();
    for v in headers.get_all(header::ACCEPT_LANGUAGE) {
        let Ok(s) = v.to_str() else { continue };
        for item in s.split(',') {
            let mut parts = item.split(';');
            let tag = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            if tag.is_empty() || tag == "*" {
                continue;
            }
            let q = parts
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            if q > 0.0 {
                out.push((tag, q));
            }
        }
    }
    out.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal));
    out
}

fn first_language(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::ACCEPT_LANGUAGE)?.to_str().ok()?;
    let first = v.split(',').next()?.split(';').next()?.trim();
    (!first.is_empty()).then(|| first.to_owned())
}

/// The bucket the visitor's best-weighted language falls in.
fn language_bucket(headers: &HeaderMap, buckets: &[Vec<String>]) -> Option<usize> {
    for (tag, _) in languages(headers) {
        let primary = tag.split('-').next().unwrap_or("");
        if let Some(i) = buckets
            .iter()
            .position(|g| g.iter().any(|x| *x == tag || x == primary))
        {
            return Some(i);
        }
    }
    None
}

/// `Accept-Encoding` reduced to the codings the edge stores variants for.
fn accepted_codings(headers: &HeaderMap) -> &'static str {
    let mut br = false;
    let mut gzip = false;
    for v in headers.get_all(header::ACCEPT_ENCODING) {
        let Ok(s) = v.to_str() else { continue };
        for item in s.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let zero = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    == Some(0.0)
            });
            if zero {
                continue;
            }
            if coding.eq_ignore_ascii_case("br") {
                br = true;
            } else if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                gzip = true;
            }
        }
    }
    match (br, gzip) {
        (true, true) => "br,gzip",
        (true, false) => "br",
        (false, true) => "gzip",
        (false, false) => "identity",
    }
}

/// A request path normalised for the key: percent-escapes of unreserved
/// characters decoded, other escapes upper-cased. Malformed escapes are kept.
pub fn normalize_path(path: &str, out: &mut String) {
    let b = path.as_bytes();
    let mut i = 0;
    let hex = |c: u8| -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    };
    if !path.contains('%') {
        out.push_str(path);
        return;
    }
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                let c = h * 16 + l;
                if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') {
                    out.push(char::from(c));
                } else {
                    let _ = write!(out, "%{c:02X}");
                }
                i += 3;
                continue;
            }
        }
        // Push the whole UTF-8 character starting here.
        let ch_len = path[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&path[i..i + ch_len]);
        i += ch_len;
    }
}

/// What the cache did for a response, as RFC 9211 `Cache-Status` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fwd {
    /// Nothing stored for the URL.
    UriMiss,
    /// Stored for the URL, but not this variant.
    VaryMiss,
    /// An entry existed but could not be used (purged, voided by a deploy).
    Miss,
    /// Stored but stale: revalidated or refetched.
    Stale,
    /// The cache was not consulted for this request (method, bypass).
    Bypass,
    /// The request method is not cacheable.
    Method,
}

impl Fwd {
    fn as_str(self) -> &'static str {
        match self {
            Fwd::UriMiss => "uri-miss",
            Fwd::VaryMiss => "vary-miss",
            Fwd::Miss => "miss",
            Fwd::Stale => "stale",
            Fwd::Bypass => "bypass",
            Fwd::Method => "method",
        }
    }
}

/// One cache's entry in `Cache-Status` (RFC 9211 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStatus {
    /// Served from the cache without going forward (fresh, or stale while a
    /// refresh runs).
    pub hit: bool,
    /// Why the request went forward (or, with `hit`, `stale`).
    pub fwd: Option<Fwd>,
    /// The status the next hop answered (e.g. 304 on revalidation).
    pub fwd_status: Option<u16>,
    /// The response was stored.
    pub stored: bool,
    /// The request waited for another request's fill.
    pub collapsed: bool,
    /// Freshness left in seconds (negative: past expiry).
    pub ttl: Option<i64>,
    /// Extra detail (`stale-if-error`).
    pub detail: Option<&'static str>,
}

impl CacheStatus {
    /// The list member for a cache named `name`, e.g.
    /// `"Ledge Edge"; hit; ttl=42`.
    pub fn format(&self, name: &str) -> String {
        let mut s = String::with_capacity(name.len() + 48);
        s.push('"');
        // Names are plain words in practice: copied whole unless they need
        // escaping.
        if name.bytes().any(|b| b == b'"' || b == b'\\') {
            for c in name.chars() {
                if c == '"' || c == '\\' {
                    s.push('\\');
                }
                s.push(c);
            }
        } else {
            s.push_str(name);
        }
        s.push('"');
        if self.hit {
            s.push_str("; hit");
        }
        if let Some(f) = self.fwd {
            s.push_str("; fwd=");
            s.push_str(f.as_str());
        }
        if let Some(st) = self.fwd_status {
            s.push_str("; fwd-status=");
            push_decimal(&mut s, u64::from(st));
        }
        if self.stored {
            s.push_str("; stored");
        }
        if self.collapsed {
            s.push_str("; collapsed");
        }
        if let Some(t) = self.ttl {
            s.push_str("; ttl=");
            if t < 0 {
                s.push('-');
            }
            push_decimal(&mut s, t.unsigned_abs());
        }
        if let Some(d) = self.detail {
            let _ = write!(s, "; detail={d}");
        }
        s
    }
}

/// Sets `Age` (when given) and appends this cache's `Cache-Status` member
/// after any from caches closer to the origin (RFC 9211 §2).
pub fn cache_status_headers(
    headers: &mut HeaderMap,
    name: &str,
    status: &CacheStatus,
    age: Option<u64>,
) {
    if let Some(age) = age {
        headers.insert(header::AGE, HeaderValue::from(age));
    }
    if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(status.format(name))) {
        headers.append(CACHE_STATUS, v);
    }
}

/// Appends `n` in decimal (on every response: cheaper than `write!`).
fn push_decimal(s: &mut String, n: u64) {
    s.push_str(ledge_core::num::decimal(n, &mut [0; 20]));
}
