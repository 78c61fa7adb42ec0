//! The compiled rule set: index, evaluation, explanation and headers.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

/// Hash map for the per-request index probes: keys are the deploy's rule
/// paths, hashed with a per-process seed.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
use std::fmt;

use crate::diag::{Diagnostic, SourceFile};
use crate::headers::HeaderBlock;
use crate::jwt;
use crate::netlify_toml::EdgeFunctionDecl;
use crate::pattern::{segments, trim_slash, IndexKey, PathPattern};
use crate::rule::RedirectRule;
use crate::url::{
    form_encode, has_params, parse_query, parse_target, percent_decode, tail_start, Target,
};
use crate::{MAX_HEADER_BLOCKS, MAX_PATH_BYTES, MAX_RULES, MAX_TARGET_BYTES};

/// The texts of a deploy's rule files; `None` when a file is absent.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sources<'a> {
    /// `_redirects`.
    pub redirects: Option<&'a str>,
    /// `_headers`.
    pub headers: Option<&'a str>,
    /// `netlify.toml`.
    pub netlify_toml: Option<&'a str>,
}

/// Per-site settings used while evaluating.
#[derive(Debug, Clone)]
pub struct SiteSettings {
    /// HS256 secret that `nf_jwt` cookies are verified with (`Role`
    /// conditions). With `None` no role ever matches.
    pub jwt_secret: Option<String>,
    /// Dotted path of the roles claim.
    pub jwt_role_claim: String,
    /// Environment variables available to signed proxies (`signed = "NAME"`):
    /// name → secret.
    pub signing_secrets: Vec<(String, String)>,
    /// Site id, sent as `netlify_id` in `X-Nf-Sign`.
    pub site_id: String,
    /// Primary site URL, sent as `site_url` in `X-Nf-Sign`.
    pub site_url: String,
    /// Deploy context, sent as `deploy_context` in `X-Nf-Sign`.
    pub deploy_context: String,
}

impl Default for SiteSettings {
    fn default() -> Self {
        SiteSettings {
            jwt_secret: None,
            jwt_role_claim: "app_metadata.authorization.roles".to_owned(),
            signing_secrets: Vec::new(),
            site_id: String::new(),
            site_url: String::new(),
            deploy_context: "production".to_owned(),
        }
    }
}

/// What rule evaluation needs to know about a request.
#[derive(Debug, Clone, Copy)]
pub struct RuleRequest<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// `http` or `https`.
    pub scheme: &'a str,
    /// Host, with or without port (the port is ignored).
    pub host: &'a str,
    /// Raw request path, percent-encoded as received (`/a%20b`).
    pub path: &'a str,
    /// Raw query string without `?` (empty when none).
    pub query: &'a str,
    /// The `Cookie` header.
    pub cookie: Option<&'a str>,
    /// The `Accept-Language` header.
    pub accept_language: Option<&'a str>,
    /// GeoIP country (ISO 3166-1 alpha-2); the `nf_country` cookie overrides
    /// it.
    pub country: Option<&'a str>,
    /// A language decided by the caller; when `None` it comes from the
    /// `nf_lang` cookie, then the first `Accept-Language` entry, then `en`.
    pub language: Option<&'a str>,
    /// Current time, unix seconds (JWT expiry, signed proxies).
    pub now_unix: u64,
    /// The site's settings.
    pub site: &'a SiteSettings,
}

impl<'a> RuleRequest<'a> {
    /// A GET request with no cookies, headers or geo data.
    pub fn new(
        scheme: &'a str,
        host: &'a str,
        path: &'a str,
        query: &'a str,
        site: &'a SiteSettings,
    ) -> Self {
        RuleRequest {
            method: "GET",
            scheme,
            host,
            path,
            query,
            cookie: None,
            accept_language: None,
            country: None,
            language: None,
            now_unix: 0,
            site,
        }
    }
}

/// Answers whether the edge would serve a static file for a request path.
///
/// The path is percent-decoded (`/a b`). The implementation applies the
/// edge's own resolution (index files, `.html`, trailing slashes).
pub trait StaticFiles {
    /// Does a static file exist for this request path?
    fn exists(&self, path: &str) -> bool;
}

impl<F: Fn(&str) -> bool> StaticFiles for F {
    fn exists(&self, path: &str) -> bool {
        self(path)
    }
}

/// A deploy without files (every rule applies as if forced).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFiles;

impl StaticFiles for NoFiles {
    fn exists(&self, _path: &str) -> bool {
        false
    }
}

/// Whether a signed proxy could be signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signing {
    /// `X-Nf-Sign` is among the proxy headers.
    Signed,
    /// The rule names an environment variable the site does not define; the
    /// edge should refuse the proxy (502) rather than send it unsigned.
    MissingSecret {
        /// The variable name from the rule.
        env: String,
    },
}

/// The decision for a request (mirrors the oracle's `outcome` types).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No rule applies: serve the static file or the 404 page.
    NoMatch,
    /// A rule matched, but it is not forced and a static file exists for the
    /// request path: serve the file (spec §1.9). The search ends here.
    Static {
        /// Index of the shadowed rule.
        rule: usize,
    },
    /// Answer with a redirect.
    Redirect {
        /// Index of the rule.
        rule: usize,
        /// 3xx status.
        status: u16,
        /// `Location` value (relative for internal targets).
        location: String,
    },
    /// Serve another path of the deploy with this status (200 rewrite, or a
    /// custom status such as 404). Not re-run through the rules.
    Rewrite {
        /// Index of the rule.
        rule: usize,
        /// Response status.
        status: u16,
        /// Whether the rule was forced.
        force: bool,
        /// Target path, percent-encoded.
        path: String,
        /// Query to pass on, without `?`.
        query: Option<String>,
    },
    /// Invoke a serverless function (`/.netlify/functions/...`).
    Function {
        /// Index of the rule.
        rule: usize,
        /// Status of the rule.
        status: u16,
        /// Function path.
        path: String,
        /// The original request's query (spec §1.7 item 4).
        query: Option<String>,
    },
    /// Reverse-proxy to an absolute URL.
    Proxy {
        /// Index of the rule.
        rule: usize,
        /// Status written on the rule (the response status comes from the
        /// upstream).
        status: u16,
        /// Upstream URL with query.
        url: String,
        /// Extra request headers for the upstream (rule headers, then
        /// `X-Nf-Sign`).
        headers: Vec<(String, String)>,
        /// Signing state for signed proxies.
        signing: Option<Signing>,
    },
    /// A `Role` rule matched the path but the visitor lacks the role and no
    /// later rule matched: respond 404.
    Force404,
    /// The `nf_jwt` cookie is not a readable token (or its roles claim is not
    /// a list) while a role gate applies: respond 400.
    BadJwt,
}

impl Outcome {
    /// The index of the deciding rule, if any.
    pub fn rule(&self) -> Option<usize> {
        match self {
            Outcome::Static { rule }
            | Outcome::Redirect { rule, .. }
            | Outcome::Rewrite { rule, .. }
            | Outcome::Function { rule, .. }
            | Outcome::Proxy { rule, .. } => Some(*rule),
            _ => None,
        }
    }
}

#[derive(Debug)]
struct CompiledRule {
    rule: RedirectRule,
    /// `rule.to` parsed once: what a match without substitutions answers.
    target: Target,
    /// For an absolute target, where its path starts in `rule.to`: the
    /// origin is then parsed once and only the rest is substituted.
    tail_at: Option<usize>,
    pattern: Option<PathPattern>,
    /// When `to` ends in its only `:splat`: where substituting the splat
    /// alone starts. A match whose one capture is the splat is then
    /// `to[start..len - 6]` + the splat, with no search and replace.
    splat_start: Option<usize>,
    country: Option<Vec<String>>,
    language: Option<Vec<String>>,
    role: Option<Vec<String>>,
    cookie: Option<Vec<String>>,
    dead: Option<String>,
}

#[derive(Debug, Default)]
struct Bucket {
    exact: FastMap<String, Vec<u32>>,
    first: FastMap<String, Vec<u32>>,
    rest: Vec<u32>,
}

impl Bucket {
    fn add(&mut self, key: IndexKey, i: u32) {
        match key {
            IndexKey::Exact(p) => self.exact.entry(p).or_default().push(i),
            IndexKey::First(s) => self.first.entry(s).or_default().push(i),
            IndexKey::Any => self.rest.push(i),
        }
    }

    fn lists<'a>(&'a self, path: &str, first: &str, out: &mut Lists<'a>) {
        if let Some(v) = self.exact.get(path) {
            out.push(v);
        }
        if let Some(v) = self.first.get(first) {
            out.push(v);
        }
        if !self.rest.is_empty() {
            out.push(&self.rest);
        }
    }
}

/// The candidate lists of one request: at most three from the any-host
/// bucket and three from the request host's bucket, kept on the stack.
struct Lists<'a> {
    items: [&'a [u32]; 6],
    len: usize,
}

impl<'a> Lists<'a> {
    fn new() -> Self {
        Lists {
            items: [&[]; 6],
            len: 0,
        }
    }

    fn push(&mut self, list: &'a [u32]) {
        if let Some(slot) = self.items.get_mut(self.len) {
            *slot = list;
            self.len += 1;
        }
    }
}

/// Merges sorted index lists, yielding each index in increasing order.
struct Merge<'a> {
    lists: Lists<'a>,
}

impl Iterator for Merge<'_> {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        let mut best: Option<(usize, u32)> = None;
        let live = &mut self.lists.items[..self.lists.len];
        for (li, l) in live.iter().enumerate() {
            if let Some(&h) = l.first() {
                if best.is_none_or(|(_, b)| h < b) {
                    best = Some((li, h));
                }
            }
        }
        let (li, h) = best?;
        for l in live.iter_mut() {
            if l.first() == Some(&h) {
                *l = &l[1..];
            }
        }
        let _ = li;
        usize::try_from(h).ok()
    }
}

/// A deploy's compiled rules: redirects, headers and edge function
/// declarations. Immutable, `Send + Sync`; share it in an `Arc`.
#[derive(Debug, Default)]
pub struct RuleSet {
    rules: Vec<CompiledRule>,
    any_host: Bucket,
    hosts: FastMap<String, Bucket>,
    headers: Vec<HeaderBlock>,
    edge_functions: Vec<EdgeFunctionDecl>,
    /// Some rule has a condition or signs its proxy requests: evaluation may
    /// read cookies, the language and the clock.
    conditional: bool,
}

/// Header names the platform controls (spec §3.3); custom values are ignored.
const PLATFORM_HEADERS: &[&str] = &[
    "accept-ranges",
    "age",
    "allow",
    "alt-svc",
    "connection",
    "content-encoding",
    "content-length",
    "content-range",
    "date",
    "location",
    "server",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn lower_list(v: Vec<&str>) -> Vec<String> {
    v.into_iter().map(str::to_ascii_lowercase).collect()
}

impl RuleSet {
    /// Parses and compiles a deploy's rule files. Never fails: every problem
    /// is a [`Diagnostic`], and what Netlify would drop is dropped.
    pub fn compile(sources: &Sources<'_>) -> (RuleSet, Vec<Diagnostic>) {
        let mut diags = Vec::new();
        let mut redirects = match sources.redirects {
            Some(t) => crate::redirects_file::parse(t, &mut diags),
            None => Vec::new(),
        };
        let mut headers = match sources.headers {
            Some(t) => crate::headers::parse(t, &mut diags),
            None => Vec::new(),
        };
        let mut edge_functions = Vec::new();
        if let Some(t) = sources.netlify_toml {
            let cfg = crate::netlify_toml::parse(t, &mut diags);
            redirects.extend(cfg.redirects);
            headers.extend(cfg.headers);
            edge_functions = cfg.edge_functions;
        }
        if redirects.len() > MAX_RULES {
            diags.push(Diagnostic::error(
                SourceFile::NetlifyToml,
                None,
                format!(
                    "more than {MAX_RULES} redirect rules in total; rules after that are ignored"
                ),
            ));
            redirects.truncate(MAX_RULES);
        }
        // Exact duplicates: keep the later copy (merge.js).
        let mut seen = std::collections::HashSet::new();
        let mut keep = vec![true; redirects.len()];
        for (i, r) in redirects.iter().enumerate().rev() {
            if !seen.insert(r.dedup_key()) {
                keep[i] = false;
                diags.push(Diagnostic::warning(
                    r.origin.file,
                    r.origin.line,
                    format!(
                        "rule `{}` is repeated later with identical settings; this copy is ignored",
                        r.from
                    ),
                ));
            }
        }
        let mut k = keep.iter();
        redirects.retain(|_| k.next().copied().unwrap_or(true));
        let mut hk = std::collections::HashSet::new();
        let mut hkeep = vec![true; headers.len()];
        for (i, h) in headers.iter().enumerate().rev() {
            if !hk.insert(h.dedup_key()) {
                hkeep[i] = false;
            }
        }
        let mut k = hkeep.iter();
        headers.retain(|_| k.next().copied().unwrap_or(true));
        if headers.len() > MAX_HEADER_BLOCKS {
            diags.push(Diagnostic::error(
                SourceFile::NetlifyToml,
                None,
                format!("more than {MAX_HEADER_BLOCKS} header blocks; the rest are ignored"),
            ));
            headers.truncate(MAX_HEADER_BLOCKS);
        }
        for h in &headers {
            for (name, _) in &h.values {
                if PLATFORM_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                    diags.push(Diagnostic::warning(
                        h.file,
                        h.line,
                        format!(
                            "header `{name}` is controlled by the platform and is not sent; \
                             remove it (use a redirect rule for Location)"
                        ),
                    ));
                }
            }
        }

        let mut set = RuleSet {
            headers,
            edge_functions,
            ..RuleSet::default()
        };
        for (i, rule) in redirects.into_iter().enumerate() {
            let mut dead = None;
            let pattern = match PathPattern::new(&rule.path) {
                Ok(p) => Some(p),
                Err(e) => {
                    dead = Some(e);
                    None
                }
            };
            let (mut country, mut language, mut role, mut cookie) = (None, None, None, None);
            for (name, v) in &rule.conditions {
                match name.as_str() {
                    "Country" => country = Some(lower_list(v.values())),
                    "Language" => language = Some(lower_list(v.values())),
                    "Role" => role = Some(v.values().into_iter().map(str::to_owned).collect()),
                    "Cookie" => cookie = Some(v.values().into_iter().map(str::to_owned).collect()),
                    other => {
                        dead.get_or_insert_with(|| {
                            format!(
                                "unknown condition `{other}`: the rule never matches (valid \
                                 names: Country, Language, Role, Cookie; no spaces around `=`)"
                            )
                        });
                    }
                }
            }
            if let Some(reason) = &dead {
                diags.push(Diagnostic::warning(
                    rule.origin.file,
                    rule.origin.line,
                    format!("rule `{}`: {reason}", rule.from),
                ));
            }
            if rule.signed.is_some() && !rule.is_proxy() {
                diags.push(Diagnostic::warning(
                    rule.origin.file,
                    rule.origin.line,
                    format!(
                        "rule `{}` is signed but is not a proxy (status 200 to an http(s) URL); \
                         the signature is never sent",
                        rule.from
                    ),
                ));
            }
            set.conditional |= !rule.conditions.is_empty() || rule.signed.is_some();
            let idx = u32::try_from(i).unwrap_or(u32::MAX);
            if let (Some(p), None) = (&pattern, &dead) {
                let key = p.index_key();
                match (&rule.scheme, &rule.host) {
                    (Some(s), Some(h)) => set
                        .hosts
                        .entry(format!("{s}://{h}"))
                        .or_default()
                        .add(key, idx),
                    _ => set.any_host.add(key, idx),
                }
            }
            let mut compiled = CompiledRule {
                target: parse_target(&rule.to),
                tail_at: tail_start(&rule.to),
                splat_start: None,
                rule,
                pattern,
                country,
                language,
                role,
                cookie,
                dead,
            };
            compiled.splat_start = splat_start(&compiled);
            set.rules.push(compiled);
        }
        (set, diags)
    }

    /// The redirect rules in evaluation order (`_redirects` first).
    pub fn rules(&self) -> impl ExactSizeIterator<Item = &RedirectRule> {
        self.rules.iter().map(|c| &c.rule)
    }

    /// Whether evaluation can look at [`RuleRequest::cookie`],
    /// [`RuleRequest::accept_language`], [`RuleRequest::language`] or
    /// [`RuleRequest::now_unix`]. When it is false a caller may leave them
    /// empty (and skip finding them) without changing any outcome.
    pub fn reads_client_details(&self) -> bool {
        self.conditional
    }

    /// The same rules with every splat-only target substituted the general
    /// way, to check the direct path against, and how many rules had it.
    #[cfg(test)]
    pub(crate) fn without_splat_shortcut(mut self) -> (RuleSet, usize) {
        let n = self
            .rules
            .iter_mut()
            .filter_map(|c| c.splat_start.take())
            .count();
        (self, n)
    }

    /// One rule by index (as found in [`Outcome`]).
    pub fn rule(&self, index: usize) -> Option<&RedirectRule> {
        self.rules.get(index).map(|c| &c.rule)
    }

    /// Why a rule can never match (unknown condition, unsupported pattern),
    /// if that is the case.
    pub fn dead_reason(&self, index: usize) -> Option<&str> {
        self.rules.get(index).and_then(|c| c.dead.as_deref())
    }

    /// The header blocks (`_headers` first, then `[[headers]]`).
    pub fn header_blocks(&self) -> &[HeaderBlock] {
        &self.headers
    }

    /// The `[[edge_functions]]` declarations, in file order.
    pub fn edge_functions(&self) -> &[EdgeFunctionDecl] {
        &self.edge_functions
    }

    /// Custom headers for a static response at `path` (raw, percent-encoded
    /// request path): every matching block applies in order, and for the same
    /// name (compared case-insensitively) the later block wins (spec §3.4).
    /// Platform-controlled names and `Basic-Auth` are left out.
    pub fn headers_for(&self, path: &str) -> Vec<(&str, &str)> {
        let mut out: Vec<(&str, &str)> = Vec::new();
        for b in &self.headers {
            if !b.matches(path) {
                continue;
            }
            for (n, v) in &b.values {
                let lower = n.to_ascii_lowercase();
                if lower == "basic-auth" || PLATFORM_HEADERS.contains(&lower.as_str()) {
                    continue;
                }
                match out.iter_mut().find(|(en, _)| en.eq_ignore_ascii_case(n)) {
                    Some(slot) => *slot = (n.as_str(), v.as_str()),
                    None => out.push((n.as_str(), v.as_str())),
                }
            }
        }
        out
    }

    /// The `Basic-Auth` credentials (`user:pass user2:pass2`) protecting
    /// `path`, if a header block sets them.
    pub fn basic_auth_for(&self, path: &str) -> Option<&str> {
        let mut found = None;
        for b in &self.headers {
            if b.matches(path) {
                for (n, v) in &b.values {
                    if n.eq_ignore_ascii_case("basic-auth") {
                        found = Some(v.as_str());
                    }
                }
            }
        }
        found
    }

    /// Decides what to do with a request (spec §1, §10.3 step 7).
    pub fn evaluate(&self, req: &RuleRequest<'_>, files: &impl StaticFiles) -> Outcome {
        self.run(req, files, &mut None)
    }

    /// Like [`RuleSet::evaluate`], and also says why (`ledge rules explain`).
    pub fn explain(&self, req: &RuleRequest<'_>, files: &impl StaticFiles) -> Explanation {
        let mut steps = Vec::new();
        let outcome = self.run(req, files, &mut Some(&mut steps));
        let rule = outcome.rule().and_then(|i| self.rule(i)).map(describe_rule);
        Explanation {
            outcome,
            rule,
            steps,
        }
    }

    fn run(
        &self,
        req: &RuleRequest<'_>,
        files: &impl StaticFiles,
        trace: &mut Option<&mut Vec<String>>,
    ) -> Outcome {
        // Explanations are formatted only when someone asked for them.
        macro_rules! note {
            ($t:expr, $($arg:tt)*) => {
                if let Some(v) = $t.as_deref_mut() {
                    v.push(format!($($arg)*));
                }
            };
        }
        if req.path.len() > MAX_PATH_BYTES {
            note!(
                trace,
                "path longer than {MAX_PATH_BYTES} bytes: rules skipped"
            );
            return Outcome::NoMatch;
        }
        let decoded = percent_decode(req.path).unwrap_or(std::borrow::Cow::Borrowed(req.path));
        let norm = trim_slash(&decoded);
        let trailing = norm.len() < decoded.len();
        let segs: smallvec::SmallVec<[&str; 16]> = segments(norm).collect();
        let first = segs.first().copied().unwrap_or("");
        let mut lists = Lists::new();
        self.any_host.lists(norm, first, &mut lists);
        if !self.hosts.is_empty() {
            let host = req.host.rsplit_once(':').map_or(req.host, |(h, p)| {
                if p.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(']') {
                    h
                } else {
                    req.host
                }
            });
            let key = format!(
                "{}://{}",
                req.scheme.to_ascii_lowercase(),
                host.to_ascii_lowercase()
            );
            if let Some(b) = self.hosts.get(&key) {
                b.lists(norm, first, &mut lists);
            }
        }
        // Cookies, country and language are parsed only if a candidate rule
        // has conditions.
        let ctx_cell = std::cell::OnceCell::new();
        let ctx = || ctx_cell.get_or_init(|| Ctx::new(req));
        let mut query: Option<Vec<crate::url::QueryPair>> = None;
        let mut role_failures: Vec<usize> = Vec::new();
        let mut matched = None;
        for idx in (Merge { lists }) {
            let Some(c) = self.rules.get(idx) else {
                continue;
            };
            let Some(pattern) = &c.pattern else { continue };
            let Some(caps) = pattern.matches(&segs, trailing) else {
                continue;
            };
            let mut qcaps: Vec<(String, String)> = Vec::new();
            if !c.rule.query.is_empty() {
                let pairs = query.get_or_insert_with(|| parse_query(req.query));
                let mut ok = true;
                for (k, v) in &c.rule.query {
                    let got = pairs
                        .iter()
                        .rev()
                        .find(|p| &p.key == k)
                        .and_then(|p| p.value.as_deref());
                    match (got, v.strip_prefix(':')) {
                        (Some(g), Some(name)) => qcaps.push((name.to_owned(), form_encode(g))),
                        (Some(g), None) if g == v => {}
                        _ => {
                            ok = false;
                            break;
                        }
                    }
                }
                if !ok {
                    note!(
                        trace,
                        "{}: path matches, query does not",
                        describe_at(&c.rule, idx)
                    );
                    continue;
                }
            }
            if let Some(list) = &c.country {
                let ok = ctx()
                    .country
                    .as_deref()
                    .is_some_and(|cc| list.iter().any(|v| v.eq_ignore_ascii_case(cc)));
                if !ok {
                    note!(
                        trace,
                        "{}: Country condition not met (country {:?})",
                        describe_at(&c.rule, idx),
                        ctx().country
                    );
                    continue;
                }
            }
            if let Some(list) = &c.language {
                let lang = ctx().language.to_ascii_lowercase();
                let ok = list.iter().any(|v| {
                    lang == *v
                        || (lang.len() > v.len()
                            && lang.starts_with(v.as_str())
                            && lang.as_bytes().get(v.len()) == Some(&b'-'))
                });
                if !ok {
                    note!(
                        trace,
                        "{}: Language condition not met (language {:?})",
                        describe_at(&c.rule, idx),
                        ctx().language
                    );
                    continue;
                }
            }
            if let Some(list) = &c.cookie {
                let ok = list
                    .iter()
                    .any(|n| ctx().cookie(n).is_some_and(|v| !v.is_empty()));
                if !ok {
                    note!(
                        trace,
                        "{}: Cookie condition not met",
                        describe_at(&c.rule, idx)
                    );
                    continue;
                }
            }
            if let Some(list) = &c.role {
                let roles = ctx().roles(req);
                if !list.iter().any(|r| roles.iter().any(|x| x == r)) {
                    note!(trace, "{}: Role condition not met (no valid nf_jwt with one of {:?}); later matches are role-gated", describe_at(&c.rule, idx), list);
                    role_failures.push(idx);
                    continue;
                }
            }
            // Substitution (spec §1.6): first capture of a name wins, names are
            // replaced in byte order. Without captures the target is the one
            // parsed at compile time.
            if caps.params.is_empty() && caps.splat.is_none() && qcaps.is_empty() {
                note!(trace, "{} matches", describe_at(&c.rule, idx));
                matched = Some((idx, None));
                break;
            }
            // The common proxy and rewrite shape, `/x/* …/:splat`.
            if let (Some(start), Some(splat), true, true) = (
                c.splat_start,
                &caps.splat,
                caps.params.is_empty(),
                qcaps.is_empty(),
            ) {
                let lit = c
                    .rule
                    .to
                    .get(start..c.rule.to.len() - SPLAT.len())
                    .unwrap_or("");
                if start + lit.len() + splat.len() > MAX_TARGET_BYTES {
                    note!(trace, "{}: target longer than {MAX_TARGET_BYTES} bytes after substitution; rule skipped", describe_at(&c.rule, idx));
                    continue;
                }
                let mut to = String::with_capacity(lit.len() + splat.len());
                to.push_str(lit);
                to.push_str(splat);
                note!(trace, "{} matches", describe_at(&c.rule, idx));
                matched = Some((idx, Some((to, start > 0))));
                break;
            }
            let mut vars: BTreeMap<String, String> = BTreeMap::new();
            for (n, v) in caps.params {
                vars.entry(n).or_insert(v);
            }
            if let Some(s) = caps.splat {
                vars.entry("splat".to_owned()).or_insert(s);
            }
            for (n, v) in qcaps {
                vars.entry(n).or_insert(v);
            }
            let prefix = substitution_start(c, vars.keys().map(String::as_str));
            let mut to = c.rule.to.get(prefix..).unwrap_or("").to_owned();
            let mut too_long = false;
            let mut pat = String::new();
            for (n, v) in &vars {
                pat.clear();
                pat.push(':');
                pat.push_str(n);
                if to.contains(&pat) {
                    to = to.replace(&pat, v);
                    if prefix + to.len() > MAX_TARGET_BYTES {
                        too_long = true;
                        break;
                    }
                }
            }
            if too_long {
                note!(trace, "{}: target longer than {MAX_TARGET_BYTES} bytes after substitution; rule skipped", describe_at(&c.rule, idx));
                continue;
            }
            note!(trace, "{} matches", describe_at(&c.rule, idx));
            matched = Some((idx, Some((to, prefix > 0))));
            break;
        }
        let Some((idx, to)) = matched else {
            if role_failures.is_empty() {
                note!(trace, "no rule matches");
                return Outcome::NoMatch;
            }
            note!(
                trace,
                "a Role rule matched the path but no later rule did: 404"
            );
            return Outcome::Force404;
        };
        let Some(c) = self.rules.get(idx) else {
            return Outcome::NoMatch;
        };
        let rule = &c.rule;
        let mut gated = false;
        if !role_failures.is_empty() {
            if let Some(tok) = ctx().cookie("nf_jwt").filter(|t| !t.is_empty()) {
                let Some(payload) = jwt::decode_unverified(&tok) else {
                    note!(trace, "nf_jwt cookie is not a readable token: 400");
                    return Outcome::BadJwt;
                };
                let exp = match payload.get("exp") {
                    Some(serde_json::Value::Number(n)) => n.as_f64().unwrap_or(0.0),
                    Some(serde_json::Value::String(s)) => s.trim().parse().unwrap_or(0.0),
                    _ => 0.0,
                };
                #[expect(clippy::cast_precision_loss, reason = "unix seconds fit in f64")]
                let fresh = exp >= req.now_unix as f64;
                if fresh {
                    match jwt::claim(&payload, &req.site.jwt_role_claim) {
                        None | Some(serde_json::Value::Array(_)) => {}
                        Some(v) if js_falsy(v) => {}
                        Some(_) => {
                            note!(trace, "nf_jwt roles claim is not a list: 400");
                            return Outcome::BadJwt;
                        }
                    }
                }
            }
            gated = true;
            note!(
                trace,
                "role gate failed: static files are not served for this request"
            );
        }
        let force = rule.force;
        if !gated && !force && files.exists(&decoded) {
            note!(trace, "a static file exists for {decoded} and the rule is not forced: the file is served (rule shadowed)");
            return Outcome::Static { rule: idx };
        }
        let status = rule.effective_status();
        // A substituted tail keeps the rule's own origin (parsed once).
        let (target, own_origin): (Cow<'_, Target>, bool) = match to {
            Some((tail, true)) => (Cow::Owned(parse_target(&tail)), true),
            Some((to, false)) => (Cow::Owned(parse_target(&to)), false),
            None => (Cow::Borrowed(&c.target), true),
        };
        let origin = if own_origin {
            c.target.origin.as_deref()
        } else {
            target.origin.as_deref()
        };
        let query = match &target.query {
            Some(q) if has_params(q) => Some(q.as_str()),
            _ if !gated && has_params(req.query) => Some(req.query),
            _ => None,
        };
        let redirect = (300..400).contains(&status);
        let mut path_q = target.path.clone();
        if let Some(q) = &query {
            path_q.push('?');
            path_q.push_str(q);
        }
        if let Some(origin) = origin {
            if redirect {
                let mut location = concat(origin, &path_q);
                if let Some(f) = &target.fragment {
                    location.push('#');
                    location.push_str(f);
                }
                return Outcome::Redirect {
                    rule: idx,
                    status,
                    location,
                };
            }
            let mut headers = rule.headers.clone();
            let signing = rule.signed.as_ref().map(|env| {
                match req.site.signing_secrets.iter().find(|(n, _)| n == env) {
                    Some((_, secret)) => {
                        let claims = jwt::SignClaims {
                            site_id: &req.site.site_id,
                            site_url: &req.site.site_url,
                            deploy_context: &req.site.deploy_context,
                        };
                        headers.push((
                            "X-Nf-Sign".to_owned(),
                            jwt::sign_proxy(secret.as_bytes(), &claims, req.now_unix),
                        ));
                        Signing::Signed
                    }
                    None => Signing::MissingSecret { env: env.clone() },
                }
            });
            return Outcome::Proxy {
                rule: idx,
                status,
                url: concat(origin, &path_q),
                headers,
                signing,
            };
        }
        if redirect {
            let mut location = path_q;
            if let Some(f) = &target.fragment {
                location.push('#');
                location.push_str(f);
            }
            return Outcome::Redirect {
                rule: idx,
                status,
                location,
            };
        }
        if target.path.starts_with("/.netlify/functions")
            || target.path.starts_with("/.netlify/builders")
        {
            return Outcome::Function {
                rule: idx,
                status,
                path: target.path.clone(),
                query: if gated || !has_params(req.query) {
                    None
                } else {
                    Some(req.query.to_owned())
                },
            };
        }
        Outcome::Rewrite {
            rule: idx,
            status,
            force,
            path: target.path.clone(),
            query: query.map(str::to_owned),
        }
    }
}

/// The placeholder a splat fills.
const SPLAT: &str = ":splat";

/// Where substituting `names` into a rule's `to` starts: after the origin of
/// an absolute target when no name can occur in its authority (replacing in
/// the whole string would give the same), else at 0.
fn substitution_start<'n>(c: &CompiledRule, mut names: impl Iterator<Item = &'n str>) -> usize {
    match c.tail_at {
        Some(at) if c.target.origin.is_some() => {
            let authority = c.rule.to.get(..at).unwrap_or("");
            let named = |n: &str| {
                authority
                    .match_indices(':')
                    .any(|(i, _)| authority[i + 1..].starts_with(n))
            };
            if names.any(named) {
                0
            } else {
                at
            }
        }
        _ => 0,
    }
}

/// [`CompiledRule::splat_start`]: when `to` ends in its only `:splat`, where
/// substituting the splat alone starts.
fn splat_start(c: &CompiledRule) -> Option<usize> {
    let to = &c.rule.to;
    (to.ends_with(SPLAT) && to.matches(SPLAT).count() == 1)
        .then(|| substitution_start(c, std::iter::once("splat")))
}

fn js_falsy(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Null => true,
        serde_json::Value::Bool(b) => !b,
        serde_json::Value::Number(n) => n.as_f64() == Some(0.0),
        serde_json::Value::String(s) => s.is_empty(),
        _ => false,
    }
}

fn describe_rule(r: &RedirectRule) -> String {
    let status = match r.status {
        Some(s) => s.to_string(),
        None => "301 (default)".to_owned(),
    };
    let mut s = format!(
        "{} {} {}{}",
        r.from,
        r.to,
        status,
        if r.force { "!" } else { "" }
    );
    for (k, v) in &r.query {
        s.push_str(&format!(" [query {k}={v}]"));
    }
    for (k, v) in &r.conditions {
        s.push_str(&format!(" {k}={}", v.values().join(",")));
    }
    s
}

fn describe_at(r: &RedirectRule, idx: usize) -> String {
    format!("rule #{idx} ({}) `{}`", r.origin, describe_rule(r))
}

/// Request-derived condition inputs, computed once per evaluation.
struct Ctx {
    cookies: Vec<(String, String)>,
    country: Option<String>,
    language: String,
    roles: std::cell::OnceCell<Vec<String>>,
}

impl Ctx {
    fn new(req: &RuleRequest<'_>) -> Ctx {
        let mut cookies: Vec<(String, String)> = Vec::new();
        if let Some(h) = req.cookie {
            for part in h.split(';').take(crate::MAX_COOKIES) {
                let Some((k, v)) = part.split_once('=') else {
                    continue;
                };
                let k = k.trim();
                let mut v = v.trim();
                if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
                    v = &v[1..v.len() - 1];
                }
                if !k.is_empty() && !cookies.iter().any(|(ek, _)| ek == k) {
                    let v = percent_decode(v).map_or_else(|| v.to_owned(), |d| d.into_owned());
                    cookies.push((k.to_owned(), v));
                }
            }
        }
        let find = |n: &str| cookies.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let country = find("nf_country")
            .filter(|c| !c.is_empty())
            .or_else(|| req.country.map(str::to_owned));
        let language = match req.language {
            Some(l) => l.to_owned(),
            None => match find("nf_lang") {
                Some(l) => l,
                None => match req.accept_language.map(str::trim).filter(|s| !s.is_empty()) {
                    Some(al) => {
                        let first = al.split(',').next().unwrap_or("");
                        first.split(';').next().unwrap_or("").trim().to_owned()
                    }
                    None => "en".to_owned(),
                },
            },
        };
        Ctx {
            cookies,
            country,
            language,
            roles: std::cell::OnceCell::new(),
        }
    }

    fn cookie(&self, name: &str) -> Option<String> {
        self.cookies
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    fn roles(&self, req: &RuleRequest<'_>) -> &[String] {
        self.roles.get_or_init(|| {
            let (Some(secret), Some(tok)) = (&req.site.jwt_secret, self.cookie("nf_jwt")) else {
                return Vec::new();
            };
            match jwt::verify(&tok, secret.as_bytes(), req.now_unix) {
                Some(p) => jwt::roles(&p, &req.site.jwt_role_claim),
                None => Vec::new(),
            }
        })
    }
}

/// The result of [`RuleSet::explain`]: the outcome plus the reasoning.
#[derive(Debug, Clone)]
pub struct Explanation {
    /// The decision, as [`RuleSet::evaluate`] returns it.
    pub outcome: Outcome,
    /// The deciding rule, written back in `_redirects` syntax.
    pub rule: Option<String>,
    /// What was considered, in order.
    pub steps: Vec<String>,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.steps {
            writeln!(f, "  - {s}")?;
        }
        match &self.outcome {
            Outcome::NoMatch => write!(
                f,
                "=> no rule applies; the static file or the 404 page is served"
            ),
            Outcome::Static { rule } => write!(
                f,
                "=> static file served; rule #{rule} is shadowed (add `!` to force it)"
            ),
            Outcome::Redirect {
                rule,
                status,
                location,
            } => write!(f, "=> rule #{rule}: {status} redirect to {location}"),
            Outcome::Rewrite {
                rule,
                status,
                path,
                query,
                ..
            } => {
                write!(f, "=> rule #{rule}: serve {path}")?;
                if let Some(q) = query {
                    write!(f, "?{q}")?;
                }
                write!(f, " with status {status}")
            }
            Outcome::Function { rule, path, .. } => {
                write!(f, "=> rule #{rule}: invoke function {path}")
            }
            Outcome::Proxy {
                rule, url, signing, ..
            } => {
                write!(f, "=> rule #{rule}: proxy to {url}")?;
                match signing {
                    Some(Signing::Signed) => write!(f, " (signed with X-Nf-Sign)"),
                    Some(Signing::MissingSecret { env }) => write!(
                        f,
                        " (signing secret {env} is not set: the proxy is refused)"
                    ),
                    None => Ok(()),
                }
            }
            Outcome::Force404 => write!(f, "=> 404: role required"),
            Outcome::BadJwt => write!(f, "=> 400: unreadable nf_jwt cookie"),
        }
    }
}

/// `a` followed by `b` (per request: cheaper than `format!`).
fn concat(a: &str, b: &str) -> String {
    let mut s = String::with_capacity(a.len() + b.len());
    s.push_str(a);
    s.push_str(b);
    s
}
