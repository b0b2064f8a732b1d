//! Next hops with several targets (SPEC §5.2), in the sans-I/O core with a simulated clock:
//! serial forking on a 503, a transport error or no response before Timer B; a provisional
//! response that ends it; targets marked down, probed with OPTIONS and taken back; names
//! whose targets the I/O layer hands over, and 503 while a name has none.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sipscreen::config::Config;
use sipscreen::proxy::{Name, Peer, Proxy, Target, Transport};

const UAC: &str = "127.0.0.1:5061";
const FIRST: &str = "127.0.0.1:5070";
const SECOND: &str = "127.0.0.1:5071";

fn config(next_hop: &str) -> String {
    format!(
        r#"
[server]
listen = ["udp:127.0.0.1:5060"]
next_hop = {next_hop}
down_after = 2
probe_interval_s = 10

[brand]
name = "b"

[[tenant]]
name = "acme"
country = "ES"
sources = ["127.0.0.1/32"]

  [[tenant.users]]
  name = "alice"
  extension = "1001"
"#
    )
}

const TWO: &str = r#"["udp:127.0.0.1:5070", "udp:127.0.0.1:5071"]"#;

fn peer(addr: &str) -> Peer {
    Peer {
        transport: Transport::Udp,
        addr: addr.parse().unwrap(),
    }
}

struct World {
    proxy: Proxy,
    now: Instant,
    /// The Call-ID of every OPTIONS sent so far.
    probes: Vec<String>,
}

impl World {
    fn new(next_hop: &str) -> Self {
        let config = Config::from_toml(&config(next_hop), "test.toml", None).unwrap();
        Self {
            proxy: Proxy::new(config.proxy, config.policy),
            now: Instant::now(),
            probes: Vec::new(),
        }
    }

    fn recv(&mut self, from: &str, msg: &str) {
        self.proxy
            .handle_message(self.now, peer(from), msg.as_bytes());
    }

    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(t) = self.proxy.poll_timeout().filter(|t| *t <= end) {
            self.now = t.max(self.now);
            self.proxy.handle_timeout(self.now);
        }
        self.now = end;
    }

    fn sent(&mut self) -> Vec<(SocketAddr, String)> {
        let mut out = Vec::new();
        while let Some(t) = self.proxy.poll_transmit() {
            let text = String::from_utf8(t.bytes).unwrap();
            if text.starts_with("OPTIONS ") {
                self.probes.push(call_id(&text).to_owned());
            }
            out.push((t.to.addr, text));
        }
        out
    }

    /// What went to `to` since the last look (everything else is dropped).
    fn sent_to(&mut self, to: &str) -> Vec<String> {
        self.sent()
            .into_iter()
            .filter(|(a, _)| a.to_string() == to)
            .map(|(_, m)| m)
            .collect()
    }

    /// A new call from the UAC: the INVITE as forwarded, and where it went.
    fn call(&mut self, branch: &str) -> (String, String) {
        self.recv(UAC, &invite(branch));
        let out = self.sent();
        let (to, fwd) = out
            .into_iter()
            .find(|(_, m)| m.starts_with("INVITE "))
            .unwrap_or_else(|| panic!("call {branch} was not forwarded"));
        (to.to_string(), fwd)
    }
}

fn invite(branch: &str) -> String {
    format!(
        "INVITE sip:612345678@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch={branch};rport\r\nFrom: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:612345678@127.0.0.1>\r\nCall-ID: call-{branch}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@127.0.0.1:5061>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: 4\r\n\r\nv=0\n"
    )
}

/// A response to `req` (the INVITE as forwarded, or a probe).
fn answer(req: &str, code: u16, reason: &str) -> String {
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for line in req.split("\r\n").skip(1).take_while(|l| !l.is_empty()) {
        let lower = line.to_ascii_lowercase();
        if ["via:", "from:", "call-id:", "cseq:"]
            .iter()
            .any(|h| lower.starts_with(h))
        {
            out.push_str(line);
            out.push_str("\r\n");
        } else if lower.starts_with("to:") {
            out.push_str(&format!("{line};tag=t{code}\r\n"));
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

/// The forwarded INVITE without its top Via (ours): what failover must keep as is.
fn without_top_via(msg: &str) -> String {
    msg.split("\r\n")
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(_, l)| l)
        .collect::<Vec<_>>()
        .join("\r\n")
}

fn branch_of(msg: &str) -> &str {
    let via = msg.split("\r\n").nth(1).unwrap();
    via.split("branch=").nth(1).unwrap()
}

#[test]
fn a_503_sends_the_same_request_to_the_next_target_on_a_new_branch() {
    let mut w = World::new(TWO);
    let (to, first) = w.call("z9hG4bK-1");
    assert_eq!(to, FIRST);
    w.recv(FIRST, &answer(&first, 503, "Service Unavailable"));
    let out = w.sent();
    // The 503 is acknowledged hop by hop and not relayed; the INVITE goes to the next target.
    assert!(out
        .iter()
        .any(|(a, m)| a.to_string() == FIRST && m.starts_with("ACK ")));
    assert!(out.iter().all(|(a, _)| a.to_string() != UAC), "{out:#?}");
    let second = &out
        .iter()
        .find(|(a, m)| a.to_string() == SECOND && m.starts_with("INVITE "))
        .expect("INVITE to the second target")
        .1;
    assert_ne!(branch_of(second), branch_of(&first));
    assert_eq!(without_top_via(second), without_top_via(&first));
    // The second target's answer reaches the caller.
    w.recv(SECOND, &answer(second, 200, "OK"));
    let up = w.sent_to(UAC);
    assert_eq!(up.iter().map(|m| status(m)).collect::<Vec<_>>(), [200]);
}

#[test]
fn a_transport_error_sends_the_request_to_the_next_target() {
    let mut w = World::new(TWO);
    let (to, _) = w.call("z9hG4bK-2");
    assert_eq!(to, FIRST);
    w.proxy.handle_send_error(w.now, peer(FIRST));
    let second = w.sent_to(SECOND);
    assert!(second[0].starts_with("INVITE "), "{second:#?}");
}

#[test]
fn no_response_before_timer_b_sends_the_request_to_the_next_target() {
    let mut w = World::new(TWO);
    w.call("z9hG4bK-3");
    w.advance(Duration::from_secs(31));
    assert!(w.sent_to(SECOND).is_empty());
    w.advance(Duration::from_secs(2));
    let out = w.sent();
    assert!(
        out.iter()
            .any(|(a, m)| a.to_string() == SECOND && m.starts_with("INVITE ")),
        "{out:#?}"
    );
    assert!(
        out.iter().all(|(a, _)| a.to_string() != UAC),
        "no 408 to the caller while a target is left: {out:#?}"
    );
    // The last target times out too: now the caller gets 408.
    w.advance(Duration::from_secs(33));
    let up = w.sent_to(UAC);
    assert_eq!(status(&up[0]), 408, "{up:#?}");
}

#[test]
fn a_provisional_response_keeps_the_request_on_its_target() {
    let mut w = World::new(TWO);
    let (_, first) = w.call("z9hG4bK-4");
    w.recv(FIRST, &answer(&first, 180, "Ringing"));
    w.recv(FIRST, &answer(&first, 503, "Service Unavailable"));
    let out = w.sent();
    assert!(out.iter().all(|(a, _)| a.to_string() != SECOND), "{out:#?}");
    let up: Vec<u16> = out
        .iter()
        .filter(|(a, _)| a.to_string() == UAC)
        .map(|(_, m)| status(m))
        .collect();
    assert_eq!(up, [180, 503]);
}

#[test]
fn the_last_targets_failure_reaches_the_caller() {
    let mut w = World::new(TWO);
    let (_, first) = w.call("z9hG4bK-5");
    w.recv(FIRST, &answer(&first, 503, "Service Unavailable"));
    let second = w.sent_to(SECOND).pop().unwrap();
    w.recv(SECOND, &answer(&second, 503, "Service Unavailable"));
    let up = w.sent_to(UAC);
    assert_eq!(up.iter().map(|m| status(m)).collect::<Vec<_>>(), [503]);
}

#[test]
fn a_target_that_keeps_failing_is_marked_down_probed_and_taken_back() {
    let mut w = World::new(TWO);
    // down_after = 2: two failures in a row mark the first target down.
    for b in ["z9hG4bK-6a", "z9hG4bK-6b"] {
        let (to, first) = w.call(b);
        assert_eq!(to, FIRST);
        w.recv(FIRST, &answer(&first, 503, "Service Unavailable"));
        let second = w.sent_to(SECOND).pop().unwrap();
        w.recv(SECOND, &answer(&second, 200, "OK"));
        w.sent();
    }
    // Now new calls go straight to the second target.
    let (to, second) = w.call("z9hG4bK-6c");
    assert_eq!(to, SECOND);
    w.recv(SECOND, &answer(&second, 200, "OK"));
    w.sent();
    // Every probe_interval_s, an OPTIONS to the target that is down; no answer keeps it down.
    w.advance(Duration::from_secs(10));
    let probe = w.sent_to(FIRST);
    assert_eq!(probe.len(), 1, "{probe:#?}");
    assert!(
        probe[0].starts_with("OPTIONS sip:127.0.0.1:5070 SIP/2.0\r\n"),
        "{}",
        probe[0]
    );
    w.advance(Duration::from_secs(40));
    w.sent();
    let mut probes = w.probes.clone();
    probes.dedup();
    assert!(probes.len() >= 5, "a probe every 10 s: {probes:#?}");
    assert_eq!(w.call("z9hG4bK-6d").0, SECOND, "still down");
    w.sent();
    // A 200 to the next probe brings it back.
    let before = w.probes.clone();
    w.advance(Duration::from_secs(10));
    let probe = w
        .sent_to(FIRST)
        .into_iter()
        .find(|m| m.starts_with("OPTIONS ") && !before.iter().any(|c| c == call_id(m)))
        .expect("a new probe");
    w.recv(FIRST, &answer(&probe, 200, "OK"));
    assert!(w.sent().is_empty(), "a probe's answer goes nowhere");
    assert_eq!(w.call("z9hG4bK-6e").0, FIRST);
    // And no new probe is sent (earlier ones may still be retransmitted, Timer E).
    w.sent();
    let before = w.probes.clone();
    w.advance(Duration::from_secs(30));
    w.sent();
    assert!(
        w.probes.iter().all(|c| before.contains(c)),
        "{:#?}",
        w.probes
    );
}

fn call_id(msg: &str) -> &str {
    msg.split("\r\n")
        .find_map(|l| l.strip_prefix("Call-ID: "))
        .unwrap_or_default()
}

#[test]
fn a_single_target_that_is_down_is_still_used() {
    let mut w = World::new(r#""udp:127.0.0.1:5070""#);
    for b in ["z9hG4bK-7a", "z9hG4bK-7b", "z9hG4bK-7c"] {
        let (to, first) = w.call(b);
        assert_eq!(to, FIRST);
        w.recv(FIRST, &answer(&first, 503, "Service Unavailable"));
        let up = w.sent_to(UAC);
        assert_eq!(up.iter().map(|m| status(m)).collect::<Vec<_>>(), [503]);
    }
}

fn target(addr: &str, priority: u16) -> Target {
    Target {
        peer: peer(addr),
        priority,
        weight: 10,
    }
}

#[test]
fn a_name_gets_503_until_located_then_its_targets_in_priority_order() {
    let mut w = World::new(r#""sip:trunk.test""#);
    w.recv(UAC, &invite("z9hG4bK-8a"));
    let up = w.sent_to(UAC);
    assert_eq!(up.iter().map(|m| status(m)).collect::<Vec<_>>(), [100, 503]);

    let name: Name = w.proxy.settings().server.names().pop().unwrap();
    assert_eq!(name.to_string(), "sip:trunk.test");
    w.proxy
        .set_targets(&name, vec![target(SECOND, 2), target(FIRST, 1)]);
    let (to, first) = w.call("z9hG4bK-8b");
    assert_eq!(to, FIRST, "priority 1 first");
    w.recv(FIRST, &answer(&first, 503, "Service Unavailable"));
    assert!(w.sent_to(SECOND)[0].starts_with("INVITE "));

    // A name that no longer resolves takes its hop's targets with it.
    w.proxy.set_targets(&name, Vec::new());
    w.recv(UAC, &invite("z9hG4bK-8c"));
    let up = w.sent_to(UAC);
    assert_eq!(up.iter().map(|m| status(m)).collect::<Vec<_>>(), [100, 503]);
}
