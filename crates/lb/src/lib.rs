//! Load balancing: IPVS's scheduling algorithms (pure, [`sched`]) and the
//! data planes that carry a virtual server's traffic to its real servers
//! ([`nft`]: the nftables kernel data plane; [`ipvs`]: IPVS's generic netlink
//! messages, for kernels that have it).

pub mod ipvs;
pub mod nft;
pub mod sched;
