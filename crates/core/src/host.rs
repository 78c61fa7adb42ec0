//! Host normalisation and the edge host grammar.
//!
//! Hosts are compared after [`normalize_host`]: lowercased, port and trailing dot
//! removed. Under the edge domain a host is one of `SITE`, `DEPLOYID--SITE` or
//! `ALIAS--SITE` ([`parse_edge_host`]); anything else is looked up as a custom domain.

use crate::ids::{DeployId, Label, SiteName};

/// Longest host Ledge looks up; longer ones cannot be DNS names.
pub const MAX_HOST_LEN: usize = 253;

/// Lowercases `raw`, strips a `:port` and one trailing dot. Returns `None` for
/// something that cannot be a DNS host name (empty, too long, odd bytes).
pub fn normalize_host(raw: &str) -> Option<String> {
    // One pass each way over a few bytes: this runs on every request. A colon
    // anywhere but before a trailing port fails the byte check below, which is
    // also what turns away IPv6 literals (Ledge serves none).
    let bytes = raw.as_bytes();
    let digits = bytes
        .iter()
        .rev()
        .take_while(|b| b.is_ascii_digit())
        .count();
    let mut end = bytes.len();
    if bytes.len() > digits && bytes.get(bytes.len() - digits - 1) == Some(&b':') {
        end -= digits + 1;
    }
    if end > 0 && bytes.get(end - 1) == Some(&b'.') {
        end -= 1;
    }
    let host = raw.get(..end)?;
    if host.is_empty() || host.len() > MAX_HOST_LEN {
        return None;
    }
    let mut upper = false;
    for &b in host.as_bytes() {
        match b {
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => {}
            b'A'..=b'Z' => upper = true,
            _ => return None,
        }
    }
    Some(if upper {
        host.to_ascii_lowercase()
    } else {
        host.to_owned()
    })
}

/// What a host under the edge domain names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EdgeHost {
    /// `SITE.EDGE_DOMAIN`: the site's published deploy.
    Site(SiteName),
    /// `DEPLOYID--SITE.EDGE_DOMAIN`: one exact deploy.
    Permalink(DeployId, SiteName),
    /// `ALIAS--SITE.EDGE_DOMAIN`: the newest ready deploy with that alias.
    Alias(Label, SiteName),
}

/// Parses a normalised host that ends in `.{edge_domain}`. Returns `None` when the
/// host is not directly under the edge domain or its label is malformed.
pub fn parse_edge_host(host: &str, edge_domain: &str) -> Option<EdgeHost> {
    let label = host.strip_suffix(edge_domain)?.strip_suffix('.')?;
    if label.contains('.') {
        return None;
    }
    match label.split_once("--") {
        None => SiteName::parse(label).ok().map(EdgeHost::Site),
        Some((left, site)) => {
            let site = SiteName::parse(site).ok()?;
            if let Ok(id) = DeployId::parse(left) {
                Some(EdgeHost::Permalink(id, site))
            } else {
                Label::parse(left)
                    .ok()
                    .map(|alias| EdgeHost::Alias(alias, site))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises() {
        assert_eq!(
            normalize_host("Blog.Localhost:8080").as_deref(),
            Some("blog.localhost")
        );
        assert_eq!(
            normalize_host("example.com.").as_deref(),
            Some("example.com")
        );
        assert_eq!(normalize_host("a b"), None);
        assert_eq!(normalize_host("x:y"), None);
        assert_eq!(normalize_host(""), None);
        assert_eq!(normalize_host("[::1]:80"), None);
    }

    /// The straightforward form of [`normalize_host`], as a reference.
    fn reference(raw: &str) -> Option<String> {
        let without_port = match raw.rfind(':') {
            Some(i) if !raw.starts_with('[') => {
                let port = &raw[i + 1..];
                if !port.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                &raw[..i]
            }
            Some(_) => return None,
            None => raw,
        };
        let host = without_port.strip_suffix('.').unwrap_or(without_port);
        if host.is_empty() || host.len() > MAX_HOST_LEN {
            return None;
        }
        if !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        {
            return None;
        }
        Some(host.to_ascii_lowercase())
    }

    #[test]
    fn normalises_like_the_reference() {
        let parts = [
            "", "a", "B", ".", ":", "80", "[", "]", "-", "_", "é", " ", "x.Y", "::1",
        ];
        for raw in &crate::path::joinings(&parts, 3) {
            assert_eq!(normalize_host(raw), reference(raw), "{raw:?}");
        }
        let long = "a".repeat(MAX_HOST_LEN);
        for raw in [
            long.clone(),
            format!("{long}."),
            format!("{long}a"),
            format!("{long}:1"),
        ] {
            assert_eq!(normalize_host(&raw), reference(&raw), "{}", raw.len());
        }
    }

    #[test]
    fn edge_hosts() {
        let site = SiteName::parse("blog").unwrap();
        assert_eq!(
            parse_edge_host("blog.localhost", "localhost"),
            Some(EdgeHost::Site(site.clone()))
        );
        let id = DeployId::generate();
        assert_eq!(
            parse_edge_host(&format!("{id}--blog.localhost"), "localhost"),
            Some(EdgeHost::Permalink(id, site.clone()))
        );
        assert_eq!(
            parse_edge_host("staging--blog.localhost", "localhost"),
            Some(EdgeHost::Alias(Label::parse("staging").unwrap(), site))
        );
        assert_eq!(parse_edge_host("a.blog.localhost", "localhost"), None);
        assert_eq!(parse_edge_host("bloglocalhost", "localhost"), None);
        assert_eq!(parse_edge_host("localhost", "localhost"), None);
    }
}
