//! `_redirects` parsing and compilation must never panic.
#![no_main]
use ledge_rules::{RuleSet, Sources};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let (set, _diags) = RuleSet::compile(&Sources {
            redirects: Some(text),
            ..Sources::default()
        });
        let _ = set.rules().count();
    }
});
