use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::KeyPair;

use super::*;
use crate::testutil::TestCa;

/// 2030-01-01, inside the test leaves' validity.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_893_456_000)
}

#[test]
fn accepts_a_good_chain_and_reports_its_facts() {
    let ca = TestCa::new();
    let pems = ca.leaf(&["www.example.com", "example.com"]);
    let cert = validate(&pems.chain, &pems.key, "WWW.Example.com.", now()).unwrap();
    assert_eq!(cert.names(), ["www.example.com", "example.com"]);
    assert_eq!(cert.chain().len(), 2);
    assert_eq!(cert.not_before(), 1_577_836_800); // 2020-01-01
    assert_eq!(cert.not_after(), 4_102_444_800); // 2100-01-01
    assert_eq!(cert.fingerprint().len(), 64);
    assert_eq!(cert.fingerprint(), fingerprint(&cert.chain()[0]));
    assert!(cert.issuer().contains("Ledge Test Intermediate"));
    let ck = cert.certified_key();
    assert!(ck.keys_match().is_ok());
}

#[test]
fn a_chain_of_one_is_fine() {
    let ca = TestCa::new();
    let pems = ca.leaf(&["example.com"]);
    assert!(validate(&pems.leaf, &pems.key, "example.com", now()).is_ok());
}

#[test]
fn wildcard_covers_one_label() {
    let ca = TestCa::new();
    let pems = ca.leaf(&["*.example.com"]);
    assert!(validate(&pems.chain, &pems.key, "shop.example.com", now()).is_ok());
    let err = validate(&pems.chain, &pems.key, "a.shop.example.com", now()).unwrap_err();
    assert!(matches!(err, CertError::NameMismatch { .. }), "{err}");
    let err = validate(&pems.chain, &pems.key, "example.com", now()).unwrap_err();
    assert!(matches!(err, CertError::NameMismatch { .. }), "{err}");
}

#[test]
fn name_mismatch_lists_names_and_hints() {
    let ca = TestCa::new();
    let pems = ca.leaf(&["other.org"]);
    let err = validate(&pems.chain, &pems.key, "www.example.com", now()).unwrap_err();
    assert_eq!(
        err,
        CertError::NameMismatch {
            domain: "www.example.com".into(),
            names: vec!["other.org".into()],
        }
    );
    let msg = err.to_string();
    assert!(
        msg.contains("other.org") && msg.contains("*.example.com"),
        "{msg}"
    );
}

#[test]
fn expired_and_not_yet_valid() {
    let ca = TestCa::new();
    let old = ca.leaf_with(&["example.com"], KeyPair::generate().unwrap(), (2020, 2021));
    let err = validate(&old.chain, &old.key, "example.com", now()).unwrap_err();
    assert_eq!(
        err,
        CertError::Expired {
            not_after: 1_609_459_200
        }
    );
    assert!(err.to_string().contains("renew"));

    let future = ca.leaf_with(&["example.com"], KeyPair::generate().unwrap(), (2040, 2050));
    let err = validate(&future.chain, &future.key, "example.com", now()).unwrap_err();
    assert!(matches!(err, CertError::NotYetValid { .. }), "{err}");
}

#[test]
fn wrong_key() {
    let ca = TestCa::new();
    let pems = ca.leaf(&["example.com"]);
    let other = KeyPair::generate().unwrap().serialize_pem();
    let err = validate(&pems.chain, &other, "example.com", now()).unwrap_err();
    assert_eq!(err, CertError::KeyMismatch);
}

#[test]
fn reversed_chain() {
    let ca = TestCa::new();
    let pems = ca.leaf(&["example.com"]);
    let reversed = format!("{}{}", ca.intermediate_pem, pems.leaf);
    let err = validate(&reversed, &pems.key, "example.com", now()).unwrap_err();
    assert_eq!(err, CertError::LeafNotFirst { index: 2 });
    assert!(err.to_string().contains("first"));
}

#[test]
fn chain_out_of_order() {
    let ca = TestCa::new();
    let pems = ca.leaf(&["example.com"]);
    // The intermediate is missing: the root does not issue the leaf.
    let skipped = format!("{}{}", pems.leaf, ca.root_pem);
    let err = validate(&skipped, &pems.key, "example.com", now()).unwrap_err();
    match &err {
        CertError::ChainOrder {
            index,
            issuer,
            next,
            next_subject,
        } => {
            assert_eq!((*index, *next), (1, 2));
            assert!(issuer.contains("Ledge Test Intermediate"));
            assert!(next_subject.contains("Ledge Test Root"));
        }
        other => panic!("unexpected {other:?}"),
    }
    // Leaf, intermediate, root is in order.
    let full = format!("{}{}", pems.chain, ca.root_pem);
    assert!(validate(&full, &pems.key, "example.com", now()).is_ok());
}

#[test]
fn unreadable_inputs() {
    let ca = TestCa::new();
    let pems = ca.leaf(&["example.com"]);
    assert_eq!(
        validate("hello", &pems.key, "example.com", now()).unwrap_err(),
        CertError::NoCertificate
    );
    assert_eq!(
        validate(&pems.chain, "", "example.com", now()).unwrap_err(),
        CertError::NoPrivateKey
    );
    // A key file holding only a certificate has no key either.
    assert_eq!(
        validate(&pems.chain, &pems.leaf, "example.com", now()).unwrap_err(),
        CertError::NoPrivateKey
    );
    let broken = "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n";
    assert!(matches!(
        validate(broken, &pems.key, "example.com", now()).unwrap_err(),
        CertError::ChainPem(_)
    ));
    let junk = "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n";
    assert!(matches!(
        validate(junk, &pems.key, "example.com", now()).unwrap_err(),
        CertError::BadCertificate { index: 1, .. }
    ));
    assert!(matches!(
        validate(&pems.chain, &pems.key, "exa mple.com", now()).unwrap_err(),
        CertError::InvalidDomain(_)
    ));
    let huge = "x".repeat(MAX_PEM_LEN + 1);
    assert!(matches!(
        validate(&huge, &pems.key, "example.com", now()).unwrap_err(),
        CertError::TooLarge { .. }
    ));
    let long = pems.leaf.repeat(MAX_CHAIN_LEN + 1);
    assert_eq!(
        validate(&long, &pems.key, "example.com", now()).unwrap_err(),
        CertError::ChainTooLong(MAX_CHAIN_LEN + 1)
    );
}

#[test]
fn rsa_pkcs1_and_ec_sec1_keys() {
    let ca = TestCa::new();
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");
    let read = |name: &str| std::fs::read_to_string(format!("{fixtures}{name}")).unwrap();
    for (pkcs8, other) in [
        ("rsa-pkcs8.pem", "rsa-pkcs1.pem"),
        ("ec-pkcs8.pem", "ec-sec1.pem"),
    ] {
        let key = KeyPair::from_pem(&read(pkcs8)).unwrap();
        let pems = ca.leaf_with(&["example.com"], key, (2020, 2100));
        validate(&pems.chain, &read(pkcs8), "example.com", now()).unwrap();
        let cert = validate(&pems.chain, &read(other), "example.com", now()).unwrap();
        assert!(cert.certified_key().keys_match().is_ok());
    }
}

#[test]
fn debug_never_shows_the_key() {
    let ca = TestCa::new();
    let pems = ca.leaf(&["example.com"]);
    let cert = validate(&pems.chain, &pems.key, "example.com", now()).unwrap();
    let shown = format!("{cert:?}");
    assert!(shown.contains("<redacted>"));
    assert!(!shown.contains("PRIVATE"));
}

#[test]
fn client_only_certificates_are_refused() {
    let ca = TestCa::new();
    let pems = ca.leaf_client_only(&["example.com"]);
    assert_eq!(
        validate(&pems.chain, &pems.key, "example.com", now()).unwrap_err(),
        CertError::NotForServers
    );
    let pems = ca.leaf(&["example.com"]);
    assert!(validate(&pems.chain, &pems.key, "example.com", now()).is_ok());
}
