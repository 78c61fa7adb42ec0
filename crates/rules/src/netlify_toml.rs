//! `netlify.toml`: `[build] publish`, `[[redirects]]`, `[[headers]]` and
//! `[[edge_functions]]` (spec §2).

use crate::diag::{line_no, Diagnostic, SourceFile};
use crate::headers::HeaderBlock;
use crate::rule::{normalize, parse_int, CondValue, RawRule, RedirectRule, RuleOrigin};
use crate::{MAX_FILE_BYTES, MAX_RULES};
use toml::{Table, Value};

const FILE: SourceFile = SourceFile::NetlifyToml;

/// What `netlify.toml` contributes.
#[derive(Default)]
pub(crate) struct TomlConfig {
    pub redirects: Vec<RedirectRule>,
    pub headers: Vec<HeaderBlock>,
    pub edge_functions: Vec<EdgeFunctionDecl>,
}

/// A `[[edge_functions]]` declaration, handed on to the edge as data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeFunctionDecl {
    /// The function's file name, without extension.
    pub function: String,
    /// URLPattern-style path (`path`), if given.
    pub path: Option<String>,
    /// Regular-expression alternative to `path` (`pattern`).
    pub pattern: Option<String>,
    /// Paths excluded from `path` (`excludedPath`).
    pub excluded_path: Vec<String>,
    /// Patterns excluded from `pattern` (`excludedPattern`).
    pub excluded_pattern: Vec<String>,
    /// `cache = "manual"` when `true`.
    pub cache_manual: bool,
    /// Methods it runs for; empty means all.
    pub method: Vec<String>,
    /// Display name.
    pub name: Option<String>,
    /// Request-header conditions: name → `true` (must exist), `false` (must
    /// not exist) or a regular expression the value must match.
    pub header: Vec<(String, HeaderCondition)>,
    /// 1-based line of the `[[edge_functions]]` header, when found.
    pub line: Option<u32>,
}

/// One `[edge_functions.header]` condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderCondition {
    /// The header must be present (`true`) or absent (`false`).
    Present(bool),
    /// The header value must match this regular expression.
    Matches(String),
}

/// Parses the document; a syntax error is returned as a diagnostic.
fn load(text: &str) -> Result<Table, Diagnostic> {
    if text.len() > MAX_FILE_BYTES {
        return Err(Diagnostic::error(
            FILE,
            None,
            format!("file is larger than Ledge's limit of {MAX_FILE_BYTES} bytes"),
        ));
    }
    text.parse::<Table>().map_err(|e| {
        let line = e
            .span()
            .and_then(|s| line_no(text[..s.start.min(text.len())].matches('\n').count()));
        Diagnostic::error(
            FILE,
            line,
            format!(
                "Could not parse configuration file: {}; fix the TOML syntax (no rule or header \
                 from this file applies)",
                e.message()
            ),
        )
    })
}

/// The `[build] publish` directory, for `ledge deploy DIR`.
pub fn publish_dir(netlify_toml: &str) -> Result<Option<String>, Diagnostic> {
    let table = load(netlify_toml)?;
    let Some(build) = table.get("build") else {
        return Ok(None);
    };
    let Some(build) = build.as_table() else {
        return Err(Diagnostic::error(
            FILE,
            None,
            "`build` must be a table: write `[build]` then `publish = \"dist\"`",
        ));
    };
    match build.get("publish") {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Diagnostic::error(
            FILE,
            None,
            "`[build] publish` must be a string such as \"dist\"",
        )),
    }
}

/// Lines of each `[[name]]` header, in order, to attach line numbers.
fn header_lines(text: &str, name: &str) -> Vec<Option<u32>> {
    let want = format!("[[{name}]]");
    text.split('\n')
        .enumerate()
        .filter(|(_, l)| {
            let t: String = l
                .split('#')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .collect();
            t == want
        })
        .map(|(i, _)| line_no(i))
        .collect()
}

pub(crate) fn parse(text: &str, diags: &mut Vec<Diagnostic>) -> TomlConfig {
    let mut cfg = TomlConfig::default();
    let table = match load(text) {
        Ok(t) => t,
        Err(d) => {
            diags.push(d);
            return cfg;
        }
    };
    cfg.redirects = array_of_tables(
        &table,
        text,
        "redirects",
        "write each rule as a `[[redirects]]` table",
        Some(MAX_RULES),
        diags,
        redirect,
    );
    cfg.headers = array_of_tables(
        &table,
        text,
        "headers",
        "write each block as a `[[headers]]` table",
        None,
        diags,
        header_block,
    );
    cfg.edge_functions = array_of_tables(
        &table,
        text,
        "edge_functions",
        "write each declaration as `[[edge_functions]]`",
        None,
        diags,
        edge_function,
    );
    cfg
}

/// Reads the array of tables under `key` (`[[key]]`), each item through
/// `read` with its index and, when the file's `[[key]]` lines can be matched
/// one to one, its line number; at most `limit` items are kept.
fn array_of_tables<T>(
    table: &Table,
    text: &str,
    key: &str,
    hint: &str,
    limit: Option<usize>,
    diags: &mut Vec<Diagnostic>,
    read: impl Fn(&Value, usize, Option<u32>, &mut Vec<Diagnostic>) -> Option<T>,
) -> Vec<T> {
    let mut out = Vec::new();
    let Some(v) = table.get(key) else {
        return out;
    };
    let Some(arr) = v.as_array() else {
        diags.push(Diagnostic::error(
            FILE,
            None,
            format!("\"{key}\" must be an array: {hint}"),
        ));
        return out;
    };
    let lines = header_lines(text, key);
    for (i, item) in arr.iter().enumerate() {
        if let Some(max) = limit {
            if out.len() >= max {
                diags.push(Diagnostic::error(
                    FILE,
                    None,
                    format!("more than {max} {key}; the rest are ignored"),
                ));
                break;
            }
        }
        let line = if lines.len() == arr.len() {
            lines[i]
        } else {
            None
        };
        if let Some(x) = read(item, i, line, diags) {
            out.push(x);
        }
    }
    out
}

fn describe(v: &Value) -> String {
    let s = format!("{v:?}");
    if s.len() > 80 {
        let mut end = 80;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    } else {
        s
    }
}

fn redirect(
    item: &Value,
    index: usize,
    line: Option<u32>,
    diags: &mut Vec<Diagnostic>,
) -> Option<RedirectRule> {
    let n = index + 1;
    let err = |diags: &mut Vec<Diagnostic>, msg: String| {
        diags.push(Diagnostic::error(
            FILE,
            line,
            format!("could not parse redirect number {n}: {msg}"),
        ));
        None
    };
    let Some(t) = item.as_table() else {
        return err(
            diags,
            format!("redirects must be tables, not {}", describe(item)),
        );
    };
    const KNOWN: &[&str] = &[
        "from",
        "origin",
        "to",
        "destination",
        "status",
        "force",
        "query",
        "params",
        "parameters",
        "conditions",
        "signed",
        "signing",
        "sign",
        "headers",
        "rate_limit",
    ];
    for k in t.keys() {
        if !KNOWN.contains(&k.as_str()) {
            diags.push(Diagnostic::warning(
                FILE,
                line,
                format!(
                    "redirect number {n}: unknown key `{k}` is ignored (known keys: from, to, \
                     status, force, query, conditions, headers, signed)"
                ),
            ));
        }
    }
    let pick = |names: &[&str]| names.iter().find_map(|k| t.get(*k));
    let from = match pick(&["from", "origin"]) {
        None => {
            return err(
                diags,
                "Missing \"from\" field: add `from = \"/old-path\"`".into(),
            )
        }
        Some(Value::String(s)) => s.clone(),
        Some(v) => {
            return err(
                diags,
                format!("\"from\" must be a string, not {}", describe(v)),
            )
        }
    };
    let to = match pick(&["to", "destination"]) {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(v) => {
            return err(
                diags,
                format!("\"to\" must be a string, not {}", describe(v)),
            )
        }
    };
    let status = match t.get("status") {
        None => None,
        Some(Value::Integer(i)) => Some(*i),
        Some(Value::Float(f)) if f.is_finite() && f.abs() < 1e15 => Some(f.trunc() as i64),
        Some(Value::String(s)) => match parse_int(s) {
            Some(i) => Some(i),
            None => return err(diags, format!("Invalid status code: {s}")),
        },
        Some(v) => return err(diags, format!("Invalid status code: {}", describe(v))),
    };
    let force = match t.get("force") {
        None => false,
        Some(Value::Boolean(b)) => *b,
        Some(v) => {
            return err(
                diags,
                format!(
                    "\"force\" must be true or false, not {} (Netlify's matcher ignores this rule)",
                    describe(v)
                ),
            )
        }
    };
    let mut query = Vec::new();
    if let Some(q) = pick(&["query", "params", "parameters"]) {
        let Some(qt) = q.as_table() else {
            return err(
                diags,
                format!(
                    "\"query\" must be a table such as {{ id = \":id\" }}, not {}",
                    describe(q)
                ),
            );
        };
        for (k, v) in qt {
            match v {
                Value::String(s) => query.push((k.clone(), s.clone())),
                _ => {
                    return err(
                        diags,
                        format!(
                            "query value for `{k}` must be a string, not {}",
                            describe(v)
                        ),
                    )
                }
            }
        }
    }
    let mut conditions = Vec::new();
    if let Some(c) = t.get("conditions") {
        let Some(ct) = c.as_table() else {
            return err(
                diags,
                format!(
                    "\"conditions\" must be a table such as {{ Country = [\"US\"] }}, not {}",
                    describe(c)
                ),
            );
        };
        for (k, v) in ct {
            let cv = match v {
                Value::String(s) => CondValue::Str(s.clone()),
                Value::Array(a) => {
                    let mut list = Vec::with_capacity(a.len());
                    for x in a {
                        match x {
                            Value::String(s) => list.push(s.clone()),
                            _ => {
                                return err(
                                    diags,
                                    format!(
                                        "condition `{k}` must list strings, not {}",
                                        describe(x)
                                    ),
                                )
                            }
                        }
                    }
                    CondValue::List(list)
                }
                _ => {
                    return err(
                        diags,
                        format!(
                            "condition `{k}` must be a string or a list of strings, not {}",
                            describe(v)
                        ),
                    )
                }
            };
            conditions.push((k.clone(), cv));
        }
    }
    let signed = match pick(&["signed", "signing", "sign"]) {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(v) => {
            return err(
                diags,
                format!(
                    "\"signed\" must name an environment variable, not {}",
                    describe(v)
                ),
            )
        }
    };
    let mut headers = Vec::new();
    if let Some(h) = t.get("headers") {
        let Some(ht) = h.as_table() else {
            return err(
                diags,
                "\"headers\" field must be an object: write `[redirects.headers]` with \
                 `X-Name = \"value\"` lines"
                    .into(),
            );
        };
        for (k, v) in ht {
            match v {
                Value::String(s) => headers.push((k.clone(), s.clone())),
                _ => {
                    return err(
                        diags,
                        format!("header `{k}` must be a string, not {}", describe(v)),
                    )
                }
            }
        }
    }
    let rate_limit = t.get("rate_limit").map(|v| {
        diags.push(Diagnostic::warning(
            FILE,
            line,
            format!(
                "redirect number {n}: `rate_limit` is not supported by Ledge yet; the rule \
                 applies without a rate limit"
            ),
        ));
        format!("{v:?}")
    });
    let raw = RawRule {
        from,
        query,
        to,
        status,
        force,
        conditions,
        signed,
        headers,
        rate_limit,
    };
    let origin = RuleOrigin {
        file: FILE,
        line,
        entry: u32::try_from(n).ok(),
    };
    match normalize(raw, origin) {
        Ok(r) => Some(r),
        Err(msg) => err(diags, msg),
    }
}

fn header_block(
    item: &Value,
    index: usize,
    line: Option<u32>,
    diags: &mut Vec<Diagnostic>,
) -> Option<HeaderBlock> {
    let n = index + 1;
    let err = |diags: &mut Vec<Diagnostic>, msg: String| {
        diags.push(Diagnostic::error(
            FILE,
            line,
            format!("could not parse header number {n}: {msg}"),
        ));
        None
    };
    let Some(t) = item.as_table() else {
        return err(
            diags,
            format!("Header must be an object not: {}", describe(item)),
        );
    };
    let for_path = match t.get("for") {
        None => return err(diags, "Missing \"for\" field: add `for = \"/*\"`".into()),
        Some(Value::String(s)) => crate::url::js_trim(s).to_owned(),
        Some(v) => {
            return err(
                diags,
                format!("\"for\" must be a string not: {}", describe(v)),
            )
        }
    };
    let values = match t.get("values") {
        None => return None,
        Some(Value::Table(v)) => v,
        Some(v) => {
            return err(
                diags,
                format!(
                    "\"values\" must be an object not: {}; write `[headers.values]`",
                    describe(v)
                ),
            )
        }
    };
    let mut out = Vec::new();
    for (k, v) in values {
        let key = crate::url::js_trim(k);
        if key.is_empty() || key == "undefined" {
            return err(diags, "Empty header name".into());
        }
        let value = match v {
            Value::String(s) => crate::headers::normalize_multi(crate::url::js_trim(s)),
            Value::Array(a) => {
                let mut parts = Vec::with_capacity(a.len());
                for (i, x) in a.iter().enumerate() {
                    match x {
                        Value::String(s) => parts.push(crate::url::js_trim(s).to_owned()),
                        _ => {
                            return err(
                                diags,
                                format!(
                                    "Header \"{key}[{i}]\" value must be a string not: {}",
                                    describe(x)
                                ),
                            )
                        }
                    }
                }
                parts.join(", ")
            }
            _ => {
                return err(
                    diags,
                    format!(
                        "Header \"{key}\" value must be a string not: {}",
                        describe(v)
                    ),
                )
            }
        };
        out.push((key.to_owned(), value));
    }
    if out.is_empty() {
        return None;
    }
    Some(HeaderBlock::new(for_path, out, FILE, line, diags))
}

fn str_or_list(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(a) => a.iter().map(|x| x.as_str().map(str::to_owned)).collect(),
        _ => None,
    }
}

fn edge_function(
    item: &Value,
    index: usize,
    line: Option<u32>,
    diags: &mut Vec<Diagnostic>,
) -> Option<EdgeFunctionDecl> {
    let n = index + 1;
    let err = |diags: &mut Vec<Diagnostic>, msg: String| {
        diags.push(Diagnostic::error(
            FILE,
            line,
            format!("edge function declaration number {n}: {msg}"),
        ));
        None
    };
    let Some(t) = item.as_table() else {
        return err(diags, "must be a table".into());
    };
    const KNOWN: &[&str] = &[
        "function",
        "path",
        "pattern",
        "excludedPath",
        "excludedPattern",
        "cache",
        "method",
        "name",
        "header",
    ];
    for k in t.keys() {
        if !KNOWN.contains(&k.as_str()) {
            diags.push(Diagnostic::warning(
                FILE,
                line,
                format!(
                    "edge function declaration number {n}: unknown key `{k}` is not supported \
                     by Ledge yet and is ignored"
                ),
            ));
        }
    }
    let function = match t.get("function") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => {
            return err(
                diags,
                "missing `function`: name the file in the edge functions directory, e.g. \
                 `function = \"auth\"`"
                    .into(),
            )
        }
    };
    let get_str = |k: &str| t.get(k).and_then(Value::as_str).map(str::to_owned);
    let path = get_str("path");
    let pattern = get_str("pattern");
    if t.get("path").is_some() && path.is_none() || t.get("pattern").is_some() && pattern.is_none()
    {
        return err(diags, "`path` and `pattern` must be strings".into());
    }
    match (&path, &pattern) {
        (Some(_), Some(_)) => {
            return err(diags, "give either `path` or `pattern`, not both".into());
        }
        (None, None) => {
            return err(
                diags,
                "needs a `path` (e.g. \"/admin/*\") or a `pattern`; without one it never runs"
                    .into(),
            );
        }
        _ => {}
    }
    let list = |k: &str, diags: &mut Vec<Diagnostic>| -> Option<Vec<String>> {
        match t.get(k) {
            None => Some(Vec::new()),
            Some(v) => match str_or_list(v) {
                Some(l) => Some(l),
                None => {
                    diags.push(Diagnostic::error(
                        FILE,
                        line,
                        format!(
                            "edge function declaration number {n}: `{k}` must be a string or a \
                             list of strings"
                        ),
                    ));
                    None
                }
            },
        }
    };
    let excluded_path = list("excludedPath", diags)?;
    let excluded_pattern = list("excludedPattern", diags)?;
    let method = list("method", diags)?;
    let cache_manual = match t.get("cache") {
        None => false,
        Some(Value::String(s)) if s == "manual" => true,
        Some(Value::String(s)) if s == "off" => false,
        Some(v) => {
            return err(
                diags,
                format!("`cache` must be \"manual\" or \"off\", not {}", describe(v)),
            )
        }
    };
    let mut header = Vec::new();
    if let Some(h) = t.get("header") {
        let Some(ht) = h.as_table() else {
            return err(diags, "`header` must be a table".into());
        };
        for (k, v) in ht {
            let c = match v {
                Value::Boolean(b) => HeaderCondition::Present(*b),
                Value::String(s) => HeaderCondition::Matches(s.clone()),
                _ => {
                    return err(
                        diags,
                        format!("header condition `{k}` must be true, false or a regex string"),
                    )
                }
            };
            header.push((k.clone(), c));
        }
    }
    Some(EdgeFunctionDecl {
        function,
        path,
        pattern,
        excluded_path,
        excluded_pattern,
        cache_manual,
        method,
        name: get_str("name"),
        header,
        line,
    })
}
