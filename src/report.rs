//! How a decision is shown: the JSON object of `check --json` (SPEC §1.1), which `replay`
//! prints too, and the readable explanation.

use serde_json::{json, Map, Value};

use crate::policy::{Call, Decision, PinCheck, Policy};

/// One call to explain, as `check` and the admin API's `/1.1/check` are given it.
pub struct CheckRequest<'a> {
    /// A user's extension or name, or any number; may be `user@domain` or a SIP URI.
    pub from: &'a str,
    /// The dialed string; may be `user@domain` or a SIP URI.
    pub to: &'a str,
    /// A tenant name; needed when there are several and no domain says which.
    pub tenant: Option<&'a str>,
    pub forwarded_by: Option<&'a str>,
    /// Resolves a challenge as if the caller had typed these digits.
    pub pin: Option<&'a str>,
}

/// Why a call cannot be checked (a bad request, not a decision).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    #[error("no tenant named `{0}`")]
    UnknownTenant(String),
    #[error("the configuration has several tenants: name one")]
    WhichTenant,
    #[error("the PIN `{0}` must be digits or `*`")]
    BadPin(String),
}

/// Decides one call as the proxy would, with the explanation lines.
pub fn check(
    policy: &Policy,
    req: &CheckRequest<'_>,
) -> Result<(Decision, Vec<String>), CheckError> {
    let (caller, from_domain) = split_address(req.from);
    let (dialed, to_domain) = split_address(req.to);
    let tenant = match req.tenant {
        Some(name) => policy
            .tenant_by_name(name)
            .ok_or_else(|| CheckError::UnknownTenant(name.to_owned()))?,
        None => {
            let domains: Vec<&str> = [from_domain, to_domain].into_iter().flatten().collect();
            policy
                .tenant_for(&domains, None)
                .ok_or(CheckError::WhichTenant)?
        }
    };
    if let Some(p) = req
        .pin
        .filter(|p| !p.bytes().all(|b| b.is_ascii_digit() || b == b'*'))
    {
        return Err(CheckError::BadPin(p.to_owned()));
    }
    let call = Call {
        tenant,
        caller,
        dialed,
        forwarded_by: req.forwarded_by,
    };
    Ok(policy.explain(&call, req.pin))
}

/// Accepts `1001`, `alice@acme.example.com` or `sip:1001@acme.example.com`: the user part, and
/// the domain when there is one (to find the tenant).
fn split_address(s: &str) -> (&str, Option<&str>) {
    let s = s
        .strip_prefix("sip:")
        .or_else(|| s.strip_prefix("sips:"))
        .or_else(|| s.strip_prefix("tel:"))
        .unwrap_or(s);
    match s.rsplit_once('@') {
        Some((user, domain)) => (
            user,
            Some(domain.split([';', ':', '>']).next().unwrap_or(domain)),
        ),
        None => (s, None),
    }
}

/// The keys of `check --json` for one decision.
pub fn decision_json(policy: &Policy, d: &Decision) -> Map<String, Value> {
    let t = &policy.tenants[d.tenant].spec;
    let (stage, rule) = policy.stage_and_rule(d);
    let value = json!({
        "decision": d.verdict.as_str(),
        "call": d.call.as_str(),
        "tenant": &*t.name,
        "identity": d.identity.map(|u| &*t.users[u].name),
        "forwarded": d.forwarded,
        "dialed": &*d.dialed,
        "e164": d.e164.as_deref(),
        "next_hop": policy.next_hop(d).map(|h| policy.hop_name(h)),
        "outcall": d.outcall.map(|o| &*t.outcalls[o].name),
        "incall": d.incall.map(|i| &*t.incalls[i].name),
        "stage": stage,
        "rule": rule,
        "pin": d.pin.map(|p| match p { PinCheck::Accepted => "accepted", PinCheck::Rejected => "rejected" }),
        "reason": policy.reason(d),
    });
    match value {
        Value::Object(map) => map,
        _ => unreachable!("json! of an object literal is an object"),
    }
}

/// One screened call as `replay --json` prints it and the admin API's `/1.1/events` sends
/// it: `call_id`, `time` (RFC 3339, UTC), `source`, `caller` (as identified), then the keys
/// of `check --json`.
pub fn screening_json(
    policy: &Policy,
    s: &crate::proxy::Screening,
    time: std::time::SystemTime,
) -> Map<String, Value> {
    let (call_id, source, d) = (&s.call_id, s.source, &s.decision);
    let mut obj = Map::new();
    obj.insert("call_id".into(), Value::String(call_id.to_string()));
    obj.insert("caller".into(), Value::String(s.caller.to_string()));
    obj.insert(
        "time".into(),
        Value::String(humantime::format_rfc3339_micros(time).to_string()),
    );
    obj.insert("source".into(), Value::String(source.to_string()));
    obj.extend(decision_json(policy, d));
    obj
}

/// The readable form of `check`: the explanation lines, then the outcome.
pub fn decision_text(policy: &Policy, d: &Decision, lines: &[String]) -> String {
    let t = &policy.tenants[d.tenant].spec;
    let mut out = format!("tenant: {}\n", t.name);
    for l in lines {
        out.push_str(l);
        out.push('\n');
    }
    let identity = d
        .identity
        .map_or("none (unknown caller)", |u| &t.users[u].name);
    out.push_str(&format!("identity: {identity}\n"));
    out.push_str(&format!("call: {}\n", d.call.as_str()));
    out.push_str(&format!("e164: {}\n", d.e164.as_deref().unwrap_or("none")));
    out.push_str(&format!("decision: {}\n", d.verdict.as_str()));
    out.push_str(&format!("reason: {}\n", policy.reason(d)));
    if let Some(h) = policy.next_hop(d) {
        out.push_str(&format!("next hop: {}\n", policy.hop_name(h)));
    }
    out
}
