//! Captures (pcap and pcapng, every link type replay reads, IP fragments, IP-in-IP, TCP
//! reassembly): `replay::Capture::from_bytes` on arbitrary bytes, then
//! `replay::sip_messages`. Errors are fine; panics are not. Invariants: a message framed off
//! a TCP stream is never longer than the limit given, and every UDP one starts like SIP.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipscreen::proxy::Transport;
use sipscreen::replay::calls::looks_like_sip;
use sipscreen::replay::{sip_messages, Capture};
use sipscreen::sip::Message;

const MAX: usize = 65536;

fuzz_target!(|data: &[u8]| {
    let Ok(capture) = Capture::from_bytes("fuzz.pcap", data) else {
        return;
    };
    assert!(capture.skipped() <= capture.packets() + capture.payloads().len());
    let (messages, _broken) = sip_messages(&capture, MAX);
    for m in &messages {
        match m.from.transport {
            Transport::Tcp => assert!(m.bytes.len() <= MAX),
            Transport::Udp => assert!(looks_like_sip(&m.bytes)),
        }
        let _ = Message::parse(&m.bytes);
    }
});
