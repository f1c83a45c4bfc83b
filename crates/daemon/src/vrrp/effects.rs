//! What the engines' actions do on the machine (`carry_out`), in
//! keepalived's words, the status snapshot and the SIGUSR dumps.

use super::{addrs, announce, Action, Driver, Family, HashMap, Instance, VrrpSocket};

pub(super) fn dump(path: &str, text: &str) {
    match write_fresh(std::path::Path::new(path), text) {
        Ok(()) => tracing::info!("Wrote {path}"),
        Err(e) => tracing::warn!("cannot write {path}: {e}"),
    }
}

/// Writes `text` to a new file at `path` (in a world-writable /tmp): what
/// was there is unlinked, never followed — a symlink planted there is
/// removed, not written through (keepalived's CVE-2018-19044 class) — and
/// the file is created exclusively, so one planted between the two steps
/// makes the write fail instead.
pub(super) fn write_fresh(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)?;
    f.write_all(text.as_bytes())
}

/// `ttl`, `vrid`, `wire_checksum`…: a drop reason as a counter name.
pub(super) fn drop_name(d: vrrp::Drop) -> String {
    use vrrp::Drop;
    match d {
        Drop::Wire(e) => format!("wire_{}", format!("{e:?}").to_lowercase()),
        Drop::Ttl => "ttl".into(),
        Drop::Version => "version".into(),
        Drop::Vrid => "vrid".into(),
        Drop::Family => "family".into(),
        Drop::Own => "own".into(),
        Drop::UnknownPeer => "unknown_peer".into(),
        Drop::Destination => "destination".into(),
        Drop::Auth => "auth".into(),
        Drop::Interval => "interval".into(),
        Drop::Hmac(r) => format!("hmac_{}", format!("{r:?}").to_lowercase()),
    }
}

/// Does what the engine asked, logging in keepalived's words.
pub(super) fn carry_out(
    inst: &Instance,
    sockets: &mut [VrrpSocket],
    announcers: &mut HashMap<String, announce::Announcer>,
    addresses: &mut addrs::Addresses,
    actions: &[Action],
) {
    let name = &inst.spec.name;
    for a in actions {
        match a {
            Action::Send { src, to, .. } => {
                let dst = to.addr(Family::of(src));
                // From a heartbeat address: that path's socket.
                let si = inst
                    .heartbeat
                    .iter()
                    .find(|h| h.0 == *src)
                    .map_or(inst.socket, |h| h.1);
                let sent = sockets[si].send_with(*src, dst, |buf| {
                    a.write_payload(buf);
                });
                if let Err(e) = sent {
                    tracing::warn!("({name}) sending an advert to {dst}: {e}");
                }
            }
            Action::AddVips(_) => {
                for addr in &inst.spec.addresses {
                    if let Err(e) = addresses.add(addr) {
                        tracing::error!("({name}) {e}");
                    }
                }
            }
            Action::RemoveVips(_) => {
                for addr in &inst.spec.addresses {
                    if let Err(e) = addresses.remove(addr) {
                        tracing::error!("({name}) {e}");
                    }
                }
            }
            Action::State { to, .. } => {
                tracing::info!("({name}) Entering {to} STATE");
                if let Some(w) = why(inst) {
                    tracing::info!("({name}) {w}");
                }
            }
            Action::Log(line) => tracing::warn!("{line}"),
            Action::DualMaster { peer, priority } => {
                tracing::warn!(
                    "({name}) split brain suspected: {peer} (priority {priority}) was MASTER as well"
                );
                // `on_dual_master` is run by the notifier (see `execute`).
            }
            Action::Priority { priority } => {
                tracing::info!("({name}) Changing effective priority to {priority}");
            }
            Action::Announce { addrs, repeat } => {
                // Each address on its own interface, from that interface's MAC.
                for ifname in inst.spec.address_interfaces() {
                    let here: Vec<std::net::IpAddr> = addrs
                        .iter()
                        .copied()
                        .filter(|a| inst.spec.interface_of(*a) == ifname)
                        .collect();
                    if here.is_empty() {
                        continue;
                    }
                    let Some(a) = announcers.get_mut(ifname) else {
                        continue;
                    };
                    match a.announce(&here, *repeat) {
                        Ok(()) => {
                            for addr in &here {
                                let what = if addr.is_ipv4() {
                                    "gratuitous ARP"
                                } else {
                                    "unsolicited Neighbour Advert"
                                };
                                tracing::debug!(
                                    "({name}) Sending {what} on {ifname} for {addr} (x{repeat})"
                                );
                            }
                        }
                        Err(e) => tracing::warn!("({name}) gratuitous ARP / NA on {ifname}: {e}"),
                    }
                }
            }
            Action::AddRoutes { .. } => {
                let s = &inst.spec;
                for e in addresses.add_routes(&s.routes, &s.rules, &s.interface) {
                    tracing::error!("({name}) {e}");
                }
            }
            Action::RemoveRoutes { .. } => {
                let s = &inst.spec;
                for e in addresses.remove_routes(&s.routes, &s.rules, &s.interface) {
                    tracing::error!("({name}) {e}");
                }
            }
        }
    }
}

impl Driver {
    /// The state of every instance, for the control socket.
    pub(super) fn status(&self) -> crate::control::Status {
        let now = self.now();
        let vrrp = self
            .instances
            .iter()
            .map(|i| {
                let c = i.router.counters();
                crate::control::InstanceStatus {
                    name: i.spec.name.clone(),
                    vrid: i.spec.engine.vrid,
                    interface: i.spec.interface.clone(),
                    state: i.router.state(),
                    reason: why(i),
                    priority: i.spec.engine.priority,
                    effective_priority: i.router.priority(),
                    vips: i.spec.engine.vips.iter().map(ToString::to_string).collect(),
                    adverts_received: c.received,
                    adverts_sent: c.sent,
                    became_master: c.became_master,
                    priority_zero_received: c.priority_zero_received,
                    lower_prio_received: c.lower_prio_received,
                    lower_prio_unanswered: c.lower_prio_unanswered,
                    split_brain_suspected: i.router.split_brain_suspected(now),
                    dual_master_episodes: c.dual_master_episodes,
                    guard_faults: c.guard_faults,
                    dropped: c.dropped.iter().map(|(k, v)| (drop_name(*k), *v)).collect(),
                    auth_hmac: i.router.config().auth_hmac.as_ref().map(|h| {
                        crate::control::HmacStatus {
                            mode: match h.mode {
                                vrrp::auth_hmac::Mode::Enforce => "enforce",
                                vrrp::auth_hmac::Mode::Permissive => "permissive",
                                vrrp::auth_hmac::Mode::ReceiveOnly => "receive-only",
                            }
                            .into(),
                            active_key: h.active_key,
                            accepted: c.hmac_accepted,
                            unsigned: c.hmac_unsigned,
                        }
                    }),
                }
            })
            .collect();
        crate::control::Status {
            vrrp,
            ..crate::control::Status::default()
        }
    }
}

/// Why instance `i` is in its state: the engine's words, and for FAULT
/// what the trackers (or the split-brain guard, or the sync group) say.
pub(super) fn why(i: &Instance) -> Option<String> {
    if i.router.state() != vrrp::StateName::Fault {
        return i.router.why();
    }
    Some(if !i.faults.is_empty() {
        format!("FAULT: {}", i.faults.join(", "))
    } else if i.router.guard_fault() {
        "FAULT: split-brain guard: no peer heard and no witness reachable".into()
    } else if i.router.is_faulty() {
        "FAULT: a tracker failed".into()
    } else {
        "FAULT: its sync group is in FAULT".into()
    })
}

#[cfg(test)]
mod dump_tests {
    #[test]
    fn dumps_never_write_through_a_planted_symlink() {
        let dir = std::env::temp_dir().join(format!("krs-dump-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let victim = dir.join("victim");
        std::fs::write(&victim, "precious").unwrap_or_else(|e| panic!("{e}"));
        let path = dir.join("keepalived.data");
        std::os::unix::fs::symlink(&victim, &path).unwrap_or_else(|e| panic!("{e}"));
        super::write_fresh(&path, "the dump").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            std::fs::read_to_string(&victim).unwrap_or_default(),
            "precious"
        );
        assert!(!std::fs::symlink_metadata(&path).map_or(true, |m| m.file_type().is_symlink()));
        assert_eq!(
            std::fs::read_to_string(&path).unwrap_or_default(),
            "the dump"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
