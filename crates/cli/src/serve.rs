//! `ledge serve`: the composition root of a node. Opens the stores, makes the
//! admin token on first start, resumes interrupted deploy processing, then runs
//! the control API and the edge until SIGTERM or SIGINT, and drains.

use std::io::Write;
use std::sync::Arc;

use anyhow::Context;
use ledge_control::process::Processor;
use ledge_control::{ApiState, ConfigCheck};
use ledge_edge::{BlobCache, DeployCache, Edge, Router};
use ledge_store::{BlobStore, Feed, FsBlobStore, MetaStore, Principal, SqliteStore};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{ServeArgs, ServeConfig};

/// Runs a node until a signal stops it.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let cfg = args.resolve()?;
    // One core: a current-thread runtime skips the work-stealing machinery.
    let workers = std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let rt = if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
    }
    .context("cannot start the runtime")?;
    rt.block_on(node(cfg))
}

fn init_tracing(format: crate::config::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LEDGE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,ledge=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        crate::config::LogFormat::Text => builder.try_init(),
        crate::config::LogFormat::Json => builder.json().try_init(),
    };
}

/// Validation of configuration files at deploy time: the rules are compiled
/// once and every problem is kept on the deploy.
pub fn config_check() -> ConfigCheck {
    Arc::new(|config| {
        let text = |p: &str| config.get(p).map(String::as_str);
        let (_, diags) = ledge_rules::RuleSet::compile(&ledge_rules::Sources {
            redirects: text("/_redirects"),
            headers: text("/_headers"),
            netlify_toml: text("/netlify.toml"),
        });
        diags.into_iter().map(to_deploy_diagnostic).collect()
    })
}

/// A rules diagnostic in the store's form.
pub fn to_deploy_diagnostic(d: ledge_rules::Diagnostic) -> ledge_store::DeployDiagnostic {
    ledge_store::DeployDiagnostic {
        file: d.file.to_string(),
        line: d.line,
        severity: match d.severity {
            ledge_rules::Severity::Error => "error".into(),
            ledge_rules::Severity::Warning => "warning".into(),
        },
        message: d.message,
    }
}

/// Where edge functions run: sandboxed worker processes (this binary with
/// the hidden `function-worker` argument), or in this process when the
/// operator set `[functions] workers = 0`.
fn function_runner(cfg: &ServeConfig) -> anyhow::Result<Arc<dyn ledge_functions::Runner>> {
    if cfg.function_workers == 0 {
        return Ok(Arc::new(ledge_functions::Engine::new(
            cfg.function_limits.clone(),
        )));
    }
    let exe =
        std::env::current_exe().context("cannot find this program to start function workers")?;
    let mut opts =
        ledge_functions::worker::WorkerOptions::new(exe, vec![crate::FUNCTION_WORKER.into()]);
    opts.workers = cfg.function_workers;
    opts.limits = cfg.function_limits.clone();
    // A profile-instrumented build (`scripts/pgo-build.sh`) names its
    // profile file here; its workers write theirs through a mapping made
    // before their sandbox, so they need the name too. Nothing else of the
    // node's environment reaches a worker.
    if let Some(name) = std::env::var_os("LLVM_PROFILE_FILE") {
        opts.envs.push(("LLVM_PROFILE_FILE".into(), name));
    }
    let pool = ledge_functions::worker::WorkerPool::start(opts)
        .context("cannot start edge function workers")?;
    Ok(Arc::new(pool))
}

/// Deploy-time bundling of edge functions, in a child process of this
/// program (`ledge_edge::functions::build_in_child`): tenant sources can
/// crash or stall the parser, and must not take the node with them.
fn function_build() -> anyhow::Result<ledge_control::FunctionBuild> {
    let exe = std::env::current_exe()
        .context("cannot find this program to bundle edge functions with")?;
    Ok(Arc::new(move |config, sources| {
        ledge_edge::functions::build_in_child(
            &exe,
            ledge_edge::functions::BUILD_TIMEOUT,
            config,
            sources,
        )
    }))
}

async fn node(cfg: ServeConfig) -> anyhow::Result<()> {
    init_tracing(cfg.log_format);
    std::fs::create_dir_all(&cfg.data)
        .with_context(|| format!("cannot create data folder {}", cfg.data.display()))?;
    let meta: Arc<dyn MetaStore> = Arc::new(
        SqliteStore::open(&cfg.data.join("meta.db"))
            .await
            .context("cannot open the metadata store")?,
    );
    let blobs: Arc<dyn BlobStore> = Arc::new(
        FsBlobStore::open(cfg.data.join("blobs"))
            .await
            .context("cannot open the blob store")?,
    );
    ensure_admin_token(meta.as_ref(), &cfg).await?;

    let node_key = Arc::new(
        ledge_tls::NodeKey::load_or_create(&cfg.data.join("node-key"))
            .context("cannot load the node key")?,
    );
    let certs = match cfg.tls_listen {
        Some(_) => Some(tls_resolver(&cfg, meta.clone(), node_key.clone())?),
        None => None,
    };

    let feed = Feed::new(4096);
    let router = Arc::new(Router::new(&cfg.edge_domain));
    let http_cache = open_http_cache(&cfg).await?;
    // Subscribe before the first rebuild so no event is lost in between.
    let feed_rx = feed.subscribe();
    ledge_edge::routes::rebuild_from(&router, meta.as_ref()).await;
    // Purges made while this node was down apply before it serves anything.
    ledge_edge::routes::load_purges(http_cache.generations(), meta.as_ref()).await;
    tokio::spawn(ledge_edge::follow(
        router.clone(),
        meta.clone(),
        certs.clone(),
        Some(http_cache.generations().clone()),
        feed.clone(),
        feed_rx,
    ));

    let processor = Processor {
        meta: meta.clone(),
        blobs: blobs.clone(),
        feed: feed.clone(),
        check: config_check(),
        functions: Some(function_build()?),
    };
    let acme_challenges = cfg.acme.as_ref().map(|_| ledge_acme::ChallengeStore::new());
    for id in meta.processing_deploys().await? {
        tracing::info!(deploy = %id, "resuming deploy processing");
        processor.spawn(id);
    }

    let edge_listener = TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {} (edge)", cfg.listen))?;
    let api_listener = TcpListener::bind(cfg.api_listen)
        .await
        .with_context(|| format!("cannot listen on {} (API)", cfg.api_listen))?;
    let edge_addr = edge_listener.local_addr()?;
    let api_addr = api_listener.local_addr()?;
    let tls_listener = match cfg.tls_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (HTTPS)"))?,
        ),
        None => None,
    };

    if cfg.demo {
        crate::demo::publish(&meta, &blobs, &processor).await?;
    }

    let port_suffix = if edge_addr.port() == 80 {
        String::new()
    } else {
        format!(":{}", edge_addr.port())
    };
    let origin = ledge_edge::Origin::new(
        ledge_edge::OutboundPolicy {
            allow: cfg.outbound_allow.clone(),
            control_api: Some(api_addr),
        },
        &ledge_edge::OriginOptions {
            connect_timeout: cfg.origin_connect_timeout,
            response_timeout: cfg.origin_response_timeout,
            extra_roots_pem: match &cfg.origin_ca {
                Some(path) => vec![std::fs::read(path)
                    .with_context(|| format!("cannot read the origin CA {}", path.display()))?],
                None => Vec::new(),
            },
            ..Default::default()
        },
    )
    .context("cannot build the origin client")?;
    let telemetry = crate::telemetry::start(&cfg.data, &cfg.access_log, meta.clone(), &origin)?;
    if let Some((t, _)) = &telemetry {
        tokio::spawn(crate::telemetry::follow_drains(
            t.clone(),
            meta.clone(),
            feed.clone(),
        ));
    }
    let api = ledge_control::router(ApiState {
        meta: meta.clone(),
        blobs: blobs.clone(),
        feed: feed.clone(),
        processor,
        edge_domain: cfg.edge_domain.clone(),
        edge_port_suffix: port_suffix.clone(),
        node_key: node_key.clone(),
        telemetry: telemetry.as_ref().map(|(t, _)| t.clone()),
    });
    let geo = ledge_edge::geo::Geo {
        header: cfg.geo_header.clone(),
        db: cfg
            .geoip_db
            .as_deref()
            .map(ledge_edge::geo::Geo::open_db)
            .transpose()?,
    };
    let edge = Arc::new(Edge {
        router,
        origin,
        geo,
        acme: acme_challenges
            .clone()
            .map(|c| Arc::new(crate::acme::Challenges(c)) as Arc<dyn ledge_edge::AcmeChallenges>),
        deploys: DeployCache::new(blobs.clone(), cfg.deploy_cache),
        blobs: BlobCache::new(blobs.clone(), cfg.blob_cache_bytes, cfg.max_object_bytes),
        config: cfg.edge.clone(),
        telemetry: telemetry.as_ref().map(|(t, _)| t.clone()),
        cache: Some(http_cache),
        functions: Some(function_runner(&cfg)?),
    });

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut api_stop = stop_rx.clone();
    let api_task = tokio::spawn(async move {
        axum::serve(api_listener, api)
            .with_graceful_shutdown(async move {
                let _ = api_stop.wait_for(|s| *s).await;
            })
            .await
    });
    let mut edge_stop = stop_rx.clone();
    let mut tls_addr = None;
    let tls_task = match (tls_listener, certs) {
        (Some(listener), Some(resolver)) => {
            let mut stop = stop_rx.clone();
            tls_addr = Some(listener.local_addr()?);
            Some(tokio::spawn(ledge_edge::serve(
                listener,
                edge.clone(),
                cfg.limits.clone(),
                Some(resolver),
                async move {
                    let _ = stop.wait_for(|s| *s).await;
                },
            )))
        }
        _ => None,
    };
    let edge_task = tokio::spawn(ledge_edge::serve(
        edge_listener,
        edge,
        cfg.limits.clone(),
        None,
        async move {
            let _ = edge_stop.wait_for(|s| *s).await;
        },
    ));

    let mut out = std::io::stdout().lock();
    writeln!(out, "ledge: edge listening on http://{edge_addr}")?;
    if let Some(addr) = tls_addr {
        writeln!(out, "ledge: HTTPS listening on https://{addr}")?;
    }
    writeln!(out, "ledge: API listening on http://{api_addr}")?;
    if cfg.demo {
        writeln!(
            out,
            "ledge: demo site at http://demo.{}{port_suffix}/",
            cfg.edge_domain
        )?;
    }
    out.flush()?;
    drop(out);

    if let (Some(config), Some(challenges)) = (cfg.acme.clone(), acme_challenges) {
        // Listening now, so the edge can answer the challenges.
        crate::acme::AcmeManager::spawn(
            config,
            cfg.data.clone(),
            meta.clone(),
            node_key.clone(),
            feed.clone(),
            challenges,
        );
    }

    shutdown_signal().await;
    tracing::info!("draining connections");
    let _ = stop_tx.send(true);
    let _ = edge_task.await;
    if let Some(t) = tls_task {
        let _ = t.await;
    }
    if let Ok(Err(e)) = api_task.await {
        tracing::warn!(error = %e, "API server stopped with an error");
    }
    if let Some((t, background)) = telemetry {
        // Every request has ended: flush the queue, statistics and drains.
        t.shutdown();
        background.join().await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// The HTTP cache of proxied responses: memory tier, disk tier under
/// `DATA/http-cache` (kept across restarts), purge generations from the store
/// (loaded by the feed follower before the edge answers).
async fn open_http_cache(cfg: &ServeConfig) -> anyhow::Result<Arc<ledge_cache::Cache>> {
    let (memory, disk, max_body) = cfg.http_cache;
    let config = ledge_cache::CacheConfig {
        name: "ledge".into(),
        memory_capacity: memory,
        max_body,
        disk: (disk > 0).then(|| ledge_cache::DiskConfig {
            path: cfg.data.join("http-cache"),
            capacity: disk,
        }),
        ..Default::default()
    };
    let generations = Arc::new(ledge_cache::Generations::new());
    let cache = tokio::task::spawn_blocking(move || {
        ledge_cache::Cache::open(config, Arc::new(ledge_cache::SystemClock), generations)
    })
    .await
    .context("cache start-up")?
    .context("cannot open the HTTP cache")?;
    Ok(Arc::new(cache))
}

/// The TLS certificate resolver: tenants' certificates from the store, the
/// operator's certificate for `*.EDGE_DOMAIN` and for clients without SNI.
fn tls_resolver(
    cfg: &ServeConfig,
    meta: Arc<dyn MetaStore>,
    node_key: Arc<ledge_tls::NodeKey>,
) -> anyhow::Result<Arc<ledge_tls::CertResolver>> {
    let source = Arc::new(ledge_edge::routes::StoreCertSource { meta });
    let mut resolver = ledge_tls::CertResolver::new(source, node_key)?;
    if let Some((cert, key)) = &cfg.tls_operator {
        let chain = std::fs::read_to_string(cert)
            .with_context(|| format!("cannot read {}", cert.display()))?;
        let pem = std::fs::read_to_string(key)
            .with_context(|| format!("cannot read {}", key.display()))?;
        // Served for edge names only when it covers them; always the default
        // for clients that send no SNI.
        let now = std::time::SystemTime::now();
        let probe = format!("ledge.{}", cfg.edge_domain);
        let context = || format!("operator certificate {}", cert.display());
        match ledge_tls::validate(&chain, &pem, &probe, now) {
            Ok(v) => {
                let key = v.certified_key();
                resolver = resolver
                    .with_edge_wildcard(&cfg.edge_domain, key.clone())
                    .with_default(key);
            }
            Err(ledge_tls::CertError::NameMismatch { names, .. }) if !names.is_empty() => {
                let own = names[0].replace('*', "ledge");
                let v = ledge_tls::validate(&chain, &pem, &own, now).with_context(context)?;
                tracing::warn!(
                    "the operator certificate does not cover *.{}: it is only the default for clients without SNI",
                    cfg.edge_domain
                );
                resolver = resolver.with_default(v.certified_key());
            }
            Err(e) => return Err(anyhow::Error::new(e).context(context())),
        }
    }
    Ok(Arc::new(resolver))
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// On first start: a new admin token, stored hashed, written to
/// `DATA/admin-token` with mode 0600, and printed once.
async fn ensure_admin_token(meta: &dyn MetaStore, cfg: &ServeConfig) -> anyhow::Result<()> {
    let path = cfg.data.join("admin-token");
    if meta.has_admin_token().await? {
        if !path.exists() {
            tracing::warn!(
                "{} is missing; the admin token cannot be shown again",
                path.display()
            );
        }
        return Ok(());
    }
    let token = ledge_control::new_token();
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        writeln!(f, "{token}")?;
        f.sync_all()?;
    }
    meta.add_token(&ledge_control::token_hash(&token), &Principal::Admin)
        .await?;
    println!(
        "ledge: created admin token (saved in {}): {token}",
        path.display()
    );
    Ok(())
}
