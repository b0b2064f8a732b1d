//! Running as a service (SPEC §9.3), against the built `sipscreen run` on loopback:
//!
//! - systemd's notifications: a datagram socket of the test stands for systemd's
//!   `NOTIFY_SOCKET` (a file, or an abstract name) and receives `READY=1` once the listeners
//!   are bound, `RELOADING=1` and `READY=1` around every SIGHUP (a refused file too), and
//!   `STOPPING=1` at SIGTERM;
//! - `--log-format json` (or `server.log_format`): every line of the log is a JSON object
//!   with `timestamp`, `level`, `target` and the event's fields, the decision event's
//!   included, and so is every error of a configuration `run` refuses; a bad `log_format`
//!   is refused with its line and column;
//! - secrets stay out of the log even at `RUST_LOG=trace`: PINs given with the dial prefix or
//!   typed by SIP INFO, right or wrong, digest passwords and HA1s, the `Proxy-Authorization`
//!   a phone sends, and a PIN mistyped in a reloaded file.
//!
//! The peers are UDP sockets of the test: a phone on 127.0.0.1 (the tenant's source), a
//! softphone on 127.0.0.3 (nobody's: it must authenticate), and the next hops. The harness is
//! `tests/common`: sipscreen binds port 0 and is stopped by its PID, every wait is bounded,
//! and each test works in its own temporary directory, kept and named when the test fails.

mod common;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::net::free_ports;
use common::process::Proc;
use common::proxy::Sipscreen;
use common::sip::{answer, authorization, cseq_method, header, offer, param, status, unique};
use common::TempDir;
use sipscreen::config::{Config, LogFormat};
use sipscreen::proxy::auth::Algorithm;

/// The phones' network: the tenant's only source.
const PHONES: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
/// A softphone nobody vouches for: it authenticates with digest credentials.
const SOFTPHONE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
/// How long any one wait may last.
const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// systemd's notification socket.

/// A datagram socket standing for systemd's: what `NOTIFY_SOCKET` names.
struct Manager {
    socket: UnixDatagram,
    /// The value of `NOTIFY_SOCKET`.
    name: String,
}

impl Manager {
    /// A socket file in the test's directory.
    fn at_path(dir: &TempDir) -> Manager {
        let name = dir.file("notify.sock");
        let socket = UnixDatagram::bind(&name).expect("bind the notification socket");
        Manager { socket, name }
    }

    /// An abstract socket (`@name`), as some service managers hand over.
    fn abstract_name(test: &str) -> Manager {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("sipscreen-{test}-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(&name).expect("a name");
        let socket = UnixDatagram::bind_addr(&addr).expect("bind the abstract socket");
        Manager {
            socket,
            name: format!("@{name}"),
        }
    }

    /// The next notification within `limit`, as its `KEY=VALUE` lines.
    fn receive(&self, limit: Duration) -> Option<HashMap<String, String>> {
        self.socket
            .set_read_timeout(Some(limit))
            .expect("set a read timeout");
        let mut buf = [0u8; 4096];
        let n = self.socket.recv(&mut buf).ok()?;
        let text = std::str::from_utf8(&buf[..n]).expect("a notification is text");
        assert!(text.ends_with('\n'), "one KEY=VALUE per line: {text:?}");
        let lines = text.lines().map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("not KEY=VALUE: {l:?} in {text:?}"));
            (k.to_owned(), v.to_owned())
        });
        Some(lines.collect())
    }

    /// The next notification of a running proxy; a failure after [`WAIT`].
    fn next(&self, proxy: &Sipscreen) -> HashMap<String, String> {
        self.receive(WAIT)
            .unwrap_or_else(|| panic!("no notification within {WAIT:?}:\n{}", proxy.log_tail()))
    }

    /// The last notification of a proxy that has exited (sent before it did).
    fn last(&self) -> HashMap<String, String> {
        self.receive(Duration::from_secs(1))
            .expect("a notification sent before exiting")
    }

    /// Nothing more arrives within a short while.
    fn assert_quiet(&self) {
        if let Some(n) = self.receive(Duration::from_millis(300)) {
            panic!("an unexpected notification: {n:?}");
        }
    }
}

/// A notification that says `READY=1` for `proxy`'s process.
#[track_caller]
fn assert_ready(n: &HashMap<String, String>, proxy: &Sipscreen) {
    assert_eq!(n.get("READY").map(String::as_str), Some("1"), "{n:?}");
    assert_eq!(
        n.get("MAINPID"),
        Some(&proxy.pid().to_string()),
        "READY=1 names the main process: {n:?}"
    );
}

/// A `RELOADING=1` notification; its `MONOTONIC_USEC`.
#[track_caller]
fn assert_reloading(n: &HashMap<String, String>) -> u64 {
    assert_eq!(n.get("RELOADING").map(String::as_str), Some("1"), "{n:?}");
    n.get("MONOTONIC_USEC")
        .and_then(|u| u.parse().ok())
        .unwrap_or_else(|| panic!("RELOADING=1 comes with MONOTONIC_USEC: {n:?}"))
}

/// The smallest configuration: one tenant whose source is the phones' network; mobiles
/// (`_6XXXXXXXX`) are denied. `extra` goes into `[server]`.
fn small_config(next_hop: SocketAddr, extra: &str) -> String {
    format!(
        "[server]\nlisten = [\"udp:127.0.0.1:0\"]\nnext_hop = \"udp:{next_hop}\"\n{extra}\n\
         [brand]\nname = \"b\"\n\n[[tenant]]\nname = \"t\"\ncountry = \"ES\"\n\
         sources = [\"127.0.0.1/32\"]\n\n  [[tenant.outcalls]]\n  name = \"everything\"\n  patterns = [\"_X.\"]\n\n\
         [[tenant.call_permissions]]\n  name = \"no-mobiles\"\n  extensions = [\"_6XXXXXXXX\"]\n  outcalls = [\"everything\"]\n"
    )
}

#[test]
fn systemd_hears_ready_reloading_and_stopping() {
    let dir = TempDir::new("service", "notify");
    let manager = Manager::at_path(&dir);
    let hop = UdpSocket::bind((PHONES, 0)).expect("bind the next hop");
    let config = small_config(hop.local_addr().expect("local"), "");
    let proxy = Sipscreen::start_with(&dir, &config, &[], &[("NOTIFY_SOCKET", &manager.name)]);

    assert_ready(&manager.next(&proxy), &proxy);

    // A valid file: RELOADING=1, then READY=1 once the new rules are in force.
    proxy.hangup();
    let first = assert_reloading(&manager.next(&proxy));
    let after = manager.next(&proxy);
    assert_ready(&after, &proxy);
    assert!(
        proxy.log().contains("configuration reloaded"),
        "READY=1 comes once the reload is done:\n{}",
        proxy.log_tail()
    );

    // A broken file changes nothing, and the proxy is ready all the same.
    std::fs::write(dir.path("sipscreen.toml"), "[server]\nlisten = [\nnot toml").expect("break");
    proxy.hangup();
    let second = assert_reloading(&manager.next(&proxy));
    assert!(
        second > first,
        "MONOTONIC_USEC moves on: {first} then {second}"
    );
    assert_ready(&manager.next(&proxy), &proxy);
    assert!(
        proxy.log().contains("reload refused"),
        "{}",
        proxy.log_tail()
    );
    manager.assert_quiet();

    // SIGTERM: STOPPING=1 as draining starts, and nothing after it.
    proxy.stop_ok();
    let stopping = manager.last();
    assert_eq!(
        stopping.get("STOPPING").map(String::as_str),
        Some("1"),
        "{stopping:?}"
    );
    assert_eq!(stopping.len(), 1, "{stopping:?}");
    manager.assert_quiet();
}

#[test]
fn an_abstract_notify_socket_is_reached() {
    let dir = TempDir::new("service", "abstract");
    let manager = Manager::abstract_name("abstract");
    let hop = UdpSocket::bind((PHONES, 0)).expect("bind the next hop");
    let config = small_config(hop.local_addr().expect("local"), "");
    let proxy = Sipscreen::start_with(&dir, &config, &[], &[("NOTIFY_SOCKET", &manager.name)]);
    assert_ready(&manager.next(&proxy), &proxy);
    proxy.stop_ok();
    assert_eq!(
        manager.last().get("STOPPING").map(String::as_str),
        Some("1")
    );
}

#[test]
fn an_unreachable_notify_socket_is_logged_and_the_proxy_serves_all_the_same() {
    let dir = TempDir::new("service", "unreachable");
    let hop = UdpSocket::bind((PHONES, 0)).expect("bind the next hop");
    let config = small_config(hop.local_addr().expect("local"), "");
    let nowhere = dir.file("nobody-listens.sock");
    let proxy = Sipscreen::start_with(&dir, &config, &[], &[("NOTIFY_SOCKET", &nowhere)]);
    proxy.wait_for_log("cannot notify the service manager", 0);
    let phone = Phone::bind(PHONES, proxy.udp());
    let mut call = phone.call("600000001");
    assert_eq!(
        status(&call.invite_final("")),
        403,
        "the proxy screens calls"
    );
    let log = proxy.stop_ok();
    assert!(!log.contains("panicked"), "{log}");
}

// ---------------------------------------------------------------------------------------
// JSON logs.

/// Every line of `log` as a JSON object with `timestamp`, `level` and `target`.
#[track_caller]
fn json_lines(log: &str) -> Vec<serde_json::Value> {
    assert!(!log.is_empty(), "an empty log");
    log.lines()
        .map(|line| {
            let event: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            assert!(event.is_object(), "not a JSON object: {line}");
            let timestamp = event["timestamp"].as_str().unwrap_or("");
            assert!(
                timestamp.len() >= 20 && timestamp.as_bytes()[10] == b'T',
                "an RFC 3339 timestamp: {line}"
            );
            assert!(
                ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"]
                    .contains(&event["level"].as_str().unwrap_or("")),
                "a level: {line}"
            );
            assert!(
                event["target"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("sipscreen")),
                "a target: {line}"
            );
            assert!(event["message"].is_string(), "a message: {line}");
            event
        })
        .collect()
}

#[test]
fn json_logs_are_one_object_per_line_with_the_decisions_fields() {
    let dir = TempDir::new("service", "json");
    let hop = UdpSocket::bind((PHONES, 0)).expect("bind the next hop");
    let config = small_config(hop.local_addr().expect("local"), "");
    let proxy = Sipscreen::start_with(
        &dir,
        &config,
        &["--log-format", "json"],
        &[("RUST_LOG", "debug")],
    );
    let phone = Phone::bind(PHONES, proxy.udp());
    let mut call = phone.call("600000001");
    assert_eq!(status(&call.invite_final("")), 403);
    proxy.wait_for_log("call screened", 0);
    // A reload logs at several levels (a refused file: every error).
    std::fs::write(dir.path("sipscreen.toml"), "[server]\nlisten = 5").expect("break");
    proxy.hangup();
    proxy.wait_for_log("reload refused", 0);
    let log = proxy.stop_ok();

    let events = json_lines(&log);
    let source = phone.addr.to_string();
    let decision = events
        .iter()
        .find(|e| e["target"] == "sipscreen::decision")
        .unwrap_or_else(|| panic!("no decision event:\n{log}"));
    // The event's fields stand beside timestamp, level and target.
    for (key, value) in [
        ("message", "call screened"),
        ("level", "INFO"),
        ("call_id", call.call_id.as_str()),
        ("source", source.as_str()),
        ("tenant", "t"),
        ("dialed", "600000001"),
        ("e164", "+34600000001"),
        ("call", "external"),
        ("decision", "deny"),
        ("stage", "call_permission"),
        ("rule", "no-mobiles"),
    ] {
        assert_eq!(decision[key], value, "`{key}` in {decision:?}");
    }
    assert!(
        events
            .iter()
            .any(|e| e["message"] == "reload refused, the running rules stay"
                && e["level"] == "ERROR"
                && e["error"]
                    .as_str()
                    .is_some_and(|s| s.contains("sipscreen.toml:2:"))),
        "the refused reload's error, with its position:\n{log}"
    );
}

#[test]
fn the_files_log_format_applies_unless_the_command_line_says_otherwise() {
    let dir = TempDir::new("service", "file-format");
    let hop = UdpSocket::bind((PHONES, 0)).expect("bind the next hop");
    let config = small_config(hop.local_addr().expect("local"), "log_format = \"json\"");
    let proxy = Sipscreen::start(&dir, &config);
    let log = proxy.stop_ok();
    let events = json_lines(&log);
    assert!(events.iter().any(|e| e["message"] == "listening"), "{log}");

    let dir = TempDir::new("service", "cli-format");
    let proxy = Sipscreen::start_with(&dir, &config, &["--log-format", "text"], &[]);
    let log = proxy.stop_ok();
    assert!(
        log.lines().all(|l| !l.starts_with('{')) && log.contains(" listening listen=udp:"),
        "--log-format text wins over the file:\n{log}"
    );
}

#[test]
fn a_bad_log_format_is_refused_with_its_line_and_column() {
    let hop: SocketAddr = "127.0.0.1:5070".parse().expect("an address");
    let text = small_config(hop, "log_format = \"xml\"");
    let Err(errors) = Config::from_toml(&text, "test.toml", None) else {
        panic!("log_format = \"xml\" must be refused");
    };
    let [e] = &errors.0[..] else {
        panic!("one error expected: {errors}");
    };
    let line = text
        .lines()
        .position(|l| l.starts_with("log_format"))
        .expect("the line")
        + 1;
    assert_eq!(e.position, Some((line, 14)), "at the value: {e}");
    assert_eq!(e.context, "server", "{e}");
    assert!(
        e.message.contains("log_format") && e.message.contains("xml"),
        "names the key and the value: {e}"
    );

    // `validate` prints it with the file, line and column, and exits 2.
    let dir = TempDir::new("service", "validate");
    let path = dir.file("bad.toml");
    std::fs::write(&path, &text).expect("write");
    let (code, stderr) = sipscreen(&dir, &["validate", "--config", &path]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("{path}:{line}:14: server: `log_format`")),
        "{stderr}"
    );

    // The two valid values, and the default.
    let json = small_config(hop, "log_format = \"json\"");
    let text_format = small_config(hop, "log_format = \"text\"");
    for (config, format) in [
        (json, LogFormat::Json),
        (text_format, LogFormat::Text),
        (small_config(hop, ""), LogFormat::Text),
    ] {
        let c = Config::from_toml(&config, "test.toml", None).expect("valid");
        assert_eq!(c.log_format, format);
    }
}

#[test]
fn a_refused_configuration_is_logged_as_json_lines_when_asked() {
    let dir = TempDir::new("service", "refused");
    let path = dir.file("bad.toml");
    std::fs::write(&path, "[server]\nlisten = 5\n").expect("write");
    let (code, stderr) = sipscreen(&dir, &["run", "--config", &path, "--log-format", "json"]);
    assert_eq!(code, Some(2), "{stderr}");
    let events = json_lines(&stderr);
    assert!(
        events.iter().any(|e| e["level"] == "ERROR"
            && e["error"]
                .as_str()
                .is_some_and(|s| s.starts_with(&format!("{path}:2:")))),
        "each error an event, with its position:\n{stderr}"
    );
}

/// Runs a sipscreen command that ends by itself (within [`WAIT`]): its exit code and stderr.
fn sipscreen(dir: &TempDir, args: &[&str]) -> (Option<i32>, String) {
    let stderr = dir.path("stderr.log");
    let mut proc = Proc::spawn(
        "sipscreen",
        Command::new(env!("CARGO_BIN_EXE_sipscreen"))
            .args(args)
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("create stderr's file")),
    );
    let status = proc
        .wait(WAIT)
        .unwrap_or_else(|| panic!("sipscreen {args:?} did not end within {WAIT:?}"));
    (status.code(), common::read_lossy(&stderr))
}

// ---------------------------------------------------------------------------------------
// No secret in the log.

/// carol's call permission's PIN (long, so that no port or timestamp holds it by chance).
const PIN: &str = "97531864";
/// A wrong PIN carol gives with the dial prefix.
const WRONG_PIN: &str = "24681357";
/// dave's digest password.
const DAVE_PASSWORD: &str = "Dave-s3cret-pw";
/// erin's digest password; the configuration holds only its HA1.
const ERIN_PASSWORD: &str = "Erin-pw-2468";
/// A password guessed for dave.
const GUESS: &str = "Guess-pw-1357";
/// An international number: carol's calls to it are challenged.
const NUMBER: &str = "0033612345678";
/// The tenant's domain, also its digest realm.
const REALM: &str = "acme.example";

fn ha1(user: &str, password: &str) -> String {
    Algorithm::Md5.hash(&format!("{user}:{REALM}:{password}"))
}

fn secrets_config(pbx: SocketAddr, trunk: SocketAddr, rtp: (u16, u16)) -> String {
    format!(
        r#"[server]
listen = ["udp:127.0.0.1:0"]
next_hop = "udp:{pbx}"

[pin]
prompt = "tone"
rtp_ports = "{lo}-{hi}"
dial_prefix = "**"

[brand]
name = "service"

[[tenant]]
name = "acme"
country = "ES"
domains = ["{REALM}"]
sources = ["127.0.0.1/32"]

  [[tenant.users]]
  name = "carol"
  extension = "1002"

  [[tenant.users]]
  name = "dave"
  extension = "1004"
  auth_password = "{DAVE_PASSWORD}"

  [[tenant.users]]
  name = "erin"
  extension = "1005"
  auth_ha1 = "{erin_ha1}"

  [[tenant.outcalls]]
  name = "trunk"
  patterns = ["_00X."]
  next_hop = "udp:{trunk}"

  [[tenant.call_permissions]]
  name = "pin-international"
  extensions = ["_00X."]
  password = "{PIN}"
  users = ["carol"]
"#,
        lo = rtp.0,
        hi = rtp.1,
        erin_ha1 = ha1("erin", ERIN_PASSWORD),
    )
}

#[test]
fn no_pin_password_ha1_or_authorization_reaches_the_log_even_at_trace() {
    let dir = TempDir::new("service", "secrets");
    let pbx = Hop::bind();
    let trunk = Hop::bind();
    let lo = free_ports(PHONES, 4);
    let config = secrets_config(pbx.addr, trunk.addr, (lo, lo + 3));
    let proxy = Sipscreen::start_with(&dir, &config, &[], &[("RUST_LOG", "trace")]);
    let phone = Phone::bind(PHONES, proxy.udp());

    // The PIN given with the dial prefix: the trunk gets the number alone.
    let mut right = phone.call(&format!("**{PIN}*{NUMBER}"));
    right.send_invite("", None);
    trunk.busy(NUMBER);
    assert_eq!(status(&right.final_response()), 486);

    // A wrong PIN with the dial prefix: 403.
    let mut wrong = phone.call(&format!("**{WRONG_PIN}*{NUMBER}"));
    assert_eq!(status(&wrong.invite_final("")), 403);

    // The PIN typed by SIP INFO during the prompt (RFC 6086 early dialog of the 183).
    let rtp = UdpSocket::bind((PHONES, 0)).expect("bind the phone's RTP");
    let mut typed = phone.call(NUMBER);
    typed.send_invite("", Some(&offer(rtp.local_addr().expect("local"))));
    let progress = typed.expect("183", |m| status(m) == 183);
    let to = header(&progress, "To").expect("a To").to_owned();
    for key in PIN.chars().chain(['#']) {
        typed.info(&to, key);
    }
    trunk.busy(NUMBER);
    assert_eq!(status(&typed.final_response()), 486);

    // Digest: dave by password, a wrong guess for him, erin by HA1 (only the HA1 is in the
    // configuration); each authenticated call reaches the PBX.
    let softphone = Phone::bind(SOFTPHONE, proxy.udp());
    let mut sent = Vec::new();
    // The nonce may be the one of the call before (it is the same within a second): the
    // softphone counts its uses (nc).
    for (nc, (user, password, reaches)) in (1..).zip([
        ("dave", DAVE_PASSWORD, true),
        ("dave", GUESS, false),
        ("erin", ERIN_PASSWORD, true),
    ]) {
        let mut call = softphone.call_as(user, "1002");
        let challenge = call.invite_final("");
        assert_eq!(status(&challenge), 407, "{challenge}");
        let line = authorization(
            &challenge,
            Algorithm::Md5,
            user,
            password,
            "INVITE",
            &call.uri,
            nc,
        );
        call.send_invite(&line, None);
        let credentials = line
            .trim_end()
            .strip_prefix("Proxy-Authorization: ")
            .expect("a Proxy-Authorization line")
            .to_owned();
        if reaches {
            pbx.busy("1002");
            assert_eq!(status(&call.final_response()), 486);
        } else {
            assert_eq!(status(&call.final_response()), 407);
        }
        sent.push(credentials);
    }
    proxy.wait_for_log("wrong digest credentials", 0);

    // A PIN written without its quotes in a reloaded file.
    let mistyped = config.replace(
        &format!("password = \"{PIN}\""),
        &format!("password = {PIN}"),
    );
    assert_ne!(mistyped, config);
    std::fs::write(dir.path("sipscreen.toml"), mistyped).expect("rewrite");
    proxy.hangup();
    proxy.wait_for_log("reload refused", 0);

    let log = proxy.stop_ok();
    // What is looked for below had every chance to be logged.
    assert_eq!(log.matches("call screened").count(), 5, "{log}");
    for event in ["PIN entry", "wrong digest credentials", "reload refused"] {
        assert!(log.contains(event), "no `{event}` in the log:\n{log}");
    }
    let mut secrets = vec![
        PIN.to_owned(),
        WRONG_PIN.to_owned(),
        DAVE_PASSWORD.to_owned(),
        ERIN_PASSWORD.to_owned(),
        GUESS.to_owned(),
        ha1("dave", DAVE_PASSWORD),
        ha1("erin", ERIN_PASSWORD),
        ha1("dave", GUESS),
        "Signal=".to_owned(),
        "Digest ".to_owned(),
    ];
    for credentials in &sent {
        secrets.push(credentials.clone());
        secrets.push(param(credentials, "response").to_owned());
    }
    for secret in &secrets {
        if let Some(line) = log.lines().find(|l| l.contains(secret.as_str())) {
            panic!("`{secret}` is in the log:\n{line}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Phones and next hops: UDP sockets of the test, SIP written and read by hand.

/// A phone: a UDP socket of the test that sends to sipscreen.
struct Phone {
    socket: UdpSocket,
    addr: SocketAddr,
    proxy: SocketAddr,
}

impl Phone {
    fn bind(ip: IpAddr, proxy: SocketAddr) -> Phone {
        let socket = UdpSocket::bind((ip, 0))
            .unwrap_or_else(|e| panic!("cannot bind a UDP socket on {ip}: {e}"));
        let addr = socket.local_addr().expect("local");
        Phone {
            socket,
            addr,
            proxy,
        }
    }

    /// A call from carol (the tenant's phones are known by their From).
    fn call(&self, dialed: &str) -> PhoneCall<'_> {
        self.call_as("carol", dialed)
    }

    fn call_as(&self, user: &str, dialed: &str) -> PhoneCall<'_> {
        PhoneCall {
            phone: self,
            user: user.to_owned(),
            uri: format!("sip:{dialed}@{}", self.proxy),
            from: format!("<sip:{user}@{REALM}>;tag={}", unique("f")),
            to: format!("<sip:{dialed}@{REALM}>"),
            call_id: unique("service-"),
            cseq: 0,
            invite: (0, String::new()),
        }
    }

    fn next(&self, what: &str) -> String {
        receive(&self.socket, what).0
    }
}

/// The next datagram of `socket` within [`WAIT`], and where it came from; a failure naming
/// `what` otherwise.
fn receive(socket: &UdpSocket, what: &str) -> (String, SocketAddr) {
    let deadline = Instant::now() + WAIT;
    let mut buf = [0u8; 65_535];
    let me = socket.local_addr().expect("local");
    loop {
        let left = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .unwrap_or_else(|| panic!("{me} got no {what} within {WAIT:?}"));
        socket.set_read_timeout(Some(left)).expect("timeout");
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => return (String::from_utf8_lossy(&buf[..n]).into_owned(), from),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!("{me} got no {what} within {WAIT:?}")
            }
            Err(_) => continue, // ICMP port unreachable from an earlier send
        }
    }
}

/// One call of a phone: an INVITE (sent again with credentials when challenged), INFOs in
/// its early dialog, and the ACK of its final response.
struct PhoneCall<'p> {
    phone: &'p Phone,
    /// Who calls (From and Contact).
    user: String,
    uri: String,
    from: String,
    to: String,
    call_id: String,
    /// The last CSeq number used.
    cseq: u32,
    /// The current INVITE's CSeq number and branch.
    invite: (u32, String),
}

impl PhoneCall<'_> {
    fn request(&self, method: &str, branch: &str, to: &str, cseq: u32, extra: &str) -> String {
        format!(
            "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch={branch};rport\r\nMax-Forwards: 70\r\n\
             From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n\
             Contact: <sip:{user}@{via}>\r\n{extra}",
            user = self.user,
            uri = self.uri,
            via = self.phone.addr,
            from = self.from,
            call_id = self.call_id,
        )
    }

    /// Sends an INVITE (the next CSeq, a new branch) with `extra` header lines and an SDP
    /// offer when given.
    fn send_invite(&mut self, extra: &str, sdp: Option<&str>) {
        self.cseq += 1;
        self.invite = (self.cseq, unique("z9hG4bK-s"));
        let body = match sdp {
            Some(sdp) => format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
                sdp.len()
            ),
            None => "Content-Length: 0\r\n\r\n".to_owned(),
        };
        let invite = self.request(
            "INVITE",
            &self.invite.1,
            &self.to,
            self.invite.0,
            &format!("{extra}{body}"),
        );
        self.send(&invite);
    }

    fn send(&self, msg: &str) {
        self.phone
            .socket
            .send_to(msg.as_bytes(), self.phone.proxy)
            .expect("send to sipscreen");
    }

    /// Reads until a message of this call that `wanted` accepts.
    fn expect(&self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        loop {
            let msg = self.phone.next(what);
            if header(&msg, "Call-ID") == Some(self.call_id.as_str()) && wanted(&msg) {
                return msg;
            }
        }
    }

    /// The final response to the current INVITE, acknowledged (RFC 3261 §17.1.1.3).
    fn final_response(&mut self) -> String {
        let cseq = format!("{} INVITE", self.invite.0);
        let resp = self.expect("a final response to the INVITE", |m| {
            status(m) >= 200 && header(m, "CSeq") == Some(cseq.as_str())
        });
        let to = header(&resp, "To").unwrap_or_default();
        let ack = self.request(
            "ACK",
            &self.invite.1,
            to,
            self.invite.0,
            "Content-Length: 0\r\n\r\n",
        );
        self.send(&ack);
        resp
    }

    /// Sends an INVITE without an offer, and returns its final response, acknowledged.
    fn invite_final(&mut self, extra: &str) -> String {
        self.send_invite(extra, None);
        self.final_response()
    }

    /// One key by SIP INFO (application/dtmf-relay) in the early dialog whose To is `to`;
    /// waits for its 200.
    fn info(&mut self, to: &str, key: char) {
        self.cseq += 1;
        let body = format!("Signal={key}\r\nDuration=160\r\n");
        let info = self.request(
            "INFO",
            &unique("z9hG4bK-i"),
            to,
            self.cseq,
            &format!(
                "Content-Type: application/dtmf-relay\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        );
        self.send(&info);
        let cseq = format!("{} INFO", self.cseq);
        let ok = self.expect("the INFO's response", |m| {
            status(m) >= 200 && header(m, "CSeq") == Some(cseq.as_str())
        });
        assert_eq!(status(&ok), 200, "{ok}");
    }
}

/// A next hop: a UDP socket of the test that answers every INVITE 486.
struct Hop {
    socket: UdpSocket,
    addr: SocketAddr,
}

impl Hop {
    fn bind() -> Hop {
        let socket = UdpSocket::bind((PHONES, 0)).expect("bind a next hop");
        let addr = socket.local_addr().expect("local");
        Hop { socket, addr }
    }

    /// Waits for an INVITE for `number`, answers it 486 and takes its ACK.
    fn busy(&self, number: &str) {
        let (invite, from) = loop {
            let (msg, from) = receive(&self.socket, "an INVITE");
            if msg.starts_with("INVITE ") {
                break (msg, from);
            }
        };
        assert!(
            invite.starts_with(&format!("INVITE sip:{number}@")),
            "the next hop gets {number}:\n{invite}"
        );
        let busy = answer(&invite, 486, "Busy Here", "hop", "");
        self.socket.send_to(busy.as_bytes(), from).expect("answer");
        loop {
            let (msg, _) = receive(&self.socket, "the ACK of the 486");
            if msg.starts_with("ACK ") && cseq_method(&msg) == "ACK" {
                return;
            }
        }
    }
}
