//! What the end-to-end suites that drive SIPp share: finding `sipp`, per-test directories,
//! reading log files, and SIPp's `-trace_msg` message log. Each suite uses part of it.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

/// The `sipp` executable on PATH; a loud failure (never a skip) when it is missing.
pub fn sipp() -> PathBuf {
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

/// A fresh directory for one test; removed when the test passes, kept when it fails.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// `sipscreen-{suite}-{test}-{pid}-{nanos}` under the system's temporary directory.
    pub fn new(suite: &str, test: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!(
            "sipscreen-{suite}-{test}-{}-{nanos}",
            std::process::id()
        ));
        fs::create_dir_all(&dir).expect("create the test's temporary directory");
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    pub fn file(&self, name: &str) -> String {
        self.path(name).to_str().expect("a UTF-8 path").to_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("test files kept in {}", self.0.display());
        } else {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

/// A file's text, lossily; empty when it cannot be read.
pub fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The last `n` bytes of a file (on a character boundary).
pub fn tail(path: &Path, n: usize) -> String {
    let text = read_lossy(path);
    let start = text.len().saturating_sub(n);
    let start = (start..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    text[start..].to_owned()
}

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
