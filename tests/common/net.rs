//! Ports and sockets on loopback: the next hops the test holds itself, free ports for SIPp
//! (which must bind its own), and what the kernel's socket tables say is bound.
//!
//! sipscreen binds port 0 and says which port it got (see [`super::proxy`]); a socket of the
//! test is bound once on port 0 and kept. Only SIPp needs a port number before it starts:
//! Debian's SIPp 3.6 takes `-p 0` as "no port given" and then scans upward from 5060 (the
//! port of any SIP server on the machine) rather than asking the kernel, and names the port
//! only on its screen. So its ports are chosen here, from the kernel's free ones, and a SIPp
//! that finds one taken by the time it binds is started again (see [`super::sipp`]).

use std::cell::RefCell;
use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Ports handed out in this process: tests run in parallel, and a port one of them was just
/// given (and has not bound yet) must not be given to another.
static TAKEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// `n` consecutive ports free for UDP and TCP on `ip` right now, none handed out before in
/// this run; the first one even (RTP ports are). Returns the first.
pub fn free_ports(ip: IpAddr, n: u16) -> u16 {
    for _ in 0..200 {
        let first = UdpSocket::bind((ip, 0))
            .and_then(|s| s.local_addr())
            .map(|a| a.port() & !1)
            .unwrap_or_else(|e| panic!("cannot bind a UDP socket on {ip}: {e}"));
        let Some(last) = first.checked_add(n - 1) else {
            continue;
        };
        let free = first >= 1024
            && (first..=last)
                .all(|p| UdpSocket::bind((ip, p)).is_ok() && TcpListener::bind((ip, p)).is_ok());
        let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
        if free && !(first..=last).any(|p| taken.contains(&p)) {
            taken.extend(first..=last);
            return first;
        }
    }
    panic!("no {n} consecutive free ports on {ip}");
}

pub fn free_port(ip: IpAddr) -> u16 {
    free_ports(ip, 1)
}

/// Marks a port the test holds as handed out: once it lends it to a SIPp, no other test may
/// be given it while SIPp has not bound it yet.
fn take(port: u16) {
    TAKEN.lock().unwrap_or_else(|e| e.into_inner()).insert(port);
}

// ---------------------------------------------------------------------------------------
// The kernel's socket tables.

/// One socket of `/proc/net/{udp,udp6,tcp,tcp6}`.
struct Socket {
    udp: bool,
    ip: IpAddr,
    port: u16,
    inode: u64,
}

/// Every socket of the network namespace (read from /proc: looking never takes a port).
fn sockets() -> Vec<Socket> {
    let mut out = Vec::new();
    for (file, udp) in [
        ("/proc/net/udp", true),
        ("/proc/net/udp6", true),
        ("/proc/net/tcp", false),
        ("/proc/net/tcp6", false),
    ] {
        let table = fs::read_to_string(file).unwrap_or_default();
        for line in table.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(inode)) = (cols.get(1), cols.get(9)) else {
                continue;
            };
            let Some((ip, port)) = local.split_once(':') else {
                continue;
            };
            let (Some(ip), Ok(port), Ok(inode)) =
                (proc_ip(ip), u16::from_str_radix(port, 16), inode.parse())
            else {
                continue;
            };
            out.push(Socket {
                udp,
                ip,
                port,
                inode,
            });
        }
    }
    out
}

/// An address as /proc/net prints it: 32-bit words in hex, each in host (little-endian)
/// byte order.
fn proc_ip(hex: &str) -> Option<IpAddr> {
    let mut bytes = Vec::with_capacity(16);
    for i in (0..hex.len()).step_by(8) {
        let word = u32::from_str_radix(hex.get(i..i + 8)?, 16).ok()?;
        bytes.extend(word.to_le_bytes());
    }
    match bytes.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?))),
        16 => Some(IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(bytes).ok()?,
        ))),
        _ => None,
    }
}

/// Whether a UDP socket is bound to `port` on `ip` (or on every address).
pub fn udp_bound(ip: IpAddr, port: u16) -> bool {
    sockets()
        .iter()
        .any(|s| s.udp && s.port == port && (s.ip == ip || s.ip.is_unspecified()))
}

/// The local ports of the sockets process `pid` holds (UDP or TCP).
pub fn ports_of(pid: u32) -> HashSet<u16> {
    let inodes: HashSet<u64> = fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .filter_map(|entry| fs::read_link(entry.ok()?.path()).ok())
        .filter_map(|link| {
            let link = link.to_str()?;
            link.strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect();
    sockets()
        .into_iter()
        .filter(|s| inodes.contains(&s.inode))
        .map(|s| s.port)
        .collect()
}

// ---------------------------------------------------------------------------------------
// Next hops.

/// What holds a next hop's port while no SIPp has it.
enum Held {
    Udp(UdpSocket),
    Tcp(TcpListener),
}

/// The port of a next hop that sipscreen's configuration names, held by the test: bound on
/// port 0 once, then kept, except while a SIPp UAS has it (SIPp binds its port itself).
pub struct NextHop {
    addr: SocketAddr,
    held: RefCell<Option<Held>>,
}

impl NextHop {
    /// A UDP next hop on `ip`.
    pub fn udp(ip: IpAddr) -> NextHop {
        NextHop::hold(Held::Udp(
            UdpSocket::bind((ip, 0)).expect("bind the next hop's UDP socket"),
        ))
    }

    /// A TCP next hop on `ip` (held by a listener nobody connects to before a SIPp has it).
    pub fn tcp(ip: IpAddr) -> NextHop {
        NextHop::hold(Held::Tcp(
            TcpListener::bind((ip, 0)).expect("bind the next hop's TCP listener"),
        ))
    }

    fn hold(held: Held) -> NextHop {
        let addr = match &held {
            Held::Udp(socket) => socket.local_addr(),
            Held::Tcp(listener) => listener.local_addr(),
        }
        .expect("the next hop's address");
        take(addr.port());
        NextHop {
            addr,
            held: RefCell::new(Some(held)),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Lets the port go, for a SIPp UAS to bind; its port. From here until SIPp has bound it
    /// another process could take it: then the SIPp is started again on it (bounded).
    pub fn lend(&self) -> u16 {
        drop(self.held.borrow_mut().take());
        self.addr.port()
    }

    /// The next hop as a socket of the test that plays the callee itself: the held socket
    /// (bound again if a SIPp UAS had the port), shared, with nothing drained.
    pub fn socket(&self) -> UdpSocket {
        let mut held = self.held.borrow_mut();
        if held.is_none() {
            *held = Some(Held::Udp(rebind(self.addr)));
        }
        let Some(Held::Udp(socket)) = held.as_ref() else {
            panic!("the next hop at {} is a TCP next hop", self.addr);
        };
        socket.try_clone().expect("share the next hop's socket")
    }

    /// The next hop as a socket of the test, where nothing may arrive: the held socket (bound
    /// again if a SIPp UAS had the port), with whatever came before this moment dropped, as
    /// a socket bound now would have nothing. `what` names it in failures.
    pub fn silent(&self, what: &str) -> Silent {
        let mut held = self.held.borrow_mut();
        if held.is_none() {
            *held = Some(Held::Udp(rebind(self.addr)));
        }
        let Some(Held::Udp(socket)) = held.as_ref() else {
            panic!("the {what} at {} is a TCP next hop", self.addr);
        };
        let socket = socket.try_clone().expect("share the next hop's socket");
        socket.set_nonblocking(true).expect("set non-blocking");
        let mut buf = [0u8; 65_535];
        while socket.recv(&mut buf).is_ok() {}
        socket.set_nonblocking(false).expect("set blocking");
        socket
            .set_read_timeout(Some(Duration::from_millis(300)))
            .expect("set a read timeout");
        Silent {
            what: what.to_owned(),
            socket,
        }
    }
}

/// Binds `addr` again once a SIPp that had it is gone (it may still be exiting).
fn rebind(addr: SocketAddr) -> UdpSocket {
    bind_within(addr, Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("cannot take the next hop's port {addr} back: {e}"))
}

/// Binds UDP `addr`, trying again for at most `limit` while it is in use (by a process that
/// is letting it go); the last error past that.
pub fn bind_within(addr: SocketAddr, limit: Duration) -> std::io::Result<UdpSocket> {
    let deadline = Instant::now() + limit;
    loop {
        match UdpSocket::bind(addr) {
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            result => return result,
        }
    }
}

/// A next hop's socket where nothing may arrive.
pub struct Silent {
    what: String,
    socket: UdpSocket,
}

impl Silent {
    /// Every datagram received so far (waiting 300 ms after the last one for stragglers).
    fn received(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = [0u8; 65_535];
        while let Ok(n) = self.socket.recv(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        out
    }

    /// Nothing arrived: `why` says what the test did.
    pub fn assert_nothing(&self, why: &str) {
        let got = self.received();
        assert!(
            got.is_empty(),
            "{why}: nothing may reach the {}, but it got:\n{}",
            self.what,
            got.join("\n----\n")
        );
    }
}
