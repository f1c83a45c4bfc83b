//! The nftables DR plane's flow memory carried to the other directors.
//!
//! DR on nftables remembers each connection's real server in a dynamic
//! map per service (`flows_<key>`, see [`crate::nft`]): client address and
//! port to the server's MAC. A scheduler that does not hash (`rr`, `wlc`,
//! …) cannot choose the same server again on another director, so without
//! that map a takeover sends a known connection to a server that does
//! not know it. `lvs_sync_daemon` on this plane sends the map's entries
//! to the other directors, which write them into their own maps before
//! they ever carry the VIP: this module is that, without the I/O — the
//! map read from `nft -j` output, the entries as datagrams and back, and
//! the transaction that writes received entries.
//!
//! The datagram (our own; IPVS's sync messages name the real server by
//! address, ours by the MAC the map holds):
//!
//! ```text
//! 0      4    5        6        8
//! "KRFL" | 1  | sync id | count  | entries…
//! entry: family (4|6) | map key (4) | MAC (6) | client port (2)
//!        | seconds left (4) | client address (4|16)
//! ```
//!
//! All numbers big-endian. A receiver takes an entry only for a map it
//! has itself (same service, same key) and a MAC its own configuration
//! lets that service use, so a forged datagram can at most pin a client
//! to one of the servers this director would have chosen from.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::net::IpAddr;

use crate::Error;

/// One remembered connection: which service's map, the client, its
/// server's MAC, and how long the entry has left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    /// The service's map key (`flows_<key>`, eight hex digits).
    pub map: u32,
    pub client: IpAddr,
    pub port: u16,
    pub mac: [u8; 6],
    /// Seconds until the entry expires.
    pub expires: u32,
}

impl Flow {
    /// The entry's identity in its map.
    pub fn key(&self) -> (u32, IpAddr, u16) {
        (self.map, self.client, self.port)
    }
}

/// What our netdev table holds: every flow, each service's servers (its
/// `live_<key>` set), and each flow map's client family (`true`: IPv4).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    pub flows: Vec<Flow>,
    pub live: HashMap<u32, HashSet<[u8; 6]>>,
    pub v4: HashMap<u32, bool>,
}

impl Table {
    /// Whether `f` may be written here: its map exists with the client's
    /// family, and its MAC is one of that service's servers.
    pub fn admits(&self, f: &Flow) -> bool {
        self.v4.get(&f.map) == Some(&f.client.is_ipv4())
            && self.live.get(&f.map).is_some_and(|m| m.contains(&f.mac))
    }
}

/// Why a datagram was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("shorter than its header ({0} bytes)")]
    Short(usize),
    #[error("not a flow-sync datagram")]
    Magic,
    #[error("version {0}, expected 1")]
    Version(u8),
    #[error("entry {0} is cut off")]
    Truncated(u16),
    #[error("entry {0} has family {1}")]
    Family(u16, u8),
    #[error("{0} bytes after the last entry")]
    Trailing(usize),
}

const MAGIC: &[u8; 4] = b"KRFL";
const VERSION: u8 = 1;
const HEADER: usize = 8;

fn entry_len(f: &Flow) -> usize {
    1 + 4 + 6 + 2 + 4 + if f.client.is_ipv4() { 4 } else { 16 }
}

/// `flows` as datagrams of at most `max` bytes (at least one entry per
/// datagram, whatever `max` says).
pub fn encode(sync_id: u8, flows: &[Flow], max: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut count: u16 = 0;
    let start = |b: &mut Vec<u8>| {
        b.clear();
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&[VERSION, sync_id, 0, 0]);
    };
    start(&mut buf);
    for f in flows {
        if count > 0 && (buf.len() + entry_len(f) > max || count == u16::MAX) {
            buf[6..8].copy_from_slice(&count.to_be_bytes());
            out.push(std::mem::take(&mut buf));
            start(&mut buf);
            count = 0;
        }
        match f.client {
            IpAddr::V4(_) => buf.push(4),
            IpAddr::V6(_) => buf.push(6),
        }
        buf.extend_from_slice(&f.map.to_be_bytes());
        buf.extend_from_slice(&f.mac);
        buf.extend_from_slice(&f.port.to_be_bytes());
        buf.extend_from_slice(&f.expires.to_be_bytes());
        match f.client {
            IpAddr::V4(a) => buf.extend_from_slice(&a.octets()),
            IpAddr::V6(a) => buf.extend_from_slice(&a.octets()),
        }
        count += 1;
    }
    if count > 0 {
        buf[6..8].copy_from_slice(&count.to_be_bytes());
        out.push(buf);
    }
    out
}

fn take<const N: usize>(b: &[u8], at: &mut usize) -> Option<[u8; N]> {
    let s = b.get(*at..*at + N)?;
    *at += N;
    s.try_into().ok()
}

/// A datagram's sync id and entries; every byte accounted for.
pub fn decode(b: &[u8]) -> Result<(u8, Vec<Flow>), WireError> {
    if b.len() < HEADER {
        return Err(WireError::Short(b.len()));
    }
    if &b[..4] != MAGIC {
        return Err(WireError::Magic);
    }
    if b[4] != VERSION {
        return Err(WireError::Version(b[4]));
    }
    let sync_id = b[5];
    let count = u16::from_be_bytes([b[6], b[7]]);
    let mut at = HEADER;
    let mut flows = Vec::with_capacity(usize::from(count).min(b.len() / 21));
    for n in 0..count {
        let cut = WireError::Truncated(n);
        let [family] = take::<1>(b, &mut at).ok_or(cut.clone())?;
        let map = u32::from_be_bytes(take(b, &mut at).ok_or(cut.clone())?);
        let mac = take::<6>(b, &mut at).ok_or(cut.clone())?;
        let port = u16::from_be_bytes(take(b, &mut at).ok_or(cut.clone())?);
        let expires = u32::from_be_bytes(take(b, &mut at).ok_or(cut.clone())?);
        let client = match family {
            4 => IpAddr::from(take::<4>(b, &mut at).ok_or(cut)?),
            6 => IpAddr::from(take::<16>(b, &mut at).ok_or(cut)?),
            other => return Err(WireError::Family(n, other)),
        };
        flows.push(Flow {
            map,
            client,
            port,
            mac,
            expires,
        });
    }
    if at != b.len() {
        return Err(WireError::Trailing(b.len() - at));
    }
    Ok((sync_id, flows))
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut m = [0u8; 6];
    let mut parts = s.split(':');
    for byte in &mut m {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(m)
}

/// `flows_<key>` / `live_<key>`: the key, for our own names only.
fn key_of(name: &str, prefix: &str) -> Option<u32> {
    let hex = name.strip_prefix(prefix)?;
    (hex.len() == 8)
        .then(|| u32::from_str_radix(hex, 16).ok())
        .flatten()
}

/// One map element of `nft -j`: `[{"elem": {"val": {"concat": [addr,
/// port]}, "expires": N}}, "mac"]`.
fn element(map: u32, e: &serde_json::Value) -> Option<Flow> {
    let pair = e.as_array()?;
    let (k, v) = (pair.first()?, pair.get(1)?);
    let inner = k.get("elem")?;
    let concat = inner.get("val")?.get("concat")?.as_array()?;
    let client: IpAddr = concat.first()?.as_str()?.parse().ok()?;
    let port = u16::try_from(concat.get(1)?.as_u64()?).ok()?;
    let expires = inner
        .get("expires")
        .and_then(serde_json::Value::as_u64)
        .map_or(0, |x| u32::try_from(x).unwrap_or(u32::MAX));
    Some(Flow {
        map,
        client,
        port,
        mac: parse_mac(v.as_str()?)?,
        expires,
    })
}

/// Our netdev table as `nft -j list table netdev keepalived_rs` prints
/// it. Objects that are not ours, or that this reader does not follow,
/// are left out.
pub fn parse(json: &str) -> Result<Table, Error> {
    let v: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| Error::NftRefused(format!("nft -j: unreadable output: {e}")))?;
    let mut t = Table::default();
    let Some(items) = v.get("nftables").and_then(serde_json::Value::as_array) else {
        return Ok(t);
    };
    for item in items {
        if let Some(m) = item.get("map") {
            let Some(key) = m
                .get("name")
                .and_then(serde_json::Value::as_str)
                .and_then(|n| key_of(n, "flows_"))
            else {
                continue;
            };
            let family = m
                .get("type")
                .and_then(serde_json::Value::as_array)
                .and_then(|t| t.first())
                .and_then(serde_json::Value::as_str);
            match family {
                Some("ipv4_addr") => t.v4.insert(key, true),
                Some("ipv6_addr") => t.v4.insert(key, false),
                // A map of ours this reader does not know: left alone.
                _ => continue,
            };
            for e in m
                .get("elem")
                .and_then(serde_json::Value::as_array)
                .into_iter()
                .flatten()
            {
                t.flows.extend(element(key, e));
            }
        } else if let Some(s) = item.get("set") {
            let Some(key) = s
                .get("name")
                .and_then(serde_json::Value::as_str)
                .and_then(|n| key_of(n, "live_"))
            else {
                continue;
            };
            let macs = s
                .get("elem")
                .and_then(serde_json::Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|m| m.as_str().and_then(parse_mac))
                .collect();
            t.live.insert(key, macs);
        }
    }
    Ok(t)
}

/// Reads our netdev table (an empty one when it does not exist yet).
pub fn dump() -> Result<Table, Error> {
    let out = crate::nft::run(
        &["-j", "list", "table", "netdev", crate::nft::TABLE],
        "",
        crate::nft::NFT_READ_TIMEOUT,
    )?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        if why.contains("No such file or directory") {
            return Ok(Table::default());
        }
        return Err(Error::NftRefused(why.trim().to_owned()));
    }
    parse(&String::from_utf8_lossy(&out.stdout))
}

/// How far a received entry's remaining time may be from ours before
/// ours is written again (seconds).
const SLACK: u32 = 30;

/// The most entries a map takes from other directors: past it, a flood
/// of forged entries cannot grow it further.
pub const MAP_MAX: usize = 200_000;
/// Entries per transaction: one refused transaction loses no more.
pub const CHUNK: usize = 4096;

/// How `restore` treats an entry the map already has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overwrite {
    /// This director does not carry the VIP: the sender's choice and time
    /// win.
    Theirs,
    /// This director carries traffic itself: its own choice stays, and
    /// an entry's time is only ever extended.
    Ours,
}

/// What `restore` will write, and what it leaves out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restore {
    /// The transactions, each of at most [`CHUNK`] entries (none:
    /// nothing to write).
    pub transactions: Vec<String>,
    /// The entries each transaction writes (one list per transaction).
    pub entries: Vec<Vec<Flow>>,
    /// Entries written (new, moved or refreshed).
    pub written: usize,
    /// Entries for a map this director does not have (or of the other
    /// family), a MAC its service does not use, or a map already full.
    pub refused: usize,
    /// Entries for a map whose servers' MACs this director does not know
    /// yet (its `live` set is empty): to be tried again.
    pub waiting: Vec<Flow>,
}

fn family_word(a: IpAddr) -> String {
    match a {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => a.to_string(),
    }
}

fn mac_word(m: [u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// The transactions that write `incoming` into the maps of `now` (what
/// the table holds): a new entry is added; one held with the same server
/// is written again when its time left differs by more than [`SLACK`]
/// (under [`Overwrite::Ours`]: only when the incoming time is longer);
/// one held with another server is replaced under [`Overwrite::Theirs`]
/// and left under [`Overwrite::Ours`]. Entries `now` does not admit
/// ([`Table::admits`]) are refused, and so are new ones past [`MAP_MAX`]
/// in their map. Each entry is deleted before it is added again, so a
/// transaction holds only deletes of entries `now` has.
pub fn restore(now: &Table, incoming: &[Flow], overwrite: Overwrite) -> Restore {
    let held: HashMap<(u32, IpAddr, u16), &Flow> = now.flows.iter().map(|f| (f.key(), f)).collect();
    let mut sizes: HashMap<u32, usize> = HashMap::new();
    for f in &now.flows {
        *sizes.entry(f.map).or_default() += 1;
    }
    let mut r = Restore::default();
    let mut seen = HashSet::new();
    let mut text = String::new();
    let mut chunk: Vec<Flow> = Vec::new();
    for f in incoming {
        if !now.admits(f) {
            let unresolved = now.v4.get(&f.map) == Some(&f.client.is_ipv4())
                && now.live.get(&f.map).is_none_or(HashSet::is_empty);
            if unresolved {
                r.waiting.push(*f);
            } else {
                r.refused += 1;
            }
            continue;
        }
        if f.expires == 0 || !seen.insert(f.key()) {
            continue;
        }
        let name = format!("flows_{:08x}", f.map);
        let key = format!("{} . {}", family_word(f.client), f.port);
        let expires = f
            .expires
            .min(u32::try_from(crate::nft::FLOW_TIMEOUT.as_secs()).unwrap_or(u32::MAX));
        match held.get(&f.key()) {
            Some(h) if h.mac == f.mac && h.expires.abs_diff(expires) <= SLACK => continue,
            Some(h) if overwrite == Overwrite::Ours && (h.mac != f.mac || expires <= h.expires) => {
                continue
            }
            Some(_) => {
                let _ = writeln!(
                    text,
                    "delete element netdev {} {name} {{ {key} }}",
                    crate::nft::TABLE
                );
            }
            None => {
                let size = sizes.entry(f.map).or_default();
                if *size >= MAP_MAX {
                    r.refused += 1;
                    continue;
                }
                *size += 1;
            }
        }
        let _ = writeln!(
            text,
            "add element netdev {} {name} {{ {key} timeout {}s expires {expires}s : {} }}",
            crate::nft::TABLE,
            crate::nft::FLOW_TIMEOUT.as_secs(),
            mac_word(f.mac)
        );
        r.written += 1;
        chunk.push(*f);
        if chunk.len() == CHUNK {
            r.transactions.push(std::mem::take(&mut text));
            r.entries.push(std::mem::take(&mut chunk));
        }
    }
    if !text.is_empty() {
        r.transactions.push(text);
        r.entries.push(chunk);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(last: u8, port: u16, mac: u8) -> Flow {
        Flow {
            map: 0x1234_abcd,
            client: IpAddr::from([198, 51, 100, last]),
            port,
            mac: [2, 0, 0, 0, 0, mac],
            expires: 850,
        }
    }

    #[test]
    fn datagrams_round_trip_in_both_families_and_respect_the_size() {
        let mut flows: Vec<Flow> = (0..200).map(|i| flow(100, 40000 + i, 50)).collect();
        flows.push(Flow {
            client: "2001:db8::7".parse().unwrap(),
            ..flow(0, 1, 51)
        });
        let grams = encode(9, &flows, 1400);
        assert!(grams.len() > 1);
        assert!(grams.iter().all(|g| g.len() <= 1400));
        let mut back = Vec::new();
        for g in &grams {
            let (id, f) = decode(g).unwrap();
            assert_eq!(id, 9);
            back.extend(f);
        }
        assert_eq!(back, flows);
    }

    #[test]
    fn bad_datagrams_are_refused_with_the_reason() {
        let good = encode(1, &[flow(100, 1, 50)], 1400).remove(0);
        assert_eq!(decode(&good[..5]), Err(WireError::Short(5)));
        let mut b = good.clone();
        b[0] = b'X';
        assert_eq!(decode(&b), Err(WireError::Magic));
        let mut b = good.clone();
        b[4] = 2;
        assert_eq!(decode(&b), Err(WireError::Version(2)));
        assert_eq!(
            decode(&good[..good.len() - 1]),
            Err(WireError::Truncated(0))
        );
        let mut b = good.clone();
        b.push(0);
        assert_eq!(decode(&b), Err(WireError::Trailing(1)));
        let mut b = good.clone();
        b[8] = 5;
        assert_eq!(decode(&b), Err(WireError::Family(0, 5)));
        // A count far beyond the bytes: cut off, no huge allocation.
        let mut b = good;
        b[6..8].copy_from_slice(&u16::MAX.to_be_bytes());
        assert_eq!(decode(&b), Err(WireError::Truncated(1)));
    }

    const DUMP: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
      {"table": {"family": "netdev", "name": "keepalived_rs", "handle": 1}},
      {"map": {"family": "netdev", "name": "flows_1234abcd", "table": "keepalived_rs", "type": ["ipv4_addr", "inet_service"], "handle": 1, "map": "ether_addr", "flags": ["timeout"], "timeout": 900,
        "elem": [[{"elem": {"val": {"concat": ["198.51.100.100", 40000]}, "expires": 849}}, "02:00:00:00:00:32"],
                 [{"elem": {"val": {"concat": ["198.51.100.101", 40001]}, "expires": 12}}, "02:00:00:00:00:33"]]}},
      {"map": {"family": "netdev", "name": "persist_1234abcd", "table": "keepalived_rs", "type": "ipv4_addr", "handle": 2, "map": "ether_addr",
        "elem": [[{"elem": {"val": "198.51.100.100", "expires": 100}}, "02:00:00:00:00:32"]]}},
      {"set": {"family": "netdev", "name": "live_1234abcd", "table": "keepalived_rs", "type": "ether_addr", "handle": 3, "elem": ["02:00:00:00:00:32", "02:00:00:00:00:33"]}},
      {"set": {"family": "netdev", "name": "live_0000ffff", "table": "keepalived_rs", "type": "ether_addr", "handle": 4}}]}"#;

    #[test]
    fn the_table_is_read_from_nft_json() {
        let t = parse(DUMP).unwrap();
        assert_eq!(
            t.flows,
            vec![
                Flow {
                    expires: 849,
                    ..flow(100, 40000, 0x32)
                },
                Flow {
                    expires: 12,
                    ..flow(101, 40001, 0x33)
                }
            ]
        );
        assert_eq!(t.live[&0x1234_abcd].len(), 2);
        assert!(t.live[&0x0000_ffff].is_empty());
        assert_eq!(t.v4.get(&0x1234_abcd), Some(&true));
        assert!(parse("not json").is_err());
        assert_eq!(parse("{}").unwrap(), Table::default());
    }

    #[test]
    fn restore_adds_new_replaces_moved_refreshes_stale_and_refuses_foreign() {
        let now = parse(DUMP).unwrap();
        let incoming = [
            // New.
            flow(102, 40002, 0x32),
            // Held, same server, time close to ours: nothing to write.
            Flow {
                expires: 840,
                ..flow(100, 40000, 0x32)
            },
            // Held with another server.
            flow(101, 40001, 0x32),
            // A server the service does not use, a map we do not have.
            flow(103, 1, 0x99),
            Flow {
                map: 7,
                ..flow(104, 1, 0x32)
            },
        ];
        let theirs = restore(&now, &incoming, Overwrite::Theirs);
        assert_eq!(theirs.written, 2);
        assert_eq!(theirs.refused, 2);
        assert_eq!(
            theirs.transactions.concat(),
            "add element netdev keepalived_rs flows_1234abcd { 198.51.100.102 . 40002 timeout 900s expires 850s : 02:00:00:00:00:32 }\n\
             delete element netdev keepalived_rs flows_1234abcd { 198.51.100.101 . 40001 }\n\
             add element netdev keepalived_rs flows_1234abcd { 198.51.100.101 . 40001 timeout 900s expires 850s : 02:00:00:00:00:32 }\n"
        );
        let ours = restore(&now, &incoming, Overwrite::Ours);
        assert_eq!(ours.written, 1);
        assert!(!ours.transactions.concat().contains("delete"));
        // A held entry whose time differs: written again under Ours only
        // when the incoming time is longer (a forged short one cannot
        // expire it); under Theirs, either way.
        let longer = Flow {
            expires: 800,
            ..flow(101, 40001, 0x33)
        };
        let refresh = restore(&now, &[longer], Overwrite::Ours);
        assert_eq!(refresh.written, 1);
        assert!(refresh.transactions[0].starts_with("delete element"));
        let shorter = Flow {
            expires: 1,
            ..flow(100, 40000, 0x32)
        };
        assert_eq!(restore(&now, &[shorter], Overwrite::Ours).written, 0);
        assert_eq!(restore(&now, &[shorter], Overwrite::Theirs).written, 1);
        // The other family for an IPv4 map: refused, no transaction that
        // nft would refuse whole.
        let v6 = Flow {
            client: "2001:db8::1".parse().unwrap(),
            ..flow(0, 1, 0x32)
        };
        let r = restore(&now, &[v6], Overwrite::Theirs);
        assert_eq!((r.written, r.refused), (0, 1));
        assert!(r.transactions.is_empty());
        // A map whose servers' MACs are not known yet: kept for later.
        let mut unresolved = now.clone();
        unresolved.live.insert(0x1234_abcd, HashSet::new());
        let r = restore(&unresolved, &[flow(102, 40002, 0x32)], Overwrite::Theirs);
        assert_eq!((r.written, r.refused, r.waiting.len()), (0, 0, 1));
    }

    #[test]
    fn restore_chunks_and_stops_at_the_cap() {
        let mut now = parse(DUMP).unwrap();
        let many: Vec<Flow> = (0..10_000u32)
            .map(|i| Flow {
                client: IpAddr::from((0xcb00_7100u32 + i / 60_000).to_be_bytes()),
                port: u16::try_from(1000 + i % 60_000).unwrap(),
                ..flow(0, 0, 0x32)
            })
            .collect();
        let r = restore(&now, &many, Overwrite::Theirs);
        assert_eq!(r.written, 10_000);
        assert_eq!(r.transactions.len(), 3);
        assert!(r.transactions.iter().all(|t| t.lines().count() <= CHUNK));
        assert_eq!(
            r.entries.iter().map(Vec::len).collect::<Vec<_>>(),
            [CHUNK, CHUNK, 10_000 - 2 * CHUNK]
        );
        // A map already at the cap takes no new entry.
        now.flows = (0..MAP_MAX)
            .map(|i| Flow {
                client: IpAddr::from((0x0a00_0000u32 + u32::try_from(i).unwrap()).to_be_bytes()),
                ..flow(0, 1, 0x32)
            })
            .collect();
        let r = restore(&now, &many[..10], Overwrite::Theirs);
        assert_eq!((r.written, r.refused), (0, 10));
    }

    proptest::proptest! {
        /// Any bytes: no panic; what decodes encodes back to the same bytes.
        #[test]
        fn any_bytes_decode_or_are_refused(data in proptest::collection::vec(proptest::num::u8::ANY, 0..600), magic in proptest::bool::ANY) {
            let mut data = data;
            if magic && data.len() >= 8 {
                data[..5].copy_from_slice(b"KRFL\x01");
            }
            if let Ok((id, flows)) = decode(&data) {
                if !flows.is_empty() {
                    proptest::prop_assert_eq!(encode(id, &flows, usize::MAX), vec![data.clone()]);
                }
            }
        }
    }
}
