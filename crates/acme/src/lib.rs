//! ACME (RFC 8555) certificate issuance with the HTTP-01 challenge.
//!
//! What it is:
//! - [`ChallengeStore`]: the shared token → key authorization map that the
//!   edge answers `GET /.well-known/acme-challenge/{token}` from, for any host;
//! - [`Issuer`]: an ACME account ([`Issuer::new`] creates or restores it) that
//!   obtains a certificate for one DNS name ([`Issuer::issue`]): new order,
//!   HTTP-01 challenge published in the store, bounded polling, finalization
//!   with a fresh ECDSA P-256 key, certificate download;
//! - [`needs_renewal`] and [`backoff`]: the renewal policy.
//!
//! What it is not: a scheduler or a store. The caller persists the account
//! credentials and the issued private key (both secrets: sealed at rest, never
//! logged), decides when to renew, and serves the challenge store. Only the
//! `ring` crypto provider is used. See `docs/acme.md`.
//!
//! ```no_run
//! # async fn run() -> Result<(), ledge_acme::AcmeError> {
//! use ledge_acme::{AcmeConfig, ChallengeStore, Issuer};
//! let config = AcmeConfig {
//!     directory_url: "https://acme-v02.api.letsencrypt.org/directory".into(),
//!     contact: Some("mailto:ops@example.com".into()),
//!     extra_root_pem: None,
//! };
//! let (issuer, credentials_json) = Issuer::new(config, None).await?;
//! // persist `credentials_json` as a secret, then pass it to `Issuer::new` next time
//! # let _ = credentials_json;
//! let challenges = ChallengeStore::new(); // shared with the HTTP listener
//! let issued = issuer.issue("www.example.com", &challenges).await?;
//! // store issued.chain_pem and issued.key_pem (sealed)
//! # let _ = issued;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod client;
mod error;
mod issuer;
mod renewal;
mod store;

pub use error::AcmeError;
pub use issuer::{AcmeConfig, Issued, Issuer, HTTP_TIMEOUT, ISSUE_TIMEOUT, POLL_TIMEOUT};
pub use renewal::{backoff, needs_renewal, BACKOFF_BASE, BACKOFF_CAP, RENEW_BEFORE};
pub use store::{ChallengeStore, CHALLENGE_PATH_PREFIX};

#[cfg(feature = "testing")]
pub mod testing;
