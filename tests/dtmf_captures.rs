//! RFC 4733 decoding on the packets of SIPp's DTMF captures (tests/captures/dtmf_2833_*.pcap,
//! the files sip-tester installs under /usr/share/sip-tester/): each yields its digit once,
//! whatever the repeated end packets.

use sipscreen::media::{dtmf::EventReader, rtp};
use sipscreen::replay::Capture;

fn digits_of(file: &str) -> (Vec<char>, usize) {
    let path = format!("{}/tests/captures/{file}", env!("CARGO_MANIFEST_DIR"));
    let capture = Capture::read(std::path::Path::new(&path)).unwrap();
    let mut reader = EventReader::default();
    let mut digits = Vec::new();
    let mut events = 0;
    for p in capture.payloads() {
        let packet = rtp::parse(&p.bytes).expect("every payload is RTP");
        if packet.payload_type == 101 {
            events += 1;
            reader.push(packet.timestamp, packet.payload, &mut digits);
        }
    }
    (digits, events)
}

#[test]
fn sipp_dtmf_captures_give_their_digit_once() {
    for (file, digit) in [("dtmf_2833_1.pcap", '1'), ("dtmf_2833_pound.pcap", '#')] {
        let (digits, events) = digits_of(file);
        assert!(events >= 4, "{file}: {events} event packets");
        assert_eq!(digits, [digit], "{file}");
    }
}
