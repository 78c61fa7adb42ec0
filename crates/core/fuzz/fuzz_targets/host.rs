//! Host normalisation and the edge host grammar: never panic; a parsed edge
//! host always names a valid site.
#![no_main]
use ledge_core::{normalize_host, parse_edge_host, EdgeHost, SiteName};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    let Some(host) = normalize_host(raw) else { return };
    assert_eq!(host, host.to_ascii_lowercase());
    if let Some(h) = parse_edge_host(&host, "localhost") {
        let site = match h {
            EdgeHost::Site(s) | EdgeHost::Permalink(_, s) | EdgeHost::Alias(_, s) => s,
        };
        assert!(SiteName::parse(site.as_str()).is_ok());
    }
});
