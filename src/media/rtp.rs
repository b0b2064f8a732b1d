//! RTP packets (RFC 3550 §5.1): the fixed header, CSRCs and header extension skipped on
//! reading; 12-byte headers on writing.

/// A received RTP packet, borrowing its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload: &'a [u8],
}

/// Reads an RTP packet; `None` for anything that is not RTP version 2 or is truncated.
pub fn parse(b: &[u8]) -> Option<Packet<'_>> {
    let first = *b.first()?;
    if first >> 6 != 2 {
        return None;
    }
    let padding = first & 0x20 != 0;
    let extension = first & 0x10 != 0;
    let csrcs = usize::from(first & 0x0f);
    let second = *b.get(1)?;
    let word = |i: usize| {
        b.get(i..i + 4)
            .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
    };
    let sequence = u16::from_be_bytes([*b.get(2)?, *b.get(3)?]);
    let timestamp = word(4)?;
    let ssrc = word(8)?;
    let mut start = 12 + 4 * csrcs;
    if extension {
        let len = u16::from_be_bytes([*b.get(start + 2)?, *b.get(start + 3)?]);
        start += 4 + 4 * usize::from(len);
    }
    let mut end = b.len();
    if padding {
        end = end.checked_sub(usize::from(*b.last()?))?;
    }
    let payload = b.get(start..end)?;
    Some(Packet {
        marker: second & 0x80 != 0,
        payload_type: second & 0x7f,
        sequence,
        timestamp,
        ssrc,
        payload,
    })
}

/// Writes a packet: version 2, no padding, extension or CSRC.
pub fn write(
    marker: bool,
    payload_type: u8,
    sequence: u16,
    timestamp: u32,
    ssrc: u32,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + payload.len());
    out.push(0x80);
    out.push((u8::from(marker) << 7) | (payload_type & 0x7f));
    out.extend_from_slice(&sequence.to_be_bytes());
    out.extend_from_slice(&timestamp.to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejections() {
        let p = write(true, 101, 7, 160, 0xdead_beef, &[1, 2, 3, 4]);
        let r = parse(&p).unwrap();
        assert_eq!(
            (
                r.marker,
                r.payload_type,
                r.sequence,
                r.timestamp,
                r.ssrc,
                r.payload
            ),
            (true, 101, 7, 160, 0xdead_beef, &[1, 2, 3, 4][..])
        );
        assert!(parse(&p[..11]).is_none());
        assert!(parse(&[0x40; 20]).is_none(), "version 1");
        // CSRC count and padding.
        let mut c = p.clone();
        c[0] |= 0x21;
        c.splice(12..12, [0, 0, 0, 9]);
        c.extend_from_slice(&[0, 0, 3]);
        assert_eq!(parse(&c).unwrap().payload, &[1, 2, 3, 4]);
        let mut bad = p.clone();
        bad[0] |= 0x20;
        *bad.last_mut().unwrap() = 200;
        assert!(parse(&bad).is_none(), "padding longer than the packet");
    }
}
