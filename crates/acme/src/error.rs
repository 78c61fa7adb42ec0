//! What went wrong, and at which step.

/// Why creating the account or issuing a certificate failed.
///
/// Each variant names the step; ACME server problems carry the server's detail
/// (for a failed challenge, the validation error the CA reported). Messages
/// never contain private keys or account credentials.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AcmeError {
    /// The configuration is unusable (directory URL, extra root, contact).
    #[error("ACME configuration: {0}")]
    Config(String),
    /// The stored account credentials are unreadable or belong elsewhere.
    #[error("ACME account credentials: {0}")]
    Credentials(String),
    /// Creating or restoring the ACME account failed.
    #[error("ACME account at {directory_url}: {source}")]
    Account {
        /// The directory the account lives on.
        directory_url: String,
        /// The underlying failure.
        #[source]
        source: instant_acme::Error,
    },
    /// The domain cannot be issued with HTTP-01.
    #[error("cannot issue for {domain:?}: {reason}")]
    InvalidDomain {
        /// The domain as given.
        domain: String,
        /// Why.
        reason: &'static str,
    },
    /// A request to the ACME server failed at `step`.
    #[error("{domain}: {step} failed: {source}")]
    Protocol {
        /// The domain being issued.
        domain: String,
        /// The step: "creating the order", "fetching the authorization", …
        step: &'static str,
        /// The underlying failure (for server problems, its detail and type).
        #[source]
        source: instant_acme::Error,
    },
    /// The server offered no HTTP-01 challenge for the domain.
    #[error("{domain}: the ACME server offered no http-01 challenge")]
    NoHttp01Challenge {
        /// The domain being issued.
        domain: String,
    },
    /// The authorization is in a state that cannot be completed.
    #[error("{domain}: the authorization is {status}, not pending or valid")]
    AuthorizationState {
        /// The domain being issued.
        domain: String,
        /// The authorization's status.
        status: String,
    },
    /// The CA could not validate the HTTP-01 challenge.
    #[error("{domain}: the http-01 challenge failed: {detail}")]
    ChallengeFailed {
        /// The domain being issued.
        domain: String,
        /// The CA's error for the challenge (e.g. the response it fetched).
        detail: String,
    },
    /// The order became invalid for a reason other than a challenge error.
    #[error("{domain}: the order became invalid: {detail}")]
    OrderInvalid {
        /// The domain being issued.
        domain: String,
        /// The CA's problem, if it gave one.
        detail: String,
    },
    /// Waiting at `step` took longer than allowed.
    #[error("{domain}: timed out {step}")]
    Timeout {
        /// The domain being issued.
        domain: String,
        /// What was being waited for.
        step: &'static str,
    },
    /// Generating the certificate key or signing request failed.
    #[error("{domain}: generating the key and CSR failed: {reason}")]
    Csr {
        /// The domain being issued.
        domain: String,
        /// Why.
        reason: String,
    },
}
