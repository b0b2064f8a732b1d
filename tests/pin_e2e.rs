//! The PIN flow on the wire (SPEC §4.5, §6): the built `sipscreen run` on loopback, a caller
//! (a SIPp UAC, or this test with plain UDP sockets) and a next hop (a SIPp UAS, or a socket
//! where nothing may arrive). Each test has its own configuration: one Spanish tenant, alice
//! (extension 1001) whose call permission `_00X.` has a password, so her international calls
//! are challenged; its own ports and its own `rtp_ports` range.
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
//! The harness is `tests/common`: every process is stopped by its PID, every wait is bounded,
//! sipscreen binds port 0, and each test works in its own temporary directory, kept and named
//! when the test fails. The `rtp_ports` range is four ports found free (and handed to no other
//! test of the run): sipscreen binds its prompt ports in it only when a call is challenged.

mod common;
use common::net::{bind_within, free_ports, udp_bound, NextHop, Silent};
use common::proxy::Sipscreen;
use common::sipp::{Logged, Sipp, SippCommand, SippRun};
use common::TempDir;
use std::collections::HashSet;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
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

fn config(next_hop: SocketAddr, rtp: (u16, u16), s: &Settings) -> String {
    format!(
        r#"[server]
listen = ["udp:127.0.0.1:0"]
next_hop = "udp:{next_hop}"
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

/// One test's world: sipscreen running, the next hop it forwards to (where the test puts a
/// SIPp UAS or a silent socket), and its directory.
struct World {
    proxy: Sipscreen,
    next_hop: NextHop,
    rtp: (u16, u16),
    dir: TempDir,
}

impl World {
    fn start(test: &str, settings: &Settings) -> World {
        let dir = TempDir::new("pin", test);
        let next_hop = NextHop::udp(LOOPBACK);
        // Four ports: two even ones for prompts.
        let lo = free_ports(LOOPBACK, 4);
        let rtp = (lo, lo + 3);
        let proxy = Sipscreen::start(&dir, &config(next_hop.addr(), rtp, settings));
        World {
            proxy,
            next_hop,
            rtp,
            dir,
        }
    }

    /// A SIPp caller of `tests/pin/{xml}`: one call from alice to `dialed`.
    fn caller(&self, name: &str, xml: &str, dialed: &str) -> SippCommand {
        SippCommand::new(name, LOOPBACK)
            .args(["-sf", &common::scenario("pin", xml), "-s", dialed])
            .args(["-key", "caller", ALICE, "-m", "1"])
            .args([self.proxy.udp().to_string()])
            .trace_msg(true)
            .timeout(WAIT)
    }

    /// Runs a SIPp caller to its end: one call from alice to `dialed`.
    fn call(&self, name: &str, xml: &str, dialed: &str) -> SippRun {
        self.caller(name, xml, dialed).run(&self.dir, WAIT)
    }

    /// Starts the SIPp UAS of `tests/pin/uas.xml` at the next hop, for one call.
    fn uas(&self) -> Sipp {
        SippCommand::new("uas", LOOPBACK)
            .args(["-sf", &common::scenario("pin", "uas.xml"), "-m", "1"])
            .port(self.next_hop.lend())
            .trace_msg(true)
            .timeout(WAIT)
            .spawn(&self.dir)
    }

    /// A socket at the next hop, where nothing may arrive.
    fn silent_next_hop(&self) -> Silent {
        self.next_hop.silent("next hop")
    }

    /// Stops sipscreen (SIGTERM: it drains and must exit 0) and checks it never panicked.
    fn finish(self) {
        let log = self.proxy.stop_ok();
        assert!(!log.contains("panicked"), "sipscreen panicked:\n{log}");
    }
}

// ---------------------------------------------------------------------------------------
// SIPp.

fn copy_dtmf_captures(dir: &TempDir) {
    for name in ["dtmf_2833_1.pcap", "dtmf_2833_pound.pcap"] {
        fs::copy(common::scenario("captures", name), dir.path(name))
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
        !udp_bound(LOOPBACK, port),
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
    let mut uac = world
        .caller("uac", "uac_cancel.xml", NUMBER)
        .spawn(&world.dir);
    // While the call is up, note which prompt ports are open.
    let mut open = HashSet::new();
    let deadline = Instant::now() + WAIT;
    while uac.running() && Instant::now() < deadline {
        for port in (world.rtp.0..=world.rtp.1).filter(|p| p % 2 == 0) {
            if udp_bound(LOOPBACK, port) {
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
    let socket = bind_within(SocketAddr::new(LOOPBACK, port), Duration::from_secs(2))
        .unwrap_or_else(|e| {
            panic!("the prompt's RTP port {port} is still in use after the CANCEL: {e}")
        });
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
    let log = world.proxy.log();
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
    let proxy = world.proxy.udp();
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
