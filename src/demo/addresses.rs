//! Client addresses for the demo's synthetic visitors, found in the bundled GeoIP database:
//! for each demo country, addresses in blocks that regional registries allocated to it are
//! probed, and those the database places in that country are kept. The probing is bounded
//! (a fixed number of lookups per country) and deterministic.
//!
//! These addresses only ever appear inside PROXY headers sent over loopback: no packet goes
//! to them.

use std::net::Ipv4Addr;

use crate::geo::GeoDb;

/// Addresses kept per country: enough that a country is not one client.
pub const PER_COUNTRY: usize = 8;
/// Probes per candidate /8 block.
const PROBES_PER_BLOCK: u8 = 32;

/// The demo countries, each with first octets of IPv4 blocks largely allocated to it.
pub const CANDIDATES: [(&str, &[u8]); 7] = [
    (
        "US",
        &[
            3, 4, 12, 23, 24, 50, 63, 66, 67, 68, 69, 71, 72, 73, 75, 76, 98, 99,
        ],
    ),
    (
        "DE",
        &[79, 80, 84, 87, 91, 93, 217, 46, 89, 92, 95, 62, 85, 88],
    ),
    ("BR", &[177, 179, 186, 187, 189, 191, 200, 201, 170, 168]),
    (
        "JP",
        &[126, 133, 153, 180, 210, 219, 220, 221, 60, 61, 114, 118],
    ),
    (
        "IN",
        &[49, 106, 117, 122, 157, 182, 223, 14, 27, 59, 103, 115],
    ),
    (
        "FR",
        &[90, 2, 78, 82, 86, 88, 109, 176, 212, 213, 37, 5, 31, 77],
    ),
    (
        "GB",
        &[
            81, 86, 2, 31, 51, 62, 77, 78, 79, 82, 90, 109, 146, 151, 176, 178,
        ],
    ),
];

/// One demo country and the addresses found for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountryAddrs {
    /// ISO code, as in `CANDIDATES`.
    pub code: &'static str,
    /// Addresses the database places in `code`, at most [`PER_COUNTRY`], from distinct /16s.
    pub addrs: Vec<Ipv4Addr>,
}

/// For each demo country, up to [`PER_COUNTRY`] addresses `db` places there. A country whose
/// candidates all miss (a very different database) gets none; the caller skips it.
pub fn pick(db: &GeoDb) -> Vec<CountryAddrs> {
    CANDIDATES
        .iter()
        .map(|(code, blocks)| CountryAddrs {
            code,
            addrs: pick_country(db, code, blocks, PER_COUNTRY),
        })
        .collect()
}

/// The candidate first octets of `code` (ISO code, upper case), if it is a demo country.
pub fn blocks_of(code: &str) -> Option<&'static [u8]> {
    CANDIDATES
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, blocks)| *blocks)
}

/// Up to `n` addresses from distinct /16s in `blocks` that `db` places in `code`; bounded
/// ([`PROBES_PER_BLOCK`] lookups per block) and deterministic.
pub fn pick_country(db: &GeoDb, code: &str, blocks: &[u8], n: usize) -> Vec<Ipv4Addr> {
    let mut found: Vec<Ipv4Addr> = Vec::with_capacity(n);
    for &a in blocks {
        for i in 0..PROBES_PER_BLOCK {
            if found.len() >= n {
                return found;
            }
            let ip = probe(a, i);
            let distinct = !found.iter().any(|f| f.octets()[..2] == ip.octets()[..2]);
            if distinct && db.lookup(ip.into()).country_str() == Some(code) {
                found.push(ip);
            }
        }
    }
    found
}

/// The `i`-th probe in block `a.0.0.0/8`: second octets spread over the block, the rest
/// scattered (fixed, so the demo behaves the same on every run).
fn probe(a: u8, i: u8) -> Ipv4Addr {
    let b = i.wrapping_mul(8).wrapping_add(a % 8);
    let c = i.wrapping_mul(73).wrapping_add(a).wrapping_add(17);
    let d = 1 + i.wrapping_mul(29).wrapping_add(a) % 250;
    Ipv4Addr::new(a, b, c, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_demo_country_gets_addresses_the_database_places_there() {
        let db = GeoDb::bundled().unwrap();
        let picked = pick(&db);
        assert_eq!(picked.len(), CANDIDATES.len());
        for c in &picked {
            assert!(
                c.addrs.len() >= PER_COUNTRY / 2,
                "{}: only {:?}",
                c.code,
                c.addrs
            );
            for ip in &c.addrs {
                assert_eq!(db.lookup((*ip).into()).country_str(), Some(c.code));
                assert!(!ip.is_private() && !ip.is_loopback() && !ip.is_documentation());
            }
        }
    }

    #[test]
    fn probes_are_public_unicast() {
        for (_, blocks) in CANDIDATES {
            for &a in blocks {
                for i in 0..PROBES_PER_BLOCK {
                    let ip = probe(a, i);
                    assert!(ip.octets()[3] != 0 && !ip.is_multicast());
                }
            }
        }
    }
}
