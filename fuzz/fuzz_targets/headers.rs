//! Fuzz target `headers`: arbitrary request heads through `rewrite_request`, the rewrite every
//! proxied request goes through, with its invariants checked on the result.
//!
//! Input: byte 0 picks TLS (bit 0), the HTTP version (bits 1-2) and whether the client is a
//! trusted proxy (bit 3); the rest is split on `\n`:
//! the first line is the request target, every other line a `name: value` header (lines that
//! are not a valid header are skipped).
//!
//! Defends: no panic on any header bytes; no hop-by-hop header and no header named in
//! `Connection` reaches a backend; exactly one `Host`, `X-Forwarded-For` (ending with the
//! client address; from a client that is not a trusted proxy, only the client address) and
//! `X-Forwarded-Proto`; no client-sent `Forwarded` or `X-Forwarded-Port` from an untrusted
//! client; the client's GeoIP tag headers set by levee
//! alone (a client-sent copy never passes: exactly one `X-Client-Country`, the tag's, and no
//! `X-Client-Asn` for a tag without one); an origin-form HTTP/1.1 target; every other client
//! header passes through unchanged and in order.
#![no_main]

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Uri, Version};
use levee::geo::{ClientTag, GeoSettings};
use levee::proxy::headers::{ClientSide, rewrite_request};
use libfuzzer_sys::fuzz_target;

const CLIENT_IP: &str = "192.0.2.1";
const FALLBACK_HOST: &str = "127.0.0.1:8080";

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
];

/// Headers levee sets itself: their values legitimately change.
const SET_BY_PROXY: [&str; 9] = [
    "host",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "via",
    "x-client-country",
    "x-client-asn",
    "forwarded",
    "x-forwarded-port",
];

/// A request head, and the client as `rewrite_request` sees it.
fn parse(data: &[u8]) -> Option<(http::request::Parts, ClientSide)> {
    let (&flags, rest) = data.split_first()?;
    let client = ClientSide {
        ip: HeaderValue::from_static(CLIENT_IP),
        tls: flags & 1 == 1,
        trusted: flags & 8 == 8,
    };
    let version = match (flags >> 1) & 3 {
        0 => Version::HTTP_10,
        1 => Version::HTTP_11,
        2 => Version::HTTP_2,
        _ => Version::HTTP_09,
    };
    let mut lines = rest.split(|&b| b == b'\n');
    let target = lines.next().unwrap_or_default();
    let uri = Uri::try_from(target).unwrap_or_else(|_| Uri::from_static("/"));
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.uri = uri;
    parts.version = version;
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii_start());
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            parts.headers.append(n, v);
        }
    }
    Some((parts, client))
}

/// Every header the client named in `Connection`, read byte-wise as a proxy must.
fn connection_named(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .filter_map(|t| HeaderName::from_bytes(t.trim_ascii()).ok())
        .collect()
}

fn exactly_one<'a>(headers: &'a HeaderMap, name: &str) -> &'a HeaderValue {
    let values: Vec<&HeaderValue> = headers.get_all(name).iter().collect();
    assert_eq!(
        values.len(),
        1,
        "{name}: want exactly one value, got {values:?}"
    );
    values[0]
}

fuzz_target!(|data: &[u8]| {
    let Some((mut parts, client)) = parse(data) else {
        return;
    };
    let before = parts.headers.clone();
    let named = connection_named(&before);
    // A client of unknown country and no ASN, with the default `[geo]` header names.
    let geo = GeoSettings::default();
    let tag = ClientTag::unknown();
    rewrite_request(
        &mut parts,
        &client,
        &geo,
        &tag,
        &HeaderValue::from_static(FALLBACK_HOST),
    );
    let after = &parts.headers;

    for h in HOP_BY_HOP {
        assert!(!after.contains_key(h), "hop-by-hop header {h} forwarded");
    }
    for n in &named {
        if !SET_BY_PROXY.contains(&n.as_str()) {
            assert!(
                !after.contains_key(n),
                "{n} was named in Connection but forwarded"
            );
        }
    }
    exactly_one(after, "host");
    let xff = exactly_one(after, "x-forwarded-for");
    assert!(
        xff.as_bytes().ends_with(CLIENT_IP.as_bytes()),
        "x-forwarded-for {xff:?}"
    );
    if !client.trusted {
        assert_eq!(xff, CLIENT_IP, "an untrusted client's x-forwarded-for passed");
        for h in ["forwarded", "x-forwarded-port"] {
            assert!(!after.contains_key(h), "an untrusted client's {h} passed");
        }
    }
    assert_eq!(exactly_one(after, "x-client-country"), "ZZ");
    assert!(!after.contains_key("x-client-asn"), "a client-sent ASN passed");
    if client.trusted {
        // A trusted proxy's own X-Forwarded-Proto is kept as it sent it.
        assert!(after.contains_key("x-forwarded-proto"), "no x-forwarded-proto");
    } else {
        let proto = exactly_one(after, "x-forwarded-proto");
        assert_eq!(proto, if client.tls { "https" } else { "http" });
    }
    assert!(after.get_all(header::VIA).iter().last().is_some(), "no Via");
    assert!(
        parts.uri.scheme().is_none() && parts.uri.authority().is_none(),
        "{}",
        parts.uri
    );
    assert_eq!(parts.version, Version::HTTP_11);

    for name in before.keys() {
        let removed = HOP_BY_HOP.contains(&name.as_str()) || named.contains(name);
        if removed || SET_BY_PROXY.contains(&name.as_str()) {
            continue;
        }
        let want: Vec<_> = before.get_all(name).iter().collect();
        let got: Vec<_> = after.get_all(name).iter().collect();
        assert_eq!(want, got, "end-to-end header {name} changed");
    }
});
