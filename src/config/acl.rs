//! Call ACL patterns and Call ACLs (SPEC §2, §3.4, §4.3): the brand's patterns, a tenant's
//! own (which override the brand's by name), and a tenant's ACLs, whose rules name patterns.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use toml::Spanned;

use super::checker::Checker;
use super::names::{ctx, index_names, name_of};
use super::raw::{RawBrand, RawPattern, RawRule, RawTenant};
use super::values::parse_action;
use crate::policy::acl::{AclPattern, AclPatterns, AclRegex, AclRule, CallAcl, Matcher, Origin};

/// `[[brand.acl_patterns]]`: the patterns every tenant inherits.
pub(super) fn check_brand_patterns(ck: &mut Checker<'_>, brand: &RawBrand) -> Vec<AclPattern> {
    index_names(ck, &brand.acl_patterns, |p| &p.name, "brand", "acl_pattern");
    brand
        .acl_patterns
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            let c = ctx("brand", "acl_pattern", &p.get_ref().name, i);
            check_pattern(ck, p, Origin::Brand, &c)
        })
        .collect()
}

/// An ACL pattern (brand or tenant): exactly one of `regex` and `numbers`.
pub(super) fn check_pattern(
    ck: &mut Checker<'_>,
    p: &Spanned<RawPattern>,
    origin: Origin,
    c: &str,
) -> Option<AclPattern> {
    let raw = p.get_ref();
    let name = name_of(ck, &raw.name, &p.span(), c)?;
    let matcher = match (&raw.regex, &raw.numbers) {
        (Some(_), Some(n)) => {
            ck.error(
                Some(&n.span()),
                c,
                "a pattern has exactly one of `regex` and `numbers`, not both",
            );
            None
        }
        (None, None) => {
            ck.error(Some(&p.span()), c, "a pattern needs `regex` or `numbers`");
            None
        }
        (Some(re), None) => match AclRegex::new(re.get_ref()) {
            Ok(r) => {
                if r.quantified_anchor() {
                    ck.warn(
                        &re.span(),
                        c,
                        &format!("`{}` repeats the `^` anchor (`^+`); it never matches — write `^\\+` for a literal plus", re.get_ref()),
                    );
                }
                Some(Matcher::Regex(r))
            }
            Err(e) => {
                ck.error(Some(&re.span()), c, e);
                None
            }
        },
        (None, Some(list)) => {
            if list.get_ref().is_empty() {
                ck.error(Some(&list.span()), c, "`numbers` must not be empty");
            }
            let mut ok = true;
            for n in list.get_ref() {
                let v = n.get_ref();
                let e164 = v.strip_prefix('+').is_some_and(|d| {
                    !d.is_empty() && d.len() <= 15 && d.bytes().all(|b| b.is_ascii_digit())
                });
                if !e164 {
                    ck.error(
                        Some(&n.span()),
                        c,
                        format!("`numbers`: `{v}` is not E.164 (`+` then up to 15 digits)"),
                    );
                    ok = false;
                }
            }
            ok.then(|| {
                Matcher::Numbers(
                    list.get_ref()
                        .iter()
                        .map(|n| n.get_ref().as_str().into())
                        .collect(),
                )
            })
        }
    }?;
    Some(AclPattern {
        name: name.get_ref().as_str().into(),
        matcher,
        origin,
    })
}

/// A tenant's patterns: the brand's, overridden by name, then the tenant's own. Also the
/// names of the tenant's patterns that were declared but failed their checks: references to
/// them are not reported again as unknown.
pub(super) fn tenant_patterns<'v>(
    ck: &mut Checker<'_>,
    raw: &'v RawTenant,
    brand_patterns: &[AclPattern],
    c: &str,
) -> (Vec<AclPattern>, HashSet<&'v str>) {
    index_names(ck, &raw.acl_patterns, |p| &p.name, c, "acl_pattern");
    let mut patterns: Vec<AclPattern> = brand_patterns.to_vec();
    for (i, p) in raw.acl_patterns.iter().enumerate() {
        let pc = ctx(c, "acl_pattern", &p.get_ref().name, i);
        if let Some(p) = check_pattern(ck, p, Origin::Tenant, &pc) {
            match patterns.iter().position(|b| b.name == p.name) {
                Some(at) if patterns[at].origin == Origin::Brand => patterns[at] = p,
                Some(_) => {}
                None => patterns.push(p),
            }
        }
    }
    let declared: HashSet<&str> = raw
        .acl_patterns
        .iter()
        .filter_map(|p| p.get_ref().name.as_ref().map(|n| n.get_ref().as_str()))
        .collect();
    (patterns, declared)
}

/// A tenant's patterns compiled together; `at` is the tenant's span.
pub(super) fn compile_patterns(
    ck: &mut Checker<'_>,
    patterns: Vec<AclPattern>,
    at: &Range<usize>,
    c: &str,
) -> Option<AclPatterns> {
    match AclPatterns::build(patterns) {
        Ok(p) => Some(p),
        Err(e) => {
            ck.error(
                Some(at),
                c,
                format!("the ACL patterns together are too large to compile: {e}"),
            );
            None
        }
    }
}

/// `[[tenant.call_acls]]`: the ACLs by name, and the valid ones.
pub(super) fn check_call_acls<'v>(
    ck: &mut Checker<'_>,
    raw: &'v RawTenant,
    patterns: &[AclPattern],
    declared: &HashSet<&str>,
    c: &str,
) -> (HashMap<&'v str, usize>, Vec<CallAcl>) {
    let pattern_names: HashMap<&str, usize> = patterns
        .iter()
        .enumerate()
        .map(|(i, p)| (&*p.name, i))
        .collect();
    let acl_names = index_names(ck, &raw.call_acls, |a| &a.name, c, "call_acl");
    let mut acls = Vec::new();
    for (i, a) in raw.call_acls.iter().enumerate() {
        let ac = ctx(c, "call_acl", &a.get_ref().name, i);
        let r = a.get_ref();
        let aname = name_of(ck, &r.name, &a.span(), &ac);
        let default = ck
            .required(&r.default, "default", &a.span(), &ac)
            .and_then(|d| parse_action(ck, d, "default", &ac));
        let rules = check_rules(ck, &r.rules, &pattern_names, declared, &ac);
        if let (Some(n), Some(d)) = (aname, default) {
            acls.push(CallAcl::new(n.get_ref(), d, rules));
        }
    }
    (acl_names, acls)
}

/// The rules of one ACL: metrics unique, patterns known.
fn check_rules(
    ck: &mut Checker<'_>,
    raw: &[Spanned<RawRule>],
    pattern_names: &HashMap<&str, usize>,
    declared: &HashSet<&str>,
    ac: &str,
) -> Vec<AclRule> {
    let mut metrics = HashMap::new();
    let mut rules = Vec::new();
    for (j, rule) in raw.iter().enumerate() {
        let rc = format!("{ac}, rule #{}", j + 1);
        let rr = rule.get_ref();
        let metric = ck.required(&rr.metric, "metric", &rule.span(), &rc);
        if let Some(m) = metric {
            if let Some(prev) = metrics.insert(*m.get_ref(), j) {
                ck.error(
                    Some(&m.span()),
                    &rc,
                    format!(
                        "duplicate metric {} (rule #{} has it too)",
                        m.get_ref(),
                        prev + 1
                    ),
                );
            }
        }
        let pattern = ck
            .required(&rr.pattern, "pattern", &rule.span(), &rc)
            .and_then(|p| {
                let found = pattern_names.get(p.get_ref().as_str()).copied();
                if found.is_none() && !declared.contains(p.get_ref().as_str()) {
                    ck.error(
                        Some(&p.span()),
                        &rc,
                        format!("unknown acl_pattern `{}`", p.get_ref()),
                    );
                }
                found
            });
        let action = ck
            .required(&rr.action, "action", &rule.span(), &rc)
            .and_then(|x| parse_action(ck, x, "action", &rc));
        if let (Some(m), Some(pattern), Some(action)) = (metric, pattern, action) {
            rules.push(AclRule {
                metric: *m.get_ref(),
                pattern,
                action,
            });
        }
    }
    rules
}
