#![allow(clippy::unwrap_used)] // tests may panic

use super::*;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn complete(buf: &[u8], accept: Accept) -> (ProxyHeader, usize) {
    parse(buf, accept)
        .unwrap_or_else(|e| panic!("{e} for {buf:?}"))
        .unwrap_or_else(|| panic!("incomplete: {buf:?}"))
}

/// Every proper prefix of a valid header asks for more bytes; none is an error.
fn assert_prefixes_incomplete(header: &[u8], accept: Accept) {
    for k in 0..header.len() {
        assert_eq!(
            parse(&header[..k], accept),
            Ok(None),
            "prefix of {k} bytes of {header:?}"
        );
    }
}

/// A v2 header: fixed part, then `payload` (addresses and TLVs).
fn v2(command: u8, family: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.push(0x20 | command);
    out.push(family);
    out.extend_from_slice(&u16::try_from(payload.len()).unwrap().to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn inet_payload() -> Vec<u8> {
    let mut p = vec![192, 0, 2, 10, 203, 0, 113, 1];
    p.extend_from_slice(&51_234u16.to_be_bytes());
    p.extend_from_slice(&443u16.to_be_bytes());
    p
}

#[test]
fn v1_tcp4_with_trailing_data() {
    let line = b"PROXY TCP4 192.0.2.10 203.0.113.1 51234 443\r\n";
    let mut buf = line.to_vec();
    buf.extend_from_slice(b"GET / HTTP/1.1\r\n");
    let (h, len) = complete(&buf, Accept::Any);
    assert_eq!(len, line.len());
    assert_eq!(h.version, Version::V1);
    let a = h.addresses.unwrap();
    assert_eq!(a.source, addr("192.0.2.10:51234"));
    assert_eq!(a.destination, addr("203.0.113.1:443"));
    assert_eq!(complete(&buf, Accept::V1).0, h);
    assert_prefixes_incomplete(line, Accept::Any);
    assert_prefixes_incomplete(line, Accept::V1);
}

#[test]
fn v1_tcp6_and_unknown() {
    let line = b"PROXY TCP6 2001:db8::5 2001:db8::1 65535 0\r\n";
    let (h, len) = complete(line, Accept::V1);
    assert_eq!(len, line.len());
    let a = h.addresses.unwrap();
    assert_eq!(a.source, addr("[2001:db8::5]:65535"));
    assert_eq!(a.destination, addr("[2001:db8::1]:0"));
    assert_prefixes_incomplete(line, Accept::V1);

    for unknown in [
        &b"PROXY UNKNOWN\r\n"[..],
        b"PROXY UNKNOWN ff::1 ff::2 1 2\r\nxyz",
    ] {
        let (h, len) = complete(unknown, Accept::Any);
        assert_eq!(h.addresses, None);
        assert_eq!(h.client_or(addr("10.0.0.1:9")), addr("10.0.0.1:9"));
        assert!(unknown[..len].ends_with(b"\r\n"));
    }
}

#[test]
fn v1_longest_line_is_accepted_and_one_more_byte_is_not() {
    // "PROXY UNKNOWN " + filler + "\r\n" = exactly 107 bytes.
    let mut line = b"PROXY UNKNOWN ".to_vec();
    line.resize(V1_MAX_LEN - 2, b'x');
    line.extend_from_slice(b"\r\n");
    assert_eq!(complete(&line, Accept::V1).1, V1_MAX_LEN);
    let mut long = b"PROXY UNKNOWN ".to_vec();
    long.resize(V1_MAX_LEN - 1, b'x');
    long.extend_from_slice(b"\r\n");
    assert_eq!(parse(&long, Accept::V1), Err(ParseError::V1TooLong));
    // Without any CR, the 107th byte decides.
    let mut endless = b"PROXY TCP4 ".to_vec();
    endless.resize(V1_MAX_LEN, b'1');
    assert_eq!(parse(&endless, Accept::V1), Err(ParseError::V1TooLong));
    assert_eq!(parse(&endless[..V1_MAX_LEN - 1], Accept::V1), Ok(None));
}

#[test]
fn v1_malformed_lines_are_typed_errors() {
    use ParseError::*;
    let cases: [(&[u8], ParseError); 16] = [
        (b"PROXY TCP4 \r\n", V1FieldCount),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", V1FieldCount),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", V1FieldCount),
        (b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", V1FieldCount),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", V1FieldCount),
        (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", V1BadProtocol),
        (b"PROXY \r\n", V1BadProtocol),
        (
            b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
            V1BadField(V1Field::SourceAddress),
        ),
        (
            b"PROXY TCP6 ::1 5.6.7.8 1 2\r\n",
            V1BadField(V1Field::DestinationAddress),
        ),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
            V1BadField(V1Field::SourcePort),
        ),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 +2\r\n",
            V1BadField(V1Field::DestinationPort),
        ),
        (
            b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",
            V1BadField(V1Field::SourceAddress),
        ),
        (b"PROXY TCP4 1.2.3.4\n", V1BadByte(b'\n')),
        (b"PROXY TCP4\rX", V1BadByte(b'X')),
        (b"PROXY TCP4 \xc3\xa9", V1BadByte(0xc3)),
        (b"PROXY\r\n", NotProxy),
    ];
    for (input, want) in cases {
        assert_eq!(parse(input, Accept::Any), Err(want), "{input:?}");
    }
}

#[test]
fn v2_proxy_tcp4_tcp6_and_trailing_data() {
    let mut header = v2(1, 0x11, &inet_payload());
    let len = header.len();
    header.extend_from_slice(b"\x16\x03\x01 ClientHello...");
    let (h, n) = complete(&header, Accept::V2);
    assert_eq!(n, len);
    assert_eq!(h.version, Version::V2);
    let a = h.addresses.unwrap();
    assert_eq!(a.source, addr("192.0.2.10:51234"));
    assert_eq!(a.destination, addr("203.0.113.1:443"));
    assert_prefixes_incomplete(&header[..len], Accept::V2);
    assert_prefixes_incomplete(&header[..len], Accept::Any);

    let src: Ipv6Addr = "2001:db8::5".parse().unwrap();
    let dst: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let mut payload = src.octets().to_vec();
    payload.extend_from_slice(&dst.octets());
    payload.extend_from_slice(&[0x1f, 0x90, 0x01, 0xbb]);
    let (h, _) = complete(&v2(1, 0x21, &payload), Accept::Any);
    let a = h.addresses.unwrap();
    assert_eq!(a.source, addr("[2001:db8::5]:8080"));
    assert_eq!(a.destination, addr("[2001:db8::1]:443"));
}

#[test]
fn v2_local_unspec_unix_and_udp_keep_the_socket_address() {
    // LOCAL ignores its family and payload entirely (even a nonsense family).
    for header in [v2(0, 0x00, &[]), v2(0, 0xff, &[1, 2, 3]), v2(0, 0x11, &[])] {
        let (h, n) = complete(&header, Accept::V2);
        assert_eq!((h.addresses, n), (None, header.len()));
    }
    let unspec = v2(1, 0x00, &[]);
    assert_eq!(complete(&unspec, Accept::V2).0.addresses, None);
    let unix = v2(1, 0x31, &[0; V2_UNIX_LEN]);
    assert_eq!(complete(&unix, Accept::V2).0.addresses, None);
    let udp = v2(1, 0x12, &inet_payload());
    assert_eq!(complete(&udp, Accept::V2).0.addresses, None);
}

#[test]
fn v2_tlvs_are_skipped_and_checked() {
    let mut payload = inet_payload();
    payload.extend_from_slice(&[0x01, 0x00, 0x02, b'h', b'2']); // ALPN
    payload.extend_from_slice(&[0x04, 0x00, 0x00]); // NOOP, empty
    payload.extend_from_slice(&[0xea, 0x00, 0x03, 1, 2, 3]); // AWS-style custom TLV
    let header = v2(1, 0x11, &payload);
    let (h, n) = complete(&header, Accept::Any);
    assert_eq!(n, header.len());
    assert_eq!(h.addresses.unwrap().source, addr("192.0.2.10:51234"));

    let mut overrun = inet_payload();
    overrun.extend_from_slice(&[0x01, 0x00, 0x09, b'h', b'2']);
    assert_eq!(
        parse(&v2(1, 0x11, &overrun), Accept::Any),
        Err(ParseError::V2BadTlv(V2_FIXED_LEN + V2_INET_LEN))
    );
    let mut stray = inet_payload();
    stray.extend_from_slice(&[0x04, 0x00, 0x00, 0x01]);
    assert_eq!(
        parse(&v2(1, 0x11, &stray), Accept::Any),
        Err(ParseError::V2BadTlv(V2_FIXED_LEN + V2_INET_LEN + 3))
    );
}

#[test]
fn v2_malformed_fixed_parts_fail_before_the_payload_arrives() {
    use ParseError::*;
    let fixed = |b12: u8, b13: u8, len: u16| {
        let mut h = V2_SIGNATURE.to_vec();
        h.extend_from_slice(&[b12, b13]);
        h.extend_from_slice(&len.to_be_bytes());
        h
    };
    assert_eq!(
        header_len(&fixed(0x11, 0x11, 12), Accept::Any),
        Err(V2BadVersion(1))
    );
    assert_eq!(
        header_len(&fixed(0x22, 0x11, 12), Accept::Any),
        Err(V2BadCommand(2))
    );
    assert_eq!(
        header_len(&fixed(0x21, 0x41, 12), Accept::Any),
        Err(V2BadFamily(0x41))
    );
    assert_eq!(
        header_len(&fixed(0x21, 0x13, 12), Accept::Any),
        Err(V2BadFamily(0x13))
    );
    assert_eq!(
        header_len(&fixed(0x21, 0x21, 12), Accept::Any),
        Err(V2ShortAddresses { len: 12, need: 36 })
    );
    // A valid fixed part announces its length before the payload is there.
    assert_eq!(
        header_len(&fixed(0x21, 0x11, 12), Accept::Any),
        Ok(Some(28))
    );
    assert_eq!(parse(&fixed(0x21, 0x11, 12), Accept::Any), Ok(None));
}

#[test]
fn v2_largest_length_does_not_overflow() {
    let mut h = V2_SIGNATURE.to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
    assert_eq!(header_len(&h, Accept::V2), Ok(Some(V2_MAX_LEN)));
    // Complete: addresses, then one TLV filling the rest exactly.
    let mut payload = inet_payload();
    let fill = usize::from(u16::MAX) - payload.len() - 3;
    payload.extend_from_slice(&[0xe0]);
    payload.extend_from_slice(&u16::try_from(fill).unwrap().to_be_bytes());
    payload.resize(usize::from(u16::MAX), 0);
    let header = v2(1, 0x11, &payload);
    assert_eq!(header.len(), V2_MAX_LEN);
    assert_eq!(complete(&header, Accept::V2).1, V2_MAX_LEN);
    assert_eq!(parse(&header[..V2_MAX_LEN - 1], Accept::V2), Ok(None));
}

#[test]
fn bad_signatures_and_versions_not_accepted() {
    use ParseError::*;
    assert_eq!(parse(b"GET / HTTP/1.1\r\n", Accept::Any), Err(NotProxy));
    assert_eq!(parse(b"\x16\x03\x01\x02\x00", Accept::Any), Err(NotProxy));
    assert_eq!(parse(b"PRI * HTTP/2.0", Accept::Any), Err(NotProxy));
    assert_eq!(parse(b"\r\n\r\n\0\r\nQUIX\n", Accept::Any), Err(NotProxy));
    assert_eq!(parse(b"\r\n\r\n\0\r\nQUI", Accept::Any), Ok(None));
    assert_eq!(parse(b"", Accept::Any), Ok(None));
    let v1 = b"PROXY UNKNOWN\r\n";
    let v2_local = v2(0, 0, &[]);
    let not = |got, accepted| VersionNotAccepted { got, accepted };
    assert_eq!(parse(v1, Accept::V2), Err(not(Version::V1, Accept::V2)));
    assert_eq!(
        parse(&v2_local, Accept::V1),
        Err(not(Version::V2, Accept::V1))
    );
    // The first byte is enough to refuse the wrong version.
    assert_eq!(parse(b"P", Accept::V2), Err(not(Version::V1, Accept::V2)));
    assert_eq!(parse(b"\r", Accept::V1), Err(not(Version::V2, Accept::V1)));
}

#[test]
fn encoders_match_the_spec_bytes_and_round_trip() {
    let src = addr("198.51.100.7:40000");
    let dst = addr("127.0.0.1:8443");
    assert_eq!(
        encode_v1(src, dst),
        "PROXY TCP4 198.51.100.7 127.0.0.1 40000 8443\r\n"
    );
    let mut want = V2_SIGNATURE.to_vec();
    want.extend_from_slice(&[0x21, 0x11, 0x00, 0x0c, 198, 51, 100, 7, 127, 0, 0, 1]);
    want.extend_from_slice(&[0x9c, 0x40, 0x20, 0xfb]);
    assert_eq!(encode_v2(src, dst), want);

    let v6 = addr("[2001:db8::5]:1");
    for (s, d) in [(src, dst), (v6, v6), (v6, dst), (src, v6)] {
        let h1 = complete(encode_v1(s, d).as_bytes(), Accept::V1).0;
        let h2 = complete(&encode_v2(s, d), Accept::V2).0;
        assert_eq!(h1.addresses, h2.addresses);
        let source = h1.addresses.unwrap().source;
        assert_eq!(source.ip().to_canonical(), s.ip());
        assert_eq!(source.port(), s.port());
    }
}
