//! Deploy-time preparation of edge function sources with oxc: TypeScript
//! stripping and import checks, with diagnostics that name file and line.

use std::collections::BTreeMap;
use std::path::Path;

use oxc_allocator::Allocator;
use oxc_codegen::Codegen;
use oxc_parser::Parser;
use oxc_semantic::SemanticBuilder;
use oxc_span::{SourceType, Span};
use oxc_transformer::{TransformOptions, Transformer};
use serde::{Deserialize, Serialize};

use crate::bundle::{resolve, Bundle, BundleError, BundleSource};

/// A problem in a source file, for the deploy report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{path}:{line}: {message}")]
pub struct Diagnostic {
    pub path: String,
    /// 1-based line.
    pub line: u32,
    pub message: String,
}

pub(crate) fn line_of(source: &str, offset: u32) -> u32 {
    let end = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(source.len());
    let newlines = source.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count();
    u32::try_from(newlines)
        .unwrap_or(u32::MAX)
        .saturating_add(1)
}

pub(crate) fn source_type(path: &str) -> SourceType {
    // Unknown extensions are treated as JavaScript modules.
    SourceType::from_path(path).unwrap_or_else(|_| SourceType::mjs())
}

fn is_typescript(path: &str) -> bool {
    source_type(path).is_typescript()
}

fn diagnostics<'d>(
    path: &str,
    source: &str,
    list: impl IntoIterator<Item = &'d oxc_diagnostics::OxcDiagnostic>,
) -> Vec<Diagnostic> {
    list.into_iter()
        .map(|d| Diagnostic {
            path: path.to_string(),
            line: d
                .labels
                .first()
                .map(|l| line_of(source, l.offset()))
                .unwrap_or(1),
            message: d.message.to_string(),
        })
        .collect()
}

/// Strips TypeScript syntax from `source` (`path` decides the dialect:
/// `.ts`, `.mts`, `.tsx`, ...; JSX is compiled to `React.createElement`).
/// Plain JavaScript is returned unchanged.
pub fn strip_typescript(path: &str, source: &str) -> Result<String, Diagnostic> {
    prepare_module(path, source, None).map_err(|mut d| d.remove(0))
}

/// Checks the imports of one module against the bundle's paths: remote URLs,
/// `npm:`, `node:`, bare specifiers and missing files are refused.
pub fn check_imports(
    path: &str,
    source: &str,
    modules: &BTreeMap<String, String>,
) -> Vec<Diagnostic> {
    match prepare_module(path, source, Some(modules)) {
        Ok(_) => Vec::new(),
        Err(d) => d,
    }
}

/// Builds a [`Bundle`] from deploy sources: strips TypeScript from every
/// module and checks every import; all problems are reported together.
pub fn prepare_bundle(
    id: &str,
    entry: &str,
    sources: &BTreeMap<String, String>,
) -> Result<Bundle, Vec<Diagnostic>> {
    let mut modules = BTreeMap::new();
    let mut problems = Vec::new();
    for (path, source) in sources {
        match prepare_module(path, source, Some(sources)) {
            Ok(js) => {
                modules.insert(path.clone(), js);
            }
            Err(mut d) => problems.append(&mut d),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Bundle::new(BundleSource {
        id: id.to_string(),
        entry: entry.to_string(),
        modules,
    })
    .map_err(|e| {
        let path = match &e {
            BundleError::BadPath(p) | BundleError::MissingEntry(p) => p.clone(),
        };
        vec![Diagnostic {
            path,
            line: 1,
            message: e.to_string(),
        }]
    })
}

/// Runs [`prepare_module_inner`], turning a panic inside oxc (tenant input
/// reaching an unexpected path) into a diagnostic.
fn prepare_module(
    path: &str,
    source: &str,
    modules: Option<&BTreeMap<String, String>>,
) -> Result<String, Vec<Diagnostic>> {
    prepare_module_with_imports(path, source, modules).map(|(code, _)| code)
}

/// Like [`prepare_module`], also returning the bundle paths the module
/// imports (statically or by `import("literal")`).
pub(crate) fn prepare_module_with_imports(
    path: &str,
    source: &str,
    modules: Option<&BTreeMap<String, String>>,
) -> Result<(String, Vec<String>), Vec<Diagnostic>> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        prepare_module_inner(path, source, modules)
    }))
    .unwrap_or_else(|_| {
        Err(vec![Diagnostic {
            path: path.to_string(),
            line: 1,
            message: "internal error while compiling this file".into(),
        }])
    })
}

fn prepare_module_inner(
    path: &str,
    source: &str,
    modules: Option<&BTreeMap<String, String>>,
) -> Result<(String, Vec<String>), Vec<Diagnostic>> {
    let allocator = Allocator::default();
    let source_type = source_type(path);
    let parsed = Parser::new(&allocator, source, source_type).parse();
    if parsed.panicked || parsed.diagnostics.has_errors() {
        let mut d = diagnostics(path, source, parsed.diagnostics.errors());
        if d.is_empty() {
            d.push(Diagnostic {
                path: path.to_string(),
                line: 1,
                message: "the file could not be parsed".into(),
            });
        }
        return Err(d);
    }

    let mut imports = Vec::new();
    if let Some(modules) = modules {
        let mut problems = Vec::new();
        let mut check = |specifier: &str, span: Span| match resolve(modules, path, specifier) {
            Ok(found) => {
                imports.push(found);
                None
            }
            Err(message) => Some(Diagnostic {
                path: path.to_string(),
                line: line_of(source, span.start),
                message,
            }),
        };
        for (specifier, requests) in parsed.module_record.requested_modules.iter() {
            for r in requests.iter().filter(|r| !r.is_type) {
                problems.extend(check(specifier.as_str(), r.span));
            }
        }
        for d in parsed.module_record.dynamic_imports.iter() {
            let text = d.module_request.source_text(source).trim();
            let quoted = text.len() >= 2
                && (text.starts_with('"') || text.starts_with('\''))
                && text.ends_with(&text[..1]);
            if quoted {
                problems.extend(check(&text[1..text.len() - 1], d.module_request));
            } else {
                problems.push(Diagnostic {
                    path: path.to_string(),
                    line: line_of(source, d.span.start),
                    message: "dynamic import() needs a string literal naming a file of the bundle"
                        .into(),
                });
            }
        }
        problems.sort_by_key(|p| p.line);
        if !problems.is_empty() {
            return Err(problems);
        }
    }

    if !is_typescript(path) && !source_type.is_jsx() {
        return Ok((source.to_string(), imports));
    }
    let mut program = parsed.program;
    let semantic = SemanticBuilder::new().with_enum_eval(true).build(&program);
    let scoping = semantic.semantic.into_scoping();
    let mut options = TransformOptions::default();
    options.jsx.runtime = oxc_transformer::JsxRuntime::Classic;
    let transformed = Transformer::new(&allocator, Path::new(path), &options)
        .build_with_scoping(scoping, &mut program);
    if transformed.diagnostics.has_errors() {
        return Err(diagnostics(path, source, transformed.diagnostics.errors()));
    }
    Ok((Codegen::new().build(&program).code, imports))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_types() {
        let js = strip_typescript(
            "index.ts",
            "import type { Context } from '@netlify/edge-functions';\ninterface A { x: number }\nexport default async (req: Request, ctx: Context): Promise<Response> => new Response(String(1 as number));\nexport const config = { path: '/x' } satisfies object;",
        )
        .unwrap();
        assert!(!js.contains("interface"), "{js}");
        assert!(!js.contains("Context"), "{js}");
        assert!(!js.contains(": Request"), "{js}");
        assert!(js.contains("export default async"), "{js}");
        assert!(js.contains("path: \"/x\""), "{js}");
    }

    #[test]
    fn javascript_is_unchanged() {
        let src = "export default () => new Response('x') // keep\n";
        assert_eq!(strip_typescript("index.js", src).unwrap(), src);
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let e = strip_typescript("fn.ts", "const a = 1;\nconst b: = 2;\n").unwrap_err();
        assert_eq!(e.path, "fn.ts");
        assert_eq!(e.line, 2);
        assert!(!e.message.is_empty());
    }

    #[test]
    fn imports_are_checked_with_lines() {
        let mut m = BTreeMap::new();
        m.insert("index.ts".to_string(), String::new());
        m.insert("lib/util.ts".to_string(), String::new());
        let src = "import { a } from './lib/util.ts';\nimport x from 'npm:left-pad';\nimport fs from 'node:fs';\nimport r from 'https://deno.land/x/mod.ts';\nimport m from './missing.ts';\nimport type { T } from 'types-only';\nconst d = await import('./lib/util.ts');\nconst e = await import(name);\nexport default () => {};";
        let d = check_imports("index.ts", src, &m);
        let lines: Vec<u32> = d.iter().map(|d| d.line).collect();
        assert_eq!(lines, vec![2, 3, 4, 5, 8], "{d:?}");
        assert!(d[0].message.contains("npm:left-pad"));
        assert!(d[3].message.contains("not in the bundle"));
    }

    #[test]
    fn prepare_bundle_strips_and_runs_checks() {
        let mut s = BTreeMap::new();
        s.insert(
            "index.ts".to_string(),
            "import { n } from './n.ts';\nexport default (): Response => new Response(String(n));"
                .to_string(),
        );
        s.insert(
            "n.ts".to_string(),
            "export const n: number = 4;".to_string(),
        );
        let b = prepare_bundle("d1/fn", "index.ts", &s).unwrap();
        assert!(!b.modules()["n.ts"].contains(": number"));
        s.insert("bad.ts".to_string(), "import 'node:path';".to_string());
        let d = prepare_bundle("d1/fn", "index.ts", &s).unwrap_err();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].path, "bad.ts");
    }
}
