//! Redirect `from` path patterns (spec §1.5): literal segments,
//! `:placeholder` segments, a trailing `*` splat, a splat glued to a prefix
//! (`/foo*`) and one whole-segment `*` in the middle. Matching walks the
//! segments once; nothing backtracks.

/// One pattern segment.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Lit(String),
    Param(String),
    /// A whole-segment `*`.
    Splat,
    /// `prefix*` as the last segment.
    Glued(String),
}

/// A compiled path pattern.
#[derive(Debug, Clone)]
pub(crate) struct PathPattern {
    segs: Vec<Seg>,
    splat_at: Option<usize>,
}

/// What a rule is indexed under.
pub(crate) enum IndexKey {
    /// Fully literal: the normalised path.
    Exact(String),
    /// First segment is literal.
    First(String),
    /// Anything else.
    Any,
}

/// Trims one trailing slash (but keeps `/`), so `/a/` and `/a` are the same.
pub(crate) fn trim_slash(p: &str) -> &str {
    if p.len() > 1 {
        p.strip_suffix('/').unwrap_or(p)
    } else {
        p
    }
}

/// Splits a normalised path into segments (`/` → `[""]`).
pub(crate) fn segments(p: &str) -> impl Iterator<Item = &str> {
    // `split('/')` with a byte scan: the char searcher's set-up costs more
    // than the short segments of a path.
    let mut rest = Some(p.strip_prefix('/').unwrap_or(p));
    std::iter::from_fn(move || {
        let s = rest?;
        match s.bytes().position(|b| b == b'/') {
            Some(i) => {
                rest = s.get(i + 1..);
                s.get(..i)
            }
            None => {
                rest = None;
                Some(s)
            }
        }
    })
}

/// Values captured by a successful match.
#[derive(Debug, Default)]
pub(crate) struct Captures {
    pub params: Vec<(String, String)>,
    pub splat: Option<String>,
}

impl PathPattern {
    /// Compiles a path. `Err` explains why the rule can never match (Netlify
    /// keeps such rules but they are dead).
    pub(crate) fn new(path: &str) -> Result<PathPattern, String> {
        if !path.starts_with('/') {
            return Err(format!(
                "source `{path}` is neither a path starting with `/` nor an http(s) URL, so it \
                 never matches"
            ));
        }
        let raw: Vec<&str> = segments(trim_slash(path)).collect();
        let n = raw.len();
        let mut segs = Vec::with_capacity(n);
        let mut splat_at = None;
        for (i, s) in raw.iter().enumerate() {
            let seg = if *s == "*" {
                Seg::Splat
            } else if let Some(prefix) = s.strip_suffix('*').filter(|_| i + 1 == n) {
                if prefix.contains('*') {
                    return Err(format!("`{s}`: only one `*` per segment is supported"));
                }
                Seg::Glued(prefix.to_owned())
            } else if s.contains('*') {
                return Err(format!(
                    "`{s}`: a splat `*` followed by more text in the same segment never matches; \
                     splats go at the end"
                ));
            } else if let Some(name) = s.strip_prefix(':') {
                Seg::Param(name.to_owned())
            } else {
                Seg::Lit((*s).to_owned())
            };
            if matches!(seg, Seg::Splat | Seg::Glued(_)) {
                if splat_at.is_some() {
                    return Err("only one `*` splat per rule is supported".to_owned());
                }
                splat_at = Some(i);
            }
            segs.push(seg);
        }
        Ok(PathPattern { segs, splat_at })
    }

    pub(crate) fn index_key(&self) -> IndexKey {
        if self.splat_at.is_none() && self.segs.iter().all(|s| matches!(s, Seg::Lit(_))) {
            let mut p = String::new();
            for s in &self.segs {
                if let Seg::Lit(l) = s {
                    p.push('/');
                    p.push_str(l);
                }
            }
            return IndexKey::Exact(p);
        }
        match self.segs.first() {
            Some(Seg::Lit(l)) => IndexKey::First(l.clone()),
            _ => IndexKey::Any,
        }
    }

    fn seg_ok(p: &Seg, r: &str, caps: &mut Captures) -> bool {
        match p {
            Seg::Lit(l) => l == r,
            Seg::Param(name) => {
                if r.is_empty() {
                    return false;
                }
                caps.params.push((name.clone(), r.to_owned()));
                true
            }
            Seg::Splat | Seg::Glued(_) => false,
        }
    }

    /// Matches the segments of a normalised request path.
    /// `trailing` says the request path ended in `/` before it was trimmed:
    /// a non-empty splat keeps that slash (`/news/a/` → splat `a/`).
    pub(crate) fn matches(&self, req: &[&str], trailing: bool) -> Option<Captures> {
        let mut caps = Captures::default();
        let p = &self.segs;
        match self.splat_at {
            None => {
                if p.len() != req.len() {
                    return None;
                }
                for (ps, rs) in p.iter().zip(req) {
                    if !Self::seg_ok(ps, rs, &mut caps) {
                        return None;
                    }
                }
            }
            Some(k) => {
                let suffix = &p[k + 1..];
                let glued = match &p[k] {
                    Seg::Glued(prefix) => Some(prefix.as_str()),
                    _ => None,
                };
                let is_tail = suffix.is_empty();
                // A whole-segment splat may cover no segment at all (`/news/*`
                // matches `/news`, `/a/*/b` matches `/a/b`).
                let min_middle = usize::from(glued.is_some());
                if req.len() < k + suffix.len() + min_middle {
                    return None;
                }
                for (ps, rs) in p[..k].iter().zip(req) {
                    if !Self::seg_ok(ps, rs, &mut caps) {
                        return None;
                    }
                }
                let tail_start = req.len() - suffix.len();
                for (ps, rs) in suffix.iter().zip(&req[tail_start..]) {
                    if !Self::seg_ok(ps, rs, &mut caps) {
                        return None;
                    }
                }
                let middle = &req[k..tail_start];
                let splat = match glued {
                    Some(prefix) => {
                        let first = middle.first()?;
                        let rest = first.strip_prefix(prefix)?;
                        let mut s = rest.to_owned();
                        for m in &middle[1..] {
                            s.push('/');
                            s.push_str(m);
                        }
                        match s.strip_prefix('/') {
                            Some(x) => x.to_owned(),
                            None => s,
                        }
                    }
                    None => middle.join("/"),
                };
                let splat = if trailing && !splat.is_empty() && is_tail {
                    format!("{splat}/")
                } else {
                    splat
                };
                caps.splat = Some(splat);
            }
        }
        Some(caps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_split_like_str_split() {
        for p in [
            "", "/", "//", "/a", "a", "/a/", "/a//b", "/ä/ö/", "/a/b/c/d", "x/",
        ] {
            let want: Vec<&str> = p.strip_prefix('/').unwrap_or(p).split('/').collect();
            assert_eq!(segments(p).collect::<Vec<_>>(), want, "{p:?}");
        }
    }

    fn m(pat: &str, path: &str) -> Option<Captures> {
        let segs: Vec<&str> = segments(trim_slash(path)).collect();
        PathPattern::new(pat)
            .ok()?
            .matches(&segs, path.len() > 1 && path.ends_with('/'))
    }

    #[test]
    fn splats() {
        assert_eq!(
            m("/news/*", "/news").and_then(|c| c.splat).as_deref(),
            Some("")
        );
        assert_eq!(
            m("/news/*", "/news/a/b").and_then(|c| c.splat).as_deref(),
            Some("a/b")
        );
        assert!(m("/news/*", "/newsx").is_none());
        assert_eq!(
            m("/foo*", "/foobar").and_then(|c| c.splat).as_deref(),
            Some("bar")
        );
        assert_eq!(
            m("/foo*", "/foo/x").and_then(|c| c.splat).as_deref(),
            Some("x")
        );
        assert_eq!(
            m("/a/*/b", "/a/x/y/b").and_then(|c| c.splat).as_deref(),
            Some("x/y")
        );
        assert!(m("/jobs/*.html", "/jobs/x.html").is_none());
        assert_eq!(m("/*", "/").and_then(|c| c.splat).as_deref(), Some(""));
    }

    #[test]
    fn params_and_slashes() {
        assert!(m("/a/:id", "/a/").is_none());
        assert!(m("/b", "/b/").is_some());
        assert!(m("/b/", "/b").is_some());
        assert!(m("/b", "/b//").is_none());
        assert!(m("/About", "/about").is_none());
        let c = m("/t/:a/:a", "/t/1/2").expect("match");
        assert_eq!(c.params.len(), 2);
    }
}
