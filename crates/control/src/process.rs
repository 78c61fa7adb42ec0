//! Deploy processing: once every blob of a deploy is present, build its
//! snapshot (file metadata, compressed variants, configuration texts,
//! diagnostics), store it, then mark the deploy ready — which publishes it when
//! it is a production deploy — and tell the edge.

use std::collections::BTreeMap;
use std::sync::Arc;

use ledge_core::DeployId;
use ledge_store::snapshot::{is_config_path, FUNCTIONS_PREFIX};
use ledge_store::{
    blobs::compress, BlobStore, DeployDiagnostic, Encoding, Feed, FileEntry, MetaStore, Snapshot,
};

use crate::api::{ConfigCheck, FunctionBuild};

/// Smallest file worth compressing.
const MIN_COMPRESS: u64 = 256;
/// Largest file compressed at deploy time.
const MAX_COMPRESS: u64 = 32 << 20;
/// Largest configuration file read (bigger ones are refused with a diagnostic);
/// the same as the rules engine's own `MAX_FILE_BYTES`.
const MAX_CONFIG_FILE: u64 = 16 << 20;
/// Largest edge function source file read.
const MAX_FUNCTION_FILE: u64 = 20 << 20;

/// What processing needs.
#[derive(Clone)]
pub struct Processor {
    /// Metadata.
    pub meta: Arc<dyn MetaStore>,
    /// Blobs.
    pub blobs: Arc<dyn BlobStore>,
    /// Change feed.
    pub feed: Feed,
    /// Validates configuration files into diagnostics.
    pub check: ConfigCheck,
    /// Bundles edge functions; `None` keeps their sources unprocessed.
    pub functions: Option<FunctionBuild>,
}

impl Processor {
    /// Processes a deploy in the background.
    pub fn spawn(&self, id: DeployId) {
        let this = self.clone();
        tokio::spawn(async move { this.run(id).await });
    }

    /// Processes a deploy now; failures mark it `error`.
    pub async fn run(&self, id: DeployId) {
        match self.build(&id).await {
            Ok(diagnostics) => {
                // Readers of the deploy's state wait until the edge routes it.
                let pending = self.feed.begin();
                match self.meta.finish_deploy(&id, diagnostics).await {
                    Ok(events) => pending.send(events),
                    Err(e) => tracing::error!(deploy = %id, error = %e, "could not finish deploy"),
                }
            }
            Err(msg) => {
                tracing::warn!(deploy = %id, error = %msg, "deploy failed");
                if let Err(e) = self.meta.fail_deploy(&id, &msg).await {
                    tracing::error!(deploy = %id, error = %e, "could not record deploy failure");
                }
            }
        }
    }

    async fn build(&self, id: &DeployId) -> Result<Vec<DeployDiagnostic>, String> {
        let deploy = self.meta.get_deploy(id).await.map_err(|e| e.to_string())?;
        let files = self
            .meta
            .deploy_files(id)
            .await
            .map_err(|e| e.to_string())?;
        let mut snapshot = Snapshot {
            deploy: *id,
            site: deploy.site.clone(),
            created_at: deploy.created_at,
            prod: deploy.prod,
            files: BTreeMap::new(),
            config: BTreeMap::new(),
            functions: BTreeMap::new(),
            edge_functions: Vec::new(),
            diagnostics: Vec::new(),
        };
        let mut diagnostics = Vec::new();
        for (path, digest) in &files {
            let size = self
                .blobs
                .len(digest, Encoding::Identity)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("blob {digest} for {path} is missing from the store"))?;
            if path.starts_with(FUNCTIONS_PREFIX) {
                snapshot.functions.insert(path.clone(), digest.clone());
                continue;
            }
            if is_config_path(path) {
                if size > MAX_CONFIG_FILE {
                    diagnostics.push(DeployDiagnostic {
                        file: path.trim_start_matches('/').to_owned(),
                        line: None,
                        severity: "error".into(),
                        message: format!(
                            "file is {size} bytes; configuration files may be at most {MAX_CONFIG_FILE} bytes, so it was ignored"
                        ),
                    });
                    continue;
                }
                match self.read_text(digest).await? {
                    Some(text) => {
                        snapshot.config.insert(path.clone(), text);
                    }
                    None => diagnostics.push(DeployDiagnostic {
                        file: path.trim_start_matches('/').to_owned(),
                        line: None,
                        severity: "error".into(),
                        message: "file is not UTF-8 text, so it was ignored".into(),
                    }),
                }
                continue;
            }
            let content_type = content_type(path);
            let (br, gz) =
                if compressible(&content_type) && (MIN_COMPRESS..=MAX_COMPRESS).contains(&size) {
                    (
                        self.variant(digest, Encoding::Brotli, size).await?,
                        self.variant(digest, Encoding::Gzip, size).await?,
                    )
                } else {
                    (None, None)
                };
            snapshot.files.insert(
                path.clone(),
                FileEntry {
                    digest: digest.clone(),
                    size,
                    content_type,
                    br,
                    gz,
                },
            );
        }
        diagnostics.extend((self.check)(&snapshot.config));
        if let Some(build) = &self.functions {
            snapshot.edge_functions = self.build_functions(build, &snapshot).await?;
        }
        snapshot.diagnostics = diagnostics.clone();
        let json = serde_json::to_vec(&snapshot).map_err(|e| e.to_string())?;
        self.blobs
            .put_snapshot(id, &json)
            .await
            .map_err(|e| e.to_string())?;
        Ok(diagnostics)
    }

    /// Reads the deploy's function sources and bundles them; any problem
    /// fails the deploy with every `file:line: message`.
    async fn build_functions(
        &self,
        build: &FunctionBuild,
        snapshot: &Snapshot,
    ) -> Result<Vec<ledge_store::SnapshotFunction>, String> {
        let mut sources = BTreeMap::new();
        let mut problems = Vec::new();
        for (path, digest) in &snapshot.functions {
            let rel = &path[FUNCTIONS_PREFIX.len()..];
            let scripted = rel
                .rsplit_once('.')
                .is_some_and(|(_, ext)| ledge_store::snapshot::FUNCTION_EXTENSIONS.contains(&ext));
            if !scripted {
                continue;
            }
            let size = self
                .blobs
                .len(digest, Encoding::Identity)
                .await
                .map_err(|e| e.to_string())?
                .unwrap_or(0);
            if size > MAX_FUNCTION_FILE {
                problems.push(format!(
                    "{}: file is {size} bytes; edge function sources may be at most {MAX_FUNCTION_FILE}",
                    path.trim_start_matches('/')
                ));
                continue;
            }
            match self.read_text(digest).await? {
                Some(text) => {
                    sources.insert(rel.to_owned(), text);
                }
                None => problems.push(format!(
                    "{}: file is not UTF-8 text",
                    path.trim_start_matches('/')
                )),
            }
        }
        if problems.is_empty() {
            let build = build.clone();
            let config = snapshot.config.clone();
            let built = tokio::task::spawn_blocking(move || build(&config, &sources))
                .await
                .map_err(|e| format!("edge function bundling failed: {e}"))?;
            match built {
                Ok(functions) => return Ok(functions),
                Err(diagnostics) => problems.extend(diagnostics.iter().map(|d| match d.line {
                    Some(line) => format!("{}:{line}: {}", d.file, d.message),
                    None => format!("{}: {}", d.file, d.message),
                })),
            }
        }
        Err(format!(
            "edge functions could not be bundled, so nothing was published:\n{}",
            problems.join("\n")
        ))
    }

    /// A blob as text; `None` when it is not UTF-8.
    async fn read_text(&self, digest: &ledge_core::Digest) -> Result<Option<String>, String> {
        let bytes = self
            .blobs
            .read(digest, Encoding::Identity)
            .await
            .map_err(|e| e.to_string())?;
        Ok(String::from_utf8(bytes.to_vec()).ok())
    }

    /// The size of `digest`'s variant in `enc`, producing it once per blob;
    /// `None` when compression does not make it smaller.
    async fn variant(
        &self,
        digest: &ledge_core::Digest,
        enc: Encoding,
        size: u64,
    ) -> Result<Option<u64>, String> {
        let existing = self
            .blobs
            .len(digest, enc)
            .await
            .map_err(|e| e.to_string())?;
        let n = match existing {
            Some(n) => n,
            None => {
                let data = self
                    .blobs
                    .read(digest, Encoding::Identity)
                    .await
                    .map_err(|e| e.to_string())?;
                let packed = tokio::task::spawn_blocking(move || compress(enc, &data))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
                self.blobs
                    .put_variant(digest, enc, &packed)
                    .await
                    .map_err(|e| e.to_string())?;
                packed.len() as u64
            }
        };
        // Serve a variant only when it saves at least 5%.
        Ok((n * 20 < size * 19).then_some(n))
    }
}

/// `Content-Type` for a path, by extension; text types get `charset=utf-8`.
pub fn content_type(path: &str) -> String {
    let name = path.rsplit('/').next().unwrap_or(path);
    if !name.contains('.') {
        return "application/octet-stream".into();
    }
    let mime = mime_guess::from_path(name).first_or_octet_stream();
    let essence = mime.essence_str();
    let texty = mime.type_() == mime_guess::mime::TEXT
        || matches!(
            essence,
            "application/javascript"
                | "application/json"
                | "application/xml"
                | "image/svg+xml"
                | "application/manifest+json"
                | "application/ld+json"
        );
    if texty {
        format!("{essence}; charset=utf-8")
    } else {
        essence.to_owned()
    }
}

fn compressible(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("");
    essence.starts_with("text/")
        || essence.contains("javascript")
        || essence.contains("json")
        || essence.contains("xml")
        || matches!(
            essence,
            "application/wasm"
                | "font/ttf"
                | "font/otf"
                | "image/x-icon"
                | "image/vnd.microsoft.icon"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert_eq!(content_type("/index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("/a/app.js"), "text/javascript; charset=utf-8");
        assert_eq!(
            content_type("/data.json"),
            "application/json; charset=utf-8"
        );
        assert_eq!(content_type("/logo.png"), "image/png");
        assert_eq!(content_type("/README"), "application/octet-stream");
        assert!(compressible("text/css; charset=utf-8"));
        assert!(!compressible("image/png"));
    }
}
