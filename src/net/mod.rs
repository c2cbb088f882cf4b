//! The real client address: a PROXY protocol header read once per connection before TLS, and
//! `X-Forwarded-For` read per request, each believed only from `trusted_proxies`.
//!
//! Owns the parsing and the trust decisions; it keeps no state between connections and never
//! logs (the caller, `runtime::front`, decides what a refusal is worth).
//!
//! - [`proxy_protocol`]: v1/v2 header framing, parsing and encoding (pure, fuzzed).
//! - [`accept`]: the trust check and the time-limited read of the header off the socket.
//! - [`trusted`]: the `trusted_proxies` CIDR list.
//! - [`forwarded`]: the client address of one request from `X-Forwarded-For`.

pub mod accept;
pub mod forwarded;
pub mod proxy_protocol;
pub mod trusted;

use std::time::Duration;

pub use accept::{ClientAddrError, ClientAddress, client_address, client_address_now, skip_header};
pub use forwarded::{client_ip_for_request, trusts_forwarded};
pub use proxy_protocol::Accept;
pub use trusted::{CidrError, TrustedProxies, parse_cidr};

/// Default `proxy_protocol_timeout`: time allowed for the PROXY header, from accept.
pub const DEFAULT_PROXY_PROTOCOL_TIMEOUT: Duration = Duration::from_secs(5);

/// How a listener learns the real client address (its `proxy_protocol`, `trusted_proxies`,
/// `proxy_protocol_timeout` and `trust_forwarded_for` keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAddressPolicy {
    /// The PROXY header versions every connection must start with; `None` when off.
    pub proxy_protocol: Option<Accept>,
    /// Time allowed to receive the whole PROXY header, from accept.
    pub proxy_protocol_timeout: Duration,
    /// Peers allowed to send a PROXY header or a believed `X-Forwarded-For`.
    pub trusted_proxies: TrustedProxies,
    /// Whether `X-Forwarded-For` from a trusted peer names the request's client.
    pub trust_forwarded_for: bool,
}

impl Default for ClientAddressPolicy {
    /// Off: the TCP peer is the client.
    fn default() -> Self {
        Self {
            proxy_protocol: None,
            proxy_protocol_timeout: DEFAULT_PROXY_PROTOCOL_TIMEOUT,
            trusted_proxies: TrustedProxies::default(),
            trust_forwarded_for: false,
        }
    }
}
