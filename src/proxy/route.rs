//! Request routing: first route whose host and path prefix match, else the default pool.

use crate::config::{Listener, PoolId};

/// The host of a request without its port (`Host` header value or URI authority).
pub fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        // IPv6 literal: keep the brackets, drop the port.
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// Chooses the pool for a request on `listener`.
pub fn route(listener: &Listener, host: Option<&str>, path: &str) -> PoolId {
    let host = host.map(host_without_port);
    listener
        .routes
        .iter()
        .find(|r| {
            let host_ok = match (&r.host, host) {
                (None, _) => true,
                (Some(want), Some(got)) => want.eq_ignore_ascii_case(got),
                (Some(_), None) => false,
            };
            host_ok && r.path_prefix.as_deref().is_none_or(|p| path.starts_with(p))
        })
        .map_or(listener.default_pool, |r| r.pool)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_ports() {
        assert_eq!(host_without_port("a.example:8443"), "a.example");
        assert_eq!(host_without_port("a.example"), "a.example");
        assert_eq!(host_without_port("[::1]:8443"), "[::1]");
    }
}
