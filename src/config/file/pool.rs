//! The raw form of `[pools.NAME]`: backends, balancing, retries, limits, health checks and
//! outlier detection, as written (checked by `validate`).

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// `[pools.NAME]`: a group of backends.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPool {
    /// Balancing algorithm name.
    pub algorithm: Option<String>,
    /// What `maglev` hashes: `"client_ip"`, `"header:NAME"` or `"cookie:NAME"`.
    pub hash_key: Option<String>,
    /// Upstream TCP connect deadline.
    pub connect_timeout: Option<String>,
    /// Deadline from request sent to response head received.
    pub response_timeout: Option<String>,
    /// How long an idle upstream connection is kept.
    pub idle_timeout: Option<String>,
    /// Retries per request on another backend.
    pub retries: Option<i64>,
    /// Retries may add at most this percentage to the pool's requests.
    pub retry_budget_percent: Option<i64>,
    /// Most requests in flight per backend, across all workers.
    pub max_connections: Option<i64>,
    /// Requests that may wait for a free backend slot.
    pub queue_size: Option<i64>,
    /// How long a request may wait in the queue.
    pub queue_timeout: Option<String>,
    /// Window over which a recovered backend's weight ramps up.
    pub slow_start: Option<String>,
    /// Whether requests may upgrade (WebSocket, HTTP/1.1 `Upgrade`, h2 extended CONNECT).
    pub allow_upgrade: Option<bool>,
    /// `[pools.NAME.health_check]`; absent means no active checks.
    pub health_check: Option<RawHealthCheck>,
    /// `[pools.NAME.outlier_detection]`; absent means no passive ejection.
    pub outlier_detection: Option<RawOutlierDetection>,
    /// `[[pools.NAME.backends]]`.
    #[serde(default)]
    pub backends: Vec<RawBackend>,
}

/// `[[pools.NAME.backends]]`: one backend server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackend {
    /// `ip:port`.
    pub address: String,
    /// Relative weight.
    pub weight: Option<i64>,
}

/// `[pools.NAME.health_check]`: active checks of every backend of the pool.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    /// `"http"` or `"tcp"`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Request path of an HTTP check.
    pub path: Option<String>,
    /// Expected status of an HTTP check: a code or a range.
    pub status: Option<RawStatus>,
    /// Time between two checks of one backend.
    pub interval: Option<String>,
    /// Time allowed for one check.
    pub timeout: Option<String>,
    /// Consecutive successes that bring a down backend back.
    pub rise: Option<i64>,
    /// Consecutive failures that take an up backend out.
    pub fall: Option<i64>,
}

/// `health_check.status` as written: `200` or `"200-399"` (or `"200"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawStatus {
    /// An integer.
    Code(i64),
    /// A string: one code or `LOW-HIGH`.
    Text(String),
}

impl<'de> Deserialize<'de> for RawStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StatusVisitor)
    }
}

struct StatusVisitor;

impl Visitor<'_> for StatusVisitor {
    type Value = RawStatus;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a status code such as 200 or a range such as \"200-399\"")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawStatus, E> {
        Ok(RawStatus::Code(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawStatus, E> {
        i64::try_from(v)
            .map(RawStatus::Code)
            .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawStatus, E> {
        Ok(RawStatus::Text(v.to_string()))
    }
}

/// `[pools.NAME.outlier_detection]`: passive ejection of failing backends.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutlierDetection {
    /// Consecutive failures that eject a backend.
    pub consecutive_failures: Option<i64>,
    /// First ejection time; doubles while the backend keeps failing.
    pub ejection_time: Option<String>,
    /// Most backends ejected at once, in percent of the pool.
    pub max_ejected_percent: Option<i64>,
    /// Whether 5xx responses count as failures.
    pub include_5xx: Option<bool>,
}
