//! Automatic certificates against Debian's real `pebble` ACME server: a custom
//! domain gets a certificate with no manual step, then serves HTTPS with it.

mod common;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use rcgen::{CertificateParams, KeyPair, SanType};

/// Child processes killed on drop.
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn(cmd: &mut Command) -> Child {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?} ({e}): apt-get install pebble"))
}

#[test]
fn custom_domain_gets_a_certificate_from_acme() {
    let dir = tempfile::tempdir().unwrap();
    // Pebble's own HTTPS API certificate.
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let api_cert = params.self_signed(&key).unwrap();
    let api_cert_path = dir.path().join("pebble-api.pem");
    std::fs::write(&api_cert_path, api_cert.pem()).unwrap();
    std::fs::write(dir.path().join("pebble-api.key"), key.serialize_pem()).unwrap();

    let (acme_port, mgmt_port, dns_port, dns_mgmt, edge_port, tls_alpn) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let config = serde_json::json!({"pebble": {
        "listenAddress": format!("127.0.0.1:{acme_port}"),
        "managementListenAddress": format!("127.0.0.1:{mgmt_port}"),
        "certificate": api_cert_path,
        "privateKey": dir.path().join("pebble-api.key"),
        "httpPort": edge_port,
        "tlsPort": tls_alpn,
        "ocspResponderURL": "",
        "externalAccountBindingRequired": false
    }});
    let config_path = dir.path().join("pebble.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let mut procs = Procs(Vec::new());
    procs
        .0
        .push(spawn(Command::new("pebble-challtestsrv").args([
            "-defaultIPv4",
            "127.0.0.1",
            "-defaultIPv6",
            "",
            "-dns01",
            &format!("127.0.0.1:{dns_port}"),
            "-http01",
            "",
            "-https01",
            "",
            "-tlsalpn01",
            "",
            "-management",
            &format!("127.0.0.1:{dns_mgmt}"),
        ])));
    procs.0.push(spawn(
        Command::new("pebble")
            .arg("-config")
            .arg(&config_path)
            .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0"),
    ));
    let pebble_api = reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(api_cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let directory = format!("https://127.0.0.1:{acme_port}/dir");
    eventually("pebble is up", || pebble_api.get(&directory).send().is_ok());

    let listen = format!("127.0.0.1:{edge_port}");
    let node = Node::start_in(
        &dir.path().join("data"),
        &[
            "--listen",
            &listen,
            "--tls-listen",
            "127.0.0.1:0",
            "--acme-directory",
            &directory,
            "--acme-root",
            api_cert_path.to_str().unwrap(),
        ],
    );
    node.ok(&["sites", "create", "auto"]);
    let s = site(&[("index.html", "issued automatically")]);
    node.deploy(s.path(), "auto", &["--prod"]);
    node.ok(&["domains", "add", "auto.example", "--site", "auto"]);

    // No manual step: the status turns `issued` and the certificate is listed.
    let mut last = String::new();
    for _ in 0..240 {
        last = node.ok(&["sites", "get", "auto"]);
        if last.contains("\"issued\"") {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        last.contains("\"issued\""),
        "no certificate was issued: {last}"
    );
    assert!(node
        .ok(&["certs", "list", "--site", "auto"])
        .contains("acme"));

    // HTTPS with it, trusting pebble's issuing root.
    let root = pebble_api
        .get(format!("https://127.0.0.1:{mgmt_port}/roots/0"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let https = node.https.unwrap();
    let client = reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(root.as_bytes()).unwrap())
        .resolve("auto.example", https)
        .build()
        .unwrap();
    let body = client
        .get(format!("https://auto.example:{}/", https.port()))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(body, "issued automatically");
}

#[test]
fn node_serves_while_its_acme_server_is_down() {
    let node = Node::start_with(&["--acme-directory", "https://127.0.0.1:1/dir"]);
    node.ok(&["sites", "create", "up"]);
    let s = site(&[("index.html", "still serving")]);
    node.deploy(s.path(), "up", &["--prod"]);
    node.ok(&["domains", "add", "up.example", "--site", "up"]);
    assert_eq!(
        get(node.edge, "up.example", "/", &[]).text(),
        "still serving"
    );
    // Challenges nobody asked for are not answered.
    let r = get(
        node.edge,
        "up.example",
        "/.well-known/acme-challenge/nope",
        &[],
    );
    assert_eq!(r.status, 404);
}
