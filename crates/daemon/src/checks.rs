//! The health-check side of the daemon: every `real_server`'s checkers run
//! by `check::run`, each real server's health (all its checkers must pass,
//! as keepalived) published in `status`. So far `TCP_CHECK`, `HTTP_GET` and
//! `MISC_CHECK`;
//! other checker kinds are named at start and leave their server as it is.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use check::http::{StatusCodes, Url};
use check::run::{Event, Probe, Spec};
use check::state::{Timing, Transition};
use kaconf::model::{Checker, ServiceAddr};
use kaconf::value::Seconds;

use crate::control::{RealServerStatus, VirtualServerStatus};

/// keepalived's defaults (docs/research/checkers.md §1).
const DELAY_LOOP: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const TCP_RETRY: u32 = 1;
const TCP_DELAY_BEFORE_RETRY: Duration = Duration::from_secs(1);

/// The first of the durations given (checker, real server, virtual server).
fn first(values: &[Option<Seconds>]) -> Option<Duration> {
    values.iter().flatten().next().map(|s| s.duration())
}

/// HTTP_GET's `delay_before_retry` default (keepalived: 3 s).
const HTTP_DELAY_BEFORE_RETRY: Duration = Duration::from_secs(3);

/// The URLs of an `HTTP_GET`, checked; `Err` names the bad keyword.
fn urls(h: &kaconf::model::HttpCheck, rs_host: Option<&String>) -> Result<Vec<Url>, String> {
    let mut out = Vec::new();
    for u in &h.url {
        let codes = match &u.status_code {
            Some(w) => StatusCodes::parse(&w.0)?,
            None => StatusCodes::default(),
        };
        let digest = u
            .digest
            .as_deref()
            .map(check::http::parse_digest)
            .transpose()?;
        out.push(Url {
            path: u.path.clone().unwrap_or_else(|| "/".into()),
            host: u
                .virtualhost
                .clone()
                .or_else(|| h.virtualhost.clone())
                .or_else(|| rs_host.cloned()),
            codes,
            digest,
        });
    }
    if out.is_empty() {
        return Err("HTTP_GET needs at least one url { path … }".into());
    }
    Ok(out)
}

/// A checker's timing keywords: the checker's, else the real server's,
/// else the virtual server's, else the checker type's defaults. Also the
/// warmup (default: the delay loop) and alpha.
fn resolve_timing(
    tm: &kaconf::model::CheckTiming,
    r: &kaconf::model::RealServerBody,
    vs: &kaconf::model::VirtualServerBody,
    retry_default: u32,
    dbr_default: Duration,
) -> (Timing, Duration, bool) {
    let delay_loop = first(&[tm.delay_loop, r.delay_loop, vs.delay_loop]).unwrap_or(DELAY_LOOP);
    let timing = Timing {
        delay_loop,
        retry: tm
            .retry
            .or(r.retry)
            .or(vs.retry)
            .map_or(retry_default, |n| {
                u32::try_from(n.get()).unwrap_or(u32::MAX)
            }),
        delay_before_retry: first(&[
            tm.delay_before_retry,
            r.delay_before_retry,
            vs.delay_before_retry,
        ])
        .unwrap_or(dbr_default),
    };
    let warmup = first(&[tm.warmup, r.warmup, vs.warmup]).unwrap_or(delay_loop);
    (timing, warmup, tm.alpha || r.alpha)
}

/// The spec of checker `c` of real server `rs` (port `rport`) in virtual
/// server `v`, if keepalived-rs runs that kind yet.
fn checker_spec(
    checker: &Checker,
    rs: &kaconf::model::RealServer,
    rport: u16,
    vs: &kaconf::model::VirtualServerBody,
    id: usize,
    policy: &crate::exec::Policy,
) -> Option<Spec> {
    let r = &rs.body;
    if let Checker::Misc(m) = checker {
        return misc_spec(m, rs, rport, vs, id, policy);
    }
    let (conn, dbr_default) = match checker {
        Checker::Tcp(t) => (&t.conn, TCP_DELAY_BEFORE_RETRY),
        Checker::HttpGet(h) => (&h.conn, HTTP_DELAY_BEFORE_RETRY),
        Checker::Udp(u) => (&u.conn, TCP_DELAY_BEFORE_RETRY),
        Checker::Ping(p) => (&p.conn, TCP_DELAY_BEFORE_RETRY),
        _ => {
            tracing::warn!(
                "real_server {}:{rport}: {} is not run yet by keepalived-rs",
                rs.addr,
                checker.keyword()
            );
            return None;
        }
    };
    let (timing, warmup, alpha) = resolve_timing(&conn.timing, r, vs, TCP_RETRY, dbr_default);
    let target = SocketAddr::new(
        conn.connect_ip.unwrap_or(rs.addr),
        conn.connect_port
            .map_or(rport, |p| u16::try_from(p.get()).unwrap_or(rport)),
    );
    let bind = conn.bindto.map(|ip| {
        SocketAddr::new(
            ip,
            conn.bind_port
                .map_or(0, |p| u16::try_from(p.get()).unwrap_or(0)),
        )
    });
    let probe = match checker {
        Checker::HttpGet(h) => match urls(h, r.virtualhost.as_ref()) {
            Ok(urls) => Probe::Http { target, bind, urls },
            Err(e) => {
                tracing::error!(
                    "real_server {}:{rport}: HTTP_GET: {e}; not checked",
                    rs.addr
                );
                return None;
            }
        },
        Checker::Udp(u) => match udp_probe(u, target, bind) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(
                    "real_server {}:{rport}: UDP_CHECK: {e}; not checked",
                    rs.addr
                );
                return None;
            }
        },
        Checker::Ping(_) => Probe::Ping {
            target: target.ip(),
        },
        _ => Probe::Tcp { target, bind },
    };
    Some(Spec {
        id,
        probe,
        timing,
        connect_timeout: first(&[conn.connect_timeout, r.connect_timeout, vs.connect_timeout])
            .unwrap_or(CONNECT_TIMEOUT),
        warmup,
        alpha,
    })
}

/// A `UDP_CHECK`'s exchange: `payload` and `require_reply` in hex (as
/// keepalived's `read_hex_str` reads it), reply lengths 0–255 by default.
fn udp_probe(
    u: &kaconf::model::UdpCheck,
    target: SocketAddr,
    bind: Option<SocketAddr>,
) -> Result<Probe, String> {
    let hex = |w: &kaconf::value::Words| {
        kaconf::hmac::read_hex_str(w.0.join(" ").as_bytes()).map(|b| b.to_vec())
    };
    let payload = u.payload.as_ref().map(hex).transpose()?.unwrap_or_default();
    let reply = match &u.require_reply {
        None => None,
        Some(w) if w.0.is_empty() => Some(Vec::new()),
        Some(w) => Some(hex(w)?),
    };
    let len = |c: Option<kaconf::value::Count>, d: usize| {
        c.map_or(d, |n| usize::try_from(n.get()).unwrap_or(d))
    };
    Ok(Probe::Udp {
        target,
        bind,
        payload,
        reply,
        min_len: len(u.min_reply_length, 0),
        max_len: len(u.max_reply_length, 255),
    })
}

/// MISC_CHECK's defaults: `retry` 0; the script's timeout is
/// `misc_timeout`, else the virtual server's `delay_loop`.
fn misc_spec(
    m: &kaconf::model::MiscCheck,
    rs: &kaconf::model::RealServer,
    rport: u16,
    vs: &kaconf::model::VirtualServerBody,
    id: usize,
    policy: &crate::exec::Policy,
) -> Option<Spec> {
    let r = &rs.body;
    let Some(argv) = m.misc_path.as_ref().map(|c| c.0.to_vec()) else {
        tracing::error!(
            "real_server {}:{rport}: MISC_CHECK without misc_path; not checked",
            rs.addr
        );
        return None;
    };
    let run_as = match &m.user {
        Some(w) => match crate::exec::user(&w.0) {
            Ok(u) => Some(u),
            Err(e) => {
                tracing::error!(
                    "real_server {}:{rport}: MISC_CHECK user: {e}; not checked",
                    rs.addr
                );
                return None;
            }
        },
        None => policy.default_user().cloned(),
    };
    if let Some(why) = policy.refuses(&argv, run_as.as_ref()) {
        tracing::warn!(
            "real_server {}:{rport}: MISC_CHECK {argv:?} is insecure ({why}); not run",
            rs.addr
        );
        return None;
    }
    let (timing, warmup, alpha) = resolve_timing(&m.timing, r, vs, 0, TCP_DELAY_BEFORE_RETRY);
    Some(Spec {
        id,
        probe: Probe::Misc {
            argv,
            user: run_as.map(|u| (u.uid, u.gid)),
            dynamic: m.misc_dynamic,
        },
        timing,
        connect_timeout: m
            .misc_timeout
            .map(Seconds::duration)
            .or_else(|| vs.delay_loop.map(Seconds::duration))
            .unwrap_or(DELAY_LOOP),
        warmup,
        alpha,
    })
}

/// A real server's `notify_up` and `notify_down` command lines.
type Notify = (Option<Vec<String>>, Option<Vec<String>>);

/// Where each checker's verdicts go: (virtual server, real server).
#[derive(Debug, Default)]
pub struct Plan {
    pub specs: Vec<Spec>,
    owner: Vec<(usize, usize)>,
    /// The status to publish, real servers' health kept current.
    pub status: Vec<VirtualServerStatus>,
    /// Each checker's verdict: down (alpha checkers start down).
    down: Vec<bool>,
    /// Each real server's configured weight.
    weights: Vec<Vec<u32>>,
    /// Each real server's `notify_up` and `notify_down`.
    notify: Vec<Vec<Notify>>,
    /// Who runs notify scripts, and which may run.
    policy: crate::exec::Policy,
}

impl Plan {
    /// The checkers of `config`'s virtual servers.
    pub fn new(config: &kaconf::Config) -> Self {
        let policy = crate::exec::Policy::from_globals(&config.globals());
        let mut plan = Plan {
            policy: policy.clone(),
            ..Plan::default()
        };
        for vs in &config.virtual_servers {
            let ServiceAddr::Ip { addr, port } = vs.service else {
                tracing::warn!(
                    "virtual_server {:?}: only ADDR PORT services are checked yet",
                    vs.service
                );
                continue;
            };
            let v = &vs.body;
            let mut real = Vec::new();
            for (ri, rs) in v.real_servers.iter().enumerate() {
                let rport = rs.port.unwrap_or(port);
                let r = &rs.body;
                let mut alpha_down = false;
                for c in &r.checkers {
                    let Some(spec) = checker_spec(c, rs, rport, v, plan.specs.len(), &policy)
                    else {
                        continue;
                    };
                    alpha_down |= spec.alpha;
                    plan.down.push(spec.alpha);
                    plan.owner.push((plan.status.len(), ri));
                    plan.specs.push(spec);
                }
                real.push(RealServerStatus {
                    address: rs.addr.to_string(),
                    port: rport,
                    weight: r.weight.map_or(1, |w| u32::try_from(w.get()).unwrap_or(1)),
                    healthy: !alpha_down,
                });
            }
            plan.weights.push(real.iter().map(|r| r.weight).collect());
            plan.notify.push(
                v.real_servers
                    .iter()
                    .map(|rs| {
                        let argv =
                            |c: &Option<kaconf::value::Command>| c.as_ref().map(|c| c.0.to_vec());
                        (argv(&rs.body.notify_up), argv(&rs.body.notify_down))
                    })
                    .collect(),
            );
            plan.status.push(VirtualServerStatus {
                address: addr.to_string(),
                port,
                protocol: "TCP".into(),
                real_servers: real,
            });
        }
        plan
    }

    /// Runs real server (`vs`, `rs`)'s `notify_up` / `notify_down` (no
    /// arguments, as keepalived) on a thread of its own, so the checkers
    /// never wait for it.
    fn notify(&self, vs: usize, rs: usize, healthy: bool) {
        let Some((up, down)) = self.notify.get(vs).and_then(|v| v.get(rs)) else {
            return;
        };
        let Some(argv) = (if healthy { up } else { down }).clone() else {
            return;
        };
        let run_as = self.policy.default_user().cloned();
        if let Some(why) = self.policy.refuses(&argv, run_as.as_ref()) {
            tracing::warn!("Not running {argv:?} since it is insecure: {why}");
            return;
        }
        let spawned = std::thread::Builder::new()
            .name("notify-rs".into())
            .spawn(move || {
                if let crate::exec::Exit::NotStarted(e) =
                    crate::exec::run(&argv, Duration::from_secs(30), run_as.as_ref())
                {
                    tracing::warn!("cannot run {argv:?}: {e}");
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start a notify script: {e}");
        }
    }

    /// A `misc_dynamic` script set real server weight `w` (`None`: back to
    /// the configured weight). True if the status changed.
    pub fn weight(&mut self, id: usize, w: Option<u32>) -> bool {
        let Some(&(vs, rs)) = self.owner.get(id) else {
            return false;
        };
        let weight = w.unwrap_or(self.weights[vs][rs]);
        let status = &mut self.status[vs].real_servers[rs];
        let changed = status.weight != weight;
        status.weight = weight;
        changed
    }

    /// Applies a checker's transition: a real server is healthy when none of
    /// its checkers is down (as keepalived: all must pass). Returns the
    /// server's new health if it changed.
    pub fn apply(&mut self, id: usize, t: Transition) -> Option<(usize, usize, bool)> {
        let (vs, rs) = *self.owner.get(id)?;
        *self.down.get_mut(id)? = t == Transition::Down;
        let healthy = !self
            .owner
            .iter()
            .zip(&self.down)
            .any(|(o, d)| *o == (vs, rs) && *d);
        let status = &mut self.status[vs].real_servers[rs];
        (status.healthy != healthy).then(|| {
            status.healthy = healthy;
            (vs, rs, healthy)
        })
    }
}

/// Runs every checker until `stop`, keeping `status.virtual_servers` current.
pub fn run(
    config: &kaconf::Config,
    stop: &Arc<AtomicBool>,
    status: &crate::control::Shared,
) -> anyhow::Result<()> {
    let mut plan = Plan::new(config);
    if let Ok(mut s) = status.lock() {
        s.virtual_servers.clone_from(&plan.status);
    }
    let specs = plan.specs.clone();
    tracing::info!("Starting {} health checkers", specs.len());
    check::run::run(specs, stop, |ev| {
        let changed = match ev {
            Event::Weight { id, weight } => plan.weight(id, weight),
            Event::State { id, transition } => {
                if let Some((vs, rs, healthy)) = plan.apply(id, transition) {
                    let v = &plan.status[vs];
                    let r = &v.real_servers[rs];
                    tracing::info!(
                        "{} service [{}]:tcp:{} from VS [{}]:tcp:{}",
                        if healthy { "Adding" } else { "Removing" },
                        r.address,
                        r.port,
                        v.address,
                        v.port
                    );
                    plan.notify(vs, rs, healthy);
                    true
                } else {
                    false
                }
            }
        };
        if changed {
            if let Ok(mut s) = status.lock() {
                s.virtual_servers.clone_from(&plan.status);
            }
        }
    })?;
    Ok(())
}
