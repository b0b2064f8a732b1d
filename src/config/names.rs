//! Object names and references between objects (SPEC §2): every object needs a name, names
//! are unique within their kind and tenant, and every reference must resolve. Also how an
//! object is named in an error (`tenant "acme", user "alice"`).

use std::collections::HashMap;
use std::ops::Range;

use toml::Spanned;

use super::checker::Checker;
use super::raw::Str;

/// The longest object name: names become paths of the admin API and labels in logs.
pub const MAX_NAME: usize = 128;

/// Object names: each must be given, 1 to [`MAX_NAME`] characters without `/` (it would
/// split an admin API path) or control characters (they would forge log lines), and unique
/// within its kind and tenant.
pub(super) fn name_of<'v>(
    ck: &mut Checker<'_>,
    name: &'v Option<Str>,
    at: &Range<usize>,
    ctx: &str,
) -> Option<&'v Str> {
    let n = ck.required(name, "name", at, ctx)?;
    let text = n.get_ref();
    let problem = if text.is_empty() {
        Some("must not be empty".to_owned())
    } else if text.chars().count() > MAX_NAME {
        Some(format!("is longer than {MAX_NAME} characters"))
    } else if text.contains('/') {
        Some("must not contain `/`".to_owned())
    } else if text.chars().any(char::is_control) {
        Some("must not contain control characters".to_owned())
    } else {
        None
    };
    if let Some(p) = problem {
        ck.error(Some(&n.span()), ctx, format!("`name` {p}"));
    }
    Some(n)
}

/// Builds the context of an object: `tenant "acme", user "alice"` (or `user #3` when it has
/// no name).
pub(super) fn ctx(parent: &str, kind: &str, name: &Option<Str>, index: usize) -> String {
    let this = match name {
        Some(n) => format!("{kind} \"{}\"", n.get_ref()),
        None => format!("{kind} #{}", index + 1),
    };
    if parent.is_empty() {
        this
    } else {
        format!("{parent}, {this}")
    }
}

/// Reports duplicate names among `items`, and returns a name → index map of the first ones.
pub(super) fn index_names<'v, T>(
    ck: &mut Checker<'_>,
    items: &'v [Spanned<T>],
    name: impl Fn(&T) -> &Option<Str>,
    parent: &str,
    kind: &str,
) -> HashMap<&'v str, usize> {
    let mut map = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        if let Some(n) = name(item.get_ref()) {
            if map.insert(n.get_ref().as_str(), i).is_some() {
                let c = ctx(parent, kind, name(item.get_ref()), i);
                ck.error(
                    Some(&n.span()),
                    &c,
                    format!("duplicate {kind} name `{}`", n.get_ref()),
                );
            }
        }
    }
    // Keep the first definition on duplicates.
    for (i, item) in items.iter().enumerate().rev() {
        if let Some(n) = name(item.get_ref()) {
            map.insert(n.get_ref().as_str(), i);
        }
    }
    map
}

/// Resolves a list of references against a name map.
pub(super) fn resolve(
    ck: &mut Checker<'_>,
    refs: &[Str],
    names: &HashMap<&str, usize>,
    what: &str,
    c: &str,
) -> Vec<usize> {
    let mut out = Vec::with_capacity(refs.len());
    for r in refs {
        match names.get(r.get_ref().as_str()) {
            Some(&i) => {
                if !out.contains(&i) {
                    out.push(i);
                }
            }
            None => ck.error(
                Some(&r.span()),
                c,
                format!("unknown {what} `{}`", r.get_ref()),
            ),
        }
    }
    out
}
