//! `ledge serve` configuration, in three layers: `ledge.toml`, then `LEDGE_*`
//! environment variables, then flags (later layers win). The merged result is
//! validated into a [`ServeConfig`] before anything starts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use ledge_core::Cidr;
use serde::Deserialize;

/// Flags of `ledge serve` (each also readable from its `LEDGE_*` variable).
#[derive(clap::Args, Debug, Default)]
pub struct ServeArgs {
    /// Config file (default: ./ledge.toml when it exists).
    #[arg(long, env = "LEDGE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data folder (SQLite metadata, blobs, admin token). Default ./ledge-data.
    #[arg(long, env = "LEDGE_DATA")]
    pub data: Option<PathBuf>,
    /// Edge listen address. Default 127.0.0.1:8080.
    #[arg(long, env = "LEDGE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Control API listen address. Default 127.0.0.1:8081.
    #[arg(long, env = "LEDGE_API_LISTEN")]
    pub api_listen: Option<SocketAddr>,
    /// Sites are served at SITE.EDGE_DOMAIN. Default localhost.
    #[arg(long, env = "LEDGE_EDGE_DOMAIN")]
    pub edge_domain: Option<String>,
    /// Create and publish the bundled demo site (http://demo.EDGE_DOMAIN/).
    #[arg(long, env = "LEDGE_DEMO")]
    pub demo: bool,
    /// A proxy whose X-Forwarded-For is trusted (CIDR; repeatable).
    #[arg(
        long = "trusted-proxy",
        env = "LEDGE_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<Cidr>,
    /// A private, loopback or link-local range that proxy rules may reach
    /// (CIDR; repeatable). Public addresses are always allowed.
    #[arg(
        long = "outbound-allow",
        env = "LEDGE_OUTBOUND_ALLOW",
        value_delimiter = ','
    )]
    pub outbound_allow: Vec<Cidr>,
    /// The node's access log: `on` (default: JSON lines to the node's drains)
    /// or `off` (no records, statistics, drains or live tail).
    #[arg(long = "access-log", env = "LEDGE_ACCESS_LOG")]
    pub access_log: Option<Toggle>,
    /// A node log drain (repeatable) in place of `DATA/logs/access.log`:
    /// `file:///PATH`, `stdout`, `https://…`, `nats://HOST:PORT/SUBJECT`,
    /// `kafka://HOST:PORT/TOPIC`.
    #[arg(long = "log-drain", env = "LEDGE_LOG_DRAINS", value_delimiter = ' ')]
    pub log_drains: Vec<String>,
    /// The node's own diagnostics: `text` (default) or `json`.
    #[arg(long = "log-format", env = "LEDGE_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Extra CA certificates (PEM file) trusted for TLS to origins, beside the
    /// public web PKI.
    #[arg(long = "origin-ca", env = "LEDGE_ORIGIN_CA")]
    pub origin_ca: Option<PathBuf>,
    /// Header in which a trusted front proxy passes the visitor's country code.
    #[arg(long, env = "LEDGE_GEO_HEADER")]
    pub geo_header: Option<String>,
    /// A MaxMind country (or city) database for the visitor's country.
    #[arg(long, env = "LEDGE_GEOIP_DB")]
    pub geoip_db: Option<PathBuf>,
    /// HTTPS listen address (off unless given).
    #[arg(long, env = "LEDGE_TLS_LISTEN")]
    pub tls_listen: Option<SocketAddr>,
    /// The operator's certificate chain (PEM): served for `*.EDGE_DOMAIN` names
    /// it covers and to clients that send no SNI.
    #[arg(long, env = "LEDGE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `--tls-cert`.
    #[arg(long, env = "LEDGE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// ACME directory URL: custom domains get certificates automatically.
    #[arg(long, env = "LEDGE_ACME_DIRECTORY")]
    pub acme_directory: Option<String>,
    /// Contact e-mail for the ACME account.
    #[arg(long, env = "LEDGE_ACME_EMAIL")]
    pub acme_email: Option<String>,
    /// An extra root (PEM file) to trust for the ACME API (test servers).
    #[arg(long, env = "LEDGE_ACME_ROOT")]
    pub acme_root: Option<PathBuf>,
}

/// `ledge.toml`.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data: Option<PathBuf>,
    listen: Option<SocketAddr>,
    api_listen: Option<SocketAddr>,
    edge_domain: Option<String>,
    demo: Option<bool>,
    #[serde(default)]
    trusted_proxies: Vec<Cidr>,
    #[serde(default)]
    outbound_allow: Vec<Cidr>,
    access_log: Option<Toggle>,
    #[serde(default)]
    log_drains: Vec<String>,
    log_format: Option<LogFormat>,
    origin_ca: Option<PathBuf>,
    geo_header: Option<String>,
    geoip_db: Option<PathBuf>,
    tls_listen: Option<SocketAddr>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    acme_directory: Option<String>,
    acme_email: Option<String>,
    acme_root: Option<PathBuf>,
    #[serde(default)]
    limits: LimitsConfig,
    #[serde(default)]
    cache: CacheConfig,
    #[serde(default)]
    functions: FunctionsConfig,
}

/// `[functions]` in `ledge.toml`: edge function limits and workers.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FunctionsConfig {
    /// CPU time per invocation (default 50).
    cpu_ms: Option<u64>,
    /// Memory per isolate (default 128).
    memory_mb: Option<usize>,
    /// Time until the response (default 40).
    wall_secs: Option<u64>,
    /// `fetch()` and `context.next()` calls per invocation (default 50).
    max_subrequests: Option<u32>,
    /// Warm isolates kept per process (default 64).
    max_isolates: Option<usize>,
    /// Sandboxed worker processes (default: one per core; 0 runs functions
    /// inside the node's own process, without the sandbox).
    workers: Option<usize>,
    /// `context.server.region` (default `local`).
    region: Option<String>,
}

/// `[limits]` in `ledge.toml`.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct LimitsConfig {
    header_read_timeout_secs: Option<u64>,
    drain_timeout_secs: Option<u64>,
    max_connections: Option<usize>,
    max_header_bytes: Option<usize>,
    max_headers: Option<usize>,
    max_uri_len: Option<usize>,
    max_body_bytes: Option<u64>,
    max_h2_streams: Option<u32>,
    origin_connect_timeout_secs: Option<u64>,
    origin_response_timeout_secs: Option<u64>,
}

/// `[cache]` in `ledge.toml`.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct CacheConfig {
    blob_cache_mb: Option<u64>,
    max_object_mb: Option<u64>,
    deploys: Option<usize>,
    /// HTTP cache (proxied responses): memory tier.
    http_memory_mb: Option<u64>,
    /// HTTP cache: disk tier under `DATA/http-cache` (0 turns it off).
    http_disk_mb: Option<u64>,
    /// HTTP cache: largest response stored.
    http_max_object_mb: Option<u64>,
}

/// The validated configuration of a node.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Data folder.
    pub data: PathBuf,
    /// Edge address.
    pub listen: SocketAddr,
    /// API address.
    pub api_listen: SocketAddr,
    /// Edge domain.
    pub edge_domain: String,
    /// Publish the demo site.
    pub demo: bool,
    /// Edge settings.
    pub edge: ledge_edge::EdgeConfig,
    /// Connection limits.
    pub limits: ledge_edge::ServerLimits,
    /// Bytes of file content kept in memory.
    pub blob_cache_bytes: u64,
    /// Largest file kept in memory.
    pub max_object_bytes: u64,
    /// Deploy snapshots kept in memory.
    pub deploy_cache: usize,
    /// HTTP cache sizes: (memory, disk, largest object), bytes.
    pub http_cache: (u64, u64, u64),
    /// Edge function limits.
    pub function_limits: ledge_functions::Limits,
    /// Sandboxed function worker processes; 0 runs functions in process.
    pub function_workers: usize,
    /// Non-public ranges tenant traffic may reach.
    pub outbound_allow: Vec<Cidr>,
    /// Extra CA file for TLS to origins.
    pub origin_ca: Option<PathBuf>,
    /// Access log and node drains.
    pub access_log: crate::telemetry::AccessLog,
    /// Format of the node's own diagnostics.
    pub log_format: LogFormat,
    /// Header with the visitor's country, from trusted proxies.
    pub geo_header: Option<axum::http::HeaderName>,
    /// MaxMind database file.
    pub geoip_db: Option<PathBuf>,
    /// HTTPS listener.
    pub tls_listen: Option<SocketAddr>,
    /// Operator certificate and key files.
    pub tls_operator: Option<(PathBuf, PathBuf)>,
    /// Automatic certificates.
    pub acme: Option<ledge_acme::AcmeConfig>,
    /// Origin connect timeout.
    pub origin_connect_timeout: Duration,
    /// Origin response-head timeout.
    pub origin_response_timeout: Duration,
}

impl ServeArgs {
    /// Merges file, environment (already folded in by clap) and flags.
    pub fn resolve(self) -> anyhow::Result<ServeConfig> {
        let file = match &self.config {
            Some(p) => read_file(p)?,
            None if Path::new("ledge.toml").exists() => read_file(Path::new("ledge.toml"))?,
            None => FileConfig::default(),
        };
        let edge_domain = self
            .edge_domain
            .or(file.edge_domain)
            .unwrap_or_else(|| "localhost".into());
        let edge_domain = ledge_core::normalize_host(&edge_domain)
            .filter(|_| !edge_domain.contains(':'))
            .with_context(|| format!("edge domain {edge_domain:?} is not a host name"))?;
        let mut trusted = file.trusted_proxies;
        trusted.extend(self.trusted_proxies);
        let l = file.limits;
        let defaults = ledge_edge::ServerLimits::default();
        let limits = ledge_edge::ServerLimits {
            max_header_bytes: l.max_header_bytes.unwrap_or(defaults.max_header_bytes),
            max_headers: l.max_headers.unwrap_or(defaults.max_headers),
            header_read_timeout: l
                .header_read_timeout_secs
                .map(Duration::from_secs)
                .unwrap_or(defaults.header_read_timeout),
            max_h2_streams: l.max_h2_streams.unwrap_or(defaults.max_h2_streams),
            max_connections: l.max_connections.unwrap_or(defaults.max_connections),
            drain_timeout: l
                .drain_timeout_secs
                .map(Duration::from_secs)
                .unwrap_or(defaults.drain_timeout),
        };
        if limits.max_header_bytes < 8192 {
            bail!("limits.max_header_bytes must be at least 8192");
        }
        if limits.header_read_timeout.is_zero() {
            bail!("limits.header_read_timeout_secs must be at least 1");
        }
        let edge_defaults = ledge_edge::EdgeConfig::default();
        let geo_header = self
            .geo_header
            .or(file.geo_header)
            .map(|h| {
                axum::http::HeaderName::from_bytes(h.trim().to_ascii_lowercase().as_bytes())
                    .with_context(|| format!("geo header {h:?} is not a header name"))
            })
            .transpose()?;
        let mut outbound_allow = file.outbound_allow;
        outbound_allow.extend(self.outbound_allow);
        Ok(ServeConfig {
            data: self
                .data
                .or(file.data)
                .unwrap_or_else(crate::default_data_dir),
            listen: self
                .listen
                .or(file.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            api_listen: self
                .api_listen
                .or(file.api_listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8081))),
            edge_domain,
            demo: self.demo || file.demo.unwrap_or(false),
            edge: ledge_edge::EdgeConfig {
                trusted_proxies: trusted,
                max_uri_len: l.max_uri_len.unwrap_or(edge_defaults.max_uri_len),
                max_body: l.max_body_bytes.unwrap_or(edge_defaults.max_body),
                region: file
                    .functions
                    .region
                    .clone()
                    .unwrap_or_else(|| edge_defaults.region.clone()),
            },
            outbound_allow,
            origin_ca: self.origin_ca.or(file.origin_ca),
            access_log: match self.access_log.or(file.access_log).unwrap_or(Toggle::On) {
                Toggle::Off => crate::telemetry::AccessLog::Off,
                Toggle::On => crate::telemetry::AccessLog::Drains(if self.log_drains.is_empty() {
                    file.log_drains
                } else {
                    self.log_drains
                }),
            },
            log_format: self
                .log_format
                .or(file.log_format)
                .unwrap_or(LogFormat::Text),
            geo_header,
            geoip_db: self.geoip_db.or(file.geoip_db),
            tls_listen: self.tls_listen.or(file.tls_listen),
            acme: match self.acme_directory.or(file.acme_directory) {
                None => None,
                Some(directory_url) => Some(ledge_acme::AcmeConfig {
                    directory_url,
                    contact: self.acme_email.or(file.acme_email),
                    extra_root_pem: match self.acme_root.or(file.acme_root) {
                        Some(p) => Some(std::fs::read_to_string(&p).with_context(|| {
                            format!("cannot read the ACME root {}", p.display())
                        })?),
                        None => None,
                    },
                }),
            },
            tls_operator: match (
                self.tls_cert.or(file.tls_cert),
                self.tls_key.or(file.tls_key),
            ) {
                (Some(c), Some(k)) => Some((c, k)),
                (None, None) => None,
                _ => bail!("tls_cert and tls_key go together: give both or neither"),
            },
            origin_connect_timeout: Duration::from_secs(
                l.origin_connect_timeout_secs.unwrap_or(10),
            ),
            origin_response_timeout: Duration::from_secs(
                l.origin_response_timeout_secs.unwrap_or(26),
            ),
            limits,
            blob_cache_bytes: file.cache.blob_cache_mb.unwrap_or(256) << 20,
            max_object_bytes: file.cache.max_object_mb.unwrap_or(8) << 20,
            deploy_cache: file.cache.deploys.unwrap_or(4096),
            http_cache: (
                file.cache.http_memory_mb.unwrap_or(256) << 20,
                file.cache.http_disk_mb.unwrap_or(1024) << 20,
                file.cache.http_max_object_mb.unwrap_or(512) << 20,
            ),
            function_limits: {
                let f = &file.functions;
                let d = ledge_functions::Limits::default();
                ledge_functions::Limits {
                    cpu_time: f.cpu_ms.map_or(d.cpu_time, Duration::from_millis),
                    memory_bytes: f.memory_mb.map_or(d.memory_bytes, |m| m << 20),
                    wall_time: f.wall_secs.map_or(d.wall_time, Duration::from_secs),
                    max_host_calls: f.max_subrequests.unwrap_or(d.max_host_calls),
                    max_isolates: f.max_isolates.unwrap_or(d.max_isolates),
                    ..d
                }
            },
            function_workers: file.functions.workers.unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
            }),
        })
    }
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_file_and_file_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ledge.toml");
        std::fs::write(
            &p,
            "listen = \"127.0.0.1:9000\"\nedge_domain = \"Edge.Test\"\ntrusted_proxies = [\"10.0.0.0/8\"]\n[limits]\nmax_headers = 50\n",
        )
        .unwrap();
        let cfg = ServeArgs {
            config: Some(p.clone()),
            api_listen: Some("127.0.0.1:9001".parse().unwrap()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(cfg.listen, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(cfg.api_listen, "127.0.0.1:9001".parse().unwrap());
        assert_eq!(cfg.edge_domain, "edge.test");
        assert_eq!(cfg.limits.max_headers, 50);
        assert_eq!(cfg.edge.trusted_proxies.len(), 1);
        std::fs::write(&p, "listen = 5\n").unwrap();
        let err = ServeArgs {
            config: Some(p),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(format!("{err:#}").contains("invalid config file"));
    }
}

/// `on` / `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Toggle {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

/// How the node writes its own diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}
