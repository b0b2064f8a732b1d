//! Replay throughput (`sipscreen replay`, SPEC §1): a generated capture of 20,000 SIP messages
//! (INVITE, 100, 180, 200, ACK, BYE, 200 per call, over UDP in Ethernet/IPv4 frames) read from
//! memory, its SIP messages extracted and fed through the proxy core, end to end, in
//! messages per second; then the two halves on their own (reading the capture, and the core).
//!
//! Run: `cargo bench --bench replay` (add `-- --measurement-time 5` for a quicker run).

use std::fmt::Write as _;
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use etherparse::PacketBuilder;
use pcap_file::pcap::{PcapPacket, PcapWriter};
use sipscreen::config::Config;
use sipscreen::replay::{replay, sip_messages, Capture};

/// SIP messages in the capture (a whole number of 7-message calls, just above this).
const MESSAGES: usize = 20_000;
const PER_CALL: usize = 7;

const UAC: (Ipv4Addr, u16) = (Ipv4Addr::new(10, 0, 0, 1), 5060);
const UAS: (Ipv4Addr, u16) = (Ipv4Addr::new(10, 0, 0, 2), 5060);

/// One tenant, an outcall for national numbers, 08 numbers denied on it: every tenth call is
/// denied, the others allowed.
const CONFIG: &str = r#"
[server]
listen = ["udp:10.0.0.9:5060"]
next_hop = "udp:10.0.0.2:5060"
[brand]
name = "bench"
[[tenant]]
name = "t"
country = "FR"
  [[tenant.users]]
  name = "alice"
  extension = "1001"
  [[tenant.outcalls]]
  name = "national"
  patterns = ["_0ZXXXXXXXX"]
  [[tenant.call_permissions]]
  name = "no-premium"
  extensions = ["_08XXXXXXXX"]
  outcalls = ["national"]
"#;

fn request(method: &str, uri: &str, call: usize, cseq: u32, branch: &str, to_tag: bool) -> String {
    let uac = UAC.0;
    let mut m = String::with_capacity(600);
    let _ = write!(
        m,
        "{method} {uri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {uac}:5060;branch=z9hG4bK{branch}{call}\r\n\
         Max-Forwards: 70\r\n\
         From: \"Alice\" <sip:1001@{uac}>;tag=a{call}\r\n\
         To: <{uri}>{}\r\n\
         Call-ID: bench-{call}@{uac}\r\n\
         CSeq: {cseq} {method}\r\n\
         Contact: <sip:1001@{uac}:5060>\r\n\
         User-Agent: bench\r\n",
        if to_tag {
            format!(";tag=b{call}")
        } else {
            String::new()
        }
    );
    if method == "INVITE" {
        let sdp = format!(
            "v=0\r\no=- {call} 1 IN IP4 {uac}\r\ns=-\r\nc=IN IP4 {uac}\r\nt=0 0\r\n\
             m=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\n"
        );
        let _ = write!(
            m,
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        );
    } else {
        m.push_str("Content-Length: 0\r\n\r\n");
    }
    m
}

fn response(code: &str, method: &str, uri: &str, call: usize, cseq: u32, branch: &str) -> String {
    let (uac, uas) = (UAC.0, UAS.0);
    let to_tag = if code.starts_with("100") {
        String::new()
    } else {
        format!(";tag=b{call}")
    };
    format!(
        "SIP/2.0 {code}\r\n\
         Via: SIP/2.0/UDP {uac}:5060;branch=z9hG4bK{branch}{call}\r\n\
         From: \"Alice\" <sip:1001@{uac}>;tag=a{call}\r\n\
         To: <{uri}>{to_tag}\r\n\
         Call-ID: bench-{call}@{uac}\r\n\
         CSeq: {cseq} {method}\r\n\
         Contact: <sip:{uas}:5060>\r\n\
         Server: bench\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// The capture: calls one after the other, 1 ms apart per message; (pcap bytes, messages,
/// calls).
fn generate() -> (Vec<u8>, usize, usize) {
    let calls = MESSAGES.div_ceil(PER_CALL);
    let mut writer = PcapWriter::new(Vec::with_capacity(calls * PER_CALL * 700)).unwrap();
    let mut frame = Vec::with_capacity(2048);
    let mut t = Duration::from_secs(1_700_000_000);
    let mut n = 0;
    for call in 0..calls {
        let dialed = if call % 10 == 9 {
            format!("08{:08}", call % 100_000_000)
        } else {
            format!("06{:08}", call % 100_000_000)
        };
        let uri = format!("sip:{dialed}@{}", UAS.0);
        let msgs = [
            (true, request("INVITE", &uri, call, 1, "inv", false)),
            (
                false,
                response("100 Trying", "INVITE", &uri, call, 1, "inv"),
            ),
            (
                false,
                response("180 Ringing", "INVITE", &uri, call, 1, "inv"),
            ),
            (false, response("200 OK", "INVITE", &uri, call, 1, "inv")),
            (true, request("ACK", &uri, call, 1, "ack", true)),
            (true, request("BYE", &uri, call, 2, "bye", true)),
            (false, response("200 OK", "BYE", &uri, call, 2, "bye")),
        ];
        for (from_uac, sip) in msgs {
            let (src, dst) = if from_uac { (UAC, UAS) } else { (UAS, UAC) };
            let builder = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
                .ipv4(src.0.octets(), dst.0.octets(), 64)
                .udp(src.1, dst.1);
            frame.clear();
            builder.write(&mut frame, sip.as_bytes()).unwrap();
            let len = frame.len() as u32;
            writer
                .write_packet(&PcapPacket::new(t, len, &frame))
                .unwrap();
            t += Duration::from_millis(1);
            n += 1;
        }
    }
    (writer.into_writer(), n, calls)
}

fn bench(c: &mut Criterion) {
    let config = Config::from_toml(CONFIG, "bench.toml", None).expect("bench config");
    let max = config.proxy.limits.max_message_size;
    let (pcap, messages, calls) = generate();

    // The capture replays to one decision per call, every tenth denied.
    let capture = Capture::from_bytes("bench.pcap", &pcap).unwrap();
    let (msgs, broken) = sip_messages(&capture, max);
    assert_eq!((msgs.len(), broken), (messages, 0));
    let decided = replay(&config, &msgs);
    assert_eq!(decided.len(), calls);
    let denied = decided
        .iter()
        .filter(|c| c.screening.decision.verdict.as_str() == "deny")
        .count();
    assert_eq!(denied, calls / 10);

    let mut g = c.benchmark_group("replay");
    g.throughput(Throughput::Elements(messages as u64));
    g.sample_size(20);
    g.bench_function(format!("end_to_end_{messages}_messages"), |b| {
        b.iter(|| {
            let capture = Capture::from_bytes("bench.pcap", black_box(&pcap)).unwrap();
            let (msgs, _) = sip_messages(&capture, max);
            black_box(replay(&config, &msgs).len())
        })
    });
    g.bench_function("capture_and_framing", |b| {
        b.iter(|| {
            let capture = Capture::from_bytes("bench.pcap", black_box(&pcap)).unwrap();
            black_box(sip_messages(&capture, max).0.len())
        })
    });
    g.bench_function("proxy_core", |b| {
        b.iter(|| black_box(replay(&config, black_box(&msgs)).len()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
