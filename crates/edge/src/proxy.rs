//! Proxy rules: stream a request to an origin through the [`Origin`] client and
//! its response back, with hop-by-hop headers removed and the forwarding
//! headers added (spec §1.10).

use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::BodyExt;

// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1):
// the cache's list, `upgrade` included.
use ledge_cache::policy::HOP_BY_HOP;

use crate::body::Body;
use crate::outbound::Origin;
use crate::rescue::EdgeError;

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
        if HOP_BY_HOP.contains(&name) || named.iter().any(|n| n == name) {
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
    let target = checked_target(origin, url, &fwd)?;

    let headers = request_headers(req_headers, rule_headers, &fwd);
    let authority = origin_key(&target);
    if let Some(left) = origin.health.down_for(&authority) {
        return Err(EdgeError::OriginUnreachable(format!(
            "{authority} failed repeatedly; it is tried again in {} ms",
            left.as_millis()
        )));
    }
    // A request without a body can be sent again: an idempotent one is retried
    // once when the connection could not be made (RFC 9110 §9.2.2).
    let bodyless = !req_headers.contains_key(header::TRANSFER_ENCODING)
        && req_headers
            .get(header::CONTENT_LENGTH)
            .is_none_or(|v| v.as_bytes() == b"0");
    let replayable = bodyless && method.is_idempotent();
    let send = |headers: HeaderMap, body: reqwest::Body| {
        let request = origin
            .client
            .request(method.clone(), target.clone())
            .headers(headers)
            .body(body);
        tokio::time::timeout(origin.response_timeout, request.send())
    };
    let is_connect = |r: &Result<Result<reqwest::Response, reqwest::Error>, _>| matches!(r, Ok(Err(e)) if e.is_connect());
    let first = if bodyless {
        send(headers, reqwest::Body::from(Bytes::new())).await
    } else {
        send(headers, streamed_body(body, max_body)).await
    };
    let mut outcome = first;
    if is_connect(&outcome) {
        origin.health.failed(&authority);
        if replayable {
            tracing::debug!(origin = %authority, "connect failed; retrying once");
            // Rebuilt rather than kept: the retry is rare, the copy would not be.
            let headers = request_headers(req_headers, rule_headers, &fwd);
            outcome = send(headers, reqwest::Body::from(Bytes::new())).await;
            if is_connect(&outcome) {
                origin.health.failed(&authority);
            }
        }
    }
    let resp = match outcome {
        Err(_) => return Err(EdgeError::OriginTimeout(origin.response_timeout)),
        Ok(Err(e)) if e.is_timeout() => {
            return Err(EdgeError::OriginTimeout(origin.response_timeout))
        }
        Ok(Err(e)) => return Err(EdgeError::OriginUnreachable(root_cause(&e))),
        Ok(Ok(r)) => r,
    };
    origin.health.succeeded(&authority);
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

/// The headers sent to the origin: the client's end-to-end headers, the
/// forwarding headers, and the rule's own.
fn request_headers(
    req_headers: &HeaderMap,
    rule_headers: &[(String, String)],
    fwd: &Forwarding<'_>,
) -> HeaderMap {
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
    headers
}

/// Is this an HTTP/1.1 upgrade request (WebSocket and the like)?
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Passes an upgrade request (a WebSocket) through to the origin on a
/// connection of its own: the origin's `101` goes back to the client, then
/// bytes are copied both ways until either side closes. An origin that
/// refuses the upgrade answers as for any proxied request.
pub async fn forward_upgrade(
    origin: &Origin,
    method: &http::Method,
    url: &str,
    req_headers: &HeaderMap,
    client: hyper::upgrade::OnUpgrade,
    rule_headers: &[(String, String)],
    fwd: Forwarding<'_>,
) -> Result<Response<Body>, EdgeError> {
    let target = checked_target(origin, url, &fwd)?;
    let host = target
        .host_str()
        .ok_or_else(|| EdgeError::BadProxyTarget(format!("{url:?} has no host")))?;
    let port = target.port_or_known_default().unwrap_or(80);
    let authority = origin_key(&target);
    if origin.health.down_for(&authority).is_some() {
        return Err(EdgeError::OriginUnreachable(format!(
            "{authority} failed repeatedly"
        )));
    }
    let bare_host = host.trim_start_matches('[').trim_end_matches(']');
    let addrs = crate::outbound::resolve_allowed(&origin.policy, bare_host, port)
        .await
        .map_err(|e| EdgeError::ProxyRefused(e.to_string()))?;

    let connect = async {
        let mut last = None;
        for addr in addrs {
            match tokio::net::TcpStream::connect(addr).await {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no address")))
    };
    let tcp = match tokio::time::timeout(origin.connect_timeout, connect).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            origin.health.failed(&authority);
            return Err(EdgeError::OriginUnreachable(e.to_string()));
        }
        Err(_) => {
            origin.health.failed(&authority);
            return Err(EdgeError::OriginTimeout(origin.connect_timeout));
        }
    };
    let _ = tcp.set_nodelay(true);

    let mut headers = request_headers(req_headers, rule_headers, &fwd);
    // The upgrade itself is hop-by-hop, and forwarded on purpose.
    if let Some(up) = req_headers.get(header::UPGRADE) {
        headers.insert(header::UPGRADE, up.clone());
    }
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    let host_value = match target.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    };
    if let Ok(v) = HeaderValue::from_str(&host_value) {
        headers.insert(header::HOST, v);
    }
    let path = match target.query() {
        Some(q) => format!("{}?{q}", target.path()),
        None => target.path().to_owned(),
    };
    let mut request = http::Request::new(http_body_util::Empty::<Bytes>::new());
    *request.method_mut() = method.clone();
    *request.uri_mut() = path
        .parse()
        .map_err(|_| EdgeError::BadProxyTarget(format!("{url:?} has an invalid path")))?;
    *request.headers_mut() = headers;

    let head = async {
        if target.scheme() == "https" {
            let name = rustls::pki_types::ServerName::try_from(bare_host.to_owned())
                .map_err(|e| EdgeError::BadProxyTarget(e.to_string()))?;
            let tls = tokio_rustls::TlsConnector::from(origin.tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| EdgeError::OriginUnreachable(format!("TLS: {e}")))?;
            send_upgrade(hyper_util::rt::TokioIo::new(tls), request).await
        } else {
            send_upgrade(hyper_util::rt::TokioIo::new(tcp), request).await
        }
    };
    let mut resp = match tokio::time::timeout(origin.response_timeout, head).await {
        Ok(r) => r?,
        Err(_) => return Err(EdgeError::OriginTimeout(origin.response_timeout)),
    };
    origin.health.succeeded(&authority);
    let status = resp.status();
    if status != StatusCode::SWITCHING_PROTOCOLS {
        let mut out = Response::new(Body::Stream(
            resp.into_body()
                .map_err(|e| std::io::Error::other(e.to_string()))
                .boxed_unsync(),
        ));
        *out.status_mut() = status;
        return Ok(out);
    }
    let mut out_headers = strip_hop_by_hop(resp.headers());
    if let Some(up) = resp.headers().get(header::UPGRADE) {
        out_headers.insert(header::UPGRADE, up.clone());
    }
    out_headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    let upstream = hyper::upgrade::on(&mut resp);
    tokio::spawn(async move {
        let (client, upstream) = match tokio::join!(client, upstream) {
            (Ok(c), Ok(u)) => (c, u),
            (c, u) => {
                tracing::debug!(
                    client = c.is_ok(),
                    origin = u.is_ok(),
                    "upgrade did not complete"
                );
                return;
            }
        };
        let mut client = hyper_util::rt::TokioIo::new(client);
        let mut upstream = hyper_util::rt::TokioIo::new(upstream);
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            tracing::debug!(error = %e, "upgraded connection ended with an error");
        }
    });
    let mut out = Response::new(Body::Empty);
    *out.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *out.headers_mut() = out_headers;
    Ok(out)
}

/// One request on a fresh HTTP/1.1 client connection that may be upgraded.
async fn send_upgrade<I>(
    io: I,
    request: http::Request<http_body_util::Empty<Bytes>>,
) -> Result<Response<hyper::body::Incoming>, EdgeError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| EdgeError::OriginUnreachable(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "origin connection ended with an error");
        }
    });
    sender
        .send_request(request)
        .await
        .map_err(|e| EdgeError::OriginUnreachable(root_cause(&e)))
}

/// The rule's target URL, once the hop count and the outbound policy (for IP
/// literals; names are checked when resolved) allow it.
fn checked_target(
    origin: &Origin,
    url: &str,
    fwd: &Forwarding<'_>,
) -> Result<reqwest::Url, EdgeError> {
    if fwd.hops > MAX_HOPS {
        return Err(EdgeError::ProxyLoop);
    }
    let target: reqwest::Url = url
        .parse()
        .map_err(|_| EdgeError::BadProxyTarget(format!("{url:?} is not a valid URL")))?;
    origin
        .check_url(&target)
        .map_err(|e| EdgeError::ProxyRefused(e.to_string()))?;
    Ok(target)
}

/// `host:port` of a target, the unit of passive health.
fn origin_key(url: &reqwest::Url) -> String {
    format!(
        "{}:{}",
        url.host_str().unwrap_or(""),
        url.port_or_known_default().unwrap_or(0)
    )
}

/// The request body as a stream, refused past `max_body` bytes.
fn streamed_body<B>(body: B, max_body: u64) -> reqwest::Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
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
    reqwest::Body::wrap_stream(stream)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::{OriginOptions, OutboundPolicy};

    fn fwd(id: &HeaderValue) -> Forwarding<'_> {
        Forwarding {
            forwarded_for: "203.0.113.9".into(),
            proto: "http",
            host: "site.example",
            request_id: id,
            country: None,
            hops: 0,
        }
    }

    /// A connect failure is retried once for an idempotent request without a
    /// body, never for one with a body; each attempt counts once toward the
    /// origin's passive health.
    #[tokio::test]
    async fn connect_failures_retry_idempotent_requests_once() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let origin = Origin::new(
            OutboundPolicy {
                allow: vec!["127.0.0.0/8".parse().unwrap()],
                control_api: None,
            },
            &OriginOptions {
                fail_threshold: 100,
                ..Default::default()
            },
        )
        .unwrap();
        let key = format!("127.0.0.1:{}", closed.port());
        let url = format!("http://{closed}/x");
        let id = HeaderValue::from_static("0123456789abcdef");
        let none = http_body_util::Empty::<Bytes>::new();
        let get = forward(
            &origin,
            &http::Method::GET,
            &url,
            &HeaderMap::new(),
            none,
            1 << 20,
            &[],
            fwd(&id),
        )
        .await;
        assert!(matches!(get, Err(EdgeError::OriginUnreachable(_))));
        assert_eq!(origin.health.failures(&key), 2, "tried, then retried once");

        let mut with_body = HeaderMap::new();
        with_body.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        let body = http_body_util::Full::new(Bytes::from_static(b"hello"));
        let post = forward(
            &origin,
            &http::Method::POST,
            &url,
            &with_body,
            body,
            1 << 20,
            &[],
            fwd(&id),
        )
        .await;
        assert!(matches!(post, Err(EdgeError::OriginUnreachable(_))));
        assert_eq!(
            origin.health.failures(&key),
            3,
            "a request with a body is not retried"
        );

        let put = forward(
            &origin,
            &http::Method::PUT,
            &url,
            &with_body,
            http_body_util::Full::new(Bytes::from_static(b"hello")),
            1 << 20,
            &[],
            fwd(&id),
        )
        .await;
        assert!(put.is_err());
        assert_eq!(
            origin.health.failures(&key),
            4,
            "idempotent, but its body is gone"
        );
    }
}
