//! `[geo]`: opens and checks the GeoIP databases, so a snapshot (and a reload) that names a
//! missing, unreadable or wrong kind of file is refused with the key that names it.
//!
//! Paths resolve against the config file's directory, as certificates do. Without
//! `country_db` or `asn_db` the bundled database of that kind is used; `asn_db = ""` means no
//! ASN database (no ASN tagging). On a reload, a bundled database, or one whose file has not
//! changed, is shared with the running snapshot instead of being read again (`geo::db`).
//!
//! The tagging settings (`enabled`, `country_header`, `asn_header`) become a
//! [`GeoSettings`]; the header names are built here, once per snapshot.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::HeaderName;

use super::super::file::RawGeo;
use super::Scope;
use crate::geo::tag::{DEFAULT_ASN_HEADER, DEFAULT_COUNTRY_HEADER};
use crate::geo::{AsnDb, CountryDb, DbOrigin, GeoDb, GeoSettings};

/// Headers levee itself sets, removes or frames the request with upstream: a tag header of
/// one of these names would break forwarding or be dropped.
const RESERVED_HEADERS: [&str; 15] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "via",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
];

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
            Some(db) if matches!(db.origin(), DbOrigin::Bundled(_)) => Ok(Arc::clone(db)),
            _ => CountryDb::bundled()
                .map(Arc::new)
                .map_err(|e| e.to_string()),
        },
        Some(path) => resolve(path, base_dir)
            .and_then(|path| CountryDb::open(&path, previous_country).map_err(|e| e.to_string())),
    };
    let country = country.map_err(|reason| s.add("country_db", reason)).ok();
    let previous_asn = previous.and_then(GeoDb::asn_db);
    let asn = match &raw.asn_db {
        None => match previous_asn {
            Some(db) if matches!(db.origin(), DbOrigin::Bundled(_)) => Ok(Some(Arc::clone(db))),
            _ => AsnDb::bundled()
                .map(|db| Some(Arc::new(db)))
                .map_err(|e| e.to_string()),
        },
        // The way to turn the bundled default off.
        Some(path) if path.as_os_str().is_empty() => Ok(None),
        Some(path) => resolve(path, base_dir).and_then(|path| {
            AsnDb::open(&path, previous_asn)
                .map(Some)
                .map_err(|e| e.to_string())
        }),
    };
    let asn = asn.map_err(|reason| s.add("asn_db", reason)).ok();
    Some(GeoDb::new(country?, asn?))
}

/// Builds the snapshot's `GeoSettings` (`[geo] enabled`, `country_header`, `asn_header`).
/// Errors are added to `s`; the value returned then is only a placeholder.
pub(super) fn geo_settings(
    raw: &RawGeo,
    previous: Option<&GeoSettings>,
    s: &mut Scope<'_>,
) -> GeoSettings {
    let defaults = GeoSettings::default();
    let country = raw.country_header.as_deref().and_then(|name| {
        let reuse = previous.map(|p| &p.country_header);
        header_name(name, reuse)
            .map_err(|e| s.add("country_header", e))
            .ok()
    });
    let asn = raw.asn_header.as_deref().and_then(|name| {
        let reuse = previous.map(|p| &p.asn_header);
        header_name(name, reuse)
            .map_err(|e| s.add("asn_header", e))
            .ok()
    });
    let settings = GeoSettings {
        enabled: raw.enabled.unwrap_or(true),
        country_header: country.unwrap_or(defaults.country_header),
        asn_header: asn.unwrap_or(defaults.asn_header),
    };
    if settings.country_header == settings.asn_header {
        s.add(
            "asn_header",
            format!(
                "must differ from country_header (both are \"{}\")",
                settings.asn_header
            ),
        );
    }
    settings
}

/// A configured header name, checked and lower-cased.
///
/// The defaults are `&'static str` names, whose clones are plain copies. A custom name is
/// shared bytes, so each request's clone writes one reference count; a reload that keeps the
/// name reuses the running snapshot's (`reuse`). Nothing is leaked: a reload may repeat this
/// any number of times (fuzz target `config` found the earlier `Box::leak`).
fn header_name(name: &str, reuse: Option<&HeaderName>) -> Result<HeaderName, String> {
    let parsed = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
        format!("invalid header name \"{name}\" (letters, digits and !#$%&'*+-.^_`|~ only)")
    })?;
    let lower = parsed.as_str();
    if RESERVED_HEADERS.contains(&lower) {
        return Err(format!(
            "\"{name}\" is a header levee sets or removes itself; choose another name"
        ));
    }
    if let Some(same) = reuse.filter(|r| r.as_str() == lower) {
        return Ok(same.clone());
    }
    for default in [DEFAULT_COUNTRY_HEADER, DEFAULT_ASN_HEADER] {
        if lower == default {
            return Ok(HeaderName::from_static(default));
        }
    }
    Ok(parsed)
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
