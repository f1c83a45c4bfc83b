//! `docs/compat.md` lists every keepalived keyword with what keepalived-rs does
//! with it. The keyword tables there are generated from the parser's own tables,
//! so this test fails whenever the two disagree. Regenerate with
//! `UPDATE_COMPAT=1 cargo test -p kaconf --test compat_doc`.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use kaconf::model::*;
use kaconf::section::Section;

/// Keywords the daemon acts on today, by block (the rest says which issue will).
const ACTED_ON: &[(&str, &[&str])] = &[
    (
        "/vrrp_instance",
        &[
            "state",
            "interface",
            "virtual_router_id",
            "priority",
            "advert_int",
            "version",
            "virtual_ipaddress",
            "virtual_ipaddress_excluded",
            "virtual_routes",
            "virtual_rules",
            "use_vmac",
            "split_brain_guard",
            "vmac_xmit_base",
            "auth_hmac",
            "unicast_peer",
            "unicast_src_ip",
            "mcast_src_ip",
            "lvs_sync_daemon_interface",
            "nopreempt",
            "preempt",
            "preempt_delay",
            "authentication",
            "track_script",
            "track_interface",
            "dont_track_primary",
            "notify_master",
            "notify_backup",
            "notify_fault",
            "notify_stop",
            "notify",
            "garp_master_delay",
            "garp_master_repeat",
            "garp_master_refresh",
            "garp_master_refresh_repeat",
            "garp_lower_prio_delay",
            "garp_lower_prio_repeat",
            "lower_prio_no_advert",
            "down_timer_adverts",
            "track_file",
            "track_bfd",
            "track_process",
            "smtp_alert",
            "skip_check_adv_addr",
            "v3_checksum_as_v2",
        ],
    ),
    ("/vrrp_instance/authentication", &["auth_type", "auth_pass"]),
    (
        "/vrrp_instance/split_brain_guard",
        &["heartbeat_path", "witness", "on_dual_master"],
    ),
    (
        "/global_defs/split_brain_guard",
        &["heartbeat_path", "witness", "on_dual_master"],
    ),
    (
        "/vrrp_instance/auth_hmac",
        &["key", "active_key", "time_window", "anti_replay", "mode"],
    ),
    (
        "/vrrp_script",
        &[
            "script",
            "interval",
            "timeout",
            "weight",
            "rise",
            "fall",
            "init_fail",
            "user",
        ],
    ),
    ("/vrrp_sync_group", &["group"]),
    ("/track_file", &["file", "weight"]),
    (
        "/vrrp_track_process",
        &[
            "process",
            "weight",
            "quorum",
            "quorum_max",
            "full_command",
            "param_match",
            "delay",
            "fork_delay",
            "terminate_delay",
        ],
    ),
    (
        "/global_defs",
        &[
            "metrics_listen",
            "control_socket_group",
            "split_brain_guard",
            "vrrp_version",
            "vrrp_garp_master_delay",
            "vrrp_garp_master_repeat",
            "vrrp_garp_master_refresh",
            "vrrp_garp_master_refresh_repeat",
            "vrrp_garp_lower_prio_delay",
            "vrrp_garp_lower_prio_repeat",
            "vrrp_lower_prio_no_advert",
            "vrrp_startup_delay",
            "default_interface",
            "router_id",
            "smtp_server",
            "smtp_connect_timeout",
            "smtp_helo_name",
            "smtp_alert",
            "smtp_alert_vrrp",
            "notification_email",
            "notification_email_from",
            "notify_fifo",
            "vrrp_notify_fifo",
            "vrrp_skip_check_adv_addr",
            "v3_checksum_as_v2",
            "script_user",
            "enable_script_security",
            "notify_fifo_script",
            "vrrp_notify_fifo_script",
            "smtp_alert_checker",
            "lvs_notify_fifo",
            "lvs_notify_fifo_script",
            "lb_dataplane",
            "lvs_flush",
            "lvs_flush_on_stop",
            "lvs_timeouts",
            "lvs_sync_daemon",
            "conntrack_sync",
        ],
    ),
    (
        "/virtual_server",
        &[
            "delay_loop",
            "retry",
            "delay_before_retry",
            "warmup",
            "connect_timeout",
            "real_server",
            "quorum",
            "hysteresis",
            "quorum_up",
            "quorum_down",
            "sorry_server",
            "smtp_alert",
            "weight",
            "alpha",
            "omega",
            "protocol",
            "lb_algo",
            "lb_kind",
            "persistence_timeout",
            "persistence_granularity",
            "lb_dataplane",
            "lb_snat",
            "proxy_protocol",
            "max_conns",
            "proxy_timeout",
            "inhibit_on_failure",
            "ops",
            "flag-1",
            "flag-2",
            "flag-3",
            "sh-port",
            "sh-fallback",
            "mh-port",
            "mh-fallback",
            "sorry_server_lvs_method",
        ],
    ),
    (
        "/virtual_server/real_server",
        &[
            "weight",
            "alpha",
            "retry",
            "delay_before_retry",
            "warmup",
            "connect_timeout",
            "delay_loop",
            "notify_up",
            "notify_down",
            "TCP_CHECK",
            "HTTP_GET",
            "MISC_CHECK",
            "UDP_CHECK",
            "PING_CHECK",
            "SSL_GET",
            "DNS_CHECK",
            "SMTP_CHECK",
            "FILE_CHECK",
            "BFD_CHECK",
            "smtp_alert",
            "virtualhost",
            "inhibit_on_failure",
            "max_fails",
            "fail_timeout",
            "lvs_method",
            "uthreshold",
            "lthreshold",
        ],
    ),
    (
        "/virtual_server/real_server/PING_CHECK",
        &[
            "connect_ip",
            "connect_timeout",
            "retry",
            "delay_before_retry",
            "warmup",
            "delay_loop",
            "alpha",
        ],
    ),
    (
        "/virtual_server/real_server/UDP_CHECK",
        &[
            "connect_ip",
            "connect_port",
            "bindto",
            "bind_port",
            "connect_timeout",
            "retry",
            "delay_before_retry",
            "warmup",
            "delay_loop",
            "alpha",
            "payload",
            "require_reply",
            "min_reply_length",
            "max_reply_length",
        ],
    ),
    (
        "/virtual_server/real_server/MISC_CHECK",
        &[
            "misc_path",
            "misc_timeout",
            "misc_dynamic",
            "user",
            "retry",
            "delay_before_retry",
            "warmup",
            "delay_loop",
            "alpha",
        ],
    ),
    (
        "/virtual_server/real_server/HTTP_GET",
        &[
            "connect_ip",
            "connect_port",
            "bindto",
            "bind_port",
            "connect_timeout",
            "retry",
            "delay_before_retry",
            "warmup",
            "delay_loop",
            "alpha",
            "virtualhost",
            "url",
            "http_protocol",
        ],
    ),
    (
        "/virtual_server/real_server/SSL_GET",
        &[
            "connect_ip",
            "connect_port",
            "bindto",
            "bind_port",
            "connect_timeout",
            "retry",
            "delay_before_retry",
            "warmup",
            "delay_loop",
            "alpha",
            "virtualhost",
            "url",
            "http_protocol",
            "enable_sni",
        ],
    ),
    (
        "/virtual_server/real_server/DNS_CHECK",
        &[
            "connect_ip",
            "connect_port",
            "bindto",
            "bind_port",
            "connect_timeout",
            "retry",
            "delay_before_retry",
            "warmup",
            "delay_loop",
            "alpha",
            "type",
            "name",
        ],
    ),
    (
        "/virtual_server/real_server/SMTP_CHECK",
        &[
            "connect_ip",
            "connect_port",
            "bindto",
            "bind_port",
            "connect_timeout",
            "retry",
            "delay_before_retry",
            "warmup",
            "delay_loop",
            "alpha",
            "helo_name",
            "host",
        ],
    ),
    (
        "/virtual_server/real_server/FILE_CHECK",
        &["track_file", "weight"],
    ),
    (
        "/virtual_server/real_server/HTTP_GET/url",
        &[
            "path",
            "digest",
            "status_code",
            "virtualhost",
            "regex",
            "regex_no_match",
            "regex_options",
        ],
    ),
    (
        "/virtual_server/real_server/TCP_CHECK",
        &[
            "connect_ip",
            "connect_port",
            "bindto",
            "bind_port",
            "connect_timeout",
            "retry",
            "delay_before_retry",
            "warmup",
            "delay_loop",
            "alpha",
        ],
    ),
    (
        "/",
        &[
            "global_defs",
            "vrrp_script",
            "vrrp_sync_group",
            "vrrp_instance",
            "track_file",
            "vrrp_track_process",
            "virtual_server",
            "virtual_server_group",
            "bfd_instance",
        ],
    ),
    (
        "/bfd_instance",
        &[
            "neighbor_ip",
            "source_ip",
            "min_rx",
            "min_tx",
            "idle_tx",
            "multiplier",
            "passive",
            "ttl",
            "max_hops",
            "multihop",
            "weight",
            "vrrp",
            "checker",
        ],
    ),
    ("/virtual_server/real_server/BFD_CHECK", &["name", "alpha"]),
    ("/vrrp_sync_group", &["track_bfd"]),
];

fn acted_on(path: &str, kw: &str) -> bool {
    ACTED_ON
        .iter()
        .any(|(p, kws)| *p == path && kws.contains(&kw))
}

const BEGIN: &str = "<!-- keyword tables: generated by crates/kaconf/tests/compat_doc.rs -->";
const END: &str = "<!-- end of generated keyword tables -->";

struct Table {
    path: &'static str,
    keywords: Vec<&'static str>,
    unsupported: Vec<&'static str>,
    not_planned: Vec<&'static str>,
    aliases: Vec<(&'static str, &'static str, &'static str)>,
    /// The issue whose engine acts on this block's keywords.
    engine: &'static str,
}

fn table<T: Section>(path: &'static str, engine: &'static str) -> Table {
    Table {
        path,
        keywords: T::keywords(),
        unsupported: T::unsupported(),
        not_planned: T::not_planned(),
        aliases: T::aliases(),
        engine,
    }
}

fn tables() -> Vec<Table> {
    vec![
        table::<Config>("/", "—"),
        table::<GlobalDefs>("/global_defs", "#6, #8, #11"),
        table::<SplitBrainGuard>("/global_defs/split_brain_guard", "#10"),
        table::<VrrpScript>("/vrrp_script", "#6"),
        table::<TrackFile>("/track_file", "#6"),
        table::<TrackProcess>("/vrrp_track_process", "#6"),
        table::<SyncGroup>("/vrrp_sync_group", "#6"),
        table::<VrrpInstance>("/vrrp_instance", "#5, #6"),
        table::<Authentication>("/vrrp_instance/authentication", "#5"),
        table::<AuthHmac>("/vrrp_instance/auth_hmac", "#12"),
        table::<VirtualServerBody>("/virtual_server", "#8, #9"),
        table::<RealServerBody>("/virtual_server/real_server", "#7, #8, #9"),
        table::<TcpCheck>("/virtual_server/real_server/TCP_CHECK", "#7"),
        table::<HttpCheck>("/virtual_server/real_server/HTTP_GET", "#7"),
        table::<HttpCheck>("/virtual_server/real_server/SSL_GET", "#7"),
        table::<Url>("/virtual_server/real_server/HTTP_GET/url", "#7"),
        table::<PingCheck>("/virtual_server/real_server/PING_CHECK", "#7"),
        table::<UdpCheck>("/virtual_server/real_server/UDP_CHECK", "#7"),
        table::<MiscCheck>("/virtual_server/real_server/MISC_CHECK", "#7"),
        table::<DnsCheck>("/virtual_server/real_server/DNS_CHECK", "#7"),
        table::<SmtpCheck>("/virtual_server/real_server/SMTP_CHECK", "#7"),
        table::<FileCheck>("/virtual_server/real_server/FILE_CHECK", "#7"),
        table::<BfdCheck>("/virtual_server/real_server/BFD_CHECK", "#21"),
        table::<BfdInstance>("/bfd_instance", "#21"),
    ]
}

fn keepalived_keywords(path: &str) -> BTreeSet<&'static str> {
    let data = include_str!("data/keepalived-keywords.tsv");
    data.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('\t'))
        .filter(|(p, _)| *p == path)
        .map(|(_, k)| k)
        .collect()
}

fn render() -> String {
    let mut out = String::new();
    out.push_str(BEGIN);
    out.push('\n');
    for t in tables() {
        let ka = keepalived_keywords(t.path);
        let mut all: BTreeSet<&str> = ka.clone();
        all.extend(&t.keywords);
        all.extend(&t.unsupported);
        all.extend(t.aliases.iter().map(|(a, _, _)| *a));
        let block = if t.path == "/" {
            "top level"
        } else {
            t.path.trim_start_matches('/')
        };
        let _ = writeln!(out, "\n### `{block}`\n");
        out.push_str("| keyword | keepalived | keepalived-rs | acted on |\n|---|---|---|---|\n");
        for kw in all {
            let in_ka = if ka.contains(kw) { "yes" } else { "—" };
            let (status, acted) =
                if let Some((_, target, _)) = t.aliases.iter().find(|(a, _, _)| *a == kw) {
                    (format!("alias of `{target}` (warns)"), t.engine.to_owned())
                } else if t.unsupported.contains(&kw) {
                    ("not supported (warns, ignored)".to_owned(), "no".to_owned())
                } else if t.not_planned.contains(&kw) {
                    ("parsed; not supported (warns)".to_owned(), "no".to_owned())
                } else if t.keywords.contains(&kw) {
                    let what = if ka.contains(kw) {
                        "parsed, checked"
                    } else {
                        "**extension**, parsed, checked"
                    };
                    let acted = if acted_on(t.path, kw) {
                        "yes".to_owned()
                    } else {
                        format!("not yet ({})", t.engine)
                    };
                    (what.to_owned(), acted)
                } else {
                    ("**unknown** (warns)".to_owned(), "no".to_owned())
                };
            let _ = writeln!(out, "| `{kw}` | {in_ka} | {status} | {acted} |");
        }
    }
    out.push('\n');
    out.push_str(END);
    out
}

#[test]
fn compat_md_keyword_tables_match_the_parser() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/compat.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let (Some(start), Some(end)) = (doc.find(BEGIN), doc.find(END)) else {
        panic!("docs/compat.md lacks the generated-table markers");
    };
    let current = &doc[start..end + END.len()];
    let fresh = render();
    if std::env::var("UPDATE_COMPAT").is_ok() {
        let updated = format!("{}{fresh}{}", &doc[..start], &doc[end + END.len()..]);
        std::fs::write(&path, updated).unwrap();
        return;
    }
    assert!(
        current == fresh,
        "docs/compat.md keyword tables are stale: run UPDATE_COMPAT=1 cargo test -p kaconf --test compat_doc"
    );
}
