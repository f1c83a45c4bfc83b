//! The health-check side of the daemon: every `real_server`'s checkers run
//! by `check::run`; each real server's health (all its checkers must pass,
//! as keepalived) and weight, and each virtual server's quorum, published
//! in `status`, with keepalived's log lines, notify scripts, FIFO lines and
//! e-mails on every change. Every checker kind but `BFD_CHECK` runs.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use check::http::{StatusCodes, Url};
use check::run::{Event, Probe, Spec, Tls};
use check::state::{Timing, Transition};
use kaconf::model::{Checker, ServiceAddr};
use kaconf::value::Seconds;

use crate::control::{RealServerStatus, VirtualServerStatus};

mod plan;
mod spec;

pub use plan::Plan;
use spec::{argv, checker_specs, service, Context};

/// keepalived's defaults (docs/research/checkers.md §1).
const DELAY_LOOP: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const TCP_RETRY: u32 = 1;
const TCP_DELAY_BEFORE_RETRY: Duration = Duration::from_secs(1);

/// HTTP_GET's `delay_before_retry` default (keepalived: 3 s).
const HTTP_DELAY_BEFORE_RETRY: Duration = Duration::from_secs(3);

/// Runs every checker until `stop`, keeping `status.virtual_servers`
/// current; `notify_fifo`'s reader script is started here only when VRRP
/// does not run (`vrrp`: it does, and starts it).
/// Sets its flag when dropped.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The checkers' plan for a reloaded configuration `new`: unchanged
/// checkers keep their state (`Plan::adopt`); `status` and the data plane
/// follow.
fn reloaded(
    plan: &Plan,
    new: &kaconf::Config,
    tx: &std::sync::mpsc::Sender<crate::notify::Job>,
    status: &crate::control::Shared,
    dp_tx: &std::sync::mpsc::Sender<crate::dataplane::Msg>,
) -> Plan {
    let mut fresh = Plan::new(new);
    fresh.notify = Some(tx.clone());
    let kept = fresh.adopt(plan);
    tracing::info!(
        "reload: {} health checkers, {kept} of them kept with their state",
        fresh.specs.len()
    );
    if let Ok(mut s) = status.lock() {
        s.virtual_servers.clone_from(&fresh.status);
    }
    // The new services and the view of them in one message: applied
    // together, never the new specs with the old view.
    let specs = crate::dataplane::specs(new);
    let flush = crate::dataplane::table_for_reload(new);
    let _ = dp_tx.send(crate::dataplane::Msg::Reload(specs, fresh.view(), flush));
    fresh
}

pub fn run(
    config: &kaconf::Config,
    stop: &Arc<AtomicBool>,
    status: &crate::control::Shared,
    reloads: std::sync::mpsc::Receiver<Arc<kaconf::Config>>,
    tx: std::sync::mpsc::Sender<crate::notify::Job>,
) -> anyhow::Result<()> {
    // Read by the watcher of each round of checkers.
    let reloads = &std::sync::Mutex::new(reloads);
    let mut plan = Plan::new(config);
    plan.notify = Some(tx.clone());
    if let Ok(mut s) = status.lock() {
        s.virtual_servers.clone_from(&plan.status);
    }
    // The data plane follows every change the checkers make, and every
    // reload (its listeners and tables outlive a change of checkers).
    let carried = crate::dataplane::specs(config);
    // Also if this thread panics, the data plane's thread is told to end
    // and waited for, so that our tables are gone before the process is.
    let dataplane =
        crate::dataplane::start(carried, crate::dataplane::table(config), status.clone())?;
    let dp_tx = dataplane.sender();
    let _ = dp_tx.send(crate::dataplane::Msg::View(plan.view()));
    // What runs, for the next reload's change list.
    let mut running: Option<Arc<kaconf::Config>> = None;
    loop {
        let specs = plan.specs.clone();
        tracing::info!("Starting {} health checkers", specs.len());
        // The checkers run until a stop, or until a reload arrives.
        let round_stop = Arc::new(AtomicBool::new(false));
        let pending: Arc<std::sync::Mutex<Option<Arc<kaconf::Config>>>> = Arc::default();
        let dataplane_died = AtomicBool::new(false);
        let next = std::thread::scope(|scope| -> anyhow::Result<Option<Arc<kaconf::Config>>> {
            let (round_stop2, pending2) = (round_stop.clone(), pending.clone());
            let (died, plane) = (&dataplane_died, &dataplane);
            scope.spawn(move || {
                // However the watcher ends (a panic too), the round ends
                // with it, and the scope passes the panic on.
                let _ends_round = SetOnDrop(&round_stop2);
                while !round_stop2.load(Ordering::Relaxed) {
                    check::fault::at("check");
                    if plane.died() {
                        died.store(true, Ordering::Relaxed);
                        break;
                    }
                    if stop.load(Ordering::Relaxed) {
                        round_stop2.store(true, Ordering::Relaxed);
                        break;
                    }
                    let got = reloads
                        .lock()
                        .ok()
                        .and_then(|r| r.recv_timeout(std::time::Duration::from_millis(50)).ok());
                    if let Some(c) = got {
                        if let Ok(mut p) = pending2.lock() {
                            *p = Some(c);
                        }
                        round_stop2.store(true, Ordering::Relaxed);
                    }
                }
            });
            let ran = check::run::run(specs, &round_stop, |ev| {
                if plan.event(ev) {
                    if let Ok(mut s) = status.lock() {
                        s.virtual_servers.clone_from(&plan.status);
                    }
                    let _ = dp_tx.send(crate::dataplane::Msg::View(plan.view()));
                }
            });
            // The watcher ends with the round, however the round ended.
            round_stop.store(true, Ordering::Relaxed);
            ran?;
            if dataplane_died.load(Ordering::Relaxed) {
                anyhow::bail!("the data plane thread ended; the checkers stop with it");
            }
            Ok(pending.lock().ok().and_then(|mut p| p.take()))
        })?;
        let Some(new) = next.filter(|_| !stop.load(Ordering::Relaxed)) else {
            break;
        };
        crate::change::log(&crate::change::services(
            running.as_deref().unwrap_or(config),
            &new,
        ));
        running = Some(new.clone());
        plan = reloaded(&plan, &new, &tx, status, &dp_tx);
    }
    // Our tables go when the data plane's thread sees the channel close.
    drop(dp_tx);
    drop(dataplane);
    plan.shutdown();
    // The notifier (the daemon's) writes what is queued once every part
    // has let go of it.
    plan.notify = None;
    drop(tx);
    Ok(())
}
