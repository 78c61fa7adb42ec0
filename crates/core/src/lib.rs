//! Ledge's shared vocabulary: deploy ids, site and alias names, content digests,
//! host normalisation and the platform's error codes.
//!
//! This crate does no I/O and depends on no runtime: the control plane, the edge
//! and the CLI all agree on what a valid name or id is by calling into it.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod date;
pub mod host;
pub mod ids;
pub mod path;

pub use host::{normalize_host, parse_edge_host, EdgeHost};
pub use ids::{DeployId, Digest, IdError, Label, SiteName, MAX_SITE_NAME_LEN};

pub mod net;
pub mod num;
pub use net::Cidr;
