//! Test support (feature `testing`): runs Debian's `pebble` ACME server and
//! `pebble-challtestsrv` (as DNS: every name → 127.0.0.1) on ephemeral ports,
//! for the integration tests of this crate and of the node. Panics with a
//! clear message (never skips) when pebble is missing or does not start.
#![allow(clippy::missing_panics_doc)]

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};

const PEBBLE: &str = "/usr/bin/pebble";
const CHALLTESTSRV: &str = "/usr/bin/pebble-challtestsrv";

/// Kills and reaps the child processes when dropped.
pub struct Procs {
    children: Vec<(&'static str, Child)>,
    logs: Vec<PathBuf>,
}

impl Procs {
    /// The servers' logs, for failure messages.
    pub fn logs(&self) -> String {
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
pub fn free_port() -> u16 {
    let [port] = free_ports();
    port
}

/// `N` different ports, each free for both TCP and UDP on 127.0.0.1 right
/// now. All are held until all are chosen, so the system cannot hand out
/// the same port twice (separate [`free_port`] calls can).
pub fn free_ports<const N: usize>() -> [u16; N] {
    let mut held = Vec::with_capacity(N);
    std::array::from_fn(|_| loop {
        let tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind tcp :0");
        let port = tcp.local_addr().expect("local addr").port();
        if let Ok(udp) = UdpSocket::bind((Ipv4Addr::LOCALHOST, port)) {
            held.push((tcp, udp));
            return port;
        }
    })
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
pub struct ApiCert {
    /// The CA to trust for pebble's API.
    pub ca_pem: String,
    /// The API certificate.
    pub cert_pem: String,
    /// Its key.
    pub key_pem: String,
}

/// A fresh CA and API certificate for `localhost` / 127.0.0.1.
pub fn api_cert() -> ApiCert {
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

/// A running pebble with its DNS server.
pub struct Pebble {
    /// The ACME directory URL.
    pub directory_url: String,
    /// The root to trust for the ACME and management APIs.
    pub api_ca_pem: String,
    /// The management API port (`/roots/0` is the issuing root).
    pub mgmt_port: u16,
    /// The processes (killed on drop) and their logs.
    pub procs: Procs,
    _dir: tempfile::TempDir,
}

impl Pebble {
    /// Starts pebble validating HTTP-01 challenges on 127.0.0.1:`http_port`.
    pub fn start(http_port: u16) -> Pebble {
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
        let [api_port, mgmt_port, tls_port, dns_port, chall_mgmt_port] = free_ports();
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
                // No artificial validation delay, no nonce rejections, and
                // every order really validated (no authorization reuse).
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_WFE_NONCEREJECT", "0")
                .env("PEBBLE_AUTHZREUSE", "0"),
            dir.path(),
        );
        wait_for_tcp(&mut procs, api_port, "pebble API");
        wait_for_tcp(&mut procs, mgmt_port, "pebble management");
        Pebble {
            directory_url: format!("https://127.0.0.1:{api_port}/dir"),
            api_ca_pem: api.ca_pem,
            mgmt_port,
            procs,
            _dir: dir,
        }
    }
}
