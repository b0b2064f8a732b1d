//! Stream framing (RFC 3261 §18.3): `sip::frame` over the whole buffer and `StreamFramer`
//! fed the same bytes in pieces.
//!
//! Input: 2 bytes of `max` (little-endian, plus one), 1 byte `k`, then `k % 16` bytes of
//! chunk sizes (each byte + 1, cycled; none means one push), then the stream.
//!
//! Invariants:
//! - `frame`: a `Complete(n)` never exceeds the buffer nor `max`, never is 0, and the same
//!   prefix of `n` bytes frames to the same `n` (framing does not look past the message);
//! - `StreamFramer`: no frame is longer than `max`, and its frames are those `frame` finds
//!   over the whole stream (blank lines before each message taken off), up to the first
//!   error of either: framing in pieces never sees a different message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipscreen::sip::{frame, Framing, StreamFramer};

/// Messages `frame` finds over the whole stream, without the blank lines before each.
fn whole(stream: &[u8], max: usize) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < stream.len() {
        let buf = &stream[pos..];
        match frame(buf, max) {
            Ok(Framing::Complete(n)) => {
                assert!(n > 0, "an empty frame would loop forever");
                assert!(
                    n <= buf.len(),
                    "Complete({n}) beyond a buffer of {}",
                    buf.len()
                );
                assert!(n <= max, "Complete({n}) beyond max {max}");
                assert_eq!(
                    frame(&buf[..n], max),
                    Ok(Framing::Complete(n)),
                    "the message alone frames the same"
                );
                let lead = buf[..n]
                    .iter()
                    .take_while(|&&b| b == b'\r' || b == b'\n')
                    .count();
                out.push(&buf[lead..n]);
                pos += n;
            }
            Ok(Framing::Incomplete) | Err(_) => break,
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let max = usize::from(u16::from_le_bytes([data[0], data[1]])) + 1;
    let k = usize::from(data[2] % 16);
    let Some(sizes) = data.get(3..3 + k) else {
        return;
    };
    let stream = &data[3 + k..];

    let expected = whole(stream, max);

    let mut framer = StreamFramer::default();
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut pos = 0;
    let mut i = 0;
    'feed: while pos < stream.len() {
        let size = if sizes.is_empty() {
            stream.len()
        } else {
            usize::from(sizes[i % sizes.len()]) + 1
        };
        i += 1;
        let end = (pos + size).min(stream.len());
        framer.push(&stream[pos..end]);
        pos = end;
        loop {
            match framer.next(max) {
                Ok(Some(m)) => {
                    assert!(m.len() <= max, "a frame of {} beyond max {max}", m.len());
                    assert!(!m.is_empty());
                    got.push(m);
                }
                Ok(None) => break,
                Err(_) => break 'feed,
            }
        }
    }
    let common = got.len().min(expected.len());
    for (j, (a, b)) in got.iter().zip(&expected).take(common).enumerate() {
        assert_eq!(
            a.as_slice(),
            *b,
            "message {j}: framing in pieces differs from framing the whole"
        );
    }
    // Every byte the framer handed out came from the stream, in order.
    let total: usize = got.iter().map(Vec::len).sum();
    assert!(total <= stream.len());
});
