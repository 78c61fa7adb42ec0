//! Evaluation with fuzzed rules *and* fuzzed requests must never panic.
//! Input: rules, then a NUL byte, then `path?query`, then NUL, then a cookie.
#![no_main]
use ledge_rules::{RuleRequest, RuleSet, SiteSettings, Sources};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut parts = text.splitn(3, '\0');
    let rules = parts.next().unwrap_or("");
    let target = parts.next().unwrap_or("/");
    let cookie = parts.next();
    let (set, _) = RuleSet::compile(&Sources {
        redirects: Some(rules),
        ..Sources::default()
    });
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let site = SiteSettings {
        jwt_secret: Some("secret".into()),
        signing_secrets: vec![("S".into(), "k".into())],
        ..SiteSettings::default()
    };
    let mut req = RuleRequest::new("https", "example.com", path, query, &site);
    req.cookie = cookie;
    req.accept_language = cookie;
    req.country = Some("de");
    let exists = |p: &str| p.len() % 3 == 0;
    let _ = set.evaluate(&req, &exists);
    let _ = set.explain(&req, &exists).to_string();
});
