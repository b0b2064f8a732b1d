//! No way around the screen, on the wire (SPEC §4.1, §5.1, §6 items 4–7): the built
//! `sipscreen run` on loopback, with real peers — plain UDP sockets of the test that play
//! phones, strangers, forgers and callees, and SIPp where a real user agent matters (RTP
//! DTMF from captures, a dialog with route sets).
//!
//! Loopback is a whole /8: the phones' network (the tenant's `sources`) is 127.0.0.1 alone,
//! and other addresses play the parts nobody vouches for:
//!
//! - 127.0.0.3, a stranger: neither a trusted peer nor a tenant source;
//! - 127.0.0.4, a callee (the PBX of one test) that is not a source either;
//! - 127.0.0.5, a listener of the test that an invented dialog aims at;
//! - 127.0.0.6, another stranger, served while the first is banned;
//! - 127.0.0.7, a forger of responses.
//!
//! One Spanish tenant, `acme.example`: alice (1001) may not call abroad, boss (1009, digest
//! user `the-boss`) may, through the outcall `trunk`; carol (1002) calls abroad with the
//! PIN 1234. All three have digest credentials unless a test says otherwise.
//!
//! What is asserted is what each party receives, and that nothing reaches the PBX or the
//! trunk (the next hops: sockets of the test) when nothing may. SIPp (Debian package
//! `sip-tester`, with its DTMF captures in /usr/share/sip-tester) is required: these tests
//! fail, never skip, without it. The harness is `tests/common`: every process is stopped by
//! its PID, every wait is bounded, sipscreen binds port 0, and each test works in its own
//! temporary directory, kept and named when the test fails.

mod common;
use common::net::{free_ports, NextHop};
use common::proxy::Sipscreen;
use common::sip::{
    answer, authorization, cseq_method, first_line, header, headers, offer, param, status, unique,
};
use common::sipp::{summary, SippCommand, SippRun};
use common::TempDir;
use sipscreen::proxy::auth::Algorithm;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// The phones' network: the tenant's only source.
const PHONES: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
/// Neither a trusted peer nor a tenant source.
const STRANGER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
/// A callee that is not a source.
const CALLEE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 4));
/// Where an invented dialog's Request-URI points.
const TARGET: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 5));
/// Another stranger.
const NEIGHBOUR: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 6));
/// A forger of responses.
const FORGER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 7));

/// An international number: alice may not call it, boss may, carol with the PIN.
const NUMBER: &str = "0033612345678";
/// boss's extension (an internal call to a user: allowed for everyone, goes to the PBX).
const BOSS: &str = "1009";
/// carol: her international calls are challenged.
const CAROL: &str = "1002";
/// carol's PIN.
const PIN: &str = "1234";
/// The Reason sent with every 403 (`server.reject_reason`).
const REJECT_REASON: &str = "Q.850;cause=21";
/// How long a party waits for a message that must come.
const WAIT: Duration = Duration::from_secs(5);
/// How long a party listens for a message that must not come.
const QUIET: Duration = Duration::from_millis(700);

// ---------------------------------------------------------------------------------------
// sipscreen.

/// What a test's configuration varies.
struct Options {
    /// Whether alice, boss and carol have digest credentials.
    credentials: bool,
    /// Where the PBX (the default next hop) listens.
    pbx: IpAddr,
    /// `pin.attempts`, `first_digit_timeout_s`, `inter_digit_timeout_s`.
    attempts: u32,
    first_digit_s: u32,
    inter_digit_s: u32,
    /// `pin.lockout.failures`.
    lockout_failures: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            credentials: true,
            pbx: PHONES,
            attempts: 3,
            first_digit_s: 10,
            inter_digit_s: 5,
            lockout_failures: 5,
        }
    }
}

fn config(o: &Options, pbx: SocketAddr, trunk: SocketAddr, rtp: (u16, u16)) -> String {
    let (alice_pw, boss_pw, carol_pw) = if o.credentials {
        (
            "  auth_password = \"alice-pw\"\n",
            "  auth_password = \"boss-pw\"\n",
            "  auth_password = \"carol-pw\"\n",
        )
    } else {
        ("", "", "")
    };
    format!(
        r#"[server]
listen = ["udp:127.0.0.1:0"]
next_hop = "udp:{pbx}"
record_route = true
reject_reason = "{REJECT_REASON}"

[limits]
per_source = {{ requests_per_s = 1, burst = 40, ban_s = 60 }}

[pin]
attempts = {attempts}
max_digits = 8
first_digit_timeout_s = {first}
inter_digit_timeout_s = {inter}
prompt = "tone"
rtp_ports = "{lo}-{hi}"
dial_prefix = "**"
lockout = {{ failures = {failures}, window_s = 600, lock_s = 900 }}

[brand]
name = "security-e2e"

[[tenant]]
name = "acme"
country = "ES"
domains = ["acme.example"]
sources = ["127.0.0.1/32"]

  [[tenant.users]]
  name = "alice"
  extension = "1001"
{alice_pw}
  [[tenant.users]]
  name = "boss"
  extension = "{BOSS}"
  auth_username = "the-boss"
{boss_pw}
  [[tenant.users]]
  name = "carol"
  extension = "{CAROL}"
{carol_pw}
  [[tenant.outcalls]]
  name = "trunk"
  patterns = ["_00X."]
  next_hop = "udp:{trunk}"

  [[tenant.call_permissions]]
  name = "no-international"
  extensions = ["_00X."]
  users = ["alice"]

  [[tenant.call_permissions]]
  name = "pin-international"
  extensions = ["_00X."]
  password = "{PIN}"
  users = ["carol"]
"#,
        attempts = o.attempts,
        first = o.first_digit_s,
        inter = o.inter_digit_s,
        lo = rtp.0,
        hi = rtp.1,
        failures = o.lockout_failures,
    )
}

/// One test's world: sipscreen, its two next hops (held by the test), its directory.
struct World {
    proxy: Sipscreen,
    /// The default next hop: internal calls.
    pbx: NextHop,
    /// The outcall's next hop: international calls.
    trunk: NextHop,
    dir: TempDir,
}

impl World {
    fn start(test: &str, o: &Options) -> World {
        let dir = TempDir::new("security", test);
        let pbx = NextHop::udp(o.pbx);
        let trunk = NextHop::udp(PHONES);
        // Eight ports: four even ones for prompts.
        let lo = free_ports(PHONES, 8);
        let text = config(o, pbx.addr(), trunk.addr(), (lo, lo + 7));
        let proxy = Sipscreen::start(&dir, &text);
        World {
            proxy,
            pbx,
            trunk,
            dir,
        }
    }

    /// A party of the test on `ip`, talking to sipscreen.
    fn party(&self, ip: IpAddr) -> Party {
        Party::bind(ip, self.proxy.udp())
    }

    /// A next hop as a party of the test (the callee), talking to sipscreen.
    fn callee(&self, hop: &NextHop) -> Party {
        Party::with(hop.socket(), self.proxy.udp())
    }

    /// Stops sipscreen (it must drain and exit 0) and checks it never panicked.
    fn finish(self) {
        let log = self.proxy.stop_ok();
        assert!(!log.contains("panicked"), "sipscreen panicked:\n{log}");
    }
}

// ---------------------------------------------------------------------------------------
// SIP messages, written and read by hand.

/// A request: `headers` are whole lines (each ending in CRLF) after the usual ones.
struct Request<'a> {
    method: &'a str,
    uri: String,
    /// Who sends it (its Via).
    via: SocketAddr,
    branch: String,
    from: String,
    to: String,
    call_id: String,
    cseq: u32,
    headers: String,
    body: Option<(&'a str, String)>,
}

impl Request<'_> {
    fn text(&self) -> String {
        let (method, cseq) = (self.method, self.cseq);
        let mut out = format!(
            "{method} {} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch={};rport\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\n{}",
            self.uri, self.via, self.branch, self.from, self.to, self.call_id, self.headers
        );
        match &self.body {
            Some((ct, body)) => out.push_str(&format!(
                "Content-Type: {ct}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )),
            None => out.push_str("Content-Length: 0\r\n\r\n"),
        }
        out
    }
}

/// A new out-of-dialog request from `user`@acme.example at `via` to `dialed` at sipscreen.
fn new_request<'a>(
    method: &'a str,
    via: SocketAddr,
    proxy: SocketAddr,
    user: &str,
    dialed: &str,
) -> Request<'a> {
    Request {
        method,
        uri: format!("sip:{dialed}@{proxy}"),
        via,
        branch: unique("z9hG4bK-t"),
        from: format!("<sip:{user}@acme.example>;tag={}", unique("f")),
        to: format!("<sip:{dialed}@acme.example>"),
        call_id: unique("call-"),
        cseq: 1,
        headers: format!("Contact: <sip:{user}@{via}>\r\n"),
        body: None,
    }
}

/// The ACK for a non-2xx final response to `invite` (RFC 3261 §17.1.1.3): the INVITE's
/// branch, the response's To.
fn ack_for(invite: &Request<'_>, resp: &str) -> String {
    Request {
        method: "ACK",
        uri: invite.uri.clone(),
        via: invite.via,
        branch: invite.branch.clone(),
        from: invite.from.clone(),
        to: header(resp, "To").unwrap_or_default().to_owned(),
        call_id: invite.call_id.clone(),
        cseq: invite.cseq,
        headers: String::new(),
        body: None,
    }
    .text()
}

/// The CANCEL of `invite` (RFC 3261 §9.1): its branch, its CSeq number.
fn cancel_for(invite: &Request<'_>) -> String {
    Request {
        method: "CANCEL",
        uri: invite.uri.clone(),
        via: invite.via,
        branch: invite.branch.clone(),
        from: invite.from.clone(),
        to: invite.to.clone(),
        call_id: invite.call_id.clone(),
        cseq: invite.cseq,
        headers: String::new(),
        body: None,
    }
    .text()
}

// ---------------------------------------------------------------------------------------
// Parties: a UDP socket of the test.

struct Party {
    socket: UdpSocket,
    addr: SocketAddr,
    /// Where it sends by default: sipscreen.
    proxy: SocketAddr,
}

impl Party {
    fn bind(ip: IpAddr, proxy: SocketAddr) -> Party {
        let socket = UdpSocket::bind((ip, 0))
            .unwrap_or_else(|e| panic!("cannot bind a UDP socket on {ip}: {e}"));
        Party::with(socket, proxy)
    }

    fn with(socket: UdpSocket, proxy: SocketAddr) -> Party {
        let addr = socket.local_addr().expect("the socket's address");
        Party {
            socket,
            addr,
            proxy,
        }
    }

    fn send(&self, msg: &str) {
        self.socket
            .send_to(msg.as_bytes(), self.proxy)
            .unwrap_or_else(|e| panic!("{} cannot send to {}: {e}", self.addr, self.proxy));
    }

    /// The next datagram before `deadline`.
    fn next(&self, deadline: Instant) -> Option<(String, SocketAddr)> {
        let mut buf = [0u8; 65_535];
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            if left.is_zero() {
                return None;
            }
            self.socket
                .set_read_timeout(Some(left))
                .expect("set a read timeout");
            match self.socket.recv_from(&mut buf) {
                Ok((n, from)) => {
                    return Some((String::from_utf8_lossy(&buf[..n]).into_owned(), from))
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return None
                }
                Err(_) => continue, // ICMP port unreachable from an earlier send
            }
        }
    }

    /// Everything that arrives within `window`.
    fn drain(&self, window: Duration) -> Vec<String> {
        let deadline = Instant::now() + window;
        std::iter::from_fn(|| self.next(deadline).map(|(m, _)| m)).collect()
    }

    /// Nothing arrives within [`QUIET`]: `why` says what the test did.
    fn assert_nothing(&self, who: &str, why: &str) {
        let got = self.drain(QUIET);
        assert!(
            got.is_empty(),
            "{why}: nothing may reach {who} ({}), but it got:\n{}",
            self.addr,
            got.join("\n----\n")
        );
    }

    /// Reads until a message `wanted` accepts (within [`WAIT`]); every other message read on
    /// the way is returned too, in order, before it.
    fn until(&self, what: &str, wanted: impl Fn(&str) -> bool) -> (String, Vec<String>) {
        let deadline = Instant::now() + WAIT;
        let mut before = Vec::new();
        loop {
            match self.next(deadline) {
                Some((msg, _)) if wanted(&msg) => return (msg, before),
                Some((msg, _)) => before.push(msg),
                None => panic!(
                    "{} got no {what} within {WAIT:?}; it got:\n{}",
                    self.addr,
                    before
                        .iter()
                        .map(|m| first_line(m))
                        .collect::<Vec<_>>()
                        .join("\n")
                ),
            }
        }
    }

    /// The first final response to a `method`, skipping 100s;
    /// a failure on any other response to it on the way.
    fn final_response(&self, method: &str) -> String {
        let (msg, before) = self.until(&format!("final response to {method}"), |m| {
            status(m) >= 200 && cseq_method(m) == method
        });
        let odd: Vec<&str> = before
            .iter()
            .filter(|m| status(m) != 100)
            .map(|m| first_line(m))
            .collect();
        assert!(
            odd.is_empty(),
            "{}: before the final response `{}` it got {odd:?}",
            self.addr,
            first_line(&msg)
        );
        msg
    }

    /// The next request of `method`.
    fn request(&self, method: &str) -> String {
        let prefix = format!("{method} ");
        self.until(method, |m| m.starts_with(&prefix)).0
    }
}

// ---------------------------------------------------------------------------------------
// RFC 4733 telephone-events sent by a socket of the test.

struct Keypad<'s> {
    socket: &'s UdpSocket,
    to: SocketAddr,
    ssrc: u32,
    sequence: u16,
    timestamp: u32,
}

impl<'s> Keypad<'s> {
    fn new(socket: &'s UdpSocket, to: SocketAddr, ssrc: u32) -> Keypad<'s> {
        Keypad {
            socket,
            to,
            ssrc,
            sequence: 1000,
            timestamp: 80_000,
        }
    }

    /// One key as a phone sends it: three packets while it is held, three end packets, all
    /// with the event's timestamp; the next event starts 100 ms later on the RTP clock.
    fn key(&mut self, key: char) {
        let event = match key {
            '0'..='9' => key as u8 - b'0',
            '*' => 10,
            '#' => 11,
            _ => panic!("no DTMF key {key}"),
        };
        for (i, (end, duration)) in [
            (false, 160u16),
            (false, 320),
            (false, 480),
            (true, 640),
            (true, 640),
            (true, 640),
        ]
        .into_iter()
        .enumerate()
        {
            let flags = if end { 0x80 | 10 } else { 10 };
            let d = duration.to_be_bytes();
            let packet = sipscreen::media::rtp::write(
                i == 0,
                101,
                self.sequence,
                self.timestamp,
                self.ssrc,
                &[event, flags, d[0], d[1]],
            );
            self.socket
                .send_to(&packet, self.to)
                .expect("send a telephone-event");
            self.sequence = self.sequence.wrapping_add(1);
        }
        self.timestamp = self.timestamp.wrapping_add(800 + 640);
    }

    fn keys(&mut self, keys: &str, gap: Duration) {
        for k in keys.chars() {
            self.key(k);
            std::thread::sleep(gap);
        }
    }
}

/// The port of a message's SDP `m=audio` line.
fn sdp_port(msg: &str) -> u16 {
    msg.split("m=audio ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no m=audio port in:\n{msg}"))
}

// ---------------------------------------------------------------------------------------
// 1. Nobody vouches for a stranger.

/// An INVITE, a MESSAGE and a REGISTER from the stranger claiming to be boss: each gets
/// `code`, and nothing reaches the PBX or the trunk.
fn stranger_is_refused(test: &str, credentials: bool, code: u16) {
    let world = World::start(
        test,
        &Options {
            credentials,
            ..Options::default()
        },
    );
    let (pbx, trunk) = (world.pbx.silent("PBX"), world.trunk.silent("trunk"));
    let stranger = world.party(STRANGER);
    let proxy = world.proxy.udp();
    let mut register = new_request("REGISTER", stranger.addr, proxy, "boss", "boss");
    register.uri = "sip:acme.example".to_owned();
    register.to = "<sip:boss@acme.example>".to_owned();
    for mut req in [
        new_request("INVITE", stranger.addr, proxy, "boss", NUMBER),
        new_request("MESSAGE", stranger.addr, proxy, "boss", BOSS),
        register,
    ] {
        if req.method == "MESSAGE" {
            req.body = Some(("text/plain", "open the trunk".to_owned()));
        }
        stranger.send(&req.text());
        let resp = stranger.final_response(req.method);
        assert_eq!(
            status(&resp),
            code,
            "{} from a stranger claiming to be boss:\n{resp}",
            req.method
        );
        if code == 407 {
            let challenges = headers(&resp, "Proxy-Authenticate");
            assert_eq!(challenges.len(), 2, "two challenges:\n{resp}");
            assert!(
                challenges[0].contains("algorithm=SHA-256")
                    && challenges[1].contains("algorithm=MD5")
                    && challenges
                        .iter()
                        .all(|c| c.contains("qop=\"auth\"") && param(c, "realm") == "acme.example"),
                "SHA-256 then MD5, qop=auth, the realm of the tenant's first domain:\n{resp}"
            );
        } else {
            assert!(
                headers(&resp, "Proxy-Authenticate").is_empty(),
                "no challenge when nobody can authenticate:\n{resp}"
            );
            let text = resp.to_ascii_lowercase();
            assert!(
                !text.contains("no-international") && !text.contains("the-boss"),
                "a 403 gives no hint of rules or users:\n{resp}"
            );
        }
        if req.method == "INVITE" {
            // As a phone does: ACK the final response. It goes nowhere.
            stranger.send(&ack_for(&req, &resp));
        }
    }
    stranger.assert_nothing("the stranger", "every refusal is sent once");
    pbx.assert_nothing("a stranger's INVITE, MESSAGE and REGISTER");
    trunk.assert_nothing("a stranger's INVITE, MESSAGE and REGISTER");
    world.finish();
}

#[test]
fn a_stranger_claiming_a_user_is_challenged_and_nothing_reaches_a_next_hop() {
    stranger_is_refused("stranger-407", true, 407);
}

#[test]
fn a_stranger_is_refused_403_when_nobody_can_authenticate() {
    stranger_is_refused("stranger-403", false, 403);
}

// ---------------------------------------------------------------------------------------
// 2. Digest credentials decide whose rights apply.

#[test]
fn digest_credentials_decide_with_the_authenticated_users_rights_whatever_from_says() {
    let world = World::start("digest", &Options::default());
    let (pbx, trunk_silent) = (world.pbx.silent("PBX"), world.trunk.silent("trunk"));
    let stranger = world.party(STRANGER);
    let proxy = world.proxy.udp();

    // From says boss: challenged.
    let first = new_request("INVITE", stranger.addr, proxy, "boss", NUMBER);
    stranger.send(&first.text());
    let challenge = stranger.final_response("INVITE");
    assert_eq!(status(&challenge), 407, "{challenge}");
    stranger.send(&ack_for(&first, &challenge));

    // alice's credentials (MD5), From still boss: alice's rights, no international: 403.
    let mut as_alice = new_request("INVITE", stranger.addr, proxy, "boss", NUMBER);
    as_alice.headers += &authorization(
        &challenge,
        Algorithm::Md5,
        "alice",
        "alice-pw",
        "INVITE",
        &as_alice.uri,
        1,
    );
    stranger.send(&as_alice.text());
    let refused = stranger.final_response("INVITE");
    assert_eq!(
        status(&refused),
        403,
        "alice's credentials carry alice's rights, whatever From says:\n{refused}"
    );
    assert_eq!(header(&refused, "Reason"), Some(REJECT_REASON), "{refused}");
    stranger.send(&ack_for(&as_alice, &refused));
    trunk_silent.assert_nothing("alice's credentials with From: boss");

    // boss's credentials (SHA-256, by auth_username), From says alice: boss's rights, the
    // call goes to the trunk.
    let trunk = world.callee(&world.trunk);
    let mut as_boss = new_request("INVITE", stranger.addr, proxy, "alice", NUMBER);
    as_boss.headers += &authorization(
        &challenge,
        Algorithm::Sha256,
        "the-boss",
        "boss-pw",
        "INVITE",
        &as_boss.uri,
        2,
    );
    stranger.send(&as_boss.text());
    let forwarded = trunk.request("INVITE");
    assert!(
        first_line(&forwarded).starts_with(&format!("INVITE sip:{NUMBER}@")),
        "the trunk gets the call:\n{forwarded}"
    );
    assert!(
        headers(&forwarded, "Proxy-Authorization").is_empty(),
        "credentials consumed by sipscreen go no further:\n{forwarded}"
    );
    // The trunk is busy: the caller gets the 486, and the transaction ends.
    trunk.send(&answer(&forwarded, 486, "Busy Here", &unique("t"), ""));
    let busy = stranger.final_response("INVITE");
    assert_eq!(status(&busy), 486, "{busy}");
    stranger.send(&ack_for(&as_boss, &busy));
    let ack = trunk.request("ACK");
    assert_eq!(cseq_method(&ack), "ACK", "sipscreen ACKs the trunk's 486");

    // The same credentials again in a new INVITE (same nonce, same nc): a replay, challenged
    // again, and the trunk gets nothing.
    let mut replay = new_request("INVITE", stranger.addr, proxy, "alice", NUMBER);
    replay.headers = as_boss.headers.clone();
    stranger.send(&replay.text());
    let again = stranger.final_response("INVITE");
    assert_eq!(status(&again), 407, "replayed credentials:\n{again}");
    stranger.send(&ack_for(&replay, &again));
    trunk.assert_nothing("the trunk", "replayed credentials");

    pbx.assert_nothing("calls to an international number");
    world.finish();
}

// ---------------------------------------------------------------------------------------
// 3. Guessing passwords gets a source banned, and only that source.

#[test]
fn wrong_credentials_get_407_until_the_source_is_banned_while_others_are_served() {
    let world = World::start("guessing", &Options::default());
    let (pbx, trunk_silent) = (world.pbx.silent("PBX"), world.trunk.silent("trunk"));
    let stranger = world.party(STRANGER);
    let proxy = world.proxy.udp();

    let first = new_request("INVITE", stranger.addr, proxy, "boss", NUMBER);
    stranger.send(&first.text());
    let challenge = stranger.final_response("INVITE");
    assert_eq!(status(&challenge), 407, "{challenge}");

    // burst 40, one token a second, one per request and ten more per wrong password: the
    // stranger is banned after a few guesses, and is then not answered at all.
    let mut answered = 0;
    let mut banned = false;
    for nc in 1..=10 {
        let mut guess = new_request("INVITE", stranger.addr, proxy, "boss", NUMBER);
        guess.headers += &authorization(
            &challenge,
            Algorithm::Md5,
            "the-boss",
            &format!("guess{nc}"),
            "INVITE",
            &guess.uri,
            nc,
        );
        stranger.send(&guess.text());
        let deadline = Instant::now() + QUIET;
        let answer = std::iter::from_fn(|| stranger.next(deadline))
            .map(|(m, _)| m)
            .find(|m| status(m) >= 200);
        let Some(answer) = answer else {
            banned = true;
            break;
        };
        assert_eq!(
            status(&answer),
            407,
            "a wrong password gets a new challenge:\n{answer}"
        );
        answered += 1;
    }
    assert!(
        banned && (2..=6).contains(&answered),
        "banned after a few wrong passwords (answered {answered}, banned {banned})"
    );
    // Banned: even the right password goes unanswered, and reaches nobody.
    let mut right = new_request("INVITE", stranger.addr, proxy, "boss", NUMBER);
    right.headers += &authorization(
        &challenge,
        Algorithm::Md5,
        "the-boss",
        "boss-pw",
        "INVITE",
        &right.uri,
        20,
    );
    stranger.send(&right.text());
    stranger.assert_nothing("the banned stranger", "the right password while banned");
    trunk_silent.assert_nothing("guessed passwords");
    let log = world.proxy.log();
    assert!(
        log.contains("source over its request rate, ignored") && log.contains("127.0.0.3"),
        "the ban is logged with its source:\n{}",
        world.proxy.log_tail()
    );

    // Another source is served meanwhile. The nonce given to the stranger is no good from
    // there, even with the right password: challenged afresh.
    let neighbour = world.party(NEIGHBOUR);
    let trunk = world.callee(&world.trunk);
    let mut borrowed = new_request("INVITE", neighbour.addr, proxy, "boss", NUMBER);
    borrowed.headers += &authorization(
        &challenge,
        Algorithm::Md5,
        "the-boss",
        "boss-pw",
        "INVITE",
        &borrowed.uri,
        30,
    );
    neighbour.send(&borrowed.text());
    let refused = neighbour.final_response("INVITE");
    assert_eq!(
        status(&refused),
        407,
        "a nonce is bound to the address it was given to:\n{refused}"
    );
    neighbour.send(&ack_for(&borrowed, &refused));
    trunk.assert_nothing("the trunk", "credentials on another address's nonce");
    // Its own challenge, and boss's right password, open the trunk.
    let hello = new_request("INVITE", neighbour.addr, proxy, "boss", NUMBER);
    neighbour.send(&hello.text());
    let challenge = neighbour.final_response("INVITE");
    assert_eq!(status(&challenge), 407, "{challenge}");
    neighbour.send(&ack_for(&hello, &challenge));
    let mut call = new_request("INVITE", neighbour.addr, proxy, "boss", NUMBER);
    call.headers += &authorization(
        &challenge,
        Algorithm::Md5,
        "the-boss",
        "boss-pw",
        "INVITE",
        &call.uri,
        1,
    );
    neighbour.send(&call.text());
    let forwarded = trunk.request("INVITE");
    trunk.send(&answer(&forwarded, 486, "Busy Here", &unique("t"), ""));
    let busy = neighbour.final_response("INVITE");
    assert_eq!(status(&busy), 486, "{busy}");
    neighbour.send(&ack_for(&call, &busy));
    trunk.request("ACK");
    pbx.assert_nothing("international calls");
    world.finish();
}

// ---------------------------------------------------------------------------------------
// 4. A To tag is not a pass.

#[test]
fn an_invented_dialog_gets_481_and_a_stray_ack_is_dropped() {
    let world = World::start("invented-dialog", &Options::default());
    let (pbx, trunk) = (world.pbx.silent("PBX"), world.trunk.silent("trunk"));
    let stranger = world.party(STRANGER);
    let target = Party::bind(TARGET, world.proxy.udp());
    let proxy = world.proxy.udp();

    // A re-INVITE of a dialog nobody made, aimed at the target.
    let invented = |method: &'static str, cseq: u32| {
        let mut r = new_request(method, stranger.addr, proxy, "alice", "+33612345678");
        r.uri = format!("sip:+33612345678@{}", target.addr);
        r.to = format!("<sip:+33612345678@acme.example>;tag={}", unique("made-up"));
        r.cseq = cseq;
        r
    };
    for (method, body) in [
        ("INVITE", Some(("application/sdp", offer(stranger.addr)))),
        ("MESSAGE", Some(("text/plain", "hello".to_owned()))),
        ("BYE", None),
    ] {
        let mut req = invented(method, 2);
        req.body = body;
        stranger.send(&req.text());
        let resp = stranger.final_response(method);
        assert_eq!(
            status(&resp),
            481,
            "{method} in a dialog sipscreen did not admit:\n{resp}"
        );
    }
    // A bare ACK with 1,400 bytes of body, matching no transaction and no dialog: dropped.
    let mut ack = invented("ACK", 1);
    ack.body = Some(("application/octet-stream", "x".repeat(1400)));
    stranger.send(&ack.text());
    stranger.assert_nothing("the stranger", "a stray ACK is never answered");
    target.assert_nothing("the target", "requests of an invented dialog");
    pbx.assert_nothing("requests of an invented dialog");
    trunk.assert_nothing("requests of an invented dialog");

    // The same re-INVITE from the phones' network (a dialog sipscreen does not know, after
    // a restart say) is forwarded as before: the target would have got it, had it been
    // allowed.
    let phone = world.party(PHONES);
    let mut known = new_request("INVITE", phone.addr, proxy, "alice", "+33612345678");
    known.uri = format!("sip:+33612345678@{}", target.addr);
    known.to = format!("<sip:+33612345678@acme.example>;tag={}", unique("old"));
    known.cseq = 2;
    phone.send(&known.text());
    let forwarded = target.request("INVITE");
    target.send(&answer(
        &forwarded,
        481,
        "Call/Transaction Does Not Exist",
        "",
        "",
    ));
    let resp = phone.final_response("INVITE");
    assert_eq!(status(&resp), 481, "{resp}");
    phone.send(&ack_for(&known, &resp));
    target.request("ACK");
    world.finish();
}

// ---------------------------------------------------------------------------------------
// 5. Responses are believed only from where the request went.

#[test]
fn a_forged_response_with_the_right_branch_never_reaches_the_caller() {
    let world = World::start("forged", &Options::default());
    let trunk = world.trunk.silent("trunk");
    let caller = world.party(PHONES);
    let uas = world.callee(&world.pbx);
    let proxy = world.proxy.udp();

    let invite = new_request("INVITE", caller.addr, proxy, CAROL, BOSS);
    caller.send(&invite.text());
    let forwarded = uas.request("INVITE");
    let vias = headers(&forwarded, "Via");
    assert!(
        vias.len() == 2 && vias[0].contains(";branch=z9hG4bK"),
        "sipscreen's Via on top of the caller's:\n{forwarded}"
    );

    // Busy, from someone else, with every Via right (so the branch too).
    let forger = Party::bind(FORGER, proxy);
    forger.send(&answer(&forwarded, 486, "Busy Here", &unique("evil"), ""));
    // And a 200 from the callee's own address but another port.
    let neighbour_port = Party::bind(PHONES, proxy);
    neighbour_port.send(&answer(
        &forwarded,
        200,
        "OK",
        &unique("evil"),
        &format!("Contact: <sip:evil@{}>\r\n", neighbour_port.addr),
    ));
    let got: Vec<String> = caller
        .drain(QUIET)
        .into_iter()
        .filter(|m| status(m) != 100)
        .collect();
    assert!(
        got.is_empty(),
        "forged responses reach nobody; the caller got:\n{}",
        got.join("\n----\n")
    );
    forger.assert_nothing("the forger", "its forged 486");

    // The callee rings and answers: the caller gets both.
    let tag = unique("callee");
    let contact = format!("Contact: <sip:{BOSS}@{}>\r\n", uas.addr);
    uas.send(&answer(&forwarded, 180, "Ringing", &tag, &contact));
    let (ringing, _) = caller.until("180", |m| status(m) == 180);
    assert_eq!(header(&ringing, "Call-ID"), Some(invite.call_id.as_str()));
    uas.send(&answer(&forwarded, 200, "OK", &tag, &contact));
    let (ok, before) = caller.until("200", |m| status(m) == 200);
    assert!(
        before.iter().all(|m| matches!(status(m), 100 | 180)),
        "only 100/180 before the 200: {before:?}"
    );
    assert!(
        header(&ok, "To").is_some_and(|t| t.contains(&tag)),
        "the callee's own 200:\n{ok}"
    );

    // ACK and BYE along the route set reach the callee; its 200 for the BYE comes back.
    let route: String = headers(&ok, "Record-Route")
        .iter()
        .map(|rr| format!("Route: {rr}\r\n"))
        .collect();
    assert!(!route.is_empty(), "sipscreen records its route:\n{ok}");
    let in_dialog = |method: &'static str, cseq: u32| Request {
        method,
        uri: format!("sip:{BOSS}@{}", uas.addr),
        via: caller.addr,
        branch: unique("z9hG4bK-d"),
        from: invite.from.clone(),
        to: header(&ok, "To").unwrap_or_default().to_owned(),
        call_id: invite.call_id.clone(),
        cseq,
        headers: route.clone(),
        body: None,
    };
    caller.send(&in_dialog("ACK", 1).text());
    uas.request("ACK");
    // A re-INVITE whose Request-URI names someone else still reaches the callee alone: a
    // dialog never changes whom it reaches.
    let target = Party::bind(TARGET, proxy);
    let mut reinvite = in_dialog("INVITE", 2);
    reinvite.uri = format!("sip:+33612345678@{}", target.addr);
    caller.send(&reinvite.text());
    let second = uas.request("INVITE");
    assert_eq!(header(&second, "CSeq"), Some("2 INVITE"), "{second}");
    uas.send(&answer(&second, 200, "OK", "", &contact));
    let ok2 = caller.final_response("INVITE");
    assert_eq!(status(&ok2), 200, "{ok2}");
    caller.send(&in_dialog("ACK", 2).text());
    uas.request("ACK");
    target.assert_nothing("the target", "a re-INVITE whose Request-URI names it");
    caller.send(&in_dialog("BYE", 3).text());
    let bye = uas.request("BYE");
    uas.send(&answer(&bye, 200, "OK", "", ""));
    let done = caller.final_response("BYE");
    assert_eq!(status(&done), 200, "{done}");
    trunk.assert_nothing("an internal call");
    world.finish();
}

// ---------------------------------------------------------------------------------------
// 6. Only the caller types the PIN, at a person's pace, over the prompt.

/// Copies SIPp's DTMF captures of `keys` to the test directory (where SIPp reads them).
fn copy_dtmf_captures(dir: &TempDir, keys: &[&str]) {
    for key in keys {
        let name = format!("dtmf_2833_{key}.pcap");
        let from = std::path::Path::new("/usr/share/sip-tester").join(&name);
        fs::copy(&from, dir.path(&name)).unwrap_or_else(|e| {
            panic!(
                "cannot copy {}: {e} (SIPp's DTMF captures come with the Debian package \
                 sip-tester)",
                from.display()
            )
        });
    }
}

#[test]
fn a_pin_typed_over_the_prompt_at_a_persons_pace_is_accepted() {
    let world = World::start("pace", &Options::default());
    let pbx = world.pbx.silent("PBX");
    copy_dtmf_captures(&world.dir, &["1", "2", "3", "4", "pound"]);
    let uas = SippCommand::new("uas", PHONES)
        .args(["-sf", &common::scenario("pin", "uas.xml"), "-m", "1"])
        .port(world.trunk.lend())
        .trace_msg(true)
        .timeout(Duration::from_secs(20))
        .spawn(&world.dir);
    let started = Instant::now();
    let uac = SippCommand::new("uac", PHONES)
        .args(["-sf", &common::scenario("security", "uac_pin_by_rtp.xml")])
        .args(["-s", NUMBER, "-key", "caller", CAROL, "-m", "1"])
        .args([world.proxy.udp().to_string()])
        .trace_msg(true)
        .timeout(Duration::from_secs(20))
        .run(&world.dir, Duration::from_secs(25));
    assert!(
        uac.status.success(),
        "carol typing 1234# over the prompt, a digit every 600 ms, gets through:\n{}\nproxy log:\n{}",
        uac.describe(),
        world.proxy.log_tail()
    );
    assert_eq!(uac.received("SIP/2.0 183").len(), 1, "{}", uac.describe());
    let uas: SippRun = uas.finish(Duration::from_secs(20));
    uas.assert_success();
    let invites = uas.received("INVITE ");
    assert_eq!(invites.len(), 1, "{}", uas.describe());
    assert!(
        invites[0]
            .request_uri()
            .starts_with(&format!("sip:{NUMBER}@")),
        "the trunk gets the call:\n{}",
        invites[0].text
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the whole call took {:?}",
        started.elapsed()
    );
    pbx.assert_nothing("an international call");
    world.finish();
}

/// carol's phone: a SIP socket and an RTP socket on the phones' network.
struct Phone {
    sip: Party,
    rtp: UdpSocket,
}

impl Phone {
    fn new(world: &World) -> Phone {
        let rtp = UdpSocket::bind((PHONES, 0)).expect("bind the phone's RTP socket");
        Phone {
            sip: world.party(PHONES),
            rtp,
        }
    }

    /// carol's INVITE to `dialed` with an SDP offer at her RTP socket.
    fn invite(&self, dialed: &str) -> Request<'static> {
        let mut invite = new_request("INVITE", self.sip.addr, self.sip.proxy, CAROL, dialed);
        let rtp = self.rtp.local_addr().expect("the RTP socket's address");
        invite.body = Some(("application/sdp", offer(rtp)));
        invite
    }

    /// Calls `dialed` and waits for the 183 of the PIN prompt: the INVITE, sipscreen's RTP
    /// address and the 183.
    fn call_prompted(&self, dialed: &str) -> (Request<'static>, SocketAddr, String) {
        let invite = self.invite(dialed);
        self.sip.send(&invite.text());
        let (progress, before) = self
            .sip
            .until("183", |m| status(m) == 183 || status(m) >= 200);
        assert_eq!(
            status(&progress),
            183,
            "carol calling {dialed} is prompted for the PIN: {:?}\n{progress}",
            before.iter().map(|m| first_line(m)).collect::<Vec<_>>()
        );
        let prompt = SocketAddr::new(PHONES, sdp_port(&progress));
        (invite, prompt, progress)
    }

    /// Hangs up a call held for its PIN: 200 for the CANCEL, 487 for the INVITE, ACKed.
    fn hang_up(&self, invite: &Request<'_>) {
        hang_up(&self.sip, invite);
    }
}

/// `party` cancels `invite`, held for its PIN: 200 for the CANCEL, 487 for the INVITE,
/// ACKed.
fn hang_up(party: &Party, invite: &Request<'_>) {
    party.send(&cancel_for(invite));
    let ok = party.final_response("CANCEL");
    assert_eq!(status(&ok), 200, "{ok}");
    let (terminated, _) = party.until("487", |m| status(m) >= 200 && cseq_method(m) == "INVITE");
    assert_eq!(status(&terminated), 487, "{terminated}");
    party.send(&ack_for(invite, &terminated));
}

#[test]
fn digits_from_another_address_are_ignored_and_lock_nobody_out() {
    let world = World::start(
        "foreign-digits",
        &Options {
            lockout_failures: 2,
            ..Options::default()
        },
    );
    let pbx = world.pbx.silent("PBX");
    let trunk_silent = world.trunk.silent("trunk");
    let phone = Phone::new(&world);
    let (invite, prompt, progress) = phone.call_prompted(NUMBER);

    // Someone else types into carol's prompt: the right PIN, then wrong ones, more than
    // `attempts` and `lockout.failures` together.
    let stranger = UdpSocket::bind((STRANGER, 0)).expect("bind the stranger's RTP socket");
    stranger
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("set a read timeout");
    let mut keypad = Keypad::new(&stranger, prompt, 0x5742_4e47);
    keypad.keys(&format!("{PIN}#"), Duration::from_millis(60));
    for _ in 0..5 {
        keypad.keys("99#", Duration::from_millis(60));
    }
    // And by SIP INFO in carol's early dialog (its Call-ID and both tags, as an insider would
    // know them): INFO digits count only from the INVITE's source.
    let intruder = world.party(STRANGER);
    let to = header(&progress, "To").expect("the 183's To").to_owned();
    for (i, key) in format!("{PIN}#").chars().enumerate() {
        let info = Request {
            method: "INFO",
            uri: format!("sip:{NUMBER}@{}", phone.sip.proxy),
            via: intruder.addr,
            branch: unique("z9hG4bK-i"),
            from: invite.from.clone(),
            to: to.clone(),
            call_id: invite.call_id.clone(),
            cseq: 2 + i as u32,
            headers: String::new(),
            body: Some((
                "application/dtmf-relay",
                format!("Signal={key}\r\nDuration=160\r\n"),
            )),
        };
        intruder.send(&info.text());
    }
    let answers: Vec<u16> = intruder.drain(QUIET).iter().map(|m| status(m)).collect();
    assert_eq!(
        answers, [481; 5],
        "INFO from another address in carol's early dialog: not hers, so no dialog of its own"
    );
    let got: Vec<String> = phone
        .sip
        .drain(QUIET)
        .into_iter()
        .filter(|m| status(m) >= 200)
        .collect();
    assert!(
        got.is_empty(),
        "digits from another address neither open nor close carol's call; she got:\n{}",
        got.join("\n----\n")
    );
    trunk_silent.assert_nothing("the right PIN typed from another address");
    let mut buf = [0u8; 2048];
    assert!(
        stranger.recv_from(&mut buf).is_err(),
        "the prompt is never played at the stranger"
    );

    // carol's own digits: the call goes through.
    let trunk = world.callee(&world.trunk);
    Keypad::new(&phone.rtp, prompt, 0x0ca1_0001)
        .keys(&format!("{PIN}#"), Duration::from_millis(60));
    let forwarded = trunk.request("INVITE");
    assert!(
        first_line(&forwarded).starts_with(&format!("INVITE sip:{NUMBER}@")),
        "{forwarded}"
    );
    trunk.send(&answer(&forwarded, 486, "Busy Here", &unique("t"), ""));
    let busy = phone.sip.final_response("INVITE");
    assert_eq!(
        status(&busy),
        486,
        "the trunk's answer reaches carol:\n{busy}"
    );
    phone.sip.send(&ack_for(&invite, &busy));
    trunk.request("ACK");

    // And carol is not locked out: the PIN with the dial prefix opens the trunk again.
    let prefixed = new_request(
        "INVITE",
        phone.sip.addr,
        phone.sip.proxy,
        CAROL,
        &format!("**{PIN}*{NUMBER}"),
    );
    phone.sip.send(&prefixed.text());
    let forwarded = trunk.request("INVITE");
    trunk.send(&answer(&forwarded, 486, "Busy Here", &unique("t"), ""));
    let busy = phone.sip.final_response("INVITE");
    assert_eq!(status(&busy), 486, "not locked out:\n{busy}");
    phone.sip.send(&ack_for(&prefixed, &busy));
    trunk.request("ACK");
    let log = world.proxy.log();
    assert!(!log.contains("locked out"), "nobody was locked out:\n{log}");
    pbx.assert_nothing("international calls");
    world.finish();
}

// ---------------------------------------------------------------------------------------
// 7. Timeouts fire on time, whatever digits came.

#[test]
fn one_digit_and_silence_get_the_prompt_again_then_403_on_time() {
    let world = World::start(
        "timeouts",
        &Options {
            attempts: 2,
            first_digit_s: 2,
            inter_digit_s: 2,
            ..Options::default()
        },
    );
    let (pbx, trunk) = (world.pbx.silent("PBX"), world.trunk.silent("trunk"));
    let phone = Phone::new(&world);
    let (invite, prompt, _) = phone.call_prompted(NUMBER);
    let t183 = Instant::now();
    phone
        .rtp
        .set_read_timeout(Some(Duration::from_millis(10)))
        .expect("set a read timeout");
    phone
        .sip
        .socket
        .set_nonblocking(true)
        .expect("set non-blocking");

    // Listen to the prompt, type one digit 300 ms in, then nothing: note every RTP packet
    // until the 403.
    let mut packets: Vec<Instant> = Vec::new();
    let mut digit_at = None;
    let mut rejected = None;
    let mut buf = [0u8; 65_535];
    let deadline = t183 + Duration::from_secs(15);
    while rejected.is_none() && Instant::now() < deadline {
        if let Ok((_, from)) = phone.rtp.recv_from(&mut buf) {
            assert_eq!(from, prompt, "the prompt comes from its port");
            packets.push(Instant::now());
        }
        if digit_at.is_none() && t183.elapsed() >= Duration::from_millis(300) {
            Keypad::new(&phone.rtp, prompt, 0x0ca1_0002).key('7');
            digit_at = Some(Instant::now());
        }
        while let Ok(n) = phone.sip.socket.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            if status(&msg) >= 200 {
                rejected = Some((Instant::now(), msg));
            }
        }
    }
    phone
        .sip
        .socket
        .set_nonblocking(false)
        .expect("set blocking");
    let Some((rejected_at, resp)) = rejected else {
        panic!(
            "no final response within 15 s of the 183 ({} RTP packets)",
            packets.len()
        );
    };
    let digit_at = digit_at.expect("the digit was sent");
    let ms = |t: Instant| t.saturating_duration_since(t183).as_millis();
    let timeline: Vec<u128> = packets.iter().map(|&t| ms(t)).collect();
    assert_eq!(status(&resp), 403, "{resp}");
    phone.sip.send(&ack_for(&invite, &resp));

    // Barge-in: the digit stopped the prompt (what was in flight aside).
    let before = packets.iter().filter(|&&t| t < digit_at).count();
    assert!(
        before >= 5,
        "the prompt played before the digit: {timeline:?}"
    );
    let settle = digit_at + Duration::from_millis(200);
    let again = packets
        .iter()
        .copied()
        .find(|&t| t > settle)
        .unwrap_or_else(|| panic!("the prompt never played again: {timeline:?}"));
    let gap = again.duration_since(digit_at);
    assert!(
        (Duration::from_millis(1_700)..=Duration::from_millis(3_500)).contains(&gap),
        "the prompt plays again when the inter-digit timeout (2 s) fires after the digit, \
         not {gap:?} later (ms after the 183, digit at {}): {timeline:?}",
        ms(digit_at)
    );
    let replayed = packets.iter().filter(|&&t| t >= again).count();
    assert!(
        replayed >= 50,
        "the whole prompt (1.4 s, 70 packets) is played again: {replayed}"
    );
    // Then silence: the first-digit timeout (2 s after the prompt ends) spends the second
    // and last attempt: 403.
    let after = rejected_at.duration_since(again);
    assert!(
        (Duration::from_millis(2_800)..=Duration::from_millis(5_500)).contains(&after),
        "403 about 1.4 s + 2 s after the second prompt started, not {after:?}: 183 at 0, \
         digit at {} ms, prompt again at {} ms, 403 at {} ms",
        ms(digit_at),
        ms(again),
        ms(rejected_at)
    );
    assert_eq!(header(&resp, "Reason"), Some(REJECT_REASON), "{resp}");
    pbx.assert_nothing("a call whose PIN never came");
    trunk.assert_nothing("a call whose PIN never came");
    world.finish();
}

// ---------------------------------------------------------------------------------------
// 8. Guessing the PIN with the dial prefix ends at the lockout.

#[test]
fn sixty_dial_prefix_guesses_are_locked_out_before_the_right_one() {
    let world = World::start("prefix-guessing", &Options::default());
    let (pbx, trunk) = (world.pbx.silent("PBX"), world.trunk.silent("trunk"));
    let phone = world.party(PHONES);
    let proxy = world.proxy.udp();
    let started = Instant::now();
    let mut codes = Vec::new();
    for guess in 1200..1260 {
        let dialed = format!("**{guess}*{NUMBER}");
        let invite = new_request("INVITE", phone.addr, proxy, CAROL, &dialed);
        phone.send(&invite.text());
        let resp = phone.final_response("INVITE");
        phone.send(&ack_for(&invite, &resp));
        codes.push((guess, status(&resp)));
    }
    let not_403: Vec<&(u32, u16)> = codes.iter().filter(|(_, c)| *c != 403).collect();
    assert!(
        not_403.is_empty(),
        "every guess is refused, the right one ({PIN}) too once locked out: {not_403:?}"
    );
    trunk.assert_nothing("sixty dial-prefix guesses, the 35th of them right");
    pbx.assert_nothing("sixty dial-prefix guesses");
    let log = world.proxy.log();
    assert!(
        log.contains("locked out"),
        "the lockout is logged:\n{}",
        world.proxy.log_tail()
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "sixty refusals took {:?}",
        started.elapsed()
    );
    world.finish();
}

// ---------------------------------------------------------------------------------------
// 9. A real dialog still works both ways when the callee is no source of the tenant.

#[test]
fn a_callee_that_is_no_source_hangs_up_through_the_proxy_after_a_reinvite() {
    let world = World::start(
        "dialog",
        &Options {
            pbx: CALLEE,
            ..Options::default()
        },
    );
    let trunk = world.trunk.silent("trunk");
    let uas = SippCommand::new("uas", CALLEE)
        .args(["-sf", &common::scenario("security", "dialog_uas.xml")])
        .args(["-m", "1", "-bind_local"])
        .port(world.pbx.lend())
        .trace_msg(true)
        .timeout(Duration::from_secs(20))
        .spawn(&world.dir);
    let uac = SippCommand::new("uac", PHONES)
        .args(["-sf", &common::scenario("security", "dialog_uac.xml")])
        .args(["-s", BOSS, "-key", "caller", CAROL, "-m", "1"])
        .args([world.proxy.udp().to_string()])
        .trace_msg(true)
        .timeout(Duration::from_secs(20))
        .run(&world.dir, Duration::from_secs(25));
    let uas = uas.finish(Duration::from_secs(20));
    assert!(
        uac.status.success() && uas.status.success(),
        "the call, its re-INVITE and the callee's BYE all pass:\n{}\n{}\nproxy log:\n{}",
        uac.describe(),
        uas.describe(),
        world.proxy.log_tail()
    );
    // The callee's requests reached the caller through sipscreen: its Via on top.
    let proxy = world.proxy.udp();
    let via = format!("SIP/2.0/UDP {proxy};branch=z9hG4bK");
    let byes = uac.received("BYE ");
    assert_eq!(byes.len(), 1, "{}", summary(&uac.messages()));
    let vias = byes[0].headers("Via");
    assert!(
        vias.len() == 2 && vias[0].starts_with(&via) && vias[1].contains(&CALLEE.to_string()),
        "the callee's BYE came through sipscreen:\n{}",
        byes[0].text
    );
    let reinvites: Vec<_> = uas
        .received("INVITE ")
        .into_iter()
        .filter(|m| m.header("CSeq").as_deref() == Some("2 INVITE"))
        .collect();
    assert_eq!(reinvites.len(), 1, "{}", summary(&uas.messages()));
    assert!(
        reinvites[0]
            .header("Via")
            .is_some_and(|v| v.starts_with(&via)),
        "the re-INVITE came through sipscreen:\n{}",
        reinvites[0].text
    );
    trunk.assert_nothing("an internal call");
    world.finish();
}

// ---------------------------------------------------------------------------------------
// 10. The prompt is never played at a third party.

#[test]
fn the_prompt_of_a_caller_known_only_by_password_goes_where_the_invite_came_from() {
    let world = World::start("prompt-target", &Options::default());
    let (pbx, trunk) = (world.pbx.silent("PBX"), world.trunk.silent("trunk"));
    let stranger = world.party(STRANGER);
    let proxy = world.proxy.udp();
    // The victim's RTP port, and the stranger's own socket at the same port number.
    let (victim, own_rtp) = (0..20)
        .find_map(|_| {
            let victim = UdpSocket::bind((TARGET, 0)).ok()?;
            let port = victim.local_addr().ok()?.port();
            let own = UdpSocket::bind((STRANGER, port)).ok()?;
            Some((victim, own))
        })
        .expect("one port free on 127.0.0.5 and on 127.0.0.3");
    let aimed_at = victim.local_addr().expect("the victim's address");
    for socket in [&victim, &own_rtp] {
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("set a read timeout");
    }

    // carol's password, from the stranger's address, with an offer aimed at the victim.
    let first = new_request("INVITE", stranger.addr, proxy, CAROL, NUMBER);
    stranger.send(&first.text());
    let challenge = stranger.final_response("INVITE");
    assert_eq!(status(&challenge), 407, "{challenge}");
    stranger.send(&ack_for(&first, &challenge));
    let mut invite = new_request("INVITE", stranger.addr, proxy, CAROL, NUMBER);
    invite.headers += &authorization(
        &challenge,
        Algorithm::Md5,
        "carol",
        "carol-pw",
        "INVITE",
        &invite.uri,
        1,
    );
    invite.body = Some(("application/sdp", offer(aimed_at)));
    stranger.send(&invite.text());
    let (progress, _) = stranger.until("183", |m| status(m) == 183 || status(m) >= 200);
    assert_eq!(
        status(&progress),
        183,
        "carol, known by her password, is prompted:\n{progress}"
    );

    // The prompt plays at the INVITE's source address, at the offer's port.
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut heard = 0;
    while heard < 10 && Instant::now() < deadline {
        if own_rtp.recv_from(&mut buf).is_ok() {
            heard += 1;
        }
    }
    assert!(
        heard >= 10,
        "the prompt plays at the INVITE's source address, at the offer's port"
    );
    assert!(
        victim.recv_from(&mut buf).is_err(),
        "the prompt is never played at the offer's address {aimed_at} when nobody vouches for it"
    );
    hang_up(&stranger, &invite);
    pbx.assert_nothing("a call held for its PIN");
    trunk.assert_nothing("a call held for its PIN");
    world.finish();
}

// ---------------------------------------------------------------------------------------
// 11. A user has at most two prompts at a time.

#[test]
fn a_third_prompt_at_once_for_one_user_is_refused() {
    let world = World::start("two-prompts", &Options::default());
    let (pbx, trunk) = (world.pbx.silent("PBX"), world.trunk.silent("trunk"));
    let phones: Vec<Phone> = (0..4).map(|_| Phone::new(&world)).collect();
    let (first, _, _) = phones[0].call_prompted(NUMBER);
    let (second, _, _) = phones[1].call_prompted(NUMBER);
    // The third at once: refused, though prompt ports are free (four in rtp_ports).
    let third = phones[2].invite(NUMBER);
    phones[2].sip.send(&third.text());
    let refused = phones[2].sip.final_response("INVITE");
    assert_eq!(
        status(&refused),
        403,
        "a third PIN prompt at once for carol:\n{refused}"
    );
    phones[2].sip.send(&ack_for(&third, &refused));
    // Once one ends, carol may be prompted again.
    phones[0].hang_up(&first);
    let (fourth, _, _) = phones[3].call_prompted(NUMBER);
    phones[1].hang_up(&second);
    phones[3].hang_up(&fourth);
    pbx.assert_nothing("calls held for their PIN");
    trunk.assert_nothing("calls held for their PIN");
    world.finish();
}
