//! The proxy data plane in the daemon (`lb_dataplane proxy`): one thread
//! per core, each with a single-threaded tokio runtime and its own
//! `SO_REUSEPORT` listener of every proxied virtual server (the kernel
//! spreads connections over them; a connection never changes thread, as
//! in nginx's workers), relaying to the servers the checkers call healthy
//! (`lb::proxy`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use lb::nft::{Desired, Proto};
use lb::proxy::Pool;

/// What the proxy needs of a virtual server beyond its servers.
#[derive(Debug, Clone)]
pub struct Service {
    /// Each real server's `max_fails` and `fail_timeout`.
    pub passive: Vec<(SocketAddr, u32, Duration)>,
    pub connect_timeout: Duration,
    pub proxy_protocol: Option<lb::proxy_protocol::Version>,
    /// `max_conns` (0: no cap but the proxy's descriptor budget).
    pub max_conns: u32,
    /// `proxy_timeout` (`None`: the default, 10 min for TCP, 30 s for a
    /// UDP session; zero: none).
    pub proxy_timeout: Option<Duration>,
}

/// Per virtual server (address and port, UDP or not).
pub type Settings = HashMap<(SocketAddr, bool), Service>;

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

pub struct Plane {
    workers: Vec<Worker>,
    /// Each service's pool and its listeners' tasks.
    pools: HashMap<(SocketAddr, bool), (Arc<Pool>, Listeners)>,
    settings: Settings,
    /// The descriptors its connections may hold, all services together.
    budget: Arc<lb::proxy::Budget>,
}

impl Plane {
    pub fn new(settings: Settings) -> Result<Self, String> {
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
                            let _ = tx.send(Err(e.to_string()));
                            return;
                        }
                    };
                    let _ = tx.send(Ok(rt.handle().clone()));
                    rt.block_on(async {
                        let _ = stopped.await;
                    });
                })
                .map_err(|e| format!("proxy worker: {e}"))?;
            let handle = rx
                .recv()
                .map_err(|e| format!("proxy worker: {e}"))?
                .map_err(|e| format!("proxy runtime: {e}"))?;
            workers.push(Worker {
                handle,
                stop: Some(stop),
                thread: Some(thread),
            });
        }
        Ok(Self {
            workers,
            pools: HashMap::new(),
            settings,
            budget: Arc::new(budget()),
        })
    }

    /// A reload's settings (applied at the next `apply`).
    pub fn set_settings(&mut self, settings: Settings) {
        self.settings = settings;
    }
}

/// The proxy's share of the open-file limit (raised to the hard limit at
/// start), the rest kept for everything else the daemon does.
fn budget() -> lb::proxy::Budget {
    use nix::sys::resource::{getrlimit, Resource};
    let limit = getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft);
    let b = lb::proxy::Budget::new(limit);
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
    budget: &Arc<lb::proxy::Budget>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, String> {
    let mut tasks = Vec::new();
    if udp {
        let w = workers.first().ok_or("no proxy worker")?;
        let sock = {
            let _guard = w.handle.enter();
            lb::proxy::udp_socket(vs)
                .map_err(|e| format!("proxy: cannot listen on udp {vs}: {e}"))?
        };
        tasks.push(
            w.handle
                .spawn(lb::proxy::serve_udp(sock, pool.clone(), budget.clone())),
        );
    } else {
        // Every worker's listener first: none serves unless all could.
        let mut listeners = Vec::new();
        for w in workers {
            let _guard = w.handle.enter();
            listeners.push(
                lb::proxy::tcp_listener(vs)
                    .map_err(|e| format!("proxy: cannot listen on tcp {vs}: {e}"))?,
            );
        }
        for (w, l) in workers.iter().zip(listeners) {
            tasks.push(
                w.handle
                    .spawn(lb::proxy::serve_tcp(l, pool.clone(), budget.clone())),
            );
        }
    }
    tracing::info!(
        "proxy: listening on {} {vs}",
        if udp { "udp" } else { "tcp" }
    );
    Ok(tasks)
}

impl lb::DataPlane for Plane {
    fn name(&self) -> &'static str {
        "proxy"
    }

    fn as_any_mut(&mut self) -> Option<&mut dyn std::any::Any> {
        Some(self)
    }

    fn apply(&mut self, desired: &Desired) -> Result<bool, String> {
        if self.workers.is_empty() {
            return Err("the proxy is stopped".into());
        }
        let mut changed = false;
        let mut errors = Vec::new();
        for s in &desired.services {
            let vs = SocketAddr::new(s.vip, s.port);
            let udp = s.proto == Proto::Udp;
            let key = (vs, udp);
            let settings = self.settings.get(&key).cloned().unwrap_or(Service {
                passive: Vec::new(),
                connect_timeout: Duration::from_secs(5),
                proxy_protocol: None,
                max_conns: 0,
                proxy_timeout: None,
            });
            let idle = settings.proxy_timeout.unwrap_or(if udp {
                UDP_IDLE
            } else {
                lb::proxy::DEFAULT_IDLE
            });
            let passive = settings.passive;
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
                        .map_or(lb::proxy::Passive::DEFAULT, |p| (p.1, p.2));
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
        if errors.is_empty() {
            Ok(changed)
        } else {
            Err(errors.join("; "))
        }
    }

    fn counters(&self) -> Vec<(SocketAddr, SocketAddr, u32, u64)> {
        let mut out: Vec<(SocketAddr, SocketAddr, u32, u64)> = self
            .pools
            .iter()
            .flat_map(|((vs, _), (p, _))| {
                p.counters()
                    .into_iter()
                    .map(move |(rs, active, bytes)| (*vs, rs, active, bytes))
            })
            .collect();
        out.sort_unstable();
        out
    }

    fn admission(&self) -> Option<lb::proxy::Admission> {
        let mut services: Vec<(SocketAddr, bool, lb::proxy::PoolAdmission)> = self
            .pools
            .iter()
            .map(|((vs, udp), (p, _))| (*vs, *udp, p.admission()))
            .collect();
        services.sort_unstable_by_key(|s| (s.0, s.1));
        Some(lb::proxy::Admission {
            fd_limit: self.budget.limit,
            fd_reserve: self.budget.reserve,
            fds_held: self.budget.held(),
            max_conns: self.budget.max_conns(),
            accept_errors: self.budget.accept_errors(),
            services,
        })
    }

    fn clear(&mut self) -> Result<(), String> {
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
