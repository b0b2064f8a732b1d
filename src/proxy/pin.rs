//! The PIN session (SPEC §6 item 2): a small UAS leg inside the proxy. It answers the
//! caller's INVITE with `183 Session Progress` and an SDP answer, plays the prompt as early
//! media, and collects digits from RFC 4733 events and SIP INFO until the PIN is right, the
//! attempts run out, or the caller hangs up. It only holds state and says what to send; the
//! core sends it.
//!
//! Callers type over the prompt (barge-in, SPEC §6 item 4): a digit stops it and counts.
//! RTP is taken only from the caller's addresses (item 5). Failures count per user, per
//! source address and, for callers who are not users, per caller number ([`Lockout`]):
//! past `failures` within `window`, every challenge for any of them is rejected for
//! `lock` (item 7). No PIN, and no digit entered, is ever logged.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use super::settings::{Lockout as LockoutSettings, PinSettings};
use super::ServerId;
use crate::media::collector::{Collector, Entry};
use crate::media::dtmf::EventReader;
use crate::media::prompt::FRAME;
use crate::media::sdp::Offer;
use crate::media::{rtp, sdp};
use crate::policy::{Pin, TenantId, UserId};

/// The caller's answer to one prompt.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The PIN is right: forward the call.
    Accepted,
    /// Wrong (or nothing in time), attempts left: the prompt is played again.
    Retry,
    /// Wrong, and no attempt left: 403.
    Rejected,
}

/// One caller entering a PIN.
#[derive(Debug)]
pub struct PinSession {
    /// The server transaction of the INVITE being held.
    pub sid: ServerId,
    /// Our RTP port.
    pub port: u16,
    pub local: SocketAddr,
    pub offer: Offer,
    /// Our To tag in the early dialog (INFO requests carry it).
    pub tag: String,
    pub call_id: Box<str>,
    /// The user being challenged (`None` for an unknown caller).
    pub user: Option<(TenantId, UserId)>,
    /// Whose failures a wrong PIN counts against.
    pub subjects: Vec<Subject>,
    /// The addresses RTP is taken from: the offer's connection address and the INVITE's
    /// source.
    pub callers: [IpAddr; 2],
    /// RTP packets dropped for coming from anywhere else.
    pub foreign_rtp: u64,
    pin: Pin,
    attempts_left: u32,
    collector: Collector,
    events: EventReader,
    ssrc: u32,
    sequence: u16,
    timestamp: u32,
    /// The next prompt frame to send, while the prompt plays.
    frame: Option<usize>,
    /// When the next frame is due.
    pub next_frame: Option<Instant>,
}

impl PinSession {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        now: Instant,
        sid: ServerId,
        port: u16,
        local: SocketAddr,
        offer: Offer,
        tag: String,
        call_id: &str,
        user: Option<(TenantId, UserId)>,
        subjects: Vec<Subject>,
        source: IpAddr,
        pin: Pin,
        settings: &PinSettings,
        ssrc: u32,
    ) -> Self {
        let callers = [offer.remote.ip(), source];
        let collector = Collector::new(
            now,
            settings.max_digits as usize,
            settings.first_digit_timeout,
            settings.inter_digit_timeout,
        );
        Self {
            sid,
            port,
            local,
            offer,
            tag,
            call_id: call_id.into(),
            user,
            subjects,
            callers,
            foreign_rtp: 0,
            pin,
            attempts_left: settings.attempts,
            collector,
            events: EventReader::default(),
            ssrc,
            sequence: (ssrc >> 16) as u16,
            timestamp: ssrc.rotate_left(7),
            frame: Some(0),
            next_frame: Some(now),
        }
    }

    /// The SDP answer of the 183.
    pub fn answer(&self) -> String {
        sdp::answer(&self.offer, self.local, u64::from(self.ssrc))
    }

    /// When the session next needs the time: the next frame, or the entry's deadline.
    pub fn deadline(&self) -> Instant {
        match self.next_frame {
            Some(t) => t.min(self.collector.deadline()),
            None => self.collector.deadline(),
        }
    }

    /// The RTP packet due at `now`, if the prompt is playing; 20 ms pacing, one sequence
    /// number and 160 timestamp units per frame, the marker on the first packet of a talk
    /// spurt (RFC 3551 §4.1).
    pub fn next_packet(&mut self, now: Instant, settings: &PinSettings) -> Option<Vec<u8>> {
        let due = self.next_frame.filter(|t| *t <= now)?;
        let index = self.frame?;
        let Some(payload) = settings.prompt.frame(index, self.offer.codec) else {
            // The prompt is over: the first-digit timeout runs from here, unless the caller
            // has started typing (then the inter-digit timeout already runs).
            self.stop_prompt();
            if !self.collector.has_digits() {
                self.collector.restart(now);
            }
            return None;
        };
        let packet = rtp::write(
            index == 0,
            self.offer.codec.payload_type(),
            self.sequence,
            self.timestamp,
            self.ssrc,
            &payload,
        );
        self.sequence = self.sequence.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(FRAME as u32);
        self.frame = Some(index + 1);
        self.next_frame = Some(due + std::time::Duration::from_millis(20));
        Some(packet)
    }

    fn stop_prompt(&mut self) {
        self.frame = None;
        self.next_frame = None;
    }

    /// An RTP packet from `from`: telephone-events become digits when it is the caller's.
    /// The prompt then goes where the caller's RTP comes from (symmetric RTP, for callers
    /// behind NAT: the address is one of the caller's, so never a third party).
    pub fn on_rtp(&mut self, now: Instant, from: SocketAddr, packet: &[u8]) -> Option<Outcome> {
        if !self.callers.contains(&from.ip()) {
            self.foreign_rtp += 1;
            return None;
        }
        self.offer.remote = from;
        let p = rtp::parse(packet)?;
        if Some(p.payload_type) != self.offer.telephone_event {
            return None;
        }
        let mut digits = Vec::new();
        self.events.push(p.timestamp, p.payload, &mut digits);
        digits.into_iter().find_map(|d| self.on_digit(now, d))
    }

    /// A digit, from RTP or INFO: it stops the prompt (barge-in) and counts.
    pub fn on_digit(&mut self, now: Instant, digit: char) -> Option<Outcome> {
        self.stop_prompt();
        let entry = self.collector.push(now, digit)?;
        Some(self.judge(now, entry))
    }

    /// The time is `now`: a timed-out entry is judged.
    pub fn on_timeout(&mut self, now: Instant) -> Option<Outcome> {
        if self.frame.is_some() {
            // No timeout while the prompt plays.
            return None;
        }
        let entry = self.collector.on_timeout(now)?;
        Some(self.judge(now, entry))
    }

    fn judge(&mut self, now: Instant, entry: Entry) -> Outcome {
        if let Entry::Complete(digits) = &entry {
            if self.pin.verify(digits) {
                return Outcome::Accepted;
            }
        }
        self.attempts_left = self.attempts_left.saturating_sub(1);
        if self.attempts_left == 0 {
            return Outcome::Rejected;
        }
        // Play the prompt again.
        self.frame = Some(0);
        self.next_frame = Some(now);
        self.collector.restart(now);
        Outcome::Retry
    }
}

/// Whose wrong PINs are counted (SPEC §6 items 3 and 7). Users and callers are named by
/// tenant and name, not by index, so a lockout outlives a reload that reorders the file.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Subject {
    /// A user: tenant name, user name.
    User(Box<str>, Box<str>),
    /// A source address (an IPv6 one by its /64).
    Source(IpAddr),
    /// A caller who is not a user: tenant name, the number they call from.
    Caller(Box<str>, Box<str>),
    /// A digest username (wrong passwords, not PINs): tenant name, username.
    Login(Box<str>, Box<str>),
}

impl Subject {
    /// The source address subject of `ip`.
    pub fn source(ip: IpAddr) -> Self {
        Subject::Source(super::limiter::source_key(ip))
    }
}

/// Subjects tracked at once; when full, those with nothing left to count are dropped.
const MAX_SUBJECTS: usize = 65_536;

#[derive(Debug, Default)]
struct Record {
    failures: VecDeque<Instant>,
    locked_until: Option<Instant>,
}

/// Failure counting per [`Subject`].
#[derive(Debug, Default)]
pub struct Lockout {
    records: HashMap<Subject, Record>,
}

impl Lockout {
    /// Whether challenges for any of `subjects` are refused at `now`.
    pub fn is_locked(&self, subjects: &[Subject], now: Instant) -> bool {
        subjects.iter().any(|s| {
            self.records
                .get(s)
                .and_then(|r| r.locked_until)
                .is_some_and(|t| now < t)
        })
    }

    /// The subject's lockout, if it is locked at `now`: when it ends.
    pub fn locked_until(&self, subject: &Subject, now: Instant) -> Option<Instant> {
        self.records
            .get(subject)
            .and_then(|r| r.locked_until)
            .filter(|t| now < *t)
    }

    /// A wrong PIN: the subjects this failure starts a lockout for (to be logged once).
    pub fn fail(
        &mut self,
        subjects: &[Subject],
        now: Instant,
        s: &LockoutSettings,
    ) -> Vec<Subject> {
        if self.records.len() + subjects.len() > MAX_SUBJECTS {
            self.sweep(now, s);
        }
        let mut started = Vec::new();
        for subject in subjects {
            if !self.records.contains_key(subject) && self.records.len() >= MAX_SUBJECTS {
                continue;
            }
            let r = self.records.entry(subject.clone()).or_default();
            let locked = r.locked_until.is_some_and(|t| now < t);
            r.failures.push_back(now);
            while r
                .failures
                .front()
                .is_some_and(|t| now.duration_since(*t) > s.window)
            {
                r.failures.pop_front();
            }
            if r.failures.len() >= s.failures as usize && !locked {
                r.failures.clear();
                r.locked_until = Some(now + s.lock);
                started.push(subject.clone());
            }
        }
        started
    }

    /// Ends a lockout by hand (the admin API); returns whether there was one.
    pub fn clear(&mut self, subject: &Subject) -> bool {
        self.records.remove(subject).is_some()
    }

    /// Drops the records that no longer hold anything: no lock in force and no failure
    /// within the window.
    fn sweep(&mut self, now: Instant, s: &LockoutSettings) {
        self.records.retain(|_, r| {
            r.locked_until.is_some_and(|t| now < t)
                || r.failures
                    .back()
                    .is_some_and(|t| now.duration_since(*t) <= s.window)
        });
    }
}

/// A pool of RTP ports, handed out at random (SPEC §6 item 7: a range sprayed with digits
/// finds no prompt by counting).
#[derive(Debug)]
pub struct Ports {
    free: Vec<u16>,
    range: (u16, u16),
}

impl Ports {
    pub fn new((lo, hi): (u16, u16)) -> Self {
        // Even ports for RTP (RFC 3550 §11), as endpoints expect.
        Self {
            free: (lo..=hi).filter(|p| p % 2 == 0).collect(),
            range: (lo, hi),
        }
    }

    /// A free port, chosen by `random`.
    pub fn take(&mut self, random: u64) -> Option<u16> {
        if self.free.is_empty() {
            return None;
        }
        let at = (random % self.free.len() as u64) as usize;
        Some(self.free.swap_remove(at))
    }

    /// A port back in the pool (unless a reload has taken it out of the range since).
    pub fn give_back(&mut self, port: u16) {
        if (self.range.0..=self.range.1).contains(&port) {
            self.free.push(port);
        }
    }

    /// Keeps only the free ports `keep` says yes to.
    pub fn retain(&mut self, keep: impl Fn(u16) -> bool) {
        self.free.retain(|p| keep(*p));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settings() -> PinSettings {
        PinSettings {
            attempts: 2,
            max_digits: 8,
            first_digit_timeout: Duration::from_secs(10),
            inter_digit_timeout: Duration::from_secs(5),
            prompt: crate::media::prompt::Prompt::tone(),
            rtp_ports: (40000, 40010),
            dial_prefix: None,
            lockout: LockoutSettings {
                failures: 5,
                window: Duration::from_secs(600),
                lock: Duration::from_secs(900),
            },
        }
    }

    const CALLER: SocketAddr =
        SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1)), 6000);

    fn session(now: Instant) -> (PinSession, PinSettings) {
        let settings = settings();
        let offer = sdp::parse_offer(b"v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 6000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n").unwrap();
        let s = PinSession::new(
            now,
            ServerId(1),
            40000,
            "127.0.0.1:40000".parse().unwrap(),
            offer,
            "tag".into(),
            "c",
            None,
            vec![Subject::source(CALLER.ip())],
            CALLER.ip(),
            Pin::new("1234"),
            &settings,
            42,
        );
        (s, settings)
    }

    #[test]
    fn prompt_is_paced_and_numbered() {
        let t0 = Instant::now();
        let (mut s, config) = session(t0);
        let first = s.next_packet(t0, &config).unwrap();
        let p = rtp::parse(&first).unwrap();
        assert!(p.marker && p.payload_type == 0 && p.payload.len() == 160);
        assert!(
            s.next_packet(t0 + Duration::from_millis(10), &config)
                .is_none(),
            "20 ms pacing"
        );
        let second = s
            .next_packet(t0 + Duration::from_millis(20), &config)
            .unwrap();
        let q = rtp::parse(&second).unwrap();
        assert_eq!(
            (q.sequence, q.timestamp, q.ssrc, q.marker),
            (p.sequence + 1, p.timestamp + 160, p.ssrc, false)
        );
        // The whole tone, then nothing.
        let mut n = 2;
        let mut t = t0 + Duration::from_millis(40);
        while s.next_packet(t, &config).is_some() {
            n += 1;
            t += Duration::from_millis(20);
        }
        assert_eq!(n, config.prompt.frames());
        assert_eq!(s.next_frame, None);
    }

    #[test]
    fn right_pin_by_events_and_wrong_pins_until_rejected() {
        let t0 = Instant::now();
        let (mut s, _) = session(t0);
        let ev = |d: u8, ts: u32| rtp::write(false, 101, ts as u16, ts, 9, &[d, 0x80 | 10, 0, 160]);
        let mut outcome = None;
        for (i, d) in [1u8, 2, 3, 4, 11].into_iter().enumerate() {
            outcome = s.on_rtp(t0, CALLER, &ev(d, 1000 * i as u32)).or(outcome);
            s.on_rtp(t0, CALLER, &ev(d, 1000 * i as u32)); // repeated end packet: ignored
        }
        assert_eq!(outcome, Some(Outcome::Accepted));

        let (mut s, _) = session(t0);
        for d in ['9', '9', '#'] {
            outcome = s.on_digit(t0, d);
        }
        assert_eq!(outcome, Some(Outcome::Retry));
        assert!(s.next_frame.is_some(), "the prompt plays again");
        for d in ['0', '#'] {
            outcome = s.on_digit(t0, d);
        }
        assert_eq!(outcome, Some(Outcome::Rejected));
    }

    #[test]
    fn silence_times_out_after_the_prompt() {
        let t0 = Instant::now();
        let (mut s, config) = session(t0);
        let mut t = t0;
        while s.next_frame.is_some() {
            s.next_packet(t, &config);
            t += Duration::from_millis(20);
        }
        assert_eq!(s.on_timeout(t + Duration::from_secs(9)), None);
        assert_eq!(
            s.on_timeout(t + Duration::from_secs(11)),
            Some(Outcome::Retry)
        );
    }

    #[test]
    fn digits_typed_over_the_prompt_count_and_stop_it() {
        let t0 = Instant::now();
        let (mut s, settings) = session(t0);
        let ms = Duration::from_millis;
        // One digit every 600 ms from the start: the prompt (1.4 s) is still playing for the
        // first two.
        let mut outcome = None;
        let mut t = t0;
        for (i, d) in ['1', '2', '3', '4', '#'].into_iter().enumerate() {
            let at = t0 + ms(600 * i as u64);
            while t < at {
                s.next_packet(t, &settings);
                assert_eq!(s.on_timeout(t), None);
                t += ms(20);
            }
            outcome = s.on_digit(at, d).or(outcome);
            if i == 0 {
                assert_eq!(s.next_frame, None, "the first digit stops the prompt");
            }
        }
        assert_eq!(outcome, Some(Outcome::Accepted));
    }

    #[test]
    fn one_digit_then_silence_times_out_at_the_inter_digit_timeout() {
        let t0 = Instant::now();
        let (mut s, _) = session(t0);
        assert_eq!(s.on_digit(t0 + Duration::from_millis(200), '1'), None);
        assert_eq!(s.deadline(), t0 + Duration::from_millis(5200));
        assert_eq!(s.on_timeout(t0 + Duration::from_millis(5199)), None);
        assert_eq!(
            s.on_timeout(t0 + Duration::from_millis(5200)),
            Some(Outcome::Retry)
        );
    }

    #[test]
    fn rtp_from_anyone_but_the_caller_is_dropped() {
        let t0 = Instant::now();
        let (mut s, _) = session(t0);
        let ev = |d: u8, ts: u32| rtp::write(false, 101, ts as u16, ts, 9, &[d, 0x80 | 10, 0, 160]);
        let stranger: SocketAddr = "127.0.0.3:6000".parse().unwrap();
        for (i, d) in [9u8, 9, 11].into_iter().enumerate() {
            assert_eq!(s.on_rtp(t0, stranger, &ev(d, 1000 * i as u32)), None);
        }
        assert_eq!(s.foreign_rtp, 3);
        let mut outcome = None;
        for (i, d) in [1u8, 2, 3, 4, 11].into_iter().enumerate() {
            outcome = s
                .on_rtp(t0, CALLER, &ev(d, 9000 + 1000 * i as u32))
                .or(outcome);
        }
        assert_eq!(outcome, Some(Outcome::Accepted));
    }

    #[test]
    fn ports_are_handed_out_at_random_and_come_back() {
        let mut p = Ports::new((40000, 40009));
        let taken: Vec<u16> = [7u64, 3, 11].iter().filter_map(|r| p.take(*r)).collect();
        assert!(taken
            .iter()
            .all(|x| x % 2 == 0 && (40000..=40008).contains(x)));
        assert_ne!(taken, vec![40000, 40002, 40004], "not in sequence");
        p.take(0);
        p.take(0);
        assert_eq!(p.take(0), None, "five even ports");
        p.give_back(taken[0]);
        assert_eq!(p.take(5), Some(taken[0]));
    }

    #[test]
    fn lockout_after_failures_within_the_window() {
        let t0 = Instant::now();
        let s = LockoutSettings {
            failures: 3,
            window: Duration::from_secs(600),
            lock: Duration::from_secs(900),
        };
        let mut l = Lockout::default();
        let u = [Subject::User("acme".into(), "alice".into())];
        assert!(l.fail(&u, t0, &s).is_empty());
        assert!(l.fail(&u, t0 + Duration::from_secs(1), &s).is_empty());
        assert_eq!(
            l.fail(&u, t0 + Duration::from_secs(2), &s),
            u.to_vec(),
            "third failure starts the lock"
        );
        assert!(l.is_locked(&u, t0 + Duration::from_secs(800)));
        assert!(!l.is_locked(&u, t0 + Duration::from_secs(903)));
        assert!(
            !l.is_locked(&[Subject::User("acme".into(), "bob".into())], t0),
            "per user"
        );
        // Failures spread wider than the window do not lock.
        let mut l = Lockout::default();
        for i in 0..5 {
            assert!(l.fail(&u, t0 + Duration::from_secs(700 * i), &s).is_empty());
        }
        // A source and a caller number are counted on their own, and any of a call's
        // subjects being locked refuses it.
        let mut l = Lockout::default();
        let ip: IpAddr = "127.0.0.2".parse().unwrap();
        let from_ip = [
            Subject::source(ip),
            Subject::Caller("acme".into(), "600123".into()),
        ];
        for i in 0..3 {
            l.fail(&from_ip, t0 + Duration::from_secs(i), &s);
        }
        assert!(l.is_locked(
            &[
                Subject::User("acme".into(), "carol".into()),
                Subject::source(ip)
            ],
            t0 + Duration::from_secs(5)
        ));
        assert!(l.is_locked(
            &[Subject::Caller("acme".into(), "600123".into())],
            t0 + Duration::from_secs(5)
        ));
        assert!(l.clear(&Subject::source(ip)));
        assert!(!l.is_locked(&[Subject::source(ip)], t0 + Duration::from_secs(5)));
    }
}
