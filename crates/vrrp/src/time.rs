//! Time as the engine sees it: an [`Instant`] is a count of microseconds since
//! whatever epoch the driver chose. The engine never reads a clock.

use std::ops::{Add, Sub};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A point in time, microseconds since the driver's epoch.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Instant(u64);

impl Instant {
    pub const ZERO: Instant = Instant(0);

    pub const fn from_micros(us: u64) -> Self {
        Self(us)
    }

    pub const fn from_millis(ms: u64) -> Self {
        Self(ms * 1000)
    }

    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// The time from `earlier` to `self` (zero if `earlier` is later).
    pub fn since(self, earlier: Instant) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }

    /// `d` before `self`, or [`Instant::ZERO`] if that is before the start.
    #[must_use]
    pub fn saturating_sub(self, d: Duration) -> Instant {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_sub(us))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_add(us))
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, earlier: Instant) -> Duration {
        self.since(earlier)
    }
}

impl std::fmt::Display for Instant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:03}ms", self.0 / 1000, self.0 % 1000)
    }
}

/// The next deadline of each of many routers, in one heap: setting a
/// deadline is O(log n), finding the earliest is O(1) amortised, so a loop
/// driving hundreds of instances never scans them all on each wake-up.
///
/// Superseded entries stay in the heap until they reach its top, where they
/// are recognised (they no longer match the router's current deadline) and
/// dropped.
#[derive(Debug, Clone, Default)]
pub struct Deadlines {
    heap: std::collections::BinaryHeap<std::cmp::Reverse<(Instant, usize)>>,
    current: Vec<Option<Instant>>,
}

impl Deadlines {
    /// Room for routers `0..n`, none with a deadline.
    pub fn new(n: usize) -> Self {
        Self {
            heap: std::collections::BinaryHeap::with_capacity(n * 2),
            current: vec![None; n],
        }
    }

    /// Sets router `i`'s deadline (`None`: it has none). Out-of-range `i`
    /// grows the table.
    pub fn set(&mut self, i: usize, at: Option<Instant>) {
        if i >= self.current.len() {
            self.current.resize(i + 1, None);
        }
        if self.current[i] == at {
            return;
        }
        self.current[i] = at;
        if let Some(at) = at {
            self.heap.push(std::cmp::Reverse((at, i)));
        }
        // Stale entries are dropped lazily; rebuild if they pile up.
        if self.heap.len() > 4 * self.current.len() + 64 {
            self.heap = self
                .current
                .iter()
                .enumerate()
                .filter_map(|(i, at)| at.map(|at| std::cmp::Reverse((at, i))))
                .collect();
        }
    }

    /// The earliest deadline of any router.
    pub fn earliest(&mut self) -> Option<Instant> {
        while let Some(std::cmp::Reverse((at, i))) = self.heap.peek().copied() {
            if self.current[i] == Some(at) {
                return Some(at);
            }
            self.heap.pop();
        }
        None
    }

    /// Removes and returns the routers whose deadline is at or before `now`,
    /// earliest first, with their deadlines.
    pub fn take_due(&mut self, now: Instant, out: &mut Vec<(Instant, usize)>) {
        while let Some(at) = self.earliest() {
            if at > now {
                break;
            }
            if let Some(std::cmp::Reverse((at, i))) = self.heap.pop() {
                self.current[i] = None;
                out.push((at, i));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    #[test]
    fn the_earliest_current_deadline_wins() {
        let mut d = Deadlines::new(3);
        d.set(0, Some(ms(30)));
        d.set(1, Some(ms(10)));
        d.set(2, Some(ms(20)));
        assert_eq!(d.earliest(), Some(ms(10)));
        // Moving router 1 later supersedes its old entry.
        d.set(1, Some(ms(40)));
        assert_eq!(d.earliest(), Some(ms(20)));
        d.set(2, None);
        assert_eq!(d.earliest(), Some(ms(30)));
        let mut due = Vec::new();
        d.take_due(ms(35), &mut due);
        assert_eq!(due, vec![(ms(30), 0)]);
        assert_eq!(d.earliest(), Some(ms(40)));
        d.take_due(ms(100), &mut due);
        assert_eq!(due, vec![(ms(30), 0), (ms(40), 1)]);
        assert_eq!(d.earliest(), None);
    }

    #[test]
    fn a_deadline_set_back_to_an_old_value_fires_once() {
        let mut d = Deadlines::new(1);
        d.set(0, Some(ms(10)));
        d.set(0, Some(ms(20)));
        d.set(0, Some(ms(10)));
        let mut due = Vec::new();
        d.take_due(ms(50), &mut due);
        assert_eq!(due, vec![(ms(10), 0)]);
    }

    #[test]
    fn many_resets_keep_the_heap_bounded() {
        let mut d = Deadlines::new(2);
        for t in 0..10_000 {
            d.set(0, Some(ms(t + 100)));
            d.set(1, Some(ms(t + 200)));
        }
        assert!(d.heap.len() <= 4 * 2 + 64 + 1);
        assert_eq!(d.earliest(), Some(ms(10_099)));
    }

    #[test]
    fn matches_a_linear_scan_under_random_updates() {
        // A small deterministic generator: no dependency for one test.
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut rand = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let n = 50;
        let mut d = Deadlines::new(n);
        let mut model: Vec<Option<Instant>> = vec![None; n];
        for _ in 0..20_000 {
            let i = usize::try_from(rand() % n as u64).unwrap_or(0);
            let at = if rand() % 5 == 0 {
                None
            } else {
                Some(ms(rand() % 1000))
            };
            d.set(i, at);
            model[i] = at;
            assert_eq!(d.earliest(), model.iter().flatten().min().copied());
        }
    }
}
