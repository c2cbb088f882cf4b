//! Fuzz target `h1_head`: raw HTTP/1 request heads, parsed the way hyper parses them
//! (`httparse`), through what levee does to every head before it is proxied: the strict-edge
//! checks (`check_head`), the routing host (`request_host`) and the upstream rewrite
//! (`rewrite_request`); the upstream head is then written out and parsed again.
//!
//! Input: byte 0 picks TLS (bit 0) and whether the client is a trusted proxy (bit 1); the rest
//! is the bytes a client sends, from the request line to the blank line.
//!
//! Defends, for every head `check_head` lets through: no panic; the backend gets exactly one
//! `Host`, never with userinfo, and it names the same host (without port, ignoring case) that
//! routing used, so a client cannot route on one host and reach the backend as another; an
//! origin-form target (`/...`, or `*` for `OPTIONS`); an upstream head that parses back, as
//! one complete head, to the same method, target and headers, in order (no header or line
//! smuggled in by the rewrite); and `CONNECT`, two `Host`s, userinfo and an HTTP/1.1 head
//! without a host never get that far.
#![no_main]

use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Uri, Version};
use levee::geo::{ClientTag, GeoSettings};
use levee::proxy::headers::{ClientSide, rewrite_request};
use levee::proxy::route::host_without_port;
use levee::proxy::semantics::{check_head, request_host};
use libfuzzer_sys::fuzz_target;

const FALLBACK_HOST: &str = "127.0.0.1:8080";
const MAX_HEADERS: usize = 100;

/// A request head as hyper would hand it to levee, or `None` where hyper answers 400 itself.
fn parse_like_hyper(bytes: &[u8]) -> Option<http::request::Parts> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    let httparse::Status::Complete(_) = req.parse(bytes).ok()? else {
        return None;
    };
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = Method::from_bytes(req.method?.as_bytes()).ok()?;
    parts.uri = Uri::try_from(req.path?).ok()?;
    parts.version = match req.version? {
        0 => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    for h in req.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(h.value).ok()?;
        parts.headers.append(name, value);
    }
    Some(parts)
}

/// The head levee writes to a backend, as HTTP/1.1 bytes.
fn serialize(parts: &http::request::Parts) -> Vec<u8> {
    let mut out = format!("{} {} HTTP/1.1\r\n", parts.method, parts.uri).into_bytes();
    for (name, value) in &parts.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, bytes)) = data.split_first() else {
        return;
    };
    let Some(mut parts) = parse_like_hyper(bytes) else {
        return;
    };
    let verdict = check_head(&parts.method, &parts.uri, parts.version, &parts.headers);
    let hosts = parts.headers.get_all(header::HOST).iter().count();
    let userinfo = parts.uri.authority().is_some_and(|a| a.as_str().contains('@'))
        || parts
            .headers
            .get_all(header::HOST)
            .iter()
            .any(|h| h.as_bytes().contains(&b'@'));
    let no_host = hosts == 0 && parts.uri.authority().is_none();
    if parts.method == Method::CONNECT
        || hosts > 1
        || userinfo
        || (no_host && parts.version == Version::HTTP_11)
    {
        assert!(verdict.is_err(), "a head a strict edge refuses passed");
    }
    if verdict.is_err() {
        return;
    }
    let routed = request_host(&parts.uri, &parts.headers).map(str::to_owned);
    if hosts == 1 || parts.uri.authority().is_some() {
        assert!(routed.is_some(), "a head with a host routes without one");
    }
    let client = ClientSide {
        ip: HeaderValue::from_static("192.0.2.1"),
        tls: flags & 1 == 1,
        trusted: flags & 2 == 2,
    };
    let fallback = HeaderValue::from_static(FALLBACK_HOST);
    let tag = ClientTag::unknown();
    rewrite_request(&mut parts, &client, &GeoSettings::default(), &tag, &fallback);

    let upstream: Vec<&HeaderValue> = parts.headers.get_all(header::HOST).iter().collect();
    assert_eq!(upstream.len(), 1, "upstream Host: {upstream:?}");
    let upstream = upstream[0].to_str().unwrap_or_default();
    assert!(!upstream.contains('@'), "userinfo reached the backend: {upstream}");
    match &routed {
        Some(routed) => assert!(
            host_without_port(upstream).eq_ignore_ascii_case(host_without_port(routed)),
            "routed on {routed:?}, backend sees Host {upstream:?}"
        ),
        None => assert_eq!(upstream, FALLBACK_HOST),
    }
    let target = parts.uri.to_string();
    let origin = target.starts_with('/') || (target == "*" && parts.method == Method::OPTIONS);
    assert!(origin, "upstream target {target:?} is not origin-form");

    let wire = serialize(&parts);
    let mut slots = vec![httparse::EMPTY_HEADER; parts.headers.len() + 1];
    let mut again = httparse::Request::new(&mut slots);
    let status = again.parse(&wire);
    assert!(
        matches!(status, Ok(httparse::Status::Complete(n)) if n == wire.len()),
        "the upstream head does not parse back as one head: {status:?} {:?}",
        String::from_utf8_lossy(&wire)
    );
    assert_eq!(again.method, Some(parts.method.as_str()));
    assert_eq!(again.path, Some(target.as_str()));
    let sent: Vec<(&str, &[u8])> = parts
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_bytes()))
        .collect();
    let read: Vec<(String, &[u8])> = again
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), h.value))
        .collect();
    let read: Vec<(&str, &[u8])> = read.iter().map(|(n, v)| (n.as_str(), *v)).collect();
    assert_eq!(sent, read, "the upstream head changed on the wire");
});
