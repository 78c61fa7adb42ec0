//! Records the metadata store keeps and hands out.

use std::collections::BTreeMap;

use ledge_core::{DeployId, Digest, Label, SiteName};
use serde::{Deserialize, Serialize};

use crate::settings::SiteSettings;

/// A site as stored.
#[derive(Debug, Clone, Serialize)]
pub struct Site {
    /// Its name.
    pub name: SiteName,
    /// Unix seconds.
    pub created_at: i64,
    /// The deploy serving production, if any.
    pub published: Option<DeployId>,
    /// Auto-publishing locked.
    pub locked: bool,
    /// Custom domains.
    pub domains: Vec<String>,
}

/// A deploy's state machine: `uploading` → `processing` → `ready` | `error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeployState {
    /// Waiting for blobs.
    Uploading,
    /// All blobs present; building the snapshot.
    Processing,
    /// Servable.
    Ready,
    /// Failed; see `error`.
    Error,
}

impl DeployState {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Uploading => "uploading",
            Self::Processing => "processing",
            Self::Ready => "ready",
            Self::Error => "error",
        }
    }

    /// Parses the stored text.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "uploading" => Self::Uploading,
            "processing" => Self::Processing,
            "ready" => Self::Ready,
            "error" => Self::Error,
            _ => return None,
        })
    }
}

/// A diagnostic recorded while processing a deploy (rules files, config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployDiagnostic {
    /// File the problem is in.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<u32>,
    /// `error` or `warning`.
    pub severity: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// A deploy as stored.
#[derive(Debug, Clone, Serialize)]
pub struct Deploy {
    /// Its id.
    pub id: DeployId,
    /// Creation order across the store.
    #[serde(skip)]
    pub seq: i64,
    /// Its site.
    pub site: SiteName,
    /// Where it is in its life.
    pub state: DeployState,
    /// Production deploy (published when ready unless locked).
    pub prod: bool,
    /// Alias, if any.
    pub alias: Option<Label>,
    /// Free text.
    pub message: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds, once ready.
    pub ready_at: Option<i64>,
    /// Number of paths.
    pub file_count: i64,
    /// Number of digests that had to be uploaded.
    pub required_count: i64,
    /// Digests still missing.
    pub missing: Vec<Digest>,
    /// Why it failed.
    pub error: Option<String>,
    /// Problems found while processing.
    pub diagnostics: Vec<DeployDiagnostic>,
}

/// A new deploy's request, validated.
#[derive(Debug, Clone)]
pub struct NewDeploy {
    /// Path (with leading `/`) → digest.
    pub files: BTreeMap<String, Digest>,
    /// Production?
    pub prod: bool,
    /// Alias.
    pub alias: Option<Label>,
    /// Message.
    pub message: Option<String>,
}

/// Who a bearer token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The node's admin.
    Admin,
    /// One site only.
    Site(SiteName),
}

/// Where a site's routing stands, as the edge needs it.
#[derive(Debug, Clone)]
pub struct SiteRouting {
    /// The site.
    pub name: SiteName,
    /// Production deploy.
    pub published: Option<DeployId>,
    /// Alias → deploy.
    pub aliases: Vec<(Label, DeployId)>,
    /// Custom domains.
    pub domains: Vec<String>,
    /// Settings, secrets included.
    pub settings: SiteSettings,
}

/// What a blob upload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadOutcome {
    /// The deploy still waits for more blobs.
    Waiting,
    /// That was the last one: the deploy is now processing.
    Complete,
}

/// A stored TLS certificate. The private key is sealed with the node key.
#[derive(Clone)]
pub struct StoredCert {
    /// The domain it serves (lowercase).
    pub domain: String,
    /// Owning site.
    pub site: SiteName,
    /// PEM chain, leaf first.
    pub chain_pem: String,
    /// Private key, sealed.
    pub sealed_key: Vec<u8>,
    /// Expiry, Unix seconds.
    pub not_after: i64,
    /// sha256 of the leaf DER, hex.
    pub fingerprint: String,
    /// `upload` or `acme`.
    pub source: String,
    /// Increases with every replacement.
    pub version: i64,
}

impl std::fmt::Debug for StoredCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredCert")
            .field("domain", &self.domain)
            .field("site", &self.site)
            .field("not_after", &self.not_after)
            .field("fingerprint", &self.fingerprint)
            .field("source", &self.source)
            .field("version", &self.version)
            .field("sealed_key", &"[redacted]")
            .finish()
    }
}

/// What the API shows of a certificate.
#[derive(Debug, Clone, Serialize)]
pub struct CertInfo {
    /// The domain.
    pub domain: String,
    /// Expiry, Unix seconds.
    pub not_after: i64,
    /// sha256 of the leaf DER, hex.
    pub fingerprint: String,
    /// `upload` or `acme`.
    pub source: String,
    /// Replacement counter.
    pub version: i64,
}

/// Where a domain's automatic certificate stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DomainStatus {
    /// The domain.
    pub domain: String,
    /// `pending`, `issued` or `failed`.
    pub state: String,
    /// The last failure, for people.
    pub error: Option<String>,
    /// Failed attempts since the last success.
    pub attempts: i64,
    /// When the next attempt is due (Unix seconds).
    pub next_try_at: Option<i64>,
}

/// One purge counter: a site's (no tag) or one tag's of a site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PurgeGeneration {
    /// The site's name.
    pub site: String,
    /// The tag (lowercase), `None` for the whole site.
    pub tag: Option<String>,
    /// How many purges it has seen.
    pub generation: i64,
}
