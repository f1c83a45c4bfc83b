//! From `keepalived.conf` to engine configurations: every default keepalived
//! applies, in one place. Pure: the only outside knowledge, an interface's
//! addresses, comes in through [`Interfaces`].

use std::net::IpAddr;
use std::time::Duration;

use kaconf::model::{AuthType, Config, InitialState as KaState, VrrpInstance};
use kaconf::section::Named;
use vrrp::router::Garp;
use vrrp::{Auth, Config as Engine, Family, InitialState, Version};

/// What the daemon needs to know about the machine's interfaces.
pub trait Interfaces {
    /// The first address of `family` on `ifname`, preferring non-link-local
    /// for IPv4 and link-local for IPv6 (as VRRPv3 over IPv6 sends from it).
    fn primary(&self, ifname: &str, family: Family) -> Option<IpAddr>;
}

/// One instance, ready to run.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceSpec {
    pub name: String,
    pub interface: String,
    pub engine: Engine,
    /// `vrrp_script` names with the instance's weight and `reverse` for it
    /// (`None`: the script's own).
    pub track_scripts: Vec<(String, Option<(i64, bool)>)>,
    /// `track_file` names, likewise.
    pub track_files: Vec<(String, Option<(i64, bool)>)>,
    /// `track_process` names, likewise.
    pub track_processes: Vec<(String, Option<(i64, bool)>)>,
    /// `track_bfd` names (`bfd_instance`s), likewise.
    pub track_bfds: Vec<(String, Option<(i64, bool)>)>,
    /// Interfaces whose link going down means FAULT (or a weight); the
    /// instance's own interface is tracked unless `dont_track_primary`.
    pub track_interfaces: Vec<(String, Option<i64>)>,
    /// How each VIP is put on the machine.
    pub addresses: Vec<AddressSpec>,
    /// `use_vmac`: the macvlan the VIPs live on.
    pub vmac: Option<VmacSpec>,
    /// `virtual_routes` and `virtual_rules`, installed on MASTER.
    pub routes: Vec<kaconf::route::RouteLine>,
    pub rules: Vec<kaconf::route::RuleLine>,
    /// Scripts to run on state changes.
    pub notify: crate::notify::Scripts,
    /// Mail state changes (`smtp_alert`, else the global `smtp_alert_vrrp`,
    /// else `smtp_alert`; off by default, as keepalived).
    pub smtp_alert: bool,
    /// `split_brain_guard` (the instance's, else `global_defs`'s).
    pub guard: Option<GuardSpec>,
}

/// What the driver does for a split-brain guard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardSpec {
    /// Each heartbeat path: its interface, our address there, the peers.
    pub heartbeat: Vec<(String, IpAddr, Vec<IpAddr>)>,
    pub witnesses: Vec<Witness>,
    pub on_dual_master: Option<crate::exec::Script>,
}

/// A witness the guard probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Witness {
    Icmp(IpAddr),
    Tcp(std::net::SocketAddr),
}

impl std::fmt::Display for Witness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Witness::Icmp(a) => write!(f, "icmp {a}"),
            Witness::Tcp(a) => write!(f, "tcp {a}"),
        }
    }
}

impl GuardSpec {
    /// What the engine is told of it.
    pub fn engine(&self) -> vrrp::guard::GuardConfig {
        vrrp::guard::GuardConfig {
            heartbeat: self
                .heartbeat
                .iter()
                .map(|(_, local, peers)| vrrp::guard::Heartbeat {
                    local: *local,
                    peers: peers.clone(),
                })
                .collect(),
            witnesses: !self.witnesses.is_empty(),
        }
    }
}

/// The instance's `split_brain_guard`, else `global_defs`'s, read.
fn instance_guard(
    b: &VrrpInstance,
    g: &kaconf::model::GlobalDefs,
    family: Family,
    ifs: &dyn Interfaces,
) -> Result<Option<GuardSpec>, String> {
    b.split_brain_guard
        .as_ref()
        .or(g.split_brain_guard.as_ref())
        .map_or(Ok(None), |block| guard(block, family, ifs).map(Some))
}

/// Reads a `split_brain_guard` block.
fn guard(
    block: &kaconf::model::SplitBrainGuard,
    family: Family,
    ifs: &dyn Interfaces,
) -> Result<GuardSpec, String> {
    let mut heartbeat = Vec::new();
    for w in &block.heartbeat_path {
        let [ifname, peers @ ..] = w.0.as_slice() else {
            return Err("heartbeat_path needs an interface and a peer address".into());
        };
        if peers.is_empty() {
            return Err(format!("heartbeat_path {ifname}: no peer address"));
        }
        let peers = peers
            .iter()
            .map(|p| {
                p.parse::<IpAddr>()
                    .map_err(|_| format!("heartbeat_path {ifname}: `{p}` is not an address"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if peers.iter().any(|p| Family::of(p) != family) {
            return Err(format!(
                "heartbeat_path {ifname}: peers must be of the instance's address family"
            ));
        }
        let local = ifs.primary(ifname, family).ok_or_else(|| {
            format!("heartbeat_path: interface {ifname} has no {family:?} address")
        })?;
        heartbeat.push((ifname.clone(), local, peers));
    }
    let mut witnesses = Vec::new();
    for w in &block.witness {
        let witness = match w.0.as_slice() {
            [a] | [_, a] if w.0.len() == 1 || w.0[0] == "icmp" => a
                .parse::<IpAddr>()
                .map(Witness::Icmp)
                .map_err(|_| format!("witness: `{a}` is not an address"))?,
            [kind, a] if kind == "tcp" => a
                .parse::<std::net::SocketAddr>()
                .map(Witness::Tcp)
                .map_err(|_| format!("witness tcp: `{a}` is not ADDR:PORT"))?,
            _ => {
                return Err(format!(
                    "witness: expected `[icmp] ADDR` or `tcp ADDR:PORT`, got `{}`",
                    w.0.join(" ")
                ))
            }
        };
        witnesses.push(witness);
    }
    Ok(GuardSpec {
        heartbeat,
        witnesses,
        on_dual_master: block
            .on_dual_master
            .as_ref()
            .map(crate::exec::Script::from_config),
    })
}

/// A VMAC interface (`use_vmac [NAME]`, `vmac_xmit_base`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmacSpec {
    /// keepalived's default name: `vrrp.VRID`.
    pub name: String,
    /// 00:00:5e:00:01:VRID (IPv4) or 00:00:5e:00:02:VRID (IPv6).
    pub mac: [u8; 6],
    /// Adverts go out on the base interface, not the VMAC.
    pub xmit_base: bool,
}

impl InstanceSpec {
    /// The interface adverts are sent and received on.
    pub fn advert_interface(&self) -> &str {
        match &self.vmac {
            Some(v) if !v.xmit_base => &v.name,
            _ => &self.interface,
        }
    }

    /// The interface VIPs without `dev` live on.
    pub fn vip_interface(&self) -> &str {
        self.vmac.as_ref().map_or(&self.interface, |v| &v.name)
    }

    /// The interface `addr` lives on, and its gratuitous ARPs / NAs leave
    /// from: its `dev`, else [`Self::vip_interface`].
    pub fn interface_of(&self, addr: IpAddr) -> &str {
        self.addresses
            .iter()
            .find(|a| a.addr == addr)
            .map_or_else(|| self.vip_interface(), |a| a.dev.as_str())
    }

    /// Every interface this instance's addresses live on, each once.
    pub fn address_interfaces(&self) -> Vec<&str> {
        let mut out = vec![self.vip_interface()];
        for a in &self.addresses {
            if !out.contains(&a.dev.as_str()) {
                out.push(&a.dev);
            }
        }
        out
    }
}

/// One virtual address as `ip addr add` wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressSpec {
    pub addr: IpAddr,
    /// keepalived's default: /32 for IPv4, /128 for IPv6.
    pub prefix_len: u8,
    pub dev: String,
    pub label: Option<String>,
    /// `RT_SCOPE_*` (`None`: global).
    pub scope: Option<u8>,
    pub brd: Option<std::net::Ipv4Addr>,
}

/// Why an instance cannot run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub instance: String,
    pub reason: String,
}

impl std::fmt::Display for SpecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "({}) {}", self.instance, self.reason)
    }
}

/// Builds the engine configuration of every instance.
pub fn instances(config: &Config, ifs: &dyn Interfaces) -> Result<Vec<InstanceSpec>, SpecError> {
    config
        .instances
        .iter()
        .map(|inst| instance(config, inst, ifs))
        .collect()
}

/// One instance's engine configuration.
pub fn instance(
    config: &Config,
    inst: &Named<VrrpInstance>,
    ifs: &dyn Interfaces,
) -> Result<InstanceSpec, SpecError> {
    let g = config.globals();
    let b = &inst.body;
    let err = |reason: String| SpecError {
        instance: inst.name.clone(),
        reason,
    };
    let interface = b
        .interface
        .as_ref()
        .map(|i| i.value.clone())
        .or_else(|| g.default_interface.clone())
        .ok_or_else(|| err("no interface".into()))?;
    let vrid = b
        .virtual_router_id
        .map(|v| u8::try_from(v.get()).unwrap_or(0))
        .ok_or_else(|| err("no virtual_router_id".into()))?;
    let vips: Vec<IpAddr> = b.vips().map(|v| v.addr.addr).collect();
    let family = vips.first().map_or(Family::V4, Family::of);
    let version = version(b, &g, family);
    let advert_interval = interval(version, b.advert_int.as_ref().map(|a| a.value.duration()));
    let peers: Vec<IpAddr> = b
        .unicast_peer
        .iter()
        .flat_map(|l| &l.0)
        .map(|p| p.addr)
        .collect();
    let configured_src = if peers.is_empty() {
        b.mcast_src_ip
    } else {
        b.unicast_src_ip.or(b.mcast_src_ip)
    };
    let primary = configured_src
        .or_else(|| ifs.primary(&interface, family))
        .ok_or_else(|| {
            err(format!(
                "interface {interface} has no {family:?} address to send adverts from"
            ))
        })?;
    let auth = auth(b, version);
    let guard = instance_guard(b, &g, family, ifs).map_err(err)?;
    let garp = garp(b, &g);
    let (routes, rules) = route_texts(b);
    let vmac = vmac(b, vrid, family);
    let engine = Engine {
        name: inst.name.clone(),
        vrid,
        version,
        priority: b
            .priority
            .as_ref()
            .map_or(100, |p| u8::try_from(p.value.get()).unwrap_or(100)),
        advert_interval,
        initial_state: match b.state.as_ref().map(|s| s.value) {
            Some(KaState::Master) => InitialState::Master,
            _ => InitialState::Backup,
        },
        preempt: b.nopreempt.is_none(),
        preempt_delay: secs(b.preempt_delay).unwrap_or(Duration::ZERO),
        accept: b.accept || (g.vrrp_strict && !b.no_accept),
        primary,
        vips,
        excluded: b.excluded_vips().map(|v| v.addr.addr).collect(),
        routes,
        rules,
        peers,
        auth,
        garp,
        startup_delay: secs(g.vrrp_startup_delay).unwrap_or(Duration::ZERO),
        down_timer_adverts: b
            .down_timer_adverts
            .map_or(3, |d| u32::try_from(d.get()).unwrap_or(3)),
        check_addrs: !b.skip_check_adv_addr.is_some_and(|s| s.0)
            && !g.vrrp_skip_check_adv_addr.is_some_and(|s| s.0),
        v3_checksum_as_v2: b.v3_checksum_as_v2 || g.v3_checksum_as_v2,
        lower_prio_no_advert: lower_prio_no_advert(b, &g),
        auth_hmac: auth_hmac(b, inst.origin.0, advert_interval).map_err(err)?,
        guard: guard.as_ref().map(GuardSpec::engine),
    };
    Ok(InstanceSpec {
        track_files: tracks(b.track_file.as_ref()),
        track_processes: tracks(b.track_process.as_ref()),
        track_bfds: [tracks(b.track_bfd.as_ref()), group_bfds(config, &inst.name)].concat(),
        smtp_alert: b
            .smtp_alert
            .or(g.smtp_alert_vrrp)
            .or(g.smtp_alert)
            .is_some_and(|s| s.0),
        guard,
        notify: notify_scripts(b),
        name: inst.name.clone(),
        addresses: addresses(b, &interface, vmac.as_ref().map_or(&interface, |v| &v.name))
            .map_err(err)?,
        vmac,
        routes: b.virtual_routes.iter().flat_map(|l| l.0.clone()).collect(),
        rules: b.virtual_rules.iter().flat_map(|l| l.0.clone()).collect(),
        track_interfaces: tracked_interfaces(b, &interface),
        interface,
        engine,
        track_scripts: tracks(b.track_script.as_ref()),
    })
}

/// The instance's `auth_hmac`, keys loaded; `Err` if it cannot be used
/// (keepalived would then run the instance unauthenticated; we refuse).
fn auth_hmac(
    b: &VrrpInstance,
    at: kaconf::Loc,
    advert_interval: Duration,
) -> Result<Option<vrrp::auth_hmac::Config>, String> {
    use kaconf::hmac::{HmacAntiReplay, HmacMode};
    use vrrp::auth_hmac::{AntiReplay, Config as HmacConfig, Key, Mode};
    let Some(h) = &b.auth_hmac else {
        return Ok(None);
    };
    let mut errors = Vec::new();
    let resolved = kaconf::hmac::resolve(h, at, &mut |_, error, msg| {
        if error {
            errors.push(msg);
        } else {
            tracing::warn!("auth_hmac: {msg}");
        }
    });
    let Some(r) = resolved else {
        return Err(format!("auth_hmac: {}", errors.join("; ")));
    };
    let keys = r
        .keys
        .into_iter()
        .map(|k| Key::new(k.id, k.bytes))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("auth_hmac: {e}"))?;
    Ok(Some(HmacConfig {
        keys,
        active_key: r.active_key,
        mode: match r.mode {
            HmacMode::Enforce => Mode::Enforce,
            HmacMode::Permissive => Mode::Permissive,
            HmacMode::ReceiveOnly => Mode::ReceiveOnly,
        },
        anti_replay: match r.anti_replay {
            HmacAntiReplay::Time => AntiReplay::Time {
                window_secs: r
                    .time_window
                    .unwrap_or_else(|| HmacConfig::default_window(advert_interval)),
            },
            HmacAntiReplay::Monotonic => AntiReplay::Monotonic,
        },
    }))
}

/// The VMAC of `use_vmac`, if set.
fn vmac(b: &VrrpInstance, vrid: u8, family: Family) -> Option<VmacSpec> {
    let words = b.use_vmac.as_ref()?;
    Some(VmacSpec {
        name: words
            .0
            .first()
            .cloned()
            .unwrap_or_else(|| format!("vrrp.{vrid}")),
        mac: [
            0,
            0,
            0x5e,
            0,
            if family == Family::V6 { 2 } else { 1 },
            vrid,
        ],
        xmit_base: b.vmac_xmit_base,
    })
}

/// The instance's `version`, else `vrrp_version`, else 2; IPv6 is always 3.
fn version(b: &VrrpInstance, g: &kaconf::model::GlobalDefs, family: Family) -> Version {
    let configured = b
        .version
        .as_ref()
        .map(|v| v.value.get())
        .or(g.vrrp_version.map(kaconf::value::Int::get));
    if family == Family::V6 || configured == Some(3) {
        Version::V3
    } else {
        Version::V2
    }
}

/// The `virtual_routes` and `virtual_rules` lines as text (the engine names
/// them in its actions).
fn route_texts(b: &VrrpInstance) -> (Vec<String>, Vec<String>) {
    let routes = b.virtual_routes.iter().flat_map(|l| &l.0);
    let rules = b.virtual_rules.iter().flat_map(|l| &l.0);
    (
        routes.map(|r| r.words.join(" ")).collect(),
        rules.map(|r| r.words.join(" ")).collect(),
    )
}

/// How each VIP goes on its interface: `dev` or the instance's, which is
/// the VMAC (`interface`) with `use_vmac` — also for a `dev` naming the
/// instance's own interface (`base`), as keepalived does.
fn addresses(b: &VrrpInstance, base: &str, interface: &str) -> Result<Vec<AddressSpec>, String> {
    b.vips()
        .chain(b.excluded_vips())
        .map(|v| {
            let addr = v.addr.addr;
            let prefix_len = v.addr.len.unwrap_or(if addr.is_ipv4() { 32 } else { 128 });
            Ok(AddressSpec {
                addr,
                prefix_len,
                dev: match &v.dev {
                    Some(d) if d != base => d.clone(),
                    _ => interface.to_owned(),
                },
                label: v.label.clone(),
                scope: v.scope.as_deref().map(scope_number).transpose()?,
                brd: v
                    .brd
                    .as_deref()
                    .map(|b| broadcast(addr, prefix_len, b))
                    .transpose()?,
            })
        })
        .collect()
}

/// `global`, `link`… or a number, as `RT_SCOPE_*`.
fn scope_number(s: &str) -> Result<u8, String> {
    Ok(match s {
        "global" | "universe" => 0,
        "site" => 200,
        "link" => 253,
        "host" => 254,
        "nowhere" => 255,
        n => n.parse().map_err(|_| format!("unknown scope `{n}`"))?,
    })
}

/// `brd ADDRESS`, or `brd +` (the prefix's broadcast address); IPv4 only.
fn broadcast(
    addr: std::net::IpAddr,
    prefix_len: u8,
    brd: &str,
) -> Result<std::net::Ipv4Addr, String> {
    let std::net::IpAddr::V4(v4) = addr else {
        return Err(format!("`brd` on the IPv6 address {addr}"));
    };
    if brd == "+" {
        let host_bits = u32::MAX.checked_shr(u32::from(prefix_len)).unwrap_or(0);
        return Ok(std::net::Ipv4Addr::from(u32::from(v4) | host_bits));
    }
    brd.parse()
        .map_err(|_| format!("`brd {brd}` is not an IPv4 address or `+`"))
}

/// The SMTP settings of `global_defs`, if alerts can be sent at all.
pub fn smtp(g: &kaconf::model::GlobalDefs) -> Option<crate::notify::Smtp> {
    let server = g.smtp_server.as_ref()?;
    let host = server.0.first()?.clone();
    let port = server.0.get(1).and_then(|p| p.parse().ok()).unwrap_or(25);
    let to: Vec<String> = g
        .notification_email
        .iter()
        .flat_map(|l| &l.0)
        .flat_map(|n| n.0.iter().cloned())
        .collect();
    let hostname = crate::vrrp::spec::hostname();
    Some(crate::notify::Smtp {
        server: host,
        port,
        timeout: secs(g.smtp_connect_timeout).unwrap_or(Duration::from_secs(30)),
        from: g
            .notification_email_from
            .as_ref()
            .and_then(|w| w.0.first().cloned())
            .unwrap_or_else(|| format!("keepalived@{hostname}")),
        to,
        helo: g.smtp_helo_name.clone(),
    })
}

/// The machine's host name (the default `router_id`).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_or_else(|_| "localhost".to_owned(), |s| s.trim().to_owned())
}

/// VRRPv2 authentication (VRRPv3 has none).
fn auth(b: &VrrpInstance, version: Version) -> Auth {
    match b.authentication.as_ref().map(|a| &a.value.0) {
        Some(a) if version == Version::V2 => match a.auth_type {
            Some(AuthType::Pass) => Auth::pass(a.auth_pass.as_deref().unwrap_or("")),
            Some(AuthType::Ah) => Auth::Ah,
            None => Auth::None,
        },
        _ => Auth::None,
    }
}

/// `track_interface` lines, plus the instance's own interface unless
/// `dont_track_primary`.
fn tracked_interfaces(b: &VrrpInstance, interface: &str) -> Vec<(String, Option<i64>)> {
    let mut t: Vec<(String, Option<i64>)> = tracks(b.track_interface.as_ref())
        .into_iter()
        .map(|(n, w)| (n, w.map(|(w, _)| w)))
        .collect();
    if !b.dont_track_primary && !t.iter().any(|(n, _)| n == interface) {
        t.push((interface.to_owned(), None));
    }
    t
}

/// The instance's notify commands.
fn notify_scripts(b: &VrrpInstance) -> crate::notify::Scripts {
    let cmd = |c: &Option<kaconf::value::Script>| c.as_ref().map(crate::exec::Script::from_config);
    crate::notify::Scripts {
        master: cmd(&b.notify_master),
        backup: cmd(&b.notify_backup),
        fault: cmd(&b.notify_fault),
        stop: cmd(&b.notify_stop),
        any: cmd(&b.notify),
    }
}

/// Tracked names with the weight (and `reverse`) given on the line.
/// The `track_bfd`s of the sync group that has instance `name`: FAULT
/// while down for every member (keepalived's rule), their weights only
/// with `sync_group_tracking_weight`.
fn group_bfds(config: &Config, name: &str) -> Vec<(String, Option<(i64, bool)>)> {
    config
        .sync_groups
        .iter()
        .filter(|g| {
            g.body
                .group
                .iter()
                .flat_map(|l| &l.0)
                .any(|n| n.0.iter().any(|m| m == name))
        })
        .flat_map(|g| {
            let weighted = g.body.sync_group_tracking_weight;
            tracks(g.body.track_bfd.as_ref())
                .into_iter()
                .map(move |(n, w)| (n, if weighted { w } else { Some((0, false)) }))
        })
        .collect()
}

fn tracks(
    lines: Option<&kaconf::value::Lines<kaconf::model::TrackRef>>,
) -> Vec<(String, Option<(i64, bool)>)> {
    lines
        .iter()
        .flat_map(|l| &l.0)
        .map(|t| (t.name.clone(), t.weight.map(|w| (w.weight, w.reverse))))
        .collect()
}

fn secs(s: Option<kaconf::value::Seconds>) -> Option<Duration> {
    s.map(kaconf::value::Seconds::duration)
}

fn count(c: Option<kaconf::value::Count>) -> Option<u32> {
    c.map(|c| u32::try_from(c.get()).unwrap_or(u32::MAX))
}

/// The advert interval the version can carry: whole seconds for v2 (rounded,
/// at least 1), centiseconds for v3 (at least 10 ms). Default 1 s.
fn interval(version: Version, configured: Option<Duration>) -> Duration {
    let Some(d) = configured else {
        return Duration::from_secs(1);
    };
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    match version {
        Version::V2 => Duration::from_secs(((us + 500_000) / 1_000_000).max(1)),
        Version::V3 => Duration::from_millis((us / 10_000 * 10).max(10)),
    }
}

/// `lower_prio_no_advert`: the instance's, else `global_defs`'
/// `vrrp_lower_prio_no_advert`, else off; `vrrp_strict` forces it on (as
/// keepalived does).
fn lower_prio_no_advert(b: &VrrpInstance, g: &kaconf::model::GlobalDefs) -> bool {
    g.vrrp_strict
        || b.lower_prio_no_advert
            .or(g.vrrp_lower_prio_no_advert)
            .is_some_and(|s| s.0)
}

/// The GARP/NA schedule: the instance's keywords, else `global_defs`'
/// `vrrp_garp_*`, else keepalived's defaults (lower-priority bursts default
/// to the master ones).
fn garp(b: &VrrpInstance, g: &kaconf::model::GlobalDefs) -> Garp {
    let d = Garp::default();
    let master_delay = secs(b.garp_master_delay)
        .or(secs(g.vrrp_garp_master_delay))
        .unwrap_or(d.master_delay);
    let master_repeat = count(b.garp_master_repeat)
        .or(count(g.vrrp_garp_master_repeat))
        .unwrap_or(d.master_repeat);
    Garp {
        master_delay,
        master_repeat,
        master_refresh: secs(b.garp_master_refresh)
            .or(secs(g.vrrp_garp_master_refresh))
            .unwrap_or(Duration::ZERO),
        master_refresh_repeat: count(b.garp_master_refresh_repeat)
            .or(count(g.vrrp_garp_master_refresh_repeat))
            .unwrap_or(d.master_refresh_repeat),
        lower_prio_delay: secs(b.garp_lower_prio_delay)
            .or(secs(g.vrrp_garp_lower_prio_delay))
            .unwrap_or(master_delay),
        lower_prio_repeat: count(b.garp_lower_prio_repeat)
            .or(count(g.vrrp_garp_lower_prio_repeat))
            .unwrap_or(master_repeat),
    }
}

#[cfg(test)]
#[path = "spec_tests.rs"]
mod tests;
