//! The configuration contract of SPEC §2, held from the outside: every validation rule gets a
//! small valid config plus one mistake, and the test checks that loading fails, that the error
//! names the tenant and the object at fault (and the bad value), and that its line (and, where
//! it is a value or a key, its column) is where the mistake is written. Then: all mistakes at
//! once, the shipped configs, and the `validate` / `check` / `run` command line.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use sipscreen::config::{Config, ConfigError, ConfigErrors};

// ------------------------------------------------------------------------------------------
// Helpers

const FILE: &str = "test.toml";

/// A minimal valid configuration. `[[tenant]]` comes last, so that `base() + "[[tenant.x]]..."`
/// adds objects to tenant "acme".
fn base() -> String {
    r#"[server]
listen = ["udp:127.0.0.1:45060"]
next_hop = "udp:127.0.0.1:45070"
trusted_peers = ["127.0.0.1/32"]

[brand]
name = "example"

[[tenant]]
name = "acme"
country = "ES"
"#
    .to_owned()
}

/// The base configuration with `extra` appended (objects of tenant "acme").
fn with(extra: &str) -> String {
    base() + extra
}

fn load(text: &str) -> Result<Config, ConfigErrors> {
    Config::from_toml(text, FILE, None)
}

/// Loads a configuration that must be valid.
#[track_caller]
fn valid(text: &str) -> Config {
    match load(text) {
        Ok(c) => c,
        Err(e) => panic!("expected a valid config, got:\n{e}\n--- config ---\n{text}"),
    }
}

/// Loads a configuration that must be invalid, and returns its errors.
#[track_caller]
fn invalid(text: &str) -> Vec<ConfigError> {
    match load(text) {
        Ok(_) => panic!("expected the config to be refused:\n{text}"),
        Err(ConfigErrors(errors)) => {
            assert!(!errors.is_empty(), "an empty error list:\n{text}");
            for e in &errors {
                assert_eq!(e.file, FILE, "error without the file name: {e}");
            }
            errors
        }
    }
}

/// 1-based (line, column) of the `n`-th (0-based) occurrence of `snippet` in `text`.
#[track_caller]
fn pos_nth(text: &str, snippet: &str, n: usize) -> (usize, usize) {
    let at = text
        .match_indices(snippet)
        .nth(n)
        .unwrap_or_else(|| panic!("`{snippet}` (occurrence {n}) is not in the config"))
        .0;
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, col)
}

/// 1-based (line, column) of the only occurrence of `snippet` in `text`.
#[track_caller]
fn pos(text: &str, snippet: &str) -> (usize, usize) {
    assert_eq!(
        text.matches(snippet).count(),
        1,
        "`{snippet}` must occur exactly once in the config"
    );
    pos_nth(text, snippet, 0)
}

fn list(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(|e| format!("  {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The error whose context contains `context` and whose message contains every `words`.
#[track_caller]
fn find<'e>(errors: &'e [ConfigError], context: &str, words: &[&str]) -> &'e ConfigError {
    errors
        .iter()
        .find(|e| e.context.contains(context) && words.iter().all(|w| e.message.contains(w)))
        .unwrap_or_else(|| {
            panic!(
                "no error with context containing {context:?} and message containing {words:?}; got:\n{}",
                list(errors)
            )
        })
}

/// What is expected of one error.
struct Expect<'a> {
    /// Part of the context (`tenant "acme", user "alice"`).
    context: &'a str,
    /// Parts of the message.
    words: &'a [&'a str],
    /// A snippet of the config where the error is; its line is checked.
    at: &'a str,
    /// Which occurrence of `at` (0-based).
    nth: usize,
    /// Whether the column must be the snippet's first character (for keys and values).
    exact: bool,
}

impl<'a> Expect<'a> {
    fn new(context: &'a str, words: &'a [&'a str], at: &'a str) -> Self {
        Self {
            context,
            words,
            at,
            nth: 0,
            exact: false,
        }
    }
    /// The column must be where `at` starts.
    fn exact(mut self) -> Self {
        self.exact = true;
        self
    }
    fn nth(mut self, n: usize) -> Self {
        self.nth = n;
        self
    }
}

/// Checks one expected error among `errors` of `text`.
#[track_caller]
fn check_one(text: &str, errors: &[ConfigError], x: &Expect<'_>) {
    let e = find(errors, x.context, x.words);
    let (line, col) = if x.nth == 0 && text.matches(x.at).count() == 1 {
        pos(text, x.at)
    } else {
        pos_nth(text, x.at, x.nth)
    };
    let Some((el, ec)) = e.position else {
        panic!("error has no position (expected line {line}): {e}");
    };
    assert_eq!(
        el, line,
        "error `{e}` should be on line {line} (where `{}` is)",
        x.at
    );
    if x.exact {
        assert_eq!(
            ec, col,
            "error `{e}` should be at column {col} (where `{}` starts)",
            x.at
        );
    }
    assert!(ec >= 1, "column is 1-based: {e}");
    let shown = e.to_string();
    assert!(
        shown.starts_with(&format!("{FILE}:{el}:{ec}: ")),
        "Display must be file:line:col: {shown}"
    );
}

/// Loads `text`, which must be invalid, and checks one error.
#[track_caller]
fn expect(text: &str, x: Expect<'_>) -> Vec<ConfigError> {
    let errors = invalid(text);
    check_one(text, &errors, &x);
    errors
}

/// Loads `text`, which must be invalid, and checks an error that has no position in the file
/// (a missing table): it must still name what is missing.
#[track_caller]
fn expect_without_position(text: &str, words: &[&str]) {
    let errors = invalid(text);
    let e = find(&errors, "", words);
    if let Some((line, col)) = e.position {
        assert!(line >= 1 && col >= 1, "bad position in {e}");
    }
}

// ------------------------------------------------------------------------------------------
// The shipped configs and the base are valid

#[test]
fn every_shipped_config_is_valid() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/config");
    let mut loaded = 0;
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("config/ folder")
        .map(|e| e.expect("config/ entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    entries.sort();
    for path in entries {
        match Config::load(&path) {
            Ok(c) => assert!(!c.policy.tenants.is_empty(), "{}", path.display()),
            Err(e) => panic!("{} is not valid:\n{e}", path.display()),
        }
        loaded += 1;
    }
    assert!(loaded >= 1, "no *.toml file in {dir}");
}

#[test]
fn the_base_config_and_full_objects_are_valid() {
    valid(&base());
    let c = valid(&with(
        r#"
  [[tenant.acl_patterns]]
  name = "spain"
  regex = '^34[0-9]+$'

  [[tenant.acl_patterns]]
  name = "office"
  numbers = ["+34946002050"]

  [[tenant.call_acls]]
  name = "spain-only"
  default = "deny"
  rules = [
    { metric = 10, pattern = "spain", action = "allow" },
    { metric = 20, pattern = "office", action = "deny" },
  ]

  [[tenant.users]]
  name = "alice"
  extension = "1001"
  call_acl = "spain-only"
  call_permission_password = "1234567890123456"

  [[tenant.groups]]
  name = "sales"
  members = ["alice"]

  [[tenant.queues]]
  name = "support"
  number = "3000"

  [[tenant.outcalls]]
  name = "trunk"
  patterns = ["_00X.", "_[6-9]XXXXXXXX"]

  [[tenant.incalls]]
  name = "main"
  did = "910000000"
  destination = "support"

  [[tenant.call_permissions]]
  name = "no-intl"
  extensions = ["_00X.", "112", "*21"]
  password = "1234567890123456789012345678901234567890"
  users = ["alice"]
  groups = ["sales"]
  outcalls = ["trunk"]
  incalls = ["main"]
"#,
    ));
    assert_eq!(c.policy.tenants.len(), 1);
}

// ------------------------------------------------------------------------------------------
// Unknown keys, syntax and types

#[test]
fn unknown_key_at_top_level() {
    let text = format!("colour = \"blue\"\n{}", base());
    expect(
        &text,
        Expect::new("", &["unknown key", "colour"], "colour").exact(),
    );
}

#[test]
fn unknown_key_in_a_table() {
    let text = base().replace("[brand]\n", "[brand]\nslogan = \"calls\"\n");
    expect(
        &text,
        Expect::new("brand", &["unknown key", "`slogan`"], "slogan").exact(),
    );
}

#[test]
fn unknown_key_in_a_tenant_user_points_at_the_key() {
    let text = with(
        r#"
  [[tenant.users]]
  name = "alice"
  extension = "1001"

  [[tenant.users]]
  name = "bob"
  extension = "1002"
  nickname = "bobby"
"#,
    );
    let errors = expect(
        &text,
        Expect::new("", &["unknown key", "nickname"], "nickname").exact(),
    );
    let e = find(&errors, "", &["nickname"]);
    assert!(
        e.message.contains("tenant[0].users[1].nickname") || e.context.contains("bob"),
        "the error should say which user: {e}"
    );
}

#[test]
fn several_unknown_keys_are_reported_together() {
    let text = format!(
        "verbose = true\n{}{}",
        base().replace("[server]\n", "[server]\nport = 5060\n"),
        r#"
  [[tenant.users]]
  name = "alice"
  extension = "1001"
  acl = "x"

  [[tenant.call_acls]]
  name = "a"
  default = "deny"
  rules = [ { metric = 1, pattern = "p", action = "allow", weight = 2 } ]

  [[tenant.acl_patterns]]
  name = "p"
  regex = "^34"
"#
    );
    let errors = invalid(&text);
    for key in ["verbose", "port", "acl", "weight"] {
        let (line, col) = pos(&text, &format!("{key} = "));
        let e = find(&errors, "", &["unknown key", &format!("{key}`")]);
        assert_eq!(e.position, Some((line, col)), "{e}");
    }
    let unknown = errors
        .iter()
        .filter(|e| e.message.contains("unknown key"))
        .count();
    assert_eq!(unknown, 4, "{}", list(&errors));
}

#[test]
fn toml_syntax_error_has_a_position() {
    let text = base().replace("name = \"acme\"", "name = \"acme");
    let errors = invalid(&text);
    let (line, _) = pos(&text, "name = \"acme");
    assert!(
        errors
            .iter()
            .any(|e| e.position.is_some_and(|(l, _)| l == line)),
        "a syntax error on line {line} expected:\n{}",
        list(&errors)
    );

    let text = base().replace("country = \"ES\"", "country = ES");
    let errors = invalid(&text);
    let (line, col) = pos(&text, "ES\n");
    let e = errors
        .iter()
        .find(|e| e.position.is_some())
        .unwrap_or_else(|| panic!("no position:\n{}", list(&errors)));
    assert_eq!(e.position, Some((line, col)), "{e}");
    assert!(e.message.contains("TOML"), "{e}");
}

#[test]
fn several_toml_syntax_errors_are_reported() {
    let text = base()
        .replace("name = \"example\"", "name = = \"example\"")
        .replace("country = \"ES\"", "country = ES");
    let errors = invalid(&text);
    for snippet in ["name = = ", "country = ES"] {
        let (line, _) = pos(&text, snippet);
        assert!(
            errors
                .iter()
                .any(|e| e.position.is_some_and(|(l, _)| l == line)),
            "a syntax error on line {line} (`{snippet}`) expected:\n{}",
            list(&errors)
        );
    }
}

#[test]
fn type_error_has_a_position() {
    let text = with(
        r#"
  [[tenant.acl_patterns]]
  name = "p"
  regex = "^34"

  [[tenant.call_acls]]
  name = "a"
  default = "deny"
  rules = [
    { metric = 10, pattern = "p", action = "allow" },
    { metric = "ten", pattern = "p", action = "deny" },
  ]
"#,
    );
    let errors = invalid(&text);
    let (line, _) = pos(&text, "\"ten\"");
    let e = errors
        .iter()
        .find(|e| e.position.is_some_and(|(l, _)| l == line))
        .unwrap_or_else(|| panic!("an error on line {line} expected:\n{}", list(&errors)));
    assert!(
        e.message.contains("ten") || e.message.contains("integer") || e.message.contains("type"),
        "{e}"
    );
}

#[test]
fn type_error_names_the_key_and_the_object() {
    // SPEC §1: every error comes with "the offending name"; a bare "invalid type" with a
    // position does not say which key of which object is wrong.
    let text = with(
        r#"
  [[tenant.users]]
  name = "alice"
  extension = 1001
"#,
    );
    let errors = invalid(&text);
    let (line, _) = pos(&text, "1001");
    let e = errors
        .iter()
        .find(|e| e.position.is_some_and(|(l, _)| l == line))
        .unwrap_or_else(|| panic!("an error on line {line} expected:\n{}", list(&errors)));
    let shown = e.to_string();
    assert!(
        shown.contains("extension") && (shown.contains("alice") || shown.contains("users")),
        "the error should name the key `extension` and the user: {shown}"
    );
}

#[test]
fn type_errors_do_not_hide_other_errors() {
    // SPEC §1/§7: every error is printed. A value of the wrong type in one object must not
    // hide the mistakes elsewhere.
    let text = with(
        r#"
  [[tenant.users]]
  name = "alice"
  extension = 1001

  [[tenant.call_acls]]
  name = "a"
  default = "deny"
  rules = [ { metric = "ten", pattern = "p", action = "allow" } ]
"#,
    )
    .replace("country = \"ES\"", "country = \"XX\"");
    let errors = invalid(&text);
    for snippet in ["1001", "\"ten\"", "\"XX\""] {
        let (line, _) = pos(&text, snippet);
        assert!(
            errors
                .iter()
                .any(|e| e.position.is_some_and(|(l, _)| l == line)),
            "an error on line {line} (`{snippet}`) expected:\n{}",
            list(&errors)
        );
    }
}

// ------------------------------------------------------------------------------------------
// [server], [pin], [brand]

#[test]
fn missing_server_table() {
    let text = base().replace(
        "[server]\nlisten = [\"udp:127.0.0.1:45060\"]\nnext_hop = \"udp:127.0.0.1:45070\"\n",
        "",
    );
    assert!(!text.contains("[server]"));
    expect_without_position(&text, &["server"]);
}

#[test]
fn missing_server_listen() {
    let text = base().replace("listen = [\"udp:127.0.0.1:45060\"]\n", "");
    expect(&text, Expect::new("server", &["listen"], "[server]"));
}

#[test]
fn missing_server_next_hop() {
    let text = base().replace("next_hop = \"udp:127.0.0.1:45070\"\n", "");
    expect(&text, Expect::new("server", &["next_hop"], "[server]"));
}

#[test]
fn empty_server_listen() {
    let text = base().replace("[\"udp:127.0.0.1:45060\"]", "[]");
    expect(&text, Expect::new("server", &["listen"], "listen = []"));
}

#[test]
fn bad_listen_entry() {
    let text = base().replace(
        "[\"udp:127.0.0.1:45060\"]",
        "[\"udp:127.0.0.1:45060\", \"udp:nothost\"]",
    );
    expect(
        &text,
        Expect::new("server", &["udp:nothost"], "\"udp:nothost\"").exact(),
    );
    let text = base().replace("\"udp:127.0.0.1:45060\"", "\"sctp:127.0.0.1:5060\"");
    expect(
        &text,
        Expect::new("server", &["sctp"], "\"sctp:127.0.0.1:5060\"").exact(),
    );
}

#[test]
fn bad_next_hop() {
    let text = base().replace("\"udp:127.0.0.1:45070\"", "\"pbx.example.com\"");
    expect(
        &text,
        Expect::new(
            "server",
            &["next_hop", "pbx.example.com"],
            "\"pbx.example.com\"",
        )
        .exact(),
    );
}

#[test]
fn bad_trusted_peer_cidr() {
    let text = base().replace(
        "trusted_peers = [\"127.0.0.1/32\"]\n",
        "trusted_peers = [\"127.0.0.1/32\", \"10.0.0.0/33\"]\n",
    );
    expect(
        &text,
        Expect::new(
            "server",
            &["trusted_peers", "10.0.0.0/33"],
            "\"10.0.0.0/33\"",
        )
        .exact(),
    );
}

#[test]
fn multi_line_reject_reason() {
    let text = base().replace(
        "[server]\n",
        "[server]\nreject_reason = \"Q.850;cause=21\\r\\nX-Evil: 1\"\n",
    );
    expect(
        &text,
        Expect::new("server", &["reject_reason"], "\"Q.850").exact(),
    );
}

#[test]
fn missing_brand_name() {
    let text = base().replace("name = \"example\"\n", "");
    expect(&text, Expect::new("brand", &["name"], "[brand]"));
}

#[test]
fn missing_brand_table() {
    let text = base().replace("[brand]\nname = \"example\"\n", "");
    expect_without_position(&text, &["brand"]);
}

#[test]
fn pin_dial_prefix_with_letters() {
    let text = format!("[pin]\ndial_prefix = \"*a\"\n\n{}", base());
    expect(
        &text,
        Expect::new("pin", &["dial_prefix", "*a"], "\"*a\"").exact(),
    );
}

#[test]
fn pin_attempts_zero() {
    let text = format!("[pin]\nattempts = 0\n\n{}", base());
    expect(
        &text,
        Expect::new("pin", &["attempts", "0"], "attempts = 0"),
    );
}

#[test]
fn pin_negative_and_too_large_settings() {
    let text = format!(
        "[pin]\nmax_digits = 41\ninter_digit_timeout_s = -1\nlockout = {{ failures = 0, window_s = 600, lock_s = 900 }}\n\n{}",
        base()
    );
    let errors = invalid(&text);
    check_one(
        &text,
        &errors,
        &Expect::new("pin", &["max_digits"], "max_digits = 41"),
    );
    check_one(
        &text,
        &errors,
        &Expect::new(
            "pin",
            &["inter_digit_timeout_s", "-1"],
            "inter_digit_timeout_s",
        ),
    );
    check_one(
        &text,
        &errors,
        &Expect::new("pin.lockout", &["failures", "0"], "lockout"),
    );
}

#[test]
fn pin_prompt_file_that_does_not_exist() {
    let text = format!("[pin]\nprompt = \"no-such-prompt.wav\"\n\n{}", base());
    expect(
        &text,
        Expect::new(
            "pin",
            &["prompt", "no-such-prompt.wav"],
            "\"no-such-prompt.wav\"",
        )
        .exact(),
    );
}

#[test]
fn pin_prompt_file_is_taken_from_the_config_folder() {
    let dir = TempDir::new("prompt");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut wav = hound::WavWriter::create(dir.path().join("prompt.wav"), spec).unwrap();
    for i in 0..800 {
        wav.write_sample((i % 50) as i16 * 100).unwrap();
    }
    wav.finalize().unwrap();
    let text = format!("[pin]\nprompt = \"prompt.wav\"\n\n{}", base());
    let path = dir.write("sipscreen.toml", &text);
    if let Err(e) = Config::load(&path) {
        panic!("a prompt next to the config must be found:\n{e}");
    }
}

#[test]
fn pin_prompt_that_is_not_an_8khz_mono_wav() {
    let dir = TempDir::new("prompt-bad");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 44100,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut wav = hound::WavWriter::create(dir.path().join("stereo.wav"), spec).unwrap();
    for _ in 0..100 {
        wav.write_sample(0i16).unwrap();
    }
    wav.finalize().unwrap();
    std::fs::write(dir.path().join("text.wav"), "not a wav").unwrap();
    for (file, words) in [
        ("stereo.wav", ["prompt", "8 kHz mono"]),
        ("text.wav", ["prompt", "not a WAV"]),
    ] {
        let text = format!("[pin]\nprompt = \"{file}\"\n\n{}", base());
        let path = dir.write("sipscreen.toml", &text);
        let Err(ConfigErrors(errors)) = Config::load(&path) else {
            panic!("{file} must be refused")
        };
        assert!(
            errors
                .iter()
                .any(|e| e.context == "pin" && words.iter().all(|w| e.message.contains(w))),
            "{file}: {errors:?}"
        );
    }
}

#[test]
fn pin_rtp_ports_must_be_a_range() {
    for bad in ["40000", "5000-4000", "0-10", "a-b"] {
        let text = format!("[pin]\nrtp_ports = \"{bad}\"\n\n{}", base());
        expect(
            &text,
            Expect::new("pin", &["rtp_ports", bad], &format!("\"{bad}\"")).exact(),
        );
    }
}

// ------------------------------------------------------------------------------------------
// Tenants

#[test]
fn no_tenant() {
    let text = base().replace("[[tenant]]\nname = \"acme\"\ncountry = \"ES\"\n", "");
    assert!(!text.contains("tenant"));
    expect_without_position(&text, &["tenant"]);
}

#[test]
fn tenant_missing_name() {
    let text = base().replace("name = \"acme\"\n", "");
    expect(&text, Expect::new("tenant #1", &["name"], "[[tenant]]"));
}

#[test]
fn tenant_missing_country() {
    let text = base().replace("country = \"ES\"\n", "");
    expect(
        &text,
        Expect::new("tenant \"acme\"", &["country"], "[[tenant]]"),
    );
}

#[test]
fn unknown_country() {
    for bad in ["XX", "es", "Spain", ""] {
        let text = base().replace("\"ES\"", &format!("\"{bad}\""));
        expect(
            &text,
            Expect::new(
                "tenant \"acme\"",
                &["country", &format!("`{bad}`")],
                &format!("\"{bad}\"\n"),
            )
            .exact(),
        );
    }
}

#[test]
fn user_with_unknown_country() {
    let text = with(
        r#"
  [[tenant.users]]
  name = "alice"
  extension = "1001"
  country = "ZZ"
"#,
    );
    expect(
        &text,
        Expect::new(
            "tenant \"acme\", user \"alice\"",
            &["country", "ZZ"],
            "\"ZZ\"",
        )
        .exact(),
    );
}

#[test]
fn duplicate_tenant_names() {
    let text = with(
        r#"
[[tenant]]
name = "acme"
country = "FR"
"#,
    );
    expect(
        &text,
        Expect::new("tenant \"acme\"", &["duplicate", "acme"], "\"acme\"")
            .nth(1)
            .exact(),
    );
}

#[test]
fn duplicate_domains_across_tenants() {
    let text = base().replace(
        "country = \"ES\"\n",
        "country = \"ES\"\ndomains = [\"a.example\"]\n",
    ) + "\n[[tenant]]\nname = \"beta\"\ncountry = \"FR\"\ndomains = [\"A.example\"]\n";
    expect(
        &text,
        Expect::new("tenant \"beta\"", &["A.example", "acme"], "\"A.example\"").exact(),
    );
}

#[test]
fn bad_tenant_next_hop_sources_and_area_code() {
    let text = with("next_hop = \"udp:pbx\"\nsources = [\"10.1.2.0/24\", \"10.1.2.0/99\"]\narea_code = \"9a\"\n");
    let errors = invalid(&text);
    check_one(
        &text,
        &errors,
        &Expect::new("tenant \"acme\"", &["next_hop", "udp:pbx"], "\"udp:pbx\"").exact(),
    );
    check_one(
        &text,
        &errors,
        &Expect::new(
            "tenant \"acme\"",
            &["sources", "10.1.2.0/99"],
            "\"10.1.2.0/99\"",
        )
        .exact(),
    );
    check_one(
        &text,
        &errors,
        &Expect::new("tenant \"acme\"", &["area_code", "9a"], "\"9a\"").exact(),
    );
}

// ------------------------------------------------------------------------------------------
// Users, groups, queues, conferences: names and numbers

#[test]
fn duplicate_user_names() {
    let text = with(
        r#"
  [[tenant.users]]
  name = "alice"
  extension = "1001"

  [[tenant.users]]
  name = "alice"
  extension = "1002"
"#,
    );
    expect(
        &text,
        Expect::new(
            "tenant \"acme\", user \"alice\"",
            &["duplicate", "alice"],
            "\"alice\"",
        )
        .nth(1)
        .exact(),
    );
}

#[test]
fn user_missing_name_and_extension() {
    let text = with(
        r#"
  [[tenant.users]]
  extension = "1001"

  [[tenant.users]]
  name = "bob"
"#,
    );
    let errors = invalid(&text);
    check_one(
        &text,
        &errors,
        &Expect::new("tenant \"acme\", user #1", &["name"], "[[tenant.users]]"),
    );
    check_one(
        &text,
        &errors,
        &Expect::new(
            "tenant \"acme\", user \"bob\"",
            &["extension"],
            "[[tenant.users]]",
        )
        .nth(1),
    );
}

#[test]
fn duplicate_extension_numbers() {
    let text = with(
        r#"
  [[tenant.users]]
  name = "alice"
  extension = "1001"

  [[tenant.queues]]
  name = "support"
  number = "1001"
"#,
    );
    let errors = expect(
        &text,
        Expect::new("tenant \"acme\", queue \"support\"", &["1001"], "\"1001\"")
            .nth(1)
            .exact(),
    );
    let e = find(&errors, "queue \"support\"", &["1001"]);
    assert!(e.message.contains("alice"), "should name the owner: {e}");
}

#[test]
fn duplicate_numbers_between_group_and_conference() {
    let text = with(
        r#"
  [[tenant.groups]]
  name = "sales"
  number = "2000"

  [[tenant.conferences]]
  name = "weekly"
  number = "2000"
"#,
    );
    expect(
        &text,
        Expect::new("conference \"weekly\"", &["2000", "sales"], "\"2000\"")
            .nth(1)
            .exact(),
    );
}

#[test]
fn unusable_extension_number() {
    let text = with(
        r#"
  [[tenant.users]]
  name = "alice"
  extension = "10 01"
"#,
    );
    expect(
        &text,
        Expect::new("user \"alice\"", &["10 01"], "\"10 01\"").exact(),
    );
}

#[test]
fn user_with_unknown_call_acl() {
    let text = with(
        r#"
  [[tenant.users]]
  name = "alice"
  extension = "1001"
  call_acl = "nowhere"
"#,
    );
    expect(
        &text,
        Expect::new(
            "tenant \"acme\", user \"alice\"",
            &["call_acl", "nowhere"],
            "\"nowhere\"",
        )
        .exact(),
    );
}

#[test]
fn group_with_unknown_member() {
    let text = with(
        r#"
  [[tenant.users]]
  name = "alice"
  extension = "1001"

  [[tenant.groups]]
  name = "sales"
  members = ["alice", "zed"]
"#,
    );
    expect(
        &text,
        Expect::new("tenant \"acme\", group \"sales\"", &["zed"], "\"zed\"").exact(),
    );
}

#[test]
fn duplicate_group_names() {
    let text = with(
        r#"
  [[tenant.groups]]
  name = "sales"

  [[tenant.groups]]
  name = "sales"
"#,
    );
    expect(
        &text,
        Expect::new("group \"sales\"", &["duplicate", "sales"], "\"sales\"")
            .nth(1)
            .exact(),
    );
}

// ------------------------------------------------------------------------------------------
// Passwords

fn user_with_password(pw: &str) -> String {
    with(&format!(
        r#"
  [[tenant.users]]
  name = "alice"
  extension = "1001"
  call_permission_password = "{pw}"
"#
    ))
}

fn permission_with_password(pw: &str) -> String {
    with(&format!(
        r#"
  [[tenant.call_permissions]]
  name = "no-intl"
  extensions = ["_00X."]
  password = "{pw}"
"#
    ))
}

#[test]
fn password_with_hash_is_refused() {
    let text = permission_with_password("12#4");
    let errors = expect(
        &text,
        Expect::new(
            "tenant \"acme\", call_permission \"no-intl\"",
            &["password", "#", "not allowed"],
            "\"12#4\"",
        )
        .exact(),
    );
    assert!(errors.len() == 1, "{}", list(&errors));

    let text = user_with_password("#1");
    expect(
        &text,
        Expect::new(
            "tenant \"acme\", user \"alice\"",
            &["call_permission_password", "#", "not allowed"],
            "\"#1\"",
        )
        .exact(),
    );
}

#[test]
fn password_with_letters_is_refused() {
    let text = permission_with_password("12ab");
    expect(
        &text,
        Expect::new("call_permission \"no-intl\"", &["password"], "\"12ab\"").exact(),
    );
    let text = user_with_password("pw");
    expect(
        &text,
        Expect::new("user \"alice\"", &["call_permission_password"], "\"pw\"").exact(),
    );
}

#[test]
fn empty_passwords_are_refused() {
    let text = permission_with_password("");
    expect(
        &text,
        Expect::new("call_permission \"no-intl\"", &["password"], "password"),
    );
    let text = user_with_password("");
    expect(
        &text,
        Expect::new(
            "user \"alice\"",
            &["call_permission_password"],
            "call_permission_password",
        ),
    );
}

#[test]
fn user_password_longer_than_16() {
    valid(&user_with_password(&"1".repeat(16)));
    valid(&user_with_password("*1*2"));
    let long = "1".repeat(17);
    let text = user_with_password(&long);
    expect(
        &text,
        Expect::new(
            "user \"alice\"",
            &["call_permission_password", "16"],
            &format!("\"{long}\""),
        )
        .exact(),
    );
}

#[test]
fn permission_password_longer_than_40() {
    valid(&permission_with_password(&"7".repeat(40)));
    let long = "7".repeat(41);
    let text = permission_with_password(&long);
    expect(
        &text,
        Expect::new(
            "call_permission \"no-intl\"",
            &["password", "40"],
            &format!("\"{long}\""),
        )
        .exact(),
    );
}

// ------------------------------------------------------------------------------------------
// Call permissions

#[test]
fn duplicate_call_permission_names() {
    let text = with(
        r#"
  [[tenant.call_permissions]]
  name = "no-intl"
  extensions = ["_00X."]

  [[tenant.call_permissions]]
  name = "no-intl"
  extensions = ["_X."]
"#,
    );
    expect(
        &text,
        Expect::new(
            "tenant \"acme\", call_permission \"no-intl\"",
            &["duplicate", "no-intl"],
            "\"no-intl\"",
        )
        .nth(1)
        .exact(),
    );
}

#[test]
fn call_permission_missing_name() {
    let text = with(
        r#"
  [[tenant.call_permissions]]
  extensions = ["_00X."]
"#,
    );
    expect(
        &text,
        Expect::new(
            "tenant \"acme\", call_permission #1",
            &["name"],
            "[[tenant.call_permissions]]",
        ),
    );
}

#[test]
fn call_permission_with_empty_extensions() {
    let text = with(
        r#"
  [[tenant.call_permissions]]
  name = "no-intl"
  extensions = []
"#,
    );
    expect(
        &text,
        Expect::new(
            "tenant \"acme\", call_permission \"no-intl\"",
            &["extensions"],
            "extensions = []",
        ),
    );
}

#[test]
fn call_permission_without_extensions() {
    let text = with(
        r#"
  [[tenant.call_permissions]]
  name = "no-intl"
  users = []
"#,
    );
    expect(
        &text,
        Expect::new(
            "tenant \"acme\", call_permission \"no-intl\"",
            &["extensions"],
            "[[tenant.call_permissions]]",
        ),
    );
}

#[test]
fn bad_extension_entries() {
    let text = with(
        r#"
  [[tenant.call_permissions]]
  name = "no-intl"
  extensions = ["_00X.",
    "12ab",
    "_[12",
    "_",
    "",
  ]
"#,
    );
    let errors = invalid(&text);
    for (bad, at) in [
        ("12ab", "\"12ab\""),
        ("_[12", "\"_[12\""),
        ("pattern `_`", "\"_\""),
    ] {
        check_one(
            &text,
            &errors,
            &Expect::new(
                "tenant \"acme\", call_permission \"no-intl\"",
                &["extensions", bad],
                at,
            )
            .exact(),
        );
    }
    check_one(
        &text,
        &errors,
        &Expect::new(
            "call_permission \"no-intl\"",
            &["extensions", "empty"],
            "\"\",",
        )
        .exact(),
    );
}

#[test]
fn bad_mode() {
    let text = with(
        r#"
  [[tenant.call_permissions]]
  name = "no-intl"
  mode = "block"
  extensions = ["_00X."]
"#,
    );
    expect(
        &text,
        Expect::new(
            "call_permission \"no-intl\"",
            &["mode", "block"],
            "\"block\"",
        )
        .exact(),
    );
}

#[test]
fn permission_references_must_resolve() {
    let text = with(
        r#"
  [[tenant.users]]
  name = "alice"
  extension = "1001"

  [[tenant.call_permissions]]
  name = "no-intl"
  extensions = ["_00X."]
  users = ["alice", "ghost-user"]
  groups = ["ghost-group"]
  outcalls = ["ghost-outcall"]
  incalls = ["ghost-incall"]
"#,
    );
    let errors = invalid(&text);
    for (kind, name) in [
        ("user", "ghost-user"),
        ("group", "ghost-group"),
        ("outcall", "ghost-outcall"),
        ("incall", "ghost-incall"),
    ] {
        check_one(
            &text,
            &errors,
            &Expect::new(
                "tenant \"acme\", call_permission \"no-intl\"",
                &[kind, name],
                &format!("\"{name}\""),
            )
            .exact(),
        );
    }
    assert_eq!(errors.len(), 4, "{}", list(&errors));
}

#[test]
fn references_do_not_cross_tenants() {
    let text = with(
        r#"
  [[tenant.users]]
  name = "alice"
  extension = "1001"

[[tenant]]
name = "beta"
country = "FR"

  [[tenant.call_permissions]]
  name = "p"
  extensions = ["_X."]
  users = ["alice"]
"#,
    );
    expect(
        &text,
        Expect::new(
            "tenant \"beta\", call_permission \"p\"",
            &["alice"],
            "\"alice\"",
        )
        .nth(1)
        .exact(),
    );
}

// ------------------------------------------------------------------------------------------
// ACL patterns

fn pattern(body: &str) -> String {
    with(&format!(
        "\n  [[tenant.acl_patterns]]\n  name = \"p1\"\n{body}"
    ))
}

#[test]
fn regex_that_does_not_compile() {
    let text = pattern("  regex = '^34[0-9'\n");
    expect(
        &text,
        Expect::new(
            "tenant \"acme\", acl_pattern \"p1\"",
            &["^34[0-9"],
            "'^34[0-9'",
        )
        .exact(),
    );
}

#[test]
fn regex_with_look_around_says_so() {
    for re in ["^34(?=6)", "^(?!34)", "(?<=34)6", "(?<!\\+)34"] {
        let text = pattern(&format!("  regex = '{re}'\n"));
        expect(
            &text,
            Expect::new(
                "tenant \"acme\", acl_pattern \"p1\"",
                &["look-around", "not supported"],
                &format!("'{re}'"),
            )
            .exact(),
        );
    }
}

#[test]
fn pattern_with_both_regex_and_numbers() {
    let text = pattern("  regex = '^34'\n  numbers = [\"+34946002050\"]\n");
    expect(
        &text,
        Expect::new("acl_pattern \"p1\"", &["regex", "numbers"], "numbers"),
    );
}

#[test]
fn pattern_with_neither_regex_nor_numbers() {
    let text = pattern("");
    expect(
        &text,
        Expect::new(
            "tenant \"acme\", acl_pattern \"p1\"",
            &["regex", "numbers"],
            "[[tenant.acl_patterns]]",
        ),
    );
}

#[test]
fn pattern_numbers_must_be_e164() {
    for bad in [
        "0034946002050",
        "34946002050",
        "+",
        "+34 946",
        "+1234567890123456",
    ] {
        let text = pattern(&format!("  numbers = [\"+34946002050\", \"{bad}\"]\n"));
        expect(
            &text,
            Expect::new(
                "tenant \"acme\", acl_pattern \"p1\"",
                &["E.164", bad],
                &format!("\"{bad}\""),
            )
            .exact(),
        );
    }
    let text = pattern("  numbers = []\n");
    expect(
        &text,
        Expect::new("acl_pattern \"p1\"", &["numbers"], "numbers = []"),
    );
}

#[test]
fn brand_pattern_errors_name_the_brand() {
    let text = base().replace(
        "name = \"example\"\n",
        "name = \"example\"\n\n[[brand.acl_patterns]]\nname = \"bp\"\nregex = '(?=x)'\n\n[[brand.acl_patterns]]\nname = \"bp\"\nregex = '^1'\n",
    );
    let errors = invalid(&text);
    check_one(
        &text,
        &errors,
        &Expect::new("brand, acl_pattern \"bp\"", &["look-around"], "'(?=x)'").exact(),
    );
    check_one(
        &text,
        &errors,
        &Expect::new("brand, acl_pattern \"bp\"", &["duplicate", "bp"], "\"bp\"")
            .nth(1)
            .exact(),
    );
}

#[test]
fn duplicate_tenant_pattern_names() {
    let text = pattern("  regex = '^34'\n")
        + "\n  [[tenant.acl_patterns]]\n  name = \"p1\"\n  regex = '^33'\n";
    expect(
        &text,
        Expect::new("acl_pattern \"p1\"", &["duplicate", "p1"], "\"p1\"")
            .nth(1)
            .exact(),
    );
}

#[test]
fn quantified_anchor_is_accepted_with_a_warning() {
    let text = pattern("  regex = '^+34'\n");
    let c = valid(&text);
    let (line, col) = pos(&text, "'^+34'");
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("^+34") && w.contains(&format!("{FILE}:{line}:{col}"))),
        "a warning about `^+34` at {line}:{col} expected, got {:?}",
        c.warnings
    );
    let c = valid(&pattern("  regex = '^\\+34'\n"));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

// ------------------------------------------------------------------------------------------
// Call ACLs

fn acl(body: &str) -> String {
    with(&format!(
        r#"
  [[tenant.acl_patterns]]
  name = "spain"
  regex = '^34'

  [[tenant.acl_patterns]]
  name = "uk"
  regex = '^44'

  [[tenant.call_acls]]
  name = "spain-only"
{body}"#
    ))
}

#[test]
fn acl_rule_with_unknown_pattern() {
    let text = acl(r#"  default = "deny"
  rules = [
    { metric = 10, pattern = "spain", action = "allow" },
    { metric = 20, pattern = "mars", action = "allow" },
  ]
"#);
    expect(
        &text,
        Expect::new(
            "tenant \"acme\", call_acl \"spain-only\"",
            &["mars"],
            "\"mars\"",
        )
        .exact(),
    );
}

#[test]
fn acl_with_duplicate_metrics() {
    let text = acl(r#"  default = "deny"
  rules = [
    { metric = 10, pattern = "spain", action = "allow" },
    { metric = 10, pattern = "uk", action = "deny" },
  ]
"#);
    let (line, col) = pos_nth(&text, "10, pattern", 1);
    let errors = invalid(&text);
    let e = find(&errors, "call_acl \"spain-only\"", &["metric", "10"]);
    assert_eq!(e.position, Some((line, col)), "{e}");
    assert!(e.context.contains("tenant \"acme\""), "{e}");
}

#[test]
fn acl_missing_default() {
    let text = acl(
        r#"  rules = [ { metric = 10, pattern = "spain", action = "allow" } ]
"#,
    );
    expect(
        &text,
        Expect::new(
            "tenant \"acme\", call_acl \"spain-only\"",
            &["default"],
            "[[tenant.call_acls]]",
        ),
    );
}

#[test]
fn acl_default_not_allow_or_deny() {
    let text = acl("  default = \"reject\"\n");
    expect(
        &text,
        Expect::new(
            "call_acl \"spain-only\"",
            &["default", "reject"],
            "\"reject\"",
        )
        .exact(),
    );
}

#[test]
fn acl_rule_missing_metric_pattern_or_action() {
    let text = acl(r#"  default = "deny"
  rules = [
    { pattern = "spain", action = "allow" },
    { metric = 20, action = "allow" },
    { metric = 30, pattern = "uk" },
    { metric = 40, pattern = "uk", action = "maybe" },
  ]
"#);
    let errors = invalid(&text);
    for (rule, key, at) in [
        ("rule #1", "metric", "{ pattern = \"spain\""),
        ("rule #2", "pattern", "{ metric = 20"),
        ("rule #3", "action", "{ metric = 30"),
        ("rule #4", "maybe", "\"maybe\""),
    ] {
        check_one(
            &text,
            &errors,
            &Expect::new(&format!("call_acl \"spain-only\", {rule}"), &[key], at),
        );
    }
}

#[test]
fn duplicate_acl_names() {
    let text = acl("  default = \"deny\"\n")
        + "\n  [[tenant.call_acls]]\n  name = \"spain-only\"\n  default = \"allow\"\n";
    expect(
        &text,
        Expect::new("call_acl \"spain-only\"", &["duplicate"], "\"spain-only\"")
            .nth(1)
            .exact(),
    );
}

// ------------------------------------------------------------------------------------------
// Outcalls and incalls

#[test]
fn outcall_with_bad_pattern() {
    let text = with(
        r#"
  [[tenant.outcalls]]
  name = "trunk"
  patterns = ["_00X.", "_[9-1]X", "0a0"]
"#,
    );
    let errors = invalid(&text);
    for (bad, at) in [("_[9-1]X", "\"_[9-1]X\""), ("0a0", "\"0a0\"")] {
        check_one(
            &text,
            &errors,
            &Expect::new("tenant \"acme\", outcall \"trunk\"", &["patterns", bad], at).exact(),
        );
    }
}

#[test]
fn outcall_with_bad_next_hop() {
    let text = with(
        r#"
  [[tenant.outcalls]]
  name = "trunk"
  patterns = ["_00X."]
  next_hop = "udp:10.0.0.2"
"#,
    );
    expect(
        &text,
        Expect::new(
            "outcall \"trunk\"",
            &["next_hop", "udp:10.0.0.2"],
            "\"udp:10.0.0.2\"",
        )
        .exact(),
    );
}

fn incall(body: &str) -> String {
    with(&format!(
        r#"
  [[tenant.users]]
  name = "alice"
  extension = "1001"

  [[tenant.incalls]]
  name = "main"
{body}"#
    ))
}

#[test]
fn incall_did_that_does_not_normalize() {
    let text = incall("  did = \"abc\"\n  destination = \"alice\"\n");
    expect(
        &text,
        Expect::new(
            "tenant \"acme\", incall \"main\"",
            &["did", "abc"],
            "\"abc\"",
        )
        .exact(),
    );
}

#[test]
fn incall_missing_did() {
    let text = incall("  destination = \"alice\"\n");
    expect(
        &text,
        Expect::new(
            "tenant \"acme\", incall \"main\"",
            &["did"],
            "[[tenant.incalls]]",
        ),
    );
}

#[test]
fn incall_destination_unknown() {
    let text = incall("  did = \"+34910000000\"\n  destination = \"nobody\"\n");
    expect(
        &text,
        Expect::new(
            "tenant \"acme\", incall \"main\"",
            &["destination", "nobody"],
            "\"nobody\"",
        )
        .exact(),
    );
}

#[test]
fn duplicate_dids_after_normalization() {
    let text = incall("  did = \"+34910000000\"\n")
        + "\n  [[tenant.incalls]]\n  name = \"other\"\n  did = \"910000000\"\n";
    expect(
        &text,
        Expect::new(
            "incall \"other\"",
            &["+34910000000", "main"],
            "\"910000000\"",
        )
        .exact(),
    );
}

// ------------------------------------------------------------------------------------------
// All errors at once

#[test]
fn many_mistakes_are_all_reported_at_once() {
    let text = r#"debug = true

[server]
listen = ["udp:127.0.0.1:45060", "udp:nothost"]
next_hop = "udp:127.0.0.1:45070"
trusted_peers = ["10.0.0.0/33"]

[pin]
attempts = 0

[brand]
name = "example"

[[tenant]]
name = "acme"
country = "ES"

  [[tenant.users]]
  name = "alice"
  extension = "1001"
  call_acl = "missing-acl"
  call_permission_password = "12#4"

  [[tenant.queues]]
  name = "support"
  number = "1001"

  [[tenant.call_permissions]]
  name = "no-intl"
  extensions = ["_00X.", "12ab"]
  users = ["ghost"]

[[tenant]]
name = "beta"
country = "XX"

  [[tenant.acl_patterns]]
  name = "fr"
  regex = '^33(?=6)'

  [[tenant.acl_patterns]]
  name = "office"
  numbers = ["0034946002050"]

  [[tenant.call_acls]]
  name = "europe"
  default = "deny"
  rules = [
    { metric = 10, pattern = "fr", action = "allow" },
    { metric = 10, pattern = "office", action = "allow" },
  ]

  [[tenant.incalls]]
  name = "main"
  did = "+34910000000"
  destination = "nobody"

  [[tenant.call_permissions]]
  name = "beta-perm"
  mode = "block"
"#;
    let expected = [
        Expect::new("", &["unknown key", "debug"], "debug").exact(),
        Expect::new("server", &["udp:nothost"], "\"udp:nothost\"").exact(),
        Expect::new("server", &["10.0.0.0/33"], "\"10.0.0.0/33\"").exact(),
        Expect::new("pin", &["attempts"], "attempts = 0"),
        Expect::new(
            "tenant \"acme\", user \"alice\"",
            &["missing-acl"],
            "\"missing-acl\"",
        )
        .exact(),
        Expect::new("tenant \"acme\", user \"alice\"", &["#"], "\"12#4\"").exact(),
        Expect::new("tenant \"acme\", queue \"support\"", &["1001"], "\"1001\"")
            .nth(1)
            .exact(),
        Expect::new(
            "tenant \"acme\", call_permission \"no-intl\"",
            &["12ab"],
            "\"12ab\"",
        )
        .exact(),
        Expect::new(
            "tenant \"acme\", call_permission \"no-intl\"",
            &["ghost"],
            "\"ghost\"",
        )
        .exact(),
        Expect::new("tenant \"beta\"", &["country", "XX"], "\"XX\"").exact(),
        Expect::new(
            "tenant \"beta\", acl_pattern \"fr\"",
            &["look-around"],
            "'^33(?=6)'",
        )
        .exact(),
        Expect::new(
            "tenant \"beta\", acl_pattern \"office\"",
            &["0034946002050"],
            "\"0034946002050\"",
        )
        .exact(),
        Expect::new(
            "tenant \"beta\", call_acl \"europe\"",
            &["metric"],
            "10, pattern = \"office\"",
        ),
        Expect::new(
            "tenant \"beta\", incall \"main\"",
            &["nobody"],
            "\"nobody\"",
        )
        .exact(),
        Expect::new(
            "tenant \"beta\", call_permission \"beta-perm\"",
            &["extensions"],
            "[[tenant.call_permissions]]",
        )
        .nth(1),
        Expect::new(
            "tenant \"beta\", call_permission \"beta-perm\"",
            &["block"],
            "\"block\"",
        )
        .exact(),
    ];
    let errors = invalid(text);
    for x in &expected {
        check_one(text, &errors, x);
    }
    assert!(
        errors.len() >= expected.len(),
        "{} errors for {} mistakes:\n{}",
        errors.len(),
        expected.len(),
        list(&errors)
    );
    // Errors come in file order within each part, and none is repeated.
    let mut shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    shown.sort();
    shown.dedup();
    assert_eq!(
        shown.len(),
        errors.len(),
        "repeated errors:\n{}",
        list(&errors)
    );
}

// ------------------------------------------------------------------------------------------
// The command line

/// A temporary folder, removed when dropped (also when a test fails).
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!(
            "sipscreen-config-errors-{}-{tag}-{n}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }
    fn path(&self) -> &Path {
        &self.0
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).expect("write temp config");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the binary, killing it if it is still running after `limit` (a proxy that started
/// although it should not have).
fn run_bin(args: &[&str], limit: Duration) -> (Output, bool) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sipscreen"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sipscreen");
    let start = Instant::now();
    let mut timed_out = false;
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            timed_out = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (child.wait_with_output().expect("output"), timed_out)
}

fn text_of(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A bad configuration with mistakes at known places: (text, snippets where errors are).
fn bad_config() -> (String, Vec<&'static str>) {
    let text = with(
        r#"
  [[tenant.users]]
  name = "alice"
  extension = "1001"
  call_permission_password = "12#4"
  shoe_size = 42

  [[tenant.call_permissions]]
  name = "no-intl"
  extensions = ["12ab"]
  users = ["ghost"]
"#,
    )
    .replace("\"ES\"", "\"XX\"");
    (
        text,
        vec!["shoe_size", "\"XX\"", "\"12#4\"", "\"12ab\"", "\"ghost\""],
    )
}

#[test]
fn cli_validate_prints_every_error_and_exits_2() {
    let dir = TempDir::new("validate");
    let (text, snippets) = bad_config();
    let path = dir.write("bad.toml", &text);
    let p = path.to_str().unwrap();
    let (out, timed_out) = run_bin(&["validate", "--config", p], Duration::from_secs(30));
    assert!(!timed_out, "validate did not finish");
    let all = text_of(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    for s in &snippets {
        let (line, _) = pos(&text, s);
        let prefix = format!("{p}:{line}:");
        assert!(
            all.lines().any(|l| l.starts_with(&prefix)),
            "no error line starting with `{prefix}` (for `{s}`):\n{all}"
        );
    }
    // Exactly the library's errors, each on its own line with file:line:col.
    let Err(ConfigErrors(errors)) = Config::load(&path) else {
        panic!("bad config loaded")
    };
    assert!(errors.len() >= snippets.len());
    for e in &errors {
        let shown = e.to_string();
        assert!(
            all.lines().any(|l| l == shown),
            "`{shown}` not printed:\n{all}"
        );
        let (line, col) = e
            .position
            .expect("every error of this config has a position");
        assert!(shown.starts_with(&format!("{p}:{line}:{col}: ")), "{shown}");
    }
}

#[test]
fn cli_validate_accepts_the_shipped_config() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/sipscreen.toml");
    let (out, timed_out) = run_bin(&["validate", "--config", path], Duration::from_secs(30));
    assert!(!timed_out);
    assert_eq!(out.status.code(), Some(0), "{}", text_of(&out));
}

#[test]
fn cli_validate_missing_file_exits_2() {
    let dir = TempDir::new("missing");
    let path = dir.path().join("does-not-exist.toml");
    let (out, _) = run_bin(
        &["validate", "--config", path.to_str().unwrap()],
        Duration::from_secs(30),
    );
    let all = text_of(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(all.contains("does-not-exist.toml"), "{all}");
}

#[test]
fn cli_check_with_a_bad_config_exits_2() {
    let dir = TempDir::new("check");
    let (text, snippets) = bad_config();
    let path = dir.write("bad.toml", &text);
    let p = path.to_str().unwrap();
    let (out, timed_out) = run_bin(
        &["check", "--config", p, "--from", "a", "--to", "b"],
        Duration::from_secs(30),
    );
    assert!(!timed_out);
    let all = text_of(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    let (line, _) = pos(&text, snippets[0]);
    assert!(all.contains(&format!("{p}:{line}:")), "{all}");
}

#[test]
fn cli_run_never_starts_with_an_unknown_key() {
    let dir = TempDir::new("run");
    let text = with("  shoe_size = 42\n");
    let path = dir.write("bad.toml", &text);
    let p = path.to_str().unwrap();
    let (out, timed_out) = run_bin(&["run", "--config", p], Duration::from_secs(10));
    let all = text_of(&out);
    assert!(!timed_out, "`run` started with a bad config:\n{all}");
    assert_eq!(out.status.code(), Some(2), "{all}");
    let (line, col) = pos(&text, "shoe_size");
    assert!(
        all.contains(&format!("{p}:{line}:{col}")) && all.contains("shoe_size"),
        "`run` must print the config error:\n{all}"
    );
}

// ------------------------------------------------------------------------------------------
// Admission: digest credentials, who can reach a tenant, and the new limits

#[test]
fn digest_credentials_are_checked() {
    let text = with(
        r#"
  [[tenant.users]]
  name = "alice"
  extension = "1001"
  auth_password = "pw"
  auth_ha1 = "0123456789abcdef0123456789abcdef"

  [[tenant.users]]
  name = "bob"
  extension = "1002"
  auth_ha1 = "not-hex"

  [[tenant.users]]
  name = "carol"
  extension = "1003"
  auth_username = "shared"
  auth_password = "pw"

  [[tenant.users]]
  name = "dave"
  extension = "1004"
  auth_username = "shared"
  auth_password = "pw2"
"#,
    );
    let errors = invalid(&text);
    let e = find(
        &errors,
        "user \"alice\"",
        &["auth_password", "auth_ha1", "not both"],
    );
    assert_eq!(e.position, Some(pos(&text, "\"pw\"\n  auth_ha1")));
    find(&errors, "user \"bob\"", &["auth_ha1", "32 hex digits"]);
    find(
        &errors,
        "user \"dave\"",
        &["auth_username", "shared", "already"],
    );
}

#[test]
fn valid_credentials_and_realm_load() {
    let text = base().replace(
        "name = \"acme\"\n",
        "name = \"acme\"\nrealm = \"sip.acme.example\"\n",
    ) + r#"
  [[tenant.users]]
  name = "alice"
  extension = "1001"
  auth_password = "pw"

  [[tenant.users]]
  name = "bob"
  extension = "1002"
  auth_username = "bob-phone"
  auth_ha1 = "0123456789ABCDEF0123456789abcdef"
"#;
    let c = valid(&text);
    let realm = &c.proxy.auth.tenants[0];
    assert_eq!(&*realm.realm, "sip.acme.example");
    let mut names: Vec<&str> = realm.users.keys().map(|k| &**k).collect();
    names.sort_unstable();
    assert_eq!(names, ["alice", "bob-phone"]);
}

#[test]
fn a_tenant_nobody_can_reach_and_sources_that_are_everyone_are_warned_about() {
    let text = base().replace("trusted_peers = [\"127.0.0.1/32\"]\n", "");
    let c = valid(&text);
    assert!(
        c.warnings.iter().any(|w| w.contains("nobody can reach")),
        "{:?}",
        c.warnings
    );
    let text = base()
        .replace("trusted_peers = [\"127.0.0.1/32\"]\n", "")
        .replace(
            "country = \"ES\"\n",
            "country = \"ES\"\nsources = [\"0.0.0.0/0\"]\n",
        );
    let c = valid(&text);
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("0.0.0.0/0") && w.contains("every address")),
        "{:?}",
        c.warnings
    );
    assert!(!c.warnings.iter().any(|w| w.contains("nobody can reach")));
}

#[test]
fn new_limits_are_checked_and_rtp_ports_need_an_even_port() {
    let text = base()
        + "[limits]\nmax_dialogs = 0\ninvite_timeout_s = -3\nper_source = { requests_per_s = 0, burst = 10, ban_s = 5 }\n[pin]\nrtp_ports = \"31601-31601\"\n";
    let errors = invalid(&text);
    find(&errors, "limits", &["max_dialogs"]);
    find(&errors, "limits", &["invite_timeout_s"]);
    find(&errors, "limits.per_source", &["requests_per_s"]);
    find(&errors, "pin", &["rtp_ports", "even"]);
    let c = valid(&(base()
        + "[limits]\nmax_dialogs = 7\ninvite_timeout_s = 90\ndialog_timeout_s = 600\nmax_dialed_length = 32\nper_source = { requests_per_s = 5, burst = 9, ban_s = 30 }\n"));
    let l = c.proxy.limits;
    assert_eq!(
        (
            l.max_dialogs,
            l.invite_timeout.as_secs(),
            l.dialog_timeout.as_secs(),
            l.max_dialed_length
        ),
        (7, 90, 600, 32)
    );
    assert_eq!(
        (
            l.per_source.requests_per_s,
            l.per_source.burst,
            l.per_source.ban.as_secs()
        ),
        (5, 9, 30)
    );
}

#[test]
fn admin_listener_needs_tokens_off_loopback() {
    let text = base() + "\n[admin]\nlisten = \"0.0.0.0:8080\"\n";
    let errors = invalid(&text);
    let e = find(&errors, "admin", &["`tokens` are required", "0.0.0.0:8080"]);
    assert_eq!(e.position, Some(pos(&text, "\"0.0.0.0:8080\"")));
    let with_tokens = base()
        + "\n[admin]\nlisten = \"0.0.0.0:8080\"\ntokens = [{ name = \"ops\", token = \"a-long-enough-token\" }]\n";
    let c = valid(&with_tokens);
    let admin = c.admin.expect("[admin] is read");
    assert_eq!(
        admin.tokens,
        [("ops".to_owned(), "a-long-enough-token".to_owned())]
    );
    // Loopback needs none, IPv6 included.
    for listen in ["127.0.0.1:8080", "[::1]:0", "127.9.9.9:1"] {
        valid(&format!("{}\n[admin]\nlisten = \"{listen}\"\n", base()));
    }
}

#[test]
fn admin_errors_are_all_reported() {
    let text = base()
        + "\n[admin]\nlisten = \"localhost:80\"\ntokens = [\n  { name = \"ops\", token = \"\" },\n  { name = \"ops\", token = \"with space in it\" },\n  { token = \"no-name-given-here\" },\n  { name = \"short\", token = \"abc\" },\n]\n";
    let errors = invalid(&text);
    find(
        &errors,
        "admin",
        &["`listen`", "localhost:80", "not IP:PORT"],
    );
    find(&errors, "admin", &["duplicate token name `ops`"]);
    assert_eq!(
        errors
            .iter()
            .filter(|e| e.message.contains("`token` must be non-empty"))
            .count(),
        2,
        "{}",
        list(&errors)
    );
    find(&errors, "admin, token #3", &["missing required key `name`"]);
    // A short token is valid, with a warning.
    let short = base()
        + "\n[admin]\nlisten = \"127.0.0.1:0\"\ntokens = [{ name = \"t\", token = \"abc\" }]\n";
    let c = valid(&short);
    assert!(
        c.warnings.iter().any(|w| w.contains("shorter than 16")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn names_are_path_and_log_safe() {
    for (name, why) in [
        ("", "must not be empty"),
        ("a/b", "must not contain `/`"),
        ("bad\u{7}bell", "control characters"),
    ] {
        let text = with(&format!(
            "\n  [[tenant.users]]\n  name = {}\n  extension = \"1001\"\n",
            toml_string(name)
        ));
        let errors = invalid(&text);
        find(&errors, "user", &["`name`", why]);
    }
    let long = "x".repeat(129);
    let text = with(&format!(
        "\n  [[tenant.call_permissions]]\n  name = \"{long}\"\n  extensions = [\"1\"]\n"
    ));
    find(&invalid(&text), "call_permission", &["longer than 128"]);
    let ok = "y".repeat(128);
    valid(&with(&format!(
        "\n  [[tenant.call_permissions]]\n  name = \"{ok}\"\n  extensions = [\"1\"]\n"
    )));
}

/// A TOML basic string holding `s` (control characters escaped).
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

// ------------------------------------------------------------------------------------------
// Next hops by name, lists of next hops, DNS and failover settings (SPEC §5.2)

#[test]
fn next_hop_names_lists_dns_and_failover_settings_are_valid() {
    let text = base()
        .replace(
            "next_hop = \"udp:127.0.0.1:45070\"",
            "next_hop = [\"sip:trunk.example.com\", \"udp:127.0.0.1:45070\"]\ndns = [\"127.0.0.1:5353\", \"::1\"]\nprobe_interval_s = 30\ndown_after = 5",
        )
        + "next_hop = \"tcp:pbx.example.com:5080\"\n";
    let c = valid(&text);
    let s = &c.proxy.server;
    assert_eq!(
        s.hops.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
        [
            "[\"sip:trunk.example.com\", \"udp:127.0.0.1:45070\"]",
            "tcp:pbx.example.com:5080"
        ]
    );
    assert_eq!(
        s.dns,
        [
            "127.0.0.1:5353".parse().unwrap(),
            "[::1]:53".parse().unwrap()
        ]
    );
    assert_eq!(
        (s.probe_interval, s.down_after),
        (Duration::from_secs(30), 5)
    );
    let names: Vec<String> = s.names().iter().map(|n| n.to_string()).collect();
    assert_eq!(names, ["sip:trunk.example.com", "tcp:pbx.example.com:5080"]);
    // The defaults.
    let d = valid(&base());
    assert_eq!(
        (d.proxy.server.probe_interval, d.proxy.server.down_after),
        (Duration::from_secs(10), 3)
    );
    assert!(d.proxy.server.dns.is_empty());
}

#[test]
fn an_empty_next_hop_list() {
    let text = base().replace("\"udp:127.0.0.1:45070\"", "[]");
    expect(
        &text,
        Expect::new("server", &["next_hop", "at least one"], "[]\n").exact(),
    );
}

#[test]
fn a_bad_entry_in_a_next_hop_list() {
    let text = base().replace(
        "\"udp:127.0.0.1:45070\"",
        "[\"udp:127.0.0.1:45070\", \"sip:trunk_1.example.com\"]",
    );
    expect(
        &text,
        Expect::new(
            "server",
            &["next_hop", "trunk_1.example.com", "host name"],
            "\"sip:trunk_1.example.com\"",
        )
        .exact(),
    );
}

#[test]
fn next_hops_that_are_not_host_names() {
    let text = with(
        "next_hop = \"udp:1.2.3.999:5060\"\n\n  [[tenant.outcalls]]\n  name = \"trunk\"\n  patterns = [\"_X.\"]\n  next_hop = \"sip:-trunk-.example.com\"\n",
    );
    let errors = invalid(&text);
    check_one(
        &text,
        &errors,
        &Expect::new(
            "tenant \"acme\"",
            &["next_hop", "1.2.3.999", "host name"],
            "\"udp:1.2.3.999:5060\"",
        )
        .exact(),
    );
    check_one(
        &text,
        &errors,
        &Expect::new(
            "outcall \"trunk\"",
            &["next_hop", "-trunk-.example.com"],
            "\"sip:-trunk-.example.com\"",
        )
        .exact(),
    );
}

#[test]
fn a_next_hop_of_the_wrong_type() {
    let text = base().replace("\"udp:127.0.0.1:45070\"", "5070");
    expect(
        &text,
        Expect::new("server", &["next_hop", "a next hop or a list"], "5070").exact(),
    );
}

#[test]
fn bad_dns_servers() {
    let text = base().replace(
        "trusted_peers",
        "dns = [\"127.0.0.1:5353\", \"dns.example.com\", \"127.0.0.1:0\"]\ntrusted_peers",
    );
    let errors = invalid(&text);
    for bad in ["dns.example.com", "127.0.0.1:0"] {
        check_one(
            &text,
            &errors,
            &Expect::new("server", &["dns", bad], &format!("\"{bad}\"")).exact(),
        );
    }
    let text = base().replace("trusted_peers", "dns = []\ntrusted_peers");
    expect(
        &text,
        Expect::new("server", &["dns", "at least one"], "[]").exact(),
    );
}

#[test]
fn bad_failover_intervals() {
    let text = base().replace(
        "trusted_peers",
        "probe_interval_s = 0\ndown_after = -1\ntrusted_peers",
    );
    let errors = invalid(&text);
    check_one(
        &text,
        &errors,
        &Expect::new("server", &["probe_interval_s", "positive"], "0\n").exact(),
    );
    check_one(
        &text,
        &errors,
        &Expect::new("server", &["down_after", "positive"], "-1").exact(),
    );
    let text = base().replace("trusted_peers", "probe_interval_s = 7200\ntrusted_peers");
    expect(
        &text,
        Expect::new("server", &["probe_interval_s", "3600"], "7200").exact(),
    );
}
