//! Properties of the schedulers, one per algorithm family.

#![allow(clippy::cast_possible_truncation)] // small test counts

use lb::sched::{maglev, rendezvous, table, wrr_cycle, Algo, Flow, Scheduler, Server, MAGLEV_SIZE};
use proptest::prelude::*;

fn servers(weights: &[u32]) -> Vec<Server> {
    weights
        .iter()
        .map(|&weight| Server { weight, active: 0 })
        .collect()
}

fn ids(n: usize) -> Vec<u64> {
    (0..n as u64).map(|i| lb::sched::mix(i + 1000)).collect()
}

proptest! {
    /// wrr hands out exactly in weight proportion over one cycle.
    #[test]
    fn wrr_exact_over_a_cycle(weights in prop::collection::vec(0u32..20, 1..8)) {
        let total: u32 = weights.iter().sum();
        let mut s = Scheduler::new(Algo::Wrr, ids(weights.len()));
        let sv = servers(&weights);
        let mut count = vec![0u32; weights.len()];
        for _ in 0..total {
            let i = s.pick(&sv, Flow::default()).expect("a live server");
            count[i] += 1;
        }
        prop_assert_eq!(count, weights);
    }

    /// The table form of wrr is the same cycle: exact counts too.
    #[test]
    fn wrr_table_exact(weights in prop::collection::vec(0u32..50, 1..8)) {
        let t = wrr_cycle(&weights, 1_000_000);
        let g = weights.iter().copied().filter(|&w| w > 0).fold(0, num_gcd);
        for (i, &w) in weights.iter().enumerate() {
            let c = t.iter().filter(|&&x| x == i).count();
            prop_assert_eq!(c, w.checked_div(g).unwrap_or(0) as usize);
        }
    }

    /// rr visits every live server once per round, never a quiesced one.
    #[test]
    fn rr_round(weights in prop::collection::vec(0u32..3, 1..10)) {
        let live: Vec<usize> = (0..weights.len()).filter(|&i| weights[i] > 0).collect();
        let mut s = Scheduler::new(Algo::Rr, ids(weights.len()));
        let sv = servers(&weights);
        let mut seen: Vec<usize> = (0..live.len()).filter_map(|_| s.pick(&sv, Flow::default())).collect();
        seen.sort_unstable();
        prop_assert_eq!(seen, live);
    }

    /// sh is stable under unrelated changes: taking one server away moves
    /// only the sources it had; adding one moves sources only to it.
    #[test]
    fn sh_stable(weights in prop::collection::vec(1u32..5, 2..8), gone in 0usize..8, keys in prop::collection::vec(any::<u64>(), 200)) {
        let gone = gone % weights.len();
        let id = ids(weights.len());
        let before = servers(&weights);
        let mut after = before.clone();
        after[gone].weight = 0;
        for k in keys {
            let a = rendezvous(k, &before, &id).expect("live");
            let b = rendezvous(k, &after, &id).expect("live");
            if a != gone {
                prop_assert_eq!(a, b, "a source moved though its server stayed");
            }
            // Adding `gone` back takes keys only for itself.
            prop_assert!(a == b || a == gone);
        }
    }

    /// mh: each live server owns about its share of the table, and taking
    /// one server away moves no more of the other servers' slots than the
    /// removed server owned (the Maglev paper's disruption bound is far
    /// lower; this is the worst case a consistent hash may show).
    #[test]
    fn mh_disruption_bounded(n in 2usize..12, gone in 0usize..12) {
        let gone = gone % n;
        let id = ids(n);
        let w = vec![1u32; n];
        let before = maglev(&w, &id, MAGLEV_SIZE);
        let mut w2 = w.clone();
        w2[gone] = 0;
        let after = maglev(&w2, &id, MAGLEV_SIZE);
        prop_assert_eq!(before.len(), MAGLEV_SIZE);
        prop_assert!(after.iter().all(|&s| s != gone));
        let owned = before.iter().filter(|&&s| s == gone).count();
        let moved_others = before.iter().zip(&after).filter(|(b, a)| **b != gone && b != a).count();
        prop_assert!(moved_others <= owned, "moved {} of others, {} owned by the removed", moved_others, owned);
        // Balance: every server within 2× of its fair share.
        let fair = MAGLEV_SIZE / n;
        for s in 0..n {
            let c = before.iter().filter(|&&x| x == s).count();
            prop_assert!(c * 2 >= fair && c <= fair * 2 + 2, "server {} owns {} of {}", s, c, MAGLEV_SIZE);
        }
    }

    /// wlc never picks a server whose active/weight is above another's.
    #[test]
    fn wlc_least_loaded(state in prop::collection::vec((1u32..10, 0u32..50), 1..8)) {
        let sv: Vec<Server> = state.iter().map(|&(weight, active)| Server { weight, active }).collect();
        let i = Scheduler::new(Algo::Wlc, ids(sv.len())).pick(&sv, Flow::default()).expect("live");
        for s in &sv {
            prop_assert!(u64::from(sv[i].active) * u64::from(s.weight) <= u64::from(s.active) * u64::from(sv[i].weight));
        }
    }

    /// lc: the fewest active connections; sed: the smallest (active + 1) /
    /// weight; nq: an idle server whenever there is one.
    #[test]
    fn counting_schedulers(state in prop::collection::vec((0u32..6, 0u32..20), 1..8)) {
        let sv: Vec<Server> = state.iter().map(|&(weight, active)| Server { weight, active }).collect();
        let live: Vec<&Server> = sv.iter().filter(|s| s.weight > 0).collect();
        let pick = |a| Scheduler::new(a, ids(sv.len())).pick(&sv, Flow::default());
        prop_assert_eq!(pick(Algo::Lc).is_some(), !live.is_empty());
        if let Some(i) = pick(Algo::Lc) {
            prop_assert!(live.iter().all(|s| sv[i].active <= s.active));
        }
        if let Some(i) = pick(Algo::Sed) {
            let (a, w) = (u64::from(sv[i].active) + 1, u64::from(sv[i].weight));
            prop_assert!(live.iter().all(|s| a * u64::from(s.weight) <= (u64::from(s.active) + 1) * w));
        }
        if live.iter().any(|s| s.active == 0) {
            let i = pick(Algo::Nq).expect("live");
            prop_assert_eq!(sv[i].active, 0);
        }
    }

    /// fo: a server of the highest weight; ovf: the highest weight among
    /// those below their weight in connections, none when all are full.
    #[test]
    fn failover_schedulers(state in prop::collection::vec((0u32..6, 0u32..8), 1..8)) {
        let sv: Vec<Server> = state.iter().map(|&(weight, active)| Server { weight, active }).collect();
        let pick = |a| Scheduler::new(a, ids(sv.len())).pick(&sv, Flow::default());
        let top = sv.iter().map(|s| s.weight).max().unwrap_or(0);
        if let Some(i) = pick(Algo::Fo) {
            prop_assert_eq!(sv[i].weight, top);
        } else {
            prop_assert_eq!(top, 0);
        }
        let open: Vec<&Server> = sv.iter().filter(|s| s.weight > 0 && s.active < s.weight).collect();
        match pick(Algo::Ovf) {
            Some(i) => {
                prop_assert!(sv[i].active < sv[i].weight);
                prop_assert!(open.iter().all(|s| s.weight <= sv[i].weight));
            }
            None => prop_assert!(open.is_empty()),
        }
    }

    /// dh keeps a destination on its server (the same rendezvous rule as
    /// sh, on the destination), and lblc/lblcr follow it while no server is
    /// overloaded.
    #[test]
    fn destination_schedulers(weights in prop::collection::vec(1u32..5, 1..8), dest in any::<u64>(), source in any::<u64>()) {
        let sv = servers(&weights);
        let id = ids(weights.len());
        let home = rendezvous(dest, &sv, &id);
        let flow = Flow { source, destination: dest };
        prop_assert_eq!(Scheduler::new(Algo::Dh, id.clone()).pick(&sv, flow), home);
        prop_assert_eq!(Scheduler::new(Algo::Lblc, id.clone()).pick(&sv, flow), home);
        prop_assert_eq!(Scheduler::new(Algo::Lblcr, id).pick(&sv, flow), home);
    }

    /// Every table's slots point at live servers only, and every
    /// scheduler picks a live server or none.
    #[test]
    fn only_live_servers(weights in prop::collection::vec(0u32..4, 1..8), source in any::<u64>()) {
        let algos = [Algo::Rr, Algo::Wrr, Algo::Lc, Algo::Wlc, Algo::Lblc, Algo::Lblcr, Algo::Dh, Algo::Sh, Algo::Sed, Algo::Nq, Algo::Fo, Algo::Ovf, Algo::Mh];
        let sv = servers(&weights);
        let any_live = weights.iter().any(|&w| w > 0);
        for a in algos {
            let (_, t) = table(a, &weights, &ids(weights.len()));
            prop_assert!(t.iter().all(|&i| weights[i] > 0), "{:?}", a);
            prop_assert_eq!(t.is_empty(), !any_live, "{:?}", a);
            let p = Scheduler::new(a, ids(weights.len())).pick(&sv, Flow { source, destination: source });
            prop_assert_eq!(p.is_some(), any_live, "{:?}", a);
            prop_assert!(p.is_none_or(|i| weights[i] > 0));
        }
    }
}

fn num_gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        num_gcd(b, a % b)
    }
}

#[test]
fn algorithm_names_round_trip() {
    for w in [
        "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh",
    ] {
        assert_eq!(Algo::parse(w).map(Algo::name), Some(w));
    }
    assert_eq!(Algo::parse("xx"), None);
}
