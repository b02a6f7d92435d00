//! The outbound policy: every connection a workflow can cause (attachment links, their
//! redirects, Disk downloads from the portal's own host, the SMTP server) goes only to
//! public addresses. Names are resolved here, every resolved address is checked against
//! one blocklist, and only checked addresses are handed to the connector (no DNS rebinding
//! between check and use). SMTP also goes only to the mail ports. `B24FLOW_FETCH_ALLOW`
//! (`config.fetch_allow`) opens networks (`10.0.0.0/8`, `10.0.0.5`) or exact sockets
//! (`10.0.0.5:2526`, `[fd00::5]:2526`) for tests and private deployments.
//! Refusals name the rule that refused, never the address found.
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, LazyLock};

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// The blocklist, each range with the rule it belongs to. More specific ranges come first,
/// so an address is refused under the most telling rule.
const BLOCKED: &[(&str, &str)] = &[
    ("127.0.0.0/8", "loopback"),
    ("::1/128", "loopback"),
    ("0.0.0.0/8", "unspecified (this host)"),
    ("::/128", "unspecified (this host)"),
    ("10.0.0.0/8", "private network"),
    ("172.16.0.0/12", "private network"),
    ("192.168.0.0/16", "private network"),
    (
        "fc00::/7",
        "private network (unique local; cloud metadata fd00:ec2::254)",
    ),
    (
        "169.254.0.0/16",
        "link-local (cloud metadata 169.254.169.254)",
    ),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local"),
    (
        "100.64.0.0/10",
        "shared address space (CGNAT; cloud metadata 100.100.100.200)",
    ),
    ("224.0.0.0/4", "multicast"),
    ("ff00::/8", "multicast"),
    ("::ffff:0:0/96", "IPv4-mapped IPv6"),
    ("::/96", "IPv4-compatible IPv6"),
    ("64:ff9b::/96", "NAT64"),
    ("64:ff9b:1::/48", "NAT64"),
    ("2002::/16", "6to4"),
    ("192.88.99.0/24", "6to4"),
    ("2001::/32", "Teredo"),
    ("192.0.0.0/24", "reserved"),
    ("240.0.0.0/4", "reserved (and broadcast)"),
    ("100::/64", "reserved (discard)"),
    ("198.18.0.0/15", "reserved (benchmarking)"),
    ("192.0.2.0/24", "reserved (documentation)"),
    ("198.51.100.0/24", "reserved (documentation)"),
    ("203.0.113.0/24", "reserved (documentation)"),
    ("2001:db8::/32", "reserved (documentation)"),
];

static BLOCKLIST: LazyLock<Vec<(IpNet, &'static str)>> = LazyLock::new(|| {
    BLOCKED
        .iter()
        .filter_map(|(net, rule)| IpNet::from_str(net).ok().map(|n| (n, *rule)))
        .collect()
});

/// The ports an SMTP server may be reached on: 25, 465 (implicit TLS), 587 (submission)
/// and 2525 (the common alternative submission port).
pub const SMTP_PORTS: &[u16] = &[25, 465, 587, 2525];

/// Why a connection was refused.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error(
        "the address is in a range the outbound policy blocks: {0} (allow it with B24FLOW_FETCH_ALLOW)"
    )]
    Address(&'static str),
    #[error(
        "SMTP port {0} is not allowed: only 25, 465, 587 and 2525 (allow others with B24FLOW_FETCH_ALLOW)"
    )]
    SmtpPort(u16),
    #[error("only http and https links can be attached, not {0}")]
    Scheme(String),
    #[error("the link has no host")]
    NoHost,
    #[error("{0} cannot be resolved")]
    Unresolvable(String),
}

#[derive(Clone, Debug, Default)]
pub struct Guard {
    networks: Vec<IpNet>,
    sockets: Vec<SocketAddr>,
}

impl Guard {
    /// From `config.fetch_allow`; entries that are neither a network, an address nor a
    /// socket are skipped with a warning (a typo must not open everything).
    pub fn new(allow: &[String]) -> Self {
        let mut guard = Self::default();
        for entry in allow.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
            if let Ok(net) = IpNet::from_str(entry) {
                guard.networks.push(net);
            } else if let Ok(ip) = IpAddr::from_str(entry) {
                guard.networks.push(IpNet::from(ip));
            } else if let Ok(socket) = SocketAddr::from_str(entry) {
                guard.sockets.push(socket);
            } else {
                tracing::warn!(%entry, "B24FLOW_FETCH_ALLOW: not a network, an address or address:port; ignored");
            }
        }
        guard
    }

    fn opened(&self, socket: SocketAddr) -> bool {
        self.sockets.contains(&socket) || self.networks.iter().any(|n| n.contains(&socket.ip()))
    }

    /// The address rule: `Ok` for public addresses and allowed networks or sockets.
    pub fn check(&self, socket: SocketAddr) -> Result<(), Refused> {
        if self.opened(socket) {
            return Ok(());
        }
        match blocked_by(socket.ip()) {
            Some(rule) => Err(Refused::Address(rule)),
            None => Ok(()),
        }
    }

    /// Checks what can be checked before connecting: the scheme, and the host when it is
    /// an IP literal (the resolver is not asked about those).
    pub fn check_url(&self, url: &url::Url) -> Result<(), Refused> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refused::Scheme(url.scheme().to_string()));
        }
        let ip = match url.host() {
            None => return Err(Refused::NoHost),
            Some(url::Host::Domain(_)) => return Ok(()),
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
        };
        let port = url.port_or_known_default().unwrap_or(0);
        self.check(SocketAddr::new(ip, port))
    }

    /// Resolves `host` and checks every address; all of them, or a refusal.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Refused> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let resolved: Vec<SocketAddr> = match IpAddr::from_str(bare) {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((bare, port))
                .await
                .map_err(|_| Refused::Unresolvable(host.to_string()))?
                .collect(),
        };
        if resolved.is_empty() {
            return Err(Refused::Unresolvable(host.to_string()));
        }
        for socket in &resolved {
            self.check(*socket)?;
        }
        Ok(resolved)
    }

    /// Where an SMTP connection may go: a mail port, and checked addresses only.
    pub async fn smtp_addresses(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Refused> {
        let resolved = self.resolve(host, port).await?;
        let port_allowed =
            SMTP_PORTS.contains(&port) || resolved.iter().all(|s| self.sockets.contains(s));
        if port_allowed {
            Ok(resolved)
        } else {
            Err(Refused::SmtpPort(port))
        }
    }
}

/// The rule that blocks `ip`, if any.
fn blocked_by(ip: IpAddr) -> Option<&'static str> {
    BLOCKLIST
        .iter()
        .find(|(net, _)| net.contains(&ip))
        .map(|(_, rule)| *rule)
}

/// A DNS resolver for reqwest that hands out only addresses the policy permits, so the
/// address checked is the address connected to.
pub struct GuardedResolver(pub Arc<Guard>);

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.0.clone();
        Box::pin(async move {
            // The port is not known here; the address rule does not depend on it except for
            // allowed sockets, which are meant for SMTP.
            let resolved = guard.resolve(name.as_str(), 0).await?;
            let addrs: Addrs = Box::new(resolved.into_iter());
            Ok(addrs)
        })
    }
}

/// The policy's refusal inside a reqwest error chain, if that is what stopped the request.
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

    fn at(s: &str) -> SocketAddr {
        SocketAddr::new(s.parse().expect("test address"), 443)
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
            "255.255.255.255",
            "::",
            "::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:8.8.8.8",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "224.0.0.1",
            "ff02::1",
        ] {
            assert!(guard.check(at(bad)).is_err(), "{bad} must be refused");
        }
        for good in ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"] {
            assert!(guard.check(at(good)).is_ok(), "{good} must pass");
        }
    }

    #[test]
    fn a_refusal_names_the_rule_not_the_address() {
        let guard = Guard::new(&[]);
        let text = guard
            .check(at("169.254.169.254"))
            .expect_err("refused")
            .to_string();
        assert!(text.contains("link-local"), "{text}");
        assert!(!text.contains("169.254.169.254 "), "{text}");
        let text = guard
            .check(at("127.0.0.1"))
            .expect_err("refused")
            .to_string();
        assert!(
            text.contains("loopback") && !text.contains("127.0.0.1"),
            "{text}"
        );
    }

    #[test]
    fn the_allow_list_opens_only_its_networks_and_sockets() {
        let guard = Guard::new(&[
            "127.0.0.0/8".into(),
            "10.0.0.5".into(),
            "192.168.1.9:2526".into(),
            "nonsense".into(),
        ]);
        assert!(guard.check(at("127.0.0.1")).is_ok());
        assert!(guard.check(at("10.0.0.5")).is_ok());
        assert!(guard.check(at("10.0.0.6")).is_err());
        assert!(guard.check(at("169.254.169.254")).is_err());
        let socket: SocketAddr = "192.168.1.9:2526".parse().expect("socket");
        assert!(guard.check(socket).is_ok());
        assert!(guard.check(at("192.168.1.9")).is_err(), "only that port");
    }

    #[test]
    fn literal_hosts_and_schemes_are_checked_before_connecting() {
        let guard = Guard::new(&[]);
        let url = |s: &str| url::Url::parse(s).expect("test url");
        assert!(guard
            .check_url(&url("http://169.254.169.254/latest/meta-data"))
            .is_err());
        assert!(guard.check_url(&url("http://[::1]:8080/x")).is_err());
        assert!(guard.check_url(&url("http://[::ffff:7f00:1]/x")).is_err());
        assert!(guard.check_url(&url("file:///etc/passwd")).is_err());
        assert!(guard.check_url(&url("ftp://example.com/x")).is_err());
        assert!(guard.check_url(&url("https://example.com/a.pdf")).is_ok());
    }

    #[tokio::test]
    async fn names_are_resolved_and_every_address_checked() {
        let guard = Guard::new(&[]);
        let err = guard.resolve("localhost", 80).await.expect_err("refused");
        assert!(err.to_string().contains("loopback"), "{err}");
        let resolver = GuardedResolver(Arc::new(guard));
        let name = Name::from_str("localhost").expect("name");
        let err = match resolver.resolve(name).await {
            Ok(_) => panic!("localhost must be refused"),
            Err(e) => e,
        };
        assert!(refusal_in(err.as_ref()).is_some(), "{err}");
        let open = Guard::new(&["127.0.0.0/8".into(), "::1/128".into()]);
        assert!(open.resolve("localhost", 80).await.is_ok());
    }

    #[tokio::test]
    async fn smtp_goes_only_to_mail_ports_on_public_or_allowed_addresses() {
        let guard = Guard::new(&[]);
        for private in ["127.0.0.1", "10.0.0.1", "localhost", "[::1]"] {
            let err = guard
                .smtp_addresses(private, 25)
                .await
                .expect_err("refused");
            assert!(matches!(err, Refused::Address(_)), "{private}: {err}");
        }
        let err = guard
            .smtp_addresses("93.184.216.34", 6379)
            .await
            .expect_err("refused");
        assert!(matches!(err, Refused::SmtpPort(6379)), "{err}");
        for port in SMTP_PORTS {
            assert!(guard.smtp_addresses("93.184.216.34", *port).await.is_ok());
        }
        let lab = Guard::new(&["127.0.0.1:2526".into(), "10.0.0.0/8".into()]);
        assert!(lab.smtp_addresses("127.0.0.1", 2526).await.is_ok());
        assert!(lab.smtp_addresses("127.0.0.1", 2527).await.is_err());
        assert!(lab.smtp_addresses("10.0.0.7", 587).await.is_ok());
        assert!(matches!(
            lab.smtp_addresses("10.0.0.7", 8080).await,
            Err(Refused::SmtpPort(8080))
        ));
    }
}
