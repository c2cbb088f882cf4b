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
//! - [`handshakes`]: each worker's cap on TLS handshakes in flight (adaptive by default,
//!   `max_handshakes_in_flight` to fix it) and its fair queue (resumption attempts first, then
//!   countries by their baseline share; `handshake_queue`, `handshake_queue_timeout`).
//! - [`adaptive`] and [`probe`]: the adaptive handshake limit (a delay-target AIMD on
//!   the worker's scheduling delay) and the probe task that measures that delay.
//! - [`shares`]: the fair queue's per-country weights, written by the control thread, and
//!   the "near handshake capacity" signal.
//! - [`auto`]: `[admission] auto` / `dry_run`: caps on a spiking country near capacity,
//!   started at a stats tick or, between ticks, by the fast onset.
//! - [`upload`]: the minimum upload rate of request bodies (`min_upload_rate`), answered
//!   with 408.
//! - [`decide`]: the verdict on a new connection (allowlist, buckets, automatic cap, per-IP
//!   cap), and the automatic cap met again at a queued connection's handshake slot.
//! - [`settings`]: the typed `[admission]` table.
//!
//! Mechanisms and verdicts only: nothing here touches a socket or writes stats. The
//! connection-level checks all run in one place, the front (`runtime::front`), which records
//! each verdict once on the worker's stats shard by [`RejectReason`] and country:
//! `max_connections` at accept, then the verdict once the client address and tag are known
//! (in the accept loop when the PROXY header is already in), then the handshake gate once
//! the ClientHello is in. The handshake gate reports its queue through a [`GateObserver`]
//! the worker wires to its shard. Per request, `proxy::service` asks the request buckets and
//! `proxy::request_body` runs the upload-rate clock; both count their refusals there.

pub mod adaptive;
pub mod auto;
pub mod connections;
pub mod decide;
pub mod gcra;
pub mod handshakes;
pub mod limits;
pub mod per_ip;
pub mod probe;
pub mod settings;
pub mod shares;
pub mod upload;

pub use connections::{ConnectionLimit, ConnectionPermit};
pub use decide::{Admitted, LateCap, Refusal};
pub use handshakes::{GateLimits, GateObserver, HandshakeGate, HandshakePermit, Ticket};
pub use limits::{LimitAction, LimitRule, Limited, RateLimits, RateState};
pub use per_ip::{IpPermit, PerIpLimit};
pub use settings::{AdmissionSettings, AutoSettings};
pub use upload::{BodyTooSlow, UploadRate};

pub use crate::labels::RejectReason;

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
