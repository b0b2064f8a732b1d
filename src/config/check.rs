//! From the raw file to a valid [`Config`]: every rule of SPEC §2, every error at once.
//!
//! The stages, each reporting into one [`Checker`]: TOML syntax (every error the parser
//! recovers from, in its order; nothing else is checked after one), then wrong types and
//! unknown keys ([`types`](super::types)), then the semantic checks of the sections:
//! `[server]`, `[pin]` and `[limits]` ([`server`](super::server)), `[brand]`, each
//! `[[tenant]]` ([`tenant`](super::tenant)), then digest credentials ([`auth`](super::auth))
//! and `[tls]` ([`tls`](super::tls)), which needs every listener and next hop known.
//! Errors of the later stages come out together, in file order.

use std::collections::HashMap;
use std::path::Path;

use toml::de::DeTable;

use super::acl::check_brand_patterns;
use super::checker::Checker;
use super::names::{ctx, index_names};
use super::permission::warn_conflicting_passwords;
use super::raw::RawConfig;
use super::server::{check_limits, check_log_format, check_pin, check_server};
use super::tenant::check_tenant;
use super::{types, Config, ConfigErrors};
use crate::policy::acl::AclPattern;
use crate::policy::{Policy, Tenant};
use crate::proxy::Settings;

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
    if !ck.errors.is_empty() {
        // The tree went into `raw`; reading it again costs only when there are errors.
        let (table, _) = DeTable::parse_recoverable(text);
        for (e, field) in ck
            .errors
            .iter_mut()
            .zip(types::value_paths(table.get_ref(), &ck.spans))
        {
            e.field = field;
        }
    }
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
    let log_format = check_log_format(ck, raw.server.as_ref());
    let pin = check_pin(ck, raw.pin.as_ref(), base);
    let limits = check_limits(ck, raw.limits.as_ref());
    let admin = super::admin::check_admin(ck, raw.admin.as_ref());
    let brand_name = match &raw.brand {
        None => {
            ck.error(None, "", "missing required table `[brand]`");
            None
        }
        Some(b) => ck
            .required(&b.get_ref().name, "name", &b.span(), "brand")
            .map(|n| n.get_ref().clone()),
    };
    let brand_patterns = match &raw.brand {
        Some(b) => check_brand_patterns(ck, b.get_ref()),
        None => Vec::new(),
    };
    let tenants = check_tenants(ck, raw, &brand_patterns);
    let trusted = raw
        .server
        .as_ref()
        .is_some_and(|s| !s.get_ref().trusted_peers.is_empty());
    let auth = super::auth::check_auth(ck, &raw.tenant, &tenants, trusted);
    let listen = raw
        .server
        .as_ref()
        .and_then(|s| s.get_ref().listen.as_ref());
    let hop_addrs: Vec<_> = ck.hops.iter().flat_map(|h| h.addrs()).collect();
    let tls = super::tls::check_tls(ck, raw.tls.as_ref(), listen, &hop_addrs, base);
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
        admin,
        tls,
        log_format,
        warnings: std::mem::take(&mut ck.warnings),
    })
}

/// Every `[[tenant]]`: at least one, names unique, each domain in one tenant only.
fn check_tenants(
    ck: &mut Checker<'_>,
    raw: &RawConfig,
    brand_patterns: &[AclPattern],
) -> Vec<Tenant> {
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
        if let Some(spec) = check_tenant(ck, t, brand_patterns, &c) {
            let tenant = Tenant::new(spec);
            warn_conflicting_passwords(ck, &tenant.spec, t, &c);
            tenants.push(tenant);
        }
    }
    tenants
}
