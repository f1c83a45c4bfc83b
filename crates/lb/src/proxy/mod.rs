//! The L4 proxy data plane (the nginx `stream` role): TCP and UDP
//! connections to a virtual server's address, relayed to its real
//! servers. Which server: the virtual server's scheduler over the servers
//! the checkers call healthy, minus those the proxy itself saw fail
//! (nginx's passive checks, [`Passive`]); a connect that fails is retried
//! on the next server before the client notices.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::sched::{Algo, Flow, Scheduler, Server};

mod plane;
pub use plane::Plane;

/// nginx's passive health check of one server: `max_fails` failed
/// connects within `fail_timeout` make it unavailable for `fail_timeout`
/// (`max_fails 0`: never). Pure: the caller gives the time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Passive {
    pub max_fails: u32,
    pub fail_timeout: Duration,
    fails: u32,
    /// When the current window of failures began.
    since: Option<Instant>,
    /// Unavailable until then.
    until: Option<Instant>,
}

impl Passive {
    /// nginx's defaults: `max_fails 1`, `fail_timeout 10s`.
    pub const DEFAULT: (u32, Duration) = (1, Duration::from_secs(10));

    pub fn new(max_fails: u32, fail_timeout: Duration) -> Self {
        Self {
            max_fails,
            fail_timeout,
            fails: 0,
            since: None,
            until: None,
        }
    }

    pub fn available(&self, now: Instant) -> bool {
        self.until.is_none_or(|u| now >= u)
    }

    /// A connect failed at `now`; true if that made the server unavailable.
    pub fn failure(&mut self, now: Instant) -> bool {
        if self.max_fails == 0 {
            return false;
        }
        if self
            .since
            .is_none_or(|s| now.duration_since(s) >= self.fail_timeout)
        {
            self.since = Some(now);
            self.fails = 0;
        }
        self.fails += 1;
        if self.fails >= self.max_fails {
            self.until = Some(now + self.fail_timeout);
            self.fails = 0;
            self.since = None;
            return true;
        }
        false
    }

    /// A connect succeeded: the count starts again.
    pub fn success(&mut self) {
        self.fails = 0;
        self.since = None;
        self.until = None;
    }
}

/// One real server of a proxied virtual server.
#[derive(Debug, Clone)]
pub struct Backend {
    pub addr: SocketAddr,
    /// 0: no new connections (down by its checker, or quiesced).
    pub weight: u32,
    pub passive: Passive,
    /// Connections open to it now.
    pub active: u32,
    /// Bytes relayed to and from it.
    pub bytes: u64,
    /// Gone from the configuration, kept while its connections finish
    /// (so that they are still counted); never picked.
    pub draining: bool,
}

/// A virtual server's servers and scheduler, shared by its connections.
#[derive(Debug)]
pub struct Pool {
    inner: Mutex<(Vec<Backend>, Scheduler)>,
    /// A reused buffer for the scheduler's view.
    scratch: Mutex<(Vec<Server>,)>,
    /// The connect timeout in ms, and the PROXY protocol header sent to
    /// servers first (0 none, 1 v1, 2 v2): changed by a reload.
    connect_timeout_ms: std::sync::atomic::AtomicU64,
    proxy_protocol: std::sync::atomic::AtomicU8,
    /// `max_conns` (0: no cap of its own) and `proxy_timeout` in ms (0:
    /// none), changed by a reload; the connections (UDP: sessions) open
    /// now and what was refused or timed out.
    max_conns: AtomicU32,
    idle_ms: AtomicU64,
    conns: AtomicU32,
    refused_max_conns: AtomicU64,
    refused_descriptors: AtomicU64,
    idle_timeouts: AtomicU64,
    /// When a refusal was last logged (one line per episode, not per
    /// client).
    warned: Mutex<Option<Instant>>,
}

impl Pool {
    pub fn new(
        algo: Algo,
        connect_timeout: Duration,
        proxy_protocol: Option<crate::proxy_protocol::Version>,
    ) -> Arc<Self> {
        let pool = Arc::new(Self {
            inner: Mutex::new((Vec::new(), Scheduler::new(algo, Vec::new()))),
            scratch: Mutex::new((Vec::new(),)),
            connect_timeout_ms: std::sync::atomic::AtomicU64::new(0),
            proxy_protocol: std::sync::atomic::AtomicU8::new(0),
            max_conns: AtomicU32::new(0),
            idle_ms: AtomicU64::new(u64::try_from(DEFAULT_IDLE.as_millis()).unwrap_or(0)),
            conns: AtomicU32::new(0),
            refused_max_conns: AtomicU64::new(0),
            refused_descriptors: AtomicU64::new(0),
            idle_timeouts: AtomicU64::new(0),
            warned: Mutex::new(None),
        });
        pool.configure(algo, connect_timeout, proxy_protocol);
        pool
    }

    /// A reload's settings: the scheduler (a new one starts its round
    /// afresh), the connect timeout and the PROXY protocol header; the
    /// servers and their counters stay.
    pub fn configure(
        &self,
        algo: Algo,
        connect_timeout: Duration,
        proxy_protocol: Option<crate::proxy_protocol::Version>,
    ) {
        use std::sync::atomic::Ordering::Relaxed;
        self.connect_timeout_ms.store(
            u64::try_from(connect_timeout.as_millis()).unwrap_or(u64::MAX),
            Relaxed,
        );
        self.proxy_protocol.store(
            match proxy_protocol {
                None => 0,
                Some(crate::proxy_protocol::Version::V1) => 1,
                Some(crate::proxy_protocol::Version::V2) => 2,
            },
            Relaxed,
        );
        let mut g = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (backends, sched) = &mut *g;
        if sched.algo() != algo {
            let ids = backends.iter().map(|b| id(b.addr)).collect();
            *sched = Scheduler::new(algo, ids);
        }
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(
            self.connect_timeout_ms
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    pub fn proxy_protocol(&self) -> Option<crate::proxy_protocol::Version> {
        match self
            .proxy_protocol
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            1 => Some(crate::proxy_protocol::Version::V1),
            2 => Some(crate::proxy_protocol::Version::V2),
            _ => None,
        }
    }

    /// A reload's `max_conns` (0: no cap but the proxy's own) and
    /// `proxy_timeout` (zero: none).
    pub fn set_limits(&self, max_conns: u32, idle: Duration) {
        self.max_conns.store(max_conns, Ordering::Relaxed);
        self.idle_ms.store(
            u64::try_from(idle.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// `proxy_timeout`: how long a connection (a UDP session) may move no
    /// byte; `None`: for ever.
    pub fn idle(&self) -> Option<Duration> {
        match self.idle_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    /// A place for one more connection (UDP: session) holding `fds`
    /// descriptors, the newest of them `fd`: refused at `max_conns`, or
    /// when the proxy's share of descriptors is used up (`budget`).
    pub fn admit(
        self: &Arc<Self>,
        budget: &Arc<Budget>,
        fds: u64,
        fd: Option<RawFd>,
    ) -> Result<Slot, Refused> {
        let max = self.max_conns.load(Ordering::Relaxed);
        let mine = self
            .conns
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                (max == 0 || c < max).then_some(c.saturating_add(1))
            });
        if mine.is_err() {
            self.refused_max_conns.fetch_add(1, Ordering::Relaxed);
            return Err(Refused::MaxConns(max));
        }
        if !budget.take(fds, fd) {
            self.conns.fetch_sub(1, Ordering::Relaxed);
            self.refused_descriptors.fetch_add(1, Ordering::Relaxed);
            return Err(Refused::Descriptors);
        }
        Ok(Slot {
            pool: self.clone(),
            budget: budget.clone(),
            fds,
        })
    }

    /// True at most once every 10 s: a refusal worth a log line.
    fn warn_now(&self, now: Instant) -> bool {
        let Ok(mut w) = self.warned.lock() else {
            return false;
        };
        if w.is_some_and(|t| now.duration_since(t) < WARN_EVERY) {
            return false;
        }
        *w = Some(now);
        true
    }

    /// What it admitted and refused.
    pub fn admission(&self) -> PoolAdmission {
        PoolAdmission {
            connections: self.conns.load(Ordering::Relaxed),
            max_conns: self.max_conns.load(Ordering::Relaxed),
            idle: self.idle(),
            refused_max_conns: self.refused_max_conns.load(Ordering::Relaxed),
            refused_descriptors: self.refused_descriptors.load(Ordering::Relaxed),
            idle_timeouts: self.idle_timeouts.load(Ordering::Relaxed),
        }
    }

    /// The servers as the checkers see them now: (address, weight,
    /// max_fails, fail_timeout). A server already known keeps its passive
    /// state and counters.
    pub fn set(&self, servers: &[(SocketAddr, u32, u32, Duration)]) {
        let mut g = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (backends, sched) = &mut *g;
        // The same servers and weights: nothing to do (the scheduler keeps
        // its place in the round).
        let live = backends.iter().filter(|b| !b.draining);
        if live.clone().count() == servers.len()
            && live.zip(servers).all(|(b, s)| {
                b.addr == s.0
                    && b.weight == s.1
                    && b.passive.max_fails == s.2
                    && b.passive.fail_timeout == s.3
            })
        {
            return;
        }
        let mut next: Vec<Backend> = servers
            .iter()
            .map(|&(addr, weight, max_fails, fail_timeout)| {
                match backends.iter().find(|b| b.addr == addr) {
                    Some(b) => {
                        let mut b = b.clone();
                        b.weight = weight;
                        b.draining = false;
                        // A reload's max_fails / fail_timeout; the
                        // failures seen so far stay.
                        b.passive.max_fails = max_fails;
                        b.passive.fail_timeout = fail_timeout;
                        b
                    }
                    None => Backend {
                        addr,
                        weight,
                        passive: Passive::new(max_fails, fail_timeout),
                        active: 0,
                        bytes: 0,
                        draining: false,
                    },
                }
            })
            .collect();
        // Servers gone from the set keep their connections until they end,
        // and are kept (never picked) while they have any: one that comes
        // back finds its count of them.
        next.extend(
            backends
                .iter()
                .filter(|b| b.active > 0 && !servers.iter().any(|s| s.0 == b.addr))
                .map(|b| Backend {
                    weight: 0,
                    draining: true,
                    ..b.clone()
                }),
        );
        std::mem::swap(backends, &mut next);
        let ids = backends.iter().map(|b| id(b.addr)).collect();
        *sched = Scheduler::new(sched.algo(), ids);
    }

    /// The next server for a connection from `client`, leaving out those
    /// in `tried` and those passively unavailable at `now`.
    pub fn pick(
        &self,
        client: SocketAddr,
        tried: &[SocketAddr],
        now: Instant,
    ) -> Option<SocketAddr> {
        let mut g = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (backends, sched) = &mut *g;
        // The scheduler's view, in a buffer kept for the next connection.
        let mut view = std::mem::take(
            &mut self
                .scratch
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0,
        );
        view.clear();
        view.extend(backends.iter().map(|b| Server {
            weight: if !b.draining && b.passive.available(now) && !tried.contains(&b.addr) {
                b.weight
            } else {
                0
            },
            active: b.active,
        }));
        let flow = Flow {
            source: crate::sched::mix(id(SocketAddr::new(client.ip(), 0))),
            destination: 0,
        };
        let picked = sched.pick(&view, flow);
        if let Ok(mut s) = self.scratch.lock() {
            s.0 = view;
        }
        let i = picked?;
        backends.get(i).map(|b| b.addr)
    }

    fn with(&self, addr: SocketAddr, f: impl FnOnce(&mut Backend)) {
        let mut g = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(b) = g.0.iter_mut().find(|b| b.addr == addr) {
            f(b);
        }
    }

    /// Records a connect's outcome; true if a failure took the server out.
    pub fn outcome(&self, addr: SocketAddr, ok: bool, now: Instant) -> bool {
        let mut out = false;
        self.with(addr, |b| {
            if ok {
                b.passive.success();
                b.active += 1;
            } else {
                out = b.passive.failure(now);
            }
        });
        out
    }

    /// A relayed connection to `addr` ended after `bytes`; a draining
    /// server is forgotten with its last connection.
    pub fn closed(&self, addr: SocketAddr, bytes: u64) {
        let mut g = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (backends, sched) = &mut *g;
        let Some(i) = backends.iter().position(|b| b.addr == addr) else {
            return;
        };
        let b = &mut backends[i];
        b.active = b.active.saturating_sub(1);
        b.bytes = b.bytes.saturating_add(bytes);
        if b.draining && b.active == 0 {
            backends.remove(i);
            let ids = backends.iter().map(|b| id(b.addr)).collect();
            *sched = Scheduler::new(sched.algo(), ids);
        }
    }

    /// Each server's address, open connections and bytes.
    pub fn counters(&self) -> Vec<(SocketAddr, u32, u64)> {
        self.inner
            .lock()
            .map(|g| g.0.iter().map(|b| (b.addr, b.active, b.bytes)).collect())
            .unwrap_or_default()
    }
}

/// nginx's `proxy_timeout` default: 10 minutes without a byte either way
/// end a TCP connection.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(600);

/// How often one virtual server logs that it refuses connections.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The virtual server's `max_conns`.
    MaxConns(u32),
    /// The proxy's share of the descriptors is used up (or fewer than
    /// half the reserve are left to the rest of the daemon).
    Descriptors,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::MaxConns(n) => write!(f, "max_conns {n} reached"),
            Self::Descriptors => f.write_str(
                "the proxy's share of file descriptors is used up (the rest is kept for checkers, scripts, nft and the control socket)",
            ),
        }
    }
}

/// The proxy's share of the process's file descriptors: the open-file
/// limit less a reserve kept for everything else (checkers, scripts,
/// `nft`, the control socket, metrics), so that no number of clients can
/// starve the rest of the daemon. Shared by every virtual server.
#[derive(Debug)]
pub struct Budget {
    /// The open-file limit (`RLIMIT_NOFILE`, soft) the proxy counts on.
    pub limit: u64,
    /// Descriptors the proxy leaves to the rest of the daemon.
    pub reserve: u64,
    /// Descriptors its connections and sessions hold now.
    held: AtomicU64,
    /// accept(2) failures (EMFILE when something else took the reserve).
    accept_errors: AtomicU64,
}

impl Budget {
    /// The budget under `limit` descriptors, with [`Budget::reserve_for`].
    pub fn new(limit: u64) -> Self {
        Self {
            limit,
            reserve: Self::reserve_for(limit),
            held: AtomicU64::new(0),
            accept_errors: AtomicU64::new(0),
        }
    }

    /// The descriptors kept for the rest of the daemon: a tenth of the
    /// limit, at least 256 (but never more than half of it).
    pub fn reserve_for(limit: u64) -> u64 {
        (limit / 10).max(256).min(limit / 2)
    }

    /// The most descriptors the proxy's connections may hold.
    pub fn max_fds(&self) -> u64 {
        self.limit.saturating_sub(self.reserve)
    }

    /// The most TCP connections the proxy relays at once (two
    /// descriptors each), all virtual servers together.
    pub fn max_conns(&self) -> u64 {
        self.max_fds() / 2
    }

    /// Descriptors its connections and sessions hold now.
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    pub fn accept_errors(&self) -> u64 {
        self.accept_errors.load(Ordering::Relaxed)
    }

    /// Takes `fds` descriptors, `fd` the newest one the kernel gave (it
    /// hands out the lowest free number: every one below it is open). No
    /// when the proxy's share is used up, or when `fd` says fewer than
    /// half the reserve are left, whoever holds the rest.
    fn take(&self, fds: u64, fd: Option<RawFd>) -> bool {
        if fd.is_some_and(|f| !self.room_at(f, fds)) {
            return false;
        }
        let max = self.max_fds();
        self.held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |h| {
                (h.saturating_add(fds) <= max).then_some(h.saturating_add(fds))
            })
            .is_ok()
    }

    /// True unless `fd`, the newest descriptor, and `more` after it leave
    /// fewer than half the reserve free.
    fn room_at(&self, fd: RawFd, more: u64) -> bool {
        let floor = self.limit.saturating_sub(self.reserve / 2);
        u64::try_from(fd).map_or(true, |f| f.saturating_add(more) < floor)
    }

    fn give(&self, fds: u64) {
        let _ = self
            .held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |h| {
                Some(h.saturating_sub(fds))
            });
    }
}

/// One admitted connection (or UDP session): gives its place and its
/// descriptors back when dropped.
#[derive(Debug)]
pub struct Slot {
    pool: Arc<Pool>,
    budget: Arc<Budget>,
    fds: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let _ = self
            .pool
            .conns
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                Some(c.saturating_sub(1))
            });
        self.budget.give(self.fds);
    }
}

/// What one virtual server admitted and refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolAdmission {
    /// Connections (UDP: sessions) open now.
    pub connections: u32,
    /// `max_conns` (0: none of its own).
    pub max_conns: u32,
    /// `proxy_timeout`.
    pub idle: Option<Duration>,
    pub refused_max_conns: u64,
    pub refused_descriptors: u64,
    /// Connections ended by `proxy_timeout`.
    pub idle_timeouts: u64,
}

/// What the proxy admitted and refused, for `status` and metrics.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Admission {
    /// The open-file limit and the descriptors kept from the proxy.
    pub fd_limit: u64,
    pub fd_reserve: u64,
    /// Descriptors its connections and sessions hold.
    pub fds_held: u64,
    /// The most TCP connections at once, all virtual servers together.
    pub max_conns: u64,
    /// accept(2) failures.
    pub accept_errors: u64,
    /// Per virtual server (address, UDP or not).
    pub services: Vec<(SocketAddr, bool, PoolAdmission)>,
}

fn id(a: SocketAddr) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let ip = match a.ip() {
        std::net::IpAddr::V4(v) => v.to_ipv6_mapped().octets(),
        std::net::IpAddr::V6(v) => v.octets(),
    };
    for b in ip.iter().chain(&a.port().to_be_bytes()) {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A socket of `ty` bound to `addr`, non-blocking, with `SO_REUSEADDR`
/// and `IP_FREEBIND` (a backup binds the VIP before it holds it).
fn bound(
    addr: SocketAddr,
    ty: socket2::Type,
    reuse_port: bool,
) -> std::io::Result<socket2::Socket> {
    use socket2::{Domain, Socket};
    let s = Socket::new(Domain::for_address(addr), ty, None)?;
    s.set_reuse_address(true)?;
    if reuse_port {
        s.set_reuse_port(true)?;
    }
    if addr.is_ipv4() {
        s.set_freebind_v4(true)?;
    } else {
        s.set_freebind_v6(true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s)
}

/// A listening socket for `addr`, with `SO_REUSEPORT` (one per worker).
pub fn tcp_listener(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let s = bound(addr, socket2::Type::STREAM, true)?;
    // TCP keepalive, inherited by every accepted socket (no system call
    // per connection): a client that vanishes without a FIN or RST (a dead
    // host, a NAT that forgot the flow) is found within about ten minutes
    // and the relay ends, freeing both of its sockets — otherwise they
    // would be held for ever (nginx's `proxy_timeout` is 10 minutes).
    s.set_tcp_keepalive(
        &socket2::TcpKeepalive::new()
            .with_time(Duration::from_secs(300))
            .with_interval(Duration::from_secs(30))
            .with_retries(9),
    )?;
    s.listen(4096)?;
    tokio::net::TcpListener::from_std(s.into())
}

/// A UDP socket for `addr`.
pub fn udp_socket(addr: SocketAddr) -> std::io::Result<tokio::net::UdpSocket> {
    tokio::net::UdpSocket::from_std(bound(addr, socket2::Type::DGRAM, false)?.into())
}

/// Relays one accepted client connection: a server picked, connects
/// tried in turn (each bounded by the pool's connect timeout) until one
/// succeeds, then both directions copied until both ends have closed
/// (a half-close is passed on).
pub async fn relay(pool: Arc<Pool>, client: tokio::net::TcpStream, from: SocketAddr, slot: Slot) {
    use tokio::io::AsyncWriteExt;
    // Its place and descriptors, given back however the relay ends.
    let _slot = slot;
    let _ = client.set_nodelay(true);
    // The servers tried, on the stack: a connection allocates nothing
    // beyond its task and sockets (and a pipe while bytes are in flight).
    let mut tried = [from; MAX_TRIES];
    for n in 0..MAX_TRIES {
        let Some(addr) = pool.pick(from, &tried[..n], Instant::now()) else {
            return;
        };
        tried[n] = addr;
        let connected =
            tokio::time::timeout(pool.connect_timeout(), tokio::net::TcpStream::connect(addr))
                .await;
        match connected {
            Ok(Ok(mut server)) => {
                pool.outcome(addr, true, Instant::now());
                let _ = server.set_nodelay(true);
                let mut moved = 0;
                let header_sent = match pool.proxy_protocol() {
                    Some(v) => match client.local_addr() {
                        Ok(vs) => {
                            let mut h = [0u8; crate::proxy_protocol::MAX];
                            let len = crate::proxy_protocol::write(v, from, vs, &mut h);
                            server.write_all(&h[..len]).await.is_ok()
                        }
                        Err(_) => false,
                    },
                    None => true,
                };
                if header_sent {
                    let idled;
                    (moved, idled) = crate::splice::relay_idle(&client, &server, pool.idle()).await;
                    if idled {
                        pool.idle_timeouts.fetch_add(1, Ordering::Relaxed);
                    }
                }
                pool.closed(addr, moved);
                return;
            }
            _ => {
                if pool.outcome(addr, false, Instant::now()) {
                    tracing::warn!(
                        "proxy: {addr} failed its connects; out of rotation for a while"
                    );
                }
            }
        }
    }
}

/// The most servers one connection tries (nginx's `proxy_next_upstream`
/// goes on until every server was tried; a pool is rarely larger).
pub const MAX_TRIES: usize = 16;

/// How long accepting pauses after accept(2) failed (EMFILE: the
/// process is out of descriptors): no busy loop, the clients wait in the
/// listen queue meanwhile.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Accepts on `listener` for ever, relaying each connection the pool and
/// the budget admit; the others are reset at once (so a client knows
/// straight away, and the descriptor is back within the same call).
pub async fn serve_tcp(listener: tokio::net::TcpListener, pool: Arc<Pool>, budget: Arc<Budget>) {
    let vs = listener
        .local_addr()
        .map_or_else(|_| "?".to_owned(), |a| a.to_string());
    // accept(2) failures in a row: logged when they start and end.
    let mut failing: u64 = 0;
    loop {
        match listener.accept().await {
            Ok((c, from)) => {
                if failing > 0 {
                    tracing::info!("proxy: {vs}: accepting again after {failing} failed accepts");
                    failing = 0;
                }
                match pool.admit(&budget, 2, Some(c.as_raw_fd())) {
                    Ok(slot) => {
                        tokio::spawn(relay(pool.clone(), c, from, slot));
                    }
                    Err(why) => {
                        // RST, not FIN: the client sees a refusal, and no
                        // TIME_WAIT is left behind.
                        let _ = socket2::SockRef::from(&c).set_linger(Some(Duration::ZERO));
                        drop(c);
                        if pool.warn_now(Instant::now()) {
                            tracing::warn!(
                                "proxy: {vs}: refusing new connections: {why} ({} connections open, the proxy holds {} of {} descriptors it may use)",
                                pool.conns.load(Ordering::Relaxed),
                                budget.held(),
                                budget.max_fds(),
                            );
                        }
                    }
                }
            }
            Err(e) => {
                budget.accept_errors.fetch_add(1, Ordering::Relaxed);
                if failing == 0 {
                    tracing::warn!(
                        "proxy: {vs}: accept: {e}; trying again every {} ms",
                        ACCEPT_PAUSE.as_millis()
                    );
                }
                failing += 1;
                tokio::time::sleep(ACCEPT_PAUSE).await;
            }
        }
    }
}

/// The most UDP sessions at once (each holds a socket and a task).
pub const MAX_UDP_SESSIONS: usize = 4096;

/// Client address → its socket towards its server.
type Sessions = Arc<Mutex<std::collections::HashMap<SocketAddr, Arc<tokio::net::UdpSocket>>>>;

/// A new UDP session for `from`: a socket connected to the server picked
/// for it, and a task sending its answers back until it is idle.
async fn session(
    socket: &Arc<tokio::net::UdpSocket>,
    pool: &Arc<Pool>,
    budget: &Arc<Budget>,
    sessions: &Sessions,
    from: SocketAddr,
) -> Option<Arc<tokio::net::UdpSocket>> {
    if sessions
        .lock()
        .map_or(true, |s| s.len() >= MAX_UDP_SESSIONS)
    {
        // Full (or a lock lost to a panic): the datagram is dropped rather
        // than a socket opened for every address a flood claims to be.
        pool.refused_max_conns.fetch_add(1, Ordering::Relaxed);
        return None;
    }
    // Its place first (`max_conns`, the descriptors): a flood of new
    // addresses past the cap costs no socket per datagram.
    let slot = match pool.admit(budget, 1, None) {
        Ok(slot) => slot,
        Err(why) => {
            if pool.warn_now(Instant::now()) {
                tracing::warn!(
                    "proxy: udp {}: dropping datagrams of new clients: {why}",
                    socket
                        .local_addr()
                        .map_or_else(|_| "?".to_owned(), |a| a.to_string())
                );
            }
            return None;
        }
    };
    let addr = pool.pick(from, &[], Instant::now())?;
    let local: SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let u = tokio::net::UdpSocket::bind(local).await.ok()?;
    if !budget.room_at(u.as_raw_fd(), 0) {
        pool.refused_descriptors.fetch_add(1, Ordering::Relaxed);
        return None;
    }
    u.connect(addr).await.ok()?;
    let u = Arc::new(u);
    if let Ok(mut s) = sessions.lock() {
        s.insert(from, u.clone());
    }
    let (u2, back, sessions) = (u.clone(), socket.clone(), sessions.clone());
    let (idle, pool) = (pool.idle(), pool.clone());
    tokio::spawn(async move {
        let _slot = slot;
        let mut b = vec![0u8; 16 * 1024];
        loop {
            let got = match idle {
                Some(idle) => tokio::time::timeout(idle, u2.recv(&mut b)).await,
                None => Ok(u2.recv(&mut b).await),
            };
            match got {
                Ok(Ok(m)) => {
                    let _ = back.send_to(&b[..m], from).await;
                }
                Ok(Err(_)) => break,
                Err(_) => {
                    pool.idle_timeouts.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
        if let Ok(mut s) = sessions.lock() {
            s.remove(&from);
        }
    });
    Some(u)
}

/// UDP: each client address gets a socket of its own towards the server
/// picked for it (within `max_conns` and the budget); answers go back to
/// the client; a session without an answer for the pool's `proxy_timeout`
/// ends.
pub async fn serve_udp(socket: tokio::net::UdpSocket, pool: Arc<Pool>, budget: Arc<Budget>) {
    let socket = Arc::new(socket);
    let sessions: Sessions = Arc::default();
    let mut buf = vec![0u8; 65_536];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let existing = sessions.lock().ok().and_then(|s| s.get(&from).cloned());
        let upstream = if let Some(u) = existing {
            u
        } else if let Some(u) = session(&socket, &pool, &budget, &sessions, from).await {
            u
        } else {
            continue;
        };
        let _ = upstream.send(&buf[..n]).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passive_checks_as_nginx() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut p = Passive::new(2, s(10));
        assert!(p.available(t0));
        assert!(!p.failure(t0));
        assert!(p.failure(t0 + s(1)), "the second failure within 10 s");
        assert!(!p.available(t0 + s(5)));
        assert!(p.available(t0 + s(11)), "back after fail_timeout");
        // Failures further apart than the window do not add up.
        let mut p = Passive::new(2, s(10));
        assert!(!p.failure(t0));
        assert!(!p.failure(t0 + s(11)));
        // A success forgives.
        let mut p = Passive::new(2, s(10));
        p.failure(t0);
        p.success();
        assert!(!p.failure(t0 + s(1)));
        // max_fails 0: never taken out.
        let mut p = Passive::new(0, s(10));
        assert!(!p.failure(t0));
        assert!(p.available(t0));
    }

    #[test]
    fn admission_counts_max_conns_and_the_descriptor_budget() {
        // 20,000 descriptors: 2,000 kept for the daemon, 9,000 relays.
        let budget = Arc::new(Budget::new(20_000));
        assert_eq!((budget.reserve, budget.max_conns()), (2_000, 9_000));
        assert_eq!(Budget::reserve_for(1024), 256);
        assert_eq!(Budget::reserve_for(300), 150, "never more than half");
        assert_eq!(Budget::reserve_for(1_048_576), 104_857);
        let a = Pool::new(Algo::Rr, Duration::from_secs(1), None);
        let b = Pool::new(Algo::Rr, Duration::from_secs(1), None);
        a.set_limits(3, Duration::from_secs(1));
        let held: Vec<Slot> = (0..3)
            .map(|_| {
                a.admit(&budget, 2, Some(10))
                    .unwrap_or_else(|e| panic!("{e}"))
            })
            .collect();
        assert_eq!(
            a.admit(&budget, 2, Some(10)).err(),
            Some(Refused::MaxConns(3))
        );
        assert_eq!(budget.held(), 6);
        drop(held);
        assert_eq!((a.admission().connections, budget.held()), (0, 0));
        // No cap of its own: the budget's, shared by every pool.
        let mut all = Vec::new();
        while let Ok(s) = b.admit(&budget, 2, Some(10)) {
            all.push(s);
        }
        assert_eq!(all.len(), 9_000);
        assert_eq!(
            a.admit(&budget, 2, Some(10)).err(),
            Some(Refused::Descriptors)
        );
        all.pop();
        assert!(a.admit(&budget, 2, Some(10)).is_ok(), "a place came back");
        drop(all);
        // The kernel's newest descriptor says others hold the reserve.
        assert_eq!(
            b.admit(&budget, 2, Some(18_999)).err(),
            Some(Refused::Descriptors)
        );
        assert!(b.admit(&budget, 2, Some(18_000)).is_ok());
        let (sa, sb) = (a.admission(), b.admission());
        assert_eq!((sa.refused_max_conns, sa.refused_descriptors), (1, 1));
        // The loop that filled the budget ended on a refusal of its own.
        assert_eq!((sb.refused_max_conns, sb.refused_descriptors), (0, 2));
        assert_eq!((sb.connections, budget.held()), (0, 0));
        assert_eq!(sa.idle, Some(Duration::from_secs(1)));
        a.set_limits(0, Duration::ZERO);
        assert_eq!(a.idle(), None, "proxy_timeout 0: none");
        assert_eq!(b.idle(), Some(DEFAULT_IDLE));
    }

    #[test]
    fn the_pool_skips_tried_and_unavailable_servers() {
        let pool = Pool::new(Algo::Rr, Duration::from_secs(1), None);
        let a: SocketAddr = "198.51.100.50:80"
            .parse()
            .unwrap_or_else(|_| unreachable!());
        let b: SocketAddr = "198.51.100.51:80"
            .parse()
            .unwrap_or_else(|_| unreachable!());
        pool.set(&[
            (a, 1, 1, Duration::from_secs(10)),
            (b, 1, 1, Duration::from_secs(10)),
        ]);
        let c: SocketAddr = "203.0.113.100:4000"
            .parse()
            .unwrap_or_else(|_| unreachable!());
        let now = Instant::now();
        let first = pool.pick(c, &[], now);
        let second = pool.pick(c, &[], now);
        assert_ne!(first, second, "round robin");
        assert_eq!(pool.pick(c, &[a], now), Some(b));
        assert!(pool.outcome(a, false, now), "max_fails 1");
        assert_eq!(pool.pick(c, &[], now), Some(b));
        assert_eq!(pool.pick(c, &[b], now), None);
        pool.outcome(b, true, now);
        assert_eq!(
            pool.counters().iter().find(|x| x.0 == b).map(|x| x.1),
            Some(1)
        );
        pool.closed(b, 100);
        assert_eq!(
            pool.counters()
                .iter()
                .find(|x| x.0 == b)
                .map(|x| (x.1, x.2)),
            Some((0, 100))
        );
        // b leaves the configuration with a connection open: kept,
        // counted, never picked; it comes back with its count; it is
        // forgotten when its last connection ends.
        pool.outcome(b, true, now);
        pool.set(&[(a, 1, 1, Duration::from_secs(10))]);
        let now = now + Duration::from_secs(11);
        assert_eq!(pool.pick(c, &[], now), Some(a));
        assert_eq!(
            pool.pick(c, &[], now),
            Some(a),
            "a draining server is not picked"
        );
        assert_eq!(
            pool.counters().iter().find(|x| x.0 == b).map(|x| x.1),
            Some(1)
        );
        pool.set(&[
            (a, 1, 1, Duration::from_secs(10)),
            (b, 1, 1, Duration::from_secs(10)),
        ]);
        assert_eq!(
            pool.counters().iter().find(|x| x.0 == b).map(|x| x.1),
            Some(1),
            "back with its count"
        );
        pool.set(&[(a, 1, 1, Duration::from_secs(10))]);
        pool.closed(b, 5);
        assert_eq!(
            pool.counters().len(),
            1,
            "forgotten with its last connection"
        );
    }
}
