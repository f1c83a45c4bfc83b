//! From `keepalived.conf` to the virtual servers the data planes carry:
//! which plane, which kind, scheduler, persistence, groups and fwmarks,
//! and what only IPVS acts on. Pure but for a look at /proc/net/ip_vs.

use super::{Algo, Carrier, Duration, IpAddr, Kind, Proto, ServiceSpec, SocketAddr};

/// The virtual servers of `config` that the nftables data plane carries;
/// the others are named in the log.
pub fn specs(config: &kaconf::Config) -> Vec<ServiceSpec> {
    use kaconf::model::LbKind;
    let globals = config.globals();
    let ipvs = std::path::Path::new("/proc/net/ip_vs").exists();
    let mut out = Vec::new();
    for (here, vs) in config.virtual_servers.iter().enumerate() {
        let v = &vs.body;
        let plane = v.lb_dataplane.or(globals.lb_dataplane);
        let name = format!("virtual_server {}", service_name(&vs.service));
        let entries = match entries(config, &vs.service) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!("{name}: {e}; not carried");
                continue;
            }
        };
        let carrier = carrier(plane, ipvs, &name);
        let kind = match v.lb_kind.map(|f| f.kind) {
            // The proxy carries connections, not packets: no MACs.
            _ if carrier == Carrier::Proxy => Kind::Nat,
            Some(LbKind::Tun) if carrier == Carrier::Nftables => {
                tracing::warn!(
                    "{name}: lb_kind TUN is not carried by the nftables data plane: nftables has no encapsulating action (IP-in-IP, GUE or GRE); IPVS carries it (modprobe ip_vs)"
                );
                continue;
            }
            Some(_) | None => v.lb_kind.map_or(Kind::Nat, kind_of),
        };
        let proto = match v.protocol {
            Some(kaconf::model::Protocol::Udp) => Proto::Udp,
            Some(kaconf::model::Protocol::Sctp) => {
                tracing::warn!("{name}: SCTP is not carried by the nftables data plane");
                continue;
            }
            _ => Proto::Tcp,
        };
        // keepalived's default scheduler is IPVS's, wlc.
        let algo = v
            .lb_algo
            .and_then(|a| Algo::parse(a.as_str()))
            .unwrap_or(Algo::Wlc);
        if v.lb_algo.is_some_and(|a| Algo::parse(a.as_str()).is_none()) {
            tracing::warn!("{name}: scheduler twos is not supported; using wlc");
        }
        let ipvs_options = ipvs_options(v, &name, proto, algo, carrier);
        for entry in entries {
            let (vip, fwmark, port) = match entry {
                Entry::Ip(addr, port) => (addr, None, port),
                Entry::Fwmark(m) => {
                    if kind == Kind::Dr && carrier == Carrier::Nftables {
                        tracing::warn!("{name}: fwmark {m} with lb_kind DR is not carried by nftables (marks are set after its ingress hook); use NAT or IPVS");
                        continue;
                    }
                    // The real servers' family.
                    let v6 = v.real_servers.first().is_some_and(|r| r.addr.is_ipv6());
                    let any = if v6 {
                        IpAddr::from([0u16; 8])
                    } else {
                        IpAddr::from([0u8; 4])
                    };
                    (any, Some(m), 0)
                }
            };
            let persistence = v.persistence_timeout.filter(|t| t.0 > 0).map(|t| {
                let prefix = v
                    .persistence_granularity
                    .as_deref()
                    .and_then(|g| prefix_of(g, vip))
                    .unwrap_or(if vip.is_ipv4() { 32 } else { 128 });
                (Duration::from_secs(u64::from(t.0)), prefix)
            });
            out.push(ServiceSpec {
                index: here,
                vip,
                fwmark,
                port,
                proto,
                kind,
                algo,
                persistence,
                sorry: v
                    .sorry_server
                    .map(|e| SocketAddr::new(e.addr, e.port.unwrap_or(port))),
                carrier,
                snat: v.lb_snat.is_some_and(|s| s.0),
                proxy: lb::model::ProxyOptions {
                    passive: passive_of(v, port),
                    connect_timeout: v
                        .connect_timeout
                        .map_or(Duration::from_secs(5), kaconf::value::Seconds::duration),
                    proxy_protocol: v.proxy_protocol.map(|p| match p {
                        kaconf::model::ProxyProtocol::V1 => lb::proxy_protocol::Version::V1,
                        kaconf::model::ProxyProtocol::V2 => lb::proxy_protocol::Version::V2,
                    }),
                    max_conns: v
                        .max_conns
                        .map_or(0, |n| u32::try_from(n.get()).unwrap_or(u32::MAX)),
                    proxy_timeout: v.proxy_timeout.map(kaconf::value::Seconds::duration),
                },
                ipvs: ipvs_options.clone(),
            });
        }
    }
    out
}

/// `lb_kind` / `lvs_method` as the data plane's kind.
pub(super) fn kind_of(f: kaconf::model::Forwarding) -> Kind {
    use kaconf::model::{LbKind, TunnelCsum, TunnelType};
    use lb::ipvs::{Tunnel, TunnelCsum as Csum, TunnelKind};
    match f.kind {
        LbKind::Nat => Kind::Nat,
        LbKind::Dr => Kind::Dr,
        LbKind::Tun => Kind::Tun(Tunnel {
            kind: match f.tunnel {
                TunnelType::Ipip => TunnelKind::Ipip,
                TunnelType::Gue => TunnelKind::Gue,
                TunnelType::Gre => TunnelKind::Gre,
            },
            port: f.tunnel_port,
            csum: match f.csum {
                TunnelCsum::NoCsum => Csum::NoCsum,
                TunnelCsum::Csum => Csum::Csum,
                TunnelCsum::RemCsum => Csum::RemCsum,
            },
        }),
    }
}

/// What only IPVS acts on: `ops` (UDP only, as keepalived), the
/// scheduler flags (`sh-*` for sh, `mh-*` for mh, `flag-N` for any), each
/// real server's `lvs_method` and `uthreshold` / `lthreshold`, the sorry
/// server's `sorry_server_lvs_method`. Said in the log where it is
/// ignored.
pub(super) fn ipvs_options(
    v: &kaconf::model::VirtualServerBody,
    name: &str,
    proto: Proto,
    algo: Algo,
    carrier: Carrier,
) -> lb::model::IpvsOptions {
    use lb::ipvs::{SVC_F_ONEPACKET, SVC_F_SCHED1, SVC_F_SCHED2, SVC_F_SCHED3};
    let mut flags = 0;
    if v.ops {
        if proto == Proto::Udp {
            flags |= SVC_F_ONEPACKET;
        } else {
            tracing::warn!("{name}: `ops` applies to UDP only; ignored");
        }
    }
    for (set, bit) in [
        (v.flag_1, SVC_F_SCHED1),
        (v.flag_2, SVC_F_SCHED2),
        (v.flag_3, SVC_F_SCHED3),
    ] {
        if set {
            flags |= bit;
        }
    }
    for (set, word, sched, bit) in [
        (v.sh_fallback, "sh-fallback", Algo::Sh, SVC_F_SCHED1),
        (v.sh_port, "sh-port", Algo::Sh, SVC_F_SCHED2),
        (v.mh_fallback, "mh-fallback", Algo::Mh, SVC_F_SCHED1),
        (v.mh_port, "mh-port", Algo::Mh, SVC_F_SCHED2),
    ] {
        if !set {
            continue;
        }
        if algo == sched {
            flags |= bit;
        } else {
            tracing::warn!(
                "{name}: `{word}` applies to the {} scheduler only; ignored",
                sched.name()
            );
        }
    }
    let count =
        |c: Option<kaconf::value::Count>| c.map_or(0, |n| u32::try_from(n.get()).unwrap_or(0));
    let mut reals = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for r in &v.real_servers {
        let kind = r.body.lvs_method.map(kind_of);
        let (upper, mut lower) = (count(r.body.uthreshold), count(r.body.lthreshold));
        if lower > 0 && (upper == 0 || lower > upper) {
            tracing::warn!(
                "{name}: real_server {}: lthreshold {lower} needs a uthreshold at least as high (IPVS refuses it otherwise); lthreshold ignored",
                r.addr
            );
            lower = 0;
        }
        // DR and TUN cannot change a port: two servers on one address
        // would be one destination.
        let method = kind.or_else(|| v.lb_kind.map(kind_of)).unwrap_or(Kind::Nat);
        if carrier == Carrier::Ipvs && method != Kind::Nat && !seen.insert(r.addr) {
            tracing::warn!(
                "{name}: real_server {} appears twice; with DR or TUN the port cannot differ, so IPVS carries it once",
                r.addr
            );
        }
        if carrier == Carrier::Nftables && (kind.is_some() || upper > 0 || lower > 0) {
            tracing::warn!(
                "{name}: real_server {}: `lvs_method`, `uthreshold` and `lthreshold` are IPVS's; the nftables data plane ignores them",
                r.addr
            );
        }
        reals.push(lb::model::RealOptions {
            addr: r.addr,
            port: r.port.unwrap_or(0),
            kind,
            upper,
            lower,
        });
    }
    if let (Some(sorry), Some(method)) = (v.sorry_server, v.sorry_server_lvs_method) {
        reals.push(lb::model::RealOptions {
            addr: sorry.addr,
            port: sorry.port.unwrap_or(0),
            kind: Some(kind_of(method)),
            upper: 0,
            lower: 0,
        });
    }
    lb::model::IpvsOptions { flags, reals }
}

/// What carries a virtual server (said in the log where it is not what
/// was asked for).
pub(super) fn carrier(plane: Option<kaconf::model::Dataplane>, ipvs: bool, name: &str) -> Carrier {
    use kaconf::model::Dataplane;
    match plane {
        Some(Dataplane::Proxy) => Carrier::Proxy,
        Some(Dataplane::Ipvs) if !ipvs => {
            tracing::warn!(
                "{name}: lb_dataplane ipvs, but {}; using nftables",
                lb::ipvs::unavailable()
                    .map(|e| e.to_string())
                    .unwrap_or_default()
            );
            Carrier::Nftables
        }
        Some(Dataplane::Ipvs) => Carrier::Ipvs,
        None if ipvs => Carrier::Ipvs,
        None | Some(Dataplane::Nftables) => Carrier::Nftables,
    }
}

/// Each real server's `max_fails` and `fail_timeout` (nginx's defaults
/// where not given), for the proxy.
pub(super) fn passive_of(
    v: &kaconf::model::VirtualServerBody,
    port: u16,
) -> Vec<(SocketAddr, u32, Duration)> {
    let (mf, ft) = lb::proxy::Passive::DEFAULT;
    v.real_servers
        .iter()
        .map(|r| {
            (
                SocketAddr::new(r.addr, r.port.unwrap_or(port)),
                r.body
                    .max_fails
                    .map_or(mf, |n| u32::try_from(n.get()).unwrap_or(mf)),
                r.body
                    .fail_timeout
                    .map_or(ft, kaconf::value::Seconds::duration),
            )
        })
        .collect()
}

/// What a `virtual_server` line stands for, once its group is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    Ip(IpAddr, u16),
    Fwmark(u32),
}

/// keepalived's name for a virtual server: `ADDR PORT`, `fwmark N` or
/// `group NAME`.
pub fn service_name(s: &kaconf::model::ServiceAddr) -> String {
    match s {
        kaconf::model::ServiceAddr::Ip { addr, port } => format!("{addr} {port}"),
        kaconf::model::ServiceAddr::Fwmark(m) => format!("fwmark {m}"),
        kaconf::model::ServiceAddr::Group(g) => format!("group {g}"),
    }
}

/// The services a `virtual_server` line names: itself, or each entry of
/// its `virtual_server_group` (`ADDR PORT`, `ADDR-LAST PORT` — a range of
/// the address's last byte, or group for IPv6 — and `fwmark N`).
pub fn entries(
    config: &kaconf::Config,
    s: &kaconf::model::ServiceAddr,
) -> Result<Vec<Entry>, String> {
    use kaconf::model::ServiceAddr;
    let name = match s {
        ServiceAddr::Ip { addr, port } => return Ok(vec![Entry::Ip(*addr, *port)]),
        ServiceAddr::Fwmark(m) => return Ok(vec![Entry::Fwmark(*m)]),
        ServiceAddr::Group(g) => g,
    };
    let group = config
        .virtual_server_groups
        .iter()
        .find(|g| g.name == *name)
        .ok_or_else(|| format!("virtual_server_group {name} is not defined"))?;
    let mut out = Vec::new();
    for line in &group.entries {
        let words = &line.0;
        let bad = || format!("virtual_server_group {name}: `{}`", words.join(" "));
        if words.first().map(String::as_str) == Some("fwmark") {
            let m = words.get(1).and_then(|m| m.parse().ok()).ok_or_else(bad)?;
            out.push(Entry::Fwmark(m));
            continue;
        }
        let (first, port) = match (
            words.first(),
            words.get(1).and_then(|p| p.parse::<u16>().ok()),
        ) {
            (Some(a), Some(p)) => (a.as_str(), p),
            _ => return Err(bad()),
        };
        let (start, last) = first
            .split_once('-')
            .map_or((first, None), |(a, l)| (a, Some(l)));
        let start: IpAddr = start.parse().map_err(|_| bad())?;
        match (start, last) {
            (a, None) => out.push(Entry::Ip(a, port)),
            (IpAddr::V4(a), Some(l)) => {
                let last: u8 = l.parse().map_err(|_| bad())?;
                let o = a.octets();
                for b in o[3]..=last {
                    out.push(Entry::Ip(IpAddr::from([o[0], o[1], o[2], b]), port));
                }
            }
            (IpAddr::V6(a), Some(l)) => {
                let last = u16::from_str_radix(l, 16).map_err(|_| bad())?;
                let mut g = a.segments();
                for x in g[7]..=last {
                    g[7] = x;
                    out.push(Entry::Ip(IpAddr::from(g), port));
                }
            }
        }
    }
    Ok(out)
}

/// `persistence_granularity`: a netmask (`255.255.255.0`) or a prefix
/// length, as a prefix length.
pub(super) fn prefix_of(text: &str, like: IpAddr) -> Option<u8> {
    if let Ok(n) = text.parse::<u8>() {
        return Some(n);
    }
    match (text.parse::<IpAddr>().ok()?, like) {
        (IpAddr::V4(m), IpAddr::V4(_)) => u8::try_from(u32::from(m).leading_ones()).ok(),
        (IpAddr::V6(m), IpAddr::V6(_)) => u8::try_from(u128::from(m).leading_ones()).ok(),
        _ => None,
    }
}

/// `lvs_flush` and `lvs_flush_on_stop`.
pub fn flush(config: &kaconf::Config) -> lb::model::Flush {
    let g = config.globals();
    let all_on_stop = match g.lvs_flush_on_stop.as_ref().map(|w| w.0.as_slice()) {
        Some([]) => true,
        Some([vs]) if vs == "VS" => false,
        Some(other) => {
            // keepalived: "Unknown lvs_flush_on_stop type", and no flush.
            tracing::warn!(
                "lvs_flush_on_stop `{}`: expected no argument or VS; only our virtual servers are removed at stop",
                other.join(" ")
            );
            false
        }
        None => false,
    };
    lb::model::Flush {
        at_start: g.lvs_flush,
        all_on_stop,
    }
}

/// `lvs_timeouts tcp N tcpfin N udp N` as keepalived reads it: each value
/// 0..=31 days (0: not set); a bad value, a missing one or an unknown
/// word is said in the log and left out, the rest kept.
pub fn timeouts(config: &kaconf::Config) -> lb::model::Timeouts {
    const MAX: u32 = 86_400 * 31;
    let mut t = lb::model::Timeouts::default();
    let g = config.globals();
    let Some(words) = g.lvs_timeouts.as_ref().map(|w| &w.0) else {
        return t;
    };
    let mut i = 0;
    while let Some(word) = words.get(i) {
        let slot = match word.as_str() {
            "tcp" => &mut t.tcp,
            "tcpfin" => &mut t.tcp_fin,
            "udp" => &mut t.udp,
            other => {
                tracing::warn!("lvs_timeouts: unknown option `{other}`; ignored");
                i += 1;
                continue;
            }
        };
        match words.get(i + 1).map(|v| v.parse::<u32>()) {
            Some(Ok(v)) if v <= MAX => *slot = (v > 0).then_some(v),
            Some(_) => tracing::warn!(
                "lvs_timeouts {word} `{}`: expected 0..={MAX} seconds; ignored",
                words.get(i + 1).map_or("", String::as_str)
            ),
            None => tracing::warn!("lvs_timeouts {word}: no value; ignored"),
        }
        i += 2;
    }
    t
}

/// What applies to the whole IPVS table: `lvs_flush*`, `lvs_timeouts`.
pub fn table(config: &kaconf::Config) -> lb::model::Table {
    lb::model::Table {
        flush: flush(config),
        timeouts: timeouts(config),
    }
}

/// As a reload leaves it: `lvs_flush` is for the start only.
pub fn table_for_reload(config: &kaconf::Config) -> lb::model::Table {
    let mut t = table(config);
    t.flush.at_start = false;
    t
}
