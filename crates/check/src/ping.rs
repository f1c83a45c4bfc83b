//! `PING_CHECK`: one ICMP (IPv4) or ICMPv6 echo request on a raw socket,
//! waited for through tokio (`AsyncFd`), the reply recognised by its
//! source, identifier and sequence number.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;

/// Sequence numbers, so concurrent checks never take each other's reply.
static SEQ: AtomicU16 = AtomicU16::new(1);

/// The Internet checksum of `data`.
fn checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in data.chunks(2) {
        let word = u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !u16::try_from(sum).unwrap_or(0xffff)
}

/// An echo request: type 8 (ICMP) or 128 (ICMPv6), our id and sequence,
/// a short payload. ICMPv6's checksum is the kernel's.
fn request(v6: bool, id: u16, seq: u16) -> Vec<u8> {
    let mut p = vec![if v6 { 128 } else { 8 }, 0, 0, 0];
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(b"keepalived-rs");
    if !v6 {
        let sum = checksum(&p);
        p[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    p
}

/// Whether `packet` (as a raw socket gives it: with the IPv4 header, not
/// with an IPv6 one) is the reply to our `id`/`seq`.
fn is_reply(v6: bool, packet: &[u8], id: u16, seq: u16) -> bool {
    let icmp = if v6 {
        packet
    } else {
        let ihl = packet.first().map_or(0, |b| usize::from(b & 0x0f) * 4);
        packet.get(ihl..).unwrap_or_default()
    };
    icmp.len() >= 8
        && icmp[0] == if v6 { 129 } else { 0 }
        && icmp[4..6] == id.to_be_bytes()
        && icmp[6..8] == seq.to_be_bytes()
}

/// Sends one echo request to `target` and waits (without a deadline: the
/// caller bounds the check) for its reply.
pub async fn echo(target: IpAddr) -> Result<(), String> {
    let v6 = target.is_ipv6();
    let (domain, proto) = if v6 {
        (Domain::IPV6, Protocol::ICMPV6)
    } else {
        (Domain::IPV4, Protocol::ICMPV4)
    };
    let socket =
        Socket::new(domain, Type::RAW, Some(proto)).map_err(|e| format!("ICMP socket: {e}"))?;
    socket.set_nonblocking(true).map_err(|e| e.to_string())?;
    let id = u16::try_from(std::process::id() & 0xffff).unwrap_or(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let to = SockAddr::from(SocketAddr::new(target, 0));
    socket
        .send_to(&request(v6, id, seq), &to)
        .map_err(|e| format!("sending the echo request: {e}"))?;
    // tokio deprecates `AsyncFd::new` because a wrapped value could close
    // its fd while registered; `socket2::Socket` owns its fd and is only
    // dropped with the `AsyncFd`, so that cannot happen here (and the
    // replacement, `register`, is `unsafe`, which this workspace forbids).
    #[allow(deprecated)]
    let fd = AsyncFd::new(socket).map_err(|e| e.to_string())?;
    let mut buf = [0u8; 1500];
    loop {
        let mut guard = fd.readable().await.map_err(|e| e.to_string())?;
        match guard.try_io(|s| std::io::Read::read(&mut s.get_ref(), &mut buf)) {
            Ok(Ok(n)) => {
                // Replies to other checks reach every raw socket: keep ours.
                if is_reply(v6, &buf[..n], id, seq) && from_target(&buf[..n], v6, target) {
                    return Ok(());
                }
            }
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_would_block) => {}
        }
    }
}

/// An IPv4 reply's source is in its header; for ICMPv6 the identifier and
/// sequence must do (the raw socket gives no header).
fn from_target(packet: &[u8], v6: bool, target: IpAddr) -> bool {
    match (v6, target) {
        (false, IpAddr::V4(t)) => packet.get(12..16) == Some(&t.octets()[..]),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_replies() {
        let r = request(false, 0x1234, 7);
        assert_eq!(checksum(&r), 0, "a request's checksum checks");
        let mut reply = vec![0x45; 20];
        reply[12..16].copy_from_slice(&[127, 0, 0, 1]);
        reply.extend_from_slice(&r);
        reply[20] = 0; // echo reply
        assert!(is_reply(false, &reply, 0x1234, 7));
        assert!(!is_reply(false, &reply, 0x1234, 8));
        assert!(from_target(
            &reply,
            false,
            "127.0.0.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
        ));
        assert!(
            !is_reply(false, &[0x45], 1, 1),
            "short packets are not replies"
        );
    }

    #[test]
    fn pings_loopback_when_root() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIPPED pings_loopback_when_root: raw sockets need root");
            return;
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        rt.block_on(async {
            let r = tokio::time::timeout(
                std::time::Duration::from_secs(2),
                echo("127.0.0.1".parse().unwrap_or(IpAddr::from([127, 0, 0, 1]))),
            )
            .await;
            assert!(matches!(r, Ok(Ok(()))), "{r:?}");
        });
    }
}
