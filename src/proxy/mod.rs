//! The proxy core, sans-I/O (RFC 3261 §16 and §17, RFC 6026, RFC 3581): a deterministic
//! state machine with no sockets and no clock, in the style of `quinn-proto`.
//!
//! The I/O layer feeds it what arrives ([`Proxy::handle_message`], [`Proxy::handle_rtp`]),
//! the time ([`Proxy::handle_timeout`]) and failed sends ([`Proxy::handle_send_error`]), and
//! drains what it wants sent ([`Proxy::poll_transmit`]), the RTP sockets it wants opened or
//! closed ([`Proxy::poll_media`]) and when it next wants to be woken
//! ([`Proxy::poll_timeout`]). Tests drive it with a simulated clock.
//!
//! How a message flows through the rooms of this module:
//! - `mod.rs` (here): per-source limits for untrusted sources ([`limiter`]), then parsing;
//! - `request`: a request is checked statelessly (retransmission, Proxy-Require, OPTIONS to
//!   us, Max-Forwards, loops); CANCEL, INFO for a PIN prompt, ACK and in-dialog requests are
//!   bound to the dialogs sipscreen admitted (`dialogs`); a new request is admitted
//!   (`admit`: trusted peer, tenant source or digest, [`auth`]) and, when it is an INVITE,
//!   screened (`screen`: the policy's decision, one log event, the PIN lockout);
//! - `route`: where a request goes and the forwarded copy's byte edits (Via, Max-Forwards,
//!   Route, Record-Route), with [`edit`]; branches and tags are unguessable ([`Secret`]);
//! - `client`: the client transaction a request is forwarded on, CANCEL, send failures;
//! - `hold`: a challenged call held for its PIN (183, prompt, digits), with [`pin`];
//! - `recursion`: a user's phone's own forward (3xx) followed with that user's rights;
//! - `response`: responses matched to their client transaction and its address, relayed
//!   upstream through the server transaction, and the dialogs they make;
//! - `timers`: every transaction and PIN timer coming due;
//! - `table` and `transaction`: the transactions, their typed keys and the timer heap;
//! - `reply`: the responses and requests the core writes itself.

mod admit;
pub mod auth;
mod client;
mod dialogs;
pub mod edit;
mod hold;
mod hops;
pub mod limiter;
mod peer;
pub mod pin;
mod recursion;
mod reply;
mod request;
mod response;
mod route;
mod screen;
mod secret;
mod settings;
mod shrink;
mod table;
mod timers;
mod transaction;

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::metrics::{Metrics, Refusal, TenantCounts};
use crate::policy::{Decision, Policy};
use crate::sip::{Message, ReplyLines};

pub use hops::{Destination, Name, NextHop, Target};
pub use limiter::PerSource;
pub use peer::{MediaCommand, Peer, Transmit, Transport};
pub use pin::Subject;
pub use secret::Secret;
pub use settings::{Limits, Lockout, PinSettings, Server, Settings};
pub use table::{ServerId, SessionId};
pub use transaction::{T1, T2, T4, TIMER_C};

/// The proxy core.
pub struct Proxy {
    settings: Settings,
    policy: Arc<Policy>,
    tx: table::Table,
    /// Drained by the I/O after every call; a burst's room is given back by the sweep of
    /// [`Proxy::handle_timeout`].
    outbox: VecDeque<Transmit>,
    dialogs: dialogs::Dialogs,
    holds: hold::Holds,
    nonces: auth::Nonces,
    limiter: limiter::Limiter,
    /// The first instant the core was given: its clock for nonces.
    epoch: Option<Instant>,
    accepting: bool,
    overload: Throttle,
    /// Requests refused at admission or as strangers to every dialog, for one log line a
    /// second.
    refusals: Throttle,
    /// Messages dropped as malformed or too large, for one log line a second.
    malformed: Throttle,
    /// Requests refused because their next hop has no target, for one log line a second.
    unresolved: Throttle,
    /// Decisions kept for [`Proxy::poll_screening`] (replay), when asked for.
    screenings: Option<VecDeque<Screening>>,
    /// Next hops' located targets, their health, and requests being failed over.
    hops: hops::Hops,
    /// What is counted for `/metrics`: atomics, no lock (see [`crate::metrics`]).
    metrics: Arc<Metrics>,
    /// The decision counters of each tenant of `policy`, by `TenantId`.
    counts: Vec<Arc<TenantCounts>>,
}

/// A warning logged once a second at most, with how many times it happened meanwhile
/// (SPEC §7: a per-message log line never floods): logging each one would add cost exactly
/// when the proxy is flooded.
#[derive(Default)]
struct Throttle {
    count: u64,
    logged_at: Option<Instant>,
}

impl Throttle {
    /// Counts one; returns how many to report when it is time to log.
    fn hit(&mut self, now: Instant) -> Option<u64> {
        self.count += 1;
        if self
            .logged_at
            .is_some_and(|t| now.saturating_duration_since(t) < std::time::Duration::from_secs(1))
        {
            return None;
        }
        self.logged_at = Some(now);
        Some(std::mem::take(&mut self.count))
    }
}

/// One screened out-of-dialog INVITE: what was decided, about which call, when, from whom.
#[derive(Debug, Clone)]
pub struct Screening {
    pub call_id: Box<str>,
    /// Who called, as identified (the From or trusted P-Asserted-Identity user part): what
    /// `check --from` would be given to decide the same call again.
    pub caller: Box<str>,
    pub at: Instant,
    pub source: Peer,
    pub decision: Decision,
}

impl Proxy {
    pub fn new(settings: Settings, policy: Arc<Policy>) -> Self {
        shrink::map_large_blocks();
        // Counted into a registry of its own until [`Proxy::count_into`] says where.
        let metrics = Metrics::new(Default::default());
        let counts = metrics.tenants(&policy);
        Self {
            holds: hold::Holds::new(settings.pin.rtp_ports),
            limiter: limiter::Limiter::new(settings.limits.per_source),
            settings,
            policy,
            tx: table::Table::default(),
            outbox: VecDeque::new(),
            dialogs: dialogs::Dialogs::default(),
            nonces: auth::Nonces::default(),
            epoch: None,
            accepting: true,
            overload: Throttle::default(),
            refusals: Throttle::default(),
            malformed: Throttle::default(),
            unresolved: Throttle::default(),
            screenings: None,
            hops: hops::Hops::default(),
            metrics,
            counts,
        }
    }

    /// Counts into `metrics` (the ones `/metrics` shows) from now on.
    pub fn count_into(&mut self, metrics: Arc<Metrics>) {
        self.counts = metrics.tenants(&self.policy);
        self.metrics = metrics;
    }

    /// What the core counts.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Counts a request refused or dropped before any decision.
    fn refused(&self, why: Refusal) {
        self.metrics.refusal(why);
    }

    /// The settings the core runs with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The policy new calls are decided by.
    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    /// A reload (SPEC §9.1): new calls are decided by `policy` and run with `settings` from
    /// the next message on; calls in flight keep the decision they had. The secret stays (so
    /// branches, tags and nonces already handed out stay valid), and so do the listeners
    /// (they change only with a restart), the PIN lockouts and the per-source counters.
    pub fn reload(&mut self, settings: Settings, policy: Arc<Policy>) {
        let Settings {
            server,
            limits,
            pin,
            auth,
            secret: _,
        } = settings;
        let listen = std::mem::take(&mut self.settings.server.listen);
        self.settings.server = Server { listen, ..server };
        self.counts = self.metrics.tenants(&policy);
        if limits.per_source != self.settings.limits.per_source {
            self.limiter = limiter::Limiter::new(limits.per_source);
        }
        if pin.rtp_ports != self.settings.pin.rtp_ports {
            self.holds.set_ports(pin.rtp_ports);
        }
        self.settings.limits = limits;
        self.settings.pin = pin;
        self.settings.auth = auth;
        self.policy = policy;
        // Targets located for names the new configuration still has stay; the others and
        // their health go.
        self.forget_strangers();
    }

    /// Whether PIN challenges of `subject` are refused now, and until when.
    pub fn lockout(&self, now: Instant, subject: &pin::Subject) -> Option<Instant> {
        self.holds.lockout.locked_until(subject, now)
    }

    /// Ends a PIN lockout by hand; returns whether there was anything to clear.
    pub fn clear_lockout(&mut self, subject: &pin::Subject) -> bool {
        self.holds.lockout.clear(subject)
    }

    /// The next RTP socket to open or close.
    pub fn poll_media(&mut self) -> Option<MediaCommand> {
        self.holds.media.pop_front()
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
        let nonces = self
            .epoch
            .zip(self.nonces.next_expiry_s())
            .map(|(epoch, s)| epoch + std::time::Duration::from_secs(s));
        [
            self.tx.next_timer(),
            self.dialogs.next_expiry(),
            self.hops.next_probe(),
            self.limiter.next_sweep(),
            nonces,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Stops taking new calls (SIGTERM): new out-of-dialog requests get 503, transactions in
    /// flight go on.
    pub fn stop_accepting(&mut self) {
        self.accepting = false;
    }

    /// Whether no transaction is in flight (dialogs may still be remembered: see
    /// [`Proxy::dialogs`]).
    pub fn is_idle(&self) -> bool {
        self.tx.is_empty()
    }

    /// Dialogs remembered (SPEC §5.1).
    pub fn dialogs(&self) -> usize {
        self.dialogs.len()
    }

    /// Whether a request is still waiting for its final response (what draining waits for).
    pub fn has_pending(&self) -> bool {
        self.tx.pending() > 0
    }

    /// Transactions in flight (server, client).
    pub fn transactions(&self) -> (usize, usize) {
        self.tx.len()
    }

    /// Queues `bytes` for `to`, sent from our listener towards it.
    fn send(&mut self, to: Peer, bytes: Vec<u8>) {
        let from = self.local_for(to).addr;
        self.send_from(from, to, bytes);
    }

    fn send_from(&mut self, from: std::net::SocketAddr, to: Peer, bytes: Vec<u8>) {
        // Never send to a broadcast, multicast or unspecified address (RFC 4475 §3.3.10).
        let bad = match to.addr.ip() {
            IpAddr::V4(ip) => ip.is_broadcast() || ip.is_multicast() || ip.is_unspecified(),
            IpAddr::V6(ip) => ip.is_multicast() || ip.is_unspecified(),
        };
        if bad || to.addr.port() == 0 {
            tracing::warn!(to = %to.addr, "not sending to a broadcast, multicast or unspecified address");
            return;
        }
        if let Some(status) = bytes.strip_prefix(b"SIP/2.0 ").and_then(|r| r.first()) {
            self.metrics
                .response(u16::from(status.wrapping_sub(b'0')) * 100);
        }
        self.outbox.push_back(Transmit { to, from, bytes });
    }

    /// One message from `from` (a UDP datagram, or one message framed off a TCP stream).
    pub fn handle_message(&mut self, now: Instant, from: Peer, bytes: &[u8]) {
        if bytes.len() > self.settings.limits.max_message_size {
            self.refused(Refusal::Malformed);
            if let Some(dropped) = self.malformed.hit(now) {
                tracing::warn!(source = %from.addr, size = bytes.len(), dropped, "message too large, dropped");
            }
            return;
        }
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return; // keep-alive (RFC 5626 CRLF)
        }
        let request = !bytes.starts_with(b"SIP/2.0 ");
        if request && !self.is_network(from.addr.ip()) && !self.charge(now, from, 1.0) {
            self.refused(Refusal::RateLimit);
            return;
        }
        if has_bare_cr(bytes) {
            // A CR alone inside the header block is a line break to some peers and not to
            // us: a header we would not see (an asserted identity, say) could be smuggled.
            self.refused(Refusal::Malformed);
            if let Some(count) = self.malformed.hit(now) {
                tracing::warn!(source = %from.addr, count, "bare CR in the header block, dropped");
            }
            if request {
                if let Some(lines) = ReplyLines::find(bytes) {
                    let e = crate::sip::ParseError {
                        status: 400,
                        reason: "a CR without LF in the header block".to_owned(),
                        request: true,
                    };
                    self.send(from, reply::malformed(bytes, &lines, &e));
                }
            }
            return;
        }
        match Message::parse(bytes) {
            Ok(msg) if msg.is_request() => {
                let method = crate::metrics::method_index(msg.method().as_str().as_bytes());
                self.metrics.request(method, from.transport);
                self.handle_request(now, from, msg)
            }
            Ok(msg) => self.handle_response(now, from, msg),
            Err(e) if e.request => {
                self.refused(Refusal::Malformed);
                if let Some(count) = self.malformed.hit(now) {
                    tracing::warn!(source = %from.addr, error = %e, count, "malformed request");
                }
                if let Some(lines) = ReplyLines::find(bytes) {
                    let resp = reply::malformed(bytes, &lines, &e);
                    // Its Via could not be read: the answer goes where it came from.
                    self.send(from, resp);
                }
            }
            Err(e) => {
                self.refused(Refusal::Malformed);
                if let Some(count) = self.malformed.hit(now) {
                    tracing::warn!(source = %from.addr, error = %e, count, "malformed response, dropped");
                }
            }
        }
    }

    /// Takes `cost` from the per-source budget of an untrusted source; false when it is
    /// banned (its requests are then ignored).
    fn charge(&mut self, now: Instant, from: Peer, cost: f64) -> bool {
        match self.limiter.take(now, from.addr.ip(), cost) {
            limiter::Verdict::Pass => true,
            limiter::Verdict::Banned { started } => {
                if started {
                    tracing::warn!(source = %from.addr, ban_s = self.settings.limits.per_source.ban.as_secs(), "source over its request rate, ignored");
                }
                false
            }
        }
    }

    /// Logs a request refused at admission or for an unknown dialog (throttled).
    fn warn_refused(
        &mut self,
        now: Instant,
        from: Peer,
        msg: &Message,
        why: &'static str,
        counted: Refusal,
    ) {
        self.refused(counted);
        if let Some(count) = self.refusals.hit(now) {
            tracing::info!(source = %from.addr, call_id = msg.call_id(), method = %msg.method(), refused = count, why, "request refused");
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((at, timer)) = self.tx.pop_due(now) {
            self.fire(now, at, timer);
        }
        let ended = self
            .dialogs
            .expire(now, self.settings.limits.dialog_timeout);
        if ended > 0 {
            tracing::debug!(ended, "dialogs expired without a request");
        }
        self.send_probes(now);
        // Transactions, dialogs, sources and nonces end here: their tables give back what a
        // burst took, and when that was much, the allocator gives it back to the OS.
        let transactions = self.tx.sweep();
        let dialogs = self.dialogs.shrink();
        let hops = self.hops.shrink();
        let outbox = shrink::shrink(&mut self.outbox);
        let sources = self.limiter.sweep(now);
        let nonces = self.epoch.is_some_and(|epoch| {
            self.nonces
                .sweep(now.saturating_duration_since(epoch).as_secs())
        });
        if transactions || dialogs || hops || outbox || sources || nonces {
            shrink::release_freed_memory();
        }
    }
}

/// Whether the header block (up to the first empty line) holds a CR that does not start a
/// CRLF.
fn has_bare_cr(bytes: &[u8]) -> bool {
    let crlf = memchr::memmem::find(bytes, b"\n\r\n");
    let lf = memchr::memmem::find(bytes, b"\n\n");
    let end = match (crlf, lf) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b).unwrap_or(bytes.len()),
    };
    memchr::memchr_iter(b'\r', &bytes[..end]).any(|i| bytes.get(i + 1) != Some(&b'\n'))
}
