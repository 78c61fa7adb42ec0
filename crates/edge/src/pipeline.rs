//! The life of a request, in order. [`Edge::handle`] is the one function that
//! shows every phase; each phase is a method below it.
//!
//! 1. **accept**: request-target length, declared body size, Host normalised,
//!    client IP (from `X-Forwarded-For` only behind a trusted proxy);
//! 2. **resolve**: Host → site → deploy; the request keeps an `Arc` of the deploy
//!    for its whole life, so a publish never changes a request in flight;
//! 3. **guard**: HTTPS policy, rate limits, firewall (later issues);
//! 4. **functions**, 5. **cache**, 6. **cached functions**: later issues;
//! 7. **rules**: `_redirects` / `netlify.toml` (the rules issue);
//! 8. **static**: path → file, conditional requests, ranges, variants, custom 404;
//! 9. **headers** (on the way out): `x-ledge-id`, `X-Robots-Tag` off production;
//! 10. **log** (on the way out).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use ledge_core::{normalize_host, Cidr};

use crate::body::Body;
use crate::deploys::{BlobCache, DeployCache, LoadedDeploy};
use crate::files;
use crate::rescue::{rescue, EdgeError};
use crate::routes::{Route, RouteTarget, Router};
use crate::static_files::{self, Resolved};

/// Process-lifetime settings of the edge.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<Cidr>,
    /// Longest request target accepted (bytes).
    pub max_uri_len: usize,
    /// Largest request body accepted (bytes).
    pub max_body: u64,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            trusted_proxies: Vec::new(),
            max_uri_len: 8 * 1024,
            max_body: 16 * 1024 * 1024,
        }
    }
}

/// The per-request context every phase reads and extends.
#[derive(Debug)]
pub struct RequestCtx {
    /// `x-ledge-id`.
    pub id: HeaderValue,
    /// The visitor's address.
    pub client_ip: IpAddr,
    /// Normalised host.
    pub host: String,
    /// Where the request goes, once resolved.
    pub target: Option<RouteTarget>,
    /// The deploy serving it, once resolved.
    pub deploy: Option<Arc<LoadedDeploy>>,
}

/// The edge: routing table, deploy and blob caches, and the pipeline.
pub struct Edge {
    /// Host routing.
    pub router: Arc<Router>,
    /// Deploy snapshots.
    pub deploys: DeployCache,
    /// File bytes.
    pub blobs: BlobCache,
    /// Settings.
    pub config: EdgeConfig,
}

impl Edge {
    /// Runs every phase for one request. Never fails: errors are rescued into
    /// responses.
    pub async fn handle<B>(&self, req: Request<B>, peer: SocketAddr) -> Response<Body> {
        let (parts, _body) = req.into_parts();
        let mut ctx = RequestCtx {
            id: request_id(),
            client_ip: peer.ip(),
            host: String::new(),
            target: None,
            deploy: None,
        };
        let result = async {
            self.accept(&mut ctx, &parts)?;
            self.resolve(&mut ctx).await?;
            // guard, functions, cache, cached functions: later phases.
            self.static_phase(
                &ctx,
                &parts.method,
                parts.uri.path(),
                parts.uri.query(),
                &parts.headers,
            )
            .await
        }
        .await;
        let mut resp = result.unwrap_or_else(|e| rescue(&e));
        self.headers_phase(&ctx, &mut resp);
        resp
    }

    /// Phase 1 (accept): limits, Host, client IP.
    fn accept(&self, ctx: &mut RequestCtx, parts: &http::request::Parts) -> Result<(), EdgeError> {
        let target_len = parts.uri.path_and_query().map_or(0, |pq| pq.as_str().len());
        if target_len > self.config.max_uri_len {
            return Err(EdgeError::UriTooLong);
        }
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.config.max_body) {
            return Err(EdgeError::BodyTooLarge);
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
        ctx.client_ip = client_ip(ctx.client_ip, &parts.headers, &self.config.trusted_proxies);
        Ok(())
    }

    /// Phase 2 (resolve): Host → site → deploy snapshot.
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

    /// Phase 8 (static): the file, a folder redirect, or the 404 page.
    async fn static_phase(
        &self,
        ctx: &RequestCtx,
        method: &Method,
        raw_path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<Response<Body>, EdgeError> {
        let Some(deploy) = &ctx.deploy else {
            return Err(EdgeError::NothingPublished);
        };
        if method != Method::GET && method != Method::HEAD {
            return Err(EdgeError::MethodNotAllowed);
        }
        let path = static_files::decode_path(raw_path)
            .map_err(|_| EdgeError::BadRequest("malformed request path"))?;
        match static_files::resolve(deploy, &path) {
            Resolved::File(f) => {
                Ok(
                    files::respond(method, headers, deploy, &f, StatusCode::OK, &self.blobs)
                        .await?,
                )
            }
            Resolved::AddSlash => {
                let mut location =
                    String::with_capacity(raw_path.len() + 2 + query.map_or(0, str::len));
                location.push_str(raw_path);
                location.push('/');
                if let Some(q) = query {
                    location.push('?');
                    location.push_str(q);
                }
                Ok(redirect(StatusCode::MOVED_PERMANENTLY, &location))
            }
            Resolved::NotFound => self.not_found(deploy, method, headers).await,
        }
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
        h.insert("x-ledge-id", ctx.id.clone());
        if ctx.target.as_ref().is_some_and(|t| !t.production) {
            h.insert("x-robots-tag", HeaderValue::from_static("noindex"));
        }
    }
}

/// A redirect with a short body.
pub fn redirect(status: StatusCode, location: &str) -> Response<Body> {
    let mut r = Response::new(Body::Empty);
    *r.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    r
}

fn request_id() -> HeaderValue {
    let mut buf = [0u8; 16];
    let n: u64 = rand::random();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in buf.iter_mut().enumerate() {
        *b = HEX[((n >> (60 - 4 * i)) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&buf).unwrap_or(HeaderValue::from_static("0"))
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
    }
}
