//! Black-box tests of `sipscreen validate` and `sipscreen check` (SPEC §1, §3, §4): the built
//! binary is run against the shipped `config/sipscreen.toml` and against small configs
//! written to temporary files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

/// The keys `check --json` must always print (SPEC §1.1).
const REQUIRED_KEYS: [&str; 8] = [
    "decision", "call", "tenant", "identity", "dialed", "e164", "next_hop", "reason",
];

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn shipped_config() -> PathBuf {
    manifest_dir().join("config").join("sipscreen.toml")
}

/// Runs the binary with `args`, from the crate's directory.
fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sipscreen"))
        .args(args)
        .current_dir(manifest_dir())
        .output()
        .expect("the sipscreen binary runs")
}

fn describe(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `check --config CONFIG ARGS...`.
fn check(config: &Path, args: &[&str]) -> Output {
    let config = config.to_str().expect("a UTF-8 path");
    let mut all = vec!["check", "--config", config];
    all.extend_from_slice(args);
    run(&all)
}

/// Runs `check --json` and returns its one JSON object, after checking the exit status (0 for
/// any decision), that stdout is exactly one JSON object, and the keys and types of SPEC §1.1.
fn check_json(config: &Path, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = check(config, &all);
    assert_eq!(
        out.status.code(),
        Some(0),
        "check {args:?} must exit 0\n{}",
        describe(&out)
    );
    let stdout = String::from_utf8(out.stdout.clone()).expect("stdout is UTF-8");
    assert_eq!(
        stdout.trim().lines().count(),
        1,
        "check --json {args:?} must print exactly one line\n{}",
        describe(&out)
    );
    // `from_str` refuses anything after the first value: this is exactly one JSON value.
    let v: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "check --json {args:?}: stdout is not one JSON value: {e}\n{}",
            describe(&out)
        )
    });
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("check --json {args:?}: not a JSON object: {v}"));
    for key in REQUIRED_KEYS {
        assert!(
            obj.contains_key(key),
            "check --json {args:?}: no `{key}` in {v}"
        );
    }
    for key in ["decision", "call", "tenant", "dialed", "reason"] {
        assert!(
            v[key].is_string(),
            "check --json {args:?}: `{key}` must be a string in {v}"
        );
    }
    for key in ["identity", "e164", "next_hop"] {
        assert!(
            v[key].is_null() || v[key].is_string(),
            "check --json {args:?}: `{key}` must be null or a string in {v}"
        );
    }
    let decision = v["decision"].as_str().unwrap();
    assert!(
        ["allow", "deny", "challenge"].contains(&decision),
        "check --json {args:?}: bad decision in {v}"
    );
    let call = v["call"].as_str().unwrap();
    assert!(
        ["internal", "external", "incoming"].contains(&call),
        "check --json {args:?}: bad call in {v}"
    );
    v
}

/// `check --json` against the shipped config.
fn shipped(args: &[&str]) -> Value {
    check_json(&shipped_config(), args)
}

/// Asserts a bad-arguments exit: status 2, something on stderr, nothing that looks like a
/// decision on stdout.
fn assert_bad_input(out: &Output, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(2),
        "{what}: must exit 2\n{}",
        describe(out)
    );
    assert!(
        !out.stderr.is_empty(),
        "{what}: must say what is wrong on stderr\n{}",
        describe(out)
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("\"decision\""),
        "{what}: must not print a decision\n{}",
        describe(out)
    );
}

/// A config written to a uniquely named temporary file, deleted on drop.
struct TempConfig(PathBuf);

impl TempConfig {
    fn new(text: &str) -> TempConfig {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = format!(
            "sipscreen-cli-test-{}-{}-{nanos}.toml",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        std::fs::write(&path, text).expect("write a temporary config");
        TempConfig(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Two tenants with different domains (and countries and next hops, to tell them apart).
const TWO_TENANTS: &str = r#"
[server]
listen = ["udp:127.0.0.1:5060"]
next_hop = "udp:127.0.0.1:5070"

[brand]
name = "example"

[[tenant]]
name = "alpha"
domains = ["alpha.example.com"]
country = "ES"
next_hop = "udp:127.0.0.1:6001"

  [[tenant.users]]
  name = "alice"
  extension = "1001"

[[tenant]]
name = "beta"
domains = ["beta.example.com"]
country = "FR"
next_hop = "udp:127.0.0.1:6002"

  [[tenant.users]]
  name = "alice"
  extension = "2001"
"#;

// ---------------------------------------------------------------------------------------
// validate

#[test]
fn validate_shipped_config_exits_0() {
    let out = run(&["validate", "--config", "config/sipscreen.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
}

#[test]
fn validate_two_tenant_config_exits_0() {
    let cfg = TempConfig::new(TWO_TENANTS);
    let out = run(&["validate", "--config", cfg.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
}

#[test]
fn validate_bad_config_exits_2() {
    let cfg = TempConfig::new(&TWO_TENANTS.replace("[brand]", "[brand]\nno_such_key = 1"));
    let out = run(&["validate", "--config", cfg.path().to_str().unwrap()]);
    assert_bad_input(&out, "validate with an unknown key");
}

// ---------------------------------------------------------------------------------------
// check --json: shape and exit status

#[test]
fn check_exits_0_for_allow_deny_and_challenge() {
    for (args, expected) in [
        (["--from", "alice", "--to", "612345678"], "allow"),
        (["--from", "alice", "--to", "0033612345678"], "deny"),
        (["--from", "bob", "--to", "0033612345678"], "challenge"),
    ] {
        let mut all = args.to_vec();
        all.push("--json");
        let out = check(&shipped_config(), &all);
        assert_eq!(out.status.code(), Some(0), "{args:?}\n{}", describe(&out));
        let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON value");
        assert_eq!(v["decision"], expected, "{args:?}: {v}");
    }
}

// ---------------------------------------------------------------------------------------
// check against the shipped config

#[test]
fn allowed_external_call() {
    let v = shipped(&["--from", "alice", "--to", "612345678"]);
    assert_eq!(v["decision"], "allow", "{v}");
    assert_eq!(v["call"], "external", "{v}");
    assert_eq!(v["tenant"], "acme", "{v}");
    assert_eq!(v["identity"], "alice", "{v}");
    assert_eq!(v["dialed"], "612345678", "{v}");
    assert_eq!(v["e164"], "+34612345678", "{v}");
    assert_eq!(v["next_hop"], "udp:127.0.0.1:5070", "{v}");
    let reason = v["reason"].as_str().unwrap();
    assert!(reason.contains("call_acl spain-only"), "{v}");
}

#[test]
fn acl_default_deny() {
    let v = shipped(&["--from", "alice", "--to", "0033612345678"]);
    assert_eq!(v["decision"], "deny", "{v}");
    assert_eq!(v["call"], "external", "{v}");
    assert_eq!(v["identity"], "alice", "{v}");
    assert_eq!(v["dialed"], "0033612345678", "{v}");
    assert_eq!(v["e164"], "+33612345678", "{v}");
    assert_eq!(
        v["reason"], "call_acl spain-only: no rule matched, default deny",
        "{v}"
    );
    assert!(v["next_hop"].is_null(), "{v}");
}

#[test]
fn internal_call_to_queue_is_allowed() {
    let v = shipped(&["--from", "alice", "--to", "3000"]);
    assert_eq!(v["decision"], "allow", "{v}");
    assert_eq!(v["call"], "internal", "{v}");
    assert_eq!(v["identity"], "alice", "{v}");
    assert_eq!(v["dialed"], "3000", "{v}");
    assert!(v["e164"].is_null(), "{v}");
    assert!(
        v["next_hop"].is_string(),
        "an allowed call has a next hop: {v}"
    );
}

#[test]
fn international_call_by_bob_is_challenged() {
    let v = shipped(&["--from", "bob", "--to", "0033612345678"]);
    assert_eq!(v["decision"], "challenge", "{v}");
    assert_eq!(v["call"], "external", "{v}");
    assert_eq!(v["identity"], "bob", "{v}");
    assert_eq!(v["e164"], "+33612345678", "{v}");
    assert!(v["next_hop"].is_null(), "{v}");
    assert!(
        v["reason"].as_str().unwrap().contains("no-international"),
        "{v}"
    );
}

#[test]
fn pin_user_password_allows_through_international_trunk() {
    let v = shipped(&["--from", "bob", "--to", "0033612345678", "--pin", "2468"]);
    assert_eq!(v["decision"], "allow", "{v}");
    assert_eq!(v["call"], "external", "{v}");
    assert_eq!(v["identity"], "bob", "{v}");
    assert_eq!(v["next_hop"], "udp:127.0.0.1:5072", "{v}");
}

#[test]
fn pin_of_permission_overridden_by_user_password_denies() {
    let v = shipped(&["--from", "bob", "--to", "0033612345678", "--pin", "1234"]);
    assert_eq!(v["decision"], "deny", "{v}");
    assert_eq!(v["identity"], "bob", "{v}");
    assert!(v["next_hop"].is_null(), "{v}");
}

#[test]
fn incoming_call_from_blocked_caller_is_denied() {
    let v = shipped(&["--from", "+34666123456", "--to", "+34910000000"]);
    assert_eq!(v["decision"], "deny", "{v}");
    assert_eq!(v["call"], "incoming", "{v}");
    assert_eq!(v["e164"], "+34910000000", "{v}");
    assert!(v["identity"].is_null(), "{v}");
    assert!(v["next_hop"].is_null(), "{v}");
    assert!(
        v["reason"].as_str().unwrap().contains("blocked-callers"),
        "{v}"
    );
}

#[test]
fn incoming_call_from_other_caller_is_allowed() {
    let v = shipped(&["--from", "+34611111111", "--to", "+34910000000"]);
    assert_eq!(v["decision"], "allow", "{v}");
    assert_eq!(v["call"], "incoming", "{v}");
    assert_eq!(v["e164"], "+34910000000", "{v}");
    // SPEC §4.6: forwarded to the tenant's next hop.
    assert_eq!(v["next_hop"], "udp:127.0.0.1:5070", "{v}");
}

#[test]
fn incoming_call_to_national_form_of_did() {
    // SPEC §4.2: DIDs compared in E.164 on both sides.
    let v = shipped(&["--from", "+34666123456", "--to", "910000000"]);
    assert_eq!(v["call"], "incoming", "{v}");
    assert_eq!(v["decision"], "deny", "{v}");
}

#[test]
fn forwarded_call_uses_forwarder_rights() {
    let v = shipped(&["--from", "bob", "--to", "1001", "--forwarded-by", "dave"]);
    assert_eq!(v["identity"], "dave", "{v}");
    assert_eq!(v["call"], "internal", "{v}");
    assert_eq!(v["decision"], "deny", "{v}");
    // Bob himself may call alice.
    let own = shipped(&["--from", "bob", "--to", "1001"]);
    assert_eq!(own["identity"], "bob", "{own}");
    assert_eq!(own["decision"], "allow", "{own}");
}

#[test]
fn dial_prefix_pin_is_taken_off_and_allows() {
    let v = shipped(&["--from", "bob", "--to", "**2468*0033612345678"]);
    assert_eq!(v["decision"], "allow", "{v}");
    assert_eq!(v["dialed"], "0033612345678", "{v}");
    assert_eq!(v["e164"], "+33612345678", "{v}");
    assert_eq!(v["call"], "external", "{v}");
    assert_eq!(v["next_hop"], "udp:127.0.0.1:5072", "{v}");
}

#[test]
fn unknown_caller_has_null_identity() {
    let v = shipped(&["--from", "+33100000000", "--to", "612345678"]);
    assert!(v["identity"].is_null(), "{v}");
    assert_eq!(v["call"], "external", "{v}");
    assert_eq!(v["e164"], "+34612345678", "{v}");
}

#[test]
fn user_country_overrides_tenant_country() {
    // carol dials as a French user (SPEC §3.3).
    let v = shipped(&["--from", "carol", "--to", "0612345678"]);
    assert_eq!(v["identity"], "carol", "{v}");
    assert_eq!(v["e164"], "+33612345678", "{v}");
}

#[test]
fn caller_by_extension_is_the_user() {
    let v = shipped(&["--from", "1001", "--to", "0033612345678"]);
    assert_eq!(v["identity"], "alice", "{v}");
    assert_eq!(v["decision"], "deny", "{v}");
}

// ---------------------------------------------------------------------------------------
// check: readable output

fn readable(args: &[&str]) -> String {
    let out = check(&shipped_config(), args);
    assert_eq!(out.status.code(), Some(0), "{args:?}\n{}", describe(&out));
    String::from_utf8(out.stdout).expect("stdout is UTF-8")
}

#[test]
fn readable_output_explains_acl_deny() {
    let text = readable(&["--from", "alice", "--to", "0033612345678"]);
    assert!(
        text.lines()
            .any(|l| l.contains("E.164") && l.contains("+33612345678")),
        "no normalization step line:\n{text}"
    );
    for rule in [
        "metric 5 pattern spain-premium",
        "metric 10 pattern spain-mobile",
        "metric 20 pattern spain-landline",
        "metric 30 pattern uk-landline",
    ] {
        assert!(text.contains(rule), "ACL rule `{rule}` not shown:\n{text}");
    }
    assert!(
        text.lines().any(|l| l.trim() == "decision: deny"),
        "no `decision: deny` line:\n{text}"
    );
    assert!(
        serde_json::from_str::<Value>(text.trim()).is_err(),
        "readable output must not be JSON:\n{text}"
    );
}

#[test]
fn readable_output_shows_tiers() {
    let text = readable(&["--from", "bob", "--to", "0033612345678", "--pin", "1234"]);
    assert!(
        text.lines()
            .any(|l| l.contains("E.164") && l.contains("+33612345678")),
        "no normalization step line:\n{text}"
    );
    assert!(text.contains("user tier"), "no user tier line:\n{text}");
    assert!(text.contains("group tier"), "no group tier line:\n{text}");
    assert!(
        text.contains("no-international"),
        "the matching permission is not named:\n{text}"
    );
    assert!(
        text.lines().any(|l| l.trim() == "decision: deny"),
        "no `decision: deny` line:\n{text}"
    );
}

// ---------------------------------------------------------------------------------------
// check: bad arguments

#[test]
fn missing_to_exits_2() {
    let out = check(&shipped_config(), &["--from", "alice"]);
    assert_bad_input(&out, "check without --to");
}

#[test]
fn unknown_flag_exits_2() {
    let out = check(
        &shipped_config(),
        &["--from", "alice", "--to", "1002", "--no-such-flag"],
    );
    assert_bad_input(&out, "check with an unknown flag");
}

#[test]
fn unknown_tenant_exits_2() {
    let out = check(
        &shipped_config(),
        &[
            "--from", "alice", "--to", "1002", "--tenant", "nope", "--json",
        ],
    );
    assert_bad_input(&out, "check --tenant nope");
}

#[test]
fn pin_with_letters_exits_2() {
    let out = check(
        &shipped_config(),
        &[
            "--from",
            "bob",
            "--to",
            "0033612345678",
            "--pin",
            "12ab",
            "--json",
        ],
    );
    assert_bad_input(&out, "check --pin 12ab");
}

#[test]
fn missing_config_exits_2() {
    let missing = std::env::temp_dir().join("sipscreen-cli-test-does-not-exist.toml");
    let out = check(&missing, &["--from", "alice", "--to", "1002"]);
    assert_bad_input(&out, "check with a missing config");
}

// ---------------------------------------------------------------------------------------
// check: several tenants

#[test]
fn two_tenants_without_tenant_exits_2() {
    let cfg = TempConfig::new(TWO_TENANTS);
    let out = check(
        cfg.path(),
        &["--from", "alice", "--to", "612345678", "--json"],
    );
    assert_bad_input(&out, "two tenants, no --tenant, no domain");
}

#[test]
fn two_tenants_tenant_flag_selects() {
    let cfg = TempConfig::new(TWO_TENANTS);
    for (name, hop, e164) in [
        ("alpha", "udp:127.0.0.1:6001", "+34612345678"),
        ("beta", "udp:127.0.0.1:6002", "+33612345678"),
    ] {
        let v = check_json(
            cfg.path(),
            &["--from", "alice", "--to", "612345678", "--tenant", name],
        );
        assert_eq!(v["tenant"], name, "{v}");
        assert_eq!(v["identity"], "alice", "{v}");
        assert_eq!(v["e164"], e164, "the tenant's country applies: {v}");
        assert_eq!(v["next_hop"], hop, "the tenant's next hop applies: {v}");
    }
}

#[test]
fn two_tenants_from_domain_selects() {
    let cfg = TempConfig::new(TWO_TENANTS);
    let v = check_json(
        cfg.path(),
        &["--from", "alice@beta.example.com", "--to", "612345678"],
    );
    assert_eq!(v["tenant"], "beta", "{v}");
    assert_eq!(v["identity"], "alice", "{v}");
    assert_eq!(v["e164"], "+33612345678", "{v}");
    let v = check_json(
        cfg.path(),
        &["--from", "alice@alpha.example.com", "--to", "612345678"],
    );
    assert_eq!(v["tenant"], "alpha", "{v}");
}

#[test]
fn two_tenants_request_uri_domain_selects() {
    // SPEC §4.1: the From domain or the Request-URI domain.
    let cfg = TempConfig::new(TWO_TENANTS);
    let v = check_json(
        cfg.path(),
        &["--from", "alice", "--to", "612345678@beta.example.com"],
    );
    assert_eq!(v["tenant"], "beta", "{v}");
    assert_eq!(v["dialed"], "612345678", "{v}");
}

#[test]
fn two_tenants_unknown_domain_exits_2() {
    let cfg = TempConfig::new(TWO_TENANTS);
    let out = check(
        cfg.path(),
        &["--from", "alice@gamma.example.com", "--to", "612345678"],
    );
    assert_bad_input(&out, "two tenants, a domain of neither");
}
