//! The typed, validated, immutable form of the whole running configuration.
//!
//! A `Snapshot` only exists once every file it names has been read and every reference checked
//! (see `validate`). It holds typed values, never strings that need parsing again.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

pub use crate::admission::AdmissionSettings;
use crate::geo::{ClientTag, GeoDb, GeoSettings};
use crate::lb::Pool;
use crate::stats::PoolStats;
pub use crate::stats::StatsSettings;

/// The complete running configuration. Immutable; replaced whole on reload.
#[derive(Debug)]
pub struct Snapshot {
    /// Monotonic generation number (1 for the first config loaded).
    pub generation: u64,
    /// Hash of the TOML source this snapshot was built from.
    pub source_hash: u64,
    /// Process-wide settings.
    pub server: ServerSettings,
    /// Admin API settings.
    pub admin: AdminSettings,
    /// Listeners in file order; names are unique.
    pub listeners: Vec<Arc<Listener>>,
    /// Backend pools, indexed by `PoolId`.
    pub pools: Vec<Arc<Pool>>,
    /// Pool name -> index into `pools`.
    pub pool_index: HashMap<String, PoolId>,
    /// Request stats of each pool, indexed by `PoolId` like `pools` (kept here, not in
    /// `lb::Pool`: `lb` is a leaf and the histogram is `stats`'). Carried over by pool name.
    pub pool_stats: Vec<Arc<PoolStats>>,
    /// `[geo]`: the opened GeoIP databases.
    pub geo: GeoDb,
    /// `[stats]`: windows and spike detection.
    pub stats: StatsSettings,
    /// `[geo]`: tagging on/off and the upstream header names (prebuilt).
    pub geo_settings: GeoSettings,
    /// `[admission]`: connection caps, the handshake queue, the minimum upload rate.
    pub admission: AdmissionSettings,
}

impl Snapshot {
    /// The pool with this id.
    pub fn pool(&self, id: PoolId) -> &Arc<Pool> {
        &self.pools[id.0]
    }

    /// The request stats of the pool with this id (`None` only for an id of another
    /// snapshot).
    pub fn pool_stats(&self, id: PoolId) -> Option<&Arc<PoolStats>> {
        self.pool_stats.get(id.0)
    }

    /// Looks up a listener by name.
    pub fn listener(&self, name: &str) -> Option<&Arc<Listener>> {
        self.listeners.iter().find(|l| l.name == name)
    }

    /// What a client at `ip` is tagged with under this snapshot's `[geo]`: a lookup in its
    /// databases, or `ZZ` and no ASN when `[geo] enabled = false`.
    pub fn client_tag(&self, ip: std::net::IpAddr) -> ClientTag {
        self.geo_settings.tag(&self.geo, ip)
    }
}

impl crate::lb::health::PoolSet for Snapshot {
    fn pools(&self) -> &[Arc<Pool>] {
        &self.pools
    }
}

/// Index of a pool inside `Snapshot::pools`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PoolId(pub usize);

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable text lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[server]`: process-wide settings.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Number of worker threads (each with its own runtime and listening sockets).
    pub workers: NonZeroUsize,
    /// How long in-flight requests may take to finish after SIGTERM/SIGINT.
    pub shutdown_timeout: Duration,
    /// Listen backlog for every listening socket.
    pub backlog: u32,
    /// Log output format.
    pub log_format: LogFormat,
    /// Whether the per-request access log is written.
    pub access_log: bool,
    /// Whether access-log lines carry the query string (off by default: queries often
    /// hold tokens and personal data).
    pub access_log_query: bool,
    /// The file the access log is appended to (reopened on SIGUSR1); `None`: stdout.
    pub access_log_path: Option<std::path::PathBuf>,
    /// Entries of the shared TLS 1.2 session-ID cache (sized once, at start).
    pub tls_session_cache: usize,
    /// Whether a change of the config file triggers a reload.
    pub watch_config: bool,
}

/// `[admin]`: the admin API listener.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    /// Address of the admin API; `None` disables it.
    pub listen: Option<SocketAddr>,
    /// Bearer token required by every endpoint but `/healthz`; `None`: no token.
    pub token: Option<String>,
}

/// `[[listeners]]`: one listening address with its TLS and routes.
#[derive(Debug)]
pub struct Listener {
    /// Unique name.
    pub name: String,
    /// Address to bind (port 0 picks an ephemeral port).
    pub listen: SocketAddr,
    /// TLS termination; `None` means plain HTTP.
    pub tls: Option<ListenerTls>,
    /// Routes, first match wins.
    pub routes: Vec<Route>,
    /// Pool used when no route matches.
    pub default_pool: PoolId,
    /// Request limits and downstream timeouts.
    pub http: HttpLimits,
    /// How the real client address is learnt: PROXY protocol, trusted proxies,
    /// `X-Forwarded-For`.
    pub client_address: crate::net::ClientAddressPolicy,
    /// Whether its requests are in the access log; `None`: as `[server] access_log`.
    pub access_log: Option<bool>,
}

impl Listener {
    /// Whether this listener's requests are written to the access log under `server`.
    pub fn logs_access(&self, server: &ServerSettings) -> bool {
        self.access_log.unwrap_or(server.access_log)
    }
}

/// `[listeners.tls]`: TLS settings of a listener, with the built rustls config.
#[derive(Debug)]
pub struct ListenerTls {
    /// The rustls server config (certificates, SNI resolver, ALPN, shared resumption state).
    pub server_config: Arc<rustls::ServerConfig>,
    /// Deadline for the whole TLS handshake.
    pub handshake_timeout: Duration,
    /// True when the certificate was generated at load time (no certificate configured).
    pub generated_certificate: bool,
}

/// `[listeners.http]`: request limits and downstream timeouts.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Largest request head (request line + headers) accepted, in bytes; beyond it: 431.
    pub max_header_bytes: usize,
    /// Largest request body accepted, in bytes; beyond it: 413.
    pub max_body_bytes: u64,
    /// Time allowed to receive a complete request head on HTTP/1.
    pub header_timeout: Duration,
    /// Idle keep-alive time between requests on a downstream connection.
    pub idle_timeout: Duration,
    /// Longest time a write to the client may make no progress (the client stopped
    /// reading); then the connection and its backend side are closed.
    pub send_timeout: Duration,
    /// How long an upgraded connection (WebSocket, or any protocol a backend switched to)
    /// may pass no byte either way before it is closed.
    pub upgrade_idle_timeout: Duration,
}

/// `[[listeners.routes]]`: match on host and path prefix, send to a pool.
#[derive(Debug, Clone)]
pub struct Route {
    /// Lower-case host to match exactly (port stripped); `None` matches any host.
    pub host: Option<String>,
    /// Path prefix to match; `None` matches any path.
    pub path_prefix: Option<String>,
    /// Destination pool.
    pub pool: PoolId,
}
