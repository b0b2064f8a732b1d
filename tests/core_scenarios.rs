//! Scenario tests of the sans-I/O core with a simulated clock: no sockets, no sleeps.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sipscreen::config::Config;
use sipscreen::proxy::{MediaCommand, Peer, Proxy, Transmit, Transport, TIMER_C};

const CONFIG: &str = r#"
[server]
listen = ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"]
next_hop = "udp:127.0.0.1:5070"
trusted_peers = ["127.0.0.9/32"]
reject_reason = "Q.850;cause=21"

[pin]
attempts = 3
dial_prefix = "**"
rtp_ports = "41000-41010"
lockout = { failures = 4, window_s = 600, lock_s = 900 }

[brand]
name = "b"

[[tenant]]
name = "acme"
country = "ES"
sources = ["127.0.0.1/32"]

  [[tenant.users]]
  name = "alice"
  extension = "1001"

  [[tenant.users]]
  name = "boss"
  extension = "1009"

  [[tenant.call_permissions]]
  name = "no-premium"
  extensions = ["_90[57]XXXXXX"]
  users = ["alice"]

  [[tenant.call_permissions]]
  name = "pin-intl"
  extensions = ["_00X."]
  password = "1234"
  users = ["alice"]
"#;

const UAC: &str = "127.0.0.1:5061";
const UAS: &str = "127.0.0.1:5070";

fn peer(addr: &str) -> Peer {
    Peer {
        transport: Transport::Udp,
        addr: addr.parse().unwrap(),
    }
}

struct World {
    proxy: Proxy,
    now: Instant,
    /// RTP sent from PIN prompt ports, set aside by [`World::sent`].
    rtp: Vec<Transmit>,
}

impl World {
    fn new() -> Self {
        Self::with(CONFIG)
    }

    fn with(text: &str) -> Self {
        let config = Config::from_toml(text, "test.toml", None).unwrap();
        Self {
            proxy: Proxy::new(config.proxy, config.policy),
            now: Instant::now(),
            rtp: Vec::new(),
        }
    }

    fn recv(&mut self, from: &str, msg: &str) {
        self.proxy
            .handle_message(self.now, peer(from), msg.as_bytes());
    }

    /// Advances the clock to `d` later, firing every timer due on the way, in order.
    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(t) = self.proxy.poll_timeout().filter(|t| *t <= end) {
            self.now = t.max(self.now);
            self.proxy.handle_timeout(self.now);
        }
        self.now = end;
    }

    /// Every SIP message sent since the last call, as (destination, text); RTP from PIN
    /// prompt ports is set aside in `rtp`.
    fn sent(&mut self) -> Vec<(SocketAddr, String)> {
        let mut sip = Vec::new();
        while let Some(t) = self.proxy.poll_transmit() {
            if t.from.port() != 5060 {
                self.rtp.push(t);
            } else {
                sip.push((t.to.addr, String::from_utf8(t.bytes).unwrap()));
            }
        }
        sip
    }
}

fn invite(dialed: &str, from_user: &str, branch: &str, extra: &str) -> String {
    format!(
        "INVITE sip:{dialed}@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch={branch};rport\r\nFrom: <sip:{from_user}@127.0.0.1>;tag=a1\r\nTo: <sip:{dialed}@127.0.0.1>\r\nCall-ID: call-{branch}\r\nCSeq: 1 INVITE\r\nContact: <sip:{from_user}@127.0.0.1:5061>\r\nMax-Forwards: 70\r\n{extra}X-Unknown: kept as is\r\nContent-Type: application/sdp\r\nContent-Length: 4\r\n\r\nv=0\n"
    )
}

/// A response from the UAS to the forwarded request `req`, with `to_tag`.
fn answer(req: &str, code: u16, reason: &str, to_tag: &str) -> String {
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for line in req.split("\r\n").skip(1).take_while(|l| !l.is_empty()) {
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("via:")
            || lower.starts_with("from:")
            || lower.starts_with("call-id:")
            || lower.starts_with("cseq:")
        {
            out.push_str(line);
            out.push_str("\r\n");
        } else if lower.starts_with("to:") {
            out.push_str(line);
            if !to_tag.is_empty() && !lower.contains("tag=") {
                out.push_str(&format!(";tag={to_tag}"));
            }
            out.push_str("\r\n");
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

fn status(msg: &str) -> u16 {
    msg.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn allowed_invite_is_forwarded_and_answered() {
    let mut w = World::new();
    w.recv(UAC, &invite("612345678", "alice", "z9hG4bK-1", ""));
    let out = w.sent();
    assert_eq!(out.len(), 2, "{out:#?}");
    assert_eq!(
        (out[0].0.to_string(), status(&out[0].1)),
        (UAC.to_owned(), 100)
    );
    let (to, fwd) = &out[1];
    assert_eq!(to.to_string(), UAS);
    let lines: Vec<&str> = fwd.split("\r\n").collect();
    assert_eq!(lines[0], "INVITE sip:612345678@127.0.0.1:5060 SIP/2.0");
    assert!(
        lines[1].starts_with("Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKsS"),
        "{fwd}"
    );
    assert_eq!(lines[2], "Record-Route: <sip:127.0.0.1:5060;lr>");
    assert_eq!(
        lines[3],
        "Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1;rport=5061;received=127.0.0.1"
    );
    assert!(fwd.contains("Max-Forwards: 69\r\n"));
    assert!(fwd.contains("X-Unknown: kept as is\r\n") && fwd.ends_with("\r\n\r\nv=0\n"));

    // A retransmitted INVITE is absorbed: the 100 is sent again, nothing goes downstream.
    w.recv(UAC, &invite("612345678", "alice", "z9hG4bK-1", ""));
    let again = w.sent();
    assert_eq!(again.len(), 1);
    assert_eq!(
        (again[0].0.to_string(), status(&again[0].1)),
        (UAC.to_owned(), 100)
    );

    // Timer A retransmits downstream until a response comes.
    w.advance(Duration::from_millis(600));
    let retx = w.sent();
    assert_eq!(retx.len(), 1);
    assert_eq!(retx[0].1, *fwd);

    // 100 from downstream is not forwarded; 180 and 200 are, without our Via.
    w.recv(UAS, &answer(fwd, 100, "Trying", ""));
    assert!(w.sent().is_empty());
    w.recv(UAS, &answer(fwd, 180, "Ringing", "b2"));
    let ringing = w.sent();
    assert_eq!(ringing.len(), 1);
    assert_eq!(status(&ringing[0].1), 180);
    assert!(
        !ringing[0].1.contains("z9hG4bKsS"),
        "our Via must be gone: {}",
        ringing[0].1
    );
    assert!(ringing[0].1.contains("branch=z9hG4bK-1"));
    w.advance(Duration::from_secs(10));
    assert!(
        w.sent().is_empty(),
        "no retransmission after a provisional response"
    );
    w.recv(UAS, &answer(fwd, 200, "OK", "b2"));
    let ok = w.sent();
    assert_eq!(
        (ok.len(), status(&ok[0].1), ok[0].0.to_string()),
        (1, 200, UAC.to_owned())
    );
    // A retransmitted 200 is relayed too (RFC 6026 Accepted state).
    w.recv(UAS, &answer(fwd, 200, "OK", "b2"));
    assert_eq!(w.sent().len(), 1);
    // Then everything ends, and no timer is left behind.
    w.advance(Duration::from_secs(300));
    assert!(w.proxy.is_idle(), "{:?}", w.proxy.transactions());
}

#[test]
fn denied_invite_gets_403_retransmitted_until_acked() {
    let mut w = World::new();
    w.recv(UAC, &invite("905123456", "alice", "z9hG4bK-2", ""));
    let out = w.sent();
    assert_eq!(out.len(), 2);
    assert_eq!(status(&out[0].1), 100);
    let forbidden = &out[1].1;
    assert_eq!(status(forbidden), 403);
    assert!(
        forbidden.contains("Reason: Q.850;cause=21\r\n"),
        "{forbidden}"
    );
    assert!(
        !forbidden.contains("no-premium"),
        "rule names are never sent"
    );
    assert!(forbidden.contains("To: <sip:905123456@127.0.0.1>;tag="));
    // Timer G retransmits it.
    w.advance(Duration::from_millis(510));
    let retx = w.sent();
    assert_eq!(retx.len(), 1);
    assert_eq!(retx[0].1, *forbidden);
    // The ACK stops the retransmissions and is not forwarded.
    let to_line = forbidden
        .split("\r\n")
        .find(|l| l.starts_with("To:"))
        .unwrap();
    let ack = format!(
        "ACK sip:905123456@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-2;rport\r\nFrom: <sip:alice@127.0.0.1>;tag=a1\r\n{to_line}\r\nCall-ID: call-z9hG4bK-2\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    w.recv(UAC, &ack);
    assert!(w.sent().is_empty());
    w.advance(Duration::from_secs(40));
    assert!(w.sent().is_empty(), "no retransmission after the ACK");
    assert!(w.proxy.is_idle());
}

#[test]
fn unacknowledged_403_stops_at_timer_h() {
    let mut w = World::new();
    w.recv(UAC, &invite("905123456", "alice", "z9hG4bK-3", ""));
    w.sent();
    w.advance(Duration::from_secs(40));
    let retx = w.sent();
    // T1, 2T1, 4T1, then T2 until 64*T1: 0.5+1+2+4+4+4+4+4+4+4 < 32.
    assert!((7..=11).contains(&retx.len()), "{}", retx.len());
    assert!(w.proxy.is_idle());
}

#[test]
fn cancel_racing_a_200() {
    let mut w = World::new();
    w.recv(UAC, &invite("612345678", "alice", "z9hG4bK-4", ""));
    let fwd = w.sent().pop().unwrap().1;
    w.recv(UAS, &answer(&fwd, 180, "Ringing", "b4"));
    w.sent();
    let cancel = "CANCEL sip:612345678@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-4;rport\r\nFrom: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:612345678@127.0.0.1>\r\nCall-ID: call-z9hG4bK-4\r\nCSeq: 1 CANCEL\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    w.recv(UAC, cancel);
    let out = w.sent();
    assert_eq!(out.len(), 2, "{out:#?}");
    assert_eq!(
        (out[0].0.to_string(), status(&out[0].1)),
        (UAC.to_owned(), 200)
    );
    let (to, down) = &out[1];
    assert_eq!(to.to_string(), UAS);
    assert!(down.starts_with("CANCEL sip:612345678@127.0.0.1:5060 SIP/2.0\r\n"));
    let branch = |m: &str| {
        m.split("branch=")
            .nth(1)
            .unwrap()
            .split([';', '\r'])
            .next()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        branch(down),
        branch(&fwd),
        "CANCEL carries the INVITE's branch"
    );
    // The 200 for the INVITE wins the race: it is relayed; the 200 for the CANCEL is absorbed.
    w.recv(UAS, &answer(&fwd, 200, "OK", "b4"));
    let ok = w.sent();
    assert_eq!((ok.len(), status(&ok[0].1)), (1, 200));
    w.recv(UAS, &answer(down, 200, "OK", ""));
    assert!(w.sent().is_empty());
}

#[test]
fn cancel_before_answer_ends_in_487() {
    let mut w = World::new();
    w.recv(UAC, &invite("612345678", "alice", "z9hG4bK-5", ""));
    let fwd = w.sent().pop().unwrap().1;
    let cancel = "CANCEL sip:612345678@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-5;rport\r\nFrom: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:612345678@127.0.0.1>\r\nCall-ID: call-z9hG4bK-5\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n";
    w.recv(UAC, cancel);
    // No provisional yet: the CANCEL waits for one (RFC 3261 §9.1).
    let out = w.sent();
    assert_eq!(out.len(), 1);
    assert_eq!(status(&out[0].1), 200);
    w.recv(UAS, &answer(&fwd, 180, "Ringing", "b5"));
    let out = w.sent();
    assert_eq!(out.len(), 2, "{out:#?}");
    assert!(out
        .iter()
        .any(|(to, m)| to.to_string() == UAS && m.starts_with("CANCEL ")));
    w.recv(UAS, &answer(&fwd, 487, "Request Terminated", "b5"));
    let out = w.sent();
    // The 487 goes upstream and the hop-by-hop ACK downstream.
    assert!(
        out.iter()
            .any(|(to, m)| to.to_string() == UAC && status(m) == 487),
        "{out:#?}"
    );
    assert!(
        out.iter().any(|(to, m)| to.to_string() == UAS
            && m.starts_with("ACK sip:612345678@127.0.0.1:5060 SIP/2.0")),
        "{out:#?}"
    );
}

#[test]
fn max_forwards_zero_gets_483_and_loops_482() {
    let mut w = World::new();
    w.recv(
        UAC,
        &invite("612345678", "alice", "z9hG4bK-6", "")
            .replace("Max-Forwards: 70", "Max-Forwards: 0"),
    );
    let out = w.sent();
    assert_eq!(
        out.iter().map(|(_, m)| status(m)).collect::<Vec<_>>(),
        [483]
    );
    // A request that comes back to us with our own Via: a loop.
    w.recv(UAC, &invite("612345678", "alice", "z9hG4bK-7", ""));
    let fwd = w.sent().pop().unwrap().1;
    w.recv(UAS, &fwd);
    let out = w.sent();
    assert_eq!(
        out.iter().map(|(_, m)| status(m)).collect::<Vec<_>>(),
        [482],
        "{out:#?}"
    );
}

#[test]
fn response_for_unknown_transaction_is_dropped() {
    let mut w = World::new();
    let stray = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKsS0000000000000000.1\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-x\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: stray\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    w.recv(UAS, stray);
    assert!(w.sent().is_empty());
}

#[test]
fn no_answer_gives_408_upstream() {
    let mut w = World::new();
    w.recv(UAC, &invite("612345678", "alice", "z9hG4bK-8", ""));
    w.sent();
    w.advance(Duration::from_secs(33));
    let out = w.sent();
    let upstream: Vec<u16> = out
        .iter()
        .filter(|(to, _)| to.to_string() == UAC)
        .map(|(_, m)| status(m))
        .collect();
    // The 408 and, Timer G running, its first retransmission.
    assert_eq!(upstream, [408, 408], "{out:#?}");
    // Timer A doubled each time: 0.5, 1, 2, 4, 8, 16 s.
    assert_eq!(
        out.iter().filter(|(to, _)| to.to_string() == UAS).count(),
        6
    );
}

#[test]
fn timer_c_cancels_a_ringing_branch() {
    let mut w = World::new();
    w.recv(UAC, &invite("612345678", "alice", "z9hG4bK-9", ""));
    let fwd = w.sent().pop().unwrap().1;
    w.recv(UAS, &answer(&fwd, 180, "Ringing", "b9"));
    w.sent();
    w.advance(TIMER_C + Duration::from_secs(1));
    let out = w.sent();
    assert!(
        out.iter()
            .any(|(to, m)| to.to_string() == UAS && m.starts_with("CANCEL ")),
        "{out:#?}"
    );
}

#[test]
fn non_invite_retransmits_then_times_out() {
    let mut w = World::new();
    let bye = "BYE sip:612345678@127.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-10\r\nFrom: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:612345678@127.0.0.1>;tag=b1\r\nCall-ID: c10\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    w.recv(UAC, bye);
    let out = w.sent();
    assert_eq!(out.len(), 1, "no 100 for a non-INVITE");
    assert_eq!(out[0].0.to_string(), UAS);
    w.advance(Duration::from_secs(33));
    let out = w.sent();
    // Timer E: 0.5, 1, 2, 4, then every 4 s until Timer F at 32 s.
    let retx = out.iter().filter(|(to, _)| to.to_string() == UAS).count();
    assert!((9..=11).contains(&retx), "{retx}");
    let up: Vec<u16> = out
        .iter()
        .filter(|(to, _)| to.to_string() == "127.0.0.1:5061")
        .map(|(_, m)| status(m))
        .collect();
    // (retransmitted until the caller acknowledges it)
    assert!(!up.is_empty() && up.iter().all(|c| *c == 408), "{up:?}");
}

#[test]
fn in_dialog_requests_follow_the_route_or_the_dialog() {
    let mut w = World::new();
    w.recv(UAC, &invite("612345678", "alice", "z9hG4bK-11", ""));
    w.sent();
    // SIPp-style BYE: Request-URI is us, no Route: goes to the dialog's next hop.
    let bye = "BYE sip:612345678@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-12\r\nFrom: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:612345678@127.0.0.1>;tag=b1\r\nCall-ID: call-z9hG4bK-11\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    w.recv(UAC, bye);
    let out = w.sent();
    assert_eq!(out[0].0.to_string(), UAS);
    // With our Route on top: popped, and the Request-URI followed.
    let routed = "BYE sip:uas@127.0.0.1:5080 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-13\r\nRoute: <sip:127.0.0.1:5060;lr>\r\nFrom: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:612345678@127.0.0.1>;tag=b1\r\nCall-ID: other\r\nCSeq: 3 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    w.recv(UAC, routed);
    let out = w.sent();
    assert_eq!(out[0].0.to_string(), "127.0.0.1:5080");
    assert!(
        !out[0].1.contains("Route:"),
        "our Route is removed: {}",
        out[0].1
    );
}

#[test]
fn options_to_us_is_answered() {
    let mut w = World::new();
    let opt = "OPTIONS sip:127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-14\r\nFrom: <sip:mon@127.0.0.1>;tag=m\r\nTo: <sip:127.0.0.1>\r\nCall-ID: ka\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 0\r\nContent-Length: 0\r\n\r\n";
    w.recv(UAC, opt);
    let out = w.sent();
    assert_eq!(
        out.iter().map(|(_, m)| status(m)).collect::<Vec<_>>(),
        [200]
    );
}

#[test]
fn p_asserted_identity_is_believed_from_trusted_peers_only() {
    let mut w = World::new();
    // From an untrusted address, PAI claims to be the boss: ignored (alice's rights deny),
    // and removed before forwarding.
    let pai = "P-Asserted-Identity: <sip:1009@127.0.0.1>\r\n";
    w.recv(UAC, &invite("905123456", "alice", "z9hG4bK-15", pai));
    let out = w.sent();
    assert_eq!(status(&out[1].1), 403);
    w.recv(UAC, &invite("612345678", "alice", "z9hG4bK-16", pai));
    let fwd = w.sent().pop().unwrap().1;
    assert!(!fwd.contains("P-Asserted-Identity"), "{fwd}");
    // From the trusted PBX, the same PAI makes the caller the boss: allowed, PAI kept.
    w.recv(
        "127.0.0.9:5060",
        &invite("905123456", "alice", "z9hG4bK-17", pai)
            .replace("127.0.0.1:5061", "127.0.0.9:5060"),
    );
    let out = w.sent();
    let fwd = &out.last().unwrap().1;
    assert!(fwd.starts_with("INVITE "), "{out:#?}");
    assert!(fwd.contains("P-Asserted-Identity: <sip:1009@127.0.0.1>"));
}

#[test]
fn malformed_requests_get_400_and_are_not_forwarded() {
    let mut w = World::new();
    let bad =
        invite("612345678", "alice", "z9hG4bK-18", "").replace("CSeq: 1 INVITE", "CSeq: 1 BYE");
    w.recv(UAC, &bad);
    let out = w.sent();
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].0.to_string(), status(&out[0].1)),
        (UAC.to_owned(), 400)
    );
    w.recv(UAC, "garbage\r\n\r\n");
    assert!(w.sent().is_empty());
}

#[test]
fn shutting_down_refuses_new_calls_but_finishes_old_ones() {
    let mut w = World::new();
    w.recv(UAC, &invite("612345678", "alice", "z9hG4bK-19", ""));
    let fwd = w.sent().pop().unwrap().1;
    w.proxy.stop_accepting();
    w.recv(UAC, &invite("612345679", "alice", "z9hG4bK-20", ""));
    let out = w.sent();
    assert_eq!(
        out.iter().map(|(_, m)| status(m)).collect::<Vec<_>>(),
        [503]
    );
    w.recv(UAS, &answer(&fwd, 200, "OK", "b"));
    assert_eq!(w.sent().len(), 1);
}

#[test]
fn diversion_from_a_trusted_pbx_applies_the_forwarders_rights() {
    let mut w = World::new();
    let div = "Diversion: <sip:1001@pbx.example.com>;reason=unconditional;counter=1\r\n";
    // From the trusted PBX: alice forwarded the call, her rights deny premium numbers.
    let from_pbx = invite("905123456", "+34911111111", "z9hG4bK-21", div)
        .replace("127.0.0.1:5061", "127.0.0.9:5060");
    w.recv("127.0.0.9:5060", &from_pbx);
    let out = w.sent();
    assert_eq!(
        out.iter().map(|(_, m)| status(m)).collect::<Vec<_>>(),
        [100, 403],
        "{out:#?}"
    );
    // The same Diversion from a phone is ignored for rights: the unknown caller is allowed.
    w.recv(UAC, &invite("905123456", "+34911111111", "z9hG4bK-22", div));
    let out = w.sent();
    assert!(
        out.iter()
            .any(|(to, m)| to.to_string() == UAS && m.starts_with("INVITE ")),
        "{out:#?}"
    );
}

/// boss calls alice (1001); alice's phone answers `contacts` with a 302.
fn forwarded_by_alices_phone(w: &mut World, branch: &str, contacts: &str) -> String {
    w.recv(UAC, &invite("1001", "boss", branch, ""));
    let fwd = w.sent().pop().unwrap().1;
    let moved = answer(&fwd, 302, "Moved Temporarily", "p1").replace(
        "Content-Length: 0",
        &format!("Contact: {contacts}\r\nContent-Length: 0"),
    );
    w.recv(UAS, &moved);
    fwd
}

#[test]
fn a_302_is_followed_with_the_forwarding_users_rights() {
    let mut w = World::new();
    forwarded_by_alices_phone(
        &mut w,
        "z9hG4bK-23",
        "<sip:905123456@127.0.0.1:5070>, <sip:612345678@127.0.0.1:5070>;q=0.5",
    );
    let out = w.sent();
    // The 302 is acknowledged downstream and not relayed; the premium number is denied to
    // alice and skipped; the mobile is tried.
    assert!(
        out.iter()
            .any(|(to, m)| to.to_string() == UAS && m.starts_with("ACK ")),
        "{out:#?}"
    );
    assert!(!out.iter().any(|(to, _)| to.to_string() == UAC), "{out:#?}");
    let retry = out
        .iter()
        .find(|(_, m)| m.starts_with("INVITE "))
        .expect("a new INVITE");
    assert!(
        retry
            .1
            .starts_with("INVITE sip:612345678@127.0.0.1:5070 SIP/2.0\r\n"),
        "{}",
        retry.1
    );
    // The callee answers: the caller gets the 200 as usual.
    w.recv(UAS, &answer(&retry.1, 200, "OK", "m1"));
    let out = w.sent();
    assert_eq!(
        out.iter()
            .map(|(to, m)| (to.to_string(), status(m)))
            .collect::<Vec<_>>(),
        [(UAC.to_owned(), 200)]
    );
}

#[test]
fn a_302_to_denied_targets_only_gives_403() {
    let mut w = World::new();
    forwarded_by_alices_phone(
        &mut w,
        "z9hG4bK-24",
        "<sip:905123456@127.0.0.1:5070>, <sip:907000000@127.0.0.1:5070>",
    );
    let out = w.sent();
    let up: Vec<u16> = out
        .iter()
        .filter(|(to, _)| to.to_string() == UAC)
        .map(|(_, m)| status(m))
        .collect();
    assert_eq!(up, [403], "{out:#?}");
    assert!(
        !out.iter().any(|(_, m)| m.starts_with("INVITE ")),
        "{out:#?}"
    );
}

#[test]
fn a_failed_forward_target_moves_to_the_next_then_relays_the_last_failure() {
    let mut w = World::new();
    forwarded_by_alices_phone(
        &mut w,
        "z9hG4bK-25",
        "<sip:612345678@127.0.0.1:5070>;q=0.9, <sip:622222222@127.0.0.1:5070>;q=0.1",
    );
    let first = w
        .sent()
        .into_iter()
        .find(|(_, m)| m.starts_with("INVITE "))
        .unwrap()
        .1;
    assert!(first.starts_with("INVITE sip:612345678@"));
    w.recv(UAS, &answer(&first, 486, "Busy Here", "x1"));
    let second = w
        .sent()
        .into_iter()
        .find(|(_, m)| m.starts_with("INVITE "))
        .unwrap()
        .1;
    assert!(second.starts_with("INVITE sip:622222222@"), "{second}");
    w.recv(UAS, &answer(&second, 480, "Temporarily Unavailable", "x2"));
    let up: Vec<u16> = w
        .sent()
        .iter()
        .filter(|(to, _)| to.to_string() == UAC)
        .map(|(_, m)| status(m))
        .collect();
    assert_eq!(up, [480]);
}

const OFFER: &str = "v=0\r\no=u 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n";

fn invite_with_sdp(dialed: &str, branch: &str, sdp: &str) -> String {
    invite(dialed, "alice", branch, "").replace(
        "Content-Length: 4\r\n\r\nv=0\n",
        &format!("Content-Length: {}\r\n\r\n{sdp}", sdp.len()),
    )
}

/// The call is held: 100, then 183 with our SDP; returns our RTP port and the 183.
fn held(w: &mut World, branch: &str) -> (u16, String) {
    w.recv(UAC, &invite_with_sdp("0033612345678", branch, OFFER));
    let out = w.sent();
    let progress = out
        .iter()
        .find(|(_, m)| status(m) == 183)
        .unwrap_or_else(|| panic!("{out:#?}"))
        .1
        .clone();
    assert!(
        progress.contains("Content-Type: application/sdp\r\n"),
        "{progress}"
    );
    let port = progress
        .split("m=audio ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        w.proxy.poll_media(),
        Some(MediaCommand::Open(SocketAddr::new(
            "127.0.0.1".parse().unwrap(),
            port
        )))
    );
    (port, progress)
}

/// Where the caller of the scenarios sends RTP from (its offer's address).
fn caller_rtp() -> SocketAddr {
    "127.0.0.1:6000".parse().unwrap()
}

fn event(digit: u8, ts: u32) -> Vec<u8> {
    sipscreen::media::rtp::write(false, 101, ts as u16, ts, 77, &[digit, 0x80 | 10, 0, 160])
}

#[test]
fn pin_by_rtp_events_forwards_the_call() {
    let mut w = World::new();
    let (port, progress) = held(&mut w, "z9hG4bK-30");
    assert!(
        progress.contains("m=audio") && progress.contains(" 0 101\r\n"),
        "{progress}"
    );
    // The prompt plays: RTP from our port to the caller's, 20 ms apart.
    w.advance(Duration::from_millis(100));
    w.sent();
    let rtp = std::mem::take(&mut w.rtp);
    assert_eq!(rtp.len(), 6, "frames at 0, 20, 40, 60, 80 and 100 ms");
    assert!(rtp
        .iter()
        .all(|t| t.from.port() == port && t.to.addr.port() == 6000));
    for (i, d) in [1u8, 2, 3, 4, 11].into_iter().enumerate() {
        for _ in 0..3 {
            w.proxy
                .handle_rtp(w.now, port, caller_rtp(), &event(d, 1000 + 800 * i as u32));
        }
    }
    let out = w.sent();
    let fwd = out
        .iter()
        .find(|(to, m)| to.to_string() == UAS && m.starts_with("INVITE "))
        .unwrap_or_else(|| panic!("{out:#?}"));
    assert!(
        fwd.1.starts_with("INVITE sip:0033612345678@"),
        "the dialed number, not a PIN"
    );
    assert_eq!(
        w.proxy.poll_media(),
        Some(MediaCommand::Close(port)),
        "the RTP port is released"
    );
    // The callee answers as usual.
    w.recv(UAS, &answer(&fwd.1, 200, "OK", "callee"));
    assert_eq!(
        w.sent().iter().map(|(_, m)| status(m)).collect::<Vec<_>>(),
        [200]
    );
}

#[test]
fn pin_by_sip_info_and_wrong_pins() {
    let mut w = World::new();
    let (_, progress) = held(&mut w, "z9hG4bK-31");
    let tag = progress
        .split("tag=")
        .nth(2)
        .unwrap()
        .split('\r')
        .next()
        .unwrap()
        .to_owned();
    let info = |digit: &str, cseq: u32| {
        format!("INFO sip:127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-i{cseq}\r\nFrom: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:0033612345678@127.0.0.1>;tag={tag}\r\nCall-ID: call-z9hG4bK-31\r\nCSeq: {cseq} INFO\r\nMax-Forwards: 70\r\nContent-Type: application/dtmf-relay\r\nContent-Length: {}\r\n\r\nSignal={digit}\r\nDuration=160\r\n", 22 + digit.len())
    };
    let mut cseq = 2;
    for d in ["9", "9", "#"] {
        w.recv(UAC, &info(d, cseq));
        cseq += 1;
    }
    let out = w.sent();
    assert!(
        out.iter().filter(|(_, m)| status(m) == 200).count() == 3,
        "each INFO answered 200: {out:#?}"
    );
    assert!(!out
        .iter()
        .any(|(to, m)| to.to_string() == UAS && m.starts_with("INVITE ")));
    for d in ["1", "2", "3", "4", "#"] {
        w.recv(UAC, &info(d, cseq));
        cseq += 1;
    }
    let out = w.sent();
    assert!(
        out.iter()
            .any(|(to, m)| to.to_string() == UAS && m.starts_with("INVITE ")),
        "right PIN at the second attempt"
    );
}

#[test]
fn three_wrong_pins_give_403_and_cancel_gives_487() {
    let mut w = World::new();
    let (port, _) = held(&mut w, "z9hG4bK-32");
    for attempt in 0..3u32 {
        for (i, d) in [5u8, 11].into_iter().enumerate() {
            w.proxy.handle_rtp(
                w.now,
                port,
                caller_rtp(),
                &event(d, 10_000 * attempt + 1000 * i as u32),
            );
        }
    }
    let out = w.sent();
    let up: Vec<u16> = out
        .iter()
        .filter(|(to, _)| to.to_string() == UAC)
        .map(|(_, m)| status(m))
        .collect();
    assert_eq!(up.last(), Some(&403), "{up:?}");
    assert_eq!(w.proxy.poll_media(), Some(MediaCommand::Close(port)));

    let (port, _) = held(&mut w, "z9hG4bK-33");
    let cancel = "CANCEL sip:0033612345678@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-33;rport\r\nFrom: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:0033612345678@127.0.0.1>\r\nCall-ID: call-z9hG4bK-33\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n";
    w.recv(UAC, cancel);
    let codes: Vec<u16> = w.sent().iter().map(|(_, m)| status(m)).collect();
    assert!(codes.contains(&200) && codes.contains(&487), "{codes:?}");
    assert_eq!(w.proxy.poll_media(), Some(MediaCommand::Close(port)));
}

#[test]
fn dial_prefix_pin_and_lockout() {
    let mut w = World::new();
    w.recv(
        UAC,
        &invite("**1234*0033612345678", "alice", "z9hG4bK-40", ""),
    );
    let out = w.sent();
    let fwd = out
        .iter()
        .find(|(to, m)| to.to_string() == UAS && m.starts_with("INVITE "))
        .unwrap_or_else(|| panic!("{out:#?}"));
    assert!(
        fwd.1
            .starts_with("INVITE sip:0033612345678@127.0.0.1:5060 SIP/2.0\r\n"),
        "{}",
        fwd.1
    );
    assert!(
        !fwd.1.contains("**1234*"),
        "the PIN never leaves: {}",
        fwd.1
    );
    // Wrong dial-prefix PINs count: the fourth failure locks alice out...
    for i in 0..4 {
        w.recv(
            UAC,
            &invite(
                "**9999*0033612345678",
                "alice",
                &format!("z9hG4bK-4{}", i + 1),
                "",
            ),
        );
        assert_eq!(
            w.sent().iter().map(|(_, m)| status(m)).collect::<Vec<_>>(),
            [100, 403]
        );
    }
    // ...and then even the right PIN is refused, without a prompt.
    w.recv(
        UAC,
        &invite("**1234*0033612345678", "alice", "z9hG4bK-46", ""),
    );
    assert_eq!(
        w.sent().iter().map(|(_, m)| status(m)).collect::<Vec<_>>(),
        [100, 403]
    );
    w.recv(UAC, &invite_with_sdp("0033612345678", "z9hG4bK-47", OFFER));
    assert_eq!(
        w.sent().iter().map(|(_, m)| status(m)).collect::<Vec<_>>(),
        [100, 403]
    );
    // Until the lock ends.
    w.advance(Duration::from_secs(901));
    w.sent();
    w.recv(
        UAC,
        &invite("**1234*0033612345678", "alice", "z9hG4bK-48", ""),
    );
    assert!(w
        .sent()
        .iter()
        .any(|(to, m)| to.to_string() == UAS && m.starts_with("INVITE ")));
}

#[test]
fn an_offer_without_g711_gets_488() {
    let mut w = World::new();
    let g729 = OFFER
        .replace("RTP/AVP 0 101", "RTP/AVP 18")
        .replace("a=rtpmap:0 PCMU/8000\r\n", "");
    w.recv(UAC, &invite_with_sdp("0033612345678", "z9hG4bK-50", &g729));
    assert_eq!(
        w.sent().iter().map(|(_, m)| status(m)).collect::<Vec<_>>(),
        [100, 488]
    );
}

#[test]
fn the_transaction_limit_counts_requests_in_flight_only() {
    let limited = CONFIG.replace("[brand]", "[limits]\nmax_transactions = 2\n\n[brand]");
    let mut w = World::with(&limited);
    // Answered calls linger 32 s in their transactions (Timer L) but are not in flight.
    for i in 0..5 {
        let branch = format!("z9hG4bK-lim{i}");
        w.recv(UAC, &invite("612345678", "alice", &branch, ""));
        let fwd = w.sent().pop().unwrap().1;
        assert!(fwd.starts_with("INVITE "), "call {i}: {fwd}");
        w.recv(UAS, &answer(&fwd, 200, "OK", "t"));
        w.sent();
    }
    // Two unanswered calls fill the limit; the third gets 503.
    for i in 5..7 {
        w.recv(
            UAC,
            &invite("612345678", "alice", &format!("z9hG4bK-lim{i}"), ""),
        );
        assert!(w
            .sent()
            .iter()
            .any(|(to, m)| to.to_string() == UAS && m.starts_with("INVITE ")));
    }
    w.recv(UAC, &invite("612345678", "alice", "z9hG4bK-lim7", ""));
    assert_eq!(
        w.sent().iter().map(|(_, m)| status(m)).collect::<Vec<_>>(),
        [503]
    );
}

// ---------------------------------------------------------------------------------------
// No way around the screen (SPEC §4.1, §5.1, §6): admission, digest, dialogs, responses,
// the PIN only the caller can type.

const SECURE: &str = r#"
[server]
listen = ["udp:127.0.0.1:5060"]
next_hop = "udp:127.0.0.1:5070"
trusted_peers = ["127.0.0.9/32"]

[limits]
max_dialogs = 3
dialog_timeout_s = 600
per_source = { requests_per_s = 5, burst = 40, ban_s = 60 }

[pin]
attempts = 2
first_digit_timeout_s = 10
inter_digit_timeout_s = 5
rtp_ports = "41000-41010"

[brand]
name = "b"

[[tenant]]
name = "acme"
country = "ES"
domains = ["acme.example"]
sources = ["127.0.0.1/32"]

  [[tenant.users]]
  name = "alice"
  extension = "1001"
  auth_password = "alice-pw"

  [[tenant.users]]
  name = "boss"
  extension = "1009"
  auth_username = "the-boss"
  auth_password = "boss-pw"

  [[tenant.call_permissions]]
  name = "no-intl"
  extensions = ["_00X."]
  users = ["alice"]

  [[tenant.call_permissions]]
  name = "pin-premium"
  extensions = ["_90X."]
  password = "1234"
  users = ["alice"]
"#;

/// An address in no tenant's sources and not a trusted peer.
const STRANGER: &str = "127.0.0.2:5061";

/// An INVITE from `from_user`@acme.example to `dialed`, sent by `via` (the stranger's or the
/// phone's address), with `extra` headers.
fn call_from(via: &str, dialed: &str, from_user: &str, branch: &str, extra: &str) -> String {
    format!(
        "INVITE sip:{dialed}@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch={branch};rport\r\nFrom: <sip:{from_user}@acme.example>;tag=f-{branch}\r\nTo: <sip:{dialed}@acme.example>\r\nCall-ID: call-{branch}\r\nCSeq: 1 INVITE\r\nContact: <sip:{from_user}@{via}>\r\nMax-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n"
    )
}

fn header_values<'m>(msg: &'m str, name: &str) -> Vec<&'m str> {
    msg.split("\r\n")
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

fn param<'v>(challenge: &'v str, name: &str) -> &'v str {
    let at = challenge.find(&format!("{name}=")).unwrap() + name.len() + 1;
    let rest = &challenge[at..];
    match rest.strip_prefix('"') {
        Some(q) => &q[..q.find('"').unwrap()],
        None => rest.split([',', ' ']).next().unwrap(),
    }
}

/// The Proxy-Authorization a phone computes for a 407's first challenge of `alg`.
fn authorization(
    challenge_407: &str,
    alg: sipscreen::proxy::auth::Algorithm,
    user: &str,
    password: &str,
    uri: &str,
    nc: u32,
) -> String {
    use sipscreen::proxy::auth::{response, Credentials};
    let challenge = header_values(challenge_407, "Proxy-Authenticate")
        .into_iter()
        .find(|c| c.contains(&format!("algorithm={}", alg.name())))
        .expect("a challenge of this algorithm");
    let (realm, nonce) = (param(challenge, "realm"), param(challenge, "nonce"));
    let nc = format!("{nc:08x}");
    let c = Credentials {
        username: user,
        realm,
        nonce,
        uri,
        response: "",
        algorithm: Some(alg.name()),
        cnonce: "c0ffee",
        qop: "auth",
        nc: &nc,
    };
    let ha1 = alg.hash(&format!("{user}:{realm}:{password}"));
    let r = response(alg, &ha1, &c, "INVITE");
    format!(
        "Proxy-Authorization: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{r}\", algorithm={}, cnonce=\"c0ffee\", qop=auth, nc={nc}\r\n",
        alg.name()
    )
}

#[test]
fn a_stranger_claiming_a_user_is_challenged_and_nothing_reaches_a_next_hop() {
    let mut w = World::with(SECURE);
    w.recv(
        STRANGER,
        &call_from(STRANGER, "0033612345678", "boss", "z9hG4bK-s1", ""),
    );
    let out = w.sent();
    assert_eq!(out.len(), 1, "{out:#?}");
    assert_eq!(out[0].0.to_string(), STRANGER);
    assert_eq!(status(&out[0].1), 407);
    let challenges = header_values(&out[0].1, "Proxy-Authenticate");
    assert_eq!(challenges.len(), 2, "{}", out[0].1);
    assert!(challenges[0].contains("algorithm=SHA-256") && challenges[0].contains("qop=\"auth\""));
    assert!(challenges[1].contains("algorithm=MD5"));
    assert_eq!(
        param(challenges[0], "realm"),
        "acme.example",
        "realm: the first domain"
    );

    // A tenant nobody may authenticate with refuses outright: 403, with no hint.
    let nobody = SECURE
        .replace("  auth_password = \"alice-pw\"\n", "")
        .replace("  auth_password = \"boss-pw\"\n", "");
    let mut w = World::with(&nobody);
    w.recv(
        STRANGER,
        &call_from(STRANGER, "0033612345678", "boss", "z9hG4bK-s2", ""),
    );
    let out = w.sent();
    assert_eq!(out.len(), 1, "{out:#?}");
    assert_eq!(status(&out[0].1), 403);
    assert!(!out[0].1.contains("boss") || out[0].1.contains("From:"));

    // Other methods are not a way around it either.
    let message = call_from(STRANGER, "1009", "boss", "z9hG4bK-s3", "")
        .replace("INVITE sip:", "MESSAGE sip:")
        .replace("CSeq: 1 INVITE", "CSeq: 1 MESSAGE");
    w.recv(STRANGER, &message);
    let out = w.sent();
    assert_eq!(out.len(), 1, "{out:#?}");
    assert_eq!(status(&out[0].1), 403);
}

#[test]
fn digest_credentials_decide_with_the_authenticated_users_rights() {
    use sipscreen::proxy::auth::Algorithm;
    let mut w = World::with(SECURE);
    let uri = "sip:0033612345678@127.0.0.1:5060";
    // From says boss, the credentials are alice's: alice's rights apply (no international).
    w.recv(
        STRANGER,
        &call_from(STRANGER, "0033612345678", "boss", "z9hG4bK-d1", ""),
    );
    let challenge = w.sent().remove(0).1;
    let creds = authorization(&challenge, Algorithm::Md5, "alice", "alice-pw", uri, 1);
    w.recv(
        STRANGER,
        &call_from(STRANGER, "0033612345678", "boss", "z9hG4bK-d2", &creds),
    );
    let out = w.sent();
    let codes: Vec<u16> = out.iter().map(|(_, m)| status(m)).collect();
    assert_eq!(codes, [100, 403], "{out:#?}");
    // The boss's own credentials (SHA-256, by auth_username) open the trunk.
    let creds = authorization(&challenge, Algorithm::Sha256, "the-boss", "boss-pw", uri, 2);
    w.recv(
        STRANGER,
        &call_from(STRANGER, "0033612345678", "alice", "z9hG4bK-d3", &creds),
    );
    let out = w.sent();
    let fwd = out
        .iter()
        .find(|(to, _)| to.to_string() == UAS)
        .unwrap_or_else(|| panic!("{out:#?}"));
    assert!(
        !fwd.1.contains("Proxy-Authorization"),
        "credentials consumed here go no further: {}",
        fwd.1
    );
    // The same credentials again (same nonce, same nc) are a replay.
    w.recv(
        STRANGER,
        &call_from(STRANGER, "0033612345678", "alice", "z9hG4bK-d4", &creds),
    );
    let out = w.sent();
    assert_eq!(
        out.iter().map(|(_, m)| status(m)).collect::<Vec<_>>(),
        [407]
    );
}

#[test]
fn wrong_credentials_get_407_again_and_count_toward_the_source_limit() {
    use sipscreen::proxy::auth::Algorithm;
    let mut w = World::with(SECURE);
    let uri = "sip:0033612345678@127.0.0.1:5060";
    w.recv(
        STRANGER,
        &call_from(STRANGER, "0033612345678", "boss", "z9hG4bK-w0", ""),
    );
    let challenge = w.sent().remove(0).1;
    let mut answered = 0;
    for i in 1..=10 {
        let creds = authorization(&challenge, Algorithm::Md5, "the-boss", "guess", uri, i);
        w.recv(
            STRANGER,
            &call_from(
                STRANGER,
                "0033612345678",
                "boss",
                &format!("z9hG4bK-w{i}"),
                &creds,
            ),
        );
        let out = w.sent();
        if out.is_empty() {
            break;
        }
        assert_eq!(status(&out[0].1), 407);
        answered += 1;
    }
    // burst 40, 1 per request, 10 more per wrong password: banned after 3 or 4 guesses.
    assert!((3..=4).contains(&answered), "{answered} guesses answered");
    // Banned: even a right password is ignored until ban_s has passed.
    let creds = authorization(&challenge, Algorithm::Md5, "the-boss", "boss-pw", uri, 20);
    w.recv(
        STRANGER,
        &call_from(STRANGER, "0033612345678", "boss", "z9hG4bK-w20", &creds),
    );
    assert!(w.sent().is_empty());
    // Others are served meanwhile.
    w.recv(UAC, &call_from(UAC, "1009", "alice", "z9hG4bK-w21", ""));
    assert!(w.sent().iter().any(|(to, _)| to.to_string() == UAS));
}

#[test]
fn a_stale_nonce_gets_stale_true_and_the_retry_passes() {
    use sipscreen::proxy::auth::Algorithm;
    let mut w = World::with(SECURE);
    let uri = "sip:1001@127.0.0.1:5060";
    w.recv(
        STRANGER,
        &call_from(STRANGER, "1001", "boss", "z9hG4bK-n0", ""),
    );
    let old = w.sent().remove(0).1;
    w.advance(Duration::from_secs(301));
    let creds = authorization(&old, Algorithm::Md5, "the-boss", "boss-pw", uri, 1);
    w.recv(
        STRANGER,
        &call_from(STRANGER, "1001", "boss", "z9hG4bK-n1", &creds),
    );
    let out = w.sent();
    assert_eq!(out.len(), 1);
    assert_eq!(status(&out[0].1), 407);
    let fresh = out[0].1.clone();
    assert!(header_values(&fresh, "Proxy-Authenticate")
        .iter()
        .all(|c| c.contains("stale=true")));
    let creds = authorization(&fresh, Algorithm::Md5, "the-boss", "boss-pw", uri, 1);
    w.recv(
        STRANGER,
        &call_from(STRANGER, "1001", "boss", "z9hG4bK-n2", &creds),
    );
    assert!(w.sent().iter().any(|(to, _)| to.to_string() == UAS));
}

#[test]
fn a_to_tag_is_not_a_pass() {
    let mut w = World::with(SECURE);
    // An invented dialog towards a listener of the attacker's choice: 481, nothing sent there.
    let reinvite = call_from(STRANGER, "+33612345678", "alice", "z9hG4bK-t1", "")
        .replace(
            "INVITE sip:+33612345678@127.0.0.1:5060",
            "INVITE sip:+33612345678@127.0.0.5:31999",
        )
        .replace(
            "To: <sip:+33612345678@acme.example>",
            "To: <sip:+33612345678@acme.example>;tag=made-up",
        );
    w.recv(STRANGER, &reinvite);
    let out = w.sent();
    assert_eq!(out.len(), 1, "{out:#?}");
    assert_eq!(
        (out[0].0.to_string().as_str(), status(&out[0].1)),
        (STRANGER, 481)
    );
    // A MESSAGE with a To tag, likewise; a stray ACK with a body is dropped.
    let message = reinvite
        .replace("INVITE sip:", "MESSAGE sip:")
        .replace("CSeq: 1 INVITE", "CSeq: 2 MESSAGE");
    w.recv(STRANGER, &message);
    assert_eq!(
        w.sent().iter().map(|(_, m)| status(m)).collect::<Vec<_>>(),
        [481]
    );
    let ack = reinvite
        .replace("INVITE sip:", "ACK sip:")
        .replace("CSeq: 1 INVITE", "CSeq: 1 ACK")
        .replace(
            "Content-Length: 0\r\n\r\n",
            &format!("Content-Length: 1400\r\n\r\n{}", "x".repeat(1400)),
        );
    w.recv(STRANGER, &ack);
    assert!(w.sent().is_empty(), "a stray ACK is dropped");
    // The same from a tenant source, for a dialog sipscreen does not know (after a restart):
    // forwarded as before.
    let known = reinvite.replace(STRANGER, UAC);
    w.recv(UAC, &known);
    assert!(w
        .sent()
        .iter()
        .any(|(to, _)| to.to_string() == "127.0.0.5:31999"));
}

/// A call from the phones' network answered 180 then 200 by the UAS: the forwarded INVITE.
fn answered_call(w: &mut World, branch: &str, dialed: &str) -> String {
    w.recv(UAC, &call_from(UAC, dialed, "alice", branch, ""));
    let out = w.sent();
    let fwd = out
        .iter()
        .find(|(to, _)| to.to_string() == UAS)
        .unwrap_or_else(|| panic!("{out:#?}"))
        .1
        .clone();
    w.recv(UAS, &answer(&fwd, 180, "Ringing", &format!("b-{branch}")));
    w.recv(UAS, &answer(&fwd, 200, "OK", &format!("b-{branch}")));
    w.sent();
    fwd
}

/// A request in the dialog of `branch`'s call, from the caller (`up`) or the callee.
fn in_dialog(method: &str, branch: &str, from_caller: bool, ruri: &str, cseq: u32) -> String {
    let (via, from, to) = if from_caller {
        (
            UAC,
            format!("<sip:alice@acme.example>;tag=f-{branch}"),
            format!("<sip:x@acme.example>;tag=b-{branch}"),
        )
    } else {
        (
            UAS,
            format!("<sip:x@acme.example>;tag=b-{branch}"),
            format!("<sip:alice@acme.example>;tag=f-{branch}"),
        )
    };
    format!(
        "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch=z9hG4bK-{method}-{cseq}-{branch};rport\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: call-{branch}\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
}

#[test]
fn dialogs_are_made_by_answers_bound_to_both_ends_and_end_with_bye() {
    let mut w = World::with(SECURE);
    answered_call(&mut w, "g1", "1009");
    assert_eq!(w.proxy.dialogs(), 1);
    // A re-INVITE from the caller whose Request-URI names a trunk still reaches the callee.
    w.recv(
        UAC,
        &in_dialog("INVITE", "g1", true, "sip:+33612345678@127.0.0.5:31999", 2),
    );
    let out = w.sent();
    assert!(
        out.iter()
            .any(|(to, m)| to.to_string() == UAS && m.starts_with("INVITE ")),
        "{out:#?}"
    );
    assert!(!out
        .iter()
        .any(|(to, _)| to.to_string() == "127.0.0.5:31999"));
    // BYE from the callee reaches the caller; its 200 ends the dialog.
    w.recv(
        UAS,
        &in_dialog("BYE", "g1", false, "sip:alice@127.0.0.1:5060", 3),
    );
    let bye = w
        .sent()
        .into_iter()
        .find(|(to, m)| to.to_string() == UAC && m.starts_with("BYE "))
        .expect("BYE to the caller")
        .1;
    w.recv(UAC, &answer(&bye, 200, "OK", ""));
    w.sent();
    assert_eq!(w.proxy.dialogs(), 0);
    // Now the dialog is gone: the stranger's copy of it gets 481.
    let late = in_dialog("INVITE", "g1", true, "sip:1009@127.0.0.1:5060", 4).replace(UAC, STRANGER);
    w.recv(STRANGER, &late);
    assert_eq!(
        w.sent().iter().map(|(_, m)| status(m)).collect::<Vec<_>>(),
        [481]
    );
}

#[test]
fn early_dialogs_end_with_their_invite_and_dialogs_expire_without_requests() {
    let mut w = World::with(SECURE);
    w.recv(UAC, &call_from(UAC, "1009", "alice", "e1", ""));
    let fwd = w
        .sent()
        .into_iter()
        .find(|(to, _)| to.to_string() == UAS)
        .unwrap()
        .1;
    w.recv(UAS, &answer(&fwd, 180, "Ringing", "b-e1"));
    w.sent();
    assert_eq!(w.proxy.dialogs(), 1, "an early dialog");
    w.recv(UAS, &answer(&fwd, 486, "Busy Here", "b-e1"));
    w.sent();
    assert_eq!(w.proxy.dialogs(), 0, "the INVITE failed");

    answered_call(&mut w, "e2", "1009");
    w.advance(Duration::from_secs(300));
    w.recv(
        UAC,
        &in_dialog("INFO", "e2", true, "sip:x@127.0.0.1:5070", 2),
    );
    w.sent();
    w.advance(Duration::from_secs(599));
    assert_eq!(w.proxy.dialogs(), 1, "a request keeps it alive");
    w.advance(Duration::from_secs(2));
    assert_eq!(w.proxy.dialogs(), 0, "600 s without a request");
}

#[test]
fn beyond_max_dialogs_new_calls_get_503_and_recover() {
    let mut w = World::with(SECURE);
    for b in ["m1", "m2", "m3"] {
        answered_call(&mut w, b, "1009");
    }
    w.recv(UAC, &call_from(UAC, "1009", "alice", "m4", ""));
    let out = w.sent();
    assert_eq!(out.len(), 1);
    assert_eq!(status(&out[0].1), 503);
    assert!(out[0].1.contains("Retry-After: "));
    // The calls in flight are untouched; one ends, and a new call goes through.
    w.recv(
        UAC,
        &in_dialog("BYE", "m1", true, "sip:x@127.0.0.1:5070", 2),
    );
    let bye = w
        .sent()
        .into_iter()
        .find(|(to, _)| to.to_string() == UAS)
        .unwrap()
        .1;
    w.recv(UAS, &answer(&bye, 200, "OK", ""));
    w.sent();
    w.recv(UAC, &call_from(UAC, "1009", "alice", "m5", ""));
    assert!(w.sent().iter().any(|(to, _)| to.to_string() == UAS));
}

#[test]
fn a_forged_response_from_elsewhere_is_dropped() {
    let mut w = World::with(SECURE);
    w.recv(UAC, &call_from(UAC, "1009", "alice", "f1", ""));
    let fwd = w
        .sent()
        .into_iter()
        .find(|(to, _)| to.to_string() == UAS)
        .unwrap()
        .1;
    w.recv("127.0.0.7:5060", &answer(&fwd, 486, "Busy Here", "evil"));
    assert!(w.sent().is_empty(), "the forged 486 reaches nobody");
    w.recv(UAS, &answer(&fwd, 180, "Ringing", "b-f1"));
    w.recv(UAS, &answer(&fwd, 200, "OK", "b-f1"));
    let up: Vec<u16> = w.sent().iter().map(|(_, m)| status(m)).collect();
    assert_eq!(up, [180, 200]);
}

#[test]
fn one_digit_and_silence_get_the_prompt_again_then_403() {
    let mut w = World::with(SECURE);
    let invite = call_from(UAC, "905123456", "alice", "p1", "").replace(
        "Content-Length: 0\r\n\r\n",
        &format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{OFFER}",
            OFFER.len()
        ),
    );
    w.recv(UAC, &invite);
    let out = w.sent();
    assert!(out.iter().any(|(_, m)| status(m) == 183), "{out:#?}");
    let port = match w.proxy.poll_media() {
        Some(MediaCommand::Open(a)) => a.port(),
        other => panic!("{other:?}"),
    };
    // One digit right after the 183, then nothing: the inter-digit timeout (5 s) fires on
    // time, and the prompt plays again.
    w.advance(Duration::from_millis(300));
    w.proxy
        .handle_rtp(w.now, port, caller_rtp(), &event(1, 500));
    w.sent();
    w.rtp.clear();
    w.advance(Duration::from_millis(5_400));
    let sip = w.sent();
    assert!(
        !w.rtp.is_empty(),
        "the prompt again after the inter-digit timeout"
    );
    assert!(sip.is_empty(), "{sip:#?}");
    // Silence again: the first-digit timeout after the prompt, and the attempts are spent.
    w.advance(Duration::from_secs(12));
    let up: Vec<u16> = w.sent().iter().map(|(_, m)| status(m)).collect();
    // (retransmitted until the caller acknowledges it)
    assert!(!up.is_empty() && up.iter().all(|c| *c == 403), "{up:?}");
}

#[test]
fn digits_from_another_address_are_ignored_and_lock_nobody_out() {
    let mut w = World::with(SECURE);
    let stranger_rtp: SocketAddr = "127.0.0.3:7000".parse().unwrap();
    for round in 0..3u32 {
        let b = format!("x{round}");
        let invite = call_from(UAC, "905123456", "alice", &b, "").replace(
            "Content-Length: 0\r\n\r\n",
            &format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{OFFER}",
                OFFER.len()
            ),
        );
        w.recv(UAC, &invite);
        w.sent();
        let port = std::iter::from_fn(|| w.proxy.poll_media())
            .find_map(|m| match m {
                MediaCommand::Open(a) => Some(a.port()),
                MediaCommand::Close(_) => None,
            })
            .expect("a prompt port");
        for (i, d) in [9u8, 9, 11].into_iter().enumerate() {
            w.proxy.handle_rtp(
                w.now,
                port,
                stranger_rtp,
                &event(d, 100 * round + 10 * i as u32),
            );
        }
        assert!(w.sent().is_empty(), "nothing happens to the call");
        // The caller's own right PIN still goes through.
        for (i, d) in [1u8, 2, 3, 4, 11].into_iter().enumerate() {
            w.proxy.handle_rtp(
                w.now,
                port,
                caller_rtp(),
                &event(d, 5000 + 1000 * round + 100 * i as u32),
            );
        }
        let out = w.sent();
        assert!(
            out.iter()
                .any(|(to, m)| to.to_string() == UAS && m.starts_with("INVITE ")),
            "{out:#?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Every transaction ends (SPEC §7).

/// An INVITE from the phones' network to 1009, answered 180 and then never again.
fn ringing_forever(w: &mut World, branch: &str) -> String {
    w.recv(UAC, &call_from(UAC, "1009", "alice", branch, ""));
    let fwd = w
        .sent()
        .into_iter()
        .find(|(to, _)| to.to_string() == UAS)
        .unwrap()
        .1;
    w.recv(UAS, &answer(&fwd, 180, "Ringing", &format!("b-{branch}")));
    w.sent();
    fwd
}

#[test]
fn ringing_then_silence_ends_in_cancel_then_408_and_leaves_nothing() {
    let mut w = World::with(SECURE);
    ringing_forever(&mut w, "c1");
    w.advance(Duration::from_secs(179));
    assert!(w.sent().is_empty());
    w.advance(Duration::from_secs(2));
    let out = w.sent();
    assert!(
        out.iter()
            .any(|(to, m)| to.to_string() == UAS && m.starts_with("CANCEL ")),
        "Timer C (invite_timeout_s) cancels the branch: {out:#?}"
    );
    // Neither the INVITE nor the CANCEL is ever answered: 64×T1 later the caller gets 408.
    w.advance(Duration::from_secs(40));
    let up: Vec<u16> = w
        .sent()
        .iter()
        .filter(|(to, _)| to.to_string() == UAC)
        .map(|(_, m)| status(m))
        .collect();
    // (retransmitted until the caller acknowledges it)
    assert!(!up.is_empty() && up.iter().all(|c| *c == 408), "{up:?}");
    w.advance(Duration::from_secs(60));
    assert!(w.proxy.is_idle(), "{:?}", w.proxy.transactions());
    assert_eq!(
        w.proxy.dialogs(),
        0,
        "the early dialog ended with its INVITE"
    );
    assert_eq!(w.proxy.poll_timeout(), None, "no timer left behind");
}

#[test]
fn a_callers_cancel_always_gets_its_487() {
    let mut w = World::with(SECURE);
    ringing_forever(&mut w, "c2");
    let caller_cancel = call_from(UAC, "1009", "alice", "c2", "")
        .replace("INVITE sip:", "CANCEL sip:")
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    w.recv(UAC, &caller_cancel);
    let out = w.sent();
    assert!(out
        .iter()
        .any(|(to, m)| to.to_string() == UAC && status(m) == 200));
    assert!(out
        .iter()
        .any(|(to, m)| to.to_string() == UAS && m.starts_with("CANCEL ")));
    // The branch never answers: the caller still gets 487, not 408.
    w.advance(Duration::from_secs(40));
    let up: Vec<u16> = w
        .sent()
        .iter()
        .filter(|(to, _)| to.to_string() == UAC)
        .map(|(_, m)| status(m))
        .collect();
    assert!(!up.is_empty() && up.iter().all(|c| *c == 487), "{up:?}");
    w.advance(Duration::from_secs(60));
    assert!(w.proxy.is_idle());
    assert_eq!(w.proxy.dialogs(), 0);
}

#[test]
fn ten_thousand_silent_branches_leave_no_timer_transaction_or_dialog() {
    let mut w = World::with(&SECURE.replace("max_dialogs = 3", "max_dialogs = 20000"));
    for i in 0..10_000 {
        ringing_forever(&mut w, &format!("k{i}"));
    }
    assert_eq!(w.proxy.dialogs(), 10_000);
    w.advance(Duration::from_secs(400));
    w.sent();
    assert!(w.proxy.is_idle(), "{:?}", w.proxy.transactions());
    assert_eq!(w.proxy.dialogs(), 0);
    assert_eq!(w.proxy.poll_timeout(), None);
}

#[test]
fn at_the_transaction_limit_calls_in_flight_still_end() {
    let mut w = World::with(&SECURE.replace("[limits]\n", "[limits]\nmax_transactions = 2\n"));
    answered_call(&mut w, "q1", "1009");
    // Two calls waiting for an answer fill the table: a new call gets 503...
    for b in ["q2", "q3"] {
        w.recv(UAC, &call_from(UAC, "1009", "alice", b, ""));
    }
    w.sent();
    w.recv(UAC, &call_from(UAC, "1009", "alice", "q4", ""));
    let out = w.sent();
    assert_eq!(
        out.iter().map(|(_, m)| status(m)).collect::<Vec<_>>(),
        [503]
    );
    // ...but the call already up can still hang up.
    w.recv(
        UAC,
        &in_dialog("BYE", "q1", true, "sip:x@127.0.0.1:5070", 2),
    );
    let out = w.sent();
    assert!(
        out.iter()
            .any(|(to, m)| to.to_string() == UAS && m.starts_with("BYE ")),
        "{out:#?}"
    );
}

// ---------------------------------------------------------------------------------------
// What an attacker's second look found, each door closed.

#[test]
fn a_method_a_pbx_may_read_as_invite_is_refused() {
    let mut w = World::with(SECURE);
    for name in ["invite", "INV", "Invite"] {
        let msg = call_from(UAC, "0033612345678", "alice", &format!("lk-{name}"), "")
            .replacen("INVITE sip:", &format!("{name} sip:"), 1)
            .replace("CSeq: 1 INVITE", &format!("CSeq: 1 {name}"));
        w.recv(UAC, &msg);
        let out = w.sent();
        assert_eq!(
            out.iter().map(|(_, m)| status(m)).collect::<Vec<_>>(),
            [400],
            "{name}: {out:#?}"
        );
    }
}

#[test]
fn a_phones_3xx_cannot_guess_pins() {
    let mut w = World::new();
    let contacts: Vec<String> = (0..40)
        .map(|i| format!("<sip:**{:04}*0033612345678@127.0.0.1:5070>", 1200 + i))
        .collect();
    forwarded_by_alices_phone(&mut w, "z9hG4bK-g1", &contacts.join(", "));
    let out = w.sent();
    assert!(
        !out.iter()
            .any(|(to, m)| to.to_string() == UAS && m.starts_with("INVITE ")),
        "no target with a dial-prefix PIN is tried: {out:#?}"
    );
    let up: Vec<u16> = out
        .iter()
        .filter(|(to, _)| to.to_string() == UAC)
        .map(|(_, m)| status(m))
        .collect();
    assert_eq!(up.first(), Some(&403));
}

#[test]
fn credentials_taken_from_another_request_do_not_verify() {
    use sipscreen::proxy::auth::Algorithm;
    let mut w = World::with(SECURE);
    w.recv(STRANGER, &call_from(STRANGER, "1001", "boss", "u0", ""));
    let challenge = w.sent().remove(0).1;
    // Computed for a call to 1001, sent on a call to the trunk.
    let creds = authorization(
        &challenge,
        Algorithm::Md5,
        "the-boss",
        "boss-pw",
        "sip:1001@127.0.0.1:5060",
        1,
    );
    w.recv(
        STRANGER,
        &call_from(STRANGER, "0033612345678", "boss", "u1", &creds),
    );
    let out = w.sent();
    assert_eq!(
        out.iter().map(|(_, m)| status(m)).collect::<Vec<_>>(),
        [407],
        "{out:#?}"
    );
}

#[test]
fn smuggled_identities_and_unreadable_numbers_go_nowhere() {
    let mut w = World::with(SECURE);
    // A bare CR would end a line for some PBXs: a P-Asserted-Identity hidden in X-Pad.
    let smuggled = call_from(
        UAC,
        "1009",
        "alice",
        "b1",
        "X-Pad: x\rP-Asserted-Identity: <sip:1009@acme.example>\r\n",
    );
    w.recv(UAC, &smuggled);
    let out = w.sent();
    assert_eq!(
        out.iter().map(|(_, m)| status(m)).collect::<Vec<_>>(),
        [400],
        "{out:#?}"
    );
    // Other names of an asserted identity are removed from a tenant source's request.
    let rpid = call_from(
        UAC,
        "1009",
        "alice",
        "b2",
        "Remote-Party-ID: <sip:1009@acme.example>;party=calling\r\nP-Preferred-Identity: <sip:1009@acme.example>\r\n",
    );
    w.recv(UAC, &rpid);
    let fwd = w
        .sent()
        .into_iter()
        .find(|(to, _)| to.to_string() == UAS)
        .unwrap()
        .1;
    assert!(
        !fwd.contains("Remote-Party-ID") && !fwd.contains("P-Preferred-Identity"),
        "{fwd}"
    );
    // A number with an escape sipscreen cannot decode, or none at all, is not screened: 484.
    for (b, dialed) in [("b3", "%30%30%39%30%30123%ff"), ("b4", "")] {
        let msg = call_from(UAC, "x", "alice", b, "").replace(
            "sip:x@127.0.0.1:5060",
            &format!("sip:{dialed}@127.0.0.1:5060").replace("sip:@", "sip:"),
        );
        w.recv(UAC, &msg);
        let codes: Vec<u16> = w.sent().iter().map(|(_, m)| status(m)).collect();
        assert_eq!(codes, [100, 484], "{dialed:?}");
    }
}

#[test]
fn an_answered_call_keeps_one_dialog_whatever_the_forking() {
    let mut w = World::with(&SECURE.replace("max_dialogs = 3", "max_dialogs = 100"));
    w.recv(UAC, &call_from(UAC, "1009", "alice", "fk", ""));
    let fwd = w
        .sent()
        .into_iter()
        .find(|(to, _)| to.to_string() == UAS)
        .unwrap()
        .1;
    for i in 0..40 {
        w.recv(UAS, &answer(&fwd, 180, "Ringing", &format!("fork{i}")));
    }
    assert_eq!(w.proxy.dialogs(), 16, "at most 16 early dialogs per INVITE");
    w.recv(UAS, &answer(&fwd, 200, "OK", "fork3"));
    w.sent();
    assert_eq!(w.proxy.dialogs(), 1, "the answered one");
}

#[test]
fn the_ack_for_a_stateless_answer_goes_nowhere() {
    let mut w = World::with(SECURE);
    w.recv(
        UAC,
        &call_from(UAC, "1009", "alice", "sa", "Proxy-Require: foo\r\n"),
    );
    let out = w.sent();
    assert_eq!(status(&out[0].1), 420);
    let to = header_values(&out[0].1, "To")[0].to_owned();
    let ack = call_from(UAC, "1009", "alice", "sa", "")
        .replace("INVITE sip:", "ACK sip:")
        .replace("CSeq: 1 INVITE", "CSeq: 1 ACK")
        .replace("To: <sip:1009@acme.example>", &format!("To: {to}"));
    w.recv(UAC, &ack);
    assert!(w.sent().is_empty(), "not relayed to the next hop");
}
