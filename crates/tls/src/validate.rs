//! Checking an uploaded certificate chain and private key before it is kept.
//!
//! [`validate`] is what the control API runs on every upload: the chain and key
//! are parsed, the key is matched with the leaf, the chain order, the names and
//! the validity period are checked, and every failure is a [`CertError`] whose
//! message tells the tenant what to fix.

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::crypto::ring as ring_provider;
use rustls::sign::{CertifiedKey, SigningKey};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use crate::names;

/// Most certificates a chain may hold (leaf plus intermediates).
///
/// Real chains have two to four; the cap keeps a hostile upload cheap to check.
pub const MAX_CHAIN_LEN: usize = 10;

/// Largest PEM text accepted for a chain or a key, in bytes.
pub const MAX_PEM_LEN: usize = 64 * 1024;

/// Why an uploaded certificate was refused.
///
/// Each message names the problem and how to fix it; none contains key material.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertError {
    /// The chain or key text is larger than [`MAX_PEM_LEN`].
    #[error(
        "the {what} is {len} bytes, more than the {max}-byte limit; upload only the PEM blocks"
    )]
    TooLarge {
        /// "certificate chain" or "private key".
        what: &'static str,
        /// Bytes received.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The chain text could not be read as PEM.
    #[error("the certificate chain is not valid PEM ({0}); upload the certificates as -----BEGIN CERTIFICATE----- blocks")]
    ChainPem(String),
    /// The chain text holds no certificate.
    #[error("no certificate found; upload the chain as PEM -----BEGIN CERTIFICATE----- blocks, your certificate first")]
    NoCertificate,
    /// The chain has more than [`MAX_CHAIN_LEN`] certificates.
    #[error("the chain has {0} certificates, more than {MAX_CHAIN_LEN}; upload your certificate and its intermediates only")]
    ChainTooLong(usize),
    /// A certificate in the chain could not be parsed as X.509.
    #[error("certificate #{index} in the chain is not a valid X.509 certificate: {reason}")]
    BadCertificate {
        /// Position in the chain, starting at 1 for the leaf.
        index: usize,
        /// What the parser said.
        reason: String,
    },
    /// The key text could not be read as PEM.
    #[error("the private key is not valid PEM ({0}); upload a PKCS#8 (BEGIN PRIVATE KEY), PKCS#1 (BEGIN RSA PRIVATE KEY) or SEC1 (BEGIN EC PRIVATE KEY) block")]
    KeyPem(String),
    /// The key text holds no private key.
    #[error("no private key found; upload a PKCS#8 (BEGIN PRIVATE KEY), PKCS#1 (BEGIN RSA PRIVATE KEY) or SEC1 (BEGIN EC PRIVATE KEY) block")]
    NoPrivateKey,
    /// The key is of a type or size that cannot be used for TLS here.
    #[error("the private key cannot be used ({0}); use an RSA (2048 bits or more), ECDSA P-256/P-384 or Ed25519 key")]
    UnsupportedKey(String),
    /// The key belongs to none of the certificates.
    #[error("the private key does not belong to this certificate; upload the key that was generated with the certificate's signing request")]
    KeyMismatch,
    /// The key belongs to a certificate other than the first one.
    #[error("the private key belongs to certificate #{index} in the chain, not the first; put your own certificate first, then its intermediates")]
    LeafNotFirst {
        /// Position (from 1) of the certificate the key belongs to.
        index: usize,
    },
    /// A certificate was not issued by the one that follows it.
    #[error("the chain is out of order: certificate #{index} was issued by \"{issuer}\" but certificate #{next} is \"{next_subject}\"; order the chain leaf first, each certificate followed by its issuer")]
    ChainOrder {
        /// Position (from 1) of the certificate whose issuer does not follow.
        index: usize,
        /// Its issuer name.
        issuer: String,
        /// Position of the next certificate.
        next: usize,
        /// The next certificate's subject name.
        next_subject: String,
    },
    /// The leaf is restricted to uses other than TLS servers.
    #[error("the certificate's extended key usage does not allow TLS servers (serverAuth); request a TLS server certificate")]
    NotForServers,
    /// The domain is not a valid host name.
    #[error("\"{0}\" is not a valid domain name")]
    InvalidDomain(String),
    /// The leaf has no DNS names at all.
    #[error("the certificate has no DNS names (subjectAltName); request a certificate that lists {domain}")]
    NoNames {
        /// The domain it was uploaded for.
        domain: String,
    },
    /// The leaf's names do not cover the domain.
    #[error("the certificate is for {names} and does not cover {domain}; request one that lists {domain} (or a wildcard *.{parent})", names = .names.join(", "), parent = names::parent(.domain).unwrap_or(.domain))]
    NameMismatch {
        /// The domain it was uploaded for.
        domain: String,
        /// The names the leaf lists.
        names: Vec<String>,
    },
    /// The leaf's validity period ended.
    #[error("the certificate expired at {not_after} (unix time); renew it and upload the new one")]
    Expired {
        /// End of validity, unix seconds.
        not_after: i64,
    },
    /// The leaf's validity period has not begun.
    #[error("the certificate is not valid before {not_before} (unix time); check the clock of the machine that issued it, or upload it later")]
    NotYetValid {
        /// Start of validity, unix seconds.
        not_before: i64,
    },
}

/// A chain and key that passed [`validate`], ready to serve.
///
/// Holds the parsed private key: `Debug` never prints it.
#[derive(Clone)]
pub struct ValidatedCert {
    names: Vec<String>,
    issuer: String,
    not_before: i64,
    not_after: i64,
    fingerprint: String,
    chain: Vec<CertificateDer<'static>>,
    key: Arc<dyn SigningKey>,
}

// === impl ValidatedCert ===

impl ValidatedCert {
    /// The leaf's DNS names (subjectAltName), lowercased, in certificate order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The leaf's issuer, as a readable distinguished name.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Start of the leaf's validity, unix seconds.
    pub fn not_before(&self) -> i64 {
        self.not_before
    }

    /// End of the leaf's validity, unix seconds.
    pub fn not_after(&self) -> i64 {
        self.not_after
    }

    /// SHA-256 of the leaf's DER, lowercase hex.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The chain as DER, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// The chain and key as rustls serves them.
    pub fn certified_key(&self) -> Arc<CertifiedKey> {
        Arc::new(CertifiedKey::new(self.chain.clone(), self.key.clone()))
    }
}

impl fmt::Debug for ValidatedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValidatedCert")
            .field("names", &self.names)
            .field("issuer", &self.issuer)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("fingerprint", &self.fingerprint)
            .field("chain_len", &self.chain.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

/// Checks a PEM chain (leaf first) and a PEM private key for `domain` at `now`.
///
/// Checked in this order, the first failure is returned:
/// 1. both texts parse (PKCS#8, PKCS#1 RSA or SEC1 EC keys);
/// 2. the key belongs to the leaf (and says so if it belongs to a later certificate);
/// 3. each certificate's issuer is the next one's subject (one certificate is fine);
/// 4. the leaf may be used by TLS servers (extended key usage), and its subjectAltName DNS names cover `domain` (`*.example.com` covers
///    exactly one label);
/// 5. `now` lies within the leaf's validity period.
///
/// The issuer signatures and trust roots are not checked: what a browser trusts
/// is the tenant's affair, what the edge must know is that it serves a
/// coherent, current chain for the right name with the right key.
pub fn validate(
    cert_chain_pem: &str,
    key_pem: &str,
    domain: &str,
    now: SystemTime,
) -> Result<ValidatedCert, CertError> {
    let domain = names::normalize(domain).ok_or_else(|| CertError::InvalidDomain(domain.into()))?;
    let chain = parse_chain(cert_chain_pem)?;
    let key_der = parse_key(key_pem)?;
    let parsed = chain
        .iter()
        .enumerate()
        .map(|(i, der)| {
            x509_parser::parse_x509_certificate(der)
                .map(|(_, cert)| cert)
                .map_err(|e| CertError::BadCertificate {
                    index: i + 1,
                    reason: e.to_string(),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;

    let key = load_key(key_der)?;
    check_key(key.as_ref(), &parsed)?;
    check_order(&parsed)?;

    let leaf = &parsed[0];
    if !allows_server_auth(leaf) {
        return Err(CertError::NotForServers);
    }
    let names = leaf_names(leaf);
    if names.is_empty() {
        return Err(CertError::NoNames { domain });
    }
    if !names::covers(&names, &domain) {
        return Err(CertError::NameMismatch { domain, names });
    }

    let not_before = leaf.validity().not_before.timestamp();
    let not_after = leaf.validity().not_after.timestamp();
    let now = unix_secs(now);
    if now > not_after {
        return Err(CertError::Expired { not_after });
    }
    if now < not_before {
        return Err(CertError::NotYetValid { not_before });
    }

    let issuer = leaf.issuer().to_string();
    let fingerprint = fingerprint(&chain[0]);
    drop(parsed);
    Ok(ValidatedCert {
        names,
        issuer,
        not_before,
        not_after,
        fingerprint,
        chain,
        key,
    })
}

/// Parses a PEM chain into DER certificates, leaf first.
pub(crate) fn parse_chain(pem: &str) -> Result<Vec<CertificateDer<'static>>, CertError> {
    if pem.len() > MAX_PEM_LEN {
        return Err(CertError::TooLarge {
            what: "certificate chain",
            len: pem.len(),
            max: MAX_PEM_LEN,
        });
    }
    let mut chain = Vec::new();
    for item in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let der = item.map_err(|e| CertError::ChainPem(e.to_string()))?;
        chain.push(der);
        if chain.len() > MAX_CHAIN_LEN {
            return Err(CertError::ChainTooLong(chain.len()));
        }
    }
    if chain.is_empty() {
        return Err(CertError::NoCertificate);
    }
    Ok(chain)
}

/// Parses the first private key block of a PEM text.
pub(crate) fn parse_key(pem: &str) -> Result<PrivateKeyDer<'static>, CertError> {
    if pem.len() > MAX_PEM_LEN {
        return Err(CertError::TooLarge {
            what: "private key",
            len: pem.len(),
            max: MAX_PEM_LEN,
        });
    }
    match PrivateKeyDer::from_pem_slice(pem.as_bytes()) {
        Ok(key) => Ok(key),
        Err(rustls_pki_types::pem::Error::NoItemsFound) => Err(CertError::NoPrivateKey),
        // Never echo key bytes: the pem error only names the failing part.
        Err(e) => Err(CertError::KeyPem(e.to_string())),
    }
}

/// Loads a DER key with the ring provider.
pub(crate) fn load_key(key: PrivateKeyDer<'static>) -> Result<Arc<dyn SigningKey>, CertError> {
    ring_provider::default_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| CertError::UnsupportedKey(e.to_string()))
}

/// The key must match the leaf; if it matches a later certificate, say which.
fn check_key(key: &dyn SigningKey, chain: &[X509Certificate<'_>]) -> Result<(), CertError> {
    let Some(spki) = key.public_key() else {
        // Every ring key type exposes its public key; an unknown one cannot be checked.
        return Err(CertError::UnsupportedKey(
            "its public key is unknown".into(),
        ));
    };
    let matches = |cert: &X509Certificate<'_>| cert.public_key().raw == spki.as_ref();
    if chain.first().is_some_and(matches) {
        return Ok(());
    }
    match chain.iter().position(matches) {
        Some(i) => Err(CertError::LeafNotFirst { index: i + 1 }),
        None => Err(CertError::KeyMismatch),
    }
}

/// Each certificate's issuer must be the subject of the next one.
fn check_order(chain: &[X509Certificate<'_>]) -> Result<(), CertError> {
    for (i, pair) in chain.windows(2).enumerate() {
        let (cert, next) = (&pair[0], &pair[1]);
        if cert.issuer().as_raw() != next.subject().as_raw() {
            return Err(CertError::ChainOrder {
                index: i + 1,
                issuer: cert.issuer().to_string(),
                next: i + 2,
                next_subject: next.subject().to_string(),
            });
        }
    }
    Ok(())
}

/// No extended key usage, or one that includes serverAuth (or anyExtendedKeyUsage).
fn allows_server_auth(leaf: &X509Certificate<'_>) -> bool {
    match leaf.extended_key_usage() {
        Ok(Some(eku)) => eku.value.server_auth || eku.value.any,
        Ok(None) => true,
        // A duplicated or unreadable extension: browsers refuse it, so do we.
        Err(_) => false,
    }
}

/// The leaf's subjectAltName DNS names, lowercased, without trailing dots.
pub(crate) fn leaf_names(leaf: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(san)) = leaf.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => {
                let dns = dns.trim_end_matches('.').to_ascii_lowercase();
                (!dns.is_empty()).then_some(dns)
            }
            _ => None,
        })
        .collect()
}

/// SHA-256 of a DER certificate, lowercase hex.
pub(crate) fn fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    let mut hex = String::with_capacity(64);
    for b in digest.as_ref() {
        hex.push(char::from(HEX[usize::from(b >> 4)]));
        hex.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    hex
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Unix seconds; a time before 1970 counts as 0.
fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
