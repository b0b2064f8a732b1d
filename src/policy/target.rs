//! Where an allowed call goes: `udp:IP:PORT` or `tcp:IP:PORT` (IPv6 in brackets).

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

/// A transport protocol sipscreen speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
}

/// A transport and a socket address, as written in `listen` and `next_hop`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    pub transport: Transport,
    pub addr: SocketAddr,
}

impl FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (proto, addr) = s
            .split_once(':')
            .ok_or_else(|| format!("`{s}` is not of the form udp:IP:PORT or tcp:IP:PORT"))?;
        let transport = match proto.to_ascii_lowercase().as_str() {
            "udp" => Transport::Udp,
            "tcp" => Transport::Tcp,
            other => return Err(format!("`{s}`: unknown transport `{other}` (udp or tcp)")),
        };
        let addr = addr
            .parse()
            .map_err(|_| format!("`{s}`: `{addr}` is not IP:PORT (IPv6 as [::1]:5060)"))?;
        Ok(Self { transport, addr })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = match self.transport {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        };
        write!(f, "{proto}:{}", self.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_both_families() {
        for s in ["udp:127.0.0.1:5060", "tcp:[::1]:5070"] {
            assert_eq!(s.parse::<Target>().unwrap().to_string(), s);
        }
        for bad in [
            "127.0.0.1:5060",
            "sctp:127.0.0.1:5060",
            "udp:127.0.0.1",
            "udp:host:5060",
        ] {
            assert!(bad.parse::<Target>().is_err(), "{bad}");
        }
    }
}
