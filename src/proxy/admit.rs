//! Admission (SPEC §4.1): a new out-of-dialog request reaches a next hop only when someone
//! vouches for it, tried in this order:
//! 1. a **trusted peer** (a PBX, an SBC): its tenant by domain, else by source, else the only
//!    tenant; its identity from P-Asserted-Identity, else From;
//! 2. a **tenant source** (a network that authenticates its own phones): that tenant; the
//!    identity from From (a P-Asserted-Identity is removed when forwarding);
//! 3. **digest authentication** against a user of the tenant of the From domain (or the only
//!    tenant): the identity is that user, whatever From says.
//!
//! Anything else is refused with 403 (no hint of which users exist), or challenged with 407
//! when its tenant has users who can authenticate. There is no "single tenant takes
//! everything" on the wire.

use std::net::IpAddr;
use std::time::Instant;

use super::auth::{self, Credentials, Nonces};
use super::limiter::FAILED_AUTH_COST;
use super::pin::Subject;
use super::route::uri_user;
use super::settings::Lockout;
use super::{Peer, Proxy};
use crate::metrics::Refusal;
use crate::policy::{number, TenantId, UserId};
use crate::sip::header::parse_contacts;
use crate::sip::uri::Uri;
use crate::sip::{HeaderName, Message};

/// Wrong passwords for one username, from anywhere, before it is locked: guessing from
/// many addresses (an IPv6 /48 has 65,536 /64s) gets no further than from one.
const LOGIN_LOCKOUT: Lockout = Lockout {
    failures: 20,
    window: std::time::Duration::from_secs(600),
    lock: std::time::Duration::from_secs(600),
};

/// Who vouched for a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Voucher {
    TrustedPeer,
    TenantSource,
    Digest(UserId),
}

/// An admitted request: its tenant, who vouched, and the caller's identity string (a user
/// name or extension, or any number).
#[derive(Debug)]
pub(super) struct Admitted {
    pub(super) tenant: TenantId,
    pub(super) voucher: Voucher,
    pub(super) caller: String,
}

impl Admitted {
    /// Whether the request comes from a peer that is trusted with its headers or a network
    /// of the tenant (then its dialogs, SDP and in-dialog requests are believed as sent).
    pub(super) fn is_network(&self) -> bool {
        matches!(self.voucher, Voucher::TrustedPeer | Voucher::TenantSource)
    }
}

/// What admission made of a request.
#[derive(Debug)]
pub(super) enum Admission {
    Admitted(Admitted),
    /// 407 with a fresh challenge for the tenant's realm.
    Challenge {
        tenant: TenantId,
        stale: bool,
    },
    /// 403.
    Refused,
}

impl Proxy {
    /// Whether `ip` is a trusted peer or in a tenant's `sources`: such sources are exempt
    /// from per-source limits and may send in-dialog requests for dialogs sipscreen does
    /// not know (after a restart).
    pub(super) fn is_network(&self, ip: IpAddr) -> bool {
        self.settings.server.is_trusted(ip) || self.policy.tenant_by_source(ip).is_some()
    }

    /// Admits a new out-of-dialog request from `from`, or says why not.
    pub(super) fn admit(&mut self, now: Instant, from: Peer, msg: &Message) -> Admission {
        let ip = from.addr.ip();
        let from_uri = msg.from().and_then(|f| Uri::parse(f.uri).ok());
        let from_user = from_uri.as_ref().and_then(|u| u.user).unwrap_or("");
        if self.settings.server.is_trusted(ip) {
            let ruri = msg.request_uri().and_then(|u| Uri::parse(u).ok());
            let domains: Vec<&str> = [
                from_uri.as_ref().map(|u| u.host),
                ruri.as_ref().map(|u| u.host),
            ]
            .into_iter()
            .flatten()
            .filter(|h| !h.is_empty())
            .collect();
            let Some(tenant) = self.policy.tenant_for(&domains, Some(ip)) else {
                return Admission::Refused;
            };
            let pai = msg
                .header_values(HeaderName::PAssertedIdentity)
                .flat_map(|v| parse_contacts(v).ok().into_iter().flatten())
                .find_map(|na| uri_user(na.uri));
            return Admission::Admitted(Admitted {
                tenant,
                voucher: Voucher::TrustedPeer,
                caller: number::uri_user(pai.unwrap_or(from_user)).into_owned(),
            });
        }
        if let Some(tenant) = self.policy.tenant_by_source(ip) {
            return Admission::Admitted(Admitted {
                tenant,
                voucher: Voucher::TenantSource,
                caller: number::uri_user(from_user).into_owned(),
            });
        }
        let now_s = self.clock_s(now);
        let host = from_uri.as_ref().map_or("", |u| u.host);
        let Some(tenant) = self
            .policy
            .tenant_by_domain(&[host])
            .or(self.policy.only_tenant())
        else {
            return Admission::Refused;
        };
        let Some(realm) = self
            .settings
            .auth
            .tenants
            .get(tenant)
            .filter(|r| !r.users.is_empty())
        else {
            return Admission::Refused;
        };
        let credentials = msg
            .header_values(HeaderName::ProxyAuthorization)
            .filter_map(Credentials::parse)
            .find(|c| c.realm == &*realm.realm);
        let Some(c) = credentials else {
            return Admission::Challenge {
                tenant,
                stale: false,
            };
        };
        let login = Subject::Login(
            self.policy.tenants[tenant].spec.name.clone(),
            c.username.into(),
        );
        let method = msg.method();
        let verdict = if self
            .holds
            .lockout
            .is_locked(std::slice::from_ref(&login), now)
        {
            // Guessing a user's password from many addresses ends here: while the login is
            // locked, nothing verifies, and the caller cannot tell.
            auth::Verdict::Invalid
        } else if msg.request_uri() != Some(c.uri) {
            // Credentials are for this request only (RFC 7616 §3.4.6): taken from another
            // request, they do not verify.
            auth::Verdict::Invalid
        } else {
            self.nonces
                .verify(&self.settings.secret, now_s, ip, realm, &c, method.as_str())
        };
        match verdict {
            auth::Verdict::Valid(user) => {
                // The user by extension: unique among the tenant's numbers, where a name
                // could equal another user's extension.
                let extension = &self.policy.tenants[tenant].spec.users[user].extension;
                Admission::Admitted(Admitted {
                    tenant,
                    voucher: Voucher::Digest(user),
                    caller: extension.to_string(),
                })
            }
            auth::Verdict::Stale => Admission::Challenge {
                tenant,
                stale: true,
            },
            auth::Verdict::Invalid => {
                tracing::info!(source = %from.addr, call_id = msg.call_id(), "wrong digest credentials");
                self.charge(now, from, FAILED_AUTH_COST);
                let started = self.holds.lockout.fail(&[login], now, &LOGIN_LOCKOUT);
                for s in started {
                    if let Subject::Login(t, u) = s {
                        tracing::warn!(
                            tenant = &*t,
                            username = &*u,
                            lock_s = LOGIN_LOCKOUT.lock.as_secs(),
                            "too many wrong passwords for this username: locked"
                        );
                    }
                }
                Admission::Challenge {
                    tenant,
                    stale: false,
                }
            }
        }
    }

    /// Answers a request that was not admitted: 407 with fresh challenges, or 403.
    pub(super) fn refuse_admission(
        &mut self,
        now: Instant,
        from: Peer,
        msg: &Message,
        resp_peer: Peer,
        a: Admission,
    ) {
        match a {
            Admission::Admitted(_) => {}
            Admission::Challenge { tenant, stale } => {
                let Some(realm) = self.settings.auth.tenants.get(tenant) else {
                    return;
                };
                let realm = realm.realm.clone();
                let now_s = self.clock_s(now);
                let nonce = Nonces::make(&self.settings.secret, now_s, &realm, from.addr.ip());
                let [sha, md5] = auth::challenges(&realm, &nonce, stale);
                self.refused(Refusal::Authentication);
                self.reply_stateless(
                    msg,
                    resp_peer,
                    407,
                    "Proxy Authentication Required",
                    &[("Proxy-Authenticate", &sha), ("Proxy-Authenticate", &md5)],
                );
            }
            Admission::Refused => {
                self.warn_refused(now, from, msg, "not admitted", Refusal::Admission);
                let reason = self.reason_header();
                let extra: Vec<(&str, &str)> =
                    reason.iter().map(|(k, v)| (*k, v.as_str())).collect();
                self.reply_stateless(msg, resp_peer, 403, "Forbidden", &extra);
            }
        }
    }

    /// Seconds on the core's own clock (nonce timestamps): from the first time it was
    /// asked.
    fn clock_s(&mut self, now: Instant) -> u64 {
        let epoch = *self.epoch.get_or_insert(now);
        now.saturating_duration_since(epoch).as_secs()
    }
}
