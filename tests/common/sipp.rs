//! SIPp as a test's caller or callee: started in the foreground as the test's child (never
//! `-bg`), bounded in time, with its statistics, screen, errors and (optionally) messages in
//! the test directory; and what a finished run left there.

use super::net::{free_port, free_ports, ports_of};
use super::process::Proc;
use super::{read_lossy, tail, TempDir};
use std::collections::HashMap;
use std::fs;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How many times SIPp is started when it finds a port taken (see [`SippCommand::spawn`]).
const START_TRIES: u32 = 10;
/// What SIPp says (then exits 254) when a port it was given is taken.
const BIND_ERROR: &str = "Unable to bind";
/// How long SIPp may take to bind its ports.
const BIND: Duration = Duration::from_secs(10);

/// The `sipp` executable on PATH; a loud failure (never a skip) when it is missing.
fn executable() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("sipp"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "SIPp (`sipp`) is not on PATH: these end-to-end tests need it. Run scripts/test, \
             which installs it (Debian package `sip-tester`), or `apt-get install sip-tester`."
        )
    })
}

/// A SIPp run to start: the suite's arguments (scenario, remote address, `-s`, `-m`, keys,
/// ...), to which [`SippCommand::spawn`] adds its addresses and the options every run gets.
pub struct SippCommand {
    name: String,
    ip: IpAddr,
    args: Vec<String>,
    /// Its SIP port when that is fixed (a next hop sipscreen's configuration names).
    port: Option<u16>,
    trace_msg: bool,
    trace_counts: bool,
    timeout: Duration,
    recv_timeout: Duration,
}

impl SippCommand {
    /// SIPp on `ip`, named `name` (its files in the test directory start with it).
    pub fn new(name: &str, ip: IpAddr) -> SippCommand {
        SippCommand {
            name: name.to_owned(),
            ip,
            args: Vec::new(),
            port: None,
            trace_msg: false,
            trace_counts: false,
            timeout: Duration::from_secs(20),
            recv_timeout: Duration::from_secs(10),
        }
    }

    pub fn args<I, S>(mut self, args: I) -> SippCommand
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Its SIP port (`-p`) is this one; otherwise a free one.
    pub fn port(mut self, port: u16) -> SippCommand {
        self.port = Some(port);
        self
    }

    /// Whether its messages go to `{name}_messages.log` (`-trace_msg`), read by
    /// [`SippRun::messages`]; not unless set.
    pub fn trace_msg(mut self, on: bool) -> SippCommand {
        self.trace_msg = on;
        self
    }

    /// Whether it counts each message of its scenario (`-trace_counts`), read by
    /// [`SippRun::counts`]; not unless set.
    pub fn trace_counts(mut self, on: bool) -> SippCommand {
        self.trace_counts = on;
        self
    }

    /// SIPp's own time limit (`-timeout`, an error when reached); 20 s unless set.
    pub fn timeout(mut self, limit: Duration) -> SippCommand {
        self.timeout = limit;
        self
    }

    /// How long it waits for an expected message before giving the call up
    /// (`-recv_timeout`); 10 s unless set.
    pub fn recv_timeout(mut self, limit: Duration) -> SippCommand {
        self.recv_timeout = limit;
        self
    }

    /// Starts SIPp and waits until it has bound its SIP and media ports (so that nothing
    /// reaches a callee before it listens), or has already ended.
    ///
    /// SIPp must be given its port numbers, chosen free a moment before (see [`super::net`]):
    /// when one was taken by someone else in that moment, SIPp exits at once ("Unable to bind
    /// ..."), and is started again, on other free ports, or on the same fixed port once
    /// whoever took it lets it go (bounded).
    pub fn spawn(self, dir: &TempDir) -> Sipp {
        for _ in 1..START_TRIES {
            if let Some(sipp) = self.try_spawn(dir) {
                return sipp;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.try_spawn(dir).unwrap_or_else(|| {
            let out = read_lossy(&dir.path(&format!("{}.out", self.name)));
            let errors: Vec<&str> = out.lines().filter(|l| l.contains(BIND_ERROR)).collect();
            panic!(
                "{} could not bind its ports in {START_TRIES} starts; the last said:\n{}",
                self.name,
                errors.join("\n")
            )
        })
    }

    /// Starts SIPp and runs it to its end (at most `limit`).
    pub fn run(self, dir: &TempDir, limit: Duration) -> SippRun {
        self.spawn(dir).finish(limit)
    }

    /// One start: `None` when SIPp could not bind a port.
    fn try_spawn(&self, dir: &TempDir) -> Option<Sipp> {
        let name = &self.name;
        let port = self.port.unwrap_or_else(|| free_port(self.ip));
        // Audio and video media ports (+2), each with its RTCP port: our own, so that
        // parallel SIPps do not all scan from 6000. Its control port is left to SIPp: it
        // tries 8888 to 8897 and only warns when all are taken.
        let media = free_ports(self.ip, 4);
        let (ip, timeout) = (self.ip.to_string(), format!("{}s", self.timeout.as_secs()));
        let recv_timeout = self.recv_timeout.as_millis().to_string();
        let mut args = self.args.clone();
        args.extend(
            [
                "-i",
                &ip,
                "-p",
                &port.to_string(),
                "-mi",
                &ip,
                "-mp",
                &media.to_string(),
                "-nostdin",
                "-timeout",
                &timeout,
                "-timeout_error",
                "-recv_timeout",
                &recv_timeout,
                "-trace_stat",
                "-stf",
                &dir.file(&format!("{name}.csv")),
                "-trace_screen",
                "-screen_file",
                &dir.file(&format!("{name}_screen.log")),
                "-trace_err",
                "-error_file",
                &dir.file(&format!("{name}_errors.log")),
            ]
            .map(str::to_owned),
        );
        if self.trace_msg {
            args.extend([
                "-trace_msg".to_owned(),
                "-message_file".to_owned(),
                dir.file(&format!("{name}_messages.log")),
            ]);
        }
        if self.trace_counts {
            args.push("-trace_counts".to_owned());
        }
        let out_path = dir.path(&format!("{name}.out"));
        let out = fs::File::create(&out_path).expect("SIPp output file");
        let err = out.try_clone().expect("SIPp output file");
        let mut proc = Proc::spawn(
            name,
            Command::new(executable())
                .args(&args)
                .current_dir(&dir.0)
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err),
        );
        let deadline = Instant::now() + BIND;
        loop {
            let bound = ports_of(proc.pid());
            if [port, media, media + 2].iter().all(|p| bound.contains(p)) {
                break;
            }
            if let Some(status) = proc.exited() {
                if status.code() == Some(254) && read_lossy(&out_path).contains(BIND_ERROR) {
                    return None;
                }
                break; // It ran (a short call can end before it is seen bound).
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not bind ports {port} and {media} within {BIND:?}:\n{}",
                tail(&out_path, 3000)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Some(Sipp {
            proc,
            name: name.clone(),
            dir: dir.0.clone(),
        })
    }
}

/// A running SIPp.
pub struct Sipp {
    proc: Proc,
    name: String,
    dir: PathBuf,
}

impl Sipp {
    pub fn running(&mut self) -> bool {
        self.proc.exited().is_none()
    }

    /// Waits at most `limit` for SIPp to end by itself; a failure (after stopping it) when
    /// it does not.
    pub fn finish(mut self, limit: Duration) -> SippRun {
        let Some(status) = self.proc.wait(limit) else {
            self.proc.stop(Duration::from_secs(2));
            panic!(
                "{} did not finish within {limit:?}:\n{}",
                self.name,
                tail(&self.dir.join(format!("{}_screen.log", self.name)), 3000)
            );
        };
        SippRun {
            status,
            pid: self.proc.pid(),
            name: self.name.clone(),
            dir: self.dir.clone(),
        }
    }
}

/// What a finished SIPp run left behind.
pub struct SippRun {
    pub status: ExitStatus,
    /// Its process id (SIPp names its `-trace_counts` file with it).
    pid: u32,
    name: String,
    dir: PathBuf,
}

impl SippRun {
    fn file(&self, suffix: &str) -> PathBuf {
        self.dir.join(format!("{}{suffix}", self.name))
    }

    /// What to show when an assertion on this run fails.
    pub fn describe(&self) -> String {
        format!(
            "{} exited {}\n--- messages ---\n{}--- screen ---\n{}\n--- errors ---\n{}\n--- output ---\n{}",
            self.name,
            self.status,
            summary(&self.messages()),
            tail(&self.file("_screen.log"), 3000),
            tail(&self.file("_errors.log"), 3000),
            tail(&self.file(".out"), 1500),
        )
    }

    /// SIPp exits 0 only when every call went as the scenario says.
    pub fn assert_success(&self) {
        assert_eq!(self.status.code(), Some(0), "{}", self.describe());
    }

    /// The last line of the `-trace_stat` CSV, by column name.
    pub fn stats(&self) -> HashMap<String, String> {
        last_csv_line(&read_lossy(&self.file(".csv")))
    }

    pub fn stat(&self, column: &str) -> u64 {
        let stats = self.stats();
        stats
            .get(column)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "no `{column}` in the statistics of {}\n{}",
                    self.name,
                    self.describe()
                )
            })
    }

    /// Exit 0, and the statistics say `calls` successful calls and none failed.
    pub fn assert_calls(&self, calls: u64) {
        self.assert_success();
        assert_eq!(
            (self.stat("SuccessfulCall(C)"), self.stat("FailedCall(C)")),
            (calls, 0),
            "(successful, failed) calls of {}\n{}",
            self.name,
            self.describe()
        );
    }

    /// The last line of the `-trace_counts` CSV (`{scenario}_{pid}_counts.csv` in the test
    /// directory), by column: `{index}_{message}_{what}` (`3_503_Recv`, `0_INVITE_Retrans`),
    /// the index being the element's place in the scenario. Empty without the file.
    pub fn counts(&self) -> HashMap<String, u64> {
        let suffix = format!("_{}_counts.csv", self.pid);
        let csv = fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .filter_map(|entry| entry.ok())
            .find(|entry| entry.file_name().to_string_lossy().ends_with(&suffix))
            .map(|entry| read_lossy(&entry.path()))
            .unwrap_or_default();
        last_csv_line(&csv)
            .into_iter()
            .filter_map(|(k, v)| Some((k, v.parse().ok()?)))
            .collect()
    }

    /// The `-trace_msg` log as SIPp wrote it.
    pub fn message_log(&self) -> String {
        read_lossy(&self.file("_messages.log"))
    }

    /// The messages of the `-trace_msg` log, in order.
    pub fn messages(&self) -> Vec<Logged> {
        parse_message_log(&self.message_log())
    }

    /// The messages received, by their first line's start (`SIP/2.0 183`, `INVITE `).
    pub fn received(&self, start: &str) -> Vec<Logged> {
        self.messages()
            .into_iter()
            .filter(|m| m.received && m.first_line().starts_with(start))
            .collect()
    }

    /// The status codes received, in order.
    pub fn codes(&self) -> Vec<u16> {
        self.messages()
            .iter()
            .filter(|m| m.received)
            .filter_map(|m| m.first_line().strip_prefix("SIP/2.0 "))
            .filter_map(|rest| rest.get(..3)?.parse().ok())
            .collect()
    }
}

// ---------------------------------------------------------------------------------------
// The `-trace_msg` log.

/// One message of a SIPp `-trace_msg` log.
pub struct Logged {
    pub received: bool,
    pub text: String,
}

impl Logged {
    pub fn first_line(&self) -> &str {
        self.text.lines().next().unwrap_or("").trim_end()
    }

    pub fn is_response(&self, code: u16) -> bool {
        self.first_line().starts_with(&format!("SIP/2.0 {code} "))
    }

    pub fn is_request(&self, method: &str) -> bool {
        self.first_line().starts_with(&format!("{method} "))
    }

    /// Every value of a header (full name, case-insensitive), in order.
    pub fn headers(&self, name: &str) -> Vec<String> {
        self.text
            .lines()
            .take_while(|l| !l.trim().is_empty())
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers(name).into_iter().next()
    }

    /// The Request-URI of a request.
    pub fn request_uri(&self) -> &str {
        self.first_line().split(' ').nth(1).unwrap_or("")
    }

    /// The port of the SDP body's first `m=audio` line.
    pub fn sdp_audio_port(&self) -> Option<u16> {
        self.text
            .lines()
            .find_map(|l| l.trim().strip_prefix("m=audio "))
            .and_then(|rest| rest.split(' ').next())
            .and_then(|p| p.parse().ok())
    }
}

/// The messages of a `-trace_msg` log, in order.
pub fn parse_message_log(log: &str) -> Vec<Logged> {
    let mut out = Vec::new();
    for block in log.split("-----------------------------------------------") {
        let mut lines = block.lines();
        let _time = lines.next();
        let Some(what) = lines.next() else { continue };
        // SIPp logs an unexpected message twice: as received, then as "Unexpected ...".
        let received = what.contains("message received") && !what.contains("Unexpected");
        if !received && !what.contains("message sent") {
            continue;
        }
        let text: Vec<&str> = lines.skip_while(|l| l.trim().is_empty()).collect();
        out.push(Logged {
            received,
            text: text.join("\n"),
        });
    }
    out
}

/// Messages in one line each (`<-` received, `->` sent), for failure messages.
pub fn summary(msgs: &[Logged]) -> String {
    msgs.iter()
        .map(|m| {
            let dir = if m.received { "<-" } else { "->" };
            format!("{dir} {}\n", m.first_line())
        })
        .collect()
}

/// The last line of one of SIPp's `;`-separated CSV files, by column name (empty when the
/// file has no data line).
fn last_csv_line(csv: &str) -> HashMap<String, String> {
    let lines: Vec<&str> = csv.lines().filter(|l| !l.trim().is_empty()).collect();
    let (Some(header), Some(last)) = (lines.first(), lines.get(1..).and_then(|l| l.last())) else {
        return HashMap::new();
    };
    header
        .split(';')
        .zip(last.split(';'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}
