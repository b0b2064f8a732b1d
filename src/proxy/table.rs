//! The transaction table: server and client transactions by typed id, the keys that find
//! them from a message (RFC 3261 §17.1.3 for responses, §17.2.3 for requests), and the one
//! timer heap of the core, whose entries name what they belong to.
//!
//! A timer whose transaction is gone, or that no longer has anything to do (Timer B or C
//! once a final response came), is dropped when it comes due: looking it up costs one hash
//! probe. Timers are not taken off the heap one by one when they become moot, so
//! [`Table::sweep`] drops them all at once when they outnumber the transactions' own
//! ([`TIMERS_PER_TRANSACTION`]): a transaction has at most four armed at once (Timers A, B,
//! C and the Abandon of a cancelled INVITE branch), so past twice that most are moot.
//! Without it, every completed call would leave its Timer C (`invite_timeout_s`, 180 s by
//! default) in the heap long after its transactions ended.
//!
//! Bounds: requests waiting for a final response are at most `max_transactions` (beyond,
//! 503); a transaction that has answered lingers at most 64×T1 (Timers H, I, J, K, L, M) to
//! absorb retransmissions, so lingering ones are at most the request rate times 32 s, and
//! strangers' rate is capped per source. Every entry leaves the indexes with its
//! transaction. The maps, their indexes and the heap give their room back when mostly empty
//! (the rule of [`super::shrink`], applied by [`Table::sweep`]).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::time::Instant;

use super::dialogs::DialogId;
use super::shrink::{self, shrink};
use super::transaction::{ClientTx, ServerTx, TimerKind};
use crate::sip::header::Via;
use crate::sip::{Message, Method};

/// A server transaction: a request we received.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerId(pub(super) u64);

/// A client transaction: a request we sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientId(u64);

/// A PIN session (a call held for its PIN).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId(u64);

/// What a timer belongs to, and which timer it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimerId {
    Server(ServerId, TimerKind),
    Client(ClientId, TimerKind),
    /// A PIN session's next prompt frame or entry deadline.
    Media(SessionId),
}

/// How a request finds its server transaction (§17.2.3): the branch (or, for an RFC 2543
/// peer without the magic cookie, a hash of the request's identifying fields), the sent-by
/// of the top Via, and the method, ACK counting as INVITE.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ServerKey {
    id: RequestId,
    sent_by: Box<str>,
    method: Method,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum RequestId {
    Branch(Box<str>),
    Rfc2543(u64),
}

impl ServerKey {
    /// The key of `msg`, as a request of `method` (CANCEL looks up its INVITE this way).
    pub fn new(msg: &Message, via: &Via<'_>, method: &Method) -> Self {
        let ack = *method == Method::Ack;
        let method = match method {
            Method::Ack => Method::Invite,
            m => m.clone(),
        };
        let sent_by = format!(
            "{}:{}",
            via.host.to_ascii_lowercase(),
            via.port.unwrap_or(5060)
        )
        .into();
        let id = match via.rfc3261_branch() {
            Some(b) => RequestId::Branch(b.into()),
            None => {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                msg.request_uri().hash(&mut h);
                msg.call_id().hash(&mut h);
                msg.from().and_then(|f| f.tag()).hash(&mut h);
                msg.cseq().map(|c| c.number).ok().hash(&mut h);
                msg.text(&via.range).hash(&mut h);
                // An ACK for a non-2xx carries the To tag of the response; the INVITE did not.
                if !ack {
                    msg.to().and_then(|t| t.tag()).hash(&mut h);
                }
                RequestId::Rfc2543(h.finish())
            }
        };
        Self {
            id,
            sent_by,
            method,
        }
    }
}

/// How a response finds its client transaction (§17.1.3), with our branch: the kind of
/// request (a CANCEL shares its INVITE's branch).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientKind {
    Invite,
    NonInvite,
    Cancel,
}

impl ClientKind {
    /// The kind of transaction a response to `method` belongs to.
    pub fn of(method: &Method) -> Self {
        match method {
            Method::Invite => ClientKind::Invite,
            Method::Cancel => ClientKind::Cancel,
            _ => ClientKind::NonInvite,
        }
    }
}

/// Timers the heap may hold per transaction before [`Table::sweep`] drops the moot ones:
/// twice the most a transaction has armed at once, so that a sweep at least halves the heap
/// and its cost (one pass) is paid for by the pushes or the transactions' ends since the
/// last one.
const TIMERS_PER_TRANSACTION: usize = 8;

/// Every transaction in flight, and the timers.
#[derive(Default)]
pub struct Table {
    servers: HashMap<ServerId, ServerTx>,
    /// Server transactions by a keyed hash of their [`ServerKey`], checked against the key
    /// the transaction keeps: the key (two strings) is stored once, not in the index too.
    server_index: HashMap<u64, ServerId>,
    clients: HashMap<ClientId, ClientTx>,
    /// Client transactions by a keyed hash of their branch and [`ClientKind`], checked
    /// likewise; a response's lookup allocates nothing.
    client_index: HashMap<u64, ClientId>,
    /// The key of both indexes' hashes, random per process: nobody can aim two keys at one
    /// hash. Two keys with the same 64-bit hash would only leave the older transaction
    /// unfindable, as if it had ended.
    hasher: RandomState,
    timers: BinaryHeap<Reverse<(Instant, TimerId)>>,
    next_id: u64,
    /// Server transactions still waiting for their final response.
    pending: usize,
    /// Transactions ended since [`Table::sweep`] last said that much memory was freed.
    ended: usize,
}

impl Table {
    fn next(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// A new PIN session id (from the same counter, so ids are never reused).
    pub fn session_id(&mut self) -> SessionId {
        SessionId(self.next())
    }

    /// A new dialog id.
    pub fn dialog_id(&mut self) -> DialogId {
        DialogId(self.next())
    }

    /// A fresh number for a branch.
    pub fn branch_number(&mut self) -> u64 {
        self.next()
    }

    pub fn server(&self, id: ServerId) -> Option<&ServerTx> {
        self.servers.get(&id)
    }

    pub fn server_mut(&mut self, id: ServerId) -> Option<&mut ServerTx> {
        self.servers.get_mut(&id)
    }

    pub fn find_server(&self, key: &ServerKey) -> Option<ServerId> {
        let id = *self.server_index.get(&self.hasher.hash_one(key))?;
        self.servers
            .get(&id)
            .is_some_and(|st| st.key == *key)
            .then_some(id)
    }

    pub fn client(&self, id: ClientId) -> Option<&ClientTx> {
        self.clients.get(&id)
    }

    pub fn client_mut(&mut self, id: ClientId) -> Option<&mut ClientTx> {
        self.clients.get_mut(&id)
    }

    /// The client transaction whose request had our Via's `branch` and was of `kind`.
    pub fn find_client(&self, branch: &str, kind: ClientKind) -> Option<ClientId> {
        let id = *self
            .client_index
            .get(&self.hasher.hash_one((branch, kind)))?;
        self.clients
            .get(&id)
            .is_some_and(|ct| &*ct.branch == branch && ct.kind() == kind)
            .then_some(id)
    }

    /// Client transactions towards `to` still waiting for a final response.
    pub fn clients_awaiting(&self, to: super::Peer) -> Vec<ClientId> {
        self.clients
            .iter()
            .filter(|(_, c)| c.peer == to && c.awaiting_final())
            .map(|(id, _)| *id)
            .collect()
    }

    /// Adds a server transaction (pending: no final response yet).
    pub fn insert_server(&mut self, st: ServerTx) -> ServerId {
        let id = ServerId(self.next());
        self.server_index.insert(self.hasher.hash_one(&st.key), id);
        if st.is_pending() {
            self.pending += 1;
        }
        self.servers.insert(id, st);
        id
    }

    /// Adds a client transaction with the timers it arms when first sent.
    pub fn insert_client(&mut self, now: Instant, mut ct: ClientTx) -> ClientId {
        let id = ClientId(self.next());
        for (at, kind) in ct.initial_timers(now) {
            self.schedule(at, TimerId::Client(id, kind));
        }
        let hash = self.hasher.hash_one((&*ct.branch, ct.kind()));
        self.client_index.insert(hash, id);
        self.clients.insert(id, ct);
        id
    }

    /// Call after a server transaction's state may have changed: keeps the count of pending
    /// requests right.
    pub fn server_changed(&mut self, was_pending: bool, id: ServerId) {
        let pending = self.servers.get(&id).is_some_and(ServerTx::is_pending);
        if was_pending && !pending {
            self.pending -= 1;
        }
    }

    pub fn remove_server(&mut self, id: ServerId) -> Option<ServerTx> {
        let st = self.servers.remove(&id)?;
        self.ended += 1;
        let hash = self.hasher.hash_one(&st.key);
        if self.server_index.get(&hash) == Some(&id) {
            self.server_index.remove(&hash);
        }
        if st.is_pending() {
            self.pending -= 1;
        }
        Some(st)
    }

    pub fn remove_client(&mut self, id: ClientId) -> Option<ClientTx> {
        let ct = self.clients.remove(&id)?;
        self.ended += 1;
        let hash = self.hasher.hash_one((&*ct.branch, ct.kind()));
        if self.client_index.get(&hash) == Some(&id) {
            self.client_index.remove(&hash);
        }
        Some(ct)
    }

    pub fn schedule(&mut self, at: Instant, timer: TimerId) {
        self.timers.push(Reverse((at, timer)));
    }

    pub fn schedule_all(&mut self, timers: Vec<(Instant, TimerKind)>, owner: Owner) {
        for (at, kind) in timers {
            self.schedule(at, owner.timer(kind));
        }
    }

    /// The earliest timer.
    pub fn next_timer(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// The next timer due at `now`, taken off the heap.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, TimerId)> {
        match self.timers.peek() {
            Some(Reverse((at, _))) if *at <= now => self.timers.pop().map(|Reverse(t)| t),
            _ => None,
        }
    }

    /// Drops the timers that no longer have anything to do when they outnumber the
    /// transactions' own, and gives back the room of mostly empty tables (see the module's
    /// documentation). Called after the timers due have fired: that is when transactions
    /// end. Returns whether much memory was freed since it last said so: a table was shrunk
    /// (most of what it held has gone), or at least as many transactions ended as are left
    /// (half of them, or the last one). Under a steady load that is about once per 64×T1,
    /// the time a transaction lingers; as the load falls, once per halving.
    pub fn sweep(&mut self) -> bool {
        let live = self.servers.len() + self.clients.len();
        if self.timers.len() > shrink::FLOOR + TIMERS_PER_TRANSACTION * live {
            let (servers, clients) = (&self.servers, &self.clients);
            self.timers.retain(|Reverse((at, timer))| match *timer {
                TimerId::Server(id, kind) => servers.get(&id).is_some_and(|s| s.armed(kind, *at)),
                TimerId::Client(id, kind) => clients.get(&id).is_some_and(|c| c.armed(kind, *at)),
                // A PIN session's timers are few (one a prompt frame or deadline), and its
                // sessions are bounded by the RTP ports.
                TimerId::Media(_) => true,
            });
        }
        let shrunk = [
            shrink(&mut self.timers),
            shrink(&mut self.servers),
            shrink(&mut self.server_index),
            shrink(&mut self.clients),
            shrink(&mut self.client_index),
        ];
        let halved = self.ended > 0 && self.ended >= live;
        if shrunk.contains(&true) || halved {
            self.ended = 0;
            return true;
        }
        false
    }

    pub fn is_empty(&self) -> bool {
        self.servers.is_empty() && self.clients.is_empty()
    }

    pub fn pending(&self) -> usize {
        self.pending
    }

    /// (server, client) transactions in flight.
    pub fn len(&self) -> (usize, usize) {
        (self.servers.len(), self.clients.len())
    }
}

/// Whose timers are being armed.
#[derive(Clone, Copy, Debug)]
pub enum Owner {
    Server(ServerId),
    Client(ClientId),
}

impl Owner {
    fn timer(self, kind: TimerKind) -> TimerId {
        match self {
            Owner::Server(id) => TimerId::Server(id, kind),
            Owner::Client(id) => TimerId::Client(id, kind),
        }
    }
}
