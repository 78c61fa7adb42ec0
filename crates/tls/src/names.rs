//! Host names as TLS sees them: normalisation and certificate name matching.
//!
//! A name is compared in lowercase ASCII without a trailing dot. A wildcard
//! `*.example.com` covers exactly one label: `a.example.com`, not
//! `example.com` nor `a.b.example.com` (RFC 6125 §6.4.3, as browsers do it).

/// Longest host name (RFC 1035 §2.3.4, without the trailing dot).
pub const MAX_NAME_LEN: usize = 253;

/// Lowercases `name`, drops one trailing dot, and checks it is a plausible
/// DNS name: labels of 1–63 letters, digits, `-` or `_`, at most
/// [`MAX_NAME_LEN`] bytes, and a leading `*` label only as a whole label.
///
/// Returns `None` for anything else (empty, IP literals are allowed through
/// only as dotted labels, which never match a certificate name anyway).
pub fn normalize(name: &str) -> Option<String> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return None;
    }
    for (i, label) in name.split('.').enumerate() {
        let ok_label = !label.is_empty()
            && label.len() <= 63
            && (label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                || (i == 0 && label == "*"));
        if !ok_label {
            return None;
        }
    }
    Some(name.to_ascii_lowercase())
}

/// The name without its first label: `a.example.com` → `example.com`.
pub fn parent(name: &str) -> Option<&str> {
    name.split_once('.')
        .map(|(_, rest)| rest)
        .filter(|rest| !rest.is_empty())
}

/// Whether one certificate name (already lowercase) covers a normalised host.
pub fn matches(cert_name: &str, host: &str) -> bool {
    if cert_name == host {
        return true;
    }
    let Some(suffix) = cert_name.strip_prefix("*.") else {
        return false;
    };
    // A wildcard over a single label (`*.com`) is refused, as browsers do.
    if !suffix.contains('.') {
        return false;
    }
    match host.split_once('.') {
        Some((label, rest)) => !label.is_empty() && label != "*" && rest == suffix,
        None => false,
    }
}

/// Whether any of a certificate's names covers a normalised host.
pub fn covers(cert_names: &[String], host: &str) -> bool {
    cert_names.iter().any(|n| matches(n, host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_lowercases_and_drops_trailing_dot() {
        assert_eq!(
            normalize("WWW.Example.COM.").as_deref(),
            Some("www.example.com")
        );
        assert_eq!(normalize("*.example.com").as_deref(), Some("*.example.com"));
        assert_eq!(normalize(""), None);
        assert_eq!(normalize("."), None);
        assert_eq!(normalize("a..b"), None);
        assert_eq!(normalize("a.*.b"), None);
        assert_eq!(normalize("exa mple.com"), None);
        assert_eq!(normalize(&"a".repeat(64)), None);
        assert_eq!(normalize(&format!("{}.com", "a.".repeat(130))), None);
    }

    #[test]
    fn wildcard_covers_exactly_one_label() {
        assert!(matches("*.example.com", "a.example.com"));
        assert!(!matches("*.example.com", "example.com"));
        assert!(!matches("*.example.com", "a.b.example.com"));
        assert!(!matches("*.example.com", "a.example.org"));
        assert!(!matches("*.com", "example.com"));
        assert!(matches("example.com", "example.com"));
        assert!(!matches("example.com", "www.example.com"));
        assert!(matches("*.example.com", "*.example.com"));
    }

    #[test]
    fn parent_of_a_name() {
        assert_eq!(parent("a.example.com"), Some("example.com"));
        assert_eq!(parent("com"), None);
    }
}
