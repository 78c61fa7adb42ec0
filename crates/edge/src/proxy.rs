//! Proxy rules: stream a request to an origin through the [`Origin`] client and
//! its response back, with hop-by-hop headers removed and the forwarding
//! headers added (spec §1.10).

use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::BodyExt;

use crate::body::Body;
use crate::outbound::Origin;
use crate::rescue::EdgeError;

/// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

/// Request header counting proxy hops through Ledge nodes; one hop is allowed
/// (a site proxying to another Ledge site), more is a loop.
pub const HOPS_HEADER: &str = "x-ledge-proxy-hops";
/// Most Ledge-to-Ledge proxy hops for one request.
pub const MAX_HOPS: u32 = 1;

/// Copies `src` without hop-by-hop headers (and those named in `Connection`).
pub fn strip_hop_by_hop(src: &HeaderMap) -> HeaderMap {
    let named: Vec<String> = src
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    let mut out = HeaderMap::with_capacity(src.len());
    for (k, v) in src {
        let name = k.as_str();
        if HOP_BY_HOP.contains(&name) || name == "upgrade" || named.iter().any(|n| n == name) {
            continue;
        }
        out.append(k.clone(), v.clone());
    }
    out
}

/// What the edge knows about the request being proxied.
pub struct Forwarding<'a> {
    /// Client address chain for `X-Forwarded-For`.
    pub forwarded_for: String,
    /// `http` or `https`.
    pub proto: &'a str,
    /// The original Host.
    pub host: &'a str,
    /// `x-ledge-id`.
    pub request_id: &'a HeaderValue,
    /// Visitor country, when known.
    pub country: Option<&'a str>,
    /// Hops so far.
    pub hops: u32,
}

/// Sends the request to `url` and streams the answer back.
#[allow(clippy::too_many_arguments)]
pub async fn forward<B>(
    origin: &Origin,
    method: &http::Method,
    url: &str,
    req_headers: &HeaderMap,
    body: B,
    max_body: u64,
    rule_headers: &[(String, String)],
    fwd: Forwarding<'_>,
) -> Result<Response<Body>, EdgeError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if fwd.hops > MAX_HOPS {
        return Err(EdgeError::ProxyLoop);
    }
    let target: reqwest::Url = url
        .parse()
        .map_err(|_| EdgeError::BadProxyTarget(format!("{url:?} is not a valid URL")))?;
    origin
        .check_url(&target)
        .map_err(|e| EdgeError::ProxyRefused(e.to_string()))?;

    let mut headers = strip_hop_by_hop(req_headers);
    headers.remove(header::HOST);
    let mut set = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    };
    set("x-forwarded-for", &fwd.forwarded_for);
    set("x-forwarded-proto", fwd.proto);
    set("x-forwarded-host", fwd.host);
    set(
        "x-nf-client-connection-ip",
        fwd.forwarded_for.rsplit(", ").next().unwrap_or(""),
    );
    set("via", "1.1 ledge");
    set(HOPS_HEADER, &(fwd.hops + 1).to_string());
    if let Some(c) = fwd.country {
        set("x-country", c);
    }
    if let Some(lang) = req_headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
    {
        let lang = lang.to_owned();
        set("x-language", &lang);
    }
    headers.insert(
        HeaderName::from_static("x-nf-request-id"),
        fwd.request_id.clone(),
    );
    for (k, v) in rule_headers {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            headers.insert(k, v);
        }
    }

    // Stream the request body, refusing it past the limit.
    let mut seen = 0u64;
    let stream = TryStreamExt::map_err(
        http_body_util::BodyStream::new(body),
        |e| -> Box<dyn std::error::Error + Send + Sync> { e.into() },
    )
    .try_filter_map(|frame| futures_util::future::ready(Ok(frame.into_data().ok())))
    .map(move |chunk| {
        let chunk = chunk?;
        seen += chunk.len() as u64;
        if seen > max_body {
            return Err::<Bytes, Box<dyn std::error::Error + Send + Sync>>(
                "request body too large".into(),
            );
        }
        Ok(chunk)
    });
    let request = origin
        .client
        .request(method.clone(), target)
        .headers(headers)
        .body(reqwest::Body::wrap_stream(stream));

    let resp = match tokio::time::timeout(origin.response_timeout, request.send()).await {
        Err(_) => return Err(EdgeError::OriginTimeout(origin.response_timeout)),
        Ok(Err(e)) if e.is_timeout() => {
            return Err(EdgeError::OriginTimeout(origin.response_timeout))
        }
        Ok(Err(e)) => return Err(EdgeError::OriginUnreachable(root_cause(&e))),
        Ok(Ok(r)) => r,
    };
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let headers = strip_hop_by_hop(resp.headers());
    let body = http_body_util::StreamBody::new(TryStreamExt::map_err(
        resp.bytes_stream().map_ok(http_body::Frame::data),
        |e| std::io::Error::other(e.to_string()),
    ));
    let mut out = Response::new(Body::Stream(body.boxed_unsync()));
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    Ok(out)
}

fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Default time allowed for an origin's response head (Netlify uses 26 s).
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(26);
