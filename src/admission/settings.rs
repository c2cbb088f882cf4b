//! `[admission]`: the typed limits, read from the current snapshot on every decision (a
//! reload changes them at once; the counts live in [`super::Admission`] and survive it).

use std::time::Duration;

use super::limits::{DEFAULT_TARPIT_DELAY, RateLimits};

/// `[admission]`: global guards against floods and slow clients. `None` is "no limit".
#[derive(Debug, Clone, PartialEq)]
pub struct AdmissionSettings {
    /// Open client connections of the whole process; beyond it a new connection is closed at
    /// accept, before any TLS byte.
    pub max_connections: Option<usize>,
    /// Open connections per client IP (the PROXY protocol source when there is one).
    pub max_connections_per_ip: Option<u32>,
    /// TLS handshakes in progress per worker; more wait in the handshake queue. `None`:
    /// each worker's adaptive limit (`super::adaptive`).
    pub max_handshakes_in_flight: Option<usize>,
    /// Connections that may wait for a handshake slot, per worker; beyond it: refused.
    pub handshake_queue: usize,
    /// How long a connection may wait in the handshake queue before it is refused.
    pub handshake_queue_timeout: Duration,
    /// Smallest average request body rate, in bytes per second; slower: 408.
    pub min_upload_rate: Option<u64>,
    /// Time a request body is given before `min_upload_rate` applies.
    pub min_upload_rate_grace: Duration,
    /// Per-country and per-ASN token buckets, and the allowlist.
    pub rate_limits: RateLimits,
    /// `auto`, `dry_run`, `auto_headroom`.
    pub auto: AutoSettings,
}

/// Automatic caps on a spiking country while the proxy is near its handshake capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AutoSettings {
    /// Whether caps are set automatically (`[admission] auto`).
    pub enabled: bool,
    /// Log and count what a cap would refuse, refuse nothing (`dry_run`).
    pub dry_run: bool,
    /// A cap is the country's baseline new-connection rate times this (`auto_headroom`).
    pub headroom: f64,
}

/// Default `auto_headroom`.
pub const DEFAULT_AUTO_HEADROOM: f64 = 1.5;

impl Default for AutoSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            dry_run: false,
            headroom: DEFAULT_AUTO_HEADROOM,
        }
    }
}

impl AdmissionSettings {
    /// The handshake gate's limits (`max_handshakes_in_flight`, `handshake_queue`,
    /// `handshake_queue_timeout`).
    pub fn gate_limits(&self) -> super::GateLimits {
        super::GateLimits {
            in_flight: self.max_handshakes_in_flight,
            queue: self.handshake_queue,
            timeout: self.handshake_queue_timeout,
        }
    }
}

impl Default for AdmissionSettings {
    fn default() -> Self {
        Self {
            max_connections: None,
            max_connections_per_ip: None,
            max_handshakes_in_flight: None,
            handshake_queue: 1024,
            handshake_queue_timeout: Duration::from_secs(5),
            min_upload_rate: None,
            min_upload_rate_grace: Duration::from_secs(5),
            rate_limits: RateLimits {
                tarpit_delay: DEFAULT_TARPIT_DELAY,
                ..RateLimits::default()
            },
            auto: AutoSettings::default(),
        }
    }
}
