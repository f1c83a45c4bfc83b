//! Any bytes as an `auth_hmac` trailer or as a whole signed advert: parsing
//! and verifying never panic, a router with `auth_hmac` fed them never
//! panics, and nothing but a correctly signed advert is accepted.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::IpAddr;
use std::time::Duration;
use vrrp::auth_hmac::{self, AntiReplay, Key, Mode, ReplayState, Trailer, Verdict};
use vrrp::{Config, Input, Instant, Router, Version};

fn cfg(mode: Mode) -> auth_hmac::Config {
    auth_hmac::Config {
        keys: vec![Key::new(1, zeroize::Zeroizing::new(vec![0x11; 32])).expect("32 bytes")],
        active_key: 1,
        mode,
        anti_replay: AntiReplay::Time { window_secs: 5 },
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = Trailer::parse(data);
    let src: IpAddr = "198.51.100.40".parse().expect("address");
    // Split anywhere: a message and a would-be trailer.
    let cut = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let (message, trailer) = data.split_at(cut);
    for mode in [Mode::Enforce, Mode::Permissive, Mode::ReceiveOnly] {
        let c = cfg(mode);
        let mut st = ReplayState::default();
        let v = auth_hmac::verify(&c, &mut st, 0, Version::V3, 51, src, message, Some(trailer), 1_764_000_000_000_000);
        if let Verdict::Accepted { .. } = v {
            // Only possible with the real tag: re-signing must give the same bytes.
            let t = Trailer::parse(trailer).expect("accepted trailers parse");
            let again = auth_hmac::sign(&c, Version::V3, 51, src, message, t.seq);
            assert_eq!(&again[..], trailer);
        }
    }
    // A router with auth_hmac fed the raw bytes, in every mode.
    for mode in [Mode::Enforce, Mode::Permissive, Mode::ReceiveOnly] {
        let config = Config {
            vrid: 51,
            version: Version::V3,
            priority: 90,
            advert_interval: Duration::from_secs(1),
            primary: "198.51.100.22".parse().expect("address"),
            vips: vec!["198.51.100.250".parse().expect("address")],
            auth_hmac: Some(cfg(mode)),
            ..Config::default()
        };
        let mut r = Router::new(config);
        r.set_wall_clock(1_764_000_000_000_000);
        r.handle(Instant::ZERO, Input::Start);
        let dst: IpAddr = "224.0.0.18".parse().expect("address");
        r.handle(Instant::from_millis(10), Input::Packet { src, dst, ttl: 255, bytes: data.to_vec() });
    }
});
