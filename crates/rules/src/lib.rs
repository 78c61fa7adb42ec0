//! `ledge-rules`: Netlify-compatible request rules for Ledge.
//!
//! This crate reads a deploy's `_redirects`, `_headers` and `netlify.toml`
//! with the same acceptance as Netlify's own parsers
//! (`@netlify/redirect-parser` 15.0.4, `@netlify/headers-parser` 9.0.3),
//! compiles them into an indexed [`RuleSet`], and decides what a request
//! gets: a redirect, a rewrite, a proxy, a shadowing static file, a 404 for a
//! missing role… (spec `netlify-compat.md` §1–§3).
//!
//! It is **pure**: no I/O, no clock, no async runtime. The edge passes the
//! time, the site's secrets and a [`StaticFiles`] answer ("would a file be
//! served for this path?"); static path resolution itself (index files,
//! trailing-slash redirects) is the edge's job.
//!
//! It is **not** the place for caching, header application on responses or
//! proxying; [`Outcome`] says what to do, the edge does it.
//!
//! # Using it
//!
//! ```
//! use ledge_rules::{NoFiles, Outcome, RuleRequest, RuleSet, SiteSettings, Sources};
//!
//! let sources = Sources { redirects: Some("/old/* /new/:splat 301\n"), ..Sources::default() };
//! let (rules, diagnostics) = RuleSet::compile(&sources);
//! assert!(diagnostics.is_empty());
//! let site = SiteSettings::default();
//! let req = RuleRequest::new("https", "example.com", "/old/a", "x=1", &site);
//! assert_eq!(
//!     rules.evaluate(&req, &NoFiles),
//!     Outcome::Redirect { rule: 0, status: 301, location: "/new/a?x=1".into() }
//! );
//! println!("{}", rules.explain(&req, &NoFiles));
//! ```
//!
//! Entry points: [`RuleSet::compile`], [`RuleSet::evaluate`],
//! [`RuleSet::explain`], [`RuleSet::headers_for`],
//! [`RuleSet::basic_auth_for`], [`RuleSet::edge_functions`], [`publish_dir`],
//! and [`sign_proxy`] for callers that sign outside evaluation.
//!
//! # Semantics in one paragraph
//!
//! `_redirects` rules come before `netlify.toml` rules; exact duplicates keep
//! the later copy. The first rule whose host, path, query and conditions match
//! decides (order, not specificity). If that rule is not forced and a static
//! file exists for the request path, the file is served and the search ends
//! ([`Outcome::Static`]). A `Role` rule that fails does not end the search,
//! but gates what follows: a later match is applied even over files, and no
//! later match means [`Outcome::Force404`]. Targets get `:placeholder`,
//! `:splat` and query captures substituted; the request query is passed on
//! unless the target has its own.
//!
//! # Security: bounds on hostile input
//!
//! Tenant files and requests are untrusted. Parsing and matching never panic
//! and are bounded by these constants:
//!
//! * [`MAX_FILE_BYTES`]: larger rule files are rejected with a diagnostic.
//! * [`MAX_LINE_BYTES`]: longer lines are dropped with a diagnostic.
//! * [`MAX_RULES`]: redirect rules beyond this are dropped.
//! * [`MAX_HEADER_BLOCKS`]: header blocks beyond this are dropped.
//! * [`MAX_PATH_BYTES`]: longer request paths skip rule evaluation.
//! * [`MAX_TARGET_BYTES`]: a target that would grow beyond this through
//!   substitution is skipped.
//! * [`MAX_COOKIES`]: cookies looked at per request.
//! * [`jwt::MAX_JWT_BYTES`]: longer `nf_jwt` tokens count as absent.
//!
//! No user pattern is ever compiled to a backtracking regular expression:
//! redirect paths match segment by segment, header paths run as an NFA
//! simulation (O(path × pattern)).
//!
//! Matching cost does not grow with the rule count for common shapes: rules
//! are indexed by exact literal path, by first literal segment and by host,
//! and only candidates are tested, in original order.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod diag;
mod headers;
pub mod jwt;
mod netlify_toml;
mod pattern;
mod redirects_file;
mod rule;
mod ruleset;
mod url;

pub use diag::{Diagnostic, Severity, SourceFile};
pub use headers::HeaderBlock;
pub use jwt::{sign_proxy, SignClaims};
pub use netlify_toml::{publish_dir, EdgeFunctionDecl, HeaderCondition};
pub use rule::{CondValue, RedirectRule, RuleOrigin};
pub use ruleset::{
    Explanation, NoFiles, Outcome, RuleRequest, RuleSet, Signing, SiteSettings, Sources,
    StaticFiles,
};

/// Largest rule file (`_redirects`, `_headers`, `netlify.toml`) accepted.
pub const MAX_FILE_BYTES: usize = 16 * 1024 * 1024;
/// Longest line of `_redirects` or `_headers` accepted.
pub const MAX_LINE_BYTES: usize = 8 * 1024;
/// Most redirect rules per deploy (both files together).
pub const MAX_RULES: usize = 200_000;
/// Most header blocks per deploy (both files together).
pub const MAX_HEADER_BLOCKS: usize = 10_000;
/// Longest request path evaluated against the rules.
pub const MAX_PATH_BYTES: usize = 8 * 1024;
/// Longest rule target after placeholder substitution.
pub const MAX_TARGET_BYTES: usize = 16 * 1024;
/// Most cookies read from one `Cookie` header.
pub const MAX_COOKIES: usize = 256;

#[cfg(test)]
mod tests;

#[cfg(test)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<RuleSet>();
    is::<Outcome>();
    is::<Diagnostic>();
}
