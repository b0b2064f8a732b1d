//! Recursion on a user's phone's own forward (RFC 3261 §16.5, §16.7 item 4; SPEC §4.7): the
//! targets of a 3xx are each checked against the forwarding user's rights, the denied ones
//! are skipped, and the allowed ones are tried in q order; the caller gets 403 when none is
//! allowed.

use std::collections::VecDeque;
use std::time::Instant;

use super::reply::splice_request_uri;
use super::route::loop_hash;
use super::transaction::{ServerState, Unanswered};
use super::{Peer, Proxy, ServerId};
use crate::policy::{Call, TenantId};
use crate::sip::header::{parse_contacts, parse_max_forwards};
use crate::sip::uri::Uri;
use crate::sip::{HeaderName, Message};

/// Following a user's phone's own forward (3xx) with that user's rights (SPEC §4.7).
#[derive(Debug)]
pub(super) struct Recursion {
    pub(super) tenant: TenantId,
    /// The caller, as screening saw them.
    pub(super) caller: String,
    /// The called user (their extension), whose rights the forward targets get.
    pub(super) called: String,
    /// Allowed targets not tried yet: where to send, and the Request-URI.
    pub(super) targets: VecDeque<(Peer, String)>,
    /// Whether a 3xx was followed (then failures move on to the next target).
    pub(super) active: bool,
}

/// Targets of one 3xx that are decided and tried, at most.
const MAX_TARGETS: usize = 8;

impl Proxy {
    /// A non-2xx final for an INVITE to a user's phone: on a 3xx, check each Contact against
    /// that user's rights and try the allowed ones in q order (§16.5, §16.7 item 4; SPEC §4.7);
    /// on a failure while recursing, try the next one. Returns whether the response was taken
    /// care of here (else it is relayed upstream).
    pub(super) fn recurse(
        &mut self,
        now: Instant,
        sid: ServerId,
        msg: &Message,
        code: u16,
    ) -> bool {
        let policy = self.policy.clone();
        // Only an unanswered request is forwarded again.
        let Some(u) = self.tx.server(sid).and_then(|s| s.unanswered()) else {
            return false;
        };
        let Some(rec) = &u.recursion else {
            return false;
        };
        if (300..400).contains(&code) && !rec.active {
            let mut contacts: Vec<(f32, String)> = msg
                .header_values(HeaderName::Contact)
                .flat_map(|v| parse_contacts(v).ok().into_iter().flatten())
                .map(|na| {
                    let q = na
                        .param("q")
                        .flatten()
                        .and_then(|q| q.parse().ok())
                        .unwrap_or(1.0);
                    (q, na.uri.to_owned())
                })
                .collect();
            // Highest q first; equal q keep their order (RFC 3261 §16.6).
            contacts.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal));
            let mut targets = VecDeque::new();
            // At most MAX_TARGETS targets are decided: a 3xx is not a way to try many numbers.
            for (_, uri) in contacts.into_iter().take(MAX_TARGETS) {
                let Some(user) = Uri::parse(&uri).ok().and_then(|u| u.user) else {
                    continue;
                };
                if user.len() > self.settings.limits.max_dialed_length {
                    continue;
                }
                let call = Call {
                    tenant: rec.tenant,
                    caller: &rec.caller,
                    dialed: user,
                    forwarded_by: Some(&rec.called),
                };
                let decision = policy.decide(&call);
                self.log_decision(&u.request, u.from, &decision);
                // A target with a dial-prefix PIN is never tried: a phone's 3xx must not be
                // an unlocked way to guess PINs.
                if decision.pin.is_some() {
                    continue;
                }
                // A forward target goes to its hop's first target: the forward itself is
                // the failover (the next Contact is tried when it fails).
                if let Some(hop) = policy
                    .next_hop(&decision)
                    .and_then(|h| self.first_target(h))
                {
                    targets.push_back((hop, uri));
                }
            }
            let Some(rec) = self.recursion_mut(sid) else {
                return false;
            };
            rec.active = true;
            let none = targets.is_empty();
            rec.targets = targets;
            // From here the 3xx's targets are tried, not the next hop's.
            self.hops.end(sid);
            if none {
                // Every target is denied to the forwarding user: the caller gets 403.
                self.respond(now, sid, 403, "Forbidden", &self.reason_header());
                return true;
            }
        } else if !rec.active {
            return false;
        }
        // Try the next allowed target, if the caller has not given up.
        let cancelled = self
            .tx
            .server(sid)
            .is_none_or(|st| st.state != ServerState::Proceeding);
        let next = self.recursion_mut(sid).and_then(|r| r.targets.pop_front());
        let Some((hop, uri)) = next.filter(|_| !cancelled) else {
            return false;
        };
        let Some(hash) = self.unanswered(sid).map(|u| loop_hash(&u.request)) else {
            return false;
        };
        let branch = self.new_branch(hash);
        let Some(u) = self.unanswered(sid) else {
            return false;
        };
        let (from, request) = (u.from, &u.request);
        let max_forwards = request
            .header_str(HeaderName::MaxForwards)
            .and_then(|v| parse_max_forwards(v).ok());
        let mut bytes = self.forward_bytes(
            request,
            from,
            hop,
            &branch,
            self.settings.server.record_route,
            max_forwards,
        );
        if let Some(range) = request.request_uri_range() {
            bytes = splice_request_uri(&bytes, range, &uri);
        }
        if let Some(u) = self.tx.server_mut(sid).and_then(|s| s.unanswered_mut()) {
            u.branch = branch;
        }
        self.start_client(now, sid, hop, bytes, true);
        true
    }

    fn unanswered(&self, sid: ServerId) -> Option<&Unanswered> {
        self.tx.server(sid).and_then(|s| s.unanswered())
    }

    fn recursion_mut(&mut self, sid: ServerId) -> Option<&mut Recursion> {
        self.tx
            .server_mut(sid)
            .and_then(|s| s.unanswered_mut())
            .and_then(|u| u.recursion.as_mut())
    }
}
