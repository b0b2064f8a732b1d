//! One `[[tenant]]` (SPEC §2): its own settings, then its objects kind by kind, in the order
//! that lets each resolve its references to the ones before: Call ACL patterns and ACLs
//! (`acl`), users, groups, queues and conferences, outcalls, incalls, call permissions
//! (`permission`). Internal numbers (extensions, group, queue and conference numbers) belong
//! to one object only.

use std::collections::HashMap;

use toml::Spanned;

use super::acl::{check_call_acls, compile_patterns, tenant_patterns};
use super::checker::Checker;
use super::names::{ctx, index_names, name_of, resolve};
use super::permission::{check_permissions, Holders};
use super::raw::{RawService, RawTenant, Str};
use super::values::{parse_cidr, parse_extension, parse_hop, parse_password, parse_region};
use crate::policy::acl::AclPattern;
use crate::policy::number::{clean_dialed, normalize, Region};
use crate::policy::{Destination, Group, Holder, Incall, Outcall, Service, TenantSpec, User};

/// Checks a tenant; `None` when it (or anything before it) has errors.
pub(super) fn check_tenant(
    ck: &mut Checker<'_>,
    t: &Spanned<RawTenant>,
    brand_patterns: &[AclPattern],
    c: &str,
) -> Option<TenantSpec> {
    let raw = t.get_ref();
    let name = name_of(ck, &raw.name, &t.span(), c);
    let region = ck
        .required(&raw.country, "country", &t.span(), c)
        .and_then(|s| parse_region(ck, s, c));
    let area_code = check_area_code(ck, raw.area_code.as_ref(), c);
    let next_hop = raw.next_hop.as_ref().and_then(|n| parse_hop(ck, n, c));
    let sources = raw
        .sources
        .iter()
        .filter_map(|s| parse_cidr(ck, s, "sources", c))
        .collect();
    let (patterns, declared) = tenant_patterns(ck, raw, brand_patterns, c);
    let (acl_names, acls) = check_call_acls(ck, raw, &patterns, &declared, c);

    // Internal numbers must not be shared.
    let mut claims = Claims::default();
    let (user_names, mut users) = check_users(ck, &mut claims, raw, &acl_names, c);
    let (group_names, groups) = check_groups(ck, &mut claims, raw, &user_names, c);
    let (queue_names, queues) = check_services(ck, &mut claims, &raw.queues, c, "queue");
    let (conference_names, conferences) =
        check_services(ck, &mut claims, &raw.conferences, c, "conference");
    let (outcall_names, outcalls) = check_outcalls(ck, raw, c);
    let destinations = Destinations {
        users: &user_names,
        groups: &group_names,
        queues: &queue_names,
        conferences: &conference_names,
    };
    let (incall_names, incalls) = check_incalls(ck, raw, region, &area_code, &destinations, c);
    let holders = Holders {
        users: &user_names,
        groups: &group_names,
        outcalls: &outcall_names,
        incalls: &incall_names,
    };
    let permissions = check_permissions(ck, raw, &holders, c);

    let acl_patterns = compile_patterns(ck, patterns, &t.span(), c);
    if !ck.errors.is_empty() {
        return None;
    }
    for (u, user) in users.iter_mut().enumerate() {
        user.groups = groups
            .iter()
            .enumerate()
            .filter(|(_, g)| g.members.contains(&u))
            .map(|(g, _)| g)
            .collect();
    }
    let spec = TenantSpec {
        name: name?.get_ref().as_str().into(),
        domains: raw
            .domains
            .iter()
            .map(|d| d.get_ref().as_str().into())
            .collect(),
        sources,
        region: region?,
        area_code: area_code.into(),
        next_hop,
        acl_patterns: acl_patterns?,
        call_acls: acls,
        users,
        groups,
        queues,
        conferences,
        outcalls,
        incalls,
        permissions,
    };
    Some(spec)
}

/// `area_code`: digits, or empty.
fn check_area_code(ck: &mut Checker<'_>, area_code: Option<&Str>, c: &str) -> String {
    match area_code {
        Some(a) if !a.get_ref().bytes().all(|b| b.is_ascii_digit()) => {
            ck.error(
                Some(&a.span()),
                c,
                format!("`area_code` must be digits, not `{}`", a.get_ref()),
            );
            String::new()
        }
        Some(a) => a.get_ref().clone(),
        None => String::new(),
    }
}

/// Internal numbers claimed so far, and by whom: a number belongs to one object only.
#[derive(Default)]
struct Claims(HashMap<String, String>);

impl Claims {
    fn claim(&mut self, ck: &mut Checker<'_>, n: &Str, owner: &str) {
        let v = n.get_ref();
        if v.is_empty()
            || v.contains(|ch: char| {
                ch.is_whitespace() || ch.is_control() || "@;:<>\"".contains(ch)
            })
        {
            ck.error(
                Some(&n.span()),
                owner,
                format!("`{v}` is not a usable extension number"),
            );
            return;
        }
        if let Some(prev) = self.0.insert(v.clone(), owner.to_owned()) {
            ck.error(
                Some(&n.span()),
                owner,
                format!("number `{v}` is already used by {prev}"),
            );
        }
    }
}

/// `[[tenant.users]]`: the users by name, and the valid ones (their groups are filled in
/// once the groups are known).
fn check_users<'v>(
    ck: &mut Checker<'_>,
    claims: &mut Claims,
    raw: &'v RawTenant,
    acl_names: &HashMap<&str, usize>,
    c: &str,
) -> (HashMap<&'v str, usize>, Vec<User>) {
    let user_names = index_names(ck, &raw.users, |u| &u.name, c, "user");
    let mut users = Vec::new();
    for (i, u) in raw.users.iter().enumerate() {
        let uc = ctx(c, "user", &u.get_ref().name, i);
        let r = u.get_ref();
        let uname = name_of(ck, &r.name, &u.span(), &uc);
        let ext = ck.required(&r.extension, "extension", &u.span(), &uc);
        if let Some(e) = ext {
            claims.claim(ck, e, &uc);
        }
        let call_acl = r.call_acl.as_ref().and_then(|a| {
            let found = acl_names.get(a.get_ref().as_str()).copied();
            if found.is_none() {
                ck.error(
                    Some(&a.span()),
                    &uc,
                    format!("unknown call_acl `{}`", a.get_ref()),
                );
            }
            found
        });
        let password = r
            .call_permission_password
            .as_ref()
            .and_then(|p| parse_password(ck, p, "call_permission_password", 16, &uc));
        let region = r.country.as_ref().and_then(|s| parse_region(ck, s, &uc));
        if let (Some(n), Some(e)) = (uname, ext) {
            users.push(User {
                name: n.get_ref().as_str().into(),
                extension: e.get_ref().as_str().into(),
                call_acl,
                password,
                region,
                groups: Vec::new(),
                permissions: Holder::default(),
            });
        }
    }
    (user_names, users)
}

/// `[[tenant.groups]]`: the groups by name, and the valid ones.
fn check_groups<'v>(
    ck: &mut Checker<'_>,
    claims: &mut Claims,
    raw: &'v RawTenant,
    user_names: &HashMap<&str, usize>,
    c: &str,
) -> (HashMap<&'v str, usize>, Vec<Group>) {
    let group_names = index_names(ck, &raw.groups, |g| &g.name, c, "group");
    let mut groups = Vec::new();
    for (i, g) in raw.groups.iter().enumerate() {
        let gc = ctx(c, "group", &g.get_ref().name, i);
        let r = g.get_ref();
        let gname = name_of(ck, &r.name, &g.span(), &gc);
        let number = r.number.as_ref().filter(|n| !n.get_ref().is_empty());
        if let Some(n) = number {
            claims.claim(ck, n, &gc);
        }
        let members = resolve(ck, &r.members, user_names, "user", &gc);
        if let Some(n) = gname {
            groups.push(Group {
                name: n.get_ref().as_str().into(),
                number: number.map(|n| n.get_ref().as_str().into()),
                members,
                permissions: Holder::default(),
            });
        }
    }
    (group_names, groups)
}

/// Queues or conferences.
fn check_services<'v>(
    ck: &mut Checker<'_>,
    claims: &mut Claims,
    list: &'v [Spanned<RawService>],
    c: &str,
    kind: &str,
) -> (HashMap<&'v str, usize>, Vec<Service>) {
    let names = index_names(ck, list, |s| &s.name, c, kind);
    let mut out = Vec::new();
    for (i, s) in list.iter().enumerate() {
        let sc = ctx(c, kind, &s.get_ref().name, i);
        let sname = name_of(ck, &s.get_ref().name, &s.span(), &sc);
        let number = s
            .get_ref()
            .number
            .as_ref()
            .filter(|n| !n.get_ref().is_empty());
        if let Some(n) = number {
            claims.claim(ck, n, &sc);
        }
        if let Some(n) = sname {
            out.push(Service {
                name: n.get_ref().as_str().into(),
                number: number
                    .map(|n| n.get_ref().as_str())
                    .unwrap_or_default()
                    .into(),
            });
        }
    }
    (names, out)
}

/// `[[tenant.outcalls]]`: the outcalls by name, and the valid ones.
fn check_outcalls<'v>(
    ck: &mut Checker<'_>,
    raw: &'v RawTenant,
    c: &str,
) -> (HashMap<&'v str, usize>, Vec<Outcall>) {
    let outcall_names = index_names(ck, &raw.outcalls, |o| &o.name, c, "outcall");
    let mut outcalls = Vec::new();
    for (i, o) in raw.outcalls.iter().enumerate() {
        let oc = ctx(c, "outcall", &o.get_ref().name, i);
        let r = o.get_ref();
        let oname = name_of(ck, &r.name, &o.span(), &oc);
        let patterns = r
            .patterns
            .iter()
            .filter_map(|p| parse_extension(ck, p, "patterns", &oc))
            .collect();
        let next_hop = r.next_hop.as_ref().and_then(|n| parse_hop(ck, n, &oc));
        if let Some(n) = oname {
            outcalls.push(Outcall {
                name: n.get_ref().as_str().into(),
                patterns,
                next_hop,
                permissions: Holder::default(),
            });
        }
    }
    (outcall_names, outcalls)
}

/// What an incall's `destination` can name: a user, group, queue or conference.
struct Destinations<'m, 'v> {
    users: &'m HashMap<&'v str, usize>,
    groups: &'m HashMap<&'v str, usize>,
    queues: &'m HashMap<&'v str, usize>,
    conferences: &'m HashMap<&'v str, usize>,
}

impl Destinations<'_, '_> {
    fn find(&self, name: &str) -> Option<Destination> {
        self.users
            .get(name)
            .map(|&u| Destination::User(u))
            .or_else(|| self.groups.get(name).map(|&g| Destination::Group(g)))
            .or_else(|| self.queues.get(name).map(|&q| Destination::Queue(q)))
            .or_else(|| {
                self.conferences
                    .get(name)
                    .map(|&q| Destination::Conference(q))
            })
    }
}

/// `[[tenant.incalls]]`: the incalls by name, and the valid ones. A DID must normalize to
/// E.164 with the tenant's region and area code, and belong to one incall only.
fn check_incalls<'v>(
    ck: &mut Checker<'_>,
    raw: &'v RawTenant,
    region: Option<Region>,
    area_code: &str,
    destinations: &Destinations<'_, '_>,
    c: &str,
) -> (HashMap<&'v str, usize>, Vec<Incall>) {
    let incall_names = index_names(ck, &raw.incalls, |x| &x.name, c, "incall");
    let mut dids: HashMap<String, String> = HashMap::new();
    let mut incalls = Vec::new();
    for (i, x) in raw.incalls.iter().enumerate() {
        let ic = ctx(c, "incall", &x.get_ref().name, i);
        let r = x.get_ref();
        let iname = name_of(ck, &r.name, &x.span(), &ic);
        let did = ck.required(&r.did, "did", &x.span(), &ic).and_then(|d| {
            let region = region?;
            let n = normalize(&clean_dialed(d.get_ref()), region, area_code);
            match n.e164 {
                Some(e) => {
                    if let Some(prev) = dids.insert(e.to_string(), ic.clone()) {
                        ck.error(
                            Some(&d.span()),
                            &ic,
                            format!("DID {e} is already used by {prev}"),
                        );
                    }
                    Some(e)
                }
                None => {
                    ck.error(
                        Some(&d.span()),
                        &ic,
                        format!("`did`: `{}` does not normalize to E.164", d.get_ref()),
                    );
                    None
                }
            }
        });
        let destination = r.destination.as_ref().and_then(|d| {
            let v = d.get_ref().as_str();
            let found = destinations.find(v);
            if found.is_none() {
                ck.error(
                    Some(&d.span()),
                    &ic,
                    format!("`destination`: no user, group, queue or conference named `{v}`"),
                );
            }
            found
        });
        if let (Some(n), Some(did)) = (iname, did) {
            incalls.push(Incall {
                name: n.get_ref().as_str().into(),
                did,
                destination,
                permissions: Holder::default(),
            });
        }
    }
    (incall_names, incalls)
}
