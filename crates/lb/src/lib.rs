//! Load balancing: IPVS's scheduling algorithms (pure, [`sched`]), the
//! service model every plane carries ([`model`]), and the data planes —
//! [`nft`] (nftables), [`ipvs`] (the kernel's IPVS over generic netlink)
//! and [`proxy`] (the L4 proxy) — each owning its I/O behind one trait,
//! [`DataPlane`], opened by [`open`].

pub mod error;
pub mod flows;
pub mod ipvs;
pub mod model;
pub mod nft;
pub mod proxy;
pub mod proxy_protocol;
pub mod sched;
pub mod splice;

pub use error::Error;
pub use model::{Carrier, Desired};

/// What one plane counts of one real server: its virtual server, the
/// server, open connections and bytes relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Counter {
    pub virtual_server: std::net::SocketAddr,
    pub real_server: std::net::SocketAddr,
    pub connections: u32,
    pub bytes: u64,
}

/// A data plane: makes the kernel (or a proxy) carry what [`Desired`]
/// says, reading the parts of the model it acts on. `apply` is idempotent
/// — the same desired state twice changes nothing the second time — and
/// restart-safe: its first call of a run replaces whatever a previous run
/// of ours left. `clear` removes all of ours (the daemon stops).
pub trait DataPlane: Send {
    fn name(&self) -> &'static str;
    /// Reconciles; true if anything was changed.
    fn apply(&mut self, desired: &Desired) -> Result<bool, Error>;
    fn clear(&mut self) -> Result<(), Error>;
    /// What it counts per real server; nothing for planes the kernel
    /// counts for.
    fn counters(&self) -> Vec<Counter> {
        Vec::new()
    }
    /// The proxy's connection caps and refusals; `None` for the kernel's
    /// planes.
    fn admission(&self) -> Option<proxy::Admission> {
        None
    }
}

/// Opens the plane `carrier` names.
pub fn open(carrier: Carrier) -> Result<Box<dyn DataPlane>, Error> {
    Ok(match carrier {
        Carrier::Proxy => Box::new(proxy::Plane::new()?),
        Carrier::Ipvs => Box::new(ipvs::Plane::open()?),
        Carrier::Nftables => Box::new(nft::Nft::default()),
    })
}
