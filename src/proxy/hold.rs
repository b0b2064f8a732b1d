//! Calls held for a PIN (SPEC §6 item 2): the 183 with our SDP answer, the prompt sent as
//! early media, digits from RFC 4733 events and SIP INFO fed to the [`pin::PinSession`], and
//! what its outcome does to the held INVITE: forward it, prompt again, or 403.
//!
//! Only the caller can type (§6 item 5): RTP is taken from the caller's addresses only, INFO
//! only within the PIN's early dialog and from the INVITE's source. The prompt goes to the
//! offer's address only when the INVITE came from a trusted peer or a tenant source, else
//! to the INVITE's source address, so one INVITE cannot aim the prompt at a third party.
//! A user has at most [`PROMPTS_PER_USER`] prompts at a time (§6 item 7).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use super::pin;
use super::reply::build_response_with_body;
use super::route::loop_hash;
use super::screen::Challenge;
use super::table::{SessionId, TimerId};
use super::{MediaCommand, Peer, Proxy, ServerId, Transport};
use crate::media;
use crate::metrics::PinOutcome;
use crate::policy::{TenantId, UserId};
use crate::sip::{HeaderName, Message};

/// PIN prompts one user may have at a time.
pub const PROMPTS_PER_USER: usize = 2;

/// A call held while its caller enters a PIN, and where it goes once the PIN is right.
#[derive(Debug)]
pub(super) struct Held {
    session: pin::PinSession,
    dest: Peer,
    forward: Vec<u8>,
    /// The earliest timer armed for the session: a new deadline before it arms another.
    armed: Option<Instant>,
}

/// The PIN sessions and the ways to find them, the lockout, the RTP port pool, and the RTP
/// sockets the I/O layer is asked to open or close.
pub(super) struct Holds {
    sessions: HashMap<SessionId, Held>,
    by_port: HashMap<u16, SessionId>,
    by_server: HashMap<ServerId, SessionId>,
    /// INFO digits are looked up by Call-ID (then the To tag and source are checked).
    by_call: HashMap<Box<str>, SessionId>,
    per_user: HashMap<(TenantId, UserId), usize>,
    pub(super) lockout: pin::Lockout,
    ports: pin::Ports,
    pub(super) media: VecDeque<MediaCommand>,
}

impl Holds {
    pub(super) fn new(rtp_ports: (u16, u16)) -> Self {
        Self {
            sessions: HashMap::new(),
            by_port: HashMap::new(),
            by_server: HashMap::new(),
            by_call: HashMap::new(),
            per_user: HashMap::new(),
            lockout: pin::Lockout::default(),
            ports: pin::Ports::new(rtp_ports),
            media: VecDeque::new(),
        }
    }

    /// The session whose early dialog an INFO from `source` belongs to: same Call-ID, our
    /// To tag, and sent from the held INVITE's source address.
    pub(super) fn for_dialog(&self, msg: &Message, source: IpAddr) -> Option<SessionId> {
        let id = *self.by_call.get(msg.call_id())?;
        let tag = msg.to().and_then(|t| t.tag())?;
        let s = &self.sessions.get(&id)?.session;
        (s.tag == tag && s.callers[1] == source).then_some(id)
    }

    /// A new range of RTP ports (a reload): the ports of sessions in progress are not
    /// handed out again until those sessions end.
    pub(super) fn set_ports(&mut self, range: (u16, u16)) {
        let mut ports = pin::Ports::new(range);
        ports.retain(|p| !self.by_port.contains_key(&p));
        self.ports = ports;
    }

    /// The session holding the INVITE of a server transaction.
    pub(super) fn for_server(&self, sid: ServerId) -> Option<SessionId> {
        self.by_server.get(&sid).copied()
    }
}

impl Proxy {
    /// Holds a challenged call (SPEC §6 item 2): 183 with our SDP answer, the prompt as
    /// early media, digits from RTP and INFO. `network` says whether the INVITE came from a
    /// trusted peer or a tenant source (whose SDP is believed as sent).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn hold(
        &mut self,
        now: Instant,
        sid: ServerId,
        from: Peer,
        forward: Vec<u8>,
        challenge: Challenge,
        offer: Result<media::sdp::Offer, media::sdp::OfferError>,
        network: bool,
    ) {
        let mut offer = match offer {
            Ok(o) => o,
            Err(e) => {
                tracing::info!(error = %e, "PIN prompt impossible: no usable SDP offer");
                self.respond(
                    now,
                    sid,
                    488,
                    "Not Acceptable Here",
                    &[("Warning", format!("304 sipscreen \"{e}\""))],
                );
                return;
            }
        };
        if !network {
            offer.remote = SocketAddr::new(from.addr.ip(), offer.remote.port());
        }
        if let Some(user) = challenge.user {
            if self.holds.per_user.get(&user).copied().unwrap_or(0) >= PROMPTS_PER_USER {
                tracing::info!(source = %from.addr, "PIN prompts of this user already in progress, refused");
                self.respond(now, sid, 403, "Forbidden", &self.reason_header());
                return;
            }
        }
        let random = self.settings.secret.next("rtp-port");
        let Some(port) = self.holds.ports.take(random) else {
            tracing::warn!("no RTP port free for a PIN prompt, 503");
            self.respond(now, sid, 503, "Service Unavailable", &[]);
            return;
        };
        let local = SocketAddr::new(self.local_for(from).addr.ip(), port);
        let id = self.tx.session_id();
        let Some(request) = self
            .tx
            .server(sid)
            .and_then(|s| s.unanswered())
            .map(|u| &u.request)
        else {
            self.holds.ports.give_back(port);
            return;
        };
        let tag = self.local_tag(request);
        let ssrc = (loop_hash(request) as u32) ^ u32::from(port);
        let session = pin::PinSession::new(
            now,
            sid,
            port,
            local,
            offer,
            tag.clone(),
            request.call_id(),
            challenge.user,
            challenge.subjects,
            from.addr.ip(),
            challenge.pin,
            &self.settings.pin,
            ssrc,
        );
        let sdp = session.answer();
        let progress = build_response_with_body(
            request,
            &tag,
            183,
            "Session Progress",
            &[],
            "application/sdp",
            sdp.as_bytes(),
        );
        let holds = &mut self.holds;
        holds.media.push_back(MediaCommand::Open(local));
        holds.by_port.insert(port, id);
        holds.by_server.insert(sid, id);
        holds.by_call.insert(session.call_id.clone(), id);
        if let Some(user) = challenge.user {
            *holds.per_user.entry(user).or_default() += 1;
        }
        holds.sessions.insert(
            id,
            Held {
                session,
                dest: challenge.hop.first,
                forward,
                armed: None,
            },
        );
        self.send_server_response(now, sid, 183, progress);
        self.media_tick(now, id);
    }

    /// RTP that arrived on a PIN session's port from `from`.
    pub fn handle_rtp(&mut self, now: Instant, port: u16, from: SocketAddr, bytes: &[u8]) {
        let Some(&id) = self.holds.by_port.get(&port) else {
            return;
        };
        let outcome = self
            .holds
            .sessions
            .get_mut(&id)
            .and_then(|h| h.session.on_rtp(now, from, bytes));
        self.after_input(now, id, outcome);
    }

    /// The RTP socket of a session could not be opened: the call cannot be prompted (503).
    pub fn handle_rtp_failure(&mut self, now: Instant, port: u16) {
        let Some(&id) = self.holds.by_port.get(&port) else {
            return;
        };
        if let Some(h) = self.release(id) {
            let sid = h.session.sid;
            self.respond(now, sid, 503, "Service Unavailable", &[]);
        }
    }

    /// A SIP INFO in a PIN session's early dialog: 200, and its digit.
    pub(super) fn handle_info(
        &mut self,
        now: Instant,
        id: SessionId,
        msg: &Message,
        resp_peer: Peer,
    ) {
        self.reply_stateless(msg, resp_peer, 200, "OK", &[]);
        let ct = msg.header_str(HeaderName::ContentType).unwrap_or("");
        let Some(digit) = media::dtmf::info_digit(ct, msg.body()) else {
            return;
        };
        let outcome = self
            .holds
            .sessions
            .get_mut(&id)
            .and_then(|h| h.session.on_digit(now, digit));
        self.after_input(now, id, outcome);
    }

    /// After a digit (or a packet that was not one): the outcome if the entry ended, else
    /// the timers for the deadline it may have moved.
    fn after_input(&mut self, now: Instant, id: SessionId, outcome: Option<pin::Outcome>) {
        match outcome {
            Some(o) => self.pin_outcome(now, id, o),
            None => self.arm(id),
        }
    }

    /// Makes sure a timer fires at the session's deadline (SPEC §6 item 6: timeouts always
    /// fire on time, whatever digits came): one is armed when the deadline comes before the
    /// earliest one already armed.
    fn arm(&mut self, id: SessionId) {
        let Some(h) = self.holds.sessions.get_mut(&id) else {
            return;
        };
        let deadline = h.session.deadline();
        if h.armed.is_none_or(|a| deadline < a) {
            h.armed = Some(deadline);
            self.tx.schedule(deadline, TimerId::Media(id));
        }
    }

    /// A session's timer came due at `at`.
    pub(super) fn media_timer(&mut self, now: Instant, at: Instant, id: SessionId) {
        let Some(h) = self.holds.sessions.get_mut(&id) else {
            return;
        };
        if h.armed == Some(at) {
            h.armed = None;
        }
        self.media_tick(now, id);
    }

    /// Sends the prompt frames due, judges a timed-out entry, and arms the next timer.
    pub(super) fn media_tick(&mut self, now: Instant, id: SessionId) {
        let settings = &self.settings.pin;
        let Some(h) = self.holds.sessions.get_mut(&id) else {
            return;
        };
        let remote = Peer {
            transport: Transport::Udp,
            addr: h.session.offer.remote,
        };
        let local = h.session.local;
        let mut packets = Vec::new();
        while let Some(p) = h.session.next_packet(now, settings) {
            packets.push(p);
        }
        let outcome = h.session.on_timeout(now);
        for bytes in packets {
            self.send_from(local, remote, bytes);
        }
        self.after_input(now, id, outcome);
    }

    fn pin_outcome(&mut self, now: Instant, id: SessionId, outcome: pin::Outcome) {
        let Some(h) = self.holds.sessions.get(&id) else {
            return;
        };
        let (sid, call_id) = (h.session.sid, h.session.call_id.clone());
        if outcome != pin::Outcome::Accepted {
            let subjects = h.session.subjects.clone();
            self.pin_failure(now, &subjects, &call_id);
        }
        tracing::info!(call_id = &*call_id, outcome = ?outcome, "PIN entry");
        match outcome {
            pin::Outcome::Accepted => self.metrics.pin(PinOutcome::Accepted),
            pin::Outcome::Rejected => self.metrics.pin(PinOutcome::Rejected),
            pin::Outcome::Retry => {}
        }
        match outcome {
            pin::Outcome::Retry => self.media_tick(now, id),
            pin::Outcome::Accepted => {
                if let Some(h) = self.release(id) {
                    self.start_client(now, sid, h.dest, h.forward, true);
                }
            }
            pin::Outcome::Rejected => {
                self.release(id);
                self.respond(now, sid, 403, "Forbidden", &self.reason_header());
            }
        }
    }

    /// Ends a PIN session: its port goes back to the pool and its socket is closed.
    pub(super) fn release(&mut self, id: SessionId) -> Option<Held> {
        let holds = &mut self.holds;
        let h = holds.sessions.remove(&id)?;
        holds.by_port.remove(&h.session.port);
        holds.by_server.remove(&h.session.sid);
        if holds.by_call.get(&h.session.call_id) == Some(&id) {
            holds.by_call.remove(&h.session.call_id);
        }
        if let Some(user) = h.session.user {
            if let Some(n) = holds.per_user.get_mut(&user) {
                *n -= 1;
                if *n == 0 {
                    holds.per_user.remove(&user);
                }
            }
        }
        if h.session.foreign_rtp > 0 {
            tracing::info!(
                call_id = &*h.session.call_id,
                dropped = h.session.foreign_rtp,
                "RTP from other addresses than the caller's dropped"
            );
        }
        holds.ports.give_back(h.session.port);
        holds.media.push_back(MediaCommand::Close(h.session.port));
        Some(h)
    }
}
