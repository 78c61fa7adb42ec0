//! HTTPS end to end: SNI picks each domain's certificate, h2 by ALPN,
//! rotation without restart, unknown names refused, 421 across sites, the
//! operator's certificate for edge names and for clients without SNI.

mod common;
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use common::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// A test CA that signs leaves directly.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// (chain PEM, key PEM) for `names`.
    fn leaf(&self, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_owned()
}

/// Starts a node with an HTTPS listener; returns it and the HTTPS address.
fn tls_node(extra: &[&str]) -> (Node, SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["--tls-listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let node = Node::start_in(&dir.path().join("data"), &args);
    let https = node.https.expect("the node printed its HTTPS address");
    (node, https, dir)
}

fn client(ca_pem: &str, host: &str, addr: SocketAddr) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .resolve(host, addr)
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap()
}

fn fetch(
    ca: &str,
    host: &str,
    https: SocketAddr,
) -> Result<(reqwest::Version, String), reqwest::Error> {
    let r = client(ca, host, https)
        .get(format!("https://{host}:{}/", https.port()))
        .send()?;
    let v = r.version();
    Ok((v, r.text()?))
}

#[test]
fn sni_rotation_unknown_names_and_misdirected_requests() {
    let (node, https, dir) = tls_node(&[]);
    let ca = Ca::new("Test CA one");
    for (site, domain) in [("alpha", "a.example"), ("beta", "b.example")] {
        node.ok(&["sites", "create", site]);
        let content = site.repeat(2);
        let s = site_dir(&[("index.html", &content)]);
        node.deploy(s.path(), site, &["--prod"]);
        node.ok(&["domains", "add", domain, "--site", site]);
        let (chain, key) = ca.leaf(&[domain]);
        let c = write(dir.path(), &format!("{domain}.pem"), &chain);
        let k = write(dir.path(), &format!("{domain}.key"), &key);
        node.ok(&[
            "certs", "add", "--site", site, "--domain", domain, "--cert", &c, "--key", &k,
        ]);
    }
    // Each name gets its own certificate, over h2.
    let (v, body) = fetch(&ca.pem, "a.example", https).unwrap();
    assert_eq!((v, body.as_str()), (reqwest::Version::HTTP_2, "alphaalpha"));
    assert_eq!(fetch(&ca.pem, "b.example", https).unwrap().1, "betabeta");
    // A name with no certificate gets a handshake failure, not someone else's.
    node.ok(&["sites", "create", "gamma"]);
    node.ok(&["domains", "add", "c.example", "--site", "gamma"]);
    assert!(fetch(&ca.pem, "c.example", https).is_err());
    assert!(fetch(&ca.pem, "unknown.example", https).is_err());
    // Host of another site than the SNI name → 421 (HTTP/1.1, where Host is
    // independent of the URL).
    let h1 = reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .http1_only()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap())
        .resolve("a.example", https)
        .build()
        .unwrap();
    let r = h1
        .get(format!("https://a.example:{}/", https.port()))
        .header("host", "b.example")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 421);

    // Rotation: a certificate from another CA is used for new handshakes at once.
    let ca2 = Ca::new("Test CA two");
    assert!(fetch(&ca2.pem, "a.example", https).is_err());
    let (chain, key) = ca2.leaf(&["a.example"]);
    let c = write(dir.path(), "a2.pem", &chain);
    let k = write(dir.path(), "a2.key", &key);
    node.ok(&[
        "certs",
        "add",
        "--site",
        "alpha",
        "--domain",
        "a.example",
        "--cert",
        &c,
        "--key",
        &k,
    ]);
    // No restart, and no wait: the API answered after the edge forgot the old one.
    assert!(fetch(&ca2.pem, "a.example", https).is_ok());
    let listed = node.ok(&["certs", "list", "--site", "alpha"]);
    assert!(listed.contains("a.example"), "{listed}");

    // Uploads are validated: wrong name, mismatched key, a domain of another site.
    let (other_chain, _) = ca.leaf(&["x.example"]);
    let (_, other_key) = ca.leaf(&["b.example"]);
    let wrong_name = write(dir.path(), "wrong.pem", &other_chain);
    let wrong_key = write(dir.path(), "wrong.key", &other_key);
    let out = node.cli(&[
        "certs",
        "add",
        "--site",
        "beta",
        "--domain",
        "b.example",
        "--cert",
        &wrong_name,
        "--key",
        &k,
    ]);
    assert!(!out.status.success());
    let (b_chain, _) = ca.leaf(&["b.example"]);
    let b_chain = write(dir.path(), "b2.pem", &b_chain);
    let out = node.cli(&[
        "certs",
        "add",
        "--site",
        "beta",
        "--domain",
        "b.example",
        "--cert",
        &b_chain,
        "--key",
        &wrong_key,
    ]);
    assert!(
        !out.status.success(),
        "a key that does not match is refused"
    );
    let out = node.cli(&[
        "certs",
        "add",
        "--site",
        "beta",
        "--domain",
        "a.example",
        "--cert",
        &c,
        "--key",
        &k,
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a domain of site"));
    // The private key is stored sealed: it never appears in the database.
    let db = std::fs::read(node.data.join("meta.db")).unwrap();
    let needle = key.lines().nth(1).unwrap().as_bytes();
    assert!(
        !db.windows(needle.len()).any(|w| w == needle),
        "private key stored in clear"
    );
}

#[test]
fn operator_certificate_for_edge_names_and_no_sni() {
    let ca = Ca::new("Operator CA");
    let dir = tempfile::tempdir().unwrap();
    let (chain, key) = ca.leaf(&["*.edge.test"]);
    let c = write(dir.path(), "op.pem", &chain);
    let k = write(dir.path(), "op.key", &key);
    let (node, https, _d) = tls_node(&[
        "--tls-cert",
        &c,
        "--tls-key",
        &k,
        "--edge-domain",
        "edge.test",
    ]);
    node.ok(&["sites", "create", "web"]);
    let big = "0123456789abcdef".repeat(20_000);
    let s = site_dir(&[("index.html", "edge name"), ("big.txt", &big)]);
    node.deploy(s.path(), "web", &["--prod"]);
    assert_eq!(
        fetch(&ca.pem, "web.edge.test", https).unwrap().1,
        "edge name"
    );
    // A file large enough for sendfile on plain TCP goes through TLS whole,
    // over HTTP/1.1 and h2.
    for h1 in [true, false] {
        let mut b = reqwest::blocking::Client::builder()
            .use_rustls_tls()
            .add_root_certificate(reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap())
            .resolve("web.edge.test", https)
            .timeout(std::time::Duration::from_secs(10));
        if h1 {
            b = b.http1_only();
        }
        let r = b
            .build()
            .unwrap()
            .get(format!("https://web.edge.test:{}/big.txt", https.port()))
            .send()
            .unwrap();
        let want = if h1 {
            reqwest::Version::HTTP_11
        } else {
            reqwest::Version::HTTP_2
        };
        assert_eq!(r.version(), want);
        assert!(r.text().unwrap() == big, "big.txt differs (h1: {h1})");
    }
    // A name under the edge domain with no site still gets no other tenant's
    // certificate; with the operator wildcard it gets the platform one.
    assert!(fetch(&ca.pem, "nosite.edge.test", https).is_ok());
    // No SNI (connecting by IP): the operator's default certificate.
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &https.to_string(), "-noservername"])
        .stdin(Stdio::null())
        .output()
        .expect("openssl is installed");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("*.edge.test"), "{text}");
}

#[test]
fn without_an_operator_certificate_no_sni_is_refused() {
    let (_node, https, _d) = tls_node(&[]);
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &https.to_string(), "-noservername"])
        .stdin(Stdio::null())
        .output()
        .expect("openssl is installed");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("BEGIN CERTIFICATE"), "{text}");
}

fn site_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    site(files)
}
