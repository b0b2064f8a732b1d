//! DTMF digits in: RFC 4733 telephone-events over RTP, and SIP INFO bodies
//! (`application/dtmf-relay`, `application/dtmf`).

/// A DTMF key.
pub fn digit_of_event(event: u8) -> Option<char> {
    match event {
        0..=9 => Some(char::from(b'0' + event)),
        10 => Some('*'),
        11 => Some('#'),
        _ => None,
    }
}

/// Turns a stream of RFC 4733 event packets into digits, once each: an event is reported
/// on its first end packet (the end packet is sent three times, RFC 4733 §2.5.1.4), and an
/// event whose end packets were all lost is reported when the next event starts. Events are
/// told apart by their RTP timestamp.
#[derive(Debug, Default)]
pub struct EventReader {
    /// The timestamp of the event in progress and its key, not yet reported.
    pending: Option<(u32, char)>,
    /// The timestamp of the last event reported.
    reported: Option<u32>,
}

impl EventReader {
    /// One telephone-event payload with the packet's RTP timestamp; digits that became
    /// complete are appended to `out` (at most two: one whose end was lost, and this one).
    pub fn push(&mut self, timestamp: u32, payload: &[u8], out: &mut Vec<char>) {
        let (Some(&event), Some(&flags)) = (payload.first(), payload.get(1)) else {
            return;
        };
        if self.reported == Some(timestamp) {
            return;
        }
        let Some(key) = digit_of_event(event) else {
            return;
        };
        if let Some((ts, lost)) = self.pending {
            if ts != timestamp {
                out.push(lost);
                self.pending = None;
            }
        }
        if flags & 0x80 != 0 {
            self.pending = None;
            self.reported = Some(timestamp);
            out.push(key);
        } else {
            self.pending = Some((timestamp, key));
        }
    }
}

/// The digit of a SIP INFO body: `application/dtmf-relay` (`Signal=5`) or `application/dtmf`
/// (`5`).
pub fn info_digit(content_type: &str, body: &[u8]) -> Option<char> {
    let ct = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let text = std::str::from_utf8(body).ok()?;
    let value = match ct.as_str() {
        "application/dtmf-relay" => text.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            k.trim().eq_ignore_ascii_case("signal").then(|| v.trim())
        })?,
        "application/dtmf" => text.trim(),
        _ => return None,
    };
    match value {
        "10" => Some('*'),
        "11" => Some('#'),
        v if v.len() == 1 => v
            .chars()
            .next()
            .filter(|c| c.is_ascii_digit() || *c == '*' || *c == '#'),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event: u8, end: bool) -> [u8; 4] {
        [event, if end { 0x80 | 10 } else { 10 }, 0, 160]
    }

    #[test]
    fn each_event_is_reported_once() {
        let mut r = EventReader::default();
        let mut got = Vec::new();
        // Digit 1: start, continuation, three end packets; then # likewise.
        for (ts, pkt) in [
            (100, ev(1, false)),
            (100, ev(1, false)),
            (100, ev(1, true)),
            (100, ev(1, true)),
            (100, ev(1, true)),
            (900, ev(11, false)),
            (900, ev(11, true)),
            (900, ev(11, true)),
        ] {
            r.push(ts, &pkt, &mut got);
        }
        assert_eq!(got, ['1', '#']);
    }

    #[test]
    fn an_event_whose_end_was_lost_still_counts() {
        let mut r = EventReader::default();
        let mut got = Vec::new();
        for (ts, pkt) in [
            (100, ev(4, false)),
            (100, ev(4, false)),
            (500, ev(2, false)),
            (500, ev(2, true)),
            (500, ev(2, true)),
        ] {
            r.push(ts, &pkt, &mut got);
        }
        assert_eq!(got, ['4', '2']);
        got.clear();
        r.push(900, &[16, 0x80, 0, 0], &mut got);
        r.push(901, &[1], &mut got);
        assert!(
            got.is_empty(),
            "flash is not a digit, a truncated payload is nothing"
        );
        // A lost end followed by a whole event: both, in order.
        r.push(1000, &ev(7, false), &mut got);
        r.push(1200, &ev(8, true), &mut got);
        assert_eq!(got, ['7', '8']);
    }

    #[test]
    fn info_bodies() {
        assert_eq!(
            info_digit("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n"),
            Some('5')
        );
        assert_eq!(
            info_digit("application/dtmf-relay", b"Signal= #\r\n"),
            Some('#')
        );
        assert_eq!(info_digit("Application/DTMF; charset=x", b"7"), Some('7'));
        assert_eq!(info_digit("application/dtmf", b"11"), Some('#'));
        assert_eq!(info_digit("application/sdp", b"5"), None);
        assert_eq!(info_digit("application/dtmf-relay", b"Duration=160"), None);
    }
}
