//! `auth_hmac` through the router: a master's adverts carry a trailer a
//! backup with the same key accepts; without it, or with another key, the
//! backup counts a drop and takes over as if nothing were heard; the stamps
//! follow the wall clock the driver gives, also after it is stepped.

#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::time::Duration;

use vrrp::auth_hmac::{self, AntiReplay, Key, Mode, Reject, Trailer};
use vrrp::{Action, Config, Drop, InitialState, Input, Instant, Router, StateName, Version};

const WALL: u64 = 1_764_000_000_000_000;

fn hmac(key: u8, mode: Mode) -> auth_hmac::Config {
    auth_hmac::Config {
        keys: vec![Key::new(1, zeroize::Zeroizing::new(vec![key; 32])).unwrap()],
        active_key: 1,
        mode,
        anti_replay: AntiReplay::Time { window_secs: 5 },
    }
}

fn router(primary: &str, priority: u8, hmac: Option<auth_hmac::Config>) -> Router {
    let mut r = Router::new(Config {
        vrid: 51,
        version: Version::V3,
        priority,
        advert_interval: Duration::from_secs(1),
        initial_state: if priority == 100 {
            InitialState::Master
        } else {
            InitialState::Backup
        },
        primary: primary.parse().unwrap(),
        vips: vec!["198.51.100.250".parse().unwrap()],
        auth_hmac: hmac,
        ..Config::default()
    });
    r.set_wall_clock(WALL);
    r
}

/// The adverts (payload bytes) among `actions`.
fn adverts(actions: &[Action]) -> Vec<Vec<u8>> {
    actions.iter().filter_map(Action::payload).collect()
}

fn feed(r: &mut Router, at: Instant, bytes: &[u8]) -> Vec<Action> {
    let src: IpAddr = "198.51.100.22".parse().unwrap();
    let dst: IpAddr = "224.0.0.18".parse().unwrap();
    r.handle(
        at,
        Input::Packet {
            src,
            dst,
            ttl: 255,
            bytes: bytes.to_vec(),
        },
    )
}

/// Everything `r` does up to `until`: its input at `from`, then its timers.
fn run(r: &mut Router, from: Instant, input: Input, until: Instant) -> Vec<Action> {
    let mut out = r.handle(from, input);
    while let Some(at) = r.poll_at().filter(|at| *at <= until) {
        out.extend(r.handle(at, Input::Timer));
    }
    out
}

fn became_master(actions: &[Action]) -> bool {
    actions.iter().any(|a| {
        matches!(
            a,
            Action::State {
                to: StateName::Master,
                ..
            }
        )
    })
}

#[test]
fn signed_adverts_hold_the_backup_and_stamps_follow_the_clock() {
    let mut m = router("198.51.100.22", 100, Some(hmac(7, Mode::Enforce)));
    let mut b = router("198.51.100.40", 90, Some(hmac(7, Mode::Enforce)));
    b.handle(Instant::ZERO, Input::Start);
    // Ten seconds: every advert the master sends reaches the backup.
    let mut sent = adverts(&run(&mut m, Instant::ZERO, Input::Start, Instant::ZERO));
    let mut at = Instant::ZERO;
    for _ in 0..10 {
        for a in &sent {
            assert!(!became_master(&feed(&mut b, at, a)));
        }
        at = at + Duration::from_millis(500);
        assert!(!became_master(&run(
            &mut b,
            at,
            Input::Track {
                weight: 0,
                fault: false
            },
            at
        )));
        sent = adverts(&run(
            &mut m,
            at,
            Input::Track {
                weight: 0,
                fault: false,
            },
            at,
        ));
        at = at + Duration::from_millis(500);
        assert!(!became_master(&run(
            &mut b,
            at,
            Input::Track {
                weight: 0,
                fault: false
            },
            at
        )));
        sent.extend(adverts(&run(
            &mut m,
            at,
            Input::Track {
                weight: 0,
                fault: false,
            },
            at,
        )));
    }
    assert!(b.counters().hmac_accepted >= 8, "{:?}", b.counters());
    let last = sent.last().unwrap();
    let t = Trailer::parse(&last[last.len() - auth_hmac::TRAILER_LEN..]).unwrap();
    assert!(u64::from(t.secs()) >= WALL / 1_000_000 + 9);
    // The wall clock is stepped an hour ahead: the next stamp follows.
    m.set_wall_clock(WALL + 3_600_000_000);
    let later = adverts(&run(
        &mut m,
        at,
        Input::Track {
            weight: 0,
            fault: false,
        },
        at + Duration::from_secs(1),
    ));
    let t = Trailer::parse(&later[0][later[0].len() - auth_hmac::TRAILER_LEN..]).unwrap();
    assert!(
        u64::from(t.secs()) >= WALL / 1_000_000 + 3_600 + 10,
        "{}",
        t.secs()
    );
}

#[test]
fn unsigned_or_wrongly_signed_adverts_are_as_if_unheard() {
    let quiet = || Input::Track {
        weight: 0,
        fault: false,
    };
    for (sender, receiver, want) in [
        (None, Mode::Enforce, Some(Reject::Missing)),
        (
            Some(hmac(8, Mode::Enforce)),
            Mode::Enforce,
            Some(Reject::Invalid),
        ),
        (
            Some(hmac(8, Mode::Enforce)),
            Mode::Permissive,
            Some(Reject::Invalid),
        ),
        (None, Mode::Permissive, None),
        (None, Mode::ReceiveOnly, None),
    ] {
        let mut m = router("198.51.100.22", 100, sender);
        let mut b = router("198.51.100.40", 90, Some(hmac(7, receiver)));
        b.handle(Instant::ZERO, Input::Start);
        let mut sent = adverts(&run(&mut m, Instant::ZERO, Input::Start, Instant::ZERO));
        let mut at = Instant::ZERO;
        let mut took_over = false;
        for _ in 0..10 {
            for a in &sent {
                took_over |= became_master(&feed(&mut b, at, a));
            }
            at = at + Duration::from_millis(500);
            took_over |= became_master(&run(&mut b, at, quiet(), at));
            sent = adverts(&run(&mut m, at, quiet(), at));
        }
        if let Some(why) = want {
            assert!(
                took_over,
                "{why:?}: the backup should not have heard a master"
            );
            assert!(
                b.counters().dropped[&Drop::Hmac(why)] >= 3,
                "{:?}",
                b.counters()
            );
            assert_eq!(b.counters().hmac_accepted, 0);
        } else {
            assert!(!took_over, "{receiver:?} lets unsigned adverts through");
            assert!(b.counters().hmac_unsigned >= 3, "{:?}", b.counters());
        }
    }
}
