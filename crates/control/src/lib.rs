//! Ledge's control plane: the HTTP API under `/api/v1` ([`api`]) and deploy
//! processing ([`process`]), which turns uploaded files into the snapshot the
//! edge serves.
//!
//! Authentication is by bearer token. The admin token can do everything; a site
//! token can deploy, roll back and read its own site only.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod api;
pub mod error;
pub mod observe;
pub mod process;

pub use api::{router, ApiState, ConfigCheck, FunctionBuild};
pub use error::ApiError;

use sha2::{Digest as _, Sha256};

/// A new random token (64 hex characters).
pub fn new_token() -> String {
    let raw: [u8; 32] = rand::random();
    hex::encode(raw)
}

/// What the store keeps of a token: its sha256.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}
