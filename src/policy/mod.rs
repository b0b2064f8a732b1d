//! The pure policy engine: who may call what (SPEC §3, §4).
//!
//! Nothing here knows SIP, sockets or clocks. The configuration layer builds a [`Policy`] from
//! validated data; [`Policy::decide`] turns one call (tenant, caller, dialed string, optional
//! forwarder) into a [`Decision`] that carries the verdict and why. Every name of the
//! configuration is resolved to an index once, at load time, and every list that a decision
//! would otherwise scan is indexed: users and internal numbers by hash, call-permission
//! extensions in one [`extension::ExtensionSet`], ACL regexes in one `RegexSet`.

pub mod acl;
mod decide;
mod decision;
pub mod extension;
pub mod number;

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

pub use decision::{Basis, Call, CallKind, Decision, PinCheck, PinSource, Stage, Tier, Verdict};

use acl::{AclPatterns, Action, CallAcl};
use extension::{EntryId, Extension, ExtensionSet};
use number::{NumberCache, Region};

/// Index of a user in its tenant.
pub type UserId = usize;
/// Index of a group in its tenant.
pub type GroupId = usize;
/// Index of an outcall in its tenant.
pub type OutcallId = usize;
/// Index of an incall in its tenant.
pub type IncallId = usize;
/// Index of a call permission in its tenant.
pub type PermId = usize;
/// Index of a Call ACL in its tenant.
pub type AclId = usize;
/// Index of a tenant in the policy.
pub type TenantId = usize;

/// A next hop, by index: the policy only says which one a call takes ([`Policy::hops`] has
/// how each is written); where it is on the network is the proxy's business.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HopId(pub usize);

/// A PIN (call-permission password). Never printed: its `Debug` hides the digits.
#[derive(Clone, PartialEq, Eq)]
pub struct Pin(Box<str>);

impl Pin {
    /// Wraps a validated PIN (digits and `*`).
    pub fn new(digits: &str) -> Self {
        Self(digits.into())
    }

    /// Whether `entered` is this PIN. Compares every byte, so the time taken does not tell how
    /// many leading digits were right.
    pub fn verify(&self, entered: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), entered.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(<hidden>)")
    }
}

/// The permissions attached to one holder (a user, a group, an outcall or an incall).
#[derive(Debug, Default)]
pub struct Holder {
    /// Every attached permission, in configuration order (explanations).
    pub all: Vec<PermId>,
    /// Enabled attached permissions by the extension entries they contain (decisions).
    by_entry: HashMap<EntryId, Vec<PermId>>,
}

impl Holder {
    /// Fills `out` with the enabled attached permissions that contain one of the `matched`
    /// entries (sorted ids), walking whichever side is smaller.
    fn matching(&self, matched: &[EntryId], out: &mut Vec<PermId>) {
        if self.by_entry.len() < matched.len() {
            for (entry, perms) in &self.by_entry {
                if matched.binary_search(entry).is_ok() {
                    out.extend_from_slice(perms);
                }
            }
        } else {
            for entry in matched {
                if let Some(perms) = self.by_entry.get(entry) {
                    out.extend_from_slice(perms);
                }
            }
        }
    }
}

/// A user of a tenant.
#[derive(Debug)]
pub struct User {
    pub name: Box<str>,
    pub extension: Box<str>,
    pub call_acl: Option<AclId>,
    pub password: Option<Pin>,
    pub region: Option<Region>,
    pub groups: Vec<GroupId>,
    pub permissions: Holder,
}

/// A group of users.
#[derive(Debug)]
pub struct Group {
    pub name: Box<str>,
    pub number: Option<Box<str>>,
    pub members: Vec<UserId>,
    pub permissions: Holder,
}

/// A queue or a conference: an internal number that is not a user.
#[derive(Debug)]
pub struct Service {
    pub name: Box<str>,
    /// Empty when it has none.
    pub number: Box<str>,
}

/// An outgoing route.
#[derive(Debug)]
pub struct Outcall {
    pub name: Box<str>,
    pub patterns: Vec<Extension>,
    pub next_hop: Option<HopId>,
    pub permissions: Holder,
}

/// What an incall leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    User(UserId),
    Group(GroupId),
    Queue(usize),
    Conference(usize),
}

/// An incoming route (a DID).
#[derive(Debug)]
pub struct Incall {
    pub name: Box<str>,
    /// The DID in E.164.
    pub did: Box<str>,
    pub destination: Option<Destination>,
    pub permissions: Holder,
}

/// A call permission.
#[derive(Debug)]
pub struct Permission {
    pub name: Box<str>,
    pub mode: Action,
    pub extensions: Vec<Extension>,
    pub password: Option<Pin>,
    pub enabled: bool,
    pub description: Box<str>,
    pub users: Vec<UserId>,
    pub groups: Vec<GroupId>,
    pub outcalls: Vec<OutcallId>,
    pub incalls: Vec<IncallId>,
}

/// What an internal number belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Internal {
    User(UserId),
    Group(GroupId),
    Queue(usize),
    Conference(usize),
}

/// The parts of a tenant as the configuration describes them, names already resolved.
#[derive(Debug)]
pub struct TenantSpec {
    pub name: Box<str>,
    pub domains: Vec<Box<str>>,
    pub sources: Vec<IpNet>,
    pub region: Region,
    pub area_code: Box<str>,
    pub next_hop: Option<HopId>,
    pub acl_patterns: AclPatterns,
    pub call_acls: Vec<CallAcl>,
    pub users: Vec<User>,
    pub groups: Vec<Group>,
    pub queues: Vec<Service>,
    pub conferences: Vec<Service>,
    pub outcalls: Vec<Outcall>,
    pub incalls: Vec<Incall>,
    pub permissions: Vec<Permission>,
}

/// A tenant, with the indexes decisions use.
#[derive(Debug)]
pub struct Tenant {
    pub spec: TenantSpec,
    /// Users by extension and by name.
    callers: HashMap<Box<str>, UserId>,
    /// Every internal number.
    internal: HashMap<Box<str>, Internal>,
    /// Incalls by DID (E.164).
    dids: HashMap<Box<str>, IncallId>,
    /// Every call-permission extension of the tenant.
    perm_entries: ExtensionSet,
    /// Every outcall pattern, and for each entry the first outcall (in configuration order)
    /// that has it.
    routes: ExtensionSet,
    route_owner: Vec<OutcallId>,
    numbers: NumberCache,
}

impl Tenant {
    /// Builds the indexes. Permissions are attached to their holders here, from the
    /// permissions' own lists, so the two sides cannot disagree.
    pub fn new(mut spec: TenantSpec) -> Self {
        let (perm_entries, entry_ids) =
            ExtensionSet::build(spec.permissions.iter().flat_map(|p| p.extensions.iter()));
        let mut entry_ids = entry_ids.into_iter();
        for (pid, perm) in spec.permissions.iter().enumerate() {
            let entries: Vec<EntryId> = entry_ids.by_ref().take(perm.extensions.len()).collect();
            let attach = |holder: &mut Holder| {
                holder.all.push(pid);
                if perm.enabled {
                    for &e in &entries {
                        let list = holder.by_entry.entry(e).or_default();
                        if !list.contains(&pid) {
                            list.push(pid);
                        }
                    }
                }
            };
            perm.users
                .iter()
                .for_each(|&u| attach(&mut spec.users[u].permissions));
            perm.groups
                .iter()
                .for_each(|&g| attach(&mut spec.groups[g].permissions));
            perm.outcalls
                .iter()
                .for_each(|&o| attach(&mut spec.outcalls[o].permissions));
            perm.incalls
                .iter()
                .for_each(|&i| attach(&mut spec.incalls[i].permissions));
        }
        let (routes, route_ids) =
            ExtensionSet::build(spec.outcalls.iter().flat_map(|o| o.patterns.iter()));
        let mut route_owner = vec![usize::MAX; routes.len()];
        let owners = spec
            .outcalls
            .iter()
            .enumerate()
            .flat_map(|(i, o)| std::iter::repeat_n(i, o.patterns.len()));
        for (entry, outcall) in route_ids.into_iter().zip(owners) {
            let slot = &mut route_owner[entry as usize];
            *slot = (*slot).min(outcall);
        }
        let mut callers = HashMap::new();
        let mut internal = HashMap::new();
        for (i, u) in spec.users.iter().enumerate() {
            callers.insert(u.name.clone(), i);
            internal.insert(u.extension.clone(), Internal::User(i));
        }
        // Extensions win over names when a name looks like another user's extension.
        for (i, u) in spec.users.iter().enumerate() {
            callers.insert(u.extension.clone(), i);
        }
        for (i, g) in spec.groups.iter().enumerate() {
            if let Some(n) = &g.number {
                internal.insert(n.clone(), Internal::Group(i));
            }
        }
        for (i, q) in spec
            .queues
            .iter()
            .enumerate()
            .filter(|(_, q)| !q.number.is_empty())
        {
            internal.insert(q.number.clone(), Internal::Queue(i));
        }
        for (i, c) in spec
            .conferences
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.number.is_empty())
        {
            internal.insert(c.number.clone(), Internal::Conference(i));
        }
        let dids = spec
            .incalls
            .iter()
            .enumerate()
            .map(|(i, inc)| (inc.did.clone(), i))
            .collect();
        Self {
            spec,
            callers,
            internal,
            dids,
            perm_entries,
            routes,
            route_owner,
            numbers: NumberCache::default(),
        }
    }

    /// The user whose extension or name is `id`.
    pub fn user_by_id(&self, id: &str) -> Option<UserId> {
        self.callers.get(id).copied()
    }

    /// What the internal number `n` belongs to.
    pub fn internal(&self, n: &str) -> Option<Internal> {
        self.internal.get(n).copied()
    }

    /// The outcall routing `dialed`: the most specific matching pattern of all outcalls
    /// (Asterisk order), the first outcall in the configuration on a tie.
    pub fn route(&self, dialed: &str) -> Option<OutcallId> {
        self.routes
            .most_specific(dialed)
            .map(|e| self.route_owner[e as usize])
    }

    /// How many normalization results are cached (for tests and metrics).
    pub fn cached_numbers(&self) -> usize {
        self.numbers.len()
    }
}

/// The whole rule set: a brand and its tenants.
#[derive(Debug)]
pub struct Policy {
    pub brand: Box<str>,
    pub tenants: Vec<Tenant>,
    /// Every next hop, as written in the configuration, by [`HopId`].
    pub hops: Vec<Box<str>>,
    /// Where allowed calls go when neither the outcall nor the tenant says.
    pub default_next_hop: HopId,
    /// `pin.dial_prefix`: dial `<prefix><pin>*<number>` to give the PIN up front.
    pub dial_prefix: Option<Box<str>>,
}

impl Policy {
    /// A next hop as the configuration writes it (`udp:10.0.0.2:5060`).
    pub fn hop_name(&self, hop: HopId) -> &str {
        &self.hops[hop.0]
    }

    /// The tenant with this name.
    pub fn tenant_by_name(&self, name: &str) -> Option<TenantId> {
        self.tenants.iter().position(|t| &*t.spec.name == name)
    }

    /// SPEC §4.1: the first tenant whose domains contain the From or Request-URI domain, else
    /// the first whose sources contain the source address; with one tenant, that tenant.
    pub fn tenant_for(&self, domains: &[&str], source: Option<IpAddr>) -> Option<TenantId> {
        self.tenant_by_domain(domains)
            .or_else(|| source.and_then(|ip| self.tenant_by_source(ip)))
            .or(self.only_tenant())
    }

    /// The first tenant one of whose domains is among `domains`.
    pub fn tenant_by_domain(&self, domains: &[&str]) -> Option<TenantId> {
        self.tenants.iter().position(|t| {
            t.spec
                .domains
                .iter()
                .any(|d| domains.iter().any(|x| d.eq_ignore_ascii_case(x)))
        })
    }

    /// The first tenant (in file order) whose `sources` contain `ip`.
    pub fn tenant_by_source(&self, ip: IpAddr) -> Option<TenantId> {
        self.tenants
            .iter()
            .position(|t| t.spec.sources.iter().any(|n| n.contains(&ip)))
    }

    /// The tenant, when there is only one.
    pub fn only_tenant(&self) -> Option<TenantId> {
        (self.tenants.len() == 1).then_some(0)
    }
}
