//! A reload applied to the running instances: what `crate::change::vrrp`
//! decided (start, stop, reconfigure in place).

use super::{
    heartbeat_sockets, open_announcer, socket_for, spec, sync_groups, vrid_index, Action, Driver,
    Input, Instance, InstanceSpec, Instant, Result, Router, SystemInterfaces,
};

/// What of `config` a reload cannot change under running instances (the
/// trackers' and sync groups' bodies, not where they are written).
pub(super) fn trackers(config: &kaconf::Config) -> Trackers {
    fn bodies<T: Clone>(v: &[kaconf::section::Named<T>]) -> Vec<(String, T)> {
        let mut out: Vec<(String, T)> =
            v.iter().map(|n| (n.name.clone(), n.body.clone())).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
    Trackers {
        scripts: bodies(&config.vrrp_scripts),
        files: bodies(&config.track_files),
        processes: bodies(&config.track_processes),
        groups: bodies(&config.sync_groups),
    }
}

/// The trackers and sync groups every instance shares, by name, as
/// configured (bodies only: moving a block in the file changes nothing).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Trackers {
    scripts: Vec<(String, kaconf::model::VrrpScript)>,
    files: Vec<(String, kaconf::model::TrackFile)>,
    processes: Vec<(String, kaconf::model::TrackProcess)>,
    groups: Vec<(String, kaconf::model::SyncGroup)>,
}

impl Driver {
    /// A reload: instances gone from the file stop (priority 0, their
    /// VIPs released), new ones start, and each kept instance whose new
    /// configuration VRRP allows to take in place gets it (its state,
    /// timers and VIPs stay; added VIPs are added and announced, removed
    /// ones removed); any other change is logged and not applied (restart
    /// keepalived-rs for it).
    pub(super) fn reload(&mut self, config: &kaconf::Config) {
        let specs = match spec::instances(config, &SystemInterfaces) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("reload: {e}; the running VRRP configuration stays");
                return;
            }
        };
        let running: Vec<InstanceSpec> = self.instances.iter().map(|i| i.spec.clone()).collect();
        let known = crate::change::Known {
            scripts: self.scripts.keys().cloned().collect(),
            links: self.links.keys().cloned().collect(),
            witnesses: self.witness_lists.clone(),
        };
        let changes =
            crate::change::vrrp(&running, &specs, trackers(config) != self.trackers, &known);
        crate::change::log(&changes);
        if changes.iter().any(crate::change::Change::refuses_all_vrrp) {
            return;
        }
        let (mut added, mut kept) = (Vec::new(), Vec::new());
        for new in specs {
            if crate::change::names(&changes, &new.name, crate::change::Change::started) {
                added.push(new);
            } else if crate::change::names(&changes, &new.name, crate::change::Change::reconfigured)
            {
                kept.push(new);
            }
        }
        let now = self.now();
        // Gone: stopped as on shutdown, then forgotten.
        let gone: Vec<usize> = (0..self.instances.len())
            .filter(|&i| {
                crate::change::names(
                    &changes,
                    &self.instances[i].spec.name,
                    crate::change::Change::stopped,
                )
            })
            .collect();
        for &i in &gone {
            self.feed(i, Input::Stop);
        }
        self.flush();
        for &i in gone.iter().rev() {
            self.instances.remove(i);
        }
        for new in kept {
            if let Some(i) = self.instances.iter().position(|x| x.spec.name == new.name) {
                self.reload_in_place(i, now, new);
            }
        }
        let first_new = self.instances.len();
        for spec in added {
            match self.add_instance(spec) {
                Ok(()) => {}
                Err(e) => tracing::error!("reload: {e:#}"),
            }
        }
        self.bfd_weights = super::tracking::bfd_weights(config);
        self.bfd_seen = 0;
        // Every index-keyed table again.
        self.by_vrid = vrid_index(&self.instances);
        let (groups, group_of) = sync_groups(config, &self.instances);
        self.groups = groups;
        self.group_of = group_of;
        self.deadlines = vrrp::Deadlines::new(self.instances.len());
        for i in 0..self.instances.len() {
            self.deadlines.set(i, self.instances[i].router.poll_at());
        }
        self.witness_sets = self
            .witness_lists
            .iter()
            .map(|set| {
                (0..self.instances.len())
                    .filter(|&i| {
                        self.instances[i]
                            .spec
                            .guard
                            .as_ref()
                            .is_some_and(|g| g.witnesses == *set)
                    })
                    .collect()
            })
            .collect();
        self.apply_tracking();
        for i in first_new..self.instances.len() {
            // What its witnesses say now (the probes report changes only).
            let down = self
                .witness_sets
                .iter()
                .zip(&self.witness_ok)
                .any(|(members, ok)| members.contains(&i) && !ok);
            if down {
                self.feed(i, Input::Witness { reachable: false });
            }
            self.feed(i, Input::Start);
        }
        self.flush();
        self.dirty = true;
    }

    /// Opens what a new instance needs and adds it (stopped).
    pub(super) fn add_instance(&mut self, spec: InstanceSpec) -> Result<()> {
        for a in &spec.addresses {
            if let Err(e) = self.addresses.remove(a) {
                tracing::warn!("({}) cleaning up {}: {e}", spec.name, a.addr);
            }
        }
        let socket = socket_for(&mut self.sockets, &spec)?;
        let heartbeat = heartbeat_sockets(&mut self.sockets, &spec)?;
        open_announcer(&mut self.announcers, &spec);
        self.hmac |= spec.engine.auth_hmac.is_some();
        self.instances.push(Instance {
            router: Router::new(spec.engine.clone()),
            spec,
            socket,
            heartbeat,
            faults: Vec::new(),
        });
        self.set_wall_clock();
        Ok(())
    }

    /// Instance `i` takes `new` in place (`change::vrrp` found it can).
    pub(super) fn reload_in_place(&mut self, i: usize, now: Instant, new: InstanceSpec) {
        let old = &self.instances[i].spec;
        if *old == new {
            return;
        }
        let name = new.name.clone();
        // A VIP moved to an interface nothing announced on before.
        open_announcer(&mut self.announcers, &new);
        let mut actions = std::mem::take(&mut self.actions);
        actions.clear();
        if let Err(what) =
            self.instances[i]
                .router
                .reconfigure(now, new.engine.clone(), &mut actions)
        {
            tracing::warn!(
                "({name}) reload: {what} changed: not applied; restart keepalived-rs for that"
            );
            self.actions = actions;
            return;
        }
        // The engine names the VIPs that come and go; the driver puts the
        // addresses (excluded ones too) on and off itself, leaving those
        // that stay untouched.
        actions.retain(|a| !matches!(a, Action::AddVips(_) | Action::RemoveVips(_)));
        if self.instances[i].router.state() == vrrp::StateName::Master {
            let old = &self.instances[i].spec.addresses;
            for a in old.iter().filter(|a| !new.addresses.contains(a)) {
                if let Err(e) = self.addresses.remove(a) {
                    tracing::error!("({name}) {e}");
                }
            }
            for a in new.addresses.iter().filter(|a| !old.contains(a)) {
                if let Err(e) = self.addresses.add(a) {
                    tracing::error!("({name}) {e}");
                }
            }
        }
        self.instances[i].spec = new;
        self.after(i, &mut actions);
        tracing::info!("({name}) reloaded in place");
    }
}
