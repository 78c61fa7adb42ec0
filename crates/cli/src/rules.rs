//! `ledge rules check DIR` and `ledge rules explain DIR URL`: the deploy's rule
//! processing and the edge's decision, run locally on a site folder.

use std::collections::HashSet;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use ledge_edge::static_files::{locate, Located};
use ledge_rules::{Outcome, RuleRequest, RuleSet, SiteSettings, Sources};
use ledge_store::snapshot::is_config_path;

use crate::deploy::collect;

/// `ledge rules …`.
#[derive(clap::Subcommand, Debug)]
pub enum RulesCmd {
    /// Validate the rules files of a site folder, as a deploy would.
    Check {
        /// The site folder.
        dir: PathBuf,
    },
    /// Show which rule a request matches, and why (or why none did).
    Explain {
        /// The site folder.
        dir: PathBuf,
        /// The request URL, e.g. https://example.com/blog/post?x=1.
        url: String,
        /// The visitor's country (ISO 3166-1 alpha-2).
        #[arg(long)]
        country: Option<String>,
        /// The visitor's language (as Accept-Language).
        #[arg(long)]
        language: Option<String>,
        /// A cookie, NAME=VALUE (repeatable).
        #[arg(long)]
        cookie: Vec<String>,
        /// HS256 secret for Role conditions (the site's jwt_secret).
        #[arg(long)]
        jwt_secret: Option<String>,
    },
}

struct Local {
    rules: RuleSet,
    diagnostics: Vec<ledge_rules::Diagnostic>,
    files: HashSet<String>,
}

fn load(dir: &std::path::Path) -> anyhow::Result<Local> {
    let files = collect(dir, &crate::deploy::Layout::default())?;
    let read = |p: &str| -> anyhow::Result<Option<String>> {
        match files.iter().find(|f| f.path == p) {
            Some(f) => std::fs::read_to_string(&f.source)
                .map(Some)
                .with_context(|| format!("cannot read {}", f.source.display())),
            None => Ok(None),
        }
    };
    let (redirects, headers, toml) = (
        read("/_redirects")?,
        read("/_headers")?,
        read("/netlify.toml")?,
    );
    let (rules, diagnostics) = RuleSet::compile(&Sources {
        redirects: redirects.as_deref(),
        headers: headers.as_deref(),
        netlify_toml: toml.as_deref(),
    });
    let files = files
        .into_iter()
        .map(|f| f.path)
        .filter(|p| !is_config_path(p))
        .collect();
    Ok(Local {
        rules,
        diagnostics,
        files,
    })
}

/// Runs a `rules` subcommand.
pub fn run(cmd: RulesCmd) -> anyhow::Result<()> {
    match cmd {
        RulesCmd::Check { dir } => {
            let local = load(&dir)?;
            for d in &local.diagnostics {
                eprintln!("{d}");
            }
            let errors = local
                .diagnostics
                .iter()
                .filter(|d| d.severity == ledge_rules::Severity::Error)
                .count();
            println!(
                "{} redirect rules, {} header rules, {} edge function declarations; {errors} error(s), {} warning(s)",
                local.rules.rules().len(),
                local.rules.header_blocks().len(),
                local.rules.edge_functions().len(),
                local.diagnostics.len() - errors
            );
            if errors > 0 {
                bail!("{errors} line(s) would be dropped from the deploy");
            }
            Ok(())
        }
        RulesCmd::Explain {
            dir,
            url,
            country,
            language,
            cookie,
            jwt_secret,
        } => {
            let local = load(&dir)?;
            let parsed = url::Url::parse(&url).map_err(|e| anyhow!("{url:?} is not a URL: {e}"))?;
            let host = parsed
                .host_str()
                .ok_or_else(|| anyhow!("{url:?} has no host"))?
                .to_owned();
            let site = SiteSettings {
                jwt_secret,
                ..SiteSettings::default()
            };
            let cookies = cookie.join("; ");
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let req = RuleRequest {
                method: "GET",
                scheme: parsed.scheme(),
                host: &host,
                path: parsed.path(),
                query: parsed.query().unwrap_or(""),
                cookie: (!cookies.is_empty()).then_some(cookies.as_str()),
                accept_language: language.as_deref(),
                country: country.as_deref(),
                language: None,
                now_unix: now,
                site: &site,
            };
            let has = |p: &str| local.files.contains(p);
            let exists = |p: &str| !matches!(locate(p, has), Located::NotFound);
            println!("{}", local.rules.explain(&req, &exists));
            if matches!(
                local.rules.evaluate(&req, &exists),
                Outcome::NoMatch | Outcome::Static { .. }
            ) {
                let decoded = ledge_edge::static_files::decode_path(parsed.path())
                    .map_err(|_| anyhow!("the path is malformed: the edge answers 400"))?;
                match locate(&decoded, has) {
                    Located::File(p) => println!("static: serves {p}"),
                    Located::AddSlash => println!("static: 301 to {}/", parsed.path()),
                    Located::NotFound if local.files.contains("/404.html") => {
                        println!("static: no file; serves /404.html with status 404")
                    }
                    Located::NotFound => println!("static: no file; the platform's 404 page"),
                }
            }
            Ok(())
        }
    }
}
