//! Client addresses per country for the surge tool: many distinct IPv4 addresses that the
//! bundled GeoIP database places in the country, so per-IP caps do not dominate a run.
//!
//! Seeds come from the demo's probing ([`crate::demo::addresses::pick_country`]: one address
//! in each of several /16s); each seed's /24 is then walked and every address the database
//! also places in the country is kept. Deterministic and bounded (at most 254 lookups per
//! seed). The addresses only appear inside PROXY headers sent over loopback.

use std::net::Ipv4Addr;

use anyhow::bail;

use crate::demo::addresses::{CANDIDATES, blocks_of, pick_country};
use crate::geo::GeoDb;

/// Addresses wanted per country.
pub const PER_COUNTRY: usize = 1024;
/// Seeds (distinct /16s) per country.
const SEEDS: usize = 16;

/// Up to [`PER_COUNTRY`] addresses `db` places in `code`; an error when the country has no
/// candidate blocks (the demo countries only) or none of them maps there.
pub fn for_country(db: &GeoDb, code: &str) -> anyhow::Result<Vec<Ipv4Addr>> {
    let Some(blocks) = blocks_of(code) else {
        let known: Vec<&str> = CANDIDATES.iter().map(|(c, _)| *c).collect();
        bail!(
            "no address blocks known for {code}; countries: {}",
            known.join(",")
        );
    };
    let seeds = pick_country(db, code, blocks, SEEDS);
    if seeds.is_empty() {
        bail!("the GeoIP database places none of the candidate addresses in {code}");
    }
    let mut out = Vec::with_capacity(PER_COUNTRY);
    for host in 1..=254u8 {
        for seed in &seeds {
            if out.len() >= PER_COUNTRY {
                return Ok(out);
            }
            let [a, b, c, _] = seed.octets();
            let ip = Ipv4Addr::new(a, b, c, host);
            if db.lookup(ip.into()).country_str() == Some(code) {
                out.push(ip);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn many_distinct_addresses_all_in_the_country() {
        let db = GeoDb::bundled().unwrap();
        for code in ["DE", "JP", "US", "FR", "BR"] {
            let v = for_country(&db, code).unwrap();
            assert!(v.len() >= 256, "{code}: {}", v.len());
            let mut d = v.clone();
            d.sort();
            d.dedup();
            assert_eq!(d.len(), v.len());
            assert!(
                v.iter()
                    .all(|ip| db.lookup((*ip).into()).country_str() == Some(code))
            );
        }
        assert!(for_country(&db, "ZZ").is_err());
    }
}
