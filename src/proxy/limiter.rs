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

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

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
}

impl Limiter {
    pub fn new(settings: PerSource) -> Self {
        Self {
            settings,
            buckets: HashMap::new(),
        }
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
        let s = self.settings;
        let refill =
            Duration::from_secs_f64(f64::from(s.burst) / f64::from(s.requests_per_s.max(1)));
        let banned = |b: &Bucket| b.banned_until.is_some_and(|u| now < u);
        self.buckets
            .retain(|_, b| banned(b) || now.saturating_duration_since(b.at) < refill);
        if self.buckets.len() >= MAX_SOURCES * 3 / 4 {
            self.buckets.retain(|_, b| banned(b));
        }
    }

    /// Sources tracked.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
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
}
