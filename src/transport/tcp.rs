//! TCP (RFC 3261 §18), and TLS over it: accepted and outbound connections within
//! `max_tcp_connections` (and a share of it per source), each a task that frames messages
//! off the stream and writes what the core sends to it, under the deadlines of SPEC §7. A
//! TLS connection takes its slot before its handshake, so handshakes count too.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::tls::{self, Failures, TlsState};
use super::{Event, CONNECTION_QUEUE, CONNECT_TIMEOUT};
use crate::proxy::{Limits, Peer, Transport};
use crate::sip::StreamFramer;

/// A place among `max_tcp_connections`, taken before a connection is handed to its task
/// (so that a burst of connects cannot overshoot the limit) and given back when it ends.
/// An inbound one also holds a place among its source's (see [`per_source_connections`]).
struct Slot {
    connections: Arc<AtomicUsize>,
    source: Option<(SourceCounts, IpAddr)>,
}

/// Inbound connections open per source (an IPv6 source by its /64).
pub(super) type SourceCounts = Arc<std::sync::Mutex<HashMap<IpAddr, usize>>>;

/// How many of the connections one source may hold: an eighth of them, at least 16, so that
/// no single address can take every slot (a PBX or SBC needs a few).
fn per_source_connections(max: usize) -> usize {
    (max / 8).max(16).min(max)
}

impl Slot {
    fn take(connections: &Arc<AtomicUsize>, max: usize) -> Option<Slot> {
        connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot {
                connections: connections.clone(),
                source: None,
            })
    }

    /// A place for an inbound connection from `ip`, within both limits.
    fn take_inbound(
        connections: &Arc<AtomicUsize>,
        max: usize,
        sources: &SourceCounts,
        ip: IpAddr,
    ) -> Option<Slot> {
        // Dropping `slot` on the way out gives its global place back.
        let mut slot = Slot::take(connections, max)?;
        let key = crate::proxy::limiter::source_key(ip);
        let mut counts = sources.lock().ok()?;
        let n = counts.entry(key).or_default();
        if *n >= per_source_connections(max) {
            return None;
        }
        *n += 1;
        drop(counts);
        slot.source = Some((sources.clone(), key));
        Some(slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.connections.fetch_sub(1, Ordering::AcqRel);
        if let Some((sources, key)) = &self.source {
            if let Ok(mut counts) = sources.lock() {
                if let Some(n) = counts.get_mut(key) {
                    *n -= 1;
                    if *n == 0 {
                        counts.remove(key);
                    }
                }
            }
        }
    }
}

/// Accepts connections on a `tcp:` listener, or a `tls:` one when `tls` is given.
pub(super) async fn tcp_acceptor(
    listener: TcpListener,
    events: mpsc::Sender<Event>,
    limits: Limits,
    connections: Arc<AtomicUsize>,
    sources: SourceCounts,
    tls: Option<TlsState>,
) {
    let failures = Arc::new(Failures::default());
    // Refusals are logged once a second at most, with their count.
    let mut refused = 0u64;
    let mut logged_at: Option<Instant> = None;
    loop {
        match listener.accept().await {
            Ok((stream, remote)) => {
                let max = limits.max_tcp_connections;
                let Some(slot) = Slot::take_inbound(&connections, max, &sources, remote.ip())
                else {
                    drop(stream);
                    refused += 1;
                    let now = Instant::now();
                    if logged_at.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1)) {
                        tracing::warn!(%remote, refused, "TCP connection limit reached, refused");
                        refused = 0;
                        logged_at = Some(now);
                    }
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let Some(tls) = &tls else {
                    let from = Peer {
                        transport: Transport::Tcp,
                        addr: remote,
                    };
                    tokio::spawn(connection(stream, from, events.clone(), limits, slot));
                    continue;
                };
                let (tls, events, failures) = (tls.clone(), events.clone(), failures.clone());
                tokio::spawn(async move {
                    match tls::accept(&tls, stream, limits.tcp_idle_timeout).await {
                        Ok(stream) => {
                            let from = Peer {
                                transport: Transport::Tls,
                                addr: remote,
                            };
                            connection(stream, from, events, limits, slot).await;
                        }
                        Err(error) => {
                            if let Some(failed) = failures.hit() {
                                tracing::warn!(%remote, %error, failed, "TLS handshake with a client failed, connection closed");
                            }
                        }
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "TCP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Opens a connection to `to` (TCP, or TLS over TCP) and runs it; a failure is told to the
/// core as [`Event::SendFailed`], which answers what was waiting for it with 503.
pub(super) async fn tcp_connect(
    to: Peer,
    events: mpsc::Sender<Event>,
    limits: Limits,
    connections: Arc<AtomicUsize>,
    tls: TlsState,
) {
    // Outbound connections count against the same limit as inbound ones.
    let Some(slot) = Slot::take(&connections, limits.max_tcp_connections) else {
        tracing::warn!(to = %to.addr, "TCP connection limit reached, not connecting");
        let _ = events.send(Event::SendFailed { to }).await;
        return;
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(to.addr)).await {
        Ok(Ok(stream)) if to.transport == Transport::Tls => {
            let _ = stream.set_nodelay(true);
            match tls::connect(&tls, stream, to.addr.ip(), limits.tcp_idle_timeout).await {
                Ok(stream) => connection(stream, to, events, limits, slot).await,
                Err(error) => {
                    // A certificate that does not name the next hop ends here (RFC 5922 §7).
                    tracing::warn!(to = %to.addr, %error, "TLS handshake with the next hop failed");
                    let _ = events.send(Event::SendFailed { to }).await;
                }
            }
        }
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            connection(stream, to, events, limits, slot).await
        }
        Ok(Err(e)) => {
            tracing::warn!(to = %to.addr, error = %e, "TCP connect failed");
            let _ = events.send(Event::SendFailed { to }).await;
        }
        Err(_) => {
            tracing::warn!(to = %to.addr, "TCP connect timed out");
            let _ = events.send(Event::SendFailed { to }).await;
        }
    }
}

/// A read after this much quiet starts afresh: blank lines before it were keep-alives.
const KEEPALIVE_PAUSE: Duration = Duration::from_secs(1);

/// One connection (TCP, or TLS over it): frames messages by Content-Length (several per read, or one over
/// several reads, resuming where the last read stopped) and writes what the core sends to
/// it. Closed when the peer closes, when the stream can never frame, when nothing comes for
/// `tcp_idle_timeout_s`, and when a message is not complete `tcp_idle_timeout_s` after its
/// first byte (SPEC §7: one byte a second does not keep a connection open).
async fn connection<S>(
    stream: S,
    from: Peer,
    events: mpsc::Sender<Event>,
    limits: Limits,
    slot: Slot,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let remote = from.addr;
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(CONNECTION_QUEUE);
    if events
        .send(Event::TcpUp {
            remote: from,
            writer: tx,
        })
        .await
        .is_err()
    {
        return;
    }
    let max = limits.max_message_size;
    let timeout = limits.tcp_idle_timeout;
    let mut framer = StreamFramer::default();
    let mut chunk = vec![0u8; 16 * 1024];
    let mut last_read = tokio::time::Instant::now();
    // The deadline of the message in progress, from its first byte.
    let mut message_deadline: Option<tokio::time::Instant> = None;
    loop {
        let wake = message_deadline.map_or(last_read + timeout, |d| d.min(last_read + timeout));
        tokio::select! {
            read = reader.read(&mut chunk) => {
                let n = match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let now = tokio::time::Instant::now();
                if now.duration_since(last_read) >= KEEPALIVE_PAUSE {
                    framer.forgive_blank_lines();
                }
                last_read = now;
                framer.push(&chunk[..n]);
                let mut completed = false;
                loop {
                    match framer.next(max) {
                        Ok(Some(bytes)) => {
                            completed = true;
                            if events.send(Event::Message { from, bytes }).await.is_err() {
                                return;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            tracing::warn!(%remote, error = %e, "TCP stream cannot be framed, closing");
                            let _ = writer.shutdown().await;
                            let _ = events.send(Event::TcpDown { remote: from }).await;
                            return;
                        }
                    }
                }
                message_deadline = match (framer.in_message(), message_deadline) {
                    (false, _) => None,
                    (true, Some(d)) if !completed => Some(d),
                    (true, _) => Some(now + timeout),
                };
            }
            _ = tokio::time::sleep_until(wake) => {
                tracing::debug!(%remote, "TCP connection idle, or a message too slow to arrive: closed");
                break;
            }
            out = rx.recv() => {
                let Some(bytes) = out else { break };
                // A peer that does not read what we send does not hold the task forever.
                // The flush sends what a TLS stream still buffers (a no-op over TCP).
                let write = async {
                    writer.write_all(&bytes).await?;
                    writer.flush().await
                };
                match tokio::time::timeout(timeout, write).await {
                    Ok(Ok(())) => {}
                    _ => break,
                }
            }
        }
    }
    drop(slot);
    let _ = events.send(Event::TcpDown { remote: from }).await;
}
