//! `[admission]`: connection caps, the handshake queue and the minimum upload rate, checked
//! so workers can apply them as they are (every limit at least 1, durations above zero).

use std::time::Duration;

use super::super::file::RawAdmission;
use super::Scope;
use crate::admission::AdmissionSettings;

/// Accepted connection limits (`max_connections`, `max_connections_per_ip`).
const CONNECTIONS_RANGE: (i64, i64) = (1, 100_000_000);
/// Accepted `max_handshakes_in_flight` and `handshake_queue`.
const HANDSHAKES_RANGE: (i64, i64) = (1, 1_000_000);
/// Longest `handshake_queue_timeout` and `min_upload_rate_grace`.
const MAX_WAIT: Duration = Duration::from_secs(3600);
/// Accepted `min_upload_rate` (bytes per second).
const RATE_RANGE: (i64, i64) = (1, 1 << 40);

/// Builds `[admission]`; every key is optional (see `AdmissionSettings::default`).
pub(super) fn build_admission(raw: &RawAdmission, s: &mut Scope<'_>) -> Option<AdmissionSettings> {
    let d = AdmissionSettings::default();
    let max_connections = optional(s, "max_connections", raw.max_connections, CONNECTIONS_RANGE);
    let per_ip = optional(
        s,
        "max_connections_per_ip",
        raw.max_connections_per_ip,
        CONNECTIONS_RANGE,
    );
    let in_flight = optional(
        s,
        "max_handshakes_in_flight",
        raw.max_handshakes_in_flight,
        HANDSHAKES_RANGE,
    );
    let queue = s.int(
        "handshake_queue",
        raw.handshake_queue,
        d.handshake_queue,
        HANDSHAKES_RANGE,
    );
    let queue_timeout = s.timeout(
        "handshake_queue_timeout",
        raw.handshake_queue_timeout.as_deref(),
        d.handshake_queue_timeout,
    );
    let rate = optional(s, "min_upload_rate", raw.min_upload_rate, RATE_RANGE);
    let grace = s.duration(
        "min_upload_rate_grace",
        raw.min_upload_rate_grace.as_deref(),
        d.min_upload_rate_grace,
    );
    let rate_limits = super::admission_limits::build_rate_limits(raw, s);
    let auto = super::admission_limits::build_auto(raw, s);
    let queue_timeout = queue_timeout.filter(|d| at_most(s, "handshake_queue_timeout", *d));
    let grace = grace.filter(|d| at_most(s, "min_upload_rate_grace", *d));
    Some(AdmissionSettings {
        max_connections: max_connections?,
        max_connections_per_ip: per_ip?,
        max_handshakes_in_flight: in_flight?,
        handshake_queue: queue?,
        handshake_queue_timeout: queue_timeout?,
        min_upload_rate: rate?,
        min_upload_rate_grace: grace?,
        rate_limits: rate_limits?,
        auto: auto?,
    })
}

/// Whether a wait is at most `MAX_WAIT` (reported when not).
fn at_most(s: &mut Scope<'_>, field: &str, d: Duration) -> bool {
    let ok = d <= MAX_WAIT;
    if !ok {
        let reason = format!(
            "must be at most {} (got {})",
            humantime::format_duration(MAX_WAIT),
            humantime::format_duration(d)
        );
        s.add(field, reason);
    }
    ok
}

/// An optional limit in `range`: `Some(None)` when absent, `None` when invalid (reported).
fn optional<T: TryFrom<i64> + Copy>(
    s: &mut Scope<'_>,
    field: &str,
    value: Option<i64>,
    range: (i64, i64),
) -> Option<Option<T>> {
    match value {
        None => Some(None),
        Some(v) => {
            let default = T::try_from(range.0).ok()?;
            s.int(field, Some(v), default, range).map(Some)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::super::test_support::{MINIMAL, assert_rejected, context};
    use crate::admission::AdmissionSettings;
    use crate::config::{ConfigErrors, load_str};

    fn admission(table: &str) -> Result<AdmissionSettings, ConfigErrors> {
        load_str(
            &format!("{MINIMAL}[admission]\n{table}\n"),
            &context(Path::new(".")),
        )
        .map(|s| s.admission)
    }

    fn rejected(table: &str, key: &str, needle: &str) {
        assert_rejected(&format!("{MINIMAL}[admission]\n{table}\n"), key, needle);
    }

    #[test]
    fn admission_defaults_and_values() {
        assert_eq!(admission("").unwrap(), AdmissionSettings::default());
        let a = admission(
            "max_connections = 5\nmax_connections_per_ip = 2\nmax_handshakes_in_flight = 1\n\
             handshake_queue = 3\nhandshake_queue_timeout = \"250ms\"\n\
             min_upload_rate = 1000\nmin_upload_rate_grace = \"1s\"",
        )
        .unwrap();
        assert_eq!(a.max_connections, Some(5));
        assert_eq!(a.max_connections_per_ip, Some(2));
        assert_eq!(a.max_handshakes_in_flight, Some(1));
        assert_eq!(a.handshake_queue, 3);
        assert_eq!(a.handshake_queue_timeout, Duration::from_millis(250));
        assert_eq!(a.min_upload_rate, Some(1000));
        assert_eq!(a.min_upload_rate_grace, Duration::from_secs(1));
    }

    #[test]
    fn admission_bad_values_name_their_key() {
        rejected(
            "max_connections = 0",
            "admission.max_connections",
            "at least 1",
        );
        rejected(
            "max_connections_per_ip = -1",
            "admission.max_connections_per_ip",
            "at least 1",
        );
        rejected(
            "max_handshakes_in_flight = 0",
            "admission.max_handshakes_in_flight",
            "at least 1",
        );
        rejected(
            "handshake_queue = 0",
            "admission.handshake_queue",
            "at least 1",
        );
        rejected(
            "handshake_queue_timeout = \"0s\"",
            "admission.handshake_queue_timeout",
            "greater than 0",
        );
        rejected(
            "min_upload_rate = 0",
            "admission.min_upload_rate",
            "at least 1",
        );
        rejected(
            "min_upload_rate_grace = \"soon\"",
            "admission.min_upload_rate_grace",
            "invalid duration",
        );
        rejected(
            "min_upload_rate_grace = \"2h\"",
            "admission.min_upload_rate_grace",
            "at most 1h",
        );
        rejected(
            "handshake_queue_timeout = \"100years\"",
            "admission.handshake_queue_timeout",
            "at most 1h",
        );
        rejected("bogus = 1", "admission.bogus", "unknown field");
    }
}
