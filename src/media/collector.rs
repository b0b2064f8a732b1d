//! Collecting a PIN (SPEC §6 item 2): digits until `#`, `max_digits`, or a timeout (first
//! digit, then between digits). The caller gives the time; the collector says when it next
//! needs to be asked.

use std::time::{Duration, Instant};

/// How an entry ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// `#` pressed, or `max_digits` reached: these digits (without `#`).
    Complete(String),
    /// Nothing, or not enough, came in time: what came.
    TimedOut(String),
}

/// One PIN entry in progress.
#[derive(Debug)]
pub struct Collector {
    max_digits: usize,
    first: Duration,
    inter: Duration,
    digits: String,
    deadline: Instant,
}

impl Collector {
    /// Starts waiting for the first digit at `now`.
    pub fn new(now: Instant, max_digits: usize, first: Duration, inter: Duration) -> Self {
        Self {
            max_digits,
            first,
            inter,
            digits: String::new(),
            deadline: now + first,
        }
    }

    /// Starts over (after a wrong PIN, when the prompt has been played again).
    pub fn restart(&mut self, now: Instant) {
        self.digits.clear();
        self.deadline = now + self.first;
    }

    /// Whether the caller has started typing this entry.
    pub fn has_digits(&self) -> bool {
        !self.digits.is_empty()
    }

    /// When [`Collector::on_timeout`] should be called.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// A digit came.
    pub fn push(&mut self, now: Instant, digit: char) -> Option<Entry> {
        if digit == '#' {
            return Some(Entry::Complete(std::mem::take(&mut self.digits)));
        }
        self.digits.push(digit);
        self.deadline = now + self.inter;
        (self.digits.len() >= self.max_digits)
            .then(|| Entry::Complete(std::mem::take(&mut self.digits)))
    }

    /// The time is `now`: the entry has timed out if the deadline passed.
    pub fn on_timeout(&mut self, now: Instant) -> Option<Entry> {
        (now >= self.deadline).then(|| Entry::TimedOut(std::mem::take(&mut self.digits)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn hash_max_digits_and_timeouts() {
        let t0 = Instant::now();
        let mut c = Collector::new(t0, 4, 10 * S, 5 * S);
        assert_eq!(c.deadline(), t0 + 10 * S);
        assert_eq!(c.push(t0 + S, '1'), None);
        assert_eq!(c.deadline(), t0 + 6 * S);
        assert_eq!(c.push(t0 + 2 * S, '2'), None);
        assert_eq!(c.push(t0 + 3 * S, '#'), Some(Entry::Complete("12".into())));
        c.restart(t0 + 4 * S);
        for d in ['9', '9', '9'] {
            assert_eq!(c.push(t0 + 5 * S, d), None);
        }
        assert_eq!(
            c.push(t0 + 5 * S, '9'),
            Some(Entry::Complete("9999".into())),
            "max digits"
        );
        c.restart(t0 + 6 * S);
        assert_eq!(
            c.on_timeout(t0 + 15 * S),
            None,
            "first-digit timeout not yet"
        );
        assert_eq!(
            c.on_timeout(t0 + 16 * S),
            Some(Entry::TimedOut(String::new()))
        );
        c.restart(t0 + 20 * S);
        c.push(t0 + 21 * S, '4');
        assert_eq!(c.on_timeout(t0 + 25 * S), None);
        assert_eq!(
            c.on_timeout(t0 + 26 * S),
            Some(Entry::TimedOut("4".into())),
            "inter-digit timeout"
        );
    }
}
