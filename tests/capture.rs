//! The capture-reading layer of `sipscreen replay`, against real public captures
//! (`tests/captures/`, see SOURCES.md there) and small captures built here byte by byte.
//!
//! The expected numbers for the real captures were read with tshark.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use etherparse::{IpFragOffset, IpNumber, Ipv4Header, PacketBuilder};
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::simple_packet::SimplePacketBlock;
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::DataLink;
use sipscreen::replay::{Capture, CaptureError, Payload, Transport};

// ---------------------------------------------------------------------------------------
// Helpers

fn captures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/captures")
}

fn read(name: &str) -> Capture {
    let path = captures_dir().join(name);
    Capture::read(&path).unwrap_or_else(|e| panic!("{e}"))
}

fn bytes_of(name: &str) -> Vec<u8> {
    std::fs::read(captures_dir().join(name)).expect("test capture")
}

/// A file of the test's own under Cargo's scratch directory for integration tests.
fn scratch(name: &str, bytes: &[u8]) -> PathBuf {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, bytes).expect("write scratch file");
    path
}

/// The SIP start line a payload begins with, if it begins with one.
fn start_line(bytes: &[u8]) -> Option<&str> {
    let end = bytes.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&bytes[..end]).ok()?;
    let is_response = line.starts_with("SIP/2.0 ");
    let is_request = line.ends_with(" SIP/2.0")
        && line
            .split(' ')
            .next()
            .is_some_and(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()));
    (is_response || is_request).then_some(line)
}

/// "INVITE" for a request, "180" for a response.
fn summary(line: &str) -> String {
    match line.strip_prefix("SIP/2.0 ") {
        Some(status) => status.split(' ').next().unwrap_or_default().to_owned(),
        None => line.split(' ').next().unwrap_or_default().to_owned(),
    }
}

/// The summaries of the payloads of `transport` that start with a SIP start line.
fn sip_summaries(capture: &Capture, transport: Transport) -> Vec<String> {
    capture
        .payloads()
        .iter()
        .filter(|p| p.transport == transport)
        .filter_map(|p| start_line(&p.bytes))
        .map(summary)
        .collect()
}

/// Splits a byte stream into SIP messages by Content-Length (RFC 3261 §18.3), checking
/// that each is complete; returns each message's start line, Content-Length and body.
fn split_messages(mut stream: &[u8]) -> Vec<(String, usize, Vec<u8>)> {
    let mut messages = Vec::new();
    while !stream.is_empty() {
        let head_end = stream
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("every message has a complete head");
        let head = std::str::from_utf8(&stream[..head_end]).expect("SIP head is text");
        let line = start_line(stream).expect("each message starts with a start line");
        let length = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                let name = name.trim();
                (name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l"))
                    .then(|| {
                        value
                            .trim()
                            .parse::<usize>()
                            .expect("numeric Content-Length")
                    })
            })
            .unwrap_or(0);
        let body_start = head_end + 4;
        assert!(
            stream.len() >= body_start + length,
            "{line}: body shorter than its Content-Length {length}"
        );
        messages.push((
            summary(line),
            length,
            stream[body_start..body_start + length].to_vec(),
        ));
        stream = &stream[body_start + length..];
    }
    messages
}

fn concat(payloads: &[&Payload]) -> Vec<u8> {
    payloads.iter().flat_map(|p| p.bytes.clone()).collect()
}

fn v4(a: u8, b: u8, c: u8, d: u8, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(a, b, c, d)), port)
}

/// Offsets of the packet records of a little-endian pcap.
fn pcap_record_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        offsets.push(at);
        let incl = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        at += 16 + incl;
    }
    offsets
}

// ---------------------------------------------------------------------------------------
// Building captures

/// A pcap file with the given link type: little- or big-endian, micro- or nanosecond.
struct PcapFile {
    link_type: u32,
    big_endian: bool,
    nanos: bool,
    snaplen: u32,
    bytes: Vec<u8>,
}

impl PcapFile {
    fn new(link_type: u32) -> PcapFile {
        PcapFile {
            link_type,
            big_endian: false,
            nanos: false,
            snaplen: 65535,
            bytes: Vec::new(),
        }
    }

    fn u32(&self, v: u32) -> [u8; 4] {
        if self.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    /// Adds a record; `orig_len` larger than the data is a snap-length cut.
    fn record_cut(mut self, time: Duration, data: &[u8], orig_len: usize) -> PcapFile {
        let frac = if self.nanos {
            time.subsec_nanos()
        } else {
            time.subsec_micros()
        };
        let mut record = Vec::new();
        record.extend(self.u32(time.as_secs() as u32));
        record.extend(self.u32(frac));
        record.extend(self.u32(data.len() as u32));
        record.extend(self.u32(orig_len as u32));
        record.extend_from_slice(data);
        self.bytes.extend(record);
        self
    }

    fn record(self, time: Duration, data: &[u8]) -> PcapFile {
        self.record_cut(time, data, data.len())
    }

    fn finish(&self) -> Vec<u8> {
        let magic: u32 = if self.nanos { 0xA1B2_3C4D } else { 0xA1B2_C3D4 };
        let mut out = Vec::new();
        out.extend(self.u32(magic));
        let (major, minor) = if self.big_endian {
            (2u16.to_be_bytes(), 4u16.to_be_bytes())
        } else {
            (2u16.to_le_bytes(), 4u16.to_le_bytes())
        };
        out.extend(major);
        out.extend(minor);
        out.extend(self.u32(0));
        out.extend(self.u32(0));
        out.extend(self.u32(self.snaplen));
        out.extend(self.u32(self.link_type));
        out.extend_from_slice(&self.bytes);
        out
    }
}

const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];
const HOST_A: [u8; 4] = [192, 0, 2, 1];
const HOST_B: [u8; 4] = [192, 0, 2, 2];

fn udp_ip(src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ipv4(src, dst, 64)
        .udp(5060, 5060)
        .write(&mut out, payload)
        .expect("build packet");
    out
}

fn udp_ip6(payload: &[u8]) -> Vec<u8> {
    let mut src = [0u8; 16];
    src[..2].copy_from_slice(&[0x20, 0x01]);
    src[15] = 1;
    let mut dst = src;
    dst[15] = 2;
    let mut out = Vec::new();
    PacketBuilder::ipv6(src, dst, 64)
        .udp(5062, 5060)
        .write(&mut out, payload)
        .expect("build packet");
    out
}

fn udp_eth(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(HOST_A, HOST_B, 64)
        .udp(5060, 5060)
        .write(&mut out, payload)
        .expect("build packet");
    out
}

/// A TCP segment from HOST_A:40000 to HOST_B:5060 in an Ethernet frame.
fn tcp_eth(seq: u32, syn: bool, payload: &[u8]) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(HOST_A, HOST_B, 64)
        .tcp(40000, 5060, seq, 65535);
    let builder = if syn { builder.syn() } else { builder.ack(1) };
    let mut out = Vec::new();
    builder.write(&mut out, payload).expect("build packet");
    out
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(1_700_000_000 + s)
}

const REGISTER: &[u8] = b"REGISTER sip:example.com SIP/2.0\r\nContent-Length: 0\r\n\r\n";

// ---------------------------------------------------------------------------------------
// Real captures

#[test]
fn cancel_pcap_gives_seven_udp_sip_messages_on_loopback() {
    let capture = read("cancel.pcap");
    assert_eq!(capture.packets(), 7);
    assert_eq!(capture.skipped(), 0);
    assert_eq!(capture.payloads().len(), 7);
    assert_eq!(
        sip_summaries(&capture, Transport::Udp),
        ["INVITE", "100", "180", "CANCEL", "200", "487", "ACK"]
    );
    let first = &capture.payloads()[0];
    assert_eq!(first.src, v4(127, 0, 0, 1, 5060));
    assert_eq!(first.dst, v4(127, 0, 0, 1, 5090));
    assert_eq!(first.bytes.len(), 578 - 8);
    assert_eq!(first.time, Duration::new(1_362_867_909, 703_901_000));
    assert!(!first.after_gap);
    let messages = split_messages(&first.bytes);
    assert_eq!(messages.len(), 1);
    assert!(messages[0].1 > 0, "the INVITE carries SDP");
}

#[test]
fn a_real_pcapng_reads_like_the_pcap_it_was_converted_from() {
    let pcap = read("cancel.pcap");
    let pcapng = read("cancel.pcapng");
    assert_eq!(pcapng.packets(), 7);
    assert_eq!(pcapng.skipped(), 0);
    assert_eq!(pcapng.payloads(), pcap.payloads());
}

#[test]
fn simple_invite_scenario_is_one_whole_call() {
    let capture = read("simple_invite_scenario.pcap");
    assert_eq!(capture.skipped(), 0);
    assert_eq!(
        sip_summaries(&capture, Transport::Udp),
        ["INVITE", "100", "180", "200", "ACK", "BYE", "200"]
    );
}

#[test]
fn sipp_pcap_has_thirty_messages_in_five_calls() {
    let capture = read("sipp.pcap");
    let sip = sip_summaries(&capture, Transport::Udp);
    assert_eq!(sip.len(), 30);
    assert_eq!(capture.payloads().len(), 30);
    assert_eq!(sip.iter().filter(|s| *s == "INVITE").count(), 5);
    assert_eq!(sip.iter().filter(|s| *s == "BYE").count(), 5);
    // Times never go backwards in this capture, and payloads keep the capture's order.
    let times: Vec<_> = capture.payloads().iter().map(|p| p.time).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
}

#[test]
fn sip_rtp_pcap_gives_the_call_and_its_rtp() {
    let capture = read("sip_rtp.pcap");
    assert_eq!(capture.packets(), 507);
    assert_eq!(capture.skipped(), 0);
    assert_eq!(capture.payloads().len(), 507);
    assert_eq!(
        sip_summaries(&capture, Transport::Udp),
        ["INVITE", "180", "200", "ACK", "BYE", "200"]
    );
    let rtp = capture
        .payloads()
        .iter()
        .filter(|p| start_line(&p.bytes).is_none() && p.bytes.first().map(|b| b >> 6) == Some(2))
        .count();
    assert_eq!(rtp, 501);
}

#[test]
fn fragmented_tcp_sip_reassembles_each_direction_into_whole_messages() {
    let capture = read("fragmented_tcp_sip.pcap");
    assert_eq!(capture.packets(), 19);
    assert_eq!(capture.skipped(), 0);
    let client = v4(10, 192, 243, 79, 41190);
    let server = v4(10, 108, 158, 224, 5060);
    let up: Vec<&Payload> = capture
        .payloads()
        .iter()
        .filter(|p| p.src == client)
        .collect();
    let down: Vec<&Payload> = capture
        .payloads()
        .iter()
        .filter(|p| p.src == server)
        .collect();
    assert!(capture
        .payloads()
        .iter()
        .all(|p| p.transport == Transport::Tcp));
    // Five data segments up (the INVITE in three), three down, all in order already.
    assert_eq!(up.len(), 5);
    assert_eq!(down.len(), 3);
    assert!(up.iter().all(|p| p.dst == server));
    // The INVITE's first segment is not a whole message on its own.
    assert!(up[0].bytes.starts_with(b"INVITE "));
    assert_eq!(up[0].bytes.len(), 1448);

    let up_messages = split_messages(&concat(&up));
    let names: Vec<&str> = up_messages.iter().map(|m| m.0.as_str()).collect();
    assert_eq!(names, ["INVITE", "ACK", "BYE"]);
    let (_, length, body) = &up_messages[0];
    assert!(*length > 0);
    assert_eq!(body.len(), *length);
    assert!(body.starts_with(b"v=0"), "the INVITE's body is its SDP");
    assert_eq!(
        up[0].bytes.len() + up[1].bytes.len() + up[2].bytes.len(),
        1448 + 1448 + 2259
    );

    let down_messages = split_messages(&concat(&down));
    let names: Vec<&str> = down_messages.iter().map(|m| m.0.as_str()).collect();
    assert_eq!(names, ["180", "200", "200"]);
}

#[test]
fn fragmented_udp_sip_never_completes_its_invite_and_counts_it() {
    // Only the first fragment of the INVITE was captured: it can never be reassembled.
    let capture = read("fragmented_udp_sip.pcap");
    assert_eq!(capture.packets(), 6);
    assert_eq!(capture.skipped(), 1);
    assert_eq!(
        sip_summaries(&capture, Transport::Udp),
        ["180", "200", "ACK", "BYE", "200"]
    );
    assert!(capture
        .payloads()
        .iter()
        .all(|p| !p.bytes.starts_with(b"INVITE")));
    let ok = split_messages(&capture.payloads()[1].bytes);
    assert_eq!(ok[0].1, 139);
}

#[test]
fn ipv6frag_reassembles_fragmented_ipv6_datagrams() {
    let capture = read("ipv6frag.pcap");
    assert_eq!(capture.packets(), 34);
    assert_eq!(capture.skipped(), 0);
    assert_eq!(capture.payloads().len(), 32);
    assert!(capture
        .payloads()
        .iter()
        .all(|p| p.src.is_ipv6() && p.dst.is_ipv6() && p.transport == Transport::Udp));
    let sip = sip_summaries(&capture, Transport::Udp);
    assert_eq!(sip.len(), 32);
    assert_eq!(sip[0], "INVITE");
    // Both INVITEs came in two fragments each: one payload each, whole, body and all.
    let invites: Vec<&Payload> = capture
        .payloads()
        .iter()
        .filter(|p| p.bytes.starts_with(b"INVITE "))
        .collect();
    assert_eq!(invites.len(), 2);
    for (invite, (udp_len, content_length)) in invites.iter().zip([(1699, 655), (1879, 629)]) {
        assert_eq!(invite.bytes.len(), udp_len - 8);
        let messages = split_messages(&invite.bytes);
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].1, content_length);
        assert_eq!(messages[0].2.len(), content_length);
    }
    assert_eq!(invites[0].src.port(), 15060);
    assert_eq!(invites[0].dst.port(), 5062);
    assert_eq!(
        invites[0].src.ip().to_string(),
        "fd17:625c:f037:2:a00:27ff:feb9:1521"
    );
}

#[test]
fn ipip_unwraps_the_tunnel_to_the_tcp_sip_inside() {
    let capture = read("ipip.pcap");
    assert_eq!(capture.packets(), 4);
    assert_eq!(capture.skipped(), 0);
    assert_eq!(
        sip_summaries(&capture, Transport::Tcp),
        ["INVITE", "183", "200", "BYE"]
    );
    let payloads = capture.payloads();
    assert_eq!(payloads.len(), 4);
    // The two responses travelled inside IP-in-IP: they carry the inner addresses.
    for tunnelled in &payloads[1..3] {
        assert_eq!(tunnelled.src, v4(10, 15, 193, 31, 33093));
        assert_eq!(tunnelled.dst, v4(10, 15, 197, 103, 5090));
        let messages = split_messages(&tunnelled.bytes);
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].1, 263);
    }
    assert_eq!(payloads[0].src, v4(10, 15, 197, 103, 5090));
    assert_eq!(split_messages(&payloads[0].bytes)[0].1, 649);
}

#[test]
fn aaa_pcap_from_the_field_reads_without_a_skip() {
    let capture = read("aaa.pcap");
    assert_eq!(capture.packets(), 691);
    assert_eq!(
        capture.skipped(),
        0,
        "ARP is not IP, but it is not skipped either"
    );
    let udp: Vec<&Payload> = capture
        .payloads()
        .iter()
        .filter(|p| p.transport == Transport::Udp)
        .collect();
    assert_eq!(udp.len(), 590);
    let sip = sip_summaries(&capture, Transport::Udp);
    assert_eq!(sip.len(), 81);
    assert_eq!(sip.iter().filter(|s| *s == "INVITE").count(), 11);
    assert_eq!(sip.iter().filter(|s| *s == "REGISTER").count(), 18);
    // FTP over TCP: 29 data segments, 814 bytes, no retransmission of data.
    let tcp_bytes: usize = capture
        .payloads()
        .iter()
        .filter(|p| p.transport == Transport::Tcp)
        .map(|p| p.bytes.len())
        .sum();
    assert_eq!(tcp_bytes, 814);
    assert!(capture.payloads().iter().all(|p| !p.after_gap));
}

#[test]
fn dtmf_captures_are_rtp_telephone_events() {
    for (name, digit) in [("dtmf_2833_1.pcap", 1u8), ("dtmf_2833_pound.pcap", 11)] {
        let capture = read(name);
        assert_eq!(capture.skipped(), 0, "{name}");
        let payloads = capture.payloads();
        assert_eq!(payloads.len(), 10, "{name}");
        assert!(payloads.iter().all(|p| start_line(&p.bytes).is_none()));
        assert!(payloads.iter().all(|p| p.bytes.len() == 16));
        assert!(payloads.iter().all(|p| p.bytes[1] & 0x7F == 101));
        assert!(payloads.iter().all(|p| p.bytes[12] == digit));
        assert_eq!(payloads[0].bytes[1] & 0x80, 0x80, "{name}: marker");
        let ends = payloads.iter().filter(|p| p.bytes[13] & 0x80 != 0).count();
        assert_eq!(ends, 3, "{name}: end packets");
        assert_eq!(payloads[0].dst, v4(192, 168, 0, 1, 10000));
    }
}

// ---------------------------------------------------------------------------------------
// Errors and damage

#[test]
fn a_truncated_pcap_names_the_file_and_the_record_offset() {
    let bytes = bytes_of("cancel.pcap");
    let last = *pcap_record_offsets(&bytes).last().unwrap();
    let path = scratch("truncated_cancel.pcap", &bytes[..bytes.len() - 10]);
    let error = Capture::read(&path).unwrap_err();
    assert!(
        matches!(error, CaptureError::Truncated { offset, .. } if offset == last),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(
        message.contains(&format!("truncated packet record at offset {last}")),
        "{message}"
    );

    // Cut inside a record header, and inside the file header.
    let path = scratch("truncated_header.pcap", &bytes[..24 + 8]);
    let message = Capture::read(&path).unwrap_err().to_string();
    assert!(message.contains("at offset 24"), "{message}");
    let path = scratch("truncated_file_header.pcap", &bytes[..10]);
    let message = Capture::read(&path).unwrap_err().to_string();
    assert!(
        message.contains("truncated pcap file header at offset 0"),
        "{message}"
    );
}

#[test]
fn a_truncated_pcapng_names_the_file_and_the_block_offset() {
    let bytes = bytes_of("cancel.pcapng");
    // Walk the blocks (little-endian, as editcap wrote it) to find the last one.
    let mut at = 0;
    let mut last = 0;
    while at < bytes.len() {
        last = at;
        at += u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
    }
    let path = scratch("truncated_cancel.pcapng", &bytes[..bytes.len() - 10]);
    let error = Capture::read(&path).unwrap_err();
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(
        message.contains(&format!("truncated pcapng block at offset {last}")),
        "{message}"
    );
}

#[test]
fn garbage_empty_and_missing_files_are_clear_errors() {
    let path = scratch("garbage.pcap", b"This is not a capture, just some text.\n");
    let message = Capture::read(&path).unwrap_err().to_string();
    assert_eq!(
        message,
        format!(
            "{}: not a pcap or pcapng capture (magic number 0x54686973 at offset 0)",
            path.display()
        )
    );

    let path = scratch("empty.pcap", b"");
    let message = Capture::read(&path).unwrap_err().to_string();
    assert_eq!(
        message,
        format!("{}: empty file, not a capture", path.display())
    );

    let path = captures_dir().join("no_such_capture.pcap");
    let error = Capture::read(&path).unwrap_err();
    assert!(matches!(error, CaptureError::Io { .. }));
    assert!(error.to_string().starts_with(&path.display().to_string()));
}

#[test]
fn an_unsupported_link_type_is_an_error_at_the_header() {
    let bytes = PcapFile::new(105).record(secs(0), &[0; 40]).finish();
    let error = Capture::from_bytes("wifi.pcap", &bytes).unwrap_err();
    assert!(
        matches!(
            error,
            CaptureError::UnsupportedLinkType {
                link_type: 105,
                offset: 20,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error
        .to_string()
        .starts_with("wifi.pcap: unsupported link type 105"));
}

#[test]
fn a_corrupted_ip_header_in_the_middle_is_skipped_and_counted() {
    let mut bytes = bytes_of("simple_invite_scenario.pcap");
    let records = pcap_record_offsets(&bytes);
    assert_eq!(records.len(), 7);
    // The fourth packet is the 200 OK; its IP header starts after 16 + 14 bytes.
    let ip = records[3] + 16 + 14;
    assert_eq!(bytes[ip], 0x45);
    bytes[ip] = 0x05; // IP version 0
    let path = scratch("corrupted_ip.pcap", &bytes);
    let capture = Capture::read(&path).expect("a bad packet is not a bad file");
    assert_eq!(capture.packets(), 7);
    assert_eq!(capture.skipped(), 1);
    assert_eq!(
        sip_summaries(&capture, Transport::Udp),
        ["INVITE", "100", "180", "ACK", "BYE", "200"]
    );
}

#[test]
fn no_truncation_or_flipped_byte_makes_the_reader_panic() {
    for name in [
        "cancel.pcap",
        "cancel.pcapng",
        "ipip.pcap",
        "fragmented_udp_sip.pcap",
    ] {
        let bytes = bytes_of(name);
        for len in 0..bytes.len() {
            let _ = Capture::from_bytes(name, &bytes[..len]);
        }
        for at in 0..bytes.len() {
            for flip in [0xFF, 0x80, 0x01] {
                let mut damaged = bytes.clone();
                damaged[at] ^= flip;
                let _ = Capture::from_bytes(name, &damaged);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Synthetic captures: TCP

#[test]
fn out_of_order_tcp_segments_come_out_in_stream_order() {
    let bytes = PcapFile::new(1)
        .record(secs(0), &tcp_eth(1000, true, b""))
        .record(secs(1), &tcp_eth(1011, false, b"sip:b SIP/2.0\r\n"))
        .record(secs(2), &tcp_eth(1026, false, b"Content-Length: 0\r\n\r\n"))
        .record(secs(3), &tcp_eth(1001, false, b"REGISTER "))
        .record(secs(4), &tcp_eth(1010, false, b" "))
        .finish();
    let capture = Capture::from_bytes("ooo.pcap", &bytes).unwrap();
    assert_eq!(capture.skipped(), 0);
    let payloads = capture.payloads();
    assert_eq!(payloads.len(), 2);
    assert_eq!(payloads[0].bytes, b"REGISTER ");
    assert_eq!(payloads[0].time, secs(3));
    assert_eq!(
        payloads[1].bytes,
        b" sip:b SIP/2.0\r\nContent-Length: 0\r\n\r\n"
    );
    assert_eq!(payloads[1].time, secs(4), "the packet that filled the hole");
    assert_eq!(payloads[1].src, SocketAddr::from((HOST_A, 40000)));
    assert_eq!(payloads[1].dst, SocketAddr::from((HOST_B, 5060)));
    assert!(payloads.iter().all(|p| !p.after_gap));
}

#[test]
fn retransmitted_and_overlapping_segments_are_not_duplicated() {
    let message = REGISTER;
    let bytes = PcapFile::new(1)
        .record(secs(0), &tcp_eth(1, true, b""))
        .record(secs(1), &tcp_eth(2, false, &message[..20]))
        .record(secs(2), &tcp_eth(2, false, &message[..20]))
        .record(secs(3), &tcp_eth(12, false, &message[10..40]))
        .record(secs(4), &tcp_eth(2, false, message))
        .finish();
    let capture = Capture::from_bytes("retransmit.pcap", &bytes).unwrap();
    let stream = concat(&capture.payloads().iter().collect::<Vec<_>>());
    assert_eq!(stream, message);
    assert_eq!(capture.payloads().len(), 3);
}

#[test]
fn a_tcp_capture_that_starts_mid_stream_starts_at_the_first_segment() {
    let bytes = PcapFile::new(1)
        .record(
            secs(0),
            &tcp_eth(77_000, false, b"tail of an earlier message\r\n\r\n"),
        )
        .record(secs(1), &tcp_eth(77_030, false, REGISTER))
        .finish();
    let capture = Capture::from_bytes("midstream.pcap", &bytes).unwrap();
    let stream = concat(&capture.payloads().iter().collect::<Vec<_>>());
    assert_eq!(&stream[30..], REGISTER);
}

#[test]
fn a_tcp_hole_never_filled_is_flagged_at_the_end() {
    let bytes = PcapFile::new(1)
        .record(secs(0), &tcp_eth(0, true, b""))
        .record(secs(1), &tcp_eth(1, false, b"first "))
        .record(secs(2), &tcp_eth(100, false, REGISTER))
        .finish();
    let capture = Capture::from_bytes("hole.pcap", &bytes).unwrap();
    let payloads = capture.payloads();
    assert_eq!(payloads.len(), 2);
    assert!(!payloads[0].after_gap);
    assert!(payloads[1].after_gap);
    assert_eq!(payloads[1].bytes, REGISTER);
    assert_eq!(payloads[1].time, secs(2));
}

// ---------------------------------------------------------------------------------------
// Synthetic captures: link layers and formats

fn assert_one_register(capture: &Capture, what: &str) {
    assert_eq!(capture.skipped(), 0, "{what}");
    assert_eq!(capture.payloads().len(), 1, "{what}");
    let payload = &capture.payloads()[0];
    assert_eq!(payload.bytes, REGISTER, "{what}");
    assert_eq!(payload.transport, Transport::Udp, "{what}");
}

#[test]
fn linux_cooked_capture_v1() {
    let mut frame = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 0x08, 0x00];
    frame.extend(udp_ip(HOST_A, HOST_B, REGISTER));
    let capture = Capture::from_bytes(
        "sll.pcap",
        &PcapFile::new(113).record(secs(0), &frame).finish(),
    )
    .unwrap();
    assert_one_register(&capture, "SLL");
    assert_eq!(capture.payloads()[0].src, SocketAddr::from((HOST_A, 5060)));
}

#[test]
fn linux_cooked_capture_v2() {
    let mut frame = vec![
        0x08, 0x00, 0, 0, 0, 0, 0, 1, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0,
    ];
    frame.extend(udp_ip(HOST_A, HOST_B, REGISTER));
    let mut ip6 = vec![
        0x86, 0xDD, 0, 0, 0, 0, 0, 1, 0, 1, 4, 6, 2, 0, 0, 0, 0, 1, 0, 0,
    ];
    ip6.extend(udp_ip6(REGISTER));
    let bytes = PcapFile::new(276)
        .record(secs(0), &frame)
        .record(secs(1), &ip6)
        .record(secs(2), &[0x08, 0x00, 0, 0]) // cut short: skipped
        .finish();
    let capture = Capture::from_bytes("sll2.pcap", &bytes).unwrap();
    assert_eq!(capture.skipped(), 1);
    assert_eq!(capture.payloads().len(), 2);
    assert_eq!(capture.payloads()[0].bytes, REGISTER);
    assert!(capture.payloads()[1].src.is_ipv6());
    assert_eq!(capture.payloads()[1].src.port(), 5062);
}

#[test]
fn bsd_loopback_in_both_byte_orders_and_openbsd_loop() {
    let mut little = 2u32.to_le_bytes().to_vec();
    little.extend(udp_ip(HOST_A, HOST_B, REGISTER));
    let mut big = 2u32.to_be_bytes().to_vec();
    big.extend(udp_ip(HOST_A, HOST_B, REGISTER));
    let mut mac_v6 = 30u32.to_le_bytes().to_vec();
    mac_v6.extend(udp_ip6(REGISTER));
    let mut not_ip = 7u32.to_le_bytes().to_vec();
    not_ip.extend([0u8; 30]);
    let bytes = PcapFile::new(0)
        .record(secs(0), &little)
        .record(secs(1), &big)
        .record(secs(2), &mac_v6)
        .record(secs(3), &not_ip)
        .finish();
    let capture = Capture::from_bytes("null.pcap", &bytes).unwrap();
    assert_eq!(
        capture.skipped(),
        0,
        "a family that is not IP is not a bad packet"
    );
    assert_eq!(capture.payloads().len(), 3);
    assert!(capture.payloads()[2].src.is_ipv6());

    let capture = Capture::from_bytes(
        "loop.pcap",
        &PcapFile::new(108).record(secs(0), &big).finish(),
    )
    .unwrap();
    assert_one_register(&capture, "LOOP");
}

#[test]
fn raw_ip_link_types() {
    for link_type in [101, 228, 12] {
        let bytes = PcapFile::new(link_type)
            .record(secs(0), &udp_ip(HOST_A, HOST_B, REGISTER))
            .finish();
        let capture = Capture::from_bytes("raw.pcap", &bytes).unwrap();
        assert_one_register(&capture, &format!("link type {link_type}"));
    }
    let bytes = PcapFile::new(229)
        .record(secs(0), &udp_ip6(REGISTER))
        .finish();
    let capture = Capture::from_bytes("raw6.pcap", &bytes).unwrap();
    assert_one_register(&capture, "LINKTYPE_IPV6");
}

#[test]
fn vlan_tagged_ethernet() {
    let mut frame = Vec::new();
    frame.extend(MAC_B);
    frame.extend(MAC_A);
    frame.extend([0x81, 0x00, 0x00, 0x64, 0x08, 0x00]); // 802.1Q, VLAN 100, IPv4
    frame.extend(udp_ip(HOST_A, HOST_B, REGISTER));
    let mut qinq = Vec::new();
    qinq.extend(MAC_B);
    qinq.extend(MAC_A);
    qinq.extend([0x88, 0xA8, 0x00, 0x0A, 0x81, 0x00, 0x00, 0x64, 0x08, 0x00]);
    qinq.extend(udp_ip(HOST_A, HOST_B, REGISTER));
    let bytes = PcapFile::new(1)
        .record(secs(0), &frame)
        .record(secs(1), &qinq)
        .finish();
    let capture = Capture::from_bytes("vlan.pcap", &bytes).unwrap();
    assert_eq!(capture.skipped(), 0);
    assert_eq!(capture.payloads().len(), 2);
    assert!(capture.payloads().iter().all(|p| p.bytes == REGISTER));
}

#[test]
fn big_endian_nanosecond_pcap() {
    let mut file = PcapFile::new(1);
    file.big_endian = true;
    file.nanos = true;
    let time = Duration::new(1_700_000_000, 123_456_789);
    let bytes = file.record(time, &udp_eth(REGISTER)).finish();
    let capture = Capture::from_bytes("be.pcap", &bytes).unwrap();
    assert_one_register(&capture, "big-endian nanosecond pcap");
    assert_eq!(capture.payloads()[0].time, time);
}

#[test]
fn a_packet_cut_by_the_snap_length_is_skipped_not_fatal() {
    let whole = udp_eth(REGISTER);
    let mut file = PcapFile::new(1);
    file.snaplen = 40;
    let bytes = file
        .record_cut(secs(0), &whole[..40], whole.len())
        .record(secs(1), &whole)
        .finish();
    let capture = Capture::from_bytes("snap.pcap", &bytes).unwrap();
    assert_eq!(capture.packets(), 2);
    assert_eq!(capture.skipped(), 1);
    assert_eq!(capture.payloads().len(), 1);
}

#[test]
fn ipv4_fragments_out_of_order_are_one_datagram() {
    // A 1,200-byte SIP message over UDP, cut into three IPv4 fragments sent last first.
    let mut message = b"MESSAGE sip:b@example.com SIP/2.0\r\nContent-Length: 1130\r\n\r\n".to_vec();
    message.resize(message.len() + 1130, b'x');
    let mut udp = Vec::new();
    PacketBuilder::ipv4(HOST_A, HOST_B, 64)
        .udp(5060, 5060)
        .write(&mut udp, &message)
        .unwrap();
    let datagram = &udp[20..]; // the UDP header and data
    let fragment = |offset: usize, end: usize, more: bool| {
        let chunk = &datagram[offset..end];
        let mut header =
            Ipv4Header::new(chunk.len() as u16, 64, IpNumber::UDP, HOST_A, HOST_B).unwrap();
        header.identification = 0x1234;
        header.more_fragments = more;
        header.fragment_offset = IpFragOffset::try_new((offset / 8) as u16).unwrap();
        header.header_checksum = header.calc_header_checksum();
        let mut frame = Vec::new();
        frame.extend(MAC_B);
        frame.extend(MAC_A);
        frame.extend([0x08, 0x00]);
        frame.extend(header.to_bytes());
        frame.extend_from_slice(chunk);
        frame
    };
    let bytes = PcapFile::new(1)
        .record(secs(0), &fragment(1000, datagram.len(), false))
        .record(secs(1), &fragment(0, 504, true))
        .record(secs(2), &udp_eth(REGISTER))
        .record(secs(3), &fragment(504, 1000, true))
        .finish();
    let capture = Capture::from_bytes("frag.pcap", &bytes).unwrap();
    assert_eq!(capture.skipped(), 0);
    let payloads = capture.payloads();
    assert_eq!(payloads.len(), 2);
    assert_eq!(payloads[0].bytes, REGISTER);
    assert_eq!(payloads[1].bytes, message);
    assert_eq!(payloads[1].time, secs(3));
    let (_, length, body) = &split_messages(&payloads[1].bytes)[0];
    assert_eq!(body.len(), *length);

    // Fragments more than 30 s apart are not put together: the first datagram expires
    // (skipped), and the late fragments make a second one that never completes (skipped).
    let bytes = PcapFile::new(1)
        .record(secs(0), &fragment(0, 504, true))
        .record(secs(10), &fragment(504, 1000, true))
        .record(secs(41), &udp_eth(REGISTER))
        .record(secs(42), &fragment(1000, datagram.len(), false))
        .finish();
    let capture = Capture::from_bytes("late.pcap", &bytes).unwrap();
    assert_eq!(capture.payloads().len(), 1);
    assert_eq!(capture.skipped(), 2);
}

#[test]
fn pcapng_with_two_interfaces_and_their_own_resolutions() {
    let mut writer = PcapNgWriter::new(Vec::new()).unwrap();
    writer
        .write_pcapng_block(InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen: 0xFFFF,
            options: vec![InterfaceDescriptionOption::IfTsResol(9)],
        })
        .unwrap();
    writer
        .write_pcapng_block(InterfaceDescriptionBlock {
            linktype: DataLink::RAW,
            snaplen: 0xFFFF,
            options: vec![],
        })
        .unwrap();
    // pcap-file writes the Duration's nanoseconds as the raw timestamp: for interface 0
    // (if_tsresol 9) that is the time itself; interface 1 counts microseconds.
    let eth = udp_eth(REGISTER);
    let raw = udp_ip(HOST_B, HOST_A, REGISTER);
    writer
        .write_pcapng_block(EnhancedPacketBlock {
            interface_id: 0,
            timestamp: Duration::new(1_700_000_000, 987_654_321),
            original_len: eth.len() as u32,
            data: Cow::Borrowed(&eth),
            options: vec![],
        })
        .unwrap();
    writer
        .write_pcapng_block(EnhancedPacketBlock {
            interface_id: 1,
            timestamp: Duration::from_nanos(1_700_000_001_250_000),
            original_len: raw.len() as u32,
            data: Cow::Borrowed(&raw),
            options: vec![],
        })
        .unwrap();
    // A Simple Packet Block: first interface, no timestamp of its own.
    writer
        .write_pcapng_block(SimplePacketBlock {
            original_len: eth.len() as u32,
            data: Cow::Borrowed(&eth),
        })
        .unwrap();
    let bytes = writer.into_inner();
    let capture = Capture::from_bytes("two.pcapng", &bytes).unwrap();
    assert_eq!(capture.packets(), 3);
    assert_eq!(capture.skipped(), 0);
    let payloads = capture.payloads();
    assert_eq!(payloads.len(), 3);
    assert!(payloads.iter().all(|p| p.bytes == REGISTER));
    assert_eq!(payloads[0].time, Duration::new(1_700_000_000, 987_654_321));
    assert_eq!(payloads[1].time, Duration::new(1_700_000_001, 250_000_000));
    assert_eq!(payloads[1].src, SocketAddr::from((HOST_B, 5060)));
    assert_eq!(payloads[2].time, payloads[1].time);
}
