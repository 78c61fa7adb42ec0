//! `_headers` parsing and header matching must never panic.
#![no_main]
use ledge_rules::{RuleSet, Sources};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let (set, _diags) = RuleSet::compile(&Sources {
            headers: Some(text),
            ..Sources::default()
        });
        for path in ["/", "/a", "/a/b.css", "/ASSETS/x", "/%20/"] {
            let _ = set.headers_for(path);
        }
    }
});
