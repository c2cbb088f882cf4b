//! The admission families of `/metrics`: refusals by country and reason, what an automatic
//! cap's dry run would have refused by country, the depth of the handshake queues now and
//! how long connections waited in them.
//!
//! A country is listed when it has had a refusal or a dry run's "would have" (a refused
//! connection may be its only traffic, so this does not follow the traffic rows), and `ZZ`
//! always, with every reason, so the families are never empty. `auto_cap_dry_run` is not a
//! `reason` of `levee_admission_rejected_total` (nothing was refused: the connection was
//! served); it is `levee_admission_dry_run_total`.

use std::fmt::{self, Display};
use std::sync::Arc;

use super::prom_text::{Float, family, histogram, sample};
use crate::admission::RejectReason;
use crate::admission::auto::ActiveCap;
use crate::geo::country;
use crate::stats::{CountryIdx, HistogramSnapshot, Shard, UNKNOWN_COUNTRY, rejected_per_country};

/// Writes `levee_admission_rejected_total`, `levee_admission_dry_run_total`,
/// `levee_admission_handshake_queue_depth` and `levee_admission_handshake_queue_wait_seconds`.
pub(super) fn write_admission(out: &mut String, shards: &[Arc<Shard>]) -> fmt::Result {
    let all = rejected_per_country(shards.iter().map(|s| s.as_ref()));
    let rows: Vec<(&str, &[u64; RejectReason::COUNT])> = all
        .iter()
        .enumerate()
        .filter_map(|(i, row)| {
            let idx = CountryIdx(u16::try_from(i).ok()?);
            (idx == UNKNOWN_COUNTRY || row.iter().any(|&n| n > 0))
                .then(|| (country::code(idx), row))
        })
        .collect();
    let name = "levee_admission_rejected_total";
    family(
        out,
        name,
        "counter",
        "Connections and requests refused by admission control, by reason.",
    )?;
    for (code, row) in &rows {
        for reason in RejectReason::ALL.into_iter().filter(|r| r.is_refusal()) {
            let labels: [(&str, &dyn Display); 2] =
                [("country", code), ("reason", &reason.as_str())];
            sample(out, name, &labels, row[reason as usize])?;
        }
    }
    let name = "levee_admission_dry_run_total";
    family(
        out,
        name,
        "counter",
        "Connections an automatic cap in dry run would have refused (they were served).",
    )?;
    for (code, row) in &rows {
        let n = row[RejectReason::AutoCapDryRun as usize];
        sample(out, name, &[("country", code)], n)?;
    }
    let name = "levee_admission_handshake_queue_depth";
    family(
        out,
        name,
        "gauge",
        "Connections waiting for a TLS handshake slot now (all workers).",
    )?;
    let depth: u64 = shards.iter().map(|s| s.handshake_queue_depth()).sum();
    sample(out, name, &[], depth)?;
    let name = "levee_admission_handshake_limit";
    family(
        out,
        name,
        "gauge",
        "TLS handshakes each worker lets run at once now: its adaptive limit, or \
         max_handshakes_in_flight (0 before its first handshake).",
    )?;
    for (worker, shard) in shards.iter().enumerate() {
        sample(out, name, &[("worker", &worker)], shard.handshake_limit())?;
    }
    let name = "levee_admission_handshake_queue_wait_seconds";
    family(
        out,
        name,
        "histogram",
        "Time connections waited in the handshake queue, admitted or refused (all workers).",
    )?;
    let mut wait = HistogramSnapshot::default();
    for shard in shards {
        shard.add_handshake_queue_wait(&mut wait);
    }
    histogram(out, name, &[], &wait)
}

/// Writes `levee_admission_auto_cap_per_second`: one series per country capped now.
pub(super) fn write_auto_caps(out: &mut String, caps: &[ActiveCap]) -> fmt::Result {
    let name = "levee_admission_auto_cap_per_second";
    family(
        out,
        name,
        "gauge",
        "New connections a second an automatic cap holds a spiking country to.",
    )?;
    for cap in caps {
        let code = country::code(cap.country);
        let dry_run = if cap.dry_run { "true" } else { "false" };
        let labels: [(&str, &dyn Display); 2] = [("country", &code), ("dry_run", &dry_run)];
        sample(out, name, &labels, Float(cap.cap_per_sec))?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn refusals_by_country_and_reason() {
        let shard = Arc::new(Shard::new(0, country::COUNTRY_COUNT));
        let (br, jp) = (country::index_of("BR"), country::index_of("JP"));
        shard.admission_rejected(br, RejectReason::PerIp);
        shard.admission_rejected(br, RejectReason::PerIp);
        shard.admission_rejected(br, RejectReason::AutoCap);
        shard.admission_rejected(jp, RejectReason::AutoCapDryRun);
        shard.admission_rejected(jp, RejectReason::AutoCapDryRun);
        shard.set_handshake_queue_depth(3);
        shard.set_handshake_limit(17);
        shard.handshake_queue_waited(Duration::from_micros(80));
        shard.handshake_queue_waited(Duration::from_millis(3));
        let mut out = String::new();
        write_admission(&mut out, &[shard]).unwrap();
        assert!(
            out.contains("levee_admission_rejected_total{country=\"BR\",reason=\"per_ip\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("levee_admission_rejected_total{country=\"BR\",reason=\"auto_cap\"} 1\n")
        );
        assert!(
            out.contains(
                "levee_admission_rejected_total{country=\"ZZ\",reason=\"slow_upload\"} 0\n"
            )
        );
        // A dry run's "would have" is not a refusal: its own family, by country.
        assert!(!out.contains("auto_cap_dry_run"), "{out}");
        assert!(
            out.contains("levee_admission_rejected_total{country=\"JP\",reason=\"auto_cap\"} 0\n")
        );
        assert!(out.contains("# TYPE levee_admission_dry_run_total counter\n"));
        assert!(out.contains("levee_admission_dry_run_total{country=\"JP\"} 2\n"));
        assert!(out.contains("levee_admission_dry_run_total{country=\"BR\"} 0\n"));
        assert!(out.contains("levee_admission_dry_run_total{country=\"ZZ\"} 0\n"));
        assert!(!out.contains("country=\"DE\""));
        let reasons = out
            .lines()
            .filter(|l| l.starts_with("levee_admission_rejected_total{country=\"ZZ\""))
            .count();
        assert_eq!(reasons, RejectReason::COUNT - 1);
        assert!(out.contains("levee_admission_handshake_queue_depth 3\n"));
        assert!(
            out.contains("levee_admission_handshake_limit{worker=\"0\"} 17\n"),
            "{out}"
        );
        // The wait histogram: the handshake duration buckets, no labels.
        assert!(out.contains("# TYPE levee_admission_handshake_queue_wait_seconds histogram\n"));
        assert!(
            out.contains("levee_admission_handshake_queue_wait_seconds_bucket{le=\"0.0001\"} 1\n")
        );
        assert!(
            out.contains("levee_admission_handshake_queue_wait_seconds_bucket{le=\"0.0025\"} 1\n")
        );
        assert!(
            out.contains("levee_admission_handshake_queue_wait_seconds_bucket{le=\"0.005\"} 2\n")
        );
        assert!(
            out.contains("levee_admission_handshake_queue_wait_seconds_bucket{le=\"+Inf\"} 2\n")
        );
        assert!(out.contains("levee_admission_handshake_queue_wait_seconds_sum 0.00308\n"));
        assert!(out.contains("levee_admission_handshake_queue_wait_seconds_count 2\n"));
    }
}
