//! The kernel data plane (nftables) in the daemon: on its own thread, it
//! takes the checkers' view of every virtual server over a channel and
//! makes the kernel carry their traffic (`lb::nft`), one atomic
//! transaction per change. DR needs each real server's MAC: read from the
//! neighbour table (`/proc/net/arp`), asked for with a datagram when it is
//! missing, and a server left out until it is known. Our tables are
//! removed when the daemon stops.

use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

use lb::nft::{Desired, Kind, Proto, Real, Service};
use lb::sched::Algo;

/// One real server as the checkers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealView {
    pub addr: IpAddr,
    pub port: u16,
    pub weight: u32,
    pub healthy: bool,
    /// `inhibit_on_failure`: kept at weight 0 while down.
    pub inhibit: bool,
}

/// One virtual server as the checkers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceView {
    pub reals: Vec<RealView>,
    pub quorum_up: bool,
}

/// What a virtual server's configuration says about its data plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    /// Its index in the checkers' view.
    pub index: usize,
    pub vip: IpAddr,
    /// `virtual_server fwmark N` (or a group's `fwmark N`).
    pub fwmark: Option<u32>,
    pub port: u16,
    pub proto: Proto,
    pub kind: Kind,
    pub algo: Algo,
    pub persistence: Option<(Duration, u8)>,
    pub sorry: Option<SocketAddr>,
    /// What carries it.
    pub carrier: Carrier,
    /// Proxy: each real server's `max_fails` and `fail_timeout`, and the
    /// connect timeout (`connect_timeout`, else 5 s).
    pub passive: Vec<(SocketAddr, u32, Duration)>,
    pub connect_timeout: Duration,
    /// Proxy: `proxy_protocol`.
    pub proxy_protocol: Option<lb::proxy_protocol::Version>,
    /// Proxy: `max_conns` (0: none) and `proxy_timeout` (`None`: the
    /// default).
    pub max_conns: u32,
    pub proxy_timeout: Option<Duration>,
    /// `lb_snat` (NAT on nftables).
    pub snat: bool,
    /// What only IPVS acts on (service flags, per-server methods and
    /// thresholds).
    pub ipvs: lb::nft::IpvsOptions,
}

/// The data plane of a virtual server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrier {
    Ipvs,
    Nftables,
    Proxy,
}

/// How often missing MACs are looked for again.
const RETRY: Duration = Duration::from_millis(250);

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
                ipvs: ipvs_options.clone(),
            });
        }
    }
    out
}

/// `lb_kind` / `lvs_method` as the data plane's kind.
fn kind_of(f: kaconf::model::Forwarding) -> Kind {
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
fn ipvs_options(
    v: &kaconf::model::VirtualServerBody,
    name: &str,
    proto: Proto,
    algo: Algo,
    carrier: Carrier,
) -> lb::nft::IpvsOptions {
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
        reals.push(lb::nft::RealOptions {
            addr: r.addr,
            port: r.port.unwrap_or(0),
            kind,
            upper,
            lower,
        });
    }
    if let (Some(sorry), Some(method)) = (v.sorry_server, v.sorry_server_lvs_method) {
        reals.push(lb::nft::RealOptions {
            addr: sorry.addr,
            port: sorry.port.unwrap_or(0),
            kind: Some(kind_of(method)),
            upper: 0,
            lower: 0,
        });
    }
    lb::nft::IpvsOptions { flags, reals }
}

/// What carries a virtual server (said in the log where it is not what
/// was asked for).
fn carrier(plane: Option<kaconf::model::Dataplane>, ipvs: bool, name: &str) -> Carrier {
    use kaconf::model::Dataplane;
    match plane {
        Some(Dataplane::Proxy) => Carrier::Proxy,
        Some(Dataplane::Ipvs) if !ipvs => {
            tracing::warn!(
                "{name}: lb_dataplane ipvs, but {}; using nftables",
                crate::ipvs::unavailable().unwrap_or_default()
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
fn passive_of(v: &kaconf::model::VirtualServerBody, port: u16) -> Vec<(SocketAddr, u32, Duration)> {
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
fn prefix_of(text: &str, like: IpAddr) -> Option<u8> {
    if let Ok(n) = text.parse::<u8>() {
        return Some(n);
    }
    match (text.parse::<IpAddr>().ok()?, like) {
        (IpAddr::V4(m), IpAddr::V4(_)) => u8::try_from(u32::from(m).leading_ones()).ok(),
        (IpAddr::V6(m), IpAddr::V6(_)) => u8::try_from(u128::from(m).leading_ones()).ok(),
        _ => None,
    }
}

/// The neighbour table's complete IPv4 entries (`/proc/net/arp`).
fn arp_table() -> Vec<(IpAddr, [u8; 6])> {
    let text = std::fs::read_to_string("/proc/net/arp").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let ip: IpAddr = f.first()?.parse().ok()?;
            // Flags 0x2: complete.
            let flags = u32::from_str_radix(f.get(2)?.trim_start_matches("0x"), 16).ok()?;
            if flags & 0x2 == 0 {
                return None;
            }
            Some((ip, parse_mac(f.get(3)?)?))
        })
        .collect()
}

fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = text.split(':');
    for b in &mut out {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    (parts.next().is_none() && out != [0; 6]).then_some(out)
}

/// The interface with an address in the same subnet as `addr`.
fn device_for(addr: IpAddr) -> Option<String> {
    for ifa in nix::ifaddrs::getifaddrs().ok()? {
        let (Some(a), Some(m)) = (ifa.address, ifa.netmask) else {
            continue;
        };
        let (Some(a), Some(m), IpAddr::V4(target)) = (a.as_sockaddr_in(), m.as_sockaddr_in(), addr)
        else {
            continue;
        };
        let (a, m) = (u32::from(a.ip()), u32::from(m.ip()));
        if m != 0 && a & m == u32::from(target) & m {
            return Some(ifa.interface_name);
        }
    }
    None
}

/// Asks the kernel to resolve `addr`'s MAC (any datagram to it does).
fn solicit(addr: IpAddr) {
    if let Ok(s) = std::net::UdpSocket::bind((
        if addr.is_ipv4() {
            IpAddr::from([0, 0, 0, 0])
        } else {
            IpAddr::from([0u16; 8])
        },
        0,
    )) {
        let _ = s.send_to(b"", SocketAddr::new(addr, 9));
    }
}

/// The desired kernel state for `specs` given the checkers' `view`, and
/// whether some DR server's MAC is still missing.
pub fn desired(
    specs: &[ServiceSpec],
    view: &[ServiceView],
    arp: &[(IpAddr, [u8; 6])],
) -> (Desired, Vec<IpAddr>) {
    let mut missing = Vec::new();
    let mut services = Vec::new();
    for spec in specs {
        let Some(v) = view.get(spec.index) else {
            continue;
        };
        let mut reals: Vec<Real> = if !v.quorum_up && spec.sorry.is_some() {
            // Quorum lost: the sorry server alone.
            spec.sorry
                .map(|s| Real {
                    addr: s.ip(),
                    port: s.port(),
                    weight: 1,
                    mac: None,
                })
                .into_iter()
                .collect()
        } else {
            v.reals
                .iter()
                .filter(|r| r.healthy || r.inhibit)
                .map(|r| Real {
                    addr: r.addr,
                    port: r.port,
                    weight: if r.healthy { r.weight } else { 0 },
                    mac: None,
                })
                .collect()
        };
        let mut device = String::new();
        let mut device_mac = [0u8; 6];
        // DR on nftables needs each server's MAC and the interface; IPVS
        // does its own neighbour work.
        if spec.kind == Kind::Dr && spec.carrier == Carrier::Nftables {
            for r in &mut reals {
                r.mac = arp.iter().find(|(ip, _)| *ip == r.addr).map(|(_, m)| *m);
                if r.mac.is_none() {
                    missing.push(r.addr);
                }
            }
            if let Some(d) = reals.first().and_then(|r| device_for(r.addr)) {
                device_mac = std::fs::read_to_string(format!("/sys/class/net/{d}/address"))
                    .ok()
                    .and_then(|m| parse_mac(m.trim()))
                    .unwrap_or_default();
                device = d;
            } else {
                if let Some(r) = reals.first() {
                    tracing::warn!(
                        "virtual_server {} {}: no interface reaches real server {} directly (DR needs one); not carried",
                        spec.vip,
                        spec.port,
                        r.addr
                    );
                }
                continue;
            }
        }
        services.push(Service {
            vip: spec.vip,
            fwmark: spec.fwmark,
            port: spec.port,
            proto: spec.proto,
            kind: spec.kind,
            algo: spec.algo,
            device,
            device_mac,
            reals,
            persistence: spec.persistence,
            sorry: !v.quorum_up && spec.sorry.is_some(),
            snat: spec.snat,
            ipvs: spec.ipvs.clone(),
        });
    }
    (Desired { services }, missing)
}

/// Starts the data plane's thread; it runs until the sender is dropped,
/// then removes our tables.
/// What the data plane thread is told.
#[derive(Debug)]
pub enum Msg {
    /// The checkers' view changed.
    View(Vec<ServiceView>),
    /// A reload: the virtual servers, the checkers' view of them, and
    /// `lvs_flush_on_stop`.
    Reload(Vec<ServiceSpec>, Vec<ServiceView>, crate::ipvs::Flush),
}

pub fn start(
    specs: Vec<ServiceSpec>,
    flush: crate::ipvs::Flush,
    status: crate::control::Shared,
) -> std::io::Result<Thread> {
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("dataplane".into())
        .spawn(move || run(&specs, flush, &rx, &status))?;
    Ok(Thread {
        tx: Some(tx),
        handle: Some(handle),
    })
}

/// The data plane's thread: dropped (also while its owner unwinds from a
/// panic), it closes the thread's channel and waits until the thread has
/// removed our tables and listeners.
#[derive(Debug)]
pub struct Thread {
    tx: Option<Sender<Msg>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Thread {
    /// Whether the thread has ended while it should be running (it
    /// panicked: it ends otherwise only when told to).
    pub fn died(&self) -> bool {
        self.handle
            .as_ref()
            .is_none_or(std::thread::JoinHandle::is_finished)
    }

    /// Where to send changes. The thread ends when every sender, this
    /// one's included, is gone.
    pub fn sender(&self) -> Sender<Msg> {
        match &self.tx {
            Some(tx) => tx.clone(),
            None => std::sync::mpsc::channel().0,
        }
    }
}

impl Drop for Thread {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(h) = self.handle.take() {
            if h.join().is_err() {
                tracing::error!("the data plane thread panicked");
            }
        }
    }
}

/// Publishes what the planes count (the proxy) in `status`.
fn publish(
    planes: &[(Carrier, Box<dyn lb::DataPlane>, Vec<ServiceSpec>)],
    status: &crate::control::Shared,
) {
    let counters: Vec<crate::control::ProxyCounter> = planes
        .iter()
        .flat_map(|(_, p, _)| p.counters())
        .map(|(vs, rs, active, bytes)| crate::control::ProxyCounter {
            virtual_server: vs.to_string(),
            real_server: rs.to_string(),
            active_connections: active,
            bytes,
        })
        .collect();
    let limits = planes
        .iter()
        .find_map(|(_, p, _)| p.admission())
        .map(proxy_limits);
    if let Ok(mut s) = status.lock() {
        if s.proxy != counters {
            s.proxy = counters;
        }
        if s.proxy_limits != limits {
            s.proxy_limits = limits;
        }
    }
}

/// The proxy's admission in `status`, with the descriptors the daemon has
/// open (counted at most once a second: /proc/self/fd lists every one).
#[allow(clippy::needless_pass_by_value)]
fn proxy_limits(a: lb::proxy::Admission) -> crate::control::ProxyLimits {
    thread_local! {
        static OPEN: std::cell::Cell<Option<(std::time::Instant, u64)>> =
            const { std::cell::Cell::new(None) };
    }
    let fds_open = OPEN.with(|c| match c.get() {
        Some((at, n)) if at.elapsed() < Duration::from_secs(1) => n,
        last => {
            // Out of descriptors, the directory cannot be opened: the
            // last count stands.
            let n = std::fs::read_dir("/proc/self/fd").map_or_else(
                |_| last.map_or(0, |l| l.1),
                |d| d.count().saturating_sub(1) as u64,
            );
            c.set(Some((std::time::Instant::now(), n)));
            n
        }
    });
    crate::control::ProxyLimits {
        fd_limit: a.fd_limit,
        fd_reserve: a.fd_reserve,
        fds_open,
        proxy_fds: a.fds_held,
        max_connections: a.max_conns,
        accept_errors: a.accept_errors,
        virtual_servers: a
            .services
            .iter()
            .map(|(vs, udp, p)| crate::control::ProxyServiceLimits {
                virtual_server: vs.to_string(),
                protocol: if *udp { "UDP" } else { "TCP" }.into(),
                connections: p.connections,
                max_conns: p.max_conns,
                proxy_timeout: p.idle.map_or(0, |d| d.as_secs()),
                refused: [
                    ("max_conns".to_owned(), p.refused_max_conns),
                    ("descriptors".to_owned(), p.refused_descriptors),
                ]
                .into_iter()
                .collect(),
                idle_timeouts: p.idle_timeouts,
            })
            .collect(),
    }
}

/// The proxy's settings of its services.
fn proxy_settings(specs: &[ServiceSpec]) -> crate::proxy::Settings {
    specs
        .iter()
        .map(|s| {
            (
                (SocketAddr::new(s.vip, s.port), s.proto == Proto::Udp),
                crate::proxy::Service {
                    passive: s.passive.clone(),
                    connect_timeout: s.connect_timeout,
                    proxy_protocol: s.proxy_protocol,
                    max_conns: s.max_conns,
                    proxy_timeout: s.proxy_timeout,
                },
            )
        })
        .collect()
}

/// Opens the data plane `carrier` names.
fn open_plane(
    carrier: Carrier,
    specs: &[ServiceSpec],
    flush: crate::ipvs::Flush,
) -> Option<Box<dyn lb::DataPlane>> {
    match carrier {
        Carrier::Proxy => match crate::proxy::Plane::new(proxy_settings(specs)) {
            Ok(p) => Some(Box::new(p)),
            Err(e) => {
                tracing::error!("{e}; the proxied virtual servers are not carried");
                None
            }
        },
        Carrier::Ipvs => match crate::ipvs::Plane::open(flush) {
            Ok(p) => Some(Box::new(p)),
            Err(e) => {
                tracing::error!("IPVS: {e}; its virtual servers are not carried");
                None
            }
        },
        Carrier::Nftables => Some(Box::new(lb::nft::Nft::default())),
    }
}

/// Each data plane with the virtual servers it carries; a reload keeps
/// the planes it still needs (with their listeners and tables), opens
/// the new ones, and leaves the others with nothing to carry.
fn arrange(
    planes: &mut Vec<(Carrier, Box<dyn lb::DataPlane>, Vec<ServiceSpec>)>,
    specs: &[ServiceSpec],
    flush: crate::ipvs::Flush,
) {
    let nat = specs
        .iter()
        .any(|s| s.kind == Kind::Nat && s.carrier != Carrier::Proxy);
    if nat
        && std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").is_ok_and(|v| v.trim() == "0")
    {
        tracing::warn!("lb_kind NAT needs IP forwarding: net.ipv4.ip_forward is 0");
    }
    for carrier in [Carrier::Proxy, Carrier::Ipvs, Carrier::Nftables] {
        let mine: Vec<ServiceSpec> = specs
            .iter()
            .filter(|s| s.carrier == carrier)
            .cloned()
            .collect();
        if let Some(slot) = planes.iter_mut().find(|p| p.0 == carrier) {
            if let Some(p) = slot
                .1
                .as_any_mut()
                .and_then(|a| a.downcast_mut::<crate::proxy::Plane>())
            {
                p.set_settings(proxy_settings(&mine));
            }
            if let Some(p) = slot
                .1
                .as_any_mut()
                .and_then(|a| a.downcast_mut::<crate::ipvs::Plane>())
            {
                p.set_flush(flush);
            }
            slot.2 = mine;
        } else if !mine.is_empty() {
            if let Some(p) = open_plane(carrier, &mine, flush) {
                planes.push((carrier, p, mine));
            }
        }
    }
}

type Planes = Vec<(Carrier, Box<dyn lb::DataPlane>, Vec<ServiceSpec>)>;

/// The data plane's thread: follows the messages until its channel closes;
/// then, or after a panic, removes what the planes carry (a panic then
/// ends the thread, which the checkers' thread sees: the daemon stops).
fn run(
    specs: &[ServiceSpec],
    flush: crate::ipvs::Flush,
    rx: &Receiver<Msg>,
    status: &crate::control::Shared,
) {
    let mut planes: Planes = Vec::new();
    let followed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        follow(&mut planes, specs, flush, rx, status);
    }));
    if followed.is_err() {
        tracing::error!("the data plane thread panicked; removing what it carried");
    }
    for (_, plane, _) in &mut planes {
        if let Err(e) = plane.clear() {
            tracing::warn!("removing what {} carried: {e}", plane.name());
        }
    }
}

fn follow(
    planes: &mut Planes,
    specs: &[ServiceSpec],
    flush: crate::ipvs::Flush,
    rx: &Receiver<Msg>,
    status: &crate::control::Shared,
) {
    arrange(planes, specs, flush);
    let mut view: Option<Vec<ServiceView>> = None;
    let mut last_error: Option<String> = None;
    loop {
        let mut disconnected = false;
        match rx.recv_timeout(RETRY) {
            Ok(first) => {
                // Everything waiting; the newest view only.
                for msg in std::iter::once(first).chain(rx.try_iter()) {
                    match msg {
                        Msg::View(v) => view = Some(v),
                        Msg::Reload(s, v, f) => {
                            arrange(planes, &s, f);
                            view = Some(v);
                        }
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => disconnected = true,
        }
        if disconnected {
            break;
        }
        publish(planes, status);
        check::fault::at("dataplane");
        let Some(v) = &view else {
            continue;
        };
        let arp = arp_table();
        for (_, plane, specs) in planes.iter_mut() {
            let (d, missing) = desired(specs, v, &arp);
            if plane.name() == "nftables" {
                for ip in &missing {
                    solicit(*ip);
                }
            }
            match plane.apply(&d) {
                Ok(true) => {
                    tracing::info!(
                        "{}: {} virtual servers carried ({} real servers)",
                        plane.name(),
                        d.services.len(),
                        d.services
                            .iter()
                            .map(|s| s.reals.iter().filter(|r| r.weight > 0).count())
                            .sum::<usize>()
                    );
                    last_error = None;
                }
                Ok(false) => {}
                Err(e) => {
                    if last_error.as_deref() != Some(&e) {
                        tracing::error!("{e}");
                    }
                    last_error = Some(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn granularity_as_mask_or_prefix() {
        let v4 = IpAddr::from([198, 51, 100, 250]);
        assert_eq!(prefix_of("255.255.255.0", v4), Some(24));
        assert_eq!(prefix_of("16", v4), Some(16));
        assert_eq!(prefix_of("ffff:ffff::", IpAddr::from([0u16; 8])), Some(32));
        assert_eq!(prefix_of("nonsense", v4), None);
    }

    #[test]
    fn group_entries_with_ranges_and_marks() {
        let text = "virtual_server_group web {\n 198.51.100.250-252 80\n 2001:db8::a-b 443\n fwmark 7\n}\nvirtual_server group web {\n}\nvirtual_server group nope {\n}\n";
        let loaded = kaconf::parse_str(
            std::path::Path::new("t.conf"),
            text,
            &kaconf::Options::default(),
        );
        let config = loaded.config;
        let e = entries(&config, &config.virtual_servers[0].service).unwrap_or_default();
        let v4 = |b: u8| Entry::Ip(IpAddr::from([198, 51, 100, b]), 80);
        let v6 = |g: u16| Entry::Ip(IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, g]), 443);
        assert_eq!(
            e,
            [
                v4(250),
                v4(251),
                v4(252),
                v6(0xa),
                v6(0xb),
                Entry::Fwmark(7)
            ]
        );
        assert!(entries(&config, &config.virtual_servers[1].service).is_err());
    }

    #[test]
    fn macs() {
        assert_eq!(
            parse_mac("02:00:5e:00:01:33"),
            Some([2, 0, 0x5e, 0, 1, 0x33])
        );
        assert_eq!(parse_mac("00:00:00:00:00:00"), None);
        assert_eq!(parse_mac("02:00"), None);
    }

    fn spec(kind: Kind) -> ServiceSpec {
        ServiceSpec {
            index: 0,
            vip: IpAddr::from([198, 51, 100, 250]),
            fwmark: None,
            port: 80,
            proto: Proto::Tcp,
            kind,
            algo: Algo::Rr,
            persistence: None,
            sorry: Some(SocketAddr::from(([198, 51, 100, 60], 80))),
            carrier: Carrier::Nftables,
            snat: false,
            passive: Vec::new(),
            connect_timeout: Duration::from_secs(5),
            proxy_protocol: None,
            max_conns: 0,
            proxy_timeout: None,
            ipvs: lb::nft::IpvsOptions::default(),
        }
    }

    fn view(healthy: [bool; 2], inhibit: bool, quorum_up: bool) -> Vec<ServiceView> {
        vec![ServiceView {
            reals: healthy
                .iter()
                .enumerate()
                .map(|(i, &h)| RealView {
                    addr: IpAddr::from([198, 51, 100, 50 + u8::try_from(i).unwrap_or(0)]),
                    port: 80,
                    weight: 3,
                    healthy: h,
                    inhibit,
                })
                .collect(),
            quorum_up,
        }]
    }

    #[test]
    fn healthy_servers_inhibited_ones_at_0_and_the_sorry_server() {
        let (d, _) = desired(&[spec(Kind::Nat)], &view([true, false], false, true), &[]);
        assert_eq!(d.services[0].reals.len(), 1);
        let (d, _) = desired(&[spec(Kind::Nat)], &view([true, false], true, true), &[]);
        assert_eq!(
            d.services[0]
                .reals
                .iter()
                .map(|r| r.weight)
                .collect::<Vec<_>>(),
            [3, 0]
        );
        let (d, _) = desired(&[spec(Kind::Nat)], &view([false, false], false, false), &[]);
        assert!(d.services[0].sorry);
        assert_eq!(
            d.services[0].reals[0].addr,
            IpAddr::from([198, 51, 100, 60])
        );
    }
}
