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
