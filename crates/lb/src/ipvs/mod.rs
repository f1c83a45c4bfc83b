//! IPVS over generic netlink, as `ipvsadm` and keepalived drive it
//! (`include/uapi/linux/ip_vs.h`): the messages, encoded by hand (they
//! are a handful of fixed attributes), and a diff of two desired states
//! into the commands that turn one into the other — all pure — and the
//! plane that sends them ([`plane`]: the socket, [`Plane`]).

use std::net::IpAddr;

pub mod plane;
pub use plane::{unavailable, Ipvs, Plane};

/// `IPVS_GENL_NAME`, `IPVS_GENL_VERSION`.
pub const FAMILY: &str = "IPVS";
pub const VERSION: u8 = 1;

/// Commands (`IPVS_CMD_*`).
pub mod cmd {
    pub const NEW_SERVICE: u8 = 1;
    pub const SET_SERVICE: u8 = 2;
    pub const DEL_SERVICE: u8 = 3;
    pub const GET_SERVICE: u8 = 4;
    pub const NEW_DEST: u8 = 5;
    pub const SET_DEST: u8 = 6;
    pub const DEL_DEST: u8 = 7;
    pub const GET_DEST: u8 = 8;
    pub const NEW_DAEMON: u8 = 9;
    pub const DEL_DAEMON: u8 = 10;
    pub const GET_DAEMON: u8 = 11;
    pub const SET_CONFIG: u8 = 12;
    pub const GET_CONFIG: u8 = 13;
    pub const FLUSH: u8 = 17;
}

const CMD_ATTR_SERVICE: u16 = 1;
const CMD_ATTR_DEST: u16 = 2;
const SVC_ATTR_AF: u16 = 1;
const SVC_ATTR_PROTOCOL: u16 = 2;
const SVC_ATTR_ADDR: u16 = 3;
const SVC_ATTR_PORT: u16 = 4;
const SVC_ATTR_FWMARK: u16 = 5;
const SVC_ATTR_SCHED_NAME: u16 = 6;
const SVC_ATTR_FLAGS: u16 = 7;
const SVC_ATTR_TIMEOUT: u16 = 8;
const SVC_ATTR_NETMASK: u16 = 9;
const DEST_ATTR_ADDR: u16 = 1;
const DEST_ATTR_PORT: u16 = 2;
const DEST_ATTR_FWD_METHOD: u16 = 3;
const DEST_ATTR_WEIGHT: u16 = 4;
const DEST_ATTR_U_THRESH: u16 = 5;
const DEST_ATTR_L_THRESH: u16 = 6;
const DEST_ATTR_ADDR_FAMILY: u16 = 11;
const DEST_ATTR_TUN_TYPE: u16 = 13;
const DEST_ATTR_TUN_PORT: u16 = 14;
const DEST_ATTR_TUN_FLAGS: u16 = 15;
/// `NLA_F_NESTED`.
const NESTED: u16 = 0x8000;
/// `IP_VS_SVC_F_PERSISTENT`.
pub const SVC_F_PERSISTENT: u32 = 0x1;
/// `IP_VS_SVC_F_ONEPACKET` (`ops`: UDP datagrams scheduled one by one).
pub const SVC_F_ONEPACKET: u32 = 0x4;
/// `IP_VS_SVC_F_SCHED1..3` (`flag-1..3`; `sh-fallback` / `mh-fallback`
/// are 1, `sh-port` / `mh-port` 2).
pub const SVC_F_SCHED1: u32 = 0x8;
pub const SVC_F_SCHED2: u32 = 0x10;
pub const SVC_F_SCHED3: u32 = 0x20;
/// The flags a service's options set (the kernel keeps `HASHED` itself).
const SVC_F_OURS: u32 =
    SVC_F_PERSISTENT | SVC_F_ONEPACKET | SVC_F_SCHED1 | SVC_F_SCHED2 | SVC_F_SCHED3;

/// `IP_VS_CONN_F_TUNNEL_TYPE_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TunnelKind {
    Ipip = 0,
    Gue = 1,
    Gre = 2,
}

/// `IP_VS_TUNNEL_ENCAP_FLAG_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TunnelCsum {
    NoCsum = 0,
    Csum = 1,
    RemCsum = 2,
}

/// How a tunnelled destination is reached: the encapsulation, GUE's UDP
/// port, the checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tunnel {
    pub kind: TunnelKind,
    pub port: u16,
    pub csum: TunnelCsum,
}

impl Tunnel {
    pub const IPIP: Tunnel = Tunnel {
        kind: TunnelKind::Ipip,
        port: 0,
        csum: TunnelCsum::NoCsum,
    };
}

/// `IP_VS_CONN_F_*` forwarding methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Forward {
    Masq = 0,
    Tunnel = 2,
    Route = 3,
}

/// A virtual service as IPVS keys it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServiceKey {
    /// For a `fwmark` service: the unspecified address of its family.
    pub addr: IpAddr,
    /// `virtual_server fwmark N`: keyed by the mark alone.
    pub fwmark: Option<u32>,
    /// `IPPROTO_TCP` (6) or `IPPROTO_UDP` (17).
    pub protocol: u16,
    pub port: u16,
}

/// A service with its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub key: ServiceKey,
    pub scheduler: String,
    /// Persistence: timeout (s) and netmask (a prefix length).
    pub persistence: Option<(u32, u8)>,
    /// `SVC_F_ONEPACKET` and the scheduler flags (persistence sets its
    /// own).
    pub flags: u32,
    pub dests: Vec<Dest>,
}

/// A destination (real server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dest {
    pub addr: IpAddr,
    pub port: u16,
    pub forward: Forward,
    pub weight: u32,
    pub upper: u32,
    pub lower: u32,
    /// `Forward::Tunnel`'s encapsulation (`None` otherwise).
    pub tunnel: Option<Tunnel>,
}

/// One attribute: type, then the value padded to 4 bytes.
fn attr(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = u16::try_from(4 + value.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    while out.len() % 4 != 0 {
        out.push(0);
    }
}

/// A nested attribute holding what `fill` writes.
fn nest(out: &mut Vec<u8>, kind: u16, fill: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&(kind | NESTED).to_ne_bytes());
    fill(out);
    let len = u16::try_from(out.len() - start).unwrap_or(u16::MAX);
    out[start..start + 2].copy_from_slice(&len.to_ne_bytes());
}

/// `union nf_inet_addr`: 16 bytes, an IPv4 address in the first four.
fn inet_addr(a: IpAddr) -> [u8; 16] {
    let mut b = [0u8; 16];
    match a {
        IpAddr::V4(v) => b[..4].copy_from_slice(&v.octets()),
        IpAddr::V6(v) => b = v.octets(),
    }
    b
}

fn af(a: IpAddr) -> u16 {
    if a.is_ipv4() {
        2 // AF_INET
    } else {
        10 // AF_INET6
    }
}

fn netmask(a: IpAddr, prefix: u8) -> u32 {
    // IPVS takes the netmask as a __be32 for IPv4, a prefix length for IPv6.
    match a {
        IpAddr::V4(_) => u32::from_ne_bytes(
            u32::MAX
                .checked_shl(32 - u32::from(prefix.min(32)))
                .unwrap_or(0)
                .to_be_bytes(),
        ),
        IpAddr::V6(_) => u32::from(prefix.min(128)),
    }
}

fn service_key_attrs(out: &mut Vec<u8>, k: &ServiceKey) {
    attr(out, SVC_ATTR_AF, &af(k.addr).to_ne_bytes());
    if let Some(m) = k.fwmark {
        attr(out, SVC_ATTR_FWMARK, &m.to_ne_bytes());
        return;
    }
    attr(out, SVC_ATTR_PROTOCOL, &k.protocol.to_ne_bytes());
    attr(out, SVC_ATTR_ADDR, &inet_addr(k.addr));
    attr(out, SVC_ATTR_PORT, &k.port.to_be_bytes());
}

/// The attributes of `NEW_SERVICE` / `SET_SERVICE` for `s`.
pub fn service_attrs(s: &Service) -> Vec<u8> {
    let mut out = Vec::new();
    nest(&mut out, CMD_ATTR_SERVICE, |o| {
        service_key_attrs(o, &s.key);
        let mut name = s.scheduler.as_bytes().to_vec();
        name.push(0);
        attr(o, SVC_ATTR_SCHED_NAME, &name);
        let (flags, timeout, prefix) = match s.persistence {
            Some((t, p)) => (SVC_F_PERSISTENT, t, p),
            None => (0, 0, if s.key.addr.is_ipv4() { 32 } else { 128 }),
        };
        let flags = flags | (s.flags & SVC_F_OURS & !SVC_F_PERSISTENT);
        let mut f = flags.to_ne_bytes().to_vec();
        f.extend_from_slice(&u32::MAX.to_ne_bytes());
        attr(o, SVC_ATTR_FLAGS, &f);
        attr(o, SVC_ATTR_TIMEOUT, &timeout.to_ne_bytes());
        attr(
            o,
            SVC_ATTR_NETMASK,
            &netmask(s.key.addr, prefix).to_ne_bytes(),
        );
    });
    out
}

/// The attributes of `DEL_SERVICE` for `k`.
pub fn service_key(k: &ServiceKey) -> Vec<u8> {
    let mut out = Vec::new();
    nest(&mut out, CMD_ATTR_SERVICE, |o| service_key_attrs(o, k));
    out
}

/// The attributes of `NEW_DEST` / `SET_DEST` / `DEL_DEST` for `d` of `k`.
pub fn dest_attrs(k: &ServiceKey, d: &Dest) -> Vec<u8> {
    let mut out = service_key(k);
    nest(&mut out, CMD_ATTR_DEST, |o| {
        attr(o, DEST_ATTR_ADDR, &inet_addr(d.addr));
        attr(o, DEST_ATTR_PORT, &d.port.to_be_bytes());
        attr(o, DEST_ATTR_FWD_METHOD, &(d.forward as u32).to_ne_bytes());
        attr(o, DEST_ATTR_WEIGHT, &d.weight.to_ne_bytes());
        attr(o, DEST_ATTR_U_THRESH, &d.upper.to_ne_bytes());
        attr(o, DEST_ATTR_L_THRESH, &d.lower.to_ne_bytes());
        attr(o, DEST_ATTR_ADDR_FAMILY, &af(d.addr).to_ne_bytes());
        if let (Forward::Tunnel, Some(t)) = (d.forward, d.tunnel) {
            attr(o, DEST_ATTR_TUN_TYPE, &[t.kind as u8]);
            attr(o, DEST_ATTR_TUN_PORT, &t.port.to_be_bytes());
            attr(o, DEST_ATTR_TUN_FLAGS, &(t.csum as u16).to_ne_bytes());
        }
    });
    out
}

/// `IPVS_CMD_ATTR_TIMEOUT_TCP`, `…_TCP_FIN`, `…_UDP`.
const CMD_ATTR_TIMEOUT_TCP: u16 = 4;
const CMD_ATTR_TIMEOUT_TCP_FIN: u16 = 5;
const CMD_ATTR_TIMEOUT_UDP: u16 = 6;

/// `SET_CONFIG`'s attributes: the three timeouts, in seconds (keepalived
/// always sends all three).
pub fn timeouts_attrs(tcp: u32, tcp_fin: u32, udp: u32) -> Vec<u8> {
    let mut out = Vec::new();
    attr(&mut out, CMD_ATTR_TIMEOUT_TCP, &tcp.to_ne_bytes());
    attr(&mut out, CMD_ATTR_TIMEOUT_TCP_FIN, &tcp_fin.to_ne_bytes());
    attr(&mut out, CMD_ATTR_TIMEOUT_UDP, &udp.to_ne_bytes());
    out
}

/// The timeouts (tcp, tcpfin, udp) in a `GET_CONFIG` answer to `seq` in
/// `buf`: `Ok(None)` if `buf` holds none (another message, or only the
/// acknowledgement), the kernel's error (a negative errno) if it refused.
pub fn parse_timeouts(buf: &[u8], seq: u32) -> Result<Option<(u32, u32, u32)>, i32> {
    for (kind, msg) in messages(buf, seq) {
        if kind == 2 {
            let e = msg
                .get(16..20)
                .map_or(-5, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
            if e != 0 {
                return Err(e);
            }
            continue;
        }
        let (mut tcp, mut fin, mut udp) = (None, None, None);
        for (k, v) in attrs_of(msg.get(20..).unwrap_or_default()) {
            match k {
                CMD_ATTR_TIMEOUT_TCP => tcp = u32_of(v),
                CMD_ATTR_TIMEOUT_TCP_FIN => fin = u32_of(v),
                CMD_ATTR_TIMEOUT_UDP => udp = u32_of(v),
                _ => {}
            }
        }
        if let (Some(t), Some(f), Some(u)) = (tcp, fin, udp) {
            return Ok(Some((t, f, u)));
        }
    }
    Ok(None)
}

/// `IPVS_CMD_ATTR_DAEMON` and the attributes nested in it.
const CMD_ATTR_DAEMON: u16 = 3;
const DAEMON_ATTR_STATE: u16 = 1;
const DAEMON_ATTR_MCAST_IFN: u16 = 2;
const DAEMON_ATTR_SYNC_ID: u16 = 3;
const DAEMON_ATTR_SYNC_MAXLEN: u16 = 4;
const DAEMON_ATTR_MCAST_GROUP: u16 = 5;
const DAEMON_ATTR_MCAST_GROUP6: u16 = 6;
const DAEMON_ATTR_MCAST_PORT: u16 = 7;
const DAEMON_ATTR_MCAST_TTL: u16 = 8;
/// The kernel's limit on an interface name, its NUL included.
const IFNAMSIZ: usize = 16;

/// Which side of IPVS's connection synchronisation a sync daemon is: the
/// master sends its connections, the backup receives them into its
/// table (`IP_VS_STATE_MASTER`, `IP_VS_STATE_BACKUP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SyncRole {
    Master,
    Backup,
}

impl SyncRole {
    fn state(self) -> u32 {
        match self {
            Self::Master => 1,
            Self::Backup => 2,
        }
    }

    /// `master`, `backup`, as `ipvsadm` says it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Master => "master",
            Self::Backup => "backup",
        }
    }
}

/// IPVS's sync daemon (`lvs_sync_daemon`): the interface it sends or
/// listens on, its sync id, and the optional multicast settings (the
/// kernel's defaults, 224.0.0.81:8848 TTL 1, where `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncDaemon {
    pub interface: String,
    pub sync_id: u8,
    pub maxlen: Option<u16>,
    pub port: Option<u16>,
    pub ttl: Option<u8>,
    pub group: Option<IpAddr>,
}

/// A sync daemon the kernel runs, as `GET_DAEMON` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningDaemon {
    pub role: SyncRole,
    pub interface: String,
    pub sync_id: u32,
}

/// `NEW_DAEMON`'s attributes: `d` started as `role`. An interface name the
/// kernel could not hold is cut to its limit (the kernel then refuses it
/// as unknown rather than reading past it).
pub fn start_daemon_attrs(role: SyncRole, d: &SyncDaemon) -> Vec<u8> {
    let mut out = Vec::new();
    nest(&mut out, CMD_ATTR_DAEMON, |out| {
        attr(out, DAEMON_ATTR_STATE, &role.state().to_ne_bytes());
        let mut ifn: Vec<u8> = d.interface.bytes().take(IFNAMSIZ - 1).collect();
        ifn.push(0);
        attr(out, DAEMON_ATTR_MCAST_IFN, &ifn);
        attr(
            out,
            DAEMON_ATTR_SYNC_ID,
            &u32::from(d.sync_id).to_ne_bytes(),
        );
        if let Some(m) = d.maxlen {
            attr(out, DAEMON_ATTR_SYNC_MAXLEN, &m.to_ne_bytes());
        }
        if let Some(p) = d.port {
            attr(out, DAEMON_ATTR_MCAST_PORT, &p.to_ne_bytes());
        }
        if let Some(t) = d.ttl {
            attr(out, DAEMON_ATTR_MCAST_TTL, &[t]);
        }
        match d.group {
            Some(IpAddr::V4(g)) => attr(out, DAEMON_ATTR_MCAST_GROUP, &g.octets()),
            Some(IpAddr::V6(g)) => attr(out, DAEMON_ATTR_MCAST_GROUP6, &g.octets()),
            None => {}
        }
    });
    out
}

/// `DEL_DAEMON`'s attributes: the daemon of `role` stopped.
pub fn stop_daemon_attrs(role: SyncRole, sync_id: u8) -> Vec<u8> {
    let mut out = Vec::new();
    nest(&mut out, CMD_ATTR_DAEMON, |out| {
        attr(out, DAEMON_ATTR_STATE, &role.state().to_ne_bytes());
        attr(out, DAEMON_ATTR_SYNC_ID, &u32::from(sync_id).to_ne_bytes());
    });
    out
}

fn parse_daemon(nested: &[u8]) -> Option<RunningDaemon> {
    let (mut role, mut interface, mut sync_id) = (None, None, 0);
    for (k, v) in attrs_of(nested) {
        match k {
            DAEMON_ATTR_STATE => {
                role = match u32_of(v)? {
                    1 => Some(SyncRole::Master),
                    2 => Some(SyncRole::Backup),
                    _ => return None,
                };
            }
            DAEMON_ATTR_MCAST_IFN => {
                let name = v.split(|b| *b == 0).next().unwrap_or_default();
                interface = Some(String::from_utf8_lossy(name).into_owned());
            }
            DAEMON_ATTR_SYNC_ID => sync_id = u32_of(v)?,
            _ => {}
        }
    }
    Some(RunningDaemon {
        role: role?,
        interface: interface?,
        sync_id,
    })
}

/// The sync daemons in one datagram of a `GET_DAEMON` dump.
pub fn parse_daemons(buf: &[u8], seq: u32) -> Result<DumpPart<RunningDaemon>, i32> {
    dump_part(buf, seq, CMD_ATTR_DAEMON, parse_daemon)
}

/// One netlink message: header (length, `family`, `NLM_F_REQUEST |
/// NLM_F_ACK`, `seq`, port 0), the generic netlink header (`cmd`,
/// version), then `attrs`.
pub fn message(family: u16, seq: u32, cmd: u8, attrs: &[u8]) -> Vec<u8> {
    let len = u32::try_from(16 + 4 + attrs.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(len as usize);
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&family.to_ne_bytes());
    out.extend_from_slice(&(0x1u16 | 0x4).to_ne_bytes()); // NLM_F_REQUEST | NLM_F_ACK
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(&[cmd, VERSION, 0, 0]);
    out.extend_from_slice(attrs);
    out
}

/// The commands (and their attributes) that turn `old` into `new`: new
/// services and destinations added, changed ones set in place (so their
/// connections stay), gone ones deleted — destinations before services.
pub fn diff(old: &[Service], new: &[Service]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    for s in new {
        match old.iter().find(|o| o.key == s.key) {
            None => {
                out.push((cmd::NEW_SERVICE, service_attrs(s)));
                for d in &s.dests {
                    out.push((cmd::NEW_DEST, dest_attrs(&s.key, d)));
                }
            }
            Some(o) => {
                if o.scheduler != s.scheduler
                    || o.persistence != s.persistence
                    || o.flags != s.flags
                {
                    out.push((cmd::SET_SERVICE, service_attrs(s)));
                }
                for d in &s.dests {
                    match o
                        .dests
                        .iter()
                        .find(|x| x.addr == d.addr && x.port == d.port)
                    {
                        None => out.push((cmd::NEW_DEST, dest_attrs(&s.key, d))),
                        Some(x) if x != d => out.push((cmd::SET_DEST, dest_attrs(&s.key, d))),
                        Some(_) => {}
                    }
                }
                for x in &o.dests {
                    if !s.dests.iter().any(|d| d.addr == x.addr && d.port == x.port) {
                        out.push((cmd::DEL_DEST, dest_attrs(&s.key, x)));
                    }
                }
            }
        }
    }
    for o in old {
        if !new.iter().any(|s| s.key == o.key) {
            out.push((cmd::DEL_SERVICE, service_key(&o.key)));
        }
    }
    out
}

/// `CTRL_CMD_GETFAMILY` for IPVS (generic netlink's controller, family
/// `GENL_ID_CTRL` 0x10, attribute `CTRL_ATTR_FAMILY_NAME` 2).
pub fn get_family(seq: u32) -> Vec<u8> {
    let mut attrs = Vec::new();
    attr(&mut attrs, 2, b"IPVS\0");
    let mut m = message(0x10, seq, 3, &attrs);
    // No acknowledgement asked for: the answer is the reply itself (an
    // ACK would stay queued and be read as the next command's answer).
    m[6..8].copy_from_slice(&0x1u16.to_ne_bytes());
    m
}

/// The sequence number of a netlink message (0 when too short).
pub fn seq_of(msg: &[u8]) -> u32 {
    msg.get(8..12)
        .map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

/// The family id in a `CTRL_CMD_NEWFAMILY` answer (`CTRL_ATTR_FAMILY_ID`
/// 1, a u16), or the kernel's error (a negative errno) from an
/// `NLMSG_ERROR` answer.
pub fn parse_family(answer: &[u8]) -> Result<u16, i32> {
    let kind = answer.get(4..6).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    if kind == Some(2) {
        // NLMSG_ERROR: an i32 errno after the header.
        let e = answer
            .get(16..20)
            .map_or(-1, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
        return Err(e);
    }
    let mut at = 20;
    while let Some(h) = answer.get(at..at + 4) {
        let len = usize::from(u16::from_ne_bytes([h[0], h[1]]));
        let kind = u16::from_ne_bytes([h[2], h[3]]) & !NESTED;
        if len < 4 {
            break;
        }
        if kind == 1 {
            let v = answer.get(at + 4..at + 6).ok_or(-22)?;
            return Ok(u16::from_ne_bytes([v[0], v[1]]));
        }
        at += (len + 3) & !3;
    }
    Err(-2)
}

/// A dump request (`NLM_F_REQUEST | NLM_F_DUMP`): `GET_SERVICE` with no
/// attributes lists every service, `GET_DEST` with a service key its
/// destinations.
pub fn dump_request(family: u16, seq: u32, cmd: u8, attrs: &[u8]) -> Vec<u8> {
    let mut m = message(family, seq, cmd, attrs);
    m[6..8].copy_from_slice(&(0x1u16 | 0x300).to_ne_bytes());
    m
}

/// The attributes in `buf` (type without its flags, value), as far as
/// they are well formed.
fn attrs_of(buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(h) = buf.get(at..at + 4) {
        let len = usize::from(u16::from_ne_bytes([h[0], h[1]]));
        let kind = u16::from_ne_bytes([h[2], h[3]]) & !NESTED & !0x4000;
        let Some(value) = buf.get(at + 4..at + len.max(4)) else {
            break;
        };
        if len < 4 {
            break;
        }
        out.push((kind, value));
        at += (len + 3) & !3;
    }
    out
}

fn u16_of(v: &[u8]) -> Option<u16> {
    Some(u16::from_ne_bytes(v.get(..2)?.try_into().ok()?))
}

fn u32_of(v: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(v.get(..4)?.try_into().ok()?))
}

fn be16_of(v: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(v.get(..2)?.try_into().ok()?))
}

fn addr_of(family: u16, v: &[u8]) -> Option<IpAddr> {
    match family {
        2 => {
            let b: [u8; 4] = v.get(..4)?.try_into().ok()?;
            Some(IpAddr::from(b))
        }
        10 => {
            let b: [u8; 16] = v.get(..16)?.try_into().ok()?;
            Some(IpAddr::from(b))
        }
        _ => None,
    }
}

/// A service as the kernel reports it (without destinations), or `None`
/// for one this code cannot read.
fn parse_service(nested: &[u8]) -> Option<Service> {
    let mut af = 0;
    let (mut protocol, mut port, mut fwmark) = (0, 0, None);
    let (mut addr, mut sched, mut flags, mut timeout, mut mask) =
        (None, String::new(), 0u32, 0u32, None::<&[u8]>);
    let attrs = attrs_of(nested);
    for (k, v) in &attrs {
        if *k == SVC_ATTR_AF {
            af = u16_of(v)?;
        }
    }
    for (k, v) in attrs {
        match k {
            SVC_ATTR_PROTOCOL => protocol = u16_of(v)?,
            SVC_ATTR_ADDR => addr = addr_of(af, v),
            SVC_ATTR_PORT => port = be16_of(v)?,
            SVC_ATTR_FWMARK => fwmark = Some(u32_of(v)?),
            SVC_ATTR_SCHED_NAME => {
                sched = String::from_utf8_lossy(v.split(|b| *b == 0).next().unwrap_or_default())
                    .into_owned();
            }
            SVC_ATTR_FLAGS => flags = u32_of(v)?,
            SVC_ATTR_TIMEOUT => timeout = u32_of(v)?,
            SVC_ATTR_NETMASK => mask = Some(v),
            _ => {}
        }
    }
    let unspecified = match af {
        2 => IpAddr::from([0u8; 4]),
        10 => IpAddr::from([0u16; 8]),
        _ => return None,
    };
    let key = match fwmark {
        Some(m) => ServiceKey {
            addr: unspecified,
            fwmark: Some(m),
            protocol: 0,
            port: 0,
        },
        None => ServiceKey {
            addr: addr?,
            fwmark: None,
            protocol,
            port,
        },
    };
    let prefix = match (af, mask) {
        (2, Some(m)) => {
            let b: [u8; 4] = m.get(..4)?.try_into().ok()?;
            u8::try_from(u32::from_be_bytes(b).leading_ones()).ok()?
        }
        (_, Some(m)) => u8::try_from(u32_of(m)?.min(128)).ok()?,
        (2, None) => 32,
        _ => 128,
    };
    Some(Service {
        key,
        scheduler: sched,
        persistence: (flags & SVC_F_PERSISTENT != 0).then_some((timeout, prefix)),
        flags: flags & SVC_F_OURS & !SVC_F_PERSISTENT,
        dests: Vec::new(),
    })
}

/// A destination as the kernel reports it, or `None` for one this code
/// cannot read (an unknown forwarding method: local node, bypass).
fn parse_dest(nested: &[u8], service_af: u16) -> Option<Dest> {
    let attrs = attrs_of(nested);
    let af = attrs
        .iter()
        .find(|(k, _)| *k == DEST_ATTR_ADDR_FAMILY)
        .and_then(|(_, v)| u16_of(v))
        .unwrap_or(service_af);
    let mut d = Dest {
        addr: IpAddr::from([0u8; 4]),
        port: 0,
        forward: Forward::Masq,
        weight: 0,
        upper: 0,
        lower: 0,
        tunnel: None,
    };
    let mut tunnel = Tunnel::IPIP;
    for (k, v) in attrs {
        match k {
            DEST_ATTR_ADDR => d.addr = addr_of(af, v)?,
            DEST_ATTR_PORT => d.port = be16_of(v)?,
            DEST_ATTR_FWD_METHOD => {
                d.forward = match u32_of(v)? & 0x7 {
                    0 => Forward::Masq,
                    2 => Forward::Tunnel,
                    3 => Forward::Route,
                    _ => return None,
                }
            }
            DEST_ATTR_WEIGHT => d.weight = u32_of(v)?,
            DEST_ATTR_U_THRESH => d.upper = u32_of(v)?,
            DEST_ATTR_L_THRESH => d.lower = u32_of(v)?,
            DEST_ATTR_TUN_TYPE => {
                tunnel.kind = match v.first()? {
                    0 => TunnelKind::Ipip,
                    1 => TunnelKind::Gue,
                    _ => TunnelKind::Gre,
                }
            }
            DEST_ATTR_TUN_PORT => tunnel.port = be16_of(v)?,
            DEST_ATTR_TUN_FLAGS => {
                tunnel.csum = match u16_of(v)? {
                    0 => TunnelCsum::NoCsum,
                    1 => TunnelCsum::Csum,
                    _ => TunnelCsum::RemCsum,
                }
            }
            _ => {}
        }
    }
    if d.forward == Forward::Tunnel {
        d.tunnel = Some(tunnel);
    }
    Some(d)
}

/// One datagram of a dump's answer: what it holds, and whether it ended
/// the dump (`NLMSG_DONE`), or the kernel's error (a negative errno).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DumpPart<T> {
    pub items: Vec<T>,
    /// Entries that could not be read (skipped).
    pub unreadable: usize,
    pub done: bool,
}

/// The netlink messages of `buf` (type, whole message) answering `seq`,
/// as far as they are well formed.
fn messages(buf: &[u8], seq: u32) -> impl Iterator<Item = (u16, &[u8])> {
    let mut at = 0usize;
    std::iter::from_fn(move || loop {
        let h = buf.get(at..at + 16)?;
        let len =
            usize::try_from(u32::from_ne_bytes([h[0], h[1], h[2], h[3]])).unwrap_or(usize::MAX);
        let kind = u16::from_ne_bytes([h[4], h[5]]);
        let this = u32::from_ne_bytes([h[8], h[9], h[10], h[11]]);
        let msg = at.checked_add(len).and_then(|end| buf.get(at..end))?;
        if len < 16 {
            return None;
        }
        at = at.saturating_add((len + 3) & !3);
        if this == seq {
            return Some((kind, msg));
        }
    })
}

/// Walks the netlink messages of `buf` answering `seq`, giving each
/// nested attribute of type `want` to `read`.
fn dump_part<T>(
    buf: &[u8],
    seq: u32,
    want: u16,
    mut read: impl FnMut(&[u8]) -> Option<T>,
) -> Result<DumpPart<T>, i32> {
    let mut part = DumpPart {
        items: Vec::new(),
        unreadable: 0,
        done: false,
    };
    for (kind, msg) in messages(buf, seq) {
        match kind {
            // NLMSG_DONE, with the dump's own error if it failed.
            3 => {
                let e = msg
                    .get(16..20)
                    .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                if e < 0 {
                    return Err(e);
                }
                part.done = true;
                break;
            }
            // NLMSG_ERROR.
            2 => {
                let e = msg
                    .get(16..20)
                    .map_or(-5, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                if e != 0 {
                    return Err(e);
                }
            }
            _ => {
                for (k, v) in attrs_of(msg.get(20..).unwrap_or_default()) {
                    if k == want {
                        match read(v) {
                            Some(item) => part.items.push(item),
                            None => part.unreadable += 1,
                        }
                    }
                }
            }
        }
    }
    Ok(part)
}

/// The services in one datagram of a `GET_SERVICE` dump.
pub fn parse_services(buf: &[u8], seq: u32) -> Result<DumpPart<Service>, i32> {
    dump_part(buf, seq, CMD_ATTR_SERVICE, parse_service)
}

/// The destinations in one datagram of a `GET_DEST` dump for a service
/// of `key`'s family.
pub fn parse_dests(buf: &[u8], seq: u32, key: &ServiceKey) -> Result<DumpPart<Dest>, i32> {
    let af = af(key.addr);
    dump_part(buf, seq, CMD_ATTR_DEST, |v| parse_dest(v, af))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `lvs_sync_daemon`: NEW_DAEMON carries the role, the interface
    /// (NUL-ended, cut to the kernel's 15 characters), the sync id and only
    /// the options given; GET_DAEMON's answer is read back; DEL_DAEMON
    /// names the role and id.
    #[test]
    fn sync_daemon_messages_round_trip() {
        let d = SyncDaemon {
            interface: "eth0".into(),
            sync_id: 51,
            maxlen: None,
            port: Some(8849),
            ttl: Some(2),
            group: Some("239.0.0.9".parse().unwrap()),
        };
        let attrs = start_daemon_attrs(SyncRole::Master, &d);
        // nest 4 + state 8 + "eth0\0" 4+8 + id 8 + port 8 + ttl 8 + group 8
        assert_eq!(attrs.len(), 4 + 8 + 12 + 8 + 8 + 8 + 8);
        let inner = attrs_of(&attrs);
        assert_eq!(inner.len(), 1);
        assert_eq!(inner[0].0, CMD_ATTR_DAEMON);
        let fields = attrs_of(inner[0].1);
        let kinds: Vec<u16> = fields.iter().map(|f| f.0).collect();
        assert_eq!(
            kinds,
            [
                DAEMON_ATTR_STATE,
                DAEMON_ATTR_MCAST_IFN,
                DAEMON_ATTR_SYNC_ID,
                DAEMON_ATTR_MCAST_PORT,
                DAEMON_ATTR_MCAST_TTL,
                DAEMON_ATTR_MCAST_GROUP
            ]
        );
        assert_eq!(fields[1].1, b"eth0\0");
        assert_eq!(fields[3].1[..2], 8849u16.to_ne_bytes());
        assert_eq!(fields[5].1, [239, 0, 0, 9]);
        let answer = message(30, 4, cmd::GET_DAEMON, &attrs);
        let part = parse_daemons(&answer, 4).unwrap();
        assert_eq!(
            part.items,
            [RunningDaemon {
                role: SyncRole::Master,
                interface: "eth0".into(),
                sync_id: 51
            }]
        );
        assert_eq!(parse_daemons(&answer, 5).unwrap().items, []);
        let long = SyncDaemon {
            interface: "a-very-long-interface-name".into(),
            group: Some("ff02::81".parse().unwrap()),
            ..d
        };
        let attrs = start_daemon_attrs(SyncRole::Backup, &long);
        let fields = attrs_of(attrs_of(&attrs)[0].1);
        assert_eq!(fields[1].1, b"a-very-long-int\0");
        assert_eq!(fields.last().unwrap().0, DAEMON_ATTR_MCAST_GROUP6);
        let stop = stop_daemon_attrs(SyncRole::Backup, 51);
        let fields = attrs_of(attrs_of(&stop)[0].1);
        assert_eq!(fields.len(), 2);
        assert_eq!(fields[0].1, 2u32.to_ne_bytes());
        assert_eq!(fields[1].1, 51u32.to_ne_bytes());
    }

    /// `lvs_timeouts`: SET_CONFIG carries the three u32 seconds; a
    /// GET_CONFIG answer is read back, an error answer is the errno, an
    /// answer to another request is not ours.
    #[test]
    fn timeouts_round_trip_through_the_config_messages() {
        let attrs = timeouts_attrs(7200, 121, 301);
        assert_eq!(attrs.len(), 3 * 8);
        let answer = message(30, 9, cmd::GET_CONFIG, &attrs);
        assert_eq!(parse_timeouts(&answer, 9), Ok(Some((7200, 121, 301))));
        assert_eq!(parse_timeouts(&answer, 10), Ok(None));
        // Two of the three: not an answer we can use.
        let short = message(30, 9, cmd::GET_CONFIG, &attrs[..16]);
        assert_eq!(parse_timeouts(&short, 9), Ok(None));
        let mut err = message(2, 9, 0, &(-1i32).to_ne_bytes());
        err[4..6].copy_from_slice(&2u16.to_ne_bytes());
        // NLMSG_ERROR's errno sits where the generic header would.
        err[16..20].copy_from_slice(&(-1i32).to_ne_bytes());
        assert_eq!(parse_timeouts(&err, 9), Err(-1));
        assert_eq!(parse_timeouts(&[0u8; 7], 9), Ok(None));
    }

    fn svc() -> Service {
        Service {
            key: ServiceKey {
                addr: IpAddr::from([198, 51, 100, 250]),
                fwmark: None,
                protocol: 6,
                port: 80,
            },
            scheduler: "rr".into(),
            persistence: None,
            flags: 0,
            dests: vec![Dest {
                addr: IpAddr::from([198, 51, 100, 50]),
                port: 80,
                forward: Forward::Route,
                weight: 1,
                upper: 0,
                lower: 0,
                tunnel: None,
            }],
        }
    }

    /// Bytes written out from the UAPI by hand (x86-64, little endian).
    #[test]
    fn new_service_bytes_as_the_uapi_lays_them_out() {
        let got = message(0x1c, 7, cmd::NEW_SERVICE, &service_attrs(&svc()));
        #[rustfmt::skip]
        let want: Vec<u8> = [
            // nlmsghdr: len 104, type 0x1c, REQUEST|ACK, seq 7, pid 0
            &[104, 0, 0, 0, 0x1c, 0, 5, 0, 7, 0, 0, 0, 0, 0, 0, 0][..],
            // genlmsghdr: NEW_SERVICE, version 1
            &[1, 1, 0, 0],
            // IPVS_CMD_ATTR_SERVICE, nested, 84 bytes
            &[84, 0, 1, 0x80],
            // AF_INET
            &[6, 0, 1, 0, 2, 0, 0, 0],
            // IPPROTO_TCP
            &[6, 0, 2, 0, 6, 0, 0, 0],
            // address: 16 bytes, IPv4 first
            &[20, 0, 3, 0, 198, 51, 100, 250, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            // port 80, network order
            &[6, 0, 4, 0, 0, 80, 0, 0],
            // "rr\0"
            &[7, 0, 6, 0, b'r', b'r', 0, 0],
            // flags 0, mask all
            &[12, 0, 7, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff],
            // timeout 0
            &[8, 0, 8, 0, 0, 0, 0, 0],
            // netmask 255.255.255.255
            &[8, 0, 9, 0, 0xff, 0xff, 0xff, 0xff],
        ]
        .concat();
        assert_eq!(got, want);
    }

    #[test]
    fn new_dest_bytes_as_the_uapi_lays_them_out() {
        let s = svc();
        let got = dest_attrs(&s.key, &s.dests[0]);
        // The service key (nested, 48 bytes), then the destination.
        assert_eq!(&got[..4], &[48, 0, 1, 0x80]);
        #[rustfmt::skip]
        let dest: Vec<u8> = [
            &[72, 0, 2, 0x80][..],
            &[20, 0, 1, 0, 198, 51, 100, 50, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            &[6, 0, 2, 0, 0, 80, 0, 0],
            // IP_VS_CONN_F_DROUTE
            &[8, 0, 3, 0, 3, 0, 0, 0],
            &[8, 0, 4, 0, 1, 0, 0, 0],
            &[8, 0, 5, 0, 0, 0, 0, 0],
            &[8, 0, 6, 0, 0, 0, 0, 0],
            &[6, 0, 11, 0, 2, 0, 0, 0],
        ]
        .concat();
        assert_eq!(&got[48..], &dest[..]);
    }

    #[test]
    fn persistence_sets_the_flag_timeout_and_mask() {
        let mut s = svc();
        s.persistence = Some((300, 24));
        let a = service_attrs(&s);
        // flags attribute: persistent, mask all.
        assert!(a
            .windows(12)
            .any(|w| w == [12, 0, 7, 0, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]));
        assert!(
            a.windows(8).any(|w| w == [8, 0, 8, 0, 44, 1, 0, 0]),
            "timeout 300"
        );
        assert!(
            a.windows(8).any(|w| w == [8, 0, 9, 0, 255, 255, 255, 0]),
            "255.255.255.0"
        );
    }

    #[test]
    fn a_fwmark_service_is_keyed_by_its_mark() {
        let k = ServiceKey {
            addr: IpAddr::from([0, 0, 0, 0]),
            fwmark: Some(7),
            protocol: 0,
            port: 0,
        };
        // Nested 20 bytes: AF_INET, FWMARK 7.
        assert_eq!(
            service_key(&k),
            [20, 0, 1, 0x80, 6, 0, 1, 0, 2, 0, 0, 0, 8, 0, 5, 0, 7, 0, 0, 0]
        );
    }

    #[test]
    fn diffs_touch_only_what_changed() {
        let a = svc();
        let one = std::slice::from_ref(&a);
        assert_eq!(diff(one, one), vec![]);
        let mut b = a.clone();
        b.dests[0].weight = 0;
        let d = diff(one, std::slice::from_ref(&b));
        assert_eq!(
            d.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
            [cmd::SET_DEST]
        );
        let mut c = a.clone();
        c.dests.push(Dest {
            addr: IpAddr::from([198, 51, 100, 51]),
            ..a.dests[0].clone()
        });
        c.dests.remove(0);
        let d = diff(one, &[c]);
        assert_eq!(
            d.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
            [cmd::NEW_DEST, cmd::DEL_DEST]
        );
        let d = diff(&[], one);
        assert_eq!(
            d.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
            [cmd::NEW_SERVICE, cmd::NEW_DEST]
        );
        let d = diff(&[a], &[]);
        assert_eq!(
            d.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
            [cmd::DEL_SERVICE]
        );
    }

    #[test]
    fn family_lookup_and_its_errors() {
        let q = get_family(1);
        assert_eq!(&q[4..6], &0x10u16.to_ne_bytes());
        assert_eq!(&q[6..8], &1u16.to_ne_bytes(), "a request, no ACK asked for");
        assert_eq!(seq_of(&q), 1);
        assert_eq!(&q[16..18], &[3, 1]);
        // An NLMSG_ERROR with -ENOENT: no IPVS in this kernel.
        let mut err = vec![0u8; 36];
        err[4..6].copy_from_slice(&2u16.to_ne_bytes());
        err[16..20].copy_from_slice(&(-2i32).to_ne_bytes());
        assert_eq!(parse_family(&err), Err(-2));
        // A NEWFAMILY answer with CTRL_ATTR_FAMILY_ID 0x1c.
        let mut ok = message(0x10, 1, 1, &[]);
        attr(&mut ok, 2, b"IPVS\0");
        attr(&mut ok, 1, &0x1cu16.to_ne_bytes());
        assert_eq!(parse_family(&ok), Ok(0x1c));
        assert_eq!(parse_family(&[]), Err(-2));
    }

    /// A dump's datagram as the kernel sends it: one message per entry,
    /// then NLMSG_DONE.
    fn dump(seq: u32, cmd: u8, bodies: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for b in bodies {
            out.extend(message(0x1c, seq, cmd, b));
        }
        let mut done = message(3, seq, 0, &[0, 0, 0, 0]);
        done[4..6].copy_from_slice(&3u16.to_ne_bytes());
        out.extend(done);
        out
    }

    #[test]
    fn a_service_dump_reads_back_what_we_write() {
        let mut a = svc();
        a.dests.clear();
        let mut b = a.clone();
        b.key.port = 443;
        b.scheduler = "sh".into();
        b.persistence = Some((300, 24));
        b.flags = SVC_F_SCHED1 | SVC_F_SCHED2;
        let mut c = a.clone();
        c.key = ServiceKey {
            addr: IpAddr::from([0u16; 8]),
            fwmark: Some(9),
            protocol: 0,
            port: 0,
        };
        c.persistence = Some((60, 64));
        let buf = dump(
            5,
            cmd::NEW_SERVICE,
            &[service_attrs(&a), service_attrs(&b), service_attrs(&c)],
        );
        let part = parse_services(&buf, 5).unwrap();
        assert!(part.done);
        assert_eq!(part.unreadable, 0);
        assert_eq!(part.items, vec![a, b, c]);
        // Another request's answer is not ours.
        assert_eq!(parse_services(&buf, 6).unwrap().items, vec![]);
    }

    #[test]
    fn a_dest_dump_reads_back_tunnels_and_thresholds() {
        let s = svc();
        let mut d = s.dests[0].clone();
        d.forward = Forward::Tunnel;
        d.tunnel = Some(Tunnel {
            kind: TunnelKind::Gue,
            port: 6080,
            csum: TunnelCsum::Csum,
        });
        d.upper = 100;
        d.lower = 10;
        let plain = s.dests[0].clone();
        let buf = dump(
            9,
            cmd::NEW_DEST,
            &[dest_attrs(&s.key, &d), dest_attrs(&s.key, &plain)],
        );
        let part = parse_dests(&buf, 9, &s.key).unwrap();
        assert_eq!(part.items, vec![d, plain]);
        assert!(part.done);
    }

    #[test]
    fn a_dump_error_is_the_kernels_errno() {
        // nlmsghdr (NLMSG_ERROR, seq 4), then the errno and the request.
        let mut err = message(2, 4, 0, &[0; 16]);
        err[16..20].copy_from_slice(&(-95i32).to_ne_bytes());
        assert_eq!(parse_services(&err, 4), Err(-95));
    }

    #[test]
    fn the_tunnel_and_flags_reach_the_kernel() {
        let mut s = svc();
        s.flags = SVC_F_ONEPACKET;
        assert!(service_attrs(&s)
            .windows(12)
            .any(|w| w == [12, 0, 7, 0, 4, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]));
        let mut d = s.dests[0].clone();
        d.forward = Forward::Tunnel;
        d.tunnel = Some(Tunnel {
            kind: TunnelKind::Gre,
            port: 0,
            csum: TunnelCsum::Csum,
        });
        let a = dest_attrs(&s.key, &d);
        assert!(
            a.windows(8).any(|w| w == [5, 0, 13, 0, 2, 0, 0, 0]),
            "TUN_TYPE gre"
        );
        assert!(
            a.windows(8).any(|w| w == [6, 0, 15, 0, 1, 0, 0, 0]),
            "TUN_FLAGS csum"
        );
        // Not a tunnel: no tunnel attributes.
        assert!(!dest_attrs(&s.key, &s.dests[0])
            .windows(4)
            .any(|w| w == [5, 0, 13, 0]));
    }

    proptest::proptest! {
        /// Whatever the kernel (or anyone on the socket) sends, reading
        /// it never panics.
        #[test]
        fn dump_parsing_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600), seq in 0u32..3) {
            let _ = parse_services(&bytes, seq);
            let _ = parse_dests(&bytes, seq, &svc().key);
        }
    }
}
