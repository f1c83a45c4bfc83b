//! The BFD control packet (RFC 5880 §4.1), read with every check of the
//! reception rules that needs no session (§6.8.6), and written back.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! |Vers |  Diag   |Sta|P|F|C|A|D|M|  Detect Mult  |    Length     |
//! |                       My Discriminator                        |
//! |                      Your Discriminator                       |
//! |                    Desired Min TX Interval                    |
//! |                   Required Min RX Interval                    |
//! |                 Required Min Echo RX Interval                 |
//! | Auth Type     |   Auth Len    |    Authentication Data...     |
//! ```

/// The fixed part's length; the authentication section follows it.
pub const HEADER_LEN: usize = 24;

/// A session's state as the packet carries it (§4.1, "Sta").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    AdminDown,
    Down,
    Init,
    Up,
}

impl State {
    fn from_bits(b: u8) -> Self {
        match b & 0b11 {
            0 => State::AdminDown,
            1 => State::Down,
            2 => State::Init,
            _ => State::Up,
        }
    }

    fn bits(self) -> u8 {
        match self {
            State::AdminDown => 0,
            State::Down => 1,
            State::Init => 2,
            State::Up => 3,
        }
    }
}

/// Why the session last went down (§4.1, "Diag"); values past 8 are
/// kept as they came.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Diag {
    None,
    DetectionTimeExpired,
    EchoFailed,
    NeighborDown,
    ForwardingPlaneReset,
    PathDown,
    ConcatenatedPathDown,
    AdminDown,
    ReverseConcatenatedPathDown,
    Other(u8),
}

impl Diag {
    fn from_bits(b: u8) -> Self {
        match b & 0x1f {
            0 => Diag::None,
            1 => Diag::DetectionTimeExpired,
            2 => Diag::EchoFailed,
            3 => Diag::NeighborDown,
            4 => Diag::ForwardingPlaneReset,
            5 => Diag::PathDown,
            6 => Diag::ConcatenatedPathDown,
            7 => Diag::AdminDown,
            8 => Diag::ReverseConcatenatedPathDown,
            n => Diag::Other(n),
        }
    }

    fn bits(self) -> u8 {
        match self {
            Diag::None => 0,
            Diag::DetectionTimeExpired => 1,
            Diag::EchoFailed => 2,
            Diag::NeighborDown => 3,
            Diag::ForwardingPlaneReset => 4,
            Diag::PathDown => 5,
            Diag::ConcatenatedPathDown => 6,
            Diag::AdminDown => 7,
            Diag::ReverseConcatenatedPathDown => 8,
            Diag::Other(n) => n & 0x1f,
        }
    }
}

/// The authentication section (§4.2–4.4), its data as it came. Its
/// `Debug` shows the type and length only: a simple password must not
/// reach a log.
#[derive(Clone, PartialEq, Eq)]
pub struct Auth {
    /// 1 simple password, 2 keyed MD5, 3 meticulous keyed MD5, 4 keyed
    /// SHA1, 5 meticulous keyed SHA1.
    pub kind: u8,
    /// The bytes after type and length.
    pub data: Vec<u8>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("kind", &self.kind)
            .field("data", &format_args!("<{} bytes>", self.data.len()))
            .finish()
    }
}

/// A control packet, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    pub diag: Diag,
    pub state: State,
    pub poll: bool,
    pub fin: bool,
    /// Control plane independent.
    pub cpi: bool,
    pub demand: bool,
    pub detect_mult: u8,
    pub my_disc: u32,
    pub your_disc: u32,
    /// Microseconds.
    pub desired_min_tx: u32,
    pub required_min_rx: u32,
    pub required_min_echo_rx: u32,
    pub auth: Option<Auth>,
}

/// Why a packet is discarded (the §6.8.6 checks that need no session).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("{0} bytes, shorter than a control packet")]
    Short(usize),
    #[error("version {0}, expected 1")]
    Version(u8),
    #[error("length field {field} with {got} bytes received")]
    Length { field: u8, got: usize },
    #[error("detect multiplier 0")]
    ZeroMultiplier,
    #[error("multipoint bit set")]
    Multipoint,
    #[error("my discriminator 0")]
    ZeroMyDiscriminator,
    #[error("your discriminator 0 in state {0:?}")]
    ZeroYourDiscriminator(State),
    #[error("authentication bit set without a section, or a section of {0} bytes")]
    AuthSection(usize),
    #[error("authentication type {kind} with length {len}")]
    AuthLength { kind: u8, len: u8 },
}

fn be32(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(w)
}

/// The authentication lengths RFC 5880 allows for each type (§4.2–4.4);
/// `None` for a type it does not define (kept for the session to refuse).
fn auth_len_ok(kind: u8, len: u8) -> Option<bool> {
    match kind {
        1 => Some((4..=19).contains(&len)),
        2 | 3 => Some(len == 24),
        4 | 5 => Some(len == 28),
        _ => None,
    }
}

impl Control {
    /// Reads a packet, applying the checks of §6.8.6 that need no session
    /// (version, length, multiplier, multipoint, discriminators, the
    /// authentication section's shape). Bytes after `Length` are ignored,
    /// as the RFC allows for padding at the link layer.
    pub fn parse(b: &[u8]) -> Result<Self, WireError> {
        if b.len() < HEADER_LEN {
            return Err(WireError::Short(b.len()));
        }
        let version = b[0] >> 5;
        if version != 1 {
            return Err(WireError::Version(version));
        }
        let flags = b[1];
        let auth_bit = flags & 0x04 != 0;
        let length = b[3];
        let min = if auth_bit { HEADER_LEN + 2 } else { HEADER_LEN };
        if usize::from(length) < min || usize::from(length) > b.len() {
            return Err(WireError::Length {
                field: length,
                got: b.len(),
            });
        }
        let detect_mult = b[2];
        if detect_mult == 0 {
            return Err(WireError::ZeroMultiplier);
        }
        if flags & 0x01 != 0 {
            return Err(WireError::Multipoint);
        }
        let state = State::from_bits(flags >> 6);
        let my_disc = be32(b, 4);
        let your_disc = be32(b, 8);
        if my_disc == 0 {
            return Err(WireError::ZeroMyDiscriminator);
        }
        if your_disc == 0 && !matches!(state, State::Down | State::AdminDown) {
            return Err(WireError::ZeroYourDiscriminator(state));
        }
        let section = &b[HEADER_LEN..usize::from(length)];
        let auth = if auth_bit {
            let (kind, len) = (section[0], section[1]);
            if usize::from(len) != section.len() {
                return Err(WireError::AuthSection(section.len()));
            }
            if auth_len_ok(kind, len) == Some(false) {
                return Err(WireError::AuthLength { kind, len });
            }
            Some(Auth {
                kind,
                data: section[2..].to_vec(),
            })
        } else {
            if !section.is_empty() {
                return Err(WireError::AuthSection(section.len()));
            }
            None
        };
        Ok(Control {
            diag: Diag::from_bits(b[0]),
            state,
            poll: flags & 0x20 != 0,
            fin: flags & 0x10 != 0,
            cpi: flags & 0x08 != 0,
            demand: flags & 0x02 != 0,
            detect_mult,
            my_disc,
            your_disc,
            desired_min_tx: be32(b, 12),
            required_min_rx: be32(b, 16),
            required_min_echo_rx: be32(b, 20),
            auth,
        })
    }

    /// The packet's bytes (an authentication section longer than the
    /// one-byte length allows is cut to fit).
    pub fn emit(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + 28);
        out.push((1 << 5) | self.diag.bits());
        let mut flags = self.state.bits() << 6;
        for (on, bit) in [
            (self.poll, 0x20),
            (self.fin, 0x10),
            (self.cpi, 0x08),
            (self.auth.is_some(), 0x04),
            (self.demand, 0x02),
        ] {
            if on {
                flags |= bit;
            }
        }
        out.push(flags);
        out.push(self.detect_mult);
        out.push(0);
        for w in [
            self.my_disc,
            self.your_disc,
            self.desired_min_tx,
            self.required_min_rx,
            self.required_min_echo_rx,
        ] {
            out.extend_from_slice(&w.to_be_bytes());
        }
        if let Some(a) = &self.auth {
            let room = usize::from(u8::MAX) - HEADER_LEN - 2;
            let data = &a.data[..a.data.len().min(room)];
            out.push(a.kind);
            out.push(u8::try_from(data.len() + 2).unwrap_or(u8::MAX));
            out.extend_from_slice(data);
        }
        out[3] = u8::try_from(out.len()).unwrap_or(u8::MAX);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up() -> Control {
        Control {
            diag: Diag::None,
            state: State::Up,
            poll: false,
            fin: false,
            cpi: false,
            demand: false,
            detect_mult: 3,
            my_disc: 0x1111_2222,
            your_disc: 0x3333_4444,
            desired_min_tx: 10_000,
            required_min_rx: 10_000,
            required_min_echo_rx: 0,
            auth: None,
        }
    }

    #[test]
    fn a_packet_is_written_as_rfc_5880_lays_it_out() {
        let b = up().emit();
        assert_eq!(
            b,
            [
                0x20, 0xc0, 3, 24, 0x11, 0x11, 0x22, 0x22, 0x33, 0x33, 0x44, 0x44, 0, 0, 0x27,
                0x10, 0, 0, 0x27, 0x10, 0, 0, 0, 0
            ]
        );
        assert_eq!(Control::parse(&b), Ok(up()));
        let poll = Control {
            poll: true,
            diag: Diag::DetectionTimeExpired,
            state: State::Down,
            your_disc: 0,
            ..up()
        };
        let b = poll.emit();
        assert_eq!((b[0], b[1]), (0x21, 0x60));
        assert_eq!(Control::parse(&b), Ok(poll));
    }

    #[test]
    fn every_sessionless_discard_rule_has_its_reason() {
        let good = up().emit();
        let with = |i: usize, v: u8| {
            let mut b = good.clone();
            b[i] = v;
            Control::parse(&b)
        };
        assert_eq!(Control::parse(&good[..23]), Err(WireError::Short(23)));
        assert_eq!(with(0, 0x40), Err(WireError::Version(2)));
        assert_eq!(with(3, 23), Err(WireError::Length { field: 23, got: 24 }));
        assert_eq!(with(3, 25), Err(WireError::Length { field: 25, got: 24 }));
        assert_eq!(with(2, 0), Err(WireError::ZeroMultiplier));
        assert_eq!(with(1, 0xc1), Err(WireError::Multipoint));
        let mut b = good.clone();
        b[4..8].fill(0);
        assert_eq!(Control::parse(&b), Err(WireError::ZeroMyDiscriminator));
        let mut b = good.clone();
        b[8..12].fill(0);
        assert_eq!(
            Control::parse(&b),
            Err(WireError::ZeroYourDiscriminator(State::Up))
        );
        // The A bit without a section; a section without the A bit.
        assert_eq!(with(1, 0xc4), Err(WireError::Length { field: 24, got: 24 }));
        let mut b = good.clone();
        b.extend_from_slice(&[1, 5, b'k', b'e', b'y']);
        b[3] = 29;
        assert_eq!(Control::parse(&b), Err(WireError::AuthSection(5)));
        // Padding after Length is ignored.
        let mut b = good;
        b.extend_from_slice(&[0; 8]);
        assert_eq!(Control::parse(&b), Ok(up()));
    }

    #[test]
    fn authentication_sections_are_read_with_their_lengths_checked() {
        let simple = Control {
            auth: Some(Auth {
                kind: 1,
                data: b"\x01secret".to_vec(),
            }),
            ..up()
        };
        let b = simple.emit();
        assert_eq!(b.len(), 24 + 2 + 7);
        assert_eq!(Control::parse(&b), Ok(simple));
        // Keyed SHA1 must be 28 bytes long.
        let short_sha = Control {
            auth: Some(Auth {
                kind: 4,
                data: vec![0; 10],
            }),
            ..up()
        };
        assert_eq!(
            Control::parse(&short_sha.emit()),
            Err(WireError::AuthLength { kind: 4, len: 12 })
        );
        let sha = Control {
            auth: Some(Auth {
                kind: 4,
                data: vec![7; 26],
            }),
            ..up()
        };
        assert_eq!(Control::parse(&sha.emit()), Ok(sha));
    }

    proptest::proptest! {
        /// Any bytes: no panic; what parses is written back to the same
        /// bytes (up to its Length; reserved bits aside, none exist here).
        #[test]
        fn any_bytes_parse_or_are_refused(data in proptest::collection::vec(proptest::num::u8::ANY, 0..80)) {
            if let Ok(c) = Control::parse(&data) {
                let n = usize::from(data[3]);
                proptest::prop_assert_eq!(c.emit(), data[..n].to_vec());
            }
        }

        /// Every packet we write parses back to itself.
        #[test]
        fn what_we_write_reads_back(
            diag in 0u8..32, state in 0u8..4, flags in 0u8..16, mult in 1u8..=255,
            my in 1u32.., your in 1u32.., tx in proptest::num::u32::ANY, rx in proptest::num::u32::ANY,
        ) {
            let c = Control {
                diag: Diag::from_bits(diag),
                state: State::from_bits(state),
                poll: flags & 1 != 0,
                fin: flags & 2 != 0,
                cpi: flags & 4 != 0,
                demand: flags & 8 != 0,
                detect_mult: mult,
                my_disc: my,
                your_disc: your,
                desired_min_tx: tx,
                required_min_rx: rx,
                required_min_echo_rx: 0,
                auth: None,
            };
            proptest::prop_assert_eq!(Control::parse(&c.emit()), Ok(c));
        }
    }
}
