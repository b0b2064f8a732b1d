//! One INVITE over UDP from a socket of the test, and the status codes it gets back: for
//! checks of a single decision where a SIPp run would be more than is needed.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

/// Sends an INVITE from `from_user` to `dialed` through `proxy` and returns the status codes
/// of its Call-ID that come back within a second, up to the first final one.
pub fn invite(
    caller: &UdpSocket,
    proxy: SocketAddr,
    call_id: &str,
    from_user: &str,
    dialed: &str,
) -> Vec<u16> {
    let port = caller.local_addr().expect("local").port();
    let invite = format!(
        "INVITE sip:{dialed}@{proxy} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{call_id};rport\r\n\
         From: <sip:{from_user}@127.0.0.1>;tag=1\r\nTo: <sip:{dialed}@127.0.0.1>\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:{from_user}@127.0.0.1:{port}>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    caller.send_to(invite.as_bytes(), proxy).expect("send");
    let mut codes = Vec::new();
    let mut buf = [0u8; 4096];
    caller
        .set_read_timeout(Some(Duration::from_millis(1000)))
        .expect("timeout");
    while let Ok(n) = caller.recv(&mut buf) {
        let text = String::from_utf8_lossy(&buf[..n]);
        // (the 403 of an earlier call is retransmitted: it was never acknowledged)
        if !text.contains(&format!("Call-ID: {call_id}\r\n")) {
            continue;
        }
        codes.extend(text.split(' ').nth(1).and_then(|c| c.parse::<u16>().ok()));
        if codes.last().is_some_and(|c| *c >= 200) {
            break;
        }
    }
    codes
}
