//! IPVS's connection synchronisation (`lvs_sync_daemon`): the kernel's own
//! sync daemon, started and stopped over generic netlink as keepalived
//! does it. Tied to a VRRP instance, this node runs the master daemon
//! (it sends its connections) while that instance is MASTER and the backup
//! daemon (it receives them into its table) otherwise, so the node that
//! takes the VIP over already knows the connections of the one before it.
//! Without an instance, both run for as long as the daemon does.
//!
//! The VRRP thread only sends the instances' states down a channel; this
//! thread owns the netlink socket, so nothing here can delay an advert.

use std::collections::{BTreeSet, HashMap};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::Duration;

use lb::ipvs::{SyncDaemon, SyncRole};

/// `lvs_sync_daemon` as read from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub daemon: SyncDaemon,
    /// The VRRP instance it follows (`None`: master and backup both run).
    pub instance: Option<String>,
}

/// The kernel's limit on an interface name, its NUL included.
const IFNAMSIZ: usize = 16;
/// How often a command the kernel refused is tried again.
const RETRY: Duration = Duration::from_secs(2);

fn number<T: TryFrom<u32>>(word: &str, value: Option<&String>, min: u32, max: u32) -> Option<T> {
    let Some(v) = value else {
        tracing::error!("lvs_sync_daemon {word}: no value; ignored");
        return None;
    };
    match v.parse::<u32>() {
        Ok(n) if (min..=max).contains(&n) => T::try_from(n).ok(),
        _ => {
            tracing::error!("lvs_sync_daemon {word} `{v}`: expected {min}..={max}; ignored");
            None
        }
    }
}

/// `lvs_sync_daemon IFNAME [INSTANCE [SYNC_ID]] [inst NAME] [id N]
/// [maxlen N] [port N] [ttl N] [group ADDR]` read as keepalived reads it
/// (each bad option is logged and left out), or the deprecated
/// `lvs_sync_daemon_interface` of an instance. The sync id defaults to
/// the instance's VRID, else 0; an instance that does not exist clears
/// the whole setting, as in keepalived.
pub fn spec(config: &kaconf::Config) -> Option<Spec> {
    let (words, mut instance) = if let Some(w) = &config.globals().lvs_sync_daemon {
        (w.0.clone(), None)
    } else {
        {
            let i = config
                .instances
                .iter()
                .find(|i| i.body.lvs_sync_daemon_interface.is_some())?;
            tracing::warn!(
                "({}) lvs_sync_daemon_interface is deprecated; use lvs_sync_daemon {} {} in global_defs",
                i.name,
                i.body.lvs_sync_daemon_interface.as_deref().unwrap_or_default(),
                i.name
            );
            (
                vec![i.body.lvs_sync_daemon_interface.clone().unwrap_or_default()],
                Some(i.name.clone()),
            )
        }
    };
    let Some(interface) = words.first().cloned() else {
        tracing::error!("lvs_sync_daemon requires an interface; ignored");
        return None;
    };
    if interface.len() >= IFNAMSIZ {
        tracing::error!("lvs_sync_daemon interface name `{interface}` is too long; ignored");
        return None;
    }
    let mut d = SyncDaemon {
        interface,
        sync_id: 0,
        maxlen: None,
        port: None,
        ttl: None,
        group: None,
    };
    let mut sync_id = None;
    let mut i = 1;
    while i < words.len() {
        let word = words[i].as_str();
        let value = words.get(i + 1);
        match word {
            "inst" => {
                if instance.is_some() {
                    tracing::error!(
                        "lvs_sync_daemon: the instance is given twice; the first counts"
                    );
                } else {
                    instance.clone_from(&value.cloned());
                }
            }
            "id" => sync_id = number(word, value, 0, 255).or(sync_id),
            "maxlen" => d.maxlen = number(word, value, 1, 65535 - 20 - 8),
            "port" => d.port = number(word, value, 1, 65535),
            "ttl" => d.ttl = number(word, value, 1, 255),
            "group" => match value.map(|v| v.parse::<std::net::IpAddr>()) {
                Some(Ok(a)) if a.is_multicast() => d.group = Some(a),
                Some(Ok(a)) => {
                    tracing::error!("lvs_sync_daemon group {a} is not multicast; ignored");
                }
                _ => tracing::error!("lvs_sync_daemon group: not an address; ignored"),
            },
            // keepalived's older form: IFNAME INSTANCE [SYNC_ID].
            _ if i == 1 && instance.is_none() => {
                instance = Some(word.to_owned());
                i += 1;
                continue;
            }
            _ if i == 2 && sync_id.is_none() => {
                tracing::warn!("lvs_sync_daemon: write `id {word}` for the sync id");
                sync_id = number("id", Some(&words[i]), 0, 255);
                i += 1;
                continue;
            }
            other => {
                tracing::error!("lvs_sync_daemon: unknown option `{other}`; ignored");
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    if let Some(name) = &instance {
        let Some(inst) = config.instances.iter().find(|i| &i.name == name) else {
            tracing::error!("lvs_sync_daemon: no vrrp_instance {name}; no sync daemon runs");
            return None;
        };
        let vrid = inst
            .body
            .virtual_router_id
            .and_then(|v| u8::try_from(v.get()).ok())
            .unwrap_or(0);
        d.sync_id = sync_id.unwrap_or(vrid);
    } else {
        d.sync_id = sync_id.unwrap_or(0);
    }
    Some(Spec {
        daemon: d,
        instance,
    })
}

/// What the sync thread is told.
#[derive(Debug)]
pub enum Msg {
    /// A VRRP instance entered a state (MASTER or not).
    State { instance: String, master: bool },
}

/// The roles `spec` wants given the instances' states: the master daemon
/// while its instance is MASTER, else the backup one; both without an
/// instance.
pub fn wanted(spec: &Spec, is_master: impl Fn(&str) -> bool) -> BTreeSet<SyncRole> {
    match &spec.instance {
        None => [SyncRole::Master, SyncRole::Backup].into(),
        Some(name) if is_master(name) => [SyncRole::Master].into(),
        Some(_) => [SyncRole::Backup].into(),
    }
}

/// A thread that follows the instances' states (IPVS's sync daemons,
/// the DR flow sync, conntrackd): dropped, its channel closes and it is
/// waited for, so whatever it started stops first.
#[derive(Debug)]
pub struct Follower {
    tx: Option<Sender<Msg>>,
    handle: Option<std::thread::JoinHandle<()>>,
    what: &'static str,
}

impl Follower {
    /// Runs `f` on a thread named `name` (`what` names it in the log),
    /// with the receiving end of its channel.
    pub fn spawn(
        name: &str,
        what: &'static str,
        f: impl FnOnce(Receiver<Msg>) + Send + 'static,
    ) -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || f(rx))?;
        Ok(Self {
            tx: Some(tx),
            handle: Some(handle),
            what,
        })
    }

    /// Where the VRRP thread sends its instances' states.
    pub fn sender(&self) -> Option<Sender<Msg>> {
        self.tx.clone()
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(h) = self.handle.take() {
            if h.join().is_err() {
                tracing::error!("the {} thread panicked", self.what);
            }
        }
    }
}

/// Which part of the daemon runs (keepalived's VRRP and checker
/// processes): a sync daemon tied to an instance is the VRRP part's, one
/// without is the checkers'; with that part not running (`-C`, `-P`)
/// none runs, as in keepalived.
#[derive(Debug, Clone, Copy)]
pub struct Parts {
    pub vrrp: bool,
    pub checks: bool,
}

impl Parts {
    /// `spec` if the part it belongs to runs.
    pub fn admit(self, spec: Option<Spec>) -> Option<Spec> {
        spec.filter(|s| {
            if s.instance.is_some() {
                self.vrrp
            } else {
                self.checks
            }
        })
    }
}

/// Starts the sync thread with the configuration's `lvs_sync_daemon`
/// (none: the thread waits for a reload that adds one). A reload that
/// changes the setting stops the daemons and starts them as the new one
/// says; one that drops it stops them.
pub fn start(
    config: &kaconf::Config,
    parts: Parts,
    status: crate::control::Shared,
    reloads: Receiver<Arc<kaconf::Config>>,
) -> std::io::Result<Follower> {
    let spec = kernel_spec(parts, config);
    Follower::spawn("lvs-sync", "IPVS sync daemon", move |rx| {
        run(spec, parts, &rx, &reloads, &status);
    })
}

/// The setting for the kernel's daemons: none where the kernel has no
/// IPVS (the nftables DR plane syncs its flows itself, `flowsync`).
fn kernel_spec(parts: Parts, config: &kaconf::Config) -> Option<Spec> {
    let spec = parts.admit(spec(config))?;
    if let Some(why) = lb::ipvs::unavailable() {
        tracing::info!("lvs_sync_daemon: {why}, so no IPVS sync daemon runs");
        return None;
    }
    Some(spec)
}

/// The kernel's side: what runs, and the socket.
struct Kernel {
    ipvs: Option<lb::ipvs::plane::Ipvs>,
    /// The roles this thread started (with the settings they run with).
    running: HashMap<SyncRole, SyncDaemon>,
    error: Option<String>,
    changes: u64,
    since: Option<std::time::SystemTime>,
}

impl Kernel {
    fn socket(&mut self) -> Result<&mut lb::ipvs::plane::Ipvs, lb::Error> {
        if self.ipvs.is_none() {
            self.ipvs = Some(lb::ipvs::plane::Ipvs::open()?);
        }
        self.ipvs.as_mut().ok_or(lb::Error::NoIpvs)
    }

    /// Stops `role` (one we run, or a leftover of an earlier run with
    /// `sync_id`): `true` once it is not running.
    fn stop(&mut self, role: SyncRole, sync_id: u8, leftover: bool) -> bool {
        let r = self.socket().and_then(|s| s.stop_daemon(role, sync_id));
        match r {
            Ok(()) => {
                self.running.remove(&role);
                if leftover {
                    tracing::info!(
                        "IPVS sync daemon: stopped a {} daemon left running",
                        role.name()
                    );
                } else {
                    tracing::info!("IPVS sync daemon: {} stopped", role.name());
                    self.changed();
                }
                true
            }
            // Not running (ESRCH): nothing to stop.
            Err(lb::Error::IpvsRefused { why, .. }) if why.raw_os_error() == Some(3) => {
                self.running.remove(&role);
                true
            }
            Err(e) => {
                self.fail(format!("stopping the {} daemon: {e}", role.name()));
                false
            }
        }
    }

    fn begin(&mut self, role: SyncRole, d: &SyncDaemon) -> bool {
        let r = self.socket().and_then(|s| s.start_daemon(role, d));
        match r {
            Ok(()) => {
                tracing::info!(
                    "IPVS sync daemon: {} started on {} (sync id {})",
                    role.name(),
                    d.interface,
                    d.sync_id
                );
                self.running.insert(role, d.clone());
                self.changed();
                true
            }
            Err(e) => {
                self.fail(format!(
                    "starting the {} daemon on {}: {e}",
                    role.name(),
                    d.interface
                ));
                false
            }
        }
    }

    fn changed(&mut self) {
        self.changes += 1;
        self.since = Some(std::time::SystemTime::now());
        self.error = None;
    }

    fn fail(&mut self, why: String) {
        if self.error.as_deref() != Some(why.as_str()) {
            tracing::error!("IPVS sync daemon: {why}");
        }
        self.error = Some(why);
    }

    /// Makes the kernel run `want` with `d`: roles not wanted (or running
    /// with other settings) stopped first, then the missing ones started.
    /// `true` when the kernel matches.
    fn apply(&mut self, want: &BTreeSet<SyncRole>, d: Option<&SyncDaemon>) -> bool {
        let mut ok = true;
        let stale: Vec<(SyncRole, u8)> = self
            .running
            .iter()
            .filter(|(r, run)| !want.contains(r) || Some(*run) != d)
            .map(|(r, run)| (*r, run.sync_id))
            .collect();
        for (role, id) in stale {
            ok &= self.stop(role, id, false);
        }
        if let Some(d) = d {
            for role in want {
                if !self.running.contains_key(role) {
                    ok &= self.begin(*role, d);
                }
            }
        }
        ok
    }

    fn publish(&mut self, spec: Option<&Spec>, status: &crate::control::Shared) {
        let kernel = self
            .ipvs
            .as_mut()
            .map(|s| s.daemons().unwrap_or_default())
            .unwrap_or_default();
        let view = spec.map(|spec| crate::control::SyncStatus {
            interface: spec.daemon.interface.clone(),
            instance: spec.instance.clone(),
            sync_id: spec.daemon.sync_id,
            running: kernel
                .iter()
                .map(|k| {
                    format!(
                        "{} on {} (sync id {})",
                        k.role.name(),
                        k.interface,
                        k.sync_id
                    )
                })
                .collect(),
            roles: self.running.keys().map(|r| r.name().to_owned()).collect(),
            changes: self.changes,
            since_unix: self
                .since
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs()),
            error: self.error.clone(),
        });
        if let Ok(mut s) = status.lock() {
            s.sync = view;
        }
    }
}

fn run(
    mut spec: Option<Spec>,
    parts: Parts,
    rx: &Receiver<Msg>,
    reloads: &Receiver<Arc<kaconf::Config>>,
    status: &crate::control::Shared,
) {
    let mut k = Kernel {
        ipvs: None,
        running: HashMap::new(),
        error: None,
        changes: 0,
        since: None,
    };
    let mut masters: HashMap<String, bool> = HashMap::new();
    // A daemon left running by an earlier run (killed, or keepalived) is
    // stopped first, so the settings below are the ones that run.
    if let Some(s) = &spec {
        for role in [SyncRole::Master, SyncRole::Backup] {
            k.stop(role, s.daemon.sync_id, true);
        }
    }
    let mut settled = false;
    loop {
        if !settled {
            let want = spec
                .as_ref()
                .map(|s| wanted(s, |n| masters.get(n) == Some(&true)))
                .unwrap_or_default();
            settled = k.apply(&want, spec.as_ref().map(|s| &s.daemon));
            k.publish(spec.as_ref(), status);
        }
        match rx.recv_timeout(if settled {
            Duration::from_secs(1)
        } else {
            RETRY
        }) {
            Ok(Msg::State { instance, master }) => {
                let was = masters.insert(instance.clone(), master);
                let ours = spec.as_ref().and_then(|s| s.instance.as_ref()) == Some(&instance);
                if ours && was != Some(master) {
                    settled = false;
                }
                // Every state queued is taken before the kernel is told.
                while let Ok(Msg::State { instance, master }) = rx.try_recv() {
                    let was = masters.insert(instance.clone(), master);
                    let ours = spec.as_ref().and_then(|s| s.instance.as_ref()) == Some(&instance);
                    if ours && was != Some(master) {
                        settled = false;
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        while let Ok(config) = reloads.try_recv() {
            let new = kernel_spec(parts, &config);
            if new != spec {
                tracing::info!("IPVS sync daemon: the reload changes lvs_sync_daemon");
                spec = new;
                settled = false;
            }
        }
    }
    k.apply(&BTreeSet::new(), None);
    k.publish(None, status);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_of(globals: &str, instance: &str) -> Option<Spec> {
        let text = format!(
            "global_defs {{\n {globals}\n}}\nvrrp_instance VI_1 {{\n interface eth0\n virtual_router_id 51\n priority 100\n {instance}\n virtual_ipaddress {{ 203.0.113.1 }}\n}}\n"
        );
        let c = kaconf::parse_str(
            std::path::Path::new("t.conf"),
            &text,
            &kaconf::Options::default(),
        )
        .config;
        spec(&c)
    }

    fn daemon(interface: &str, sync_id: u8) -> SyncDaemon {
        SyncDaemon {
            interface: interface.into(),
            sync_id,
            maxlen: None,
            port: None,
            ttl: None,
            group: None,
        }
    }

    /// keepalived's forms: the options in any order, the old positional
    /// instance and sync id, the sync id taken from the instance's VRID,
    /// each bad option left out, an unknown instance clearing it all.
    #[test]
    fn lvs_sync_daemon_as_keepalived_reads_it() {
        assert_eq!(spec_of("", ""), None);
        assert_eq!(
            spec_of("lvs_sync_daemon eth1 VI_1", ""),
            Some(Spec {
                daemon: daemon("eth1", 51),
                instance: Some("VI_1".into())
            })
        );
        assert_eq!(
            spec_of(
                "lvs_sync_daemon eth1 inst VI_1 id 7 port 8849 ttl 3 maxlen 1400 group 239.1.2.3",
                ""
            ),
            Some(Spec {
                daemon: SyncDaemon {
                    port: Some(8849),
                    ttl: Some(3),
                    maxlen: Some(1400),
                    group: Some("239.1.2.3".parse().unwrap()),
                    ..daemon("eth1", 7)
                },
                instance: Some("VI_1".into())
            })
        );
        assert_eq!(
            spec_of("lvs_sync_daemon eth1 VI_1 9", "").map(|s| s.daemon.sync_id),
            Some(9)
        );
        assert_eq!(
            spec_of("lvs_sync_daemon eth1", ""),
            Some(Spec {
                daemon: daemon("eth1", 0),
                instance: None
            })
        );
        let bad = spec_of(
            "lvs_sync_daemon eth1 inst VI_1 id 300 port 0 ttl x group 198.51.100.1 bogus",
            "",
        )
        .unwrap();
        assert_eq!(bad.daemon, daemon("eth1", 51));
        assert_eq!(spec_of("lvs_sync_daemon eth1 inst VI_9", ""), None);
        assert_eq!(
            spec_of("lvs_sync_daemon averyveryverylongname VI_1", ""),
            None
        );
        assert_eq!(
            spec_of("", "lvs_sync_daemon_interface eth2"),
            Some(Spec {
                daemon: daemon("eth2", 51),
                instance: Some("VI_1".into())
            })
        );
    }

    /// The master daemon while the instance is MASTER, the backup one
    /// otherwise (also before the instance has said anything); both
    /// without an instance.
    #[test]
    fn the_roles_follow_the_instance() {
        let s = Spec {
            daemon: daemon("eth0", 51),
            instance: Some("VI_1".into()),
        };
        let mut m = HashMap::new();
        assert_eq!(
            wanted(&s, |n| m.get(n) == Some(&true)),
            [SyncRole::Backup].into()
        );
        m.insert("VI_1".to_owned(), true);
        assert_eq!(
            wanted(&s, |n| m.get(n) == Some(&true)),
            [SyncRole::Master].into()
        );
        m.insert("VI_1".to_owned(), false);
        m.insert("VI_2".to_owned(), true);
        assert_eq!(
            wanted(&s, |n| m.get(n) == Some(&true)),
            [SyncRole::Backup].into()
        );
        let both = Spec {
            instance: None,
            ..s
        };
        assert_eq!(
            wanted(&both, |n| m.get(n) == Some(&true)),
            [SyncRole::Master, SyncRole::Backup].into()
        );
    }
}
