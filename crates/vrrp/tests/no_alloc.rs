//! A master sending adverts and a backup receiving them allocate nothing per
//! advert once running (#6: "no per-advert allocation"), counted by dhat's
//! heap profiler standing in as the global allocator of this test binary
//! (which has no test harness: nothing else runs while it counts).

#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::time::Duration;

use vrrp::wire::{PseudoHeader, MULTICAST_V4};
use vrrp::{Action, Advert, Auth, Config, Input, Instant, Router, StateName, Version};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn config(priority: u8, primary: &str) -> Config {
    Config {
        name: "VI_1".into(),
        vrid: 51,
        version: Version::V3,
        priority,
        advert_interval: Duration::from_millis(10),
        primary: ip(primary),
        vips: vec![ip("198.51.100.250"), ip("198.51.100.251")],
        ..Config::default()
    }
}

fn blocks() -> u64 {
    dhat::HeapStats::get().total_blocks
}

fn main() {
    adverts_sent_and_received_allocate_nothing();
    println!("no_alloc: adverts sent and received allocate nothing ... ok");
}

fn adverts_sent_and_received_allocate_nothing() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let mut out = Vec::new();
    let mut payload = Vec::new();

    // A master (the owner, 255): every timer step sends one advert.
    let mut master = Router::new(config(255, "198.51.100.22"));
    master.handle_into(Instant::ZERO, Input::Start, &mut out);
    let mut sent = 0;
    let step = |r: &mut Router, out: &mut Vec<Action>, payload: &mut Vec<u8>| {
        let now = r.poll_at().unwrap();
        r.handle_into(now, Input::Timer, out);
        let mut n = 0;
        for a in out.iter() {
            payload.clear();
            n += usize::from(a.write_payload(payload));
        }
        out.clear();
        n
    };
    // Warm up: past the second GARP burst (5 s), buffers grown.
    for _ in 0..600 {
        step(&mut master, &mut out, &mut payload);
    }
    let before = blocks();
    for _ in 0..1000 {
        sent += step(&mut master, &mut out, &mut payload);
    }
    assert_eq!(sent, 1000);
    assert_eq!(
        blocks() - before,
        0,
        "the master allocated while advertising"
    );

    // A backup hearing that master's adverts.
    let mut backup = Router::new(config(90, "198.51.100.40"));
    backup.handle_into(Instant::ZERO, Input::Start, &mut out);
    out.clear();
    let src = ip("198.51.100.22");
    let dst = IpAddr::V4(MULTICAST_V4);
    let advert = Advert {
        version: Version::V3,
        vrid: 51,
        priority: 255,
        interval: 1,
        auth: Auth::None,
        addrs: vec![ip("198.51.100.250"), ip("198.51.100.251")],
    };
    let bytes = advert.emit(Some(PseudoHeader { src, dst }));
    let mut now = Instant::from_millis(1);
    for _ in 0..10 {
        backup.handle_packet(now, src, dst, 255, &bytes, &mut out);
        out.clear();
        now = now + Duration::from_millis(10);
    }
    let before = blocks();
    for _ in 0..1000 {
        backup.handle_packet(now, src, dst, 255, &bytes, &mut out);
        assert!(out.is_empty(), "{out:?}");
        now = now + Duration::from_millis(10);
    }
    assert_eq!(blocks() - before, 0, "the backup allocated while listening");
    assert_eq!(backup.state(), StateName::Backup);
    assert_eq!(backup.counters().received, 1010);
}
