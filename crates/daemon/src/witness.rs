//! The split-brain guard's witness probes: a thread that asks every
//! witness of each set, twice a second, whether it is reachable (an ICMP
//! echo — `check::ping`: only a reply from the witness itself that echoes
//! our random id and nonce counts — or a TCP connect), and tells the VRRP loop when a set's verdict
//! changes. A set is reachable while any of its witnesses answers; it
//! becomes unreachable after two rounds in a row without an answer (one
//! lost echo does not make a node give up its VIP).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use crate::vrrp::spec::Witness;

/// How often each set is probed, and how long a probe may take.
pub const ROUND: Duration = Duration::from_millis(500);

/// Rounds without any answer before a set is unreachable.
pub const FALL: u32 = 2;

/// A set's verdict changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    pub set: usize,
    pub reachable: bool,
}

/// One probe: the witness answered within [`ROUND`].
async fn probe(w: Witness) -> bool {
    let attempt = async move {
        match w {
            Witness::Icmp(ip) => check::ping::echo(ip).await.is_ok(),
            Witness::Tcp(addr) => tokio::net::TcpStream::connect(addr).await.is_ok(),
        }
    };
    tokio::time::timeout(ROUND, attempt).await.unwrap_or(false)
}

/// A set's verdict over rounds: reachable at once on an answer,
/// unreachable after [`FALL`] silent rounds. Starts reachable (as the
/// routers assume).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub reachable: bool,
    silent: u32,
}

impl Default for Verdict {
    fn default() -> Self {
        Self {
            reachable: true,
            silent: 0,
        }
    }
}

impl Verdict {
    /// One round's outcome; the new verdict if it changed.
    pub fn round(&mut self, answered: bool) -> Option<bool> {
        if answered {
            self.silent = 0;
        } else {
            self.silent = self.silent.saturating_add(1);
        }
        let now = answered || self.silent < FALL;
        (now != self.reachable).then(|| {
            self.reachable = now;
            now
        })
    }
}

/// Probes `sets` until `stop`; each change goes to `tx`.
pub fn spawn(
    sets: Vec<Vec<Witness>>,
    tx: Sender<Event>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("witness".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!("split-brain guard: no runtime for the witness probes: {e}");
                    return;
                }
            };
            rt.block_on(async {
                let mut verdicts = vec![Verdict::default(); sets.len()];
                while !stop.load(Ordering::Relaxed) {
                    let started = tokio::time::Instant::now();
                    for (set, witnesses) in sets.iter().enumerate() {
                        let probes: Vec<_> =
                            witnesses.iter().map(|w| tokio::spawn(probe(*w))).collect();
                        let mut answered = false;
                        for p in probes {
                            answered |= p.await.unwrap_or(false);
                        }
                        if let Some(reachable) = verdicts[set].round(answered) {
                            let list: Vec<String> =
                                witnesses.iter().map(ToString::to_string).collect();
                            if reachable {
                                tracing::info!(
                                    "split-brain guard: a witness answers again ({})",
                                    list.join(", ")
                                );
                            } else {
                                tracing::warn!(
                                    "split-brain guard: no witness answers ({})",
                                    list.join(", ")
                                );
                            }
                            if tx.send(Event { set, reachable }).is_err() {
                                return;
                            }
                        }
                    }
                    tokio::time::sleep_until(started + ROUND).await;
                }
            });
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_silent_rounds_make_a_set_unreachable_one_answer_brings_it_back() {
        let mut v = Verdict::default();
        assert_eq!(v.round(true), None, "starts reachable");
        assert_eq!(v.round(false), None, "one lost answer is not enough");
        assert_eq!(v.round(true), None);
        assert_eq!(v.round(false), None);
        assert_eq!(v.round(false), Some(false), "two silent rounds");
        assert_eq!(v.round(false), None, "said once");
        assert_eq!(v.round(true), Some(true), "back at the first answer");
    }
}
