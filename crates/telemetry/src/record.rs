//! The records the edge writes: one [`AccessRecord`] per request and one
//! [`FunctionRecord`] per edge function invocation.
//!
//! Serialized field names follow Netlify's log drains (spec §9) where Netlify
//! defines them (`log_type`, `timestamp`, `request_id`, `site_id`,
//! `deploy_id`, `method`, `url`, `status_code`, `duration`, `request_size`,
//! `response_size`, `content_type`, `client_ip`, `user_agent`, `referrer`,
//! `country`, `firewall_rule`, `block_reason`, `function_name`,
//! `function_type`); the rest are Ledge's own. Every field is always present
//! (`null` when unknown) so a drain consumer sees one stable shape, except
//! that drains with `exclude_pii` omit `client_ip` and `user_agent`.
//! Durations are milliseconds (floating point), timestamps RFC 3339 in UTC
//! with milliseconds.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize, Serializer};

/// One request, as the pipeline's last phase saw it.
///
/// What answered it (site, target, status, outcome) is an [`Answer`] that
/// records may share: every request a kept answer serves has the same one,
/// so its record costs one reference count instead of a copy of each
/// field, and its JSON is written once per run of records. Serialized, the
/// answer's fields sit in the record's object like its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessRecord {
    /// When the request arrived.
    #[serde(with = "rfc3339")]
    pub timestamp: SystemTime,
    /// The request id (`x-ledge-id`; up to 24 bytes are kept inline).
    pub request_id: compact_str::CompactString,
    /// What answered the request.
    #[serde(flatten)]
    pub answer: Arc<Answer>,
    /// Request body bytes received.
    pub request_size: u64,
    /// Response bytes sent (body).
    pub response_size: u64,
    /// Time from request head to the last response byte.
    #[serde(with = "millis")]
    pub duration: Duration,
    /// Time from request head to the response head.
    #[serde(rename = "time_to_first_byte", with = "millis")]
    pub ttfb: Duration,
    /// The client address (after trusted-proxy handling).
    pub client_ip: Option<IpAddr>,
    /// ISO 3166 country code of the client, if known.
    pub country: Option<String>,
    /// The `User-Agent` header (shared: a connection's requests mostly
    /// carry the same one).
    pub user_agent: Option<Arc<str>>,
    /// The `Referer` header.
    pub referrer: Option<Arc<str>>,
    /// Negotiated TLS version (`TLSv1.3`), `None` on plain HTTP.
    pub tls_version: Option<Cow<'static, str>>,
    /// `HTTP/1.1`, `HTTP/2`, ….
    pub http_version: Cow<'static, str>,
    /// The class of error, if the edge answered with one of its own or the
    /// response did not reach the client whole.
    pub error_class: Option<ErrorClass>,
}

/// What answered a request: where it went and what came back, the part of
/// an [`AccessRecord`] that all requests served by one kept answer share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    /// The site's name.
    #[serde(rename = "site_id")]
    pub site: Arc<str>,
    /// The deploy that answered, if the host resolved to one.
    #[serde(rename = "deploy_id")]
    pub deploy: Option<Arc<str>>,
    /// The normalised Host.
    pub host: Arc<str>,
    /// The request method.
    pub method: Cow<'static, str>,
    /// The decoded request path.
    pub path: Arc<str>,
    /// The query string without `?`, if any.
    pub query: Option<Arc<str>>,
    /// The response status.
    pub status_code: u16,
    /// Response `Content-Type`.
    pub content_type: Option<Arc<str>>,
    /// What the cache did.
    pub cache_status: CacheStatus,
    /// Which part of the pipeline produced the response.
    pub answered_by: Phase,
    /// The rule that answered (`_redirects:12`, `netlify.toml:3`), if any.
    pub rule: Option<String>,
    /// The edge function that answered, if any.
    pub function_name: Option<Arc<str>>,
    /// Firewall rule that matched, if any.
    pub firewall_rule: Option<String>,
    /// Why the request was blocked, if it was.
    pub block_reason: Option<String>,
}

/// What the HTTP cache did for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CacheStatus {
    /// Served from cache.
    Hit,
    /// Served stale from cache while revalidating.
    Stale,
    /// Looked up and not found (or not fresh); fetched.
    Miss,
    /// Not cacheable; the cache was not consulted.
    Bypass,
    /// No cache in the path (static files are keyed by deploy).
    #[default]
    None,
}

impl CacheStatus {
    /// Whether the response came from the cache.
    pub fn is_hit(self) -> bool {
        matches!(self, Self::Hit | Self::Stale)
    }
    /// The label used in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Stale => "stale",
            Self::Miss => "miss",
            Self::Bypass => "bypass",
            Self::None => "none",
        }
    }
}

/// Which part of the pipeline answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// A static file of the deploy (or its custom 404).
    #[default]
    Static,
    /// A redirect rule.
    Redirect,
    /// A rewrite rule (served a deploy path).
    Rewrite,
    /// A proxy rule (origin fetch).
    Proxy,
    /// An edge function.
    Function,
    /// The HTTP cache.
    Cache,
    /// The guard phase (HTTPS redirect, rate limit, firewall).
    Guard,
    /// The platform itself (unknown host, ACME challenge, health).
    Platform,
    /// The edge's error handling.
    Error,
}

impl Phase {
    /// Every phase, in label order.
    pub const ALL: [Phase; 9] = [
        Self::Static,
        Self::Redirect,
        Self::Rewrite,
        Self::Proxy,
        Self::Function,
        Self::Cache,
        Self::Guard,
        Self::Platform,
        Self::Error,
    ];
    /// The label used in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Static => "static",
            Self::Redirect => "redirect",
            Self::Rewrite => "rewrite",
            Self::Proxy => "proxy",
            Self::Function => "function",
            Self::Cache => "cache",
            Self::Guard => "guard",
            Self::Platform => "platform",
            Self::Error => "error",
        }
    }
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// The class of an error the edge answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The request was malformed or refused by a limit (4xx of the edge).
    BadRequest,
    /// A rate limit or firewall refused it.
    Blocked,
    /// The origin could not be reached or refused by the outbound policy.
    UpstreamUnreachable,
    /// The origin timed out.
    UpstreamTimeout,
    /// The origin answered with a broken response.
    UpstreamError,
    /// An edge function threw or hit a limit.
    FunctionError,
    /// The client went away before the response was sent.
    ClientClosed,
    /// A bug or an unavailable internal part (blob store, worker).
    Internal,
}

/// An edge function invocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionRecord {
    /// When the invocation started.
    #[serde(with = "rfc3339")]
    pub timestamp: SystemTime,
    /// The request id it ran for.
    pub request_id: String,
    /// The site's name.
    #[serde(rename = "site_id")]
    pub site: String,
    /// The deploy whose bundle ran.
    #[serde(rename = "deploy_id")]
    pub deploy: String,
    /// The function's name.
    pub function_name: String,
    /// Wall-clock time of the invocation.
    #[serde(with = "millis")]
    pub duration: Duration,
    /// CPU time spent in JavaScript.
    #[serde(with = "millis")]
    pub cpu_time: Duration,
    /// How it ended.
    pub outcome: Outcome,
    /// The status of the response it produced, if it produced one.
    pub status_code: Option<u16>,
    /// Request method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// `console.*` output, in order.
    pub console: Vec<ConsoleLine>,
}

/// How an edge function invocation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Returned a response or called `next()`.
    Ok,
    /// Threw, or returned something that is not a response.
    Error,
    /// Ran out of wall-clock time.
    Timeout,
    /// Ran out of CPU time.
    CpuLimit,
    /// Ran out of memory.
    MemoryLimit,
}

impl Outcome {
    /// Every outcome, in label order.
    pub const ALL: [Outcome; 5] = [
        Self::Ok,
        Self::Error,
        Self::Timeout,
        Self::CpuLimit,
        Self::MemoryLimit,
    ];
    /// The label used in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
            Self::Timeout => "timeout",
            Self::CpuLimit => "cpu_limit",
            Self::MemoryLimit => "memory_limit",
        }
    }
    /// Whether the invocation failed.
    pub fn is_error(self) -> bool {
        !matches!(self, Self::Ok)
    }
}

/// One line of `console.*` output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleLine {
    /// `log`, `info`, `warn`, `error`, `debug`.
    pub level: String,
    /// The formatted message.
    pub message: String,
}

/// A record of either kind, as it travels to sinks and the live tail.
/// Boxed: a record moves through the queue as one pointer, not as the
/// few hundred bytes of its fields.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A request.
    Access(Box<AccessRecord>),
    /// An edge function invocation.
    Function(Box<FunctionRecord>),
}

impl Record {
    /// The site the record belongs to.
    pub fn site(&self) -> &str {
        match self {
            Self::Access(a) => &a.answer.site,
            Self::Function(f) => &f.site,
        }
    }
    /// The record's timestamp.
    pub fn timestamp(&self) -> SystemTime {
        match self {
            Self::Access(a) => a.timestamp,
            Self::Function(f) => f.timestamp,
        }
    }

    /// One JSON line (with the trailing `\n`), `log_type` first. With
    /// `exclude_pii`, `client_ip` and `user_agent` are left out.
    pub fn to_json_line(&self, exclude_pii: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(1024);
        self.write_json_line(&mut out, exclude_pii);
        out
    }

    /// Appends [`Record::to_json_line`] to `out` (the dispatcher writes a
    /// whole batch into one buffer).
    pub fn write_json_line(&self, out: &mut Vec<u8>, exclude_pii: bool) {
        self.write_json_line_with(out, exclude_pii, None);
    }

    /// [`Record::write_json_line`], reusing what `cache` holds from the line
    /// written before (same bytes, less work for runs of similar records).
    pub fn write_json_line_cached(
        &self,
        out: &mut Vec<u8>,
        exclude_pii: bool,
        cache: &mut LineCache,
    ) {
        self.write_json_line_with(out, exclude_pii, Some(cache));
    }

    fn write_json_line_with(
        &self,
        out: &mut Vec<u8>,
        exclude_pii: bool,
        cache: Option<&mut LineCache>,
    ) {
        let start = out.len();
        match self {
            Self::Access(a) => {
                // The hot path: written by hand (a tenth of serde's cost; a
                // test checks both give the same JSON).
                access_json_with(out, a, exclude_pii, cache);
            }
            Self::Function(f) => {
                // `log_type` first, then the record's own fields: written as
                // the prefix, with the record object's opening brace dropped
                // (cheaper than `#[serde(flatten)]`, which goes through a
                // map). Serializing these types cannot fail (no maps with
                // non-string keys, no fallible Serialize impls); an error
                // would only leave `{}` in place of the line, never panic.
                out.extend_from_slice(b"{\"log_type\":\"edge_functions\",");
                let brace = out.len();
                let ok =
                    serde_json::to_writer(&mut *out, f).is_ok() && out.get(brace) == Some(&b'{');
                if ok {
                    out.remove(brace);
                } else {
                    out.truncate(start);
                    out.extend_from_slice(b"{}");
                }
            }
        }
        out.push(b'\n');
    }
}

/// An access record with its PII fields optionally left out.
#[cfg(test)]
struct Redacted<'a> {
    inner: &'a AccessRecord,
    exclude_pii: bool,
}

#[cfg(test)]
impl Serialize for Redacted<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if !self.exclude_pii {
            return self.inner.serialize(s);
        }
        // Serialize through a JSON value and drop the two fields: only drains
        // that asked for it pay for this.
        let mut v = serde_json::to_value(self.inner).map_err(serde::ser::Error::custom)?;
        if let Some(map) = v.as_object_mut() {
            map.remove("client_ip");
            map.remove("user_agent");
        }
        v.serialize(s)
    }
}

/// Bytes a JSON string must escape: controls, `"` and `\\`.
const ESCAPE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// The index of the first byte at or after `from` that JSON must escape.
/// Eight bytes are checked at a time while none of them needs it (most
/// strings in a record need nothing).
#[inline(always)]
fn next_escape(b: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // Non-zero when some byte of `w` is below 0x20, `"` or `\\` (it may
    // also flag a clean word, which then goes byte by byte: never wrong).
    let flagged = |w: u64| {
        let below = w.wrapping_sub(ONES * 0x20) & !w;
        let q = w ^ (ONES * u64::from(b'"'));
        let quote = q.wrapping_sub(ONES) & !q;
        let bs = w ^ (ONES * u64::from(b'\\'));
        let backslash = bs.wrapping_sub(ONES) & !bs;
        (below | quote | backslash) & HIGHS != 0
    };
    let mut i = from;
    while let Some(chunk) = b.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        if flagged(u64::from_le_bytes(word)) {
            break;
        }
        i += 8;
    }
    let rest = b.get(i..)?;
    if rest.len() < 8 {
        // The short tail, padded with a byte that needs no escape, is
        // one more word.
        let mut word = [b'a'; 8];
        word[..rest.len()].copy_from_slice(rest);
        if !flagged(u64::from_le_bytes(word)) {
            return None;
        }
    }
    rest.iter()
        .position(|&c| ESCAPE[usize::from(c)])
        .map(|off| i + off)
}

/// Appends `s` as a JSON string. Inlined: nearly every string of a record
/// needs no escape, and then this is a check and one copy.
#[inline(always)]
fn json_str(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    match next_escape(b, 0) {
        None => {
            out.reserve(b.len() + 2);
            out.push(b'"');
            out.extend_from_slice(b);
            out.push(b'"');
        }
        Some(first) => json_str_escaped(out, b, first),
    }
}

/// [`json_str`] for a string with something to escape, the first at
/// `first`.
#[inline(never)]
fn json_str_escaped(out: &mut Vec<u8>, b: &[u8], first: usize) {
    out.push(b'"');
    let mut start = 0;
    let mut next = Some(first);
    while let Some(i) = next {
        out.extend_from_slice(&b[start..i]);
        let c = b[i];
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(c >> 4)]);
                out.push(HEX[usize::from(c & 0xf)]);
            }
        }
        start = i + 1;
        next = next_escape(b, start);
    }
    out.extend_from_slice(&b[start..]);
    out.push(b'"');
}

/// Appends one of Ledge's own labels (lowercase ASCII, nothing to escape)
/// as a JSON string.
fn json_plain(out: &mut Vec<u8>, s: &'static str) {
    debug_assert!(next_escape(s.as_bytes(), 0).is_none());
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

fn json_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => json_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// Appends `n` (below 100) as exactly two digits.
fn two_digits(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(&ledge_core::num::two_digits(n));
}

/// Each byte value in decimal: up to three digits and their count.
const OCTETS: [([u8; 3], u8); 256] = {
    let mut t = [([0u8; 3], 0u8); 256];
    let mut i = 0;
    while i < 256 {
        let (h, te, o) = ((i / 100) as u8, (i / 10 % 10) as u8, (i % 10) as u8);
        t[i] = if i >= 100 {
            ([b'0' + h, b'0' + te, b'0' + o], 3)
        } else if i >= 10 {
            ([b'0' + te, b'0' + o, 0], 2)
        } else {
            ([b'0' + o, 0, 0], 1)
        };
        i += 1;
    }
    t
};

/// Appends an unsigned integer in decimal.
fn json_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(ledge_core::num::decimal_bytes(n, &mut [0; 20]));
}

/// Bounded parts of a line (numbers, an IPv4 address, names) gathered on the
/// stack and appended to the line in one copy: each piece is a few stores
/// instead of a capacity check and a call to copy a few bytes.
struct Scratch {
    buf: [u8; SCRATCH],
    len: usize,
}

/// Room for the longest run written through a [`Scratch`]: the four
/// numbers at their widest (20 digits each, and `.` and three for the two
/// durations), their names, and an IPv4 client, 185 bytes in all.
const SCRATCH: usize = 256;

impl Scratch {
    fn new() -> Self {
        Self {
            buf: [0; SCRATCH],
            len: 0,
        }
    }

    fn written(&self) -> &[u8] {
        // `len` never passes the buffer (the runs written are bounded).
        &self.buf[..self.len.min(SCRATCH)]
    }

    /// Room for `n` more bytes. The runs written are bounded below
    /// [`SCRATCH`] (a test writes the widest), so there always is; a
    /// debug build stops if a change ever made one longer.
    #[inline(always)]
    fn room(&mut self, n: usize) -> Option<&mut [u8]> {
        debug_assert!(self.len + n <= SCRATCH, "a Scratch run outgrew its buffer");
        self.buf.get_mut(self.len..self.len + n)
    }

    #[inline(always)]
    fn lit<const N: usize>(&mut self, s: &[u8; N]) {
        if let Some(d) = self.room(N) {
            d.copy_from_slice(s);
            self.len += N;
        }
    }

    #[inline(always)]
    fn byte(&mut self, b: u8) {
        if let Some([d]) = self.room(1) {
            *d = b;
            self.len += 1;
        }
    }

    /// `v` in decimal, two digits at a time from its last.
    #[inline(always)]
    fn u64(&mut self, mut v: u64) {
        let width = v.checked_ilog10().map_or(1, |l| l as usize + 1);
        let Some(d) = self.room(width) else {
            return;
        };
        let mut i = width;
        while v >= 100 {
            i -= 2;
            d[i..i + 2].copy_from_slice(&ledge_core::num::two_digits(v));
            v /= 100;
        }
        if v >= 10 {
            d[..2].copy_from_slice(&ledge_core::num::two_digits(v));
        } else {
            d[0] = b'0' + v as u8;
        }
        self.len += width;
    }

    /// Milliseconds with microsecond precision (`3.621`), the same number
    /// serde writes for `micros as f64 / 1000.0`: `.0` for a whole number,
    /// else without trailing zeros.
    #[inline(always)]
    fn millis(&mut self, d: Duration) {
        let micros = d
            .as_secs()
            .saturating_mul(1_000_000)
            .saturating_add(u64::from(d.subsec_micros()));
        self.u64(micros / 1000);
        let frac = micros % 1000;
        let len = if frac % 10 != 0 {
            3
        } else if frac % 100 != 0 {
            2
        } else {
            1
        };
        // All three digits are stored; only `len` of them are kept.
        if let Some(t) = self.room(4) {
            t.copy_from_slice(&[
                b'.',
                b'0' + (frac / 100) as u8,
                b'0' + (frac / 10 % 10) as u8,
                b'0' + (frac % 10) as u8,
            ]);
            self.len += 1 + len;
        }
    }

    /// A byte value in decimal.
    #[inline(always)]
    fn octet(&mut self, v: u8) {
        let (digits, len) = &OCTETS[usize::from(v)];
        if let Some(t) = self.room(3) {
            t.copy_from_slice(digits);
            self.len += usize::from(*len);
        }
    }
}

fn error_class_str(e: ErrorClass) -> &'static str {
    match e {
        ErrorClass::BadRequest => "bad_request",
        ErrorClass::Blocked => "blocked",
        ErrorClass::UpstreamUnreachable => "upstream_unreachable",
        ErrorClass::UpstreamTimeout => "upstream_timeout",
        ErrorClass::UpstreamError => "upstream_error",
        ErrorClass::FunctionError => "function_error",
        ErrorClass::ClientClosed => "client_closed",
        ErrorClass::Internal => "internal",
    }
}

/// An access record as one JSON object, fields in declaration order with
/// `log_type` first, exactly what serde writes for [`AccessRecord`].
/// With a `cache`, the answer's fields come from the previous line when
/// the record shares its answer (or has an equal one).
fn access_json_with(
    out: &mut Vec<u8>,
    a: &AccessRecord,
    exclude_pii: bool,
    mut cache: Option<&mut LineCache>,
) {
    use std::io::Write as _;
    out.extend_from_slice(b"{\"log_type\":\"traffic\",\"timestamp\":\"");
    match cache.as_deref_mut() {
        Some(c) => c.timestamp(out, a.timestamp),
        None => rfc3339_into(out, a.timestamp),
    }
    out.extend_from_slice(b"\",\"request_id\":");
    json_str(out, &a.request_id);
    match cache.as_deref_mut() {
        Some(c) => c.answer.write(out, &a.answer, answer_fields),
        None => answer_fields(out, &a.answer),
    }
    // The numbers and an IPv4 client: bounded, so written on the stack and
    // appended in one copy.
    let mut n = Scratch::new();
    n.lit(b",\"request_size\":");
    n.u64(a.request_size);
    n.lit(b",\"response_size\":");
    n.u64(a.response_size);
    n.lit(b",\"duration\":");
    n.millis(a.duration);
    n.lit(b",\"time_to_first_byte\":");
    n.millis(a.ttfb);
    if !exclude_pii {
        n.lit(b",\"client_ip\":");
        match a.client_ip {
            Some(std::net::IpAddr::V4(v4)) => {
                let [a, b, c, d] = v4.octets();
                n.byte(b'"');
                n.octet(a);
                n.byte(b'.');
                n.octet(b);
                n.byte(b'.');
                n.octet(c);
                n.byte(b'.');
                n.octet(d);
                n.byte(b'"');
            }
            Some(ip) => {
                out.extend_from_slice(n.written());
                n = Scratch::new();
                out.push(b'"');
                let _ = write!(out, "{ip}");
                out.push(b'"');
            }
            None => n.lit(b"null"),
        }
    }
    out.extend_from_slice(n.written());
    out.extend_from_slice(b",\"country\":");
    json_opt_str(out, a.country.as_deref());
    if !exclude_pii {
        out.extend_from_slice(b",\"user_agent\":");
        match cache.as_deref_mut() {
            Some(c) => c.user_agent.write_opt(out, a.user_agent.as_ref(), json_str),
            None => json_opt_str(out, a.user_agent.as_deref()),
        }
    }
    out.extend_from_slice(b",\"referrer\":");
    match cache.as_deref_mut() {
        Some(c) => c.referrer.write_opt(out, a.referrer.as_ref(), json_str),
        None => json_opt_str(out, a.referrer.as_deref()),
    }
    match cache {
        Some(c) => c.last(out, a),
        None => last_fields(out, a),
    }
    out.push(b'}');
}

/// `tls_version` to `error_class`: the same for most records of a batch.
fn last_fields(out: &mut Vec<u8>, a: &AccessRecord) {
    out.extend_from_slice(b",\"tls_version\":");
    json_opt_str(out, a.tls_version.as_deref());
    out.extend_from_slice(b",\"http_version\":");
    json_str(out, &a.http_version);
    out.extend_from_slice(b",\"error_class\":");
    match a.error_class {
        Some(e) => json_plain(out, error_class_str(e)),
        None => out.extend_from_slice(b"null"),
    }
}

/// The answer's fields, `site_id` to `block_reason`, each with its leading
/// comma.
fn answer_fields(out: &mut Vec<u8>, a: &Answer) {
    out.extend_from_slice(b",\"site_id\":");
    json_str(out, &a.site);
    out.extend_from_slice(b",\"deploy_id\":");
    json_opt_str(out, a.deploy.as_deref());
    out.extend_from_slice(b",\"host\":");
    json_str(out, &a.host);
    out.extend_from_slice(b",\"method\":");
    json_str(out, &a.method);
    out.extend_from_slice(b",\"path\":");
    json_str(out, &a.path);
    out.extend_from_slice(b",\"query\":");
    json_opt_str(out, a.query.as_deref());
    out.extend_from_slice(b",\"status_code\":");
    json_u64(out, u64::from(a.status_code));
    out.extend_from_slice(b",\"content_type\":");
    json_opt_str(out, a.content_type.as_deref());
    out.extend_from_slice(b",\"cache_status\":");
    json_plain(out, a.cache_status.as_str());
    out.extend_from_slice(b",\"answered_by\":");
    json_plain(out, a.answered_by.as_str());
    out.extend_from_slice(b",\"rule\":");
    json_opt_str(out, a.rule.as_deref());
    out.extend_from_slice(b",\"function_name\":");
    json_opt_str(out, a.function_name.as_deref());
    out.extend_from_slice(b",\"firewall_rule\":");
    json_opt_str(out, a.firewall_rule.as_deref());
    out.extend_from_slice(b",\"block_reason\":");
    json_opt_str(out, a.block_reason.as_deref());
}

/// What the last access line written held, reused by the next lines while
/// they agree (the dispatcher writes a batch's lines in a row; a kept
/// answer's records share one [`Answer`], and a site's other traffic often
/// repeats one too). The bytes are the same as without it.
#[derive(Default)]
pub struct LineCache {
    second: Option<u64>,
    /// `YYYY-MM-DDTHH:MM:SS.` of `second`.
    second_text: Vec<u8>,
    answer: Cached<Answer>,
    /// `tls_version`, `http_version` and `error_class` of `last_text`.
    last: Option<(Option<String>, String, Option<ErrorClass>)>,
    last_text: Vec<u8>,
    user_agent: Cached<str>,
    referrer: Cached<str>,
}

/// The JSON of the last value of one shared field (an [`Answer`], an
/// agent): written again only for a value that differs.
struct Cached<T: ?Sized> {
    value: Option<Arc<T>>,
    text: Vec<u8>,
}

impl<T: ?Sized> Default for Cached<T> {
    fn default() -> Self {
        Self {
            value: None,
            text: Vec::new(),
        }
    }
}

impl<T: ?Sized + PartialEq> Cached<T> {
    /// Appends `v` as `render` writes it, from the cache when it holds `v`.
    fn write(&mut self, out: &mut Vec<u8>, v: &Arc<T>, render: fn(&mut Vec<u8>, &T)) {
        // Records of one kept answer share their blocks: a pointer compare
        // mostly decides.
        match &mut self.value {
            Some(k) if Arc::ptr_eq(k, v) => {}
            Some(k) if **k == **v => {
                // The same text in another block. The records that follow
                // most likely share this one's (the pipeline answered once
                // before the answer was kept), so compare with it from now on.
                *k = v.clone();
            }
            k => {
                *k = Some(v.clone());
                self.text.clear();
                render(&mut self.text, v);
            }
        }
        out.extend_from_slice(&self.text);
    }

    /// [`Cached::write`] for an optional value, `null` when absent.
    fn write_opt(&mut self, out: &mut Vec<u8>, v: Option<&Arc<T>>, render: fn(&mut Vec<u8>, &T)) {
        match v {
            Some(v) => self.write(out, v, render),
            None => out.extend_from_slice(b"null"),
        }
    }
}

impl LineCache {
    fn timestamp(&mut self, out: &mut Vec<u8>, t: SystemTime) {
        let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        if self.second != Some(d.as_secs()) {
            self.second_text.clear();
            rfc3339_into(
                &mut self.second_text,
                UNIX_EPOCH + Duration::from_secs(d.as_secs()),
            );
            // Without the `000Z` of the whole second.
            self.second_text
                .truncate(self.second_text.len().saturating_sub(4));
            self.second = Some(d.as_secs());
        }
        out.extend_from_slice(&self.second_text);
        let ms = u64::from(d.subsec_millis());
        out.push(b'0' + (ms / 100) as u8);
        two_digits(out, ms % 100);
        out.push(b'Z');
    }

    fn last(&mut self, out: &mut Vec<u8>, a: &AccessRecord) {
        let same = self.last.as_ref().is_some_and(|(tls, http, error)| {
            tls.as_deref() == a.tls_version.as_deref()
                && *http == a.http_version
                && *error == a.error_class
        });
        if !same {
            self.last = Some((
                a.tls_version.as_deref().map(str::to_owned),
                a.http_version.to_string(),
                a.error_class,
            ));
            self.last_text.clear();
            last_fields(&mut self.last_text, a);
        }
        out.extend_from_slice(&self.last_text);
    }
}

/// Appends what [`Rfc3339`] displays, without the formatting machinery.
fn rfc3339_into(out: &mut Vec<u8>, t: SystemTime) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let rem = secs % 86_400;
    let (y, m, day) = civil_from_days((secs / 86_400) as i64);
    match u64::try_from(y) {
        Ok(y @ 0..=9999) => {
            two_digits(out, y / 100);
            two_digits(out, y % 100);
        }
        // Past 9999 (or before year 0, which a SystemTime after the
        // epoch cannot be): all of it.
        _ => json_u64(out, u64::try_from(y).unwrap_or(0)),
    }
    out.push(b'-');
    two_digits(out, u64::from(m));
    out.push(b'-');
    two_digits(out, u64::from(day));
    out.push(b'T');
    two_digits(out, rem / 3600);
    out.push(b':');
    two_digits(out, (rem / 60) % 60);
    out.push(b':');
    two_digits(out, rem % 60);
    out.push(b'.');
    let ms = u64::from(d.subsec_millis());
    out.push(b'0' + (ms / 100) as u8);
    two_digits(out, ms % 100);
    out.push(b'Z');
}

/// Formats a time as RFC 3339 in UTC with milliseconds
/// (`2026-11-28T12:05:45.123Z`).
pub fn format_rfc3339(t: SystemTime) -> String {
    Rfc3339(t).to_string()
}

/// Displays a time as RFC 3339 in UTC with milliseconds, without
/// allocating (records are serialized through it).
#[derive(Debug, Clone, Copy)]
pub struct Rfc3339(pub SystemTime);

impl std::fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = self.0.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = d.as_secs();
        let days = (secs / 86_400) as i64;
        let rem = secs % 86_400;
        let (y, m, day) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
            rem / 3600,
            (rem / 60) % 60,
            rem % 60,
            d.subsec_millis()
        )
    }
}

/// Parses what [`format_rfc3339`] writes (also without fraction, or with an
/// offset of `Z` / `+00:00`).
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut rest = s.get(19..)?;
    let mut nanos = 0u32;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        let v: u32 = frac.get(..digits)?.parse().ok()?;
        nanos = v * 10u32.pow(9 - digits as u32);
        rest = frac.get(digits..)?;
    }
    if !matches!(rest, "Z" | "z" | "+00:00") {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + se;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

// Days since 1970-01-01 → (year, month, day), proleptic Gregorian
// (H. Hinnant's algorithm, written from its description).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

mod rfc3339 {
    use super::*;
    use serde::Deserializer;

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&Rfc3339(*t))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let s = String::deserialize(d)?;
        parse_rfc3339(&s).ok_or_else(|| serde::de::Error::custom("not an RFC 3339 UTC time"))
    }
}

mod millis {
    use super::*;
    use serde::Deserializer;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        // Microsecond precision is plenty and keeps lines short.
        s.serialize_f64((d.as_micros() as f64) / 1000.0)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let ms = f64::deserialize(d)?;
        if !ms.is_finite() || ms < 0.0 {
            return Err(serde::de::Error::custom("duration must be >= 0 ms"));
        }
        Ok(Duration::from_secs_f64(ms / 1000.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Strings are escaped exactly as serde does, wherever the awkward byte
    /// falls in an eight-byte word.
    #[test]
    fn strings_escape_like_serde() {
        let parts = [
            "a", "\"", "\\", "\n", "\u{1}", "\u{1f}", " ", "é", "😀", "\u{7f}", "0123456",
        ];
        for s in ledge_core::path::joinings(&parts, 4) {
            let mut out = Vec::new();
            json_str(&mut out, &s);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(&s).unwrap(),
                "{s:?}"
            );
        }
    }

    /// A record with every field set, awkward strings included.
    fn awkward() -> AccessRecord {
        AccessRecord {
            timestamp: UNIX_EPOCH + Duration::from_millis(1_795_867_545_123),
            request_id: "0123456789abcdef".into(),
            answer: Arc::new(Answer {
                site: "blog".into(),
                deploy: Some("6749a4c5e8b1f2a3c4d5e6f7".into()),
                host: "blog.example".into(),
                method: "GET".into(),
                path: "/a b/\"q\"\\\u{1}\u{1f}\t\n\r\u{8}\u{c}é😀\u{7f}/".into(),
                query: Some("x=1&y=%20".into()),
                status_code: 404,
                content_type: Some("text/html; charset=utf-8".into()),
                cache_status: CacheStatus::Stale,
                answered_by: Phase::Proxy,
                rule: Some("_redirects:12".into()),
                function_name: None,
                firewall_rule: None,
                block_reason: None,
            }),
            request_size: 0,
            response_size: 123_456_789,
            duration: Duration::from_micros(3_621),
            ttfb: Duration::from_micros(257),
            client_ip: Some("2001:db8::1".parse().unwrap()),
            country: Some("DE".into()),
            user_agent: Some("curl/8 \"quoted\"".into()),
            referrer: None,
            tls_version: Some("TLSv1.3".into()),
            http_version: "HTTP/2".into(),
            error_class: Some(ErrorClass::UpstreamTimeout),
        }
    }

    /// The hand-written access line is exactly serde's, field for field and
    /// in order, for awkward values too.
    #[test]
    fn hand_written_access_json_equals_serde() {
        let base = awkward();
        let mut empty = base.clone();
        let answer = Arc::make_mut(&mut empty.answer);
        answer.deploy = None;
        answer.query = None;
        answer.content_type = None;
        answer.rule = None;
        empty.client_ip = None;
        empty.country = None;
        empty.user_agent = None;
        empty.tls_version = None;
        empty.error_class = None;
        empty.duration = Duration::ZERO;
        empty.ttfb = Duration::from_micros(1_000_010);
        let mut durations = base.clone();
        durations.duration = Duration::from_micros(1_500);
        durations.ttfb = Duration::from_nanos(999);
        durations.client_ip = Some("203.0.113.7".parse().unwrap());
        // Every bounded field at its widest: the stack buffer must hold them.
        let mut widest = base.clone();
        widest.request_size = u64::MAX;
        widest.response_size = u64::MAX - 1;
        // (Wider durations than these are past what an f64 holds exactly,
        // so serde's number would differ; `scratch_holds_the_widest_run`
        // covers them.)
        widest.duration = Duration::from_micros(999_999_999_999_999);
        widest.ttfb = Duration::from_micros(123_456_789_012_345);
        widest.client_ip = Some("255.255.255.255".parse().unwrap());
        for a in [base, empty, durations, widest] {
            for pii in [false, true] {
                let mut reference = b"{\"log_type\":\"traffic\",".to_vec();
                let at = reference.len();
                serde_json::to_writer(
                    &mut reference,
                    &Redacted {
                        inner: &a,
                        exclude_pii: pii,
                    },
                )
                .unwrap();
                reference.remove(at);
                reference.push(b'\n');
                let line = Record::Access(Box::new(a.clone())).to_json_line(pii);
                if !pii {
                    // Same bytes where serde keeps field order.
                    assert_eq!(
                        String::from_utf8_lossy(&line),
                        String::from_utf8_lossy(&reference)
                    );
                }
                let got: serde_json::Value = serde_json::from_slice(&line).unwrap();
                let want: serde_json::Value = serde_json::from_slice(&reference).unwrap();
                assert_eq!(got, want);
            }
        }
    }

    /// The digit writers agree with `Display`, serde's float and the
    /// formatted timestamp over every length and boundary.
    #[test]
    fn numbers_and_times_are_written_like_the_reference() {
        let mut ns: Vec<u64> = vec![0, u64::MAX, u64::MAX - 1];
        for p in 0..20u32 {
            let b = 10u64.pow(p);
            ns.extend([b.saturating_sub(1), b, b + 1, b.saturating_mul(7) / 3]);
        }
        for n in ns {
            let mut out = Vec::new();
            json_u64(&mut out, n);
            assert_eq!(String::from_utf8(out).unwrap(), n.to_string());
            let mut s = Scratch::new();
            s.u64(n);
            assert_eq!(s.written(), n.to_string().as_bytes());
        }
        for v in 0..=255u8 {
            let mut s = Scratch::new();
            s.octet(v);
            assert_eq!(s.written(), v.to_string().as_bytes());
        }
        let mut micros: Vec<u64> = (0..2_100).collect();
        micros.extend([
            9_999,
            10_000,
            10_010,
            123_456,
            1_000_000,
            3_600_000_123,
            86_400_000_001,
        ]);
        for m in micros {
            let mut s = Scratch::new();
            s.millis(Duration::from_micros(m));
            let want = serde_json::to_string(&(m as f64 / 1000.0)).unwrap();
            assert_eq!(String::from_utf8_lossy(s.written()), want, "{m} µs");
        }
        // Sub-microsecond parts are cut, as `as_micros` does.
        let mut s = Scratch::new();
        s.millis(Duration::from_nanos(1_999));
        assert_eq!(s.written(), b"0.001");
        let mut secs: Vec<u64> = vec![0, 59, 60, 3_599, 86_399, 86_400, 951_782_400, 1_795_867_545];
        // Up to 9999-12-31T23:59:59 and past it (five-digit years).
        secs.extend([253_402_300_799, 253_402_300_800, 4_000_000_000_000]);
        for s in secs {
            for ms in [0, 7, 45, 999] {
                let t = UNIX_EPOCH + Duration::from_millis(s * 1000 + ms);
                let mut out = Vec::new();
                rfc3339_into(&mut out, t);
                assert_eq!(
                    String::from_utf8(out).unwrap(),
                    format_rfc3339(t),
                    "{s}.{ms}"
                );
            }
        }
    }

    /// Lines written with a cache are the bytes written without one, for
    /// runs of records that share their answer, have equal ones, or differ
    /// in any field.
    #[test]
    fn cached_lines_equal_uncached_ones() {
        let base = awkward();
        type Change = fn(&mut AccessRecord, u64);
        let changes: [Change; 22] = [
            |_, _| {},
            |a, i| a.timestamp += Duration::from_millis(i * 337),
            |a, i| Arc::make_mut(&mut a.answer).site = format!("site{}", i % 3).into(),
            |a, i| {
                Arc::make_mut(&mut a.answer).deploy = (i % 2 == 0).then(|| format!("d{i}").into())
            },
            |a, i| Arc::make_mut(&mut a.answer).host = format!("h{}.example", i % 2).into(),
            |a, i| {
                Arc::make_mut(&mut a.answer).method = if i % 2 == 0 {
                    "POST".into()
                } else {
                    "M\"X".to_string().into()
                }
            },
            |a, i| Arc::make_mut(&mut a.answer).path = format!("/p/{i}").into(),
            |a, i| {
                Arc::make_mut(&mut a.answer).cache_status = if i % 2 == 0 {
                    CacheStatus::Hit
                } else {
                    CacheStatus::Miss
                }
            },
            |a, i| {
                Arc::make_mut(&mut a.answer).answered_by = if i % 2 == 0 {
                    Phase::Proxy
                } else {
                    Phase::Redirect
                }
            },
            |a, i| {
                Arc::make_mut(&mut a.answer).rule = (i % 3 != 0).then(|| format!("_redirects:{i}"))
            },
            |a, i| Arc::make_mut(&mut a.answer).function_name = (i % 2 == 0).then(|| "fn".into()),
            |a, i| Arc::make_mut(&mut a.answer).firewall_rule = (i % 2 == 0).then(|| "fw\n".into()),
            |a, i| Arc::make_mut(&mut a.answer).block_reason = (i % 2 == 0).then(|| "why".into()),
            |a, i| Arc::make_mut(&mut a.answer).status_code = 200 + (i % 3) as u16,
            |a, i| a.tls_version = (i % 2 == 0).then_some(Cow::Borrowed("TLSv1.3")),
            |a, i| {
                a.http_version = if i % 2 == 0 {
                    "HTTP/2".into()
                } else {
                    "HTTP/1.1".into()
                }
            },
            |a, i| a.error_class = (i % 2 == 0).then_some(ErrorClass::Blocked),
            |a, i| a.timestamp = UNIX_EPOCH + Duration::from_millis(253_402_300_799_000 + i),
            // An equal answer in a new allocation.
            |a, _| a.answer = Arc::new((*a.answer).clone()),
            |a, i| a.user_agent = (i % 3 != 0).then(|| format!("agent \"{}\"", i % 2).into()),
            // The same agent in a new allocation.
            |a, _| a.user_agent = a.user_agent.as_deref().map(Arc::from),
            |a, i| a.referrer = (i % 2 == 0).then(|| format!("https://r.example/{i}").into()),
        ];
        for pii in [false, true] {
            let mut cache = LineCache::default();
            let mut a = base.clone();
            for i in 0..400u64 {
                // Several fields change at once, some records repeat.
                let r = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 7;
                for k in 0..3 {
                    if (r >> (k * 8)) % 3 == 0 {
                        changes[((r >> (k * 8 + 2)) % 22) as usize](&mut a, i);
                    }
                }
                let record = Record::Access(Box::new(a.clone()));
                let mut cached = Vec::new();
                record.write_json_line_cached(&mut cached, pii, &mut cache);
                assert_eq!(
                    String::from_utf8(cached).unwrap(),
                    String::from_utf8(record.to_json_line(pii)).unwrap(),
                    "record {i}"
                );
            }
        }
    }

    /// A line reads back into the record it was written from, the answer's
    /// fields included.
    #[test]
    fn access_lines_read_back() {
        let a = awkward();
        let line = Record::Access(Box::new(a.clone())).to_json_line(false);
        let mut back: AccessRecord = serde_json::from_slice(&line).unwrap();
        // Lines keep microseconds.
        back.duration = a.duration;
        back.ttfb = a.ttfb;
        assert_eq!(back, a);
    }

    /// The longest run the line writes on the stack fits, byte for byte.
    #[test]
    fn scratch_holds_the_widest_run() {
        let mut n = Scratch::new();
        n.lit(b",\"request_size\":");
        n.u64(u64::MAX);
        n.lit(b",\"response_size\":");
        n.u64(u64::MAX);
        n.lit(b",\"duration\":");
        n.millis(Duration::MAX);
        n.lit(b",\"time_to_first_byte\":");
        n.millis(Duration::MAX);
        n.lit(b",\"client_ip\":");
        n.byte(b'"');
        for (i, v) in [255u8; 4].into_iter().enumerate() {
            if i > 0 {
                n.byte(b'.');
            }
            n.octet(v);
        }
        n.byte(b'"');
        let want = format!(
            ",\"request_size\":{m},\"response_size\":{m},\"duration\":{ms}.615,\
             \"time_to_first_byte\":{ms}.615,\"client_ip\":\"255.255.255.255\"",
            m = u64::MAX,
            ms = u64::MAX / 1000,
        );
        assert_eq!(String::from_utf8_lossy(n.written()), want);
        assert!(want.len() <= SCRATCH);
    }

    #[test]
    fn rfc3339_round_trips_and_matches_known_dates() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_867_545_123);
        assert_eq!(format_rfc3339(t), "2026-11-28T12:05:45.123Z");
        assert_eq!(parse_rfc3339("2026-11-28T12:05:45.123Z"), Some(t));
        assert_eq!(format_rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000Z"
        );
        for days in [-1000i64, 0, 59, 60, 365, 11_016, 20_000, 100_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m as i64, d as i64), days);
        }
        assert_eq!(parse_rfc3339("2026-13-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("garbage"), None);
        assert_eq!(parse_rfc3339("2026-11-28T09:25:45+02:00"), None);
    }
}
