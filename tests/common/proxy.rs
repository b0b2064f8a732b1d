//! `sipscreen run` as a test's proxy: started on a configuration whose `listen` addresses
//! have port 0, so that the system chooses its ports, which are read back from the INFO line
//! it logs for every bound listener (`listening listen=udp:127.0.0.1:34449`, or its JSON
//! object with `--log-format json`).

use super::process::Proc;
use super::{read_lossy, tail, TempDir};
use std::fs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long sipscreen may take to bind its listeners.
const START: Duration = Duration::from_secs(15);
/// How long it may take to drain and exit after SIGTERM (SPEC §5).
const STOP: Duration = Duration::from_secs(10);

pub struct Sipscreen {
    proc: Proc,
    log: PathBuf,
    /// What it bound, in `listen` order: (`udp` or `tcp`, address).
    listeners: Vec<(String, SocketAddr)>,
    /// The admin API's address, when the configuration has `[admin]`.
    admin: Option<SocketAddr>,
}

impl Sipscreen {
    /// Writes `config` to the test directory, starts `sipscreen run` on it with its stderr in
    /// `sipscreen.log`, and waits until it has logged every listener of `server.listen`
    /// (and the admin API's, when there is an `[admin]`).
    pub fn start(dir: &TempDir, config: &str) -> Sipscreen {
        Sipscreen::start_with(dir, config, &[], &[])
    }

    /// [`Sipscreen::start`] with `args` after `run --config PATH` and `env` set (`RUST_LOG`
    /// is `info` unless `env` says otherwise). The test's own `NOTIFY_SOCKET`, if it runs
    /// under systemd, is never passed on.
    pub fn start_with(
        dir: &TempDir,
        config: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Sipscreen {
        let path = dir.path("sipscreen.toml");
        fs::write(&path, config).expect("write the configuration");
        Self::start_on_with(dir, &path, args, env)
    }

    /// Starts `sipscreen run` on the configuration file already at `path`.
    pub fn start_on(dir: &TempDir, path: &std::path::Path) -> Sipscreen {
        Self::start_on_with(dir, path, &[], &[])
    }

    fn start_on_with(
        dir: &TempDir,
        path: &std::path::Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Sipscreen {
        let config = fs::read_to_string(path).expect("read the configuration");
        let wanted = listen_entries(&config);
        let wants_admin = config.lines().any(|l| l.trim() == "[admin]");
        let log = dir.path("sipscreen.log");
        let proc = Proc::spawn(
            "sipscreen",
            Command::new(env!("CARGO_BIN_EXE_sipscreen"))
                .arg("run")
                .arg("--config")
                .arg(path)
                .args(args)
                .env("RUST_LOG", "info")
                .env_remove("NOTIFY_SOCKET")
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(fs::File::create(&log).expect("create the proxy's log")),
        );
        let mut proxy = Sipscreen {
            proc,
            log,
            listeners: Vec::new(),
            admin: None,
        };
        let deadline = Instant::now() + START;
        loop {
            let log = read_lossy(&proxy.log);
            proxy.listeners = listening(&log);
            proxy.admin = admin_listening(&log);
            if proxy.listeners.len() >= wanted && (proxy.admin.is_some() || !wants_admin) {
                return proxy;
            }
            if let Some(status) = proxy.proc.exited() {
                panic!(
                    "sipscreen exited before it was ready ({status}):\n{}",
                    proxy.log_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "sipscreen did not log its {wanted} listener(s) within {START:?}:\n{}",
                proxy.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The address of its first listener over `transport` (`udp` or `tcp`).
    pub fn listener(&self, transport: &str) -> SocketAddr {
        self.listeners
            .iter()
            .find(|(t, _)| t == transport)
            .map(|(_, addr)| *addr)
            .unwrap_or_else(|| panic!("sipscreen has no {transport} listener"))
    }

    /// The admin API's address.
    pub fn admin(&self) -> SocketAddr {
        self.admin.expect("sipscreen has no admin listener")
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Its exit status once it has exited (without waiting): `None` while it runs.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.proc.exited()
    }

    /// Its UDP address: the one peers send to unless a test says otherwise.
    pub fn udp(&self) -> SocketAddr {
        self.listener("udp")
    }

    /// Sends it SIGHUP (reload, SPEC §9.1), by PID.
    pub fn hangup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.proc.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -HUP failed");
    }

    /// Waits (at most 10 s) until its log holds `text` more than `before` times; panics
    /// with the log's tail otherwise.
    pub fn wait_for_log(&self, text: &str, before: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.log().matches(text).count() <= before {
            assert!(
                Instant::now() < deadline,
                "`{text}` did not appear in the log:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        read_lossy(&self.log)
    }

    /// The end of its log, for failure messages.
    pub fn log_tail(&self) -> String {
        tail(&self.log, 4000)
    }

    /// SIGTERM, then the exit status (it drains, SPEC §5); a failure, after SIGKILL, when it
    /// does not exit within 10 s.
    pub fn stop(mut self) -> ExitStatus {
        match self.proc.stop(STOP) {
            Some(status) => status,
            None => panic!(
                "sipscreen did not exit within {STOP:?} of SIGTERM:\n{}",
                self.log_tail()
            ),
        }
    }

    /// Stops it and asserts it exited 0; its whole log.
    pub fn stop_ok(self) -> String {
        let log = self.log.clone();
        let status = self.stop();
        assert!(
            status.success(),
            "sipscreen must exit 0 on SIGTERM, got {status}:\n{}",
            tail(&log, 4000)
        );
        read_lossy(&log)
    }
}

/// How many addresses the configuration's `server.listen` has.
fn listen_entries(config: &str) -> usize {
    let table: toml::Table = config
        .parse()
        .unwrap_or_else(|e| panic!("the test's configuration is not TOML: {e}\n{config}"));
    table
        .get("server")
        .and_then(|s| s.get("listen"))
        .and_then(|l| l.as_array())
        .map_or(0, Vec::len)
}

/// The admin API's address, from `admin API listening admin=127.0.0.1:34565` (or the same
/// event as a JSON line).
fn admin_listening(log: &str) -> Option<SocketAddr> {
    log.lines()
        .filter(|l| l.contains("admin API listening"))
        .find_map(|l| {
            if l.starts_with('{') {
                let event: serde_json::Value = serde_json::from_str(l).ok()?;
                return event.get("admin")?.as_str()?.parse().ok();
            }
            l.split_once(" admin=")?
                .1
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
}

/// The listeners a log names, in order: `... INFO sipscreen: listening listen=udp:IP:PORT`,
/// or `{..."message":"listening","listen":"udp:IP:PORT"...}`.
fn listening(log: &str) -> Vec<(String, SocketAddr)> {
    log.lines()
        .filter_map(|line| {
            if line.starts_with('{') {
                let event: serde_json::Value = serde_json::from_str(line).ok()?;
                if event["message"] != "listening" {
                    return None;
                }
                return event["listen"].as_str().map(str::to_owned);
            }
            let listen = line.split_once(" listening listen=")?.1;
            listen.split_whitespace().next().map(str::to_owned)
        })
        .filter_map(|target| {
            let (transport, addr) = target.split_once(':')?;
            Some((transport.to_owned(), addr.parse().ok()?))
        })
        .collect()
}
