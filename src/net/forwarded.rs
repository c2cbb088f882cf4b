//! `X-Forwarded-For` from trusted proxies: the client address of one request on a listener
//! with `trust_forwarded_for`, for listeners behind another HTTP proxy.
//!
//! The usual algorithm (nginx's `real_ip_recursive`, Envoy's trusted hops): only when the
//! connection's peer is a trusted proxy, walk the header from the right, skip every address
//! that is itself a trusted proxy, and take the first one that is not. Everything left of it
//! was written by the client and is never believed. No allocation.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use http::header::HeaderName;

use super::ClientAddressPolicy;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The client address of one request on a listener with `policy`. `client` is the
/// connection's client address (after any PROXY header): the party that wrote this request's
/// headers. Trusting the TCP peer here instead would let a client behind a trusted
/// PROXY-protocol balancer choose its own address with a forged `X-Forwarded-For`.
pub fn client_ip_for_request(
    policy: &ClientAddressPolicy,
    client: SocketAddr,
    headers: &HeaderMap,
) -> IpAddr {
    client_ip(policy, client.ip(), headers)
}

/// [`client_ip_for_request`] on a policy: `peer` itself unless `trust_forwarded_for` is set
/// and `peer` is a trusted proxy; then the right-most `X-Forwarded-For` address that is not a
/// trusted proxy. The walk stops at an entry that is not an address (`unknown`, garbage) and
/// returns the last trusted hop before it; when every entry is trusted, the left-most one.
pub fn client_ip(policy: &ClientAddressPolicy, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    let mut client = peer.to_canonical();
    let trusted = &policy.trusted_proxies;
    if !trusts_forwarded(policy, client) {
        return client;
    }
    // Several X-Forwarded-For lines form one list, in order (RFC 9110 §5.3).
    for value in headers.get_all(&X_FORWARDED_FOR).iter().rev() {
        for entry in value.as_bytes().rsplit(|&b| b == b',') {
            let entry = entry.trim_ascii();
            if entry.is_empty() {
                continue; // empty list elements are allowed and ignored (RFC 9110 §5.6.1)
            }
            let Some(ip) = forwarded_ip(entry) else {
                return client;
            };
            client = ip;
            if !trusted.contains(ip) {
                return client;
            }
        }
    }
    client
}

/// Whether `peer` is believed when it forwards for someone else: `trust_forwarded_for` is
/// set and `peer` is among `trusted_proxies`.
pub fn trusts_forwarded(policy: &ClientAddressPolicy, peer: IpAddr) -> bool {
    policy.trust_forwarded_for && policy.trusted_proxies.contains(peer.to_canonical())
}

/// One list entry: `192.0.2.1`, `2001:db8::1`, or with a port (`192.0.2.1:443`,
/// `[2001:db8::1]:443`), or bracketed (`[2001:db8::1]`).
fn forwarded_ip(entry: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(entry).ok()?;
    let ip = text
        .parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| text.strip_prefix('[')?.strip_suffix(']')?.parse().ok())?;
    Some(ip.to_canonical())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use super::*;
    use crate::net::{TrustedProxies, parse_cidr};
    use http::HeaderValue;

    fn policy(trust: bool) -> ClientAddressPolicy {
        let nets = ["10.0.0.0/8", "127.0.0.1", "2001:db8:ffff::/48"];
        ClientAddressPolicy {
            trusted_proxies: TrustedProxies::new(
                nets.iter().map(|n| parse_cidr(n).unwrap()).collect(),
            ),
            trust_forwarded_for: trust,
            ..ClientAddressPolicy::default()
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn pick(trust: bool, peer: &str, xff: &[&str]) -> IpAddr {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        client_ip(&policy(trust), ip(peer), &h)
    }

    #[test]
    fn right_most_untrusted_entry_from_a_trusted_peer() {
        let p = "10.0.0.2";
        assert_eq!(pick(true, p, &["203.0.113.9"]), ip("203.0.113.9"));
        // The client forged the left entries; the trusted hop appended the real one.
        let chain = ["6.6.6.6, 198.51.100.7, 10.1.1.1, 10.2.2.2"];
        assert_eq!(pick(true, p, &chain), ip("198.51.100.7"));
        // Split over several lines, with ports, brackets, blanks and empty elements.
        let lines = ["1.1.1.1", " [2001:db8::5]:443 , ,10.9.9.9:80,", "127.0.0.1"];
        assert_eq!(pick(true, p, &lines), ip("2001:db8::5"));
        assert_eq!(pick(true, p, &["[2001:db8::7]"]), ip("2001:db8::7"));
        assert_eq!(pick(true, p, &["::ffff:192.0.2.10"]), ip("192.0.2.10"));
        assert_eq!(
            pick(true, p, &["2001:db8:ffff::1, 2001:db8::9"]),
            ip("2001:db8::9")
        );
    }

    #[test]
    fn untrusted_peer_or_trust_off_uses_the_peer() {
        assert_eq!(pick(true, "192.0.2.1", &["203.0.113.9"]), ip("192.0.2.1"));
        assert_eq!(pick(false, "10.0.0.2", &["203.0.113.9"]), ip("10.0.0.2"));
        assert_eq!(pick(true, "10.0.0.2", &[]), ip("10.0.0.2"));
        assert_eq!(
            pick(true, "::ffff:10.0.0.2", &["203.0.113.9"]),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn garbage_stops_the_walk_at_the_last_trusted_hop() {
        let p = "10.0.0.2";
        assert_eq!(pick(true, p, &["203.0.113.9, unknown"]), ip("10.0.0.2"));
        assert_eq!(
            pick(true, p, &["203.0.113.9, unknown, 10.3.3.3"]),
            ip("10.3.3.3")
        );
        assert_eq!(pick(true, p, &["1.2.3.4:99999"]), ip("10.0.0.2"));
        // Every hop trusted: the left-most is the best known.
        assert_eq!(pick(true, p, &["10.5.5.5, 127.0.0.1"]), ip("10.5.5.5"));
    }
}
