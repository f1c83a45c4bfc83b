//! Tests of `change`.

use super::*;
use crate::vrrp::spec::{instances, Interfaces};
use std::path::Path;
use vrrp::Family;

struct Fake;
impl Interfaces for Fake {
    fn primary(&self, ifname: &str, family: Family) -> Option<std::net::IpAddr> {
        match (ifname, family) {
            ("eth0", Family::V4) => "198.51.100.22".parse().ok(),
            ("eth1", Family::V4) => "203.0.113.22".parse().ok(),
            ("eth0", Family::V6) => "fe80::22".parse().ok(),
            _ => None,
        }
    }
}

fn config(text: &str) -> kaconf::Config {
    let loaded = kaconf::parse_str(Path::new("t.conf"), text, &kaconf::Options::default());
    assert!(!loaded.has_errors(), "{:?}", loaded.rendered());
    loaded.config
}

fn specs(text: &str) -> Vec<InstanceSpec> {
    instances(&config(text), &Fake).unwrap_or_else(|e| panic!("{e}"))
}

/// An instance with `extra` keywords (VIP .250 unless `extra` names
/// its own virtual_ipaddress).
fn inst(name: &str, vrid: u8, extra: &str) -> String {
    let vips = if extra.contains("virtual_ipaddress") {
        String::new()
    } else {
        " virtual_ipaddress {\n 198.51.100.250\n }\n".to_owned()
    };
    let iface = if extra
        .lines()
        .any(|l| l.trim_start().starts_with("interface "))
    {
        ""
    } else {
        " interface eth0\n"
    };
    format!("vrrp_instance {name} {{\n{iface} virtual_router_id {vrid}\n priority 100\n advert_int 1\n{vips}{extra}}}\n")
}

fn vrrp_diff(old: &str, new: &str) -> Vec<Change> {
    let old = specs(old);
    vrrp(&old, &specs(new), false, &Known::of(&old))
}

fn start(i: &str) -> Change {
    Change::VrrpStart { instance: i.into() }
}
fn stop(i: &str) -> Change {
    Change::VrrpStop { instance: i.into() }
}
fn reconf(i: &str, what: &[&'static str]) -> Change {
    Change::VrrpReconfigure {
        instance: i.into(),
        what: what.to_vec(),
    }
}
fn refuse(i: &str, new: bool, why: &str) -> Change {
    Change::VrrpRefuse {
        instance: Some(i.into()),
        new,
        why: why.into(),
    }
}

const SCRIPT: &str = "vrrp_script chk {\n script \"/bin/true\"\n}\n";

#[test]
fn nothing_changed_is_no_change() {
    let a = inst("VI_1", 51, "");
    assert_eq!(vrrp_diff(&a, &a), vec![]);
}

#[test]
fn an_added_instance_starts() {
    let a = inst("VI_1", 51, "");
    let b = a.clone() + &inst("VI_2", 52, "");
    assert_eq!(vrrp_diff(&a, &b), vec![start("VI_2")]);
}

#[test]
fn a_removed_instance_stops() {
    let a = inst("VI_1", 51, "") + &inst("VI_2", 52, "");
    assert_eq!(vrrp_diff(&a, &inst("VI_1", 51, "")), vec![stop("VI_2")]);
}

#[test]
fn a_renamed_instance_stops_and_starts_keeping_its_vrid() {
    let a = inst("VI_1", 51, "");
    let b = inst("VI_9", 51, "");
    assert_eq!(vrrp_diff(&a, &b), vec![stop("VI_1"), start("VI_9")]);
}

#[test]
fn a_new_instance_on_a_kept_vrid_is_refused() {
    let a = inst("VI_1", 51, "");
    let b = a.clone() + &inst("VI_2", 51, "");
    assert_eq!(
        vrrp_diff(&a, &b),
        vec![refuse(
            "VI_2",
            true,
            "has the VRID of another on its interface"
        )]
    );
}

#[test]
fn the_same_vrid_on_another_interface_starts() {
    let a = inst("VI_1", 51, "");
    // Not tracking eth1: the running daemon watches eth0's link only.
    let b = a.clone() + &inst("VI_2", 51, " interface eth1\n dont_track_primary\n");
    assert_eq!(vrrp_diff(&a, &b), vec![start("VI_2")]);
    // Tracking it (the default) needs a restart.
    let c = a.clone() + &inst("VI_2", 51, " interface eth1\n");
    assert_eq!(
        vrrp_diff(&a, &c),
        vec![refuse(
            "VI_2",
            true,
            "tracks an interface no running instance tracks"
        )]
    );
}

#[test]
fn a_vrid_moved_between_instances_is_refused_for_both() {
    let a = inst("VI_1", 51, "") + &inst("VI_2", 52, "");
    let b = inst("VI_1", 52, "") + &inst("VI_2", 51, "");
    assert_eq!(
        vrrp_diff(&a, &b),
        vec![
            refuse("VI_1", false, "virtual_router_id changed"),
            refuse("VI_2", false, "virtual_router_id changed"),
        ]
    );
}

#[test]
fn a_priority_change_is_taken_in_place() {
    let a = inst("VI_1", 51, "");
    let b = a.replace("priority 100", "priority 90");
    assert_eq!(vrrp_diff(&a, &b), vec![reconf("VI_1", &["priority"])]);
}

#[test]
fn a_vip_added_to_one_instance_only() {
    let a = inst("VI_1", 51, "") + &inst("VI_2", 52, "");
    let b = inst("VI_1", 51, "")
        + &inst(
            "VI_2",
            52,
            " virtual_ipaddress {\n 198.51.100.250\n 198.51.100.251\n }\n",
        );
    assert_eq!(
        vrrp_diff(&a, &b),
        vec![reconf("VI_2", &["virtual_ipaddress"])]
    );
}

#[test]
fn an_excluded_vip_is_a_vip_change() {
    let a = inst("VI_1", 51, "");
    let b = inst(
        "VI_1",
        51,
        " virtual_ipaddress_excluded {\n 203.0.113.9\n }\n",
    );
    assert_eq!(
        vrrp_diff(&a, &b),
        vec![reconf("VI_1", &["virtual_ipaddress"])]
    );
}

#[test]
fn a_vip_moved_to_another_dev_is_a_vip_change() {
    let a = inst("VI_1", 51, " virtual_ipaddress {\n 203.0.113.250/24\n }\n");
    let b = inst(
        "VI_1",
        51,
        " virtual_ipaddress {\n 203.0.113.250/24 dev eth1\n }\n",
    );
    assert_eq!(
        vrrp_diff(&a, &b),
        vec![reconf("VI_1", &["virtual_ipaddress"])]
    );
}

#[test]
fn several_in_place_changes_are_named_together() {
    let a = inst("VI_1", 51, "");
    let b = inst("VI_1", 51, " nopreempt\n garp_master_delay 2\n")
        .replace("priority 100", "priority 80");
    assert_eq!(
        vrrp_diff(&a, &b),
        vec![reconf("VI_1", &["priority", "preempt", "garp"])]
    );
}

#[test]
fn a_state_change_is_taken_in_place() {
    let a = inst("VI_1", 51, " state BACKUP\n");
    let b = inst("VI_1", 51, " state MASTER\n");
    assert_eq!(vrrp_diff(&a, &b), vec![reconf("VI_1", &["state"])]);
}

#[test]
fn routes_and_rules_are_taken_in_place() {
    let a = inst("VI_1", 51, "");
    let b = inst(
        "VI_1",
        51,
        " virtual_routes {\n 203.0.113.0/24 via 198.51.100.1\n }\n virtual_rules {\n from 198.51.100.250 table 100\n }\n",
    );
    assert_eq!(
        vrrp_diff(&a, &b),
        vec![reconf("VI_1", &["virtual_routes", "virtual_rules"])]
    );
}

#[test]
fn notify_scripts_are_taken_in_place() {
    let a = inst("VI_1", 51, "");
    let b = inst("VI_1", 51, " notify_master \"/bin/true\"\n");
    assert_eq!(vrrp_diff(&a, &b), vec![reconf("VI_1", &["notify"])]);
}

#[test]
fn an_interface_change_is_refused() {
    let a = inst("VI_1", 51, "");
    let b = inst("VI_1", 51, " interface eth1\n");
    assert_eq!(
        vrrp_diff(&a, &b),
        vec![refuse("VI_1", false, "interface changed")]
    );
}

#[test]
fn an_interval_change_is_refused() {
    let a = inst("VI_1", 51, "");
    let b = a.replace("advert_int 1", "advert_int 2");
    assert_eq!(
        vrrp_diff(&a, &b),
        vec![refuse("VI_1", false, "advert_int changed")]
    );
}

#[test]
fn a_version_change_is_refused() {
    let a = inst("VI_1", 51, "");
    let b = inst("VI_1", 51, " version 3\n");
    assert_eq!(
        vrrp_diff(&a, &b),
        vec![refuse("VI_1", false, "version changed")]
    );
}

#[test]
fn an_authentication_change_is_refused() {
    let a = inst(
        "VI_1",
        51,
        " authentication {\n auth_type PASS\n auth_pass 1111\n }\n",
    );
    let b = inst(
        "VI_1",
        51,
        " authentication {\n auth_type PASS\n auth_pass 2222\n }\n",
    );
    assert_eq!(
        vrrp_diff(&a, &b),
        vec![refuse("VI_1", false, "authentication changed")]
    );
}

#[test]
fn unicast_peers_are_refused() {
    let a = inst("VI_1", 51, " unicast_peer {\n 198.51.100.40\n }\n");
    let b = inst("VI_1", 51, " unicast_peer {\n 198.51.100.41\n }\n");
    assert_eq!(
        vrrp_diff(&a, &b),
        vec![refuse("VI_1", false, "unicast_peer changed")]
    );
}

#[test]
fn use_vmac_on_a_kept_instance_is_refused() {
    let a = inst("VI_1", 51, "");
    let b = inst("VI_1", 51, " use_vmac\n");
    assert_eq!(
        vrrp_diff(&a, &b),
        vec![refuse("VI_1", false, "use_vmac changed")]
    );
}

#[test]
fn a_new_instance_with_use_vmac_is_refused() {
    let a = inst("VI_1", 51, "");
    let b = a.clone() + &inst("VI_2", 52, " use_vmac\n");
    assert_eq!(
        vrrp_diff(&a, &b),
        vec![refuse("VI_2", true, "uses use_vmac")]
    );
}

#[test]
fn a_track_script_added_to_a_kept_instance_is_refused() {
    let a = SCRIPT.to_owned() + &inst("VI_1", 51, "");
    let b = SCRIPT.to_owned() + &inst("VI_1", 51, " track_script {\n chk\n }\n");
    assert_eq!(
        vrrp_diff(&a, &b),
        vec![refuse("VI_1", false, "track_script changed")]
    );
}

#[test]
fn a_new_instance_may_share_a_tracked_script() {
    let a = SCRIPT.to_owned() + &inst("VI_1", 51, " track_script {\n chk\n }\n");
    let b = a.clone() + &inst("VI_2", 52, " track_script {\n chk\n }\n");
    assert_eq!(vrrp_diff(&a, &b), vec![start("VI_2")]);
}

#[test]
fn a_new_instance_may_not_track_a_new_script() {
    let a = SCRIPT.to_owned() + &inst("VI_1", 51, "");
    let b = a.clone() + &inst("VI_2", 52, " track_script {\n chk\n }\n");
    assert_eq!(
        vrrp_diff(&a, &b),
        vec![refuse(
            "VI_2",
            true,
            "tracks a vrrp_script no running instance tracks"
        )]
    );
}

#[test]
fn a_new_instance_may_not_track_a_new_interface() {
    let a = inst("VI_1", 51, "");
    let b = a.clone() + &inst("VI_2", 52, " track_interface {\n eth1\n }\n");
    assert_eq!(
        vrrp_diff(&a, &b),
        vec![refuse(
            "VI_2",
            true,
            "tracks an interface no running instance tracks"
        )]
    );
}

#[test]
fn changed_trackers_refuse_every_vrrp_change() {
    let a = inst("VI_1", 51, "");
    let b = inst("VI_1", 51, "").replace("priority 100", "priority 90");
    let got = vrrp(&specs(&a), &specs(&b), true, &Known::default());
    assert_eq!(got.len(), 1);
    assert!(matches!(&got[0], Change::VrrpRefuse { instance: None, .. }));
    assert!(got[0].to_string().contains("no VRRP change applied"));
}

#[test]
fn stops_come_first_then_the_new_file_s_order() {
    let a = inst("VI_1", 51, "") + &inst("VI_2", 52, "");
    let b = inst("VI_3", 53, "") + &inst("VI_1", 51, "").replace("priority 100", "priority 99");
    assert_eq!(
        vrrp_diff(&a, &b),
        vec![stop("VI_2"), start("VI_3"), reconf("VI_1", &["priority"])]
    );
}

#[test]
fn the_log_lines_read_as_before() {
    assert_eq!(
        stop("VI_1").to_string(),
        "(VI_1) reload: removed from the configuration; stopping"
    );
    assert_eq!(
        start("VI_2").to_string(),
        "(VI_2) reload: new instance; starting"
    );
    assert_eq!(
        refuse("VI_2", true, "uses use_vmac").to_string(),
        "(VI_2) reload: a new instance uses use_vmac: not started; restart keepalived-rs for it"
    );
    assert_eq!(
        refuse("VI_1", false, "interface changed").to_string(),
        "(VI_1) reload: interface changed: not applied; restart keepalived-rs for that"
    );
}

// Virtual servers.

fn vs(head: &str, body: &str) -> String {
    format!("virtual_server {head} {{\n protocol TCP\n lb_algo rr\n{body}}}\n")
}

fn rs(addr: &str, body: &str) -> String {
    format!(" real_server {addr} 80 {{\n weight 1\n{body} }}\n")
}

const TCP: &str = "  TCP_CHECK {\n connect_timeout 3\n }\n";

fn svc_diff(old: &str, new: &str) -> Vec<Change> {
    services(&config(old), &config(new))
}

fn id(name: &str) -> ServiceId {
    ServiceId {
        name: name.into(),
        protocol: "TCP",
    }
}

fn sock(a: &str) -> SocketAddr {
    a.parse().unwrap()
}

#[test]
fn same_services_no_change() {
    let a = vs("198.51.100.250 80", &rs("198.51.100.50", TCP));
    assert_eq!(svc_diff(&a, &a), vec![]);
}

#[test]
fn a_service_added_and_one_removed() {
    let a = vs("198.51.100.250 80", &rs("198.51.100.50", ""));
    let b = vs("198.51.100.251 80", &rs("198.51.100.50", ""));
    assert_eq!(
        svc_diff(&a, &b),
        vec![
            Change::ServiceRemove {
                service: id("198.51.100.250 80")
            },
            Change::ServiceAdd {
                service: id("198.51.100.251 80")
            },
        ]
    );
}

#[test]
fn the_protocol_is_part_of_a_service_s_identity() {
    let a = vs("198.51.100.250 53", "");
    let b = a.replace("protocol TCP", "protocol UDP");
    let got = svc_diff(&a, &b);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(matches!(&got[1], Change::ServiceAdd { service } if service.protocol == "UDP"));
}

#[test]
fn a_scheduler_change_names_the_keyword() {
    let a = vs("198.51.100.250 80", &rs("198.51.100.50", ""));
    let b = a.replace("lb_algo rr", "lb_algo wlc");
    assert_eq!(
        svc_diff(&a, &b),
        vec![Change::ServiceUpdate {
            service: id("198.51.100.250 80"),
            what: vec!["lb_algo".into()]
        }]
    );
}

#[test]
fn a_real_server_added_and_removed() {
    let a = vs("198.51.100.250 80", &rs("198.51.100.50", ""));
    let b = vs("198.51.100.250 80", &rs("198.51.100.51", ""));
    assert_eq!(
        svc_diff(&a, &b),
        vec![
            Change::RealRemove {
                service: id("198.51.100.250 80"),
                real: sock("198.51.100.50:80")
            },
            Change::RealAdd {
                service: id("198.51.100.250 80"),
                real: sock("198.51.100.51:80")
            },
        ]
    );
}

#[test]
fn a_weight_change_is_a_real_server_update_not_a_service_one() {
    let a = vs("198.51.100.250 80", &rs("198.51.100.50", ""));
    let b = a.replace("weight 1", "weight 5");
    assert_eq!(
        svc_diff(&a, &b),
        vec![Change::RealUpdate {
            service: id("198.51.100.250 80"),
            real: sock("198.51.100.50:80"),
            what: vec!["weight".into()]
        }]
    );
}

#[test]
fn a_checker_s_parameters_changed() {
    let a = vs("198.51.100.250 80", &rs("198.51.100.50", TCP));
    let b = a.replace("connect_timeout 3", "connect_timeout 5");
    assert_eq!(
        svc_diff(&a, &b),
        vec![Change::RealUpdate {
            service: id("198.51.100.250 80"),
            real: sock("198.51.100.50:80"),
            what: vec!["TCP_CHECK".into()]
        }]
    );
}

#[test]
fn a_server_moved_between_virtual_servers() {
    let a = vs("198.51.100.250 80", &rs("198.51.100.50", ""))
        + &vs("198.51.100.251 80", &rs("198.51.100.51", ""));
    let b = vs("198.51.100.250 80", &rs("198.51.100.51", ""))
        + &vs("198.51.100.251 80", &rs("198.51.100.51", ""));
    assert_eq!(
        svc_diff(&a, &b),
        vec![
            Change::RealRemove {
                service: id("198.51.100.250 80"),
                real: sock("198.51.100.50:80")
            },
            Change::RealAdd {
                service: id("198.51.100.250 80"),
                real: sock("198.51.100.51:80")
            },
        ]
    );
}

#[test]
fn a_fwmark_service_is_keyed_by_its_mark() {
    let a = vs("fwmark 1", &rs("198.51.100.50", ""));
    let b = vs("fwmark 2", &rs("198.51.100.50", ""));
    let got = svc_diff(&a, &b);
    assert_eq!(
        got,
        vec![
            Change::ServiceRemove {
                service: id("fwmark 1")
            },
            Change::ServiceAdd {
                service: id("fwmark 2")
            },
        ]
    );
    assert_eq!(
        got[1].to_string(),
        "reload: virtual server fwmark 2 TCP added"
    );
}

#[test]
fn a_quorum_and_sorry_server_change() {
    let a = vs("198.51.100.250 80", "");
    let b = vs(
        "198.51.100.250 80",
        " quorum 2\n sorry_server 198.51.100.60 80\n",
    );
    assert_eq!(
        svc_diff(&a, &b),
        vec![Change::ServiceUpdate {
            service: id("198.51.100.250 80"),
            what: vec!["quorum".into(), "sorry_server".into()]
        }]
    );
}

#[test]
fn an_instance_removed_and_added_back_finds_its_script_still_running() {
    // VI_1 tracked chk at start; a reload removed it; chk still runs.
    let at_start = specs(&(SCRIPT.to_owned() + &inst("VI_1", 51, " track_script {\n chk\n }\n")));
    let known = Known::of(&at_start);
    let now = specs(&(SCRIPT.to_owned() + &inst("VI_2", 52, "")));
    let back = specs(
        &(SCRIPT.to_owned()
            + &inst("VI_2", 52, "")
            + &inst("VI_1", 51, " track_script {\n chk\n }\n")),
    );
    assert_eq!(vrrp(&now, &back, false, &known), vec![start("VI_1")]);
    // What the running instances alone would say: refused.
    assert_eq!(
        vrrp(&now, &back, false, &Known::of(&now)),
        vec![refuse(
            "VI_1",
            true,
            "tracks a vrrp_script no running instance tracks"
        )]
    );
}

#[test]
fn two_new_instances_on_one_vrid_the_second_is_refused() {
    let a = inst("VI_1", 51, "");
    let b = a.clone() + &inst("VI_2", 60, "") + &inst("VI_3", 60, "");
    assert_eq!(
        vrrp_diff(&a, &b),
        vec![
            start("VI_2"),
            refuse("VI_3", true, "has the VRID of another on its interface")
        ]
    );
}
