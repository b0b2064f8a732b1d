//! Every public capture in tests/captures parses message by message: each SIP datagram, and
//! each message framed off a reassembled TCP stream, is accepted by the SIP layer.

use sipscreen::replay::{sip_messages, Capture};
use sipscreen::sip::Message;

#[test]
fn every_public_capture_parses_message_by_message() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/captures");
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"))
        .collect();
    names.sort();
    let (mut total, mut failures, mut per_file) = (0, Vec::new(), Vec::new());
    for path in &names {
        let capture = Capture::read(path).unwrap_or_else(|e| panic!("{e}"));
        let (messages, broken) = sip_messages(&capture, 64 * 1024);
        assert_eq!(broken, 0, "{}: unframeable stream bytes", path.display());
        for m in &messages {
            if let Err(e) = Message::parse(&m.bytes) {
                let head = String::from_utf8_lossy(&m.bytes[..m.bytes.len().min(80)]).into_owned();
                failures.push(format!(
                    "{} from {}: {e}: {head:?}",
                    path.display(),
                    m.from.addr
                ));
            }
        }
        total += messages.len();
        per_file.push((
            path.file_name().unwrap().to_string_lossy().into_owned(),
            messages.len(),
        ));
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
    assert_eq!(count("cancel.pcap"), 7, "{per_file:?}");
    assert_eq!(count("sipp.pcap"), 30, "{per_file:?}");
    assert_eq!(count("aaa.pcap"), 81, "{per_file:?}");
    assert!(count("fragmented_tcp_sip.pcap") >= 6, "{per_file:?}");
    assert!(
        count("ipv6frag.pcap") > 0 && count("ipip.pcap") == 4,
        "{per_file:?}"
    );
}
