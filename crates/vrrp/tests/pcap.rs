//! Real-world bytes. Adverts captured from keepalived 2.2.7 (`tests/data/`,
//! made by `tests/capture.rs`) parse and re-emit byte-identical; and tshark
//! dissects every advert we emit with its checksum marked good.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::IpAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use vrrp::wire::{Advert, Family, PseudoHeader, Version};
use vrrp::*;

fn captures() -> Vec<(String, Vec<common::Captured>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, common::read_vrrp(&std::fs::read(&p).unwrap()))
        })
        .collect()
}

#[test]
fn keepalived_adverts_parse_and_reemit_byte_identical() {
    let all = captures();
    assert!(all.len() >= 5, "{} captures", all.len());
    let mut seen_versions = std::collections::BTreeSet::new();
    let mut seen_zero = 0;
    let mut total = 0;
    for (name, packets) in &all {
        assert!(!packets.is_empty(), "{name} holds no VRRP packet");
        for (i, c) in packets.iter().enumerate() {
            assert_eq!(c.ttl, 255, "{name}#{i}");
            let family = Family::of(&c.src);
            let ph = PseudoHeader {
                src: c.src,
                dst: c.dst,
            };
            let advert = Advert::parse(&c.payload, family, Some(ph), false)
                .unwrap_or_else(|e| panic!("{name}#{i}: {e}"));
            assert_eq!(
                advert.emit(Some(ph)),
                c.payload,
                "{name}#{i} re-emitted differently"
            );
            seen_versions.insert((
                advert.version.number(),
                family == Family::V6,
                matches!(advert.auth, Auth::Pass(_)),
            ));
            if advert.priority == 0 {
                seen_zero += 1;
            }
            total += 1;
        }
    }
    // v2/IPv4 with and without PASS, v3 over IPv4 and IPv6.
    assert!(
        seen_versions.contains(&(2, false, true)),
        "{seen_versions:?}"
    );
    assert!(
        seen_versions.contains(&(2, false, false)),
        "{seen_versions:?}"
    );
    assert!(
        seen_versions.contains(&(3, false, false)),
        "{seen_versions:?}"
    );
    assert!(
        seen_versions.contains(&(3, true, false)),
        "{seen_versions:?}"
    );
    assert!(
        seen_zero >= 3,
        "the graceful stops' priority-0 adverts: {seen_zero}"
    );
    assert!(total >= 40, "{total} packets");
}

#[test]
fn our_router_accepts_keepalived_adverts() {
    // A backup configured like the captured keepalived hears every one of its adverts.
    for (name, packets) in captures() {
        let first = &packets[0];
        let family = Family::of(&first.src);
        let ph = PseudoHeader {
            src: first.src,
            dst: first.dst,
        };
        let a = Advert::parse(&first.payload, family, Some(ph), false).unwrap();
        let unicast = !first.dst.is_multicast();
        let primary: IpAddr = match family {
            Family::V4 => "198.51.100.40".parse().unwrap(),
            Family::V6 => "fe80::40".parse().unwrap(),
        };
        let cfg = Config {
            vrid: a.vrid,
            version: a.version,
            priority: 50,
            advert_interval: match a.version {
                Version::V2 => Duration::from_secs(u64::from(a.interval)),
                Version::V3 => Duration::from_millis(u64::from(a.interval) * 10),
            },
            primary,
            vips: a.addrs.clone(),
            peers: if unicast { vec![first.src] } else { vec![] },
            auth: a.auth.clone(),
            ..Config::default()
        };
        let mut r = Router::new(cfg);
        r.handle(Instant::ZERO, Input::Start);
        for (i, c) in packets.iter().enumerate() {
            let t = Instant::from_millis(10 * (i as u64 + 1));
            r.handle(
                t,
                Input::Packet {
                    src: c.src,
                    dst: c.dst,
                    ttl: c.ttl,
                    bytes: c.payload.clone(),
                },
            );
        }
        assert_eq!(
            r.counters().received,
            packets.len() as u64,
            "{name}: {:?}",
            r.counters()
        );
        assert!(
            r.counters().dropped.is_empty(),
            "{name}: {:?}",
            r.counters()
        );
    }
}

fn tshark_available() -> bool {
    let ok = Command::new("tshark")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "tshark is not installed; CI needs it"
        );
        netlab::skipped("pcap (tshark dissection)", "tshark is not installed");
    }
    ok
}

#[test]
fn tshark_marks_every_advert_we_emit_checksum_good() {
    if !tshark_available() {
        return;
    }
    let v6: IpAddr = "fe80::22".parse().unwrap();
    let cases = vec![
        Config {
            version: Version::V2,
            auth: Auth::pass("1111"),
            ..base("198.51.100.22", &["198.51.100.250"])
        },
        Config {
            version: Version::V2,
            ..base("198.51.100.22", &["198.51.100.250", "198.51.100.251"])
        },
        Config {
            version: Version::V3,
            advert_interval: Duration::from_millis(10),
            ..base("198.51.100.22", &["198.51.100.250"])
        },
        Config {
            version: Version::V3,
            primary: v6,
            ..base("198.51.100.22", &["2001:db8:100::250", "2001:db8:100::251"])
        },
        Config {
            version: Version::V3,
            peers: vec!["198.51.100.40".parse().unwrap()],
            ..base("198.51.100.22", &["198.51.100.250"])
        },
    ];
    let mut packets = Vec::new();
    for cfg in cases {
        let mut r = Router::new(cfg);
        let mut actions = r.handle(Instant::ZERO, Input::Start);
        actions.extend(r.handle(Instant::from_millis(5), Input::Stop));
        for a in &actions {
            if let (Some(payload), Action::Send { src, to, .. }) = (a.payload(), a) {
                let dst = to.addr(Family::of(src));
                packets.push(common::ip_packet(*src, dst, &payload));
            }
        }
    }
    assert_eq!(
        packets.len(),
        10,
        "an advert and a priority-0 advert per case"
    );
    let file = std::env::temp_dir().join(format!("krs-tshark-{}.pcap", std::process::id()));
    std::fs::write(&file, common::write_raw_pcap(&packets)).unwrap();
    let out = Command::new("tshark")
        .arg("-r")
        .arg(&file)
        .args([
            "-T",
            "fields",
            "-E",
            "separator=,",
            "-e",
            "vrrp.version",
            "-e",
            "vrrp.prio",
            "-e",
            "vrrp.checksum.status",
        ])
        .output()
        .unwrap();
    std::fs::remove_file(&file).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(
        lines.len(),
        10,
        "tshark saw: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for l in &lines {
        // version,priority,status — status 1 is "Good" in Wireshark.
        assert!(l.ends_with(",1"), "checksum not good: {l}\nall:\n{text}");
    }
    assert!(
        lines.iter().filter(|l| l.contains(",0,")).count() == 5,
        "priority-0 adverts: {text}"
    );
}

fn base(primary: &str, vips: &[&str]) -> Config {
    Config {
        vrid: 51,
        priority: 255,
        primary: primary.parse().unwrap(),
        vips: vips.iter().map(|v| v.parse().unwrap()).collect(),
        ..Config::default()
    }
}
