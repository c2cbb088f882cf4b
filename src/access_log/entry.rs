//! What one access-log line says: [`AccessEntry`], borrowed from the request's record.
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
