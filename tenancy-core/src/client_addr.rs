//! The client's address behind proxies: [`TrustedProxies`].
//!
//! The failure throttle, the security log and the audit's `client_addr`
//! all count by the client's address. Behind a load balancer every
//! connection comes from the balancer, so without help every caller would
//! share one address, and one caller's forged tokens would lock out all the
//! others. A forwarding header says who the balancer spoke for, but anyone
//! can send one: it is believed only when the connection comes from a proxy
//! the operator trusts (`network.trusted_proxies`,
//! `TENANCY_TRUSTED_PROXIES`).
//!
//! The header is read from the right, as axum-client-ip's rightmost
//! strategies and actix-web's advice for `realip_remote_addr` have it: each
//! proxy appends the address it received the request from, so the hops a
//! trusted proxy wrote are at the right end and anything further left may
//! be the client's invention. Walking left from the peer, every hop that is
//! itself a trusted proxy is passed; the first that is not is the client.
//! A hop that is not an address (`unknown`, an obfuscated `_name`) stops
//! the walk at the trusted proxy that reported it. Only the last 64 hops are
//! read.
//!
//! One header is read, the one the operator names
//! (`network.forwarded_header`: `x-forwarded-for`, the default, or
//! `forwarded`): a proxy that appends to one of them passes the other
//! through untouched, so reading both would let the client write its own.
//!
//! ```
//! use tenancy_core::client_addr::{ForwardedHeader, TrustedProxies};
//! use tenancy_core::engine::RequestHead;
//!
//! let proxies = TrustedProxies::new(vec!["10.0.0.0/8".parse()?], ForwardedHeader::XForwardedFor);
//! let (parts, ()) = http::Request::get("/")
//!     .header("x-forwarded-for", "198.51.100.1, 203.0.113.9, 10.0.0.3")
//!     .body(())?
//!     .into_parts();
//! let head = RequestHead::from(&parts);
//!
//! // From the balancer: the rightmost hop that is not a trusted proxy.
//! let from_proxy = head.with_client_addr(Some("10.0.0.2".parse()?));
//! assert_eq!(proxies.client_addr(&from_proxy), Some("203.0.113.9".parse()?));
//!
//! // Straight from a client: its header is not believed.
//! let direct = head.with_client_addr(Some("192.0.2.7".parse()?));
//! assert_eq!(proxies.client_addr(&direct), Some("192.0.2.7".parse()?));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::HeaderName;
use ipnet::IpNet;
use serde::Deserialize;

use crate::request::RequestHead;

/// Most hops of a forwarding header read (the rightmost ones).
pub const MAX_HOPS: usize = 64;

/// The forwarding header trusted proxies write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (nginx, HAProxy, AWS and
    /// Google load balancers).
    #[default]
    XForwardedFor,
    /// `Forwarded: for=client, for=proxy1` (RFC 7239).
    Forwarded,
}

impl ForwardedHeader {
    fn name(self) -> HeaderName {
        match self {
            Self::XForwardedFor => HeaderName::from_static("x-forwarded-for"),
            Self::Forwarded => http::header::FORWARDED,
        }
    }
}

/// The proxies whose forwarding header is believed, and which header they
/// write. Empty (the default): the client is the peer of the connection,
/// and no header is read. Cheap to clone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Arc<[IpNet]>,
    header: ForwardedHeader,
}

impl TrustedProxies {
    /// Proxies in `nets`, writing `header`.
    pub fn new(nets: Vec<IpNet>, header: ForwardedHeader) -> Self {
        Self {
            nets: nets.into(),
            header,
        }
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Whether `addr` is a trusted proxy.
    pub fn trusts(&self, addr: IpAddr) -> bool {
        let addr = addr.to_canonical();
        self.nets.iter().any(|net| net.contains(&addr))
    }

    /// The client's address of `head`, whose
    /// [`client_addr`](RequestHead::client_addr) is the peer of the
    /// connection: the peer itself unless it is a trusted proxy, else the
    /// rightmost hop of the forwarding header that is not one.
    pub fn client_addr(&self, head: &RequestHead<'_>) -> Option<IpAddr> {
        let peer = head.client_addr()?;
        if !self.trusts(peer) {
            return Some(peer);
        }
        let hops = self.hops(head);
        let mut client = peer;
        for hop in hops.iter().rev() {
            match *hop {
                Some(addr) if self.trusts(addr) => client = addr,
                Some(addr) => return Some(addr),
                // What the proxy reported is not an address: the proxy is
                // the last address known.
                None => return Some(client),
            }
        }
        Some(client)
    }

    /// The last [`MAX_HOPS`] hops of the header, left to right; `None` for
    /// a hop that is not an address.
    fn hops(&self, head: &RequestHead<'_>) -> VecDeque<Option<IpAddr>> {
        let mut hops = VecDeque::new();
        let header = self.header;
        head.each_header(&header.name(), &mut |value| {
            // Element by element: a proxy appends its hop to the line the
            // client sent, so a byte the client put in its own element
            // must not make the proxy's unreadable.
            for element in value.split(|b| *b == b',') {
                let hop = std::str::from_utf8(element)
                    .ok()
                    .and_then(|element| match header {
                        ForwardedHeader::XForwardedFor => parse_node(element),
                        ForwardedHeader::Forwarded => forwarded_for(element),
                    });
                push_hop(&mut hops, hop);
            }
        });
        hops
    }
}

fn push_hop(hops: &mut VecDeque<Option<IpAddr>>, hop: Option<IpAddr>) {
    if hops.len() == MAX_HOPS {
        hops.pop_front();
    }
    hops.push_back(hop);
}

/// The `for` parameter of one `Forwarded` element (`for=192.0.2.60;
/// proto=https`), as an address.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("for") {
            return None;
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        parse_node(value)
    })
}

/// A node as proxies write it: `192.0.2.60`, `2001:db8::1`,
/// `[2001:db8::1]`, with or without a port (`192.0.2.60:4711`,
/// `[2001:db8::1]:4711`).
fn parse_node(node: &str) -> Option<IpAddr> {
    let node = node.trim();
    if let Ok(addr) = node.parse::<IpAddr>() {
        return Some(addr.to_canonical());
    }
    if let Ok(addr) = node.parse::<SocketAddr>() {
        return Some(addr.ip().to_canonical());
    }
    let inner = node.strip_prefix('[')?.strip_suffix(']')?;
    inner.parse::<IpAddr>().ok().map(|a| a.to_canonical())
}

/// Reads what a fuzzer gives as one `Forwarded` and one `X-Forwarded-For`
/// header from a trusted peer; the answers are the client addresses each
/// yields. For the fuzz targets only.
#[cfg(fuzzing)]
#[doc(hidden)]
pub fn client_addrs_for_fuzzing(value: &[u8]) -> [Option<IpAddr>; 2] {
    let peer: IpAddr = IpAddr::from([10, 0, 0, 1]);
    let nets = vec![IpNet::new(peer, 8).unwrap_or_default().trunc()];
    [ForwardedHeader::Forwarded, ForwardedHeader::XForwardedFor].map(|header| {
        let mut request = http::Request::get("/");
        if let Ok(value) = http::HeaderValue::from_bytes(value) {
            request = request.header(header.name(), value);
        }
        let Ok(request) = request.body(()) else {
            return None;
        };
        let (parts, ()) = request.into_parts();
        let head = RequestHead::from(&parts).with_client_addr(Some(peer));
        TrustedProxies::new(nets.clone(), header).client_addr(&head)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn proxies(header: ForwardedHeader) -> TrustedProxies {
        TrustedProxies::new(
            vec![
                "10.0.0.0/8".parse().unwrap(),
                "2001:db8:ffff::/48".parse().unwrap(),
            ],
            header,
        )
    }

    /// The client address of a request from `peer` carrying `values` of
    /// the header.
    fn client(header: ForwardedHeader, peer: &str, values: &[&str]) -> Option<IpAddr> {
        let mut request = http::Request::get("/");
        for value in values {
            request = request.header(header.name(), *value);
        }
        let (parts, ()) = request.body(()).unwrap().into_parts();
        let head = RequestHead::from(&parts).with_client_addr(Some(ip(peer)));
        proxies(header).client_addr(&head)
    }

    use ForwardedHeader::{Forwarded, XForwardedFor as Xff};

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_sends() {
        assert_eq!(
            client(Xff, "192.0.2.7", &["198.51.100.1"]),
            Some(ip("192.0.2.7"))
        );
        assert_eq!(
            client(Forwarded, "192.0.2.7", &["for=198.51.100.1"]),
            Some(ip("192.0.2.7"))
        );
        // Its own spoofed "proxy" hops change nothing either.
        assert_eq!(
            client(Xff, "192.0.2.7", &["198.51.100.1, 10.0.0.9"]),
            Some(ip("192.0.2.7"))
        );
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_hop_is_the_client() {
        assert_eq!(
            client(Xff, "10.0.0.2", &["203.0.113.9"]),
            Some(ip("203.0.113.9"))
        );
        // The client wrote the leftmost entry itself; the proxy appended.
        assert_eq!(
            client(Xff, "10.0.0.2", &["1.2.3.4, 203.0.113.9"]),
            Some(ip("203.0.113.9"))
        );
        // Two proxies in a row.
        assert_eq!(
            client(Xff, "10.0.0.2", &["1.2.3.4, 203.0.113.9, 10.1.1.1"]),
            Some(ip("203.0.113.9"))
        );
        // Several header lines are one list, in order.
        assert_eq!(
            client(Xff, "10.0.0.2", &["1.2.3.4", "203.0.113.9, 10.1.1.1"]),
            Some(ip("203.0.113.9"))
        );
        assert_eq!(
            client(
                Forwarded,
                "10.0.0.2",
                &["for=1.2.3.4, for=\"[2001:db8::17]:4711\";proto=https, For=10.1.1.1"]
            ),
            Some(ip("2001:db8::17"))
        );
    }

    #[test]
    fn ports_brackets_and_mapped_addresses_are_read() {
        for (value, expected) in [
            ("203.0.113.9:5555", "203.0.113.9"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            (" 2001:db8::1 ", "2001:db8::1"),
            ("::ffff:203.0.113.9", "203.0.113.9"),
        ] {
            assert_eq!(
                client(Xff, "10.0.0.2", &[value]),
                Some(ip(expected)),
                "{value}"
            );
        }
        // A mapped trusted proxy is trusted.
        assert_eq!(
            client(Xff, "::ffff:10.0.0.2", &["203.0.113.9"]),
            Some(ip("203.0.113.9"))
        );
    }

    #[test]
    fn a_hop_that_is_no_address_stops_at_the_proxy_that_reported_it() {
        assert_eq!(client(Xff, "10.0.0.2", &["unknown"]), Some(ip("10.0.0.2")));
        assert_eq!(
            client(Xff, "10.0.0.2", &["203.0.113.9, garbage, 10.1.1.1"]),
            Some(ip("10.1.1.1"))
        );
        assert_eq!(
            client(Forwarded, "10.0.0.2", &["for=_hidden"]),
            Some(ip("10.0.0.2"))
        );
        assert_eq!(
            client(Forwarded, "10.0.0.2", &["proto=https"]),
            Some(ip("10.0.0.2")),
            "an element without for"
        );
    }

    #[test]
    fn a_client_byte_that_is_not_text_spoils_only_its_own_element() {
        let mut request = http::Request::get("/");
        request = request.header(
            "x-forwarded-for",
            http::HeaderValue::from_bytes(b"1.2.3.4\x80, 203.0.113.9").unwrap(),
        );
        let (parts, ()) = request.body(()).unwrap().into_parts();
        let head = RequestHead::from(&parts).with_client_addr(Some(ip("10.0.0.2")));
        assert_eq!(proxies(Xff).client_addr(&head), Some(ip("203.0.113.9")));
    }

    #[test]
    fn no_header_or_only_proxies_leave_the_last_proxy_known() {
        assert_eq!(client(Xff, "10.0.0.2", &[]), Some(ip("10.0.0.2")));
        assert_eq!(client(Xff, "10.0.0.2", &["10.9.9.9"]), Some(ip("10.9.9.9")));
    }

    #[test]
    fn only_the_named_header_is_read() {
        let mut request = http::Request::get("/");
        request = request.header("forwarded", "for=198.51.100.66");
        request = request.header("x-forwarded-for", "203.0.113.9");
        let (parts, ()) = request.body(()).unwrap().into_parts();
        let head = RequestHead::from(&parts).with_client_addr(Some(ip("10.0.0.2")));
        assert_eq!(proxies(Xff).client_addr(&head), Some(ip("203.0.113.9")));
        assert_eq!(
            proxies(Forwarded).client_addr(&head),
            Some(ip("198.51.100.66"))
        );
    }

    #[test]
    fn a_long_chain_keeps_its_right_end() {
        let mut hops: Vec<String> = (0..1000).map(|i| format!("192.0.2.{}", i % 250)).collect();
        hops.push("203.0.113.9".to_owned());
        let value = hops.join(",");
        assert_eq!(client(Xff, "10.0.0.2", &[&value]), Some(ip("203.0.113.9")));
        // Sixty-four trusted hops: the walk ends on the leftmost one read.
        let proxies_only: Vec<String> = (0..100).map(|i| format!("10.0.0.{i}")).collect();
        let value = format!("203.0.113.9, {}", proxies_only.join(", "));
        assert_eq!(client(Xff, "10.0.0.2", &[&value]), Some(ip("10.0.0.36")));
    }

    #[test]
    fn no_trusted_proxy_means_the_peer() {
        let none = TrustedProxies::default();
        assert!(none.is_empty());
        let (parts, ()) = http::Request::get("/")
            .header("x-forwarded-for", "203.0.113.9")
            .body(())
            .unwrap()
            .into_parts();
        let head = RequestHead::from(&parts).with_client_addr(Some(ip("127.0.0.1")));
        assert_eq!(none.client_addr(&head), Some(ip("127.0.0.1")));
        let head = RequestHead::from(&parts);
        assert_eq!(none.client_addr(&head), None, "no peer, no address");
    }
}
