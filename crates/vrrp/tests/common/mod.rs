//! Minimal pcap reading and writing for the wire tests: classic pcap files,
//! Ethernet (tcpdump on a veth) or raw IP (what we write for tshark).

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A VRRP packet found in a capture, with the IP fields the checks need.
#[derive(Debug, Clone)]
pub struct Captured {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ttl: u8,
    pub payload: Vec<u8>,
}

const LINKTYPE_ETHERNET: u32 = 1;
const LINKTYPE_RAW: u32 = 101;

fn u32_at(b: &[u8], at: usize, le: bool) -> u32 {
    let a = [b[at], b[at + 1], b[at + 2], b[at + 3]];
    if le {
        u32::from_le_bytes(a)
    } else {
        u32::from_be_bytes(a)
    }
}

/// Every VRRP (IP protocol 112) packet in a pcap file.
pub fn read_vrrp(file: &[u8]) -> Vec<Captured> {
    assert!(file.len() >= 24, "not a pcap file");
    let le = matches!(u32_at(file, 0, true), 0xa1b2_c3d4 | 0xa1b2_3c4d);
    let linktype = u32_at(file, 20, le);
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= file.len() {
        let caplen = u32_at(file, at + 8, le) as usize;
        let data = &file[at + 16..(at + 16 + caplen).min(file.len())];
        at += 16 + caplen;
        let ip = match linktype {
            LINKTYPE_ETHERNET => {
                if data.len() < 14 {
                    continue;
                }
                let ethertype = u16::from_be_bytes([data[12], data[13]]);
                if ethertype != 0x0800 && ethertype != 0x86dd {
                    continue;
                }
                &data[14..]
            }
            LINKTYPE_RAW => data,
            other => panic!("unsupported link type {other}"),
        };
        if let Some(c) = parse_ip(ip) {
            out.push(c);
        }
    }
    out
}

fn parse_ip(ip: &[u8]) -> Option<Captured> {
    match ip.first()? >> 4 {
        4 => {
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            if ip[9] != 112 {
                return None;
            }
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            let src = IpAddr::V4(Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]));
            let dst = IpAddr::V4(Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]));
            Some(Captured {
                src,
                dst,
                ttl: ip[8],
                payload: ip[ihl..total.min(ip.len())].to_vec(),
            })
        }
        6 => {
            if ip[6] != 112 {
                return None;
            }
            let len = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s.copy_from_slice(&ip[8..24]);
            d.copy_from_slice(&ip[24..40]);
            Some(Captured {
                src: IpAddr::V6(Ipv6Addr::from(s)),
                dst: IpAddr::V6(Ipv6Addr::from(d)),
                ttl: ip[7],
                payload: ip[40..(40 + len).min(ip.len())].to_vec(),
            })
        }
        _ => None,
    }
}

fn ipv4_checksum(h: &[u8]) -> u16 {
    vrrp::wire::checksum(0, h)
}

/// An IP packet (TTL 255) around a VRRP payload.
pub fn ip_packet(src: IpAddr, dst: IpAddr, payload: &[u8]) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = u16::try_from(20 + payload.len()).unwrap();
            let mut h = vec![0x45, 0xc0];
            h.extend_from_slice(&total.to_be_bytes());
            h.extend_from_slice(&[0, 0, 0, 0, 255, 112, 0, 0]);
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&d.octets());
            let sum = ipv4_checksum(&h);
            h[10..12].copy_from_slice(&sum.to_be_bytes());
            h.extend_from_slice(payload);
            h
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut h = vec![0x60, 0, 0, 0];
            h.extend_from_slice(&u16::try_from(payload.len()).unwrap().to_be_bytes());
            h.extend_from_slice(&[112, 255]);
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&d.octets());
            h.extend_from_slice(payload);
            h
        }
        _ => panic!("mixed families"),
    }
}

/// A raw-IP pcap file holding `packets`.
pub fn write_raw_pcap(packets: &[Vec<u8>]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    f.extend_from_slice(&2u16.to_le_bytes());
    f.extend_from_slice(&4u16.to_le_bytes());
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&65535u32.to_le_bytes());
    f.extend_from_slice(&LINKTYPE_RAW.to_le_bytes());
    for (i, p) in packets.iter().enumerate() {
        f.extend_from_slice(&u32::try_from(i).unwrap().to_le_bytes());
        f.extend_from_slice(&0u32.to_le_bytes());
        let len = u32::try_from(p.len()).unwrap().to_le_bytes();
        f.extend_from_slice(&len);
        f.extend_from_slice(&len);
        f.extend_from_slice(p);
    }
    f
}
