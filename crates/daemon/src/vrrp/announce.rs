//! Gratuitous ARP (IPv4) and unsolicited neighbour advertisements (IPv6) on
//! takeover, so switches and hosts learn at once where the VIP now lives.
//! Frames go out through an AF_PACKET channel on the interface.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A gratuitous ARP request for `vip` from `mac`: broadcast, sender and
/// target protocol address both the VIP (what keepalived sends).
pub fn garp_frame(mac: [u8; 6], vip: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&[0xff; 6]); // destination: broadcast
    f.extend_from_slice(&mac); // source
    f.extend_from_slice(&[0x08, 0x06]); // ARP
    f.extend_from_slice(&[0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01]); // Ethernet/IPv4, request
    f.extend_from_slice(&mac);
    f.extend_from_slice(&vip.octets());
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&vip.octets());
    f
}

/// An unsolicited neighbour advertisement for `vip` from `mac` (RFC 4861
/// 4.4, 7.2.6): from the VIP to all nodes (ff02::1), hop limit 255, override
/// flag set, the target link-layer address option carrying `mac`. `router`
/// sets the R flag (a host that forwards, as a load balancer usually does).
pub fn na_frame(mac: [u8; 6], vip: Ipv6Addr, router: bool) -> Vec<u8> {
    const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    let mut icmp = Vec::with_capacity(32);
    let flags: u8 = if router { 0xa0 } else { 0x20 }; // R, O
    icmp.extend_from_slice(&[136, 0, 0, 0, flags, 0, 0, 0]);
    icmp.extend_from_slice(&vip.octets());
    icmp.extend_from_slice(&[2, 1]); // target link-layer address, 8 bytes
    icmp.extend_from_slice(&mac);
    let len = u16::try_from(icmp.len()).unwrap_or(u16::MAX);
    // The ICMPv6 checksum covers the pseudo-header: source, destination,
    // length and next header 58.
    let mut pseudo = 0u32;
    for chunk in vip.octets().chunks(2).chain(ALL_NODES.octets().chunks(2)) {
        pseudo += u32::from(u16::from_be_bytes([chunk[0], chunk[1]]));
    }
    pseudo += u32::from(len) + 58;
    let sum = vrrp::wire::checksum(pseudo, &icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());

    let mut f = Vec::with_capacity(14 + 40 + icmp.len());
    f.extend_from_slice(&[0x33, 0x33, 0, 0, 0, 1]); // ff02::1's multicast MAC
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x86, 0xdd]);
    f.extend_from_slice(&[0x60, 0, 0, 0]); // version 6, no class or flow
    f.extend_from_slice(&len.to_be_bytes());
    f.extend_from_slice(&[58, 255]); // ICMPv6, hop limit 255
    f.extend_from_slice(&vip.octets());
    f.extend_from_slice(&ALL_NODES.octets());
    f.extend_from_slice(&icmp);
    f
}

/// Whether this host forwards IPv6 (then its NAs carry the router flag).
fn forwards_ipv6() -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv6/conf/all/forwarding").is_ok_and(|s| s.trim() == "1")
}

/// Sends gratuitous ARPs and unsolicited NAs on one interface, through an
/// AF_PACKET socket of protocol 0 bound to it: it can send frames but
/// receives none, so it costs the interface's other traffic nothing (a socket
/// bound to ETH_P_ALL would get a clone of every frame sent or received).
#[derive(Debug)]
pub struct Announcer {
    socket: socket2::Socket,
    mac: [u8; 6],
}

impl Announcer {
    /// Opens the socket on `ifname`.
    pub fn open(ifname: &str) -> std::io::Result<Self> {
        let link = nix::ifaddrs::getifaddrs()?
            .filter(|a| a.interface_name == ifname)
            .find_map(|a| a.address.and_then(|sa| sa.as_link_addr().copied()))
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("no link-layer address for {ifname}"),
                )
            })?;
        let mac = link.addr().unwrap_or_default();
        let socket = socket2::Socket::new(socket2::Domain::PACKET, socket2::Type::RAW, None)?;
        // getifaddrs' link address names the interface and protocol 0.
        nix::sys::socket::bind(std::os::fd::AsRawFd::as_raw_fd(&socket), &link)?;
        Ok(Self { socket, mac })
    }

    /// `repeat` gratuitous ARPs (IPv4) or unsolicited NAs (IPv6) for each
    /// address, back to back.
    pub fn announce(&mut self, vips: &[IpAddr], repeat: u32) -> std::io::Result<()> {
        let router = vips.iter().any(IpAddr::is_ipv6) && forwards_ipv6();
        let frames: Vec<Vec<u8>> = vips
            .iter()
            .map(|vip| match vip {
                IpAddr::V4(v4) => garp_frame(self.mac, *v4),
                IpAddr::V6(v6) => na_frame(self.mac, *v6, router),
            })
            .collect();
        for _ in 0..repeat {
            for frame in &frames {
                self.socket.send(frame)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garp_frame_layout() {
        let mac = [0x02, 0, 0, 0, 0, 0x22];
        let f = garp_frame(mac, Ipv4Addr::new(198, 51, 100, 250));
        assert_eq!(f.len(), 42);
        assert_eq!(&f[0..6], &[0xff; 6]);
        assert_eq!(&f[6..12], &mac);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(&f[20..22], &[0x00, 0x01], "request");
        assert_eq!(&f[22..28], &mac, "sender hardware address");
        assert_eq!(&f[28..32], &[198, 51, 100, 250], "sender protocol address");
        assert_eq!(&f[38..42], &[198, 51, 100, 250], "target protocol address");
    }

    #[test]
    fn na_frame_layout_and_checksum() {
        let mac = [0x02, 0, 0, 0, 0, 0x22];
        let vip: Ipv6Addr = "2001:db8:100::250".parse().unwrap();
        let f = na_frame(mac, vip, false);
        assert_eq!(f.len(), 14 + 40 + 32);
        assert_eq!(&f[0..6], &[0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(&f[12..14], &[0x86, 0xdd]);
        assert_eq!(f[20], 58, "next header ICMPv6");
        assert_eq!(f[21], 255, "hop limit");
        assert_eq!(&f[22..38], &vip.octets(), "from the VIP");
        let icmp = &f[54..];
        assert_eq!(icmp[0], 136, "neighbour advertisement");
        assert_eq!(icmp[4], 0x20, "override, not solicited");
        assert_eq!(&icmp[8..24], &vip.octets(), "target");
        assert_eq!(&icmp[24..32], &[2, 1, 0x02, 0, 0, 0, 0, 0x22]);
        // Summed again with the pseudo-header, a correct checksum gives 0.
        let mut pseudo = 0u32;
        for c in f[22..54].chunks(2) {
            pseudo += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        assert_eq!(vrrp::wire::checksum(pseudo + 32 + 58, icmp), 0);
        assert_eq!(na_frame(mac, vip, true)[54 + 4], 0xa0, "router flag");
    }
}
