//! Ledge's data plane: the edge.
//!
//! - [`routes`]: the routing table (host → site → deploy), swapped atomically and
//!   updated incrementally from the change feed;
//! - [`deploys`]: deploy snapshots and file bytes held in memory, bounded in size;
//! - [`pipeline`]: the life of a request, phase by phase, in one function;
//! - [`static_files`] and [`files`]: path resolution and serving a file to the byte
//!   (conditional requests, ranges, pre-compressed variants);
//! - [`rescue`]: the one place where errors become responses;
//! - [`log`]: the access record of each request, finished when its body ends;
//! - [`server`]: listeners, connection limits, graceful drain.
//!
//! The edge never queries the metadata store on the request path.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod body;
mod cache_phase;
pub mod deploys;
pub mod files;
pub mod functions;
pub mod geo;
mod h1;
mod hot;
pub mod log;
pub mod outbound;
pub mod pipeline;
pub mod proxy;
pub mod rescue;
pub mod routes;
pub mod server;
pub mod static_files;

pub use body::Body;
pub use deploys::{BlobCache, DeployCache, LoadedDeploy};
pub use outbound::{Origin, OriginOptions, OutboundPolicy};
pub use pipeline::{AcmeChallenges, ConnInfo, Edge, EdgeConfig};
pub use routes::{follow, RouteTarget, Router};
pub use server::{serve, ServerLimits};
