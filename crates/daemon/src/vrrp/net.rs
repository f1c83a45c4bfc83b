//! The VRRP sockets: raw IP protocol 112 on an interface, joined to the
//! multicast group, TTL / hop limit 255; and the machine's interface addresses.
//!
//! IPv4: a raw socket with the IP header included both ways, so source,
//! destination and TTL come with every packet and we write our own header.
//! IPv6: the kernel never shows the header, so the hop limit and the
//! destination arrive as ancillary data (`IPV6_RECVHOPLIMIT`,
//! `IPV6_RECVPKTINFO`) and the source goes out as `IPV6_PKTINFO`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use nix::sys::socket::{
    recvmmsg, recvmsg, sendmmsg, sendmsg, setsockopt, sockopt, ControlMessage, ControlMessageOwned,
    MsgFlags, MultiHeaders, SockaddrIn, SockaddrIn6,
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

/// A received advert: IP source, destination, TTL and where its VRRP bytes
/// are in the receive buffer ([`VrrpSocket::payload`]), valid until the next
/// [`VrrpSocket::recv`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ttl: u8,
    pub payload: std::ops::Range<usize>,
}

/// How many packets one `recvmmsg` reads at most.
const RECV_BATCH: usize = 32;
/// Room for one received packet: an IPv4 VRRP packet is at most
/// 20 + 8 + 255 × 4 + 8 bytes; anything longer is truncated and then
/// rejected by the length checks.
const RECV_SLOT: usize = 1500;

/// Room for one IPv6 VRRP message (the kernel strips the IPv6 header);
/// anything longer is truncated and then rejected by the length checks.
const RECV_SLOT_V6: usize = 2048;

/// The VRRP socket of one interface and one address family.
#[derive(Debug)]
pub struct VrrpSocket {
    socket: Socket,
    family: Family,
    ifindex: u32,
    pub ifname: String,
    /// IPv4 packets waiting for [`VrrpSocket::flush`]: their bytes, one
    /// after the other, and where each starts, ends and goes.
    out_bytes: Vec<u8>,
    /// Where [`VrrpSocket::send_with`] builds a payload.
    scratch: Vec<u8>,
    out: Vec<(usize, usize, Ipv4Addr)>,
    /// Receive slots for `recvmmsg`.
    slots: Vec<u8>,
    /// Packets read in the last batch and not yet handed out.
    pending: std::collections::VecDeque<Received>,
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
            out_bytes: Vec::new(),
            scratch: Vec::new(),
            out: Vec::new(),
            slots: vec![
                0;
                if family == Family::V4 {
                    RECV_BATCH * RECV_SLOT
                } else {
                    RECV_SLOT_V6
                }
            ],
            pending: std::collections::VecDeque::new(),
        })
    }

    pub fn family(&self) -> Family {
        self.family
    }

    /// The VRRP bytes of `r`, the last packet [`VrrpSocket::recv`] returned.
    pub fn payload(&self, r: &Received) -> &[u8] {
        self.slots.get(r.payload.clone()).unwrap_or_default()
    }

    /// The next packet, if one is waiting.
    pub fn recv(&mut self) -> std::io::Result<Option<Received>> {
        let r = match self.family {
            Family::V4 => self.recv_v4(),
            Family::V6 => self.recv_v6(),
        };
        match r {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            r => r,
        }
    }

    /// IPv4 packets come in batches: one `recvmmsg` reads every packet
    /// waiting (up to [`RECV_BATCH`]), so a backup that wakes for the first
    /// advert of a burst picks up the rest with the same system call.
    fn recv_v4(&mut self) -> std::io::Result<Option<Received>> {
        if let Some(r) = self.pending.pop_front() {
            return Ok(Some(r));
        }
        loop {
            let lens = self.recv_batch()?;
            let full = lens.len() == RECV_BATCH;
            for (k, n) in lens.into_iter().enumerate() {
                let at = k * RECV_SLOT;
                let slot = &self.slots[at..at + RECV_SLOT];
                // Not a well-formed IPv4 packet: skip it.
                self.pending
                    .extend(parse_ipv4(&slot[..n.min(RECV_SLOT)]).map(|r| Received {
                        payload: r.payload.start + at..r.payload.end + at,
                        ..r
                    }));
            }
            if let Some(r) = self.pending.pop_front() {
                return Ok(Some(r));
            }
            if !full {
                return Ok(None);
            }
        }
    }

    /// Reads up to [`RECV_BATCH`] packets into the slots; their lengths.
    fn recv_batch(&mut self) -> std::io::Result<Vec<usize>> {
        let fd = self.socket.as_raw_fd();
        let mut iovs: Vec<[std::io::IoSliceMut<'_>; 1]> = self
            .slots
            .chunks_mut(RECV_SLOT)
            .map(|c| [std::io::IoSliceMut::new(c)])
            .collect();
        let mut headers = MultiHeaders::<SockaddrIn>::preallocate(iovs.len(), None);
        let got = recvmmsg(
            fd,
            &mut headers,
            iovs.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        )?;
        Ok(got.map(|m| m.bytes).collect())
    }

    fn recv_v6(&mut self) -> std::io::Result<Option<Received>> {
        let buf = &mut self.slots[..];
        // Room for the hop limit and the packet info (24 + 40 bytes on Linux).
        let mut cmsg = [0u8; 128];
        let mut iov = [std::io::IoSliceMut::new(buf)];
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
            payload: 0..n.min(RECV_SLOT_V6),
        }))
    }

    /// Sends what `build` writes into a reused buffer, as [`VrrpSocket::send`].
    pub fn send_with(
        &mut self,
        src: IpAddr,
        dst: IpAddr,
        build: impl FnOnce(&mut Vec<u8>),
    ) -> std::io::Result<()> {
        let mut payload = std::mem::take(&mut self.scratch);
        payload.clear();
        build(&mut payload);
        let sent = self.send(src, dst, &payload);
        self.scratch = payload;
        sent
    }

    /// Sends `payload` from `src` to `dst`: IPv4 packets at the next
    /// [`VrrpSocket::flush`], all in one `sendmmsg`; IPv6 at once.
    pub fn send(&mut self, src: IpAddr, dst: IpAddr, payload: &[u8]) -> std::io::Result<()> {
        match (src, dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                let start = self.out_bytes.len();
                write_ipv4_packet(&mut self.out_bytes, src, dst, payload);
                self.out.push((start, self.out_bytes.len(), dst));
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

    /// Sends the queued IPv4 packets; how many went out.
    pub fn flush(&mut self) -> std::io::Result<usize> {
        if self.out.is_empty() {
            return Ok(0);
        }
        let result = self.send_queued();
        self.out.clear();
        self.out_bytes.clear();
        result
    }

    fn send_queued(&self) -> std::io::Result<usize> {
        let fd = self.socket.as_raw_fd();
        let slices: Vec<[std::io::IoSlice<'_>; 1]> = self
            .out
            .iter()
            .map(|&(a, b, _)| [std::io::IoSlice::new(&self.out_bytes[a..b])])
            .collect();
        let addrs: Vec<Option<SockaddrIn>> = self
            .out
            .iter()
            .map(|&(_, _, dst)| Some(SockaddrIn::from(SocketAddrV4::new(dst, 0))))
            .collect();
        let mut headers = MultiHeaders::<SockaddrIn>::preallocate(slices.len(), None);
        let no_cmsgs: [ControlMessage<'_>; 0] = [];
        // An error stops `sendmmsg` at the packet concerned (or before the
        // first): the rest go one by one, each error kept apart, so one
        // unreachable peer never silences the other instances' adverts.
        let sent = sendmmsg(
            fd,
            &mut headers,
            &slices,
            &addrs,
            no_cmsgs,
            MsgFlags::empty(),
        )
        .map_or(0, Iterator::count);
        let mut first_error = None;
        for &(a, b, dst) in &self.out[sent..] {
            if let Err(e) = self.socket.send_to(
                &self.out_bytes[a..b],
                &SockAddr::from(SocketAddrV4::new(dst, 0)),
            ) {
                first_error.get_or_insert(std::io::Error::new(e.kind(), format!("to {dst}: {e}")));
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(self.out.len()),
        }
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

/// An IPv4 packet around a VRRP message: TOS 0xc0 (network control, as
/// keepalived), TTL 255, protocol 112. The kernel fills in the id and the
/// header checksum.
#[cfg(test)]
pub fn ipv4_packet(src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(20 + payload.len());
    write_ipv4_packet(&mut p, src, dst, payload);
    p
}

/// Appends [`ipv4_packet`]'s bytes to `p`.
pub fn write_ipv4_packet(p: &mut Vec<u8>, src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) {
    let total = u16::try_from(20 + payload.len()).unwrap_or(u16::MAX);
    p.extend_from_slice(&[0x45, 0xc0]);
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0, TTL, PROTOCOL, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(payload);
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
        payload: ihl..total,
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
        assert_eq!(p[r.payload].len(), 8);
    }

    #[test]
    fn our_ip_header_reads_back() {
        let p = ipv4_packet(Ipv4Addr::new(198, 51, 100, 22), MULTICAST_V4, &[1, 2, 3, 4]);
        let r = parse_ipv4(&p).unwrap();
        assert_eq!((r.ttl, &p[r.payload.clone()]), (255, &[1u8, 2, 3, 4][..]));
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
