//! `trusted_proxies`: the CIDR list of peers allowed to state the client address (a PROXY
//! header, `X-Forwarded-For`). Parsed once per snapshot; matching is a short linear scan.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

/// A list of networks; an address is trusted when any of them contains it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

/// Why a `trusted_proxies` entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// Not `address/prefix` (nor a bare address), or the prefix is too long for the family.
    #[error(
        "invalid CIDR \"{0}\": expected an address/prefix such as \"10.0.0.0/8\" or \"::1/128\""
    )]
    Invalid(String),
    /// Bits set past the prefix: probably a typo, and ambiguous about what was meant.
    #[error(
        "invalid CIDR \"{given}\": bits are set past the /{prefix} prefix (did you mean \"{network}\"?)"
    )]
    HostBits {
        /// As written.
        given: String,
        /// Its prefix length.
        prefix: u8,
        /// The network it truncates to.
        network: IpNet,
    },
}

/// Parses one entry: `10.0.0.0/8`, `::1/128`, or a bare address (one host: /32 or /128).
pub fn parse_cidr(text: &str) -> Result<IpNet, CidrError> {
    let trimmed = text.trim();
    if let Ok(ip) = trimmed.parse::<IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    let net: IpNet = trimmed
        .parse()
        .map_err(|_| CidrError::Invalid(text.to_string()))?;
    if net.trunc() != net {
        return Err(CidrError::HostBits {
            given: text.to_string(),
            prefix: net.prefix_len(),
            network: net.trunc(),
        });
    }
    Ok(net)
}

impl TrustedProxies {
    /// A list of parsed networks.
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self { nets }
    }

    /// Whether no network is listed (nothing is trusted).
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Whether `ip` is in one of the networks. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`,
    /// what an IPv6 socket reports for an IPv4 client) matches as its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|n| n.contains(&ip))
    }
}

impl fmt::Display for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, n) in self.nets.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{n}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> TrustedProxies {
        TrustedProxies::new(entries.iter().map(|e| parse_cidr(e).unwrap()).collect())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn matches_v4_v6_and_mapped_addresses() {
        let t = list(&["127.0.0.1/32", "10.0.0.0/8", "::1/128", "2001:db8:1::/48"]);
        for yes in [
            "127.0.0.1",
            "10.255.0.3",
            "::1",
            "2001:db8:1:ffff::9",
            "::ffff:10.1.2.3",
        ] {
            assert!(t.contains(ip(yes)), "{yes}");
        }
        for no in [
            "127.0.0.2",
            "11.0.0.1",
            "::2",
            "2001:db8:2::1",
            "::ffff:11.0.0.1",
        ] {
            assert!(!t.contains(ip(no)), "{no}");
        }
        assert!(!TrustedProxies::default().contains(ip("127.0.0.1")));
        assert!(list(&["0.0.0.0/0"]).contains(ip("203.0.113.9")));
        assert!(!list(&["0.0.0.0/0"]).contains(ip("2001:db8::1")));
        assert_eq!(
            t.to_string(),
            "127.0.0.1/32, 10.0.0.0/8, ::1/128, 2001:db8:1::/48"
        );
    }

    #[test]
    fn bare_addresses_are_single_hosts() {
        assert_eq!(
            parse_cidr(" 192.0.2.1 ").unwrap().to_string(),
            "192.0.2.1/32"
        );
        assert_eq!(parse_cidr("::1").unwrap().to_string(), "::1/128");
    }

    #[test]
    fn bad_entries_are_refused_with_a_reason() {
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "localhost",
            "",
            "10.0.0.0/",
            "/8",
        ] {
            let e = parse_cidr(bad).unwrap_err();
            assert_eq!(e, CidrError::Invalid(bad.to_string()));
            assert!(
                e.to_string()
                    .starts_with(&format!("invalid CIDR \"{bad}\"")),
                "{e}"
            );
        }
        let e = parse_cidr("10.0.0.1/8").unwrap_err();
        assert!(e.to_string().contains("did you mean \"10.0.0.0/8\""), "{e}");
    }
}
