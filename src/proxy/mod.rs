//! The proxy core, sans-I/O (RFC 3261 §16 and §17, RFC 6026, RFC 3581): a deterministic
//! state machine with no sockets and no clock, in the style of `quinn-proto`.
//!
//! The I/O layer feeds it what arrives ([`Proxy::handle_message`]), the time
//! ([`Proxy::handle_timeout`]) and failed sends ([`Proxy::handle_send_error`]), and drains
//! what it wants sent ([`Proxy::poll_transmit`]) and when it next wants to be woken
//! ([`Proxy::poll_timeout`]). Tests drive it with a simulated clock.
//!
//! One INVITE flows through it as: parse and check → server transaction (100 Trying) →
//! screening by the policy (tenant, identity, decision; one log event) → allow: the request
//! is copied with our Via, Max-Forwards, Route and Record-Route edits into a client
//! transaction towards the next hop; deny: 403 with the configured Reason → responses come
//! back through the client transaction and are relayed upstream through the server
//! transaction, which retransmits finals until they are acknowledged.

pub mod edit;
pub mod pin;
mod transaction;

use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::media;
use crate::policy::number;
use crate::policy::target::{Target, Transport};
use crate::policy::{Call, CallKind, Decision, PinCheck, TenantId, UserId, Verdict};
use crate::sip::forwarding;
use crate::sip::header::{parse_contacts, parse_max_forwards, Via};
use crate::sip::uri::{Scheme, Uri};
use crate::sip::{HeaderName, Message, Method, ReplyLines};

use edit::Splice;
use transaction::{ClientState, ClientTx, ServerState, ServerTx, TimerKind};
pub use transaction::{T1, T2, T4, TIMER_C};

/// A remote end: where a message came from, or where one goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Peer {
    pub transport: Transport,
    pub addr: SocketAddr,
}

impl From<Target> for Peer {
    fn from(t: Target) -> Self {
        Peer {
            transport: t.transport,
            addr: t.addr,
        }
    }
}

/// Bytes to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub to: Peer,
    pub bytes: Vec<u8>,
    /// Send from this RTP port (PIN prompt media) instead of the SIP socket.
    pub from_rtp: Option<u16>,
}

/// What the core needs from the I/O layer for media: RTP sockets opened and closed as PIN
/// sessions start and end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaCommand {
    /// Bind a UDP socket at this address and feed what it receives to
    /// [`Proxy::handle_rtp`].
    Open(SocketAddr),
    /// Close the socket of this port.
    Close(u16),
}

/// A call held while its caller enters a PIN, and where it goes once the PIN is right.
#[derive(Debug)]
struct Held {
    session: pin::PinSession,
    dest: Target,
    forward: Vec<u8>,
}

/// Following a user's phone's own forward (3xx) with that user's rights (SPEC §4.7).
#[derive(Debug)]
pub struct Recursion {
    tenant: TenantId,
    /// The caller, as screening saw them.
    caller: String,
    /// The called user (their extension), whose rights the forward targets get.
    called: String,
    /// Allowed targets not tried yet: where to send, and the Request-URI.
    targets: VecDeque<(Target, String)>,
    /// Whether a 3xx was followed (then failures move on to the next target).
    active: bool,
}

/// Our branch parameters start with this, after the magic cookie.
const BRANCH_PREFIX: &str = "z9hG4bKsS";
/// Max-Forwards put on requests that had none (RFC 3261 §16.6 item 3).
const DEFAULT_MAX_FORWARDS: u8 = 70;
/// How long the next hop of a dialog is remembered for in-dialog requests addressed to us.
const DIALOG_TTL: Duration = Duration::from_secs(12 * 3600);

/// The proxy core.
pub struct Proxy {
    config: Arc<Config>,
    servers: HashMap<u64, ServerTx>,
    server_index: HashMap<String, u64>,
    clients: HashMap<u64, ClientTx>,
    client_index: HashMap<String, u64>,
    timers: BinaryHeap<std::cmp::Reverse<(Instant, u64, TimerKind)>>,
    outbox: VecDeque<Transmit>,
    /// Call-ID → next hop of the dialog's INVITE, for in-dialog requests that reach us with
    /// our own address as Request-URI and no Route (peers that ignore Record-Route).
    dialogs: HashMap<Box<str>, (Target, Instant)>,
    dialog_order: VecDeque<(Instant, Box<str>)>,
    next_id: u64,
    accepting: bool,
    /// Server transactions still waiting for their final response.
    pending: usize,
    /// Requests refused at the transaction limit since the last warning, and when it was.
    refused: u64,
    refused_logged_at: Option<Instant>,
    /// Decisions kept for [`Proxy::poll_screening`] (replay), when asked for.
    screenings: Option<VecDeque<Screening>>,
    /// Calls held for a PIN, by session id; and the ways to find them.
    held: HashMap<u64, Held>,
    held_by_port: HashMap<u16, u64>,
    held_by_server: HashMap<u64, u64>,
    lockout: pin::Lockout,
    ports: pin::Ports,
    media: VecDeque<MediaCommand>,
}

/// One screened out-of-dialog INVITE: what was decided, about which call, when, from whom.
#[derive(Debug, Clone)]
pub struct Screening {
    pub call_id: Box<str>,
    pub at: Instant,
    pub source: Peer,
    pub decision: Decision,
}

impl Proxy {
    pub fn new(config: Arc<Config>) -> Self {
        Self {
            config: config.clone(),
            servers: HashMap::new(),
            server_index: HashMap::new(),
            clients: HashMap::new(),
            client_index: HashMap::new(),
            timers: BinaryHeap::new(),
            outbox: VecDeque::new(),
            dialogs: HashMap::new(),
            dialog_order: VecDeque::new(),
            next_id: 1,
            accepting: true,
            pending: 0,
            refused: 0,
            refused_logged_at: None,
            screenings: None,
            held: HashMap::new(),
            held_by_port: HashMap::new(),
            held_by_server: HashMap::new(),
            lockout: pin::Lockout::default(),
            ports: pin::Ports::new(config.pin.rtp_ports),
            media: VecDeque::new(),
        }
    }

    /// The configuration the core runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The next RTP socket to open or close.
    pub fn poll_media(&mut self) -> Option<MediaCommand> {
        self.media.pop_front()
    }

    /// The next thing to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.outbox.pop_front()
    }

    /// Keeps every screening decision for [`Proxy::poll_screening`] (the live proxy only logs
    /// them).
    pub fn record_screenings(&mut self) {
        self.screenings.get_or_insert_with(VecDeque::new);
    }

    /// The next recorded screening decision.
    pub fn poll_screening(&mut self) -> Option<Screening> {
        self.screenings.as_mut()?.pop_front()
    }

    /// When [`Proxy::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|std::cmp::Reverse((at, _, _))| *at)
    }

    /// Stops taking new calls (SIGTERM): new out-of-dialog requests get 503, transactions in
    /// flight go on.
    pub fn stop_accepting(&mut self) {
        self.accepting = false;
    }

    /// Whether no transaction is in flight.
    pub fn is_idle(&self) -> bool {
        self.servers.is_empty() && self.clients.is_empty()
    }

    /// Whether a request is still waiting for its final response (what draining waits for).
    pub fn has_pending(&self) -> bool {
        self.pending > 0
    }

    /// Transactions in flight (server, client).
    pub fn transactions(&self) -> (usize, usize) {
        (self.servers.len(), self.clients.len())
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn schedule(&mut self, at: Instant, id: u64, kind: TimerKind) {
        self.timers.push(std::cmp::Reverse((at, id, kind)));
    }

    fn send(&mut self, to: Peer, bytes: Vec<u8>) {
        // Never send to a broadcast, multicast or unspecified address (RFC 4475 §3.3.10).
        let bad = match to.addr.ip() {
            IpAddr::V4(ip) => ip.is_broadcast() || ip.is_multicast() || ip.is_unspecified(),
            IpAddr::V6(ip) => ip.is_multicast() || ip.is_unspecified(),
        };
        if bad || to.addr.port() == 0 {
            tracing::warn!(to = %to.addr, "not sending to a broadcast, multicast or unspecified address");
            return;
        }
        self.outbox.push_back(Transmit {
            to,
            bytes,
            from_rtp: None,
        });
    }

    /// One message from `from` (a UDP datagram, or one message framed off a TCP stream).
    pub fn handle_message(&mut self, now: Instant, from: Peer, bytes: &[u8]) {
        if bytes.len() > self.config.limits.max_message_size {
            tracing::warn!(source = %from.addr, size = bytes.len(), "message too large, dropped");
            return;
        }
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return; // keep-alive (RFC 5626 CRLF)
        }
        match Message::parse(bytes) {
            Ok(msg) if msg.is_request() => self.handle_request(now, from, msg),
            Ok(msg) => self.handle_response(now, from, msg),
            Err(e) if e.request => {
                tracing::warn!(source = %from.addr, error = %e, "malformed request");
                if let Some(lines) = ReplyLines::find(bytes) {
                    let reason = reason_phrase(e.status);
                    let resp = build_reply_from_lines(
                        bytes,
                        &lines,
                        e.status,
                        reason,
                        &[(
                            "Warning",
                            &format!("399 sipscreen \"{}\"", e.reason.replace('"', "'")),
                        )],
                    );
                    self.send(response_peer_raw(from), resp);
                }
            }
            Err(e) => {
                tracing::warn!(source = %from.addr, error = %e, "malformed response, dropped")
            }
        }
    }

    fn handle_request(&mut self, now: Instant, from: Peer, msg: Message) {
        let Some(via) = msg.top_via() else { return };
        let method = msg.method();
        let key = server_key(&msg, &via, &method);
        let resp_peer = response_peer(from, &via);
        drop(via);

        // Retransmission of a request we have a transaction for (RFC 3261 §17.2.3).
        if method != Method::Ack {
            if let Some(&id) = self.server_index.get(&key) {
                self.retransmit_server(id);
                return;
            }
        } else if let Some(&id) = self.server_index.get(&key) {
            self.ack_for_final(now, id);
            return;
        }

        // Proxy-Require (RFC 3261 §16.3 item 5).
        if method != Method::Ack {
            let unsupported: Vec<&str> = msg.header_values(HeaderName::ProxyRequire).collect();
            if !unsupported.is_empty() {
                let list = unsupported.join(", ");
                self.reply_stateless(
                    &msg,
                    resp_peer,
                    420,
                    "Bad Extension",
                    &[("Unsupported", &list)],
                );
                return;
            }
        }

        // Max-Forwards (§16.3 item 3; RFC 4475 §3.3.11).
        let max_forwards = msg
            .header_str(HeaderName::MaxForwards)
            .and_then(|v| parse_max_forwards(v).ok());
        let to_us = self.addressed_to_us(&msg);
        if method == Method::Options && to_us {
            self.reply_stateless(
                &msg,
                resp_peer,
                200,
                "OK",
                &[(
                    "Allow",
                    "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, PRACK",
                )],
            );
            return;
        }
        if max_forwards == Some(0) {
            if method != Method::Ack {
                self.reply_stateless(&msg, resp_peer, 483, "Too Many Hops", &[]);
            }
            return;
        }
        // Loop detection (§16.3 item 4).
        let loop_hash = loop_hash(&msg);
        if self.is_loop(&msg, loop_hash) {
            if method != Method::Ack {
                self.reply_stateless(&msg, resp_peer, 482, "Loop Detected", &[]);
            }
            return;
        }

        if method == Method::Cancel {
            self.handle_cancel(now, &msg, resp_peer);
            return;
        }
        // DTMF by SIP INFO in the early dialog of a PIN prompt (SPEC §6).
        if method == Method::Info {
            let tag = msg.to().and_then(|t| t.tag());
            let held = self.held.iter().find(|(_, h)| {
                Some(h.session.tag.as_str()) == tag && &*h.session.call_id == msg.call_id()
            });
            if let Some((&id, _)) = held {
                self.handle_info(now, id, &msg, resp_peer);
                return;
            }
        }

        let in_dialog = msg.to().and_then(|t| t.tag()).is_some();
        if method == Method::Ack {
            // ACK for a 2xx, or a stray one: forwarded without a transaction (§16.11).
            let dest = self.in_dialog_destination(&msg);
            let branch = format!("{BRANCH_PREFIX}{loop_hash:016x}.{:x}", self.id());
            let bytes = self.forward_bytes(&msg, from, dest.into(), &branch, false, max_forwards);
            self.send(dest.into(), bytes);
            return;
        }
        if !in_dialog && !self.accepting {
            self.reply_stateless(
                &msg,
                resp_peer,
                503,
                "Service Unavailable",
                &[("Retry-After", "30")],
            );
            return;
        }
        // The limit is on requests waiting for their final response: transactions that only
        // linger to absorb retransmissions (Timers J and L, 32 s) are not work in flight.
        if self.pending >= self.config.limits.max_transactions {
            // Once a second at most, with how many were refused meanwhile: logging every
            // refusal would add cost exactly when the proxy is overloaded.
            self.refused += 1;
            if self
                .refused_logged_at
                .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
            {
                tracing::warn!(source = %from.addr, refused = self.refused, "transaction limit reached, 503");
                self.refused = 0;
                self.refused_logged_at = Some(now);
            }
            self.reply_stateless(
                &msg,
                resp_peer,
                503,
                "Service Unavailable",
                &[("Retry-After", "5")],
            );
            return;
        }

        // Where does it go? Screening reads the request before the transaction keeps it.
        let invite = method == Method::Invite;
        let screened = if in_dialog {
            Screened::Forward(self.in_dialog_destination(&msg), None)
        } else if invite {
            let screened = self.screen(now, &msg, from);
            if let Screened::Forward(dest, _) = &screened {
                self.remember_dialog(now, msg.call_id(), *dest);
            }
            screened
        } else {
            Screened::Forward(self.default_destination(&msg, from), None)
        };
        let branch = format!("{BRANCH_PREFIX}{loop_hash:016x}.{:x}", self.id());
        let record_route = invite && !in_dialog && self.config.server.record_route;
        // A PIN given with the dial prefix never leaves sipscreen (SPEC §6 item 1).
        let pin_part = (invite && !in_dialog)
            .then(|| {
                msg.request_uri()
                    .and_then(|u| Uri::parse(u).ok())
                    .and_then(|u| u.user)
            })
            .flatten()
            .and_then(|user| self.config.policy.dial_prefix_part(user))
            .map(str::to_owned);
        let (next, recursion) = match screened {
            Screened::Forward(dest, recursion) => {
                let mut bytes = self.forward_bytes(
                    &msg,
                    from,
                    dest.into(),
                    &branch,
                    record_route,
                    max_forwards,
                );
                if let Some(part) = &pin_part {
                    bytes = strip_dial_prefix(&bytes, part);
                }
                (Next::Forward(dest, bytes), recursion)
            }
            Screened::Challenge {
                hop,
                recursion,
                pin,
                user,
            } => {
                let bytes =
                    self.forward_bytes(&msg, from, hop.into(), &branch, record_route, max_forwards);
                let offer = media::sdp::parse_offer(msg.body());
                (
                    Next::Hold {
                        hop,
                        bytes,
                        pin,
                        user,
                        offer,
                    },
                    recursion,
                )
            }
            Screened::Reject(code, reason, extra) => (Next::Reject(code, reason, extra), None),
        };

        // A server transaction from here on.
        let sid = self.id();
        let trying = invite.then(|| build_response(&msg, 100, "Trying", &[]));
        let mut st = ServerTx::new(key.clone(), invite, resp_peer, from.transport, msg, branch);
        st.recursion = recursion;
        st.from = Some(from);
        self.servers.insert(sid, st);
        self.server_index.insert(key, sid);
        self.pending += 1;
        if let Some(trying) = trying {
            self.send_server_response(now, sid, 100, trying);
        }
        match next {
            Next::Forward(dest, bytes) => self.start_client(now, sid, dest.into(), bytes, invite),
            Next::Reject(code, reason, extra) => {
                let resp = self.build_response(sid, code, reason, &extra);
                self.send_server_response(now, sid, code, resp);
            }
            Next::Hold {
                hop,
                bytes,
                pin,
                user,
                offer,
            } => self.hold(now, sid, from, hop, bytes, pin, user, offer),
        }
    }

    /// Holds a challenged call (SPEC §6 item 2): 183 with our SDP answer, the prompt as
    /// early media, digits from RTP and INFO.
    #[allow(clippy::too_many_arguments)]
    fn hold(
        &mut self,
        now: Instant,
        sid: u64,
        from: Peer,
        dest: Target,
        forward: Vec<u8>,
        pin: crate::policy::Pin,
        user: Option<(TenantId, UserId)>,
        offer: Result<media::sdp::Offer, media::sdp::OfferError>,
    ) {
        let offer = match offer {
            Ok(o) => o,
            Err(e) => {
                tracing::info!(error = %e, "PIN prompt impossible: no usable SDP offer");
                let resp = self.build_response(
                    sid,
                    488,
                    "Not Acceptable Here",
                    &[("Warning", format!("304 sipscreen \"{e}\""))],
                );
                self.send_server_response(now, sid, 488, resp);
                return;
            }
        };
        let Some(port) = self.ports.take() else {
            tracing::warn!("no RTP port free for a PIN prompt, 503");
            let resp = self.build_response(sid, 503, "Service Unavailable", &[]);
            self.send_server_response(now, sid, 503, resp);
            return;
        };
        let local = SocketAddr::new(self.local_for(from).addr.ip(), port);
        let id = self.id();
        let Some(st) = self.servers.get(&sid) else {
            return;
        };
        let tag = local_tag(&st.request);
        let ssrc = (loop_hash(&st.request) as u32) ^ (id as u32);
        let session = pin::PinSession::new(
            now,
            sid,
            port,
            local,
            offer,
            tag,
            st.request.call_id(),
            user,
            pin,
            &self.config.pin,
            ssrc,
        );
        let sdp = session.answer();
        let progress = build_response_with_body(
            &st.request,
            183,
            "Session Progress",
            &[],
            "application/sdp",
            sdp.as_bytes(),
        );
        self.schedule(session.deadline(), id, TimerKind::Media);
        self.media.push_back(MediaCommand::Open(local));
        self.held_by_port.insert(port, id);
        self.held_by_server.insert(sid, id);
        self.held.insert(
            id,
            Held {
                session,
                dest,
                forward,
            },
        );
        self.send_server_response(now, sid, 183, progress);
        self.media_tick(now, id);
    }

    /// RTP for a PIN session's port.
    pub fn handle_rtp(&mut self, now: Instant, port: u16, bytes: &[u8]) {
        let Some(&id) = self.held_by_port.get(&port) else {
            return;
        };
        let outcome = self
            .held
            .get_mut(&id)
            .and_then(|h| h.session.on_rtp(now, bytes));
        if let Some(outcome) = outcome {
            self.pin_outcome(now, id, outcome);
        }
    }

    /// The RTP socket of a session could not be opened: the call cannot be prompted (503).
    pub fn handle_rtp_failure(&mut self, now: Instant, port: u16) {
        let Some(&id) = self.held_by_port.get(&port) else {
            return;
        };
        if let Some(h) = self.release(id) {
            let sid = h.session.sid;
            let resp = self.build_response(sid, 503, "Service Unavailable", &[]);
            self.send_server_response(now, sid, 503, resp);
        }
    }

    /// A SIP INFO in a PIN session's early dialog: 200, and its digit.
    fn handle_info(&mut self, now: Instant, id: u64, msg: &Message, resp_peer: Peer) {
        self.reply_stateless(msg, resp_peer, 200, "OK", &[]);
        let ct = msg.header_str(HeaderName::ContentType).unwrap_or("");
        let Some(digit) = media::dtmf::info_digit(ct, msg.body()) else {
            return;
        };
        let outcome = self
            .held
            .get_mut(&id)
            .and_then(|h| h.session.on_digit(now, digit));
        if let Some(outcome) = outcome {
            self.pin_outcome(now, id, outcome);
        }
    }

    /// Sends the prompt frames due and judges a timed-out entry.
    fn media_tick(&mut self, now: Instant, id: u64) {
        let settings = &self.config.pin;
        let Some(h) = self.held.get_mut(&id) else {
            return;
        };
        let remote = Peer {
            transport: Transport::Udp,
            addr: h.session.offer.remote,
        };
        let port = h.session.port;
        let mut packets = Vec::new();
        while let Some(p) = h.session.next_packet(now, settings) {
            packets.push(p);
        }
        let outcome = h.session.on_timeout(now);
        let next = h.session.deadline();
        for bytes in packets {
            self.outbox.push_back(Transmit {
                to: remote,
                bytes,
                from_rtp: Some(port),
            });
        }
        match outcome {
            Some(o) => self.pin_outcome(now, id, o),
            None => self.schedule(next, id, TimerKind::Media),
        }
    }

    fn pin_outcome(&mut self, now: Instant, id: u64, outcome: pin::Outcome) {
        let Some(h) = self.held.get(&id) else { return };
        let (sid, user, call_id) = (h.session.sid, h.session.user, h.session.call_id.clone());
        if outcome != pin::Outcome::Accepted {
            if let Some(user) = user {
                self.pin_failure(now, user, &call_id);
            }
        }
        tracing::info!(call_id = &*call_id, outcome = ?outcome, "PIN entry");
        match outcome {
            pin::Outcome::Retry => self.media_tick(now, id),
            pin::Outcome::Accepted => {
                if let Some(h) = self.release(id) {
                    self.start_client(now, sid, h.dest.into(), h.forward, true);
                }
            }
            pin::Outcome::Rejected => {
                self.release(id);
                let resp = self.build_response(sid, 403, "Forbidden", &self.reason_header());
                self.send_server_response(now, sid, 403, resp);
            }
        }
    }

    /// Ends a PIN session: its port goes back to the pool and its socket is closed.
    fn release(&mut self, id: u64) -> Option<Held> {
        let h = self.held.remove(&id)?;
        self.held_by_port.remove(&h.session.port);
        self.held_by_server.remove(&h.session.sid);
        self.ports.give_back(h.session.port);
        self.media.push_back(MediaCommand::Close(h.session.port));
        Some(h)
    }

    /// Screens an out-of-dialog INVITE (SPEC §4): one decision, one log event.
    fn screen(&mut self, now: Instant, msg: &Message, from: Peer) -> Screened {
        let config = self.config.clone();
        let policy = &config.policy;
        let ruri = msg.request_uri().and_then(|u| Uri::parse(u).ok());
        let from_uri = msg.from().and_then(|f| Uri::parse(f.uri).ok());
        let domains: Vec<&str> = [
            from_uri.as_ref().map(|u| u.host),
            ruri.as_ref().map(|u| u.host),
        ]
        .into_iter()
        .flatten()
        .filter(|h| !h.is_empty())
        .collect();
        let Some(tenant) = policy.tenant_for(&domains, Some(from.addr.ip())) else {
            tracing::info!(call_id = msg.call_id(), source = %from.addr, domains = ?domains, decision = "deny", stage = "tenant", "no tenant for this request");
            return Screened::Reject(403, "Forbidden", self.reason_header());
        };
        let trusted = config.server.is_trusted(from.addr.ip());
        let pai_user = trusted
            .then(|| {
                msg.header_values(HeaderName::PAssertedIdentity)
                    .flat_map(|v| parse_contacts(v).ok().into_iter().flatten())
                    .find_map(|na| uri_user(na.uri))
            })
            .flatten();
        let caller = pai_user
            .or_else(|| from_uri.as_ref().and_then(|u| u.user))
            .unwrap_or("");
        let caller = number::uri_user(caller);
        // Diversion / History-Info change whose rights apply only from a trusted peer
        // (SPEC §4.7): a phone must not borrow its boss's rights.
        let forwarder = forwarding::forwarder(msg);
        if let (Some(f), false) = (&forwarder, trusted) {
            tracing::info!(call_id = msg.call_id(), source = %from.addr, forwarder = f.user, "forwarding headers from an untrusted peer ignored for rights");
        }
        let forwarded_by = forwarder
            .filter(|_| trusted)
            .map(|f| number::uri_user(f.user));
        let dialed = ruri.as_ref().and_then(|u| u.user).unwrap_or("");
        let call = Call {
            tenant,
            caller: &caller,
            dialed,
            forwarded_by: forwarded_by.as_deref(),
        };
        let mut decision = policy.decide(&call);
        let user = decision.identity.map(|u| (decision.tenant, u));
        // SPEC §6 item 3: a locked-out user's challenges are all refused, and a wrong PIN
        // given with the dial prefix counts as a failure.
        if let Some(user) = user {
            let dial_prefix_pin = decision.pin.is_some();
            if (dial_prefix_pin || matches!(decision.verdict, Verdict::Challenge(_)))
                && self.lockout.is_locked(user, now)
            {
                tracing::info!(call_id = msg.call_id(), source = %from.addr, "PIN locked out for this user, challenge refused");
                decision.verdict = Verdict::Deny;
            } else if decision.pin == Some(PinCheck::Rejected) {
                self.pin_failure(now, user, msg.call_id());
            }
        }
        self.log_decision(msg, from, &decision);
        if let Some(list) = self.screenings.as_mut() {
            list.push_back(Screening {
                call_id: msg.call_id().into(),
                at: now,
                source: from,
                decision: decision.clone(),
            });
        }
        // Where the call goes once allowed (for a challenge: once the PIN is right).
        let unlocked = Decision {
            verdict: Verdict::Allow,
            ..decision.clone()
        };
        let Some(hop) = policy.next_hop(&unlocked) else {
            return Screened::Reject(403, "Forbidden", self.reason_header());
        };
        let called = (decision.call == CallKind::Internal)
            .then(|| policy.tenants[tenant].user_by_id(&decision.dialed))
            .flatten()
            .map(|_| decision.dialed.to_string());
        let recursion = called.map(|called| Recursion {
            tenant,
            caller: caller.to_string(),
            called,
            targets: VecDeque::new(),
            active: false,
        });
        match decision.verdict {
            Verdict::Allow => Screened::Forward(hop, recursion),
            Verdict::Deny => Screened::Reject(403, "Forbidden", self.reason_header()),
            Verdict::Challenge(source) => Screened::Challenge {
                hop,
                recursion,
                pin: policy.pin(tenant, source).clone(),
                user,
            },
        }
    }

    /// A wrong PIN for `user`; the start of a lockout is logged once.
    fn pin_failure(&mut self, now: Instant, user: (TenantId, UserId), call_id: &str) {
        if self.lockout.fail(user, now, &self.config.pin.lockout) {
            let t = &self.config.policy.tenants[user.0].spec;
            tracing::warn!(
                call_id,
                tenant = &*t.name,
                user = &*t.users[user.1].name,
                lock_s = self.config.pin.lockout.lock.as_secs(),
                "too many wrong PINs: user locked out"
            );
        }
    }

    fn reason_header(&self) -> Vec<(&'static str, String)> {
        let r = &self.config.server.reject_reason;
        if r.is_empty() {
            Vec::new()
        } else {
            vec![("Reason", r.clone())]
        }
    }

    /// The one structured event of a decision (SPEC §4.8). Rule names go to the log, never
    /// to the caller; nothing is formatted when the event is filtered out.
    fn log_decision(&self, msg: &Message, from: Peer, d: &Decision) {
        if !tracing::enabled!(target: "sipscreen::decision", tracing::Level::INFO) {
            return;
        }
        let policy = &self.config.policy;
        let t = &policy.tenants[d.tenant].spec;
        let (stage, rule) = policy.stage_and_rule(d);
        tracing::info!(
            target: "sipscreen::decision",
            call_id = msg.call_id(),
            source = %from.addr,
            tenant = &*t.name,
            identity = d.identity.map(|u| &*t.users[u].name),
            dialed = &*d.dialed,
            e164 = d.e164.as_deref(),
            call = d.call.as_str(),
            decision = d.verdict.as_str(),
            stage,
            rule,
            next_hop = policy.next_hop(d).map(tracing::field::display),
            "call screened"
        );
    }

    /// The next hop for an out-of-dialog request that is not screened: the tenant's, else the
    /// server's.
    fn default_destination(&self, msg: &Message, from: Peer) -> Target {
        let policy = &self.config.policy;
        fn host(u: Option<&str>) -> Option<&str> {
            u.and_then(|u| Uri::parse(u).ok()).map(|u| u.host)
        }
        let from_uri = msg.from().map(|f| f.uri);
        let domains: Vec<&str> = [host(from_uri), host(msg.request_uri())]
            .into_iter()
            .flatten()
            .collect();
        policy
            .tenant_for(&domains, Some(from.addr.ip()))
            .and_then(|t| policy.tenants[t].spec.next_hop)
            .unwrap_or(policy.default_next_hop)
    }

    /// Where an in-dialog request goes: the first Route that is not ours, else the
    /// Request-URI, else (Request-URI is us) the dialog's next hop or the default one. A host
    /// that is a name rather than an address goes to the default next hop, which does the DNS
    /// (sipscreen does none).
    fn in_dialog_destination(&self, msg: &Message) -> Target {
        let ours = self.our_route_count(msg);
        let next_route = msg
            .header_values(HeaderName::Route)
            .flat_map(|v| parse_contacts(v).ok().into_iter().flatten())
            .nth(ours)
            .map(|na| na.uri);
        let default = self.config.policy.default_next_hop;
        if let Some(uri) = next_route {
            return uri_target(uri).unwrap_or(default);
        }
        if !self.addressed_to_us(msg) {
            return msg.request_uri().and_then(uri_target).unwrap_or(default);
        }
        self.dialogs.get(msg.call_id()).map_or(default, |(t, _)| *t)
    }

    fn remember_dialog(&mut self, now: Instant, call_id: &str, target: Target) {
        while let Some(&(at, _)) = self.dialog_order.front() {
            if now.duration_since(at) < DIALOG_TTL
                && self.dialogs.len() < self.config.limits.max_transactions * 8
            {
                break;
            }
            if let Some((_, id)) = self.dialog_order.pop_front() {
                if self.dialogs.get(&id).is_some_and(|(_, t)| *t == at) {
                    self.dialogs.remove(&id);
                }
            }
        }
        self.dialogs.insert(call_id.into(), (target, now));
        self.dialog_order.push_back((now, call_id.into()));
    }

    /// Whether a URI names one of our listeners.
    fn is_us(&self, uri: &str) -> bool {
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
        self.config
            .server
            .listen
            .iter()
            .any(|l| l.addr.ip() == ip && l.addr.port() == port)
    }

    /// How many Route values at the top are ours (loose routing, §16.4).
    fn our_route_count(&self, msg: &Message) -> usize {
        msg.header_values(HeaderName::Route)
            .flat_map(|v| parse_contacts(v).ok().into_iter().flatten())
            .take_while(|na| self.is_us(na.uri))
            .count()
    }

    /// A request for us: Request-URI names us and no Route is left once ours are taken off.
    fn addressed_to_us(&self, msg: &Message) -> bool {
        let routes = msg
            .header_values(HeaderName::Route)
            .flat_map(|v| parse_contacts(v).ok().into_iter().flatten())
            .count();
        routes == self.our_route_count(msg) && msg.request_uri().is_some_and(|u| self.is_us(u))
    }

    /// Our address towards `to`: the listener of the same transport and family.
    fn local_for(&self, to: Peer) -> Target {
        let listen = &self.config.server.listen;
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
            .unwrap_or(Target {
                transport: to.transport,
                addr: SocketAddr::from(([127, 0, 0, 1], 5060)),
            })
    }

    fn is_loop(&self, msg: &Message, hash: u64) -> bool {
        let mine = format!("{BRANCH_PREFIX}{hash:016x}.");
        msg.vias().flatten().any(|v| {
            v.branch().is_some_and(|b| b.starts_with(&mine))
                && self.config.server.listen.iter().any(|l| {
                    v.host
                        .trim_matches(['[', ']'])
                        .parse::<IpAddr>()
                        .is_ok_and(|ip| ip == l.addr.ip())
                        && v.port.unwrap_or(5060) == l.addr.port()
                })
        })
    }

    /// The forwarded copy of a request (§16.6): our Via on top with a new branch, received and
    /// rport on the previous hop's Via, Max-Forwards decremented (or added), our Route entries
    /// removed, Record-Route added when asked, and an untrusted P-Asserted-Identity removed.
    fn forward_bytes(
        &self,
        msg: &Message,
        from: Peer,
        to: Peer,
        branch: &str,
        record_route: bool,
        max_forwards: Option<u8>,
    ) -> Vec<u8> {
        let local = self.local_for(to);
        let mut s = Splice::default();
        let line_end = msg.start_line().end;
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
        s.insert(line_end, top);
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
        if !self.config.server.is_trusted(from.addr.ip()) {
            for h in msg
                .headers()
                .iter()
                .filter(|h| h.name == HeaderName::PAssertedIdentity)
            {
                s.remove(h.line.clone());
            }
        }
        s.apply(msg.bytes())
    }

    fn start_client(&mut self, now: Instant, sid: u64, to: Peer, bytes: Vec<u8>, invite: bool) {
        let cid = self.id();
        let branch = self
            .servers
            .get(&sid)
            .map(|s| s.branch.clone())
            .unwrap_or_default();
        let mut ct = ClientTx::new(Some(sid), to, bytes.clone(), invite, false, branch.clone());
        for (at, kind) in ct.initial_timers(now) {
            self.schedule(at, cid, kind);
        }
        self.clients.insert(cid, ct);
        self.client_index
            .insert(client_key(&branch, invite, false), cid);
        if let Some(st) = self.servers.get_mut(&sid) {
            st.client = Some(cid);
        }
        self.send(to, bytes);
    }

    fn handle_cancel(&mut self, now: Instant, msg: &Message, resp_peer: Peer) {
        let Some(via) = msg.top_via() else { return };
        let invite_key = server_key(msg, &via, &Method::Invite);
        drop(via);
        let Some(&sid) = self.server_index.get(&invite_key) else {
            self.reply_stateless(msg, resp_peer, 481, "Call/Transaction Does Not Exist", &[]);
            return;
        };
        self.reply_stateless(msg, resp_peer, 200, "OK", &[]);
        let Some(st) = self.servers.get_mut(&sid) else {
            return;
        };
        if st.state != ServerState::Proceeding {
            return;
        }
        // A caller who hangs up is not forwarded anywhere else.
        if let Some(rec) = st.recursion.as_mut() {
            rec.targets.clear();
        }
        match st.client {
            Some(cid) => self.cancel_client(now, cid),
            None => {
                // A caller hanging up during the PIN prompt: the RTP port is freed.
                if let Some(&id) = self.held_by_server.get(&sid) {
                    self.release(id);
                }
                let resp = self.build_response(sid, 487, "Request Terminated", &[]);
                self.send_server_response(now, sid, 487, resp);
            }
        }
    }

    /// Cancels an INVITE client transaction (§16.10): CANCEL now if a provisional response
    /// came, else as soon as one comes.
    fn cancel_client(&mut self, now: Instant, cid: u64) {
        let Some(ct) = self.clients.get_mut(&cid) else {
            return;
        };
        if ct.cancelled
            || !ct.invite
            || !matches!(ct.state, ClientState::Calling | ClientState::Proceeding)
        {
            return;
        }
        ct.cancelled = true;
        if ct.state == ClientState::Proceeding {
            self.send_cancel(now, cid);
        }
    }

    fn send_cancel(&mut self, now: Instant, cid: u64) {
        let Some(ct) = self.clients.get(&cid) else {
            return;
        };
        let Ok(invite) = Message::parse(&ct.request) else {
            return;
        };
        let to = ct.peer;
        let branch = ct.branch.clone();
        let bytes = build_in_transaction_request(&invite, Method::Cancel, None);
        let id = self.id();
        let mut cancel = ClientTx::new(None, to, bytes.clone(), false, true, branch.clone());
        for (at, kind) in cancel.initial_timers(now) {
            self.schedule(at, id, kind);
        }
        self.clients.insert(id, cancel);
        self.client_index
            .insert(client_key(&branch, false, true), id);
        self.send(to, bytes);
    }

    fn handle_response(&mut self, now: Instant, from: Peer, msg: Message) {
        let Some(code) = msg.status() else { return };
        let Some(via) = msg.top_via() else { return };
        let Some(branch) = via
            .branch()
            .filter(|b| b.starts_with(BRANCH_PREFIX))
            .map(str::to_owned)
        else {
            tracing::debug!(source = %from.addr, "response whose top Via is not ours, dropped");
            return;
        };
        drop(via);
        let method = msg.method();
        let key = client_key(&branch, method == Method::Invite, method == Method::Cancel);
        let Some(&cid) = self.client_index.get(&key) else {
            // RFC 6026 §7.3: a response matching no transaction is not forwarded.
            tracing::debug!(source = %from.addr, code, "response for no transaction, dropped");
            return;
        };
        let Some(ct) = self.clients.get_mut(&cid) else {
            return;
        };
        let server = ct.server;
        let actions = ct.on_response(now, code);
        for (at, kind) in actions.timers {
            self.schedule(at, cid, kind);
        }
        if actions.send_ack {
            if let Ok(invite) = Message::parse(&self.clients[&cid].request) {
                let ack = build_in_transaction_request(
                    &invite,
                    Method::Ack,
                    msg.header_str(HeaderName::To),
                );
                let peer = self.clients[&cid].peer;
                self.send(peer, ack);
            }
        }
        if actions.send_cancel {
            self.send_cancel(now, cid);
        }
        if actions.terminated {
            self.remove_client(cid);
        }
        if !actions.forward {
            return;
        }
        let Some(sid) = server else { return };
        if method == Method::Invite && code >= 300 && self.recurse(now, sid, &msg, code) {
            return;
        }
        // §16.7 item 3: with no Via left once ours is removed, the response was meant for us
        // and is not forwarded; the caller still gets a final response of the same class.
        if msg.vias().count() <= 1 {
            tracing::warn!(source = %from.addr, code, "response carrying only our Via, not forwarded");
            if code >= 200 {
                let reason = msg.status_reason().to_owned();
                let resp = self.build_response(sid, code, &reason, &[]);
                self.send_server_response(now, sid, code, resp);
            }
            return;
        }
        let bytes = strip_top_via(&msg);
        self.send_server_response(now, sid, code, bytes);
        if (200..300).contains(&code) && method == Method::Bye {
            self.dialogs.remove(msg.call_id());
        }
    }

    /// A non-2xx final for an INVITE to a user's phone: on a 3xx, check each Contact against
    /// that user's rights and try the allowed ones in q order (§16.5, §16.7 item 4; SPEC §4.7);
    /// on a failure while recursing, try the next one. Returns whether the response was taken
    /// care of here (else it is relayed upstream).
    fn recurse(&mut self, now: Instant, sid: u64, msg: &Message, code: u16) -> bool {
        let Some(st) = self.servers.get(&sid) else {
            return false;
        };
        let Some(rec) = &st.recursion else {
            return false;
        };
        if (300..400).contains(&code) && !rec.active {
            let mut contacts: Vec<(f32, String)> = msg
                .header_values(HeaderName::Contact)
                .flat_map(|v| parse_contacts(v).ok().into_iter().flatten())
                .map(|na| {
                    let q = na
                        .param("q")
                        .flatten()
                        .and_then(|q| q.parse().ok())
                        .unwrap_or(1.0);
                    (q, na.uri.to_owned())
                })
                .collect();
            // Highest q first; equal q keep their order (RFC 3261 §16.6).
            contacts.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal));
            let policy = &self.config.policy;
            let mut targets = VecDeque::new();
            for (_, uri) in contacts {
                let Some(user) = Uri::parse(&uri).ok().and_then(|u| u.user) else {
                    continue;
                };
                let call = Call {
                    tenant: rec.tenant,
                    caller: &rec.caller,
                    dialed: user,
                    forwarded_by: Some(&rec.called),
                };
                let decision = policy.decide(&call);
                self.log_decision(&st.request, st.from.unwrap_or(st.peer), &decision);
                if let Some(hop) = policy.next_hop(&decision) {
                    targets.push_back((hop, uri));
                }
            }
            let Some(rec) = self
                .servers
                .get_mut(&sid)
                .and_then(|s| s.recursion.as_mut())
            else {
                return false;
            };
            rec.active = true;
            rec.targets = targets;
            if rec.targets.is_empty() {
                // Every target is denied to the forwarding user: the caller gets 403.
                let resp = self.build_response(sid, 403, "Forbidden", &self.reason_header());
                self.send_server_response(now, sid, 403, resp);
                return true;
            }
        } else if !rec.active {
            return false;
        }
        // Try the next allowed target, if the caller has not given up.
        let cancelled = self
            .servers
            .get(&sid)
            .is_none_or(|st| st.state != ServerState::Proceeding);
        let next = self
            .servers
            .get_mut(&sid)
            .and_then(|s| s.recursion.as_mut())
            .and_then(|r| r.targets.pop_front());
        let Some((hop, uri)) = next.filter(|_| !cancelled) else {
            return false;
        };
        let id = self.id();
        let st = &self.servers[&sid];
        let (from, request) = (st.from.unwrap_or(st.peer), &st.request);
        let max_forwards = request
            .header_str(HeaderName::MaxForwards)
            .and_then(|v| parse_max_forwards(v).ok());
        let branch = format!("{BRANCH_PREFIX}{:016x}.{id:x}", loop_hash(request));
        let mut bytes = self.forward_bytes(
            request,
            from,
            hop.into(),
            &branch,
            self.config.server.record_route,
            max_forwards,
        );
        if let Some(range) = request.request_uri_range() {
            bytes = splice_request_uri(&bytes, range, &uri);
        }
        if let Some(st) = self.servers.get_mut(&sid) {
            st.branch = branch;
        }
        self.start_client(now, sid, hop.into(), bytes, true);
        true
    }

    /// Sends a response through a server transaction and moves it on (§17.2.1, RFC 6026).
    fn send_server_response(&mut self, now: Instant, sid: u64, code: u16, bytes: Vec<u8>) {
        let Some(st) = self.servers.get_mut(&sid) else {
            return;
        };
        let to = st.peer;
        let was_pending = st.is_pending();
        let timers = st.on_response(now, code, &bytes);
        let terminated = st.state == ServerState::Terminated;
        if was_pending && !st.is_pending() {
            self.pending -= 1;
        }
        for (at, kind) in timers {
            self.schedule(at, sid, kind);
        }
        self.send(to, bytes);
        if terminated {
            self.remove_server(sid);
        }
    }

    fn retransmit_server(&mut self, sid: u64) {
        let Some(st) = self.servers.get(&sid) else {
            return;
        };
        if !st.answers_retransmissions() {
            return;
        }
        if let Some(last) = &st.last_response {
            let (to, bytes) = (st.peer, last.clone());
            self.send(to, bytes);
        }
    }

    fn ack_for_final(&mut self, now: Instant, sid: u64) {
        let Some(st) = self.servers.get_mut(&sid) else {
            return;
        };
        let timers = st.on_ack(now);
        let terminated = st.state == ServerState::Terminated;
        for (at, kind) in timers {
            self.schedule(at, sid, kind);
        }
        if terminated {
            self.remove_server(sid);
        }
    }

    /// Call when a send to `to` failed (connection refused, no route): client transactions
    /// towards it fail as if they had received 503 (RFC 3261 §8.1.3.1).
    pub fn handle_send_error(&mut self, now: Instant, to: Peer) {
        let failed: Vec<u64> = self
            .clients
            .iter()
            .filter(|(_, c)| c.peer == to && c.awaiting_final())
            .map(|(id, _)| *id)
            .collect();
        for cid in failed {
            tracing::warn!(to = %to.addr, "send failed, 503 upstream");
            self.fail_client(now, cid, 503, "Service Unavailable");
        }
    }

    /// Ends a client transaction without a response from downstream and answers upstream.
    fn fail_client(&mut self, now: Instant, cid: u64, code: u16, reason: &str) {
        let Some(ct) = self.clients.get(&cid) else {
            return;
        };
        let server = ct.server;
        self.remove_client(cid);
        if let Some(sid) = server {
            if self.servers.get(&sid).is_some_and(|s| {
                s.state == ServerState::Proceeding || s.state == ServerState::Trying
            }) {
                let resp = self.build_response(sid, code, reason, &[]);
                self.send_server_response(now, sid, code, resp);
            }
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(std::cmp::Reverse((at, id, kind))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            self.fire(now, at, id, kind);
        }
    }

    fn fire(&mut self, now: Instant, at: Instant, id: u64, kind: TimerKind) {
        if kind == TimerKind::Media {
            // Stale entries (an earlier deadline since replaced) only cost a look.
            if self
                .held
                .get(&id)
                .is_some_and(|h| h.session.deadline() <= now)
            {
                self.media_tick(now, id);
            }
            return;
        }
        if kind.is_server() {
            let Some(st) = self.servers.get_mut(&id) else {
                return;
            };
            let (to, mut out) = (st.peer, st.on_timer(now, at, kind));
            self.retransmit_and_rearm(id, to, &mut out);
            if out.terminated {
                self.remove_server(id);
            }
            return;
        }
        let Some(ct) = self.clients.get_mut(&id) else {
            return;
        };
        let (to, mut out) = (ct.peer, ct.on_timer(now, at, kind));
        self.retransmit_and_rearm(id, to, &mut out);
        if out.timed_out {
            // Timer B/F: no final response (§16.7 item 6: 408 upstream).
            self.fail_client(now, id, 408, "Request Timeout");
            return;
        }
        if out.cancel {
            // Timer C with a provisional response: cancel the branch (§16.8).
            if let Some(c) = self.clients.get_mut(&id) {
                c.cancelled = true;
            }
            self.send_cancel(now, id);
        }
        if out.terminated {
            self.remove_client(id);
        }
    }

    /// What any transaction timer may ask for: a retransmission and timers armed again.
    fn retransmit_and_rearm(&mut self, id: u64, to: Peer, out: &mut transaction::TimerOut) {
        if let Some(bytes) = out.retransmit.take() {
            self.send(to, bytes);
        }
        for (t, k) in out.timers.drain(..) {
            self.schedule(t, id, k);
        }
    }

    fn remove_server(&mut self, sid: u64) {
        if let Some(st) = self.servers.remove(&sid) {
            self.server_index.remove(&st.key);
            if st.is_pending() {
                self.pending -= 1;
            }
        }
    }

    fn remove_client(&mut self, cid: u64) {
        if let Some(ct) = self.clients.remove(&cid) {
            let key = client_key(&ct.branch, ct.invite, ct.cancel);
            if self.client_index.get(&key) == Some(&cid) {
                self.client_index.remove(&key);
            }
        }
    }

    /// A response to the request of a server transaction (§8.2.6): Via, From, To (with our
    /// tag when it has none, except for 100), Call-ID and CSeq copied.
    fn build_response(
        &self,
        sid: u64,
        code: u16,
        reason: &str,
        extra: &[(&str, String)],
    ) -> Vec<u8> {
        let Some(st) = self.servers.get(&sid) else {
            return Vec::new();
        };
        let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
        build_response(&st.request, code, reason, &extra)
    }

    /// Answers without keeping a transaction (OPTIONS to us, CANCEL, 4xx on checks).
    fn reply_stateless(
        &mut self,
        msg: &Message,
        to: Peer,
        code: u16,
        reason: &str,
        extra: &[(&str, &str)],
    ) {
        let bytes = build_response(msg, code, reason, extra);
        self.send(to, bytes);
    }
}

/// What happens to a request once it is screened.
enum Next {
    Forward(Target, Vec<u8>),
    Reject(u16, &'static str, Vec<(&'static str, String)>),
    Hold {
        hop: Target,
        bytes: Vec<u8>,
        pin: crate::policy::Pin,
        user: Option<(TenantId, UserId)>,
        offer: Result<media::sdp::Offer, media::sdp::OfferError>,
    },
}

/// What screening made of an INVITE.
enum Screened {
    /// Forward there; with a recursion context when the call goes to a user's phone, whose
    /// own forward (3xx) sipscreen follows with that user's rights (SPEC §4.7).
    Forward(Target, Option<Recursion>),
    /// Hold the call and ask for `pin`; forward to `hop` once it is right.
    Challenge {
        hop: Target,
        recursion: Option<Recursion>,
        pin: crate::policy::Pin,
        user: Option<(TenantId, UserId)>,
    },
    Reject(u16, &'static str, Vec<(&'static str, String)>),
}

fn transport_name(t: Transport) -> &'static str {
    match t {
        Transport::Udp => "UDP",
        Transport::Tcp => "TCP",
    }
}

fn host_port(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => a.to_string(),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}

fn rr_uri(local: Target) -> String {
    match local.transport {
        Transport::Udp => format!("<sip:{};lr>", host_port(local.addr)),
        Transport::Tcp => format!("<sip:{};transport=tcp;lr>", host_port(local.addr)),
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

/// A forwarded request with its Request-URI replaced (`range` is where it was in the
/// original, which the forwarded copy keeps at the same place: edits only come after the
/// start line).
fn splice_request_uri(forwarded: &[u8], range: std::ops::Range<usize>, uri: &str) -> Vec<u8> {
    let mut s = Splice::default();
    s.replace(range, uri.as_bytes());
    s.apply(forwarded)
}

/// Takes a dial-prefix PIN (`**1234*`) off the user part of the Request-URI and of the To
/// URI of a forwarded request, so the PIN reaches no other element.
fn strip_dial_prefix(forwarded: &[u8], part: &str) -> Vec<u8> {
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

/// The response's copy without its top Via value (ours).
fn strip_top_via(msg: &Message) -> Vec<u8> {
    let mut s = Splice::default();
    edit::remove_first_values(msg, HeaderName::Via, 1, &mut s);
    s.apply(msg.bytes())
}

/// The user part of a sip/sips URI, or the number of a tel URI.
fn uri_user(uri: &str) -> Option<&str> {
    Uri::parse(uri).ok().and_then(|u| u.user)
}

/// Where a SIP URI points: its host must be an IP address (sipscreen does no DNS).
fn uri_target(uri: &str) -> Option<Target> {
    let u = Uri::parse(uri).ok()?;
    if u.scheme == Scheme::Tel {
        return None;
    }
    let ip: IpAddr = u.host_unbracketed().parse().ok()?;
    let transport = match u.param("transport") {
        Some(t) if t.eq_ignore_ascii_case("tcp") => Transport::Tcp,
        _ => Transport::Udp,
    };
    Some(Target {
        transport,
        addr: SocketAddr::new(ip, u.port.unwrap_or(5060)),
    })
}

/// Where responses to a request go (RFC 3261 §18.2.2, RFC 3581 §4): over the same
/// connection for TCP; for UDP, to the source address, at the source port when `rport` was
/// asked for, else at the Via's port.
fn response_peer(from: Peer, via: &Via<'_>) -> Peer {
    if from.transport == Transport::Tcp || via.rport().is_some() {
        return from;
    }
    Peer {
        transport: from.transport,
        addr: SocketAddr::new(from.addr.ip(), via.port.unwrap_or(5060)),
    }
}

/// For a request whose Via could not be parsed: answer where it came from.
fn response_peer_raw(from: Peer) -> Peer {
    from
}

/// The server transaction key (§17.2.3): branch, sent-by and method (ACK as INVITE); for a
/// branch without the magic cookie (RFC 2543), the request's identifying fields.
fn server_key(msg: &Message, via: &Via<'_>, method: &Method) -> String {
    let m = match method {
        Method::Ack => "INVITE",
        m => m.as_str(),
    };
    let sent_by = format!(
        "{}:{}",
        via.host.to_ascii_lowercase(),
        via.port.unwrap_or(5060)
    );
    match via.rfc3261_branch() {
        Some(b) => format!("{b}|{sent_by}|{m}"),
        None => {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            msg.request_uri().hash(&mut h);
            msg.call_id().hash(&mut h);
            msg.from().and_then(|f| f.tag()).hash(&mut h);
            msg.cseq().map(|c| c.number).ok().hash(&mut h);
            msg.text(&via.range).hash(&mut h);
            // An ACK for a non-2xx carries the To tag of the response; the INVITE did not.
            if *method != Method::Ack {
                msg.to().and_then(|t| t.tag()).hash(&mut h);
            }
            format!("2543:{:x}|{sent_by}|{m}", h.finish())
        }
    }
}

fn client_key(branch: &str, invite: bool, cancel: bool) -> String {
    let kind = if cancel {
        "C"
    } else if invite {
        "I"
    } else {
        "N"
    };
    format!("{branch}|{kind}")
}

/// The fields that make a request the same when it comes back (§16.3 item 4).
fn loop_hash(msg: &Message) -> u64 {
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

/// A deterministic To tag for our own responses to one request, so that retransmissions
/// carry the same one.
fn local_tag(msg: &Message) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    msg.call_id().hash(&mut h);
    msg.top_via()
        .and_then(|v| v.branch().map(str::to_owned))
        .hash(&mut h);
    msg.cseq().map(|c| c.number).ok().hash(&mut h);
    format!("ss{:x}", h.finish())
}

/// A response to `req` (§8.2.6).
pub fn build_response(req: &Message, code: u16, reason: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    build_response_with_body(req, code, reason, extra, "", b"")
}

/// A response to `req` with a body of `content_type` (none when the body is empty).
fn build_response_with_body(
    req: &Message,
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
                    out.extend_from_slice(format!(";tag={}\r\n", local_tag(req)).as_bytes());
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
fn build_in_transaction_request(invite: &Message, method: Method, to: Option<&str>) -> Vec<u8> {
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

#[cfg(test)]
mod tests;
