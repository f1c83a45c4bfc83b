//! VRRP advertisements on the wire: VRRPv2 (RFC 3768) and VRRPv3 (RFC 9568),
//! IPv4 and IPv6.
//!
//! [`Packet`] is a view over bytes: after [`Packet::new_checked`] no accessor
//! can panic. [`Advert`] is the parsed, owned form: [`Advert::parse`] checks
//! everything a receiver must check about the bytes themselves, and
//! [`Advert::emit`] writes a packet with its checksum.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! |Version| Type  | Virtual Rtr ID|   Priority    | Count IPvX Addr|
//! v2: | Auth Type | Adver Int (s) |  v3: |(rsvd)| Max Adver Int (cs)|   Checksum   |
//! |                     IPvX Address(es) ...                       |
//! v2 only:                 Authentication Data (8 bytes)
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

/// IP protocol number of VRRP.
pub const PROTOCOL: u8 = 112;
/// The IPv4 multicast group adverts go to.
pub const MULTICAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// The IPv6 multicast group adverts go to.
pub const MULTICAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// The TTL / hop limit adverts are sent with and must arrive with.
pub const TTL: u8 = 255;
/// Length of the v2 authentication data.
pub const AUTH_LEN: usize = 8;

mod field {
    pub const VER_TYPE: usize = 0;
    pub const VRID: usize = 1;
    pub const PRIORITY: usize = 2;
    pub const COUNT: usize = 3;
    /// v2: auth type; v3: reserved (4 bits) + high 4 bits of the interval.
    pub const AUTH_OR_INT_HI: usize = 4;
    /// v2: interval in seconds; v3: low 8 bits of the interval.
    pub const INT_LO: usize = 5;
    pub const CHECKSUM: std::ops::Range<usize> = 6..8;
    pub const ADDRS: usize = 8;
}

/// Length of the fixed header.
pub const HEADER_LEN: usize = field::ADDRS;

/// Why bytes are not a valid advertisement. Each maps to a receive counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WireError {
    /// Shorter than the header, or than its address list (and auth data).
    Truncated,
    /// Not version 2 or 3.
    Version,
    /// Not type 1 (advertisement).
    Type,
    /// The checksum does not match.
    Checksum,
    /// Version 2 carried over IPv6.
    Family,
    /// Longer than its address list says (and not by an expected trailer).
    TooLong,
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WireError::Truncated => "packet too short for its address count",
            WireError::Version => "unknown VRRP version",
            WireError::Type => "not an advertisement",
            WireError::Checksum => "bad checksum",
            WireError::Family => "VRRPv2 over IPv6",
            WireError::TooLong => "packet longer than its address count",
        })
    }
}

impl std::error::Error for WireError {}

/// VRRP protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Version {
    V2,
    V3,
}

impl Version {
    pub fn number(self) -> u8 {
        match self {
            Version::V2 => 2,
            Version::V3 => 3,
        }
    }
}

/// The address family of the addresses (and of the carrying IP packet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(addr: &IpAddr) -> Self {
        if addr.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }

    /// Bytes per address.
    pub fn addr_len(self) -> usize {
        match self {
            Family::V4 => 4,
            Family::V6 => 16,
        }
    }
}

/// A view over the bytes of an advertisement (without the IP header).
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps bytes without checking them.
    pub fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps bytes after [`Packet::check_len`] for `family`.
    pub fn new_checked(buffer: T, family: Family) -> Result<Self, WireError> {
        let p = Self::new_unchecked(buffer);
        p.check_len(family)?;
        Ok(p)
    }

    /// Checks the buffer holds the header, the version's fields, the address
    /// list and (v2) the authentication data; after this no accessor panics.
    pub fn check_len(&self, family: Family) -> Result<(), WireError> {
        let data = self.buffer.as_ref();
        if data.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let version = match data[field::VER_TYPE] >> 4 {
            2 => Version::V2,
            3 => Version::V3,
            _ => return Err(WireError::Version),
        };
        if version == Version::V2 && family == Family::V6 {
            return Err(WireError::Family);
        }
        if data.len() < self.total_len(version, family) {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    fn total_len(&self, version: Version, family: Family) -> usize {
        let count = usize::from(self.buffer.as_ref()[field::COUNT]);
        let auth = if version == Version::V2 { AUTH_LEN } else { 0 };
        HEADER_LEN + count * family.addr_len() + auth
    }

    pub fn version_number(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TYPE] >> 4
    }

    pub fn kind(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TYPE] & 0x0f
    }

    pub fn vrid(&self) -> u8 {
        self.buffer.as_ref()[field::VRID]
    }

    pub fn priority(&self) -> u8 {
        self.buffer.as_ref()[field::PRIORITY]
    }

    pub fn count(&self) -> u8 {
        self.buffer.as_ref()[field::COUNT]
    }

    /// v2 only: the authentication type.
    pub fn auth_type(&self) -> u8 {
        self.buffer.as_ref()[field::AUTH_OR_INT_HI]
    }

    /// The advertisement interval: seconds (v2) or centiseconds (v3, 12 bits).
    pub fn interval(&self) -> u16 {
        let d = self.buffer.as_ref();
        if self.version_number() == 2 {
            u16::from(d[field::INT_LO])
        } else {
            (u16::from(d[field::AUTH_OR_INT_HI] & 0x0f) << 8) | u16::from(d[field::INT_LO])
        }
    }

    pub fn checksum(&self) -> u16 {
        let d = self.buffer.as_ref();
        u16::from_be_bytes([d[field::CHECKSUM.start], d[field::CHECKSUM.start + 1]])
    }

    /// Address `i` of the list.
    pub fn addr(&self, i: usize, family: Family) -> IpAddr {
        let d = self.buffer.as_ref();
        let at = field::ADDRS + i * family.addr_len();
        match family {
            Family::V4 => {
                let b: [u8; 4] = [d[at], d[at + 1], d[at + 2], d[at + 3]];
                IpAddr::V4(Ipv4Addr::from(b))
            }
            Family::V6 => {
                let mut b = [0u8; 16];
                b.copy_from_slice(&d[at..at + 16]);
                IpAddr::V6(Ipv6Addr::from(b))
            }
        }
    }

    /// v2 only: the 8 bytes after the address list.
    pub fn auth_data(&self, family: Family) -> [u8; AUTH_LEN] {
        let d = self.buffer.as_ref();
        let at = field::ADDRS + usize::from(self.count()) * family.addr_len();
        let mut b = [0u8; AUTH_LEN];
        b.copy_from_slice(&d[at..at + AUTH_LEN]);
        b
    }

    /// The bytes of the VRRP message proper (header, addresses, auth data).
    pub fn message(&self, family: Family) -> &[u8] {
        let version = if self.version_number() == 2 {
            Version::V2
        } else {
            Version::V3
        };
        &self.buffer.as_ref()[..self.total_len(version, family)]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn set_checksum(&mut self, value: u16) {
        let d = self.buffer.as_mut();
        d[field::CHECKSUM].copy_from_slice(&value.to_be_bytes());
    }
}

/// Authentication of a VRRPv2 advert.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Auth {
    None,
    /// Type 1: an 8-byte password, zero-padded.
    Pass([u8; AUTH_LEN]),
    /// Type 2 (IPsec AH, deprecated; keepalived still speaks it).
    Ah,
    /// Any other type number.
    Other(u8),
}

impl Auth {
    /// A simple password as keepalived takes it (at most 8 bytes; longer is cut).
    pub fn pass(password: &str) -> Self {
        let mut b = [0u8; AUTH_LEN];
        for (d, s) in b.iter_mut().zip(password.bytes()) {
            *d = s;
        }
        Auth::Pass(b)
    }

    fn type_number(&self) -> u8 {
        match self {
            Auth::None => 0,
            Auth::Pass(_) => 1,
            Auth::Ah => 2,
            Auth::Other(n) => *n,
        }
    }
}

/// The source and destination of the IP packet, for the v3 checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PseudoHeader {
    pub src: IpAddr,
    pub dst: IpAddr,
}

/// A parsed advertisement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Advert {
    pub version: Version,
    pub vrid: u8,
    pub priority: u8,
    /// Seconds (v2) or centiseconds (v3).
    pub interval: u16,
    pub auth: Auth,
    pub addrs: Vec<IpAddr>,
}

impl Advert {
    /// Parses and checks an advertisement carried in a `family` packet.
    /// `pseudo` is needed for VRRPv3 checksums; `v3_checksum_as_v2` accepts
    /// the checksum old keepalived versions computed without it.
    pub fn parse(
        bytes: &[u8],
        family: Family,
        pseudo: Option<PseudoHeader>,
        v3_checksum_as_v2: bool,
    ) -> Result<Self, WireError> {
        let mut advert = Self::empty();
        Self::parse_into(bytes, family, pseudo, v3_checksum_as_v2, &mut advert)?;
        Ok(advert)
    }

    /// An advert with no addresses, to parse into.
    pub fn empty() -> Self {
        Self {
            version: Version::V3,
            vrid: 0,
            priority: 0,
            interval: 0,
            auth: Auth::None,
            addrs: Vec::new(),
        }
    }

    /// [`Advert::parse`] into `out`, reusing its address list (no
    /// allocation once it has room); `out` is unspecified on error.
    pub fn parse_into(
        bytes: &[u8],
        family: Family,
        pseudo: Option<PseudoHeader>,
        v3_checksum_as_v2: bool,
        out: &mut Self,
    ) -> Result<(), WireError> {
        let p = Packet::new_checked(bytes, family)?;
        if p.kind() != 1 {
            return Err(WireError::Type);
        }
        let version = if p.version_number() == 2 {
            Version::V2
        } else {
            Version::V3
        };
        let message = p.message(family);
        let ok = match (version, pseudo) {
            (Version::V3, Some(ph)) => {
                let len = u32::try_from(message.len()).unwrap_or(u32::MAX);
                checksum(pseudo_sum(ph, len), message) == 0
                    || (v3_checksum_as_v2 && checksum(0, message) == 0)
            }
            (Version::V2, _) | (Version::V3, None) => checksum(0, message) == 0,
        };
        if !ok {
            return Err(WireError::Checksum);
        }
        out.addrs.clear();
        out.addrs
            .extend((0..usize::from(p.count())).map(|i| p.addr(i, family)));
        let auth = match version {
            Version::V3 => Auth::None,
            Version::V2 => match p.auth_type() {
                0 => Auth::None,
                1 => Auth::Pass(p.auth_data(family)),
                2 => Auth::Ah,
                n => Auth::Other(n),
            },
        };
        out.version = version;
        out.vrid = p.vrid();
        out.priority = p.priority();
        out.interval = p.interval();
        out.auth = auth;
        Ok(())
    }

    /// The length of the advert at the start of `bytes` (header, address
    /// list and, for VRRPv2, authentication data); an error if `bytes` is
    /// shorter than a header or of another version than 2 or 3.
    pub fn message_len(bytes: &[u8], family: Family) -> Result<usize, WireError> {
        let p = Packet::new_unchecked(bytes);
        if bytes.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let version = match p.version_number() {
            2 => Version::V2,
            3 => Version::V3,
            _ => return Err(WireError::Version),
        };
        Ok(p.total_len(version, family))
    }

    /// Parses an advert followed by `trailer_len` bytes of trailer. The
    /// checksum is accepted over the advert alone or, for IPv6 (where
    /// keepalived lets the kernel compute it), over the advert and trailer.
    pub fn parse_with_trailer(
        bytes: &[u8],
        family: Family,
        pseudo: Option<PseudoHeader>,
        v3_checksum_as_v2: bool,
        trailer_len: usize,
    ) -> Result<Self, WireError> {
        let mut advert = Self::empty();
        Self::parse_with_trailer_into(
            bytes,
            family,
            pseudo,
            v3_checksum_as_v2,
            trailer_len,
            &mut advert,
        )?;
        Ok(advert)
    }

    /// [`Advert::parse_with_trailer`] into `out` (see [`Advert::parse_into`]).
    pub fn parse_with_trailer_into(
        bytes: &[u8],
        family: Family,
        pseudo: Option<PseudoHeader>,
        v3_checksum_as_v2: bool,
        trailer_len: usize,
        out: &mut Self,
    ) -> Result<(), WireError> {
        let cut = bytes.len().saturating_sub(trailer_len);
        let message = &bytes[..cut];
        match Self::parse_into(message, family, pseudo, v3_checksum_as_v2, out) {
            Err(WireError::Checksum) if family == Family::V6 && trailer_len > 0 => {
                let whole = pseudo.is_some_and(|ph| {
                    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
                    checksum(pseudo_sum(ph, len), bytes) == 0
                });
                if !whole {
                    return Err(WireError::Checksum);
                }
                // The message is otherwise checked by `parse`: parse it with
                // its own checksum recomputed.
                let mut copy = message.to_vec();
                if let Some(ph) = pseudo {
                    reseal_checksum(&mut copy, ph);
                }
                Self::parse_into(&copy, family, pseudo, v3_checksum_as_v2, out)
            }
            r => r,
        }
    }

    /// The family of the address list (IPv4 when empty).
    pub fn family(&self) -> Family {
        self.addrs.first().map_or(Family::V4, Family::of)
    }

    /// Bytes [`Advert::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        let auth = if self.version == Version::V2 {
            AUTH_LEN
        } else {
            0
        };
        HEADER_LEN + self.addrs.len().min(255) * self.family().addr_len() + auth
    }

    /// Writes the advertisement with its checksum into a new buffer. VRRPv3
    /// needs `pseudo` for the checksum (without it, the v2-style checksum).
    pub fn emit(&self, pseudo: Option<PseudoHeader>) -> Vec<u8> {
        let mut buf = Vec::with_capacity(self.buffer_len());
        self.emit_into(pseudo, &mut buf);
        buf
    }

    /// [`Advert::emit`], appending to `out` (no allocation once `out` has
    /// room).
    pub fn emit_into(&self, pseudo: Option<PseudoHeader>, out: &mut Vec<u8>) {
        let family = self.family();
        let start = out.len();
        out.resize(start + self.buffer_len(), 0);
        let buf = &mut out[start..];
        buf[field::VER_TYPE] = (self.version.number() << 4) | 1;
        buf[field::VRID] = self.vrid;
        buf[field::PRIORITY] = self.priority;
        let addrs = &self.addrs[..self.addrs.len().min(255)];
        buf[field::COUNT] = u8::try_from(addrs.len()).unwrap_or(u8::MAX);
        match self.version {
            Version::V2 => {
                buf[field::AUTH_OR_INT_HI] = self.auth.type_number();
                buf[field::INT_LO] = u8::try_from(self.interval).unwrap_or(u8::MAX);
            }
            Version::V3 => {
                let i = self.interval & 0x0fff;
                buf[field::AUTH_OR_INT_HI] = u8::try_from(i >> 8).unwrap_or(0);
                buf[field::INT_LO] = u8::try_from(i & 0xff).unwrap_or(0);
            }
        }
        let mut at = field::ADDRS;
        for a in addrs {
            match a {
                IpAddr::V4(v4) if family == Family::V4 => {
                    buf[at..at + 4].copy_from_slice(&v4.octets());
                }
                IpAddr::V6(v6) if family == Family::V6 => {
                    buf[at..at + 16].copy_from_slice(&v6.octets());
                }
                // A mixed list cannot be sent; the other family's addresses are zeroed.
                _ => {}
            }
            at += family.addr_len();
        }
        if let (Version::V2, Auth::Pass(p)) = (self.version, &self.auth) {
            buf[at..at + AUTH_LEN].copy_from_slice(p);
        }
        let sum = match (self.version, pseudo) {
            (Version::V3, Some(ph)) => {
                let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
                checksum(pseudo_sum(ph, len), buf)
            }
            _ => checksum(0, buf),
        };
        Packet::new_unchecked(&mut buf[..]).set_checksum(sum);
    }
}

/// Recomputes the checksum of `bytes` (an advert and whatever follows it,
/// e.g. an `auth_hmac` trailer) over all of them, with `pseudo`'s sum.
pub fn reseal_checksum(bytes: &mut [u8], pseudo: PseudoHeader) {
    if bytes.len() < HEADER_LEN {
        return;
    }
    bytes[6] = 0;
    bytes[7] = 0;
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    let sum = checksum(pseudo_sum(pseudo, len), bytes);
    bytes[6..8].copy_from_slice(&sum.to_be_bytes());
}

/// The one's-complement sum of the IP pseudo-header (RFC 768/2460 style).
fn pseudo_sum(ph: PseudoHeader, len: u32) -> u32 {
    let mut sum = 0u32;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks(2) {
            let hi = u32::from(pair[0]) << 8;
            let lo = pair.get(1).map_or(0, |b| u32::from(*b));
            sum = sum.wrapping_add(hi | lo);
        }
    };
    match (ph.src, ph.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            add(&s.octets());
            add(&d.octets());
            add(&[0, PROTOCOL]);
            add(&u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes());
        }
        (s, d) => {
            add(&ipv6_bytes(s));
            add(&ipv6_bytes(d));
            add(&len.to_be_bytes());
            add(&[0, 0, 0, PROTOCOL]);
        }
    }
    sum
}

fn ipv6_bytes(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V6(v6) => v6.octets(),
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
    }
}

/// The Internet checksum (RFC 1071) of `data`, starting from `initial`.
/// Over a buffer that holds a correct checksum the result is 0.
pub fn checksum(initial: u32, data: &[u8]) -> u16 {
    let mut sum = u64::from(initial);
    for pair in data.chunks(2) {
        let hi = u64::from(pair[0]) << 8;
        let lo = pair.get(1).map_or(0, |b| u64::from(*b));
        sum += hi | lo;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !u16::try_from(sum).unwrap_or(u16::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn advert(version: Version, addrs: &[&str]) -> Advert {
        Advert {
            version,
            vrid: 51,
            priority: 100,
            interval: if version == Version::V2 { 1 } else { 100 },
            auth: Auth::None,
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
        }
    }

    const PH4: PseudoHeader = PseudoHeader {
        src: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 22)),
        dst: IpAddr::V4(MULTICAST_V4),
    };

    #[test]
    fn v2_bytes_by_hand() {
        let mut a = advert(Version::V2, &["198.51.100.250"]);
        a.auth = Auth::pass("1111");
        let b = a.emit(None);
        assert_eq!(
            &b[..12],
            &[0x21, 51, 100, 1, 1, 1, b[6], b[7], 198, 51, 100, 250]
        );
        assert_eq!(&b[12..], b"1111\0\0\0\0");
        assert_eq!(checksum(0, &b), 0);
        assert_eq!(Advert::parse(&b, Family::V4, None, false).unwrap(), a);
    }

    #[test]
    fn v3_ipv4_checksum_covers_the_pseudo_header() {
        let a = advert(Version::V3, &["198.51.100.250"]);
        let b = a.emit(Some(PH4));
        assert_eq!(b.len(), 12);
        assert_eq!(b[0], 0x31);
        assert_eq!((b[4], b[5]), (0, 100));
        assert_eq!(Advert::parse(&b, Family::V4, Some(PH4), false).unwrap(), a);
        let other = PseudoHeader {
            src: v4("198.51.100.40"),
            ..PH4
        };
        assert_eq!(
            Advert::parse(&b, Family::V4, Some(other), false),
            Err(WireError::Checksum)
        );
    }

    #[test]
    fn v3_ipv6() {
        let a = advert(Version::V3, &["2001:db8:100::250", "fe80::1"]);
        let ph = PseudoHeader {
            src: "fe80::22".parse().unwrap(),
            dst: IpAddr::V6(MULTICAST_V6),
        };
        let b = a.emit(Some(ph));
        assert_eq!(b.len(), 8 + 32);
        assert_eq!(Advert::parse(&b, Family::V6, Some(ph), false).unwrap(), a);
    }

    #[test]
    fn twelve_bit_interval() {
        let mut a = advert(Version::V3, &["198.51.100.250"]);
        a.interval = 4095;
        let b = a.emit(Some(PH4));
        assert_eq!((b[4], b[5]), (0x0f, 0xff));
        assert_eq!(
            Packet::new_checked(&b[..], Family::V4).unwrap().interval(),
            4095
        );
    }

    #[test]
    fn bad_inputs_are_typed_errors_never_panics() {
        let good = advert(Version::V2, &["198.51.100.250"]).emit(None);
        for n in 0..good.len() {
            assert_eq!(
                Advert::parse(&good[..n], Family::V4, None, false),
                Err(WireError::Truncated),
                "{n}"
            );
        }
        let mut b = good.clone();
        b[0] = 0x41;
        assert_eq!(
            Advert::parse(&b, Family::V4, None, false),
            Err(WireError::Version)
        );
        b[0] = 0x22;
        assert_eq!(
            Advert::parse(&b, Family::V4, None, false),
            Err(WireError::Type)
        );
        let mut b = good.clone();
        b[2] ^= 1;
        assert_eq!(
            Advert::parse(&b, Family::V4, None, false),
            Err(WireError::Checksum)
        );
        assert_eq!(
            Advert::parse(&good, Family::V6, None, false),
            Err(WireError::Family)
        );
    }

    #[test]
    fn checksum_known_value() {
        // RFC 1071's example bytes.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(0, &data), !0xddf2);
    }
}
