//! Where a message's parts lie in its bytes, before any header is understood (RFC 3261 §7,
//! §7.3.1, §18.3): the end of the header block, its lines (folded lines joined), each line's
//! name and value, the Content-Length; and, built on them, where a message ends in a stream,
//! telling "need more bytes" from "this can never be a message", as TCP needs: [`frame`] for
//! bytes at hand, [`StreamFramer`] for a stream read piece by piece. [`ParseError`] is what
//! bytes that are not a message get, from here and from `Message::parse`.

use std::fmt;
use std::ops::Range;

use super::header::HeaderName;
use super::lex::is_token_char;

/// Why bytes are not a message the proxy can handle, and what to answer when it can answer:
/// requests get `status` (400 unless said otherwise), responses are dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub status: u16,
    pub reason: String,
    /// Whether the bytes are a request (and so can be answered).
    pub request: bool,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason, self.status)
    }
}

impl std::error::Error for ParseError {}

/// Where a message ends in a byte stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// Not enough bytes yet.
    Incomplete,
    /// The first message is this many bytes long.
    Complete(usize),
}

/// Finds the end of the first message of a stream (RFC 3261 §18.3): the header block, then
/// `Content-Length` bytes of body (0 when absent). CRLFs between messages (keep-alives,
/// RFC 5626) are skipped and counted in the length. An error means the stream can never
/// frame (no Content-Length number, or a header block longer than `max`).
pub fn frame(buf: &[u8], max: usize) -> Result<Framing, ParseError> {
    let lead = buf
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    let rest = &buf[lead..];
    let Some(head_end) = find_head_end(rest) else {
        if rest.len() > max {
            return Err(bad(400, "message too large", true));
        }
        return Ok(Framing::Incomplete);
    };
    let total = lead + message_length(rest, head_end)?;
    if total > max {
        return Err(bad(413, "message too large", true));
    }
    if buf.len() < total {
        return Ok(Framing::Incomplete);
    }
    Ok(Framing::Complete(total))
}

/// The length of a message whose header block ends at `head_end` (as [`find_head_end`]
/// gives it): the header block and `Content-Length` bytes of body.
fn message_length(buf: &[u8], head_end: (usize, usize)) -> Result<usize, ParseError> {
    let mut length = 0usize;
    for line in HeaderLines::new(&buf[..head_end.0]).skip(1) {
        let (name, value) = split_header(buf, &line)?;
        if HeaderName::from_bytes(&buf[name]) == HeaderName::ContentLength {
            length = parse_content_length(trim(&buf[value]))?;
        }
    }
    Ok(head_end.1 + length)
}

/// Framing that resumes where it stopped, for a stream that arrives in pieces (SPEC §7:
/// framing work is linear in the bytes received). Blank lines before a message (RFC 5626
/// keep-alives) are taken off as they come and counted: more than `max` of them in a row
/// can never lead to a message, so the stream is refused.
#[derive(Debug, Default)]
pub struct StreamFramer {
    buf: Vec<u8>,
    /// Where the bytes not yet framed start in `buf`: framed messages and blank lines are
    /// not removed one by one (each removal would move what follows), only once per read.
    start: usize,
    /// How far (from `start`) the search for the end of the header block has looked.
    scanned: usize,
    /// The whole message's length, once its header block is complete.
    total: Option<usize>,
    /// Blank-line bytes since the last message.
    blank: usize,
}

impl StreamFramer {
    /// Bytes received.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.drain(..self.start);
        self.start = 0;
        self.buf.extend_from_slice(bytes);
    }

    /// Blank lines before the next message stop counting (the peer paused: those were
    /// keep-alives, not a flood).
    pub fn forgive_blank_lines(&mut self) {
        self.blank = 0;
    }

    /// Whether part of a message (not just blank lines) is waiting for the rest.
    pub fn in_message(&self) -> bool {
        self.buf.len() > self.start
    }

    /// The next complete message, if one is there.
    pub fn next(&mut self, max: usize) -> Result<Option<Vec<u8>>, ParseError> {
        if self.total.is_none() && self.scanned == 0 {
            let lead = self.buf[self.start..]
                .iter()
                .take_while(|&&b| b == b'\r' || b == b'\n')
                .count();
            self.blank += lead;
            if self.blank > max {
                return Err(bad(400, "blank lines beyond the largest message", true));
            }
            self.start += lead;
        }
        let pending = &self.buf[self.start..];
        if pending.is_empty() {
            return Ok(None);
        }
        let total = match self.total {
            Some(t) => t,
            None => {
                // The blank line may straddle the previous read: look back 3 bytes.
                let from = self.scanned.saturating_sub(3);
                let Some((a, b)) = find_head_end(&pending[from..]) else {
                    self.scanned = pending.len();
                    if pending.len() > max {
                        return Err(bad(400, "message too large", true));
                    }
                    return Ok(None);
                };
                let t = message_length(pending, (from + a, from + b))?;
                if t > max {
                    return Err(bad(413, "message too large", true));
                }
                self.total = Some(t);
                t
            }
        };
        if pending.len() < total {
            return Ok(None);
        }
        let message = pending[..total].to_vec();
        self.start += total;
        self.total = None;
        self.scanned = 0;
        self.blank = 0;
        Ok(Some(message))
    }
}

pub(super) fn bad(status: u16, reason: &str, request: bool) -> ParseError {
    ParseError {
        status,
        reason: reason.to_owned(),
        request,
    }
}

/// The end of the header block: (index of the blank line, index after it).
pub(super) fn find_head_end(buf: &[u8]) -> Option<(usize, usize)> {
    // A blank CRLF ends it after a line ending in CRLF or in a bare LF (`\n\r\n` covers
    // both): forwarding that removes the last header line can leave the latter.
    let crlf = memchr::memmem::find(buf, b"\n\r\n").map(|i| (i + 1, i + 3));
    let lf = memchr::memmem::find(buf, b"\n\n").map(|i| (i + 1, i + 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// Header lines of a header block, continuation lines joined: each item is the range of one
/// logical line, its line ending included.
pub(super) struct HeaderLines<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> HeaderLines<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }
}

impl Iterator for HeaderLines<'_> {
    type Item = Range<usize>;
    fn next(&mut self) -> Option<Range<usize>> {
        let start = self.pos;
        if start >= self.buf.len() {
            return None;
        }
        let mut i = start;
        loop {
            match memchr::memchr(b'\n', &self.buf[i..]) {
                None => {
                    self.pos = self.buf.len();
                    return Some(start..self.buf.len());
                }
                Some(n) => {
                    i += n + 1;
                    // The first line (start line) is never folded.
                    let folded = start != 0 && matches!(self.buf.get(i), Some(b' ' | b'\t'));
                    if !folded {
                        self.pos = i;
                        return Some(start..i);
                    }
                }
            }
        }
    }
}

/// Splits a header line into name and value ranges (absolute).
pub(super) fn split_header(
    buf: &[u8],
    line: &Range<usize>,
) -> Result<(Range<usize>, Range<usize>), ParseError> {
    let bytes = &buf[line.clone()];
    let colon =
        memchr::memchr(b':', bytes).ok_or_else(|| bad(400, "header line without a colon", true))?;
    let raw_name = &bytes[..colon];
    let name_len = raw_name
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |p| p + 1);
    let name = &raw_name[..name_len];
    if name.is_empty() || !name.iter().all(|&b| is_token_char(b)) {
        return Err(bad(400, "malformed header name", true));
    }
    let mut v_start = colon + 1;
    while bytes.get(v_start).is_some_and(|b| b.is_ascii_whitespace()) {
        v_start += 1;
    }
    let v_end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(v_start, |p| (p + 1).max(v_start));
    Ok((
        line.start..line.start + name_len,
        line.start + v_start..line.start + v_end,
    ))
}

pub(super) fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |p| p + 1);
    &b[start..end.max(start)]
}

pub(super) fn parse_content_length(v: &[u8]) -> Result<usize, ParseError> {
    if v.is_empty() || v.len() > 10 || !v.iter().all(u8::is_ascii_digit) {
        return Err(bad(400, "bad Content-Length", true));
    }
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(400, "bad Content-Length", true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::Message;

    /// Found by fuzzing (sip_message, then proxy_core): a header line ending in a bare LF
    /// before a blank CRLF line. Forwarding makes it whenever the line it removes (an
    /// untrusted P-Asserted-Identity, our Route) is the last one and ends in CRLF after a
    /// bare-LF line; the copy then did not parse again, so the dial-prefix PIN was not
    /// stripped from it.
    #[test]
    fn a_bare_lf_line_then_a_blank_crlf_ends_the_headers() {
        let raw = b"INVITE sip:1@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKa\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:1@h>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 4\n\r\nv=0\n";
        let msg = Message::parse(raw).unwrap();
        assert_eq!(msg.headers().len(), 6);
        assert_eq!(msg.body(), b"v=0\n");
        assert_eq!(frame(raw, 1000), Ok(Framing::Complete(raw.len())));
    }
}
