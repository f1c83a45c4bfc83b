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

    /// Its name in a benchmark's table.
    pub fn label(self) -> &'static str {
        match self {
            Daemon::Ours => "keepalived-rs",
            Daemon::Keepalived => "keepalived 2.2.7",
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

/// A `vrrp_instance` block as the tests write them: `VI_1`, VRID 51,
/// BACKUP on eth0, VRRPv3 at 1 s, priority 100, unless told otherwise.
#[derive(Debug, Clone)]
pub struct Instance {
    pub name: String,
    pub state: String,
    pub interface: String,
    pub vrid: u8,
    pub priority: u8,
    pub version: u8,
    /// `advert_int` as written (`1`, `0.1`).
    pub advert: String,
    /// Each line of `virtual_ipaddress` (`198.51.100.250/24`).
    pub vips: Vec<String>,
    /// More lines inside the block, as written.
    pub extra: String,
}

impl Default for Instance {
    fn default() -> Self {
        Self {
            name: "VI_1".into(),
            state: "BACKUP".into(),
            interface: "eth0".into(),
            vrid: 51,
            priority: 100,
            version: 3,
            advert: "1".into(),
            vips: Vec::new(),
            extra: String::new(),
        }
    }
}

impl Instance {
    /// `advert_int` of `ms` milliseconds (whole seconds for VRRPv2).
    pub fn advert_ms(mut self, ms: u64) -> Self {
        self.advert = if self.version == 2 {
            (ms / 1000).to_string()
        } else {
            #[allow(clippy::cast_precision_loss)]
            let secs = ms as f64 / 1000.0;
            secs.to_string()
        };
        self
    }

    /// Its text.
    pub fn text(&self) -> String {
        let vips = self.vips.iter().fold(String::new(), |mut out, v| {
            out.push(' ');
            out.push_str(v);
            out.push('\n');
            out
        });
        format!(
            "vrrp_instance {} {{\n state {}\n interface {}\n virtual_router_id {}\n priority {}\n version {}\n advert_int {}\n virtual_ipaddress {{\n{vips} }}\n{}}}\n",
            self.name,
            self.state,
            self.interface,
            self.vrid,
            self.priority,
            self.version,
            self.advert,
            self.extra
        )
    }
}
