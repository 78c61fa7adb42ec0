//! The HTTP-01 challenge responses the edge serves.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

/// The path prefix of HTTP-01 challenge requests; the token follows it.
pub const CHALLENGE_PATH_PREFIX: &str = "/.well-known/acme-challenge/";

/// Longest token accepted by [`ChallengeStore::response_for_path`]; real
/// tokens are 43 characters (256 bits, base64url).
const MAX_TOKEN_LEN: usize = 256;

/// Shared map from challenge token to key authorization.
///
/// Cheap to clone: clones share one map. The edge answers
/// `GET /.well-known/acme-challenge/{token}` for any host with the key
/// authorization as a `text/plain` body, or 404 when [`get`](Self::get) finds
/// nothing. A key authorization is public (the CA fetches it over plain HTTP).
#[derive(Clone, Default)]
pub struct ChallengeStore {
    inner: Arc<RwLock<HashMap<String, String>>>,
}

impl ChallengeStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Publishes `key_authorization` for `token`, replacing an earlier one.
    pub fn insert(&self, token: impl Into<String>, key_authorization: impl Into<String>) {
        self.inner
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(token.into(), key_authorization.into());
    }

    /// Withdraws `token`; returns whether it was there.
    pub fn remove(&self, token: &str) -> bool {
        self.inner
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(token)
            .is_some()
    }

    /// The key authorization published for `token`.
    pub fn get(&self, token: &str) -> Option<String> {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(token)
            .cloned()
    }

    /// The response body for a request path, if it is a challenge path
    /// (`/.well-known/acme-challenge/{token}`, a base64url token) whose token
    /// is published. Anything else, including a query string, gives `None`.
    pub fn response_for_path(&self, path: &str) -> Option<String> {
        let token = path.strip_prefix(CHALLENGE_PATH_PREFIX)?;
        let valid = !token.is_empty()
            && token.len() <= MAX_TOKEN_LEN
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if valid {
            self.get(token)
        } else {
            None
        }
    }

    /// Number of published tokens.
    pub fn len(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no token is published.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Debug for ChallengeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChallengeStore")
            .field("tokens", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_remove() {
        let store = ChallengeStore::new();
        assert!(store.is_empty());
        store.insert("tok", "tok.thumb");
        assert_eq!(store.get("tok").as_deref(), Some("tok.thumb"));
        assert_eq!(store.get("other"), None);
        store.insert("tok", "tok.thumb2");
        assert_eq!(store.get("tok").as_deref(), Some("tok.thumb2"));
        assert_eq!(store.len(), 1);
        assert!(store.remove("tok"));
        assert!(!store.remove("tok"));
        assert_eq!(store.get("tok"), None);
        assert!(store.is_empty());
    }

    #[test]
    fn clones_share_the_map() {
        let a = ChallengeStore::new();
        let b = a.clone();
        a.insert("t", "t.k");
        assert_eq!(b.get("t").as_deref(), Some("t.k"));
        b.remove("t");
        assert_eq!(a.get("t"), None);
        let from_thread = std::thread::spawn(move || b.insert("u", "u.k"));
        assert!(from_thread.join().is_ok());
        assert_eq!(a.get("u").as_deref(), Some("u.k"));
    }

    #[test]
    fn response_for_path() {
        let store = ChallengeStore::new();
        store.insert("Ab-_9", "Ab-_9.thumb");
        assert_eq!(
            store
                .response_for_path("/.well-known/acme-challenge/Ab-_9")
                .as_deref(),
            Some("Ab-_9.thumb")
        );
        for path in [
            "/.well-known/acme-challenge/",
            "/.well-known/acme-challenge/Ab-_9?x=1",
            "/.well-known/acme-challenge/Ab-_9/",
            "/.well-known/acme-challenge/../Ab-_9",
            "/.well-known/acme-challenge/missing",
            "/Ab-_9",
        ] {
            assert_eq!(store.response_for_path(path), None, "{path}");
        }
        let long = format!("{CHALLENGE_PATH_PREFIX}{}", "a".repeat(MAX_TOKEN_LEN + 1));
        assert_eq!(store.response_for_path(&long), None);
    }

    #[test]
    fn debug_shows_no_tokens() {
        let store = ChallengeStore::new();
        store.insert("secret-token", "secret-token.thumb");
        let shown = format!("{store:?}");
        assert!(!shown.contains("secret-token"), "{shown}");
    }
}
