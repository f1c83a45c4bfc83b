//! Sync groups (`vrrp_sync_group`): the members change state together. When
//! one becomes MASTER the others follow, when one falls back to BACKUP the
//! masters step down, and when one enters FAULT the whole group does (and
//! returns to BACKUP when no member is faulty any more).

use crate::router::{Action, Input, Router, StateName};
use crate::time::Instant;

/// A group of routers that move together.
#[derive(Debug, Clone)]
pub struct SyncGroup {
    members: Vec<Router>,
}

impl SyncGroup {
    pub fn new(members: Vec<Router>) -> Self {
        Self { members }
    }

    pub fn members(&self) -> &[Router] {
        &self.members
    }

    /// When any member next needs a timer.
    pub fn poll_at(&self) -> Option<Instant> {
        self.members.iter().filter_map(Router::poll_at).min()
    }

    /// Feeds `input` to member `index` (`Timer` to all) and makes the others
    /// follow its state change. Returns (member, action) pairs.
    pub fn handle(&mut self, now: Instant, index: usize, input: Input) -> Vec<(usize, Action)> {
        let mut out = Vec::new();
        if matches!(input, Input::Timer) {
            for i in 0..self.members.len() {
                self.feed(now, i, Input::Timer, &mut out);
            }
        } else if index < self.members.len() {
            self.feed(now, index, input, &mut out);
        }
        out
    }

    fn feed(&mut self, now: Instant, index: usize, input: Input, out: &mut Vec<(usize, Action)>) {
        let actions = match self.members.get_mut(index) {
            Some(r) => r.handle(now, input),
            None => return,
        };
        let mut moved_to = None;
        for a in actions {
            if let Action::State { to, .. } = a {
                moved_to = Some(to);
            }
            out.push((index, a));
        }
        let Some(to) = moved_to else { return };
        let follow = match to {
            StateName::Master | StateName::Fault => to,
            StateName::Backup => {
                if self.members.iter().any(Router::is_faulty) {
                    return;
                }
                StateName::Backup
            }
            StateName::Init | StateName::Stop => return,
        };
        for other in 0..self.members.len() {
            if other == index || self.members[other].state() == follow {
                continue;
            }
            let actions = self.members[other].handle(now, Input::Force(follow));
            out.extend(actions.into_iter().map(|a| (other, a)));
        }
    }
}
