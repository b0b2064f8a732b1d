//! Configuration (SPEC §2): a TOML file read into the raw structures of [`raw`], then checked
//! as a whole by `check` into a [`Config`] that holds only valid, resolved data.
//!
//! Every mistake is reported, not just the first: syntax errors (all that the TOML parser can
//! recover from), unknown keys (all of them), then every semantic error, each with the file,
//! line and column, and the tenant and object it belongs to.

mod check;
pub mod raw;

use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use ipnet::IpNet;

use crate::policy::target::Target;
use crate::policy::Policy;

/// A validated configuration.
#[derive(Debug)]
pub struct Config {
    pub server: Server,
    pub pin: PinSettings,
    pub limits: Limits,
    pub policy: Policy,
    /// Things that are valid but probably not what was meant (printed by `validate`).
    pub warnings: Vec<String>,
}

/// `[server]`.
#[derive(Debug, Clone)]
pub struct Server {
    pub listen: Vec<Target>,
    pub next_hop: Target,
    pub trusted_peers: Vec<IpNet>,
    pub record_route: bool,
    pub reject_reason: String,
}

impl Server {
    /// Whether `ip` is a trusted peer, whose identity and forwarding headers are believed.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted_peers.iter().any(|n| n.contains(&ip))
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
    pub prompt: crate::media::prompt::Prompt,
    /// The UDP ports the PIN prompt's RTP may use (inclusive).
    pub rtp_ports: (u16, u16),
    pub dial_prefix: Option<String>,
    pub lockout: Lockout,
}

/// `[limits]` (SPEC §7): beyond them requests get 503 or are dropped, and everyone else is
/// still served.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest message accepted, in bytes.
    pub max_message_size: usize,
    /// Server transactions in flight at once.
    pub max_transactions: usize,
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

/// One configuration mistake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// 1-based line and column, when the position is known.
    pub position: Option<(usize, usize)>,
    /// The object at fault, e.g. `tenant "acme", user "alice"`; empty for the file as a whole.
    pub context: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some((line, col)) = self.position {
            write!(f, ":{line}:{col}")?;
        }
        if !self.context.is_empty() {
            write!(f, ": {}", self.context)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every mistake of a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl Config {
    /// Reads and checks the file at `path`. Relative paths inside it (a WAV prompt) are taken
    /// from the file's folder.
    pub fn load(path: &Path) -> Result<Self, ConfigErrors> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: file.clone(),
                position: None,
                context: String::new(),
                message: format!("cannot read the configuration: {e}"),
            }])
        })?;
        Self::from_toml(&text, &file, path.parent())
    }

    /// Checks a configuration given as text; `file` names it in errors and `base` is where
    /// relative paths start (the current folder when `None`).
    pub fn from_toml(text: &str, file: &str, base: Option<&Path>) -> Result<Self, ConfigErrors> {
        check::check(text, file, base.unwrap_or(Path::new("")))
    }
}
