//! UDP: the SIP sockets (a large receive buffer, one reader task each, a writer task with a
//! bounded queue for when the kernel's buffer is full) and the PIN prompts' RTP sockets.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::Event;
use crate::proxy::{Peer, Transport};

/// Receive buffer asked for on SIP UDP sockets: bursts of thousands of datagrams must wait
/// there while the core works, rather than be dropped by the kernel (the system's
/// `net.core.rmem_max` may cap it).
const UDP_RECEIVE_BUFFER: usize = 4 << 20;

/// A SIP UDP socket with a large receive buffer.
pub(super) fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    if let Err(e) = socket.set_recv_buffer_size(UDP_RECEIVE_BUFFER) {
        tracing::debug!(%addr, error = %e, "cannot enlarge the UDP receive buffer");
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// Datagrams waiting for a UDP socket to become writable.
const UDP_SEND_QUEUE: usize = 8192;

/// The sending side of a SIP UDP socket: sent at once when the kernel takes it, else queued
/// for one writer task per socket (never a task per datagram), and dropped when the queue is
/// full (UDP may lose datagrams; the transaction layer retransmits).
pub(super) struct UdpOut {
    socket: Arc<UdpSocket>,
    queue: mpsc::Sender<(SocketAddr, Vec<u8>)>,
}

impl UdpOut {
    pub(super) fn new(socket: Arc<UdpSocket>) -> Self {
        let (queue, mut waiting) = mpsc::channel::<(SocketAddr, Vec<u8>)>(UDP_SEND_QUEUE);
        let writer = socket.clone();
        tokio::spawn(async move {
            while let Some((to, bytes)) = waiting.recv().await {
                if let Err(e) = writer.send_to(&bytes, to).await {
                    tracing::debug!(%to, error = %e, "UDP send failed");
                }
            }
        });
        Self { socket, queue }
    }

    /// Sends or queues; false when the datagram had to be dropped.
    pub(super) fn send(&self, to: SocketAddr, bytes: Vec<u8>) -> bool {
        // Behind queued datagrams, a new one waits its turn (no reordering).
        if self.queue.capacity() == self.queue.max_capacity() {
            match self.socket.try_send_to(&bytes, to) {
                Ok(_) => return true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    tracing::debug!(%to, error = %e, "UDP send failed");
                    return true;
                }
            }
        }
        self.queue.try_send((to, bytes)).is_ok()
    }
}

pub(super) async fn udp_reader(
    socket: Arc<UdpSocket>,
    events: mpsc::Sender<Event>,
    max_size: usize,
) {
    let mut buf = vec![0u8; max_size.max(65_535)];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, from)) => {
                let event = Event::Message {
                    from: Peer {
                        transport: Transport::Udp,
                        addr: from,
                    },
                    bytes: buf[..n].to_vec(),
                };
                if events.send(event).await.is_err() {
                    return;
                }
            }
            // ICMP port unreachable and the like surface here on some systems: not fatal.
            Err(e) => tracing::debug!(error = %e, "UDP receive error"),
        }
    }
}

/// Binds a PIN prompt's RTP socket: a non-blocking std handle to send the prompt with, and
/// a tokio one for the reader task. Sending through the std handle does not depend on tokio
/// having seen the new socket writable yet (its `try_send_to` reports WouldBlock until then,
/// which lost the first, marked, packet of every prompt).
pub(super) fn open_rtp(addr: SocketAddr) -> io::Result<(std::net::UdpSocket, UdpSocket)> {
    let socket = std::net::UdpSocket::bind(addr)?;
    socket.set_nonblocking(true)?;
    let sender = socket.try_clone()?;
    Ok((sender, UdpSocket::from_std(socket)?))
}

/// A PIN prompt's RTP socket: what the caller sends (DTMF events) goes to the core.
pub(super) async fn rtp_reader(socket: UdpSocket, port: u16, events: mpsc::Sender<Event>) {
    let mut buf = vec![0u8; 2048];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, from)) => {
                if events
                    .send(Event::Rtp {
                        port,
                        from,
                        bytes: buf[..n].to_vec(),
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(e) => tracing::debug!(port, error = %e, "RTP receive error"),
        }
    }
}
