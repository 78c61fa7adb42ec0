//! Helpers shared by the cache tests: a fake origin and a loop that calls
//! the cache the way the edge pipeline does.

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt, Full};
use ledge_cache::{
    Cache, CacheBody, CacheConfig, CacheRequest, Generations, Lookup, ManualClock, ResponseSource,
    RuleVary,
};

pub fn headers(list: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in list {
        h.append(
            http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

pub fn cache_with(config: CacheConfig) -> (Cache, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::fixed());
    let cache = Cache::open(config, clock.clone(), Arc::new(Generations::new())).unwrap();
    (cache, clock)
}

pub fn cache() -> (Cache, Arc<ManualClock>) {
    cache_with(CacheConfig::default())
}

/// A request for `path?query` on site `s1`, deploy `d1`.
pub struct Req {
    pub site: String,
    pub deploy: Option<String>,
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub country: Option<String>,
}

impl Req {
    pub fn get(path_and_query: &str) -> Self {
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
            None => (path_and_query.to_owned(), None),
        };
        Self {
            site: "s1".into(),
            deploy: Some("d1".into()),
            method: Method::GET,
            path,
            query,
            headers: HeaderMap::new(),
            country: None,
        }
    }
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.append(
            http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
        self
    }
    pub fn site(mut self, s: &str) -> Self {
        self.site = s.into();
        self
    }
    pub fn deploy(mut self, d: &str) -> Self {
        self.deploy = Some(d.into());
        self
    }
    pub fn method(mut self, m: Method) -> Self {
        self.method = m;
        self
    }
    pub fn country(mut self, c: &str) -> Self {
        self.country = Some(c.into());
        self
    }
    pub fn as_cache(&self) -> CacheRequest<'_> {
        CacheRequest {
            site: &self.site,
            deploy: self.deploy.as_deref(),
            method: &self.method,
            host: "example.com",
            path: &self.path,
            query: self.query.as_deref(),
            headers: &self.headers,
            country: self.country.as_deref(),
        }
    }
}

/// An origin answering with fixed parts and body, counting calls and
/// recording the request headers it saw.
#[derive(Clone)]
pub struct Origin {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub calls: Arc<AtomicUsize>,
    pub seen: Arc<std::sync::Mutex<Vec<HeaderMap>>>,
}

impl Origin {
    pub fn new(status: u16, h: &[(&str, &str)], body: &str) -> Self {
        Self {
            status: StatusCode::from_u16(status).unwrap(),
            headers: headers(h),
            body: Bytes::copy_from_slice(body.as_bytes()),
            calls: Arc::new(AtomicUsize::new(0)),
            seen: Arc::new(std::sync::Mutex::new(Vec::new())),
        }
    }
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
    pub fn respond(&self, req_headers: HeaderMap) -> (http::response::Parts, Full<Bytes>) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.seen.lock().unwrap().push(req_headers);
        let mut r = http::Response::new(());
        *r.status_mut() = self.status;
        *r.headers_mut() = self.headers.clone();
        (r.into_parts().0, Full::new(self.body.clone()))
    }
}

pub async fn collect(b: CacheBody) -> Bytes {
    b.collect().await.unwrap().to_bytes()
}

/// What the client got.
#[derive(Debug)]
pub struct Got {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Got {
    pub fn cache_status(&self) -> String {
        self.headers
            .get_all("cache-status")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect::<Vec<_>>()
            .join(", ")
    }
    pub fn hit(&self) -> bool {
        self.cache_status().contains("; hit")
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request through the cache the way the pipeline does it: lookup; hit
/// → serve; stale → serve and run the refresh (here inline); miss → origin
/// (with the guard's headers) and store; pass → origin.
pub async fn through(cache: &Cache, req: &Req, origin: &Origin, source: ResponseSource) -> Got {
    through_rule(cache, req, origin, source, &RuleVary::default()).await
}

pub async fn through_rule(
    cache: &Cache,
    req: &Req,
    origin: &Origin,
    source: ResponseSource,
    rule: &RuleVary,
) -> Got {
    match cache.lookup(&req.as_cache()).await {
        Lookup::Hit(r) => Got {
            status: r.status,
            headers: r.headers,
            body: collect(r.body).await,
        },
        Lookup::Stale { response, refresh } => {
            if let Some(fill) = refresh {
                let (parts, body) = origin.respond(fill.origin_headers(&req.headers));
                let resp = fill.store(parts, body, source, rule).await;
                collect(resp.into_body()).await;
            }
            Got {
                status: response.status,
                headers: response.headers,
                body: collect(response.body).await,
            }
        }
        Lookup::Miss(fill) => {
            let (parts, body) = origin.respond(fill.origin_headers(&req.headers));
            let resp = fill.store(parts, body, source, rule).await;
            let (parts, body) = resp.into_parts();
            Got {
                status: parts.status,
                headers: parts.headers,
                body: collect(body).await,
            }
        }
        Lookup::Pass(status) => {
            let (mut parts, body) = origin.respond(req.headers.clone());
            cache.pass_headers(&mut parts.headers, &status);
            Got {
                status: parts.status,
                headers: parts.headers,
                body: body.collect().await.unwrap().to_bytes(),
            }
        }
    }
}

pub const PROXY: ResponseSource = ResponseSource::Proxy;
