//! How a decision is shown: the JSON object of `check --json` (SPEC §1.1), which `replay`
//! prints too, and the readable explanation.

use serde_json::{json, Map, Value};

use crate::policy::{Decision, PinCheck, Policy};

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
