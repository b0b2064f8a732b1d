//! The RFC 4475 torture messages (tests/rfc4475, with the MANIFEST of what a proxy must do
//! with each), fed one by one to the proxy core as UDP datagrams: each gets the outcome its
//! MANIFEST row names.

use std::time::Instant;

use sipscreen::config::Config;
use sipscreen::proxy::Transport;
use sipscreen::proxy::{Peer, Proxy};
use sipscreen::sip::Message;

const CONFIG: &str = r#"
[server]
listen = ["udp:127.0.0.1:5060"]
next_hop = "udp:127.0.0.1:5070"
[brand]
name = "b"
[[tenant]]
name = "t"
country = "US"
sources = ["192.0.2.0/24"]
"#;

/// What the MANIFEST asks for.
#[derive(Debug, PartialEq, Eq)]
enum Expect {
    /// Accepted and handled normally: forwarded, or answered as any request would be.
    Parse,
    /// Answered with this status and not forwarded.
    Reject(u16),
    /// Nothing sent.
    Drop,
    /// Either way, as long as nothing breaks (baddate).
    Either,
}

fn manifest() -> Vec<(String, Expect)> {
    let text = include_str!("rfc4475/MANIFEST.md");
    let mut rows = Vec::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("| ") && l.contains(".dat"))
    {
        let cols: Vec<&str> = line.split('|').map(str::trim).collect();
        let (file, kind, must) = (cols[1], cols[3], cols[4]);
        let code = |s: &str| s.split_whitespace().find_map(|w| w.parse::<u16>().ok());
        let expect = if must.starts_with("parse") {
            Expect::Parse
        } else if must.starts_with("a proxy may forward") {
            Expect::Either
        } else if must.starts_with("reject: drop")
            || must.starts_with("drop")
            || kind == "response" && must.starts_with("reject")
        {
            Expect::Drop
        } else if let Some(c) = code(must) {
            Expect::Reject(c)
        } else {
            panic!("cannot read MANIFEST row: {line}");
        };
        rows.push((file.to_owned(), expect));
    }
    rows
}

#[test]
fn every_torture_message_gets_its_manifest_outcome() {
    let rows = manifest();
    assert_eq!(rows.len(), 49, "the MANIFEST lists 49 messages");
    let config = Config::from_toml(CONFIG, "t.toml", None).unwrap();
    let uac = Peer {
        transport: Transport::Udp,
        addr: "192.0.2.99:5099".parse().unwrap(),
    };
    let next_hop = "127.0.0.1:5070".parse().unwrap();
    let mut wrong = Vec::new();
    for (file, expect) in &rows {
        let path = format!("{}/tests/rfc4475/{file}", env!("CARGO_MANIFEST_DIR"));
        let bytes = std::fs::read(&path).unwrap();
        let mut proxy = Proxy::new(config.proxy.clone(), config.policy.clone());
        proxy.handle_message(Instant::now(), uac, &bytes);
        let sent: Vec<_> = std::iter::from_fn(|| proxy.poll_transmit()).collect();
        let forwarded = sent.iter().filter(|t| t.to.addr == next_hop).count();
        // Answers go back by Via (RFC 3261 §18.2.2), so anything not sent to the next hop; the
        // status is read from the first line, since an answer to a malformed request copies its
        // malformed headers.
        let answers: Vec<u16> = sent
            .iter()
            .filter(|t| t.to.addr != next_hop)
            .filter_map(|t| {
                std::str::from_utf8(&t.bytes)
                    .ok()?
                    .strip_prefix("SIP/2.0 ")?
                    .get(..3)?
                    .parse()
                    .ok()
            })
            .collect();
        let ok = match expect {
            Expect::Parse => {
                let is_response = bytes.starts_with(b"SIP/");
                let parsed = Message::parse(&bytes).is_ok();
                let handled =
                    is_response || forwarded == 1 || answers.iter().any(|&c| c == 200 || c == 403);
                parsed && handled && !answers.iter().any(|&c| c == 400 || c == 416 || c == 505)
            }
            Expect::Reject(code) => forwarded == 0 && answers == [*code],
            Expect::Drop => sent.is_empty(),
            Expect::Either => forwarded <= 1,
        };
        if !ok {
            wrong.push(format!(
                "{file}: expected {expect:?}, forwarded {forwarded}, answers {answers:?}"
            ));
        }
        // bext01: 420 names the unsupported extensions (RFC 3261 §8.2.2.3).
        if file == "bext01.dat" {
            let text = String::from_utf8_lossy(&sent[0].bytes);
            assert!(
                text.contains("Unsupported: noProxiesSupportThis, norDoAnyProxiesSupportThis"),
                "{text}"
            );
        }
        // dblreq: only the first message of the datagram counts.
        if file == "dblreq.dat" {
            assert_eq!(forwarded, 1);
            assert!(sent[0].bytes.starts_with(b"REGISTER "));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of 49 wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
