//! From `keepalived.conf` to checker specs: every default keepalived applies to
//! a checker (timing resolved checker → real server → virtual server → the
//! kind's defaults), in one place. Pure.

use super::{
    Checker, Duration, Probe, Seconds, SocketAddr, Spec, StatusCodes, Timing, Tls, Url,
    CONNECT_TIMEOUT, DELAY_LOOP, HTTP_DELAY_BEFORE_RETRY, TCP_DELAY_BEFORE_RETRY, TCP_RETRY,
};

/// The first of the durations given (checker, real server, virtual server).
pub(super) fn first(values: &[Option<Seconds>]) -> Option<Duration> {
    values.iter().flatten().next().map(|s| s.duration())
}

/// The URLs of an `HTTP_GET`, checked; `Err` names the bad keyword.
pub(super) fn urls(
    h: &kaconf::model::HttpCheck,
    rs_host: Option<&String>,
) -> Result<Vec<Url>, check::Invalid> {
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
        return Err(check::Invalid::NoUrl);
    }
    Ok(out)
}

/// A checker's timing keywords: the checker's, else the real server's,
/// else the virtual server's, else the checker type's defaults. Also the
/// warmup (default: the delay loop) and alpha.
pub(super) fn resolve_timing(
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
pub(super) fn checker_specs(
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
pub(super) enum Problem {
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

impl From<check::Invalid> for Problem {
    fn from(e: check::Invalid) -> Self {
        Problem::Error(e.to_string())
    }
}

/// [`checker_specs`]'s work.
pub(super) fn specs_of(
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
        Checker::Bfd(b) => return Ok(vec![bfd_spec(b, id, cx)?]),
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
pub(super) fn dns_probe(
    d: &kaconf::model::DnsCheck,
    target: SocketAddr,
    bind: Option<SocketAddr>,
) -> Result<Probe, check::Invalid> {
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
pub(super) fn endpoints(
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
pub(super) fn file_spec(
    f: &kaconf::model::FileCheck,
    id: usize,
    cx: &Context,
) -> Result<Spec, String> {
    let name = f
        .track_file
        .as_deref()
        .ok_or("FILE_CHECK has no track_file")?;
    let block = cx
        .config
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

/// A `BFD_CHECK`: its `bfd_instance` must exist and send its events to
/// the checkers (not `vrrp` only).
pub(super) fn bfd_spec(
    b: &kaconf::model::BfdCheck,
    id: usize,
    cx: &Context,
) -> Result<Spec, String> {
    let name = b.name.as_deref().ok_or("BFD_CHECK has no name")?;
    let block = cx
        .config
        .bfd_instances
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| format!("bfd_instance {name} not found"))?;
    if block.body.vrrp && !block.body.checker {
        return Err(format!(
            "bfd_instance {name} sends its events to vrrp only; add `checker` to it"
        ));
    }
    Ok(Spec {
        id,
        probe: Probe::Bfd { name: name.into() },
        timing: Timing {
            delay_loop: check::run::FILE_POLL,
            retry: 0,
            delay_before_retry: check::run::FILE_POLL,
        },
        connect_timeout: check::run::FILE_POLL,
        warmup: Duration::ZERO,
        alpha: b.alpha,
        retry_each_cycle: false,
        resumed: false,
    })
}

/// What every checker's spec may need from the rest of the configuration,
/// and where the problems found go.
pub(super) struct Context<'a> {
    pub(super) policy: &'a crate::exec::Policy,
    /// The whole file: `track_file` and `bfd_instance` blocks.
    pub(super) config: &'a kaconf::Config,
    pub(super) problems: &'a mut kaconf::diag::Diagnostics,
}

/// A `UDP_CHECK`'s exchange: `payload` and `require_reply` in hex (as
/// keepalived's `read_hex_str` reads it), reply lengths 0–255 by default.
pub(super) fn udp_probe(
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
pub(super) fn misc_spec(
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
pub(super) fn argv(c: Option<&kaconf::value::Script>) -> Option<crate::exec::Script> {
    c.map(crate::exec::Script::from_config)
}

/// keepalived's name for a service: `[ip]:tcp:port`.
pub(super) fn service(addr: &str, proto: &str, port: u16) -> String {
    format!("[{addr}]:{proto}:{port}")
}
