//! From the raw file to a valid [`Config`]: every rule of SPEC §2, every error at once.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use toml::de::DeTable;
use toml::Spanned;

use super::checker::Checker;
use super::names::{ctx, index_names, name_of, resolve};
use super::raw::*;
use super::server::{check_limits, check_pin, check_server};
use super::values::{
    parse_action, parse_cidr, parse_extension, parse_hop, parse_password, parse_region,
};
use super::{types, Config, ConfigErrors};
use crate::policy::acl::{
    AclPattern, AclPatterns, AclRegex, AclRule, Action, CallAcl, Matcher, Origin,
};
use crate::policy::number::normalize;
use crate::policy::{
    Destination, Group, Holder, Incall, Outcall, Permission, Policy, Service, Tenant, TenantSpec,
    User,
};
use crate::proxy::Settings;

/// An ACL pattern (brand or tenant): exactly one of `regex` and `numbers`.
fn check_pattern(
    ck: &mut Checker<'_>,
    p: &Spanned<RawPattern>,
    origin: Origin,
    c: &str,
) -> Option<AclPattern> {
    let raw = p.get_ref();
    let name = name_of(ck, &raw.name, &p.span(), c)?;
    let matcher = match (&raw.regex, &raw.numbers) {
        (Some(_), Some(n)) => {
            ck.error(
                Some(&n.span()),
                c,
                "a pattern has exactly one of `regex` and `numbers`, not both",
            );
            None
        }
        (None, None) => {
            ck.error(Some(&p.span()), c, "a pattern needs `regex` or `numbers`");
            None
        }
        (Some(re), None) => match AclRegex::new(re.get_ref()) {
            Ok(r) => {
                if r.quantified_anchor() {
                    ck.warn(
                        &re.span(),
                        c,
                        &format!("`{}` repeats the `^` anchor (`^+`); it never matches — write `^\\+` for a literal plus", re.get_ref()),
                    );
                }
                Some(Matcher::Regex(r))
            }
            Err(e) => {
                ck.error(Some(&re.span()), c, e);
                None
            }
        },
        (None, Some(list)) => {
            if list.get_ref().is_empty() {
                ck.error(Some(&list.span()), c, "`numbers` must not be empty");
            }
            let mut ok = true;
            for n in list.get_ref() {
                let v = n.get_ref();
                let e164 = v.strip_prefix('+').is_some_and(|d| {
                    !d.is_empty() && d.len() <= 15 && d.bytes().all(|b| b.is_ascii_digit())
                });
                if !e164 {
                    ck.error(
                        Some(&n.span()),
                        c,
                        format!("`numbers`: `{v}` is not E.164 (`+` then up to 15 digits)"),
                    );
                    ok = false;
                }
            }
            ok.then(|| {
                Matcher::Numbers(
                    list.get_ref()
                        .iter()
                        .map(|n| n.get_ref().as_str().into())
                        .collect(),
                )
            })
        }
    }?;
    Some(AclPattern {
        name: name.get_ref().as_str().into(),
        matcher,
        origin,
    })
}

/// Checks the whole file.
pub(super) fn check(text: &str, file: &str, base: &Path) -> Result<Config, ConfigErrors> {
    let mut ck = Checker::new(file, text);
    let (table, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        for e in syntax {
            let span = e.span();
            ck.error(span.as_ref(), "", format!("TOML syntax: {}", e.message()));
        }
        return Err(ConfigErrors(ck.errors));
    }
    let raw = types::deserialize(&mut ck, table);
    let config = raw.and_then(|raw| build(&mut ck, &raw, base));
    // In file order, whatever stage found them.
    ck.errors.sort_by_key(|e| e.position);
    match config {
        Some(c) if ck.errors.is_empty() => Ok(c),
        _ => Err(ConfigErrors(ck.errors)),
    }
}

/// The semantic checks. Returns `None` when something needed to build the policy is missing;
/// the errors say what.
fn build(ck: &mut Checker<'_>, raw: &RawConfig, base: &Path) -> Option<Config> {
    let server = match &raw.server {
        None => {
            ck.error(None, "", "missing required table `[server]`");
            None
        }
        Some(s) => check_server(ck, s),
    };
    let pin = check_pin(ck, raw.pin.as_ref(), base);
    let limits = check_limits(ck, raw.limits.as_ref());
    let brand_name = match &raw.brand {
        None => {
            ck.error(None, "", "missing required table `[brand]`");
            None
        }
        Some(b) => ck
            .required(&b.get_ref().name, "name", &b.span(), "brand")
            .map(|n| n.get_ref().clone()),
    };
    let brand_patterns: Vec<AclPattern> = match &raw.brand {
        Some(b) => {
            index_names(
                ck,
                &b.get_ref().acl_patterns,
                |p| &p.name,
                "brand",
                "acl_pattern",
            );
            let patterns = &b.get_ref().acl_patterns;
            patterns
                .iter()
                .enumerate()
                .filter_map(|(i, p)| {
                    let c = ctx("brand", "acl_pattern", &p.get_ref().name, i);
                    check_pattern(ck, p, Origin::Brand, &c)
                })
                .collect()
        }
        None => Vec::new(),
    };
    if raw.tenant.is_empty() {
        ck.error(None, "", "no `[[tenant]]`: at least one tenant is needed");
    }
    index_names(ck, &raw.tenant, |t| &t.name, "", "tenant");
    let mut seen_domains: HashMap<String, String> = HashMap::new();
    let mut tenants = Vec::new();
    for (i, t) in raw.tenant.iter().enumerate() {
        let c = ctx("", "tenant", &t.get_ref().name, i);
        for d in &t.get_ref().domains {
            let key = d.get_ref().to_ascii_lowercase();
            if let Some(other) = seen_domains.insert(key, c.clone()) {
                ck.error(
                    Some(&d.span()),
                    &c,
                    format!("domain `{}` already belongs to {other}", d.get_ref()),
                );
            }
        }
        if let Some(spec) = check_tenant(ck, t, &brand_patterns, &c) {
            let tenant = Tenant::new(spec);
            warn_conflicting_passwords(ck, &tenant.spec, t, &c);
            tenants.push(tenant);
        }
    }
    let trusted = raw
        .server
        .as_ref()
        .is_some_and(|s| !s.get_ref().trusted_peers.is_empty());
    let auth = super::auth::check_auth(ck, &raw.tenant, &tenants, trusted);
    let (mut server, default_next_hop) = server?;
    let pin = pin?;
    server.hops = std::mem::take(&mut ck.hops);
    let policy = Policy {
        brand: brand_name?.into(),
        tenants,
        hops: server.hops.iter().map(|h| h.to_string().into()).collect(),
        default_next_hop,
        dial_prefix: pin.dial_prefix.as_deref().map(Into::into),
    };
    Some(Config {
        proxy: Settings {
            server,
            limits,
            pin,
            auth: std::sync::Arc::new(auth),
            secret: crate::proxy::Secret::random().unwrap_or_else(|e| {
                ck.error(None, "", e);
                crate::proxy::Secret::new([0; 32])
            }),
        },
        policy: std::sync::Arc::new(policy),
        warnings: std::mem::take(&mut ck.warnings),
    })
}

fn check_tenant(
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
    let area_code = match &raw.area_code {
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
    };
    let next_hop = raw.next_hop.as_ref().and_then(|n| parse_hop(ck, n, c));
    let sources = raw
        .sources
        .iter()
        .filter_map(|s| parse_cidr(ck, s, "sources", c))
        .collect();

    // ACL patterns: brand ones, overridden by name, then the tenant's own.
    index_names(ck, &raw.acl_patterns, |p| &p.name, c, "acl_pattern");
    let mut patterns: Vec<AclPattern> = brand_patterns.to_vec();
    for (i, p) in raw.acl_patterns.iter().enumerate() {
        let pc = ctx(c, "acl_pattern", &p.get_ref().name, i);
        if let Some(p) = check_pattern(ck, p, Origin::Tenant, &pc) {
            match patterns.iter().position(|b| b.name == p.name) {
                Some(at) if patterns[at].origin == Origin::Brand => patterns[at] = p,
                Some(_) => {}
                None => patterns.push(p),
            }
        }
    }
    let pattern_names: HashMap<&str, usize> = patterns
        .iter()
        .enumerate()
        .map(|(i, p)| (&*p.name, i))
        .collect();
    // Names of patterns that were declared but failed their checks: references to them are
    // not reported again as unknown.
    let declared: HashSet<&str> = raw
        .acl_patterns
        .iter()
        .filter_map(|p| p.get_ref().name.as_ref().map(|n| n.get_ref().as_str()))
        .collect();

    // Call ACLs.
    let acl_names = index_names(ck, &raw.call_acls, |a| &a.name, c, "call_acl");
    let mut acls = Vec::new();
    for (i, a) in raw.call_acls.iter().enumerate() {
        let ac = ctx(c, "call_acl", &a.get_ref().name, i);
        let r = a.get_ref();
        let aname = name_of(ck, &r.name, &a.span(), &ac);
        let default = ck
            .required(&r.default, "default", &a.span(), &ac)
            .and_then(|d| parse_action(ck, d, "default", &ac));
        let mut metrics = HashMap::new();
        let mut rules = Vec::new();
        for (j, rule) in r.rules.iter().enumerate() {
            let rc = format!("{ac}, rule #{}", j + 1);
            let rr = rule.get_ref();
            let metric = ck.required(&rr.metric, "metric", &rule.span(), &rc);
            if let Some(m) = metric {
                if let Some(prev) = metrics.insert(*m.get_ref(), j) {
                    ck.error(
                        Some(&m.span()),
                        &rc,
                        format!(
                            "duplicate metric {} (rule #{} has it too)",
                            m.get_ref(),
                            prev + 1
                        ),
                    );
                }
            }
            let pattern = ck
                .required(&rr.pattern, "pattern", &rule.span(), &rc)
                .and_then(|p| {
                    let found = pattern_names.get(p.get_ref().as_str()).copied();
                    if found.is_none() && !declared.contains(p.get_ref().as_str()) {
                        ck.error(
                            Some(&p.span()),
                            &rc,
                            format!("unknown acl_pattern `{}`", p.get_ref()),
                        );
                    }
                    found
                });
            let action = ck
                .required(&rr.action, "action", &rule.span(), &rc)
                .and_then(|x| parse_action(ck, x, "action", &rc));
            if let (Some(m), Some(pattern), Some(action)) = (metric, pattern, action) {
                rules.push(AclRule {
                    metric: *m.get_ref(),
                    pattern,
                    action,
                });
            }
        }
        if let (Some(n), Some(d)) = (aname, default) {
            acls.push(CallAcl::new(n.get_ref(), d, rules));
        }
    }

    // Internal numbers must not be shared.
    let mut claims = Claims::default();

    // Users.
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

    // Groups, queues, conferences.
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
        let members = resolve(ck, &r.members, &user_names, "user", &gc);
        if let Some(n) = gname {
            groups.push(Group {
                name: n.get_ref().as_str().into(),
                number: number.map(|n| n.get_ref().as_str().into()),
                members,
                permissions: Holder::default(),
            });
        }
    }
    let (queue_names, queues) = check_services(ck, &mut claims, &raw.queues, c, "queue");
    let (conference_names, conferences) =
        check_services(ck, &mut claims, &raw.conferences, c, "conference");

    // Outcalls.
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

    // Incalls.
    let incall_names = index_names(ck, &raw.incalls, |x| &x.name, c, "incall");
    let mut dids: HashMap<String, String> = HashMap::new();
    let mut incalls = Vec::new();
    for (i, x) in raw.incalls.iter().enumerate() {
        let ic = ctx(c, "incall", &x.get_ref().name, i);
        let r = x.get_ref();
        let iname = name_of(ck, &r.name, &x.span(), &ic);
        let did = ck.required(&r.did, "did", &x.span(), &ic).and_then(|d| {
            let region = region?;
            let n = normalize(
                &crate::policy::number::clean_dialed(d.get_ref()),
                region,
                &area_code,
            );
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
            let found = user_names
                .get(v)
                .map(|&u| Destination::User(u))
                .or_else(|| group_names.get(v).map(|&g| Destination::Group(g)))
                .or_else(|| queue_names.get(v).map(|&q| Destination::Queue(q)))
                .or_else(|| conference_names.get(v).map(|&q| Destination::Conference(q)));
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

    // Call permissions.
    index_names(ck, &raw.call_permissions, |p| &p.name, c, "call_permission");
    let mut permissions = Vec::new();
    for (i, p) in raw.call_permissions.iter().enumerate() {
        let pc = ctx(c, "call_permission", &p.get_ref().name, i);
        let r = p.get_ref();
        let pname = name_of(ck, &r.name, &p.span(), &pc);
        let mode = match &r.mode {
            None => Some(Action::Deny),
            Some(m) => parse_action(ck, m, "mode", &pc),
        };
        let mut extensions = Vec::new();
        if let Some(list) = ck.required(&r.extensions, "extensions", &p.span(), &pc) {
            if list.get_ref().is_empty() {
                ck.error(
                    Some(&list.span()),
                    &pc,
                    "`extensions` must list at least one extension or pattern",
                );
            }
            extensions = list
                .get_ref()
                .iter()
                .filter_map(|e| parse_extension(ck, e, "extensions", &pc))
                .collect();
        }
        let password = r
            .password
            .as_ref()
            .and_then(|x| parse_password(ck, x, "password", 40, &pc));
        let users_ = resolve(ck, &r.users, &user_names, "user", &pc);
        let groups_ = resolve(ck, &r.groups, &group_names, "group", &pc);
        let outcalls_ = resolve(ck, &r.outcalls, &outcall_names, "outcall", &pc);
        let incalls_ = resolve(ck, &r.incalls, &incall_names, "incall", &pc);
        if let (Some(n), Some(mode)) = (pname, mode) {
            permissions.push(Permission {
                name: n.get_ref().as_str().into(),
                mode,
                extensions,
                password,
                enabled: r.enabled.unwrap_or(true),
                description: r.description.as_deref().unwrap_or_default().into(),
                users: users_,
                groups: groups_,
                outcalls: outcalls_,
                incalls: incalls_,
            });
        }
    }

    let acl_patterns = match AclPatterns::build(patterns) {
        Ok(p) => Some(p),
        Err(e) => {
            ck.error(
                Some(&t.span()),
                c,
                format!("the ACL patterns together are too large to compile: {e}"),
            );
            None
        }
    };
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

/// SPEC §4.5: when deny permissions with different passwords apply to a user with no
/// `call_permission_password` in the same tier, a number they both match is rejected, since no
/// single PIN unlocks them. Said at load time, where the administrator can act on it.
fn warn_conflicting_passwords(
    ck: &mut Checker<'_>,
    spec: &TenantSpec,
    t: &Spanned<RawTenant>,
    c: &str,
) {
    let protected = |ids: &mut dyn Iterator<Item = usize>| -> Vec<usize> {
        let mut v: Vec<usize> = ids
            .filter(|&p| {
                let perm = &spec.permissions[p];
                perm.enabled && perm.mode == Action::Deny && perm.password.is_some()
            })
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let mut reported = HashSet::new();
    for user in spec.users.iter().filter(|u| u.password.is_none()) {
        let user_tier = protected(&mut user.permissions.all.iter().copied());
        let group_tier = protected(
            &mut user
                .groups
                .iter()
                .flat_map(|&g| spec.groups[g].permissions.all.iter().copied()),
        );
        for (tier, perms) in [("user", user_tier), ("group", group_tier)] {
            let mut distinct: Vec<&usize> = Vec::new();
            for p in &perms {
                if !distinct
                    .iter()
                    .any(|&&q| spec.permissions[q].password == spec.permissions[*p].password)
                {
                    distinct.push(p);
                }
            }
            if distinct.len() > 1 && reported.insert((user.name.clone(), tier)) {
                let names: Vec<&str> = perms.iter().map(|&p| &*spec.permissions[p].name).collect();
                ck.warn(
                    &t.span(),
                    &format!("{c}, user \"{}\"", user.name),
                    &format!(
                        "{tier}-tier permissions {} have different passwords and the user has no call_permission_password: a number matched by several of them is rejected, since no single PIN unlocks them",
                        names.join(", ")
                    ),
                );
            }
        }
    }
}
