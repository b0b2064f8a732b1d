//! The dialed number: clean-up (SPEC §3.1) and E.164 normalization (SPEC §3.3).
//!
//! Normalization uses the `phonenumber` crate's metadata and parser, with the work-arounds the
//! specification asks for: a number that starts with the caller region's international (IDD)
//! prefix has that prefix replaced by `+` and is then parsed *without* a default region
//! (`phonenumber` 0.3 mis-parses such numbers when given the caller's region), short codes the
//! crate refuses become `+<country code><digits>` as IvozProvider does, and numbers with `*`
//! or `#` are service codes, never phone numbers. Results are cached per tenant in
//! [`NumberCache`], because the same few numbers are dialed again and again and parsing is
//! far slower than a hash look-up.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::RwLock;

use phonenumber::metadata::DATABASE;
use phonenumber::Mode;

/// Cleans a dialed string as SPEC §3.1 says: URI parameters inside the user part (RFC 4694
/// `;npdi`, `;rn=`...) are set aside, `%XX` escapes are decoded, and visual separators
/// (`-`, `.`, `(`, `)`, space) are removed. Letters are kept: they must still meet catch-all
/// patterns.
pub fn clean_dialed(raw: &str) -> Cow<'_, str> {
    let user = raw.split(';').next().unwrap_or_default();
    let decoded = percent_decode(user);
    if !decoded.bytes().any(is_separator) {
        return if user.len() == raw.len() {
            decoded
        } else {
            Cow::Owned(decoded.into_owned())
        };
    }
    Cow::Owned(
        decoded
            .chars()
            .filter(|c| !c.is_ascii() || !is_separator(*c as u8))
            .collect(),
    )
}

fn is_separator(b: u8) -> bool {
    matches!(b, b'-' | b'.' | b'(' | b')' | b' ' | b'\t')
}

/// Decodes `%XX` escapes; a malformed escape is kept as written, and so is a decoded byte
/// sequence that is not UTF-8 (then nothing is decoded).
fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |j: usize| bytes.get(j).and_then(|c| char::from(*c).to_digit(16));
        match (b, hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'%'));
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    match String::from_utf8(out) {
        Ok(decoded) => Cow::Owned(decoded),
        Err(_) => Cow::Borrowed(s),
    }
}

/// A region (ISO 3166-1 alpha-2) known to the phone-number metadata.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Region(phonenumber::country::Id);

impl Region {
    /// The region's metadata; every `Region` has some, which is checked when it is made.
    fn meta(self) -> &'static phonenumber::Metadata {
        DATABASE
            .by_id(self.0.as_ref())
            .expect("a Region is only made for regions with metadata")
    }

    /// The region's country calling code (34 for ES).
    pub fn country_code(self) -> u16 {
        self.meta().country_code()
    }
}

impl FromStr for Region {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let id = phonenumber::country::Id::from_str(s).map_err(|_| ())?;
        DATABASE.by_id(id.as_ref()).map(|_| Region(id)).ok_or(())
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_ref())
    }
}

/// How a dialed number was read (for explanations).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reading {
    /// `+digits`, already E.164 (rule 1).
    Plus,
    /// The caller region's international prefix, replaced by `+` (rule 2).
    International { prefix: Box<str> },
    /// A national number of the caller's region (rule 3); `area_code` when one was put in front
    /// of a subscriber number.
    National { area_code: Option<Box<str>> },
    /// A short code the parser refuses, read as `+<country code><digits>` (rule 4).
    ShortCode,
    /// Contains `*` or `#`: a service code, internal (rule 5).
    ServiceCode,
    /// Anything else: no E.164 form (rule 6).
    NotANumber,
}

/// The result of normalizing one dialed string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Normalized {
    /// The E.164 form, `+` included, when there is one.
    pub e164: Option<Box<str>>,
    /// Which rule applied.
    pub reading: Reading,
}

/// Normalizes a cleaned dialed string for a caller in `region` (SPEC §3.3). `area_code` is the
/// tenant's, empty when not set.
pub fn normalize(dialed: &str, region: Region, area_code: &str) -> Normalized {
    let found = |e164: String, reading| Normalized {
        e164: Some(e164.into()),
        reading,
    };
    if dialed.contains(['*', '#']) {
        return Normalized {
            e164: None,
            reading: Reading::ServiceCode,
        };
    }
    if let Some(digits) = dialed.strip_prefix('+') {
        if is_digits(digits) {
            return found(dialed.to_owned(), Reading::Plus);
        }
        return Normalized {
            e164: None,
            reading: Reading::NotANumber,
        };
    }
    if !is_digits(dialed) {
        return Normalized {
            e164: None,
            reading: Reading::NotANumber,
        };
    }
    let meta = region.meta();
    if let Some(prefix) = international_prefix(meta, dialed) {
        let rest = &dialed[prefix.len()..];
        // A country code never starts with 0, so `00...` after the prefix is not international.
        if !rest.is_empty() && !rest.starts_with('0') {
            let plus = format!("+{rest}");
            let e164 = parse_e164(None, &plus).unwrap_or(plus);
            return found(
                e164,
                Reading::International {
                    prefix: prefix.into(),
                },
            );
        }
    }
    let (national, area) = with_area_code(meta, dialed, area_code);
    match parse_e164(Some(region), &national) {
        Some(e164) => found(e164, Reading::National { area_code: area }),
        None => found(
            format!("+{}{}", meta.country_code(), dialed),
            Reading::ShortCode,
        ),
    }
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// The caller region's IDD prefix at the start of `dialed`, from the metadata's pattern
/// (which may allow several prefixes, e.g. AU `0011`, `0014`...).
fn international_prefix<'d>(meta: &phonenumber::Metadata, dialed: &'d str) -> Option<&'d str> {
    let m = meta.international_prefix()?.find(dialed)?;
    (m.start() == 0 && m.end() > 0).then(|| &dialed[..m.end()])
}

/// Puts the tenant's area code in front of a subscriber number: all digits, not starting with
/// the national prefix, and shorter than every national length of the region.
fn with_area_code(
    meta: &phonenumber::Metadata,
    dialed: &str,
    area_code: &str,
) -> (String, Option<Box<str>>) {
    if area_code.is_empty() {
        return (dialed.to_owned(), None);
    }
    let trunk = meta.national_prefix().filter(|p| !p.is_empty());
    let national_min = meta
        .descriptors()
        .general()
        .possible_length()
        .iter()
        .copied()
        .min();
    let subscriber = trunk.is_none_or(|p| !dialed.starts_with(p))
        && national_min.is_some_and(|min| dialed.len() < usize::from(min));
    if subscriber {
        (format!("{area_code}{dialed}"), Some(area_code.into()))
    } else {
        (dialed.to_owned(), None)
    }
}

fn parse_e164(region: Option<Region>, s: &str) -> Option<String> {
    let number = phonenumber::parse(region.map(|r| r.0), s).ok()?;
    Some(number.format().mode(Mode::E164).to_string())
}

/// Upper bound on cached numbers per tenant: past it, numbers are still normalized, just not
/// remembered, so a flood of random numbers cannot grow memory without limit.
pub const CACHE_CAPACITY: usize = 200_000;

/// A per-tenant cache of normalization results, keyed by (region, dialed); the tenant fixes
/// the area code. Each triple is parsed once while the configuration is loaded.
#[derive(Debug, Default)]
pub struct NumberCache {
    map: RwLock<HashMap<Region, HashMap<Box<str>, Normalized>>>,
}

impl NumberCache {
    /// Normalizes through the cache.
    pub fn normalize(&self, dialed: &str, region: Region, area_code: &str) -> Normalized {
        let lookup = |map: &HashMap<Region, HashMap<Box<str>, Normalized>>| {
            map.get(&region).and_then(|m| m.get(dialed)).cloned()
        };
        if let Some(hit) = self.map.read().ok().and_then(|m| lookup(&m)) {
            return hit;
        }
        let result = normalize(dialed, region, area_code);
        if let Ok(mut map) = self.map.write() {
            let size: usize = map.values().map(HashMap::len).sum();
            if size < CACHE_CAPACITY {
                map.entry(region)
                    .or_default()
                    .insert(dialed.into(), result.clone());
            }
        }
        result
    }

    /// How many results are cached (for tests).
    pub fn len(&self) -> usize {
        self.map
            .read()
            .map(|m| m.values().map(HashMap::len).sum())
            .unwrap_or(0)
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Region {
        s.parse().unwrap()
    }

    fn e164(dialed: &str, region: &str, area: &str) -> Option<String> {
        normalize(dialed, r(region), area).e164.map(String::from)
    }

    #[test]
    fn spec_examples() {
        let cases = [
            ("612345678", "ES", "+34612345678"),
            ("0033612345678", "ES", "+33612345678"),
            ("0612345678", "FR", "+33612345678"),
            ("612345678", "FR", "+33612345678"),
            ("0039061234567", "FR", "+39061234567"),
            ("112", "ES", "+34112"),
            ("+442034567890", "ES", "+442034567890"),
            ("011442034567890", "US", "+442034567890"),
            ("81033612345678", "RU", "+33612345678"),
        ];
        for (dialed, region, want) in cases {
            assert_eq!(
                e164(dialed, region, "").as_deref(),
                Some(want),
                "{region} {dialed}"
            );
        }
    }

    #[test]
    fn service_codes_and_letters_have_no_e164() {
        assert_eq!(normalize("*21", r("ES"), "").reading, Reading::ServiceCode);
        assert_eq!(normalize("12#", r("ES"), "").e164, None);
        assert_eq!(normalize("alice", r("ES"), "").reading, Reading::NotANumber);
        assert_eq!(normalize("+34abc", r("ES"), "").e164, None);
    }

    #[test]
    fn area_code_completes_subscriber_numbers() {
        assert_eq!(
            e164("5551234", "US", "212").as_deref(),
            Some("+12125551234")
        );
        assert_eq!(
            e164("2125551234", "US", "415").as_deref(),
            Some("+12125551234")
        );
        assert_eq!(
            e164("12125551234", "US", "415").as_deref(),
            Some("+12125551234")
        );
    }

    #[test]
    fn clean_up_removes_separators_and_parameters() {
        assert_eq!(
            clean_dialed("+1-212-555-0100;npdi;rn=+12125550000"),
            "+12125550100"
        );
        assert_eq!(clean_dialed("(06) 12.34.56.78"), "0612345678");
        assert_eq!(clean_dialed("%2B34612345678"), "+34612345678");
        assert_eq!(clean_dialed("9989-0695395788"), "99890695395788");
        assert_eq!(clean_dialed("%ZZ1"), "%ZZ1");
        assert_eq!(clean_dialed("1001"), "1001");
    }

    #[test]
    fn cache_parses_each_triple_once() {
        let cache = NumberCache::default();
        let a = cache.normalize("612345678", r("ES"), "");
        let b = cache.normalize("612345678", r("ES"), "");
        assert_eq!(a, b);
        assert_eq!(cache.len(), 1);
        cache.normalize("612345678", r("FR"), "");
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn unknown_regions_are_refused() {
        assert!("XX".parse::<Region>().is_err());
        assert!("es".parse::<Region>().is_err());
        assert_eq!(r("ES").country_code(), 34);
    }
}
