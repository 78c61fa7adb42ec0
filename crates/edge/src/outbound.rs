//! Everything that leaves the node goes through here: one origin client (built
//! once, pooled) under one outbound policy.
//!
//! The policy refuses loopback, private (RFC 1918, unique-local, CGNAT),
//! link-local, cloud-metadata, unspecified, multicast and broadcast targets
//! unless the operator allows a range (`--outbound-allow CIDR`). Names are
//! checked after resolution, by the resolver the client connects with, so a
//! name cannot be pointed at a refused address between check and connect.
//! The node's own control API is never a target, allowed range or not.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ledge_core::Cidr;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// What the operator allows beyond public addresses.
#[derive(Debug, Clone, Default)]
pub struct OutboundPolicy {
    /// Ranges allowed although private, loopback or link-local.
    pub allow: Vec<Cidr>,
    /// The node's own control API (never reachable by tenant traffic).
    pub control_api: Option<SocketAddr>,
}

/// Why a target was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Refused {
    /// A non-public address not in the allow list.
    #[error("{0} is a {1} address; outbound requests to it are not allowed (operators can allow it with --outbound-allow)")]
    Address(IpAddr, &'static str),
    /// The node's own control API.
    #[error("{0} is this node's control API")]
    ControlApi(SocketAddr),
}

impl OutboundPolicy {
    /// Checks one resolved target.
    pub fn check(&self, target: SocketAddr) -> Result<(), Refused> {
        let ip = canonical(target.ip());
        if let Some(api) = self.control_api {
            let api_ip = canonical(api.ip());
            let same_host = api_ip == ip
                || (api_ip.is_unspecified() && (ip.is_loopback() || is_local_kind(ip)));
            if target.port() == api.port() && same_host {
                return Err(Refused::ControlApi(target));
            }
        }
        match classify(ip) {
            None => Ok(()),
            Some(_) if self.allow.iter().any(|c| c.contains(ip)) => Ok(()),
            Some(kind) => Err(Refused::Address(ip, kind)),
        }
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn is_local_kind(ip: IpAddr) -> bool {
    matches!(classify(ip), Some("private") | Some("loopback"))
}

/// The kind of a non-public address, `None` for a public one.
pub fn classify(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if o == [169, 254, 169, 254] || o == [100, 100, 100, 200] {
        Some("cloud metadata")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if ip.is_private() || (o[0] == 100 && (o[1] & 0xc0) == 64) {
        Some("private")
    } else if ip.is_unspecified() || o[0] == 0 {
        Some("unspecified")
    } else if ip.is_multicast() || ip.is_broadcast() || o[0] >= 240 {
        Some("multicast or reserved")
    } else {
        None
    }
}

fn classify_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let seg = ip.segments();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        Some("cloud metadata")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if (seg[0] & 0xffc0) == 0xfe80 {
        Some("link-local")
    } else if (seg[0] & 0xfe00) == 0xfc00 {
        Some("private")
    } else if ip.is_multicast() {
        Some("multicast or reserved")
    } else {
        None
    }
}

/// Resolves `host` and keeps only the addresses the policy allows; an error
/// names why nothing is left.
pub async fn resolve_allowed(
    policy: &OutboundPolicy,
    host: &str,
    port: u16,
) -> std::io::Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
    let mut refusal = None;
    let allowed: Vec<SocketAddr> = addrs
        .into_iter()
        .filter(|a| match policy.check(*a) {
            Ok(()) => true,
            Err(e) => {
                refusal = Some(e);
                false
            }
        })
        .collect();
    if allowed.is_empty() {
        let why = refusal.map_or_else(|| format!("{host} did not resolve"), |e| e.to_string());
        return Err(std::io::Error::other(why));
    }
    Ok(allowed)
}

/// A resolver that drops refused addresses, so the client can only connect to
/// what the policy allows.
struct PolicyResolver {
    policy: Arc<OutboundPolicy>,
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let allowed = resolve_allowed(&policy, name.as_str(), 0)
                .await
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            let iter: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(iter)
        })
    }
}

/// How the origin client is built.
#[derive(Debug, Clone)]
pub struct OriginOptions {
    /// Time allowed to connect (TCP and TLS).
    pub connect_timeout: Duration,
    /// Time allowed for the response head.
    pub response_timeout: Duration,
    /// Extra trusted roots for origins (PEM), beside the public web PKI.
    pub extra_roots_pem: Vec<Vec<u8>>,
    /// Consecutive connect failures after which an origin is treated as down.
    pub fail_threshold: u32,
    /// How long an origin treated as down is answered for without trying it.
    pub fail_cooldown: Duration,
}

impl Default for OriginOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(26),
            extra_roots_pem: Vec::new(),
            fail_threshold: 5,
            fail_cooldown: Duration::from_secs(2),
        }
    }
}

/// Why an origin client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    /// A configured CA file is not PEM certificates.
    #[error("origin CA: {0}")]
    BadCa(String),
    /// The HTTP client failed to build.
    #[error(transparent)]
    Client(#[from] reqwest::Error),
}

/// Passive health of origins (nginx's `max_fails` / `fail_timeout`): after
/// `threshold` connect failures in a row, an origin is answered for with a
/// 502 at once during the cooldown instead of every request waiting on it,
/// so a dead origin cannot pile up connections. The first request after the
/// cooldown tries again.
pub struct Health {
    threshold: u32,
    cooldown: Duration,
    state: std::sync::Mutex<HashMap<String, (u32, Option<Instant>)>>,
}

/// Origins remembered at most (failing ones only; a success forgets).
const HEALTH_CAPACITY: usize = 4096;

impl Health {
    /// A tracker with the given threshold and cooldown.
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cooldown,
            state: std::sync::Mutex::new(HashMap::default()),
        }
    }

    /// `Some(remaining)` while `origin` is treated as down.
    pub fn down_for(&self, origin: &str) -> Option<Duration> {
        let state = self.state.lock().ok()?;
        let (_, until) = state.get(origin)?;
        until.and_then(|u| u.checked_duration_since(Instant::now()))
    }

    /// Records a failed connect.
    pub fn failed(&self, origin: &str) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if state.len() >= HEALTH_CAPACITY && !state.contains_key(origin) {
            let now = Instant::now();
            state.retain(|_, (_, until)| until.is_some_and(|u| u > now));
            if state.len() >= HEALTH_CAPACITY {
                return;
            }
        }
        let e = state.entry(origin.to_owned()).or_insert((0, None));
        e.0 += 1;
        if e.0 >= self.threshold {
            e.0 = 0;
            e.1 = Some(Instant::now() + self.cooldown);
        }
    }

    /// Connect failures counted for `origin` since it was last up or down.
    #[cfg(test)]
    pub(crate) fn failures(&self, origin: &str) -> u32 {
        self.state
            .lock()
            .map(|s| s.get(origin).map_or(0, |(n, _)| *n))
            .unwrap_or(0)
    }

    /// Records a response: the origin is up.
    pub fn succeeded(&self, origin: &str) {
        if let Ok(mut state) = self.state.lock() {
            if !state.is_empty() {
                state.remove(origin);
            }
        }
    }
}

/// The node's one origin client.
#[derive(Clone)]
pub struct Origin {
    /// The pooled HTTP client (HTTP/1.1 and h2 by ALPN; no redirects
    /// followed, no decompression).
    pub client: reqwest::Client,
    /// The policy it enforces.
    pub policy: Arc<OutboundPolicy>,
    /// Time allowed to connect.
    pub connect_timeout: Duration,
    /// Time allowed for the response head.
    pub response_timeout: Duration,
    /// TLS to origins for connections the pooled client cannot make
    /// (WebSocket upgrades): the same roots.
    pub tls: Arc<rustls::ClientConfig>,
    /// Passive health of origins.
    pub health: Arc<Health>,
}

impl Origin {
    /// Builds the client once for the process.
    pub fn new(policy: OutboundPolicy, opts: &OriginOptions) -> Result<Self, OriginError> {
        let policy = Arc::new(policy);
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(opts.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .dns_resolver(Arc::new(PolicyResolver {
                policy: policy.clone(),
            }));
        for pem in &opts.extra_roots_pem {
            let mut found = 0;
            for der in CertificateDer::pem_slice_iter(pem) {
                let der = der.map_err(|e| OriginError::BadCa(e.to_string()))?;
                let cert = reqwest::Certificate::from_der(&der)?;
                builder = builder.add_root_certificate(cert);
                roots
                    .add(der)
                    .map_err(|e| OriginError::BadCa(e.to_string()))?;
                found += 1;
            }
            if found == 0 {
                return Err(OriginError::BadCa("no PEM certificate found".into()));
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| OriginError::BadCa(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            client: builder.build()?,
            policy,
            connect_timeout: opts.connect_timeout,
            response_timeout: opts.response_timeout,
            tls: Arc::new(tls),
            health: Arc::new(Health::new(opts.fail_threshold, opts.fail_cooldown)),
        })
    }

    /// Checks a URL whose host is an IP literal (the resolver never sees
    /// those); names are checked at resolution.
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), Refused> {
        let port = url.port_or_known_default().unwrap_or(80);
        let ip = match url.host() {
            Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
            Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
            _ => return Ok(()),
        };
        self.policy.check(SocketAddr::new(ip, port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn health_marks_an_origin_down_after_repeated_failures() {
        let h = Health::new(3, Duration::from_secs(60));
        assert_eq!(h.down_for("a:80"), None);
        h.failed("a:80");
        h.failed("a:80");
        assert_eq!(h.down_for("a:80"), None, "below the threshold");
        h.succeeded("a:80");
        h.failed("a:80");
        h.failed("a:80");
        assert_eq!(h.down_for("a:80"), None, "a success resets the count");
        h.failed("a:80");
        assert!(h.down_for("a:80").is_some());
        assert_eq!(h.down_for("b:80"), None, "per origin");
        let quick = Health::new(1, Duration::ZERO);
        quick.failed("c:80");
        assert_eq!(quick.down_for("c:80"), None, "the cooldown ends");
    }

    #[test]
    fn refuses_non_public_unless_allowed() {
        let p = OutboundPolicy::default();
        for refused in [
            "127.0.0.1:80",
            "10.1.2.3:80",
            "172.16.0.1:80",
            "192.168.1.1:80",
            "169.254.169.254:80",
            "169.254.1.1:80",
            "100.64.0.1:80",
            "0.0.0.0:80",
            "[::1]:80",
            "[fe80::1]:80",
            "[fd12::1]:80",
            "[::ffff:127.0.0.1]:80",
            "[fd00:ec2::254]:80",
        ] {
            assert!(p.check(addr(refused)).is_err(), "{refused}");
        }
        assert!(p.check(addr("93.184.216.34:443")).is_ok());
        assert!(p.check(addr("[2606:2800:220:1::1]:443")).is_ok());
        let allowed = OutboundPolicy {
            allow: vec!["127.0.0.0/8".parse().unwrap()],
            control_api: Some(addr("127.0.0.1:8081")),
        };
        assert!(allowed.check(addr("127.0.0.1:9000")).is_ok());
        assert_eq!(
            allowed.check(addr("127.0.0.1:8081")),
            Err(Refused::ControlApi(addr("127.0.0.1:8081")))
        );
        let wildcard = OutboundPolicy {
            allow: vec!["0.0.0.0/0".parse().unwrap()],
            control_api: Some(addr("0.0.0.0:8081")),
        };
        assert!(wildcard.check(addr("127.0.0.1:8081")).is_err());
        assert!(wildcard.check(addr("10.0.0.5:8081")).is_err());
        assert!(wildcard.check(addr("10.0.0.5:8082")).is_ok());
    }
}
