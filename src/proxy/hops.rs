//! Next hops (SPEC §5.2): what a `next_hop` names, and the targets a request is tried on.
//!
//! A next hop is a list of [`Destination`]s: addresses, and host names that the I/O layer
//! locates by RFC 3263 (NAPTR, SRV, A/AAAA) and hands over with [`Proxy::set_targets`], so
//! that no DNS query is ever made on the per-message path. A request goes to the first
//! target (list order, then SRV priority, then a weighted random order within a priority,
//! RFC 2782); a transport error, a `503`, or no response before Timer B/F sends the same
//! request on a new branch to the next target (RFC 3261 §16.7 serial forking), until a
//! provisional response or a final response other than `503` comes. A target that fails
//! `down_after` times in a row is marked down: skipped while another target of its hop is
//! up, and sent an `OPTIONS` every `probe_interval` until any response but `503` comes back.

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Instant;

use super::route::{host_port, loop_hash, transport_name};
use super::shrink::shrink;
use super::table::ServerId;
use super::transaction::ClientTx;
use super::{Peer, Proxy, Transport};
use crate::policy::HopId;

/// A `next_hop` as configured: one destination or several, tried in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NextHop(pub Vec<Destination>);

/// One entry of a `next_hop`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// `udp:IP:PORT`, `tcp:IP:PORT`, or a `sip:` URI whose host is an address.
    Addr(Peer),
    /// A host name, located by the I/O layer (RFC 3263).
    Name(Name),
}

/// A host name to locate, and what RFC 3263 §4 makes of how it was written: with a port,
/// only its addresses (A/AAAA) are looked up; without one, NAPTR (unless the transport is
/// given), then SRV, then the addresses at port 5060.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Name {
    /// Lower case, without a trailing dot.
    pub host: Box<str>,
    pub port: Option<u16>,
    /// Given by `udp:`/`tcp:` or a URI's `transport` parameter; else NAPTR decides.
    pub transport: Option<Transport>,
    /// Written as a `sip:` URI (only for printing it back).
    uri: bool,
}

/// One place a name leads to, with its SRV priority and weight (0 and 0 for an address
/// record): the I/O layer's answer, ordered per request by the core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    pub peer: Peer,
    pub priority: u16,
    pub weight: u16,
}

impl NextHop {
    /// The names of this hop that the I/O layer must locate.
    pub fn names(&self) -> impl Iterator<Item = &Name> {
        self.0.iter().filter_map(|d| match d {
            Destination::Name(n) => Some(n),
            Destination::Addr(_) => None,
        })
    }
}

impl NextHop {
    /// The addresses this hop names as written (not those its names lead to).
    pub fn addrs(&self) -> impl Iterator<Item = Peer> + '_ {
        self.0.iter().filter_map(|d| match d {
            Destination::Addr(p) => Some(*p),
            Destination::Name(_) => None,
        })
    }
}

impl fmt::Display for NextHop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [one] => write!(f, "{one}"),
            many => {
                let all: Vec<String> = many.iter().map(|d| format!("\"{d}\"")).collect();
                write!(f, "[{}]", all.join(", "))
            }
        }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Addr(p) => write!(f, "{p}"),
            Destination::Name(n) => write!(f, "{n}"),
        }
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.transport.map(Transport::name);
        if !self.uri {
            return write!(
                f,
                "{}:{}:{}",
                t.unwrap_or("udp"),
                self.host,
                self.port.unwrap_or(5060)
            );
        }
        write!(f, "sip:{}", self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        if let Some(t) = t {
            write!(f, ";transport={t}")?;
        }
        Ok(())
    }
}

impl FromStr for Destination {
    type Err = String;

    /// `udp:`/`tcp:` then `IP:PORT` or `HOST:PORT`, or `sip:HOST[:PORT][;transport=udp|tcp]`.
    fn from_str(s: &str) -> Result<Self, String> {
        let lower = s.to_ascii_lowercase();
        if lower.starts_with("sips:") {
            return Err(format!(
                "`{s}`: sips: next hops are not supported (TLS next hops are tls:IP:PORT)"
            ));
        }
        if let Some(rest) = lower.strip_prefix("sip:") {
            return parse_uri(s, rest);
        }
        if let Ok(peer) = s.parse::<Peer>() {
            return Ok(Destination::Addr(peer));
        }
        let form = "udp:HOST:PORT, tcp:HOST:PORT or sip:HOST";
        let (proto, addr) = lower
            .split_once(':')
            .ok_or_else(|| format!("`{s}` is not of the form {form}"))?;
        let transport = match proto {
            "udp" => Transport::Udp,
            "tcp" => Transport::Tcp,
            "tls" => {
                return Err(format!(
                    "`{s}`: a tls: next hop needs an IP address (TLS next hops by name are not supported)"
                ))
            }
            other => {
                return Err(format!(
                    "`{s}`: unknown transport `{other}` (udp, tcp or sip)"
                ))
            }
        };
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| format!("`{s}`: a port is needed, as in {proto}:HOST:5060"))?;
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("`{s}`: `{port}` is not a port"))?;
        Ok(Destination::Name(Name {
            host: host_name(s, host)?,
            port: Some(port),
            transport: Some(transport),
            uri: false,
        }))
    }
}

/// The part of a `sip:` next hop after the scheme (lower case); `s` is the whole, for
/// errors.
fn parse_uri(s: &str, rest: &str) -> Result<Destination, String> {
    let mut params = rest.split(';');
    let hostport = params.next().unwrap_or_default();
    let mut transport = None;
    for p in params.filter(|p| *p != "lr") {
        match p.split_once('=') {
            Some(("transport", "udp")) => transport = Some(Transport::Udp),
            Some(("transport", "tcp")) => transport = Some(Transport::Tcp),
            Some(("transport", t)) => {
                return Err(format!("`{s}`: unknown transport `{t}` (udp or tcp)"));
            }
            _ => return Err(format!("`{s}`: unknown parameter `{p}` (only transport)")),
        }
    }
    if hostport.contains('@') {
        return Err(format!("`{s}`: a next hop names a host, not a user"));
    }
    let (host, port) = match hostport.strip_prefix('[') {
        Some(v6) => {
            let (ip, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("`{s}`: unclosed `[`"))?;
            (ip, after.strip_prefix(':'))
        }
        None => match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        },
    };
    let port = port
        .map(|p| {
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("`{s}`: `{p}` is not a port"))
        })
        .transpose()?;
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(Destination::Addr(Peer {
            transport: transport.unwrap_or(Transport::Udp),
            addr: SocketAddr::new(ip, port.unwrap_or(5060)),
        }));
    }
    Ok(Destination::Name(Name {
        host: host_name(s, host)?,
        port,
        transport,
        uri: true,
    }))
}

/// A host name as RFC 1123 §2.1 writes one (letters, digits and `-` in labels of 1 to 63,
/// 253 in all), whose last label is not all digits (RFC 3696 §2: then it was meant as an
/// address).
fn host_name(s: &str, host: &str) -> Result<Box<str>, String> {
    let host = host.strip_suffix('.').unwrap_or(host);
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(label_ok)
        && !host
            .rsplit('.')
            .next()
            .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()));
    if !ok {
        return Err(format!(
            "`{s}`: `{host}` is neither an IP address nor a host name"
        ));
    }
    Ok(host.into())
}

/// What the core keeps about next hops: the I/O layer's answers, the health of targets, and
/// the targets left for each request being failed over.
#[derive(Default)]
pub(super) struct Hops {
    /// The targets of each name, as the I/O layer last located them.
    resolved: HashMap<Name, Vec<Target>>,
    /// Targets that failed lately; one that is up and has no failure is not kept.
    health: HashMap<Peer, Health>,
    /// Requests with targets left to try, by their server transaction.
    failover: HashMap<ServerId, Failover>,
    /// Draws made for weighted orders so far: each draw is a MAC of its number under the
    /// per-process secret, so that the order cannot be foreseen from outside.
    draws: Cell<u64>,
}

/// The recent failures of a target.
struct Health {
    /// Failures in a row.
    failures: u32,
    /// When marked down: when its next `OPTIONS` is due.
    probe_at: Option<Instant>,
}

/// A request's serial forking: the targets not tried yet and the copy last sent, which
/// the next one is made from.
pub(super) struct Failover {
    rest: VecDeque<Peer>,
    record_route: bool,
    sent: Option<Sent>,
}

struct Sent {
    to: Peer,
    branch: String,
    bytes: Vec<u8>,
}

impl Hops {
    /// When the next probe is due.
    pub(super) fn next_probe(&self) -> Option<Instant> {
        self.health.values().filter_map(|h| h.probe_at).min()
    }

    fn is_down(&self, peer: &Peer) -> bool {
        self.health.get(peer).is_some_and(|h| h.probe_at.is_some())
    }

    /// Forgets the targets left for `sid`: its request got its final response, or has no
    /// target left.
    pub(super) fn end(&mut self, sid: ServerId) {
        self.failover.remove(&sid);
    }

    /// Gives back the room of the requests' failovers and the targets' health when mostly
    /// empty (the rule of [`super::shrink`]); returns whether it did.
    pub(super) fn shrink(&mut self) -> bool {
        let failover = shrink(&mut self.failover);
        shrink(&mut self.health) || failover
    }
}

impl Proxy {
    /// The I/O layer's answer for `name` (RFC 3263): every target, in no particular order
    /// within a priority. An empty list means the name does not resolve: new requests for a
    /// hop with no target get 503 until it does.
    pub fn set_targets(&mut self, name: &Name, targets: Vec<Target>) {
        if targets.is_empty() {
            self.hops.resolved.remove(name);
        } else {
            self.hops.resolved.insert(name.clone(), targets);
        }
        self.forget_strangers();
    }

    /// Forgets names the next hops no longer have, and the health of addresses that are no
    /// longer a target of any hop.
    pub(super) fn forget_strangers(&mut self) {
        let names = self.settings.server.names();
        self.hops.resolved.retain(|n, _| names.contains(n));
        let health = std::mem::take(&mut self.hops.health);
        self.hops.health = health
            .into_iter()
            .filter(|(p, _)| self.is_target(p))
            .collect();
    }

    fn is_target(&self, peer: &Peer) -> bool {
        self.settings.server.hops.iter().any(|h| {
            h.0.iter().any(|d| match d {
                Destination::Addr(p) => p == peer,
                Destination::Name(n) => self
                    .hops
                    .resolved
                    .get(n)
                    .is_some_and(|t| t.iter().any(|t| t.peer == *peer)),
            })
        })
    }

    /// The targets of `hop` for one request, in the order they are tried: list order, then
    /// SRV priority, then a weighted random order within a priority (RFC 2782). Targets
    /// marked down are left out, unless every target is down: then all are tried, as if
    /// none were (marking down only ever reorders a hop, it never refuses a call).
    pub(super) fn targets(&self, hop: HopId) -> Vec<Peer> {
        let mut all: Vec<Peer> = Vec::new();
        for d in &self.settings.server.hops[hop.0].0 {
            match d {
                Destination::Addr(p) => all.push(*p),
                Destination::Name(n) => {
                    let mut found = self.hops.resolved.get(n).cloned().unwrap_or_default();
                    found.sort_by_key(|t| t.priority);
                    for group in found.chunk_by(|a, b| a.priority == b.priority) {
                        all.extend(weighted_order(group, self.draw()));
                    }
                }
            }
        }
        let mut seen = Vec::with_capacity(all.len());
        all.retain(|p| {
            let new = !seen.contains(p);
            seen.push(*p);
            new
        });
        if all.iter().any(|p| !self.hops.is_down(p)) {
            all.retain(|p| !self.hops.is_down(p));
        }
        all
    }

    /// Randomness for a weighted order.
    fn draw(&self) -> u64 {
        let n = self.hops.draws.get();
        self.hops.draws.set(n.wrapping_add(1));
        let mac = self.settings.secret.mac(&[b"srv-weight", &n.to_be_bytes()]);
        u64::from_be_bytes(mac[..8].try_into().unwrap_or_default())
    }

    /// The target a request of `hop` goes to when it cannot be failed over.
    pub(super) fn first_target(&self, hop: HopId) -> Option<Peer> {
        self.targets(hop).first().copied()
    }

    /// Remembers the targets left for the request of `sid`, to try when one fails.
    pub(super) fn plan_failover(&mut self, sid: ServerId, rest: Vec<Peer>, record_route: bool) {
        if rest.is_empty() {
            return;
        }
        let plan = Failover {
            rest: rest.into(),
            record_route,
            sent: None,
        };
        self.hops.failover.insert(sid, plan);
    }

    /// The copy of the request of `sid` just sent to `to`: what the next target's is made
    /// from.
    pub(super) fn sent_to(&mut self, sid: ServerId, to: Peer, branch: &str, bytes: &[u8]) {
        if let Some(f) = self.hops.failover.get_mut(&sid) {
            f.sent = Some(Sent {
                to,
                branch: branch.to_owned(),
                bytes: bytes.to_vec(),
            });
        }
    }

    /// The request of `sid` failed on its target: sends it on a new branch to the next one,
    /// if there is one and the caller still waits. Returns whether it did.
    pub(super) fn fail_over(&mut self, now: Instant, sid: ServerId) -> bool {
        // Only an unanswered request the caller has not cancelled is sent again.
        let Some((st, u)) = self
            .tx
            .server(sid)
            .and_then(|st| Some((st, st.unanswered()?)))
            .filter(|(_, u)| !u.cancelled)
        else {
            self.hops.end(sid);
            return false;
        };
        let (from, hash, invite) = (u.from, loop_hash(&u.request), st.invite);
        let call_id: Box<str> = u.request.call_id().into();
        let Some(f) = self.hops.failover.get_mut(&sid) else {
            return false;
        };
        let (Some(sent), Some(next)) = (f.sent.take(), f.rest.pop_front()) else {
            self.hops.end(sid);
            return false;
        };
        let record_route = f.record_route;
        let old_top = self.top_lines(from, sent.to, &sent.branch, record_route);
        let line_end = memchr::memmem::find(&sent.bytes, b"\r\n").map(|i| i + 2);
        let Some(line_end) =
            line_end.filter(|&at| sent.bytes[at..].starts_with(old_top.as_bytes()))
        else {
            self.hops.end(sid);
            return false;
        };
        let branch = self.new_branch(hash);
        let top = self.top_lines(from, next, &branch, record_route);
        let mut bytes = Vec::with_capacity(sent.bytes.len() + 16);
        bytes.extend_from_slice(&sent.bytes[..line_end]);
        bytes.extend_from_slice(top.as_bytes());
        bytes.extend_from_slice(&sent.bytes[line_end + old_top.len()..]);
        tracing::info!(call_id = &*call_id, failed = %sent.to, next = %next, "next hop target failed, trying the next one");
        if let Some(u) = self.tx.server_mut(sid).and_then(|s| s.unanswered_mut()) {
            u.branch = branch;
        }
        self.start_client(now, sid, next, bytes, invite);
        true
    }

    /// A target answered (anything but `503`): it is up, and its failures are forgotten.
    pub(super) fn target_answered(&mut self, peer: Peer) {
        if let Some(h) = self.hops.health.remove(&peer) {
            if h.probe_at.is_some() {
                tracing::info!(target = %peer, "next hop target answers again: back in use");
            }
        }
    }

    /// A target failed (transport error, `503`, no response in time): after `down_after`
    /// failures in a row it is marked down and probed.
    pub(super) fn target_failed(&mut self, now: Instant, peer: Peer) {
        if !self.is_target(&peer) {
            return;
        }
        let (threshold, interval) = (
            self.settings.server.down_after,
            self.settings.server.probe_interval,
        );
        let h = self.hops.health.entry(peer).or_insert(Health {
            failures: 0,
            probe_at: None,
        });
        h.failures = h.failures.saturating_add(1);
        if h.probe_at.is_none() && h.failures >= threshold {
            h.probe_at = Some(now + interval);
            tracing::warn!(target = %peer, failures = h.failures, probe_interval_s = interval.as_secs(), "next hop target marked down: probed with OPTIONS until it answers");
        }
    }

    /// Sends an `OPTIONS` to every target that is down and due for one.
    pub(super) fn send_probes(&mut self, now: Instant) {
        let interval = self.settings.server.probe_interval;
        let due: Vec<Peer> = self
            .hops
            .health
            .iter_mut()
            .filter(|(_, h)| h.probe_at.is_some_and(|at| at <= now))
            .map(|(p, h)| {
                h.probe_at = Some(now + interval);
                *p
            })
            .collect();
        for peer in due {
            let branch = self.new_branch(0);
            let bytes = self.probe(peer, &branch).into_bytes();
            let ct = ClientTx::new(None, peer, bytes.clone(), false, false, branch.into());
            self.tx.insert_client(now, ct);
            self.send(peer, bytes);
        }
    }

    /// An `OPTIONS` from us to `to`, asking whether it is there (RFC 3261 §11).
    fn probe(&mut self, to: Peer, branch: &str) -> String {
        let local = self.local_for(to);
        let n = self.settings.secret.next("probe");
        let tag = super::secret::hex(&self.settings.secret.mac(&[b"probe", &n.to_be_bytes()])[..8]);
        let transport = match to.transport {
            Transport::Udp => String::new(),
            t => format!(";transport={}", t.name()),
        };
        format!(
            "OPTIONS sip:{target}{transport} SIP/2.0\r\n\
             Via: SIP/2.0/{t} {local};branch={branch}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:sipscreen@{local}>;tag={tag}\r\n\
             To: <sip:{target}>\r\n\
             Call-ID: probe-{tag}@{local}\r\n\
             CSeq: 1 OPTIONS\r\n\
             Content-Length: 0\r\n\r\n",
            target = host_port(to.addr),
            t = transport_name(local.transport),
            local = host_port(local.addr),
        )
    }
}

/// The targets of one SRV priority in the order RFC 2782 picks them: each in turn drawn
/// with a chance proportional to its weight (weight 0 only when nothing else is left, as
/// the RFC puts them first in the running sum). `draw` is the randomness.
fn weighted_order(group: &[Target], mut draw: u64) -> Vec<Peer> {
    let mut left: Vec<Target> = group.to_vec();
    left.sort_by_key(|t| t.weight != 0);
    let mut out = Vec::with_capacity(left.len());
    while !left.is_empty() {
        let total: u64 = left.iter().map(|t| u64::from(t.weight)).sum();
        let pick = draw % (total + 1);
        draw = draw.rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15;
        let mut sum = 0;
        let at = left
            .iter()
            .position(|t| {
                sum += u64::from(t.weight);
                sum >= pick
            })
            .unwrap_or(0);
        out.push(left.remove(at).peer);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(host: &str, port: Option<u16>, transport: Option<Transport>, uri: bool) -> Destination {
        Destination::Name(Name {
            host: host.into(),
            port,
            transport,
            uri,
        })
    }

    #[test]
    fn parses_addresses_names_and_uris() {
        let ok = [
            ("udp:127.0.0.1:5070", None),
            ("tcp:[::1]:5070", None),
            (
                "udp:trunk.example.com:5060",
                Some(name(
                    "trunk.example.com",
                    Some(5060),
                    Some(Transport::Udp),
                    false,
                )),
            ),
            (
                "tcp:pbx:5080",
                Some(name("pbx", Some(5080), Some(Transport::Tcp), false)),
            ),
            (
                "sip:Trunk.Example.com",
                Some(name("trunk.example.com", None, None, true)),
            ),
            (
                "sip:trunk.example.com:5080",
                Some(name("trunk.example.com", Some(5080), None, true)),
            ),
            (
                "sip:trunk.example.com;transport=tcp",
                Some(name("trunk.example.com", None, Some(Transport::Tcp), true)),
            ),
        ];
        for (s, want) in ok {
            let d: Destination = s.parse().unwrap_or_else(|e| panic!("{s}: {e}"));
            if let Some(want) = want {
                assert_eq!(d, want, "{s}");
            }
            assert_eq!(d.to_string(), s.to_ascii_lowercase(), "{s}");
        }
        assert_eq!(
            "sip:10.0.0.2".parse::<Destination>().unwrap(),
            Destination::Addr("udp:10.0.0.2:5060".parse().unwrap())
        );
        for bad in [
            "sips:trunk.example.com",
            "sip:-bad-.example.com",
            "sip:trunk_1.example.com",
            "udp:trunk.example.com",
            "udp:1.2.3.999:5060",
            "sip:trunk.example.com;transport=sctp",
            "sip:alice@trunk.example.com",
            "sip:",
            "sctp:trunk.example.com:5060",
            "udp:host:0",
        ] {
            assert!(bad.parse::<Destination>().is_err(), "{bad}");
        }
    }

    #[test]
    fn weights_decide_the_order_within_a_priority() {
        let t = |port: u16, weight: u16| Target {
            peer: Peer {
                transport: Transport::Udp,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
            },
            priority: 1,
            weight,
        };
        let group = [t(1, 0), t(2, 90), t(3, 10)];
        let mut first = HashMap::new();
        for draw in 0..1000u64 {
            // splitmix64: draws spread like the MACs the core uses.
            let mut z = draw.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            let order = weighted_order(&group, z ^ (z >> 31));
            assert_eq!(order.len(), 3);
            *first.entry(order[0].addr.port()).or_insert(0) += 1;
        }
        // Weight 90 comes first about nine times in ten; weight 0 almost never.
        assert!(first[&2] > 800, "{first:?}");
        assert!(first.get(&1).copied().unwrap_or(0) < 30, "{first:?}");
    }
}
