//! Admission control: which new connections (and, later, requests) levee takes on.
//!
//! Map of the module:
//! - [`connections`]: the process-wide cap on open client connections (`max_connections`),
//!   one shared atomic taken by compare-and-swap at accept, released by a guard's `Drop`.
//! - [`per_ip`]: the per-client-IP cap (`max_connections_per_ip`), counted in 64 mutex
//!   shards hashed by IP, touched once when a connection opens and once when it closes.
//! - [`handshakes`]: each worker's cap on TLS handshakes in flight
//!   (`max_handshakes_in_flight`) and its bounded, FIFO wait queue (`handshake_queue`,
//!   `handshake_queue_timeout`).
//! - [`upload`]: the minimum upload rate of request bodies (`min_upload_rate`), answered
//!   with 408.
//! - [`settings`]: the typed `[admission]` table.
//!
//! Every refusal is counted on the worker's stats shard by [`RejectReason`] and country
//! (`Shard::admission_rejected`). Later layers (per-country token buckets, fair handshake
//! scheduling, automatic mode) plug in between the caps and the handshake gate: the gate's
//! `acquire` is the one place a new TLS connection waits.

pub mod connections;
pub mod handshakes;
pub mod per_ip;
pub mod settings;
pub mod upload;

pub use connections::{ConnectionLimit, ConnectionPermit};
pub use handshakes::{HandshakeGate, HandshakePermit};
pub use per_ip::{IpPermit, PerIpLimit};
pub use settings::AdmissionSettings;
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
}

impl RejectReason {
    /// Every reason, in discriminant order.
    pub const ALL: [RejectReason; 5] = [
        RejectReason::MaxConnections,
        RejectReason::PerIp,
        RejectReason::HandshakeQueueFull,
        RejectReason::HandshakeQueueTimeout,
        RejectReason::SlowUpload,
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
        }
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
