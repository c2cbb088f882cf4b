//! Protocol upgrades (WebSocket and any other): which requests ask for one, and how their
//! heads are rewritten on the way up and back down.
//!
//! Two shapes of request ask for a tunnel:
//! - **HTTP/1.1 `Upgrade`** (RFC 9110 §7.8): `Connection: upgrade` and an `Upgrade` header.
//!   Both are hop-by-hop, so `headers::rewrite_request` strips them; [`restore_request`]
//!   puts them back for the backend, and [`restore_response`] puts the backend's back on its
//!   `101`.
//! - **Extended CONNECT over h2** (RFC 8441): `CONNECT` with a `:protocol` pseudo-header.
//!   Backends speak HTTP/1.1, so it goes up as a `GET` with `Upgrade: <protocol>`, and for
//!   `websocket` a `Sec-WebSocket-Key` made here (an h2 client sends none, RFC 8441 §5); the
//!   backend's `101` goes back as `200` (RFC 8441 §5: the h2 stream is the tunnel).
//!
//! What flows once the backend has switched is `proxy::tunnel`'s.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, StatusCode};

/// `websocket`, the protocol of `Upgrade` and `:protocol` for WebSocket.
const WEBSOCKET: &str = "websocket";

/// The header that carries a WebSocket handshake's key (RFC 6455 §4.1).
static SEC_WEBSOCKET_KEY: header::HeaderName = header::SEC_WEBSOCKET_KEY;

/// What kind of tunnel a request asks for, with the protocol it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requested {
    /// HTTP/1.1 `Upgrade: <protocol>` with `Connection: upgrade`.
    Http1(HeaderValue),
    /// h2 extended CONNECT with `:protocol = <protocol>` (RFC 8441).
    ExtendedConnect(HeaderValue),
}

impl Requested {
    /// The protocol the client asks to switch to.
    pub fn protocol(&self) -> &HeaderValue {
        match self {
            Requested::Http1(p) | Requested::ExtendedConnect(p) => p,
        }
    }
}

/// Whether `req` asks for a tunnel, and which. Cheap for ordinary requests: one method
/// compare and, for HTTP/1.1, one header lookup.
pub fn requested<B>(req: &Request<B>) -> Option<Requested> {
    if req.method() == Method::CONNECT {
        let protocol = req.extensions().get::<hyper::ext::Protocol>()?;
        let value = HeaderValue::from_str(protocol.as_str()).ok()?;
        return Some(Requested::ExtendedConnect(value));
    }
    if req.version() != http::Version::HTTP_11 {
        return None;
    }
    let upgrade = req.headers().get(header::UPGRADE)?;
    if is_h2c(upgrade) {
        return None;
    }
    connection_has_upgrade(req.headers()).then(|| Requested::Http1(upgrade.clone()))
}

/// Whether `Upgrade` offers h2c (RFC 7540 §3.2, as `curl --http2` sends on `http://`): not
/// forwarded, as nginx and HAProxy do not. Its `HTTP2-Settings` is hop-by-hop and would not
/// reach the backend, and levee speaks h2 to clients itself (prior knowledge or ALPN); the
/// request is served as the HTTP/1.1 request it also is.
fn is_h2c(upgrade: &HeaderValue) -> bool {
    upgrade
        .as_bytes()
        .split(|&b| b == b',')
        .any(|p| p.trim_ascii().eq_ignore_ascii_case(b"h2c"))
}

/// Whether a `Connection` header lists the `upgrade` token.
fn connection_has_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
}

/// Makes the (already rewritten) upstream head ask the backend to switch to the protocol the
/// client asked for: `Connection: upgrade` and `Upgrade` back, and, from an h2 extended
/// CONNECT, a `GET` with the WebSocket key it lacks. `key` makes that key (16 random bytes,
/// base64: RFC 6455 §4.1).
pub fn restore_request(
    parts: &mut http::request::Parts,
    requested: &Requested,
    key: impl FnOnce() -> HeaderValue,
) {
    let headers = &mut parts.headers;
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, requested.protocol().clone());
    if let Requested::ExtendedConnect(protocol) = requested {
        parts.method = Method::GET;
        if protocol
            .as_bytes()
            .eq_ignore_ascii_case(WEBSOCKET.as_bytes())
            && !headers.contains_key(&SEC_WEBSOCKET_KEY)
        {
            headers.insert(SEC_WEBSOCKET_KEY.clone(), key());
        }
    }
}

/// Makes the (already rewritten) `101` of the backend the answer the client expects: for
/// HTTP/1.1 the `101` with `Connection: upgrade` and the backend's `Upgrade`; for an h2
/// extended CONNECT a `200` without the HTTP/1.1 handshake's headers. `upgrade` is the
/// backend's `Upgrade` header, read before the hop-by-hop strip.
pub fn restore_response(
    parts: &mut http::response::Parts,
    requested: &Requested,
    upgrade: Option<HeaderValue>,
) {
    let headers = &mut parts.headers;
    match requested {
        Requested::Http1(asked) => {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(header::UPGRADE, upgrade.unwrap_or_else(|| asked.clone()));
        }
        Requested::ExtendedConnect(_) => {
            parts.status = StatusCode::OK;
            parts.version = http::Version::HTTP_2;
            headers.remove(header::SEC_WEBSOCKET_ACCEPT);
        }
    }
}

/// A `Sec-WebSocket-Key` value: 16 bytes from `random`, base64 (24 characters).
pub fn websocket_key(random: [u8; 16]) -> HeaderValue {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = [b'='; 24];
    for (chunk, slot) in random.chunks(3).zip(out.chunks_mut(4)) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let digits = chunk.len() + 1;
        for (i, s) in slot.iter_mut().enumerate().take(digits) {
            *s = ALPHABET[((n >> (18 - 6 * i)) & 63) as usize];
        }
    }
    // Only base64 alphabet bytes and '=': always a valid header value.
    HeaderValue::from_bytes(&out).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use super::*;

    fn h1(headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::get("/chat");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn an_http1_upgrade_needs_both_headers() {
        let both = h1(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
        ]);
        assert_eq!(
            requested(&both),
            Some(Requested::Http1(HeaderValue::from_static("websocket")))
        );
        assert_eq!(requested(&h1(&[("upgrade", "websocket")])), None);
        assert_eq!(requested(&h1(&[("connection", "upgrade")])), None);
        assert_eq!(requested(&h1(&[])), None);
        let h2c = h1(&[
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c"),
        ]);
        assert_eq!(requested(&h2c), None, "h2c upgrades are not forwarded");
        let mut h10 = both;
        *h10.version_mut() = http::Version::HTTP_10;
        assert_eq!(requested(&h10), None, "HTTP/1.0 has no Upgrade");
    }

    #[test]
    fn extended_connect_needs_a_protocol() {
        let mut req = Request::connect("https://a.example/chat").body(()).unwrap();
        assert_eq!(requested(&req), None, "plain CONNECT is no upgrade");
        req.extensions_mut()
            .insert(hyper::ext::Protocol::from_static("websocket"));
        let r = requested(&req).unwrap();
        assert_eq!(
            r,
            Requested::ExtendedConnect(HeaderValue::from_static("websocket"))
        );
        let (mut parts, ()) = req.into_parts();
        restore_request(&mut parts, &r, || HeaderValue::from_static("k"));
        assert_eq!(parts.method, Method::GET);
        assert_eq!(parts.headers["upgrade"], "websocket");
        assert_eq!(parts.headers["connection"], "upgrade");
        assert_eq!(parts.headers["sec-websocket-key"], "k");
    }

    #[test]
    fn responses_are_restored_for_each_client() {
        let mut resp = http::Response::builder()
            .status(101)
            .header("sec-websocket-accept", "x")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let h1 = Requested::Http1(HeaderValue::from_static("websocket"));
        restore_response(&mut resp, &h1, Some(HeaderValue::from_static("WebSocket")));
        assert_eq!(resp.status, 101);
        assert_eq!(resp.headers["upgrade"], "WebSocket");
        assert_eq!(resp.headers["connection"], "upgrade");
        let h2 = Requested::ExtendedConnect(HeaderValue::from_static("websocket"));
        restore_response(&mut resp, &h2, None);
        assert_eq!(resp.status, 200);
        assert!(!resp.headers.contains_key("sec-websocket-accept"));
    }

    #[test]
    fn websocket_keys_are_base64_of_16_bytes() {
        // RFC 6455 §1.3's sample nonce.
        let nonce = *b"the sample nonce";
        assert_eq!(websocket_key(nonce), "dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(websocket_key([0xff; 16]), "/////////////////////w==");
    }
}
