//! `/metrics` and `/health` (SPEC §9.3) against the running binary: after a known SIPp load,
//! a known set of refused, challenged and malformed requests, the exposition (read by a real
//! parser, and accepted by `promtool check metrics`) counts exactly what was sent; the Grafana
//! dashboard's queries are valid PromQL over metrics that exist.

mod common;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use common::http::request;
use common::net::NextHop;
use common::proxy::Sipscreen;
use common::sip::{offer, status, unique};
use common::sipp::SippCommand;
use common::TempDir;
use prometheus_parse::{Scrape, Value};

const IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const ALLOWED: u64 = 40;
const DENIED: u64 = 7;
const CHALLENGED: u64 = 3;
const GARBAGE: u64 = 4;

fn config(next_hop: &str) -> String {
    format!(
        r#"[server]
listen = ["udp:127.0.0.1:0"]
next_hop = "udp:{next_hop}"

[admin]
listen = "127.0.0.1:0"

[pin]
rtp_ports = "41000-41099"

[brand]
name = "b"

[[tenant]]
name = "acme"
country = "ES"
sources = ["127.0.0.0/8"]

  [[tenant.users]]
  name = "alice"
  extension = "1001"

  [[tenant.outcalls]]
  name = "everything"
  patterns = ["_X."]

  [[tenant.call_permissions]]
  name = "no-premium"
  extensions = ["_905XXXXXX"]
  outcalls = ["everything"]

  [[tenant.call_permissions]]
  name = "pin-international"
  extensions = ["_00X."]
  password = "2468"
  outcalls = ["everything"]
"#
    )
}

/// The value of the series `name` with exactly `labels` (among others); 0 when absent.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(h) => h.last().map_or(0.0, |b| b.count),
            Value::Summary(_) => 0.0,
        })
        .sum()
}

/// A challenged call the caller gives up: INVITE with an offer, 183 (the PIN prompt), then
/// CANCEL → 487, acknowledged.
fn challenged_then_cancelled(proxy: std::net::SocketAddr) {
    let phone = UdpSocket::bind((IP, 0)).expect("bind");
    phone
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let port = phone.local_addr().expect("addr").port();
    let (call_id, branch) = (unique("pin"), unique("z9hG4bK"));
    let rtp = UdpSocket::bind((IP, 0)).expect("rtp");
    let body = offer(rtp.local_addr().expect("rtp addr"));
    let head = |method: &str, cseq: &str| {
        format!(
            "{method} sip:0033612345678@{proxy} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch={branch}\r\n\
             From: <sip:1001@127.0.0.1>;tag=m1\r\nTo: <sip:0033612345678@127.0.0.1>\r\nCall-ID: {call_id}\r\n\
             CSeq: {cseq}\r\nMax-Forwards: 70\r\n"
        )
    };
    let invite = format!(
        "{}Contact: <sip:1001@127.0.0.1:{port}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        head("INVITE", "1 INVITE"),
        body.len()
    );
    phone.send_to(invite.as_bytes(), proxy).expect("send");
    let mut buf = [0u8; 8192];
    let mut got = |wanted: u16| loop {
        let n = phone.recv(&mut buf).expect("an answer in time");
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if status(&text) == wanted {
            return text;
        }
    };
    let progress = got(183);
    assert!(progress.contains("m=audio"), "{progress}");
    let cancel = format!("{}Content-Length: 0\r\n\r\n", head("CANCEL", "1 CANCEL"));
    phone.send_to(cancel.as_bytes(), proxy).expect("cancel");
    let terminated = got(487);
    let to = terminated
        .split("\r\n")
        .find(|l| l.starts_with("To:"))
        .expect("a To");
    let ack = head("ACK", "1 ACK").replace(
        "To: <sip:0033612345678@127.0.0.1>\r\n",
        &format!("{to}\r\n"),
    );
    phone
        .send_to(format!("{ack}Content-Length: 0\r\n\r\n").as_bytes(), proxy)
        .expect("ack");
}

#[test]
fn metrics_count_what_was_sent() {
    let dir = TempDir::new("metrics_e2e", "counts");
    let hop = NextHop::udp(IP);
    let proxy = Sipscreen::start(&dir, &config(&hop.addr().to_string()));
    let admin = proxy.admin();
    let health = request(admin, "GET", "/health", &[], None);
    assert_eq!(health.status, 200, "{}", health.body);

    let uas = SippCommand::new("pbx", IP)
        .args(["-sf", &common::scenario("admin", "uas.xml")])
        .args(["-t", "u1", "-m", &ALLOWED.to_string()])
        // An INVITE retransmitted by sipscreen on a busy machine is ignored, not fatal.
        .args(["-default_behaviors", "all,-abortunexp"])
        .port(hop.lend())
        .timeout(Duration::from_secs(60))
        .spawn(&dir);
    let allowed = SippCommand::new("allowed", IP)
        .args(["-sf", &common::scenario("admin", "call_uac.xml")])
        .args([proxy.udp().to_string()])
        .args(["-t", "u1", "-s", "600000001", "-set", "caller", "1001"])
        .args(["-r", "20", "-m", &ALLOWED.to_string()])
        .trace_counts(true)
        .timeout(Duration::from_secs(60))
        .run(&dir, Duration::from_secs(60));
    allowed.assert_calls(ALLOWED);
    uas.finish(Duration::from_secs(20)).assert_success();
    let denied = SippCommand::new("denied", IP)
        .args(["-sf", &common::scenario("admin", "denied_uac.xml")])
        .args([proxy.udp().to_string()])
        .args(["-t", "u1", "-s", "905123456", "-set", "caller", "1001"])
        .args(["-r", "10", "-m", &DENIED.to_string()])
        .timeout(Duration::from_secs(60))
        .run(&dir, Duration::from_secs(60));
    denied.assert_calls(DENIED);
    for _ in 0..CHALLENGED {
        challenged_then_cancelled(proxy.udp());
    }
    let garbage = UdpSocket::bind((IP, 0)).expect("bind");
    for _ in 0..GARBAGE {
        garbage
            .send_to(b"this is not SIP\r\n\r\n", proxy.udp())
            .expect("send");
    }
    std::thread::sleep(Duration::from_millis(300));

    let text = request(admin, "GET", "/metrics", &[], None).body;
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("a valid exposition");
    let decisions = |decision: &str, stage: &str| {
        value(
            &scrape,
            "sipscreen_decisions_total",
            &[
                ("tenant", "acme"),
                ("call", "external"),
                ("decision", decision),
                ("stage", stage),
            ],
        )
    };
    assert_eq!(decisions("allow", "none"), ALLOWED as f64, "{text}");
    assert_eq!(decisions("deny", "call_permission"), DENIED as f64);
    assert_eq!(decisions("challenge", "call_permission"), CHALLENGED as f64);
    let count = value(&scrape, "sipscreen_decision_duration_seconds", &[]);
    assert_eq!(count, (ALLOWED + DENIED + CHALLENGED) as f64);
    // Requests: what SIPp and the test sent, SIPp's retransmissions included.
    let requests = |method: &str| {
        value(
            &scrape,
            "sipscreen_sip_requests_total",
            &[("method", method), ("transport", "udp")],
        )
    };
    let retransmitted = allowed.stat("Retransmissions(C)") + denied.stat("Retransmissions(C)");
    assert_eq!(
        requests("INVITE") + requests("BYE"),
        (2 * ALLOWED + DENIED + CHALLENGED + retransmitted) as f64,
        "{text}"
    );
    assert_eq!(requests("CANCEL"), CHALLENGED as f64);
    assert_eq!(requests("ACK"), (ALLOWED + DENIED + CHALLENGED) as f64);
    assert_eq!(
        value(
            &scrape,
            "sipscreen_refusals_total",
            &[("reason", "malformed")]
        ),
        GARBAGE as f64
    );
    assert_eq!(
        value(
            &scrape,
            "sipscreen_pin_outcomes_total",
            &[("outcome", "abandoned")]
        ),
        CHALLENGED as f64
    );
    assert!(
        value(
            &scrape,
            "sipscreen_sip_responses_total",
            &[("class", "2xx")]
        ) >= (2 * ALLOWED) as f64
    );
    assert_eq!(
        value(&scrape, "sipscreen_dialogs", &[]),
        0.0,
        "every call ended"
    );
    assert!(value(&scrape, "process_resident_memory_bytes", &[]) > 1e6);
    assert!(value(&scrape, "process_open_fds", &[]) > 3.0);

    // promtool (Debian package prometheus) accepts the exposition.
    let check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(text.as_bytes())?;
            child.wait_with_output()
        })
        .expect("promtool is installed (Debian package prometheus; scripts/test installs it)");
    assert!(
        check.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    dashboard_queries_are_valid(&dir, &scrape);
    let log = proxy.stop_ok();
    assert!(!log.contains("panicked"), "{log}");
}

/// Every query of the Grafana dashboard parses as PromQL (`promtool check rules` on them as
/// recording rules) and names only metrics the exposition has.
fn dashboard_queries_are_valid(dir: &TempDir, scrape: &Scrape) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/grafana/sipscreen-dashboard.json"
    );
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("read the dashboard"))
            .expect("the dashboard is JSON");
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_owned))
        .collect();
    assert!(exprs.len() >= 8, "{exprs:?}");
    let known: HashMap<&str, ()> = scrape
        .samples
        .iter()
        .map(|s| (s.metric.as_str(), ()))
        .collect();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        // Grafana's variables, as Grafana would fill them in.
        let e = e
            .replace("$__rate_interval", "1m")
            .replace("$job", ".*")
            .replace("$instance", ".*")
            .replace("$tenant", ".*");
        for word in e.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("sipscreen_") || word.starts_with("process_") {
                let family = word.strip_suffix("_bucket").unwrap_or(word);
                assert!(
                    known.contains_key(family),
                    "the dashboard queries {word}, which /metrics does not have"
                );
            }
        }
        rules.push_str(&format!(
            "      - record: dashboard:query{i}\n        expr: '{}'\n",
            e.replace('\'', "''")
        ));
    }
    let file = dir.path("dashboard-rules.yml");
    std::fs::write(&file, rules).expect("write the rules");
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool check rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
