//! A reload's new configuration under a running router: what changes in
//! place, and what is refused.

#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::time::Duration;

use vrrp::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn config(priority: u8, vips: &[&str]) -> Config {
    Config {
        name: "VI_1".into(),
        vrid: 51,
        priority,
        primary: ip("198.51.100.22"),
        vips: vips.iter().map(|v| ip(v)).collect(),
        ..Config::default()
    }
}

fn master(c: Config) -> (Router, Instant) {
    let mut r = Router::new(c);
    r.handle(Instant::ZERO, Input::Start);
    let t = r.poll_at().unwrap();
    r.handle(t, Input::Timer);
    assert_eq!(r.state(), StateName::Master);
    (r, t)
}

#[test]
fn a_master_adds_the_new_vip_keeps_the_old_and_sends_no_priority_zero() {
    let (mut r, t) = master(config(100, &["198.51.100.250"]));
    let now = t + Duration::from_millis(300);
    let mut out = Vec::new();
    r.reconfigure(
        now,
        config(100, &["198.51.100.250", "198.51.100.251"]),
        &mut out,
    )
    .unwrap();
    assert_eq!(r.state(), StateName::Master, "no election");
    assert!(
        !out.iter()
            .any(|a| matches!(a, Action::RemoveVips(_) | Action::State { .. })),
        "{out:?}"
    );
    assert!(
        out.contains(&Action::AddVips(vec![ip("198.51.100.251")])),
        "{out:?}"
    );
    assert!(out.contains(&Action::Announce {
        addrs: vec![ip("198.51.100.251")],
        repeat: 5
    }));
    let sent: Vec<&Advert> = out
        .iter()
        .filter_map(|a| match a {
            Action::Send { advert, .. } => Some(&**advert),
            _ => None,
        })
        .collect();
    assert_eq!(sent.len(), 1, "the new list at once");
    assert_eq!(sent[0].priority, 100, "never priority 0");
    assert_eq!(sent[0].addrs.len(), 2);
    // The next advert is still one interval after the last: no gap.
    assert_eq!(r.poll_at(), Some(t + Duration::from_secs(1)));
}

#[test]
fn a_removed_vip_goes_a_priority_change_is_in_place() {
    let (mut r, t) = master(config(100, &["198.51.100.250", "198.51.100.251"]));
    let mut out = Vec::new();
    r.reconfigure(t, config(120, &["198.51.100.250"]), &mut out)
        .unwrap();
    assert!(out.contains(&Action::RemoveVips(vec![ip("198.51.100.251")])));
    assert!(out.contains(&Action::Priority { priority: 120 }));
    assert_eq!(r.priority(), 120);
    assert_eq!(r.state(), StateName::Master);
    // A backup only takes the new values.
    let mut b = Router::new(config(90, &["198.51.100.250"]));
    b.handle(Instant::ZERO, Input::Start);
    let due = b.poll_at();
    let mut out = Vec::new();
    b.reconfigure(
        Instant::ZERO,
        config(90, &["198.51.100.250", "198.51.100.251"]),
        &mut out,
    )
    .unwrap();
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(b.poll_at(), due, "its down timer runs on");
}

#[test]
fn what_cannot_change_under_a_running_router_is_refused() {
    let (mut r, t) = master(config(100, &["198.51.100.250"]));
    let before = (r.state(), r.priority(), r.poll_at(), r.config().clone());
    let mut c = config(100, &["198.51.100.250"]);
    c.vrid = 52;
    let mut out = Vec::new();
    assert_eq!(r.reconfigure(t, c, &mut out), Err("virtual_router_id"));
    let mut c = config(100, &["198.51.100.250"]);
    c.advert_interval = Duration::from_secs(2);
    assert_eq!(r.reconfigure(t, c, &mut out), Err("advert_int"));
    assert!(out.is_empty());
    assert_eq!(
        (r.state(), r.priority(), r.poll_at(), r.config().clone()),
        before
    );
}
