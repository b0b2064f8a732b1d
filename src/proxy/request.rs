//! Requests (RFC 3261 §16.3–§16.6): the stateless checks, then CANCEL (§16.10), DTMF by
//! INFO for a PIN prompt, in-dialog requests and ACK bound to the dialogs sipscreen
//! admitted (SPEC §5.1), and new requests through admission (SPEC §4.1), screening and a
//! server transaction.

use std::time::Instant;

use super::admit::{Admission, Admitted};
use super::reply::{build_response, strip_credentials, strip_dial_prefix};
use super::route::{loop_hash, response_peer};
use super::screen::{Challenge, Screened, Targets};
use super::table::{ServerId, ServerKey};
use super::transaction::{ServerState, ServerTx};
use super::{Peer, Proxy};
use crate::media;
use crate::metrics::Refusal;
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
        bytes: Vec<u8>,
        challenge: Box<Challenge>,
        offer: Result<media::sdp::Offer, media::sdp::OfferError>,
    },
}

/// Where an in-dialog request goes, and whether it belongs to a dialog sipscreen knows.
enum InDialog {
    /// Along its dialog.
    Dialog(Peer),
    /// From a trusted peer or tenant source, for a dialog sipscreen does not know (after a
    /// restart, say): routed as it asks.
    Network(Peer),
    /// From anyone else, for no dialog sipscreen admitted: 481 (an ACK is dropped).
    Stranger,
    /// For the default next hop, which has no target (its names do not resolve yet): 503
    /// (an ACK is dropped).
    Unreachable,
}

impl Proxy {
    pub(super) fn handle_request(&mut self, now: Instant, from: Peer, msg: Message) {
        let Some(c) = self.check(now, from, &msg) else {
            return;
        };
        // DTMF by SIP INFO in the early dialog of a PIN prompt (SPEC §6), from the caller.
        let pin_info = (c.method == Method::Info)
            .then(|| self.holds.for_dialog(&msg, from.addr.ip()))
            .flatten();
        match c.method {
            Method::Cancel => self.handle_cancel(now, &msg, c.resp_peer),
            Method::Info if pin_info.is_some() => {
                if let Some(id) = pin_info {
                    self.handle_info(now, id, &msg, c.resp_peer);
                }
            }
            Method::Ack => {
                // The ACK for a response sipscreen wrote itself without a transaction (403 at
                // admission, 503 when overloaded...) carries our To tag: it ends here.
                if msg.to().and_then(|t| t.tag()) == Some(self.local_tag(&msg).as_str()) {
                    return;
                }
                // ACK for a 2xx: forwarded without a transaction (§16.11), only within a
                // dialog; a stray one is dropped, never relayed (SPEC §5.1).
                let dest = match self.in_dialog(now, from, &msg) {
                    InDialog::Dialog(dest) | InDialog::Network(dest) => dest,
                    InDialog::Stranger => {
                        self.warn_refused(
                            now,
                            from,
                            &msg,
                            "ACK for no dialog, dropped",
                            Refusal::UnknownDialog,
                        );
                        return;
                    }
                    InDialog::Unreachable => return,
                };
                let branch = self.new_branch(c.loop_hash);
                let bytes = self.forward_bytes(&msg, from, dest, &branch, false, c.max_forwards);
                self.send(dest, bytes);
            }
            _ if msg.to().and_then(|t| t.tag()).is_some() => {
                match self.in_dialog(now, from, &msg) {
                    // A call in flight is never refused to make room (SPEC §7): its requests
                    // pass the transaction limit; requests for dialogs sipscreen does not
                    // know do not.
                    InDialog::Dialog(dest) => self.forward_in_dialog(now, from, msg, c, dest),
                    InDialog::Network(dest) => {
                        if !self.overloaded(now, from, &msg, &c) {
                            self.forward_in_dialog(now, from, msg, c, dest);
                        }
                    }
                    InDialog::Stranger => {
                        self.warn_refused(
                            now,
                            from,
                            &msg,
                            "in-dialog request for no dialog",
                            Refusal::UnknownDialog,
                        );
                        self.reply_stateless(
                            &msg,
                            c.resp_peer,
                            481,
                            "Call/Transaction Does Not Exist",
                            &[],
                        );
                    }
                    InDialog::Unreachable => {
                        self.reply_stateless(&msg, c.resp_peer, 503, "Service Unavailable", &[]);
                    }
                }
            }
            _ => self.handle_new(now, from, msg, c),
        }
    }

    /// Where an in-dialog request goes (SPEC §5.1); a request of a known dialog refreshes
    /// it.
    fn in_dialog(&mut self, now: Instant, from: Peer, msg: &Message) -> InDialog {
        if let Some((id, direction)) = self.dialogs.find(msg) {
            if let Some(d) = self.dialogs.get_mut(id) {
                d.last_request = now;
                return InDialog::Dialog(d.destination(direction));
            }
        }
        if self.is_network(from.addr.ip()) {
            match self.in_dialog_destination(msg) {
                Some(dest) => InDialog::Network(dest),
                None => InDialog::Unreachable,
            }
        } else {
            InDialog::Stranger
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

        // Method names are case-sensitive (RFC 3261 §7.1), but some PBXs read `invite`, or
        // even `INV`, as INVITE: such a name would go through unscreened. Refused.
        if let Method::Other(name) = &method {
            if let Some(known) = lookalike(name) {
                self.refused(Refusal::Malformed);
                if let Some(count) = self.malformed.hit(now) {
                    tracing::warn!(source = %from.addr, method = &**name, known, count, "method name a PBX may read as another, 400");
                }
                let warning = format!("399 sipscreen \"method name {name} is not {known}\"");
                self.reply_stateless(msg, resp_peer, 400, "Bad Request", &[("Warning", &warning)]);
                return None;
            }
        }
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
            self.refused(Refusal::Loop);
            if method != Method::Ack {
                self.reply_stateless(msg, resp_peer, 483, "Too Many Hops", &[]);
            }
            return None;
        }
        // Loop detection (§16.3 item 4).
        let loop_hash = loop_hash(msg);
        if self.is_loop(msg, loop_hash) {
            self.refused(Refusal::Loop);
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

    /// A request that starts something (out of dialog): refused while draining or at the
    /// limits, then admitted (or answered 403/407), then screened (an INVITE) or sent to its
    /// tenant's next hop.
    fn handle_new(&mut self, now: Instant, from: Peer, msg: Message, c: Checked) {
        if !self.accepting {
            self.refused(Refusal::Overload);
            self.reply_stateless(
                &msg,
                c.resp_peer,
                503,
                "Service Unavailable",
                &[("Retry-After", "30")],
            );
            return;
        }
        if self.overloaded(now, from, &msg, &c) {
            return;
        }
        let admitted = match self.admit(now, from, &msg) {
            Admission::Admitted(a) => a,
            refused => {
                self.refuse_admission(now, from, &msg, c.resp_peer, refused);
                return;
            }
        };
        if c.method != Method::Invite {
            let screened = match self.tenant_destination(now, admitted.tenant) {
                Some(dest) => Screened::Forward(dest, None),
                None => Screened::Reject(503, "Service Unavailable", Vec::new()),
            };
            return self.forward_new(now, from, msg, c, screened, &admitted);
        }
        if self.dialogs.len() >= self.settings.limits.max_dialogs {
            self.refused(Refusal::Overload);
            if let Some(refused) = self.overload.hit(now) {
                tracing::warn!(source = %from.addr, refused, "dialog limit reached, 503");
            }
            self.reply_stateless(
                &msg,
                c.resp_peer,
                503,
                "Service Unavailable",
                &[("Retry-After", "5")],
            );
            return;
        }
        let screened = self.screen(now, &msg, from, &admitted);
        self.forward_new(now, from, msg, c, screened, &admitted);
    }

    /// At the transaction limit (requests waiting for their final response: transactions
    /// that only linger to absorb retransmissions, Timers J and L, are not work in flight),
    /// a request gets 503.
    fn overloaded(&mut self, now: Instant, from: Peer, msg: &Message, c: &Checked) -> bool {
        if self.tx.pending() < self.settings.limits.max_transactions {
            return false;
        }
        self.refused(Refusal::Overload);
        if let Some(refused) = self.overload.hit(now) {
            tracing::warn!(source = %from.addr, refused, "transaction limit reached, 503");
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

    /// A new request, admitted and screened: the forwarded copy loses what must not leave
    /// sipscreen (our digest credentials, a dial-prefix PIN), and its transaction remembers
    /// the caller so that the dialog it makes is bound to both ends.
    fn forward_new(
        &mut self,
        now: Instant,
        from: Peer,
        msg: Message,
        c: Checked,
        screened: Screened,
        admitted: &Admitted,
    ) {
        let invite = c.method == Method::Invite;
        let realm = matches!(admitted.voucher, super::admit::Voucher::Digest(_))
            .then(|| self.settings.auth.tenants.get(admitted.tenant))
            .flatten()
            .map(|r| r.realm.clone());
        let pin_part = invite.then(|| self.dial_prefix_part(&msg)).flatten();
        let record_route = invite && self.settings.server.record_route;
        let network = admitted.is_network();
        let sid = self.forward_with(
            now,
            from,
            msg,
            c,
            screened,
            record_route,
            |bytes| {
                let mut bytes = bytes;
                if let Some(realm) = &realm {
                    bytes = strip_credentials(&bytes, realm);
                }
                // A PIN given with the dial prefix never leaves sipscreen (SPEC §6 item 1).
                if let Some(part) = &pin_part {
                    bytes = strip_dial_prefix(&bytes, part);
                }
                bytes
            },
            network,
        );
        if let (Some(sid), true) = (sid, invite) {
            if let Some(st) = self.tx.server_mut(sid) {
                st.dialog_caller = Some(from);
            }
        }
    }

    /// An in-dialog request along its dialog (never screened, SPEC §4).
    fn forward_in_dialog(
        &mut self,
        now: Instant,
        from: Peer,
        msg: Message,
        c: Checked,
        dest: Peer,
    ) {
        let screened = Screened::Forward(Targets::one(dest), None);
        self.forward_with(now, from, msg, c, screened, false, |b| b, true);
    }

    /// The server transaction of a request and what screening said: forward (the copy
    /// edited by `edit`), reject, or hold for a PIN.
    #[allow(clippy::too_many_arguments)]
    fn forward_with(
        &mut self,
        now: Instant,
        from: Peer,
        msg: Message,
        c: Checked,
        screened: Screened,
        record_route: bool,
        edit: impl Fn(Vec<u8>) -> Vec<u8>,
        network: bool,
    ) -> Option<ServerId> {
        let invite = c.method == Method::Invite;
        let branch = self.new_branch(c.loop_hash);
        let mut rest = Vec::new();
        let (next, recursion) = match screened {
            Screened::Forward(dest, recursion) => {
                rest = dest.rest;
                let dest = dest.first;
                let bytes =
                    self.forward_bytes(&msg, from, dest, &branch, record_route, c.max_forwards);
                (Next::Forward(dest, edit(bytes)), recursion)
            }
            Screened::Challenge(mut challenge) => {
                let recursion = challenge.recursion.take();
                rest = std::mem::take(&mut challenge.hop.rest);
                let bytes = self.forward_bytes(
                    &msg,
                    from,
                    challenge.hop.first,
                    &branch,
                    record_route,
                    c.max_forwards,
                );
                let offer = media::sdp::parse_offer(msg.body());
                (
                    Next::Hold {
                        bytes: edit(bytes),
                        challenge: Box::new(challenge),
                        offer,
                    },
                    recursion,
                )
            }
            Screened::Reject(code, reason, extra) => (Next::Reject(code, reason, extra), None),
        };
        let trying = invite.then(|| build_response(&msg, "", 100, "Trying", &[]));
        let mut st = ServerTx::new(c.key, invite, c.resp_peer, from, msg, branch);
        if let Some(u) = st.unanswered_mut() {
            u.recursion = recursion;
        }
        let sid = self.tx.insert_server(st);
        self.plan_failover(sid, rest, record_route);
        if let Some(trying) = trying {
            self.send_server_response(now, sid, 100, trying);
        }
        match next {
            Next::Forward(dest, bytes) => self.start_client(now, sid, dest, bytes, invite),
            Next::Reject(code, reason, extra) => {
                self.respond(now, sid, code, reason, &extra);
            }
            Next::Hold {
                bytes,
                challenge,
                offer,
            } => self.hold(now, sid, from, bytes, *challenge, offer, network),
        }
        Some(sid)
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
            self.refused(Refusal::UnknownDialog);
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
        let Some(u) = st.unanswered_mut() else {
            return;
        };
        u.cancelled = true;
        // A caller who hangs up is not forwarded anywhere else.
        if let Some(rec) = u.recursion.as_mut() {
            rec.targets.clear();
        }
        match u.client {
            Some(cid) => self.cancel_client(now, cid),
            None => {
                // A caller hanging up during the PIN prompt: the RTP port is freed.
                if let Some(id) = self.holds.for_server(sid) {
                    self.metrics.pin(crate::metrics::PinOutcome::Abandoned);
                    self.release(id);
                }
                self.respond(now, sid, 487, "Request Terminated", &[]);
            }
        }
    }
}

/// The standard method an unknown method name could be read as by a lenient peer: the same
/// name in another case, or a prefix of it (PJSIP compares only the bytes given).
fn lookalike(name: &str) -> Option<&'static str> {
    const KNOWN: [&str; 14] = [
        "INVITE",
        "ACK",
        "CANCEL",
        "BYE",
        "OPTIONS",
        "REGISTER",
        "INFO",
        "PRACK",
        "UPDATE",
        "SUBSCRIBE",
        "NOTIFY",
        "REFER",
        "MESSAGE",
        "PUBLISH",
    ];
    let upper = name.to_ascii_uppercase();
    KNOWN
        .into_iter()
        .find(|k| !upper.is_empty() && k.starts_with(upper.as_str()))
}
