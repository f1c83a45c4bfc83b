//! `PING_CHECK`: one ICMP (IPv4) or ICMPv6 echo request on a raw socket,
//! waited for through tokio (`AsyncFd`). A reply counts only if it comes
//! from the target (the address `recvfrom` reports, and for IPv4 the
//! header's source too) and echoes our random identifier, our sequence
//! number and our random 16-byte nonce: a host that can send us packets
//! but does not see our requests cannot make a dead target look alive.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU16, Ordering};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;

use crate::Reason;

/// Sequence numbers, so concurrent checks never take each other's reply.
static SEQ: AtomicU16 = AtomicU16::new(1);

/// The bytes of the payload that are our marker, before the nonce.
const MARKER: &[u8] = b"keepalived-rs";

/// The nonce's length.
pub const NONCE_LEN: usize = 16;

/// The Internet checksum of `data`.
pub fn checksum(data: &[u8]) -> u16 {
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

/// What makes one echo request ours: a random identifier, a sequence
/// number and a random nonce carried in the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub id: u16,
    pub seq: u16,
    pub nonce: [u8; NONCE_LEN],
}

impl Probe {
    /// A probe with a fresh random identifier and nonce.
    pub fn new() -> Result<Self, Reason> {
        let mut r = [0u8; 2 + NONCE_LEN];
        getrandom::fill(&mut r).map_err(|e| format!("no random bytes for the echo: {e}"))?;
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&r[2..]);
        Ok(Self {
            id: u16::from_be_bytes([r[0], r[1]]),
            seq: SEQ.fetch_add(1, Ordering::Relaxed),
            nonce,
        })
    }

    /// The payload the reply must echo: our marker, then the nonce.
    fn payload(&self) -> Vec<u8> {
        let mut p = MARKER.to_vec();
        p.extend_from_slice(&self.nonce);
        p
    }

    /// The echo request: type 8 (ICMP) or 128 (ICMPv6), our id and
    /// sequence, the payload. ICMPv6's checksum is the kernel's.
    pub fn request(&self, v6: bool) -> Vec<u8> {
        let mut p = vec![if v6 { 128 } else { 8 }, 0, 0, 0];
        p.extend_from_slice(&self.id.to_be_bytes());
        p.extend_from_slice(&self.seq.to_be_bytes());
        p.extend_from_slice(&self.payload());
        if !v6 {
            let sum = checksum(&p);
            p[2..4].copy_from_slice(&sum.to_be_bytes());
        }
        p
    }

    /// Whether `reply`, received from `from`, answers this probe sent to
    /// `target`.
    pub fn answered_by(&self, reply: &EchoReply<'_>, from: IpAddr, target: IpAddr) -> bool {
        from == target
            && reply.source.is_none_or(|s| s == target)
            && reply.id == self.id
            && reply.seq == self.seq
            && reply.payload == self.payload().as_slice()
    }
}

/// An echo reply, as read off a raw socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EchoReply<'a> {
    /// The IPv4 header's source (a raw ICMPv6 socket gives no header).
    pub source: Option<IpAddr>,
    pub id: u16,
    pub seq: u16,
    /// The echoed data: a sub-slice of the packet.
    pub payload: &'a [u8],
}

/// Reads `packet` (as a raw socket gives it: with the IPv4 header, without
/// an IPv6 one) as an echo reply: type 0 (ICMP, with a checksum that
/// checks; the kernel hands raw sockets packets before checking it) or 129
/// (ICMPv6, checked by the kernel). Anything else is `None`.
pub fn parse_reply(v6: bool, packet: &[u8]) -> Option<EchoReply<'_>> {
    let (source, icmp) = if v6 {
        (None, packet)
    } else {
        let first = *packet.first()?;
        let ihl = usize::from(first & 0x0f) * 4;
        if first >> 4 != 4 || ihl < 20 || packet.get(9) != Some(&1) {
            return None;
        }
        let src: [u8; 4] = packet.get(12..16)?.try_into().ok()?;
        // The datagram's own length bounds the ICMP message.
        let total = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
        let icmp = packet.get(ihl..total.min(packet.len()))?;
        if checksum(icmp) != 0 {
            return None;
        }
        (Some(IpAddr::from(src)), icmp)
    };
    if icmp.len() < 8 || icmp[0] != if v6 { 129 } else { 0 } || icmp[1] != 0 {
        return None;
    }
    Some(EchoReply {
        source,
        id: u16::from_be_bytes([icmp[4], icmp[5]]),
        seq: u16::from_be_bytes([icmp[6], icmp[7]]),
        payload: &icmp[8..],
    })
}

/// Sends one echo request to `target` and waits (without a deadline: the
/// caller bounds the check) for its reply.
pub async fn echo(target: IpAddr) -> Result<(), Reason> {
    let v6 = target.is_ipv6();
    let (domain, proto) = if v6 {
        (Domain::IPV6, Protocol::ICMPV6)
    } else {
        (Domain::IPV4, Protocol::ICMPV4)
    };
    let socket =
        Socket::new(domain, Type::RAW, Some(proto)).map_err(|e| format!("ICMP socket: {e}"))?;
    socket.set_nonblocking(true).map_err(|e| e.to_string())?;
    let probe = Probe::new()?;
    let to = SockAddr::from(SocketAddr::new(target, 0));
    socket
        .send_to(&probe.request(v6), &to)
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
        let got = guard.try_io(|s| {
            nix::sys::socket::recvfrom::<nix::sys::socket::SockaddrStorage>(
                s.get_ref().as_raw_fd(),
                &mut buf,
            )
            .map_err(std::io::Error::from)
        });
        match got {
            Ok(Ok((n, from))) => {
                // Replies to other checks (and anyone's ICMP) reach every
                // raw socket: keep only the answer to this probe.
                let from = from.as_ref().and_then(source_of);
                let reply = buf.get(..n).and_then(|p| parse_reply(v6, p));
                if let (Some(reply), Some(from)) = (reply, from) {
                    if probe.answered_by(&reply, from, target) {
                        return Ok(());
                    }
                }
            }
            Ok(Err(e)) => return Err(e.to_string().into()),
            Err(_would_block) => {}
        }
    }
}

/// The address `recvfrom` said a datagram came from.
fn source_of(a: &nix::sys::socket::SockaddrStorage) -> Option<IpAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(IpAddr::V4(v4.ip()));
    }
    a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const PROBE: Probe = Probe {
        id: 0x1234,
        seq: 7,
        nonce: [0xa5; NONCE_LEN],
    };

    /// The reply a target would send to `probe`: the request turned round,
    /// behind an IPv4 header from `src` (for IPv4).
    fn reply_to(probe: &Probe, v6: bool, src: [u8; 4]) -> Vec<u8> {
        let mut icmp = probe.request(v6);
        icmp[0] = if v6 { 129 } else { 0 };
        if v6 {
            return icmp;
        }
        icmp[2..4].copy_from_slice(&[0, 0]);
        let sum = checksum(&icmp);
        icmp[2..4].copy_from_slice(&sum.to_be_bytes());
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0];
        let total = u16::try_from(20 + icmp.len()).unwrap();
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&src);
        p.extend_from_slice(&[127, 0, 0, 1]);
        p.extend_from_slice(&icmp);
        p
    }

    #[test]
    fn requests_and_replies() {
        let r = PROBE.request(false);
        assert_eq!(checksum(&r), 0, "a request's checksum checks");
        let reply = reply_to(&PROBE, false, [127, 0, 0, 1]);
        let target: IpAddr = "127.0.0.1".parse().unwrap();
        let parsed = parse_reply(false, &reply).unwrap();
        assert_eq!(parsed.source, Some(target));
        assert!(PROBE.answered_by(&parsed, target, target));
        let other_seq = Probe { seq: 8, ..PROBE };
        assert!(!other_seq.answered_by(&parsed, target, target));
        assert_eq!(
            parse_reply(false, &[0x45]),
            None,
            "short packets are not replies"
        );
        assert_eq!(parse_reply(false, &r), None, "a request is not a reply");
    }

    /// Issue 26 item 8: a reply from another host (ICMPv6: `recvfrom`'s
    /// address; IPv4: also the header's) or without our nonce does not make
    /// a dead target look alive.
    #[test]
    fn a_forged_reply_does_not_make_a_dead_target_alive() {
        let target6: IpAddr = "2001:db8::99".parse().unwrap();
        let forger6: IpAddr = "2001:db8::66".parse().unwrap();
        let forged = reply_to(&PROBE, true, [0; 4]);
        let parsed = parse_reply(true, &forged).unwrap();
        assert!(
            PROBE.answered_by(&parsed, target6, target6),
            "the real one counts"
        );
        assert!(
            !PROBE.answered_by(&parsed, forger6, target6),
            "an ICMPv6 reply from another address was accepted"
        );
        // The right id and sequence, a guessed nonce.
        let guessed = Probe {
            nonce: [0; NONCE_LEN],
            ..PROBE
        };
        let forged = reply_to(&guessed, true, [0; 4]);
        let parsed = parse_reply(true, &forged).unwrap();
        assert!(
            !PROBE.answered_by(&parsed, target6, target6),
            "a reply with the wrong nonce was accepted"
        );
        // IPv4: from another address, or claiming the target's in the header.
        let target4: IpAddr = "198.51.100.99".parse().unwrap();
        let forger4: IpAddr = "198.51.100.66".parse().unwrap();
        let forged = reply_to(&PROBE, false, [198, 51, 100, 66]);
        let parsed = parse_reply(false, &forged).unwrap();
        assert!(!PROBE.answered_by(&parsed, forger4, target4));
        assert!(!PROBE.answered_by(&parsed, target4, target4));
        let forged = reply_to(&guessed, false, [198, 51, 100, 99]);
        let parsed = parse_reply(false, &forged).unwrap();
        assert!(
            !PROBE.answered_by(&parsed, target4, target4),
            "wrong nonce (IPv4)"
        );
        // A corrupted IPv4 reply is not read at all.
        let mut bad = reply_to(&PROBE, false, [198, 51, 100, 99]);
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(
            parse_reply(false, &bad),
            None,
            "a bad checksum is not a reply"
        );
    }

    #[test]
    fn probes_differ() {
        let (a, b) = (Probe::new().unwrap(), Probe::new().unwrap());
        assert_ne!(a.nonce, b.nonce, "the nonce is random");
        assert_ne!(a.seq, b.seq);
    }

    #[test]
    fn pings_loopback_when_root() {
        if !nix::unistd::geteuid().is_root() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "pings_loopback_when_root needs root under CI"
            );
            netlab::skipped("pings_loopback_when_root", "raw sockets need root");
            return;
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        rt.block_on(async {
            for target in ["127.0.0.1", "::1"] {
                let r = tokio::time::timeout(
                    std::time::Duration::from_secs(2),
                    echo(target.parse().unwrap()),
                )
                .await;
                assert!(matches!(r, Ok(Ok(()))), "{target}: {r:?}");
            }
        });
    }
}
