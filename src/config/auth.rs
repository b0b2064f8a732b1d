//! Digest credentials and who can reach each tenant (SPEC §2 `realm`, `auth_username`,
//! `auth_password`, `auth_ha1`; §4.1): the directory the proxy authenticates callers
//! against, and the warnings `validate` gives about tenants nobody can reach or everybody
//! can.

use std::collections::HashMap;

use toml::Spanned;

use super::check::{ctx, Checker};
use super::raw::{RawTenant, RawUser};
use crate::policy::Tenant;
use crate::proxy::auth::{AuthUser, Directory, Realm, UserSecret};

/// Checks the credentials of every tenant and builds the directory (indexed like the
/// policy's tenants; empty when a tenant could not be built, since the file is invalid then).
pub(super) fn check_auth(
    ck: &mut Checker<'_>,
    raw: &[Spanned<RawTenant>],
    tenants: &[Tenant],
    trusted_peers: bool,
) -> Directory {
    let mut directory = Directory::default();
    for (ti, t) in raw.iter().enumerate() {
        let c = ctx("", "tenant", &t.get_ref().name, ti);
        let r = t.get_ref();
        let realm = match &r.realm {
            Some(v) if v.get_ref().contains(['"', '\r', '\n']) => {
                ck.error(
                    Some(&v.span()),
                    &c,
                    "`realm` must not contain `\"` or line breaks",
                );
                String::new()
            }
            Some(v) if !v.get_ref().is_empty() => v.get_ref().clone(),
            _ => r
                .domains
                .first()
                .map(|d| d.get_ref().clone())
                .or_else(|| r.name.as_ref().map(|n| n.get_ref().clone()))
                .unwrap_or_default(),
        };
        let mut users: HashMap<Box<str>, AuthUser> = HashMap::new();
        for (ui, u) in r.users.iter().enumerate() {
            let uc = ctx(&c, "user", &u.get_ref().name, ui);
            let Some((username, secret)) = check_credentials(ck, u, &uc) else {
                continue;
            };
            let id = tenants.get(ti).and_then(|tenant| {
                let name = u.get_ref().name.as_ref()?;
                tenant.user_by_id(name.get_ref())
            });
            if users.contains_key(username.get_ref().as_str()) {
                ck.error(
                    Some(&username.span()),
                    &uc,
                    format!(
                        "auth_username `{}` is already another user's in this tenant",
                        username.get_ref()
                    ),
                );
            } else if let Some(user) = id {
                users.insert(
                    username.get_ref().as_str().into(),
                    AuthUser { user, secret },
                );
            }
        }
        warn_reach(ck, t, &c, trusted_peers, !users.is_empty());
        directory.tenants.push(Realm {
            realm: realm.into(),
            users,
        });
    }
    directory
}

/// A user's `auth_username` (their name by default, with the span to point at) and secret,
/// when they have one.
fn check_credentials(
    ck: &mut Checker<'_>,
    u: &Spanned<RawUser>,
    c: &str,
) -> Option<(Spanned<String>, UserSecret)> {
    let r = u.get_ref();
    let secret = match (&r.auth_password, &r.auth_ha1) {
        (Some(p), Some(_)) => {
            ck.error(
                Some(&p.span()),
                c,
                "give `auth_password` or `auth_ha1`, not both",
            );
            return None;
        }
        (Some(p), None) if p.get_ref().is_empty() || p.get_ref().contains(['\r', '\n']) => {
            ck.error(
                Some(&p.span()),
                c,
                "`auth_password` must be one non-empty line",
            );
            return None;
        }
        (Some(p), None) => UserSecret::Password(p.get_ref().as_str().into()),
        (None, Some(h))
            if h.get_ref().len() != 32 || !h.get_ref().bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            ck.error(
                Some(&h.span()),
                c,
                "`auth_ha1` must be the 32 hex digits of MD5(username:realm:password)",
            );
            return None;
        }
        (None, Some(h)) => UserSecret::Ha1Md5(h.get_ref().to_ascii_lowercase().into()),
        (None, None) => {
            if let Some(n) = &r.auth_username {
                ck.warn(
                    &n.span(),
                    c,
                    "`auth_username` without `auth_password` or `auth_ha1`: this user cannot authenticate",
                );
            }
            return None;
        }
    };
    let username = r.auth_username.clone().or_else(|| r.name.clone())?;
    let bad = username.get_ref().is_empty()
        || username
            .get_ref()
            .chars()
            .any(|ch| ch == '"' || ch.is_control());
    if bad {
        ck.error(
            Some(&username.span()),
            c,
            "`auth_username` must be non-empty, without `\"` or control characters",
        );
        return None;
    }
    Some((username, secret))
}

/// Warns about a tenant that nobody can reach (no trusted peer, no sources, no user who can
/// authenticate: every request for it is refused) and about sources that are the whole
/// network (anyone there is believed by their From).
fn warn_reach(
    ck: &mut Checker<'_>,
    t: &Spanned<RawTenant>,
    c: &str,
    trusted_peers: bool,
    credentials: bool,
) {
    let r = t.get_ref();
    if !trusted_peers && r.sources.is_empty() && !credentials {
        ck.warn(
            &t.span(),
            c,
            "nobody can reach this tenant: no server.trusted_peers, no `sources`, and no user with `auth_password` or `auth_ha1`; every request for it gets 403",
        );
    }
    for s in &r.sources {
        let v = s.get_ref();
        let everything = v.parse::<ipnet::IpNet>().is_ok_and(|n| n.prefix_len() == 0);
        if everything {
            ck.warn(
                &s.span(),
                c,
                &format!("`sources` entry `{v}` is every address: anyone may call as any user of this tenant by saying so in From"),
            );
        }
    }
}
