//! Stable hashing for consistent-hash balancing: the request key of a pool's `hash_key`
//! (client IP, a header value or a cookie value) and the mixing functions `maglev` uses.
//!
//! Every hash here is fixed: the same input gives the same `u64` on every worker, in every
//! process and on every platform, so two levee instances (or a reload) agree on where a key
//! goes. Nothing allocates: header and cookie values are hashed in place.

use std::net::IpAddr;

use http::HeaderMap;
use http::header::{COOKIE, HeaderName};

use super::HashKey;

/// Multiplier of the byte hash (the 64-bit golden ratio, odd).
const K: u64 = 0x9e37_79b9_7f4a_7c15;

/// The splitmix64 finalizer: a fast bijective mix of all 64 bits (every input bit affects
/// every output bit).
#[inline]
pub fn mix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A stable 64-bit hash of `bytes` with `seed`: 8 bytes at a time (little-endian, so the
/// result is the same on every platform), then `mix64`.
#[inline]
pub fn hash_bytes_seeded(bytes: &[u8], seed: u64) -> u64 {
    let mut h = seed ^ (bytes.len() as u64).wrapping_mul(K);
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut word = [0u8; 8];
        word[..rest.len()].copy_from_slice(rest);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
    }
    mix64(h)
}

/// A stable 64-bit hash of `bytes` (seed 0).
#[inline]
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    hash_bytes_seeded(bytes, 0)
}

/// A stable 64-bit hash of an IP address. An IPv4-mapped IPv6 address hashes as its IPv4
/// address, so a dual-stack listener sees one key per client.
#[inline]
pub fn hash_ip(ip: IpAddr) -> u64 {
    match ip.to_canonical() {
        IpAddr::V4(v4) => mix64(u64::from(v4.to_bits()) ^ K),
        IpAddr::V6(v6) => {
            let bits = v6.to_bits();
            // Truncations on purpose: the two halves of the 128-bit address.
            let hi = (bits >> 64) as u64;
            let lo = bits as u64;
            mix64(mix64(hi ^ K.rotate_left(17)) ^ lo)
        }
    }
}

/// The hash of this request's `key`, or `None` when the request does not carry it (no such
/// header or cookie); `maglev` then falls back to the client IP.
///
/// A header hashes its first value's bytes; a cookie is looked up in every `Cookie` header.
/// Allocation-free.
pub fn request_hash(key: &HashKey, client: IpAddr, headers: &HeaderMap) -> Option<u64> {
    match key {
        HashKey::ClientIp => Some(hash_ip(client)),
        HashKey::Header(name) => headers.get(name).map(|v| hash_bytes(v.as_bytes())),
        HashKey::Cookie(name) => cookie_value(headers, name.as_bytes()).map(hash_bytes),
    }
}

/// The value of cookie `name` from the request's `Cookie` header(s), as sent (the first one
/// wins if it appears more than once).
pub fn cookie_value<'h>(headers: &'h HeaderMap, name: &[u8]) -> Option<&'h [u8]> {
    headers.get_all(COOKIE).iter().find_map(|value| {
        value.as_bytes().split(|&b| b == b';').find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|&b| b == b'=')?;
            let (k, v) = (&pair[..eq], &pair[eq + 1..]);
            (k.trim_ascii() == name).then(|| v.trim_ascii())
        })
    })
}

/// Parses `pools.NAME.hash_key`: `"client_ip"`, `"header:NAME"` or `"cookie:NAME"`.
pub fn parse_hash_key(s: &str) -> Result<HashKey, String> {
    const EXPECTED: &str = "expected \"client_ip\", \"header:NAME\" or \"cookie:NAME\"";
    if s == "client_ip" {
        return Ok(HashKey::ClientIp);
    }
    if let Some(name) = s.strip_prefix("header:") {
        if name.is_empty() {
            return Err(format!("hash_key \"{s}\" names no header ({EXPECTED})"));
        }
        return HeaderName::from_bytes(name.as_bytes())
            .map(HashKey::Header)
            .map_err(|_| format!("hash_key \"{s}\": \"{name}\" is not a valid header name"));
    }
    if let Some(name) = s.strip_prefix("cookie:") {
        if name.is_empty() {
            return Err(format!("hash_key \"{s}\" names no cookie ({EXPECTED})"));
        }
        if !name.bytes().all(is_cookie_name_byte) {
            return Err(format!(
                "hash_key \"{s}\": \"{name}\" is not a valid cookie name"
            ));
        }
        return Ok(HashKey::Cookie(name.to_string()));
    }
    Err(format!("unknown hash_key \"{s}\" ({EXPECTED})"))
}

/// An RFC 6265 cookie-name (token) byte.
fn is_cookie_name_byte(b: u8) -> bool {
    b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn hashes_are_stable_across_processes() {
        // Fixed values: a change here moves every client of every maglev pool.
        assert_eq!(hash_bytes(b""), mix64(0));
        assert_eq!(hash_bytes(b"user-1"), hash_bytes(b"user-1"));
        assert_ne!(hash_bytes(b"user-1"), hash_bytes(b"user-2"));
        assert_ne!(hash_bytes(b"abcdefgh"), hash_bytes(b"abcdefgh\0"));
        assert_ne!(hash_bytes_seeded(b"x", 1), hash_bytes_seeded(b"x", 2));
        assert_eq!(mix64(1), 0x5692_161d_100b_05e5);
    }

    #[test]
    fn ip_hash_treats_mapped_v4_as_v4() {
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        let v6: IpAddr = "2001:db8::7".parse().unwrap();
        assert_eq!(hash_ip(v4), hash_ip(mapped));
        assert_ne!(hash_ip(v4), hash_ip(v6));
    }

    #[test]
    fn request_hash_reads_the_key() {
        let client: IpAddr = "198.51.100.1".parse().unwrap();
        let h = headers(&[
            ("x-user", "alice"),
            ("cookie", "theme=dark; session = abc123 ;x=1"),
            ("cookie", "session=later"),
        ]);
        assert_eq!(
            request_hash(&HashKey::ClientIp, client, &h),
            Some(hash_ip(client))
        );
        let header = parse_hash_key("header:X-User").unwrap();
        assert_eq!(
            request_hash(&header, client, &h),
            Some(hash_bytes(b"alice"))
        );
        let cookie = parse_hash_key("cookie:session").unwrap();
        assert_eq!(
            request_hash(&cookie, client, &h),
            Some(hash_bytes(b"abc123"))
        );
        let missing = parse_hash_key("cookie:sess").unwrap();
        assert_eq!(request_hash(&missing, client, &h), None);
        let no_header = parse_hash_key("header:x-tenant").unwrap();
        assert_eq!(request_hash(&no_header, client, &h), None);
    }

    #[test]
    fn cookie_lookup_handles_odd_spacing_and_pairs_without_value() {
        let h = headers(&[("cookie", "flag; a=1;b=2;  c =3")]);
        assert_eq!(cookie_value(&h, b"a"), Some(&b"1"[..]));
        assert_eq!(cookie_value(&h, b"c"), Some(&b"3"[..]));
        assert_eq!(cookie_value(&h, b"flag"), None);
        assert_eq!(cookie_value(&HeaderMap::new(), b"a"), None);
    }

    #[test]
    fn parses_hash_keys() {
        assert_eq!(parse_hash_key("client_ip"), Ok(HashKey::ClientIp));
        assert_eq!(
            parse_hash_key("header:X-User"),
            Ok(HashKey::Header(HeaderName::from_static("x-user")))
        );
        assert_eq!(
            parse_hash_key("cookie:sid"),
            Ok(HashKey::Cookie("sid".into()))
        );
        for bad in [
            "",
            "ip",
            "header:",
            "cookie:",
            "header:bad name",
            "cookie:a=b",
            "Client_IP",
        ] {
            assert!(parse_hash_key(bad).is_err(), "{bad:?} accepted");
        }
    }
}
