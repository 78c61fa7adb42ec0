//! Automatic certificates: every custom domain without a valid certificate
//! (or with one expiring within 30 days) gets one from the ACME server with
//! the HTTP-01 challenge, answered by the edge itself. Failures are recorded
//! on the domain's status and retried with backoff.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use ledge_acme::{AcmeConfig, ChallengeStore, Issuer};
use ledge_store::{ChangeEvent, DomainStatus, EventKind, Feed, MetaStore, StoredCert};
use ledge_tls::NodeKey;

/// How often every domain is looked at, besides when one is added.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// The edge's view of pending challenges.
pub struct Challenges(pub ChallengeStore);

impl ledge_edge::AcmeChallenges for Challenges {
    fn key_authorization(&self, token: &str) -> Option<String> {
        self.0.get(token)
    }
}

/// Issues and renews certificates for custom domains.
pub struct AcmeManager {
    meta: Arc<dyn MetaStore>,
    node_key: Arc<NodeKey>,
    feed: Feed,
    issuer: Issuer,
    challenges: ChallengeStore,
    /// Failed attempts per domain: (count, next try, unix seconds).
    retries: Mutex<HashMap<String, (u32, i64)>>,
}

impl AcmeManager {
    /// Sets the manager up in the background: the ACME account is restored
    /// (or created) when the server answers, retried with backoff until then,
    /// so a node starts and serves even while its ACME server is down.
    pub fn spawn(
        config: AcmeConfig,
        data: PathBuf,
        meta: Arc<dyn MetaStore>,
        node_key: Arc<NodeKey>,
        feed: Feed,
        challenges: ChallengeStore,
    ) {
        let events = feed.subscribe();
        tokio::spawn(async move {
            let mut attempt = 0;
            let manager = loop {
                match Self::start(
                    config.clone(),
                    &data,
                    meta.clone(),
                    node_key.clone(),
                    feed.clone(),
                    challenges.clone(),
                )
                .await
                {
                    Ok(m) => break m,
                    Err(e) => {
                        attempt += 1;
                        tracing::warn!(error = %format!("{e:#}"), "ACME: account not ready; retrying");
                        tokio::time::sleep(ledge_acme::backoff(attempt)).await;
                    }
                }
            };
            manager.run(events).await;
        });
    }

    /// Restores (or creates) the ACME account, its credentials kept sealed in
    /// `DATA/acme-account`.
    async fn start(
        config: AcmeConfig,
        data: &std::path::Path,
        meta: Arc<dyn MetaStore>,
        node_key: Arc<NodeKey>,
        feed: Feed,
        challenges: ChallengeStore,
    ) -> anyhow::Result<Arc<Self>> {
        let path: PathBuf = data.join("acme-account");
        let saved = match std::fs::read(&path) {
            Ok(sealed) => Some(
                String::from_utf8(
                    node_key
                        .open(&sealed)
                        .context("cannot unseal the ACME account")?,
                )
                .context("the ACME account file is not text")?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let (issuer, credentials) = Issuer::new(config, saved)
            .await
            .context("cannot set up the ACME account")?;
        write_private(&path, &node_key.seal(credentials.as_bytes()))?;
        Ok(Arc::new(Self {
            meta,
            node_key,
            feed,
            issuer,
            challenges,
            retries: Mutex::new(HashMap::new()),
        }))
    }

    /// Sweeps now, then whenever a domain is added and every minute.
    async fn run(self: Arc<Self>, mut events: tokio::sync::broadcast::Receiver<ChangeEvent>) {
        loop {
            self.sweep().await;
            let wake = async {
                loop {
                    match events.recv().await {
                        Ok(ChangeEvent {
                            kind: EventKind::DomainAdded { .. },
                            ..
                        }) => return,
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                            std::future::pending::<()>().await
                        }
                    }
                }
            };
            let _ = tokio::time::timeout(SWEEP_EVERY, wake).await;
        }
    }

    /// Looks at every custom domain once.
    async fn sweep(&self) {
        let domains = match self.meta.all_domains().await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "ACME: cannot list domains");
                return;
            }
        };
        for (site, domain) in domains {
            if domain.starts_with("*.") {
                continue; // HTTP-01 cannot prove a wildcard
            }
            let now = ledge_store::now_secs();
            match self.meta.get_cert(&domain).await {
                Ok(Some(c)) if !ledge_acme::needs_renewal(c.not_after, now) => continue,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(%domain, error = %e, "ACME: cannot read the certificate");
                    continue;
                }
            }
            let attempts = {
                let retries = self.retries.lock().unwrap_or_else(|p| p.into_inner());
                match retries.get(&domain) {
                    Some((_, next)) if *next > now => continue,
                    Some((n, _)) => *n,
                    None => 0,
                }
            };
            self.status(&domain, "pending", None, attempts, None).await;
            match self.issue(&site, &domain).await {
                Ok(()) => {
                    self.retries
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&domain);
                    self.status(&domain, "issued", None, 0, None).await;
                }
                Err(e) => {
                    let attempts = attempts + 1;
                    let next = now + ledge_acme::backoff(attempts).as_secs() as i64;
                    tracing::warn!(%domain, error = %format!("{e:#}"), "ACME: issuance failed");
                    self.retries
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(domain.clone(), (attempts, next));
                    let message = format!("{e:#}");
                    self.status(
                        &domain,
                        "failed",
                        Some(message),
                        i64::from(attempts),
                        Some(next),
                    )
                    .await;
                }
            }
        }
    }

    async fn issue(&self, site: &ledge_core::SiteName, domain: &str) -> anyhow::Result<()> {
        let issued = self.issuer.issue(domain, &self.challenges).await?;
        let valid = ledge_tls::validate(
            &issued.chain_pem,
            &issued.key_pem,
            domain,
            std::time::SystemTime::now(),
        )
        .context("the ACME server returned an unusable certificate")?;
        let stored = StoredCert {
            domain: domain.to_owned(),
            site: site.clone(),
            chain_pem: issued.chain_pem,
            sealed_key: self.node_key.seal(issued.key_pem.as_bytes()),
            not_after: valid.not_after(),
            fingerprint: valid.fingerprint().to_owned(),
            source: "acme".into(),
            version: 0,
        };
        let ev = self.meta.put_cert(&stored).await?;
        self.feed.send([ev]);
        tracing::info!(%domain, "ACME: certificate issued");
        Ok(())
    }

    async fn status(
        &self,
        domain: &str,
        state: &str,
        error: Option<String>,
        attempts: impl Into<i64>,
        next_try_at: Option<i64>,
    ) {
        let status = DomainStatus {
            domain: domain.to_owned(),
            state: state.to_owned(),
            error,
            attempts: attempts.into(),
            next_try_at,
        };
        if let Err(e) = self.meta.set_domain_status(&status).await {
            tracing::warn!(%domain, error = %e, "ACME: cannot record the domain status");
        }
    }
}

/// Writes a secret file with mode 0600.
fn write_private(path: &std::path::Path, data: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(data)?;
    f.sync_all()?;
    Ok(())
}
