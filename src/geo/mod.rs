//! GeoIP: the country and ASN databases of a snapshot, and what an address is tagged with.
//!
//! The databases are MaxMind DB (`.mmdb`) files. They are opened and checked while a snapshot
//! is built (`config::validate`), so a snapshot that exists holds usable readers and a reload
//! naming a bad file is refused. Both default to snapshots compiled into the binary: the
//! country database to iptoasn-country (`data/iptoasn-country.mmdb`, public domain), the ASN
//! database to ip-location-db's asn (`data/ip-location-db-asn.mmdb`, CC BY 4.0), which
//! `[geo] asn_db = ""` turns off.
//!
//! - [`db`]: [`GeoDb`] (the readers of one snapshot) and its allocation-free
//!   [`GeoDb::lookup`].
//! - [`country`]: two-letter codes and the dense `u16` index per-country stats use.
//! - [`tag`](mod@tag): what a connection is tagged with ([`ClientTag`]: country slot, ASN, upstream
//!   header values), looked up once per connection, and the `[geo]` tagging settings.

pub mod country;
pub mod db;
pub mod tag;

pub use db::{AsnDb, CountryDb, CountryShape, DbOrigin, GeoDb, GeoError, GeoInfo};
pub use tag::{ClientTag, GeoSettings, tag};
