//! Issues real certificates from Debian's `pebble` ACME test server.
//!
//! Runs `pebble-challtestsrv` as the DNS server (every name → 127.0.0.1) and
//! `pebble` with a generated API certificate, on ephemeral ports; the test
//! answers HTTP-01 requests itself from a [`ChallengeStore`]. Fails (never
//! skips) when pebble is not installed.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ledge_acme::testing::Pebble;
use ledge_acme::{AcmeConfig, AcmeError, ChallengeStore, Issuer};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Host the test's HTTP-01 responder refuses (404), to make a challenge fail.
const REFUSED_HOST: &str = "fail.example";

/// Answers `GET /.well-known/acme-challenge/{token}` from `store`, except for
/// [`REFUSED_HOST`] (404).
fn http01_responder(store: ChallengeStore) -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind responder");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let store = store.clone();
            std::thread::spawn(move || answer(conn, &store));
        }
    });
    port
}

fn answer(mut conn: TcpStream, store: &ChallengeStore) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let Ok(clone) = conn.try_clone() else { return };
    let mut reader = BufReader::new(clone);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut host = String::new();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) if line == "\r\n" || line == "\n" => break,
            Ok(_) => {
                if let Some((name, value)) = line.split_once(':') {
                    if name.eq_ignore_ascii_case("host") {
                        host = value.trim().to_ascii_lowercase();
                    }
                }
            }
        }
    }
    let path = request_line.split(' ').nth(1).unwrap_or("");
    let host_name = host.split(':').next().unwrap_or("");
    let body = if host_name == REFUSED_HOST {
        None
    } else {
        store.response_for_path(path)
    };
    let response = match body {
        Some(body) => format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        ),
        None => "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_owned(),
    };
    let _ = conn.write_all(response.as_bytes());
}

/// GET over HTTPS to 127.0.0.1:`port`, trusting `ca_pem`; returns the body.
async fn https_get(port: u16, path: &str, ca_pem: &str) -> String {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).expect("ca pem"))
        .expect("add ca");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .await
        .expect("connect management");
    let name = ServerName::IpAddress(Ipv4Addr::LOCALHOST.into());
    let mut tls = connector
        .connect(name, tcp)
        .await
        .expect("tls to management");
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    // Go may close without close_notify; keep what was read.
    let _ = tls.read_to_end(&mut raw).await;
    let text = String::from_utf8(raw).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("http response");
    assert!(head.starts_with("HTTP/1.1 200"), "GET {path}: {head}");
    body.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issues_from_pebble() {
    let store = ChallengeStore::new();
    let http_port = http01_responder(store.clone());
    let pebble = Pebble::start(http_port);
    let procs = &pebble.procs;
    let mgmt_port = pebble.mgmt_port;
    let api_port = pebble
        .directory_url
        .trim_start_matches("https://127.0.0.1:")
        .trim_end_matches("/dir")
        .to_owned();

    let acme = AcmeConfig {
        directory_url: pebble.directory_url.clone(),
        contact: Some("ops@test.example".into()),
        extra_root_pem: Some(pebble.api_ca_pem.clone()),
    };
    let (issuer, credentials) = match Issuer::new(acme.clone(), None).await {
        Ok(made) => made,
        Err(e) => panic!("creating the account: {e}\n{}", procs.logs()),
    };
    assert!(credentials.contains("key_pkcs8"));

    // Issue for test.example and check the result.
    let issued = match issuer.issue("test.example", &store).await {
        Ok(issued) => issued,
        Err(e) => panic!("issuing test.example: {e}\n{}", procs.logs()),
    };
    assert!(store.is_empty(), "token withdrawn after success");
    assert!(!format!("{issued:?}").contains("PRIVATE KEY"));
    let validated = ledge_tls::validate(
        &issued.chain_pem,
        &issued.key_pem,
        "test.example",
        SystemTime::now(),
    )
    .unwrap_or_else(|e| panic!("pebble's chain does not validate: {e}"));
    assert_eq!(validated.names(), ["test.example"]);
    assert!(validated.chain().len() >= 2, "leaf and intermediate");
    assert!(issued.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));

    // The chain verifies up to pebble's issuing root (fetched from its management API).
    let root_pem = https_get(mgmt_port, "/roots/0", &pebble.api_ca_pem).await;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(root_pem.as_bytes()).expect("root pem"))
        .expect("add pebble root");
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .expect("verifier");
    let chain = validated.chain();
    rustls::client::danger::ServerCertVerifier::verify_server_cert(
        verifier.as_ref(),
        &chain[0],
        &chain[1..],
        &ServerName::try_from("test.example").expect("name"),
        &[],
        UnixTime::now(),
    )
    .unwrap_or_else(|e| panic!("chain does not verify to pebble's root: {e}"));

    // The stored credentials restore the same account.
    let (restored, again) = match Issuer::new(acme.clone(), Some(credentials.clone())).await {
        Ok(made) => made,
        Err(e) => panic!("restoring the account: {e}"),
    };
    assert_eq!(restored.account_id(), issuer.account_id());
    assert_eq!(again, credentials);
    let other_dir = AcmeConfig {
        directory_url: format!("https://127.0.0.1:{api_port}/other"),
        ..acme.clone()
    };
    assert!(matches!(
        Issuer::new(other_dir, Some(credentials)).await,
        Err(AcmeError::Credentials(_))
    ));

    // A challenge the responder refuses: a clear error, and the token is gone.
    let err = match restored.issue(REFUSED_HOST, &store).await {
        Ok(_) => panic!("issued for {REFUSED_HOST} although its challenge gets 404"),
        Err(e) => e,
    };
    let message = err.to_string();
    assert!(
        matches!(err, AcmeError::ChallengeFailed { .. }),
        "{err:?}\n{}",
        procs.logs()
    );
    assert!(message.contains("challenge"), "{message}");
    assert!(message.contains(REFUSED_HOST), "{message}");
    assert!(
        message.contains("404"),
        "the CA's detail is kept: {message}"
    );
    assert!(store.is_empty(), "token withdrawn after failure");
    eprintln!("failure reported as: {message}");

    drop(pebble);
}
