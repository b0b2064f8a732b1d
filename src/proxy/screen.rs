//! Screening (SPEC §4): an out-of-dialog INVITE becomes a call for the policy (tenant,
//! caller, dialed string, forwarder), its decision is logged once, and the verdict becomes
//! what the core does: forward, reject, or hold for a PIN. The PIN lockout (SPEC §6 item 3)
//! is applied here, since a locked-out user's challenge is refused before any prompt.

use std::collections::VecDeque;
use std::time::Instant;

use super::admit::{Admitted, Voucher};
use super::pin::Subject;
use super::recursion::Recursion;
use super::{Peer, Proxy, Screening};
use crate::metrics::PinOutcome;
use crate::policy::number;
use crate::policy::{Call, CallKind, Decision, Pin, PinCheck, Policy, TenantId, UserId, Verdict};
use crate::sip::forwarding;
use crate::sip::uri::Uri;
use crate::sip::Message;

impl Proxy {
    /// Screens an admitted out-of-dialog INVITE (SPEC §4): one decision, one log event.
    pub(super) fn screen(
        &mut self,
        now: Instant,
        msg: &Message,
        from: Peer,
        admitted: &Admitted,
    ) -> Screened {
        let policy = self.policy.clone();
        let tenant = admitted.tenant;
        let ruri = msg.request_uri().and_then(|u| Uri::parse(u).ok());
        let caller = admitted.caller.as_str();
        // Diversion / History-Info change whose rights apply only from a trusted peer
        // (SPEC §4.7): a phone must not borrow its boss's rights.
        let trusted = admitted.voucher == Voucher::TrustedPeer;
        let forwarder = forwarding::forwarder(msg);
        if let (Some(f), false) = (&forwarder, trusted) {
            tracing::info!(call_id = msg.call_id(), source = %from.addr, forwarder = f.user, "forwarding headers from an untrusted peer ignored for rights");
        }
        let forwarded_by = forwarder
            .filter(|_| trusted)
            .map(|f| number::uri_user(f.user));
        let dialed = ruri.as_ref().and_then(|u| u.user).unwrap_or("");
        // SPEC §7: an absurdly long dialed string costs nothing: no normalization, no cache.
        // Nor is a call screened on a string the next hop could read otherwise: an empty one,
        // or one with escapes sipscreen cannot decode.
        let unreadable = dialed.is_empty() || !crate::percent::decodes_cleanly(dialed);
        if dialed.len() > self.settings.limits.max_dialed_length || unreadable {
            self.refused(crate::metrics::Refusal::Malformed);
            if let Some(count) = self.malformed.hit(now) {
                tracing::info!(call_id = msg.call_id(), source = %from.addr, length = dialed.len(), count, "dialed string too long, empty or badly escaped, 484");
            }
            return Screened::Reject(484, "Address Incomplete", Vec::new());
        }
        let call = Call {
            tenant,
            caller,
            dialed,
            forwarded_by: forwarded_by.as_deref(),
        };
        // Timed for the decision-time histogram: the one clock read of the core that is not
        // its `now` (the simulated clock of the tests would say nothing about it).
        let started = std::time::Instant::now();
        let mut decision = policy.decide(&call);
        let took = started.elapsed();
        let user = decision.identity.map(|u| (decision.tenant, u));
        // SPEC §6 items 3 and 7: wrong PINs count against the user, the source address and,
        // for a caller who is not a user, the caller's number; while any of them is locked
        // out, every challenge is refused, and a wrong PIN given with the dial prefix counts
        // as a failure.
        let subjects = pin_subjects(&policy, tenant, user, caller, from);
        let dial_prefix_pin = decision.pin.is_some();
        if (dial_prefix_pin || matches!(decision.verdict, Verdict::Challenge(_)))
            && self.holds.lockout.is_locked(&subjects, now)
        {
            tracing::info!(call_id = msg.call_id(), source = %from.addr, "PIN locked out, challenge refused");
            self.metrics.pin(PinOutcome::LockedOut);
            decision.verdict = Verdict::Deny;
        } else if decision.pin == Some(PinCheck::Rejected) {
            self.metrics.pin(PinOutcome::Rejected);
            self.pin_failure(now, &subjects, msg.call_id());
        } else if decision.pin == Some(PinCheck::Accepted) {
            self.metrics.pin(PinOutcome::Accepted);
        }
        if let Some(counts) = self.counts.get(decision.tenant) {
            self.metrics.decision(counts, &decision, took);
        }
        self.log_decision(msg, from, &decision);
        if let Some(list) = self.screenings.as_mut() {
            list.push_back(Screening {
                call_id: msg.call_id().into(),
                caller: caller.into(),
                at: now,
                source: from,
                decision: decision.clone(),
            });
        }
        // Where the call goes once allowed (for a challenge: once the PIN is right).
        let unlocked = Decision {
            verdict: Verdict::Allow,
            ..decision.clone()
        };
        let Some(hop) = policy.next_hop(&unlocked) else {
            return Screened::Reject(403, "Forbidden", self.reason_header());
        };
        let Some(hop) = self.hop_targets(now, hop) else {
            return Screened::Reject(503, "Service Unavailable", Vec::new());
        };
        let called = (decision.call == CallKind::Internal)
            .then(|| policy.tenants[tenant].user_by_id(&decision.dialed))
            .flatten()
            .map(|_| decision.dialed.to_string());
        let recursion = called.map(|called| Recursion {
            tenant,
            caller: caller.to_owned(),
            called,
            targets: VecDeque::new(),
            active: false,
        });
        match decision.verdict {
            Verdict::Allow => Screened::Forward(hop, recursion),
            Verdict::Deny => Screened::Reject(403, "Forbidden", self.reason_header()),
            Verdict::Challenge(source) => Screened::Challenge(Challenge {
                hop,
                recursion,
                pin: policy.pin(tenant, source).clone(),
                user,
                subjects,
            }),
        }
    }

    /// A wrong PIN; the start of each lockout is logged once.
    pub(super) fn pin_failure(&mut self, now: Instant, subjects: &[Subject], call_id: &str) {
        let settings = self.settings.pin.lockout;
        for subject in self.holds.lockout.fail(subjects, now, &settings) {
            self.metrics.lockout();
            let who = match &subject {
                Subject::User(t, u) => format!("tenant {t} user {u}"),
                Subject::Source(ip) => format!("source {ip}"),
                Subject::Caller(t, number) => format!("tenant {t} caller {number}"),
                Subject::Login(t, u) => format!("tenant {t} username {u}"),
            };
            tracing::warn!(
                call_id,
                locked = who,
                lock_s = settings.lock.as_secs(),
                "too many wrong PINs: locked out"
            );
        }
    }

    /// The one structured event of a decision (SPEC §4.8). Rule names go to the log, never
    /// to the caller; nothing is formatted when the event is filtered out.
    pub(super) fn log_decision(&self, msg: &Message, from: Peer, d: &Decision) {
        if !tracing::enabled!(target: "sipscreen::decision", tracing::Level::INFO) {
            return;
        }
        let policy = &self.policy;
        let t = &policy.tenants[d.tenant].spec;
        let (stage, rule) = policy.stage_and_rule(d);
        tracing::info!(
            target: "sipscreen::decision",
            call_id = msg.call_id(),
            source = %from.addr,
            tenant = &*t.name,
            identity = d.identity.map(|u| &*t.users[u].name),
            dialed = &*d.dialed,
            e164 = d.e164.as_deref(),
            call = d.call.as_str(),
            decision = d.verdict.as_str(),
            stage,
            rule,
            next_hop = policy.next_hop(d).map(|h| policy.hop_name(h)),
            "call screened"
        );
    }
}

/// Where a request goes: the first target, and the ones tried after it if it fails
/// (SPEC §5.2).
pub(super) struct Targets {
    pub(super) first: Peer,
    pub(super) rest: Vec<Peer>,
}

impl Targets {
    /// A single target, with nothing to fail over to.
    pub(super) fn one(peer: Peer) -> Self {
        Self {
            first: peer,
            rest: Vec::new(),
        }
    }
}

impl Proxy {
    /// The targets of `hop` for a new request; `None` (and a log line, throttled) when it
    /// has none: its names do not resolve yet.
    pub(super) fn hop_targets(
        &mut self,
        now: Instant,
        hop: crate::policy::HopId,
    ) -> Option<Targets> {
        let mut all = self.targets(hop).into_iter();
        match all.next() {
            Some(first) => Some(Targets {
                first,
                rest: all.collect(),
            }),
            None => {
                if let Some(refused) = self.unresolved.hit(now) {
                    let hop = self.policy.hop_name(hop).to_owned();
                    tracing::warn!(
                        next_hop = hop,
                        refused,
                        "next hop does not resolve: 503 to new calls for it until it does"
                    );
                }
                None
            }
        }
    }
}

/// What screening made of an INVITE.
pub(super) enum Screened {
    /// Forward there; with a recursion context when the call goes to a user's phone, whose
    /// own forward (3xx) sipscreen follows with that user's rights (SPEC §4.7).
    Forward(Targets, Option<Recursion>),
    /// Hold the call and ask for a PIN.
    Challenge(Challenge),
    Reject(u16, &'static str, Vec<(&'static str, String)>),
}

/// A challenged call: where it goes once the PIN is right, the PIN, and whose failures a
/// wrong one counts against.
pub(super) struct Challenge {
    pub(super) hop: Targets,
    pub(super) recursion: Option<Recursion>,
    pub(super) pin: Pin,
    pub(super) user: Option<(TenantId, UserId)>,
    pub(super) subjects: Vec<Subject>,
}

/// Whose failures a wrong PIN of this call counts against (SPEC §6 item 7).
fn pin_subjects(
    policy: &Policy,
    tenant: TenantId,
    user: Option<(TenantId, UserId)>,
    caller: &str,
    from: Peer,
) -> Vec<Subject> {
    let t = &policy.tenants[tenant].spec;
    let mut out = vec![Subject::source(from.addr.ip())];
    match user {
        Some((_, u)) => out.push(Subject::User(t.name.clone(), t.users[u].name.clone())),
        None => out.push(Subject::Caller(t.name.clone(), caller.into())),
    }
    out
}
