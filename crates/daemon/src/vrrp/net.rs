//! The VRRP sockets: raw IP protocol 112 on an interface, joined to the
//! multicast group, TTL / hop limit 255; and the machine's interface addresses.
//!
//! IPv4: a raw socket with the IP header included both ways, so source,
//! destination and TTL come with every packet and we write our own header.
//! IPv6: the kernel never shows the header, so the hop limit and the
//! destination arrive as ancillary data (`IPV6_RECVHOPLIMIT`,
//! `IPV6_RECVPKTINFO`) and the source goes out as `IPV6_PKTINFO`.

use std::io::Read as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use nix::sys::socket::{
    recvmsg, sendmsg, setsockopt, sockopt, ControlMessage, ControlMessageOwned, MsgFlags,
    SockaddrIn6,
};
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, Socket, Type};
use vrrp::wire::{MULTICAST_V4, MULTICAST_V6, PROTOCOL, TTL};
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

/// The VRRP socket of one interface and one address family.
#[derive(Debug)]
pub struct VrrpSocket {
    socket: Socket,
    family: Family,
    ifindex: u32,
    pub ifname: String,
}

impl VrrpSocket {
    /// Opens the socket of `family` on `ifname`.
    pub fn open(ifname: &str, family: Family) -> std::io::Result<Self> {
        let ifindex = nix::net::if_::if_nametoindex(ifname).map_err(std::io::Error::from)?;
        let domain = match family {
            Family::V4 => Domain::IPV4,
            Family::V6 => Domain::IPV6,
        };
        let socket = Socket::new(domain, Type::RAW, Some(Protocol::from(i32::from(PROTOCOL))))?;
        socket.bind_device(Some(ifname.as_bytes()))?;
        match family {
            Family::V4 => {
                socket
                    .join_multicast_v4_n(&MULTICAST_V4, &InterfaceIndexOrAddress::Index(ifindex))?;
                socket.set_multicast_loop_v4(false)?;
                // We write the IP header (as keepalived does): the kernel's
                // raw header-included path is markedly cheaper per packet than
                // building one for us, which matters at 200 instances × 100
                // adverts/s.
                socket.set_header_included_v4(true)?;
            }
            Family::V6 => {
                socket.join_multicast_v6(&MULTICAST_V6, ifindex)?;
                socket.set_multicast_if_v6(ifindex)?;
                socket.set_multicast_hops_v6(u32::from(TTL))?;
                socket.set_unicast_hops_v6(u32::from(TTL))?;
                socket.set_multicast_loop_v6(false)?;
                setsockopt(&socket, sockopt::Ipv6RecvHopLimit, &true)?;
                setsockopt(&socket, sockopt::Ipv6RecvPacketInfo, &true)?;
            }
        }
        socket.set_nonblocking(true)?;
        Ok(Self {
            socket,
            family,
            ifindex,
            ifname: ifname.to_owned(),
        })
    }

    pub fn family(&self) -> Family {
        self.family
    }

    /// The next packet, if one is waiting.
    pub fn recv(&self) -> std::io::Result<Option<Received>> {
        let r = match self.family {
            Family::V4 => self.recv_v4(),
            Family::V6 => self.recv_v6(),
        };
        match r {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            r => r,
        }
    }

    fn recv_v4(&self) -> std::io::Result<Option<Received>> {
        let mut buf = [0u8; 2048];
        loop {
            let n = (&self.socket).read(&mut buf)?;
            // Not a well-formed IPv4 packet: skip it and read the next.
            if let Some(r) = parse_ipv4(&buf[..n]) {
                return Ok(Some(r));
            }
        }
    }

    fn recv_v6(&self) -> std::io::Result<Option<Received>> {
        let mut buf = [0u8; 2048];
        // Room for the hop limit and the packet info (24 + 40 bytes on Linux).
        let mut cmsg = [0u8; 128];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<SockaddrIn6>(
            self.socket.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::empty(),
        )?;
        let n = msg.bytes;
        let src = msg
            .address
            .map_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED), |a| IpAddr::V6(a.ip()));
        let mut ttl = 0u8;
        let mut dst = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
        for c in msg.cmsgs()? {
            match c {
                ControlMessageOwned::Ipv6HopLimit(h) => ttl = u8::try_from(h).unwrap_or(0),
                ControlMessageOwned::Ipv6PacketInfo(info) => {
                    dst = IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr));
                }
                _ => {}
            }
        }
        Ok(Some(Received {
            src,
            dst,
            ttl,
            payload: buf[..n.min(buf.len())].to_vec(),
        }))
    }

    /// Sends `payload` from `src` to `dst`.
    pub fn send(&self, src: IpAddr, dst: IpAddr, payload: &[u8]) -> std::io::Result<()> {
        match (src, dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                let packet = ipv4_packet(src, dst, payload);
                self.socket
                    .send_to(&packet, &SockAddr::from(SocketAddrV4::new(dst, 0)))?;
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                // Link-scope destinations need the interface as scope id.
                let scope = if dst.is_multicast() || dst.is_unicast_link_local() {
                    self.ifindex
                } else {
                    0
                };
                let to = SockaddrIn6::from(std::net::SocketAddrV6::new(dst, 0, 0, scope));
                let info = nix::libc::in6_pktinfo {
                    ipi6_addr: nix::libc::in6_addr {
                        s6_addr: src.octets(),
                    },
                    ipi6_ifindex: self.ifindex,
                };
                sendmsg(
                    self.socket.as_raw_fd(),
                    &[std::io::IoSlice::new(payload)],
                    &[ControlMessage::Ipv6PacketInfo(&info)],
                    MsgFlags::empty(),
                    Some(&to),
                )?;
            }
            _ => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("advert from {src} to {dst}: mixed address families"),
                ))
            }
        }
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
