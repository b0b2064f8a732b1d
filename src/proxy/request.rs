//! Requests (RFC 3261 §16.3–§16.6): the stateless checks, then CANCEL (§16.10), DTMF by
//! INFO for a PIN prompt, ACK for a 2xx (§16.11), and everything else through a server
//! transaction towards where routing or screening sends it.

use std::time::{Duration, Instant};

use super::reply::{build_response, strip_dial_prefix};
use super::route::{loop_hash, response_peer};
use super::screen::Screened;
use super::table::{ServerId, ServerKey};
use super::transaction::{ServerState, ServerTx};
use super::{Peer, Proxy};
use crate::media;
use crate::policy::{Pin, TenantId, UserId};
use crate::sip::header::parse_max_forwards;
use crate::sip::uri::Uri;
use crate::sip::{HeaderName, Message, Method};

/// What the stateless checks learnt of a request that passed them.
struct Checked {
    key: ServerKey,
    method: Method,
    /// Where responses go (RFC 3581).
    resp_peer: Peer,
    max_forwards: Option<u8>,
    loop_hash: u64,
}

/// What happens to a request once it is screened.
enum Next {
    Forward(Peer, Vec<u8>),
    Reject(u16, &'static str, Vec<(&'static str, String)>),
    Hold {
        hop: Peer,
        bytes: Vec<u8>,
        pin: Pin,
        user: Option<(TenantId, UserId)>,
        offer: Result<media::sdp::Offer, media::sdp::OfferError>,
    },
}

impl Proxy {
    pub(super) fn handle_request(&mut self, now: Instant, from: Peer, msg: Message) {
        let Some(c) = self.check(now, from, &msg) else {
            return;
        };
        // DTMF by SIP INFO in the early dialog of a PIN prompt (SPEC §6).
        let pin_info = (c.method == Method::Info)
            .then(|| self.holds.for_dialog(&msg))
            .flatten();
        match c.method {
            Method::Cancel => self.handle_cancel(now, &msg, c.resp_peer),
            Method::Info if pin_info.is_some() => {
                if let Some(id) = pin_info {
                    self.handle_info(now, id, &msg, c.resp_peer);
                }
            }
            Method::Ack => {
                // ACK for a 2xx, or a stray one: forwarded without a transaction (§16.11).
                let dest = self.in_dialog_destination(&msg);
                let branch = self.new_branch(c.loop_hash);
                let bytes = self.forward_bytes(&msg, from, dest, &branch, false, c.max_forwards);
                self.send(dest, bytes);
            }
            _ => self.handle_stateful(now, from, msg, c),
        }
    }

    /// The checks of §16.3 that need no transaction: retransmissions (answered or absorbed
    /// by their transaction), Proxy-Require, OPTIONS to us, Max-Forwards, loops. `None`
    /// when the request has been dealt with.
    fn check(&mut self, now: Instant, from: Peer, msg: &Message) -> Option<Checked> {
        let via = msg.top_via()?;
        let method = msg.method();
        let key = ServerKey::new(msg, &via, &method);
        let resp_peer = response_peer(from, &via);
        drop(via);

        // Retransmission of a request we have a transaction for (RFC 3261 §17.2.3).
        if let Some(id) = self.tx.find_server(&key) {
            if method == Method::Ack {
                self.ack_for_final(now, id);
            } else {
                self.retransmit_server(id);
            }
            return None;
        }
        // Proxy-Require (RFC 3261 §16.3 item 5).
        if method != Method::Ack {
            let unsupported: Vec<&str> = msg.header_values(HeaderName::ProxyRequire).collect();
            if !unsupported.is_empty() {
                let list = unsupported.join(", ");
                self.reply_stateless(
                    msg,
                    resp_peer,
                    420,
                    "Bad Extension",
                    &[("Unsupported", &list)],
                );
                return None;
            }
        }
        if method == Method::Options && self.addressed_to_us(msg) {
            self.reply_stateless(
                msg,
                resp_peer,
                200,
                "OK",
                &[(
                    "Allow",
                    "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, PRACK",
                )],
            );
            return None;
        }
        // Max-Forwards (§16.3 item 3; RFC 4475 §3.3.11).
        let max_forwards = msg
            .header_str(HeaderName::MaxForwards)
            .and_then(|v| parse_max_forwards(v).ok());
        if max_forwards == Some(0) {
            if method != Method::Ack {
                self.reply_stateless(msg, resp_peer, 483, "Too Many Hops", &[]);
            }
            return None;
        }
        // Loop detection (§16.3 item 4).
        let loop_hash = loop_hash(msg);
        if self.is_loop(msg, loop_hash) {
            if method != Method::Ack {
                self.reply_stateless(msg, resp_peer, 482, "Loop Detected", &[]);
            }
            return None;
        }
        Some(Checked {
            key,
            method,
            resp_peer,
            max_forwards,
            loop_hash,
        })
    }

    /// Whether a request must be refused with 503: a new one while draining, or any at the
    /// transaction limit (requests waiting for their final response: transactions that only
    /// linger to absorb retransmissions, Timers J and L, are not work in flight).
    fn refuse(
        &mut self,
        now: Instant,
        from: Peer,
        msg: &Message,
        c: &Checked,
        in_dialog: bool,
    ) -> bool {
        if !in_dialog && !self.accepting {
            self.reply_stateless(
                msg,
                c.resp_peer,
                503,
                "Service Unavailable",
                &[("Retry-After", "30")],
            );
            return true;
        }
        if self.tx.pending() < self.settings.limits.max_transactions {
            return false;
        }
        let o = &mut self.overload;
        o.refused += 1;
        if o.logged_at
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            tracing::warn!(source = %from.addr, refused = o.refused, "transaction limit reached, 503");
            o.refused = 0;
            o.logged_at = Some(now);
        }
        self.reply_stateless(
            msg,
            c.resp_peer,
            503,
            "Service Unavailable",
            &[("Retry-After", "5")],
        );
        true
    }

    /// A request that gets a server transaction: screened when it is a new INVITE, then
    /// forwarded, rejected or held for a PIN.
    fn handle_stateful(&mut self, now: Instant, from: Peer, msg: Message, c: Checked) {
        let in_dialog = msg.to().and_then(|t| t.tag()).is_some();
        if self.refuse(now, from, &msg, &c, in_dialog) {
            return;
        }

        // Where does it go? Screening reads the request before the transaction keeps it.
        let invite = c.method == Method::Invite;
        let screened = if in_dialog {
            Screened::Forward(self.in_dialog_destination(&msg), None)
        } else if invite {
            let screened = self.screen(now, &msg, from);
            if let Screened::Forward(dest, _) = &screened {
                let cap = self.settings.limits.max_transactions * 8;
                self.dialogs.remember(now, msg.call_id(), *dest, cap);
            }
            screened
        } else {
            Screened::Forward(self.default_destination(&msg, from), None)
        };
        let branch = self.new_branch(c.loop_hash);
        let record_route = invite && !in_dialog && self.settings.server.record_route;
        let (next, recursion) = match screened {
            Screened::Forward(dest, recursion) => {
                let mut bytes =
                    self.forward_bytes(&msg, from, dest, &branch, record_route, c.max_forwards);
                // A PIN given with the dial prefix never leaves sipscreen (SPEC §6 item 1).
                if let Some(part) = (invite && !in_dialog)
                    .then(|| self.dial_prefix_part(&msg))
                    .flatten()
                {
                    bytes = strip_dial_prefix(&bytes, &part);
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
                    self.forward_bytes(&msg, from, hop, &branch, record_route, c.max_forwards);
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
        let trying = invite.then(|| build_response(&msg, 100, "Trying", &[]));
        let mut st = ServerTx::new(c.key, invite, c.resp_peer, from.transport, msg, branch);
        st.recursion = recursion;
        st.from = Some(from);
        let sid = self.tx.insert_server(st);
        if let Some(trying) = trying {
            self.send_server_response(now, sid, 100, trying);
        }
        self.proceed(now, sid, from, next, invite);
    }

    /// Carries out what screening said for the request of `sid`.
    fn proceed(&mut self, now: Instant, sid: ServerId, from: Peer, next: Next, invite: bool) {
        match next {
            Next::Forward(dest, bytes) => self.start_client(now, sid, dest, bytes, invite),
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

    /// The `<prefix><pin>*` at the start of the Request-URI's user part, if any.
    fn dial_prefix_part(&self, msg: &Message) -> Option<String> {
        let user = msg
            .request_uri()
            .and_then(|u| Uri::parse(u).ok())
            .and_then(|u| u.user)?;
        self.policy.dial_prefix_part(user).map(str::to_owned)
    }

    pub(super) fn handle_cancel(&mut self, now: Instant, msg: &Message, resp_peer: Peer) {
        let Some(via) = msg.top_via() else { return };
        let invite_key = ServerKey::new(msg, &via, &Method::Invite);
        drop(via);
        let Some(sid) = self.tx.find_server(&invite_key) else {
            self.reply_stateless(msg, resp_peer, 481, "Call/Transaction Does Not Exist", &[]);
            return;
        };
        self.reply_stateless(msg, resp_peer, 200, "OK", &[]);
        let Some(st) = self.tx.server_mut(sid) else {
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
                if let Some(id) = self.holds.for_server(sid) {
                    self.release(id);
                }
                let resp = self.build_response(sid, 487, "Request Terminated", &[]);
                self.send_server_response(now, sid, 487, resp);
            }
        }
    }
}
