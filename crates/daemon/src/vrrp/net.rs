//! The VRRP sockets: raw IP protocol 112 on an interface, joined to the
//! multicast group, TTL 255; and the machine's interface addresses.
//!
//! IPv4 only for now: a raw IPv4 socket hands us the IP header, so source,
//! destination and TTL come with every packet. (IPv6 needs the hop limit and
//! destination from ancillary data; it arrives with the rest of issue #6.)

use std::io::Read as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, BorrowedFd};

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, Socket, Type};
use vrrp::wire::{MULTICAST_V4, PROTOCOL, TTL};
use vrrp::Family;

use super::spec::Interfaces;

/// The machine's interfaces, read with getifaddrs(3).
#[derive(Debug, Default)]
pub struct SystemInterfaces;

impl Interfaces for SystemInterfaces {
    fn primary(&self, ifname: &str, family: Family) -> Option<IpAddr> {
        let addrs = nix::ifaddrs::getifaddrs().ok()?;
        let mut candidates: Vec<IpAddr> = addrs
            .filter(|a| a.interface_name == ifname)
            .filter_map(|a| {
                let sa = a.address?;
                if let Some(v4) = sa.as_sockaddr_in() {
                    Some(IpAddr::V4(v4.ip()))
                } else {
                    sa.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
                }
            })
            .filter(|a| Family::of(a) == family)
            .collect();
        // IPv6 adverts go from the link-local address.
        candidates.sort_by_key(|a| match a {
            IpAddr::V6(v6) => !v6.is_unicast_link_local(),
            IpAddr::V4(_) => false,
        });
        candidates.first().copied()
    }
}

/// A received advert: IP source, destination, TTL and the VRRP bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ttl: u8,
    pub payload: Vec<u8>,
}

/// The VRRP socket of one interface (IPv4).
#[derive(Debug)]
pub struct VrrpSocket {
    socket: Socket,
    /// Our adverts' source address (we write the IP header ourselves).
    primary: Ipv4Addr,
    pub ifname: String,
}

impl VrrpSocket {
    /// Opens a raw protocol-112 socket bound to `ifname`, joined to
    /// 224.0.0.18, sending with TTL 255 from `primary`.
    pub fn open_v4(ifname: &str, primary: Ipv4Addr) -> std::io::Result<Self> {
        let ifindex = nix::net::if_::if_nametoindex(ifname).map_err(std::io::Error::from)?;
        let socket = Socket::new(
            Domain::IPV4,
            Type::RAW,
            Some(Protocol::from(i32::from(PROTOCOL))),
        )?;
        socket.bind_device(Some(ifname.as_bytes()))?;
        socket.join_multicast_v4_n(&MULTICAST_V4, &InterfaceIndexOrAddress::Index(ifindex))?;
        socket.set_multicast_if_v4(&primary)?;
        socket.set_multicast_ttl_v4(u32::from(TTL))?;
        socket.set_ttl_v4(u32::from(TTL))?;
        socket.set_multicast_loop_v4(false)?;
        // We write the IP header (as keepalived does): the kernel's raw
        // header-included path is markedly cheaper per packet than building
        // one for us, which matters at 200 instances × 100 adverts/s.
        socket.set_header_included_v4(true)?;
        socket.set_nonblocking(true)?;
        Ok(Self {
            socket,
            primary,
            ifname: ifname.to_owned(),
        })
    }

    /// The next packet, if one is waiting.
    pub fn recv(&self) -> std::io::Result<Option<Received>> {
        let mut buf = [0u8; 2048];
        let n = match (&self.socket).read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(parse_ipv4(&buf[..n]))
    }

    /// Sends `payload` to `dst`; the kernel writes the IP header.
    pub fn send(&self, dst: IpAddr, payload: &[u8]) -> std::io::Result<()> {
        let IpAddr::V4(dst) = dst else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "IPv6 adverts are not sent yet",
            ));
        };
        let packet = ipv4_packet(self.primary, dst, payload);
        self.socket
            .send_to(&packet, &SockAddr::from(SocketAddrV4::new(dst, 0)))?;
        Ok(())
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

/// An IPv4 packet around a VRRP message: TOS 0xc0 (network control, as
/// keepalived), TTL 255, protocol 112. The kernel fills in the id and the
/// header checksum.
pub fn ipv4_packet(src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let total = u16::try_from(20 + payload.len()).unwrap_or(u16::MAX);
    let mut p = Vec::with_capacity(20 + payload.len());
    p.extend_from_slice(&[0x45, 0xc0]);
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0, TTL, PROTOCOL, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(payload);
    p
}

/// Splits an IPv4 packet into the fields VRRP checks; `None` if it is not a
/// well-formed IPv4 packet carrying protocol 112.
pub fn parse_ipv4(p: &[u8]) -> Option<Received> {
    if p.len() < 20 || p[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(p[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
    if ihl < 20 || total < ihl || total > p.len() || p[9] != PROTOCOL {
        return None;
    }
    Some(Received {
        src: IpAddr::V4(Ipv4Addr::new(p[12], p[13], p[14], p[15])),
        dst: IpAddr::V4(Ipv4Addr::new(p[16], p[17], p[18], p[19])),
        ttl: p[8],
        payload: p[ihl..total].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_fields() {
        let mut p = vec![
            0x45, 0xc0, 0, 28, 0, 0, 0, 0, 255, 112, 0, 0, 198, 51, 100, 40, 224, 0, 0, 18,
        ];
        p.extend_from_slice(&[0x21, 51, 100, 1, 0, 1, 0, 0]);
        let r = parse_ipv4(&p).unwrap();
        assert_eq!(r.src, "198.51.100.40".parse::<IpAddr>().unwrap());
        assert_eq!(r.dst, IpAddr::V4(MULTICAST_V4));
        assert_eq!(r.ttl, 255);
        assert_eq!(r.payload.len(), 8);
    }

    #[test]
    fn our_ip_header_reads_back() {
        let p = ipv4_packet(Ipv4Addr::new(198, 51, 100, 22), MULTICAST_V4, &[1, 2, 3, 4]);
        let r = parse_ipv4(&p).unwrap();
        assert_eq!((r.ttl, r.payload.as_slice()), (255, &[1u8, 2, 3, 4][..]));
        assert_eq!(r.src, "198.51.100.22".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn malformed_headers_are_not_packets() {
        assert!(parse_ipv4(&[]).is_none());
        assert!(parse_ipv4(&[0x45; 19]).is_none());
        let mut p = vec![
            0x45, 0, 0, 200, 0, 0, 0, 0, 255, 112, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8,
        ];
        assert!(parse_ipv4(&p).is_none(), "total length beyond the buffer");
        p[3] = 20;
        p[9] = 6;
        assert!(parse_ipv4(&p).is_none(), "not VRRP");
        p[0] = 0x4f;
        assert!(parse_ipv4(&p).is_none(), "header longer than the packet");
    }
}
