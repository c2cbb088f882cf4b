//! `levee geo lookup IP [--config FILE] [--json]`: what levee would tag a client address with.
//!
//! With `--config`, the config is loaded as `levee run` would load it (so its `[geo]`
//! databases, `enabled` and header names apply, and an invalid config is refused the same
//! way); without it, the bundled country and ASN databases and the default settings are used.

use std::net::IpAddr;
use std::path::Path;

use anyhow::anyhow;
use serde_json::json;

use crate::app;
use crate::geo::{DbOrigin, GeoDb, GeoSettings, country};

/// Runs `levee geo lookup`; prints to stdout, returns the exit code (0).
pub(super) fn lookup(ip: IpAddr, config: Option<&Path>, json: bool) -> anyhow::Result<i32> {
    let (geo, settings) = match config {
        Some(path) => {
            let (snapshot, _) = app::load(path)?;
            (snapshot.geo.clone(), snapshot.geo_settings.clone())
        }
        None => (
            GeoDb::bundled().map_err(|e| anyhow!("{e}"))?,
            GeoSettings::default(),
        ),
    };
    let report = Report::new(&geo, &settings, ip);
    if json {
        println!("{}", report.json());
    } else {
        print!("{}", report.text());
    }
    Ok(0)
}

/// What one lookup found, and where.
struct Report {
    ip: IpAddr,
    enabled: bool,
    /// The tag as levee would set it (`ZZ` / no ASN when disabled).
    country: &'static str,
    country_index: u16,
    asn: Option<u32>,
    asn_org: Option<String>,
    /// The code the database holds, even one levee's country table does not list.
    country_in_db: Option<String>,
    country_db: DbOrigin,
    asn_db: Option<DbOrigin>,
    country_header: String,
    asn_header: String,
}

impl Report {
    fn new(geo: &GeoDb, settings: &GeoSettings, ip: IpAddr) -> Self {
        let info = geo.lookup(ip);
        let tag = settings.tag(geo, ip);
        Self {
            ip,
            enabled: settings.enabled,
            country: country::code(tag.country),
            country_index: tag.country.0,
            asn: tag.asn,
            asn_org: info.asn_org.filter(|_| settings.enabled).map(str::to_owned),
            country_in_db: info.country_str().map(str::to_owned),
            country_db: geo.country_db().origin().clone(),
            asn_db: geo.asn_db().map(|db| db.origin().clone()),
            country_header: settings.country_header.to_string(),
            asn_header: settings.asn_header.to_string(),
        }
    }

    /// Which database answered for the country: the one that holds the address, or why
    /// none did.
    fn country_source(&self) -> String {
        match (&self.country_in_db, self.enabled) {
            (_, false) => format!("not looked up ([geo] enabled = false); {}", self.country_db),
            (Some(_), true) => self.country_db.to_string(),
            (None, true) => format!("no record in {}", self.country_db),
        }
    }

    fn asn_source(&self) -> String {
        match (&self.asn_db, self.asn, self.enabled) {
            (None, _, _) => "none ([geo] asn_db = \"\")".to_string(),
            (Some(db), _, false) => format!("not looked up ([geo] enabled = false); {db}"),
            (Some(db), Some(_), true) => db.to_string(),
            (Some(db), None, true) => format!("no record in {db}"),
        }
    }

    fn text(&self) -> String {
        let unknown = |v: Option<String>| v.unwrap_or_else(|| "unknown".to_string());
        let mut out = format!("{}\n", self.ip);
        out += &format!(
            "  country:    {} (index {})\n",
            self.country, self.country_index
        );
        let differs = |c: &&str| self.enabled && *c != self.country;
        if let Some(code) = self.country_in_db.as_deref().filter(differs) {
            out += &format!("              the database says {code}, which levee counts as ZZ\n");
        }
        out += &format!(
            "  asn:        {}\n",
            unknown(self.asn.map(|a| a.to_string()))
        );
        out += &format!("  org:        {}\n", unknown(self.asn_org.clone()));
        out += &format!("  country db: {}\n", self.country_source());
        out += &format!("  asn db:     {}\n", self.asn_source());
        out += &format!("  upstream:   {}: {}\n", self.country_header, self.country);
        if let Some(asn) = self.asn {
            out += &format!("              {}: {asn}\n", self.asn_header);
        }
        out
    }

    fn json(&self) -> serde_json::Value {
        let origin = |o: &DbOrigin| match o {
            DbOrigin::Bundled(name) => json!({ "bundled": true, "name": name }),
            DbOrigin::File(path) => json!({ "bundled": false, "path": path.display().to_string() }),
        };
        let mut headers = serde_json::Map::new();
        headers.insert(self.country_header.clone(), json!(self.country));
        if let Some(asn) = self.asn {
            headers.insert(self.asn_header.clone(), json!(asn.to_string()));
        }
        json!({
            "ip": self.ip.to_string(),
            "enabled": self.enabled,
            "country": self.country,
            "country_index": self.country_index,
            "country_in_db": self.country_in_db,
            "asn": self.asn,
            "asn_org": self.asn_org,
            "country_db": origin(&self.country_db),
            "country_source": self.country_source(),
            "asn_db": self.asn_db.as_ref().map(origin),
            "asn_source": self.asn_source(),
            "headers": headers,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn bundled_report_for_a_public_and_a_private_address() {
        let geo = GeoDb::bundled().unwrap();
        let on = GeoSettings::default();
        let r = Report::new(&geo, &on, "8.8.8.8".parse().unwrap());
        let text = r.text();
        assert!(text.contains("country:    US (index "), "{text}");
        assert!(text.contains("asn:        15169\n"), "{text}");
        assert!(text.contains("org:        Google LLC\n"), "{text}");
        assert!(text.contains("bundled iptoasn-country database"), "{text}");
        assert!(
            text.contains("asn db:     bundled ip-location-db asn"),
            "{text}"
        );
        assert!(text.contains("x-client-country: US"), "{text}");
        assert!(text.contains("x-client-asn: 15169"), "{text}");
        let j = r.json();
        assert_eq!(j["country"], "US");
        assert_eq!(j["country_db"]["bundled"], true);
        assert_eq!(j["asn_db"]["bundled"], true);
        assert_eq!(j["headers"]["x-client-country"], "US");
        assert_eq!(j["asn"], 15169);
        assert_eq!(j["asn_org"], "Google LLC");

        let no_asn = GeoDb::new(Arc::clone(geo.country_db()), None);
        let r = Report::new(&no_asn, &on, "8.8.8.8".parse().unwrap());
        assert_eq!(
            (r.asn, r.asn_source().as_str()),
            (None, "none ([geo] asn_db = \"\")")
        );

        let r = Report::new(&geo, &on, "10.0.0.1".parse().unwrap());
        assert_eq!((r.country, r.country_index), ("ZZ", 0));
        assert!(r.country_source().starts_with("no record in"));

        let off = GeoSettings {
            enabled: false,
            ..GeoSettings::default()
        };
        let r = Report::new(&geo, &off, "8.8.8.8".parse().unwrap());
        assert_eq!(r.country, "ZZ");
        assert_eq!(r.country_in_db.as_deref(), Some("US"));
        assert!(r.country_source().contains("enabled = false"));
    }
}
