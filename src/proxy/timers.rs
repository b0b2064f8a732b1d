//! Timers coming due (RFC 3261 §17 and §16.8): retransmissions, transactions ending, Timer C
//! cancelling a branch, a branch timing out with 408 upstream, and PIN sessions' prompt
//! frames and entry deadlines.

use std::time::Instant;

use super::table::{Owner, TimerId};
use super::transaction::TimerOut;
use super::{Peer, Proxy};

impl Proxy {
    pub(super) fn fire(&mut self, now: Instant, at: Instant, timer: TimerId) {
        match timer {
            TimerId::Media(id) => self.media_timer(now, at, id),

            TimerId::Server(id, kind) => {
                let Some(st) = self.tx.server_mut(id) else {
                    return;
                };
                let (to, out) = (st.peer, st.on_timer(now, at, kind));
                self.retransmit_and_rearm(Owner::Server(id), to, out.retransmit, out.timers);
                if out.terminated {
                    self.tx.remove_server(id);
                }
            }
            TimerId::Client(id, kind) => {
                let Some(ct) = self.tx.client_mut(id) else {
                    return;
                };
                let (to, server, cancelled) = (ct.peer, ct.server, ct.cancelled);
                let out = ct.on_timer(now, at, kind);
                let TimerOut {
                    retransmit,
                    timers,
                    terminated,
                    timed_out,
                    cancel,
                } = out;
                self.retransmit_and_rearm(Owner::Client(id), to, retransmit, timers);
                if let Some(sid) = server.filter(|_| timed_out && !cancelled) {
                    // Timer B/F, or C before any provisional: the target failed; the next one
                    // is tried if there is one (SPEC §5.2). A probe's timeout is not counted:
                    // its target is down already, and a late one must not put it down again.
                    self.target_failed(now, to);
                    if self.fail_over(now, sid) {
                        self.tx.remove_client(id);
                        return;
                    }
                }
                if timed_out {
                    // No final response (§16.7 item 6: 408 upstream).
                    self.fail_client(now, id, 408, "Request Timeout");
                    return;
                }
                if cancel {
                    // Timer C with a provisional response: cancel the branch (§16.8).
                    if let Some(c) = self.tx.client_mut(id) {
                        c.cancelled = true;
                    }
                    self.send_cancel(now, id);
                }
                if terminated {
                    self.tx.remove_client(id);
                }
            }
        }
    }

    /// What any transaction timer may ask for: a retransmission and timers armed again.
    fn retransmit_and_rearm(
        &mut self,
        owner: Owner,
        to: Peer,
        retransmit: Option<Vec<u8>>,
        timers: Vec<(Instant, super::transaction::TimerKind)>,
    ) {
        if let Some(bytes) = retransmit {
            self.send(to, bytes);
        }
        self.tx.schedule_all(timers, owner);
    }
}
