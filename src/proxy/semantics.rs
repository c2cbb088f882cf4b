//! What a strict edge refuses in a request head before routing it (RFC 9110, RFC 9112), and
//! the host a request is for, read the same way for routing and for the backend's `Host`.

use http::header::{self, HeaderMap};
use http::uri::Authority;
use http::{Method, Uri, Version};

use super::error::ProxyError;

/// Refuses what a strict edge refuses before routing: `CONNECT` (levee does not tunnel), the
/// asterisk-form target for anything but `OPTIONS`, two `Host` headers, a `Host` that is not
/// a `host[:port]` (empty, or with characters no host has), userinfo in the target or in
/// `Host` (RFC 9110 §4.2.4: to be treated as an error), and an HTTP/1.1 request with no host
/// at all. (hyper refuses a transfer coding other than a final `chunked` itself, with 400.)
pub fn check_head(
    method: &Method,
    uri: &Uri,
    version: Version,
    headers: &HeaderMap,
) -> Result<(), ProxyError> {
    if method == Method::CONNECT {
        return Err(ProxyError::MethodNotAllowed);
    }
    if uri == "*" && method != Method::OPTIONS {
        let text = "400 Bad Request: the asterisk-form target is for OPTIONS only\n";
        return Err(ProxyError::BadRequest(text));
    }
    let mut hosts = headers.get_all(header::HOST).iter();
    let first = hosts.next();
    if hosts.next().is_some() {
        let text = "400 Bad Request: a request has one Host header, not several\n";
        return Err(ProxyError::BadRequest(text));
    }
    let host_header = match first {
        Some(value) => match Authority::try_from(value.as_bytes()) {
            Ok(authority) => Some(authority),
            Err(_) => {
                let text = "400 Bad Request: the Host header is not a host[:port]\n";
                return Err(ProxyError::BadRequest(text));
            }
        },
        None => None,
    };
    let with_userinfo = |a: &Authority| a.as_str().contains('@');
    if uri.authority().is_some_and(with_userinfo) || host_header.as_ref().is_some_and(with_userinfo)
    {
        let text = "400 Bad Request: a request target or Host carries no user name or password\n";
        return Err(ProxyError::BadRequest(text));
    }
    let no_host = host_header.is_none() && uri.authority().is_none();
    if version == Version::HTTP_11 && no_host {
        let text = "400 Bad Request: an HTTP/1.1 request needs a Host header\n";
        return Err(ProxyError::BadRequest(text));
    }
    Ok(())
}

/// The host a request is for, with its port if it has one: an absolute-form target's
/// authority (or h2's `:authority`) whatever `Host` says (RFC 9112 §3.2.2), else `Host`.
/// Never the userinfo of an authority.
pub fn request_host<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Option<&'a str> {
    match uri.authority() {
        Some(authority) => Some(without_userinfo(authority)),
        None => headers.get(header::HOST)?.to_str().ok(),
    }
}

/// `host[:port]` of an authority, without any `user[:password]@` before it.
pub fn without_userinfo(authority: &Authority) -> &str {
    let text = authority.as_str();
    text.rsplit_once('@').map_or(text, |(_, host)| host)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn check(method: &str, target: &str, version: Version, hosts: &[&[u8]]) -> Option<String> {
        let mut headers = HeaderMap::new();
        for h in hosts {
            headers.append(header::HOST, http::HeaderValue::from_bytes(h).unwrap());
        }
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let uri = Uri::try_from(target).unwrap();
        check_head(&method, &uri, version, &headers)
            .err()
            .map(|e| match e {
                ProxyError::BadRequest(text) => text.to_owned(),
                other => other.to_string(),
            })
    }

    #[test]
    fn accepts_ordinary_heads() {
        let h11 = Version::HTTP_11;
        assert_eq!(check("GET", "/", h11, &[b"a.example"]), None);
        assert_eq!(check("GET", "/", h11, &[b"a.example:8443"]), None);
        assert_eq!(check("GET", "/", h11, &[b"[::1]:8443"]), None);
        assert_eq!(check("GET", "http://a.example/x", h11, &[]), None);
        assert_eq!(check("OPTIONS", "*", h11, &[b"a.example"]), None);
        assert_eq!(check("GET", "/", Version::HTTP_10, &[]), None);
    }

    #[test]
    fn refuses_userinfo_bad_and_missing_hosts() {
        let h11 = Version::HTTP_11;
        let refused = |m, t, h: &[&[u8]]| check(m, t, h11, h).is_some();
        assert!(refused("GET", "http://user:pw@a.example/", &[]));
        assert!(refused("GET", "/", &[b"user@a.example"]));
        assert!(refused("GET", "/", &[b""]));
        assert!(refused("GET", "/", &[b"a b.example"]));
        assert!(refused("GET", "/", &[b"a.example/evil"]));
        assert!(refused("GET", "/", &[b"a.example", b"b.example"]));
        assert!(refused("GET", "/", &[]));
        assert!(refused("GET", "*", &[b"a.example"]));
        assert!(refused("CONNECT", "a.example:443", &[b"a.example:443"]));
    }

    #[test]
    fn the_target_authority_is_the_host_without_userinfo() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, http::HeaderValue::from_static("b.example"));
        let uri = Uri::from_static("http://u:p@a.example:8080/x");
        assert_eq!(request_host(&uri, &headers), Some("a.example:8080"));
        let origin = Uri::from_static("/x");
        assert_eq!(request_host(&origin, &headers), Some("b.example"));
    }
}
