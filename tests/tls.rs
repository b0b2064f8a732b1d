//! SIP over TLS end to end (SPEC §5.2): `sipscreen run` with a `tls:` listener and a `tls:`
//! next hop, between a TLS caller and a TLS next hop played by the test (rustls on std
//! sockets, loopback only), on certificates the test makes (a CA, sipscreen's and the next
//! hop's for 127.0.0.1, a client's). Then what must be refused: a next hop whose
//! certificate names another host, a client without a certificate under `verify_client`;
//! certificates re-read on reload, a broken one keeping the old; and the `[tls]` checks of
//! `validate`.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use common::proxy::Sipscreen;
use common::TempDir;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};
use rustls::{StreamOwned, SupportedProtocolVersion};

/// How long any read of the test waits.
const WAIT: Duration = Duration::from_secs(10);

/// A certificate and its key, as PEM.
struct Pem {
    cert: String,
    key: String,
}

/// The test's PKI: a CA and certificates it signed.
struct Pki {
    ca: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = params.self_signed(&key).unwrap().pem();
        Pki {
            ca,
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for `names` (an IP address becomes an IP address SAN).
    fn issue(&self, names: &[&str]) -> Pem {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        Pem {
            cert: params.signed_by(&key, &self.issuer).unwrap().pem(),
            key: key.serialize_pem(),
        }
    }

    fn roots(&self) -> Arc<RootCertStore> {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.ca.as_bytes()).unwrap())
            .unwrap();
        Arc::new(roots)
    }
}

fn chain(pem: &Pem) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.cert.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap()
}

fn key(pem: &Pem) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_slice(pem.key.as_bytes()).unwrap()
}

const VERSIONS: &[&SupportedProtocolVersion] = rustls::ALL_VERSIONS;

/// A TLS client of the test: trusts `pki`'s CA, shows `identity` when given.
fn client_config(pki: &Pki, identity: Option<&Pem>) -> Arc<ClientConfig> {
    let builder =
        ClientConfig::builder_with_protocol_versions(VERSIONS).with_root_certificates(pki.roots());
    Arc::new(match identity {
        Some(p) => builder.with_client_auth_cert(chain(p), key(p)).unwrap(),
        None => builder.with_no_client_auth(),
    })
}

/// A TLS server of the test (the next hop): shows `identity`; asks for a client
/// certificate from `pki`'s CA when `verify_clients`.
fn server_config(pki: &Pki, identity: &Pem, verify_clients: bool) -> Arc<ServerConfig> {
    let builder = ServerConfig::builder_with_protocol_versions(VERSIONS);
    let builder = if verify_clients {
        builder
            .with_client_cert_verifier(WebPkiClientVerifier::builder(pki.roots()).build().unwrap())
    } else {
        builder.with_no_client_auth()
    };
    Arc::new(
        builder
            .with_single_cert(chain(identity), key(identity))
            .unwrap(),
    )
}

/// A TLS connection to sipscreen's `tls:` listener, handshake done.
fn connect(
    to: SocketAddr,
    config: Arc<ClientConfig>,
) -> std::io::Result<StreamOwned<ClientConnection, TcpStream>> {
    let tcp = TcpStream::connect_timeout(&to, WAIT)?;
    tcp.set_read_timeout(Some(WAIT))?;
    let name = ServerName::IpAddress(to.ip().into());
    let conn = ClientConnection::new(config, name).map_err(std::io::Error::other)?;
    let mut stream = StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

/// One SIP message off a stream (framed by Content-Length); `buf` keeps what follows.
fn read_message(stream: &mut impl Read, buf: &mut Vec<u8>) -> std::io::Result<String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let length = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.trim()
                        .eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                let rest = buf.split_off(end + 4 + length);
                let msg = String::from_utf8_lossy(buf).to_string();
                *buf = rest;
                return Ok(msg);
            }
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn status(msg: &str) -> u16 {
    msg.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn header<'a>(msg: &'a str, name: &str) -> Vec<&'a str> {
    msg.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

/// An INVITE from the caller at `local`, sent over TLS.
fn invite(dialed: &str, local: SocketAddr, call_id: &str) -> String {
    format!(
        "INVITE sip:{dialed}@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/TLS {local};branch=z9hG4bK{call_id};rport\r\n\
         From: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:{dialed}@127.0.0.1>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sips:alice@{local}>\r\n\
         Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
}

/// A response to `req` (its Via, From, To with a tag, Call-ID, CSeq).
fn answer(req: &str, code: u16, reason: &str) -> String {
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for line in req.split("\r\n").skip(1).take_while(|l| !l.is_empty()) {
        let lower = line.to_ascii_lowercase();
        if ["via:", "from:", "call-id:", "cseq:", "record-route:"]
            .iter()
            .any(|h| lower.starts_with(h))
        {
            out.push_str(line);
            out.push_str("\r\n");
        } else if lower.starts_with("to:") {
            out.push_str(&format!("{line};tag=nh\r\n"));
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

/// The next hop played by the test: accepts TLS connections with `config`, answers each
/// INVITE 200 and hands it to the test; a failed handshake is handed over as an error.
struct NextHop {
    addr: SocketAddr,
    invites: mpsc::Receiver<Result<String, String>>,
}

impl NextHop {
    fn start(config: Arc<ServerConfig>) -> NextHop {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, invites) = mpsc::channel();
        // Ends when the test drops the receiver and a connection's send fails, or with the
        // test process: it holds nothing but loopback sockets.
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                let (config, tx) = (config.clone(), tx.clone());
                std::thread::spawn(move || {
                    let _ = tcp.set_read_timeout(Some(WAIT));
                    let conn = ServerConnection::new(config).unwrap();
                    let mut stream = StreamOwned::new(conn, tcp);
                    while stream.conn.is_handshaking() {
                        if let Err(e) = stream.conn.complete_io(&mut stream.sock) {
                            let _ = tx.send(Err(e.to_string()));
                            return;
                        }
                    }
                    let mut buf = Vec::new();
                    while let Ok(msg) = read_message(&mut stream, &mut buf) {
                        if msg.starts_with("INVITE ") {
                            let ok = answer(&msg, 200, "OK");
                            if stream.write_all(ok.as_bytes()).is_err() || tx.send(Ok(msg)).is_err()
                            {
                                return;
                            }
                        }
                    }
                });
            }
        });
        NextHop { addr, invites }
    }

    fn next(&self) -> Result<String, String> {
        self.invites
            .recv_timeout(WAIT)
            .expect("the next hop heard nothing")
    }
}

/// The configuration around `tls`: sipscreen listens on UDP and TLS and sends to
/// `next_hop`; alice may call anything but premium numbers.
fn config(next_hop: SocketAddr, tls: &str) -> String {
    format!(
        "[server]\nlisten = [\"udp:127.0.0.1:0\", \"tls:127.0.0.1:0\"]\n\
         next_hop = \"tls:{next_hop}\"\n\n[tls]\n{tls}\n\n\
         [brand]\nname = \"b\"\n\n[[tenant]]\nname = \"acme\"\ncountry = \"ES\"\n\
         sources = [\"127.0.0.1/32\"]\n\n\
         [[tenant.users]]\nname = \"alice\"\nextension = \"1001\"\n\n\
         [[tenant.call_permissions]]\nname = \"no-premium\"\nextensions = [\"_90[57]XXXXXX\"]\n\
         users = [\"alice\"]\n",
    )
}

/// `certificate`, `key` and `ca` in `dir`, from `pki` and `identity`.
fn write_files(dir: &TempDir, pki: &Pki, identity: &Pem) {
    std::fs::write(dir.path("sipscreen.crt"), &identity.cert).unwrap();
    std::fs::write(dir.path("sipscreen.key"), &identity.key).unwrap();
    std::fs::write(dir.path("ca.crt"), &pki.ca).unwrap();
}

const SERVER_TLS: &str =
    "certificate = \"sipscreen.crt\"\nkey = \"sipscreen.key\"\nca = \"ca.crt\"";

#[test]
fn calls_over_tls_to_a_tls_next_hop() {
    let dir = TempDir::new("tls", "calls");
    let pki = Pki::new();
    write_files(&dir, &pki, &pki.issue(&["127.0.0.1"]));
    let hop = NextHop::start(server_config(&pki, &pki.issue(&["127.0.0.1"]), false));
    let proxy = Sipscreen::start(&dir, &config(hop.addr, SERVER_TLS));
    let tls = proxy.listener("tls");

    let mut caller = connect(tls, client_config(&pki, None)).expect("handshake with sipscreen");
    let local = caller.sock.local_addr().unwrap();
    let mut buf = Vec::new();

    // Denied by the call permission: 403, over TLS.
    caller
        .write_all(invite("905123456", local, "tls-denied").as_bytes())
        .unwrap();
    let mut got = read_message(&mut caller, &mut buf).unwrap();
    if status(&got) == 100 {
        got = read_message(&mut caller, &mut buf).unwrap();
    }
    assert_eq!(status(&got), 403, "{got}");

    // Allowed: forwarded over TLS with our Via and Record-Route, answered back over TLS.
    caller
        .write_all(invite("612345678", local, "tls-allowed").as_bytes())
        .unwrap();
    let trying = read_message(&mut caller, &mut buf).unwrap();
    assert_eq!(status(&trying), 100, "{trying}");
    let forwarded = hop.next().expect("the INVITE over TLS");
    let via = header(&forwarded, "Via");
    assert!(
        via[0].starts_with(&format!("SIP/2.0/TLS {tls};branch=z9hG4bK")),
        "{forwarded}"
    );
    assert_eq!(
        header(&forwarded, "Record-Route"),
        [format!("<sip:{tls};transport=tls;lr>")],
        "{forwarded}"
    );
    let ok = read_message(&mut caller, &mut buf).unwrap();
    assert_eq!(status(&ok), 200, "{ok}");
    assert!(header(&ok, "Call-ID").contains(&"tls-allowed"), "{ok}");
    proxy.stop_ok();
}

#[test]
fn a_udp_caller_reaches_a_tls_next_hop_with_both_record_routes() {
    let dir = TempDir::new("tls", "udp-in");
    let pki = Pki::new();
    write_files(&dir, &pki, &pki.issue(&["127.0.0.1"]));
    let hop = NextHop::start(server_config(&pki, &pki.issue(&["127.0.0.1"]), false));
    let proxy = Sipscreen::start(&dir, &config(hop.addr, SERVER_TLS));
    let (udp, tls) = (proxy.udp(), proxy.listener("tls"));
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(WAIT)).unwrap();
    let local = socket.local_addr().unwrap();
    let request = invite("612345678", local, "udp-to-tls").replace("SIP/2.0/TLS", "SIP/2.0/UDP");
    socket.send_to(request.as_bytes(), udp).unwrap();
    let forwarded = hop.next().expect("the INVITE over TLS");
    assert!(header(&forwarded, "Via")[0].starts_with(&format!("SIP/2.0/TLS {tls};")));
    // Two entries: the TLS side towards the next hop, the UDP side towards the caller
    // (RFC 5658 double Record-Route).
    assert_eq!(
        header(&forwarded, "Record-Route"),
        [
            format!("<sip:{tls};transport=tls;lr>"),
            format!("<sip:{udp};lr>")
        ],
        "{forwarded}"
    );
    let mut buf = [0u8; 4096];
    let mut codes = Vec::new();
    while !codes.contains(&200) {
        let n = socket.recv(&mut buf).expect("responses over UDP");
        codes.push(status(&String::from_utf8_lossy(&buf[..n])));
    }
    proxy.stop_ok();
}

#[test]
fn a_next_hop_whose_certificate_names_another_host_is_refused_with_503() {
    let dir = TempDir::new("tls", "mismatch");
    let pki = Pki::new();
    write_files(&dir, &pki, &pki.issue(&["127.0.0.1"]));
    // Signed by the trusted CA, but for another name: the name check alone refuses it.
    let hop = NextHop::start(server_config(&pki, &pki.issue(&["pbx.example.com"]), false));
    let proxy = Sipscreen::start(&dir, &config(hop.addr, SERVER_TLS));
    let mut caller = connect(proxy.listener("tls"), client_config(&pki, None)).unwrap();
    let local = caller.sock.local_addr().unwrap();
    caller
        .write_all(invite("612345678", local, "tls-mismatch").as_bytes())
        .unwrap();
    let mut buf = Vec::new();
    let mut got = read_message(&mut caller, &mut buf).unwrap();
    if status(&got) == 100 {
        got = read_message(&mut caller, &mut buf).unwrap();
    }
    assert_eq!(status(&got), 503, "{got}");
    assert!(hop.next().is_err(), "the next hop's handshake must fail");
    proxy.wait_for_log("TLS handshake with the next hop failed", 0);
    let log = proxy.stop_ok();
    assert!(log.contains("certificate not valid for name"), "{log}");
}

#[test]
fn mutual_tls_both_ways() {
    let dir = TempDir::new("tls", "mutual");
    let pki = Pki::new();
    write_files(&dir, &pki, &pki.issue(&["127.0.0.1"]));
    let client = pki.issue(&["sipscreen.example.com"]);
    std::fs::write(dir.path("client.crt"), &client.cert).unwrap();
    std::fs::write(dir.path("client.key"), &client.key).unwrap();
    // The next hop wants a client certificate from the CA; sipscreen wants one from callers.
    let hop = NextHop::start(server_config(&pki, &pki.issue(&["127.0.0.1"]), true));
    let tls = format!(
        "{SERVER_TLS}\nclient_certificate = \"client.crt\"\nclient_key = \"client.key\"\n\
         verify_client = true"
    );
    let proxy = Sipscreen::start(&dir, &config(hop.addr, &tls));
    let listener = proxy.listener("tls");

    // Without a certificate the caller is refused: the handshake or the first read fails.
    let refused = connect(listener, client_config(&pki, None)).and_then(|mut s| {
        s.write_all(invite("612345678", listener, "no-cert").as_bytes())?;
        read_message(&mut s, &mut Vec::new())
    });
    assert!(
        refused.is_err(),
        "a caller without a certificate got {refused:?}"
    );
    proxy.wait_for_log("TLS handshake with a client failed", 0);

    // With one, the call goes through to the next hop, which accepts sipscreen's.
    let mut caller = connect(listener, client_config(&pki, Some(&client))).unwrap();
    let local = caller.sock.local_addr().unwrap();
    caller
        .write_all(invite("612345678", local, "mutual").as_bytes())
        .unwrap();
    hop.next().expect("sipscreen's client certificate accepted");
    let mut buf = Vec::new();
    let mut got = read_message(&mut caller, &mut buf).unwrap();
    if status(&got) == 100 {
        got = read_message(&mut caller, &mut buf).unwrap();
    }
    assert_eq!(status(&got), 200, "{got}");
    proxy.stop_ok();
}

/// The certificate a TLS listener shows to a new connection.
fn served_certificate(to: SocketAddr, pki: &Pki) -> Vec<u8> {
    let stream = connect(to, client_config(pki, None)).expect("handshake");
    stream.conn.peer_certificates().unwrap()[0].to_vec()
}

#[test]
fn certificates_are_read_again_on_reload_and_a_broken_one_keeps_the_old() {
    let dir = TempDir::new("tls", "reload");
    let pki = Pki::new();
    let first = pki.issue(&["127.0.0.1"]);
    write_files(&dir, &pki, &first);
    let hop = NextHop::start(server_config(&pki, &pki.issue(&["127.0.0.1"]), false));
    let proxy = Sipscreen::start(&dir, &config(hop.addr, SERVER_TLS));
    let tls = proxy.listener("tls");
    assert_eq!(served_certificate(tls, &pki), chain(&first)[0].to_vec());

    std::fs::write(dir.path("sipscreen.crt"), "not a certificate").unwrap();
    proxy.hangup();
    proxy.wait_for_log("reload refused", 0);
    assert!(proxy.log().contains("no certificate in the file"));
    assert_eq!(served_certificate(tls, &pki), chain(&first)[0].to_vec());

    let second = pki.issue(&["127.0.0.1"]);
    write_files(&dir, &pki, &second);
    proxy.hangup();
    proxy.wait_for_log("configuration reloaded", 0);
    assert_eq!(served_certificate(tls, &pki), chain(&second)[0].to_vec());
    proxy.stop_ok();
}

// ------------------------------------------------------------------------------------------
// `validate`: the `[tls]` keys.

/// The errors of a configuration in `dir`, as `file:line:col: context: message`.
fn errors(dir: &TempDir, text: &str) -> Vec<String> {
    match sipscreen::config::Config::from_toml(text, "t.toml", Some(&dir.0)) {
        Ok(_) => panic!("expected errors:\n{text}"),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

const MINIMAL: &str = "\n[brand]\nname = \"b\"\n[[tenant]]\nname = \"t\"\ncountry = \"ES\"\n";

#[test]
fn tls_settings_are_checked_with_the_file_and_the_reason() {
    let dir = TempDir::new("tls", "validate");
    let pki = Pki::new();
    let pem = pki.issue(&["127.0.0.1"]);
    let other = pki.issue(&["127.0.0.1"]);
    std::fs::write(dir.path("good.crt"), &pem.cert).unwrap();
    std::fs::write(dir.path("good.key"), &pem.key).unwrap();
    std::fs::write(dir.path("other.key"), &other.key).unwrap();
    std::fs::write(dir.path("junk.pem"), "hello").unwrap();
    let server = "[server]\nlisten = [\"tls:127.0.0.1:5061\"]\nnext_hop = \"tls:127.0.0.1:5062\"\n";

    // A tls: listener without [tls], and with [tls] but no certificate.
    assert_eq!(
        errors(&dir, &format!("{server}{MINIMAL}")),
        ["t.toml:2:11: server: `listen`: a tls: listener needs `[tls]` with `certificate` and `key`"]
    );
    assert_eq!(
        errors(
            &dir,
            &format!("{server}[tls]\nca = \"good.crt\"\n{MINIMAL}")
        ),
        ["t.toml:2:11: server: `listen`: a tls: listener needs `[tls] certificate` and `key`"]
    );

    // Files that do not load, each at its key with the file and the reason.
    let text = format!(
        "{server}[tls]\ncertificate = \"missing.crt\"\nkey = \"junk.pem\"\nca = \"junk.pem\"\n\
         client_certificate = \"good.crt\"\n{MINIMAL}"
    );
    let d = dir.0.display();
    assert_eq!(
        errors(&dir, &text),
        [
            format!("t.toml:5:15: tls: `certificate`: cannot read {d}/missing.crt: No such file or directory (os error 2)"),
            format!("t.toml:6:7: tls: `key`: {d}/junk.pem: no private key in the file: no items found"),
            format!("t.toml:7:6: tls: `ca`: {d}/junk.pem: no certificate in the file (PEM `BEGIN CERTIFICATE` expected)"),
            "t.toml:8:22: tls: `client_certificate` needs `client_key`".to_owned(),
        ]
    );

    // A key that is not the certificate's; verify_client without roots.
    let text = format!("{server}[tls]\ncertificate = \"good.crt\"\nkey = \"other.key\"\n{MINIMAL}");
    let errs = errors(&dir, &text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].starts_with("t.toml:6:7: tls: "), "{errs:?}");
    let text = format!(
        "{server}[tls]\ncertificate = \"good.crt\"\nkey = \"good.key\"\nverify_client = true\n{MINIMAL}"
    );
    let errs = errors(&dir, &text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("t.toml:4:1: tls: `verify_client = true` needs `client_ca`"),
        "{errs:?}"
    );

    // And the whole, valid.
    let text = format!(
        "{server}[tls]\ncertificate = \"good.crt\"\nkey = \"good.key\"\nca = \"good.crt\"\n\
         verify_client = true\n{MINIMAL}"
    );
    sipscreen::config::Config::from_toml(&text, "t.toml", Some(&dir.0)).expect("valid");
}
