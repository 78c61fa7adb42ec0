//! Where certificates come from: the [`CertSource`] trait and its in-memory fake.
//!
//! The edge asks a source only on a cache miss, after the ClientHello has been
//! read, so a slow store delays that one handshake and blocks no thread.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::RwLock;

/// A certificate as the metadata store keeps it.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredCert {
    /// The chain as PEM, leaf first.
    pub chain_pem: String,
    /// The private key PEM, sealed with the [`NodeKey`](crate::NodeKey).
    pub sealed_key: Vec<u8>,
    /// Increases each time the domain's certificate is replaced.
    pub version: u64,
}

impl fmt::Debug for StoredCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredCert")
            .field("chain_pem_len", &self.chain_pem.len())
            .field("sealed_key_len", &self.sealed_key.len())
            .field("version", &self.version)
            .finish()
    }
}

/// Why a source could not answer. The resolver logs it and refuses the
/// handshake; the next handshake for the name asks again.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The backing store failed (database down, timeout, ...).
    #[error("certificate store: {0}")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Gives the certificate stored for a server name.
///
/// `cert_for` receives a normalised name (lowercase, no trailing dot) and
/// returns the certificate stored for exactly that domain, or `None`. A
/// source that keeps tenant wildcards (`*.example.com`) may return one for
/// `a.example.com`; the resolver checks that whatever comes back covers the name.
#[async_trait::async_trait]
pub trait CertSource: Send + Sync {
    /// The certificate for `server_name`, if one is stored.
    async fn cert_for(&self, server_name: &str) -> Result<Option<StoredCert>, SourceError>;
}

/// An in-memory [`CertSource`] for tests: a map from name to certificate, and
/// a count of lookups so tests can see the cache at work.
#[derive(Debug, Default)]
pub struct MemCertSource {
    certs: RwLock<HashMap<String, StoredCert>>,
    lookups: AtomicUsize,
    failing: std::sync::atomic::AtomicBool,
}

// === impl MemCertSource ===

impl MemCertSource {
    /// An empty source.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores (or replaces) the certificate for `name`.
    pub fn insert(&self, name: &str, cert: StoredCert) {
        self.write().insert(name.to_ascii_lowercase(), cert);
    }

    /// Forgets the certificate for `name`.
    pub fn remove(&self, name: &str) {
        self.write().remove(&name.to_ascii_lowercase());
    }

    /// How many times `cert_for` was called.
    pub fn lookups(&self) -> usize {
        self.lookups.load(Ordering::Relaxed)
    }

    /// Makes every later lookup fail (`true`) or succeed again (`false`).
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::Relaxed);
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, StoredCert>> {
        self.certs.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait::async_trait]
impl CertSource for MemCertSource {
    async fn cert_for(&self, server_name: &str) -> Result<Option<StoredCert>, SourceError> {
        self.lookups.fetch_add(1, Ordering::Relaxed);
        if self.failing.load(Ordering::Relaxed) {
            return Err(SourceError::Store(
                "store unavailable (MemCertSource)".into(),
            ));
        }
        let certs = self.certs.read().unwrap_or_else(|e| e.into_inner());
        Ok(certs.get(server_name).cloned())
    }
}
