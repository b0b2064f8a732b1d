//! Reloading on SIGHUP (SPEC §9.1) against the running binary: a valid file changes the
//! rules for the next call with no restart; a broken one changes nothing and every error is
//! logged; the process stays the same throughout.

mod common;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use common::invite::invite;
use common::proxy::Sipscreen;
use common::TempDir;

const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

fn config(next_hop: SocketAddr, blocked: bool) -> String {
    let rule = if blocked {
        "\n  [[tenant.call_permissions]]\n  name = \"no-mobiles\"\n  extensions = [\"_6XXXXXXXX\"]\n  outcalls = [\"everything\"]\n"
    } else {
        ""
    };
    format!(
        "[server]\nlisten = [\"udp:127.0.0.1:0\"]\nnext_hop = \"udp:{next_hop}\"\n\
         [brand]\nname = \"b\"\n[[tenant]]\nname = \"t\"\ncountry = \"ES\"\n\
         sources = [\"127.0.0.1/32\"]\n\n  [[tenant.outcalls]]\n  name = \"everything\"\n  patterns = [\"_X.\"]\n{rule}"
    )
}

/// An INVITE from `caller` to 600000001; the status codes it gets within a second.
fn call(caller: &UdpSocket, proxy: SocketAddr, call_id: &str) -> Vec<u16> {
    invite(caller, proxy, call_id, "caller", "600000001")
}

/// Whether the next hop received an INVITE for `call_id` within a second; it is answered
/// 486, so that the proxy has nothing left in flight when it is stopped.
fn forwarded(hop: &UdpSocket, call_id: &str) -> bool {
    hop.set_read_timeout(Some(Duration::from_millis(1000)))
        .expect("timeout");
    let mut buf = [0u8; 4096];
    while let Ok((n, from)) = hop.recv_from(&mut buf) {
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if !text.starts_with("INVITE ") || !text.contains(&format!("Call-ID: {call_id}")) {
            continue;
        }
        let mut busy = String::from("SIP/2.0 486 Busy Here\r\n");
        for line in text.split("\r\n").take_while(|l| !l.is_empty()) {
            let name = line.split(':').next().unwrap_or("").to_ascii_lowercase();
            if ["via", "from", "to", "call-id", "cseq"].contains(&name.as_str()) {
                busy.push_str(line);
                if name == "to" {
                    busy.push_str(";tag=hop");
                }
                busy.push_str("\r\n");
            }
        }
        busy.push_str("Content-Length: 0\r\n\r\n");
        hop.send_to(busy.as_bytes(), from).expect("answer");
        return true;
    }
    false
}

#[test]
fn sighup_applies_a_valid_file_and_keeps_the_rules_on_a_broken_one() {
    let dir = TempDir::new("reload", "sighup");
    // The next hop: a socket of the test, bound once and kept.
    let hop = UdpSocket::bind((LOCAL, 0)).expect("bind the next hop");
    let hop_addr = hop.local_addr().expect("local");
    let proxy = Sipscreen::start(&dir, &config(hop_addr, true));
    let path = dir.path("sipscreen.toml");
    let caller = UdpSocket::bind((LOCAL, 0)).expect("bind the caller");

    assert_eq!(
        call(&caller, proxy.udp(), "r1"),
        [100, 403],
        "blocked at first"
    );
    assert!(!forwarded(&hop, "r1"));

    std::fs::write(&path, config(hop_addr, false)).expect("rewrite");
    proxy.hangup();
    proxy.wait_for_log("configuration reloaded", 0);
    let codes = call(&caller, proxy.udp(), "r2");
    assert_eq!(codes.first(), Some(&100), "{codes:?}");
    assert!(!codes.contains(&403), "allowed after the reload: {codes:?}");
    assert!(forwarded(&hop, "r2"), "the call reaches the next hop");

    std::fs::write(&path, "[server]\nlisten = [\nnot toml").expect("break the file");
    proxy.hangup();
    proxy.wait_for_log("reload refused", 0);
    let log = proxy.log();
    assert!(
        log.contains("sipscreen.toml:3:"),
        "every error logged with its position:\n{log}"
    );
    let codes = call(&caller, proxy.udp(), "r3");
    assert!(!codes.contains(&403), "the last good rules stay: {codes:?}");
    assert!(forwarded(&hop, "r3"));
    proxy.stop_ok();
}
