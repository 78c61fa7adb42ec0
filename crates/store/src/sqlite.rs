//! [`MetaStore`] on SQLite (WAL, `synchronous=FULL`).
//!
//! Writes go through a pool of one connection, so every read-modify-write runs
//! serialised and no transaction can fail on a busy lock; reads use a separate
//! pool. Every change that the edge must see appends to `events` in the same
//! transaction.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use ledge_core::{DeployId, Digest, Label, SiteName};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqliteConnection, SqlitePool};

use crate::events::{ChangeEvent, EventKind};
use crate::meta::{MetaError, MetaStore, Result};
use crate::model::*;
use crate::now_secs;
use crate::settings::{SettingsError, SiteSettings};

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: [&str; 5] = [
    include_str!("../migrations/0001_init.sql"),
    include_str!("../migrations/0002_certs.sql"),
    include_str!("../migrations/0003_domain_status.sql"),
    include_str!("../migrations/0004_purges.sql"),
    include_str!("../migrations/0005_stats.sql"),
];

async fn migrate(pool: &SqlitePool) -> Result<()> {
    let mut tx = pool.begin().await?;
    let version: i64 = sqlx::query_scalar("PRAGMA user_version")
        .fetch_one(&mut *tx)
        .await?;
    let Ok(done) = usize::try_from(version) else {
        return Err(MetaError::Corrupt(format!("schema version {version}")));
    };
    if done > MIGRATIONS.len() {
        return Err(MetaError::Corrupt(format!(
            "the database has schema version {done}, newer than this ledge ({}): upgrade ledge",
            MIGRATIONS.len()
        )));
    }
    for sql in &MIGRATIONS[done..] {
        sqlx::raw_sql(sql).execute(&mut *tx).await?;
    }
    sqlx::raw_sql(&format!("PRAGMA user_version = {}", MIGRATIONS.len()))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// The SQLite metadata store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    write: SqlitePool,
    read: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating and migrating) the database file.
    pub async fn open(path: &Path) -> Result<Self> {
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts.clone())
            .await?;
        migrate(&write).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts.read_only(true))
            .await?;
        Ok(Self { write, read })
    }
}

fn site_name(s: String) -> Result<SiteName> {
    SiteName::parse(&s).map_err(|e| MetaError::Corrupt(e.to_string()))
}

fn deploy_id(s: &str) -> Result<DeployId> {
    DeployId::parse(s).map_err(|e| MetaError::Corrupt(e.to_string()))
}

fn opt_deploy_id(s: Option<String>) -> Result<Option<DeployId>> {
    s.as_deref().map(deploy_id).transpose()
}

async fn append_event(
    conn: &mut SqliteConnection,
    site: &SiteName,
    kind: EventKind,
) -> Result<ChangeEvent> {
    let payload = serde_json::to_string(&kind).map_err(|e| MetaError::Corrupt(e.to_string()))?;
    let seq: i64 =
        sqlx::query_scalar("INSERT INTO events (at, site, payload) VALUES (?, ?, ?) RETURNING seq")
            .bind(now_secs())
            .bind(site.as_str())
            .bind(payload)
            .fetch_one(&mut *conn)
            .await?;
    Ok(ChangeEvent {
        seq,
        site: site.clone(),
        kind,
    })
}

async fn require_site(conn: &mut SqliteConnection, site: &SiteName) -> Result<()> {
    let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM sites WHERE name = ?")
        .bind(site.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    found
        .map(|_| ())
        .ok_or_else(|| MetaError::NotFound(format!("site \"{site}\" not found")))
}

const DEPLOY_COLS: &str = "seq, id, site, state, prod, alias, message, created_at, ready_at, \
     file_count, required_count, error, diagnostics";

async fn load_deploy(conn: &mut SqliteConnection, row: sqlx::sqlite::SqliteRow) -> Result<Deploy> {
    let id: String = row.try_get("id")?;
    let missing: Vec<String> =
        sqlx::query_scalar("SELECT digest FROM deploy_missing WHERE deploy = ? ORDER BY digest")
            .bind(&id)
            .fetch_all(&mut *conn)
            .await?;
    let state: String = row.try_get("state")?;
    let alias: Option<String> = row.try_get("alias")?;
    let diagnostics: String = row.try_get("diagnostics")?;
    Ok(Deploy {
        id: deploy_id(&id)?,
        seq: row.try_get("seq")?,
        site: site_name(row.try_get("site")?)?,
        state: DeployState::parse(&state)
            .ok_or_else(|| MetaError::Corrupt(format!("deploy state {state:?}")))?,
        prod: row.try_get::<i64, _>("prod")? != 0,
        alias: alias
            .map(|a| Label::parse(&a))
            .transpose()
            .map_err(|e| MetaError::Corrupt(e.to_string()))?,
        message: row.try_get("message")?,
        created_at: row.try_get("created_at")?,
        ready_at: row.try_get("ready_at")?,
        file_count: row.try_get("file_count")?,
        required_count: row.try_get("required_count")?,
        missing: missing
            .iter()
            .map(|d| Digest::parse(d).map_err(|e| MetaError::Corrupt(e.to_string())))
            .collect::<Result<_>>()?,
        error: row.try_get("error")?,
        diagnostics: serde_json::from_str(&diagnostics)
            .map_err(|e| MetaError::Corrupt(e.to_string()))?,
    })
}

async fn site_domains(conn: &mut SqliteConnection, site: &str) -> Result<Vec<String>> {
    Ok(
        sqlx::query_scalar("SELECT domain FROM domains WHERE site = ? ORDER BY domain")
            .bind(site)
            .fetch_all(&mut *conn)
            .await?,
    )
}

async fn load_site(conn: &mut SqliteConnection, row: sqlx::sqlite::SqliteRow) -> Result<Site> {
    let name: String = row.try_get("name")?;
    let domains = site_domains(conn, &name).await?;
    Ok(Site {
        name: site_name(name)?,
        created_at: row.try_get("created_at")?,
        published: opt_deploy_id(row.try_get("published")?)?,
        locked: row.try_get::<i64, _>("locked")? != 0,
        domains,
    })
}

fn parse_settings(s: &str) -> Result<SiteSettings> {
    serde_json::from_str(s).map_err(|e| MetaError::Corrupt(format!("site settings: {e}")))
}

/// Publishes `id` for `site` inside the caller's transaction.
async fn publish(
    conn: &mut SqliteConnection,
    site: &SiteName,
    id: &DeployId,
    kind: &str,
) -> Result<ChangeEvent> {
    sqlx::query("UPDATE sites SET published = ? WHERE name = ?")
        .bind(id.as_str())
        .bind(site.as_str())
        .execute(&mut *conn)
        .await?;
    sqlx::query("INSERT INTO publishes (site, deploy, at, kind) VALUES (?, ?, ?, ?)")
        .bind(site.as_str())
        .bind(id.as_str())
        .bind(now_secs())
        .bind(kind)
        .execute(&mut *conn)
        .await?;
    append_event(conn, site, EventKind::Published { deploy: *id }).await
}

#[async_trait]
impl MetaStore for SqliteStore {
    async fn create_site(&self, name: &SiteName) -> Result<(Site, ChangeEvent)> {
        let mut tx = self.write.begin().await?;
        let now = now_secs();
        let res = sqlx::query("INSERT INTO sites (name, created_at) VALUES (?, ?)")
            .bind(name.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await;
        if let Err(sqlx::Error::Database(e)) = &res {
            if e.is_unique_violation() {
                return Err(MetaError::Conflict(format!(
                    "site \"{name}\" already exists"
                )));
            }
        }
        res?;
        let ev = append_event(&mut tx, name, EventKind::SiteCreated).await?;
        tx.commit().await?;
        Ok((
            Site {
                name: name.clone(),
                created_at: now,
                published: None,
                locked: false,
                domains: Vec::new(),
            },
            ev,
        ))
    }

    async fn list_sites(&self) -> Result<Vec<Site>> {
        let mut conn = self.read.acquire().await?;
        let rows = sqlx::query("SELECT * FROM sites ORDER BY name")
            .fetch_all(&mut *conn)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(load_site(&mut conn, row).await?);
        }
        Ok(out)
    }

    async fn get_site(&self, name: &SiteName) -> Result<Site> {
        let mut conn = self.read.acquire().await?;
        let row = sqlx::query("SELECT * FROM sites WHERE name = ?")
            .bind(name.as_str())
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(|| MetaError::NotFound(format!("site \"{name}\" not found")))?;
        load_site(&mut conn, row).await
    }

    async fn delete_site(&self, name: &SiteName) -> Result<ChangeEvent> {
        let mut tx = self.write.begin().await?;
        require_site(&mut tx, name).await?;
        sqlx::query("DELETE FROM sites WHERE name = ?")
            .bind(name.as_str())
            .execute(&mut *tx)
            .await?;
        let ev = append_event(&mut tx, name, EventKind::SiteDeleted).await?;
        tx.commit().await?;
        Ok(ev)
    }

    async fn add_domain(&self, site: &SiteName, domain: &str) -> Result<ChangeEvent> {
        let mut tx = self.write.begin().await?;
        require_site(&mut tx, site).await?;
        let owner: Option<String> = sqlx::query_scalar("SELECT site FROM domains WHERE domain = ?")
            .bind(domain)
            .fetch_optional(&mut *tx)
            .await?;
        match owner {
            Some(o) if o == site.as_str() => {
                return Err(MetaError::Conflict(format!(
                    "domain {domain:?} already belongs to site {o:?}"
                )))
            }
            Some(_) => {
                return Err(MetaError::Conflict(format!(
                    "domain {domain:?} already belongs to another site"
                )))
            }
            None => {}
        }
        sqlx::query("INSERT INTO domains (domain, site) VALUES (?, ?)")
            .bind(domain)
            .bind(site.as_str())
            .execute(&mut *tx)
            .await?;
        let ev = append_event(
            &mut tx,
            site,
            EventKind::DomainAdded {
                domain: domain.to_owned(),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(ev)
    }

    async fn remove_domain(&self, site: &SiteName, domain: &str) -> Result<ChangeEvent> {
        let mut tx = self.write.begin().await?;
        let n = sqlx::query("DELETE FROM domains WHERE domain = ? AND site = ?")
            .bind(domain)
            .bind(site.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(MetaError::NotFound(format!(
                "domain {domain:?} is not a domain of site \"{site}\""
            )));
        }
        let ev = append_event(
            &mut tx,
            site,
            EventKind::DomainRemoved {
                domain: domain.to_owned(),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(ev)
    }

    async fn settings(&self, site: &SiteName) -> Result<SiteSettings> {
        let s: Option<String> = sqlx::query_scalar("SELECT settings FROM sites WHERE name = ?")
            .bind(site.as_str())
            .fetch_optional(&self.read)
            .await?;
        parse_settings(&s.ok_or_else(|| MetaError::NotFound(format!("site \"{site}\" not found")))?)
    }

    async fn patch_settings(
        &self,
        site: &SiteName,
        patch: &serde_json::Value,
    ) -> Result<(SiteSettings, ChangeEvent)> {
        let mut tx = self.write.begin().await?;
        let s: Option<String> = sqlx::query_scalar("SELECT settings FROM sites WHERE name = ?")
            .bind(site.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        let mut settings = parse_settings(
            &s.ok_or_else(|| MetaError::NotFound(format!("site \"{site}\" not found")))?,
        )?;
        settings
            .apply_patch(patch)
            .map_err(|SettingsError(m)| MetaError::Invalid(m))?;
        let text =
            serde_json::to_string(&settings).map_err(|e| MetaError::Corrupt(e.to_string()))?;
        sqlx::query("UPDATE sites SET settings = ? WHERE name = ?")
            .bind(text)
            .bind(site.as_str())
            .execute(&mut *tx)
            .await?;
        let ev = append_event(
            &mut tx,
            site,
            EventKind::SettingsChanged {
                settings: Box::new(settings.clone()),
            },
        )
        .await?;
        tx.commit().await?;
        Ok((settings, ev))
    }

    async fn add_token(&self, hash: &str, principal: &Principal) -> Result<()> {
        let site = match principal {
            Principal::Admin => None,
            Principal::Site(s) => Some(s.as_str()),
        };
        let mut tx = self.write.begin().await?;
        if let Principal::Site(s) = principal {
            require_site(&mut tx, s).await?;
        }
        sqlx::query("INSERT INTO tokens (hash, site, created_at) VALUES (?, ?, ?)")
            .bind(hash)
            .bind(site)
            .bind(now_secs())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn principal(&self, hash: &str) -> Result<Option<Principal>> {
        let row: Option<(Option<String>,)> =
            sqlx::query_as("SELECT site FROM tokens WHERE hash = ?")
                .bind(hash)
                .fetch_optional(&self.read)
                .await?;
        row.map(|(site,)| match site {
            None => Ok(Principal::Admin),
            Some(s) => Ok(Principal::Site(site_name(s)?)),
        })
        .transpose()
    }

    async fn has_admin_token(&self) -> Result<bool> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tokens WHERE site IS NULL")
            .fetch_one(&self.read)
            .await?;
        Ok(n > 0)
    }

    async fn create_deploy(&self, site: &SiteName, new: NewDeploy) -> Result<Deploy> {
        let mut tx = self.write.begin().await?;
        require_site(&mut tx, site).await?;
        let id = DeployId::generate();
        let digests: BTreeSet<&Digest> = new.files.values().collect();
        let mut missing = Vec::new();
        for d in digests {
            let owned: Option<i64> =
                sqlx::query_scalar("SELECT 1 FROM site_blobs WHERE site = ? AND digest = ?")
                    .bind(site.as_str())
                    .bind(d.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
            if owned.is_none() {
                missing.push(d.clone());
            }
        }
        let files: BTreeMap<&str, &str> = new
            .files
            .iter()
            .map(|(p, d)| (p.as_str(), d.as_str()))
            .collect();
        let files_json =
            serde_json::to_string(&files).map_err(|e| MetaError::Corrupt(e.to_string()))?;
        let state = if missing.is_empty() {
            DeployState::Processing
        } else {
            DeployState::Uploading
        };
        let now = now_secs();
        let seq: i64 = sqlx::query_scalar(
            "INSERT INTO deploys (id, site, state, prod, alias, message, created_at, files, \
             file_count, required_count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq",
        )
        .bind(id.as_str())
        .bind(site.as_str())
        .bind(state.as_str())
        .bind(new.prod as i64)
        .bind(new.alias.as_ref().map(|a| a.as_str()))
        .bind(new.message.as_deref())
        .bind(now)
        .bind(files_json)
        .bind(new.files.len() as i64)
        .bind(missing.len() as i64)
        .fetch_one(&mut *tx)
        .await?;
        for d in &missing {
            sqlx::query("INSERT INTO deploy_missing (deploy, digest) VALUES (?, ?)")
                .bind(id.as_str())
                .bind(d.as_str())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Deploy {
            id,
            seq,
            site: site.clone(),
            state,
            prod: new.prod,
            alias: new.alias,
            message: new.message,
            created_at: now,
            ready_at: None,
            file_count: new.files.len() as i64,
            required_count: missing.len() as i64,
            missing,
            error: None,
            diagnostics: Vec::new(),
        })
    }

    async fn get_deploy(&self, id: &DeployId) -> Result<Deploy> {
        let mut conn = self.read.acquire().await?;
        let row = sqlx::query(&format!("SELECT {DEPLOY_COLS} FROM deploys WHERE id = ?"))
            .bind(id.as_str())
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(|| MetaError::NotFound(format!("deploy {id} not found")))?;
        load_deploy(&mut conn, row).await
    }

    async fn list_deploys(&self, site: &SiteName, limit: i64) -> Result<Vec<Deploy>> {
        let mut conn = self.read.acquire().await?;
        require_site(&mut conn, site).await?;
        let rows = sqlx::query(&format!(
            "SELECT {DEPLOY_COLS} FROM deploys WHERE site = ? ORDER BY seq DESC LIMIT ?"
        ))
        .bind(site.as_str())
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(load_deploy(&mut conn, row).await?);
        }
        Ok(out)
    }

    async fn deploy_files(&self, deploy: &DeployId) -> Result<BTreeMap<String, Digest>> {
        let files: Option<String> = sqlx::query_scalar("SELECT files FROM deploys WHERE id = ?")
            .bind(deploy.as_str())
            .fetch_optional(&self.read)
            .await?;
        let files =
            files.ok_or_else(|| MetaError::NotFound(format!("deploy {deploy} not found")))?;
        serde_json::from_str(&files).map_err(|e| MetaError::Corrupt(e.to_string()))
    }

    async fn deploy_wants(&self, deploy: &DeployId, digest: &Digest) -> Result<bool> {
        Ok(self
            .deploy_files(deploy)
            .await?
            .values()
            .any(|d| d == digest))
    }

    async fn blob_uploaded(&self, deploy: &DeployId, digest: &Digest) -> Result<UploadOutcome> {
        let mut tx = self.write.begin().await?;
        let row: Option<(String, String)> =
            sqlx::query_as("SELECT site, state FROM deploys WHERE id = ?")
                .bind(deploy.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        let (site, state) =
            row.ok_or_else(|| MetaError::NotFound(format!("deploy {deploy} not found")))?;
        sqlx::query("INSERT OR IGNORE INTO site_blobs (site, digest) VALUES (?, ?)")
            .bind(&site)
            .bind(digest.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM deploy_missing WHERE deploy = ? AND digest = ?")
            .bind(deploy.as_str())
            .bind(digest.as_str())
            .execute(&mut *tx)
            .await?;
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM deploy_missing WHERE deploy = ?")
            .bind(deploy.as_str())
            .fetch_one(&mut *tx)
            .await?;
        let outcome = if left == 0 && state == DeployState::Uploading.as_str() {
            sqlx::query("UPDATE deploys SET state = 'processing' WHERE id = ?")
                .bind(deploy.as_str())
                .execute(&mut *tx)
                .await?;
            UploadOutcome::Complete
        } else {
            UploadOutcome::Waiting
        };
        tx.commit().await?;
        Ok(outcome)
    }

    async fn processing_deploys(&self) -> Result<Vec<DeployId>> {
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT id FROM deploys WHERE state = 'processing' ORDER BY seq")
                .fetch_all(&self.read)
                .await?;
        ids.iter().map(|s| deploy_id(s)).collect()
    }

    async fn finish_deploy(
        &self,
        id: &DeployId,
        diagnostics: Vec<DeployDiagnostic>,
    ) -> Result<Vec<ChangeEvent>> {
        let mut tx = self.write.begin().await?;
        let row: Option<(i64, String, String, i64, Option<String>)> =
            sqlx::query_as("SELECT seq, site, state, prod, alias FROM deploys WHERE id = ?")
                .bind(id.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        let (seq, site, state, prod, alias) =
            row.ok_or_else(|| MetaError::NotFound(format!("deploy {id} not found")))?;
        if state != DeployState::Processing.as_str() {
            return Err(MetaError::Conflict(format!(
                "deploy {id} is {state}, not processing"
            )));
        }
        let site = site_name(site)?;
        let diag =
            serde_json::to_string(&diagnostics).map_err(|e| MetaError::Corrupt(e.to_string()))?;
        sqlx::query(
            "UPDATE deploys SET state = 'ready', ready_at = ?, diagnostics = ? WHERE id = ?",
        )
        .bind(now_secs())
        .bind(diag)
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
        let mut events = Vec::new();
        if prod != 0 {
            let (last, locked): (i64, i64) =
                sqlx::query_as("SELECT last_prod_seq, locked FROM sites WHERE name = ?")
                    .bind(site.as_str())
                    .fetch_one(&mut *tx)
                    .await?;
            // Creation order decides: an older deploy that finishes late never
            // replaces a newer published one.
            if locked == 0 && seq > last {
                sqlx::query("UPDATE sites SET last_prod_seq = ? WHERE name = ?")
                    .bind(seq)
                    .bind(site.as_str())
                    .execute(&mut *tx)
                    .await?;
                events.push(publish(&mut tx, &site, id, "auto").await?);
            }
        }
        if let Some(alias) = alias {
            let label = Label::parse(&alias).map_err(|e| MetaError::Corrupt(e.to_string()))?;
            let current: Option<i64> =
                sqlx::query_scalar("SELECT deploy_seq FROM aliases WHERE site = ? AND alias = ?")
                    .bind(site.as_str())
                    .bind(&alias)
                    .fetch_optional(&mut *tx)
                    .await?;
            if current.is_none_or(|c| seq > c) {
                sqlx::query(
                    "INSERT INTO aliases (site, alias, deploy, deploy_seq) VALUES (?, ?, ?, ?) \
                     ON CONFLICT (site, alias) DO UPDATE SET deploy = excluded.deploy, \
                     deploy_seq = excluded.deploy_seq",
                )
                .bind(site.as_str())
                .bind(&alias)
                .bind(id.as_str())
                .bind(seq)
                .execute(&mut *tx)
                .await?;
                events.push(
                    append_event(
                        &mut tx,
                        &site,
                        EventKind::AliasUpdated {
                            alias: label,
                            deploy: *id,
                        },
                    )
                    .await?,
                );
            }
        }
        tx.commit().await?;
        Ok(events)
    }

    async fn fail_deploy(&self, id: &DeployId, error: &str) -> Result<()> {
        sqlx::query("UPDATE deploys SET state = 'error', error = ? WHERE id = ?")
            .bind(error)
            .bind(id.as_str())
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn rollback(
        &self,
        site: &SiteName,
        deploy: Option<&DeployId>,
    ) -> Result<(DeployId, ChangeEvent)> {
        let mut tx = self.write.begin().await?;
        let published: Option<Option<String>> =
            sqlx::query_scalar("SELECT published FROM sites WHERE name = ?")
                .bind(site.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        let published =
            published.ok_or_else(|| MetaError::NotFound(format!("site \"{site}\" not found")))?;
        let target = match deploy {
            Some(d) => {
                let row: Option<(String, String)> =
                    sqlx::query_as("SELECT site, state FROM deploys WHERE id = ?")
                        .bind(d.as_str())
                        .fetch_optional(&mut *tx)
                        .await?;
                match row {
                    Some((s, state)) if s == site.as_str() => {
                        if state != DeployState::Ready.as_str() {
                            return Err(MetaError::Conflict(format!(
                                "deploy {d} is {state}: only a ready deploy can be published"
                            )));
                        }
                    }
                    _ => {
                        return Err(MetaError::NotFound(format!(
                            "deploy {d} not found in site \"{site}\""
                        )))
                    }
                }
                *d
            }
            None => {
                let current = published.as_deref().unwrap_or("");
                // The newest earlier publish of a different deploy that is still ready.
                let prev: Option<String> = sqlx::query_scalar(
                    "SELECT p.deploy FROM publishes p JOIN deploys d ON d.id = p.deploy \
                     WHERE p.site = ? AND p.deploy != ? AND d.state = 'ready' \
                     AND p.seq < (SELECT COALESCE(MAX(seq), 0) FROM publishes WHERE site = ? AND deploy = ?) \
                     ORDER BY p.seq DESC LIMIT 1",
                )
                .bind(site.as_str())
                .bind(current)
                .bind(site.as_str())
                .bind(current)
                .fetch_optional(&mut *tx)
                .await?;
                let prev = prev.ok_or_else(|| {
                    MetaError::Conflict(format!(
                        "site \"{site}\" has no earlier published deploy to roll back to"
                    ))
                })?;
                deploy_id(&prev)?
            }
        };
        let ev = publish(&mut tx, site, &target, "rollback").await?;
        tx.commit().await?;
        Ok((target, ev))
    }

    async fn set_locked(&self, site: &SiteName, locked: bool) -> Result<()> {
        let n = sqlx::query("UPDATE sites SET locked = ? WHERE name = ?")
            .bind(locked as i64)
            .bind(site.as_str())
            .execute(&self.write)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(MetaError::NotFound(format!("site \"{site}\" not found")));
        }
        Ok(())
    }

    async fn purge(&self, site: &SiteName, tags: &[String]) -> Result<ChangeEvent> {
        let mut tx = self.write.begin().await?;
        require_site(&mut tx, site).await?;
        let mut keys: Vec<String> = tags.iter().map(|t| t.trim().to_ascii_lowercase()).collect();
        keys.retain(|t| !t.is_empty());
        keys.sort();
        keys.dedup();
        let whole = keys.is_empty();
        if whole {
            keys.push(String::new());
        }
        let mut bumped = Vec::with_capacity(keys.len());
        for tag in keys {
            let generation: i64 = sqlx::query_scalar(
                "INSERT INTO purge_generations (site, tag, generation) VALUES (?, ?, 1)
                 ON CONFLICT (site, tag) DO UPDATE SET generation = generation + 1
                 RETURNING generation",
            )
            .bind(site.as_str())
            .bind(&tag)
            .fetch_one(&mut *tx)
            .await?;
            bumped.push((tag, generation));
        }
        let kind = if whole {
            EventKind::Purged {
                site_generation: bumped.first().map(|(_, g)| *g),
                tags: Vec::new(),
            }
        } else {
            EventKind::Purged {
                site_generation: None,
                tags: bumped,
            }
        };
        let ev = append_event(&mut tx, site, kind).await?;
        tx.commit().await?;
        Ok(ev)
    }

    async fn purge_generations(&self) -> Result<Vec<PurgeGeneration>> {
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT site, tag, generation FROM purge_generations")
                .fetch_all(&self.read)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(site, tag, generation)| PurgeGeneration {
                site,
                tag: (!tag.is_empty()).then_some(tag),
                generation,
            })
            .collect())
    }

    async fn put_stats(&self, site: &str, resolution: &str, start: i64, data: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO stats_buckets (site, resolution, start, data) VALUES (?, ?, ?, ?)
             ON CONFLICT (site, resolution, start) DO UPDATE SET data = excluded.data",
        )
        .bind(site)
        .bind(resolution)
        .bind(start)
        .bind(data)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn get_stats(
        &self,
        site: &str,
        resolution: &str,
        since: i64,
        until: i64,
    ) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT data FROM stats_buckets
             WHERE site = ? AND resolution = ? AND start >= ? AND start < ? ORDER BY start",
        )
        .bind(site)
        .bind(resolution)
        .bind(since)
        .bind(until)
        .fetch_all(&self.read)
        .await?)
    }

    async fn delete_stats_before(&self, resolution: &str, cutoff: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM stats_buckets WHERE resolution = ? AND start < ?")
            .bind(resolution)
            .bind(cutoff)
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected())
    }

    async fn put_cert(&self, cert: &StoredCert) -> Result<ChangeEvent> {
        let mut tx = self.write.begin().await?;
        require_site(&mut tx, &cert.site).await?;
        let version: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) + 1 FROM certs WHERE domain = ?")
                .bind(&cert.domain)
                .fetch_one(&mut *tx)
                .await?;
        sqlx::query(
            "INSERT INTO certs (domain, site, chain_pem, sealed_key, not_after, fingerprint, \
             source, version, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (domain) DO UPDATE SET site = excluded.site, chain_pem = excluded.chain_pem, \
             sealed_key = excluded.sealed_key, not_after = excluded.not_after, \
             fingerprint = excluded.fingerprint, source = excluded.source, \
             version = excluded.version, updated_at = excluded.updated_at",
        )
        .bind(&cert.domain)
        .bind(cert.site.as_str())
        .bind(&cert.chain_pem)
        .bind(&cert.sealed_key)
        .bind(cert.not_after)
        .bind(&cert.fingerprint)
        .bind(&cert.source)
        .bind(version)
        .bind(now_secs())
        .execute(&mut *tx)
        .await?;
        let ev = append_event(
            &mut tx,
            &cert.site,
            EventKind::CertChanged {
                domain: cert.domain.clone(),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(ev)
    }

    async fn get_cert(&self, domain: &str) -> Result<Option<StoredCert>> {
        let row = sqlx::query(
            "SELECT domain, site, chain_pem, sealed_key, not_after, fingerprint, source, version \
             FROM certs WHERE domain = ?",
        )
        .bind(domain)
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| -> Result<StoredCert> {
            Ok(StoredCert {
                domain: r.try_get("domain")?,
                site: site_name(r.try_get("site")?)?,
                chain_pem: r.try_get("chain_pem")?,
                sealed_key: r.try_get("sealed_key")?,
                not_after: r.try_get("not_after")?,
                fingerprint: r.try_get("fingerprint")?,
                source: r.try_get("source")?,
                version: r.try_get("version")?,
            })
        })
        .transpose()
    }

    async fn list_certs(&self, site: &SiteName) -> Result<Vec<CertInfo>> {
        let rows: Vec<(String, i64, String, String, i64)> = sqlx::query_as(
            "SELECT domain, not_after, fingerprint, source, version FROM certs \
             WHERE site = ? ORDER BY domain",
        )
        .bind(site.as_str())
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(domain, not_after, fingerprint, source, version)| CertInfo {
                    domain,
                    not_after,
                    fingerprint,
                    source,
                    version,
                },
            )
            .collect())
    }

    async fn set_domain_status(&self, status: &DomainStatus) -> Result<()> {
        sqlx::query(
            "INSERT INTO domain_status (domain, state, error, attempts, next_try_at, updated_at) \
             SELECT ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM domains WHERE domain = ?) \
             ON CONFLICT (domain) DO UPDATE SET state = excluded.state, error = excluded.error, \
             attempts = excluded.attempts, next_try_at = excluded.next_try_at, \
             updated_at = excluded.updated_at",
        )
        .bind(&status.domain)
        .bind(&status.state)
        .bind(&status.error)
        .bind(status.attempts)
        .bind(status.next_try_at)
        .bind(now_secs())
        .bind(&status.domain)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn domain_statuses(&self, site: &SiteName) -> Result<Vec<DomainStatus>> {
        let rows: Vec<(String, String, Option<String>, i64, Option<i64>)> = sqlx::query_as(
            "SELECT s.domain, s.state, s.error, s.attempts, s.next_try_at FROM domain_status s \
             JOIN domains d ON d.domain = s.domain WHERE d.site = ? ORDER BY s.domain",
        )
        .bind(site.as_str())
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(domain, state, error, attempts, next_try_at)| DomainStatus {
                    domain,
                    state,
                    error,
                    attempts,
                    next_try_at,
                },
            )
            .collect())
    }

    async fn all_domains(&self) -> Result<Vec<(SiteName, String)>> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT site, domain FROM domains ORDER BY domain")
                .fetch_all(&self.read)
                .await?;
        rows.into_iter()
            .map(|(s, d)| Ok((site_name(s)?, d)))
            .collect()
    }

    async fn routing_state(&self) -> Result<(i64, Vec<SiteRouting>)> {
        // One read transaction, so the sequence and the rows agree.
        let mut tx = self.read.begin().await?;
        let seq: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM events")
            .fetch_one(&mut *tx)
            .await?;
        let sites: Vec<(String, Option<String>, String)> =
            sqlx::query_as("SELECT name, published, settings FROM sites")
                .fetch_all(&mut *tx)
                .await?;
        let mut by_site: BTreeMap<String, SiteRouting> = BTreeMap::new();
        for (name, published, settings) in sites {
            by_site.insert(
                name.clone(),
                SiteRouting {
                    name: site_name(name)?,
                    published: opt_deploy_id(published)?,
                    aliases: Vec::new(),
                    domains: Vec::new(),
                    settings: parse_settings(&settings)?,
                },
            );
        }
        let domains: Vec<(String, String)> = sqlx::query_as("SELECT domain, site FROM domains")
            .fetch_all(&mut *tx)
            .await?;
        for (domain, site) in domains {
            if let Some(s) = by_site.get_mut(&site) {
                s.domains.push(domain);
            }
        }
        let aliases: Vec<(String, String, String)> =
            sqlx::query_as("SELECT site, alias, deploy FROM aliases")
                .fetch_all(&mut *tx)
                .await?;
        for (site, alias, deploy) in aliases {
            if let Some(s) = by_site.get_mut(&site) {
                let label = Label::parse(&alias).map_err(|e| MetaError::Corrupt(e.to_string()))?;
                s.aliases.push((label, deploy_id(&deploy)?));
            }
        }
        tx.commit().await?;
        Ok((seq, by_site.into_values().collect()))
    }

    async fn events_since(&self, seq: i64, limit: i64) -> Result<Vec<ChangeEvent>> {
        let rows: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT seq, site, payload FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(seq)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.into_iter()
            .map(|(seq, site, payload)| {
                Ok(ChangeEvent {
                    seq,
                    site: site_name(site)?,
                    kind: serde_json::from_str(&payload)
                        .map_err(|e| MetaError::Corrupt(e.to_string()))?,
                })
            })
            .collect()
    }
}
