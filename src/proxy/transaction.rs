//! Transaction state machines (RFC 3261 §17 with RFC 6026's Accepted state, and §16.8's
//! Timer C). Each machine only changes its state and says what to do — retransmit, arm a
//! timer, forward, acknowledge — the core does it.

use std::time::{Duration, Instant};

use super::dialogs::DialogId;
use super::recursion::Recursion;
use super::table::{ClientId, ClientKind, ServerKey};
use super::{Peer, ServerId};
use crate::sip::Message;

/// RTT estimate (§17.1.1.1).
pub const T1: Duration = Duration::from_millis(500);
/// Longest retransmit interval for non-INVITE requests and INVITE responses.
pub const T2: Duration = Duration::from_secs(4);
/// How long a message may stay in the network.
pub const T4: Duration = Duration::from_secs(5);
/// A proxy's wait for a final response to an INVITE (§16.6 item 11), by default: SPEC §2's
/// `invite_timeout_s`.
pub const TIMER_C: Duration = Duration::from_secs(180);
/// Timer D for unreliable transports (§17.1.1.2: at least 32 s).
const TIMER_D: Duration = Duration::from_secs(32);

/// The timers of RFC 3261 §17 (and RFC 6026's L and M).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimerKind {
    A,
    B,
    C,
    D,
    E,
    F,
    K,
    M,
    G,
    H,
    I,
    J,
    L,
    /// A cancelled INVITE branch that answered neither the INVITE nor the CANCEL is given up
    /// 64×T1 after the CANCEL (§16.8, §9.1), so that every transaction ends.
    Abandon,
}

/// Server transaction states (§17.2.1, §17.2.2, RFC 6026 §7.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerState {
    Trying,
    Proceeding,
    Completed,
    Confirmed,
    Accepted,
    Terminated,
}

/// What a timer asks for.
#[derive(Default, Debug)]
pub struct TimerOut {
    pub retransmit: Option<Vec<u8>>,
    pub timers: Vec<(Instant, TimerKind)>,
    pub terminated: bool,
    /// Client: no final response in time (Timer B, F, or C before any provisional).
    pub timed_out: bool,
    /// Client: Timer C fired after a provisional response: cancel the branch.
    pub cancel: bool,
}

/// A server transaction: the request we received and what we answered.
///
/// Once it has sent its final response it only lingers (up to 64×T1, Timers H, I, J, L) to
/// match retransmissions: what it keeps then is what that needs (its key, where responses
/// go, the non-2xx final to send again until the ACK, the dialogs a forked 2xx may still
/// make). The request and the forwarding state are in [`Unanswered`], dropped with the final
/// response: lingering transactions are the request rate times 32 s (64,000 calls' worth at
/// 2,000 calls/s), so every byte one keeps is multiplied by that many.
#[derive(Debug)]
pub struct ServerTx {
    pub key: ServerKey,
    pub invite: bool,
    /// Where responses go.
    pub peer: Peer,
    reliable: bool,
    pub state: ServerState,
    pub last_response: Option<Box<[u8]>>,
    /// Set for screened INVITEs: where the call came from. Their 1xx/2xx make the dialogs
    /// that in-dialog requests are bound to (SPEC §5.1).
    pub dialog_caller: Option<Peer>,
    /// The dialogs (early ones included) its responses made.
    pub dialogs: Vec<DialogId>,
    g_interval: Duration,
    g_next: Option<Instant>,
    /// `None` once the final response is sent.
    unanswered: Option<Box<Unanswered>>,
}

/// What a server transaction needs only until its final response.
#[derive(Debug)]
pub struct Unanswered {
    /// The request: responses are built from it, recursion forwards it again, the PIN
    /// prompt answers it.
    pub request: Message,
    /// The client transaction the request was forwarded on.
    pub client: Option<ClientId>,
    /// The branch of our Via on the forwarded request.
    pub branch: String,
    /// Where the request came from (the response destination may differ, RFC 3581).
    pub from: Peer,
    /// Set for INVITEs to a user's phone: how to follow its 3xx.
    pub recursion: Option<Recursion>,
    /// The caller sent CANCEL.
    pub cancelled: bool,
}

impl ServerTx {
    pub fn new(
        key: ServerKey,
        invite: bool,
        peer: Peer,
        from: Peer,
        request: Message,
        branch: String,
    ) -> Self {
        Self {
            key,
            invite,
            peer,
            reliable: from.transport.is_stream(),
            state: if invite {
                ServerState::Proceeding
            } else {
                ServerState::Trying
            },
            last_response: None,
            dialog_caller: None,
            dialogs: Vec::new(),
            g_interval: T1,
            g_next: None,
            unanswered: Some(Box::new(Unanswered {
                request,
                client: None,
                branch,
                from,
                recursion: None,
                cancelled: false,
            })),
        }
    }

    /// What only an unanswered request has; `None` once the final response is sent.
    pub fn unanswered(&self) -> Option<&Unanswered> {
        self.unanswered.as_deref()
    }

    pub fn unanswered_mut(&mut self) -> Option<&mut Unanswered> {
        self.unanswered.as_deref_mut()
    }

    /// A response is sent: the new state and the timers it arms.
    pub fn on_response(
        &mut self,
        now: Instant,
        code: u16,
        bytes: &[u8],
    ) -> Vec<(Instant, TimerKind)> {
        let mut timers = Vec::new();
        match self.state {
            ServerState::Trying | ServerState::Proceeding => {
                if code >= 200 {
                    // Answered: nothing is built from the request any more.
                    self.unanswered = None;
                }
                self.last_response = Some(bytes.into());
                if code < 200 {
                    self.state = ServerState::Proceeding;
                } else if self.invite && code < 300 {
                    self.state = ServerState::Accepted;
                    // Accepted absorbs retransmissions without answering (RFC 6026 §7.1): the
                    // 2xx need not be kept while the transaction lingers.
                    self.last_response = None;
                    timers.push((now + 64 * T1, TimerKind::L));
                } else if self.invite {
                    self.state = ServerState::Completed;
                    if !self.reliable {
                        self.g_next = Some(now + T1);
                        timers.push((now + T1, TimerKind::G));
                    }
                    timers.push((now + 64 * T1, TimerKind::H));
                } else if self.reliable {
                    self.state = ServerState::Terminated;
                } else {
                    self.state = ServerState::Completed;
                    timers.push((now + 64 * T1, TimerKind::J));
                }
            }
            // 2xx retransmissions pass through the Accepted state (RFC 6026 §7.1).
            ServerState::Accepted
            | ServerState::Completed
            | ServerState::Confirmed
            | ServerState::Terminated => {}
        }
        timers
    }

    /// The ACK for our non-2xx final arrived: the final is not sent again (the Confirmed
    /// state only absorbs, §17.2.1), so it is dropped now rather than after Timer I.
    pub fn on_ack(&mut self, now: Instant) -> Vec<(Instant, TimerKind)> {
        if self.state != ServerState::Completed {
            return Vec::new();
        }
        self.g_next = None;
        self.last_response = None;
        if self.reliable {
            self.state = ServerState::Terminated;
            Vec::new()
        } else {
            self.state = ServerState::Confirmed;
            vec![(now + T4, TimerKind::I)]
        }
    }

    /// Whether the request still waits for its final response.
    pub fn is_pending(&self) -> bool {
        matches!(self.state, ServerState::Trying | ServerState::Proceeding)
    }

    /// Whether a retransmitted request should be answered with the last response (in the
    /// Accepted state it is absorbed, RFC 6026 §7.1; in the Confirmed state too: the INVITE
    /// was ACKed, a copy of it still in the network is older than the ACK).
    pub fn answers_retransmissions(&self) -> bool {
        !matches!(self.state, ServerState::Accepted | ServerState::Confirmed)
    }

    /// Whether the timer `kind` armed for `at` still has something to do: the one place
    /// that says so, for [`ServerTx::on_timer`] and for the table dropping the timers that
    /// no longer have.
    pub fn armed(&self, kind: TimerKind, at: Instant) -> bool {
        match (kind, self.state) {
            (TimerKind::G, ServerState::Completed) => self.g_next == Some(at),
            (TimerKind::H, ServerState::Completed)
            | (TimerKind::I, ServerState::Confirmed)
            | (TimerKind::J, ServerState::Completed)
            | (TimerKind::L, ServerState::Accepted) => true,
            _ => false,
        }
    }

    pub fn on_timer(&mut self, now: Instant, at: Instant, kind: TimerKind) -> TimerOut {
        let mut out = TimerOut::default();
        if !self.armed(kind, at) {
            return out;
        }
        if kind == TimerKind::G {
            out.retransmit = self.last_response.as_deref().map(<[u8]>::to_vec);
            self.g_interval = (self.g_interval * 2).min(T2);
            let next = now + self.g_interval;
            self.g_next = Some(next);
            out.timers.push((next, TimerKind::G));
        } else {
            // H, I, J or L: the transaction ends.
            self.state = ServerState::Terminated;
            out.terminated = true;
        }
        out
    }
}

/// Client transaction states (§17.1.1, §17.1.2, RFC 6026 §7.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientState {
    Calling,
    Trying,
    Proceeding,
    Completed,
    Accepted,
    Terminated,
}

/// What a response does to a client transaction.
#[derive(Default, Debug)]
pub struct ResponseActions {
    pub timers: Vec<(Instant, TimerKind)>,
    /// Relay it upstream.
    pub forward: bool,
    /// Acknowledge a non-2xx final (hop by hop).
    pub send_ack: bool,
    /// A CANCEL was waiting for a provisional response: send it now.
    pub send_cancel: bool,
    pub terminated: bool,
}

/// A client transaction: a request we sent and its retransmissions.
#[derive(Debug)]
pub struct ClientTx {
    /// The server transaction it serves (`None` for a CANCEL of our own).
    pub server: Option<ServerId>,
    pub peer: Peer,
    /// What is sent again: the request until its final response, then nothing, except for
    /// an INVITE answered with a non-2xx final, whose ACK takes its place (sent again for
    /// each retransmission of that final, while the transaction lingers 32 s).
    pub request: Box<[u8]>,
    pub invite: bool,
    pub cancel: bool,
    pub branch: Box<str>,
    pub state: ClientState,
    /// CANCEL asked for (sent once a provisional response has come).
    pub cancelled: bool,
    /// Timer C: how long an INVITE may wait for its final response.
    pub timer_c: Duration,
    reliable: bool,
    interval: Duration,
    retransmit_next: Option<Instant>,
    c_deadline: Option<Instant>,
}

impl ClientTx {
    pub fn new(
        server: Option<ServerId>,
        peer: Peer,
        request: Vec<u8>,
        invite: bool,
        cancel: bool,
        branch: Box<str>,
    ) -> Self {
        Self {
            server,
            peer,
            request: request.into(),
            invite,
            cancel,
            branch,
            state: if invite {
                ClientState::Calling
            } else {
                ClientState::Trying
            },
            cancelled: false,
            timer_c: TIMER_C,
            reliable: peer.transport.is_stream(),
            interval: T1,
            retransmit_next: None,
            c_deadline: None,
        }
    }

    /// The timers armed when the request is first sent.
    pub fn initial_timers(&mut self, now: Instant) -> Vec<(Instant, TimerKind)> {
        let mut t = Vec::new();
        if !self.reliable {
            self.retransmit_next = Some(now + T1);
            t.push((
                now + T1,
                if self.invite {
                    TimerKind::A
                } else {
                    TimerKind::E
                },
            ));
        }
        if self.invite {
            t.push((now + 64 * T1, TimerKind::B));
            self.c_deadline = Some(now + self.timer_c);
            t.push((now + self.timer_c, TimerKind::C));
        } else {
            t.push((now + 64 * T1, TimerKind::F));
        }
        t
    }

    /// With the branch, how responses find this transaction (§17.1.3).
    pub fn kind(&self) -> ClientKind {
        if self.cancel {
            ClientKind::Cancel
        } else if self.invite {
            ClientKind::Invite
        } else {
            ClientKind::NonInvite
        }
    }

    /// Whether no final response has come yet.
    pub fn awaiting_final(&self) -> bool {
        matches!(
            self.state,
            ClientState::Calling | ClientState::Trying | ClientState::Proceeding
        )
    }

    pub fn on_response(&mut self, now: Instant, code: u16) -> ResponseActions {
        let mut a = ResponseActions::default();
        let provisional = code < 200;
        if self.invite {
            match self.state {
                ClientState::Calling | ClientState::Proceeding if provisional => {
                    let first = self.state == ClientState::Calling;
                    self.state = ClientState::Proceeding;
                    self.retransmit_next = None;
                    if code > 100 {
                        let c = now + self.timer_c;
                        self.c_deadline = Some(c);
                        a.timers.push((c, TimerKind::C));
                    }
                    a.send_cancel = first && self.cancelled;
                    a.forward = code > 100;
                }
                ClientState::Calling | ClientState::Proceeding if code < 300 => {
                    self.state = ClientState::Accepted;
                    self.retransmit_next = None;
                    // The ACK for a 2xx is the caller's (end to end): the request is not needed
                    // again while the transaction lingers for 2xx retransmissions.
                    self.request = Box::default();
                    a.timers.push((now + 64 * T1, TimerKind::M));
                    a.forward = true;
                }
                ClientState::Calling | ClientState::Proceeding => {
                    self.retransmit_next = None;
                    a.send_ack = true;
                    a.forward = true;
                    if self.reliable {
                        self.state = ClientState::Terminated;
                        a.terminated = true;
                    } else {
                        self.state = ClientState::Completed;
                        a.timers.push((now + TIMER_D, TimerKind::D));
                    }
                }
                ClientState::Accepted => a.forward = (200..300).contains(&code),
                ClientState::Completed => a.send_ack = code >= 300,
                ClientState::Trying | ClientState::Terminated => {}
            }
            return a;
        }
        match self.state {
            ClientState::Trying | ClientState::Proceeding if provisional => {
                self.state = ClientState::Proceeding;
                a.forward = code > 100;
            }
            ClientState::Trying | ClientState::Proceeding => {
                self.retransmit_next = None;
                a.forward = true;
                // Nothing is sent again once the final response came.
                self.request = Box::default();
                if self.reliable {
                    self.state = ClientState::Terminated;
                    a.terminated = true;
                } else {
                    self.state = ClientState::Completed;
                    a.timers.push((now + T4, TimerKind::K));
                }
            }
            _ => {}
        }
        a
    }

    /// Whether the timer `kind` armed for `at` still has something to do: the one place
    /// that says so, for [`ClientTx::on_timer`] and for the table dropping the timers that
    /// no longer have (Timer C, say, once a final response came).
    pub fn armed(&self, kind: TimerKind, at: Instant) -> bool {
        match (kind, self.state) {
            (TimerKind::A, ClientState::Calling)
            | (TimerKind::E, ClientState::Trying | ClientState::Proceeding) => {
                self.retransmit_next == Some(at)
            }
            (TimerKind::C, ClientState::Calling) => self.c_deadline == Some(at),
            (TimerKind::C, ClientState::Proceeding) => {
                self.c_deadline == Some(at) && !self.cancelled
            }
            (TimerKind::B, ClientState::Calling)
            | (TimerKind::F, ClientState::Trying | ClientState::Proceeding)
            | (TimerKind::Abandon, ClientState::Calling | ClientState::Proceeding)
            | (TimerKind::D, ClientState::Completed)
            | (TimerKind::K, ClientState::Completed)
            | (TimerKind::M, ClientState::Accepted) => true,
            _ => false,
        }
    }

    pub fn on_timer(&mut self, now: Instant, at: Instant, kind: TimerKind) -> TimerOut {
        let mut out = TimerOut::default();
        if !self.armed(kind, at) {
            return out;
        }
        match kind {
            TimerKind::A | TimerKind::E => {
                out.retransmit = Some(self.request.to_vec());
                self.interval = match (kind, self.state) {
                    (TimerKind::A, _) => self.interval * 2,
                    (_, ClientState::Proceeding) => T2,
                    _ => (self.interval * 2).min(T2),
                };
                let next = now + self.interval;
                self.retransmit_next = Some(next);
                out.timers.push((next, kind));
            }
            // Timer C before any provisional response: no answer in time.
            TimerKind::C if self.state == ClientState::Calling => {
                self.state = ClientState::Terminated;
                out.timed_out = true;
            }
            // Timer C after a provisional response: the branch is cancelled.
            TimerKind::C => out.cancel = true,
            TimerKind::B | TimerKind::F | TimerKind::Abandon => {
                self.state = ClientState::Terminated;
                out.timed_out = true;
            }
            // D, K or M: the transaction ends.
            _ => {
                self.state = ClientState::Terminated;
                out.terminated = true;
            }
        }
        out
    }
}
