//! End-to-end tests with real SIPp peers (SPEC §4.8, §5): the built `sipscreen run` sits
//! between a SIPp UAC and a SIPp UAS (or a plain socket standing in for the next hop), all on
//! loopback. SIPp (Debian package `sip-tester`) is required: `scripts/test` installs it, and
//! these tests fail, never skip, without it.
//!
//! Scenarios live in `tests/sipp/`. The harness is `tests/common`: every process a test
//! starts is stopped by its PID, every wait is bounded, sipscreen binds port 0, and each test
//! works in its own temporary directory (kept, and named in the failure, when the test fails).

mod common;
use common::net::NextHop;
use common::proxy::Sipscreen;
use common::sipp::{summary, Logged, Sipp, SippCommand, SippRun};
use common::TempDir;
use std::cell::OnceCell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
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
/// SIPp's own time limit (`-timeout`) in this suite.
const SIPP_TIMEOUT: Duration = Duration::from_secs(30);

const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

/// A scenario file of `tests/sipp/`.
fn scenario(name: &str) -> String {
    common::scenario("sipp", name)
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

// ---------------------------------------------------------------------------------------
// A test's setting: sipscreen, a callee at its next hop, callers.

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

struct Setup {
    dir: TempDir,
    ip: IpAddr,
    transport: Transport,
    /// The next hop (a SIPp UAS or a silent socket), over the test's transport.
    next_hop: NextHop,
    /// sipscreen's UDP address (and TCP, at the same port, for a TCP test), once started.
    proxy: OnceCell<SocketAddr>,
}

impl Setup {
    fn new(test: &str, ip: IpAddr, transport: Transport) -> Setup {
        Setup {
            dir: TempDir::new("sipp", test),
            ip,
            transport,
            next_hop: match transport {
                Transport::Udp => NextHop::udp(ip),
                Transport::Tcp => NextHop::tcp(ip),
            },
            proxy: OnceCell::new(),
        }
    }

    /// Starts sipscreen: it listens on UDP, and on TCP too for a TCP test (both on port 0:
    /// one port); its next hop is the callee's over the test's transport.
    fn sipscreen(&self) -> Sipscreen {
        let any_port = SocketAddr::new(self.ip, 0);
        let mut listen = vec![format!("udp:{any_port}")];
        if self.transport == Transport::Tcp {
            listen.push(format!("tcp:{any_port}"));
        }
        let next_hop = format!("{}:{}", self.transport.scheme(), self.next_hop.addr());
        let sipscreen = Sipscreen::start(&self.dir, &config(&listen, &next_hop));
        self.proxy
            .set(sipscreen.udp())
            .expect("one sipscreen per test");
        sipscreen
    }

    fn proxy(&self) -> SocketAddr {
        *self.proxy.get().expect("sipscreen is started first")
    }

    /// Starts a SIPp UAS (`-sf FILE` or `-sn NAME`) at the next hop for `calls` calls, and
    /// waits until it listens.
    fn callee(&self, scenario: &[&str], calls: u32, trace_msg: bool) -> Sipp {
        let uas = SippCommand::new("uas", self.ip)
            .args(scenario)
            .args(["-t", self.transport.sipp(), "-m", &calls.to_string()])
            .port(self.next_hop.lend())
            .trace_msg(trace_msg)
            .timeout(SIPP_TIMEOUT);
        uas.spawn(&self.dir)
    }

    /// Starts a SIPp UAC (`-sf FILE` or `-sn NAME`) through sipscreen, dialing `service`.
    fn caller(
        &self,
        name: &str,
        scenario: &[&str],
        service: &str,
        extra: &[&str],
        trace_msg: bool,
    ) -> Sipp {
        let uac = SippCommand::new(name, self.ip)
            .args(scenario)
            .args([self.proxy().to_string()])
            .args(["-t", self.transport.sipp(), "-s", service])
            .args(extra)
            .trace_msg(trace_msg)
            .timeout(SIPP_TIMEOUT);
        uac.spawn(&self.dir)
    }

    /// One call of a custom UAC scenario through sipscreen, to its end.
    fn call(&self, file: &str, service: &str) -> SippRun {
        let file = scenario(file);
        self.caller("uac", &["-sf", &file], service, &["-m", "1"], true)
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
    let next_hop = setup.next_hop.silent("next hop");
    let sipscreen = setup.sipscreen();
    // Both at once: the caller that ACKs, and the control that does not.
    let one = ["-m", "1"];
    let acking = setup.caller(
        "uac",
        &["-sf", &scenario("denied_uac.xml")],
        DENIED,
        &one,
        true,
    );
    let silent = setup.caller(
        "control",
        &["-sf", &scenario("denied_noack_uac.xml")],
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

    next_hop.assert_nothing("a denied call (no INVITE, no ACK)");
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

    let proxy = setup.proxy().port();
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
    let contact = format!("sip:127.0.0.1:{}", setup.next_hop.addr().port());
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
    // sipscreen listens on UDP and TCP (one port); the next hop is a UDP socket all the same.
    let setup = Setup::new("options", V4, Transport::Udp);
    let next_hop = setup.next_hop.silent("next hop");
    let config_text = config(
        &["udp:127.0.0.1:0".to_owned(), "tcp:127.0.0.1:0".to_owned()],
        &format!("udp:{}", setup.next_hop.addr()),
    );
    let sipscreen = Sipscreen::start(&setup.dir, &config_text);
    for (transport, listener) in [("u1", "udp"), ("t1", "tcp")] {
        let run = SippCommand::new(&format!("options-{transport}"), V4)
            .args(["-sf", &scenario("options_uac.xml")])
            .args([sipscreen.listener(listener).to_string()])
            .args(["-t", transport, "-m", "1"])
            .trace_msg(true)
            .timeout(SIPP_TIMEOUT)
            .run(&setup.dir, Duration::from_secs(20));
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
    next_hop.assert_nothing("OPTIONS to sipscreen itself is not forwarded");
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
