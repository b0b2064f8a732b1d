//! The dialed number: clean-up (SPEC §3.1) and E.164 normalization (SPEC §3.3).
//!
//! Normalization uses the `phonenumber` crate's metadata (Google libphonenumber's, per
//! region: country code, IDD and national prefixes, number patterns and lengths) and follows
//! libphonenumber's parsing steps over it (see `RegionRules` for why not the crate's parser).
//! A number that starts with the caller region's international (IDD) prefix has that prefix
//! replaced by `+` and is then read without the caller's region; short codes become
//! `+<country code><digits>` as IvozProvider does; numbers with `*` or `#` are service codes,
//! never phone numbers. Results are cached per tenant in
//! [`NumberCache`], because the same few numbers are dialed again and again and parsing is
//! far slower than a hash look-up.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::RwLock;

use std::sync::{Arc, OnceLock};

use phonenumber::metadata::DATABASE;
use regex::Regex;

/// The user part of a URI as it was meant: URI parameters inside it (RFC 4694 `;npdi`,
/// `;rn=`...) set aside and `%XX` escapes decoded. This is how callers and forwarders are
/// named; dialed numbers are cleaned further by [`clean_dialed`].
pub fn uri_user(raw: &str) -> Cow<'_, str> {
    crate::percent::decode(raw.split(';').next().unwrap_or_default())
}

/// Cleans a dialed string as SPEC §3.1 says: [`uri_user`], then visual separators (`-`, `.`,
/// `(`, `)`, space) removed. Letters are kept: they must still meet catch-all patterns.
pub fn clean_dialed(raw: &str) -> Cow<'_, str> {
    let decoded = uri_user(raw);
    if !decoded.bytes().any(is_separator) {
        return decoded;
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
    let rules = RegionRules::get(region);
    if let Some(prefix) = rules.international_prefix(dialed) {
        let rest = &dialed[prefix.len()..];
        // A country code never starts with 0, so `00...` after the prefix is not international.
        if !rest.is_empty() && !rest.starts_with('0') {
            let e164 = international(rest).unwrap_or_else(|| format!("+{rest}"));
            return found(
                e164,
                Reading::International {
                    prefix: prefix.into(),
                },
            );
        }
    }
    let (national, area) = rules.with_area_code(dialed, area_code);
    match rules.national(&national) {
        Some(e164) => found(e164, Reading::National { area_code: area }),
        None => found(
            format!("+{}{}", rules.country_code, dialed),
            Reading::ShortCode,
        ),
    }
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Reads `digits` (what follows `+`): the country code (1 to 3 digits; codes are prefix-free),
/// then the national number, with a national prefix written after the country code taken off
/// as libphonenumber does (`+44 0 20...`). `None` when no country has that code.
fn international(digits: &str) -> Option<String> {
    (1..=3.min(digits.len())).find_map(|k| {
        let code: u16 = digits[..k].parse().ok()?;
        let metas = DATABASE.by_code(&code)?;
        let main = metas
            .iter()
            .find(|m| m.is_main_country_for_code())
            .or(metas.first())?;
        let rules = RegionRules::get(main.id().parse().ok()?);
        Some(format!(
            "+{code}{}",
            rules.strip_national_prefix(&digits[k..])
        ))
    })
}

/// How long a national number is, for a region (libphonenumber's `testNumberLength`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Length {
    Possible,
    LocalOnly,
    TooShort,
    TooLong,
    Invalid,
}

/// The parsing rules of one region, taken from the `phonenumber` crate's metadata and compiled
/// once per region.
///
/// The crate's own parser disagrees with Google's libphonenumber on numbers whose national
/// digits begin with the country code (FR `331234567`, IT `3912345678`: issue #68) and on
/// national prefixes it strips although the result is no longer a number (RU `+78091234567`,
/// `88001234567`: issue #76), and its descriptor test only anchors the start of a pattern. So
/// sipscreen follows libphonenumber's steps itself over the crate's metadata; the corpus test
/// holds the two together.
#[derive(Debug)]
struct RegionRules {
    country_code: u16,
    idd: Option<Regex>,
    national_prefix: Option<String>,
    /// `national_prefix_for_parsing`, anchored at the start.
    prefix_for_parsing: Option<Regex>,
    /// `national_prefix_transform_rule`, in the `regex` crate's `${N}` syntax.
    transform: Option<String>,
    /// The general descriptor's pattern, anchored at both ends.
    general: Option<Regex>,
    possible: Vec<u16>,
    local_only: Vec<u16>,
}

impl RegionRules {
    fn get(region: Region) -> Arc<RegionRules> {
        static RULES: OnceLock<RwLock<HashMap<Region, Arc<RegionRules>>>> = OnceLock::new();
        let all = RULES.get_or_init(Default::default);
        if let Some(r) = all.read().ok().and_then(|m| m.get(&region).cloned()) {
            return r;
        }
        let rules = Arc::new(Self::compile(region.meta()));
        if let Ok(mut m) = all.write() {
            m.insert(region, rules.clone());
        }
        rules
    }

    fn compile(meta: &phonenumber::Metadata) -> Self {
        // The metadata keeps the patterns as laid out in libphonenumber's XML, white space
        // included; libphonenumber removes it when it builds its tables.
        let anchored = |src: &str, end: bool| {
            let src: String = src.split_whitespace().collect();
            let pattern = if end {
                format!("^(?:{src})$")
            } else {
                format!("^(?:{src})")
            };
            Regex::new(&pattern).ok()
        };
        let d = meta.descriptors();
        let general = d.general();
        // libphonenumber's general lengths are those of every number type together.
        let types = [
            d.fixed_line(),
            d.mobile(),
            d.toll_free(),
            d.premium_rate(),
            d.shared_cost(),
            d.personal_number(),
            d.voip(),
            d.pager(),
            d.uan(),
            d.voicemail(),
        ];
        let mut possible: Vec<u16> = general.possible_length().to_vec();
        let mut local_only: Vec<u16> = general.possible_local_length().to_vec();
        for t in types.into_iter().flatten() {
            possible.extend_from_slice(t.possible_length());
            local_only.extend_from_slice(t.possible_local_length());
        }
        possible.sort_unstable();
        possible.dedup();
        local_only.sort_unstable();
        local_only.dedup();
        local_only.retain(|l| !possible.contains(l));
        Self {
            country_code: meta.country_code(),
            idd: meta
                .international_prefix()
                .and_then(|r| anchored(r.as_str(), false)),
            national_prefix: meta
                .national_prefix()
                .filter(|p| !p.is_empty())
                .map(str::to_owned),
            // Without a parsing pattern, libphonenumber parses with the national prefix itself.
            prefix_for_parsing: match (meta.national_prefix_for_parsing(), meta.national_prefix()) {
                (Some(r), _) => anchored(r.as_str(), false),
                (None, Some(p)) if !p.is_empty() => anchored(&regex::escape(p), false),
                _ => None,
            },
            transform: meta.national_prefix_transform_rule().map(|t| {
                let dollar = Regex::new(r"\$(\d)").expect("literal regex");
                dollar.replace_all(t, "$${$1}").into_owned()
            }),
            general: anchored(general.national_number().as_str(), true),
            possible,
            local_only,
        }
    }

    /// The region's IDD prefix at the start of `dialed` (the pattern may allow several, e.g.
    /// AU `0011`, `0014`...).
    fn international_prefix<'d>(&self, dialed: &'d str) -> Option<&'d str> {
        let m = self.idd.as_ref()?.find(dialed)?;
        (m.end() > 0).then(|| &dialed[..m.end()])
    }

    /// Whether `nsn` fits the region's general pattern and lengths.
    fn matches_general(&self, nsn: &str) -> bool {
        let len_ok = self.possible.is_empty() || self.possible.contains(&(nsn.len() as u16));
        len_ok && self.general.as_ref().is_some_and(|g| g.is_match(nsn))
    }

    fn length(&self, nsn: &str) -> Length {
        let n = nsn.len() as u16;
        let (Some(&min), Some(&max)) = (self.possible.first(), self.possible.last()) else {
            return Length::Invalid;
        };
        if self.local_only.contains(&n) {
            Length::LocalOnly
        } else if n < min {
            Length::TooShort
        } else if n > max {
            Length::TooLong
        } else if self.possible.contains(&n) {
            Length::Possible
        } else {
            Length::Invalid
        }
    }

    /// libphonenumber's `maybeStripNationalPrefixAndCarrierCode`: the national prefix is
    /// taken off (or transformed) unless the number fits the region as it is and would not
    /// without it.
    fn strip_prefix_raw<'n>(&self, number: &'n str) -> Cow<'n, str> {
        let Some(caps) = self
            .prefix_for_parsing
            .as_ref()
            .and_then(|re| re.captures(number))
        else {
            return Cow::Borrowed(number);
        };
        let rest = &number[caps.get(0).map_or(0, |m| m.end())..];
        let stripped = match &self.transform {
            Some(rule) if caps.get(caps.len() - 1).is_some() => {
                let mut out = String::new();
                caps.expand(rule, &mut out);
                out.push_str(rest);
                Cow::Owned(out)
            }
            _ => Cow::Borrowed(rest),
        };
        if self.matches_general(number) && !self.matches_general(&stripped) {
            return Cow::Borrowed(number);
        }
        stripped
    }

    /// [`Self::strip_prefix_raw`] with libphonenumber's length guard: what remains must still
    /// be long enough for the region, or the number stays as it was (it may be a short code).
    fn strip_national_prefix<'n>(&self, number: &'n str) -> Cow<'n, str> {
        let stripped = self.strip_prefix_raw(number);
        match self.length(&stripped) {
            Length::TooShort | Length::LocalOnly | Length::Invalid => Cow::Borrowed(number),
            Length::Possible | Length::TooLong => stripped,
        }
    }

    /// A national number of this region in E.164 (libphonenumber's `maybeExtractCountryCode`
    /// for a number with neither `+` nor IDD, then the national prefix): leading digits equal
    /// to the country code are taken as one only when the number does not fit the region
    /// without them, or is too long with them.
    fn national(&self, dialed: &str) -> Option<String> {
        let cc = self.country_code.to_string();
        let mut national = dialed;
        if let Some(rest) = dialed.strip_prefix(cc.as_str()) {
            let potential = self.strip_prefix_raw(rest);
            if (!self.matches_general(dialed) && self.matches_general(&potential))
                || self.length(dialed) == Length::TooLong
            {
                national = rest;
            }
        }
        let nsn = self.strip_national_prefix(national);
        // libphonenumber refuses national numbers shorter than two digits.
        (nsn.len() >= 2).then(|| format!("+{cc}{nsn}"))
    }

    /// Puts the tenant's area code in front of a subscriber number: all digits, not starting
    /// with the national prefix, and shorter than every national length of the region.
    fn with_area_code(&self, dialed: &str, area_code: &str) -> (String, Option<Box<str>>) {
        let trunk = self.national_prefix.as_deref();
        let subscriber = !area_code.is_empty()
            && trunk.is_none_or(|p| !dialed.starts_with(p))
            && self
                .possible
                .first()
                .is_some_and(|&min| dialed.len() < usize::from(min));
        if subscriber {
            (format!("{area_code}{dialed}"), Some(area_code.into()))
        } else {
            (dialed.to_owned(), None)
        }
    }
}

/// Upper bound on cached numbers per tenant: past it, numbers are still normalized, just not
/// remembered, so a flood of random numbers cannot grow memory without limit.
pub const CACHE_CAPACITY: usize = 200_000;
/// The most memory the cache of one tenant may hold, in bytes (keys, results and a
/// per-entry overhead): a flood of long random numbers cannot grow it past this (SPEC §7).
pub const CACHE_BYTES: usize = 32 << 20;
/// What one entry costs besides its strings (hash slot, boxes, the result's fields).
const ENTRY_OVERHEAD: usize = 64;

#[derive(Debug, Default)]
struct Cached {
    map: HashMap<Region, HashMap<Box<str>, Normalized>>,
    entries: usize,
    bytes: usize,
}

/// A per-tenant cache of normalization results, keyed by (region, dialed); the tenant fixes
/// the area code. Each triple is parsed once while the configuration is loaded, as long as
/// the cache has room: at most [`CACHE_CAPACITY`] entries and [`CACHE_BYTES`] bytes; past
/// that, numbers are still normalized, just not remembered.
#[derive(Debug)]
pub struct NumberCache {
    inner: RwLock<Cached>,
    max_bytes: usize,
}

impl Default for NumberCache {
    fn default() -> Self {
        Self::with_max_bytes(CACHE_BYTES)
    }
}

impl NumberCache {
    /// A cache that holds at most `max_bytes`.
    pub fn with_max_bytes(max_bytes: usize) -> Self {
        Self {
            inner: RwLock::default(),
            max_bytes,
        }
    }

    /// Normalizes through the cache.
    pub fn normalize(&self, dialed: &str, region: Region, area_code: &str) -> Normalized {
        let hit = self
            .inner
            .read()
            .ok()
            .and_then(|c| c.map.get(&region).and_then(|m| m.get(dialed)).cloned());
        if let Some(hit) = hit {
            return hit;
        }
        let result = normalize(dialed, region, area_code);
        let cost = ENTRY_OVERHEAD + dialed.len() + result.e164.as_ref().map_or(0, |e| e.len());
        if let Ok(mut c) = self.inner.write() {
            if c.entries < CACHE_CAPACITY && c.bytes + cost <= self.max_bytes {
                let fresh = c
                    .map
                    .entry(region)
                    .or_default()
                    .insert(dialed.into(), result.clone())
                    .is_none();
                if fresh {
                    c.entries += 1;
                    c.bytes += cost;
                }
            }
        }
        result
    }

    /// The bytes the cache holds, as counted against [`CACHE_BYTES`].
    pub fn bytes(&self) -> usize {
        self.inner.read().map(|c| c.bytes).unwrap_or(0)
    }

    /// How many results are cached (for tests).
    pub fn len(&self) -> usize {
        self.inner.read().map(|c| c.entries).unwrap_or(0)
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
            // phonenumber issue #76: the 8 of Russian 8xx numbers is not a national prefix.
            ("0078091234567", "FR", "+78091234567"),
            ("88001234567", "RU", "+78001234567"),
            // phonenumber issue #68: national digits that look like the country code.
            ("331234567", "FR", "+33331234567"),
            ("3912345678", "IT", "+393912345678"),
            ("0612345678", "IT", "+390612345678"),
            ("001112125550100", "AU", "+12125550100"),
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

#[cfg(test)]
mod cache_tests {
    use super::*;

    #[test]
    fn the_cache_is_bounded_in_bytes_not_only_entries() {
        let cache = NumberCache::with_max_bytes(1 << 20);
        let region: Region = "ES".parse().unwrap();
        let long = "6".repeat(10_000);
        for i in 0..200 {
            let dialed = format!("{i}{long}");
            cache.normalize(&dialed, region, "");
        }
        assert!(cache.bytes() <= 1 << 20, "{}", cache.bytes());
        assert!(cache.len() < 200, "{} long numbers kept", cache.len());
        // Short numbers still fit in what is left, and are served from the cache.
        let n = cache.normalize("612345678", region, "");
        assert_eq!(n.e164.as_deref(), Some("+34612345678"));
    }
}
