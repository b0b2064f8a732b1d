//! End-to-end tests of the limits that protect the proxy (SPEC §7): per-source rate limiting
//! of an untrusted source, and shedding with `503` beyond `max_transactions` (new calls only:
//! the calls in flight go on). The built `sipscreen run` sits between SIPp peers on loopback;
//! a flooder is a plain UDP socket of the test bound to another loopback address (127.0.0.3),
//! which is neither a trusted peer nor a tenant source, so every request it sends is refused
//! (`403`) until it is banned.
//!
//! Each test prints its figures (run with `-- --nocapture` to see them); BENCHMARKS.md quotes
//! them. SIPp (Debian package `sip-tester`) is required, as for `tests/sipp.rs`. With
//! `LIMITS_TRACE` set in the environment, the callee and the burst's callers log every message
//! (`-trace_msg`) in the test's directory, which is kept when the test fails.

mod common;
use common::net::NextHop;
use common::proxy::Sipscreen;
use common::sipp::{Sipp, SippCommand, SippRun};
use common::TempDir;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Where the tenant's phones, the callee and sipscreen are: the tenant's only source.
const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Where the flooder sends from: not a trusted peer, not a tenant source.
const STRANGER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
/// A number the configuration allows; `tests/sipp/slow_uas.xml` answers it at once.
const QUICK: &str = "600000002";
/// A number `tests/sipp/slow_uas.xml` answers only after a second.
const SLOW: &str = "600000001";
/// SIPp's own time limit (`-timeout`) in this suite.
const SIPP_TIMEOUT: Duration = Duration::from_secs(30);

fn scenario(name: &str) -> String {
    common::scenario("sipp", name)
}

/// One tenant whose only source is 127.0.0.1, an outcall for every number, no trusted peer;
/// `limits` is the body of `[limits]`.
fn config(next_hop: SocketAddr, limits: &str) -> String {
    format!(
        r#"[server]
listen = ["udp:{LOCAL}:0"]
next_hop = "udp:{next_hop}"
record_route = true

[limits]
{limits}

[brand]
name = "limits-tests"

[[tenant]]
name = "acme"
country = "ES"
sources = ["127.0.0.1/32"]

  [[tenant.outcalls]]
  name = "everything"
  patterns = ["_X."]
"#
    )
}

/// A SIPp UAS at `next_hop` (`-sf FILE`), unbounded in calls: it is stopped by PID at the
/// end of the test.
fn callee(dir: &TempDir, next_hop: &NextHop, file: &str) -> Sipp {
    SippCommand::new("uas", LOCAL)
        .args(["-sf", &scenario(file), "-t", "u1"])
        .port(next_hop.lend())
        .timeout(Duration::from_secs(60))
        .trace_msg(std::env::var_os("LIMITS_TRACE").is_some())
        .spawn(dir)
}

/// A SIPp UAC through sipscreen (`-sf FILE`), dialing `service`, counting its messages.
fn caller(name: &str, proxy: SocketAddr, file: &str, service: &str) -> SippCommand {
    SippCommand::new(name, LOCAL)
        .args(["-sf", &scenario(file), &proxy.to_string(), "-t", "u1"])
        .args(["-s", service])
        // SIPp's 64 KiB socket buffers drop datagrams in bursts (see BENCHMARKS.md).
        .args(["-buff_size", "4194304"])
        .trace_counts(true)
        .timeout(SIPP_TIMEOUT)
}

// ---------------------------------------------------------------------------------------
// A flooder: INVITEs from a plain socket at a fixed rate, every answer timed.

/// The status code and Call-ID of a response.
fn code_and_call_id(datagram: &[u8]) -> Option<(u16, String)> {
    let text = String::from_utf8_lossy(datagram);
    let code = text.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()?;
    let call_id = text.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        (name.trim().eq_ignore_ascii_case("call-id") || name.trim() == "i")
            .then(|| value.trim().to_owned())
    })?;
    Some((code, call_id))
}

/// A request of the flooder: an INVITE to sipscreen itself, numbered `n` in its Call-ID.
fn flood_invite(local: SocketAddr, proxy: SocketAddr, n: usize) -> String {
    let ip = local.ip();
    format!(
        "INVITE sip:600123456@{proxy} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bKflood{n};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:flood@{ip}>;tag=flood{n}\r\n\
         To: <sip:600123456@{proxy}>\r\n\
         Call-ID: flood-{n}@{ip}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:flood@{local}>\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// A socket on `ip` that sends numbered INVITEs to sipscreen and times every answer.
struct Flooder {
    socket: UdpSocket,
    local: SocketAddr,
    proxy: SocketAddr,
    /// When each request was sent, by number.
    sent: Vec<Instant>,
}

/// An answer: the number of the request it answers, and its status code.
struct Answer {
    n: usize,
    code: u16,
}

impl Flooder {
    fn new(ip: IpAddr, proxy: SocketAddr) -> Flooder {
        let socket = UdpSocket::bind((ip, 0)).expect("bind the flooder's socket");
        let local = socket.local_addr().expect("the flooder's address");
        Flooder {
            socket,
            local,
            proxy,
            sent: Vec::new(),
        }
    }

    fn send_one(&mut self) -> usize {
        let n = self.sent.len();
        let request = flood_invite(self.local, self.proxy, n);
        self.socket
            .send_to(request.as_bytes(), self.proxy)
            .expect("send to sipscreen");
        self.sent.push(Instant::now());
        n
    }

    /// Sends `rate` requests a second for `duration` (paced, never faster), collecting the
    /// answers in a thread of its own, and waits `linger` after the last one for theirs.
    fn flood(&mut self, rate: u32, duration: Duration, linger: Duration) -> Vec<Answer> {
        let stop = Arc::new(AtomicBool::new(false));
        let receiver = {
            let socket = self.socket.try_clone().expect("share the flooder's socket");
            socket
                .set_read_timeout(Some(Duration::from_millis(50)))
                .expect("set a read timeout");
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                let mut answers = Vec::new();
                let mut buf = [0u8; 65_535];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(len) = socket.recv(&mut buf) {
                        answers.push((buf[..len].to_vec(), Instant::now()));
                    }
                }
                answers
            })
        };
        let start = Instant::now();
        let period = Duration::from_secs(1) / rate;
        let first = self.sent.len();
        let count = (duration.as_secs_f64() * f64::from(rate)) as u32;
        for i in 0..count {
            let at = start + period * i;
            if let Some(wait) = at.checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
            self.send_one();
        }
        thread::sleep(linger);
        stop.store(true, Ordering::Relaxed);
        let answers = receiver.join().expect("the flooder's receiver");
        let ip = self.local.ip();
        answers
            .iter()
            .filter_map(|(datagram, _at)| {
                let (code, call_id) = code_and_call_id(datagram)?;
                let n = call_id
                    .strip_prefix("flood-")?
                    .strip_suffix(&format!("@{ip}"))?
                    .parse()
                    .ok()?;
                (n >= first).then_some(Answer { n, code })
            })
            .collect()
    }

    /// One request; its answer's status code, or `None` when none comes within `limit`.
    fn one(&mut self, limit: Duration) -> Option<u16> {
        let n = self.send_one();
        let deadline = Instant::now() + limit;
        let mut buf = [0u8; 65_535];
        let want = format!("flood-{n}@{}", self.local.ip());
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            self.socket
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .expect("set a read timeout");
            if let Ok(len) = self.socket.recv(&mut buf) {
                match code_and_call_id(&buf[..len]) {
                    Some((code, call_id)) if call_id == want => return Some(code),
                    _ => continue, // a late answer to an earlier request
                }
            }
        }
        None
    }

    /// Seconds from the first request to request `n`'s sending.
    fn at(&self, n: usize) -> f64 {
        self.sent[n].duration_since(self.sent[0]).as_secs_f64()
    }
}

/// Requests sent and answered in each second of the flood, as a table.
fn per_second(flooder: &Flooder, answers: &[Answer]) -> String {
    let seconds = flooder.at(flooder.sent.len() - 1) as usize + 1;
    let mut sent = vec![0usize; seconds];
    let mut answered = vec![0usize; seconds];
    for n in 0..flooder.sent.len() {
        sent[flooder.at(n) as usize] += 1;
    }
    for a in answers {
        answered[flooder.at(a.n) as usize] += 1;
    }
    let mut table = String::from("  second | requests sent | answered (403)\n");
    for s in 0..seconds {
        table.push_str(&format!(
            "  {s:>4}-{:<2}| {:>13} | {:>14}\n",
            s + 1,
            sent[s],
            answered[s]
        ));
    }
    table
}

// ---------------------------------------------------------------------------------------
// 1. A flooding source is banned; the tenant's calls go on.

/// `per_source`: 20 requests/s, bursts of 40, banned for 3 s.
const RATE: u32 = 20;
const BURST: usize = 40;
const BAN: Duration = Duration::from_secs(3);
/// The flood: 20 times the allowed rate, for 5 s.
const FLOOD_RATE: u32 = 400;
const FLOOD: Duration = Duration::from_secs(5);
/// The tenant's calls during the flood, and their rate (so that they span it).
const CALLS: u32 = 100;
const CALL_RATE: u32 = 20;

#[test]
fn a_flooding_source_is_banned_and_others_are_served() {
    let dir = TempDir::new("limits", "flood");
    let next_hop = NextHop::udp(LOCAL);
    let limits = format!(
        "per_source = {{ requests_per_s = {RATE}, burst = {BURST}, ban_s = {} }}",
        BAN.as_secs()
    );
    let mut sipscreen = Sipscreen::start(&dir, &config(next_hop.addr(), &limits));
    let proxy = sipscreen.udp();
    let pid = sipscreen.pid();
    let _callee = callee(&dir, &next_hop, "dialog_uas.xml");
    let calls = caller("uac", proxy, "dialog_uac.xml", QUICK)
        .args([
            "-m",
            &CALLS.to_string(),
            "-r",
            &CALL_RATE.to_string(),
            "-l",
            "50",
        ])
        .spawn(&dir);

    let mut flooder = Flooder::new(STRANGER, proxy);
    let answers = flooder.flood(FLOOD_RATE, FLOOD, Duration::from_millis(300));
    let flood_ended = Instant::now();
    let calls = calls.finish(SIPP_TIMEOUT);
    eprintln!(
        "flood from {}: {} INVITEs at {FLOOD_RATE}/s for {FLOOD:?}, {} answered \
         (per_source: {RATE}/s, burst {BURST}, ban {BAN:?})\n{}",
        flooder.local,
        flooder.sent.len(),
        answers.len(),
        per_second(&flooder, &answers)
    );

    // Every call of the tenant went through, flood or not.
    calls.assert_calls(u64::from(CALLS));
    eprintln!(
        "tenant calls from {LOCAL} during the flood: {} successful, {} failed",
        calls.stat("SuccessfulCall(C)"),
        calls.stat("FailedCall(C)")
    );

    // Whatever the flooder got was a refusal.
    let codes: HashMap<u16, usize> = answers.iter().fold(HashMap::new(), |mut m, a| {
        *m.entry(a.code).or_default() += 1;
        m
    });
    assert_eq!(
        codes.keys().copied().collect::<Vec<_>>(),
        vec![403],
        "the flooder is no tenant source: every answer is 403 (codes: {codes:?})"
    );

    // Answered at first: about a burst's worth, then nothing while banned.
    let mut answered: Vec<usize> = answers.iter().map(|a| a.n).collect();
    answered.sort_unstable();
    answered.dedup();
    assert!(
        answered.first().is_some_and(|&n| n < 5),
        "the flood's first requests are answered (answered: {answered:?})"
    );
    let gaps: Vec<(usize, usize)> = answered
        .windows(2)
        .filter(|w| flooder.at(w[1]) - flooder.at(w[0]) > 0.5)
        .map(|w| (w[0], w[1]))
        .collect();
    let (last_before, first_after) = *gaps.first().unwrap_or_else(|| {
        panic!(
            "the flooder was never banned: {} of {} answered",
            answered.len(),
            flooder.sent.len()
        )
    });
    let before_ban = answered.iter().filter(|&&n| n <= last_before).count();
    assert!(
        (BURST..=BURST + RATE as usize).contains(&before_ban),
        "about a burst ({BURST}) of requests is answered before the ban, got {before_ban}"
    );
    let silence = flooder.at(first_after) - flooder.at(last_before);
    let ban = BAN.as_secs_f64();
    eprintln!(
        "answered before the ban: {before_ban}; then silence for {silence:.2} s \
         ({} requests unanswered); answered again from request {first_after} \
         ({:.2} s into the flood)",
        first_after - last_before - 1,
        flooder.at(first_after)
    );
    assert!(
        (ban - 0.5..=ban + 1.0).contains(&silence),
        "the ban lasts ban_s ({ban} s): the flooder was not answered for {silence:.2} s"
    );
    assert_eq!(
        gaps.len(),
        1,
        "one ban in a {FLOOD:?} flood (then served again, then banned again until the end)"
    );
    assert!(
        answered.len() <= 2 * (BURST + RATE as usize),
        "a banned flooder is ignored: {} of {} requests answered",
        answered.len(),
        flooder.sent.len()
    );

    // Banned again after its second burst: still silent right after the flood, answered
    // once ban_s has passed since.
    let last = *answered.last().expect("answers");
    let ban_ends = flooder.sent[last] + BAN;
    let left = ban_ends.saturating_duration_since(Instant::now());
    if left > Duration::from_millis(600) {
        let got = flooder.one(Duration::from_millis(300));
        eprintln!(
            "one INVITE {:.2} s before the ban ends: {got:?}",
            left.as_secs_f64()
        );
        assert_eq!(
            got,
            None,
            "still banned {:?} after the flood",
            flood_ended.elapsed()
        );
    }
    if let Some(wait) =
        (ban_ends + Duration::from_millis(500)).checked_duration_since(Instant::now())
    {
        thread::sleep(wait);
    }
    let got = flooder.one(Duration::from_secs(2));
    eprintln!(
        "one INVITE {:.2} s after the flooder's last answer: {got:?}",
        flooder.sent[last].elapsed().as_secs_f64()
    );
    assert_eq!(
        got,
        Some(403),
        "once the ban is over the source is answered again"
    );

    let log = sipscreen.log();
    assert!(
        log.lines().any(
            |l| l.contains("source over its request rate") && l.contains(&STRANGER.to_string())
        ),
        "the ban is logged with the source:\n{}",
        sipscreen.log_tail()
    );
    assert_eq!(
        sipscreen.exited(),
        None,
        "sipscreen (pid {pid}) is still running"
    );
    sipscreen.stop_ok();
}

// ---------------------------------------------------------------------------------------
// 2. Beyond max_transactions: 503 with Retry-After, and the proxy recovers by itself.

/// `max_transactions`: a modest burst of calls that the callee keeps waiting a second
/// exceeds it.
const MAX_TRANSACTIONS: usize = 50;
/// The burst: calls a second and seconds, to the number answered after a second.
const BURST_RATE: u32 = 300;
const BURST_SECONDS: u32 = 2;
/// Then calls at a normal rate, to the number answered at once.
const NORMAL_RATE: u32 = 50;
const NORMAL_SECONDS: u32 = 4;

/// How one run of `tests/sipp/shed_uac.xml` went, from its message counts.
struct Shed {
    invites: u64,
    /// 503 to the INVITE (each checked for a Retry-After by the scenario).
    shed: u64,
    /// 200 to the INVITE: calls admitted and answered.
    answered: u64,
    /// 503 to the BYE of an answered call.
    bye_shed: u64,
    /// 200 to the BYE.
    ended: u64,
}

impl Shed {
    fn of(run: &SippRun) -> Shed {
        let counts = run.counts();
        let count = |column: &str| {
            *counts.get(column).unwrap_or_else(|| {
                panic!(
                    "no `{column}` in the message counts of the UAC: {counts:?}\n{}",
                    run.describe()
                )
            })
        };
        // Elements of shed_uac.xml: 0 INVITE, 3 its 503, 4 its 200, 7 the BYE's 503, 8 its 200.
        Shed {
            invites: count("0_INVITE_Sent"),
            shed: count("3_503_Recv"),
            answered: count("4_200_Recv"),
            bye_shed: count("7_503_Recv"),
            ended: count("8_200_Recv"),
        }
    }
}

/// Runs `calls` calls of `shed_uac.xml` to `service` at `rate` calls/s, to their end.
fn calls(
    dir: &TempDir,
    name: &str,
    proxy: SocketAddr,
    service: &str,
    rate: u32,
    calls: u32,
) -> SippRun {
    let (rate, calls) = (rate.to_string(), calls.to_string());
    caller(name, proxy, "shed_uac.xml", service)
        .args(["-r", &rate, "-m", &calls, "-l", &calls])
        .trace_msg(std::env::var_os("LIMITS_TRACE").is_some())
        .spawn(dir)
        .finish(SIPP_TIMEOUT)
}

/// Waits (at most `limit`) until sipscreen is under its transaction limit again: an INVITE
/// from the stranger gets 403 (admission) rather than 503 (overload, checked first). How
/// long it took.
fn until_recovered(flooder: &mut Flooder, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let got = flooder.one(Duration::from_millis(500));
        if got == Some(403) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "sipscreen still refuses (last answer {got:?}) {limit:?} after the burst"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_burst_above_the_ceiling_is_shed_with_503_and_the_proxy_recovers() {
    let dir = TempDir::new("limits", "burst");
    let next_hop = NextHop::udp(LOCAL);
    let limits = format!("max_transactions = {MAX_TRANSACTIONS}");
    let mut sipscreen = Sipscreen::start(&dir, &config(next_hop.addr(), &limits));
    let proxy = sipscreen.udp();
    let pid = sipscreen.pid();
    let _callee = callee(&dir, &next_hop, "slow_uas.xml");

    // The burst: each admitted call holds a transaction for a second, so at BURST_RATE
    // calls/s the ceiling is reached within a fraction of a second.
    let burst_calls = BURST_RATE * BURST_SECONDS;
    let started = Instant::now();
    let burst = calls(&dir, "burst", proxy, SLOW, BURST_RATE, burst_calls);
    let burst_took = started.elapsed();
    let b = Shed::of(&burst);
    eprintln!(
        "burst: {} calls at {BURST_RATE}/s (callee answers after 1 s), max_transactions = \
         {MAX_TRANSACTIONS}: {} shed with 503 + Retry-After, {} admitted and answered, of \
         which {} ended with BYE/200 and {} had their BYE shed with 503; SIPp: {} successful, \
         {} failed; {:.1} s",
        b.invites,
        b.shed,
        b.answered,
        b.ended,
        b.bye_shed,
        burst.stat("SuccessfulCall(C)"),
        burst.stat("FailedCall(C)"),
        burst_took.as_secs_f64()
    );
    assert_eq!(b.invites, u64::from(burst_calls), "{}", burst.describe());
    assert!(
        b.shed > 0,
        "a burst beyond the ceiling gets 503s\n{}",
        burst.describe()
    );
    assert!(
        b.answered > 0,
        "calls within the ceiling go through\n{}",
        burst.describe()
    );
    assert_eq!(
        (b.ended, b.bye_shed),
        (b.answered, 0),
        "(ended, BYE shed) of the admitted calls: a call in flight is never refused\n{}",
        burst.describe()
    );
    assert_eq!(
        burst.stat("FailedRegexpHdrNotFound(C)"),
        0,
        "every 503 has a Retry-After\n{}",
        burst.describe()
    );
    let log = sipscreen.log();
    let logged: u64 = log
        .lines()
        .filter(|l| l.contains("transaction limit reached"))
        .filter_map(|l| {
            l.split("refused=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert!(
        logged > 0,
        "the overload is logged:\n{}",
        sipscreen.log_tail()
    );

    // The load falls: sipscreen serves again by itself.
    let mut prober = Flooder::new(STRANGER, proxy);
    let recovered = until_recovered(&mut prober, Duration::from_secs(10));
    eprintln!(
        "recovered {:.2} s after the burst's UAC ended (a new request is no longer refused with \
         503); the log counts {logged} refusals",
        recovered.as_secs_f64()
    );

    // A normal rate: every call goes through, none shed.
    let normal_calls = NORMAL_RATE * NORMAL_SECONDS;
    let normal = calls(&dir, "normal", proxy, QUICK, NORMAL_RATE, normal_calls);
    let n = Shed::of(&normal);
    eprintln!(
        "then {normal_calls} calls at {NORMAL_RATE}/s: {} successful, {} failed, {} shed",
        normal.stat("SuccessfulCall(C)"),
        normal.stat("FailedCall(C)"),
        n.shed + n.bye_shed
    );
    normal.assert_calls(u64::from(normal_calls));
    assert_eq!((n.shed, n.bye_shed), (0, 0), "{}", normal.describe());

    assert_eq!(
        sipscreen.exited(),
        None,
        "sipscreen (pid {pid}) ran throughout:\n{}",
        sipscreen.log_tail()
    );
    sipscreen.stop_ok();
}

/// SPEC §7: beyond the limits *new* requests get 503, and admitted calls in flight are
/// never dropped. A BYE of an established call is not a new call: refused like one, the
/// caller would give the call up, the callee would never hear of it, and sipscreen would keep
/// the dialog until `dialog_timeout_s`. Ten calls are held while calls kept waiting fill the
/// transaction table; all ten hang up.
#[test]
fn an_established_calls_bye_is_not_shed_at_the_transaction_ceiling() {
    let dir = TempDir::new("limits", "bye");
    let next_hop = NextHop::udp(LOCAL);
    let limits = format!("max_transactions = {MAX_TRANSACTIONS}");
    let sipscreen = Sipscreen::start(&dir, &config(next_hop.addr(), &limits));
    let proxy = sipscreen.udp();
    let _callee = callee(&dir, &next_hop, "slow_uas.xml");

    // Ten calls answered at once and held for 3 s (SIPp's built-in UAC, -d).
    let held = SippCommand::new("held", LOCAL)
        .args(["-sn", "uac", &proxy.to_string(), "-t", "u1", "-s", QUICK])
        .args(["-m", "10", "-r", "20", "-d", "3000"])
        .timeout(SIPP_TIMEOUT)
        .trace_msg(true)
        .spawn(&dir);
    thread::sleep(Duration::from_secs(1));
    // Then calls kept waiting fill the transaction table for four seconds, while the ten
    // calls hang up.
    let filler = calls(&dir, "filler", proxy, SLOW, 100, 400);
    let held = held.finish(SIPP_TIMEOUT);
    let f = Shed::of(&filler);
    let bye_503 = held
        .messages()
        .iter()
        .filter(|m| {
            m.received && m.is_response(503) && m.header("CSeq").is_some_and(|c| c.ends_with("BYE"))
        })
        .count();
    eprintln!(
        "filler: {} of {} shed; held calls: {} successful, {} failed, {bye_503} BYEs answered 503",
        f.shed,
        f.invites,
        held.stat("SuccessfulCall(C)"),
        held.stat("FailedCall(C)")
    );
    assert!(f.shed > 0, "the table was full\n{}", filler.describe());
    held.assert_calls(10);
    sipscreen.stop_ok();
}
