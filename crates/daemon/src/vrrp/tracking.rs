//! What the instances track: scripts, processes, files, interfaces and
//! witnesses, and the weights and faults they give each instance.

use super::{
    Arc, AtomicBool, Driver, HashMap, Input, Instance, Instant, Result, FILE_POLL, PROCESS_POLL,
};

/// The `vrrp_script`s some instance tracks, each starting good (or failed
/// with `init_fail`), run as their `user` or the global default. A script
/// whose user does not exist, or that `enable_script_security` refuses to run
/// as root, is disabled, as keepalived does: instances do not track it.
pub(super) fn tracked_scripts(
    config: &kaconf::Config,
    instances: &[Instance],
    policy: &crate::exec::Policy,
) -> HashMap<String, (crate::track::ScriptSpec, bool)> {
    let wanted: std::collections::HashSet<&str> = instances
        .iter()
        .flat_map(|i| i.spec.track_scripts.iter().map(|(n, _)| n.as_str()))
        .collect();
    let mut out = HashMap::new();
    for s in config
        .vrrp_scripts
        .iter()
        .filter(|s| wanted.contains(s.name.as_str()))
    {
        let Some(mut spec) = crate::track::script_spec(s) else {
            continue;
        };
        spec.run_as = match policy.run_as(s.body.user.as_ref().map(|w| w.0.as_slice())) {
            Ok(u) => u,
            Err(e) => {
                tracing::error!("Disabling track script {}: {e}", s.name);
                continue;
            }
        };
        if let Some(why) = policy.refuses(&spec.argv, spec.run_as.as_ref()) {
            tracing::warn!(
                "Disabling track script {} since it is insecure: {why}",
                s.name
            );
            continue;
        }
        let good = !spec.init_fail;
        out.insert(s.name.clone(), (spec, good));
    }
    out
}

/// Every `vrrp_track_process` block, assumed satisfied until first counted.
pub(super) fn tracked_processes(
    config: &kaconf::Config,
) -> HashMap<String, (crate::track::ProcessSpec, crate::track::Quorum)> {
    config
        .track_processes
        .iter()
        .filter_map(|p| {
            crate::track::process_spec(p)
                .map(|s| (p.name.clone(), (s, crate::track::Quorum::new(true))))
        })
        .collect()
}

/// Every `track_file` block: path, weight (default 1), reverse, current value.
pub(super) fn tracked_files(
    config: &kaconf::Config,
) -> HashMap<String, (std::path::PathBuf, i64, bool, i64)> {
    config
        .track_files
        .iter()
        .filter_map(|t| {
            let path = std::path::PathBuf::from(t.body.file.as_ref()?);
            let (w, rev) = t.body.weight.map_or((1, false), |w| (w.weight, w.reverse));
            let value = check::file::read_value(&path).ok().flatten().unwrap_or(0);
            Some((t.name.clone(), (path, w, rev, value)))
        })
        .collect()
}

/// Each `bfd_instance` whose events go to VRRP: its default weight and
/// `reverse` for a `track_bfd` that gives none (weight 0: FAULT while
/// the session is not Up).
pub(super) fn bfd_weights(config: &kaconf::Config) -> HashMap<String, (i64, bool)> {
    crate::bfdd::specs(config)
        .into_iter()
        .filter(|s| s.to_vrrp)
        .map(|s| (s.name, (s.weight, s.reverse)))
        .collect()
}

impl Driver {
    /// Whether a BFD session changed since the last look.
    pub(super) fn bfd_changes(&mut self) -> bool {
        let Some(hub) = &self.bfd else {
            return false;
        };
        let g = hub.generation();
        if g == self.bfd_seen {
            return false;
        }
        self.bfd_seen = g;
        true
    }

    /// Feeds every instance the weight and fault of its tracked scripts.
    pub(super) fn apply_tracking(&mut self) {
        for i in 0..self.instances.len() {
            let mut weight = 0i64;
            let mut fault = false;
            let mut faults: Vec<String> = Vec::new();
            // Scripts and processes: good or not, each with its weight.
            let spec = &self.instances[i].spec;
            let verdicts = spec
                .track_scripts
                .iter()
                .filter_map(|(name, own)| {
                    let (s, good) = self.scripts.get(name)?;
                    Some((
                        crate::track::Weighting::chosen(*own, s.weight, s.reverse),
                        *good,
                        format!("track_script {name} failed"),
                    ))
                })
                .chain(spec.track_processes.iter().filter_map(|(name, own)| {
                    let (p, q) = self.processes.get(name)?;
                    let up = &q.up;
                    Some((
                        crate::track::Weighting::chosen(*own, p.weight, p.reverse),
                        *up,
                        format!("track_process {name} not running"),
                    ))
                }))
                .chain(spec.track_bfds.iter().filter_map(|(name, own)| {
                    let (w, rev) = self.bfd_weights.get(name)?;
                    let up = self.bfd.as_ref().is_some_and(|h| h.up(name));
                    Some((
                        crate::track::Weighting::chosen(*own, *w, *rev),
                        up,
                        format!("track_bfd {name} down"),
                    ))
                }));
            for (w, good, what) in verdicts {
                let (dw, f) = w.effect(good);
                weight += dw;
                fault |= f;
                if f {
                    faults.push(what);
                }
            }
            // A tracked file: its value times the weight; weight 0 means any
            // non-zero value is FAULT (keepalived's rules).
            for (name, own) in &self.instances[i].spec.track_files {
                let Some((_, w, rev, value)) = self.files.get(name) else {
                    continue;
                };
                let (w, rev) = own.unwrap_or((*w, *rev));
                if w == 0 {
                    if *value != 0 {
                        fault = true;
                        faults.push(format!("track_file {name} reads {value}"));
                    }
                } else {
                    weight += value.saturating_mul(if rev { -w } else { w });
                }
            }
            // A tracked interface that is down: FAULT, or its (negative) weight.
            for (name, w) in &self.instances[i].spec.track_interfaces {
                if self.links.get(name).copied().unwrap_or(true) {
                    continue;
                }
                match w {
                    None | Some(0) => {
                        fault = true;
                        faults.push(format!("interface {name} down"));
                    }
                    Some(w) => weight += -w.abs(),
                }
            }
            self.instances[i].faults = faults;
            let weight = i32::try_from(weight.clamp(-1000, 1000)).unwrap_or(0);
            self.feed(i, Input::Track { weight, fault });
        }
        self.flush();
    }

    /// Reads the tracked files (every [`FILE_POLL`]); true if one changed.
    pub(super) fn file_changes(&mut self) -> bool {
        let now = self.now();
        if now.since(self.files_checked) < FILE_POLL && self.files_checked != Instant::ZERO {
            return false;
        }
        let first = self.files_checked == Instant::ZERO;
        self.files_checked = now;
        let mut changed = first;
        for (path, _, _, value) in self.files.values_mut() {
            // Out of keepalived's range, or not a regular file: ignored,
            // the last value stays (a refusal is logged once).
            let now_value = match check::file::read_value(path) {
                Ok(Some(v)) => {
                    self.refused_files.remove(path.as_path());
                    v
                }
                Ok(None) => continue,
                Err(why) => {
                    if self.refused_files.insert(path.clone()) {
                        tracing::error!("track_file {}: {why}", path.display());
                    }
                    continue;
                }
            };
            if *value != now_value {
                tracing::info!("Tracked file {} now {now_value}", path.display());
                *value = now_value;
                changed = true;
            }
        }
        changed
    }

    /// Every tracked interface's link as the kernel has it now; true if one
    /// changed. Used at start and when link events were lost.
    pub(super) fn read_links(&mut self) -> bool {
        let all = match crate::netlink::Rtnl::open().and_then(|mut r| r.links()) {
            Ok(all) => all,
            Err(e) => {
                tracing::warn!("cannot read the links: {e}");
                return false;
            }
        };
        let mut changed = false;
        for (name, up) in &mut self.links {
            let now_up = all.iter().any(|l| l.name == *name && l.up);
            if *up != now_up {
                *up = now_up;
                changed = true;
            }
        }
        changed
    }

    /// Link events that arrived; true if a tracked interface changed.
    pub(super) fn link_changes(&mut self) -> bool {
        let Some(events) = &mut self.link_events else {
            return false;
        };
        let changes = match events.drain() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("link events lost ({e}); reading every link");
                return self.read_links();
            }
        };
        let mut changed = false;
        for l in changes {
            if let Some(up) = self.links.get_mut(&l.name) {
                if *up != l.up {
                    tracing::info!(
                        "Netlink reports {} {}",
                        l.name,
                        if l.up { "up" } else { "down" }
                    );
                    *up = l.up;
                    changed = true;
                }
            }
        }
        changed
    }

    /// Counts tracked processes (every [`PROCESS_POLL`]); true if a quorum changed.
    pub(super) fn process_changes(&mut self) -> bool {
        if self.processes.is_empty() {
            return false;
        }
        let now = self.now();
        if now.since(self.processes_checked) < PROCESS_POLL
            && self.processes_checked != Instant::ZERO
        {
            return false;
        }
        self.processes_checked = now;
        let names: Vec<String> = self.processes.keys().cloned().collect();
        let specs: Vec<&crate::track::ProcessSpec> =
            names.iter().map(|n| &self.processes[n].0).collect();
        let counts = crate::track::count_processes(&specs);
        let mut changed = false;
        let wall = std::time::Instant::now();
        for (name, count) in names.iter().zip(counts) {
            if let Some((spec, quorum)) = self.processes.get_mut(name) {
                if quorum.observe(spec.satisfied(count), wall, spec) {
                    tracing::info!(
                        "Tracked process {name} now has {count} running: quorum {}",
                        if quorum.up { "met" } else { "lost" }
                    );
                    changed = true;
                }
            }
        }
        changed
    }

    /// Script verdicts that arrived since the last step.
    pub(super) fn script_changes(&mut self) -> bool {
        let Some(rx) = &self.script_events else {
            return false;
        };
        let mut changed = false;
        while let Ok(ev) = rx.try_recv() {
            if let Some((_, good)) = self.scripts.get_mut(&ev.name) {
                *good = ev.good;
                changed = true;
            }
        }
        changed
    }

    /// The guard's witnesses: each distinct set probed once (on a thread
    /// of its own), for all the instances that name it.
    pub(super) fn start_witnesses(
        &mut self,
        stop: &Arc<AtomicBool>,
    ) -> Result<Option<std::thread::JoinHandle<()>>> {
        let mut sets: Vec<Vec<crate::vrrp::spec::Witness>> = Vec::new();
        let mut members: Vec<Vec<usize>> = Vec::new();
        for (i, inst) in self.instances.iter().enumerate() {
            let Some(g) = inst.spec.guard.as_ref().filter(|g| !g.witnesses.is_empty()) else {
                continue;
            };
            if let Some(k) = sets.iter().position(|s| *s == g.witnesses) {
                members[k].push(i);
            } else {
                sets.push(g.witnesses.clone());
                members.push(vec![i]);
            }
        }
        if sets.is_empty() {
            return Ok(None);
        }
        let (wtx, wrx) = std::sync::mpsc::channel();
        self.witness_events = Some(wrx);
        self.witness_sets = members;
        self.witness_ok = vec![true; sets.len()];
        self.witness_lists.clone_from(&sets);
        Ok(Some(crate::witness::spawn(sets, wtx, stop.clone())?))
    }

    /// The witness verdicts that arrived since the last step, fed to
    /// their instances.
    pub(super) fn witness_changes(&mut self) {
        let Some(rx) = &self.witness_events else {
            return;
        };
        let events: Vec<crate::witness::Event> = rx.try_iter().collect();
        for ev in events {
            if let Some(ok) = self.witness_ok.get_mut(ev.set) {
                *ok = ev.reachable;
            }
            let members = self.witness_sets.get(ev.set).cloned().unwrap_or_default();
            for i in members {
                self.feed(
                    i,
                    Input::Witness {
                        reachable: ev.reachable,
                    },
                );
            }
        }
    }
}
