//! The document edits of the admin API, without a server: where a new object lands, what a
//! rename or a delete does to the references, what is kept of the file's layout, and that
//! every result is checked by the configuration's own checker.

use serde_json::{json, Map, Value as Json};
use toml_edit::DocumentMut;

use super::edit;
use super::model::{ACL_PATTERNS, BRAND_ACL_PATTERNS, CALL_ACLS, CALL_PERMISSIONS, GROUPS, USERS};
use crate::config::Config;

const TWO_TENANTS: &str = r#"# top comment
[server]
listen = ["udp:127.0.0.1:5060"]
next_hop = "udp:127.0.0.1:5070"

[brand]
name = "b"

[[brand.acl_patterns]]
name = "mobile"
regex = '^346'

[[tenant]]
name = "one"
country = "ES"

  [[tenant.acl_patterns]]
  name = "mobile"          # overrides the brand's
  regex = '^347'

  [[tenant.call_acls]]
  name = "acl"
  default = "deny"
  rules = [{ metric = 1, pattern = "mobile", action = "allow" }]

  [[tenant.users]]
  name = "alice"           # alice's comment
  extension = "1001"
  call_acl = "acl"

  [[tenant.groups]]
  name = "g"
  members = ["alice"]

  [[tenant.incalls]]
  name = "did"
  did = "+34910000000"
  destination = "alice"

  [[tenant.call_permissions]]
  name = "p"
  extensions = ["1"]
  users = ["alice"]
  groups = ["g"]

[[tenant]]
name = "two"
country = "FR"
users = [{ name = "zoe", extension = "2001" }]
call_acls = [{ name = "acl2", default = "allow", rules = [{ metric = 1, pattern = "mobile", action = "deny" }] }]
"#;

fn doc() -> DocumentMut {
    TWO_TENANTS.parse().expect("parse")
}

fn obj(v: Json) -> Map<String, Json> {
    match v {
        Json::Object(m) => m,
        _ => panic!("not an object"),
    }
}

/// The edited document must be a valid configuration, and is returned as it would be loaded.
#[track_caller]
fn checked(d: &DocumentMut) -> Config {
    Config::from_toml(&d.to_string(), "t.toml", None).unwrap_or_else(|e| panic!("{e}\n{}", d))
}

#[test]
fn a_new_object_lands_in_its_tenant() {
    let mut d = doc();
    let e = edit::create(
        &mut d,
        &CALL_PERMISSIONS,
        0,
        &obj(json!({"name": "new", "extensions": ["2"], "users": ["1001"]})),
    )
    .expect("create");
    assert_eq!(e.path, "tenant[0].call_permissions[1]");
    let c = checked(&d);
    let one = &c.policy.tenants[0].spec;
    assert_eq!(one.permissions.len(), 2, "{d}");
    assert_eq!(c.policy.tenants[1].spec.permissions.len(), 0);
    // Stored by name, indented like its sibling, and the comments are all there.
    let text = d.to_string();
    assert!(
        text.contains("\n  [[tenant.call_permissions]]\n  name = \"new\""),
        "{text}"
    );
    assert!(text.contains("users = [\"alice\"]"));
    for comment in [
        "# top comment",
        "# overrides the brand's",
        "# alice's comment",
    ] {
        assert!(text.contains(comment), "{comment} lost:\n{text}");
    }
    // In the second tenant, whose objects are inline arrays.
    edit::create(
        &mut d,
        &USERS,
        1,
        &obj(json!({"name": "yves", "extension": "2002"})),
    )
    .expect("create");
    assert_eq!(checked(&d).policy.tenants[1].spec.users.len(), 2, "{d}");
}

#[test]
fn a_rename_follows_every_reference() {
    let mut d = doc();
    edit::update(&mut d, &USERS, 0, "1001", &obj(json!({"name": "alicia"}))).expect("user");
    edit::update(&mut d, &GROUPS, 0, "g", &obj(json!({"name": "sales"}))).expect("group");
    edit::update(
        &mut d,
        &CALL_ACLS,
        0,
        "acl",
        &obj(json!({"name": "acl-one"})),
    )
    .expect("acl");
    let text = d.to_string();
    assert!(text.contains("members = [\"alicia\"]"), "{text}");
    assert!(text.contains("destination = \"alicia\""), "{text}");
    assert!(text.contains("groups = [\"sales\"]"), "{text}");
    assert!(text.contains("call_acl = \"acl-one\""), "{text}");
    assert!(
        text.contains("name = \"alicia\"           # alice's comment"),
        "{text}"
    );
    checked(&d);
    // The brand's pattern is renamed in tenant two's rules, not in tenant one's, whose rule
    // names its own pattern of that name.
    edit::update(
        &mut d,
        &BRAND_ACL_PATTERNS,
        0,
        "mobile",
        &obj(json!({"name": "mobiles"})),
    )
    .expect("brand pattern");
    let text = d.to_string();
    assert!(
        text.contains(r#"pattern = "mobiles", action = "deny""#),
        "{text}"
    );
    assert!(
        text.contains(r#"pattern = "mobile", action = "allow""#),
        "{text}"
    );
    checked(&d);
    edit::update(
        &mut d,
        &ACL_PATTERNS,
        0,
        "mobile",
        &obj(json!({"name": "own"})),
    )
    .expect("tenant pattern");
    assert!(d
        .to_string()
        .contains(r#"pattern = "own", action = "allow""#));
    checked(&d);
}

#[test]
fn a_delete_leaves_every_list() {
    let mut d = doc();
    // alice is an incall's destination: deleting her leaves the file invalid, which the
    // checker says (the API answers 400 and writes nothing).
    edit::delete(&mut d, &USERS, 0, "alice").expect("delete");
    let text = d.to_string();
    assert!(!text.contains("\"alice\"]"), "{text}");
    let errors = Config::from_toml(&text, "t.toml", None).expect_err("dangling incall");
    assert!(errors.to_string().contains("alice"), "{errors}");
    let mut d = doc();
    edit::delete(&mut d, &GROUPS, 0, "g").expect("delete");
    assert!(d.to_string().contains("groups = []"), "{d}");
    checked(&d);
}

#[test]
fn associations_are_idempotent() {
    let mut d = doc();
    edit::create(
        &mut d,
        &CALL_PERMISSIONS,
        0,
        &obj(json!({"name": "q", "extensions": ["3"]})),
    )
    .expect("create");
    for _ in 0..2 {
        edit::associate(&mut d, &USERS, 0, "alice", "q", true).expect("associate");
    }
    let once = d.to_string();
    assert_eq!(once.matches("users = [\"alice\"]").count(), 2, "{once}");
    for _ in 0..2 {
        edit::associate(&mut d, &USERS, 0, "alice", "q", false).expect("dissociate");
    }
    checked(&d);
    assert!(edit::associate(&mut d, &USERS, 0, "nobody", "q", true).is_err());
    assert!(edit::associate(&mut d, &USERS, 0, "alice", "nothing", true).is_err());
}

#[test]
fn bodies_are_read_strictly() {
    let mut d = doc();
    let before = d.to_string();
    let e = edit::update(
        &mut d,
        &USERS,
        0,
        "alice",
        &obj(
            json!({"extension": 5, "colour": "blue", "name": null, "groups": ["other"],
            "id": "someone", "auth_password_set": "yes"}),
        ),
    )
    .err()
    .expect("refused");
    assert_eq!(e.errors.len(), 6, "{:?}", e.errors);
    assert_eq!(d.to_string(), before, "nothing changed");
    // Read-only keys given as they are: accepted (a GET-modify-PUT round trip).
    let shown = edit::show(&d, &USERS, 0, 0);
    edit::update(&mut d, &USERS, 0, "alice", &shown).expect("round trip");
    assert_eq!(d.to_string(), before, "a round trip changes nothing");
}

#[test]
fn a_list_written_one_item_per_line_stays_so() {
    let text = TWO_TENANTS.replace(
        r#"rules = [{ metric = 1, pattern = "mobile", action = "allow" }]"#,
        "rules = [\n    { metric = 1, pattern = \"mobile\", action = \"allow\" },\n  ]",
    );
    let mut d: DocumentMut = text.parse().expect("parse");
    edit::update(
        &mut d,
        &CALL_ACLS,
        0,
        "acl",
        &obj(
            json!({"rules": [{"action": "deny", "pattern": "mobile", "metric": 5},
                              {"metric": 9, "pattern": "mobile", "action": "allow"}]}),
        ),
    )
    .expect("update");
    let out = d.to_string();
    assert!(
        out.contains(
            "  rules = [\n    { metric = 5, pattern = \"mobile\", action = \"deny\" },\n    { metric = 9, pattern = \"mobile\", action = \"allow\" },\n  ]\n"
        ),
        "{out}"
    );
    checked(&d);
}
