//! The BFD driver: `bfd_instance` sessions on UDP 3784 (single hop, RFC
//! 5881) and 4784 (multihop, RFC 5883), sent with TTL 255 and checked on
//! receipt (GTSM). The `bfd` crate decides; this thread owns the sockets
//! and the clock, and tells the VRRP thread (`track_bfd`) and the
//! checkers (`BFD_CHECK`) when a session goes Up or Down.
//!
//! It is a thread of its own that does nothing else, so no advert, script
//! or checker can delay a BFD packet: it sleeps in `ppoll` until the next
//! send or detection deadline (microsecond timeouts) or a packet.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bfd::{Output, Session, State};
use nix::sys::socket::{
    recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, SockaddrStorage,
};
use socket2::{Domain, Protocol, Socket, Type};

/// RFC 5881 / 5883 ports.
pub const PORT: u16 = 3784;
pub const MULTIHOP_PORT: u16 = 4784;
/// The source ports RFC 5881 §4 asks for.
const SRC_PORTS: std::ops::RangeInclusive<u16> = 49152..=65535;
/// How often `status` is refreshed while nothing changes.
const PUBLISH: Duration = Duration::from_secs(1);
/// The AdminDown packets a stopping session sends (the peer then goes
/// Down with diag 7 at once, not after its detection time).
const FAREWELLS: usize = 3;
/// How late a timer may fire so that close ones share a wake-up: 0.3 ms,
/// 3% of a 10 ms interval (a packet may always come late; a detection
/// 0.3 ms late is within the 2 ms goal).
const SLACK_US: u64 = 300;
/// How early a session's periodic send may go when the thread is awake
/// for another (never before 75% of its interval since the last one).
const EARLY_US: u64 = 2_000;
/// The receive buffer asked for (forced, as root).
const RCVBUF: usize = 4 << 20;
/// Packets read per socket per wake-up before timers get their turn.
const RECV_BURST: usize = 256;

/// One `bfd_instance`, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub name: String,
    pub neighbor: IpAddr,
    pub source: Option<IpAddr>,
    pub timers: bfd::Config,
    pub ttl: u8,
    /// How far below `ttl` a received packet's TTL may be.
    pub max_hops: u8,
    pub multihop: bool,
    /// The default weight of a `track_bfd` naming it.
    pub weight: i64,
    pub reverse: bool,
    /// Its events go to VRRP, to the checkers.
    pub to_vrrp: bool,
    pub to_checker: bool,
}

impl Spec {
    fn port(&self) -> u16 {
        if self.multihop {
            MULTIHOP_PORT
        } else {
            PORT
        }
    }
}

/// Every usable `bfd_instance`, with keepalived's rules: one without a
/// neighbour, with a source of the other family, or with the neighbour
/// (and source) of an earlier one is disabled with an error; a `max_hops`
/// above the TTL is cut to it.
pub fn specs(config: &kaconf::Config) -> Vec<Spec> {
    let mut out: Vec<Spec> = Vec::new();
    for b in &config.bfd_instances {
        let body = &b.body;
        let Some(neighbor) = body.neighbor_ip else {
            tracing::error!(
                "BFD instance {} has no neighbor_ip; disabling instance",
                b.name
            );
            continue;
        };
        if body
            .source_ip
            .is_some_and(|s| s.is_ipv4() != neighbor.is_ipv4())
        {
            tracing::error!(
                "BFD instance {}: source_ip and neighbor_ip are not of the same family; disabling instance",
                b.name
            );
            continue;
        }
        let multihop = body.multihop.is_some_and(|s| s.0);
        if out
            .iter()
            .any(|o| o.neighbor == neighbor && o.source == body.source_ip && o.multihop == multihop)
        {
            tracing::error!(
                "BFD instance {} has the neighbor_ip {neighbor} of another; ignoring instance",
                b.name
            );
            continue;
        }
        if out.iter().any(|o| o.name == b.name) {
            tracing::error!(
                "BFD instance {} is defined twice; ignoring the second",
                b.name
            );
            continue;
        }
        let ttl = body
            .ttl
            .map_or(if neighbor.is_ipv4() { 255 } else { 64 }, |t| {
                u8::try_from(t.get()).unwrap_or(255)
            });
        let max_hops = match body.max_hops.map(kaconf::value::Int::get) {
            // -1 (and 255): no hop check at all.
            Some(-1) => 255,
            Some(m) => u8::try_from(m).unwrap_or(255),
            None => 0,
        };
        let max_hops = if max_hops > ttl && max_hops != 255 {
            tracing::error!(
                "BFD instance {}: max_hops exceeds ttl/hoplimit; using {ttl}",
                b.name
            );
            ttl
        } else {
            max_hops
        };
        let (specific_vrrp, specific_checker) = (body.vrrp, body.checker);
        let any = !(specific_vrrp || specific_checker);
        let w = body.weight.unwrap_or(kaconf::model::TrackWeight {
            weight: 0,
            reverse: false,
        });
        out.push(Spec {
            name: b.name.clone(),
            neighbor,
            source: body.source_ip,
            timers: timers(&b.name, body),
            ttl,
            max_hops,
            multihop,
            weight: w.weight,
            reverse: w.reverse,
            to_vrrp: any || specific_vrrp,
            to_checker: any || specific_checker,
        });
    }
    out
}

/// A `bfd_instance`'s timers, in microseconds, with keepalived's
/// defaults; an `idle_tx` below 1 s and a `min_tx`/`min_rx` below 1 ms
/// are raised with an error.
fn timers(name: &str, body: &kaconf::model::BfdInstance) -> bfd::Config {
    let defaults = bfd::Config::default();
    let idle = body.idle_tx.map_or(defaults.idle_tx, |m| m.0);
    let idle = if idle < bfd::session::SLOW_TX_US {
        tracing::error!(
            "BFD instance {}: idle_tx below 1000 ms; using 1000 (RFC 5880 6.8.3)",
            name
        );
        bfd::session::SLOW_TX_US
    } else {
        idle
    };
    let positive = |v: Option<kaconf::value::Millis>, what: &str, d: u32| match v {
        Some(m) if m.0 >= 1000 => m.0,
        Some(m) => {
            tracing::error!(
                "BFD instance {}: {what} {} ms is below 1 ms; using {} ms",
                name,
                m.to_text(),
                d / 1000
            );
            d
        }
        None => d,
    };
    bfd::Config {
        min_tx: positive(body.min_tx, "min_tx", defaults.min_tx),
        min_rx: positive(body.min_rx, "min_rx", defaults.min_rx),
        idle_tx: idle,
        multiplier: body
            .multiplier
            .map_or(defaults.multiplier, |m| u8::try_from(m.get()).unwrap_or(5)),
        passive: body.passive,
    }
}

/// What the sessions say, for the VRRP thread and the checkers: each
/// session's name and whether it is Up (`None` while it has not yet come
/// Up nor been given up on).
#[derive(Default, Debug)]
pub struct Hub {
    states: Mutex<HashMap<String, Option<bool>>>,
    generation: AtomicU64,
    waker: Mutex<Option<std::os::unix::net::UnixStream>>,
}

impl Hub {
    /// The count of changes so far (a reader compares it with its own).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether `name` is Up (`false` for an unknown or undecided one).
    pub fn up(&self, name: &str) -> bool {
        self.states
            .lock()
            .ok()
            .and_then(|s| s.get(name).copied().flatten())
            .unwrap_or(false)
    }

    /// The VRRP thread's wake-up: written to on every change.
    pub fn set_waker(&self, w: std::os::unix::net::UnixStream) {
        if let Ok(mut g) = self.waker.lock() {
            *g = Some(w);
        }
    }

    fn set(&self, name: &str, up: Option<bool>, to_checker: bool) {
        if let Ok(mut s) = self.states.lock() {
            s.insert(name.to_owned(), up);
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.wake();
        if to_checker {
            check::bfd::publish(name, up);
        }
    }

    fn forget(&self, name: &str) {
        if let Ok(mut s) = self.states.lock() {
            s.remove(name);
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.wake();
        check::bfd::publish(name, None);
    }

    /// One byte to the VRRP thread, never blocking: if its socket is full
    /// it has a wake-up pending already (the BFD thread must not wait on
    /// the VRRP thread).
    fn wake(&self) {
        if let Ok(g) = self.waker.lock() {
            if let Some(w) = g.as_ref() {
                let _ = nix::sys::socket::send(
                    std::os::fd::AsRawFd::as_raw_fd(w),
                    &[1],
                    MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
                );
            }
        }
    }
}

/// One session and its socket.
struct Live {
    spec: Spec,
    session: Session,
    socket: UdpSocket,
    dest: SocketAddr,
    /// When it last changed state (for `status`), and to what.
    since: std::time::SystemTime,
    /// Not yet Up since start: given up on (published Down) after the
    /// idle detection time.
    undecided_until: Option<u64>,
    send_errors: u64,
    last_error: Option<String>,
    bad_ttl: u64,
}

/// The receive sockets: per port and family.
struct Listeners {
    sockets: Vec<(UdpSocket, u16)>,
}

fn listener(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    // No SO_REUSEADDR: with it another local user could bind the same
    // port and be handed the peers' packets. A reload keeps the sockets.
    s.bind(&addr.into())?;
    s.set_nonblocking(true)?;
    // Hundreds of sessions at 10 ms are tens of thousands of packets a
    // second on this one socket: room for a stall of 100 ms or more.
    if setsockopt(&s, sockopt::RcvBufForce, &RCVBUF).is_err() {
        let _ = s.set_recv_buffer_size(RCVBUF);
    }
    let u: UdpSocket = s.into();
    if addr.is_ipv4() {
        setsockopt(&u, sockopt::Ipv4RecvTtl, &true)?;
    } else {
        setsockopt(&u, sockopt::Ipv6RecvHopLimit, &true)?;
    }
    Ok(u)
}

impl Listeners {
    /// The addresses the sessions need a socket on.
    fn wanted(specs: &[Spec]) -> Vec<SocketAddr> {
        let mut want: Vec<SocketAddr> = specs
            .iter()
            .map(|s| {
                let ip = if s.neighbor.is_ipv4() {
                    IpAddr::V4(Ipv4Addr::UNSPECIFIED)
                } else {
                    IpAddr::V6(Ipv6Addr::UNSPECIFIED)
                };
                SocketAddr::new(ip, s.port())
            })
            .collect();
        want.sort_unstable();
        want.dedup();
        want
    }

    /// Opens the sockets in `want` not open yet and closes those no
    /// longer wanted; one open already is kept as it is.
    fn ensure(&mut self, want: &[SocketAddr]) -> std::io::Result<()> {
        self.sockets
            .retain(|(s, _)| s.local_addr().is_ok_and(|a| want.contains(&a)));
        for addr in want {
            if self
                .sockets
                .iter()
                .any(|(s, _)| s.local_addr().is_ok_and(|a| a == *addr))
            {
                continue;
            }
            let s = listener(*addr).map_err(|e| {
                std::io::Error::new(e.kind(), format!("BFD port {}: {e}", addr.port()))
            })?;
            let port = s.local_addr().map_or(addr.port(), |a| a.port());
            self.sockets.push((s, port));
        }
        Ok(())
    }
}

/// A session's sending socket: bound to its source (if set) and a port in
/// 49152–65535, with its TTL.
fn sender(spec: &Spec, seed: u64) -> std::io::Result<UdpSocket> {
    let domain = if spec.neighbor.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    let ip = spec.source.unwrap_or(if spec.neighbor.is_ipv4() {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    });
    let span = u64::from(SRC_PORTS.end() - SRC_PORTS.start()) + 1;
    let first = u16::try_from(seed % span).unwrap_or(0);
    let mut bound = false;
    for i in 0..64u16 {
        let port = SRC_PORTS.start() + (first.wrapping_add(i.wrapping_mul(997)) % 16384);
        if s.bind(&SocketAddr::new(ip, port).into()).is_ok() {
            bound = true;
            break;
        }
    }
    if !bound {
        s.bind(&SocketAddr::new(ip, 0).into())?;
    }
    if spec.neighbor.is_ipv4() {
        s.set_ttl_v4(u32::from(spec.ttl))?;
    } else {
        s.set_unicast_hops_v6(u32::from(spec.ttl))?;
    }
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// A random-enough seed per session (discriminators and jitter): the
/// clock and the name; nothing secret rests on it.
fn seed(name: &str, salt: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write(name.as_bytes());
    h.write_u64(salt);
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// GTSM (RFC 5881 §5, RFC 5082): a packet arrives with at least our TTL
/// less `max_hops` (single hop: exactly 255). A packet whose TTL the
/// kernel did not report is refused, as one that failed the check.
fn ttl_ok(spec: &Spec, ttl: Option<u8>) -> bool {
    if spec.max_hops == 255 {
        return true;
    }
    ttl.is_some_and(|t| u16::from(t) + u16::from(spec.max_hops) >= u16::from(spec.ttl))
}

/// The thread's state.
struct Driver {
    epoch: Instant,
    listeners: Listeners,
    live: Vec<Live>,
    by_disc: HashMap<u32, usize>,
    hub: Arc<Hub>,
    status: crate::control::Shared,
    dirty: bool,
    out: Vec<Output>,
    bad_packets: u64,
    unmatched: u64,
    /// The VRRP part's notifier: `BFD "NAME" UP|DOWN` on its FIFOs.
    notify: Option<std::sync::mpsc::Sender<crate::notify::Job>>,
}

impl Driver {
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn add(&mut self, spec: Spec) -> std::io::Result<()> {
        let salt = self.live.len() as u64;
        let mut disc;
        let mut n = seed(&spec.name, salt);
        loop {
            disc = u32::try_from(n & 0xffff_ffff).unwrap_or(1);
            if disc != 0 && !self.by_disc.contains_key(&disc) {
                break;
            }
            n = n.rotate_left(7) ^ 0x9e37_79b9;
        }
        let socket = sender(&spec, n)?;
        let mut session = Session::new(spec.timers, disc, n);
        let now = self.now();
        session.start(now);
        let undecided = u64::from(spec.timers.idle_tx) * u64::from(spec.timers.multiplier.max(1));
        let dest = SocketAddr::new(spec.neighbor, spec.port());
        self.by_disc.insert(disc, self.live.len());
        self.hub.set(&spec.name, None, spec.to_checker);
        tracing::info!(
            "BFD {}: session to {} ({}) started, min_tx {} ms min_rx {} ms x{}",
            spec.name,
            spec.neighbor,
            if spec.multihop {
                "multihop"
            } else {
                "single hop"
            },
            f64::from(spec.timers.min_tx) / 1000.0,
            f64::from(spec.timers.min_rx) / 1000.0,
            spec.timers.multiplier
        );
        self.live.push(Live {
            spec,
            session,
            socket,
            dest,
            since: std::time::SystemTime::now(),
            undecided_until: Some(now + undecided),
            send_errors: 0,
            last_error: None,
            bad_ttl: 0,
        });
        self.dirty = true;
        Ok(())
    }

    /// Sends what a session asked for and acts on its changes.
    fn apply(&mut self, i: usize) {
        let outs = std::mem::take(&mut self.out);
        for o in &outs {
            match o {
                Output::Send(p) => {
                    let l = &mut self.live[i];
                    if let Err(e) = l.socket.send_to(&p.emit(), l.dest) {
                        l.send_errors += 1;
                        if l.last_error.is_none() {
                            tracing::warn!("BFD {}: send to {}: {e}", l.spec.name, l.dest);
                        }
                        l.last_error = Some(e.to_string());
                    } else {
                        l.last_error = None;
                    }
                }
                Output::Changed { from, to, diag } => {
                    let l = &mut self.live[i];
                    l.since = std::time::SystemTime::now();
                    let up = *to == State::Up;
                    if *to == State::Up || (*from == State::Up && *to != State::Up) {
                        l.undecided_until = None;
                        tracing::info!("BFD {}: {:?} -> {:?} ({:?})", l.spec.name, from, to, diag);
                        let (name, to_checker) = (l.spec.name.clone(), l.spec.to_checker);
                        self.hub.set(&name, Some(up), to_checker);
                        if let Some(tx) = &self.notify {
                            let _ = tx.send(crate::notify::Job::Fifo(
                                crate::notify::Source::Vrrp,
                                format!("BFD \"{name}\" {}\n", if up { "UP" } else { "DOWN" }),
                            ));
                        }
                    } else {
                        tracing::debug!("BFD {}: {:?} -> {:?}", l.spec.name, from, to);
                    }
                    self.dirty = true;
                }
            }
        }
        self.out = outs;
        self.out.clear();
    }

    fn receive_all(&mut self, which: usize) {
        let mut buf = [0u8; 128];
        for _ in 0..RECV_BURST {
            let (n, src, ttl) = {
                let fd = &self.listeners.sockets[which].0;
                let mut cmsg = nix::cmsg_space!(nix::libc::c_int, nix::libc::c_int);
                let mut iov = [std::io::IoSliceMut::new(&mut buf)];
                let Ok(msg) = recvmsg::<SockaddrStorage>(
                    std::os::fd::AsRawFd::as_raw_fd(fd),
                    &mut iov,
                    Some(&mut cmsg),
                    MsgFlags::MSG_DONTWAIT,
                ) else {
                    return;
                };
                let mut ttl = None;
                if let Ok(cms) = msg.cmsgs() {
                    for c in cms {
                        match c {
                            ControlMessageOwned::Ipv4Ttl(t)
                            | ControlMessageOwned::Ipv6HopLimit(t) => {
                                ttl = u8::try_from(t).ok();
                            }
                            _ => {}
                        }
                    }
                }
                let src = msg.address.and_then(|a| {
                    a.as_sockaddr_in()
                        .map(|s| IpAddr::V4(s.ip()))
                        .or_else(|| a.as_sockaddr_in6().map(|s| IpAddr::V6(s.ip())))
                });
                (msg.bytes, src, ttl)
            };
            let Some(src) = src else { continue };
            let port = self.listeners.sockets[which].1;
            self.packet(&buf[..n.min(buf.len())], src, port, ttl);
        }
    }

    fn packet(&mut self, bytes: &[u8], src: IpAddr, port: u16, ttl: Option<u8>) {
        let p = match bfd::Control::parse(bytes) {
            Ok(p) => p,
            Err(e) => {
                self.bad_packets += 1;
                tracing::debug!("BFD: packet from {src} discarded: {e}");
                return;
            }
        };
        let multihop = port == MULTIHOP_PORT;
        let i = if p.your_disc != 0 {
            self.by_disc.get(&p.your_disc).copied()
        } else {
            self.live
                .iter()
                .position(|l| l.spec.neighbor == src && l.spec.multihop == multihop)
        };
        let Some(i) = i else {
            self.unmatched += 1;
            return;
        };
        let l = &mut self.live[i];
        // The session's peer, on the session's port, or nothing.
        if l.spec.neighbor != src || l.spec.multihop != multihop {
            self.unmatched += 1;
            return;
        }
        if !ttl_ok(&l.spec, ttl) {
            l.bad_ttl += 1;
            return;
        }
        let now = u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
        let mut out = std::mem::take(&mut self.out);
        let before = (l.session.tx_interval(), l.session.detection_time());
        let _ = l.session.receive(now, &p, &mut out);
        // New timers (the peer's poll sequence) reach `status` at once.
        if (l.session.tx_interval(), l.session.detection_time()) != before {
            self.dirty = true;
        }
        self.out = out;
        self.apply(i);
    }

    fn timers(&mut self) {
        let now = self.now();
        for i in 0..self.live.len() {
            if self.live[i].session.poll_at().is_some_and(|t| t <= now) {
                let mut out = std::mem::take(&mut self.out);
                self.live[i].session.on_timer(now, &mut out);
                self.out = out;
                self.apply(i);
            }
            // Awake anyway: a send due within EARLY_US goes now, in this
            // wake-up, if the RFC's 75% floor allows.
            let mut out = std::mem::take(&mut self.out);
            let sent = self.live[i].session.send_early(now, EARLY_US, &mut out);
            self.out = out;
            if sent {
                self.apply(i);
            }
            let l = &mut self.live[i];
            if l.undecided_until.is_some_and(|t| t <= now) {
                l.undecided_until = None;
                if l.session.state() != State::Up {
                    tracing::warn!(
                        "BFD {}: no answer from {}; Down",
                        l.spec.name,
                        l.spec.neighbor
                    );
                    let (name, c) = (l.spec.name.clone(), l.spec.to_checker);
                    self.hub.set(&name, Some(false), c);
                }
            }
        }
    }

    fn next_deadline(&self) -> Option<u64> {
        self.live
            .iter()
            .filter_map(|l| {
                let a = l.session.poll_at();
                match (a, l.undecided_until) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            })
            .min()
    }

    /// Waits for a packet or the next deadline.
    fn wait(&mut self, cap: Duration) -> std::io::Result<()> {
        let now = self.now();
        // Sleep to the first deadline plus SLACK, so the deadlines close
        // behind it are served in the same wake-up (hundreds of sessions
        // at 10 ms are one deadline every few tens of microseconds).
        let wait = self.next_deadline().map_or(cap, |d| {
            Duration::from_micros((d + SLACK_US).saturating_sub(now)).min(cap)
        });
        let ready: Vec<bool> = {
            let mut fds: Vec<nix::poll::PollFd> = self
                .listeners
                .sockets
                .iter()
                .map(|(s, _)| nix::poll::PollFd::new(s.as_fd(), nix::poll::PollFlags::POLLIN))
                .collect();
            let ts = nix::sys::time::TimeSpec::from_duration(wait);
            match nix::poll::ppoll(&mut fds, Some(ts), None) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
            fds.iter()
                .map(|f| {
                    f.revents()
                        .is_some_and(|r| r.contains(nix::poll::PollFlags::POLLIN))
                })
                .collect()
        };
        for (i, r) in ready.into_iter().enumerate() {
            if r {
                self.receive_all(i);
            }
        }
        self.timers();
        Ok(())
    }

    fn publish(&mut self) {
        let sessions = self.live.iter().map(session_status).collect();
        if let Ok(mut s) = self.status.lock() {
            s.bfd = sessions;
        }
        self.dirty = false;
    }

    /// AdminDown to every peer, a few times, then the sockets close.
    fn farewell(&mut self, which: impl Fn(&Spec) -> bool) {
        let now = self.now();
        for l in self.live.iter_mut().filter(|l| which(&l.spec)) {
            let mut out = Vec::new();
            l.session.admin_down(now, &mut out);
            let p = l.session.farewell().emit();
            for _ in 0..FAREWELLS {
                let _ = l.socket.send_to(&p, l.dest);
            }
        }
    }

    /// A reload: removed sessions say AdminDown and go, new ones start,
    /// changed timers are applied in place (a poll sequence), and a
    /// change of address or port replaces the session.
    fn reload(&mut self, config: &kaconf::Config) {
        let new = specs(config);
        let keep = |s: &Spec| {
            new.iter().any(|n| {
                n.name == s.name
                    && n.neighbor == s.neighbor
                    && n.source == s.source
                    && n.multihop == s.multihop
                    && n.ttl == s.ttl
            })
        };
        self.farewell(|s| !keep(s));
        let now = self.now();
        let old = std::mem::take(&mut self.live);
        self.by_disc.clear();
        for mut l in old {
            match new.iter().find(|n| n.name == l.spec.name) {
                Some(n) if keep(&l.spec) => {
                    l.session.reconfigure(now, n.timers);
                    l.spec = n.clone();
                    self.by_disc.insert(l.session.local_disc(), self.live.len());
                    self.live.push(l);
                }
                _ => {
                    tracing::info!("BFD {}: session removed", l.spec.name);
                    self.hub.forget(&l.spec.name);
                }
            }
        }
        for n in new {
            if self.live.iter().any(|l| l.spec.name == n.name) {
                continue;
            }
            let name = n.name.clone();
            if let Err(e) = self.add(n) {
                tracing::error!("BFD {name}: cannot start: {e}");
            }
        }
        let want = Listeners::wanted(&self.live.iter().map(|l| l.spec.clone()).collect::<Vec<_>>());
        if let Err(e) = self.listeners.ensure(&want) {
            tracing::error!("BFD: {e}");
        }
        self.dirty = true;
    }
}

fn session_status(l: &Live) -> crate::control::BfdStatus {
    let c = l.session.counters();
    crate::control::BfdStatus {
        name: l.spec.name.clone(),
        neighbor: l.spec.neighbor.to_string(),
        multihop: l.spec.multihop,
        state: format!("{:?}", l.session.state()),
        remote_state: format!("{:?}", l.session.remote_state()),
        diag: format!("{:?}", l.session.diag()),
        local_discriminator: l.session.local_disc(),
        remote_discriminator: l.session.remote_disc(),
        tx_interval_us: l.session.tx_interval(),
        detection_time_us: l.session.detection_time(),
        since: l
            .since
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        sent: c.sent,
        received: c.received,
        refused: c.refused + l.bad_ttl,
        ups: c.up,
        downs: c.down,
        send_errors: l.send_errors,
        last_error: l.last_error.clone(),
    }
}

/// Starts the BFD thread when the configuration has a `bfd_instance`.
pub fn start(
    config: &kaconf::Config,
    hub: Arc<Hub>,
    stop: Arc<AtomicBool>,
    status: crate::control::Shared,
    reloads: Receiver<Arc<kaconf::Config>>,
    notify: Option<std::sync::mpsc::Sender<crate::notify::Job>>,
) -> anyhow::Result<Option<std::thread::JoinHandle<()>>> {
    let specs = specs(config);
    if specs.is_empty() {
        return Ok(None);
    }
    let mut listeners = Listeners {
        sockets: Vec::new(),
    };
    listeners.ensure(&Listeners::wanted(&specs))?;
    let mut driver = Driver {
        epoch: Instant::now(),
        listeners,
        live: Vec::new(),
        by_disc: HashMap::new(),
        hub,
        status,
        dirty: true,
        out: Vec::new(),
        bad_packets: 0,
        unmatched: 0,
        notify,
    };
    // A session that cannot start (its source address is not here) is
    // logged and left out; the others run.
    for s in specs {
        let name = s.name.clone();
        if let Err(e) = driver.add(s) {
            tracing::error!("BFD {name}: cannot start: {e}");
        }
    }
    let t = std::thread::Builder::new()
        .name("bfd".into())
        .spawn(move || run(driver, &stop, &reloads))?;
    Ok(Some(t))
}

fn run(mut driver: Driver, stop: &AtomicBool, reloads: &Receiver<Arc<kaconf::Config>>) {
    let mut published = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        // Wake at least every 100 ms for a stop or a reload.
        if let Err(e) = driver.wait(Duration::from_millis(100)) {
            tracing::error!("BFD: {e}");
            std::thread::sleep(Duration::from_millis(10));
        }
        while let Ok(c) = reloads.try_recv() {
            driver.reload(&c);
        }
        if driver.dirty || published.elapsed() >= PUBLISH {
            driver.publish();
            published = Instant::now();
        }
    }
    driver.farewell(|_| true);
    driver.publish();
    tracing::info!("BFD: stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> kaconf::Config {
        let l = kaconf::parse_str(
            std::path::Path::new("t.conf"),
            text,
            &kaconf::Options::default(),
        );
        assert!(!l.has_errors(), "{:?}", l.diagnostics);
        l.config
    }

    #[test]
    fn no_other_socket_can_share_a_bfd_port() {
        let ours = listener(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        let addr = ours.local_addr().unwrap();
        // Another local user trying to be handed the peers' packets.
        let other = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        other.set_reuse_address(true).unwrap();
        assert!(other.bind(&addr.into()).is_err(), "{addr} shared");
    }

    #[test]
    fn a_reload_keeps_the_listening_sockets() {
        let free = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut l = Listeners {
            sockets: Vec::new(),
        };
        l.ensure(&[free]).unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&l.sockets[0].0);
        // Without SO_REUSEADDR a second bind would fail: the socket is kept.
        l.ensure(&[free]).unwrap();
        assert_eq!(l.sockets.len(), 1);
        assert_eq!(std::os::fd::AsRawFd::as_raw_fd(&l.sockets[0].0), fd);
        assert_eq!(l.sockets[0].1, free.port());
        l.ensure(&[]).unwrap();
        assert!(l.sockets.is_empty());
    }

    #[test]
    fn a_full_vrrp_wake_socket_never_blocks_the_bfd_thread() {
        let (w, _never_read) = std::os::unix::net::UnixStream::pair().unwrap();
        let hub = Arc::new(Hub::default());
        hub.set_waker(w);
        let (done, finished) = std::sync::mpsc::channel();
        let h = hub.clone();
        std::thread::spawn(move || {
            // Far more wake-ups than the socket buffer holds.
            for i in 0..200_000u32 {
                h.set("a", Some(i % 2 == 0), false);
            }
            let _ = done.send(());
        });
        assert!(
            finished.recv_timeout(Duration::from_secs(20)).is_ok(),
            "Hub::set blocked on the VRRP thread's socket"
        );
        assert!(hub.generation() >= 200_000);
    }

    #[test]
    fn gtsm_refuses_a_low_ttl_and_an_unknown_one() {
        let c = load(
            "bfd_instance a {\n neighbor_ip 198.51.100.2\n}\n\
             bfd_instance m {\n neighbor_ip 198.51.100.3\n multihop\n ttl 64\n max_hops 3\n}\n\
             bfd_instance n {\n neighbor_ip 198.51.100.4\n max_hops -1\n}\n",
        );
        let s = specs(&c);
        assert!(ttl_ok(&s[0], Some(255)));
        assert!(!ttl_ok(&s[0], Some(254)), "single hop is 255 only");
        assert!(!ttl_ok(&s[0], None), "no TTL from the kernel");
        assert!(ttl_ok(&s[1], Some(61)));
        assert!(!ttl_ok(&s[1], Some(60)));
        assert!(!ttl_ok(&s[1], None));
        assert!(ttl_ok(&s[2], None), "max_hops -1: no check");
    }

    #[test]
    fn keepalived_defaults_and_rules() {
        let c = load(
            "bfd_instance a {\n neighbor_ip 198.51.100.2\n}\n\
             bfd_instance b {\n neighbour_ip 2001:db8::2\n min_tx 3.312\n min_rx 20\n multiplier 3\n}\n\
             bfd_instance c {\n source_ip 2001:db8::1\n neighbor_ip 198.51.100.3\n}\n\
             bfd_instance d {\n neighbor_ip 198.51.100.2\n}\n\
             bfd_instance e {\n neighbor_ip 198.51.100.4\n multihop\n ttl 10\n max_hops 3\n weight -20 reverse\n checker\n idle_tx 100\n}\n",
        );
        let s = specs(&c);
        let names: Vec<_> = s.iter().map(|s| s.name.as_str()).collect();
        // c: families differ; d: a's neighbour again.
        assert_eq!(names, ["a", "b", "e"]);
        assert_eq!(s[0].timers, bfd::Config::default());
        assert_eq!((s[0].ttl, s[0].max_hops, s[0].port()), (255, 0, PORT));
        assert_eq!(s[1].timers.min_tx, 3312);
        assert_eq!(s[1].timers.min_rx, 20_000);
        assert_eq!(s[1].ttl, 64, "IPv6's default hop limit, as keepalived");
        assert!(s[0].to_vrrp && s[0].to_checker);
        assert_eq!(s[2].port(), MULTIHOP_PORT);
        assert_eq!((s[2].ttl, s[2].max_hops), (10, 3));
        assert_eq!((s[2].weight, s[2].reverse), (-20, true));
        assert!(!s[2].to_vrrp && s[2].to_checker);
        assert_eq!(
            s[2].timers.idle_tx, 1_000_000,
            "idle_tx below 1 s is raised"
        );
    }
}
