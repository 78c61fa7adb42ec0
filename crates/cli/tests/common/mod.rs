//! Test harness: a real `ledge serve` process on ephemeral ports with its own
//! data folder, the real CLI, and plain HTTP clients.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_ledge");

/// A running node.
pub struct Node {
    pub child: Child,
    pub data: PathBuf,
    pub edge: SocketAddr,
    pub api: SocketAddr,
    /// The HTTPS listener, when started with `--tls-listen`.
    pub https: Option<SocketAddr>,
    pub token: String,
    _dir: Option<tempfile::TempDir>,
}

impl Node {
    /// Starts a node in a fresh data folder.
    pub fn start() -> Node {
        Node::start_with(&[])
    }

    /// Starts a node in a fresh data folder with extra flags.
    pub fn start_with(extra: &[&str]) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let mut n = Node::start_in(&data, extra);
        n._dir = Some(dir);
        n
    }

    /// Starts a node in a fresh data folder with `toml` as its configuration
    /// file, and extra flags.
    pub fn start_configured(toml: &str, extra: &[&str]) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("ledge.toml");
        std::fs::write(&cfg, toml).unwrap();
        let mut args = vec!["--config", cfg.to_str().unwrap()];
        args.extend_from_slice(extra);
        let mut n = Node::start_in(&dir.path().join("data"), &args);
        n._dir = Some(dir);
        n
    }

    /// Starts a node on `data` with extra flags.
    pub fn start_in(data: &Path, extra: &[&str]) -> Node {
        Node::start_in_env(data, extra, &[])
    }

    /// Starts a node in a fresh data folder with extra flags and
    /// environment variables.
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let mut n = Node::start_in_env(&dir.path().join("data"), extra, env);
        n._dir = Some(dir);
        n
    }

    /// Starts a node on `data` with extra flags and environment variables.
    pub fn start_in_env(data: &Path, extra: &[&str], env: &[(&str, &str)]) -> Node {
        let mut cmd = Command::new(BIN);
        cmd.envs(env.iter().copied());
        cmd.arg("serve");
        if !extra.contains(&"--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        let mut child = cmd
            .args(["--api-listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .args(extra)
            .env("LEDGE_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn ledge serve");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let (mut edge, mut api, mut https) = (None, None, None);
        while edge.is_none() || api.is_none() {
            let line = lines
                .next()
                .expect("ledge serve exited before listening")
                .unwrap();
            if let Some(a) = line.strip_prefix("ledge: edge listening on http://") {
                edge = Some(a.parse().unwrap());
            }
            if let Some(a) = line.strip_prefix("ledge: API listening on http://") {
                api = Some(a.parse().unwrap());
            }
            if let Some(a) = line.strip_prefix("ledge: HTTPS listening on https://") {
                https = Some(a.parse().unwrap());
            }
        }
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let token = std::fs::read_to_string(data.join("admin-token"))
            .unwrap()
            .trim()
            .to_owned();
        Node {
            child,
            data: data.to_path_buf(),
            edge: edge.unwrap(),
            api: api.unwrap(),
            https,
            token,
            _dir: None,
        }
    }

    /// Runs the CLI against this node with the admin token.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_as(&self.token, args)
    }

    /// Runs the CLI with `token`.
    pub fn cli_as(&self, token: &str, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env("LEDGE_API", format!("http://{}", self.api))
            .env("LEDGE_TOKEN", token)
            .output()
            .expect("run ledge")
    }

    /// Runs the CLI and insists it succeeds; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "ledge {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `ledge deploy DIR --site SITE --json EXTRA…` → the JSON it printed.
    pub fn deploy(&self, dir: &Path, site: &str, extra: &[&str]) -> serde_json::Value {
        let mut args = vec!["deploy", dir.to_str().unwrap(), "--site", site, "--json"];
        args.extend_from_slice(extra);
        let out = self.ok(&args);
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    /// An HTTP client for the API with the admin token.
    pub fn api_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.api)
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A response read from a raw socket.
#[derive(Debug)]
pub struct Raw {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Raw {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends exactly `request` on a new connection (Connection: close expected) and
/// parses the answer.
pub fn raw(addr: SocketAddr, request: &[u8]) -> Raw {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(request);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    parse_raw(&buf)
}

pub fn parse_raw(buf: &[u8]) -> Raw {
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(buf)));
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let body = &buf[end + 4..];
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    Raw {
        status,
        body: if chunked {
            dechunk(body)
        } else {
            body.to_vec()
        },
        headers,
    }
}

/// The data of a chunked body (panics on bad framing or a missing last chunk).
fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .unwrap_or_else(|| panic!("no chunk size line in {:?}", String::from_utf8_lossy(b)));
        let size = std::str::from_utf8(&b[..eol])
            .ok()
            .and_then(|l| usize::from_str_radix(l.split(';').next().unwrap_or("").trim(), 16).ok())
            .unwrap_or_else(|| panic!("bad chunk size in {:?}", String::from_utf8_lossy(b)));
        b = &b[eol + 2..];
        if size == 0 {
            return out;
        }
        assert!(
            b.len() >= size + 2 && &b[size..size + 2] == b"\r\n",
            "cut chunk"
        );
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

/// GET `path` on `host` with extra headers, over a fresh connection.
pub fn get(addr: SocketAddr, host: &str, path: &str, headers: &[(&str, &str)]) -> Raw {
    request(addr, "GET", host, path, headers)
}

pub fn request(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Raw {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    raw(addr, req.as_bytes())
}

/// Writes a site folder from (path, content) pairs.
pub fn site(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), files);
    dir
}

pub fn write_files(root: &Path, files: &[(&str, &str)]) {
    for (p, c) in files {
        let path = root.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, c).unwrap();
    }
}

/// Polls until `f` returns true (bounded).
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("timed out waiting for {what}");
}

/// The blocking HTTP client with the admin token.
pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A `ledge …` child whose stdout lines arrive on a channel.
pub struct Streaming {
    pub child: Child,
    pub lines: std::sync::mpsc::Receiver<String>,
}

impl Streaming {
    pub fn start(node: &Node, args: &[&str]) -> Streaming {
        let mut child = Command::new(BIN)
            .args(args)
            .env("LEDGE_API", format!("http://{}", node.api))
            .env("LEDGE_TOKEN", &node.token)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Streaming { child, lines }
    }

    /// Sends `probe` requests until one shows up on the stream (the
    /// subscription is then live); returns the lines read meanwhile.
    pub fn wait_live(&mut self, mut probe: impl FnMut()) -> Vec<String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            probe();
            if let Ok(first) = self.lines.recv_timeout(Duration::from_millis(250)) {
                let mut seen = vec![first];
                seen.extend(self.lines.try_iter());
                return seen;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let mut err = String::new();
                let _ = self.child.stderr.take().unwrap().read_to_string(&mut err);
                panic!("ledge logs exited early ({status}): {err}");
            }
        }
        panic!("the log stream never showed a record");
    }

    /// Reads lines until `done` says so (bounded).
    pub fn read_until(&self, mut done: impl FnMut(&[String]) -> bool) -> Vec<String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut got = Vec::new();
        while !done(&got) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => got.push(l),
                Err(_) => panic!("stream ended or timed out; got {got:#?}"),
            }
        }
        got
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn json_lines(lines: &[String]) -> Vec<serde_json::Value> {
    lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Writes a MaxMind database of `kind` (`GeoIP2-Country`, `GeoIP2-City`)
/// mapping 127.0.0.0/8 to `record` (a Python literal), with the
/// `mmdb-writer` package (installed by scripts/test.sh).
pub fn write_mmdb(path: &Path, kind: &str, record: &str) {
    let script = format!(
        "from mmdb_writer import MMDBWriter\n\
         from netaddr import IPSet\n\
         w = MMDBWriter(ip_version=4, database_type='{kind}')\n\
         w.insert_network(IPSet(['127.0.0.0/8']), {record})\n\
         w.to_db_file('{}')\n",
        path.display()
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3 is needed to write a test GeoIP database");
    assert!(
        out.status.success(),
        "writing the test .mmdb failed (pip install mmdb-writer): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The value of one sample of the node's metrics, named with its labels as
/// the text format writes them (`name{label="v"}`).
pub fn metric(node: &Node, sample: &str) -> u64 {
    let text = http()
        .get(node.api_url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let prefix = format!("{sample} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {sample} in {text}"))
}

/// `ledge_hot_answers_total` from the node's metrics.
pub fn hot_answers(node: &Node) -> u64 {
    metric(node, "ledge_hot_answers_total")
}

/// Reads one HTTP/1.1 request from `r`, for test origins: its first line
/// and its body (by `Content-Length`; none without one). A body cut short
/// comes back short.
pub fn read_request(r: &mut impl BufRead) -> (String, Vec<u8>) {
    let mut first = String::new();
    r.read_line(&mut first).unwrap_or(0);
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = Vec::with_capacity(len);
    let _ = r.take(len as u64).read_to_end(&mut body);
    (first, body)
}
