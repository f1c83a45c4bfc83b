//! One BFD session's state machine (RFC 5880 §6), asynchronous mode,
//! demand mode off, no echo.
//!
//! Time is a count of microseconds since the driver's epoch; the session
//! never reads a clock. The driver calls [`Session::receive`] with each
//! control packet addressed to it and [`Session::on_timer`] once
//! [`Session::poll_at`] has passed; both append [`Output`]s: packets to
//! send and state changes to act on.

use crate::wire::{Control, Diag, State};

/// RFC 5880 §6.8.3: while a session is not Up, it sends no faster than
/// once a second.
pub const SLOW_TX_US: u32 = 1_000_000;

/// What the operator set (keepalived's `bfd_instance` keywords), in
/// microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// `min_tx`: the interval we want to send at while Up.
    pub min_tx: u32,
    /// `min_rx`: the fastest the peer may send to us.
    pub min_rx: u32,
    /// `idle_tx`: the interval while not Up (at least [`SLOW_TX_US`]).
    pub idle_tx: u32,
    /// `multiplier`: packets the peer may miss before we call it Down.
    pub multiplier: u8,
    /// `passive`: send nothing until the peer has spoken.
    pub passive: bool,
}

impl Default for Config {
    /// keepalived's defaults: 10 ms both ways, idle 1 s, multiplier 5.
    fn default() -> Self {
        Self {
            min_tx: 10_000,
            min_rx: 10_000,
            idle_tx: SLOW_TX_US,
            multiplier: 5,
            passive: false,
        }
    }
}

/// What a step of the session asks of the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send this packet to the peer now.
    Send(Control),
    /// The session changed state (and why, for a Down).
    Changed { from: State, to: State, diag: Diag },
}

/// Why a packet was not taken (the part of §6.8.6 that needs the session).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("your discriminator {got} is not ours ({ours})")]
    WrongDiscriminator { got: u32, ours: u32 },
    #[error("authenticated packet, and this session has no authentication")]
    Authenticated,
    #[error("demand mode asked for; this session runs asynchronous mode only")]
    Demand,
    #[error("the session is administratively down")]
    AdminDown,
    /// A packet without our discriminator and from another session than
    /// the peer's (§6.8.6 lets it through; a spoofed Down would end the
    /// session). The peer's restart is seen by timeout instead.
    #[error("no discriminator of ours, and my discriminator {got} is not the peer's ({known})")]
    StrangerDiscriminator { got: u32, known: u32 },
}

/// Counters for `status` and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub sent: u64,
    pub received: u64,
    pub refused: u64,
    pub up: u64,
    pub down: u64,
}

/// One session.
#[derive(Debug, Clone)]
pub struct Session {
    cfg: Config,
    state: State,
    diag: Diag,
    local_disc: u32,
    remote_disc: u32,
    remote_state: State,
    /// The peer's Required Min RX (initially 1 µs, §6.8.1).
    remote_min_rx: u32,
    /// The peer's Desired Min TX and multiplier, from its last packet.
    remote_desired_tx: u32,
    remote_mult: u8,
    /// The Desired Min TX we advertise now (idle while not Up).
    desired_tx: u32,
    /// A poll sequence is running: our packets carry P until an F comes.
    polling: bool,
    /// A Final is owed to the peer's Poll.
    final_owed: bool,
    /// While a poll sequence runs after we raised Desired Min TX, the
    /// interval we sent at before (§6.8.3: it holds until the Final); and
    /// after we lowered Required Min RX, the one the peer still sends at
    /// (the detection time holds too).
    held_tx: Option<u32>,
    held_rx: Option<u32>,
    next_tx: Option<u64>,
    detect_at: Option<u64>,
    /// The detection time expired once while Down (the second expiry
    /// forgets the peer's discriminator).
    expired_down: bool,
    rng: u64,
    counters: Counters,
    /// When the last packet went out, and the time of the step running
    /// (so `send` can record it).
    last_tx: Option<u64>,
    now_hint: u64,
}

impl Session {
    /// A session in Down, with our discriminator (non-zero, unique per
    /// driver) and a seed for the transmit jitter.
    pub fn new(cfg: Config, local_disc: u32, seed: u64) -> Self {
        Self {
            cfg,
            state: State::Down,
            diag: Diag::None,
            local_disc: local_disc.max(1),
            remote_disc: 0,
            remote_state: State::Down,
            remote_min_rx: 1,
            remote_desired_tx: 0,
            remote_mult: 0,
            desired_tx: cfg.idle_tx.max(SLOW_TX_US),
            polling: false,
            final_owed: false,
            held_tx: None,
            held_rx: None,
            next_tx: None,
            detect_at: None,
            expired_down: false,
            rng: seed | 1,
            counters: Counters::default(),
            last_tx: None,
            now_hint: 0,
        }
    }

    /// Starts sending (an active session sends at once).
    pub fn start(&mut self, now: u64) {
        if !self.cfg.passive {
            self.next_tx = Some(now);
        }
    }

    pub fn state(&self) -> State {
        self.state
    }
    pub fn diag(&self) -> Diag {
        self.diag
    }
    pub fn remote_state(&self) -> State {
        self.remote_state
    }
    pub fn local_disc(&self) -> u32 {
        self.local_disc
    }
    pub fn remote_disc(&self) -> u32 {
        self.remote_disc
    }
    pub fn config(&self) -> Config {
        self.cfg
    }
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The earliest time [`Session::on_timer`] has work.
    pub fn poll_at(&self) -> Option<u64> {
        match (self.next_tx, self.detect_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The interval we send at: the slower of what we want and what the
    /// peer can take (§6.8.7). Zero when the peer takes nothing.
    pub fn tx_interval(&self) -> u32 {
        if self.remote_min_rx == 0 {
            return 0;
        }
        let ours = self
            .held_tx
            .map_or(self.desired_tx, |h| h.min(self.desired_tx));
        ours.max(self.remote_min_rx)
    }

    /// How long without a packet before the peer is declared Down
    /// (§6.8.4, asynchronous mode): its multiplier times the slower of
    /// what we can take and what it wants to send. `None` before the
    /// peer has sent anything.
    pub fn detection_time(&self) -> Option<u64> {
        if self.remote_mult == 0 {
            return None;
        }
        let rx = self
            .held_rx
            .map_or(self.cfg.min_rx, |h| h.max(self.cfg.min_rx));
        Some(u64::from(self.remote_mult) * u64::from(rx.max(self.remote_desired_tx)))
    }

    /// A small xorshift for the jitter; no security rests on it.
    fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    /// The next periodic send: the interval less 0–25% (0–10% short of
    /// 75% with a multiplier of 1), §6.8.7.
    fn schedule_tx(&mut self, now: u64) {
        let iv = u64::from(self.tx_interval());
        if iv == 0 || (self.cfg.passive && self.remote_disc == 0) {
            self.next_tx = None;
            return;
        }
        let (lo, span) = if self.cfg.multiplier == 1 {
            (75, 15)
        } else {
            (75, 25)
        };
        let pct = lo + self.next_random() % (span + 1);
        self.next_tx = Some(now + iv * pct / 100);
    }

    fn packet(&mut self) -> Control {
        let fin = std::mem::take(&mut self.final_owed);
        Control {
            diag: self.diag,
            state: self.state,
            poll: self.polling && !fin,
            fin,
            cpi: false,
            demand: false,
            detect_mult: self.cfg.multiplier.max(1),
            my_disc: self.local_disc,
            your_disc: self.remote_disc,
            desired_min_tx: self.desired_tx,
            required_min_rx: self.cfg.min_rx,
            required_min_echo_rx: 0,
            auth: None,
        }
    }

    fn send(&mut self, out: &mut Vec<Output>) {
        let p = self.packet();
        self.counters.sent += 1;
        self.last_tx = Some(self.now_hint);
        out.push(Output::Send(p));
    }

    /// Sends the next periodic packet now if it is due within `ahead` µs
    /// and at least 75% of the interval has passed since the last one
    /// (the earliest §6.8.7 allows): a driver that is awake anyway uses it
    /// to send several sessions' packets in one wake-up. True if it sent.
    pub fn send_early(&mut self, now: u64, ahead: u64, out: &mut Vec<Output>) -> bool {
        let Some(next) = self.next_tx else {
            return false;
        };
        let iv = u64::from(self.tx_interval());
        let floor = self.last_tx.map_or(0, |t| t + iv * 3 / 4);
        if next > now + ahead || now < floor || iv == 0 {
            return false;
        }
        self.now_hint = now;
        self.send(out);
        self.schedule_tx(now);
        true
    }

    /// Sets the Desired Min TX for the state; a change while Up starts a
    /// poll sequence (§6.8.3).
    fn set_desired_tx(&mut self) {
        let want = if self.state == State::Up {
            self.cfg.min_tx
        } else {
            self.cfg.idle_tx.max(SLOW_TX_US)
        };
        if want != self.desired_tx {
            if self.state == State::Up {
                if want > self.desired_tx && self.held_tx.is_none() {
                    self.held_tx = Some(self.desired_tx);
                }
                self.polling = true;
            }
            self.desired_tx = want;
        }
    }

    /// The poll sequence is over (a Final came, or the session left Up):
    /// the new timers count from now.
    fn end_poll(&mut self) {
        self.polling = false;
        self.held_tx = None;
        self.held_rx = None;
    }

    fn change(&mut self, now: u64, to: State, diag: Diag, out: &mut Vec<Output>) {
        let from = self.state;
        if from == to {
            return;
        }
        self.state = to;
        if to == State::Down || to == State::AdminDown {
            self.diag = diag;
            self.end_poll();
        } else if to == State::Up {
            self.diag = Diag::None;
        }
        match to {
            State::Up => self.counters.up += 1,
            State::Down if from == State::Up => self.counters.down += 1,
            _ => {}
        }
        self.set_desired_tx();
        out.push(Output::Changed { from, to, diag });
        // Tell the peer at once rather than at the next periodic send.
        if !(self.cfg.passive && self.remote_disc == 0) && self.remote_min_rx != 0 {
            self.send(out);
            self.schedule_tx(now);
        }
    }

    /// Handles a control packet the driver matched to this session (by
    /// its Your Discriminator, or by address when that is zero).
    pub fn receive(&mut self, now: u64, p: &Control, out: &mut Vec<Output>) -> Result<(), Refused> {
        self.now_hint = now;
        let refused = |s: &mut Self, r| {
            s.counters.refused += 1;
            Err(r)
        };
        if p.your_disc != 0 && p.your_disc != self.local_disc {
            return refused(
                self,
                Refused::WrongDiscriminator {
                    got: p.your_disc,
                    ours: self.local_disc,
                },
            );
        }
        if p.your_disc == 0 && self.remote_disc != 0 && p.my_disc != self.remote_disc {
            return refused(
                self,
                Refused::StrangerDiscriminator {
                    got: p.my_disc,
                    known: self.remote_disc,
                },
            );
        }
        if p.auth.is_some() {
            return refused(self, Refused::Authenticated);
        }
        if self.state == State::AdminDown {
            return refused(self, Refused::AdminDown);
        }
        self.counters.received += 1;
        let first = self.remote_disc == 0;
        self.remote_disc = p.my_disc;
        self.remote_state = p.state;
        self.remote_min_rx = p.required_min_rx;
        // A peer that lowers its Desired Min TX in a Poll may keep its old
        // rate until the Poll ends (keepalived does): the detection time
        // shrinks only once a packet without P says so. A raise counts at
        // once (the safe way).
        if !(p.poll && p.desired_min_tx < self.remote_desired_tx) {
            self.remote_desired_tx = p.desired_min_tx;
        }
        self.remote_mult = p.detect_mult;
        self.expired_down = false;
        if p.fin && self.polling {
            self.end_poll();
        }
        if p.demand {
            // We never run demand mode, so a peer asking for it would stop
            // sending to us; keep detecting as in asynchronous mode.
            self.counters.refused += 1;
        }
        // A packet sent for a state change below answers a Poll too.
        self.final_owed |= p.poll;
        match (self.state, p.state) {
            (s, State::AdminDown) if s != State::Down => {
                self.change(now, State::Down, Diag::NeighborDown, out);
            }
            (State::Down, State::Down) => self.change(now, State::Init, Diag::None, out),
            (State::Down | State::Init, State::Init) | (State::Init, State::Up) => {
                self.change(now, State::Up, Diag::None, out);
            }
            (State::Up, State::Down) => self.change(now, State::Down, Diag::NeighborDown, out),
            _ => {}
        }
        if self.final_owed && p.poll {
            // The Final goes at once, but no more often than a quarter of
            // the interval: a flood of Polls is not answered packet for
            // packet (the next periodic packet carries the F).
            let gap = u64::from(self.tx_interval()) / 4;
            if self.last_tx.is_none_or(|t| now >= t + gap) {
                self.send(out);
            }
        }
        // Detection restarts with each packet, in any state (Down too: two
        // expiries there forget the peer).
        self.detect_at = self.detection_time().map(|d| now + d);
        // The interval may have changed (the peer's Required Min RX); a
        // passive session starts sending now that it knows the peer. A
        // send already due sooner is kept.
        let due = self.next_tx;
        self.schedule_tx(now);
        if let (Some(old), Some(new)) = (due, self.next_tx) {
            if old < new && !first {
                self.next_tx = Some(old);
            }
        }
        Ok(())
    }

    /// Runs what is due at `now`: the detection timer, then the periodic
    /// send.
    pub fn on_timer(&mut self, now: u64, out: &mut Vec<Output>) {
        self.now_hint = now;
        if let Some(at) = self.detect_at {
            if now >= at {
                self.detect_at = None;
                match self.state {
                    State::Init | State::Up => {
                        self.change(now, State::Down, Diag::DetectionTimeExpired, out);
                        self.remote_state = State::Down;
                        self.detect_at = self.detection_time().map(|d| now + d);
                    }
                    State::Down => {
                        if self.expired_down {
                            self.forget_peer();
                        } else {
                            self.expired_down = true;
                            self.detect_at = self.detection_time().map(|d| now + d);
                        }
                    }
                    State::AdminDown => {}
                }
            }
        }
        if let Some(at) = self.next_tx {
            if now >= at {
                self.send(out);
                self.schedule_tx(now);
            }
        }
    }

    fn forget_peer(&mut self) {
        self.remote_disc = 0;
        self.remote_state = State::Down;
        self.remote_min_rx = 1;
        self.remote_desired_tx = 0;
        self.remote_mult = 0;
        self.detect_at = None;
        self.expired_down = false;
        if self.cfg.passive {
            self.next_tx = None;
        }
    }

    /// Goes AdminDown (a stop or a removed session): the packet to send
    /// a few times so the peer goes Down with diag 7 and not by timeout.
    pub fn admin_down(&mut self, now: u64, out: &mut Vec<Output>) {
        self.now_hint = now;
        if self.state != State::AdminDown {
            self.change(now, State::AdminDown, Diag::AdminDown, out);
        }
        self.next_tx = None;
        self.detect_at = None;
    }

    /// The packet a stopping session sends (AdminDown, diag 7).
    pub fn farewell(&mut self) -> Control {
        self.packet()
    }

    /// New timers from a reload; the state is kept. A change while Up
    /// starts a poll sequence so the peer learns it (§6.8.3).
    pub fn reconfigure(&mut self, now: u64, cfg: Config) {
        if cfg == self.cfg {
            return;
        }
        let rx_changed = cfg.min_rx != self.cfg.min_rx || cfg.multiplier != self.cfg.multiplier;
        if self.state == State::Up && cfg.min_rx < self.cfg.min_rx && self.held_rx.is_none() {
            self.held_rx = Some(self.cfg.min_rx);
        }
        self.cfg = cfg;
        self.set_desired_tx();
        if self.state == State::Up && rx_changed {
            self.polling = true;
        }
        if !cfg.passive && self.next_tx.is_none() && self.state != State::AdminDown {
            self.next_tx = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(tx: u32, rx: u32, mult: u8) -> Config {
        Config {
            min_tx: tx,
            min_rx: rx,
            idle_tx: SLOW_TX_US,
            multiplier: mult,
            passive: false,
        }
    }

    /// Two sessions on a lossless link with no delay; `cut` is when the
    /// link goes (b stops sending). Returns the times a went Up and Down.
    struct Pair {
        a: Session,
        b: Session,
        now: u64,
        a_up: Option<u64>,
        a_down: Option<(u64, Diag)>,
        b_alive: bool,
        false_downs: u32,
    }

    impl Pair {
        fn new(ca: Config, cb: Config) -> Self {
            let mut a = Session::new(ca, 0x1111, 7);
            let mut b = Session::new(cb, 0x2222, 11);
            a.start(0);
            b.start(0);
            Self {
                a,
                b,
                now: 0,
                a_up: None,
                a_down: None,
                b_alive: true,
                false_downs: 0,
            }
        }

        fn deliver(&mut self, from_a: bool, outs: Vec<Output>) {
            let mut queue: Vec<(bool, Output)> = outs.into_iter().map(|o| (from_a, o)).collect();
            while let Some((from_a, o)) = queue.pop() {
                let mut next = Vec::new();
                match o {
                    Output::Send(p) => {
                        if from_a && self.b_alive {
                            let _ = self.b.receive(self.now, &p, &mut next);
                            queue.extend(next.into_iter().map(|o| (false, o)));
                        } else if !from_a && self.b_alive {
                            let _ = self.a.receive(self.now, &p, &mut next);
                            queue.extend(next.into_iter().map(|o| (true, o)));
                        }
                    }
                    Output::Changed { to, diag, .. } if from_a => {
                        if to == State::Up {
                            self.a_up.get_or_insert(self.now);
                        }
                        if to == State::Down {
                            if self.b_alive {
                                self.false_downs += 1;
                            }
                            self.a_down.get_or_insert((self.now, diag));
                        }
                    }
                    Output::Changed { .. } => {}
                }
            }
        }

        /// Runs until `until`, jumping from deadline to deadline.
        fn run(&mut self, until: u64) {
            loop {
                let na = self.a.poll_at();
                let nb = if self.b_alive { self.b.poll_at() } else { None };
                let next = match (na, nb) {
                    (Some(x), Some(y)) => x.min(y),
                    (x, y) => match x.or(y) {
                        Some(v) => v,
                        None => return,
                    },
                };
                if next > until {
                    self.now = until;
                    return;
                }
                self.now = self.now.max(next);
                let mut out = Vec::new();
                if na.is_some_and(|t| t <= self.now) {
                    self.a.on_timer(self.now, &mut out);
                    self.deliver(true, std::mem::take(&mut out));
                }
                if self.b_alive && self.b.poll_at().is_some_and(|t| t <= self.now) {
                    self.b.on_timer(self.now, &mut out);
                    self.deliver(false, out);
                }
            }
        }
    }

    #[test]
    fn three_way_handshake_comes_up_at_once() {
        let mut p = Pair::new(cfg(10_000, 10_000, 3), cfg(10_000, 10_000, 3));
        p.run(5_000_000);
        assert_eq!(p.a.state(), State::Up);
        assert_eq!(p.b.state(), State::Up);
        // Both sent at t=0: Down/Down → Init → Up in the same instant.
        assert_eq!(p.a_up, Some(0));
        assert_eq!(p.false_downs, 0);
        // Once Up, both run at 10 ms (the poll sequence completed).
        assert_eq!(p.a.tx_interval(), 10_000);
        assert!(!p.a.polling && !p.b.polling);
        assert_eq!(p.a.detection_time(), Some(30_000));
    }

    #[test]
    fn a_dead_peer_is_down_within_the_detection_time() {
        let mut p = Pair::new(cfg(10_000, 10_000, 3), cfg(10_000, 10_000, 3));
        p.run(1_000_000);
        let cut = p.now;
        p.b_alive = false;
        p.run(cut + 1_000_000);
        let (at, diag) = p.a_down.expect("down");
        assert_eq!(diag, Diag::DetectionTimeExpired);
        assert!(at - cut <= 30_000, "{}", at - cut);
        assert!(at - cut >= 30_000 - 10_000, "{}", at - cut);
        assert_eq!(p.a.counters().down, 1);
        // Down, it sends at 1 s again, with the peer's discriminator
        // until the detection time passes twice more.
        assert_eq!(p.a.tx_interval(), SLOW_TX_US);
    }

    #[test]
    fn peer_admin_down_is_neighbor_down_not_a_timeout() {
        let mut a = Session::new(Config::default(), 5, 1);
        let mut out = Vec::new();
        let mut pk = Control {
            diag: Diag::None,
            state: State::Down,
            poll: false,
            fin: false,
            cpi: false,
            demand: false,
            detect_mult: 3,
            my_disc: 9,
            your_disc: 0,
            desired_min_tx: SLOW_TX_US,
            required_min_rx: 10_000,
            required_min_echo_rx: 0,
            auth: None,
        };
        a.receive(0, &pk, &mut out).unwrap();
        assert_eq!(a.state(), State::Init);
        pk.state = State::Up;
        pk.your_disc = 5;
        a.receive(1, &pk, &mut out).unwrap();
        assert_eq!(a.state(), State::Up);
        pk.state = State::AdminDown;
        pk.diag = Diag::AdminDown;
        a.receive(2, &pk, &mut out).unwrap();
        assert_eq!(a.state(), State::Down);
        assert_eq!(a.diag(), Diag::NeighborDown);
        // A wrong discriminator is refused and changes nothing.
        pk.your_disc = 77;
        assert!(matches!(
            a.receive(3, &pk, &mut out),
            Err(Refused::WrongDiscriminator { got: 77, ours: 5 })
        ));
        pk.your_disc = 5;
        pk.auth = Some(crate::wire::Auth {
            kind: 1,
            data: b"\x01secret".to_vec(),
        });
        assert_eq!(a.receive(4, &pk, &mut out), Err(Refused::Authenticated));
    }

    #[test]
    fn a_poll_is_answered_with_a_final_at_once() {
        let mut a = Session::new(Config::default(), 5, 1);
        let mut out = Vec::new();
        let pk = Control {
            diag: Diag::None,
            state: State::Down,
            poll: true,
            fin: false,
            cpi: false,
            demand: false,
            detect_mult: 3,
            my_disc: 9,
            your_disc: 0,
            desired_min_tx: SLOW_TX_US,
            required_min_rx: 10_000,
            required_min_echo_rx: 0,
            auth: None,
        };
        a.receive(0, &pk, &mut out).unwrap();
        let finals: Vec<_> = out
            .iter()
            .filter_map(|o| match o {
                Output::Send(p) if p.fin => Some(p),
                _ => None,
            })
            .collect();
        assert_eq!(finals.len(), 1);
        assert!(!finals[0].poll);
    }

    #[test]
    fn a_lower_rate_in_a_poll_counts_only_once_the_poll_ends() {
        let mut a = Session::new(cfg(10_000, 10_000, 3), 5, 1);
        let mut out = Vec::new();
        let mut pk = Control {
            diag: Diag::None,
            state: State::Init,
            poll: false,
            fin: false,
            cpi: false,
            demand: false,
            detect_mult: 3,
            my_disc: 9,
            your_disc: 5,
            desired_min_tx: SLOW_TX_US,
            required_min_rx: 10_000,
            required_min_echo_rx: 0,
            auth: None,
        };
        a.receive(0, &pk, &mut out).unwrap();
        assert_eq!(a.state(), State::Up);
        assert_eq!(a.detection_time(), Some(3_000_000));
        // The peer is Up and polls with 10 ms, still sending at 1 s.
        pk.state = State::Up;
        pk.poll = true;
        pk.desired_min_tx = 10_000;
        a.receive(1_000, &pk, &mut out).unwrap();
        assert_eq!(a.detection_time(), Some(3_000_000), "not yet");
        a.on_timer(40_000, &mut out);
        assert_eq!(a.state(), State::Up, "no Down 30 ms after the poll");
        // Its poll ended (our Final reached it): now 30 ms.
        pk.poll = false;
        a.receive(900_000, &pk, &mut out).unwrap();
        assert_eq!(a.detection_time(), Some(30_000));
    }

    /// A session brought Up at 10 ms by a peer with discriminator 9.
    fn up_at_10ms() -> (Session, Control) {
        let mut a = Session::new(cfg(10_000, 10_000, 3), 5, 1);
        let mut out = Vec::new();
        let mut pk = Control {
            diag: Diag::None,
            state: State::Init,
            poll: false,
            fin: false,
            cpi: false,
            demand: false,
            detect_mult: 3,
            my_disc: 9,
            your_disc: 5,
            desired_min_tx: 10_000,
            required_min_rx: 10_000,
            required_min_echo_rx: 0,
            auth: None,
        };
        a.receive(0, &pk, &mut out).unwrap();
        // Up: our Poll for 10 ms gets its Final.
        pk.state = State::Up;
        pk.fin = true;
        a.receive(1, &pk, &mut out).unwrap();
        pk.fin = false;
        a.on_timer(20_000, &mut out);
        assert_eq!(a.state(), State::Up);
        assert!(!a.polling, "the Up poll ended? {a:?}");
        (a, pk)
    }

    #[test]
    fn a_raised_min_tx_waits_for_the_final() {
        let (mut a, mut pk) = up_at_10ms();
        let mut out = Vec::new();
        a.reconfigure(30_000, cfg(50_000, 10_000, 3));
        assert!(a.polling);
        // §6.8.3: the peer's detection time is still 3 x 10 ms, so we
        // keep sending every 10 ms until it answers the Poll.
        assert_eq!(a.tx_interval(), 10_000);
        a.on_timer(a.poll_at().unwrap(), &mut out);
        let sent: Vec<_> = out
            .iter()
            .filter_map(|o| match o {
                Output::Send(p) => Some(p.clone()),
                Output::Changed { .. } => None,
            })
            .collect();
        assert!(sent.iter().all(|p| p.poll && p.desired_min_tx == 50_000));
        pk.fin = true;
        a.receive(45_000, &pk, &mut out).unwrap();
        assert_eq!(a.tx_interval(), 50_000);
    }

    #[test]
    fn a_lowered_min_rx_keeps_the_detection_time_until_the_final() {
        let (mut a, mut pk) = up_at_10ms();
        let mut out = Vec::new();
        pk.desired_min_tx = 1_000;
        a.receive(25_000, &pk, &mut out).unwrap();
        assert_eq!(a.detection_time(), Some(30_000));
        a.reconfigure(30_000, cfg(10_000, 2_000, 3));
        // The peer still sends every 10 ms until it has our Poll.
        assert_eq!(a.detection_time(), Some(30_000));
        pk.fin = true;
        a.receive(35_000, &pk, &mut out).unwrap();
        assert_eq!(a.detection_time(), Some(6_000));
    }

    #[test]
    fn a_packet_from_a_stranger_without_our_discriminator_is_refused() {
        let (mut a, mut pk) = up_at_10ms();
        let mut out = Vec::new();
        // Anyone on the link can send "Down, your discriminator 0".
        pk.your_disc = 0;
        pk.state = State::Down;
        pk.my_disc = 0xdead;
        assert_eq!(
            a.receive(30_000, &pk, &mut out),
            Err(Refused::StrangerDiscriminator {
                got: 0xdead,
                known: 9
            })
        );
        assert_eq!(a.state(), State::Up);
        // The peer itself, restarting with the same discriminator, counts.
        pk.my_disc = 9;
        a.receive(31_000, &pk, &mut out).unwrap();
        assert_eq!(a.state(), State::Down);
    }

    #[test]
    fn a_flood_of_polls_is_not_answered_packet_for_packet() {
        let (mut a, mut pk) = up_at_10ms();
        pk.poll = true;
        let mut out = Vec::new();
        let t0 = a.poll_at().unwrap();
        a.on_timer(t0, &mut out);
        out.clear();
        for i in 0..1_000 {
            a.receive(t0 + 1 + i, &pk, &mut out).unwrap();
        }
        let finals = out
            .iter()
            .filter(|o| matches!(o, Output::Send(p) if p.fin))
            .count();
        assert!(finals <= 1, "{finals} Finals for 1000 Polls in 1 ms");
        // The F is still owed, and the next periodic packet carries it.
        out.clear();
        a.on_timer(a.poll_at().unwrap(), &mut out);
        assert!(out.iter().any(|o| matches!(o, Output::Send(p) if p.fin)));
    }

    #[test]
    fn an_early_send_never_comes_before_three_quarters_of_the_interval() {
        let mut p = Pair::new(cfg(10_000, 10_000, 3), cfg(10_000, 10_000, 3));
        p.run(500_000);
        let now = p.now;
        let mut out = Vec::new();
        // Just sent (or about to): the window is closed right after a send.
        let next = p.a.poll_at().unwrap();
        p.a.on_timer(next, &mut out);
        out.clear();
        assert!(
            !p.a.send_early(next + 1_000, 20_000, &mut out),
            "1 ms after a send"
        );
        assert!(out.is_empty());
        assert!(
            p.a.send_early(next + 7_500, 20_000, &mut out),
            "75% of 10 ms"
        );
        assert_eq!(out.len(), 1);
        // Not when the next send is further away than `ahead`.
        out.clear();
        let after = p.a.poll_at().unwrap();
        assert!(after >= next + 7_500 + 7_500);
        assert!(!p.a.send_early(after - 1_000, 500, &mut out));
        assert!(now > 0);
    }

    #[test]
    fn passive_waits_for_the_peer() {
        let mut a = Session::new(
            Config {
                passive: true,
                ..Config::default()
            },
            5,
            1,
        );
        a.start(0);
        assert_eq!(a.poll_at(), None);
        let mut out = Vec::new();
        a.on_timer(10_000_000, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn not_up_sends_no_faster_than_once_a_second() {
        let mut a = Session::new(cfg(10_000, 10_000, 3), 5, 1);
        a.start(0);
        let mut out = Vec::new();
        a.on_timer(0, &mut out);
        assert_eq!(out.len(), 1);
        let next = a.poll_at().unwrap();
        assert!(next >= 750_000, "{next}");
        match &out[0] {
            Output::Send(p) => assert_eq!(p.desired_min_tx, SLOW_TX_US),
            Output::Changed { .. } => panic!("no change expected"),
        }
    }

    #[test]
    fn a_reload_while_up_polls_and_keeps_the_state() {
        let mut p = Pair::new(cfg(10_000, 10_000, 3), cfg(10_000, 10_000, 3));
        p.run(500_000);
        let now = p.now;
        p.a.reconfigure(now, cfg(20_000, 20_000, 3));
        assert!(p.a.polling);
        p.run(now + 500_000);
        assert_eq!(p.a.state(), State::Up);
        assert!(!p.a.polling, "the peer's Final ends the poll");
        assert_eq!(p.b.detection_time(), Some(60_000));
        assert_eq!(p.false_downs, 0);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(200))]
            /// For any timers on both sides: the pair comes Up, stays Up
            /// while the link lives, and a's Down comes within b's
            /// multiplier × max(a's min_rx, b's min_tx) of the cut, and
            /// not more than one of b's intervals early.
            #[test]
            fn detection_time_holds_for_any_timers(
                atx in 1_000u32..200_000, arx in 1_000u32..200_000, am in 1u8..10,
                btx in 1_000u32..200_000, brx in 1_000u32..200_000, bm in 1u8..10,
                run_for in 2_000_000u64..4_000_000,
            ) {
                let mut p = Pair::new(cfg(atx, arx, am), cfg(btx, brx, bm));
                p.run(run_for);
                prop_assert_eq!(p.a.state(), State::Up);
                prop_assert_eq!(p.b.state(), State::Up);
                prop_assert_eq!(p.false_downs, 0);
                let detect = u64::from(bm) * u64::from(arx.max(btx));
                prop_assert_eq!(p.a.detection_time(), Some(detect));
                let b_interval = u64::from(btx.max(arx));
                let cut = p.now;
                p.b_alive = false;
                p.run(cut + detect + 2_000_000);
                let (at, diag) = p.a_down.expect("a goes down");
                prop_assert_eq!(diag, Diag::DetectionTimeExpired);
                prop_assert!(at - cut <= detect, "{} > {}", at - cut, detect);
                prop_assert!(at - cut + b_interval >= detect, "{} too early", at - cut);
            }
        }
    }
}
