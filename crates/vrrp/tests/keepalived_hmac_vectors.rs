//! Tags keepalived 2.4.3 put on the wire (tests/data/keepalived-2.4.3-auth-hmac.txt,
//! captured from its adverts) are exactly the tags we compute for the same
//! key, source, message and sequence number; and we accept those adverts.

#![allow(clippy::unwrap_used)]

use std::net::IpAddr;

use vrrp::auth_hmac::{self, AntiReplay, Config, Key, Mode, ReplayState, Trailer, Verdict};
use vrrp::wire::PseudoHeader;
use vrrp::{Advert, Family, Version};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn key_config() -> Config {
    Config {
        keys: vec![Key::new(
            1,
            zeroize::Zeroizing::new(hex(
                "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
            )),
        )
        .unwrap()],
        active_key: 1,
        mode: Mode::Enforce,
        anti_replay: AntiReplay::Monotonic,
    }
}

#[test]
fn our_tags_equal_keepalived_2_4_3_s_on_the_wire() {
    let data = include_str!("data/keepalived-2.4.3-auth-hmac.txt");
    let mut checked = 0;
    for line in data
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (src, dst): (IpAddr, IpAddr) = (f[1].parse().unwrap(), f[2].parse().unwrap());
        let family = if f[0] == "6" { Family::V6 } else { Family::V4 };
        let payload = hex(f[3]);
        let msg_len = payload.len() - auth_hmac::TRAILER_LEN;
        let (message, trailer) = payload.split_at(msg_len);
        let t = Trailer::parse(trailer).unwrap();
        let ours = auth_hmac::sign(&key_config(), Version::V3, message[1], src, message, t.seq);
        assert_eq!(ours.as_slice(), trailer, "{line}");
        // The whole advert parses (IPv6: the checksum covers the trailer).
        let advert = Advert::parse_with_trailer(
            &payload,
            family,
            Some(PseudoHeader { src, dst }),
            false,
            auth_hmac::TRAILER_LEN,
        )
        .unwrap();
        assert_eq!(advert.priority, 200);
        // And verifies.
        let v = auth_hmac::verify(
            &key_config(),
            &mut ReplayState::default(),
            0,
            Version::V3,
            advert.vrid,
            src,
            message,
            Some(trailer),
            0,
        );
        assert_eq!(v, Verdict::Accepted { skew_secs: None }, "{line}");
        checked += 1;
    }
    assert_eq!(checked, 2, "an IPv4 and an IPv6 capture");
}
