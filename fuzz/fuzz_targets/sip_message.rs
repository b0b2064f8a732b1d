//! `Message::parse` on arbitrary bytes; when a message parses, every accessor a proxy uses on
//! it, and these invariants:
//! - the message's bytes are a prefix of the input (after leading CR/LF), and every range
//!   the index gives lies inside them;
//! - parsing the message's own bytes again gives the same message (same start line, headers
//!   and body);
//! - removing leading Route / Record-Route values (what forwarding does) leaves a message
//!   that still parses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipscreen::proxy::edit::{remove_first_values, split_values, Splice};
use sipscreen::sip::header::{parse_contacts, parse_max_forwards, NameAddr};
use sipscreen::sip::uri::Uri;
use sipscreen::sip::{HeaderName, Message, ReplyLines, StartLine};

const NAMES: [HeaderName; 18] = [
    HeaderName::Via,
    HeaderName::From,
    HeaderName::To,
    HeaderName::CallId,
    HeaderName::CSeq,
    HeaderName::MaxForwards,
    HeaderName::ContentLength,
    HeaderName::ContentType,
    HeaderName::Contact,
    HeaderName::Route,
    HeaderName::RecordRoute,
    HeaderName::ProxyRequire,
    HeaderName::PAssertedIdentity,
    HeaderName::ProxyAuthorization,
    HeaderName::Diversion,
    HeaderName::HistoryInfo,
    HeaderName::Reason,
    HeaderName::Other,
];

fuzz_target!(|data: &[u8]| {
    // What answers an unparseable request reads: must never panic on any bytes.
    if let Some(lines) = ReplyLines::find(data) {
        for r in lines.vias.iter().chain(&lines.others) {
            assert!(r.start <= r.end && r.end <= data.len());
        }
    }
    let Ok(msg) = Message::parse(data) else {
        return;
    };
    let lead = data
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    let bytes = msg.bytes();
    assert!(data[lead..].starts_with(bytes), "bytes are the input's");
    let len = bytes.len();
    let inside = |r: &std::ops::Range<usize>| r.start <= r.end && r.end <= len;
    assert!(inside(&msg.start_line()));
    assert!(inside(&msg.blank_line()));
    for h in msg.headers() {
        assert!(inside(&h.name_range) && inside(&h.value) && inside(&h.line));
        assert!(h.line.start <= h.name_range.start && h.value.end <= h.line.end);
        let _ = msg.text(&h.value);
        let _ = split_values(msg.text(&h.value), h.value.start)
            .into_iter()
            .map(|r| assert!(inside(&r)))
            .count();
    }

    let _ = msg.method();
    let _ = msg.status();
    let _ = msg.status_reason();
    let _ = msg.is_request();
    if let Some(uri) = msg.request_uri() {
        let range = msg
            .request_uri_range()
            .expect("a request has a Request-URI range");
        assert!(inside(&range));
        let u = Uri::parse(uri).expect("check() accepted the Request-URI");
        let _ = (
            u.host_unbracketed(),
            u.param("user"),
            u.param("lr"),
            u.header("Reason"),
        );
    }
    let top = msg.top_via().expect("check() requires a Via");
    let _ = (
        top.branch(),
        top.received(),
        top.rport(),
        top.rfc3261_branch(),
    );
    assert!(inside(&top.range) && top.params_end <= len);
    for via in msg.vias() {
        let via = via.expect("check() accepted every Via");
        assert!(inside(&via.range));
    }
    for na in [msg.from(), msg.to()] {
        let na = na.expect("check() accepted From and To");
        let _ = (na.tag(), na.param("tag"), na.display);
        let _ = Uri::parse(na.uri);
    }
    let cseq = msg.cseq().expect("check() accepted CSeq");
    let _ = (cseq.number, cseq.method);
    assert!(!msg.call_id().is_empty());
    for name in NAMES {
        for v in msg.header_values(name) {
            match name {
                HeaderName::Contact | HeaderName::PAssertedIdentity | HeaderName::Route => {
                    if let Ok(list) = parse_contacts(v) {
                        for na in list {
                            let _ = (na.tag(), Uri::parse(na.uri));
                        }
                    }
                }
                HeaderName::MaxForwards => {
                    let _ = parse_max_forwards(v);
                }
                HeaderName::Diversion | HeaderName::HistoryInfo => {
                    let _ = NameAddr::parse(v);
                }
                _ => {}
            }
        }
        let _ = msg.header_str(name);
    }
    let body = msg.body();
    if let Some(cl) = msg.header_str(HeaderName::ContentLength) {
        assert_eq!(cl.trim().parse::<usize>().ok(), Some(body.len()));
    }

    // The message's own bytes read the same.
    let again = Message::parse(bytes).expect("a parsed message parses again");
    assert_eq!(again.bytes(), bytes);
    assert_eq!(again.headers().len(), msg.headers().len());
    assert_eq!(again.body(), body);
    match (msg.start(), again.start()) {
        (StartLine::Request { method: a, uri: u }, StartLine::Request { method: b, uri: v }) => {
            assert_eq!((a, u), (b, v))
        }
        (StartLine::Response { code: a, .. }, StartLine::Response { code: b, .. }) => {
            assert_eq!(a, b)
        }
        _ => panic!("a request read back as a response, or the reverse"),
    }

    // Forwarding removes our own leading Route values; what is left still parses.
    let n = data.len() % 4;
    for name in [HeaderName::Route, HeaderName::RecordRoute] {
        let mut splice = Splice::default();
        remove_first_values(&msg, name, n, &mut splice);
        let edited = splice.apply(bytes);
        if let Err(e) = Message::parse(&edited) {
            panic!(
                "removing {n} {name:?} values broke the message: {e}\n{}",
                String::from_utf8_lossy(&edited)
            );
        }
    }
});
