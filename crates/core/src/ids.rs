//! Identifiers: [`DeployId`], [`SiteName`], [`Label`] (aliases) and [`Digest`].
//!
//! Site names and aliases are single DNS labels of at most 37 characters, so that
//! `DEPLOYID--SITE` (24 + 2 + 37 = 63) always fits in one 63-character label.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The longest site name or alias: `24 + "--".len() + 37 == 63`, the DNS label limit.
pub const MAX_SITE_NAME_LEN: usize = 37;

/// Length of a deploy id in lowercase hex characters.
pub const DEPLOY_ID_LEN: usize = 24;

/// Why a name, id or digest was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// A site name or alias that is not a DNS label of at most 37 characters.
    #[error("{what} {value:?} is not valid: use 1 to 37 characters a-z, 0-9 and '-', not starting or ending with '-' and without '--'")]
    BadLabel {
        /// "site name" or "alias".
        what: &'static str,
        /// The refused value, as given.
        value: String,
    },
    /// An alias that looks like a deploy id (24 hex characters), which would make
    /// `ALIAS--SITE` ambiguous with a permalink.
    #[error("alias {0:?} looks like a deploy id (24 hex characters): pick another name")]
    AliasLooksLikeId(String),
    /// Not a 24-character lowercase hex deploy id.
    #[error("{0:?} is not a deploy id (24 lowercase hex characters)")]
    BadDeployId(String),
    /// Not a 64-character lowercase hex sha256 digest.
    #[error("{0:?} is not a sha256 digest (64 lowercase hex characters)")]
    BadDigest(String),
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// True when `s` is a DNS label Ledge accepts as a site name or alias.
fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_SITE_NAME_LEN
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
        // `--` separates the deploy or alias part from the site in edge hosts.
        && !s.contains("--")
}

// === impl SiteName ===

/// A site's name: one lowercase DNS label of at most [`MAX_SITE_NAME_LEN`] characters.
/// Cloning is cheap (shared), as the edge hands names around per request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SiteName(std::sync::Arc<str>);

impl SiteName {
    /// Validates `s` as a site name.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        if is_label(s) {
            Ok(Self(s.into()))
        } else {
            Err(IdError::BadLabel {
                what: "site name",
                value: s.to_owned(),
            })
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as shared text (no copy).
    pub fn shared(&self) -> std::sync::Arc<str> {
        self.0.clone()
    }
}

impl fmt::Display for SiteName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for SiteName {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for SiteName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SiteName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

// === impl Label ===

/// A deploy alias (branch or named preview): a DNS label like a site name that is
/// not itself shaped like a deploy id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Label(String);

impl Label {
    /// Validates `s` as an alias.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        if !is_label(s) {
            return Err(IdError::BadLabel {
                what: "alias",
                value: s.to_owned(),
            });
        }
        if s.len() == DEPLOY_ID_LEN && is_lower_hex(s) {
            return Err(IdError::AliasLooksLikeId(s.to_owned()));
        }
        Ok(Self(s.to_owned()))
    }

    /// The alias as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Label {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

// === impl DeployId ===

/// A deploy's id: 24 lowercase hex characters (96 random bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeployId([u8; DEPLOY_ID_LEN]);

impl DeployId {
    /// A fresh random id.
    pub fn generate() -> Self {
        let raw: [u8; 12] = rand::random();
        let mut out = [0u8; DEPLOY_ID_LEN];
        // hex of 12 bytes is exactly 24 ASCII characters.
        for (i, b) in raw.iter().enumerate() {
            out[2 * i] = HEX[(b >> 4) as usize];
            out[2 * i + 1] = HEX[(b & 0xf) as usize];
        }
        Self(out)
    }

    /// Validates `s` as a deploy id.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let bytes = s.as_bytes();
        if bytes.len() != DEPLOY_ID_LEN || !is_lower_hex(s) {
            return Err(IdError::BadDeployId(s.to_owned()));
        }
        let mut out = [0u8; DEPLOY_ID_LEN];
        out.copy_from_slice(bytes);
        Ok(Self(out))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Only ever built from lowercase hex ASCII, so this cannot fail.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl fmt::Display for DeployId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeployId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for DeployId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for DeployId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

// === impl Digest ===

/// A sha256 content digest, kept as its 64-character lowercase hex form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(Box<str>);

impl Digest {
    /// Validates `s` as a lowercase hex sha256 digest.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        if s.len() == 64 && is_lower_hex(s) {
            Ok(Self(s.into()))
        } else {
            Err(IdError::BadDigest(s.to_owned()))
        }
    }

    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Self {
        Self(hex::encode(Sha256::digest(data)).into())
    }

    /// The digest a finished hasher produced.
    pub fn from_hasher(h: Sha256) -> Self {
        Self(hex::encode(h.finalize()).into())
    }

    /// The digest as hex text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_names() {
        assert!(SiteName::parse("blog").is_ok());
        assert!(SiteName::parse("my-blog-2").is_ok());
        assert!(SiteName::parse(&"a".repeat(37)).is_ok());
        for bad in [
            "",
            "-a",
            "a-",
            "a--b",
            "Blog",
            "a.b",
            "a_b",
            &"a".repeat(38),
        ] {
            assert!(SiteName::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn aliases_cannot_look_like_ids() {
        assert!(Label::parse("staging").is_ok());
        let id = DeployId::generate();
        assert_eq!(
            Label::parse(id.as_str()),
            Err(IdError::AliasLooksLikeId(id.to_string()))
        );
    }

    #[test]
    fn deploy_ids_round_trip() {
        let id = DeployId::generate();
        assert_eq!(id.as_str().len(), 24);
        assert_eq!(DeployId::parse(id.as_str()), Ok(id));
        assert!(DeployId::parse("ABCDEFabcdef012345678901").is_err());
        assert!(DeployId::parse("abc").is_err());
    }

    #[test]
    fn digests() {
        let d = Digest::of(b"hello");
        assert_eq!(
            d.as_str(),
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert!(Digest::parse(&d.as_str().to_uppercase()).is_err());
        assert!(Digest::parse("00").is_err());
    }
}
