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

/// Extensions of edge function modules (others under [`FUNCTIONS_PREFIX`]
/// are kept but not bundled).
pub const FUNCTION_EXTENSIONS: [&str; 6] = ["js", "jsx", "mjs", "mts", "ts", "tsx"];

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
    /// Edge function sources by path, as uploaded.
    pub functions: BTreeMap<String, Digest>,
    /// The deploy's edge functions, bundled at processing time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub edge_functions: Vec<SnapshotFunction>,
    /// Problems found while processing.
    pub diagnostics: Vec<DeployDiagnostic>,
}

/// One edge function of a deploy, as deploy processing bundled it: the
/// modules its entry reaches (TypeScript stripped), by path relative to
/// `netlify/edge-functions/`, and its inline `config` (the functions crate's
/// `FunctionConfig`, kept as JSON so the store does not depend on it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotFunction {
    /// Function name (file or folder name without extension).
    pub name: String,
    /// Entry module inside `modules`.
    pub entry: String,
    /// Module path → JavaScript.
    pub modules: BTreeMap<String, String>,
    /// Inline `export const config`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Value>,
}
