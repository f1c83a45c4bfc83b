//! Helpers the daemon's integration tests share (each test file that
//! needs them says `mod common;`; not every file uses every helper).

#![allow(dead_code)]

/// The daemon under test: this build's, or another one
/// (`KEEPALIVED_RS_BIN`, e.g. an older build, to see a test fail there).
pub fn bin() -> String {
    std::env::var("KEEPALIVED_RS_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_keepalived-rs").into())
}

/// Which daemon a test runs: ours or keepalived (Debian's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Daemon {
    Ours,
    Keepalived,
}

impl Daemon {
    /// A short tag for file names: `rs`, `ka`.
    pub fn name(self) -> &'static str {
        match self {
            Daemon::Ours => "rs",
            Daemon::Keepalived => "ka",
        }
    }
}

/// The text of a caught panic (`std::panic::catch_unwind`'s error).
pub fn panic_text(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

/// A VRRPv2 advert for `vrid` at `priority` naming `addrs`, as an IPv4
/// packet with our own header from 198.51.100.99 to 224.0.0.18 (TTL 255).
pub fn forged_advert(vrid: u8, priority: u8, addrs: &[&str]) -> Vec<u8> {
    let payload = vrrp::Advert {
        version: vrrp::Version::V2,
        vrid,
        priority,
        interval: 1,
        auth: vrrp::Auth::None,
        addrs: addrs
            .iter()
            .map(|a| a.parse().expect("a test address"))
            .collect(),
    }
    .emit(None);
    let total = u16::try_from(20 + payload.len()).expect("a short advert");
    let mut p = vec![0x45, 0xc0];
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0, 255, 112, 0, 0]);
    p.extend_from_slice(&[198, 51, 100, 99, 224, 0, 0, 18]);
    p.extend_from_slice(&payload);
    p
}

/// A raw protocol-112 socket with our own IP header, bound to eth0, and
/// VRRP's multicast group as its destination (call inside a namespace).
pub fn advert_socket() -> std::io::Result<(socket2::Socket, socket2::SockAddr)> {
    let s = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::RAW,
        Some(socket2::Protocol::from(112)),
    )?;
    s.set_header_included_v4(true)?;
    s.bind_device(Some(b"eth0"))?;
    let to = std::net::SocketAddrV4::new(std::net::Ipv4Addr::new(224, 0, 0, 18), 0).into();
    Ok((s, to))
}
