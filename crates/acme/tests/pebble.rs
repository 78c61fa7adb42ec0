//! Issues real certificates from Debian's `pebble` ACME test server.
//!
//! Runs `pebble-challtestsrv` as the DNS server (every name → 127.0.0.1) and
//! `pebble` with a generated API certificate, on ephemeral ports; the test
//! answers HTTP-01 requests itself from a [`ChallengeStore`]. Fails (never
//! skips) when pebble is not installed.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ledge_acme::{AcmeConfig, AcmeError, ChallengeStore, Issuer};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PEBBLE: &str = "/usr/bin/pebble";
const CHALLTESTSRV: &str = "/usr/bin/pebble-challtestsrv";
/// Host the test's HTTP-01 responder refuses (404), to make a challenge fail.
const REFUSED_HOST: &str = "fail.example";

/// Kills and reaps the child processes when dropped.
struct Procs {
    children: Vec<(&'static str, Child)>,
    logs: Vec<PathBuf>,
}

impl Procs {
    fn logs(&self) -> String {
        self.logs
            .iter()
            .map(|p| {
                format!(
                    "--- {} ---\n{}",
                    p.display(),
                    std::fs::read_to_string(p).unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A port free for both TCP and UDP on 127.0.0.1 right now.
fn free_port() -> u16 {
    loop {
        let tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind tcp :0");
        let port = tcp.local_addr().expect("local addr").port();
        if UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
}

fn spawn(procs: &mut Procs, name: &'static str, cmd: &mut Command, dir: &Path) {
    let log = dir.join(format!("{name}.log"));
    let out = std::fs::File::create(&log).expect("log file");
    let err = out.try_clone().expect("log file clone");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    procs.children.push((name, child));
    procs.logs.push(log);
}

fn wait_for_tcp(procs: &mut Procs, port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        let exited = procs
            .children
            .iter_mut()
            .find_map(|(name, child)| Some((*name, child.try_wait().ok()??)));
        if let Some((name, status)) = exited {
            panic!("{name} exited with {status}\n{}", procs.logs());
        }
        assert!(
            Instant::now() < deadline,
            "{what} not listening on {port}\n{}",
            procs.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A CA and a certificate for pebble's HTTPS API (localhost, 127.0.0.1).
struct ApiCert {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn api_cert() -> ApiCert {
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ledge-acme test API CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let ca = rcgen::Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate().expect("api key");
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("api params");
    params
        .subject_alt_names
        .push(SanType::IpAddress(Ipv4Addr::LOCALHOST.into()));
    let cert = params.signed_by(&key, &ca).expect("api cert");
    ApiCert {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

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
    for bin in [PEBBLE, CHALLTESTSRV] {
        assert!(
            Path::new(bin).exists(),
            "{bin} is missing: this test needs Debian's pebble ACME test server \
             (`apt-get install pebble`)"
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let api = api_cert();
    std::fs::write(dir.path().join("cert.pem"), &api.cert_pem).expect("write cert");
    std::fs::write(dir.path().join("key.pem"), &api.key_pem).expect("write key");

    let store = ChallengeStore::new();
    let http_port = http01_responder(store.clone());
    let (api_port, mgmt_port, tls_port, dns_port, chall_mgmt_port) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let config = serde_json::json!({
        "pebble": {
            "listenAddress": format!("127.0.0.1:{api_port}"),
            "managementListenAddress": format!("127.0.0.1:{mgmt_port}"),
            "certificate": dir.path().join("cert.pem"),
            "privateKey": dir.path().join("key.pem"),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false
        }
    });
    let config_path = dir.path().join("pebble.json");
    std::fs::write(&config_path, config.to_string()).expect("write config");

    let mut procs = Procs {
        children: Vec::new(),
        logs: Vec::new(),
    };
    spawn(
        &mut procs,
        "pebble-challtestsrv",
        Command::new(CHALLTESTSRV).args([
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
            &format!("127.0.0.1:{chall_mgmt_port}"),
        ]),
        dir.path(),
    );
    wait_for_tcp(&mut procs, dns_port, "pebble-challtestsrv DNS");
    spawn(
        &mut procs,
        "pebble",
        Command::new(PEBBLE)
            .arg("-config")
            .arg(&config_path)
            .arg("-dnsserver")
            .arg(format!("127.0.0.1:{dns_port}"))
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0"),
        dir.path(),
    );
    wait_for_tcp(&mut procs, api_port, "pebble API");
    wait_for_tcp(&mut procs, mgmt_port, "pebble management");

    let acme = AcmeConfig {
        directory_url: format!("https://127.0.0.1:{api_port}/dir"),
        contact: Some("ops@test.example".into()),
        extra_root_pem: Some(api.ca_pem.clone()),
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
    let root_pem = https_get(mgmt_port, "/roots/0", &api.ca_pem).await;
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

    drop(procs);
}
