//! `[[tenant.call_permissions]]` (SPEC §2, §4.4, §4.5): each permission's mode, extensions,
//! password and holders (users, groups, outcalls, incalls), and the load-time warning about
//! denies whose different passwords no single PIN unlocks.

use std::collections::{HashMap, HashSet};

use toml::Spanned;

use super::checker::Checker;
use super::names::{ctx, index_names, name_of, resolve};
use super::raw::RawTenant;
use super::values::{parse_action, parse_extension, parse_password};
use crate::policy::acl::Action;
use crate::policy::{Permission, TenantSpec};

/// What a permission can be attached to, by name.
pub(super) struct Holders<'m, 'v> {
    pub(super) users: &'m HashMap<&'v str, usize>,
    pub(super) groups: &'m HashMap<&'v str, usize>,
    pub(super) outcalls: &'m HashMap<&'v str, usize>,
    pub(super) incalls: &'m HashMap<&'v str, usize>,
}

/// The valid call permissions of a tenant.
pub(super) fn check_permissions(
    ck: &mut Checker<'_>,
    raw: &RawTenant,
    holders: &Holders<'_, '_>,
    c: &str,
) -> Vec<Permission> {
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
        let users = resolve(ck, &r.users, holders.users, "user", &pc);
        let groups = resolve(ck, &r.groups, holders.groups, "group", &pc);
        let outcalls = resolve(ck, &r.outcalls, holders.outcalls, "outcall", &pc);
        let incalls = resolve(ck, &r.incalls, holders.incalls, "incall", &pc);
        if let (Some(n), Some(mode)) = (pname, mode) {
            permissions.push(Permission {
                name: n.get_ref().as_str().into(),
                mode,
                extensions,
                password,
                enabled: r.enabled.unwrap_or(true),
                description: r.description.as_deref().unwrap_or_default().into(),
                users,
                groups,
                outcalls,
                incalls,
            });
        }
    }
    permissions
}

/// SPEC §4.5: when deny permissions with different passwords apply to a user with no
/// `call_permission_password` in the same tier, a number they both match is rejected, since no
/// single PIN unlocks them. Said at load time, where the administrator can act on it.
pub(super) fn warn_conflicting_passwords(
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
