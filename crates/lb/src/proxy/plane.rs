//! The proxy data plane (`lb_dataplane proxy`): one thread per core,
//! each with a single-threaded tokio runtime and its own `SO_REUSEPORT`
//! listener of every proxied virtual server (the kernel spreads
//! connections over them; a connection never changes thread, as in
//! nginx's workers), relaying to the servers the checkers call healthy
//! (the parent module's [`Pool`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::{Admission, Budget, Pool, PoolAdmission};
use crate::model::{Desired, Proto};
use crate::{Counter, Error};

/// How long a UDP session without traffic lasts (unless `proxy_timeout`).
const UDP_IDLE: Duration = Duration::from_secs(30);

/// One worker: its runtime's handle, and the sender that stops it.
struct Worker {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A service's listener tasks (aborted when it is no longer carried).
type Listeners = Vec<tokio::task::JoinHandle<()>>;

/// The proxy plane: its workers and the services they serve.
pub struct Plane {
    workers: Vec<Worker>,
    /// Each service's pool and its listeners' tasks.
    pools: HashMap<(SocketAddr, bool), (Arc<Pool>, Listeners)>,
    /// The descriptors its connections may hold, all services together.
    budget: Arc<Budget>,
}

impl Plane {
    /// Starts the workers (they serve nothing until `apply`).
    pub fn new() -> Result<Self, Error> {
        let n = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let mut workers = Vec::new();
        for i in 0..n {
            let (tx, rx) = std::sync::mpsc::channel();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(format!("proxy-{i}"))
                .spawn(move || {
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = tx.send(Ok(rt.handle().clone()));
                    rt.block_on(async {
                        let _ = stopped.await;
                    });
                })
                .map_err(Error::ProxyWorker)?;
            let handle = rx
                .recv()
                .map_err(|_| {
                    Error::ProxyWorker(std::io::Error::other("the worker ended at its start"))
                })?
                .map_err(Error::ProxyWorker)?;
            workers.push(Worker {
                handle,
                stop: Some(stop),
                thread: Some(thread),
            });
        }
        Ok(Self {
            workers,
            pools: HashMap::new(),
            budget: Arc::new(budget()),
        })
    }
}

/// The proxy's share of the open-file limit (raised to the hard limit at
/// start), the rest kept for everything else the daemon does.
fn budget() -> Budget {
    use nix::sys::resource::{getrlimit, Resource};
    let limit = getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft);
    let b = Budget::new(limit);
    tracing::info!(
        "proxy: at most {} connections at once ({} of {} file descriptors; {} kept for the rest of the daemon)",
        b.max_conns(),
        b.max_fds(),
        b.limit,
        b.reserve
    );
    b
}

/// Starts serving `vs` for `pool`: on every worker a `SO_REUSEPORT`
/// listener of its own for TCP; one socket, on the first worker, for UDP.
fn listen(
    workers: &[Worker],
    vs: SocketAddr,
    udp: bool,
    pool: &Arc<Pool>,
    budget: &Arc<Budget>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, Error> {
    let listen_error = |proto, source| Error::Listen {
        proto,
        addr: vs,
        source,
    };
    let mut tasks = Vec::new();
    if udp {
        let w = workers.first().ok_or(Error::ProxyStopped)?;
        let sock = {
            let _guard = w.handle.enter();
            super::udp_socket(vs).map_err(|e| listen_error("udp", e))?
        };
        tasks.push(
            w.handle
                .spawn(super::serve_udp(sock, pool.clone(), budget.clone())),
        );
    } else {
        // Every worker's listener first: none serves unless all could.
        let mut listeners = Vec::new();
        for w in workers {
            let _guard = w.handle.enter();
            listeners.push(super::tcp_listener(vs).map_err(|e| listen_error("tcp", e))?);
        }
        for (w, l) in workers.iter().zip(listeners) {
            tasks.push(
                w.handle
                    .spawn(super::serve_tcp(l, pool.clone(), budget.clone())),
            );
        }
    }
    tracing::info!(
        "proxy: listening on {} {vs}",
        if udp { "udp" } else { "tcp" }
    );
    Ok(tasks)
}

impl std::fmt::Debug for Plane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plane")
            .field("workers", &self.workers.len())
            .field("services", &self.pools.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl crate::DataPlane for Plane {
    fn name(&self) -> &'static str {
        "proxy"
    }

    fn apply(&mut self, desired: &Desired) -> Result<bool, Error> {
        if self.workers.is_empty() {
            return Err(Error::ProxyStopped);
        }
        let mut changed = false;
        let mut errors = Vec::new();
        for s in &desired.services {
            let vs = SocketAddr::new(s.vip, s.port);
            let udp = s.proto == Proto::Udp;
            let key = (vs, udp);
            let settings = &s.proxy;
            let idle =
                settings
                    .proxy_timeout
                    .unwrap_or(if udp { UDP_IDLE } else { super::DEFAULT_IDLE });
            let passive = &settings.passive;
            let pool = if let Some((p, _)) = self.pools.get(&key) {
                // Its listeners stay (a reload refuses no connection).
                p.configure(s.algo, settings.connect_timeout, settings.proxy_protocol);
                p.set_limits(settings.max_conns, idle);
                p.clone()
            } else {
                let pool = Pool::new(s.algo, settings.connect_timeout, settings.proxy_protocol);
                pool.set_limits(settings.max_conns, idle);
                // One service that cannot listen does not stop the others
                // (it is tried again at the next apply).
                match listen(&self.workers, vs, udp, &pool, &self.budget) {
                    Ok(tasks) => {
                        self.pools.insert(key, (pool.clone(), tasks));
                    }
                    Err(e) => {
                        errors.push(e);
                        continue;
                    }
                }
                changed = true;
                pool
            };
            let servers: Vec<(SocketAddr, u32, u32, Duration)> = s
                .reals
                .iter()
                .map(|r| {
                    let addr = SocketAddr::new(r.addr, r.port);
                    let (max_fails, fail_timeout) = passive
                        .iter()
                        .find(|p| p.0 == addr)
                        .map_or(super::Passive::DEFAULT, |p| (p.1, p.2));
                    (addr, r.weight, max_fails, fail_timeout)
                })
                .collect();
            pool.set(&servers);
        }
        // Services no longer carried stop listening; their open
        // connections finish on their own.
        let wanted: std::collections::HashSet<(SocketAddr, bool)> = desired
            .services
            .iter()
            .map(|s| (SocketAddr::new(s.vip, s.port), s.proto == Proto::Udp))
            .collect();
        self.pools.retain(|key, (_, tasks)| {
            let keep = wanted.contains(key);
            if !keep {
                for t in tasks.iter() {
                    t.abort();
                }
                tracing::info!(
                    "proxy: no longer listening on {} {}",
                    if key.1 { "udp" } else { "tcp" },
                    key.0
                );
                changed = true;
            }
            keep
        });
        match errors.len() {
            0 => Ok(changed),
            1 => Err(errors.remove(0)),
            _ => Err(Error::Several(errors)),
        }
    }

    fn counters(&self) -> Vec<Counter> {
        let mut out: Vec<Counter> = self
            .pools
            .iter()
            .flat_map(|((vs, _), (p, _))| {
                p.counters()
                    .into_iter()
                    .map(move |(rs, connections, bytes)| Counter {
                        virtual_server: *vs,
                        real_server: rs,
                        connections,
                        bytes,
                    })
            })
            .collect();
        out.sort_unstable();
        out
    }

    fn admission(&self) -> Option<Admission> {
        let mut services: Vec<(SocketAddr, bool, PoolAdmission)> = self
            .pools
            .iter()
            .map(|((vs, udp), (p, _))| (*vs, *udp, p.admission()))
            .collect();
        services.sort_unstable_by_key(|s| (s.0, s.1));
        Some(Admission {
            fd_limit: self.budget.limit,
            fd_reserve: self.budget.reserve,
            fds_held: self.budget.held(),
            max_conns: self.budget.max_conns(),
            accept_errors: self.budget.accept_errors(),
            services,
        })
    }

    fn clear(&mut self) -> Result<(), Error> {
        for mut w in self.workers.drain(..) {
            if let Some(stop) = w.stop.take() {
                let _ = stop.send(());
            }
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
        self.pools.clear();
        Ok(())
    }
}
