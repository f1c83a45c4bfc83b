//! Checks that span several keywords or blocks: duplicate names, what the VRRP
//! version allows, references to scripts and instances that do not exist.

use std::collections::HashMap;
use std::time::Duration;

use crate::diag::{Loc, Sources};
use crate::model::{Config, InitialState, ServiceAddr, VrrpInstance};
use crate::section::Named;
use crate::value::Cx;

/// Runs every check. `check_interfaces`: warn about interfaces this machine
/// does not have (off for tests that must not depend on the machine).
pub fn validate(config: &Config, sources: &Sources, check_interfaces: bool, cx: &mut Cx) {
    let globals = config.globals();
    duplicates("vrrp_instance", &config.instances, sources, cx);
    duplicates("vrrp_script", &config.vrrp_scripts, sources, cx);
    duplicates("vrrp_sync_group", &config.sync_groups, sources, cx);
    duplicates("track_file", &config.track_files, sources, cx);
    duplicates("vrrp_track_process", &config.track_processes, sources, cx);

    let default_version = globals.vrrp_version.map_or(2, crate::value::Int::get);
    for (i, inst) in config.instances.iter().enumerate() {
        let next = config.instances.get(i + 1).map(|n| n.origin.0);
        instance(inst, next, config, default_version, check_interfaces, cx);
    }

    let mut member_of: HashMap<&str, &str> = HashMap::new();
    for group in &config.sync_groups {
        let names = group
            .body
            .group
            .iter()
            .flat_map(|l| &l.0)
            .flat_map(|n| &n.0);
        for name in names {
            if !config.instances.iter().any(|i| &i.name == name) {
                cx.warn(
                    group.origin.0,
                    format!(
                        "vrrp_sync_group {}: no vrrp_instance called `{name}`",
                        group.name
                    ),
                );
            } else if let Some(other) = member_of.insert(name, &group.name) {
                cx.error(
                    group.origin.0,
                    format!(
                        "vrrp_instance `{name}` is in two sync groups, {other} and {}",
                        group.name
                    ),
                );
            }
        }
    }

    for vs in &config.virtual_servers {
        if let ServiceAddr::Group(g) = &vs.service {
            if !config.virtual_server_groups.iter().any(|x| &x.name == g) {
                cx.error(vs.origin.0, format!("no virtual_server_group called `{g}`"));
            }
        }
    }
}

fn duplicates<T>(kind: &str, items: &[Named<T>], sources: &Sources, cx: &mut Cx) {
    let mut seen: HashMap<&str, Loc> = HashMap::new();
    for item in items {
        if let Some(first) = seen.get(item.name.as_str()) {
            cx.error(
                item.origin.0,
                format!(
                    "duplicate {kind} name `{}` (first defined at {}:{})",
                    item.name,
                    sources.path(first.file).display(),
                    first.line
                ),
            );
        } else {
            seen.insert(&item.name, item.origin.0);
        }
    }
}

fn instance(
    inst: &Named<VrrpInstance>,
    next: Option<Loc>,
    config: &Config,
    default_version: i64,
    check_interfaces: bool,
    cx: &mut Cx,
) {
    let name = &inst.name;
    let body = &inst.body;
    let at = inst.origin.0;
    match (&body.split_brain_guard, &config.globals().split_brain_guard) {
        (Some(g), _) => guard(name, "", g, at, cx),
        (None, Some(g)) => guard(name, " (from global_defs)", g, at, cx),
        (None, None) => {}
    }
    if let Some(h) = &body.auth_hmac {
        // Reads the key files too: `-t` says what the daemon would refuse.
        let _ = crate::hmac::resolve(h, at, &mut |loc, error, msg| {
            if error {
                cx.error(loc, format!("auth_hmac: {msg}"));
            } else {
                cx.warn(loc, format!("auth_hmac: {msg}"));
            }
        });
        if body.authentication.is_some() {
            cx.error(
                at,
                format!("vrrp_instance {name}: auth_hmac and authentication cannot be combined"),
            );
        }
    }
    let vrid_was_wrong = cx.failed.iter().any(|(loc, kw)| {
        kw == "virtual_router_id"
            && loc.file == at.file
            && *loc > at
            && next.is_none_or(|n| n.file != at.file || *loc < n)
    });
    if body.virtual_router_id.is_none() && !vrid_was_wrong {
        cx.error(at, format!("vrrp_instance {name} has no virtual_router_id"));
    }
    let globals = config.globals();
    match &body.interface {
        None if globals.default_interface.is_none() => cx.warn(
            at,
            format!(
                "vrrp_instance {name} has no interface (and global_defs has no default_interface)"
            ),
        ),
        Some(ifname) if check_interfaces && !interface_exists(ifname) => cx.warn(
            ifname.origin.0,
            format!(
                "interface `{}` does not exist on this machine (yet)",
                ifname.value
            ),
        ),
        _ => {}
    }

    let has_v6 = body.vips().any(|v| v.addr.addr.is_ipv6());
    let has_v4 = body.vips().any(|v| v.addr.addr.is_ipv4());
    if has_v4 && has_v6 {
        cx.warn(
            at,
            format!("vrrp_instance {name} mixes IPv4 and IPv6 virtual addresses; put each family in virtual_ipaddress_excluded or its own instance"),
        );
    }
    let mut version = body
        .version
        .as_ref()
        .map_or(default_version, |v| v.value.get());
    if has_v6 && !has_v4 && version == 2 {
        cx.warn(
            body.version.as_ref().map_or(at, |v| v.origin.0),
            format!("vrrp_instance {name}: IPv6 needs VRRP version 3; using version 3"),
        );
        version = 3;
    }
    if let Some(adv) = &body.advert_int {
        advert_int(name, version, adv.value.duration(), adv.origin.0, cx);
    }
    if let (Some(auth), 3) = (&body.authentication, version) {
        cx.warn(
            auth.origin.0,
            format!(
                "vrrp_instance {name}: VRRPv3 has no authentication; `authentication` is ignored"
            ),
        );
    }
    if let (Some(prio), Some(state)) = (&body.priority, &body.state) {
        if prio.value.get() == 255 && state.value == InitialState::Backup {
            cx.warn(
                state.origin.0,
                format!(
                    "vrrp_instance {name}: priority 255 (address owner) always starts as MASTER"
                ),
            );
        }
    }
    if let (Some(np), Some(state)) = (&body.nopreempt, &body.state) {
        if state.value == InitialState::Master {
            cx.warn(
                np.origin.0,
                format!("vrrp_instance {name}: nopreempt needs `state BACKUP` to mean anything"),
            );
        }
    }
    references(inst, config, check_interfaces, cx);
}

/// Tracked scripts, files and interfaces an instance names must exist.
fn references(inst: &Named<VrrpInstance>, config: &Config, check_interfaces: bool, cx: &mut Cx) {
    let (name, body) = (&inst.name, &inst.body);
    for track in body.track_script.iter().flat_map(|l| &l.0) {
        if !config.vrrp_scripts.iter().any(|s| s.name == track.name) {
            cx.warn(
                track.origin.0,
                format!(
                    "vrrp_instance {name}: track_script `{}` is not a defined vrrp_script; ignored",
                    track.name
                ),
            );
        }
    }
    for track in body.track_file.iter().flat_map(|l| &l.0) {
        if !config.track_files.iter().any(|s| s.name == track.name) {
            cx.warn(
                track.origin.0,
                format!(
                    "vrrp_instance {name}: track_file `{}` is not a defined track_file; ignored",
                    track.name
                ),
            );
        }
    }
    if check_interfaces {
        for track in body.track_interface.iter().flat_map(|l| &l.0) {
            if !interface_exists(&track.name) {
                cx.warn(
                    track.origin.0,
                    format!(
                        "interface `{}` does not exist on this machine (yet)",
                        track.name
                    ),
                );
            }
        }
    }
}

/// A `split_brain_guard` block: `heartbeat_path IF PEER…`, `witness
/// [icmp] ADDR` or `witness tcp ADDR:PORT`.
fn guard(name: &str, from: &str, g: &crate::model::SplitBrainGuard, at: Loc, cx: &mut Cx) {
    let ip = |w: &str| w.parse::<std::net::IpAddr>().is_ok();
    for w in &g.heartbeat_path {
        match w.0.as_slice() {
            [_, peers @ ..] if !peers.is_empty() && peers.iter().all(|p| ip(p)) => {}
            _ => cx.error(
                at,
                format!(
                    "vrrp_instance {name}: split_brain_guard{from}: `heartbeat_path {}` needs an interface and peer addresses",
                    w.0.join(" ")
                ),
            ),
        }
    }
    for w in &g.witness {
        let ok = match w.0.as_slice() {
            [a] => ip(a),
            [kind, a] if kind == "icmp" => ip(a),
            [kind, a] if kind == "tcp" => a.parse::<std::net::SocketAddr>().is_ok(),
            _ => false,
        };
        if !ok {
            cx.error(
                at,
                format!(
                    "vrrp_instance {name}: split_brain_guard{from}: `witness {}` is not `[icmp] ADDR` or `tcp ADDR:PORT`",
                    w.0.join(" ")
                ),
            );
        }
    }
}

/// VRRPv2 counts the advert interval in whole seconds (1..=255), VRRPv3 in
/// centiseconds (0.01..=40.95 s).
fn advert_int(name: &str, version: i64, interval: Duration, at: Loc, cx: &mut Cx) {
    let secs = interval.as_secs_f64();
    if version == 2 {
        if !(1.0..=255.0).contains(&secs) {
            cx.error(
                at,
                format!("vrrp_instance {name}: advert_int {secs} is out of range for VRRP version 2 (1..=255 whole seconds)"),
            );
        } else if interval.subsec_nanos() != 0 {
            cx.warn(
                at,
                format!("vrrp_instance {name}: VRRP version 2 counts whole seconds; advert_int {secs} is rounded to {}", secs.round()),
            );
        }
    } else if !(0.01..=40.95).contains(&secs) {
        cx.error(
            at,
            format!("vrrp_instance {name}: advert_int {secs} is out of range for VRRP version 3 (0.01..=40.95 seconds)"),
        );
    } else if interval.as_micros() % 10_000 != 0 {
        cx.warn(
            at,
            format!("vrrp_instance {name}: VRRP version 3 counts centiseconds; advert_int {secs} is rounded"),
        );
    }
}

fn interface_exists(name: &str) -> bool {
    !name.is_empty()
        && !name.contains('/')
        && std::path::Path::new("/sys/class/net").join(name).exists()
}
