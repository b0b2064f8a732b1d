//! What the admin API does to the configuration document (SPEC §9.2), with no I/O: find the
//! tenant and the object, show objects as JSON, and create, update, rename, delete and
//! associate them. References follow a rename, and a deleted user, group, outcall or incall
//! leaves every list that named it.
//!
//! Errors here are the API's own (an unknown object, a key of the wrong type); whether the
//! result is a valid configuration is the checker's business, afterwards.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value as Json};
use toml_edit::{Array, DocumentMut, InlineTable, Item, TableLike, Value};

use super::error::ApiError;
use super::model::{
    list_of, object_json, set, str_of, tenants, toml_list, toml_str, Entries, Kind, Scope, Ty,
    CALL_ACLS, CALL_PERMISSIONS, GROUPS, INCALLS, KINDS, USERS,
};

/// The objects of `item`: an array of tables or of inline tables.
fn items(item: Option<&Item>) -> Vec<&dyn TableLike> {
    match item {
        Some(Item::ArrayOfTables(a)) => a.iter().map(|t| t as &dyn TableLike).collect(),
        Some(Item::Value(Value::Array(a))) => a
            .iter()
            .filter_map(Value::as_inline_table)
            .map(|t| t as &dyn TableLike)
            .collect(),
        _ => Vec::new(),
    }
}

/// The `[[tenant]]` tables.
fn tenant_tables(doc: &DocumentMut) -> Vec<&dyn TableLike> {
    items(doc.as_table().get("tenant"))
}

/// The index of the tenant a request is about: the one it names, or the only one.
pub fn tenant_index(doc: &DocumentMut, name: Option<&str>) -> Result<usize, ApiError> {
    let all = tenant_tables(doc);
    match name {
        Some(n) => all
            .iter()
            .position(|t| str_of(*t, "name") == Some(n))
            .ok_or_else(|| ApiError::not_found(format!("tenant `{n}`: no such tenant"))),
        None if all.len() == 1 => Ok(0),
        None => Err(ApiError::bad_request(
            "tenant: the configuration has several tenants: name one with the Wazo-Tenant \
             header or ?tenant=",
        )),
    }
}

/// The name of tenant `t`.
pub fn tenant_name(doc: &DocumentMut, t: usize) -> String {
    tenant_tables(doc)
        .get(t)
        .and_then(|t| str_of(*t, "name"))
        .unwrap_or_default()
        .to_owned()
}

/// The objects of `kind` (in tenant `t` when the kind lives in tenants).
pub fn objects<'d>(doc: &'d DocumentMut, kind: &Kind, t: usize) -> Vec<&'d dyn TableLike> {
    match kind.scope {
        Scope::Root => tenant_tables(doc),
        Scope::Brand => items(
            doc.as_table()
                .get("brand")
                .and_then(Item::as_table_like)
                .and_then(|b| b.get(kind.key)),
        ),
        Scope::Tenant => tenant_tables(doc)
            .get(t)
            .map(|tt| items(tt.get(kind.key)))
            .unwrap_or_default(),
    }
}

/// The objects of `kind`, to change; created empty when the file has none yet.
fn entries_mut<'d>(
    doc: &'d mut DocumentMut,
    kind: &Kind,
    t: usize,
) -> Result<Entries<'d>, ApiError> {
    let missing =
        || ApiError::bad_request(format!("the configuration has no place for {}s", kind.noun));
    let parent: &mut dyn TableLike = match kind.scope {
        Scope::Root => return tenants(doc).ok_or_else(missing),
        Scope::Brand => doc
            .as_table_mut()
            .get_mut("brand")
            .and_then(Item::as_table_like_mut)
            .ok_or_else(missing)?,
        Scope::Tenant => tenants(doc)
            .and_then(|e| e.into_mut(t))
            .ok_or_else(missing)?,
    };
    super::model::entries_in(parent, kind.key).ok_or_else(missing)
}

/// The tenant table `t`, to change.
fn tenant_mut(doc: &mut DocumentMut, t: usize) -> Option<&mut dyn TableLike> {
    tenants(doc).and_then(|e| e.into_mut(t))
}

/// Finds an object by its id: its name, or for a user also its `uuid` or extension.
pub fn find(objs: &[&dyn TableLike], kind: &Kind, id: &str) -> Option<usize> {
    let by = |key: &str| objs.iter().position(|o| str_of(*o, key) == Some(id));
    by("name").or_else(|| {
        (kind.path == USERS.path)
            .then(|| by("uuid").or_else(|| by("extension")))
            .flatten()
    })
}

/// The object's index, or 404.
fn locate(doc: &DocumentMut, kind: &Kind, t: usize, id: &str) -> Result<usize, ApiError> {
    find(&objects(doc, kind, t), kind, id)
        .ok_or_else(|| ApiError::not_found(format!("{} `{id}`: no such {}", kind.noun, kind.noun)))
}

/// An object as the API shows it, with its links.
pub fn show(doc: &DocumentMut, kind: &Kind, t: usize, i: usize) -> Map<String, Json> {
    let links = Links::of(doc, kind, t);
    links.show(kind, objects(doc, kind, t)[i])
}

/// Every object of a kind, as JSON.
pub fn show_all(doc: &DocumentMut, kind: &Kind, t: usize) -> Vec<Map<String, Json>> {
    let links = Links::of(doc, kind, t);
    objects(doc, kind, t)
        .into_iter()
        .map(|o| links.show(kind, o))
        .collect()
}

/// Who names the objects of a kind, by name: the call permissions that list each one, and
/// for users the groups they are in. Gathered once for a whole list, so that showing N
/// objects costs one pass over the permissions, not N.
struct Links {
    permissions: Option<HashMap<String, Vec<String>>>,
    groups: Option<HashMap<String, Vec<String>>>,
}

impl Links {
    fn of(doc: &DocumentMut, kind: &Kind, t: usize) -> Links {
        let index = |holder: &Kind, key: &str| {
            let mut map: HashMap<String, Vec<String>> = HashMap::new();
            for o in objects(doc, holder, t) {
                let Some(name) = str_of(o, "name") else {
                    continue;
                };
                for member in list_of(o, key) {
                    map.entry(member).or_default().push(name.to_owned());
                }
            }
            map
        };
        Links {
            permissions: kind.linked_by.map(|list| index(&CALL_PERMISSIONS, list)),
            groups: (kind.path == USERS.path).then(|| index(&GROUPS, "members")),
        }
    }

    fn show(&self, kind: &Kind, o: &dyn TableLike) -> Map<String, Json> {
        let mut out = object_json(kind, o);
        let name = str_of(o, "name").unwrap_or_default();
        let names = |map: &HashMap<String, Vec<String>>| -> Json {
            map.get(name).cloned().unwrap_or_default().into()
        };
        if let Some(p) = &self.permissions {
            out.insert("call_permissions".into(), names(p));
        }
        if let Some(g) = &self.groups {
            out.insert("groups".into(), names(g));
        }
        out
    }
}

/// Where an object is in the file, as the checker names it (`tenant[0].users[3]`): its
/// errors are then told by field.
pub fn file_path(kind: &Kind, t: usize, i: usize) -> String {
    match kind.scope {
        Scope::Root => format!("tenant[{i}]"),
        Scope::Brand => format!("brand.{}[{i}]", kind.key),
        Scope::Tenant => format!("tenant[{t}].{}[{i}]", kind.key),
    }
}

/// A name given in a reference list, as stored: the name of the object it designates (a user
/// may be given by `uuid` or extension), or as given when there is none (the checker then
/// says it is unknown).
fn canonical(doc: &DocumentMut, kind_path: &str, t: usize, id: &str) -> String {
    let Some(kind) = KINDS.into_iter().find(|k| k.path == kind_path) else {
        return id.to_owned();
    };
    let objs = objects(doc, kind, t);
    find(&objs, kind, id)
        .and_then(|i| str_of(objs[i], "name"))
        .unwrap_or(id)
        .to_owned()
}

/// What a body says, key by key, turned into TOML values (`None`: remove the key).
type Changes = Vec<(&'static str, Option<Value>)>;

/// Reads a JSON body into changes of an object of `kind`, with every problem at once.
/// `current` is the object as shown now (for an update), so that read-only keys given
/// unchanged are accepted.
fn read_body(
    doc: &DocumentMut,
    kind: &Kind,
    t: usize,
    body: &Map<String, Json>,
    current: Option<&Map<String, Json>>,
) -> Result<Changes, ApiError> {
    let mut errors = Vec::new();
    let mut changes = Vec::new();
    for (key, value) in body {
        let Some(field) = kind.field(key) else {
            if kind.is_read_only(key) {
                read_only(kind, key, value, body, current, &mut errors);
            } else {
                errors.push(format!("{key}: unknown key"));
            }
            continue;
        };
        match to_toml(doc, t, field.ty, value) {
            Ok(v) => changes.push((field.key, v)),
            Err(e) => errors.push(format!("{key}: {e}")),
        }
    }
    if errors.is_empty() {
        Ok(changes)
    } else {
        Err(ApiError::invalid(errors))
    }
}

/// A read-only key in a body: accepted when it says what is already so.
fn read_only(
    kind: &Kind,
    key: &str,
    value: &Json,
    body: &Map<String, Json>,
    current: Option<&Map<String, Json>>,
    errors: &mut Vec<String>,
) {
    let is = current.and_then(|c| c.get(key));
    let fine = match key {
        // The id is the name: the current one, or the one being given.
        "id" => Some(value) == is || Some(value) == body.get("name"),
        k if k.ends_with("_set") => value.is_boolean(),
        _ => match (value, is) {
            (Json::Array(given), Some(Json::Array(now))) => {
                let a: HashSet<&Json> = given.iter().collect();
                let b: HashSet<&Json> = now.iter().collect();
                a == b
            }
            (Json::Array(given), None) => given.is_empty(),
            _ => false,
        },
    };
    if !fine {
        let how = if key == "id" {
            "read-only: an object's id is its name".to_owned()
        } else if key.ends_with("_set") {
            "read-only: must be true or false".to_owned()
        } else {
            format!(
                "read-only: associate with PUT or DELETE /1.1/{}/{{id}}/callpermissions/{{name}}",
                kind.path
            )
        };
        errors.push(format!("{key}: {how}"));
    }
}

/// One JSON value as the TOML value of a key of type `ty` (`None`: remove the key).
fn to_toml(doc: &DocumentMut, t: usize, ty: Ty, value: &Json) -> Result<Option<Value>, String> {
    let strings = |v: &Json| -> Result<Vec<String>, String> {
        let Json::Array(items) = v else {
            return Err("expected a list of strings".into());
        };
        let mut out: Vec<String> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let Json::String(s) = item else {
                return Err(format!("[{i}]: expected a string"));
            };
            // A duplicate entry is collapsed.
            if !out.contains(s) {
                out.push(s.clone());
            }
        }
        Ok(out)
    };
    match (ty, value) {
        (Ty::OptStr | Ty::Secret | Ty::OptList, Json::Null) => Ok(None),
        (_, Json::Null) => Err("cannot be null".into()),
        (Ty::Str(_) | Ty::OptStr | Ty::Secret, Json::String(s)) => Ok(Some(toml_str(s))),
        (Ty::Str(_) | Ty::OptStr | Ty::Secret, _) => Err("expected a string".into()),
        (Ty::Bool(_), Json::Bool(b)) => Ok(Some(Value::from(*b))),
        (Ty::Bool(_), _) => Err("expected true or false".into()),
        (Ty::List | Ty::OptList, v) => strings(v).map(|l| Some(toml_list(&l))),
        (Ty::Refs(kind), v) => {
            let names: Vec<String> = strings(v)?
                .iter()
                .map(|id| canonical(doc, kind, t, id))
                .collect();
            let mut unique = Vec::with_capacity(names.len());
            for n in names {
                if !unique.contains(&n) {
                    unique.push(n);
                }
            }
            Ok(Some(toml_list(&unique)))
        }
        (Ty::Rules, v) => rules(v).map(Some),
    }
}

/// A Call ACL's rules: `[{metric, pattern, action}]`, each key of its type and no other.
fn rules(v: &Json) -> Result<Value, String> {
    let Json::Array(items) = v else {
        return Err("expected a list of rules".into());
    };
    let mut out = Array::new();
    for (i, item) in items.iter().enumerate() {
        let Json::Object(rule) = item else {
            return Err(format!(
                "[{i}]: expected an object with metric, pattern and action"
            ));
        };
        if let Some(k) = rule
            .keys()
            .find(|k| !["metric", "pattern", "action"].contains(&k.as_str()))
        {
            return Err(format!("[{i}].{k}: unknown key"));
        }
        // In the order an administrator writes them.
        let mut t = InlineTable::new();
        match rule.get("metric") {
            None => {}
            Some(Json::Number(n)) if n.as_i64().is_some() => {
                t.insert("metric", Value::from(n.as_i64().unwrap_or_default()));
            }
            Some(_) => return Err(format!("[{i}].metric: expected a whole number")),
        }
        for k in ["pattern", "action"] {
            match rule.get(k) {
                None => {}
                Some(Json::String(s)) => {
                    t.insert(k, Value::from(s.as_str()));
                }
                Some(_) => return Err(format!("[{i}].{k}: expected a string")),
            }
        }
        out.push(t);
    }
    Ok(Value::Array(out))
}

/// Applies changes to an object.
fn apply(t: &mut dyn TableLike, changes: Changes) {
    for (key, value) in changes {
        match value {
            Some(v) => set(t, key, v),
            None => {
                t.remove(key);
            }
        }
    }
}

/// What an edit did: the object's place in the file and its name (after the edit).
pub struct Edited {
    pub path: String,
    pub name: String,
}

/// Creates an object of `kind` from a JSON body.
pub fn create(
    doc: &mut DocumentMut,
    kind: &Kind,
    t: usize,
    body: &Map<String, Json>,
) -> Result<Edited, ApiError> {
    let name = match body.get("name") {
        Some(Json::String(n)) => n.clone(),
        Some(_) => return Err(ApiError::invalid(vec!["name: expected a string".into()])),
        None => return Err(ApiError::invalid(vec!["name: missing required key".into()])),
    };
    let changes = read_body(doc, kind, t, body, None)?;
    // The checker would say so too, but an object that is not yet in the file has no place
    // for its error to point at.
    if find(&objects(doc, kind, t), kind, &name)
        .is_some_and(|i| str_of(objects(doc, kind, t)[i], "name") == Some(name.as_str()))
    {
        return Err(ApiError::invalid(vec![format!(
            "name: a {} named `{name}` already exists",
            kind.noun
        )]));
    }
    // Keys in the order of the kind's fields, as an administrator would write them.
    let mut keys = Vec::new();
    for field in kind.fields {
        if let Some((_, Some(v))) = changes.iter().find(|(k, _)| *k == field.key) {
            keys.push((field.key, v.clone()));
        }
    }
    let mut entries = entries_mut(doc, kind, t)?;
    entries.push(keys);
    let i = entries.len() - 1;
    Ok(Edited {
        path: file_path(kind, t, i),
        name,
    })
}

/// Updates the keys a JSON body gives (the others stay); a new name is followed by every
/// reference to the object.
pub fn update(
    doc: &mut DocumentMut,
    kind: &Kind,
    t: usize,
    id: &str,
    body: &Map<String, Json>,
) -> Result<Edited, ApiError> {
    let i = locate(doc, kind, t, id)?;
    let current = show(doc, kind, t, i);
    let old = str_of(objects(doc, kind, t)[i], "name")
        .unwrap_or_default()
        .to_owned();
    let changes = read_body(doc, kind, t, body, Some(&current))?;
    let mut entries = entries_mut(doc, kind, t)?;
    let object = entries.get_mut(i).ok_or_else(|| {
        ApiError::not_found(format!("{} `{id}`: no such {}", kind.noun, kind.noun))
    })?;
    apply(object, changes);
    let name = str_of(object, "name").unwrap_or_default().to_owned();
    if name != old {
        rename(doc, kind, t, &old, &name);
    }
    Ok(Edited {
        path: file_path(kind, t, i),
        name,
    })
}

/// Deletes an object, and takes it out of every list that names it.
pub fn delete(doc: &mut DocumentMut, kind: &Kind, t: usize, id: &str) -> Result<Edited, ApiError> {
    let i = locate(doc, kind, t, id)?;
    let name = str_of(objects(doc, kind, t)[i], "name")
        .unwrap_or_default()
        .to_owned();
    entries_mut(doc, kind, t)?.remove(i);
    if let Some(list) = kind.linked_by {
        edit_lists(doc, t, CALL_PERMISSIONS.key, list, &name, None);
    }
    if kind.path == USERS.path {
        edit_lists(doc, t, GROUPS.key, "members", &name, None);
    }
    Ok(Edited {
        path: file_path(kind, t, i),
        name,
    })
}

/// Associates (`on`) or dissociates a call permission with an object of a linked kind.
/// Idempotent: associating twice changes nothing the second time.
pub fn associate(
    doc: &mut DocumentMut,
    kind: &Kind,
    t: usize,
    id: &str,
    permission: &str,
    on: bool,
) -> Result<Edited, ApiError> {
    let list = kind
        .linked_by
        .ok_or_else(|| ApiError::not_found(format!("{}s have no call permissions", kind.noun)))?;
    let i = locate(doc, kind, t, id)?;
    let name = str_of(objects(doc, kind, t)[i], "name")
        .unwrap_or_default()
        .to_owned();
    let p = locate(doc, &CALL_PERMISSIONS, t, permission)?;
    let mut entries = entries_mut(doc, &CALL_PERMISSIONS, t)?;
    let perm = entries.get_mut(p).ok_or_else(|| {
        ApiError::not_found(format!(
            "call permission `{permission}`: no such call permission"
        ))
    })?;
    let mut names = list_of(perm, list);
    let has = names.contains(&name);
    if on && !has {
        match perm.get_mut(list).and_then(Item::as_array_mut) {
            Some(a) => a.push(name.as_str()),
            None => {
                names.push(name.clone());
                set(perm, list, toml_list(&names));
            }
        }
    } else if !on && has {
        if let Some(a) = perm.get_mut(list).and_then(Item::as_array_mut) {
            a.retain(|v| v.as_str() != Some(name.as_str()));
        }
    }
    Ok(Edited {
        path: file_path(&CALL_PERMISSIONS, t, p),
        name: permission.to_owned(),
    })
}

/// Follows a rename through every reference to the object.
fn rename(doc: &mut DocumentMut, kind: &Kind, t: usize, old: &str, new: &str) {
    if let Some(list) = kind.linked_by {
        edit_lists(doc, t, CALL_PERMISSIONS.key, list, old, Some(new));
    }
    match kind.path {
        p if p == USERS.path => {
            edit_lists(doc, t, GROUPS.key, "members", old, Some(new));
            edit_scalars(doc, t, INCALLS.key, "destination", old, new);
        }
        p if p == GROUPS.path => edit_scalars(doc, t, INCALLS.key, "destination", old, new),
        p if p == CALL_ACLS.path => edit_scalars(doc, t, USERS.key, "call_acl", old, new),
        "aclpatterns" => rename_rule_patterns(doc, t, old, new),
        "brand/aclpatterns" => {
            // Rules name the brand pattern only in tenants that do not have their own
            // pattern of that name.
            for tt in 0..tenant_tables(doc).len() {
                let overridden = objects(doc, &super::model::ACL_PATTERNS, tt)
                    .iter()
                    .any(|p| str_of(*p, "name") == Some(old));
                if !overridden {
                    rename_rule_patterns(doc, tt, old, new);
                }
            }
        }
        _ => {}
    }
}

/// In tenant `t`, in every object at `kind_key`, in its list `list`: replaces `old` with
/// `new`, or removes it when `new` is `None`.
fn edit_lists(
    doc: &mut DocumentMut,
    t: usize,
    kind_key: &str,
    list: &str,
    old: &str,
    new: Option<&str>,
) {
    each_object(doc, t, kind_key, |o| {
        let Some(a) = o.get_mut(list).and_then(Item::as_array_mut) else {
            return;
        };
        match new {
            Some(n) => {
                for i in 0..a.len() {
                    if a.get(i).and_then(Value::as_str) == Some(old) {
                        a.replace(i, n);
                    }
                }
            }
            None => a.retain(|v| v.as_str() != Some(old)),
        }
    });
}

/// In tenant `t`, in every object at `kind_key`: the string `key` equal to `old` becomes `new`.
fn edit_scalars(doc: &mut DocumentMut, t: usize, kind_key: &str, key: &str, old: &str, new: &str) {
    each_object(doc, t, kind_key, |o| {
        if str_of(o, key) == Some(old) {
            set(o, key, toml_str(new));
        }
    });
}

/// In tenant `t`, every ACL rule naming the pattern `old` names `new`.
fn rename_rule_patterns(doc: &mut DocumentMut, t: usize, old: &str, new: &str) {
    each_object(doc, t, CALL_ACLS.key, |acl| {
        let Some(rules) = acl.get_mut("rules").and_then(Item::as_array_mut) else {
            return;
        };
        for rule in rules.iter_mut() {
            if let Some(r) = rule.as_inline_table_mut() {
                if r.get("pattern").and_then(Value::as_str) == Some(old) {
                    let mut v = Value::from(new);
                    if let Some(d) = r.get("pattern").map(|p| p.decor().clone()) {
                        *v.decor_mut() = d;
                    }
                    r.insert("pattern", v);
                }
            }
        }
    });
}

/// Calls `f` on every object at `kind_key` of tenant `t`.
fn each_object(
    doc: &mut DocumentMut,
    t: usize,
    kind_key: &str,
    mut f: impl FnMut(&mut dyn TableLike),
) {
    let Some(tenant) = tenant_mut(doc, t) else {
        return;
    };
    match tenant.get_mut(kind_key) {
        Some(Item::ArrayOfTables(a)) => a.iter_mut().for_each(|o| f(o)),
        Some(Item::Value(Value::Array(a))) => a
            .iter_mut()
            .filter_map(Value::as_inline_table_mut)
            .for_each(|o| f(o)),
        _ => {}
    }
}

/// A JSON value of an object as a TOML-free scalar, for filters and ordering.
pub fn scalar_text(v: &Json) -> Option<String> {
    match v {
        Json::String(s) => Some(s.clone()),
        Json::Bool(b) => Some(b.to_string()),
        Json::Number(n) => Some(n.to_string()),
        Json::Null => Some(String::new()),
        _ => None,
    }
}
