//! `ledge`: one binary for the node (`ledge serve`) and its client (`ledge
//! deploy`, `ledge sites`, …). Thin: each command lives in its own module.
#![deny(unsafe_code)]

mod acme;
mod alloc;
mod client;
mod config;
mod demo;
mod deploy;
mod observe;
mod rules;
mod serve;
mod telemetry;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc ([`alloc`]).
#[global_allocator]
static ALLOCATOR: alloc::Mimalloc = alloc::Mimalloc;

#[derive(Parser)]
#[command(
    name = "ledge",
    version,
    about = "A self-hostable edge platform for web sites"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node: control API and edge, with embedded storage.
    Serve(Box<config::ServeArgs>),
    /// Manage sites.
    #[command(subcommand)]
    Sites(SitesCmd),
    /// Manage custom domains.
    #[command(subcommand)]
    Domains(DomainsCmd),
    /// Manage API tokens.
    #[command(subcommand)]
    Tokens(TokensCmd),
    /// Deploy a folder.
    Deploy(deploy::DeployArgs),
    /// List deploys.
    #[command(subcommand)]
    Deploys(DeploysCmd),
    /// Publish an earlier deploy (default: the previously published one).
    Rollback {
        /// The site.
        #[arg(long)]
        site: String,
        /// The deploy to publish.
        #[arg(long)]
        to: Option<String>,
    },
    /// Purge a site's cached responses: all of them, or those with a tag.
    Purge {
        /// The site.
        #[arg(long)]
        site: String,
        /// Purge only responses with this cache tag (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
    },
    /// Stop auto-publishing production deploys for a site.
    Lock {
        /// The site.
        #[arg(long)]
        site: String,
    },
    /// Resume auto-publishing production deploys for a site.
    Unlock {
        /// The site.
        #[arg(long)]
        site: String,
    },
    /// Manage TLS certificates of custom domains.
    #[command(subcommand)]
    Certs(CertsCmd),
    /// Check rules files, or explain what a request would get.
    #[command(subcommand)]
    Rules(rules::RulesCmd),
    /// Show a site's requests live (for a few seconds, or with --follow until
    /// interrupted).
    #[command(long_about = observe::LOGS_HELP)]
    Logs(observe::LogsArgs),
    /// Show a site's traffic statistics.
    #[command(long_about = observe::STATS_HELP)]
    Stats(observe::StatsArgs),
}

#[derive(Subcommand)]
enum SitesCmd {
    /// Create a site.
    Create {
        /// DNS label of at most 37 characters.
        name: String,
    },
    /// List sites.
    List,
    /// Show one site with its settings.
    Get {
        /// The site.
        name: String,
    },
    /// Delete a site and everything it owns.
    Delete {
        /// The site.
        name: String,
    },
    /// Change settings: KEY=VALUE (env.NAME=VALUE for environment variables;
    /// an empty VALUE removes the setting).
    Set {
        /// The site.
        name: String,
        /// KEY=VALUE pairs.
        #[arg(required = true)]
        pairs: Vec<String>,
    },
}

#[derive(Subcommand)]
enum DomainsCmd {
    /// Serve a site on a custom domain.
    Add {
        /// The domain.
        domain: String,
        /// The site.
        #[arg(long)]
        site: String,
    },
    /// Stop serving a site on a custom domain.
    Remove {
        /// The domain.
        domain: String,
        /// The site.
        #[arg(long)]
        site: String,
    },
}

#[derive(Subcommand)]
enum CertsCmd {
    /// Upload a certificate for one of a site's domains.
    Add {
        /// The site.
        #[arg(long)]
        site: String,
        /// The domain it serves (a domain of the site, or `*.parent`).
        #[arg(long)]
        domain: String,
        /// PEM chain file, leaf first.
        #[arg(long)]
        cert: PathBuf,
        /// PEM private key file.
        #[arg(long)]
        key: PathBuf,
    },
    /// List a site's certificates.
    List {
        /// The site.
        #[arg(long)]
        site: String,
    },
}

#[derive(Subcommand)]
enum TokensCmd {
    /// Create a token scoped to one site.
    Create {
        /// The site.
        #[arg(long)]
        site: String,
    },
}

#[derive(Subcommand)]
enum DeploysCmd {
    /// List a site's deploys, newest first.
    List {
        /// The site.
        #[arg(long)]
        site: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    // A sandboxed edge function worker, started by `ledge serve`: it must
    // sandbox itself before any other thread exists, so it is dispatched here,
    // before argument parsing.
    if std::env::args_os().nth(1).as_deref() == Some(std::ffi::OsStr::new(FUNCTION_WORKER)) {
        return ledge_functions::worker::worker_main();
    }
    // A deploy's edge function build, started by `ledge serve` for each
    // deploy that has functions (`ledge_edge::functions::build_in_child`).
    if std::env::args_os().nth(1).as_deref()
        == Some(std::ffi::OsStr::new(ledge_edge::functions::BUILD_CHILD))
    {
        return ledge_edge::functions::build_child_main();
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Rules(cmd) => rules::run(cmd),
        other => client_command(other),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The hidden first argument that makes this binary an edge function worker.
pub const FUNCTION_WORKER: &str = "function-worker";

fn client_command(cmd: Command) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let c = client::Client::from_env()?;
        match cmd {
            Command::Serve(_) | Command::Rules(_) => {
                return Err(anyhow::anyhow!("not a client command"))
            }
            Command::Sites(SitesCmd::Create { name }) => {
                let s = c
                    .post("/api/v1/sites", &serde_json::json!({"name": name}))
                    .await?;
                println!(
                    "created site {} at {}",
                    s["name"].as_str().unwrap_or(&name),
                    s["url"].as_str().unwrap_or("")
                );
            }
            Command::Sites(SitesCmd::List) => {
                let v = c.get("/api/v1/sites").await?;
                for s in v["sites"].as_array().into_iter().flatten() {
                    println!(
                        "{}\t{}\t{}",
                        s["name"].as_str().unwrap_or(""),
                        s["published_deploy"].as_str().unwrap_or("-"),
                        s["url"].as_str().unwrap_or("")
                    );
                }
            }
            Command::Sites(SitesCmd::Get { name }) => {
                let mut s = c.get(&format!("/api/v1/sites/{name}")).await?;
                s["settings"] = c.get(&format!("/api/v1/sites/{name}/settings")).await?;
                println!("{}", serde_json::to_string_pretty(&s)?);
            }
            Command::Sites(SitesCmd::Delete { name }) => {
                c.delete(&format!("/api/v1/sites/{name}")).await?;
                println!("deleted site {name}");
            }
            Command::Sites(SitesCmd::Set { name, pairs }) => {
                let patch =
                    ledge_store::settings::patch_from_pairs(pairs.iter().map(String::as_str))
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                let v = c
                    .patch(&format!("/api/v1/sites/{name}/settings"), &patch)
                    .await?;
                println!("{}", serde_json::to_string_pretty(&v)?);
            }
            Command::Domains(DomainsCmd::Add { domain, site }) => {
                let v = c
                    .post(
                        &format!("/api/v1/sites/{site}/domains"),
                        &serde_json::json!({"domain": domain}),
                    )
                    .await?;
                println!(
                    "{} now serves site {site}",
                    v["domain"].as_str().unwrap_or(&domain)
                );
            }
            Command::Domains(DomainsCmd::Remove { domain, site }) => {
                c.delete(&format!("/api/v1/sites/{site}/domains/{domain}"))
                    .await?;
                println!("{domain} no longer serves site {site}");
            }
            Command::Certs(CertsCmd::Add {
                site,
                domain,
                cert,
                key,
            }) => {
                let read = |p: &PathBuf| {
                    std::fs::read_to_string(p)
                        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))
                };
                let body =
                    serde_json::json!({"domain": domain, "cert": read(&cert)?, "key": read(&key)?});
                let v = c
                    .post(&format!("/api/v1/sites/{site}/certs"), &body)
                    .await?;
                println!(
                    "certificate for {} stored (names: {}, fingerprint {})",
                    v["domain"].as_str().unwrap_or(&domain),
                    v["names"]
                        .as_array()
                        .map(|n| n
                            .iter()
                            .filter_map(|x| x.as_str())
                            .collect::<Vec<_>>()
                            .join(", "))
                        .unwrap_or_default(),
                    v["fingerprint"].as_str().unwrap_or("")
                );
            }
            Command::Certs(CertsCmd::List { site }) => {
                let v = c.get(&format!("/api/v1/sites/{site}/certs")).await?;
                for cert in v["certs"].as_array().into_iter().flatten() {
                    println!(
                        "{}\texpires {}\t{}\t{}",
                        cert["domain"].as_str().unwrap_or(""),
                        cert["not_after"],
                        cert["source"].as_str().unwrap_or(""),
                        cert["fingerprint"].as_str().unwrap_or("")
                    );
                }
            }
            Command::Tokens(TokensCmd::Create { site }) => {
                let v = c
                    .post("/api/v1/tokens", &serde_json::json!({"site": site}))
                    .await?;
                println!("{}", v["token"].as_str().unwrap_or(""));
            }
            Command::Deploy(args) => deploy::run(&c, args).await?,
            Command::Logs(args) => observe::logs(&c, args).await?,
            Command::Stats(args) => observe::stats(&c, args).await?,
            Command::Deploys(DeploysCmd::List { site, json }) => {
                let v = c.get(&format!("/api/v1/sites/{site}/deploys")).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&v)?);
                } else {
                    for d in v["deploys"].as_array().into_iter().flatten() {
                        println!(
                            "{}\t{}\t{}{}\t{}",
                            d["id"].as_str().unwrap_or(""),
                            d["state"].as_str().unwrap_or(""),
                            if d["prod"].as_bool() == Some(true) {
                                "prod"
                            } else {
                                "draft"
                            },
                            if d["published"].as_bool() == Some(true) {
                                " (published)"
                            } else {
                                ""
                            },
                            d["message"].as_str().unwrap_or("")
                        );
                    }
                }
            }
            Command::Rollback { site, to } => {
                let body = match to {
                    Some(id) => serde_json::json!({"deploy": id}),
                    None => serde_json::json!({}),
                };
                let v = c
                    .post(&format!("/api/v1/sites/{site}/rollback"), &body)
                    .await?;
                println!(
                    "site {site} now serves deploy {} at {}",
                    v["published_deploy"].as_str().unwrap_or(""),
                    v["url"].as_str().unwrap_or("")
                );
            }
            Command::Purge { site, tags } => {
                let v = c
                    .post(
                        &format!("/api/v1/sites/{site}/purge"),
                        &serde_json::json!({ "tags": tags }),
                    )
                    .await?;
                if tags.is_empty() {
                    println!("purged every cached response of site {site}");
                } else {
                    println!(
                        "purged cached responses of site {site} tagged {}",
                        v["tags"]
                            .as_array()
                            .map(|a| a
                                .iter()
                                .filter_map(|t| t.as_str())
                                .collect::<Vec<_>>()
                                .join(", "))
                            .unwrap_or_default()
                    );
                }
            }
            Command::Lock { site } => {
                c.post(
                    &format!("/api/v1/sites/{site}/lock"),
                    &serde_json::json!({}),
                )
                .await?;
                println!("auto-publishing locked for site {site}");
            }
            Command::Unlock { site } => {
                c.post(
                    &format!("/api/v1/sites/{site}/unlock"),
                    &serde_json::json!({}),
                )
                .await?;
                println!("auto-publishing unlocked for site {site}");
            }
        }
        Ok(())
    })
}

/// The default data folder.
pub fn default_data_dir() -> PathBuf {
    PathBuf::from("ledge-data")
}
