//! Telling systemd how the service is doing (`Type=notify`, sd_notify(3)): `READY=1` once the
//! listeners are bound, `RELOADING=1` and `READY=1` around a reload, `STOPPING=1` when
//! draining starts. Without `NOTIFY_SOCKET` (not started by systemd) nothing is sent.
//!
//! The protocol is one datagram of `KEY=VALUE` lines to the Unix socket that
//! `NOTIFY_SOCKET` names, so it is written here rather than taken from the `sd-notify`
//! crate: that crate takes the name as a file path only, while sd_notify(3) also allows an
//! abstract socket (`@name`, Linux), which some service managers hand over.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Tells systemd the proxy serves: once its listeners are bound, and after each reload.
/// `MAINPID` says which process is the service's.
pub fn ready() {
    notify(&format!("READY=1\nMAINPID={}\n", std::process::id()));
}

/// Tells systemd the proxy is draining (SIGTERM): it stops accepting calls and exits once
/// the transactions in flight are done.
pub fn stopping() {
    notify("STOPPING=1\n");
}

/// A reload in progress: `RELOADING=1` when it begins, `READY=1` when it ends, whatever
/// the outcome, since an invalid file leaves the proxy serving with its old rules.
/// `MONOTONIC_USEC` lets systemd tell this reload from an earlier one (it is required by
/// `Type=notify-reload` and harmless to `Type=notify`).
#[must_use = "READY=1 is sent when the reload ends, by dropping this"]
pub struct Reloading(());

impl Reloading {
    pub fn begin() -> Reloading {
        notify(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}\n",
            monotonic_usec()
        ));
        Reloading(())
    }
}

impl Drop for Reloading {
    fn drop(&mut self) {
        ready();
    }
}

/// Sends `message` to `NOTIFY_SOCKET`, if set. A failure is logged and otherwise ignored:
/// the proxy serves all the same (systemd will say the start timed out).
fn notify(message: &str) {
    let Some(name) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send(&name, message.as_bytes()) {
        tracing::warn!(
            socket = %name.to_string_lossy(),
            error = %e,
            "cannot notify the service manager"
        );
    }
}

fn send(name: &OsStr, message: &[u8]) -> io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    socket.send_to_addr(message, &address(name)?)?;
    Ok(())
}

/// `NOTIFY_SOCKET` as systemd writes it: an absolute path, or `@` and an abstract name.
fn address(name: &OsStr) -> io::Result<SocketAddr> {
    match name.as_bytes() {
        [b'/', ..] => SocketAddr::from_pathname(name),
        [b'@', abstract_name @ ..] => abstract_address(abstract_name),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "NOTIFY_SOCKET is neither an absolute path nor an @abstract name",
        )),
    }
}

#[cfg(target_os = "linux")]
fn abstract_address(name: &[u8]) -> io::Result<SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name)
}

#[cfg(not(target_os = "linux"))]
fn abstract_address(_: &[u8]) -> io::Result<SocketAddr> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract Unix sockets exist on Linux only",
    ))
}

/// CLOCK_MONOTONIC in microseconds, the clock systemd compares `MONOTONIC_USEC` with (std's
/// `Instant` reads it too, but does not show its value).
fn monotonic_usec() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec, and CLOCK_MONOTONIC always exists.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) } != 0 {
        return 0;
    }
    let secs = u64::try_from(now.tv_sec).unwrap_or(0);
    let micros = u64::try_from(now.tv_nsec / 1000).unwrap_or(0);
    secs * 1_000_000 + micros
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn receive(socket: &UnixDatagram) -> String {
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn sends_to_a_path() {
        let dir = std::env::temp_dir().join(format!("sipscreen-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory");
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path).expect("bind");
        send(path.as_os_str(), b"READY=1\n").expect("send");
        assert_eq!(receive(&socket), "READY=1\n");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn sends_to_an_abstract_name() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("sipscreen-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("a name");
        let socket = UnixDatagram::bind_addr(&addr).expect("bind");
        send(OsStr::new(&format!("@{name}")), b"STOPPING=1\n").expect("send");
        assert_eq!(receive(&socket), "STOPPING=1\n");
    }

    #[test]
    fn refuses_a_relative_name() {
        assert!(address(OsStr::new("notify.sock")).is_err());
        assert!(address(OsStr::new("")).is_err());
    }

    #[test]
    fn the_monotonic_clock_moves_on() {
        let a = monotonic_usec();
        std::thread::sleep(Duration::from_millis(2));
        let b = monotonic_usec();
        assert!(a > 0 && b >= a + 2000, "{a} then {b}");
    }
}
