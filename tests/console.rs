//! The web console (SPEC §10) in a real headless browser: sipscreen on loopback with admin
//! tokens and two tenants, Chromium driven through every view by `tests/console/e2e.mjs`
//! (playwright-core), and real SIPp calls placed when the script asks for them, which its
//! live table must show. The script saves a screenshot of each view in the test's folder, or
//! in `docs/screenshots/` (the README's pictures) when `REFRESH_SCREENSHOTS=1`.
//!
//! Needs Node.js, Debian's Chromium (`/usr/bin/chromium`) and `tests/console/node_modules`
//! (`npm ci`): scripts/test installs what is missing; here a missing one is a failure that
//! says so, never a skip.

mod common;

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::http::request;
use common::net::NextHop;
use common::process::Proc;
use common::proxy::Sipscreen;
use common::sipp::SippCommand;
use common::{read_lossy, TempDir};

const IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const TOKEN: &str = "console-e2e-token-0123456789";
/// A Spanish mobile: alice is refused it once the console gave her a permission that denies
/// mobiles; bob's Call ACL allows it.
const MOBILE: &str = "600000001";
/// A Spanish premium-rate number: bob's Call ACL denies it.
const PREMIUM: &str = "905123456";
/// What the script prints when the calls are to be placed.
const CALL_NOW: &str = "console-e2e: call now";
/// How long the script may take to reach the calls, and to finish after them.
const TO_CALLS: Duration = Duration::from_secs(90);
const TO_END: Duration = Duration::from_secs(120);

/// alice (1001) and bob (1002, with a Call ACL and a PIN) in group sales of tenant acme, whose
/// phones are on loopback; an outcall to the test's next hop; a second tenant, so that the
/// console has to ask which.
fn config(next_hop: &str, admin: &str) -> String {
    format!(
        r#"[server]
listen = ["udp:127.0.0.1:0"]
next_hop = "udp:{next_hop}"

{admin}

[brand]
name = "brand"

[[brand.acl_patterns]]
name = "spain-mobile"
regex = '^34[67][0-9]{{8}}$'

[[brand.acl_patterns]]
name = "spain-premium"
regex = '^34(80[3-7]|90[57])[0-9]{{6}}$'

[[tenant]]
name = "acme"
country = "ES"
sources = ["127.0.0.0/8"]

  [[tenant.acl_patterns]]
  name = "head-office"
  numbers = ["+34946002050"]

  [[tenant.call_acls]]
  name = "spain-only"
  default = "deny"
  rules = [
    {{ metric = 5,  pattern = "spain-premium", action = "deny" }},
    {{ metric = 10, pattern = "spain-mobile",  action = "allow" }},
  ]

  [[tenant.users]]
  name = "alice"
  extension = "1001"

  [[tenant.users]]
  name = "bob"
  extension = "1002"
  call_acl = "spain-only"
  call_permission_password = "2468"

  [[tenant.groups]]
  name = "sales"
  members = ["alice", "bob"]

  [[tenant.outcalls]]
  name = "everything"
  patterns = ["_X."]

  [[tenant.call_permissions]]
  name = "no-international"
  extensions = ["_00X."]
  password = "1234"
  groups = ["sales"]

  [[tenant.call_permissions]]
  name = "no-premium"
  extensions = ["_90[57]XXXXXX"]
  outcalls = ["everything"]

[[tenant]]
name = "globex"
country = "FR"
domains = ["globex.example.com"]

  [[tenant.users]]
  name = "carol"
  extension = "2001"
  auth_password = "carol-secret"
"#
    )
}

/// The admin listener with a token, as anywhere but loopback must have.
fn with_token() -> String {
    format!("[admin]\nlisten = \"127.0.0.1:0\"\ntokens = [{{ name = \"console\", token = \"{TOKEN}\" }}]")
}

/// The admin listener on loopback without tokens: local administration.
const LOCAL: &str = "[admin]\nlisten = \"127.0.0.1:0\"";

fn scenario(name: &str) -> String {
    common::scenario("admin", name)
}

/// `tests/console`, where the script and its node_modules are.
fn script_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console")
}

/// `node` on PATH, Chromium and playwright-core, or a failure saying how to get them.
fn node() -> PathBuf {
    let node = std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("node"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!("Node.js (`node`) is not on PATH: the console's end-to-end test needs it")
        });
    assert!(
        Path::new("/usr/bin/chromium").is_file(),
        "/usr/bin/chromium is missing: run scripts/test, which installs it (Debian package \
         `chromium`), or `apt-get install chromium`"
    );
    assert!(
        script_dir().join("node_modules/playwright-core").is_dir(),
        "tests/console/node_modules is missing: run scripts/test, or `npm ci` in tests/console"
    );
    node
}

/// Waits at most `limit` until `path` holds `text`, or the script ended; whether it does.
fn wait_for_output(script: &mut Proc, path: &Path, text: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if read_lossy(path).contains(text) {
            return true;
        }
        if script.exited().is_some() || Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_console_changes_rules_and_shows_the_calls_they_decide() {
    let node = node();
    let dir = TempDir::new("console", "e2e");
    let hop = NextHop::udp(IP);
    let proxy = Sipscreen::start(&dir, &config(&hop.addr().to_string(), &with_token()));
    let local_dir = TempDir::new("console", "local");
    let local = Sipscreen::start(&local_dir, &config(&hop.addr().to_string(), LOCAL));
    let signal = dir.path("signal");
    fs::create_dir_all(&signal).expect("create the signal directory");
    let (out, err) = (dir.path("e2e.out"), dir.path("e2e.err"));
    let output = || {
        format!(
            "--- e2e.mjs stdout\n{}\n--- e2e.mjs stderr\n{}\n--- sipscreen's log (end)\n{}",
            read_lossy(&out),
            read_lossy(&err),
            proxy.log_tail()
        )
    };
    let started = Instant::now();
    let mut script = Proc::spawn(
        "node e2e.mjs",
        Command::new(node)
            .arg("e2e.mjs")
            .current_dir(script_dir())
            .env("CONSOLE_URL", format!("http://{}/", proxy.admin()))
            .env("CONSOLE_TOKEN", TOKEN)
            .env("CONSOLE_SIGNAL_DIR", &signal)
            .env("CONSOLE_SCREENSHOTS", screenshots(&dir))
            .env("CONSOLE_DIALED", MOBILE)
            .env("CONSOLE_LOCAL_URL", format!("http://{}/", local.admin()))
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out).expect("create e2e.out"))
            .stderr(fs::File::create(&err).expect("create e2e.err")),
    );

    // The script has created a permission denying mobiles to alice, and watches the feed.
    assert!(
        wait_for_output(&mut script, &out, CALL_NOW, TO_CALLS),
        "the script did not ask for the call:\n{}",
        output()
    );
    let denied = |name: &str, caller: &str, dialed: &str| {
        let nothing = hop.silent("PBX");
        SippCommand::new(name, IP)
            .args(["-sf", &scenario("denied_uac.xml")])
            .args([proxy.udp().to_string()])
            .args([
                "-t", "u1", "-s", dialed, "-m", "1", "-set", "caller", caller,
            ])
            .run(&dir, Duration::from_secs(20))
            .assert_success();
        nothing.assert_nothing("a refused call reaches the PBX");
    };
    denied("bob-premium", "1002", PREMIUM);
    // The call the script waits for comes last, so that the others are in the table with it.
    let pbx = SippCommand::new("pbx", IP)
        .args(["-sf", &scenario("uas.xml"), "-t", "u1", "-m", "1"])
        .port(hop.lend())
        .timeout(Duration::from_secs(60))
        .spawn(&dir);
    SippCommand::new("bob-mobile", IP)
        .args(["-sf", &scenario("call_uac.xml")])
        .args([proxy.udp().to_string()])
        .args([
            "-t", "u1", "-s", MOBILE, "-m", "1", "-set", "caller", "1002",
        ])
        .run(&dir, Duration::from_secs(20))
        .assert_success();
    pbx.finish(Duration::from_secs(10)).assert_success();
    denied("alice-mobile", "1001", MOBILE);
    fs::write(signal.join("call-placed"), b"").expect("tell the script");

    let Some(status) = script.wait(TO_END) else {
        drop(script);
        panic!("the script did not finish within {TO_END:?}:\n{}", output());
    };
    assert!(
        status.success(),
        "the console's end-to-end script failed ({status}):\n{}",
        output()
    );
    eprintln!(
        "console end-to-end: {:.1} s, {}",
        started.elapsed().as_secs_f64(),
        read_lossy(&out).lines().last().unwrap_or_default()
    );

    // What the console changed is in the file, as an administrator would have written it.
    let file = fs::read_to_string(dir.path("sipscreen.toml")).expect("read the configuration");
    assert!(
        file.contains("name = \"console-no-mobiles\"") && !file.contains("console-bad"),
        "{file}"
    );
    proxy.stop_ok();
    local.stop_ok();
}

#[test]
fn the_console_loads_without_a_token_and_is_guarded_like_the_api() {
    let dir = TempDir::new("console", "assets");
    let hop = NextHop::udp(IP);
    let proxy = Sipscreen::start(&dir, &config(&hop.addr().to_string(), &with_token()));
    let addr = proxy.admin();
    let get = |path: &str, headers: &[(&str, &str)]| request(addr, "GET", path, headers, None);

    let page = get("/", &[]);
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(page.header("cache-control"), Some("no-cache"));
    let csp = page.header("content-security-policy").unwrap_or_default();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(page.body.contains("/assets/console.js"), "{}", page.body);
    for (path, content_type) in [
        ("/assets/console.js", "text/javascript; charset=utf-8"),
        ("/assets/console.css", "text/css; charset=utf-8"),
        ("/assets/favicon.svg", "image/svg+xml"),
    ] {
        let r = get(path, &[]);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("content-type"), Some(content_type), "{path}");
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        // Asked again with what the browser kept: not modified.
        let etag = r.header("etag").expect("an ETag").to_owned();
        assert_eq!(get(path, &[("If-None-Match", &etag)]).status, 304, "{path}");
    }
    // The page needs no token; the API still does, and the site checks apply to both.
    assert_eq!(get("/1.1/users", &[]).status, 401);
    assert_eq!(get("/", &[("Host", "evil.example")]).status, 403);
    assert_eq!(get("/", &[("Origin", "http://evil.example")]).status, 403);
    assert_eq!(
        get("/assets/nothing.js", &[("X-Auth-Token", TOKEN)]).status,
        404
    );
    proxy.stop_ok();
}

/// Where the screenshots go: the test's own folder, so that a test run leaves the source
/// tree as it was; `docs/screenshots/` only when asked to refresh the README's pictures
/// (`REFRESH_SCREENSHOTS=1 cargo test --test console`).
fn screenshots(dir: &TempDir) -> std::path::PathBuf {
    if std::env::var_os("REFRESH_SCREENSHOTS").is_some_and(|v| v == "1") {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots")
    } else {
        let shots = dir.path("screenshots");
        fs::create_dir_all(&shots).expect("create the screenshots folder");
        shots
    }
}
