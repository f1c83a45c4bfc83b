//! Load balancing: IPVS's scheduling algorithms (pure, [`sched`]) and the
//! data planes that carry a virtual server's traffic to its real servers
//! ([`nft`]: the nftables kernel data plane; [`ipvs`]: IPVS's generic netlink
//! messages, for kernels that have it).

pub mod ipvs;
pub mod nft;
pub mod proxy;
pub mod proxy_protocol;
pub mod sched;
pub mod splice;

/// A data plane: makes the kernel (or a proxy) carry what [`nft::Desired`]
/// says. `apply` is idempotent — the same desired state twice changes
/// nothing the second time — and restart-safe: its first call of a run
/// replaces whatever a previous run of ours left. `clear` removes all of
/// ours (the daemon stops).
pub trait DataPlane {
    fn name(&self) -> &'static str;
    /// Reconciles; true if anything was changed.
    fn apply(&mut self, desired: &nft::Desired) -> Result<bool, String>;
    fn clear(&mut self) -> Result<(), String>;
    /// What it counts per real server: (virtual server, real server, open
    /// connections, bytes); nothing for planes the kernel counts for.
    fn counters(&self) -> Vec<(std::net::SocketAddr, std::net::SocketAddr, u32, u64)> {
        Vec::new()
    }
    /// The proxy's connection caps and refusals; `None` for the kernel's
    /// planes.
    fn admission(&self) -> Option<proxy::Admission> {
        None
    }
    /// The plane itself, for a driver that owns it to reach settings of
    /// its own type (a reload); `None` where there are none.
    fn as_any_mut(&mut self) -> Option<&mut dyn std::any::Any> {
        None
    }
}
