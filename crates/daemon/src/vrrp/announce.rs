//! Gratuitous ARP on takeover, so switches and hosts learn at once where the
//! VIP now lives. Frames go out through an AF_PACKET channel on the interface.
//! (Unsolicited neighbour advertisements for IPv6 come with IPv6 support.)

use std::net::Ipv4Addr;

use pnet_datalink::{Channel, DataLinkSender, MacAddr, NetworkInterface};

const ETH_P_ALL: u16 = 0x0003;
/// BPF `ret #0`: accept nothing.
const BPF_RET_K: u16 = 0x06;

/// A gratuitous ARP request for `vip` from `mac`: broadcast, sender and
/// target protocol address both the VIP (what keepalived sends).
pub fn garp_frame(mac: [u8; 6], vip: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&[0xff; 6]); // destination: broadcast
    f.extend_from_slice(&mac); // source
    f.extend_from_slice(&[0x08, 0x06]); // ARP
    f.extend_from_slice(&[0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01]); // Ethernet/IPv4, request
    f.extend_from_slice(&mac);
    f.extend_from_slice(&vip.octets());
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&vip.octets());
    f
}

/// Sends gratuitous ARPs on one interface.
pub struct Announcer {
    tx: Box<dyn DataLinkSender>,
    mac: [u8; 6],
}

impl std::fmt::Debug for Announcer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Announcer({})", MacAddr::from(self.mac))
    }
}

impl Announcer {
    /// Opens the channel on `ifname`.
    pub fn open(ifname: &str) -> std::io::Result<Self> {
        let iface: NetworkInterface = pnet_datalink::interfaces()
            .into_iter()
            .find(|i| i.name == ifname)
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("no interface {ifname}"),
                )
            })?;
        let mac = iface.mac.map(<[u8; 6]>::from).unwrap_or_default();
        // The channel's socket would get a copy of every frame on the
        // interface (ETH_P_ALL); a filter that drops everything makes that
        // copy cheap, since we only ever send on it.
        let socket = socket2::Socket::new(
            socket2::Domain::PACKET,
            socket2::Type::RAW,
            Some(socket2::Protocol::from(i32::from(ETH_P_ALL.to_be()))),
        )?;
        socket.attach_filter(&[socket2::SockFilter::new(BPF_RET_K, 0, 0, 0)])?;
        let config = pnet_datalink::Config {
            promiscuous: false,
            read_buffer_size: 4096,
            socket_fd: Some(std::os::fd::IntoRawFd::into_raw_fd(socket)),
            ..pnet_datalink::Config::default()
        };
        match pnet_datalink::channel(&iface, config)? {
            Channel::Ethernet(tx, _rx) => Ok(Self { tx, mac }),
            _ => Err(std::io::Error::other("not an Ethernet channel")),
        }
    }

    /// `repeat` gratuitous ARPs for each address, back to back.
    pub fn garp(&mut self, vips: &[Ipv4Addr], repeat: u32) -> std::io::Result<()> {
        for _ in 0..repeat {
            for vip in vips {
                let frame = garp_frame(self.mac, *vip);
                if let Some(r) = self.tx.send_to(&frame, None) {
                    r?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garp_frame_layout() {
        let mac = [0x02, 0, 0, 0, 0, 0x22];
        let f = garp_frame(mac, Ipv4Addr::new(198, 51, 100, 250));
        assert_eq!(f.len(), 42);
        assert_eq!(&f[0..6], &[0xff; 6]);
        assert_eq!(&f[6..12], &mac);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(&f[20..22], &[0x00, 0x01], "request");
        assert_eq!(&f[22..28], &mac, "sender hardware address");
        assert_eq!(&f[28..32], &[198, 51, 100, 250], "sender protocol address");
        assert_eq!(&f[38..42], &[198, 51, 100, 250], "target protocol address");
    }
}
