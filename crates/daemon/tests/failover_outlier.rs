//! Harness (not a test: `bench/failover-outlier` runs it) for issue 26 item
//! 10: does a backup ever take over while its master still advertises?
//!
//! The story of `failover_bench` at VRRPv3 10 ms (MASTER priority 100 in lb1,
//! BACKUP 90 in lb2), run `OUTLIER_RUNS` times per pair in `OUTLIER_PAIRS`
//! (`rs/rs,ka/rs,rs/ka,ka/ka`: master/backup, `ka` is keepalived 2.2.7),
//! with everything on the wire captured. Each run: tcpdump (kernel receive
//! timestamps) and `ip -ts monitor address` in lb2 start once lb1 holds the
//! VIP; after `OUTLIER_SETTLE_MS` the master is frozen (SIGSTOP of every
//! process in lb1; `OUTLIER_MODE=kill`: SIGKILL of the daemon, as
//! `failover_bench` does); once lb2 has the VIP the master is killed.
//!
//! Per run it prints, in ms from the freeze (all CLOCK_REALTIME): the last
//! master advert on lb2's wire, the longest gap between master adverts
//! before the freeze, the backup's first advert, its "Entering MASTER" log
//! line (ours), the VIP's address event, and the backup's Master_Down
//! timer as seen on the wire (first backup advert − last master advert).
//! Flags: `OVERLAP` a backup advert before the master's last one (the backup
//! advertised while the master's adverts were still on the wire), `PRE` the
//! backup advertised, logged MASTER or added the VIP before the freeze,
//! `EARLY` the wire timer shorter than Master_Down_Interval − 1.5 ms, `LATE`
//! longer than it + 5 ms. Writes bench/out/failover-outlier.csv.

#![allow(
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_wrap,
    clippy::too_many_lines,
    clippy::many_single_char_names,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)] // a harness: small integers to f64 ms

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod common;

use netlab::{Lab, Process};
use nix::sys::signal::Signal;

const BIN: &str = env!("CARGO_BIN_EXE_keepalived-rs");
const VIP: &str = "198.51.100.250";
const MASTER_IP: &str = "198.51.100.22";
const BACKUP_IP: &str = "198.51.100.40";
/// 3 × 10 ms + (256 − 90) × 10 ms / 256.
const DOWN_MS: f64 = 30.0 + 166.0 * 10.0 / 256.0;

use common::Daemon;

fn config(dir: &std::path::Path, name: &str, prio: u8, state: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.conf"));
    std::fs::write(
        &path,
        common::Instance {
            state: state.into(),
            priority: prio,
            advert: "0.01".into(),
            vips: vec![format!("{VIP}/24")],
            ..common::Instance::default()
        }
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
    let log = std::fs::File::create(dir.join(format!("{node}.log"))).unwrap();
    lab.node(node)
        .unwrap()
        .spawn_logged(&cmd, Some(log))
        .unwrap()
}

/// Microseconds since the epoch of `2026-11-25T13:41:00.183949` (UTC), the
/// start of `s` (`[` and a trailing `Z` allowed).
fn parse_civil(s: &str) -> Option<u64> {
    let s = s.strip_prefix('[').unwrap_or(s);
    let ts = s.split([']', 'Z', ' ']).next()?;
    let (date, time) = ts.split_once('T')?;
    let mut d = date.split('-').map(str::parse::<i64>);
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, frac) = time.split_once('.')?;
    let mut t = hms.split(':').map(str::parse::<i64>);
    let (hh, mm, ss) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    let micros: i64 = format!("{frac:0<6}").get(..6)?.parse().ok()?;
    u64::try_from(secs * 1_000_000 + micros).ok()
}

/// `1764701101.123456 IP 198.51.100.22 > 224.0.0.18: VRRPv3, ...` → (µs, src).
fn parse_tcpdump(line: &str) -> Option<(u64, String)> {
    let mut w = line.split_whitespace();
    let (s, us) = w.next()?.split_once('.')?;
    let t =
        s.parse::<u64>().ok()? * 1_000_000 + format!("{us:0<6}").get(..6)?.parse::<u64>().ok()?;
    if w.next()? != "IP" {
        return None;
    }
    Some((t, w.next()?.to_string()))
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

fn ms(t: u64, from: u64) -> f64 {
    (t as f64 - from as f64) / 1000.0
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_string()
}

struct Run {
    freeze: u64,
    master_adverts: Vec<u64>,
    backup_adverts: Vec<u64>,
    vip_adds: Vec<u64>,
    /// Our backup's "Entering MASTER STATE" lines (µs).
    log_master: Vec<u64>,
    /// The backup's "Entering MASTER" lines, whatever the daemon.
    master_entries: usize,
    load: String,
}

/// One run. `stall`: instead of freezing the master, the backup is stopped
/// that long (SIGSTOP, SIGCONT) while the master goes on: it must stay backup.
fn once(m: Daemon, b: Daemon, kill: bool, settle: Duration, stall: Option<Duration>) -> Run {
    let lab = Lab::star(&[
        ("lb1", &["198.51.100.22/24"]),
        ("lb2", &["198.51.100.40/24"]),
    ])
    .unwrap();
    let dir = std::env::temp_dir().join(format!("{}outlier", lab.prefix()));
    std::fs::create_dir_all(&dir).unwrap();
    let master = start(&lab, "lb1", m, &config(&dir, "lb1", 100, "MASTER"), &dir);
    let backup = start(&lab, "lb2", b, &config(&dir, "lb2", 90, "BACKUP"), &dir);
    let vip = VIP.parse().unwrap();
    lab.node("lb1")
        .unwrap()
        .wait_for_address(vip, Duration::from_secs(15))
        .unwrap();
    let ns2 = lab.node("lb2").unwrap().ns().to_string();
    // Capture on lb2's side of the wire: the master's adverts as they arrive,
    // the backup's as they leave; kernel timestamps.
    let pcap = dir.join("lb2.pcap");
    let mut dump = Command::new("ip")
        .args([
            "netns", "exec", &ns2, "tcpdump", "-i", "eth0", "-n", "-U", "-B", "4096",
        ])
        .arg("--immediate-mode")
        .args(["--time-stamp-precision=micro", "-w"])
        .arg(&pcap)
        .arg("ip proto 112")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(dump.stderr.take().unwrap());
    let mut line = String::new();
    while err.read_line(&mut line).unwrap() > 0 && !line.contains("listening") {
        line.clear();
    }
    let mut mon = Command::new("ip")
        .args(["netns", "exec", &ns2, "ip", "-ts", "monitor", "address"])
        .env("TZ", "UTC")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = mon.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains(VIP) && !line.contains("Deleted") {
                if let Some(t) = parse_civil(&line) {
                    let _ = tx.send(t);
                }
            }
        }
    });
    std::thread::sleep(settle);
    if let Some(stall) = stall {
        let pids = lab.node("lb2").unwrap().pids();
        let load = loadavg();
        let freeze = now_us();
        for (sig, pause) in [
            (Signal::SIGSTOP, stall),
            (Signal::SIGCONT, Duration::from_millis(300)),
        ] {
            for p in &pids {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*p), sig);
            }
            std::thread::sleep(pause);
        }
        let mut vip_adds: Vec<u64> = rx.try_iter().collect();
        vip_adds.retain(|t| *t >= freeze);
        let _ =
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(dump.id() as i32), Signal::SIGINT);
        let _ = dump.wait();
        let _ = mon.kill();
        let _ = mon.wait();
        drop(master);
        drop(backup);
        let (master_adverts, backup_adverts) = adverts(&pcap);
        let log = std::fs::read_to_string(dir.join("lb2.log")).unwrap_or_default();
        let master_entries = log
            .lines()
            .filter(|l| l.contains("Entering MASTER STATE"))
            .count();
        keep(&dir, lab.prefix(), freeze);
        let _ = std::fs::remove_dir_all(&dir);
        return Run {
            freeze,
            master_adverts,
            backup_adverts,
            vip_adds,
            log_master: Vec::new(),
            master_entries,
            load,
        };
    }
    let pids = if kill {
        Vec::new()
    } else {
        lab.node("lb1").unwrap().pids()
    };
    let load = loadavg();
    let freeze = now_us();
    if kill {
        master.signal(Signal::SIGKILL).unwrap();
    } else {
        for p in &pids {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*p), Signal::SIGSTOP);
        }
    }
    let mut vip_adds = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while let Ok(t) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        vip_adds.push(t);
        if t >= freeze {
            break;
        }
    }
    // A few of the backup's adverts as master, then the master dies.
    std::thread::sleep(Duration::from_millis(50));
    for p in &pids {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*p), Signal::SIGKILL);
    }
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(dump.id() as i32), Signal::SIGINT);
    let _ = dump.wait();
    let _ = mon.kill();
    let _ = mon.wait();
    drop(master);
    drop(backup);
    let (master_adverts, backup_adverts) = adverts(&pcap);
    let log = std::fs::read_to_string(dir.join("lb2.log")).unwrap_or_default();
    let entering: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Entering MASTER STATE"))
        .collect();
    let log_master = entering.iter().filter_map(|l| parse_civil(l)).collect();
    let master_entries = entering.len();
    keep(&dir, lab.prefix(), freeze);
    let _ = std::fs::remove_dir_all(&dir);
    Run {
        freeze,
        master_adverts,
        backup_adverts,
        vip_adds,
        log_master,
        master_entries,
        load,
    }
}

/// The master's and the backup's adverts in the capture (µs).
fn adverts(pcap: &std::path::Path) -> (Vec<u64>, Vec<u64>) {
    let text = Command::new("tcpdump")
        .args(["-r"])
        .arg(pcap)
        .args(["-n", "-tt", "--time-stamp-precision=micro"])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let (mut master, mut backup) = (Vec::new(), Vec::new());
    for (t, src) in String::from_utf8_lossy(&text.stdout)
        .lines()
        .filter_map(parse_tcpdump)
    {
        if src == MASTER_IP {
            master.push(t);
        } else if src == BACKUP_IP {
            backup.push(t);
        }
    }
    (master, backup)
}

/// Keeps the logs and the capture of a run under `OUTLIER_KEEP`, if set.
fn keep(dir: &std::path::Path, prefix: &str, freeze: u64) {
    if let Ok(keep) = std::env::var("OUTLIER_KEEP") {
        let to = std::path::Path::new(&keep).join(format!("{prefix}-{freeze}"));
        let _ = std::fs::create_dir_all(&to);
        for f in ["lb1.log", "lb2.log", "lb2.pcap"] {
            let _ = std::fs::copy(dir.join(f), to.join(f));
        }
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
#[ignore = "a harness: run bench/failover-outlier"]
fn failover_outlier() {
    assert!(netlab::privileged("failover_outlier"));
    let runs: usize = env_or("OUTLIER_RUNS", 20);
    let settle = Duration::from_millis(env_or("OUTLIER_SETTLE_MS", 1500));
    let kill = std::env::var("OUTLIER_MODE").is_ok_and(|m| m == "kill");
    let label: String = env_or("OUTLIER_LABEL", String::from("-"));
    let pairs: String = env_or("OUTLIER_PAIRS", String::from("rs/rs"));
    let stall = std::env::var("OUTLIER_STALL_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis);
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/out");
    std::fs::create_dir_all(&out).unwrap();
    let csv_path = out.join("failover-outlier.csv");
    let mut csv = std::fs::read_to_string(&csv_path).unwrap_or_default();
    if csv.is_empty() {
        csv.push_str("label,pair,mode,run,load1,master_adverts,max_gap_ms,last_master_ms,first_backup_ms,log_master_ms,vip_ms,wire_timer_ms,master_entries,flags\n");
    }
    println!(
        "| pair | run | load | adverts | max gap | last master | first backup | log MASTER | VIP add | wire timer | flags |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    let f = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.2}"));
    let mut summary = Vec::new();
    for pair in pairs.split(',') {
        let (m, b) = pair.split_once('/').unwrap();
        let d = |s: &str| {
            if s == "ka" {
                Daemon::Keepalived
            } else {
                Daemon::Ours
            }
        };
        let (m, b) = (d(m), d(b));
        let mut timers = Vec::new();
        let mut flagged = 0;
        for i in 0..runs {
            let r = once(m, b, kill, settle, stall);
            if stall.is_some() {
                let took =
                    !r.backup_adverts.is_empty() || !r.vip_adds.is_empty() || r.master_entries > 0;
                let gap = r
                    .master_adverts
                    .windows(2)
                    .map(|w| ms(w[1], w[0]))
                    .fold(0.0, f64::max);
                let flag = if took { "TOOK" } else { "" };
                flagged += usize::from(took);
                let first_backup = f(r.backup_adverts.first().map(|t| ms(*t, r.freeze)));
                let vip = f(r.vip_adds.first().map(|t| ms(*t, r.freeze)));
                println!(
                    "| {}/{} stall | {i} | {} | {} | {gap:.2} | - | {first_backup} | - | {vip} | - | {flag} |",
                    m.name(),
                    b.name(),
                    r.load,
                    r.master_adverts.len(),
                );
                let _ = writeln!(
                    csv,
                    "{label},{}/{},stall,{i},{},{},{gap:.3},-,{first_backup},-,{vip},-,{},{flag}",
                    m.name(),
                    b.name(),
                    r.load,
                    r.master_adverts.len(),
                    r.master_entries,
                );
                std::fs::write(&csv_path, &csv).unwrap();
                continue;
            }
            let before: Vec<u64> = r
                .master_adverts
                .iter()
                .copied()
                .filter(|t| *t <= r.freeze)
                .collect();
            let last_master = r.master_adverts.last().copied();
            let max_gap = before
                .windows(2)
                .map(|w| ms(w[1], w[0]))
                .fold(0.0, f64::max);
            let first_backup = r.backup_adverts.first().copied();
            let vip = r.vip_adds.iter().copied().find(|t| *t >= r.freeze);
            let log = r.log_master.iter().copied().find(|t| *t + 1000 >= r.freeze);
            let timer = first_backup.zip(last_master).map(|(b, m)| ms(b, m));
            let mut flags = Vec::new();
            if let (Some(b), Some(m)) = (first_backup, last_master) {
                if b < m {
                    flags.push("OVERLAP");
                }
            }
            let pre = r.backup_adverts.iter().any(|t| *t < r.freeze)
                || r.vip_adds.iter().any(|t| *t < r.freeze)
                || r.log_master.iter().any(|t| *t < r.freeze)
                || r.master_entries > 1;
            if pre {
                flags.push("PRE");
            }
            match timer {
                Some(t) if t < DOWN_MS - 1.5 => flags.push("EARLY"),
                Some(t) if t > DOWN_MS + 5.0 => flags.push("LATE"),
                Some(_) => {}
                None => flags.push("NODATA"),
            }
            if !flags.is_empty() {
                flagged += 1;
            }
            timers.extend(timer);
            let flags = flags.join(" ");
            let rel = |t: Option<u64>| t.map(|t| ms(t, r.freeze));
            println!(
                "| {}/{} | {i} | {} | {} | {max_gap:.2} | {} | {} | {} | {} | {} | {flags} |",
                m.name(),
                b.name(),
                r.load,
                before.len(),
                f(rel(last_master)),
                f(rel(first_backup)),
                f(rel(log)),
                f(rel(vip)),
                f(timer),
            );
            let _ = writeln!(
                csv,
                "{label},{}/{},{},{i},{},{},{max_gap:.3},{},{},{},{},{},{},{flags}",
                m.name(),
                b.name(),
                if kill { "kill" } else { "freeze" },
                r.load,
                before.len(),
                f(rel(last_master)),
                f(rel(first_backup)),
                f(rel(log)),
                f(rel(vip)),
                f(timer),
                r.master_entries,
            );
            std::fs::write(&csv_path, &csv).unwrap();
        }
        timers.sort_by(f64::total_cmp);
        let q = |p: f64| {
            timers
                .get(((timers.len() as f64 - 1.0) * p).round() as usize)
                .copied()
        };
        summary.push(format!(
            "{}/{}: {runs} runs, {flagged} flagged; wire timer min {} median {} max {} ms (Master_Down_Interval {DOWN_MS:.2})",
            m.name(),
            b.name(),
            f(q(0.0)),
            f(q(0.5)),
            f(q(1.0)),
        ));
    }
    println!();
    for s in summary {
        println!("SUMMARY {s}");
    }
}

#[test]
fn outlier_timestamps_parse() {
    assert_eq!(parse_civil("[1970-01-01T00:00:01.5] x"), Some(1_500_000));
    assert_eq!(
        parse_civil("2026-11-25T13:41:00.183949Z  INFO (VI_1) Entering MASTER STATE"),
        Some(1_795_614_060_183_949)
    );
    assert_eq!(
        parse_tcpdump("1764701101.123456 IP 198.51.100.22 > 224.0.0.18: VRRPv3, Advertisement"),
        Some((1_764_701_101_123_456, MASTER_IP.to_string()))
    );
    assert_eq!(parse_tcpdump("garbage"), None);
}
