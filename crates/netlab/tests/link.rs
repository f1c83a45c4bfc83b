//! Cutting a link stops traffic and restoring it brings traffic back, both for a
//! silent cut (carrier stays up, as in a split brain) and for a pulled cable.

#![allow(clippy::unwrap_used)] // a test that cannot set up fails, which is what unwrap does

use std::net::IpAddr;
use std::time::{Duration, Instant};

use netlab::Lab;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn lab() -> Lab {
    Lab::star(&[
        ("a", &["198.51.100.20/24", "2001:db8:100::20/64"]),
        ("b", &["198.51.100.21/24", "2001:db8:100::21/64"]),
    ])
    .expect("build lab")
}

/// Pings until it works or `limit` passes; returns whether it ever worked.
fn ping_within(node: &netlab::Node, to: IpAddr, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if node.ping(to, Duration::from_secs(1)) {
            return true;
        }
    }
    false
}

#[test]
fn silent_cut_stops_ping_and_restore_brings_it_back() {
    if !netlab::privileged("silent_cut_stops_ping_and_restore_brings_it_back") {
        return;
    }
    let lab = lab();
    let a = lab.node("a").unwrap();
    let link = lab.link("b", "eth0").unwrap().clone();
    assert!(ping_within(a, ip("198.51.100.21"), Duration::from_secs(3)));

    lab.cut(&link).unwrap();
    assert!(
        !a.ping(ip("198.51.100.21"), Duration::from_secs(1)),
        "ping went through a cut link"
    );
    assert!(!a.ping(ip("2001:db8:100::21"), Duration::from_secs(1)));
    // The cut is silent: b still has carrier, like a node whose peer vanished.
    let state = lab
        .node("b")
        .unwrap()
        .exec(&["cat", "/sys/class/net/eth0/carrier"]);
    assert_eq!(String::from_utf8_lossy(&state.unwrap().stdout).trim(), "1");

    lab.restore(&link).unwrap();
    assert!(
        ping_within(a, ip("198.51.100.21"), Duration::from_secs(5)),
        "IPv4 did not come back"
    );
    assert!(
        ping_within(a, ip("2001:db8:100::21"), Duration::from_secs(5)),
        "IPv6 did not come back"
    );
}

#[test]
fn pulled_cable_drops_carrier_and_plugging_it_back_restores_traffic() {
    if !netlab::privileged("pulled_cable_drops_carrier_and_plugging_it_back_restores_traffic") {
        return;
    }
    let lab = lab();
    let (a, b) = (lab.node("a").unwrap(), lab.node("b").unwrap());
    let link = lab.link("b", "eth0").unwrap().clone();
    assert!(ping_within(a, ip("198.51.100.21"), Duration::from_secs(3)));

    lab.set_carrier(&link, false).unwrap();
    let carrier = b.exec(&["cat", "/sys/class/net/eth0/carrier"]).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&carrier.stdout).trim(),
        "0",
        "carrier still up"
    );
    assert!(!a.ping(ip("198.51.100.21"), Duration::from_secs(1)));

    lab.set_carrier(&link, true).unwrap();
    assert!(ping_within(a, ip("198.51.100.21"), Duration::from_secs(5)));
}

#[test]
fn wait_for_address_sees_an_address_within_milliseconds() {
    if !netlab::privileged("wait_for_address_sees_an_address_within_milliseconds") {
        return;
    }
    let lab = lab();
    let a = lab.node("a").unwrap().clone();
    let vip = ip("198.51.100.250");
    assert!(a.wait_for_address(vip, Duration::from_millis(20)).is_err());
    let adder = {
        let a = a.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            a.add_address("eth0", "198.51.100.250/32").unwrap();
        })
    };
    let waited = a.wait_for_address(vip, Duration::from_secs(5)).unwrap();
    adder.join().unwrap();
    assert!(
        waited >= Duration::from_millis(90),
        "saw the address before it was added: {waited:?}"
    );
    assert!(waited < Duration::from_secs(2), "took {waited:?}");
    a.exec(&["ip", "addr", "del", "198.51.100.250/32", "dev", "eth0"])
        .unwrap();
    a.wait_for_address_gone(vip, Duration::from_secs(1))
        .unwrap();
}
