//! What the proxy core runs with, apart from the policy: its listeners and next hops, whom
//! it trusts, its limits (SPEC §7) and the PIN flow's settings (SPEC §6). The configuration
//! layer builds these from the file; the core never sees the file format.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;

use std::sync::Arc;

use super::auth::Directory;
use super::hops::{Name, NextHop};
use super::limiter::PerSource;
use super::secret::Secret;
use super::Peer;
use crate::media::prompt::Prompt;

/// Everything the core needs besides the policy.
#[derive(Debug, Clone)]
pub struct Settings {
    pub server: Server,
    pub limits: Limits,
    pub pin: PinSettings,
    /// Who may authenticate, per tenant (SPEC §4.1 item 3).
    pub auth: Arc<Directory>,
    /// What branches, tags and nonces are made unguessable with.
    pub secret: Secret,
}

/// `[server]`.
#[derive(Debug, Clone)]
pub struct Server {
    pub listen: Vec<Peer>,
    /// Where each next hop of the policy is, by [`HopId`](crate::policy::HopId).
    pub hops: Vec<NextHop>,
    /// Failures in a row after which a target is marked down and probed (SPEC §5.2).
    pub down_after: u32,
    /// How often a target marked down is sent an `OPTIONS`.
    pub probe_interval: Duration,
    /// The DNS servers next hop names are looked up with; the system's when empty.
    pub dns: Vec<SocketAddr>,
    pub trusted_peers: Vec<IpNet>,
    pub record_route: bool,
    pub reject_reason: String,
}

impl Server {
    /// Whether `ip` is a trusted peer, whose identity and forwarding headers are believed.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted_peers.iter().any(|n| n.contains(&ip))
    }

    /// Every host name the next hops name, once: what the I/O layer keeps located.
    pub fn names(&self) -> Vec<Name> {
        let mut names: Vec<Name> = Vec::new();
        for n in self.hops.iter().flat_map(NextHop::names) {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
        names
    }
}

/// `[pin]`.
#[derive(Debug, Clone)]
pub struct PinSettings {
    pub attempts: u32,
    pub max_digits: u32,
    pub first_digit_timeout: Duration,
    pub inter_digit_timeout: Duration,
    /// What the caller hears: the built-in tone or a WAV file, loaded and checked.
    pub prompt: Prompt,
    /// The UDP ports the PIN prompt's RTP may use (inclusive).
    pub rtp_ports: (u16, u16),
    pub dial_prefix: Option<String>,
    pub lockout: Lockout,
}

/// `[limits]` (SPEC §7): beyond them requests get 503 or are dropped, and everyone else is
/// still served.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Longest message accepted, in bytes.
    pub max_message_size: usize,
    /// Server transactions in flight at once.
    pub max_transactions: usize,
    /// Timer C (RFC 3261 §16.6 item 11): a ringing branch is cancelled after this long.
    pub invite_timeout: Duration,
    /// Dialed strings longer than this get 484 before any parsing or caching.
    pub max_dialed_length: usize,
    /// Dialogs remembered at once (SPEC §5.1); beyond, new calls get 503.
    pub max_dialogs: usize,
    /// A dialog with no request for this long is forgotten.
    pub dialog_timeout: Duration,
    /// Per-source rate limiting of untrusted sources.
    pub per_source: PerSource,
    /// TCP connections open at once (both directions).
    pub max_tcp_connections: usize,
    /// A TCP connection with no traffic for this long is closed.
    pub tcp_idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_size: 64 * 1024,
            max_transactions: 10_000,
            invite_timeout: super::TIMER_C,
            max_dialed_length: 64,
            max_dialogs: 100_000,
            dialog_timeout: Duration::from_secs(43_200),
            per_source: PerSource::default(),
            max_tcp_connections: 1_024,
            tcp_idle_timeout: Duration::from_secs(300),
        }
    }
}

/// `pin.lockout`: per-user failure counting.
#[derive(Debug, Clone, Copy)]
pub struct Lockout {
    pub failures: u32,
    pub window: Duration,
    pub lock: Duration,
}
