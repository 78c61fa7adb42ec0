//! Serving one file, to the byte: encoding negotiation, conditional requests
//! (RFC 9110 §13), byte ranges (RFC 9110 §14), `HEAD`.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body_util::BodyExt;
use ledge_store::{BlobError, BlobStore, Encoding};

use crate::body::{Body, FileBody};
use crate::deploys::{BlobCache, LoadedDeploy, ServedFile};

/// Most ranges honoured in one request; more and the whole file is sent.
pub const MAX_RANGES: usize = 16;
/// Bodies from this size on may go out with `sendfile` (smaller ones are
/// cheaper copied into the same write as the head).
const SENDFILE_MIN: usize = 64 * 1024;
/// Chunk size when streaming a file too large for the memory cache.
const STREAM_CHUNK: usize = 256 * 1024;

/// The default `Cache-Control` of static files (spec §5.1).
pub const STATIC_CACHE_CONTROL: HeaderValue =
    HeaderValue::from_static("public, max-age=0, must-revalidate");

/// Builds the response for `file`. `status` is 200, or 404 when serving the
/// custom `404.html` (which gets no conditional or range handling).
pub async fn respond(
    method: &Method,
    req: &HeaderMap,
    deploy: &LoadedDeploy,
    file: &Arc<ServedFile>,
    status: StatusCode,
    cache: &BlobCache,
) -> Result<Response<Body>, BlobError> {
    let plain = status == StatusCode::OK;
    let asks = Asks::of(req);
    let range_header = asks.range.filter(|_| plain && method == Method::GET);
    // A range applies to the identity bytes; compression is for whole bodies.
    let (enc, size, etag) = match range_header {
        Some(_) => (Encoding::Identity, file.size, &file.etag),
        None => negotiate(&asks.accept_encoding, file),
    };

    let mut headers = file.template(enc).cloned().unwrap_or_default();
    if !plain {
        headers.remove(header::ACCEPT_RANGES);
    }

    if plain && not_modified(&asks, etag, deploy.last_modified_secs) {
        headers.remove(header::CONTENT_TYPE);
        headers.remove(header::ACCEPT_RANGES);
        headers.remove(header::CONTENT_LENGTH);
        return Ok(build(StatusCode::NOT_MODIFIED, headers, Body::Empty));
    }

    if let Some(range) = range_header {
        if if_range_holds(req, file, deploy) {
            match parse_ranges(range.as_bytes(), size) {
                Ranges::Unsatisfiable => {
                    headers.remove(header::CONTENT_TYPE);
                    headers.insert(
                        header::CONTENT_RANGE,
                        header_value(&format!("bytes */{size}")),
                    );
                    headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
                    return Ok(build(
                        StatusCode::RANGE_NOT_SATISFIABLE,
                        headers,
                        Body::Empty,
                    ));
                }
                Ranges::One(start, end) => {
                    headers.insert(
                        header::CONTENT_RANGE,
                        header_value(&format!("bytes {start}-{end}/{size}")),
                    );
                    let len = end - start + 1;
                    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
                    let body = read_span(cache, file, enc, start, len).await?;
                    return Ok(build(StatusCode::PARTIAL_CONTENT, headers, body));
                }
                Ranges::Many(spans) => {
                    let body = multipart(cache, file, enc, &spans, &mut headers).await?;
                    return Ok(build(StatusCode::PARTIAL_CONTENT, headers, body));
                }
                Ranges::Ignore => {}
            }
        }
    }

    // The template already carries this encoding's Content-Length.
    let body = if method == Method::HEAD {
        Body::Empty
    } else {
        read_span(cache, file, enc, 0, size).await?
    };
    Ok(build(status, headers, body))
}

fn build(status: StatusCode, headers: HeaderMap, body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static(""))
}

/// The request headers that decide how a file is served, found in one pass
/// over the request's headers. A lookup per name hashes the name even when
/// the header is absent, as these four are from most requests.
#[derive(Default)]
struct Asks<'a> {
    /// The first `Range`.
    range: Option<&'a HeaderValue>,
    /// Every `Accept-Encoding` line, in order.
    accept_encoding: Vec<&'a [u8]>,
    /// The first `If-None-Match`.
    if_none_match: Option<&'a HeaderValue>,
    /// The first `If-Modified-Since`.
    if_modified_since: Option<&'a HeaderValue>,
}

impl<'a> Asks<'a> {
    fn of(req: &'a HeaderMap) -> Self {
        let mut asks = Asks::default();
        // A name's values come together, first value first: the first one
        // seen is what `HeaderMap::get` answers.
        for (name, value) in req {
            if *name == header::ACCEPT_ENCODING {
                asks.accept_encoding.push(value.as_bytes());
            } else if *name == header::RANGE {
                asks.range.get_or_insert(value);
            } else if *name == header::IF_NONE_MATCH {
                asks.if_none_match.get_or_insert(value);
            } else if *name == header::IF_MODIFIED_SINCE {
                asks.if_modified_since.get_or_insert(value);
            }
        }
        asks
    }
}

/// Picks brotli, then gzip, then identity, by what the client accepts.
fn negotiate<'f>(accept: &[&[u8]], file: &'f ServedFile) -> (Encoding, u64, &'f HeaderValue) {
    if !file.has_variants() {
        return (Encoding::Identity, file.size, &file.etag);
    }
    if let Some((n, tag)) = &file.br {
        if accepts(accept, b"br") {
            return (Encoding::Brotli, *n, tag);
        }
    }
    if let Some((n, tag)) = &file.gz {
        if accepts(accept, b"gzip") {
            return (Encoding::Gzip, *n, tag);
        }
    }
    (Encoding::Identity, file.size, &file.etag)
}

/// True when an `Accept-Encoding` list accepts `coding` with a q-value above 0
/// (an explicit entry wins over `*`).
fn accepts(values: &[&[u8]], coding: &[u8]) -> bool {
    let mut star = None;
    for value in values {
        for item in value.split(|&b| b == b',') {
            let mut parts = item.split(|&b| b == b';');
            let name = trim(parts.next().unwrap_or_default());
            let q = parts
                .filter_map(|p| {
                    let p = trim(p);
                    p.strip_prefix(b"q=").or_else(|| p.strip_prefix(b"Q="))
                })
                .next()
                .map(|q| {
                    std::str::from_utf8(q)
                        .ok()
                        .and_then(|s| s.parse::<f32>().ok())
                })
                .unwrap_or(Some(1.0));
            let ok = q.is_some_and(|q| q > 0.0);
            if name.eq_ignore_ascii_case(coding) {
                return ok;
            }
            if name == b"*" {
                star = Some(ok);
            }
        }
    }
    star.unwrap_or(false)
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end]
}

/// RFC 9110 §13.2.2: `If-None-Match` (weak comparison) decides when present,
/// otherwise `If-Modified-Since`.
fn not_modified(asks: &Asks<'_>, etag: &HeaderValue, last_modified: i64) -> bool {
    if let Some(inm) = asks.if_none_match {
        return etag_list_matches(inm.as_bytes(), etag.as_bytes(), true);
    }
    if let Some(ims) = asks.if_modified_since {
        if let Some(t) = ims
            .to_str()
            .ok()
            .and_then(|s| httpdate::parse_http_date(s).ok())
        {
            let secs = t
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            return last_modified <= secs;
        }
    }
    false
}

fn etag_list_matches(list: &[u8], etag: &[u8], weak: bool) -> bool {
    if trim(list) == b"*" {
        return true;
    }
    list.split(|&b| b == b',').any(|candidate| {
        let c = trim(candidate);
        let c = if weak {
            c.strip_prefix(b"W/").unwrap_or(c)
        } else {
            c
        };
        c == etag
    })
}

/// `If-Range`: the range applies only if the validator still matches (strong
/// comparison for an ETag, exact date otherwise).
fn if_range_holds(req: &HeaderMap, file: &ServedFile, deploy: &LoadedDeploy) -> bool {
    match req.get(header::IF_RANGE) {
        None => true,
        Some(v) if v.as_bytes().starts_with(b"\"") => v.as_bytes() == file.etag.as_bytes(),
        Some(v) => v == deploy.last_modified,
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Ranges {
    /// Malformed or too many: serve the whole file.
    Ignore,
    /// Well-formed but nothing overlaps the file: 416.
    Unsatisfiable,
    /// One span, inclusive.
    One(u64, u64),
    /// Several spans, inclusive.
    Many(Vec<(u64, u64)>),
}

fn parse_ranges(value: &[u8], size: u64) -> Ranges {
    let Ok(value) = std::str::from_utf8(value) else {
        return Ranges::Ignore;
    };
    let Some(set) = value.trim().strip_prefix("bytes=") else {
        return Ranges::Ignore;
    };
    let mut spans = Vec::new();
    for (n, part) in set.split(',').enumerate() {
        if n >= MAX_RANGES {
            return Ranges::Ignore;
        }
        let part = part.trim();
        let Some((a, b)) = part.split_once('-') else {
            return Ranges::Ignore;
        };
        let span = match (a.trim(), b.trim()) {
            ("", "") => return Ranges::Ignore,
            ("", suffix) => {
                let Ok(n) = suffix.parse::<u64>() else {
                    return Ranges::Ignore;
                };
                if n == 0 || size == 0 {
                    None
                } else {
                    Some((size.saturating_sub(n), size - 1))
                }
            }
            (start, end) => {
                let Ok(start) = start.parse::<u64>() else {
                    return Ranges::Ignore;
                };
                let end = if end.is_empty() {
                    u64::MAX
                } else {
                    match end.parse::<u64>() {
                        Ok(e) if e >= start => e,
                        _ => return Ranges::Ignore,
                    }
                };
                (start < size).then(|| (start, end.min(size - 1)))
            }
        };
        if let Some(s) = span {
            spans.push(s);
        }
    }
    match spans.len() {
        0 => Ranges::Unsatisfiable,
        1 => Ranges::One(spans[0].0, spans[0].1),
        _ => Ranges::Many(spans),
    }
}

async fn read_span(
    cache: &BlobCache,
    file: &ServedFile,
    enc: Encoding,
    start: u64,
    len: u64,
) -> Result<Body, BlobError> {
    if len == 0 {
        return Ok(Body::Empty);
    }
    let full = match enc {
        Encoding::Identity => file.size,
        Encoding::Brotli => file.br.as_ref().map_or(0, |v| v.0),
        Encoding::Gzip => file.gz.as_ref().map_or(0, |v| v.0),
    };
    if cache.cacheable(full) {
        let bytes = cache.get(file, enc).await?;
        // A blob shorter than its manifest size would be store corruption:
        // answer with what there is rather than panic on the slice.
        let e = usize::try_from(start + len)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        let s = usize::try_from(start).unwrap_or(usize::MAX).min(e);
        let bytes = bytes.slice(s..e);
        if bytes.len() >= SENDFILE_MIN {
            if let Some(f) = cache.file(file, enc).await {
                return Ok(Body::File(Box::new(FileBody {
                    bytes: Some(bytes),
                    file: f,
                    offset: start,
                })));
            }
        }
        return Ok(Body::full(bytes));
    }
    Ok(stream(cache.store().clone(), file, enc, start, len))
}

fn stream(
    store: Arc<dyn BlobStore>,
    file: &ServedFile,
    enc: Encoding,
    start: u64,
    len: u64,
) -> Body {
    let digest = file.digest.clone();
    let end = start + len;
    let chunks = futures_util::stream::unfold(start, move |pos| {
        let store = store.clone();
        let digest = digest.clone();
        async move {
            if pos >= end {
                return None;
            }
            let n = STREAM_CHUNK.min((end - pos) as usize);
            match store.read_range(&digest, enc, pos, n).await {
                Ok(b) if b.is_empty() => Some((
                    Err(std::io::Error::other("blob shorter than its manifest size")),
                    end,
                )),
                Ok(b) => {
                    let next = pos + b.len() as u64;
                    Some((Ok(http_body::Frame::data(b)), next))
                }
                Err(e) => Some((Err(std::io::Error::other(e.to_string())), end)),
            }
        }
    });
    Body::Stream(http_body_util::StreamBody::new(chunks.boxed()).boxed_unsync())
}

async fn multipart(
    cache: &BlobCache,
    file: &ServedFile,
    enc: Encoding,
    spans: &[(u64, u64)],
    headers: &mut HeaderMap,
) -> Result<Body, BlobError> {
    let boundary = format!("ledge{:016x}", rand::random::<u64>());
    let ctype = headers
        .remove(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok().map(str::to_owned))
        .unwrap_or_else(|| "application/octet-stream".into());
    let mut out = BytesMut::new();
    for &(s, e) in spans {
        out.extend_from_slice(
            format!(
                "\r\n--{boundary}\r\nContent-Type: {ctype}\r\nContent-Range: bytes {s}-{e}/{}\r\n\r\n",
                file.size
            )
            .as_bytes(),
        );
        let part = read_span(cache, file, enc, s, e - s + 1).await?;
        out.extend_from_slice(&collect(part).await?);
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    headers.insert(
        header::CONTENT_TYPE,
        header_value(&format!("multipart/byteranges; boundary={boundary}")),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(out.len()));
    Ok(Body::full(out.freeze()))
}

async fn collect(body: Body) -> Result<Bytes, BlobError> {
    Ok(body.collect().await.map_err(BlobError::Io)?.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asks_agree_with_lookups() {
        let mut req = HeaderMap::new();
        req.append(header::HOST, HeaderValue::from_static("h"));
        req.append(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        req.append(header::RANGE, HeaderValue::from_static("bytes=0-1"));
        req.append(header::IF_NONE_MATCH, HeaderValue::from_static("\"a\""));
        req.append(header::ACCEPT_ENCODING, HeaderValue::from_static("br"));
        req.append(header::RANGE, HeaderValue::from_static("bytes=2-3"));
        req.append(header::IF_NONE_MATCH, HeaderValue::from_static("\"b\""));
        req.append("x-other", HeaderValue::from_static("v"));
        let asks = Asks::of(&req);
        assert_eq!(asks.range, req.get(header::RANGE));
        assert_eq!(asks.if_none_match, req.get(header::IF_NONE_MATCH));
        assert_eq!(asks.if_modified_since, None);
        let all: Vec<&[u8]> = req
            .get_all(header::ACCEPT_ENCODING)
            .iter()
            .map(HeaderValue::as_bytes)
            .collect();
        assert_eq!(asks.accept_encoding, all);
        assert_eq!(all, [b"gzip".as_slice(), b"br"]);
        let empty = HeaderMap::new();
        let none = Asks::of(&empty);
        assert!(none.range.is_none() && none.accept_encoding.is_empty());
    }

    #[test]
    fn range_parsing() {
        assert_eq!(parse_ranges(b"bytes=0-9", 100), Ranges::One(0, 9));
        assert_eq!(parse_ranges(b"bytes=90-", 100), Ranges::One(90, 99));
        assert_eq!(parse_ranges(b"bytes=-10", 100), Ranges::One(90, 99));
        assert_eq!(parse_ranges(b"bytes=-500", 100), Ranges::One(0, 99));
        assert_eq!(parse_ranges(b"bytes=50-500", 100), Ranges::One(50, 99));
        assert_eq!(parse_ranges(b"bytes=100-", 100), Ranges::Unsatisfiable);
        assert_eq!(parse_ranges(b"bytes=-0", 100), Ranges::Unsatisfiable);
        assert_eq!(
            parse_ranges(b"bytes=0-1, 5-6", 100),
            Ranges::Many(vec![(0, 1), (5, 6)])
        );
        assert_eq!(parse_ranges(b"bytes=0-1,200-300", 100), Ranges::One(0, 1));
        for bad in [
            &b"items=0-1"[..],
            b"bytes=5-1",
            b"bytes=a-b",
            b"bytes=-",
            b"bytes=1",
        ] {
            assert_eq!(parse_ranges(bad, 100), Ranges::Ignore, "{bad:?}");
        }
        let many = format!("bytes={}", vec!["0-0"; MAX_RANGES + 1].join(","));
        assert_eq!(parse_ranges(many.as_bytes(), 100), Ranges::Ignore);
    }

    #[test]
    fn accept_encoding() {
        assert!(accepts(&[b"gzip, deflate, br"], b"br"));
        assert!(!accepts(&[b"gzip"], b"br"));
        assert!(!accepts(&[b"br;q=0, gzip"], b"br"));
        assert!(accepts(&[b"br;q=0.5"], b"br"));
        assert!(accepts(&[b"*"], b"gzip"));
        assert!(!accepts(&[b"*, gzip;q=0"], b"gzip"));
        assert!(!accepts(&[], b"gzip"));
    }

    #[test]
    fn etag_matching() {
        assert!(etag_list_matches(b"\"a\", \"b\"", b"\"b\"", true));
        assert!(etag_list_matches(b"W/\"b\"", b"\"b\"", true));
        assert!(!etag_list_matches(b"W/\"b\"", b"\"b\"", false));
        assert!(etag_list_matches(b"*", b"\"b\"", true));
        assert!(!etag_list_matches(b"\"c\"", b"\"b\"", true));
    }
}
