//! A host that answers no `next()` and no `fetch()`: for benchmarks of
//! functions that call neither (shared by `benches/invoke.rs` and
//! `examples/invoke_count.rs`).

use async_trait::async_trait;
use ledge_functions::{Host, HostError, HostRequest, HttpResponse};

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
