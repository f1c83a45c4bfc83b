//! Tests of `spec`.

use super::*;
use std::path::Path;

struct Fake;
impl Interfaces for Fake {
    fn primary(&self, ifname: &str, family: Family) -> Option<IpAddr> {
        match (ifname, family) {
            ("eth0", Family::V4) => "198.51.100.22".parse().ok(),
            ("eth0", Family::V6) => "fe80::22".parse().ok(),
            _ => None,
        }
    }
}

fn specs(text: &str) -> Result<Vec<InstanceSpec>, SpecError> {
    let loaded = kaconf::parse_str(Path::new("t.conf"), text, &kaconf::Options::default());
    assert!(!loaded.has_errors(), "{:?}", loaded.rendered());
    instances(&loaded.config, &Fake)
}

#[test]
fn the_seed_instance_gets_keepalived_defaults() {
    let s = specs(
        "vrrp_instance VI_1 {\n state MASTER\n interface eth0\n virtual_router_id 51\n priority 100\n advert_int 1\n authentication {\n auth_type PASS\n auth_pass 1111\n }\n virtual_ipaddress {\n 198.51.100.250\n }\n}\n",
    )
    .unwrap();
    let e = &s[0].engine;
    assert_eq!((e.vrid, e.priority, e.version), (51, 100, Version::V2));
    assert_eq!(e.advert_interval, Duration::from_secs(1));
    assert_eq!(e.initial_state, InitialState::Master);
    assert_eq!(e.primary, "198.51.100.22".parse::<IpAddr>().unwrap());
    assert_eq!(e.auth, Auth::pass("1111"));
    assert!(e.preempt && e.peers.is_empty());
    assert_eq!(e.garp, Garp::default());
    assert_eq!(e.down_timer_adverts, 3);
}

#[test]
fn v3_unicast_nopreempt_and_globals() {
    let s = specs(
        "global_defs {\n vrrp_version 3\n vrrp_garp_master_delay 2\n vrrp_garp_master_repeat 3\n}\nvrrp_instance VI_1 {\n interface eth0\n virtual_router_id 7\n advert_int 0.1\n nopreempt\n unicast_src_ip 198.51.100.22\n unicast_peer {\n 198.51.100.40\n }\n virtual_ipaddress {\n 198.51.100.250/24 dev eth0\n }\n}\n",
    )
    .unwrap();
    let e = &s[0].engine;
    assert_eq!(e.version, Version::V3);
    assert_eq!(e.advert_interval, Duration::from_millis(100));
    assert!(!e.preempt);
    assert_eq!(e.peers, vec!["198.51.100.40".parse::<IpAddr>().unwrap()]);
    assert_eq!(
        (e.garp.master_delay, e.garp.master_repeat),
        (Duration::from_secs(2), 3)
    );
    assert_eq!(
        (e.garp.lower_prio_delay, e.garp.lower_prio_repeat),
        (Duration::from_secs(2), 3)
    );
}

#[test]
fn lower_prio_no_advert_from_the_instance_the_globals_or_vrrp_strict() {
    let inst = "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 7\n";
    let no_advert = |top: &str, body: &str| {
        specs(&format!("{top}{inst}{body}}}\n")).unwrap()[0]
            .engine
            .lower_prio_no_advert
    };
    assert!(!no_advert("", ""));
    assert!(no_advert("", " lower_prio_no_advert\n"));
    assert!(!no_advert("", " lower_prio_no_advert false\n"));
    assert!(no_advert(
        "global_defs {\n vrrp_lower_prio_no_advert\n}\n",
        ""
    ));
    assert!(!no_advert(
        "global_defs {\n vrrp_lower_prio_no_advert\n}\n",
        " lower_prio_no_advert false\n"
    ));
    assert!(no_advert("global_defs {\n vrrp_strict\n}\n", ""));
}

#[test]
fn ipv6_vips_mean_v3_from_the_link_local_address() {
    let s = specs(
        "vrrp_instance VI_6 {\n interface eth0\n virtual_router_id 9\n virtual_ipaddress {\n 2001:db8:100::250/64\n }\n}\n",
    )
    .unwrap();
    assert_eq!(s[0].engine.version, Version::V3);
    assert_eq!(s[0].engine.primary, "fe80::22".parse::<IpAddr>().unwrap());
}

#[test]
fn intervals_fit_the_version() {
    assert_eq!(interval(Version::V2, None), Duration::from_secs(1));
    assert_eq!(
        interval(Version::V2, Some(Duration::from_millis(1500))),
        Duration::from_secs(2)
    );
    assert_eq!(
        interval(Version::V2, Some(Duration::from_millis(200))),
        Duration::from_secs(1)
    );
    assert_eq!(
        interval(Version::V3, Some(Duration::from_millis(105))),
        Duration::from_millis(100)
    );
    assert_eq!(
        interval(Version::V3, Some(Duration::from_millis(1))),
        Duration::from_millis(10)
    );
}

#[test]
fn an_interface_without_an_address_is_an_error() {
    let e = specs("vrrp_instance VI_1 {\n interface eth9\n virtual_router_id 9\n}\n").unwrap_err();
    assert_eq!(e.instance, "VI_1");
    assert!(e.reason.contains("eth9"), "{e}");
}

#[test]
fn track_scripts_keep_their_weights() {
    let s = specs(
        "vrrp_script chk {\n script /bin/true\n weight 1\n}\nvrrp_instance VI_1 {\n interface eth0\n virtual_router_id 9\n track_script {\n chk\n chk weight 10 reverse\n }\n}\n",
    )
    .unwrap();
    assert_eq!(
        s[0].track_scripts,
        vec![
            ("chk".to_owned(), None),
            ("chk".to_owned(), Some((10, true)))
        ]
    );
}
