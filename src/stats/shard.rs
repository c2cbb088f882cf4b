//! A worker's stats shard: counters per country slot and a heavy-hitter table of ASNs,
//! written only by that worker.
//!
//! A shard has one slot per country (`geo::country::COUNTRY_COUNT`, 253), each
//! `CachePadded`. A slot is 384 bytes (counters 80, two 17-bucket histograms of 144), so a
//! shard is 95 KiB of country slots plus 6.6 KiB of ASN table, plus 24 KiB of admission
//! refusals (12 reasons a country, kept outside the padded slots), about 126 KiB a worker: small
//! enough that the histograms keep all 17 buckets (100 µs .. 10 s, +Inf), the same buckets
//! as `/metrics` exposes.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use std::time::Duration;

use crossbeam_utils::CachePadded;

use crate::labels::{CountryIdx, HandshakeKind, RejectReason, StatusClass};

use super::asn::AsnTable;
use super::histogram::{Histogram, HistogramSnapshot};

/// Counters of one country slot in one shard.
#[derive(Debug, Default)]
pub struct Counters {
    connections: AtomicU64,
    connections_closed: AtomicU64,
    handshakes: [AtomicU64; 3],
    handshake_time: Histogram,
    requests: [AtomicU64; StatusClass::COUNT],
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    upstream_time: Histogram,
}

/// A plain copy of `Counters` (or a sum over shards).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CountersSnapshot {
    /// Connections accepted.
    pub connections: u64,
    /// Connections currently open.
    pub connections_active: u64,
    /// Handshakes by kind: full, resumed, failed.
    pub handshakes: [u64; 3],
    /// Handshake duration histogram.
    pub handshake_time: HistogramSnapshot,
    /// Requests by status class 1xx..5xx.
    pub requests: [u64; StatusClass::COUNT],
    /// Request body bytes received from clients.
    pub bytes_in: u64,
    /// Response body bytes sent to clients.
    pub bytes_out: u64,
    /// Connections closed because the client stopped reading (`send_timeout`); in totals
    /// only (counted per worker, not per country).
    pub send_timeouts: u64,
    /// Upstream response-head latency histogram.
    pub upstream_time: HistogramSnapshot,
    /// Admission refusals by `RejectReason` (dry-run "would have" counts included).
    pub rejected: [u64; RejectReason::COUNT],
}

impl CountersSnapshot {
    /// Handshakes of one kind.
    pub fn handshakes_of(&self, kind: HandshakeKind) -> u64 {
        self.handshakes[kind as usize]
    }

    /// Connections and requests shed: refusals of every reason that refuses
    /// (`RejectReason::is_refusal`; a dry run's "would have" is not one).
    pub fn shed(&self) -> u64 {
        sum_reasons(&self.rejected, RejectReason::is_refusal)
    }

    /// Connections refused before they were counted as opened (`RejectReason::before_open`).
    pub fn refused_before_open(&self) -> u64 {
        sum_reasons(&self.rejected, RejectReason::before_open)
    }
}

/// The sum of the counts in `rejected` of the reasons `pick` selects.
pub fn sum_reasons(rejected: &[u64; RejectReason::COUNT], pick: fn(RejectReason) -> bool) -> u64 {
    RejectReason::ALL
        .iter()
        .filter(|r| pick(**r))
        .map(|r| rejected[*r as usize])
        .sum()
}

impl Counters {
    fn add_to(&self, s: &mut CountersSnapshot) {
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let opened = ld(&self.connections);
        s.connections += opened;
        s.connections_active += opened.saturating_sub(ld(&self.connections_closed));
        for (d, a) in s.handshakes.iter_mut().zip(&self.handshakes) {
            *d += ld(a);
        }
        for (d, a) in s.requests.iter_mut().zip(&self.requests) {
            *d += ld(a);
        }
        s.bytes_in += ld(&self.bytes_in);
        s.bytes_out += ld(&self.bytes_out);
        self.handshake_time.add_to(&mut s.handshake_time);
        self.upstream_time.add_to(&mut s.upstream_time);
    }
}

/// One worker's shard. Only its worker writes; anyone may read.
#[derive(Debug)]
pub struct Shard {
    /// Worker index.
    pub worker: usize,
    countries: Box<[CachePadded<Counters>]>,
    asns: Box<CachePadded<AsnTable>>,
    /// Refused connections and requests per country slot, by `RejectReason`. Kept outside
    /// the padded slots (96 bytes a country, 24 KiB a shard): they are written only when
    /// something is refused, and only by this worker.
    rejected: Box<[[AtomicU64; RejectReason::COUNT]]>,
    /// Connections waiting in this worker's handshake queue now.
    handshake_queue_depth: AtomicU64,
    /// This worker's handshake limit now (adaptive or fixed; 0 before the first handshake).
    handshake_limit: AtomicU64,
    /// Connections closed by `send_timeout`.
    send_timeouts: AtomicU64,
    /// How long connections waited in the handshake queue (admitted or not).
    handshake_queue_wait: Histogram,
}

impl Shard {
    /// A shard with `country_slots` slots (at least one, the unknown slot).
    pub fn new(worker: usize, country_slots: usize) -> Self {
        Self {
            worker,
            countries: (0..country_slots.max(1))
                .map(|_| CachePadded::new(Counters::default()))
                .collect(),
            asns: Box::default(),
            rejected: (0..country_slots.max(1))
                .map(|_| Default::default())
                .collect(),
            handshake_queue_depth: AtomicU64::new(0),
            handshake_limit: AtomicU64::new(0),
            send_timeouts: AtomicU64::new(0),
            handshake_queue_wait: Histogram::default(),
        }
    }

    /// Number of country slots.
    pub fn country_slots(&self) -> usize {
        self.countries.len()
    }

    /// Bytes of memory the shard's counters take (country slots and ASN table).
    pub fn memory_bytes(&self) -> usize {
        self.countries.len() * std::mem::size_of::<CachePadded<Counters>>()
            + std::mem::size_of::<CachePadded<AsnTable>>()
            + self.rejected.len() * std::mem::size_of::<[AtomicU64; RejectReason::COUNT]>()
    }

    /// A connection (or request) of country `c` was refused by admission control.
    pub fn admission_rejected(&self, c: CountryIdx, reason: RejectReason) {
        let row = self
            .rejected
            .get(usize::from(c.0))
            .unwrap_or(&self.rejected[0]);
        row[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Adds this shard's refusals of country `c`, by reason, into `into`.
    pub fn add_rejected(&self, c: CountryIdx, into: &mut [u64; RejectReason::COUNT]) {
        if let Some(row) = self.rejected.get(usize::from(c.0)) {
            for (d, a) in into.iter_mut().zip(row) {
                *d += a.load(Ordering::Relaxed);
            }
        }
    }

    /// Publishes the depth of this worker's handshake queue.
    pub fn set_handshake_queue_depth(&self, n: usize) {
        self.handshake_queue_depth
            .store(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Connections waiting in this worker's handshake queue now.
    pub fn handshake_queue_depth(&self) -> u64 {
        self.handshake_queue_depth.load(Ordering::Relaxed)
    }

    /// Publishes this worker's handshake limit.
    pub fn set_handshake_limit(&self, n: usize) {
        self.handshake_limit
            .store(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// This worker's handshake limit now (0 before its first handshake).
    pub fn handshake_limit(&self) -> u64 {
        self.handshake_limit.load(Ordering::Relaxed)
    }

    /// A connection left the handshake queue (with a slot or refused) after `waited`.
    pub fn handshake_queue_waited(&self, waited: Duration) {
        self.handshake_queue_wait.record(waited);
    }

    /// Adds this shard's handshake queue wait histogram into `into`.
    pub fn add_handshake_queue_wait(&self, into: &mut HistogramSnapshot) {
        self.handshake_queue_wait.add_to(into);
    }

    fn slot(&self, c: CountryIdx) -> &Counters {
        self.countries
            .get(usize::from(c.0))
            .unwrap_or(&self.countries[0])
    }

    /// A connection was accepted.
    pub fn connection_opened(&self, c: CountryIdx) {
        self.slot(c).connections.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection was closed.
    pub fn connection_closed(&self, c: CountryIdx) {
        self.slot(c)
            .connections_closed
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A TLS handshake finished (or failed) after `took`.
    pub fn handshake(&self, c: CountryIdx, kind: HandshakeKind, took: Duration) {
        let s = self.slot(c);
        s.handshakes[kind as usize].fetch_add(1, Ordering::Relaxed);
        s.handshake_time.record(took);
    }

    /// A connection was closed because writing to it made no progress for `send_timeout`.
    pub fn send_timed_out(&self) {
        self.send_timeouts.fetch_add(1, Ordering::Relaxed);
    }

    /// A request finished with `status`, moving `bytes_in`/`bytes_out` body bytes.
    pub fn request(&self, c: CountryIdx, status: u16, bytes_in: u64, bytes_out: u64) {
        let s = self.slot(c);
        s.requests[StatusClass::of(status) as usize].fetch_add(1, Ordering::Relaxed);
        s.bytes_in.fetch_add(bytes_in, Ordering::Relaxed);
        s.bytes_out.fetch_add(bytes_out, Ordering::Relaxed);
    }

    /// An upstream answered with a response head after `took`.
    pub fn upstream_latency(&self, c: CountryIdx, took: Duration) {
        self.slot(c).upstream_time.record(took);
    }

    /// A new connection from autonomous system `asn`, client address `ip`, counted in this
    /// worker's heavy-hitter table (call it next to `connection_opened` when the ASN is
    /// known).
    pub fn asn_connection(&self, asn: u32, country: CountryIdx, ip: IpAddr) {
        self.asns.connection(asn, country, ip);
    }

    /// A request from a client of `asn` finished (call it next to `request`).
    pub fn asn_request(&self, asn: u32) {
        self.asns.request(asn);
    }

    /// The heavy-hitter table of ASNs (read by the control thread).
    pub fn asns(&self) -> &AsnTable {
        &self.asns
    }

    /// Adds every slot of this shard into `into` (a total over countries).
    pub fn add_totals(&self, into: &mut CountersSnapshot) {
        for c in self.countries.iter() {
            c.add_to(into);
        }
        into.send_timeouts += self.send_timeouts.load(Ordering::Relaxed);
        for row in self.rejected.iter() {
            for (d, a) in into.rejected.iter_mut().zip(row) {
                *d += a.load(Ordering::Relaxed);
            }
        }
    }

    /// Adds this shard's slot of country `c`, refusals included, into `into` (nothing when
    /// out of range).
    pub fn add_country(&self, c: CountryIdx, into: &mut CountersSnapshot) {
        if let Some(slot) = self.countries.get(usize::from(c.0)) {
            slot.add_to(into);
        }
        self.add_rejected(c, &mut into.rejected);
    }
}

/// Admission refusals per country slot (by `RejectReason`), summed over shards.
pub fn rejected_per_country<'a>(
    shards: impl IntoIterator<Item = &'a Shard> + Clone,
) -> Vec<[u64; RejectReason::COUNT]> {
    let slots = shards
        .clone()
        .into_iter()
        .map(Shard::country_slots)
        .max()
        .unwrap_or(1);
    let mut out = vec![[0; RejectReason::COUNT]; slots];
    for shard in shards {
        for (i, row) in out.iter_mut().enumerate() {
            shard.add_rejected(CountryIdx(u16::try_from(i).unwrap_or(u16::MAX)), row);
        }
    }
    out
}

/// Sums shards into one total.
pub fn totals<'a>(shards: impl IntoIterator<Item = &'a Shard>) -> CountersSnapshot {
    let mut s = CountersSnapshot::default();
    for shard in shards {
        shard.add_totals(&mut s);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_sum() {
        let a = Shard::new(0, 4);
        let b = Shard::new(1, 4);
        a.admission_rejected(CountryIdx(2), RejectReason::PerIp);
        b.admission_rejected(CountryIdx(2), RejectReason::PerIp);
        b.admission_rejected(CountryIdx(99), RejectReason::SlowUpload);
        let mut r = [0; RejectReason::COUNT];
        a.add_rejected(CountryIdx(2), &mut r);
        b.add_rejected(CountryIdx(2), &mut r);
        assert_eq!(r[..5], [0, 2, 0, 0, 0]);
        assert!(r[5..].iter().all(|n| *n == 0));
        let mut zz = [0; RejectReason::COUNT];
        b.add_rejected(CountryIdx(0), &mut zz);
        assert_eq!(
            zz[RejectReason::SlowUpload as usize],
            1,
            "out of range: slot 0"
        );
        a.connection_opened(CountryIdx(1));
        b.connection_opened(CountryIdx(2));
        b.connection_closed(CountryIdx(2));
        a.handshake(
            CountryIdx(1),
            HandshakeKind::Resumed,
            Duration::from_micros(10),
        );
        b.request(CountryIdx(9), 503, 5, 7);
        let t = totals([&a, &b]);
        assert_eq!(t.connections, 2);
        assert_eq!(t.connections_active, 1);
        assert_eq!(t.handshakes_of(HandshakeKind::Resumed), 1);
        assert_eq!(t.requests[4], 1);
        assert_eq!((t.bytes_in, t.bytes_out), (5, 7));
        let mut br = CountersSnapshot::default();
        a.add_country(CountryIdx(1), &mut br);
        b.add_country(CountryIdx(1), &mut br);
        assert_eq!(
            (br.connections, br.handshakes_of(HandshakeKind::Resumed)),
            (1, 1)
        );
        // Refusals come with a country's counters and with the totals.
        a.admission_rejected(CountryIdx(2), RejectReason::RateLimit);
        a.admission_rejected(CountryIdx(2), RejectReason::AutoCapDryRun);
        a.admission_rejected(CountryIdx(2), RejectReason::HandshakeQueueFull);
        let mut two = CountersSnapshot::default();
        a.add_country(CountryIdx(2), &mut two);
        b.add_country(CountryIdx(2), &mut two);
        assert_eq!(two.rejected[RejectReason::PerIp as usize], 2);
        assert_eq!(
            two.shed(),
            4,
            "per_ip x2, rate_limit, queue full; not the dry run"
        );
        assert_eq!(two.refused_before_open(), 3, "per_ip x2, rate_limit");
        assert_eq!(
            totals([&a, &b]).shed(),
            5,
            "and BR's slow upload, in slot 0"
        );
    }

    #[test]
    fn a_slot_is_small_and_a_shard_stays_well_under_a_megabyte() {
        // Counters 80 bytes + two histograms of 17 buckets and a sum (144 each), padded.
        let slot = std::mem::size_of::<CachePadded<Counters>>();
        assert!(slot <= 384, "{slot}");
        let shard = Shard::new(0, crate::geo::country::COUNTRY_COUNT);
        assert!(
            shard.memory_bytes() < 128 * 1024,
            "{}",
            shard.memory_bytes()
        );
    }
}
