//! The deploy snapshot: everything the edge needs to serve one deploy, written
//! once when the deploy is processed and loaded by each node on first request.

use std::collections::BTreeMap;

use ledge_core::{DeployId, Digest, SiteName};
use serde::{Deserialize, Serialize};

use crate::model::DeployDiagnostic;

/// Paths in a deploy's file list that are configuration, never served.
pub const CONFIG_PATHS: [&str; 3] = ["/_redirects", "/_headers", "/netlify.toml"];

/// Folder of edge function sources inside a deploy's file list; never served.
pub const FUNCTIONS_PREFIX: &str = "/netlify/edge-functions/";

/// True when `path` (as in a deploy's file list) is configuration or function
/// source rather than a file to serve.
pub fn is_config_path(path: &str) -> bool {
    CONFIG_PATHS.contains(&path) || path.starts_with(FUNCTIONS_PREFIX)
}

/// One servable file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Content digest (sha256).
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// `Content-Type` to send.
    pub content_type: String,
    /// Size of the brotli variant, when one is worth serving.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub br: Option<u64>,
    /// Size of the gzip variant, when one is worth serving.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gz: Option<u64>,
}

/// A processed deploy.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    /// The deploy.
    pub deploy: DeployId,
    /// Its site.
    pub site: SiteName,
    /// Unix seconds when the deploy was created (`Last-Modified`).
    pub created_at: i64,
    /// Production deploy.
    pub prod: bool,
    /// Servable files by path (leading `/`).
    pub files: BTreeMap<String, FileEntry>,
    /// Configuration file texts by path (`/_redirects`, `/_headers`, `/netlify.toml`).
    pub config: BTreeMap<String, String>,
    /// Edge function sources by path, for the functions phase.
    pub functions: BTreeMap<String, Digest>,
    /// Problems found while processing.
    pub diagnostics: Vec<DeployDiagnostic>,
}
