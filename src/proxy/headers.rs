//! Header rewriting between client and backend: hop-by-hop removal, forwarding headers and
//! the GeoIP tag headers.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Uri, Version};

use super::semantics::without_userinfo;
use crate::geo::{ClientTag, GeoSettings};

/// Headers that describe one hop and never travel further (RFC 9110 §7.6.1, plus legacy ones).
/// `Connection` first (`strip_hop_by_hop` relies on it). A `static`: a `const` array would be
/// built anew at every use.
static HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");

/// The forwarding headers a client may send and a backend may believe: removed from a
/// client that is not a trusted proxy, then set from what levee knows.
const FORWARDING: [&HeaderName; 5] = [
    &X_FORWARDED_FOR,
    &X_FORWARDED_PROTO,
    &X_FORWARDED_HOST,
    &X_FORWARDED_PORT,
    &header::FORWARDED,
];

/// How many headers `rewrite_request` and `service::outbound` may add to a request head.
const ADDED_UPSTREAM: usize = 8;

/// Removes hop-by-hop headers, including every header named in `Connection`.
///
/// One pass over the (few) names present finds which hop-by-hop names are there; only those
/// are removed (a hashed removal per absent name cost ~1,500 instructions per request, with
/// `Connection: keep-alive` on nearly every backend response). `Connection` tokens that
/// name a hop-by-hop header anyway, or are `close`, allocate nothing.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let mut present = 0u8;
    for name in headers.keys() {
        if let Some(i) = hop_by_hop_index(name) {
            present |= 1 << i;
        }
    }
    if present == 0 {
        return;
    }
    // `HOP_BY_HOP[0]` is `Connection`.
    if present & 1 != 0 {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            .filter(|t| !removed_anyway(t))
            .filter_map(|t| HeaderName::from_bytes(t).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
}

/// The index of `name` in `HOP_BY_HOP`: a match on its text (a length switch, then a
/// compare) instead of eight `HeaderName` comparisons per header (~1,000 instructions a
/// head).
fn hop_by_hop_index(name: &HeaderName) -> Option<usize> {
    match name.as_str() {
        "connection" => Some(0),
        "keep-alive" => Some(1),
        "proxy-connection" => Some(2),
        "te" => Some(3),
        "trailer" => Some(4),
        "transfer-encoding" => Some(5),
        "upgrade" => Some(6),
        "proxy-authorization" => Some(7),
        _ => None,
    }
}

/// Whether `name` is one of `FORWARDING`, by its text (as `hop_by_hop_index`).
fn is_forwarding(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "x-forwarded-for"
            | "x-forwarded-proto"
            | "x-forwarded-host"
            | "x-forwarded-port"
            | "forwarded"
    )
}

/// Whether a `Connection` token needs no removal of its own: empty, `close`, or the name of
/// a header removed as hop-by-hop in any case.
fn removed_anyway(token: &[u8]) -> bool {
    token.is_empty()
        || token.eq_ignore_ascii_case(b"close")
        || HOP_BY_HOP
            .iter()
            .any(|h| token.eq_ignore_ascii_case(h.as_str().as_bytes()))
}

/// The `Via` value for a request received with `version`.
pub fn via_for(version: Version) -> HeaderValue {
    HeaderValue::from_static(match version {
        Version::HTTP_09 => "0.9 levee",
        Version::HTTP_10 => "1.0 levee",
        Version::HTTP_2 => "2 levee",
        Version::HTTP_3 => "3 levee",
        _ => "1.1 levee",
    })
}

/// What the proxy knows about the client side of a request.
#[derive(Debug, Clone)]
pub struct ClientSide {
    /// The client IP, formatted once per connection.
    pub ip: HeaderValue,
    /// Whether the client connection is TLS.
    pub tls: bool,
    /// Whether the client is a proxy the listener trusts with `X-Forwarded-For`
    /// (`trust_forwarded_for` and `trusted_proxies`): its forwarding headers are kept (its
    /// `X-Forwarded-For` extended). Anyone else's are removed and set from what levee knows.
    pub trusted: bool,
}

/// Rewrites a client request head into the head sent upstream (HTTP/1.1, origin-form).
///
/// Forwarding headers: from a client that is not a trusted proxy (`ClientSide::trusted`),
/// every `X-Forwarded-For/-Proto/-Host/-Port` and `Forwarded` it sent is removed, then
/// `X-Forwarded-For` (the client address), `X-Forwarded-Proto` and, when levee knows the
/// host, `X-Forwarded-Host` are set. From a trusted proxy, its `X-Forwarded-For` is extended
/// with the address it connected from, and its other forwarding headers are kept (levee's
/// are set only where it sent none).
///
/// `fallback_host` is used as `Host` when the client sent none (HTTP/1.0 without Host). The
/// client's tag goes into the headers `geo` names (see [`set_client_tag`]).
pub fn rewrite_request(
    parts: &mut http::request::Parts,
    client: &ClientSide,
    geo: &GeoSettings,
    tag: &ClientTag,
    fallback_host: &HeaderValue,
) {
    let via = via_for(parts.version);
    let headers = &mut parts.headers;
    // Room for what is added below (Host, X-Forwarded-*, Via, the tag headers, and the
    // request id `outbound` sets) in one growth of the map, not one per insert that finds it
    // full. Failing that (a map at its maximum size), inserts grow it as they need.
    let _ = headers.try_reserve(ADDED_UPSTREAM);
    // `Host` is end to end (RFC 9110 §7.2): a client naming it in `Connection` does not
    // make it hop-by-hop, and levee routed on it, so it is read before the strip.
    let client_host = headers.get(header::HOST).cloned();
    strip_hop_by_hop(headers);
    if !client.trusted && headers.keys().any(is_forwarding) {
        for name in FORWARDING {
            headers.remove(name);
        }
    }
    // An absolute-form target's (or h2's `:authority`) is the host, whatever `Host` says.
    let authority = parts.uri.authority();
    let authority = authority.and_then(|a| HeaderValue::from_str(without_userinfo(a)).ok());
    let host = authority.or(client_host);
    match host {
        Some(host) => {
            headers.insert(header::HOST, host.clone());
            if !client.trusted || !headers.contains_key(&X_FORWARDED_HOST) {
                headers.insert(X_FORWARDED_HOST.clone(), host);
            }
        }
        None => {
            headers.insert(header::HOST, fallback_host.clone());
        }
    }
    append_forwarded_for(headers, &client.ip);
    if !client.trusted || !headers.contains_key(&X_FORWARDED_PROTO) {
        let proto = HeaderValue::from_static(if client.tls { "https" } else { "http" });
        headers.insert(X_FORWARDED_PROTO.clone(), proto);
    }
    headers.append(header::VIA, via);
    set_client_tag(headers, geo, tag);
    parts.uri = origin_form(&parts.uri);
    parts.version = Version::HTTP_11;
}

/// Replaces whatever the client sent in the tag headers named by `geo` with the tag: the
/// country header always (`ZZ` when unknown, and when `[geo]` is disabled), the ASN header
/// only when the ASN is known. A client can never pass its own copy upstream. Allocates
/// nothing: the names and values are prebuilt, and cloning them copies no bytes.
pub fn set_client_tag(headers: &mut HeaderMap, geo: &GeoSettings, tag: &ClientTag) {
    // `insert` replaces every value already under the name.
    headers.insert(geo.country_header.clone(), tag.country_header.clone());
    match &tag.asn_header {
        Some(asn) => {
            headers.insert(geo.asn_header.clone(), asn.clone());
        }
        None => {
            headers.remove(&geo.asn_header);
        }
    }
}

/// Appends the client IP to `X-Forwarded-For`, merging any values the client sent.
fn append_forwarded_for(headers: &mut HeaderMap, ip: &HeaderValue) {
    let mut merged: Option<Vec<u8>> = None;
    for v in headers.get_all(&X_FORWARDED_FOR) {
        let buf = merged.get_or_insert_with(Vec::new);
        if !buf.is_empty() {
            buf.extend_from_slice(b", ");
        }
        buf.extend_from_slice(v.as_bytes());
    }
    let value = match merged {
        None => ip.clone(),
        Some(mut buf) => {
            buf.extend_from_slice(b", ");
            buf.extend_from_slice(ip.as_bytes());
            HeaderValue::from_bytes(&buf).unwrap_or_else(|_| ip.clone())
        }
    };
    headers.insert(X_FORWARDED_FOR.clone(), value);
}

/// The origin-form (`/path?query`) of a request target. An absolute-form target with an
/// empty path (`http://a.example`, `http://a.example?q`) gets `/` (RFC 9112 §3.2.1).
fn origin_form(uri: &Uri) -> Uri {
    match uri.path_and_query() {
        Some(_) if uri.scheme().is_none() && uri.authority().is_none() => uri.clone(),
        // `http://a.example#x` has a path that reads as `/` but is stored empty, and an
        // empty stored path would be written as an empty target: spelled out instead.
        Some(pq) if pq.as_str() == "/" => Uri::from_static("/"),
        Some(pq) if pq.as_str().starts_with('/') => Uri::from(pq.clone()),
        Some(pq) => {
            let rooted = format!("/{}", pq.as_str());
            Uri::try_from(rooted).unwrap_or_else(|_| Uri::from_static("/"))
        }
        None => Uri::from_static("/"),
    }
}

/// Rewrites a backend response head before it goes to the client.
pub fn rewrite_response(parts: &mut http::response::Parts) {
    let via = via_for(parts.version);
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.append(header::VIA, via);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(raw: http::request::Builder) -> http::request::Parts {
        raw.body(()).unwrap().into_parts().0
    }

    /// Default `[geo]` settings and a client nothing is known about.
    fn untagged() -> (GeoSettings, ClientTag) {
        (GeoSettings::default(), ClientTag::unknown())
    }

    #[test]
    fn the_upstream_target_is_always_origin_form() {
        let cases = [
            ("/a?b", "/a?b"),
            ("*", "*"),
            ("http://a.example/p?q=1", "/p?q=1"),
            ("http://a.example", "/"),
            ("http://a.example?q=1", "/?q=1"),
            ("http://a.example:8080#/frag", "/"),
            ("a.example:80", "/"),
        ];
        for (target, want) in cases {
            let uri = Uri::try_from(target).unwrap();
            assert_eq!(origin_form(&uri).to_string(), want, "{target}");
        }
    }

    #[test]
    fn strips_hop_by_hop_and_connection_named_headers() {
        let mut p = request(
            http::Request::get("/a?b")
                .header("host", "example.com")
                .header("connection", "keep-alive, x-secret")
                .header("x-secret", "1")
                .header("keep-alive", "timeout=5")
                .header("te", "trailers")
                .header("upgrade", "websocket")
                .header("x-keep", "yes"),
        );
        let (geo, tag) = untagged();
        let client = ClientSide {
            ip: HeaderValue::from_static("10.0.0.9"),
            tls: true,
            trusted: false,
        };
        rewrite_request(
            &mut p,
            &client,
            &geo,
            &tag,
            &HeaderValue::from_static("b:1"),
        );
        for h in ["connection", "x-secret", "keep-alive", "te", "upgrade"] {
            assert!(!p.headers.contains_key(h), "{h} kept");
        }
        assert_eq!(p.headers["x-keep"], "yes");
        assert_eq!(p.headers["host"], "example.com");
        assert_eq!(p.headers["x-forwarded-host"], "example.com");
        assert_eq!(p.headers["x-forwarded-proto"], "https");
        assert_eq!(p.headers["x-forwarded-for"], "10.0.0.9");
        assert_eq!(p.headers["via"], "1.1 levee");
        assert_eq!(p.uri, "/a?b");
    }

    #[test]
    fn the_name_matches_agree_with_the_name_lists() {
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_by_hop_index(name), Some(i), "{name}");
            assert!(!is_forwarding(name), "{name}");
        }
        for name in FORWARDING {
            assert!(is_forwarding(name), "{name}");
            assert_eq!(hop_by_hop_index(name), None, "{name}");
        }
        for other in [
            header::HOST,
            header::VIA,
            HeaderName::from_static("x-forwarded"),
        ] {
            assert_eq!(hop_by_hop_index(&other), None);
            assert!(!is_forwarding(&other));
        }
    }

    #[test]
    fn connection_tokens_are_matched_without_case_and_only_present_names_go() {
        let mut h = HeaderMap::new();
        h.append(
            header::CONNECTION,
            HeaderValue::from_static("Close, X-Trace"),
        );
        h.append(
            header::CONNECTION,
            HeaderValue::from_static(" Keep-Alive ,,TE"),
        );
        h.insert("x-trace", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("13"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!(h[header::CONTENT_LENGTH], "13");
        // Nothing hop-by-hop: untouched.
        let mut plain = HeaderMap::new();
        plain.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        strip_hop_by_hop(&mut plain);
        assert_eq!(plain.len(), 1);
    }

    #[test]
    fn appends_to_existing_forwarded_for_and_fills_host() {
        let mut p = request(
            http::Request::get("https://svc.example:8443/x")
                .version(Version::HTTP_2)
                .header("x-forwarded-for", "1.1.1.1")
                .header("x-forwarded-for", "2.2.2.2"),
        );
        let (geo, tag) = untagged();
        // A trusted proxy: its X-Forwarded-For is extended.
        let client = ClientSide {
            ip: HeaderValue::from_static("3.3.3.3"),
            tls: false,
            trusted: true,
        };
        rewrite_request(
            &mut p,
            &client,
            &geo,
            &tag,
            &HeaderValue::from_static("b:1"),
        );
        assert_eq!(p.headers["x-forwarded-for"], "1.1.1.1, 2.2.2.2, 3.3.3.3");
        assert_eq!(p.headers["host"], "svc.example:8443");
        assert_eq!(p.headers["x-forwarded-host"], "svc.example:8443");
        assert_eq!(p.headers["via"], "2 levee");
        assert_eq!(p.uri, "/x");
        assert_eq!(p.version, Version::HTTP_11);
    }

    #[test]
    fn an_untrusted_clients_forwarding_headers_are_replaced() {
        let forged = |version| {
            request(
                http::Request::get("/x")
                    .version(version)
                    .header("x-forwarded-for", "1.1.1.1")
                    .header("x-forwarded-proto", "https")
                    .header("x-forwarded-host", "evil.example")
                    .header("x-forwarded-port", "443")
                    .header("forwarded", "for=1.1.1.1;host=evil.example"),
            )
        };
        let (geo, tag) = untagged();
        let fallback = HeaderValue::from_static("b:1");
        let mut client = ClientSide {
            ip: HeaderValue::from_static("3.3.3.3"),
            tls: false,
            trusted: false,
        };
        // HTTP/1.0 without Host: levee knows no host, so no X-Forwarded-Host at all.
        let mut p = forged(Version::HTTP_10);
        rewrite_request(&mut p, &client, &geo, &tag, &fallback);
        assert_eq!(p.headers["x-forwarded-for"], "3.3.3.3");
        assert_eq!(p.headers["x-forwarded-proto"], "http");
        for h in ["x-forwarded-host", "x-forwarded-port", "forwarded"] {
            assert!(!p.headers.contains_key(h), "{h} passed");
        }
        // The same from a trusted proxy: kept, and its X-Forwarded-For extended.
        client.trusted = true;
        let mut p = forged(Version::HTTP_10);
        rewrite_request(&mut p, &client, &geo, &tag, &fallback);
        assert_eq!(p.headers["x-forwarded-for"], "1.1.1.1, 3.3.3.3");
        assert_eq!(p.headers["x-forwarded-proto"], "https");
        assert_eq!(p.headers["x-forwarded-host"], "evil.example");
        assert_eq!(p.headers["x-forwarded-port"], "443");
        assert_eq!(p.headers["forwarded"], "for=1.1.1.1;host=evil.example");
    }

    #[test]
    fn http10_without_host_gets_backend_host() {
        let mut p = request(http::Request::get("/").version(Version::HTTP_10));
        let (geo, tag) = untagged();
        let client = ClientSide {
            ip: HeaderValue::from_static("3.3.3.3"),
            tls: true,
            trusted: false,
        };
        rewrite_request(
            &mut p,
            &client,
            &geo,
            &tag,
            &HeaderValue::from_static("127.0.0.1:9"),
        );
        assert_eq!(p.headers["host"], "127.0.0.1:9");
        assert!(!p.headers.contains_key("x-forwarded-host"));
    }

    /// A tag with a country and an ASN, as `geo::tag` builds it.
    fn tagged_br() -> ClientTag {
        ClientTag {
            country: crate::geo::country::index(*b"BR"),
            asn: Some(64_500),
            country_header: HeaderValue::from_static("BR"),
            asn_header: Some(HeaderValue::from(64_500_u32)),
        }
    }

    #[test]
    fn tag_headers_replace_the_clients_copies() {
        let client = ClientSide {
            ip: HeaderValue::from_static("192.0.2.1"),
            tls: true,
            trusted: false,
        };
        let spoofed = || {
            request(
                http::Request::get("/")
                    .header("host", "example.com")
                    .header("x-client-country", "US")
                    .header("X-Client-Country", "CA")
                    .header("x-client-asn", "15169"),
            )
        };
        let (geo, unknown) = untagged();
        let fallback = HeaderValue::from_static("b:1");

        let mut p = spoofed();
        rewrite_request(&mut p, &client, &geo, &tagged_br(), &fallback);
        let all = |p: &http::request::Parts, h: &str| -> Vec<String> {
            p.headers
                .get_all(h)
                .iter()
                .map(|v| v.to_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(all(&p, "x-client-country"), ["BR"]);
        assert_eq!(all(&p, "x-client-asn"), ["64500"]);

        // Unknown (or geo disabled): ZZ, and no ASN header at all, not the client's.
        let mut p = spoofed();
        rewrite_request(&mut p, &client, &geo, &unknown, &fallback);
        assert_eq!(all(&p, "x-client-country"), ["ZZ"]);
        assert!(all(&p, "x-client-asn").is_empty());

        // Custom names: the custom headers are set, and the defaults are left alone.
        let custom = GeoSettings {
            enabled: true,
            country_header: HeaderName::from_static("cf-ipcountry"),
            asn_header: HeaderName::from_static("x-asn"),
        };
        let mut p = spoofed();
        p.headers
            .insert("cf-ipcountry", HeaderValue::from_static("FR"));
        rewrite_request(&mut p, &client, &custom, &tagged_br(), &fallback);
        assert_eq!(all(&p, "cf-ipcountry"), ["BR"]);
        assert_eq!(all(&p, "x-asn"), ["64500"]);
        assert_eq!(all(&p, "x-client-country"), ["US", "CA"]);
    }

    #[test]
    fn tagging_allocates_nothing() {
        let (geo, _) = untagged();
        let tag = tagged_br();
        let mut headers = HeaderMap::with_capacity(16);
        headers.insert("x-client-asn", HeaderValue::from_static("1"));
        // The first clone of a value built at run time moves its bytes to the shared form
        // (`geo::tag` does that clone when it builds a tag).
        set_client_tag(&mut headers, &geo, &tag);
        let info = allocation_counter::measure(|| {
            for _ in 0..100 {
                set_client_tag(&mut headers, &geo, &tag);
                set_client_tag(&mut headers, &geo, &ClientTag::unknown());
            }
        });
        assert_eq!(info.count_total, 0, "{info:?}");
    }
}
