//! Sync groups (`vrrp_sync_group`): the members change state together, with
//! keepalived's rules:
//! - the group goes MASTER only when every member would (each member's down
//!   timer has run out, or it already is MASTER) — a member that still hears
//!   a live master of its own holds the others back, so no VRID gets two
//!   masters;
//! - a MASTER that steps down, or a member that leaves FAULT, brings the
//!   others to BACKUP;
//! - FAULT of one member is FAULT of all, until no member is faulty.

use crate::router::{Action, Input, Router, StateName};
use crate::time::Instant;

/// A group of routers that move together.
#[derive(Debug, Clone)]
pub struct SyncGroup {
    members: Vec<Router>,
}

impl SyncGroup {
    pub fn new(mut members: Vec<Router>) -> Self {
        let held = members.len() > 1;
        for m in &mut members {
            m.set_sync_held(held);
        }
        Self { members }
    }

    pub fn members(&self) -> &[Router] {
        &self.members
    }

    /// When any member next needs a timer.
    pub fn poll_at(&self) -> Option<Instant> {
        self.members.iter().filter_map(Router::poll_at).min()
    }

    /// Feeds `input` to member `index` (`Timer` to all) and moves the others
    /// as the group rules say. Returns (member, action) pairs.
    pub fn handle(&mut self, now: Instant, index: usize, input: Input) -> Vec<(usize, Action)> {
        let mut out = Vec::new();
        if matches!(input, Input::Timer) {
            for i in 0..self.members.len() {
                self.feed(now, i, Input::Timer, &mut out);
            }
        } else if index < self.members.len() {
            self.feed(now, index, input, &mut out);
        }
        self.promote(now, &mut out);
        out
    }

    fn feed(&mut self, now: Instant, index: usize, input: Input, out: &mut Vec<(usize, Action)>) {
        let Some(member) = self.members.get_mut(index) else {
            return;
        };
        let actions = member.handle(now, input);
        let mut moved = None;
        for a in actions {
            if let Action::State { from, to } = a {
                moved = Some((from, to));
            }
            out.push((index, a));
        }
        let follow = match moved {
            Some((_, StateName::Fault)) => StateName::Fault,
            Some((StateName::Master | StateName::Fault, StateName::Backup))
                if !self.members.iter().any(Router::is_faulty) =>
            {
                StateName::Backup
            }
            _ => return,
        };
        self.force_others(now, index, follow, out);
    }

    fn force_others(
        &mut self,
        now: Instant,
        index: usize,
        to: StateName,
        out: &mut Vec<(usize, Action)>,
    ) {
        for other in 0..self.members.len() {
            if other == index || self.members[other].state() == to {
                continue;
            }
            let actions = self.members[other].handle(now, Input::Force(to));
            out.extend(actions.into_iter().map(|a| (other, a)));
        }
    }

    /// Every member is MASTER or wants to be: make the group MASTER.
    fn promote(&mut self, now: Instant, out: &mut Vec<(usize, Action)>) {
        let all = self
            .members
            .iter()
            .all(|m| m.state() == StateName::Master || m.wants_master());
        let any = self.members.iter().any(Router::wants_master);
        if !(all && any) {
            return;
        }
        for i in 0..self.members.len() {
            if self.members[i].wants_master() {
                let actions = self.members[i].handle(now, Input::Force(StateName::Master));
                out.extend(actions.into_iter().map(|a| (i, a)));
            }
        }
    }
}
