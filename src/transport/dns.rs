//! Locating next hop names (RFC 3263 §4, RFC 2782) with hickory-resolver, away from the
//! per-message path: one task per name looks it up, hands the core its targets through the
//! run loop, and looks it up again when the shortest TTL of the answer runs out.
//!
//! For a name written without a port: NAPTR (unless the transport is given), keeping the
//! `SIP+D2U` and `SIP+D2T` services in order and preference; else SRV `_sip._udp` then
//! `_sip._tcp` (only the given transport's when there is one); else the name's addresses at
//! port 5060. With a port: only the addresses. A lookup that fails keeps the last answer (a
//! trunk does not vanish because a DNS server is slow) and is tried again soon; a name that
//! never resolved leaves its hop without targets, and new calls for it get 503.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::proxy::{Name, Peer, Server, Target, Transport};

/// Looked up again at most this often, whatever the TTL (a TTL of 0 is common).
const REFRESH_MIN: Duration = Duration::from_secs(5);
/// And at least this often, so that a long TTL does not hide a change for days.
const REFRESH_MAX: Duration = Duration::from_secs(3600);
/// A failed lookup is tried again after this long.
const RETRY: Duration = Duration::from_secs(5);

/// A name's targets, as located: what the run loop gives the core.
pub(super) type Located = (Name, Vec<Target>);

/// The lookups of the current configuration's names.
pub(super) struct Lookups {
    names: Vec<Name>,
    dns: Vec<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

impl Lookups {
    /// Starts looking up every name of `server`, with its DNS servers.
    pub(super) fn start(server: &Server, tx: &mpsc::Sender<Located>) -> Self {
        let mut l = Lookups {
            names: Vec::new(),
            dns: Vec::new(),
            tasks: Vec::new(),
        };
        l.follow(server, tx);
        l
    }

    /// After a reload: starts again when the names or the DNS servers changed.
    pub(super) fn follow(&mut self, server: &Server, tx: &mpsc::Sender<Located>) {
        let names = server.names();
        if names == self.names && server.dns == self.dns && !self.tasks.is_empty() {
            return;
        }
        for t in self.tasks.drain(..) {
            t.abort();
        }
        self.names = names;
        self.dns = server.dns.clone();
        if self.names.is_empty() {
            return;
        }
        let resolver = match resolver(&self.dns) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot set up DNS: next hops named by host name get no target");
                return;
            }
        };
        for name in &self.names {
            let task = keep_located(resolver.clone(), name.clone(), tx.clone());
            self.tasks.push(tokio::spawn(task));
        }
    }
}

impl Drop for Lookups {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The system's resolver, or one asking `dns` only.
fn resolver(dns: &[SocketAddr]) -> Result<TokioResolver, String> {
    if dns.is_empty() {
        return TokioResolver::builder_tokio()
            .map(|b| b.build())
            .map_err(|e| e.to_string());
    }
    // One group per server: hickory takes one port per group.
    let mut group = NameServerConfigGroup::new();
    for a in dns {
        group.merge(NameServerConfigGroup::from_ips_clear(
            &[a.ip()],
            a.port(),
            true,
        ));
    }
    let config = ResolverConfig::from_parts(None, Vec::new(), group);
    Ok(TokioResolver::builder_with_config(config, TokioConnectionProvider::default()).build())
}

/// Looks `name` up for as long as the configuration has it.
async fn keep_located(resolver: TokioResolver, name: Name, tx: mpsc::Sender<Located>) {
    let mut last: Option<Vec<Target>> = None;
    loop {
        let wait = match locate(&resolver, &name).await {
            Ok((mut targets, valid_until)) => {
                // Servers shuffle their answers: the same set in another order is no change.
                targets.sort_by_key(|t| {
                    (
                        t.priority,
                        t.weight,
                        t.peer.addr,
                        t.peer.transport == Transport::Tcp,
                    )
                });
                if last.as_ref() != Some(&targets) {
                    let list: Vec<String> = targets.iter().map(|t| t.peer.to_string()).collect();
                    tracing::info!(next_hop = %name, targets = list.join(" "), "next hop located");
                    last = Some(targets.clone());
                    if tx.send((name.clone(), targets)).await.is_err() {
                        return;
                    }
                }
                valid_until
                    .saturating_duration_since(Instant::now())
                    .clamp(REFRESH_MIN, REFRESH_MAX)
            }
            Err(e) => {
                match &last {
                    Some(_) => {
                        tracing::warn!(next_hop = %name, error = e, "next hop lookup failed: keeping its last targets")
                    }
                    None => {
                        tracing::warn!(next_hop = %name, error = e, retry_s = RETRY.as_secs(), "next hop does not resolve: new calls for it get 503 until it does")
                    }
                }
                RETRY
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// The targets of `name` now, and until when the answer holds (its shortest TTL).
async fn locate(resolver: &TokioResolver, name: &Name) -> Result<(Vec<Target>, Instant), String> {
    let host = format!("{}.", name.host);
    if let Some(port) = name.port {
        let t = name.transport.unwrap_or(Transport::Udp);
        return addresses(resolver, &host, port, t, 0, 0).await;
    }
    let mut services: Vec<(Transport, String)> = Vec::new();
    if name.transport.is_none() {
        services = naptr(resolver, &host).await;
    }
    if services.is_empty() {
        for t in [Transport::Udp, Transport::Tcp] {
            if name.transport.is_none_or(|given| given == t) {
                let proto = t.name();
                services.push((t, format!("_sip._{proto}.{host}")));
            }
        }
    }
    let mut valid_until = Instant::now() + REFRESH_MAX;
    for (t, srv_name) in &services {
        let Ok(srv) = resolver.srv_lookup(srv_name.as_str()).await else {
            continue;
        };
        valid_until = valid_until.min(srv.as_lookup().valid_until());
        let mut targets = Vec::new();
        for r in srv.iter() {
            let target = r.target().to_ascii();
            if let Ok((found, until)) =
                addresses(resolver, &target, r.port(), *t, r.priority(), r.weight()).await
            {
                valid_until = valid_until.min(until);
                targets.extend(found);
            }
        }
        if !targets.is_empty() {
            // RFC 3263 §4.2: the first service that gives targets is used.
            return Ok((targets, valid_until));
        }
    }
    let t = name.transport.unwrap_or(Transport::Udp);
    addresses(resolver, &host, 5060, t, 0, 0).await
}

/// The `SIP+D2U` and `SIP+D2T` records of a NAPTR lookup (RFC 3263 §4.1), most preferred
/// first, as the transport and SRV name they point to; none when there are none.
async fn naptr(resolver: &TokioResolver, host: &str) -> Vec<(Transport, String)> {
    let Ok(found) = resolver.lookup(host, RecordType::NAPTR).await else {
        return Vec::new();
    };
    let mut records: Vec<_> = found
        .iter()
        .filter_map(|r| match r {
            RData::NAPTR(n) if n.flags().eq_ignore_ascii_case(b"s") => {
                let t = match n.services().to_ascii_uppercase().as_slice() {
                    b"SIP+D2U" => Transport::Udp,
                    b"SIP+D2T" => Transport::Tcp,
                    _ => return None,
                };
                Some((n.order(), n.preference(), t, n.replacement().to_ascii()))
            }
            _ => None,
        })
        .collect();
    records.sort_by_key(|r| (r.0, r.1));
    records.into_iter().map(|r| (r.2, r.3)).collect()
}

/// The addresses of `host` (A and AAAA) at `port`, with the SRV priority and weight they
/// came with.
async fn addresses(
    resolver: &TokioResolver,
    host: &str,
    port: u16,
    transport: Transport,
    priority: u16,
    weight: u16,
) -> Result<(Vec<Target>, Instant), String> {
    let ips = resolver.lookup_ip(host).await.map_err(|e| e.to_string())?;
    let targets: Vec<Target> = ips
        .iter()
        .map(|ip| Target {
            peer: Peer {
                transport,
                addr: SocketAddr::new(ip, port),
            },
            priority,
            weight,
        })
        .collect();
    if targets.is_empty() {
        return Err(format!("{host} has no address"));
    }
    Ok((targets, ips.valid_until()))
}
