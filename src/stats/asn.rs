//! A worker's heavy-hitter table of autonomous systems: Space-Saving over `ASN_SLOTS`
//! counters of atomics, written only by its worker, read racily by the control thread.
//!
//! Space-Saving (Metwally et al.) keeps the ASNs with the most new connections: a known ASN
//! counts up; an unknown one takes over the slot with the smallest count and inherits that
//! count as its possible overestimate (`error`). Any ASN with more than `total / ASN_SLOTS`
//! connections is guaranteed a slot, and `count - error` is exactly what was seen of an ASN
//! since it took its slot: the control thread counts only that, so a tracked ASN's numbers
//! are exact and an evicted one's are lost (it falls into "other").
//!
//! Writing never locks or allocates. A hit costs one hint load, one key compare and one add;
//! a miss scans the 128 keys (512 bytes), and a takeover scans the 128 counts for the
//! minimum. Requests are counted on the ASN's slot if it has one (`request`), nothing else.
//!
//! A takeover rewrites several fields; a per-slot sequence number (a seqlock with one
//! writer) lets the reader skip a slot caught mid-takeover instead of reading half of it.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering, fence};

use crate::labels::CountryIdx;

/// Slots per worker table.
pub const ASN_SLOTS: usize = 128;

/// Direct-mapped hints `hash(asn) -> slot`, so a hit does not scan.
const HINTS: usize = 64;

/// What the writer rewrites on a takeover, guarded by `seq`.
#[derive(Debug, Default)]
struct Meta {
    /// Even: stable; odd: a takeover is being written.
    seq: AtomicU32,
    /// Count inherited at the takeover (the Space-Saving overestimate).
    error: AtomicU64,
    /// Requests of this ASN since the takeover.
    requests: AtomicU64,
    /// Country of the connection that took the slot.
    country: AtomicU16,
    /// One client address of this ASN (IPv4 as mapped IPv6), for looking its name up.
    ip_hi: AtomicU64,
    ip_lo: AtomicU64,
}

/// One worker's table. Only its worker writes.
#[derive(Debug)]
pub struct AsnTable {
    /// ASN per slot; 0 is an empty slot.
    keys: [AtomicU32; ASN_SLOTS],
    /// Space-Saving count per slot (0 for an empty slot, so the minimum scan finds it first).
    counts: [AtomicU64; ASN_SLOTS],
    meta: [Meta; ASN_SLOTS],
    hints: [AtomicU8; HINTS],
}

impl Default for AsnTable {
    fn default() -> Self {
        Self {
            keys: std::array::from_fn(|_| AtomicU32::new(0)),
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            meta: std::array::from_fn(|_| Meta::default()),
            hints: std::array::from_fn(|_| AtomicU8::new(0)),
        }
    }
}

/// A consistent copy of one occupied slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsnEntry {
    /// Slot index in its table.
    pub slot: usize,
    /// Sequence number of the slot: it changes with every takeover.
    pub seq: u32,
    /// The autonomous system number.
    pub asn: u32,
    /// Country of the connection that took the slot.
    pub country: CountryIdx,
    /// Space-Saving count (includes `error`).
    pub count: u64,
    /// Inherited overestimate: `count - error` connections were seen since the takeover.
    pub error: u64,
    /// Requests seen since the takeover.
    pub requests: u64,
    /// A client address of this ASN.
    pub ip: IpAddr,
}

impl AsnEntry {
    /// Connections counted for this ASN since it took the slot (exact).
    pub fn own_count(&self) -> u64 {
        self.count.saturating_sub(self.error)
    }
}

fn hint_of(asn: u32) -> usize {
    // Fibonacci hashing: the top 6 bits of the product.
    (asn.wrapping_mul(0x9E37_79B1) >> (32 - HINTS.trailing_zeros())) as usize
}

/// One relaxed add by the table's only writer: a load and a store, no locked instruction.
fn bump(a: &AtomicU64, n: u64) {
    a.store(a.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

impl AsnTable {
    /// The slot holding `asn`, if any.
    fn find(&self, asn: u32) -> Option<usize> {
        let h = hint_of(asn);
        let hinted = usize::from(self.hints[h].load(Ordering::Relaxed));
        if self
            .keys
            .get(hinted)
            .is_some_and(|k| k.load(Ordering::Relaxed) == asn)
        {
            return Some(hinted);
        }
        let slot = self
            .keys
            .iter()
            .position(|k| k.load(Ordering::Relaxed) == asn)?;
        self.remember(h, slot);
        Some(slot)
    }

    fn remember(&self, hint: usize, slot: usize) {
        // ASN_SLOTS fits in a u8.
        self.hints[hint].store(u8::try_from(slot).unwrap_or(0), Ordering::Relaxed);
    }

    /// A new connection from `asn` (0 is ignored: it stands for "other").
    pub fn connection(&self, asn: u32, country: CountryIdx, ip: IpAddr) {
        if asn == 0 {
            return;
        }
        if let Some(slot) = self.find(asn) {
            bump(&self.counts[slot], 1);
            return;
        }
        let (slot, min) = self.smallest();
        self.take_over(slot, asn, country, ip, min);
    }

    /// A request from `asn`, counted if `asn` has a slot.
    pub fn request(&self, asn: u32) {
        if asn == 0 {
            return;
        }
        if let Some(slot) = self.find(asn) {
            bump(&self.meta[slot].requests, 1);
        }
    }

    /// The slot with the smallest count (an empty one first) and that count.
    fn smallest(&self) -> (usize, u64) {
        let mut best = (0, u64::MAX);
        for (i, c) in self.counts.iter().enumerate() {
            let c = c.load(Ordering::Relaxed);
            if c < best.1 {
                best = (i, c);
                if c == 0 {
                    break;
                }
            }
        }
        best
    }

    fn take_over(&self, slot: usize, asn: u32, country: CountryIdx, ip: IpAddr, min: u64) {
        let m = &self.meta[slot];
        let seq = m.seq.load(Ordering::Relaxed);
        m.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        // The odd sequence number is visible before any field below changes.
        fence(Ordering::Release);
        let bits = u128::from(match ip {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        });
        self.keys[slot].store(asn, Ordering::Relaxed);
        self.counts[slot].store(min.saturating_add(1), Ordering::Relaxed);
        m.error.store(min, Ordering::Relaxed);
        m.requests.store(0, Ordering::Relaxed);
        m.country.store(country.0, Ordering::Relaxed);
        m.ip_hi.store((bits >> 64) as u64, Ordering::Relaxed);
        m.ip_lo.store(bits as u64, Ordering::Relaxed);
        m.seq.store(seq.wrapping_add(2), Ordering::Release);
        self.remember(hint_of(asn), slot);
    }

    /// Appends a copy of every occupied slot to `out`. A slot being taken over at that
    /// moment is read again (a few times), then skipped until the next read.
    pub fn read_into(&self, out: &mut Vec<AsnEntry>) {
        for slot in 0..ASN_SLOTS {
            if let Some(e) = self.read_slot(slot) {
                out.push(e);
            }
        }
    }

    fn read_slot(&self, slot: usize) -> Option<AsnEntry> {
        let m = &self.meta[slot];
        for _ in 0..4 {
            let seq = m.seq.load(Ordering::Acquire);
            if seq % 2 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let asn = self.keys[slot].load(Ordering::Relaxed);
            let count = self.counts[slot].load(Ordering::Relaxed);
            let error = m.error.load(Ordering::Relaxed);
            let requests = m.requests.load(Ordering::Relaxed);
            let country = CountryIdx(m.country.load(Ordering::Relaxed));
            let bits = (u128::from(m.ip_hi.load(Ordering::Relaxed)) << 64)
                | u128::from(m.ip_lo.load(Ordering::Relaxed));
            fence(Ordering::Acquire);
            if m.seq.load(Ordering::Relaxed) != seq {
                continue;
            }
            if asn == 0 {
                return None;
            }
            return Some(AsnEntry {
                slot,
                seq,
                asn,
                country,
                count,
                error,
                requests,
                ip: IpAddr::V6(Ipv6Addr::from(bits)).to_canonical(),
            });
        }
        None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from(0xC000_0200 | (n & 0xff)))
    }

    fn entries(t: &AsnTable) -> Vec<AsnEntry> {
        let mut v = Vec::new();
        t.read_into(&mut v);
        v
    }

    #[test]
    fn counts_exactly_while_there_is_room() {
        let t = AsnTable::default();
        for asn in 1..=100u32 {
            for _ in 0..asn {
                t.connection(asn, CountryIdx(7), ip(asn));
            }
            t.request(asn);
        }
        t.request(999); // untracked: ignored
        t.connection(0, CountryIdx(1), ip(0)); // "other": ignored
        let e = entries(&t);
        assert_eq!(e.len(), 100);
        for entry in e {
            assert_eq!(entry.count, u64::from(entry.asn));
            assert_eq!(entry.error, 0);
            assert_eq!(entry.requests, 1);
            assert_eq!(entry.country, CountryIdx(7));
            assert_eq!(entry.ip, ip(entry.asn));
        }
    }

    #[test]
    fn heavy_hitters_survive_a_long_tail() {
        let t = AsnTable::default();
        // Three heavy ASNs interleaved with 10,000 distinct one-off ASNs.
        let mut total = 0u64;
        for i in 0..10_000u32 {
            t.connection(1000 + i, CountryIdx(3), ip(i));
            total += 1;
            if i % 4 == 0 {
                t.connection(7, CountryIdx(1), ip(7));
                total += 1;
            }
            if i % 8 == 0 {
                t.connection(8, CountryIdx(2), ip(8));
                total += 1;
            }
            if i % 16 == 0 {
                t.connection(9, CountryIdx(2), ip(9));
                total += 1;
            }
        }
        let e = entries(&t);
        assert_eq!(e.len(), ASN_SLOTS);
        let find = |asn| e.iter().find(|x| x.asn == asn).copied().unwrap();
        // Guaranteed: every ASN above total / slots is in the table, and its count is an
        // overestimate by at most its error.
        assert!(2500 > total / ASN_SLOTS as u64);
        for (asn, truth) in [(7u32, 2500u64), (8, 1250), (9, 625)] {
            let x = find(asn);
            assert!(x.count >= truth && x.count - x.error <= truth, "{x:?}");
        }
        // The table's counts add up to everything seen.
        assert_eq!(e.iter().map(|x| x.count).sum::<u64>(), total);
    }

    #[test]
    fn a_takeover_changes_the_sequence_number() {
        let t = AsnTable::default();
        for asn in 1..=ASN_SLOTS as u32 {
            t.connection(asn, CountryIdx(0), ip(asn));
        }
        let before = entries(&t);
        t.connection(5000, CountryIdx(9), ip(1));
        let after = entries(&t);
        let taken = after.iter().find(|x| x.asn == 5000).unwrap();
        let old = before.iter().find(|x| x.slot == taken.slot).unwrap();
        assert_ne!(old.seq, taken.seq);
        assert_eq!((taken.count, taken.error, taken.own_count()), (2, 1, 1));
        assert_eq!(taken.country, CountryIdx(9));
    }

    #[test]
    fn ipv6_sample_addresses_round_trip() {
        let t = AsnTable::default();
        let v6: IpAddr = "2001:db8::42".parse().unwrap();
        t.connection(64_500, CountryIdx(2), v6);
        assert_eq!(entries(&t)[0].ip, v6);
    }

    #[test]
    fn concurrent_reads_never_see_a_torn_takeover() {
        let t = std::sync::Arc::new(AsnTable::default());
        let writer = {
            let t = std::sync::Arc::clone(&t);
            std::thread::spawn(move || {
                for i in 0..200_000u32 {
                    // Country and address are functions of the ASN: a torn read mixes them.
                    let asn = 1 + i % 1000;
                    t.connection(asn, CountryIdx((asn % 250) as u16), ip(asn));
                }
            })
        };
        let mut out = Vec::new();
        while !writer.is_finished() {
            out.clear();
            t.read_into(&mut out);
            for e in &out {
                assert_eq!(e.country, CountryIdx((e.asn % 250) as u16), "{e:?}");
                assert_eq!(e.ip, ip(e.asn), "{e:?}");
                assert!(e.count > e.error, "{e:?}");
            }
        }
        writer.join().unwrap();
    }
}
