//! The state machine driven with packets and clock values, asserting actions
//! and timing to the microsecond. Nothing sleeps.

#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::time::Duration;

use vrrp::router::Garp;
use vrrp::wire::{PseudoHeader, MULTICAST_V4};
use vrrp::*;

const LB1: &str = "198.51.100.22";
const LB2: &str = "198.51.100.40";
const VIP: &str = "198.51.100.250";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn us(n: u64) -> Instant {
    Instant::from_micros(n)
}

fn ms(n: u64) -> Instant {
    Instant::from_millis(n)
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

fn v3(priority: u8, interval_ms: u64) -> Config {
    Config {
        version: Version::V3,
        advert_interval: Duration::from_millis(interval_ms),
        ..config(priority)
    }
}

/// An advert from `src` matching `cfg` but for `priority`.
fn advert_from(cfg: &Config, src: &str, priority: u8) -> Input {
    let a = Advert {
        version: cfg.version,
        vrid: cfg.vrid,
        priority,
        interval: cfg.wire_interval(),
        auth: cfg.auth.clone(),
        addrs: cfg.vips.clone(),
    };
    packet(&a, src)
}

fn packet(a: &Advert, src: &str) -> Input {
    let dst = IpAddr::V4(MULTICAST_V4);
    Input::Packet {
        src: ip(src),
        dst,
        ttl: 255,
        bytes: a.emit(Some(PseudoHeader { src: ip(src), dst })),
    }
}

fn states(actions: &[Action]) -> Vec<(StateName, StateName)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::State { from, to } => Some((*from, *to)),
            _ => None,
        })
        .collect()
}

fn sent_priorities(actions: &[Action]) -> Vec<u8> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { advert, .. } => Some(advert.priority),
            _ => None,
        })
        .collect()
}

/// Whether `actions` announce the VIP `repeat` times.
fn announces(actions: &[Action], repeat: u32) -> bool {
    actions.contains(&Action::Announce {
        addrs: vec![ip(VIP)],
        repeat,
    })
}

fn started(cfg: Config) -> Router {
    let mut r = Router::new(cfg);
    let a = r.handle(Instant::ZERO, Input::Start);
    assert!(!a.is_empty());
    r
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

// ---------- timing ----------

#[test]
fn backup_priority_90_v2_takes_over_at_3s_648ms() {
    let mut r = started(config(90));
    assert_eq!(r.state(), StateName::Backup);
    assert_eq!(r.master_down_interval(), Duration::from_micros(3_648_437));
    assert_eq!(r.poll_at(), Some(us(3_648_437)));
    assert!(r.handle(us(3_648_436), Input::Timer).is_empty());
    let a = r.handle(us(3_648_437), Input::Timer);
    assert_eq!(states(&a), [(StateName::Backup, StateName::Master)]);
    assert_eq!(sent_priorities(&a), [90]);
    assert!(
        matches!(a[1], Action::Send { .. }),
        "the advert goes out first"
    );
    assert_eq!(a[2], Action::AddVips(vec![ip(VIP)]));
    assert!(matches!(a[3], Action::Announce { repeat: 5, .. }));
}

#[test]
fn v3_at_10ms_adverts_takes_over_at_36_484ms() {
    let r = started(v3(90, 10));
    // 3 × 10 ms + (256 − 90) × 10 ms / 256 = 30 ms + 6.484 ms
    assert_eq!(r.skew_time(), Duration::from_micros(6_484));
    assert_eq!(r.poll_at(), Some(us(36_484)));
}

#[test]
fn v3_at_1s_priority_100() {
    let r = started(v3(100, 1000));
    assert_eq!(r.master_down_interval(), Duration::from_micros(3_609_375));
}

#[test]
fn master_down_interval_for_every_priority_and_interval_is_exact() {
    for prio in 1..=254u8 {
        for cs in [1u64, 7, 100, 4095] {
            let r = Router::new(v3(prio, cs * 10));
            let skew = (256 - u64::from(prio)) * cs * 625 / 16;
            assert_eq!(
                r.master_down_interval(),
                Duration::from_micros(3 * cs * 10_000 + skew)
            );
            assert!(r.skew_time() < Duration::from_millis(cs * 10));
        }
        let r = Router::new(config(prio));
        let skew = (256 - u64::from(prio)) * 1_000_000 / 256;
        assert_eq!(
            r.master_down_interval(),
            Duration::from_micros(3_000_000 + skew)
        );
    }
}

#[test]
fn owner_becomes_master_at_once() {
    let mut r = Router::new(config(255));
    let a = r.handle(ms(0), Input::Start);
    assert_eq!(states(&a), [(StateName::Init, StateName::Master)]);
    assert_eq!(sent_priorities(&a), [255]);
    assert_eq!(r.poll_at(), Some(ms(1000)));
}

#[test]
fn state_master_waits_one_interval_and_the_minimum_skew() {
    let cfg = Config {
        initial_state: InitialState::Master,
        ..config(100)
    };
    let r = started(cfg);
    assert_eq!(r.state(), StateName::Backup);
    // 1 s + 1/256 s, as keepalived
    assert_eq!(r.poll_at(), Some(us(1_003_906)));
}

#[test]
fn master_sends_an_advert_every_interval_exactly() {
    let mut r = master(config(255));
    for n in 1..=5u64 {
        assert_eq!(r.poll_at(), Some(ms(1000 * n)));
        assert_eq!(
            sent_priorities(&r.handle(ms(1000 * n), Input::Timer)),
            [255]
        );
    }
}

#[test]
fn a_late_timer_sends_one_advert_not_a_burst() {
    let mut r = master(config(255));
    let a = r.handle(ms(3500), Input::Timer);
    assert_eq!(sent_priorities(&a), [255]);
    assert_eq!(r.poll_at(), Some(ms(4500)));
}

#[test]
fn startup_delay_holds_init() {
    let cfg = Config {
        startup_delay: Duration::from_secs(2),
        ..config(90)
    };
    let mut r = Router::new(cfg);
    assert!(r.handle(ms(0), Input::Start).is_empty());
    assert_eq!(r.state(), StateName::Init);
    assert_eq!(r.poll_at(), Some(ms(2000)));
    let a = r.handle(ms(2000), Input::Timer);
    assert_eq!(states(&a), [(StateName::Init, StateName::Backup)]);
    assert_eq!(r.poll_at(), Some(us(2_000_000 + 3_648_437)));
}

// ---------- backup ----------

#[test]
fn an_advert_restarts_the_down_timer() {
    let cfg = config(90);
    let mut r = started(cfg.clone());
    assert!(r.handle(ms(2000), advert_from(&cfg, LB2, 100)).is_empty());
    assert_eq!(r.poll_at(), Some(us(2_000_000 + 3_648_437)));
    assert_eq!(r.master(), Some(ip(LB2)));
    assert_eq!(r.counters().received, 1);
}

#[test]
fn lower_priority_master_is_preempted_when_its_advert_is_ignored() {
    let cfg = config(100);
    let mut r = started(cfg.clone());
    let down = r.poll_at().unwrap();
    assert!(r.handle(ms(500), advert_from(&cfg, LB2, 90)).is_empty());
    assert_eq!(
        r.poll_at(),
        Some(down),
        "a lower-priority advert must not restart the timer"
    );
    assert_eq!(
        states(&r.handle(down, Input::Timer)),
        [(StateName::Backup, StateName::Master)]
    );
}

#[test]
fn nopreempt_accepts_a_lower_priority_master() {
    let cfg = Config {
        preempt: false,
        ..config(100)
    };
    let mut r = started(cfg.clone());
    r.handle(ms(500), advert_from(&cfg, LB2, 90));
    assert_eq!(r.poll_at(), Some(us(500_000 + 3_609_375)));
}

#[test]
fn preempt_delay_accepts_lower_adverts_until_it_expires() {
    let cfg = Config {
        preempt_delay: Duration::from_secs(5),
        ..config(100)
    };
    let mut r = started(cfg.clone());
    for t in [500u64, 1500, 2500, 3500, 4500] {
        r.handle(ms(t), advert_from(&cfg, LB2, 90));
        assert_eq!(r.poll_at(), Some(us(t * 1000 + 3_609_375)), "at {t} ms");
    }
    // From 5.5 s the delay has passed: the advert is ignored.
    r.handle(ms(5500), advert_from(&cfg, LB2, 90));
    assert_eq!(r.poll_at(), Some(us(4_500_000 + 3_609_375)));
    let a = r.handle(us(8_109_375), Input::Timer);
    assert_eq!(states(&a), [(StateName::Backup, StateName::Master)]);
}

#[test]
fn priority_zero_lets_the_backup_take_over_after_skew_time() {
    let cfg = config(90);
    let mut r = started(cfg.clone());
    r.handle(ms(1000), advert_from(&cfg, LB2, 100));
    r.handle(ms(2000), advert_from(&cfg, LB2, 100));
    r.handle(ms(3000), advert_from(&cfg, LB2, 0));
    assert_eq!(r.poll_at(), Some(us(3_000_000 + 648_437)));
    assert_eq!(r.counters().priority_zero_received, 1);
}

#[test]
fn priority_zero_for_other_addresses_does_not_hasten_the_takeover() {
    // A misconfigured peer's or a forged "I am leaving": counted, and the
    // backup waits for its down timer as if it had not come.
    let cfg = config(90);
    let other = Config {
        vips: vec![ip("198.51.100.251")],
        ..cfg.clone()
    };
    let mut r = started(cfg.clone());
    r.handle(ms(1000), advert_from(&cfg, LB2, 100));
    r.handle(ms(2000), advert_from(&other, LB2, 0));
    assert_eq!(r.poll_at(), Some(us(1_000_000 + 3_648_437)));
    assert_eq!(r.counters().priority_zero_received, 1);
    assert_eq!(r.counters().address_list_mismatch, 1);
    // With the check off (`skip_check_adv_addr`) it is believed.
    let mut r = started(Config {
        check_addrs: false,
        ..cfg.clone()
    });
    r.handle(ms(1000), advert_from(&cfg, LB2, 100));
    r.handle(ms(2000), advert_from(&other, LB2, 0));
    assert_eq!(r.poll_at(), Some(us(2_000_000 + 648_437)));
}

#[test]
fn v3_backup_learns_the_masters_interval() {
    let cfg = v3(90, 1000);
    let mut r = started(cfg.clone());
    let fast = Config {
        advert_interval: Duration::from_millis(500),
        ..cfg
    };
    r.handle(ms(100), advert_from(&fast, LB2, 100));
    // 3 × 500 ms + 166 × 50 cs × 625/16 µs
    assert_eq!(r.poll_at(), Some(us(100_000 + 1_500_000 + 324_218)));
}

#[test]
fn equal_priority_backup_defers_to_the_master() {
    let cfg = config(100);
    let mut r = started(cfg.clone());
    r.handle(ms(100), advert_from(&cfg, LB2, 100));
    assert_eq!(r.poll_at(), Some(us(100_000 + 3_609_375)));
}

// ---------- master ----------

#[test]
fn master_steps_down_for_a_higher_priority() {
    let cfg = config(100);
    let mut r = master(cfg.clone());
    assert_eq!(r.priority(), 100);
    let a = r.handle(ms(4000), advert_from(&cfg, LB2, 150));
    assert_eq!(states(&a), [(StateName::Master, StateName::Backup)]);
    assert!(a.contains(&Action::RemoveVips(vec![ip(VIP)])));
    assert_eq!(r.poll_at(), Some(us(4_000_000 + 3_609_375)));
}

#[test]
fn equal_priority_higher_address_wins() {
    let cfg = config(100);
    let mut r = Router::new(config(100));
    r.handle(ms(0), Input::Start);
    r.handle(us(3_609_375), Input::Timer);
    assert_eq!(r.state(), StateName::Master);
    let a = r.handle(ms(4000), advert_from(&cfg, LB2, 100));
    assert_eq!(
        states(&a),
        [(StateName::Master, StateName::Backup)],
        "{LB2} > {LB1}"
    );
}

#[test]
fn equal_priority_lower_address_loses() {
    let cfg = config(100);
    let mut r = Router::new(config(100));
    r.handle(ms(0), Input::Start);
    r.handle(us(3_609_375), Input::Timer);
    let a = r.handle(ms(4000), advert_from(&cfg, "198.51.100.10", 100));
    assert!(states(&a).is_empty());
    assert_eq!(r.state(), StateName::Master);
}

#[test]
fn master_answers_priority_zero_with_an_advert_at_once() {
    let cfg = config(255);
    let mut r = master(cfg.clone());
    let a = r.handle(ms(300), advert_from(&cfg, LB2, 0));
    assert_eq!(sent_priorities(&a), [255]);
    assert_eq!(r.poll_at(), Some(ms(1300)));
}

#[test]
fn a_lower_priority_advert_makes_the_master_advertise_and_announce_twice() {
    // keepalived: "forcing new election" — an advert at once, a GARP burst,
    // and a second burst garp_lower_prio_delay later.
    let mut r = master(config(255));
    let a = r.handle(ms(100), advert_from(&config(255), LB2, 50));
    assert_eq!(sent_priorities(&a), [255]);
    assert!(announces(&a, 5), "{a:?}");
    assert_eq!(r.poll_at(), Some(ms(1000)), "the advert timer is unchanged");
    let a = r.handle(ms(5100), Input::Timer);
    assert!(announces(&a, 5), "second burst at 100 ms + 5 s: {a:?}");
}

#[test]
fn garp_second_burst_after_master_delay_and_refresh() {
    let cfg = Config {
        garp: Garp {
            master_refresh: Duration::from_secs(60),
            master_refresh_repeat: 2,
            ..Garp::default()
        },
        ..config(255)
    };
    let mut r = master(cfg);
    let a = r.handle(ms(5000), Input::Timer);
    assert!(announces(&a, 5), "{a:?}");
    let a = r.handle(ms(60_000), Input::Timer);
    assert!(announces(&a, 2), "{a:?}");
    let a = r.handle(ms(120_000), Input::Timer);
    assert!(announces(&a, 2), "{a:?}");
}

#[test]
fn no_second_burst_when_master_delay_is_zero() {
    let cfg = Config {
        garp: Garp {
            master_delay: Duration::ZERO,
            ..Garp::default()
        },
        ..config(255)
    };
    let mut r = master(cfg);
    let a = r.handle(ms(5000), Input::Timer);
    assert!(!a.iter().any(|a| matches!(a, Action::Announce { .. })));
}

#[test]
fn graceful_stop_of_a_master_sends_priority_zero_and_releases_the_vips() {
    let mut r = master(config(255));
    let a = r.handle(ms(500), Input::Stop);
    assert_eq!(sent_priorities(&a), [0]);
    assert!(a.contains(&Action::RemoveVips(vec![ip(VIP)])));
    assert_eq!(states(&a), [(StateName::Master, StateName::Stop)]);
    assert_eq!(r.poll_at(), None);
}

#[test]
fn stopping_a_backup_sends_nothing() {
    let mut r = started(config(90));
    let a = r.handle(ms(100), Input::Stop);
    assert_eq!(
        a,
        [Action::State {
            from: StateName::Backup,
            to: StateName::Stop
        }]
    );
}

#[test]
fn a_stopped_router_restarts() {
    let mut r = started(config(90));
    r.handle(ms(100), Input::Stop);
    let a = r.handle(ms(200), Input::Start);
    assert_eq!(states(&a), [(StateName::Init, StateName::Backup)]);
    assert_eq!(r.poll_at(), Some(us(200_000 + 3_648_437)));
}

// ---------- tracking and fault ----------

#[test]
fn tracking_weights_set_the_priority_adverts_carry() {
    let mut r = Router::new(config(100));
    r.handle(ms(0), Input::Start);
    r.handle(us(3_609_375), Input::Timer);
    let a = r.handle(
        ms(3700),
        Input::Track {
            weight: -20,
            fault: false,
        },
    );
    assert_eq!(a, [Action::Priority { priority: 80 }]);
    assert_eq!(
        sent_priorities(&r.handle(us(4_609_375), Input::Timer)),
        [80]
    );
}

#[test]
fn effective_priority_is_clamped_to_1_254() {
    let mut r = started(config(100));
    r.handle(
        ms(1),
        Input::Track {
            weight: 500,
            fault: false,
        },
    );
    assert_eq!(r.priority(), 254);
    r.handle(
        ms(2),
        Input::Track {
            weight: -500,
            fault: false,
        },
    );
    assert_eq!(r.priority(), 1);
}

#[test]
fn the_owner_keeps_255_whatever_the_weights() {
    let mut r = master(config(255));
    r.handle(
        ms(1),
        Input::Track {
            weight: -50,
            fault: false,
        },
    );
    assert_eq!(r.priority(), 255);
}

#[test]
fn a_lower_priority_changes_the_backup_skew() {
    let mut r = started(config(100));
    r.handle(
        ms(0),
        Input::Track {
            weight: -10,
            fault: false,
        },
    );
    assert_eq!(r.skew_time(), Duration::from_micros(166 * 1_000_000 / 256));
}

#[test]
fn fault_takes_a_master_out_with_priority_zero() {
    let mut r = master(config(255));
    let a = r.handle(
        ms(400),
        Input::Track {
            weight: 0,
            fault: true,
        },
    );
    assert_eq!(sent_priorities(&a), [0]);
    assert!(a.contains(&Action::RemoveVips(vec![ip(VIP)])));
    assert_eq!(states(&a), [(StateName::Master, StateName::Fault)]);
    assert_eq!(r.poll_at(), None);
}

#[test]
fn fault_cleared_returns_to_backup_with_a_full_down_timer() {
    let mut r = started(config(90));
    r.handle(
        ms(100),
        Input::Track {
            weight: 0,
            fault: true,
        },
    );
    assert_eq!(r.state(), StateName::Fault);
    let a = r.handle(
        ms(5000),
        Input::Track {
            weight: 0,
            fault: false,
        },
    );
    assert_eq!(states(&a), [(StateName::Fault, StateName::Backup)]);
    assert_eq!(r.poll_at(), Some(us(5_000_000 + 3_648_437)));
}

#[test]
fn faulty_at_start_means_fault() {
    let mut r = Router::new(config(90));
    r.handle(
        ms(0),
        Input::Track {
            weight: 0,
            fault: true,
        },
    );
    let a = r.handle(ms(0), Input::Start);
    assert_eq!(states(&a), [(StateName::Init, StateName::Fault)]);
}

#[test]
fn adverts_are_ignored_in_fault() {
    let cfg = config(90);
    let mut r = started(cfg.clone());
    r.handle(
        ms(100),
        Input::Track {
            weight: 0,
            fault: true,
        },
    );
    assert!(r.handle(ms(200), advert_from(&cfg, LB2, 100)).is_empty());
    assert_eq!(r.state(), StateName::Fault);
}

// ---------- receive validation: an invalid packet changes nothing ----------

fn assert_dropped(cfg: Config, input: Input, why: Drop) {
    let mut r = started(cfg);
    let before = (r.state(), r.poll_at(), r.master());
    let a = r.handle(ms(1000), input);
    assert!(a.is_empty(), "{a:?}");
    assert_eq!((r.state(), r.poll_at(), r.master()), before);
    assert_eq!(
        r.counters().dropped.get(&why),
        Some(&1),
        "{:?}",
        r.counters()
    );
    assert_eq!(r.counters().received, 0);
}

#[test]
fn drop_ttl_other_than_255() {
    let cfg = config(90);
    let Input::Packet {
        src, dst, bytes, ..
    } = advert_from(&cfg, LB2, 100)
    else {
        unreachable!()
    };
    assert_dropped(
        cfg,
        Input::Packet {
            src,
            dst,
            ttl: 64,
            bytes,
        },
        Drop::Ttl,
    );
}

#[test]
fn drop_bad_checksum() {
    let cfg = config(90);
    let Input::Packet {
        src,
        dst,
        ttl,
        mut bytes,
    } = advert_from(&cfg, LB2, 100)
    else {
        unreachable!()
    };
    bytes[6] ^= 0xff;
    assert_dropped(
        cfg,
        Input::Packet {
            src,
            dst,
            ttl,
            bytes,
        },
        Drop::Wire(wire::WireError::Checksum),
    );
}

#[test]
fn drop_truncated() {
    let cfg = config(90);
    let Input::Packet {
        src,
        dst,
        ttl,
        mut bytes,
    } = advert_from(&cfg, LB2, 100)
    else {
        unreachable!()
    };
    bytes.truncate(10);
    assert_dropped(
        cfg,
        Input::Packet {
            src,
            dst,
            ttl,
            bytes,
        },
        Drop::Wire(wire::WireError::Truncated),
    );
}

#[test]
fn drop_other_version() {
    let cfg = config(90);
    let other = Config {
        version: Version::V3,
        ..cfg.clone()
    };
    assert_dropped(cfg, advert_from(&other, LB2, 100), Drop::Version);
}

#[test]
fn drop_unknown_version_whatever_its_length() {
    // Version 1 with a VRRPv2 body: an unknown version, not "too long".
    let cfg = config(90);
    let Input::Packet {
        src,
        dst,
        ttl,
        mut bytes,
    } = advert_from(&cfg, LB2, 100)
    else {
        unreachable!()
    };
    bytes[0] = 0x11;
    assert_dropped(
        cfg,
        Input::Packet {
            src,
            dst,
            ttl,
            bytes,
        },
        Drop::Wire(wire::WireError::Version),
    );
}

#[test]
fn drop_other_vrid() {
    let cfg = config(90);
    let other = Config {
        vrid: 52,
        ..cfg.clone()
    };
    assert_dropped(cfg, advert_from(&other, LB2, 100), Drop::Vrid);
}

#[test]
fn drop_auth_mismatch() {
    let cfg = Config {
        auth: Auth::pass("1111"),
        ..config(90)
    };
    let other = Config {
        auth: Auth::pass("2222"),
        ..cfg.clone()
    };
    assert_dropped(cfg.clone(), advert_from(&other, LB2, 100), Drop::Auth);
    let none = Config {
        auth: Auth::None,
        ..cfg.clone()
    };
    assert_dropped(cfg, advert_from(&none, LB2, 100), Drop::Auth);
}

#[test]
fn drop_v2_interval_mismatch() {
    let cfg = config(90);
    let other = Config {
        advert_interval: Duration::from_secs(2),
        ..cfg.clone()
    };
    assert_dropped(cfg, advert_from(&other, LB2, 100), Drop::Interval);
}

#[test]
fn v2_address_list_mismatch_is_counted_and_accepted_as_keepalived_does() {
    // RFC 3768 lets a receiver drop it; keepalived logs and goes on, and a peer
    // with another VIP list must still be heard (or both become master).
    let cfg = config(90);
    let other = Config {
        vips: vec![ip("198.51.100.251")],
        ..cfg.clone()
    };
    let mut r = started(cfg);
    r.handle(ms(1000), advert_from(&other, LB2, 100));
    assert_eq!(r.counters().received, 1);
    assert_eq!(r.counters().address_list_mismatch, 1);
    assert_eq!(r.poll_at(), Some(us(1_000_000 + 3_648_437)));
}

#[test]
fn drop_v3_interval_zero() {
    let cfg = v3(90, 1000);
    let zero = Advert {
        version: Version::V3,
        vrid: 51,
        priority: 100,
        interval: 0,
        auth: Auth::None,
        addrs: vec![ip(VIP)],
    };
    assert_dropped(cfg, packet(&zero, LB2), Drop::Interval);
}

#[test]
fn v3_address_list_mismatch_is_counted_and_accepted() {
    let cfg = v3(90, 1000);
    let other = Config {
        vips: vec![ip("198.51.100.251")],
        ..cfg.clone()
    };
    let mut r = started(cfg);
    r.handle(ms(1000), advert_from(&other, LB2, 100));
    assert_eq!(r.counters().received, 1);
    assert_eq!(r.counters().address_list_mismatch, 1);
    assert_eq!(r.poll_at(), Some(us(1_000_000 + 3_648_437)));
}

#[test]
fn drop_our_own_advert() {
    let cfg = config(90);
    assert_dropped(cfg.clone(), advert_from(&cfg, LB1, 100), Drop::Own);
}

#[test]
fn drop_other_family() {
    let cfg = v3(90, 1000);
    let a = Advert {
        version: Version::V3,
        vrid: 51,
        priority: 100,
        interval: 100,
        auth: Auth::None,
        addrs: vec![ip("2001:db8:100::250")],
    };
    let src: IpAddr = ip("fe80::40");
    let dst = IpAddr::V6(wire::MULTICAST_V6);
    let bytes = a.emit(Some(PseudoHeader { src, dst }));
    assert_dropped(
        cfg,
        Input::Packet {
            src,
            dst,
            ttl: 255,
            bytes,
        },
        Drop::Family,
    );
}

#[test]
fn unicast_accepts_only_configured_peers_and_any_ttl() {
    let cfg = Config {
        peers: vec![ip(LB2)],
        ..config(90)
    };
    assert_dropped(
        cfg.clone(),
        to(advert_from(&cfg, "198.51.100.99", 100), LB1),
        Drop::UnknownPeer,
    );
    let mut r = started(cfg.clone());
    let Input::Packet { src, bytes, .. } = advert_from(&cfg, LB2, 100) else {
        unreachable!()
    };
    r.handle(
        ms(1000),
        Input::Packet {
            src,
            dst: ip(LB1),
            ttl: 64,
            bytes,
        },
    );
    assert_eq!(r.counters().received, 1, "{:?}", r.counters());
}

/// `input` sent to `dst` instead (v2: the checksum does not cover it).
fn to(input: Input, dst: &str) -> Input {
    let Input::Packet {
        src, ttl, bytes, ..
    } = input
    else {
        unreachable!()
    };
    Input::Packet {
        src,
        dst: ip(dst),
        ttl,
        bytes,
    }
}

#[test]
fn unicast_mode_drops_multicast_and_multicast_mode_drops_unicast() {
    let uni = Config {
        peers: vec![ip(LB2)],
        ..config(90)
    };
    assert_dropped(uni.clone(), advert_from(&uni, LB2, 0), Drop::Destination);
    let multi = config(90);
    assert_dropped(
        multi.clone(),
        to(advert_from(&multi, LB2, 0), LB1),
        Drop::Destination,
    );
}

#[test]
fn unicast_master_sends_to_each_peer() {
    let cfg = Config {
        peers: vec![ip(LB2), ip("198.51.100.41")],
        ..config(255)
    };
    let mut r = Router::new(cfg);
    let a = r.handle(ms(0), Input::Start);
    let dests: Vec<Dest> = a
        .iter()
        .filter_map(|a| match a {
            Action::Send { to, .. } => Some(*to),
            _ => None,
        })
        .collect();
    assert_eq!(
        dests,
        [Dest::Unicast(ip(LB2)), Dest::Unicast(ip("198.51.100.41"))]
    );
}

#[test]
fn payload_of_a_send_parses_back_with_its_checksum() {
    let mut r = Router::new(v3(255, 1000));
    let a = r.handle(ms(0), Input::Start);
    let send = a.iter().find(|a| matches!(a, Action::Send { .. })).unwrap();
    let bytes = send.payload().unwrap();
    let ph = PseudoHeader {
        src: ip(LB1),
        dst: IpAddr::V4(MULTICAST_V4),
    };
    let parsed = Advert::parse(&bytes, Family::V4, Some(ph), false).unwrap();
    assert_eq!(
        (parsed.priority, parsed.interval, parsed.vrid),
        (255, 100, 51)
    );
}

#[test]
fn garbage_never_changes_anything() {
    let cfg = config(90);
    let mut r = started(cfg);
    let before = (r.state(), r.poll_at());
    let mut seed = 0x1234_5678u32;
    for len in 0..300usize {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (seed >> 16).to_le_bytes()[0]
            })
            .collect();
        let a = r.handle(
            ms(1),
            Input::Packet {
                src: ip(LB2),
                dst: IpAddr::V4(MULTICAST_V4),
                ttl: 255,
                bytes,
            },
        );
        assert!(a.is_empty());
    }
    assert_eq!((r.state(), r.poll_at()), before);
    assert_eq!(r.counters().received, 0);
}

// ---------- sync groups ----------

#[test]
fn sync_group_members_follow_each_other() {
    use vrrp::sync::SyncGroup;
    let a = Config {
        name: "VI_1".into(),
        ..config(100)
    };
    let b = Config {
        name: "VI_2".into(),
        vrid: 52,
        vips: vec![ip("198.51.100.251")],
        ..config(100)
    };
    let mut g = SyncGroup::new(vec![Router::new(a), Router::new(b)]);
    g.handle(ms(0), 0, Input::Start);
    g.handle(ms(0), 1, Input::Start);
    // A tracked failure on VI_1 takes the whole group to FAULT.
    let out = g.handle(
        ms(10),
        0,
        Input::Track {
            weight: 0,
            fault: true,
        },
    );
    assert!(out.contains(&(
        1,
        Action::State {
            from: StateName::Backup,
            to: StateName::Fault
        }
    )));
    let out = g.handle(
        ms(20),
        0,
        Input::Track {
            weight: 0,
            fault: false,
        },
    );
    assert!(out.contains(&(
        1,
        Action::State {
            from: StateName::Fault,
            to: StateName::Backup
        }
    )));
    // VI_1 becoming MASTER brings VI_2 along.
    let at = g.members()[0].poll_at().unwrap();
    let out = g.handle(at, 0, Input::Timer);
    assert!(
        out.contains(&(
            1,
            Action::State {
                from: StateName::Backup,
                to: StateName::Master
            }
        )),
        "{out:?}"
    );
    assert_eq!(g.members()[1].state(), StateName::Master);
}

#[test]
fn virtual_routes_and_rules_follow_the_vips() {
    let cfg = Config {
        routes: vec!["203.0.113.0/24 via 198.51.100.1".into()],
        rules: vec!["from 198.51.100.250 table 100".into()],
        ..config(255)
    };
    let mut r = Router::new(cfg);
    let a = r.handle(ms(0), Input::Start);
    let add = Action::AddRoutes {
        routes: vec!["203.0.113.0/24 via 198.51.100.1".into()],
        rules: vec!["from 198.51.100.250 table 100".into()],
    };
    assert_eq!(a[3], add, "routes go in right after the VIPs");
    let a = r.handle(ms(100), Input::Stop);
    assert!(
        a.iter().any(|x| matches!(x, Action::RemoveRoutes { .. })),
        "{a:?}"
    );
}

fn group() -> vrrp::sync::SyncGroup {
    let a = Config {
        name: "VI_1".into(),
        ..config(100)
    };
    let b = Config {
        name: "VI_2".into(),
        vrid: 52,
        vips: vec![ip("198.51.100.251")],
        ..config(100)
    };
    vrrp::sync::SyncGroup::new(vec![Router::new(a), Router::new(b)])
}

#[test]
fn a_member_that_hears_a_live_master_holds_the_group_in_backup() {
    let mut g = group();
    g.handle(ms(0), 0, Input::Start);
    g.handle(ms(0), 1, Input::Start);
    let vi2 = Config {
        vrid: 52,
        vips: vec![ip("198.51.100.251")],
        ..config(100)
    };
    // VRID 52 has a live master (priority 200) that keeps advertising.
    for t in (1000..=10_000).step_by(1000) {
        g.handle(ms(t), 1, advert_from(&vi2, LB2, 200));
        let at = g.poll_at().unwrap();
        if at <= ms(t + 999) {
            g.handle(at, 0, Input::Timer);
        }
    }
    assert!(g.members()[0].wants_master(), "VI_1's timer ran out");
    assert_eq!(
        g.members()[0].state(),
        StateName::Backup,
        "but the group holds it"
    );
    assert_eq!(g.members()[1].state(), StateName::Backup);
}

#[test]
fn restarting_one_member_does_not_take_the_group_down() {
    let mut g = group();
    g.handle(ms(0), 0, Input::Start);
    g.handle(ms(0), 1, Input::Start);
    g.handle(us(3_609_375), 0, Input::Timer);
    assert!(g.members().iter().all(|m| m.state() == StateName::Master));
    g.handle(ms(4000), 1, Input::Stop);
    let out = g.handle(ms(4100), 1, Input::Start);
    assert!(
        !out.iter().any(|(i, _)| *i == 0),
        "VI_1 must not move: {out:?}"
    );
    assert_eq!(g.members()[0].state(), StateName::Master);
    // VI_2's own timer runs out: with VI_1 already MASTER the group takes it along.
    let at = g.members()[1].poll_at().unwrap();
    g.handle(at, 1, Input::Timer);
    assert_eq!(g.members()[1].state(), StateName::Master);
}

#[test]
fn v3_checksum_as_v2_also_applies_to_what_we_send() {
    let cfg = Config {
        v3_checksum_as_v2: true,
        ..v3(255, 1000)
    };
    let mut r = Router::new(cfg);
    let a = r.handle(ms(0), Input::Start);
    let bytes = a.iter().find_map(Action::payload).unwrap();
    assert_eq!(
        vrrp::wire::checksum(0, &bytes),
        0,
        "a v2-style checksum over the message alone"
    );
}

#[test]
fn leaving_fault_forgets_the_old_masters_interval() {
    let cfg = v3(90, 1000);
    let mut r = started(cfg.clone());
    let fast = Config {
        advert_interval: Duration::from_millis(100),
        ..cfg
    };
    r.handle(ms(10), advert_from(&fast, LB2, 100));
    r.handle(
        ms(20),
        Input::Track {
            weight: 0,
            fault: true,
        },
    );
    r.handle(
        ms(30),
        Input::Track {
            weight: 0,
            fault: false,
        },
    );
    assert_eq!(
        r.poll_at(),
        Some(us(30_000 + 3_648_437)),
        "own 1 s interval again"
    );
}
