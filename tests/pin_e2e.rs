//! The PIN flow on the wire (SPEC §4.5, §6): the built `sipscreen run` on loopback, a caller
//! (a SIPp UAC, or this test with plain UDP sockets) and a next hop (a SIPp UAS, or a socket
//! where nothing may arrive). Each test has its own configuration: one Spanish tenant, alice
//! (extension 1001) whose call permission `_00X.` has a password, so her international calls
//! are challenged; its own free ports and its own `rtp_ports` range.
//!
//! - a right PIN by RFC 4733 events (SIPp playing its DTMF captures) or by SIP INFO in the
//!   early dialog lets the call through to the next hop, which answers; the call completes;
//! - three wrong PINs give 403 and the next hop never sees the INVITE;
//! - a CANCEL during the prompt gives 200 and 487, and frees the RTP port;
//! - `**PIN*NUMBER`: right, the next hop gets the number alone; wrong, 403 with no prompt;
//! - the per-user lockout refuses even the right PIN;
//! - the prompt really is a 440 Hz tone in well-formed, paced RTP.
//!
//! SIPp (Debian package `sip-tester`) is required: these tests fail, never skip, without it.
//! Every process is owned by a guard that stops it by its PID (SIGTERM, then SIGKILL after a
//! bounded wait); every wait is bounded; every port is a free one (bound to port 0 first);
//! each test works in its own temporary directory, kept and named when the test fails.

mod common;
use common::{parse_message_log, read_lossy, sipp, tail, Logged, TempDir};
use std::collections::HashSet;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sipscreen::media::prompt::goertzel;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// alice's extension: the caller of every call.
const ALICE: &str = "1001";
/// An international number: alice's password-protected permission `_00X.` matches it.
const NUMBER: &str = "0033612345678";
/// The Reason sent with every 403 (`server.reject_reason`).
const REJECT_REASON: &str = "Q.850;cause=21";
/// How long any one wait may last.
const WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------
// Environment.

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A scenario of `tests/pin/`.
fn scenario(name: &str) -> String {
    let path = root().join("tests/pin").join(name);
    assert!(path.is_file(), "missing scenario {}", path.display());
    path.to_str().expect("a UTF-8 path").to_owned()
}

/// Ports handed out in this process (tests run in parallel: each gets its own).
static TAKEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// Takes `first..first + n` if all of them are free on loopback and none was handed out.
fn take_ports(first: u16, n: u16) -> bool {
    let Some(last) = first.checked_add(n - 1) else {
        return false;
    };
    if first < 1024 || !(first..=last).all(|p| UdpSocket::bind((LOOPBACK, p)).is_ok()) {
        return false;
    }
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    let taken = taken.get_or_insert_with(HashSet::new);
    if (first..=last).any(|p| taken.contains(&p)) {
        return false;
    }
    taken.extend(first..=last);
    true
}

/// `n` consecutive free UDP ports on loopback, the first one even (RTP ports are even).
fn free_ports(n: u16) -> u16 {
    for _ in 0..200 {
        let port = UdpSocket::bind((LOOPBACK, 0))
            .and_then(|s| s.local_addr())
            .map(|a| a.port() & !1)
            .expect("bind a UDP socket on loopback");
        if take_ports(port, n) {
            return port;
        }
    }
    panic!("no {n} consecutive free UDP ports on loopback");
}

fn free_port() -> u16 {
    free_ports(1)
}

/// Whether a UDP socket is bound to `port` on loopback (read from /proc: the check never
/// takes the port itself).
fn udp_bound(port: u16) -> bool {
    let Ok(table) = fs::read_to_string("/proc/net/udp") else {
        return false;
    };
    let wanted = format!("0100007F:{port:04X}");
    let any = format!("00000000:{port:04X}");
    table.lines().skip(1).any(|line| {
        line.split_whitespace()
            .nth(1)
            .is_some_and(|local| local == wanted || local == any)
    })
}

// ---------------------------------------------------------------------------------------
// Processes.

/// A child process, stopped by its PID when dropped: SIGTERM, then SIGKILL when it has not
/// exited within a bounded wait; always reaped.
struct Proc {
    name: String,
    child: Option<Child>,
}

impl Proc {
    fn spawn(name: &str, cmd: &mut Command) -> Proc {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            name: name.to_owned(),
            child: Some(child),
        }
    }

    fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("a running process")
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child().try_wait().ok().flatten()
    }

    /// Waits at most `limit` for the process to exit by itself.
    fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM by PID, then SIGKILL after `grace`; the exit status when it exited by itself
    /// within `grace`.
    fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.child.as_ref()?;
        if let Some(status) = self.exited() {
            self.child = None;
            return Some(status);
        }
        let pid = self.child().id().to_string();
        let _ = Command::new("kill")
            .args(["-TERM", &pid])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let status = self.wait(grace);
        if status.is_none() {
            let _ = self.child().kill(); // SIGKILL, by PID
            let _ = self.wait(Duration::from_secs(5));
        }
        self.child = None;
        status
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.child.is_some() && self.stop(Duration::from_secs(3)).is_none() {
            eprintln!("{} had to be killed", self.name);
        }
    }
}

// ---------------------------------------------------------------------------------------
// sipscreen.

/// What a test's configuration varies.
struct Settings {
    /// The call permission's password.
    password: &'static str,
    /// `pin.lockout.failures`.
    lockout_failures: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            password: "1",
            lockout_failures: 5,
        }
    }
}

fn config(sip: u16, next_hop: u16, rtp: (u16, u16), s: &Settings) -> String {
    format!(
        r#"[server]
listen = ["udp:127.0.0.1:{sip}"]
next_hop = "udp:127.0.0.1:{next_hop}"
record_route = true
reject_reason = "{REJECT_REASON}"

[pin]
attempts = 3
max_digits = 8
first_digit_timeout_s = 10
inter_digit_timeout_s = 5
prompt = "tone"
rtp_ports = "{lo}-{hi}"
dial_prefix = "**"
lockout = {{ failures = {failures}, window_s = 600, lock_s = 900 }}

[brand]
name = "pin-e2e"

[[tenant]]
name = "acme"
country = "ES"
sources = ["127.0.0.0/8"]

  [[tenant.users]]
  name = "alice"
  extension = "{ALICE}"

  [[tenant.call_permissions]]
  name = "pin-international"
  extensions = ["_00X."]
  password = "{password}"
  users = ["alice"]
"#,
        lo = rtp.0,
        hi = rtp.1,
        failures = s.lockout_failures,
        password = s.password,
    )
}

/// One test's world: its directory, sipscreen running on its own ports, and the port of
/// the next hop (where the test puts a SIPp UAS or a silent socket).
struct World {
    dir: TempDir,
    sip: u16,
    next_hop: u16,
    rtp: (u16, u16),
    proxy: Proc,
    log: PathBuf,
}

impl World {
    fn start(test: &str, settings: &Settings) -> World {
        let dir = TempDir::new("pin", test);
        let (sip, next_hop) = (free_port(), free_port());
        // Four ports: two even ones for prompts.
        let lo = free_ports(4);
        let rtp = (lo, lo + 3);
        let path = dir.path("sipscreen.toml");
        fs::write(&path, config(sip, next_hop, rtp, settings)).expect("write the config");
        let log = dir.path("sipscreen.log");
        let proxy = Proc::spawn(
            "sipscreen",
            Command::new(env!("CARGO_BIN_EXE_sipscreen"))
                .arg("run")
                .arg("--config")
                .arg(&path)
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(fs::File::create(&log).expect("create the proxy's log")),
        );
        let mut world = World {
            dir,
            sip,
            next_hop,
            rtp,
            proxy,
            log,
        };
        world.wait_ready();
        world
    }

    /// Polls with OPTIONS addressed to sipscreen (answered 200) until it answers.
    fn wait_ready(&mut self) {
        let probe = UdpSocket::bind((LOOPBACK, 0)).expect("bind a probe socket");
        probe
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("set a read timeout");
        let me = probe.local_addr().expect("the probe's address");
        let to = SocketAddr::new(LOOPBACK, self.sip);
        let deadline = Instant::now() + WAIT;
        let mut buf = [0u8; 4096];
        for n in 1.. {
            if let Some(status) = self.proxy.exited() {
                panic!(
                    "sipscreen exited before it was ready ({status}):\n{}",
                    tail(&self.log, 4000)
                );
            }
            assert!(
                Instant::now() < deadline,
                "sipscreen did not answer OPTIONS on {to} within {WAIT:?}:\n{}",
                tail(&self.log, 4000)
            );
            let options = format!(
                "OPTIONS sip:{to} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-ready-{n};rport\r\nFrom: <sip:probe@{me}>;tag=ready{n}\r\nTo: <sip:{to}>\r\nCall-ID: ready-{n}-{}\r\nCSeq: {n} OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
                std::process::id()
            );
            let _ = probe.send_to(options.as_bytes(), to);
            if let Ok(len) = probe.recv(&mut buf) {
                if buf[..len].starts_with(b"SIP/2.0 200") {
                    return;
                }
            }
        }
    }

    /// The address SIPp's callers call.
    fn target(&self) -> String {
        format!("127.0.0.1:{}", self.sip)
    }

    /// Runs a SIPp caller to its end: one call from alice to `dialed`.
    fn call(&self, name: &str, xml: &str, dialed: &str) -> SippRun {
        let media = free_ports(4);
        let args = [
            "-sf".to_owned(),
            scenario(xml),
            "-s".to_owned(),
            dialed.to_owned(),
            "-key".to_owned(),
            "caller".to_owned(),
            ALICE.to_owned(),
            "-m".to_owned(),
            "1".to_owned(),
            "-i".to_owned(),
            "127.0.0.1".to_owned(),
            "-p".to_owned(),
            free_port().to_string(),
            "-mi".to_owned(),
            "127.0.0.1".to_owned(),
            "-mp".to_owned(),
            media.to_string(),
            self.target(),
        ];
        Sipp::spawn(&self.dir, name, &args).finish(WAIT)
    }

    /// Starts the SIPp UAS of `tests/pin/uas.xml` at the next hop, for one call.
    fn uas(&self) -> Sipp {
        let media = free_ports(4);
        let args = [
            "-sf".to_owned(),
            scenario("uas.xml"),
            "-m".to_owned(),
            "1".to_owned(),
            "-i".to_owned(),
            "127.0.0.1".to_owned(),
            "-p".to_owned(),
            self.next_hop.to_string(),
            "-mi".to_owned(),
            "127.0.0.1".to_owned(),
            "-mp".to_owned(),
            media.to_string(),
        ];
        let mut uas = Sipp::spawn(&self.dir, "uas", &args);
        uas.wait_bound(self.next_hop);
        uas
    }

    /// A socket at the next hop, where nothing may arrive.
    fn silent_next_hop(&self) -> Silent {
        Silent(UdpSocket::bind((LOOPBACK, self.next_hop)).expect("bind the next hop's socket"))
    }

    /// Stops sipscreen (SIGTERM: it drains and must exit 0) and checks it never panicked.
    fn finish(mut self) {
        let status = self.proxy.stop(Duration::from_secs(10));
        let log = read_lossy(&self.log);
        assert!(
            status.is_some_and(|s| s.success()),
            "sipscreen must exit 0 on SIGTERM, got {status:?}:\n{}",
            tail(&self.log, 4000)
        );
        assert!(!log.contains("panicked"), "sipscreen panicked:\n{log}");
    }
}

/// A socket in place of the next hop.
struct Silent(UdpSocket);

impl Silent {
    /// Nothing arrived (waiting briefly for stragglers).
    fn assert_nothing(&self, why: &str) {
        self.0
            .set_read_timeout(Some(Duration::from_millis(300)))
            .expect("set a read timeout");
        let mut buf = [0u8; 65536];
        if let Ok(n) = self.0.recv(&mut buf) {
            panic!(
                "{why}: nothing may reach the next hop, but it got:\n{}",
                String::from_utf8_lossy(&buf[..n])
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// SIPp.

/// One SIPp process, in the foreground as our child (never `-bg`).
struct Sipp {
    proc: Proc,
    name: String,
    dir: PathBuf,
}

/// What a finished SIPp run left behind.
struct SippRun {
    status: ExitStatus,
    name: String,
    dir: PathBuf,
}

impl Sipp {
    /// `sipp ARGS` with no stdin, bounded in time, with its screen, errors and messages in
    /// the test directory; run in the test directory (where the DTMF captures are copied).
    fn spawn(dir: &TempDir, name: &str, args: &[String]) -> Sipp {
        let mut all = args.to_vec();
        all.extend(
            [
                "-nostdin",
                "-timeout",
                "20s",
                "-timeout_error",
                "-recv_timeout",
                "10000",
                "-trace_msg",
                "-message_file",
                &dir.file(&format!("{name}_messages.log")),
                "-trace_screen",
                "-screen_file",
                &dir.file(&format!("{name}_screen.log")),
                "-trace_err",
                "-error_file",
                &dir.file(&format!("{name}_errors.log")),
            ]
            .map(str::to_owned),
        );
        let out = fs::File::create(dir.path(&format!("{name}.out"))).expect("SIPp output file");
        let err = out.try_clone().expect("SIPp output file");
        let proc = Proc::spawn(
            name,
            Command::new(sipp())
                .args(&all)
                .current_dir(&dir.0)
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err),
        );
        Sipp {
            proc,
            name: name.to_owned(),
            dir: dir.0.clone(),
        }
    }

    /// Waits until SIPp has bound its SIP port, so that nothing reaches it before it listens.
    fn wait_bound(&mut self, port: u16) {
        let deadline = Instant::now() + WAIT;
        while !udp_bound(port) {
            if let Some(status) = self.proc.exited() {
                panic!(
                    "{} exited ({status}) before binding port {port}:\n{}",
                    self.name,
                    tail(&self.dir.join(format!("{}.out", self.name)), 3000)
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not bind port {port} within {WAIT:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn running(&mut self) -> bool {
        self.proc.exited().is_none()
    }

    /// Waits at most `limit` for SIPp to end by itself; a failure (after stopping it) when
    /// it does not.
    fn finish(mut self, limit: Duration) -> SippRun {
        let status = self.proc.wait(limit);
        let status = match status {
            Some(status) => {
                self.proc.stop(Duration::ZERO);
                status
            }
            None => {
                self.proc.stop(Duration::from_secs(2));
                panic!(
                    "{} did not finish within {limit:?}:\n{}",
                    self.name,
                    tail(&self.dir.join(format!("{}_screen.log", self.name)), 3000)
                );
            }
        };
        SippRun {
            status,
            name: self.name.clone(),
            dir: self.dir.clone(),
        }
    }
}

impl SippRun {
    fn file(&self, suffix: &str) -> PathBuf {
        self.dir.join(format!("{}{suffix}", self.name))
    }

    /// What to show when an assertion on this run fails.
    fn describe(&self) -> String {
        format!(
            "{} exited {}\n--- messages ---\n{}--- screen ---\n{}\n--- errors ---\n{}\n--- output ---\n{}",
            self.name,
            self.status,
            summary(&self.messages()),
            tail(&self.file("_screen.log"), 2500),
            tail(&self.file("_errors.log"), 2500),
            tail(&self.file(".out"), 1500),
        )
    }

    /// SIPp exits 0 only when its call went as the scenario says.
    fn assert_success(&self) {
        assert_eq!(self.status.code(), Some(0), "{}", self.describe());
    }

    fn messages(&self) -> Vec<Logged> {
        parse_message_log(&read_lossy(&self.file("_messages.log")))
    }

    /// The messages received, by their first line's start (`SIP/2.0 183`, `INVITE `).
    fn received(&self, start: &str) -> Vec<Logged> {
        self.messages()
            .into_iter()
            .filter(|m| m.received && m.first_line().starts_with(start))
            .collect()
    }

    /// The status codes received, in order.
    fn codes(&self) -> Vec<u16> {
        self.messages()
            .iter()
            .filter(|m| m.received)
            .filter_map(|m| m.first_line().strip_prefix("SIP/2.0 "))
            .filter_map(|rest| rest.get(..3)?.parse().ok())
            .collect()
    }
}

fn summary(msgs: &[Logged]) -> String {
    msgs.iter()
        .map(|m| {
            let dir = if m.received { "<-" } else { "->" };
            format!("{dir} {}\n", m.first_line())
        })
        .collect()
}

/// Copies SIPp's DTMF captures (`tests/captures/`, as shipped by sip-tester) into the test
/// directory, where the scenarios play them from.
fn copy_dtmf_captures(dir: &TempDir) {
    for name in ["dtmf_2833_1.pcap", "dtmf_2833_pound.pcap"] {
        fs::copy(root().join("tests/captures").join(name), dir.path(name))
            .unwrap_or_else(|e| panic!("copy {name}: {e}"));
    }
}

/// The caller's call went through: SIPp's call succeeded (183, then 200, ACK, BYE, 200),
/// and the 183 carried an SDP answer at a port of `rtp_ports`. Returns that port.
fn assert_prompted_then_answered(world: &World, uac: &SippRun) -> u16 {
    uac.assert_success();
    let progress = uac.received("SIP/2.0 183");
    assert_eq!(progress.len(), 1, "one 183\n{}", uac.describe());
    let port = progress[0]
        .sdp_audio_port()
        .unwrap_or_else(|| panic!("the 183 has no m=audio line:\n{}", progress[0].text));
    assert!(
        (world.rtp.0..=world.rtp.1).contains(&port) && port % 2 == 0,
        "the prompt's RTP port {port} must be an even port of rtp_ports {:?}",
        world.rtp
    );
    let codes = uac.codes();
    assert!(
        codes.contains(&200) && !codes.iter().any(|&c| c >= 300),
        "the call is answered: {codes:?}\n{}",
        uac.describe()
    );
    port
}

/// The next hop got exactly one INVITE, for the dialed number, through sipscreen.
fn assert_one_invite_for(uas: &SippRun, number: &str) {
    uas.assert_success();
    let invites = uas.received("INVITE ");
    assert_eq!(invites.len(), 1, "one INVITE\n{}", uas.describe());
    let uri = invites[0].request_uri();
    assert!(
        uri.starts_with(&format!("sip:{number}@")),
        "the next hop must get the number alone in the Request-URI, got `{uri}`:\n{}",
        invites[0].text
    );
    assert!(
        invites[0].text.contains("branch=z9hG4bKsS"),
        "the INVITE came through sipscreen:\n{}",
        invites[0].text
    );
}

// ---------------------------------------------------------------------------------------
// Tests with SIPp.

#[test]
fn right_pin_by_rtp_telephone_events_lets_the_call_through() {
    let world = World::start("rtp", &Settings::default());
    copy_dtmf_captures(&world.dir);
    let uas = world.uas();
    let uac = world.call("uac", "uac_rtp_pin.xml", NUMBER);
    let port = assert_prompted_then_answered(&world, &uac);
    let uas = uas.finish(WAIT);
    assert_one_invite_for(&uas, NUMBER);
    assert!(
        !udp_bound(port),
        "the prompt's RTP port {port} is closed once the PIN is right"
    );
    world.finish();
}

#[test]
fn right_pin_by_sip_info_in_the_early_dialog_lets_the_call_through() {
    // tests/pin/uac_info_pin.xml keys 4 2 7 1 #.
    let settings = Settings {
        password: "4271",
        ..Settings::default()
    };
    let world = World::start("info", &settings);
    let uas = world.uas();
    let uac = world.call("uac", "uac_info_pin.xml", NUMBER);
    assert_prompted_then_answered(&world, &uac);
    let progress = &uac.received("SIP/2.0 183")[0];
    let tag = progress
        .text
        .lines()
        .find(|l| l.starts_with("To:") || l.starts_with("t:"))
        .and_then(|l| l.split_once(";tag="))
        .map(|(_, t)| t.trim().to_owned())
        .unwrap_or_else(|| panic!("the 183 has a To tag:\n{}", progress.text));
    let infos: Vec<Logged> = uac
        .messages()
        .into_iter()
        .filter(|m| !m.received && m.first_line().starts_with("INFO "))
        .collect();
    assert_eq!(infos.len(), 5, "{}", uac.describe());
    assert!(
        infos.iter().all(|m| m.text.contains(&format!("tag={tag}"))),
        "every INFO is in the 183's early dialog (To tag {tag})"
    );
    let uas = uas.finish(WAIT);
    assert_one_invite_for(&uas, NUMBER);
    world.finish();
}

#[test]
fn three_wrong_pins_are_rejected_and_never_reach_the_next_hop() {
    let world = World::start("wrong", &Settings::default());
    let next_hop = world.silent_next_hop();
    let uac = world.call("uac", "uac_info_wrong.xml", NUMBER);
    uac.assert_success();
    let codes = uac.codes();
    assert_eq!(
        codes.iter().filter(|&&c| c == 200).count(),
        6,
        "each of the six INFOs answered 200: {codes:?}"
    );
    assert_eq!(
        codes.iter().filter(|&&c| c >= 300).collect::<Vec<_>>(),
        [&403],
        "one final response, 403, after the third wrong PIN: {codes:?}\n{}",
        uac.describe()
    );
    assert_eq!(codes.last(), Some(&403), "{codes:?}");
    next_hop.assert_nothing("three wrong PINs");
    world.finish();
}

#[test]
fn cancel_during_the_prompt_gives_487_and_frees_the_rtp_port() {
    let world = World::start("cancel", &Settings::default());
    let next_hop = world.silent_next_hop();
    let media = free_ports(4);
    let args = [
        "-sf".to_owned(),
        scenario("uac_cancel.xml"),
        "-s".to_owned(),
        NUMBER.to_owned(),
        "-key".to_owned(),
        "caller".to_owned(),
        ALICE.to_owned(),
        "-m".to_owned(),
        "1".to_owned(),
        "-i".to_owned(),
        "127.0.0.1".to_owned(),
        "-p".to_owned(),
        free_port().to_string(),
        "-mi".to_owned(),
        "127.0.0.1".to_owned(),
        "-mp".to_owned(),
        media.to_string(),
        world.target(),
    ];
    let mut uac = Sipp::spawn(&world.dir, "uac", &args);
    // While the call is up, note which prompt ports are open.
    let mut open = HashSet::new();
    let deadline = Instant::now() + WAIT;
    while uac.running() && Instant::now() < deadline {
        for port in (world.rtp.0..=world.rtp.1).filter(|p| p % 2 == 0) {
            if udp_bound(port) {
                open.insert(port);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let uac = uac.finish(Duration::from_secs(1));
    uac.assert_success();
    let codes = uac.codes();
    assert!(
        codes.contains(&183) && codes.contains(&200) && codes.contains(&487),
        "183, then 200 for the CANCEL and 487 for the INVITE: {codes:?}\n{}",
        uac.describe()
    );
    assert_eq!(
        codes.iter().filter(|&&c| c == 487).count(),
        1,
        "the 487 is not retransmitted once ACKed: {codes:?}"
    );
    let port = uac.received("SIP/2.0 183")[0]
        .sdp_audio_port()
        .expect("the 183's SDP names the prompt's port");
    assert!(
        open.contains(&port),
        "the prompt's port {port} was open during the prompt (seen open: {open:?})"
    );
    // The port is free again while sipscreen runs: it can be bound (the socket is closed by
    // sipscreen's I/O task just after the CANCEL, so allow a moment).
    let deadline = Instant::now() + Duration::from_secs(2);
    let socket = loop {
        match UdpSocket::bind((LOOPBACK, port)) {
            Ok(s) => break s,
            Err(e) if Instant::now() >= deadline => {
                panic!("the prompt's RTP port {port} is still in use after the CANCEL: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    drop(socket);
    next_hop.assert_nothing("a call cancelled during the prompt");
    world.finish();
}

#[test]
fn dial_prefix_pin_right_reaches_the_next_hop_with_the_number_alone_wrong_is_refused() {
    let settings = Settings {
        password: "2580",
        ..Settings::default()
    };
    let world = World::start("prefix", &settings);
    let uas = world.uas();

    let wrong = world.call("wrong", "uac_rejected.xml", &format!("**1111*{NUMBER}"));
    wrong.assert_success();
    assert_eq!(
        wrong
            .codes()
            .into_iter()
            .filter(|&c| c > 100)
            .collect::<Vec<_>>(),
        [403],
        "a wrong dial-prefix PIN: 403 at once, no 183\n{}",
        wrong.describe()
    );

    let right = world.call("right", "uac_call.xml", &format!("**2580*{NUMBER}"));
    right.assert_success();
    assert!(
        right.received("SIP/2.0 183").is_empty(),
        "no prompt when the PIN comes with the number\n{}",
        right.describe()
    );
    let uas = uas.finish(WAIT);
    assert_one_invite_for(&uas, NUMBER);
    let invite = &uas.received("INVITE ")[0];
    assert!(
        !invite.request_uri().contains("2580"),
        "the PIN is not in the Request-URI the next hop gets: {}",
        invite.first_line()
    );
    world.finish();
}

#[test]
fn lockout_refuses_even_the_right_pin() {
    let settings = Settings {
        password: "2580",
        lockout_failures: 2,
    };
    let world = World::start("lockout", &settings);
    let next_hop = world.silent_next_hop();
    let wrong = format!("**1111*{NUMBER}");
    for name in ["wrong1", "wrong2"] {
        let run = world.call(name, "uac_rejected.xml", &wrong);
        run.assert_success();
    }
    // Locked out: the right PIN, given with the prefix, is refused...
    let right = world.call("right", "uac_rejected.xml", &format!("**2580*{NUMBER}"));
    right.assert_success();
    assert_eq!(
        right
            .codes()
            .into_iter()
            .filter(|&c| c > 100)
            .collect::<Vec<_>>(),
        [403],
        "locked out: 403, no prompt\n{}",
        right.describe()
    );
    // ...and so is a call that would be prompted.
    let prompt = world.call("prompt", "uac_rejected.xml", NUMBER);
    prompt.assert_success();
    next_hop.assert_nothing("a locked-out user");
    let log = read_lossy(&world.log);
    assert!(
        log.contains("locked out"),
        "the lockout is logged (SPEC §6 item 3):\n{log}"
    );
    world.finish();
}

// ---------------------------------------------------------------------------------------
// The prompt itself, heard by a caller made of two UDP sockets.

/// A response read from the SIP socket.
fn recv_sip(socket: &UdpSocket, deadline: Instant) -> String {
    let mut buf = [0u8; 65536];
    loop {
        assert!(Instant::now() < deadline, "no SIP response in time");
        if let Ok(n) = socket.recv(&mut buf) {
            return String::from_utf8_lossy(&buf[..n]).into_owned();
        }
    }
}

/// Reads responses until one with `code`; every response's first line and CSeq go to `seen`.
fn expect_response(socket: &UdpSocket, code: u16, seen: &mut Vec<String>) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let msg = recv_sip(socket, deadline);
        let is = msg.starts_with(&format!("SIP/2.0 {code} "));
        let first = msg.lines().next().unwrap_or("");
        seen.push(format!("{first} ({})", header(&msg, "CSeq").unwrap_or("")));
        if is {
            return msg;
        }
    }
}

fn header<'m>(msg: &'m str, name: &str) -> Option<&'m str> {
    msg.lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

/// An RTP packet received, with when.
struct Rtp {
    at: Instant,
    from: SocketAddr,
    bytes: Vec<u8>,
}

impl Rtp {
    fn version(&self) -> u8 {
        self.bytes[0] >> 6
    }
    fn marker(&self) -> bool {
        self.bytes[1] & 0x80 != 0
    }
    fn payload_type(&self) -> u8 {
        self.bytes[1] & 0x7f
    }
    fn sequence(&self) -> u16 {
        u16::from_be_bytes([self.bytes[2], self.bytes[3]])
    }
    fn timestamp(&self) -> u32 {
        u32::from_be_bytes([self.bytes[4], self.bytes[5], self.bytes[6], self.bytes[7]])
    }
    fn ssrc(&self) -> u32 {
        u32::from_be_bytes([self.bytes[8], self.bytes[9], self.bytes[10], self.bytes[11]])
    }
    /// The µ-law payload, decoded (no CSRC, no extension: checked by the caller).
    fn samples(&self) -> Vec<i16> {
        self.bytes[12..]
            .iter()
            .map(|&b| audio_codec_algorithms::decode_ulaw(b))
            .collect()
    }
}

#[test]
fn the_prompt_is_a_440_hz_tone_in_paced_rtp() {
    let world = World::start("tone", &Settings::default());
    let _next_hop = world.silent_next_hop();
    let sip = UdpSocket::bind((LOOPBACK, 0)).expect("bind the caller's SIP socket");
    let rtp = UdpSocket::bind((LOOPBACK, 0)).expect("bind the caller's RTP socket");
    for s in [&sip, &rtp] {
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("set a read timeout");
    }
    let me = sip.local_addr().unwrap();
    let rtp_port = rtp.local_addr().unwrap().port();
    let proxy = SocketAddr::new(LOOPBACK, world.sip);
    let call_id = format!("tone-{}@127.0.0.1", std::process::id());
    let branch = format!("z9hG4bK-tone-{}", std::process::id());
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {rtp_port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n"
    );
    let common = |method: &str, cseq: &str, to: &str| {
        format!(
            "{method} sip:{NUMBER}@{proxy} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={branch};rport\r\nFrom: <sip:{ALICE}@{me}>;tag=caller1\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq}\r\nMax-Forwards: 70\r\n"
        )
    };
    let to = format!("<sip:{NUMBER}@{proxy}>");
    let invite = format!(
        "{}Contact: <sip:{ALICE}@{me}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        common("INVITE", "1 INVITE", &to),
        sdp.len()
    );
    sip.send_to(invite.as_bytes(), proxy).unwrap();
    let mut seen = Vec::new();
    let progress = expect_response(&sip, 183, &mut seen);
    assert!(
        header(&progress, "To").is_some_and(|t| t.contains(";tag=")),
        "{progress}"
    );
    assert!(
        header(&progress, "Content-Type") == Some("application/sdp")
            && progress.contains("c=IN IP4 127.0.0.1\r\n")
            && progress.contains(" RTP/AVP 0 101\r\n")
            && progress.contains("a=rtpmap:101 telephone-event/8000"),
        "an SDP answer with PCMU and telephone-event:\n{progress}"
    );
    let port: u16 = progress
        .split("m=audio ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no m=audio port in the 183:\n{progress}"));
    assert!((world.rtp.0..=world.rtp.1).contains(&port), "{port}");

    // One second of prompt: 50 packets.
    let mut packets = Vec::new();
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(5);
    while packets.len() < 50 {
        assert!(
            Instant::now() < deadline,
            "only {} RTP packets of the prompt within 5 s",
            packets.len()
        );
        if let Ok((n, from)) = rtp.recv_from(&mut buf) {
            packets.push(Rtp {
                at: Instant::now(),
                from,
                bytes: buf[..n].to_vec(),
            });
        }
    }
    let first = &packets[0];
    for (i, p) in packets.iter().enumerate() {
        assert_eq!(p.from, SocketAddr::new(LOOPBACK, port), "symmetric RTP");
        assert_eq!(p.version(), 2, "packet {i}: RTP version");
        assert_eq!(
            p.bytes[0] & 0x3f,
            0,
            "packet {i}: no padding, extension, CSRC"
        );
        assert_eq!(p.payload_type(), 0, "packet {i}: PCMU");
        assert_eq!(p.bytes.len(), 12 + 160, "packet {i}: 20 ms of PCMU");
        assert_eq!(p.ssrc(), first.ssrc(), "packet {i}: one SSRC");
        if i > 0 {
            let prev = &packets[i - 1];
            assert!(!p.marker(), "packet {i}: marker only on the first");
            assert_eq!(
                p.sequence(),
                prev.sequence().wrapping_add(1),
                "packet {i}: consecutive sequence numbers"
            );
            assert_eq!(
                p.timestamp(),
                prev.timestamp().wrapping_add(160),
                "packet {i}: timestamps 160 apart"
            );
        }
    }
    let span = packets[49].at.duration_since(packets[0].at);
    let average = span / 49;
    assert!(
        (Duration::from_millis(15)..=Duration::from_millis(30)).contains(&average),
        "packets every 20 ms on average, got {average:?} ({span:?} for 50)"
    );

    // The beeps: runs of loud frames, each a 440 Hz tone.
    let loud: Vec<bool> = packets
        .iter()
        .map(|p| {
            let s = p.samples();
            let energy = s.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / s.len() as f64;
            energy.sqrt() > 1000.0
        })
        .collect();
    let mut beeps: Vec<Vec<i16>> = Vec::new();
    let mut in_beep = false;
    for (p, &l) in packets.iter().zip(&loud) {
        if l && !in_beep {
            beeps.push(Vec::new());
        }
        if l {
            beeps.last_mut().unwrap().extend(p.samples());
        }
        in_beep = l;
    }
    let pattern: String = loud.iter().map(|&l| if l { '#' } else { '.' }).collect();
    assert!(
        beeps.len() >= 2 && loud.iter().filter(|&&l| !l).count() >= 10,
        "beeps with silence between them in the first second: {pattern}"
    );
    for (i, beep) in beeps.iter().enumerate() {
        assert!(
            beep.len() >= 800,
            "beep {i} lasts 100 ms or more: {pattern}"
        );
        let tone = goertzel(beep, 440.0);
        let off = goertzel(beep, 1000.0);
        assert!(
            tone > 10.0 * off && tone > 10.0 * goertzel(beep, 300.0),
            "beep {i}: 440 Hz ({tone:.1}) dominates 1000 Hz ({off:.1})"
        );
    }

    // Hang up: 200 for the CANCEL, 487 for the INVITE.
    let cancel = format!(
        "{}Content-Length: 0\r\n\r\n",
        common("CANCEL", "1 CANCEL", &to)
    );
    sip.send_to(cancel.as_bytes(), proxy).unwrap();
    let ok = expect_response(&sip, 200, &mut seen);
    assert_eq!(header(&ok, "CSeq"), Some("1 CANCEL"), "{ok}");
    let terminated = expect_response(&sip, 487, &mut seen);
    assert_eq!(
        header(&terminated, "CSeq"),
        Some("1 INVITE"),
        "{terminated}"
    );
    let to_tagged = header(&terminated, "To").expect("a To header").to_owned();
    let ack = format!(
        "{}Content-Length: 0\r\n\r\n",
        common("ACK", "1 ACK", &to_tagged)
    );
    sip.send_to(ack.as_bytes(), proxy).unwrap();
    assert!(
        !seen
            .iter()
            .any(|l| l.starts_with("SIP/2.0 2") && l.ends_with("(1 INVITE)")),
        "no 2xx for the INVITE: {seen:?}"
    );

    // The prompt stops: after what was in flight, no more RTP.
    std::thread::sleep(Duration::from_millis(200));
    while rtp.recv_from(&mut buf).is_ok() {}
    rtp.set_read_timeout(Some(Duration::from_millis(400)))
        .unwrap();
    assert!(
        rtp.recv_from(&mut buf).is_err(),
        "no RTP once the caller hung up"
    );
    assert!(
        UdpSocket::bind((LOOPBACK, port)).is_ok(),
        "the prompt's RTP port {port} is free once the caller hung up"
    );

    // Checked last, so that everything else is checked even when it fails.
    let headers: Vec<String> = packets
        .iter()
        .take(5)
        .map(|p| {
            format!(
                "M={} PT={} seq={} ts={} ssrc={:08x} len={}",
                u8::from(p.marker()),
                p.payload_type(),
                p.sequence(),
                p.timestamp(),
                p.ssrc(),
                p.bytes.len()
            )
        })
        .collect();
    assert!(
        first.marker(),
        "the prompt's first packet (marker bit set, RFC 3551 §4.1) never arrived; the first \
         packets received:\n{}",
        headers.join("\n")
    );
    world.finish();
}
