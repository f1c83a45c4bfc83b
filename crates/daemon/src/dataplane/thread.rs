//! The data plane's thread: the planes it keeps (one per carrier), the
//! messages it follows, what it publishes in `status`.

use super::{
    arp_table, desired, solicit, Carrier, Duration, Kind, Receiver, RecvTimeoutError, Sender,
    ServiceSpec, ServiceView, Table, RETRY,
};

/// What the data plane thread is told.
#[derive(Debug)]
pub enum Msg {
    /// The checkers' view changed.
    View(Vec<ServiceView>),
    /// A reload: the virtual servers, the checkers' view of them, and
    /// the table's options (`lvs_flush_on_stop`, `lvs_timeouts`).
    Reload(Vec<ServiceSpec>, Vec<ServiceView>, Table),
}

/// Starts the data plane's thread; it runs until the sender is dropped,
/// then removes what the planes carry.
pub fn start(
    specs: Vec<ServiceSpec>,
    table: Table,
    status: crate::control::Shared,
) -> std::io::Result<Thread> {
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("dataplane".into())
        .spawn(move || run(&specs, table, &rx, &status))?;
    Ok(Thread {
        tx: Some(tx),
        handle: Some(handle),
    })
}

/// The data plane's thread: dropped (also while its owner unwinds from a
/// panic), it closes the thread's channel and waits until the thread has
/// removed our tables and listeners.
#[derive(Debug)]
pub struct Thread {
    tx: Option<Sender<Msg>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Thread {
    /// Whether the thread has ended while it should be running (it
    /// panicked: it ends otherwise only when told to).
    pub fn died(&self) -> bool {
        self.handle
            .as_ref()
            .is_none_or(std::thread::JoinHandle::is_finished)
    }

    /// Where to send changes. The thread ends when every sender, this
    /// one's included, is gone.
    pub fn sender(&self) -> Sender<Msg> {
        match &self.tx {
            Some(tx) => tx.clone(),
            None => std::sync::mpsc::channel().0,
        }
    }
}

impl Drop for Thread {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(h) = self.handle.take() {
            if h.join().is_err() {
                tracing::error!("the data plane thread panicked");
            }
        }
    }
}

/// Publishes what the planes count (the proxy) in `status`.
pub(super) fn publish(
    planes: &[(Carrier, Box<dyn lb::DataPlane>, Vec<ServiceSpec>)],
    status: &crate::control::Shared,
) {
    let counters: Vec<crate::control::ProxyCounter> = planes
        .iter()
        .flat_map(|(_, p, _)| p.counters())
        .map(|c| crate::control::ProxyCounter {
            virtual_server: c.virtual_server.to_string(),
            real_server: c.real_server.to_string(),
            active_connections: c.connections,
            bytes: c.bytes,
        })
        .collect();
    let limits = planes
        .iter()
        .find_map(|(_, p, _)| p.admission())
        .map(proxy_limits);
    if let Ok(mut s) = status.lock() {
        if s.proxy != counters {
            s.proxy = counters;
        }
        if s.proxy_limits != limits {
            s.proxy_limits = limits;
        }
    }
}

/// The proxy's admission in `status`, with the descriptors the daemon has
/// open (counted at most once a second: /proc/self/fd lists every one).
#[allow(clippy::needless_pass_by_value)]
pub(super) fn proxy_limits(a: lb::proxy::Admission) -> crate::control::ProxyLimits {
    thread_local! {
        static OPEN: std::cell::Cell<Option<(std::time::Instant, u64)>> =
            const { std::cell::Cell::new(None) };
    }
    let fds_open = OPEN.with(|c| match c.get() {
        Some((at, n)) if at.elapsed() < Duration::from_secs(1) => n,
        last => {
            // Out of descriptors, the directory cannot be opened: the
            // last count stands.
            let n = std::fs::read_dir("/proc/self/fd").map_or_else(
                |_| last.map_or(0, |l| l.1),
                |d| d.count().saturating_sub(1) as u64,
            );
            c.set(Some((std::time::Instant::now(), n)));
            n
        }
    });
    crate::control::ProxyLimits {
        fd_limit: a.fd_limit,
        fd_reserve: a.fd_reserve,
        fds_open,
        proxy_fds: a.fds_held,
        max_connections: a.max_conns,
        accept_errors: a.accept_errors,
        virtual_servers: a
            .services
            .iter()
            .map(|(vs, udp, p)| crate::control::ProxyServiceLimits {
                virtual_server: vs.to_string(),
                protocol: if *udp { "UDP" } else { "TCP" }.into(),
                connections: p.connections,
                max_conns: p.max_conns,
                proxy_timeout: p.idle.map_or(0, |d| d.as_secs()),
                refused: [
                    ("max_conns".to_owned(), p.refused_max_conns),
                    ("descriptors".to_owned(), p.refused_descriptors),
                ]
                .into_iter()
                .collect(),
                idle_timeouts: p.idle_timeouts,
            })
            .collect(),
    }
}

/// Opens the data plane `carrier` names (said in the log if it cannot).
pub(super) fn open_plane(carrier: Carrier) -> Option<Box<dyn lb::DataPlane>> {
    match lb::open(carrier) {
        Ok(p) => Some(p),
        Err(e) => {
            let what = match carrier {
                Carrier::Proxy => "the proxied virtual servers are",
                Carrier::Ipvs => "its virtual servers are",
                Carrier::Nftables => "the nftables virtual servers are",
            };
            let prefix = if carrier == Carrier::Ipvs {
                "IPVS: "
            } else {
                ""
            };
            tracing::error!("{prefix}{e}; {what} not carried");
            None
        }
    }
}

/// Each data plane with the virtual servers it carries; a reload keeps
/// the planes it still needs (with their listeners and tables), opens
/// the new ones, and leaves the others with nothing to carry.
pub(super) fn arrange(
    planes: &mut Vec<(Carrier, Box<dyn lb::DataPlane>, Vec<ServiceSpec>)>,
    specs: &[ServiceSpec],
) {
    let nat = specs
        .iter()
        .any(|s| s.kind == Kind::Nat && s.carrier != Carrier::Proxy);
    if nat
        && std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").is_ok_and(|v| v.trim() == "0")
    {
        tracing::warn!("lb_kind NAT needs IP forwarding: net.ipv4.ip_forward is 0");
    }
    for carrier in [Carrier::Proxy, Carrier::Ipvs, Carrier::Nftables] {
        let mine: Vec<ServiceSpec> = specs
            .iter()
            .filter(|s| s.carrier == carrier)
            .cloned()
            .collect();
        if let Some(slot) = planes.iter_mut().find(|p| p.0 == carrier) {
            slot.2 = mine;
        } else if !mine.is_empty() {
            if let Some(p) = open_plane(carrier) {
                planes.push((carrier, p, mine));
            }
        }
    }
}

pub(super) type Planes = Vec<(Carrier, Box<dyn lb::DataPlane>, Vec<ServiceSpec>)>;

/// The data plane's thread: follows the messages until its channel closes;
/// then, or after a panic, removes what the planes carry (a panic then
/// ends the thread, which the checkers' thread sees: the daemon stops).
pub(super) fn run(
    specs: &[ServiceSpec],
    table: Table,
    rx: &Receiver<Msg>,
    status: &crate::control::Shared,
) {
    let mut planes: Planes = Vec::new();
    let followed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        follow(&mut planes, specs, table, rx, status);
    }));
    if followed.is_err() {
        tracing::error!("the data plane thread panicked; removing what it carried");
    }
    for (_, plane, _) in &mut planes {
        if let Err(e) = plane.clear() {
            tracing::warn!("removing what {} carried: {e}", plane.name());
        }
    }
}

pub(super) fn follow(
    planes: &mut Planes,
    specs: &[ServiceSpec],
    mut table: Table,
    rx: &Receiver<Msg>,
    status: &crate::control::Shared,
) {
    arrange(planes, specs);
    let mut view: Option<Vec<ServiceView>> = None;
    let mut last_error: Option<String> = None;
    loop {
        let mut disconnected = false;
        match rx.recv_timeout(RETRY) {
            Ok(first) => {
                // Everything waiting; the newest view only.
                for msg in std::iter::once(first).chain(rx.try_iter()) {
                    match msg {
                        Msg::View(v) => view = Some(v),
                        Msg::Reload(s, v, f) => {
                            arrange(planes, &s);
                            // `lvs_flush` stays the start's until the
                            // first apply (a reload right after the start
                            // must not skip it; later ones never flush).
                            let at_start = table.flush.at_start;
                            table = f;
                            table.flush.at_start = at_start;
                            view = Some(v);
                        }
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => disconnected = true,
        }
        if disconnected {
            break;
        }
        publish(planes, status);
        check::fault::at("dataplane");
        let Some(v) = &view else {
            continue;
        };
        let arp = arp_table();
        for (_, plane, specs) in planes.iter_mut() {
            let (d, missing) = desired(specs, v, &arp, table);
            // Only DR on nftables needs MACs (`desired` says which are missing).
            for ip in &missing {
                solicit(*ip);
            }
            match plane.apply(&d) {
                Ok(true) => {
                    tracing::info!(
                        "{}: {} virtual servers carried ({} real servers)",
                        plane.name(),
                        d.services.len(),
                        d.services
                            .iter()
                            .map(|s| s.reals.iter().filter(|r| r.weight > 0).count())
                            .sum::<usize>()
                    );
                    last_error = None;
                }
                Ok(false) => {}
                Err(e) => {
                    let e = e.to_string();
                    if last_error.as_deref() != Some(&e) {
                        tracing::error!("{e}");
                    }
                    last_error = Some(e);
                }
            }
        }
        // `lvs_flush` is for the planes' first apply only (a plane a
        // later reload opens finds the table as it is).
        table.flush.at_start = false;
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Carrier, ServiceSpec, ServiceView, Table};
    use super::{follow, Msg, Planes};
    use lb::model::Flush;
    use std::sync::{Arc, Mutex};

    /// A plane that remembers the `lvs_flush*` of every desired state.
    struct Seen(Arc<Mutex<Vec<Flush>>>);

    impl lb::DataPlane for Seen {
        fn name(&self) -> &'static str {
            "seen"
        }
        fn apply(&mut self, desired: &lb::Desired) -> Result<bool, lb::Error> {
            if let Ok(mut s) = self.0.lock() {
                s.push(desired.table.flush);
            }
            Ok(false)
        }
        fn clear(&mut self) -> Result<(), lb::Error> {
            Ok(())
        }
    }

    fn spec() -> ServiceSpec {
        let text = "virtual_server 198.51.100.250 80 {\n lb_dataplane ipvs\n real_server 198.51.100.50 80 {\n }\n}\n";
        let config = kaconf::parse_str(
            std::path::Path::new("t.conf"),
            text,
            &kaconf::Options::default(),
        )
        .config;
        let mut s = super::super::specs(&config);
        let mut one = s.remove(0);
        one.carrier = Carrier::Ipvs;
        one
    }

    /// `lvs_flush` reaches the planes' first apply even when a reload
    /// (whose flush says "not at start") is queued before it, and never a
    /// later one. (Before, the reload's flush replaced the start's.)
    #[test]
    fn lvs_flush_survives_an_early_reload_and_is_used_once() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut planes: Planes = vec![(Carrier::Ipvs, Box::new(Seen(seen.clone())), vec![spec()])];
        let view = vec![ServiceView {
            reals: Vec::new(),
            quorum_up: true,
        }];
        let start = Table {
            flush: Flush {
                at_start: true,
                all_on_stop: false,
            },
            ..Table::default()
        };
        let reload = Table {
            flush: Flush {
                at_start: false,
                all_on_stop: true,
            },
            ..Table::default()
        };
        let (tx, rx) = std::sync::mpsc::channel();
        assert!(tx.send(Msg::View(view.clone())).is_ok());
        assert!(tx
            .send(Msg::Reload(vec![spec()], view.clone(), reload))
            .is_ok());
        let status = crate::control::Shared::default();
        // Waits (at most 10 s: a loaded machine) until `n` applies are seen.
        let applied = |n: usize| {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while seen.lock().map_or(0, |s| s.len()) < n && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        };
        std::thread::scope(|scope| {
            scope.spawn(move || follow(&mut planes, &[spec()], start, &rx, &status));
            // The first round applies both messages at once; then one more.
            applied(1);
            assert!(tx.send(Msg::View(view)).is_ok());
            applied(2);
            drop(tx);
        });
        let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
        assert_eq!(
            seen.first(),
            Some(&Flush {
                at_start: true,
                all_on_stop: true
            }),
            "{seen:?}"
        );
        assert!(seen.len() >= 2, "{seen:?}");
        assert!(
            seen[1..].iter().all(|f| !f.at_start && f.all_on_stop),
            "{seen:?}"
        );
    }
}
