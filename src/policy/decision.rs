//! A decision and what follows from it (SPEC §1.1, §4): the call to decide, its kind, the
//! verdict and what it rests on; then, given a decision, the PIN that resolves a challenge
//! (SPEC §4.5), the next hop of an allowed call (SPEC §4.8), and the stage, rule and reason
//! given in output and logs. How a decision is made is `decide`'s business.

use std::fmt;

use super::acl::AclOutcome;
use super::{AclId, HopId, IncallId, OutcallId, PermId, Pin, Policy, TenantId, UserId};

/// One call to decide.
#[derive(Clone, Copy, Debug)]
pub struct Call<'a> {
    pub tenant: TenantId,
    /// Who calls: the From or trusted P-Asserted-Identity user part, or `check --from`.
    pub caller: &'a str,
    /// What was dialed: the Request-URI user part (or `tel:` number), or `check --to`.
    pub dialed: &'a str,
    /// Who forwarded the call, when the forwarder is to be believed (SPEC §4.7).
    pub forwarded_by: Option<&'a str>,
}

/// What kind of call it is (SPEC §4.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallKind {
    Internal,
    External,
    Incoming,
}

impl CallKind {
    /// The name used in output and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            CallKind::Internal => "internal",
            CallKind::External => "external",
            CallKind::Incoming => "incoming",
        }
    }
}

/// The tiers of call permissions (SPEC §4.4, §4.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    User,
    Group,
    Outcall,
    Incall,
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Tier::User => "user tier",
            Tier::Group => "group tier",
            Tier::Outcall => "outcall tier",
            Tier::Incall => "incall tier",
        })
    }
}

/// Whose PIN unlocks a challenge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinSource {
    /// The identity's `call_permission_password`.
    User(UserId),
    /// The matching permission's own password.
    Permission(PermId),
}

/// The verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny,
    Challenge(PinSource),
}

impl Verdict {
    /// The name used in output and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
            Verdict::Challenge(_) => "challenge",
        }
    }
}

/// A PIN given with the call (`check --pin`, or the dial prefix) and what became of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinCheck {
    Accepted,
    Rejected,
}

/// What stage 2 (call permissions) found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Basis {
    /// Stage 2 was not reached: the Call ACL denied.
    AclDenied,
    /// The call is outside the scope of call permissions (internal call to a non-user, or an
    /// internal call by an unknown caller).
    OutOfScope,
    /// No permission of any tier matched.
    NoMatch,
    /// The deciding tier allowed, by this permission.
    Allowed { tier: Tier, perm: PermId },
    /// The deciding tier denied, by this permission (a deny without a password).
    Denied { tier: Tier, perm: PermId },
    /// Every matching deny has a password: the caller must give a PIN.
    PasswordRequired { tier: Tier, perms: Vec<PermId> },
    /// Matching denies carry different passwords and no user password unifies them.
    ConflictingPasswords { tier: Tier, perms: Vec<PermId> },
}

/// The outcome of one call, with what it rests on.
#[derive(Clone, Debug)]
pub struct Decision {
    pub verdict: Verdict,
    pub call: CallKind,
    pub tenant: TenantId,
    /// The user whose rights were checked.
    pub identity: Option<UserId>,
    /// Whether `identity` is the forwarder rather than the caller.
    pub forwarded: bool,
    /// The dialed number after clean-up (and after a dial-prefix PIN was taken off).
    pub dialed: Box<str>,
    pub e164: Option<Box<str>>,
    pub outcall: Option<OutcallId>,
    pub incall: Option<IncallId>,
    /// Stage 1, when an ACL was evaluated.
    pub acl: Option<(AclId, AclOutcome)>,
    /// Stage 2.
    pub basis: Basis,
    /// A PIN given with the call, when the decision was a challenge.
    pub pin: Option<PinCheck>,
}

/// Which stage decided (SPEC §1.1's `stage`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    CallAcl,
    CallPermission,
    /// The call was not the proxy's to screen (outside its scope).
    Scope,
    /// Nothing refused it.
    None,
}

impl Stage {
    pub const ALL: [Stage; 4] = [
        Stage::CallAcl,
        Stage::CallPermission,
        Stage::Scope,
        Stage::None,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::CallAcl => "call_acl",
            Stage::CallPermission => "call_permission",
            Stage::Scope => "scope",
            Stage::None => "none",
        }
    }
}

impl Decision {
    /// The stage that decided; cheap (no names looked up), for counting.
    pub fn stage(&self) -> Stage {
        match (&self.basis, self.acl) {
            (Basis::AclDenied | Basis::NoMatch, Some(_)) => Stage::CallAcl,
            (
                Basis::Allowed { .. }
                | Basis::Denied { .. }
                | Basis::PasswordRequired { .. }
                | Basis::ConflictingPasswords { .. },
                _,
            ) => Stage::CallPermission,
            (Basis::OutOfScope, _) => Stage::Scope,
            _ => Stage::None,
        }
    }
}

impl Policy {
    /// The PIN that unlocks a challenge.
    pub fn pin(&self, tenant: TenantId, source: PinSource) -> &Pin {
        let t = &self.tenants[tenant].spec;
        let pin = match source {
            PinSource::User(u) => t.users[u].password.as_ref(),
            PinSource::Permission(p) => t.permissions[p].password.as_ref(),
        };
        pin.expect("a challenge is only made with a password")
    }

    /// Resolves a challenge with the digits the caller entered: a right PIN allows, a wrong
    /// one denies. Other verdicts are left as they are.
    pub fn resolve_pin(&self, decision: &mut Decision, entered: &str) {
        if let Verdict::Challenge(source) = decision.verdict {
            let ok = self.pin(decision.tenant, source).verify(entered);
            decision.verdict = if ok { Verdict::Allow } else { Verdict::Deny };
            decision.pin = Some(if ok {
                PinCheck::Accepted
            } else {
                PinCheck::Rejected
            });
        }
    }

    /// The next hop of an allowed call (SPEC §4.8): the outcall's, else the tenant's, else
    /// the server's. `None` unless the verdict is allow.
    pub fn next_hop(&self, d: &Decision) -> Option<HopId> {
        if d.verdict != Verdict::Allow {
            return None;
        }
        let t = &self.tenants[d.tenant].spec;
        let outcall = d
            .outcall
            .filter(|_| d.call == CallKind::External)
            .and_then(|o| t.outcalls[o].next_hop);
        Some(outcall.or(t.next_hop).unwrap_or(self.default_next_hop))
    }

    /// The stage and rule that decided, for logs and JSON.
    pub fn stage_and_rule(&self, d: &Decision) -> (&'static str, Option<String>) {
        let t = &self.tenants[d.tenant].spec;
        let perm_names = |perms: &[PermId]| {
            perms
                .iter()
                .map(|&p| &*t.permissions[p].name)
                .collect::<Vec<_>>()
                .join(",")
        };
        let rule = match (d.stage(), &d.basis, d.acl) {
            (Stage::CallAcl, _, Some((a, outcome))) => Some(match outcome {
                AclOutcome::Rule(i) => t
                    .acl_patterns
                    .get(t.call_acls[a].rules()[i].pattern)
                    .name
                    .to_string(),
                AclOutcome::Default => "default".to_owned(),
            }),
            (_, Basis::Allowed { perm, .. } | Basis::Denied { perm, .. }, _) => {
                Some(t.permissions[*perm].name.to_string())
            }
            (
                _,
                Basis::PasswordRequired { perms, .. } | Basis::ConflictingPasswords { perms, .. },
                _,
            ) => Some(perm_names(perms)),
            _ => None,
        };
        (d.stage().as_str(), rule)
    }

    /// One line saying which stage and rule decided, and how (the `reason` of SPEC §1.1).
    /// Names rules, never PINs.
    pub fn reason(&self, d: &Decision) -> String {
        let t = &self.tenants[d.tenant].spec;
        let names = |perms: &[PermId]| {
            perms
                .iter()
                .map(|&p| &*t.permissions[p].name)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let acl = d.acl.map(|(a, outcome)| {
            let acl = &t.call_acls[a];
            match outcome {
                AclOutcome::Rule(i) => {
                    let r = &acl.rules()[i];
                    format!(
                        "call_acl {}: rule metric {} pattern {} matched, {}",
                        acl.name,
                        r.metric,
                        t.acl_patterns.get(r.pattern).name,
                        r.action
                    )
                }
                AclOutcome::Default => format!(
                    "call_acl {}: no rule matched, default {}",
                    acl.name, acl.default
                ),
            }
        });
        let mut reason = match &d.basis {
            Basis::AclDenied => acl.clone().unwrap_or_default(),
            Basis::OutOfScope => format!("{} call not subject to call permissions, allow", d.call.as_str()),
            Basis::NoMatch => match &acl {
                Some(a) => format!("{a}; no call permission matched"),
                None => "no call permission matched, allow".to_owned(),
            },
            Basis::Allowed { tier, perm } => format!("call_permission {} ({tier}): allow", t.permissions[*perm].name),
            Basis::Denied { tier, perm } => format!("call_permission {} ({tier}): deny", t.permissions[*perm].name),
            Basis::PasswordRequired { tier, perms } => {
                format!("call_permission {} ({tier}): deny with password, PIN required", names(perms))
            }
            Basis::ConflictingPasswords { tier, perms } => format!(
                "call_permission {} ({tier}): denies with different passwords and no call_permission_password, no single PIN unlocks them",
                names(perms)
            ),
        };
        match d.pin {
            Some(PinCheck::Accepted) => reason.push_str("; PIN accepted"),
            Some(PinCheck::Rejected) => reason.push_str("; PIN rejected"),
            None => {}
        }
        reason
    }
}
