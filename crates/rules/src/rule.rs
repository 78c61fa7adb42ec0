//! The normalised redirect rule (both files produce this shape) and the
//! normalisation step shared by `_redirects` and `netlify.toml`
//! (`@netlify/redirect-parser` `normalize.js`).

use crate::diag::SourceFile;
use crate::url::{is_url, js_trim, split_absolute};

/// Where a rule was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleOrigin {
    /// The file.
    pub file: SourceFile,
    /// 1-based line in `_redirects`; for `netlify.toml` the line of the
    /// `[[redirects]]` header when it could be found.
    pub line: Option<u32>,
    /// For `netlify.toml`, the 1-based position in the `redirects` array.
    pub entry: Option<u32>,
}

impl std::fmt::Display for RuleOrigin {
    /// `_redirects:12`, `netlify.toml:30`, or `netlify.toml redirect #3`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.entry) {
            (Some(l), _) => write!(f, "{}:{l}", self.file),
            (None, Some(e)) => write!(f, "{} redirect #{e}", self.file),
            _ => write!(f, "{}", self.file),
        }
    }
}

/// A condition value as written: a string or a list (kept apart because
/// Netlify's duplicate detection compares them as written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CondValue {
    /// A single string (`Cookie=a,b` in `_redirects`).
    Str(String),
    /// A list (`Country=us,ca` after normalisation, or a TOML array).
    List(Vec<String>),
}

impl CondValue {
    /// The individual values. A string is split on `,` (the matcher's
    /// behaviour for `Cookie=a,b`).
    pub fn values(&self) -> Vec<&str> {
        match self {
            CondValue::Str(s) => s.split(',').collect(),
            CondValue::List(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// A normalised redirect rule, in the shape `@netlify/redirect-parser`
/// returns.
#[derive(Debug, Clone)]
pub struct RedirectRule {
    /// Where it was written.
    pub origin: RuleOrigin,
    /// `from` as written.
    pub from: String,
    /// Scheme of a host-specific rule (`https://a.example/*`).
    pub scheme: Option<String>,
    /// Lower-cased host (with a non-default port) of a host-specific rule.
    pub host: Option<String>,
    /// The path pattern.
    pub path: String,
    /// Query parameters the request must carry: value `:name` captures,
    /// anything else must match literally.
    pub query: Vec<(String, String)>,
    /// The target, possibly with placeholders.
    pub to: String,
    /// The status; `None` means the default, 301.
    pub status: Option<u16>,
    /// `!` / `force = true`.
    pub force: bool,
    /// Conditions, names normalised (`country` → `Country`), in written order.
    pub conditions: Vec<(String, CondValue)>,
    /// Name of the environment variable holding the signing secret.
    pub signed: Option<String>,
    /// Request headers sent upstream by proxy rules (`netlify.toml` only).
    pub headers: Vec<(String, String)>,
    /// The raw `rate_limit` table, kept only for duplicate detection.
    pub(crate) rate_limit: Option<String>,
}

impl RedirectRule {
    /// The effective status (301 when none was written).
    pub fn effective_status(&self) -> u16 {
        self.status.unwrap_or(301)
    }

    /// Is this a proxy rule (status 200 to an absolute URL)?
    pub fn is_proxy(&self) -> bool {
        self.status == Some(200) && is_url(&self.to)
    }

    /// A canonical string used to drop exact duplicates (Netlify keeps the
    /// later copy of identical rules).
    pub(crate) fn dedup_key(&self) -> String {
        let mut conds = self.conditions.clone();
        conds.sort_by(|a, b| a.0.cmp(&b.0));
        let mut query = self.query.clone();
        query.sort();
        let mut headers = self.headers.clone();
        headers.sort();
        format!(
            "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
            self.from,
            query,
            self.to,
            self.status,
            self.force,
            conds,
            self.signed,
            headers,
            self.rate_limit
        )
    }
}

/// A rule before normalisation, as either file describes it.
pub(crate) struct RawRule {
    pub from: String,
    pub query: Vec<(String, String)>,
    pub to: Option<String>,
    pub status: Option<i64>,
    pub force: bool,
    pub conditions: Vec<(String, CondValue)>,
    pub signed: Option<String>,
    pub headers: Vec<(String, String)>,
    pub rate_limit: Option<String>,
}

/// `Number.parseInt` for status codes: optional sign, `0x` hex, decimal
/// digits, trailing garbage ignored. `None` for NaN.
pub(crate) fn parse_int(s: &str) -> Option<i64> {
    let s = js_trim(s);
    let (neg, s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, digits) = if s.len() > 2 && (s.starts_with("0x") || s.starts_with("0X")) {
        (16, &s[2..])
    } else {
        (10, s)
    };
    let mut val: i64 = 0;
    let mut any = false;
    for c in digits.chars() {
        let Some(d) = c.to_digit(radix) else { break };
        any = true;
        val = val
            .saturating_mul(i64::from(radix))
            .saturating_add(i64::from(d));
    }
    if !any {
        return None;
    }
    Some(if neg { -val } else { val })
}

/// Normalises a raw rule. The error string is the reason the rule is dropped.
pub(crate) fn normalize(raw: RawRule, origin: RuleOrigin) -> Result<RedirectRule, String> {
    let status = match raw.status {
        None => None,
        Some(s) => match u16::try_from(s) {
            Ok(s) if (100..=999).contains(&s) => Some(s),
            _ => {
                return Err(format!(
                    "Invalid status code: {s}. Use a 3-digit HTTP status such as 301, 302 or 200"
                ))
            }
        },
    };
    let to = match raw.to {
        Some(t) => t,
        None => {
            let two_xx = matches!(status, Some(s) if (200..300).contains(&s));
            match raw.from.strip_suffix("/*") {
                Some(prefix) if two_xx => format!("{prefix}/:splat"),
                _ => {
                    return Err(
                        "Missing destination. Add a target path or URL after the source path; \
                         only a `/path/*` rule with a 2xx status may leave it out"
                            .to_owned(),
                    )
                }
            }
        }
    };
    let (scheme, host, path) = if is_url(&raw.from) {
        match split_absolute(&raw.from) {
            Some((scheme, host, tail)) => {
                let end = tail.find(['?', '#']).unwrap_or(tail.len());
                let p = &tail[..end];
                let p = if p.is_empty() { "/" } else { p };
                let p = crate::url::normalize_path(&crate::url::encode_set(
                    p,
                    crate::url::EncodeSet::Path,
                ));
                (Some(scheme.to_owned()), Some(host), p)
            }
            None => {
                return Err(format!(
                    "Invalid URL: {}. Write a host-specific source as https://host.example/path",
                    raw.from
                ))
            }
        }
    } else {
        (None, None, raw.from.clone())
    };
    if path.starts_with("/.netlify") {
        return Err(
            "The source path must not start with /.netlify: those paths are reserved".to_owned(),
        );
    }
    Ok(RedirectRule {
        origin,
        from: raw.from,
        scheme,
        host,
        path,
        query: raw.query,
        to,
        status,
        force: raw.force,
        conditions: normalize_conditions(raw.conditions),
        signed: raw.signed,
        headers: raw.headers,
        rate_limit: raw.rate_limit,
    })
}

/// `conditions.js`: lower-case `role`/`language`/`country` become
/// capitalised (the lower-case spelling wins when both are given), and those
/// three are split on commas when written as strings.
fn normalize_conditions(conds: Vec<(String, CondValue)>) -> Vec<(String, CondValue)> {
    let mut out: Vec<(String, CondValue)> = Vec::with_capacity(conds.len());
    for (cap, low) in [
        ("Role", "role"),
        ("Language", "language"),
        ("Country", "country"),
    ] {
        let lower = conds.iter().find(|(k, _)| k == low).map(|(_, v)| v.clone());
        let upper = conds.iter().find(|(k, _)| k == cap).map(|(_, v)| v.clone());
        if let Some(v) = lower.or(upper) {
            let v = match v {
                CondValue::Str(s) => CondValue::List(split_list(&s)),
                l => l,
            };
            out.push((cap.to_owned(), v));
        }
    }
    for (k, v) in conds {
        if matches!(
            k.as_str(),
            "Role" | "role" | "Language" | "language" | "Country" | "country"
        ) {
            continue;
        }
        out.push((k, v));
    }
    out
}

/// `s.trim().split(/\s*,\s*/)`.
fn split_list(s: &str) -> Vec<String> {
    js_trim(s)
        .split(',')
        .map(|p| js_trim(p).to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_int_like_js() {
        assert_eq!(parse_int("301!"), Some(301));
        assert_eq!(parse_int("302x"), Some(302));
        assert_eq!(parse_int("0x12d"), Some(301));
        assert_eq!(parse_int("abc"), None);
        assert_eq!(parse_int("-5"), Some(-5));
        assert_eq!(parse_int("99999999999999999999999"), Some(i64::MAX));
    }
}
