//! Edge function routes (spec §4.3): declarations with tenant paths,
//! patterns, exclusions, methods and header conditions, compiled and
//! matched against a request. Never panic, and what matches obeys the
//! declaration: an excluded path never runs the function, a method list
//! is honoured, and the params are named groups of what matched.
//!
//! Input lines: `path`, `pattern`, `excluded path`, `method`,
//! `header name`, `header regex`, `request method`, `request path`,
//! `header value`.
#![no_main]
use std::collections::BTreeMap;

use ledge_functions::routes::{plan, Declaration, RouteRequest};
use ledge_functions::{FunctionConfig, HeaderCondition};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut l = text.split('\n');
    let mut next = || l.next().unwrap_or("").to_owned();
    let (path, pattern, excluded, method) = (next(), next(), next(), next());
    let (header_name, header_re) = (next(), next());
    let (req_method, req_path, header_value) = (next(), next(), next());

    let toml = vec![Declaration {
        function: "t".into(),
        path: vec![path.clone()],
        excluded_path: if excluded.is_empty() {
            Vec::new()
        } else {
            vec![excluded.clone()]
        },
        method: if method.is_empty() {
            Vec::new()
        } else {
            vec![method.clone()]
        },
        ..Default::default()
    }];
    let mut header = BTreeMap::new();
    if !header_name.is_empty() {
        header.insert(header_name.clone(), HeaderCondition::Matches(header_re));
    }
    let inline_config = FunctionConfig {
        pattern: vec![pattern],
        header,
        ..Default::default()
    };
    let inline = BTreeMap::from([("i".to_owned(), inline_config)]);
    let Ok(routes) = plan(&toml, &inline) else {
        return;
    };

    let lookup = |name: &str| {
        name.eq_ignore_ascii_case(&header_name)
            .then(|| header_value.clone())
    };
    let req = RouteRequest {
        method: &req_method,
        path: &req_path,
        header: &lookup,
    };
    // A path without `*` or `:name` is literal: it matches itself.
    let literal = |p: &str| p.starts_with('/') && !p.contains(['*', ':']);
    let mut ran = false;
    for (route, params) in routes.matching(&req) {
        if route.function.as_ref() == "t" {
            ran = true;
            if !method.is_empty() {
                assert!(method.eq_ignore_ascii_case(&req_method));
            }
            assert!(
                !(literal(&excluded) && excluded == req_path),
                "excluded {excluded:?} ran"
            );
        }
        for (name, _) in &params {
            assert!(!name.is_empty());
        }
    }
    if literal(&path)
        && path == req_path
        && excluded.is_empty()
        && (method.is_empty() || method.eq_ignore_ascii_case(&req_method))
    {
        assert!(ran, "path {path:?} did not run for itself");
    }
});
