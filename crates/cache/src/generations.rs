//! Purge generations. A purge bumps a counter (everything, one site, or one
//! tag of a site); every entry records the counters it was stored under and a
//! read compares them with the current ones. So a purge is O(1) however many
//! entries it voids, and a purge that happened while the node was down still
//! applies after restart once the counters are loaded from the metadata
//! store's snapshot (and kept current by the change feed).

use std::collections::HashMap;
use std::sync::RwLock;

/// The counters as the metadata store keeps them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GenerationSnapshot {
    /// Generation of "purge everything".
    pub all: u64,
    /// Per-site generations.
    pub sites: Vec<(String, u64)>,
    /// Per-(site, tag) generations; tags lowercased.
    pub tags: Vec<(String, String, u64)>,
}

/// A purge as the change feed reports it, with the generation the metadata
/// store assigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurgeEvent {
    /// Everything on every site.
    All {
        /// New generation.
        generation: u64,
    },
    /// One site.
    Site {
        /// Site name.
        site: String,
        /// New generation.
        generation: u64,
    },
    /// Tags of one site.
    Tags {
        /// Site name.
        site: String,
        /// Each tag with its new generation.
        tags: Vec<(String, u64)>,
    },
}

#[derive(Debug, Default)]
struct Table {
    all: u64,
    sites: HashMap<String, u64>,
    tags: HashMap<String, HashMap<String, u64>>,
}

/// The generations an entry was stored under.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stamp {
    /// `all` at store time.
    pub all: u64,
    /// The site's generation at store time.
    pub site: u64,
    /// Each of the entry's tags' generation at store time (same order as the
    /// entry's tags).
    pub tags: Vec<u64>,
}

/// Current purge generations, shared by every reader.
#[derive(Debug, Default)]
pub struct Generations {
    table: RwLock<Table>,
}

impl Generations {
    /// All counters at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counters loaded from the metadata store.
    pub fn from_snapshot(snapshot: &GenerationSnapshot) -> Self {
        let g = Self::new();
        g.load(snapshot);
        g
    }

    /// Merges a snapshot in (each counter becomes the larger of the two), for a
    /// rebuild after a gap in the change feed.
    pub fn load(&self, snapshot: &GenerationSnapshot) {
        self.apply(&PurgeEvent::All {
            generation: snapshot.all,
        });
        for (site, g) in &snapshot.sites {
            self.apply(&PurgeEvent::Site {
                site: site.clone(),
                generation: *g,
            });
        }
        let mut t = self.write();
        for (site, tag, g) in &snapshot.tags {
            let cur = t
                .tags
                .entry(site.clone())
                .or_default()
                .entry(tag.to_lowercase())
                .or_insert(0);
            *cur = (*cur).max(*g);
        }
    }

    /// The counters now.
    pub fn snapshot(&self) -> GenerationSnapshot {
        let t = self.read();
        let mut sites: Vec<(String, u64)> = t.sites.iter().map(|(s, g)| (s.clone(), *g)).collect();
        sites.sort();
        let mut tags: Vec<(String, String, u64)> = t
            .tags
            .iter()
            .flat_map(|(s, m)| m.iter().map(move |(tag, g)| (s.clone(), tag.clone(), *g)))
            .collect();
        tags.sort();
        GenerationSnapshot {
            all: t.all,
            sites,
            tags,
        }
    }

    /// Applies a purge from the change feed. Idempotent and order-insensitive:
    /// a counter only grows.
    pub fn apply(&self, event: &PurgeEvent) {
        let mut t = self.write();
        match event {
            PurgeEvent::All { generation } => t.all = t.all.max(*generation),
            PurgeEvent::Site { site, generation } => {
                let cur = t.sites.entry(site.clone()).or_insert(0);
                *cur = (*cur).max(*generation);
            }
            PurgeEvent::Tags { site, tags } => {
                let m = t.tags.entry(site.clone()).or_default();
                for (tag, g) in tags {
                    let cur = m.entry(tag.to_lowercase()).or_insert(0);
                    *cur = (*cur).max(*g);
                }
            }
        }
    }

    /// Purges everything locally; returns the new generation.
    pub fn bump_all(&self) -> u64 {
        let mut t = self.write();
        t.all += 1;
        t.all
    }

    /// Purges one site locally; returns its new generation.
    pub fn bump_site(&self, site: &str) -> u64 {
        let mut t = self.write();
        let cur = t.sites.entry(site.to_owned()).or_insert(0);
        *cur += 1;
        *cur
    }

    /// Purges tags of a site locally; returns each tag's new generation.
    pub fn bump_tags(&self, site: &str, tags: &[&str]) -> Vec<(String, u64)> {
        let mut t = self.write();
        let m = t.tags.entry(site.to_owned()).or_default();
        tags.iter()
            .map(|tag| {
                let tag = tag.trim().to_lowercase();
                let cur = m.entry(tag.clone()).or_insert(0);
                *cur += 1;
                (tag, *cur)
            })
            .collect()
    }

    /// The stamp for an entry of `site` with `tags`, stored now.
    pub fn stamp(&self, site: &str, tags: &[String]) -> Stamp {
        let t = self.read();
        let site_tags = t.tags.get(site);
        Stamp {
            all: t.all,
            site: t.sites.get(site).copied().unwrap_or(0),
            tags: tags
                .iter()
                .map(|tag| site_tags.and_then(|m| m.get(tag)).copied().unwrap_or(0))
                .collect(),
        }
    }

    /// True when nothing purged the entry since `stamp` was taken.
    pub fn is_current(&self, site: &str, tags: &[String], stamp: &Stamp) -> bool {
        let t = self.read();
        if t.all > stamp.all || t.sites.get(site).is_some_and(|g| *g > stamp.site) {
            return false;
        }
        let Some(site_tags) = t.tags.get(site) else {
            return true;
        };
        tags.iter().enumerate().all(|(i, tag)| {
            let stored = stamp.tags.get(i).copied().unwrap_or(0);
            site_tags.get(tag).is_none_or(|g| *g <= stored)
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_only_raise_counters_and_snapshots_round_trip() {
        let g = Generations::new();
        g.apply(&PurgeEvent::Site {
            site: "a".into(),
            generation: 5,
        });
        g.apply(&PurgeEvent::Site {
            site: "a".into(),
            generation: 3,
        });
        g.apply(&PurgeEvent::Tags {
            site: "a".into(),
            tags: vec![("T".into(), 2)],
        });
        g.apply(&PurgeEvent::All { generation: 1 });
        let snap = g.snapshot();
        assert_eq!(snap.all, 1);
        assert_eq!(snap.sites, [("a".to_owned(), 5)]);
        assert_eq!(snap.tags, [("a".to_owned(), "t".to_owned(), 2)]);
        assert_eq!(Generations::from_snapshot(&snap).snapshot(), snap);
    }

    #[test]
    fn stamps_go_stale_on_the_right_purges() {
        let g = Generations::new();
        let tags = vec!["x".to_owned(), "y".to_owned()];
        let s = g.stamp("a", &tags);
        assert!(g.is_current("a", &tags, &s));
        g.bump_tags("a", &["z"]);
        g.bump_tags("b", &["x"]);
        g.bump_site("b");
        assert!(
            g.is_current("a", &tags, &s),
            "other tags and sites do not matter"
        );
        g.bump_tags("a", &[" Y "]);
        assert!(!g.is_current("a", &tags, &s));
        let s = g.stamp("a", &tags);
        assert!(g.is_current("a", &tags, &s));
        assert_eq!(g.bump_site("a"), 1);
        assert!(!g.is_current("a", &tags, &s));
        let s = g.stamp("a", &tags);
        g.bump_all();
        assert!(!g.is_current("a", &tags, &s));
    }
}
