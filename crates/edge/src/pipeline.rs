//! The life of a request, in order. [`Edge::handle`] is the one function that
//! shows every phase; each phase is a method below it.
//!
//! 1. **accept**: request-target length, declared body size, Host normalised,
//!    client IP (from `X-Forwarded-For` only behind a trusted proxy);
//! 2. **resolve**: Host → site → deploy; the request keeps an `Arc` of the deploy
//!    for its whole life, so a publish never changes a request in flight;
//! 3. **guard**: the site's HTTPS policy (301 to `https://`, HSTS on the way
//!    out; ACME challenges exempt); rate limits and firewall come later;
//! 4. **functions**, 5. **cache**, 6. **cached functions**: later issues;
//! 7. **rules**: `_redirects` / `netlify.toml` (the rules issue);
//! 8. **static**: path → file, conditional requests, ranges, variants, custom 404;
//! 9. **headers** (on the way out): `x-ledge-id`, `X-Robots-Tag` off production;
//! 10. **log** (on the way out).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use ledge_core::{normalize_host, Cidr};
use ledge_rules::{Outcome, RuleRequest, Signing};
use ledge_store::settings::{GeoSource, HttpsPolicy};
use ledge_telemetry::{AccessRecord, Answer, CacheStatus, ErrorClass, Phase, Telemetry};

use crate::body::Body;
use crate::deploys::{BlobCache, DeployCache, LoadedDeploy};
use crate::files;
use crate::outbound::Origin;
use crate::proxy::{self, Forwarding, HOPS_HEADER};
use crate::rescue::{rescue, EdgeError};
use crate::routes::{Route, RouteTarget, Router};
use crate::static_files::{self, Resolved};

/// Process-lifetime settings of the edge.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// Proxies whose `X-Forwarded-For`, `X-Forwarded-Proto` and geo header are
    /// believed.
    pub trusted_proxies: Vec<Cidr>,
    /// Longest request target accepted (bytes).
    pub max_uri_len: usize,
    /// Largest request body accepted (bytes).
    pub max_body: u64,
    /// What edge functions see as `context.server.region`.
    pub region: String,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            trusted_proxies: Vec::new(),
            max_uri_len: 8 * 1024,
            max_body: 16 * 1024 * 1024,
            region: "local".into(),
        }
    }
}

/// The per-request context every phase reads and extends.
#[derive(Debug, Clone)]
pub struct RequestCtx {
    /// `x-ledge-id`.
    pub id: HeaderValue,
    /// The socket peer.
    pub peer: IpAddr,
    /// True when the peer is a trusted proxy.
    pub peer_trusted: bool,
    /// The visitor's address.
    pub client_ip: IpAddr,
    /// `http` or `https` as the visitor used it.
    pub scheme: &'static str,
    /// Normalised host.
    pub host: String,
    /// Where the request goes, once resolved.
    pub target: Option<RouteTarget>,
    /// The deploy serving it, once resolved.
    pub deploy: Option<Arc<LoadedDeploy>>,
    /// The visitor's country, once a phase needed it.
    pub country: Option<String>,
    /// Which phase answered (for the access record).
    pub answered_by: Phase,
    /// The rule that answered, by index in the deploy's rule set.
    pub rule: Option<usize>,
    /// What the HTTP cache did.
    pub cache_status: CacheStatus,
    /// The first edge function that ran.
    pub function: Option<Arc<str>>,
}

/// Key authorizations of pending ACME HTTP-01 challenges, by token.
pub trait AcmeChallenges: Send + Sync {
    /// The key authorization to answer for `token`, if one is pending.
    fn key_authorization(&self, token: &str) -> Option<String>;
}

/// The connection a request arrived on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The socket peer.
    pub peer: SocketAddr,
    /// True on the TLS listener.
    pub tls: bool,
    /// The TLS server name the client asked for.
    pub sni: Option<Arc<str>>,
    /// The negotiated TLS version (`TLSv1.3`), on the TLS listener.
    pub tls_version: Option<&'static str>,
}

/// Requests under this path answer ACME HTTP-01 challenges and are never
/// redirected to HTTPS.
pub const ACME_CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// `Strict-Transport-Security` sent on HTTPS responses of sites that redirect
/// HTTP to HTTPS (one year).
const HSTS: HeaderValue = HeaderValue::from_static("max-age=31536000");

/// Header names the pipeline sets on every response, parsed once.
pub(crate) const X_LEDGE_ID: HeaderName = HeaderName::from_static("x-ledge-id");
const X_ROBOTS_TAG: HeaderName = HeaderName::from_static("x-robots-tag");

/// What the rules phase decided.
enum RulesFlow {
    /// No rule applies (or a file shadows it): static serving.
    Continue,
    /// Answer now (a redirect).
    Respond(Response<Body>),
    /// Serve another path of the deploy with this status.
    Rewrite { path: String, status: StatusCode },
    /// Send to an origin.
    Proxy {
        url: String,
        headers: Vec<(String, String)>,
    },
}

/// The functions that run for a request: the runner, the deploy's
/// functions, the chain.
type FunctionSteps = (
    Arc<dyn ledge_functions::Runner>,
    Arc<crate::functions::DeployFunctions>,
    Vec<crate::functions::Step>,
);

/// What a kept static answer needs for its access records (see
/// [`Edge::handle_hot`]).
#[derive(Debug, Clone)]
pub(crate) struct HotInfo {
    pub site: Arc<str>,
    pub deploy: Arc<str>,
    /// The normalised host.
    pub host: Arc<str>,
    /// The request's path and query as the access record has them: the
    /// same for every request with the same target.
    pub path: Arc<str>,
    pub query: Option<Arc<str>>,
    /// Where the visitor's country comes from.
    pub geo: GeoSource,
    /// Which phase answered.
    pub phase: Phase,
    /// The rule that answered, as the access record names it.
    pub rule: Option<String>,
}

/// A proxy rule's outcome, as the proxy phase takes it.
struct ProxyRule<'a> {
    url: &'a str,
    headers: &'a [(String, String)],
}

/// The edge: routing table, deploy and blob caches, origin client, and the
/// pipeline.
pub struct Edge {
    /// Host routing.
    pub router: Arc<Router>,
    /// Deploy snapshots.
    pub deploys: DeployCache,
    /// File bytes.
    pub blobs: BlobCache,
    /// The one client for everything that leaves the node.
    pub origin: Origin,
    /// Country lookup.
    pub geo: crate::geo::Geo,
    /// Pending ACME HTTP-01 challenges, when the node issues certificates.
    pub acme: Option<Arc<dyn AcmeChallenges>>,
    /// Settings.
    pub config: EdgeConfig,
    /// Access records, statistics and metrics; `None` logs nothing.
    pub telemetry: Option<Telemetry>,
    /// The HTTP cache for proxied responses; `None` caches nothing.
    pub cache: Option<Arc<ledge_cache::Cache>>,
    /// Runs edge functions; `None` serves deploys as if they had none.
    pub functions: Option<Arc<dyn ledge_functions::Runner>>,
}

impl Edge {
    /// Runs every phase for one request. Never fails: errors are rescued into
    /// responses.
    pub async fn handle<B>(&self, req: Request<B>, conn: &ConnInfo) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.handle_inner(req, conn, false).await.0
    }

    /// [`Edge::handle`] for callers that keep answers (the HTTP/1.1 fast
    /// path and h2), which depend on nothing but the connection's TLS and
    /// SNI name, the host, the request target and `Accept-Encoding` (see
    /// `crate::hot`): also says whether this answer is one of them.
    pub(crate) async fn handle_hot<B>(
        &self,
        req: Request<B>,
        conn: &ConnInfo,
    ) -> (Response<Body>, Option<HotInfo>)
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.handle_inner(req, conn, true).await
    }

    async fn handle_inner<B>(
        &self,
        req: Request<B>,
        conn: &ConnInfo,
        hot: bool,
    ) -> (Response<Body>, Option<HotInfo>)
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        // Timing is for the access record only.
        let start = self.telemetry.as_ref().map(|_| std::time::Instant::now());
        let (mut parts, body) = req.into_parts();
        // Present only on HTTP/1.1 upgrade requests; a proxy rule may pass it on.
        let upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
        let peer = conn.peer;
        let mut ctx = RequestCtx {
            id: request_id(),
            peer: peer.ip(),
            peer_trusted: false,
            client_ip: peer.ip(),
            scheme: if conn.tls { "https" } else { "http" },
            host: String::new(),
            target: None,
            deploy: None,
            country: None,
            answered_by: Phase::Static,
            rule: None,
            cache_status: CacheStatus::None,
            function: None,
        };
        let has_body = !http_body::Body::is_end_stream(&body);
        let result = async {
            self.accept(&mut ctx, &parts, has_body)?;
            if let Some(r) = self.acme_challenge(&parts) {
                ctx.answered_by = Phase::Platform;
                return Ok(r);
            }
            self.misdirected(&ctx, conn)?;
            self.resolve(&mut ctx).await?;
            if let Some(r) = self.guard(&ctx, &parts) {
                ctx.answered_by = Phase::Guard;
                return Ok(r);
            }
            if let Some(steps) = self.function_steps(&ctx, &parts) {
                // Boxed, like the proxy below: the future of every request
                // would otherwise have room for them (it is moved whole).
                return Box::pin(self.functions_phase(&mut ctx, &parts, body, steps)).await;
            }
            self.after_functions(&mut ctx, &parts, body, upgrade).await
        }
        .await;
        let mut error = None;
        let mut resp = result.unwrap_or_else(|e| {
            error = Some(error_class(&e));
            rescue(&e)
        });
        self.headers_phase(&ctx, &mut resp);
        let hot = (hot && error.is_none())
            .then(|| self.hot_info(&ctx, &parts))
            .flatten();
        if let (Some(t), Some(start)) = (&self.telemetry, start) {
            self.log_phase(t, ctx, &parts, conn, error, start, &mut resp);
        }
        (resp, hot)
    }

    /// Whether the answer is one that any `GET` on a connection like this
    /// one (TLS or not, the same SNI name: the caller's key holds both)
    /// with the same host, target and `Accept-Encoding` (and only harmless
    /// other headers, which the caller checks) gets as it is, but for its
    /// request id and `Date`; if so, what its access record needs.
    fn hot_info(&self, ctx: &RequestCtx, parts: &http::request::Parts) -> Option<HotInfo> {
        // A file, the 404 page, a rule's redirect or rewrite: never a proxy,
        // a function, the cache, a platform answer or an error.
        let plain = matches!(
            ctx.answered_by,
            Phase::Static | Phase::Redirect | Phase::Rewrite
        ) && ctx.function.is_none()
            && ctx.cache_status == CacheStatus::None
            && !ctx.peer_trusted
            && parts.method == Method::GET;
        if !plain {
            return None;
        }
        let (target, deploy) = (ctx.target.as_ref()?, ctx.deploy.as_ref()?);
        // Rules with conditions (country, language, role, cookie) or
        // signing, and functions (whose paths may depend on any header),
        // can answer the same target differently.
        if deploy.rules.reads_client_details()
            || (self.functions.is_some() && deploy.functions.is_some())
        {
            return None;
        }
        let rule = match ctx.rule {
            Some(i) => Some(deploy.rules.rule(i)?.origin.to_string()),
            None => None,
        };
        Some(HotInfo {
            site: target.site.shared(),
            deploy: deploy.id_text.clone(),
            host: ctx.host.as_str().into(),
            path: parts.uri.path().into(),
            query: parts.uri.query().map(Arc::from),
            geo: target.settings.geo_source,
            phase: ctx.answered_by,
            rule,
        })
    }

    /// Phase 4 (functions): the deploy's edge functions that run for this
    /// request, in order; `None` when there are none.
    fn function_steps(
        &self,
        ctx: &RequestCtx,
        parts: &http::request::Parts,
    ) -> Option<FunctionSteps> {
        let runner = self.functions.as_ref()?;
        let fns = ctx.deploy.as_ref()?.functions.as_ref()?;
        let steps = fns.chain(&parts.method, parts.uri.path(), &parts.headers);
        if steps.is_empty() {
            return None;
        }
        Some((runner.clone(), fns.clone(), steps))
    }

    /// Phase 4 (functions): runs the chain; each function's `context.next()`
    /// reaches the next one and, after the last, [`Edge::after_functions`].
    async fn functions_phase<B>(
        &self,
        ctx: &mut RequestCtx,
        parts: &http::request::Parts,
        body: B,
        (runner, functions, steps): FunctionSteps,
    ) -> Result<Response<Body>, EdgeError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        use http_body_util::BodyExt;
        let limit = usize::try_from(self.config.max_body).unwrap_or(usize::MAX);
        let body = http_body_util::Limited::new(body, limit)
            .collect()
            .await
            .map_err(|_| EdgeError::BodyTooLarge)?
            .to_bytes();
        ctx.answered_by = Phase::Function;
        ctx.function = steps.first().map(|s| s.function.clone());
        if ctx.country.is_none() {
            ctx.country = self.country(ctx, &parts.headers);
        }
        let context = Arc::new(self.function_context(ctx, &functions));
        let chain = crate::functions::Chain {
            edge: self,
            runner: &*runner,
            functions,
            steps,
            ctx,
            context,
            cache_status: std::sync::Mutex::new(CacheStatus::None),
            answered: std::sync::Mutex::new(None),
        };
        let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let req = crate::functions::ChainRequest {
            method: parts.method.clone(),
            target: target.into(),
            headers: std::borrow::Cow::Borrowed(&parts.headers),
            body,
        };
        let resp = chain.run(0, req).await;
        let status = chain.cache_status.lock().map(|s| *s).ok();
        // A function that passed the request on did not answer it.
        let answered = chain.answered.lock().ok().and_then(|a| *a);
        if let Some(status) = status {
            ctx.cache_status = status;
        }
        if let Some((phase, rule)) = answered {
            ctx.answered_by = phase;
            ctx.rule = rule;
        }
        Ok(resp)
    }

    /// What functions see as `context` (all but `params`).
    fn function_context(
        &self,
        ctx: &RequestCtx,
        functions: &crate::functions::DeployFunctions,
    ) -> ledge_functions::RequestContext {
        // Built whole: a default `fixed` or `env` would be an allocation
        // thrown away.
        let (fixed, env) = match &ctx.target {
            Some(t) => (
                functions.fixed_context(t, ctx.scheme, &ctx.host, &self.config.region),
                Arc::clone(&t.settings.env),
            ),
            None => (
                Arc::new(ledge_functions::FixedContext {
                    server: ledge_functions::ServerInfo {
                        region: self.config.region.clone(),
                    },
                    ..Default::default()
                }),
                Arc::default(),
            ),
        };
        let mut c = ledge_functions::RequestContext {
            ip: ledge_core::num::ip_text(ctx.client_ip),
            request_id: std::str::from_utf8(ctx.id.as_bytes())
                .unwrap_or("")
                .to_owned(),
            geo: Default::default(),
            fixed,
            params: Default::default(),
            env,
        };
        let source = ctx
            .target
            .as_ref()
            .map_or(GeoSource::Default, |t| t.settings.geo_source);
        let place = self.geo.place(source, ctx.client_ip).unwrap_or_default();
        if let Some(code) = &ctx.country {
            c.geo.country = Some(ledge_functions::CodeName {
                code: code.clone(),
                name: place
                    .country_name
                    .clone()
                    .or_else(|| crate::geo::country_name(code).map(str::to_owned))
                    .unwrap_or_else(|| code.clone()),
            });
        }
        c.geo.city = place.city;
        c.geo.subdivision = place
            .subdivision
            .map(|(code, name)| ledge_functions::CodeName { code, name });
        c.geo.postal_code = place.postal_code;
        c.geo.latitude = place.location.map(|l| l.0);
        c.geo.longitude = place.location.map(|l| l.1);
        c.geo.timezone = place.timezone;
        c
    }

    /// Phases 5–8 for a request the functions passed on (or that had none):
    /// rules, then a redirect, rewrite, proxy or static file.
    pub(crate) async fn after_functions<B>(
        &self,
        ctx: &mut RequestCtx,
        parts: &http::request::Parts,
        body: B,
        upgrade: Option<hyper::upgrade::OnUpgrade>,
    ) -> Result<Response<Body>, EdgeError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        match self.rules(ctx, parts)? {
            RulesFlow::Continue => self.static_phase(ctx, parts).await,
            RulesFlow::Respond(r) => {
                ctx.answered_by = Phase::Redirect;
                Ok(r)
            }
            RulesFlow::Rewrite { path, status } => {
                ctx.answered_by = Phase::Rewrite;
                Box::pin(self.rewrite(ctx, parts, &path, status)).await
            }
            RulesFlow::Proxy { url, headers } => {
                ctx.answered_by = Phase::Proxy;
                let rule = ProxyRule {
                    url: &url,
                    headers: &headers,
                };
                let (resp, cache) = Box::pin(self.proxy(ctx, parts, body, upgrade, rule)).await?;
                ctx.cache_status = cache;
                Ok(resp)
            }
        }
    }

    /// Phase 10 (log): starts the access record; the body finishes it.
    #[allow(clippy::too_many_arguments)]
    fn log_phase(
        &self,
        telemetry: &Telemetry,
        mut ctx: RequestCtx,
        parts: &http::request::Parts,
        conn: &ConnInfo,
        error: Option<ErrorClass>,
        start: std::time::Instant,
        resp: &mut Response<Body>,
    ) {
        if ctx.country.is_none() {
            ctx.country = self.country(&ctx, &parts.headers);
        }
        // One pass over each header map instead of a hashed lookup per
        // field: most requests carry few headers. The first value of a
        // name counts, as with `get`. UTF-8 is all JSON needs (and checking
        // it is cheaper than `to_str`'s visible-ASCII test).
        let text = |v: &HeaderValue| std::str::from_utf8(v.as_bytes()).ok().map(Arc::<str>::from);
        let (mut user_agent, mut referrer, mut request_size) = (None, None, None);
        for (name, value) in &parts.headers {
            if name == header::USER_AGENT && user_agent.is_none() {
                user_agent = Some(text(value));
            } else if name == header::REFERER && referrer.is_none() {
                referrer = Some(text(value));
            } else if name == header::CONTENT_LENGTH && request_size.is_none() {
                request_size = Some(number(value));
            }
        }
        let (mut content_type, mut content_length) = (None, None);
        for (name, value) in resp.headers() {
            if name == header::CONTENT_TYPE && content_type.is_none() {
                content_type = Some(text(value));
            } else if name == header::CONTENT_LENGTH && content_length.is_none() {
                content_length = Some(number(value));
            }
        }
        let rule = match (&ctx.deploy, ctx.rule) {
            (Some(d), Some(i)) => d.rules.rule(i).map(|r| r.origin.to_string()),
            _ => None,
        };
        let now = std::time::Instant::now();
        let ttfb = now.saturating_duration_since(start);
        let answer = Answer {
            site: ctx
                .target
                .as_ref()
                .map_or_else(|| "".into(), |t| t.site.shared()),
            deploy: match (&ctx.deploy, &ctx.target) {
                (Some(d), _) => Some(d.id_text.clone()),
                (None, Some(t)) => Some(t.deploy.as_str().into()),
                (None, None) => None,
            },
            host: ctx.host.into(),
            method: method_text(&parts.method),
            path: parts.uri.path().into(),
            query: parts.uri.query().map(Arc::from),
            status_code: resp.status().as_u16(),
            content_type: content_type.flatten(),
            cache_status: ctx.cache_status,
            answered_by: if error.is_some() {
                Phase::Error
            } else {
                ctx.answered_by
            },
            rule,
            function_name: ctx.function,
            firewall_rule: None,
            block_reason: None,
        };
        let record = Box::new(AccessRecord {
            timestamp: crate::log::wall_clock(start, now),
            request_id: ctx.id.to_str().unwrap_or("").into(),
            answer: Arc::new(answer),
            request_size: request_size.flatten().unwrap_or(0),
            response_size: 0,
            duration: std::time::Duration::ZERO,
            ttfb,
            client_ip: Some(ctx.client_ip),
            country: ctx.country,
            user_agent: user_agent.flatten(),
            referrer: referrer.flatten(),
            tls_version: conn.tls_version.map(std::borrow::Cow::Borrowed),
            http_version: http_version(parts.version).into(),
            error_class: error,
        });
        // HEAD answers and 304s carry a length but no body.
        let expected = if parts.method == Method::HEAD || resp.status() == StatusCode::NOT_MODIFIED
        {
            Some(0)
        } else {
            content_length.flatten()
        };
        let body = std::mem::replace(resp.body_mut(), Body::Empty);
        *resp.body_mut() = Body::Logged(Box::new(crate::log::Logged::new(
            body,
            record,
            start,
            telemetry.clone(),
            expected,
        )));
    }

    /// Phase 1 (accept): limits, Host, client IP, scheme, country.
    /// `has_body` is false when the request is known to have no body.
    fn accept(
        &self,
        ctx: &mut RequestCtx,
        parts: &http::request::Parts,
        has_body: bool,
    ) -> Result<(), EdgeError> {
        let target_len = parts.uri.path_and_query().map_or(0, |pq| pq.as_str().len());
        if target_len > self.config.max_uri_len {
            return Err(EdgeError::UriTooLong);
        }
        if has_body {
            let declared = parts
                .headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|n| n > self.config.max_body) {
                return Err(EdgeError::BodyTooLarge);
            }
        }
        // HTTP/2 carries the host in the URI authority, HTTP/1.1 in Host.
        let raw_host = parts
            .uri
            .authority()
            .map(|a| a.as_str())
            .or_else(|| {
                parts
                    .headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
            })
            .ok_or(EdgeError::BadRequest("missing Host header"))?;
        ctx.host =
            normalize_host(raw_host).ok_or(EdgeError::BadRequest("malformed Host header"))?;
        let trusted = &self.config.trusted_proxies;
        ctx.peer_trusted = trusted.iter().any(|c| c.contains(ctx.peer));
        if ctx.peer_trusted {
            ctx.client_ip = client_ip(ctx.peer, &parts.headers, trusted);
            if parts
                .headers
                .get("x-forwarded-proto")
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
            {
                ctx.scheme = "https";
            }
        }
        Ok(())
    }

    /// ACME HTTP-01: `GET /.well-known/acme-challenge/TOKEN` answers the key
    /// authorization for any host, before routing (the domain may have nothing
    /// published yet).
    fn acme_challenge(&self, parts: &http::request::Parts) -> Option<Response<Body>> {
        let acme = self.acme.as_ref()?;
        let token = parts.uri.path().strip_prefix(ACME_CHALLENGE_PREFIX)?;
        if parts.method != Method::GET && parts.method != Method::HEAD {
            return None;
        }
        let answer = acme.key_authorization(token)?;
        let mut r = Response::new(Body::full(answer));
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        Some(r)
    }

    /// On TLS: a Host that belongs to another site than the SNI name the
    /// connection was made for is misdirected (RFC 9110 §15.5.20).
    fn misdirected(&self, ctx: &RequestCtx, conn: &ConnInfo) -> Result<(), EdgeError> {
        match &conn.sni {
            Some(sni) if **sni != *ctx.host => {
                if self.router.site_of(sni) != self.router.site_of(&ctx.host) {
                    return Err(EdgeError::Misdirected);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Phase 2 (resolve): Host → site → deploy snapshot; the visitor's country
    /// by the site's geo source.
    async fn resolve(&self, ctx: &mut RequestCtx) -> Result<(), EdgeError> {
        let target = match self.router.route(&ctx.host) {
            Route::Deploy(t) => t,
            Route::NothingPublished => return Err(EdgeError::NothingPublished),
            Route::UnknownHost => return Err(EdgeError::UnknownHost),
        };
        let deploy = self
            .deploys
            .get(&target.site, &target.deploy)
            .await?
            .ok_or(EdgeError::NothingPublished)?;
        ctx.target = Some(target);
        ctx.deploy = Some(deploy);
        Ok(())
    }

    /// Phase 3 (guard): the site's HTTPS policy (rate limits and firewall rules
    /// come later). ACME HTTP-01 challenges are never redirected.
    fn guard(&self, ctx: &RequestCtx, parts: &http::request::Parts) -> Option<Response<Body>> {
        let target = ctx.target.as_ref()?;
        if ctx.scheme == "https" || target.settings.https != HttpsPolicy::Redirect {
            return None;
        }
        let path = parts.uri.path();
        if path.starts_with(ACME_CHALLENGE_PREFIX) {
            return None;
        }
        let mut location = String::with_capacity(ctx.host.len() + path.len() + 16);
        location.push_str("https://");
        location.push_str(&ctx.host);
        location.push_str(path);
        if let Some(q) = parts.uri.query() {
            location.push('?');
            location.push_str(q);
        }
        Some(redirect(StatusCode::MOVED_PERMANENTLY, location))
    }

    fn country(&self, ctx: &RequestCtx, headers: &HeaderMap) -> Option<String> {
        let source = ctx
            .target
            .as_ref()
            .map_or(GeoSource::Default, |t| t.settings.geo_source);
        self.geo
            .country(source, ctx.client_ip, ctx.peer_trusted, headers)
    }

    /// Phase 7 (rules): `_redirects` and `netlify.toml` redirect rules.
    fn rules(
        &self,
        ctx: &mut RequestCtx,
        parts: &http::request::Parts,
    ) -> Result<RulesFlow, EdgeError> {
        match &ctx.deploy {
            Some(d) if d.rules.rules().len() > 0 => {}
            _ => return Ok(RulesFlow::Continue),
        }
        ctx.country = self.country(ctx, &parts.headers);
        let (flow, rule) = self.evaluate_rules(ctx, parts)?;
        ctx.rule = rule;
        Ok(flow)
    }

    fn evaluate_rules(
        &self,
        ctx: &RequestCtx,
        parts: &http::request::Parts,
    ) -> Result<(RulesFlow, Option<usize>), EdgeError> {
        let (Some(deploy), Some(target)) = (&ctx.deploy, &ctx.target) else {
            return Ok((RulesFlow::Continue, None));
        };
        // Cookies, the language and the clock matter only to conditions and
        // signed proxies; most rule sets have neither.
        let details = deploy.rules.reads_client_details();
        let header = |name: header::HeaderName| {
            details
                .then(|| parts.headers.get(name))
                .flatten()
                .and_then(|v| v.to_str().ok())
        };
        let country = &ctx.country;
        let now = if details {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        } else {
            0
        };
        let req = RuleRequest {
            method: parts.method.as_str(),
            scheme: ctx.scheme,
            host: &ctx.host,
            path: parts.uri.path(),
            query: parts.uri.query().unwrap_or(""),
            cookie: header(header::COOKIE),
            accept_language: header(header::ACCEPT_LANGUAGE),
            country: country.as_deref(),
            language: None,
            now_unix: now,
            site: &target.rule_settings,
        };
        let exists = |p: &str| static_files::exists(deploy, p);
        Ok(match deploy.rules.evaluate(&req, &exists) {
            Outcome::NoMatch | Outcome::Static { .. } => (RulesFlow::Continue, None),
            Outcome::Redirect {
                rule,
                status,
                location,
            } => {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::MOVED_PERMANENTLY);
                (RulesFlow::Respond(redirect(status, location)), Some(rule))
            }
            Outcome::Rewrite {
                rule, status, path, ..
            } => (
                RulesFlow::Rewrite {
                    path,
                    status: StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
                },
                Some(rule),
            ),
            Outcome::Function { path, .. } => return Err(EdgeError::FunctionUnsupported(path)),
            Outcome::Proxy { signing: Some(Signing::MissingSecret { env }), .. } => {
                return Err(EdgeError::BadProxyTarget(format!(
                    "this signed proxy rule needs the environment variable {env}, which the site does not set"
                )))
            }
            Outcome::Proxy {
                rule, url, headers, ..
            } => (RulesFlow::Proxy { url, headers }, Some(rule)),
            Outcome::Force404 => (
                RulesFlow::Rewrite {
                    path: "/404.html".into(),
                    status: StatusCode::NOT_FOUND,
                },
                None,
            ),
            Outcome::BadJwt => return Err(EdgeError::BadJwt),
        })
    }

    /// Phase 8 (static): the file, a folder redirect, or the 404 page.
    async fn static_phase(
        &self,
        ctx: &RequestCtx,
        parts: &http::request::Parts,
    ) -> Result<Response<Body>, EdgeError> {
        let deploy = ctx.deploy.as_ref().ok_or(EdgeError::NothingPublished)?;
        let method = &parts.method;
        if method != Method::GET && method != Method::HEAD {
            return Err(EdgeError::MethodNotAllowed);
        }
        let raw_path = parts.uri.path();
        let path = static_files::decode_path(raw_path)
            .map_err(|_| EdgeError::BadRequest("malformed request path"))?;
        let mut resp = match static_files::resolve(deploy, &path) {
            Resolved::File(f) => {
                files::respond(
                    method,
                    &parts.headers,
                    deploy,
                    &f,
                    StatusCode::OK,
                    &self.blobs,
                )
                .await?
            }
            Resolved::AddSlash => {
                let query = parts.uri.query();
                let mut location =
                    String::with_capacity(raw_path.len() + 2 + query.map_or(0, str::len));
                location.push_str(raw_path);
                location.push('/');
                if let Some(q) = query {
                    location.push('?');
                    location.push_str(q);
                }
                return Ok(redirect(StatusCode::MOVED_PERMANENTLY, location));
            }
            Resolved::NotFound => self.not_found(deploy, method, &parts.headers).await?,
        };
        custom_headers(deploy, raw_path, &mut resp);
        Ok(resp)
    }

    /// A rewrite: serve `target` (percent-encoded path) with `status`; a missing
    /// target is 404 handling. Custom headers match the target path.
    async fn rewrite(
        &self,
        ctx: &RequestCtx,
        parts: &http::request::Parts,
        target: &str,
        status: StatusCode,
    ) -> Result<Response<Body>, EdgeError> {
        let deploy = ctx.deploy.as_ref().ok_or(EdgeError::NothingPublished)?;
        let method = &parts.method;
        if method != Method::GET && method != Method::HEAD {
            return Err(EdgeError::MethodNotAllowed);
        }
        let path = static_files::decode_path(target)
            .map_err(|_| EdgeError::BadRequest("malformed rewrite target"))?;
        let found = match static_files::resolve(deploy, &path) {
            Resolved::File(f) => Some(f),
            Resolved::AddSlash => match static_files::resolve(deploy, &format!("{path}/")) {
                Resolved::File(f) => Some(f),
                _ => None,
            },
            Resolved::NotFound => None,
        };
        let mut resp = match found {
            Some(f) => {
                files::respond(method, &parts.headers, deploy, &f, status, &self.blobs).await?
            }
            None => self.not_found(deploy, method, &parts.headers).await?,
        };
        custom_headers(deploy, target, &mut resp);
        Ok(resp)
    }

    /// A proxy rule: stream to the origin and back, or pass an upgrade
    /// (WebSocket) through.
    async fn proxy<B>(
        &self,
        ctx: &RequestCtx,
        parts: &http::request::Parts,
        body: B,
        upgrade: Option<hyper::upgrade::OnUpgrade>,
        rule: ProxyRule<'_>,
    ) -> Result<(Response<Body>, CacheStatus), EdgeError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        // Built only when the request goes to the origin (not on cache hits).
        let fwd = || {
            let hops = parts
                .headers
                .get(HOPS_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(0);
            let forwarded_for = match parts
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
            {
                Some(prior) if ctx.peer_trusted => format!("{prior}, {}", ctx.peer),
                _ => ctx.peer.to_string(),
            };
            let original_host = parts
                .headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or(&ctx.host);
            Forwarding {
                forwarded_for,
                proto: ctx.scheme,
                host: original_host,
                request_id: &ctx.id,
                country: ctx.country.as_deref(),
                hops,
            }
        };
        if let Some(upgrade) = upgrade.filter(|_| proxy::is_upgrade(&parts.headers)) {
            let resp = proxy::forward_upgrade(
                &self.origin,
                &parts.method,
                rule.url,
                &parts.headers,
                upgrade,
                rule.headers,
                fwd(),
            )
            .await?;
            return Ok((resp, CacheStatus::None));
        }
        if let Some(cache) = &self.cache {
            let up = crate::cache_phase::Upstream {
                url: rule.url,
                rule_headers: rule.headers,
                fwd: &fwd,
            };
            return self.cached_proxy(cache, ctx, parts, body, up).await;
        }
        let resp = proxy::forward(
            &self.origin,
            &parts.method,
            rule.url,
            &parts.headers,
            body,
            self.config.max_body,
            rule.headers,
            fwd(),
        )
        .await?;
        Ok((resp, CacheStatus::None))
    }

    /// The site's `/404.html` with status 404, or the platform's page.
    async fn not_found(
        &self,
        deploy: &LoadedDeploy,
        method: &Method,
        headers: &HeaderMap,
    ) -> Result<Response<Body>, EdgeError> {
        match deploy.file("/404.html") {
            Some(f) => Ok(files::respond(
                method,
                headers,
                deploy,
                f,
                StatusCode::NOT_FOUND,
                &self.blobs,
            )
            .await?),
            None => Ok(crate::rescue::platform_page(
                StatusCode::NOT_FOUND,
                "Page not found",
                "The page you are looking for does not exist on this site.",
            )),
        }
    }

    /// Phase 9 (headers, on the way out).
    fn headers_phase(&self, ctx: &RequestCtx, resp: &mut Response<Body>) {
        let h = resp.headers_mut();
        h.insert(X_LEDGE_ID, ctx.id.clone());
        if let Some(t) = &ctx.target {
            if !t.production {
                h.insert(X_ROBOTS_TAG, HeaderValue::from_static("noindex"));
            }
            if ctx.scheme == "https" && t.settings.https == HttpsPolicy::Redirect {
                h.insert(header::STRICT_TRANSPORT_SECURITY, HSTS);
            }
        }
    }
}

/// `_headers` / `[[headers]]` rules on a static response (spec §3.3): matched
/// on `path`; not on 304s; a rule's value replaces the platform default.
fn custom_headers(deploy: &LoadedDeploy, path: &str, resp: &mut Response<Body>) {
    if resp.status() == StatusCode::NOT_MODIFIED || deploy.rules.header_blocks().is_empty() {
        return;
    }
    let h = resp.headers_mut();
    for (name, value) in deploy.rules.headers_for(path) {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            h.insert(n, v);
        }
    }
}

/// The access record's class for an error the edge answered with.
fn error_class(e: &EdgeError) -> ErrorClass {
    match e {
        EdgeError::OriginUnreachable(_)
        | EdgeError::ProxyRefused(_)
        | EdgeError::BadProxyTarget(_) => ErrorClass::UpstreamUnreachable,
        EdgeError::OriginTimeout(_) => ErrorClass::UpstreamTimeout,
        EdgeError::Storage(_) => ErrorClass::Internal,
        _ => ErrorClass::BadRequest,
    }
}

/// A header value as a decimal number, if it is one.
fn number(v: &HeaderValue) -> Option<u64> {
    v.to_str().ok()?.parse().ok()
}

/// The method as text: shared for the standard ones, copied otherwise.
fn method_text(m: &Method) -> std::borrow::Cow<'static, str> {
    const STANDARD: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::HEAD, "HEAD"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::DELETE, "DELETE"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::PATCH, "PATCH"),
        (Method::CONNECT, "CONNECT"),
        (Method::TRACE, "TRACE"),
    ];
    match STANDARD.iter().find(|(s, _)| s == m) {
        Some((_, text)) => std::borrow::Cow::Borrowed(text),
        None => std::borrow::Cow::Owned(m.as_str().to_owned()),
    }
}

fn http_version(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

/// A redirect with an empty body. The location's bytes become the header
/// value without a copy. `Content-Length: 0` comes from the body's exact
/// size, as each protocol writer frames it.
pub fn redirect(status: StatusCode, location: String) -> Response<Body> {
    let mut r = Response::new(Body::Empty);
    *r.status_mut() = status;
    if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(location)) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// A fresh request id as a header value (see [`request_id_bytes`]).
pub(crate) fn request_id() -> HeaderValue {
    // One allocation that clones share (the id goes on the response and in
    // the access record, and to origins); a copied slice would allocate
    // again on its first clone.
    let mut id = HeaderValue::from_maybe_shared(Bytes::from_owner(request_id_bytes()))
        .unwrap_or(HeaderValue::from_static("0"));
    // Unique per response: never worth a slot in the h2 HPACK dynamic table,
    // where it would only evict headers that repeat.
    id.set_sensitive(true);
    id
}

/// A fresh 64-bit request id in hex. Per thread, a counter seeded at random
/// steps through SplitMix64, whose output function is a bijection: ids never
/// repeat within a thread, and threads start at unrelated points. About a
/// tenth of the cost of drawing from the thread's CSPRNG, which ids don't need.
/// As bytes on the stack: the HTTP/1.1 fast path writes them straight into
/// the response, with no allocation.
pub(crate) fn request_id_bytes() -> [u8; 16] {
    thread_local! {
        static STATE: std::cell::Cell<u64> = std::cell::Cell::new(rand::random());
    }
    let mut z = STATE.with(|s| {
        let next = s.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        s.set(next);
        next
    });
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    let n = z ^ (z >> 31);
    let mut buf = [0u8; 16];
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in buf.iter_mut().enumerate() {
        *b = HEX[((n >> (60 - 4 * i)) & 0xf) as usize];
    }
    buf
}

/// The client's address: the peer, or — when the peer is a trusted proxy — the
/// right-most address in `X-Forwarded-For` that is not itself trusted.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[Cidr]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let mut chain: Vec<IpAddr> = Vec::new();
    for v in headers.get_all("x-forwarded-for") {
        let Ok(s) = v.to_str() else { return peer };
        for item in s.split(',') {
            match item.trim().parse::<IpAddr>() {
                Ok(ip) => chain.push(ip),
                Err(_) => return peer,
            }
        }
    }
    chain
        .into_iter()
        .rev()
        .find(|ip| !is_trusted(*ip))
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_text_is_the_method() {
        for m in [
            "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE",
        ] {
            let method = Method::from_bytes(m.as_bytes()).unwrap();
            assert!(matches!(method_text(&method), std::borrow::Cow::Borrowed(t) if t == m));
        }
        let purge = Method::from_bytes(b"PURGE").unwrap();
        assert!(matches!(method_text(&purge), std::borrow::Cow::Owned(t) if t == "PURGE"));
    }

    #[test]
    fn forwarded_for_only_from_trusted_peers() {
        let trusted: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "203.0.113.9, 10.0.0.7".parse().unwrap());
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let stranger: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(
            client_ip(proxy, &h, &trusted),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(stranger, &h, &trusted), stranger);
        h.insert("x-forwarded-for", "garbage".parse().unwrap());
        assert_eq!(client_ip(proxy, &h, &trusted), proxy);
    }

    #[test]
    fn request_ids_are_hex() {
        let id = request_id();
        assert_eq!(id.len(), 16);
        assert!(id.to_str().unwrap().bytes().all(|b| b.is_ascii_hexdigit()));
        let many: std::collections::HashSet<_> = (0..10_000).map(|_| request_id()).collect();
        assert_eq!(many.len(), 10_000, "ids repeat");
    }
}
