//! GeoIP fixture databases written by the tests (`mmdb-writer`), in the record shapes levee
//! accepts: GeoLite2 country (`country.iso_code`), ip-location-db (`country_code`) and
//! GeoLite2-ASN.

use std::path::Path;

use mmdb_writer::ipnet::IpNet;
use mmdb_writer::{Value, Writer};

/// Writes a database of `database_type` to `path`, mapping each network to its record.
pub fn write_db(
    path: &Path,
    database_type: &str,
    records: impl IntoIterator<Item = (IpNet, Value)>,
) {
    let mut writer = Writer::new(database_type);
    for (net, value) in records {
        writer.insert_value(net, value).unwrap();
    }
    std::fs::write(path, writer.to_bytes().unwrap()).unwrap();
}

/// A GeoLite2-Country record: `country.iso_code` (and `registered_country`).
pub fn nested_country(code: &str) -> Value {
    let country = Value::map([
        ("iso_code", Value::from(code)),
        ("geoname_id", 1_u32.into()),
    ]);
    Value::map([
        ("country", country.clone()),
        ("registered_country", country),
    ])
}

/// An ip-location-db record: a top-level `country_code`.
pub fn flat_country(code: &str) -> Value {
    Value::map([("country_code", code)])
}

/// A GeoLite2-ASN record.
pub fn asn_record(number: u32, org: &str) -> Value {
    Value::map([
        ("autonomous_system_number", Value::from(number)),
        ("autonomous_system_organization", Value::from(org)),
    ])
}
