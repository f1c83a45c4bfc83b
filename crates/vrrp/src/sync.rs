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

/// The routers of a group, wherever they are kept (a [`SyncGroup`], or a
/// driver's own table of instances).
pub trait Members {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn member(&mut self, i: usize) -> &mut Router;
    fn member_ref(&self, i: usize) -> &Router;
}

impl Members for Vec<Router> {
    fn len(&self) -> usize {
        <[Router]>::len(self)
    }
    fn member(&mut self, i: usize) -> &mut Router {
        &mut self[i]
    }
    fn member_ref(&self, i: usize) -> &Router {
        &self[i]
    }
}

/// Marks the members as held by a group (when there are two or more).
pub fn hold<M: Members + ?Sized>(members: &mut M) {
    let held = members.len() > 1;
    for i in 0..members.len() {
        members.member(i).set_sync_held(held);
    }
}

/// Feeds `input` to member `index` (`Timer` to all) and moves the others as
/// the group rules say. Returns (member, action) pairs.
pub fn handle<M: Members + ?Sized>(
    members: &mut M,
    now: Instant,
    index: usize,
    input: Input,
) -> Vec<(usize, Action)> {
    let mut out = Vec::new();
    if matches!(input, Input::Timer) {
        for i in 0..members.len() {
            feed(members, now, i, Input::Timer, &mut out);
        }
    } else if index < members.len() {
        feed(members, now, index, input, &mut out);
    }
    promote(members, now, &mut out);
    out
}

fn feed<M: Members + ?Sized>(
    members: &mut M,
    now: Instant,
    index: usize,
    input: Input,
    out: &mut Vec<(usize, Action)>,
) {
    let actions = members.member(index).handle(now, input);
    let mut moved = None;
    for a in actions {
        if let Action::State { from, to } = a {
            moved = Some((from, to));
        }
        out.push((index, a));
    }
    // Members are looked at only when this one changed state.
    let any_faulty = |m: &M| (0..m.len()).any(|i| m.member_ref(i).is_faulty());
    let follow = match moved {
        Some((_, StateName::Fault)) => StateName::Fault,
        Some((StateName::Master | StateName::Fault, StateName::Backup)) if !any_faulty(members) => {
            StateName::Backup
        }
        _ => return,
    };
    for other in 0..members.len() {
        if other == index || members.member_ref(other).state() == follow {
            continue;
        }
        let actions = members.member(other).handle(now, Input::Force(follow));
        out.extend(actions.into_iter().map(|a| (other, a)));
    }
}

/// Every member is MASTER or wants to be: make the group MASTER.
fn promote<M: Members + ?Sized>(members: &mut M, now: Instant, out: &mut Vec<(usize, Action)>) {
    let n = members.len();
    let all = (0..n).all(|i| {
        let m = members.member_ref(i);
        m.state() == StateName::Master || m.wants_master()
    });
    let any = (0..n).any(|i| members.member_ref(i).wants_master());
    if !(all && any) {
        return;
    }
    for i in 0..n {
        if members.member_ref(i).wants_master() {
            let actions = members
                .member(i)
                .handle(now, Input::Force(StateName::Master));
            out.extend(actions.into_iter().map(|a| (i, a)));
        }
    }
}

/// A group of routers that move together.
#[derive(Debug, Clone)]
pub struct SyncGroup {
    members: Vec<Router>,
}

impl SyncGroup {
    pub fn new(mut members: Vec<Router>) -> Self {
        hold(&mut members);
        Self { members }
    }

    pub fn members(&self) -> &[Router] {
        &self.members
    }

    /// When any member next needs a timer.
    pub fn poll_at(&self) -> Option<Instant> {
        self.members.iter().filter_map(Router::poll_at).min()
    }

    /// See [`handle`].
    pub fn handle(&mut self, now: Instant, index: usize, input: Input) -> Vec<(usize, Action)> {
        handle(&mut self.members, now, index, input)
    }
}
