//! A virtual server's quorum, as keepalived 2.4.3 keeps it
//! (check/ipwrapper.c `update_quorum_state`): the summed weight of its live
//! real servers against `quorum`, with `hysteresis` either side. Pure: the
//! caller gives the weight sum after every change and acts on the flips
//! (quorum_up / quorum_down, the sorry server).

/// One virtual server's quorum state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quorum {
    pub quorum: u64,
    pub hysteresis: u64,
    up: bool,
}

/// A change of quorum, with the numbers keepalived logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flip {
    pub up: bool,
    pub threshold: u64,
    pub weight_sum: u64,
}

impl Quorum {
    /// The same settings in state `up` (a reload carries the state over:
    /// only a real change of the live weight flips it).
    #[must_use]
    pub fn with_up(self, up: bool) -> Self {
        Self { up, ..self }
    }
    /// `quorum` (default 1) and `hysteresis` (default 0) as configured,
    /// clamped as keepalived clamps them at load: quorum to the total
    /// configured weight, hysteresis below quorum. Also what was clamped,
    /// for a warning. The state starts up when `weight_sum` reaches
    /// quorum + hysteresis.
    pub fn new(
        quorum: u64,
        hysteresis: u64,
        total_weight: u64,
        weight_sum: u64,
    ) -> (Self, Option<String>) {
        let mut warning = None;
        let q = if quorum > total_weight {
            warning = Some(format!(
                "quorum {quorum} exceeds the total weight of real servers {total_weight}, reducing quorum to {total_weight}"
            ));
            total_weight
        } else {
            quorum
        };
        let h = if hysteresis >= q && hysteresis > 0 {
            let h = q.saturating_sub(1);
            warning.get_or_insert(format!(
                "hysteresis {hysteresis} >= quorum {q}; setting hysteresis to {h}"
            ));
            h
        } else {
            hysteresis
        };
        let up = weight_sum >= q + h;
        (
            Self {
                quorum: q,
                hysteresis: h,
                up,
            },
            warning,
        )
    }

    pub fn is_up(&self) -> bool {
        self.up
    }

    /// The live weight is now `weight_sum`: the flip, if quorum was gained
    /// (reaching quorum + hysteresis) or lost (below quorum − hysteresis, or
    /// no live weight at all).
    pub fn update(&mut self, weight_sum: u64) -> Option<Flip> {
        let threshold = if self.up {
            self.quorum.saturating_sub(self.hysteresis)
        } else {
            self.quorum + self.hysteresis
        };
        let flip = if self.up {
            weight_sum == 0 || weight_sum < threshold
        } else {
            weight_sum >= threshold && weight_sum > 0
        };
        flip.then(|| {
            self.up = !self.up;
            Flip {
                up: self.up,
                threshold,
                weight_sum,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_carries_the_state_and_flips_only_on_a_real_crossing() {
        // A new quorum object starts from the new servers' weights; the
        // old state carried over decides what the next update says.
        let (q, _) = Quorum::new(3, 0, 4, 4);
        assert!(q.is_up());
        let mut carried = q.with_up(false);
        assert_eq!(carried.update(2), None, "still below: no notification");
        assert_eq!(carried.update(4).map(|f| f.up), Some(true), "crossed");
        let mut kept = q.with_up(true);
        assert_eq!(kept.update(4), None, "up and still up: nothing to say");
    }

    #[test]
    fn defaults_lose_quorum_with_the_last_server() {
        let (mut q, w) = Quorum::new(1, 0, 3, 3);
        assert!(w.is_none());
        assert!(q.is_up());
        assert_eq!(q.update(2), None);
        assert_eq!(q.update(1), None);
        assert_eq!(
            q.update(0),
            Some(Flip {
                up: false,
                threshold: 1,
                weight_sum: 0
            })
        );
        assert_eq!(q.update(1).map(|f| f.up), Some(true));
    }

    #[test]
    fn hysteresis_widens_both_ways() {
        // quorum 4, hysteresis 1: lost below 3, gained at 5.
        let (mut q, _) = Quorum::new(4, 1, 10, 10);
        assert_eq!(q.update(3), None);
        assert_eq!(q.update(2).map(|f| (f.up, f.threshold)), Some((false, 3)));
        assert_eq!(q.update(4), None);
        assert_eq!(q.update(5).map(|f| (f.up, f.threshold)), Some((true, 5)));
    }

    #[test]
    fn starts_down_below_quorum_plus_hysteresis() {
        let (q, _) = Quorum::new(2, 1, 4, 2);
        assert!(!q.is_up());
    }

    #[test]
    fn clamps_as_keepalived_and_says_so() {
        let (q, w) = Quorum::new(10, 0, 3, 3);
        assert_eq!(q.quorum, 3);
        assert!(w.is_some_and(|w| w.contains("reducing quorum to 3")));
        let (q, w) = Quorum::new(2, 5, 3, 3);
        assert_eq!((q.quorum, q.hysteresis), (2, 1));
        assert!(w.is_some());
        // No real server weight at all: quorum 0; keepalived starts it up
        // (0 >= 0) and loses it at the first look (no live weight). It is
        // not gained again without live weight (keepalived would flap).
        let (mut q, _) = Quorum::new(1, 0, 0, 0);
        assert!(q.is_up());
        assert_eq!(q.update(0).map(|f| f.up), Some(false));
        assert_eq!(q.update(0), None);
    }
}
