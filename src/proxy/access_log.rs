//! The access log: one `levee::access` event per request, when its response ends.
//!
//! The event is a root event (`parent: None`): it carries every field it needs itself
//! (listener, peer, client, ...) instead of inheriting the connection's span, so a line is
//! flat and has each field once, in text and in JSON alike (see `logging`). Absent values
//! (no backend, no ASN, no user agent) are left out of the line rather than written empty.
//! Field by field: README.md, "Access log".

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http::{HeaderValue, Method, Uri, Version};

/// Who produced the status a client got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFrom {
    /// levee answered itself (no backend, a limit, a bad request, an upstream error).
    Levee,
    /// The backend's response, relayed.
    Backend,
}

impl StatusFrom {
    /// The access log's `status_from` value.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusFrom::Levee => "levee",
            StatusFrom::Backend => "backend",
        }
    }
}

/// One access-log line, borrowed from the request's record.
#[derive(Debug)]
pub struct AccessEntry<'a> {
    /// `X-Request-Id`: the client's, or the one levee made.
    pub request_id: &'a HeaderValue,
    /// The request's client (a trusted `X-Forwarded-For`'s, else the connection's).
    pub client: IpAddr,
    /// The TCP peer (a proxy in front, when one declared the client).
    pub peer: SocketAddr,
    /// ISO country code of the client's tag.
    pub country: &'a str,
    /// Its autonomous system, when known.
    pub asn: Option<u32>,
    /// The listener that accepted the connection.
    pub listener: &'a str,
    /// The client's HTTP version.
    pub version: Version,
    /// Request method.
    pub method: &'a Method,
    /// The request target as received (path, and the query when `with_query`).
    pub uri: &'a Uri,
    /// The `Host` header, when the target carried no authority.
    pub host_header: Option<&'a HeaderValue>,
    /// Whether the query string is logged (`[server] access_log_query`).
    pub with_query: bool,
    /// The status the client got.
    pub status: u16,
    /// Who produced it.
    pub status_from: StatusFrom,
    /// The pool the request was routed to.
    pub pool: Option<&'a str>,
    /// The backend that answered (or was last tried).
    pub backend: Option<SocketAddr>,
    /// From sending the answered attempt upstream to the backend's response head.
    pub upstream: Option<Duration>,
    /// From the request head's arrival to the response's end.
    pub duration: Duration,
    /// Request body bytes received.
    pub bytes_in: u64,
    /// Response body bytes sent.
    pub bytes_out: u64,
    /// The client's `User-Agent`.
    pub user_agent: Option<&'a HeaderValue>,
    /// The admission refusal, when admission control refused the request.
    pub refused: Option<&'static str>,
}

/// `h1` or `h2`: the protocol the client spoke.
fn proto(version: Version) -> &'static str {
    if version == Version::HTTP_2 {
        "h2"
    } else {
        "h1"
    }
}

/// Milliseconds with microsecond precision.
fn millis(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

/// A header value as text, when it is visible ASCII (others are left out, not mangled).
fn text(v: Option<&HeaderValue>) -> Option<&str> {
    v.and_then(|v| v.to_str().ok())
}

/// Writes `entry` as one `levee::access` event at `info`.
pub fn write(entry: &AccessEntry<'_>) {
    let host = entry
        .uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| text(entry.host_header));
    let query = entry.uri.query().filter(|_| entry.with_query);
    tracing::info!(
        target: "levee::access",
        parent: None,
        request_id = text(Some(entry.request_id)),
        client = %entry.client,
        peer = %entry.peer,
        country = entry.country,
        asn = entry.asn,
        listener = entry.listener,
        proto = proto(entry.version),
        method = %entry.method,
        host,
        path = %entry.uri.path(),
        query,
        status = entry.status,
        status_from = entry.status_from.as_str(),
        pool = entry.pool,
        backend = entry.backend.map(tracing::field::display),
        upstream_ms = entry.upstream.map(millis),
        duration_ms = millis(entry.duration),
        bytes_in = entry.bytes_in,
        bytes_out = entry.bytes_out,
        user_agent = text(entry.user_agent),
        refused = entry.refused,
    );
}
