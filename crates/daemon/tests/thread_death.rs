//! A part of the daemon that dies or hangs (issue 26, items 2 and 3):
//! - any thread's death (a checker task, the checker thread, the data
//!   plane's thread, the VRRP thread; injected with `KEEPALIVED_RS_FAULT`)
//!   takes the whole daemon down within 1 s: a priority-0 advert, the VIP
//!   and our nftables table removed, exit status ≠ 0;
//! - systemd's watchdog is petted by the VRRP loop, so a hung VRRP thread
//!   stops the pets;
//! - a FIFO planted at a `track_file` path is refused and does not delay
//!   the adverts.
//!
//! `KEEPALIVED_RS_BIN` runs these against another build (e.g. the code
//! before the fix) to see them fail there.

#![allow(clippy::unwrap_used)]

use std::io::Read as _;
use std::net::IpAddr;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use netlab::{Lab, Process};

use common::bin;

const VIP: &str = "198.51.100.250";

fn vip() -> IpAddr {
    VIP.parse().unwrap()
}

/// lb1 (the daemon under test), lb2 (listens to adverts), web1.
struct Rig {
    lab: Lab,
    dir: PathBuf,
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Rig {
    fn new(tag: &str) -> Option<Self> {
        if !netlab::privileged(tag) {
            return None;
        }
        let lab = Lab::star(&[
            ("lb1", &["198.51.100.22/24"]),
            ("lb2", &["198.51.100.40/24"]),
            ("web1", &["198.51.100.50/24"]),
        ])
        .unwrap();
        let dir = std::env::temp_dir().join(format!("{}{tag}", lab.prefix()));
        std::fs::create_dir_all(&dir).unwrap();
        Some(Self { lab, dir })
    }

    /// Starts the daemon in lb1 with `conf` and `env`; logs to `name.log`.
    fn start(&self, name: &str, conf: &str, env: &[(&str, &str)]) -> Process {
        let path = self.dir.join(format!("{name}.conf"));
        std::fs::write(&path, conf).unwrap();
        let mut cmd = Command::new(bin());
        cmd.args(["-n", "-l", "-f"])
            .arg(&path)
            .arg("--control")
            .arg(self.dir.join(format!("{name}.sock")));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let log = std::fs::File::create(self.dir.join(format!("{name}.log"))).unwrap();
        self.lab
            .node("lb1")
            .unwrap()
            .spawn_logged(&cmd, Some(log))
            .unwrap()
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default()
    }

    /// Whether our nftables table is in lb1.
    fn has_table(&self) -> bool {
        let out = self
            .lab
            .node("lb1")
            .unwrap()
            .exec(&["nft", "list", "tables"])
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains(lb::nft::TABLE)
    }
}

/// A MASTER (VRRPv3 at 100 ms) with the VIP, and a NAT virtual server on
/// the VIP (nftables here) whose real server web1 has a TCP_CHECK, plus
/// `extra` in the instance.
fn config(extra: &str) -> String {
    format!(
        "vrrp_instance VI_1 {{\n state MASTER\n interface eth0\n virtual_router_id 51\n version 3\n priority 150\n advert_int 0.1\n{extra} virtual_ipaddress {{\n  {VIP}/24\n }}\n}}\n\
         virtual_server {VIP} 80 {{\n delay_loop 1\n lb_algo rr\n lb_kind NAT\n protocol TCP\n real_server 198.51.100.50 80 {{\n  TCP_CHECK {{\n   connect_timeout 1\n  }}\n }}\n}}\n"
    )
}

type Counted = std::thread::JoinHandle<Result<std::io::Result<Vec<(Instant, u8)>>, netlab::Error>>;

/// Every advert lb2 hears until `done`: when, and its priority.
fn adverts(rig: &Rig, done: Arc<AtomicBool>) -> Counted {
    rig.lab
        .node("lb2")
        .unwrap()
        .thread(move || {
            let mut s = socket2::Socket::new(
                socket2::Domain::IPV4,
                socket2::Type::RAW,
                Some(socket2::Protocol::from(112)),
            )?;
            s.set_read_timeout(Some(Duration::from_millis(20)))?;
            // Nobody else in lb2 joins VRRP's group.
            s.join_multicast_v4(
                &std::net::Ipv4Addr::new(224, 0, 0, 18),
                &std::net::Ipv4Addr::new(198, 51, 100, 40),
            )?;
            let mut seen = Vec::new();
            let mut buf = [0u8; 1500];
            while !done.load(Ordering::Relaxed) {
                if let Ok(n) = s.read(&mut buf) {
                    let ihl = usize::from(buf[0] & 0x0f) * 4;
                    if n > ihl + 2 {
                        seen.push((Instant::now(), buf[ihl + 2]));
                    }
                }
            }
            Ok::<_, std::io::Error>(seen)
        })
        .unwrap()
}

#[test]
fn any_dying_thread_takes_the_daemon_down_cleanly_within_a_second() {
    let Some(rig) = Rig::new("death") else {
        return;
    };
    let lb1 = rig.lab.node("lb1").unwrap();
    let mut report = Vec::new();
    for point in ["check-task", "check", "dataplane", "vrrp"] {
        let done = Arc::new(AtomicBool::new(false));
        let heard = adverts(&rig, done.clone());
        let mut daemon = rig.start(
            point,
            &config(""),
            &[
                ("KEEPALIVED_RS_FAULT", point),
                ("KEEPALIVED_RS_FAULT_AFTER_MS", "2500"),
            ],
        );
        lb1.wait_for_address(vip(), Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{point}: no VIP: {e}\n{}", rig.log(point)));
        let deadline = Instant::now() + Duration::from_secs(5);
        while !rig.has_table() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(rig.has_table(), "{point}: no table\n{}", rig.log(point));
        // The fault fires 2.5 s after start; the daemon must be gone 1 s
        // after the panic message.
        let deadline = Instant::now() + Duration::from_secs(10);
        let fired = loop {
            if rig.log(point).contains("injected fault at") {
                break Instant::now();
            }
            assert!(
                Instant::now() < deadline,
                "{point}: no fault\n{}",
                rig.log(point)
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        let status = daemon.wait_timeout(Duration::from_secs(5));
        let took = fired.elapsed();
        let log = rig.log(point);
        let status = status.unwrap_or_else(|e| panic!("{point}: still running: {e}\n{log}"));
        std::thread::sleep(Duration::from_millis(100));
        done.store(true, Ordering::Relaxed);
        let heard = heard.join().unwrap().unwrap().unwrap();
        let zero = heard.iter().filter(|(_, p)| *p == 0).count();
        report.push(format!(
            "{point}: exit {:?} {took:?} after the panic, {zero} priority-0 adverts",
            status.code()
        ));
        assert!(
            took < Duration::from_secs(1),
            "{point}: took {took:?}\n{log}"
        );
        assert!(!status.success(), "{point}: exit 0\n{log}");
        assert!(zero >= 1, "{point}: no priority-0 advert\n{log}");
        assert!(
            !lb1.has_address(vip()).unwrap(),
            "{point}: the VIP stayed\n{log}"
        );
        assert!(
            !rig.has_table(),
            "{point}: our nftables table stayed\n{log}"
        );
    }
    eprintln!("{}", report.join("\n"));
}

/// A datagram socket standing in for systemd's notify socket; counts the
/// `WATCHDOG=1` it receives, with their times.
struct Notify {
    sock: UnixDatagram,
    path: PathBuf,
}

impl Notify {
    fn new(rig: &Rig, name: &str) -> Self {
        let path = rig.dir.join(format!("{name}.notify"));
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        Self { sock, path }
    }

    /// The pets received within `window`.
    fn pets(&self, window: Duration) -> usize {
        let until = Instant::now() + window;
        let mut n = 0;
        let mut buf = [0u8; 512];
        while Instant::now() < until {
            if let Ok(len) = self.sock.recv(&mut buf) {
                if buf[..len]
                    .split(|b| *b == b'\n')
                    .any(|l| l == b"WATCHDOG=1")
                {
                    n += 1;
                }
            }
        }
        n
    }
}

#[test]
fn the_watchdog_is_petted_by_the_vrrp_loop() {
    let Some(rig) = Rig::new("wdog") else {
        return;
    };
    let lb1 = rig.lab.node("lb1").unwrap();
    // A VRRP thread that hangs 2.5 s after start (the process and its
    // other threads live on).
    let notify = Notify::new(&rig, "hang");
    let path = notify.path.to_string_lossy().into_owned();
    let _daemon = rig.start(
        "hang",
        &config(""),
        &[
            ("NOTIFY_SOCKET", &path),
            ("WATCHDOG_USEC", "200000"),
            ("KEEPALIVED_RS_FAULT", "vrrp-stall"),
            ("KEEPALIVED_RS_FAULT_AFTER_MS", "2500"),
        ],
    );
    lb1.wait_for_address(vip(), Duration::from_secs(5)).unwrap();
    let before = notify.pets(Duration::from_secs(1));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !rig.log("hang").contains("injected stall at vrrp") {
        assert!(Instant::now() < deadline, "{}", rig.log("hang"));
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = notify.pets(Duration::from_millis(200));
    let after = notify.pets(Duration::from_secs(1));
    eprintln!("watchdog pets: {before} in 1 s while VRRP runs, {after} in 1 s after it hung");
    assert!(before >= 5, "{before} pets\n{}", rig.log("hang"));
    assert_eq!(after, 0, "the watchdog was petted for a hung VRRP thread");
}

#[test]
fn a_fifo_at_a_track_file_path_does_not_delay_adverts() {
    let Some(rig) = Rig::new("fifo") else {
        return;
    };
    let fifo = rig.dir.join("planted");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let track = format!(
        "track_file planted {{\n file {}\n weight 0\n}}\n",
        fifo.display()
    );
    let notify = Notify::new(&rig, "fifo");
    let path = notify.path.to_string_lossy().into_owned();
    let done = Arc::new(AtomicBool::new(false));
    let heard = adverts(&rig, done.clone());
    let started = Instant::now();
    let _daemon = rig.start(
        "fifo",
        &(track + &config(" track_file {\n  planted\n }\n")),
        &[("NOTIFY_SOCKET", &path), ("WATCHDOG_USEC", "200000")],
    );
    std::thread::sleep(Duration::from_secs(1));
    let pets = notify.pets(Duration::from_secs(2));
    done.store(true, Ordering::Relaxed);
    let heard = heard.join().unwrap().unwrap().unwrap();
    let log = rig.log("fifo");
    // Adverts from lb1 in the last 2 s (at 100 ms: about 20).
    let from = started + Duration::from_secs(1);
    let recent = heard
        .iter()
        .filter(|(t, p)| *t >= from && *p == 150)
        .count();
    eprintln!("FIFO at track_file: {recent} adverts heard in 2 s, {pets} watchdog pets");
    assert!(
        log.contains("not a regular file (a FIFO)"),
        "no refusal logged\n{log}"
    );
    assert!(recent >= 15, "only {recent} adverts in 2 s\n{log}");
    assert!(pets >= 5, "{pets} pets\n{log}");
    assert!(rig.lab.node("lb1").unwrap().has_address(vip()).unwrap());
}
