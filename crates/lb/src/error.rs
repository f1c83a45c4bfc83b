//! Why a data plane could not do what it was asked.

use std::net::SocketAddr;

/// A data plane's failure, in words an operator can act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "this kernel has no IPVS (/proc/net/ip_vs is absent; `modprobe ip_vs` loads it where it is built)"
    )]
    NoIpvs,
    #[error("generic netlink: {0}")]
    Netlink(#[source] std::io::Error),
    #[error("the kernel has no IPVS family (error {0})")]
    NoIpvsFamily(i32),
    #[error("IPVS: {0}")]
    Ipvs(#[source] std::io::Error),
    #[error("IPVS refused command {cmd}: {why}")]
    IpvsRefused {
        cmd: u8,
        #[source]
        why: std::io::Error,
    },
    #[error("IPVS sent no answer within {0:?}")]
    IpvsSilent(std::time::Duration),
    #[error("IPVS refused command {0}: no acknowledgement")]
    IpvsNoAck(u8),
    #[error("IPVS refused to list its table: {0}")]
    IpvsList(#[source] std::io::Error),
    #[error("cannot run nft: {0}")]
    NftSpawn(#[source] std::io::Error),
    #[error("nft: {0}")]
    Nft(#[source] std::io::Error),
    #[error("nft refused the transaction: {0}")]
    NftRefused(String),
    #[error("proxy worker: {0}")]
    ProxyWorker(#[source] std::io::Error),
    #[error("the proxy is stopped")]
    ProxyStopped,
    #[error("proxy: cannot listen on {proto} {addr}: {source}")]
    Listen {
        proto: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// Several services failed in one apply (the others were carried).
    #[error("{}", join(.0))]
    Several(Vec<Error>),
}

fn join(errors: &[Error]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
