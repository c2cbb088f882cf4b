//! Maglev consistent hashing (Eisenbud et al., NSDI 2016): a lookup table of prime size
//! `TABLE_SIZE` where each backend fills slots in the order of its own permutation
//! (`offset + j * skip`, both from stable hashes of its address) until the table is full.
//!
//! A request's key (`PickContext::hash`, else the client IP, see `hash::request_hash`)
//! selects `table[key % TABLE_SIZE]`, so a key sticks to its backend while the pool is
//! unchanged, and adding or removing one of N backends moves only about 1/N of the keys.
//! Weights give a backend proportionally more turns while the table is filled.
//!
//! If the chosen backend is unusable, the pick walks the table forward to the next usable
//! backend (at most `MAX_WALK` slots, then a scan): the keys of a backend that is down spread
//! over the others, and every other key stays where it was. With no key at all (neither a
//! hash nor a client address) the pick falls back to round robin.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::hash::{hash_bytes_seeded, hash_ip, mix64};
use super::{Backend, Balancer, PickContext};

/// Number of slots of the lookup table: a prime, fixed, and over 100 slots per backend for
/// pools of up to 655 backends (the Maglev paper's bound for keeping each backend's share
/// within about 1%). Fixed, because a table of another size maps nearly every key elsewhere:
/// sizing it by pool size would break consistency whenever a pool crossed a size step.
pub const TABLE_SIZE: usize = 65_537;

/// Slots tried after an unusable backend before scanning the backends.
const MAX_WALK: usize = 32;

/// Seeds of the two address hashes (offset and skip).
const OFFSET_SEED: u64 = 0x6d61_676c_6576_3031;
const SKIP_SEED: u64 = 0x6d61_676c_6576_3032;

/// A Maglev lookup table over a fixed list of backends.
#[derive(Debug)]
pub struct Maglev {
    /// `TABLE_SIZE` backend indexes (empty when there are no backends).
    table: Box<[u16]>,
    /// Round-robin cursor for requests without a key.
    next: AtomicUsize,
}

impl Maglev {
    /// Builds the lookup table for `backends` (the first 65,535 of them; more cannot be
    /// indexed by the table's `u16` entries).
    pub fn new(backends: &[Backend]) -> Self {
        Self {
            table: populate(backends).into_boxed_slice(),
            next: AtomicUsize::new(0),
        }
    }

    /// The lookup table (backend indexes), for inspection.
    pub fn table(&self) -> &[u16] {
        &self.table
    }

    /// Round robin over the usable backends (requests that carry no key).
    fn round_robin(&self, backends: &[Backend]) -> Option<usize> {
        let n = backends.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|k| start.wrapping_add(k) % n)
            .find(|&i| backends[i].state.is_usable())
    }
}

impl Balancer for Maglev {
    fn pick(&self, backends: &[Backend], ctx: &PickContext) -> Option<usize> {
        if backends.is_empty() || self.table.is_empty() {
            return None;
        }
        let Some(key) = ctx.hash.or_else(|| ctx.client.map(hash_ip)) else {
            return self.round_robin(backends);
        };
        // Mixed once more, so a caller-supplied hash with weak low bits still spreads.
        let slot = (mix64(key) % TABLE_SIZE as u64) as usize;
        let usable = |i: usize| backends.get(i).is_some_and(|b| b.state.is_usable());
        for step in 0..MAX_WALK {
            let i = usize::from(self.table[(slot + step) % TABLE_SIZE]);
            if usable(i) {
                return Some(i);
            }
        }
        // Most backends are down: the first usable one after the key's own.
        let n = backends.len();
        let own = usize::from(self.table[slot]);
        (1..=n).map(|k| (own + k) % n).find(|&i| usable(i))
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Fills the table: backends take turns (as many per round as their weight, divided by
/// the weights' gcd), each claiming the next free slot of its own permutation.
fn populate(backends: &[Backend]) -> Vec<u16> {
    let size = TABLE_SIZE;
    let n = backends.len().min(usize::from(u16::MAX)).min(size);
    if n == 0 {
        return Vec::new();
    }
    let m = size as u64;
    // Each backend's permutation is offset, offset + skip, offset + 2 skip, ... (mod m);
    // `position` holds where it stands now, advanced by one addition, not a division.
    let mut position = Vec::with_capacity(n);
    let mut skip = Vec::with_capacity(n);
    for b in &backends[..n] {
        let name = b.address.to_string();
        position.push(hash_bytes_seeded(name.as_bytes(), OFFSET_SEED) % m);
        skip.push(hash_bytes_seeded(name.as_bytes(), SKIP_SEED) % (m - 1) + 1);
    }
    let g = backends[..n]
        .iter()
        .map(|b| u64::from(b.weight.max(1)))
        .fold(0, gcd)
        .max(1);
    let turns: Vec<u64> = backends[..n]
        .iter()
        .map(|b| u64::from(b.weight.max(1)) / g)
        .collect();

    const EMPTY: u16 = u16::MAX;
    let mut table = vec![EMPTY; size];
    // Which slots are taken, as bits: 8 KiB that stay in L1 while the probes jump around,
    // where the 128 KiB table would not (most of the build time is these probes).
    let mut taken = vec![0u64; size.div_ceil(64)];
    let mut filled = 0;
    while filled < size {
        for i in 0..n {
            // Kept in registers for the probe loop (it runs about M ln M times per table).
            let (mut pos, step) = (position[i], skip[i]);
            let entry = u16::try_from(i).unwrap_or(EMPTY);
            for _ in 0..turns[i] {
                // Each permutation visits every slot (m is prime, skip in 1..m), so this
                // finds a free one while any is left.
                loop {
                    let c = pos as usize;
                    pos += step;
                    if pos >= m {
                        pos -= m;
                    }
                    let (word, bit) = (c / 64, 1u64 << (c % 64));
                    if taken[word] & bit == 0 {
                        taken[word] |= bit;
                        table[c] = entry;
                        filled += 1;
                        break;
                    }
                }
                if filled == size {
                    return table;
                }
            }
            position[i] = pos;
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::hash::hash_bytes;
    use std::net::IpAddr;

    fn backends(n: usize) -> Vec<Backend> {
        (0..n)
            .map(|i| {
                let addr = format!("10.0.{}.{}:8080", i / 250, i % 250 + 1);
                Backend::new(addr.parse().unwrap(), 1)
            })
            .collect()
    }

    fn keyed(key: u64) -> PickContext {
        PickContext {
            client: None,
            hash: Some(key),
        }
    }

    fn key(k: usize) -> u64 {
        hash_bytes(format!("user-{k}").as_bytes())
    }

    #[test]
    fn table_is_full_and_balanced() {
        let b = backends(10);
        let m = Maglev::new(&b);
        let size = m.table().len();
        assert_eq!(size, TABLE_SIZE);
        let mut counts = [0usize; 10];
        for &i in m.table() {
            counts[usize::from(i)] += 1;
        }
        for c in counts {
            assert!(c.abs_diff(size / 10) <= 1, "{counts:?}");
        }
    }

    #[test]
    fn weights_give_more_slots() {
        let mut b = backends(2);
        b[1].weight = 3;
        let m = Maglev::new(&b);
        let heavy = m.table().iter().filter(|&&i| i == 1).count();
        assert!(heavy.abs_diff(TABLE_SIZE * 3 / 4) <= 3, "{heavy}");
    }

    #[test]
    fn same_key_same_backend() {
        let b = backends(10);
        let m = Maglev::new(&b);
        let again = Maglev::new(&b);
        for k in 0..1_000 {
            let first = m.pick(&b, &keyed(key(k)));
            assert!(first.is_some());
            assert_eq!(m.pick(&b, &keyed(key(k))), first);
            assert_eq!(
                again.pick(&b, &keyed(key(k))),
                first,
                "rebuilt table agrees"
            );
        }
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        let by_ip = PickContext {
            client: Some(ip),
            hash: None,
        };
        let first = m.pick(&b, &by_ip);
        for _ in 0..100 {
            assert_eq!(m.pick(&b, &by_ip), first);
        }
    }

    #[test]
    fn removing_one_of_ten_remaps_about_a_tenth() {
        let ten = backends(10);
        let nine: Vec<Backend> = ten
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != 3)
            .map(|(_, b)| Backend::new(b.address, 1))
            .collect();
        let (m10, m9) = (Maglev::new(&ten), Maglev::new(&nine));
        let keys = 10_000;
        let moved = (0..keys)
            .filter(|&k| {
                let before = ten[m10.pick(&ten, &keyed(key(k))).unwrap()].address;
                let after = nine[m9.pick(&nine, &keyed(key(k))).unwrap()].address;
                before != after
            })
            .count();
        assert!(moved * 100 <= keys * 15, "{moved} of {keys} keys moved");
    }

    #[test]
    fn unusable_backend_moves_only_its_own_keys() {
        let b = backends(10);
        let m = Maglev::new(&b);
        let before: Vec<usize> = (0..10_000)
            .map(|k| m.pick(&b, &keyed(key(k))).unwrap())
            .collect();
        b[4].state.set_healthy(false);
        for (k, &was) in before.iter().enumerate() {
            let now = m.pick(&b, &keyed(key(k))).unwrap();
            assert_ne!(now, 4);
            if was != 4 {
                assert_eq!(now, was, "key {k} moved off a healthy backend");
            }
        }
    }

    #[test]
    fn all_unusable_is_none_and_no_key_is_round_robin() {
        let b = backends(3);
        let m = Maglev::new(&b);
        let mut counts = [0; 3];
        for _ in 0..300 {
            counts[m.pick(&b, &PickContext::default()).unwrap()] += 1;
        }
        assert_eq!(counts, [100, 100, 100]);
        let b = backends(300);
        let m = Maglev::new(&b);
        for x in &b[1..] {
            x.state.set_healthy(false);
        }
        for k in 0..200 {
            assert_eq!(m.pick(&b, &keyed(key(k))), Some(0));
        }
        b[0].state.set_healthy(false);
        assert_eq!(m.pick(&b, &keyed(key(1))), None);
        assert_eq!(m.pick(&b, &PickContext::default()), None);
        assert_eq!(Maglev::new(&[]).pick(&[], &keyed(1)), None);
    }
}
