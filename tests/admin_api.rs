//! The admin API (SPEC §9.1, §9.2) against the running binary, over HTTP on loopback: rules
//! changed through it decide the next SIPp call with no restart and no lost call; the file
//! keeps its comments and stays valid; bad changes change nothing; tokens and cross-site
//! requests are refused; wazo-confd's conventions hold.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use common::http::{request, Api};
use common::net::NextHop;
use common::proxy::Sipscreen;
use common::sipp::{Sipp, SippCommand};
use common::TempDir;
use serde_json::{json, Value};

const IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const SIPP_TIMEOUT: Duration = Duration::from_secs(30);
/// A Spanish mobile: no rule of the starting configuration refuses it.
const MOBILE: &str = "600000001";

fn scenario(name: &str) -> String {
    common::scenario("admin", name)
}

/// The starting configuration: alice (1001) in group sales, bob (1002), one outcall that
/// takes everything to the test's next hop, and comments the API must keep.
fn config(next_hop: &str, admin: &str) -> String {
    format!(
        r#"# The admin API's test configuration.
# Every comment here must survive the API's changes.

[server]
listen = ["udp:127.0.0.1:0"]
next_hop = "udp:{next_hop}"   # the PBX
record_route = true

{admin}

[brand]
name = "brand"

[[brand.acl_patterns]]
name = "spain-mobile"   # a brand pattern
regex = '^34[67][0-9]{{8}}$'

[[tenant]]
name = "acme"
country = "ES"
sources = ["127.0.0.0/8"]   # the phones

  # alice is in sales
  [[tenant.users]]
  name = "alice"
  extension = "1001"
  uuid = "6f1e7c52-0000-4000-8000-000000000001"

  [[tenant.users]]
  name = "bob"
  extension = "1002"      # bob's extension

  [[tenant.groups]]
  name = "sales"
  members = ["alice"]

  [[tenant.outcalls]]
  name = "everything"
  patterns = ["_X."]

  [[tenant.call_permissions]]
  name = "no-premium"     # a rule the tests leave alone
  extensions = ["_905XXXXXX"]
  outcalls = ["everything"]
"#
    )
}

const LOCAL_ADMIN: &str = "[admin]\nlisten = \"127.0.0.1:0\"";

struct World {
    dir: TempDir,
    hop: NextHop,
}

impl World {
    fn new(test: &str) -> World {
        World {
            dir: TempDir::new("admin_api", test),
            hop: NextHop::udp(IP),
        }
    }

    fn config(&self, admin: &str) -> String {
        config(&self.hop.addr().to_string(), admin)
    }

    /// The PBX, for `calls` calls. On a busy machine sipscreen may retransmit an INVITE the
    /// PBX has already answered (Timer A, 500 ms): the PBX ignores it, as a real one does,
    /// instead of SIPp's default of giving the call up.
    fn uas(&self, name: &str, calls: u32) -> Sipp {
        SippCommand::new(name, IP)
            .args(["-sf", &scenario("uas.xml")])
            .args(["-t", "u1", "-m", &calls.to_string()])
            .args(["-default_behaviors", "all,-abortunexp"])
            .port(self.hop.lend())
            .timeout(Duration::from_secs(60))
            .spawn(&self.dir)
    }

    /// One call from extension `caller` to `dialed` that must be put through.
    fn allowed(&self, proxy: &Sipscreen, name: &str, caller: &str, dialed: &str) {
        self.allowed_from(IP, proxy, name, caller, dialed);
    }

    /// The same, from the phone at `ip`.
    fn allowed_from(&self, ip: IpAddr, proxy: &Sipscreen, name: &str, caller: &str, dialed: &str) {
        let uas = self.uas(&format!("{name}-pbx"), 1);
        let run = SippCommand::new(name, ip)
            .args(["-sf", &scenario("call_uac.xml")])
            .args([proxy.udp().to_string()])
            .args([
                "-t", "u1", "-s", dialed, "-m", "1", "-set", "caller", caller,
            ])
            .timeout(SIPP_TIMEOUT)
            .run(&self.dir, Duration::from_secs(20));
        run.assert_success();
        uas.finish(Duration::from_secs(10)).assert_success();
    }

    /// One call from extension `caller` to `dialed` that must be refused with 403.
    fn denied(&self, proxy: &Sipscreen, name: &str, caller: &str, dialed: &str) {
        let nothing = self.hop.silent("PBX");
        let run = SippCommand::new(name, IP)
            .args(["-sf", &scenario("denied_uac.xml")])
            .args([proxy.udp().to_string()])
            .args([
                "-t", "u1", "-s", dialed, "-m", "1", "-set", "caller", caller,
            ])
            .timeout(SIPP_TIMEOUT)
            .run(&self.dir, Duration::from_secs(20));
        run.assert_success();
        nothing.assert_nothing("a refused call reaches the PBX");
    }
}

fn body(v: Value) -> String {
    v.to_string()
}

#[test]
fn rules_changed_through_the_api_decide_the_next_sipp_call() {
    let w = World::new("next_call");
    let proxy = Sipscreen::start(&w.dir, &w.config(LOCAL_ADMIN));
    let api = Api::new(proxy.admin());
    let pid = proxy.pid();

    w.allowed(&proxy, "before", "1001", MOBILE);

    // Wazo's workflow: create a call permission, then give it to a user (by uuid).
    let created = api.expect(
        201,
        "POST",
        "/1.1/callpermissions",
        Some(&body(
            json!({"name": "no-mobiles", "mode": "deny", "extensions": ["_6XXXXXXXX"]}),
        )),
    );
    assert_eq!(
        created.header("location"),
        Some("/1.1/callpermissions/no-mobiles")
    );
    assert_eq!(created.json()["id"], "no-mobiles");
    w.allowed(&proxy, "created-only", "1001", MOBILE);
    api.expect(
        204,
        "PUT",
        "/1.1/users/6f1e7c52-0000-4000-8000-000000000001/callpermissions/no-mobiles",
        None,
    );
    w.denied(&proxy, "user-denied", "1001", MOBILE);
    w.allowed(&proxy, "bob-unaffected", "1002", MOBILE);
    api.expect(
        204,
        "DELETE",
        "/1.1/users/alice/callpermissions/no-mobiles",
        None,
    );
    w.allowed(&proxy, "user-dissociated", "1001", MOBILE);

    // The same for a group (alice is in sales) and for an outcall.
    api.expect(
        204,
        "PUT",
        "/1.1/groups/sales/callpermissions/no-mobiles",
        None,
    );
    w.denied(&proxy, "group-denied", "1001", MOBILE);
    api.expect(
        204,
        "DELETE",
        "/1.1/groups/sales/callpermissions/no-mobiles",
        None,
    );
    w.allowed(&proxy, "group-dissociated", "1001", MOBILE);
    api.expect(
        204,
        "PUT",
        "/1.1/outcalls/everything/callpermissions/no-mobiles",
        None,
    );
    w.denied(&proxy, "outcall-denied", "1002", MOBILE);
    api.expect(
        204,
        "DELETE",
        "/1.1/outcalls/everything/callpermissions/no-mobiles",
        None,
    );
    w.allowed(&proxy, "outcall-dissociated", "1002", MOBILE);

    // IvozProvider's: an ACL whose rule refuses the brand's Spanish mobiles, given to bob.
    api.expect(
        201,
        "POST",
        "/1.1/callacls",
        Some(&body(json!({"name": "no-mobile", "default": "allow",
            "rules": [{"metric": 10, "pattern": "spain-mobile", "action": "deny"}]}))),
    );
    api.expect(
        204,
        "PUT",
        "/1.1/users/bob",
        Some(&body(json!({"call_acl": "no-mobile"}))),
    );
    w.denied(&proxy, "acl-denied", "1002", MOBILE);
    // A rule added to it decides too: landlines, through a tenant pattern made for it.
    api.expect(
        201,
        "POST",
        "/1.1/aclpatterns",
        Some(&body(json!({"name": "madrid", "regex": "^\\+3491"}))),
    );
    api.expect(
        204,
        "PUT",
        "/1.1/callacls/no-mobile",
        Some(&body(json!({"rules": [
            {"metric": 10, "pattern": "spain-mobile", "action": "deny"},
            {"metric": 20, "pattern": "madrid", "action": "deny"}]}))),
    );
    w.denied(&proxy, "acl-rule-denied", "1002", "910000000");
    w.allowed(&proxy, "acl-other", "1002", "930000000");
    assert_eq!(proxy.pid(), pid, "no restart");

    // The file: every comment kept, valid, and a restart decides as before.
    let path = w.dir.path("sipscreen.toml");
    let text = std::fs::read_to_string(&path).expect("read the file");
    for line in config("x", LOCAL_ADMIN).lines().filter(|l| l.contains('#')) {
        let comment = &line[line.find('#').expect("a comment")..];
        assert!(text.contains(comment), "comment `{comment}` lost:\n{text}");
    }
    let validate = std::process::Command::new(env!("CARGO_BIN_EXE_sipscreen"))
        .args(["validate", "--config"])
        .arg(&path)
        .output()
        .expect("run validate");
    assert!(validate.status.success(), "{validate:?}");
    proxy.stop_ok();
    let again = Sipscreen::start_on(&w.dir, &path);
    w.denied(&again, "after-restart-denied", "1002", "910000000");
    w.allowed(&again, "after-restart-allowed", "1001", MOBILE);
    again.stop_ok();
}

#[test]
fn calls_in_flight_survive_api_changes_and_sighups() {
    let w = World::new("in_flight");
    let proxy = Sipscreen::start(&w.dir, &w.config(LOCAL_ADMIN));
    let api = Api::new(proxy.admin());
    const CALLS: u32 = 1000;
    let uas = w.uas("load-pbx", CALLS);
    // 50 calls/s for 20 s, from bob, whose rights the changes below never touch.
    let uac = SippCommand::new("load", IP)
        .args(["-sf", &scenario("call_uac.xml")])
        .args([proxy.udp().to_string()])
        .args(["-t", "u1", "-s", MOBILE, "-set", "caller", "1002"])
        .args(["-r", "50", "-m", &CALLS.to_string(), "-l", "200"])
        .timeout(Duration::from_secs(60))
        .spawn(&w.dir);
    for i in 0..20 {
        let name = format!("p{i}");
        if i % 2 == 0 {
            api.expect(
                201,
                "POST",
                "/1.1/callpermissions",
                Some(&body(
                    json!({"name": name, "extensions": [format!("5{i:02}")]}),
                )),
            );
        } else {
            api.expect(
                204,
                "PUT",
                &format!("/1.1/users/alice/callpermissions/p{}", i - 1),
                None,
            );
        }
        if i % 4 == 3 {
            proxy.hangup();
        }
        std::thread::sleep(Duration::from_millis(600));
    }
    let run = uac.finish(Duration::from_secs(60));
    run.assert_success();
    run.assert_calls(u64::from(CALLS));
    uas.finish(Duration::from_secs(20)).assert_success();
    let log = proxy.log();
    assert_eq!(log.matches("configuration reloaded").count(), 5, "{log}");
    assert_eq!(
        log.matches("configuration changed through the admin API")
            .count(),
        20
    );
    proxy.stop_ok();
}

#[test]
fn bad_changes_change_nothing() {
    let w = World::new("bad_changes");
    let proxy = Sipscreen::start(&w.dir, &w.config(LOCAL_ADMIN));
    let api = Api::new(proxy.admin());
    let path = w.dir.path("sipscreen.toml");
    let before = std::fs::read(&path).expect("read");

    // Every error at once, named by field, and the file untouched.
    let r = api.expect(
        400,
        "POST",
        "/1.1/callpermissions",
        Some(&body(json!({"name": "bad", "mode": "maybe",
            "extensions": ["not valid!", "_6XXXXXXXX"], "password": "12#"}))),
    );
    let errors: Vec<String> = serde_json::from_value(r.json()).expect("a list of messages");
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(
        errors.iter().any(|e| e.starts_with("extensions[0]: ")),
        "{errors:?}"
    );
    assert!(errors.iter().any(|e| e.starts_with("mode")), "{errors:?}");
    assert!(
        errors.iter().any(|e| e.starts_with("password")),
        "{errors:?}"
    );
    let r = api.expect(
        400,
        "PUT",
        "/1.1/users/alice",
        Some(&body(
            json!({"extension": 1001, "colour": "blue", "name": null}),
        )),
    );
    assert_eq!(r.json().as_array().map(Vec::len), Some(3), "{}", r.body);
    // A reference that does not resolve: the object that names it is told.
    let r = api.expect(
        400,
        "PUT",
        "/1.1/users/alice",
        Some(&body(json!({"call_acl": "nope"}))),
    );
    assert!(r.body.contains("call_acl"), "{}", r.body);
    assert_eq!(
        std::fs::read(&path).expect("read"),
        before,
        "the file is byte-identical"
    );
    w.allowed(&proxy, "unchanged", "1001", MOBILE);

    // Someone edits the file by hand: writes get 409 until a reload.
    let edited = String::from_utf8(before.clone()).expect("utf-8")
        + "\n  [[tenant.call_permissions]]\n  name = \"by-hand\"\n  extensions = [\"_6XXXXXXXX\"]\n  users = [\"alice\"]\n";
    std::fs::write(&path, &edited).expect("edit by hand");
    api.expect(
        409,
        "PUT",
        "/1.1/users/bob/callpermissions/no-premium",
        None,
    );
    assert_eq!(std::fs::read_to_string(&path).expect("read"), edited);
    api.expect(204, "POST", "/1.1/reload", None);
    w.denied(&proxy, "by-hand", "1001", MOBILE);
    api.expect(204, "DELETE", "/1.1/callpermissions/by-hand", None);
    w.allowed(&proxy, "by-hand-deleted", "1001", MOBILE);

    // A broken file: SIGHUP and POST /1.1/reload keep the running rules, with every error.
    let good = std::fs::read_to_string(&path).expect("read");
    std::fs::write(
        &path,
        good.replace("country = \"ES\"", "country = \"XX\"") + "\n[bogus]\n",
    )
    .expect("break the file");
    proxy.hangup();
    proxy.wait_for_log("reload refused", 0);
    let r = api.expect(400, "POST", "/1.1/reload", None);
    let errors = r.json();
    assert_eq!(errors.as_array().map(Vec::len), Some(2), "{}", r.body);
    assert!(
        r.body.contains("XX") && r.body.contains("bogus"),
        "{}",
        r.body
    );
    w.allowed(&proxy, "broken-file", "1001", MOBILE);
    proxy.stop_ok();
}

#[test]
fn tokens_and_cross_site_requests() {
    let w = World::new("guard");
    let admin = "[admin]\nlisten = \"127.0.0.1:0\"\n\
        tokens = [{ name = \"ops\", token = \"0123456789abcdef-ops\" }, \
                  { name = \"ci\", token = \"0123456789abcdef-ci\" }]";
    let proxy = Sipscreen::start(&w.dir, &w.config(admin));
    let addr = proxy.admin();
    let get = |headers: &[(&str, &str)]| request(addr, "GET", "/1.1/users", headers, None).status;
    assert_eq!(get(&[]), 401, "no token");
    assert_eq!(get(&[("X-Auth-Token", "wrong")]), 401);
    assert_eq!(get(&[("X-Auth-Token", "0123456789abcdef-ops")]), 200);
    assert_eq!(get(&[("Authorization", "Bearer 0123456789abcdef-ci")]), 200);
    let ops = ("X-Auth-Token", "0123456789abcdef-ops");
    // Another site, even with a token: refused.
    assert_eq!(get(&[ops, ("Origin", "http://evil.example")]), 403);
    assert_eq!(get(&[ops, ("Host", "evil.example")]), 403);
    assert_eq!(get(&[ops, ("Sec-Fetch-Site", "cross-site")]), 403);
    let own = format!("http://{addr}");
    assert_eq!(get(&[ops, ("Origin", &own)]), 200, "the interface itself");
    // A form cannot write.
    let form = request(
        addr,
        "POST",
        "/1.1/callpermissions",
        &[ops, ("Content-Type", "application/x-www-form-urlencoded")],
        Some("name=x&extensions=1"),
    );
    assert_eq!(form.status, 415);
    // A write names its token in the log.
    let r = request(
        addr,
        "POST",
        "/1.1/callpermissions",
        &[
            ("X-Auth-Token", "0123456789abcdef-ci"),
            ("Content-Type", "application/json"),
        ],
        Some(r#"{"name": "x", "extensions": ["1"]}"#),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(proxy.log().contains("token=\"ci\"") || proxy.log().contains("token=ci"));
    // The API's description is public; nothing else is.
    assert_eq!(
        request(addr, "GET", "/1.1/api/api.yml", &[], None).status,
        200
    );
    proxy.stop_ok();
}

#[test]
fn wazo_conventions() {
    let w = World::new("conventions");
    let proxy = Sipscreen::start(&w.dir, &w.config(LOCAL_ADMIN));
    let api = Api::new(proxy.admin());
    for (name, ext, mode) in [("b-rule", "_7XXX", "allow"), ("a-rule", "1234", "deny")] {
        api.expect(
            201,
            "POST",
            "/1.1/callpermissions",
            Some(&body(
                json!({"name": name, "extensions": [ext, ext], "mode": mode,
                "description": format!("{name} for testing"), "password": "4321"}),
            )),
        );
    }
    // Lists: total before paging, search, filters, order, paging; bad parameters refused.
    let list = api.get("/1.1/callpermissions").json();
    assert_eq!(list["total"], 3);
    let page = api
        .get("/1.1/callpermissions?order=name&direction=desc&limit=1&offset=1")
        .json();
    assert_eq!(page["total"], 3);
    assert_eq!(page["items"][0]["name"], "b-rule");
    assert_eq!(
        api.get("/1.1/callpermissions?search=TESTING").json()["total"],
        2
    );
    assert_eq!(
        api.get("/1.1/callpermissions?search=7xxx").json()["total"],
        1
    );
    assert_eq!(
        api.get("/1.1/callpermissions?mode=allow").json()["total"],
        1
    );
    for bad in [
        "order=colour",
        "direction=up",
        "limit=-1",
        "offset=x",
        "colour=red",
    ] {
        assert_eq!(
            api.get(&format!("/1.1/callpermissions?{bad}")).status,
            400,
            "{bad}"
        );
    }
    // Objects: passwords write-only, duplicates collapsed, links by name.
    let a = api.get("/1.1/callpermissions/a-rule").json();
    assert_eq!(a["password_set"], true);
    assert!(a.get("password").is_none(), "{a}");
    assert_eq!(a["extensions"], json!(["1234"]));
    api.expect(204, "PUT", "/1.1/users/1002/callpermissions/a-rule", None);
    api.expect(204, "PUT", "/1.1/users/bob/callpermissions/a-rule", None);
    assert_eq!(
        api.get("/1.1/callpermissions/a-rule").json()["users"],
        json!(["bob"])
    );
    assert_eq!(
        api.get("/1.1/users/bob").json()["call_permissions"],
        json!(["a-rule"])
    );
    // PUT: only the keys given; {} is a no-op; a GET-modify-PUT round trip works.
    api.expect(204, "PUT", "/1.1/callpermissions/a-rule", Some("{}"));
    let mut obj = api.get("/1.1/callpermissions/a-rule").json();
    obj["description"] = json!("changed");
    api.expect(
        204,
        "PUT",
        "/1.1/callpermissions/a-rule",
        Some(&obj.to_string()),
    );
    let a = api.get("/1.1/callpermissions/a-rule").json();
    assert_eq!(a["description"], "changed");
    assert_eq!(a["password_set"], true, "kept");
    api.expect(
        204,
        "PUT",
        "/1.1/callpermissions/a-rule",
        Some(r#"{"password": null}"#),
    );
    assert_eq!(
        api.get("/1.1/callpermissions/a-rule").json()["password_set"],
        false
    );
    // A rename follows every reference; a delete leaves every list.
    api.expect(204, "PUT", "/1.1/users/bob", Some(r#"{"name": "robert"}"#));
    assert_eq!(
        api.get("/1.1/callpermissions/a-rule").json()["users"],
        json!(["robert"])
    );
    assert_eq!(api.get("/1.1/users/1002").json()["name"], "robert");
    api.expect(
        204,
        "PUT",
        "/1.1/groups/sales",
        Some(r#"{"members": ["1001", "1002"]}"#),
    );
    assert_eq!(
        api.get("/1.1/groups/sales").json()["members"],
        json!(["alice", "robert"])
    );
    api.expect(204, "DELETE", "/1.1/users/robert", None);
    assert_eq!(
        api.get("/1.1/callpermissions/a-rule").json()["users"],
        json!([])
    );
    assert_eq!(
        api.get("/1.1/groups/sales").json()["members"],
        json!(["alice"])
    );
    assert_eq!(api.get("/1.1/users/robert").status, 404);
    // Idempotent associations; 404 for an unknown side.
    api.expect(
        204,
        "DELETE",
        "/1.1/users/alice/callpermissions/a-rule",
        None,
    );
    api.expect(404, "PUT", "/1.1/users/nobody/callpermissions/a-rule", None);
    api.expect(404, "PUT", "/1.1/users/alice/callpermissions/nothing", None);
    // Read-only resources, the brand, tenants, check.
    assert_eq!(
        api.get("/1.1/outcalls").json()["items"][0]["name"],
        "everything"
    );
    api.expect(405, "POST", "/1.1/outcalls", Some(r#"{"name": "x"}"#));
    assert_eq!(api.get("/1.1/brand/aclpatterns").json()["total"], 1);
    assert_eq!(api.get("/1.1/tenants").json()["items"][0]["name"], "acme");
    assert_eq!(api.get("/1.1/users?tenant=nope").status, 404);
    let r = request(
        proxy.admin(),
        "GET",
        "/1.1/users",
        &[("Wazo-Tenant", "acme")],
        None,
    );
    assert_eq!(r.status, 200);
    let check = api.get("/1.1/check?from=1001&to=905123456").json();
    assert_eq!(check["decision"], "deny");
    assert_eq!(check["rule"], "no-premium");
    assert_eq!(api.get("/1.1/check?from=1001").status, 400);
    assert_eq!(api.get("/1.1/nothing").status, 404);
    // A name is one path segment: an encoded `/` does not reach another resource, and a name
    // that is not UTF-8 once decoded is not found either, said in JSON.
    for path in ["/1.1/users/alice%2Flockout", "/1.1/users/%FF"] {
        let r = api.get(path);
        assert_eq!(r.status, 404, "{path}: {}", r.body);
        assert!(r.json().is_array(), "{path}: {}", r.body);
    }
    assert_eq!(
        api.send("PATCH", "/1.1/users/alice", Some("{}")).status,
        405
    );
    // A method a resource does not have is said in JSON like every other error.
    for (method, path) in [
        ("POST", "/1.1/check"),
        ("GET", "/1.1/reload"),
        ("DELETE", "/1.1/api/api.yml"),
    ] {
        let r = api.send(method, path, None);
        assert_eq!(r.status, 405, "{method} {path}: {}", r.body);
        assert!(r.json().is_array(), "{method} {path}: {}", r.body);
    }
    proxy.stop_ok();
}

#[test]
fn a_pin_lockout_is_seen_and_cleared() {
    let w = World::new("lockout");
    let text = w.config(LOCAL_ADMIN).replace(
        "[brand]",
        "[pin]\ndial_prefix = \"**\"\nlockout = { failures = 2, window_s = 600, lock_s = 900 }\n\n[brand]",
    ) + "\n  [[tenant.call_permissions]]\n  name = \"pin-mobiles\"\n  extensions = [\"_6XXXXXXXX\"]\n  password = \"2468\"\n  users = [\"alice\"]\n";
    let proxy = Sipscreen::start(&w.dir, &text);
    let api = Api::new(proxy.admin());
    assert_eq!(api.get("/1.1/users/alice/lockout").json()["locked"], false);
    // Two wrong PINs given up front lock alice out; the right one is then refused too.
    for i in 0..2 {
        w.denied(
            &proxy,
            &format!("wrong-{i}"),
            "1001",
            &format!("**1111*{MOBILE}"),
        );
    }
    let locked = api.get("/1.1/users/1001/lockout").json();
    assert_eq!(locked["locked"], true, "{locked}");
    assert!(
        locked["remaining_s"].as_u64().is_some_and(|s| s > 800),
        "{locked}"
    );
    w.denied(&proxy, "locked-out", "1001", &format!("**2468*{MOBILE}"));
    api.expect(204, "DELETE", "/1.1/users/alice/lockout", None);
    assert_eq!(api.get("/1.1/users/alice/lockout").json()["locked"], false);
    // alice's lockout is over; the phone that typed the wrong PINs stays locked out as a
    // source until its own lock ends, so alice calls from another phone.
    let other_phone = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
    w.allowed_from(
        other_phone,
        &proxy,
        "unlocked",
        "1001",
        &format!("**2468*{MOBILE}"),
    );
    assert_eq!(api.get("/1.1/users/nobody/lockout").status, 404);
    proxy.stop_ok();
}

#[test]
fn the_live_feed_shows_each_decision() {
    use std::io::{BufRead, BufReader, Write};
    let w = World::new("events");
    let proxy = Sipscreen::start(&w.dir, &w.config(LOCAL_ADMIN));
    let mut feed = std::net::TcpStream::connect(proxy.admin()).expect("connect");
    feed.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        feed,
        "GET /1.1/events HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n",
        proxy.admin()
    )
    .expect("ask for the feed");
    let mut lines = BufReader::new(feed.try_clone().expect("clone")).lines();
    let status = lines.next().expect("a status line").expect("read");
    assert!(status.contains(" 200 "), "{status}");
    // The feed is open once its headers are in; then a refused call is in it.
    for line in lines.by_ref() {
        if line.expect("read").is_empty() {
            break;
        }
    }
    let phone = std::net::UdpSocket::bind((IP, 0)).expect("bind");
    let codes = common::invite::invite(&phone, proxy.udp(), "feed-1", "1001", "905123456");
    assert_eq!(codes.last(), Some(&403), "{codes:?}");
    let mut event = None;
    for line in lines.by_ref() {
        let line = line.expect("read the feed");
        if let Some(data) = line.strip_prefix("data: ") {
            event = Some(serde_json::from_str::<Value>(data).expect("JSON data"));
            break;
        }
    }
    let event = event.expect("a decision event");
    assert_eq!(event["call_id"], "feed-1");
    assert_eq!(event["decision"], "deny");
    assert_eq!(event["rule"], "no-premium");
    assert_eq!(event["identity"], "alice");
    assert_eq!(event["caller"], "1001");
    assert_eq!(event["tenant"], "acme");
    assert!(
        event["time"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{event}"
    );
    drop(feed);
    proxy.stop_ok();
}
