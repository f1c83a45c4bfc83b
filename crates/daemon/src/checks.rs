//! The health-check side of the daemon: every `real_server`'s checkers run
//! by `check::run`; each real server's health (all its checkers must pass,
//! as keepalived) and weight, and each virtual server's quorum, published
//! in `status`, with keepalived's log lines, notify scripts, FIFO lines and
//! e-mails on every change. Every checker kind but `BFD_CHECK` runs.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use check::http::{StatusCodes, Url};
use check::run::{Event, Probe, Spec, Tls};
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
    let version = match h.http_protocol.as_ref().and_then(|w| w.0.first()) {
        Some(v) => check::http::Version::parse(v)?,
        None => check::http::Version::default(),
    };
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
        let regex = u
            .regex
            .as_deref()
            .map(|r| {
                let options = u
                    .regex_options
                    .as_ref()
                    .map(|w| w.0.clone())
                    .unwrap_or_default();
                check::http::BodyRegex::new(r, &options, u.regex_no_match)
            })
            .transpose()?;
        out.push(Url {
            path: u.path.clone().unwrap_or_else(|| "/".into()),
            version,
            regex,
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
    dbr_default: Option<Duration>,
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
        // No default: the delay loop (DNS_CHECK).
        .unwrap_or(dbr_default.unwrap_or(delay_loop)),
    };
    let warmup = first(&[tm.warmup, r.warmup, vs.warmup]).unwrap_or(delay_loop);
    (timing, warmup, tm.alpha || r.alpha || vs.alpha)
}

/// The specs of checker `checker` of real server `rs` (port `rport`) in
/// virtual server `vs` (an `SMTP_CHECK` has one per `host`), numbered from
/// `id`. What keeps it from running is an error at the real server's line
/// (`-t` reports it, and the daemon does not start on it); what only
/// disables it is a warning there.
fn checker_specs(
    checker: &Checker,
    rs: &kaconf::model::RealServer,
    rport: u16,
    vs: &kaconf::model::VirtualServerBody,
    id: usize,
    cx: &mut Context,
) -> Vec<Spec> {
    let what = format!("real_server {}:{rport}: {}", rs.addr, checker.keyword());
    match specs_of(checker, rs, rport, vs, id, cx) {
        Ok(specs) => specs,
        Err(Problem::Error(e)) => {
            cx.problems.error(rs.origin.0, format!("{what}: {e}"));
            Vec::new()
        }
        Err(Problem::Disabled(why)) => {
            cx.problems.warn(rs.origin.0, format!("{what}: {why}"));
            Vec::new()
        }
    }
}

/// Why a checker gets no spec.
enum Problem {
    /// It cannot run as written.
    Error(String),
    /// It is not run, as keepalived would not run it either.
    Disabled(String),
}

impl From<String> for Problem {
    fn from(e: String) -> Self {
        Problem::Error(e)
    }
}

/// [`checker_specs`]'s work.
fn specs_of(
    checker: &Checker,
    rs: &kaconf::model::RealServer,
    rport: u16,
    vs: &kaconf::model::VirtualServerBody,
    id: usize,
    cx: &Context,
) -> Result<Vec<Spec>, Problem> {
    let r = &rs.body;
    let conn = match checker {
        Checker::Misc(m) => {
            return match misc_spec(m, rs, vs, id, cx.policy)? {
                Ok(spec) => Ok(vec![spec]),
                Err(why) => Err(Problem::Disabled(format!("{why}; not run"))),
            }
        }
        Checker::File(f) => return Ok(vec![file_spec(f, id, cx)?]),
        Checker::Tcp(t) => &t.conn,
        Checker::HttpGet(h) | Checker::SslGet(h) => &h.conn,
        Checker::Udp(u) => &u.conn,
        Checker::Ping(p) => &p.conn,
        Checker::Dns(d) => &d.conn,
        Checker::Smtp(s) => &s.conn,
        Checker::Bfd(_) => {
            return Err(Problem::Disabled(
                "not run by keepalived-rs (no BFD yet)".into(),
            ));
        }
    };
    let (retry_default, dbr_default) = match checker {
        Checker::HttpGet(_) | Checker::SslGet(_) => (TCP_RETRY, Some(HTTP_DELAY_BEFORE_RETRY)),
        // DNS_CHECK: retry 3, delay_before_retry = delay_loop (check_dns.c).
        Checker::Dns(_) => (3, None),
        _ => (TCP_RETRY, Some(TCP_DELAY_BEFORE_RETRY)),
    };
    let (timing, warmup, alpha) = resolve_timing(&conn.timing, r, vs, retry_default, dbr_default);
    let spec = |id, conn: &kaconf::model::CheckConn, probe| Spec {
        id,
        probe,
        timing,
        connect_timeout: first(&[conn.connect_timeout, r.connect_timeout, vs.connect_timeout])
            .unwrap_or(CONNECT_TIMEOUT),
        warmup,
        alpha,
        retry_each_cycle: matches!(checker, Checker::Smtp(_)),
        resumed: false,
    };
    let (target, bind) = endpoints(conn, rs.addr, rport);
    let probe = match checker {
        Checker::HttpGet(h) | Checker::SslGet(h) => match urls(h, r.virtualhost.as_ref()) {
            Ok(urls) => Probe::Http {
                target,
                bind,
                urls,
                tls: matches!(checker, Checker::SslGet(_)).then_some(Tls { sni: h.enable_sni }),
            },
            Err(e) => return Err(e.into()),
        },
        Checker::Udp(u) => udp_probe(u, target, bind)?,
        Checker::Ping(_) => Probe::Ping {
            target: target.ip(),
        },
        Checker::Dns(d) => dns_probe(d, target, bind)?,
        Checker::Smtp(s) => {
            let helo = s
                .helo_name
                .clone()
                .unwrap_or_else(|| check::smtp::DEFAULT_HELO.to_owned());
            // Each `host { }` is a checker of its own (keepalived); its
            // connection keywords, else the checker's.
            if !s.host.is_empty() {
                return Ok(s
                    .host
                    .iter()
                    .enumerate()
                    .map(|(k, h)| {
                        let h = &h.0;
                        let (target, bind) = endpoints(h, rs.addr, rport);
                        let probe = Probe::Smtp {
                            target,
                            bind,
                            helo: helo.clone(),
                        };
                        let mut sp = spec(id + k, h, probe);
                        sp.connect_timeout = h
                            .connect_timeout
                            .map_or(sp.connect_timeout, Seconds::duration);
                        sp
                    })
                    .collect());
            }
            Probe::Smtp { target, bind, helo }
        }
        _ => Probe::Tcp { target, bind },
    };
    Ok(vec![spec(id, conn, probe)])
}

/// A `DNS_CHECK`'s query: `type` (default SOA) and `name` (default the root).
fn dns_probe(
    d: &kaconf::model::DnsCheck,
    target: SocketAddr,
    bind: Option<SocketAddr>,
) -> Result<Probe, String> {
    let qtype = match d.query_type.as_deref() {
        None => check::dns::DEFAULT_TYPE,
        Some(t) => check::dns::parse_type(t)?,
    };
    let name = check::dns::parse_name(d.name.as_deref().unwrap_or(""))?;
    Ok(Probe::Dns {
        target,
        bind,
        name,
        qtype,
    })
}

/// Where a checker connects to (`connect_ip`, `connect_port`, else the
/// real server) and from (`bindto`, `bind_port`).
fn endpoints(
    conn: &kaconf::model::CheckConn,
    addr: std::net::IpAddr,
    rport: u16,
) -> (SocketAddr, Option<SocketAddr>) {
    let target = SocketAddr::new(
        conn.connect_ip.unwrap_or(addr),
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
    (target, bind)
}

/// A `FILE_CHECK`: its `track_file` (a top-level `track_file` block) and
/// the weight, its own else the block's (default 1).
fn file_spec(f: &kaconf::model::FileCheck, id: usize, cx: &Context) -> Result<Spec, String> {
    let name = f
        .track_file
        .as_deref()
        .ok_or("FILE_CHECK has no track_file")?;
    let block = cx
        .track_files
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| format!("track_file {name} not found"))?;
    let path = block
        .body
        .file
        .as_deref()
        .ok_or_else(|| format!("track_file {name} has no file"))?;
    let w = f
        .weight
        .or(block.body.weight)
        .unwrap_or(kaconf::model::TrackWeight {
            weight: 1,
            reverse: false,
        });
    Ok(Spec {
        id,
        probe: Probe::File {
            path: path.into(),
            weight: w.weight,
            reverse: w.reverse,
        },
        timing: Timing {
            delay_loop: check::run::FILE_POLL,
            retry: 0,
            delay_before_retry: check::run::FILE_POLL,
        },
        connect_timeout: check::run::FILE_POLL,
        warmup: Duration::ZERO,
        alpha: false,
        retry_each_cycle: false,
        resumed: false,
    })
}

/// What every checker's spec may need from the rest of the configuration,
/// and where the problems found go.
struct Context<'a> {
    policy: &'a crate::exec::Policy,
    track_files: &'a [kaconf::section::Named<kaconf::model::TrackFile>],
    problems: &'a mut kaconf::diag::Diagnostics,
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
/// `misc_timeout`, else the virtual server's `delay_loop`. `Err`: it
/// cannot run (an error); `Ok(Err(why))`: script security refuses it (a
/// warning, as keepalived disables such a script and goes on).
fn misc_spec(
    m: &kaconf::model::MiscCheck,
    rs: &kaconf::model::RealServer,
    vs: &kaconf::model::VirtualServerBody,
    id: usize,
    policy: &crate::exec::Policy,
) -> Result<Result<Spec, String>, String> {
    let r = &rs.body;
    let Some(argv) = m.misc_path.as_ref().map(|c| c.0.to_vec()) else {
        return Err("no misc_path".into());
    };
    let run_as = match &m.user {
        Some(w) => Some(crate::exec::user(&w.0).map_err(|e| format!("user: {e}"))?),
        None => policy.default_user()?.cloned(),
    };
    if let Some(why) = policy.refuses(&argv, run_as.as_ref()) {
        return Ok(Err(format!("{argv:?} is insecure ({why})")));
    }
    let (timing, warmup, alpha) = resolve_timing(&m.timing, r, vs, 0, Some(TCP_DELAY_BEFORE_RETRY));
    Ok(Ok(Spec {
        id,
        probe: Probe::Misc {
            argv,
            user: run_as.map(|u| (u.uid, u.gid)),
            dynamic: m.misc_dynamic,
        },
        retry_each_cycle: false,
        resumed: false,
        timing,
        connect_timeout: m
            .misc_timeout
            .map(Seconds::duration)
            .or_else(|| vs.delay_loop.map(Seconds::duration))
            .unwrap_or(DELAY_LOOP),
        warmup,
        alpha,
    }))
}

/// A notify script from the configuration.
fn argv(c: Option<&kaconf::value::Script>) -> Option<crate::exec::Script> {
    c.map(crate::exec::Script::from_config)
}

/// keepalived's name for a service: `[ip]:tcp:port`.
fn service(addr: &str, proto: &str, port: u16) -> String {
    format!("[{addr}]:{proto}:{port}")
}

/// One real server as the checkers see it.
#[derive(Debug, Default)]
struct Real {
    /// Its checkers' ids.
    checkers: Vec<usize>,
    /// The configured weight.
    weight: u32,
    notify_up: Option<crate::exec::Script>,
    notify_down: Option<crate::exec::Script>,
    smtp_alert: bool,
    /// `inhibit_on_failure`: a failed server stays in the pool at weight 0
    /// (the data plane's business; the log says "Disabling").
    inhibit: bool,
}

/// Virtual server `name`'s quorum at start, warned about if clamped.
fn vs_quorum(
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
    fn new(
        r: &kaconf::model::RealServerBody,
        v: &kaconf::model::VirtualServerBody,
        vs_weight: Option<u32>,
        vs_alert: bool,
    ) -> Self {
        Real {
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
            ..Real::default()
        }
    }
}

/// One virtual server: its real servers and its quorum.
#[derive(Debug)]
struct Virtual {
    real: Vec<Real>,
    proto: &'static str,
    quorum: check::quorum::Quorum,
    quorum_up: Option<crate::exec::Script>,
    quorum_down: Option<crate::exec::Script>,
    smtp_alert: bool,
    /// `omega`: at shutdown, run the down notifications of live servers
    /// and of the quorum.
    omega: bool,
}

/// Every checker, and what their verdicts add up to.
#[derive(Debug, Default)]
pub struct Plan {
    pub specs: Vec<Spec>,
    /// Each checker's (virtual server, real server).
    owner: Vec<(usize, usize)>,
    /// Each checker's verdict: down (alpha checkers start down).
    down: Vec<bool>,
    /// Per checker: why its last check failed (while it is down).
    reason: Vec<Option<check::reason::Reason>>,
    /// Each checker's `misc_dynamic` weight, if it set one.
    dynamic: Vec<Option<u32>>,
    /// Each checker's `FILE_CHECK` weight change.
    offset: Vec<i64>,
    virtuals: Vec<Virtual>,
    /// The status to publish, kept current.
    pub status: Vec<VirtualServerStatus>,
    router_id: String,
    /// Where notify scripts, FIFO lines and e-mails go.
    notify: Option<std::sync::mpsc::Sender<crate::notify::Job>>,
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
            track_files: &config.track_files,
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
                let mut entry = Real::new(r, v, vs_weight, vs_alert);
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
                    reason: None,
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

    fn send(&self, job: crate::notify::Job) {
        if let Some(tx) = &self.notify {
            let _ = tx.send(job);
        }
    }

    /// keepalived's names of real server `rs` and its virtual server.
    fn names(&self, vs: usize, rs: usize) -> (String, String) {
        let v = &self.status[vs];
        let r = &v.real_servers[rs];
        let proto = self.virtuals[vs].proto;
        (
            service(&r.address, proto, r.port),
            service(&v.address, proto, v.port),
        )
    }

    /// Real server (`vs`, `rs`) became healthy or not: keepalived's log
    /// line, `notify_up` / `notify_down` (no arguments), the FIFO line and
    /// the e-mail.
    /// Checker `id` of real server (`vs`, `rs`) changed its verdict:
    /// said in the log with why (keepalived names the failure too), and
    /// kept for `status`.
    fn transition_said(
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
    /// and what failed.
    fn why(&self, vs: usize, rs: usize) -> Option<String> {
        self.virtuals[vs].real[rs].checkers.iter().find_map(|&c| {
            if !self.down.get(c).copied().unwrap_or(false) {
                return None;
            }
            let what = self.specs.get(c).map_or("check", |s| s.probe.keyword());
            Some(match self.reason.get(c).and_then(Option::as_ref) {
                Some(r) => format!("{what}: {r}"),
                None => format!("{what}: not passed yet"),
            })
        })
    }

    fn real_changed(&self, vs: usize, rs: usize, healthy: bool) {
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
    fn notify_real(&self, vs: usize, rs: usize, healthy: bool) {
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
        self.send(crate::notify::Job::Fifo(format!(
            "RS {rname} {vname} {state}\n"
        )));
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
    fn quorum(&mut self, vs: usize) {
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
        jobs.push(crate::notify::Job::Fifo(format!("VS {vname} {state}\n")));
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
    fn reweigh(&mut self, vs: usize, rs: usize) -> bool {
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
    fn keys(&self) -> Vec<String> {
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
                self.status[vs].real_servers[rs].reason = self.why(vs, rs);
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
    fn shutdown(&self) {
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
                self.send(crate::notify::Job::Fifo(format!("VS {vname} DOWN\n")));
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
                    .filter_map(|(r, real)| {
                        Some(crate::dataplane::RealView {
                            addr: r.address.parse().ok()?,
                            port: r.port,
                            weight: r.weight,
                            healthy: r.healthy,
                            inhibit: real.inhibit,
                        })
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
                let why = self.why(vs, rs);
                let status = &mut self.status[vs].real_servers[rs];
                status.reason = why;
                if status.healthy == healthy {
                    false
                } else {
                    status.healthy = healthy;
                    self.real_changed(vs, rs, healthy);
                    true
                }
            }
        };
        if changed {
            self.quorum(vs);
        }
        changed
    }
}

/// Runs every checker until `stop`, keeping `status.virtual_servers`
/// current; `notify_fifo`'s reader script is started here only when VRRP
/// does not run (`vrrp`: it does, and starts it).
/// Sets its flag when dropped.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The checkers' plan for a reloaded configuration `new`: unchanged
/// checkers keep their state (`Plan::adopt`); `status` and the data plane
/// follow.
fn reloaded(
    plan: &Plan,
    new: &kaconf::Config,
    tx: &std::sync::mpsc::Sender<crate::notify::Job>,
    status: &crate::control::Shared,
    dp_tx: &std::sync::mpsc::Sender<crate::dataplane::Msg>,
) -> Plan {
    let mut fresh = Plan::new(new);
    fresh.notify = Some(tx.clone());
    let kept = fresh.adopt(plan);
    tracing::info!(
        "reload: {} health checkers, {kept} of them kept with their state",
        fresh.specs.len()
    );
    if let Ok(mut s) = status.lock() {
        s.virtual_servers.clone_from(&fresh.status);
    }
    // The new services and the view of them in one message: applied
    // together, never the new specs with the old view.
    let specs = crate::dataplane::specs(new);
    let flush = crate::ipvs::Flush::for_reload(new);
    let _ = dp_tx.send(crate::dataplane::Msg::Reload(specs, fresh.view(), flush));
    fresh
}

pub fn run(
    config: &kaconf::Config,
    stop: &Arc<AtomicBool>,
    status: &crate::control::Shared,
    vrrp: bool,
    reloads: std::sync::mpsc::Receiver<Arc<kaconf::Config>>,
) -> anyhow::Result<()> {
    // Read by the watcher of each round of checkers.
    let reloads = &std::sync::Mutex::new(reloads);
    let mut plan = Plan::new(config);
    let globals = config.globals();
    let fifos: Vec<crate::notify::Fifo> = [
        (
            &globals.notify_fifo,
            globals.notify_fifo_script.as_ref().filter(|_| !vrrp),
        ),
        (
            &globals.lvs_notify_fifo,
            globals.lvs_notify_fifo_script.as_ref(),
        ),
    ]
    .into_iter()
    .filter_map(|(fifo, script)| crate::notify::Fifo::from_config(fifo.as_ref(), script))
    .collect();
    let policy = crate::exec::Policy::from_globals(&globals);
    let (tx, notifier) = crate::notify::start(fifos, crate::vrrp::spec::smtp(&globals), policy)?;
    plan.notify = Some(tx.clone());
    if let Ok(mut s) = status.lock() {
        s.virtual_servers.clone_from(&plan.status);
    }
    // The data plane follows every change the checkers make, and every
    // reload (its listeners and tables outlive a change of checkers).
    let carried = crate::dataplane::specs(config);
    // Also if this thread panics, the data plane's thread is told to end
    // and waited for, so that our tables are gone before the process is.
    let dataplane =
        crate::dataplane::start(carried, crate::ipvs::Flush::of(config), status.clone())?;
    let dp_tx = dataplane.sender();
    let _ = dp_tx.send(crate::dataplane::Msg::View(plan.view()));
    // What runs, for the next reload's change list.
    let mut running: Option<Arc<kaconf::Config>> = None;
    loop {
        let specs = plan.specs.clone();
        tracing::info!("Starting {} health checkers", specs.len());
        // The checkers run until a stop, or until a reload arrives.
        let round_stop = Arc::new(AtomicBool::new(false));
        let pending: Arc<std::sync::Mutex<Option<Arc<kaconf::Config>>>> = Arc::default();
        let dataplane_died = AtomicBool::new(false);
        let next = std::thread::scope(|scope| -> anyhow::Result<Option<Arc<kaconf::Config>>> {
            let (round_stop2, pending2) = (round_stop.clone(), pending.clone());
            let (died, plane) = (&dataplane_died, &dataplane);
            scope.spawn(move || {
                // However the watcher ends (a panic too), the round ends
                // with it, and the scope passes the panic on.
                let _ends_round = SetOnDrop(&round_stop2);
                while !round_stop2.load(Ordering::Relaxed) {
                    check::fault::at("check");
                    if plane.died() {
                        died.store(true, Ordering::Relaxed);
                        break;
                    }
                    if stop.load(Ordering::Relaxed) {
                        round_stop2.store(true, Ordering::Relaxed);
                        break;
                    }
                    let got = reloads
                        .lock()
                        .ok()
                        .and_then(|r| r.recv_timeout(std::time::Duration::from_millis(50)).ok());
                    if let Some(c) = got {
                        if let Ok(mut p) = pending2.lock() {
                            *p = Some(c);
                        }
                        round_stop2.store(true, Ordering::Relaxed);
                    }
                }
            });
            let ran = check::run::run(specs, &round_stop, |ev| {
                if plan.event(ev) {
                    if let Ok(mut s) = status.lock() {
                        s.virtual_servers.clone_from(&plan.status);
                    }
                    let _ = dp_tx.send(crate::dataplane::Msg::View(plan.view()));
                }
            });
            // The watcher ends with the round, however the round ended.
            round_stop.store(true, Ordering::Relaxed);
            ran?;
            if dataplane_died.load(Ordering::Relaxed) {
                anyhow::bail!("the data plane thread ended; the checkers stop with it");
            }
            Ok(pending.lock().ok().and_then(|mut p| p.take()))
        })?;
        let Some(new) = next.filter(|_| !stop.load(Ordering::Relaxed)) else {
            break;
        };
        crate::change::log(&crate::change::services(
            running.as_deref().unwrap_or(config),
            &new,
        ));
        running = Some(new.clone());
        plan = reloaded(&plan, &new, &tx, status, &dp_tx);
    }
    // Our tables go when the data plane's thread sees the channel close.
    drop(dp_tx);
    drop(dataplane);
    plan.shutdown();
    plan.notify = None;
    drop(tx);
    let _ = notifier.join();
    Ok(())
}
