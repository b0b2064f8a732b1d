//! The PIN prompt's media parsers on arbitrary bytes:
//! - `media::sdp::parse_offer` on the whole input; when it gives an offer, our `answer` to it
//!   reads back as an offer of the same codec and telephone-event type at our address;
//! - `media::rtp::parse` on the input cut into packets (each preceded by its length byte);
//!   a packet that parses writes back (`rtp::write`) to the same header fields and payload;
//!   each packet's payload goes to an RFC 4733 `EventReader`, which only reports digits;
//! - `media::dtmf::info_digit` with each INFO content type (and the input's first line as
//!   one), which only ever gives a DTMF key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipscreen::media::dtmf::{info_digit, EventReader};
use sipscreen::media::{rtp, sdp};

const CONTENT_TYPES: [&str; 5] = [
    "application/dtmf-relay",
    "application/dtmf",
    "Application/DTMF-Relay; charset=utf-8",
    " application/dtmf ;x",
    "text/plain",
];

fn is_key(c: char) -> bool {
    c.is_ascii_digit() || c == '*' || c == '#'
}

fuzz_target!(|data: &[u8]| {
    if let Ok(offer) = sdp::parse_offer(data) {
        assert_ne!(offer.remote.port(), 0);
        assert!(!offer.remote.ip().is_unspecified());
        for local in ["127.0.0.1:41000", "[::1]:41001"] {
            let local = local.parse().expect("an address");
            let answer = sdp::answer(&offer, local, 42);
            let back = sdp::parse_offer(answer.as_bytes())
                .unwrap_or_else(|e| panic!("our answer does not read back ({e}):\n{answer}"));
            assert_eq!(back.remote, local, "{answer}");
            assert_eq!(back.codec, offer.codec, "{answer}");
            assert_eq!(back.telephone_event, offer.telephone_event, "{answer}");
        }
    }

    let mut reader = EventReader::default();
    let mut digits = Vec::new();
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let n = usize::from(len).min(tail.len());
        let (packet, tail) = tail.split_at(n);
        rest = tail;
        let Some(p) = rtp::parse(packet) else {
            continue;
        };
        assert!(p.payload.len() <= packet.len().saturating_sub(12));
        let written = rtp::write(
            p.marker,
            p.payload_type,
            p.sequence,
            p.timestamp,
            p.ssrc,
            p.payload,
        );
        let q = rtp::parse(&written).expect("a written packet parses");
        assert_eq!(
            (
                q.marker,
                q.payload_type,
                q.sequence,
                q.timestamp,
                q.ssrc,
                q.payload
            ),
            (
                p.marker,
                p.payload_type,
                p.sequence,
                p.timestamp,
                p.ssrc,
                p.payload
            )
        );
        reader.push(p.timestamp, p.payload, &mut digits);
    }
    // The bare payloads too, as 4-byte events with the index as timestamp.
    for (i, chunk) in data.chunks(4).enumerate() {
        reader.push(i as u32 / 3, chunk, &mut digits);
    }
    assert!(digits.iter().all(|&c| is_key(c)), "{digits:?}");

    for ct in CONTENT_TYPES {
        if let Some(c) = info_digit(ct, data) {
            assert!(is_key(c), "{c:?}");
        }
    }
    let text = String::from_utf8_lossy(data);
    let (first, body) = text.split_once('\n').unwrap_or((&text, ""));
    if let Some(c) = info_digit(first, body.as_bytes()) {
        assert!(is_key(c), "{c:?}");
    }
});
