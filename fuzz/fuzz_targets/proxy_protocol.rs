//! Fuzz target `proxy_protocol`: arbitrary bytes through the PROXY protocol v1/v2 parser, as
//! they would arrive first on a listener with `proxy_protocol` set.
//!
//! Input: byte 0 picks the accepted versions (0: v1, 1: v2, else any); the rest is the start
//! of the connection.
//!
//! Defends: no panic on any input; a reported header length is within the input and the
//! spec's limits (107 bytes for v1, 16 + 65535 for v2); bytes after the header never change
//! the result; framing (`header_len`) and parsing (`parse`) agree; every proper prefix of an
//! accepted header asks for more bytes instead of failing (headers arrive in pieces); an
//! accepted header's addresses survive re-encoding.
#![no_main]

use levee::net::proxy_protocol::{
    Accept, V1_MAX_LEN, V2_MAX_LEN, Version, encode_v1, encode_v2, header_len, parse,
};
use libfuzzer_sys::fuzz_target;

/// Prefixes checked one by one; longer headers are v2, framed after 16 bytes anyway.
const PREFIXES_CHECKED: usize = 256;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    let accept = match mode {
        0 => Accept::V1,
        1 => Accept::V2,
        _ => Accept::Any,
    };
    let parsed = parse(input, accept);
    let framed = header_len(input, accept);
    match (&parsed, framed) {
        (Err(a), Err(b)) => assert_eq!(*a, b, "parse and header_len disagree"),
        (Ok(Some((_, len))), Ok(Some(framed_len))) => assert_eq!(*len, framed_len),
        (Ok(None), Ok(None)) => {}
        (Ok(None), Ok(Some(len))) => assert!(len > input.len(), "framed {len}, had all"),
        // A complete frame can still hold a bad v1 field or TLV: parse sees it, framing not.
        (Err(_), Ok(Some(len))) => assert!(len <= input.len()),
        (p, f) => panic!("parse {p:?} but header_len {f:?}"),
    }
    let Ok(Some((header, len))) = parsed else {
        return;
    };
    assert!(len <= input.len());
    let limit = match header.version {
        Version::V1 => V1_MAX_LEN,
        Version::V2 => V2_MAX_LEN,
    };
    assert!(len <= limit, "{:?} header of {len} bytes", header.version);
    // What follows the header is the next layer's: the header alone parses the same.
    assert_eq!(parse(&input[..len], accept), Ok(Some((header, len))));
    for k in (0..len.min(PREFIXES_CHECKED)).chain(len.checked_sub(1)) {
        assert_eq!(parse(&input[..k], accept), Ok(None), "prefix of {k} bytes");
    }
    if let Some(a) = header.addresses {
        let (v1, v2) = (encode_v1(a.source, a.destination), encode_v2(a.source, a.destination));
        let again1 = parse(v1.as_bytes(), Accept::Any).ok().flatten().map(|(h, _)| h.addresses);
        let again2 = parse(&v2, Accept::Any).ok().flatten().map(|(h, _)| h.addresses);
        assert_eq!(again1, Some(Some(a)), "v1 re-encoding {v1:?}");
        assert_eq!(again2, Some(Some(a)), "v2 re-encoding");
    }
});
