//! Single values of the file read into the types they stand for (SPEC §2): peers and next
//! hops, CIDRs, regions, `allow`/`deny`, passwords, extension patterns (SPEC §3.2). Each
//! reports its own mistake at the value and gives `None`.

use ipnet::IpNet;

use super::checker::Checker;
use toml::Spanned;

use super::raw::{RawHop, Str};
use crate::policy::acl::Action;
use crate::policy::extension::Extension;
use crate::policy::number::Region;
use crate::policy::{HopId, Pin};
use crate::proxy::{Destination, NextHop, Peer};

pub(super) fn parse_peer(ck: &mut Checker<'_>, s: &Str, key: &str, c: &str) -> Option<Peer> {
    match s.get_ref().parse() {
        Ok(t) => Some(t),
        Err(e) => {
            ck.error(Some(&s.span()), c, format!("`{key}`: {e}"));
            None
        }
    }
}

/// A `next_hop` (SPEC §5.2): a destination or a non-empty list of them, kept once in the
/// table of hops however many objects name it.
pub(super) fn parse_hop(ck: &mut Checker<'_>, s: &Spanned<RawHop>, c: &str) -> Option<HopId> {
    let one = |ck: &mut Checker<'_>, text: &str, span: &std::ops::Range<usize>| {
        text.parse::<Destination>()
            .map_err(|e| ck.error(Some(span), c, format!("`next_hop`: {e}")))
            .ok()
    };
    let entries = match s.get_ref() {
        RawHop::One(text) => vec![one(ck, text, &s.span())?],
        RawHop::List(list) if list.is_empty() => {
            ck.error(
                Some(&s.span()),
                c,
                "`next_hop` must name at least one destination",
            );
            return None;
        }
        RawHop::List(list) => {
            let parsed: Vec<_> = list
                .iter()
                .map(|e| one(ck, e.get_ref(), &e.span()))
                .collect();
            parsed.into_iter().collect::<Option<Vec<_>>>()?
        }
    };
    let hop = NextHop(entries);
    let at = match ck.hops.iter().position(|h| *h == hop) {
        Some(at) => at,
        None => {
            ck.hops.push(hop);
            ck.hops.len() - 1
        }
    };
    Some(HopId(at))
}

pub(super) fn parse_cidr(ck: &mut Checker<'_>, s: &Str, key: &str, c: &str) -> Option<IpNet> {
    let v = s.get_ref();
    let parsed = v
        .parse::<IpNet>()
        .ok()
        .or_else(|| v.parse::<std::net::IpAddr>().ok().map(IpNet::from));
    if parsed.is_none() {
        ck.error(
            Some(&s.span()),
            c,
            format!("`{key}`: `{v}` is not an address or a CIDR (10.0.0.0/8, ::1/128)"),
        );
    }
    parsed
}

pub(super) fn parse_region(ck: &mut Checker<'_>, s: &Str, c: &str) -> Option<Region> {
    let parsed = s.get_ref().parse().ok();
    if parsed.is_none() {
        ck.error(
            Some(&s.span()),
            c,
            format!(
                "`country`: `{}` is not a known region (ISO 3166-1 alpha-2 in capitals, e.g. ES)",
                s.get_ref()
            ),
        );
    }
    parsed
}

pub(super) fn parse_action(ck: &mut Checker<'_>, s: &Str, key: &str, c: &str) -> Option<Action> {
    match s.get_ref().as_str() {
        "allow" => Some(Action::Allow),
        "deny" => Some(Action::Deny),
        other => {
            ck.error(
                Some(&s.span()),
                c,
                format!("`{key}` must be \"allow\" or \"deny\", not `{other}`"),
            );
            None
        }
    }
}

/// Passwords: digits and `*`, 1 to `max` characters; `#` ends PIN entry, so it is refused.
pub(super) fn parse_password(
    ck: &mut Checker<'_>,
    s: &Str,
    key: &str,
    max: usize,
    c: &str,
) -> Option<Pin> {
    let v = s.get_ref();
    let problem = if v.contains('#') {
        Some("`#` is not allowed: it ends PIN entry".to_owned())
    } else if v.is_empty() || v.len() > max || !v.bytes().all(|b| b.is_ascii_digit() || b == b'*') {
        Some(format!("must be 1 to {max} digits or `*`"))
    } else {
        None
    };
    match problem {
        Some(p) => {
            ck.error(Some(&s.span()), c, format!("`{key}` {p}"));
            None
        }
        None => Some(Pin::new(v)),
    }
}

pub(super) fn parse_extension(
    ck: &mut Checker<'_>,
    s: &Str,
    key: &str,
    c: &str,
) -> Option<Extension> {
    match Extension::parse(s.get_ref()) {
        Ok(e) => Some(e),
        Err(e) => {
            ck.error(Some(&s.span()), c, format!("`{key}`: {e}"));
            None
        }
    }
}
