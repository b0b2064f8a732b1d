//! End-to-end tests with real SIPp peers (SPEC §4.8, §5): the built `sipscreen run` sits
//! between a SIPp UAC and a SIPp UAS (or a plain socket standing in for the next hop), all on
//! loopback. SIPp (Debian package `sip-tester`) is required: `scripts/test` installs it, and
//! these tests fail, never skip, without it.
//!
//! Scenarios live in `tests/sipp/`. Every process a test starts is owned by a guard that
//! stops it by its PID (sipscreen: SIGTERM, then SIGKILL after a bounded wait), every wait is
//! bounded, and each test works in its own temporary directory (kept, and named in the
//! failure, when the test fails).

mod common;
use common::{parse_message_log, read_lossy, sipp, tail, Logged, TempDir};
use std::collections::{HashMap, HashSet};
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The Reason header sipscreen must send with every 403 (`server.reject_reason`).
const REJECT_REASON: &str = r#"Q.850;cause=21;text="Call Rejected""#;
/// A number the configuration allows (an outcall with no permission that matches it).
const ALLOWED: &str = "600123456";
/// A number the outcall's call permission denies.
const DENIED: &str = "905123456";
/// Our branch prefix (RFC 3261 magic cookie + `sS`): every request sipscreen forwards has a
/// top Via with a branch starting with it.
const BRANCH_PREFIX: &str = "z9hG4bKsS";
/// Calls per load test, and the rate they are made at (calls per second).
const CALLS: u32 = 200;
const RATE: u32 = 100;

const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

// ---------------------------------------------------------------------------------------
// Environment: SIPp, temporary directories, ports.

/// A scenario file of `tests/sipp/`.
fn scenario(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("sipp")
        .join(name);
    assert!(path.is_file(), "missing scenario {}", path.display());
    path.to_str().expect("a UTF-8 path").to_owned()
}

/// Ports already handed out in this process: tests run in parallel, each gets its own.
static TAKEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A port that is free for both UDP and TCP on `ip`, never handed out before in this run.
fn free_port(ip: IpAddr) -> u16 {
    for _ in 0..200 {
        let Ok(udp) = UdpSocket::bind((ip, 0)) else {
            continue;
        };
        let Ok(port) = udp.local_addr().map(|a| a.port()) else {
            continue;
        };
        if TcpListener::bind((ip, port)).is_err() {
            continue;
        }
        let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
        if taken.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
    panic!("no free port on {ip}");
}

/// `host:port` as SIPp and sipscreen's config write it (IPv6 in brackets).
fn host_port(ip: IpAddr, port: u16) -> String {
    SocketAddr::new(ip, port).to_string()
}

/// Whether something is bound to `port` on loopback: a UDP socket, or a listening TCP socket.
/// Read from /proc, so that the check never takes the port itself.
fn bound(ip: IpAddr, port: u16, tcp: bool) -> bool {
    let file = match (tcp, ip.is_ipv4()) {
        (false, true) => "/proc/net/udp",
        (false, false) => "/proc/net/udp6",
        (true, true) => "/proc/net/tcp",
        (true, false) => "/proc/net/tcp6",
    };
    let Ok(table) = fs::read_to_string(file) else {
        return false;
    };
    let port = format!(":{port:04X}");
    table.lines().skip(1).any(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        cols.len() > 3 && cols[1].ends_with(&port) && (!tcp || cols[3] == "0A")
    })
}

// ---------------------------------------------------------------------------------------
// Processes.

/// Sends SIGTERM to a process we started, by its PID.
fn sigterm(child: &Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Waits for `child` at most `limit`; `None` when it is still running.
fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => return None,
        }
    }
}

/// SIGKILL and reap.
fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = wait_bounded(child, Duration::from_secs(5));
}

/// `sipscreen run` on a configuration, with its stderr in the test directory.
struct Sipscreen {
    child: Option<Child>,
    log: PathBuf,
}

impl Sipscreen {
    /// Writes `config`, starts the proxy and waits until it answers OPTIONS on `udp`.
    fn start(dir: &TempDir, config: &str, udp: SocketAddr) -> Sipscreen {
        let path = dir.path("sipscreen.toml");
        fs::write(&path, config).expect("write the configuration");
        let log = dir.path("sipscreen.log");
        let child = Command::new(env!("CARGO_BIN_EXE_sipscreen"))
            .arg("run")
            .arg("--config")
            .arg(&path)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).expect("create the proxy's log"))
            .spawn()
            .expect("start sipscreen run");
        let mut proxy = Sipscreen {
            child: Some(child),
            log,
        };
        proxy.wait_ready(udp, Duration::from_secs(15));
        proxy
    }

    /// Polls with OPTIONS (addressed to sipscreen itself, so answered 200) until it answers.
    fn wait_ready(&mut self, udp: SocketAddr, limit: Duration) {
        let local = if udp.is_ipv4() { V4 } else { V6 };
        let socket = UdpSocket::bind((local, 0)).expect("bind a probe socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("set a read timeout");
        let me = socket.local_addr().expect("the probe's address");
        let deadline = Instant::now() + limit;
        let mut n = 0;
        while Instant::now() < deadline {
            let child = self.child.as_mut().expect("running");
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "sipscreen exited before it was ready ({status}):\n{}",
                    tail(&self.log, 4000)
                );
            }
            n += 1;
            let options = format!(
                "OPTIONS sip:{udp} SIP/2.0\r\n\
                 Via: SIP/2.0/UDP {me};branch=z9hG4bK-ready-{n};rport\r\n\
                 From: <sip:probe@{me}>;tag=ready{n}\r\n\
                 To: <sip:{udp}>\r\n\
                 Call-ID: ready-{n}-{}\r\n\
                 CSeq: {n} OPTIONS\r\n\
                 Max-Forwards: 70\r\n\
                 Content-Length: 0\r\n\r\n",
                std::process::id()
            );
            let _ = socket.send_to(options.as_bytes(), udp);
            let mut buf = [0u8; 4096];
            if let Ok((len, _)) = socket.recv_from(&mut buf) {
                if buf[..len].starts_with(b"SIP/2.0 200") {
                    return;
                }
            }
        }
        panic!(
            "sipscreen did not answer OPTIONS on {udp} within {limit:?}:\n{}",
            tail(&self.log, 4000)
        );
    }

    /// SIGTERM, then the exit status (drain, SPEC §5). SIGKILL and a failure when it does
    /// not exit within 10 s.
    fn stop(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        sigterm(&child);
        match wait_bounded(&mut child, Duration::from_secs(10)) {
            Some(status) => status,
            None => {
                kill(&mut child);
                panic!(
                    "sipscreen did not exit within 10 s of SIGTERM:\n{}",
                    tail(&self.log, 4000)
                );
            }
        }
    }

    /// Stops it and asserts it exited 0.
    fn stop_ok(self) {
        let log = self.log.clone();
        let status = self.stop();
        assert!(
            status.success(),
            "sipscreen must exit 0 on SIGTERM, got {status}:\n{}",
            tail(&log, 4000)
        );
    }
}

impl Drop for Sipscreen {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            sigterm(&child);
            if wait_bounded(&mut child, Duration::from_secs(3)).is_none() {
                kill(&mut child);
            }
        }
    }
}

/// One SIPp process, in the foreground as our child (never `-bg`).
struct Sipp {
    child: Option<Child>,
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
    /// Starts `sipp ARGS` with the options every run gets: no stdin, bounded in time, and its
    /// statistics, screen, errors and (with `trace_msg`) messages in the test directory.
    fn spawn(dir: &TempDir, name: &str, args: &[String], trace_msg: bool) -> Sipp {
        let mut all: Vec<String> = args.to_vec();
        let common = [
            "-nostdin",
            "-timeout",
            "30s",
            "-timeout_error",
            "-recv_timeout",
            "10000",
            "-trace_stat",
            "-stf",
            &dir.file(&format!("{name}.csv")),
            "-trace_screen",
            "-screen_file",
            &dir.file(&format!("{name}_screen.log")),
            "-trace_err",
            "-error_file",
            &dir.file(&format!("{name}_errors.log")),
        ];
        all.extend(common.iter().map(|s| s.to_string()));
        if trace_msg {
            all.extend([
                "-trace_msg".to_owned(),
                "-message_file".to_owned(),
                dir.file(&format!("{name}_messages.log")),
            ]);
        }
        let out = fs::File::create(dir.path(&format!("{name}.out"))).expect("SIPp output file");
        let err = out.try_clone().expect("SIPp output file");
        let child = Command::new(sipp())
            .args(&all)
            .current_dir(&dir.0)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start sipp {all:?}: {e}"));
        Sipp {
            child: Some(child),
            name: name.to_owned(),
            dir: dir.0.clone(),
        }
    }

    /// Waits until SIPp has bound `port` (so that nothing reaches it before it listens).
    fn wait_bound(&mut self, ip: IpAddr, port: u16, tcp: bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !bound(ip, port, tcp) {
            let child = self.child.as_mut().expect("running");
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "{} exited ({status}) before binding port {port}:\n{}",
                    self.name,
                    tail(&self.dir.join(format!("{}.out", self.name)), 3000)
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not bind port {port} within 10 s",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits at most `limit` for SIPp to end by itself.
    fn finish(mut self, limit: Duration) -> SippRun {
        let mut child = self.child.take().expect("running");
        let status = match wait_bounded(&mut child, limit) {
            Some(status) => status,
            None => {
                kill(&mut child);
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

impl Drop for Sipp {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill(&mut child);
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
            "{} exited {}\n--- screen ---\n{}\n--- errors ---\n{}\n--- output ---\n{}",
            self.name,
            self.status,
            tail(&self.file("_screen.log"), 3000),
            tail(&self.file("_errors.log"), 3000),
            tail(&self.file(".out"), 1500),
        )
    }

    /// SIPp exits 0 only when every call succeeded.
    fn assert_success(&self) {
        assert_eq!(self.status.code(), Some(0), "{}", self.describe());
    }

    /// The last line of the `-trace_stat` CSV, by column name.
    fn stats(&self) -> HashMap<String, String> {
        let csv = read_lossy(&self.file(".csv"));
        let lines: Vec<&str> = csv.lines().filter(|l| !l.trim().is_empty()).collect();
        let (Some(header), Some(last)) = (lines.first(), lines.get(1..).and_then(|l| l.last()))
        else {
            return HashMap::new();
        };
        header
            .split(';')
            .zip(last.split(';'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect()
    }

    fn stat(&self, column: &str) -> u64 {
        let stats = self.stats();
        stats
            .get(column)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "no `{column}` in the statistics of {}\n{}",
                    self.name,
                    self.describe()
                )
            })
    }

    /// Exit 0, and the statistics say `calls` successful calls and none failed.
    fn assert_calls(&self, calls: u64) {
        self.assert_success();
        assert_eq!(
            (self.stat("SuccessfulCall(C)"), self.stat("FailedCall(C)")),
            (calls, 0),
            "(successful, failed) calls of {}\n{}",
            self.name,
            self.describe()
        );
    }

    /// The messages of the `-trace_msg` log.
    fn messages(&self) -> Vec<Logged> {
        parse_message_log(&read_lossy(&self.file("_messages.log")))
    }
}

// ---------------------------------------------------------------------------------------
// SIPp's message log.

/// The messages of a log in one line each, for failure messages.
fn summary(msgs: &[Logged]) -> String {
    msgs.iter()
        .map(|m| {
            format!(
                "{} {}\n",
                if m.received { "<-" } else { "->" },
                m.first_line()
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Configuration.

/// A configuration with one Spanish tenant: an outcall for every number (`_X.`) whose
/// call permission denies `_905XXXXXX`. SIPp's caller is `sipp`, an unknown caller, so only
/// the outcall tier applies: `600123456` is allowed, `905123456` denied.
fn config(listen: &[String], next_hop: &str) -> String {
    let listen: Vec<String> = listen.iter().map(|l| format!("\"{l}\"")).collect();
    format!(
        r#"[server]
listen = [{listen}]
next_hop = "{next_hop}"
record_route = true
reject_reason = '{REJECT_REASON}'

[brand]
name = "sipp-tests"

[[tenant]]
name = "acme"
country = "ES"
sources = ["127.0.0.0/8", "::1/128"]

  [[tenant.outcalls]]
  name = "everything"
  patterns = ["_X."]

  [[tenant.call_permissions]]
  name = "no-premium"
  extensions = ["_905XXXXXX"]
  outcalls = ["everything"]
"#,
        listen = listen.join(", ")
    )
}

/// A UDP socket standing in for the next hop: collects whatever reaches it.
struct Sink(UdpSocket);

impl Sink {
    fn bind(ip: IpAddr, port: u16) -> Sink {
        let socket = UdpSocket::bind((ip, port)).expect("bind the next hop's socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("set a read timeout");
        Sink(socket)
    }

    /// Every datagram received so far (waits 200 ms after the last one).
    fn received(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = [0u8; 65_535];
        while let Ok((n, _)) = self.0.recv_from(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        out
    }
}

// ---------------------------------------------------------------------------------------
// A test's setting: sipscreen on one port, a callee and a caller on two others.

#[derive(Clone, Copy, PartialEq)]
enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    /// SIPp's `-t`: one socket for every call.
    fn sipp(self) -> &'static str {
        match self {
            Transport::Udp => "u1",
            Transport::Tcp => "t1",
        }
    }

    fn scheme(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

struct Setup {
    dir: TempDir,
    ip: IpAddr,
    transport: Transport,
    /// sipscreen's port (UDP, plus TCP for a TCP test).
    proxy: u16,
    /// The next hop's port (a SIPp UAS or a [`Sink`]).
    uas: u16,
    /// The caller's port.
    uac: u16,
}

impl Setup {
    fn new(test: &str, ip: IpAddr, transport: Transport) -> Setup {
        sipp();
        Setup {
            dir: TempDir::new("sipp", test),
            ip,
            transport,
            proxy: free_port(ip),
            uas: free_port(ip),
            uac: free_port(ip),
        }
    }

    /// Starts sipscreen: it listens on UDP (where readiness is polled), and on TCP too for a
    /// TCP test; its next hop is the callee's port over the test's transport.
    fn sipscreen(&self) -> Sipscreen {
        let mut listen = vec![format!("udp:{}", host_port(self.ip, self.proxy))];
        if self.transport == Transport::Tcp {
            listen.push(format!("tcp:{}", host_port(self.ip, self.proxy)));
        }
        let next_hop = format!(
            "{}:{}",
            self.transport.scheme(),
            host_port(self.ip, self.uas)
        );
        Sipscreen::start(
            &self.dir,
            &config(&listen, &next_hop),
            SocketAddr::new(self.ip, self.proxy),
        )
    }

    /// Starts a SIPp UAS (`-sf FILE` or `-sn NAME`) on the callee's port for `calls` calls,
    /// and waits until it listens.
    fn callee(&self, scenario: &[&str], calls: u32, trace_msg: bool) -> Sipp {
        let mut args = strings(scenario);
        args.extend(strings(&["-t", self.transport.sipp(), "-i"]));
        args.extend([self.ip.to_string(), "-p".into(), self.uas.to_string()]);
        args.extend(["-m".into(), calls.to_string()]);
        let mut uas = Sipp::spawn(&self.dir, "uas", &args, trace_msg);
        uas.wait_bound(self.ip, self.uas, self.transport == Transport::Tcp);
        uas
    }

    /// Starts a SIPp UAC (`-sf FILE` or `-sn NAME`) through sipscreen, dialing `service`.
    fn caller(
        &self,
        name: &str,
        scenario: &[&str],
        port: u16,
        service: &str,
        extra: &[&str],
        trace_msg: bool,
    ) -> Sipp {
        let mut args = strings(scenario);
        args.push(host_port(self.ip, self.proxy));
        args.extend(strings(&["-t", self.transport.sipp(), "-i"]));
        args.extend([self.ip.to_string(), "-p".into(), port.to_string()]);
        args.extend(strings(&["-s", service]));
        args.extend(strings(extra));
        Sipp::spawn(&self.dir, name, &args, trace_msg)
    }

    /// One call of a custom UAC scenario through sipscreen, to its end.
    fn call(&self, file: &str, service: &str) -> SippRun {
        let file = scenario(file);
        self.caller(
            "uac",
            &["-sf", &file],
            self.uac,
            service,
            &["-m", "1"],
            true,
        )
        .finish(Duration::from_secs(20))
    }
}

// ---------------------------------------------------------------------------------------
// 1. Load: SIPp's built-in UAC and UAS, through the proxy.

fn load(test: &str, ip: IpAddr, transport: Transport) {
    let setup = Setup::new(test, ip, transport);
    let sipscreen = setup.sipscreen();
    let callee = setup.callee(&["-sn", "uas"], CALLS, false);
    let started = Instant::now();
    let (calls, rate) = (CALLS.to_string(), RATE.to_string());
    // No message trace for 200 calls: statistics, screen and errors tell.
    let caller = setup.caller(
        "uac",
        &["-sn", "uac"],
        setup.uac,
        ALLOWED,
        &["-m", &calls, "-r", &rate],
        false,
    );
    let caller = caller.finish(Duration::from_secs(45));
    let elapsed = started.elapsed();
    caller.assert_calls(CALLS.into());
    // The built-in UAS ends each call 4 s after the BYE (its timewait).
    let callee = callee.finish(Duration::from_secs(20));
    callee.assert_calls(CALLS.into());
    eprintln!("{test}: {CALLS} calls at {RATE} cps through sipscreen in {elapsed:?}");
    sipscreen.stop_ok();
}

#[test]
fn load_udp_ipv4() {
    load("load-udp", V4, Transport::Udp);
}

#[test]
fn load_tcp_ipv4() {
    load("load-tcp", V4, Transport::Tcp);
}

#[test]
fn load_udp_ipv6() {
    load("load-ipv6", V6, Transport::Udp);
}

// ---------------------------------------------------------------------------------------
// 2. A denied call: 403 with the Reason, ACK absorbed, no retransmission after the ACK.

#[test]
fn denied_call_gets_one_403_with_reason_and_nothing_reaches_the_next_hop() {
    let setup = Setup::new("denied", V4, Transport::Udp);
    let next_hop = Sink::bind(V4, setup.uas);
    let sipscreen = setup.sipscreen();
    // Both at once: the caller that ACKs, and the control that does not.
    let one = ["-m", "1"];
    let acking = setup.caller(
        "uac",
        &["-sf", &scenario("denied_uac.xml")],
        setup.uac,
        DENIED,
        &one,
        true,
    );
    let silent = setup.caller(
        "control",
        &["-sf", &scenario("denied_noack_uac.xml")],
        free_port(V4),
        DENIED,
        &one,
        true,
    );
    let acking = acking.finish(Duration::from_secs(20));
    let silent = silent.finish(Duration::from_secs(20));
    acking.assert_success();
    silent.assert_success();

    let msgs = acking.messages();
    let forbidden: Vec<&Logged> = msgs
        .iter()
        .filter(|m| m.received && m.is_response(403))
        .collect();
    assert_eq!(
        forbidden.len(),
        1,
        "exactly one 403 (not retransmitted after the ACK); the caller's messages:\n{}",
        summary(&msgs)
    );
    assert_eq!(
        forbidden[0].header("Reason").as_deref(),
        Some(REJECT_REASON),
        "the 403 carries the configured Reason:\n{}",
        forbidden[0].text
    );
    assert!(
        msgs.iter().any(|m| !m.received && m.is_request("ACK")),
        "the caller sent its ACK:\n{}",
        summary(&msgs)
    );

    // Without an ACK the 403 is retransmitted (Timer G): the log would have shown it.
    let control_msgs = silent.messages();
    let retransmitted = control_msgs
        .iter()
        .filter(|m| m.received && m.is_response(403))
        .count();
    assert!(
        retransmitted >= 2,
        "without an ACK, the 403 must be retransmitted over UDP; the control's messages:\n{}",
        summary(&control_msgs)
    );

    let leaked = next_hop.received();
    assert!(
        leaked.is_empty(),
        "nothing of a denied call may reach the next hop (no INVITE, no ACK), got:\n{}",
        leaked.join("\n----\n")
    );
    sipscreen.stop_ok();
}

// ---------------------------------------------------------------------------------------
// 3. CANCEL before the answer.

#[test]
fn cancel_before_answer_ends_in_487() {
    let setup = Setup::new("cancel", V4, Transport::Udp);
    let sipscreen = setup.sipscreen();
    let callee = setup.callee(&["-sf", &scenario("cancel_uas.xml")], 1, true);
    let caller = setup.call("cancel_uac.xml", ALLOWED);
    let callee = callee.finish(Duration::from_secs(20));
    caller.assert_calls(1);
    callee.assert_calls(1);

    let msgs = caller.messages();
    let terminated = msgs
        .iter()
        .filter(|m| m.received && m.is_response(487))
        .count();
    assert_eq!(
        terminated,
        1,
        "one 487, not retransmitted after the ACK:\n{}",
        summary(&msgs)
    );
    assert!(
        msgs.iter().any(|m| m.received
            && m.is_response(200)
            && m.header("CSeq").is_some_and(|c| c.ends_with("CANCEL"))),
        "the CANCEL is answered 200:\n{}",
        summary(&msgs)
    );

    // The callee saw the CANCEL and the ACK for its 487 come from sipscreen, on the branch
    // of the INVITE sipscreen sent it (RFC 3261 §9.1, §17.1.1.3).
    let msgs = callee.messages();
    let top_via = |method: &str| {
        msgs.iter()
            .find(|m| m.received && m.is_request(method))
            .and_then(|m| m.header("Via"))
            .unwrap_or_else(|| panic!("the callee got no {method}:\n{}", summary(&msgs)))
    };
    let invite = top_via("INVITE");
    assert!(invite.contains(BRANCH_PREFIX), "INVITE's top Via: {invite}");
    assert_eq!(top_via("CANCEL"), invite, "CANCEL on the INVITE's branch");
    assert_eq!(
        top_via("ACK"),
        invite,
        "ACK for the 487 on the INVITE's branch"
    );
    sipscreen.stop_ok();
}

// ---------------------------------------------------------------------------------------
// 4. In-dialog requests through the proxy, by Record-Route.

fn dialog(test: &str, transport: Transport) {
    let setup = Setup::new(test, V4, transport);
    let sipscreen = setup.sipscreen();
    let callee = setup.callee(&["-sf", &scenario("dialog_uas.xml")], 1, true);
    let caller = setup.call("dialog_uac.xml", ALLOWED);
    let callee = callee.finish(Duration::from_secs(20));
    caller.assert_calls(1);
    callee.assert_calls(1);

    let proxy = setup.proxy;
    let record_route = match transport {
        Transport::Udp => format!("<sip:127.0.0.1:{proxy};lr>"),
        Transport::Tcp => format!("<sip:127.0.0.1:{proxy};transport=tcp;lr>"),
    };
    let msgs = caller.messages();
    let ok = msgs
        .iter()
        .find(|m| {
            m.received && m.is_response(200) && m.header("CSeq").as_deref() == Some("1 INVITE")
        })
        .unwrap_or_else(|| panic!("no 200 for the INVITE:\n{}", summary(&msgs)));
    assert_eq!(
        ok.headers("Record-Route"),
        vec![record_route.clone()],
        "the 200 carries sipscreen's Record-Route:\n{}",
        ok.text
    );
    // The caller addressed its in-dialog requests to the callee, routed by sipscreen.
    let in_dialog = msgs.iter().filter(|m| {
        !m.received
            && !m.first_line().starts_with("SIP/2.0")
            && m.header("CSeq").as_deref() != Some("1 INVITE")
    });
    for m in in_dialog {
        assert_eq!(
            m.headers("Route"),
            vec![record_route.clone()],
            "the caller routes in-dialog requests by the route set:\n{}",
            m.text
        );
    }

    // Every request the callee got came through sipscreen: its Via on top, our branch.
    let msgs = callee.messages();
    let requests: Vec<&Logged> = msgs
        .iter()
        .filter(|m| m.received && !m.first_line().starts_with("SIP/2.0"))
        .collect();
    let methods: Vec<String> = requests
        .iter()
        .map(|m| {
            let cseq = m.header("CSeq").unwrap_or_default();
            format!(
                "{} ({cseq})",
                m.first_line().split(' ').next().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        methods,
        [
            "INVITE (1 INVITE)",
            "ACK (1 ACK)",
            "INVITE (2 INVITE)",
            "ACK (2 ACK)",
            "BYE (3 BYE)"
        ],
        "the callee's requests:\n{}",
        summary(&msgs)
    );
    let via = format!(
        "SIP/2.0/{} 127.0.0.1:{proxy};branch={BRANCH_PREFIX}",
        transport.scheme().to_ascii_uppercase()
    );
    for m in &requests {
        let top = m.header("Via").unwrap_or_default();
        assert!(
            top.starts_with(&via),
            "{} must come through sipscreen (top Via `{via}...`):\n{}",
            m.first_line(),
            m.text
        );
        assert_eq!(
            m.headers("Via").len(),
            2,
            "sipscreen's Via and the caller's:\n{}",
            m.text
        );
    }
    let contact = format!("sip:127.0.0.1:{}", setup.uas);
    for m in &requests[1..] {
        assert!(
            m.headers("Route").is_empty(),
            "sipscreen removes its own Route:\n{}",
            m.text
        );
        assert!(
            m.request_uri().starts_with(&contact),
            "in-dialog requests go to the callee's Contact:\n{}",
            m.text
        );
    }
    sipscreen.stop_ok();
}

#[test]
fn reinvite_and_bye_follow_record_route_through_the_proxy_udp() {
    dialog("dialog-udp", Transport::Udp);
}

#[test]
fn reinvite_and_bye_follow_record_route_through_the_proxy_tcp() {
    dialog("dialog-tcp", Transport::Tcp);
}

// ---------------------------------------------------------------------------------------
// 5. OPTIONS to sipscreen itself.

#[test]
fn options_to_the_proxy_is_answered_200_over_udp_and_tcp() {
    // TCP setting: sipscreen listens on UDP and TCP; the next hop is a UDP sink all the same.
    let setup = Setup::new("options", V4, Transport::Tcp);
    let next_hop = Sink::bind(V4, setup.uas);
    let config_text = config(
        &[
            format!("udp:127.0.0.1:{}", setup.proxy),
            format!("tcp:127.0.0.1:{}", setup.proxy),
        ],
        &format!("udp:127.0.0.1:{}", setup.uas),
    );
    let sipscreen = Sipscreen::start(&setup.dir, &config_text, SocketAddr::new(V4, setup.proxy));
    for transport in ["u1", "t1"] {
        let args = strings(&[
            "-sf",
            &scenario("options_uac.xml"),
            &format!("127.0.0.1:{}", setup.proxy),
            "-t",
            transport,
            "-i",
            "127.0.0.1",
            "-p",
            &setup.uac.to_string(),
            "-m",
            "1",
        ]);
        let run = Sipp::spawn(&setup.dir, &format!("options-{transport}"), &args, true)
            .finish(Duration::from_secs(20));
        run.assert_calls(1);
        let msgs = run.messages();
        assert!(
            msgs.iter().any(|m| m.received
                && m.is_response(200)
                && m.header("CSeq").is_some_and(|c| c.ends_with("OPTIONS"))),
            "OPTIONS over {transport} answered 200:\n{}",
            summary(&msgs)
        );
    }
    let leaked = next_hop.received();
    assert!(
        leaked.is_empty(),
        "OPTIONS to sipscreen itself is not forwarded, got:\n{}",
        leaked.join("\n----\n")
    );
    sipscreen.stop_ok();
}

// ---------------------------------------------------------------------------------------
// 6. A response with no Via left once ours is removed is for sipscreen, never forwarded.

#[test]
fn response_left_without_via_is_not_forwarded() {
    let setup = Setup::new("lone-via", V4, Transport::Udp);
    let sipscreen = setup.sipscreen();
    let callee = setup.callee(&["-sf", &scenario("lone_via_uas.xml")], 1, true);
    let caller = setup.call("lone_via_uac.xml", ALLOWED);
    let callee = callee.finish(Duration::from_secs(20));
    let sent = callee.messages();
    assert!(
        sent.iter()
            .any(|m| !m.received && m.is_response(486) && m.headers("Via").len() == 1),
        "the callee answered 486 with sipscreen's Via only:\n{}",
        summary(&sent)
    );
    let msgs = caller.messages();
    let stray: Vec<&Logged> = msgs
        .iter()
        .filter(|m| {
            m.received && m.first_line().starts_with("SIP/2.0") && m.header("Via").is_none()
        })
        .collect();
    assert!(
        stray.is_empty(),
        "RFC 3261 §16.7 item 3: a response with no Via left once sipscreen removes its own is \
         meant for sipscreen and must not be forwarded; the caller got:\n{}",
        stray
            .iter()
            .map(|m| m.text.as_str())
            .collect::<Vec<_>>()
            .join("\n----\n")
    );
    // The caller got sipscreen's own 486 instead, with its own Via, exactly once.
    let finals: Vec<&Logged> = msgs
        .iter()
        .filter(|m| m.received && m.is_response(486))
        .collect();
    assert_eq!(finals.len(), 1, "{}", summary(&msgs));
    assert_eq!(finals[0].headers("Via").len(), 1, "{}", finals[0].text);
    caller.assert_success();
    sipscreen.stop_ok();
}
