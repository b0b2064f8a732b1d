//! Screening (SPEC §4): an out-of-dialog INVITE becomes a call for the policy (tenant,
//! caller, dialed string, forwarder), its decision is logged once, and the verdict becomes
//! what the core does: forward, reject, or hold for a PIN. The PIN lockout (SPEC §6 item 3)
//! is applied here, since a locked-out user's challenge is refused before any prompt.

use std::collections::VecDeque;
use std::time::Instant;

use super::recursion::Recursion;
use super::route::uri_user;
use super::{Peer, Proxy, Screening};
use crate::policy::number;
use crate::policy::{Call, CallKind, Decision, Pin, PinCheck, TenantId, UserId, Verdict};
use crate::sip::forwarding;
use crate::sip::header::parse_contacts;
use crate::sip::uri::Uri;
use crate::sip::{HeaderName, Message};

impl Proxy {
    /// Screens an out-of-dialog INVITE (SPEC §4): one decision, one log event.
    pub(super) fn screen(&mut self, now: Instant, msg: &Message, from: Peer) -> Screened {
        let policy = self.policy.clone();
        let ruri = msg.request_uri().and_then(|u| Uri::parse(u).ok());
        let from_uri = msg.from().and_then(|f| Uri::parse(f.uri).ok());
        let domains: Vec<&str> = [
            from_uri.as_ref().map(|u| u.host),
            ruri.as_ref().map(|u| u.host),
        ]
        .into_iter()
        .flatten()
        .filter(|h| !h.is_empty())
        .collect();
        let Some(tenant) = policy.tenant_for(&domains, Some(from.addr.ip())) else {
            tracing::info!(call_id = msg.call_id(), source = %from.addr, domains = ?domains, decision = "deny", stage = "tenant", "no tenant for this request");
            return Screened::Reject(403, "Forbidden", self.reason_header());
        };
        let trusted = self.settings.server.is_trusted(from.addr.ip());
        let pai_user = trusted
            .then(|| {
                msg.header_values(HeaderName::PAssertedIdentity)
                    .flat_map(|v| parse_contacts(v).ok().into_iter().flatten())
                    .find_map(|na| uri_user(na.uri))
            })
            .flatten();
        let caller = pai_user
            .or_else(|| from_uri.as_ref().and_then(|u| u.user))
            .unwrap_or("");
        let caller = number::uri_user(caller);
        // Diversion / History-Info change whose rights apply only from a trusted peer
        // (SPEC §4.7): a phone must not borrow its boss's rights.
        let forwarder = forwarding::forwarder(msg);
        if let (Some(f), false) = (&forwarder, trusted) {
            tracing::info!(call_id = msg.call_id(), source = %from.addr, forwarder = f.user, "forwarding headers from an untrusted peer ignored for rights");
        }
        let forwarded_by = forwarder
            .filter(|_| trusted)
            .map(|f| number::uri_user(f.user));
        let dialed = ruri.as_ref().and_then(|u| u.user).unwrap_or("");
        let call = Call {
            tenant,
            caller: &caller,
            dialed,
            forwarded_by: forwarded_by.as_deref(),
        };
        let mut decision = policy.decide(&call);
        let user = decision.identity.map(|u| (decision.tenant, u));
        // SPEC §6 item 3: a locked-out user's challenges are all refused, and a wrong PIN
        // given with the dial prefix counts as a failure.
        if let Some(user) = user {
            let dial_prefix_pin = decision.pin.is_some();
            if (dial_prefix_pin || matches!(decision.verdict, Verdict::Challenge(_)))
                && self.holds.lockout.is_locked(user, now)
            {
                tracing::info!(call_id = msg.call_id(), source = %from.addr, "PIN locked out for this user, challenge refused");
                decision.verdict = Verdict::Deny;
            } else if decision.pin == Some(PinCheck::Rejected) {
                self.pin_failure(now, user, msg.call_id());
            }
        }
        self.log_decision(msg, from, &decision);
        if let Some(list) = self.screenings.as_mut() {
            list.push_back(Screening {
                call_id: msg.call_id().into(),
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
        let Some(hop) = policy
            .next_hop(&unlocked)
            .map(|h| self.settings.server.hop(h))
        else {
            return Screened::Reject(403, "Forbidden", self.reason_header());
        };
        let called = (decision.call == CallKind::Internal)
            .then(|| policy.tenants[tenant].user_by_id(&decision.dialed))
            .flatten()
            .map(|_| decision.dialed.to_string());
        let recursion = called.map(|called| Recursion {
            tenant,
            caller: caller.to_string(),
            called,
            targets: VecDeque::new(),
            active: false,
        });
        match decision.verdict {
            Verdict::Allow => Screened::Forward(hop, recursion),
            Verdict::Deny => Screened::Reject(403, "Forbidden", self.reason_header()),
            Verdict::Challenge(source) => Screened::Challenge {
                hop,
                recursion,
                pin: policy.pin(tenant, source).clone(),
                user,
            },
        }
    }

    /// A wrong PIN for `user`; the start of a lockout is logged once.
    pub(super) fn pin_failure(&mut self, now: Instant, user: (TenantId, UserId), call_id: &str) {
        if self
            .holds
            .lockout
            .fail(user, now, &self.settings.pin.lockout)
        {
            let t = &self.policy.tenants[user.0].spec;
            tracing::warn!(
                call_id,
                tenant = &*t.name,
                user = &*t.users[user.1].name,
                lock_s = self.settings.pin.lockout.lock.as_secs(),
                "too many wrong PINs: user locked out"
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

/// What screening made of an INVITE.
pub(super) enum Screened {
    /// Forward there; with a recursion context when the call goes to a user's phone, whose
    /// own forward (3xx) sipscreen follows with that user's rights (SPEC §4.7).
    Forward(Peer, Option<Recursion>),
    /// Hold the call and ask for `pin`; forward to `hop` once it is right.
    Challenge {
        hop: Peer,
        recursion: Option<Recursion>,
        pin: Pin,
        user: Option<(TenantId, UserId)>,
    },
    Reject(u16, &'static str, Vec<(&'static str, String)>),
}
