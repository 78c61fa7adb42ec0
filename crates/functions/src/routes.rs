//! Which edge functions run for a request, and in which order (spec §4.3).
//!
//! A deploy's functions are declared in `netlify.toml` (`[[edge_functions]]`,
//! in file order) and by their inline `export const config` (alphabetical by
//! function name, after the toml ones). A function declared in the toml whose
//! inline config has a `path` or `pattern` runs at its toml position with the
//! inline ones. Exclusions are merged per function from all its declarations.
//! Routes with `cache: "manual"` go to a second list that runs after the
//! cache lookup.
//!
//! `path` is a URLPattern pathname (the subset Netlify sites use: literal
//! text, `:name` for one segment, `*` for anything), anchored, with an
//! optional trailing slash, case-sensitive; `pattern` is a regular
//! expression, anchored if it is not already. Regular expressions run on the
//! `regex` crate (linear time, size-limited).

use std::collections::BTreeMap;

use crate::types::{FunctionConfig, HeaderCondition};

/// Compiled size limit of one path or pattern.
pub const MAX_PATTERN_BYTES: usize = 1 << 20;

/// One declaration from `netlify.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Declaration {
    /// The function's name (its file name without extension).
    pub function: String,
    /// URLPattern pathnames.
    pub path: Vec<String>,
    /// Regular expressions, in place of `path`.
    pub pattern: Vec<String>,
    /// Paths excluded.
    pub excluded_path: Vec<String>,
    /// Patterns excluded.
    pub excluded_pattern: Vec<String>,
    /// Methods it runs for; empty means all.
    pub method: Vec<String>,
    /// Request-header conditions.
    pub header: Vec<(String, HeaderCondition)>,
    /// `cache = "manual"`.
    pub cache_manual: bool,
}

/// Why a declaration could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("edge function {function:?}: {message}")]
pub struct RouteError {
    /// The function.
    pub function: String,
    /// What is wrong, for people.
    pub message: String,
}

/// A compiled path or pattern.
#[derive(Debug, Clone)]
struct Matcher {
    re: regex::Regex,
    /// Whether it has named groups (the request's `params`): without them
    /// a match needs no captures.
    named: bool,
    /// A `path` without `*` or `:name` (most are), without its trailing
    /// `/`: it matches itself, and itself with one `/` after it, as `re`
    /// does; comparing costs a tenth of running `re`.
    literal: Option<String>,
}

impl Matcher {
    fn is_match(&self, path: &str) -> bool {
        match &self.literal {
            Some(lit) => path
                .strip_prefix(lit.as_str())
                .is_some_and(|rest| rest.is_empty() || rest == "/"),
            None => self.re.is_match(path),
        }
    }

    fn path(function: &str, path: &str) -> Result<Self, RouteError> {
        if !path.starts_with('/') {
            return Err(RouteError {
                function: function.to_owned(),
                message: format!("path {path:?} must start with /"),
            });
        }
        let mut re = String::from("^");
        let mut chars = path.chars().peekable();
        let mut names: Vec<String> = Vec::new();
        while let Some(c) = chars.next() {
            match c {
                '*' => re.push_str("(?:.*)"),
                ':' if chars
                    .peek()
                    .is_some_and(|n| n.is_ascii_alphabetic() || *n == '_') =>
                {
                    let mut name = String::new();
                    while let Some(n) = chars.peek().copied() {
                        if n.is_ascii_alphanumeric() || n == '_' {
                            name.push(n);
                            chars.next();
                        } else {
                            break;
                        }
                    }
                    if names.contains(&name) {
                        re.push_str("(?:[^/]+)");
                    } else {
                        re.push_str(&format!("(?P<{name}>[^/]+)"));
                        names.push(name);
                    }
                }
                c => re.push_str(&regex::escape(c.encode_utf8(&mut [0u8; 4]))),
            }
        }
        let literal = !path.contains('*') && names.is_empty();
        if re.ends_with('/') && re.len() > 2 {
            re.pop();
        }
        re.push_str("/?$");
        let mut m = Self::compile(function, &re)?;
        if literal {
            let base = match path.strip_suffix('/') {
                Some(b) if !b.is_empty() => b,
                _ => path,
            };
            m.literal = Some(base.to_owned());
        }
        Ok(m)
    }

    fn pattern(function: &str, pattern: &str) -> Result<Self, RouteError> {
        let mut re = String::with_capacity(pattern.len() + 2);
        if !pattern.starts_with('^') {
            re.push('^');
        }
        re.push_str(pattern);
        if !pattern.ends_with('$') {
            re.push('$');
        }
        Self::compile(function, &re)
    }

    fn compile(function: &str, re: &str) -> Result<Self, RouteError> {
        regex::RegexBuilder::new(re)
            .size_limit(MAX_PATTERN_BYTES)
            .build()
            .map(|re| Self {
                named: re.capture_names().flatten().next().is_some(),
                re,
                literal: None,
            })
            .map_err(|e| RouteError {
                function: function.to_owned(),
                message: format!("invalid path or pattern: {e}"),
            })
    }
}

/// A header condition, compiled.
#[derive(Debug, Clone)]
enum HeaderMatch {
    Present(bool),
    Matches(regex::Regex),
}

/// One function's route.
#[derive(Debug, Clone)]
pub struct Route {
    /// The function (shared: each request's chain names it).
    pub function: std::sync::Arc<str>,
    /// Runs after the cache lookup (`cache: "manual"`).
    pub cache_manual: bool,
    matchers: Vec<Matcher>,
    excluded: Vec<Matcher>,
    methods: Vec<String>,
    headers: Vec<(String, HeaderMatch)>,
}

/// What a request looks like to the router.
pub struct RouteRequest<'a> {
    /// Method, any case.
    pub method: &'a str,
    /// Path, as received.
    pub path: &'a str,
    /// Header values by lowercase name (several joined with `,`).
    pub header: &'a dyn Fn(&str) -> Option<String>,
}

impl Route {
    /// Whether the function runs for `req`; when it does, the named path
    /// parameters (`context.params`).
    pub fn matches(&self, req: &RouteRequest<'_>) -> Option<Vec<(String, String)>> {
        if !self.methods.is_empty()
            && !self
                .methods
                .iter()
                .any(|m| m.eq_ignore_ascii_case(req.method))
        {
            return None;
        }
        let hit = self.matchers.iter().find(|m| m.is_match(req.path))?;
        if self.excluded.iter().any(|m| m.is_match(req.path)) {
            return None;
        }
        for (name, cond) in &self.headers {
            let value = (req.header)(name);
            let ok = match cond {
                HeaderMatch::Present(want) => value.is_some() == *want,
                HeaderMatch::Matches(re) => value.is_some_and(|v| re.is_match(&v)),
            };
            if !ok {
                return None;
            }
        }
        // The named groups of the first path or pattern that matched.
        let mut params = Vec::new();
        if let Some(caps) = hit.named.then(|| hit.re.captures(req.path)).flatten() {
            for name in hit.re.capture_names().flatten() {
                if let Some(v) = caps.name(name) {
                    params.push((name.to_owned(), v.as_str().to_owned()));
                }
            }
        }
        Some(params)
    }
}

/// A deploy's routes: before the cache, then after it.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    /// Functions run before the cache lookup, in order.
    pub pre_cache: Vec<Route>,
    /// `cache: "manual"` functions, run on a cache miss, in order.
    pub post_cache: Vec<Route>,
}

impl Routes {
    /// The functions that run for `req`, in chain order, with their params.
    pub fn matching<'r, 'q>(
        &'r self,
        req: &'q RouteRequest<'q>,
    ) -> impl Iterator<Item = (&'r Route, Vec<(String, String)>)> + use<'r, 'q> {
        self.pre_cache
            .iter()
            .chain(&self.post_cache)
            .filter_map(move |r| r.matches(req).map(|p| (r, p)))
    }
}

fn compile_route(d: &Declaration, excluded: &Declaration) -> Result<Route, RouteError> {
    let f = d.function.as_str();
    let mut matchers = Vec::new();
    for p in &d.path {
        matchers.push(Matcher::path(f, p)?);
    }
    for p in &d.pattern {
        matchers.push(Matcher::pattern(f, p)?);
    }
    let mut ex = Vec::new();
    for p in &excluded.excluded_path {
        ex.push(Matcher::path(f, p)?);
    }
    for p in &excluded.excluded_pattern {
        ex.push(Matcher::pattern(f, p)?);
    }
    let mut headers = Vec::new();
    for (name, cond) in &d.header {
        let m = match cond {
            HeaderCondition::Present(b) => HeaderMatch::Present(*b),
            HeaderCondition::Matches(re) => HeaderMatch::Matches(
                regex::RegexBuilder::new(re)
                    .size_limit(MAX_PATTERN_BYTES)
                    .build()
                    .map_err(|e| RouteError {
                        function: f.to_owned(),
                        message: format!("header {name:?}: invalid regular expression: {e}"),
                    })?,
            ),
        };
        headers.push((name.to_ascii_lowercase(), m));
    }
    Ok(Route {
        function: d.function.as_str().into(),
        cache_manual: d.cache_manual,
        matchers,
        excluded: ex,
        methods: d.method.iter().map(|m| m.to_ascii_uppercase()).collect(),
        headers,
    })
}

fn from_inline(function: &str, c: &FunctionConfig) -> Declaration {
    Declaration {
        function: function.to_owned(),
        path: c.path.clone(),
        pattern: c.pattern.clone(),
        excluded_path: c.excluded_path.clone(),
        excluded_pattern: c.excluded_pattern.clone(),
        method: c.method.clone(),
        header: c
            .header
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        cache_manual: c.cache.as_deref() == Some("manual"),
    }
}

/// Merges the toml declarations and the inline configs (function name →
/// config) into the chain order of spec §4.3.
pub fn plan(
    toml: &[Declaration],
    inline: &BTreeMap<String, FunctionConfig>,
) -> Result<Routes, RouteError> {
    // Exclusions of a function, from every declaration of it.
    let mut excluded: BTreeMap<&str, Declaration> = BTreeMap::new();
    for d in toml {
        let e = excluded.entry(&d.function).or_default();
        e.excluded_path.extend(d.excluded_path.iter().cloned());
        e.excluded_pattern
            .extend(d.excluded_pattern.iter().cloned());
    }
    for (name, c) in inline {
        let e = excluded.entry(name).or_default();
        e.excluded_path.extend(c.excluded_path.iter().cloned());
        e.excluded_pattern
            .extend(c.excluded_pattern.iter().cloned());
    }
    let none = Declaration::default();
    let mut order: Vec<Declaration> = Vec::new();
    for d in toml {
        match inline.get(&d.function) {
            Some(c) if !c.path.is_empty() || !c.pattern.is_empty() => {
                let mut merged = from_inline(&d.function, c);
                merged.cache_manual |= d.cache_manual;
                order.push(merged);
            }
            _ => order.push(d.clone()),
        }
    }
    for (name, c) in inline {
        let in_toml = toml.iter().any(|d| &d.function == name);
        if !in_toml && (!c.path.is_empty() || !c.pattern.is_empty()) {
            order.push(from_inline(name, c));
        }
    }
    let mut routes = Routes::default();
    for d in &order {
        let ex = excluded.get(d.function.as_str()).unwrap_or(&none);
        let r = compile_route(d, ex)?;
        if r.cache_manual {
            routes.post_cache.push(r);
        } else {
            routes.pre_cache.push(r);
        }
    }
    Ok(routes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A literal path's quick comparison answers as its regular expression.
    #[test]
    fn literal_paths_match_as_their_regex() {
        let paths = [
            "/", "//", "/hello", "/hello/", "/a/b", "/a/b/", "/a.b", "/a+b", "/a:1", "/é",
            "/a%20b", "/a?", "/(x)", "/a//",
        ];
        let requests = [
            "", "/", "//", "///", "/hello", "/hello/", "/hello//", "/Hello", "/hellox", "/hell",
            "/a/b", "/a/b/", "/a/bc", "/a.b", "/axb", "/a+b", "/aab", "/a:1", "/é", "/e", "/a%20b",
            "/a b", "/a?", "/a", "/(x)", "/x", "/a//", "/a/", "/a///", "/hello\n",
        ];
        for path in paths {
            let m = Matcher::path("f", path).expect("a path");
            assert!(m.literal.is_some(), "{path:?} is literal");
            for r in requests {
                assert_eq!(m.is_match(r), m.re.is_match(r), "{path:?} against {r:?}");
            }
        }
        for path in ["/a/*", "/:name", "/a/:x/b"] {
            let m = Matcher::path("f", path).expect("a path");
            assert!(m.literal.is_none(), "{path:?} is not literal");
        }
    }

    fn decl(function: &str, path: &[&str]) -> Declaration {
        Declaration {
            function: function.into(),
            path: path.iter().map(|p| p.to_string()).collect(),
            ..Default::default()
        }
    }

    fn no_headers(_: &str) -> Option<String> {
        None
    }

    fn req<'a>(method: &'a str, path: &'a str) -> RouteRequest<'a> {
        RouteRequest {
            method,
            path,
            header: &no_headers,
        }
    }

    fn one(path: &str) -> Route {
        compile_route(&decl("f", &[path]), &Declaration::default()).unwrap()
    }

    #[test]
    fn url_pattern_paths_as_the_spec_says() {
        let hello = one("/hello");
        assert!(hello.matches(&req("GET", "/hello")).is_some());
        assert!(hello.matches(&req("GET", "/hello/")).is_some());
        assert!(hello.matches(&req("GET", "/hello/x")).is_none());
        assert!(hello.matches(&req("GET", "/HELLO")).is_none());
        let products = one("/products/*");
        assert!(products.matches(&req("GET", "/products/")).is_some());
        assert!(products.matches(&req("GET", "/products/a/b")).is_some());
        assert!(products.matches(&req("GET", "/products")).is_none());
        let css = one("/*.css");
        assert!(css.matches(&req("GET", "/a.css")).is_some());
        assert!(css.matches(&req("GET", "/x/a.css")).is_some());
        assert!(css.matches(&req("GET", "/a.cssx")).is_none());
        let pets = one("/pets/:name");
        assert_eq!(
            pets.matches(&req("GET", "/pets/rex")),
            Some(vec![("name".into(), "rex".into())])
        );
        assert!(pets.matches(&req("GET", "/pets/rex/toys")).is_none());
        // The params are those of the first path that matched.
        let two = compile_route(&decl("f", &["/a", "/b/:id"]), &Declaration::default()).unwrap();
        assert_eq!(two.matches(&req("GET", "/a")), Some(vec![]));
        assert_eq!(
            two.matches(&req("GET", "/b/7")),
            Some(vec![("id".into(), "7".into())])
        );
        // Regex metacharacters in a path are literal.
        let dots = one("/a.b+(c)");
        assert!(dots.matches(&req("GET", "/a.b+(c)")).is_some());
        assert!(dots.matches(&req("GET", "/aXb+(c)")).is_none());
        assert!(Matcher::path("f", "no-slash").is_err());
    }

    #[test]
    fn patterns_methods_headers_and_exclusions() {
        let mut d = decl("f", &[]);
        d.pattern = vec!["/api/v[0-9]+/.*".into()];
        d.method = vec!["post".into()];
        d.header = vec![
            ("X-Flag".into(), HeaderCondition::Present(true)),
            ("Accept".into(), HeaderCondition::Matches("json".into())),
        ];
        let ex = Declaration {
            excluded_path: vec!["/api/v1/public/*".into()],
            ..Default::default()
        };
        let r = compile_route(&d, &ex).unwrap();
        let with = |name: &str| match name {
            "x-flag" => Some("1".to_owned()),
            "accept" => Some("text/html, application/json".to_owned()),
            _ => None,
        };
        let ok = RouteRequest {
            method: "POST",
            path: "/api/v2/x",
            header: &with,
        };
        assert!(r.matches(&ok).is_some());
        assert!(r
            .matches(&RouteRequest {
                method: "GET",
                ..ok
            })
            .is_none());
        assert!(r
            .matches(&RouteRequest {
                path: "/api/v1/public/x",
                ..ok
            })
            .is_none());
        assert!(
            r.matches(&req("POST", "/api/v2/x")).is_none(),
            "headers missing"
        );
        assert!(
            r.matches(&RouteRequest {
                path: "/xx/api/v2/x",
                ..ok
            })
            .is_none(),
            "patterns are anchored"
        );
        let mut bad = decl("g", &[]);
        bad.pattern = vec!["(unclosed".into()];
        assert!(compile_route(&bad, &Declaration::default()).is_err());
    }

    #[test]
    fn order_is_toml_then_inline_alphabetically_with_cached_last() {
        let toml = vec![decl("zeta", &["/*"]), decl("alpha", &["/old"])];
        let mut inline = BTreeMap::new();
        let cfg = |paths: &[&str], cache: Option<&str>| FunctionConfig {
            path: paths.iter().map(|p| p.to_string()).collect(),
            cache: cache.map(str::to_owned),
            ..Default::default()
        };
        // Declared in toml too: its inline path replaces the toml one, in place.
        inline.insert("alpha".to_owned(), cfg(&["/new"], None));
        inline.insert("mid".to_owned(), cfg(&["/*"], None));
        inline.insert("beta".to_owned(), cfg(&["/*"], Some("manual")));
        inline.insert("aaa".to_owned(), cfg(&["/*"], None));
        // Without a path an inline config declares nothing.
        inline.insert("nopath".to_owned(), cfg(&[], None));
        let routes = plan(&toml, &inline).unwrap();
        let names = |rs: &[Route]| {
            rs.iter()
                .map(|r| r.function.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&routes.pre_cache), ["zeta", "alpha", "aaa", "mid"]);
        assert_eq!(names(&routes.post_cache), ["beta"]);
        let on_new: Vec<String> = routes
            .matching(&req("GET", "/new"))
            .map(|(r, _)| r.function.to_string())
            .collect();
        assert_eq!(on_new, ["zeta", "alpha", "aaa", "mid", "beta"]);
        let on_old: Vec<String> = routes
            .matching(&req("GET", "/old"))
            .map(|(r, _)| r.function.to_string())
            .collect();
        assert_eq!(on_old, ["zeta", "aaa", "mid", "beta"]);
    }

    #[test]
    fn exclusions_merge_across_declarations() {
        let mut a = decl("f", &["/*"]);
        a.excluded_path = vec!["/skip-a".into()];
        let mut inline = BTreeMap::new();
        inline.insert(
            "f".to_owned(),
            FunctionConfig {
                excluded_path: vec!["/skip-b".into()],
                ..Default::default()
            },
        );
        let routes = plan(&[a], &inline).unwrap();
        let hits = |p: &str| routes.matching(&req("GET", p)).count();
        assert_eq!(hits("/x"), 1);
        assert_eq!(hits("/skip-a"), 0);
        assert_eq!(hits("/skip-b"), 0);
    }
}
