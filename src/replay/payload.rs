//! What replay reads out of a capture: [`Payload`], the bytes a socket would have delivered
//! (one UDP datagram, or a run of TCP stream bytes) with their addresses and capture time.
//! Both the capture reader (`capture`) and TCP reassembly (`tcp`) make them, so it sits
//! below both.

use std::net::SocketAddr;
use std::time::Duration;

/// The transport protocol a payload came over: the proxy's own notion of it.
pub use crate::proxy::Transport;

/// What a socket would have delivered: one UDP datagram, or a run of TCP stream bytes.
///
/// TCP payloads follow the stream, not the segments: one may hold part of a SIP message, or
/// several, and framing them is the caller's job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// When the packet that delivered these bytes was captured (for TCP, the one that made
    /// them contiguous), since the UNIX epoch, as the capture recorded it.
    pub time: Duration,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub transport: Transport,
    pub bytes: Vec<u8>,
    /// TCP only: bytes of this stream just before these never appeared in the capture and
    /// were given up on, so a framer must drop any partial message and find the next start.
    pub after_gap: bool,
}
