//! The raw `[admission]` section as written in the file.

use std::collections::BTreeMap;

use serde::Deserialize;

/// `[admission]`: global guards against connection floods and slow clients.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmission {
    /// Open client connections of the whole process; absent: no limit.
    pub max_connections: Option<i64>,
    /// Open connections per client IP; absent: no limit.
    pub max_connections_per_ip: Option<i64>,
    /// TLS handshakes in progress per worker; absent: no limit.
    pub max_handshakes_in_flight: Option<i64>,
    /// Connections that may wait for a handshake slot, per worker.
    pub handshake_queue: Option<i64>,
    /// Longest wait in the handshake queue, e.g. `"5s"`.
    pub handshake_queue_timeout: Option<String>,
    /// Smallest average request body rate in bytes per second; absent: no minimum.
    pub min_upload_rate: Option<i64>,
    /// Time a request body is given before `min_upload_rate` applies, e.g. `"5s"`.
    pub min_upload_rate_grace: Option<String>,
    /// Client networks (CIDR) and ASNs (`"AS64500"`) that are never rate limited.
    pub allowlist: Option<Vec<String>>,
    /// How long a tarpitted connection is held, e.g. `"10s"`.
    pub tarpit_delay: Option<String>,
    /// `[admission.countries.CC]` and `[admission.countries.default]`.
    #[serde(default)]
    pub countries: BTreeMap<String, RawRateLimit>,
    /// `[admission.asns.ASN]` (`AS64500` or `64500`) and `[admission.asns.default]`.
    #[serde(default)]
    pub asns: BTreeMap<String, RawRateLimit>,
    /// Automatic caps on spiking countries near handshake capacity.
    pub auto: Option<bool>,
    /// Log and count what `auto` would do, without doing it.
    pub dry_run: Option<bool>,
    /// An automatic cap is the country's baseline times this.
    pub auto_headroom: Option<f64>,
}

/// One `[admission.countries.*]` / `[admission.asns.*]` table; unset keys come from the
/// section's `default` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    /// New connections a second.
    pub new_connections_per_sec: Option<f64>,
    /// New connections allowed at once (bucket size).
    pub burst: Option<i64>,
    /// Requests a second.
    pub requests_per_sec: Option<f64>,
    /// Requests allowed at once (bucket size).
    pub request_burst: Option<i64>,
    /// `"reject"` or `"tarpit"`, for connections over the bucket.
    pub action: Option<String>,
}
