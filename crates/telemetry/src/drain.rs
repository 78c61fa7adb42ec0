//! Where records go: drain specifications and their URL syntax.
//!
//! | syntax | sink |
//! |---|---|
//! | `file:///var/log/ledge/access.log?max_bytes=104857600&keep=5` or a plain absolute path | JSON lines appended to a file, rotated by size (`access.log.1` … `access.log.N`) |
//! | `stdout` or `stdout:` | JSON lines on standard output |
//! | `https://intake.example/path?their=params#format=json&exclude_pii` | batched, gzipped `POST`s; the URL (with its query) is used as is, Ledge's options go in the fragment, which is never sent |
//! | `nats://host:4222/subject.name?exclude_pii` | JetStream messages on `subject.name` (a stream must cover the subject), acknowledged: each holds up to 64 KiB of JSON lines; with `per_record`, one message per record |
//! | `kafka://host:9092,host2:9092/topic?exclude_pii` | batches produced to `topic` (gzip), partitions round-robin per batch |
//!
//! Options common to all: `exclude_pii` (or `exclude_pii=true`) leaves out
//! `client_ip` and `user_agent`. File: `max_bytes` (default 100 MiB),
//! `keep` (rotated files kept, default 5). HTTP: `format=ndjson` (default,
//! `application/x-ndjson`) or `format=json` (a JSON array per POST, as
//! Netlify's drains send). `http://` is accepted (for drains inside the
//! operator's network); the outbound policy still decides what is reachable.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Default size at which a log file is rotated.
pub const DEFAULT_MAX_BYTES: u64 = 100 * 1024 * 1024;
/// Default number of rotated files kept.
pub const DEFAULT_KEEP: usize = 5;

/// A parsed drain.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DrainSpec {
    /// Where to.
    pub target: DrainTarget,
    /// Leave out `client_ip` and `user_agent`.
    pub exclude_pii: bool,
}

/// The kind of sink and its address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DrainTarget {
    /// JSON lines to a rotating file.
    File {
        /// The live file; rotated ones get `.1`, `.2`, … appended.
        path: PathBuf,
        /// Rotate when the file would grow past this.
        max_bytes: u64,
        /// Rotated files kept.
        keep: usize,
    },
    /// JSON lines to standard output.
    Stdout,
    /// Batched HTTPS POSTs.
    Http {
        /// The intake URL (without the fragment).
        url: url::Url,
        /// Body format.
        format: HttpFormat,
    },
    /// NATS JetStream.
    Nats {
        /// `host:port` of the server.
        server: String,
        /// Subject the records are published on.
        subject: String,
        /// One message per record (without its newline) instead of
        /// messages of several JSON lines. Costs a publish and an
        /// acknowledgement per record.
        per_record: bool,
    },
    /// Kafka.
    Kafka {
        /// Bootstrap brokers, `host:port`.
        brokers: Vec<String>,
        /// Topic.
        topic: String,
    },
}

/// Body of an HTTP drain POST.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HttpFormat {
    /// One JSON object per line.
    #[default]
    Ndjson,
    /// One JSON array.
    Json,
}

impl DrainSpec {
    /// A rotating file with default limits.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self {
            target: DrainTarget::File {
                path: path.into(),
                max_bytes: DEFAULT_MAX_BYTES,
                keep: DEFAULT_KEEP,
            },
            exclude_pii: false,
        }
    }

    /// Standard output.
    pub fn stdout() -> Self {
        Self {
            target: DrainTarget::Stdout,
            exclude_pii: false,
        }
    }

    /// A short kind name (`file`, `stdout`, `http`, `nats`, `kafka`).
    pub fn kind(&self) -> &'static str {
        match self.target {
            DrainTarget::File { .. } => "file",
            DrainTarget::Stdout => "stdout",
            DrainTarget::Http { .. } => "http",
            DrainTarget::Nats { .. } => "nats",
            DrainTarget::Kafka { .. } => "kafka",
        }
    }

    /// Whether this drain reaches the network (so tenant-configured ones go
    /// through the outbound policy).
    pub fn is_remote(&self) -> bool {
        matches!(
            self.target,
            DrainTarget::Http { .. } | DrainTarget::Nats { .. } | DrainTarget::Kafka { .. }
        )
    }
}

/// A drain string that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid log drain {input:?}: {why}")]
pub struct DrainError {
    /// What was given.
    pub input: String,
    /// Why it was refused.
    pub why: String,
}

fn fail(input: &str, why: impl Into<String>) -> DrainError {
    DrainError {
        input: input.chars().take(200).collect(),
        why: why.into(),
    }
}

/// Longest drain string accepted.
pub const MAX_DRAIN_LEN: usize = 2048;

impl FromStr for DrainSpec {
    type Err = DrainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.len() > MAX_DRAIN_LEN {
            return Err(fail(s, format!("longer than {MAX_DRAIN_LEN} bytes")));
        }
        if s == "stdout" || s == "stdout:" {
            return Ok(Self::stdout());
        }
        if s.starts_with('/') {
            return Ok(Self::file(s));
        }
        for (scheme, default_port) in [("nats", 4222), ("kafka", 9092)] {
            if let Some(rest) = s.strip_prefix(scheme).and_then(|r| r.strip_prefix("://")) {
                return parse_broker(s, scheme, rest, default_port);
            }
        }
        let url = url::Url::parse(s).map_err(|e| fail(s, e.to_string()))?;
        match url.scheme() {
            "file" => {
                let path = url
                    .to_file_path()
                    .map_err(|_| fail(s, "not an absolute local path"))?;
                let mut spec = Self::file(path);
                let mut max_bytes = DEFAULT_MAX_BYTES;
                let mut keep = DEFAULT_KEEP;
                for (k, v) in url.query_pairs() {
                    match &*k {
                        "max_bytes" => {
                            max_bytes = v
                                .parse()
                                .ok()
                                .filter(|n| *n >= 1024)
                                .ok_or_else(|| fail(s, "max_bytes must be a number >= 1024"))?
                        }
                        "keep" => {
                            keep = v
                                .parse()
                                .ok()
                                .filter(|n| (1..=1000).contains(n))
                                .ok_or_else(|| fail(s, "keep must be 1..=1000"))?
                        }
                        "exclude_pii" => spec.exclude_pii = truthy(s, &v)?,
                        other => return Err(fail(s, format!("unknown option {other:?}"))),
                    }
                }
                if let DrainTarget::File {
                    max_bytes: m,
                    keep: k,
                    ..
                } = &mut spec.target
                {
                    *m = max_bytes;
                    *k = keep;
                }
                Ok(spec)
            }
            "http" | "https" => {
                if url.host_str().is_none_or(str::is_empty) {
                    return Err(fail(s, "no host"));
                }
                let mut exclude_pii = false;
                let mut format = HttpFormat::Ndjson;
                if let Some(frag) = url.fragment() {
                    for (k, v) in url::form_urlencoded::parse(frag.as_bytes()) {
                        match &*k {
                            "exclude_pii" => exclude_pii = truthy(s, &v)?,
                            "format" => {
                                format = match &*v {
                                    "ndjson" => HttpFormat::Ndjson,
                                    "json" => HttpFormat::Json,
                                    _ => return Err(fail(s, "format must be ndjson or json")),
                                }
                            }
                            other => return Err(fail(s, format!("unknown option {other:?}"))),
                        }
                    }
                }
                let mut url = url;
                url.set_fragment(None);
                Ok(Self {
                    target: DrainTarget::Http { url, format },
                    exclude_pii,
                })
            }
            other => Err(fail(
                s,
                format!("unsupported scheme {other:?} (use file, stdout, https, nats or kafka)"),
            )),
        }
    }
}

fn truthy(input: &str, v: &str) -> Result<bool, DrainError> {
    match v {
        "" | "1" | "true" | "yes" => Ok(true),
        "0" | "false" | "no" => Ok(false),
        _ => Err(fail(input, format!("{v:?} is not true or false"))),
    }
}

/// `nats://host:port/subject?opts` and `kafka://h1:p1,h2:p2/topic?opts`,
/// parsed by hand: a list of brokers is not a URL authority.
fn parse_broker(
    s: &str,
    scheme: &str,
    rest: &str,
    default_port: u16,
) -> Result<DrainSpec, DrainError> {
    if rest.contains('#') {
        return Err(fail(s, "no fragment allowed"));
    }
    let (main, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, name) = main
        .split_once('/')
        .ok_or_else(|| fail(s, "no subject or topic"))?;
    if authority.contains('@') {
        return Err(fail(
            s,
            "credentials in NATS/Kafka drain URLs are not supported",
        ));
    }
    let mut exclude_pii = false;
    let mut per_record = false;
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "exclude_pii" => exclude_pii = truthy(s, &v)?,
            "per_record" if scheme == "nats" => per_record = truthy(s, &v)?,
            other => return Err(fail(s, format!("unknown option {other:?}"))),
        }
    }
    let mut hosts = Vec::new();
    for h in authority.split(',') {
        hosts.push(host_port(s, h, default_port)?);
    }
    if scheme == "nats" {
        if hosts.len() != 1 {
            return Err(fail(s, "a NATS drain names one server"));
        }
        if !valid_subject(name) {
            return Err(fail(s, "not a valid NATS subject (no spaces or wildcards)"));
        }
        Ok(DrainSpec {
            target: DrainTarget::Nats {
                server: hosts.remove(0),
                subject: name.to_owned(),
                per_record,
            },
            exclude_pii,
        })
    } else {
        if !valid_topic(name) {
            return Err(fail(s, "a Kafka topic is 1-249 of [a-zA-Z0-9._-]"));
        }
        Ok(DrainSpec {
            target: DrainTarget::Kafka {
                brokers: hosts,
                topic: name.to_owned(),
            },
            exclude_pii,
        })
    }
}

fn host_port(input: &str, h: &str, default_port: u16) -> Result<String, DrainError> {
    if h.is_empty() {
        return Err(fail(input, "no host"));
    }
    // `[v6]:port`, `[v6]`, `host:port`, `host`.
    let (host, port) = if let Some(rest) = h.strip_prefix('[') {
        let (v6, after) = rest
            .split_once(']')
            .ok_or_else(|| fail(input, "unclosed ["))?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| fail(input, "bad port"))?,
            None if after.is_empty() => default_port,
            None => return Err(fail(input, "bad port")),
        };
        (format!("[{v6}]"), port)
    } else {
        match h.rsplit_once(':') {
            Some((host, p)) => (
                host.to_owned(),
                p.parse().map_err(|_| fail(input, "bad port"))?,
            ),
            None => (h.to_owned(), default_port),
        }
    };
    let valid = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b));
    if !valid || port == 0 {
        return Err(fail(input, "bad host or port"));
    }
    Ok(format!("{host}:{port}"))
}

fn valid_subject(s: &str) -> bool {
    s.len() <= 255
        && s.split('.').all(|t| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b > b' ' && b != b'*' && b != b'>' && b < 0x7f)
        })
}

fn valid_topic(s: &str) -> bool {
    (1..=249).contains(&s.len())
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

impl fmt::Display for DrainSpec {
    /// The drain in the syntax it parses from (round-trips).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pii = self.exclude_pii;
        match &self.target {
            DrainTarget::Stdout => write!(f, "stdout"),
            DrainTarget::File {
                path,
                max_bytes,
                keep,
            } => {
                // A relative path (possible through the API, not the
                // parser) has no file URL: show it as is.
                let Ok(mut u) = url::Url::from_file_path(path) else {
                    return write!(f, "{}", path.display());
                };
                u.query_pairs_mut()
                    .append_pair("max_bytes", &max_bytes.to_string())
                    .append_pair("keep", &keep.to_string());
                if pii {
                    u.query_pairs_mut().append_pair("exclude_pii", "true");
                }
                write!(f, "{u}")
            }
            DrainTarget::Http { url, format } => {
                let mut opts = Vec::new();
                if *format == HttpFormat::Json {
                    opts.push("format=json");
                }
                if pii {
                    opts.push("exclude_pii=true");
                }
                if opts.is_empty() {
                    write!(f, "{url}")
                } else {
                    write!(f, "{url}#{}", opts.join("&"))
                }
            }
            DrainTarget::Nats {
                server,
                subject,
                per_record,
            } => {
                write!(f, "nats://{server}/{subject}")?;
                let mut opts = Vec::new();
                if pii {
                    opts.push("exclude_pii=true");
                }
                if *per_record {
                    opts.push("per_record=true");
                }
                if !opts.is_empty() {
                    write!(f, "?{}", opts.join("&"))?;
                }
                Ok(())
            }
            DrainTarget::Kafka { brokers, topic } => {
                write!(f, "kafka://{}/{topic}", brokers.join(","))?;
                if pii {
                    write!(f, "?exclude_pii=true")?;
                }
                Ok(())
            }
        }
    }
}

/// Parses a list of drain strings (as stored in a site's `log_drains`
/// setting), stopping at the first invalid one.
pub fn parse_drains<S: AsRef<str>>(list: &[S]) -> Result<Vec<DrainSpec>, DrainError> {
    list.iter().map(|s| s.as_ref().parse()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_syntax_and_round_trips() {
        let cases = [
            "stdout",
            "file:///var/log/ledge/access.log?max_bytes=2048&keep=3",
            "https://intake.example/v1/logs?ddtags=env:prod",
            "https://intake.example/v1/logs#format=json&exclude_pii=true",
            "nats://127.0.0.1:4222/ledge.logs.blog",
            "nats://nats.internal:4222/logs?exclude_pii=true",
            "nats://nats.internal:4222/logs?per_record",
            "nats://nats.internal:4222/logs?exclude_pii&per_record=true",
            "kafka://k1:9092,k2:9093/ledge-logs",
            "kafka://[::1]:9092/logs",
        ];
        for c in cases {
            let spec: DrainSpec = c.parse().unwrap_or_else(|e| panic!("{c}: {e}"));
            let again: DrainSpec = spec.to_string().parse().unwrap();
            assert_eq!(again, spec, "{c}");
        }
        assert_eq!(DrainSpec::file("logs/a.log").to_string(), "logs/a.log");
        let f: DrainSpec = "/var/log/a.log".parse().unwrap();
        assert_eq!(f, DrainSpec::file("/var/log/a.log"));
        let h: DrainSpec = "https://x.example/in?a=1#exclude_pii".parse().unwrap();
        assert!(h.exclude_pii);
        assert!(
            matches!(&h.target, DrainTarget::Http { url, format: HttpFormat::Ndjson }
            if url.as_str() == "https://x.example/in?a=1")
        );
        let k: DrainSpec = "kafka://k1,k2:19092/t".parse().unwrap();
        assert_eq!(
            k.target,
            DrainTarget::Kafka {
                brokers: vec!["k1:9092".into(), "k2:19092".into()],
                topic: "t".into()
            }
        );
        let n: DrainSpec = "nats://n/a.b".parse().unwrap();
        assert_eq!(
            n.target,
            DrainTarget::Nats {
                server: "n:4222".into(),
                subject: "a.b".into(),
                per_record: false,
            }
        );
        let n: DrainSpec = "nats://n/a.b?per_record".parse().unwrap();
        assert!(matches!(
            n.target,
            DrainTarget::Nats {
                per_record: true,
                ..
            }
        ));
    }

    #[test]
    fn refuses_bad_drains() {
        for bad in [
            "",
            "ftp://x/y",
            "relative/path",
            "https://",
            "https://x.example/#format=xml",
            "https://x.example/#bogus=1",
            "nats://h:4222/",
            "kafka://h:9092/t?per_record",
            "nats://h:4222/a.*",
            "nats://a:1,b:2/s",
            "nats://h:99999/s",
            "nats://user:pw@h/s",
            "kafka://h/bad topic",
            "kafka://h/a/b",
            "kafka://h/t?unknown=1",
            "file:///x?keep=0",
            "file:///x?max_bytes=10",
        ] {
            assert!(bad.parse::<DrainSpec>().is_err(), "{bad:?} was accepted");
        }
        assert!("x".repeat(3000).parse::<DrainSpec>().is_err());
        assert!(parse_drains(&["stdout", "nope"]).is_err());
        assert_eq!(
            parse_drains(&["stdout"]).unwrap(),
            vec![DrainSpec::stdout()]
        );
    }
}
