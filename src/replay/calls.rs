//! From a capture to the calls it holds: SIP messages (datagrams, and messages framed off
//! reassembled TCP streams) fed to the proxy core in capture order, the capture's clock as
//! "now"; the first screening of each Call-ID is a new call.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant, UNIX_EPOCH};

use serde_json::{Map, Value};

use super::capture::Capture;
use super::payload::Transport;
use crate::config::Config;
use crate::proxy::{Peer, Proxy, Screening};
use crate::report;
use crate::sip::{frame, Framing};

/// One SIP message as the capture delivered it.
#[derive(Debug, Clone)]
pub struct CapturedMessage {
    /// Capture time, since the UNIX epoch.
    pub time: Duration,
    pub from: Peer,
    pub bytes: Vec<u8>,
}

/// The SIP messages of a capture, in capture order, and how many stream bytes could not be
/// framed (a broken stream is dropped until its next gap). Non-SIP datagrams (RTP...) are
/// left out.
pub fn sip_messages(capture: &Capture, max_size: usize) -> (Vec<CapturedMessage>, usize) {
    let mut out = Vec::new();
    let mut streams: HashMap<(SocketAddr, SocketAddr), Vec<u8>> = HashMap::new();
    let mut broken = 0;
    for p in capture.payloads() {
        let from = Peer {
            transport: p.transport,
            addr: p.src,
        };
        match p.transport {
            Transport::Udp => {
                if looks_like_sip(&p.bytes) {
                    out.push(CapturedMessage {
                        time: p.time,
                        from,
                        bytes: p.bytes.clone(),
                    });
                }
            }
            // A capture holds no TLS: what is encrypted is not seen.
            Transport::Tcp | Transport::Tls => {
                let buf = streams.entry((p.src, p.dst)).or_default();
                if p.after_gap {
                    buf.clear();
                }
                buf.extend_from_slice(&p.bytes);
                loop {
                    match frame(buf, max_size) {
                        Ok(Framing::Complete(n)) => {
                            let rest = buf.split_off(n);
                            let bytes = std::mem::replace(buf, rest);
                            if looks_like_sip(bytes.trim_ascii_start()) {
                                out.push(CapturedMessage {
                                    time: p.time,
                                    from,
                                    bytes,
                                });
                            }
                        }
                        Ok(Framing::Incomplete) => break,
                        Err(_) => {
                            broken += buf.len();
                            buf.clear();
                            break;
                        }
                    }
                }
            }
        }
    }
    (out, broken)
}

/// Whether bytes start like a SIP message: a status line, or `METHOD URI SIP/2.0`.
pub fn looks_like_sip(b: &[u8]) -> bool {
    if b.starts_with(b"SIP/2.0 ") {
        return true;
    }
    let Some(end) = b.iter().position(|&c| c == b'\n') else {
        return false;
    };
    let line = b[..end].strip_suffix(b"\r").unwrap_or(&b[..end]);
    line.ends_with(b" SIP/2.0") && line.first().is_some_and(u8::is_ascii_uppercase)
}

/// A new call seen in the capture, and what the proxy decided.
#[derive(Debug, Clone)]
pub struct ReplayedCall {
    pub time: Duration,
    /// The screening, as the live proxy would send it to `/1.1/events`.
    pub screening: Screening,
}

/// Replays the messages through a proxy core running `config`: one [`ReplayedCall`] per
/// Call-ID, for its first screened INVITE (retransmissions, the same INVITE re-sent with
/// credentials, and the same call seen again at another hop are not new calls).
pub fn replay(config: &Config, messages: &[CapturedMessage]) -> Vec<ReplayedCall> {
    let mut proxy = Proxy::new(config.proxy.clone(), config.policy.clone());
    proxy.record_screenings();
    let base = Instant::now();
    let first = messages.first().map_or(Duration::ZERO, |m| m.time);
    let mut seen = HashSet::new();
    let mut calls = Vec::new();
    for m in messages {
        let now = base + m.time.saturating_sub(first);
        proxy.handle_timeout(now);
        proxy.handle_message(now, m.from, &m.bytes);
        while proxy.poll_transmit().is_some() {}
        while let Some(s) = proxy.poll_screening() {
            if seen.insert(s.call_id.clone()) {
                let time = first + s.at.duration_since(base);
                calls.push(ReplayedCall { time, screening: s });
            }
        }
    }
    calls
}

/// The JSON object of one replayed call: `call_id`, `time`, `source` and the keys of
/// `check --json`.
pub fn call_json(config: &Config, call: &ReplayedCall) -> Map<String, Value> {
    report::screening_json(&config.policy, &call.screening, UNIX_EPOCH + call.time)
}

/// Compares replayed calls with expectations (one JSON object per line, each with `call_id`
/// and the keys to check). Returns every difference; empty means all agree.
pub fn compare(actual: &[Map<String, Value>], expected_text: &str) -> Result<Vec<String>, String> {
    let mut expected = Vec::new();
    for (n, line) in expected_text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
    {
        let v: Value = serde_json::from_str(line).map_err(|e| format!("line {}: {e}", n + 1))?;
        let Value::Object(obj) = v else {
            return Err(format!("line {}: not a JSON object", n + 1));
        };
        let Some(Value::String(id)) = obj.get("call_id") else {
            return Err(format!("line {}: no call_id", n + 1));
        };
        expected.push((id.clone(), obj));
    }
    let by_id: HashMap<&str, &Map<String, Value>> = actual
        .iter()
        .filter_map(|c| Some((c.get("call_id")?.as_str()?, c)))
        .collect();
    let mut diffs = Vec::new();
    for (id, want) in &expected {
        let Some(got) = by_id.get(id.as_str()) else {
            diffs.push(format!("{id}: expected a call, none replayed"));
            continue;
        };
        for (k, v) in want.iter().filter(|(k, _)| *k != "call_id") {
            let have = got.get(k).unwrap_or(&Value::Null);
            if have != v {
                diffs.push(format!("{id}: {k} expected {v}, got {have}"));
            }
        }
    }
    let known: HashSet<&str> = expected.iter().map(|(id, _)| id.as_str()).collect();
    for id in by_id.keys().filter(|id| !known.contains(*id)) {
        diffs.push(format!("{id}: replayed but not expected"));
    }
    diffs.sort();
    Ok(diffs)
}
