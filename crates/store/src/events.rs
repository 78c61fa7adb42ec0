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
    /// The site's settings changed; the new value is carried whole.
    SettingsChanged {
        /// Settings including secrets (the feed is internal to the platform).
        settings: Box<SiteSettings>,
    },
}

/// The in-process change feed (the embedded default; NATS JetStream later).
/// Sending never blocks; a receiver that lags is told so and rebuilds.
#[derive(Debug, Clone)]
pub struct Feed {
    tx: tokio::sync::broadcast::Sender<ChangeEvent>,
}

impl Feed {
    /// A feed buffering up to `capacity` events per slow receiver.
    pub fn new(capacity: usize) -> Self {
        Self {
            tx: tokio::sync::broadcast::channel(capacity.max(1)).0,
        }
    }

    /// Sends events in order; having no receiver is fine.
    pub fn send(&self, events: impl IntoIterator<Item = ChangeEvent>) {
        for ev in events {
            let _ = self.tx.send(ev);
        }
    }

    /// A new receiver, seeing events sent from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<ChangeEvent> {
        self.tx.subscribe()
    }
}
