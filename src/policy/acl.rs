//! Call ACLs (SPEC §3.4, §4.3), as IvozProvider defines them: patterns at brand level
//! (inherited by every tenant, overridden by a tenant pattern of the same name) and tenant
//! level, grouped into ACLs whose rules are tried in ascending metric, with a default policy.
//!
//! All of a tenant's regex patterns are compiled into one [`RegexSet`], so matching an E.164
//! number costs one automaton pass per form of the number, whatever the number of patterns;
//! `numbers` patterns are a hash look-up. An ACL then only needs the first of its rules whose
//! pattern is among the matches.

use std::collections::HashMap;
use std::fmt;

use regex::{Regex, RegexSet, RegexSetBuilder};

/// What a rule or a default does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Allow,
    Deny,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
        })
    }
}

/// Index of a pattern in a tenant's [`AclPatterns`].
pub type PatternId = usize;

/// A compiled regex of an ACL pattern.
#[derive(Clone, Debug)]
pub struct AclRegex {
    source: Box<str>,
    /// Whether the regex is also tried on the number without its `+`. It is not for a regex
    /// whose start anchor is quantified (`^+34`): that is the classic typo for `^\+34`, which
    /// IvozProvider (matching `+34...`) never matches, and sipscreen keeps that meaning rather
    /// than read it as `^34`.
    plain_form: bool,
}

impl AclRegex {
    /// Checks that `source` compiles as a Rust `regex`. The error says so plainly when the
    /// regex uses look-around, which that syntax does not have.
    pub fn new(source: &str) -> Result<Self, String> {
        if let Err(e) = Regex::new(source) {
            let text = e.to_string();
            let detail = text
                .lines()
                .last()
                .unwrap_or(&text)
                .trim()
                .trim_start_matches("error: ");
            if text.contains("look-around") {
                return Err(format!(
                    "regex `{source}` uses look-around (`(?=`, `(?!`, `(?<=`, `(?<!`), which is not supported by the Rust regex syntax sipscreen uses"
                ));
            }
            return Err(format!("regex `{source}` does not compile: {detail}"));
        }
        Ok(Self {
            source: source.into(),
            plain_form: !has_quantified_start_anchor(source),
        })
    }

    /// The regex as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the start anchor is quantified (`^+`, `^*`): it then never matches, and
    /// `validate` says why.
    pub fn quantified_anchor(&self) -> bool {
        !self.plain_form
    }
}

fn has_quantified_start_anchor(source: &str) -> bool {
    use regex_syntax::ast::{parse::Parser, AssertionKind, Ast};
    fn walk(ast: &Ast) -> bool {
        match ast {
            Ast::Repetition(rep) => match &*rep.ast {
                Ast::Assertion(a) => {
                    matches!(a.kind, AssertionKind::StartLine | AssertionKind::StartText)
                }
                other => walk(other),
            },
            Ast::Group(g) => walk(&g.ast),
            Ast::Alternation(a) => a.asts.iter().any(walk),
            Ast::Concat(c) => c.asts.iter().any(walk),
            _ => false,
        }
    }
    Parser::new()
        .parse(source)
        .map(|ast| walk(&ast))
        .unwrap_or(false)
}

/// How an ACL pattern matches.
#[derive(Clone, Debug)]
pub enum Matcher {
    /// Searched in the E.164 number, with and without `+`.
    Regex(AclRegex),
    /// Exact E.164 numbers.
    Numbers(Vec<Box<str>>),
}

/// Where a pattern was defined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Brand,
    Tenant,
}

/// One named ACL pattern as a tenant sees it.
#[derive(Clone, Debug)]
pub struct AclPattern {
    pub name: Box<str>,
    pub matcher: Matcher,
    pub origin: Origin,
}

/// A tenant's effective ACL patterns, compiled.
#[derive(Debug)]
pub struct AclPatterns {
    patterns: Vec<AclPattern>,
    set: RegexSet,
    /// For each regex of `set`, the pattern it belongs to and whether it applies to the plain
    /// form.
    set_slots: Vec<(PatternId, bool)>,
    numbers: HashMap<Box<str>, Vec<PatternId>>,
}

impl AclPatterns {
    /// Compiles the patterns (each regex already checked by [`AclRegex::new`]).
    pub fn build(patterns: Vec<AclPattern>) -> Result<Self, regex::Error> {
        let mut sources = Vec::new();
        let mut set_slots = Vec::new();
        let mut numbers: HashMap<Box<str>, Vec<PatternId>> = HashMap::new();
        for (id, p) in patterns.iter().enumerate() {
            match &p.matcher {
                Matcher::Regex(r) => {
                    sources.push(&*r.source);
                    set_slots.push((id, r.plain_form));
                }
                Matcher::Numbers(list) => {
                    for n in list {
                        numbers.entry(n.clone()).or_default().push(id);
                    }
                }
            }
        }
        let set = RegexSetBuilder::new(sources)
            .size_limit(256 << 20)
            .dfa_size_limit(64 << 20)
            .build()?;
        Ok(Self {
            patterns,
            set,
            set_slots,
            numbers,
        })
    }

    /// The pattern behind an id.
    pub fn get(&self, id: PatternId) -> &AclPattern {
        &self.patterns[id]
    }

    /// Looks a pattern up by name.
    pub fn by_name(&self, name: &str) -> Option<PatternId> {
        self.patterns.iter().position(|p| &*p.name == name)
    }

    /// Fills `out` (cleared first) with the patterns that match `e164` (`+` included), sorted.
    pub fn matching(&self, e164: &str, out: &mut Vec<PatternId>) {
        out.clear();
        if let Some(ids) = self.numbers.get(e164) {
            out.extend_from_slice(ids);
        }
        if !self.set_slots.is_empty() {
            for slot in self.set.matches(e164).iter() {
                out.push(self.set_slots[slot].0);
            }
            let plain = e164.strip_prefix('+').unwrap_or(e164);
            for slot in self.set.matches(plain).iter() {
                let (id, plain_form) = self.set_slots[slot];
                if plain_form {
                    out.push(id);
                }
            }
        }
        out.sort_unstable();
        out.dedup();
    }
}

/// One rule of an ACL.
#[derive(Clone, Debug)]
pub struct AclRule {
    pub metric: i64,
    pub pattern: PatternId,
    pub action: Action,
}

/// A Call ACL: rules sorted by metric and a default.
#[derive(Clone, Debug)]
pub struct CallAcl {
    pub name: Box<str>,
    pub default: Action,
    rules: Vec<AclRule>,
    /// For each pattern the ACL uses, the index of its first rule.
    first_rule: HashMap<PatternId, usize>,
}

/// What an ACL decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AclOutcome {
    /// The rule at this index of [`CallAcl::rules`] matched first.
    Rule(usize),
    /// No rule matched: the default applies.
    Default,
}

impl CallAcl {
    /// Builds an ACL; rules are sorted by metric (metrics are unique, checked by the config).
    pub fn new(name: &str, default: Action, mut rules: Vec<AclRule>) -> Self {
        rules.sort_by_key(|r| r.metric);
        let mut first_rule = HashMap::with_capacity(rules.len());
        for (i, r) in rules.iter().enumerate() {
            first_rule.entry(r.pattern).or_insert(i);
        }
        Self {
            name: name.into(),
            default,
            rules,
            first_rule,
        }
    }

    /// The rules in the order they are tried.
    pub fn rules(&self) -> &[AclRule] {
        &self.rules
    }

    /// Decides on the sorted list of matching patterns: the first rule by metric whose pattern
    /// matched, else the default.
    pub fn evaluate(&self, matching: &[PatternId]) -> (Action, AclOutcome) {
        let first = if matching.len() <= self.rules.len() {
            matching
                .iter()
                .filter_map(|p| self.first_rule.get(p))
                .min()
                .copied()
        } else {
            self.rules
                .iter()
                .position(|r| matching.binary_search(&r.pattern).is_ok())
        };
        match first {
            Some(i) => (self.rules[i].action, AclOutcome::Rule(i)),
            None => (self.default, AclOutcome::Default),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regex(name: &str, re: &str) -> AclPattern {
        AclPattern {
            name: name.into(),
            matcher: Matcher::Regex(AclRegex::new(re).unwrap()),
            origin: Origin::Tenant,
        }
    }

    fn matches(p: &AclPatterns, e164: &str) -> Vec<String> {
        let mut out = Vec::new();
        p.matching(e164, &mut out);
        out.into_iter().map(|i| p.get(i).name.to_string()).collect()
    }

    #[test]
    fn regexes_are_searched_in_both_forms() {
        let set = AclPatterns::build(vec![
            regex("unanchored-34", "34"),
            regex("ivoz-doc", "^34[67][0-9]{8}$"),
            regex("ivoz-today", r"^\+34"),
            regex("typo", "^+34"),
            AclPattern {
                name: "head-office".into(),
                matcher: Matcher::Numbers(vec!["+34946002050".into()]),
                origin: Origin::Tenant,
            },
        ])
        .unwrap();
        assert_eq!(matches(&set, "+442034567890"), ["unanchored-34"]);
        assert_eq!(
            matches(&set, "+34612345678"),
            ["unanchored-34", "ivoz-doc", "ivoz-today"]
        );
        assert_eq!(
            matches(&set, "+34946002050"),
            ["unanchored-34", "ivoz-today", "head-office"]
        );
    }

    #[test]
    fn look_around_is_refused_with_a_clear_reason() {
        let err = AclRegex::new("^(?=34)").unwrap_err();
        assert!(
            err.contains("look-around") && err.contains("not supported"),
            "{err}"
        );
        assert!(AclRegex::new("[").unwrap_err().contains("does not compile"));
        assert!(AclRegex::new("^+34").unwrap().quantified_anchor());
        assert!(!AclRegex::new(r"^\+34|^[^+]").unwrap().quantified_anchor());
    }

    #[test]
    fn rules_are_tried_by_metric() {
        let rules = |a, b| {
            vec![
                AclRule {
                    metric: a,
                    pattern: 0,
                    action: Action::Allow,
                },
                AclRule {
                    metric: b,
                    pattern: 1,
                    action: Action::Deny,
                },
            ]
        };
        let acl = CallAcl::new("x", Action::Deny, rules(10, 20));
        assert_eq!(acl.evaluate(&[0, 1]), (Action::Allow, AclOutcome::Rule(0)));
        let swapped = CallAcl::new("x", Action::Deny, rules(20, 10));
        assert_eq!(
            swapped.evaluate(&[0, 1]),
            (Action::Deny, AclOutcome::Rule(0))
        );
        assert_eq!(acl.evaluate(&[]), (Action::Deny, AclOutcome::Default));
        assert_eq!(
            acl.evaluate(&[1, 2, 3, 4]),
            (Action::Deny, AclOutcome::Rule(1))
        );
    }
}
