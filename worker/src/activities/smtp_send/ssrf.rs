//! The guard for attachment links (SSRF): a link may only reach public addresses, checked
//! after DNS resolution, on every redirect, and for IP literals, unless the operator
//! allowed a network with `B24FLOW_FETCH_ALLOW` (`config.fetch_allow`, CIDRs or addresses).
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, LazyLock};

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Networks no link may reach unless allowed: this host, private and shared ranges,
/// link-local (cloud metadata at 169.254.169.254 / fd00:ec2::254), multicast, reserved.
const FORBIDDEN_RANGES: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    "64:ff9b:1::/48",
    "100::/64",
    "2001:db8::/32",
    "fc00::/7",
    "fe80::/10",
    "fec0::/10",
    "ff00::/8",
];

static FORBIDDEN: LazyLock<Vec<IpNet>> = LazyLock::new(|| {
    FORBIDDEN_RANGES
        .iter()
        .filter_map(|n| IpNet::from_str(n).ok())
        .collect()
});

/// Why a link was refused.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("{host} resolves to {ip}, a private, loopback or link-local address (allow it with B24FLOW_FETCH_ALLOW)")]
    Address { host: String, ip: IpAddr },
    #[error("only http and https links can be attached, not {0}")]
    Scheme(String),
    #[error("the link has no host")]
    NoHost,
    #[error("{0} cannot be resolved")]
    Unresolvable(String),
}

#[derive(Clone, Debug, Default)]
pub struct Guard {
    allow: Vec<IpNet>,
    /// The portal's own host: REST calls already go there, so its Disk downloads may too,
    /// wherever it resolves (an on-premise portal lives on a private network).
    trusted_host: Option<String>,
}

impl Guard {
    /// From `config.fetch_allow`; entries that are neither a CIDR nor an address are
    /// skipped with a warning (a typo must not open everything).
    pub fn new(allow: &[String]) -> Self {
        let allow = allow
            .iter()
            .filter(|s| !s.trim().is_empty())
            .filter_map(|entry| {
                let entry = entry.trim();
                let parsed = IpNet::from_str(entry)
                    .ok()
                    .or_else(|| IpAddr::from_str(entry).ok().map(IpNet::from));
                if parsed.is_none() {
                    tracing::warn!(%entry, "B24FLOW_FETCH_ALLOW: not a CIDR or an address; ignored");
                }
                parsed
            })
            .collect();
        Self {
            allow,
            trusted_host: None,
        }
    }

    pub fn trusting_host(mut self, host: Option<String>) -> Self {
        self.trusted_host = host.map(|h| h.to_ascii_lowercase());
        self
    }

    fn is_trusted(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.trusted_host.as_deref().is_some_and(|t| {
            t.trim_start_matches('[')
                .trim_end_matches(']')
                .eq_ignore_ascii_case(host)
        })
    }

    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        if self.allow.iter().any(|net| net.contains(&ip)) {
            return true;
        }
        !FORBIDDEN.iter().any(|net| net.contains(&ip))
    }

    /// Checks what can be checked before connecting: the scheme, and the host when it is
    /// an IP literal (the resolver is not asked about those).
    pub fn check_url(&self, url: &url::Url) -> Result<(), Refused> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refused::Scheme(url.scheme().to_string()));
        }
        if url.host_str().is_some_and(|h| self.is_trusted(h)) {
            return Ok(());
        }
        let ip = match url.host() {
            None => return Err(Refused::NoHost),
            Some(url::Host::Domain(_)) => return Ok(()),
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
        };
        if self.permits(ip) {
            Ok(())
        } else {
            Err(Refused::Address {
                host: ip.to_string(),
                ip,
            })
        }
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:127.0.0.1`) are judged as the IPv4 address they are.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// A DNS resolver for reqwest that hands out only addresses the guard permits, so the
/// address checked is the address connected to (no DNS rebinding between check and use).
pub struct GuardedResolver(pub Arc<Guard>);

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|_| Refused::Unresolvable(host.clone()))?
                .collect();
            let trusted = guard.is_trusted(&host);
            if let Some(bad) = resolved.iter().find(|a| !trusted && !guard.permits(a.ip())) {
                return Err(Refused::Address { host, ip: bad.ip() }.into());
            }
            if resolved.is_empty() {
                return Err(Refused::Unresolvable(host).into());
            }
            let addrs: Addrs = Box::new(resolved.into_iter());
            Ok(addrs)
        })
    }
}

/// The guard's refusal inside a reqwest error chain, if that is what stopped the request.
pub fn refusal_in(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut source = Some(err);
    while let Some(e) = source {
        if let Some(refused) = e.downcast_ref::<Refused>() {
            return Some(refused.to_string());
        }
        source = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn internal_addresses_are_refused_and_public_ones_pass() {
        let guard = Guard::new(&[]);
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.100.100.200",
            "0.0.0.0",
            "::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "224.0.0.1",
        ] {
            assert!(!guard.permits(ip(bad)), "{bad} must be refused");
        }
        for good in ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"] {
            assert!(guard.permits(ip(good)), "{good} must pass");
        }
    }

    #[test]
    fn the_allow_list_opens_only_its_networks() {
        let guard = Guard::new(&["127.0.0.0/8".into(), "10.0.0.5".into(), "nonsense".into()]);
        assert!(guard.permits(ip("127.0.0.1")));
        assert!(guard.permits(ip("10.0.0.5")));
        assert!(!guard.permits(ip("10.0.0.6")));
        assert!(!guard.permits(ip("169.254.169.254")));
    }

    #[test]
    fn literal_hosts_and_schemes_are_checked_before_connecting() {
        let guard = Guard::new(&[]);
        let url = |s: &str| url::Url::parse(s).expect("test url");
        assert!(guard
            .check_url(&url("http://169.254.169.254/latest/meta-data"))
            .is_err());
        assert!(guard.check_url(&url("http://[::1]:8080/x")).is_err());
        assert!(guard.check_url(&url("file:///etc/passwd")).is_err());
        assert!(guard.check_url(&url("ftp://example.com/x")).is_err());
        assert!(guard.check_url(&url("https://example.com/a.pdf")).is_ok());
        let portal = Guard::new(&[]).trusting_host(Some("127.0.0.1".into()));
        assert!(portal
            .check_url(&url("http://127.0.0.1:8080/rest/download.json"))
            .is_ok());
        assert!(portal.check_url(&url("http://127.0.0.2/x")).is_err());
    }

    #[tokio::test]
    async fn the_resolver_refuses_names_of_internal_addresses() {
        let resolver = GuardedResolver(Arc::new(Guard::new(&[])));
        let name = Name::from_str("localhost").expect("name");
        let err = match resolver.resolve(name).await {
            Ok(_) => panic!("localhost must be refused"),
            Err(e) => e,
        };
        assert!(refusal_in(err.as_ref()).is_some(), "{err}");
        let open = GuardedResolver(Arc::new(Guard::new(&[
            "127.0.0.0/8".into(),
            "::1/128".into(),
        ])));
        let name = Name::from_str("localhost").expect("name");
        assert!(open.resolve(name).await.is_ok());
        let portal = GuardedResolver(Arc::new(
            Guard::new(&[]).trusting_host(Some("LocalHost".into())),
        ));
        let name = Name::from_str("localhost").expect("name");
        assert!(portal.resolve(name).await.is_ok());
    }
}
