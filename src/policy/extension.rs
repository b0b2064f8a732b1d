//! Asterisk extension patterns (SPEC §3.2) and the index that matches a dialed number against
//! thousands of them at once.
//!
//! An entry without a leading `_` is an exact extension. With `_`, `X` = 0-9, `Z` = 1-9,
//! `N` = 2-9 (case-insensitive), `[...]` is a set with ranges, `.` is one or more of any
//! character, `!` is zero or more, and `-` outside a set is ignored. The whole dialed number
//! must match.
//!
//! [`ExtensionSet`] stores exact entries in a hash map and patterns in a trie of pattern
//! elements (the shape Asterisk itself uses for its dialplan), so matching costs one hash
//! look-up plus a walk bounded by the dialed number's length and the trie's branching — not a
//! scan over every pattern. Entry ids are handed out in Asterisk's specificity order, so the
//! most specific match of a set is simply the smallest id.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;

/// One position of a pattern.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
enum Elem {
    /// A set of accepted bytes (`X`, `Z`, `N`, `[...]` and plain characters alike).
    Set(ByteSet),
    /// `.`: one or more of any character.
    OneOrMore,
    /// `!`: zero or more of any character.
    ZeroOrMore,
}

/// A 256-bit set of bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
struct ByteSet([u64; 4]);

impl ByteSet {
    fn insert(&mut self, b: u8) {
        self.0[usize::from(b >> 6)] |= 1 << (b & 63);
    }
    fn contains(&self, b: u8) -> bool {
        self.0[usize::from(b >> 6)] & (1 << (b & 63)) != 0
    }
    fn len(&self) -> u32 {
        self.0.iter().map(|w| w.count_ones()).sum()
    }
    fn min(&self) -> Option<u8> {
        (0..=255u8).find(|&b| self.contains(b))
    }
    fn range(lo: u8, hi: u8) -> Self {
        let mut s = Self::default();
        for b in lo..=hi {
            s.insert(b);
        }
        s
    }
}

/// Why an extension entry is not valid (SPEC §2: "an exact extension (`[0-9*#+]+`) or a
/// pattern starting with `_`").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtensionError {
    #[error("an extension must not be empty")]
    Empty,
    #[error("`{0}` is neither an exact extension (digits, `*`, `#`, `+`) nor a pattern starting with `_`")]
    NotAnExtension(String),
    #[error("pattern `{0}` has nothing after `_`")]
    EmptyPattern(String),
    #[error("pattern `{0}` has an unclosed `[`")]
    UnclosedSet(String),
    #[error("pattern `{0}` has an empty set `[]`")]
    EmptySet(String),
    #[error("pattern `{0}` has a reversed range `{1}-{2}` in a set")]
    ReversedRange(String, char, char),
    #[error("pattern `{0}` contains white space or a control character")]
    BadCharacter(String),
}

/// A parsed extension entry: exact, or an Asterisk pattern.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Extension {
    source: Box<str>,
    kind: Kind,
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
enum Kind {
    Exact,
    Pattern(Box<[Elem]>),
}

impl Extension {
    /// Parses an entry of a call permission's `extensions` or an outcall's `patterns`.
    pub fn parse(s: &str) -> Result<Self, ExtensionError> {
        if s.is_empty() {
            return Err(ExtensionError::Empty);
        }
        let Some(body) = s.strip_prefix('_') else {
            if !s.bytes().all(|b| b.is_ascii_digit() || b"*#+".contains(&b)) {
                return Err(ExtensionError::NotAnExtension(s.to_owned()));
            }
            return Ok(Self {
                source: s.into(),
                kind: Kind::Exact,
            });
        };
        let elems = parse_pattern(s, body)?;
        Ok(Self {
            source: s.into(),
            kind: Kind::Pattern(elems.into()),
        })
    }

    /// The entry as written in the configuration.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the whole of `dialed` matches this entry. Used for explanations and tests; the
    /// hot path goes through [`ExtensionSet`].
    pub fn matches(&self, dialed: &str) -> bool {
        match &self.kind {
            Kind::Exact => &*self.source == dialed,
            Kind::Pattern(elems) => match_elems(elems, dialed.as_bytes()),
        }
    }

    /// Asterisk's weights for each position, end of pattern included (`ext_cmp`): a plain
    /// character or small set weighs less than a larger set, `.` more than any set, `!` more
    /// than `.`, and the end of the pattern most.
    fn weights(elems: &[Elem]) -> impl Iterator<Item = u32> + '_ {
        elems
            .iter()
            .map(|e| match e {
                Elem::Set(s) => (s.len() << 8) | u32::from(s.min().unwrap_or(0)),
                Elem::OneOrMore => 0x18000,
                Elem::ZeroOrMore => 0x28000,
            })
            .chain(std::iter::once(0x30000))
    }

    /// Asterisk's ordering: exact entries first, then patterns position by position.
    /// `Less` means more specific.
    pub fn specificity(&self, other: &Self) -> Ordering {
        match (&self.kind, &other.kind) {
            (Kind::Exact, Kind::Exact) => self.source.cmp(&other.source),
            (Kind::Exact, Kind::Pattern(_)) => Ordering::Less,
            (Kind::Pattern(_), Kind::Exact) => Ordering::Greater,
            (Kind::Pattern(a), Kind::Pattern(b)) => Self::weights(a)
                .cmp(Self::weights(b))
                .then_with(|| self.source.cmp(&other.source)),
        }
    }
}

impl fmt::Display for Extension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

fn parse_pattern(source: &str, body: &str) -> Result<Vec<Elem>, ExtensionError> {
    let err_src = || source.to_owned();
    let bytes = body.as_bytes();
    let mut elems = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        i += 1;
        if b.is_ascii_whitespace() || b.is_ascii_control() {
            return Err(ExtensionError::BadCharacter(err_src()));
        }
        let elem = match b {
            b'-' => continue,
            b'.' => Elem::OneOrMore,
            b'!' => Elem::ZeroOrMore,
            b'X' | b'x' => Elem::Set(ByteSet::range(b'0', b'9')),
            b'Z' | b'z' => Elem::Set(ByteSet::range(b'1', b'9')),
            b'N' | b'n' => Elem::Set(ByteSet::range(b'2', b'9')),
            b'[' => {
                let close = bytes[i..]
                    .iter()
                    .position(|&c| c == b']')
                    .ok_or_else(|| ExtensionError::UnclosedSet(err_src()))?;
                let set = parse_set(source, &bytes[i..i + close])?;
                i += close + 1;
                Elem::Set(set)
            }
            other => {
                let mut s = ByteSet::default();
                s.insert(other);
                Elem::Set(s)
            }
        };
        elems.push(elem);
    }
    if elems.is_empty() {
        return Err(ExtensionError::EmptyPattern(err_src()));
    }
    Ok(elems)
}

/// The inside of `[...]`: characters and `a-b` ranges; `X`, `Z`, `N` are plain letters here.
fn parse_set(source: &str, inner: &[u8]) -> Result<ByteSet, ExtensionError> {
    let mut set = ByteSet::default();
    let mut j = 0;
    while let Some(&c) = inner.get(j) {
        if c.is_ascii_whitespace() || c.is_ascii_control() {
            return Err(ExtensionError::BadCharacter(source.to_owned()));
        }
        match (inner.get(j + 1), inner.get(j + 2)) {
            (Some(b'-'), Some(&hi)) => {
                if hi < c {
                    return Err(ExtensionError::ReversedRange(
                        source.to_owned(),
                        char::from(c),
                        char::from(hi),
                    ));
                }
                for b in c..=hi {
                    set.insert(b);
                }
                j += 3;
            }
            _ => {
                set.insert(c);
                j += 1;
            }
        }
    }
    if set.len() == 0 {
        return Err(ExtensionError::EmptySet(source.to_owned()));
    }
    Ok(set)
}

/// Backtracking match of one pattern; patterns are short and `.`/`!` rare, so this is only
/// ever used off the hot path (explanations), where [`ExtensionSet`] is not at hand.
fn match_elems(elems: &[Elem], input: &[u8]) -> bool {
    match elems.split_first() {
        None => input.is_empty(),
        Some((Elem::Set(s), rest)) => match input.split_first() {
            Some((&b, tail)) => s.contains(b) && match_elems(rest, tail),
            None => false,
        },
        Some((Elem::OneOrMore, rest)) => (1..=input.len()).any(|k| match_elems(rest, &input[k..])),
        Some((Elem::ZeroOrMore, rest)) => (0..=input.len()).any(|k| match_elems(rest, &input[k..])),
    }
}

/// The id of an entry in an [`ExtensionSet`]; smaller ids are more specific.
pub type EntryId = u32;

/// A trie node: children by element, and the entries that end here.
#[derive(Default, Debug)]
struct Node {
    children: Vec<(Elem, u32)>,
    ends: Vec<EntryId>,
}

/// Many extension entries compiled for matching all of them against one dialed number.
#[derive(Debug, Default)]
pub struct ExtensionSet {
    entries: Vec<Extension>,
    exact: HashMap<Box<str>, EntryId>,
    nodes: Vec<Node>,
}

impl ExtensionSet {
    /// Compiles `entries` (duplicates are merged). Returns the set and, for each input entry in
    /// order, its id.
    pub fn build<'a>(input: impl IntoIterator<Item = &'a Extension>) -> (Self, Vec<EntryId>) {
        let input: Vec<&Extension> = input.into_iter().collect();
        let mut distinct: Vec<&Extension> = input.clone();
        distinct.sort_by(|a, b| a.specificity(b));
        distinct.dedup_by(|a, b| a == b);
        let mut set = Self {
            nodes: vec![Node::default()],
            ..Self::default()
        };
        let mut ids = HashMap::with_capacity(distinct.len());
        for (id, ext) in distinct.into_iter().enumerate() {
            let id = EntryId::try_from(id).expect("fewer than 2^32 extension entries");
            ids.insert(ext, id);
            set.insert(ext, id);
            set.entries.push(ext.clone());
        }
        let mapping = input.iter().map(|e| ids[e]).collect();
        (set, mapping)
    }

    fn insert(&mut self, ext: &Extension, id: EntryId) {
        let elems = match &ext.kind {
            Kind::Exact => {
                self.exact.insert(ext.source.clone(), id);
                return;
            }
            Kind::Pattern(elems) => elems,
        };
        let mut node = 0usize;
        for elem in elems.iter() {
            let found = self.nodes[node]
                .children
                .iter()
                .find(|(e, _)| e == elem)
                .map(|&(_, n)| n);
            node = match found {
                Some(n) => n as usize,
                None => {
                    let n = self.nodes.len();
                    self.nodes.push(Node::default());
                    let n32 = u32::try_from(n).expect("fewer than 2^32 trie nodes");
                    self.nodes[node].children.push((elem.clone(), n32));
                    n
                }
            };
        }
        self.nodes[node].ends.push(id);
    }

    /// The entry behind an id.
    pub fn entry(&self, id: EntryId) -> &Extension {
        &self.entries[id as usize]
    }

    /// Number of distinct entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the set holds no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Fills `out` (cleared first) with the ids of every entry that matches the whole of
    /// `dialed`, most specific first, without duplicates.
    pub fn matching(&self, dialed: &str, out: &mut Vec<EntryId>) {
        out.clear();
        if let Some(&id) = self.exact.get(dialed) {
            out.push(id);
        }
        if !self.nodes.is_empty() {
            self.walk(0, dialed.as_bytes(), out);
        }
        out.sort_unstable();
        out.dedup();
    }

    /// The most specific entry matching `dialed`, if any.
    pub fn most_specific(&self, dialed: &str) -> Option<EntryId> {
        let mut out = Vec::new();
        self.matching(dialed, &mut out);
        out.first().copied()
    }

    fn walk(&self, node: usize, rest: &[u8], out: &mut Vec<EntryId>) {
        let n = &self.nodes[node];
        if rest.is_empty() {
            out.extend_from_slice(&n.ends);
        }
        for (elem, child) in &n.children {
            let child = *child as usize;
            match elem {
                Elem::Set(s) => {
                    if let Some((&b, tail)) = rest.split_first() {
                        if s.contains(b) {
                            self.walk(child, tail, out);
                        }
                    }
                }
                Elem::OneOrMore => {
                    for k in 1..=rest.len() {
                        self.walk(child, &rest[k..], out);
                    }
                }
                Elem::ZeroOrMore => {
                    for k in 0..=rest.len() {
                        self.walk(child, &rest[k..], out);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(s: &str) -> Extension {
        Extension::parse(s).unwrap()
    }

    #[test]
    fn pattern_semantics_follow_asterisk() {
        let cases: &[(&str, &str, bool)] = &[
            ("_12", "1234", false),
            ("_12", "12", true),
            ("_X.", "1", false),
            ("_X!", "1", true),
            ("_X.", "12", true),
            ("_X.", "9989a0695395788", true),
            ("_00X.", "0033612345678", true),
            ("_00X.", "00", false),
            ("_Z", "0", false),
            ("_Z", "1", true),
            ("_N", "1", false),
            ("_n", "2", true),
            ("_x", "7", true),
            ("_[1-5a]", "a", true),
            ("_[1-5a]", "6", false),
            ("_[XZ]", "X", true),
            ("_[XZ]", "5", false),
            ("_1-2-3", "123", true),
            ("_.", "abc", true),
            ("_!", "", true),
            ("_1.9", "1239", true),
            ("_1.9", "19", false),
            ("1234", "1234", true),
            ("1234", "12345", false),
            ("*21", "*21", true),
        ];
        for &(p, d, want) in cases {
            assert_eq!(ext(p).matches(d), want, "{p} vs {d}");
            let (set, _) = ExtensionSet::build([&ext(p)]);
            assert_eq!(set.most_specific(d).is_some(), want, "set: {p} vs {d}");
        }
    }

    #[test]
    fn invalid_entries_are_refused() {
        for bad in [
            "", "12a", "_", "_[12", "_[]", "_[9-1]", "_1 2", "abc", "1 2",
        ] {
            assert!(Extension::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn asterisk_specificity_order() {
        // Each list is most specific first.
        let ordered = [
            vec![
                "1234", "_1234", "_123X", "_12XX", "_1ZXX", "_1XXX", "_1X.", "_1!", "_!",
            ],
            vec!["_[12]X", "_NX", "_X."],
        ];
        for list in ordered {
            for w in list.windows(2) {
                assert_eq!(
                    ext(w[0]).specificity(&ext(w[1])),
                    Ordering::Less,
                    "{} < {}",
                    w[0],
                    w[1]
                );
            }
        }
        assert_eq!(ext("_X.").specificity(&ext("_.")), Ordering::Less);
    }

    #[test]
    fn set_returns_every_match_most_specific_first() {
        let entries: Vec<Extension> = [
            "_X.",
            "_00X.",
            "0033612345678",
            "_0033ZXXXXXXXX",
            "_1X",
            "_00!",
        ]
        .into_iter()
        .map(ext)
        .collect();
        let (set, ids) = ExtensionSet::build(&entries);
        let mut out = Vec::new();
        set.matching("0033612345678", &mut out);
        let got: Vec<&str> = out.iter().map(|&i| set.entry(i).as_str()).collect();
        assert_eq!(
            got,
            ["0033612345678", "_0033ZXXXXXXXX", "_00X.", "_00!", "_X."]
        );
        assert_eq!(set.entry(ids[1]).as_str(), "_00X.");
        out.clear();
        set.matching("15", &mut out);
        let got: Vec<&str> = out.iter().map(|&i| set.entry(i).as_str()).collect();
        assert_eq!(got, ["_1X", "_X."]);
    }

    #[test]
    fn duplicates_share_an_id() {
        let a = ext("_X.");
        let (set, ids) = ExtensionSet::build([&a, &ext("_X."), &ext("12")]);
        assert_eq!(set.len(), 2);
        assert_eq!(ids[0], ids[1]);
    }
}
