//! The control socket: `keepalived-rs status [--json]` asks here. The VRRP
//! thread publishes a [`Status`] snapshot after every change; this thread only
//! reads it, so a slow client can never delay an advert.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

/// What `status --json` prints (DESIGN.md: these names may not change).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Status {
    pub vrrp: Vec<InstanceStatus>,
    pub virtual_servers: Vec<VirtualServerStatus>,
    /// The proxy's connections and bytes per real server.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub proxy: Vec<ProxyCounter>,
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
    pub state: String,
    pub priority: u8,
    pub effective_priority: u8,
    pub vips: Vec<String>,
    /// Adverts received and accepted.
    pub adverts_received: u64,
    pub adverts_sent: u64,
    pub became_master: u64,
    /// Priority-0 adverts received.
    pub priority_zero_received: u64,
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
}

/// The snapshot the daemon's threads share.
pub type Shared = Arc<Mutex<Status>>;

/// Serves `path` on a thread of its own until the process ends.
/// What a `reload` request calls.
pub type ReloadFn = std::sync::Arc<dyn Fn() -> Result<String, String> + Send + Sync>;

pub fn serve(path: &Path, status: Shared, reload: Option<ReloadFn>) -> std::io::Result<Server> {
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
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                let _ = answer(&conn, &status, reload.as_ref());
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
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    conn.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut line = String::new();
    BufReader::new(conn).take(4096).read_line(&mut line)?;
    let snapshot = status.lock().map(|s| s.clone()).unwrap_or_default();
    let mut out = conn;
    match line.trim() {
        "status json" => {
            let text = serde_json::to_string(&snapshot).map_err(std::io::Error::other)?;
            writeln!(out, "{text}")
        }
        "status" => write!(out, "{}", render(&snapshot)),
        "reload" => match reload.map(|r| r()) {
            Some(Ok(said)) => writeln!(out, "{said}"),
            Some(Err(errors)) => writeln!(out, "refused: the configuration has errors\n{errors}"),
            None => writeln!(out, "refused: this daemon cannot reload"),
        },
        other => writeln!(
            out,
            "unknown request `{other}` (try `status`, `status json` or `reload`)"
        ),
    }
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
    out
}

use std::io::Read as _;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_the_contracted_shape() {
        let s = Status {
            proxy: Vec::new(),
            vrrp: vec![InstanceStatus {
                name: "VI_1".into(),
                vrid: 51,
                interface: "eth0".into(),
                state: "MASTER".into(),
                priority: 100,
                effective_priority: 100,
                vips: vec!["198.51.100.250".into()],
                ..InstanceStatus::default()
            }],
            virtual_servers: vec![],
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
