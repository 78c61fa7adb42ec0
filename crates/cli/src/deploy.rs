//! `ledge deploy DIR`: hash the folder in parallel, create the deploy, upload
//! only the blobs the server lacks (in parallel, retried), wait until the deploy
//! is ready, and print its URLs and diagnostics.
//!
//! DIR is the site folder. When it holds a `netlify.toml` with `[build]
//! publish`, that folder is served; otherwise DIR itself. `netlify.toml`,
//! `_redirects`, `_headers` and `netlify/edge-functions/` travel with the deploy
//! as configuration and are never served.

use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use futures_util::StreamExt;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use crate::client::{ApiFailure, Client};

/// Parallel uploads.
const UPLOAD_CONCURRENCY: usize = 8;
/// Attempts per blob.
const UPLOAD_ATTEMPTS: u32 = 5;
/// How long to wait for processing.
const READY_TIMEOUT: Duration = Duration::from_secs(600);

/// `ledge deploy` arguments.
#[derive(clap::Args, Debug)]
pub struct DeployArgs {
    /// The site folder.
    pub dir: PathBuf,
    /// The site to deploy to.
    #[arg(long)]
    pub site: String,
    /// Publish as production when ready.
    #[arg(long)]
    pub prod: bool,
    /// Also serve it at ALIAS--SITE.
    #[arg(long)]
    pub alias: Option<String>,
    /// A note kept with the deploy.
    #[arg(long)]
    pub message: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// The folder served, in place of `[build] publish` (relative to DIR).
    #[arg(long)]
    pub publish: Option<PathBuf>,
    /// The edge functions folder, in place of `[build] edge_functions` or
    /// `netlify/edge-functions` (relative to DIR).
    #[arg(long)]
    pub functions: Option<PathBuf>,
}

/// Where a deploy's parts come from.
#[derive(Default)]
pub(crate) struct Layout {
    /// `--publish`.
    pub publish: Option<PathBuf>,
    /// `--functions`.
    pub functions: Option<PathBuf>,
}

/// One file to deploy.
pub(crate) struct LocalFile {
    /// Path in the deploy (leading `/`).
    pub(crate) path: String,
    /// Where it is on disk.
    pub(crate) source: PathBuf,
    /// sha256, once hashed.
    digest: String,
}

/// The folder served: `[build] publish` of DIR/netlify.toml, or DIR.
pub fn publish_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    let toml_path = dir.join("netlify.toml");
    if !toml_path.exists() {
        return Ok(dir.to_path_buf());
    }
    let text = std::fs::read_to_string(&toml_path)
        .with_context(|| format!("cannot read {}", toml_path.display()))?;
    let publish = ledge_rules::publish_dir(&text).map_err(|d| anyhow!("{}: {d}", dir.display()))?;
    let Some(publish) = publish else {
        return Ok(dir.to_path_buf());
    };
    let out = dir.join(publish.trim_start_matches("./"));
    if !out.is_dir() {
        bail!(
            "netlify.toml says [build] publish = {publish:?}, but {} is not a folder: build the site first",
            out.display()
        );
    }
    Ok(out)
}

/// `[build] edge_functions` of DIR/netlify.toml, if set.
fn functions_dir_setting(dir: &Path) -> anyhow::Result<Option<String>> {
    let Ok(text) = std::fs::read_to_string(dir.join("netlify.toml")) else {
        return Ok(None);
    };
    // Syntax errors are reported by the server with their line.
    let Ok(table) = text.parse::<toml::Table>() else {
        return Ok(None);
    };
    match table.get("build").and_then(|b| b.get("edge_functions")) {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => bail!("netlify.toml: `[build] edge_functions` must be a folder name"),
    }
}

/// Lists the files a deploy of `dir` carries.
pub(crate) fn collect(dir: &Path, layout: &Layout) -> anyhow::Result<Vec<LocalFile>> {
    if !dir.is_dir() {
        bail!("{} is not a folder", dir.display());
    }
    let publish = match &layout.publish {
        Some(p) => {
            let p = dir.join(p);
            if !p.is_dir() {
                bail!("--publish {} is not a folder", p.display());
            }
            p
        }
        None => publish_dir(dir)?,
    };
    let functions = match (&layout.functions, functions_dir_setting(dir)?) {
        (Some(f), _) => {
            let f = dir.join(f);
            if !f.is_dir() {
                bail!("--functions {} is not a folder", f.display());
            }
            f
        }
        (None, Some(f)) => dir.join(f.trim_start_matches("./")),
        (None, None) => dir.join("netlify").join("edge-functions"),
    };
    let same = publish.canonicalize()? == dir.canonicalize()?;
    let mut files = Vec::new();
    walk(&publish, &publish, same, &mut files)?;
    if same {
        // Functions travel only under their own prefix, from `functions`.
        files.retain(|f| !f.path.starts_with("/netlify/edge-functions/"));
    } else {
        let toml = dir.join("netlify.toml");
        if toml.is_file() {
            files.push(LocalFile {
                path: "/netlify.toml".into(),
                source: toml,
                digest: String::new(),
            });
        }
    }
    if functions.is_dir() {
        let mut fns = Vec::new();
        walk(&functions, &functions, false, &mut fns)?;
        let inside_publish = functions
            .canonicalize()
            .ok()
            .zip(publish.canonicalize().ok())
            .and_then(|(f, p)| {
                f.strip_prefix(&p)
                    .ok()
                    .map(|r| r.to_string_lossy().replace('\\', "/"))
            });
        if let Some(rel) = inside_publish.filter(|r| !r.is_empty()) {
            // A functions folder inside the publish folder is not served.
            let prefix = format!("/{rel}/");
            files.retain(|f| !f.path.starts_with(&prefix));
        }
        for mut f in fns {
            f.path = format!("/netlify/edge-functions{}", f.path);
            files.push(f);
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files.dedup_by(|a, b| a.path == b.path);
    Ok(files)
}

fn walk(
    root: &Path,
    dir: &Path,
    project_root: bool,
    out: &mut Vec<LocalFile>,
) -> anyhow::Result<()> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            bail!("{}: file names must be UTF-8", entry.path().display());
        };
        if (name.starts_with('.') && name != ".well-known")
            || name == "__MACOSX"
            || (project_root && dir == root && name == "node_modules")
        {
            continue;
        }
        let path = entry.path();
        let meta =
            std::fs::metadata(&path).with_context(|| format!("cannot read {}", path.display()))?;
        if meta.is_dir() {
            if entry.file_type()?.is_symlink() {
                continue; // never follow folder links: they can loop
            }
            walk(root, &path, project_root, out)?;
        } else if meta.is_file() {
            let rel = path
                .strip_prefix(root)
                .map_err(|_| anyhow!("{} is outside {}", path.display(), root.display()))?;
            let rel = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            out.push(LocalFile {
                path: format!("/{rel}"),
                source: path,
                digest: String::new(),
            });
        }
    }
    Ok(())
}

fn hash_file(path: &Path) -> anyhow::Result<String> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Hashes every file, spread over the machine's cores.
fn hash_all(files: &mut [LocalFile]) -> anyhow::Result<()> {
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(8);
    let chunk = files.len().div_ceil(workers).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = files
            .chunks_mut(chunk)
            .map(|part| {
                s.spawn(move || -> anyhow::Result<()> {
                    for f in part {
                        f.digest = hash_file(&f.source)?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| anyhow!("a hashing thread panicked"))??;
        }
        Ok(())
    })
}

/// Progress: a bar on a terminal, a plain line now and then otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    total: u64,
    done: u64,
    last_line: Instant,
    quiet: bool,
}

impl Progress {
    fn new(total: u64, quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal() && total > 0).then(|| {
            let b = indicatif::ProgressBar::new(total);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "uploading {bar:30} {pos}/{len} files {bytes_per_sec}",
            ) {
                b.set_style(style);
            }
            b
        });
        Self {
            bar,
            total,
            done: 0,
            last_line: Instant::now(),
            quiet,
        }
    }

    fn inc(&mut self) {
        self.done += 1;
        match &self.bar {
            Some(b) => b.inc(1),
            None if !self.quiet
                && (self.done == self.total
                    || self.last_line.elapsed() > Duration::from_secs(1)) =>
            {
                eprintln!("uploaded {}/{} files", self.done, self.total);
                self.last_line = Instant::now();
            }
            None => {}
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

async fn upload(c: &Client, deploy: &str, digest: &str, source: &Path) -> anyhow::Result<()> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let body = tokio::fs::read(source)
            .await
            .with_context(|| format!("cannot read {}", source.display()))?;
        let sent = Sha256::digest(&body);
        if hex::encode(sent) != digest {
            bail!(
                "{} changed while deploying: run the deploy again",
                source.display()
            );
        }
        match c
            .put_bytes(&format!("/api/v1/deploys/{deploy}/blobs/{digest}"), body)
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) => {
                let retryable = e
                    .downcast_ref::<ApiFailure>()
                    .is_none_or(|f| f.status >= 500 || f.status == 429);
                if !retryable || attempt >= UPLOAD_ATTEMPTS {
                    return Err(e.context(format!("uploading {}", source.display())));
                }
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
            }
        }
    }
}

/// Runs `ledge deploy`.
pub async fn run(c: &Client, args: DeployArgs) -> anyhow::Result<()> {
    let dir = args.dir.clone();
    let layout = Layout {
        publish: args.publish.clone(),
        functions: args.functions.clone(),
    };
    let files = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<LocalFile>> {
        let mut files = collect(&dir, &layout)?;
        hash_all(&mut files)?;
        Ok(files)
    })
    .await??;
    if files.is_empty() {
        bail!("{} has no files to deploy", args.dir.display());
    }
    let manifest: BTreeMap<&str, &str> = files
        .iter()
        .map(|f| (f.path.as_str(), f.digest.as_str()))
        .collect();
    let mut body = json!({"files": manifest, "prod": args.prod});
    if let Some(a) = &args.alias {
        body["alias"] = json!(a);
    }
    if let Some(m) = &args.message {
        body["message"] = json!(m);
    }
    let created = c
        .post(&format!("/api/v1/sites/{}/deploys", args.site), &body)
        .await?;
    let id = created["id"]
        .as_str()
        .ok_or_else(|| anyhow!("the API returned no deploy id"))?
        .to_owned();
    let required: Vec<String> = created["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d.as_str().map(str::to_owned))
        .collect();

    // One source file per required digest.
    let by_digest: HashMap<&str, &LocalFile> =
        files.iter().rev().map(|f| (f.digest.as_str(), f)).collect();
    let uploaded_files = files
        .iter()
        .filter(|f| required.iter().any(|d| d == &f.digest))
        .count();
    let reused_files = files.len() - uploaded_files;
    if !args.json {
        eprintln!(
            "deploy {id}: {} files, {} to upload, {} already on the server",
            files.len(),
            uploaded_files,
            reused_files
        );
    }
    let mut progress = Progress::new(required.len() as u64, args.json);
    let mut jobs = futures_util::stream::iter(required.iter().map(|d| {
        let source = by_digest.get(d.as_str()).map(|f| f.source.clone());
        let id = id.clone();
        async move {
            let source = source.ok_or_else(|| anyhow!("the server asked for unknown blob {d}"))?;
            upload(c, &id, d, &source).await
        }
    }))
    .buffer_unordered(UPLOAD_CONCURRENCY);
    while let Some(r) = jobs.next().await {
        r?;
        progress.inc();
    }
    progress.finish();

    let deploy = wait_ready(c, &id).await?;
    report(&deploy, uploaded_files, reused_files, args.json)
}

async fn wait_ready(c: &Client, id: &str) -> anyhow::Result<Value> {
    let start = Instant::now();
    let mut delay = Duration::from_millis(50);
    loop {
        let d = c.get(&format!("/api/v1/deploys/{id}")).await?;
        match d["state"].as_str() {
            Some("ready") | Some("error") => return Ok(d),
            _ if start.elapsed() > READY_TIMEOUT => {
                bail!(
                    "deploy {id} is still {} after {READY_TIMEOUT:?}",
                    d["state"]
                )
            }
            _ => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
        }
    }
}

fn report(d: &Value, uploaded: usize, reused: usize, as_json: bool) -> anyhow::Result<()> {
    let state = d["state"].as_str().unwrap_or("");
    if as_json {
        let out = json!({
            "id": d["id"],
            "state": d["state"],
            "urls": d["urls"],
            "uploaded": uploaded,
            "reused": reused,
            "published": d["published"],
            "diagnostics": d["diagnostics"],
            "error": d["error"],
        });
        println!("{out}");
    } else {
        print_diagnostics(
            d["diagnostics"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[]),
        );
        println!("deploy {} is {state}", d["id"].as_str().unwrap_or(""));
        println!("uploaded {uploaded} files, reused {reused}");
        if let Some(u) = d["urls"]["permalink"].as_str() {
            println!("permalink: {u}");
        }
        if let Some(u) = d["urls"]["alias"].as_str() {
            println!("alias:     {u}");
        }
        if let Some(u) = d["urls"]["live"].as_str() {
            println!("live:      {u}");
        }
    }
    if state == "error" {
        bail!(
            "deploy failed: {}",
            d["error"].as_str().unwrap_or("no reason given")
        );
    }
    Ok(())
}

/// Prints counts, then each problem as `file:line: severity: message`.
pub fn print_diagnostics(diags: &[Value]) {
    if diags.is_empty() {
        return;
    }
    let errors = diags.iter().filter(|d| d["severity"] == "error").count();
    eprintln!(
        "{} problem(s) in configuration files: {errors} error(s), {} warning(s)",
        diags.len(),
        diags.len() - errors
    );
    for d in diags {
        let line = d["line"]
            .as_u64()
            .map(|l| format!(":{l}"))
            .unwrap_or_default();
        eprintln!(
            "  {}{line}: {}: {}",
            d["file"].as_str().unwrap_or(""),
            d["severity"].as_str().unwrap_or(""),
            d["message"].as_str().unwrap_or("")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_dir_and_collection() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("dist/.hidden")).unwrap();
        std::fs::create_dir_all(root.join("netlify/edge-functions")).unwrap();
        std::fs::write(root.join("netlify.toml"), "[build]\npublish = \"dist\"\n").unwrap();
        std::fs::write(root.join("dist/index.html"), "hi").unwrap();
        std::fs::write(root.join("dist/_redirects"), "/a /b").unwrap();
        std::fs::write(root.join("dist/.hidden/x"), "no").unwrap();
        std::fs::write(
            root.join("netlify/edge-functions/f.js"),
            "export default () => {}",
        )
        .unwrap();
        std::fs::write(root.join("src.txt"), "not served").unwrap();
        let files = collect(root, &Layout::default()).unwrap();
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/_redirects",
                "/index.html",
                "/netlify.toml",
                "/netlify/edge-functions/f.js"
            ]
        );
        std::fs::write(
            root.join("netlify.toml"),
            "[build]\npublish = \"missing\"\n",
        )
        .unwrap();
        assert!(collect(root, &Layout::default()).is_err());
    }

    #[test]
    fn functions_folder_from_toml_or_flag() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("edge/lib")).unwrap();
        std::fs::create_dir_all(root.join("other")).unwrap();
        std::fs::write(
            root.join("netlify.toml"),
            "[build]\nedge_functions = \"edge\"\n",
        )
        .unwrap();
        std::fs::write(root.join("index.html"), "hi").unwrap();
        std::fs::write(root.join("edge/a.ts"), "export default () => {}").unwrap();
        std::fs::write(root.join("edge/lib/u.ts"), "export const u = 1").unwrap();
        std::fs::write(root.join("other/b.js"), "export default () => {}").unwrap();
        let paths = |layout: &Layout| -> Vec<String> {
            collect(root, layout)
                .unwrap()
                .into_iter()
                .map(|f| f.path)
                .collect()
        };
        // The functions folder inside the served folder is not served.
        assert_eq!(
            paths(&Layout::default()),
            [
                "/index.html",
                "/netlify.toml",
                "/netlify/edge-functions/a.ts",
                "/netlify/edge-functions/lib/u.ts",
                "/other/b.js"
            ]
        );
        let flagged = Layout {
            publish: Some("edge".into()),
            functions: Some("other".into()),
        };
        assert_eq!(
            paths(&flagged),
            [
                "/a.ts",
                "/lib/u.ts",
                "/netlify.toml",
                "/netlify/edge-functions/b.js"
            ]
        );
        assert!(collect(
            root,
            &Layout {
                functions: Some("missing".into()),
                ..Layout::default()
            }
        )
        .is_err());
    }
}
