//! Static path resolution (spec §10.4, production behaviour).
//!
//! - `/` → `/index.html` (then `/index.htm`);
//! - `/x` → `/x`, `/x.html`, `/x.htm`; a folder (`/x/index.html` or `.htm`)
//!   requested without its slash → 301 to `/x/`, keeping the query;
//! - `/x/` → `/x/index.html`, `/x/index.htm`, then `/x.html`, `/x.htm`.
//!
//! Lookups are exact (no case folding). Configuration files never match because
//! they are not in the deploy's servable file map.

use std::sync::Arc;

pub use ledge_core::path::{decode_path, locate, Located, PathError};

use crate::deploys::{LoadedDeploy, ServedFile};

/// What a path resolves to in a deploy.
#[derive(Debug, Clone)]
pub enum Resolved {
    /// Serve this file.
    File(Arc<ServedFile>),
    /// A folder asked for without its slash: redirect to `path + "/"`.
    AddSlash,
    /// Nothing here.
    NotFound,
}

/// Resolves a decoded, validated request path in a deploy.
pub fn resolve(deploy: &LoadedDeploy, path: &str) -> Resolved {
    match locate(path, |p| deploy.file(p).is_some()) {
        Located::File(p) => deploy
            .file(&p)
            .cloned()
            .map_or(Resolved::NotFound, Resolved::File),
        Located::AddSlash => Resolved::AddSlash,
        Located::NotFound => Resolved::NotFound,
    }
}

/// True when the edge would serve a file (or a folder redirect) at `path`: what
/// rule shadowing asks.
pub fn exists(deploy: &LoadedDeploy, path: &str) -> bool {
    deploy.resolves(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledge_core::{DeployId, Digest, SiteName};
    use ledge_store::{FileEntry, Snapshot};

    fn deploy(paths: &[&str]) -> LoadedDeploy {
        let files = paths
            .iter()
            .map(|p| {
                (
                    p.to_string(),
                    FileEntry {
                        digest: Digest::of(p.as_bytes()),
                        size: 1,
                        content_type: "text/html".into(),
                        br: None,
                        gz: None,
                    },
                )
            })
            .collect();
        LoadedDeploy::from_snapshot(Snapshot {
            deploy: DeployId::generate(),
            site: SiteName::parse("s").unwrap(),
            created_at: 0,
            prod: true,
            files,
            config: Default::default(),
            functions: Default::default(),
            edge_functions: Vec::new(),
            diagnostics: vec![],
        })
    }

    fn which(d: &LoadedDeploy, path: &str) -> String {
        match resolve(d, path) {
            Resolved::File(f) => {
                let mut hit = None;
                for p in [
                    "/index.html",
                    "/a.html",
                    "/a.htm",
                    "/a",
                    "/docs/index.html",
                    "/docs/index.htm",
                    "/b.html",
                    "/b/index.html",
                ] {
                    if d.file(p).is_some_and(|x| x.digest == f.digest) {
                        hit = Some(p);
                    }
                }
                hit.unwrap_or("?").to_string()
            }
            Resolved::AddSlash => "301".into(),
            Resolved::NotFound => "404".into(),
        }
    }

    #[test]
    fn resolution_order() {
        let d = deploy(&[
            "/index.html",
            "/a.html",
            "/docs/index.html",
            "/b.html",
            "/b/index.html",
        ]);
        assert_eq!(which(&d, "/"), "/index.html");
        assert_eq!(which(&d, "/a"), "/a.html");
        assert_eq!(which(&d, "/a.html"), "/a.html");
        assert_eq!(which(&d, "/a/"), "/a.html");
        assert_eq!(which(&d, "/docs"), "301");
        assert_eq!(which(&d, "/docs/"), "/docs/index.html");
        assert_eq!(which(&d, "/docs/index.html"), "/docs/index.html");
        // A file beats the folder when both exist.
        assert_eq!(which(&d, "/b"), "/b.html");
        assert_eq!(which(&d, "/b/"), "/b/index.html");
        // Exact case only.
        assert_eq!(which(&d, "/A"), "404");
        assert_eq!(which(&d, "/nope"), "404");
        let htm = deploy(&["/a.htm", "/docs/index.htm"]);
        assert_eq!(which(&htm, "/a"), "/a.htm");
        assert_eq!(which(&htm, "/docs"), "301");
        assert_eq!(which(&htm, "/docs/"), "/docs/index.htm");
    }
}
