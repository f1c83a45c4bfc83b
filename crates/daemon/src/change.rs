//! Reload as typed changes: the one home of "what does this new
//! configuration change?". [`vrrp`] compares the running VRRP instances
//! with the new ones, [`services`] the running virtual servers with the
//! new ones; both are pure (no sockets, no root) and return [`Change`]s
//! keyed by stable ids — instance names, virtual server keys, real server
//! addresses — never by position or by a `Debug` string. The VRRP driver
//! applies its changes; every reload logs the whole list. A runtime
//! change (drain, weight, priority without a reload) is meant to travel
//! as the same type.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use crate::vrrp::spec::InstanceSpec;

/// A virtual server's identity across reloads: what it listens on (or
/// its fwmark, or its group) and its protocol.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceId {
    /// keepalived's name: `ADDR PORT`, `fwmark N`, `group NAME`.
    pub name: String,
    pub protocol: &'static str,
}

impl std::fmt::Display for ServiceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.name, self.protocol)
    }
}

/// One thing a reload changes, or refuses to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A new `vrrp_instance` starts.
    VrrpStart { instance: String },
    /// An instance gone from the file stops (priority 0, VIPs released).
    VrrpStop { instance: String },
    /// A kept instance takes new settings in place (state, timers and the
    /// VIPs that stay are kept); `what` names the keywords.
    VrrpReconfigure {
        instance: String,
        what: Vec<&'static str>,
    },
    /// What the running VRRP instances cannot take without a restart:
    /// `instance` `None` for a change to the trackers every instance
    /// shares (then no VRRP change is applied).
    VrrpRefuse {
        instance: Option<String>,
        /// A new instance (not started) or a kept one (left as it runs).
        new: bool,
        why: String,
    },
    /// A virtual server appears.
    ServiceAdd { service: ServiceId },
    /// A virtual server is gone.
    ServiceRemove { service: ServiceId },
    /// A kept virtual server's own keywords changed.
    ServiceUpdate {
        service: ServiceId,
        what: Vec<String>,
    },
    /// A real server appears in a kept virtual server.
    RealAdd {
        service: ServiceId,
        real: SocketAddr,
    },
    /// A real server is gone from a kept virtual server.
    RealRemove {
        service: ServiceId,
        real: SocketAddr,
    },
    /// A kept real server's keywords changed (its checkers are among
    /// them: a changed checker starts afresh, the others keep their
    /// verdicts).
    RealUpdate {
        service: ServiceId,
        real: SocketAddr,
        what: Vec<String>,
    },
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::VrrpStart { instance } => {
                write!(f, "({instance}) reload: new instance; starting")
            }
            Change::VrrpStop { instance } => write!(
                f,
                "({instance}) reload: removed from the configuration; stopping"
            ),
            Change::VrrpReconfigure { instance, what } => write!(
                f,
                "({instance}) reload: {} changed; taken in place",
                what.join(", ")
            ),
            Change::VrrpRefuse {
                instance: None,
                why,
                ..
            } => write!(
                f,
                "reload: {why}: no VRRP change applied; restart keepalived-rs for that"
            ),
            Change::VrrpRefuse {
                instance: Some(i),
                new: true,
                why,
            } => write!(
                f,
                "({i}) reload: a new instance {why}: not started; restart keepalived-rs for it"
            ),
            Change::VrrpRefuse {
                instance: Some(i),
                new: false,
                why,
            } => write!(
                f,
                "({i}) reload: {why}: not applied; restart keepalived-rs for that"
            ),
            Change::ServiceAdd { service } => write!(f, "reload: virtual server {service} added"),
            Change::ServiceRemove { service } => {
                write!(f, "reload: virtual server {service} removed")
            }
            Change::ServiceUpdate { service, what } => write!(
                f,
                "reload: virtual server {service}: {} changed",
                what.join(", ")
            ),
            Change::RealAdd { service, real } => write!(
                f,
                "reload: virtual server {service}: real server {real} added"
            ),
            Change::RealRemove { service, real } => write!(
                f,
                "reload: virtual server {service}: real server {real} removed"
            ),
            Change::RealUpdate {
                service,
                real,
                what,
            } => write!(
                f,
                "reload: virtual server {service}: real server {real}: {} changed",
                what.join(", ")
            ),
        }
    }
}

impl Change {
    /// The instance a `VrrpStart` starts.
    pub fn started(&self) -> Option<&str> {
        match self {
            Change::VrrpStart { instance } => Some(instance),
            _ => None,
        }
    }

    /// The instance a `VrrpStop` stops.
    pub fn stopped(&self) -> Option<&str> {
        match self {
            Change::VrrpStop { instance } => Some(instance),
            _ => None,
        }
    }

    /// The instance a `VrrpReconfigure` changes in place.
    pub fn reconfigured(&self) -> Option<&str> {
        match self {
            Change::VrrpReconfigure { instance, .. } => Some(instance),
            _ => None,
        }
    }

    /// A refusal of every VRRP change.
    pub fn refuses_all_vrrp(&self) -> bool {
        matches!(self, Change::VrrpRefuse { instance: None, .. })
    }
}

/// Logs a reload's changes: refusals as warnings, the rest as news.
pub fn log(changes: &[Change]) {
    for c in changes {
        if matches!(c, Change::VrrpRefuse { .. }) {
            tracing::warn!("{c}");
        } else {
            tracing::info!("{c}");
        }
    }
}

/// Whether `name` is named by one of `changes` through `pick`.
pub fn names(changes: &[Change], name: &str, pick: fn(&Change) -> Option<&str>) -> bool {
    changes.iter().filter_map(pick).any(|n| n == name)
}

/// What the running daemon set up at start and keeps for its lifetime,
/// which a new instance may share but not add: the scripts it runs, the
/// links it watches, the witness sets it probes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Known {
    pub scripts: BTreeSet<String>,
    pub links: BTreeSet<String>,
    pub witnesses: Vec<Vec<crate::vrrp::spec::Witness>>,
}

impl Known {
    /// What a daemon started on `specs` sets up.
    pub fn of(specs: &[InstanceSpec]) -> Self {
        let mut witnesses: Vec<Vec<crate::vrrp::spec::Witness>> = Vec::new();
        for g in specs.iter().filter_map(|i| i.guard.as_ref()) {
            if !g.witnesses.is_empty() && !witnesses.contains(&g.witnesses) {
                witnesses.push(g.witnesses.clone());
            }
        }
        Self {
            scripts: specs
                .iter()
                .flat_map(|i| &i.track_scripts)
                .map(|(n, _)| n.clone())
                .collect(),
            links: specs
                .iter()
                .flat_map(|i| &i.track_interfaces)
                .map(|(n, _)| n.clone())
                .collect(),
            witnesses,
        }
    }
}

/// The running instances and what the daemon keeps for them.
struct Running<'a> {
    old: &'a [InstanceSpec],
    known: &'a Known,
}

impl Running<'_> {
    /// Why a new instance cannot start in the running daemon, if it
    /// cannot; `staying` are the instances kept (a removed or renamed
    /// one frees its VRID).
    fn cannot_add(&self, new: &InstanceSpec, staying: &BTreeSet<&str>) -> Option<&'static str> {
        let witnesses = new.guard.as_ref().is_some_and(|g| {
            !g.witnesses.is_empty() && !self.known.witnesses.contains(&g.witnesses)
        });
        if new.vmac.is_some() {
            Some("uses use_vmac")
        } else if witnesses {
            Some("names witnesses no running instance has")
        } else if new
            .track_scripts
            .iter()
            .any(|(n, _)| !self.known.scripts.contains(n))
        {
            Some("tracks a vrrp_script no running instance tracks")
        } else if new
            .track_interfaces
            .iter()
            .any(|(n, _)| !self.known.links.contains(n))
        {
            Some("tracks an interface no running instance tracks")
        } else if self.old.iter().any(|i| {
            staying.contains(i.name.as_str())
                && i.engine.vrid == new.engine.vrid
                && i.advert_interface() == new.advert_interface()
        }) {
            Some("has the VRID of another on its interface")
        } else {
            None
        }
    }
}

/// What a kept instance's new settings change: `Err` names the first
/// keyword that cannot change under a running instance, `Ok` the ones
/// taken in place (empty: nothing changed).
fn instance_changes(old: &InstanceSpec, new: &InstanceSpec) -> Result<Vec<&'static str>, String> {
    let fixed = [
        (old.interface != new.interface, "interface"),
        (old.vmac != new.vmac, "use_vmac"),
        (old.track_scripts != new.track_scripts, "track_script"),
        (old.track_files != new.track_files, "track_file"),
        (old.track_processes != new.track_processes, "track_process"),
        (
            old.track_interfaces != new.track_interfaces,
            "track_interface",
        ),
        (old.guard != new.guard, "split_brain_guard"),
    ];
    if let Some((_, what)) = fixed.iter().find(|(c, _)| *c) {
        return Err(format!("{what} changed"));
    }
    if let Some(what) = old.engine.fixed_change(&new.engine) {
        return Err(format!("{what} changed"));
    }
    let (o, n) = (&old.engine, &new.engine);
    let in_place = [
        (o.priority != n.priority, "priority"),
        (
            old.addresses != new.addresses || o.vips != n.vips || o.excluded != n.excluded,
            "virtual_ipaddress",
        ),
        (old.routes != new.routes, "virtual_routes"),
        (old.rules != new.rules, "virtual_rules"),
        (
            o.preempt != n.preempt || o.preempt_delay != n.preempt_delay,
            "preempt",
        ),
        (o.initial_state != n.initial_state, "state"),
        (o.garp != n.garp, "garp"),
        (old.notify != new.notify, "notify"),
        (old.smtp_alert != new.smtp_alert, "smtp_alert"),
    ];
    let mut what: Vec<&'static str> = in_place
        .iter()
        .filter(|(c, _)| *c)
        .map(|(_, w)| *w)
        .collect();
    if what.is_empty() && old != new {
        what.push("other settings");
    }
    Ok(what)
}

/// The VRRP part of a reload: `old` the running instances, `new` the new
/// file's, `known` what the daemon set up at start (it never shrinks:
/// an instance removed and added back finds its script still running);
/// `trackers_changed` when the `vrrp_script`, `track_file`,
/// `vrrp_track_process` or `vrrp_sync_group` blocks differ (a running
/// daemon keeps those: nothing else is applied then).
pub fn vrrp(
    old: &[InstanceSpec],
    new: &[InstanceSpec],
    trackers_changed: bool,
    known: &Known,
) -> Vec<Change> {
    if trackers_changed {
        return vec![Change::VrrpRefuse {
            instance: None,
            new: false,
            why: "vrrp_script, track_file, vrrp_track_process or vrrp_sync_group changed".into(),
        }];
    }
    let running = Running { old, known };
    let staying: BTreeSet<&str> = new
        .iter()
        .filter(|n| old.iter().any(|o| o.name == n.name))
        .map(|n| n.name.as_str())
        .collect();
    let mut out = Vec::new();
    let mut starting: Vec<(u8, &str)> = Vec::new();
    for o in old {
        if !staying.contains(o.name.as_str()) {
            out.push(Change::VrrpStop {
                instance: o.name.clone(),
            });
        }
    }
    for n in new {
        if let Some(o) = old.iter().find(|o| o.name == n.name) {
            match instance_changes(o, n) {
                Ok(what) if what.is_empty() => {}
                Ok(what) => out.push(Change::VrrpReconfigure {
                    instance: n.name.clone(),
                    what,
                }),
                Err(why) => out.push(Change::VrrpRefuse {
                    instance: Some(n.name.clone()),
                    new: false,
                    why,
                }),
            }
            continue;
        }
        // Two new instances on one VRID and interface: the first starts,
        // the second cannot.
        let taken = starting
            .iter()
            .any(|(vrid, ifname)| *vrid == n.engine.vrid && *ifname == n.advert_interface());
        let why = running
            .cannot_add(n, &staying)
            .or(taken.then_some("has the VRID of another on its interface"));
        if let Some(why) = why {
            out.push(Change::VrrpRefuse {
                instance: Some(n.name.clone()),
                new: true,
                why: why.into(),
            });
        } else {
            starting.push((n.engine.vrid, n.advert_interface()));
            out.push(Change::VrrpStart {
                instance: n.name.clone(),
            });
        }
    }
    out
}

/// A section's own statements as the configuration would be written
/// back: (keyword, its text with any block), `skip` keywords left out.
fn statements<S: kaconf::section::Section>(body: &S, skip: &[&str]) -> Vec<(String, String)> {
    let mut e = kaconf::value::Emitter::default();
    body.emit_body(&mut e);
    let mut out: Vec<(String, String)> = Vec::new();
    for line in e.text.lines() {
        let top = !line.starts_with([' ', '\t']) && line.trim() != "}";
        if top {
            let keyword = line
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
            out.push((keyword, line.to_owned()));
        } else if let Some(last) = out.last_mut() {
            last.1.push('\n');
            last.1.push_str(line);
        }
    }
    out.retain(|(k, _)| !skip.contains(&k.as_str()));
    out
}

/// The keywords whose statements differ between two sections.
fn changed_keywords<S: kaconf::section::Section>(old: &S, new: &S, skip: &[&str]) -> Vec<String> {
    let (a, b) = (statements(old, skip), statements(new, skip));
    let mut keys: BTreeSet<&str> = BTreeSet::new();
    for (k, _) in a.iter().chain(&b) {
        keys.insert(k);
    }
    keys.into_iter()
        .filter(|k| {
            let pick = |v: &[(String, String)]| -> Vec<String> {
                v.iter()
                    .filter(|(x, _)| x == k)
                    .map(|(_, t)| t.clone())
                    .collect()
            };
            pick(&a) != pick(&b)
        })
        .map(str::to_owned)
        .collect()
}

fn service_id(vs: &kaconf::model::VirtualServer) -> ServiceId {
    ServiceId {
        name: crate::dataplane::service_name(&vs.service),
        protocol: vs.body.protocol.map_or("TCP", |p| p.as_str()),
    }
}

/// A real server's address as a checker sees it (the virtual server's
/// port where it names none).
fn real_addr(vs: &kaconf::model::VirtualServer, r: &kaconf::model::RealServer) -> SocketAddr {
    let port = match vs.service {
        kaconf::model::ServiceAddr::Ip { port, .. } => port,
        _ => 0,
    };
    SocketAddr::new(r.addr, r.port.unwrap_or(port))
}

/// The virtual server part of a reload: services added, removed and
/// changed, and in the kept ones real servers added, removed and changed.
pub fn services(old: &kaconf::Config, new: &kaconf::Config) -> Vec<Change> {
    let mut out = Vec::new();
    for o in &old.virtual_servers {
        let id = service_id(o);
        if !new.virtual_servers.iter().any(|n| service_id(n) == id) {
            out.push(Change::ServiceRemove { service: id });
        }
    }
    for n in &new.virtual_servers {
        let id = service_id(n);
        let Some(o) = old.virtual_servers.iter().find(|o| service_id(o) == id) else {
            out.push(Change::ServiceAdd { service: id });
            continue;
        };
        let what = changed_keywords(&o.body, &n.body, &["real_server"]);
        if !what.is_empty() {
            out.push(Change::ServiceUpdate {
                service: id.clone(),
                what,
            });
        }
        for r in &o.body.real_servers {
            let addr = real_addr(o, r);
            if !n.body.real_servers.iter().any(|x| real_addr(n, x) == addr) {
                out.push(Change::RealRemove {
                    service: id.clone(),
                    real: addr,
                });
            }
        }
        for r in &n.body.real_servers {
            let addr = real_addr(n, r);
            match o.body.real_servers.iter().find(|x| real_addr(o, x) == addr) {
                None => out.push(Change::RealAdd {
                    service: id.clone(),
                    real: addr,
                }),
                Some(x) => {
                    let what = changed_keywords(&x.body, &r.body, &[]);
                    if !what.is_empty() {
                        out.push(Change::RealUpdate {
                            service: id.clone(),
                            real: addr,
                            what,
                        });
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
#[path = "change_tests.rs"]
mod tests;
