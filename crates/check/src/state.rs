//! One checker's up/down decisions, as keepalived 2.4.3 makes them
//! (docs/research/checkers.md §2): pure, driven by check results.
//!
//! - A checker starts up, or down with `alpha`.
//! - Its failure counter starts full, so the very first failure marks it
//!   down at once.
//! - From up, `retry + 1` consecutive failures mark it down; after each
//!   failure but the last the next check comes after `delay_before_retry`,
//!   otherwise after `delay_loop`.
//! - Any success resets the counter and brings a down checker up at once.
//!
//! `SMTP_CHECK` counts per cycle instead ([`Checker::per_cycle`]): every
//! delay_loop cycle starts with a fresh count, so even the first check gets
//! its `retry` retries, and a down checker retries too.

use std::time::Duration;

/// The timing keywords, resolved (checker, else real server, else virtual
/// server, else keepalived's default for the checker type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub delay_loop: Duration,
    pub retry: u32,
    pub delay_before_retry: Duration,
}

/// A state change to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Up,
    Down,
}

/// One checker of one real server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checker {
    timing: Timing,
    up: bool,
    /// Consecutive failures counted toward `retry`.
    retry_it: u32,
    has_run: bool,
    per_cycle: bool,
}

impl Checker {
    /// A checker before its first check: up, or down with `alpha`.
    pub fn new(timing: Timing, alpha: bool) -> Self {
        Self {
            timing,
            up: !alpha,
            retry_it: timing.retry,
            has_run: false,
            per_cycle: false,
        }
    }

    /// `SMTP_CHECK`'s counting (check_smtp.c): the count restarts every
    /// cycle and failures are retried whatever the state; `retry + 1`
    /// failures in a row end a cycle as a failure.
    pub fn per_cycle(timing: Timing, alpha: bool) -> Self {
        Self {
            retry_it: 0,
            per_cycle: true,
            ..Self::new(timing, alpha)
        }
    }

    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Carries on from a predecessor in the same state (a reload): it has
    /// run, so a failure of an up checker is retried `retry` times before
    /// it goes down, and nothing is reported until the state changes.
    pub fn resume(&mut self) {
        self.has_run = true;
        if !self.per_cycle {
            self.retry_it = 0;
        }
    }

    /// Takes one check's result; what changed (if anything, or `Down` /
    /// `Up` once on the first run of a checker that stays as it started,
    /// so the caller can run its notifies) and when to check next.
    pub fn result(&mut self, success: bool) -> (Option<Transition>, Duration) {
        let first = !self.has_run;
        self.has_run = true;
        if success {
            self.retry_it = 0;
            let change = (!self.up || first).then_some(Transition::Up);
            self.up = true;
            return (change, self.timing.delay_loop);
        }
        if self.per_cycle {
            self.retry_it += 1;
            if self.retry_it <= self.timing.retry {
                return (None, self.timing.delay_before_retry);
            }
            self.retry_it = 0;
            let change = (self.up || first).then_some(Transition::Down);
            self.up = false;
            return (change, self.timing.delay_loop);
        }
        if !self.up && !first {
            // Already down: nothing changes; keep polling at delay_loop.
            return (None, self.timing.delay_loop);
        }
        if self.retry_it >= self.timing.retry {
            self.retry_it = 0;
            self.up = false;
            return (Some(Transition::Down), self.timing.delay_loop);
        }
        self.retry_it += 1;
        (None, self.timing.delay_before_retry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_checker_retries_before_going_down_and_reports_only_changes() {
        let timing = Timing {
            delay_loop: Duration::from_secs(1),
            retry: 2,
            delay_before_retry: Duration::from_secs(1),
        };
        let mut fresh = Checker::new(timing, false);
        assert_eq!(
            fresh.result(false).0,
            Some(Transition::Down),
            "a new one: down at once"
        );
        let mut kept = Checker::new(timing, false);
        kept.resume();
        assert_eq!(kept.result(true).0, None, "up and up: nothing to report");
        assert_eq!(kept.result(false).0, None, "retry 1");
        assert_eq!(kept.result(false).0, None, "retry 2");
        assert_eq!(kept.result(false).0, Some(Transition::Down));
        let mut was_down = Checker::new(timing, true);
        was_down.resume();
        assert_eq!(was_down.result(false).0, None, "down and down");
        assert_eq!(was_down.result(true).0, Some(Transition::Up));
    }

    fn timing(retry: u32) -> Timing {
        Timing {
            delay_loop: Duration::from_secs(6),
            retry,
            delay_before_retry: Duration::from_secs(1),
        }
    }

    #[test]
    fn the_first_failure_is_enough_initially() {
        let mut c = Checker::new(timing(3), false);
        assert!(c.is_up());
        assert_eq!(
            c.result(false),
            (Some(Transition::Down), Duration::from_secs(6))
        );
        assert!(!c.is_up());
    }

    #[test]
    fn from_up_retry_plus_one_failures_mark_down() {
        let mut c = Checker::new(timing(2), false);
        assert_eq!(
            c.result(true),
            (Some(Transition::Up), Duration::from_secs(6))
        );
        assert_eq!(c.result(false), (None, Duration::from_secs(1)));
        assert_eq!(c.result(false), (None, Duration::from_secs(1)));
        assert_eq!(
            c.result(false),
            (Some(Transition::Down), Duration::from_secs(6))
        );
        // Down: failures change nothing; one success brings it back.
        assert_eq!(c.result(false), (None, Duration::from_secs(6)));
        assert_eq!(
            c.result(true),
            (Some(Transition::Up), Duration::from_secs(6))
        );
    }

    #[test]
    fn a_success_resets_the_count() {
        let mut c = Checker::new(timing(1), false);
        c.result(true);
        assert_eq!(c.result(false), (None, Duration::from_secs(1)));
        assert_eq!(c.result(true), (None, Duration::from_secs(6)));
        assert_eq!(c.result(false), (None, Duration::from_secs(1)));
        assert_eq!(
            c.result(false),
            (Some(Transition::Down), Duration::from_secs(6))
        );
    }

    #[test]
    fn alpha_starts_down_until_a_success() {
        let mut c = Checker::new(timing(1), true);
        assert!(!c.is_up());
        // The first run reports the state it confirms (keepalived runs the
        // notify once), later failures nothing.
        assert_eq!(
            c.result(false),
            (Some(Transition::Down), Duration::from_secs(6))
        );
        assert_eq!(c.result(false), (None, Duration::from_secs(6)));
        assert_eq!(
            c.result(true),
            (Some(Transition::Up), Duration::from_secs(6))
        );
    }

    #[test]
    fn smtp_counts_per_cycle_even_the_first_and_while_down() {
        let mut c = Checker::per_cycle(timing(2), false);
        // First check: retry (2) retries before it is marked down.
        assert_eq!(c.result(false), (None, Duration::from_secs(1)));
        assert_eq!(c.result(false), (None, Duration::from_secs(1)));
        assert_eq!(
            c.result(false),
            (Some(Transition::Down), Duration::from_secs(6))
        );
        // Down: a new cycle retries again, and reports nothing new.
        assert_eq!(c.result(false), (None, Duration::from_secs(1)));
        assert_eq!(c.result(false), (None, Duration::from_secs(1)));
        assert_eq!(c.result(false), (None, Duration::from_secs(6)));
        // A retry that succeeds brings it up at once.
        assert_eq!(c.result(false), (None, Duration::from_secs(1)));
        assert_eq!(
            c.result(true),
            (Some(Transition::Up), Duration::from_secs(6))
        );
        // From up: retry + 1 failures again.
        assert_eq!(c.result(false), (None, Duration::from_secs(1)));
        assert_eq!(c.result(true), (None, Duration::from_secs(6)));
    }

    #[test]
    fn retry_zero_means_one_failure() {
        let mut c = Checker::new(timing(0), false);
        c.result(true);
        assert_eq!(
            c.result(false),
            (Some(Transition::Down), Duration::from_secs(6))
        );
    }
}
