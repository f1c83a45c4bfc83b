//! Issue 26 item 9: the local endpoints. The control socket is 0600 and
//! answers only root, the daemon's user or `control_socket_group`'s
//! members (SO_PEERCRED); the control socket and the metrics endpoint give
//! each request one total deadline, so a client trickling a byte every
//! 200 ms cannot hold the single serving thread while another waits.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use keepalived_rs::control::{self, Access, InstanceStatus, Shared, Status};
use keepalived_rs::metrics;

/// A directory anyone may traverse, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let d = std::env::temp_dir().join(format!("ka-local-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        Self(d)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn status() -> Shared {
    Shared::new(std::sync::Mutex::new(Status {
        vrrp: vec![InstanceStatus {
            name: "VI_1".into(),
            vrid: 51,
            interface: "eth0".into(),
            state: vrrp::StateName::Master,
            ..InstanceStatus::default()
        }],
        ..Status::default()
    }))
}

/// Sends `request` (a byte every `gap`) on a thread, until the server
/// closes or `limit` passes; returns when the server cut it off.
fn slow_loris(
    mut conn: impl Write + Send + 'static,
    request: &'static [u8],
    gap: Duration,
    limit: Duration,
) -> std::thread::JoinHandle<Option<Duration>> {
    std::thread::spawn(move || {
        let started = Instant::now();
        for b in request.iter().cycle() {
            if started.elapsed() > limit {
                return None;
            }
            if conn.write_all(&[*b]).is_err() {
                return Some(started.elapsed());
            }
            std::thread::sleep(gap);
        }
        None
    })
}

/// Issue 26 item 9: the socket is 0600 (0660 and the group's with
/// `control_socket_group`).
#[test]
fn the_control_socket_is_mode_0600() {
    let d = Scratch::new("mode");
    let path = d.0.join("ctl.sock");
    let _server = control::serve(&path, status(), None, Access::default()).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "control socket mode {mode:o}");
    if nix::unistd::geteuid().is_root() {
        let path = d.0.join("group.sock");
        let access = Access::from_config(Some("nogroup"));
        assert!(access.group.is_some(), "Debian has the group nogroup");
        let _server = control::serve(&path, status(), None, access).unwrap();
        let m = std::fs::metadata(&path).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o660);
        assert_eq!(m.gid(), 65534, "owned by nogroup");
    }
}

/// Runs `keepalived-rs status --control PATH` as nobody (uid 65534,
/// gid 65534): its output.
fn status_as_nobody(path: &std::path::Path) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keepalived-rs"))
        .args(["status", "--control"])
        .arg(path)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Issue 26 item 9: a peer that is neither root nor in the named group is
/// refused by SO_PEERCRED even where the file's mode would let it connect;
/// a member of the group is answered.
#[test]
fn a_non_root_non_group_peer_is_refused() {
    if !nix::unistd::geteuid().is_root() {
        assert!(!netlab::in_ci(), "this test needs root under CI");
        netlab::skipped(
            "a_non_root_non_group_peer_is_refused",
            "needs root (to run a client as nobody)",
        );
        return;
    }
    let d = Scratch::new("peer");
    let path = d.0.join("ctl.sock");
    let _server = control::serve(&path, status(), None, Access::default()).unwrap();
    // The mode alone keeps nobody out …
    let said = status_as_nobody(&path);
    assert!(said.contains("cannot reach"), "{said}");
    // … and were it loosened, the credentials check still does.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let said = status_as_nobody(&path);
    assert!(
        said.contains("refused: uid 65534"),
        "nobody was answered: {said}"
    );
    assert!(!said.contains("VI_1"), "nobody saw the status: {said}");
    // A member of control_socket_group is answered.
    let path = d.0.join("group.sock");
    let _server =
        control::serve(&path, status(), None, Access::from_config(Some("nogroup"))).unwrap();
    let said = status_as_nobody(&path);
    assert!(
        said.contains("VI_1: MASTER on eth0"),
        "the group's member: {said}"
    );
    // Root is answered.
    let mut c = std::os::unix::net::UnixStream::connect(&path).unwrap();
    c.write_all(b"status\n").unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    assert!(out.contains("VI_1"), "{out}");
}

/// Issue 26 item 9: a client sending a byte every 200 ms is cut off at the
/// deadline, and a client behind it is answered meanwhile.
#[test]
fn a_slow_client_cannot_hold_the_control_socket() {
    let d = Scratch::new("loris");
    let path = d.0.join("ctl.sock");
    let _server = control::serve(&path, status(), None, Access::default()).unwrap();
    let slow = std::os::unix::net::UnixStream::connect(&path).unwrap();
    let loris = slow_loris(
        slow,
        b"status jso",
        Duration::from_millis(200),
        Duration::from_secs(12),
    );
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let mut c = std::os::unix::net::UnixStream::connect(&path).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    c.write_all(b"status\n").unwrap();
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    let waited = started.elapsed();
    assert!(out.contains("VI_1"), "no answer: {out:?}");
    assert!(
        waited < Duration::from_secs(3),
        "the second client waited {waited:?} behind a slow one"
    );
    let cut = loris.join().unwrap();
    assert!(
        cut.is_some_and(|t| t < Duration::from_secs(4)),
        "the slow client was not cut off at the deadline: {cut:?}"
    );
}

/// Issue 26 item 9: the same for `GET /metrics`.
#[test]
fn a_slow_client_cannot_hold_the_metrics_endpoint() {
    let addr = metrics::serve("127.0.0.1:0".parse().unwrap(), status()).unwrap();
    let slow = std::net::TcpStream::connect(addr).unwrap();
    let loris = slow_loris(
        slow,
        b"GET /metrics",
        Duration::from_millis(200),
        Duration::from_secs(12),
    );
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    let waited = started.elapsed();
    assert!(out.starts_with("HTTP/1.1 200 OK"), "no answer: {out:?}");
    assert!(
        waited < Duration::from_secs(3),
        "the second client waited {waited:?} behind a slow one"
    );
    let cut = loris.join().unwrap();
    assert!(
        cut.is_some_and(|t| t < Duration::from_secs(4)),
        "the slow client was not cut off at the deadline: {cut:?}"
    );
}
