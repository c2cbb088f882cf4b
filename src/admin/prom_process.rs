//! The standard `process_*` families of `/metrics` (the names every Prometheus client
//! library uses, so stock dashboards and alerts work): CPU time, resident and virtual
//! memory, open and maximum file descriptors, start time. Read from `/proc/self` at scrape
//! time (`procfs`); a value `/proc` does not give is left out with its family.

use std::fmt;

use super::procfs::ProcessStats;
use super::prom_text::{Float, family, sample};

/// Writes every `process_*` family `stats` has a value for.
pub(super) fn write_process(out: &mut String, stats: &ProcessStats) -> fmt::Result {
    // Counts and byte sizes are far below 2^53, so they are exact as floats.
    let float = |v: Option<f64>| v;
    let int = |v: Option<u64>| v.map(|v| v as f64);
    let families: [(&str, &str, &str, Option<f64>); 6] = [
        (
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            float(stats.cpu_seconds),
        ),
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            int(stats.resident_bytes),
        ),
        (
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            int(stats.virtual_bytes),
        ),
        (
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            int(stats.open_fds),
        ),
        (
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors (the soft limit).",
            int(stats.max_fds),
        ),
        (
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            float(stats.start_time_seconds),
        ),
    ];
    for (name, kind, help, value) in families {
        if let Some(value) = value {
            family(out, name, kind, help)?;
            sample(out, name, &[], Float(value))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_without_a_value_are_left_out() {
        let stats = ProcessStats {
            cpu_seconds: Some(1.25),
            open_fds: Some(9),
            ..ProcessStats::default()
        };
        let mut out = String::new();
        write_process(&mut out, &stats).unwrap();
        assert!(out.contains("# TYPE process_cpu_seconds_total counter\n"));
        assert!(out.contains("\nprocess_cpu_seconds_total 1.25\n"), "{out}");
        assert!(out.contains("\nprocess_open_fds 9\n"), "{out}");
        assert_eq!(out.lines().count(), 6, "{out}");
        let mut out = String::new();
        write_process(&mut out, &ProcessStats::default()).unwrap();
        assert!(out.is_empty());
    }
}
