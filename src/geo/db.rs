//! Opened GeoIP databases ([`CountryDb`], [`AsnDb`]), the pair a snapshot holds ([`GeoDb`]),
//! and the per-address lookup ([`GeoInfo`]).
//!
//! Files are read into memory, not memory-mapped: maxminddb's `open_mmap` is `unsafe` (a file
//! truncated or rewritten in place while mapped is undefined behaviour, in practice SIGBUS),
//! and this crate forbids `unsafe`. A reload that finds a file unchanged (same device, inode,
//! size, mtime and ctime) shares the previous snapshot's reader instead of reading it again.
//! The bundled databases ([`BUNDLED_COUNTRY_DB`], [`BUNDLED_ASN_DB`]) are not copied either:
//! they sit in the executable's read-only data, and only the pages a lookup walks are read in
//! (file-backed and clean, shared by every levee process running the same binary).
//!
//! A database is checked when it is opened: it must parse as a MaxMind DB, and some record
//! must have the expected shape (probed at well-known public addresses, then among the first
//! networks of the file), so a file of the wrong kind is refused at load, not discovered as
//! "no country" for every client.
//!
//! Lookups decode in place: strings borrow from the database, nothing is allocated.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use maxminddb::{LookupResult, MaxMindDbError, PathElement, Reader, WithinOptions};
use serde::Deserialize;

/// The bundled country database (ip-location-db's iptoasn-country, PDDL; see data/README.md).
pub static BUNDLED_COUNTRY_DB: &[u8] = include_bytes!("../../data/iptoasn-country.mmdb");

/// How the bundled country database is named in messages.
pub const BUNDLED_COUNTRY_DB_NAME: &str = "bundled iptoasn-country database";

/// The bundled ASN database (ip-location-db's asn: RouteViews, NRO and DB-IP data, CC BY 4.0,
/// converted to MaxMind DB by data/build-asn-mmdb.py; see data/README.md).
pub static BUNDLED_ASN_DB: &[u8] = include_bytes!("../../data/ip-location-db-asn.mmdb");

/// How the bundled ASN database is named in messages.
pub const BUNDLED_ASN_DB_NAME: &str = "bundled ip-location-db asn database";

/// Addresses whose records are checked first for the database's shape: public resolvers,
/// present in any world-wide database.
const PROBES: [IpAddr; 6] = [
    IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8)),
    IpAddr::V4(Ipv4Addr::new(1, 1, 1, 1)),
    IpAddr::V4(Ipv4Addr::new(9, 9, 9, 9)),
    IpAddr::V4(Ipv4Addr::new(193, 0, 6, 139)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x4860, 0x4860, 0, 0, 0, 0, 0x8888)),
    IpAddr::V6(Ipv6Addr::new(0x2606, 0x4700, 0x4700, 0, 0, 0, 0, 0x1111)),
];

/// How many networks with data are looked at, after the probes, before a database is declared
/// to have the wrong shape (a regional or test database may hold none of the probes).
const SCAN_LIMIT: usize = 1024;

const NESTED_COUNTRY: [PathElement<'static>; 2] =
    [PathElement::Key("country"), PathElement::Key("iso_code")];
const FLAT_COUNTRY: [PathElement<'static>; 1] = [PathElement::Key("country_code")];

/// Why a database cannot be used. The messages name the file; the caller adds the key.
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    /// The file cannot be opened or read.
    #[error("cannot open \"{path}\": {source}")]
    Open {
        /// The path as resolved.
        path: String,
        /// The I/O error.
        source: io::Error,
    },
    /// The file is not a valid MaxMind DB.
    #[error("\"{path}\" is not a MaxMind DB file: {source}")]
    NotMmdb {
        /// The path as resolved, or the bundled database's name.
        path: String,
        /// The reader's error.
        source: MaxMindDbError,
    },
    /// A valid MaxMind DB, but its records do not have the fields levee reads.
    #[error("\"{path}\" is not {expected} (database type \"{database_type}\"): {detail}")]
    WrongShape {
        /// The path as resolved.
        path: String,
        /// What was expected, e.g. "a country database".
        expected: &'static str,
        /// The database type from the file's metadata.
        database_type: String,
        /// Which fields were looked for, and where.
        detail: String,
    },
}

/// Where a database was loaded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbOrigin {
    /// A database compiled into the binary, by its name in messages.
    Bundled(&'static str),
    /// A file, as resolved against the config file's directory.
    File(PathBuf),
}

impl fmt::Display for DbOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbOrigin::Bundled(name) => f.write_str(name),
            DbOrigin::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// The record layout of a country database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountryShape {
    /// MaxMind GeoIP2/GeoLite2 Country or City: `country.iso_code`.
    Nested,
    /// ip-location-db and similar: a top-level `country_code`.
    Flat,
}

/// What a lookup found. Strings borrow from the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GeoInfo<'a> {
    /// ISO 3166-1 alpha-2 code, upper case; `None` when the address is not in the database.
    pub country: Option<[u8; 2]>,
    /// Autonomous system number; `None` without an ASN database or a record.
    pub asn: Option<u32>,
    /// Autonomous system organisation, as written in the ASN database.
    pub asn_org: Option<&'a str>,
}

impl GeoInfo<'_> {
    /// The country code as text (`"DE"`).
    pub fn country_str(&self) -> Option<&str> {
        self.country
            .as_ref()
            .and_then(|c| std::str::from_utf8(c).ok())
    }
}

/// The GeoIP databases of one snapshot: a country database (always) and an ASN database
/// (unless turned off). Cheap to clone.
#[derive(Debug, Clone)]
pub struct GeoDb {
    country: Arc<CountryDb>,
    asn: Option<Arc<AsnDb>>,
}

impl GeoDb {
    /// Pairs opened databases.
    pub fn new(country: Arc<CountryDb>, asn: Option<Arc<AsnDb>>) -> Self {
        Self { country, asn }
    }

    /// The bundled country and ASN databases.
    pub fn bundled() -> Result<Self, GeoError> {
        let asn = Arc::new(AsnDb::bundled()?);
        Ok(Self::new(Arc::new(CountryDb::bundled()?), Some(asn)))
    }

    /// Country and ASN of `ip`. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, as a dual-stack
    /// socket reports IPv4 clients) is looked up as IPv4. Never allocates; a record that does
    /// not decode counts as absent.
    pub fn lookup(&self, ip: IpAddr) -> GeoInfo<'_> {
        let ip = ip.to_canonical();
        let (asn, asn_org) = self
            .asn
            .as_ref()
            .map_or((None, None), |db| db.lookup_canonical(ip));
        GeoInfo {
            country: self.country.lookup_canonical(ip),
            asn,
            asn_org,
        }
    }

    /// The country database.
    pub fn country_db(&self) -> &Arc<CountryDb> {
        &self.country
    }

    /// The ASN database, when configured.
    pub fn asn_db(&self) -> Option<&Arc<AsnDb>> {
        self.asn.as_ref()
    }
}

/// An opened and checked country database.
#[derive(Debug)]
pub struct CountryDb {
    db: Mmdb,
    shape: CountryShape,
}

impl CountryDb {
    /// The database compiled into the binary (no copy: the reader borrows the static bytes).
    pub fn bundled() -> Result<Self, GeoError> {
        let origin = DbOrigin::Bundled(BUNDLED_COUNTRY_DB_NAME);
        Self::checked(Mmdb::from_bytes(
            DbBytes::Static(BUNDLED_COUNTRY_DB),
            origin,
            None,
        )?)
    }

    /// Opens and checks the file at `path`. When `reuse` was opened from the same path and the
    /// file has not changed since, it is returned instead of reading the file again.
    pub fn open(path: &Path, reuse: Option<&Arc<CountryDb>>) -> Result<Arc<Self>, GeoError> {
        open_or_reuse(path, reuse, |c| &c.db, Self::checked)
    }

    fn checked(db: Mmdb) -> Result<Self, GeoError> {
        let shape = db.find(|record| {
            let nested = country_code(record, &NESTED_COUNTRY).map(|_| CountryShape::Nested);
            nested.or_else(|| country_code(record, &FLAT_COUNTRY).map(|_| CountryShape::Flat))
        });
        match shape {
            Some(shape) => Ok(Self { db, shape }),
            None => Err(db.wrong_shape(
                "a country database",
                "no record has `country.iso_code` (GeoIP2/GeoLite2) or `country_code` \
                 (ip-location-db)",
            )),
        }
    }

    /// The record layout found when the database was opened.
    pub fn shape(&self) -> CountryShape {
        self.shape
    }

    /// Where the database came from.
    pub fn origin(&self) -> &DbOrigin {
        &self.db.origin
    }

    /// The file's metadata (database type, build time, IP version).
    pub fn metadata(&self) -> &maxminddb::Metadata {
        self.db.reader.metadata()
    }

    /// The country of `ip`, upper-case ISO alpha-2.
    pub fn country(&self, ip: IpAddr) -> Option<[u8; 2]> {
        self.lookup_canonical(ip.to_canonical())
    }

    fn lookup_canonical(&self, ip: IpAddr) -> Option<[u8; 2]> {
        let record = self.db.reader.lookup(ip).ok()?;
        match self.shape {
            CountryShape::Nested => country_code(&record, &NESTED_COUNTRY),
            CountryShape::Flat => country_code(&record, &FLAT_COUNTRY),
        }
    }
}

/// An opened and checked ASN database (GeoLite2-ASN shape).
#[derive(Debug)]
pub struct AsnDb {
    db: Mmdb,
}

/// The fields of a GeoLite2-ASN record (the bundled database has the same shape); the
/// organisation borrows from the database.
#[derive(Deserialize)]
struct AsnRecord<'a> {
    autonomous_system_number: Option<u32>,
    #[serde(borrow)]
    autonomous_system_organization: Option<&'a str>,
}

impl AsnDb {
    /// The ASN database compiled into the binary (no copy: the reader borrows the static bytes).
    pub fn bundled() -> Result<Self, GeoError> {
        let origin = DbOrigin::Bundled(BUNDLED_ASN_DB_NAME);
        Self::checked(Mmdb::from_bytes(
            DbBytes::Static(BUNDLED_ASN_DB),
            origin,
            None,
        )?)
    }

    /// Opens and checks the file at `path`, or returns `reuse` when it is the same unchanged
    /// file (see [`CountryDb::open`]).
    pub fn open(path: &Path, reuse: Option<&Arc<AsnDb>>) -> Result<Arc<Self>, GeoError> {
        open_or_reuse(path, reuse, |a| &a.db, Self::checked)
    }

    fn checked(db: Mmdb) -> Result<Self, GeoError> {
        let found = db.find(|record| asn_record(record).and_then(|r| r.autonomous_system_number));
        if found.is_none() {
            let detail = "no record has `autonomous_system_number` (GeoLite2-ASN shape)";
            return Err(db.wrong_shape("an ASN database", detail));
        }
        Ok(Self { db })
    }

    /// Where the database came from.
    pub fn origin(&self) -> &DbOrigin {
        &self.db.origin
    }

    /// The file's metadata (database type, build time, IP version).
    pub fn metadata(&self) -> &maxminddb::Metadata {
        self.db.reader.metadata()
    }

    /// The autonomous system number and organisation of `ip`.
    pub fn asn(&self, ip: IpAddr) -> (Option<u32>, Option<&str>) {
        self.lookup_canonical(ip.to_canonical())
    }

    fn lookup_canonical(&self, ip: IpAddr) -> (Option<u32>, Option<&str>) {
        let record = self.db.reader.lookup(ip).ok();
        match record.as_ref().and_then(asn_record) {
            Some(r) => (r.autonomous_system_number, r.autonomous_system_organization),
            None => (None, None),
        }
    }
}

fn asn_record<'a>(record: &LookupResult<'a, DbBytes>) -> Option<AsnRecord<'a>> {
    record.decode::<AsnRecord<'a>>().ok().flatten()
}

/// The two-letter code at `path`, upper-cased; anything else (absent, not a string, not two
/// ASCII letters) is `None`.
fn country_code(record: &LookupResult<'_, DbBytes>, path: &[PathElement<'_>]) -> Option<[u8; 2]> {
    let code: &str = record.decode_path(path).ok().flatten()?;
    match code.as_bytes() {
        &[a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
            Some([a.to_ascii_uppercase(), b.to_ascii_uppercase()])
        }
        _ => None,
    }
}

/// The bytes of a database: the bundled static data or a file read into memory.
enum DbBytes {
    Static(&'static [u8]),
    Owned(Vec<u8>),
}

impl AsRef<[u8]> for DbBytes {
    fn as_ref(&self) -> &[u8] {
        match self {
            DbBytes::Static(b) => b,
            DbBytes::Owned(b) => b,
        }
    }
}

impl fmt::Debug for DbBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes", self.as_ref().len())
    }
}

/// What identifies a file's content without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    modified: Option<SystemTime>,
    ctime: (i64, i64),
}

impl FileStamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            modified: meta.modified().ok(),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// One opened MaxMind DB with where it came from.
#[derive(Debug)]
struct Mmdb {
    reader: Reader<DbBytes>,
    origin: DbOrigin,
    stamp: Option<FileStamp>,
}

impl Mmdb {
    fn from_bytes(
        bytes: DbBytes,
        origin: DbOrigin,
        stamp: Option<FileStamp>,
    ) -> Result<Self, GeoError> {
        let reader = Reader::from_source(bytes).map_err(|source| GeoError::NotMmdb {
            path: origin.to_string(),
            source,
        })?;
        Ok(Self {
            reader,
            origin,
            stamp,
        })
    }

    /// The first `Some` that `f` gives for a record: at the probe addresses, then at the first
    /// `SCAN_LIMIT` networks that have data.
    fn find<T>(&self, f: impl Fn(&LookupResult<'_, DbBytes>) -> Option<T>) -> Option<T> {
        let probed = PROBES
            .iter()
            .filter_map(|&ip| self.reader.lookup(ip).ok())
            .find_map(|record| f(&record));
        if probed.is_some() {
            return probed;
        }
        let networks = self.reader.networks(WithinOptions::default()).ok()?;
        networks
            .take(SCAN_LIMIT)
            .map_while(Result::ok)
            .find_map(|record| f(&record))
    }

    fn wrong_shape(&self, expected: &'static str, detail: &str) -> GeoError {
        GeoError::WrongShape {
            path: self.origin.to_string(),
            expected,
            database_type: self.reader.metadata().database_type.clone(),
            detail: detail.to_string(),
        }
    }
}

/// Opens the database file at `path` and checks it with `check`, unless it is the unchanged
/// file `reuse` was opened from. The stamp is taken from the open handle, so it describes the
/// file that was read even if the path is replaced meanwhile.
fn open_or_reuse<D>(
    path: &Path,
    reuse: Option<&Arc<D>>,
    mmdb: impl Fn(&D) -> &Mmdb,
    check: impl FnOnce(Mmdb) -> Result<D, GeoError>,
) -> Result<Arc<D>, GeoError> {
    let open_error = |source| GeoError::Open {
        path: path.display().to_string(),
        source,
    };
    let mut file = File::open(path).map_err(open_error)?;
    let meta = file.metadata().map_err(open_error)?;
    if meta.is_dir() {
        return Err(open_error(io::Error::other("is a directory")));
    }
    let stamp = FileStamp::of(&meta);
    let origin = DbOrigin::File(path.to_path_buf());
    let unchanged = reuse.filter(|r| mmdb(r).origin == origin && mmdb(r).stamp == Some(stamp));
    if let Some(previous) = unchanged {
        return Ok(Arc::clone(previous));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.read_to_end(&mut bytes).map_err(open_error)?;
    let db = Mmdb::from_bytes(DbBytes::Owned(bytes), origin, Some(stamp))?;
    check(db).map(Arc::new)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn bundled_database_tags_public_addresses() {
        let geo = GeoDb::bundled().unwrap();
        assert_eq!(geo.country_db().shape(), CountryShape::Flat);
        let bundled = DbOrigin::Bundled(BUNDLED_COUNTRY_DB_NAME);
        assert_eq!(geo.country_db().origin(), &bundled);
        let info = geo.lookup(ip("8.8.8.8"));
        assert_eq!(info.country_str(), Some("US"));
        assert_eq!((info.asn, info.asn_org), (Some(15169), Some("Google LLC")));
        assert_eq!(geo.lookup(ip("193.0.6.139")).country, Some(*b"NL"));
        assert_eq!(geo.lookup(ip("2001:4860:4860::8888")).country, Some(*b"US"));
    }

    #[test]
    fn bundled_asn_database_covers_ipv4_and_ipv6() {
        let geo = GeoDb::bundled().unwrap();
        let asn = geo.asn_db().unwrap();
        assert_eq!(asn.origin(), &DbOrigin::Bundled(BUNDLED_ASN_DB_NAME));
        assert_eq!(asn.metadata().ip_version, 6);
        let cloudflare = (Some(13335), Some("Cloudflare, Inc."));
        assert_eq!(asn.asn(ip("1.1.1.1")), cloudflare);
        assert_eq!(asn.asn(ip("2606:4700:4700::1111")), cloudflare);
        assert_eq!(asn.asn(ip("2001:4860:4860::8888")).0, Some(15169));
        let info = geo.lookup(ip("200.147.0.1"));
        assert_eq!((info.country_str(), info.asn), (Some("BR"), Some(7162)));
    }

    #[test]
    fn mapped_ipv4_is_looked_up_as_ipv4() {
        let geo = GeoDb::bundled().unwrap();
        let info = geo.lookup(ip("::ffff:8.8.8.8"));
        assert_eq!((info.country, info.asn), (Some(*b"US"), Some(15169)));
    }

    #[test]
    fn loopback_and_private_addresses_have_no_country() {
        let geo = GeoDb::bundled().unwrap();
        for addr in ["127.0.0.1", "10.1.2.3", "::1", "192.0.2.1"] {
            assert_eq!(geo.lookup(ip(addr)), GeoInfo::default(), "{addr}");
        }
    }
}
