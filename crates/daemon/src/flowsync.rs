//! `lvs_sync_daemon` on the nftables DR plane: this director's flow
//! memory (which real server each connection went to) sent to the other
//! directors, and theirs written into ours, so a takeover keeps every
//! connection on its server whatever the scheduler (`lb::flows` has the
//! datagram and the map work; this thread has the socket and the roles).
//!
//! The roles follow the instance as IPVS's daemons do: while it is
//! MASTER this node sends, otherwise it receives; without an instance it
//! does both and never overwrites a choice of its own. Sent: every new or
//! moved entry once a second, and every entry again each [`REFRESH`] (so
//! a director that starts late learns them, and the copies do not expire
//! before the originals); on the way out, whatever is new since the last
//! send. Received entries are written once a second, and at once when the
//! instance becomes MASTER, before it can carry anything.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lb::flows::{Flow, Overwrite};
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};

use crate::syncd::{Follower, Msg, Parts, Spec};

/// IPVS's sync group and port, which `lvs_sync_daemon` defaults to.
const GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 81);
const PORT: u16 = 8848;
/// How often the map is read and sent, and received entries written, at
/// most: a map that takes long to read is read less often, so reading it
/// takes at most a tenth of the time (`DUTY`), up to every `TICK_MAX`.
const TICK: Duration = Duration::from_secs(1);
const DUTY: u32 = 10;
const TICK_MAX: Duration = Duration::from_secs(10);
/// How often every entry is sent again.
pub const REFRESH: Duration = Duration::from_secs(60);
/// How long after becoming MASTER received entries are still taken (the
/// old master's last send, under [`Overwrite::Ours`]).
const GRACE: Duration = Duration::from_secs(5);
/// How long an entry waits for its service's servers to be resolved.
const WAIT_MAX: Duration = Duration::from_secs(30);
/// The most received entries kept waiting for the next write.
const PENDING_MAX: usize = 1 << 18;
/// The receive buffer asked for.
const RCVBUF: usize = 8 << 20;
/// Datagrams sent back to back before a pause of a millisecond.
const BURST: usize = 64;
/// The datagram size when `maxlen` does not say.
const MAXLEN: usize = 1400;

/// Whether the configuration has a virtual server this thread serves:
/// DR carried by nftables.
pub fn wanted(config: &kaconf::Config) -> bool {
    crate::dataplane::specs(config)
        .iter()
        .any(|s| s.kind == lb::model::Kind::Dr && s.carrier == lb::model::Carrier::Nftables)
}

/// Starts the thread when `lvs_sync_daemon` is set (and admitted for the
/// parts that run) and an nftables DR service exists; `None` otherwise.
/// A reload that changes the setting opens the socket again.
pub fn start(
    config: &kaconf::Config,
    parts: Parts,
    status: crate::control::Shared,
    reloads: Receiver<Arc<kaconf::Config>>,
) -> std::io::Result<Option<Follower>> {
    let Some(spec) = parts
        .admit(crate::syncd::spec(config))
        .filter(|_| wanted(config))
    else {
        return Ok(None);
    };
    // Dropped, it sends what is new first.
    Follower::spawn("flow-sync", "flow sync", move |rx| {
        run(spec, parts, &rx, &reloads, &status);
    })
    .map(Some)
}

/// The group and port `spec` sends to.
pub fn destination(spec: &Spec) -> SocketAddr {
    SocketAddr::new(
        spec.daemon.group.unwrap_or(IpAddr::V4(GROUP)),
        spec.daemon.port.unwrap_or(PORT),
    )
}

fn open(spec: &Spec) -> std::io::Result<UdpSocket> {
    let dest = destination(spec);
    let ifname = spec.daemon.interface.as_str();
    let ifindex = nix::net::if_::if_nametoindex(ifname).map_err(std::io::Error::from)?;
    let domain = if dest.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.bind_device(Some(ifname.as_bytes()))?;
    let ttl = u32::from(spec.daemon.ttl.unwrap_or(1));
    match dest.ip() {
        IpAddr::V4(g) => {
            s.join_multicast_v4_n(&g, &InterfaceIndexOrAddress::Index(ifindex))?;
            s.set_multicast_loop_v4(false)?;
            s.set_multicast_ttl_v4(ttl)?;
            // Bound to the group, not to any address: a unicast datagram
            // to this director (from anywhere it is routed from) is not
            // taken, and 224.0.0.0/24 groups never leave the link.
            s.bind(&dest.into())?;
        }
        IpAddr::V6(g) => {
            s.join_multicast_v6(&g, ifindex)?;
            s.set_multicast_if_v6(ifindex)?;
            s.set_multicast_loop_v6(false)?;
            s.set_multicast_hops_v6(ttl)?;
            s.bind(
                &SocketAddr::V6(std::net::SocketAddrV6::new(g, dest.port(), 0, ifindex)).into(),
            )?;
        }
    }
    // A full refresh arrives as one burst while this thread may be busy
    // writing the last one: room for a few hundred thousand entries
    // (past net.core.rmem_max, which root may).
    if nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::RcvBufForce, &RCVBUF).is_err() {
        s.set_recv_buffer_size(RCVBUF)?;
    }
    let s = UdpSocket::from(s);
    s.set_read_timeout(Some(Duration::from_millis(50)))?;
    Ok(s)
}

/// Whether `e` means the interface under the socket is gone or down (the
/// socket is opened again), rather than a passing failure.
fn gone(e: &std::io::Error) -> bool {
    use nix::errno::Errno;
    e.raw_os_error().is_some_and(|n| {
        [
            Errno::ENODEV,
            Errno::ENXIO,
            Errno::ENETDOWN,
            Errno::EADDRNOTAVAIL,
        ]
        .iter()
        .any(|x| *x as i32 == n)
    })
}

/// What the thread counts, for `status`.
#[derive(Debug, Default)]
struct Counts {
    sent: u64,
    received: u64,
    written: u64,
    refused: u64,
    bad: u64,
    dropped: u64,
    last_sent: Option<std::time::SystemTime>,
    last_received: Option<std::time::SystemTime>,
    error: Option<String>,
}

struct State {
    spec: Spec,
    socket: Option<UdpSocket>,
    master: bool,
    /// When the instance last became MASTER: what the old master sends
    /// on its way out is still taken for a while after.
    master_since: Option<Instant>,
    /// The last read of our table: what arriving entries are checked
    /// against before they are queued.
    known: lb::flows::Table,
    /// What was sent, and when: the server and the time.
    sent: HashMap<(u32, IpAddr, u16), ([u8; 6], Instant)>,
    /// Received entries not written yet, with when they arrived.
    pending: Vec<(Flow, Instant)>,
    /// Every instance's last state, as the VRRP thread sent it.
    masters: HashMap<String, bool>,
    counts: Counts,
    /// How long the last read of the map took.
    read: Duration,
}

impl State {
    fn fail(&mut self, why: String) {
        if self.counts.error.as_deref() != Some(why.as_str()) {
            tracing::error!("flow sync: {why}");
        }
        self.counts.error = Some(why);
    }

    fn socket(&mut self) -> Option<&UdpSocket> {
        if self.socket.is_none() {
            match open(&self.spec) {
                Ok(s) => {
                    tracing::info!(
                        "flow sync: on {} to {} (sync id {})",
                        self.spec.daemon.interface,
                        destination(&self.spec),
                        self.spec.daemon.sync_id
                    );
                    self.socket = Some(s);
                    self.counts.error = None;
                }
                Err(e) => self.fail(format!("{}: {e}", self.spec.daemon.interface)),
            }
        }
        self.socket.as_ref()
    }

    /// The time between two reads of the map.
    fn interval(&self) -> Duration {
        (self.read * DUTY).clamp(TICK, TICK_MAX)
    }

    fn sends(&self) -> bool {
        self.spec.instance.is_none() || self.master
    }

    fn receives(&self) -> bool {
        self.spec.instance.is_none()
            || !self.master
            || self.master_since.is_some_and(|t| t.elapsed() < GRACE)
    }

    /// Received entries may replace our own choices only while this node
    /// does not carry the VIP.
    fn overwrite(&self) -> Overwrite {
        if self.spec.instance.is_some() && !self.master {
            Overwrite::Theirs
        } else {
            Overwrite::Ours
        }
    }

    /// A socket that failed is closed, and opened again after a pause (an
    /// interface deleted and created again, say).
    fn lost(&mut self, why: String) {
        self.fail(why);
        self.socket = None;
        std::thread::sleep(Duration::from_millis(200));
    }

    /// Takes whatever is already in the socket's buffer, without waiting.
    fn drain(&mut self) {
        let Some(s) = self.socket.as_ref() else {
            return;
        };
        if s.set_nonblocking(true).is_err() {
            return;
        }
        self.receive(Duration::from_millis(200), true);
        // A socket left non-blocking would make every later read spin.
        if self
            .socket
            .as_ref()
            .is_some_and(|s| s.set_nonblocking(false).is_err())
        {
            self.socket = None;
        }
    }

    /// Sends what is new or moved, and what was last sent `REFRESH` ago.
    fn send(&mut self) {
        let Some(table) = self.read_table() else {
            return;
        };
        let now = Instant::now();
        let due: Vec<Flow> = table
            .flows
            .iter()
            .filter(|f| {
                self.sent
                    .get(&f.key())
                    .is_none_or(|(mac, at)| *mac != f.mac || now.duration_since(*at) >= REFRESH)
            })
            .copied()
            .collect();
        let live: std::collections::HashSet<_> = table.flows.iter().map(Flow::key).collect();
        self.sent.retain(|k, _| live.contains(k));
        if due.is_empty() {
            return;
        }
        let max = self.spec.daemon.maxlen.map_or(MAXLEN, usize::from);
        let dest = destination(&self.spec);
        let grams = lb::flows::encode(self.spec.daemon.sync_id, &due, max);
        let Some(s) = self.socket() else { return };
        let mut failed = None;
        for (n, g) in grams.iter().enumerate() {
            if n > 0 && n % BURST == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            if let Err(e) = s.send_to(g, dest) {
                failed = Some(e);
                break;
            }
        }
        if let Some(e) = failed {
            let why = format!("sending to {dest}: {e}");
            if gone(&e) {
                self.lost(why);
            } else {
                self.fail(why);
            }
            return;
        }
        self.counts.error = None;
        for f in &due {
            self.sent.insert(f.key(), (f.mac, now));
        }
        self.counts.sent += due.len() as u64;
        self.counts.last_sent = Some(std::time::SystemTime::now());
    }

    /// Reads what arrived (for at most `budget`).
    fn receive(&mut self, budget: Duration, drain: bool) {
        let until = Instant::now() + budget;
        let mut buf = vec![0u8; 65536];
        let id = self.spec.daemon.sync_id;
        while Instant::now() < until {
            let Some(s) = self.socket() else {
                std::thread::sleep(budget.min(Duration::from_millis(200)));
                return;
            };
            let n = match s.recv(&mut buf) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    // A drain (non-blocking): nothing more there.
                    if drain {
                        return;
                    }
                    continue;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if gone(&e) => return self.lost(format!("receiving: {e}")),
                Err(e) => {
                    self.fail(format!("receiving: {e}"));
                    std::thread::sleep(Duration::from_millis(50));
                    return;
                }
            };
            if !self.receives() {
                continue;
            }
            match lb::flows::decode(&buf[..n]) {
                Ok((sid, flows)) if sid == id => {
                    self.counts.received += flows.len() as u64;
                    self.counts.last_received = Some(std::time::SystemTime::now());
                    // Only entries for maps we have take room (until our
                    // plane has made its maps, all are kept); the write
                    // checks the servers on a fresh read.
                    let fresh = self.known.v4.is_empty();
                    let (ok, refused): (Vec<Flow>, Vec<Flow>) = flows.into_iter().partition(|f| {
                        fresh || self.known.v4.get(&f.map) == Some(&f.client.is_ipv4())
                    });
                    self.counts.refused += refused.len() as u64;
                    let room = PENDING_MAX.saturating_sub(self.pending.len());
                    self.counts.dropped += ok.len().saturating_sub(room) as u64;
                    let now = Instant::now();
                    self.pending
                        .extend(ok.into_iter().take(room).map(|f| (f, now)));
                }
                Ok(_) => {}
                Err(e) => {
                    self.counts.bad += 1;
                    tracing::debug!("flow sync: a datagram refused: {e}");
                }
            }
        }
    }

    /// Reads our table (and how long that took, for the interval).
    fn read_table(&mut self) -> Option<lb::flows::Table> {
        let began = Instant::now();
        match lb::flows::dump() {
            Ok(t) => {
                self.read = began.elapsed();
                self.known = lb::flows::Table {
                    flows: Vec::new(),
                    ..t.clone()
                };
                Some(t)
            }
            Err(e) => {
                self.fail(format!("reading the flows: {e}"));
                None
            }
        }
    }

    /// Writes the received entries into our maps, a chunk per
    /// transaction: a chunk `nft` refuses (an entry that expired since
    /// the read) is tried once more on a fresh read, then dropped.
    fn write(&mut self) {
        // Read every tick even with nothing to write: arriving entries are
        // checked against this read.
        let Some(table) = self.read_table() else {
            return;
        };
        if self.pending.is_empty() {
            return;
        }
        let overwrite = self.overwrite();
        let mut queued = std::mem::take(&mut self.pending);
        // Newest first: of two copies of an entry, the later one counts.
        queued.reverse();
        let arrived: HashMap<(u32, std::net::IpAddr, u16), Instant> =
            queued.iter().rev().map(|(f, t)| (f.key(), *t)).collect();
        let incoming: Vec<Flow> = queued.into_iter().map(|(f, _)| f).collect();
        let r = lb::flows::restore(&table, &incoming, overwrite);
        self.counts.refused += r.refused as u64;
        // Our plane has not resolved that service's servers yet: they wait,
        // but not for ever (a service whose servers are all down has none).
        let now = Instant::now();
        let mut expired = 0u64;
        for f in &r.waiting {
            let at = arrived.get(&f.key()).copied().unwrap_or(now);
            if now.duration_since(at) < WAIT_MAX && self.pending.len() < PENDING_MAX {
                self.pending.push((*f, at));
            } else {
                expired += 1;
            }
        }
        self.counts.dropped += expired;
        let mut again: Vec<Flow> = Vec::new();
        for (n, (t, entries)) in r.transactions.iter().zip(&r.entries).enumerate() {
            match lb::nft::apply(t) {
                Ok(()) => self.counts.written += entries.len() as u64,
                Err(e) => {
                    tracing::debug!("flow sync: chunk {n} refused: {e}");
                    again.extend(entries);
                }
            }
        }
        if again.is_empty() {
            self.counts.error = None;
            return;
        }
        // The refused chunks' entries (one that expired since the read
        // fails its chunk), read again and written again, once.
        let Some(table) = self.read_table() else {
            return;
        };
        let r = lb::flows::restore(&table, &again, overwrite);
        for (t, entries) in r.transactions.iter().zip(&r.entries) {
            match lb::nft::apply(t) {
                Ok(()) => self.counts.written += entries.len() as u64,
                Err(e) => {
                    self.counts.dropped += entries.len() as u64;
                    self.fail(format!("writing {} flows: {e}", entries.len()));
                }
            }
        }
    }

    fn publish(&self, status: &crate::control::Shared) {
        let secs = |t: Option<std::time::SystemTime>| {
            t.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs())
        };
        let c = &self.counts;
        let view = crate::control::FlowSyncStatus {
            interface: self.spec.daemon.interface.clone(),
            destination: destination(&self.spec).to_string(),
            instance: self.spec.instance.clone(),
            sync_id: self.spec.daemon.sync_id,
            sending: self.sends(),
            receiving: self.receives(),
            sent: c.sent,
            received: c.received,
            written: c.written,
            refused: c.refused,
            bad_datagrams: c.bad,
            dropped: c.dropped,
            last_sent_unix: secs(c.last_sent),
            last_received_unix: secs(c.last_received),
            last_read_ms: u64::try_from(self.read.as_millis()).unwrap_or(u64::MAX),
            interval_ms: u64::try_from(self.interval().as_millis()).unwrap_or(u64::MAX),
            error: c.error.clone(),
        };
        if let Ok(mut s) = status.lock() {
            s.flow_sync = Some(view);
        }
    }
}

fn run(
    spec: Spec,
    parts: Parts,
    rx: &Receiver<Msg>,
    reloads: &Receiver<Arc<kaconf::Config>>,
    status: &crate::control::Shared,
) {
    let mut st = State {
        spec,
        socket: None,
        master: false,
        master_since: None,
        known: lb::flows::Table::default(),
        sent: HashMap::new(),
        pending: Vec::new(),
        masters: HashMap::new(),
        counts: Counts::default(),
        read: Duration::ZERO,
    };
    let mut next = Instant::now();
    loop {
        match rx.recv_timeout(Duration::from_millis(1)) {
            Ok(Msg::State { instance, master }) => {
                st.masters.insert(instance.clone(), master);
                if st.spec.instance.as_deref() == Some(instance.as_str()) && st.master != master {
                    if master {
                        // What has arrived, written before this node
                        // carries the VIP's traffic, as the backup it was
                        // (their choices win); the VRRP thread does not
                        // wait for it: this is as soon as it can be.
                        st.drain();
                        st.write();
                        st.master = true;
                        st.master_since = Some(Instant::now());
                    } else {
                        // What is new since the last send, while the map
                        // is still there (a handover, a stop).
                        st.send();
                        st.master = false;
                        st.master_since = None;
                    }
                    tracing::info!(
                        "flow sync: {} now",
                        if master { "sending" } else { "receiving" }
                    );
                }
                continue;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        while let Ok(config) = reloads.try_recv() {
            let new = parts
                .admit(crate::syncd::spec(&config))
                .filter(|_| wanted(&config));
            match new {
                Some(n) if n != st.spec => {
                    tracing::info!("flow sync: the reload changes lvs_sync_daemon");
                    st.spec = n;
                    st.socket = None;
                    st.sent.clear();
                    st.pending.clear();
                    // The instance may be another: its last state counts
                    // (the VRRP thread sends one only on a change).
                    st.master = st
                        .spec
                        .instance
                        .as_ref()
                        .is_some_and(|i| st.masters.get(i) == Some(&true));
                    st.master_since = None;
                }
                Some(_) => {}
                None => tracing::warn!(
                    "flow sync: the reload drops lvs_sync_daemon (or the DR services); it stops at the next restart"
                ),
            }
        }
        let left = next.saturating_duration_since(Instant::now());
        if !left.is_zero() {
            // In slices, so a state change is seen within one.
            st.receive(left.min(Duration::from_millis(50)), false);
            continue;
        }
        if st.sends() {
            st.send();
        }
        next = Instant::now() + st.interval();
        // After the grace of a takeover, what arrived in it is written too.
        if st.receives() || !st.pending.is_empty() {
            st.write();
        }
        st.publish(status);
    }
    // The tables are being removed by now (the checkers stop with
    // VRRP): what was new went out when the instance left MASTER.
    st.publish(status);
}
