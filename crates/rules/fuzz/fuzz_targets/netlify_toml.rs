//! `netlify.toml` parsing (redirects, headers, edge functions, publish) must
//! never panic.
#![no_main]
use ledge_rules::{publish_dir, RuleSet, Sources};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = publish_dir(text);
        let (set, _diags) = RuleSet::compile(&Sources {
            netlify_toml: Some(text),
            ..Sources::default()
        });
        let _ = set.edge_functions().len();
    }
});
