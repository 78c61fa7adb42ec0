//! Deploy-time processing of a site's `netlify/edge-functions/` folder:
//! which files are functions, what each one's bundle holds (its entry and
//! every module it reaches through relative imports, TypeScript stripped),
//! and its inline `export const config`, read from the syntax tree without
//! running tenant code. Every problem is a [`Diagnostic`] naming file and line;
//! one problem fails the whole deploy.

use std::collections::{BTreeMap, BTreeSet};

use oxc_allocator::Allocator;
use oxc_ast::ast::{
    ArrayExpressionElement, BindingPattern, Declaration, Expression, ModuleExportName,
    ObjectPropertyKind, PropertyKey, Statement,
};
use oxc_parser::Parser;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::types::FunctionConfig;
use crate::typescript::{line_of, prepare_module_with_imports, source_type, Diagnostic};

/// Extensions of function files, in precedence order: when `x.js` and `x.ts`
/// both exist, `x.js` is the function (as Netlify's bundler decides).
pub const EXTENSIONS: [&str; 6] = ["js", "jsx", "mjs", "mts", "ts", "tsx"];

/// Default largest bundle (sum of a function's module sources), as on Netlify.
pub const MAX_BUNDLE_BYTES: usize = 20 << 20;

/// One edge function of a deploy, ready to load.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BuiltFunction {
    /// The function's name: its file or folder name without extension.
    pub name: String,
    /// Path of the entry module inside `modules`.
    pub entry: String,
    /// Every module the entry reaches, TypeScript stripped, by path relative
    /// to the functions folder.
    pub modules: BTreeMap<String, String>,
    /// The inline `export const config`, if the entry has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<FunctionConfig>,
}

fn extension(path: &str) -> Option<(&str, &str)> {
    let (stem, ext) = path.rsplit_once('.')?;
    EXTENSIONS.contains(&ext).then_some((stem, ext))
}

fn precedence(ext: &str) -> usize {
    EXTENSIONS
        .iter()
        .position(|e| *e == ext)
        .unwrap_or(usize::MAX)
}

/// The functions among `paths` (relative to the functions folder): name →
/// entry path. A top-level `name.ext` is a function; so is a folder `name/`
/// holding `name.ext` or `index.ext` (the first of these, in that order, by
/// extension precedence).
pub fn discover<'a>(paths: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, String> {
    // name → (rank, entry); lower rank wins.
    let mut found: BTreeMap<String, ((usize, usize), String)> = BTreeMap::new();
    for path in paths {
        let Some((stem, ext)) = extension(path) else {
            continue;
        };
        let (name, rank) = match stem.split_once('/') {
            None => (stem, (0, precedence(ext))),
            Some((dir, file)) if !file.contains('/') && file == dir => (dir, (1, precedence(ext))),
            Some((dir, "index")) => (dir, (2, precedence(ext))),
            Some(_) => continue,
        };
        if name.is_empty() || name.starts_with('.') {
            continue;
        }
        let better = found.get(name).is_none_or(|(r, _)| rank < *r);
        if better {
            found.insert(name.to_owned(), (rank, path.to_owned()));
        }
    }
    found.into_iter().map(|(n, (_, e))| (n, e)).collect()
}

/// Builds every function of a functions folder. `files` maps paths relative
/// to the folder to their text. Modules are prepared once even when several
/// functions import them. Fails with every problem found.
pub fn build_functions(
    files: &BTreeMap<String, String>,
    max_bundle_bytes: usize,
) -> Result<Vec<BuiltFunction>, Vec<Diagnostic>> {
    let functions = discover(files.keys().map(String::as_str));
    let mut prepared: BTreeMap<String, Result<(String, Vec<String>), ()>> = BTreeMap::new();
    let mut problems = Vec::new();
    let mut built = Vec::new();
    for (name, entry) in &functions {
        let mut modules = BTreeMap::new();
        let mut queue = vec![entry.clone()];
        let mut seen = BTreeSet::new();
        let mut failed = false;
        while let Some(path) = queue.pop() {
            if !seen.insert(path.clone()) {
                continue;
            }
            let Some(source) = files.get(&path) else {
                continue;
            };
            let result = prepared.entry(path.clone()).or_insert_with(|| {
                prepare_module_with_imports(&path, source, Some(files)).map_err(|mut d| {
                    problems.append(&mut d);
                })
            });
            match result {
                Ok((code, imports)) => {
                    modules.insert(path.clone(), code.clone());
                    queue.extend(imports.iter().cloned());
                }
                Err(()) => failed = true,
            }
        }
        if failed {
            continue;
        }
        let size: usize = modules.values().map(String::len).sum();
        if size > max_bundle_bytes {
            problems.push(Diagnostic {
                path: entry.clone(),
                line: 1,
                message: format!(
                    "edge function {name:?} bundles {size} bytes of code; the limit is {max_bundle_bytes}"
                ),
            });
            continue;
        }
        let config = match files.get(entry) {
            Some(source) => match extract_config(entry, source) {
                Ok(c) => c,
                Err(d) => {
                    problems.push(d);
                    continue;
                }
            },
            None => None,
        };
        built.push(BuiltFunction {
            name: name.clone(),
            entry: entry.clone(),
            modules,
            config,
        });
    }
    if problems.is_empty() {
        Ok(built)
    } else {
        problems.sort_by(|a, b| (&a.path, a.line).cmp(&(&b.path, b.line)));
        problems.dedup();
        Err(problems)
    }
}

/// Reads `export const config = {...}` (or `const config = {...}; export {
/// config }`) from a module's syntax tree. The value must be made of
/// literals (strings, numbers, booleans, null, arrays, objects, template
/// strings without substitutions; `as`/`satisfies` are looked through), so
/// the configuration is known without running the module.
pub fn extract_config(path: &str, source: &str) -> Result<Option<FunctionConfig>, Diagnostic> {
    let allocator = Allocator::default();
    let parsed = Parser::new(&allocator, source, source_type(path)).parse();
    let fail = |offset: u32, message: String| Diagnostic {
        path: path.to_owned(),
        line: line_of(source, offset),
        message,
    };
    if parsed.panicked || parsed.diagnostics.has_errors() {
        return Err(fail(0, "the file could not be parsed".into()));
    }
    let body = &parsed.program.body;
    let exported_locally = body.iter().any(|s| match s {
        Statement::ExportNamedDeclaration(e) => e
            .specifiers
            .iter()
            .any(|sp| export_name(&sp.exported) == "config" && export_name(&sp.local) == "config"),
        _ => false,
    });
    let mut init = None;
    for stmt in body {
        let (decl, exported) = match stmt {
            Statement::ExportDeclaration(e) => (&e.declaration, true),
            Statement::VariableDeclaration(_) if exported_locally => match stmt {
                Statement::VariableDeclaration(v) => {
                    for d in &v.declarations {
                        if binding_name(&d.id) == Some("config") {
                            init = Some((d.init.as_ref(), d.span.start));
                        }
                    }
                    continue;
                }
                _ => continue,
            },
            _ => continue,
        };
        if let (Declaration::VariableDeclaration(v), true) = (decl, exported) {
            for d in &v.declarations {
                if binding_name(&d.id) == Some("config") {
                    init = Some((d.init.as_ref(), d.span.start));
                }
            }
        }
    }
    let Some((init, at)) = init else {
        return Ok(None);
    };
    let Some(expr) = init else {
        return Err(fail(at, "`config` is declared without a value".into()));
    };
    let value = literal(expr).map_err(|offset| {
        fail(
            offset,
            "`config` must be written with literal values (strings, arrays, booleans, objects), so it can be read without running the function".into(),
        )
    })?;
    if !value.is_object() {
        return Err(fail(at, "`config` must be an object".into()));
    }
    serde_json::from_value(value)
        .map(Some)
        .map_err(|e| fail(at, format!("invalid `config`: {e}")))
}

fn export_name<'a>(n: &'a ModuleExportName<'_>) -> &'a str {
    match n {
        ModuleExportName::IdentifierName(i) => i.name.as_str(),
        ModuleExportName::IdentifierReference(i) => i.name.as_str(),
        ModuleExportName::StringLiteral(s) => s.value.as_str(),
    }
}

fn binding_name<'a>(b: &'a BindingPattern<'_>) -> Option<&'a str> {
    match b {
        BindingPattern::BindingIdentifier(i) => Some(i.name.as_str()),
        _ => None,
    }
}

/// A literal expression as JSON; `Err(offset)` at the first part that is not one.
fn literal(expr: &Expression<'_>) -> Result<Value, u32> {
    use oxc_span::GetSpan;
    Ok(match expr {
        Expression::StringLiteral(s) => Value::String(s.value.to_string()),
        Expression::BooleanLiteral(b) => Value::Bool(b.value),
        Expression::NullLiteral(_) => Value::Null,
        Expression::NumericLiteral(n) => serde_json::Number::from_f64(n.value)
            .map(Value::Number)
            .ok_or(n.span.start)?,
        Expression::TemplateLiteral(t) if t.expressions.is_empty() => {
            let mut s = String::new();
            for q in &t.quasis {
                s.push_str(q.value.cooked.as_ref().ok_or(t.span.start)?.as_str());
            }
            Value::String(s)
        }
        Expression::ArrayExpression(a) => {
            let mut out = Vec::with_capacity(a.elements.len());
            for el in &a.elements {
                match el {
                    ArrayExpressionElement::SpreadElement(s) => return Err(s.span.start),
                    ArrayExpressionElement::Elision(e) => return Err(e.span.start),
                    other => match other.as_expression() {
                        Some(e) => out.push(literal(e)?),
                        None => return Err(a.span.start),
                    },
                }
            }
            Value::Array(out)
        }
        Expression::ObjectExpression(o) => {
            let mut out = serde_json::Map::new();
            for p in &o.properties {
                let ObjectPropertyKind::ObjectProperty(p) = p else {
                    return Err(o.span.start);
                };
                if p.computed || p.method {
                    return Err(p.span.start);
                }
                let key = match &p.key {
                    PropertyKey::StaticIdentifier(i) => i.name.to_string(),
                    PropertyKey::StringLiteral(s) => s.value.to_string(),
                    other => return Err(other.span().start),
                };
                out.insert(key, literal(&p.value)?);
            }
            Value::Object(out)
        }
        Expression::ParenthesizedExpression(p) => literal(&p.expression)?,
        Expression::TSAsExpression(e) => literal(&e.expression)?,
        Expression::TSSatisfiesExpression(e) => literal(&e.expression)?,
        Expression::TSTypeAssertion(e) => literal(&e.expression)?,
        other => return Err(other.span().start),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> BTreeMap<String, String> {
        list.iter()
            .map(|(p, s)| (p.to_string(), s.to_string()))
            .collect()
    }

    #[test]
    fn discovers_files_and_folders_with_precedence() {
        let d = discover([
            "hello.ts",
            "hello.js",
            "auth/index.ts",
            "auth/auth.js",
            "lib/util.ts",
            "geo/index.mts",
            "README.md",
            "deep/a/b.ts",
            ".hidden.js",
        ]);
        let got: Vec<(&str, &str)> = d.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            got,
            vec![
                ("auth", "auth/auth.js"),
                ("geo", "geo/index.mts"),
                ("hello", "hello.js"),
            ]
        );
    }

    #[test]
    fn config_is_read_without_running_code() {
        let c = extract_config(
            "a.ts",
            "import type { Config } from '@netlify/edge-functions';\nexport default () => {};\nexport const config: Config = { path: ['/a', `/b/*`], excludedPath: '/a/x', method: 'GET', onError: 'bypass', cache: 'manual', header: { 'x-flag': true, 'x-v': '^1' } } satisfies Config;",
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.path, vec!["/a", "/b/*"]);
        assert_eq!(c.excluded_path, vec!["/a/x"]);
        assert_eq!(c.method, vec!["GET"]);
        assert_eq!(c.on_error.as_deref(), Some("bypass"));
        assert_eq!(c.cache.as_deref(), Some("manual"));
        assert_eq!(c.header.len(), 2);

        let local = extract_config("b.js", "const config = { path: '/b' };\nexport { config };")
            .unwrap()
            .unwrap();
        assert_eq!(local.path, vec!["/b"]);
        assert_eq!(
            extract_config("c.js", "export default () => {}").unwrap(),
            None
        );
        // A local `config` that is not exported is not the function's config.
        assert_eq!(
            extract_config("d.js", "const config = { path: '/d' };").unwrap(),
            None
        );
    }

    #[test]
    fn config_that_needs_running_code_is_refused_with_its_line() {
        let e = extract_config(
            "a.js",
            "const p = '/x';\nexport const config = {\n  path: p,\n};",
        )
        .unwrap_err();
        assert_eq!(e.line, 3, "{e:?}");
        assert!(e.message.contains("literal"), "{e:?}");
        let e = extract_config("a.js", "export const config = { path: 5 };").unwrap_err();
        assert!(e.message.contains("invalid `config`"), "{e:?}");
        let e = extract_config("a.js", "export const config = '/x';").unwrap_err();
        assert!(e.message.contains("object"), "{e:?}");
    }

    #[test]
    fn bundles_hold_what_the_entry_reaches() {
        let f = files(&[
            ("a.ts", "import { x } from './lib/x.ts';\nexport default () => new Response(x);\nexport const config = { path: '/a' };"),
            ("b.js", "export default () => {};"),
            ("lib/x.ts", "import { y } from './y.ts';\nexport const x: string = y;"),
            ("lib/y.ts", "export const y = 'y';"),
            ("lib/unused.ts", "export const z = 1;"),
        ]);
        let built = build_functions(&f, MAX_BUNDLE_BYTES).unwrap();
        assert_eq!(built.len(), 2);
        let a = &built[0];
        assert_eq!(a.name, "a");
        assert_eq!(
            a.modules.keys().map(String::as_str).collect::<Vec<_>>(),
            vec!["a.ts", "lib/x.ts", "lib/y.ts"]
        );
        assert!(!a.modules["lib/x.ts"].contains(": string"));
        assert_eq!(a.config.as_ref().unwrap().path, vec!["/a"]);
        assert_eq!(built[1].modules.len(), 1);
        assert_eq!(built[1].config, None);
    }

    #[test]
    fn every_problem_fails_the_build_with_file_and_line() {
        let f = files(&[
            (
                "a.ts",
                "import { x } from './missing.ts';\nexport default () => {};",
            ),
            ("b.js", "export default () => {\n  let = ;\n};"),
            (
                "c.js",
                "import pad from 'npm:left-pad';\nexport default () => {};",
            ),
            ("d.js", "export default () => {};"),
        ]);
        let e = build_functions(&f, MAX_BUNDLE_BYTES).unwrap_err();
        let at: Vec<(&str, u32)> = e.iter().map(|d| (d.path.as_str(), d.line)).collect();
        assert_eq!(at, vec![("a.ts", 1), ("b.js", 2), ("c.js", 1)], "{e:?}");
        let big = files(&[("a.js", "export default () => {}; // padding padding")]);
        let e = build_functions(&big, 10).unwrap_err();
        assert!(e[0].message.contains("limit"), "{e:?}");
    }
}
