//! From the raw file to a valid [`Config`]: every rule of SPEC §2, every error at once.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use ipnet::IpNet;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::raw::*;
use super::{Config, ConfigError, ConfigErrors};
use crate::media::prompt::Prompt;
use crate::policy::acl::{
    AclPattern, AclPatterns, AclRegex, AclRule, Action, CallAcl, Matcher, Origin,
};
use crate::policy::extension::Extension;
use crate::policy::number::{normalize, Region};
use crate::policy::{
    Destination, Group, Holder, HopId, Incall, Outcall, Permission, Pin, Policy, Service, Tenant,
    TenantSpec, User,
};
use crate::proxy::{Limits, Lockout, Peer, PerSource, PinSettings, Server, Settings};

/// Collects errors with their positions.
pub(super) struct Checker<'a> {
    file: &'a str,
    text: &'a str,
    errors: Vec<ConfigError>,
    warnings: Vec<String>,
    /// Keys whose values had the wrong type (already reported, then taken out), with the
    /// span of the table they were in.
    removed: Vec<(String, Range<usize>)>,
    /// Every distinct next hop named so far, in order: the policy's [`HopId`]s.
    hops: Vec<Peer>,
}

impl Checker<'_> {
    fn position(&self, span: &Range<usize>) -> (usize, usize) {
        let start = span.start.min(self.text.len());
        let before = &self.text[..start];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }

    pub(super) fn error(
        &mut self,
        span: Option<&Range<usize>>,
        context: &str,
        message: impl Into<String>,
    ) {
        let position = span.map(|s| self.position(s));
        self.errors.push(ConfigError {
            file: self.file.to_owned(),
            position,
            context: context.to_owned(),
            message: message.into(),
        });
    }

    pub(super) fn warn(&mut self, span: &Range<usize>, context: &str, message: &str) {
        let (line, col) = self.position(span);
        self.warnings
            .push(format!("{}:{line}:{col}: {context}: {message}", self.file));
    }

    /// A required key: its value, or an error at the enclosing object.
    fn required<'v, T>(
        &mut self,
        value: &'v Option<T>,
        key: &str,
        at: &Range<usize>,
        ctx: &str,
    ) -> Option<&'v T> {
        let mistyped = self.removed.iter().any(|(k, s)| k == key && s == at);
        if value.is_none() && !mistyped {
            self.error(Some(at), ctx, format!("missing required key `{key}`"));
        }
        value.as_ref()
    }

    /// A positive integer setting with a default.
    fn positive(&mut self, v: &Option<Spanned<i64>>, default: u32, key: &str, ctx: &str) -> u32 {
        match v {
            None => default,
            Some(s) => match u32::try_from(*s.get_ref()) {
                Ok(n) if n > 0 => n,
                _ => {
                    self.error(
                        Some(&s.span()),
                        ctx,
                        format!(
                            "`{key}` must be a positive whole number, not {}",
                            s.get_ref()
                        ),
                    );
                    default
                }
            },
        }
    }
}

/// Object names: each must be given and unique within its kind and tenant.
fn name_of<'v>(
    ck: &mut Checker<'_>,
    name: &'v Option<Str>,
    at: &Range<usize>,
    ctx: &str,
) -> Option<&'v Str> {
    ck.required(name, "name", at, ctx)
}

/// Builds the context of an object: `tenant "acme", user "alice"` (or `user #3` when it has
/// no name).
pub(super) fn ctx(parent: &str, kind: &str, name: &Option<Str>, index: usize) -> String {
    let this = match name {
        Some(n) => format!("{kind} \"{}\"", n.get_ref()),
        None => format!("{kind} #{}", index + 1),
    };
    if parent.is_empty() {
        this
    } else {
        format!("{parent}, {this}")
    }
}

/// Reports duplicate names among `items`, and returns a name → index map of the first ones.
fn index_names<'v, T>(
    ck: &mut Checker<'_>,
    items: &'v [Spanned<T>],
    name: impl Fn(&T) -> &Option<Str>,
    parent: &str,
    kind: &str,
) -> HashMap<&'v str, usize> {
    let mut map = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        if let Some(n) = name(item.get_ref()) {
            if map.insert(n.get_ref().as_str(), i).is_some() {
                let c = ctx(parent, kind, name(item.get_ref()), i);
                ck.error(
                    Some(&n.span()),
                    &c,
                    format!("duplicate {kind} name `{}`", n.get_ref()),
                );
            }
        }
    }
    // Keep the first definition on duplicates.
    for (i, item) in items.iter().enumerate().rev() {
        if let Some(n) = name(item.get_ref()) {
            map.insert(n.get_ref().as_str(), i);
        }
    }
    map
}

/// Resolves a list of references against a name map.
fn resolve(
    ck: &mut Checker<'_>,
    refs: &[Str],
    names: &HashMap<&str, usize>,
    what: &str,
    c: &str,
) -> Vec<usize> {
    let mut out = Vec::with_capacity(refs.len());
    for r in refs {
        match names.get(r.get_ref().as_str()) {
            Some(&i) => {
                if !out.contains(&i) {
                    out.push(i);
                }
            }
            None => ck.error(
                Some(&r.span()),
                c,
                format!("unknown {what} `{}`", r.get_ref()),
            ),
        }
    }
    out
}

fn parse_peer(ck: &mut Checker<'_>, s: &Str, key: &str, c: &str) -> Option<Peer> {
    match s.get_ref().parse() {
        Ok(t) => Some(t),
        Err(e) => {
            ck.error(Some(&s.span()), c, format!("`{key}`: {e}"));
            None
        }
    }
}

/// A `next_hop`, kept once in the table of hops however many objects name it.
fn parse_hop(ck: &mut Checker<'_>, s: &Str, c: &str) -> Option<HopId> {
    let peer = parse_peer(ck, s, "next_hop", c)?;
    let at = match ck.hops.iter().position(|h| *h == peer) {
        Some(at) => at,
        None => {
            ck.hops.push(peer);
            ck.hops.len() - 1
        }
    };
    Some(HopId(at))
}

fn parse_cidr(ck: &mut Checker<'_>, s: &Str, key: &str, c: &str) -> Option<IpNet> {
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

fn parse_region(ck: &mut Checker<'_>, s: &Str, c: &str) -> Option<Region> {
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

fn parse_action(ck: &mut Checker<'_>, s: &Str, key: &str, c: &str) -> Option<Action> {
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
fn parse_password(ck: &mut Checker<'_>, s: &Str, key: &str, max: usize, c: &str) -> Option<Pin> {
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

/// How many wrongly typed values are reported before giving up on the rest.
const MAX_TYPE_ERRORS: usize = 64;

/// Checks the whole file.
pub(super) fn check(text: &str, file: &str, base: &Path) -> Result<Config, ConfigErrors> {
    let mut ck = Checker {
        file,
        text,
        errors: Vec::new(),
        warnings: Vec::new(),
        removed: Vec::new(),
        hops: Vec::new(),
    };
    let (mut table, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        for e in syntax {
            let span = e.span();
            ck.error(span.as_ref(), "", format!("TOML syntax: {}", e.message()));
        }
        return Err(ConfigErrors(ck.errors));
    }
    // A value of the wrong type stops serde; it is reported, taken out, and the file read
    // again, so that one wrong type does not hide every other mistake.
    let mut unknown: Vec<Vec<Segment>> = Vec::new();
    let raw = loop {
        unknown.clear();
        let de = toml::Deserializer::from(table.clone());
        match serde_ignored::deserialize(de, |path| unknown.push(segments(&path))) {
            Ok(raw) => break Some(raw),
            Err(e) => {
                let span = e.span();
                let path = span.as_ref().and_then(|s| find_value(table.get_ref(), s));
                match path {
                    Some(path) if ck.removed.len() < MAX_TYPE_ERRORS => {
                        let (context, key) = describe(table.get_ref(), &path);
                        ck.error(span.as_ref(), &context, format!("`{key}`: {}", e.message()));
                        let parent = path
                            .split_last()
                            .and_then(|(_, up)| value_at(table.get_ref(), up));
                        if let (Some(parent), Some(Segment::Key(k))) = (parent, path.last()) {
                            ck.removed.push((k.clone(), parent));
                        }
                        remove_value(table.get_mut(), &path);
                    }
                    _ => {
                        ck.error(span.as_ref(), "", e.message().to_owned());
                        break None;
                    }
                }
            }
        }
    };
    for path in &unknown {
        let span = key_span(table.get_ref(), path);
        let (context, key) = describe(table.get_ref(), path);
        ck.error(span.as_ref(), &context, format!("unknown key `{key}`"));
    }
    let config = raw.and_then(|raw| build(&mut ck, &raw, base));
    // In file order, whatever stage found them.
    ck.errors.sort_by_key(|e| e.position);
    match config {
        Some(c) if ck.errors.is_empty() => Ok(c),
        _ => Err(ConfigErrors(ck.errors)),
    }
}

/// A step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

/// The path of an ignored key, without the private keys `Spanned` goes through.
fn segments(path: &serde_ignored::Path<'_>) -> Vec<Segment> {
    use serde_ignored::Path as P;
    let mut out = match path {
        P::Root => return Vec::new(),
        P::Seq { parent, .. } | P::Map { parent, .. } => segments(parent),
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            return segments(parent)
        }
    };
    match path {
        P::Seq { index, .. } => out.push(Segment::Index(*index)),
        P::Map { key, .. } if !key.starts_with("$__serde_spanned") => {
            out.push(Segment::Key(key.clone()))
        }
        _ => {}
    }
    out
}

fn child<'t, 'i>(v: &'t DeValue<'i>, seg: &Segment) -> Option<&'t Spanned<DeValue<'i>>> {
    match (seg, v) {
        (Segment::Key(k), DeValue::Table(t)) => {
            t.iter().find(|(key, _)| key.get_ref() == k).map(|(_, v)| v)
        }
        (Segment::Index(i), DeValue::Array(a)) => a.get(*i),
        _ => None,
    }
}

/// The span of the value at `path`.
fn value_at(root: &DeTable<'_>, path: &[Segment]) -> Option<Range<usize>> {
    let root = Spanned::new(0..0, DeValue::Table(root.clone()));
    let mut value = &root;
    for seg in path {
        value = child(value.get_ref(), seg)?;
    }
    Some(value.span())
}

/// Where the last key of `path` is written.
fn key_span(root: &DeTable<'_>, path: &[Segment]) -> Option<Range<usize>> {
    let (Segment::Key(last), parents) = path.split_last()? else {
        return None;
    };
    let root = DeValue::Table(root.clone());
    let mut value = &root;
    for seg in parents {
        value = child(value, seg)?.get_ref();
    }
    let table = value.as_table()?;
    table
        .iter()
        .find(|(key, _)| key.get_ref() == last)
        .map(|(key, _)| key.span())
}

/// The path to the value written at `span`.
fn find_value(root: &DeTable<'_>, span: &Range<usize>) -> Option<Vec<Segment>> {
    fn walk(v: &Spanned<DeValue<'_>>, span: &Range<usize>, path: &mut Vec<Segment>) -> bool {
        if v.span() == *span {
            return true;
        }
        let children: Vec<(Segment, &Spanned<DeValue<'_>>)> = match v.get_ref() {
            DeValue::Table(t) => t
                .iter()
                .map(|(k, v)| (Segment::Key(k.get_ref().to_string()), v))
                .collect(),
            DeValue::Array(a) => a
                .iter()
                .enumerate()
                .map(|(i, v)| (Segment::Index(i), v))
                .collect(),
            _ => return false,
        };
        for (seg, c) in children {
            path.push(seg);
            if walk(c, span, path) {
                return true;
            }
            path.pop();
        }
        false
    }
    let root = Spanned::new(usize::MAX..usize::MAX, DeValue::Table(root.clone()));
    let mut path = Vec::new();
    walk(&root, span, &mut path).then_some(path)
}

/// Takes the value at `path` out of the table.
fn remove_value(root: &mut DeTable<'_>, path: &[Segment]) {
    fn walk(v: &mut DeValue<'_>, path: &[Segment]) {
        match (path, v) {
            ([Segment::Key(k)], DeValue::Table(t)) => {
                t.remove(&Spanned::new(0..0, std::borrow::Cow::Owned(k.clone())));
            }
            ([Segment::Index(i)], DeValue::Array(a)) => {
                let mut kept = toml::de::DeArray::new();
                for (j, item) in a.iter().enumerate() {
                    if j != *i {
                        kept.push(item.clone());
                    }
                }
                *a = kept;
            }
            ([Segment::Key(k), rest @ ..], DeValue::Table(t)) => {
                if let Some((_, v)) = t.iter_mut().find(|(key, _)| key.get_ref() == k) {
                    walk(v.get_mut(), rest);
                }
            }
            ([Segment::Index(i), rest @ ..], DeValue::Array(a)) => {
                if let Some(v) = a.get_mut(*i) {
                    walk(v.get_mut(), rest);
                }
            }
            _ => {}
        }
    }
    let mut top = DeValue::Table(std::mem::take(root));
    walk(&mut top, path);
    if let DeValue::Table(t) = top {
        *root = t;
    }
}

/// Names the object a key path is in, as semantic errors do (`tenant "acme", user "bob"`),
/// and the key itself (`extension`, `members[2]`).
fn describe(root: &DeTable<'_>, path: &[Segment]) -> (String, String) {
    let root = DeValue::Table(root.clone());
    let mut parts: Vec<String> = Vec::new();
    let mut value = &root;
    let mut key = String::new();
    let mut i = 0;
    while let Some(seg) = path.get(i) {
        let last = i + 1 == path.len();
        match (seg, path.get(i + 1)) {
            (Segment::Key(k), Some(Segment::Index(n))) => {
                let element =
                    child(value, seg).and_then(|list| child(list.get_ref(), &Segment::Index(*n)));
                match element.map(|e| e.get_ref()) {
                    Some(e @ DeValue::Table(t)) if i + 2 < path.len() => {
                        let kind = if k == "tenant" {
                            k.as_str()
                        } else {
                            k.strip_suffix('s').unwrap_or(k)
                        };
                        let name = t
                            .iter()
                            .find(|(key, _)| key.get_ref() == "name")
                            .and_then(|(_, v)| v.get_ref().as_str());
                        parts.push(match name {
                            Some(name) => format!("{kind} \"{name}\""),
                            None => format!("{kind} #{}", n + 1),
                        });
                        value = e;
                    }
                    _ => {
                        key = format!("{k}[{n}]");
                        break;
                    }
                }
                i += 2;
                continue;
            }
            (Segment::Key(k), _) if last => key = k.clone(),
            (Segment::Key(k), _) => {
                parts.push(k.clone());
                match child(value, seg) {
                    Some(v) => value = v.get_ref(),
                    None => break,
                }
            }
            (Segment::Index(n), _) => key = format!("[{n}]"),
        }
        i += 1;
    }
    (parts.join(", "), key)
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

/// `[server]`, and the default next hop (the first of the table of hops).
fn check_server(ck: &mut Checker<'_>, s: &Spanned<RawServer>) -> Option<(Server, HopId)> {
    let c = "server";
    let raw = s.get_ref();
    let mut listen = Vec::new();
    if let Some(l) = ck.required(&raw.listen, "listen", &s.span(), c) {
        if l.get_ref().is_empty() {
            ck.error(
                Some(&l.span()),
                c,
                "`listen` must name at least one address",
            );
        }
        for entry in l.get_ref() {
            listen.extend(parse_peer(ck, entry, "listen", c));
        }
    }
    let next_hop = ck
        .required(&raw.next_hop, "next_hop", &s.span(), c)
        .and_then(|n| parse_hop(ck, n, c));
    let trusted_peers = raw
        .trusted_peers
        .iter()
        .filter_map(|p| parse_cidr(ck, p, "trusted_peers", c))
        .collect();
    let reject_reason = match &raw.reject_reason {
        Some(r) if r.get_ref().contains(['\r', '\n']) => {
            ck.error(Some(&r.span()), c, "`reject_reason` must be one line");
            String::new()
        }
        Some(r) => r.get_ref().clone(),
        None => "Q.850;cause=21".to_owned(),
    };
    Some((
        Server {
            listen,
            hops: Vec::new(),
            trusted_peers,
            record_route: raw.record_route.unwrap_or(true),
            reject_reason,
        },
        next_hop?,
    ))
}

fn check_limits(ck: &mut Checker<'_>, raw: Option<&Spanned<RawLimits>>) -> Limits {
    let d = Limits::default();
    let Some(raw) = raw.map(Spanned::get_ref) else {
        return d;
    };
    let c = "limits";
    let size = ck.positive(
        &raw.max_message_size,
        d.max_message_size as u32,
        "max_message_size",
        c,
    );
    if !(1024..=1 << 20).contains(&size) {
        if let Some(s) = &raw.max_message_size {
            ck.error(
                Some(&s.span()),
                c,
                "`max_message_size` must be between 1024 and 1048576 bytes",
            );
        }
    }
    let secs = |ck: &mut Checker<'_>, v: &Option<Spanned<i64>>, d: Duration, key: &str| {
        Duration::from_secs(u64::from(ck.positive(v, d.as_secs() as u32, key, c)))
    };
    let per_source = raw.per_source.as_ref().map_or(d.per_source, |p| {
        let (p, pc) = (p.get_ref(), "limits.per_source");
        let ds = d.per_source;
        PerSource {
            requests_per_s: ck.positive(&p.requests_per_s, ds.requests_per_s, "requests_per_s", pc),
            burst: ck.positive(&p.burst, ds.burst, "burst", pc),
            ban: Duration::from_secs(u64::from(ck.positive(
                &p.ban_s,
                ds.ban.as_secs() as u32,
                "ban_s",
                pc,
            ))),
        }
    });
    Limits {
        max_dialogs: ck.positive(&raw.max_dialogs, d.max_dialogs as u32, "max_dialogs", c) as usize,
        invite_timeout: secs(
            ck,
            &raw.invite_timeout_s,
            d.invite_timeout,
            "invite_timeout_s",
        ),
        max_dialed_length: ck.positive(
            &raw.max_dialed_length,
            d.max_dialed_length as u32,
            "max_dialed_length",
            c,
        ) as usize,
        dialog_timeout: secs(
            ck,
            &raw.dialog_timeout_s,
            d.dialog_timeout,
            "dialog_timeout_s",
        ),
        per_source,
        max_message_size: size as usize,
        max_transactions: ck.positive(
            &raw.max_transactions,
            d.max_transactions as u32,
            "max_transactions",
            c,
        ) as usize,
        max_tcp_connections: ck.positive(
            &raw.max_tcp_connections,
            d.max_tcp_connections as u32,
            "max_tcp_connections",
            c,
        ) as usize,
        tcp_idle_timeout: Duration::from_secs(u64::from(ck.positive(
            &raw.tcp_idle_timeout_s,
            d.tcp_idle_timeout.as_secs() as u32,
            "tcp_idle_timeout_s",
            c,
        ))),
    }
}

fn check_pin(
    ck: &mut Checker<'_>,
    p: Option<&Spanned<RawPin>>,
    base: &Path,
) -> Option<PinSettings> {
    let c = "pin";
    let empty = RawPin {
        attempts: None,
        max_digits: None,
        first_digit_timeout_s: None,
        inter_digit_timeout_s: None,
        prompt: None,
        rtp_ports: None,
        dial_prefix: None,
        lockout: None,
    };
    let raw = p.map_or(&empty, |p| p.get_ref());
    let secs = |n: u32| Duration::from_secs(u64::from(n));
    let attempts = ck.positive(&raw.attempts, 3, "attempts", c);
    let max_digits = ck.positive(&raw.max_digits, 16, "max_digits", c);
    if max_digits > 40 {
        if let Some(m) = &raw.max_digits {
            ck.error(
                Some(&m.span()),
                c,
                "`max_digits` must be at most 40 (the longest password)",
            );
        }
    }
    let first = ck.positive(&raw.first_digit_timeout_s, 10, "first_digit_timeout_s", c);
    let inter = ck.positive(&raw.inter_digit_timeout_s, 5, "inter_digit_timeout_s", c);
    let prompt = match &raw.prompt {
        None => Prompt::tone(),
        Some(s) if s.get_ref() == "tone" => Prompt::tone(),
        Some(s) => {
            let path = base.join(s.get_ref());
            if path.is_file() {
                std::fs::read(&path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))
                    .and_then(|bytes| {
                        Prompt::from_wav(&bytes).map_err(|e| format!("{}: {e}", path.display()))
                    })
                    .unwrap_or_else(|e| {
                        ck.error(Some(&s.span()), c, format!("`prompt`: {e}"));
                        Prompt::tone()
                    })
            } else {
                ck.error(
                    Some(&s.span()),
                    c,
                    format!(
                        "`prompt`: `{}` is neither \"tone\" nor a readable file",
                        path.display()
                    ),
                );
                Prompt::tone()
            }
        }
    };
    let rtp_ports = match &raw.rtp_ports {
        None => (40000, 40999),
        Some(r) => {
            let parsed = r.get_ref().split_once('-').and_then(|(a, b)| {
                Some((a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?))
            });
            match parsed {
                Some((lo, hi)) if lo > 0 && lo <= hi && (lo..=hi).any(|p| p % 2 == 0) => (lo, hi),
                Some((lo, hi)) if lo > 0 && lo <= hi => {
                    ck.error(
                        Some(&r.span()),
                        c,
                        format!("`rtp_ports` `{lo}-{hi}` has no even port: RTP takes even ports (RFC 3550 §11)"),
                    );
                    (40000, 40999)
                }
                _ => {
                    ck.error(
                        Some(&r.span()),
                        c,
                        format!(
                            "`rtp_ports` must be a range LOW-HIGH of UDP ports, not `{}`",
                            r.get_ref()
                        ),
                    );
                    (40000, 40999)
                }
            }
        }
    };
    let dial_prefix = raw.dial_prefix.as_ref().and_then(|d| {
        let v = d.get_ref();
        if v.is_empty()
            || !v
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'*' || b == b'#')
        {
            ck.error(
                Some(&d.span()),
                c,
                format!("`dial_prefix` must be digits, `*` or `#`, not `{v}`"),
            );
            return None;
        }
        Some(v.clone())
    });
    let lc = "pin.lockout";
    let lockout = match &raw.lockout {
        None => Lockout {
            failures: 5,
            window: secs(600),
            lock: secs(900),
        },
        Some(l) => {
            let l = l.get_ref();
            Lockout {
                failures: ck.positive(&l.failures, 5, "failures", lc),
                window: secs(ck.positive(&l.window_s, 600, "window_s", lc)),
                lock: secs(ck.positive(&l.lock_s, 900, "lock_s", lc)),
            }
        }
    };
    Some(PinSettings {
        attempts,
        max_digits,
        first_digit_timeout: secs(first),
        inter_digit_timeout: secs(inter),
        prompt,
        rtp_ports,
        dial_prefix,
        lockout,
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

fn parse_extension(ck: &mut Checker<'_>, s: &Str, key: &str, c: &str) -> Option<Extension> {
    match Extension::parse(s.get_ref()) {
        Ok(e) => Some(e),
        Err(e) => {
            ck.error(Some(&s.span()), c, format!("`{key}`: {e}"));
            None
        }
    }
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
