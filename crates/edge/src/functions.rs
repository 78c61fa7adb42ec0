//! Edge functions in the pipeline (phase 4): which of a deploy's functions
//! run for a request, in which order, and what their outcomes do.
//!
//! - At deploy time [`build`] bundles `netlify/edge-functions/` (through
//!   `ledge_functions::deploy`), checks every `[[edge_functions]]` of
//!   `netlify.toml` names a function that exists and that every path, pattern
//!   and `onError` compiles; any problem fails the deploy.
//! - When a deploy is loaded, [`DeployFunctions::load`] plans its routes
//!   (spec §4.3 order) and keeps one [`Bundle`] per function.
//! - Per request, a [`Chain`] runs the matching functions in order. Each
//!   function's `context.next()` runs the rest of the chain, and after the
//!   last function the rest of the pipeline (rules, proxy, static files), in
//!   process. A `Response` ends the chain; `undefined` passes on; a `URL`
//!   rewrites (same site only) to the rest of the pipeline without running
//!   functions again; a failure applies the function's `onError`.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Response, StatusCode};
use http_body_util::BodyExt;
use ledge_functions::routes::{self, Declaration, RouteRequest, Routes};
use ledge_functions::{
    Bundle, BundleSource, DeployInfo, ErrorKind, FixedContext, FunctionConfig, Host, HostError,
    HostRequest, HttpResponse, InvocationOutcome, InvocationRequest, RequestContext, Runner,
    ServerInfo, SiteInfo,
};
use ledge_rules::RuleSet;
use ledge_store::{DeployDiagnostic, SnapshotFunction};
use ledge_telemetry::{FunctionRecord, Outcome as FnOutcome};

use crate::body::Body;
use crate::pipeline::{Edge, RequestCtx};
use crate::rescue::{rescue, EdgeError};

/// Where function sources live in a site folder and a deploy.
pub const FUNCTIONS_DIR: &str = "netlify/edge-functions";

/// Redirects `fetch()` follows before giving up.
const MAX_FETCH_REDIRECTS: usize = 10;

/// What happens when a function fails (`config.onError`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnError {
    /// The platform's error page (502).
    Fail,
    /// Continue as if the function had returned `undefined`.
    Bypass,
    /// Serve this same-site path instead, without running functions for it.
    Rewrite(String),
}

impl OnError {
    fn parse(v: Option<&str>) -> Result<OnError, String> {
        match v {
            None | Some("fail") => Ok(OnError::Fail),
            Some("bypass") => Ok(OnError::Bypass),
            Some(p) if p.starts_with('/') && !p.starts_with("//") => {
                Ok(OnError::Rewrite(p.to_owned()))
            }
            Some(other) => Err(format!(
                "onError must be \"fail\", \"bypass\" or a path starting with /, not {other:?}"
            )),
        }
    }
}

/// One loaded function.
struct Loaded {
    bundle: Bundle,
    on_error: OnError,
}

/// A deploy's functions, ready to run.
pub struct DeployFunctions {
    routes: Routes,
    functions: HashMap<String, Loaded, foldhash::fast::RandomState>,
    /// The fixed part of the functions' `context` last built for a request
    /// to this deploy ([`DeployFunctions::fixed_context`]); read by every
    /// request to it, on any thread, without a lock.
    fixed: arc_swap::ArcSwapOption<FixedContext>,
}

impl std::fmt::Debug for DeployFunctions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeployFunctions")
            .field("functions", &self.functions.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The `[[edge_functions]]` of a rule set, as the router takes them.
pub fn declarations(rules: &RuleSet) -> Vec<Declaration> {
    rules
        .edge_functions()
        .iter()
        .map(|d| Declaration {
            function: d.function.clone(),
            path: d.path.iter().cloned().collect(),
            pattern: d.pattern.iter().cloned().collect(),
            excluded_path: d.excluded_path.clone(),
            excluded_pattern: d.excluded_pattern.clone(),
            method: d.method.clone(),
            header: d
                .header
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        ledge_rules::HeaderCondition::Present(b) => {
                            ledge_functions::HeaderCondition::Present(*b)
                        }
                        ledge_rules::HeaderCondition::Matches(s) => {
                            ledge_functions::HeaderCondition::Matches(s.clone())
                        }
                    };
                    (k.clone(), v)
                })
                .collect(),
            cache_manual: d.cache_manual,
        })
        .collect()
}

fn config_of(f: &SnapshotFunction) -> Result<Option<FunctionConfig>, String> {
    match &f.config {
        None => Ok(None),
        Some(v) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|e| format!("invalid config: {e}")),
    }
}

/// Plans routes and checks `onError` for built functions; every problem.
fn plan(
    functions: &[SnapshotFunction],
    rules: &RuleSet,
) -> Result<(Routes, HashMap<String, OnError>), Vec<String>> {
    let mut problems = Vec::new();
    let mut inline = BTreeMap::new();
    let mut on_error = HashMap::new();
    for f in functions {
        match config_of(f) {
            Ok(c) => {
                match OnError::parse(c.as_ref().and_then(|c| c.on_error.as_deref())) {
                    Ok(o) => {
                        on_error.insert(f.name.clone(), o);
                    }
                    Err(e) => problems.push(format!("{FUNCTIONS_DIR}/{}: {e}", f.entry)),
                }
                if let Some(c) = c {
                    inline.insert(f.name.clone(), c);
                }
            }
            Err(e) => problems.push(format!("{FUNCTIONS_DIR}/{}: {e}", f.entry)),
        }
    }
    let toml = declarations(rules);
    for d in &toml {
        if !functions.iter().any(|f| f.name == d.function) {
            problems.push(format!(
                "netlify.toml: [[edge_functions]] names function {:?}, which {FUNCTIONS_DIR}/ does not have",
                d.function
            ));
        }
    }
    let routes = match routes::plan(&toml, &inline) {
        Ok(r) => r,
        Err(e) => {
            problems.push(e.to_string());
            Routes::default()
        }
    };
    if problems.is_empty() {
        Ok((routes, on_error))
    } else {
        Err(problems)
    }
}

/// Deploy-time processing of edge functions (the node's `FunctionBuild`):
/// `config` holds the deploy's configuration texts by path (`/netlify.toml`),
/// `sources` the files under `netlify/edge-functions/` by relative path.
pub fn build(
    config: &BTreeMap<String, String>,
    sources: &BTreeMap<String, String>,
) -> Result<Vec<SnapshotFunction>, Vec<DeployDiagnostic>> {
    let error = |file: String, line: Option<u32>, message: String| DeployDiagnostic {
        file,
        line,
        severity: "error".into(),
        message,
    };
    let built = ledge_functions::deploy::build_functions(
        sources,
        ledge_functions::deploy::MAX_BUNDLE_BYTES,
    )
    .map_err(|diags| {
        diags
            .into_iter()
            .map(|d| {
                error(
                    format!("{FUNCTIONS_DIR}/{}", d.path),
                    Some(d.line),
                    d.message,
                )
            })
            .collect::<Vec<_>>()
    })?;
    let functions: Vec<SnapshotFunction> = built
        .into_iter()
        .map(|b| SnapshotFunction {
            name: b.name,
            entry: b.entry,
            modules: b.modules,
            config: b.config.and_then(|c| serde_json::to_value(c).ok()),
        })
        .collect();
    let text = |p: &str| config.get(p).map(String::as_str);
    let (rules, _) = RuleSet::compile(&ledge_rules::Sources {
        redirects: text("/_redirects"),
        headers: text("/_headers"),
        netlify_toml: text("/netlify.toml"),
    });
    plan(&functions, &rules).map_err(|problems| {
        problems
            .into_iter()
            .map(|p| match p.split_once(": ") {
                Some((file, msg)) if !file.contains(' ') => {
                    error(file.to_owned(), None, msg.to_owned())
                }
                _ => error("netlify.toml".into(), None, p),
            })
            .collect::<Vec<_>>()
    })?;
    Ok(functions)
}

/// The hidden first argument that makes the `ledge` binary a deploy's
/// edge function build ([`build_child_main`]).
pub const BUILD_CHILD: &str = "function-build";

/// How long [`build_in_child`] lets a build run by default. Bundling a
/// large deploy takes a few seconds; a source that sends the parser into
/// exponential work would take hours.
pub const BUILD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Stack of the child's build thread. Deep but legitimate nesting fits;
/// deeper ends the child, not the node.
const BUILD_STACK_BYTES: usize = 64 << 20;

/// The child's memory (`RLIMIT_DATA`). Parsing the largest bundle allowed
/// (20 MiB of source) fits; the parser's exponential cases grow by about
/// 200 MB a second and stop here, long before the deadline.
const BUILD_MEMORY_BYTES: u64 = 2 << 30;

/// What the child reads ...
#[derive(serde::Deserialize)]
struct BuildInput {
    config: BTreeMap<String, String>,
    sources: BTreeMap<String, String>,
}

/// ... as the node writes it, without copying the sources.
#[derive(serde::Serialize)]
struct BuildInputRef<'a> {
    config: &'a BTreeMap<String, String>,
    sources: &'a BTreeMap<String, String>,
}

type BuildOutput = Result<Vec<SnapshotFunction>, Vec<DeployDiagnostic>>;

/// [`build`] in a child process (`exe` run with [`BUILD_CHILD`]; JSON over
/// its stdin and stdout). Tenant sources go through a TypeScript parser
/// that some inputs send past any stack (a few KiB of nested type
/// arguments: the process aborts) or into exponential time (a few hundred
/// bytes): either ends the child, and the deploy fails with a message,
/// while the node goes on serving. The child is killed after `timeout`.
pub fn build_in_child(
    exe: &std::path::Path,
    timeout: std::time::Duration,
    config: &BTreeMap<String, String>,
    sources: &BTreeMap<String, String>,
) -> BuildOutput {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};

    let fail = |message: String| {
        Err(vec![DeployDiagnostic {
            file: FUNCTIONS_DIR.to_owned(),
            line: None,
            severity: "error".into(),
            message,
        }])
    };
    let input = match serde_json::to_vec(&BuildInputRef { config, sources }) {
        Ok(v) => v,
        Err(e) => return fail(format!("edge function build could not start: {e}")),
    };
    let mut child = match Command::new(exe)
        .arg(BUILD_CHILD)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return fail(format!("edge function build could not start: {e}")),
    };
    // Written and read on threads of their own, so that neither a full pipe
    // nor a child that never reads holds up the deadline below.
    let writer = child.stdin.take().map(|mut stdin| {
        std::thread::spawn(move || {
            // A child that died early closes the pipe: its status says why.
            let _ = stdin.write_all(&input);
        })
    });
    let reader = child.stdout.take().map(|mut stdout| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = stdout.read_to_end(&mut out);
            out
        })
    });
    // Why a child died, when it did: Rust's last words (bounded).
    let why = child.stderr.take().map(|stderr| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = stderr.take(4096).read_to_end(&mut out);
            String::from_utf8_lossy(&out).into_owned()
        })
    });
    let deadline = std::time::Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if std::time::Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(std::time::Duration::from_millis(5)),
            Err(e) => return fail(format!("edge function build was lost: {e}")),
        }
    };
    if let Some(w) = writer {
        let _ = w.join();
    }
    let out = reader.and_then(|r| r.join().ok()).unwrap_or_default();
    let why = why.and_then(|r| r.join().ok()).unwrap_or_default();
    match status {
        None => fail(format!(
            "edge functions took longer than {} s to parse and bundle, so the build was stopped \
             (a source with deeply nested `<`, brackets or parentheses can do this)",
            timeout.as_secs()
        )),
        Some(status) if !status.success() => fail(if why.contains("overflowed its stack") {
            "edge functions could not be parsed: the parser ran out of stack \
             (a source nests `<`, brackets or parentheses too deeply)"
                .to_owned()
        } else if why.contains("memory allocation") || why.contains("out of memory") {
            format!(
                "edge functions could not be parsed: the parser needed more than {} MiB \
                 (a source with deeply nested `<`, brackets or parentheses can do this)",
                BUILD_MEMORY_BYTES >> 20
            )
        } else {
            format!("edge function build failed ({status})")
        }),
        Some(_) => match serde_json::from_slice::<BuildOutput>(&out) {
            Ok(output) => output,
            Err(e) => fail(format!("edge function build gave no answer: {e}")),
        },
    }
}

/// The child side of [`build_in_child`]: reads the deploy's texts from
/// stdin, runs [`build`] on a thread with a deep stack, writes the outcome
/// to stdout.
pub fn build_child_main() -> std::process::ExitCode {
    use std::io::{Read, Write};
    let mut input = Vec::new();
    if std::io::stdin().read_to_end(&mut input).is_err() {
        return std::process::ExitCode::FAILURE;
    }
    let Ok(input) = serde_json::from_slice::<BuildInput>(&input) else {
        return std::process::ExitCode::FAILURE;
    };
    // After reading the input (which is bounded by the deploy's limits).
    if ledge_functions::worker::sandbox::limit_memory(BUILD_MEMORY_BYTES).is_err() {
        return std::process::ExitCode::FAILURE;
    }
    // The build needs nothing but its pipes: the edge function workers'
    // sandbox (no files, no network, a system call filter) applies as well.
    let sandbox = ledge_functions::worker::sandbox::apply();
    for e in &sandbox.errors {
        eprintln!("function-build sandbox: {e}");
    }
    let built = std::thread::Builder::new()
        .name("function-build".into())
        .stack_size(BUILD_STACK_BYTES)
        .spawn(move || build(&input.config, &input.sources))
        .ok()
        .and_then(|t| t.join().ok());
    let Some(output) = built else {
        return std::process::ExitCode::FAILURE;
    };
    let Ok(json) = serde_json::to_vec(&output) else {
        return std::process::ExitCode::FAILURE;
    };
    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_all(&json)
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return std::process::ExitCode::FAILURE;
    }
    std::process::ExitCode::SUCCESS
}

impl DeployFunctions {
    /// The functions of a loaded deploy; `None` when it has none that can run.
    pub fn load(
        deploy: &str,
        functions: &[SnapshotFunction],
        rules: &RuleSet,
    ) -> Option<Arc<DeployFunctions>> {
        if functions.is_empty() {
            return None;
        }
        let (routes, on_error) = match plan(functions, rules) {
            Ok(p) => p,
            Err(problems) => {
                tracing::warn!(
                    deploy,
                    ?problems,
                    "edge functions of this deploy do not load"
                );
                return None;
            }
        };
        if routes.pre_cache.is_empty() && routes.post_cache.is_empty() {
            return None;
        }
        let mut loaded = HashMap::default();
        for f in functions {
            let source = BundleSource {
                id: format!("{deploy}/{}", f.name),
                entry: f.entry.clone(),
                modules: f.modules.clone(),
            };
            match Bundle::new(source) {
                Ok(bundle) => {
                    let on_error = on_error.get(&f.name).cloned().unwrap_or(OnError::Fail);
                    loaded.insert(f.name.clone(), Loaded { bundle, on_error });
                }
                Err(e) => {
                    tracing::warn!(deploy, function = %f.name, error = %e, "edge function does not load");
                }
            }
        }
        Some(Arc::new(DeployFunctions {
            routes,
            functions: loaded,
            fixed: arc_swap::ArcSwapOption::empty(),
        }))
    }

    /// The site, deploy and server the functions' `context` shows for a
    /// request to this deploy through `scheme://host`: built once, and
    /// shared by the requests that come the same way (the worker is then
    /// sent it once, not with every request).
    pub(crate) fn fixed_context(
        &self,
        target: &crate::routes::RouteTarget,
        scheme: &str,
        host: &str,
        region: &str,
    ) -> Arc<FixedContext> {
        let fits = |f: &FixedContext| {
            f.site.id == target.site.as_str()
                && f.deploy.id == target.deploy.as_str()
                && f.deploy.published == target.production
                && f.server.region == region
                && f.site
                    .url
                    .strip_prefix(scheme)
                    .and_then(|u| u.strip_prefix("://"))
                    == Some(host)
        };
        if let Some(f) = self.fixed.load_full().filter(|f| fits(f)) {
            return f;
        }
        // (`to_owned` of the text, not `to_string`, which goes through the
        // formatting machinery.)
        let site = target.site.as_str().to_owned();
        let f = Arc::new(FixedContext {
            site: SiteInfo {
                name: site.clone(),
                id: site,
                url: [scheme, "://", host].concat(),
            },
            deploy: DeployInfo {
                id: target.deploy.as_str().to_owned(),
                published: target.production,
                context: if target.production {
                    "production".into()
                } else {
                    "deploy-preview".into()
                },
            },
            server: ServerInfo {
                region: region.to_owned(),
            },
            account: Default::default(),
        });
        self.fixed.store(Some(Arc::clone(&f)));
        f
    }

    /// The functions that run for a request, in chain order, with their
    /// `context.params`.
    pub fn chain(&self, method: &Method, path: &str, headers: &HeaderMap) -> Vec<Step> {
        let header = |name: &str| -> Option<String> {
            let mut values = headers.get_all(name).iter().filter_map(|v| v.to_str().ok());
            let first = values.next()?;
            let mut joined = first.to_owned();
            for v in values {
                joined.push(',');
                joined.push_str(v);
            }
            Some(joined)
        };
        let req = RouteRequest {
            method: method.as_str(),
            path,
            header: &header,
        };
        self.routes
            .matching(&req)
            .filter(|(r, _)| self.functions.contains_key(&*r.function))
            .map(|(r, params)| Step {
                function: r.function.clone(),
                params: params.into_iter().collect(),
                cache_manual: r.cache_manual,
            })
            .collect()
    }
}

/// One function of a request's chain.
#[derive(Debug, Clone)]
pub struct Step {
    /// Function name (shared with its route).
    pub function: Arc<str>,
    /// Named groups of its matched path.
    pub params: BTreeMap<String, String>,
    /// Runs after the cache lookup (`cache: "manual"`).
    pub cache_manual: bool,
}

/// A request as it moves along the chain: the client's own text and
/// headers until a function changes them.
#[derive(Debug, Clone)]
pub(crate) struct ChainRequest<'r> {
    pub method: Method,
    /// Path and query (`/a?b`).
    pub target: Cow<'r, str>,
    pub headers: Cow<'r, HeaderMap>,
    pub body: Bytes,
}

impl ChainRequest<'_> {
    fn parts(&self) -> Result<http::request::Parts, EdgeError> {
        let mut req = http::Request::builder()
            .method(self.method.clone())
            .uri(&*self.target)
            .body(())
            .map_err(|_| EdgeError::BadRequest("an edge function passed on a malformed request"))?;
        *req.headers_mut() = self.headers.clone().into_owned();
        Ok(req.into_parts().0)
    }
}

/// The functions of one request, run in order.
pub(crate) struct Chain<'e> {
    pub edge: &'e Edge,
    pub runner: &'e dyn Runner,
    pub functions: Arc<DeployFunctions>,
    pub steps: Vec<Step>,
    /// The request's context (read-only here; every later phase gets a copy).
    pub ctx: &'e RequestCtx,
    /// What functions see as `context`, without `params` (shared by the
    /// steps whose path has none).
    pub context: Arc<RequestContext>,
    /// What the cache did for the `cache: "manual"` part of the chain.
    pub cache_status: std::sync::Mutex<ledge_telemetry::CacheStatus>,
    /// Who produced the response last: `None` a function, or the phase
    /// (and rule) of the rest of the pipeline, for the access record.
    pub answered: std::sync::Mutex<Option<(ledge_telemetry::Phase, Option<usize>)>>,
}

impl<'e> Chain<'e> {
    /// Runs step `i` (or, past the last, the rest of the pipeline).
    pub fn run<'s>(&'s self, i: usize, req: ChainRequest<'s>) -> BoxFuture<'s, Response<Body>> {
        let starts_cached = self.steps.get(i).is_some_and(|s| s.cache_manual)
            && (i == 0 || !self.steps[i - 1].cache_manual);
        match &self.edge.cache {
            // Boxed on its own: a future holds room for its largest state,
            // and a step's future stays small to move.
            Some(cache) if starts_cached => Box::pin(self.cached(cache, i, req)),
            _ => self.step(i, req),
        }
    }

    /// Phases 5 and 6: the cache around the `cache: "manual"` functions
    /// (spec §5.6). A hit answers without invoking them; a miss runs them and
    /// stores what they answer when its headers allow; a stale entry that
    /// needs a refresh is refreshed by this request.
    async fn cached(
        &self,
        cache: &ledge_cache::Cache,
        i: usize,
        req: ChainRequest<'_>,
    ) -> Response<Body> {
        use ledge_telemetry::CacheStatus as Status;
        let Some(target) = &self.ctx.target else {
            return self.step(i, req).await;
        };
        let deploy = target.deploy.to_string();
        let host = format!("{}#functions", self.ctx.host);
        let (path, query) = match req.target.split_once('?') {
            Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
            None => (req.target.clone().into_owned(), None),
        };
        let lookup = cache
            .lookup(&ledge_cache::CacheRequest {
                site: target.site.as_str(),
                deploy: Some(&deploy),
                method: &req.method,
                host: &host,
                path: &path,
                query: query.as_deref(),
                headers: &req.headers,
                country: self.ctx.country.as_deref(),
            })
            .await;
        let set = |s: Status| {
            if let Ok(mut c) = self.cache_status.lock() {
                *c = s;
            }
        };
        let fill = match lookup {
            ledge_cache::Lookup::Hit(r) => {
                set(Status::Hit);
                return cached_body(r.into_response());
            }
            ledge_cache::Lookup::Stale {
                response,
                refresh: None,
            } => {
                set(Status::Stale);
                return cached_body(response.into_response());
            }
            ledge_cache::Lookup::Stale {
                refresh: Some(fill),
                ..
            }
            | ledge_cache::Lookup::Miss(fill) => fill,
            ledge_cache::Lookup::Pass(status) => {
                set(Status::Bypass);
                let mut resp = self.step(i, req).await;
                cache.pass_headers(resp.headers_mut(), &status);
                return resp;
            }
        };
        set(Status::Miss);
        let resp = self.step(i, req).await;
        let (parts, body) = resp.into_parts();
        let stored = fill
            .store(
                parts,
                body,
                ledge_cache::ResponseSource::EdgeFunction { manual: true },
                &ledge_cache::RuleVary::default(),
            )
            .await;
        cached_body(stored)
    }

    /// Invokes step `i` (or, past the last, the rest of the pipeline).
    fn step<'s>(&'s self, i: usize, req: ChainRequest<'s>) -> BoxFuture<'s, Response<Body>> {
        Box::pin(async move {
            let Some(step) = self.steps.get(i) else {
                // Boxed on its own (the whole rest of the pipeline), so
                // that each step's future stays small to move.
                return Box::pin(self.rest(&req)).await;
            };
            let Some(loaded) = self.functions.functions.get(&*step.function) else {
                return self.run(i + 1, req).await;
            };
            let invocation = InvocationRequest {
                method: req.method.as_str().to_owned(),
                url: [self.ctx.scheme, "://", &self.ctx.host, &req.target].concat(),
                headers: header_pairs(&req.headers),
                body: req.body.to_vec(),
                context: if step.params.is_empty() {
                    Arc::clone(&self.context)
                } else {
                    Arc::new(RequestContext {
                        params: step.params.clone(),
                        ..(*self.context).clone()
                    })
                },
            };
            let host = StepHost {
                chain: self,
                next: i + 1,
                kept: std::sync::Mutex::new(Vec::new()),
            };
            let started = SystemTime::now();
            let inv = self.runner.invoke(&loaded.bundle, &invocation, &host).await;
            self.record(step, &req, started, &inv);
            let mut resp = match inv.outcome {
                InvocationOutcome::Response(mut r) => {
                    let kept = match r.body_handle.take() {
                        None => None,
                        Some(h) => match host.take_unread(h) {
                            Some(body) => Some(body),
                            None => {
                                return rescue(&EdgeError::FunctionFailed {
                                    function: step.function.to_string(),
                                    why: "it answered with a response body it had already read"
                                        .into(),
                                })
                            }
                        },
                    };
                    if let Ok(mut a) = self.answered.lock() {
                        *a = None;
                    }
                    return to_response(r, kept);
                }
                InvocationOutcome::PassThrough => self.run(i + 1, req).await,
                InvocationOutcome::Rewrite { url } => match self.same_site(&url) {
                    Some(target) => {
                        Box::pin(self.rest(&ChainRequest {
                            target: target.into(),
                            ..req
                        }))
                        .await
                    }
                    None => rescue(&EdgeError::FunctionFailed {
                        function: step.function.to_string(),
                        why: "it rewrote to another site (use fetch for that)".into(),
                    }),
                },
                InvocationOutcome::Error(e) => {
                    tracing::debug!(function = %step.function, kind = ?e.kind, error = %e.message, "edge function failed");
                    match &loaded.on_error {
                        OnError::Fail if e.kind == ErrorKind::Overloaded => {
                            return rescue(&EdgeError::FunctionsOverloaded)
                        }
                        OnError::Fail => {
                            return rescue(&EdgeError::FunctionFailed {
                                function: step.function.to_string(),
                                why: failure(e.kind).into(),
                            })
                        }
                        OnError::Bypass => self.run(i + 1, req).await,
                        OnError::Rewrite(path) => {
                            Box::pin(self.rest(&ChainRequest {
                                target: path.as_str().into(),
                                ..req
                            }))
                            .await
                        }
                    }
                }
            };
            for c in &inv.set_cookies {
                if let Ok(v) = HeaderValue::from_str(c) {
                    resp.headers_mut().append(header::SET_COOKIE, v);
                }
            }
            resp
        })
    }

    /// The rest of the pipeline after the functions: rules, proxy, static.
    async fn rest(&self, req: &ChainRequest<'_>) -> Response<Body> {
        let parts = match req.parts() {
            Ok(p) => p,
            Err(e) => return rescue(&e),
        };
        let mut ctx = self.ctx.clone();
        // Static files answer unless a later phase says otherwise.
        ctx.answered_by = ledge_telemetry::Phase::Static;
        let body = http_body_util::Full::new(req.body.clone());
        let resp = match self
            .edge
            .after_functions(&mut ctx, &parts, body, None)
            .await
        {
            Ok(r) => r,
            Err(e) => rescue(&e),
        };
        if let Ok(mut a) = self.answered.lock() {
            *a = Some((ctx.answered_by, ctx.rule));
        }
        resp
    }

    /// The path and query of `url` when it is on this request's site.
    fn same_site(&self, url: &str) -> Option<String> {
        let base = url::Url::parse(&format!("{}://{}/", self.ctx.scheme, self.ctx.host)).ok()?;
        let u = base.join(url).ok()?;
        let host = u.host_str()?;
        let same = ledge_core::normalize_host(host).is_some_and(|h| h == self.ctx.host)
            && matches!(u.scheme(), "http" | "https");
        if !same {
            return None;
        }
        Some(match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_owned(),
        })
    }

    fn record(
        &self,
        step: &Step,
        req: &ChainRequest<'_>,
        started: SystemTime,
        inv: &ledge_functions::Invocation,
    ) {
        let Some(t) = &self.edge.telemetry else {
            return;
        };
        let (outcome, status_code) = match &inv.outcome {
            InvocationOutcome::Response(r) => (FnOutcome::Ok, Some(r.status)),
            InvocationOutcome::Rewrite { .. } | InvocationOutcome::PassThrough => {
                (FnOutcome::Ok, None)
            }
            InvocationOutcome::Error(e) => (
                match e.kind {
                    ErrorKind::CpuLimit => FnOutcome::CpuLimit,
                    ErrorKind::MemoryLimit => FnOutcome::MemoryLimit,
                    ErrorKind::WallTimeout => FnOutcome::Timeout,
                    _ => FnOutcome::Error,
                },
                None,
            ),
        };
        let path = req.target.split('?').next().unwrap_or("").to_owned();
        t.record_function(FunctionRecord {
            timestamp: started,
            request_id: self.ctx.id.to_str().unwrap_or("").to_owned(),
            site: self.context.fixed.site.name.clone(),
            deploy: self.context.fixed.deploy.id.clone(),
            function_name: step.function.to_string(),
            duration: inv.telemetry.duration,
            cpu_time: inv.telemetry.cpu_time,
            outcome,
            status_code,
            method: req.method.as_str().to_owned(),
            path,
            console: inv
                .telemetry
                .console
                .iter()
                .map(|c| ledge_telemetry::ConsoleLine {
                    level: c.level.clone(),
                    message: c.message.clone(),
                })
                .collect(),
        });
    }
}

fn cached_body(r: Response<ledge_cache::CacheBody>) -> Response<Body> {
    r.map(|b| Body::Stream(b.boxed_unsync()))
}

/// What a visitor is told about a failed function (no tenant details).
fn failure(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::CpuLimit => "it used more CPU time than allowed",
        ErrorKind::MemoryLimit => "it used more memory than allowed",
        ErrorKind::StackOverflow => "it recursed too deeply",
        ErrorKind::WallTimeout => "it did not answer in time",
        ErrorKind::Module | ErrorKind::NoHandler => "its code could not be loaded",
        ErrorKind::InvalidReturn => {
            "it returned something that is not a Response, URL or undefined"
        }
        ErrorKind::NoResponse => "it never produced a response",
        ErrorKind::Uncaught => "it threw an error",
        ErrorKind::WorkerLost => "the process running it stopped",
        _ => "the function runtime failed",
    }
}

/// `context.next()` and `fetch()` for one step of the chain.
struct StepHost<'c, 'e> {
    chain: &'c Chain<'e>,
    next: usize,
    /// The response bodies of its calls, by handle: a function reads one
    /// only if it looks at it, and hands an unread one back for nothing.
    /// Dropped with the step (an upstream connection then closes).
    kept: std::sync::Mutex<Vec<Option<Kept>>>,
}

/// Most bytes one read of a kept body hands to a function.
const READ_CHUNK: usize = 256 << 10;

/// A response body kept on the node for a function.
struct Kept {
    body: Body,
    /// Its `Content-Length`, sent again if it goes back unread.
    length: Option<HeaderValue>,
    /// The unread end of a frame larger than [`READ_CHUNK`].
    rest: Bytes,
    /// Some of it was read.
    touched: bool,
}

impl StepHost<'_, '_> {
    fn lock_kept(&self) -> std::sync::MutexGuard<'_, Vec<Option<Kept>>> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A response for the function, its body kept here (unless it is known
    /// to be empty).
    fn keep(&self, resp: Response<Body>) -> HttpResponse {
        let (parts, body) = resp.into_parts();
        let mut headers = header_pairs(&parts.headers);
        // The request id is set by the headers phase once the whole response
        // is known (static files carry an empty slot for it until then).
        headers.retain(|(k, _)| k != crate::pipeline::X_LEDGE_ID.as_str());
        let empty = http_body::Body::is_end_stream(&body)
            || http_body::Body::size_hint(&body).exact() == Some(0);
        let body_handle = if empty {
            None
        } else {
            let mut kept = self.lock_kept();
            let h = u32::try_from(kept.len()).ok();
            if h.is_some() {
                kept.push(Some(Kept {
                    body,
                    length: parts.headers.get(header::CONTENT_LENGTH).cloned(),
                    rest: Bytes::new(),
                    touched: false,
                }));
            }
            h
        };
        HttpResponse {
            status: parts.status.as_u16(),
            headers,
            body: Vec::new(),
            body_handle,
        }
    }

    /// A kept body the function handed back, with its length; `None` if
    /// there is no such body or the function read some of it.
    fn take_unread(&self, handle: u32) -> Option<(Body, Option<HeaderValue>)> {
        let k = self.lock_kept().get_mut(handle as usize)?.take()?;
        (!k.touched).then_some((k.body, k.length))
    }
}

/// Request headers `context.next()` drops unless `sendConditionalRequest`.
const CONDITIONAL: [HeaderName; 4] = [
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_MATCH,
    header::IF_UNMODIFIED_SINCE,
];

#[async_trait::async_trait]
impl Host for StepHost<'_, '_> {
    async fn next(&self, request: HostRequest) -> Result<HttpResponse, HostError> {
        let chain = self.chain;
        let target = chain.same_site(&request.url).ok_or_else(|| {
            HostError::new("context.next() takes a request for this site; use fetch() for others")
        })?;
        let method = Method::from_bytes(request.method.as_bytes())
            .map_err(|_| HostError::new("invalid method"))?;
        let mut headers = pairs_to_headers(&request.headers);
        if !request.send_conditional_request {
            for h in CONDITIONAL {
                headers.remove(h);
            }
        }
        // A function that reads the body must get the resource itself, not
        // a gzip or brotli variant of it (the node does not re-compress
        // what a function answers).
        headers.remove(header::ACCEPT_ENCODING);
        let req = ChainRequest {
            method,
            target: target.into(),
            headers: Cow::Owned(headers),
            body: Bytes::from(request.body),
        };
        let resp = chain.run(self.next, req).await;
        Ok(self.keep(resp))
    }

    async fn fetch(&self, request: HostRequest) -> Result<HttpResponse, HostError> {
        let resp = fetch(self.chain.edge, request).await?;
        Ok(self.keep(resp))
    }

    async fn read_body(&self, handle: u32) -> Result<Option<Vec<u8>>, HostError> {
        // Taken out while it is read: a second read of the same body at the
        // same time finds nothing, and a read cut short by its timeout
        // loses the body.
        let slot = handle as usize;
        let mut k = self
            .lock_kept()
            .get_mut(slot)
            .and_then(Option::take)
            .ok_or_else(|| HostError::new("the body is gone or being read"))?;
        k.touched = true;
        let chunk = loop {
            if !k.rest.is_empty() {
                let n = k.rest.len().min(READ_CHUNK);
                break Ok(Some(k.rest.split_to(n)));
            }
            match k.body.frame().await {
                None => break Ok(None),
                Some(Err(e)) => break Err(HostError::new(format!("reading the body failed: {e}"))),
                Some(Ok(f)) => {
                    if let Ok(data) = f.into_data() {
                        k.rest = data;
                    }
                }
            }
        };
        if let Some(s) = self.lock_kept().get_mut(slot) {
            *s = Some(k);
        }
        chunk.map(|c| c.map(|b| b.to_vec()))
    }
}

/// `fetch()` from a function: the node's origin client under its outbound
/// policy, redirects followed (each hop checked again; credentials dropped
/// when the origin changes).
async fn fetch(edge: &Edge, request: HostRequest) -> Result<Response<Body>, HostError> {
    let origin = &edge.origin;
    let mut url = reqwest::Url::parse(&request.url)
        .map_err(|e| HostError::new(format!("invalid URL {:?}: {e}", request.url)))?;
    let mut method = reqwest::Method::from_bytes(request.method.as_bytes())
        .map_err(|_| HostError::new("invalid method"))?;
    let mut headers = crate::proxy::strip_hop_by_hop(&pairs_to_headers(&request.headers));
    headers.remove(header::HOST);
    let mut body = Bytes::from(request.body);
    for _ in 0..=MAX_FETCH_REDIRECTS {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(HostError::new(format!(
                "fetch supports http and https URLs, not {}",
                url.scheme()
            )));
        }
        origin
            .check_url(&url)
            .map_err(|e| HostError::new(format!("fetch to {url} is not allowed: {e}")))?;
        let mut rb = origin
            .client
            .request(method.clone(), url.clone())
            .headers(headers.clone())
            .timeout(origin.response_timeout);
        if !body.is_empty() {
            rb = rb.body(body.clone());
        }
        let resp = rb
            .send()
            .await
            .map_err(|e| HostError::new(format!("fetch to {url} failed: {}", error_chain(&e))))?;
        let status = resp.status();
        if status.is_redirection() {
            if let Some(loc) = resp
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
            {
                let next = url
                    .join(loc)
                    .map_err(|e| HostError::new(format!("bad redirect location {loc:?}: {e}")))?;
                if next.origin() != url.origin() {
                    headers.remove(header::AUTHORIZATION);
                    headers.remove(header::COOKIE);
                    headers.remove(header::PROXY_AUTHORIZATION);
                }
                let keep = matches!(status.as_u16(), 307 | 308);
                if !keep && method != reqwest::Method::HEAD {
                    method = reqwest::Method::GET;
                    body = Bytes::new();
                    headers.remove(header::CONTENT_TYPE);
                    headers.remove(header::CONTENT_LENGTH);
                }
                url = next;
                continue;
            }
        }
        let headers = crate::proxy::strip_hop_by_hop(resp.headers());
        let body = http::Response::<reqwest::Body>::from(resp)
            .into_body()
            .map_err(|e| std::io::Error::other(error_chain(&e)));
        let mut out = Response::new(Body::Stream(body.boxed_unsync()));
        *out.status_mut() =
            StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        *out.headers_mut() = headers;
        return Ok(out);
    }
    Err(HostError::new(format!(
        "fetch followed {MAX_FETCH_REDIRECTS} redirects without reaching a response"
    )))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

fn header_pairs(h: &HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .map(|(k, v)| (k.as_str().to_owned(), lossy_text(v.as_bytes())))
        .collect()
}

/// `bytes` as text, invalid UTF-8 replaced. Nearly every header value is
/// ASCII: `str::from_utf8` checks it a word at a time, where
/// `String::from_utf8_lossy` walks it byte by byte (3 instructions a byte
/// here), so that is only the fallback.
fn lossy_text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

fn pairs_to_headers(pairs: &[(String, String)]) -> HeaderMap {
    let mut h = HeaderMap::with_capacity(pairs.len());
    for (k, v) in pairs {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            h.append(n, v);
        }
    }
    h
}

/// A function's `Response` as the edge sends it (with `kept`, the unread
/// body of one of its host calls and that body's own length, sent as it
/// comes): framing headers are the edge's own business.
fn to_response(r: HttpResponse, kept: Option<(Body, Option<HeaderValue>)>) -> Response<Body> {
    let (body, length) = match kept {
        Some((body, length)) => (body, length),
        None => (Body::full(r.body), None),
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK);
    let h = resp.headers_mut();
    h.reserve(r.headers.len());
    for (k, v) in r.headers {
        let Ok(name) = HeaderName::from_bytes(k.as_bytes()) else {
            continue;
        };
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || name == header::CONNECTION
        {
            continue;
        }
        // The text's own buffer becomes the value (checked as `from_str`
        // checks it), not a copy of it.
        if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(v.into_bytes())) {
            h.append(name, v);
        }
    }
    // A body that knows its size frames itself; a stream keeps the length
    // its origin declared.
    if let Some(n) = length.filter(|_| http_body::Body::size_hint(resp.body()).exact().is_none()) {
        resp.headers_mut().insert(header::CONTENT_LENGTH, n);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixed_context_is_shared_while_requests_come_the_same_way() {
        let functions = DeployFunctions {
            routes: Routes::default(),
            functions: HashMap::default(),
            fixed: arc_swap::ArcSwapOption::empty(),
        };
        let target = |site: &str, deploy: &str, production: bool| crate::routes::RouteTarget {
            site: site.parse().expect("a site name"),
            deploy: deploy.parse().expect("a deploy id"),
            production,
            settings: Default::default(),
            rule_settings: Default::default(),
        };
        let d1 = "0123456789abcdef01234567";
        let d2 = "76543210fedcba9876543210";
        let t = target("blog", d1, true);
        let first = functions.fixed_context(&t, "https", "blog.example", "eu-1");
        assert_eq!(first.site.id, "blog");
        assert_eq!(first.site.name, "blog");
        assert_eq!(first.site.url, "https://blog.example");
        assert_eq!(first.deploy.id, d1);
        assert_eq!(first.deploy.context, "production");
        assert!(first.deploy.published);
        assert_eq!(first.server.region, "eu-1");
        let again = functions.fixed_context(&t, "https", "blog.example", "eu-1");
        assert!(
            Arc::ptr_eq(&first, &again),
            "the same request path shares it"
        );
        // Anything that shows in it makes a new one.
        let other_ways = [
            (target("blog", d1, true), "http", "blog.example", "eu-1"),
            (
                target("blog", d1, true),
                "https",
                "www.blog.example",
                "eu-1",
            ),
            (target("blog", d1, false), "https", "blog.example", "eu-1"),
            (target("blog", d2, true), "https", "blog.example", "eu-1"),
            (target("news", d1, true), "https", "blog.example", "eu-1"),
            (target("blog", d1, true), "https", "blog.example", "us-2"),
        ];
        for (t, scheme, host, region) in other_ways {
            let f = functions.fixed_context(&t, scheme, host, region);
            assert!(!Arc::ptr_eq(&f, &first), "{scheme} {host} {region} {t:?}");
            assert_eq!(f.site.url, format!("{scheme}://{host}"));
            assert_eq!(f.site.id, t.site.as_str());
            assert_eq!(f.deploy.id, t.deploy.as_str());
            assert_eq!(f.deploy.published, t.production);
            let preview = if t.production {
                "production"
            } else {
                "deploy-preview"
            };
            assert_eq!(f.deploy.context, preview);
            assert_eq!(f.server.region, region);
        }
    }

    #[test]
    fn a_function_answer_keeps_its_headers_but_the_framing_ones() {
        let pairs = [
            ("content-type", "text/plain"),
            ("X-Two", "a"),
            ("x-two", "b"),
            ("content-length", "99"),
            ("transfer-encoding", "chunked"),
            ("connection", "close"),
            ("bad name", "x"),
            ("x-control", "a\u{1}b"),
            ("x-del", "a\u{7f}"),
            ("x-tab", "a\tb"),
            ("x-text", "caf\u{e9}"),
        ];
        let r = HttpResponse {
            status: 201,
            headers: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: b"hi".to_vec(),
            body_handle: None,
        };
        let resp = to_response(r, None);
        assert_eq!(resp.status(), StatusCode::CREATED);
        let got: Vec<(String, Vec<u8>)> = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect();
        let want: Vec<(String, Vec<u8>)> = [
            ("content-type", "text/plain"),
            ("x-two", "a"),
            ("x-two", "b"),
            ("x-tab", "a\tb"),
            ("x-text", "caf\u{e9}"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect();
        assert_eq!(got, want);
        // What `from_str` would refuse is refused.
        for (_, v) in &pairs[7..] {
            let ours = HeaderValue::from_maybe_shared(Bytes::from(v.to_string().into_bytes()));
            assert_eq!(ours.is_ok(), HeaderValue::from_str(v).is_ok(), "{v:?}");
        }
    }

    #[test]
    fn header_values_become_text_with_invalid_utf8_replaced() {
        assert_eq!(lossy_text(b"text/html, */*"), "text/html, */*");
        assert_eq!(
            lossy_text("caf\u{e9} \u{2713}".as_bytes()),
            "caf\u{e9} \u{2713}"
        );
        // Latin-1 bytes (obs-text) are not UTF-8.
        assert_eq!(lossy_text(b"caf\xe9"), "caf\u{fffd}");
        assert_eq!(lossy_text(b""), "");
    }

    #[test]
    fn an_overloaded_runtime_asks_to_retry() {
        let r = rescue(&EdgeError::FunctionsOverloaded);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
    }

    #[test]
    fn on_error_values() {
        assert_eq!(OnError::parse(None), Ok(OnError::Fail));
        assert_eq!(OnError::parse(Some("fail")), Ok(OnError::Fail));
        assert_eq!(OnError::parse(Some("bypass")), Ok(OnError::Bypass));
        assert_eq!(
            OnError::parse(Some("/oops")),
            Ok(OnError::Rewrite("/oops".into()))
        );
        assert!(OnError::parse(Some("//evil.example/")).is_err());
        assert!(OnError::parse(Some("retry")).is_err());
    }

    fn sources(list: &[(&str, &str)]) -> BTreeMap<String, String> {
        list.iter()
            .map(|(p, s)| (p.to_string(), s.to_string()))
            .collect()
    }

    #[test]
    fn build_checks_toml_declarations_and_on_error() {
        let src = sources(&[
            (
                "a.js",
                "export default () => {};\nexport const config = { path: '/a' };",
            ),
            (
                "b.js",
                "export default () => {};\nexport const config = { path: '/b', onError: 'retry' };",
            ),
        ]);
        let mut cfg = BTreeMap::new();
        cfg.insert(
            "/netlify.toml".to_string(),
            "[[edge_functions]]\nfunction = \"ghost\"\npath = \"/g\"\n".to_string(),
        );
        let d = build(&cfg, &src).unwrap_err();
        let text: Vec<String> = d
            .iter()
            .map(|d| format!("{}: {}", d.file, d.message))
            .collect();
        assert!(
            text.iter()
                .any(|t| t.contains("b.js") && t.contains("onError")),
            "{text:?}"
        );
        assert!(text.iter().any(|t| t.contains("\"ghost\"")), "{text:?}");
        let ok = build(
            &BTreeMap::new(),
            &sources(&[(
                "a.js",
                "export default () => {};\nexport const config = { path: '/a' };",
            )]),
        )
        .unwrap();
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].config.as_ref().unwrap()["path"][0], "/a");
    }
}
