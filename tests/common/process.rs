//! A child process a test started: stopped by its PID on every path (SIGTERM, then SIGKILL
//! after a bounded wait), on `Drop` too, and always reaped.

use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a process stopped by `Drop` has to exit after SIGTERM before it is killed.
const DROP_GRACE: Duration = Duration::from_secs(3);

pub struct Proc {
    name: String,
    child: Child,
    /// Its exit status, once seen (kept: a reaped child has no other).
    status: Option<ExitStatus>,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command) -> Proc {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            name: name.to_owned(),
            child,
            status: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its exit status once it has exited (without waiting).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits at most `limit` for the process to exit by itself.
    pub fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM by PID, then SIGKILL after `grace`; the exit status when it exited by itself
    /// (or had already) within `grace`, `None` when it had to be killed.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        if let Some(status) = self.exited() {
            return Some(status);
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let status = self.wait(grace);
        if status.is_none() {
            let _ = self.child.kill(); // SIGKILL, by PID
            let _ = self.wait(Duration::from_secs(5));
        }
        status
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.exited().is_none() && self.stop(DROP_GRACE).is_none() {
            eprintln!("{} had to be killed", self.name);
        }
    }
}
