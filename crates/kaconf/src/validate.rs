//! Checks that span several keywords or blocks: duplicate names, what the VRRP
//! version allows, references to scripts and instances that do not exist.

use std::collections::HashMap;
use std::time::Duration;

use crate::diag::{Loc, Sources};
use crate::model::{Config, InitialState, ServiceAddr, TrackRef, VrrpInstance};
use crate::section::Named;
use crate::value::{Cx, Lines};

/// Runs every check. `check_interfaces`: check against this machine, its
/// interfaces and its users (off for tests that must not depend on the
/// machine).
pub fn validate(config: &Config, sources: &Sources, check_interfaces: bool, cx: &mut Cx) {
    if check_interfaces {
        scripts(config, cx);
    }
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
        track_bfds(
            &format!("vrrp_sync_group {}", group.name),
            group.body.track_bfd.as_ref(),
            config,
            cx,
        );
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
        let by_address = match &vs.service {
            ServiceAddr::Ip { .. } => true,
            ServiceAddr::Fwmark(_) => false,
            ServiceAddr::Group(g) => config
                .virtual_server_groups
                .iter()
                .find(|x| &x.name == g)
                .is_some_and(|x| {
                    x.entries
                        .iter()
                        .any(|l| l.0.first().is_some_and(|w| w != "fwmark"))
                }),
        };
        let proxied =
            vs.body.lb_dataplane.or(globals.lb_dataplane) == Some(crate::model::Dataplane::Proxy);
        if by_address && vs.body.protocol.is_none() && !proxied {
            cx.warn(
                vs.origin.0,
                "virtual_server without `protocol`: TCP is used (keepalived uses UDP here, and reports it as a config error); write `protocol TCP` or `protocol UDP`",
            );
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

/// A `track_bfd` names a `bfd_instance` (keepalived ignores one that does
/// not exist, with a warning; so do we).
fn track_bfds(what: &str, lines: Option<&Lines<TrackRef>>, config: &Config, cx: &mut Cx) {
    for track in lines.iter().flat_map(|l| &l.0) {
        if !config.bfd_instances.iter().any(|b| b.name == track.name) {
            cx.warn(
                track.origin.0,
                format!(
                    "{what}: track_bfd `{}` is not a defined bfd_instance; ignored",
                    track.name
                ),
            );
        }
    }
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
    track_bfds(
        &format!("vrrp_instance {name}"),
        body.track_bfd.as_ref(),
        config,
        cx,
    );
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

/// Users and groups as this machine knows them (NSS), each name looked
/// up once however many scripts name it.
#[derive(Default)]
struct Users {
    users: HashMap<String, Option<(u32, u32)>>,
    groups: HashMap<String, Option<u32>>,
}

impl Users {
    /// `USER [GROUP]` as uid and gid (the user's own group by default).
    fn resolve(&mut self, user: &str, group: Option<&str>) -> Result<(u32, u32), String> {
        let (uid, gid) = *self
            .users
            .entry(user.to_owned())
            .or_insert_with(|| {
                nix::unistd::User::from_name(user)
                    .ok()
                    .flatten()
                    .map(|u| (u.uid.as_raw(), u.gid.as_raw()))
            })
            .as_ref()
            .ok_or(format!("no user `{user}`"))?;
        let Some(group) = group else {
            return Ok((uid, gid));
        };
        let gid = self
            .groups
            .entry(group.to_owned())
            .or_insert_with(|| {
                nix::unistd::Group::from_name(group)
                    .ok()
                    .flatten()
                    .map(|g| g.gid.as_raw())
            })
            .ok_or(format!("no group `{group}`"))?;
        Ok((uid, gid))
    }
}

/// One script of the configuration, for [`scripts`].
struct ScriptUse<'a> {
    what: String,
    at: Loc,
    program: &'a str,
    user: Option<(&'a str, Option<&'a str>)>,
    /// A notify keyword: its user is the word after the script.
    notify: bool,
}

/// Checks against this machine's users: every user and group a script or
/// FIFO names must exist (keepalived drops such a script and runs the rest
/// as root; we refuse the configuration, as a typo must not turn into
/// scripts that never run or run as someone else), and, as keepalived
/// does, warns when scripts run as root without `enable_script_security`.
#[allow(clippy::too_many_lines, clippy::items_after_statements)]
pub fn scripts(config: &Config, cx: &mut Cx) {
    use crate::model::Checker;
    use crate::value::Script;
    let globals = config.globals();
    let mut uses: Vec<ScriptUse<'_>> = Vec::new();
    fn add<'a>(uses: &mut Vec<ScriptUse<'a>>, what: String, s: Option<&'a Script>) {
        if let Some(s) = s {
            uses.push(ScriptUse {
                what,
                at: s.origin.0,
                program: s.command.0.first().map_or("", String::as_str),
                user: s.user.as_deref().map(|u| (u, s.group.as_deref())),
                notify: true,
            });
        }
    }
    for (kw, s) in [
        ("notify_fifo_script", &globals.notify_fifo_script),
        ("vrrp_notify_fifo_script", &globals.vrrp_notify_fifo_script),
        ("lvs_notify_fifo_script", &globals.lvs_notify_fifo_script),
        ("startup_script", &globals.startup_script),
        ("shutdown_script", &globals.shutdown_script),
    ] {
        add(&mut uses, kw.to_owned(), s.as_ref());
    }
    if let Some(g) = &globals.split_brain_guard {
        add(
            &mut uses,
            "on_dual_master".into(),
            g.on_dual_master.as_ref(),
        );
    }
    for inst in &config.instances {
        let b = &inst.body;
        for (kw, s) in [
            ("notify_master", &b.notify_master),
            ("notify_backup", &b.notify_backup),
            ("notify_fault", &b.notify_fault),
            ("notify_stop", &b.notify_stop),
            ("notify_deleted", &b.notify_deleted),
            ("notify", &b.notify),
            ("notify_master_rx_lower_pri", &b.notify_master_rx_lower_pri),
        ] {
            add(
                &mut uses,
                format!("vrrp_instance {}: {kw}", inst.name),
                s.as_ref(),
            );
        }
        if let Some(g) = &b.split_brain_guard {
            add(
                &mut uses,
                format!("vrrp_instance {}: on_dual_master", inst.name),
                g.on_dual_master.as_ref(),
            );
        }
    }
    for group in &config.sync_groups {
        let b = &group.body;
        for (kw, s) in [
            ("notify_master", &b.notify_master),
            ("notify_backup", &b.notify_backup),
            ("notify_fault", &b.notify_fault),
            ("notify_stop", &b.notify_stop),
            ("notify", &b.notify),
        ] {
            add(
                &mut uses,
                format!("vrrp_sync_group {}: {kw}", group.name),
                s.as_ref(),
            );
        }
    }
    for s in &config.vrrp_scripts {
        if let Some(c) = &s.body.script {
            uses.push(ScriptUse {
                what: format!("vrrp_script {}", s.name),
                at: s.body.user.as_ref().map_or(s.origin.0, |u| u.origin.0),
                program: c.0.first().map_or("", String::as_str),
                user: s.body.user.as_ref().and_then(|u| {
                    u.0.first()
                        .map(|n| (n.as_str(), u.0.get(1).map(String::as_str)))
                }),
                notify: false,
            });
        }
    }
    for vs in &config.virtual_servers {
        let b = &vs.body;
        add(&mut uses, "quorum_up".into(), b.quorum_up.as_ref());
        add(&mut uses, "quorum_down".into(), b.quorum_down.as_ref());
        for rs in &b.real_servers {
            add(&mut uses, "notify_up".into(), rs.body.notify_up.as_ref());
            add(
                &mut uses,
                "notify_down".into(),
                rs.body.notify_down.as_ref(),
            );
            for c in &rs.body.checkers {
                let Checker::Misc(m) = c else { continue };
                let Some(path) = &m.misc_path else { continue };
                uses.push(ScriptUse {
                    what: "MISC_CHECK".into(),
                    at: m.user.as_ref().map_or(rs.origin.0, |u| u.origin.0),
                    program: path.0.first().map_or("", String::as_str),
                    user: m.user.as_ref().and_then(|u| {
                        u.0.first()
                            .map(|n| (n.as_str(), u.0.get(1).map(String::as_str)))
                    }),
                    notify: false,
                });
            }
        }
    }

    let mut users = Users::default();
    // The default: `script_user` must exist; else `keepalived_script`.
    let default = match &globals.script_user {
        Some(w) => match w.0.first() {
            Some(name) => match users.resolve(name, w.0.get(1).map(String::as_str)) {
                Ok(ids) => Some(ids),
                Err(e) => {
                    cx.error(
                        w.origin.0,
                        format!("script_user: {e} (scripts would otherwise run as root)"),
                    );
                    None
                }
            },
            None => None,
        },
        // Looked up only for a script that needs it: the lookup goes
        // through NSS, which loads libraries (RSS) a configuration without
        // scripts never needs.
        None if uses.iter().any(|u| u.user.is_none()) => {
            users.resolve("keepalived_script", None).ok()
        }
        None => None,
    };
    for (kw, fifo) in [
        ("notify_fifo", &globals.notify_fifo),
        ("vrrp_notify_fifo", &globals.vrrp_notify_fifo),
        ("lvs_notify_fifo", &globals.lvs_notify_fifo),
    ] {
        let Some(w) = fifo else { continue };
        if let Some(user) = w.0.get(1) {
            if let Err(e) = users.resolve(user, w.0.get(2).map(String::as_str)) {
                cx.error(
                    w.origin.0,
                    format!("{kw} {}: {e}", w.0.first().map_or("", String::as_str)),
                );
            }
        }
    }
    let mut as_root: Vec<&ScriptUse<'_>> = Vec::new();
    for u in &uses {
        let ids = match u.user {
            Some((user, group)) => match users.resolve(user, group) {
                Ok(ids) => Some(ids),
                Err(e) => {
                    let hint = if u.notify {
                        format!(
                            " (the words after the script are its user and group; to pass \
                             `{user}` to the script, quote them together: \"{} {user}\")",
                            u.program
                        )
                    } else {
                        String::new()
                    };
                    cx.error(u.at, format!("{}: {e}{hint}", u.what));
                    continue;
                }
            },
            None => default,
        };
        if ids.is_none_or(|(uid, gid)| uid == 0 || gid == 0) {
            as_root.push(u);
        }
    }
    if !globals.enable_script_security {
        if let Some(first) = as_root.first() {
            cx.warn(
                first.at,
                format!(
                    "SECURITY VIOLATION - scripts are being executed but script_security not \
                     enabled: {} script(s) run as root, the first {} ({}); set \
                     enable_script_security, and script_user or a user for each",
                    as_root.len(),
                    first.what,
                    first.program
                ),
            );
        }
    }
}
