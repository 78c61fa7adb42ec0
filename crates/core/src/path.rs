//! Request paths: decoding with hostile input refused, and static path
//! resolution (spec §10.4, production behaviour) over any set of file paths.
//!
//! - `/` → `/index.html` (then `/index.htm`);
//! - `/x` → `/x`, `/x.html`, `/x.htm`; a folder (`/x/index.html` or `.htm`)
//!   requested without its slash → redirect to `/x/`;
//! - `/x/` → `/x/index.html`, `/x/index.htm`, then `/x.html`, `/x.htm`.
//!
//! Pure functions, shared by the edge, `ledge rules explain` and the fuzzers.

use std::borrow::Cow;

/// Where a path leads, given only which paths exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Located<'a> {
    /// This file path.
    File(Cow<'a, str>),
    /// Redirect to the slash form.
    AddSlash,
    /// Nothing.
    NotFound,
}

/// Resolves a decoded, validated request path (starts with `/`) against a set
/// of file paths given by `has`. Shared by the edge and `ledge rules explain`.
pub fn locate<'a>(path: &'a str, has: impl Fn(&str) -> bool) -> Located<'a> {
    let mut buf = String::new();
    let mut probe = |base: &str, suffix: &str| -> Option<String> {
        buf.clear();
        buf.push_str(base);
        buf.push_str(suffix);
        has(&buf).then(|| buf.clone())
    };
    if let Some(dir) = path.strip_suffix('/') {
        // `/x/` (or `/`).
        for candidate in ["index.html", "index.htm"] {
            if let Some(p) = probe(path, candidate) {
                return Located::File(Cow::Owned(p));
            }
        }
        if !dir.is_empty() {
            for ext in [".html", ".htm"] {
                if let Some(p) = probe(dir, ext) {
                    return Located::File(Cow::Owned(p));
                }
            }
        }
        return Located::NotFound;
    }
    if has(path) {
        return Located::File(Cow::Borrowed(path));
    }
    for ext in [".html", ".htm"] {
        if let Some(p) = probe(path, ext) {
            return Located::File(Cow::Owned(p));
        }
    }
    for index in ["/index.html", "/index.htm"] {
        if probe(path, index).is_some() {
            return Located::AddSlash;
        }
    }
    Located::NotFound
}

/// Why a request path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Malformed: bad escapes, NUL, backslash, dot segments, not UTF-8.
    Bad,
}

/// Percent-decodes a raw request path and refuses anything hostile: invalid
/// escapes or UTF-8, NUL and other control bytes, backslashes, and `.` or `..`
/// segments (encoded or not). The result starts with `/`.
pub fn decode_path(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::Bad);
    }
    // Fast path: nothing escaped, nothing odd: the raw path is the path.
    if is_plain(raw.as_bytes()) {
        return Ok(Cow::Borrowed(raw));
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(PathError::Bad)?;
            let v = (hex_val(hex[0]).ok_or(PathError::Bad)? << 4)
                | hex_val(hex[1]).ok_or(PathError::Bad)?;
            out.push(v);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    let s = String::from_utf8(out).map_err(|_| PathError::Bad)?;
    if s.chars().any(|c| c.is_control() || c == '\\') {
        return Err(PathError::Bad);
    }
    if s.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(PathError::Bad);
    }
    Ok(Cow::Owned(s))
}

/// Every string made of `depth` of `parts` in a row (with repeats): inputs
/// for tests that check a fast path against its definition.
#[doc(hidden)]
pub fn joinings(parts: &[&str], depth: u32) -> Vec<String> {
    let mut out = vec![String::new()];
    for _ in 0..depth {
        out = out
            .iter()
            .flat_map(|c| parts.iter().map(move |p| format!("{c}{p}")))
            .collect();
    }
    out
}

/// True when `raw` is printable ASCII without `%` or `\\` and has no `.` or
/// `..` segment. Runs on every request: a branch-free pass over the bytes,
/// then a look at each dot.
pub fn is_plain(raw: &[u8]) -> bool {
    // Without an early exit the byte check compiles to vector code.
    let printable = raw.iter().fold(true, |ok, &b| {
        ok & (b.wrapping_sub(0x21) < 0x5e) & (b != b'%') & (b != b'\\')
    });
    if !printable {
        return false;
    }
    // A `.` or `..` segment begins with a dot at the start or after a `/`.
    let mut from = 0;
    while let Some(i) = raw
        .get(from..)
        .and_then(|r| r.iter().position(|&b| b == b'.'))
    {
        let at = from + i;
        let starts_segment = at == 0 || raw.get(at - 1) == Some(&b'/');
        if starts_segment {
            let ends = |j: usize| matches!(raw.get(j), None | Some(b'/'));
            if ends(at + 1) || (raw.get(at + 1) == Some(&b'.') && ends(at + 2)) {
                return false;
            }
        }
        from = at + 1;
    }
    true
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Every request path at which [`locate`] finds something (a file or a folder
/// redirect) for this set of file paths: one set lookup instead of up to five
/// probes, for the rule engine's shadowing check on every request.
pub fn resolvable_paths<'a>(files: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut out = Vec::new();
    for f in files {
        out.push(f.to_owned());
        for ext in [".html", ".htm"] {
            if let Some(stem) = f.strip_suffix(ext) {
                if !stem.ends_with('/') && !stem.is_empty() {
                    // `/x` → `/x.html`, and `/x/` → `/x.html`.
                    out.push(stem.to_owned());
                    out.push(format!("{stem}/"));
                }
            }
        }
        for index in ["index.html", "index.htm"] {
            if let Some(dir) = f.strip_suffix(index) {
                if let Some(bare) = dir.strip_suffix('/') {
                    // `/x/` → `/x/index.html`; `/x` → redirect to `/x/`.
                    out.push(dir.to_owned());
                    if !bare.is_empty() {
                        out.push(bare.to_owned());
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {

    #[test]
    fn plain_check_matches_its_definition() {
        let slow = |raw: &str| {
            raw.bytes()
                .all(|b| b.is_ascii_graphic() && b != b'%' && b != b'\\')
                && !raw.split('/').any(|seg| seg == "." || seg == "..")
        };
        let parts = [
            "", "/", "a", ".", "..", "...", ".a", "a.", "%2e", "\\", " ", "é", "x.css", "~", "\x7f",
        ];
        for c in &joinings(&parts, 4) {
            assert_eq!(super::is_plain(c.as_bytes()), slow(c), "{c:?}");
        }
    }

    use super::*;

    #[test]
    fn resolvable_paths_agree_with_locate() {
        let files = [
            "/index.html",
            "/a.html",
            "/b.htm",
            "/docs/index.html",
            "/docs/x.html",
            "/d2/index.htm",
            "/c",
            "/c.html",
            "/n/.html",
            "/img/logo.png",
            "/deep/a/b/index.html",
        ];
        let set: std::collections::HashSet<String> = resolvable_paths(files.iter().copied())
            .into_iter()
            .collect();
        let has = |p: &str| files.contains(&p);
        let mut probes: Vec<String> = Vec::new();
        for base in [
            "",
            "/",
            "/a",
            "/b",
            "/c",
            "/docs",
            "/d2",
            "/n",
            "/img/logo",
            "/img",
            "/deep",
            "/deep/a",
            "/deep/a/b",
            "/docs/x",
            "/zz",
            "/index",
        ] {
            for suffix in [
                "",
                "/",
                ".html",
                ".htm",
                "/index.html",
                "/index.htm",
                ".png",
            ] {
                probes.push(format!("{base}{suffix}"));
            }
        }
        for p in probes.iter().filter(|p| p.starts_with('/')) {
            let found = !matches!(locate(p, has), Located::NotFound);
            assert_eq!(set.contains(p.as_str()), found, "{p}");
        }
    }

    #[test]
    fn hostile_paths() {
        assert_eq!(decode_path("/a%20b").as_deref(), Ok("/a b"));
        assert_eq!(decode_path("/caf%C3%A9").as_deref(), Ok("/café"));
        for bad in [
            "/../etc/passwd",
            "/a/%2e%2e/b",
            "/a/%2E%2E",
            "/a/./b",
            "/a%00",
            "/a%5cb",
            "/a\\b",
            "/%zz",
            "/%c3",
            "/%ff",
            "a",
            "/x%0a",
        ] {
            assert!(decode_path(bad).is_err(), "{bad}");
        }
    }
}
