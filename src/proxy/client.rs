//! Client transactions (RFC 3261 §16.6 item 8, §16.10): forwarding a request on a new one,
//! cancelling a branch, and failing one that could not be sent (§8.1.3.1).

use std::time::Instant;

use super::reply::build_in_transaction_request;
use super::table::{ClientId, ServerId, TimerId};
use super::transaction::{ClientState, ClientTx, TimerKind, T1};
use super::{Peer, Proxy};
use crate::sip::{Message, Method};

impl Proxy {
    /// Forwards the request of `sid` to `to` on a new client transaction.
    pub(super) fn start_client(
        &mut self,
        now: Instant,
        sid: ServerId,
        to: Peer,
        bytes: Vec<u8>,
        invite: bool,
    ) {
        let branch: Box<str> = self
            .tx
            .server(sid)
            .and_then(|s| s.unanswered())
            .map(|u| u.branch.as_str().into())
            .unwrap_or_default();
        self.sent_to(sid, to, &branch, &bytes);
        let mut ct = ClientTx::new(Some(sid), to, bytes.clone(), invite, false, branch);
        ct.timer_c = self.settings.limits.invite_timeout;
        let cid = self.tx.insert_client(now, ct);
        if let Some(u) = self.tx.server_mut(sid).and_then(|s| s.unanswered_mut()) {
            u.client = Some(cid);
        }
        self.send(to, bytes);
    }

    /// Cancels an INVITE client transaction (§16.10): CANCEL now if a provisional response
    /// came, else as soon as one comes.
    pub(super) fn cancel_client(&mut self, now: Instant, cid: ClientId) {
        let Some(ct) = self.tx.client_mut(cid) else {
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

    /// Sends the CANCEL of an INVITE client transaction, on a client transaction of its own.
    pub(super) fn send_cancel(&mut self, now: Instant, cid: ClientId) {
        let Some(ct) = self.tx.client(cid) else {
            return;
        };
        let Ok(invite) = Message::parse(&ct.request) else {
            return;
        };
        let to = ct.peer;
        let branch = ct.branch.clone();
        let bytes = build_in_transaction_request(&invite, Method::Cancel, None);
        let cancel = ClientTx::new(None, to, bytes.clone(), false, true, branch);
        self.tx.insert_client(now, cancel);
        // Whatever happens to the CANCEL, the INVITE branch ends (§16.8).
        self.tx
            .schedule(now + 64 * T1, TimerId::Client(cid, TimerKind::Abandon));
        self.send(to, bytes);
    }

    /// Call when a send to `to` failed (connection refused, no route): client transactions
    /// towards it fail as if they had received 503 (RFC 3261 §8.1.3.1), and go to their next
    /// target when they have one (SPEC §5.2).
    pub fn handle_send_error(&mut self, now: Instant, to: Peer) {
        let failed = self.tx.clients_awaiting(to);
        if !failed.is_empty() {
            self.target_failed(now, to);
        }
        for cid in failed {
            let server = self.tx.client(cid).and_then(|c| c.server);
            if server.is_some_and(|sid| self.fail_over(now, sid)) {
                self.tx.remove_client(cid);
                continue;
            }
            tracing::warn!(to = %to.addr, "send failed, 503 upstream");
            self.fail_client(now, cid, 503, "Service Unavailable");
        }
    }

    /// Ends a client transaction without a response from downstream and answers upstream:
    /// `code`, or 487 when the caller had cancelled (a caller's CANCEL always gets its 487).
    pub(super) fn fail_client(&mut self, now: Instant, cid: ClientId, code: u16, reason: &str) {
        let Some(ct) = self.tx.remove_client(cid) else {
            return;
        };
        let Some(sid) = ct.server else {
            return;
        };
        let Some(u) = self.tx.server(sid).and_then(|s| s.unanswered()) else {
            return;
        };
        let (code, reason) = if u.cancelled {
            (487, "Request Terminated")
        } else {
            (code, reason)
        };
        self.respond(now, sid, code, reason, &[]);
    }
}
