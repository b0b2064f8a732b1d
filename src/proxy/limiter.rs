//! Per-source rate limiting (SPEC §7, the job of Kamailio's `pike`): a token bucket per
//! untrusted source, refilled at `requests_per_s` up to `burst`. A source that runs dry is
//! ignored for `ban_s`, logged once per ban. Trusted peers and tenant sources are never
//! counted. Wrong digest credentials cost [`FAILED_AUTH_COST`] tokens, so password guessing
//! is banned long before ordinary traffic would be.
//!
//! IPv6 sources are counted per /64 (one host owns a whole /64 and could otherwise rotate
//! addresses). The table holds at most `MAX_SOURCES` sources; when full, the sources whose
//! bucket has refilled are forgotten (they are as good as new), and if that frees less than a
//! quarter, every source that is not banned is: a sweep costs one pass over the table, at
//! most once per quarter of it filled, so a flood of new sources costs O(1) each.
//!
//! The refilled sources are also forgotten as time passes ([`Limiter::sweep`], once per
//! refill time while any source is tracked), and the table then gives its room back when
//! mostly empty (the rule of [`super::shrink`]): a flood from many sources does not leave
//! its 65,536 entries behind for good.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::shrink::shrink;

/// What a wrong `Proxy-Authorization` costs, in requests.
pub const FAILED_AUTH_COST: f64 = 10.0;
/// Sources tracked at once.
const MAX_SOURCES: usize = 65_536;

/// `limits.per_source`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PerSource {
    pub requests_per_s: u32,
    pub burst: u32,
    pub ban: Duration,
}

impl Default for PerSource {
    fn default() -> Self {
        Self {
            requests_per_s: 50,
            burst: 200,
            ban: Duration::from_secs(60),
        }
    }
}

/// The key a source is counted under: the address, or its /64 for IPv6.
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::from([s[0], s[1], s[2], s[3], 0, 0, 0, 0])
        }
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
    banned_until: Option<Instant>,
}

/// What the limiter says of one request.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// Ignored: the source is banned. `started` is true for the request that started the
    /// ban (to log it once).
    Banned {
        started: bool,
    },
}

#[derive(Debug, Default)]
pub struct Limiter {
    settings: PerSource,
    buckets: HashMap<IpAddr, Bucket>,
    /// When [`Limiter::sweep`] next forgets refilled sources (`None` while none is tracked).
    next_sweep: Option<Instant>,
}

impl Limiter {
    pub fn new(settings: PerSource) -> Self {
        Self {
            settings,
            buckets: HashMap::new(),
            next_sweep: None,
        }
    }

    /// How long an unused bucket takes to fill up: after that its source is as good as new.
    fn refill(&self) -> Duration {
        let s = self.settings;
        Duration::from_secs_f64(f64::from(s.burst) / f64::from(s.requests_per_s.max(1)))
    }

    /// How often [`Limiter::sweep`] looks: once per refill time, at least a second apart.
    fn sweep_every(&self) -> Duration {
        self.refill().max(Duration::from_secs(1))
    }

    /// When [`Limiter::sweep`] has something to do.
    pub fn next_sweep(&self) -> Option<Instant> {
        self.next_sweep
    }

    /// Forgets the sources whose bucket has refilled and that are not banned, and gives back
    /// the table's room when mostly empty; returns whether it shrank it. A pass over the
    /// table at most once per [`Limiter::sweep_every`].
    pub fn sweep(&mut self, now: Instant) -> bool {
        if self.next_sweep.is_none_or(|at| now < at) {
            return false;
        }
        self.forget_refilled(now);
        self.next_sweep = (!self.buckets.is_empty()).then(|| now + self.sweep_every());
        shrink(&mut self.buckets)
    }

    /// Takes `cost` tokens from the source of `ip`.
    pub fn take(&mut self, now: Instant, ip: IpAddr, cost: f64) -> Verdict {
        let key = source_key(ip);
        if !self.buckets.contains_key(&key) && self.buckets.len() >= MAX_SOURCES {
            self.evict(now);
            if self.buckets.len() >= MAX_SOURCES {
                // Every slot holds a banned source: new ones pass uncounted until bans end.
                return Verdict::Pass;
            }
        }
        let s = self.settings;
        if self.next_sweep.is_none() {
            self.next_sweep = Some(now + self.sweep_every());
        }
        let b = self.buckets.entry(key).or_insert(Bucket {
            tokens: f64::from(s.burst),
            at: now,
            banned_until: None,
        });
        if let Some(until) = b.banned_until {
            if now < until {
                return Verdict::Banned { started: false };
            }
            b.banned_until = None;
            b.tokens = f64::from(s.burst);
            b.at = now;
        }
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * f64::from(s.requests_per_s)).min(f64::from(s.burst));
        b.at = now;
        if b.tokens >= cost {
            b.tokens -= cost;
            Verdict::Pass
        } else {
            b.banned_until = Some(now + s.ban);
            Verdict::Banned { started: true }
        }
    }

    /// Makes room (see the module's documentation).
    fn evict(&mut self, now: Instant) {
        self.forget_refilled(now);
        if self.buckets.len() >= MAX_SOURCES * 3 / 4 {
            self.buckets.retain(|_, b| banned(b, now));
        }
    }

    /// Forgets the sources that are not banned and whose bucket is full again.
    fn forget_refilled(&mut self, now: Instant) {
        let refill = self.refill();
        self.buckets
            .retain(|_, b| banned(b, now) || now.saturating_duration_since(b.at) < refill);
    }

    /// Sources tracked.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

fn banned(b: &Bucket, now: Instant) -> bool {
    b.banned_until.is_some_and(|u| now < u)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_banned_then_served_again_and_others_are_not_touched() {
        let t0 = Instant::now();
        let mut l = Limiter::new(PerSource {
            requests_per_s: 10,
            burst: 20,
            ban: Duration::from_secs(60),
        });
        let flooder: IpAddr = "127.0.0.2".parse().unwrap();
        let other: IpAddr = "127.0.0.3".parse().unwrap();
        for _ in 0..20 {
            assert_eq!(l.take(t0, flooder, 1.0), Verdict::Pass);
        }
        assert_eq!(l.take(t0, flooder, 1.0), Verdict::Banned { started: true });
        assert_eq!(
            l.take(t0 + Duration::from_secs(30), flooder, 1.0),
            Verdict::Banned { started: false },
            "still banned, however slow it goes"
        );
        assert_eq!(l.take(t0, other, 1.0), Verdict::Pass);
        assert_eq!(
            l.take(t0 + Duration::from_secs(61), flooder, 1.0),
            Verdict::Pass,
            "served again after ban_s"
        );
        // A steady 10/s never runs dry.
        let mut t = t0 + Duration::from_secs(100);
        for _ in 0..1000 {
            assert_eq!(l.take(t, other, 1.0), Verdict::Pass);
            t += Duration::from_millis(100);
        }
    }

    #[test]
    fn failed_authentication_costs_more_and_ipv6_counts_per_64() {
        let t0 = Instant::now();
        let mut l = Limiter::new(PerSource::default());
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let b: IpAddr = "2001:db8::2".parse().unwrap();
        let mut n = 0;
        while l.take(t0, if n % 2 == 0 { a } else { b }, FAILED_AUTH_COST) == Verdict::Pass {
            n += 1;
        }
        assert_eq!(n, 20, "200 tokens, 10 per failure, shared by the /64");
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn a_flood_from_many_sources_is_forgotten_once_their_buckets_refill() {
        let t0 = Instant::now();
        let mut l = Limiter::new(PerSource::default());
        for i in 0..20_000u32 {
            let ip = IpAddr::from((0x0a00_0000 + i).to_be_bytes());
            assert_eq!(l.take(t0, ip, 1.0), Verdict::Pass);
        }
        let banned: IpAddr = "192.0.2.1".parse().unwrap();
        while l.take(t0, banned, 1.0) == Verdict::Pass {}
        assert_eq!(l.len(), 20_001);
        assert!(!l.sweep(t0), "not before its time");
        // 200 tokens at 50/s: full again 4 s later.
        let later = l.next_sweep().unwrap();
        assert_eq!(later, t0 + Duration::from_secs(4));
        assert!(l.sweep(later), "the table gives its room back");
        assert_eq!(l.len(), 1, "only the banned source is left");
        assert!(l.buckets.capacity() < 4096, "{}", l.buckets.capacity());
        assert_eq!(
            l.take(later, banned, 1.0),
            Verdict::Banned { started: false }
        );
        // After the ban (60 s) and a refill, nothing is left, and nothing more to do.
        let end = t0 + Duration::from_secs(70);
        while let Some(at) = l.next_sweep().filter(|at| *at <= end) {
            l.sweep(at);
        }
        assert!(l.is_empty());
        assert_eq!(l.next_sweep(), None);
    }
}
