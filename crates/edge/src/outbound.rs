//! Everything that leaves the node goes through here: one origin client (built
//! once, pooled) under one outbound policy.
//!
//! The policy refuses loopback, private (RFC 1918, unique-local, CGNAT),
//! link-local, cloud-metadata, unspecified, multicast and broadcast targets
//! unless the operator allows a range (`--outbound-allow CIDR`). Names are
//! checked after resolution, by the resolver the client connects with, so a
//! name cannot be pointed at a refused address between check and connect.
//! The node's own control API is never a target, allowed range or not.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ledge_core::Cidr;

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

/// A resolver that drops refused addresses, so the client can only connect to
/// what the policy allows.
struct PolicyResolver {
    policy: Arc<OutboundPolicy>,
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
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
                let why =
                    refusal.map_or_else(|| format!("{host} did not resolve"), |e| e.to_string());
                return Err(Box::new(std::io::Error::other(why))
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            let iter: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(iter)
        })
    }
}

/// The node's one origin client.
#[derive(Clone)]
pub struct Origin {
    /// The pooled HTTP client (no redirects followed, no decompression).
    pub client: reqwest::Client,
    /// The policy it enforces.
    pub policy: Arc<OutboundPolicy>,
    /// Time allowed for the response head.
    pub response_timeout: Duration,
}

impl Origin {
    /// Builds the client once for the process.
    pub fn new(
        policy: OutboundPolicy,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        let policy = Arc::new(policy);
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .dns_resolver(Arc::new(PolicyResolver {
                policy: policy.clone(),
            }))
            .build()?;
        Ok(Self {
            client,
            policy,
            response_timeout,
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
