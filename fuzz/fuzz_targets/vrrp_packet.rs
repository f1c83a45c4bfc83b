//! Any bytes as a received VRRP packet: parsing never panics, what parses
//! re-emits to a packet that parses to the same advert, and feeding the bytes
//! to routers in every state never panics. Each input is tried as it is and
//! with its checksum fixed, so mutations get past the checksum to the state
//! machine.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::IpAddr;
use std::time::Duration;
use vrrp::wire::{Advert, Family, PseudoHeader};
use vrrp::{Config, Input, Instant, Router, Version};

/// `data` with a correct checksum for `ph` (VRRPv3 style, or v2 style).
fn fixed(data: &[u8], ph: PseudoHeader) -> Vec<u8> {
    let mut b = data.to_vec();
    if b.len() < 8 {
        return b;
    }
    b[6] = 0;
    b[7] = 0;
    let sum = if b[0] >> 4 == 3 {
        let len = u32::try_from(b.len()).unwrap_or(0);
        let mut pseudo = Vec::new();
        match (ph.src, ph.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                pseudo.extend_from_slice(&s.octets());
                pseudo.extend_from_slice(&d.octets());
                pseudo.extend_from_slice(&[0, 112]);
                pseudo.extend_from_slice(&u16::try_from(len).unwrap_or(0).to_be_bytes());
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                pseudo.extend_from_slice(&s.octets());
                pseudo.extend_from_slice(&d.octets());
                pseudo.extend_from_slice(&len.to_be_bytes());
                pseudo.extend_from_slice(&[0, 0, 0, 112]);
            }
            _ => {}
        }
        pseudo.extend_from_slice(&b);
        vrrp::wire::checksum(0, &pseudo)
    } else {
        vrrp::wire::checksum(0, &b)
    };
    b[6..8].copy_from_slice(&sum.to_be_bytes());
    b
}

fuzz_target!(|raw: &[u8]| {
  for data in [raw.to_vec(), fixed(raw, PseudoHeader { src: "198.51.100.40".parse().unwrap(), dst: "224.0.0.18".parse().unwrap() })] {
    let data = &data[..];
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
  }
});
