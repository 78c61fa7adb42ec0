//! Shared by `benches/invoke.rs` and `examples/invoke_count.rs`: a host for
//! functions that call neither `next()` nor `fetch()`, and the request they
//! are invoked with.

use async_trait::async_trait;
use ledge_functions::{Host, HostError, HostRequest, HttpResponse, InvocationRequest};

/// A GET of `https://site.example/hello`.
pub fn hello_request() -> InvocationRequest {
    InvocationRequest {
        method: "GET".into(),
        url: "https://site.example/hello".into(),
        headers: vec![
            ("host".into(), "site.example".into()),
            ("accept".into(), "*/*".into()),
        ],
        body: Vec::new(),
        context: Default::default(),
    }
}

/// Refuses `next()` and `fetch()`.
pub struct NoHost;

#[async_trait]
impl Host for NoHost {
    async fn next(&self, _: HostRequest) -> Result<HttpResponse, HostError> {
        Err(HostError::new("none"))
    }
    async fn fetch(&self, _: HostRequest) -> Result<HttpResponse, HostError> {
        Err(HostError::new("none"))
    }
}
