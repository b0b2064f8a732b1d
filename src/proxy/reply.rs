//! The messages the core writes itself (RFC 3261 §8.2.6 responses, §9.1 CANCEL, §17.1.1.3
//! ACK) and the few rewrites of a forwarded copy that are not plain header edits.

use std::time::Instant;

use super::edit::{self, Splice};
use super::route::DEFAULT_MAX_FORWARDS;
use super::secret::hex;
use super::{Peer, Proxy, ServerId};
use crate::sip::{HeaderName, Message, Method, ParseError, ReplyLines};

impl Proxy {
    /// Answers the request of a server transaction (§8.2.6) and moves the transaction on:
    /// Via, From, To (with our tag when it has none, except for 100), Call-ID and CSeq
    /// copied.
    pub(super) fn respond(
        &mut self,
        now: Instant,
        sid: ServerId,
        code: u16,
        reason: &str,
        extra: &[(&str, String)],
    ) {
        // Once the final response is sent there is nothing more to answer.
        let Some(request) = self
            .tx
            .server(sid)
            .and_then(|s| s.unanswered())
            .map(|u| &u.request)
        else {
            return;
        };
        let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let resp = build_response(request, &self.local_tag(request), code, reason, &extra);
        self.send_server_response(now, sid, code, resp);
    }

    /// Answers without keeping a transaction (OPTIONS to us, CANCEL, 4xx on checks).
    pub(super) fn reply_stateless(
        &mut self,
        msg: &Message,
        to: Peer,
        code: u16,
        reason: &str,
        extra: &[(&str, &str)],
    ) {
        let bytes = build_response(msg, &self.local_tag(msg), code, reason, extra);
        self.send(to, bytes);
    }

    /// Our To tag for the responses to one request: the same for its retransmissions, and
    /// unguessable (SPEC §5.1, §6 item 5: the PIN prompt's early dialog is known by it).
    pub(super) fn local_tag(&self, msg: &Message) -> String {
        let branch = msg.top_via().and_then(|v| v.branch().map(str::to_owned));
        let cseq = msg.cseq().map(|c| c.number).unwrap_or(0);
        let mac = self.settings.secret.mac(&[
            b"tag",
            msg.call_id().as_bytes(),
            branch.as_deref().unwrap_or("").as_bytes(),
            &cseq.to_be_bytes(),
        ]);
        format!("ss{}", hex(&mac[..8]))
    }

    pub(super) fn reason_header(&self) -> Vec<(&'static str, String)> {
        let r = &self.settings.server.reject_reason;
        if r.is_empty() {
            Vec::new()
        } else {
            vec![("Reason", r.clone())]
        }
    }
}

/// A forwarded request with its Request-URI replaced (`range` is where it was in the
/// original, which the forwarded copy keeps at the same place: edits only come after the
/// start line).
pub(super) fn splice_request_uri(
    forwarded: &[u8],
    range: std::ops::Range<usize>,
    uri: &str,
) -> Vec<u8> {
    let mut s = Splice::default();
    s.replace(range, uri.as_bytes());
    s.apply(forwarded)
}

/// Takes a dial-prefix PIN (`**1234*`) off the user part of the Request-URI and of the To
/// URI of a forwarded request, so the PIN reaches no other element.
pub(super) fn strip_dial_prefix(forwarded: &[u8], part: &str) -> Vec<u8> {
    let Ok(msg) = Message::parse(forwarded) else {
        return forwarded.to_vec();
    };
    let mut s = Splice::default();
    let mut strip_after_scheme = |range: std::ops::Range<usize>| {
        let text = msg.text(&range);
        let at = ["sip:", "sips:", "tel:"]
            .iter()
            .filter_map(|sch| text.find(sch).map(|i| i + sch.len()))
            .min();
        if let Some(at) = at.filter(|&at| text[at..].starts_with(part)) {
            s.remove(range.start + at..range.start + at + part.len());
        }
    };
    if let Some(r) = msg.request_uri_range() {
        strip_after_scheme(r);
    }
    if let Some(h) = msg.header(HeaderName::To) {
        strip_after_scheme(h.value.clone());
    }
    s.apply(forwarded)
}

/// A forwarded request without the `Proxy-Authorization` values meant for our `realm`:
/// credentials sipscreen consumed go no further (RFC 3261 §22.3).
pub(super) fn strip_credentials(forwarded: &[u8], realm: &str) -> Vec<u8> {
    let Ok(msg) = Message::parse(forwarded) else {
        return forwarded.to_vec();
    };
    let mut s = Splice::default();
    for h in msg
        .headers()
        .iter()
        .filter(|h| h.name == HeaderName::ProxyAuthorization)
    {
        let ours =
            super::auth::Credentials::parse(msg.text(&h.value)).is_some_and(|c| c.realm == realm);
        if ours {
            s.remove(h.line.clone());
        }
    }
    s.apply(forwarded)
}

/// The response's copy without its top Via value (ours).
pub(super) fn strip_top_via(msg: &Message) -> Vec<u8> {
    let mut s = Splice::default();
    edit::remove_first_values(msg, HeaderName::Via, 1, &mut s);
    s.apply(msg.bytes())
}

/// A response to `req` (§8.2.6), with `tag` as our To tag when the request had none.
pub(super) fn build_response(
    req: &Message,
    tag: &str,
    code: u16,
    reason: &str,
    extra: &[(&str, &str)],
) -> Vec<u8> {
    build_response_with_body(req, tag, code, reason, extra, "", b"")
}

/// A response to `req` with a body of `content_type` (none when the body is empty).
pub(super) fn build_response_with_body(
    req: &Message,
    tag: &str,
    code: u16,
    reason: &str,
    extra: &[(&str, &str)],
    content_type: &str,
    body: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(512 + body.len());
    out.extend_from_slice(format!("SIP/2.0 {code} {reason}\r\n").as_bytes());
    for h in req.headers() {
        let line = &req.bytes()[h.line.clone()];
        match h.name {
            HeaderName::Via | HeaderName::From | HeaderName::CallId | HeaderName::CSeq => {
                out.extend_from_slice(line)
            }
            HeaderName::To => {
                let has_tag = req.to().and_then(|t| t.tag()).is_some();
                if has_tag || code == 100 {
                    out.extend_from_slice(line);
                } else {
                    out.extend_from_slice(&req.bytes()[h.line.start..h.value.end]);
                    out.extend_from_slice(format!(";tag={tag}\r\n").as_bytes());
                }
            }
            _ => {}
        }
    }
    for (name, value) in extra {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    if !body.is_empty() {
        out.extend_from_slice(format!("Content-Type: {content_type}\r\n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "Server: sipscreen\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(body);
    out
}

/// The answer to a request that could not be parsed, from the lines that could be read
/// (Via, From, To, Call-ID, CSeq), with the reason in a Warning.
pub(super) fn malformed(bytes: &[u8], lines: &ReplyLines, e: &ParseError) -> Vec<u8> {
    let warning = format!("399 sipscreen \"{}\"", e.reason.replace('"', "'"));
    build_reply_from_lines(
        bytes,
        lines,
        e.status,
        reason_phrase(e.status),
        &[("Warning", &warning)],
    )
}

fn build_reply_from_lines(
    bytes: &[u8],
    lines: &ReplyLines,
    code: u16,
    reason: &str,
    extra: &[(&str, &str)],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(format!("SIP/2.0 {code} {reason}\r\n").as_bytes());
    for r in &lines.vias {
        out.extend_from_slice(&bytes[r.clone()]);
    }
    for r in &lines.others {
        out.extend_from_slice(&bytes[r.clone()]);
    }
    for (name, value) in extra {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    out.extend_from_slice(b"Server: sipscreen\r\nContent-Length: 0\r\n\r\n");
    out
}

/// CANCEL (§9.1) or ACK for a non-2xx (§17.1.1.3) built from the INVITE we forwarded: same
/// Request-URI, top Via, From, Call-ID, CSeq number and Route; the ACK takes the response's
/// To.
pub(super) fn build_in_transaction_request(
    invite: &Message,
    method: Method,
    to: Option<&str>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    let uri = invite.request_uri().unwrap_or("");
    out.extend_from_slice(format!("{method} {uri} SIP/2.0\r\n").as_bytes());
    if let Some(h) = invite.header(HeaderName::Via) {
        let via = invite
            .vias()
            .next()
            .and_then(Result::ok)
            .map(|v| invite.text(&v.range).to_owned())
            .unwrap_or_else(|| invite.text(&h.value).to_owned());
        out.extend_from_slice(format!("Via: {via}\r\n").as_bytes());
    }
    for h in invite.headers() {
        let line = &invite.bytes()[h.line.clone()];
        match h.name {
            HeaderName::From | HeaderName::CallId | HeaderName::Route => {
                out.extend_from_slice(line)
            }
            HeaderName::To if to.is_none() => out.extend_from_slice(line),
            _ => {}
        }
    }
    if let Some(to) = to {
        out.extend_from_slice(format!("To: {to}\r\n").as_bytes());
    }
    let n = invite.cseq().map(|c| c.number).unwrap_or(0);
    out.extend_from_slice(format!("CSeq: {n} {method}\r\nMax-Forwards: {DEFAULT_MAX_FORWARDS}\r\nContent-Length: 0\r\n\r\n").as_bytes());
    out
}

fn reason_phrase(code: u16) -> &'static str {
    match code {
        400 => "Bad Request",
        413 => "Request Entity Too Large",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        505 => "Version Not Supported",
        _ => "Bad Request",
    }
}
