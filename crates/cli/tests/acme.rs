//! Automatic certificates against Debian's real `pebble` ACME server: a custom
//! domain gets a certificate with no manual step, then serves HTTPS with it.

mod common;
use std::time::Duration;

use common::*;
use ledge_acme::testing::{free_port, Pebble};

#[test]
fn custom_domain_gets_a_certificate_from_acme() {
    let dir = tempfile::tempdir().unwrap();
    // pebble validates HTTP-01 on the node's edge port.
    let edge_port = free_port();
    let pebble = Pebble::start(edge_port);
    let api_ca = dir.path().join("pebble-api-ca.pem");
    std::fs::write(&api_ca, &pebble.api_ca_pem).unwrap();
    let pebble_api = reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(pebble.api_ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let directory = pebble.directory_url.clone();
    let mgmt_port = pebble.mgmt_port;

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
            api_ca.to_str().unwrap(),
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
