//! SIP written and read by hand, for the suites whose peers are plain UDP sockets of the
//! test (`tests/security_e2e.rs`, `tests/service.rs`): fresh tokens, an SDP offer, a
//! response's status and headers, a UAS's answer, and a phone's digest credentials.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};

use sipscreen::proxy::auth::{response, Algorithm, Credentials};

/// A fresh token for Call-IDs, tags and branches.
pub fn unique(what: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{what}{}x{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// An SDP offer of PCMU and telephone-event/101 at `rtp`.
pub fn offer(rtp: SocketAddr) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n",
        ip = rtp.ip(),
        port = rtp.port()
    )
}

/// The status code of a response (0 for a request).
pub fn status(msg: &str) -> u16 {
    msg.strip_prefix("SIP/2.0 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Every value of a header (full name), in order.
pub fn headers<'m>(msg: &'m str, name: &str) -> Vec<&'m str> {
    msg.split("\r\n")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

/// The first value of a header (full name).
pub fn header<'m>(msg: &'m str, name: &str) -> Option<&'m str> {
    headers(msg, name).into_iter().next()
}

/// A message's start line.
pub fn first_line(msg: &str) -> &str {
    msg.lines().next().unwrap_or("")
}

/// The method of a CSeq (`1 INVITE` → `INVITE`).
pub fn cseq_method(msg: &str) -> &str {
    header(msg, "CSeq")
        .and_then(|c| c.split_whitespace().nth(1))
        .unwrap_or("")
}

/// A response to `req` (a request received by a callee of the test), as a UAS sends it:
/// every Via, the Record-Route, From, To (with `to_tag` added), Call-ID, CSeq, and
/// `extra` lines.
pub fn answer(req: &str, code: u16, reason: &str, to_tag: &str, extra: &str) -> String {
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for line in req.split("\r\n").skip(1).take_while(|l| !l.is_empty()) {
        let name = line
            .split_once(':')
            .map_or("", |(n, _)| n.trim())
            .to_ascii_lowercase();
        match name.as_str() {
            "via" | "record-route" | "from" | "call-id" | "cseq" => {
                out.push_str(line);
                out.push_str("\r\n");
            }
            "to" => {
                out.push_str(line);
                if !to_tag.is_empty() && !line.contains(";tag=") {
                    out.push_str(&format!(";tag={to_tag}"));
                }
                out.push_str("\r\n");
            }
            _ => {}
        }
    }
    out.push_str(extra);
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

/// A `"name=value"` or `name=value` parameter of a challenge.
pub fn param<'v>(value: &'v str, name: &str) -> &'v str {
    let at = value
        .find(&format!("{name}="))
        .unwrap_or_else(|| panic!("no {name} in `{value}`"))
        + name.len()
        + 1;
    let rest = &value[at..];
    match rest.strip_prefix('"') {
        Some(q) => &q[..q.find('"').unwrap_or(q.len())],
        None => rest.split([',', ' ']).next().unwrap_or(""),
    }
}

/// The `Proxy-Authorization` line a phone computes from the challenge of `alg` in a 407
/// (RFC 7616, `qop=auth`): the `nc`-th use of its nonce.
#[allow(clippy::too_many_arguments)]
pub fn authorization(
    challenge_407: &str,
    alg: Algorithm,
    user: &str,
    password: &str,
    method: &str,
    uri: &str,
    nc: u32,
) -> String {
    let challenge = headers(challenge_407, "Proxy-Authenticate")
        .into_iter()
        .find(|c| c.contains(&format!("algorithm={}", alg.name())))
        .unwrap_or_else(|| panic!("no {} challenge in:\n{challenge_407}", alg.name()));
    let (realm, nonce) = (param(challenge, "realm"), param(challenge, "nonce"));
    let nc = format!("{nc:08x}");
    let mut c = Credentials {
        username: user,
        realm,
        nonce,
        uri,
        response: "",
        algorithm: Some(alg.name()),
        cnonce: "5ec0e2e",
        qop: "auth",
        nc: &nc,
    };
    let ha1 = alg.hash(&format!("{user}:{realm}:{password}"));
    let r = response(alg, &ha1, &c, method);
    c.response = &r;
    format!(
        "Proxy-Authorization: Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{}\", algorithm={}, cnonce=\"{}\", qop=auth, nc={}\r\n",
        c.username, c.realm, c.nonce, c.uri, c.response, alg.name(), c.cnonce, c.nc
    )
}
