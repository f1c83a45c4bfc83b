//! keepalived 2.4's authenticated adverts (`auth_hmac`): a 28-byte trailer
//! after the VRRP message carrying a key id, a 64-bit time-based sequence
//! number and an HMAC-SHA256 tag cut to 128 bits.
//!
//! Trailer: `ext_type` (1) · `key_id` · reserved (2, zero) · sequence (8:
//! seconds 32 bits, 1/65536 s 16 bits, counter 16 bits) · tag (16). The tag
//! covers a 20-byte pseudo-header (family 4/6, VRRP version, VRID, 0, the
//! source address padded to 16 bytes), the VRRP message with its checksum
//! zeroed, the first 12 trailer bytes and 16 zero bytes. Sequence numbers
//! compare with serial-number arithmetic (RFC 1982). See
//! docs/research/auth_hmac.md for where each rule comes from.
//!
//! Everything here is pure: the caller passes the wall-clock time.

use std::net::IpAddr;

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::wire::{Family, Version};

/// Bytes appended to an advert.
pub const TRAILER_LEN: usize = 28;
/// HMAC-SHA256 truncated to 128 bits: the only extension type.
pub const EXT_TYPE_HMAC_SHA256_128: u8 = 1;
const TAG_LEN: usize = 16;
/// Senders remembered per multicast instance (keepalived: 4, least
/// recently used replaced).
const MULTICAST_SENDERS: usize = 4;

/// One key: id 1–255, 32–64 bytes, wiped from memory when dropped.
#[derive(Clone)]
pub struct Key {
    pub id: u8,
    bytes: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key material.
        write!(f, "Key({}, {} bytes)", self.id, self.bytes.len())
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id && self.bytes.as_slice() == other.bytes.as_slice()
    }
}

impl Eq for Key {}

impl Key {
    /// A key from its bytes; `Err` unless the id is 1–255 and the length
    /// 32–64 bytes (keepalived's rules).
    pub fn new(id: u8, bytes: Zeroizing<Vec<u8>>) -> Result<Self, BadKey> {
        if id == 0 {
            return Err(BadKey::Id);
        }
        if !(32..=64).contains(&bytes.len()) {
            return Err(BadKey::Length {
                id,
                len: bytes.len(),
            });
        }
        Ok(Self { id, bytes })
    }
}

/// Why a key cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadKey {
    #[error("key id must be 1-255")]
    Id,
    #[error("key {id} is {len} bytes; it must be 32 to 64")]
    Length { id: u8, len: usize },
}

/// `mode`: what is sent and what unsigned adverts get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Sign; drop adverts without a trailer.
    #[default]
    Enforce,
    /// Sign; accept adverts without a trailer (a trailer must verify).
    Permissive,
    /// Do not sign; accept adverts without a trailer (a trailer must verify).
    ReceiveOnly,
}

/// `anti_replay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AntiReplay {
    /// Sequence numbers are wall-clock stamps: adverts more than
    /// `window_secs` away from our clock are stale.
    Time { window_secs: u32 },
    /// Only "newer than the last one from that sender".
    Monotonic,
}

/// An instance's `auth_hmac` block, ready to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub keys: Vec<Key>,
    /// The key that signs (it must be among `keys`).
    pub active_key: u8,
    pub mode: Mode,
    pub anti_replay: AntiReplay,
}

impl Config {
    fn key(&self, id: u8) -> Option<&Key> {
        self.keys.iter().find(|k| k.id == id)
    }

    /// keepalived's default window: 3 × the advert interval in whole
    /// seconds, between 5 and 300.
    pub fn default_window(advert_interval: std::time::Duration) -> u32 {
        let secs = u32::try_from(advert_interval.as_secs()).unwrap_or(u32::MAX);
        secs.saturating_mul(3).clamp(5, 300)
    }
}

/// Why a trailer was not accepted; each is a counter and a log line, never a
/// state change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reject {
    /// No trailer, in `enforce` mode.
    Missing,
    /// Unknown extension type or non-zero reserved bytes.
    Malformed,
    /// The key id names no configured key.
    UnknownKey,
    /// The tag does not match.
    Invalid,
    /// Outside the time window.
    Stale,
    /// Not newer than the last advert accepted from that sender.
    Replayed,
}

/// The parsed trailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trailer {
    pub ext_type: u8,
    pub key_id: u8,
    pub reserved: u16,
    pub seq: u64,
    pub tag: [u8; TAG_LEN],
}

impl Trailer {
    /// Reads a trailer; `None` unless `b` is exactly [`TRAILER_LEN`] bytes.
    pub fn parse(b: &[u8]) -> Option<Self> {
        if b.len() != TRAILER_LEN {
            return None;
        }
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&b[4..12]);
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&b[12..28]);
        Some(Self {
            ext_type: b[0],
            key_id: b[1],
            reserved: u16::from_be_bytes([b[2], b[3]]),
            seq: u64::from_be_bytes(seq),
            tag,
        })
    }

    fn head(&self) -> [u8; 12] {
        let mut h = [0u8; 12];
        h[0] = self.ext_type;
        h[1] = self.key_id;
        h[2..4].copy_from_slice(&self.reserved.to_be_bytes());
        h[4..12].copy_from_slice(&self.seq.to_be_bytes());
        h
    }

    pub fn to_bytes(self) -> [u8; TRAILER_LEN] {
        let mut b = [0u8; TRAILER_LEN];
        b[..12].copy_from_slice(&self.head());
        b[12..].copy_from_slice(&self.tag);
        b
    }

    /// The seconds part of the sequence number.
    pub fn secs(&self) -> u32 {
        u32::try_from(self.seq >> 32).unwrap_or(0)
    }
}

/// A wall-clock time as a sequence number: seconds (32 bits, wrapping),
/// 1/65536 s (16 bits), counter 0.
pub fn clock_seq(unix_micros: u64) -> u64 {
    let secs = (unix_micros / 1_000_000) & 0xffff_ffff;
    let frac = (unix_micros % 1_000_000) * 65_536 / 1_000_000;
    (secs << 32) | (frac << 16)
}

/// `a` comes after `b` in serial-number order.
fn after(a: u64, b: u64) -> bool {
    // The difference read as signed: positive means later (RFC 1982).
    i64::from_ne_bytes(a.wrapping_sub(b).to_ne_bytes()) > 0
}

/// Seconds `b` is behind `a`, modulo 2^32, as signed.
fn secs_diff(a: u32, b: u32) -> i32 {
    i32::from_ne_bytes(a.wrapping_sub(b).to_ne_bytes())
}

/// The tag of an advert: HMAC-SHA256 over the pseudo-header, the message
/// (checksum zeroed), the trailer's first 12 bytes and 16 zeros; the first
/// 16 bytes.
fn tag(
    key: &Key,
    version: Version,
    vrid: u8,
    src: IpAddr,
    message: &[u8],
    head: &[u8; 12],
) -> Option<Hmac<Sha256>> {
    // HMAC takes keys of any length, so this does not fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key.bytes).ok()?;
    let mut pseudo = [0u8; 20];
    pseudo[0] = match Family::of(&src) {
        Family::V4 => 4,
        Family::V6 => 6,
    };
    pseudo[1] = version.number();
    pseudo[2] = vrid;
    match src {
        IpAddr::V4(a) => pseudo[4..8].copy_from_slice(&a.octets()),
        IpAddr::V6(a) => pseudo[4..20].copy_from_slice(&a.octets()),
    }
    mac.update(&pseudo);
    // The message with its checksum (bytes 6 and 7) read as zero.
    let cut = message.len().min(6);
    mac.update(&message[..cut]);
    if message.len() > 6 {
        mac.update(&[0u8; 2][..(message.len() - 6).min(2)]);
    }
    if message.len() > 8 {
        mac.update(&message[8..]);
    }
    mac.update(head);
    mac.update(&[0u8; TAG_LEN]);
    Some(mac)
}

/// The sender's side: the next sequence number, never going back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sequencer {
    last: Option<u64>,
}

impl Sequencer {
    /// The sequence number for an advert sent at `unix_micros`: the clock's,
    /// or one more than the last if the clock has not moved past it (in
    /// `time` mode a clock stepped back by more than the window restarts
    /// from the clock). A fresh sequencer starts from the clock, whatever
    /// the year.
    pub fn next(&mut self, unix_micros: u64, anti_replay: AntiReplay) -> u64 {
        let clk = clock_seq(unix_micros);
        let seq = match self.last {
            None => clk,
            Some(last) if after(clk, last) => clk,
            Some(last) => match anti_replay {
                AntiReplay::Time { window_secs }
                    if i64::from(secs_diff(
                        u32::try_from(last >> 32).unwrap_or(0),
                        u32::try_from(clk >> 32).unwrap_or(0),
                    )) > i64::from(window_secs) =>
                {
                    clk
                }
                _ => last.wrapping_add(1),
            },
        };
        self.last = Some(seq);
        seq
    }
}

/// Signs an advert: the trailer to append to `message` (sent from `src`).
pub fn sign(
    cfg: &Config,
    version: Version,
    vrid: u8,
    src: IpAddr,
    message: &[u8],
    seq: u64,
) -> [u8; TRAILER_LEN] {
    let mut t = Trailer {
        ext_type: EXT_TYPE_HMAC_SHA256_128,
        key_id: cfg.active_key,
        reserved: 0,
        seq,
        tag: [0; TAG_LEN],
    };
    // Without the active key the tag stays zero, which no receiver accepts
    // (configuration checks make this unreachable).
    if let Some(mac) = cfg
        .key(cfg.active_key)
        .and_then(|key| tag(key, version, vrid, src, message, &t.head()))
    {
        let full = mac.finalize().into_bytes();
        t.tag.copy_from_slice(&full[..TAG_LEN]);
    }
    t.to_bytes()
}

/// The receiver's memory of each sender's last accepted sequence number.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayState {
    /// (sender, last accepted sequence, last use) — unicast: one per peer;
    /// multicast: the [`MULTICAST_SENDERS`] most recently heard.
    senders: Vec<(IpAddr, u64, u64)>,
    uses: u64,
}

impl ReplayState {
    fn last(&self, src: IpAddr) -> Option<u64> {
        self.senders.iter().find(|s| s.0 == src).map(|s| s.1)
    }

    fn forget(&mut self, src: IpAddr) {
        self.senders.retain(|s| s.0 != src);
    }

    fn remember(&mut self, src: IpAddr, seq: u64, capacity: usize) {
        self.uses += 1;
        if let Some(s) = self.senders.iter_mut().find(|s| s.0 == src) {
            s.1 = seq;
            s.2 = self.uses;
            return;
        }
        if self.senders.len() >= capacity.max(1) {
            if let Some(oldest) = self
                .senders
                .iter()
                .enumerate()
                .min_by_key(|(_, s)| s.2)
                .map(|(i, _)| i)
            {
                self.senders.swap_remove(oldest);
            }
        }
        self.senders.push((src, seq, self.uses));
    }
}

/// What happened to a received advert's trailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Verified (and new). `skew_secs` is set in `time` mode when the
    /// sender's clock is more than half the window away from ours.
    Accepted {
        skew_secs: Option<i32>,
    },
    /// No trailer, and the mode lets it through.
    Unsigned,
    Rejected(Reject),
}

/// Checks the trailer (if any) of an advert from `src`. `peers` is the
/// number of unicast peers (0: multicast), which sizes the replay memory.
#[allow(clippy::too_many_arguments)]
pub fn verify(
    cfg: &Config,
    state: &mut ReplayState,
    peers: usize,
    version: Version,
    vrid: u8,
    src: IpAddr,
    message: &[u8],
    trailer: Option<&[u8]>,
    unix_micros: u64,
) -> Verdict {
    let Some(bytes) = trailer else {
        return match cfg.mode {
            Mode::Enforce => Verdict::Rejected(Reject::Missing),
            Mode::Permissive | Mode::ReceiveOnly => Verdict::Unsigned,
        };
    };
    let Some(t) = Trailer::parse(bytes) else {
        return Verdict::Rejected(Reject::Malformed);
    };
    if t.ext_type != EXT_TYPE_HMAC_SHA256_128 || t.reserved != 0 {
        return Verdict::Rejected(Reject::Malformed);
    }
    let now_secs = u32::try_from((unix_micros / 1_000_000) & 0xffff_ffff).unwrap_or(0);
    let skew = secs_diff(now_secs, t.secs());
    if let AntiReplay::Time { window_secs } = cfg.anti_replay {
        if i64::from(skew).abs() > i64::from(window_secs) {
            return Verdict::Rejected(Reject::Stale);
        }
    }
    let Some(key) = cfg.key(t.key_id) else {
        return Verdict::Rejected(Reject::UnknownKey);
    };
    let good = tag(key, version, vrid, src, message, &t.head())
        .is_some_and(|mac| mac.verify_truncated_left(&t.tag).is_ok());
    if !good {
        return Verdict::Rejected(Reject::Invalid);
    }
    // Replay: only authenticated adverts move the mark. In time mode a mark
    // further than the window from now (a clock step) is forgotten.
    if let (AntiReplay::Time { window_secs }, Some(last)) = (cfg.anti_replay, state.last(src)) {
        let last_secs = u32::try_from(last >> 32).unwrap_or(0);
        if i64::from(secs_diff(now_secs, last_secs)).abs() > i64::from(window_secs) {
            state.forget(src);
        }
    }
    if let Some(last) = state.last(src) {
        if !after(t.seq, last) {
            return Verdict::Rejected(Reject::Replayed);
        }
    }
    let capacity = if peers == 0 { MULTICAST_SENDERS } else { peers };
    state.remember(src, t.seq, capacity);
    let skew_secs = match cfg.anti_replay {
        AntiReplay::Time { window_secs } if i64::from(skew).abs() * 2 > i64::from(window_secs) => {
            Some(skew)
        }
        _ => None,
    };
    Verdict::Accepted { skew_secs }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn cfg(mode: Mode, anti_replay: AntiReplay) -> Config {
        Config {
            keys: vec![Key::new(1, Zeroizing::new((0u8..32).collect())).unwrap()],
            active_key: 1,
            mode,
            anti_replay,
        }
    }

    /// keepalived 2.4.3's own vectors (test/auth_hmac_test.c): key bytes
    /// 00..1f as id 1, VRID 51, priority 200, v3, sequence 0x6800000080000000.
    #[test]
    fn keepalived_test_vectors() {
        let c = cfg(Mode::Enforce, AntiReplay::Monotonic);
        let v4_msg = hex("3133c80100644402c0000264");
        let v4_src: IpAddr = "198.51.100.10".parse().unwrap();
        let t = sign(&c, Version::V3, 51, v4_src, &v4_msg, 0x6800_0000_8000_0000);
        assert_eq!(
            t.to_vec(),
            hex("0101000068000000800000001b84bc4e8e43892dc6d98448f8ee2265")
        );
        let v6_msg = hex("3133c8010064a2e9fe800000000000000000000000000100");
        let v6_src: IpAddr = "fe80::10".parse().unwrap();
        let t6 = sign(&c, Version::V3, 51, v6_src, &v6_msg, 0x6800_0000_8000_0000);
        assert_eq!(
            t6.to_vec(),
            hex("010100006800000080000000c8c56146ebfd66ee10ec4d8186461b78")
        );
        // And they verify (monotonic: the stamp is far from any live window).
        let mut st = ReplayState::default();
        let at = 1_900_000_000_000_000;
        let v = verify(
            &c,
            &mut st,
            0,
            Version::V3,
            51,
            v4_src,
            &v4_msg,
            Some(&t),
            at,
        );
        assert_eq!(v, Verdict::Accepted { skew_secs: None });
        // keepalived's mutation cases.
        let check = |msg: &[u8], trailer: &[u8], src: IpAddr, vrid: u8| {
            verify(
                &c,
                &mut ReplayState::default(),
                0,
                Version::V3,
                vrid,
                src,
                msg,
                Some(trailer),
                at,
            )
        };
        let mut m = v4_msg.clone();
        m[7] ^= 1; // the checksum is not covered
        assert!(matches!(
            check(&m, &t, v4_src, 51),
            Verdict::Accepted { .. }
        ));
        for i in [2usize, 5, 9] {
            let mut m = v4_msg.clone();
            m[i] ^= 1;
            assert_eq!(
                check(&m, &t, v4_src, 51),
                Verdict::Rejected(Reject::Invalid),
                "byte {i}"
            );
        }
        for (i, want) in [
            (0usize, Reject::Malformed),
            (1, Reject::UnknownKey),
            (2, Reject::Malformed),
            (5, Reject::Invalid),
            (11, Reject::Invalid),
            (20, Reject::Invalid),
        ] {
            let mut tt = t;
            tt[i] ^= 1;
            assert_eq!(
                check(&v4_msg, &tt, v4_src, 51),
                Verdict::Rejected(want),
                "trailer byte {i}"
            );
        }
        let other: IpAddr = "198.51.100.20".parse().unwrap();
        assert_eq!(
            check(&v4_msg, &t, other, 51),
            Verdict::Rejected(Reject::Invalid)
        );
        assert_eq!(
            check(&v4_msg, &t, v4_src, 52),
            Verdict::Rejected(Reject::Invalid)
        );
    }

    const NOW: u64 = 1_764_000_000_000_000; // 2025-11-24, in µs

    fn signed(c: &Config, seq: u64) -> (Vec<u8>, [u8; TRAILER_LEN]) {
        let msg = hex("3133c80100640000c0000264");
        let t = sign(c, Version::V3, 51, src(), &msg, seq);
        (msg, t)
    }

    fn src() -> IpAddr {
        "198.51.100.22".parse().unwrap()
    }

    fn check(c: &Config, st: &mut ReplayState, msg: &[u8], t: Option<&[u8]>, now: u64) -> Verdict {
        verify(c, st, 0, Version::V3, 51, src(), msg, t, now)
    }

    #[test]
    fn replays_and_stale_stamps_are_refused() {
        let c = cfg(Mode::Enforce, AntiReplay::Time { window_secs: 5 });
        let mut st = ReplayState::default();
        let (msg, t1) = signed(&c, clock_seq(NOW));
        assert_eq!(
            check(&c, &mut st, &msg, Some(&t1), NOW),
            Verdict::Accepted { skew_secs: None }
        );
        // The same advert again, 1 s later: replayed.
        assert_eq!(
            check(&c, &mut st, &msg, Some(&t1), NOW + 1_000_000),
            Verdict::Rejected(Reject::Replayed)
        );
        // 60 s later: stale before anything else.
        assert_eq!(
            check(&c, &mut st, &msg, Some(&t1), NOW + 60_000_000),
            Verdict::Rejected(Reject::Stale)
        );
        // A newer one is fine; 3 s of skew is reported (more than half the window).
        let (_, t2) = signed(&c, clock_seq(NOW + 100_000));
        assert_eq!(
            check(&c, &mut st, &msg, Some(&t2), NOW + 3_100_000),
            Verdict::Accepted { skew_secs: Some(3) }
        );
    }

    #[test]
    fn modes_decide_what_unsigned_adverts_get() {
        let msg = hex("3133c80100640000c0000264");
        for (mode, want) in [
            (Mode::Enforce, Verdict::Rejected(Reject::Missing)),
            (Mode::Permissive, Verdict::Unsigned),
            (Mode::ReceiveOnly, Verdict::Unsigned),
        ] {
            let c = cfg(mode, AntiReplay::Time { window_secs: 5 });
            assert_eq!(
                check(&c, &mut ReplayState::default(), &msg, None, NOW),
                want
            );
            // A bad trailer is refused in every mode.
            let mut wrong = cfg(mode, AntiReplay::Time { window_secs: 5 });
            wrong.keys = vec![Key::new(1, Zeroizing::new(vec![7u8; 32])).unwrap()];
            let (_, t) = signed(&wrong, clock_seq(NOW));
            assert_eq!(
                check(&c, &mut ReplayState::default(), &msg, Some(&t), NOW),
                Verdict::Rejected(Reject::Invalid)
            );
        }
    }

    #[test]
    fn the_sequence_never_goes_back() {
        let mut seqr = Sequencer::default();
        let first = seqr.next(NOW, AntiReplay::Monotonic);
        assert_eq!(
            first,
            clock_seq(NOW),
            "a fresh sender starts from the clock"
        );
        let second = seqr.next(NOW, AntiReplay::Monotonic);
        assert_eq!(second, first + 1, "same instant: the counter moves");
        // Clock stepped back an hour: monotonic keeps counting up; time mode
        // restarts from the clock (the window would refuse the old stamps anyway).
        let back = NOW - 3_600_000_000;
        let mut mono = seqr;
        assert_eq!(mono.next(back, AntiReplay::Monotonic), second + 1);
        let mut timed = seqr;
        assert_eq!(
            timed.next(back, AntiReplay::Time { window_secs: 5 }),
            clock_seq(back)
        );
        // Seconds past 2^31 (2038 and later) still start from the clock.
        let late = (1u64 << 31) * 1_000_000 + 5;
        assert_eq!(
            Sequencer::default().next(late, AntiReplay::Monotonic),
            clock_seq(late)
        );
    }

    #[test]
    fn multicast_remembers_the_four_latest_senders() {
        let c = cfg(Mode::Enforce, AntiReplay::Monotonic);
        let mut st = ReplayState::default();
        let msg = hex("3133c80100640000c0000264");
        let from = |i: u8| -> IpAddr { format!("198.51.100.{i}").parse().unwrap() };
        for i in 1..=5u8 {
            let t = sign(&c, Version::V3, 51, from(i), &msg, 100);
            let v = verify(
                &c,
                &mut st,
                0,
                Version::V3,
                51,
                from(i),
                &msg,
                Some(&t),
                NOW,
            );
            assert!(matches!(v, Verdict::Accepted { .. }));
        }
        assert_eq!(st.senders.len(), 4);
        // Sender 1 was forgotten (least recently used), so its replay passes;
        // sender 5's does not.
        let t5 = sign(&c, Version::V3, 51, from(5), &msg, 100);
        let v = verify(
            &c,
            &mut st,
            0,
            Version::V3,
            51,
            from(5),
            &msg,
            Some(&t5),
            NOW,
        );
        assert_eq!(v, Verdict::Rejected(Reject::Replayed));
    }

    #[test]
    fn keys_are_checked_and_never_printed() {
        assert!(Key::new(0, Zeroizing::new(vec![1; 32])).is_err());
        assert!(Key::new(1, Zeroizing::new(vec![1; 31])).is_err());
        assert!(Key::new(1, Zeroizing::new(vec![1; 65])).is_err());
        let k = Key::new(9, Zeroizing::new(vec![0xab; 40])).unwrap();
        let shown = format!("{k:?}");
        assert!(!shown.contains("ab") && !shown.contains("171"), "{shown}");
        assert_eq!(Config::default_window(std::time::Duration::from_secs(1)), 5);
        assert_eq!(Config::default_window(std::time::Duration::from_secs(3)), 9);
        assert_eq!(
            Config::default_window(std::time::Duration::from_millis(100)),
            5
        );
        assert_eq!(
            Config::default_window(std::time::Duration::from_secs(255)),
            300
        );
    }

    #[test]
    fn trailer_parsing_never_panics() {
        for len in 0..64 {
            let b = vec![0xffu8; len];
            assert_eq!(Trailer::parse(&b).is_some(), len == TRAILER_LEN);
        }
    }
}
