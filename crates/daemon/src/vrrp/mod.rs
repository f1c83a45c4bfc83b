//! The VRRP driver: the engine of `crates/vrrp` on real sockets, on a thread
//! of its own so nothing else can delay an advert.
//!
//! The loop owns the sockets and the clock: it waits on the sockets until the
//! earliest `poll_at()` of all instances, feeds packets and timers to the
//! engines and carries out their actions: IPv4 and IPv6, multicast and
//! unicast, VIPs, routes and rules (rtnetlink), gratuitous ARP and
//! unsolicited NA, graceful stop, sync groups, tracked scripts, processes,
//! interfaces (netlink link events) and files, notify scripts, FIFOs and
//! e-mail. What a reload changes is decided in `crate::change`.

pub mod addrs;
pub mod announce;
mod effects;
mod io;
pub mod net;
mod reload;
mod setup;
pub mod spec;
mod tracking;

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use vrrp::{Action, Family, Input, Instant, Router};

use effects::{carry_out, dump};
use io::UnknownVrid;
use net::{SystemInterfaces, VrrpSocket};
use reload::{trackers, Trackers};
use setup::{heartbeat_sockets, open_announcer, socket_for, sync_groups, vrid_index, GroupView};
use spec::InstanceSpec;
use tracking::{tracked_files, tracked_processes, tracked_scripts};

/// The longest the loop sleeps, so a stop request is seen promptly.
const MAX_WAIT: Duration = Duration::from_millis(100);
/// How often tracked processes are counted (a scan of /proc).
const PROCESS_POLL: Duration = Duration::from_millis(500);
/// Timers due this close are fired together (an advert goes out at most this
/// early; a takeover happens at most this early).
const TIMER_SLACK: Duration = Duration::from_millis(1);
/// Adverts are read at most this often: under load (hundreds of instances)
/// one wake-up then reads many packets instead of one each. An advert waits
/// at most this long to be handled; timers and signals never wait.
const RX_COALESCE: Duration = Duration::from_millis(1);
/// Packets handled per socket per step before timers get their turn.
const RECV_PER_STEP: usize = 512;
/// Packets for VRIDs not configured here are counted, and said at most
/// this often (a flood must not become a flood of log lines).
const UNKNOWN_VRID_LOG: Duration = Duration::from_secs(10);
/// How long `on_dual_master` may run before it is killed.
const DUAL_MASTER_TIMEOUT: Duration = Duration::from_secs(30);
/// How often tracked files are read.
const FILE_POLL: Duration = Duration::from_millis(100);

/// Where SIGUSR1 writes the state of every instance (keepalived's file).
const DATA_DUMP: &str = "/tmp/keepalived.data";
/// Where SIGUSR2 writes the statistics (keepalived's file; ours is JSON).
const STATS_DUMP: &str = "/tmp/keepalived.stats";

struct Instance {
    spec: InstanceSpec,
    router: Router,
    socket: usize,
    /// The split-brain guard's heartbeat paths: our address there and the
    /// socket on that interface.
    heartbeat: Vec<(std::net::IpAddr, usize)>,
    /// What its trackers say is failing hard (why it is in FAULT).
    faults: Vec<String>,
}

/// Runs every `vrrp_instance` until `stop` is set; then stops them gracefully.
#[allow(clippy::too_many_lines)]
pub fn run(
    config: &kaconf::Config,
    stop: &Arc<AtomicBool>,
    status: &crate::control::Shared,
    reloads: &std::sync::mpsc::Receiver<Arc<kaconf::Config>>,
    notify: std::sync::mpsc::Sender<crate::notify::Job>,
    followers: Vec<std::sync::mpsc::Sender<crate::syncd::Msg>>,
    bfd: Arc<crate::bfdd::Hub>,
) -> Result<()> {
    let mut driver = Driver::new(config)?;
    driver.followers = followers;
    driver.bfd = Some(bfd);
    let (tx, rx) = std::sync::mpsc::channel();
    let mut scripts = Vec::new();
    for spec in driver.scripts.values().map(|(s, _)| s.clone()) {
        scripts.push(crate::track::spawn(spec, tx.clone(), stop.clone())?);
    }
    drop(tx);
    driver.script_events = Some(rx);
    let witness_thread = driver.start_witnesses(stop)?;
    let globals = config.globals();
    driver.router_id = globals.router_id.clone().unwrap_or_else(spec::hostname);
    driver.notify = Some(notify);
    driver.read_links();
    driver.file_changes();
    driver.process_changes();
    driver.apply_tracking();
    driver.start();
    let (usr1, usr2) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    signal_hook::flag::register(signal_hook::consts::SIGUSR1, usr1.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGUSR2, usr2.clone())?;
    // Signals also write to a pipe the loop polls, so a stop is handled at
    // once rather than after the current wait (priority 0 goes out at once).
    let (wake_rx, wake_tx) = std::os::unix::net::UnixStream::pair()?;
    wake_rx.set_nonblocking(true)?;
    for sig in [
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGUSR1,
        signal_hook::consts::SIGUSR2,
    ] {
        signal_hook::low_level::pipe::register(sig, wake_tx.try_clone()?)?;
    }
    if let Some(hub) = &driver.bfd {
        hub.set_waker(wake_tx.try_clone()?);
    }
    driver.wake = Some(wake_rx);
    let mut published = Instant::ZERO;
    let mut failed = None;
    // systemd's watchdog vouches for this loop: it is petted here, after
    // each step, so a VRRP thread that stops advancing (blocked, spinning
    // in one step) is restarted by systemd.
    let watchdog = crate::sdnotify::watchdog().map(|d| d / 2);
    let mut petted = std::time::Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if let Some(every) = watchdog {
            if petted.elapsed() >= every {
                crate::sdnotify::notify("WATCHDOG=1");
                petted = std::time::Instant::now();
            }
        }
        // An error or a panic in a step still ends with priority 0 and the
        // VIPs removed below: a thread that dies must not leave a MASTER's
        // addresses behind with nobody advertising them.
        let stepped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            check::fault::at("vrrp");
            driver.step()
        }));
        match stepped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                failed = Some(e);
                break;
            }
            Err(_) => {
                failed = Some(anyhow::anyhow!("the VRRP thread panicked"));
                break;
            }
        }
        while let Ok(new) = reloads.try_recv() {
            driver.reload(&new);
        }
        if usr1.swap(false, Ordering::Relaxed) {
            dump(DATA_DUMP, &crate::control::render(&driver.status()));
        }
        if usr2.swap(false, Ordering::Relaxed) {
            let json = serde_json::to_string_pretty(&driver.status()).unwrap_or_default();
            dump(STATS_DUMP, &json);
        }
        // Publish on every change of state or priority, and the counters
        // once a second.
        let now = driver.now();
        if driver.dirty || now.since(published) >= Duration::from_secs(1) {
            let snapshot = driver.status();
            if let Ok(mut s) = status.lock() {
                s.vrrp = snapshot.vrrp;
            }
            published = now;
            driver.dirty = false;
        }
    }
    if let Some(e) = &failed {
        tracing::error!("VRRP: {e:#}; stopping every part of the daemon");
        // The tracking threads, and the rest of the daemon, stop with us.
        stop.store(true, Ordering::Relaxed);
    }
    tracing::info!("Stopping");
    driver.stop();
    if let Ok(mut s) = status.lock() {
        s.vrrp = driver.status().vrrp;
    }
    for t in scripts.into_iter().chain(witness_thread) {
        let _ = t.join();
    }
    // The notifier (the daemon's) finishes what is queued, the STOP
    // notifications too, once every part has let go of it.
    driver.notify = None;
    failed.map_or(Ok(()), Err)
}

/// Removes the addresses a run that was killed left behind.
fn remove_leftovers(addresses: &mut addrs::Addresses) {
    match addresses.remove_leftovers() {
        Ok(gone) if !gone.is_empty() => {
            tracing::warn!("Removed addresses a previous run left behind: {gone:?}");
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot look for addresses a previous run left: {e}"),
    }
}

/// The sockets, the instances and the clock.
struct Driver {
    sockets: Vec<VrrpSocket>,
    instances: Vec<Instance>,
    /// (socket, VRID) → instance.
    by_vrid: HashMap<(usize, u8), usize>,
    epoch: std::time::Instant,
    /// Tracked scripts and whether each is good now.
    scripts: HashMap<String, (crate::track::ScriptSpec, bool)>,
    script_events: Option<std::sync::mpsc::Receiver<crate::track::ScriptEvent>>,
    /// The split-brain guard's witness verdicts, and each witness set's
    /// instances.
    witness_events: Option<std::sync::mpsc::Receiver<crate::witness::Event>>,
    witness_sets: Vec<Vec<usize>>,
    /// The witness sets the probing thread was started with, and each
    /// one's last verdict (reachable).
    witness_lists: Vec<Vec<crate::vrrp::spec::Witness>>,
    witness_ok: Vec<bool>,
    /// Where notify command lines go (the notifier thread).
    notify: Option<std::sync::mpsc::Sender<crate::notify::Job>>,
    /// Where the instances' states go (IPVS's sync daemon, conntrackd).
    followers: Vec<std::sync::mpsc::Sender<crate::syncd::Msg>>,
    /// Sync groups: the instances of each.
    groups: Vec<Vec<usize>>,
    /// The group of each instance, if any.
    group_of: Vec<Option<usize>>,
    /// A state or priority changed since the status was last published.
    dirty: bool,
    /// `router_id`, for e-mail subjects.
    router_id: String,
    /// Gratuitous ARP senders, one per interface.
    announcers: HashMap<String, announce::Announcer>,
    /// Readable when a signal arrived (see `run`).
    wake: Option<std::os::unix::net::UnixStream>,
    /// Tracked files: path, weight, reverse, and the value now in the file.
    files: HashMap<String, (std::path::PathBuf, i64, bool, i64)>,
    /// Tracked processes and whether each has its quorum.
    processes: HashMap<String, (crate::track::ProcessSpec, crate::track::Quorum)>,
    /// The BFD sessions (`track_bfd`): their states, the generation last
    /// read, and each session's default weight and `reverse`.
    bfd: Option<Arc<crate::bfdd::Hub>>,
    bfd_seen: u64,
    bfd_weights: HashMap<String, (i64, bool)>,
    /// When the processes were last counted.
    processes_checked: Instant,
    /// Tracked interfaces and whether each has its link up.
    links: HashMap<String, bool>,
    /// Link changes from the kernel (`None`: no interface is tracked).
    link_events: Option<crate::netlink::LinkEvents>,
    /// When the tracked files were last read.
    files_checked: Instant,
    /// Tracked paths refused (not regular files), logged once each.
    refused_files: std::collections::HashSet<std::path::PathBuf>,
    /// The VIPs' way into the kernel.
    addresses: addrs::Addresses,
    /// The VMAC interfaces we created, removed on stop.
    vmacs: Vec<addrs::Vmac>,
    /// Every instance's next timer.
    deadlines: vrrp::Deadlines,
    /// Scratch list of the timers due in one step.
    due: Vec<(Instant, usize)>,
    /// When packets were last read (see [`RX_COALESCE`]).
    last_rx: Instant,
    /// Packets for VRIDs no instance here has (see [`UNKNOWN_VRID_LOG`]).
    unknown_vrid: UnknownVrid,
    /// Some instance uses `auth_hmac` (and needs the wall clock).
    hmac: bool,
    /// Scratch list of one instance's actions (no allocation per advert).
    actions: Vec<Action>,
    /// The trackers and sync groups as configured (bodies only), which a
    /// reload cannot change in place.
    trackers: Trackers,
}

impl Driver {
    fn new(config: &kaconf::Config) -> Result<Self> {
        let specs =
            spec::instances(config, &SystemInterfaces).map_err(|e| anyhow::anyhow!("{e}"))?;
        if specs.is_empty() {
            bail!("no vrrp_instance in the configuration");
        }
        let mut sockets: Vec<VrrpSocket> = Vec::new();
        let mut instances = Vec::new();
        let mut announcers: HashMap<String, announce::Announcer> = HashMap::new();
        let mut addresses = addrs::Addresses::open().context("rtnetlink socket")?;
        // VMACs made so far are removed if a later instance fails to start.
        let mut vmacs = VmacGuard(Vec::new());
        remove_leftovers(&mut addresses);
        for spec in specs {
            // The VIPs are ours: whoever put them here, a BACKUP must not
            // hold them (keepalived removes them on start, too).
            for a in &spec.addresses {
                if let Err(e) = addresses.remove(a) {
                    tracing::warn!("({}) cleaning up {}: {e}", spec.name, a.addr);
                }
            }
            vmacs.add(&mut addresses, &spec)?;
            let socket = socket_for(&mut sockets, &spec)?;
            let heartbeat = heartbeat_sockets(&mut sockets, &spec)?;
            open_announcer(&mut announcers, &spec);
            instances.push(Instance {
                router: Router::new(spec.engine.clone()),
                spec,
                socket,
                heartbeat,
                faults: Vec::new(),
            });
        }
        let by_vrid = vrid_index(&instances);
        let policy = crate::exec::Policy::from_globals(&config.globals());
        let scripts = tracked_scripts(config, &instances, &policy);
        let (groups, group_of) = sync_groups(config, &instances);
        // Each tracked interface once, however many instances track it.
        let links: HashMap<String, bool> = instances
            .iter()
            .flat_map(|i| {
                i.spec
                    .track_interfaces
                    .iter()
                    .map(|(n, _)| (n.clone(), true))
            })
            .collect();
        let link_events = if links.is_empty() {
            None
        } else {
            Some(crate::netlink::LinkEvents::open().context("rtnetlink link events")?)
        };
        let mut this = Self {
            sockets,
            instances,
            by_vrid,
            epoch: std::time::Instant::now(),
            scripts,
            script_events: None,
            trackers: trackers(config),
            witness_events: None,
            witness_sets: Vec::new(),
            witness_lists: Vec::new(),
            witness_ok: Vec::new(),
            notify: None,
            followers: Vec::new(),
            links,
            files: tracked_files(config),
            processes: tracked_processes(config),
            bfd: None,
            bfd_seen: 0,
            bfd_weights: tracking::bfd_weights(config),
            processes_checked: Instant::ZERO,
            files_checked: Instant::ZERO,
            refused_files: std::collections::HashSet::new(),
            link_events,
            addresses,
            vmacs: std::mem::take(&mut vmacs.0),
            deadlines: vrrp::Deadlines::default(),
            actions: Vec::new(),
            due: Vec::new(),
            last_rx: Instant::ZERO,
            unknown_vrid: UnknownVrid::default(),
            hmac: false,
            wake: None,
            router_id: String::new(),
            announcers,
            dirty: true,
            groups,
            group_of,
        };
        this.hmac = this
            .instances
            .iter()
            .any(|i| i.router.config().auth_hmac.is_some());
        this.set_wall_clock();
        for g in this.groups.clone() {
            vrrp::sync::hold(&mut GroupView {
                instances: &mut this.instances,
                idx: &g,
            });
        }
        Ok(this)
    }

    fn now(&self) -> Instant {
        Instant::from_micros(u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX))
    }

    /// Feeds instance `i` (through its sync group, if it has one) and carries
    /// out what every moved instance asks.
    fn feed(&mut self, i: usize, input: Input) {
        let now = self.now();
        self.feed_at(i, now, input);
    }

    /// Like [`Driver::feed`] at time `now` (a timer fired a little early is
    /// handled at its own deadline).
    fn feed_at(&mut self, i: usize, now: Instant, input: Input) {
        let Some(g) = self.group_of[i] else {
            let mut actions = std::mem::take(&mut self.actions);
            actions.clear();
            self.instances[i]
                .router
                .handle_into(now, input, &mut actions);
            self.after(i, &mut actions);
            return;
        };
        // The group's member list is lent out while its members move.
        let idx = std::mem::take(&mut self.groups[g]);
        let pos = idx.iter().position(|&x| x == i).unwrap_or(0);
        let mut view = GroupView {
            instances: &mut self.instances,
            idx: &idx,
        };
        for (p, a) in vrrp::sync::handle(&mut view, now, pos, input) {
            self.execute(idx[p], std::slice::from_ref(&a));
        }
        for &m in &idx {
            self.deadlines.set(m, self.instances[m].router.poll_at());
        }
        self.groups[g] = idx;
    }

    /// Carries out the `actions` instance `i` (in no sync group) returned,
    /// updates its deadline and keeps the emptied vector for the next step.
    fn after(&mut self, i: usize, actions: &mut Vec<Action>) {
        self.execute(i, actions);
        actions.clear();
        self.actions = std::mem::take(actions);
        self.deadlines.set(i, self.instances[i].router.poll_at());
    }

    /// Carries out `actions` of instance `i` and runs its notify scripts.
    fn execute(&mut self, i: usize, actions: &[Action]) {
        carry_out(
            &self.instances[i],
            &mut self.sockets,
            &mut self.announcers,
            &mut self.addresses,
            actions,
        );
        self.dirty |= actions.iter().any(|a| {
            matches!(
                a,
                Action::State { .. } | Action::Priority { .. } | Action::DualMaster { .. }
            )
        });
        for tx in &self.followers {
            for a in actions {
                if let Action::State { to, .. } = a {
                    let _ = tx.send(crate::syncd::Msg::State {
                        instance: self.instances[i].spec.name.clone(),
                        master: *to == vrrp::StateName::Master,
                    });
                }
            }
        }
        if let Some(tx) = &self.notify {
            let inst = &self.instances[i];
            for a in actions {
                if let Action::DualMaster { peer, priority } = a {
                    if let Some(script) = inst
                        .spec
                        .guard
                        .as_ref()
                        .and_then(|g| g.on_dual_master.as_ref())
                    {
                        // At most one run at a time per instance: a new
                        // episode while the last run goes on starts none.
                        let _ = tx.send(crate::notify::Job::Once {
                            key: format!("on_dual_master {}", inst.spec.name),
                            script: script.with_args([
                                inst.spec.name.clone(),
                                peer.to_string(),
                                priority.to_string(),
                            ]),
                            timeout: DUAL_MASTER_TIMEOUT,
                        });
                    }
                }
                if let Action::State { to, .. } = a {
                    for argv in
                        inst.spec
                            .notify
                            .for_state(&inst.spec.name, *to, inst.router.priority())
                    {
                        let _ = tx.send(crate::notify::Job::Run(argv));
                    }
                    let line =
                        crate::notify::fifo_line(&inst.spec.name, *to, inst.router.priority());
                    let _ = tx.send(crate::notify::Job::Fifo(crate::notify::Source::Vrrp, line));
                    if inst.spec.smtp_alert {
                        let alert =
                            crate::notify::vrrp_alert(&self.router_id, &inst.spec.name, *to);
                        let _ = tx.send(crate::notify::Job::Mail(alert));
                    }
                }
            }
        }
    }

    fn start(&mut self) {
        for i in 0..self.instances.len() {
            self.feed(i, Input::Start);
        }
        self.flush();
    }

    fn stop(&mut self) {
        for i in 0..self.instances.len() {
            self.feed(i, Input::Stop);
        }
        self.flush();
        for v in std::mem::take(&mut self.vmacs).into_iter().rev() {
            if let Err(e) = self.addresses.remove_vmac(&v) {
                tracing::warn!("removing VMAC {}: {e}", v.name);
            }
        }
    }

    /// Tells the engines with `auth_hmac` the wall-clock time at their epoch
    /// (its sequence numbers are wall-clock stamps). Read again at every
    /// step: when the clock is stepped (NTP's first correction, `date -s`),
    /// our stamps follow at once, as keepalived's do.
    fn set_wall_clock(&mut self) {
        if !self.hmac {
            return;
        }
        let wall_now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let at_zero = wall_now.saturating_sub(self.epoch.elapsed());
        let micros = u64::try_from(at_zero.as_micros()).unwrap_or(0);
        for i in &mut self.instances {
            if i.router.config().auth_hmac.is_some() {
                i.router.set_wall_clock(micros);
            }
        }
    }

    /// Sends the adverts queued on every socket (one `sendmmsg` each).
    fn flush(&mut self) {
        for s in &mut self.sockets {
            if let Err(e) = s.flush() {
                tracing::warn!("sending adverts on {}: {e}", s.ifname);
            }
        }
    }

    /// Waits for a packet or the next timer (at most [`MAX_WAIT`]) and handles it.
    fn step(&mut self) -> Result<()> {
        self.witness_changes();
        let scripts = self.script_changes();
        let processes = self.process_changes();
        let files = self.file_changes();
        let bfd = self.bfd_changes();
        if self.link_changes() || files || scripts || processes || bfd {
            self.apply_tracking();
        }
        let t = self.now();
        let next = self.deadlines.earliest();
        let wait = next.map_or(MAX_WAIT, |n| n.since(t).min(MAX_WAIT));
        // Receive coalescing: adverts are read at most once per RX_COALESCE.
        // Until then the loop waits only for timers and signals, and the
        // packets that arrive meanwhile are read together.
        let since_rx = t.since(self.last_rx);
        let ready = if since_rx < RX_COALESCE {
            self.wait(wait.min(RX_COALESCE.saturating_sub(since_rx)), false)?
        } else {
            self.wait(wait, true)?
        };
        if ready.iter().any(|r| *r) {
            self.last_rx = self.now();
        }
        self.set_wall_clock();
        for si in (0..self.sockets.len()).filter(|i| ready[*i]) {
            self.receive(si);
        }
        // Fire every timer due now or within TIMER_SLACK: with many instances
        // this batches their adverts into one wake-up instead of one each.
        let t = self.now();
        let mut due = std::mem::take(&mut self.due);
        self.deadlines.take_due(t + TIMER_SLACK, &mut due);
        for &(at, i) in &due {
            self.feed_at(i, at.max(t), Input::Timer);
        }
        due.clear();
        self.due = due;
        self.flush();
        Ok(())
    }
}

/// However the driver ends (an error in the loop, a failure while starting
/// scripts or signals), it stops: priority 0, VIPs, routes and VMACs
/// removed. After a normal stop this finds nothing left to do.
impl std::ops::Drop for Driver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// VMACs created while the driver is being built: deleted again if it
/// cannot be (an error in a later instance), handed to the driver otherwise.
struct VmacGuard(Vec<addrs::Vmac>);

impl VmacGuard {
    /// Creates `spec`'s VMAC, if it has one (each name once).
    fn add(&mut self, addresses: &mut addrs::Addresses, spec: &InstanceSpec) -> Result<()> {
        let Some(v) = &spec.vmac else {
            return Ok(());
        };
        if self.0.iter().any(|m| m.name == v.name) {
            bail!(
                "({}) VMAC {} is already another instance's; name it: use_vmac NAME",
                spec.name,
                v.name
            );
        }
        let vmac = addresses
            .add_vmac(v, &spec.interface)
            .with_context(|| format!("({}) VMAC {} on {}", spec.name, v.name, spec.interface))?;
        self.0.push(vmac);
        tracing::info!("({}) VMAC {} created", spec.name, v.name);
        Ok(())
    }
}

impl std::ops::Drop for VmacGuard {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        if let Ok(mut a) = addrs::Addresses::open() {
            for v in self.0.drain(..).rev() {
                let _ = a.remove_vmac(&v);
            }
        }
    }
}
