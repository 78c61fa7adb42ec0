//! Deploy bundles: a map of relative module paths to JavaScript sources with
//! one entry module, and the module resolver/loader that serves imports from it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use rquickjs::loader::{ImportAttributes, Loader, Resolver};
use rquickjs::module::Declared;
use rquickjs::{Ctx, Module, WriteOptions};

use crate::isolate::lock;

/// Bytecode of a bundle's modules, compiled once by the first isolate and
/// loaded by the next ones (parsing dominates a cold start of a big bundle).
pub(crate) type BytecodeCache = Arc<Mutex<HashMap<String, Arc<Vec<u8>>>>>;

/// Bytecode buffers an isolate loaded from: QuickJS keeps pointing into them,
/// so the isolate holds them until after its runtime is freed.
pub(crate) type KeepAlive = Arc<Mutex<Vec<Arc<Vec<u8>>>>>;
use serde::{Deserialize, Serialize};

/// The code of one edge function of one deploy.
///
/// Isolates are keyed by [`Bundle::key`]: the id plus a digest of the sources,
/// so two bundles never share an isolate unless they hold the same code under
/// the same id.
#[derive(Clone, Debug)]
pub struct Bundle {
    id: String,
    entry: String,
    modules: Arc<BTreeMap<String, String>>,
    key: String,
    /// An FNV-1a hash of `key`, which places the bundle's invocations on
    /// the workers (made once, not per request).
    key_hash: u64,
    /// `key` without the env part.
    code_key: String,
    compiled: BytecodeCache,
    env: Arc<BTreeMap<String, String>>,
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Serialised form of a [`Bundle`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BundleSource {
    /// Deploy id and function name, e.g. `"6543abc/hello"`.
    pub id: String,
    /// Path of the entry module inside `modules`.
    pub entry: String,
    /// Relative path (`"lib/util.js"`, no leading slash) → source.
    pub modules: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("module path {0:?} is not a normalised relative path")]
    BadPath(String),
    #[error("entry module {0:?} is not in the bundle")]
    MissingEntry(String),
}

impl Bundle {
    /// Checks that every path is a normalised relative path and that the entry exists.
    pub fn new(source: BundleSource) -> Result<Bundle, BundleError> {
        for path in source.modules.keys() {
            if normalise(path).as_deref() != Some(path.as_str()) {
                return Err(BundleError::BadPath(path.clone()));
            }
        }
        if !source.modules.contains_key(&source.entry) {
            return Err(BundleError::MissingEntry(source.entry));
        }
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for (path, code) in &source.modules {
            for part in [path.as_bytes(), code.as_bytes()] {
                ctx.update(&(part.len() as u64).to_le_bytes());
                ctx.update(part);
            }
        }
        ctx.update(source.entry.as_bytes());
        let digest = hex::encode(&ctx.finish().as_ref()[..16]);
        let key = format!("{}#{digest}", source.id);
        Ok(Bundle {
            code_key: key.clone(),
            key_hash: fnv1a(key.as_bytes()),
            key,
            id: source.id,
            entry: source.entry,
            modules: Arc::new(source.modules),
            compiled: BytecodeCache::default(),
            env: Arc::default(),
        })
    }

    /// A bundle of a single module named `index.js`.
    pub fn single(id: &str, source: &str) -> Bundle {
        let mut modules = BTreeMap::new();
        modules.insert("index.js".to_string(), source.to_string());
        Bundle {
            key: String::new(),
            key_hash: fnv1a(b""),
            code_key: String::new(),
            id: id.to_string(),
            entry: "index.js".to_string(),
            modules: Arc::new(modules),
            compiled: BytecodeCache::default(),
            env: Arc::default(),
        }
        .rekeyed()
    }

    fn rekeyed(self) -> Bundle {
        let source = BundleSource {
            id: self.id.clone(),
            entry: self.entry.clone(),
            modules: (*self.modules).clone(),
        };
        Bundle::new(source).unwrap_or(self)
    }

    /// The deploy's environment (frozen at deploy time), seen by
    /// `Netlify.env` outside a handler, e.g. at module top level. Inside an
    /// invocation `Netlify.env` reads `context.env` of the request. Part of
    /// the isolate key: another env means another isolate.
    pub fn with_env(mut self, env: BTreeMap<String, String>) -> Bundle {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for (k, v) in &env {
            for part in [k.as_bytes(), v.as_bytes()] {
                ctx.update(&(part.len() as u64).to_le_bytes());
                ctx.update(part);
            }
        }
        let digest = hex::encode(&ctx.finish().as_ref()[..8]);
        self.key = format!("{}+env:{digest}", self.code_key);
        self.key_hash = fnv1a(self.key.as_bytes());
        self.env = Arc::new(env);
        self.compiled = BytecodeCache::default();
        self
    }

    pub(crate) fn env(&self) -> &BTreeMap<String, String> {
        &self.env
    }

    /// Whether the bundle was made with [`Bundle::with_env`] (its key says so).
    pub(crate) fn has_env(&self) -> bool {
        self.key != self.code_key
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn entry(&self) -> &str {
        &self.entry
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// A hash of [`Bundle::key`] (FNV-1a, the same in every process).
    pub(crate) fn key_hash(&self) -> u64 {
        self.key_hash
    }

    pub fn modules(&self) -> &BTreeMap<String, String> {
        &self.modules
    }

    pub(crate) fn shared_modules(&self) -> Arc<BTreeMap<String, String>> {
        Arc::clone(&self.modules)
    }

    pub(crate) fn bytecode_cache(&self) -> BytecodeCache {
        Arc::clone(&self.compiled)
    }

    pub fn to_source(&self) -> BundleSource {
        BundleSource {
            id: self.id.clone(),
            entry: self.entry.clone(),
            modules: (*self.modules).clone(),
        }
    }
}

/// Normalises a `/`-separated relative path: drops `.` and empty segments,
/// applies `..`; `None` if it escapes the root or is empty.
pub(crate) fn normalise(path: &str) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            s => out.push(s),
        }
    }
    if out.is_empty() {
        None
    } else {
        Some(out.join("/"))
    }
}

/// Resolves `specifier` imported by module `base` inside a bundle.
pub(crate) fn resolve(
    modules: &BTreeMap<String, String>,
    base: &str,
    specifier: &str,
) -> Result<String, String> {
    let joined = if specifier.starts_with("./") || specifier.starts_with("../") {
        match base.rfind('/') {
            Some(i) => format!("{}/{specifier}", &base[..i]),
            None => specifier.to_string(),
        }
    } else if let Some(rest) = specifier.strip_prefix('/') {
        rest.to_string()
    } else {
        return Err(format!(
            "import {specifier:?} from {base:?} is not allowed: only relative imports inside the bundle are"
        ));
    };
    let path = normalise(&joined)
        .ok_or_else(|| format!("import {specifier:?} from {base:?} leaves the bundle"))?;
    if modules.contains_key(&path) {
        Ok(path)
    } else {
        Err(format!(
            "import {specifier:?} from {base:?}: module {path:?} is not in the bundle"
        ))
    }
}

pub(crate) struct BundleResolver(pub Arc<BTreeMap<String, String>>);
pub(crate) struct BundleLoader {
    pub(crate) modules: Arc<BTreeMap<String, String>>,
    pub(crate) cache: BytecodeCache,
    pub(crate) keep: KeepAlive,
}

/// Declares module `name`: from the bundle's bytecode cache when another
/// isolate already compiled it, else from source (filling the cache).
pub(crate) fn declare_module<'js>(
    ctx: &Ctx<'js>,
    name: &str,
    source: &str,
    cache: &BytecodeCache,
    keep: &KeepAlive,
) -> rquickjs::Result<Module<'js, Declared>> {
    let cached = lock(cache).get(name).cloned();
    if let Some(bytes) = cached {
        lock(keep).push(Arc::clone(&bytes));
        #[allow(unsafe_code)]
        // SAFETY: the bytes were written by `Module::write` in this process,
        // by the same QuickJS build, from this bundle's source (below); they
        // never come from outside. QuickJS may keep pointing into them, so an
        // `Arc` is pushed to `keep`, which the isolate drops only after its
        // runtime.
        return unsafe { Module::load(ctx.clone(), &bytes) };
    }
    let module = Module::declare(ctx.clone(), name, source)?;
    if let Ok(bytes) = module.write(WriteOptions::default()) {
        lock(cache).insert(name.to_string(), Arc::new(bytes));
    }
    Ok(module)
}

impl Resolver for BundleResolver {
    fn resolve<'js>(
        &mut self,
        ctx: &Ctx<'js>,
        base: &str,
        name: &str,
        _attributes: Option<ImportAttributes<'js>>,
    ) -> rquickjs::Result<String> {
        resolve(&self.0, base, name)
            .map_err(|message| rquickjs::Exception::throw_reference(ctx, &message))
    }
}

impl Loader for BundleLoader {
    fn load<'js>(
        &mut self,
        ctx: &Ctx<'js>,
        name: &str,
        _attributes: Option<ImportAttributes<'js>>,
    ) -> rquickjs::Result<Module<'js, Declared>> {
        match self.modules.get(name) {
            Some(source) => declare_module(ctx, name, source, &self.cache, &self.keep),
            None => Err(rquickjs::Exception::throw_reference(
                ctx,
                &format!("module {name:?} is not in the bundle"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mods(paths: &[&str]) -> BTreeMap<String, String> {
        paths
            .iter()
            .map(|p| (p.to_string(), String::new()))
            .collect()
    }

    /// The placement hash follows the key: the same code and env hash the
    /// same in every process; another env, another hash.
    #[test]
    fn key_hash_follows_the_key() {
        let a = Bundle::single("d/f", "export default () => {}");
        let b = Bundle::single("d/f", "export default () => {}");
        assert_eq!(a.key_hash(), b.key_hash());
        assert_eq!(a.key_hash(), fnv1a(a.key().as_bytes()));
        let env: BTreeMap<String, String> = [("K".to_string(), "V".to_string())].into();
        let c = b.with_env(env);
        assert_ne!(c.key(), a.key());
        assert_eq!(c.key_hash(), fnv1a(c.key().as_bytes()));
        assert_ne!(c.key_hash(), a.key_hash());
        // FNV-1a's published value for "a".
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn normalise_paths() {
        assert_eq!(normalise("a/./b//c").as_deref(), Some("a/b/c"));
        assert_eq!(normalise("a/../b").as_deref(), Some("b"));
        assert_eq!(normalise("../a"), None);
        assert_eq!(normalise(""), None);
    }

    #[test]
    fn resolves_relative_imports_inside_the_map() {
        let m = mods(&["index.js", "lib/a.js", "lib/b.js", "c.js"]);
        assert_eq!(resolve(&m, "index.js", "./lib/a.js").unwrap(), "lib/a.js");
        assert_eq!(resolve(&m, "lib/a.js", "./b.js").unwrap(), "lib/b.js");
        assert_eq!(resolve(&m, "lib/a.js", "../c.js").unwrap(), "c.js");
        assert_eq!(resolve(&m, "lib/a.js", "/c.js").unwrap(), "c.js");
        assert!(resolve(&m, "index.js", "./missing.js").is_err());
        assert!(resolve(&m, "index.js", "../../etc/passwd").is_err());
        assert!(resolve(&m, "index.js", "npm:left-pad").is_err());
        assert!(resolve(&m, "index.js", "node:fs").is_err());
        assert!(resolve(&m, "index.js", "https://x.example/m.js").is_err());
        assert!(resolve(&m, "index.js", "lodash").is_err());
    }

    #[test]
    fn bundle_validation_and_keys() {
        let mut m = BTreeMap::new();
        m.insert("index.js".to_string(), "1".to_string());
        let a = Bundle::new(BundleSource {
            id: "d1".into(),
            entry: "index.js".into(),
            modules: m.clone(),
        })
        .unwrap();
        m.insert("index.js".to_string(), "2".to_string());
        let b = Bundle::new(BundleSource {
            id: "d1".into(),
            entry: "index.js".into(),
            modules: m.clone(),
        })
        .unwrap();
        assert_ne!(a.key(), b.key());
        assert!(Bundle::new(BundleSource {
            id: "d".into(),
            entry: "x.js".into(),
            modules: m.clone()
        })
        .is_err());
        m.insert("/abs.js".to_string(), String::new());
        assert!(matches!(
            Bundle::new(BundleSource {
                id: "d".into(),
                entry: "index.js".into(),
                modules: m
            }),
            Err(BundleError::BadPath(_))
        ));
    }
}
