//! Deciding one call (SPEC §4.1–§4.7, §6 item 1): identity, classification, Call ACL, call
//! permissions by tier, the PIN; and, when asked, the explanation of every step (`check`).
//! What a decision holds is in `decision`.

use super::acl::{AclOutcome, Action};
use super::decision::{Basis, Call, CallKind, Decision, PinCheck, PinSource, Tier, Verdict};
use super::number::{clean_dialed, Normalized, Reading};
use super::{Holder, IncallId, Internal, OutcallId, PermId, Policy, Tenant, TenantSpec, UserId};

/// Collects explanation lines when asked to; costs nothing on the proxy's path.
struct Trace<'t>(Option<&'t mut Vec<String>>);

impl Trace<'_> {
    fn on(&self) -> bool {
        self.0.is_some()
    }
    fn note(&mut self, line: impl FnOnce() -> String) {
        if let Some(lines) = self.0.as_deref_mut() {
            lines.push(line());
        }
    }
}

impl Policy {
    /// Decides a call (SPEC §4). A dial-prefix PIN (SPEC §6 item 1) is taken off the dialed
    /// number and resolves a challenge.
    pub fn decide(&self, call: &Call<'_>) -> Decision {
        self.decide_traced(call, None, Trace(None))
    }

    /// Decides a call as [`Policy::decide`] does, resolving a challenge with `pin` when given,
    /// and returns the explanation: every step and every rule considered.
    pub fn explain(&self, call: &Call<'_>, pin: Option<&str>) -> (Decision, Vec<String>) {
        let mut lines = Vec::new();
        let d = self.decide_traced(call, pin, Trace(Some(&mut lines)));
        (d, lines)
    }

    fn decide_traced(&self, call: &Call<'_>, pin: Option<&str>, mut tr: Trace<'_>) -> Decision {
        let tenant = &self.tenants[call.tenant];
        let t = &tenant.spec;

        // Identity (SPEC §4.1, §4.7).
        let (caller_user, forwarder) = identify(tenant, call, &mut tr);
        let identity = forwarder.or(caller_user);
        let region = identity.and_then(|u| t.users[u].region).unwrap_or(t.region);

        // The dialed number (SPEC §3.1) and a dial-prefix PIN (SPEC §6 item 1).
        let cleaned = clean_dialed(call.dialed);
        let (dialed, prefix_pin) = self.split_dial_prefix(&cleaned);
        tr.note(|| format!("dialed `{}` → `{dialed}`", call.dialed));
        if prefix_pin.is_some() {
            tr.note(|| "a PIN was given with the dial prefix and taken off the number".to_owned());
        }
        let pin = pin.or(prefix_pin);

        // Classification (SPEC §4.2).
        let norm = tenant.numbers.normalize(dialed, region, &t.area_code);
        tr.note(|| describe_normalization(&norm, region, &t.area_code));
        let incall = norm
            .e164
            .as_deref()
            .and_then(|e| tenant.dids.get(e).copied());
        let internal = tenant.internal(dialed);
        let kind = if incall.is_some() {
            CallKind::Incoming
        } else if internal.is_some() || norm.reading == Reading::ServiceCode {
            CallKind::Internal
        } else {
            CallKind::External
        };
        let outcall = (kind == CallKind::External)
            .then(|| tenant.route(dialed))
            .flatten();
        tr.note(|| match (kind, incall, internal, outcall) {
            (CallKind::Incoming, Some(i), ..) => {
                format!("incoming call: DID of incall {}", t.incalls[i].name)
            }
            (CallKind::Internal, _, Some(target), _) => {
                format!("internal call to {}", describe_internal(tenant, target))
            }
            (CallKind::Internal, ..) => "internal call: service code".to_owned(),
            (_, _, _, Some(o)) => format!("external call routed by outcall {}", t.outcalls[o].name),
            _ => "external call, no outcall routes it".to_owned(),
        });

        let mut d = Decision {
            verdict: Verdict::Allow,
            call: kind,
            tenant: call.tenant,
            identity: if kind == CallKind::Incoming {
                caller_user.or(identity)
            } else {
                identity
            },
            forwarded: forwarder.is_some(),
            dialed: dialed.into(),
            e164: if kind == CallKind::Internal {
                None
            } else {
                norm.e164.clone()
            },
            outcall,
            incall,
            acl: None,
            basis: Basis::NoMatch,
            pin: None,
        };

        // Stage 1: Call ACL (SPEC §4.3), external calls only.
        if kind == CallKind::External && call_acl(t, identity, &mut d, &mut tr) == Action::Deny {
            return d;
        }

        // Stage 2: call permissions (SPEC §4.4, §4.6).
        let (verdict, basis) = self.permissions(tenant, &d, call.caller, internal, &mut tr);
        d.verdict = verdict;
        d.basis = basis;
        if let (Verdict::Challenge(_), Some(pin)) = (d.verdict, pin) {
            self.resolve_pin(&mut d, pin);
            tr.note(|| {
                format!(
                    "PIN {}",
                    if d.pin == Some(PinCheck::Accepted) {
                        "accepted"
                    } else {
                        "rejected"
                    }
                )
            });
        }
        d
    }

    /// The leading `<dial_prefix><pin>*` of a dialed string, when it has one: what the proxy
    /// takes off the Request-URI before forwarding (SPEC §6 item 1).
    pub fn dial_prefix_part<'d>(&self, dialed: &'d str) -> Option<&'d str> {
        let (number, pin) = self.split_dial_prefix(dialed);
        pin.map(|_| &dialed[..dialed.len() - number.len()])
    }

    /// Splits `<dial_prefix><pin>*<number>` into the number and the PIN.
    fn split_dial_prefix<'d>(&self, dialed: &'d str) -> (&'d str, Option<&'d str>) {
        let parsed = self.dial_prefix.as_deref().and_then(|prefix| {
            let rest = dialed.strip_prefix(prefix)?;
            let (pin, number) = rest.split_once('*')?;
            let pin_ok = !pin.is_empty() && pin.bytes().all(|b| b.is_ascii_digit());
            (pin_ok && !number.is_empty()).then_some((number, Some(pin)))
        });
        parsed.unwrap_or((dialed, None))
    }

    /// Stage 2: finds the deciding tier and what it says.
    fn permissions(
        &self,
        tenant: &Tenant,
        d: &Decision,
        caller: &str,
        internal: Option<Internal>,
        tr: &mut Trace<'_>,
    ) -> (Verdict, Basis) {
        let t = &tenant.spec;
        let subject: std::borrow::Cow<'_, str> = match d.call {
            CallKind::Incoming => clean_dialed(caller),
            _ => std::borrow::Cow::Borrowed(&*d.dialed),
        };
        // At most three tiers, in order; each names whose permissions it pools.
        let mut tiers = [None; 3];
        match (d.call, d.identity) {
            (CallKind::Incoming, _) => {
                let i = d.incall.expect("incoming calls have an incall");
                tiers[0] = Some(TierOf::Incall(i));
            }
            (CallKind::Internal, Some(u)) if matches!(internal, Some(Internal::User(_))) => {
                tiers = [Some(TierOf::User(u)), Some(TierOf::Groups(u)), None];
            }
            (CallKind::Internal, _) => {
                tr.note(|| "stage 2, call permissions: only internal calls to a user's extension by a user are checked, allow".to_owned());
                return (Verdict::Allow, Basis::OutOfScope);
            }
            (CallKind::External, identity) => {
                let outcall = d.outcall.map(TierOf::Outcall);
                tiers = match identity {
                    Some(u) => [Some(TierOf::User(u)), Some(TierOf::Groups(u)), outcall],
                    None => [outcall, None, None],
                };
            }
        }
        tr.note(|| format!("stage 2, call permissions, matched against `{subject}`:"));
        let mut matched_entries = Vec::new();
        tenant.perm_entries.matching(&subject, &mut matched_entries);
        let mut found = Vec::new();
        for of in tiers.into_iter().flatten() {
            found.clear();
            of.for_each_holder(t, |h| h.matching(&matched_entries, &mut found));
            found.sort_unstable();
            found.dedup();
            if tr.on() {
                explain_tier(t, of, &subject, &found, tr);
            }
            if !found.is_empty() {
                return self.tier_verdict(t, d.identity, of.tier(), &found, tr);
            }
        }
        tr.note(|| "  no permission matched in any tier, allow".to_owned());
        (Verdict::Allow, Basis::NoMatch)
    }

    /// Within the deciding tier: any allow allows; otherwise a deny without a password denies,
    /// and denies that all have passwords challenge (SPEC §4.4, §4.5).
    fn tier_verdict(
        &self,
        t: &TenantSpec,
        identity: Option<UserId>,
        tier: Tier,
        found: &[PermId],
        tr: &mut Trace<'_>,
    ) -> (Verdict, Basis) {
        let perms = &t.permissions;
        if let Some(&p) = found.iter().find(|&&p| perms[p].mode == Action::Allow) {
            tr.note(|| format!("  {tier} decides: {} allows", perms[p].name));
            return (Verdict::Allow, Basis::Allowed { tier, perm: p });
        }
        if let Some(&p) = found.iter().find(|&&p| perms[p].password.is_none()) {
            tr.note(|| format!("  {tier} decides: {} denies (no password)", perms[p].name));
            return (Verdict::Deny, Basis::Denied { tier, perm: p });
        }
        if let Some(u) = identity.filter(|&u| t.users[u].password.is_some()) {
            tr.note(|| {
                format!(
                    "  {tier} decides: password required; user {}'s PIN unlocks it",
                    t.users[u].name
                )
            });
            return (
                Verdict::Challenge(PinSource::User(u)),
                Basis::PasswordRequired {
                    tier,
                    perms: found.to_vec(),
                },
            );
        }
        let first = found[0];
        if found
            .iter()
            .all(|&p| perms[p].password == perms[first].password)
        {
            tr.note(|| {
                format!(
                    "  {tier} decides: password required ({}'s)",
                    perms[first].name
                )
            });
            return (
                Verdict::Challenge(PinSource::Permission(first)),
                Basis::PasswordRequired {
                    tier,
                    perms: found.to_vec(),
                },
            );
        }
        tr.note(|| {
            format!(
                "  {tier} decides: the matching denies have different passwords and the user has no call_permission_password: no single PIN unlocks them, deny"
            )
        });
        (
            Verdict::Deny,
            Basis::ConflictingPasswords {
                tier,
                perms: found.to_vec(),
            },
        )
    }
}

/// Who calls and who forwarded, as users of the tenant (SPEC §4.1, §4.7).
fn identify(
    tenant: &Tenant,
    call: &Call<'_>,
    tr: &mut Trace<'_>,
) -> (Option<UserId>, Option<UserId>) {
    let t = &tenant.spec;
    let caller_user = tenant.user_by_id(call.caller);
    tr.note(|| match caller_user {
        Some(u) => format!(
            "caller `{}`: user {} (extension {})",
            call.caller, t.users[u].name, t.users[u].extension
        ),
        None => format!(
            "caller `{}`: not a user of tenant {} (unknown caller)",
            call.caller, t.name
        ),
    });
    let forwarder = call.forwarded_by.and_then(|f| tenant.user_by_id(f));
    if let Some(f) = call.forwarded_by {
        tr.note(|| match forwarder {
            Some(u) => format!(
                "forwarded by `{f}`: user {}, whose rights apply",
                t.users[u].name
            ),
            None => format!(
                "forwarded by `{f}`: not a user of tenant {}, the caller's rights apply",
                t.name
            ),
        });
    }
    (caller_user, forwarder)
}

/// Stage 1 of an external call (SPEC §4.3): the identity's Call ACL, when it has one. The
/// outcome is recorded in `d`; a deny is final (no PIN) and makes the decision.
fn call_acl(
    t: &TenantSpec,
    identity: Option<UserId>,
    d: &mut Decision,
    tr: &mut Trace<'_>,
) -> Action {
    if let Some(acl_id) = identity.and_then(|u| t.users[u].call_acl) {
        let acl = &t.call_acls[acl_id];
        let mut matching = Vec::new();
        if let Some(e) = &d.e164 {
            t.acl_patterns.matching(e, &mut matching);
        }
        let (action, outcome) = acl.evaluate(&matching);
        if tr.on() {
            let decided = match outcome {
                AclOutcome::Rule(i) => i + 1,
                AclOutcome::Default => acl.rules().len(),
            };
            tr.note(|| format!("stage 1, call_acl {} (default {}):", acl.name, acl.default));
            for r in &acl.rules()[..decided] {
                let p = t.acl_patterns.get(r.pattern);
                let hit = matching.binary_search(&r.pattern).is_ok();
                tr.note(|| {
                    format!(
                        "  metric {} pattern {} ({}) → {}",
                        r.metric,
                        p.name,
                        describe_pattern(p),
                        if hit {
                            format!("matched: {}", r.action)
                        } else {
                            "no match".to_owned()
                        }
                    )
                });
            }
            if d.e164.is_none() {
                tr.note(|| {
                    "  the dialed number has no E.164 form: no pattern can match".to_owned()
                });
            }
        }
        d.acl = Some((acl_id, outcome));
        if action == Action::Deny {
            d.verdict = Verdict::Deny;
            d.basis = Basis::AclDenied;
            tr.note(|| "  an ACL deny is final: no PIN".to_owned());
        }
        action
    } else {
        tr.note(|| "stage 1, call_acl: none assigned, allow".to_owned());
        Action::Allow
    }
}

/// Whose permissions a tier pools.
#[derive(Clone, Copy, Debug)]
enum TierOf {
    User(UserId),
    /// Every group the user is a member of.
    Groups(UserId),
    Outcall(OutcallId),
    Incall(IncallId),
}

impl TierOf {
    fn tier(self) -> Tier {
        match self {
            TierOf::User(_) => Tier::User,
            TierOf::Groups(_) => Tier::Group,
            TierOf::Outcall(_) => Tier::Outcall,
            TierOf::Incall(_) => Tier::Incall,
        }
    }

    fn for_each_holder<'t>(self, t: &'t TenantSpec, mut f: impl FnMut(&'t Holder)) {
        match self {
            TierOf::User(u) => f(&t.users[u].permissions),
            TierOf::Groups(u) => t.users[u]
                .groups
                .iter()
                .for_each(|&g| f(&t.groups[g].permissions)),
            TierOf::Outcall(o) => f(&t.outcalls[o].permissions),
            TierOf::Incall(i) => f(&t.incalls[i].permissions),
        }
    }

    fn owner(self, t: &TenantSpec) -> String {
        match self {
            TierOf::User(u) => format!("user {}", t.users[u].name),
            TierOf::Groups(u) => {
                let names: Vec<&str> = t.users[u]
                    .groups
                    .iter()
                    .map(|&g| &*t.groups[g].name)
                    .collect();
                format!(
                    "groups: {}",
                    if names.is_empty() {
                        "none".to_owned()
                    } else {
                        names.join(", ")
                    }
                )
            }
            TierOf::Outcall(o) => format!("outcall {}", t.outcalls[o].name),
            TierOf::Incall(i) => format!("incall {}", t.incalls[i].name),
        }
    }
}

fn explain_tier(t: &TenantSpec, of: TierOf, subject: &str, found: &[PermId], tr: &mut Trace<'_>) {
    let mut all = Vec::new();
    of.for_each_holder(t, |h| all.extend_from_slice(&h.all));
    tr.note(|| {
        format!(
            "  {} ({}): {} permission(s)",
            of.tier(),
            of.owner(t),
            all.len()
        )
    });
    for p in all {
        let perm = &t.permissions[p];
        let state = if !perm.enabled {
            "disabled, ignored".to_owned()
        } else if found.contains(&p) {
            let hit: Vec<&str> = perm
                .extensions
                .iter()
                .filter(|e| e.matches(subject))
                .map(|e| e.as_str())
                .collect();
            format!("matched by {}", hit.join(", "))
        } else {
            "no match".to_owned()
        };
        let exts: Vec<&str> = perm.extensions.iter().map(|e| e.as_str()).collect();
        let pw = if perm.password.is_some() {
            " with password"
        } else {
            ""
        };
        tr.note(|| {
            format!(
                "    {} ({}{pw}) [{}]: {state}",
                perm.name,
                perm.mode,
                exts.join(", ")
            )
        });
    }
}

fn describe_normalization(n: &Normalized, region: super::number::Region, area: &str) -> String {
    let e = n.e164.as_deref().unwrap_or("none");
    let how = match &n.reading {
        Reading::Plus => "already E.164".to_owned(),
        Reading::International { prefix } => {
            format!("international prefix {prefix} of {region} replaced by +")
        }
        Reading::National { area_code: Some(a) } => {
            format!("subscriber number, area code {a} put in front, national number of {region}")
        }
        Reading::National { area_code: None } => format!("national number of {region}"),
        Reading::ShortCode => format!("short code, country code of {region} put in front"),
        Reading::ServiceCode => "service code (`*` or `#`), internal".to_owned(),
        Reading::NotANumber => "not a phone number".to_owned(),
    };
    let area = if area.is_empty() {
        String::new()
    } else {
        format!(", area code {area}")
    };
    format!("E.164 (caller region {region}{area}): {how} → {e}")
}

fn describe_internal(tenant: &Tenant, target: Internal) -> String {
    let t = &tenant.spec;
    match target {
        Internal::User(u) => format!("user {}", t.users[u].name),
        Internal::Group(g) => format!("group {}", t.groups[g].name),
        Internal::Queue(q) => format!("queue {}", t.queues[q].name),
        Internal::Conference(c) => format!("conference {}", t.conferences[c].name),
    }
}

fn describe_pattern(p: &super::acl::AclPattern) -> String {
    match &p.matcher {
        super::acl::Matcher::Regex(r) => format!("regex {}", r.as_str()),
        super::acl::Matcher::Numbers(n) => format!("numbers {}", n.join(" ")),
    }
}
