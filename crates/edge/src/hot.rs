//! Hot answers: static files kept, head serialized, for the HTTP/1.1 fast
//! path and for h2.
//!
//! Most of an edge's traffic is the same few files (and redirects) asked for
//! again and again in the same way. When the pipeline answers a `GET` with
//! a static file, the 404 page, or a rule's redirect or rewrite, and nothing
//! but the host, the request target and `Accept-Encoding` could have
//! changed that answer (no rule with conditions or signing; no edge
//! functions; no trusted proxy; see `Edge::handle_hot`), the answer is
//! kept: for the HTTP/1.1 fast path its serialized head and its body (a
//! file for `sendfile` on plain TCP, else bytes), for h2 its header map and
//! its bytes. The next
//! request with the same three values, and no header outside [`HARMLESS`],
//! gets them back with a fresh request id and `Date`: one hash lookup
//! instead of routing, rules, path resolution and the header map. Over
//! TLS, and for h2, a key also holds the SNI name (which decides the
//! misdirected-request check) and the scheme (which decides HSTS).
//!
//! What is kept belongs to one version of the routing table: publishing,
//! rolling back, or changing a domain or a setting moves the router's
//! version, and the next lookup starts empty. Deploys and blobs never change
//! under an id, so nothing else can make a kept answer stale.
//!
//! Each thread keeps its own answers (no locks), at most [`MAX_ENTRIES`] and
//! [`MAX_BYTES`] of heads, keys and in-memory bodies (bodies are the blob
//! cache's own buffers, shared). An answer is kept when its key comes a
//! second time; a full memo drops an eighth of its answers.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, DATE, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderValue, Response};

use crate::body::Body;
use crate::h1::{push_field, push_status_line};
use crate::pipeline::{ConnInfo, Edge, HotInfo, X_LEDGE_ID};

/// Most answers a thread keeps.
pub const MAX_ENTRIES: usize = 16 * 1024;

/// Most bytes of keys, heads and in-memory bodies a thread keeps (bodies
/// sent with `sendfile` count only their handle).
pub const MAX_BYTES: usize = 16 * 1024 * 1024;

/// Request headers that cannot change a kept answer: the pipeline reads none
/// of them for a static file, and the answer is kept only when no rule reads
/// `Cookie` or `Accept-Language`. `Host` and `Accept-Encoding` are part of
/// the key. A request with any other header takes the whole pipeline.
// The list as documented; `harmless` is its compiled form, and a test keeps
// the two the same.
#[cfg_attr(not(test), allow(dead_code))]
pub const HARMLESS: [&str; 20] = [
    "host",
    "accept-encoding",
    "user-agent",
    "accept",
    "accept-language",
    "connection",
    "referer",
    "cookie",
    "cache-control",
    "pragma",
    "dnt",
    "upgrade-insecure-requests",
    "sec-fetch-site",
    "sec-fetch-mode",
    "sec-fetch-user",
    "sec-fetch-dest",
    "sec-ch-ua",
    "sec-ch-ua-mobile",
    "sec-ch-ua-platform",
    "priority",
];

/// Where the parts of a request that a kept answer depends on lie in the
/// request head.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Shape {
    pub host: (usize, usize),
    pub accept_encoding: Option<(usize, usize)>,
    pub user_agent: Option<(usize, usize)>,
    pub referer: Option<(usize, usize)>,
}

/// Checks that a parsed `GET` head is one a kept answer may serve: only
/// [`HARMLESS`] headers, one `Host`, at most one `Accept-Encoding`, and a
/// target without a fragment. `spans` are the name and value spans of the
/// headers in `head`, as `httparse` found them: it has refused any value
/// byte that `http::HeaderValue` would (controls but tab, and DEL), so the
/// values are not checked again (that cost 4.1k instructions for a
/// browser's request).
pub(crate) fn shape(head: &[u8], target: (usize, usize), spans: &[[usize; 4]]) -> Option<Shape> {
    if head.get(target.0..target.1)?.contains(&b'#') {
        return None;
    }
    let mut shape = Shape::default();
    let mut host = None;
    for &[ns, ne, vs, ve] in spans {
        let name = head.get(ns..ne)?;
        debug_assert!(head
            .get(vs..ve)
            .is_some_and(|v| v.iter().all(|&b| (b >= 0x20 && b != 0x7f) || b == b'\t')));
        let slot = match harmless(name)? {
            0 => &mut host,
            1 => &mut shape.accept_encoding,
            2 => &mut shape.user_agent,
            6 => &mut shape.referer,
            _ => continue,
        };
        if slot.is_some() {
            return None;
        }
        *slot = Some((vs, ve));
    }
    shape.host = host?;
    Some(shape)
}

/// The index of `name` in [`HARMLESS`], in any case. One match on the
/// lowercased name: a scan of the list cost more than the rest of the
/// lookup.
fn harmless(name: &[u8]) -> Option<usize> {
    let mut buf = [0u8; 32];
    let lower = buf.get_mut(..name.len())?;
    for (l, b) in lower.iter_mut().zip(name) {
        *l = b.to_ascii_lowercase();
    }
    Some(match &*lower {
        b"host" => 0,
        b"accept-encoding" => 1,
        b"user-agent" => 2,
        b"accept" => 3,
        b"accept-language" => 4,
        b"connection" => 5,
        b"referer" => 6,
        b"cookie" => 7,
        b"cache-control" => 8,
        b"pragma" => 9,
        b"dnt" => 10,
        b"upgrade-insecure-requests" => 11,
        b"sec-fetch-site" => 12,
        b"sec-fetch-mode" => 13,
        b"sec-fetch-user" => 14,
        b"sec-fetch-dest" => 15,
        b"sec-ch-ua" => 16,
        b"sec-ch-ua-mobile" => 17,
        b"sec-ch-ua-platform" => 18,
        b"priority" => 19,
        _ => return None,
    })
}

/// The key of a request of this shape, written into `key`: host, target and
/// `Accept-Encoding` (absent and empty differ), separated by bytes that
/// none of them can hold. Over TLS, the key starts with a byte no host
/// starts with and the SNI name (which decides the misdirected-request
/// check; the scheme decides HSTS).
pub(crate) fn key(
    head: &[u8],
    target: (usize, usize),
    shape: &Shape,
    conn: &ConnInfo,
    key: &mut Vec<u8>,
) {
    key.clear();
    if conn.tls {
        key.push(2);
        key.extend_from_slice(conn.sni.as_deref().unwrap_or("").as_bytes());
        key.push(0);
    }
    key.extend_from_slice(head.get(shape.host.0..shape.host.1).unwrap_or_default());
    key.push(0);
    key.extend_from_slice(head.get(target.0..target.1).unwrap_or_default());
    if let Some((s, e)) = shape.accept_encoding {
        key.push(0);
        key.extend_from_slice(head.get(s..e).unwrap_or_default());
    }
}

/// A kept answer (its status is `answer.status_code`).
pub(crate) struct Entry {
    pub head: Head,
    pub body: HotBody,
    /// What its access records name as the answer: one block that all of
    /// them share.
    pub answer: Arc<ledge_telemetry::Answer>,
    /// Where the visitor's country comes from, for its access records.
    pub geo: ledge_store::settings::GeoSource,
}

/// A kept answer's head, in the form its protocol sends. Neither holds
/// `x-ledge-id`, `Date` or `Connection`.
pub(crate) enum Head {
    /// HTTP/1.1: status line and headers, each line with its CRLF, without
    /// the blank line.
    Http1(Box<[u8]>),
    /// h2: the header map `ledge-h2` encodes (it adds `Date`).
    Http2(HeaderMap),
}

impl Head {
    fn held(&self) -> usize {
        match self {
            Head::Http1(h) => h.len(),
            // Names and values, and about what the map spends per field.
            Head::Http2(m) => m.iter().map(|(n, v)| n.as_str().len() + v.len() + 32).sum(),
        }
    }
}

/// A kept answer's body.
pub(crate) enum HotBody {
    /// Bytes in memory (written with the head).
    Bytes(Bytes),
    /// Bytes of a file, sent with `sendfile`.
    File {
        file: Arc<std::fs::File>,
        offset: u64,
        len: usize,
    },
}

impl HotBody {
    pub fn len(&self) -> usize {
        match self {
            HotBody::Bytes(b) => b.len(),
            HotBody::File { len, .. } => *len,
        }
    }

    fn held(&self) -> usize {
        match self {
            HotBody::Bytes(b) => b.len(),
            HotBody::File { .. } => 0,
        }
    }
}

/// How a kept answer will be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
    /// By the HTTP/1.1 fast path; files with `sendfile` when it can (plain
    /// TCP), else from memory.
    Http1 { sendfile: bool },
    /// By `ledge-h2`, from memory.
    Http2,
}

/// The answer to keep for `resp`, if it can be kept: a whole body of known
/// length (a buffer, or a file where `form` can send one), no transfer
/// coding, a `Content-Length` (when present) that matches it. `form` picks
/// the form of its head.
pub(crate) fn entry(resp: &Response<Body>, info: HotInfo, form: Form) -> Option<Entry> {
    let http2 = form == Form::Http2;
    let body = match resp.body() {
        Body::Logged(l) => l.inner(),
        b => b,
    };
    let body = match body {
        Body::Empty => HotBody::Bytes(Bytes::new()),
        Body::Full(Some(b)) => HotBody::Bytes(b.clone()),
        // `ledge-h2` and TLS send buffers, not files.
        Body::File(f) if form != (Form::Http1 { sendfile: true }) => {
            HotBody::Bytes(f.bytes.clone()?)
        }
        Body::File(f) => HotBody::File {
            file: f.file.clone(),
            offset: f.offset,
            len: f.bytes.as_ref()?.len(),
        },
        Body::Full(None) | Body::Stream(_) | Body::Logged(_) => return None,
    };
    let status = resp.status();
    let mut h1 = (!http2).then(|| {
        let mut head = Vec::with_capacity(256);
        push_status_line(&mut head, status);
        head
    });
    let mut h2 = http2.then(HeaderMap::new);
    let mut content_type = None;
    let mut has_length = false;
    for (name, value) in resp.headers() {
        if name == CONNECTION || name == DATE || name == X_LEDGE_ID {
            continue;
        }
        if name == TRANSFER_ENCODING {
            return None;
        }
        if name == CONTENT_LENGTH {
            let declared: u64 = value.to_str().ok()?.trim().parse().ok()?;
            if has_length || declared != body.len() as u64 {
                return None;
            }
            has_length = true;
        }
        if name == CONTENT_TYPE && content_type.is_none() {
            content_type = Some(Arc::from(std::str::from_utf8(value.as_bytes()).ok()?));
        }
        if let Some(head) = &mut h1 {
            push_field(head, name.as_str().as_bytes(), value.as_bytes());
        }
        if let Some(map) = &mut h2 {
            map.append(name.clone(), value.clone());
        }
    }
    if !has_length {
        let len = body.len() as u64;
        if let Some(head) = &mut h1 {
            push_field(
                head,
                b"content-length",
                ledge_core::num::decimal_bytes(len, &mut [0; 20]),
            );
        }
        // ledge-h2 adds it from the body's exact size, as it does
        // for the pipeline's answer.
    }
    let head = match (h1, h2) {
        (Some(head), _) => Head::Http1(head.into_boxed_slice()),
        (None, Some(map)) => Head::Http2(map),
        (None, None) => return None,
    };
    let answer = Arc::new(ledge_telemetry::Answer {
        site: info.site,
        deploy: Some(info.deploy),
        host: info.host,
        method: "GET".into(),
        path: info.path,
        query: info.query,
        status_code: status.as_u16(),
        content_type,
        cache_status: ledge_telemetry::CacheStatus::None,
        answered_by: info.phase,
        rule: info.rule,
        function_name: None,
        firewall_rule: None,
        block_reason: None,
    });
    Some(Entry {
        head,
        body,
        answer,
        geo: info.geo,
    })
}

/// What an h2 request a kept answer may serve carries for its access
/// record.
#[derive(Debug, Default)]
pub(crate) struct H2Shape {
    pub user_agent: Option<HeaderValue>,
    pub referer: Option<HeaderValue>,
}

/// Checks that an h2 request is one a kept answer may serve (a `GET` with
/// no body, an `:authority`, no `Host` header beside it, and otherwise only
/// [`HARMLESS`] headers, at most one of `Accept-Encoding`, `User-Agent` and
/// `Referer`), and writes its key into `key`: a byte no HTTP/1.1 key starts
/// with, whether the connection is TLS and its SNI name (which decide HSTS
/// and the misdirected-request check), then the authority, the target and
/// `Accept-Encoding`.
pub(crate) fn h2_key(
    parts: &http::request::Parts,
    conn: &ConnInfo,
    key: &mut Vec<u8>,
) -> Option<H2Shape> {
    if parts.method != http::Method::GET || parts.version != http::Version::HTTP_2 {
        return None;
    }
    let authority = parts.uri.authority()?.as_str();
    let target = parts.uri.path_and_query()?.as_str();
    let mut shape = H2Shape::default();
    let mut accept_encoding = None;
    for (name, value) in &parts.headers {
        let slot = match harmless(name.as_str().as_bytes())? {
            0 => return None,
            1 => &mut accept_encoding,
            2 => &mut shape.user_agent,
            6 => &mut shape.referer,
            _ => continue,
        };
        if slot.is_some() {
            return None;
        }
        *slot = Some(value.clone());
    }
    key.clear();
    key.push(1);
    key.push(u8::from(conn.tls));
    key.extend_from_slice(conn.sni.as_deref().unwrap_or("").as_bytes());
    key.push(0);
    key.extend_from_slice(authority.as_bytes());
    key.push(0);
    key.extend_from_slice(target.as_bytes());
    if let Some(v) = accept_encoding {
        key.push(0);
        key.extend_from_slice(v.as_bytes());
    }
    Some(shape)
}

/// The answer to an h2 request from a kept answer (kept in h2 form, with
/// its body in memory), with a new request id; `ledge-h2` adds `Date`. With
/// telemetry on, the body carries the access record the log phase would
/// have written.
pub(crate) fn h2_response(
    edge: &Edge,
    conn: &ConnInfo,
    entry: &Entry,
    shape: H2Shape,
) -> Option<Response<Body>> {
    let (Head::Http2(headers), HotBody::Bytes(bytes)) = (&entry.head, &entry.body) else {
        return None;
    };
    let start = edge.telemetry.as_ref().map(|_| std::time::Instant::now());
    let id = crate::pipeline::request_id();
    let body = if bytes.is_empty() {
        Body::Empty
    } else {
        Body::Full(Some(bytes.clone()))
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = http::StatusCode::from_u16(entry.answer.status_code).ok()?;
    let mut headers = headers.clone();
    headers.insert(X_LEDGE_ID, id.clone());
    *resp.headers_mut() = headers;
    if let (Some(t), Some(start)) = (&edge.telemetry, start) {
        t.metrics().hot_answer();
        let text = |v: Option<HeaderValue>| {
            v.and_then(|v| std::str::from_utf8(v.as_bytes()).ok().map(Arc::<str>::from))
        };
        let record = record(
            edge,
            conn,
            entry,
            id.as_bytes(),
            (start, std::time::Instant::now()),
            (text(shape.user_agent), text(shape.referer)),
            "HTTP/2",
        );
        let body = std::mem::replace(resp.body_mut(), Body::Empty);
        *resp.body_mut() = Body::Logged(Box::new(crate::log::Logged::new(
            body,
            record,
            start,
            t.clone(),
            Some(bytes.len() as u64),
        )));
    }
    Some(resp)
}

/// The access record of a kept answer sent at `now` after `start`: the
/// fields the log phase writes for a request answered in full. Its size
/// and duration are left for the sender (or the body's end) to fill in.
pub(crate) fn record(
    edge: &Edge,
    conn: &ConnInfo,
    entry: &Entry,
    id: &[u8],
    (start, now): (std::time::Instant, std::time::Instant),
    (user_agent, referrer): (Option<Arc<str>>, Option<Arc<str>>),
    http_version: &'static str,
) -> Box<ledge_telemetry::AccessRecord> {
    let client_ip = conn.peer.ip();
    Box::new(ledge_telemetry::AccessRecord {
        timestamp: crate::log::wall_clock(start, now),
        // Hex digits: always UTF-8.
        request_id: std::str::from_utf8(id).unwrap_or("").into(),
        answer: entry.answer.clone(),
        request_size: 0,
        response_size: 0,
        duration: std::time::Duration::ZERO,
        ttfb: if now == start {
            // The HTTP/1.1 fast path's case: no subtraction for a zero.
            std::time::Duration::ZERO
        } else {
            now.saturating_duration_since(start)
        },
        client_ip: Some(client_ip),
        // No headers: a kept answer's client is never a trusted proxy.
        country: edge.geo.country(entry.geo, client_ip, false, no_headers()),
        user_agent,
        referrer,
        tls_version: conn.tls_version.map(std::borrow::Cow::Borrowed),
        http_version: http_version.into(),
        error_class: None,
    })
}

/// An empty header map that lives for the whole run (building and dropping
/// one per record cost more than the lookup it stands in for).
fn no_headers() -> &'static http::HeaderMap {
    static EMPTY: std::sync::OnceLock<http::HeaderMap> = std::sync::OnceLock::new();
    EMPTY.get_or_init(http::HeaderMap::new)
}

/// One thread's kept answers.
struct Memo {
    /// The router version they were answered under.
    version: u64,
    map: HashMap<Box<[u8]>, Arc<Entry>, foldhash::fast::RandomState>,
    bytes: usize,
    /// Hashes of keys asked for once, by slot: an answer is kept only when
    /// its key comes a second time, so a long tail of one-off requests
    /// neither pays for building entries nor pushes the popular ones out.
    seen: Box<[u64]>,
}

impl Default for Memo {
    fn default() -> Self {
        Self {
            version: 0,
            map: HashMap::default(),
            bytes: 0,
            seen: vec![0; SEEN_SLOTS].into_boxed_slice(),
        }
    }
}

/// Slots of the memo's first-sighting filter (sets of four).
const SEEN_SLOTS: usize = 8192;

thread_local! {
    static MEMO: RefCell<Memo> = RefCell::new(Memo::default());
}

/// What the memo has for a key.
pub(crate) enum Lookup {
    /// A kept answer.
    Hit(Arc<Entry>),
    /// Nothing yet, but the key came before: keep its answer.
    Keep,
    /// A key not seen lately: answer it in full and keep nothing.
    Pass,
}

/// The answer kept for `key` under router `version`, or whether to keep the
/// one about to be made. Answers kept under an older version are dropped
/// first.
pub(crate) fn lookup(version: u64, key: &[u8]) -> Lookup {
    MEMO.with(|m| {
        let mut m = m.borrow_mut();
        if m.version != version {
            m.map.clear();
            m.bytes = 0;
            m.version = version;
        }
        if let Some(e) = m.map.get(key) {
            return Lookup::Hit(e.clone());
        }
        use std::hash::BuildHasher;
        // Never 0, the empty slot.
        let hash = m.map.hasher().hash_one(key) | 1;
        // Four ways per set: keys that share a set rarely push each other
        // out. Truncation is the point: the low bits pick the set, the
        // high ones the way to replace.
        #[allow(clippy::cast_possible_truncation)]
        let (set, way) = (
            (hash as usize) % (SEEN_SLOTS / 4) * 4,
            (hash >> 62) as usize,
        );
        let ways = &mut m.seen[set..set + 4];
        if ways.contains(&hash) {
            return Lookup::Keep;
        }
        let free = ways.iter().position(|&h| h == 0).unwrap_or(way);
        ways[free] = hash;
        Lookup::Pass
    })
}

fn size_of(key: &[u8], entry: &Entry) -> usize {
    key.len() + entry.head.held() + entry.body.held()
}

/// Keeps `entry` for `key`, if it was answered under the version the
/// thread keeps answers for (a newer table may have come meanwhile). A full
/// memo first drops about an eighth of its answers, picked by their place
/// in the table (which follows the keys' hashes, not their age).
pub(crate) fn keep(version: u64, key: &[u8], entry: Entry) {
    let size = size_of(key, &entry);
    if size > MAX_BYTES / 16 {
        return;
    }
    MEMO.with(|m| {
        let mut m = m.borrow_mut();
        if m.version != version {
            return;
        }
        let mut round = 0;
        while m.map.len() >= MAX_ENTRIES || m.bytes + size > MAX_BYTES {
            let (mut i, mut freed) = (0usize, 0usize);
            m.map.retain(|k, e| {
                i += 1;
                let drop = (i + round) % 8 == 0;
                if drop {
                    freed += size_of(k, e);
                }
                !drop
            });
            m.bytes -= freed;
            round += 1;
        }
        if let Some(old) = m.map.insert(key.into(), Arc::new(entry)) {
            m.bytes -= size_of(key, &old);
        }
        m.bytes += size;
    });
}

/// How many answers this thread keeps (for tests).
#[cfg(test)]
pub(crate) fn kept() -> usize {
    MEMO.with(|m| m.borrow().map.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans_of(head: &[u8]) -> ((usize, usize), Vec<[usize; 4]>) {
        let mut slots = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut slots);
        assert!(req.parse(head).unwrap().is_complete());
        let base = head.as_ptr() as usize;
        let off = |s: &[u8]| s.as_ptr() as usize - base;
        let path = req.path.unwrap().as_bytes();
        let target = (off(path), off(path) + path.len());
        let spans = req
            .headers
            .iter()
            .map(|h| {
                let (n, v) = (h.name.as_bytes(), h.value);
                [off(n), off(n) + n.len(), off(v), off(v) + v.len()]
            })
            .collect();
        (target, spans)
    }

    fn shape_of(head: &str) -> Option<(Shape, Vec<u8>)> {
        shape_over(head, &conn(false, None))
    }

    fn shape_over(head: &str, c: &ConnInfo) -> Option<(Shape, Vec<u8>)> {
        let (target, spans) = spans_of(head.as_bytes());
        let s = shape(head.as_bytes(), target, &spans)?;
        let mut k = Vec::new();
        key(head.as_bytes(), target, &s, c, &mut k);
        Some((s, k))
    }

    #[test]
    fn only_harmless_headers_take_kept_answers() {
        let (_, k) = shape_of(
            "GET /a.css?v=1 HTTP/1.1\r\nHost: Example.COM\r\nUser-Agent: x\r\nAccept: */*\r\n\r\n",
        )
        .unwrap();
        assert_eq!(k, b"Example.COM\0/a.css?v=1");
        for refused in [
            "GET /a HTTP/1.1\r\nHost: a\r\nRange: bytes=0-1\r\n\r\n",
            "GET /a HTTP/1.1\r\nHost: a\r\nIf-None-Match: \"x\"\r\n\r\n",
            "GET /a HTTP/1.1\r\nHost: a\r\nIf-Modified-Since: x\r\n\r\n",
            "GET /a HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n",
            "GET /a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET /a HTTP/1.1\r\nHost: a\r\nAccept-Encoding: br\r\nAccept-Encoding: gzip\r\n\r\n",
            "GET /a HTTP/1.1\r\nUser-Agent: x\r\n\r\n",
            "GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n",
        ] {
            assert!(shape_of(refused).is_none(), "{refused:?}");
        }
    }

    #[test]
    fn harmless_names_match_the_list_in_any_case() {
        for (i, name) in HARMLESS.iter().enumerate() {
            assert_eq!(harmless(name.as_bytes()), Some(i), "{name}");
            assert_eq!(harmless(name.to_ascii_uppercase().as_bytes()), Some(i));
        }
        for other in [
            "range",
            "if-none-match",
            "x-forwarded-for",
            "hos",
            "hostx",
            "",
        ] {
            assert_eq!(harmless(other.as_bytes()), None, "{other}");
        }
        assert_eq!(harmless(&[b'a'; 40]), None);
    }

    #[test]
    fn keys_tell_encodings_apart() {
        let k = |ae: &str| {
            shape_of(&format!("GET /a HTTP/1.1\r\nHost: h\r\n{ae}\r\n"))
                .unwrap()
                .1
        };
        let none = k("");
        let empty = k("Accept-Encoding: \r\n");
        let br = k("Accept-Encoding: br\r\n");
        assert_ne!(none, empty);
        assert_ne!(empty, br);
        assert_eq!(br, k("accept-encoding: br\r\n"));
    }

    #[test]
    fn keys_tell_tls_and_sni_names_apart() {
        let head = "GET /a HTTP/1.1\r\nHost: web.example\r\n\r\n";
        let plain = shape_over(head, &conn(false, None)).unwrap().1;
        let tls = shape_over(head, &conn(true, Some("web.example")))
            .unwrap()
            .1;
        let other = shape_over(head, &conn(true, Some("other.example")))
            .unwrap()
            .1;
        let no_sni = shape_over(head, &conn(true, None)).unwrap().1;
        assert_eq!(plain, b"web.example\0/a");
        assert_eq!(tls, b"\x02web.example\0web.example\0/a");
        for (a, b) in [
            (&plain, &tls),
            (&tls, &other),
            (&tls, &no_sni),
            (&plain, &no_sni),
        ] {
            assert_ne!(a, b);
        }
        // Nor are they ever h2 keys.
        let h2 = h2_key_of(&h2_parts("/a", &[]), &conn(true, Some("web.example"))).unwrap();
        assert_ne!(h2[0], tls[0]);
    }

    fn info() -> HotInfo {
        HotInfo {
            site: "s".into(),
            deploy: "d".into(),
            host: "h".into(),
            path: "/".into(),
            query: None,
            geo: Default::default(),
            phase: ledge_telemetry::Phase::Static,
            rule: None,
        }
    }

    fn hit(l: Lookup) -> bool {
        matches!(l, Lookup::Hit(_))
    }

    #[test]
    fn kept_answers_belong_to_one_router_version() {
        let resp = Response::builder()
            .header(CONTENT_TYPE, "text/plain")
            .header(X_LEDGE_ID, "0123")
            .body(Body::full("hello"))
            .unwrap();
        let e = entry(&resp, info(), Form::Http1 { sendfile: true }).unwrap();
        let Head::Http1(head) = &e.head else {
            panic!("not an HTTP/1.1 head")
        };
        assert_eq!(
            &**head,
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\n"
        );
        // The h2 form: the same fields but the request id, as a map.
        let e2 = entry(&resp, info(), Form::Http2).unwrap();
        let Head::Http2(map) = &e2.head else {
            panic!("not an h2 head")
        };
        assert_eq!(map.len(), 1);
        assert_eq!(map[CONTENT_TYPE], "text/plain");
        assert_eq!(e.answer.content_type.as_deref(), Some("text/plain"));
        // Kept on the second sighting of a key.
        assert!(matches!(lookup(7, b"k"), Lookup::Pass));
        assert!(matches!(lookup(7, b"k"), Lookup::Keep));
        keep(7, b"k", e);
        assert!(hit(lookup(7, b"k")));
        // Kept under 7, offered under 6 (a request that began before the
        // table moved): not kept.
        keep(
            6,
            b"k2",
            entry(&resp, info(), Form::Http1 { sendfile: true }).unwrap(),
        );
        assert!(!hit(lookup(7, b"k2")));
        // A new table empties the memo; the key is still known, so its
        // next answer is kept at once.
        assert!(matches!(lookup(8, b"k"), Lookup::Keep));
        assert_eq!(kept(), 0);
    }

    #[test]
    fn answers_that_cannot_be_repeated_are_not_kept() {
        use http_body_util::BodyExt;
        let streamed = Response::new(Body::Stream(
            http_body_util::Empty::<Bytes>::new()
                .map_err(|never| match never {})
                .boxed_unsync(),
        ));
        assert!(entry(&streamed, info(), Form::Http1 { sendfile: true }).is_none());
        let wrong_length = Response::builder()
            .header(CONTENT_LENGTH, "9")
            .body(Body::full("hello"))
            .unwrap();
        assert!(entry(&wrong_length, info(), Form::Http1 { sendfile: true }).is_none());
        let chunked = Response::builder()
            .header(TRANSFER_ENCODING, "chunked")
            .body(Body::full("hello"))
            .unwrap();
        assert!(entry(&chunked, info(), Form::Http1 { sendfile: true }).is_none());
    }

    #[test]
    fn the_memo_stays_bounded() {
        let _ = lookup(1, b"");
        for i in 0..(MAX_ENTRIES + 10) {
            let resp = Response::new(Body::full("x"));
            keep(
                1,
                format!("k{i}").as_bytes(),
                entry(&resp, info(), Form::Http1 { sendfile: true }).unwrap(),
            );
            assert!(kept() <= MAX_ENTRIES);
        }
        // An eighth went to make room; the newest is there.
        assert!(kept() < MAX_ENTRIES - MAX_ENTRIES / 10, "{}", kept());
        assert!(hit(lookup(1, format!("k{}", MAX_ENTRIES + 9).as_bytes())));
        // Bytes too: one large body pushes out what it must.
        let big = Bytes::from(vec![b'x'; MAX_BYTES / 20]);
        for i in 0..40 {
            let resp = Response::new(Body::full(big.clone()));
            keep(
                1,
                format!("big{i}").as_bytes(),
                entry(&resp, info(), Form::Http1 { sendfile: true }).unwrap(),
            );
            MEMO.with(|m| {
                let m = m.borrow();
                assert!(m.bytes <= MAX_BYTES);
                let sum: usize = m.map.iter().map(|(k, e)| size_of(k, e)).sum();
                assert_eq!(sum, m.bytes);
            });
        }
    }

    fn h2_parts(target: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::builder()
            .method("GET")
            .version(http::Version::HTTP_2)
            .uri(format!("https://web.example{target}"));
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn conn(tls: bool, sni: Option<&str>) -> ConnInfo {
        ConnInfo {
            peer: "192.0.2.1:1234".parse().unwrap(),
            tls,
            sni: sni.map(Arc::from),
            tls_version: None,
        }
    }

    fn h2_key_of(parts: &http::request::Parts, c: &ConnInfo) -> Option<Vec<u8>> {
        let mut key = Vec::new();
        h2_key(parts, c, &mut key).map(|_| key)
    }

    #[test]
    fn h2_keys_hold_what_can_change_the_answer() {
        let c = conn(true, Some("web.example"));
        let plain = h2_key_of(&h2_parts("/a.css", &[]), &c).unwrap();
        assert_eq!(plain[0], 1, "no HTTP/1.1 key starts with 1");
        // Harmless headers do not change the key; user agent and referrer
        // are taken for the record.
        let mut key = Vec::new();
        let shape = h2_key(
            &h2_parts(
                "/a.css",
                &[
                    ("user-agent", "ua/1"),
                    ("referer", "http://r/"),
                    ("accept", "*/*"),
                ],
            ),
            &c,
            &mut key,
        )
        .unwrap();
        assert_eq!(key, plain);
        assert_eq!(shape.user_agent.unwrap(), "ua/1");
        assert_eq!(shape.referer.unwrap(), "http://r/");
        // The target, the encoding, TLS and the SNI name do.
        let others = [
            h2_key_of(&h2_parts("/a.css?v=1", &[]), &c),
            h2_key_of(&h2_parts("/a.css", &[("accept-encoding", "br")]), &c),
            h2_key_of(&h2_parts("/a.css", &[]), &conn(false, None)),
            h2_key_of(&h2_parts("/a.css", &[]), &conn(true, Some("other.example"))),
            h2_key_of(&h2_parts("/a.css", &[]), &conn(true, None)),
        ];
        for (i, k) in others.iter().enumerate() {
            let k = k.as_ref().unwrap();
            assert_ne!(k, &plain, "case {i}");
            for (j, l) in others.iter().enumerate().skip(i + 1) {
                assert_ne!(Some(k), l.as_ref(), "cases {i} and {j}");
            }
        }
    }

    #[test]
    fn h2_requests_a_kept_answer_cannot_serve() {
        let c = conn(true, Some("web.example"));
        let refused = [
            h2_parts("/", &[("host", "web.example")]),
            h2_parts("/", &[("if-none-match", "\"x\"")]),
            h2_parts("/", &[("range", "bytes=0-1")]),
            h2_parts("/", &[("x-forwarded-for", "203.0.113.1")]),
            h2_parts("/", &[("user-agent", "a"), ("user-agent", "b")]),
            h2_parts(
                "/",
                &[("accept-encoding", "br"), ("accept-encoding", "gzip")],
            ),
        ];
        for (i, p) in refused.iter().enumerate() {
            assert!(h2_key_of(p, &c).is_none(), "case {i}");
        }
        let mut post = h2_parts("/", &[]);
        post.method = http::Method::POST;
        assert!(h2_key_of(&post, &c).is_none());
        let mut h1 = h2_parts("/", &[]);
        h1.version = http::Version::HTTP_11;
        assert!(h2_key_of(&h1, &c).is_none());
    }
}
