//! The process's own CPU time, memory, file descriptors and start time, read from
//! `/proc/self` at scrape time (on the control thread), for the standard `process_*` metrics.
//!
//! Hand-written rather than the `procfs` crate: five small text files, parsed in a few
//! dozen lines, are not worth a dependency tree. Every value is an `Option`: a file that is
//! missing (not Linux) or unreadable leaves its metric out instead of failing the scrape.

use std::fs;

/// `/proc` counts CPU time and start time in clock ticks of `USER_HZ`, which the kernel ABI
/// fixes at 100 on every architecture (`sysconf(_SC_CLK_TCK)` would say so, but needs
/// `unsafe`; the Prometheus Go client's procfs hard-codes it too).
const USER_HZ: f64 = 100.0;

/// What `process_*` reports; `None` where `/proc` did not say.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct ProcessStats {
    /// User plus system CPU time, in seconds.
    pub cpu_seconds: Option<f64>,
    /// Resident set size, in bytes.
    pub resident_bytes: Option<u64>,
    /// Virtual memory size, in bytes.
    pub virtual_bytes: Option<u64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
    /// The soft limit on open file descriptors.
    pub max_fds: Option<u64>,
    /// Start time of the process, in seconds since the Unix epoch.
    pub start_time_seconds: Option<f64>,
}

/// Reads the stats of this process now.
pub(super) fn read() -> ProcessStats {
    let text = |path: &str| fs::read_to_string(path).ok();
    let stat = text("/proc/self/stat").as_deref().and_then(parse_stat);
    let boot = text("/proc/stat").as_deref().and_then(parse_boot_time);
    ProcessStats {
        cpu_seconds: stat.map(|s| (s.utime + s.stime) as f64 / USER_HZ),
        resident_bytes: text("/proc/self/status").as_deref().and_then(parse_rss),
        virtual_bytes: stat.map(|s| s.vsize),
        open_fds: fs::read_dir("/proc/self/fd")
            .ok()
            .map(|dir| dir.count() as u64),
        max_fds: text("/proc/self/limits")
            .as_deref()
            .and_then(parse_max_open_files),
        start_time_seconds: boot
            .zip(stat)
            .map(|(b, s)| b as f64 + s.start as f64 / USER_HZ),
    }
}

/// The fields of `/proc/self/stat` that `process_*` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    /// User CPU time, ticks (field 14).
    utime: u64,
    /// System CPU time, ticks (field 15).
    stime: u64,
    /// Start time after boot, ticks (field 22).
    start: u64,
    /// Virtual memory size, bytes (field 23).
    vsize: u64,
}

/// Parses `/proc/self/stat`. The command name (field 2) is in parentheses and may itself
/// hold spaces and parentheses, so fields are counted from after its last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let (_, rest) = text.rsplit_once(')')?;
    // `rest` starts at field 3 (the state): field n is at index n - 3.
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        utime: field(14)?,
        stime: field(15)?,
        start: field(22)?,
        vsize: field(23)?,
    })
}

/// The boot time (`btime`, seconds since the epoch) from `/proc/stat`.
fn parse_boot_time(text: &str) -> Option<u64> {
    let line = text.lines().find_map(|l| l.strip_prefix("btime "))?;
    line.trim().parse().ok()
}

/// `VmRSS` of `/proc/self/status`, in bytes (the file says kB: KiB). Read there rather
/// than from `stat`'s page count so no page size is needed.
fn parse_rss(text: &str) -> Option<u64> {
    let line = text.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let kib: u64 = line.split_ascii_whitespace().next()?.parse().ok()?;
    kib.checked_mul(1024)
}

/// The soft limit of `Max open files` in `/proc/self/limits` (`None` when unlimited).
fn parse_max_open_files(text: &str) -> Option<u64> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?;
    line.split_ascii_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let text = "4736 (a (b) c) R 4729 4729 6363 0 -1 4194304 102 0 0 0 250 130 0 0 20 0 1 0 \
                    407592 3133440 382 18446744073709551615 94213793611776 0\n";
        let s = parse_stat(text).unwrap();
        assert_eq!((s.utime, s.stime), (250, 130));
        assert_eq!((s.start, s.vsize), (407_592, 3_133_440));
        assert_eq!(parse_stat("1 (x) R 2 3"), None, "too short");
        assert_eq!(parse_stat("no parenthesis"), None);
    }

    #[test]
    fn boot_time_rss_and_fd_limit() {
        let stat = "cpu  1 2 3\nintr 5\nbtime 1796468153\nprocesses 9\n";
        assert_eq!(parse_boot_time(stat), Some(1_796_468_153));
        assert_eq!(parse_boot_time("cpu 1\n"), None);
        let status = "Name:\tlevee\nVmSize:\t  12345 kB\nVmRSS:\t    2048 kB\nThreads:\t3\n";
        assert_eq!(parse_rss(status), Some(2048 * 1024));
        assert_eq!(
            parse_rss("Name:\tkthread\n"),
            None,
            "kernel threads have no VmRSS"
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max processes             96369                96369                processes\n\
                      Max open files            20000                524288               files\n";
        assert_eq!(parse_max_open_files(limits), Some(20_000));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_max_open_files(unlimited), None);
    }

    #[test]
    fn this_process_reads_plausibly() {
        let p = read();
        assert!(p.resident_bytes.is_some_and(|b| b > 0), "{p:?}");
        assert!(p.virtual_bytes >= p.resident_bytes, "{p:?}");
        assert!(p.open_fds.is_some_and(|n| n >= 3), "{p:?}");
        assert!(
            p.max_fds.is_some_and(|n| n >= p.open_fds.unwrap_or(0)),
            "{p:?}"
        );
        assert!(p.cpu_seconds.is_some_and(|s| s >= 0.0), "{p:?}");
        let now = crate::stats::unix_now();
        let start = p.start_time_seconds.unwrap_or(0.0);
        assert!(
            start > now - 86_400.0 && start <= now + 1.0,
            "{start} vs {now}"
        );
    }
}
