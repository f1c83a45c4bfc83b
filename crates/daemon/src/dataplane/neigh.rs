//! What DR on nftables needs from the machine: the neighbour table's
//! MACs, the interface that reaches a real server, a nudge to resolve one.

use super::{IpAddr, SocketAddr};

/// The neighbour table's complete IPv4 entries (`/proc/net/arp`).
pub(super) fn arp_table() -> Vec<(IpAddr, [u8; 6])> {
    let text = std::fs::read_to_string("/proc/net/arp").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let ip: IpAddr = f.first()?.parse().ok()?;
            // Flags 0x2: complete.
            let flags = u32::from_str_radix(f.get(2)?.trim_start_matches("0x"), 16).ok()?;
            if flags & 0x2 == 0 {
                return None;
            }
            Some((ip, parse_mac(f.get(3)?)?))
        })
        .collect()
}

pub(super) fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = text.split(':');
    for b in &mut out {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    (parts.next().is_none() && out != [0; 6]).then_some(out)
}

/// The interface with an address in the same subnet as `addr`.
pub(super) fn device_for(addr: IpAddr) -> Option<String> {
    for ifa in nix::ifaddrs::getifaddrs().ok()? {
        let (Some(a), Some(m)) = (ifa.address, ifa.netmask) else {
            continue;
        };
        let (Some(a), Some(m), IpAddr::V4(target)) = (a.as_sockaddr_in(), m.as_sockaddr_in(), addr)
        else {
            continue;
        };
        let (a, m) = (u32::from(a.ip()), u32::from(m.ip()));
        if m != 0 && a & m == u32::from(target) & m {
            return Some(ifa.interface_name);
        }
    }
    None
}

/// Asks the kernel to resolve `addr`'s MAC (any datagram to it does).
pub(super) fn solicit(addr: IpAddr) {
    if let Ok(s) = std::net::UdpSocket::bind((
        if addr.is_ipv4() {
            IpAddr::from([0, 0, 0, 0])
        } else {
            IpAddr::from([0u16; 8])
        },
        0,
    )) {
        let _ = s.send_to(b"", SocketAddr::new(addr, 9));
    }
}
