//! Wrong types and unknown keys (SPEC §2): the file is read into [`RawConfig`] with serde,
//! and what serde alone would stop at is reported and stepped over instead. A value of the
//! wrong type is reported at the value, taken out of the TOML tree and the tree read again
//! (up to [`MAX_TYPE_ERRORS`] times); unknown keys, which `serde_ignored` collects, are
//! reported at the key. Both are named as semantic errors name objects (`tenant "acme",
//! user "bob"`), by walking the spanned tree (`DeTable`) the TOML parser gave.

use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::checker::Checker;
use super::raw::RawConfig;

/// How many wrongly typed values are reported before giving up on the rest.
const MAX_TYPE_ERRORS: usize = 64;

/// Reads the raw configuration out of the parsed tree, reporting every value of the wrong
/// type and every unknown key. `None` when it cannot be read even so.
pub(super) fn deserialize(
    ck: &mut Checker<'_>,
    mut table: Spanned<DeTable<'_>>,
) -> Option<RawConfig> {
    // A value of the wrong type stops serde; it is reported, taken out, and the file read
    // again, so that one wrong type does not hide every other mistake.
    let mut unknown: Vec<Vec<Segment>> = Vec::new();
    let raw = loop {
        unknown.clear();
        let de = toml::Deserializer::from(table.clone());
        match serde_ignored::deserialize(de, |path| unknown.push(segments(&path))) {
            Ok(raw) => break Some(raw),
            Err(e) => {
                let span = e.span();
                let path = span.as_ref().and_then(|s| find_value(table.get_ref(), s));
                match path {
                    Some(path) if ck.removed.len() < MAX_TYPE_ERRORS => {
                        let (context, key) = describe(table.get_ref(), &path);
                        let message = if SECRET_KEYS.contains(&key.as_str()) {
                            without_values(e.message())
                        } else {
                            e.message().to_owned()
                        };
                        ck.error(span.as_ref(), &context, format!("`{key}`: {message}"));
                        let parent = path
                            .split_last()
                            .and_then(|(_, up)| value_at(table.get_ref(), up));
                        if let (Some(parent), Some(Segment::Key(k))) = (parent, path.last()) {
                            ck.removed.push((k.clone(), parent));
                        }
                        remove_value(table.get_mut(), &path);
                    }
                    _ => {
                        ck.error(span.as_ref(), "", e.message().to_owned());
                        break None;
                    }
                }
            }
        }
    };
    for path in &unknown {
        let span = key_span(table.get_ref(), path);
        let (context, key) = describe(table.get_ref(), path);
        ck.error(span.as_ref(), &context, format!("unknown key `{key}`"));
    }
    raw
}

/// Keys whose values are secrets (PINs, digest passwords and hashes, admin API tokens).
/// Errors are printed by `validate` and logged by a reload, so an error about one never
/// repeats its value: a PIN written without quotes is still the PIN.
const SECRET_KEYS: [&str; 5] = [
    "password",
    "call_permission_password",
    "auth_password",
    "auth_ha1",
    "token",
];

/// A serde message without the values it quotes: "invalid type: integer `1234`, expected a
/// string" becomes "invalid type: integer, expected a string".
fn without_values(message: &str) -> String {
    let kept: String = message.split('`').step_by(2).collect();
    let kept = kept.replace(" ,", ",");
    format!("{} (the value is a secret: not shown)", kept.trim_end())
}

/// A step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

/// The path of an ignored key, without the private keys `Spanned` goes through.
fn segments(path: &serde_ignored::Path<'_>) -> Vec<Segment> {
    use serde_ignored::Path as P;
    let mut out = match path {
        P::Root => return Vec::new(),
        P::Seq { parent, .. } | P::Map { parent, .. } => segments(parent),
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            return segments(parent)
        }
    };
    match path {
        P::Seq { index, .. } => out.push(Segment::Index(*index)),
        P::Map { key, .. } if !key.starts_with("$__serde_spanned") => {
            out.push(Segment::Key(key.clone()))
        }
        _ => {}
    }
    out
}

fn child<'t, 'i>(v: &'t DeValue<'i>, seg: &Segment) -> Option<&'t Spanned<DeValue<'i>>> {
    match (seg, v) {
        (Segment::Key(k), DeValue::Table(t)) => {
            t.iter().find(|(key, _)| key.get_ref() == k).map(|(_, v)| v)
        }
        (Segment::Index(i), DeValue::Array(a)) => a.get(*i),
        _ => None,
    }
}

/// The span of the value at `path`.
fn value_at(root: &DeTable<'_>, path: &[Segment]) -> Option<Range<usize>> {
    let root = Spanned::new(0..0, DeValue::Table(root.clone()));
    let mut value = &root;
    for seg in path {
        value = child(value.get_ref(), seg)?;
    }
    Some(value.span())
}

/// Where the last key of `path` is written.
fn key_span(root: &DeTable<'_>, path: &[Segment]) -> Option<Range<usize>> {
    let (Segment::Key(last), parents) = path.split_last()? else {
        return None;
    };
    let root = DeValue::Table(root.clone());
    let mut value = &root;
    for seg in parents {
        value = child(value, seg)?.get_ref();
    }
    let table = value.as_table()?;
    table
        .iter()
        .find(|(key, _)| key.get_ref() == last)
        .map(|(key, _)| key.span())
}

/// The path to the value written at `span`.
fn find_value(root: &DeTable<'_>, span: &Range<usize>) -> Option<Vec<Segment>> {
    fn walk(v: &Spanned<DeValue<'_>>, span: &Range<usize>, path: &mut Vec<Segment>) -> bool {
        if v.span() == *span {
            return true;
        }
        let children: Vec<(Segment, &Spanned<DeValue<'_>>)> = match v.get_ref() {
            DeValue::Table(t) => t
                .iter()
                .map(|(k, v)| (Segment::Key(k.get_ref().to_string()), v))
                .collect(),
            DeValue::Array(a) => a
                .iter()
                .enumerate()
                .map(|(i, v)| (Segment::Index(i), v))
                .collect(),
            _ => return false,
        };
        for (seg, c) in children {
            path.push(seg);
            if walk(c, span, path) {
                return true;
            }
            path.pop();
        }
        false
    }
    let root = Spanned::new(usize::MAX..usize::MAX, DeValue::Table(root.clone()));
    let mut path = Vec::new();
    walk(&root, span, &mut path).then_some(path)
}

/// Takes the value at `path` out of the table.
fn remove_value(root: &mut DeTable<'_>, path: &[Segment]) {
    fn walk(v: &mut DeValue<'_>, path: &[Segment]) {
        match (path, v) {
            ([Segment::Key(k)], DeValue::Table(t)) => {
                t.remove(&Spanned::new(0..0, std::borrow::Cow::Owned(k.clone())));
            }
            ([Segment::Index(i)], DeValue::Array(a)) => {
                let mut kept = toml::de::DeArray::new();
                for (j, item) in a.iter().enumerate() {
                    if j != *i {
                        kept.push(item.clone());
                    }
                }
                *a = kept;
            }
            ([Segment::Key(k), rest @ ..], DeValue::Table(t)) => {
                if let Some((_, v)) = t.iter_mut().find(|(key, _)| key.get_ref() == k) {
                    walk(v.get_mut(), rest);
                }
            }
            ([Segment::Index(i), rest @ ..], DeValue::Array(a)) => {
                if let Some(v) = a.get_mut(*i) {
                    walk(v.get_mut(), rest);
                }
            }
            _ => {}
        }
    }
    let mut top = DeValue::Table(std::mem::take(root));
    walk(&mut top, path);
    if let DeValue::Table(t) = top {
        *root = t;
    }
}

/// Names the object a key path is in, as semantic errors do (`tenant "acme", user "bob"`),
/// and the key itself (`extension`, `members[2]`).
fn describe(root: &DeTable<'_>, path: &[Segment]) -> (String, String) {
    let root = DeValue::Table(root.clone());
    let mut parts: Vec<String> = Vec::new();
    let mut value = &root;
    let mut key = String::new();
    let mut i = 0;
    while let Some(seg) = path.get(i) {
        let last = i + 1 == path.len();
        match (seg, path.get(i + 1)) {
            (Segment::Key(k), Some(Segment::Index(n))) => {
                let element =
                    child(value, seg).and_then(|list| child(list.get_ref(), &Segment::Index(*n)));
                match element.map(|e| e.get_ref()) {
                    Some(e @ DeValue::Table(t)) if i + 2 < path.len() => {
                        let kind = if k == "tenant" {
                            k.as_str()
                        } else {
                            k.strip_suffix('s').unwrap_or(k)
                        };
                        let name = t
                            .iter()
                            .find(|(key, _)| key.get_ref() == "name")
                            .and_then(|(_, v)| v.get_ref().as_str());
                        parts.push(match name {
                            Some(name) => format!("{kind} \"{name}\""),
                            None => format!("{kind} #{}", n + 1),
                        });
                        value = e;
                    }
                    _ => {
                        key = format!("{k}[{n}]");
                        break;
                    }
                }
                i += 2;
                continue;
            }
            (Segment::Key(k), _) if last => key = k.clone(),
            (Segment::Key(k), _) => {
                parts.push(k.clone());
                match child(value, seg) {
                    Some(v) => value = v.get_ref(),
                    None => break,
                }
            }
            (Segment::Index(n), _) => key = format!("[{n}]"),
        }
        i += 1;
    }
    (parts.join(", "), key)
}

/// The key path (`tenant[0].users[1].extension`) of the value written at each span, when a
/// value of the tree is written exactly there; one walk of the tree for all of them.
pub(super) fn value_paths(
    root: &DeTable<'_>,
    spans: &[Option<Range<usize>>],
) -> Vec<Option<String>> {
    fn walk(
        v: &DeValue<'_>,
        path: &mut String,
        wanted: &std::collections::HashMap<Range<usize>, Vec<usize>>,
        found: &mut [Option<String>],
        span: Option<Range<usize>>,
    ) {
        if let Some(at) = span.and_then(|s| wanted.get(&s)) {
            for &i in at {
                found[i] = Some(path.clone());
            }
        }
        let len = path.len();
        match v {
            DeValue::Table(t) => {
                for (k, child) in t.iter() {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(k.get_ref());
                    walk(child.get_ref(), path, wanted, found, Some(child.span()));
                    path.truncate(len);
                }
            }
            DeValue::Array(a) => {
                for (i, child) in a.iter().enumerate() {
                    path.push_str(&format!("[{i}]"));
                    walk(child.get_ref(), path, wanted, found, Some(child.span()));
                    path.truncate(len);
                }
            }
            _ => {}
        }
    }
    let mut wanted: std::collections::HashMap<Range<usize>, Vec<usize>> = Default::default();
    for (i, s) in spans.iter().enumerate() {
        if let Some(s) = s {
            wanted.entry(s.clone()).or_default().push(i);
        }
    }
    let mut found = vec![None; spans.len()];
    if !wanted.is_empty() {
        walk(
            &DeValue::Table(root.clone()),
            &mut String::new(),
            &wanted,
            &mut found,
            None,
        );
    }
    found
}

#[cfg(test)]
mod tests {
    use super::without_values;

    #[test]
    fn a_secret_is_not_repeated_by_its_type_error() {
        assert_eq!(
            without_values("invalid type: integer `97531864`, expected a string"),
            "invalid type: integer, expected a string (the value is a secret: not shown)"
        );
        assert_eq!(
            without_values("invalid type: floating point `1.5`"),
            "invalid type: floating point (the value is a secret: not shown)"
        );
    }
}
