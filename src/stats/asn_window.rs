//! The ASN side of the windows: merges the workers' heavy-hitter tables into one history per
//! ASN, ranks the top `TOP_ASNS` by their 10 s connection rate, and sums the rest as "other".
//!
//! Each tick reads every slot of every worker's table. A slot whose sequence number did not
//! change since the last tick gives the difference of its counts; a slot that was taken over
//! gives all it counted since (`AsnEntry::own_count`). An ASN's numbers are therefore exact
//! while some worker tracks it, and whatever a worker counted before evicting it is lost to
//! "other". An ASN not seen for `HISTORY_SECONDS` is forgotten, which bounds the map at about
//! `HISTORY_SECONDS` x the table slots of all workers even under a flood of distinct ASNs.
//!
//! Organisation names come from the ASN database, looked up once per ASN at one of its
//! client addresses (an mmdb is keyed by address, not by number).

use std::collections::HashMap;
use std::net::IpAddr;

use super::asn::{ASN_SLOTS, AsnEntry};
use super::view::{AsnView, HISTORY_SECONDS, SHORT_WINDOW, TOP_ASNS};
use crate::geo::country::UNKNOWN;
use crate::labels::CountryIdx;

/// What the last tick saw in one slot.
#[derive(Debug, Clone, Copy)]
struct Seen {
    seq: u32,
    own: u64,
    requests: u64,
}

/// One ASN's history.
#[derive(Debug)]
struct Track {
    org: String,
    country: CountryIdx,
    ip: IpAddr,
    connections: u64,
    requests: u64,
    ring: [u32; HISTORY_SECONDS],
    last_active: u64,
}

impl Track {
    fn sum(&self, t: u64, n: u64) -> u64 {
        (0..n.min(t))
            .map(|back| u64::from(self.ring[slot(t - back)]))
            .sum()
    }

    fn history(&self, t: u64) -> Vec<u32> {
        history(&self.ring, t)
    }
}

fn slot(t: u64) -> usize {
    (t % HISTORY_SECONDS as u64) as usize
}

fn history(ring: &[u32; HISTORY_SECONDS], t: u64) -> Vec<u32> {
    (0..HISTORY_SECONDS as u64)
        .rev()
        .map(|back| if back < t { ring[slot(t - back)] } else { 0 })
        .collect()
}

fn rate(sum: u64, t: u64) -> f64 {
    sum as f64 / SHORT_WINDOW.min(t).max(1) as f64
}

/// The per-ASN histories, owned by the control thread.
#[derive(Debug)]
pub(super) struct AsnWindows {
    /// Per worker, per slot.
    prev: Vec<Vec<Option<Seen>>>,
    tracks: HashMap<u32, Track>,
    /// Every new connection and request (all countries, with or without an ASN).
    total_connections: u64,
    total_requests: u64,
    total_ring: [u32; HISTORY_SECONDS],
    /// The organisation names must be looked up again (the ASN database changed).
    relookup: bool,
}

impl Default for AsnWindows {
    fn default() -> Self {
        Self {
            prev: Vec::new(),
            tracks: HashMap::new(),
            total_connections: 0,
            total_requests: 0,
            total_ring: [0; HISTORY_SECONDS],
            relookup: false,
        }
    }
}

impl AsnWindows {
    /// Looks every organisation name up again at the next tick.
    pub(super) fn clear_orgs(&mut self) {
        self.relookup = true;
    }

    /// Records the `k` seconds up to second `t` from the workers' `tables`; `totals` holds
    /// every connection and request of each of those seconds.
    pub(super) fn advance(
        &mut self,
        tables: &[Vec<AsnEntry>],
        t: u64,
        k: u32,
        totals: &[(u64, u64)],
        org: &mut dyn FnMut(u32, IpAddr) -> Option<String>,
    ) {
        if self.prev.len() < tables.len() {
            self.prev
                .resize_with(tables.len(), || vec![None; ASN_SLOTS]);
        }
        let mut deltas: HashMap<u32, (u64, u64)> = HashMap::new();
        for (worker, table) in tables.iter().enumerate() {
            for e in table {
                let (dc, dr) = self.delta(worker, e);
                if dc == 0 && dr == 0 {
                    continue;
                }
                let d = deltas.entry(e.asn).or_default();
                d.0 += dc;
                d.1 += dr;
                self.tracks.entry(e.asn).or_insert_with(|| Track {
                    org: org(e.asn, e.ip).unwrap_or_default(),
                    country: e.country,
                    ip: e.ip,
                    connections: 0,
                    requests: 0,
                    ring: [0; HISTORY_SECONDS],
                    last_active: t,
                });
            }
        }
        let relookup = std::mem::take(&mut self.relookup);
        let first = t + 1 - u64::from(k.max(1));
        for (asn, track) in &mut self.tracks {
            if relookup {
                track.org = org(*asn, track.ip).unwrap_or_default();
            }
            let (dc, dr) = deltas.get(asn).copied().unwrap_or_default();
            spread(&mut track.ring, first, t, dc);
            track.connections += dc;
            track.requests += dr;
            if dc > 0 || dr > 0 {
                track.last_active = t;
            }
        }
        self.tracks
            .retain(|_, tr| tr.last_active + HISTORY_SECONDS as u64 > t);
        for (i, &(c, r)) in totals.iter().enumerate() {
            self.total_ring[slot(first + i as u64)] = u32::try_from(c).unwrap_or(u32::MAX);
            self.total_connections += c;
            self.total_requests += r;
        }
    }

    /// What worker `worker`'s slot counted since the last tick.
    fn delta(&mut self, worker: usize, e: &AsnEntry) -> (u64, u64) {
        let seen = &mut self.prev[worker][e.slot];
        let d = match *seen {
            Some(s) if s.seq == e.seq => (
                e.own_count().saturating_sub(s.own),
                e.requests.saturating_sub(s.requests),
            ),
            // Taken over since: everything it counted is new.
            _ => (e.own_count(), e.requests),
        };
        *seen = Some(Seen {
            seq: e.seq,
            own: e.own_count(),
            requests: e.requests,
        });
        d
    }

    fn row(&self, asn: u32, tr: &Track, t: u64) -> AsnView {
        AsnView {
            asn,
            org: tr.org.clone(),
            country: tr.country,
            connections: tr.connections,
            requests: tr.requests,
            conn_rate_10s: rate(tr.sum(t, SHORT_WINDOW), t),
            history: tr.history(t),
        }
    }

    /// Every tracked ASN (optionally of one country), by 10 s rate, then connections.
    fn ranked(&self, t: u64, country: Option<CountryIdx>) -> Vec<(u32, u64, &Track)> {
        let mut v: Vec<(u32, u64, &Track)> = self
            .tracks
            .iter()
            .filter(|(_, tr)| country.is_none_or(|c| tr.country == c))
            .map(|(&asn, tr)| (asn, tr.sum(t, SHORT_WINDOW), tr))
            .collect();
        v.sort_by(|a, b| {
            b.1.cmp(&a.1)
                .then(b.2.connections.cmp(&a.2.connections))
                .then(a.0.cmp(&b.0))
        });
        v
    }

    /// The top `TOP_ASNS` rows, then "other" (ASN 0): every connection and request not in
    /// those rows, with or without an ASN.
    pub(super) fn top(&self, t: u64) -> Vec<AsnView> {
        let mut rows: Vec<AsnView> = self
            .ranked(t, None)
            .into_iter()
            .take(TOP_ASNS)
            .map(|(asn, _, tr)| self.row(asn, tr, t))
            .collect();
        let mut other_ring = self.total_ring;
        for r in &rows {
            if let Some(tr) = self.tracks.get(&r.asn) {
                for (o, v) in other_ring.iter_mut().zip(&tr.ring) {
                    *o = o.saturating_sub(*v);
                }
            }
        }
        let other_10s = (0..SHORT_WINDOW.min(t))
            .map(|back| u64::from(other_ring[slot(t - back)]))
            .sum();
        let listed = |f: fn(&AsnView) -> u64| rows.iter().map(f).sum::<u64>();
        let other = AsnView {
            asn: 0,
            org: "other".to_string(),
            country: UNKNOWN,
            connections: self
                .total_connections
                .saturating_sub(listed(|r| r.connections)),
            requests: self.total_requests.saturating_sub(listed(|r| r.requests)),
            conn_rate_10s: rate(other_10s, t),
            history: history(&other_ring, t),
        };
        rows.push(other);
        rows
    }

    /// The `n` busiest ASNs of `country` over the last 10 s.
    pub(super) fn top_of(&self, country: CountryIdx, t: u64, n: usize) -> Vec<AsnView> {
        self.ranked(t, Some(country))
            .into_iter()
            .take(n)
            .map(|(asn, _, tr)| self.row(asn, tr, t))
            .collect()
    }
}

/// Writes `n` spread evenly over the ring's seconds `first..=last`.
fn spread(ring: &mut [u32; HISTORY_SECONDS], first: u64, last: u64, n: u64) {
    let k = last + 1 - first;
    for (i, second) in (first..=last).enumerate() {
        let i = i as u64;
        let share = n * (i + 1) / k - n * i / k;
        ring[slot(second)] = u32::try_from(share).unwrap_or(u32::MAX);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::stats::asn::AsnTable;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, n])
    }

    fn read(tables: &[&AsnTable]) -> Vec<Vec<AsnEntry>> {
        tables
            .iter()
            .map(|t| {
                let mut v = Vec::new();
                t.read_into(&mut v);
                v
            })
            .collect()
    }

    fn org(asn: u32, _ip: IpAddr) -> Option<String> {
        (asn == 64_500).then(|| "Example Net".to_string())
    }

    #[test]
    fn merges_workers_and_sums_the_rest_as_other() {
        let (a, b) = (AsnTable::default(), AsnTable::default());
        let mut w = AsnWindows::default();
        for _ in 0..6 {
            a.connection(64_500, CountryIdx(30), ip(1));
            a.request(64_500);
        }
        for _ in 0..4 {
            b.connection(64_500, CountryIdx(30), ip(2));
        }
        b.connection(64_501, CountryIdx(56), ip(3));
        // 11 with an ASN, plus 5 without.
        w.advance(&read(&[&a, &b]), 1, 1, &[(16, 7)], &mut org);
        let rows = w.top(1);
        assert_eq!(rows.len(), 3);
        assert_eq!((rows[0].asn, rows[0].connections), (64_500, 10));
        assert_eq!((rows[0].org.as_str(), rows[0].requests), ("Example Net", 6));
        assert_eq!(rows[0].country, CountryIdx(30));
        assert_eq!((rows[1].asn, rows[1].org.as_str()), (64_501, ""));
        let other = &rows[2];
        assert_eq!((other.asn, other.connections, other.requests), (0, 5, 1));
        assert_eq!(other.history[HISTORY_SECONDS - 1], 5);

        // The next second: only the differences count.
        for _ in 0..3 {
            a.connection(64_500, CountryIdx(30), ip(1));
        }
        w.advance(&read(&[&a, &b]), 2, 1, &[(3, 0)], &mut org);
        let rows = w.top(2);
        assert_eq!(rows[0].connections, 13);
        assert_eq!(&rows[0].history[HISTORY_SECONDS - 2..], &[10, 3]);
        assert_eq!(rows[0].conn_rate_10s, 6.5);
        assert_eq!(w.top_of(CountryIdx(56), 2, 3)[0].asn, 64_501);
        assert!(w.top_of(CountryIdx(1), 2, 3).is_empty());
    }

    #[test]
    fn a_takeover_counts_only_what_the_new_asn_saw() {
        let t = AsnTable::default();
        let mut w = AsnWindows::default();
        for asn in 1..=ASN_SLOTS as u32 {
            t.connection(asn, CountryIdx(1), ip(1));
        }
        w.advance(&read(&[&t]), 1, 1, &[(128, 0)], &mut org);
        // A new ASN takes over a slot whose count was 1: it inherits 1 but saw 2.
        t.connection(9000, CountryIdx(2), ip(9));
        t.connection(9000, CountryIdx(2), ip(9));
        w.advance(&read(&[&t]), 2, 1, &[(2, 0)], &mut org);
        let rows = w.top(2);
        assert_eq!((rows[0].asn, rows[0].connections), (9000, 2));
    }

    #[test]
    fn quiet_asns_are_forgotten() {
        let t = AsnTable::default();
        let mut w = AsnWindows::default();
        t.connection(7, CountryIdx(1), ip(1));
        w.advance(&read(&[&t]), 1, 1, &[(1, 0)], &mut org);
        // Still in the worker's table, but nothing new for a minute.
        w.advance(&read(&[&t]), 61, 60, &[(0, 0); 60], &mut org);
        assert_eq!(w.top(61).len(), 1, "only other is left");
        assert_eq!(w.top(61)[0].connections, 1);
    }

    #[test]
    fn spreading_keeps_the_total() {
        let mut ring = [0u32; HISTORY_SECONDS];
        spread(&mut ring, 5, 7, 10);
        assert_eq!(&ring[5..8], &[3, 3, 4]);
    }
}
