//! The PROXY protocol version 2 header as a client (a load balancer in front of levee) sends
//! it: how `levee demo` presents its synthetic clients' addresses to its demo-only listener.
//!
//! Only the encoder lives here, for the demo; levee's own parser is in the listener code.
//! Layout (haproxy's proxy-protocol.txt, section 2.2): the 12-byte signature, version and
//! command (`0x21`: version 2, PROXY), address family and transport (`0x11` TCP over IPv4,
//! `0x21` TCP over IPv6), the length of what follows (big endian), then source address,
//! destination address, source port, destination port. No TLVs.

use std::net::{IpAddr, SocketAddr};

/// The fixed 12-byte signature that starts every version 2 header.
pub const SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];

/// Version 2, command PROXY (the connection was relayed for a client).
pub const VERSION_PROXY: u8 = 0x21;
/// TCP over IPv4.
pub const TCP4: u8 = 0x11;
/// TCP over IPv6.
pub const TCP6: u8 = 0x21;

/// The header announcing a TCP connection from `src` to `dst`. Two IPv4 addresses give the
/// 28-byte IPv4 form; otherwise both are written as IPv6 (an IPv4 address as
/// `::ffff:a.b.c.d`), the 52-byte form.
pub fn encode(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(52);
    out.extend_from_slice(&SIGNATURE);
    out.push(VERSION_PROXY);
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.push(TCP4);
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (s, d) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            out.push(TCP6);
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&v6(s).octets());
            out.extend_from_slice(&v6(d).octets());
        }
    }
    out.extend_from_slice(&src.port().to_be_bytes());
    out.extend_from_slice(&dst.port().to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_is_28_bytes_as_the_spec_lays_out() {
        let h = encode(
            "203.0.113.7:51234".parse().unwrap(),
            "127.0.0.1:8443".parse().unwrap(),
        );
        let mut want = SIGNATURE.to_vec();
        want.extend_from_slice(&[0x21, 0x11, 0x00, 0x0C]);
        want.extend_from_slice(&[203, 0, 113, 7, 127, 0, 0, 1]);
        want.extend_from_slice(&[0xC8, 0x22, 0x20, 0xFB]);
        assert_eq!(h, want);
        assert_eq!(h.len(), 16 + 12);
    }

    #[test]
    fn ipv6_header_is_52_bytes() {
        let h = encode(
            "[2001:db8::1]:443".parse().unwrap(),
            "[::1]:8443".parse().unwrap(),
        );
        assert_eq!(h.len(), 16 + 36);
        assert_eq!(&h[..12], &SIGNATURE);
        assert_eq!(&h[12..16], &[0x21, 0x21, 0x00, 0x24]);
        assert_eq!(&h[16..20], &[0x20, 0x01, 0x0d, 0xb8]);
        assert_eq!(h[31], 1);
        assert_eq!(&h[32..48], &std::net::Ipv6Addr::LOCALHOST.octets());
        assert_eq!(&h[48..], &[0x01, 0xBB, 0x20, 0xFB]);
    }

    #[test]
    fn mixed_families_are_written_as_ipv6() {
        let h = encode(
            "198.51.100.9:1000".parse().unwrap(),
            "[::1]:8443".parse().unwrap(),
        );
        assert_eq!(h[13], TCP6);
        assert_eq!(
            &h[16..32],
            &"::ffff:198.51.100.9"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets()
        );
    }

    #[test]
    fn length_field_counts_what_follows() {
        for (s, d) in [
            ("192.0.2.1:1", "127.0.0.1:2"),
            ("[2001:db8::2]:1", "[::1]:2"),
        ] {
            let h = encode(s.parse().unwrap(), d.parse().unwrap());
            let len = usize::from(u16::from_be_bytes([h[14], h[15]]));
            assert_eq!(h.len(), 16 + len);
        }
    }
}
