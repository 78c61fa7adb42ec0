//! The routing table: host → site → deploy.
//!
//! One immutable [`Table`] is published through an `ArcSwap`; readers take a
//! snapshot with one atomic load and no lock. Changes from the feed are applied
//! to a copy made with persistent maps (`imbl`), so an update costs O(log n) and
//! shares everything it does not touch: the table is never rebuilt whole per
//! publish. A node that misses an event (a sequence gap, or lag on the broadcast)
//! rebuilds from the store's routing state at a known sequence.

use std::sync::Arc;

use arc_swap::ArcSwap;
/// Persistent map with a fast keyed hash: lookups run on every request, and
/// the keys (site names, domains) come from operators, with a per-process seed.
type HashMap<K, V> =
    imbl::GenericHashMap<K, V, foldhash::fast::RandomState, imbl::shared_ptr::DefaultSharedPtr>;
use ledge_core::{parse_edge_host, DeployId, EdgeHost, Label, SiteName};
use ledge_store::{ChangeEvent, EventKind, SiteRouting, SiteSettings};

/// What the table knows of one site.
#[derive(Debug, Clone, Default)]
pub struct SiteEntry {
    /// Production deploy.
    pub published: Option<DeployId>,
    /// Alias → newest ready deploy with it.
    pub aliases: HashMap<Label, DeployId>,
    /// Settings (secrets included) for the phases that need them.
    pub settings: Arc<SiteSettings>,
    /// The same, in the form the rules engine takes.
    pub rule_settings: Arc<ledge_rules::SiteSettings>,
}

/// The rules engine's view of a site's settings: the `Role` JWT secret and
/// claim, and the secrets signed proxies may name (the site's environment
/// variables, plus `signed_proxy_secret` as `SIGNED_PROXY_SECRET`).
pub fn rule_settings(
    site: &SiteName,
    s: &SiteSettings,
    edge_domain: &str,
) -> ledge_rules::SiteSettings {
    let mut out = ledge_rules::SiteSettings {
        jwt_secret: s.jwt_secret.clone(),
        site_id: site.to_string(),
        site_url: format!("https://{site}.{edge_domain}"),
        ..Default::default()
    };
    if let Some(claim) = &s.jwt_role_claim {
        out.jwt_role_claim = claim.clone();
    }
    out.signing_secrets = s.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    if let Some(secret) = &s.signed_proxy_secret {
        out.signing_secrets
            .push(("SIGNED_PROXY_SECRET".to_owned(), secret.clone()));
    }
    out
}

/// One immutable version of the routing table.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// Store sequence this table is current at.
    pub seq: i64,
    /// Site name → entry.
    pub sites: HashMap<SiteName, Arc<SiteEntry>>,
    /// Custom domain → site.
    pub domains: HashMap<Box<str>, SiteName>,
}

/// Where a request goes.
#[derive(Debug, Clone)]
pub struct RouteTarget {
    /// The site.
    pub site: SiteName,
    /// The deploy to serve.
    pub deploy: DeployId,
    /// True for the production URL or a custom domain.
    pub production: bool,
    /// The site's settings.
    pub settings: Arc<SiteSettings>,
    /// The settings as the rules engine takes them.
    pub rule_settings: Arc<ledge_rules::SiteSettings>,
}

/// The outcome of a route lookup.
#[derive(Debug, Clone)]
pub enum Route {
    /// Serve this deploy.
    Deploy(RouteTarget),
    /// The host names a site or alias with nothing ready to serve yet.
    NothingPublished,
    /// No site has this host.
    UnknownHost,
}

/// The routing table and its updater.
#[derive(Debug)]
pub struct Router {
    edge_domain: String,
    table: ArcSwap<Table>,
    /// Counts the tables published, moved after each store: anything kept
    /// from a request answered under version `v` is stale once this reads
    /// past `v`.
    version: std::sync::atomic::AtomicU64,
}

/// What applying an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The table moved to the event's sequence.
    Yes,
    /// Already reflected (an older or duplicate event); ignored.
    Stale,
    /// A sequence gap: the caller must rebuild from the store.
    Gap,
}

impl Router {
    /// An empty table for hosts under `edge_domain`.
    pub fn new(edge_domain: &str) -> Self {
        Self {
            edge_domain: edge_domain.trim_end_matches('.').to_ascii_lowercase(),
            table: ArcSwap::from_pointee(Table::default()),
            version: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// How many tables have been published. Read it before routing a
    /// request: a later table always reads as a larger number, because the
    /// count moves only after the new table is in place.
    pub fn version(&self) -> u64 {
        self.version.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn publish(&self, table: Table) {
        self.table.store(Arc::new(table));
        self.version
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// The edge domain (`localhost` by default).
    pub fn edge_domain(&self) -> &str {
        &self.edge_domain
    }

    /// The current table.
    pub fn table(&self) -> Arc<Table> {
        self.table.load_full()
    }

    /// Replaces the table with the store's state at `seq`.
    pub fn rebuild(&self, seq: i64, sites: Vec<SiteRouting>) {
        let mut table = Table {
            seq,
            ..Table::default()
        };
        for s in sites {
            for d in &s.domains {
                table.domains.insert(d.as_str().into(), s.name.clone());
            }
            let entry = SiteEntry {
                published: s.published,
                aliases: s.aliases.into_iter().collect(),
                rule_settings: Arc::new(rule_settings(&s.name, &s.settings, &self.edge_domain)),
                settings: Arc::new(s.settings),
            };
            table.sites.insert(s.name, Arc::new(entry));
        }
        self.publish(table);
    }

    /// Applies one event incrementally. Only the feed consumer calls this, so
    /// there is a single writer.
    pub fn apply(&self, ev: &ChangeEvent) -> Applied {
        let current = self.table.load();
        if ev.seq <= current.seq {
            return Applied::Stale;
        }
        if ev.seq != current.seq + 1 {
            return Applied::Gap;
        }
        let mut t: Table = (**current).clone();
        t.seq = ev.seq;
        let entry = |t: &Table| t.sites.get(&ev.site).map(|e| (**e).clone());
        match &ev.kind {
            EventKind::SiteCreated => {
                t.sites
                    .insert(ev.site.clone(), Arc::new(SiteEntry::default()));
            }
            EventKind::SiteDeleted => {
                t.sites.remove(&ev.site);
                t.domains.retain(|_, s| s != &ev.site);
            }
            EventKind::DomainAdded { domain } => {
                t.domains.insert(domain.as_str().into(), ev.site.clone());
            }
            EventKind::DomainRemoved { domain } => {
                t.domains.remove(domain.as_str());
            }
            EventKind::Published { deploy } => {
                if let Some(mut e) = entry(&t) {
                    e.published = Some(*deploy);
                    t.sites.insert(ev.site.clone(), Arc::new(e));
                }
            }
            EventKind::AliasUpdated { alias, deploy } => {
                if let Some(mut e) = entry(&t) {
                    e.aliases.insert(alias.clone(), *deploy);
                    t.sites.insert(ev.site.clone(), Arc::new(e));
                }
            }
            // Certificates live in the TLS resolver's cache, not in the table;
            // the sequence still advances.
            EventKind::CertChanged { .. } => {}
            // Purges act on the HTTP cache (applied by the follower); the
            // table only advances.
            EventKind::Purged { .. } => {}
            EventKind::SettingsChanged { settings } => {
                if let Some(mut e) = entry(&t) {
                    e.rule_settings =
                        Arc::new(rule_settings(&ev.site, settings, &self.edge_domain));
                    e.settings = Arc::new((**settings).clone());
                    t.sites.insert(ev.site.clone(), Arc::new(e));
                }
            }
        }
        self.publish(t);
        Applied::Yes
    }

    /// The site a normalised host belongs to, if any (whatever it serves).
    pub fn site_of(&self, host: &str) -> Option<SiteName> {
        let table = self.table.load();
        if let Some(site) = table.domains.get(host) {
            return Some(site.clone());
        }
        let site = match parse_edge_host(host, &self.edge_domain)? {
            EdgeHost::Site(s) | EdgeHost::Permalink(_, s) | EdgeHost::Alias(_, s) => s,
        };
        table.sites.contains_key(&site).then_some(site)
    }

    /// Looks a normalised host up.
    pub fn route(&self, host: &str) -> Route {
        let table = self.table.load();
        if let Some(site) = table.domains.get(host) {
            return match table.sites.get(site) {
                Some(e) => production(site, e),
                None => Route::UnknownHost,
            };
        }
        let Some(edge_host) = parse_edge_host(host, &self.edge_domain) else {
            return Route::UnknownHost;
        };
        let (site, entry) = {
            let site = match &edge_host {
                EdgeHost::Site(s) | EdgeHost::Permalink(_, s) | EdgeHost::Alias(_, s) => s,
            };
            match table.sites.get(site) {
                Some(e) => (site.clone(), e.clone()),
                None => return Route::UnknownHost,
            }
        };
        match edge_host {
            EdgeHost::Site(_) => production(&site, &entry),
            // The deploy cache checks that the deploy belongs to this site.
            EdgeHost::Permalink(id, _) => Route::Deploy(RouteTarget {
                site,
                deploy: id,
                production: false,
                settings: entry.settings.clone(),
                rule_settings: entry.rule_settings.clone(),
            }),
            EdgeHost::Alias(alias, _) => match entry.aliases.get(&alias) {
                Some(id) => Route::Deploy(RouteTarget {
                    site,
                    deploy: *id,
                    production: false,
                    settings: entry.settings.clone(),
                    rule_settings: entry.rule_settings.clone(),
                }),
                None => Route::NothingPublished,
            },
        }
    }
}

fn production(site: &SiteName, e: &SiteEntry) -> Route {
    match e.published {
        Some(id) => Route::Deploy(RouteTarget {
            site: site.clone(),
            deploy: id,
            production: true,
            settings: e.settings.clone(),
            rule_settings: e.rule_settings.clone(),
        }),
        None => Route::NothingPublished,
    }
}

/// Keeps `router` current: rebuilds from the store, then applies the feed's
/// events one by one, rebuilding again whenever it sees a gap or falls behind.
/// Tells `feed` how far it got after each step. Runs until the feed closes.
pub async fn follow(
    router: Arc<Router>,
    meta: Arc<dyn ledge_store::MetaStore>,
    certs: Option<Arc<ledge_tls::CertResolver>>,
    purges: Option<Arc<ledge_cache::Generations>>,
    feed: ledge_store::Feed,
    mut rx: tokio::sync::broadcast::Receiver<ChangeEvent>,
) {
    use tokio::sync::broadcast::error::RecvError;
    let forget_all = || {
        if let Some(c) = &certs {
            c.invalidate_all();
        }
    };
    let reload_purges = || async {
        if let Some(g) = &purges {
            load_purges(g, meta.as_ref()).await;
        }
    };
    // Subscribed before this rebuild, so nothing between the two is lost.
    rebuild_from(&router, meta.as_ref()).await;
    reload_purges().await;
    feed.applied(router.table().seq);
    loop {
        match rx.recv().await {
            Ok(ev) => {
                if router.apply(&ev) == Applied::Gap {
                    rebuild_from(&router, meta.as_ref()).await;
                    forget_all();
                    reload_purges().await;
                }
                if let (
                    Some(g),
                    EventKind::Purged {
                        site_generation,
                        tags,
                    },
                ) = (&purges, &ev.kind)
                {
                    g.apply(&purge_event(ev.site.as_str(), *site_generation, tags));
                }
                if let Some(c) = &certs {
                    match &ev.kind {
                        EventKind::CertChanged { domain }
                        | EventKind::DomainAdded { domain }
                        | EventKind::DomainRemoved { domain } => c.invalidate(domain),
                        EventKind::SiteDeleted => c.invalidate_all(),
                        _ => {}
                    }
                }
                feed.applied(router.table().seq.max(ev.seq));
            }
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "change feed lagged; rebuilding routing table");
                rebuild_from(&router, meta.as_ref()).await;
                forget_all();
                reload_purges().await;
                feed.applied(router.table().seq);
            }
            Err(RecvError::Closed) => return,
        }
    }
}

fn generation(g: i64) -> u64 {
    u64::try_from(g).unwrap_or(0)
}

/// A purge from the feed as the cache takes it.
fn purge_event(
    site: &str,
    site_generation: Option<i64>,
    tags: &[(String, i64)],
) -> ledge_cache::PurgeEvent {
    match site_generation {
        Some(g) => ledge_cache::PurgeEvent::Site {
            site: site.to_owned(),
            generation: generation(g),
        },
        None => ledge_cache::PurgeEvent::Tags {
            site: site.to_owned(),
            tags: tags
                .iter()
                .map(|(t, g)| (t.clone(), generation(*g)))
                .collect(),
        },
    }
}

/// Loads every purge generation from the store into the cache's view
/// (counters only grow, so loading again is harmless), retrying until the
/// store answers.
pub async fn load_purges(g: &ledge_cache::Generations, meta: &dyn ledge_store::MetaStore) {
    loop {
        match meta.purge_generations().await {
            Ok(rows) => {
                let mut snap = ledge_cache::GenerationSnapshot::default();
                for r in rows {
                    match r.tag {
                        None => snap.sites.push((r.site, generation(r.generation))),
                        Some(t) => snap.tags.push((r.site, t, generation(r.generation))),
                    }
                }
                g.load(&snap);
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read purge generations; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    }
}

/// Certificates from the metadata store, for the TLS resolver: a custom
/// domain's own certificate, then a tenant wildcard (`*.parent`) that the site
/// also owns as a domain.
pub struct StoreCertSource {
    /// The metadata store.
    pub meta: Arc<dyn ledge_store::MetaStore>,
}

#[async_trait::async_trait]
impl ledge_tls::CertSource for StoreCertSource {
    async fn cert_for(
        &self,
        server_name: &str,
    ) -> Result<Option<ledge_tls::StoredCert>, ledge_tls::SourceError> {
        let fail = |e: ledge_store::MetaError| ledge_tls::SourceError::Store(Box::new(e));
        let mut found = self.meta.get_cert(server_name).await.map_err(fail)?;
        if found.is_none() {
            if let Some((_, parent)) = server_name.split_once('.') {
                found = self
                    .meta
                    .get_cert(&format!("*.{parent}"))
                    .await
                    .map_err(fail)?;
            }
        }
        Ok(found.map(|c| ledge_tls::StoredCert {
            chain_pem: c.chain_pem,
            sealed_key: c.sealed_key,
            version: u64::try_from(c.version).unwrap_or(0),
        }))
    }
}

/// Rebuilds from the store, retrying until the store answers.
pub async fn rebuild_from(router: &Router, meta: &dyn ledge_store::MetaStore) {
    loop {
        match meta.routing_state().await {
            Ok((seq, sites)) => {
                if seq >= router.table().seq {
                    router.rebuild(seq, sites);
                }
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read routing state; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: i64, site: &str, kind: EventKind) -> ChangeEvent {
        ChangeEvent {
            seq,
            site: SiteName::parse(site).unwrap(),
            kind,
        }
    }

    #[test]
    fn incremental_updates_and_gaps() {
        let r = Router::new("localhost");
        let id = DeployId::generate();
        assert_eq!(
            r.apply(&ev(1, "blog", EventKind::SiteCreated)),
            Applied::Yes
        );
        assert!(matches!(r.route("blog.localhost"), Route::NothingPublished));
        assert_eq!(
            r.apply(&ev(2, "blog", EventKind::Published { deploy: id })),
            Applied::Yes
        );
        assert!(
            matches!(r.route("blog.localhost"), Route::Deploy(t) if t.deploy == id && t.production)
        );
        assert_eq!(
            r.apply(&ev(
                3,
                "blog",
                EventKind::DomainAdded {
                    domain: "example.com".into()
                }
            )),
            Applied::Yes
        );
        assert!(matches!(r.route("example.com"), Route::Deploy(t) if t.deploy == id));
        // Replayed and skipped events.
        assert_eq!(
            r.apply(&ev(2, "blog", EventKind::SiteCreated)),
            Applied::Stale
        );
        assert_eq!(
            r.apply(&ev(9, "blog", EventKind::SiteCreated)),
            Applied::Gap
        );
        assert_eq!(
            r.apply(&ev(4, "blog", EventKind::SiteDeleted)),
            Applied::Yes
        );
        assert!(matches!(r.route("example.com"), Route::UnknownHost));
        assert!(matches!(r.route("blog.localhost"), Route::UnknownHost));
    }

    #[test]
    fn permalinks_and_aliases() {
        let r = Router::new("localhost");
        let id = DeployId::generate();
        r.apply(&ev(1, "blog", EventKind::SiteCreated));
        r.apply(&ev(
            2,
            "blog",
            EventKind::AliasUpdated {
                alias: Label::parse("staging").unwrap(),
                deploy: id,
            },
        ));
        assert!(
            matches!(r.route("staging--blog.localhost"), Route::Deploy(t) if t.deploy == id && !t.production)
        );
        assert!(matches!(
            r.route("other--blog.localhost"),
            Route::NothingPublished
        ));
        let p = format!("{id}--blog.localhost");
        assert!(matches!(r.route(&p), Route::Deploy(t) if t.deploy == id));
        assert!(matches!(
            r.route(&format!("{id}--nosite.localhost")),
            Route::UnknownHost
        ));
    }
}
