//! End to end: a next hop by name (SPEC §5.2). The test runs a DNS server of its own on
//! loopback (dnsmasq, Debian package `dnsmasq`, stopped by PID) serving two SRV records of
//! `_sip._udp.trunk.test`, priority 1 and 2, each a SIPp UAS; sipscreen's next hop is
//! `sip:trunk.test` and `[server] dns` points at that server.
//!
//! Calls go to the priority-1 target. Once it is gone, the first call waits for Timer B
//! (32 s over UDP) and goes to the other target; the target is marked down (`down_after =
//! 1`), so the next calls go straight to the other. Once it is back, the next OPTIONS probe
//! (`probe_interval_s = 1`) finds it and calls go to it again.
//!
//! A second test checks the other ways RFC 3263 locates a name: a NAPTR record pointing at
//! TCP SRV records, an explicit port (address records only), and a name that does not
//! resolve (logged).

mod common;
use common::net::{free_port, udp_bound, NextHop};
use common::process::Proc;
use common::proxy::Sipscreen;
use common::sipp::{Sipp, SippCommand, SippRun};
use common::TempDir;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// dnsmasq on `port`, answering for `trunk.test` only: the two SRV targets, at one
/// address.
fn dns_server(dir: &TempDir, port: u16, first: u16, second: u16) -> Proc {
    dns_server_with(
        dir,
        port,
        &[
            format!("--srv-host=_sip._udp.trunk.test,uas.trunk.test,{first},1,10"),
            format!("--srv-host=_sip._udp.trunk.test,uas.trunk.test,{second},2,10"),
        ],
    )
}

/// dnsmasq on `port`, answering for `trunk.test` only, with `uas.trunk.test` at 127.0.0.1
/// and the `records` given.
fn dns_server_with(dir: &TempDir, port: u16, records: &[String]) -> Proc {
    let log = std::fs::File::create(dir.path("dnsmasq.log")).expect("create dnsmasq's log");
    let mut cmd = Command::new("dnsmasq");
    cmd.args([
        "--no-daemon".to_owned(),
        format!("--port={port}"),
        "--listen-address=127.0.0.1".to_owned(),
        "--bind-interfaces".to_owned(),
        "--no-resolv".to_owned(),
        "--no-hosts".to_owned(),
        "--conf-file=/dev/null".to_owned(),
        // Names of trunk.test it has no record of are answered, never sent upstream.
        "--local=/trunk.test/".to_owned(),
        "--host-record=uas.trunk.test,127.0.0.1".to_owned(),
        "--log-queries".to_owned(),
    ])
    .args(records)
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(log);
    let mut proc = Proc::spawn("dnsmasq", &mut cmd);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !udp_bound(LOCAL, port) {
        assert!(
            proc.exited().is_none(),
            "dnsmasq exited:\n{}",
            common::read_lossy(&dir.path("dnsmasq.log"))
        );
        assert!(Instant::now() < deadline, "dnsmasq did not bind {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
    proc
}

fn config(dns: u16) -> String {
    format!(
        r#"[server]
listen = ["udp:{LOCAL}:0"]
next_hop = "sip:trunk.test"
dns = ["127.0.0.1:{dns}"]
probe_interval_s = 1
down_after = 1

[brand]
name = "dns-tests"

[[tenant]]
name = "acme"
country = "ES"
sources = ["127.0.0.1/32"]
"#
    )
}

/// A SIPp UAS at `port` that answers OPTIONS itself (`-aa`), for `calls` calls (unbounded
/// when `None`: then it is stopped by PID when dropped).
fn callee(dir: &TempDir, name: &str, port: u16, calls: Option<u32>) -> Sipp {
    let mut uas = SippCommand::new(name, LOCAL)
        .args(["-sn", "uas", "-t", "u1", "-aa"])
        .port(port)
        .timeout(Duration::from_secs(120));
    if let Some(n) = calls {
        uas = uas.args(["-m", &n.to_string()]);
    }
    uas.spawn(dir)
}

/// `calls` calls through sipscreen, one at a time, to their end within `limit`.
fn calls(dir: &TempDir, name: &str, proxy: SocketAddr, calls: u32, limit: Duration) -> SippRun {
    let run = SippCommand::new(name, LOCAL)
        .args([
            "-sn",
            "uac",
            &proxy.to_string(),
            "-t",
            "u1",
            "-s",
            "600000001",
        ])
        .args(["-m", &calls.to_string(), "-l", "1"])
        // A call may wait for Timer B (32 s) before it fails over.
        .recv_timeout(Duration::from_secs(45))
        .timeout(limit)
        .run(dir, limit + Duration::from_secs(5));
    run.assert_calls(u64::from(calls));
    run
}

#[test]
fn calls_follow_srv_priority_fail_over_and_come_back() {
    if Command::new("dnsmasq").arg("--version").output().is_err() {
        panic!("dnsmasq is needed (Debian package dnsmasq; scripts/test installs it)");
    }
    let dir = TempDir::new("dns", "failover");
    let (first, second) = (NextHop::udp(LOCAL), NextHop::udp(LOCAL));
    let dns_port = free_port(LOCAL);
    let _dns = dns_server(&dir, dns_port, first.addr().port(), second.addr().port());
    let proxy = Sipscreen::start(&dir, &config(dns_port));
    proxy.wait_for_log("next hop located", 0);
    let failed_over = "trying the next one";

    // Both targets up: calls go to priority 1.
    let (first_port, second_port) = (first.lend(), second.lend());
    let uas1 = callee(&dir, "uas1", first_port, Some(2));
    let uas2 = callee(&dir, "uas2", second_port, Some(3));
    calls(&dir, "uac1", proxy.udp(), 2, Duration::from_secs(10));
    uas1.finish(Duration::from_secs(10)).assert_calls(2);
    assert_eq!(proxy.log().matches(failed_over).count(), 0);

    // The priority-1 target is gone: the first call waits for Timer B and goes to the other
    // target; it is marked down, and the next calls go straight to the other.
    let started = Instant::now();
    calls(&dir, "uac2", proxy.udp(), 3, Duration::from_secs(60));
    assert_eq!(
        proxy.log().matches(failed_over).count(),
        1,
        "one retry, for the first call only:\n{}",
        proxy.log_tail()
    );
    assert!(proxy.log().contains("next hop target marked down"));
    uas2.finish(Duration::from_secs(10)).assert_calls(3);
    eprintln!("failover phase: {:?}", started.elapsed());

    // The priority-1 target is back: a probe finds it, and calls go to it again (the other
    // target is gone now, so a call sent there would wait for Timer B and fail over).
    let _uas1 = callee(&dir, "uas1-again", first_port, None);
    proxy.wait_for_log("next hop target answers again", 0);
    calls(&dir, "uac3", proxy.udp(), 2, Duration::from_secs(10));
    assert_eq!(proxy.log().matches(failed_over).count(), 1);
    proxy.stop_ok();
}

#[test]
fn naptr_and_address_records_are_followed() {
    if Command::new("dnsmasq").arg("--version").output().is_err() {
        panic!("dnsmasq is needed (Debian package dnsmasq; scripts/test installs it)");
    }
    let dir = TempDir::new("dns", "naptr");
    let dns_port = free_port(LOCAL);
    // NAPTR of trunk.test says SIP over TCP at _sip._tcp.trunk.test (RFC 3263 §4.1), whose
    // SRV names port 5070; the UDP SRV record is not used when NAPTR points elsewhere.
    let _dns = dns_server_with(
        &dir,
        dns_port,
        &[
            "--naptr-record=trunk.test,10,10,S,SIP+D2T,,_sip._tcp.trunk.test".to_owned(),
            "--srv-host=_sip._tcp.trunk.test,uas.trunk.test,5070,1,10".to_owned(),
            "--srv-host=_sip._udp.trunk.test,uas.trunk.test,5071,1,10".to_owned(),
        ],
    );
    let text = config(dns_port).replace(
        "next_hop = \"sip:trunk.test\"",
        "next_hop = [\"sip:trunk.test\", \"udp:uas.trunk.test:5072\", \"sip:nowhere.trunk.test\"]",
    );
    let proxy = Sipscreen::start(&dir, &text);
    proxy.wait_for_log("targets=\"tcp:127.0.0.1:5070\"", 0);
    proxy.wait_for_log("targets=\"udp:127.0.0.1:5072\"", 0);
    proxy.wait_for_log("next hop does not resolve", 0);
    let log = proxy.stop_ok();
    assert!(!log.contains("127.0.0.1:5071"), "{log}");
    assert!(log.contains("next_hop=sip:nowhere.trunk.test"), "{log}");
}
