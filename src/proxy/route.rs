//! Routing (RFC 3261 §16.4–§16.6): which addresses are ours, where a request goes, and the
//! forwarded copy of a request with its byte edits (Via, Max-Forwards, Route,
//! Record-Route, P-Asserted-Identity); loop detection (§16.3 item 4).

use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};

use super::edit::{self, Splice};
use super::secret::hex;
use super::{Peer, Proxy, Transport};
use crate::sip::header::{parse_contacts, Via};
use crate::sip::uri::{Scheme, Uri};
use crate::sip::{HeaderName, Message};

/// Our branch parameters start with this, after the magic cookie.
pub(super) const BRANCH_PREFIX: &str = "z9hG4bKsS";
/// Max-Forwards put on requests that had none (RFC 3261 §16.6 item 3).
pub(super) const DEFAULT_MAX_FORWARDS: u8 = 70;

impl Proxy {
    /// The next hop for an admitted out-of-dialog request that is not screened: its
    /// tenant's, else the server's.
    pub(super) fn tenant_destination(
        &mut self,
        now: std::time::Instant,
        tenant: crate::policy::TenantId,
    ) -> Option<super::screen::Targets> {
        let hop = self.policy.tenants[tenant]
            .spec
            .next_hop
            .unwrap_or(self.policy.default_next_hop);
        self.hop_targets(now, hop)
    }

    /// Where an in-dialog request of a dialog sipscreen does not know goes (from a trusted
    /// peer or a tenant source, SPEC §5.1): the first Route that is not ours, else the
    /// Request-URI, else (Request-URI is us) the default next hop. A host that is a name
    /// rather than an address goes to the default next hop, which does the DNS. `None` when
    /// it goes to the default next hop and that has no target.
    pub(super) fn in_dialog_destination(&self, msg: &Message) -> Option<Peer> {
        let ours = self.our_route_count(msg);
        let next_route = msg
            .header_values(HeaderName::Route)
            .flat_map(|v| parse_contacts(v).ok().into_iter().flatten())
            .nth(ours)
            .map(|na| na.uri);
        let target = match next_route {
            Some(uri) => uri_target(uri),
            None if !self.addressed_to_us(msg) => msg.request_uri().and_then(uri_target),
            None => None,
        };
        target.or_else(|| self.first_target(self.policy.default_next_hop))
    }

    /// Whether a URI names one of our listeners.
    pub(super) fn is_us(&self, uri: &str) -> bool {
        let Ok(u) = Uri::parse(uri) else { return false };
        if u.scheme == Scheme::Tel {
            return false;
        }
        let Ok(ip) = u.host_unbracketed().parse::<IpAddr>() else {
            return false;
        };
        let port = u
            .port
            .unwrap_or(if u.scheme == Scheme::Sips { 5061 } else { 5060 });
        self.settings
            .server
            .listen
            .iter()
            .any(|l| l.addr.ip() == ip && l.addr.port() == port)
    }

    /// How many Route values at the top are ours (loose routing, §16.4).
    pub(super) fn our_route_count(&self, msg: &Message) -> usize {
        msg.header_values(HeaderName::Route)
            .flat_map(|v| parse_contacts(v).ok().into_iter().flatten())
            .take_while(|na| self.is_us(na.uri))
            .count()
    }

    /// A request for us: Request-URI names us and no Route is left once ours are taken off.
    pub(super) fn addressed_to_us(&self, msg: &Message) -> bool {
        let routes = msg
            .header_values(HeaderName::Route)
            .flat_map(|v| parse_contacts(v).ok().into_iter().flatten())
            .count();
        routes == self.our_route_count(msg) && msg.request_uri().is_some_and(|u| self.is_us(u))
    }

    /// Our address towards `to`: the listener of the same transport and family.
    pub(super) fn local_for(&self, to: Peer) -> Peer {
        let listen = &self.settings.server.listen;
        listen
            .iter()
            .find(|l| l.transport == to.transport && l.addr.is_ipv4() == to.addr.is_ipv4())
            .or_else(|| {
                listen
                    .iter()
                    .find(|l| l.addr.is_ipv4() == to.addr.is_ipv4())
            })
            .or(listen.first())
            .copied()
            .unwrap_or(Peer {
                transport: to.transport,
                addr: SocketAddr::from(([127, 0, 0, 1], 5060)),
            })
    }

    pub(super) fn is_loop(&self, msg: &Message, hash: u64) -> bool {
        let mine = format!("{BRANCH_PREFIX}{hash:016x}.");
        msg.vias().flatten().any(|v| {
            v.branch().is_some_and(|b| b.starts_with(&mine))
                && self.settings.server.listen.iter().any(|l| {
                    v.host
                        .trim_matches(['[', ']'])
                        .parse::<IpAddr>()
                        .is_ok_and(|ip| ip == l.addr.ip())
                        && v.port.unwrap_or(5060) == l.addr.port()
                })
        })
    }

    /// The lines a forwarded request gets right under its start line: our Via towards `to`
    /// with `branch`, and the Record-Route of both our listeners when asked. Kept apart so
    /// that a copy for another target is the same bytes with these lines replaced.
    pub(super) fn top_lines(
        &self,
        from: Peer,
        to: Peer,
        branch: &str,
        record_route: bool,
    ) -> String {
        let local = self.local_for(to);
        let mut top = format!(
            "Via: SIP/2.0/{} {};branch={branch}\r\n",
            transport_name(local.transport),
            host_port(local.addr)
        );
        if record_route {
            let inbound = self.local_for(from);
            if inbound != local {
                top.push_str(&format!("Record-Route: {}\r\n", rr_uri(local)));
            }
            top.push_str(&format!("Record-Route: {}\r\n", rr_uri(inbound)));
        }
        top
    }

    /// The forwarded copy of a request (§16.6): our Via on top with a new branch, received and
    /// rport on the previous hop's Via, Max-Forwards decremented (or added), our Route entries
    /// removed, Record-Route added when asked, and an untrusted P-Asserted-Identity removed.
    pub(super) fn forward_bytes(
        &self,
        msg: &Message,
        from: Peer,
        to: Peer,
        branch: &str,
        record_route: bool,
        max_forwards: Option<u8>,
    ) -> Vec<u8> {
        let mut s = Splice::default();
        let line_end = msg.start_line().end;
        s.insert(line_end, self.top_lines(from, to, branch, record_route));
        if let Some(via) = msg.top_via() {
            // RFC 3261 §18.2.1 and RFC 3581 §4: say where the request really came from.
            let mut params = String::new();
            let elsewhere =
                via.host.trim_matches(['[', ']']).parse::<IpAddr>().ok() != Some(from.addr.ip());
            if (elsewhere || via.rport().is_some()) && via.received().is_none() {
                params.push_str(&format!(";received={}", from.addr.ip()));
            }
            if let Some(None) = via.rport() {
                if let Some(at) = rport_end(msg, &via) {
                    s.insert(at, format!("={}", from.addr.port()));
                }
            }
            if !params.is_empty() {
                s.insert(via.params_end, params);
            }
        }
        match msg.header(HeaderName::MaxForwards) {
            Some(h) => s.replace(
                h.value.clone(),
                max_forwards
                    .map_or(DEFAULT_MAX_FORWARDS, |m| m.saturating_sub(1))
                    .to_string(),
            ),
            None => s.insert(
                msg.blank_line().start,
                format!("Max-Forwards: {DEFAULT_MAX_FORWARDS}\r\n"),
            ),
        }
        let ours = self.our_route_count(msg);
        edit::remove_first_values(msg, HeaderName::Route, ours, &mut s);
        if !self.settings.server.is_trusted(from.addr.ip()) {
            // An identity asserted by someone sipscreen does not trust goes no further
            // (RFC 3325), under any of its names.
            let asserted = |h: &&crate::sip::message::Header| {
                h.name == HeaderName::PAssertedIdentity
                    || ["remote-party-id", "p-preferred-identity"].iter().any(|n| {
                        msg.bytes()[h.name_range.clone()].eq_ignore_ascii_case(n.as_bytes())
                    })
            };
            for h in msg.headers().iter().filter(asserted) {
                s.remove(h.line.clone());
            }
        }
        // A message without Content-Length may leave over a stream: give it one (RFC 3261
        // §18.3), or the next hop reads its body as the next message.
        if msg.header(HeaderName::ContentLength).is_none() {
            s.insert(
                msg.blank_line().start,
                format!("Content-Length: {}\r\n", msg.body().len()),
            );
        }
        s.apply(msg.bytes())
    }
}

pub(super) fn transport_name(t: Transport) -> &'static str {
    match t {
        Transport::Udp => "UDP",
        Transport::Tcp => "TCP",
        Transport::Tls => "TLS",
    }
}

pub(super) fn host_port(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => a.to_string(),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}

/// Our Record-Route entry for a listener. A TLS listener is `sip:…;transport=tls`, not a
/// `sips:` URI: `sips:` would promise TLS on every hop to the far end (RFC 3261 §26.2.2,
/// RFC 5630 §3.1.3), which sipscreen cannot promise for the other leg of the call; what it
/// says is only how to reach sipscreen itself, as Kamailio's and OpenSIPS's do.
pub(super) fn rr_uri(local: Peer) -> String {
    match local.transport {
        Transport::Udp => format!("<sip:{};lr>", host_port(local.addr)),
        Transport::Tcp => format!("<sip:{};transport=tcp;lr>", host_port(local.addr)),
        Transport::Tls => format!("<sip:{};transport=tls;lr>", host_port(local.addr)),
    }
}

/// Where `rport` ends in the top Via, to fill in its value.
fn rport_end(msg: &Message, via: &Via<'_>) -> Option<usize> {
    let text = msg.text(&via.range);
    let lower = text.to_ascii_lowercase();
    let mut search = 0;
    while let Some(i) = lower[search..].find("rport") {
        let start = search + i;
        let end = start + 5;
        let before_ok = lower[..start].trim_end().ends_with(';');
        let after = lower[end..].trim_start();
        if before_ok && (after.is_empty() || after.starts_with(';') || after.starts_with(',')) {
            return Some(via.range.start + end);
        }
        search = end;
    }
    None
}

/// The user part of a sip/sips URI, or the number of a tel URI.
pub(super) fn uri_user(uri: &str) -> Option<&str> {
    Uri::parse(uri).ok().and_then(|u| u.user)
}

/// Where a SIP URI points: its host must be an IP address (no DNS on the message path).
pub(super) fn uri_target(uri: &str) -> Option<Peer> {
    let u = Uri::parse(uri).ok()?;
    if u.scheme == Scheme::Tel {
        return None;
    }
    let ip: IpAddr = u.host_unbracketed().parse().ok()?;
    // A sips: URI is reached over TLS whatever its transport parameter (RFC 3261 §26.2.2).
    let transport = match u.param("transport") {
        _ if u.scheme == Scheme::Sips => Transport::Tls,
        Some(t) if t.eq_ignore_ascii_case("tcp") => Transport::Tcp,
        Some(t) if t.eq_ignore_ascii_case("tls") => Transport::Tls,
        _ => Transport::Udp,
    };
    let default_port = if transport == Transport::Tls {
        5061
    } else {
        5060
    };
    Some(Peer {
        transport,
        addr: SocketAddr::new(ip, u.port.unwrap_or(default_port)),
    })
}

/// Where responses to a request go (RFC 3261 §18.2.2, RFC 3581 §4): over the same
/// connection for TCP; for UDP, to the source address, at the source port when `rport` was
/// asked for, else at the Via's port.
pub(super) fn response_peer(from: Peer, via: &Via<'_>) -> Peer {
    if from.transport.is_stream() || via.rport().is_some() {
        return from;
    }
    Peer {
        transport: from.transport,
        addr: SocketAddr::new(from.addr.ip(), via.port.unwrap_or(5060)),
    }
}

/// The fields that make a request the same when it comes back (§16.3 item 4).
pub(super) fn loop_hash(msg: &Message) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    msg.request_uri().hash(&mut h);
    msg.from().and_then(|f| f.tag()).hash(&mut h);
    msg.to().and_then(|t| t.tag()).hash(&mut h);
    msg.call_id().hash(&mut h);
    msg.cseq().map(|c| c.number).ok().hash(&mut h);
    for r in msg.header_values(HeaderName::Route) {
        r.hash(&mut h);
    }
    for r in msg.header_values(HeaderName::ProxyRequire) {
        r.hash(&mut h);
    }
    h.finish()
}

impl Proxy {
    /// A new branch for a request we forward: the loop-detection hash of the request, then
    /// an HMAC of a number never used before under the per-process secret, so that nobody
    /// can guess a branch and answer for a next hop (SPEC §5.1).
    pub(super) fn new_branch(&mut self, loop_hash: u64) -> String {
        let n = self.tx.branch_number();
        let mac = self.settings.secret.mac(&[b"branch", &n.to_be_bytes()]);
        format!("{BRANCH_PREFIX}{loop_hash:016x}.{}", hex(&mac[..12]))
    }
}
