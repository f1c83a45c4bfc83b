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
pub mod net;
pub mod spec;

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use vrrp::{Action, Family, Input, Instant, Router};

use net::{SystemInterfaces, VrrpSocket};
use spec::InstanceSpec;

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

fn dump(path: &str, text: &str) {
    match write_fresh(std::path::Path::new(path), text) {
        Ok(()) => tracing::info!("Wrote {path}"),
        Err(e) => tracing::warn!("cannot write {path}: {e}"),
    }
}

/// Writes `text` to a new file at `path` (in a world-writable /tmp): what
/// was there is unlinked, never followed — a symlink planted there is
/// removed, not written through (keepalived's CVE-2018-19044 class) — and
/// the file is created exclusively, so one planted between the two steps
/// makes the write fail instead.
fn write_fresh(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)?;
    f.write_all(text.as_bytes())
}

/// The `vrrp_script`s some instance tracks, each starting good (or failed
/// with `init_fail`), run as their `user` or the global default. A script
/// whose user does not exist, or that `enable_script_security` refuses to run
/// as root, is disabled, as keepalived does: instances do not track it.
fn tracked_scripts(
    config: &kaconf::Config,
    instances: &[Instance],
    policy: &crate::exec::Policy,
) -> HashMap<String, (crate::track::ScriptSpec, bool)> {
    let wanted: std::collections::HashSet<&str> = instances
        .iter()
        .flat_map(|i| i.spec.track_scripts.iter().map(|(n, _)| n.as_str()))
        .collect();
    let mut out = HashMap::new();
    for s in config
        .vrrp_scripts
        .iter()
        .filter(|s| wanted.contains(s.name.as_str()))
    {
        let Some(mut spec) = crate::track::script_spec(s) else {
            continue;
        };
        spec.run_as = match policy.run_as(s.body.user.as_ref().map(|w| w.0.as_slice())) {
            Ok(u) => u,
            Err(e) => {
                tracing::error!("Disabling track script {}: {e}", s.name);
                continue;
            }
        };
        if let Some(why) = policy.refuses(&spec.argv, spec.run_as.as_ref()) {
            tracing::warn!(
                "Disabling track script {} since it is insecure: {why}",
                s.name
            );
            continue;
        }
        let good = !spec.init_fail;
        out.insert(s.name.clone(), (spec, good));
    }
    out
}

/// Every `vrrp_track_process` block, assumed satisfied until first counted.
fn tracked_processes(
    config: &kaconf::Config,
) -> HashMap<String, (crate::track::ProcessSpec, crate::track::Quorum)> {
    config
        .track_processes
        .iter()
        .filter_map(|p| {
            crate::track::process_spec(p)
                .map(|s| (p.name.clone(), (s, crate::track::Quorum::new(true))))
        })
        .collect()
}

/// Every `track_file` block: path, weight (default 1), reverse, current value.
fn tracked_files(config: &kaconf::Config) -> HashMap<String, (std::path::PathBuf, i64, bool, i64)> {
    config
        .track_files
        .iter()
        .filter_map(|t| {
            let path = std::path::PathBuf::from(t.body.file.as_ref()?);
            let (w, rev) = t.body.weight.map_or((1, false), |w| (w.weight, w.reverse));
            let value = check::file::read_value(&path).ok().flatten().unwrap_or(0);
            Some((t.name.clone(), (path, w, rev, value)))
        })
        .collect()
}

struct Instance {
    spec: InstanceSpec,
    router: Router,
    socket: usize,
    /// The split-brain guard's heartbeat paths: our address there and the
    /// socket on that interface.
    heartbeat: Vec<(std::net::IpAddr, usize)>,
}

/// Runs every `vrrp_instance` until `stop` is set; then stops them gracefully.
#[allow(clippy::too_many_lines)]
pub fn run(
    config: &kaconf::Config,
    stop: &Arc<AtomicBool>,
    status: &crate::control::Shared,
    reloads: &std::sync::mpsc::Receiver<Arc<kaconf::Config>>,
) -> Result<()> {
    let mut driver = Driver::new(config)?;
    let (tx, rx) = std::sync::mpsc::channel();
    let mut scripts = Vec::new();
    for spec in driver.scripts.values().map(|(s, _)| s.clone()) {
        scripts.push(crate::track::spawn(spec, tx.clone(), stop.clone())?);
    }
    drop(tx);
    driver.script_events = Some(rx);
    let witness_thread = driver.start_witnesses(stop)?;
    let globals = config.globals();
    // Each FIFO with the script that reads it, if one is configured.
    let fifos: Vec<crate::notify::Fifo> = [
        (&globals.notify_fifo, &globals.notify_fifo_script),
        (&globals.vrrp_notify_fifo, &globals.vrrp_notify_fifo_script),
    ]
    .into_iter()
    .filter_map(|(fifo, script)| crate::notify::Fifo::from_config(fifo.as_ref(), script.as_ref()))
    .collect();
    let policy = crate::exec::Policy::from_globals(&globals);
    let (notify_tx, notifier) = crate::notify::start(fifos, spec::smtp(&globals), policy)?;
    driver.router_id = globals.router_id.clone().unwrap_or_else(spec::hostname);
    driver.notify = Some(notify_tx);
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
    // The notifier finishes what is queued (the STOP notifications) and ends.
    driver.notify = None;
    let _ = notifier.join();
    failed.map_or(Ok(()), Err)
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
        match addresses.remove_leftovers() {
            Ok(gone) if !gone.is_empty() => {
                tracing::warn!("Removed addresses a previous run left behind: {gone:?}");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("cannot look for addresses a previous run left: {e}"),
        }
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
            links,
            files: tracked_files(config),
            processes: tracked_processes(config),
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

    /// The state of every instance, for the control socket.
    fn status(&self) -> crate::control::Status {
        let now = self.now();
        let vrrp = self
            .instances
            .iter()
            .map(|i| {
                let c = i.router.counters();
                crate::control::InstanceStatus {
                    name: i.spec.name.clone(),
                    vrid: i.spec.engine.vrid,
                    interface: i.spec.interface.clone(),
                    state: i.router.state().to_string(),
                    priority: i.spec.engine.priority,
                    effective_priority: i.router.priority(),
                    vips: i.spec.engine.vips.iter().map(ToString::to_string).collect(),
                    adverts_received: c.received,
                    adverts_sent: c.sent,
                    became_master: c.became_master,
                    priority_zero_received: c.priority_zero_received,
                    lower_prio_received: c.lower_prio_received,
                    lower_prio_unanswered: c.lower_prio_unanswered,
                    split_brain_suspected: i.router.split_brain_suspected(now),
                    dual_master_episodes: c.dual_master_episodes,
                    guard_faults: c.guard_faults,
                    dropped: c.dropped.iter().map(|(k, v)| (drop_name(*k), *v)).collect(),
                    auth_hmac: i.router.config().auth_hmac.as_ref().map(|h| {
                        crate::control::HmacStatus {
                            mode: match h.mode {
                                vrrp::auth_hmac::Mode::Enforce => "enforce",
                                vrrp::auth_hmac::Mode::Permissive => "permissive",
                                vrrp::auth_hmac::Mode::ReceiveOnly => "receive-only",
                            }
                            .into(),
                            active_key: h.active_key,
                            accepted: c.hmac_accepted,
                            unsigned: c.hmac_unsigned,
                        }
                    }),
                }
            })
            .collect();
        crate::control::Status {
            vrrp,
            ..crate::control::Status::default()
        }
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
                    let _ = tx.send(crate::notify::Job::Fifo(line));
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

    /// Feeds every instance the weight and fault of its tracked scripts.
    fn apply_tracking(&mut self) {
        for i in 0..self.instances.len() {
            let mut weight = 0i64;
            let mut fault = false;
            // Scripts and processes: good or not, each with its weight.
            let spec = &self.instances[i].spec;
            let verdicts = spec
                .track_scripts
                .iter()
                .filter_map(|(name, own)| {
                    let (s, good) = self.scripts.get(name)?;
                    Some((
                        crate::track::Weighting::chosen(*own, s.weight, s.reverse),
                        *good,
                    ))
                })
                .chain(spec.track_processes.iter().filter_map(|(name, own)| {
                    let (p, q) = self.processes.get(name)?;
                    let up = &q.up;
                    Some((
                        crate::track::Weighting::chosen(*own, p.weight, p.reverse),
                        *up,
                    ))
                }));
            for (w, good) in verdicts {
                let (dw, f) = w.effect(good);
                weight += dw;
                fault |= f;
            }
            // A tracked file: its value times the weight; weight 0 means any
            // non-zero value is FAULT (keepalived's rules).
            for (name, own) in &self.instances[i].spec.track_files {
                let Some((_, w, rev, value)) = self.files.get(name) else {
                    continue;
                };
                let (w, rev) = own.unwrap_or((*w, *rev));
                if w == 0 {
                    fault |= *value != 0;
                } else {
                    weight += value.saturating_mul(if rev { -w } else { w });
                }
            }
            // A tracked interface that is down: FAULT, or its (negative) weight.
            for (name, w) in &self.instances[i].spec.track_interfaces {
                if self.links.get(name).copied().unwrap_or(true) {
                    continue;
                }
                match w {
                    None | Some(0) => fault = true,
                    Some(w) => weight += -w.abs(),
                }
            }
            let weight = i32::try_from(weight.clamp(-1000, 1000)).unwrap_or(0);
            self.feed(i, Input::Track { weight, fault });
        }
        self.flush();
    }

    /// Reads the tracked files (every [`FILE_POLL`]); true if one changed.
    fn file_changes(&mut self) -> bool {
        let now = self.now();
        if now.since(self.files_checked) < FILE_POLL && self.files_checked != Instant::ZERO {
            return false;
        }
        let first = self.files_checked == Instant::ZERO;
        self.files_checked = now;
        let mut changed = first;
        for (path, _, _, value) in self.files.values_mut() {
            // Out of keepalived's range, or not a regular file: ignored,
            // the last value stays (a refusal is logged once).
            let now_value = match check::file::read_value(path) {
                Ok(Some(v)) => {
                    self.refused_files.remove(path.as_path());
                    v
                }
                Ok(None) => continue,
                Err(why) => {
                    if self.refused_files.insert(path.clone()) {
                        tracing::error!("track_file {}: {why}", path.display());
                    }
                    continue;
                }
            };
            if *value != now_value {
                tracing::info!("Tracked file {} now {now_value}", path.display());
                *value = now_value;
                changed = true;
            }
        }
        changed
    }

    /// Every tracked interface's link as the kernel has it now; true if one
    /// changed. Used at start and when link events were lost.
    fn read_links(&mut self) -> bool {
        let all = match crate::netlink::Rtnl::open().and_then(|mut r| r.links()) {
            Ok(all) => all,
            Err(e) => {
                tracing::warn!("cannot read the links: {e}");
                return false;
            }
        };
        let mut changed = false;
        for (name, up) in &mut self.links {
            let now_up = all.iter().any(|l| l.name == *name && l.up);
            if *up != now_up {
                *up = now_up;
                changed = true;
            }
        }
        changed
    }

    /// Link events that arrived; true if a tracked interface changed.
    fn link_changes(&mut self) -> bool {
        let Some(events) = &mut self.link_events else {
            return false;
        };
        let changes = match events.drain() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("link events lost ({e}); reading every link");
                return self.read_links();
            }
        };
        let mut changed = false;
        for l in changes {
            if let Some(up) = self.links.get_mut(&l.name) {
                if *up != l.up {
                    tracing::info!(
                        "Netlink reports {} {}",
                        l.name,
                        if l.up { "up" } else { "down" }
                    );
                    *up = l.up;
                    changed = true;
                }
            }
        }
        changed
    }

    /// Counts tracked processes (every [`PROCESS_POLL`]); true if a quorum changed.
    fn process_changes(&mut self) -> bool {
        if self.processes.is_empty() {
            return false;
        }
        let now = self.now();
        if now.since(self.processes_checked) < PROCESS_POLL
            && self.processes_checked != Instant::ZERO
        {
            return false;
        }
        self.processes_checked = now;
        let names: Vec<String> = self.processes.keys().cloned().collect();
        let specs: Vec<&crate::track::ProcessSpec> =
            names.iter().map(|n| &self.processes[n].0).collect();
        let counts = crate::track::count_processes(&specs);
        let mut changed = false;
        let wall = std::time::Instant::now();
        for (name, count) in names.iter().zip(counts) {
            if let Some((spec, quorum)) = self.processes.get_mut(name) {
                if quorum.observe(spec.satisfied(count), wall, spec) {
                    tracing::info!(
                        "Tracked process {name} now has {count} running: quorum {}",
                        if quorum.up { "met" } else { "lost" }
                    );
                    changed = true;
                }
            }
        }
        changed
    }

    /// Script verdicts that arrived since the last step.
    fn script_changes(&mut self) -> bool {
        let Some(rx) = &self.script_events else {
            return false;
        };
        let mut changed = false;
        while let Ok(ev) = rx.try_recv() {
            if let Some((_, good)) = self.scripts.get_mut(&ev.name) {
                *good = ev.good;
                changed = true;
            }
        }
        changed
    }

    /// A reload: instances gone from the file stop (priority 0, their
    /// VIPs released), new ones start, and each kept instance whose new
    /// configuration VRRP allows to take in place gets it (its state,
    /// timers and VIPs stay; added VIPs are added and announced, removed
    /// ones removed); any other change is logged and not applied (restart
    /// keepalived-rs for it).
    fn reload(&mut self, config: &kaconf::Config) {
        let specs = match spec::instances(config, &SystemInterfaces) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("reload: {e}; the running VRRP configuration stays");
                return;
            }
        };
        let running: Vec<InstanceSpec> = self.instances.iter().map(|i| i.spec.clone()).collect();
        let changes = crate::change::vrrp(&running, &specs, trackers(config) != self.trackers);
        crate::change::log(&changes);
        if changes.iter().any(crate::change::Change::refuses_all_vrrp) {
            return;
        }
        let (mut added, mut kept) = (Vec::new(), Vec::new());
        for new in specs {
            if crate::change::names(&changes, &new.name, crate::change::Change::started) {
                added.push(new);
            } else if crate::change::names(&changes, &new.name, crate::change::Change::reconfigured)
            {
                kept.push(new);
            }
        }
        let now = self.now();
        // Gone: stopped as on shutdown, then forgotten.
        let gone: Vec<usize> = (0..self.instances.len())
            .filter(|&i| {
                crate::change::names(
                    &changes,
                    &self.instances[i].spec.name,
                    crate::change::Change::stopped,
                )
            })
            .collect();
        for &i in &gone {
            self.feed(i, Input::Stop);
        }
        self.flush();
        for &i in gone.iter().rev() {
            self.instances.remove(i);
        }
        for new in kept {
            if let Some(i) = self.instances.iter().position(|x| x.spec.name == new.name) {
                self.reload_in_place(i, now, new);
            }
        }
        let first_new = self.instances.len();
        for spec in added {
            match self.add_instance(spec) {
                Ok(()) => {}
                Err(e) => tracing::error!("reload: {e:#}"),
            }
        }
        // Every index-keyed table again.
        self.by_vrid = vrid_index(&self.instances);
        let (groups, group_of) = sync_groups(config, &self.instances);
        self.groups = groups;
        self.group_of = group_of;
        self.deadlines = vrrp::Deadlines::new(self.instances.len());
        for i in 0..self.instances.len() {
            self.deadlines.set(i, self.instances[i].router.poll_at());
        }
        self.witness_sets = self
            .witness_lists
            .iter()
            .map(|set| {
                (0..self.instances.len())
                    .filter(|&i| {
                        self.instances[i]
                            .spec
                            .guard
                            .as_ref()
                            .is_some_and(|g| g.witnesses == *set)
                    })
                    .collect()
            })
            .collect();
        self.apply_tracking();
        for i in first_new..self.instances.len() {
            // What its witnesses say now (the probes report changes only).
            let down = self
                .witness_sets
                .iter()
                .zip(&self.witness_ok)
                .any(|(members, ok)| members.contains(&i) && !ok);
            if down {
                self.feed(i, Input::Witness { reachable: false });
            }
            self.feed(i, Input::Start);
        }
        self.flush();
        self.dirty = true;
    }

    /// Opens what a new instance needs and adds it (stopped).
    fn add_instance(&mut self, spec: InstanceSpec) -> Result<()> {
        for a in &spec.addresses {
            if let Err(e) = self.addresses.remove(a) {
                tracing::warn!("({}) cleaning up {}: {e}", spec.name, a.addr);
            }
        }
        let socket = socket_for(&mut self.sockets, &spec)?;
        let heartbeat = heartbeat_sockets(&mut self.sockets, &spec)?;
        open_announcer(&mut self.announcers, &spec);
        self.hmac |= spec.engine.auth_hmac.is_some();
        self.instances.push(Instance {
            router: Router::new(spec.engine.clone()),
            spec,
            socket,
            heartbeat,
        });
        self.set_wall_clock();
        Ok(())
    }

    /// Instance `i` takes `new` in place (`change::vrrp` found it can).
    fn reload_in_place(&mut self, i: usize, now: Instant, new: InstanceSpec) {
        let old = &self.instances[i].spec;
        if *old == new {
            return;
        }
        let name = new.name.clone();
        let mut actions = std::mem::take(&mut self.actions);
        actions.clear();
        if let Err(what) =
            self.instances[i]
                .router
                .reconfigure(now, new.engine.clone(), &mut actions)
        {
            tracing::warn!(
                "({name}) reload: {what} changed: not applied; restart keepalived-rs for that"
            );
            self.actions = actions;
            return;
        }
        // The engine names the VIPs that come and go; the driver puts the
        // addresses (excluded ones too) on and off itself, leaving those
        // that stay untouched.
        actions.retain(|a| !matches!(a, Action::AddVips(_) | Action::RemoveVips(_)));
        if self.instances[i].router.state() == vrrp::StateName::Master {
            let old = &self.instances[i].spec.addresses;
            for a in old.iter().filter(|a| !new.addresses.contains(a)) {
                if let Err(e) = self.addresses.remove(a) {
                    tracing::error!("({name}) {e}");
                }
            }
            for a in new.addresses.iter().filter(|a| !old.contains(a)) {
                if let Err(e) = self.addresses.add(a) {
                    tracing::error!("({name}) {e}");
                }
            }
        }
        self.instances[i].spec = new;
        self.after(i, &mut actions);
        tracing::info!("({name}) reloaded in place");
    }

    /// The guard's witnesses: each distinct set probed once (on a thread
    /// of its own), for all the instances that name it.
    fn start_witnesses(
        &mut self,
        stop: &Arc<AtomicBool>,
    ) -> Result<Option<std::thread::JoinHandle<()>>> {
        let mut sets: Vec<Vec<crate::vrrp::spec::Witness>> = Vec::new();
        let mut members: Vec<Vec<usize>> = Vec::new();
        for (i, inst) in self.instances.iter().enumerate() {
            let Some(g) = inst.spec.guard.as_ref().filter(|g| !g.witnesses.is_empty()) else {
                continue;
            };
            if let Some(k) = sets.iter().position(|s| *s == g.witnesses) {
                members[k].push(i);
            } else {
                sets.push(g.witnesses.clone());
                members.push(vec![i]);
            }
        }
        if sets.is_empty() {
            return Ok(None);
        }
        let (wtx, wrx) = std::sync::mpsc::channel();
        self.witness_events = Some(wrx);
        self.witness_sets = members;
        self.witness_ok = vec![true; sets.len()];
        self.witness_lists.clone_from(&sets);
        Ok(Some(crate::witness::spawn(sets, wtx, stop.clone())?))
    }

    /// The witness verdicts that arrived since the last step, fed to
    /// their instances.
    fn witness_changes(&mut self) {
        let Some(rx) = &self.witness_events else {
            return;
        };
        let events: Vec<crate::witness::Event> = rx.try_iter().collect();
        for ev in events {
            if let Some(ok) = self.witness_ok.get_mut(ev.set) {
                *ok = ev.reachable;
            }
            let members = self.witness_sets.get(ev.set).cloned().unwrap_or_default();
            for i in members {
                self.feed(
                    i,
                    Input::Witness {
                        reachable: ev.reachable,
                    },
                );
            }
        }
    }

    /// Waits for a packet or the next timer (at most [`MAX_WAIT`]) and handles it.
    fn step(&mut self) -> Result<()> {
        self.witness_changes();
        let scripts = self.script_changes();
        let processes = self.process_changes();
        let files = self.file_changes();
        if self.link_changes() || files || scripts || processes {
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

    /// Which sockets have packets, after waiting up to `wait`.
    /// `sockets` false: wait for timers and signals only (every socket
    /// reported not ready).
    fn wait(&self, wait: Duration, sockets: bool) -> Result<Vec<bool>> {
        let watched = if sockets { self.sockets.len() } else { 0 };
        let mut fds: Vec<nix::poll::PollFd> = self.sockets[..watched]
            .iter()
            .map(|s| nix::poll::PollFd::new(s.fd(), nix::poll::PollFlags::POLLIN))
            .collect();
        // Link events only wake the loop; `link_changes` reads them.
        if let Some(l) = &self.link_events {
            fds.push(nix::poll::PollFd::new(l.fd(), nix::poll::PollFlags::POLLIN));
        }
        if let Some(w) = &self.wake {
            fds.push(nix::poll::PollFd::new(
                w.as_fd(),
                nix::poll::PollFlags::POLLIN,
            ));
        }
        let ms = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
        // Sub-millisecond waits round up, so a timer never spins.
        let timeout = nix::poll::PollTimeout::from(if wait.is_zero() { 0 } else { ms.max(1) });
        match nix::poll::poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e).context("poll on the VRRP sockets"),
        }
        let mut ready: Vec<bool> = fds
            .iter()
            .map(|f| {
                f.revents()
                    .is_some_and(|r| r.contains(nix::poll::PollFlags::POLLIN))
            })
            .collect();
        drop(fds);
        if let Some(mut w) = self.wake.as_ref() {
            if ready.pop() == Some(true) {
                tracing::debug!("woken by a signal");
                // Drain the pipe; the signal flags say what happened.
                let mut buf = [0u8; 64];
                while std::io::Read::read(&mut w, &mut buf).is_ok_and(|n| n > 0) {}
            }
        }
        ready.truncate(watched);
        ready.resize(self.sockets.len(), false);
        Ok(ready)
    }

    /// Reads every waiting packet of socket `si` and hands each to its instance.
    fn receive(&mut self, si: usize) {
        // At most RECV_PER_STEP packets, then the timers: a flood of
        // protocol-112 packets must not keep a master from advertising.
        for _ in 0..RECV_PER_STEP {
            let packet = match self.sockets[si].recv() {
                Ok(Some(p)) => p,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!("receiving on {}: {e}", self.sockets[si].ifname);
                    return;
                }
            };
            let bytes = self.sockets[si].payload(&packet);
            let vrid = bytes.get(1).copied().unwrap_or(0);
            let Some(&i) = self.by_vrid.get(&(si, vrid)) else {
                let now = self.now();
                self.unknown_vrid.count(now, vrid, packet.src);
                continue;
            };
            if self.group_of[i].is_some() {
                let input = Input::Packet {
                    src: packet.src,
                    dst: packet.dst,
                    ttl: packet.ttl,
                    bytes: bytes.to_vec(),
                };
                self.feed(i, input);
                continue;
            }
            // The common case without a copy: the router reads the bytes
            // where the socket received them.
            let now = self.now();
            let mut actions = std::mem::take(&mut self.actions);
            actions.clear();
            self.instances[i].router.handle_packet(
                now,
                packet.src,
                packet.dst,
                packet.ttl,
                self.sockets[si].payload(&packet),
                &mut actions,
            );
            self.after(i, &mut actions);
        }
    }
}

/// Packets for VRIDs no instance here has: counted, and logged (debug) at
/// most once per [`UNKNOWN_VRID_LOG`] with the number since the last line.
#[derive(Debug, Default)]
struct UnknownVrid {
    total: u64,
    since_logged: u64,
    logged_at: Option<Instant>,
}

impl UnknownVrid {
    fn count(&mut self, now: Instant, vrid: u8, src: std::net::IpAddr) {
        self.total += 1;
        self.since_logged += 1;
        if self
            .logged_at
            .is_some_and(|at| now.since(at) < UNKNOWN_VRID_LOG)
        {
            return;
        }
        tracing::debug!(
            "{} advert(s) for VRIDs not configured here (last: VRID {vrid} from {src}; {} in all)",
            self.since_logged,
            self.total
        );
        self.since_logged = 0;
        self.logged_at = Some(now);
    }
}

/// Opens the gratuitous ARP / NA sender of each interface `spec`'s
/// addresses live on, where it is the first instance there. Without one the
/// instance still runs (and says so).
fn open_announcer(announcers: &mut HashMap<String, announce::Announcer>, spec: &InstanceSpec) {
    for ifname in spec.address_interfaces() {
        if let std::collections::hash_map::Entry::Vacant(slot) = announcers.entry(ifname.to_owned())
        {
            match announce::Announcer::open(ifname) {
                Ok(a) => {
                    slot.insert(a);
                }
                Err(e) => tracing::warn!(
                    "({}) no gratuitous ARP / unsolicited NA on {ifname}: {e}",
                    spec.name,
                ),
            }
        }
    }
}

/// The index of the socket `spec` sends and receives on, opened if it is the
/// first instance on its interface and address family.
fn socket_for(sockets: &mut Vec<VrrpSocket>, spec: &InstanceSpec) -> Result<usize> {
    let ifname = spec.advert_interface();
    socket_on(sockets, ifname, Family::of(&spec.engine.primary))
        .with_context(|| format!("({}) VRRP socket on {ifname}", spec.name))
}

/// What of `config` a reload cannot change under running instances (the
/// trackers' and sync groups' bodies, not where they are written).
fn trackers(config: &kaconf::Config) -> Trackers {
    fn bodies<T: Clone>(v: &[kaconf::section::Named<T>]) -> Vec<(String, T)> {
        v.iter().map(|n| (n.name.clone(), n.body.clone())).collect()
    }
    Trackers {
        scripts: bodies(&config.vrrp_scripts),
        files: bodies(&config.track_files),
        processes: bodies(&config.track_processes),
        groups: bodies(&config.sync_groups),
    }
}

/// The trackers and sync groups every instance shares, by name, as
/// configured (bodies only: moving a block in the file changes nothing).
#[derive(Debug, Clone, PartialEq)]
struct Trackers {
    scripts: Vec<(String, kaconf::model::VrrpScript)>,
    files: Vec<(String, kaconf::model::TrackFile)>,
    processes: Vec<(String, kaconf::model::TrackProcess)>,
    groups: Vec<(String, kaconf::model::SyncGroup)>,
}

/// (socket, VRID) → instance, over every socket an instance hears on.
fn vrid_index(instances: &[Instance]) -> HashMap<(usize, u8), usize> {
    instances
        .iter()
        .enumerate()
        .flat_map(|(i, inst)| {
            let vrid = inst.spec.engine.vrid;
            std::iter::once(inst.socket)
                .chain(inst.heartbeat.iter().map(|h| h.1))
                .map(move |si| ((si, vrid), i))
        })
        .collect()
}

/// The sockets of `spec`'s heartbeat paths, with our address on each.
fn heartbeat_sockets(
    sockets: &mut Vec<VrrpSocket>,
    spec: &InstanceSpec,
) -> Result<Vec<(std::net::IpAddr, usize)>> {
    let mut out = Vec::new();
    for (ifname, local, _) in spec.guard.iter().flat_map(|g| &g.heartbeat) {
        let si = socket_on(sockets, ifname, Family::of(local))
            .with_context(|| format!("({}) heartbeat path on {ifname}", spec.name))?;
        out.push((*local, si));
    }
    Ok(out)
}

/// The socket of `family` on `ifname`, opened if it is the first.
fn socket_on(sockets: &mut Vec<VrrpSocket>, ifname: &str, family: Family) -> Result<usize> {
    if let Some(i) = sockets
        .iter()
        .position(|s| s.ifname == ifname && s.family() == family)
    {
        return Ok(i);
    }
    sockets.push(VrrpSocket::open(ifname, family)?);
    Ok(sockets.len() - 1)
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

/// The instances of each `vrrp_sync_group`, and the group of each instance.
fn sync_groups(
    config: &kaconf::Config,
    instances: &[Instance],
) -> (Vec<Vec<usize>>, Vec<Option<usize>>) {
    let mut groups = Vec::new();
    let mut group_of = vec![None; instances.len()];
    for g in &config.sync_groups {
        let names = g.body.group.iter().flat_map(|l| &l.0).flat_map(|n| &n.0);
        let idx: Vec<usize> = names
            .filter_map(|n| instances.iter().position(|i| i.spec.name == *n))
            .filter(|i| group_of[*i].is_none())
            .collect();
        for i in &idx {
            group_of[*i] = Some(groups.len());
        }
        groups.push(idx);
    }
    (groups, group_of)
}

/// The instances of one sync group, as the engine's group rules see them.
struct GroupView<'a> {
    instances: &'a mut Vec<Instance>,
    idx: &'a [usize],
}

impl vrrp::sync::Members for GroupView<'_> {
    fn len(&self) -> usize {
        self.idx.len()
    }
    fn member(&mut self, i: usize) -> &mut Router {
        &mut self.instances[self.idx[i]].router
    }
    fn member_ref(&self, i: usize) -> &Router {
        &self.instances[self.idx[i]].router
    }
}

/// `ttl`, `vrid`, `wire_checksum`…: a drop reason as a counter name.
fn drop_name(d: vrrp::Drop) -> String {
    use vrrp::Drop;
    match d {
        Drop::Wire(e) => format!("wire_{}", format!("{e:?}").to_lowercase()),
        Drop::Ttl => "ttl".into(),
        Drop::Version => "version".into(),
        Drop::Vrid => "vrid".into(),
        Drop::Family => "family".into(),
        Drop::Own => "own".into(),
        Drop::UnknownPeer => "unknown_peer".into(),
        Drop::Destination => "destination".into(),
        Drop::Auth => "auth".into(),
        Drop::Interval => "interval".into(),
        Drop::Hmac(r) => format!("hmac_{}", format!("{r:?}").to_lowercase()),
    }
}

/// Does what the engine asked, logging in keepalived's words.
fn carry_out(
    inst: &Instance,
    sockets: &mut [VrrpSocket],
    announcers: &mut HashMap<String, announce::Announcer>,
    addresses: &mut addrs::Addresses,
    actions: &[Action],
) {
    let name = &inst.spec.name;
    for a in actions {
        match a {
            Action::Send { src, to, .. } => {
                let dst = to.addr(Family::of(src));
                // From a heartbeat address: that path's socket.
                let si = inst
                    .heartbeat
                    .iter()
                    .find(|h| h.0 == *src)
                    .map_or(inst.socket, |h| h.1);
                let sent = sockets[si].send_with(*src, dst, |buf| {
                    a.write_payload(buf);
                });
                if let Err(e) = sent {
                    tracing::warn!("({name}) sending an advert to {dst}: {e}");
                }
            }
            Action::AddVips(_) => {
                for addr in &inst.spec.addresses {
                    if let Err(e) = addresses.add(addr) {
                        tracing::error!("({name}) {e}");
                    }
                }
            }
            Action::RemoveVips(_) => {
                for addr in &inst.spec.addresses {
                    if let Err(e) = addresses.remove(addr) {
                        tracing::error!("({name}) {e}");
                    }
                }
            }
            Action::State { to, .. } => {
                tracing::info!("({name}) Entering {to} STATE");
            }
            Action::Log(line) => tracing::warn!("{line}"),
            Action::DualMaster { peer, priority } => {
                tracing::warn!(
                    "({name}) split brain suspected: {peer} (priority {priority}) was MASTER as well"
                );
                // `on_dual_master` is run by the notifier (see `execute`).
            }
            Action::Priority { priority } => {
                tracing::info!("({name}) Changing effective priority to {priority}");
            }
            Action::Announce { addrs, repeat } => {
                // Each address on its own interface, from that interface's MAC.
                for ifname in inst.spec.address_interfaces() {
                    let here: Vec<std::net::IpAddr> = addrs
                        .iter()
                        .copied()
                        .filter(|a| inst.spec.interface_of(*a) == ifname)
                        .collect();
                    if here.is_empty() {
                        continue;
                    }
                    let Some(a) = announcers.get_mut(ifname) else {
                        continue;
                    };
                    match a.announce(&here, *repeat) {
                        Ok(()) => {
                            for addr in &here {
                                let what = if addr.is_ipv4() {
                                    "gratuitous ARP"
                                } else {
                                    "unsolicited Neighbour Advert"
                                };
                                tracing::debug!(
                                    "({name}) Sending {what} on {ifname} for {addr} (x{repeat})"
                                );
                            }
                        }
                        Err(e) => tracing::warn!("({name}) gratuitous ARP / NA on {ifname}: {e}"),
                    }
                }
            }
            Action::AddRoutes { .. } => {
                let s = &inst.spec;
                for e in addresses.add_routes(&s.routes, &s.rules, &s.interface) {
                    tracing::error!("({name}) {e}");
                }
            }
            Action::RemoveRoutes { .. } => {
                let s = &inst.spec;
                for e in addresses.remove_routes(&s.routes, &s.rules, &s.interface) {
                    tracing::error!("({name}) {e}");
                }
            }
        }
    }
}

#[cfg(test)]
mod dump_tests {
    #[test]
    fn dumps_never_write_through_a_planted_symlink() {
        let dir = std::env::temp_dir().join(format!("krs-dump-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let victim = dir.join("victim");
        std::fs::write(&victim, "precious").unwrap_or_else(|e| panic!("{e}"));
        let path = dir.join("keepalived.data");
        std::os::unix::fs::symlink(&victim, &path).unwrap_or_else(|e| panic!("{e}"));
        super::write_fresh(&path, "the dump").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            std::fs::read_to_string(&victim).unwrap_or_default(),
            "precious"
        );
        assert!(!std::fs::symlink_metadata(&path).map_or(true, |m| m.file_type().is_symlink()));
        assert_eq!(
            std::fs::read_to_string(&path).unwrap_or_default(),
            "the dump"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
