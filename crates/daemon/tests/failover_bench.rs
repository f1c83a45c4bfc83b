//! Benchmark (not a test: `bench/failover` runs it): failover time of
//! keepalived-rs and of keepalived at the same settings, side by side.
//!
//! A pair (MASTER priority 100 in lb1, BACKUP 90 in lb2) of the same daemon;
//! the master is crashed (keepalived: SIGSTOP of all its processes, then
//! SIGKILL, so no child sends a priority-0 advert) or stopped with SIGTERM;
//! the time runs from the signal to the kernel's address event for the VIP on
//! the backup, as `ip -ts monitor address` reports it (not polling).

#![allow(clippy::unwrap_used, clippy::cast_precision_loss)] // a benchmark: small integers to f64 ms

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod common;

use netlab::{Lab, Process};
use nix::sys::signal::Signal;

const BIN: &str = env!("CARGO_BIN_EXE_keepalived-rs");
const VIP: &str = "198.51.100.250";
const RUNS: usize = 3;

use common::Daemon;

#[derive(Clone, Copy)]
struct Setting {
    label: &'static str,
    version: u8,
    advert_ms: u64,
    graceful: bool,
}

const SETTINGS: &[Setting] = &[
    Setting {
        label: "crash, VRRPv2, advert 1 s",
        version: 2,
        advert_ms: 1000,
        graceful: false,
    },
    Setting {
        label: "crash, VRRPv3, advert 100 ms",
        version: 3,
        advert_ms: 100,
        graceful: false,
    },
    Setting {
        label: "crash, VRRPv3, advert 10 ms",
        version: 3,
        advert_ms: 10,
        graceful: false,
    },
    Setting {
        label: "SIGTERM, VRRPv3, advert 100 ms",
        version: 3,
        advert_ms: 100,
        graceful: true,
    },
];

fn config(
    dir: &std::path::Path,
    name: &str,
    s: Setting,
    prio: u8,
    state: &str,
) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.conf"));
    std::fs::write(
        &path,
        common::Instance {
            state: state.into(),
            priority: prio,
            version: s.version,
            vips: vec![format!("{VIP}/24")],
            ..common::Instance::default()
        }
        .advert_ms(s.advert_ms)
        .text(),
    )
    .unwrap();
    path
}

fn start(
    lab: &Lab,
    node: &str,
    d: Daemon,
    conf: &std::path::Path,
    dir: &std::path::Path,
) -> Process {
    let mut cmd = match d {
        Daemon::Ours => {
            let mut c = Command::new(BIN);
            c.arg("--control")
                .arg(dir.join(format!("{node}.sock")))
                .args(["-n", "-l", "-f"])
                .arg(conf);
            c
        }
        Daemon::Keepalived => {
            let mut c = Command::new("keepalived");
            c.args(["-n", "-l", "-P", "-f"]).arg(conf);
            for (f, n) in [("-p", "k"), ("-r", "v"), ("-c", "c")] {
                c.arg(f).arg(dir.join(format!("{node}-{n}.pid")));
            }
            c
        }
    };
    cmd.env("TZ", "UTC");
    lab.node(node).unwrap().spawn_logged(&cmd, None).unwrap()
}

/// Microseconds since the epoch of `[2026-11-25T13:41:00.183949]` (UTC).
fn parse_ts(line: &str) -> Option<u64> {
    let ts = line.strip_prefix('[')?.split(']').next()?;
    let (date, time) = ts.split_once('T')?;
    let mut d = date.split('-').map(str::parse::<i64>);
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, frac) = time.split_once('.')?;
    let mut t = hms.split(':').map(str::parse::<i64>);
    let (hh, mm, ss) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    let micros: i64 = format!("{frac:0<6}")[..6].parse().ok()?;
    u64::try_from(secs * 1_000_000 + micros).ok()
}

fn now_us() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros(),
    )
    .unwrap()
}

/// One failover: milliseconds from the signal to the VIP on the backup.
fn once(d: Daemon, s: Setting) -> f64 {
    let lab = Lab::star(&[
        ("lb1", &["198.51.100.22/24"]),
        ("lb2", &["198.51.100.40/24"]),
    ])
    .unwrap();
    let dir = std::env::temp_dir().join(format!("{}bench", lab.prefix()));
    std::fs::create_dir_all(&dir).unwrap();
    let master = start(&lab, "lb1", d, &config(&dir, "lb1", s, 100, "MASTER"), &dir);
    let _backup = start(&lab, "lb2", d, &config(&dir, "lb2", s, 90, "BACKUP"), &dir);
    let vip = VIP.parse().unwrap();
    lab.node("lb1")
        .unwrap()
        .wait_for_address(vip, Duration::from_secs(15))
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let mut mon = Command::new("ip");
    mon.args([
        "netns",
        "exec",
        lab.node("lb2").unwrap().ns(),
        "ip",
        "-ts",
        "monitor",
        "address",
    ])
    .env("TZ", "UTC")
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    let mut mon = mon.spawn().unwrap();
    let stdout = mon.stdout.take().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let t0 = now_us();
    match (d, s.graceful) {
        (_, true) => master.signal(Signal::SIGTERM).unwrap(),
        (Daemon::Ours, false) => master.signal(Signal::SIGKILL).unwrap(),
        (Daemon::Keepalived, false) => lab.node("lb1").unwrap().crash_all(),
    }
    let mut took = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if line.contains(VIP) && !line.contains("Deleted") {
            took = parse_ts(&line).map(|t| (t.saturating_sub(t0)) as f64 / 1000.0);
            break;
        }
    }
    let _ = mon.kill();
    let _ = mon.wait();
    drop(master);
    let _ = std::fs::remove_dir_all(&dir);
    took.unwrap()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[test]
#[ignore = "a benchmark: run bench/failover"]
fn failover_time_vs_keepalived() {
    assert!(netlab::privileged("failover_time_vs_keepalived"));
    let mut table = String::from(
        "| setting | bound (3 × advert + skew, or skew) | keepalived-rs (ms, median of 3) | keepalived 2.2 (ms) | ratio |\n|---|---:|---:|---:|---:|\n",
    );
    let mut csv = String::from("setting,daemon,run,ms\n");
    for s in SETTINGS {
        let skew_ms = if s.version == 2 {
            166.0 * 1000.0 / 256.0
        } else {
            166.0 * s.advert_ms as f64 / 256.0
        };
        let bound = if s.graceful {
            skew_ms
        } else {
            3.0 * s.advert_ms as f64 + skew_ms
        };
        let mut med = Vec::new();
        for d in [Daemon::Ours, Daemon::Keepalived] {
            let runs: Vec<f64> = (0..RUNS).map(|_| once(d, *s)).collect();
            for (i, r) in runs.iter().enumerate() {
                let name = if d == Daemon::Ours {
                    "keepalived-rs"
                } else {
                    "keepalived"
                };
                let _ = writeln!(csv, "{},{name},{i},{r:.3}", s.label);
            }
            med.push(median(runs));
        }
        let _ = writeln!(
            table,
            "| {} | {bound:.1} | {:.1} | {:.1} | {:.2}x |",
            s.label,
            med[0],
            med[1],
            med[0] / med[1]
        );
    }
    println!("\n{table}");
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("failover.md"), &table).unwrap();
    std::fs::write(out.join("failover.csv"), &csv).unwrap();
}

#[test]
fn timestamps_parse_as_utc_microseconds() {
    assert_eq!(parse_ts("[1970-01-01T00:00:01.5] x"), Some(1_500_000));
    assert_eq!(
        parse_ts("[2026-11-25T13:41:00.183949] 2: eth0"),
        Some(1_795_614_060_183_949)
    );
    assert_eq!(parse_ts("no timestamp"), None);
}
