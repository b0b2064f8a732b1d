//! Forwarding by editing bytes (RFC 3261 §16.6): a message is copied as received, with a few
//! ranges replaced, removed or inserted. Nothing is re-serialized from a model, so unknown
//! headers, their order, their spelling and the body pass through untouched.

use std::ops::Range;

use crate::sip::{HeaderName, Message};

/// A set of edits to one message: ranges of the original replaced by new bytes (an empty
/// range inserts).
#[derive(Default, Debug)]
pub struct Splice {
    edits: Vec<(Range<usize>, Vec<u8>)>,
}

impl Splice {
    pub fn replace(&mut self, range: Range<usize>, with: impl Into<Vec<u8>>) {
        self.edits.push((range, with.into()));
    }

    pub fn insert(&mut self, at: usize, with: impl Into<Vec<u8>>) {
        self.edits.push((at..at, with.into()));
    }

    pub fn remove(&mut self, range: Range<usize>) {
        self.edits.push((range, Vec::new()));
    }

    /// The edited copy of `src`. Edits must not overlap; inserts at the same place keep the
    /// order they were given in.
    pub fn apply(mut self, src: &[u8]) -> Vec<u8> {
        self.edits.sort_by_key(|(r, _)| (r.start, r.end));
        let extra: usize = self.edits.iter().map(|(_, b)| b.len()).sum();
        let mut out = Vec::with_capacity(src.len() + extra);
        let mut pos = 0;
        for (range, bytes) in &self.edits {
            let start = range.start.clamp(pos, src.len());
            out.extend_from_slice(&src[pos..start]);
            out.extend_from_slice(bytes);
            pos = range.end.clamp(start, src.len());
        }
        out.extend_from_slice(&src[pos..]);
        out
    }
}

/// The ranges of the comma-separated values of a header value (`<...>` and quoted strings
/// may hold commas), absolute in the message.
pub fn split_values(text: &str, base: usize) -> Vec<Range<usize>> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let (mut start, mut angle, mut quoted, mut i) = (0, false, false, 0);
    while let Some(&c) = b.get(i) {
        match c {
            b'\\' if quoted => i += 1,
            b'"' if !angle => quoted = !quoted,
            b'<' if !quoted => angle = true,
            b'>' if !quoted => angle = false,
            b',' if !angle && !quoted => {
                out.push(trimmed(text, start, i, base));
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    out.push(trimmed(text, start, b.len(), base));
    out
}

fn trimmed(text: &str, start: usize, end: usize, base: usize) -> Range<usize> {
    let piece = &text[start..end];
    let lead = piece.len() - piece.trim_start().len();
    base + start + lead..base + start + lead + piece.trim().len()
}

/// Removes the first `count` values of headers `name` (e.g. our own Route entries), whole
/// lines when every value of a line goes.
pub fn remove_first_values(msg: &Message, name: HeaderName, mut count: usize, splice: &mut Splice) {
    for h in msg.headers().iter().filter(|h| h.name == name) {
        if count == 0 {
            return;
        }
        let values = split_values(msg.text(&h.value), h.value.start);
        if values.len() <= count {
            splice.remove(h.line.clone());
            count -= values.len();
        } else {
            // Remove the first `count` values and the separator after the last of them.
            splice.remove(values[0].start..values[count].start);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_and_values() {
        let mut s = Splice::default();
        s.insert(0, "A");
        s.replace(2..4, "xy");
        s.remove(5..6);
        s.insert(8, "!");
        assert_eq!(s.apply(b"0123456789"), b"A01xy467!89");
        let text = "<sip:a@b;lr>, \"x,y\" <sip:c@d>,sip:e@f";
        let v: Vec<&str> = split_values(text, 0)
            .into_iter()
            .map(|r| &text[r])
            .collect();
        assert_eq!(v, ["<sip:a@b;lr>", "\"x,y\" <sip:c@d>", "sip:e@f"]);
    }

    #[test]
    fn blank_values_give_empty_ranges() {
        // Found by fuzzing (sip_message): `Require: nothingSupportsThis, ,x` gave the blank
        // value between the commas a range ending before it starts.
        let text = "a, ,b,  ";
        for r in split_values(text, 10) {
            assert!(r.start <= r.end, "{r:?}");
        }
        let v: Vec<&str> = split_values(text, 0)
            .into_iter()
            .map(|r| &text[r])
            .collect();
        assert_eq!(v, ["a", "", "b", ""]);
    }

    #[test]
    fn removing_route_values() {
        let raw = b"BYE sip:x@1.2.3.4 SIP/2.0\r\nRoute: <sip:1.1.1.1;lr>, <sip:2.2.2.2;lr>\r\nRoute: <sip:3.3.3.3;lr>\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKa\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: c\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n";
        let msg = Message::parse(raw).unwrap();
        for (count, expect) in [
            (1, "Route: <sip:2.2.2.2;lr>\r\nRoute: <sip:3.3.3.3;lr>\r\n"),
            (2, "Route: <sip:3.3.3.3;lr>\r\nVia"),
            (3, "BYE sip:x@1.2.3.4 SIP/2.0\r\nVia"),
        ] {
            let mut s = Splice::default();
            remove_first_values(&msg, HeaderName::Route, count, &mut s);
            let out = String::from_utf8(s.apply(msg.bytes())).unwrap();
            assert!(out.contains(expect), "{count}: {out}");
        }
    }
}
