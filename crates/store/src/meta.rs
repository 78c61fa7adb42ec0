//! The metadata store trait. SQLite implements it today ([`crate::SqliteStore`]);
//! PostgreSQL will implement the same trait for multi-node setups.

use async_trait::async_trait;
use ledge_core::{DeployId, Digest, SiteName};

use crate::events::ChangeEvent;
use crate::model::*;
use crate::settings::SiteSettings;

/// Why a metadata operation failed. The control API maps each kind to one status.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// No such site, deploy, domain or alias.
    #[error("{0}")]
    NotFound(String),
    /// The name or domain is taken, or the state forbids the change.
    #[error("{0}")]
    Conflict(String),
    /// The request is well-formed but makes no sense here.
    #[error("{0}")]
    Invalid(String),
    /// The database failed.
    #[error("metadata store error: {0}")]
    Db(#[from] sqlx::Error),
    /// Stored data could not be read back.
    #[error("corrupt metadata: {0}")]
    Corrupt(String),
}

/// Result alias.
pub type Result<T, E = MetaError> = std::result::Result<T, E>;

/// Everything the control plane and the edge ask of the metadata store.
#[async_trait]
pub trait MetaStore: Send + Sync + 'static {
    /// Creates a site.
    async fn create_site(&self, name: &SiteName) -> Result<(Site, ChangeEvent)>;
    /// Lists all sites.
    async fn list_sites(&self) -> Result<Vec<Site>>;
    /// One site.
    async fn get_site(&self, name: &SiteName) -> Result<Site>;
    /// Deletes a site with its domains, deploys, tokens and aliases.
    async fn delete_site(&self, name: &SiteName) -> Result<ChangeEvent>;
    /// Adds a custom domain (normalised) to a site.
    async fn add_domain(&self, site: &SiteName, domain: &str) -> Result<ChangeEvent>;
    /// Removes a custom domain from a site.
    async fn remove_domain(&self, site: &SiteName, domain: &str) -> Result<ChangeEvent>;
    /// A site's settings, secrets included.
    async fn settings(&self, site: &SiteName) -> Result<SiteSettings>;
    /// Applies a settings patch atomically.
    async fn patch_settings(
        &self,
        site: &SiteName,
        patch: &serde_json::Value,
    ) -> Result<(SiteSettings, ChangeEvent)>;

    /// Stores a token's hash for a principal.
    async fn add_token(&self, hash: &str, principal: &Principal) -> Result<()>;
    /// Looks a token hash up.
    async fn principal(&self, hash: &str) -> Result<Option<Principal>>;
    /// True when an admin token exists.
    async fn has_admin_token(&self) -> Result<bool>;

    /// Creates a deploy; returns it with the digests the site has not uploaded.
    async fn create_deploy(&self, site: &SiteName, new: NewDeploy) -> Result<Deploy>;
    /// One deploy.
    async fn get_deploy(&self, id: &DeployId) -> Result<Deploy>;
    /// A site's deploys, newest first.
    async fn list_deploys(&self, site: &SiteName, limit: i64) -> Result<Vec<Deploy>>;
    /// Records that `digest` was uploaded for `deploy` (after the blob store verified it).
    async fn blob_uploaded(&self, deploy: &DeployId, digest: &Digest) -> Result<UploadOutcome>;
    /// The deploy's file list: path → digest.
    async fn deploy_files(
        &self,
        deploy: &DeployId,
    ) -> Result<std::collections::BTreeMap<String, Digest>>;
    /// True when `digest` belongs to the deploy's file list.
    async fn deploy_wants(&self, deploy: &DeployId, digest: &Digest) -> Result<bool>;
    /// Deploys in `processing` (to resume after a restart).
    async fn processing_deploys(&self) -> Result<Vec<DeployId>>;
    /// Marks a processing deploy ready, records diagnostics, publishes it when it
    /// is production, unlocked and newer than the last auto-published one, and
    /// moves its alias. Returns the change events, in order.
    async fn finish_deploy(
        &self,
        id: &DeployId,
        diagnostics: Vec<DeployDiagnostic>,
    ) -> Result<Vec<ChangeEvent>>;
    /// Marks a deploy failed.
    async fn fail_deploy(&self, id: &DeployId, error: &str) -> Result<()>;
    /// Points production at `deploy` (or the previously published one).
    async fn rollback(
        &self,
        site: &SiteName,
        deploy: Option<&DeployId>,
    ) -> Result<(DeployId, ChangeEvent)>;
    /// Locks or unlocks auto-publishing.
    async fn set_locked(&self, site: &SiteName, locked: bool) -> Result<()>;

    /// Purges a site's cached responses: all of them when `tags` is empty,
    /// else those carrying one of `tags` (case-insensitive). Bumps the
    /// generations and records the change in one transaction.
    async fn purge(&self, site: &SiteName, tags: &[String]) -> Result<ChangeEvent>;
    /// Every purge generation, for a node loading its cache's view.
    async fn purge_generations(&self) -> Result<Vec<PurgeGeneration>>;

    /// Stores (or replaces) one statistics bucket, serialised by telemetry.
    async fn put_stats(&self, site: &str, resolution: &str, start: i64, data: &str) -> Result<()>;
    /// A site's buckets of one width with `since <= start < until`, in order.
    async fn get_stats(
        &self,
        site: &str,
        resolution: &str,
        since: i64,
        until: i64,
    ) -> Result<Vec<String>>;
    /// Deletes buckets of one width that start before `cutoff`.
    async fn delete_stats_before(&self, resolution: &str, cutoff: i64) -> Result<u64>;

    /// Stores (or replaces) a domain's certificate; the key arrives sealed.
    async fn put_cert(&self, cert: &StoredCert) -> Result<ChangeEvent>;
    /// A domain's certificate.
    async fn get_cert(&self, domain: &str) -> Result<Option<StoredCert>>;
    /// A site's certificates, without key material.
    async fn list_certs(&self, site: &SiteName) -> Result<Vec<CertInfo>>;

    /// Records a domain's certificate status (ignored for unknown domains).
    async fn set_domain_status(&self, status: &DomainStatus) -> Result<()>;
    /// Certificate statuses of a site's domains.
    async fn domain_statuses(&self, site: &SiteName) -> Result<Vec<DomainStatus>>;
    /// Every custom domain with its site.
    async fn all_domains(&self) -> Result<Vec<(SiteName, String)>>;

    /// The whole routing state and the sequence it is current at.
    async fn routing_state(&self) -> Result<(i64, Vec<SiteRouting>)>;
    /// Events after `seq`, in order (for nodes that missed some).
    async fn events_since(&self, seq: i64, limit: i64) -> Result<Vec<ChangeEvent>>;
}
