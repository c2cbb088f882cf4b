//! `[geo]`: opens and checks the GeoIP databases, so a snapshot (and a reload) that names a
//! missing, unreadable or wrong kind of file is refused with the key that names it.
//!
//! Paths resolve against the config file's directory, as certificates do. Without
//! `country_db` the bundled database is used; without `asn_db` there is no ASN tagging. On a
//! reload, a database whose file has not changed is shared with the running snapshot instead
//! of being read again (`geo::db`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::super::file::RawGeo;
use super::Scope;
use crate::geo::{AsnDb, CountryDb, DbOrigin, GeoDb};

/// Builds the snapshot's `GeoDb`; `previous` is the running snapshot's, on a reload.
pub(super) fn build_geo(
    raw: &RawGeo,
    base_dir: &Path,
    previous: Option<&GeoDb>,
    s: &mut Scope<'_>,
) -> Option<GeoDb> {
    let previous_country = previous.map(GeoDb::country_db);
    let country = match &raw.country_db {
        // The bundled database never changes: a reload keeps the running reader.
        None => match previous_country {
            Some(db) if db.origin() == &DbOrigin::Bundled => Ok(Arc::clone(db)),
            _ => CountryDb::bundled()
                .map(Arc::new)
                .map_err(|e| e.to_string()),
        },
        Some(path) => resolve(path, base_dir)
            .and_then(|path| CountryDb::open(&path, previous_country).map_err(|e| e.to_string())),
    };
    let country = country.map_err(|reason| s.add("country_db", reason)).ok();
    let asn = match &raw.asn_db {
        None => Ok(None),
        Some(path) => resolve(path, base_dir).and_then(|path| {
            let reuse = previous.and_then(GeoDb::asn_db);
            AsnDb::open(&path, reuse)
                .map(Some)
                .map_err(|e| e.to_string())
        }),
    };
    let asn = asn.map_err(|reason| s.add("asn_db", reason)).ok();
    Some(GeoDb::new(country?, asn?))
}

/// The configured path joined to the config file's directory; an empty path is refused.
fn resolve(path: &Path, base_dir: &Path) -> Result<PathBuf, String> {
    if path.as_os_str().is_empty() {
        return Err("must not be empty (leave the key out for the default)".to_string());
    }
    Ok(base_dir.join(path))
}

// The tests live in validate/geo_tests.rs, beside this file.
#[cfg(test)]
#[path = "geo_tests.rs"]
mod tests;
