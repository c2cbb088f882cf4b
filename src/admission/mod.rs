//! Admission control: which new connections and requests levee takes on, and in what order
//! it hands out TLS handshakes when they are scarce.
//!
//! Map of the module:
//! - [`connections`]: the process-wide cap on open client connections (`max_connections`),
//!   one shared atomic taken by compare-and-swap at accept, released by a guard's `Drop`.
//! - [`per_ip`]: the per-client-IP cap (`max_connections_per_ip`), counted in 64 mutex
//!   shards hashed by IP, touched once when a connection opens and once when it closes.
//! - [`gcra`] and [`limits`]: per-country and per-ASN token buckets for new connections and
//!   requests (`[admission.countries.*]`, `[admission.asns.*]`), the allowlist, and the
//!   reject / tarpit actions.
//! - [`handshakes`]: each worker's cap on TLS handshakes in flight
//!   (`max_handshakes_in_flight`) and its fair queue (resumption attempts first, then
//!   countries by their baseline share; `handshake_queue`, `handshake_queue_timeout`).
//! - [`shares`]: the fair queue's per-country weights, written by the control thread, and
//!   the "near handshake capacity" signal.
//! - [`auto`]: `[admission] auto` / `dry_run`: caps on a spiking country near capacity,
//!   started at a stats tick or, between ticks, by the fast onset.
//! - [`upload`]: the minimum upload rate of request bodies (`min_upload_rate`), answered
//!   with 408.
//! - [`settings`]: the typed `[admission]` table.
//!
//! Where they run: `max_connections` in the accept loop; the allowlist, buckets, automatic
//! cap and per-IP cap in `proxy::admit` once the PROXY header and GeoIP tag are known, before
//! any TLS byte: in the accept loop itself when the header is already in (`proxy::early`,
//! so a refused connection gets no task), else in the connection's task; the handshake gate
//! in `tls::accept_tls_gated` once the ClientHello is in (where a connection admitted before
//! its country's automatic cap started meets that cap, `proxy::admit::meets_late_cap`);
//! request buckets and the upload rate per request in `proxy::service`. Every refusal is
//! counted on the worker's stats shard by [`RejectReason`] and country
//! (`Shard::admission_rejected`).

pub mod auto;
pub mod connections;
pub mod gcra;
pub mod handshakes;
pub mod limits;
pub mod per_ip;
pub mod settings;
pub mod shares;
pub mod upload;

pub use connections::{ConnectionLimit, ConnectionPermit};
pub use handshakes::{GateLimits, HandshakeGate, HandshakePermit, Ticket};
pub use limits::{LimitAction, LimitRule, Limited, RateLimits, RateState};
pub use per_ip::{IpPermit, PerIpLimit};
pub use settings::{AdmissionSettings, AutoSettings};
pub use upload::{BodyTooSlow, UploadRate};

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

/// Admission state shared by every worker of a process (kept across reloads; the limits
/// themselves are read from the current snapshot's [`AdmissionSettings`]).
#[derive(Debug, Default)]
pub struct Admission {
    /// Open client connections of the whole process.
    pub connections: std::sync::Arc<ConnectionLimit>,
    /// Open client connections per client IP.
    pub per_ip: std::sync::Arc<PerIpLimit>,
    /// Token buckets per country and ASN.
    pub rates: RateState,
    /// Fair-share weights of the handshake scheduler, and its saturation signal.
    pub shares: std::sync::Arc<shares::FairShares>,
    /// Automatic caps on spiking countries (`[admission] auto`).
    pub auto: auto::AutoCaps,
    /// The automatic caps in force, as the control thread last published them.
    pub auto_view: arc_swap::ArcSwap<Vec<auto::ActiveCap>>,
    /// Connections held by a tarpit now (bounded by `MAX_TARPITTED`).
    pub tarpitted: std::sync::atomic::AtomicUsize,
}

/// Most connections held in tarpits at once; beyond it an over-limit connection is
/// rejected instead (a tarpit must not become a file-descriptor sink).
pub const MAX_TARPITTED: usize = 4096;

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
