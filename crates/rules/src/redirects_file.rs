//! The `_redirects` line parser (spec §1.2, `@netlify/redirect-parser`
//! `line_parser.js`).

use crate::diag::{line_no, Diagnostic, SourceFile};
use crate::rule::{normalize, parse_int, CondValue, RawRule, RedirectRule, RuleOrigin};
use crate::url::{is_url, js_space, js_trim};
use crate::{MAX_FILE_BYTES, MAX_LINE_BYTES, MAX_RULES};

const FILE: SourceFile = SourceFile::Redirects;

/// Parses a whole `_redirects` file. Bad lines are reported and skipped; the
/// rest still apply.
pub(crate) fn parse(text: &str, diags: &mut Vec<Diagnostic>) -> Vec<RedirectRule> {
    let mut rules = Vec::new();
    if text.len() > MAX_FILE_BYTES {
        diags.push(Diagnostic::error(
            FILE,
            None,
            format!(
                "file is {} bytes, more than Ledge's limit of {MAX_FILE_BYTES}; no rule from it \
                 applies. Split rules with shared prefixes into `/prefix/*` rules",
                text.len()
            ),
        ));
        return rules;
    }
    for (index, raw_line) in text.split('\n').enumerate() {
        let line = js_trim(raw_line);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let lno = line_no(index);
        if line.len() > MAX_LINE_BYTES {
            diags.push(Diagnostic::error(
                FILE,
                lno,
                format!(
                    "line is {} bytes, longer than the limit of {MAX_LINE_BYTES}; it is ignored",
                    line.len()
                ),
            ));
            continue;
        }
        if rules.len() >= MAX_RULES {
            diags.push(Diagnostic::error(
                FILE,
                lno,
                format!("more than {MAX_RULES} rules; this line and all later ones are ignored"),
            ));
            break;
        }
        let origin = RuleOrigin {
            file: FILE,
            line: lno,
            entry: None,
        };
        match parse_line(line, lno, diags).and_then(|raw| normalize(raw, origin)) {
            Ok(rule) => rules.push(rule),
            Err(msg) => diags.push(Diagnostic::error(
                FILE,
                lno,
                format!("could not parse redirect `{line}`: {msg}"),
            )),
        }
    }
    rules
}

/// `key=value` → (key, Some(value)); the value stops at a second `=`
/// (JavaScript `split('=')` keeps only two pieces).
fn pair(tok: &str) -> (&str, Option<&str>) {
    let mut it = tok.split('=');
    let key = it.next().unwrap_or("");
    (key, it.next())
}

fn parse_line(
    line: &str,
    lno: Option<u32>,
    diags: &mut Vec<Diagnostic>,
) -> Result<RawRule, String> {
    let mut tokens: Vec<&str> = line.split(js_space).filter(|t| !t.is_empty()).collect();
    if let Some(c) = tokens.iter().position(|t| t.starts_with('#')) {
        tokens.truncate(c);
    }
    let Some((&from, parts)) = tokens.split_first() else {
        return Err("empty rule".to_owned());
    };
    if parts.is_empty() {
        return Err(
            "Missing destination path/URL. Write `FROM TO [STATUS]`; a path alone (e.g. a \
             `_headers` block) is not a rule"
                .to_owned(),
        );
    }
    let (query_parts, to, last): (&[&str], Option<&str>, &[&str]) = if parse_int(parts[0]).is_some()
    {
        (&[], None, parts)
    } else {
        let Some(ti) = parts.iter().position(|p| p.starts_with('/') || is_url(p)) else {
            return Err(
                "The destination path/URL must start with \"/\", \"http:\" or \"https:\""
                    .to_owned(),
            );
        };
        (&parts[..ti], Some(parts[ti]), &parts[ti + 1..])
    };
    let mut query: Vec<(String, String)> = Vec::new();
    for q in query_parts {
        match pair(q) {
            (k, Some(v)) => {
                query.retain(|(ek, _)| ek != k);
                query.push((k.to_owned(), v.to_owned()));
            }
            (k, None) => diags.push(Diagnostic::warning(
                FILE,
                lno,
                format!(
                    "query parameter `{k}` has no `=value` and is ignored (Netlify ignores it \
                     too); write `{k}=:{k}` to require it"
                ),
            )),
        }
    }
    let (status, force) = match last.first() {
        None => (None, false),
        Some(s) => match parse_int(s) {
            Some(n) => (Some(n), s.ends_with('!')),
            None => {
                return Err(format!(
                    "Invalid status code: {s}. Conditions must follow an explicit status, e.g. \
                     `/a /b 302 Country=us`"
                ))
            }
        },
    };
    let mut conditions: Vec<(String, CondValue)> = Vec::new();
    let mut signed = None;
    let mut sign = None;
    for c in last.iter().skip(1) {
        match pair(c) {
            (k, Some(v)) => {
                if k == "signed" {
                    signed = Some(v.to_owned());
                } else if k == "Sign" {
                    sign = Some(v.to_owned());
                } else {
                    conditions.retain(|(ek, _)| ek != k);
                    conditions.push((k.to_owned(), CondValue::Str(v.to_owned())));
                }
            }
            (k, None) => diags.push(Diagnostic::warning(
                FILE,
                lno,
                format!(
                    "condition `{k}` has no `=value` and is ignored (Netlify ignores it too); \
                     write e.g. `Country=us` without spaces"
                ),
            )),
        }
    }
    Ok(RawRule {
        from: from.to_owned(),
        query,
        to: to.map(str::to_owned),
        status,
        force,
        conditions,
        signed: signed.or(sign),
        headers: Vec::new(),
        rate_limit: None,
    })
}
