//! Static path resolution (spec §10.4, production behaviour).
//!
//! - `/` → `/index.html` (then `/index.htm`);
//! - `/x` → `/x`, `/x.html`, `/x.htm`; a folder (`/x/index.html` or `.htm`)
//!   requested without its slash → 301 to `/x/`, keeping the query;
//! - `/x/` → `/x/index.html`, `/x/index.htm`, then `/x.html`, `/x.htm`.
//!
//! Lookups are exact (no case folding). Configuration files never match because
//! they are not in the deploy's servable file map.

use std::borrow::Cow;
use std::sync::Arc;

use crate::deploys::{LoadedDeploy, ServedFile};

/// What a path resolves to in a deploy.
#[derive(Debug, Clone)]
pub enum Resolved {
    /// Serve this file.
    File(Arc<ServedFile>),
    /// A folder asked for without its slash: redirect to `path + "/"`.
    AddSlash,
    /// Nothing here.
    NotFound,
}

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

/// Resolves a decoded, validated request path in a deploy.
pub fn resolve(deploy: &LoadedDeploy, path: &str) -> Resolved {
    match locate(path, |p| deploy.file(p).is_some()) {
        Located::File(p) => deploy
            .file(&p)
            .cloned()
            .map_or(Resolved::NotFound, Resolved::File),
        Located::AddSlash => Resolved::AddSlash,
        Located::NotFound => Resolved::NotFound,
    }
}

/// True when the edge would serve a file (or a folder redirect) at `path`: what
/// rule shadowing asks.
pub fn exists(deploy: &LoadedDeploy, path: &str) -> bool {
    !matches!(
        locate(path, |p| deploy.file(p).is_some()),
        Located::NotFound
    )
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
    let plain = raw
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'%' && b != b'\\');
    if plain && !raw.split('/').any(|seg| seg == "." || seg == "..") {
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

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledge_core::{DeployId, Digest, SiteName};
    use ledge_store::{FileEntry, Snapshot};

    fn deploy(paths: &[&str]) -> LoadedDeploy {
        let files = paths
            .iter()
            .map(|p| {
                (
                    p.to_string(),
                    FileEntry {
                        digest: Digest::of(p.as_bytes()),
                        size: 1,
                        content_type: "text/html".into(),
                        br: None,
                        gz: None,
                    },
                )
            })
            .collect();
        LoadedDeploy::from_snapshot(Snapshot {
            deploy: DeployId::generate(),
            site: SiteName::parse("s").unwrap(),
            created_at: 0,
            prod: true,
            files,
            config: Default::default(),
            functions: Default::default(),
            diagnostics: vec![],
        })
    }

    fn which(d: &LoadedDeploy, path: &str) -> String {
        match resolve(d, path) {
            Resolved::File(f) => {
                let mut hit = None;
                for p in [
                    "/index.html",
                    "/a.html",
                    "/a.htm",
                    "/a",
                    "/docs/index.html",
                    "/docs/index.htm",
                    "/b.html",
                    "/b/index.html",
                ] {
                    if d.file(p).is_some_and(|x| x.digest == f.digest) {
                        hit = Some(p);
                    }
                }
                hit.unwrap_or("?").to_string()
            }
            Resolved::AddSlash => "301".into(),
            Resolved::NotFound => "404".into(),
        }
    }

    #[test]
    fn resolution_order() {
        let d = deploy(&[
            "/index.html",
            "/a.html",
            "/docs/index.html",
            "/b.html",
            "/b/index.html",
        ]);
        assert_eq!(which(&d, "/"), "/index.html");
        assert_eq!(which(&d, "/a"), "/a.html");
        assert_eq!(which(&d, "/a.html"), "/a.html");
        assert_eq!(which(&d, "/a/"), "/a.html");
        assert_eq!(which(&d, "/docs"), "301");
        assert_eq!(which(&d, "/docs/"), "/docs/index.html");
        assert_eq!(which(&d, "/docs/index.html"), "/docs/index.html");
        // A file beats the folder when both exist.
        assert_eq!(which(&d, "/b"), "/b.html");
        assert_eq!(which(&d, "/b/"), "/b/index.html");
        // Exact case only.
        assert_eq!(which(&d, "/A"), "404");
        assert_eq!(which(&d, "/nope"), "404");
        let htm = deploy(&["/a.htm", "/docs/index.htm"]);
        assert_eq!(which(&htm, "/a"), "/a.htm");
        assert_eq!(which(&htm, "/docs"), "301");
        assert_eq!(which(&htm, "/docs/"), "/docs/index.htm");
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
