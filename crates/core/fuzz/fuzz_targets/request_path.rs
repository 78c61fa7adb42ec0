//! Request path decoding and static resolution: never panic, and whatever is
//! accepted can never name anything outside the deploy.
#![no_main]
use ledge_core::path::{decode_path, locate, Located};
use libfuzzer_sys::fuzz_target;

const FILES: [&str; 5] = ["/index.html", "/a.html", "/docs/index.html", "/a b/c.htm", "/é.html"];

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    let Ok(path) = decode_path(raw) else { return };
    assert!(path.starts_with('/'));
    assert!(!path.contains('\0') && !path.contains('\\'));
    assert!(!path.split('/').any(|s| s == ".." || s == "."));
    if let Located::File(p) = locate(&path, |p| FILES.contains(&p)) {
        assert!(FILES.contains(&p.as_ref()));
    }
});
