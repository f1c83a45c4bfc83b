//! The service model every data plane carries: what the daemon wants
//! (virtual servers, their real servers and options), independent of the
//! plane that carries it. Each plane reads the parts it acts on and
//! ignores the others (`ipvs` options on nftables, `proxy` options in the
//! kernel's planes).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::sched::Algo;

/// What carries a virtual server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Carrier {
    Ipvs,
    Nftables,
    Proxy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub(crate) fn word(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Nat,
    Dr,
    /// IPVS only: nftables has no encapsulating action (no IP-in-IP, GUE
    /// or GRE), so the daemon keeps TUN services off this plane.
    Tun(crate::ipvs::Tunnel),
}

/// What only IPVS acts on; the nftables plane and the proxy ignore it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IpvsOptions {
    /// `ops` and the scheduler flags (`lb::ipvs::SVC_F_*`).
    pub flags: u32,
    /// Per real server (and the sorry server): its own `lvs_method` and
    /// `uthreshold` / `lthreshold`.
    pub reals: Vec<RealOptions>,
}

/// One real server's IPVS options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RealOptions {
    pub addr: IpAddr,
    pub port: u16,
    /// `lvs_method` (`None`: the virtual server's `lb_kind`).
    pub kind: Option<Kind>,
    pub upper: u32,
    pub lower: u32,
}

/// A real server the data plane may send to: healthy (or inhibited, at
/// weight 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Real {
    pub addr: IpAddr,
    pub port: u16,
    pub weight: u32,
    /// DR: its MAC, from the neighbour table (`None`: not known yet, left
    /// out until it is).
    pub mac: Option<[u8; 6]>,
}

/// One virtual server, as the data plane carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// The VIP (for a `fwmark` service: the unspecified address of the
    /// real servers' family).
    pub vip: IpAddr,
    /// `virtual_server fwmark N`: packets marked N (NAT only on nftables:
    /// DR's ingress hook runs before any mark is set).
    pub fwmark: Option<u32>,
    pub port: u16,
    pub proto: Proto,
    pub kind: Kind,
    pub algo: Algo,
    /// DR: the interface the VIP's traffic arrives on and leaves by, and
    /// its MAC (the forwarded frames' source, as IPVS sends them: frames
    /// leaving with the client's MAC would teach the switch that the
    /// client sits behind the director).
    pub device: String,
    pub device_mac: [u8; 6],
    pub reals: Vec<Real>,
    /// `persistence_timeout` and `persistence_granularity` (a prefix
    /// length): a client (its network) keeps its server for that long
    /// after its last packet.
    pub persistence: Option<(Duration, u8)>,
    /// `sorry_server`, used when quorum is lost (then the only real).
    pub sorry: bool,
    /// NAT: the client's address rewritten to the director's (`lb_snat`).
    pub snat: bool,
    pub ipvs: IpvsOptions,
    pub proxy: ProxyOptions,
}

/// Everything the data plane should do.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Desired {
    pub services: Vec<Service>,
    /// What applies to the whole IPVS table (IPVS only).
    pub table: Table,
}

/// What the proxy needs of a virtual server beyond its servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyOptions {
    /// Each real server's `max_fails` and `fail_timeout`.
    pub passive: Vec<(SocketAddr, u32, Duration)>,
    /// `connect_timeout` (5 s unless given).
    pub connect_timeout: Duration,
    pub proxy_protocol: Option<crate::proxy_protocol::Version>,
    /// `max_conns` (0: no cap but the proxy's descriptor budget).
    pub max_conns: u32,
    /// `proxy_timeout` (`None`: the default, 10 min for TCP, 30 s for a
    /// UDP session; zero: none).
    pub proxy_timeout: Option<Duration>,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        Self {
            passive: Vec::new(),
            connect_timeout: Duration::from_secs(5),
            proxy_protocol: None,
            max_conns: 0,
            proxy_timeout: None,
        }
    }
}

/// `lvs_flush` and `lvs_flush_on_stop`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flush {
    /// `lvs_flush`: the whole table is flushed before the plane's first
    /// change (the daemon leaves it out of a reload's).
    pub at_start: bool,
    /// `lvs_flush_on_stop` (no argument): the whole table is flushed
    /// when we stop; otherwise (also with `VS`) we remove only ours.
    pub all_on_stop: bool,
}

/// `lvs_timeouts`: IPVS's connection timeouts in seconds (`None`: the
/// kernel's own, as it was before we changed any).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp: Option<u32>,
    pub tcp_fin: Option<u32>,
    pub udp: Option<u32>,
}

impl Timeouts {
    /// None given.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// What applies to the whole IPVS table rather than to one service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Table {
    pub flush: Flush,
    pub timeouts: Timeouts,
}
