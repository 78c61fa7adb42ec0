//! Choosing the certificate for a ClientHello.
//!
//! The edge reads the ClientHello with tokio-rustls's `LazyConfigAcceptor`,
//! awaits [`CertResolver::resolve`] with its SNI name, and finishes the
//! handshake with [`CertResolver::server_config`] for the certificate it got,
//! or sends an alert when it got none. A handshake therefore waits on the
//! store without blocking a thread, and only on a cache miss.
//!
//! Choice, for a name normalised to lowercase without a trailing dot:
//! 1. the cache (names resolved before, until [`CertResolver::invalidate`]);
//! 2. the [`CertSource`]: the tenant's certificate for exactly that name
//!    (exact names win over the platform wildcard);
//! 3. the platform wildcard `*.EDGE_DOMAIN`, for names one label under it;
//! 4. nothing: the edge refuses the handshake. Never another tenant's
//!    certificate, and never the default one for a name that was sent.
//!
//! A ClientHello without SNI gets the default certificate if one is set.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use quick_cache::sync::Cache;
use rustls::server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use crate::names;
use crate::seal::NodeKey;
use crate::source::{CertSource, StoredCert};
use crate::validate::{self, fingerprint};

/// Names kept in the certificate cache by default.
pub const DEFAULT_CACHE_ENTRIES: usize = 10_000;

/// TLS sessions kept for resumption (shared by every certificate's config).
pub const SESSION_CACHE_ENTRIES: usize = 64 * 1024;

/// ALPN protocols offered, in preference order: HTTP/2, then HTTP/1.1.
pub const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Why a [`CertResolver`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResolverError {
    /// rustls refused the configuration (no ring support for a version,
    /// or the ticketer could not be made).
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// The platform wildcard: `*.EDGE_DOMAIN` and its certificate.
struct EdgeWildcard {
    domain: String,
    key: Arc<CertifiedKey>,
}

/// Resolves SNI names to certificates, caching them, and builds the
/// `ServerConfig` each certificate is served with.
pub struct CertResolver {
    source: Arc<dyn CertSource>,
    node_key: Arc<NodeKey>,
    certs: Cache<String, Arc<CertifiedKey>>,
    /// Names the source had nothing (usable) for, so repeated handshakes for
    /// an unknown name do not each ask the store.
    misses: Cache<String, ()>,
    /// Bumped by every invalidation; a load that raced one is not cached.
    generation: AtomicU64,
    edge: ArcSwapOption<EdgeWildcard>,
    default: ArcSwapOption<CertifiedKey>,
    configs: Cache<[u8; 32], Arc<ServerConfig>>,
    /// Resolves no certificate: every config is a clone with its own resolver,
    /// and the template itself refuses handshakes with an alert.
    template: Arc<ServerConfig>,
}

// === impl CertResolver ===

impl CertResolver {
    /// A resolver over `source`, unsealing keys with `node_key`, caching up
    /// to [`DEFAULT_CACHE_ENTRIES`] names.
    pub fn new(source: Arc<dyn CertSource>, node_key: Arc<NodeKey>) -> Result<Self, ResolverError> {
        Self::with_capacity(source, node_key, DEFAULT_CACHE_ENTRIES)
    }

    /// Like [`CertResolver::new`], caching up to `entries` names (and as many
    /// server configs and unknown names).
    pub fn with_capacity(
        source: Arc<dyn CertSource>,
        node_key: Arc<NodeKey>,
        entries: usize,
    ) -> Result<Self, ResolverError> {
        let entries = entries.max(1);
        Ok(Self {
            source,
            node_key,
            certs: Cache::new(entries),
            misses: Cache::new(entries),
            generation: AtomicU64::new(0),
            edge: ArcSwapOption::empty(),
            default: ArcSwapOption::empty(),
            configs: Cache::new(entries),
            template: Arc::new(template_config()?),
        })
    }

    /// Serves `key` for every name one label under `edge_domain`
    /// (`site.EDGE_DOMAIN`, `deploy--site.EDGE_DOMAIN`) that has no
    /// certificate of its own. Check it first with
    /// [`validate`](crate::validate) for some `x.EDGE_DOMAIN`.
    pub fn with_edge_wildcard(self, edge_domain: &str, key: Arc<CertifiedKey>) -> Self {
        self.set_edge_wildcard(Some((edge_domain, key)));
        self
    }

    /// Serves `key` to ClientHellos without SNI (clients that connect by IP).
    pub fn with_default(self, key: Arc<CertifiedKey>) -> Self {
        self.set_default(Some(key));
        self
    }

    /// Replaces (or removes) the platform wildcard; new handshakes use it at once.
    pub fn set_edge_wildcard(&self, wildcard: Option<(&str, Arc<CertifiedKey>)>) {
        let wildcard = wildcard.and_then(|(domain, key)| {
            let domain = names::normalize(domain);
            if domain.is_none() {
                tracing::warn!("edge wildcard ignored: the edge domain is not a valid name");
            }
            domain.map(|domain| Arc::new(EdgeWildcard { domain, key }))
        });
        self.edge.store(wildcard);
        // Names answered with the old wildcard are cached; forget them all.
        self.invalidate_all();
    }

    /// Replaces (or removes) the certificate for ClientHellos without SNI.
    pub fn set_default(&self, key: Option<Arc<CertifiedKey>>) {
        self.default.store(key);
    }

    /// The certificate for a ClientHello's SNI name, or `None` if the
    /// handshake must be refused. See the module docs for the order.
    pub async fn resolve(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let Some(sni) = sni else {
            return self.default.load_full();
        };
        let name = names::normalize(sni)?;
        if name.starts_with('*') {
            return None;
        }
        if let Some(key) = self.certs.get(&name) {
            return Some(key);
        }
        if self.misses.get(&name).is_some() {
            return None;
        }
        // One load per name at a time: concurrent handshakes wait for it.
        let guard = match self.certs.get_value_or_guard_async(&name).await {
            Ok(key) => return Some(key),
            Err(guard) => guard,
        };
        if self.misses.get(&name).is_some() {
            return None;
        }
        let generation = self.generation.load(Ordering::Acquire);
        let found = self.load(&name).await;
        let current = self.generation.load(Ordering::Acquire) == generation;
        match found {
            Load::Found(key) => {
                if current {
                    let _ = guard.insert(key.clone());
                }
                Some(key)
            }
            Load::Missing => {
                if current {
                    self.misses.insert(name, ());
                }
                None
            }
            Load::Unsure(key) => Some(key),
            Load::Failed => None,
        }
    }

    /// Forgets what is cached for `name`, so the next handshake asks the
    /// source again. The edge calls it when the change feed reports a
    /// certificate or domain change.
    pub fn invalidate(&self, name: &str) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Some(name) = names::normalize(name) {
            self.certs.remove(&name);
            self.misses.remove(&name);
        }
    }

    /// Forgets every cached name (after a change-feed gap, or a new wildcard).
    pub fn invalidate_all(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.certs.clear();
        self.misses.clear();
    }

    /// The `ServerConfig` that serves `key`: TLS 1.3 and 1.2, ALPN `h2` then
    /// `http/1.1`, and session resumption shared by every config this
    /// resolver builds (one session cache, one ticket key set; rustls never
    /// resumes a session under a different SNI name).
    ///
    /// Configs are cached by a SHA-256 over the whole chain, so a re-upload
    /// that only fixes the intermediates gets a config of its own.
    pub fn server_config(&self, key: Arc<CertifiedKey>) -> Arc<ServerConfig> {
        let id = chain_id(&key);
        if let Some(config) = self.configs.get(&id) {
            return config;
        }
        let mut config = ServerConfig::clone(&self.template);
        config.cert_resolver = Arc::new(Fixed(key));
        let config = Arc::new(config);
        self.configs.insert(id, config.clone());
        config
    }

    /// A config that refuses every handshake with a TLS alert: the edge
    /// finishes a ClientHello with it when [`CertResolver::resolve`] gave
    /// nothing, so the client sees a clear failure instead of a reset.
    pub fn refusing_config(&self) -> Arc<ServerConfig> {
        self.template.clone()
    }

    /// Asks the source for `name`, then falls back to the platform wildcard.
    async fn load(&self, name: &str) -> Load {
        match self.source.cert_for(name).await {
            Ok(Some(stored)) => match self.build(name, &stored) {
                Ok(key) => return Load::Found(key),
                Err(reason) => {
                    tracing::warn!(
                        server_name = name,
                        version = stored.version,
                        "stored certificate not served: {reason}"
                    );
                    return Load::Missing;
                }
            },
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(server_name = name, error = %e, "certificate source failed");
                // The platform wildcard is right for the name either way; it
                // is served (uncached) so an edge-domain site stays reachable.
                return match self.edge_wildcard_for(name) {
                    Some(key) => Load::Unsure(key),
                    None => Load::Failed,
                };
            }
        }
        match self.edge_wildcard_for(name) {
            Some(key) => Load::Found(key),
            None => Load::Missing,
        }
    }

    /// The platform wildcard, if `name` is one label under the edge domain.
    fn edge_wildcard_for(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        self.edge
            .load_full()
            .filter(|edge| is_one_label_under(name, &edge.domain))
            .map(|edge| edge.key.clone())
    }

    /// Unseals and checks a stored certificate for `name`.
    fn build(&self, name: &str, stored: &StoredCert) -> Result<Arc<CertifiedKey>, String> {
        let chain = validate::parse_chain(&stored.chain_pem).map_err(|e| e.to_string())?;
        let leaf = x509_parser::parse_x509_certificate(&chain[0])
            .map_err(|e| format!("leaf certificate unreadable: {e}"))?
            .1;
        // Defence in depth: whatever the store returned must cover the name.
        if !names::covers(&validate::leaf_names(&leaf), name) {
            return Err("its names do not cover the server name".into());
        }
        // Served even so (the client then says why), but worth an operator's look.
        let not_after = leaf.validity().not_after;
        if !leaf.validity().is_valid() {
            tracing::warn!(
                server_name = name,
                version = stored.version,
                not_after = not_after.timestamp(),
                "serving a certificate outside its validity period"
            );
        }
        drop(leaf);
        let pem = zeroize::Zeroizing::new(
            self.node_key
                .open(&stored.sealed_key)
                .map_err(|e| format!("private key: {e}"))?,
        );
        let pem =
            std::str::from_utf8(&pem).map_err(|_| "private key is not PEM text".to_string())?;
        let key = validate::load_key(validate::parse_key(pem).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        let certified = CertifiedKey::new(chain, key);
        certified
            .keys_match()
            .map_err(|_| "private key does not match the leaf".to_string())?;
        Ok(Arc::new(certified))
    }
}

impl fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertResolver")
            .field("cached", &self.certs.len())
            .field("misses", &self.misses.len())
            .field("configs", &self.configs.len())
            .field(
                "edge_domain",
                &self.edge.load().as_ref().map(|e| e.domain.clone()),
            )
            .field("default", &self.default.load().is_some())
            .finish_non_exhaustive()
    }
}

enum Load {
    Found(Arc<CertifiedKey>),
    /// Nothing to serve; remembered until invalidated.
    Missing,
    /// The source failed, but the platform wildcard covers the name; not remembered.
    Unsure(Arc<CertifiedKey>),
    /// The source failed; not remembered.
    Failed,
}

/// `site.edge.example` is one label under `edge.example`; `a.b.edge.example` is not.
fn is_one_label_under(name: &str, domain: &str) -> bool {
    name.strip_suffix(domain)
        .and_then(|head| head.strip_suffix('.'))
        .is_some_and(|label| !label.is_empty() && !label.contains('.'))
}

/// SHA-256 over the length-prefixed DER of every certificate in the chain.
fn chain_id(key: &CertifiedKey) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for cert in &key.cert {
        ctx.update(&(cert.len() as u64).to_be_bytes());
        ctx.update(cert);
    }
    let mut id = [0u8; 32];
    id.copy_from_slice(ctx.finish().as_ref());
    id
}

/// The config every certificate's config is cloned from; the clones share
/// its session cache and ticketer.
fn template_config() -> Result<ServerConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(NoCert));
    config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
    config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    Ok(config)
}

/// Always the same certificate: the choice was made before the config.
struct Fixed(Arc<CertifiedKey>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

impl fmt::Debug for Fixed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let leaf = self
            .0
            .cert
            .first()
            .map(|c| fingerprint(c))
            .unwrap_or_default();
        write!(f, "Fixed(leaf sha256 {leaf})")
    }
}

/// The template's resolver, replaced in every clone.
#[derive(Debug)]
struct NoCert;

impl ResolvesServerCert for NoCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        None
    }
}

#[cfg(test)]
mod tests;
