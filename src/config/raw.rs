//! The configuration file as written: serde structures that mirror SPEC §2 key for key.
//!
//! Every value that can be wrong is `Spanned`, so that an error can point at its line and
//! column; keys that SPEC §2 calls required are `Option` all the same, so that a missing one is
//! reported together with every other mistake instead of stopping the parse at the first.
//! Unknown keys are collected by `serde_ignored` for the same reason (`deny_unknown_fields`
//! would stop at the first).

use serde::Deserialize;
use toml::Spanned;

pub type Str = Spanned<String>;

#[derive(Deserialize, Debug, Default)]
pub struct RawConfig {
    pub server: Option<Spanned<RawServer>>,
    pub pin: Option<Spanned<RawPin>>,
    pub limits: Option<Spanned<RawLimits>>,
    pub admin: Option<Spanned<RawAdmin>>,
    pub tls: Option<Spanned<RawTls>>,
    pub brand: Option<Spanned<RawBrand>>,
    #[serde(default)]
    pub tenant: Vec<Spanned<RawTenant>>,
}

#[derive(Deserialize, Debug)]
pub struct RawServer {
    pub listen: Option<Spanned<Vec<Str>>>,
    pub next_hop: Option<Spanned<RawHop>>,
    pub dns: Option<Spanned<Vec<Str>>>,
    pub probe_interval_s: Option<Spanned<i64>>,
    pub down_after: Option<Spanned<i64>>,
    #[serde(default)]
    pub trusted_peers: Vec<Str>,
    pub record_route: Option<bool>,
    pub reject_reason: Option<Str>,
    pub log_format: Option<Str>,
}

/// A `next_hop`: one destination, or a list of them tried in order (SPEC §5.2). Read by
/// hand because serde's untagged enums buffer the value and lose the spans of the list's
/// entries.
#[derive(Debug)]
pub enum RawHop {
    One(String),
    List(Vec<Str>),
}

impl<'de> Deserialize<'de> for RawHop {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawHop;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a next hop or a list of next hops")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawHop, E> {
                Ok(RawHop::One(v.to_owned()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<RawHop, A::Error> {
                let mut list = Vec::new();
                while let Some(s) = seq.next_element::<Str>()? {
                    list.push(s);
                }
                Ok(RawHop::List(list))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// `[tls]`: PEM files, relative to the configuration's folder.
#[derive(Deserialize, Debug)]
pub struct RawTls {
    pub certificate: Option<Str>,
    pub key: Option<Str>,
    pub ca: Option<Str>,
    pub client_certificate: Option<Str>,
    pub client_key: Option<Str>,
    pub verify_client: Option<bool>,
    pub client_ca: Option<Str>,
}

#[derive(Deserialize, Debug)]
pub struct RawAdmin {
    pub listen: Option<Str>,
    #[serde(default)]
    pub tokens: Vec<Spanned<RawToken>>,
}

#[derive(Deserialize, Debug)]
pub struct RawToken {
    pub name: Option<Str>,
    pub token: Option<Str>,
}

#[derive(Deserialize, Debug)]
pub struct RawPin {
    pub attempts: Option<Spanned<i64>>,
    pub max_digits: Option<Spanned<i64>>,
    pub first_digit_timeout_s: Option<Spanned<i64>>,
    pub inter_digit_timeout_s: Option<Spanned<i64>>,
    pub prompt: Option<Str>,
    pub rtp_ports: Option<Str>,
    pub dial_prefix: Option<Str>,
    pub lockout: Option<Spanned<RawLockout>>,
}

#[derive(Deserialize, Debug)]
pub struct RawLimits {
    pub max_message_size: Option<Spanned<i64>>,
    pub max_transactions: Option<Spanned<i64>>,
    pub max_tcp_connections: Option<Spanned<i64>>,
    pub tcp_idle_timeout_s: Option<Spanned<i64>>,
    pub max_dialogs: Option<Spanned<i64>>,
    pub invite_timeout_s: Option<Spanned<i64>>,
    pub dialog_timeout_s: Option<Spanned<i64>>,
    pub max_dialed_length: Option<Spanned<i64>>,
    pub per_source: Option<Spanned<RawPerSource>>,
}

#[derive(Deserialize, Debug)]
pub struct RawPerSource {
    pub requests_per_s: Option<Spanned<i64>>,
    pub burst: Option<Spanned<i64>>,
    pub ban_s: Option<Spanned<i64>>,
}

#[derive(Deserialize, Debug)]
pub struct RawLockout {
    pub failures: Option<Spanned<i64>>,
    pub window_s: Option<Spanned<i64>>,
    pub lock_s: Option<Spanned<i64>>,
}

#[derive(Deserialize, Debug)]
pub struct RawBrand {
    pub name: Option<Str>,
    #[serde(default)]
    pub acl_patterns: Vec<Spanned<RawPattern>>,
}

#[derive(Deserialize, Debug)]
pub struct RawPattern {
    pub name: Option<Str>,
    pub regex: Option<Str>,
    pub numbers: Option<Spanned<Vec<Str>>>,
}

#[derive(Deserialize, Debug)]
pub struct RawTenant {
    pub name: Option<Str>,
    #[serde(default)]
    pub domains: Vec<Str>,
    #[serde(default)]
    pub sources: Vec<Str>,
    pub country: Option<Str>,
    pub area_code: Option<Str>,
    pub next_hop: Option<Spanned<RawHop>>,
    pub realm: Option<Str>,
    #[serde(default)]
    pub acl_patterns: Vec<Spanned<RawPattern>>,
    #[serde(default)]
    pub call_acls: Vec<Spanned<RawAcl>>,
    #[serde(default)]
    pub users: Vec<Spanned<RawUser>>,
    #[serde(default)]
    pub groups: Vec<Spanned<RawGroup>>,
    #[serde(default)]
    pub queues: Vec<Spanned<RawService>>,
    #[serde(default)]
    pub conferences: Vec<Spanned<RawService>>,
    #[serde(default)]
    pub outcalls: Vec<Spanned<RawOutcall>>,
    #[serde(default)]
    pub incalls: Vec<Spanned<RawIncall>>,
    #[serde(default)]
    pub call_permissions: Vec<Spanned<RawPermission>>,
}

#[derive(Deserialize, Debug)]
pub struct RawAcl {
    pub name: Option<Str>,
    pub default: Option<Str>,
    #[serde(default)]
    pub rules: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize, Debug)]
pub struct RawRule {
    pub metric: Option<Spanned<i64>>,
    pub pattern: Option<Str>,
    pub action: Option<Str>,
}

#[derive(Deserialize, Debug)]
pub struct RawUser {
    pub name: Option<Str>,
    pub extension: Option<Str>,
    pub call_acl: Option<Str>,
    pub call_permission_password: Option<Str>,
    pub country: Option<Str>,
    pub uuid: Option<Str>,
    pub auth_username: Option<Str>,
    pub auth_password: Option<Str>,
    pub auth_ha1: Option<Str>,
}

#[derive(Deserialize, Debug)]
pub struct RawGroup {
    pub name: Option<Str>,
    pub number: Option<Str>,
    #[serde(default)]
    pub members: Vec<Str>,
}

/// A queue or a conference.
#[derive(Deserialize, Debug)]
pub struct RawService {
    pub name: Option<Str>,
    pub number: Option<Str>,
}

#[derive(Deserialize, Debug)]
pub struct RawOutcall {
    pub name: Option<Str>,
    #[serde(default)]
    pub patterns: Vec<Str>,
    pub next_hop: Option<Spanned<RawHop>>,
}

#[derive(Deserialize, Debug)]
pub struct RawIncall {
    pub name: Option<Str>,
    pub did: Option<Str>,
    pub destination: Option<Str>,
}

#[derive(Deserialize, Debug)]
pub struct RawPermission {
    pub name: Option<Str>,
    pub mode: Option<Str>,
    pub extensions: Option<Spanned<Vec<Str>>>,
    pub password: Option<Str>,
    pub enabled: Option<bool>,
    pub description: Option<String>,
    #[serde(default)]
    pub users: Vec<Str>,
    #[serde(default)]
    pub groups: Vec<Str>,
    #[serde(default)]
    pub outcalls: Vec<Str>,
    #[serde(default)]
    pub incalls: Vec<Str>,
}
