//! TCP stream reassembly for captures (RFC 9293 §3.4, sequence numbers), seen from outside.
//!
//! A capture holds TCP segments as the wire carried them: out of order, retransmitted,
//! overlapping, sometimes with a segment missing, and sometimes starting in the middle of a
//! connection. SIP over TCP is a byte stream (RFC 3261 §18.3), so replay needs each
//! direction's bytes exactly once and in order. [`Streams`] keeps one buffer per direction
//! (source and destination socket addresses) and hands out bytes as soon as they become
//! contiguous; it knows nothing of SIP, so where messages start and end is the caller's job.
//!
//! Sequence numbers are turned into 64-bit offsets from the start of the stream as they
//! arrive (by signed 32-bit distance from the next expected byte), so streams that wrap
//! around 2^32 reassemble like any other.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::payload::{Payload, Transport};

/// Out-of-order bytes held per direction before the missing bytes are given up on. A
/// capture that lost a segment would otherwise hold every later byte of that stream until
/// the end of the file; past this, the stream jumps over the hole (see `Payload::after_gap`).
const MAX_PENDING_BYTES: usize = 1 << 20;

/// One TCP segment as the reassembler needs it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Segment<'a> {
    pub seq: u32,
    pub syn: bool,
    pub rst: bool,
    pub data: &'a [u8],
}

/// Every direction of every TCP connection seen so far.
#[derive(Debug, Default)]
pub(crate) struct Streams {
    /// A `BTreeMap` so that the end-of-capture flush comes out in the same order every run.
    streams: BTreeMap<(SocketAddr, SocketAddr), Stream>,
}

/// One direction of one connection.
#[derive(Debug)]
struct Stream {
    /// Sequence number of the SYN, when one was seen: a SYN with another number on the same
    /// addresses starts a new connection, while the same number is a retransmitted SYN.
    isn: Option<u32>,
    /// Sequence number of stream offset 0: the SYN's plus one (the SYN consumes one number),
    /// or the first number seen when the capture starts mid-stream.
    base: u32,
    /// Stream offset of the next byte to hand out: everything before it was handed out.
    delivered: u64,
    /// Bytes that arrived ahead of a hole, by stream offset.
    pending: BTreeMap<u64, Vec<u8>>,
    pending_bytes: usize,
}

impl Streams {
    /// Takes one segment from `src` to `dst` seen at `time`, and appends to `out` the stream
    /// bytes it made contiguous (stamped with `time`, the time of the packet that completed
    /// them).
    pub(crate) fn segment(
        &mut self,
        time: Duration,
        src: SocketAddr,
        dst: SocketAddr,
        segment: Segment<'_>,
        out: &mut Vec<Payload>,
    ) {
        let stream = self
            .streams
            .entry((src, dst))
            .or_insert_with(|| Stream::new(segment.seq, segment.syn));
        let mut emit = Emitter {
            time,
            src,
            dst,
            out,
        };
        let data_seq = if segment.syn {
            if stream.isn != Some(segment.seq) {
                // The same addresses, a new connection: what the old one still held is given
                // up, past its holes, before the new stream starts.
                stream.flush(&mut emit);
                *stream = Stream::new(segment.seq, true);
            }
            segment.seq.wrapping_add(1)
        } else {
            segment.seq
        };
        // An RST's data, if any, is a diagnostic for the peer, never stream bytes.
        if segment.rst || segment.data.is_empty() {
            return;
        }
        let mut bytes = Vec::new();
        stream.insert(data_seq, segment.data, &mut bytes);
        emit.emit(bytes, false);
        while stream.pending_bytes > MAX_PENDING_BYTES {
            let mut bytes = Vec::new();
            stream.skip_gap(&mut bytes);
            emit.emit(bytes, true);
        }
    }

    /// Ends the capture: bytes still held behind a hole are handed out past it, stamped
    /// with `time` (the capture's last packet), since no retransmission will fill it now.
    pub(crate) fn finish(&mut self, time: Duration, out: &mut Vec<Payload>) {
        for (&(src, dst), stream) in &mut self.streams {
            stream.flush(&mut Emitter {
                time,
                src,
                dst,
                out,
            });
        }
    }
}

/// Where newly contiguous bytes go, with what they are stamped with.
struct Emitter<'a> {
    time: Duration,
    src: SocketAddr,
    dst: SocketAddr,
    out: &'a mut Vec<Payload>,
}

impl Emitter<'_> {
    fn emit(&mut self, bytes: Vec<u8>, after_gap: bool) {
        if !bytes.is_empty() {
            self.out.push(Payload {
                time: self.time,
                src: self.src,
                dst: self.dst,
                transport: Transport::Tcp,
                bytes,
                after_gap,
            });
        }
    }
}

impl Stream {
    fn new(seq: u32, syn: bool) -> Stream {
        Stream {
            isn: syn.then_some(seq),
            base: if syn { seq.wrapping_add(1) } else { seq },
            delivered: 0,
            pending: BTreeMap::new(),
            pending_bytes: 0,
        }
    }

    /// Stream offset of sequence number `seq`, taken as the nearest one to the next
    /// expected byte (within ±2^31), which is how TCP itself compares sequence numbers.
    fn offset_of(&self, seq: u32) -> i128 {
        // Truncating `delivered` is the point: sequence numbers count modulo 2^32.
        let next = self.base.wrapping_add(self.delivered as u32);
        let distance = seq.wrapping_sub(next) as i32;
        i128::from(self.delivered) + i128::from(distance)
    }

    /// Adds the bytes of one segment starting at `seq`, appending to `out` what became
    /// contiguous. Bytes already handed out (retransmissions, overlaps) are dropped.
    fn insert(&mut self, seq: u32, data: &[u8], out: &mut Vec<u8>) {
        let start = self.offset_of(seq);
        let delivered = i128::from(self.delivered);
        let end = start + data.len() as i128;
        if end <= delivered {
            return;
        }
        if start <= delivered {
            let already = usize::try_from(delivered - start).unwrap_or(usize::MAX);
            self.append(data.get(already..).unwrap_or_default(), out);
            self.drain(out);
            return;
        }
        // Ahead of a hole (start > delivered >= 0, so the conversion cannot fail).
        let Ok(start) = u64::try_from(start) else {
            return;
        };
        match self.pending.entry(start) {
            Entry::Vacant(entry) => {
                self.pending_bytes += data.len();
                entry.insert(data.to_vec());
            }
            Entry::Occupied(mut entry) => {
                if entry.get().len() < data.len() {
                    self.pending_bytes += data.len() - entry.get().len();
                    entry.insert(data.to_vec());
                }
            }
        }
    }

    fn append(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(bytes);
        self.delivered += bytes.len() as u64;
    }

    /// Hands out the held bytes that the stream has now reached.
    fn drain(&mut self, out: &mut Vec<u8>) {
        while let Some(entry) = self.pending.first_entry() {
            let start = *entry.key();
            if start > self.delivered {
                break;
            }
            let data = entry.remove();
            self.pending_bytes -= data.len();
            let already = usize::try_from(self.delivered - start).unwrap_or(usize::MAX);
            self.append(data.get(already..).unwrap_or_default(), out);
        }
    }

    /// Gives up on the first hole: the stream goes on from the first held bytes.
    fn skip_gap(&mut self, out: &mut Vec<u8>) {
        if let Some((&start, _)) = self.pending.first_key_value() {
            self.delivered = self.delivered.max(start);
            self.drain(out);
        }
    }

    /// Gives up on every hole, handing out all that is held, each run after a hole in its
    /// own payload so the caller knows where bytes are missing.
    fn flush(&mut self, emit: &mut Emitter<'_>) {
        while !self.pending.is_empty() {
            let mut bytes = Vec::new();
            self.skip_gap(&mut bytes);
            emit.emit(bytes, true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], port))
    }

    /// Feeds `(seq, syn, data)` segments from port 1 to port 2, one second apart, then
    /// ends the capture; returns each payload's (second, after_gap, text).
    fn run(segments: &[(u32, bool, &str)]) -> Vec<(u64, bool, String)> {
        let mut streams = Streams::default();
        let mut out = Vec::new();
        let mut last = 0;
        for (i, &(seq, syn, data)) in segments.iter().enumerate() {
            last = i as u64;
            let segment = Segment {
                seq,
                syn,
                rst: false,
                data: data.as_bytes(),
            };
            streams.segment(
                Duration::from_secs(last),
                addr(1),
                addr(2),
                segment,
                &mut out,
            );
        }
        streams.finish(Duration::from_secs(last + 100), &mut out);
        out.into_iter()
            .map(|p| {
                (
                    p.time.as_secs(),
                    p.after_gap,
                    String::from_utf8(p.bytes).expect("test data is text"),
                )
            })
            .collect()
    }

    fn text(payloads: &[(u64, bool, String)]) -> String {
        payloads.iter().map(|(_, _, s)| s.as_str()).collect()
    }

    #[test]
    fn in_order_segments_come_out_one_payload_each() {
        let out = run(&[(100, true, ""), (101, false, "abc"), (104, false, "def")]);
        assert_eq!(
            out,
            [(1, false, "abc".to_owned()), (2, false, "def".to_owned())]
        );
    }

    #[test]
    fn the_syn_consumes_one_sequence_number() {
        // Data at the SYN's own number would overlap the SYN: only "bc" is new.
        let out = run(&[(100, true, ""), (100, false, "abc")]);
        assert_eq!(text(&out), "bc");
    }

    #[test]
    fn out_of_order_segments_wait_for_the_hole_and_take_its_time() {
        let out = run(&[
            (100, true, ""),
            (107, false, "ghi"),
            (104, false, "def"),
            (101, false, "abc"),
        ]);
        assert_eq!(out, [(3, false, "abcdefghi".to_owned())]);
    }

    #[test]
    fn retransmissions_and_overlaps_are_not_duplicated() {
        let out = run(&[
            (0, false, "abcd"),
            (0, false, "abcd"),
            (2, false, "cdef"),
            (9, false, "jk"),
            (8, false, "ijk"),
            (6, false, "ghij"),
        ]);
        assert_eq!(text(&out), "abcdefghijk");
        assert!(out.iter().all(|(_, gap, _)| !gap));
    }

    #[test]
    fn a_capture_starting_mid_stream_starts_at_the_first_number_seen() {
        let out = run(&[(5000, false, "tail of"), (5007, false, " a stream")]);
        assert_eq!(text(&out), "tail of a stream");
    }

    #[test]
    fn sequence_numbers_wrap_around() {
        let out = run(&[
            (u32::MAX - 2, true, ""),
            (u32::MAX - 1, false, "ab"),
            (1, false, "cd"),
            (0, false, "xc"),
        ]);
        // The third segment is ahead of a one-byte hole at number 0, which the fourth fills.
        assert_eq!(text(&out), "abxcd");
    }

    #[test]
    fn a_hole_never_filled_is_skipped_at_the_end_and_flagged() {
        let out = run(&[(0, false, "abc"), (10, false, "klm"), (20, false, "uvw")]);
        assert_eq!(
            out,
            [
                (0, false, "abc".to_owned()),
                (102, true, "klm".to_owned()),
                (102, true, "uvw".to_owned()),
            ]
        );
    }

    #[test]
    fn a_new_syn_on_the_same_addresses_starts_a_new_stream() {
        let out = run(&[
            (100, true, ""),
            (101, false, "one"),
            (100, true, ""),
            (9000, true, ""),
            (9001, false, "two"),
        ]);
        assert_eq!(text(&out), "onetwo");
    }

    #[test]
    fn rst_data_is_not_stream_data() {
        let mut streams = Streams::default();
        let mut out = Vec::new();
        let rst = Segment {
            seq: 0,
            syn: false,
            rst: true,
            data: b"reset reason",
        };
        streams.segment(Duration::ZERO, addr(1), addr(2), rst, &mut out);
        streams.finish(Duration::ZERO, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn too_much_held_data_skips_the_hole_without_waiting_for_the_end() {
        let mut streams = Streams::default();
        let mut out = Vec::new();
        let chunk = vec![b'x'; 64 * 1024];
        for i in 0..=(MAX_PENDING_BYTES / chunk.len()) as u32 {
            let segment = Segment {
                seq: 1000 + i * chunk.len() as u32,
                syn: false,
                rst: false,
                data: &chunk,
            };
            streams.segment(Duration::ZERO, addr(1), addr(2), segment, &mut out);
        }
        // The stream started at 1000 with the first segment, so nothing was held: send a
        // new connection whose first data segment is lost.
        out.clear();
        let syn = Segment {
            seq: 0,
            syn: true,
            rst: false,
            data: &[],
        };
        streams.segment(Duration::ZERO, addr(1), addr(2), syn, &mut out);
        for i in 0..=(MAX_PENDING_BYTES / chunk.len()) as u32 {
            let segment = Segment {
                seq: 1 + (i + 1) * chunk.len() as u32,
                syn: false,
                rst: false,
                data: &chunk,
            };
            streams.segment(Duration::ZERO, addr(1), addr(2), segment, &mut out);
        }
        assert_eq!(out.len(), 1);
        assert!(out.iter().all(|p| p.after_gap));
        let held: usize = out.iter().map(|p| p.bytes.len()).sum();
        assert_eq!(held, MAX_PENDING_BYTES + chunk.len());
    }
}
