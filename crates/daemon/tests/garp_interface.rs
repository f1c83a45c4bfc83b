//! Each VIP is announced on its own interface (issue #19, item 2): an
//! instance on eth0 with `203.0.113.250/24 dev eth1` sends that address's
//! gratuitous ARPs on eth1, from eth1's MAC — at takeover, in the
//! `garp_master_refresh` bursts and in the `garp_lower_prio_repeat` burst —
//! and likewise for `virtual_ipaddress_excluded` and for IPv6's unsolicited
//! neighbour advertisements; `use_vmac` applies to the instance's interface
//! only (keepalived's `vrrp_complete_instance` and `send_gratuitous_arp`).
//!
//! ```text
//!   c0 ──sw0── eth0 [lb] eth1 ──sw1── c1
//!   198.51.100.0/24            203.0.113.0/24
//!   2001:db8:100::/64          2001:db8:203::/64
//! ```
//! c0 and c1 capture every frame that reaches them (AF_PACKET).

#![allow(clippy::unwrap_used)] // a test that cannot set up fails, which is what unwrap does

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use netlab::{Lab, Node, Process};

use common::{bin, panic_text};

/// What a captured announcement said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Garp,
    Na,
}

#[derive(Debug, Clone)]
struct Frame {
    at: Instant,
    kind: Kind,
    addr: IpAddr,
    /// The Ethernet source.
    eth_src: [u8; 6],
    /// The ARP sender hardware address, or the NA's target link-layer option.
    hw: Option<[u8; 6]>,
}

fn mac6(b: &[u8]) -> [u8; 6] {
    let mut m = [0; 6];
    m.copy_from_slice(&b[..6]);
    m
}

fn show(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A gratuitous ARP (sender address = target address) or a neighbour
/// advertisement, else `None`.
fn parse(f: &[u8], at: Instant) -> Option<Frame> {
    if f.len() < 14 {
        return None;
    }
    let eth_src = mac6(&f[6..12]);
    match [f[12], f[13]] {
        [0x08, 0x06] if f.len() >= 42 && f[28..32] == f[38..42] => Some(Frame {
            at,
            kind: Kind::Garp,
            addr: IpAddr::V4(Ipv4Addr::new(f[28], f[29], f[30], f[31])),
            eth_src,
            hw: Some(mac6(&f[22..28])),
        }),
        [0x86, 0xdd] if f.len() >= 78 && f[20] == 58 && f[54] == 136 => {
            let mut target = [0u8; 16];
            target.copy_from_slice(&f[62..78]);
            let hw = (f.len() >= 86 && f[78] == 2 && f[79] == 1).then(|| mac6(&f[80..86]));
            Some(Frame {
                at,
                kind: Kind::Na,
                addr: IpAddr::from(target),
                eth_src,
                hw,
            })
        }
        _ => None,
    }
}

/// Captures every announcement reaching `node` until `stop`; the socket is
/// open when this returns.
fn capture(node: &Node, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<Frame>> {
    const ETH_P_ALL: u16 = 0x0003;
    let s = node
        .run(|| {
            socket2::Socket::new(
                socket2::Domain::PACKET,
                socket2::Type::RAW,
                Some(socket2::Protocol::from(i32::from(ETH_P_ALL.to_be()))),
            )
        })
        .unwrap()
        .unwrap();
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    std::thread::spawn(move || {
        let mut frames = Vec::new();
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            if let Ok(n) = std::io::Read::read(&mut &s, &mut buf) {
                frames.extend(parse(&buf[..n], Instant::now()));
            }
        }
        frames
    })
}

/// `lb` between two LANs, with a capturing host on each.
struct Rig {
    lab: Lab,
    dir: PathBuf,
    daemon: Option<Process>,
}

impl Rig {
    fn new(tag: &str) -> Self {
        let mut lab = Lab::new().unwrap();
        let sw0 = lab.add_switch("sw0").unwrap();
        let sw1 = lab.add_switch("sw1").unwrap();
        let lb = lab.add_node("lb").unwrap();
        let c0 = lab.add_node("c0").unwrap();
        let c1 = lab.add_node("c1").unwrap();
        lab.connect(
            &lb,
            &sw0,
            "eth0",
            &["198.51.100.22/24", "2001:db8:100::22/64"],
        )
        .unwrap();
        lab.connect(
            &lb,
            &sw1,
            "eth1",
            &["203.0.113.22/24", "2001:db8:203::22/64"],
        )
        .unwrap();
        lab.connect(
            &c0,
            &sw0,
            "eth0",
            &["198.51.100.99/24", "2001:db8:100::99/64"],
        )
        .unwrap();
        lab.connect(
            &c1,
            &sw1,
            "eth0",
            &["203.0.113.99/24", "2001:db8:203::99/64"],
        )
        .unwrap();
        let dir = std::env::temp_dir().join(format!("{}{tag}", lab.prefix()));
        std::fs::create_dir_all(&dir).unwrap();
        Self {
            lab,
            dir,
            daemon: None,
        }
    }

    fn node(&self, name: &str) -> &Node {
        self.lab.node(name).unwrap()
    }

    /// `ifname`'s MAC in `node`.
    fn mac(&self, node: &str, ifname: &str) -> [u8; 6] {
        let out = self
            .node(node)
            .exec(&["ip", "-o", "link", "show", ifname])
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let word = text
            .split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .unwrap_or_else(|| panic!("no MAC for {ifname}: {text}"));
        let bytes: Vec<u8> = word
            .split(':')
            .map(|h| u8::from_str_radix(h, 16).unwrap())
            .collect();
        mac6(&bytes)
    }

    fn start(&mut self, conf: &str) {
        let path = self.dir.join("lb.conf");
        std::fs::write(&path, conf).unwrap();
        let mut cmd = Command::new(bin());
        cmd.arg("--control")
            .arg(self.dir.join("lb.sock"))
            .args(["-n", "-l", "-D", "-f"])
            .arg(path)
            .arg("-p")
            .arg(self.dir.join("lb.pid"));
        let log = std::fs::File::create(self.log_path()).unwrap();
        self.daemon = Some(self.node("lb").spawn_logged(&cmd, Some(log)).unwrap());
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("lb.log")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn wait_for(&self, addr: &str) {
        self.node("lb")
            .wait_for_address(addr.parse().unwrap(), Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("lb never took {addr} ({e})\n{}", self.log()));
    }

    /// Stops the daemon (SIGTERM), so its log is complete.
    fn stop(&mut self) {
        if let Some(mut p) = self.daemon.take() {
            let _ = p.signal(nix::sys::signal::Signal::SIGTERM);
            let _ = p.wait_timeout(Duration::from_secs(5));
        }
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.daemon = None;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A VRRPv2 advert for VRID 51 at priority 100 (lower than lb's 200) from
/// c0, naming lb's addresses: the master answers with its
/// `garp_lower_prio_repeat` burst.
fn lower_priority_advert(c0: &Node) {
    c0.run(|| {
        let p = common::forged_advert(51, 100, &["198.51.100.250", "203.0.113.250"]);
        let (s, to) = common::advert_socket().unwrap();
        s.send_to(&p, &to).unwrap();
    })
    .unwrap();
}

/// The frames announcing `addr`.
fn about<'a>(frames: &'a [Frame], addr: &str) -> Vec<&'a Frame> {
    let addr: IpAddr = addr.parse().unwrap();
    frames.iter().filter(|f| f.addr == addr).collect()
}

/// `addr` was announced on this LAN at least `min` times, every time from
/// `mac` (Ethernet source and ARP sender / NA target link-layer address).
fn announced(lan: &str, frames: &[Frame], addr: &str, kind: Kind, mac: [u8; 6], min: usize) {
    let seen = about(frames, addr);
    assert!(
        seen.len() >= min,
        "{addr}: {} {kind:?} frame(s) on {lan}'s LAN, expected at least {min}",
        seen.len()
    );
    for f in seen {
        assert_eq!(f.kind, kind, "{addr} on {lan}");
        assert_eq!(
            (show(f.eth_src), f.hw.map(show)),
            (show(mac), Some(show(mac))),
            "{addr} on {lan}: sender MAC"
        );
    }
}

/// `addr` was never announced on this LAN.
fn not_announced(lan: &str, frames: &[Frame], addr: &str) {
    let seen = about(frames, addr);
    assert!(
        seen.is_empty(),
        "{addr} announced on {lan}'s LAN ({} frame(s), from {:?}), where it does not live",
        seen.len(),
        seen.iter()
            .map(|f| show(f.eth_src))
            .collect::<std::collections::BTreeSet<_>>()
    );
}

const GARP: &str = " garp_master_delay 30\n garp_master_repeat 1\n garp_master_refresh 1\n \
                    garp_master_refresh_repeat 2\n garp_lower_prio_delay 30\n garp_lower_prio_repeat 6\n";

#[test]
fn each_vip_is_announced_on_its_own_interface_from_its_mac() {
    if !netlab::privileged("each_vip_is_announced_on_its_own_interface_from_its_mac") {
        return;
    }
    let mut rig = Rig::new("garp-dev");
    let (mac0, mac1) = (rig.mac("lb", "eth0"), rig.mac("lb", "eth1"));
    let stop = Arc::new(AtomicBool::new(false));
    let lan0 = capture(rig.node("c0"), stop.clone());
    let lan1 = capture(rig.node("c1"), stop.clone());
    rig.start(&format!(
        "global_defs {{\n router_id lb\n}}\n\
         vrrp_instance VI_4 {{\n state MASTER\n interface eth0\n virtual_router_id 51\n priority 200\n advert_int 1\n{GARP}\
         virtual_ipaddress {{\n 198.51.100.250/24\n 203.0.113.250/24 dev eth1\n }}\n\
         virtual_ipaddress_excluded {{\n 203.0.113.251/24 dev eth1\n }}\n}}\n\
         vrrp_instance VI_6 {{\n state MASTER\n interface eth0\n virtual_router_id 52\n priority 200\n advert_int 1\n{GARP}\
         virtual_ipaddress {{\n 2001:db8:100::250/64\n 2001:db8:203::250/64 dev eth1\n }}\n\
         virtual_ipaddress_excluded {{\n 2001:db8:203::251/64 dev eth1\n }}\n}}\n"
    ));
    rig.wait_for("203.0.113.250");
    rig.wait_for("2001:db8:203::250");
    // The takeover burst and a few refreshes (2 frames a second).
    std::thread::sleep(Duration::from_millis(3500));
    let forged_at = Instant::now();
    lower_priority_advert(rig.node("c0"));
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let (lan0, lan1) = (lan0.join().unwrap(), lan1.join().unwrap());
    rig.stop();
    let log = rig.log();
    let ctx = format!(
        "eth0 {} eth1 {}\n--- lb's log\n{log}",
        show(mac0),
        show(mac1)
    );
    let check = std::panic::catch_unwind(|| {
        // Where each address lives, and nowhere else.
        for a in [
            "203.0.113.250",
            "203.0.113.251",
            "2001:db8:203::250",
            "2001:db8:203::251",
        ] {
            not_announced("eth0", &lan0, a);
        }
        for a in ["198.51.100.250", "2001:db8:100::250"] {
            not_announced("eth1", &lan1, a);
        }
        // Takeover + at least two refreshes: 1 + 2 + 2.
        announced("eth0", &lan0, "198.51.100.250", Kind::Garp, mac0, 5);
        announced("eth1", &lan1, "203.0.113.250", Kind::Garp, mac1, 5);
        announced("eth1", &lan1, "203.0.113.251", Kind::Garp, mac1, 5);
        announced("eth0", &lan0, "2001:db8:100::250", Kind::Na, mac0, 5);
        announced("eth1", &lan1, "2001:db8:203::250", Kind::Na, mac1, 5);
        announced("eth1", &lan1, "2001:db8:203::251", Kind::Na, mac1, 5);
        // The lower-priority burst (6; a refresh adds at most 2) on eth1 too.
        for a in ["203.0.113.250", "203.0.113.251"] {
            let after = about(&lan1, a).iter().filter(|f| f.at >= forged_at).count();
            assert!(
                after >= 6,
                "{a}: {after} GARP(s) on eth1's LAN after a lower-priority advert, expected the burst of 6"
            );
        }
        // keepalived's words (-D), naming the interface.
        for line in [
            "Sending gratuitous ARP on eth1 for 203.0.113.250",
            "Sending gratuitous ARP on eth1 for 203.0.113.251",
            "Sending gratuitous ARP on eth0 for 198.51.100.250",
            "Sending unsolicited Neighbour Advert on eth1 for 2001:db8:203::250",
            "Sending unsolicited Neighbour Advert on eth0 for 2001:db8:100::250",
        ] {
            assert!(log.contains(line), "no `{line}` in the log");
        }
    });
    if let Err(e) = check {
        let msg = panic_text(e.as_ref());
        panic!("{msg}\n{ctx}");
    }
}

#[test]
fn use_vmac_covers_the_instance_interface_only() {
    if !netlab::privileged("use_vmac_covers_the_instance_interface_only") {
        return;
    }
    let mut rig = Rig::new("garp-vmac");
    let mac1 = rig.mac("lb", "eth1");
    let vmac = [0x00, 0x00, 0x5e, 0x00, 0x01, 51];
    let stop = Arc::new(AtomicBool::new(false));
    let lan0 = capture(rig.node("c0"), stop.clone());
    let lan1 = capture(rig.node("c1"), stop.clone());
    // `dev eth0` names the instance's interface: on the VMAC, as keepalived.
    rig.start(&format!(
        "global_defs {{\n router_id lb\n}}\n\
         vrrp_instance VI_4 {{\n state MASTER\n interface eth0\n use_vmac\n virtual_router_id 51\n priority 200\n advert_int 1\n{GARP}\
         virtual_ipaddress {{\n 198.51.100.250/24\n 198.51.100.251/24 dev eth0\n 203.0.113.250/24 dev eth1\n }}\n}}\n"
    ));
    rig.wait_for("203.0.113.250");
    rig.wait_for("198.51.100.251");
    std::thread::sleep(Duration::from_millis(2500));
    let on_vmac = rig
        .node("lb")
        .exec(&["ip", "-o", "addr", "show", "dev", "vrrp.51"])
        .unwrap();
    let on_vmac = String::from_utf8_lossy(&on_vmac.stdout).into_owned();
    stop.store(true, Ordering::Relaxed);
    let (lan0, lan1) = (lan0.join().unwrap(), lan1.join().unwrap());
    rig.stop();
    let log = rig.log();
    let check = std::panic::catch_unwind(|| {
        not_announced("eth0", &lan0, "203.0.113.250");
        announced("eth1", &lan1, "203.0.113.250", Kind::Garp, mac1, 3);
        announced("eth0", &lan0, "198.51.100.250", Kind::Garp, vmac, 3);
        announced("eth0", &lan0, "198.51.100.251", Kind::Garp, vmac, 3);
        for a in ["198.51.100.250", "198.51.100.251"] {
            assert!(on_vmac.contains(a), "{a} is not on vrrp.51: {on_vmac}");
        }
        assert!(!on_vmac.contains("203.0.113.250"), "{on_vmac}");
        assert!(
            log.contains("Sending gratuitous ARP on vrrp.51 for 198.51.100.251"),
            "no `Sending gratuitous ARP on vrrp.51 for 198.51.100.251` in the log"
        );
    });
    if let Err(e) = check {
        let msg = panic_text(e.as_ref());
        panic!("{msg}\n--- lb's log\n{log}");
    }
}
