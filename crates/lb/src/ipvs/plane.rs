//! The IPVS data plane: its generic netlink socket to the kernel's IPVS
//! (the messages are built in the parent module), and the plane that
//! turns the desired state into the commands that make the kernel's
//! table match it. Kernels without IPVS (`/proc/net/ip_vs` absent) refuse
//! to open it, with the reason.

use netlink_sys::{protocols::NETLINK_GENERIC, Socket, SocketAddr};

use crate::model::{Desired, Flush, Kind, Proto, Real, Service as Wanted, Timeouts};
use crate::Error;

/// A generic netlink socket bound to the IPVS family.
#[derive(Debug)]
pub struct Ipvs {
    socket: Socket,
    family: u16,
    seq: u32,
    buf: Vec<u8>,
}

/// How long an answer of the kernel may take: one that never comes (or a
/// dump never finished) fails the change, which the next apply retries,
/// instead of stopping the data plane's thread for good.
pub const REPLY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A receive error as the plane reports it (a timeout says so).
fn recv_error(e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            Error::IpvsSilent(REPLY_TIMEOUT)
        }
        _ => Error::Ipvs(e),
    }
}

/// Why IPVS cannot be used here, if it cannot.
pub fn unavailable() -> Option<Error> {
    (!std::path::Path::new("/proc/net/ip_vs").exists()).then_some(Error::NoIpvs)
}

impl Ipvs {
    /// Opens the socket and looks the IPVS family up.
    pub fn open() -> Result<Self, Error> {
        if let Some(why) = unavailable() {
            return Err(why);
        }
        let mut socket = Socket::new(NETLINK_GENERIC).map_err(Error::Netlink)?;
        socket.bind_auto().map_err(Error::Netlink)?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(Error::Netlink)?;
        socket2::SockRef::from(&socket)
            .set_read_timeout(Some(REPLY_TIMEOUT))
            .map_err(Error::Netlink)?;
        let mut me = Self {
            socket,
            family: 0,
            seq: 1,
            buf: Vec::with_capacity(16 * 1024),
        };
        me.socket
            .send(&super::get_family(me.seq), 0)
            .map_err(Error::Netlink)?;
        me.buf.clear();
        me.socket.recv(&mut me.buf, 0).map_err(Error::Netlink)?;
        me.family = super::parse_family(&me.buf).map_err(Error::NoIpvsFamily)?;
        Ok(me)
    }

    /// Sends one command and waits for its acknowledgement.
    pub fn send(&mut self, cmd: u8, attrs: &[u8]) -> Result<(), Error> {
        self.seq = self.seq.wrapping_add(1);
        let msg = super::message(self.family, self.seq, cmd, attrs);
        self.socket.send(&msg, 0).map_err(Error::Ipvs)?;
        // The answer to this command (anything older queued is skipped).
        loop {
            self.buf.clear();
            self.socket.recv(&mut self.buf, 0).map_err(recv_error)?;
            if let Some(answer) = ack(&self.buf, self.seq) {
                return answer.map_err(|why| match why {
                    Some(why) => Error::IpvsRefused { cmd, why },
                    None => Error::IpvsNoAck(cmd),
                });
            }
        }
    }
}

impl Ipvs {
    /// One dump (`cmd` with `attrs`), each datagram read by `parse` until
    /// the kernel says it is done.
    fn dump<T>(
        &mut self,
        cmd: u8,
        attrs: &[u8],
        parse: impl Fn(&[u8], u32) -> Result<super::DumpPart<T>, i32>,
    ) -> Result<(Vec<T>, usize), Error> {
        self.seq = self.seq.wrapping_add(1);
        let msg = super::dump_request(self.family, self.seq, cmd, attrs);
        self.socket.send(&msg, 0).map_err(Error::Ipvs)?;
        let mut buf = Vec::with_capacity(64 * 1024);
        let (mut items, mut unreadable) = (Vec::new(), 0);
        loop {
            buf.clear();
            self.socket.recv(&mut buf, 0).map_err(recv_error)?;
            let part = parse(&buf, self.seq).map_err(|e| {
                Error::IpvsList(std::io::Error::from_raw_os_error(e.saturating_neg()))
            })?;
            items.extend(part.items);
            unreadable += part.unreadable;
            if part.done {
                return Ok((items, unreadable));
            }
        }
    }

    /// The kernel's connection timeouts (tcp, tcpfin, udp), in seconds.
    pub fn timeouts(&mut self) -> Result<(u32, u32, u32), Error> {
        self.seq = self.seq.wrapping_add(1);
        let msg = super::message(self.family, self.seq, super::cmd::GET_CONFIG, &[]);
        self.socket.send(&msg, 0).map_err(Error::Ipvs)?;
        let mut found = None;
        loop {
            self.buf.clear();
            self.socket.recv(&mut self.buf, 0).map_err(recv_error)?;
            let cmd = super::cmd::GET_CONFIG;
            match super::parse_timeouts(&self.buf, self.seq) {
                Ok(Some(t)) => found = Some(t),
                Ok(None) => {}
                Err(e) => {
                    return Err(Error::IpvsRefused {
                        cmd,
                        why: std::io::Error::from_raw_os_error(e.saturating_neg()),
                    })
                }
            }
            // The acknowledgement (an NLMSG_ERROR of 0) ends the answer;
            // the answer itself is another message of the same sequence.
            let is_ack = self.buf.get(4..6) == Some(&2u16.to_ne_bytes()[..]);
            if !is_ack {
                continue;
            }
            if let Some(answer) = ack(&self.buf, self.seq) {
                answer.map_err(|why| match why {
                    Some(why) => Error::IpvsRefused { cmd, why },
                    None => Error::IpvsNoAck(cmd),
                })?;
                return found.ok_or(Error::IpvsNoAck(cmd));
            }
        }
    }

    /// Starts IPVS's sync daemon `d` as `role`.
    pub fn start_daemon(
        &mut self,
        role: super::SyncRole,
        d: &super::SyncDaemon,
    ) -> Result<(), Error> {
        self.send(super::cmd::NEW_DAEMON, &super::start_daemon_attrs(role, d))
    }

    /// Stops the sync daemon of `role`.
    pub fn stop_daemon(&mut self, role: super::SyncRole, sync_id: u8) -> Result<(), Error> {
        self.send(
            super::cmd::DEL_DAEMON,
            &super::stop_daemon_attrs(role, sync_id),
        )
    }

    /// The sync daemons the kernel runs (in this network namespace).
    pub fn daemons(&mut self) -> Result<Vec<super::RunningDaemon>, Error> {
        Ok(self
            .dump(super::cmd::GET_DAEMON, &[], super::parse_daemons)?
            .0)
    }

    /// The kernel's services whose key `wanted` accepts, with their
    /// destinations (and how many entries could not be read). Other
    /// services' destinations are not asked for.
    pub fn table(
        &mut self,
        wanted: impl Fn(&super::ServiceKey) -> bool,
    ) -> Result<(Vec<super::Service>, usize), Error> {
        let (services, mut unreadable) =
            self.dump(super::cmd::GET_SERVICE, &[], super::parse_services)?;
        let mut out = Vec::new();
        for mut s in services.into_iter().filter(|s| wanted(&s.key)) {
            let key = s.key.clone();
            let (dests, bad) =
                self.dump(super::cmd::GET_DEST, &super::service_key(&key), |b, q| {
                    super::parse_dests(b, q, &key)
                })?;
            s.dests = dests;
            unreadable += bad;
            out.push(s);
        }
        Ok((out, unreadable))
    }
}

/// What the kernel said to request `seq` in `buf`: `None` if `buf`
/// answers another request; `Ok` for the acknowledgement (NLMSG_ERROR with
/// 0); else the error it carries, or that it is no acknowledgement.
/// (`Err(None)`: no acknowledgement.)
pub fn ack(buf: &[u8], seq: u32) -> Option<Result<(), Option<std::io::Error>>> {
    if super::seq_of(buf) != seq {
        return None;
    }
    Some(match buf.get(16..20) {
        Some(b) if buf.get(4..6) == Some(&2u16.to_ne_bytes()) => {
            let e = i32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
            if e == 0 {
                Ok(())
            } else {
                Err(Some(std::io::Error::from_raw_os_error(e.saturating_neg())))
            }
        }
        _ => Err(None),
    })
}

/// The IPVS data plane: the kernel's IPVS table, changed by the diff of
/// what we last applied and what is wanted.
///
/// When it does not know what the kernel holds (at start, and after a
/// change that failed half way) it reads the kernel's services of our
/// keys first. At start a service of ours already there — left by an
/// earlier run, or made by hand — is adopted: its real servers kept where
/// they match, changed or removed where they do not, each removal logged.
/// Services the configuration does not name are never touched (unless
/// `lvs_flush`).
#[derive(Debug)]
pub struct Plane {
    socket: Ipvs,
    applied: Option<Vec<super::Service>>,
    /// `lvs_flush_on_stop`, as the last desired state said.
    flush: Flush,
    /// The first read of the kernel is done (adoption is logged once,
    /// `lvs_flush` done at most once).
    looked: bool,
    /// `lvs_timeouts` as last set, and the kernel's own from before we
    /// first changed them (put back when the configuration drops them).
    timeouts: Timeouts,
    original: Option<(u32, u32, u32)>,
}

/// At most this many removed real servers are named per service.
const NAMED: usize = 10;

impl Plane {
    pub fn open() -> Result<Self, Error> {
        Ok(Self {
            socket: Ipvs::open()?,
            applied: None,
            flush: Flush::default(),
            looked: false,
            timeouts: Timeouts::default(),
            original: None,
        })
    }

    /// Sets `lvs_timeouts` as keepalived does: all three, those not given
    /// at the kernel's values from before our first change; none given
    /// after some were: the kernel's own back (as at stop).
    fn set_timeouts(&mut self, want: Timeouts) -> Result<(), Error> {
        if want.is_empty() && self.original.is_none() {
            self.timeouts = want;
            return Ok(());
        }
        let original = if let Some(o) = self.original {
            o
        } else {
            let o = self.socket.timeouts()?;
            self.original = Some(o);
            o
        };
        let (tcp, fin, udp) = (
            want.tcp.unwrap_or(original.0),
            want.tcp_fin.unwrap_or(original.1),
            want.udp.unwrap_or(original.2),
        );
        self.socket.send(
            super::cmd::SET_CONFIG,
            &super::timeouts_attrs(tcp, fin, udp),
        )?;
        tracing::info!("lvs_timeouts: tcp {tcp} tcpfin {fin} udp {udp}");
        self.timeouts = want;
        Ok(())
    }

    /// What the kernel holds of `want`: after `lvs_flush` (the first
    /// time only) nothing; else the kernel's services of our keys, the
    /// first time logging what we adopt and what we will remove.
    fn read_kernel(&mut self, want: &[super::Service]) -> Result<Vec<super::Service>, Error> {
        if self.flush.at_start && !self.looked {
            self.looked = true;
            self.socket.send(super::cmd::FLUSH, &[])?;
            tracing::info!("lvs_flush: IPVS table flushed");
            return Ok(Vec::new());
        }
        let (old, unreadable) = self.socket.table(|k| want.iter().any(|w| w.key == *k))?;
        if self.looked {
            return Ok(old);
        }
        self.looked = true;
        if unreadable > 0 {
            tracing::warn!(
                "IPVS: {unreadable} entr(ies) of the kernel's table could not be read; left alone"
            );
        }
        for k in &old {
            let Some(w) = want.iter().find(|w| w.key == k.key) else {
                continue;
            };
            let name = key_name(&k.key);
            let foreign: Vec<String> = k
                .dests
                .iter()
                .filter(|d| !w.dests.iter().any(|x| x.addr == d.addr && x.port == d.port))
                .map(|d| dest_name(d.addr, d.port))
                .collect();
            tracing::info!(
                "IPVS: virtual server {name} is already in the kernel (an earlier run, or made by hand): adopted, with {} of its {} real server(s) kept",
                k.dests.len() - foreign.len(),
                k.dests.len()
            );
            for f in foreign.iter().take(NAMED) {
                tracing::warn!(
                    "IPVS: virtual server {name}: removing real server {f}, which this configuration does not name"
                );
            }
            if foreign.len() > NAMED {
                tracing::warn!(
                    "IPVS: virtual server {name}: removing {} more real servers this configuration does not name",
                    foreign.len() - NAMED
                );
            }
        }
        Ok(old)
    }
}

fn key_name(k: &super::ServiceKey) -> String {
    match k.fwmark {
        Some(m) => format!("fwmark {m}"),
        None => format!(
            "{} {}",
            if k.protocol == 17 { "UDP" } else { "TCP" },
            dest_name(k.addr, k.port)
        ),
    }
}

fn dest_name(addr: std::net::IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(addr, port).to_string()
}

/// IPVS's form of a desired service; each real server takes its own
/// `lvs_method` and thresholds. Destination ports as keepalived writes
/// them: NAT rewrites to the real server's port; DR and TUN cannot rewrite
/// a port, so theirs is the service's (0 for a fwmark service: packets
/// keep their own).
pub fn service(s: &Wanted) -> super::Service {
    let (key, fwmark_service) = match s.fwmark {
        Some(m) => (
            super::ServiceKey {
                addr: s.vip,
                fwmark: Some(m),
                protocol: 0,
                port: 0,
            },
            true,
        ),
        None => (
            super::ServiceKey {
                addr: s.vip,
                fwmark: None,
                protocol: match s.proto {
                    Proto::Tcp => 6,
                    Proto::Udp => 17,
                },
                port: s.port,
            },
            false,
        ),
    };
    // One destination per address and port (DR and TUN servers on one
    // address collapse: specs() said so).
    let mut seen = std::collections::HashSet::new();
    let dests: Vec<super::Dest> = s
        .reals
        .iter()
        .map(|r| dest(s, r, fwmark_service))
        .filter(|d| seen.insert((d.addr, d.port)))
        .collect();
    super::Service {
        key,
        scheduler: s.algo.name().to_owned(),
        persistence: s
            .persistence
            .map(|(t, p)| (u32::try_from(t.as_secs()).unwrap_or(u32::MAX), p)),
        flags: s.ipvs.flags,
        dests,
    }
}

/// One real server as an IPVS destination: its own method and
/// thresholds, and keepalived's port (see [`service`]).
fn dest(s: &Wanted, r: &Real, fwmark_service: bool) -> super::Dest {
    let own = s
        .ipvs
        .reals
        .iter()
        .find(|o| o.addr == r.addr && (o.port == r.port || o.port == 0 || fwmark_service));
    let (forward, tunnel) = match own.and_then(|o| o.kind).unwrap_or(s.kind) {
        Kind::Dr => (super::Forward::Route, None),
        Kind::Nat => (super::Forward::Masq, None),
        Kind::Tun(t) => (super::Forward::Tunnel, Some(t)),
    };
    let port = match forward {
        super::Forward::Masq => r.port,
        _ if fwmark_service => 0,
        _ => s.port,
    };
    super::Dest {
        addr: r.addr,
        port,
        forward,
        weight: r.weight,
        upper: own.map_or(0, |o| o.upper),
        lower: own.map_or(0, |o| o.lower),
        tunnel,
    }
}

impl crate::DataPlane for Plane {
    fn name(&self) -> &'static str {
        "IPVS"
    }

    fn apply(&mut self, desired: &Desired) -> Result<bool, Error> {
        self.flush = desired.table.flush;
        let timeouts_changed = desired.table.timeouts != self.timeouts;
        if timeouts_changed {
            if let Err(e) = self.set_timeouts(desired.table.timeouts) {
                // As keepalived ("Failed to set ipvs timeouts"): said, and
                // the services are carried all the same; tried again at
                // the next change of the keyword.
                tracing::error!("lvs_timeouts: {e}");
                self.timeouts = desired.table.timeouts;
            }
        }
        let want: Vec<super::Service> = desired.services.iter().map(service).collect();
        let old = match &self.applied {
            Some(old) if *old == want => return Ok(timeouts_changed),
            Some(old) => old.clone(),
            None => self.read_kernel(&want)?,
        };
        for (cmd, attrs) in super::diff(&old, &want) {
            if let Err(e) = self.socket.send(cmd, &attrs) {
                // Half applied: the next call reads the kernel again.
                self.applied = None;
                return Err(e);
            }
        }
        self.applied = Some(want);
        Ok(true)
    }

    fn clear(&mut self) -> Result<(), Error> {
        // As keepalived at stop: the kernel's own timeouts back.
        if !self.timeouts.is_empty() {
            if let Err(e) = self.set_timeouts(Timeouts::default()) {
                tracing::warn!("lvs_timeouts: putting the kernel's own back: {e}");
            }
        }
        if self.flush.all_on_stop {
            self.applied = None;
            self.socket.send(super::cmd::FLUSH, &[])?;
            tracing::info!("lvs_flush_on_stop: IPVS table flushed");
            return Ok(());
        }
        if let Some(old) = self.applied.take() {
            for (cmd, attrs) in super::diff(&old, &[]) {
                self.socket.send(cmd, &attrs)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Forward, Tunnel, TunnelCsum, TunnelKind, SVC_F_SCHED1};
    use super::*;
    use crate::model::{IpvsOptions, ProxyOptions, RealOptions};

    fn desired(kind: Kind, fwmark: Option<u32>) -> Wanted {
        let real = |last: u8| Real {
            addr: std::net::IpAddr::from([198, 51, 100, last]),
            port: 8080,
            weight: 1,
            mac: None,
        };
        Wanted {
            vip: std::net::IpAddr::from([198, 51, 100, 250]),
            fwmark,
            port: 80,
            proto: Proto::Tcp,
            kind,
            algo: crate::sched::Algo::Rr,
            device: String::new(),
            device_mac: [0; 6],
            reals: vec![real(50), real(51)],
            persistence: None,
            sorry: false,
            snat: false,
            ipvs: IpvsOptions::default(),
            proxy: ProxyOptions::default(),
        }
    }

    /// keepalived's ports: NAT the real server's, DR and TUN the
    /// service's, fwmark with DR 0 (the item 3: we wrote 80).
    #[test]
    fn destination_ports_are_keepalived_s() {
        let ports = |s: &super::super::Service| s.dests.iter().map(|d| d.port).collect::<Vec<_>>();
        assert_eq!(ports(&service(&desired(Kind::Nat, None))), [8080, 8080]);
        assert_eq!(ports(&service(&desired(Kind::Dr, None))), [80, 80]);
        assert_eq!(ports(&service(&desired(Kind::Dr, Some(1)))), [0, 0]);
        assert_eq!(ports(&service(&desired(Kind::Nat, Some(2)))), [8080, 8080]);
        let tun = service(&desired(Kind::Tun(Tunnel::IPIP), Some(3)));
        assert_eq!(ports(&tun), [0, 0]);
        // A fwmark service is keyed by its mark alone.
        assert_eq!((tun.key.protocol, tun.key.port), (0, 0));
    }

    #[test]
    fn each_real_server_takes_its_own_method_and_thresholds() {
        let gue = Tunnel {
            kind: TunnelKind::Gue,
            port: 6080,
            csum: TunnelCsum::Csum,
        };
        let mut d = desired(Kind::Tun(Tunnel::IPIP), None);
        d.ipvs = IpvsOptions {
            flags: SVC_F_SCHED1,
            reals: vec![RealOptions {
                addr: std::net::IpAddr::from([198, 51, 100, 51]),
                port: 0,
                kind: Some(Kind::Tun(gue)),
                upper: 100,
                lower: 10,
            }],
        };
        let s = service(&d);
        assert_eq!(s.flags, SVC_F_SCHED1);
        assert_eq!(
            (s.dests[0].forward, s.dests[0].tunnel, s.dests[0].upper),
            (Forward::Tunnel, Some(Tunnel::IPIP), 0)
        );
        assert_eq!(
            (
                s.dests[1].forward,
                s.dests[1].tunnel,
                s.dests[1].upper,
                s.dests[1].lower
            ),
            (Forward::Tunnel, Some(gue), 100, 10)
        );
        // A NAT real server under a TUN service keeps its own port.
        d.ipvs.reals[0].kind = Some(Kind::Nat);
        let s = service(&d);
        assert_eq!((s.dests[1].forward, s.dests[1].port), (Forward::Masq, 8080));
        assert_eq!(s.dests[0].port, 80);
    }
}
