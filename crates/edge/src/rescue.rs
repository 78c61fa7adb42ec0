//! The one place where errors become responses: every status code the edge
//! decides by itself is chosen here.

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use crate::body::Body;

/// Everything that can end a request early.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// Malformed request (path, host, headers).
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The request target is longer than the edge accepts.
    #[error("URI too long")]
    UriTooLong,
    /// The declared body is larger than the edge accepts.
    #[error("request body too large")]
    BodyTooLarge,
    /// No site serves this host.
    #[error("no site is configured for this host")]
    UnknownHost,
    /// The site (or alias) has nothing ready to serve.
    #[error("nothing is published here yet")]
    NothingPublished,
    /// Method other than GET or HEAD on a static file.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// Storage failed under a request.
    #[error("storage error: {0}")]
    Storage(#[from] ledge_store::BlobError),
    /// The `nf_jwt` cookie could not be read while a role rule applies.
    #[error("the nf_jwt cookie is not a valid token")]
    BadJwt,
    /// A rule sends the request to a serverless function, which Ledge does not run.
    #[error("serverless functions are not supported: the rule targets {0}")]
    FunctionUnsupported(String),
    /// A proxy rule's target is not a usable URL, or its signing secret is missing.
    #[error("{0}")]
    BadProxyTarget(String),
    /// The outbound policy refused the proxy target.
    #[error("the proxy target is not allowed: {0}")]
    ProxyRefused(String),
    /// The origin could not be reached.
    #[error("the origin could not be reached: {0}")]
    OriginUnreachable(String),
    /// The origin did not answer in time.
    #[error("the origin did not answer within {0:?}")]
    OriginTimeout(std::time::Duration),
    /// The Host belongs to another site than the TLS server name.
    #[error("this connection was made for another site: open a new connection for this host")]
    Misdirected,
    /// An edge function failed and its `onError` is `fail`.
    #[error("the edge function {function:?} failed: {why}")]
    FunctionFailed {
        /// Its name.
        function: String,
        /// Why, for visitors (no tenant details).
        why: String,
    },
    /// Too many requests wait for edge functions on this node.
    #[error("too many requests are waiting for edge functions on this server; try again shortly")]
    FunctionsOverloaded,
    /// The request already went through Ledge proxies too many times.
    #[error("proxy loop: this request already passed through Ledge")]
    ProxyLoop,
}

impl EdgeError {
    /// The status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::UriTooLong => StatusCode::URI_TOO_LONG,
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnknownHost | Self::NothingPublished => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::BadJwt => StatusCode::BAD_REQUEST,
            Self::FunctionUnsupported(_) => StatusCode::NOT_IMPLEMENTED,
            Self::BadProxyTarget(_) | Self::ProxyRefused(_) | Self::OriginUnreachable(_) => {
                StatusCode::BAD_GATEWAY
            }
            Self::OriginTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::FunctionFailed { .. } => StatusCode::BAD_GATEWAY,
            Self::FunctionsOverloaded => StatusCode::SERVICE_UNAVAILABLE,
            Self::ProxyLoop => StatusCode::LOOP_DETECTED,
            Self::Misdirected => StatusCode::MISDIRECTED_REQUEST,
        }
    }
}

/// The platform's own page for `err`.
pub fn rescue(err: &EdgeError) -> Response<Body> {
    let status = err.status();
    match err {
        EdgeError::Storage(_) => tracing::error!(error = %err, "request failed"),
        e if status.is_server_error() => tracing::debug!(error = %e, "request failed"),
        _ => {}
    }
    let (title, detail) = match err {
        EdgeError::UnknownHost => (
            "Site not found",
            "No site is configured for this address.".to_owned(),
        ),
        EdgeError::NothingPublished => (
            "Not found",
            "This site has no published deploy yet.".to_owned(),
        ),
        EdgeError::Storage(_) => (
            "Internal error",
            "The server could not read this site's files. Try again shortly.".to_owned(),
        ),
        EdgeError::BadProxyTarget(_)
        | EdgeError::ProxyRefused(_)
        | EdgeError::OriginUnreachable(_) => ("Bad gateway", err.to_string()),
        EdgeError::OriginTimeout(_) => ("Gateway timeout", err.to_string()),
        EdgeError::FunctionFailed { .. } => ("Edge function failed", err.to_string()),
        other => (
            status.canonical_reason().unwrap_or("Error"),
            other.to_string(),
        ),
    };
    let mut r = platform_page(status, title, &detail);
    if matches!(err, EdgeError::FunctionsOverloaded) {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    if matches!(err, EdgeError::MethodNotAllowed) {
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    }
    r
}

/// A small HTML page from the platform.
pub fn platform_page(status: StatusCode, title: &str, detail: &str) -> Response<Body> {
    let html = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body><h1>{title}</h1><p>{}</p><hr><p>ledge</p></body></html>\n",
        escape(detail)
    );
    let mut r = Response::new(Body::full(html.clone()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(html.len()));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
