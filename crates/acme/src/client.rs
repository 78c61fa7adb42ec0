//! The HTTP client for the ACME API: rustls with `ring`, the system's roots
//! plus an optional extra root, and a timeout per request.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::AcmeError;

type Inner = Client<hyper_rustls::HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>;

/// An [`HttpClient`] whose every request gives up after `timeout`.
pub(crate) struct AcmeHttp {
    inner: Inner,
    timeout: Duration,
}

impl AcmeHttp {
    /// Trusts the system's roots and, if given, every certificate in `extra_root_pem`.
    pub(crate) fn new(extra_root_pem: Option<&str>, timeout: Duration) -> Result<Self, AcmeError> {
        let mut roots = RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        let (added, _ignored) = roots.add_parsable_certificates(native.certs);
        if let Some(pem) = extra_root_pem {
            let mut found = 0;
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let cert = cert.map_err(|e| {
                    AcmeError::Config(format!("extra root PEM does not parse: {e}"))
                })?;
                roots.add(cert).map_err(|e| {
                    AcmeError::Config(format!("extra root is not a usable CA certificate: {e}"))
                })?;
                found += 1;
            }
            if found == 0 {
                return Err(AcmeError::Config(
                    "extra root PEM holds no CERTIFICATE block".into(),
                ));
            }
        } else if added == 0 {
            tracing::warn!("no system root certificates found; ACME server TLS will not verify");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| AcmeError::Config(format!("TLS client configuration: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .build();
        Ok(Self {
            inner: Client::builder(TokioExecutor::new()).build(connector),
            timeout,
        })
    }
}

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let fut = self.inner.request(req);
        let timeout = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, fut).await {
                Ok(Ok(rsp)) => Ok(BytesResponse::from(rsp)),
                Ok(Err(e)) => Err(instant_acme::Error::Other(Box::new(e))),
                Err(_) => Err(instant_acme::Error::Other(
                    format!("no response from the ACME server within {timeout:?}").into(),
                )),
            }
        })
    }
}
