//! Calls held for a PIN (SPEC §6 item 2): the 183 with our SDP answer, the prompt sent as
//! early media, digits from RFC 4733 events and SIP INFO fed to the [`pin::PinSession`], and
//! what its outcome does to the held INVITE: forward it, prompt again, or 403.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use super::pin;
use super::reply::{build_response_with_body, local_tag};
use super::route::loop_hash;
use super::table::{SessionId, TimerId};
use super::{MediaCommand, Peer, Proxy, ServerId, Transport};
use crate::media;
use crate::policy::{Pin, TenantId, UserId};
use crate::sip::{HeaderName, Message};

/// A call held while its caller enters a PIN, and where it goes once the PIN is right.
#[derive(Debug)]
pub(super) struct Held {
    session: pin::PinSession,
    dest: Peer,
    forward: Vec<u8>,
}

/// The PIN sessions and the ways to find them, the per-user lockout, the RTP port pool,
/// and the RTP sockets the I/O layer is asked to open or close.
pub(super) struct Holds {
    sessions: HashMap<SessionId, Held>,
    by_port: HashMap<u16, SessionId>,
    by_server: HashMap<ServerId, SessionId>,
    /// INFO digits are looked up by Call-ID (then the To tag is checked).
    by_call: HashMap<Box<str>, SessionId>,
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
            lockout: pin::Lockout::default(),
            ports: pin::Ports::new(rtp_ports),
            media: VecDeque::new(),
        }
    }

    /// The session whose early dialog an in-dialog request belongs to.
    pub(super) fn for_dialog(&self, msg: &Message) -> Option<SessionId> {
        let id = *self.by_call.get(msg.call_id())?;
        let tag = msg.to().and_then(|t| t.tag())?;
        (self.sessions.get(&id)?.session.tag == tag).then_some(id)
    }

    /// The session holding the INVITE of a server transaction.
    pub(super) fn for_server(&self, sid: ServerId) -> Option<SessionId> {
        self.by_server.get(&sid).copied()
    }

    /// Whether a session is still waiting for its PIN at `now` (stale timers are skipped).
    pub(super) fn due(&self, id: SessionId, now: Instant) -> bool {
        self.sessions
            .get(&id)
            .is_some_and(|h| h.session.deadline() <= now)
    }
}

impl Proxy {
    /// Holds a challenged call (SPEC §6 item 2): 183 with our SDP answer, the prompt as
    /// early media, digits from RTP and INFO.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn hold(
        &mut self,
        now: Instant,
        sid: ServerId,
        from: Peer,
        dest: Peer,
        forward: Vec<u8>,
        pin: Pin,
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
        let Some(port) = self.holds.ports.take() else {
            tracing::warn!("no RTP port free for a PIN prompt, 503");
            let resp = self.build_response(sid, 503, "Service Unavailable", &[]);
            self.send_server_response(now, sid, 503, resp);
            return;
        };
        let local = SocketAddr::new(self.local_for(from).addr.ip(), port);
        let id = self.tx.session_id();
        let Some(st) = self.tx.server(sid) else {
            return;
        };
        let tag = local_tag(&st.request);
        let ssrc = (loop_hash(&st.request) as u32) ^ u32::from(port);
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
            &self.settings.pin,
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
        self.tx.schedule(session.deadline(), TimerId::Media(id));
        let holds = &mut self.holds;
        holds.media.push_back(MediaCommand::Open(local));
        holds.by_port.insert(port, id);
        holds.by_server.insert(sid, id);
        holds.by_call.insert(session.call_id.clone(), id);
        holds.sessions.insert(
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
        let Some(&id) = self.holds.by_port.get(&port) else {
            return;
        };
        let outcome = self
            .holds
            .sessions
            .get_mut(&id)
            .and_then(|h| h.session.on_rtp(now, bytes));
        if let Some(outcome) = outcome {
            self.pin_outcome(now, id, outcome);
        }
    }

    /// The RTP socket of a session could not be opened: the call cannot be prompted (503).
    pub fn handle_rtp_failure(&mut self, now: Instant, port: u16) {
        let Some(&id) = self.holds.by_port.get(&port) else {
            return;
        };
        if let Some(h) = self.release(id) {
            let sid = h.session.sid;
            let resp = self.build_response(sid, 503, "Service Unavailable", &[]);
            self.send_server_response(now, sid, 503, resp);
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
        if let Some(outcome) = outcome {
            self.pin_outcome(now, id, outcome);
        }
    }

    /// Sends the prompt frames due and judges a timed-out entry.
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
        let next = h.session.deadline();
        for bytes in packets {
            self.send_from(local, remote, bytes);
        }
        match outcome {
            Some(o) => self.pin_outcome(now, id, o),
            None => self.tx.schedule(next, TimerId::Media(id)),
        }
    }

    fn pin_outcome(&mut self, now: Instant, id: SessionId, outcome: pin::Outcome) {
        let Some(h) = self.holds.sessions.get(&id) else {
            return;
        };
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
                    self.start_client(now, sid, h.dest, h.forward, true);
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
    pub(super) fn release(&mut self, id: SessionId) -> Option<Held> {
        let holds = &mut self.holds;
        let h = holds.sessions.remove(&id)?;
        holds.by_port.remove(&h.session.port);
        holds.by_server.remove(&h.session.sid);
        if holds.by_call.get(&h.session.call_id) == Some(&id) {
            holds.by_call.remove(&h.session.call_id);
        }
        holds.ports.give_back(h.session.port);
        holds.media.push_back(MediaCommand::Close(h.session.port));
        Some(h)
    }
}
