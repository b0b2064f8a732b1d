//! The I/O edge (tokio): UDP sockets, TCP and TLS listeners and connections, timers, and
//! the task that owns the sans-I/O [`Proxy`] core. Nothing else in the crate touches sockets
//! or the clock.
//!
//! One task drives the core: it receives `Event`s from the socket tasks, sleeps until the
//! core's next timeout, and sends what the core asks for — UDP straight from the socket, TCP
//! and TLS through the connection's writer task (connecting first when there is none), PIN prompt
//! RTP from the session's own socket, opened and closed as the core says. A malformed
//! message, a refused connection or a full queue is logged and never ends a listener.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::proxy::pin::Subject;
use crate::proxy::{Limits, MediaCommand, Peer, Proxy, Settings, Transmit, Transport};

/// How long draining may take after SIGTERM before the proxy exits anyway.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(32);
/// How long an outbound TCP connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Messages queued for one TCP connection before further ones are dropped.
const CONNECTION_QUEUE: usize = 1024;

mod dns;
mod tcp;
pub mod tls;
mod udp;

use tcp::{tcp_acceptor, tcp_connect, SourceCounts};
use tls::{TlsSettings, TlsState};
use udp::{bind_udp, open_rtp, rtp_reader, udp_reader, UdpOut};

/// What the socket tasks tell the core task.
#[derive(Debug)]
enum Event {
    /// RTP for a PIN prompt's port.
    Rtp {
        port: u16,
        from: SocketAddr,
        bytes: Vec<u8>,
    },
    /// A PIN prompt's RTP port could not be bound.
    RtpBindFailed {
        port: u16,
    },
    Message {
        from: Peer,
        bytes: Vec<u8>,
    },
    /// A connection opened (either way): what the core sends to `remote` goes to `writer`.
    TcpUp {
        remote: Peer,
        writer: mpsc::Sender<Vec<u8>>,
    },
    TcpDown {
        remote: Peer,
    },
    SendFailed {
        to: Peer,
    },
}

/// The sockets of `server.listen`, bound.
pub struct Sockets {
    udp: Vec<Arc<UdpSocket>>,
    tcp: Vec<TcpListener>,
    /// `tls:` listeners: TCP listeners whose connections start with a TLS handshake.
    tls: Vec<TcpListener>,
    /// The certificates and trust roots of `[tls]` to start with (see [`Sockets::with_tls`]).
    tls_settings: Option<Arc<TlsSettings>>,
    /// What was bound, in `listen` order: port 0 replaced by the port the system chose.
    bound: Vec<Peer>,
}

/// How many times a UDP port chosen by the system is tried for a TCP listener at the same
/// address and port 0, before giving up.
const SHARED_PORT_TRIES: usize = 16;

impl Sockets {
    /// Binds every listen address; the error names the address that failed.
    ///
    /// Port 0 asks the system for a free port (tests use it, so that no port is chosen by
    /// number and then raced for). A `udp:` and a `tcp:` entry on the same address with
    /// port 0 get the same port, as a SIP listener's UDP and TCP sides normally have; a
    /// `tls:` one gets a port of its own.
    pub async fn bind(listen: &[Peer]) -> io::Result<Sockets> {
        for _ in 0..SHARED_PORT_TRIES {
            match Self::try_bind(listen).await {
                Err(e) if e.kind() == io::ErrorKind::AddrInUse && has_shared_zero(listen) => {}
                other => return other,
            }
        }
        Self::try_bind(listen).await
    }

    async fn try_bind(listen: &[Peer]) -> io::Result<Sockets> {
        let mut udp = Vec::new();
        let mut tcp = Vec::new();
        let mut tls = Vec::new();
        let mut bound: Vec<Peer> = Vec::new();
        for l in listen {
            let named =
                |e: io::Error| io::Error::new(e.kind(), format!("cannot listen on {l}: {e}"));
            let mut addr = l.addr;
            if addr.port() == 0 {
                // The port already chosen for the other transport at this address, if any.
                if let Some(b) = listen
                    .iter()
                    .zip(&bound)
                    .find(|(o, _)| o.addr == l.addr && shares_port(o.transport, l.transport))
                {
                    addr.set_port(b.1.addr.port());
                }
            }
            let local = match l.transport {
                Transport::Udp => {
                    let socket = bind_udp(addr).map_err(named)?;
                    let local = socket.local_addr()?;
                    udp.push(Arc::new(socket));
                    local
                }
                Transport::Tcp | Transport::Tls => {
                    let listener = TcpListener::bind(addr).await.map_err(named)?;
                    let local = listener.local_addr()?;
                    if l.transport == Transport::Tls {
                        tls.push(listener);
                    } else {
                        tcp.push(listener);
                    }
                    local
                }
            };
            bound.push(Peer {
                transport: l.transport,
                addr: local,
            });
        }
        Ok(Sockets {
            udp,
            tcp,
            tls,
            tls_settings: None,
            bound,
        })
    }

    /// The TLS settings (`Config::tls`) that `tls:` listeners and next hops start with; a
    /// reload replaces them ([`Control::Reload`]).
    pub fn with_tls(mut self, tls: Option<Arc<TlsSettings>>) -> Sockets {
        self.tls_settings = tls;
        self
    }

    /// The listen addresses as bound (port 0 replaced by the real port).
    pub fn bound(&self) -> &[Peer] {
        &self.bound
    }
}

/// Whether listeners of these transports at one address and port 0 take the same port: UDP
/// and TCP do; TLS, a stream like TCP, cannot share TCP's.
fn shares_port(a: Transport, b: Transport) -> bool {
    matches!(
        (a, b),
        (Transport::Udp, Transport::Tcp) | (Transport::Tcp, Transport::Udp)
    )
}

/// Whether a UDP and a TCP entry share an address with port 0 (the second bind may find the
/// first one's port taken, and then both are tried again).
fn has_shared_zero(listen: &[Peer]) -> bool {
    listen.iter().any(|a| {
        a.addr.port() == 0
            && listen
                .iter()
                .any(|b| b.addr == a.addr && shares_port(a.transport, b.transport))
    })
}

/// Runs the proxy on bound sockets until `shutdown` completes, then drains: new calls are
/// refused, transactions in flight finish (at most [`DRAIN_LIMIT`]).
pub async fn run(
    settings: Settings,
    policy: Arc<Policy>,
    sockets: Sockets,
    shutdown: impl Future<Output = ()>,
    mut control: mpsc::Receiver<Control>,
    observe: Observe,
) -> io::Result<()> {
    let Observe { decisions, metrics } = observe;
    let (events_tx, mut events) = mpsc::channel::<Event>(4096);
    let limits = settings.limits;
    let max_size = limits.max_message_size;
    for socket in &sockets.udp {
        tokio::spawn(udp_reader(socket.clone(), events_tx.clone(), max_size));
    }
    let connections = metrics.tcp();
    let sources = SourceCounts::default();
    let tls: TlsState = Arc::new(RwLock::new(sockets.tls_settings));
    // TCP and TLS connections count together in `max_tcp_connections` and per source.
    let listeners = (sockets.tcp.into_iter().map(|l| (l, None)))
        .chain(sockets.tls.into_iter().map(|l| (l, Some(tls.clone()))));
    for (listener, tls) in listeners {
        tokio::spawn(tcp_acceptor(
            listener,
            events_tx.clone(),
            limits,
            connections.clone(),
            sources.clone(),
            tls,
        ));
    }
    // Next hop names are looked up here, never on the per-message path (SPEC §5.2).
    let (located_tx, mut located) = mpsc::channel::<dns::Located>(64);
    let mut lookups = dns::Lookups::start(&settings.server, &located_tx);
    let mut core = Proxy::new(settings, policy);
    core.count_into(metrics.clone());
    if decisions.is_some() {
        core.record_screenings();
    }
    let mut out = Outbound {
        udp: sockets
            .udp
            .into_iter()
            .filter_map(|s| Some((s.local_addr().ok()?, UdpOut::new(s))))
            .collect(),
        udp_dropped: 0,
        tcp: HashMap::new(),
        connecting: HashMap::new(),
        events: events_tx,
        limits,
        connections,
        tls: tls.clone(),
        rtp: HashMap::new(),
    };
    let mut shutdown = std::pin::pin!(shutdown);
    let mut drain_until: Option<Instant> = None;
    let mut controlled = true;
    loop {
        let now = Instant::now();
        if let Some(limit) = drain_until {
            if !core.has_pending() || now >= limit {
                tracing::info!(pending = core.has_pending(), "drained, exiting");
                return Ok(());
            }
        }
        let wake = core.poll_timeout().map(tokio::time::Instant::from_std);
        let sleep = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut shutdown, if drain_until.is_none() => {
                tracing::info!("shutting down: no new calls, finishing transactions in flight");
                core.stop_accepting();
                drain_until = Some(now + DRAIN_LIMIT);
            }
            event = events.recv() => {
                let Some(event) = event else { return Ok(()) };
                let now = Instant::now();
                out.handle(&mut core, now, event);
                // Take whatever else is already queued before sending, in one go.
                while let Ok(event) = events.try_recv() {
                    out.handle(&mut core, now, event);
                }
            }
            _ = sleep => core.handle_timeout(Instant::now()),
            c = control.recv(), if controlled => match c {
                Some(c) => {
                    c.apply(&mut core, &tls);
                    lookups.follow(&core.settings().server, &located_tx);
                }
                None => controlled = false,
            },
            Some((name, targets)) = located.recv() => core.set_targets(&name, targets),
            _ = tokio::time::sleep(Duration::from_millis(500)), if drain_until.is_some() => {}
        }
        out.flush(&mut core);
        if let Some(tx) = &decisions {
            publish(&mut core, tx);
        }
        let (servers, clients) = core.transactions();
        metrics.in_flight(servers + clients, core.dialogs());
    }
}

/// Who watches the core from outside: the admin API's live feed of decisions (when there is
/// an admin listener) and the counters of `/metrics`.
pub struct Observe {
    pub decisions: Option<broadcast::Sender<Arc<str>>>,
    pub metrics: Arc<Metrics>,
}

/// Sends the decisions just made to whoever watches them (the admin API's `/1.1/events`),
/// as JSON lines; rendered only when someone watches. Taken after every step, so the queue
/// the core keeps them in never grows.
fn publish(core: &mut Proxy, tx: &broadcast::Sender<Arc<str>>) {
    let watched = tx.receiver_count() > 0;
    while let Some(s) = core.poll_screening() {
        if watched {
            let at = std::time::SystemTime::now() - s.at.elapsed();
            let json = crate::report::screening_json(core.policy(), &s, at);
            let _ = tx.send(serde_json::Value::Object(json).to_string().into());
        }
    }
}

/// What the operations side (SIGHUP, the admin API) asks of the core task. Each is carried
/// out between two messages, so the per-message path takes no lock.
pub enum Control {
    /// A reloaded configuration (SPEC §9.1): new calls are decided by it from the next
    /// message on, and new TLS connections use its certificates (open ones keep theirs).
    /// `done` is told once it is in force.
    Reload {
        settings: Box<Settings>,
        policy: Arc<Policy>,
        tls: Option<Arc<TlsSettings>>,
        done: oneshot::Sender<()>,
    },
    /// Until when PIN challenges of `subject` are refused, if they are.
    Lockout {
        subject: Subject,
        reply: oneshot::Sender<Option<Duration>>,
    },
    /// Ends a PIN lockout; the reply says whether there was one.
    ClearLockout {
        subject: Subject,
        reply: oneshot::Sender<bool>,
    },
}

impl Control {
    fn apply(self, core: &mut Proxy, tls_state: &TlsState) {
        let now = Instant::now();
        match self {
            Control::Reload {
                settings,
                policy,
                tls,
                done,
            } => {
                *tls_state
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = tls;
                core.reload(*settings, policy);
                let _ = done.send(());
            }
            Control::Lockout { subject, reply } => {
                let left = core.lockout(now, &subject).map(|t| t.duration_since(now));
                let _ = reply.send(left);
            }
            Control::ClearLockout { subject, reply } => {
                let _ = reply.send(core.clear_lockout(&subject));
            }
        }
    }
}

/// The sending side, owned by the core task.
struct Outbound {
    /// SIP UDP sockets by local address: a [`Transmit`] says which one to send from.
    udp: HashMap<SocketAddr, UdpOut>,
    /// Datagrams dropped because a socket's send queue was full (logged with a count).
    udp_dropped: u64,
    /// Open connections by transport and remote address: a TCP and a TLS connection to the
    /// same address are not the same.
    tcp: HashMap<Peer, mpsc::Sender<Vec<u8>>>,
    /// Messages waiting for an outbound connection to open.
    connecting: HashMap<Peer, Vec<Vec<u8>>>,
    events: mpsc::Sender<Event>,
    limits: Limits,
    connections: Arc<AtomicUsize>,
    /// The TLS settings in force, for outbound `tls:` connections.
    tls: TlsState,
    /// PIN prompt RTP sockets, by port: the sending side and the reader task.
    rtp: HashMap<u16, (std::net::UdpSocket, tokio::task::JoinHandle<()>)>,
}

impl Outbound {
    /// Carries out what the core asked for: RTP sockets, then messages.
    fn flush(&mut self, core: &mut Proxy) {
        while let Some(cmd) = core.poll_media() {
            match cmd {
                MediaCommand::Open(addr) => match open_rtp(addr) {
                    Ok((sender, receiver)) => {
                        let task =
                            tokio::spawn(rtp_reader(receiver, addr.port(), self.events.clone()));
                        self.rtp.insert(addr.port(), (sender, task));
                    }
                    Err(e) => {
                        tracing::warn!(%addr, error = %e, "cannot open an RTP port");
                        let _ = self
                            .events
                            .try_send(Event::RtpBindFailed { port: addr.port() });
                    }
                },
                MediaCommand::Close(port) => {
                    if let Some((_, task)) = self.rtp.remove(&port) {
                        task.abort();
                    }
                }
            }
        }
        while let Some(t) = core.poll_transmit() {
            self.send(t);
        }
    }

    fn handle(&mut self, core: &mut Proxy, now: Instant, event: Event) {
        match event {
            Event::Message { from, bytes } => core.handle_message(now, from, &bytes),
            Event::TcpUp { remote, writer } => {
                for bytes in self.connecting.remove(&remote).into_iter().flatten() {
                    let _ = writer.try_send(bytes);
                }
                self.tcp.insert(remote, writer);
            }
            Event::TcpDown { remote } => {
                self.tcp.remove(&remote);
            }
            Event::SendFailed { to } => {
                self.connecting.remove(&to);
                core.handle_send_error(now, to);
            }
            Event::Rtp { port, from, bytes } => core.handle_rtp(now, port, from, &bytes),
            Event::RtpBindFailed { port } => core.handle_rtp_failure(now, port),
        }
        self.flush(core);
    }

    fn send(&mut self, t: Transmit) {
        if let Some((socket, _)) = self.rtp.get(&t.from.port()) {
            if let Err(e) = socket.send_to(&t.bytes, t.to.addr) {
                tracing::debug!(port = t.from.port(), error = %e, "RTP send failed");
            }
            return;
        }
        match t.to.transport {
            Transport::Udp => {
                let Some(out) = self.udp.get(&t.from) else {
                    tracing::warn!(from = %t.from, to = %t.to.addr, "no UDP socket to send from");
                    return;
                };
                if !out.send(t.to.addr, t.bytes) {
                    self.udp_dropped += 1;
                    if self.udp_dropped.is_power_of_two() {
                        tracing::warn!(
                            dropped = self.udp_dropped,
                            "UDP send queue full, datagrams dropped"
                        );
                    }
                }
            }
            Transport::Tcp | Transport::Tls => {
                if let Some(writer) = self.tcp.get(&t.to) {
                    if writer.try_send(t.bytes).is_err() {
                        tracing::warn!(to = %t.to.addr, "TCP connection queue full or closed, message dropped");
                    }
                    return;
                }
                if let Some(queue) = self.connecting.get_mut(&t.to) {
                    // Bounded like an open connection's queue.
                    if queue.len() < CONNECTION_QUEUE {
                        queue.push(t.bytes);
                    } else {
                        tracing::warn!(to = %t.to.addr, "TCP connection still opening, queue full, message dropped");
                    }
                    return;
                }
                self.connecting.insert(t.to, vec![t.bytes]);
                tokio::spawn(tcp_connect(
                    t.to,
                    self.events.clone(),
                    self.limits,
                    self.connections.clone(),
                    self.tls.clone(),
                ));
            }
        }
    }
}
