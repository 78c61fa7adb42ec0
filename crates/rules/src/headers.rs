//! `_headers` parsing and header path matching (spec §3,
//! `@netlify/headers-parser`).
//!
//! A `for` path becomes the same pattern Netlify builds as a regular
//! expression (`^/<parts>/?$`, case-insensitive), but it is run as a small
//! NFA simulation, so matching costs O(path length × pattern length) whatever
//! the pattern.

use crate::diag::{line_no, Diagnostic, SourceFile};
use crate::url::js_trim;
use crate::{MAX_FILE_BYTES, MAX_HEADER_BLOCKS, MAX_LINE_BYTES};

const FILE: SourceFile = SourceFile::Headers;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Lit(char),
    Any,
    NotSlash,
    StarAny,
    StarNotSlash,
    OptSlash,
}

/// A compiled `for` pattern.
#[derive(Debug, Clone)]
pub(crate) struct Glob {
    toks: Vec<Tok>,
}

fn fold(c: char) -> char {
    if c.is_ascii() {
        c.to_ascii_lowercase()
    } else {
        c.to_lowercase().next().unwrap_or(c)
    }
}

impl Glob {
    /// Builds the pattern; the bool says whether regex metacharacters were
    /// found in a wildcard segment (Netlify hands those to `RegExp` raw; Ledge
    /// treats them literally).
    pub(crate) fn new(for_path: &str) -> (Glob, bool) {
        let mut toks = vec![Tok::Lit('/')];
        let mut odd = false;
        let parts = for_path
            .split('/')
            .map(|p| p.trim_end_matches(crate::url::js_space))
            .filter(|p| !p.is_empty());
        for (i, part) in parts.enumerate() {
            if i > 0 {
                toks.push(Tok::Lit('/'));
            }
            if part.starts_with(':') {
                toks.push(Tok::NotSlash);
                toks.push(Tok::StarNotSlash);
            } else if part == "*" {
                if let Some(last) = toks.last_mut() {
                    *last = Tok::OptSlash;
                }
                toks.push(Tok::StarAny);
            } else if part.contains('*') {
                for c in part.chars() {
                    match c {
                        '*' => toks.push(Tok::StarAny),
                        '.' => toks.push(Tok::Any),
                        '\\' | '^' | '$' | '|' | '?' | '+' | '(' | ')' | '[' | ']' | '{' | '}' => {
                            odd = true;
                            toks.push(Tok::Lit(fold(c)));
                        }
                        c => toks.push(Tok::Lit(fold(c))),
                    }
                }
            } else {
                toks.extend(part.chars().map(|c| Tok::Lit(fold(c))));
            }
        }
        toks.push(Tok::OptSlash);
        (Glob { toks }, odd)
    }

    fn close(&self, set: &mut [bool], mut i: usize) {
        while i < set.len() && !set[i] {
            set[i] = true;
            match self.toks.get(i) {
                Some(Tok::StarAny | Tok::StarNotSlash | Tok::OptSlash) => i += 1,
                _ => break,
            }
        }
    }

    /// Does `path` (percent-encoded, as requested) match?
    pub(crate) fn matches(&self, path: &str) -> bool {
        let m = self.toks.len();
        let mut cur = vec![false; m + 1];
        let mut next = vec![false; m + 1];
        self.close(&mut cur, 0);
        for c in path.chars() {
            let c = fold(c);
            next.iter_mut().for_each(|b| *b = false);
            let mut any = false;
            for (i, tok) in self.toks.iter().enumerate() {
                if !cur[i] {
                    continue;
                }
                let (adv, stay) = match *tok {
                    Tok::Lit(x) => (x == c, false),
                    Tok::Any => (true, false),
                    Tok::NotSlash => (c != '/', false),
                    Tok::StarAny => (false, true),
                    Tok::StarNotSlash => (false, c != '/'),
                    Tok::OptSlash => (c == '/', false),
                };
                if adv {
                    self.close(&mut next, i + 1);
                    any = true;
                }
                if stay {
                    self.close(&mut next, i);
                    any = true;
                }
            }
            if !any {
                return false;
            }
            std::mem::swap(&mut cur, &mut next);
        }
        cur[m]
    }
}

/// One header block: a path pattern and the headers it sets.
#[derive(Debug, Clone)]
pub struct HeaderBlock {
    /// The `for` path as written (trimmed).
    pub for_path: String,
    /// Header names and values, in written order.
    pub values: Vec<(String, String)>,
    /// Where it was written.
    pub file: SourceFile,
    /// 1-based line of the path (or `[[headers]]`), when known.
    pub line: Option<u32>,
    pub(crate) glob: Glob,
}

impl HeaderBlock {
    pub(crate) fn new(
        for_path: String,
        values: Vec<(String, String)>,
        file: SourceFile,
        line: Option<u32>,
        diags: &mut Vec<Diagnostic>,
    ) -> HeaderBlock {
        let (glob, odd) = Glob::new(&for_path);
        if odd {
            diags.push(Diagnostic::warning(
                file,
                line,
                format!(
                    "path `{for_path}` mixes `*` with regular-expression characters; Ledge \
                     matches those characters literally (only `*` and `.` are wildcards)"
                ),
            ));
        }
        HeaderBlock {
            for_path,
            values,
            file,
            line,
            glob,
        }
    }

    /// Does this block apply to `path`?
    pub fn matches(&self, path: &str) -> bool {
        self.glob.matches(path)
    }

    pub(crate) fn dedup_key(&self) -> String {
        format!("{:?}|{:?}", self.for_path, self.values)
    }
}

/// `value.split(/\s*,\s*/).join(", ")`.
pub(crate) fn normalize_multi(value: &str) -> String {
    if !value.contains(',') {
        return value.to_owned();
    }
    let parts: Vec<&str> = value.split(',').collect();
    let n = parts.len();
    let mut out = String::with_capacity(value.len() + n);
    for (i, p) in parts.iter().enumerate() {
        let mut p = *p;
        if i > 0 {
            p = p.trim_start_matches(crate::url::js_space);
            out.push_str(", ");
        }
        if i + 1 < n {
            p = p.trim_end_matches(crate::url::js_space);
        }
        out.push_str(p);
    }
    out
}

/// Parses a `_headers` file.
pub(crate) fn parse(text: &str, diags: &mut Vec<Diagnostic>) -> Vec<HeaderBlock> {
    type Block = (String, Option<u32>, Vec<(String, String)>);
    let mut blocks: Vec<Block> = Vec::new();
    if text.len() > MAX_FILE_BYTES {
        diags.push(Diagnostic::error(
            FILE,
            None,
            format!("file is larger than Ledge's limit of {MAX_FILE_BYTES} bytes; it is ignored"),
        ));
        return Vec::new();
    }
    for (index, raw) in text.split('\n').enumerate() {
        let line = js_trim(raw);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let lno = line_no(index);
        if line.len() > MAX_LINE_BYTES {
            diags.push(Diagnostic::error(
                FILE,
                lno,
                format!("line is longer than the limit of {MAX_LINE_BYTES} bytes; it is ignored"),
            ));
            continue;
        }
        if line.starts_with('/') {
            if blocks.len() >= MAX_HEADER_BLOCKS {
                diags.push(Diagnostic::error(
                    FILE,
                    lno,
                    format!("more than {MAX_HEADER_BLOCKS} path blocks; the rest are ignored"),
                ));
                break;
            }
            blocks.push((line.to_owned(), lno, Vec::new()));
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            diags.push(Diagnostic::warning(
                FILE,
                lno,
                format!(
                    "line `{line}` is neither a path (starting with `/`) nor a `Name: value` \
                     header and is ignored"
                ),
            ));
            continue;
        };
        let name = js_trim(name);
        let value = js_trim(value);
        if name.is_empty() {
            diags.push(Diagnostic::error(
                FILE,
                lno,
                format!("could not parse header line `{line}`: Missing header name before `:`"),
            ));
            continue;
        }
        if value.is_empty() {
            diags.push(Diagnostic::error(
                FILE,
                lno,
                format!("could not parse header line `{line}`: Missing header value after `:`"),
            ));
            continue;
        }
        let Some((_, _, values)) = blocks.last_mut() else {
            diags.push(Diagnostic::error(
                FILE,
                lno,
                format!(
                    "Path should come before header \"{name}\": put a path line such as `/*` \
                     above it"
                ),
            ));
            continue;
        };
        match values.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => {
                v.push_str(", ");
                v.push_str(value);
            }
            None => values.push((name.to_owned(), value.to_owned())),
        }
    }
    let mut out = Vec::with_capacity(blocks.len());
    for (path, lno, values) in blocks {
        if values.is_empty() {
            diags.push(Diagnostic::warning(
                FILE,
                lno,
                format!("path `{path}` has no headers below it and is ignored"),
            ));
            continue;
        }
        let values = values
            .into_iter()
            .map(|(n, v)| (n, normalize_multi(&v)))
            .collect();
        out.push(HeaderBlock::new(path, values, FILE, lno, diags));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(p: &str) -> Glob {
        Glob::new(p).0
    }

    #[test]
    fn glob_semantics() {
        assert!(g("/*").matches("/"));
        assert!(g("/*").matches("/a/b"));
        assert!(g("/assets/*").matches("/assets"));
        assert!(g("/assets/*").matches("/assetsX"));
        assert!(g("/assets/*").matches("/ASSETS/x.js"));
        assert!(g("/*.css").matches("/x/y/a.css"));
        assert!(g("/*.css").matches("/a-css"));
        assert!(g("/blog/:slug").matches("/blog/post/"));
        assert!(!g("/blog/:slug").matches("/blog/a/b"));
        assert!(g("/x").matches("/x/"));
        assert!(!g("/x").matches("/x//"));
    }

    #[test]
    fn pathological_glob_is_linear() {
        let pat = format!("/{}", "*a".repeat(200));
        let path = format!("/{}", "a".repeat(8000));
        let (glob, _) = Glob::new(&pat);
        assert!(glob.matches(&path));
        assert!(!glob.matches(&format!("{path}b")));
    }

    #[test]
    fn parse_blocks_and_errors() {
        let mut d = Vec::new();
        let b = parse(
            "X-Early: 1\n/x\n  A: 1\nB: a:b:c\n  A: 2\njunk\n/y\n/z\n  C: 1,2 , 3\n: v\nD:\n",
            &mut d,
        );
        assert_eq!(b.len(), 2);
        assert_eq!(
            b[0].values,
            vec![
                ("A".to_owned(), "1, 2".to_owned()),
                ("B".to_owned(), "a:b:c".to_owned())
            ]
        );
        assert_eq!(b[1].values, vec![("C".to_owned(), "1, 2, 3".to_owned())]);
        let lines: Vec<_> = d.iter().map(|d| (d.line, d.severity)).collect();
        use crate::Severity::*;
        assert_eq!(
            lines,
            vec![
                (Some(1), Error),
                (Some(6), Warning),
                (Some(10), Error),
                (Some(11), Error),
                (Some(7), Warning)
            ]
        );
    }
}
