//! The PROXY protocol header (HAProxy's, versions 1 and 2) that the proxy
//! can send a real server first on each connection, so that the server
//! learns the client's address and the address it connected to. Pure: the
//! header is written into a caller's buffer, nothing is allocated.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};

/// Which version to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// The text line: `PROXY TCP4 SRC DST SPORT DPORT\r\n`.
    V1,
    /// The binary header.
    V2,
}

/// The longest header written (a v1 line is at most 107 bytes).
pub const MAX: usize = 108;

/// v2's 12-byte signature.
const SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];

/// Both addresses of one family (an IPv4-mapped IPv6 address counts as
/// IPv4), or none when they differ.
fn family(src: SocketAddr, dst: SocketAddr) -> Option<(IpAddr, IpAddr)> {
    let canon = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    };
    match (canon(src.ip()), canon(dst.ip())) {
        (s @ IpAddr::V4(_), d @ IpAddr::V4(_)) | (s @ IpAddr::V6(_), d @ IpAddr::V6(_)) => {
            Some((s, d))
        }
        _ => None,
    }
}

/// Writes the header for a TCP connection from `src` to `dst` into `out`;
/// its length.
pub fn write(version: Version, src: SocketAddr, dst: SocketAddr, out: &mut [u8; MAX]) -> usize {
    let fam = family(src, dst);
    match version {
        Version::V1 => {
            let mut w = &mut out[..];
            let room = w.len();
            // The buffer is sized for the longest line: writes cannot fail.
            let _ = match fam {
                Some((s @ IpAddr::V4(_), d)) => {
                    write!(w, "PROXY TCP4 {s} {d} {} {}\r\n", src.port(), dst.port())
                }
                Some((s, d)) => write!(w, "PROXY TCP6 {s} {d} {} {}\r\n", src.port(), dst.port()),
                None => write!(w, "PROXY UNKNOWN\r\n"),
            };
            room - w.len()
        }
        Version::V2 => {
            out[..12].copy_from_slice(&SIGNATURE);
            // Version 2, command PROXY.
            out[12] = 0x21;
            let body: usize = match fam {
                Some((IpAddr::V4(s), IpAddr::V4(d))) => {
                    out[13] = 0x11; // TCP over IPv4
                    out[16..20].copy_from_slice(&s.octets());
                    out[20..24].copy_from_slice(&d.octets());
                    out[24..26].copy_from_slice(&src.port().to_be_bytes());
                    out[26..28].copy_from_slice(&dst.port().to_be_bytes());
                    12
                }
                Some((IpAddr::V6(s), IpAddr::V6(d))) => {
                    out[13] = 0x21; // TCP over IPv6
                    out[16..32].copy_from_slice(&s.octets());
                    out[32..48].copy_from_slice(&d.octets());
                    out[48..50].copy_from_slice(&src.port().to_be_bytes());
                    out[50..52].copy_from_slice(&dst.port().to_be_bytes());
                    36
                }
                _ => {
                    out[13] = 0x00; // unspecified: the receiver uses the socket's
                    0
                }
            };
            out[14..16].copy_from_slice(&u16::try_from(body).unwrap_or(0).to_be_bytes());
            16 + body
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn v1_lines_as_the_specification_writes_them() {
        let mut b = [0u8; MAX];
        let n = write(
            Version::V1,
            sa("203.0.113.100:56324"),
            sa("198.51.100.10:9527"),
            &mut b,
        );
        assert_eq!(
            &b[..n],
            b"PROXY TCP4 203.0.113.100 198.51.100.10 56324 9527\r\n"
        );
        let n = write(
            Version::V1,
            sa("[2001:db8::100]:4000"),
            sa("[2001:db8::10]:443"),
            &mut b,
        );
        assert_eq!(
            &b[..n],
            b"PROXY TCP6 2001:db8::100 2001:db8::10 4000 443\r\n"
        );
        // Mapped IPv4 on a dual-stack socket is written as IPv4.
        let n = write(
            Version::V1,
            sa("[::ffff:203.0.113.1]:1"),
            sa("198.51.100.10:2"),
            &mut b,
        );
        assert_eq!(&b[..n], b"PROXY TCP4 203.0.113.1 198.51.100.10 1 2\r\n");
        let n = write(
            Version::V1,
            sa("203.0.113.1:1"),
            sa("[2001:db8::1]:2"),
            &mut b,
        );
        assert_eq!(&b[..n], b"PROXY UNKNOWN\r\n");
        // The longest line fits.
        let n = write(
            Version::V1,
            sa("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"),
            sa("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe]:65535"),
            &mut b,
        );
        assert_eq!(n, 104);
        assert!(b[..n].ends_with(b" 65535 65535\r\n"));
    }

    #[test]
    fn v2_headers_byte_for_byte() {
        let mut b = [0u8; MAX];
        let n = write(
            Version::V2,
            sa("203.0.113.100:56324"),
            sa("198.51.100.10:9527"),
            &mut b,
        );
        assert_eq!(n, 28);
        assert_eq!(&b[..12], b"\r\n\r\n\0\r\nQUIT\n");
        assert_eq!(&b[12..16], &[0x21, 0x11, 0, 12]);
        assert_eq!(&b[16..20], &[203, 0, 113, 100]);
        assert_eq!(&b[20..24], &[198, 51, 100, 10]);
        assert_eq!(&b[24..28], &[0xDC, 0x04, 0x25, 0x37]);
        let n = write(
            Version::V2,
            sa("[2001:db8::100]:4000"),
            sa("[2001:db8::10]:443"),
            &mut b,
        );
        assert_eq!(n, 52);
        assert_eq!(&b[12..16], &[0x21, 0x21, 0, 36]);
        assert_eq!(&b[16..18], &[0x20, 0x01]);
        assert_eq!(&b[31], &0x00);
        assert_eq!(&b[47], &0x10);
        assert_eq!(&b[48..52], &[0x0F, 0xA0, 0x01, 0xBB]);
        let n = write(
            Version::V2,
            sa("203.0.113.1:1"),
            sa("[2001:db8::1]:2"),
            &mut b,
        );
        assert_eq!(n, 16);
        assert_eq!(&b[12..16], &[0x21, 0x00, 0, 0]);
    }
}
