//! The split-brain guard (keepalived-rs extension, `split_brain_guard`):
//! the decisions, pure — the driver sends and hears the heartbeat path's
//! adverts and probes the witnesses, and tells [`crate::Router`] what it
//! found ([`crate::Input::Witness`]).
//!
//! - Heartbeat paths: adverts also go to peers over further links, and
//!   are heard from them there; any valid advert on any path resets the
//!   backup's down timer, so the master is declared down only when every
//!   path is silent (the router does this; the guard only remembers when a
//!   peer was last heard).
//! - Witnesses: a node that hears no peer on any path and reaches no
//!   witness assumes it is the one cut off ([`Guard::isolated`]): it does
//!   not take the VIP, or gives it up, and waits in FAULT until a witness
//!   answers or a peer is heard again.
//! - Dual master: a master that hears another master it outranks (a lower
//!   priority, or the same with a lower address) — which is what a healed
//!   split brain looks like, not a pre-emption — counts an episode
//!   ([`Guard::dual_master`]); the episode ends after a quiet spell.

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::time::Instant;

/// A second link: adverts go from `local` to each of `peers` on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Our address on that link (the adverts' source there).
    pub local: IpAddr,
    pub peers: Vec<IpAddr>,
}

/// What the router is told of its guard.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GuardConfig {
    pub heartbeat: Vec<Heartbeat>,
    /// Witnesses are configured (and the driver reports on them): without
    /// any, no node ever counts itself cut off.
    pub witnesses: bool,
}

impl GuardConfig {
    /// The heartbeat path an advert from `src` to `dst` came over, if any.
    pub fn path_of(&self, src: IpAddr, dst: IpAddr) -> Option<&Heartbeat> {
        self.heartbeat
            .iter()
            .find(|h| h.local == dst && h.peers.contains(&src))
    }

    /// Whether `addr` is one of our heartbeat addresses.
    pub fn is_local(&self, addr: IpAddr) -> bool {
        self.heartbeat.iter().any(|h| h.local == addr)
    }
}

/// The guard's memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guard {
    /// The last report on the witnesses: some answered.
    witness_ok: bool,
    /// When a peer's valid advert was last heard, on any path.
    last_heard: Option<Instant>,
    /// When the current dual-master episode last saw the other master.
    episode: Option<Instant>,
}

impl Default for Guard {
    fn default() -> Self {
        Self::new()
    }
}

impl Guard {
    /// Witnesses count as reachable until the driver says otherwise (its
    /// first probes answer within a second of start).
    pub fn new() -> Self {
        Self {
            witness_ok: true,
            last_heard: None,
            episode: None,
        }
    }

    /// A peer's valid advert was heard at `now`.
    pub fn heard(&mut self, now: Instant) {
        self.last_heard = Some(now);
    }

    /// The driver's report on the witnesses; true if it changed.
    pub fn witness(&mut self, reachable: bool) -> bool {
        let changed = self.witness_ok != reachable;
        self.witness_ok = reachable;
        changed
    }

    pub fn witness_ok(&self) -> bool {
        self.witness_ok
    }

    /// Cut off, as far as this node can tell at `now`: witnesses are
    /// configured, none answers, and no peer was heard on any path within
    /// `down_interval` (Master_Down_Interval).
    pub fn isolated(&self, now: Instant, down_interval: Duration, witnesses: bool) -> bool {
        witnesses
            && !self.witness_ok
            && self
                .last_heard
                .is_none_or(|t| now.since(t) >= down_interval)
    }

    /// A master heard another master it outranks at `now`; true if this
    /// starts a new episode (none seen within `quiet`).
    pub fn dual_master(&mut self, now: Instant, quiet: Duration) -> bool {
        let new = self.episode.is_none_or(|t| now.since(t) >= quiet);
        self.episode = Some(now);
        new
    }

    /// Within an episode at `now`.
    pub fn in_episode(&self, now: Instant, quiet: Duration) -> bool {
        self.episode.is_some_and(|t| now.since(t) < quiet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        Instant::ZERO + Duration::from_millis(ms)
    }

    const DOWN: Duration = Duration::from_millis(650);

    #[test]
    fn not_isolated_without_witnesses_or_while_one_answers() {
        let mut g = Guard::new();
        assert!(!g.isolated(at(10_000), DOWN, true), "reachable until told");
        assert!(g.witness(false));
        assert!(
            !g.isolated(at(10_000), DOWN, false),
            "no witnesses configured"
        );
        assert!(
            g.isolated(at(10_000), DOWN, true),
            "never heard, none answers"
        );
        assert!(g.witness(true));
        assert!(!g.witness(true), "no change");
        assert!(!g.isolated(at(10_000), DOWN, true));
    }

    #[test]
    fn a_peer_heard_recently_means_not_cut_off() {
        let mut g = Guard::new();
        g.witness(false);
        g.heard(at(1_000));
        assert!(!g.isolated(at(1_000), DOWN, true));
        assert!(
            !g.isolated(at(1_649), DOWN, true),
            "within Master_Down_Interval"
        );
        assert!(
            g.isolated(at(1_650), DOWN, true),
            "silent for a whole interval"
        );
        g.heard(at(1_700));
        assert!(!g.isolated(at(1_700), DOWN, true));
    }

    #[test]
    fn dual_master_episodes_start_once_and_end_after_quiet() {
        let quiet = Duration::from_secs(2);
        let mut g = Guard::new();
        assert!(!g.in_episode(at(0), quiet));
        assert!(
            g.dual_master(at(100), quiet),
            "the first one starts an episode"
        );
        assert!(!g.dual_master(at(300), quiet), "the same episode");
        assert!(!g.dual_master(at(2_200), quiet), "each sighting extends it");
        assert!(g.in_episode(at(4_199), quiet));
        assert!(!g.in_episode(at(4_200), quiet), "quiet for 2 s: over");
        assert!(g.dual_master(at(5_000), quiet), "a new episode");
    }

    #[test]
    fn heartbeat_paths_are_matched_by_both_addresses() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap_or_else(|e| panic!("{e}"));
        let c = GuardConfig {
            heartbeat: vec![Heartbeat {
                local: ip("203.0.113.21"),
                peers: vec![ip("203.0.113.22")],
            }],
            witnesses: true,
        };
        assert!(c.path_of(ip("203.0.113.22"), ip("203.0.113.21")).is_some());
        assert!(
            c.path_of(ip("203.0.113.23"), ip("203.0.113.21")).is_none(),
            "a stranger"
        );
        assert!(
            c.path_of(ip("203.0.113.22"), ip("224.0.0.18")).is_none(),
            "not to us"
        );
        assert!(c.is_local(ip("203.0.113.21")));
        assert!(!c.is_local(ip("203.0.113.22")));
    }
}
