//! The egress guard: where the server may connect on a tenant's behalf.
//!
//! What a tenant configures (its realm's issuer and JWK set URL, and the
//! discovery document its issuer serves) chooses where the server opens
//! connections. Left alone, that turns the server into the tenant's probe of
//! the operator's network: Redis on loopback, a cloud's metadata service on
//! its link-local address, anything on a private range. [`EgressGuard`]
//! refuses those destinations:
//!
//! - loopback (`127.0.0.0/8`, `::1`), private (`10/8`, `172.16/12`,
//!   `192.168/16`), link-local (`169.254/16`, `fe80::/10`), unique-local
//!   (`fc00::/7`, where AWS's `fd00:ec2::254` lives), carrier-grade NAT
//!   (`100.64/10`, where Alibaba's `100.100.100.200` lives), multicast,
//!   unspecified, broadcast and the other special-purpose ranges of RFC 6890
//!   (`192.0.0.0/24`, where Oracle's `192.0.0.192` lives; `198.18/15`;
//!   `240/4`; in IPv6 `::/8`, `100::/64`, `2001::/23`, `2001:db8::/32`); an
//!   IPv6 address that embeds an IPv4 one (`::ffff:a.b.c.d`,
//!   `64:ff9b::a.b.c.d`, 6to4's `2002:aabb:ccdd::`) is judged by the IPv4
//!   address;
//! - unless the operator allows a range ([`EgressGuard::new`]:
//!   `egress.allow`, `TENANCY_EGRESS_ALLOW`), for an identity provider on the
//!   internal network.
//!
//! The check is made on the addresses a name resolves to, in the resolver
//! the connection itself uses ([`EgressGuard::resolver`]): the address
//! checked is the address connected to, so a name that answers a public
//! address to the check and a private one to the connection (DNS
//! rebinding) has no window. An address written in the URL is checked
//! before the request ([`EgressGuard::check_url`]). A client built
//! with the guard ([`EgressGuard::client_builder`]) uses no proxy (a proxy
//! would resolve the name itself, past the guard) and follows no redirect.
//!
//! ```
//! use tenancy_core::egress::EgressGuard;
//!
//! let guard = EgressGuard::default();
//! assert!(!guard.permits("127.0.0.1".parse()?));
//! assert!(!guard.permits("169.254.169.254".parse()?));
//! assert!(!guard.permits("::ffff:10.0.0.1".parse()?));
//! assert!(guard.permits("93.184.215.14".parse()?));
//!
//! // An internal identity provider, allowed by the operator.
//! let guard = EgressGuard::new(vec!["10.20.0.0/16".parse()?]);
//! assert!(guard.permits("10.20.1.2".parse()?));
//! assert!(!guard.permits("10.21.1.2".parse()?));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

/// Where the server may connect on a tenant's behalf: anywhere public, and
/// the internal ranges the operator allows. Cheap to clone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressGuard {
    allow: Arc<[IpNet]>,
}

/// Why a destination was refused. Its text names the address; it is for
/// the operator's log, never for the tenant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{addr} is an internal address, and egress.allow does not include it")]
pub struct EgressRefused {
    /// The refused address.
    pub addr: IpAddr,
}

impl EgressGuard {
    /// A guard that lets through, besides public addresses, those in
    /// `allow`.
    pub fn new(allow: Vec<IpNet>) -> Self {
        Self {
            allow: allow.into(),
        }
    }

    /// The ranges allowed besides public addresses.
    pub fn allowed(&self) -> &[IpNet] {
        &self.allow
    }

    /// Whether the server may connect to `addr`.
    pub fn permits(&self, addr: IpAddr) -> bool {
        let addr = canonical(addr);
        !is_internal(addr) || self.allow.iter().any(|net| net.contains(&addr))
    }

    /// `Ok` when the server may connect to `addr`.
    pub fn check(&self, addr: IpAddr) -> Result<(), EgressRefused> {
        if self.permits(addr) {
            Ok(())
        } else {
            Err(EgressRefused { addr })
        }
    }

    /// Checks `url`'s host when it is an address: such a host is
    /// connected to without a lookup, so the resolver never sees it. The URL
    /// is the one the request is made with, parsed as `reqwest` parses it
    /// (WHATWG), so `https://2130706433/` and `https://0x7f.1/` are the
    /// loopback addresses they become. A name passes here; the resolver
    /// checks what it resolves to.
    ///
    /// ```
    /// use tenancy_core::egress::EgressGuard;
    ///
    /// let guard = EgressGuard::default();
    /// for url in ["https://127.0.0.1/", "https://2130706433/", "https://[::1]:8443/", "https://0x7f.1/"] {
    ///     assert!(guard.check_url(&url.parse()?).is_err(), "{url}");
    /// }
    /// assert!(guard.check_url(&"https://id.example.com/".parse()?).is_ok()); // resolved later
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), EgressRefused> {
        match url.host() {
            Some(url::Host::Ipv4(v4)) => self.check(IpAddr::V4(v4)),
            Some(url::Host::Ipv6(v6)) => self.check(IpAddr::V6(v6)),
            Some(url::Host::Domain(_)) | None => Ok(()),
        }
    }

    /// A DNS resolver for `reqwest` that resolves with the system's
    /// resolver and hands the connection only addresses this guard permits;
    /// a name with none left fails to resolve.
    pub fn resolver(&self) -> Arc<dyn reqwest::dns::Resolve> {
        Arc::new(GuardedResolver {
            guard: self.clone(),
        })
    }

    /// A `reqwest` client builder that connects only where this guard
    /// permits: its resolver, no proxy, no redirect.
    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .dns_resolver(self.resolver())
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
    }
}

/// IPv4 addresses embedded in IPv6 (mapped, and the NAT64 well-known
/// prefix) as IPv4; everything else as it is.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let s = v6.segments();
            let o = v6.octets();
            // 64:ff9b::/96 (RFC 6052): the last 32 bits are an IPv4 address.
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                return IpAddr::V4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
            }
            // 2002::/16 (6to4, RFC 3056): the next 32 bits are.
            if s[0] == 0x2002 {
                return IpAddr::V4(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
            }
            IpAddr::V6(v6)
        }
        v4 => v4,
    }
}

/// Whether `addr` is not a public unicast address: loopback, private,
/// link-local, unique-local, carrier-grade NAT, multicast, unspecified,
/// broadcast, documentation or another special-purpose range.
pub fn is_internal(addr: IpAddr) -> bool {
    match canonical(addr) {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => is_internal_v6(v6),
    }
}

fn is_internal_v4(v4: Ipv4Addr) -> bool {
    let [a, b, c, _] = v4.octets();
    v4.is_unspecified()
        || v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_multicast()
        || v4.is_broadcast()
        || v4.is_documentation()
        // 0.0.0.0/8: "this network".
        || a == 0
        // 100.64.0.0/10: carrier-grade NAT (and Alibaba's metadata service).
        || (a == 100 && (b & 0xc0) == 64)
        // 192.0.0.0/24: IETF protocol assignments (and Oracle's metadata).
        || (a == 192 && b == 0 && c == 0)
        // 198.18.0.0/15: benchmarking.
        || (a == 198 && (b & 0xfe) == 18)
        // 240.0.0.0/4: reserved.
        || a >= 240
}

fn is_internal_v6(v6: Ipv6Addr) -> bool {
    let [first, second, ..] = v6.segments();
    // ::/8: reserved (unspecified, loopback, IPv4-compatible, and the
    // local-use NAT64 prefix 64:ff9b:1::/48).
    (first & 0xff00) == 0
        || v6.is_multicast()
        // fc00::/7: unique local (and AWS's fd00:ec2::254).
        || (first & 0xfe00) == 0xfc00
        // fe80::/10 link-local, fec0::/10 the old site-local.
        || (first & 0xffc0) == 0xfe80
        || (first & 0xffc0) == 0xfec0
        // 2001::/23: IETF protocol assignments (Teredo, benchmarking, …).
        || (first == 0x2001 && second < 0x0200)
        // 2001:db8::/32: documentation.
        || (first == 0x2001 && second == 0x0db8)
        // 100::/64: discard.
        || v6.segments()[..4] == [0x100, 0, 0, 0]
}

/// The resolver of [`EgressGuard::resolver`].
struct GuardedResolver {
    guard: EgressGuard,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.guard.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let permitted: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|addr| match guard.check(addr.ip()) {
                    Ok(()) => true,
                    Err(e) => {
                        refused = Some(e);
                        false
                    }
                })
                .collect();
            if permitted.is_empty() {
                let error: Box<dyn std::error::Error + Send + Sync> = match refused {
                    Some(e) => Box::new(e),
                    None => format!("{host} resolves to no address").into(),
                };
                return Err(error);
            }
            let addrs: reqwest::dns::Addrs = Box::new(permitted.into_iter());
            Ok(addrs)
        })
    }
}

/// Reads a comma list of ranges (`10.0.0.0/8, 192.168.1.7`): a bare
/// address is a range of one. The message names the entry that is not one.
pub fn parse_ranges(text: &str) -> Result<Vec<IpNet>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(parse_range)
        .collect()
}

/// One range: `10.0.0.0/8`, or a bare address as a range of one.
pub fn parse_range(entry: &str) -> Result<IpNet, String> {
    entry
        .parse::<IpNet>()
        .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
        .map(|net| net.trunc())
        .map_err(|_| format!("{entry:?} is not an address or a CIDR range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn internal_ranges_are_refused_and_public_ones_pass() {
        let guard = EgressGuard::default();
        for refused in [
            "127.0.0.1",
            "127.255.255.254",
            "0.0.0.0",
            "0.1.2.3",
            "10.255.255.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.100.100.200",
            "100.127.255.255",
            "192.0.0.192",
            "198.18.0.1",
            "198.19.255.255",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "192.0.2.1",
            "::",
            "::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "feff::1",
            "fc00::1",
            "fd00:ec2::254",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::7f00:1",
            "::127.0.0.1",
            "100::1",
            "2001:db8::1",
            "::1:0:0:1",
            "64:ff9b:1::a00:1",
            "2001::1",
            "2001:1ff::1",
            "2002:7f00:1::1",
            "2002:a9fe:a9fe::",
        ] {
            assert!(!guard.permits(ip(refused)), "{refused} must be refused");
            assert!(guard.check(ip(refused)).is_err());
        }
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.215.14",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.255.255",
            "172.32.0.1",
            "192.0.1.1",
            "198.17.255.255",
            "198.20.0.1",
            "223.255.255.255",
            "169.253.0.1",
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "2001:db9::1",
            "2001:200::1",
            "100:1::1",
            "2002:101:101::1",
            "1ff::1",
            "2a00:1450:4001::1",
            "::ffff:1.1.1.1",
            "64:ff9b::101:101",
            "fe7f::1",
            "fbff::1",
        ] {
            assert!(guard.permits(ip(public)), "{public} must pass");
        }
    }

    #[test]
    fn the_operator_allows_ranges_and_nothing_else() {
        let guard = EgressGuard::new(parse_ranges("127.0.0.1, 10.20.0.0/16 ,fd12::/16").unwrap());
        assert!(guard.permits(ip("127.0.0.1")));
        assert!(
            guard.permits(ip("::ffff:127.0.0.1")),
            "mapped, judged as v4"
        );
        assert!(!guard.permits(ip("127.0.0.2")));
        assert!(guard.permits(ip("10.20.255.1")));
        assert!(!guard.permits(ip("10.21.0.1")));
        assert!(guard.permits(ip("fd12::5")));
        assert!(!guard.permits(ip("fd13::5")));
        assert!(!guard.permits(ip("169.254.169.254")));
        assert_eq!(guard.allowed().len(), 3);
    }

    #[test]
    fn url_hosts_that_are_addresses_are_checked_and_names_pass_to_the_resolver() {
        let guard = EgressGuard::default();
        let check = |url: &str| guard.check_url(&url.parse().unwrap());
        for refused in [
            "https://127.0.0.1/",
            "HTTPS://127.0.0.1:8443/x",
            "https://[::1]/",
            "https://[::ffff:10.0.0.1]/",
            "https://2130706433/",
            "https://0x7f000001/",
            "https://127.1/",
            "https://0177.0.0.1/",
            "https://169.254.169.254/latest/meta-data/",
        ] {
            assert!(check(refused).is_err(), "{refused}");
        }
        assert!(check("https://1.1.1.1/").is_ok());
        assert!(check("https://localhost/").is_ok(), "resolved later");
        assert_eq!(
            check("https://10.0.0.1/").unwrap_err().to_string(),
            "10.0.0.1 is an internal address, and egress.allow does not include it"
        );
    }

    #[test]
    fn ranges_parse_with_clear_refusals() {
        assert_eq!(
            parse_ranges("10.0.0.1/8, 127.0.0.1").unwrap(),
            vec![
                "10.0.0.0/8".parse::<IpNet>().unwrap(),
                "127.0.0.1/32".parse().unwrap()
            ]
        );
        assert_eq!(parse_ranges(" , ").unwrap(), Vec::<IpNet>::new());
        assert!(parse_ranges("10.0.0.0/33").is_err());
        assert!(parse_ranges("localhost").unwrap_err().contains("localhost"));
    }

    #[tokio::test]
    async fn names_resolving_to_internal_addresses_resolve_to_nothing() {
        let guard = EgressGuard::default();
        let err = guard
            .resolver()
            .resolve("localhost".parse().unwrap())
            .await
            .err()
            .expect("localhost is loopback");
        assert!(err.to_string().contains("internal address"), "{err}");
        // A number the system resolver reads as an address.
        assert!(
            guard
                .resolver()
                .resolve("2130706433".parse().unwrap())
                .await
                .is_err()
        );
        let allowed = EgressGuard::new(vec![
            "127.0.0.0/8".parse().unwrap(),
            "::1/128".parse().unwrap(),
        ]);
        let addrs: Vec<SocketAddr> = allowed
            .resolver()
            .resolve("localhost".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert!(!addrs.is_empty());
        assert!(addrs.iter().all(|a| a.ip().is_loopback()));
    }
}
