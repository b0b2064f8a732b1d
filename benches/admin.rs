//! How long a rule change takes to decide calls, on the 10,000-user / 10,000-permission
//! tenant of `benches/decide.rs`, with the release binary on loopback:
//!
//! - a `PUT` association through the admin API: from sending it to its answer (the change is
//!   then in force), and to the 403 of the first call it decides;
//! - `POST /1.1/reload` (re-read, check, swap);
//! - and, as the reference in the same run, what a restart costs: from `sipscreen run` to
//!   its listeners being up.
//!
//! Run: `cargo bench --bench admin` (prints a table; asserts only that each change decided
//! the call it should have).

#[path = "../tests/common/http.rs"]
#[allow(dead_code)]
mod http;
#[path = "../tests/common/invite.rs"]
mod invite;

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{generate, USERS};

const PERMISSIONS: usize = 10_000;
const ROUNDS: usize = 5;

/// sipscreen on the generated configuration, stopped (by PID) when dropped.
struct Proxy {
    child: Child,
    log: std::path::PathBuf,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts sipscreen; its SIP and admin addresses and how long it took to listen.
fn start(
    path: &std::path::Path,
    dir: &std::path::Path,
) -> (Proxy, SocketAddr, SocketAddr, Duration) {
    let log = dir.join("sipscreen.log");
    let t0 = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_sipscreen"))
        .args(["run", "--config"])
        .arg(path)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("start sipscreen");
    let proxy = Proxy { child, log };
    loop {
        let text = std::fs::read_to_string(&proxy.log).unwrap_or_default();
        let find = |marker: &str| {
            text.lines().find_map(|l| {
                l.split_once(marker)?
                    .1
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
        };
        if let (Some(sip), Some(admin)) = (find("listen=udp:"), find(" admin=")) {
            return (proxy, sip, admin, t0.elapsed());
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "sipscreen did not start:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let dir = std::env::temp_dir().join(format!("sipscreen-bench-admin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("work directory");
    // The next hop: a socket nobody answers on (the measured calls are all refused).
    let hop = UdpSocket::bind("127.0.0.1:0").expect("next hop");
    let server = format!(
        "[server]\nlisten = [\"udp:127.0.0.1:0\"]\nnext_hop = \"udp:{}\"\n[admin]\nlisten = \"127.0.0.1:0\"\n",
        hop.local_addr().expect("addr")
    );
    let path = dir.join("sipscreen.toml");
    let text = generate(&server, PERMISSIONS);
    std::fs::write(&path, &text).expect("write the configuration");

    let mut restarts = Vec::new();
    for _ in 0..ROUNDS {
        let (proxy, _, _, took) = start(&path, &dir);
        restarts.push(took);
        drop(proxy);
    }
    let (proxy, sip, admin, _) = start(&path, &dir);
    let json = [("Content-Type", "application/json")];

    let mut reloads = Vec::new();
    for _ in 0..ROUNDS {
        let t0 = Instant::now();
        let r = http::request(admin, "POST", "/1.1/reload", &[], None);
        reloads.push(t0.elapsed());
        assert_eq!(r.status, 204, "{}", r.body);
    }

    // A permission that refuses one number, given to one user after another.
    let dialed = "699999999";
    let r = http::request(
        admin,
        "POST",
        "/1.1/callpermissions",
        &json,
        Some(&format!(
            r#"{{"name": "bench-deny", "extensions": ["{dialed}"]}}"#
        )),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let caller = UdpSocket::bind("127.0.0.1:0").expect("caller");
    let (mut answers, mut decided) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        // A user whose call to the number is not refused before the change.
        let user = (0..USERS)
            .map(|u| (u * 997 + round * 31) % USERS)
            .find(|u| {
                let check = http::request(
                    admin,
                    "GET",
                    &format!("/1.1/check?from={}&to={dialed}", 10_000 + u),
                    &[],
                    None,
                );
                !check.body.contains("\"decision\":\"deny\"")
            })
            .expect("a user allowed to call the number");
        let t0 = Instant::now();
        let r = http::request(
            admin,
            "PUT",
            &format!("/1.1/users/u{user}/callpermissions/bench-deny"),
            &[],
            None,
        );
        answers.push(t0.elapsed());
        assert_eq!(r.status, 204, "{}", r.body);
        let codes = invite::invite(
            &caller,
            sip,
            &format!("bench-{round}"),
            &(10_000 + user).to_string(),
            dialed,
        );
        decided.push(t0.elapsed());
        assert_eq!(
            codes.last(),
            Some(&403),
            "the first call after the change: {codes:?}"
        );
    }
    drop(proxy);

    println!(
        "admin API on {USERS} users and {PERMISSIONS} call permissions ({} KiB file), median of {ROUNDS}:",
        text.len() / 1024
    );
    println!("| what | time |");
    println!("|---|---|");
    println!(
        "| PUT association, sent → answered (in force) | {} |",
        ms(median(answers))
    );
    println!(
        "| PUT association, sent → 403 of the first call it decides | {} |",
        ms(median(decided))
    );
    println!("| POST /1.1/reload | {} |", ms(median(reloads)));
    println!(
        "| restart, for reference: `sipscreen run` → listening | {} |",
        ms(median(restarts))
    );
    let _ = std::fs::remove_dir_all(&dir);
}
