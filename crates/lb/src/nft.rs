//! The nftables data plane: a virtual server's traffic sent to its real
//! servers by rules in our own tables (`keepalived_rs`), every change one
//! atomic `nft -f` transaction.
//!
//! - **DR** (`lb_kind DR`, the seed's LVS-DR): a `netdev` ingress chain on
//!   the director's interface rewrites the destination MAC to the chosen
//!   real server's and forwards the frame out of the same interface, the IP
//!   packet untouched. The choice is made once per connection and kept in
//!   a dynamic map keyed by the client's address and port (refreshed by
//!   every packet, 15 minutes idle as IPVS's TCP timeout), so a connection
//!   stays on its server whatever later happens to the server set.
//! - **NAT** (`lb_kind NAT`): a `nat` prerouting chain DNATs new
//!   connections; conntrack keeps each connection on its server.
//!
//! [`render`] is pure: the desired state in, the transaction's text out.
//! The maps of flows survive every later transaction of the same run
//! (chains are flushed and refilled; maps are only created).

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Duration;

use crate::model::{Desired, Kind, Proto, Real, Service};
use crate::sched::Selector;
use crate::Error;

/// Our tables' name, in every family we use.
pub const TABLE: &str = "keepalived_rs";

/// The seed of every `jhash`: fixed, so that every director (and every
/// later transaction) hashes a client to the same slot — without one the
/// kernel draws a random seed per rule, and a failover or any change of the
/// server set would move every hashed client.
pub const SEED: u32 = 0x6b72_7301;

/// How long an idle connection keeps its server (IPVS's TCP established
/// timeout is 15 minutes).
pub const FLOW_TIMEOUT: Duration = Duration::from_secs(900);

fn mac(m: [u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// A stable id for a real server (for the consistent-hash schedulers):
/// its address and port, hashed.
pub fn real_id(r: &Real) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes: Vec<u8> = match r.addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    for b in bytes.iter().chain(&r.port.to_be_bytes()) {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The expression choosing a slot in `0..n`.
fn selector(sel: Selector, fam: &str, n: usize) -> String {
    match sel {
        Selector::EachNewFlow => format!("numgen inc mod {n}"),
        Selector::SourceHash => format!("jhash {fam} saddr mod {n} seed {SEED:#x}"),
        Selector::DestinationHash => format!("jhash {fam} daddr mod {n} seed {SEED:#x}"),
    }
}

/// The reals a service's slots point at, and the slots (indexes into
/// those reals). DR leaves out reals whose MAC is not known.
fn slots(s: &Service) -> (Vec<&Real>, Selector, Vec<usize>) {
    let usable: Vec<&Real> = s
        .reals
        .iter()
        .filter(|r| s.kind == Kind::Nat || r.mac.is_some())
        .collect();
    let weights: Vec<u32> = usable.iter().map(|r| r.weight).collect();
    let ids: Vec<u64> = usable.iter().map(|r| real_id(r)).collect();
    let (sel, slots) = crate::sched::table(s.algo, &weights, &ids);
    (usable, sel, slots)
}

fn family(addr: IpAddr) -> (&'static str, &'static str, &'static str) {
    match addr {
        IpAddr::V4(_) => ("ip", "ip", "ipv4_addr"),
        IpAddr::V6(_) => ("ip6", "ip6", "ipv6_addr"),
    }
}

/// The transaction that makes the kernel match `d`. `fresh`: the first
/// of this run (our tables are deleted first, whatever a previous run
/// left in them).
pub fn render(d: &Desired, fresh: bool) -> String {
    let mut out = String::new();
    let families = ["netdev", "ip", "ip6"];
    for f in families {
        let _ = writeln!(out, "add table {f} {TABLE}");
        if fresh {
            let _ = writeln!(out, "delete table {f} {TABLE}");
            let _ = writeln!(out, "add table {f} {TABLE}");
        }
    }
    // DR: one ingress chain per device.
    let mut devices: Vec<&str> = d
        .services
        .iter()
        .filter(|s| s.kind == Kind::Dr)
        .map(|s| s.device.as_str())
        .collect();
    devices.sort_unstable();
    devices.dedup();
    for dev in &devices {
        let chain = format!("ingress_{}", chain_name(dev));
        let _ = writeln!(
            out,
            "add chain netdev {TABLE} {chain} {{ type filter hook ingress device \"{dev}\" priority 0; policy accept; }}"
        );
        let _ = writeln!(out, "flush chain netdev {TABLE} {chain}");
    }
    for (fam, hook, prio) in [
        ("ip", "prerouting", "dstnat"),
        ("ip6", "prerouting", "dstnat"),
        ("ip", "postrouting", "srcnat"),
        ("ip6", "postrouting", "srcnat"),
    ] {
        let _ = writeln!(
            out,
            "add chain {fam} {TABLE} nat_{hook} {{ type nat hook {hook} priority {prio}; policy accept; }}"
        );
        let _ = writeln!(out, "flush chain {fam} {TABLE} nat_{hook}");
    }
    for s in &d.services {
        match s.kind {
            Kind::Dr => dr(&mut out, &map_key(s), s),
            Kind::Nat => nat(&mut out, s),
            // Never given to this plane (see `Kind::Tun`).
            Kind::Tun(_) => {}
        }
    }
    out
}

/// A device name as part of a chain name (letters, digits, `_`).
fn chain_name(dev: &str) -> String {
    dev.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// A service's own name for its maps: a hash of its address, port and
/// protocol, so that a service coming or going never hands its maps (and
/// its connections) to another.
fn map_key(s: &Service) -> String {
    let id = real_id(&Real {
        addr: s.vip,
        port: s.port,
        weight: 0,
        mac: None,
    }) ^ u64::from(s.fwmark.unwrap_or(0))
        ^ if s.proto == Proto::Udp {
            0x5544_5000
        } else {
            0
        };
    format!("{:08x}", id & 0xffff_ffff)
}

fn dr(out: &mut String, i: &str, s: &Service) {
    if s.fwmark.is_some() {
        // Marks are set after the ingress hook: nothing to match on here.
        return;
    }
    let (fam, l3, addr_type) = family(s.vip);
    if fam == "ip6" {
        // The MAC rewrite works the same; the match needs ip6 fields.
    }
    let chain = format!("ingress_{}", chain_name(&s.device));
    let p = s.proto.word();
    let flows = format!("flows_{i}");
    let _ = writeln!(
        out,
        "add map netdev {TABLE} {flows} {{ type {addr_type} . inet_service : ether_addr; flags dynamic,timeout; timeout {}s; }}",
        FLOW_TIMEOUT.as_secs()
    );
    // Frames sent to this director only (`pkttype host`: to its MAC, as
    // the frame arrived — it stays so when a rule below rewrites the
    // MAC): a switch floods frames for a MAC it has not learnt (or has
    // forgotten) to every port, and the backup must not forward a copy of
    // the master's traffic.
    let matched = format!(
        "meta pkttype host {l3} daddr {} {p} dport {}",
        s.vip, s.port
    );
    // The servers that may still carry connections (healthy, or
    // inhibited at weight 0): a remembered choice of any other server is
    // not followed — the connection or client is scheduled again.
    let live = format!("live_{i}");
    let _ = writeln!(out, "add set netdev {TABLE} {live} {{ type ether_addr; }}");
    let _ = writeln!(out, "flush set netdev {TABLE} {live}");
    let macs: Vec<String> = s.reals.iter().filter_map(|r| r.mac.map(mac)).collect();
    if !macs.is_empty() {
        let _ = writeln!(
            out,
            "add element netdev {TABLE} {live} {{ {} }}",
            macs.join(", ")
        );
    }
    let key = format!("{l3} saddr . {p} sport");
    let remember = format!("update @{flows} {{ {key} : ether daddr }}");
    let fwd = format!(
        "ether saddr set {} fwd to \"{}\"",
        mac(s.device_mac),
        s.device
    );
    // Known connections: their server. Refreshing the entry on every packet
    // costs a tenth of DR's throughput, so TCP refreshes it on packets that
    // carry SYN, FIN, RST or PSH (every message a client sends) and on one
    // packet in 16 at random (a long stream of bare ACKs): any connection
    // that is not idle keeps its entry; one idle for the timeout loses it,
    // as it would its IPVS connection entry. UDP refreshes on every packet.
    let known = format!("ether daddr set {key} map @{flows} ether daddr @{live}");
    let refreshes: &[&str] = match s.proto {
        Proto::Tcp => &[
            "tcp flags & (fin | syn | rst | psh) != 0 ",
            "numgen random mod 16 0 ",
        ],
        Proto::Udp => &[""],
    };
    for when in refreshes {
        let _ = writeln!(
            out,
            "add rule netdev {TABLE} {chain} {matched} {when}{known} {remember} {fwd}"
        );
    }
    if s.proto == Proto::Tcp {
        let _ = writeln!(
            out,
            "add rule netdev {TABLE} {chain} {matched} {known} {fwd}"
        );
    }
    let (reals, sel, slots) = slots(s);
    if slots.is_empty() {
        return;
    }
    let persist = s.persistence.map(|(timeout, prefix)| {
        let name = format!("persist_{i}");
        let _ = writeln!(
            out,
            "add map netdev {TABLE} {name} {{ type {addr_type} : ether_addr; flags dynamic,timeout; timeout {}s; }}",
            timeout.as_secs().max(1)
        );
        let source = if (fam == "ip" && prefix >= 32) || prefix >= 128 {
            format!("{l3} saddr")
        } else {
            format!("{l3} saddr & {}", mask(s.vip, prefix))
        };
        (name, source)
    });
    if let Some((name, source)) = &persist {
        // A client seen within persistence_timeout: its server again.
        let _ = writeln!(
            out,
            "add rule netdev {TABLE} {chain} {matched} ether daddr set {source} map @{name} ether daddr @{live} {remember} update @{name} {{ {source} : ether daddr }} {fwd}"
        );
    }
    let table: Vec<String> = slots
        .iter()
        .enumerate()
        .filter_map(|(k, &r)| Some(format!("{k} : {}", mac(reals.get(r)?.mac?))))
        .collect();
    let also = persist
        .as_ref()
        .map(|(name, source)| format!(" update @{name} {{ {source} : ether daddr }}"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "add rule netdev {TABLE} {chain} {matched} ether daddr set {} map {{ {} }} {remember}{also} {fwd}",
        selector(sel, l3, slots.len()),
        table.join(", ")
    );
}

fn nat(out: &mut String, s: &Service) {
    let (fam, l3, _) = family(s.vip);
    let p = s.proto.word();
    let (reals, mut sel, slots) = slots(s);
    if slots.is_empty() {
        return;
    }
    // Persistence: the client's address (network) picks its server, stable
    // while the server set is.
    let mut source = format!("{l3} saddr");
    if let Some((_, prefix)) = s.persistence {
        sel = Selector::SourceHash;
        if !((fam == "ip" && prefix >= 32) || prefix >= 128) {
            source = format!("{l3} saddr & {}", mask(s.vip, prefix));
        }
    }
    let choose = match sel {
        Selector::SourceHash => format!("jhash {source} mod {} seed {SEED:#x}", slots.len()),
        other => selector(other, l3, slots.len()),
    };
    // A real server without a port (a fwmark service's) keeps the
    // packet's own port, as IPVS does: an address-only map.
    let keep_port = reals.iter().all(|r| r.port == 0);
    let target = |r: &Real| match (r.addr, keep_port) {
        (IpAddr::V4(a), false) => format!("{a} . {}", r.port),
        (IpAddr::V6(a), false) => format!("[{a}] . {}", r.port),
        (a, true) => a.to_string(),
    };
    let table: Vec<String> = slots
        .iter()
        .enumerate()
        .filter_map(|(k, &r)| Some(format!("{k} : {}", target(reals.get(r)?))))
        .collect();
    let matched = match s.fwmark {
        // DNAT to a port needs the transport protocol matched first.
        Some(m) => format!("meta mark {m} meta l4proto {p}"),
        None => format!("{l3} daddr {} {p} dport {}", s.vip, s.port),
    };
    let _ = writeln!(
        out,
        "add rule {fam} {TABLE} nat_prerouting {matched} dnat {fam} to {choose} map {{ {} }}",
        table.join(", ")
    );
    if s.snat {
        // The connections this service DNATed leave with the director's
        // address as their source.
        let original = match s.fwmark {
            // The first packet carries the mark; NAT is decided on it.
            Some(m) => format!("meta mark {m} meta l4proto {p}"),
            None => format!(
                "meta l4proto {p} ct original {l3} daddr {} ct original proto-dst {}",
                s.vip, s.port
            ),
        };
        let _ = writeln!(
            out,
            "add rule {fam} {TABLE} nat_postrouting ct status dnat {original} masquerade"
        );
    }
}

/// The network mask of a `prefix`-bit prefix, in `like`'s family.
fn mask(like: IpAddr, prefix: u8) -> String {
    match like {
        IpAddr::V4(_) => {
            let bits = u32::MAX
                .checked_shl(32 - u32::from(prefix.min(32)))
                .unwrap_or(0);
            std::net::Ipv4Addr::from(bits).to_string()
        }
        IpAddr::V6(_) => {
            let bits = u128::MAX
                .checked_shl(128 - u32::from(prefix.min(128)))
                .unwrap_or(0);
            std::net::Ipv6Addr::from(bits).to_string()
        }
    }
}

/// The transaction that removes everything of ours.
pub fn teardown() -> String {
    ["netdev", "ip", "ip6"]
        .iter()
        .fold(String::new(), |mut out, f| {
            let _ = writeln!(out, "add table {f} {TABLE}\ndelete table {f} {TABLE}");
            out
        })
}

/// The nftables data plane: our tables, one transaction per change.
#[derive(Debug, Default)]
pub struct Nft {
    /// The steady form of what was last applied (`None`: nothing yet).
    applied: Option<String>,
}

impl crate::DataPlane for Nft {
    fn name(&self) -> &'static str {
        "nftables"
    }

    fn apply(&mut self, desired: &Desired) -> Result<bool, Error> {
        let steady = render(desired, false);
        if self.applied.as_deref() == Some(steady.as_str()) {
            return Ok(false);
        }
        apply(&render(desired, self.applied.is_none()))?;
        self.applied = Some(steady);
        Ok(true)
    }

    fn clear(&mut self) -> Result<(), Error> {
        if self.applied.take().is_some() {
            apply(&teardown())?;
        }
        Ok(())
    }
}

/// How long one `nft` run may take before it is killed: a hung `nft`
/// must not stall the thread that called it. A read of a large table
/// (`nft -j list`, ~13 µs an entry) gets [`NFT_READ_TIMEOUT`].
pub const NFT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
pub const NFT_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

fn spawn_named<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<std::thread::JoinHandle<T>, Error> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(Error::Nft)
}

/// Runs `nft ARGS` with `input` on its stdin, for at most `limit`: its
/// exit status and what it wrote. stdin is written and stdout and
/// stderr read on threads of their own, so no full pipe can block the
/// caller past `limit`; the child is reaped on every path.
pub fn run(
    args: &[&str],
    input: &str,
    limit: std::time::Duration,
) -> Result<std::process::Output, Error> {
    run_program("nft", args, input, limit)
}

/// Everything a pipe gives until it closes.
fn read_all(pipe: Option<impl std::io::Read>) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Some(mut p) = pipe {
        let _ = p.read_to_end(&mut buf);
    }
    buf
}

/// [`run`] for any program (conntrackd's `-s`, say).
pub fn run_program(
    program: &str,
    args: &[&str],
    input: &str,
    limit: std::time::Duration,
) -> Result<std::process::Output, Error> {
    use std::io::Write as _;
    let mut child = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(Error::NftSpawn)?;
    let deadline = std::time::Instant::now() + limit;
    let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let input = input.to_owned();
    let threads = (|| {
        let w = spawn_named("nft-in", move || {
            if let Some(mut p) = stdin {
                // An nft that exits early closes the pipe: its status says why.
                let _ = p.write_all(input.as_bytes());
            }
        })?;
        let o = spawn_named("nft-out", move || read_all(stdout))?;
        let e = spawn_named("nft-err", move || read_all(stderr))?;
        Ok::<_, Error>((w, o, e))
    })();
    let reap = |child: &mut std::process::Child| {
        let _ = child.kill();
        let _ = child.wait();
    };
    let (w, o, e) = match threads {
        Ok(t) => t,
        Err(err) => {
            reap(&mut child);
            return Err(err);
        }
    };
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) => {}
            Err(err) => {
                reap(&mut child);
                return Err(Error::Nft(err));
            }
        }
        if std::time::Instant::now() > deadline {
            reap(&mut child);
            return Err(Error::NftRefused(format!(
                "{program} took longer than {} ms and was killed",
                limit.as_millis()
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    // The child is gone: its pipes are closed, the threads end.
    let _ = w.join();
    Ok(std::process::Output {
        status,
        stdout: o.join().unwrap_or_default(),
        stderr: e.join().unwrap_or_default(),
    })
}

/// Runs one transaction through `nft -f -` (atomic: all of it or none).
pub fn apply(transaction: &str) -> Result<(), Error> {
    let out = run(&["-f", "-"], transaction, NFT_TIMEOUT)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::NftRefused(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{IpvsOptions, ProxyOptions};
    use crate::sched::Algo;

    fn real(last: u8, weight: u32) -> Real {
        Real {
            addr: IpAddr::from([198, 51, 100, last]),
            port: 80,
            weight,
            mac: Some([2, 0, 0, 0, 0, last]),
        }
    }

    fn service(kind: Kind, algo: Algo) -> Service {
        Service {
            vip: IpAddr::from([198, 51, 100, 250]),
            fwmark: None,
            port: 80,
            proto: Proto::Tcp,
            kind,
            algo,
            device: "eth0".into(),
            device_mac: [2, 0, 0, 0, 0, 22],
            reals: vec![real(50, 1), real(51, 1)],
            persistence: None,
            sorry: false,
            snat: false,
            ipvs: IpvsOptions::default(),
            proxy: ProxyOptions::default(),
        }
    }

    #[test]
    fn dr_rewrites_the_mac_once_per_connection() {
        let d = Desired {
            services: vec![service(Kind::Dr, Algo::Rr)],
            ..Desired::default()
        };
        let key = map_key(&d.services[0]);
        let t = render(&d, true).replace(&format!("_{key}"), "_0");
        assert!(t.contains("add chain netdev keepalived_rs ingress_eth0 { type filter hook ingress device \"eth0\" priority 0; policy accept; }"), "{t}");
        assert!(t.contains("add map netdev keepalived_rs flows_0 { type ipv4_addr . inet_service : ether_addr; flags dynamic,timeout; timeout 900s; }"), "{t}");
        let matched = "add rule netdev keepalived_rs ingress_eth0 meta pkttype host ip daddr 198.51.100.250 tcp dport 80";
        let known = "ether daddr set ip saddr . tcp sport map @flows_0 ether daddr @live_0";
        assert!(
            t.contains(
                "add element netdev keepalived_rs live_0 { 02:00:00:00:00:32, 02:00:00:00:00:33 }"
            ),
            "{t}"
        );
        let fwd = "ether saddr set 02:00:00:00:00:16 fwd to \"eth0\"";
        // Known connections, refreshed on SYN/FIN/RST/PSH and one packet in
        // 16, else only looked up.
        assert!(t.contains(&format!("{matched} tcp flags & (fin | syn | rst | psh) != 0 {known} update @flows_0 {{ ip saddr . tcp sport : ether daddr }} {fwd}")), "{t}");
        assert!(
            t.contains(&format!(
                "{matched} numgen random mod 16 0 {known} update @flows_0"
            )),
            "{t}"
        );
        assert!(t.contains(&format!("{matched} {known} {fwd}")), "{t}");
        assert!(t.contains("ether daddr set numgen inc mod 2 map { 0 : 02:00:00:00:00:32, 1 : 02:00:00:00:00:33 } update @flows_0"), "{t}");
        assert!(
            t.starts_with("add table netdev keepalived_rs\ndelete table netdev keepalived_rs\n")
        );
        // A later transaction keeps the tables (and so the flows).
        assert!(!render(&d, false).contains("delete table"));
    }

    #[test]
    fn dr_leaves_out_servers_whose_mac_is_unknown_and_persists_by_network() {
        let mut s = service(Kind::Dr, Algo::Wrr);
        s.reals[1].mac = None;
        s.persistence = Some((Duration::from_secs(300), 24));
        let key = map_key(&s);
        let t = render(
            &Desired {
                services: vec![s],
                ..Desired::default()
            },
            false,
        )
        .replace(&format!("_{key}"), "_0");
        assert!(t.contains("map { 0 : 02:00:00:00:00:32 }"), "{t}");
        assert!(t.contains("add map netdev keepalived_rs persist_0 { type ipv4_addr : ether_addr; flags dynamic,timeout; timeout 300s; }"), "{t}");
        assert!(
            t.contains("ether daddr set ip saddr & 255.255.255.0 map @persist_0"),
            "{t}"
        );
    }

    #[test]
    fn nat_dnats_new_connections() {
        let mut s = service(Kind::Nat, Algo::Wrr);
        s.reals[0].weight = 2;
        let t = render(
            &Desired {
                services: vec![s],
                ..Desired::default()
            },
            false,
        );
        assert!(t.contains("add chain ip keepalived_rs nat_prerouting { type nat hook prerouting priority dstnat; policy accept; }"), "{t}");
        assert!(t.contains("add rule ip keepalived_rs nat_prerouting ip daddr 198.51.100.250 tcp dport 80 dnat ip to numgen inc mod 3 map { 0 : 198.51.100.50 . 80, 1 : 198.51.100.51 . 80, 2 : 198.51.100.50 . 80 }"), "{t}");
    }

    #[test]
    fn snat_masquerades_what_the_service_dnated() {
        let mut s = service(Kind::Nat, Algo::Rr);
        s.snat = true;
        let t = render(
            &Desired {
                services: vec![s],
                ..Desired::default()
            },
            false,
        );
        assert!(t.contains("add rule ip keepalived_rs nat_postrouting ct status dnat meta l4proto tcp ct original ip daddr 198.51.100.250 ct original proto-dst 80 masquerade"), "{t}");
    }

    #[test]
    fn fwmark_services_match_the_mark() {
        let mut s = service(Kind::Nat, Algo::Rr);
        s.fwmark = Some(7);
        s.vip = IpAddr::from([0, 0, 0, 0]);
        let t = render(
            &Desired {
                services: vec![s],
                ..Desired::default()
            },
            false,
        );
        assert!(
            t.contains(
                "nat_prerouting meta mark 7 meta l4proto tcp dnat ip to numgen inc mod 2 map"
            ),
            "{t}"
        );
    }

    #[test]
    fn no_live_server_means_no_choice_rule() {
        let mut s = service(Kind::Nat, Algo::Rr);
        for r in &mut s.reals {
            r.weight = 0;
        }
        assert!(!render(
            &Desired {
                services: vec![s],
                ..Desired::default()
            },
            false
        )
        .contains("dnat"));
    }

    #[test]
    fn map_names_belong_to_their_service() {
        let a = service(Kind::Dr, Algo::Rr);
        let mut b = a.clone();
        b.port = 81;
        let mut c = a.clone();
        c.proto = Proto::Udp;
        assert_eq!(map_key(&a), map_key(&a.clone()));
        assert_ne!(map_key(&a), map_key(&b));
        assert_ne!(map_key(&a), map_key(&c));
    }

    #[test]
    fn masks() {
        let v4 = IpAddr::from([0, 0, 0, 0]);
        assert_eq!(mask(v4, 24), "255.255.255.0");
        assert_eq!(mask(v4, 0), "0.0.0.0");
        assert_eq!(mask(IpAddr::from([0u16; 8]), 64), "ffff:ffff:ffff:ffff::");
    }
}
