//! Country codes and their dense index: the `u16` every per-country stats array is indexed by.
//!
//! Index 0 is `ZZ` (unknown or unassigned). Then come the 249 ISO 3166-1 alpha-2 codes in
//! alphabetical order, then the codes some GeoIP databases use beyond ISO: `XK` (Kosovo) and
//! the old MaxMind region codes `EU` and `AP`. Mapping a code to its index is one lookup in a
//! 26 x 26 table built at compile time: no hashing, no allocation.

use crate::labels::CountryIdx;

/// The ISO 3166-1 alpha-2 codes, sorted.
const ISO_CODES: [&str; 249] = [
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ",
    "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS",
    "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN",
    "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE",
    "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF",
    "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM",
    "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM",
    "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC",
    "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK",
    "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA",
    "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG",
    "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW",
    "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS",
    "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO",
    "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI",
    "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW",
];

/// Codes seen in GeoIP databases that are not ISO 3166-1 assignments.
const EXTRA_CODES: [&str; 3] = ["XK", "EU", "AP"];

/// Number of country slots: `ZZ`, the ISO codes and the extras.
pub const COUNTRY_COUNT: usize = 1 + ISO_CODES.len() + EXTRA_CODES.len();

/// The index of `ZZ`: unknown country (private, reserved or unlisted addresses).
pub const UNKNOWN: CountryIdx = CountryIdx(0);

/// `code -> index` for every pair of upper-case letters (0 = `ZZ` for codes not listed).
const BY_LETTERS: [u16; 26 * 26] = by_letters();

const fn by_letters() -> [u16; 26 * 26] {
    let mut table = [0u16; 26 * 26];
    let mut i = 0;
    while i < COUNTRY_COUNT - 1 {
        let code = if i < ISO_CODES.len() {
            ISO_CODES[i].as_bytes()
        } else {
            EXTRA_CODES[i - ISO_CODES.len()].as_bytes()
        };
        let slot = (code[0] - b'A') as usize * 26 + (code[1] - b'A') as usize;
        table[slot] = (i + 1) as u16;
        i += 1;
    }
    table
}

/// The index of a two-letter country code (either case); `UNKNOWN` for anything else.
pub fn index(code: [u8; 2]) -> CountryIdx {
    let [a, b] = code.map(|c| c.to_ascii_uppercase());
    if !a.is_ascii_uppercase() || !b.is_ascii_uppercase() {
        return UNKNOWN;
    }
    let slot = usize::from(a - b'A') * 26 + usize::from(b - b'A');
    CountryIdx(BY_LETTERS.get(slot).copied().unwrap_or(0))
}

/// The index of a code given as text (`"BR"`); `UNKNOWN` unless it is two letters listed.
pub fn index_of(code: &str) -> CountryIdx {
    match code.as_bytes() {
        [a, b] => index([*a, *b]),
        _ => UNKNOWN,
    }
}

/// The code of an index (`"ZZ"` for 0 and for indexes out of range).
pub fn code(idx: CountryIdx) -> &'static str {
    let i = usize::from(idx.0);
    if i == 0 {
        return "ZZ";
    }
    ISO_CODES
        .get(i - 1)
        .or_else(|| EXTRA_CODES.get(i - 1 - ISO_CODES.len()))
        .copied()
        .unwrap_or("ZZ")
}

/// Every index, `ZZ` first.
pub fn all() -> impl Iterator<Item = CountryIdx> {
    (0..COUNTRY_COUNT as u16).map(CountryIdx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        assert_eq!(COUNTRY_COUNT, 253);
        for idx in all() {
            let c = code(idx);
            if idx == UNKNOWN {
                assert_eq!(c, "ZZ");
            } else {
                assert_eq!(index_of(c), idx, "{c}");
            }
        }
        assert!(ISO_CODES.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn known_and_unknown_codes() {
        assert_eq!(code(index(*b"BR")), "BR");
        assert_eq!(code(index(*b"br")), "BR");
        assert_eq!(code(index_of("XK")), "XK");
        assert_eq!(index_of("ZZ"), UNKNOWN);
        assert_eq!(index_of("QQ"), UNKNOWN);
        assert_eq!(index_of("B1"), UNKNOWN);
        assert_eq!(index_of("BRA"), UNKNOWN);
        assert_eq!(code(CountryIdx(9999)), "ZZ");
    }
}
