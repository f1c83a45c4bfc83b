//! rtnetlink: the one place the daemon changes the kernel's addresses and
//! learns about links, without running `ip`.
//!
//! Requests go out on a blocking socket and wait for the kernel's
//! acknowledgement (an address add is tens of microseconds; `ip addr add` was
//! about 3 ms, most of it starting a process). Link changes arrive as events
//! on a second, non-blocking socket the VRRP loop polls.
//!
//! Every address we add carries `IFA_PROTO` = [`ADDRESS_PROTOCOL`], so the
//! addresses a crashed run left behind can be found and removed on the next
//! start (`ip -d addr` shows it as `proto 167`).

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP,
    NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressMessage, AddressProtocol, AddressScope,
};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteNextHop, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// The `IFA_PROTO` value marking the addresses keepalived-rs added; routes
/// and rules carry the same number as their protocol.
pub const ADDRESS_PROTOCOL: u8 = 167;

/// `RTNLGRP_LINK`: link state changes.
const GROUP_LINK: u32 = 1;

/// An address as we put it on an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub addr: IpAddr,
    pub prefix_len: u8,
    pub ifindex: u32,
    pub label: Option<String>,
    /// `RT_SCOPE_*`; `None` is global (universe).
    pub scope: Option<u8>,
    pub broadcast: Option<Ipv4Addr>,
}

/// An address the kernel reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Present {
    pub addr: IpAddr,
    pub prefix_len: u8,
    pub ifindex: u32,
    pub protocol: Option<u8>,
}

/// A route as we install it (`virtual_routes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dst: IpAddr,
    pub prefix_len: u8,
    pub src: Option<IpAddr>,
    /// Gateways; more than one make a multipath route.
    pub via: Vec<IpAddr>,
    pub ifindex: Option<u32>,
    pub table: u32,
    pub metric: Option<u32>,
    pub scope: Option<u8>,
    pub kind: kaconf::route::RouteKind,
    pub onlink: bool,
}

/// A policy routing rule (`virtual_rules`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub v6: bool,
    pub from: Option<(IpAddr, u8)>,
    pub to: Option<(IpAddr, u8)>,
    pub table: u32,
    pub priority: Option<u32>,
    pub iif: Option<String>,
    pub oif: Option<String>,
    pub fwmark: Option<(u32, Option<u32>)>,
}

/// A link's name and whether it is usable (administratively up and running).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub up: bool,
}

/// A request socket.
#[derive(Debug)]
pub struct Rtnl {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Rtnl {
    pub fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Self {
            socket,
            seq: 0,
            buf: Vec::with_capacity(64 * 1024),
        })
    }

    /// Adds `a` (replacing an address already there, so a restart or a
    /// second add is not an error).
    pub fn add_address(&mut self, a: &Address) -> io::Result<()> {
        let msg = RouteNetlinkMessage::NewAddress(address_message(a, true));
        self.request(msg, NLM_F_CREATE | NLM_F_REPLACE, &mut |_| {})
    }

    /// Removes `a`; an address already gone is fine.
    pub fn remove_address(&mut self, a: &Address) -> io::Result<()> {
        let msg = RouteNetlinkMessage::DelAddress(address_message(a, false));
        match self.request(msg, 0, &mut |_| {}) {
            Err(e) if e.raw_os_error() == Some(nix::libc::EADDRNOTAVAIL) => Ok(()),
            Err(e) if e.raw_os_error() == Some(nix::libc::ENODEV) => Ok(()),
            r => r,
        }
    }

    /// Installs `r` (replacing a route with the same key).
    pub fn add_route(&mut self, r: &Route) -> io::Result<()> {
        let msg = RouteNetlinkMessage::NewRoute(route_message(r));
        self.request(msg, NLM_F_CREATE | NLM_F_REPLACE, &mut |_| {})
    }

    /// Removes `r`; a route already gone is fine.
    pub fn remove_route(&mut self, r: &Route) -> io::Result<()> {
        let msg = RouteNetlinkMessage::DelRoute(route_message(r));
        match self.request(msg, 0, &mut |_| {}) {
            Err(e) if e.raw_os_error() == Some(nix::libc::ESRCH) => Ok(()),
            r => r,
        }
    }

    /// Adds `r`; the same rule already there is fine.
    pub fn add_rule(&mut self, r: &Rule) -> io::Result<()> {
        let msg = RouteNetlinkMessage::NewRule(rule_message(r));
        match self.request(
            msg,
            NLM_F_CREATE | netlink_packet_core::NLM_F_EXCL,
            &mut |_| {},
        ) {
            Err(e) if e.raw_os_error() == Some(nix::libc::EEXIST) => Ok(()),
            r => r,
        }
    }

    /// Removes `r`; a rule already gone is fine.
    pub fn remove_rule(&mut self, r: &Rule) -> io::Result<()> {
        let msg = RouteNetlinkMessage::DelRule(rule_message(r));
        match self.request(msg, 0, &mut |_| {}) {
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOENT) => Ok(()),
            r => r,
        }
    }

    /// Removes every route and rule marked with our protocol (what a crashed
    /// run left); how many.
    pub fn remove_our_routes_and_rules(&mut self) -> io::Result<usize> {
        let mut routes = Vec::new();
        self.request(
            RouteNetlinkMessage::GetRoute(RouteMessage::default()),
            NLM_F_DUMP,
            &mut |m| {
                if let RouteNetlinkMessage::NewRoute(r) = m {
                    if r.header.protocol == RouteProtocol::from(ADDRESS_PROTOCOL) {
                        routes.push(r);
                    }
                }
            },
        )?;
        let mut rules = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut q = RuleMessage::default();
            q.header.family = family;
            self.request(RouteNetlinkMessage::GetRule(q), NLM_F_DUMP, &mut |m| {
                if let RouteNetlinkMessage::NewRule(r) = m {
                    if r.attributes
                        .contains(&RuleAttribute::Protocol(RouteProtocol::from(
                            ADDRESS_PROTOCOL,
                        )))
                    {
                        rules.push(r);
                    }
                }
            })?;
        }
        let n = routes.len() + rules.len();
        for r in routes {
            self.request(RouteNetlinkMessage::DelRoute(r), 0, &mut |_| {})?;
        }
        for r in rules {
            self.request(RouteNetlinkMessage::DelRule(r), 0, &mut |_| {})?;
        }
        Ok(n)
    }

    /// Creates macvlan `name` on `parent` with `mac` (private mode, as
    /// keepalived's VMAC) and sets it up. An interface of that name already
    /// there with that MAC (a crashed run's VMAC) is deleted first; any other
    /// interface of that name is left alone and is an error.
    pub fn add_macvlan(&mut self, name: &str, parent: u32, mac: [u8; 6]) -> io::Result<u32> {
        use netlink_packet_route::link::{InfoData, InfoKind, InfoMacVlan, LinkInfo, MacVlanMode};
        if let Ok(old) = nix::net::if_::if_nametoindex(name) {
            let want = mac
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":");
            let has = std::fs::read_to_string(format!("/sys/class/net/{name}/address"))
                .unwrap_or_default();
            if has.trim() != want {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!(
                        "interface {name} exists and is not a VMAC ({}); not touching it",
                        has.trim()
                    ),
                ));
            }
            self.remove_link(old)?;
        }
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_owned()));
        m.attributes.push(LinkAttribute::Link(parent));
        m.attributes.push(LinkAttribute::Address(mac.to_vec()));
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::MacVlan),
            LinkInfo::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(
                MacVlanMode::Private,
            )])),
        ]));
        self.request(
            RouteNetlinkMessage::NewLink(m),
            NLM_F_CREATE | netlink_packet_core::NLM_F_EXCL,
            &mut |_| {},
        )?;
        let index = nix::net::if_::if_nametoindex(name).map_err(io::Error::from)?;
        let mut up = LinkMessage::default();
        up.header.index = index;
        up.header.flags = LinkFlags::Up;
        up.header.change_mask = LinkFlags::Up;
        self.request(RouteNetlinkMessage::SetLink(up), 0, &mut |_| {})?;
        Ok(index)
    }

    /// Deletes link `index`; one already gone is fine.
    pub fn remove_link(&mut self, index: u32) -> io::Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        match self.request(RouteNetlinkMessage::DelLink(m), 0, &mut |_| {}) {
            Err(e) if e.raw_os_error() == Some(nix::libc::ENODEV) => Ok(()),
            r => r,
        }
    }

    /// Every address on every interface.
    pub fn addresses(&mut self) -> io::Result<Vec<Present>> {
        let mut out = Vec::new();
        self.request(
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            NLM_F_DUMP,
            &mut |m| {
                if let RouteNetlinkMessage::NewAddress(a) = m {
                    out.extend(present(&a));
                }
            },
        )?;
        Ok(out)
    }

    /// Every link.
    pub fn links(&mut self) -> io::Result<Vec<Link>> {
        let mut out = Vec::new();
        self.request(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
            &mut |m| {
                if let RouteNetlinkMessage::NewLink(l) = m {
                    out.extend(link(&l));
                }
            },
        )?;
        Ok(out)
    }

    /// Sends `msg` and reads the answer: each message of a dump goes to
    /// `each`; an error from the kernel is returned as the errno it carries.
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        each: &mut dyn FnMut(RouteNetlinkMessage),
    ) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut out = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut out);
        self.socket.send(&out, 0)?;
        loop {
            self.buf.clear();
            self.socket.recv(&mut self.buf, 0)?;
            if read_answer(&self.buf, self.seq, each)? == Answer::Done {
                return Ok(());
            }
        }
    }
}

/// Whether the answer to a request is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// More datagrams follow (a dump in progress).
    More,
    /// The acknowledgement or the end of the dump came.
    Done,
}

/// Reads one datagram of the kernel's answer to request `seq`: each of its
/// messages of a dump goes to `each`; messages of other requests are
/// skipped; an error from the kernel is returned as the errno it carries,
/// a message that does not fit the datagram as `InvalidData`.
pub fn read_answer(
    buf: &[u8],
    seq: u32,
    each: &mut dyn FnMut(RouteNetlinkMessage),
) -> io::Result<Answer> {
    let mut rest = buf;
    while !rest.is_empty() {
        let len = rest
            .get(..4)
            .map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize);
        if len < 16 || len > rest.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "truncated netlink message",
            ));
        }
        let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rest[..len])
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        rest = &rest[align4(len).min(rest.len())..];
        if m.header.sequence_number != seq {
            continue;
        }
        match m.payload {
            NetlinkPayload::Error(e) => {
                // The errno ourselves: netlink-packet-core's `to_io`
                // negates the code and overflows on i32::MIN (found by
                // fuzz/netlink_reply).
                return match e.code {
                    Some(code) => Err(io::Error::from_raw_os_error(
                        i32::try_from(code.get().unsigned_abs()).unwrap_or(i32::MAX),
                    )),
                    None => Ok(Answer::Done),
                };
            }
            NetlinkPayload::Done(_) => return Ok(Answer::Done),
            NetlinkPayload::InnerMessage(inner) => each(inner),
            _ => {}
        }
    }
    Ok(Answer::More)
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn address_message(a: &Address, adding: bool) -> AddressMessage {
    let mut m = AddressMessage::default();
    m.header.family = match a.addr {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    m.header.prefix_len = a.prefix_len;
    m.header.index = a.ifindex;
    m.header.scope = AddressScope::from(a.scope.unwrap_or(0));
    m.attributes.push(AddressAttribute::Local(a.addr));
    if a.addr.is_ipv4() {
        // IFA_ADDRESS is the peer on point-to-point links, else the address.
        m.attributes.push(AddressAttribute::Address(a.addr));
    }
    if adding {
        if let Some(label) = &a.label {
            m.attributes.push(AddressAttribute::Label(label.clone()));
        }
        if let Some(b) = a.broadcast {
            m.attributes.push(AddressAttribute::Broadcast(b));
        }
        if a.addr.is_ipv6() {
            // A VIP must be usable at once: no duplicate address detection.
            m.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        m.attributes
            .push(AddressAttribute::Protocol(AddressProtocol::from(
                ADDRESS_PROTOCOL,
            )));
    }
    m
}

fn route_address(a: IpAddr) -> RouteAddress {
    match a {
        IpAddr::V4(v4) => RouteAddress::Inet(v4),
        IpAddr::V6(v6) => RouteAddress::Inet6(v6),
    }
}

fn route_message(r: &Route) -> RouteMessage {
    use kaconf::route::RouteKind;
    let mut m = RouteMessage::default();
    m.header.address_family = if r.dst.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    m.header.destination_prefix_length = r.prefix_len;
    m.header.table = u8::try_from(r.table).unwrap_or(0); // RT_TABLE_UNSPEC: see RTA_TABLE
    m.header.protocol = RouteProtocol::from(ADDRESS_PROTOCOL);
    m.header.kind = match r.kind {
        RouteKind::Unicast => RouteType::Unicast,
        RouteKind::Blackhole => RouteType::BlackHole,
        RouteKind::Unreachable => RouteType::Unreachable,
        RouteKind::Prohibit => RouteType::Prohibit,
        RouteKind::Throw => RouteType::Throw,
    };
    // Without a gateway a unicast route is on-link (scope link), as `ip
    // route` does it.
    let default_scope = if r.via.is_empty() && r.kind == RouteKind::Unicast {
        253
    } else {
        0
    };
    m.header.scope = RouteScope::from(r.scope.unwrap_or(default_scope));
    if r.onlink {
        m.header.flags |= netlink_packet_route::route::RouteFlags::Onlink;
    }
    if r.prefix_len > 0 || !r.dst.is_unspecified() {
        m.attributes
            .push(RouteAttribute::Destination(route_address(r.dst)));
    }
    m.attributes.push(RouteAttribute::Table(r.table));
    if let Some(src) = r.src {
        m.attributes
            .push(RouteAttribute::PrefSource(route_address(src)));
    }
    if let Some(metric) = r.metric {
        m.attributes.push(RouteAttribute::Priority(metric));
    }
    match r.via.as_slice() {
        [] => {}
        [one] => m
            .attributes
            .push(RouteAttribute::Gateway(route_address(*one))),
        many => {
            let hops = many
                .iter()
                .map(|g| {
                    let mut h = RouteNextHop::default();
                    h.interface_index = r.ifindex.unwrap_or(0);
                    h.attributes
                        .push(RouteAttribute::Gateway(route_address(*g)));
                    h
                })
                .collect();
            m.attributes.push(RouteAttribute::MultiPath(hops));
        }
    }
    if let Some(ifindex) = r.ifindex {
        if r.via.len() <= 1 {
            m.attributes.push(RouteAttribute::Oif(ifindex));
        }
    }
    m
}

fn rule_message(r: &Rule) -> RuleMessage {
    let mut m = RuleMessage::default();
    m.header.family = if r.v6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    m.header.action = RuleAction::ToTable;
    m.header.table = u8::try_from(r.table).unwrap_or(0);
    m.attributes.push(RuleAttribute::Table(r.table));
    m.attributes
        .push(RuleAttribute::Protocol(RouteProtocol::from(
            ADDRESS_PROTOCOL,
        )));
    if let Some((a, len)) = r.from {
        m.header.src_len = len;
        m.attributes.push(RuleAttribute::Source(a));
    }
    if let Some((a, len)) = r.to {
        m.header.dst_len = len;
        m.attributes.push(RuleAttribute::Destination(a));
    }
    if let Some(p) = r.priority {
        m.attributes.push(RuleAttribute::Priority(p));
    }
    if let Some(i) = &r.iif {
        m.attributes.push(RuleAttribute::Iifname(i.clone()));
    }
    if let Some(o) = &r.oif {
        m.attributes.push(RuleAttribute::Oifname(o.clone()));
    }
    if let Some((mark, mask)) = r.fwmark {
        m.attributes.push(RuleAttribute::FwMark(mark));
        if let Some(mask) = mask {
            m.attributes.push(RuleAttribute::FwMask(mask));
        }
    }
    m
}

/// An address the kernel reported, if it names one.
pub fn present(a: &AddressMessage) -> Option<Present> {
    let addr = a.attributes.iter().find_map(|at| match at {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    let addr = addr.or_else(|| {
        a.attributes.iter().find_map(|at| match at {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        })
    })?;
    let protocol = a.attributes.iter().find_map(|at| match at {
        AddressAttribute::Protocol(p) => Some(u8::from(*p)),
        _ => None,
    });
    Some(Present {
        addr,
        prefix_len: a.header.prefix_len,
        ifindex: a.header.index,
        protocol,
    })
}

/// A link the kernel reported, if it has a name.
pub fn link(l: &LinkMessage) -> Option<Link> {
    let name = l.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.clone()),
        _ => None,
    })?;
    let flags = l.header.flags;
    Some(Link {
        index: l.header.index,
        name,
        up: flags.contains(LinkFlags::Up) && flags.contains(LinkFlags::Running),
    })
}

/// The links one datagram of `RTNLGRP_LINK` events reports (a deleted
/// link as down); messages that do not parse are skipped, a length that
/// does not fit ends the datagram.
pub fn link_events(buf: &[u8]) -> Vec<Link> {
    let mut out = Vec::new();
    let mut rest = buf;
    while rest.len() >= 16 {
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len < 16 || len > rest.len() {
            break;
        }
        if let Ok(m) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rest[..len]) {
            match m.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)) => {
                    out.extend(link(&l));
                }
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(l)) => {
                    out.extend(link(&l).map(|l| Link { up: false, ..l }));
                }
                _ => {}
            }
        }
        rest = &rest[align4(len).min(rest.len())..];
    }
    out
}

/// Link change events (`RTNLGRP_LINK`), read without blocking.
#[derive(Debug)]
pub struct LinkEvents {
    socket: Socket,
    buf: Vec<u8>,
}

impl LinkEvents {
    pub fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.add_membership(GROUP_LINK)?;
        socket.set_non_blocking(true)?;
        Ok(Self {
            socket,
            buf: Vec::with_capacity(64 * 1024),
        })
    }

    /// The links that changed since the last call. `Err` with
    /// `ErrorKind::OutOfMemory`-like ENOBUFS means events were lost: the
    /// caller should read every link afresh.
    pub fn drain(&mut self) -> io::Result<Vec<Link>> {
        let mut out = Vec::new();
        loop {
            self.buf.clear();
            match self.socket.recv(&mut self.buf, 0) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(out),
                Err(e) => return Err(e),
            }
            out.extend(link_events(&self.buf));
        }
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl AsRawFd for LinkEvents {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.socket.as_raw_fd()
    }
}

#[cfg(test)]
#[path = "netlink_tests.rs"]
mod tests;
