//! The change feed: what the control plane tells every edge node.
//!
//! Each event carries the store's sequence number. A node that sees a gap (or
//! lagged behind the in-process broadcast) rebuilds from [`crate::MetaStore::routing_state`].

use ledge_core::{DeployId, Label, SiteName};
use serde::{Deserialize, Serialize};

use crate::settings::SiteSettings;

/// One change, in store order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeEvent {
    /// Monotonic sequence number assigned by the store.
    pub seq: i64,
    /// The site it concerns.
    pub site: SiteName,
    /// What changed.
    pub kind: EventKind,
}

/// What changed for a site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// A site was created.
    SiteCreated,
    /// A site and everything it owned were deleted.
    SiteDeleted,
    /// A custom domain now serves the site.
    DomainAdded {
        /// The normalised domain.
        domain: String,
    },
    /// A custom domain no longer serves the site.
    DomainRemoved {
        /// The normalised domain.
        domain: String,
    },
    /// The site's production pointer moved (publish or rollback).
    Published {
        /// The deploy now serving production.
        deploy: DeployId,
    },
    /// An alias now points at a deploy.
    AliasUpdated {
        /// The alias.
        alias: Label,
        /// Its deploy.
        deploy: DeployId,
    },
    /// A domain's certificate was added or replaced.
    CertChanged {
        /// The domain.
        domain: String,
    },
    /// Cached responses of the site were purged: all of them (the site's new
    /// generation), or those with these tags (each tag's new generation).
    Purged {
        /// The site's new generation, for a whole-site purge.
        site_generation: Option<i64>,
        /// Purged tags (lowercase) with their new generations.
        tags: Vec<(String, i64)>,
    },
    /// The site's settings changed; the new value is carried whole.
    SettingsChanged {
        /// Settings including secrets (the feed is internal to the platform).
        settings: Box<SiteSettings>,
    },
}

/// The in-process change feed (the embedded default; NATS JetStream later).
/// Sending never blocks; a receiver that lags is told so and rebuilds.
///
/// The feed also tracks how far this node's router has got, so the control
/// API can give read-your-writes: an answer that says a domain was added or a
/// deploy is ready is sent only once the local edge routes by it (see
/// [`Feed::settle`]).
#[derive(Debug, Clone)]
pub struct Feed {
    tx: tokio::sync::broadcast::Sender<ChangeEvent>,
    progress: std::sync::Arc<tokio::sync::watch::Sender<Progress>>,
}

/// Where the feed's writers and its follower are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Progress {
    /// Highest sequence sent.
    sent: i64,
    /// Highest sequence the local router has applied.
    applied: i64,
    /// Store writes begun whose events are not yet sent.
    writing: usize,
    /// Whether a router follows this feed at all.
    followed: bool,
}

impl Progress {
    fn settled(&self) -> bool {
        !self.followed || (self.writing == 0 && self.applied >= self.sent)
    }
}

impl Feed {
    /// A feed buffering up to `capacity` events per slow receiver.
    pub fn new(capacity: usize) -> Self {
        Self {
            tx: tokio::sync::broadcast::channel(capacity.max(1)).0,
            progress: std::sync::Arc::new(tokio::sync::watch::Sender::new(Progress::default())),
        }
    }

    /// Sends events in order; having no receiver is fine.
    pub fn send(&self, events: impl IntoIterator<Item = ChangeEvent>) {
        let mut last = None;
        for ev in events {
            last = Some(ev.seq);
            let _ = self.tx.send(ev);
        }
        if let Some(seq) = last {
            self.progress.send_if_modified(|p| {
                let moved = seq > p.sent;
                p.sent = p.sent.max(seq);
                moved
            });
        }
    }

    /// Announces a store write whose events will follow: until the returned
    /// guard sends them (or is dropped), [`Feed::settle`] waits.
    pub fn begin(&self) -> PendingWrite {
        self.progress.send_modify(|p| p.writing += 1);
        PendingWrite { feed: self.clone() }
    }

    /// A new receiver, seeing events sent from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<ChangeEvent> {
        self.tx.subscribe()
    }

    /// Called by the router that follows this feed: everything up to `seq`
    /// is applied.
    pub fn applied(&self, seq: i64) {
        self.progress.send_if_modified(|p| {
            let moved = seq > p.applied || !p.followed;
            p.applied = p.applied.max(seq);
            p.followed = true;
            moved
        });
    }

    /// Waits, at most `limit`, until the local router has applied every event
    /// sent so far and no announced write is outstanding. Returns whether it
    /// settled; a feed nobody follows is always settled.
    pub async fn settle(&self, limit: std::time::Duration) -> bool {
        let mut rx = self.progress.subscribe();
        if rx.borrow().settled() {
            return true;
        }
        let waited = tokio::time::timeout(limit, rx.wait_for(Progress::settled)).await;
        matches!(waited, Ok(Ok(_)))
    }
}

/// A store write in progress; see [`Feed::begin`].
#[derive(Debug)]
pub struct PendingWrite {
    feed: Feed,
}

impl PendingWrite {
    /// Sends the write's events and ends it.
    pub fn send(self, events: impl IntoIterator<Item = ChangeEvent>) {
        self.feed.send(events);
    }
}

impl Drop for PendingWrite {
    fn drop(&mut self) {
        self.feed
            .progress
            .send_modify(|p| p.writing = p.writing.saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ev(seq: i64) -> ChangeEvent {
        ChangeEvent {
            seq,
            site: SiteName::parse("s").unwrap(),
            kind: EventKind::SiteCreated,
        }
    }

    const SHORT: Duration = Duration::from_millis(50);

    #[tokio::test]
    async fn unfollowed_feed_is_settled() {
        let f = Feed::new(8);
        f.send([ev(3)]);
        assert!(f.settle(SHORT).await);
    }

    #[tokio::test]
    async fn settles_when_the_follower_catches_up() {
        let f = Feed::new(8);
        f.applied(1);
        f.send([ev(2), ev(3)]);
        assert!(!f.settle(SHORT).await, "router still at 1");
        f.applied(2);
        assert!(!f.settle(SHORT).await, "router still at 2");
        let g = f.clone();
        let waiter = tokio::spawn(async move { g.settle(Duration::from_secs(5)).await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        f.applied(3);
        assert!(waiter.await.unwrap());
    }

    #[tokio::test]
    async fn announced_writes_hold_settling_until_sent_or_dropped() {
        let f = Feed::new(8);
        f.applied(5);
        let w = f.begin();
        assert!(!f.settle(SHORT).await);
        w.send([ev(6)]);
        assert!(!f.settle(SHORT).await, "sent but not applied");
        f.applied(6);
        assert!(f.settle(SHORT).await);
        let w = f.begin();
        drop(w);
        assert!(f.settle(SHORT).await, "a failed write releases the wait");
    }
}
