//! The health model: each real server's health (all its checkers must pass)
//! and weight, each virtual server's quorum and sorry server, from the
//! checkers' events; keepalived's log lines, notify scripts, FIFO lines and
//! e-mails on every change; what a reload keeps.

use super::{
    argv, checker_specs, service, Context, Event, RealServerStatus, ServiceAddr, Spec, Transition,
    VirtualServerStatus,
};

/// One real server as the checkers see it.
#[derive(Debug)]
pub(super) struct Real {
    /// Its checkers' ids.
    pub(super) checkers: Vec<usize>,
    /// The configured weight.
    pub(super) weight: u32,
    pub(super) notify_up: Option<crate::exec::Script>,
    pub(super) notify_down: Option<crate::exec::Script>,
    pub(super) smtp_alert: bool,
    /// `inhibit_on_failure`: a failed server stays in the pool at weight 0
    /// (the data plane's business; the log says "Disabling").
    pub(super) inhibit: bool,
    /// Where it is (the data plane's view takes it typed, not from the
    /// status strings).
    pub(super) addr: std::net::SocketAddr,
}

/// Virtual server `name`'s quorum at start, warned about if clamped.
pub(super) fn vs_quorum(
    v: &kaconf::model::VirtualServerBody,
    name: &str,
    real: &[Real],
    shown: &[RealServerStatus],
) -> check::quorum::Quorum {
    let total: u64 = real.iter().map(|r| u64::from(r.weight)).sum();
    let live: u64 = real
        .iter()
        .zip(shown)
        .filter(|(_, s)| s.healthy)
        .map(|(r, _)| u64::from(r.weight))
        .sum();
    let count = |c: Option<kaconf::value::Count>, d: u64| {
        c.map_or(d, |n| u64::try_from(n.get()).unwrap_or(d))
    };
    let (quorum, warning) =
        check::quorum::Quorum::new(count(v.quorum, 1), count(v.hysteresis, 0), total, live);
    if let Some(w) = warning {
        tracing::warn!("virtual server {name}: {w}");
    }
    if !quorum.is_up() {
        tracing::info!(
            "Starting with quorum down {}-{}={} > {live} for VS {name}",
            quorum.quorum,
            quorum.hysteresis,
            quorum.quorum + quorum.hysteresis
        );
    }
    quorum
}

impl Real {
    /// A real server's settings, its own else its virtual server's.
    pub(super) fn new(
        r: &kaconf::model::RealServerBody,
        v: &kaconf::model::VirtualServerBody,
        vs_weight: Option<u32>,
        vs_alert: bool,
        addr: std::net::SocketAddr,
    ) -> Self {
        Real {
            addr,
            weight: r
                .weight
                .map(|w| u32::try_from(w.get()).unwrap_or(1))
                .or(vs_weight)
                .unwrap_or(1),
            notify_up: argv(r.notify_up.as_ref()),
            notify_down: argv(r.notify_down.as_ref()),
            smtp_alert: r.smtp_alert.map_or(vs_alert, |s| s.0),
            inhibit: r
                .inhibit_on_failure
                .or(v.inhibit_on_failure)
                .is_some_and(|s| s.0),
            checkers: Vec::new(),
        }
    }
}

/// One virtual server: its real servers and its quorum.
#[derive(Debug)]
pub(super) struct Virtual {
    pub(super) real: Vec<Real>,
    pub(super) proto: &'static str,
    pub(super) quorum: check::quorum::Quorum,
    pub(super) quorum_up: Option<crate::exec::Script>,
    pub(super) quorum_down: Option<crate::exec::Script>,
    pub(super) smtp_alert: bool,
    /// `omega`: at shutdown, run the down notifications of live servers
    /// and of the quorum.
    pub(super) omega: bool,
}

/// Every checker, and what their verdicts add up to.
#[derive(Debug, Default)]
pub struct Plan {
    pub specs: Vec<Spec>,
    /// Each checker's (virtual server, real server).
    pub(super) owner: Vec<(usize, usize)>,
    /// Each checker's verdict: down (alpha checkers start down).
    pub(super) down: Vec<bool>,
    /// Per checker: why its last check failed (while it is down).
    pub(super) reason: Vec<Option<check::reason::Reason>>,
    /// Each checker's `misc_dynamic` weight, if it set one.
    pub(super) dynamic: Vec<Option<u32>>,
    /// Each checker's `FILE_CHECK` weight change.
    pub(super) offset: Vec<i64>,
    pub(super) virtuals: Vec<Virtual>,
    /// The status to publish, kept current.
    pub status: Vec<VirtualServerStatus>,
    pub(super) router_id: String,
    /// Where notify scripts, FIFO lines and e-mails go.
    pub(super) notify: Option<std::sync::mpsc::Sender<crate::notify::Job>>,
}

impl Plan {
    /// The checkers of `config`'s virtual servers; what keeps one from
    /// running is logged (the daemon refuses to start on such errors
    /// before it gets here: see [`crate::preflight`]).
    pub fn new(config: &kaconf::Config) -> Self {
        let mut problems = kaconf::diag::Diagnostics::default();
        let plan = Self::build(config, &mut problems);
        for d in problems.into_vec() {
            match d.severity {
                kaconf::Severity::Error => tracing::error!("{}; not checked", d.message),
                kaconf::Severity::Warning => tracing::warn!("{}", d.message),
            }
        }
        plan
    }

    /// The checkers of `config`'s virtual servers, and every problem in
    /// turning the configuration into them, each at its line.
    pub fn build(config: &kaconf::Config, problems: &mut kaconf::diag::Diagnostics) -> Self {
        let globals = config.globals();
        let policy = crate::exec::Policy::from_globals(&globals);
        let mut cx = Context {
            policy: &policy,
            config,
            problems,
        };
        let mut plan = Plan {
            router_id: globals
                .router_id
                .clone()
                .unwrap_or_else(crate::vrrp::spec::hostname),
            ..Plan::default()
        };
        let global_alert = globals.smtp_alert_checker.or(globals.smtp_alert);
        for vs in &config.virtual_servers {
            // A real server's port defaults to the service's: for a group,
            // its first entry's; a fwmark service has none.
            let (addr, port) = match &vs.service {
                ServiceAddr::Ip { addr, port } => (addr.to_string(), *port),
                ServiceAddr::Fwmark(m) => (format!("fwmark {m}"), 0),
                ServiceAddr::Group(g) => {
                    let port = crate::dataplane::entries(config, &vs.service)
                        .ok()
                        .and_then(|e| {
                            e.iter().find_map(|x| match x {
                                crate::dataplane::Entry::Ip(_, p) => Some(*p),
                                crate::dataplane::Entry::Fwmark(_) => None,
                            })
                        })
                        .unwrap_or(0);
                    (format!("group {g}"), port)
                }
            };
            let v = &vs.body;
            let proto = match v.protocol {
                Some(kaconf::model::Protocol::Udp) => "udp",
                Some(kaconf::model::Protocol::Sctp) => "sctp",
                _ => "tcp",
            };
            let vs_alert = v.smtp_alert.or(global_alert).is_some_and(|s| s.0);
            let vs_weight = v.weight.map(|w| u32::try_from(w.get()).unwrap_or(1));
            let mut real = Vec::new();
            let mut shown = Vec::new();
            for (ri, rs) in v.real_servers.iter().enumerate() {
                let rport = rs.port.unwrap_or(port);
                let r = &rs.body;
                let mut entry = Real::new(
                    r,
                    v,
                    vs_weight,
                    vs_alert,
                    std::net::SocketAddr::new(rs.addr, rport),
                );
                let mut alpha_down = false;
                for c in &r.checkers {
                    for spec in checker_specs(c, rs, rport, v, plan.specs.len(), &mut cx) {
                        alpha_down |= spec.alpha;
                        entry.checkers.push(spec.id);
                        plan.down.push(spec.alpha);
                        plan.reason.push(None);
                        plan.dynamic.push(None);
                        plan.offset.push(0);
                        plan.owner.push((plan.virtuals.len(), ri));
                        plan.specs.push(spec);
                    }
                }
                shown.push(RealServerStatus {
                    address: rs.addr.to_string(),
                    port: rport,
                    weight: entry.weight,
                    healthy: !alpha_down,
                    // An alpha server starts down: its checkers must pass first.
                    reason: alpha_down.then(|| "not passed yet (alpha)".to_owned()),
                    reason_kind: alpha_down.then_some("alpha"),
                });
                real.push(entry);
            }
            let name = service(&addr, proto, port);
            let quorum = vs_quorum(v, &name, &real, &shown);
            let sorry = v
                .sorry_server
                .map(|e| service(&e.addr.to_string(), proto, e.port.unwrap_or(port)));
            plan.status.push(VirtualServerStatus {
                address: addr,
                port,
                protocol: proto.to_ascii_uppercase(),
                quorum_up: quorum.is_up(),
                sorry_server_active: sorry.is_some() && !quorum.is_up(),
                sorry_server: sorry,
                real_servers: shown,
            });
            plan.virtuals.push(Virtual {
                real,
                proto,
                quorum,
                quorum_up: argv(v.quorum_up.as_ref()),
                quorum_down: argv(v.quorum_down.as_ref()),
                smtp_alert: vs_alert,
                omega: v.omega,
            });
        }
        plan
    }

    pub(super) fn send(&self, job: crate::notify::Job) {
        if let Some(tx) = &self.notify {
            let _ = tx.send(job);
        }
    }

    /// keepalived's names of real server `rs` and its virtual server.
    pub(super) fn names(&self, vs: usize, rs: usize) -> (String, String) {
        let v = &self.status[vs];
        let r = &v.real_servers[rs];
        let proto = self.virtuals[vs].proto;
        (
            service(&r.address, proto, r.port),
            service(&v.address, proto, v.port),
        )
    }

    /// Checker `id` of real server (`vs`, `rs`) changed its verdict:
    /// said in the log with why (keepalived names the failure too), and
    /// kept for `status`.
    pub(super) fn transition_said(
        &mut self,
        id: usize,
        vs: usize,
        rs: usize,
        reason: Option<check::reason::Reason>,
    ) {
        let (rname, _) = self.names(vs, rs);
        let what = self.specs.get(id).map_or("check", |s| s.probe.keyword());
        match &reason {
            Some(r) => tracing::info!("{what} of {rname} failed: {r}"),
            None if self.down.get(id) == Some(&false) => {
                tracing::info!("{what} of {rname} succeeded");
            }
            None => {}
        }
        if let Some(slot) = self.reason.get_mut(id) {
            *slot = reason;
        }
    }

    /// Why real server (`vs`, `rs`) is down: its first failing checker
    /// and what failed, and the failure's kind (a metric label).
    pub(super) fn why(&self, vs: usize, rs: usize) -> Option<(String, &'static str)> {
        self.virtuals[vs].real[rs].checkers.iter().find_map(|&c| {
            if !self.down.get(c).copied().unwrap_or(false) {
                return None;
            }
            let what = self.specs.get(c).map_or("check", |s| s.probe.keyword());
            Some(match self.reason.get(c).and_then(Option::as_ref) {
                Some(r) => (format!("{what}: {r}"), r.kind()),
                None => (format!("{what}: not passed yet (alpha)"), "alpha"),
            })
        })
    }

    /// Sets real server (`vs`, `rs`)'s reason in `status`; true if it
    /// changed.
    fn say_why(&mut self, vs: usize, rs: usize) -> bool {
        let (reason, kind) = self.why(vs, rs).unzip();
        let status = &mut self.status[vs].real_servers[rs];
        let changed = status.reason != reason;
        status.reason = reason;
        status.reason_kind = kind;
        changed
    }

    /// Real server (`vs`, `rs`) became healthy or not: keepalived's log
    /// line, `notify_up` / `notify_down` (no arguments), the FIFO line and
    /// the e-mail.
    pub(super) fn real_changed(&self, vs: usize, rs: usize, healthy: bool) {
        let (rname, vname) = self.names(vs, rs);
        let real = &self.virtuals[vs].real[rs];
        let verb = match (healthy, real.inhibit) {
            (true, false) => "Adding service",
            (false, false) => "Removing service",
            (true, true) => "Enabling service",
            (false, true) => "Disabling service",
        };
        let prep = if healthy { "to" } else { "from" };
        let prep = if real.inhibit { "of" } else { prep };
        tracing::info!("{verb} {rname} {prep} VS {vname}");
        self.notify_real(vs, rs, healthy);
    }

    /// Real server (`vs`, `rs`)'s notifications: `notify_up` /
    /// `notify_down` (no arguments), the FIFO line and the e-mail.
    pub(super) fn notify_real(&self, vs: usize, rs: usize, healthy: bool) {
        let (rname, vname) = self.names(vs, rs);
        let real = &self.virtuals[vs].real[rs];
        let script = if healthy {
            &real.notify_up
        } else {
            &real.notify_down
        };
        if let Some(script) = script {
            self.send(crate::notify::Job::Run(script.clone()));
        }
        let state = if healthy { "UP" } else { "DOWN" };
        self.send(crate::notify::Job::Fifo(
            crate::notify::Source::Checkers,
            format!("RS {rname} {vname} {state}\n"),
        ));
        if real.smtp_alert {
            self.send(crate::notify::Job::Mail(crate::notify::Alert {
                subject: format!(
                    "[{}] Realserver {rname} of virtual server {vname} - {state}",
                    self.router_id
                ),
                body: format!(
                    "=> CHECK {} on service <=\r\n",
                    if healthy { "succeed" } else { "failed" }
                ),
            }));
        }
    }

    /// Re-reads virtual server `vs`'s live weight; acts on a quorum flip.
    pub(super) fn quorum(&mut self, vs: usize) {
        let live: u64 = self.status[vs]
            .real_servers
            .iter()
            .filter(|r| r.healthy)
            .map(|r| u64::from(r.weight))
            .sum();
        let v = &mut self.virtuals[vs];
        let Some(flip) = v.quorum.update(live) else {
            return;
        };
        let (q, h) = (v.quorum.quorum, v.quorum.hysteresis);
        let st = &mut self.status[vs];
        st.quorum_up = flip.up;
        st.sorry_server_active = st.sorry_server.is_some() && !flip.up;
        let vname = service(&st.address, v.proto, st.port);
        if flip.up {
            tracing::info!(
                "Gained quorum {q}+{h}={} <= {live} for VS {vname}",
                flip.threshold
            );
        } else {
            tracing::info!(
                "Lost quorum {q}-{h}={} > {live} for VS {vname}",
                flip.threshold
            );
        }
        if let Some(sorry) = &st.sorry_server {
            if flip.up {
                tracing::info!("Removing sorry server {sorry} from VS {vname}");
            } else {
                tracing::info!("Adding sorry server {sorry} to VS {vname}");
            }
        }
        let v = &self.virtuals[vs];
        let script = if flip.up {
            &v.quorum_up
        } else {
            &v.quorum_down
        };
        let state = if flip.up { "UP" } else { "DOWN" };
        let mut jobs: Vec<crate::notify::Job> = script
            .iter()
            .map(|a| crate::notify::Job::Run(a.clone()))
            .collect();
        jobs.push(crate::notify::Job::Fifo(
            crate::notify::Source::Checkers,
            format!("VS {vname} {state}\n"),
        ));
        if v.smtp_alert {
            jobs.push(crate::notify::Job::Mail(crate::notify::Alert {
                subject: format!("[{}] Virtualserver {vname} - {state}", self.router_id),
                // keepalived's text, `+` and `<=` whichever way it went.
                body: format!(
                    "=> {} {q}+{h}={} <= {live} <=\r\n",
                    if flip.up {
                        "Gained quorum"
                    } else {
                        "Lost quorum"
                    },
                    flip.threshold
                ),
            }));
        }
        for j in jobs {
            self.send(j);
        }
    }

    /// Real server (`vs`, `rs`)'s weight from its checkers: a
    /// `misc_dynamic` weight replaces the configured one, `FILE_CHECK`
    /// changes add to it; kept within 0..=65535. True if it changed.
    pub(super) fn reweigh(&mut self, vs: usize, rs: usize) -> bool {
        let real = &self.virtuals[vs].real[rs];
        let base = real
            .checkers
            .iter()
            .find_map(|&c| self.dynamic[c])
            .unwrap_or(real.weight);
        let delta: i64 = real.checkers.iter().map(|&c| self.offset[c]).sum();
        // At most IPVS's (and the configuration's) largest weight.
        let weight = u32::try_from((i64::from(base) + delta).clamp(0, 65_535)).unwrap_or(0);
        let old = self.status[vs].real_servers[rs].weight;
        if old == weight {
            return false;
        }
        let (rname, vname) = self.names(vs, rs);
        tracing::info!("Changing weight from {old} to {weight} for service {rname} of VS {vname}");
        self.status[vs].real_servers[rs].weight = weight;
        true
    }

    /// Each checker's identity across a reload: its virtual server, real
    /// server and what it probes.
    pub(super) fn keys(&self) -> Vec<String> {
        self.specs
            .iter()
            .zip(&self.owner)
            .map(|(spec, &(vs, rs))| {
                let v = &self.status[vs];
                let r = &v.real_servers[rs];
                format!(
                    "{}|{}|{}|{}|{}|{:?}",
                    v.address, v.port, v.protocol, r.address, r.port, spec.probe
                )
            })
            .collect()
    }

    /// A reload: the checkers that were there before keep their verdicts
    /// (and dynamic weights), their servers their health, and a virtual
    /// server whose servers are all known its quorum state — nothing is
    /// notified for what did not change. How many checkers were kept.
    pub fn adopt(&mut self, old: &Plan) -> usize {
        let before: std::collections::HashMap<String, usize> = old
            .keys()
            .into_iter()
            .enumerate()
            .map(|(i, k)| (k, i))
            .collect();
        let mut kept = 0;
        for (k, key) in self.keys().into_iter().enumerate() {
            if let Some(&j) = before.get(&key) {
                self.down[k] = old.down[j];
                self.reason[k].clone_from(&old.reason[j]);
                // The checker starts in that verdict (as `alpha` starts one
                // down): a server that was down at the reload is marked up
                // by its first success, one that was up goes down only by
                // failing again.
                self.specs[k].alpha = old.down[j];
                self.specs[k].resumed = true;
                self.dynamic[k] = old.dynamic[j];
                self.offset[k] = old.offset[j];
                kept += 1;
            }
        }
        for vs in 0..self.virtuals.len() {
            for rs in 0..self.virtuals[vs].real.len() {
                let healthy = !self.virtuals[vs].real[rs]
                    .checkers
                    .iter()
                    .any(|&c| self.down[c]);
                self.status[vs].real_servers[rs].healthy = healthy;
                self.say_why(vs, rs);
                self.reweigh(vs, rs);
            }
            let v = &self.status[vs];
            let was = old.status.iter().position(|o| {
                o.address == v.address && o.port == v.port && o.protocol == v.protocol
            });
            if let Some(o) = was {
                // The old state carried over: a quorum notification only
                // if the new set of servers really crosses the threshold.
                self.virtuals[vs].quorum = self.virtuals[vs]
                    .quorum
                    .with_up(old.virtuals[o].quorum.is_up());
                self.status[vs].quorum_up = old.status[o].quorum_up;
                self.status[vs].sorry_server_active = old.status[o].sorry_server_active;
            }
            self.quorum(vs);
        }
        kept
    }

    /// The daemon stops: every live real server is shut down — with its
    /// down notifications and the quorum's only where `omega` is set, as
    /// keepalived (`clear_service_rs`).
    pub(super) fn shutdown(&self) {
        for (vs, v) in self.virtuals.iter().enumerate() {
            for (rs, r) in self.status[vs].real_servers.iter().enumerate() {
                if !r.healthy {
                    continue;
                }
                let (rname, vname) = self.names(vs, rs);
                tracing::info!("Shutting down service {rname} from VS {vname}");
                if v.omega {
                    self.notify_real(vs, rs, false);
                }
            }
            if v.omega && v.quorum.is_up() {
                let st = &self.status[vs];
                let vname = service(&st.address, v.proto, st.port);
                if let Some(a) = &v.quorum_down {
                    self.send(crate::notify::Job::Run(a.clone()));
                }
                self.send(crate::notify::Job::Fifo(
                    crate::notify::Source::Checkers,
                    format!("VS {vname} DOWN\n"),
                ));
                if v.smtp_alert {
                    self.send(crate::notify::Job::Mail(crate::notify::Alert {
                        subject: format!("[{}] Virtualserver {vname} - DOWN", self.router_id),
                        body: "=> Shutting down <=\r\n".into(),
                    }));
                }
            }
        }
    }

    /// What the data plane needs: every virtual server's real servers and
    /// quorum, in `status` order.
    pub fn view(&self) -> Vec<crate::dataplane::ServiceView> {
        self.status
            .iter()
            .zip(&self.virtuals)
            .map(|(st, v)| crate::dataplane::ServiceView {
                reals: st
                    .real_servers
                    .iter()
                    .zip(&v.real)
                    .map(|(r, real)| crate::dataplane::RealView {
                        addr: real.addr.ip(),
                        port: real.addr.port(),
                        weight: r.weight,
                        healthy: r.healthy,
                        inhibit: real.inhibit,
                    })
                    .collect(),
                quorum_up: st.quorum_up,
            })
            .collect()
    }

    /// Applies one checker event. True if the status changed.
    pub fn event(&mut self, ev: Event) -> bool {
        let id = match ev {
            Event::Weight { id, .. } | Event::Offset { id, .. } | Event::State { id, .. } => id,
        };
        let Some(&(vs, rs)) = self.owner.get(id) else {
            return false;
        };
        let changed = match ev {
            Event::Weight { weight, .. } => {
                self.dynamic[id] = weight;
                self.reweigh(vs, rs)
            }
            Event::Offset { delta, .. } => {
                self.offset[id] = delta;
                self.reweigh(vs, rs)
            }
            Event::State {
                transition, reason, ..
            } => {
                self.down[id] = transition == Transition::Down;
                self.transition_said(id, vs, rs, reason);
                // As keepalived: healthy when none of its checkers is down.
                let healthy = !self.virtuals[vs].real[rs]
                    .checkers
                    .iter()
                    .any(|&c| self.down[c]);
                // A new reason is news for `status` even when the health
                // stays (a second checker failing, the first recovering).
                let said = self.say_why(vs, rs);
                let status = &mut self.status[vs].real_servers[rs];
                if status.healthy == healthy {
                    return said;
                }
                status.healthy = healthy;
                self.real_changed(vs, rs, healthy);
                true
            }
        };
        if changed {
            self.quorum(vs);
        }
        changed
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
