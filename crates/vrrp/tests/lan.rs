//! An in-memory LAN: N routers, a wire with latency and loss, partitions,
//! crashes and restarts, all on a virtual clock — whole failover stories run
//! in microseconds. Property tests check what the RFC promises:
//! - after convergence exactly one master, the one the RFC picks (highest
//!   priority, then highest primary address);
//! - after the master dies, the new master appears within its
//!   Master_Down_Interval (plus the wire's latency);
//! - a flapping link never leaves two connected masters for longer than one
//!   Master_Down_Interval.

#![allow(clippy::unwrap_used)]

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use proptest::prelude::*;
use vrrp::*;

/// A tiny deterministic RNG (xorshift64*), seeded by proptest.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// True with probability `p` percent.
    fn percent(&mut self, p: u64) -> bool {
        self.next() % 100 < p
    }
}

struct Node {
    router: Router,
    /// The process runs (a crashed node neither sends nor receives).
    alive: bool,
    /// Nodes hear each other only within the same segment.
    segment: u32,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Delivery {
    at: Instant,
    seq: u64,
    to: usize,
    src: IpAddr,
    bytes: Vec<u8>,
}

struct Lan {
    nodes: Vec<Node>,
    queue: BinaryHeap<Reverse<Delivery>>,
    now: Instant,
    latency: Duration,
    loss_percent: u64,
    rng: Rng,
    seq: u64,
    /// (time, masters in each segment) after every event.
    history: Vec<(Instant, Vec<usize>)>,
}

impl Lan {
    fn new(configs: Vec<Config>, latency: Duration, seed: u64) -> Self {
        Self {
            nodes: configs
                .into_iter()
                .map(|c| Node {
                    router: Router::new(c),
                    alive: false,
                    segment: 0,
                })
                .collect(),
            queue: BinaryHeap::new(),
            now: Instant::ZERO,
            latency,
            loss_percent: 0,
            rng: Rng(seed | 1),
            seq: 0,
            history: Vec::new(),
        }
    }

    fn input(&mut self, i: usize, input: Input) {
        let actions = self.nodes[i].router.handle(self.now, input);
        self.carry_out(i, &actions);
    }

    fn start(&mut self, i: usize) {
        self.nodes[i].alive = true;
        self.input(i, Input::Start);
    }

    /// The process dies without a word (no priority 0).
    fn crash(&mut self, i: usize) {
        self.nodes[i].alive = false;
        let cfg = self.nodes[i].router.config().clone();
        self.nodes[i].router = Router::new(cfg);
        self.record();
    }

    fn carry_out(&mut self, from: usize, actions: &[Action]) {
        for a in actions {
            let Some(bytes) = a.payload() else { continue };
            let Action::Send { src, .. } = a else {
                continue;
            };
            for to in 0..self.nodes.len() {
                if to == from || self.nodes[to].segment != self.nodes[from].segment {
                    continue;
                }
                if self.rng.percent(self.loss_percent) {
                    continue;
                }
                let jitter = Duration::from_micros(self.rng.next() % 100);
                self.seq += 1;
                self.queue.push(Reverse(Delivery {
                    at: self.now + self.latency + jitter,
                    seq: self.seq,
                    to,
                    src: *src,
                    bytes: bytes.clone(),
                }));
            }
        }
        self.record();
    }

    fn masters(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].alive && self.nodes[i].router.state() == StateName::Master)
            .collect()
    }

    fn record(&mut self) {
        let m = self.masters();
        if self.history.last().is_none_or(|(_, last)| *last != m) {
            self.history.push((self.now, m));
        }
    }

    /// Runs events until `until`.
    fn run_until(&mut self, until: Instant) {
        loop {
            let next_timer = (0..self.nodes.len())
                .filter(|&i| self.nodes[i].alive)
                .filter_map(|i| self.nodes[i].router.poll_at().map(|t| (t, i)))
                .min();
            let next_packet = self.queue.peek().map(|Reverse(d)| d.at);
            let t = match (next_timer, next_packet) {
                (Some((t, _)), Some(p)) => t.min(p),
                (Some((t, _)), None) => t,
                (None, Some(p)) => p,
                (None, None) => break,
            };
            if t > until {
                break;
            }
            self.now = t;
            if next_packet == Some(t) {
                let Reverse(d) = self.queue.pop().unwrap();
                if self.nodes[d.to].alive {
                    let dst = IpAddr::V4(vrrp::wire::MULTICAST_V4);
                    let input = Input::Packet {
                        src: d.src,
                        dst,
                        ttl: 255,
                        bytes: d.bytes,
                    };
                    self.input(d.to, input);
                }
            } else if let Some((_, i)) = next_timer {
                self.input(i, Input::Timer);
            }
        }
        self.now = until;
    }

    /// The router the RFC picks among the live ones in `segment`.
    fn rightful_master(&self, segment: u32) -> Option<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].alive && self.nodes[i].segment == segment)
            .max_by_key(|&i| {
                let r = &self.nodes[i].router;
                let IpAddr::V4(a) = r.config().primary else {
                    unreachable!()
                };
                (r.priority(), a.octets())
            })
    }

    fn max_down_interval(&self) -> Duration {
        self.nodes
            .iter()
            .map(|n| n.router.master_down_interval())
            .max()
            .unwrap()
    }
}

fn configs(prios: &[u8], version: Version, interval_ms: u64) -> Vec<Config> {
    prios
        .iter()
        .enumerate()
        .map(|(i, &p)| Config {
            name: format!("lb{i}"),
            vrid: 51,
            version,
            priority: p,
            advert_interval: Duration::from_millis(interval_ms),
            primary: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 10 + u8::try_from(i).unwrap())),
            vips: vec![IpAddr::V4(Ipv4Addr::new(198, 51, 100, 250))],
            ..Config::default()
        })
        .collect()
}

fn scenario() -> impl Strategy<Value = (Vec<u8>, Version, u64, u64, Vec<u64>, u64)> {
    (2usize..=5).prop_flat_map(|n| {
        (
            prop::collection::vec(1u8..=254, n),
            prop_oneof![Just(Version::V2), Just(Version::V3)],
            prop_oneof![Just(1000u64), Just(100), Just(30)],
            0u64..5,
            prop::collection::vec(0u64..2000, n),
            any::<u64>(),
        )
    })
}

/// v2 counts whole seconds.
fn interval_for(version: Version, ms: u64) -> u64 {
    if version == Version::V2 {
        1000
    } else {
        ms
    }
}

/// All routers started together and run for four Master_Down_Intervals.
fn settled_lan(
    prios: &[u8],
    version: Version,
    ms: u64,
    latency_ms: u64,
    seed: u64,
) -> (Lan, Duration) {
    let ms = interval_for(version, ms);
    let latency = Duration::from_millis(latency_ms.min(ms / 10));
    let mut lan = Lan::new(configs(prios, version, ms), latency, seed);
    for i in 0..prios.len() {
        lan.start(i);
    }
    let t = lan.now + lan.max_down_interval() * 4;
    lan.run_until(t);
    (lan, latency)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 200,
        failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::Off)),
        ..ProptestConfig::default()
    })]

    #[test]
    fn converges_to_exactly_the_master_the_rfc_picks(
        (prios, version, ms, latency_ms, starts, seed) in scenario(),
    ) {
        let ms = interval_for(version, ms);
        let mut lan = Lan::new(configs(&prios, version, ms), Duration::from_millis(latency_ms.min(ms / 10)), seed);
        lan.loss_percent = 10;
        let mut order: Vec<usize> = (0..prios.len()).collect();
        order.sort_by_key(|&i| starts[i]);
        for i in order {
            lan.run_until(Instant::from_millis(starts[i]));
            lan.start(i);
        }
        // Chaos with loss, then a quiet stretch.
        let mdi = lan.max_down_interval();
        let t = lan.now + mdi * 5;
        lan.run_until(t);
        lan.loss_percent = 0;
        let t = lan.now + mdi * 5;
        lan.run_until(t);
        let masters = lan.masters();
        prop_assert_eq!(masters.len(), 1, "masters {:?} prios {:?}", masters, prios);
        // The RFC picks the highest priority. Among equal highest priorities a
        // backup does not pre-empt a master (RFC 9568 6.4.2), so whichever got
        // there first stays; only two masters settle it by address.
        let best = prios.iter().max().unwrap();
        prop_assert_eq!(prios[masters[0]], *best);
        if prios.iter().filter(|p| *p == best).count() == 1 {
            prop_assert_eq!(Some(masters[0]), lan.rightful_master(0));
        }
    }

    #[test]
    fn a_dead_master_is_replaced_within_master_down_interval(
        (prios, version, ms, latency_ms, _starts, seed) in scenario(),
    ) {
        let (mut lan, latency) = settled_lan(&prios, version, ms, latency_ms, seed);
        let old = lan.masters();
        prop_assert_eq!(old.len(), 1);
        let dead = old[0];
        let crash_at = lan.now;
        lan.crash(dead);
        let heir = lan.rightful_master(0).unwrap();
        let bound = lan.nodes[heir].router.master_down_interval() + latency + Duration::from_micros(100);
        let t = crash_at + lan.max_down_interval() * 3;
        lan.run_until(t);
        let masters = lan.masters();
        prop_assert_eq!(masters.len(), 1);
        let new = masters[0];
        prop_assert_eq!(lan.nodes[new].router.priority(), lan.nodes[heir].router.priority());
        // When did a new master first appear?
        let took_over = lan.history.iter().find(|(at, m)| *at >= crash_at && !m.is_empty()).map(|(at, _)| *at).unwrap();
        prop_assert!(took_over - crash_at <= bound, "took {:?} > {:?}", took_over - crash_at, bound);
    }

    #[test]
    fn a_flapping_link_never_keeps_two_masters_longer_than_master_down_interval(
        (prios, version, ms, latency_ms, _starts, seed) in scenario(),
        flaps in prop::collection::vec((100u64..5000, 100u64..5000), 1..6),
    ) {
        let (mut lan, _) = settled_lan(&prios, version, ms, latency_ms, seed);
        let bound = lan.max_down_interval();
        for (down_ms, up_ms) in flaps {
            // Cut node 0 off from the others, then heal.
            lan.nodes[0].segment = 1;
            let t = lan.now + Duration::from_millis(down_ms);
            lan.run_until(t);
            lan.nodes[0].segment = 0;
            let healed = lan.now;
            let t = healed + Duration::from_millis(up_ms).max(bound * 2);
            lan.run_until(t);
            // Find how long two or more masters coexisted after the heal.
            let mut dual_since: Option<Instant> = None;
            let mut worst = Duration::ZERO;
            for (at, m) in lan.history.iter().filter(|(at, _)| *at >= healed) {
                match (m.len() >= 2, dual_since) {
                    (true, None) => dual_since = Some((*at).max(healed)),
                    (false, Some(s)) => {
                        worst = worst.max(*at - s);
                        dual_since = None;
                    }
                    _ => {}
                }
            }
            // Dual masters at the heal itself started then.
            if lan.history.iter().rev().find(|(at, _)| *at <= healed).is_some_and(|(_, m)| m.len() >= 2) {
                let ended = lan.history.iter().find(|(at, m)| *at > healed && m.len() < 2).map(|(at, _)| *at);
                if let Some(e) = ended {
                    worst = worst.max(e - healed);
                }
            }
            prop_assert!(worst <= bound, "two masters for {:?} > {:?}", worst, bound);
            prop_assert_eq!(lan.masters().len(), 1);
        }
    }
}

#[test]
fn restart_of_the_rightful_master_takes_the_vip_back() {
    let mut lan = Lan::new(
        configs(&[100, 90], Version::V2, 1000),
        Duration::from_millis(1),
        7,
    );
    lan.start(0);
    lan.start(1);
    lan.run_until(Instant::from_millis(10_000));
    assert_eq!(lan.masters(), [0]);
    lan.crash(0);
    lan.run_until(Instant::from_millis(20_000));
    assert_eq!(lan.masters(), [1]);
    lan.start(0);
    // Preemption: lb0 (100) takes over from lb1 (90) one Master_Down_Interval later.
    lan.run_until(Instant::from_millis(30_000));
    assert_eq!(lan.masters(), [0]);
}
