//! Benchmarks (not tests: `bench/vrrp-scale` and `bench/vrrp-memory` run
//! them): CPU with many instances and RSS with one, keepalived-rs next to
//! keepalived at the same settings.

#![allow(clippy::unwrap_used, clippy::cast_precision_loss)] // a benchmark: small integers to f64

use std::fmt::Write as _;
use std::process::Command;
use std::time::Duration;

use netlab::{Lab, Process};

// The binary measured: `common::bin()`, so `KEEPALIVED_RS_BIN` (which
// bench/vrrp-memory sets to a stripped copy, the binary the .deb ships).
mod common;
use common::Daemon;

/// `n` instances, VRIDs 1..=n, VRRPv3 at `advert_ms`, each with its own VIP.
fn config(n: u32, prio: u32, state: &str, advert_ms: u64) -> String {
    let mut s = String::new();
    for vrid in 1..=n {
        s.push_str(
            &common::Instance {
                name: format!("VI_{vrid}"),
                state: state.into(),
                vrid: u8::try_from(vrid).unwrap(),
                priority: u8::try_from(prio).unwrap(),
                vips: vec![format!("203.0.113.{vrid}/32")],
                ..common::Instance::default()
            }
            .advert_ms(advert_ms)
            .text(),
        );
    }
    s
}

fn start(lab: &Lab, node: &str, d: Daemon, text: &str, dir: &std::path::Path) -> Process {
    let conf = dir.join(format!("{node}.conf"));
    std::fs::write(&conf, text).unwrap();
    let mut cmd = match d {
        Daemon::Ours => {
            let mut c = Command::new(common::bin());
            c.arg("--control")
                .arg(dir.join(format!("{node}.sock")))
                .args(["-n", "-f"])
                .arg(&conf);
            c
        }
        Daemon::Keepalived => {
            let mut c = Command::new("keepalived");
            c.args(["-n", "-P", "-f"]).arg(&conf);
            for (f, n) in [("-p", "k"), ("-r", "v"), ("-c", "c")] {
                c.arg(f).arg(dir.join(format!("{node}-{n}.pid")));
            }
            c
        }
    };
    cmd.arg("-l");
    lab.node(node).unwrap().spawn_logged(&cmd, None).unwrap()
}

fn pids(lab: &Lab, node: &str) -> Vec<u32> {
    lab.node(node)
        .unwrap()
        .pids()
        .into_iter()
        .filter_map(|p| u32::try_from(p).ok())
        .collect()
}

use netlab::procstat::{cpu_ticks, rss_kib, user_ticks};

fn pair(tag: &str) -> (Lab, std::path::PathBuf) {
    let lab = Lab::star(&[
        ("lb1", &["198.51.100.22/24"]),
        ("lb2", &["198.51.100.40/24"]),
    ])
    .unwrap();
    let dir = std::env::temp_dir().join(format!("{}{tag}", lab.prefix()));
    std::fs::create_dir_all(&dir).unwrap();
    (lab, dir)
}

fn out_dir() -> std::path::PathBuf {
    let d = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/out");
    std::fs::create_dir_all(&d).unwrap();
    d
}

use netlab::procstat::Wire;

#[test]
#[ignore = "a benchmark: run bench/vrrp-scale"]
fn cpu_with_200_instances_at_10ms() {
    assert!(netlab::privileged("cpu_with_200_instances_at_10ms"));
    let (n, advert_ms, secs) = (200, 10, 10);
    let mut table = format!(
        "{n} instances, VRRPv3, advert {advert_ms} ms, CPU over {secs} s (% of one core)\n\n| wire | daemon | master | backup | master vs keepalived | backup vs keepalived |\n|---|---|---:|---:|---:|---:|\n"
    );
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let wires: &[Wire] = if cores >= 2 {
        &[Wire::Veth, Wire::Nic]
    } else {
        &[Wire::Veth]
    };
    for &wire in wires {
        let mut results = Vec::new();
        for d in [Daemon::Ours, Daemon::Keepalived] {
            let (master, backup) = scale_cpu(d, wire, n, advert_ms, secs);
            results.push((d, master, backup));
        }
        let (km, kb) = (results[1].1.max(0.01), results[1].2.max(0.01));
        for (d, m, b) in &results {
            let _ = writeln!(
                table,
                "| {} | {} | {m:.1}% | {b:.1}% | {:.2}x | {:.2}x |",
                wire.name(),
                d.label(),
                m / km,
                b / kb
            );
        }
    }
    println!("\n{table}");
    std::fs::write(out_dir().join("vrrp-scale.md"), &table).unwrap();
}

/// CPU (% of a core) of `d`'s master and backup with `n` instances.
fn scale_cpu(d: Daemon, wire: Wire, n: u32, advert_ms: u64, secs: u64) -> (f64, f64) {
    let (lab, dir) = pair("scale");
    let _m = start(&lab, "lb1", d, &config(n, 100, "MASTER", advert_ms), &dir);
    let _b = start(&lab, "lb2", d, &config(n, 90, "BACKUP", advert_ms), &dir);
    // Let every instance settle (keepalived takes a few seconds to start 200).
    let last_vip = "203.0.113.200".parse().unwrap();
    lab.node("lb1")
        .unwrap()
        .wait_for_address(last_vip, Duration::from_secs(30))
        .unwrap();
    // keepalived forks its VRRP child after a moment: count processes once
    // both sides have settled.
    std::thread::sleep(Duration::from_secs(2));
    let (pm, pb) = (pids(&lab, "lb1"), pids(&lab, "lb2"));
    wire.apply(&lab, &[pm.clone(), pb.clone()].concat())
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    // SCALE_HOLD=secs: keep the pair running that long first (to attach
    // a profiler to the pids printed here).
    if let Some(hold) = std::env::var("SCALE_HOLD")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        eprintln!("{}: master pids {pm:?}, backup pids {pb:?}", d.label());
        std::thread::sleep(Duration::from_secs(hold));
    }
    if std::env::var("COUNT_ADVERTS").is_ok() {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                lab.node("lb2").unwrap().ns(),
                "timeout",
                "1",
                "tcpdump",
                "-i",
                "eth0",
                "-n",
                "-q",
                "ip proto 112",
            ])
            .output()
            .unwrap();
        eprintln!(
            "{}: adverts seen in 1 s: {}",
            d.label(),
            String::from_utf8_lossy(&out.stdout).lines().count()
        );
    }
    let (m0, b0) = (cpu_ticks(&pm), cpu_ticks(&pb));
    std::thread::sleep(Duration::from_secs(secs));
    let (m1, b1) = (cpu_ticks(&pm), cpu_ticks(&pb));
    let (mu, ms) = (user_ticks(&pm), cpu_ticks(&pm) - user_ticks(&pm));
    eprintln!(
        "{} ({}): master user {mu} system {ms} ticks since start",
        d.label(),
        wire.name()
    );
    assert!(
        lab.node("lb2")
            .unwrap()
            .has_address(last_vip)
            .is_ok_and(|h| !h),
        "{} backup took a VIP",
        d.label()
    );
    let _ = std::fs::remove_dir_all(&dir);
    // Ticks are 1/100 s: percent of a core = ticks / seconds.
    (
        (m1 - m0) as f64 / secs as f64,
        (b1 - b0) as f64 / secs as f64,
    )
}

#[test]
#[ignore = "a benchmark: run bench/vrrp-memory"]
fn rss_with_one_instance() {
    assert!(netlab::privileged("rss_with_one_instance"));
    let mut table = String::from("One instance (VRRPv3, 1 s), RSS of all the daemon's processes\n\n| daemon | processes | RSS (MiB) |\n|---|---:|---:|\n");
    for d in [Daemon::Ours, Daemon::Keepalived] {
        let (lab, dir) = pair("mem");
        let _m = start(&lab, "lb1", d, &config(1, 100, "MASTER", 1000), &dir);
        lab.node("lb1")
            .unwrap()
            .wait_for_address("203.0.113.1".parse().unwrap(), Duration::from_secs(15))
            .unwrap();
        std::thread::sleep(Duration::from_secs(3));
        let p = pids(&lab, "lb1");
        let rss = rss_kib(&p) as f64 / 1024.0;
        let _ = writeln!(table, "| {} | {} | {rss:.1} |", d.label(), p.len());
        let _ = std::fs::remove_dir_all(&dir);
    }
    println!("\n{table}");
    std::fs::write(out_dir().join("vrrp-memory.md"), &table).unwrap();
}

/// The backup's takeovers (from its own log of "Entering MASTER STATE").
fn takeovers(log: &std::path::Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches("Entering MASTER STATE")
        .count()
}

#[test]
#[ignore = "a benchmark: run bench/vrrp-load"]
fn no_false_failover_under_cpu_load() {
    assert!(netlab::privileged("no_false_failover_under_cpu_load"));
    let secs = std::env::var("LOAD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30u64);
    let mut table = format!(
        "A pair at VRRPv3 10 ms adverts with 8 CPU-bound processes on {} cores for {secs} s\n\n| daemon | takeovers by the backup |\n|---|---:|\n",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    for d in [Daemon::Ours, Daemon::Keepalived] {
        let (lab, dir) = pair("load");
        let _m = start(&lab, "lb1", d, &config(1, 100, "MASTER", 10), &dir);
        let log = dir.join("backup.log");
        let conf = dir.join("lb2.conf");
        std::fs::write(&conf, config(1, 90, "BACKUP", 10)).unwrap();
        let mut cmd = match d {
            Daemon::Ours => {
                let mut c = Command::new(common::bin());
                c.arg("--control")
                    .arg(dir.join("lb2.sock"))
                    .args(["-n", "-l", "-f"])
                    .arg(&conf);
                c
            }
            Daemon::Keepalived => {
                let mut c = Command::new("keepalived");
                c.args(["-n", "-l", "-P", "-f"]).arg(&conf);
                for (f, n) in [("-p", "k"), ("-r", "v"), ("-c", "c")] {
                    c.arg(f).arg(dir.join(format!("lb2-{n}.pid")));
                }
                c
            }
        };
        cmd.env("TZ", "UTC");
        let _b = lab
            .node("lb2")
            .unwrap()
            .spawn_logged(&cmd, Some(std::fs::File::create(&log).unwrap()))
            .unwrap();
        lab.node("lb1")
            .unwrap()
            .wait_for_address("203.0.113.1".parse().unwrap(), Duration::from_secs(15))
            .unwrap();
        std::thread::sleep(Duration::from_secs(2));
        let before = takeovers(&log);
        let mut hogs: Vec<std::process::Child> = (0..8)
            .map(|_| {
                Command::new("sh")
                    .args(["-c", "while :; do :; done"])
                    .spawn()
                    .unwrap()
            })
            .collect();
        std::thread::sleep(Duration::from_secs(secs));
        for h in &mut hogs {
            let _ = h.kill();
            let _ = h.wait();
        }
        let n = takeovers(&log) - before;
        let _ = writeln!(table, "| {} | {n} |", d.label());
        let _ = std::fs::remove_dir_all(&dir);
    }
    println!("\n{table}");
    std::fs::write(out_dir().join("vrrp-load.md"), &table).unwrap();
}
