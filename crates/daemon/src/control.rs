//! The control socket: `keepalived-rs status [--json]` asks here. The VRRP
//! thread publishes a [`Status`] snapshot after every change; this thread only
//! reads it, so a slow client can never delay an advert.
//!
//! Who may ask: the socket is mode 0600 (0660 and group-owned with
//! `control_socket_group NAME` in `global_defs`, our extension), and every
//! connection's `SO_PEERCRED` must be root, the daemon's own user or (with
//! that keyword) a member of the group; anyone else gets one `refused:`
//! line. Each request has one total deadline ([`deadline::REQUEST`]) for
//! reading it and writing the answer, so a client trickling bytes cannot
//! hold the (single) serving thread.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use nix::unistd::{Gid, Uid};

use crate::deadline::{self, Bounded};

use serde::Serialize;

/// What `status --json` prints (a contract: these names may not change).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Status {
    pub vrrp: Vec<InstanceStatus>,
    pub virtual_servers: Vec<VirtualServerStatus>,
    /// The proxy's connections and bytes per real server.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub proxy: Vec<ProxyCounter>,
    /// The proxy's connection caps, what it refused, and the descriptors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_limits: Option<ProxyLimits>,
    /// IPVS's connection sync daemon (`lvs_sync_daemon`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncStatus>,
    /// conntrackd, for the nftables planes (`conntrack_sync`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conntrack_sync: Option<ConntrackStatus>,
    /// `lvs_sync_daemon` on the nftables DR plane: the flow memory sent
    /// to and taken from the other directors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow_sync: Option<FlowSyncStatus>,
    /// The `bfd_instance` sessions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bfd: Vec<BfdStatus>,
}

/// One BFD session, as `status` shows it.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct BfdStatus {
    pub name: String,
    pub neighbor: String,
    pub multihop: bool,
    /// `Up`, `Down`, `Init`, `AdminDown`; ours and as the peer says.
    pub state: String,
    pub remote_state: String,
    /// Why it last went Down (RFC 5880's diagnostic).
    pub diag: String,
    pub local_discriminator: u32,
    pub remote_discriminator: u32,
    /// The interval we send at now, and how long without a packet before
    /// the peer is Down (`null` before it has sent anything).
    pub tx_interval_us: u32,
    pub detection_time_us: Option<u64>,
    /// Unix time of the last change of state.
    pub since: u64,
    pub sent: u64,
    pub received: u64,
    /// Packets for it that were refused (wrong discriminator, TTL, ...).
    pub refused: u64,
    /// Times it came Up, and went Down from Up.
    pub ups: u64,
    pub downs: u64,
    pub send_errors: u64,
    pub last_error: Option<String>,
}

/// The nftables DR plane's flow sync: where, which way, and the counts.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct FlowSyncStatus {
    pub interface: String,
    /// The group (or address) and port it sends to and listens on.
    pub destination: String,
    /// The VRRP instance it follows (`null`: it sends and receives).
    pub instance: Option<String>,
    pub sync_id: u8,
    /// Whether this node sends its flows (its instance is MASTER).
    pub sending: bool,
    /// Whether it takes the other directors' flows.
    pub receiving: bool,
    /// Entries sent, received, written into our maps.
    pub sent: u64,
    pub received: u64,
    pub written: u64,
    /// Entries for a service or server this node does not have.
    pub refused: u64,
    /// Datagrams that were not flow-sync datagrams.
    pub bad_datagrams: u64,
    /// Entries dropped, the queue full.
    pub dropped: u64,
    pub last_sent_unix: Option<u64>,
    pub last_received_unix: Option<u64>,
    /// How long the last read of our flow maps took, and how often they
    /// are read (longer for maps that take long to read).
    pub last_read_ms: u64,
    pub interval_ms: u64,
    /// The last failure, while it lasts.
    pub error: Option<String>,
}

/// conntrackd as we run it: whom it syncs with, our side, the last commit.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ConntrackStatus {
    /// The VRRP instance it follows, and the peer it syncs with.
    pub instance: String,
    pub peer: String,
    /// `master` (our connections are sent) or `backup` (the peer's are kept).
    pub role: String,
    /// Whether conntrackd runs.
    pub running: bool,
    /// Takeovers: commits of the peer's connections into the kernel.
    pub commits: u64,
    /// How long the last one took, VIPs held meanwhile (milliseconds).
    pub last_commit_ms: Option<u64>,
    /// When it was (seconds since the epoch).
    pub last_takeover_unix: Option<u64>,
    /// conntrackd's counters (read every 5 s): this node's connections
    /// (sent to the peer), the peer's (kept for a commit), sync
    /// datagrams each way, messages lost.
    pub local_entries: u64,
    pub peer_entries: u64,
    pub packets_sent: u64,
    pub packets_received: u64,
    pub lost: u64,
    /// The last failure, while it lasts.
    pub error: Option<String>,
}

/// IPVS's connection sync daemon: its settings, the roles we run, what
/// the kernel says runs, and the last change.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SyncStatus {
    pub interface: String,
    /// The VRRP instance it follows (`null`: master and backup both run).
    pub instance: Option<String>,
    pub sync_id: u8,
    /// The roles we started (`master`, `backup`).
    pub roles: Vec<String>,
    /// The kernel's list (`GET_DAEMON`), in this network namespace.
    pub running: Vec<String>,
    /// Roles started or stopped since the daemon started.
    pub changes: u64,
    /// When the last of those was (seconds since the epoch).
    pub since_unix: Option<u64>,
    /// The kernel's last refusal, while it lasts.
    pub error: Option<String>,
}

/// The proxy's admission control (docs/dataplanes.md, "Limits").
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ProxyLimits {
    /// The daemon's open-file limit, and the part the proxy leaves alone.
    pub fd_limit: u64,
    pub fd_reserve: u64,
    /// Descriptors the daemon has open (counted at most once a second).
    pub fds_open: u64,
    /// Descriptors the proxy's connections and sessions hold.
    pub proxy_fds: u64,
    /// The most TCP connections at once, all virtual servers together.
    pub max_connections: u64,
    /// accept(2) failures (EMFILE: something else used the reserve).
    pub accept_errors: u64,
    pub virtual_servers: Vec<ProxyServiceLimits>,
}

/// One proxied virtual server's connections and refusals.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ProxyServiceLimits {
    pub virtual_server: String,
    /// TCP or UDP.
    pub protocol: String,
    /// Open now (UDP: sessions).
    pub connections: u32,
    /// `max_conns`; 0: none of its own.
    pub max_conns: u32,
    /// `proxy_timeout` in seconds; 0: none.
    pub proxy_timeout: u64,
    /// New connections (UDP: datagrams of new clients) refused, by
    /// reason: `max_conns`, `descriptors`.
    pub refused: std::collections::BTreeMap<String, u64>,
    /// Connections ended by `proxy_timeout`.
    pub idle_timeouts: u64,
}

/// One real server of a proxied virtual server, as the proxy counts it.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ProxyCounter {
    pub virtual_server: String,
    pub real_server: String,
    pub active_connections: u32,
    /// Bytes relayed, both ways, by connections that have ended.
    pub bytes: u64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct InstanceStatus {
    pub name: String,
    pub vrid: u8,
    pub interface: String,
    /// INIT, BACKUP, MASTER, FAULT, STOP.
    pub state: vrrp::StateName,
    /// Why it is in that state, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub priority: u8,
    pub effective_priority: u8,
    pub vips: Vec<String>,
    /// Adverts received and accepted.
    pub adverts_received: u64,
    pub adverts_sent: u64,
    pub became_master: u64,
    /// Priority-0 adverts received.
    pub priority_zero_received: u64,
    /// Lower-priority adverts heard as MASTER, and those of them (and of
    /// priority-0 adverts) left unanswered by the answer rate limit.
    pub lower_prio_received: u64,
    pub lower_prio_unanswered: u64,
    /// The split-brain guard suspects a split brain: a dual-master
    /// episode now, or this node cut off (FAULT by the guard).
    pub split_brain_suspected: bool,
    /// Dual-master episodes seen (this master heard another it outranks).
    pub dual_master_episodes: u64,
    /// Times the guard kept or took this node out of MASTER.
    pub guard_faults: u64,
    /// Invalid adverts dropped, by reason (`ttl`, `vrid`, `auth`, …;
    /// `auth_hmac` outcomes as `hmac_missing`, `hmac_invalid`, …).
    pub dropped: std::collections::BTreeMap<String, u64>,
    /// With `auth_hmac`: its mode, the signing key's id and the adverts it
    /// accepted (never key material).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_hmac: Option<HmacStatus>,
}

/// The `auth_hmac` part of an instance's status.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct HmacStatus {
    pub mode: String,
    pub active_key: u8,
    /// Adverts whose trailer verified.
    pub accepted: u64,
    /// Adverts without a trailer let through (`permissive`, `receive-only`).
    pub unsigned: u64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct VirtualServerStatus {
    pub address: String,
    pub port: u16,
    pub protocol: String,
    pub real_servers: Vec<RealServerStatus>,
    /// The live real servers' weight reaches `quorum` (keepalived's
    /// quorum state).
    pub quorum_up: bool,
    /// `sorry_server`, as `[ip]:tcp:port`.
    pub sorry_server: Option<String>,
    /// The sorry server takes the traffic (quorum lost).
    pub sorry_server_active: bool,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct RealServerStatus {
    pub address: String,
    pub port: u16,
    pub weight: u32,
    pub healthy: bool,
    /// Why it is down: its failing checker and the failure (`None` while
    /// healthy, or before a check has said why).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The failure's kind, a stable word (`connect_timeout`, `http_status`,
    /// `alpha` …; `check::Reason::kind`): the metric's label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason_kind: Option<&'static str>,
}

/// The snapshot the daemon's threads share.
pub type Shared = Arc<Mutex<Status>>;

/// What a `reload` request calls.
pub type ReloadFn = std::sync::Arc<dyn Fn() -> Result<String, String> + Send + Sync>;

/// Who may use the control socket besides root and the daemon's own user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    /// `control_socket_group`: its name and id.
    pub group: Option<(String, Gid)>,
}

impl Access {
    /// From `control_socket_group NAME`; a group that does not exist is
    /// logged and leaves the socket to root (fails closed).
    pub fn from_config(group: Option<&str>) -> Self {
        let Some(name) = group else {
            return Self::default();
        };
        match nix::unistd::Group::from_name(name) {
            Ok(Some(g)) => Self {
                group: Some((name.to_owned(), g.gid)),
            },
            Ok(None) => {
                tracing::error!(
                    "control_socket_group {name}: no such group; the control socket is root's only"
                );
                Self::default()
            }
            Err(e) => {
                tracing::error!(
                    "control_socket_group {name}: cannot look the group up ({e}); the control socket is root's only"
                );
                Self::default()
            }
        }
    }

    /// Whether a peer with these credentials (and supplementary `groups`)
    /// may use the socket.
    pub fn admits(&self, uid: Uid, gid: Gid, groups: &[Gid]) -> bool {
        uid.is_root()
            || uid == Uid::effective()
            || self
                .group
                .as_ref()
                .is_some_and(|(_, g)| gid == *g || groups.contains(g))
    }

    /// The socket file's mode: 0600, or 0660 with a group.
    fn mode(&self) -> u32 {
        if self.group.is_some() {
            0o660
        } else {
            0o600
        }
    }
}

/// Checks the peer of `conn` (`SO_PEERCRED`) against `access`.
fn admit(conn: &UnixStream, access: &Access) -> Result<(), String> {
    let cred = nix::sys::socket::getsockopt(conn, nix::sys::socket::sockopt::PeerCredentials)
        .map_err(|e| format!("cannot read the peer's credentials: {e}"))?;
    let (uid, gid) = (Uid::from_raw(cred.uid()), Gid::from_raw(cred.gid()));
    let groups = if access.group.is_some() {
        supplementary_groups(cred.pid())
    } else {
        Vec::new()
    };
    if access.admits(uid, gid, &groups) {
        return Ok(());
    }
    Err(match &access.group {
        Some((name, _)) => format!(
            "uid {uid} (pid {}) is not root and not in group {name}",
            cred.pid()
        ),
        None => format!(
            "uid {uid} (pid {}) is not root (control_socket_group names a group that may ask)",
            cred.pid()
        ),
    })
}

/// A process's supplementary groups, from `/proc/PID/status`.
fn supplementary_groups(pid: i32) -> Vec<Gid> {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return Vec::new();
    };
    text.lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| {
            g.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .map(Gid::from_raw)
                .collect()
        })
        .unwrap_or_default()
}

/// The longest request line read (longer ones are cut there).
pub const MAX_REQUEST: usize = 4096;

/// A request on the control socket: one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Status,
    StatusJson,
    Reload,
    /// Anything else, as text (lossy UTF-8, at most 64 characters).
    Unknown(String),
}

impl Request {
    /// The line a client sends for it.
    pub fn line(&self) -> &str {
        match self {
            Self::Status => "status",
            Self::StatusJson => "status json",
            Self::Reload => "reload",
            Self::Unknown(s) => s,
        }
    }
}

/// Reads one request line: up to and including a newline, at most
/// [`MAX_REQUEST`] bytes.
pub fn read_request(r: impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut line = Vec::new();
    r.take(MAX_REQUEST as u64).read_until(b'\n', &mut line)?;
    Ok(line)
}

/// What a request line asks.
pub fn parse_request(line: &[u8]) -> Request {
    let text = String::from_utf8_lossy(line);
    match text.trim() {
        "status json" => Request::StatusJson,
        "status" => Request::Status,
        "reload" => Request::Reload,
        other => Request::Unknown(other.chars().take(64).collect()),
    }
}

/// Serves `path` on a thread of its own; `access` says who may ask.
pub fn serve(
    path: &Path,
    status: Shared,
    reload: Option<ReloadFn>,
    access: Access,
) -> std::io::Result<Server> {
    if path.exists() {
        // A socket nobody answers on is a leftover of a crashed run.
        if UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!(
                    "{} is in use: is another keepalived-rs running?",
                    path.display()
                ),
            ));
        }
        std::fs::remove_file(path)?;
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let listener = UnixListener::bind(path)?;
    // Before anyone can connect through the file's mode (a peer that
    // connected in between still meets the SO_PEERCRED check).
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    let mut access = access;
    if let Some((name, gid)) = access.group.clone() {
        // Without CAP_CHOWN (a unit's bounding set) the group cannot own
        // the socket: then it stays root's only.
        match nix::unistd::chown(path, None, Some(gid)) {
            Ok(()) => {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(access.mode()))?;
            }
            Err(e) => {
                tracing::error!(
                    "control_socket_group {name}: cannot give {} to the group ({e}); the control socket is root's only",
                    path.display()
                );
                access.group = None;
            }
        }
    }
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                if let Err(why) = admit(&conn, &access) {
                    tracing::warn!("control socket: refused a client: {why}");
                    // Its request is read (not looked at), so that the
                    // client, writing it, hears why rather than EPIPE.
                    let until = Instant::now() + deadline::REQUEST;
                    let _ = read_request(BufReader::new(Bounded::new(&conn, until)));
                    let _ = writeln!(Bounded::new(&conn, until), "refused: {why}");
                    continue;
                }
                if let Err(e) = answer(&conn, &status, reload.as_ref()) {
                    tracing::debug!("control socket: a request failed: {e}");
                }
            }
        })?;
    Ok(Server {
        path: path.to_owned(),
    })
}

/// Removes the socket file when dropped.
#[derive(Debug)]
pub struct Server {
    path: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn answer(conn: &UnixStream, status: &Shared, reload: Option<&ReloadFn>) -> std::io::Result<()> {
    // One deadline for reading the request and writing the answer; a
    // reload's own work (ours, not the client's) restarts it.
    let mut until = Instant::now() + deadline::REQUEST;
    let line = read_request(BufReader::new(Bounded::new(conn, until)))?;
    let request = parse_request(&line);
    let snapshot = status.lock().map(|s| s.clone()).unwrap_or_default();
    let text = match request {
        Request::StatusJson => {
            let text = serde_json::to_string(&snapshot).map_err(std::io::Error::other)?;
            format!("{text}\n")
        }
        Request::Status => render(&snapshot),
        Request::Reload => {
            let said = match reload.map(|r| r()) {
                Some(Ok(said)) => format!("{said}\n"),
                Some(Err(errors)) => format!("refused: the configuration has errors\n{errors}\n"),
                None => "refused: this daemon cannot reload\n".to_owned(),
            };
            until = Instant::now() + deadline::REQUEST;
            said
        }
        Request::Unknown(other) => format!(
            "unknown request `{}` (try `status`, `status json` or `reload`)\n",
            other.escape_debug()
        ),
    };
    Bounded::new(conn, until).write_all(text.as_bytes())
}

/// The text form of `status`.
pub fn render(s: &Status) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for i in &s.vrrp {
        let _ = writeln!(
            out,
            "VRRP instance {}: {} on {} (VRID {}), priority {} (effective {}), VIPs {}",
            i.name,
            i.state,
            i.interface,
            i.vrid,
            i.priority,
            i.effective_priority,
            i.vips.join(", ")
        );
        let dropped: u64 = i.dropped.values().sum();
        let _ = writeln!(
            out,
            "  adverts: {} received, {} sent, {} invalid dropped{}",
            i.adverts_received,
            i.adverts_sent,
            dropped,
            if dropped > 0 {
                format!(" {:?}", i.dropped)
            } else {
                String::new()
            }
        );
        if i.split_brain_suspected || i.dual_master_episodes > 0 || i.guard_faults > 0 {
            let _ = writeln!(
                out,
                "  split brain: {}suspected, {} dual-master episodes, {} guard faults",
                if i.split_brain_suspected { "" } else { "not " },
                i.dual_master_episodes,
                i.guard_faults
            );
        }
        if let Some(h) = &i.auth_hmac {
            let _ = writeln!(
                out,
                "  auth_hmac: mode {}, active key {}, {} accepted, {} unsigned",
                h.mode, h.active_key, h.accepted, h.unsigned
            );
        }
    }
    if let Some(c) = &s.conntrack_sync {
        let _ = writeln!(
            out,
            "conntrackd ({}, follows {}, peer {}): {}, {} commits{}{}",
            c.role,
            c.instance,
            c.peer,
            if c.running { "running" } else { "not running" },
            c.commits,
            c.last_commit_ms
                .map_or_else(String::new, |ms| format!(", the last in {ms} ms")),
            c.error
                .as_ref()
                .map_or_else(String::new, |e| format!("; error: {e}"))
        );
    }
    if let Some(y) = &s.sync {
        let _ = writeln!(
            out,
            "IPVS sync daemon on {} (sync id {}, {}): running {}{}",
            y.interface,
            y.sync_id,
            y.instance.as_ref().map_or_else(
                || "master and backup".to_owned(),
                |i| format!("follows {i}")
            ),
            if y.running.is_empty() {
                "nothing".to_owned()
            } else {
                y.running.join(", ")
            },
            y.error
                .as_ref()
                .map_or_else(String::new, |e| format!("; error: {e}"))
        );
    }
    render_bfd(&mut out, &s.bfd);
    out
}

/// The BFD sessions' lines of [`render`].
fn render_bfd(out: &mut String, sessions: &[BfdStatus]) {
    use std::fmt::Write as _;
    for b in sessions {
        let _ = writeln!(
            out,
            "BFD {}: {} to {}{} (peer says {}, diag {}), tx every {} ms, detection {}; {} sent, {} received, {} refused, up {} times, down {}",
            b.name,
            b.state,
            b.neighbor,
            if b.multihop { " multihop" } else { "" },
            b.remote_state,
            b.diag,
            f64::from(b.tx_interval_us) / 1000.0,
            b.detection_time_us
                .map_or_else(|| "not yet".to_owned(), |d| format!("{}.{:03} ms", d / 1000, d % 1000)),
            b.sent,
            b.received,
            b.refused,
            b.ups,
            b.downs
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_who_may_ask() {
        assert_eq!(parse_request(b"status\n"), Request::Status);
        assert_eq!(parse_request(b" status json\r\n"), Request::StatusJson);
        assert_eq!(parse_request(b"reload"), Request::Reload);
        let long = parse_request(&[b'x'; 500]);
        assert!(matches!(long, Request::Unknown(t) if t.len() == 64));
        let mut r = std::io::Cursor::new(b"status\nreload\n".to_vec());
        assert_eq!(read_request(&mut r).unwrap(), b"status\n");
        assert_eq!(
            read_request(std::io::Cursor::new(vec![b'a'; 9000]))
                .unwrap()
                .len(),
            MAX_REQUEST
        );
        let (nobody, nogroup, staff) = (
            Uid::from_raw(65534),
            Gid::from_raw(65534),
            Gid::from_raw(50),
        );
        let root_only = Access::default();
        assert!(root_only.admits(Uid::from_raw(0), nogroup, &[]));
        assert!(!root_only.admits(nobody, nogroup, &[staff]));
        let group = Access {
            group: Some(("staff".into(), staff)),
        };
        assert!(group.admits(nobody, staff, &[]), "primary group");
        assert!(
            group.admits(nobody, nogroup, &[staff]),
            "supplementary group"
        );
        assert!(!group.admits(nobody, nogroup, &[Gid::from_raw(51)]));
    }

    #[test]
    fn json_has_the_contracted_shape() {
        let s = Status {
            proxy: Vec::new(),
            proxy_limits: None,
            vrrp: vec![InstanceStatus {
                name: "VI_1".into(),
                vrid: 51,
                interface: "eth0".into(),
                state: vrrp::StateName::Master,
                reason: None,
                priority: 100,
                effective_priority: 100,
                vips: vec!["198.51.100.250".into()],
                ..InstanceStatus::default()
            }],
            virtual_servers: vec![],
            sync: None,
            conntrack_sync: None,
            flow_sync: None,
            bfd: Vec::new(),
        };
        let v: serde_json::Value = serde_json::to_value(&s).unwrap();
        let i = &v["vrrp"][0];
        for key in [
            "name",
            "vrid",
            "interface",
            "state",
            "priority",
            "effective_priority",
            "vips",
        ] {
            assert!(!i[key].is_null(), "missing {key}");
        }
        assert!(v["virtual_servers"].is_array());
        assert!(render(&s).contains("VI_1: MASTER on eth0 (VRID 51)"));
    }
}
