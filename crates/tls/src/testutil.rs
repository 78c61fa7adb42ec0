//! Test certificates made with rcgen: a root CA, an intermediate, and leaves.
//!
//! Shared by the unit tests and (through `#[path]`) the integration tests.

// Unit and integration tests each use a different part of it.
#![allow(dead_code)]

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

/// A chain and key in PEM, as a tenant would upload them.
pub struct Pems {
    /// Leaf first, then the intermediate.
    pub chain: String,
    /// The leaf's key (PKCS#8).
    pub key: String,
    /// The leaf alone.
    pub leaf: String,
}

/// A root CA and an intermediate it signed; leaves are signed by the intermediate.
pub struct TestCa {
    /// The root certificate, PEM (what a client trusts).
    pub root_pem: String,
    /// The root, DER.
    pub root_der: Vec<u8>,
    /// The intermediate certificate, PEM.
    pub intermediate_pem: String,
    intermediate: Issuer<'static, KeyPair>,
}

impl TestCa {
    /// A fresh root "Ledge Test Root" and intermediate "Ledge Test Intermediate".
    pub fn new() -> Self {
        let root_key = KeyPair::generate().unwrap();
        let root_params = ca_params("Ledge Test Root");
        let root = root_params.self_signed(&root_key).unwrap();
        let root_issuer = Issuer::new(root_params, root_key);

        let int_key = KeyPair::generate().unwrap();
        let int_params = ca_params("Ledge Test Intermediate");
        let int_cert = int_params.signed_by(&int_key, &root_issuer).unwrap();
        Self {
            root_pem: root.pem(),
            root_der: root.der().to_vec(),
            intermediate_pem: int_cert.pem(),
            intermediate: Issuer::new(int_params, int_key),
        }
    }

    /// A leaf for `names`, valid from 2020 to 2100, with a new key.
    pub fn leaf(&self, names: &[&str]) -> Pems {
        self.leaf_with(names, KeyPair::generate().unwrap(), (2020, 2100))
    }

    /// A leaf for `names`, with `key`, valid from 1 January of `years.0` to
    /// 1 January of `years.1`.
    pub fn leaf_with(&self, names: &[&str], key: KeyPair, years: (i32, i32)) -> Pems {
        self.leaf_params(names, key, years, |_| {})
    }

    /// A leaf whose extended key usage allows TLS clients only.
    pub fn leaf_client_only(&self, names: &[&str]) -> Pems {
        self.leaf_params(names, KeyPair::generate().unwrap(), (2020, 2100), |p| {
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        })
    }

    fn leaf_params(
        &self,
        names: &[&str],
        key: KeyPair,
        years: (i32, i32),
        adjust: impl FnOnce(&mut CertificateParams),
    ) -> Pems {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.not_before = date_time_ymd(years.0, 1, 1);
        params.not_after = date_time_ymd(years.1, 1, 1);
        adjust(&mut params);
        let cert = params.signed_by(&key, &self.intermediate).unwrap();
        Pems {
            chain: format!("{}{}", cert.pem(), self.intermediate_pem),
            key: key.serialize_pem(),
            leaf: cert.pem(),
        }
    }
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.not_before = date_time_ymd(2020, 1, 1);
    params.not_after = date_time_ymd(2100, 1, 1);
    params
}
