//! Deploy-time processing of an edge-functions folder: files (paths and
//! sources from the input) are discovered, bundled through their relative
//! imports, stripped of TypeScript and read for `export const config`.
//! Never panic; a build that succeeds holds only the folder's own files,
//! each function with its entry; one that fails names a file of the folder
//! for every problem.
//!
//! Input: `path \0 source \0 path \0 source ...` (at most 8 files).
#![no_main]
use std::collections::BTreeMap;

use ledge_functions::deploy::build_functions;
use libfuzzer_sys::fuzz_target;

/// Small, so that the size check is reached too.
const MAX_BUNDLE_BYTES: usize = 2048;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.split('\0');
    let mut files = BTreeMap::new();
    while let (Some(path), Some(source)) = (parts.next(), parts.next()) {
        if files.len() == 8 {
            break;
        }
        files.insert(path.to_owned(), source.to_owned());
    }
    match build_functions(&files, MAX_BUNDLE_BYTES) {
        Ok(built) => {
            for f in &built {
                assert!(
                    files.contains_key(&f.entry),
                    "entry {:?} is not a file",
                    f.entry
                );
                assert!(
                    f.modules.contains_key(&f.entry),
                    "entry {:?} not bundled",
                    f.entry
                );
                for path in f.modules.keys() {
                    assert!(files.contains_key(path), "module {path:?} is not a file");
                }
                let size: usize = f.modules.values().map(String::len).sum();
                assert!(size <= MAX_BUNDLE_BYTES);
            }
        }
        Err(problems) => {
            assert!(!problems.is_empty());
            for p in &problems {
                assert!(p.line >= 1, "line {} for {:?}", p.line, p.path);
                assert!(!p.message.is_empty());
            }
        }
    }
});
