//! One VRRP virtual router: the state machine of RFC 9568 (and RFC 3768 for
//! version 2) with keepalived's behaviour where users depend on it.
//!
//! [`Router::handle`] takes the time and an [`Input`] and returns the
//! [`Action`]s to carry out; [`Router::poll_at`] says when to call again with
//! [`Input::Timer`]. Timers that fell due before `now` fire first, in order,
//! so a late call changes nothing but the lateness.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::time::Instant;
use crate::wire::{self, Advert, Auth, Family, PseudoHeader, Version, WireError};

/// The configured start state (`state MASTER` / `state BACKUP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InitialState {
    Master,
    #[default]
    Backup,
}

/// GARP / unsolicited-NA schedule (keepalived's `garp_*` keywords).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Garp {
    /// Second burst after becoming master (`garp_master_delay`, default 5 s; 0 = none).
    pub master_delay: Duration,
    /// Packets per burst (`garp_master_repeat`, default 5).
    pub master_repeat: u32,
    /// Periodic refresh while master (`garp_master_refresh`, default 0 = none).
    pub master_refresh: Duration,
    /// Packets per refresh (`garp_master_refresh_repeat`, default 1).
    pub master_refresh_repeat: u32,
    /// At most one burst per this long when a lower-priority advert is heard
    /// (`garp_lower_prio_delay`, default `master_delay`).
    pub lower_prio_delay: Duration,
    /// Packets per such burst (`garp_lower_prio_repeat`, default `master_repeat`; 0 = none).
    pub lower_prio_repeat: u32,
}

impl Default for Garp {
    fn default() -> Self {
        Self {
            master_delay: Duration::from_secs(5),
            master_repeat: 5,
            master_refresh: Duration::ZERO,
            master_refresh_repeat: 1,
            lower_prio_delay: Duration::from_secs(5),
            lower_prio_repeat: 5,
        }
    }
}

/// What a virtual router is told at start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// The instance name, for messages (`VI_1`).
    pub name: String,
    pub vrid: u8,
    pub version: Version,
    /// 1–255 (255: address owner).
    pub priority: u8,
    /// Whole seconds for version 2, centiseconds for version 3.
    pub advert_interval: Duration,
    pub initial_state: InitialState,
    /// `false` with `nopreempt`.
    pub preempt: bool,
    pub preempt_delay: Duration,
    /// `accept` mode (the driver lets the VIPs receive traffic in MASTER).
    pub accept: bool,
    /// Our source address on the interface (`mcast_src_ip`/`unicast_src_ip`).
    pub primary: IpAddr,
    /// The virtual addresses.
    pub vips: Vec<IpAddr>,
    /// `virtual_ipaddress_excluded`: announced with the VIPs, never named in
    /// adverts.
    pub excluded: Vec<IpAddr>,
    /// `virtual_routes`: installed while MASTER (opaque to the engine; the
    /// driver knows their syntax).
    pub routes: Vec<String>,
    /// `virtual_rules`: likewise.
    pub rules: Vec<String>,
    /// Unicast peers; empty means multicast.
    pub peers: Vec<IpAddr>,
    /// VRRPv2 authentication.
    pub auth: Auth,
    pub garp: Garp,
    /// Wait this long after start before doing anything (`vrrp_startup_delay`).
    pub startup_delay: Duration,
    /// Adverts missed before the master is declared down (`down_timer_adverts`, 3).
    pub down_timer_adverts: u32,
    /// Check the advert's address list (off with `skip_check_adv_addr`).
    pub check_addrs: bool,
    /// Accept VRRPv3 IPv4 checksums computed without the pseudo-header.
    pub v3_checksum_as_v2: bool,
    /// A master does not answer a lower-priority advert with an advert of
    /// its own, only with the GARP burst (`lower_prio_no_advert`).
    pub lower_prio_no_advert: bool,
    /// keepalived 2.4's `auth_hmac` (keys are never serialised).
    #[serde(skip)]
    pub auth_hmac: Option<crate::auth_hmac::Config>,
    /// `split_brain_guard` (extension).
    pub guard: Option<crate::guard::GuardConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            name: String::new(),
            vrid: 1,
            version: Version::V2,
            priority: 100,
            advert_interval: Duration::from_secs(1),
            initial_state: InitialState::Backup,
            preempt: true,
            preempt_delay: Duration::ZERO,
            accept: false,
            primary: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            vips: Vec::new(),
            excluded: Vec::new(),
            routes: Vec::new(),
            rules: Vec::new(),
            peers: Vec::new(),
            auth: Auth::None,
            garp: Garp::default(),
            startup_delay: Duration::ZERO,
            down_timer_adverts: 3,
            check_addrs: true,
            v3_checksum_as_v2: false,
            lower_prio_no_advert: false,
            auth_hmac: None,
            guard: None,
        }
    }
}

impl Config {
    /// The first setting that cannot change under a running router (its
    /// keepalived keyword), if `new` changes one: the VRID, version, source
    /// address, peers, interval, authentication, heartbeat paths, `accept`,
    /// the address check and the v3 checksum rule.
    pub fn fixed_change(&self, new: &Config) -> Option<&'static str> {
        let old = self;
        let fixed = [
            (old.vrid != new.vrid, "virtual_router_id"),
            (old.version != new.version, "version"),
            (old.primary != new.primary, "the source address"),
            (old.peers != new.peers, "unicast_peer"),
            (old.advert_interval != new.advert_interval, "advert_int"),
            (old.auth != new.auth, "authentication"),
            (old.auth_hmac != new.auth_hmac, "auth_hmac"),
            (
                old.guard.as_ref().map(|g| &g.heartbeat)
                    != new.guard.as_ref().map(|g| &g.heartbeat),
                "heartbeat_path",
            ),
            (old.accept != new.accept, "accept"),
            (old.check_addrs != new.check_addrs, "skip_check_adv_addr"),
            (
                old.v3_checksum_as_v2 != new.v3_checksum_as_v2,
                "v3_checksum_as_v2",
            ),
        ];
        fixed
            .iter()
            .find(|(changed, _)| *changed)
            .map(|(_, what)| *what)
    }

    pub fn family(&self) -> Family {
        Family::of(&self.primary)
    }

    /// The interval as it goes on the wire: seconds (v2) or centiseconds (v3).
    pub fn wire_interval(&self) -> u16 {
        wire_units(self.version, self.advert_interval)
    }
}

/// Seconds (v2, 1–255) or centiseconds (v3, 1–4095): what the field can hold.
fn wire_units(version: Version, d: Duration) -> u16 {
    let (units, max) = match version {
        Version::V2 => (d.as_secs(), 255),
        Version::V3 => (u64::try_from(d.as_millis() / 10).unwrap_or(u64::MAX), 4095),
    };
    u16::try_from(units.clamp(1, max)).unwrap_or(1)
}

/// keepalived's state names, which operators grep for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StateName {
    #[default]
    Init,
    Backup,
    Master,
    Fault,
    Stop,
}

impl std::fmt::Display for StateName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StateName::Init => "INIT",
            StateName::Backup => "BACKUP",
            StateName::Master => "MASTER",
            StateName::Fault => "FAULT",
            StateName::Stop => "STOP",
        })
    }
}

/// Something that happened to the router.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Input {
    /// Begin (after `startup_delay`); also restarts a stopped router.
    Start,
    /// Graceful stop: a master sends priority 0 and releases its addresses.
    Stop,
    /// `poll_at()` has come.
    Timer,
    /// A received advertisement: the IP source, destination and TTL / hop
    /// limit, and the VRRP message bytes.
    Packet {
        src: IpAddr,
        dst: IpAddr,
        ttl: u8,
        #[serde(with = "hex")]
        bytes: Vec<u8>,
    },
    /// Tracking: the sum of the weights of tracked items, and whether one
    /// of them fails hard (which means FAULT).
    Track { weight: i32, fault: bool },
    /// A sync group moves this member with the others.
    Force(StateName),
    /// The split-brain guard's witnesses: some answer, or none.
    Witness { reachable: bool },
}

/// Where an advert goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dest {
    Multicast,
    Unicast(IpAddr),
}

impl Dest {
    /// The address an advert from a `family` source goes to.
    pub fn addr(self, family: Family) -> IpAddr {
        match self {
            Dest::Unicast(a) => a,
            Dest::Multicast => multicast_group(family),
        }
    }
}

/// Something the driver must do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Send `advert` from `src` to `to` (TTL / hop limit 255).
    Send {
        src: IpAddr,
        to: Dest,
        /// Shared with the router's next adverts at the same priority (no
        /// allocation per advert).
        advert: Arc<Advert>,
        /// VRRPv3 over IPv4 with the checksum of old keepalived versions
        /// (no pseudo-header): `v3_checksum_as_v2`.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        v2_checksum: bool,
        /// The `auth_hmac` trailer to append (the same for every peer).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trailer: Option<[u8; crate::auth_hmac::TRAILER_LEN]>,
    },
    /// Something an operator should read (rate-limited by the engine).
    Log(String),
    /// Add the virtual addresses to the interface.
    AddVips(Vec<IpAddr>),
    /// Remove them.
    RemoveVips(Vec<IpAddr>),
    /// Install `virtual_routes` and `virtual_rules`.
    AddRoutes {
        routes: Vec<String>,
        rules: Vec<String>,
    },
    /// Remove them.
    RemoveRoutes {
        routes: Vec<String>,
        rules: Vec<String>,
    },
    /// Announce the addresses: `repeat` gratuitous ARPs (IPv4) or unsolicited
    /// neighbour advertisements (IPv6) each.
    Announce { addrs: Vec<IpAddr>, repeat: u32 },
    /// The state changed (run notify scripts, log "Entering MASTER STATE").
    State { from: StateName, to: StateName },
    /// The effective priority changed.
    Priority { priority: u8 },
    /// A dual-master episode began: this master heard `peer`, a master it
    /// outranks (run `on_dual_master`).
    DualMaster { peer: IpAddr, priority: u8 },
}

impl Action {
    /// The bytes of a `Send`, with the checksum for its pseudo-header.
    pub fn payload(&self) -> Option<Vec<u8>> {
        let mut bytes = Vec::new();
        self.write_payload(&mut bytes).then_some(bytes)
    }

    /// [`Action::payload`], appended to `out`; false (and nothing written)
    /// for any other action.
    pub fn write_payload(&self, out: &mut Vec<u8>) -> bool {
        let Action::Send {
            src,
            to,
            advert,
            v2_checksum,
            trailer,
        } = self
        else {
            return false;
        };
        let dst = to.addr(Family::of(src));
        let pseudo = (!*v2_checksum).then_some(PseudoHeader { src: *src, dst });
        let start = out.len();
        advert.emit_into(pseudo, out);
        if let Some(t) = trailer {
            out.extend_from_slice(t);
            // Over IPv6 the checksum covers the whole payload, the trailer
            // too (keepalived lets the kernel compute it).
            if Family::of(src) == Family::V6 {
                crate::wire::reseal_checksum(&mut out[start..], PseudoHeader { src: *src, dst });
            }
        }
        true
    }
}

/// The multicast group of a family.
pub fn multicast_group(family: Family) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(wire::MULTICAST_V4),
        Family::V6 => IpAddr::V6(wire::MULTICAST_V6),
    }
}

/// Why a received packet was dropped; each has a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Drop {
    /// The bytes are not a valid advertisement.
    Wire(WireError),
    /// TTL / hop limit was not 255.
    Ttl,
    /// Another VRRP version than ours.
    Version,
    /// Another virtual router id.
    Vrid,
    /// Another address family.
    Family,
    /// Our own advert, looped back.
    Own,
    /// Unicast mode and the source is not a configured peer.
    UnknownPeer,
    /// Sent to a unicast address in multicast mode, or the reverse.
    Destination,
    /// VRRPv2 authentication does not match.
    Auth,
    /// VRRPv2 advert interval differs from ours.
    Interval,
    /// The `auth_hmac` trailer is missing or not good.
    Hmac(crate::auth_hmac::Reject),
}

/// Receive statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Adverts accepted.
    pub received: u64,
    /// Adverts accepted with an address list that differs from ours (logged only).
    pub address_list_mismatch: u64,
    pub dropped: BTreeMap<Drop, u64>,
    pub sent: u64,
    pub became_master: u64,
    /// Priority-0 adverts received.
    pub priority_zero_received: u64,
    /// Adverts whose `auth_hmac` trailer verified.
    pub hmac_accepted: u64,
    /// Adverts without a trailer let through by `permissive`/`receive-only`.
    pub hmac_unsigned: u64,
    /// Adverts a master heard from another master it outranks.
    pub dual_master_adverts: u64,
    /// Dual-master episodes (each begins with such an advert after a
    /// quiet spell).
    pub dual_master_episodes: u64,
    /// Times the split-brain guard kept or took this node out of MASTER.
    pub guard_faults: u64,
    /// Lower-priority adverts a master heard (each may call for an answer).
    pub lower_prio_received: u64,
    /// Lower-priority or priority-0 adverts a master left unanswered: more
    /// came than [`ANSWER_BURST`] at once or one per advert interval.
    pub lower_prio_unanswered: u64,
}

/// Answers (an advert, a GARP burst) a master gives to lower-priority or
/// priority-0 adverts back to back; after that one per advert interval.
/// A flood of forged adverts then costs at most the double of the
/// periodic adverts, while a real lower-priority master (a split brain
/// healing) is still answered at once.
pub const ANSWER_BURST: u32 = 2;

/// The answer budget of [`ANSWER_BURST`] (a GCRA on virtual time: `tat` is
/// when the budget is full again).
#[derive(Debug, Clone, Copy, Default)]
struct AnswerLimit {
    tat: Option<Instant>,
}

impl AnswerLimit {
    /// Whether an answer may go at `now`; if so, it is spent.
    fn allow(&mut self, now: Instant, interval: Duration) -> bool {
        let interval = interval.max(Duration::from_millis(10));
        let tolerance = interval * (ANSWER_BURST - 1);
        let tat = self.tat.map_or(now, |t| t.max(now));
        if tat.saturating_sub(tolerance) > now {
            return false;
        }
        self.tat = Some(tat + interval);
        true
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Init { until: Instant },
    Backup { down_at: Instant },
    Master { advert_at: Instant },
    Fault,
    Stop,
}

/// One virtual router.
#[derive(Debug, Clone)]
pub struct Router {
    config: Config,
    state: State,
    /// Sum of tracked weights.
    weight: i32,
    /// A tracked item fails hard.
    fault: bool,
    effective: u8,
    /// Master_Adver_Interval (v3 learns it from the master).
    master_interval: Duration,
    /// When a lower-priority master may be pre-empted (`preempt_delay`).
    preempt_at: Option<Instant>,
    /// Address of the current master, as last heard.
    master: Option<IpAddr>,
    /// The priority the master last advertised.
    master_priority: u8,
    garp_second: Option<Instant>,
    garp_refresh: Option<Instant>,
    /// The second GARP burst after a lower-priority advert.
    lower_garp_second: Option<Instant>,
    /// When the last first GARP burst for a lower-priority advert went.
    lower_garp_at: Option<Instant>,
    /// The budget of answers to lower-priority and priority-0 adverts.
    answers: AnswerLimit,
    /// A sync group holds this member in BACKUP until every member wants MASTER.
    sync_held: bool,
    /// Held in BACKUP, its down timer has expired: it would be MASTER.
    wants_master: bool,
    counters: Counters,
    /// The last advert sent (reused while the priority stays).
    advert: Option<Arc<Advert>>,
    /// Where received adverts are parsed (its address list is reused).
    rx: Option<Advert>,
    /// The wall-clock time (µs since 1970) at [`Instant::ZERO`], for
    /// `auth_hmac` sequence numbers.
    wall_at_zero: u64,
    sequencer: crate::auth_hmac::Sequencer,
    replay: crate::auth_hmac::ReplayState,
    /// `auth_hmac` outcomes already logged (once each until an advert is
    /// accepted again, as keepalived rate-limits them).
    hmac_logged: std::collections::BTreeSet<crate::auth_hmac::Reject>,
    guard: crate::guard::Guard,
    /// In FAULT because the guard found this node cut off.
    guard_fault: bool,
}

impl Router {
    pub fn new(config: Config) -> Self {
        let effective = config.priority.max(1);
        Self {
            master_interval: config.advert_interval,
            config,
            state: State::Stop,
            weight: 0,
            fault: false,
            effective,
            preempt_at: None,
            master: None,
            master_priority: 0,
            garp_second: None,
            garp_refresh: None,
            lower_garp_second: None,
            lower_garp_at: None,
            answers: AnswerLimit::default(),
            sync_held: false,
            wants_master: false,
            counters: Counters::default(),
            advert: None,
            rx: None,
            wall_at_zero: 0,
            sequencer: crate::auth_hmac::Sequencer::default(),
            replay: crate::auth_hmac::ReplayState::default(),
            hmac_logged: std::collections::BTreeSet::new(),
            guard: crate::guard::Guard::new(),
            guard_fault: false,
        }
    }

    /// A reload's new configuration, taken in place where VRRP allows: the
    /// virtual addresses, the priority, pre-emption, GARP settings, routes
    /// and the guard's witnesses. The state, timers and learnt master stay
    /// (no advert gap, no election); a master adds the new addresses (and
    /// announces them), removes the dropped ones and advertises the new
    /// list at once. Anything else (VRID, version, addresses adverts come
    /// from, peers, interval, authentication, heartbeat paths) cannot
    /// change under a running router: `Err` names it and nothing changes.
    pub fn reconfigure(
        &mut self,
        now: Instant,
        config: Config,
        out: &mut Vec<Action>,
    ) -> Result<(), &'static str> {
        if let Some(what) = self.config.fixed_change(&config) {
            return Err(what);
        }
        let old = &self.config;
        let added: Vec<IpAddr> = config
            .vips
            .iter()
            .filter(|v| !old.vips.contains(v))
            .copied()
            .collect();
        let removed: Vec<IpAddr> = old
            .vips
            .iter()
            .filter(|v| !config.vips.contains(v))
            .copied()
            .collect();
        let routes_changed = old.routes != config.routes || old.rules != config.rules;
        let master = matches!(self.state, State::Master { .. });
        if master && routes_changed {
            out.extend(self.routes(false));
        }
        self.config = config;
        // The next advert carries the new list and priority.
        self.advert = None;
        // The priority as tracking makes it from the new base.
        self.reweigh(now, self.weight, out);
        if master {
            if !removed.is_empty() {
                out.push(Action::RemoveVips(removed));
            }
            // The addresses first: a new route may name one as its source.
            if !added.is_empty() {
                out.push(Action::AddVips(added.clone()));
            }
            if routes_changed {
                out.extend(self.routes(true));
            }
            if !added.is_empty() {
                out.push(Action::Announce {
                    addrs: added,
                    repeat: self.config.garp.master_repeat,
                });
            }
            self.send(now, self.effective, out);
        }
        Ok(())
    }

    /// How long a dual-master episode lasts without a sighting.
    fn quiet(&self) -> Duration {
        self.master_down_interval() * 3
    }

    /// The split-brain guard suspects a split brain at `now`: in a
    /// dual-master episode, or cut off (FAULT by the guard).
    pub fn split_brain_suspected(&self, now: Instant) -> bool {
        self.guard_fault || self.guard.in_episode(now, self.quiet())
    }

    /// In FAULT because the guard found this node cut off.
    pub fn guard_fault(&self) -> bool {
        self.guard_fault
    }

    fn isolated(&self, now: Instant) -> bool {
        let witnesses = self.config.guard.as_ref().is_some_and(|g| g.witnesses);
        self.guard
            .isolated(now, self.master_down_interval(), witnesses)
    }

    /// The guard takes this node out: FAULT, the VIPs released.
    fn enter_guard_fault(&mut self, why: &str, out: &mut Vec<Action>) {
        out.push(Action::Log(format!(
            "({}) split-brain guard: no peer heard on any path and no witness reachable: \
             this node assumes it is the one cut off; {why} (FAULT)",
            self.config.name
        )));
        // The VIPs go without a priority-0 advert: cut off, nobody would
        // hear it; and when it is the witnesses that failed, it would only
        // hand the VIP to a peer that cannot reach them either (which then
        // gives it up in turn: a flap). The peer's down timer decides.
        if matches!(self.state, State::Master { .. }) {
            out.push(Action::RemoveVips(self.config.vips.clone()));
            out.extend(self.routes(false));
        }
        self.clear_garp();
        self.wants_master = false;
        self.guard_fault = true;
        self.counters.guard_faults += 1;
        self.transition(StateName::Fault, out);
        self.state = State::Fault;
    }

    /// The guard's reason for FAULT is gone (a witness answers, or a peer
    /// is heard): BACKUP again, unless tracking holds it in FAULT.
    fn leave_guard_fault(&mut self, now: Instant, why: &str, out: &mut Vec<Action>) {
        self.guard_fault = false;
        out.push(Action::Log(format!(
            "({}) split-brain guard: {why}; leaving FAULT",
            self.config.name
        )));
        if !self.fault && matches!(self.state, State::Fault) {
            self.leave_fault(now, out);
        }
    }

    fn witness(&mut self, now: Instant, reachable: bool, out: &mut Vec<Action>) {
        if !self.guard.witness(reachable) {
            return;
        }
        if reachable {
            if self.guard_fault {
                self.leave_guard_fault(now, "a witness answers again", out);
            }
        } else if matches!(self.state, State::Master { .. }) && self.isolated(now) {
            self.enter_guard_fault("giving up the VIP", out);
        }
    }

    /// Tells the router the wall-clock time (µs since 1970) at
    /// [`Instant::ZERO`]; `auth_hmac` sequence numbers are wall-clock stamps.
    pub fn set_wall_clock(&mut self, unix_micros_at_zero: u64) {
        self.wall_at_zero = unix_micros_at_zero;
    }

    fn wall(&self, now: Instant) -> u64 {
        self.wall_at_zero.saturating_add(now.as_micros())
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn state(&self) -> StateName {
        match self.state {
            State::Init { .. } => StateName::Init,
            State::Backup { .. } => StateName::Backup,
            State::Master { .. } => StateName::Master,
            State::Fault => StateName::Fault,
            State::Stop => StateName::Stop,
        }
    }

    /// The priority adverts carry now.
    pub fn priority(&self) -> u8 {
        self.effective
    }

    /// Held by a sync group: on its own it would not become MASTER but only
    /// say so through [`Router::wants_master`].
    pub fn set_sync_held(&mut self, held: bool) {
        self.sync_held = held;
    }

    /// A held member whose down timer expired: it would be MASTER now.
    pub fn wants_master(&self) -> bool {
        self.wants_master
    }

    /// Whether a tracked item of this router itself fails hard (a router in
    /// FAULT only because its sync group is, is not faulty).
    pub fn is_faulty(&self) -> bool {
        self.fault
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The master as last heard (`None` when we are master or know none).
    pub fn master(&self) -> Option<IpAddr> {
        self.master
    }

    /// Why this router is in its state, in words (`None` in INIT and STOP).
    /// FAULT's cause is the driver's to say (it knows the trackers).
    pub fn why(&self) -> Option<String> {
        match self.state {
            State::Master { .. } if self.effective == 255 => {
                Some("MASTER: it owns the addresses (priority 255)".into())
            }
            State::Master { .. } => Some(format!(
                "MASTER: no higher priority heard (ours {})",
                self.effective
            )),
            State::Backup { .. } => Some(match self.master {
                Some(m) if self.master_priority > self.effective => format!(
                    "BACKUP: master {m} priority {} > ours {}",
                    self.master_priority, self.effective
                ),
                Some(m) if self.master_priority == self.effective => format!(
                    "BACKUP: master {m} priority {} = ours, and its address is higher",
                    self.master_priority
                ),
                Some(m) if !self.config.preempt => format!(
                    "BACKUP: nopreempt, master {m} priority {} < ours {} kept",
                    self.master_priority, self.effective
                ),
                Some(m) => format!(
                    "BACKUP: master {m} priority {} < ours {}: taking over after preempt_delay",
                    self.master_priority, self.effective
                ),
                None => "BACKUP: no master heard yet; waiting for the master down timer".into(),
            }),
            State::Fault => Some("FAULT".into()),
            State::Init { .. } | State::Stop => None,
        }
    }

    /// Skew_Time for priority-value `pri_val` (256 − priority), as keepalived
    /// computes it in microseconds: v2 on a 1 s base, v3 on Master_Adver_Interval.
    fn skew_for(&self, pri_val: u64) -> Duration {
        let us = match self.config.version {
            Version::V2 => pri_val * 1_000_000 / 256,
            Version::V3 => {
                let centis =
                    u64::try_from(self.master_interval.as_millis() / 10).unwrap_or(u64::MAX);
                pri_val * centis * 625 / 16
            }
        };
        Duration::from_micros(us)
    }

    /// Skew_Time = ((256 − Priority) × Master_Adver_Interval) / 256.
    pub fn skew_time(&self) -> Duration {
        self.skew_for(256 - u64::from(self.effective))
    }

    /// Master_Down_Interval = 3 × Master_Adver_Interval + Skew_Time.
    pub fn master_down_interval(&self) -> Duration {
        self.master_interval * self.config.down_timer_adverts + self.skew_time()
    }

    /// When the router next needs [`Input::Timer`].
    pub fn poll_at(&self) -> Option<Instant> {
        let state = match self.state {
            State::Init { until } => Some(until),
            State::Backup { down_at } => Some(down_at),
            State::Master { advert_at } => Some(advert_at),
            State::Fault | State::Stop => None,
        };
        [
            state,
            self.garp_second,
            self.garp_refresh,
            self.lower_garp_second,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Feeds one input at time `now`; returns what to do.
    pub fn handle(&mut self, now: Instant, input: Input) -> Vec<Action> {
        let mut out = Vec::new();
        self.handle_into(now, input, &mut out);
        out
    }

    /// [`Router::handle`], appending to `out` (a driver reuses one vector).
    pub fn handle_into(&mut self, now: Instant, input: Input, out: &mut Vec<Action>) {
        if matches!(input, Input::Packet { .. }) {
            self.run_timers_before_packet(now, out);
        } else {
            self.run_timers(now, out);
        }
        match input {
            Input::Timer => {}
            Input::Start => self.start(now, out),
            Input::Stop => self.stop(now, out),
            Input::Packet {
                src,
                dst,
                ttl,
                bytes,
            } => {
                self.packet(now, src, dst, ttl, &bytes, out);
                self.run_timers(now, out);
            }
            Input::Track { weight, fault } => self.track(now, weight, fault, out),
            Input::Force(to) => self.force(now, to, out),
            Input::Witness { reachable } => self.witness(now, reachable, out),
        }
    }

    /// [`Router::handle_into`] for an [`Input::Packet`] whose bytes the
    /// driver keeps (no copy, no allocation for a valid advert).
    pub fn handle_packet(
        &mut self,
        now: Instant,
        src: IpAddr,
        dst: IpAddr,
        ttl: u8,
        bytes: &[u8],
        out: &mut Vec<Action>,
    ) {
        self.run_timers_before_packet(now, out);
        self.packet(now, src, dst, ttl, bytes, out);
        self.run_timers(now, out);
    }

    fn packet(
        &mut self,
        now: Instant,
        src: IpAddr,
        dst: IpAddr,
        ttl: u8,
        bytes: &[u8],
        out: &mut Vec<Action>,
    ) {
        let mut advert = self.rx.take().unwrap_or_else(Advert::empty);
        match self.check(now, src, dst, ttl, bytes, &mut advert, out) {
            Ok(()) => {
                self.counters.received += 1;
                self.guard.heard(now);
                if self.guard_fault {
                    self.leave_guard_fault(now, &format!("heard {src}"), out);
                }
                // The RFC's address tie-break compares addresses of one
                // link: over a heartbeat path, ours there.
                let ours = self
                    .config
                    .guard
                    .as_ref()
                    .and_then(|g| g.path_of(src, dst))
                    .map_or(self.config.primary, |h| h.local);
                self.receive(now, src, ours, &advert, out);
            }
            Err(why) => *self.counters.dropped.entry(why).or_default() += 1,
        }
        self.rx = Some(advert);
    }

    /// [`Router::run_timers`] before a packet read at `now`, but for a
    /// backup's down timer: the packet arrived before the driver got to it
    /// (a process not scheduled for a while), so it goes first and the timer
    /// fires after it only if it is still due. A master whose advert waited
    /// in the socket keeps us BACKUP; keepalived also reads the socket
    /// before it handles the read timeout.
    fn run_timers_before_packet(&mut self, now: Instant, out: &mut Vec<Action>) {
        while let Some(at) = self.poll_at().filter(|at| *at <= now) {
            if matches!(self.state, State::Backup { down_at } if down_at == at) {
                return;
            }
            self.fire(at, now, out);
        }
    }

    fn run_timers(&mut self, now: Instant, out: &mut Vec<Action>) {
        // Several timers may be due; fire them in time order.
        while let Some(at) = self.poll_at().filter(|at| *at <= now) {
            self.fire(at, now, out);
        }
    }

    /// Fires the timer due at `at` (the time is now `now`: a driver that
    /// calls late gets one advert, not a burst of the missed ones).
    fn fire(&mut self, at: Instant, now: Instant, out: &mut Vec<Action>) {
        if self.garp_second == Some(at) {
            self.garp_second = None;
            out.push(self.announce(self.config.garp.master_repeat));
            return;
        }
        if self.lower_garp_second == Some(at) {
            self.lower_garp_second = None;
            out.push(self.announce(self.config.garp.lower_prio_repeat));
            return;
        }
        if self.garp_refresh == Some(at) {
            self.garp_refresh = Some(next_after(at, now, self.config.garp.master_refresh));
            out.push(self.announce(self.config.garp.master_refresh_repeat));
            return;
        }
        match self.state {
            State::Init { until } if until == at => self.begin(at, out),
            State::Backup { down_at } if down_at == at => {
                if self.isolated(now) {
                    self.enter_guard_fault("not taking the VIP", out);
                } else if self.sync_held {
                    // The group decides; check again after another interval.
                    self.wants_master = true;
                    self.state = State::Backup {
                        down_at: next_after(at, now, self.master_down_interval()),
                    };
                } else {
                    self.become_master(at, now, out);
                }
            }
            State::Master { advert_at } if advert_at == at && self.isolated(now) => {
                self.enter_guard_fault("giving up the VIP", out);
            }
            State::Master { advert_at } if advert_at == at => {
                self.send(now, self.effective, out);
                self.state = State::Master {
                    advert_at: next_after(at, now, self.config.advert_interval),
                };
            }
            // Unreachable: poll_at only returns the times above.
            _ => self.state = State::Stop,
        }
    }

    fn start(&mut self, now: Instant, out: &mut Vec<Action>) {
        if !matches!(self.state, State::Stop) {
            return;
        }
        self.master_interval = self.config.advert_interval;
        self.master = None;
        self.preempt_at = None;
        self.state = State::Init {
            until: now + self.config.startup_delay,
        };
        if self.config.startup_delay.is_zero() {
            self.begin(now, out);
        }
    }

    /// Leaves INIT: owner → MASTER; otherwise BACKUP (or FAULT).
    fn begin(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.fault {
            self.transition(StateName::Fault, out);
            self.state = State::Fault;
            return;
        }
        if self.config.priority == 255 {
            self.become_master(now, now, out);
            return;
        }
        // keepalived: a `state MASTER` non-owner waits one advert interval (and
        // a minimal skew) to hear whether a master exists, then takes over.
        let wait = match self.config.initial_state {
            InitialState::Master => self.master_interval + self.skew_for(1),
            InitialState::Backup => self.master_down_interval(),
        };
        self.transition(StateName::Backup, out);
        self.state = State::Backup {
            down_at: now + wait,
        };
    }

    /// Takes over at `at` (the time is now `now`; they differ when the driver
    /// calls late, and then the next advert is due one interval from now).
    fn become_master(&mut self, at: Instant, now: Instant, out: &mut Vec<Action>) {
        self.transition(StateName::Master, out);
        self.counters.became_master += 1;
        self.master = None;
        self.preempt_at = None;
        self.wants_master = false;
        // The advert goes first: the backups stop their timers at once, while
        // adding addresses may take the driver a few milliseconds.
        self.send(now, self.effective, out);
        out.push(Action::AddVips(self.config.vips.clone()));
        if let Some(a) = self.routes(true) {
            out.push(a);
        }
        out.push(self.announce(self.config.garp.master_repeat));
        let g = &self.config.garp;
        self.garp_second =
            (!g.master_delay.is_zero() && g.master_repeat > 0).then(|| at + g.master_delay);
        self.garp_refresh = (!g.master_refresh.is_zero()).then(|| at + g.master_refresh);
        self.state = State::Master {
            advert_at: next_after(at, now, self.config.advert_interval),
        };
    }

    /// Master → Backup because a better master exists.
    fn step_down(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.transition(StateName::Backup, out);
        out.push(Action::RemoveVips(self.config.vips.clone()));
        out.extend(self.routes(false));
        self.clear_garp();
        self.state = State::Backup {
            down_at: now + self.master_down_interval(),
        };
    }

    /// Leaves MASTER for FAULT or STOP: priority 0 tells the backups at once.
    fn release(&mut self, now: Instant, out: &mut Vec<Action>) {
        if matches!(self.state, State::Master { .. }) {
            self.send(now, 0, out);
            out.push(Action::RemoveVips(self.config.vips.clone()));
            out.extend(self.routes(false));
        }
        self.clear_garp();
    }

    fn stop(&mut self, now: Instant, out: &mut Vec<Action>) {
        if matches!(self.state, State::Stop) {
            return;
        }
        self.release(now, out);
        self.transition(StateName::Stop, out);
        self.state = State::Stop;
    }

    fn clear_garp(&mut self) {
        self.garp_second = None;
        self.garp_refresh = None;
        self.lower_garp_second = None;
        self.lower_garp_at = None;
    }

    fn transition(&self, to: StateName, out: &mut Vec<Action>) {
        let from = self.state();
        if from != to {
            out.push(Action::State { from, to });
        }
    }

    /// Add (or remove) the routes and rules, if there are any.
    fn routes(&self, add: bool) -> Option<Action> {
        if self.config.routes.is_empty() && self.config.rules.is_empty() {
            return None;
        }
        let (routes, rules) = (self.config.routes.clone(), self.config.rules.clone());
        Some(if add {
            Action::AddRoutes { routes, rules }
        } else {
            Action::RemoveRoutes { routes, rules }
        })
    }

    fn announce(&self, repeat: u32) -> Action {
        Action::Announce {
            addrs: self
                .config
                .vips
                .iter()
                .chain(&self.config.excluded)
                .copied()
                .collect(),
            repeat,
        }
    }

    fn send(&mut self, now: Instant, priority: u8, out: &mut Vec<Action>) {
        let advert = match &self.advert {
            Some(a) if a.priority == priority => Arc::clone(a),
            _ => {
                let a = Arc::new(Advert {
                    version: self.config.version,
                    vrid: self.config.vrid,
                    priority,
                    interval: self.config.wire_interval(),
                    auth: match self.config.version {
                        Version::V2 => self.config.auth.clone(),
                        Version::V3 => Auth::None,
                    },
                    addrs: self.config.vips.clone(),
                });
                self.advert = Some(Arc::clone(&a));
                a
            }
        };
        let src = self.config.primary;
        let v2_checksum = self.config.v3_checksum_as_v2
            && self.config.version == Version::V3
            && self.config.family() == Family::V4;
        // One trailer per advert, whatever the number of peers (the
        // destination is not signed).
        let trailer = match &self.config.auth_hmac {
            Some(h) if h.mode != crate::auth_hmac::Mode::ReceiveOnly => {
                let seq = self.sequencer.next(self.wall(now), h.anti_replay);
                let message = advert.emit(None);
                Some(crate::auth_hmac::sign(
                    h,
                    self.config.version,
                    self.config.vrid,
                    src,
                    &message,
                    seq,
                ))
            }
            _ => None,
        };
        // The guard's heartbeat paths: the same advert from our address
        // there, signed for that source.
        let paths = self.config.guard.as_ref().map_or(0, |g| g.heartbeat.len());
        for k in 0..paths {
            let Some(h) = self.config.guard.as_ref().and_then(|g| g.heartbeat.get(k)) else {
                break;
            };
            let (local, peers) = (h.local, h.peers.clone());
            let trailer = match &self.config.auth_hmac {
                Some(hm) if hm.mode != crate::auth_hmac::Mode::ReceiveOnly => {
                    let seq = self.sequencer.next(self.wall(now), hm.anti_replay);
                    Some(crate::auth_hmac::sign(
                        hm,
                        self.config.version,
                        self.config.vrid,
                        local,
                        &advert.emit(None),
                        seq,
                    ))
                }
                _ => None,
            };
            for peer in peers {
                out.push(Action::Send {
                    src: local,
                    to: Dest::Unicast(peer),
                    advert: advert.clone(),
                    v2_checksum,
                    trailer,
                });
                self.counters.sent += 1;
            }
        }
        if self.config.peers.is_empty() {
            out.push(Action::Send {
                src,
                to: Dest::Multicast,
                advert,
                v2_checksum,
                trailer,
            });
            self.counters.sent += 1;
        } else {
            for peer in &self.config.peers {
                out.push(Action::Send {
                    src,
                    to: Dest::Unicast(*peer),
                    advert: advert.clone(),
                    v2_checksum,
                    trailer,
                });
                self.counters.sent += 1;
            }
        }
    }

    /// The receive checks of RFC 9568 §7.1 / RFC 3768 §7.1. On `Err` nothing
    /// about the router changes but a counter.
    #[allow(clippy::too_many_arguments)] // the packet's parts, borrowed from the driver
    fn check(
        &mut self,
        now: Instant,
        src: IpAddr,
        dst: IpAddr,
        ttl: u8,
        bytes: &[u8],
        advert: &mut Advert,
        out: &mut Vec<Action>,
    ) -> Result<(), Drop> {
        let family = self.config.family();
        if Family::of(&src) != family {
            return Err(Drop::Family);
        }
        // Over a heartbeat path: unicast from a peer named there, with TTL
        // 255 (the link is direct).
        let heartbeat = self
            .config
            .guard
            .as_ref()
            .is_some_and(|g| g.path_of(src, dst).is_some());
        if (self.config.peers.is_empty() || heartbeat) && ttl != wire::TTL {
            return Err(Drop::Ttl);
        }
        // Multicast mode hears the group only, unicast mode unicast only (as
        // keepalived 2.4 checks).
        if !heartbeat && dst.is_multicast() != self.config.peers.is_empty() {
            return Err(Drop::Destination);
        }
        let msg_len = Advert::message_len(bytes, family).map_err(Drop::Wire)?;
        let extra = bytes.len().saturating_sub(msg_len);
        let trailer = (self.config.auth_hmac.is_some() && extra == crate::auth_hmac::TRAILER_LEN)
            .then(|| &bytes[msg_len..]);
        if extra != 0 && trailer.is_none() {
            return Err(Drop::Wire(WireError::TooLong));
        }
        let pseudo = Some(PseudoHeader { src, dst });
        Advert::parse_with_trailer_into(
            bytes,
            family,
            pseudo,
            self.config.v3_checksum_as_v2,
            extra,
            advert,
        )
        .map_err(Drop::Wire)?;
        if advert.version != self.config.version {
            return Err(Drop::Version);
        }
        if advert.vrid != self.config.vrid {
            return Err(Drop::Vrid);
        }
        if src == self.config.primary || self.config.guard.as_ref().is_some_and(|g| g.is_local(src))
        {
            return Err(Drop::Own);
        }
        if !heartbeat && !self.config.peers.is_empty() && !self.config.peers.contains(&src) {
            return Err(Drop::UnknownPeer);
        }
        self.check_hmac(now, src, &bytes[..msg_len.min(bytes.len())], trailer, out)?;
        match self.config.version {
            Version::V2 => {
                if advert.auth != self.config.auth {
                    return Err(Drop::Auth);
                }
                if advert.interval != self.config.wire_interval() {
                    return Err(Drop::Interval);
                }
            }
            // A zero interval would make Master_Down_Interval zero (RFC 9568
            // erratum 8301: it must not be 0).
            Version::V3 if advert.interval == 0 => return Err(Drop::Interval),
            Version::V3 => {}
        }
        Ok(())
    }

    /// The `auth_hmac` verdict on an advert from `src`: counted, logged once
    /// per kind until an advert is accepted again, never a state change.
    fn check_hmac(
        &mut self,
        now: Instant,
        src: IpAddr,
        message: &[u8],
        trailer: Option<&[u8]>,
        out: &mut Vec<Action>,
    ) -> Result<(), Drop> {
        use crate::auth_hmac::{verify, AntiReplay, Reject, Verdict};
        let Some(h) = &self.config.auth_hmac else {
            return Ok(());
        };
        let verdict = verify(
            h,
            &mut self.replay,
            // Each peer may also speak from its heartbeat addresses.
            self.config.peers.len()
                + self
                    .config
                    .guard
                    .as_ref()
                    .map_or(0, |g| g.heartbeat.iter().map(|h| h.peers.len()).sum()),
            self.config.version,
            self.config.vrid,
            src,
            message,
            trailer,
            self.wall_at_zero.saturating_add(now.as_micros()),
        );
        let name = &self.config.name;
        match verdict {
            Verdict::Accepted { skew_secs } => {
                self.counters.hmac_accepted += 1;
                self.hmac_logged.clear();
                if let (Some(skew), AntiReplay::Time { window_secs }) = (skew_secs, h.anti_replay) {
                    out.push(Action::Log(format!(
                        "({name}) authentication clock skew {skew} sec from {src} approaching window {window_secs} sec"
                    )));
                }
                Ok(())
            }
            Verdict::Unsigned => {
                self.counters.hmac_unsigned += 1;
                Ok(())
            }
            Verdict::Rejected(why) => {
                if self.hmac_logged.insert(why) {
                    let what = match why {
                        Reject::Missing => "missing authentication trailer",
                        Reject::Malformed => "malformed authentication trailer",
                        Reject::UnknownKey => "unknown authentication key id",
                        Reject::Invalid => "invalid authentication HMAC",
                        Reject::Stale => "stale authentication trailer (outside the time window)",
                        Reject::Replayed => "replayed authentication trailer",
                    };
                    out.push(Action::Log(format!(
                        "({name}) {what} from {src}; dropped (logged once until an advert is accepted)"
                    )));
                }
                Err(Drop::Hmac(why))
            }
        }
    }

    fn receive(
        &mut self,
        now: Instant,
        src: IpAddr,
        ours: IpAddr,
        advert: &Advert,
        out: &mut Vec<Action>,
    ) {
        let mismatch = self.config.check_addrs && !same_addrs(&advert.addrs, &self.config.vips);
        if mismatch {
            self.counters.address_list_mismatch += 1;
        }
        if advert.priority == 0 {
            self.counters.priority_zero_received += 1;
            // Priority 0 says "the master of these addresses is leaving". One
            // naming other addresses is a misconfigured peer or a forged packet:
            // it never hastens a takeover (the down timer still runs out).
            if mismatch && matches!(self.state, State::Backup { .. }) {
                return;
            }
        }
        match self.state {
            State::Backup { .. } => self.receive_as_backup(now, src, advert),
            State::Master { .. } => self.receive_as_master(now, src, ours, advert, out),
            State::Init { .. } | State::Fault | State::Stop => {}
        }
    }

    fn receive_as_backup(&mut self, now: Instant, src: IpAddr, advert: &Advert) {
        if advert.priority == 0 {
            // The master is leaving: take over after Skew_Time only.
            self.state = State::Backup {
                down_at: now + self.skew_time(),
            };
            return;
        }
        let lower = advert.priority < self.effective;
        if lower
            && self.config.preempt
            && !self.config.preempt_delay.is_zero()
            && self.preempt_at.is_none()
        {
            self.preempt_at = Some(now + self.config.preempt_delay);
        }
        let delaying = self.preempt_at.is_some_and(|at| now < at);
        if !self.config.preempt || !lower || delaying {
            if self.config.version == Version::V3 {
                let cs = u64::from(advert.interval);
                self.master_interval = Duration::from_millis(cs * 10);
            }
            if !lower {
                self.preempt_at = None;
            }
            self.wants_master = false;
            self.master = Some(src);
            self.master_priority = advert.priority;
            self.state = State::Backup {
                down_at: now + self.master_down_interval(),
            };
        }
        // Otherwise: a lower-priority master and we pre-empt: discard, and the
        // down timer takes us to MASTER.
    }

    fn receive_as_master(
        &mut self,
        now: Instant,
        src: IpAddr,
        ours: IpAddr,
        advert: &Advert,
        out: &mut Vec<Action>,
    ) {
        if advert.priority == 0 {
            // Someone left; make sure the backups hear a master now (within
            // the answer budget: the periodic advert is never far off).
            if self.answers.allow(now, self.config.advert_interval) {
                self.send(now, self.effective, out);
                self.state = State::Master {
                    advert_at: now + self.config.advert_interval,
                };
            } else {
                self.counters.lower_prio_unanswered += 1;
            }
            return;
        }
        let better = advert.priority > self.effective
            || (advert.priority == self.effective && addr_greater(src, ours));
        if better {
            if self.config.version == Version::V3 {
                self.master_interval = Duration::from_millis(u64::from(advert.interval) * 10);
            }
            self.master = Some(src);
            self.master_priority = advert.priority;
            self.step_down(now, out);
        } else {
            // A master we outrank: two masters, a split brain healing.
            self.counters.dual_master_adverts += 1;
            let quiet = self.quiet();
            if self.guard.dual_master(now, quiet) {
                self.counters.dual_master_episodes += 1;
                out.push(Action::Log(format!(
                    "({}) dual master: {src} (priority {}) is MASTER too; we outrank it and stay \
                     MASTER, it must step down",
                    self.config.name, advert.priority
                )));
                out.push(Action::DualMaster {
                    peer: src,
                    priority: advert.priority,
                });
            }
            self.counters.lower_prio_received += 1;
            self.answer_lower(now, out);
        }
    }

    /// A lower-priority master exists: force a new election at once (as
    /// keepalived does, unless `lower_prio_no_advert`) and remind the LAN
    /// who owns the VIPs, with a second burst after `garp_lower_prio_delay`.
    /// Within the answer budget only, and a GARP burst at most once per
    /// `garp_lower_prio_delay` (a flood of forged adverts must not amplify).
    fn answer_lower(&mut self, now: Instant, out: &mut Vec<Action>) {
        if !self.answers.allow(now, self.config.advert_interval) {
            self.counters.lower_prio_unanswered += 1;
            return;
        }
        if !self.config.lower_prio_no_advert {
            self.send(now, self.effective, out);
        }
        let g = &self.config.garp;
        let (repeat, delay) = (g.lower_prio_repeat, g.lower_prio_delay);
        let burst_due = self.lower_garp_second.is_none()
            && self.lower_garp_at.is_none_or(|at| now.since(at) >= delay);
        if repeat > 0 && burst_due {
            out.push(self.announce(repeat));
            self.lower_garp_at = Some(now);
            if !delay.is_zero() {
                self.lower_garp_second = Some(now + delay);
            }
        }
    }

    fn track(&mut self, now: Instant, weight: i32, fault: bool, out: &mut Vec<Action>) {
        self.reweigh(now, weight, out);
        if fault == self.fault {
            return;
        }
        self.fault = fault;
        match (fault, self.state) {
            (true, State::Backup { .. } | State::Master { .. }) => {
                self.release(now, out);
                self.wants_master = false;
                self.transition(StateName::Fault, out);
                self.state = State::Fault;
            }
            (false, State::Fault) if !self.guard_fault => self.leave_fault(now, out),
            _ => {}
        }
    }

    /// The tracked weights' sum is `weight`: the effective priority from
    /// the configured one (a backup's deadline moves with its skew).
    fn reweigh(&mut self, now: Instant, weight: i32, out: &mut Vec<Action>) {
        self.weight = weight;
        let effective = if self.config.priority == 255 {
            255
        } else {
            let p = i32::from(self.config.priority) + weight;
            u8::try_from(p.clamp(1, 254)).unwrap_or(1)
        };
        if effective != self.effective {
            let old_skew = self.skew_time();
            self.effective = effective;
            out.push(Action::Priority {
                priority: effective,
            });
            // A backup's deadline moves with its skew (keepalived does the same).
            if let State::Backup { down_at } = self.state {
                let new_skew = self.skew_time();
                let down_at = if let Some(later) = new_skew.checked_sub(old_skew) {
                    down_at + later
                } else {
                    down_at
                        .saturating_sub(old_skew.saturating_sub(new_skew))
                        .max(now)
                };
                self.state = State::Backup { down_at };
            }
        }
    }

    /// FAULT → BACKUP, forgetting what was learned from the old master.
    fn leave_fault(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.master_interval = self.config.advert_interval;
        self.preempt_at = None;
        self.master = None;
        self.wants_master = false;
        self.transition(StateName::Backup, out);
        self.state = State::Backup {
            down_at: now + self.master_down_interval(),
        };
    }

    /// Sync groups: move with the group.
    fn force(&mut self, now: Instant, to: StateName, out: &mut Vec<Action>) {
        match (to, self.state) {
            (StateName::Master, State::Backup { .. }) => self.become_master(now, now, out),
            (StateName::Backup, State::Master { .. }) => self.step_down(now, out),
            (
                StateName::Fault,
                State::Init { .. } | State::Backup { .. } | State::Master { .. },
            ) => {
                self.release(now, out);
                self.wants_master = false;
                self.transition(StateName::Fault, out);
                self.state = State::Fault;
            }
            (StateName::Backup, State::Fault) if !self.fault && !self.guard_fault => {
                self.leave_fault(now, out);
            }
            _ => {}
        }
    }
}

/// The next period after `at`, or one period from `now` if that is already past.
fn next_after(at: Instant, now: Instant, period: Duration) -> Instant {
    let next = at + period.max(Duration::from_micros(1));
    if next <= now {
        now + period.max(Duration::from_micros(1))
    } else {
        next
    }
}

/// The RFC's tie-break: the higher primary address wins.
fn addr_greater(a: IpAddr, b: IpAddr) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => a.octets() > b.octets(),
        (IpAddr::V6(a), IpAddr::V6(b)) => a.octets() > b.octets(),
        (IpAddr::V6(_), IpAddr::V4(_)) => true,
        (IpAddr::V4(_), IpAddr::V6(_)) => false,
    }
}

/// Whether two address lists hold the same addresses, in any order. The usual
/// case, the same list in the same order, costs no allocation.
fn same_addrs(a: &[IpAddr], b: &[IpAddr]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    if a == b {
        return true;
    }
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort();
    b.sort();
    a == b
}

/// Hex for byte fields in JSON replays.
mod hex {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        use std::fmt::Write as _;
        let mut text = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            let _ = write!(text, "{b:02x}");
        }
        s.serialize_str(&text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        if text.len() % 2 != 0 {
            return Err(serde::de::Error::custom("odd number of hex digits"));
        }
        (0..text.len())
            .step_by(2)
            .map(|i| {
                text.get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| serde::de::Error::custom("bad hex digit"))
            })
            .collect()
    }
}
