//! The admin API's objects (SPEC §9.2): what each kind of object is called in the API and in
//! the file, its keys and their types, and how an object of the file (a table of the TOML
//! document) becomes JSON and back.
//!
//! The API edits the document, not the checked configuration: what it writes is then checked
//! as a whole by the same checker as `validate`, so the API and the file cannot disagree on
//! what is valid. This module only knows the shapes: a string, a list of strings, a
//! password that is never shown.

use serde_json::{json, Map, Value as Json};
use toml_edit::{Array, ArrayOfTables, DocumentMut, InlineTable, Item, Table, TableLike, Value};

/// Where a kind's objects are in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `[[tenant]]` itself.
    Root,
    /// Inside `[brand]`.
    Brand,
    /// Inside each `[[tenant]]`.
    Tenant,
}

/// The type of a key, as the API reads and writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    /// A string that is always there (or has a default: `null` is refused).
    Str(Option<&'static str>),
    /// A string that may be absent: `null` removes it.
    OptStr,
    /// A write-only string (a PIN or a digest secret): shown as `<key>_set`; `null` clears it.
    Secret,
    /// A list of strings (empty when absent).
    List,
    /// A list of strings that may be absent (an ACL pattern's `numbers`).
    OptList,
    /// A list of references to objects of another kind, by name (given also by `uuid` or
    /// extension for users); stored by name.
    Refs(&'static str),
    /// A boolean with its default.
    Bool(bool),
    /// A Call ACL's rules: `[{metric, pattern, action}]`.
    Rules,
}

/// A key of a kind.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub key: &'static str,
    pub ty: Ty,
}

const fn f(key: &'static str, ty: Ty) -> Field {
    Field { key, ty }
}

/// A kind of object.
#[derive(Debug)]
pub struct Kind {
    /// Its name in API paths: `callpermissions`.
    pub path: &'static str,
    /// Its key in the file: `call_permissions`.
    pub key: &'static str,
    /// How an error names one: `call permission`.
    pub noun: &'static str,
    pub scope: Scope,
    pub fields: &'static [Field],
    /// Whether the API creates, changes and deletes them (the others are read-only: the
    /// PBX's routes and services are the file's business).
    pub writable: bool,
    /// The key of a call permission that lists objects of this kind, if any: such objects
    /// show the permissions that name them as `call_permissions`, and have association
    /// endpoints.
    pub linked_by: Option<&'static str>,
}

pub const CALL_PERMISSIONS: Kind = Kind {
    path: "callpermissions",
    key: "call_permissions",
    noun: "call permission",
    scope: Scope::Tenant,
    fields: &[
        f("name", Ty::Str(None)),
        f("mode", Ty::Str(Some("deny"))),
        f("extensions", Ty::List),
        f("password", Ty::Secret),
        f("enabled", Ty::Bool(true)),
        f("description", Ty::Str(Some(""))),
        f("users", Ty::Refs("users")),
        f("groups", Ty::Refs("groups")),
        f("outcalls", Ty::Refs("outcalls")),
        f("incalls", Ty::Refs("incalls")),
    ],
    writable: true,
    linked_by: None,
};

pub const USERS: Kind = Kind {
    path: "users",
    key: "users",
    noun: "user",
    scope: Scope::Tenant,
    fields: &[
        f("name", Ty::Str(None)),
        f("extension", Ty::Str(None)),
        f("call_acl", Ty::OptStr),
        f("call_permission_password", Ty::Secret),
        f("country", Ty::OptStr),
        f("uuid", Ty::OptStr),
        f("auth_username", Ty::OptStr),
        f("auth_password", Ty::Secret),
        f("auth_ha1", Ty::Secret),
    ],
    writable: true,
    linked_by: Some("users"),
};

pub const GROUPS: Kind = Kind {
    path: "groups",
    key: "groups",
    noun: "group",
    scope: Scope::Tenant,
    fields: &[
        f("name", Ty::Str(None)),
        f("number", Ty::OptStr),
        f("members", Ty::Refs("users")),
    ],
    writable: true,
    linked_by: Some("groups"),
};

pub const OUTCALLS: Kind = Kind {
    path: "outcalls",
    key: "outcalls",
    noun: "outcall",
    scope: Scope::Tenant,
    fields: &[
        f("name", Ty::Str(None)),
        f("patterns", Ty::List),
        f("next_hop", Ty::OptStr),
    ],
    writable: false,
    linked_by: Some("outcalls"),
};

pub const INCALLS: Kind = Kind {
    path: "incalls",
    key: "incalls",
    noun: "incall",
    scope: Scope::Tenant,
    fields: &[
        f("name", Ty::Str(None)),
        f("did", Ty::Str(None)),
        f("destination", Ty::Str(None)),
    ],
    writable: false,
    linked_by: Some("incalls"),
};

const SERVICE_FIELDS: &[Field] = &[f("name", Ty::Str(None)), f("number", Ty::OptStr)];

pub const QUEUES: Kind = Kind {
    path: "queues",
    key: "queues",
    noun: "queue",
    scope: Scope::Tenant,
    fields: SERVICE_FIELDS,
    writable: false,
    linked_by: None,
};

pub const CONFERENCES: Kind = Kind {
    path: "conferences",
    key: "conferences",
    noun: "conference",
    scope: Scope::Tenant,
    fields: SERVICE_FIELDS,
    writable: false,
    linked_by: None,
};

pub const CALL_ACLS: Kind = Kind {
    path: "callacls",
    key: "call_acls",
    noun: "Call ACL",
    scope: Scope::Tenant,
    fields: &[
        f("name", Ty::Str(None)),
        f("default", Ty::Str(None)),
        f("rules", Ty::Rules),
    ],
    writable: true,
    linked_by: None,
};

const PATTERN_FIELDS: &[Field] = &[
    f("name", Ty::Str(None)),
    f("regex", Ty::OptStr),
    f("numbers", Ty::OptList),
];

pub const ACL_PATTERNS: Kind = Kind {
    path: "aclpatterns",
    key: "acl_patterns",
    noun: "ACL pattern",
    scope: Scope::Tenant,
    fields: PATTERN_FIELDS,
    writable: true,
    linked_by: None,
};

pub const BRAND_ACL_PATTERNS: Kind = Kind {
    path: "brand/aclpatterns",
    key: "acl_patterns",
    noun: "brand ACL pattern",
    scope: Scope::Brand,
    fields: PATTERN_FIELDS,
    writable: true,
    linked_by: None,
};

pub const TENANTS: Kind = Kind {
    path: "tenants",
    key: "tenant",
    noun: "tenant",
    scope: Scope::Root,
    fields: &[
        f("name", Ty::Str(None)),
        f("domains", Ty::List),
        f("sources", Ty::List),
        f("realm", Ty::OptStr),
        f("country", Ty::Str(None)),
        f("area_code", Ty::OptStr),
        f("next_hop", Ty::OptStr),
    ],
    writable: false,
    linked_by: None,
};

/// Every kind, for routing by path.
pub const KINDS: [&Kind; 11] = [
    &CALL_PERMISSIONS,
    &USERS,
    &GROUPS,
    &OUTCALLS,
    &INCALLS,
    &QUEUES,
    &CONFERENCES,
    &CALL_ACLS,
    &ACL_PATTERNS,
    &BRAND_ACL_PATTERNS,
    &TENANTS,
];

/// The kinds whose objects call permissions are associated with, by path.
pub fn linked_kind(path: &str) -> Option<&'static Kind> {
    KINDS
        .into_iter()
        .find(|k| k.path == path && k.linked_by.is_some())
}

impl Kind {
    pub fn field(&self, key: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.key == key)
    }

    /// Whether `key` is one the API shows but never writes: `id`, `<secret>_set`, and the
    /// lists of links computed from other objects.
    pub fn is_read_only(&self, key: &str) -> bool {
        key == "id"
            || (key == "call_permissions" && self.linked_by.is_some())
            || (key == "groups" && self.path == "users")
            || key.strip_suffix("_set").is_some_and(|secret| {
                self.field(secret)
                    .is_some_and(|f| matches!(f.ty, Ty::Secret))
            })
    }
}

/// The objects of one kind in one place of the document: an array of tables
/// (`[[tenant.users]]`) or an array of inline tables (`users = [{...}]`), as the file has it.
pub enum Entries<'d> {
    Tables(&'d mut ArrayOfTables),
    Inline(&'d mut Array),
}

impl<'d> Entries<'d> {
    pub fn len(&self) -> usize {
        match self {
            Entries::Tables(a) => a.len(),
            Entries::Inline(a) => a.len(),
        }
    }

    pub fn get_mut(&mut self, i: usize) -> Option<&mut dyn TableLike> {
        match self {
            Entries::Tables(a) => a.get_mut(i).map(|t| t as &mut dyn TableLike),
            Entries::Inline(a) => a
                .get_mut(i)
                .and_then(Value::as_inline_table_mut)
                .map(|t| t as &mut dyn TableLike),
        }
    }

    /// Object `i`, for as long as the entries were borrowed.
    pub fn into_mut(self, i: usize) -> Option<&'d mut dyn TableLike> {
        match self {
            Entries::Tables(a) => a.get_mut(i).map(|t| t as &mut dyn TableLike),
            Entries::Inline(a) => a
                .get_mut(i)
                .and_then(Value::as_inline_table_mut)
                .map(|t| t as &mut dyn TableLike),
        }
    }

    pub fn remove(&mut self, i: usize) {
        match self {
            Entries::Tables(a) => {
                a.remove(i);
            }
            Entries::Inline(a) => {
                a.remove(i);
            }
        }
    }

    /// Appends an object made of `keys`, laid out like the objects already there.
    pub fn push(&mut self, keys: Vec<(&'static str, Value)>) {
        match self {
            Entries::Tables(a) => {
                let mut t = Table::new();
                // Indented like its elder sibling, when it has one.
                let indent = a.iter().last().map(indentation).unwrap_or_default();
                t.decor_mut().set_prefix(format!("\n{indent}"));
                for (k, v) in keys {
                    t.insert(k, Item::Value(v));
                    if let Some(mut key) = t.key_mut(k) {
                        key.leaf_decor_mut().set_prefix(indent.clone());
                    }
                }
                a.push(t);
            }
            Entries::Inline(a) => {
                let mut t = InlineTable::new();
                for (k, v) in keys {
                    t.insert(k, v);
                }
                a.push(t);
            }
        }
    }
}

/// The whitespace a table's header is indented with.
fn indentation(t: &Table) -> String {
    let prefix = t.decor().prefix().and_then(|p| p.as_str()).unwrap_or("");
    let last = prefix.rsplit('\n').next().unwrap_or("");
    last.chars()
        .take_while(|c| *c == ' ' || *c == '\t')
        .collect()
}

/// The objects at `key` of `parent`, creating an empty array of tables when there are none.
pub fn entries_in<'d>(parent: &'d mut dyn TableLike, key: &str) -> Option<Entries<'d>> {
    if !parent.contains_key(key) {
        parent.insert(key, Item::ArrayOfTables(ArrayOfTables::new()));
    }
    match parent.get_mut(key)? {
        Item::ArrayOfTables(a) => Some(Entries::Tables(a)),
        Item::Value(Value::Array(a)) => Some(Entries::Inline(a)),
        _ => None,
    }
}

/// The `[[tenant]]` tables.
pub fn tenants(doc: &mut DocumentMut) -> Option<Entries<'_>> {
    match doc.as_table_mut().get_mut("tenant")? {
        Item::ArrayOfTables(a) => Some(Entries::Tables(a)),
        Item::Value(Value::Array(a)) => Some(Entries::Inline(a)),
        _ => None,
    }
}

/// A string value of an object.
pub fn str_of<'t>(t: &'t dyn TableLike, key: &str) -> Option<&'t str> {
    t.get(key).and_then(Item::as_str)
}

/// A list of strings of an object (empty when absent).
pub fn list_of(t: &dyn TableLike, key: &str) -> Vec<String> {
    t.get(key)
        .and_then(Item::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A TOML value as JSON.
pub fn to_json(v: &Value) -> Json {
    match v {
        Value::String(s) => Json::String(s.value().clone()),
        Value::Integer(i) => json!(*i.value()),
        Value::Float(x) => json!(*x.value()),
        Value::Boolean(b) => Json::Bool(*b.value()),
        Value::Datetime(d) => Json::String(d.value().to_string()),
        Value::Array(a) => Json::Array(a.iter().map(to_json).collect()),
        Value::InlineTable(t) => {
            Json::Object(t.iter().map(|(k, v)| (k.to_owned(), to_json(v))).collect())
        }
    }
}

/// An object of the file as the API shows it: `id`, every key of its kind (defaults filled
/// in, secrets as `<key>_set`).
pub fn object_json(kind: &Kind, t: &dyn TableLike) -> Map<String, Json> {
    let mut out = Map::new();
    out.insert(
        "id".into(),
        Json::String(str_of(t, "name").unwrap_or_default().to_owned()),
    );
    for field in kind.fields {
        let value = t.get(field.key).and_then(Item::as_value);
        let shown = match (field.ty, value) {
            (Ty::Secret, v) => {
                out.insert(format!("{}_set", field.key), Json::Bool(v.is_some()));
                continue;
            }
            (_, Some(v)) => to_json(v),
            (Ty::Str(Some(d)), None) => Json::String(d.to_owned()),
            (Ty::Bool(d), None) => Json::Bool(d),
            (Ty::List | Ty::Refs(_) | Ty::Rules, None) => Json::Array(Vec::new()),
            (Ty::Str(None) | Ty::OptStr | Ty::OptList, None) => Json::Null,
        };
        out.insert(field.key.to_owned(), shown);
    }
    out
}

/// Lays a list out one item per line, indented one step more than its key.
fn one_per_line(a: &mut Array, indent: &str) {
    for v in a.iter_mut() {
        v.decor_mut().set_prefix(format!("\n{indent}  "));
        v.decor_mut().set_suffix("");
    }
    a.set_trailing_comma(true);
    a.set_trailing(format!("\n{indent}"));
}

/// A JSON string as a TOML string.
pub fn toml_str(s: &str) -> Value {
    Value::from(s)
}

/// A list of strings as a TOML array.
pub fn toml_list(items: &[String]) -> Value {
    let mut a = Array::new();
    for s in items {
        a.push(s.as_str());
    }
    Value::Array(a)
}

/// Sets `key` of an object to `value`, keeping the comment that followed the old value; a
/// new key is indented like the object's first key.
pub fn set(t: &mut dyn TableLike, key: &str, mut value: Value) {
    let key_indent = t
        .key(key)
        .and_then(|k| k.leaf_decor().prefix().and_then(|p| p.as_str()))
        .unwrap_or("")
        .to_owned();
    if let Some(slot) = t.get_mut(key) {
        // Replaced in place: the key keeps its own layout (indentation) too.
        if let Some(old) = slot.as_value() {
            *value.decor_mut() = old.decor().clone();
            // A list written one item per line stays so.
            if let (Value::Array(was), Value::Array(new)) = (old, &mut value) {
                if was.to_string().contains('\n') {
                    one_per_line(new, &key_indent);
                }
            }
        }
        *slot = Item::Value(value);
        return;
    }
    let indent = t
        .iter()
        .next()
        .and_then(|(first, _)| t.key(first))
        .and_then(|k| k.leaf_decor().prefix().and_then(|p| p.as_str()))
        .map(str::to_owned);
    t.insert(key, Item::Value(value));
    if let (Some(indent), Some(mut k)) = (indent, t.key_mut(key)) {
        k.leaf_decor_mut().set_prefix(indent);
    }
}
