//! Any bytes as a received VRRP packet: parsing never panics, what parses
//! re-emits to a packet that parses to the same advert, and feeding the bytes
//! to routers in every state never panics.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::IpAddr;
use std::time::Duration;
use vrrp::wire::{Advert, Family, PseudoHeader};
use vrrp::{Config, Input, Instant, Router, Version};

fuzz_target!(|data: &[u8]| {
    let v4 = PseudoHeader {
        src: "198.51.100.40".parse().unwrap(),
        dst: "224.0.0.18".parse().unwrap(),
    };
    let v6 = PseudoHeader {
        src: "fe80::40".parse().unwrap(),
        dst: "ff02::12".parse().unwrap(),
    };
    for (family, ph) in [(Family::V4, v4), (Family::V6, v6)] {
        if let Ok(a) = Advert::parse(data, family, Some(ph), false) {
            let again = a.emit(Some(ph));
            let b = Advert::parse(&again, family, Some(ph), false).expect("re-emitted advert parses");
            assert_eq!(a, b);
        }
    }
    for version in [Version::V2, Version::V3] {
        for priority in [90u8, 255] {
            let cfg = Config {
                vrid: data.first().copied().unwrap_or(1).max(1),
                version,
                priority,
                advert_interval: Duration::from_secs(1),
                primary: "198.51.100.22".parse().unwrap(),
                vips: vec!["198.51.100.250".parse().unwrap()],
                ..Config::default()
            };
            let mut r = Router::new(cfg);
            r.handle(Instant::ZERO, Input::Start);
            let src: IpAddr = v4.src;
            r.handle(Instant::from_millis(10), Input::Packet { src, dst: v4.dst, ttl: 255, bytes: data.to_vec() });
            r.handle(Instant::from_millis(5000), Input::Packet { src, dst: v4.dst, ttl: 255, bytes: data.to_vec() });
        }
    }
});
