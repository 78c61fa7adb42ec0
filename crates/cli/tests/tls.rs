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

/// A node with an HTTPS listener whose operator certificate, from a new
/// CA, covers `*.edge.test` (the edge domain); `extra` flags and `env` are
/// added. Returns the CA, the node, its HTTPS address and its folder.
fn operator_node(
    extra: &[&str],
    env: &[(&str, &str)],
) -> (Ca, Node, SocketAddr, tempfile::TempDir) {
    let ca = Ca::new("Operator CA");
    let dir = tempfile::tempdir().unwrap();
    let (chain, key) = ca.leaf(&["*.edge.test"]);
    let c = write(dir.path(), "op.pem", &chain);
    let k = write(dir.path(), "op.key", &key);
    let mut args = vec![
        "--tls-listen",
        "127.0.0.1:0",
        "--tls-cert",
        &c,
        "--tls-key",
        &k,
        "--edge-domain",
        "edge.test",
    ];
    args.extend_from_slice(extra);
    let node = Node::start_in_env(&dir.path().join("data"), &args, env);
    let https = node.https.expect("the node printed its HTTPS address");
    (ca, node, https, dir)
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
    let (ca, node, https, _d) = operator_node(&[], &[]);
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

/// An HTTP/1.1 origin on a loopback port: answers `PATH BODY-LENGTH`, after
/// two seconds for paths under `/slow/`.
fn slow_origin() -> SocketAddr {
    use std::io::{BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            std::thread::spawn(move || {
                let (line, body) = read_request(&mut BufReader::new(stream.try_clone().unwrap()));
                let path = line.split(' ').nth(1).unwrap_or("").to_owned();
                let len = body.len();
                if path.starts_with("/slow/") {
                    std::thread::sleep(std::time::Duration::from_secs(2));
                }
                let answer = format!("{path} {len}");
                let mut w = stream;
                let _ = write!(
                    w,
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
            });
        }
    });
    addr
}

/// Streams of one h2 connection over TLS: many at once, each answer whole
/// and in its own stream; a stream that waits for an origin holds up none of
/// the others; request bodies reach the origin.
#[test]
fn h2_streams_share_one_connection() {
    let (ca, node, https, _d) = operator_node(&["--outbound-allow", "127.0.0.0/8"], &[]);
    let origin = slow_origin();
    node.ok(&["sites", "create", "many"]);
    // Sizes around h2's frame size (16 KiB) and initial window (64 KiB).
    let sizes = [0usize, 1, 1000, 16_384, 16_385, 65_535, 65_536, 300_000];
    let files: Vec<(String, String)> = sizes
        .iter()
        .map(|&n| {
            let text: String = (0..n).map(|i| char::from(b'a' + (i % 23) as u8)).collect();
            (format!("f{n}.txt"), text)
        })
        .collect();
    let mut listing: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    let redirects = format!("/origin/* http://{origin}/:splat 200\n");
    listing.push(("_redirects", &redirects));
    let s = site_dir(&listing);
    node.deploy(s.path(), "many", &["--prod"]);

    let client = reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .http2_prior_knowledge()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap())
        .resolve("many.edge.test", https)
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .unwrap();
    let base = format!("https://many.edge.test:{}", https.port());
    // The first request opens the connection the others share.
    let r = client.get(format!("{base}/f1.txt")).send().unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.text().unwrap(), "a");

    // A stream that waits two seconds for the origin...
    let slow = {
        let client = client.clone();
        let url = format!("{base}/origin/slow/x");
        std::thread::spawn(move || {
            let r = client.post(url).body(vec![b'z'; 70_000]).send().unwrap();
            (r.status(), r.text().unwrap(), std::time::Instant::now())
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(200));
    // ...while 8 threads ask for every file 5 times over, and a missing one.
    let fast_start = std::time::Instant::now();
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            let base = base.clone();
            let files = files.clone();
            std::thread::spawn(move || {
                for _ in 0..5 {
                    for (path, text) in &files {
                        let r = client.get(format!("{base}/{path}")).send().unwrap();
                        assert_eq!(r.status(), 200, "{path}");
                        let body = r.bytes().unwrap();
                        assert!(body == text.as_bytes(), "{path}: {} bytes", body.len());
                    }
                    let r = client.get(format!("{base}/missing")).send().unwrap();
                    assert_eq!(r.status(), 404);
                }
                std::time::Instant::now()
            })
        })
        .collect();
    let fast_done = workers
        .into_iter()
        .map(|w| w.join().unwrap())
        .max()
        .unwrap();
    let (status, text, slow_done) = slow.join().unwrap();
    assert_eq!((status.as_u16(), text.as_str()), (200, "/slow/x 70000"));
    assert!(
        fast_done < slow_done,
        "ready streams waited for the slow one ({:?} after they started)",
        fast_done - fast_start
    );
    // A body through a stream that does not wait.
    let r = client
        .post(format!("{base}/origin/quick"))
        .body(vec![b'y'; 200_000])
        .send()
        .unwrap();
    assert_eq!(r.text().unwrap(), "/quick 200000");
}

/// Status, headers (sorted, without the request id and `Date`) and body.
type Seen = (u16, Vec<(String, String)>, Vec<u8>);

fn seen(r: reqwest::blocking::Response) -> Seen {
    let status = r.status().as_u16();
    let mut headers: Vec<(String, String)> = r
        .headers()
        .iter()
        .filter(|(k, _)| *k != "x-ledge-id" && *k != "date")
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().to_owned()))
        .collect();
    headers.sort();
    (status, headers, r.bytes().unwrap().to_vec())
}

/// Over TLS, HTTP/1.1 and h2 keep answers too: the same answers as the
/// pipeline's, each protocol its own, and a settings change (HSTS) is seen
/// at once.
#[test]
fn tls_answers_are_kept_and_dropped_like_plain_ones() {
    let (ca, node, https, _d) = operator_node(&[], &[("TOKIO_WORKER_THREADS", "1")]);
    node.ok(&["sites", "create", "web"]);
    // 128 KiB: a file plain TCP would send with sendfile.
    let big = "0123456789abcdef".repeat(8 * 1024);
    let s = site_dir(&[
        ("index.html", "kept over TLS"),
        ("big.txt", &big),
        ("_redirects", "/old  /index.html  301\n"),
    ]);
    node.deploy(s.path(), "web", &["--prod"]);
    let client = |h1: bool| {
        let mut b = reqwest::blocking::Client::builder()
            .use_rustls_tls()
            .add_root_certificate(reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap())
            .resolve("web.edge.test", https)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(10));
        b = if h1 {
            b.http1_only()
        } else {
            b.http2_prior_knowledge()
        };
        b.build().unwrap()
    };
    let base = format!("https://web.edge.test:{}", https.port());
    let targets = ["/", "/big.txt", "/old"];
    for h1 in [true, false] {
        let client = client(h1);
        let before = hot_answers(&node);
        let firsts: Vec<Seen> = targets
            .iter()
            .map(|t| seen(client.get(format!("{base}{t}")).send().unwrap()))
            .collect();
        for _ in 0..3 {
            for (t, first) in targets.iter().zip(&firsts) {
                let again = seen(client.get(format!("{base}{t}")).send().unwrap());
                assert_eq!(&again, first, "{t} (HTTP/1.1: {h1})");
            }
        }
        assert_eq!(
            hot_answers(&node) - before,
            2 * targets.len() as u64,
            "HTTP/1.1: {h1}"
        );
        assert_eq!(firsts[0].2, b"kept over TLS");
        assert_eq!(firsts[1].2, big.as_bytes());
        assert_eq!(firsts[2].0, 301);
        // HSTS comes with the next answer after the setting changes.
        node.ok(&["sites", "set", "web", "https=redirect"]);
        let r = client.get(format!("{base}/")).send().unwrap();
        assert!(
            r.headers().contains_key("strict-transport-security"),
            "HTTP/1.1: {h1}"
        );
        node.ok(&["sites", "set", "web", "https=off"]);
        let r = client.get(format!("{base}/")).send().unwrap();
        assert!(
            !r.headers().contains_key("strict-transport-security"),
            "HTTP/1.1: {h1}"
        );
    }
    // Kept answers leave the access records the pipeline's answers left.
    let path = node.data.join("logs/access.log");
    for version in ["HTTP/1.1", "HTTP/2"] {
        let mut records: Vec<serde_json::Value> = Vec::new();
        eventually("the big.txt records", || {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let whole = text.rfind('\n').map_or("", |i| &text[..i]);
            records = whole
                .lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
                .filter(|v| v["path"] == "/big.txt" && v["http_version"] == version)
                .collect();
            records.len() >= 4
        });
        let strip = |r: &serde_json::Value| {
            let mut r = r.clone();
            for k in ["timestamp", "request_id", "duration", "time_to_first_byte"] {
                r.as_object_mut().unwrap().remove(k);
            }
            r
        };
        for r in &records[1..] {
            assert_eq!(strip(r), strip(&records[0]), "{version}");
        }
        assert_eq!(records[0]["tls_version"], "TLSv1.3", "{version}");
        assert_eq!(records[3]["response_size"], big.len(), "{version}");
    }
}
