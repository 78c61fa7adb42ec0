//! The origin client end to end: WebSocket upgrades through a proxy rule,
//! dead origins under load, and TLS to origins signed by an operator CA.

mod common;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use base64::Engine;
use common::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

const H: &str = "proxy.localhost";

fn deploy_redirects(node: &Node, redirects: &str) -> tempfile::TempDir {
    node.ok(&["sites", "create", "proxy"]);
    let dir = site(&[("index.html", "home"), ("_redirects", redirects)]);
    let d = node.deploy(dir.path(), "proxy", &["--prod"]);
    assert_eq!(d["state"], "ready", "{d}");
    dir
}

/// Reads an HTTP head (through the blank line).
fn read_head(r: &mut impl BufRead) -> String {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            return head;
        }
        head.push_str(&line);
    }
}

/// RFC 6455 §4.2.2: the accept value for a key.
fn accept_for(key: &str) -> String {
    let mut input = key.as_bytes().to_vec();
    input.extend_from_slice(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &input);
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// One WebSocket frame: (opcode byte, payload), unmasked.
fn read_frame(r: &mut impl Read) -> Option<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    r.read_exact(&mut h).ok()?;
    let masked = h[1] & 0x80 != 0;
    let mut len = u64::from(h[1] & 0x7f);
    if len == 126 {
        let mut b = [0u8; 2];
        r.read_exact(&mut b).ok()?;
        len = u64::from(u16::from_be_bytes(b));
    } else if len == 127 {
        let mut b = [0u8; 8];
        r.read_exact(&mut b).ok()?;
        len = u64::from_be_bytes(b);
    }
    let mut mask = [0u8; 4];
    if masked {
        r.read_exact(&mut mask).ok()?;
    }
    let mut payload = vec![0u8; usize::try_from(len).ok()?];
    r.read_exact(&mut payload).ok()?;
    if masked {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
    }
    Some((h[0], payload))
}

fn frame(op: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut out = vec![
        op,
        payload.len() as u8 | if mask.is_some() { 0x80 } else { 0 },
    ];
    match mask {
        Some(m) => {
            out.extend_from_slice(&m);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ m[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A WebSocket echo origin: checks the handshake it receives, echoes every
/// data frame, answers a close with a close.
fn ws_origin() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in l.incoming() {
            let Ok(mut s) = stream else { return };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(s.try_clone().unwrap());
                let head = read_head(&mut reader);
                let lower = head.to_lowercase();
                let key = lower
                    .lines()
                    .find_map(|l| l.strip_prefix("sec-websocket-key:"))
                    .map(str::trim)
                    .map(str::to_owned);
                let ok = lower.starts_with("get /socket?room=1 ")
                    && lower.contains("upgrade: websocket")
                    && lower.contains("connection: upgrade")
                    && lower.contains("via: 1.1 ledge");
                let (Some(_), true) = (&key, ok) else {
                    let _ = s.write_all(
                        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 11\r\n\r\nbad upgrade",
                    );
                    return;
                };
                // The key is case-sensitive: take it from the original head.
                let key = head
                    .lines()
                    .find_map(|l| {
                        l.split_once(':')
                            .filter(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-key"))
                            .map(|(_, v)| v.trim().to_owned())
                    })
                    .unwrap_or_default();
                write!(
                    s,
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\nX-Origin: ws\r\n\r\n",
                    accept_for(&key)
                )
                .unwrap();
                while let Some((op, payload)) = read_frame(&mut reader) {
                    if op & 0x0f == 0x8 {
                        let _ = s.write_all(&frame(0x88, &payload, None));
                        return;
                    }
                    let mut echoed = b"echo: ".to_vec();
                    echoed.extend_from_slice(&payload);
                    if s.write_all(&frame(op, &echoed, None)).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn websocket_upgrades_pass_through_a_proxy_rule() {
    let upstream = ws_origin();
    let node = Node::start_with(&["--outbound-allow", "127.0.0.0/8"]);
    let _site = deploy_redirects(&node, &format!("/chat  http://{upstream}/socket  200\n"));

    let mut s = TcpStream::connect(node.edge).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /chat?room=1 HTTP/1.1\r\nHost: {H}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let head = read_head(&mut reader);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let lower = head.to_lowercase();
    // The RFC 6455 example key and its accept value, computed by the origin.
    assert!(
        head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "origin's accept value reaches the client: {head}"
    );
    assert!(lower.contains("upgrade: websocket"), "{head}");
    assert!(lower.contains("connection: upgrade"), "{head}");
    assert!(lower.contains("x-origin: ws"), "{head}");

    // Frames flow both ways, several times, byte for byte.
    for msg in ["hello", "ledge", "a third message"] {
        s.write_all(&frame(0x81, msg.as_bytes(), Some([1, 2, 3, 4])))
            .unwrap();
        let (op, payload) = read_frame(&mut reader).expect("an echoed frame");
        assert_eq!(op, 0x81);
        assert_eq!(payload, format!("echo: {msg}").as_bytes());
    }
    s.write_all(&frame(0x88, &[0x03, 0xe8], Some([9, 9, 9, 9])))
        .unwrap();
    let (op, _) = read_frame(&mut reader).expect("a close frame");
    assert_eq!(op, 0x88);

    // An origin that refuses the upgrade answers like any proxied request.
    let mut s = TcpStream::connect(node.edge).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /chat HTTP/1.1\r\nHost: {H}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(s);
    let head = read_head(&mut reader);
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");

    // The node still serves plain requests.
    assert_eq!(get(node.edge, H, "/", &[]).text(), "home");
}

#[test]
fn a_dead_origin_fails_fast_and_does_not_hold_the_node() {
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let node = Node::start_with(&["--outbound-allow", "127.0.0.0/8"]);
    let _site = deploy_redirects(&node, &format!("/dead/*  http://{closed}/:splat  200\n"));
    // The first requests try to connect (and retry once); after repeated
    // failures the origin is answered for at once during a cooldown.
    let mut texts = Vec::new();
    for i in 0..6 {
        let r = get(node.edge, H, &format!("/dead/{i}"), &[]);
        assert_eq!(r.status, 502, "{}", r.text());
        texts.push(r.text());
    }
    assert!(
        texts.iter().any(|t| t.contains("failed repeatedly")),
        "passive health marks the origin down: {texts:?}"
    );
    // Many at once: every one answered with a 502, none left hanging.
    let edge = node.edge;
    let handles: Vec<_> = (0..100)
        .map(|i| std::thread::spawn(move || get(edge, H, &format!("/dead/c{i}"), &[]).status))
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), 502);
    }
    assert_eq!(get(node.edge, H, "/", &[]).text(), "home");
}

struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new() -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Origin test CA");
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    fn leaf(&self, name: &str) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec![name.to_owned()]).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// Kills the child on drop.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn tls_origins_signed_by_an_operator_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let (chain, key) = ca.leaf("127.0.0.1");
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_owned()
    };
    let (cert_file, key_file, ca_file) = (
        write("leaf.pem", &chain),
        write("leaf.key", &key),
        write("ca.pem", &ca.pem),
    );
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // A real TLS origin: openssl's test server answers GET with a status page.
    let _origin = Child(
        std::process::Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept"])
            .arg(port.to_string())
            .args(["-cert", &cert_file, "-key", &key_file])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("openssl is installed by scripts/test.sh"),
    );
    eventually("openssl s_server listening", || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let rule = format!("/tls  https://127.0.0.1:{port}/  200\n");

    // Without the CA the origin's certificate is not trusted.
    let plain = Node::start_with(&["--outbound-allow", "127.0.0.0/8"]);
    let _a = deploy_redirects(&plain, &rule);
    let r = get(plain.edge, H, "/tls", &[]);
    assert_eq!(r.status, 502, "{}", r.text());

    // With it, the request goes through.
    let trusting = Node::start_with(&["--outbound-allow", "127.0.0.0/8", "--origin-ca", &ca_file]);
    let _b = deploy_redirects(&trusting, &rule);
    let r = get(trusting.edge, H, "/tls", &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("s_server"), "{}", r.text());

    // A file that holds no certificate is a clear startup error.
    let bad = write("bad.pem", "not a certificate");
    let out = std::process::Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--api-listen",
            "127.0.0.1:0",
        ])
        .args(["--data", dir.path().join("d").to_str().unwrap()])
        .args(["--origin-ca", &bad])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("origin CA"), "{err}");
}
