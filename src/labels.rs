//! Labels shared by the modules that decide, measure and show: the country slot index, how a
//! TLS handshake ended, why admission refused a connection, and a response's status class. A
//! leaf: it imports nothing from the crate, so `geo`, `tls`, `admission`, `lb` and `stats`
//! can all name these without importing each other.

/// Index of a country slot (GeoIP maps ISO codes to these; 0 is "unknown", `ZZ`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CountryIdx(pub u16);

/// The slot for clients whose country is not known.
pub const UNKNOWN_COUNTRY: CountryIdx = CountryIdx(0);

/// How a TLS handshake ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeKind {
    /// A full handshake (key exchange and certificate).
    Full,
    /// A resumed session (ticket or session ID).
    Resumed,
    /// The handshake failed or timed out.
    Failed,
}

impl HandshakeKind {
    /// Label used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            HandshakeKind::Full => "full",
            HandshakeKind::Resumed => "resumed",
            HandshakeKind::Failed => "failed",
        }
    }
}

/// Response status class (1xx..5xx); anything else counts as `ServerError`. The discriminant
/// indexes the per-class counters (of a stats shard, a backend, a pool).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    /// 1xx
    Informational = 0,
    /// 2xx
    Success = 1,
    /// 3xx
    Redirection = 2,
    /// 4xx
    ClientError = 3,
    /// 5xx
    ServerError = 4,
}

impl StatusClass {
    /// Number of classes (the length of a per-class counter array).
    pub const COUNT: usize = 5;

    /// The `code_class` label of each class, in discriminant order.
    pub const LABELS: [&'static str; Self::COUNT] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

    /// The class of an HTTP status code.
    pub fn of(status: u16) -> Self {
        match status {
            100..=199 => StatusClass::Informational,
            200..=299 => StatusClass::Success,
            300..=399 => StatusClass::Redirection,
            400..=499 => StatusClass::ClientError,
            _ => StatusClass::ServerError,
        }
    }
}

/// Why a connection (or a request) was refused. The discriminant indexes the per-country
/// counters of a stats shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// `max_connections`: the process already had that many client connections open.
    MaxConnections = 0,
    /// `max_connections_per_ip`: the client address already had that many open.
    PerIp = 1,
    /// `handshake_queue`: the worker's handshake wait queue was full.
    HandshakeQueueFull = 2,
    /// `handshake_queue_timeout`: no handshake slot freed up in time.
    HandshakeQueueTimeout = 3,
    /// `min_upload_rate`: a request body arrived slower than the minimum rate (408).
    SlowUpload = 4,
    /// A country or ASN `new_connections_per_sec` bucket was empty; closed before TLS.
    RateLimit = 5,
    /// As `RateLimit`, with `action = "tarpit"`: held for `tarpit_delay`, then closed.
    Tarpit = 6,
    /// A country or ASN `requests_per_sec` bucket was empty: answered 429.
    RequestRateLimit = 7,
    /// The fair handshake scheduler made room in a full queue for a country below its
    /// share by closing a waiter of the country furthest above its share.
    FairShare = 8,
    /// `[admission] auto`: the country's spike cap was exceeded; closed before TLS.
    AutoCap = 9,
    /// `[admission] auto` with `dry_run`: the spike cap would have closed it (it was not).
    AutoCapDryRun = 10,
    /// `[admission] auto`: admitted before its country's cap started, the connection was
    /// still waiting for a handshake slot, and was over the cap when it got one; closed
    /// before its handshake.
    AutoCapQueued = 11,
}

impl RejectReason {
    /// Every reason, in discriminant order.
    pub const ALL: [RejectReason; 12] = [
        RejectReason::MaxConnections,
        RejectReason::PerIp,
        RejectReason::HandshakeQueueFull,
        RejectReason::HandshakeQueueTimeout,
        RejectReason::SlowUpload,
        RejectReason::RateLimit,
        RejectReason::Tarpit,
        RejectReason::RequestRateLimit,
        RejectReason::FairShare,
        RejectReason::AutoCap,
        RejectReason::AutoCapDryRun,
        RejectReason::AutoCapQueued,
    ];

    /// Number of reasons (the length of a shard's per-country counter array).
    pub const COUNT: usize = Self::ALL.len();

    /// Label used in `/metrics`, `/stats` and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::MaxConnections => "max_connections",
            RejectReason::PerIp => "per_ip",
            RejectReason::HandshakeQueueFull => "handshake_queue_full",
            RejectReason::HandshakeQueueTimeout => "handshake_queue_timeout",
            RejectReason::SlowUpload => "slow_upload",
            RejectReason::RateLimit => "rate_limit",
            RejectReason::Tarpit => "tarpit",
            RejectReason::RequestRateLimit => "request_rate_limit",
            RejectReason::FairShare => "fair_share",
            RejectReason::AutoCap => "auto_cap",
            RejectReason::AutoCapDryRun => "auto_cap_dry_run",
            RejectReason::AutoCapQueued => "auto_cap_queued",
        }
    }

    /// Whether a connection refused for this reason is closed with a reset. A flood's
    /// refusals (buckets, tarpit, automatic cap, full queue) are: no FIN exchange and no
    /// TIME_WAIT socket kept for each of thousands a second. Per-IP and `max_connections`
    /// refusals get an orderly close (FIN): those come from well-behaved clients that
    /// simply have too many connections open.
    pub fn closes_with_reset(self) -> bool {
        !matches!(self, RejectReason::PerIp | RejectReason::MaxConnections)
    }

    /// Whether something was actually refused (false only for a dry run's "would have").
    pub fn is_refusal(self) -> bool {
        self != RejectReason::AutoCapDryRun
    }

    /// Whether the connection was refused before it was counted as opened (so the offered
    /// connection rate of a country is its opened rate plus these).
    pub fn before_open(self) -> bool {
        matches!(
            self,
            RejectReason::MaxConnections
                | RejectReason::PerIp
                | RejectReason::RateLimit
                | RejectReason::Tarpit
                | RejectReason::AutoCap
        )
    }
}

#[cfg(test)]
mod tests {
    use super::RejectReason;

    #[test]
    fn reasons_index_their_counters() {
        for (i, r) in RejectReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        assert_eq!(RejectReason::SlowUpload.as_str(), "slow_upload");
    }
}
