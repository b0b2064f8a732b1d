//! The harness of the end-to-end suites (`tests/sipp.rs`, `tests/pin_e2e.rs`,
//! `tests/forwarding_e2e.rs`): the built `sipscreen run` between SIPp peers and sockets of
//! the test, all on loopback. Each suite uses part of it.
//!
//! - [`process::Proc`]: every process a test starts, stopped by its PID on every path;
//! - [`proxy::Sipscreen`]: sipscreen on port 0, its real addresses read from its log;
//! - [`sipp::SippCommand`], [`sipp::Sipp`], [`sipp::SippRun`]: SIPp started with the options
//!   every run gets, waited for until bound, finished with a time limit, and its statistics
//!   and message log read back;
//! - [`http`]: a minimal HTTP/1.1 client for the admin API; [`invite`]: one INVITE over UDP;
//! - [`net`]: the next hops the test holds, free ports for SIPp, the kernel's socket tables;
//! - [`sip`]: SIP written and read by hand, for peers that are sockets of the test;
//! - here: per-test directories, reading files, scenario paths.
//!
//! Every wait is bounded, and each test works in its own temporary directory (kept, and
//! named, when the test fails).
#![allow(dead_code)]

pub mod http;
pub mod invite;
pub mod net;
pub mod process;
pub mod proxy;
pub mod sip;
pub mod sipp;

use std::fs;
use std::path::{Path, PathBuf};

/// A scenario (or other file) of `tests/{folder}/`, which must exist.
pub fn scenario(folder: &str, name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(folder)
        .join(name);
    assert!(path.is_file(), "missing scenario {}", path.display());
    path.to_str().expect("a UTF-8 path").to_owned()
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
