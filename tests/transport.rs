//! The transport driven in-process: `transport::run` on sockets bound here (port 0, handed
//! over bound), with the test talking to it over loopback. What only the I/O edge does is
//! checked here: the TCP connection limit, the idle timeout, a stream that cannot be framed,
//! and a next hop that cannot be reached.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use sipscreen::config::Config;
use sipscreen::transport::{self, Sockets};
use tokio::sync::oneshot;

/// A proxy running on its own thread and runtime, stopped (and joined) when dropped.
struct Running {
    udp: SocketAddr,
    tcp: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    /// Starts the proxy on `config` with `listen` replaced by UDP and TCP on a free port.
    fn start(config: &str) -> Running {
        let text = format!(
            "[server]\nlisten = [\"udp:127.0.0.1:0\", \"tcp:127.0.0.1:0\"]\n\
             trusted_peers = [\"127.0.0.1/32\"]\n{config}\n\
             [brand]\nname = \"b\"\n[[tenant]]\nname = \"t\"\ncountry = \"ES\"\n"
        );
        let config = Config::from_toml(&text, "transport.toml", None).expect("a valid config");
        let (stop, stopped) = oneshot::channel::<()>();
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let mut settings = config.proxy;
                let sockets = Sockets::bind(&settings.server.listen)
                    .await
                    .expect("bind on port 0");
                settings.server.listen = sockets.bound().to_vec();
                ready_tx
                    .send(settings.server.listen.clone())
                    .expect("the test waits");
                let shutdown = async {
                    let _ = stopped.await;
                };
                // Nothing controls this proxy: the sender goes at once.
                let (_, control) = tokio::sync::mpsc::channel(1);
                transport::run(
                    settings,
                    config.policy,
                    sockets,
                    shutdown,
                    control,
                    transport::Observe {
                        decisions: None,
                        metrics: sipscreen::metrics::Metrics::new(Default::default()),
                    },
                )
                .await
                .expect("the transport runs");
            });
        });
        let listen = ready
            .recv_timeout(Duration::from_secs(10))
            .expect("the proxy binds");
        let find = |udp: bool| {
            listen
                .iter()
                .find(|l| (l.to_string().starts_with("udp")) == udp)
                .map(|l| l.addr)
                .expect("both transports")
        };
        Running {
            udp: find(true),
            tcp: find(false),
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An OPTIONS for the proxy at `to` (answered 200 by the proxy itself).
fn options(to: SocketAddr, call_id: &str, transport: &str, port: u16) -> String {
    format!(
        "OPTIONS sip:{to} SIP/2.0\r\nVia: SIP/2.0/{transport} 127.0.0.1:{port};branch=z9hG4bK{call_id}\r\n\
         From: <sip:t@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
}

/// Whether the server closed `stream` within `limit` (a read gives end of stream or an
/// error); false if it is still open (the read timed out).
fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    stream.set_read_timeout(Some(limit)).expect("timeout");
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + limit;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) if Instant::now() < deadline => continue,
            Ok(_) => return false,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

/// The first response read from a TCP stream (within 5 s).
fn tcp_response(stream: &mut TcpStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut buf = [0u8; 4096];
    let n = stream.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn tcp_connections_beyond_the_limit_are_refused_and_the_others_served() {
    let proxy = Running::start("next_hop = \"udp:127.0.0.1:9\"\n[limits]\nmax_tcp_connections = 3");
    let mut streams: Vec<TcpStream> = Vec::new();
    for _ in 0..5 {
        streams.push(TcpStream::connect(proxy.tcp).expect("connect"));
        // One at a time: the limit is taken as each connection is accepted.
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut served = 0;
    let mut refused = 0;
    for (i, s) in streams.iter_mut().enumerate() {
        let port = s.local_addr().expect("local").port();
        let _ = s.write_all(options(proxy.tcp, &format!("lim{i}"), "TCP", port).as_bytes());
        let reply = tcp_response(s);
        if reply.starts_with("SIP/2.0 200 ") {
            served += 1;
        } else {
            assert!(
                reply.is_empty(),
                "a refused connection gets nothing: {reply}"
            );
            refused += 1;
        }
    }
    assert_eq!((served, refused), (3, 2));
}

#[test]
fn an_idle_tcp_connection_is_closed_after_the_idle_timeout() {
    let proxy = Running::start("next_hop = \"udp:127.0.0.1:9\"\n[limits]\ntcp_idle_timeout_s = 1");
    let mut idle = TcpStream::connect(proxy.tcp).expect("connect");
    assert!(
        !closed_within(&mut idle, Duration::from_millis(500)),
        "still open before the timeout"
    );
    assert!(
        closed_within(&mut idle, Duration::from_secs(3)),
        "closed once idle for 1 s"
    );
}

#[test]
fn a_stream_that_cannot_be_framed_is_closed_and_the_listener_goes_on() {
    let proxy = Running::start("next_hop = \"udp:127.0.0.1:9\"");
    let mut bad = TcpStream::connect(proxy.tcp).expect("connect");
    bad.write_all(
        b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bKbad\r\n\
          Content-Length: many\r\n\r\n",
    )
    .expect("write");
    assert!(
        closed_within(&mut bad, Duration::from_secs(3)),
        "a bad Content-Length closes the connection"
    );
    let mut good = TcpStream::connect(proxy.tcp).expect("connect");
    let port = good.local_addr().expect("local").port();
    good.write_all(options(proxy.tcp, "after", "TCP", port).as_bytes())
        .expect("write");
    assert!(tcp_response(&mut good).starts_with("SIP/2.0 200 "));
}

#[test]
fn a_next_hop_that_refuses_the_connection_gives_503_upstream() {
    // A TCP port that is bound but not listening: every connect to it is refused, and no
    // other process can take it while the socket lives.
    let reserved =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    reserved
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("bind");
    let hop = reserved
        .local_addr()
        .expect("local")
        .as_socket()
        .expect("inet");
    let proxy = Running::start(&format!("next_hop = \"tcp:{hop}\""));
    let caller = UdpSocket::bind("127.0.0.1:0").expect("bind");
    caller
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let port = caller.local_addr().expect("local").port();
    let invite = format!(
        "INVITE sip:1234@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKhop;rport\r\n\
         From: <sip:caller@127.0.0.1>;tag=1\r\nTo: <sip:1234@127.0.0.1>\r\nCall-ID: hop-refused\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:caller@127.0.0.1:{port}>\r\nMax-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    );
    caller.send_to(invite.as_bytes(), proxy.udp).expect("send");
    let mut codes = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = caller.recv(&mut buf) {
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        let code: u16 = text
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        codes.push(code);
        if code >= 200 {
            break;
        }
    }
    assert_eq!(
        codes,
        vec![100, 503],
        "Trying, then 503 once the connect fails"
    );
}

#[test]
fn one_byte_at_a_time_does_not_keep_a_connection_open() {
    let proxy = Running::start("next_hop = \"udp:127.0.0.1:9\"\n[limits]\ntcp_idle_timeout_s = 2");
    let mut slow = TcpStream::connect(proxy.tcp).expect("connect");
    let started = Instant::now();
    let message = options(proxy.tcp, "slow", "TCP", 1);
    let mut sent = 0;
    for b in message.bytes() {
        if slow.write_all(&[b]).is_err() {
            break;
        }
        sent += 1;
        // Far more often than the idle timeout: only the message deadline can end it.
        if closed_within(&mut slow, Duration::from_millis(400)) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still open after 10 s"
        );
    }
    eprintln!(
        "slow connection closed after {sent} bytes in {:?}",
        started.elapsed()
    );
    assert!(
        sent < message.len(),
        "closed before the message was complete"
    );
}

/// A TCP connection to `to` from the loopback address `from`.
fn connect_from(from: [u8; 4], to: SocketAddr) -> Option<TcpStream> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
    s.bind(&SocketAddr::from((from, 0)).into()).ok()?;
    s.connect(&to.into()).ok()?;
    Some(s.into())
}

#[test]
fn one_address_holds_at_most_its_share_of_the_connections() {
    let proxy =
        Running::start("next_hop = \"udp:127.0.0.1:9\"\n[limits]\nmax_tcp_connections = 256");
    // An eighth of 256: 32 from one address; another address is still served.
    let mut streams: Vec<TcpStream> = (0..40)
        .filter_map(|_| connect_from([127, 0, 2, 1], proxy.tcp))
        .collect();
    let mut open = 0;
    for (i, s) in streams.iter_mut().enumerate() {
        let port = s.local_addr().expect("local").port();
        let _ = s.write_all(options(proxy.tcp, &format!("s{i}"), "TCP", port).as_bytes());
        if tcp_response(s).starts_with("SIP/2.0 200 ") {
            open += 1;
        }
    }
    assert_eq!(open, 32);
    let mut other = connect_from([127, 0, 2, 2], proxy.tcp).expect("connect");
    let port = other.local_addr().expect("local").port();
    other
        .write_all(options(proxy.tcp, "other", "TCP", port).as_bytes())
        .expect("write");
    assert!(tcp_response(&mut other).starts_with("SIP/2.0 200 "));
}

/// The soft limit of open files of this process (connects below take two each).
fn open_files_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(1024)
}

#[test]
fn a_burst_of_connects_leaves_exactly_max_tcp_connections_open() {
    // 2,000 against 1,024 when this process may open that many files, else smaller.
    let (burst, limit) = if open_files_limit() >= 8192 {
        (2000, 1024)
    } else {
        (300, 100)
    };
    let proxy = Running::start(&format!(
        "next_hop = \"udp:127.0.0.1:9\"\n[limits]\nmax_tcp_connections = {limit}"
    ));
    // From 32 addresses: one address may hold only its share of the connections.
    let mut streams: Vec<TcpStream> = (0..burst)
        .filter_map(|i| connect_from([127, 0, 1, (i % 32) as u8 + 1], proxy.tcp))
        .collect();
    // Each connection that was accepted answers an OPTIONS; the others were closed.
    let mut open = 0;
    for (i, s) in streams.iter_mut().enumerate() {
        let port = s.local_addr().expect("local").port();
        let _ = s.write_all(options(proxy.tcp, &format!("b{i}"), "TCP", port).as_bytes());
    }
    for s in streams.iter_mut() {
        if tcp_response(s).starts_with("SIP/2.0 200 ") {
            open += 1;
        }
    }
    assert_eq!(open, limit, "{burst} connects");
}

#[test]
fn a_flood_of_blank_lines_is_cut_off_and_udp_is_still_served() {
    let proxy = Running::start("next_hop = \"udp:127.0.0.1:9\"");
    let flood_to = proxy.tcp;
    let flooder = std::thread::spawn(move || {
        let mut s = TcpStream::connect(flood_to).expect("connect");
        let chunk = vec![b'\n'; 64 * 1024];
        let mut written = 0usize;
        let started = Instant::now();
        while written < 32 << 20 {
            match s.write(&chunk) {
                Ok(n) => written += n,
                Err(_) => break,
            }
        }
        (written, started.elapsed())
    });
    // Meanwhile, UDP OPTIONS are answered.
    let udp = UdpSocket::bind("127.0.0.1:0").expect("bind");
    udp.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let port = udp.local_addr().expect("local").port();
    let mut worst = Duration::ZERO;
    for i in 0..20 {
        let t = Instant::now();
        udp.send_to(
            options(proxy.udp, &format!("u{i}"), "UDP", port).as_bytes(),
            proxy.udp,
        )
        .expect("send");
        let mut buf = [0u8; 2048];
        let n = udp.recv(&mut buf).expect("an answer");
        assert!(buf[..n].starts_with(b"SIP/2.0 200 "));
        worst = worst.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(10));
    }
    let (written, took) = flooder.join().expect("the flooder");
    eprintln!("blank-line flood: {written} bytes written before the close, in {took:?}; slowest UDP OPTIONS meanwhile {worst:?}");
    assert!(
        written < 32 << 20,
        "the connection was closed long before 32 MiB"
    );
}
