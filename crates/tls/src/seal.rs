//! Private keys at rest: sealed with a per-node key.
//!
//! A [`NodeKey`] is 32 random bytes kept in a file of mode 0600 in the data
//! directory. [`NodeKey::seal`] encrypts with ChaCha20-Poly1305 (ring) under a
//! fresh random 96-bit nonce; the sealed form is
//! `version (1 byte) ‖ nonce (12) ‖ ciphertext ‖ tag (16)`, and the version
//! byte is authenticated too. Random nonces are safe here because a node seals
//! few values (one per uploaded key): far below the 2^32 messages after which
//! a nonce collision becomes plausible.

use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

/// Length of a node key, in bytes.
pub const NODE_KEY_LEN: usize = 32;

/// Format version written as the first byte of every sealed value.
const SEAL_VERSION: u8 = 1;

/// Why a sealed value could not be opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SealError {
    /// Too short to hold the version, nonce and tag.
    #[error("sealed value is truncated ({0} bytes)")]
    Truncated(usize),
    /// Written by an unknown format version.
    #[error("sealed value has unknown format version {0}")]
    Version(u8),
    /// Tampered with, or sealed under another node key.
    #[error("sealed value failed authentication: it was changed, or sealed with another node key")]
    Auth,
}

/// Why the node key file could not be loaded or created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeKeyError {
    /// Reading or writing the file failed.
    #[error("node key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: io::Error,
    },
    /// The file exists but does not hold 64 hex digits.
    #[error("node key file {path} is malformed: expected {NODE_KEY_LEN} bytes as 64 hex digits")]
    Malformed {
        /// The file.
        path: String,
    },
    /// The system random number generator failed.
    #[error("the system random number generator failed")]
    Random,
}

/// The key that seals private keys on this node (or fleet, if shared).
///
/// `Debug` prints no key material.
pub struct NodeKey {
    key: LessSafeKey,
    rng: SystemRandom,
}

// === impl NodeKey ===

impl NodeKey {
    /// A key from 32 bytes (for tests and for keys kept elsewhere).
    pub fn from_bytes(bytes: &[u8; NODE_KEY_LEN]) -> Self {
        // CHACHA20_POLY1305 takes exactly 32 bytes, which the type guarantees.
        let unbound = match UnboundKey::new(&CHACHA20_POLY1305, bytes) {
            Ok(k) => k,
            Err(_) => unreachable!("a 32-byte key is always valid for ChaCha20-Poly1305"),
        };
        Self {
            key: LessSafeKey::new(unbound),
            rng: SystemRandom::new(),
        }
    }

    /// A fresh random key, kept only in memory.
    pub fn generate() -> Result<Self, NodeKeyError> {
        let mut bytes = Zeroizing::new([0u8; NODE_KEY_LEN]);
        SystemRandom::new()
            .fill(bytes.as_mut())
            .map_err(|_| NodeKeyError::Random)?;
        Ok(Self::from_bytes(&bytes))
    }

    /// Reads the key at `path`, or creates it there (64 hex digits, mode 0600)
    /// if the file does not exist.
    ///
    /// Two processes starting at once agree on one key: the file is created
    /// exclusively and the loser reads the winner's.
    pub fn load_or_create(path: &Path) -> Result<Self, NodeKeyError> {
        let io_err = |source| NodeKeyError::Io {
            path: path.display().to_string(),
            source,
        };
        match Self::read(path) {
            Ok(key) => return Ok(key),
            Err(NodeKeyError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut bytes = Zeroizing::new([0u8; NODE_KEY_LEN]);
        SystemRandom::new()
            .fill(bytes.as_mut())
            .map_err(|_| NodeKeyError::Random)?;
        let mut text = Zeroizing::new(String::with_capacity(2 * NODE_KEY_LEN + 1));
        for b in bytes.iter() {
            text.push(char::from(HEX[usize::from(b >> 4)]));
            text.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        text.push('\n');

        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = match options.open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Self::read(path),
            Err(e) => return Err(io_err(e)),
        };
        file.write_all(text.as_bytes()).map_err(io_err)?;
        file.sync_all().map_err(io_err)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Make the new directory entry durable; not fatal where unsupported.
            if let Ok(d) = fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(Self::from_bytes(&bytes))
    }

    fn read(path: &Path) -> Result<Self, NodeKeyError> {
        let mut text = Zeroizing::new(String::new());
        fs::File::open(path)
            .and_then(|mut f| f.read_to_string(&mut text))
            .map_err(|source| NodeKeyError::Io {
                path: path.display().to_string(),
                source,
            })?;
        let malformed = || NodeKeyError::Malformed {
            path: path.display().to_string(),
        };
        let hex = text.trim().as_bytes();
        if hex.len() != 2 * NODE_KEY_LEN {
            return Err(malformed());
        }
        let mut bytes = Zeroizing::new([0u8; NODE_KEY_LEN]);
        for (out, pair) in bytes.iter_mut().zip(hex.chunks_exact(2)) {
            let hi = hex_val(pair[0]).ok_or_else(malformed)?;
            let lo = hex_val(pair[1]).ok_or_else(malformed)?;
            *out = (hi << 4) | lo;
        }
        Ok(Self::from_bytes(&bytes))
    }

    /// Encrypts `plaintext` under a fresh random nonce.
    ///
    /// # Panics
    ///
    /// Only if the operating system cannot supply random bytes (sealing under
    /// a predictable nonce would be worse), or for a plaintext over 256 GiB.
    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        if self.rng.fill(&mut nonce).is_err() {
            // ring's SystemRandom only fails if the OS has no randomness at
            // all; sealing under a predictable nonce would be worse than stopping.
            panic!("the system random number generator failed");
        }
        let mut out = Vec::with_capacity(1 + NONCE_LEN + plaintext.len() + aead::MAX_TAG_LEN);
        out.push(SEAL_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let header = 1 + NONCE_LEN;
        let (head, body) = out.split_at_mut(header);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&head[..1]),
                body,
            )
            // ChaCha20-Poly1305 only refuses inputs over 256 GiB.
            .unwrap_or_else(|_| panic!("plaintext too large to seal"));
        out.extend_from_slice(tag.as_ref());
        out
    }

    /// Decrypts a value made by [`NodeKey::seal`] with this key.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let header = 1 + NONCE_LEN;
        if sealed.len() < header + aead::MAX_TAG_LEN {
            return Err(SealError::Truncated(sealed.len()));
        }
        if sealed[0] != SEAL_VERSION {
            return Err(SealError::Version(sealed[0]));
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&sealed[1..header]);
        let mut buf = Zeroizing::new(sealed[header..].to_vec());
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&sealed[..1]),
                &mut buf,
            )
            .map_err(|_| SealError::Auth)?;
        Ok(plain.to_vec())
    }
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NodeKey(<redacted>)")
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
