//! Phase 5 (cache) around a proxy rule: a hit answers at once, a stale entry
//! answers at once while one request refreshes it in the background, a miss
//! goes to the origin with the cache's conditional headers and is stored as
//! it streams to the client; concurrent misses for one key share one fill
//! (all of it in `ledge-cache`).
//!
//! The key is the cache's (site, host, path, query, `Vary` / `Netlify-Vary`
//! inputs, deploy) plus the index of the rule that matched: the rules run
//! before the cache, so the conditions that chose an origin (`Country=`,
//! `Language=`, `Cookie=`) are in the key through the rule they selected.

use bytes::Bytes;
use http::{HeaderMap, Response};
use http_body_util::BodyExt;
use ledge_cache::{CacheRequest, Lookup, ResponseSource, RuleVary};
use ledge_telemetry::CacheStatus;

use crate::body::Body;
use crate::pipeline::{Edge, RequestCtx};
use crate::proxy::{self, Forwarding};
use crate::rescue::EdgeError;

/// A proxy rule as the cache phase sends it on.
pub(crate) struct Upstream<'a> {
    pub url: &'a str,
    pub rule_headers: &'a [(String, String)],
    /// The forwarding headers, built only when the origin is asked.
    pub fwd: &'a (dyn Fn() -> Forwarding<'a> + Send + Sync),
}

fn into_body(r: Response<ledge_cache::CacheBody>) -> Response<Body> {
    r.map(|b| Body::Stream(b.boxed_unsync()))
}

impl Edge {
    /// The cache phase for one proxied request.
    pub(crate) async fn cached_proxy<B>(
        &self,
        cache: &ledge_cache::Cache,
        ctx: &RequestCtx,
        parts: &http::request::Parts,
        body: B,
        up: Upstream<'_>,
    ) -> Result<(Response<Body>, CacheStatus), EdgeError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let Some(target) = &ctx.target else {
            return Err(EdgeError::NothingPublished);
        };
        // `host#rule`: the rule's index is part of the key (see the module
        // comment). Written by hand: this runs on every cached request.
        let mut host = String::with_capacity(ctx.host.len() + 21);
        host.push_str(&ctx.host);
        host.push('#');
        let rule = ctx.rule.map_or(u64::MAX, |r| r as u64);
        host.push_str(ledge_core::num::decimal(rule, &mut [0; 20]));
        let req = CacheRequest {
            site: target.site.as_str(),
            deploy: Some(target.deploy.as_str()),
            method: &parts.method,
            host: &host,
            path: parts.uri.path(),
            query: parts.uri.query(),
            headers: &parts.headers,
            country: ctx.country.as_deref(),
        };
        match cache.lookup(&req).await {
            Lookup::Hit(r) => Ok((into_body(r.into_response()), CacheStatus::Hit)),
            Lookup::Stale { response, refresh } => {
                if let Some(fill) = refresh {
                    self.refresh_in_background(fill, parts, &up);
                }
                Ok((into_body(response.into_response()), CacheStatus::Stale))
            }
            Lookup::Miss(fill) => {
                let headers = fill.origin_headers(&parts.headers);
                match self
                    .send(parts, &headers, body, up.url, up.rule_headers, (up.fwd)())
                    .await
                {
                    Ok(resp) => {
                        let (p, b) = resp.into_parts();
                        let stored = fill
                            .store(p, b, ResponseSource::Proxy, &RuleVary::default())
                            .await;
                        Ok((into_body(stored), CacheStatus::Miss))
                    }
                    Err(e) => match fill.stale_if_error(None).await {
                        Some(r) => Ok((into_body(r.into_response()), CacheStatus::Stale)),
                        None => Err(e),
                    },
                }
            }
            Lookup::Pass(status) => {
                let mut resp = self
                    .send(
                        parts,
                        &parts.headers,
                        body,
                        up.url,
                        up.rule_headers,
                        (up.fwd)(),
                    )
                    .await?;
                cache.pass_headers(resp.headers_mut(), &status);
                Ok((resp, CacheStatus::Bypass))
            }
        }
    }

    /// The request to the origin, with `headers` in place of the client's.
    async fn send<B>(
        &self,
        parts: &http::request::Parts,
        headers: &HeaderMap,
        body: B,
        url: &str,
        rule_headers: &[(String, String)],
        fwd: Forwarding<'_>,
    ) -> Result<Response<Body>, EdgeError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        proxy::forward(
            &self.origin,
            &parts.method,
            url,
            headers,
            body,
            self.config.max_body,
            rule_headers,
            fwd,
        )
        .await
    }

    /// `stale-while-revalidate`: the one request handed the refresh fetches
    /// in a task of its own, so no client waits for it.
    fn refresh_in_background(
        &self,
        fill: ledge_cache::FillGuard,
        parts: &http::request::Parts,
        up: &Upstream<'_>,
    ) {
        let origin = self.origin.clone();
        let method = parts.method.clone();
        let headers = fill.origin_headers(&parts.headers);
        let url = up.url.to_owned();
        let rule_headers = up.rule_headers.to_vec();
        let max_body = self.config.max_body;
        let f = (up.fwd)();
        let forwarded_for = f.forwarded_for;
        let proto = f.proto.to_owned();
        let host = f.host.to_owned();
        let request_id = f.request_id.clone();
        let country = f.country.map(str::to_owned);
        let hops = f.hops;
        tokio::spawn(async move {
            let fwd = Forwarding {
                forwarded_for,
                proto: &proto,
                host: &host,
                request_id: &request_id,
                country: country.as_deref(),
                hops,
            };
            let body = http_body_util::Empty::<Bytes>::new();
            match proxy::forward(
                &origin,
                &method,
                &url,
                &headers,
                body,
                max_body,
                &rule_headers,
                fwd,
            )
            .await
            {
                Ok(resp) => {
                    let (p, b) = resp.into_parts();
                    // Read to the end so the entry is stored; nobody is waiting.
                    let stored = fill
                        .store(p, b, ResponseSource::Proxy, &RuleVary::default())
                        .await;
                    let _ = stored.into_body().collect().await;
                }
                Err(e) => tracing::debug!(error = %e, url, "background refresh failed"),
            }
        });
    }
}
