//! A backup that was not scheduled past its down timer (a stalled process,
//! 2 busy cores) while its master kept advertising: the advert waiting in
//! the socket proves the master alive, so the backup stays backup. keepalived
//! reads the socket before it handles the read timeout; issue 26 item 10.

#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::time::Duration;

use vrrp::wire::{PseudoHeader, MULTICAST_V4};
use vrrp::*;

const MASTER: &str = "198.51.100.22";
const US: &str = "198.51.100.40";
const VIP: &str = "198.51.100.250";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn v3_10ms(priority: u8) -> Config {
    Config {
        name: "VI_1".into(),
        vrid: 51,
        version: Version::V3,
        priority,
        advert_interval: Duration::from_millis(10),
        primary: ip(US),
        vips: vec![ip(VIP)],
        ..Config::default()
    }
}

fn advert(cfg: &Config, priority: u8) -> Vec<u8> {
    let a = Advert {
        version: cfg.version,
        vrid: cfg.vrid,
        priority,
        interval: cfg.wire_interval(),
        auth: cfg.auth.clone(),
        addrs: cfg.vips.clone(),
    };
    let dst = IpAddr::V4(MULTICAST_V4);
    a.emit(Some(PseudoHeader {
        src: ip(MASTER),
        dst,
    }))
}

fn packet(cfg: &Config, priority: u8) -> Input {
    Input::Packet {
        src: ip(MASTER),
        dst: IpAddr::V4(MULTICAST_V4),
        ttl: 255,
        bytes: advert(cfg, priority),
    }
}

fn took_over(actions: &[Action]) -> bool {
    actions
        .iter()
        .any(|a| matches!(a, Action::AddVips(_) | Action::Send { .. }))
}

/// A backup (priority 90) that heard its master at 5 ms: down at 41.484 ms.
fn backup(cfg: &Config) -> Router {
    let mut r = Router::new(cfg.clone());
    r.handle(Instant::ZERO, Input::Start);
    assert!(r
        .handle(Instant::from_millis(5), packet(cfg, 100))
        .is_empty());
    assert_eq!(r.poll_at(), Some(Instant::from_micros(41_484)));
    r
}

#[test]
fn a_stalled_backup_reads_the_waiting_advert_before_its_down_timer() {
    let cfg = v3_10ms(90);
    let mut r = backup(&cfg);
    // Not scheduled from 5 ms to 60 ms; the master's advert waits in the socket.
    let a = r.handle(Instant::from_millis(60), packet(&cfg, 100));
    assert!(
        !took_over(&a),
        "took over with the master's advert at hand: {a:?}"
    );
    assert_eq!(r.state(), StateName::Backup);
    assert_eq!(r.poll_at(), Some(Instant::from_micros(60_000 + 36_484)));
    assert_eq!(r.counters().became_master, 0);
}

#[test]
fn the_drivers_packet_path_reads_it_first_too() {
    let cfg = v3_10ms(90);
    let mut r = backup(&cfg);
    let mut a = Vec::new();
    let (src, dst) = (ip(MASTER), IpAddr::V4(MULTICAST_V4));
    r.handle_packet(
        Instant::from_millis(60),
        src,
        dst,
        255,
        &advert(&cfg, 100),
        &mut a,
    );
    assert!(
        !took_over(&a),
        "took over with the master's advert at hand: {a:?}"
    );
    assert_eq!(r.state(), StateName::Backup);
    assert_eq!(r.poll_at(), Some(Instant::from_micros(96_484)));
}

#[test]
fn a_waiting_lower_priority_advert_does_not_hold_a_preempting_backup() {
    let cfg = v3_10ms(90);
    let mut r = backup(&cfg);
    // The waiting advert is a lower-priority master's (ignored: we pre-empt),
    // so the expired down timer fires at once after it.
    let a = r.handle(Instant::from_millis(60), packet(&cfg, 80));
    assert_eq!(r.state(), StateName::Master);
    assert!(a.contains(&Action::AddVips(vec![ip(VIP)])));
    assert!(r.poll_at().is_some_and(|t| t > Instant::from_millis(60)));
}

#[test]
fn a_waiting_priority_zero_advert_takes_over_after_the_skew_only() {
    let cfg = v3_10ms(90);
    let mut r = backup(&cfg);
    let a = r.handle(Instant::from_millis(60), packet(&cfg, 0));
    assert!(!took_over(&a));
    assert_eq!(r.poll_at(), Some(Instant::from_micros(60_000 + 6_484)));
}

#[test]
fn with_nothing_waiting_the_late_timer_still_takes_over() {
    let cfg = v3_10ms(90);
    let mut r = backup(&cfg);
    let a = r.handle(Instant::from_millis(60), Input::Timer);
    assert_eq!(r.state(), StateName::Master);
    assert!(took_over(&a));
}
