//! The proxy data plane in the daemon (`lb_dataplane proxy`): a tokio
//! runtime of its own whose workers each accept on a `SO_REUSEPORT`
//! listener of every proxied virtual server, relaying to the servers the
//! checkers call healthy (`lb::proxy`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use lb::nft::{Desired, Proto};
use lb::proxy::Pool;

/// Per virtual server (address, port, protocol): its real servers'
/// `max_fails` and `fail_timeout`, and its connect timeout.
pub type Settings = HashMap<(SocketAddr, bool), (Vec<(SocketAddr, u32, Duration)>, Duration)>;

/// How long a UDP session without traffic lasts.
const UDP_IDLE: Duration = Duration::from_secs(30);

pub struct Plane {
    rt: Option<tokio::runtime::Runtime>,
    pools: HashMap<(SocketAddr, bool), Arc<Pool>>,
    settings: Settings,
    workers: usize,
}

impl Plane {
    pub fn new(settings: Settings) -> Result<Self, String> {
        let workers = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("proxy")
            .enable_all()
            .build()
            .map_err(|e| format!("proxy runtime: {e}"))?;
        Ok(Self {
            rt: Some(rt),
            pools: HashMap::new(),
            settings,
            workers,
        })
    }
}

/// Starts serving `vs` for `pool` on `rt`: one `SO_REUSEPORT` listener
/// per worker for TCP, one socket for UDP.
fn listen(
    rt: &tokio::runtime::Runtime,
    vs: SocketAddr,
    udp: bool,
    workers: usize,
    pool: &Arc<Pool>,
) -> Result<(), String> {
    let _guard = rt.enter();
    if udp {
        let sock = std::net::UdpSocket::bind(vs)
            .and_then(|u| {
                u.set_nonblocking(true)?;
                tokio::net::UdpSocket::from_std(u)
            })
            .map_err(|e| format!("proxy: cannot listen on udp {vs}: {e}"))?;
        rt.spawn(lb::proxy::serve_udp(sock, pool.clone(), UDP_IDLE));
    } else {
        for _ in 0..workers {
            let l = lb::proxy::tcp_listener(vs)
                .map_err(|e| format!("proxy: cannot listen on tcp {vs}: {e}"))?;
            rt.spawn(lb::proxy::serve_tcp(l, pool.clone()));
        }
    }
    tracing::info!(
        "proxy: listening on {} {vs}",
        if udp { "udp" } else { "tcp" }
    );
    Ok(())
}

impl lb::DataPlane for Plane {
    fn name(&self) -> &'static str {
        "proxy"
    }

    fn apply(&mut self, desired: &Desired) -> Result<bool, String> {
        let rt = self.rt.as_ref().ok_or("the proxy is stopped")?;
        let mut changed = false;
        for s in &desired.services {
            let vs = SocketAddr::new(s.vip, s.port);
            let udp = s.proto == Proto::Udp;
            let key = (vs, udp);
            let (passive, connect_timeout) = self
                .settings
                .get(&key)
                .cloned()
                .unwrap_or_else(|| (Vec::new(), Duration::from_secs(5)));
            let pool = if let Some(p) = self.pools.get(&key) {
                p.clone()
            } else {
                let pool = Pool::new(s.algo, connect_timeout);
                listen(rt, vs, udp, self.workers, &pool)?;
                self.pools.insert(key, pool.clone());
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
        Ok(changed)
    }

    fn clear(&mut self) -> Result<(), String> {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_millis(200));
        }
        self.pools.clear();
        Ok(())
    }
}
