//! The whole sans-I/O proxy core fed a short conversation: messages from phones of a tenant's
//! network (UDP and TCP), a trusted PBX (the next hop), a trunk and strangers (IPv4, IPv6,
//! TCP), responses to what the proxy forwarded, RTP to a PIN prompt, failed sends, and the
//! clock moved on between them, every timer fired on the way.
//!
//! Input: segments separated by two 0xFF bytes (never in UTF-8 text, and RTP and binary
//! junk may hold NULs); each starts with one control byte:
//! - bits 0-2: a peer of [`PEERS`] (for a reply: which of the last requests sent to answer);
//! - bits 3-4: 0 a message from that peer; 1 a response to one of the last 8 requests the
//!   proxy sent, from where it went (first 3 digits: the status, then extra header lines
//!   and body); 2 an RTP packet to the PIN prompt's port from the peer's host, port 6000;
//!   3 a failed send to that peer;
//! - bits 5-7: how far the clock moves first ([`STEPS`]).
//!
//! In a message, `@TAG@` stands for the last To tag the proxy gave, and `@AUTH@` for right
//! digest credentials answering its last 407 (for this message's method and Request-URI), so
//! that early dialogs and digest admission are reachable.
//!
//! Invariant (the byte editor): every SIP message the proxy sends parses again with
//! `Message::parse`, except the 400 answers to requests that did not parse themselves
//! (those copy the request's Via, From, To, Call-ID and CSeq lines as received, RFC 3261
//! §8.2.6). And the clock: after `handle_timeout(now)`, nothing is due at `now` any more.
//!
//! With `SIPSCREEN_FUZZ_DEBUG` set in the environment, each step and the first line of each
//! message sent are printed (to check what a seed reaches: run the target's binary on it).
#![no_main]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use sipscreen::config::Config;
use sipscreen::policy::Policy;
use sipscreen::proxy::auth::{
    self, Algorithm, AuthUser, Credentials, Directory, Realm, UserSecret,
};
use sipscreen::proxy::{MediaCommand, Peer, Proxy, Secret, Settings, Transport};
use sipscreen::sip::{HeaderName, Message};

const CONFIG: &str = r#"
[server]
listen = ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"]
next_hop = "udp:127.0.0.9:5070"
trusted_peers = ["127.0.0.9/32", "2001:db8::9/128"]
record_route = true
reject_reason = "Q.850;cause=21"

[limits]
max_message_size = 65536
max_transactions = 64

[pin]
attempts = 2
max_digits = 8
first_digit_timeout_s = 2
inter_digit_timeout_s = 1
rtp_ports = "41000-41003"
dial_prefix = "**"
lockout = { failures = 3, window_s = 60, lock_s = 120 }

[brand]
name = "fuzz"

[[brand.acl_patterns]]
name = "es-mobile"
regex = '^34[67][0-9]{8}$'

[[tenant]]
name = "acme"
domains = ["acme.example.com"]
sources = ["127.0.0.1/32"]
country = "ES"

  [[tenant.call_acls]]
  name = "mobile-only"
  default = "deny"
  rules = [{ metric = 10, pattern = "es-mobile", action = "allow" }]

  [[tenant.users]]
  name = "alice"
  extension = "1001"

  [[tenant.users]]
  name = "bob"
  extension = "1002"
  call_acl = "mobile-only"

  [[tenant.users]]
  name = "carol"
  extension = "1003"
  country = "FR"

  [[tenant.groups]]
  name = "sales"
  number = "2000"
  members = ["alice", "bob"]

  [[tenant.outcalls]]
  name = "trunk"
  patterns = ["_[6789]XXXXXXXX", "_00X.", "_+X."]
  next_hop = "udp:127.0.0.3:5072"

  [[tenant.incalls]]
  name = "main-did"
  did = "+34910000000"
  destination = "alice"

  [[tenant.call_permissions]]
  name = "pin-intl"
  extensions = ["_00X.", "_+X."]
  password = "1234"
  users = ["alice"]

  [[tenant.call_permissions]]
  name = "no-premium"
  extensions = ["_90[57]XXXXXX"]
  users = ["carol"]

  [[tenant.call_permissions]]
  name = "blocked-callers"
  extensions = ["_+34666XXXXXX"]
  incalls = ["main-did"]

[[tenant]]
name = "beta"
domains = ["beta.example.org"]
country = "US"

  [[tenant.users]]
  name = "zed"
  extension = "200"
"#;

/// Who sends: 0-1 phones of acme's network, 2 the trusted PBX (the next hop), 3 the trunk,
/// 4-6 strangers, 7 a trusted peer over IPv6.
const PEERS: [(Transport, &str); 8] = [
    (Transport::Udp, "127.0.0.1:5061"),
    (Transport::Tcp, "127.0.0.1:5062"),
    (Transport::Udp, "127.0.0.9:5070"),
    (Transport::Udp, "127.0.0.3:5072"),
    (Transport::Udp, "203.0.113.5:5060"),
    (Transport::Tcp, "203.0.113.6:40000"),
    (Transport::Udp, "[2001:db8::7]:5060"),
    (Transport::Udp, "[2001:db8::9]:5060"),
];

/// Clock steps: none, one RTP frame, T1, 1 s, T2+, Timer B, past Timer C, past a lockout.
const STEPS: [Duration; 8] = [
    Duration::ZERO,
    Duration::from_millis(20),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(4),
    Duration::from_secs(33),
    Duration::from_secs(181),
    Duration::from_secs(700),
];

const STATUSES: [u16; 16] = [
    100, 180, 183, 200, 202, 301, 302, 401, 407, 408, 480, 486, 487, 500, 503, 603,
];

const MAX_SEGMENTS: usize = 48;
/// Timer firings per clock step, beyond which the step is cut short (a step of minutes
/// with a prompt playing is a few thousand RTP frames).
const MAX_FIRINGS: usize = 20_000;

struct Base {
    debug: bool,
    settings: Settings,
    policy: Arc<Policy>,
    peers: Vec<Peer>,
}

fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        let mut config =
            Config::from_toml(CONFIG, "fuzz.toml", None).expect("the fuzz configuration is valid");
        let s = &mut config.proxy;
        // Deterministic branches, tags and nonces.
        s.secret = Secret::new([0x5a; 32]);
        s.limits.max_dialogs = 6;
        s.limits.dialog_timeout = Duration::from_secs(600);
        s.limits.per_source.requests_per_s = 2;
        s.limits.per_source.burst = 6;
        s.limits.per_source.ban = Duration::from_secs(30);
        let mut acme = HashMap::new();
        acme.insert(
            "alice".into(),
            AuthUser {
                user: 0,
                secret: UserSecret::Password("s3cret".into()),
            },
        );
        let mut beta = HashMap::new();
        beta.insert(
            "zed".into(),
            AuthUser {
                user: 0,
                secret: UserSecret::Ha1Md5(Algorithm::Md5.hash("zed:beta:pw").into()),
            },
        );
        s.auth = Arc::new(Directory {
            tenants: vec![
                Realm {
                    realm: "acme.example.com".into(),
                    users: acme,
                },
                Realm {
                    realm: "beta".into(),
                    users: beta,
                },
            ],
        });
        Base {
            debug: std::env::var_os("SIPSCREEN_FUZZ_DEBUG").is_some(),
            settings: config.proxy,
            policy: config.policy,
            peers: PEERS
                .iter()
                .map(|&(transport, addr)| Peer {
                    transport,
                    addr: addr.parse().expect("a socket address"),
                })
                .collect(),
        }
    })
}

struct World {
    proxy: Proxy,
    now: Instant,
    /// The last requests the proxy sent, and where.
    requests: VecDeque<(Peer, Vec<u8>)>,
    /// The last To tag of ours seen in a response.
    tag: Option<String>,
    /// Realm and nonce of the last 407.
    challenge: Option<(String, String)>,
    nc: u32,
    prompt_ports: Vec<u16>,
}

fn quoted_param<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let start = text.find(name)? + name.len();
    let rest = &text[start..];
    Some(&rest[..rest.find('"')?])
}

impl World {
    /// Everything the proxy wants sent or opened since the last call. `from_unparsed`: the
    /// message just handled did not parse, so its 400 may copy unparseable lines.
    fn drain(&mut self, from_unparsed: bool) {
        while let Some(cmd) = self.proxy.poll_media() {
            match cmd {
                MediaCommand::Open(addr) => self.prompt_ports.push(addr.port()),
                MediaCommand::Close(port) => self.prompt_ports.retain(|&p| p != port),
            }
        }
        while let Some(t) = self.proxy.poll_transmit() {
            if t.from.port() != 5060 {
                continue; // the PIN prompt's RTP
            }
            let response = t.bytes.starts_with(b"SIP/2.0 ");
            if base().debug {
                let first = t.bytes.split(|&b| b == b'\r').next().unwrap_or(&[]);
                eprintln!("   -> {}: {}", t.to, String::from_utf8_lossy(first));
            }
            let msg = match Message::parse(&t.bytes) {
                Ok(m) => m,
                Err(_) if from_unparsed && response => continue,
                Err(e) => panic!(
                    "the proxy sent a message that does not parse ({e}) to {}:\n{}",
                    t.to,
                    String::from_utf8_lossy(&t.bytes)
                ),
            };
            if !response {
                self.requests.push_back((t.to, t.bytes));
                if self.requests.len() > 8 {
                    self.requests.pop_front();
                }
                continue;
            }
            if let Some(tag) = msg.to().and_then(|to| to.tag()) {
                if tag.starts_with("ss") {
                    self.tag = Some(tag.to_owned());
                }
            }
            if msg.status() == Some(407) {
                if let Some(v) = msg
                    .headers()
                    .iter()
                    .find(|h| {
                        msg.text(&h.name_range)
                            .eq_ignore_ascii_case("proxy-authenticate")
                    })
                    .map(|h| msg.text(&h.value))
                {
                    if let (Some(realm), Some(nonce)) =
                        (quoted_param(v, "realm=\""), quoted_param(v, "nonce=\""))
                    {
                        self.challenge = Some((realm.to_owned(), nonce.to_owned()));
                    }
                }
            }
        }
    }

    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        let mut firings = 0;
        while let Some(t) = self.proxy.poll_timeout().filter(|t| *t <= end) {
            self.now = t.max(self.now);
            self.proxy.handle_timeout(self.now);
            self.drain(false);
            if let Some(next) = self.proxy.poll_timeout() {
                assert!(
                    next > self.now,
                    "a timer still due after handle_timeout: the I/O loop would spin"
                );
            }
            firings += 1;
            if firings >= MAX_FIRINGS {
                break;
            }
        }
        self.now = self.now.max(end);
        self.proxy.handle_timeout(self.now);
        self.drain(false);
    }

    /// Right credentials for a request whose start line begins `text`, answering the last
    /// 407.
    fn credentials(&mut self, text: &str) -> String {
        let Some((realm, nonce)) = self.challenge.clone() else {
            return String::new();
        };
        let mut parts = text.split(' ');
        let method = parts.next().unwrap_or("");
        let uri = parts.next().unwrap_or("");
        self.nc += 1;
        let nc = format!("{:08x}", self.nc);
        let (user, alg, ha1) = if realm == "beta" {
            let alg = Algorithm::Md5;
            ("zed", alg, alg.hash("zed:beta:pw"))
        } else {
            let alg = if self.nc.is_multiple_of(2) {
                Algorithm::Sha256
            } else {
                Algorithm::Md5
            };
            ("alice", alg, alg.hash(&format!("alice:{realm}:s3cret")))
        };
        let c = Credentials {
            username: user,
            realm: &realm,
            nonce: &nonce,
            uri,
            response: "",
            algorithm: Some(alg.name()),
            cnonce: "fz",
            qop: "auth",
            nc: &nc,
        };
        let response = auth::response(alg, &ha1, &c, method);
        format!(
            "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
             response=\"{response}\", algorithm={}, cnonce=\"fz\", qop=auth, nc={nc}",
            alg.name()
        )
    }

    fn message(&mut self, from: Peer, seg: &[u8]) {
        let mut bytes = seg.to_vec();
        if memchr_at(&bytes, b"@TAG@") {
            let tag = self.tag.clone().unwrap_or_default();
            bytes = replace(&bytes, b"@TAG@", tag.as_bytes());
        }
        if memchr_at(&bytes, b"@AUTH@") {
            let first = String::from_utf8_lossy(bytes.split(|&b| b == b'\r').next().unwrap_or(&[]))
                .into_owned();
            let creds = self.credentials(&first);
            bytes = replace(&bytes, b"@AUTH@", creds.as_bytes());
        }
        let unparsed = Message::parse(&bytes).is_err();
        self.proxy.handle_message(self.now, from, &bytes);
        self.drain(unparsed);
    }

    /// A response from where one of the last requests went.
    fn reply(&mut self, which: usize, seg: &[u8]) {
        if self.requests.is_empty() {
            return;
        }
        let i = self.requests.len() - 1 - which % self.requests.len();
        let (to, req) = self.requests[i].clone();
        let Ok(req) = Message::parse(&req) else {
            return;
        };
        let (code, rest) = match seg.get(..3).and_then(|c| std::str::from_utf8(c).ok()) {
            Some(c) if c.bytes().all(|b| b.is_ascii_digit()) => {
                (c.parse::<u16>().unwrap_or(200), &seg[3..])
            }
            _ => (
                STATUSES[usize::from(seg.first().copied().unwrap_or(3)) % STATUSES.len()],
                seg.get(1..).unwrap_or(&[]),
            ),
        };
        let mut out = format!("SIP/2.0 {code} Fuzz\r\n").into_bytes();
        for h in req.headers() {
            let line = &req.bytes()[h.line.clone()];
            match h.name {
                HeaderName::Via | HeaderName::From | HeaderName::CallId | HeaderName::CSeq => {
                    out.extend_from_slice(line)
                }
                HeaderName::To => {
                    let value = req.text(&h.value);
                    if code > 100 && !value.contains("tag=") {
                        out.extend_from_slice(format!("To: {value};tag=fz\r\n").as_bytes());
                    } else {
                        out.extend_from_slice(line);
                    }
                }
                _ => {}
            }
        }
        out.extend_from_slice(rest);
        if !rest.windows(4).any(|w| w == b"\r\n\r\n") {
            out.extend_from_slice(b"\r\n");
        }
        self.proxy.handle_message(self.now, to, &out);
        let unparsed = Message::parse(&out).is_err();
        self.drain(unparsed);
    }

    fn rtp(&mut self, from: Peer, seg: &[u8]) {
        let Some(&port) = self.prompt_ports.last() else {
            return;
        };
        let src = SocketAddr::new(from.addr.ip(), 6000);
        self.proxy.handle_rtp(self.now, port, src, seg);
        self.drain(false);
    }
}

/// The input cut at each `FF FF`.
fn segments(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let d = rest?;
        match d.windows(2).position(|w| w == [0xff, 0xff]) {
            Some(i) => {
                rest = Some(&d[i + 2..]);
                Some(&d[..i])
            }
            None => {
                rest = None;
                Some(d)
            }
        }
    })
}

fn memchr_at(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn replace(hay: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len() + with.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

fuzz_target!(
    // The configuration is checked once, before libFuzzer's clock starts: loading the
    // phone-number metadata takes seconds under AddressSanitizer, too close to -timeout.
    init: {
        base();
    },
    |data: &[u8]| run(data)
);

fn run(data: &[u8]) {
    let base = base();
    let start = Instant::now();
    let mut w = World {
        proxy: Proxy::new(base.settings.clone(), base.policy.clone()),
        now: start,
        requests: VecDeque::new(),
        tag: None,
        challenge: None,
        nc: 0,
        prompt_ports: Vec::new(),
    };
    for seg in segments(data).take(MAX_SEGMENTS) {
        let Some((&ctrl, body)) = seg.split_first() else {
            continue;
        };
        let peer = base.peers[usize::from(ctrl & 7)];
        w.advance(STEPS[usize::from(ctrl >> 5)]);
        if base.debug {
            let first = body.split(|&b| b == b'\r').next().unwrap_or(&[]);
            eprintln!(
                "{:?} +{:?} action {} peer {}: {}",
                w.now.duration_since(start),
                STEPS[usize::from(ctrl >> 5)],
                (ctrl >> 3) & 3,
                peer,
                String::from_utf8_lossy(first)
            );
        }
        match (ctrl >> 3) & 3 {
            0 => w.message(peer, body),
            1 => w.reply(usize::from(ctrl & 7), body),
            2 => w.rtp(peer, body),
            _ => {
                w.proxy.handle_send_error(w.now, peer);
                w.drain(false);
            }
        }
    }
    // Let every transaction, prompt and dialog run out.
    for _ in 0..4 {
        w.advance(Duration::from_secs(700));
    }
}
