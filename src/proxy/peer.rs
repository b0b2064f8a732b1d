//! The core's view of the network: a transport and a socket address ([`Peer`]), written
//! `udp:IP:PORT`, `tcp:IP:PORT` or `tls:IP:PORT` (IPv6 in brackets) in `listen` and
//! `next_hop`, and what the core asks the I/O layer to do ([`Transmit`], [`MediaCommand`]).

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

/// A transport protocol sipscreen speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    /// TLS over TCP (RFC 3261 §26.2.1): a stream like TCP; only the I/O layer sees the
    /// encryption.
    Tls,
}

impl Transport {
    /// Whether messages travel over a connection (TCP, TLS) rather than as datagrams: no
    /// retransmissions (RFC 3261 §17), responses back over the same connection (§18.2.2).
    pub fn is_stream(self) -> bool {
        matches!(self, Transport::Tcp | Transport::Tls)
    }

    /// The lowercase name written in `listen`, `next_hop` and metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }
}

/// A remote or local end: a transport and a socket address, as written in `listen` and
/// `next_hop`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Peer {
    pub transport: Transport,
    pub addr: SocketAddr,
}

impl FromStr for Peer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (proto, addr) = s.split_once(':').ok_or_else(|| {
            format!("`{s}` is not of the form udp:IP:PORT, tcp:IP:PORT or tls:IP:PORT")
        })?;
        let transport = match proto.to_ascii_lowercase().as_str() {
            "udp" => Transport::Udp,
            "tcp" => Transport::Tcp,
            "tls" => Transport::Tls,
            other => {
                return Err(format!(
                    "`{s}`: unknown transport `{other}` (udp, tcp or tls)"
                ))
            }
        };
        let addr = addr
            .parse()
            .map_err(|_| format!("`{s}`: `{addr}` is not IP:PORT (IPv6 as [::1]:5060)"))?;
        Ok(Self { transport, addr })
    }
}

/// Bytes to send, and from where: quinn's `Transmit` carries its source for the same reason,
/// so that the I/O layer sends from the address the core wrote into Via and SDP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub to: Peer,
    /// The local address to send from: a SIP listener, or a PIN prompt's RTP socket.
    pub from: SocketAddr,
    pub bytes: Vec<u8>,
}

/// What the core needs from the I/O layer for media: RTP sockets opened and closed as PIN
/// sessions start and end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaCommand {
    /// Bind a UDP socket at this address and feed what it receives to
    /// [`super::Proxy::handle_rtp`].
    Open(SocketAddr),
    /// Close the socket of this port.
    Close(u16),
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.transport.name(), self.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_both_families() {
        for s in ["udp:127.0.0.1:5060", "tcp:[::1]:5070", "tls:127.0.0.1:5061"] {
            assert_eq!(s.parse::<Peer>().unwrap().to_string(), s);
        }
        for bad in [
            "127.0.0.1:5060",
            "sctp:127.0.0.1:5060",
            "udp:127.0.0.1",
            "udp:host:5060",
        ] {
            assert!(bad.parse::<Peer>().is_err(), "{bad}");
        }
    }
}
