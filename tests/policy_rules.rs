//! Table-driven tests of the decision rules (SPEC §3–§4), each case on a small configuration of
//! its own, through the library's public path: `Config::from_toml` → `Policy::explain`.

use serde_json::Value;
use sipscreen::config::Config;
use sipscreen::policy::Call;
use sipscreen::report::decision_json;

const HEAD: &str = r#"
[server]
listen = ["udp:127.0.0.1:5060"]
next_hop = "udp:127.0.0.1:5070"

[pin]
dial_prefix = "**"

[brand]
name = "b"

[[brand.acl_patterns]]
name = "spain-mobile"
regex = '^34[67][0-9]{8}$'

[[tenant]]
name = "t"
country = "ES"
"#;

fn config(body: &str) -> Config {
    let text = format!("{HEAD}{body}");
    Config::from_toml(&text, "test.toml", None)
        .unwrap_or_else(|e| panic!("config should load:\n{e}\n{text}"))
}

/// Decides `from` → `to` (optionally forwarded, optionally with a PIN) and returns the JSON
/// object of `check --json`.
fn decide_full(c: &Config, from: &str, to: &str, fwd: Option<&str>, pin: Option<&str>) -> Value {
    let call = Call {
        tenant: 0,
        caller: from,
        dialed: to,
        forwarded_by: fwd,
    };
    let (d, _) = c.policy.explain(&call, pin);
    // The proxy's path (no explanation) must agree with the explained one.
    let fast = c.policy.decide(&call);
    if pin.is_none() {
        assert_eq!(
            fast.verdict, d.verdict,
            "decide and explain disagree for {from} → {to}"
        );
    }
    Value::Object(decision_json(&c.policy, &d))
}

fn decide(c: &Config, from: &str, to: &str) -> Value {
    decide_full(c, from, to, None, None)
}

#[track_caller]
fn expect(v: &Value, decision: &str) {
    assert_eq!(v["decision"], decision, "{v:#}");
}

const USERS: &str = r#"
  [[tenant.users]]
  name = "alice"
  extension = "1001"
  [[tenant.users]]
  name = "bob"
  extension = "1002"
  [[tenant.groups]]
  name = "sales"
  number = "2000"
  members = ["alice"]
  [[tenant.queues]]
  name = "support"
  number = "3000"
  [[tenant.conferences]]
  name = "weekly"
  number = "4000"
  [[tenant.outcalls]]
  name = "trunk"
  patterns = ["_X.", "_+X."]
  next_hop = "udp:127.0.0.1:5072"
"#;

fn user_in(country: &str) -> Config {
    config(&format!(
        "  [[tenant.users]]\n  name = \"u\"\n  extension = \"1\"\n  country = \"{country}\"\n"
    ))
}

#[test]
fn e164_normalization_examples() {
    let cases = [
        ("ES", "612345678", Some("+34612345678")),
        ("ES", "0033612345678", Some("+33612345678")),
        ("FR", "0612345678", Some("+33612345678")),
        ("FR", "612345678", Some("+33612345678")),
        ("FR", "0039061234567", Some("+39061234567")),
        ("ES", "112", Some("+34112")),
        ("ES", "+442034567890", Some("+442034567890")),
        ("US", "01133612345678", Some("+33612345678")),
        ("RU", "81033612345678", Some("+33612345678")),
        ("FR", "0078091234567", Some("+78091234567")),
        ("ES", "abc", None),
    ];
    for (country, dialed, want) in cases {
        let v = decide(&user_in(country), "u", dialed);
        assert_eq!(v["e164"].as_str(), want, "{country} {dialed}: {v:#}");
    }
}

#[test]
fn dialed_clean_up() {
    let c = user_in("FR");
    let cases = [
        ("06-12.34 (56)78", "0612345678"),
        ("%2B33612345678", "+33612345678"),
        ("+33612345678;npdi;rn=+33600000000", "+33612345678"),
        ("9989-0695395788", "99890695395788"),
    ];
    for (raw, cleaned) in cases {
        assert_eq!(decide(&c, "u", raw)["dialed"], cleaned, "{raw}");
    }
}

#[test]
fn area_code_completes_subscriber_numbers() {
    let text =
        format!("{HEAD}area_code = \"91\"\n").replace("country = \"ES\"", "country = \"ES\"");
    let c = Config::from_toml(&text, "t.toml", None).unwrap();
    let us = Config::from_toml(
        &text
            .replace("country = \"ES\"", "country = \"US\"")
            .replace("\"91\"", "\"212\""),
        "t.toml",
        None,
    )
    .unwrap();
    assert_eq!(decide(&us, "+1", "5550100")["e164"], "+12125550100");
    assert_eq!(decide(&us, "+1", "4155550100")["e164"], "+14155550100");
    assert_eq!(decide(&c, "+34", "612345678")["e164"], "+34612345678");
}

#[test]
fn normalization_is_cached_per_triple() {
    let c = user_in("ES");
    for _ in 0..3 {
        decide(&c, "u", "612345678");
    }
    assert_eq!(c.policy.tenants[0].cached_numbers(), 1);
    decide(&c, "u", "612345679");
    assert_eq!(c.policy.tenants[0].cached_numbers(), 2);
}

/// An ACL with the given rules and default, assigned to alice.
fn acl(patterns: &str, rules: &str, default: &str) -> Config {
    config(&format!(
        r#"{patterns}
  [[tenant.call_acls]]
  name = "a"
  default = "{default}"
  rules = [{rules}]
  [[tenant.users]]
  name = "alice"
  extension = "1001"
  call_acl = "a"
  [[tenant.queues]]
  name = "q"
  number = "3000"
"#
    ))
}

#[test]
fn call_acl_patterns() {
    let p = |name: &str, re: &str| {
        format!("  [[tenant.acl_patterns]]\n  name = \"{name}\"\n  regex = '{re}'\n")
    };
    // (patterns, rules, default, dialed, decision)
    let cases: Vec<(String, &str, &str, &str, &str)> = vec![
        // Unanchored regexes are searched: `34` is inside +442034567890.
        (
            p("has34", "34"),
            r#"{ metric = 1, pattern = "has34", action = "deny" }"#,
            "allow",
            "+442034567890",
            "deny",
        ),
        // IvozProvider's documented digits form and today's plus form both match.
        (
            p("es", "^34[67]"),
            r#"{ metric = 1, pattern = "es", action = "allow" }"#,
            "deny",
            "612345678",
            "allow",
        ),
        (
            p("es", r"^\+34"),
            r#"{ metric = 1, pattern = "es", action = "allow" }"#,
            "deny",
            "612345678",
            "allow",
        ),
        // `^+34` (unescaped plus) is a valid regex that never matches.
        (
            p("typo", "^+34"),
            r#"{ metric = 1, pattern = "typo", action = "allow" }"#,
            "deny",
            "612345678",
            "deny",
        ),
        (
            p("typo", "^+34"),
            r#"{ metric = 1, pattern = "typo", action = "deny" }"#,
            "allow",
            "+34612345678",
            "allow",
        ),
        // Brand patterns are inherited.
        (
            String::new(),
            r#"{ metric = 1, pattern = "spain-mobile", action = "allow" }"#,
            "deny",
            "612345678",
            "allow",
        ),
        // A tenant pattern of the same name overrides the brand's.
        (
            p("spain-mobile", "^999"),
            r#"{ metric = 1, pattern = "spain-mobile", action = "allow" }"#,
            "deny",
            "612345678",
            "deny",
        ),
        // `numbers` patterns are exact E.164.
        (
            "  [[tenant.acl_patterns]]\n  name = \"ho\"\n  numbers = [\"+34946002050\"]\n"
                .to_owned(),
            r#"{ metric = 1, pattern = "ho", action = "allow" }"#,
            "deny",
            "946002050",
            "allow",
        ),
        (
            "  [[tenant.acl_patterns]]\n  name = \"ho\"\n  numbers = [\"+34946002050\"]\n"
                .to_owned(),
            r#"{ metric = 1, pattern = "ho", action = "allow" }"#,
            "deny",
            "946002051",
            "deny",
        ),
        // A dialed string with no E.164 form meets no pattern: the default applies.
        (
            p("any", "."),
            r#"{ metric = 1, pattern = "any", action = "allow" }"#,
            "deny",
            "9989a0695395788",
            "deny",
        ),
        // Internal extensions are always allowed by the ACL.
        (String::new(), "", "deny", "3000", "allow"),
        (String::new(), "", "deny", "*21", "allow"),
        // No rule matches: the default decides.
        (String::new(), "", "deny", "612345678", "deny"),
        (String::new(), "", "allow", "612345678", "allow"),
    ];
    for (patterns, rules, default, dialed, want) in cases {
        let c = acl(&patterns, rules, default);
        let v = decide(&c, "alice", dialed);
        assert_eq!(
            v["decision"], want,
            "{patterns} [{rules}] default {default}, {dialed}: {v:#}"
        );
    }
}

#[test]
fn acl_rules_are_tried_by_metric() {
    let rules = |allow: i32, deny: i32| {
        format!(
            r#"{{ metric = {allow}, pattern = "spain-mobile", action = "allow" }}, {{ metric = {deny}, pattern = "all", action = "deny" }}"#
        )
    };
    let pat = "  [[tenant.acl_patterns]]\n  name = \"all\"\n  regex = '.'\n";
    let v = decide(&acl(pat, &rules(10, 20), "deny"), "alice", "612345678");
    expect(&v, "allow");
    assert_eq!(v["reason"], "call_acl a: rule metric 10 pattern spain-mobile matched, allow; no call permission matched");
    let v = decide(&acl(pat, &rules(20, 10), "deny"), "alice", "612345678");
    expect(&v, "deny");
    assert_eq!(
        v["reason"],
        "call_acl a: rule metric 10 pattern all matched, deny"
    );
    let v = decide(&acl(pat, &rules(10, 20), "deny"), "alice", "+4420123456");
    assert_eq!(
        v["reason"],
        "call_acl a: rule metric 20 pattern all matched, deny"
    );
}

#[test]
fn acl_deny_is_final_even_with_a_password_permission() {
    let c = config(
        r#"
  [[tenant.call_acls]]
  name = "a"
  default = "deny"
  [[tenant.users]]
  name = "alice"
  extension = "1001"
  call_acl = "a"
  [[tenant.call_permissions]]
  name = "p"
  mode = "allow"
  extensions = ["_X."]
  users = ["alice"]
"#,
    );
    let v = decide_full(&c, "alice", "612345678", None, Some("1234"));
    expect(&v, "deny");
    assert_eq!(v["stage"], "call_acl");
    assert_eq!(v["reason"], "call_acl a: no rule matched, default deny");
}

/// Permissions on top of [`USERS`].
fn perms(body: &str) -> Config {
    config(&format!("{USERS}{body}"))
}

fn perm(name: &str, mode: &str, exts: &str, holders: &str, extra: &str) -> String {
    format!("  [[tenant.call_permissions]]\n  name = \"{name}\"\n  mode = \"{mode}\"\n  extensions = [{exts}]\n  {holders}\n  {extra}\n")
}

#[test]
fn call_permission_tiers() {
    // (permissions, caller, dialed, decision, rule)
    let cases: Vec<(String, &str, &str, &str, &str)> = vec![
        // Allow `_X.` and deny `1234` in the same tier: allow wins.
        (
            perm("all", "allow", r#""_X.""#, r#"users = ["alice"]"#, "")
                + &perm("no1234", "deny", r#""1234""#, r#"users = ["alice"]"#, ""),
            "alice",
            "1234",
            "allow",
            "all",
        ),
        // "Deny all" plus "allow some".
        (
            perm("none", "deny", r#""_X.""#, r#"users = ["alice"]"#, "")
                + &perm(
                    "mob",
                    "allow",
                    r#""_6XXXXXXXX""#,
                    r#"users = ["alice"]"#,
                    "",
                ),
            "alice",
            "612345678",
            "allow",
            "mob",
        ),
        (
            perm("none", "deny", r#""_X.""#, r#"users = ["alice"]"#, "")
                + &perm(
                    "mob",
                    "allow",
                    r#""_6XXXXXXXX""#,
                    r#"users = ["alice"]"#,
                    "",
                ),
            "alice",
            "912345678",
            "deny",
            "none",
        ),
        // A user-tier allow beats an outcall-tier deny.
        (
            perm("u-allow", "allow", r#""_00X.""#, r#"users = ["alice"]"#, "")
                + &perm(
                    "o-deny",
                    "deny",
                    r#""_00X.""#,
                    r#"outcalls = ["trunk"]"#,
                    "",
                ),
            "alice",
            "0033612345678",
            "allow",
            "u-allow",
        ),
        // ... and the outcall tier still applies to whoever has nothing in the user tier.
        (
            perm("u-allow", "allow", r#""_00X.""#, r#"users = ["alice"]"#, "")
                + &perm(
                    "o-deny",
                    "deny",
                    r#""_00X.""#,
                    r#"outcalls = ["trunk"]"#,
                    "",
                ),
            "bob",
            "0033612345678",
            "deny",
            "o-deny",
        ),
        // A user-tier deny `_00.` beats a group-tier allow.
        (
            perm("u-deny", "deny", r#""_00.""#, r#"users = ["alice"]"#, "")
                + &perm(
                    "g-allow",
                    "allow",
                    r#""_00X.""#,
                    r#"groups = ["sales"]"#,
                    "",
                ),
            "alice",
            "0033612345678",
            "deny",
            "u-deny",
        ),
        // The group tier decides when the user tier has no match.
        (
            perm("u-deny", "deny", r#""_9X.""#, r#"users = ["alice"]"#, "")
                + &perm("g-deny", "deny", r#""_00X.""#, r#"groups = ["sales"]"#, ""),
            "alice",
            "0033612345678",
            "deny",
            "g-deny",
        ),
        // A disabled deny does not deny.
        (
            perm(
                "off",
                "deny",
                r#""_X.""#,
                r#"users = ["alice"]"#,
                "enabled = false",
            ),
            "alice",
            "612345678",
            "allow",
            "",
        ),
        // `_12` does not match 1234.
        (
            perm("p12", "deny", r#""_12""#, r#"users = ["alice"]"#, ""),
            "alice",
            "1234",
            "allow",
            "",
        ),
        // `_X.` does not match 1, `_X!` does.
        (
            perm("xdot", "deny", r#""_X.""#, r#"users = ["alice"]"#, ""),
            "alice",
            "1",
            "allow",
            "",
        ),
        (
            perm("xbang", "deny", r#""_X!""#, r#"users = ["alice"]"#, ""),
            "alice",
            "1",
            "deny",
            "xbang",
        ),
        // A catch-all deny catches dialed strings with letters (the Wazo `9989-...` bypass).
        (
            perm("catch", "deny", r#""_X.""#, r#"users = ["alice"]"#, ""),
            "alice",
            "9989-0695395788",
            "deny",
            "catch",
        ),
        (
            perm("catch", "deny", r#""_X.""#, r#"users = ["alice"]"#, ""),
            "alice",
            "9abc",
            "deny",
            "catch",
        ),
        // Internal calls: only calls to a user's extension are checked.
        (
            perm("nointernal", "deny", r#""_X.""#, r#"users = ["alice"]"#, ""),
            "alice",
            "1002",
            "deny",
            "nointernal",
        ),
        (
            perm("nointernal", "deny", r#""_X.""#, r#"users = ["alice"]"#, ""),
            "alice",
            "2000",
            "allow",
            "",
        ),
        (
            perm("nointernal", "deny", r#""_X.""#, r#"users = ["alice"]"#, ""),
            "alice",
            "3000",
            "allow",
            "",
        ),
        (
            perm("nointernal", "deny", r#""_X.""#, r#"users = ["alice"]"#, ""),
            "alice",
            "4000",
            "allow",
            "",
        ),
        (
            perm("nosvc", "deny", r#""*21""#, r#"users = ["alice"]"#, ""),
            "alice",
            "*21",
            "allow",
            "",
        ),
        // Unknown callers meet only the outcall tier.
        (
            perm("u-deny", "deny", r#""_X.""#, r#"users = ["alice"]"#, ""),
            "+34911111111",
            "612345678",
            "allow",
            "",
        ),
        (
            perm("o-deny", "deny", r#""_6X.""#, r#"outcalls = ["trunk"]"#, ""),
            "+34911111111",
            "612345678",
            "deny",
            "o-deny",
        ),
        (
            perm("o-deny", "deny", r#""_X.""#, r#"outcalls = ["trunk"]"#, ""),
            "+34911111111",
            "1002",
            "allow",
            "",
        ),
        // Permissions match the number as dialed, not its E.164 form.
        (
            perm("intl", "deny", r#""_+X.""#, r#"users = ["alice"]"#, ""),
            "alice",
            "0033612345678",
            "allow",
            "",
        ),
        // A caller is known by extension as well as by name.
        (
            perm("u", "deny", r#""_X.""#, r#"users = ["alice"]"#, ""),
            "1001",
            "612345678",
            "deny",
            "u",
        ),
    ];
    for (body, from, to, want, rule) in cases {
        let c = perms(&body);
        let v = decide(&c, from, to);
        assert_eq!(v["decision"], want, "{from} → {to} with\n{body}\n{v:#}");
        if !rule.is_empty() {
            assert_eq!(v["rule"], rule, "{from} → {to}: {v:#}");
            assert_eq!(v["stage"], "call_permission");
        }
    }
}

#[test]
fn passwords_challenge_and_unlock() {
    let with_pw = perm(
        "intl",
        "deny",
        r#""_00X.""#,
        r#"users = ["alice", "bob"]"#,
        r#"password = "1234""#,
    );
    let c = perms(&with_pw);
    let v = decide(&c, "alice", "0033612345678");
    expect(&v, "challenge");
    assert_eq!(v["next_hop"], Value::Null);
    expect(
        &decide_full(&c, "alice", "0033612345678", None, Some("1234")),
        "allow",
    );
    let wrong = decide_full(&c, "alice", "0033612345678", None, Some("9999"));
    expect(&wrong, "deny");
    assert!(
        wrong["reason"].as_str().unwrap().ends_with("PIN rejected"),
        "{wrong:#}"
    );

    // The user's password overrides the permission's: it unlocks, the permission's does not.
    let bob_pw = USERS.replace(
        "extension = \"1002\"",
        "extension = \"1002\"\n  call_permission_password = \"777\"",
    );
    let c = config(&format!("{bob_pw}{with_pw}"));
    expect(&decide(&c, "bob", "0033612345678"), "challenge");
    let ok = decide_full(&c, "bob", "0033612345678", None, Some("777"));
    expect(&ok, "allow");
    assert_eq!(ok["next_hop"], "udp:127.0.0.1:5072");
    expect(
        &decide_full(&c, "bob", "0033612345678", None, Some("1234")),
        "deny",
    );
    // alice has no password of her own: the permission's still applies to her.
    expect(
        &decide_full(&c, "alice", "0033612345678", None, Some("1234")),
        "allow",
    );

    // A deny without a password in the deciding tier stays a plain deny.
    let mixed =
        with_pw.clone() + &perm("plain", "deny", r#""_0033X.""#, r#"users = ["alice"]"#, "");
    let v = decide_full(&perms(&mixed), "alice", "0033612345678", None, Some("1234"));
    expect(&v, "deny");
    assert_eq!(v["rule"], "plain");

    // Different passwords and no user password: no single PIN unlocks them.
    let two = with_pw
        + &perm(
            "fr",
            "deny",
            r#""_0033X.""#,
            r#"users = ["alice"]"#,
            r#"password = "5678""#,
        );
    let c = perms(&two);
    let v = decide(&c, "alice", "0033612345678");
    expect(&v, "deny");
    assert!(
        v["reason"].as_str().unwrap().contains("no single PIN"),
        "{v:#}"
    );
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("alice") && w.contains("different passwords")),
        "{:?}",
        c.warnings
    );
    expect(
        &decide_full(&c, "alice", "0033612345678", None, Some("1234")),
        "deny",
    );
    // Only one of them matches 0044...: its password unlocks.
    expect(
        &decide_full(&c, "alice", "0044201234567", None, Some("1234")),
        "allow",
    );
}

#[test]
fn dial_prefix_gives_the_pin_up_front() {
    let c = perms(&perm(
        "intl",
        "deny",
        r#""_00X.""#,
        r#"users = ["alice"]"#,
        r#"password = "1234""#,
    ));
    let ok = decide(&c, "alice", "**1234*0033612345678");
    expect(&ok, "allow");
    assert_eq!(ok["dialed"], "0033612345678");
    assert_eq!(ok["pin"], "accepted");
    let bad = decide(&c, "alice", "**1111*0033612345678");
    expect(&bad, "deny");
    assert_eq!(bad["pin"], "rejected");
    // Not a dial-prefix form: a service code.
    assert_eq!(decide(&c, "alice", "**21")["call"], "internal");
}

#[test]
fn incoming_calls_are_checked_on_the_callers_number() {
    let c = perms(
        &(r#"
  [[tenant.incalls]]
  name = "did"
  did = "910000000"
  destination = "support"
"#
        .to_owned()
            + &perm(
                "blocked",
                "deny",
                r#""_+34666XXXXXX""#,
                r#"incalls = ["did"]"#,
                "",
            )
            + &perm(
                "pin",
                "deny",
                r#""_+34777XXXXXX""#,
                r#"incalls = ["did"]"#,
                r#"password = "42""#,
            )),
    );
    let v = decide(&c, "+34666123456", "+34910000000");
    expect(&v, "deny");
    assert_eq!(v["call"], "incoming");
    assert_eq!(v["rule"], "blocked");
    // The DID is compared in E.164, whatever form was dialed.
    expect(&decide(&c, "+34666123456", "910000000"), "deny");
    expect(&decide(&c, "+34666123456", "0034910000000"), "deny");
    // Another caller gets through, to the tenant's next hop.
    let ok = decide(&c, "+34611123456", "+34910000000");
    expect(&ok, "allow");
    assert_eq!(ok["next_hop"], "udp:127.0.0.1:5070");
    // The DID's digits do not matter to the incall permissions: only the caller's do.
    expect(&decide(&c, "+34611123456", "+34910000000"), "allow");
    expect(&decide(&c, "+34777123456", "+34910000000"), "challenge");
    expect(
        &decide_full(&c, "+34777123456", "+34910000000", None, Some("42")),
        "allow",
    );
}

#[test]
fn forwarded_calls_use_the_forwarders_rights() {
    let c = perms(&perm(
        "bob-no-intl",
        "deny",
        r#""_00X.""#,
        r#"users = ["bob"]"#,
        "",
    ));
    expect(&decide(&c, "alice", "0033612345678"), "allow");
    let v = decide_full(&c, "alice", "0033612345678", Some("bob"), None);
    expect(&v, "deny");
    assert_eq!(v["identity"], "bob");
    // Forwarded by someone who is not a user: the caller's own rights.
    let v = decide_full(&c, "alice", "0033612345678", Some("+34999999999"), None);
    expect(&v, "allow");
    assert_eq!(v["identity"], "alice");
    // The forwarder's country normalizes the number.
    let fr = config(
        r#"
  [[tenant.users]]
  name = "alice"
  extension = "1001"
  [[tenant.users]]
  name = "pierre"
  extension = "1002"
  country = "FR"
"#,
    );
    assert_eq!(
        decide_full(&fr, "alice", "0612345678", Some("pierre"), None)["e164"],
        "+33612345678"
    );
    assert_eq!(
        decide_full(&fr, "alice", "612345678", None, None)["e164"],
        "+34612345678"
    );
}

#[test]
fn outcalls_route_by_the_most_specific_pattern() {
    let c = config(
        r#"
  [[tenant.outcalls]]
  name = "catch-all"
  patterns = ["_X."]
  next_hop = "udp:127.0.0.1:6001"
  [[tenant.outcalls]]
  name = "intl"
  patterns = ["_00X."]
  next_hop = "udp:127.0.0.1:6002"
  [[tenant.outcalls]]
  name = "france"
  patterns = ["_0033ZXXXXXXXX"]
  [[tenant.outcalls]]
  name = "exact"
  patterns = ["0033612345678"]
  next_hop = "tcp:[::1]:6004"
"#,
    );
    let route = |to: &str| {
        let v = decide(&c, "+34911111111", to);
        (
            v["outcall"].as_str().map(str::to_owned),
            v["next_hop"].as_str().map(str::to_owned),
        )
    };
    assert_eq!(
        route("612345678"),
        (Some("catch-all".into()), Some("udp:127.0.0.1:6001".into()))
    );
    assert_eq!(
        route("0044201234567"),
        (Some("intl".into()), Some("udp:127.0.0.1:6002".into()))
    );
    // An outcall without next_hop sends to the tenant's, else the server's.
    assert_eq!(
        route("0033612345679"),
        (Some("france".into()), Some("udp:127.0.0.1:5070".into()))
    );
    assert_eq!(
        route("0033612345678"),
        (Some("exact".into()), Some("tcp:[::1]:6004".into()))
    );
}

#[test]
fn outcall_permissions_apply_to_the_routing_outcall_only() {
    let c = config(
        r#"
  [[tenant.outcalls]]
  name = "a"
  patterns = ["_6X."]
  [[tenant.outcalls]]
  name = "b"
  patterns = ["_9X."]
  [[tenant.call_permissions]]
  name = "on-b"
  extensions = ["_X."]
  outcalls = ["b"]
"#,
    );
    expect(&decide(&c, "+1", "612345678"), "allow");
    expect(&decide(&c, "+1", "912345678"), "deny");
}
