use std::sync::Arc;

use super::*;
use crate::source::MemCertSource;
use crate::testutil::{Pems, TestCa};

struct Fixture {
    ca: TestCa,
    source: Arc<MemCertSource>,
    node_key: Arc<NodeKey>,
}

impl Fixture {
    fn new() -> Self {
        Self {
            ca: TestCa::new(),
            source: Arc::new(MemCertSource::new()),
            node_key: Arc::new(NodeKey::generate().unwrap()),
        }
    }

    fn store(&self, name: &str, pems: &Pems, version: u64) {
        self.source.insert(
            name,
            StoredCert {
                chain_pem: pems.chain.clone(),
                sealed_key: self.node_key.seal(pems.key.as_bytes()),
                version,
            },
        );
    }

    fn resolver(&self) -> CertResolver {
        CertResolver::new(self.source.clone(), self.node_key.clone()).unwrap()
    }

    fn certified(&self, names: &[&str]) -> Arc<CertifiedKey> {
        let pems = self.ca.leaf(names);
        let chain = validate::parse_chain(&pems.chain).unwrap();
        let key = validate::load_key(validate::parse_key(&pems.key).unwrap()).unwrap();
        Arc::new(CertifiedKey::new(chain, key))
    }
}

fn leaf_fp(key: &CertifiedKey) -> String {
    fingerprint(&key.cert[0])
}

fn pems_fp(pems: &Pems) -> String {
    fingerprint(&validate::parse_chain(&pems.leaf).unwrap()[0])
}

#[tokio::test]
async fn picks_each_domains_certificate_and_caches_it() {
    let f = Fixture::new();
    let a = f.ca.leaf(&["a.example.com"]);
    let b = f.ca.leaf(&["shop.example.org", "example.org"]);
    f.store("a.example.com", &a, 1);
    f.store("shop.example.org", &b, 1);
    f.store("example.org", &b, 1);
    let r = f.resolver();

    let got = r.resolve(Some("A.Example.com.")).await.unwrap();
    assert_eq!(leaf_fp(&got), pems_fp(&a));
    let got = r.resolve(Some("shop.example.org")).await.unwrap();
    assert_eq!(leaf_fp(&got), pems_fp(&b));
    let got = r.resolve(Some("example.org")).await.unwrap();
    assert_eq!(leaf_fp(&got), pems_fp(&b));
    assert_eq!(f.source.lookups(), 3);

    // Served from the cache from now on.
    r.resolve(Some("a.example.com")).await.unwrap();
    r.resolve(Some("shop.example.org")).await.unwrap();
    assert_eq!(f.source.lookups(), 3);
}

#[tokio::test]
async fn unknown_names_get_nothing_and_are_remembered() {
    let f = Fixture::new();
    f.store("a.example.com", &f.ca.leaf(&["a.example.com"]), 1);
    let r = f.resolver();
    assert!(r.resolve(Some("b.example.com")).await.is_none());
    assert!(r.resolve(Some("b.example.com")).await.is_none());
    assert_eq!(f.source.lookups(), 1);
    assert!(r.resolve(Some("not a name")).await.is_none());
    assert!(r.resolve(Some("*.example.com")).await.is_none());

    // Added later: visible after invalidate.
    f.store("b.example.com", &f.ca.leaf(&["b.example.com"]), 1);
    assert!(r.resolve(Some("b.example.com")).await.is_none());
    r.invalidate("B.example.com.");
    assert!(r.resolve(Some("b.example.com")).await.is_some());
}

#[tokio::test]
async fn exact_names_win_over_the_edge_wildcard() {
    let f = Fixture::new();
    let wildcard = f.certified(&["*.edge.test"]);
    let own = f.ca.leaf(&["blog.edge.test"]);
    f.store("blog.edge.test", &own, 1);
    let r = f
        .resolver()
        .with_edge_wildcard("Edge.Test.", wildcard.clone());

    let got = r.resolve(Some("blog.edge.test")).await.unwrap();
    assert_eq!(leaf_fp(&got), pems_fp(&own));
    let got = r.resolve(Some("shop.edge.test")).await.unwrap();
    assert!(Arc::ptr_eq(&got, &wildcard));
    let got = r.resolve(Some("deploy--shop.edge.test")).await.unwrap();
    assert!(Arc::ptr_eq(&got, &wildcard));
    // Only one label under the edge domain, and not the edge domain itself.
    assert!(r.resolve(Some("a.shop.edge.test")).await.is_none());
    assert!(r.resolve(Some("edge.test")).await.is_none());
    assert!(r.resolve(Some("xedge.test")).await.is_none());
}

#[tokio::test]
async fn default_only_without_sni_and_only_when_set() {
    let f = Fixture::new();
    let r = f.resolver();
    assert!(r.resolve(None).await.is_none());
    let default = f.certified(&["node.example.net"]);
    r.set_default(Some(default.clone()));
    assert!(Arc::ptr_eq(&r.resolve(None).await.unwrap(), &default));
    // A name that was sent never falls back to the default.
    assert!(r.resolve(Some("unknown.example.com")).await.is_none());
}

#[tokio::test]
async fn replaced_certificate_is_used_after_invalidate() {
    let f = Fixture::new();
    let old = f.ca.leaf(&["www.example.com"]);
    f.store("www.example.com", &old, 1);
    let r = f.resolver();
    let got = r.resolve(Some("www.example.com")).await.unwrap();
    assert_eq!(leaf_fp(&got), pems_fp(&old));

    let new = f.ca.leaf(&["www.example.com"]);
    f.store("www.example.com", &new, 2);
    let got = r.resolve(Some("www.example.com")).await.unwrap();
    assert_eq!(leaf_fp(&got), pems_fp(&old), "cached until invalidated");
    r.invalidate("www.example.com");
    let got = r.resolve(Some("www.example.com")).await.unwrap();
    assert_eq!(leaf_fp(&got), pems_fp(&new));

    // Removed: gone after invalidate.
    f.source.remove("www.example.com");
    r.invalidate("www.example.com");
    assert!(r.resolve(Some("www.example.com")).await.is_none());
}

#[tokio::test]
async fn a_stored_certificate_for_another_name_is_not_served() {
    let f = Fixture::new();
    // A store bug: the row for a.example.com holds another tenant's certificate.
    f.store(
        "a.example.com",
        &f.ca.leaf(&["other-tenant.example.org"]),
        1,
    );
    // A row whose key is sealed with another node key.
    let b = f.ca.leaf(&["b.example.com"]);
    f.source.insert(
        "b.example.com",
        StoredCert {
            chain_pem: b.chain.clone(),
            sealed_key: NodeKey::generate().unwrap().seal(b.key.as_bytes()),
            version: 1,
        },
    );
    // A row whose key belongs to another certificate.
    let c = f.ca.leaf(&["c.example.com"]);
    let other = f.ca.leaf(&["c.example.com"]);
    f.source.insert(
        "c.example.com",
        StoredCert {
            chain_pem: c.chain.clone(),
            sealed_key: f.node_key.seal(other.key.as_bytes()),
            version: 1,
        },
    );
    let r = f.resolver();
    for name in ["a.example.com", "b.example.com", "c.example.com"] {
        assert!(r.resolve(Some(name)).await.is_none(), "{name}");
    }
}

#[tokio::test]
async fn source_failures_are_not_remembered() {
    let f = Fixture::new();
    f.store("a.example.com", &f.ca.leaf(&["a.example.com"]), 1);
    let r = f.resolver();
    f.source.set_failing(true);
    assert!(r.resolve(Some("a.example.com")).await.is_none());
    f.source.set_failing(false);
    assert!(r.resolve(Some("a.example.com")).await.is_some());
}

#[tokio::test]
async fn concurrent_misses_load_once() {
    let f = Fixture::new();
    f.store("a.example.com", &f.ca.leaf(&["a.example.com"]), 1);
    let r = Arc::new(f.resolver());
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let r = r.clone();
            tokio::spawn(async move { r.resolve(Some("a.example.com")).await.is_some() })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap());
    }
    assert_eq!(f.source.lookups(), 1);
}

#[tokio::test]
async fn server_configs_are_cached_per_chain_and_share_resumption() {
    let f = Fixture::new();
    let r = f.resolver();
    let a = f.certified(&["a.example.com"]);
    let b = f.certified(&["b.example.com"]);
    let ca = r.server_config(a.clone());
    let cb = r.server_config(b);
    assert!(Arc::ptr_eq(&ca, &r.server_config(a.clone())));
    // The same chain in a new Arc (reloaded after invalidate) shares the config.
    let a2 = Arc::new(CertifiedKey::new(a.cert.clone(), a.key.clone()));
    assert!(Arc::ptr_eq(&ca, &r.server_config(a2)));
    assert!(!Arc::ptr_eq(&ca, &cb));
    assert_eq!(
        ca.alpn_protocols,
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    );
    assert!(Arc::ptr_eq(&ca.session_storage, &cb.session_storage));
    assert!(Arc::ptr_eq(&ca.ticketer, &cb.ticketer));
}

#[tokio::test]
async fn edge_names_keep_the_wildcard_while_the_source_fails() {
    let f = Fixture::new();
    let wildcard = f.certified(&["*.edge.test"]);
    let r = f
        .resolver()
        .with_edge_wildcard("edge.test", wildcard.clone());
    f.source.set_failing(true);
    let got = r.resolve(Some("blog.edge.test")).await.unwrap();
    assert!(Arc::ptr_eq(&got, &wildcard));
    assert!(r.resolve(Some("www.example.com")).await.is_none());
    // Not cached: once the source is back, the tenant's own certificate wins.
    let own = f.ca.leaf(&["blog.edge.test"]);
    f.store("blog.edge.test", &own, 1);
    f.source.set_failing(false);
    let got = r.resolve(Some("blog.edge.test")).await.unwrap();
    assert_eq!(leaf_fp(&got), pems_fp(&own));
}
