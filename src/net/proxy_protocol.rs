//! PROXY protocol v1 (text) and v2 (binary) headers, as HAProxy's `proxy-protocol.txt` defines
//! them: framing, parsing and encoding. Pure and total: no I/O, no allocation when parsing, and
//! no panic on any input (the `proxy_protocol` fuzz target defends this).
//!
//! Framing ([`header_len`]) tells how long the header at the start of a buffer is, from as few
//! bytes as possible, so that a reader can take exactly the header off a socket and leave what
//! follows (a TLS ClientHello, an HTTP request) for the next layer. A valid header's every
//! prefix is `Ok(None)` ("need more"), never an error; an error is final, more bytes would not
//! change it. I/O and time limits live in `net::accept`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Longest v1 header, `\r\n` included (the spec's 107 bytes).
pub const V1_MAX_LEN: usize = 107;
/// The 12 bytes every v2 header starts with.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Length of a v2 header's fixed part: signature, version/command, family/protocol, length.
pub const V2_FIXED_LEN: usize = 16;
/// Longest v2 header: the fixed part and a length of `u16::MAX`.
pub const V2_MAX_LEN: usize = V2_FIXED_LEN + u16::MAX as usize;

const V1_PREFIX: &[u8] = b"PROXY ";
/// v2 address block lengths: IPv4 (2 addresses + 2 ports), IPv6, UNIX (2 x 108-byte paths).
const V2_INET_LEN: usize = 12;
const V2_INET6_LEN: usize = 36;
const V2_UNIX_LEN: usize = 216;
const V2_TLV_HEAD: usize = 3;

/// The header versions a listener accepts (`proxy_protocol = "v1" | "v2" | "any"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    /// Only the text header.
    V1,
    /// Only the binary header.
    V2,
    /// Either; the first byte tells which.
    Any,
}

impl Accept {
    fn allows(self, version: Version) -> bool {
        matches!(
            (self, version),
            (Accept::Any, _) | (Accept::V1, Version::V1) | (Accept::V2, Version::V2)
        )
    }
}

impl fmt::Display for Accept {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Accept::V1 => "v1",
            Accept::V2 => "v2",
            Accept::Any => "any",
        })
    }
}

/// PROXY protocol version of a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Text (`PROXY TCP4 ...\r\n`).
    V1,
    /// Binary (12-byte signature).
    V2,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
        })
    }
}

/// The original connection's endpoints, as the proxy in front saw them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addresses {
    /// The client.
    pub source: SocketAddr,
    /// The address the client connected to (on the proxy).
    pub destination: SocketAddr,
}

/// A parsed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    /// Which version it was.
    pub version: Version,
    /// `Some` for a proxied TCP connection over IPv4 or IPv6. `None` when the connection's own
    /// addresses are to be kept: v1 `UNKNOWN`, v2 `LOCAL` (health checks from the proxy), and
    /// v2 `PROXY` for a family or transport levee does not use (UNSPEC, UNIX, UDP), as HAProxy
    /// does.
    pub addresses: Option<Addresses>,
}

impl ProxyHeader {
    /// The client address this header declares, or `peer` when it declares none.
    pub fn client_or(&self, peer: SocketAddr) -> SocketAddr {
        self.addresses.map_or(peer, |a| a.source)
    }
}

/// Which field of a v1 line is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V1Field {
    /// The source address.
    SourceAddress,
    /// The destination address.
    DestinationAddress,
    /// The source port.
    SourcePort,
    /// The destination port.
    DestinationPort,
}

impl fmt::Display for V1Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            V1Field::SourceAddress => "source address",
            V1Field::DestinationAddress => "destination address",
            V1Field::SourcePort => "source port",
            V1Field::DestinationPort => "destination port",
        })
    }
}

/// Why bytes are not an acceptable PROXY header. Every variant is final: more bytes would not
/// make the header valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Neither the v1 prefix `PROXY ` nor the v2 signature.
    #[error("not a PROXY protocol header")]
    NotProxy,
    /// A valid start of a header of a version this listener does not accept.
    #[error("PROXY protocol {got} header, but this listener accepts {accepted}")]
    VersionNotAccepted {
        /// The version sent.
        got: Version,
        /// What the listener accepts.
        accepted: Accept,
    },
    /// No `\r\n` within the first 107 bytes.
    #[error("v1 header longer than {V1_MAX_LEN} bytes")]
    V1TooLong,
    /// A byte that is not printable ASCII, or a `\r` not followed by `\n`.
    #[error("v1 header has a control byte 0x{0:02x} before its \\r\\n")]
    V1BadByte(u8),
    /// The protocol word is not `TCP4`, `TCP6` or `UNKNOWN`.
    #[error("v1 header has an unknown protocol (want TCP4, TCP6 or UNKNOWN)")]
    V1BadProtocol,
    /// Not exactly four fields after `TCP4`/`TCP6`, each separated by one space.
    #[error("v1 header does not have exactly 4 fields after the protocol")]
    V1FieldCount,
    /// A field that does not parse, or an address of the wrong family.
    #[error("v1 header has an invalid {0}")]
    V1BadField(V1Field),
    /// The version nibble is not 2.
    #[error("v2 header has version {0} (want 2)")]
    V2BadVersion(u8),
    /// The command nibble is neither LOCAL (0) nor PROXY (1).
    #[error("v2 header has an unknown command 0x{0:x}")]
    V2BadCommand(u8),
    /// A family or transport nibble the spec does not define.
    #[error("v2 header has an unknown address family/transport 0x{0:02x}")]
    V2BadFamily(u8),
    /// The length is too short for the addresses of the declared family.
    #[error("v2 header length {len} is shorter than the {need}-byte address block")]
    V2ShortAddresses {
        /// The length field.
        len: u16,
        /// Bytes the family's addresses take.
        need: u16,
    },
    /// A TLV runs past the end of the header.
    #[error("v2 header has a TLV that runs past its end (at byte {0})")]
    V2BadTlv(usize),
}

/// The total length of the header at the start of `buf`: `Ok(Some(len))` once it is known,
/// `Ok(None)` when more bytes are needed, `Err` as soon as the bytes so far cannot start a
/// header this listener accepts.
///
/// For v1 the length is known at the `\r\n` (at most 107 bytes); for v2 after the 16-byte
/// fixed part, whose version, command and family are checked then, before the rest is read.
pub fn header_len(buf: &[u8], accept: Accept) -> Result<Option<usize>, ParseError> {
    let Some(version) = detect(buf)? else {
        return Ok(None);
    };
    if !accept.allows(version) {
        return Err(ParseError::VersionNotAccepted {
            got: version,
            accepted: accept,
        });
    }
    match version {
        Version::V1 => v1_len(buf),
        Version::V2 => v2_len(buf),
    }
}

/// Parses the header at the start of `buf`: `Ok(Some((header, len)))` when it is complete
/// (`len` bytes; anything after them belongs to the next layer), `Ok(None)` when more bytes
/// are needed.
pub fn parse(buf: &[u8], accept: Accept) -> Result<Option<(ProxyHeader, usize)>, ParseError> {
    let Some(len) = header_len(buf, accept)? else {
        return Ok(None);
    };
    let Some(header) = buf.get(..len) else {
        return Ok(None);
    };
    let parsed = match detect(header)? {
        Some(Version::V1) => parse_v1(header)?,
        _ => parse_v2(header)?,
    };
    Ok(Some((parsed, len)))
}

/// Which version `buf` starts like, from its first bytes.
fn detect(buf: &[u8]) -> Result<Option<Version>, ParseError> {
    let starts = |prefix: &[u8]| {
        let n = buf.len().min(prefix.len());
        buf[..n] == prefix[..n]
    };
    match buf.first() {
        None => Ok(None),
        Some(b'P') if starts(V1_PREFIX) => Ok(Some(Version::V1)),
        Some(b'\r') if starts(&V2_SIGNATURE) => Ok(Some(Version::V2)),
        Some(_) => Err(ParseError::NotProxy),
    }
}

fn v1_len(buf: &[u8]) -> Result<Option<usize>, ParseError> {
    for (i, &b) in buf.iter().enumerate().take(V1_MAX_LEN) {
        match b {
            b'\r' => {
                return match buf.get(i + 1) {
                    _ if i + 2 > V1_MAX_LEN => Err(ParseError::V1TooLong),
                    Some(b'\n') => Ok(Some(i + 2)),
                    Some(&other) => Err(ParseError::V1BadByte(other)),
                    None => Ok(None),
                };
            }
            b' '..=b'~' => {}
            other => return Err(ParseError::V1BadByte(other)),
        }
    }
    if buf.len() >= V1_MAX_LEN {
        Err(ParseError::V1TooLong)
    } else {
        Ok(None)
    }
}

fn v2_len(buf: &[u8]) -> Result<Option<usize>, ParseError> {
    let Some(fixed) = buf.get(..V2_FIXED_LEN) else {
        return Ok(None);
    };
    let (version, command, family) = (fixed[12] >> 4, fixed[12] & 0x0f, fixed[13]);
    let len = u16::from_be_bytes([fixed[14], fixed[15]]);
    if version != 2 {
        return Err(ParseError::V2BadVersion(version));
    }
    match command {
        // LOCAL: the family and addresses are ignored (spec 2.2).
        0 => {}
        1 => {
            let need = v2_address_len(family)?;
            if usize::from(len) < need {
                return Err(ParseError::V2ShortAddresses {
                    len,
                    need: u16::try_from(need).unwrap_or(u16::MAX),
                });
            }
        }
        other => return Err(ParseError::V2BadCommand(other)),
    }
    Ok(Some(V2_FIXED_LEN + usize::from(len)))
}

/// Length of the address block of a v2 family/transport byte.
fn v2_address_len(family: u8) -> Result<usize, ParseError> {
    if family & 0x0f > 2 {
        return Err(ParseError::V2BadFamily(family));
    }
    match family >> 4 {
        0 => Ok(0),
        1 => Ok(V2_INET_LEN),
        2 => Ok(V2_INET6_LEN),
        3 => Ok(V2_UNIX_LEN),
        _ => Err(ParseError::V2BadFamily(family)),
    }
}

/// Parses one complete v1 line, `\r\n` included (framing already checked it).
fn parse_v1(line: &[u8]) -> Result<ProxyHeader, ParseError> {
    let body = line
        .strip_prefix(V1_PREFIX)
        .and_then(|l| l.strip_suffix(b"\r\n"))
        .ok_or(ParseError::NotProxy)?;
    // Framing allowed only printable ASCII, so this is UTF-8; map the impossible error anyway.
    let text = std::str::from_utf8(body).map_err(|_| ParseError::V1BadByte(0))?;
    let (protocol, rest) = text.split_once(' ').unwrap_or((text, ""));
    let v6 = match protocol {
        // Whatever follows UNKNOWN is ignored (spec 2.1).
        "UNKNOWN" => {
            return Ok(ProxyHeader {
                version: Version::V1,
                addresses: None,
            });
        }
        "TCP4" => false,
        "TCP6" => true,
        _ => return Err(ParseError::V1BadProtocol),
    };
    let mut fields = rest.split(' ');
    let (Some(src), Some(dst), Some(sport), Some(dport), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err(ParseError::V1FieldCount);
    };
    let source_ip = v1_address(src, v6).ok_or(ParseError::V1BadField(V1Field::SourceAddress))?;
    let destination_ip =
        v1_address(dst, v6).ok_or(ParseError::V1BadField(V1Field::DestinationAddress))?;
    let source_port = v1_port(sport).ok_or(ParseError::V1BadField(V1Field::SourcePort))?;
    let destination_port =
        v1_port(dport).ok_or(ParseError::V1BadField(V1Field::DestinationPort))?;
    Ok(ProxyHeader {
        version: Version::V1,
        addresses: Some(Addresses {
            source: SocketAddr::new(source_ip, source_port),
            destination: SocketAddr::new(destination_ip, destination_port),
        }),
    })
}

fn v1_address(text: &str, v6: bool) -> Option<IpAddr> {
    if v6 {
        text.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
    } else {
        text.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
    }
}

/// A decimal port, digits only (no sign, no blanks), 0 to 65535.
fn v1_port(text: &str) -> Option<u16> {
    let digits = !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit());
    digits.then(|| text.parse().ok()).flatten()
}

/// Parses one complete v2 header (framing already checked its fixed part and length).
fn parse_v2(header: &[u8]) -> Result<ProxyHeader, ParseError> {
    let keep = ProxyHeader {
        version: Version::V2,
        addresses: None,
    };
    let (Some(&command), Some(&family)) = (header.get(12), header.get(13)) else {
        return Err(ParseError::NotProxy);
    };
    if command & 0x0f == 0 {
        return Ok(keep);
    }
    let payload = header.get(V2_FIXED_LEN..).unwrap_or_default();
    let address_len = v2_address_len(family)?;
    let (block, tlvs) =
        payload
            .split_at_checked(address_len)
            .ok_or(ParseError::V2ShortAddresses {
                len: u16::try_from(payload.len()).unwrap_or(u16::MAX),
                need: u16::try_from(address_len).unwrap_or(u16::MAX),
            })?;
    check_tlvs(tlvs, V2_FIXED_LEN + address_len)?;
    let addresses = match family {
        0x11 => v2_inet(block),
        0x21 => v2_inet6(block),
        // UNSPEC, UNIX or UDP: valid, but nothing levee can use as a TCP client address.
        _ => None,
    };
    Ok(ProxyHeader {
        version: Version::V2,
        addresses,
    })
}

/// Walks the TLVs (type, 16-bit length, value) after the addresses without keeping any; as
/// HAProxy does, a TLV that runs past the end (or 1-2 stray bytes) makes the header invalid.
fn check_tlvs(mut tlvs: &[u8], mut offset: usize) -> Result<(), ParseError> {
    while !tlvs.is_empty() {
        let value_len = match tlvs {
            [_, hi, lo, ..] => usize::from(u16::from_be_bytes([*hi, *lo])),
            _ => return Err(ParseError::V2BadTlv(offset)),
        };
        let Some(rest) = tlvs.get(V2_TLV_HEAD + value_len..) else {
            return Err(ParseError::V2BadTlv(offset));
        };
        offset += V2_TLV_HEAD + value_len;
        tlvs = rest;
    }
    Ok(())
}

fn v2_inet(block: &[u8]) -> Option<Addresses> {
    let (src, rest) = block.split_first_chunk::<4>()?;
    let (dst, rest) = rest.split_first_chunk::<4>()?;
    let (sport, rest) = rest.split_first_chunk::<2>()?;
    let (dport, _) = rest.split_first_chunk::<2>()?;
    Some(Addresses {
        source: SocketAddr::new(Ipv4Addr::from(*src).into(), u16::from_be_bytes(*sport)),
        destination: SocketAddr::new(Ipv4Addr::from(*dst).into(), u16::from_be_bytes(*dport)),
    })
}

fn v2_inet6(block: &[u8]) -> Option<Addresses> {
    let (src, rest) = block.split_first_chunk::<16>()?;
    let (dst, rest) = rest.split_first_chunk::<16>()?;
    let (sport, rest) = rest.split_first_chunk::<2>()?;
    let (dport, _) = rest.split_first_chunk::<2>()?;
    Some(Addresses {
        source: SocketAddr::new(Ipv6Addr::from(*src).into(), u16::from_be_bytes(*sport)),
        destination: SocketAddr::new(Ipv6Addr::from(*dst).into(), u16::from_be_bytes(*dport)),
    })
}

/// Both addresses in one family: an IPv4 one is mapped into IPv6 when the other is IPv6.
fn same_family(source: SocketAddr, destination: SocketAddr) -> (IpAddr, IpAddr) {
    let v6 = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => IpAddr::V6(v4.to_ipv6_mapped()),
        v6 => v6,
    };
    match (source.ip(), destination.ip()) {
        (s @ IpAddr::V4(_), d @ IpAddr::V4(_)) => (s, d),
        (s, d) => (v6(s), v6(d)),
    }
}

/// A v1 header (`PROXY TCP4|TCP6 src dst sport dport\r\n`) for a proxied TCP connection.
pub fn encode_v1(source: SocketAddr, destination: SocketAddr) -> String {
    let (src, dst) = same_family(source, destination);
    let protocol = if src.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {protocol} {src} {dst} {} {}\r\n",
        source.port(),
        destination.port()
    )
}

/// A v2 `PROXY` header over TCP, without TLVs, for a proxied connection.
pub fn encode_v2(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let (src, dst) = same_family(source, destination);
    let mut out = Vec::with_capacity(V2_FIXED_LEN + V2_INET6_LEN);
    out.extend_from_slice(&V2_SIGNATURE);
    out.push(0x21); // version 2, PROXY
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.extend_from_slice(&[0x11, 0, V2_INET_LEN as u8]);
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (s, d) => {
            let octets = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
                IpAddr::V6(v6) => v6.octets(),
            };
            out.extend_from_slice(&[0x21, 0, V2_INET6_LEN as u8]);
            out.extend_from_slice(&octets(s));
            out.extend_from_slice(&octets(d));
        }
    }
    out.extend_from_slice(&source.port().to_be_bytes());
    out.extend_from_slice(&destination.port().to_be_bytes());
    out
}

// The tests live in proxy_protocol/tests.rs to keep this file about the protocol.
#[cfg(test)]
mod tests;
