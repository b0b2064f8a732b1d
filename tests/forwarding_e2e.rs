//! Forwarded and incoming calls on the wire (SPEC §4.6, §4.7): a live `sipscreen run` between
//! SIPp callers, a SIPp PBX and a SIPp trunk, all on loopback, with the rules of
//! `tests/forwarding/screening.toml` (the ones the captures of `pcaps/` were recorded with):
//!
//! - alice (1001) may call anything; bob (1002) only French mobiles (Call ACL, default deny);
//!   carol (1003) no 08 number (call permission); the DID +33140000000 refuses one caller;
//! - the PBX that forwards calls sends from 127.0.0.2, a trusted peer; phones send from
//!   127.0.0.1, which is not trusted.
//!
//! What is asserted is what the caller gets (200 or 403), and what reaches the PBX or the
//! trunk: a SIPp UAS whose message log is read, or a plain socket that must stay silent.
//!
//! SIPp (Debian package `sip-tester`) is required: these tests fail, never skip, without it.
//! Every process is owned by a guard that stops it by its PID; every wait is bounded; every
//! port is a free one (bound to port 0 first); each test works in its own temporary directory,
//! kept and named when the test fails.

use std::collections::HashSet;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Phones and the trunk's callers: not a trusted peer.
const PHONE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
/// The PBX that forwards calls: `trusted_peers = ["127.0.0.2/32"]`.
const PBX_FWD: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

const ALICE: &str = "1001";
const BOB: &str = "1002";
const CAROL: &str = "1003";
/// A French mobile: everyone may call it.
const MOBILE: &str = "0612345678";
/// A French landline: bob's ACL denies it, alice may call it.
const LANDLINE: &str = "0145678901";
/// A premium number: carol's call permission denies it (and bob's ACL).
const PREMIUM: &str = "0899123456";
/// The DID of the incall `main-did`, and the caller its permission blocks.
const DID: &str = "+33140000000";
const BLOCKED_CALLER: &str = "+33698765432";

const WAIT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------------------
// Environment.

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The `sipp` executable on PATH; a loud failure when it is missing.
fn sipp() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("sipp"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "SIPp (`sipp`) is not on PATH: tests/forwarding_e2e.rs needs it. Run scripts/test, \
             which checks the tools the suite needs, after `apt-get install sip-tester`."
        )
    })
}

fn scenario(name: &str) -> PathBuf {
    let path = root().join("tests/forwarding").join(name);
    assert!(path.is_file(), "missing scenario {}", path.display());
    path
}

/// Ports handed out in this run: tests run in parallel, and a port just released by one
/// could otherwise be handed to the next.
static TAKEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A UDP port nobody uses on `ip` right now (the kernel's choice for port 0), never handed
/// out before in this run.
fn free_port(ip: IpAddr) -> u16 {
    for _ in 0..100 {
        let port = UdpSocket::bind((ip, 0))
            .and_then(|s| s.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("no free UDP port on {ip}: {e}"));
        if take(port) {
            return port;
        }
    }
    panic!("no free UDP port on {ip}");
}

fn take(port: u16) -> bool {
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    taken.get_or_insert_with(HashSet::new).insert(port)
}

/// A free even port P with P + 2 free too: SIPp's media ports (audio and video).
fn free_media_port(ip: IpAddr) -> u16 {
    for _ in 0..100 {
        let p = free_port(ip);
        if p % 2 == 0 && p < u16::MAX - 2 && UdpSocket::bind((ip, p + 2)).is_ok() && take(p + 2) {
            return p;
        }
    }
    panic!("no free media ports on {ip}");
}

/// Whether something already holds UDP `ip:port` (then binding it fails).
fn udp_bound(ip: IpAddr, port: u16) -> bool {
    UdpSocket::bind((ip, port)).is_err()
}

fn read(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The request lines of a SIPp message log (`INVITE sip:... SIP/2.0`, ...), in order.
fn requests(log: &str, method: &str) -> Vec<String> {
    log.lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| l.starts_with(method) && l.ends_with(" SIP/2.0"))
        .map(str::to_owned)
        .collect()
}

// ---------------------------------------------------------------------------------------
// Processes.

/// A child process, stopped by its PID when dropped.
struct Proc {
    child: Child,
}

impl Proc {
    fn spawn(name: &str, cmd: &mut Command) -> Proc {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc { child }
    }

    /// Waits at most `limit` for the process to exit; kills it past that.
    fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return None;
                }
            }
        }
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill(); // by PID
        }
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// One proxy with its PBX and trunk addresses.

struct Net {
    dir: PathBuf,
    proxy_port: u16,
    pbx_port: u16,
    trunk_port: u16,
    proxy: Proc,
}

/// What a SIPp UAS received.
struct Received {
    log: String,
}

/// A SIPp UAS running in the background.
struct Uas {
    name: String,
    proc: Proc,
    log: PathBuf,
    out: PathBuf,
}

/// A socket in place of the PBX or the trunk, where nothing may arrive.
struct Silent {
    what: &'static str,
    socket: UdpSocket,
}

impl Silent {
    /// Nothing arrived (waiting briefly for stragglers).
    fn assert_nothing(&self, why: &str) {
        self.socket
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 65536];
        if let Ok(n) = self.socket.recv(&mut buf) {
            panic!(
                "{why}: nothing should reach the {}, but it got:\n{}",
                self.what,
                String::from_utf8_lossy(&buf[..n])
            );
        }
    }
}

impl Net {
    /// A proxy on free ports with the forwarding rules; returns once it answers OPTIONS.
    fn start(test: &str) -> Net {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!(
            "sipscreen-fwd-{test}-{}-{nanos}",
            std::process::id()
        ));
        fs::create_dir_all(&dir).unwrap();
        let (proxy_port, pbx_port, trunk_port) =
            (free_port(PHONE), free_port(PHONE), free_port(PHONE));
        let template = fs::read_to_string(scenario("screening.toml")).unwrap();
        let config = template
            .replace("@PROXY@", &format!("{PHONE}:{proxy_port}"))
            .replace("@PBX@", &format!("{PHONE}:{pbx_port}"))
            .replace("@TRUNK@", &format!("{PHONE}:{trunk_port}"));
        let config_path = dir.join("sipscreen.toml");
        fs::write(&config_path, config).unwrap();
        let log = fs::File::create(dir.join("proxy.log")).unwrap();
        let proxy = Proc::spawn(
            "sipscreen",
            Command::new(env!("CARGO_BIN_EXE_sipscreen"))
                .arg("run")
                .arg("--config")
                .arg(&config_path)
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log),
        );
        let mut net = Net {
            dir,
            proxy_port,
            pbx_port,
            trunk_port,
            proxy,
        };
        net.wait_ready();
        net
    }

    /// Sends OPTIONS to the proxy until it answers 200 (bounded).
    fn wait_ready(&mut self) {
        let probe = UdpSocket::bind((PHONE, 0)).unwrap();
        probe
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let me = probe.local_addr().unwrap();
        let deadline = Instant::now() + WAIT;
        let mut buf = [0u8; 4096];
        for i in 0.. {
            if let Some(status) = self.proxy.exited() {
                panic!("sipscreen exited ({status}):\n{}", self.proxy_log());
            }
            assert!(
                Instant::now() < deadline,
                "sipscreen does not answer OPTIONS:\n{}",
                self.proxy_log()
            );
            let options = format!(
                "OPTIONS sip:{PHONE}:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-probe-{i};rport\r\nMax-Forwards: 70\r\nFrom: <sip:probe@{me}>;tag=probe\r\nTo: <sip:{PHONE}:{port}>\r\nCall-ID: probe-{i}\r\nCSeq: {i} OPTIONS\r\nContent-Length: 0\r\n\r\n",
                port = self.proxy_port
            );
            let _ = probe.send_to(options.as_bytes(), (PHONE, self.proxy_port));
            if let Ok(n) = probe.recv(&mut buf) {
                if buf[..n].starts_with(b"SIP/2.0 200") {
                    return;
                }
            }
        }
    }

    fn proxy_log(&self) -> String {
        read(&self.dir.join("proxy.log"))
    }

    /// Common SIPp options: one call, no stdin, a global timeout that fails the run, media
    /// and control ports of our own (parallel SIPps would fight over 6000 and 8888).
    fn sipp(&self, name: &str, scenario_file: &str, ip: IpAddr, port: u16) -> Command {
        let mut cmd = Command::new(sipp());
        cmd.current_dir(&self.dir)
            .arg("-sf")
            .arg(scenario(scenario_file))
            .args(["-i", &ip.to_string(), "-p", &port.to_string()])
            .args(["-mp", &free_media_port(ip).to_string()])
            .args([
                "-cp",
                &free_port(IpAddr::V4(Ipv4Addr::UNSPECIFIED)).to_string(),
            ])
            .args(["-m", "1", "-nostdin", "-timeout", "10", "-timeout_error"])
            .arg("-trace_msg")
            .arg("-message_file")
            .arg(self.dir.join(format!("{name}.msg")))
            .arg("-trace_err")
            .arg("-error_file")
            .arg(self.dir.join(format!("{name}.err")))
            .stdin(Stdio::null())
            .stdout(fs::File::create(self.dir.join(format!("{name}.out"))).unwrap())
            .stderr(Stdio::null());
        if ip != PHONE {
            cmd.arg("-bind_local");
        }
        cmd
    }

    /// A SIPp UAS at `port`, running `scenario_file` once; returns when it listens.
    fn uas(&self, name: &str, port: u16, scenario_file: &str, keys: &[(&str, &str)]) -> Uas {
        let mut cmd = self.sipp(name, scenario_file, PHONE, port);
        for (k, v) in keys {
            cmd.args(["-key", k, v]);
        }
        let mut proc = Proc::spawn(name, &mut cmd);
        let deadline = Instant::now() + WAIT;
        while !udp_bound(PHONE, port) {
            if let Some(status) = proc.exited() {
                panic!(
                    "SIPp {name} exited ({status}): {}",
                    read(&self.dir.join(format!("{name}.out")))
                );
            }
            assert!(Instant::now() < deadline, "SIPp {name} does not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Uas {
            name: name.to_owned(),
            proc,
            log: self.dir.join(format!("{name}.msg")),
            out: self.dir.join(format!("{name}.out")),
        }
    }

    /// Waits for a UAS to finish its call (bounded) and returns what it received.
    fn finish(&self, mut uas: Uas) -> Received {
        let status = uas.proc.wait(WAIT);
        let log = read(&uas.log);
        assert!(
            status.is_some_and(|s| s.success()),
            "SIPp {} did not complete its call ({status:?}):\n{}\n{}\nproxy log:\n{}\n{}",
            uas.name,
            read(&uas.out),
            log,
            self.proxy_log(),
            self.kept()
        );
        Received { log }
    }

    fn silent(&self, what: &'static str, port: u16) -> Silent {
        let socket = UdpSocket::bind((PHONE, port))
            .unwrap_or_else(|e| panic!("cannot stand in for the {what} on {port}: {e}"));
        Silent { what, socket }
    }

    fn pbx(&self) -> u16 {
        self.pbx_port
    }

    fn trunk(&self) -> u16 {
        self.trunk_port
    }

    /// One call from `ip` as `caller` to `dialed`, with one extra header line, through the
    /// proxy; `answered` picks the scenario that expects 200 (else 403). Panics, with every
    /// log, when the caller does not get what it expects.
    fn call(
        &self,
        name: &str,
        ip: IpAddr,
        caller: &str,
        dialed: &str,
        header: &str,
        answered: bool,
    ) {
        let scenario_file = if answered {
            "uac_answered.xml"
        } else {
            "uac_rejected.xml"
        };
        let mut cmd = self.sipp(name, scenario_file, ip, free_port(ip));
        cmd.arg(format!("{PHONE}:{}", self.proxy_port))
            .args(["-cid_str", &format!("{name}-%u@forwarding-e2e")])
            .args([
                "-s", dialed, "-key", "caller", caller, "-key", "hdr", header,
            ]);
        let mut proc = Proc::spawn(name, &mut cmd);
        let status = proc.wait(WAIT);
        assert!(
            status.is_some_and(|s| s.success()),
            "{name}: {caller} calling {dialed} from {ip} with `{header}` should get {} \
             ({status:?}).\nSIPp:\n{}\n{}\nmessages:\n{}\nproxy log:\n{}\n{}",
            if answered { "200" } else { "403" },
            tail(&read(&self.dir.join(format!("{name}.out"))), 30),
            read(&self.dir.join(format!("{name}.err"))),
            read(&self.dir.join(format!("{name}.msg"))),
            self.proxy_log(),
            self.kept()
        );
    }

    fn kept(&self) -> String {
        format!("(test files kept in {})", self.dir.display())
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = self.proxy.child.kill();
        let _ = self.proxy.child.wait();
        if std::thread::panicking() {
            eprintln!("test files kept in {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

const PLAIN: &str = "Subject: no forwarding";

fn diversion(user: &str, ip: IpAddr) -> String {
    format!("Diversion: <sip:{user}@{ip}>;reason=unconditional;counter=1")
}

fn history_info(forwarder: &str, target: &str, ip: IpAddr) -> String {
    format!("History-Info: <sip:{forwarder}@{ip}>;index=1, <sip:{target}@{ip};cause=302>;index=1.1")
}

/// Calls that must reach the trunk: each is answered there, and the trunk saw the INVITE for
/// `dialed`.
fn assert_reaches_trunk(net: &Net, name: &str, ip: IpAddr, caller: &str, header: &str) {
    let trunk = net.uas(&format!("{name}-trunk"), net.trunk(), "uas_answer.xml", &[]);
    net.call(name, ip, caller, LANDLINE, header, true);
    let got = net.finish(trunk);
    let invites = requests(&got.log, "INVITE ");
    assert_eq!(invites.len(), 1, "{name}: {invites:?}");
    assert!(
        invites[0].starts_with(&format!("INVITE sip:{LANDLINE}@")),
        "{name}: {invites:?}"
    );
    // A trusted PBX's forwarding headers are information for the next hop too: forwarded
    // untouched. (Whether a phone's should be is not settled by SPEC §4.7: not asserted.)
    if header != PLAIN && ip == PBX_FWD {
        assert!(
            got.log.contains(header),
            "{name}: no `{header}` in\n{}",
            got.log
        );
    }
}

/// Calls that must be refused: 403 to the caller, and nothing reaches the trunk.
fn assert_refused(net: &Net, name: &str, ip: IpAddr, caller: &str, header: &str) {
    let trunk = net.silent("trunk", net.trunk());
    net.call(name, ip, caller, LANDLINE, header, false);
    trunk.assert_nothing(name);
}

// ---------------------------------------------------------------------------------------
// Diversion and History-Info (SPEC §4.7).

#[test]
fn trusted_diversion_checks_the_forwarders_rights() {
    let net = Net::start("diversion-trusted");
    // alice, through the PBX, may call a landline...
    assert_reaches_trunk(&net, "alice-direct", PBX_FWD, ALICE, PLAIN);
    // ...but not when the PBX says bob forwarded the call: bob's ACL denies landlines.
    assert_refused(
        &net,
        "alice-via-bob",
        PBX_FWD,
        ALICE,
        &diversion(BOB, PBX_FWD),
    );
    // And the other way: bob alone may not, bob's call forwarded by alice may.
    assert_refused(&net, "bob-direct", PBX_FWD, BOB, PLAIN);
    assert_reaches_trunk(
        &net,
        "bob-via-alice",
        PBX_FWD,
        BOB,
        &diversion(ALICE, PBX_FWD),
    );
}

#[test]
fn spoofed_diversion_from_a_phone_is_ignored() {
    let net = Net::start("diversion-spoofed");
    // bob's phone claims alice forwarded the call: not believed, bob's ACL denies.
    assert_refused(
        &net,
        "bob-claims-alice",
        PHONE,
        BOB,
        &diversion(ALICE, PHONE),
    );
    // alice's phone naming bob as forwarder does not lose alice's rights either.
    assert_reaches_trunk(
        &net,
        "alice-claims-bob",
        PHONE,
        ALICE,
        &diversion(BOB, PHONE),
    );
}

#[test]
fn trusted_history_info_checks_the_forwarders_rights() {
    let net = Net::start("history-info");
    // bob's call, forwarded by alice (History-Info from the trusted PBX): alice's rights.
    assert_reaches_trunk(
        &net,
        "hi-bob-via-alice",
        PBX_FWD,
        BOB,
        &history_info(ALICE, LANDLINE, PBX_FWD),
    );
    // alice's call, forwarded by bob: bob's ACL denies.
    assert_refused(
        &net,
        "hi-alice-via-bob",
        PBX_FWD,
        ALICE,
        &history_info(BOB, LANDLINE, PBX_FWD),
    );
    // The same History-Info from bob's phone is not believed: bob's own rights.
    assert_refused(
        &net,
        "hi-spoofed",
        PHONE,
        BOB,
        &history_info(ALICE, LANDLINE, PHONE),
    );
}

// ---------------------------------------------------------------------------------------
// Incoming calls (SPEC §4.6).

#[test]
fn incoming_call_is_checked_on_the_callers_number() {
    let net = Net::start("incoming");
    // The incall's permission names the caller's number: 403, the PBX sees nothing.
    let pbx = net.silent("PBX", net.pbx());
    net.call("blocked", PHONE, BLOCKED_CALLER, DID, PLAIN, false);
    pbx.assert_nothing("blocked caller");
    drop(pbx);
    // Anyone else reaches the PBX with the DID as Request-URI.
    let pbx = net.uas("allowed-pbx", net.pbx(), "uas_answer.xml", &[]);
    net.call("allowed", PHONE, "+33611111111", DID, PLAIN, true);
    let got = net.finish(pbx);
    let invites = requests(&got.log, "INVITE ");
    assert_eq!(invites.len(), 1, "{invites:?}");
    assert!(
        invites[0].starts_with(&format!("INVITE sip:{DID}@")),
        "{invites:?}"
    );
}

// ---------------------------------------------------------------------------------------
// A phone's own forward: 3xx followed with the forwarding user's rights (SPEC §4.7).

#[test]
fn redirect_tries_only_the_targets_the_forwarding_user_may_call() {
    let net = Net::start("redirect");
    let trunk_addr = format!("{PHONE}:{}", net.trunk());
    // carol's phone forwards to an 08 number (first choice) and a mobile. carol may not call
    // the 08 number (alice, the caller, could): it is skipped, the mobile is tried.
    let targets = format!("<sip:{PREMIUM}@{trunk_addr}>;q=0.9, <sip:{MOBILE}@{trunk_addr}>;q=0.5");
    let pbx = net.uas(
        "carol-phone",
        net.pbx(),
        "uas_redirect.xml",
        &[("targets", &targets)],
    );
    let trunk = net.uas("redirect-trunk", net.trunk(), "uas_answer.xml", &[]);
    net.call("alice-to-carol", PHONE, ALICE, CAROL, PLAIN, true);
    let trunk_got = net.finish(trunk);
    let pbx_got = net.finish(pbx);
    // carol's phone got the call to 1003 (and sipscreen's ACK of its 302), nothing else.
    assert_eq!(
        requests(&pbx_got.log, "INVITE "),
        [format!(
            "INVITE sip:{CAROL}@{PHONE}:{} SIP/2.0",
            net.proxy_port
        )],
        "{}",
        pbx_got.log
    );
    assert_eq!(requests(&pbx_got.log, "ACK ").len(), 1, "{}", pbx_got.log);
    // The trunk got exactly one INVITE, for the allowed target, as Request-URI.
    assert_eq!(
        requests(&trunk_got.log, "INVITE "),
        [format!("INVITE sip:{MOBILE}@{trunk_addr} SIP/2.0")],
        "{}",
        trunk_got.log
    );
}

#[test]
fn redirect_with_every_target_denied_gets_403() {
    let net = Net::start("redirect-denied");
    let trunk_addr = format!("{PHONE}:{}", net.trunk());
    // bob's phone forwards to a landline and an 08 number: bob's ACL denies both (alice, the
    // caller, could call either). The caller gets 403; the trunk sees nothing.
    let targets = format!("<sip:{LANDLINE}@{trunk_addr}>, <sip:{PREMIUM}@{trunk_addr}>;q=0.5");
    let pbx = net.uas(
        "bob-phone",
        net.pbx(),
        "uas_redirect.xml",
        &[("targets", &targets)],
    );
    let trunk = net.silent("trunk", net.trunk());
    net.call("alice-to-bob", PHONE, ALICE, BOB, PLAIN, false);
    trunk.assert_nothing("every forward target denied");
    let pbx_got = net.finish(pbx);
    assert_eq!(
        requests(&pbx_got.log, "INVITE ").len(),
        1,
        "{}",
        pbx_got.log
    );
}
