//! End to end over loopback: a listener reads each ClientHello with
//! `LazyConfigAcceptor`, asks the `CertResolver`, and finishes the handshake
//! with its `server_config` (or its `refusing_config`); a rustls client that
//! trusts the test CA checks what it got.

#[path = "../src/testutil.rs"]
mod testutil;

use std::sync::Arc;

use ledge_tls::{CertResolver, MemCertSource, NodeKey, StoredCert};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, HandshakeKind, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{LazyConfigAcceptor, TlsConnector};

use testutil::{Pems, TestCa};

/// Accepts connections until the test ends; each answers with the SNI name it saw.
async fn serve(listener: TcpListener, resolver: Arc<CertResolver>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        let resolver = resolver.clone();
        tokio::spawn(async move {
            let acceptor = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp);
            let Ok(start) = acceptor.await else {
                return;
            };
            let sni = start.client_hello().server_name().map(str::to_owned);
            let config = match resolver.resolve(sni.as_deref()).await {
                Some(key) => resolver.server_config(key),
                None => resolver.refusing_config(),
            };
            let Ok(mut tls) = start.into_stream(config).await else {
                return;
            };
            let reply = sni.unwrap_or_else(|| "-".into());
            let _ = tls.write_all(reply.as_bytes()).await;
            let _ = tls.shutdown().await;
        });
    }
}

fn client(ca: &TestCa, alpn: &[&[u8]]) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca.root_der.clone()))
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

struct Connected {
    leaf: CertificateDer<'static>,
    alpn: Option<Vec<u8>>,
    kind: Option<HandshakeKind>,
    reply: String,
}

async fn connect(
    connector: &TlsConnector,
    addr: std::net::SocketAddr,
    name: &str,
) -> std::io::Result<Connected> {
    let tcp = TcpStream::connect(addr).await?;
    let server_name = ServerName::try_from(name.to_owned()).unwrap();
    let mut tls = connector.connect(server_name, tcp).await?;
    let (_, conn) = tls.get_ref();
    let leaf = conn.peer_certificates().unwrap()[0].clone();
    let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
    let kind = conn.handshake_kind();
    let mut reply = String::new();
    tls.read_to_string(&mut reply).await?;
    Ok(Connected {
        leaf,
        alpn,
        kind,
        reply,
    })
}

fn leaf_der(pems: &Pems) -> CertificateDer<'static> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pems.leaf.as_bytes()).unwrap()
}

#[tokio::test]
async fn sni_picks_the_certificate_and_alpn_picks_h2() {
    let ca = TestCa::new();
    let node_key = Arc::new(NodeKey::generate().unwrap());
    let source = Arc::new(MemCertSource::new());
    let a = ca.leaf(&["a.example.com"]);
    let b = ca.leaf(&["*.example.org"]);
    for (name, pems) in [("a.example.com", &a), ("shop.example.org", &b)] {
        source.insert(
            name,
            StoredCert {
                chain_pem: pems.chain.clone(),
                sealed_key: node_key.seal(pems.key.as_bytes()),
                version: 1,
            },
        );
    }
    let resolver = Arc::new(CertResolver::new(source, node_key).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(serve(listener, resolver));

    let h2 = client(&ca, &[b"h2", b"http/1.1"]);
    let got = connect(&h2, addr, "a.example.com").await.unwrap();
    assert_eq!(got.leaf, leaf_der(&a));
    assert_eq!(got.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(got.reply, "a.example.com");

    let got = connect(&h2, addr, "shop.example.org").await.unwrap();
    assert_eq!(got.leaf, leaf_der(&b));
    assert_eq!(got.alpn.as_deref(), Some(&b"h2"[..]));

    // A second connection to the same name resumes the session.
    let got = connect(&h2, addr, "a.example.com").await.unwrap();
    assert_eq!(got.kind, Some(HandshakeKind::Resumed));
    assert_eq!(got.leaf, leaf_der(&a));

    // A client that speaks only HTTP/1.1 gets it.
    let h1 = client(&ca, &[b"http/1.1"]);
    let got = connect(&h1, addr, "a.example.com").await.unwrap();
    assert_eq!(got.alpn.as_deref(), Some(&b"http/1.1"[..]));

    // An unknown name fails the handshake: no other tenant's certificate.
    let err = connect(&h2, addr, "unknown.example.com")
        .await
        .err()
        .expect("handshake for an unknown name must fail");
    let msg = err.to_string().to_lowercase();
    assert!(msg.contains("access") || msg.contains("alert"), "{msg}");

    server.abort();
}

#[tokio::test]
async fn no_sni_gets_the_default_only_when_one_is_set() {
    use rustls::pki_types::pem::PemObject;

    let ca = TestCa::new();
    let node_key = Arc::new(NodeKey::generate().unwrap());
    let resolver = Arc::new(CertResolver::new(Arc::new(MemCertSource::new()), node_key).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(serve(listener, resolver.clone()));
    let connector = client(&ca, &[b"h2"]);

    // Connecting by IP address sends no SNI.
    assert!(connect(&connector, addr, "127.0.0.1").await.is_err());

    let ip = ca.leaf(&["127.0.0.1"]);
    let chain = CertificateDer::pem_slice_iter(ip.chain.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(ip.key.as_bytes()).unwrap();
    let provider = rustls::crypto::ring::default_provider();
    let default = rustls::sign::CertifiedKey::from_der(chain, key, &provider).unwrap();
    resolver.set_default(Some(Arc::new(default)));

    let got = connect(&connector, addr, "127.0.0.1").await.unwrap();
    assert_eq!(got.leaf, leaf_der(&ip));
    assert_eq!(got.reply, "-");

    server.abort();
}
