//! The admission families of `/metrics`: refusals by country and reason, and the depth of
//! the handshake queues now.
//!
//! A country is listed when it has had a refusal (a refused connection may be its only
//! traffic, so this does not follow the traffic rows), and `ZZ` always, with every reason,
//! so the family is never empty.

use std::fmt::{self, Display};
use std::sync::Arc;

use super::prom_text::{family, sample};
use crate::admission::RejectReason;
use crate::geo::country;
use crate::stats::{CountryIdx, Shard, UNKNOWN_COUNTRY, rejected_per_country};

/// Writes `levee_admission_rejected_total` and `levee_admission_handshake_queue_depth`.
pub(super) fn write_admission(out: &mut String, shards: &[Arc<Shard>]) -> fmt::Result {
    let name = "levee_admission_rejected_total";
    family(
        out,
        name,
        "counter",
        "Connections and requests refused by admission control, by reason.",
    )?;
    let rows = rejected_per_country(shards.iter().map(|s| s.as_ref()));
    for (i, row) in rows.iter().enumerate() {
        let Ok(slot) = u16::try_from(i) else { break };
        let idx = CountryIdx(slot);
        if idx != UNKNOWN_COUNTRY && row.iter().all(|&n| n == 0) {
            continue;
        }
        let code = country::code(idx);
        for reason in RejectReason::ALL {
            let labels: [(&str, &dyn Display); 2] =
                [("country", &code), ("reason", &reason.as_str())];
            sample(out, name, &labels, row[reason as usize])?;
        }
    }
    let name = "levee_admission_handshake_queue_depth";
    family(
        out,
        name,
        "gauge",
        "Connections waiting for a TLS handshake slot now (all workers).",
    )?;
    let depth: u64 = shards.iter().map(|s| s.handshake_queue_depth()).sum();
    sample(out, name, &[], depth)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn refusals_by_country_and_reason() {
        let shard = Arc::new(Shard::new(0, country::COUNTRY_COUNT));
        let br = country::index_of("BR");
        shard.admission_rejected(br, RejectReason::PerIp);
        shard.admission_rejected(br, RejectReason::PerIp);
        shard.set_handshake_queue_depth(3);
        let mut out = String::new();
        write_admission(&mut out, &[shard]).unwrap();
        assert!(
            out.contains("levee_admission_rejected_total{country=\"BR\",reason=\"per_ip\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains(
                "levee_admission_rejected_total{country=\"ZZ\",reason=\"slow_upload\"} 0\n"
            )
        );
        assert!(!out.contains("country=\"DE\""));
        assert!(out.contains("levee_admission_handshake_queue_depth 3\n"));
    }
}
