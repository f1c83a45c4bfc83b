//! systemd's readiness protocol (`Type=notify`): datagrams such as
//! `READY=1` to the socket named by `$NOTIFY_SOCKET` (a path, or an
//! abstract name starting with `@`). Without the variable nothing is sent.

use std::fmt::Write as _;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Sends `state` (e.g. `READY=1`, `RELOADING=1`, `STOPPING=1`,
/// `WATCHDOG=1`); errors are logged once per call, never fatal.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let path = path.to_string_lossy().into_owned();
    let sent = UnixDatagram::unbound().and_then(|s| {
        let addr = match path.strip_prefix('@') {
            Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
            None => SocketAddr::from_pathname(&path)?,
        };
        let mut msg = state.to_owned();
        if state.starts_with("RELOADING=1") {
            // systemd ≥ 253 wants the time the reload began.
            let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
                .map_or(0, |t| t.tv_sec() * 1_000_000 + t.tv_nsec() / 1_000);
            let _ = write!(msg, "\nMONOTONIC_USEC={now}");
        }
        s.send_to_addr(msg.as_bytes(), &addr)
    });
    if let Err(e) = sent {
        tracing::warn!("sd_notify {state} to {path}: {e}");
    }
}

/// The watchdog interval systemd asks for (`$WATCHDOG_USEC`, for this
/// process), if any.
pub fn watchdog() -> Option<std::time::Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Some(pid) = std::env::var("WATCHDOG_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
    {
        if pid != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| std::time::Duration::from_micros(usec))
}
