//! Small, allocation-bounded URL helpers: percent-decoding, the WHATWG
//! percent-encode sets used when a rule target is serialised, query parsing and
//! `application/x-www-form-urlencoded` serialisation.
//!
//! These mirror what Netlify's CLI gets from `new URL(...)` and
//! `URLSearchParams`, restricted to what rule evaluation needs.

/// Whitespace as JavaScript's `String#trim` and `\s` understand it.
pub(crate) fn js_space(c: char) -> bool {
    c.is_whitespace() || c == '\u{feff}'
}

/// `String#trim` with JavaScript's notion of whitespace.
pub(crate) fn js_trim(s: &str) -> &str {
    s.trim_matches(js_space)
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes `s` like `decodeURIComponent`. Returns `None` when an escape
/// is malformed or the result is not UTF-8 (where JavaScript would throw).
pub(crate) fn percent_decode(s: &str) -> Option<std::borrow::Cow<'_, str>> {
    if !s.contains('%') {
        return Some(std::borrow::Cow::Borrowed(s));
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hi = bytes.get(i + 1).copied().and_then(hex_val)?;
            let lo = bytes.get(i + 2).copied().and_then(hex_val)?;
            out.push(hi * 16 + lo);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok().map(std::borrow::Cow::Owned)
}

/// Decodes one `application/x-www-form-urlencoded` component: `+` is a space,
/// bad escapes are kept literally, invalid UTF-8 is replaced (as
/// `URLSearchParams` does).
pub(crate) fn form_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                match (
                    bytes.get(i + 1).copied().and_then(hex_val),
                    bytes.get(i + 2).copied().and_then(hex_val),
                ) {
                    (Some(h), Some(l)) => {
                        out.push(h * 16 + l);
                        i += 3;
                    }
                    _ => {
                        out.push(b);
                        i += 1;
                    }
                }
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn push_escaped(out: &mut String, b: u8) {
    out.push('%');
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 15)]));
}

/// Serialises one component as `application/x-www-form-urlencoded`.
pub(crate) fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => push_escaped(&mut out, b),
        }
    }
    out
}

/// Which WHATWG percent-encode set to apply.
#[derive(Clone, Copy)]
pub(crate) enum EncodeSet {
    Path,
    Query,
    Fragment,
}

/// Percent-encodes the bytes of `s` that the WHATWG URL serialiser would
/// encode in the given component. Existing `%XX` escapes are kept.
pub(crate) fn encode_set(s: &str, set: EncodeSet) -> String {
    let needs = |b: u8| {
        !(0x20..0x7f).contains(&b)
            || b == b' '
            || b == b'"'
            || b == b'<'
            || b == b'>'
            || match set {
                EncodeSet::Path => matches!(b, b'#' | b'?' | b'`' | b'{' | b'}'),
                EncodeSet::Query => matches!(b, b'#' | b'\''),
                EncodeSet::Fragment => b == b'`',
            }
    };
    // Most targets need nothing encoded: copy them whole.
    let Some(first) = s.bytes().position(needs) else {
        return s.to_owned();
    };
    let mut out = String::with_capacity(s.len() + 8);
    out.push_str(&s[..first]);
    for &b in &s.as_bytes()[first..] {
        if needs(b) {
            push_escaped(&mut out, b);
        } else {
            out.push(char::from(b));
        }
    }
    out
}

/// Removes `.` and `..` segments from an absolute path (RFC 3986 §5.2.4, as
/// the WHATWG parser does, including `%2e` spellings) and turns `\` into `/`.
pub(crate) fn normalize_path(path: &str) -> String {
    let path = if path.contains('\\') {
        path.replace('\\', "/")
    } else {
        path.to_owned()
    };
    let is_dot = |s: &str| s == "." || s.eq_ignore_ascii_case("%2e");
    let is_dotdot = |s: &str| {
        matches!(s.len(), 2 | 4 | 6) && {
            let l = s.to_ascii_lowercase();
            l == ".." || l == ".%2e" || l == "%2e." || l == "%2e%2e"
        }
    };
    // Nothing to remove (the common case, `/assets/app.css` included).
    if !path.contains('.') || !path.split('/').any(|seg| is_dot(seg) || is_dotdot(seg)) {
        return path;
    }
    let mut segs: Vec<&str> = Vec::new();
    let parts: Vec<&str> = path.split('/').skip(1).collect();
    let n = parts.len();
    for (i, seg) in parts.iter().enumerate() {
        let last = i + 1 == n;
        if is_dotdot(seg) {
            segs.pop();
            if last {
                segs.push("");
            }
        } else if is_dot(seg) {
            if last {
                segs.push("");
            }
        } else {
            segs.push(seg);
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &segs {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// One `key=value` pair of a request query, form-decoded. `value` is `None`
/// for a bare `key` without `=`.
pub(crate) struct QueryPair {
    pub key: String,
    pub value: Option<String>,
}

/// Splits a raw query (without `?`) into decoded pairs.
pub(crate) fn parse_query(raw: &str) -> Vec<QueryPair> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => QueryPair {
                key: form_decode(k),
                value: Some(form_decode(v)),
            },
            None => QueryPair {
                key: form_decode(p),
                value: None,
            },
        })
        .collect()
}

/// Does a query string (without `?`) carry at least one parameter, as
/// `URLSearchParams` counts them?
pub(crate) fn has_params(raw: &str) -> bool {
    raw.split('&').any(|p| !p.is_empty())
}

/// A rule target split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// `https://host[:port]` for absolute targets.
    pub origin: Option<String>,
    pub path: String,
    pub query: Option<String>,
    pub fragment: Option<String>,
}

/// Is `s` an absolute `http://` or `https://` URL (Netlify's `isUrl`)?
pub(crate) fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// Splits `scheme://authority/rest` into (scheme, lower-cased host with the
/// default port removed, rest). `None` when the authority is empty.
pub(crate) fn split_absolute(s: &str) -> Option<(&'static str, String, &str)> {
    let (scheme, rest) = if let Some(r) = s.strip_prefix("https://") {
        ("https", r)
    } else if let Some(r) = s.strip_prefix("http://") {
        ("http", r)
    } else {
        return None;
    };
    let end = rest.find(['/', '?', '#', '\\']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    // Userinfo is not meaningful in rules; keep only the host part.
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    if host_port.is_empty() || host_port.contains(char::is_whitespace) {
        return None;
    }
    let mut host = host_port.to_ascii_lowercase();
    let default_port = if scheme == "https" { ":443" } else { ":80" };
    if let Some(h) = host.strip_suffix(default_port) {
        host = h.to_owned();
    }
    if host.is_empty() || host.starts_with(':') {
        return None;
    }
    Some((scheme, host, tail))
}

/// Where the path (or query, or fragment) of an absolute target starts.
pub(crate) fn tail_start(to: &str) -> Option<usize> {
    let (_, _, tail) = split_absolute(to)?;
    Some(to.len() - tail.len())
}

/// Bytes that keep a target path off the plain fast path: controls, space,
/// non-ASCII, and what the path encode set or Ledge's own checks treat
/// specially.
const NEEDS_ENCODING: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = !(b > 0x20 && b < 0x7f)
            || matches!(
                b as u8,
                b'%' | b'\\' | b'"' | b'<' | b'>' | b'`' | b'{' | b'}'
            );
        b += 1;
    }
    t
};

/// Splits a target (absolute URL or path) and serialises each part as the
/// WHATWG URL parser would.
pub(crate) fn parse_target(to: &str) -> Target {
    let (origin, rest) = match split_absolute(to) {
        Some((scheme, host, tail)) => (Some(format!("{scheme}://{host}")), tail),
        None => (None, to),
    };
    // One pass over the rest finds where the query and the fragment start
    // and whether the path has a byte to encode (targets are short, and this
    // runs for every rewrite and proxy).
    let bytes = rest.as_bytes();
    let mut query_at = None;
    let mut hash_at = None;
    let mut odd = false;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'#' {
            hash_at = Some(i);
            break;
        }
        if query_at.is_none() {
            if b == b'?' {
                query_at = Some(i);
            } else {
                odd |= NEEDS_ENCODING[usize::from(b)];
            }
        }
    }
    let end = hash_at.unwrap_or(bytes.len());
    let fragment =
        hash_at.map(|i| encode_set(rest.get(i + 1..).unwrap_or(""), EncodeSet::Fragment));
    let (path, query) = match query_at {
        Some(q) => (
            rest.get(..q).unwrap_or(""),
            Some(encode_set(
                rest.get(q + 1..end).unwrap_or(""),
                EncodeSet::Query,
            )),
        ),
        None => (rest.get(..end).unwrap_or(""), None),
    };
    // The common case (a plain path, as a splat tail usually is): nothing to
    // encode or normalise, one allocation.
    let plain = !odd && ledge_core::path::is_plain(path.as_bytes());
    let path = if plain {
        let mut p = String::with_capacity(path.len() + 1);
        if !path.starts_with('/') {
            p.push('/');
        }
        p.push_str(path);
        p
    } else {
        let mut p = encode_set(path, EncodeSet::Path);
        if !p.starts_with('/') {
            p.insert(0, '/');
        }
        normalize_path(&p)
    };
    Target {
        origin,
        path,
        query,
        fragment,
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn plain_targets_skip_encoding_with_the_same_result() {
        let slow = |path: &str| {
            let mut p = encode_set(path, EncodeSet::Path);
            if !p.starts_with('/') {
                p.insert(0, '/');
            }
            normalize_path(&p)
        };
        let parts = [
            "", "/", "a", ".", "..", "%2e", "\\", " ", "é", "x.css", "{", "\"",
        ];
        for c in &ledge_core::path::joinings(&parts, 4) {
            assert_eq!(parse_target(c).path, slow(c), "{c:?}");
        }
    }

    use super::*;

    #[test]
    fn decode_and_encode() {
        assert_eq!(percent_decode("/a%20b").as_deref(), Some("/a b"));
        assert_eq!(percent_decode("/a%2"), None);
        assert_eq!(percent_decode("/%FF"), None);
        assert_eq!(form_decode("a+b%20c%zz"), "a b c%zz");
        assert_eq!(form_encode("a b/c"), "a+b%2Fc");
        assert_eq!(
            encode_set("/caf\u{e9} x", EncodeSet::Path),
            "/caf%C3%A9%20x"
        );
    }

    #[test]
    fn dot_segments() {
        assert_eq!(normalize_path("/a/../b"), "/b");
        assert_eq!(normalize_path("/a/./b/."), "/a/b/");
        assert_eq!(normalize_path("/.."), "/");
    }

    /// [`parse_target`] in its straightforward form, as a reference.
    fn reference_target(to: &str) -> Target {
        let (origin, rest) = match split_absolute(to) {
            Some((scheme, host, tail)) => (Some(format!("{scheme}://{host}")), tail),
            None => (None, to),
        };
        let (rest, fragment) = match rest.split_once('#') {
            Some((r, f)) => (r, Some(encode_set(f, EncodeSet::Fragment))),
            None => (rest, None),
        };
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(encode_set(q, EncodeSet::Query))),
            None => (rest, None),
        };
        let mut p = encode_set(path, EncodeSet::Path);
        if !p.starts_with('/') {
            p.insert(0, '/');
        }
        Target {
            origin,
            path: normalize_path(&p),
            query,
            fragment,
        }
    }

    #[test]
    fn targets_split_like_the_reference() {
        let parts = [
            "",
            "/",
            "a",
            ".",
            "..",
            "?",
            "#",
            "%2e",
            "\\",
            " ",
            "é",
            "{",
            "\"",
            "x?y",
            "https://H.example",
        ];
        let all = ledge_core::path::joinings(&parts, 4);
        for c in &all {
            assert_eq!(parse_target(c), reference_target(c), "{c:?}");
        }
        assert_eq!(all.len(), parts.len().pow(4));
    }

    #[test]
    fn targets() {
        let t = parse_target("https://Up.Example:443/a b?x=1#f");
        assert_eq!(t.origin.as_deref(), Some("https://up.example"));
        assert_eq!(t.path, "/a%20b");
        assert_eq!(t.query.as_deref(), Some("x=1"));
        assert_eq!(t.fragment.as_deref(), Some("f"));
        assert_eq!(parse_target("https://h.example").path, "/");
    }
}
