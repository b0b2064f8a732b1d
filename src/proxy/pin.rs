//! The PIN session (SPEC §6 item 2): a small UAS leg inside the proxy. It answers the
//! caller's INVITE with `183 Session Progress` and an SDP answer, plays the prompt as early
//! media, and collects digits from RFC 4733 events and SIP INFO until the PIN is right, the
//! attempts run out, or the caller hangs up. It only holds state and says what to send; the
//! core sends it.
//!
//! Failures count per user ([`Lockout`]): past `failures` within `window`, every challenge
//! for that user is rejected for `lock`. No PIN, and no digit entered, is ever logged.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
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
    /// Whose failures count (`None` for an unknown caller).
    pub user: Option<(TenantId, UserId)>,
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
        pin: Pin,
        settings: &PinSettings,
        ssrc: u32,
    ) -> Self {
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
            // The prompt is over: digits may still come until the first-digit timeout.
            self.frame = None;
            self.next_frame = None;
            self.collector.restart(now);
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

    /// An RTP packet from the caller: telephone-events become digits.
    pub fn on_rtp(&mut self, now: Instant, packet: &[u8]) -> Option<Outcome> {
        let p = rtp::parse(packet)?;
        if Some(p.payload_type) != self.offer.telephone_event {
            return None;
        }
        let mut digits = Vec::new();
        self.events.push(p.timestamp, p.payload, &mut digits);
        digits.into_iter().find_map(|d| self.on_digit(now, d))
    }

    /// A digit, from RTP or INFO.
    pub fn on_digit(&mut self, now: Instant, digit: char) -> Option<Outcome> {
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

/// Per-user failure counting (SPEC §6 item 3).
#[derive(Debug, Default)]
pub struct Lockout {
    failures: HashMap<(TenantId, UserId), VecDeque<Instant>>,
    locked_until: HashMap<(TenantId, UserId), Instant>,
}

impl Lockout {
    /// Whether challenges for `user` are refused at `now`.
    pub fn is_locked(&self, user: (TenantId, UserId), now: Instant) -> bool {
        self.locked_until.get(&user).is_some_and(|t| now < *t)
    }

    /// A wrong PIN: returns true when this failure starts a lockout (to be logged once).
    pub fn fail(&mut self, user: (TenantId, UserId), now: Instant, s: &LockoutSettings) -> bool {
        let locked = self.is_locked(user, now);
        let list = self.failures.entry(user).or_default();
        list.push_back(now);
        while list
            .front()
            .is_some_and(|t| now.duration_since(*t) > s.window)
        {
            list.pop_front();
        }
        if list.len() >= s.failures as usize && !locked {
            list.clear();
            self.locked_until.insert(user, now + s.lock);
            return true;
        }
        false
    }
}

/// A pool of RTP ports.
#[derive(Debug)]
pub struct Ports {
    free: VecDeque<u16>,
}

impl Ports {
    pub fn new((lo, hi): (u16, u16)) -> Self {
        // Even ports for RTP (RFC 3550 §11), as endpoints expect.
        Self {
            free: (lo..=hi).filter(|p| p % 2 == 0).collect(),
        }
    }

    pub fn take(&mut self) -> Option<u16> {
        self.free.pop_front()
    }

    pub fn give_back(&mut self, port: u16) {
        self.free.push_back(port);
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
            outcome = s.on_rtp(t0, &ev(d, 1000 * i as u32)).or(outcome);
            s.on_rtp(t0, &ev(d, 1000 * i as u32)); // repeated end packet: ignored
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
    fn lockout_after_failures_within_the_window() {
        let t0 = Instant::now();
        let s = LockoutSettings {
            failures: 3,
            window: Duration::from_secs(600),
            lock: Duration::from_secs(900),
        };
        let mut l = Lockout::default();
        let u = (0, 7);
        assert!(!l.fail(u, t0, &s));
        assert!(!l.fail(u, t0 + Duration::from_secs(1), &s));
        assert!(
            l.fail(u, t0 + Duration::from_secs(2), &s),
            "third failure starts the lock"
        );
        assert!(l.is_locked(u, t0 + Duration::from_secs(800)));
        assert!(!l.is_locked(u, t0 + Duration::from_secs(903)));
        assert!(!l.is_locked((0, 8), t0), "per user");
        // Failures spread wider than the window do not lock.
        let mut l = Lockout::default();
        for i in 0..5 {
            assert!(!l.fail(u, t0 + Duration::from_secs(700 * i), &s));
        }
    }
}
