//! Responses (RFC 3261 §16.7): matched to the client transaction that sent the request,
//! acknowledged or cancelled as the transaction says, and relayed upstream through the
//! server transaction, which retransmits finals until they are acknowledged (§17.2.1,
//! RFC 6026).

use std::time::Instant;

use super::reply::{build_in_transaction_request, strip_top_via};
use super::route::BRANCH_PREFIX;
use super::table::{ClientKind, Owner, ServerId};
use super::transaction::ServerState;
use super::{Peer, Proxy};
use crate::sip::{HeaderName, Message, Method};

/// Early dialogs one INVITE keeps track of (forking downstream may make several).
const MAX_EARLY_DIALOGS: usize = 16;

impl Proxy {
    pub(super) fn handle_response(&mut self, now: Instant, from: Peer, msg: Message) {
        let Some(code) = msg.status() else { return };
        let Some(via) = msg.top_via() else { return };
        let Some(branch) = via.branch().filter(|b| b.starts_with(BRANCH_PREFIX)) else {
            tracing::debug!(source = %from.addr, "response whose top Via is not ours, dropped");
            return;
        };
        let method = msg.method();
        let found = self.tx.find_client(branch, ClientKind::of(&method));
        drop(via);
        let Some(cid) = found else {
            // RFC 6026 §7.3: a response matching no transaction is not forwarded.
            tracing::debug!(source = %from.addr, code, "response for no transaction, dropped");
            return;
        };
        let Some(ct) = self.tx.client_mut(cid) else {
            return;
        };
        // Only the address the request went to answers it: nobody else can answer on a
        // trunk's behalf (SPEC §5.1).
        if ct.peer != from {
            self.warn_forged(now, from, &msg);
            return;
        }
        let (server, peer) = (ct.server, ct.peer);
        let first_final = ct.awaiting_final();
        let actions = ct.on_response(now, code);
        let ack = if !actions.send_ack {
            None
        } else if first_final {
            // The INVITE is not sent again: its ACK takes its place, for the retransmitted
            // finals.
            let ack = Message::parse(&ct.request).ok().map(|invite| {
                build_in_transaction_request(&invite, Method::Ack, msg.header_str(HeaderName::To))
            });
            ct.request = ack.clone().unwrap_or_default().into();
            ack
        } else {
            Some(ct.request.to_vec())
        };
        self.tx.schedule_all(actions.timers, Owner::Client(cid));
        // Any answer but 503 shows the target is there (a probe's included); a 503 to a
        // request (not to a probe: its target is down already) is a failure.
        if code == 503 {
            if actions.forward && server.is_some() {
                self.target_failed(now, peer);
            }
        } else {
            self.target_answered(peer);
        }
        if let Some(ack) = ack {
            self.send(peer, ack);
        }
        if actions.send_cancel {
            self.send_cancel(now, cid);
        }
        if actions.terminated {
            self.tx.remove_client(cid);
        }
        if !actions.forward {
            return;
        }
        let Some(sid) = server else { return };
        // A 503 sends the request to the next target, if any; a provisional response means
        // the target took the request, which stays there (SPEC §5.2).
        if code == 503 && self.fail_over(now, sid) {
            return;
        }
        if code > 100 && code < 200 {
            self.hops.end(sid);
        }
        if method == Method::Invite {
            self.track_dialogs(now, sid, peer, &msg, code);
        }
        if method == Method::Invite && code >= 300 && self.recurse(now, sid, &msg, code) {
            return;
        }
        // §16.7 item 3: with no Via left once ours is removed, the response was meant for us
        // and is not forwarded; the caller still gets a final response of the same class (once:
        // an answered request is not answered again).
        if msg.vias().count() <= 1 {
            tracing::warn!(source = %from.addr, code, "response carrying only our Via, not forwarded");
            if code >= 200 {
                let reason = msg.status_reason().to_owned();
                self.respond(now, sid, code, &reason, &[]);
            }
            return;
        }
        let bytes = strip_top_via(&msg);
        self.send_server_response(now, sid, code, bytes);
        if code >= 200 && method == Method::Bye {
            // The BYE completed: its dialog is over.
            if let Some((id, _)) = self.dialogs.find(&msg) {
                self.dialogs.remove(id);
            }
        }
    }

    /// The dialogs of a screened INVITE (SPEC §5.1): a 1xx with a To tag or a 2xx makes one
    /// (bound to the caller and to the branch that answered); a failure ends the early ones.
    fn track_dialogs(
        &mut self,
        now: Instant,
        sid: ServerId,
        callee: Peer,
        msg: &Message,
        code: u16,
    ) {
        let Some(st) = self.tx.server(sid) else {
            return;
        };
        let Some(caller) = st.dialog_caller else {
            return;
        };
        if code >= 300 {
            // The early dialogs end with the failure sent upstream (send_server_response).
            return;
        }
        // Beyond the cap (checked when the INVITE came, so only calls already in flight get
        // here), no more dialogs are made.
        // One INVITE makes at most MAX_EARLY_DIALOGS (forking): a callee answering with ever
        // new To tags cannot fill the table.
        let cap = self.settings.limits.max_dialogs + self.settings.limits.max_transactions;
        let full = st.dialogs.len() >= MAX_EARLY_DIALOGS;
        if code <= 100 || self.dialogs.len() >= cap {
            return;
        }
        let id = self.tx.dialog_id();
        let confirmed = code >= 200;
        let timeout = self.settings.limits.dialog_timeout;
        let made = if full {
            // Only an answer to a dialog already made is taken.
            self.dialogs.find(msg).map(|(id, _)| (id, false))
        } else {
            self.dialogs
                .on_response(id, msg, caller, callee, confirmed, now, timeout)
        };
        let Some((id, new)) = made else {
            return;
        };
        if confirmed {
            if let Some(d) = self.dialogs.get_mut(id) {
                d.confirmed = true;
            }
        }
        let Some(st) = self.tx.server_mut(sid) else {
            return;
        };
        if new {
            st.dialogs.push(id);
        }
        if confirmed {
            // The call is answered: the other early dialogs of this INVITE are over.
            let others: Vec<_> = st.dialogs.iter().copied().filter(|d| *d != id).collect();
            st.dialogs.retain(|d| *d == id);
            for other in others {
                if self.dialogs.get(other).is_some_and(|d| !d.confirmed) {
                    self.dialogs.remove(other);
                }
            }
        }
    }

    /// Logs a response from another address than its transaction's (throttled).
    fn warn_forged(&mut self, now: Instant, from: Peer, msg: &Message) {
        self.refused(crate::metrics::Refusal::Admission);
        if let Some(count) = self.refusals.hit(now) {
            tracing::warn!(source = %from.addr, call_id = msg.call_id(), dropped = count, "response from another address than its request went to, dropped");
        }
    }

    /// Sends a response through a server transaction and moves it on (§17.2.1, RFC 6026).
    pub(super) fn send_server_response(
        &mut self,
        now: Instant,
        sid: ServerId,
        code: u16,
        bytes: Vec<u8>,
    ) {
        let Some(st) = self.tx.server_mut(sid) else {
            return;
        };
        let to = st.peer;
        let was_pending = st.is_pending();
        // An INVITE that fails takes its early dialogs with it (SPEC §5.1).
        let failed_dialogs = if st.invite && was_pending && code >= 300 {
            std::mem::take(&mut st.dialogs)
        } else {
            Vec::new()
        };
        let timers = st.on_response(now, code, &bytes);
        let terminated = st.state == ServerState::Terminated;
        if code >= 200 {
            self.hops.end(sid);
        }
        self.tx.server_changed(was_pending, sid);
        self.tx.schedule_all(timers, Owner::Server(sid));
        for id in failed_dialogs {
            if self.dialogs.get(id).is_some_and(|d| !d.confirmed) {
                self.dialogs.remove(id);
            }
        }
        self.send(to, bytes);
        if terminated {
            self.tx.remove_server(sid);
        }
    }

    /// A retransmitted request: the last response again (§17.2.1, §17.2.2).
    pub(super) fn retransmit_server(&mut self, sid: ServerId) {
        let Some(st) = self.tx.server(sid) else {
            return;
        };
        if !st.answers_retransmissions() {
            return;
        }
        if let Some(last) = &st.last_response {
            let (to, bytes) = (st.peer, last.to_vec());
            self.send(to, bytes);
        }
    }

    /// The ACK for a non-2xx final we sent (§17.2.1).
    pub(super) fn ack_for_final(&mut self, now: Instant, sid: ServerId) {
        let Some(st) = self.tx.server_mut(sid) else {
            return;
        };
        let timers = st.on_ack(now);
        let terminated = st.state == ServerState::Terminated;
        self.tx.schedule_all(timers, Owner::Server(sid));
        if terminated {
            self.tx.remove_server(sid);
        }
    }
}
