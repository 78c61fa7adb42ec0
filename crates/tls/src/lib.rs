//! Certificates for tenant domains: validation, sealed storage and SNI
//! resolution for rustls.
//!
//! What it is:
//! - [`validate`]: checks an uploaded PEM chain and key for a domain (key
//!   matches leaf, chain order, names, validity) with actionable errors;
//! - [`NodeKey`]: seals private keys at rest (ChaCha20-Poly1305);
//! - [`CertSource`]: where stored certificates come from, with
//!   [`MemCertSource`] as the fake;
//! - [`CertResolver`]: SNI name → `CertifiedKey`, cached, plus the
//!   `ServerConfig` (ALPN `h2`, `http/1.1`; shared resumption) to serve it.
//!
//! What it is not: a listener (the edge accepts and calls the resolver), a
//! store (the metadata store implements [`CertSource`]), or an ACME client
//! (later). Only the `ring` crypto provider is used. See `docs/tls.md`.
//!
//! How the edge accepts a connection (tokio-rustls):
//!
//! ```no_run
//! # use std::sync::Arc;
//! # async fn accept(resolver: Arc<ledge_tls::CertResolver>, tcp: tokio::net::TcpStream) -> std::io::Result<()> {
//! let acceptor = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp);
//! let start = acceptor.await?;
//! let sni = start.client_hello().server_name().map(str::to_owned);
//! let config = match resolver.resolve(sni.as_deref()).await {
//!     Some(key) => resolver.server_config(key),
//!     None => resolver.refusing_config(), // sends an alert, never another certificate
//! };
//! let tls = start.into_stream(config).await?;
//! let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
//! # let _ = h2; Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod names;
mod resolver;
mod seal;
mod source;
mod validate;

#[cfg(test)]
mod testutil;

pub use resolver::{
    CertResolver, ResolverError, ALPN_PROTOCOLS, DEFAULT_CACHE_ENTRIES, SESSION_CACHE_ENTRIES,
};
pub use seal::{NodeKey, NodeKeyError, SealError, NODE_KEY_LEN};
pub use source::{CertSource, MemCertSource, SourceError, StoredCert};
pub use validate::{validate, CertError, ValidatedCert, MAX_CHAIN_LEN, MAX_PEM_LEN};

/// The rustls types this API speaks in, so callers need not match versions.
pub use rustls::{server::ServerConfig, sign::CertifiedKey};
