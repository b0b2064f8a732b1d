//! Every public capture in tests/captures parses message by message: each SIP datagram, and
//! each message framed off a reassembled TCP stream, is accepted by the SIP layer.

use std::collections::HashMap;
use std::net::SocketAddr;

use sipscreen::replay::{Capture, Transport};
use sipscreen::sip::{frame, Framing, Message};

/// Whether a payload starts like a SIP message (RTP and other UDP traffic do not).
fn looks_like_sip(b: &[u8]) -> bool {
    if b.starts_with(b"SIP/2.0 ") {
        return true;
    }
    let Some(line_end) = b.iter().position(|&c| c == b'\n') else {
        return false;
    };
    let line = &b[..line_end];
    line.ends_with(b"SIP/2.0\r") && line.first().is_some_and(u8::is_ascii_uppercase)
}

/// Parses every SIP message of a capture; returns (messages, failures).
fn parse_all(path: &str) -> (usize, Vec<String>) {
    let capture = Capture::read(std::path::Path::new(path)).unwrap_or_else(|e| panic!("{e}"));
    let mut streams: HashMap<(SocketAddr, SocketAddr), Vec<u8>> = HashMap::new();
    let (mut count, mut failures) = (0, Vec::new());
    let mut check = |bytes: &[u8], at: String| {
        count += 1;
        if let Err(e) = Message::parse(bytes) {
            failures.push(format!(
                "{at}: {e}: {:?}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(80)])
            ));
        }
    };
    for (i, p) in capture.payloads().iter().enumerate() {
        match p.transport {
            Transport::Udp => {
                if looks_like_sip(&p.bytes) {
                    check(&p.bytes, format!("{path} payload {i}"));
                }
            }
            Transport::Tcp => {
                let buf = streams.entry((p.src, p.dst)).or_default();
                if p.after_gap {
                    buf.clear();
                }
                buf.extend_from_slice(&p.bytes);
                while let Ok(Framing::Complete(n)) = frame(buf, 64 * 1024) {
                    let rest = buf.split_off(n);
                    let msg = std::mem::replace(buf, rest);
                    if looks_like_sip(msg.trim_ascii_start()) {
                        check(&msg, format!("{path} TCP {}→{}", p.src, p.dst));
                    }
                }
            }
        }
    }
    (count, failures)
}

#[test]
fn every_public_capture_parses_message_by_message() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/captures");
    let mut total = 0;
    let mut failures = Vec::new();
    let mut per_file = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"))
        .collect();
    names.sort();
    for path in &names {
        let (n, f) = parse_all(path.to_str().unwrap());
        per_file.push((path.file_name().unwrap().to_string_lossy().into_owned(), n));
        total += n;
        failures.extend(f);
    }
    assert!(
        failures.is_empty(),
        "{} of {total} messages fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let count = |name: &str| {
        per_file
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, c)| *c)
    };
    // What each capture holds (counted with tshark).
    assert_eq!(count("cancel.pcap"), 7);
    assert_eq!(count("sipp.pcap"), 30);
    assert_eq!(count("aaa.pcap"), 81, "{per_file:?}");
    assert!(count("fragmented_tcp_sip.pcap") >= 6, "{per_file:?}");
    assert!(
        count("ipv6frag.pcap") > 0 && count("ipip.pcap") == 4,
        "{per_file:?}"
    );
}
