//! Telemetry as the node runs it: statistics kept in the metadata store, site
//! log drains following the sites' settings, drains under the outbound policy.

use std::sync::Arc;

use ledge_store::{ChangeEvent, EventKind, Feed, MetaStore};
use ledge_telemetry::{
    drain::parse_drains, Background, Bucket, BucketStore, DrainSpec, Resolution, StoreError,
    Telemetry, TelemetryConfig,
};

/// Statistics buckets as rows of the metadata store (JSON per bucket).
pub struct StoreBuckets {
    /// The metadata store.
    pub meta: Arc<dyn MetaStore>,
}

fn resolution_key(r: Resolution) -> &'static str {
    match r {
        Resolution::Minute => "minute",
        Resolution::Hour => "hour",
    }
}

fn store_error(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

fn secs(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

#[async_trait::async_trait]
impl BucketStore for StoreBuckets {
    async fn get(
        &self,
        site: &str,
        resolution: Resolution,
        since: u64,
        until: u64,
    ) -> Result<Vec<Bucket>, StoreError> {
        let rows = self
            .meta
            .get_stats(site, resolution_key(resolution), secs(since), secs(until))
            .await
            .map_err(store_error)?;
        rows.iter()
            .map(|r| serde_json::from_str(r).map_err(store_error))
            .collect()
    }

    async fn put(&self, bucket: &Bucket) -> Result<(), StoreError> {
        let data = serde_json::to_string(bucket).map_err(store_error)?;
        self.meta
            .put_stats(
                &bucket.site,
                resolution_key(bucket.resolution),
                secs(bucket.start),
                &data,
            )
            .await
            .map_err(store_error)
    }

    async fn delete_before(&self, resolution: Resolution, cutoff: u64) -> Result<u64, StoreError> {
        self.meta
            .delete_stats_before(resolution_key(resolution), secs(cutoff))
            .await
            .map_err(store_error)
    }
}

/// What the operator chose for the node's own access log.
#[derive(Debug, Clone)]
pub enum AccessLog {
    /// No records at all (no statistics, no drains, no tail).
    Off,
    /// Records to these node drains (the default: `DATA/logs/access.log`).
    Drains(Vec<String>),
}

/// Starts telemetry for the node, or `None` when the access log is off.
pub fn start(
    data: &std::path::Path,
    access_log: &AccessLog,
    meta: Arc<dyn MetaStore>,
    origin: &ledge_edge::Origin,
) -> anyhow::Result<Option<(Telemetry, Background)>> {
    let drains = match access_log {
        AccessLog::Off => return Ok(None),
        AccessLog::Drains(d) => d,
    };
    let mut config = TelemetryConfig::with_data_dir(data);
    if !drains.is_empty() {
        config.node_drains =
            parse_drains(drains).map_err(|e| anyhow::anyhow!("--log-drain: {e}"))?;
    }
    config.store = Arc::new(StoreBuckets { meta });
    config.http_client = Some(origin.client.clone());
    let policy = origin.policy.clone();
    config.connect_check = Some(Arc::new(move |addr| {
        policy.check(addr).map_err(|e| e.to_string())
    }));
    let (t, bg) = Telemetry::start(config).map_err(|e| anyhow::anyhow!("telemetry: {e}"))?;
    Ok(Some((t, bg)))
}

/// A site's drains from its settings; bad ones are logged and skipped (they
/// were validated when set, so this only happens across upgrades).
fn site_drains(site: &str, list: &[String]) -> Vec<DrainSpec> {
    list.iter()
        .filter_map(|s| match s.parse::<DrainSpec>() {
            Ok(d) => Some(d),
            Err(e) => {
                tracing::warn!(site, error = %e, "ignoring a log drain");
                None
            }
        })
        .collect()
}

fn apply(t: &Telemetry, site: &str, list: &[String]) {
    if let Err(e) = t.set_site_drains(site, site_drains(site, list)) {
        tracing::warn!(site, error = %e, "log drains not applied");
    }
}

/// Keeps the sites' log drains in step with their settings: all of them at
/// start, then each settings change from the feed.
pub async fn follow_drains(t: Telemetry, meta: Arc<dyn MetaStore>, feed: Feed) {
    let mut rx = feed.subscribe();
    match meta.routing_state().await {
        Ok((_, sites)) => {
            for s in sites {
                if !s.settings.log_drains.is_empty() {
                    apply(&t, s.name.as_str(), &s.settings.log_drains);
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read sites for their log drains"),
    }
    loop {
        match rx.recv().await {
            Ok(ChangeEvent { site, kind, .. }) => match kind {
                EventKind::SettingsChanged { settings } => {
                    apply(&t, site.as_str(), &settings.log_drains);
                }
                EventKind::SiteDeleted => apply(&t, site.as_str(), &[]),
                _ => {}
            },
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                if let Ok((_, sites)) = meta.routing_state().await {
                    for s in sites {
                        apply(&t, s.name.as_str(), &s.settings.log_drains);
                    }
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Buckets go through the SQLite store as JSON: one with no function
    /// invocations (an empty CPU-time sketch, whose extremes are infinite)
    /// must come back, and merge into its hour more than once.
    #[tokio::test]
    async fn buckets_round_trip_through_sqlite_and_merge() {
        let dir = tempfile::tempdir().unwrap();
        let meta = ledge_store::SqliteStore::open(&dir.path().join("meta.db"))
            .await
            .unwrap();
        let store = StoreBuckets {
            meta: Arc::new(meta),
        };
        let bucket = |resolution: Resolution, start: u64, ms: f64| {
            let mut b = Bucket::new("blog", resolution, start);
            b.counters.requests = 2;
            b.counters.status_2xx = 2;
            b.top_paths.insert("/");
            b.duration_ms.insert(ms);
            b
        };
        // Two minutes of one hour, as the dispatcher merges them.
        let hour = |start: u64, ms: f64| bucket(Resolution::Hour, start, ms);
        store.merge(&hour(3600 * 100, 4.0)).await.unwrap();
        store.merge(&hour(3600 * 100 + 60, 9.0)).await.unwrap();
        let got = store
            .get("blog", Resolution::Hour, 0, u64::from(u32::MAX))
            .await
            .unwrap();
        assert_eq!(got.len(), 1);
        let hour = &got[0];
        assert_eq!(hour.counters.requests, 4);
        assert_eq!(hour.duration_ms.count(), 2);
        assert_eq!(hour.duration_ms.max(), Some(9.0));
        assert_eq!(hour.function_cpu_ms.count(), 0);
        assert_eq!(hour.function_cpu_ms.max(), None);

        // Retention: rows that start before the cutoff go, by resolution.
        for start in [0, 60, 120] {
            store
                .merge(&bucket(Resolution::Minute, start, 1.0))
                .await
                .unwrap();
        }
        assert_eq!(
            store.delete_before(Resolution::Minute, 120).await.unwrap(),
            2
        );
        let left = store
            .get("blog", Resolution::Minute, 0, u64::from(u32::MAX))
            .await
            .unwrap();
        assert_eq!(left.iter().map(|b| b.start).collect::<Vec<_>>(), [120]);
        // The hour row is another resolution's: untouched.
        let hours = store
            .get("blog", Resolution::Hour, 0, u64::from(u32::MAX))
            .await
            .unwrap();
        assert_eq!(hours.len(), 1);
    }
}
