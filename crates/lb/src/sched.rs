//! IPVS's schedulers, pure: which real server gets a new connection.
//!
//! Two shapes, for the two kinds of data plane:
//! - [`Scheduler::pick`] decides one connection at a time from the live
//!   state (active connections per server): what the proxy and any
//!   user-space data plane use;
//! - [`table`] compiles a scheduler into a fixed table of slots, filled by
//!   server index, plus how a packet picks its slot ([`Selector`]): what a
//!   kernel data plane without per-server counters (nftables) can run.
//!
//! Weights are IPVS's: 0 quiesces a server (no new connections; existing
//! ones stay); a server that is down is not passed in at all.

/// One real server as a scheduler sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Server {
    pub weight: u32,
    /// Connections open to it now (lc, wlc, sed, nq, ovf, lblc, lblcr).
    pub active: u32,
}

/// IPVS's scheduler names (`lb_algo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algo {
    /// Round robin: every server with a weight, in turn.
    Rr,
    /// Weighted round robin (smooth: the weights interleave).
    Wrr,
    /// Least connections.
    Lc,
    /// Weighted least connections: fewest active / weight.
    Wlc,
    /// Locality-based least connections: a destination sticks to its
    /// server unless that one is overloaded.
    Lblc,
    /// lblc with a set of servers per destination (here: as lblc).
    Lblcr,
    /// Destination hash.
    Dh,
    /// Source hash.
    Sh,
    /// Shortest expected delay: fewest (active + 1) / weight.
    Sed,
    /// Never queue: an idle server first, else as sed.
    Nq,
    /// Weighted failover: the highest weight takes everything.
    Fo,
    /// Overflow: the highest weight until its active connections reach
    /// its weight, then the next.
    Ovf,
    /// Maglev hashing (consistent).
    Mh,
}

impl Algo {
    /// keepalived's `lb_algo` word.
    pub fn parse(word: &str) -> Option<Self> {
        Some(match word {
            "rr" => Self::Rr,
            "wrr" => Self::Wrr,
            "lc" => Self::Lc,
            "wlc" => Self::Wlc,
            "lblc" => Self::Lblc,
            "lblcr" => Self::Lblcr,
            "dh" => Self::Dh,
            "sh" => Self::Sh,
            "sed" => Self::Sed,
            "nq" => Self::Nq,
            "fo" => Self::Fo,
            "ovf" => Self::Ovf,
            "mh" => Self::Mh,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Rr => "rr",
            Self::Wrr => "wrr",
            Self::Lc => "lc",
            Self::Wlc => "wlc",
            Self::Lblc => "lblc",
            Self::Lblcr => "lblcr",
            Self::Dh => "dh",
            Self::Sh => "sh",
            Self::Sed => "sed",
            Self::Nq => "nq",
            Self::Fo => "fo",
            Self::Ovf => "ovf",
            Self::Mh => "mh",
        }
    }
}

/// What a connection brings to a hashing scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flow {
    /// A hash of the client's address (sh, mh).
    pub source: u64,
    /// A hash of the destination address (dh, lblc, lblcr).
    pub destination: u64,
}

/// A 64-bit mix (splitmix64's finaliser): spreads keys and seeds.
pub fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The natural logarithm of a normal, positive `x` in plain IEEE-754
/// arithmetic (no libm): every director computes bit-identical scores
/// whatever its C library, and the daemon does not map libm (300 KiB of
/// RSS) for one call. `x = m · 2^e` with `m` in [√½, √2), then
/// `ln m = 2·atanh((m−1)/(m+1))` by its series (|s| ≤ 0.172: twelve terms
/// are past f64's precision).
pub(crate) fn ln(x: f64) -> f64 {
    const LN_2: f64 = std::f64::consts::LN_2;
    const SQRT_2: f64 = std::f64::consts::SQRT_2;
    debug_assert!(x.is_normal() && x > 0.0, "ln of {x}");
    let bits = x.to_bits();
    let biased = i32::try_from((bits >> 52) & 0x7ff).unwrap_or(0);
    let m = f64::from_bits((bits & ((1u64 << 52) - 1)) | (1023u64 << 52));
    let (m, e) = if m > SQRT_2 {
        (m / 2.0, biased - 1022)
    } else {
        (m, biased - 1023)
    };
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let (mut power, mut sum) = (s, 0.0);
    for k in 0..12u8 {
        sum += power / f64::from(2 * k + 1);
        power *= s2;
    }
    f64::from(e) * LN_2 + 2.0 * sum
}

/// Weighted rendezvous hashing: the server that `key` belongs to among
/// those with a weight. Removing a server moves only its keys; adding one
/// takes keys only for itself. `ids` name the servers stably (an address
/// hash), so the choice does not depend on their order.
pub fn rendezvous(key: u64, servers: &[Server], ids: &[u64]) -> Option<usize> {
    let mut best: Option<(f64, usize)> = None;
    for (i, s) in servers.iter().enumerate() {
        if s.weight == 0 {
            continue;
        }
        let id = ids.get(i).copied().unwrap_or(i as u64);
        // A uniform draw in (0, 1], then -w / ln(u): the weighted winner.
        // 53 bits: exact in an f64.
        let h = mix(key ^ mix(id));
        #[allow(clippy::cast_precision_loss)]
        let u = ((h >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let score = f64::from(s.weight) / -ln(u);
        if best.is_none_or(|(b, _)| score > b) {
            best = Some((score, i));
        }
    }
    best.map(|(_, i)| i)
}

/// The state a scheduler keeps between connections.
#[derive(Debug, Clone)]
pub struct Scheduler {
    algo: Algo,
    /// Smooth weighted round robin's current weights (nginx's algorithm).
    current: Vec<i64>,
    /// Plain round robin's position.
    next: usize,
    /// Stable ids of the servers (hashes of their addresses).
    ids: Vec<u64>,
    /// Maglev's table, rebuilt when the weights change.
    maglev: Option<(Vec<u32>, Vec<usize>)>,
}

/// Maglev's table size (a prime, as its paper and IPVS's `mh` use).
pub const MAGLEV_SIZE: usize = 251;

impl Scheduler {
    /// A scheduler for servers named by `ids` (one per server, stable
    /// across changes: hashes of their addresses).
    pub fn new(algo: Algo, ids: Vec<u64>) -> Self {
        Self {
            algo,
            current: vec![0; ids.len()],
            next: 0,
            ids,
            maglev: None,
        }
    }

    pub fn algo(&self) -> Algo {
        self.algo
    }

    /// The server for a new connection `flow`, or `None` if no server has
    /// a weight.
    pub fn pick(&mut self, servers: &[Server], flow: Flow) -> Option<usize> {
        if self.current.len() != servers.len() {
            self.current = vec![0; servers.len()];
        }
        let live = || servers.iter().enumerate().filter(|(_, s)| s.weight > 0);
        match self.algo {
            Algo::Rr => {
                let n = servers.len();
                (0..n)
                    .map(|k| (self.next + k) % n)
                    .find(|&i| servers[i].weight > 0)
                    .inspect(|&i| self.next = (i + 1) % n)
            }
            Algo::Wrr => smooth_wrr(&mut self.current, servers),
            Algo::Lc => live().min_by_key(|(_, s)| s.active).map(|(i, _)| i),
            Algo::Wlc => least_by(servers, |s| (u64::from(s.active), u64::from(s.weight))),
            Algo::Lblc | Algo::Lblcr => {
                // The destination's server, unless it is overloaded (more
                // active connections than its weight while another server
                // has less than half its weight): then wlc.
                let home = rendezvous(flow.destination, servers, &self.ids)?;
                let h = servers[home];
                let overloaded = h.active > h.weight
                    && live().any(|(_, s)| s.active.saturating_mul(2) < s.weight);
                if overloaded {
                    least_by(servers, |s| (u64::from(s.active), u64::from(s.weight)))
                } else {
                    Some(home)
                }
            }
            Algo::Sed => least_by(servers, |s| (u64::from(s.active) + 1, u64::from(s.weight))),
            Algo::Nq => live()
                .find(|(_, s)| s.active == 0)
                .map(|(i, _)| i)
                .or_else(|| least_by(servers, |s| (u64::from(s.active) + 1, u64::from(s.weight)))),
            Algo::Fo => highest_weight(servers, |_| true),
            Algo::Ovf => highest_weight(servers, |s| s.active < s.weight),
            Algo::Dh => rendezvous(flow.destination, servers, &self.ids),
            Algo::Sh => rendezvous(flow.source, servers, &self.ids),
            Algo::Mh => {
                let weights: Vec<u32> = servers.iter().map(|s| s.weight).collect();
                if self.maglev.as_ref().is_none_or(|(w, _)| *w != weights) {
                    let t = maglev(&weights, &self.ids, MAGLEV_SIZE);
                    self.maglev = Some((weights, t));
                }
                let (_, t) = self.maglev.as_ref()?;
                let slot = usize::try_from(flow.source % t.len().max(1) as u64).ok()?;
                t.get(slot).copied()
            }
        }
    }
}

/// The live server with the smallest active / weight (as a cross product,
/// no division); ties to the first.
fn least_by(servers: &[Server], key: impl Fn(&Server) -> (u64, u64)) -> Option<usize> {
    let mut best: Option<(usize, (u64, u64))> = None;
    for (i, s) in servers.iter().enumerate() {
        if s.weight == 0 {
            continue;
        }
        let (a, w) = key(s);
        let better = match best {
            None => true,
            Some((_, (ba, bw))) => u128::from(a) * u128::from(bw) < u128::from(ba) * u128::from(w),
        };
        if better {
            best = Some((i, (a, w)));
        }
    }
    best.map(|(i, _)| i)
}

/// The live server with the highest weight among those `ok` accepts; ties
/// to the first.
fn highest_weight(servers: &[Server], ok: impl Fn(&Server) -> bool) -> Option<usize> {
    servers
        .iter()
        .enumerate()
        .filter(|(_, s)| s.weight > 0 && ok(s))
        .fold(None, |best: Option<(usize, u32)>, (i, s)| match best {
            Some((_, w)) if w >= s.weight => best,
            _ => Some((i, s.weight)),
        })
        .map(|(i, _)| i)
}

/// One step of smooth weighted round robin: every server gains its
/// weight, the largest wins and pays the total. Over sum(weights) steps
/// each server is picked exactly `weight` times, spread out.
fn smooth_wrr(current: &mut [i64], servers: &[Server]) -> Option<usize> {
    let total: i64 = servers.iter().map(|s| i64::from(s.weight)).sum();
    if total == 0 {
        return None;
    }
    let mut best: Option<usize> = None;
    for (i, s) in servers.iter().enumerate() {
        if s.weight == 0 {
            continue;
        }
        current[i] += i64::from(s.weight);
        if best.is_none_or(|b| current[i] > current[b]) {
            best = Some(i);
        }
    }
    let b = best?;
    current[b] -= total;
    Some(b)
}

/// Maglev's lookup table of `size` slots (a prime) over the servers with a
/// weight: each server fills slots along its own permutation, taking turns
/// in proportion to its weight.
pub fn maglev(weights: &[u32], ids: &[u64], size: usize) -> Vec<usize> {
    let live: Vec<usize> = (0..weights.len()).filter(|&i| weights[i] > 0).collect();
    if live.is_empty() || size == 0 {
        return Vec::new();
    }
    let m = size as u64;
    let perm: Vec<(u64, u64)> = live
        .iter()
        .map(|&i| {
            let id = ids.get(i).copied().unwrap_or(i as u64);
            let offset = mix(id ^ 0x6d61_676c_6576) % m;
            let skip = mix(id ^ 0x736b_6970) % (m - 1).max(1) + 1;
            (offset, skip)
        })
        .collect();
    let max_w = u64::from(live.iter().map(|&i| weights[i]).max().unwrap_or(1));
    let mut next = vec![0u64; live.len()];
    let mut credit = vec![0u64; live.len()];
    let mut table = vec![usize::MAX; size];
    let mut filled = 0;
    while filled < size {
        for (k, &i) in live.iter().enumerate() {
            // Weighted turns: a server takes a turn each time its credit
            // reaches the largest weight.
            credit[k] += u64::from(weights[i]);
            if credit[k] < max_w {
                continue;
            }
            credit[k] -= max_w;
            let (offset, skip) = perm[k];
            loop {
                let c = usize::try_from((offset + next[k] * skip) % m).unwrap_or(0);
                next[k] += 1;
                if table[c] == usize::MAX {
                    table[c] = i;
                    filled += 1;
                    break;
                }
            }
            if filled == size {
                break;
            }
        }
    }
    table
}

/// How a packet picks its slot of a [`table`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selector {
    /// The next slot for every new connection (rr, wrr and the
    /// connection-counting schedulers, which a kernel table cannot count).
    EachNewFlow,
    /// A hash of the client's address (sh, mh): a client keeps its server.
    SourceHash,
    /// A hash of the destination address (dh, lblc, lblcr).
    DestinationHash,
}

/// A scheduler compiled to a table: `slots[k]` is the server index for
/// slot `k`; empty when no server has a weight. Connection-counting
/// schedulers become their weighted round-robin shape (said in compat.md).
pub fn table(algo: Algo, weights: &[u32], ids: &[u64]) -> (Selector, Vec<usize>) {
    let servers: Vec<Server> = weights
        .iter()
        .map(|&weight| Server { weight, active: 0 })
        .collect();
    match algo {
        Algo::Sh | Algo::Dh | Algo::Lblc | Algo::Lblcr => {
            let sel = if algo == Algo::Sh {
                Selector::SourceHash
            } else {
                Selector::DestinationHash
            };
            // Each bucket is a key of its own, so a bucket moves only when
            // its server goes or a new one outbids it.
            let slots = (0..MAGLEV_SIZE as u64)
                .filter_map(|b| rendezvous(mix(b), &servers, ids))
                .collect();
            (sel, slots)
        }
        Algo::Mh => (Selector::SourceHash, maglev(weights, ids, MAGLEV_SIZE)),
        Algo::Fo | Algo::Ovf => (
            Selector::EachNewFlow,
            highest_weight(&servers, |_| true).into_iter().collect(),
        ),
        Algo::Rr => (
            Selector::EachNewFlow,
            (0..weights.len()).filter(|&i| weights[i] > 0).collect(),
        ),
        Algo::Wrr | Algo::Lc | Algo::Wlc | Algo::Sed | Algo::Nq => {
            (Selector::EachNewFlow, wrr_cycle(weights, MAX_CYCLE))
        }
    }
}

/// The longest weighted cycle put in a table; larger weight sums are
/// scaled down to it (largest remainders), every live server keeping a slot.
pub const MAX_CYCLE: usize = 1024;

/// One full cycle of smooth weighted round robin: each server appears
/// `weight / gcd` times, spread out; scaled to at most `max` slots.
pub fn wrr_cycle(weights: &[u32], max: usize) -> Vec<usize> {
    let g = weights.iter().copied().filter(|&w| w > 0).fold(0, gcd);
    if g == 0 {
        return Vec::new();
    }
    let mut w: Vec<u64> = weights.iter().map(|&x| u64::from(x / g)).collect();
    let total: u64 = w.iter().sum();
    if total > max as u64 {
        // Largest remainder, at least one slot for every live server.
        let live = w.iter().filter(|&&x| x > 0).count() as u64;
        let room = (max as u64).max(live);
        let mut scaled: Vec<(u64, u64, usize)> = w
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                let exact = x * (room - live);
                (u64::from(x > 0) + exact / total, exact % total, i)
            })
            .collect();
        let mut left = room - scaled.iter().map(|s| s.0).sum::<u64>();
        scaled.sort_by_key(|s| std::cmp::Reverse(s.1));
        for s in &mut scaled {
            if left == 0 {
                break;
            }
            if w[s.2] > 0 {
                s.0 += 1;
                left -= 1;
            }
        }
        scaled.sort_by_key(|s| s.2);
        w = scaled.iter().map(|s| s.0).collect();
    }
    let servers: Vec<Server> = w
        .iter()
        .map(|&x| Server {
            weight: u32::try_from(x).unwrap_or(u32::MAX),
            active: 0,
        })
        .collect();
    let n: u64 = w.iter().sum();
    let mut current = vec![0i64; servers.len()];
    (0..n)
        .filter_map(|_| smooth_wrr(&mut current, &servers))
        .collect()
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Our `ln` agrees with the C library's to a few ulps over the draws
    /// rendezvous makes (2^-53 ..= 1) and beyond.
    #[test]
    fn ln_matches_the_c_library() {
        let mut x: f64 = 0.5f64.powi(53);
        let mut worst = 0.0f64;
        while x <= 4.0 {
            for f in [1.0, 1.1, 1.3, 1.41, 1.42, 1.7, 1.99] {
                let v = x * f;
                let (ours, theirs) = (ln(v), v.ln());
                let err = if theirs == 0.0 {
                    ours.abs()
                } else {
                    ((ours - theirs) / theirs).abs()
                };
                worst = worst.max(err);
            }
            x *= 2.0;
        }
        assert!(worst < 1e-14, "relative error {worst:e}");
        assert!(ln(1.0).abs() < f64::EPSILON);
        assert!((ln(std::f64::consts::E) - 1.0).abs() < 1e-15);
    }

    fn servers(weights: &[u32]) -> Vec<Server> {
        weights
            .iter()
            .map(|&weight| Server { weight, active: 0 })
            .collect()
    }

    #[test]
    fn rr_skips_quiesced_servers() {
        let mut s = Scheduler::new(Algo::Rr, vec![1, 2, 3]);
        let sv = servers(&[1, 0, 5]);
        let picks: Vec<_> = (0..4)
            .filter_map(|_| s.pick(&sv, Flow::default()))
            .collect();
        assert_eq!(picks, [0, 2, 0, 2]);
        assert_eq!(s.pick(&servers(&[0, 0]), Flow::default()), None);
    }

    #[test]
    fn wrr_is_smooth() {
        let mut s = Scheduler::new(Algo::Wrr, vec![1, 2, 3]);
        let sv = servers(&[5, 1, 1]);
        let picks: Vec<_> = (0..7)
            .filter_map(|_| s.pick(&sv, Flow::default()))
            .collect();
        assert_eq!(
            picks,
            [0, 0, 1, 0, 2, 0, 0],
            "nginx's example: a a b a c a a"
        );
    }

    #[test]
    fn connection_counting_schedulers() {
        let sv = [
            Server {
                weight: 1,
                active: 3,
            },
            Server {
                weight: 3,
                active: 6,
            },
            Server {
                weight: 1,
                active: 0,
            },
        ];
        let f = Flow::default();
        assert_eq!(Scheduler::new(Algo::Lc, vec![]).pick(&sv, f), Some(2));
        // wlc: 3/1, 6/3 = 2, 0/1: the idle one.
        assert_eq!(Scheduler::new(Algo::Wlc, vec![]).pick(&sv, f), Some(2));
        let busy = [
            Server {
                weight: 1,
                active: 3,
            },
            Server {
                weight: 3,
                active: 6,
            },
            Server {
                weight: 1,
                active: 2,
            },
        ];
        // wlc: 3, 2, 2 → the first of the lowest; sed: 4, 7/3, 3 → 1.
        assert_eq!(Scheduler::new(Algo::Wlc, vec![]).pick(&busy, f), Some(1));
        assert_eq!(Scheduler::new(Algo::Sed, vec![]).pick(&busy, f), Some(1));
        assert_eq!(
            Scheduler::new(Algo::Nq, vec![]).pick(&sv, f),
            Some(2),
            "idle first"
        );
        // fo: the highest weight; ovf: until its connections reach its weight.
        assert_eq!(Scheduler::new(Algo::Fo, vec![]).pick(&busy, f), Some(1));
        assert_eq!(
            Scheduler::new(Algo::Ovf, vec![]).pick(&busy, f),
            None,
            "all full"
        );
        let ovf = [
            Server {
                weight: 2,
                active: 2,
            },
            Server {
                weight: 1,
                active: 0,
            },
        ];
        assert_eq!(Scheduler::new(Algo::Ovf, vec![]).pick(&ovf, f), Some(1));
    }

    #[test]
    fn table_shapes() {
        let ids = [11, 22, 33];
        let (sel, t) = table(Algo::Wrr, &[2, 1, 0], &ids);
        assert_eq!(sel, Selector::EachNewFlow);
        assert_eq!(t, [0, 1, 0]);
        let (sel, t) = table(Algo::Rr, &[2, 1, 0], &ids);
        assert_eq!((sel, t), (Selector::EachNewFlow, vec![0, 1]));
        let (sel, t) = table(Algo::Mh, &[1, 1, 1], &ids);
        assert_eq!((sel, t.len()), (Selector::SourceHash, MAGLEV_SIZE));
        let (sel, t) = table(Algo::Fo, &[1, 4, 4], &ids);
        assert_eq!((sel, t), (Selector::EachNewFlow, vec![1]));
        assert!(table(Algo::Sh, &[0, 0], &ids).1.is_empty());
    }

    #[test]
    fn big_weight_sums_scale_down_keeping_every_server() {
        let t = wrr_cycle(&[65535, 1, 30000], 1024);
        assert_eq!(t.len(), 1024);
        assert!(t.contains(&1), "the weight-1 server keeps a slot");
        let c0 = t.iter().filter(|&&i| i == 0).count();
        let c2 = t.iter().filter(|&&i| i == 2).count();
        // c0 / c2 within 1% of 65535 / 30000, in integers.
        assert!(
            (c0 * 30_000).abs_diff(c2 * 65_535) * 100 <= c2 * 65_535,
            "{c0} {c2}"
        );
    }
}
