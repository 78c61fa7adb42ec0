//! The SQLite metadata store against a real database file.

use std::collections::BTreeMap;

use ledge_core::{Digest, Label, SiteName};
use ledge_store::*;

async fn store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("meta.db"))
        .await
        .unwrap();
    (dir, s)
}

fn files(pairs: &[(&str, &[u8])]) -> BTreeMap<String, Digest> {
    pairs
        .iter()
        .map(|(p, c)| (p.to_string(), Digest::of(c)))
        .collect()
}

fn new(files: BTreeMap<String, Digest>, prod: bool) -> NewDeploy {
    NewDeploy {
        files,
        prod,
        alias: None,
        message: None,
    }
}

#[tokio::test]
async fn required_is_per_site() {
    let (_d, s) = store().await;
    let a = SiteName::parse("a").unwrap();
    let b = SiteName::parse("b").unwrap();
    s.create_site(&a).await.unwrap();
    s.create_site(&b).await.unwrap();
    let f = files(&[("/index.html", b"hi"), ("/copy.html", b"hi")]);
    let d1 = s.create_deploy(&a, new(f.clone(), true)).await.unwrap();
    // Two paths, one digest: required once.
    assert_eq!(d1.missing, vec![Digest::of(b"hi")]);
    assert_eq!(
        s.blob_uploaded(&d1.id, &Digest::of(b"hi")).await.unwrap(),
        UploadOutcome::Complete
    );
    // Same site again: nothing to upload.
    let d2 = s.create_deploy(&a, new(f.clone(), true)).await.unwrap();
    assert!(d2.missing.is_empty());
    assert_eq!(d2.state, DeployState::Processing);
    // Another site must upload it itself.
    let d3 = s.create_deploy(&b, new(f, true)).await.unwrap();
    assert_eq!(d3.missing, vec![Digest::of(b"hi")]);
}

#[tokio::test]
async fn production_publishes_in_creation_order() {
    let (_d, s) = store().await;
    let site = SiteName::parse("blog").unwrap();
    s.create_site(&site).await.unwrap();
    let old = s
        .create_deploy(&site, new(files(&[("/a", b"1")]), true))
        .await
        .unwrap();
    let newer = s
        .create_deploy(&site, new(files(&[("/a", b"2")]), true))
        .await
        .unwrap();
    s.blob_uploaded(&newer.id, &Digest::of(b"2")).await.unwrap();
    let ev = s.finish_deploy(&newer.id, vec![]).await.unwrap();
    assert!(matches!(ev[0].kind, EventKind::Published { deploy } if deploy == newer.id));
    // The older one finishes late: ready, but not published.
    s.blob_uploaded(&old.id, &Digest::of(b"1")).await.unwrap();
    let ev = s.finish_deploy(&old.id, vec![]).await.unwrap();
    assert!(ev.is_empty());
    assert_eq!(s.get_site(&site).await.unwrap().published, Some(newer.id));
    assert_eq!(
        s.get_deploy(&old.id).await.unwrap().state,
        DeployState::Ready
    );

    // Rolling back with no target picks the previously published deploy; there is none yet.
    assert!(matches!(
        s.rollback(&site, None).await,
        Err(MetaError::Conflict(_))
    ));
    let (to, _) = s.rollback(&site, Some(&old.id)).await.unwrap();
    assert_eq!(to, old.id);
    let (back, _) = s.rollback(&site, None).await.unwrap();
    assert_eq!(back, newer.id);
}

#[tokio::test]
async fn locked_sites_do_not_auto_publish_and_aliases_move() {
    let (_d, s) = store().await;
    let site = SiteName::parse("blog").unwrap();
    s.create_site(&site).await.unwrap();
    s.set_locked(&site, true).await.unwrap();
    let mut n = new(files(&[("/a", b"1")]), true);
    n.alias = Some(Label::parse("staging").unwrap());
    let d = s.create_deploy(&site, n).await.unwrap();
    s.blob_uploaded(&d.id, &Digest::of(b"1")).await.unwrap();
    let ev = s.finish_deploy(&d.id, vec![]).await.unwrap();
    assert_eq!(ev.len(), 1);
    assert!(
        matches!(&ev[0].kind, EventKind::AliasUpdated { alias, .. } if alias.as_str() == "staging")
    );
    let (seq, routing) = s.routing_state().await.unwrap();
    assert_eq!(seq, ev[0].seq);
    assert_eq!(routing[0].published, None);
    assert_eq!(routing[0].aliases[0].1, d.id);
    let since = s.events_since(0, 100).await.unwrap();
    assert_eq!(since.last().unwrap().seq, seq);
}

#[tokio::test]
async fn domains_belong_to_one_site() {
    let (_d, s) = store().await;
    let a = SiteName::parse("a").unwrap();
    let b = SiteName::parse("b").unwrap();
    s.create_site(&a).await.unwrap();
    s.create_site(&b).await.unwrap();
    s.add_domain(&a, "example.com").await.unwrap();
    assert!(matches!(
        s.add_domain(&b, "example.com").await,
        Err(MetaError::Conflict(_))
    ));
    s.delete_site(&a).await.unwrap();
    s.add_domain(&b, "example.com").await.unwrap();
    assert_eq!(s.get_site(&b).await.unwrap().domains, vec!["example.com"]);
}

#[tokio::test]
async fn certificates_are_versioned_and_listed_without_keys() {
    let (_d, s) = store().await;
    let site = SiteName::parse("shop").unwrap();
    s.create_site(&site).await.unwrap();
    let mut cert = StoredCert {
        domain: "shop.example".into(),
        site: site.clone(),
        chain_pem: "-----BEGIN CERTIFICATE-----".into(),
        sealed_key: vec![1, 2, 3],
        not_after: 2_000_000_000,
        fingerprint: "ab".into(),
        source: "upload".into(),
        version: 0,
    };
    let ev = s.put_cert(&cert).await.unwrap();
    assert!(matches!(ev.kind, EventKind::CertChanged { ref domain } if domain == "shop.example"));
    cert.sealed_key = vec![4, 5, 6];
    s.put_cert(&cert).await.unwrap();
    let got = s.get_cert("shop.example").await.unwrap().unwrap();
    assert_eq!(got.version, 2);
    assert_eq!(got.sealed_key, vec![4, 5, 6]);
    assert!(
        !format!("{got:?}").contains("4, 5, 6"),
        "keys are redacted in Debug"
    );
    let listed = s.list_certs(&site).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].version, 2);
    assert!(s.get_cert("other.example").await.unwrap().is_none());
    // Deleting the site deletes its certificates.
    s.delete_site(&site).await.unwrap();
    assert!(s.get_cert("shop.example").await.unwrap().is_none());
}

#[tokio::test]
async fn domain_status_follows_the_domain() {
    let (_d, s) = store().await;
    let site = SiteName::parse("shop").unwrap();
    s.create_site(&site).await.unwrap();
    s.add_domain(&site, "shop.example").await.unwrap();
    let mut st = DomainStatus {
        domain: "shop.example".into(),
        state: "failed".into(),
        error: Some("challenge failed".into()),
        attempts: 1,
        next_try_at: Some(100),
    };
    s.set_domain_status(&st).await.unwrap();
    st.state = "issued".into();
    st.error = None;
    st.attempts = 0;
    s.set_domain_status(&st).await.unwrap();
    assert_eq!(s.domain_statuses(&site).await.unwrap(), vec![st.clone()]);
    // Unknown domains are ignored; removing the domain removes its status.
    st.domain = "other.example".into();
    s.set_domain_status(&st).await.unwrap();
    assert_eq!(s.domain_statuses(&site).await.unwrap().len(), 1);
    assert_eq!(
        s.all_domains().await.unwrap(),
        vec![(site.clone(), "shop.example".to_string())]
    );
    s.remove_domain(&site, "shop.example").await.unwrap();
    assert!(s.domain_statuses(&site).await.unwrap().is_empty());
}

#[tokio::test]
async fn purges_bump_generations_in_one_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.db");
    let s = SqliteStore::open(&path).await.unwrap();
    let site = SiteName::parse("shop").unwrap();
    s.create_site(&site).await.unwrap();
    let ev = s.purge(&site, &[]).await.unwrap();
    assert_eq!(
        ev.kind,
        EventKind::Purged {
            site_generation: Some(1),
            tags: vec![]
        }
    );
    // Tags are case-insensitive, deduplicated, and each has its own counter.
    let ev = s
        .purge(&site, &["Blog".into(), "blog".into(), "home ".into()])
        .await
        .unwrap();
    assert_eq!(
        ev.kind,
        EventKind::Purged {
            site_generation: None,
            tags: vec![("blog".into(), 1), ("home".into(), 1)]
        }
    );
    let ev2 = s.purge(&site, &["blog".into()]).await.unwrap();
    assert_eq!(ev2.seq, ev.seq + 1);
    assert!(s
        .purge(&SiteName::parse("nope").unwrap(), &[])
        .await
        .is_err());
    // The counters outlive the process (and the site).
    drop(s);
    let s = SqliteStore::open(&path).await.unwrap();
    s.delete_site(&site).await.unwrap();
    let mut g = s.purge_generations().await.unwrap();
    g.sort_by(|a, b| a.tag.cmp(&b.tag));
    let got: Vec<(Option<&str>, i64)> =
        g.iter().map(|p| (p.tag.as_deref(), p.generation)).collect();
    assert_eq!(got, vec![(None, 1), (Some("blog"), 2), (Some("home"), 1)]);
    assert!(g.iter().all(|p| p.site == "shop"));
    // The events are in the log for nodes that missed them.
    let evs = s.events_since(0, 100).await.unwrap();
    assert_eq!(
        evs.iter()
            .filter(|e| matches!(e.kind, EventKind::Purged { .. }))
            .count(),
        3
    );
}
