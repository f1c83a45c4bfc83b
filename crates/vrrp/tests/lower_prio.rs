//! Forged adverts must not amplify: a master answers a lower-priority (or
//! priority-0) advert at once, as RFC 9568 §6.4.3 and keepalived do, but at
//! most [`vrrp::router::ANSWER_BURST`] times back to back and then once per
//! advert interval; the GARP burst that goes with an answer at most once per
//! `garp_lower_prio_delay`. Virtual time: nothing sleeps.

#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::time::Duration;

use vrrp::wire::{PseudoHeader, MULTICAST_V4};
use vrrp::*;

const LB1: &str = "198.51.100.22";
const STRANGER: &str = "198.51.100.99";
const VIP: &str = "198.51.100.250";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn us(n: u64) -> Instant {
    Instant::from_micros(n)
}

fn config(priority: u8) -> Config {
    Config {
        name: "VI_1".into(),
        vrid: 51,
        version: Version::V2,
        priority,
        advert_interval: Duration::from_secs(1),
        primary: ip(LB1),
        vips: vec![ip(VIP)],
        ..Config::default()
    }
}

/// The bytes of an advert from `src` matching `cfg` but for `priority`.
fn advert_from(cfg: &Config, src: &str, priority: u8) -> Input {
    let a = Advert {
        version: cfg.version,
        vrid: cfg.vrid,
        priority,
        interval: cfg.wire_interval(),
        auth: cfg.auth.clone(),
        addrs: cfg.vips.clone(),
    };
    let dst = IpAddr::V4(MULTICAST_V4);
    Input::Packet {
        src: ip(src),
        dst,
        ttl: 255,
        bytes: a.emit(Some(PseudoHeader { src: ip(src), dst })),
    }
}

/// A router that is master: an owner at time 0, others when their down timer fires.
fn master(cfg: Config) -> Router {
    let mut r = Router::new(cfg);
    r.handle(Instant::ZERO, Input::Start);
    if let Some(at) = r.poll_at().filter(|_| r.state() == StateName::Backup) {
        r.handle(at, Input::Timer);
    }
    assert_eq!(r.state(), StateName::Master);
    r
}

/// What a flood made the router do.
#[derive(Debug, Default)]
struct Tally {
    adverts: u64,
    garp_bursts: u64,
    garps: u64,
    state_changes: u64,
}

impl Tally {
    fn add(&mut self, actions: &[Action]) {
        for a in actions {
            match a {
                Action::Send { .. } => self.adverts += 1,
                Action::Announce { addrs, repeat } => {
                    self.garp_bursts += 1;
                    self.garps += u64::from(*repeat) * addrs.len() as u64;
                }
                Action::State { .. } => self.state_changes += 1,
                _ => {}
            }
        }
    }

    fn merge(&mut self, o: &Tally) {
        self.adverts += o.adverts;
        self.garp_bursts += o.garp_bursts;
        self.garps += o.garps;
        self.state_changes += o.state_changes;
    }
}

/// `n` copies of `input` evenly spread over `span` from `start`, the timers
/// fired in between as a driver would.
fn flood(r: &mut Router, start: Instant, span: Duration, n: u64, input: &Input) -> Tally {
    let mut t = Tally::default();
    let step = u64::try_from(span.as_micros()).unwrap() / n;
    for k in 0..n {
        let now = us(start.as_micros() + k * step);
        while let Some(at) = r.poll_at().filter(|at| *at <= now) {
            t.add(&r.handle(at, Input::Timer));
        }
        t.add(&r.handle(now, input.clone()));
    }
    t
}

#[test]
fn ten_thousand_lower_priority_adverts_in_a_second_get_a_bounded_answer() {
    let cfg = config(200);
    let mut r = master(cfg.clone());
    let start = r.poll_at().unwrap() + Duration::from_micros(1);
    let t = flood(
        &mut r,
        start,
        Duration::from_secs(1),
        10_000,
        &advert_from(&cfg, STRANGER, 100),
    );
    // One periodic advert falls in the second, plus at most ANSWER_BURST
    // answers and one refilled after an interval.
    assert!(
        t.adverts <= 1 + u64::from(router::ANSWER_BURST) + 1,
        "{t:?}"
    );
    assert!(t.adverts >= 2, "the first one is answered at once: {t:?}");
    assert_eq!(
        t.garp_bursts, 1,
        "one GARP burst per garp_lower_prio_delay: {t:?}"
    );
    assert_eq!(t.state_changes, 0);
    assert_eq!(r.state(), StateName::Master);
    let c = r.counters();
    assert_eq!(c.lower_prio_received, 10_000);
    assert!(c.lower_prio_unanswered >= 10_000 - 3, "{c:?}");
}

#[test]
fn ten_seconds_of_flood_cost_at_most_two_adverts_per_interval() {
    let cfg = config(200);
    let mut r = master(cfg.clone());
    let start = r.poll_at().unwrap() + Duration::from_micros(1);
    let t = flood(
        &mut r,
        start,
        Duration::from_secs(10),
        100_000,
        &advert_from(&cfg, STRANGER, 100),
    );
    // 10 periodic adverts, answers: ANSWER_BURST + one per interval.
    assert!(
        t.adverts <= 10 + u64::from(router::ANSWER_BURST) + 10,
        "{t:?}"
    );
    // GARP bursts: at 0 s, the second 5 s later, a new pair from 5 s on,
    // and a third first burst at 10 s at the latest: 5 × 5 frames at most.
    assert!(t.garp_bursts <= 5, "{t:?}");
    assert!(t.garps <= 25, "{t:?}");
    assert_eq!(t.state_changes, 0);
}

#[test]
fn a_lower_priority_master_after_a_quiet_spell_is_answered_at_once() {
    // The flood spends the answers; an interval later a real lower-priority
    // master (a split brain healing) still gets its advert at once.
    let cfg = config(200);
    let mut r = master(cfg.clone());
    let lower = advert_from(&cfg, STRANGER, 100);
    let start = r.poll_at().unwrap() + Duration::from_micros(1);
    flood(&mut r, start, Duration::from_millis(100), 1_000, &lower);
    let later = start + Duration::from_millis(100) + cfg.advert_interval * 2;
    while let Some(at) = r.poll_at().filter(|at| *at <= later) {
        r.handle(at, Input::Timer);
    }
    let a = r.handle(later, lower);
    assert!(
        a.iter().any(|a| matches!(a, Action::Send { .. })),
        "answered at once: {a:?}"
    );
}

#[test]
fn a_flood_of_priority_zero_adverts_gets_a_bounded_answer() {
    let cfg = config(200);
    let mut r = master(cfg.clone());
    let start = r.poll_at().unwrap() + Duration::from_micros(1);
    let t = flood(
        &mut r,
        start,
        Duration::from_secs(1),
        10_000,
        &advert_from(&cfg, STRANGER, 0),
    );
    assert!(
        t.adverts <= 1 + u64::from(router::ANSWER_BURST) + 1,
        "{t:?}"
    );
    assert!(t.adverts >= 2, "the first one is answered at once: {t:?}");
    assert_eq!(t.state_changes, 0);
    assert_eq!(r.state(), StateName::Master);
}

#[test]
fn lower_prio_no_advert_announces_but_sends_no_advert() {
    // keepalived's `lower_prio_no_advert`: no advert in answer, the GARP
    // burst still goes (garp_lower_prio_repeat).
    let cfg = Config {
        lower_prio_no_advert: true,
        ..config(200)
    };
    let mut r = master(cfg.clone());
    // Between two periodic adverts.
    let now = r
        .poll_at()
        .unwrap()
        .saturating_sub(Duration::from_millis(500));
    let a = r.handle(now, advert_from(&cfg, STRANGER, 100));
    assert!(
        !a.iter().any(|a| matches!(a, Action::Send { .. })),
        "no advert: {a:?}"
    );
    assert!(
        a.contains(&Action::Announce {
            addrs: vec![ip(VIP)],
            repeat: 5
        }),
        "{a:?}"
    );
    let start = now + Duration::from_micros(1);
    let t = flood(
        &mut r,
        start,
        Duration::from_secs(1),
        10_000,
        &advert_from(&cfg, STRANGER, 100),
    );
    assert_eq!(t.adverts, 1, "the periodic one only: {t:?}");
    assert_eq!(t.garp_bursts, 0, "{t:?}");
}

#[test]
fn a_backup_ignores_a_flood_of_lower_priority_adverts() {
    let cfg = config(150);
    let mut r = Router::new(cfg.clone());
    r.handle(Instant::ZERO, Input::Start);
    // A real master at 200 is heard every second throughout.
    let real = advert_from(&config(200), "198.51.100.40", 200);
    r.handle(us(500_000), real.clone());
    let mut t = Tally::default();
    for s in 1..=10u64 {
        t.add(&r.handle(us(s * 1_000_000), real.clone()));
        t.merge(&flood(
            &mut r,
            us(s * 1_000_000 + 1),
            Duration::from_millis(999),
            10_000,
            &advert_from(&cfg, STRANGER, 100),
        ));
    }
    assert_eq!((t.adverts, t.garps, t.state_changes), (0, 0, 0), "{t:?}");
    assert_eq!(r.state(), StateName::Backup);
}
