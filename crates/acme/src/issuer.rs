//! The ACME account and the issuance flow.

use std::fmt;
use std::time::Duration;

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, Order, OrderStatus, RetryPolicy,
};

use crate::client::AcmeHttp;
use crate::{AcmeError, ChallengeStore};

/// Longest wait for one HTTP request to the ACME server.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest wait for the CA to validate the challenge, and again for the
/// certificate after finalization.
pub const POLL_TIMEOUT: Duration = Duration::from_secs(120);

/// Longest time one [`Issuer::issue`] call may take in all.
pub const ISSUE_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// Where and how to reach the ACME server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcmeConfig {
    /// The server's directory URL (https), e.g. Let's Encrypt's
    /// `https://acme-v02.api.letsencrypt.org/directory`.
    pub directory_url: String,
    /// Contact for the account: `mailto:` is added to a bare e-mail address.
    pub contact: Option<String>,
    /// A PEM root to trust for the ACME API in addition to the system's roots
    /// (for a test server such as pebble).
    pub extra_root_pem: Option<String>,
}

/// An issued certificate.
///
/// `Debug` redacts the key.
#[derive(Clone, PartialEq, Eq)]
pub struct Issued {
    /// The chain as the CA sent it, PEM, leaf first.
    pub chain_pem: String,
    /// The certificate's private key (ECDSA P-256, PKCS#8 PEM). A secret.
    pub key_pem: String,
}

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issued")
            .field("chain_pem", &self.chain_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// An ACME account that issues certificates with the HTTP-01 challenge.
///
/// Cheap to clone; issuances for different domains may run concurrently.
#[derive(Clone)]
pub struct Issuer {
    account: Account,
    directory_url: String,
}

impl fmt::Debug for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issuer")
            .field("directory_url", &self.directory_url)
            .field("account", &self.account.id())
            .finish()
    }
}

impl Issuer {
    /// Restores the account from `account_credentials_json` (as returned
    /// earlier by this function), or creates a new one (agreeing to the CA's
    /// terms of service) when it is `None`.
    ///
    /// Returns the issuer and the credentials JSON to persist. The credentials
    /// hold the account's private key: store them as a secret. Restoring
    /// credentials made for another directory URL is refused.
    pub async fn new(
        config: AcmeConfig,
        account_credentials_json: Option<String>,
    ) -> Result<(Issuer, String), AcmeError> {
        let AcmeConfig {
            directory_url,
            contact,
            extra_root_pem,
        } = config;
        if !directory_url.starts_with("https://") {
            return Err(AcmeError::Config(format!(
                "the directory URL must be https: {directory_url:?}"
            )));
        }
        let http = AcmeHttp::new(extra_root_pem.as_deref(), HTTP_TIMEOUT)?;
        let builder = Account::builder_with_http(Box::new(http));
        let account_error = |source| AcmeError::Account {
            directory_url: directory_url.clone(),
            source,
        };

        let (account, json) = match account_credentials_json {
            Some(json) => {
                let credentials = parse_credentials(&json, &directory_url)?;
                let account = builder
                    .from_credentials(credentials)
                    .await
                    .map_err(account_error)?;
                tracing::info!(directory = %directory_url, account = account.id(), "ACME account restored");
                (account, json)
            }
            None => {
                let contact = contact.map(|c| {
                    if c.contains(':') {
                        c
                    } else {
                        format!("mailto:{c}")
                    }
                });
                let contacts: Vec<&str> = contact.as_deref().into_iter().collect();
                let (account, credentials) = builder
                    .create(
                        &NewAccount {
                            contact: &contacts,
                            terms_of_service_agreed: true,
                            only_return_existing: false,
                        },
                        directory_url.clone(),
                        None,
                    )
                    .await
                    .map_err(account_error)?;
                let json = serde_json::to_string(&credentials).map_err(|e| {
                    AcmeError::Credentials(format!("cannot serialize new credentials: {e}"))
                })?;
                tracing::info!(directory = %directory_url, account = account.id(), "ACME account created");
                (account, json)
            }
        };
        Ok((
            Issuer {
                account,
                directory_url,
            },
            json,
        ))
    }

    /// The account's URL on the ACME server (not a secret).
    pub fn account_id(&self) -> &str {
        self.account.id()
    }

    /// Obtains a certificate for `domain` (one DNS name, no wildcard) with the
    /// HTTP-01 challenge published in `challenges`.
    ///
    /// Steps: new order; for each pending authorization, publish the key
    /// authorization and tell the CA the challenge is ready; poll until the
    /// order is ready ([`POLL_TIMEOUT`]); finalize with a fresh ECDSA P-256 key
    /// and CSR; poll for the certificate ([`POLL_TIMEOUT`]). The whole call is
    /// bounded by [`ISSUE_TIMEOUT`]. Published tokens are removed from
    /// `challenges` when this returns, on success, failure or cancellation.
    pub async fn issue(
        &self,
        domain: &str,
        challenges: &ChallengeStore,
    ) -> Result<Issued, AcmeError> {
        let domain = normalize_domain(domain)?;
        let mut published = Published {
            store: challenges.clone(),
            tokens: Vec::new(),
        };
        tracing::info!(%domain, "ACME issuance starting");
        let result =
            match tokio::time::timeout(ISSUE_TIMEOUT, self.issue_inner(&domain, &mut published))
                .await
            {
                Ok(result) => result,
                Err(_) => Err(AcmeError::Timeout {
                    domain: domain.clone(),
                    step: "issuing the certificate",
                }),
            };
        match &result {
            Ok(_) => tracing::info!(%domain, "ACME certificate issued"),
            Err(e) => tracing::warn!(%domain, error = %e, "ACME issuance failed"),
        }
        result
    }

    async fn issue_inner(
        &self,
        domain: &str,
        published: &mut Published,
    ) -> Result<Issued, AcmeError> {
        let protocol = |step: &'static str| {
            move |source| AcmeError::Protocol {
                domain: domain.to_owned(),
                step,
                source,
            }
        };
        let identifiers = [Identifier::Dns(domain.to_owned())];
        let mut order = self
            .account
            .new_order(&NewOrder::new(&identifiers))
            .await
            .map_err(protocol("creating the order"))?;

        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization =
                authorization.map_err(protocol("fetching the authorization"))?;
            match authorization.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                status => {
                    return Err(AcmeError::AuthorizationState {
                        domain: domain.to_owned(),
                        status: format!("{status:?}").to_lowercase(),
                    })
                }
            }
            let mut challenge =
                authorization
                    .challenge(ChallengeType::Http01)
                    .ok_or_else(|| AcmeError::NoHttp01Challenge {
                        domain: domain.to_owned(),
                    })?;
            let key_authorization = challenge.key_authorization();
            published.publish(&challenge.token, key_authorization.as_str());
            challenge
                .set_ready()
                .await
                .map_err(protocol("marking the challenge ready"))?;
        }

        let retries = RetryPolicy::new()
            .initial_delay(Duration::from_millis(250))
            .backoff(1.5)
            .timeout(POLL_TIMEOUT);
        match order.poll_ready(&retries).await {
            Ok(OrderStatus::Ready) => {}
            Ok(_) => return Err(invalid_order(&mut order, domain, None).await),
            Err(instant_acme::Error::Api(problem)) => {
                return Err(invalid_order(&mut order, domain, Some(problem.to_string())).await)
            }
            Err(instant_acme::Error::Timeout(_)) => {
                return Err(AcmeError::Timeout {
                    domain: domain.to_owned(),
                    step: "waiting for the CA to validate the challenge",
                })
            }
            Err(e) => return Err(protocol("polling the order")(e)),
        }
        // Validated: the CA no longer needs the tokens.
        published.withdraw();

        let (csr_der, key_pem) = csr(domain)?;
        order
            .finalize_csr(&csr_der)
            .await
            .map_err(protocol("finalizing the order"))?;
        let chain_pem = match order.poll_certificate(&retries).await {
            Ok(chain) => chain,
            Err(instant_acme::Error::Timeout(_)) => {
                return Err(AcmeError::Timeout {
                    domain: domain.to_owned(),
                    step: "waiting for the certificate",
                })
            }
            Err(e) => return Err(protocol("downloading the certificate")(e)),
        };
        Ok(Issued { chain_pem, key_pem })
    }
}

/// Tokens this issuance published; withdrawn when dropped.
struct Published {
    store: ChallengeStore,
    tokens: Vec<String>,
}

impl Published {
    fn publish(&mut self, token: &str, key_authorization: &str) {
        self.store.insert(token, key_authorization);
        self.tokens.push(token.to_owned());
    }

    fn withdraw(&mut self) {
        for token in self.tokens.drain(..) {
            self.store.remove(&token);
        }
    }
}

impl Drop for Published {
    fn drop(&mut self) {
        self.withdraw();
    }
}

/// The error for an order that did not become ready: the first challenge
/// error the CA reports, else the order's own problem.
async fn invalid_order(
    order: &mut Order,
    domain: &str,
    order_problem: Option<String>,
) -> AcmeError {
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authorization)) = authorizations.next().await {
        let Ok(state) = authorization.refresh().await else {
            continue;
        };
        if let Some(problem) = state.challenges.iter().find_map(|c| c.error.as_ref()) {
            return AcmeError::ChallengeFailed {
                domain: domain.to_owned(),
                detail: problem.to_string(),
            };
        }
    }
    AcmeError::OrderInvalid {
        domain: domain.to_owned(),
        detail: order_problem.unwrap_or_else(|| "the CA gave no reason".into()),
    }
}

/// A fresh ECDSA P-256 key and a CSR for `domain`: (CSR DER, key PEM).
fn csr(domain: &str) -> Result<(Vec<u8>, String), AcmeError> {
    let fail = |e: rcgen::Error| AcmeError::Csr {
        domain: domain.to_owned(),
        reason: e.to_string(),
    };
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(fail)?;
    let mut params = rcgen::CertificateParams::new(vec![domain.to_owned()]).map_err(fail)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let request = params.serialize_request(&key).map_err(fail)?;
    Ok((request.der().to_vec(), key.serialize_pem()))
}

/// Lowercases `domain` and checks it is a DNS name HTTP-01 can validate.
fn normalize_domain(domain: &str) -> Result<String, AcmeError> {
    let invalid = |reason| AcmeError::InvalidDomain {
        domain: domain.to_owned(),
        reason,
    };
    let name = domain
        .strip_suffix('.')
        .unwrap_or(domain)
        .to_ascii_lowercase();
    if name.starts_with("*.") {
        return Err(invalid("wildcards need the dns-01 challenge"));
    }
    if name.is_empty() || name.len() > 253 {
        return Err(invalid("a DNS name has 1 to 253 characters"));
    }
    if !name.contains('.') {
        return Err(invalid("a public DNS name has at least two labels"));
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(invalid("each label has 1 to 63 characters"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(invalid("only letters, digits and '-' (use punycode)"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(invalid("a label neither starts nor ends with '-'"));
        }
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err(invalid("IP addresses are not DNS names"));
    }
    Ok(name)
}

/// Parses stored credentials without echoing their content in errors.
fn parse_credentials(json: &str, directory_url: &str) -> Result<AccountCredentials, AcmeError> {
    let value: serde_json::Value = serde_json::from_str(json).map_err(|e| {
        AcmeError::Credentials(format!(
            "not JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    if let Some(stored) = value.get("directory").and_then(|d| d.as_str()) {
        if stored != directory_url {
            return Err(AcmeError::Credentials(format!(
                "they belong to {stored:?}, not {directory_url:?}"
            )));
        }
    }
    serde_json::from_value(value)
        .map_err(|_| AcmeError::Credentials("not instant-acme account credentials".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains() {
        assert_eq!(
            normalize_domain("WWW.Example.com.").ok().as_deref(),
            Some("www.example.com")
        );
        assert!(normalize_domain("test.example").is_ok());
        assert!(normalize_domain("xn--bcher-kva.example").is_ok());
        for bad in [
            "",
            ".",
            "*.example.com",
            "localhost",
            "a..b",
            "-a.b",
            "a-.b",
            "bü.example",
            "a b.example",
            "127.0.0.1",
            "a/b.example",
        ] {
            assert!(normalize_domain(bad).is_err(), "{bad:?}");
        }
        let long = format!("{}.example", "a".repeat(64));
        assert!(normalize_domain(&long).is_err());
    }

    #[test]
    fn issued_debug_redacts_the_key() {
        let issued = Issued {
            chain_pem: "CHAIN".into(),
            key_pem: "-----BEGIN PRIVATE KEY-----SECRET".into(),
        };
        let shown = format!("{issued:?}");
        assert!(shown.contains("CHAIN") && shown.contains("<redacted>"));
        assert!(!shown.contains("SECRET"), "{shown}");
    }

    #[test]
    fn credentials_errors_do_not_echo_content() {
        let err = parse_credentials("{\"id\": \"x\", \"key_pkcs8\": 12SECRET", "https://a/dir")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("not JSON"), "{err}");
        assert!(!err.contains("SECRET"), "{err}");

        let err = parse_credentials("{\"id\": \"SECRET\"}", "https://a/dir")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("not instant-acme"), "{err}");
        assert!(!err.contains("SECRET"), "{err}");

        let err = parse_credentials(
            "{\"id\": \"SECRET\", \"directory\": \"https://b/dir\"}",
            "https://a/dir",
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.contains("https://b/dir"), "{err}");
        assert!(!err.contains("SECRET"), "{err}");
    }

    #[test]
    fn csr_is_p256() {
        let made = csr("test.example");
        assert!(made.is_ok());
        if let Ok((der, key)) = made {
            assert!(!der.is_empty());
            assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
        }
    }
}
