//! Two hosts on one switch reach each other over IPv4 and IPv6, and the built-in
//! web server answers the built-in client across the bridge.

#![allow(clippy::unwrap_used)] // a test that cannot set up fails, which is what unwrap does

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use netlab::{http, Lab};

const A4: &str = "198.51.100.10";
const B4: &str = "198.51.100.11";
const A6: &str = "2001:db8:100::10";
const B6: &str = "2001:db8:100::11";

fn two_hosts() -> Lab {
    Lab::star(&[
        ("a", &["198.51.100.10/24", "2001:db8:100::10/64"]),
        ("b", &["198.51.100.11/24", "2001:db8:100::11/64"]),
    ])
    .expect("build lab")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

#[test]
fn hosts_ping_each_other_over_ipv4_and_ipv6() {
    if !netlab::privileged("hosts_ping_each_other_over_ipv4_and_ipv6") {
        return;
    }
    let lab = two_hosts();
    let (a, b) = (lab.node("a").unwrap(), lab.node("b").unwrap());
    let t = Duration::from_secs(2);
    assert!(a.ping(ip(B4), t), "a cannot ping b over IPv4");
    assert!(b.ping(ip(A4), t), "b cannot ping a over IPv4");
    assert!(a.ping(ip(B6), t), "a cannot ping b over IPv6");
    assert!(b.ping(ip(A6), t), "b cannot ping a over IPv6");
    // An address nobody has does not answer: the test can tell both outcomes apart.
    assert!(!a.ping(ip("198.51.100.99"), Duration::from_secs(1)));
}

#[test]
fn web_server_answers_across_the_bridge_on_both_families() {
    if !netlab::privileged("web_server_answers_across_the_bridge_on_both_families") {
        return;
    }
    let lab = two_hosts();
    let (a, b) = (lab.node("a").unwrap(), lab.node("b").unwrap());
    let web4 = http::WebServer::start(b, SocketAddr::new(ip(B4), 80), "this is yy web!").unwrap();
    let web6 = http::WebServer::start(b, SocketAddr::new(ip(B6), 80), "this is cc web!").unwrap();
    let t = Duration::from_secs(3);
    let r4 = http::get(a, web4.addr(), "/", t).unwrap();
    assert_eq!((r4.status, r4.body.as_str()), (200, "this is yy web!\n"));
    let r6 = http::get(a, web6.addr(), "/", t).unwrap();
    assert_eq!((r6.status, r6.body.as_str()), (200, "this is cc web!\n"));
    web4.set_status(503);
    assert_eq!(http::get(a, web4.addr(), "/", t).unwrap().status, 503);
    assert_eq!(web4.hits(), 2);
    // The server lives in b's namespace only: a has no such local address.
    assert!(!a.has_address(ip(B4)).unwrap());
    assert!(b.has_address(ip(B4)).unwrap());
}
