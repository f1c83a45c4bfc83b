//! Benchmark (not a test: `bench/check-scale` runs it): the health checkers
//! at scale — 10,000 real servers (half TCP_CHECK, half HTTP_GET) at
//! `delay_loop 1`, served from a namespace by a backend that records when
//! each check arrives. Prints the checker's CPU (% of one core), RSS, the
//! checks seen per second and the spread of check times.

#![allow(clippy::unwrap_used, clippy::cast_precision_loss)] // a benchmark: counts to f64

use std::fmt::Write as _;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use netlab::procstat::{cpu_ticks, status_kib, Wire, TICKS_PER_SECOND};
use netlab::Lab;

const BIN: &str = env!("CARGO_BIN_EXE_keepalived-rs");
const FIRST_PORT: u16 = 20_000;

/// What the backend saw: per server the time of its last check, and every
/// interval between two checks of one server (in ms) while `recording`.
struct Seen {
    start: Instant,
    recording: AtomicBool,
    checks: AtomicU64,
    last: Vec<AtomicU64>,
    intervals: Mutex<Vec<u32>>,
}

impl Seen {
    fn new(n: usize) -> Self {
        Self {
            start: Instant::now(),
            recording: AtomicBool::new(false),
            checks: AtomicU64::new(0),
            last: (0..n).map(|_| AtomicU64::new(0)).collect(),
            intervals: Mutex::new(Vec::new()),
        }
    }

    fn hit(&self, server: usize) {
        let now = u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX);
        let before = self.last[server].swap(now, Ordering::Relaxed);
        if self.recording.load(Ordering::Relaxed) {
            self.checks.fetch_add(1, Ordering::Relaxed);
            if before > 0 {
                let ms = u32::try_from((now - before) / 1000).unwrap_or(u32::MAX);
                self.intervals.lock().unwrap().push(ms);
            }
        }
    }
}

/// The backend: `n_tcp` listeners on 198.51.100.50 that accept and close,
/// and `n_http` on .51 that answer `GET` with 200 — all inside `node`,
/// served by a runtime of two threads in this process (its CPU is not the
/// checker's).
fn backend(
    node: &netlab::Node,
    n_tcp: u16,
    n_http: u16,
    seen: &Arc<Seen>,
) -> tokio::runtime::Runtime {
    let listeners = node
        .run(move || {
            let mut out = Vec::new();
            for (host, n) in [("198.51.100.50", n_tcp), ("198.51.100.51", n_http)] {
                for k in 0..n {
                    let l = std::net::TcpListener::bind((host, FIRST_PORT + k)).unwrap();
                    l.set_nonblocking(true).unwrap();
                    out.push(l);
                }
            }
            out
        })
        .unwrap();
    // On core 1 where there are two (the checker and the floor loop run
    // on core 0 in the NIC-like mode): as if it were another machine.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .on_thread_start(|| {
            let mut set = nix::sched::CpuSet::new();
            if std::thread::available_parallelism().map_or(1, std::num::NonZero::get) >= 2
                && set.set(1).is_ok()
            {
                let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
            }
        })
        .enable_all()
        .build()
        .unwrap();
    for (i, l) in listeners.into_iter().enumerate() {
        let http = i >= usize::from(n_tcp);
        let seen = seen.clone();
        rt.spawn(async move {
            let l = tokio::net::TcpListener::from_std(l).unwrap();
            while let Ok((mut s, _)) = l.accept().await {
                seen.hit(i);
                if http {
                    tokio::spawn(async move {
                        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                        let mut req = [0u8; 1024];
                        let mut got = 0;
                        while !req[..got].windows(4).any(|w| w == b"\r\n\r\n") && got < req.len() {
                            match s.read(&mut req[got..]).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => got += n,
                            }
                        }
                        let _ = s
                            .write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
                            .await;
                        let _ = s.shutdown().await;
                    });
                }
            }
        });
    }
    rt
}

fn config(n_tcp: u16, n_http: u16, per_vs: u16) -> String {
    let mut s = String::new();
    let mut servers: Vec<(&str, u16, bool)> = (0..n_tcp)
        .map(|k| ("198.51.100.50", FIRST_PORT + k, false))
        .collect();
    servers.extend((0..n_http).map(|k| ("198.51.100.51", FIRST_PORT + k, true)));
    for (v, chunk) in servers.chunks(usize::from(per_vs)).enumerate() {
        let _ = write!(
            s,
            "virtual_server 203.0.113.{} {} {{\n delay_loop 1\n lb_algo rr\n lb_kind NAT\n protocol TCP\n",
            1 + v / 200,
            1000 + v
        );
        for (host, port, http) in chunk {
            let check = if *http {
                "HTTP_GET {\n url {\n path /\n }\n connect_timeout 2\n retry 1\n delay_before_retry 1\n }"
            } else {
                "TCP_CHECK {\n connect_timeout 2\n retry 1\n delay_before_retry 1\n }"
            };
            let _ = write!(s, " real_server {host} {port} {{\n {check}\n }}\n");
        }
        s.push_str("}\n");
    }
    s
}

/// Each real server's `healthy`, counted: (healthy, all).
fn healthy(control: &std::path::Path) -> (usize, usize) {
    let out = Command::new(BIN)
        .args(["status", "--json", "--control"])
        .arg(control)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let all: Vec<bool> = v["virtual_servers"]
        .as_array()
        .map(|vs| {
            vs.iter()
                .flat_map(|v| v["real_servers"].as_array().cloned().unwrap_or_default())
                .map(|r| r["healthy"].as_bool().unwrap_or(false))
                .collect()
        })
        .unwrap_or_default();
    (all.iter().filter(|h| **h).count(), all.len())
}

/// The `per_mille`th thousandth of `sorted` (0 when empty).
fn percentile(sorted: &[u32], per_mille: usize) -> u32 {
    let i = (sorted.len().saturating_sub(1) * per_mille).div_ceil(1000);
    sorted.get(i).copied().unwrap_or(0)
}

struct Row {
    wire: Wire,
    cpu: f64,
    user: f64,
    rss_mib: f64,
    hwm_mib: f64,
    per_second: f64,
    spread: [u32; 5],
    healthy: (usize, usize),
}

fn run(wire: Wire, n_tcp: u16, n_http: u16, secs: u64) -> Row {
    let lab = Lab::star(&[
        ("lb1", &["198.51.100.22/24"]),
        ("web1", &["198.51.100.50/24", "198.51.100.51/24"]),
    ])
    .unwrap();
    let dir = std::env::temp_dir().join(format!("{}checkscale", lab.prefix()));
    std::fs::create_dir_all(&dir).unwrap();
    let seen = Arc::new(Seen::new(usize::from(n_tcp) + usize::from(n_http)));
    let _rt = backend(lab.node("web1").unwrap(), n_tcp, n_http, &seen);
    let conf = dir.join("scale.conf");
    std::fs::write(&conf, config(n_tcp, n_http, 100)).unwrap();
    let control = dir.join("c.sock");
    let mut cmd = Command::new(BIN);
    cmd.args(["-n", "-C", "-f"])
        .arg(&conf)
        .arg("--control")
        .arg(&control);
    let log = std::fs::File::create(dir.join("rs.log")).unwrap();
    let daemon = lab
        .node("lb1")
        .unwrap()
        .spawn_logged(&cmd, Some(log))
        .unwrap();
    let pid = daemon.pid();
    wire.apply(&lab, &[pid]).unwrap();
    // First checks come 1 s + up to warmup (= delay_loop) after start.
    std::thread::sleep(Duration::from_secs(4));
    // CHECK_SCALE_HOLD=secs: keep it running that long first (to attach a
    // profiler to the pid printed here).
    if let Some(hold) = std::env::var("CHECK_SCALE_HOLD")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        eprintln!("checker pid {pid}");
        std::thread::sleep(Duration::from_secs(hold));
    }
    seen.recording.store(true, Ordering::Relaxed);
    let u0 = netlab::procstat::user_ticks(&[pid]);
    let t0 = cpu_ticks(&[pid]);
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let ticks = cpu_ticks(&[pid]) - t0;
    let user = netlab::procstat::user_ticks(&[pid]) - u0;
    let elapsed = started.elapsed().as_secs_f64();
    seen.recording.store(false, Ordering::Relaxed);
    let cpu = ticks as f64 / TICKS_PER_SECOND as f64 / elapsed * 100.0;
    let user = user as f64 / TICKS_PER_SECOND as f64 / elapsed * 100.0;
    let rss_mib = status_kib(&[pid], "VmRSS") as f64 / 1024.0;
    let hwm_mib = status_kib(&[pid], "VmHWM") as f64 / 1024.0;
    let per_second = seen.checks.load(Ordering::Relaxed) as f64 / elapsed;
    let mut iv = seen.intervals.lock().unwrap().clone();
    iv.sort_unstable();
    let spread = [0, 10, 500, 990, 1000].map(|p| percentile(&iv, p));
    let healthy = healthy(&control);
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
    Row {
        wire,
        cpu,
        user,
        rss_mib,
        hwm_mib,
        per_second,
        spread,
        healthy,
    }
}

/// The floor: the same connects and requests made by the simplest loop
/// there is — one thread, blocking sockets, no runtime, no timers, 100
/// servers every 10 ms — inside lb1, its CPU (% of a core) read from its own
/// /proc entry. What the kernel charges for the work itself.
fn floor(wire: Wire, n_tcp: u16, n_http: u16, secs: u64) -> f64 {
    let lab = Lab::star(&[
        ("lb1", &["198.51.100.22/24"]),
        ("web1", &["198.51.100.50/24", "198.51.100.51/24"]),
    ])
    .unwrap();
    let seen = Arc::new(Seen::new(usize::from(n_tcp) + usize::from(n_http)));
    let _rt = backend(lab.node("web1").unwrap(), n_tcp, n_http, &seen);
    let servers: Vec<(std::net::SocketAddr, bool)> = (0..n_tcp)
        .map(|k| (([198, 51, 100, 50], FIRST_PORT + k).into(), false))
        .chain((0..n_http).map(|k| (([198, 51, 100, 51], FIRST_PORT + k).into(), true)))
        .collect();
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = lab
        .node("lb1")
        .unwrap()
        .thread(move || {
            use std::io::{Read as _, Write as _};
            let _ = tx.send(nix::unistd::gettid().as_raw());
            let start = Instant::now();
            let mut slot = 0u32;
            while start.elapsed() < Duration::from_secs(secs + 4) {
                for (addr, http) in servers.iter().skip(slot as usize * 100 % servers.len()).take(100) {
                    let Ok(mut s) = std::net::TcpStream::connect_timeout(addr, Duration::from_secs(2)) else {
                        continue;
                    };
                    if *http {
                        let _ = s.write_all(b"GET / HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\nHost: x\r\nConnection: close\r\n\r\n");
                        let mut b = [0u8; 512];
                        while s.read(&mut b).is_ok_and(|n| n > 0) {}
                    } else {
                        let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
                    }
                }
                slot += 1;
                let next = Duration::from_millis(10) * slot;
                std::thread::sleep(next.saturating_sub(start.elapsed()));
            }
        })
        .unwrap();
    let tid = rx.recv().unwrap();
    let me = std::process::id();
    let ticks = || -> u64 {
        std::fs::read_to_string(format!("/proc/{me}/task/{tid}/stat"))
            .ok()
            .and_then(|s| {
                let f: Vec<u64> = s
                    .rsplit_once(')')?
                    .1
                    .split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect();
                Some(f.get(10)? + f.get(11)?)
            })
            .unwrap_or(0)
    };
    wire.apply(&lab, &[]).unwrap();
    if wire == Wire::Nic {
        // This thread only (the backend's threads stay on core 1).
        let pinned = Command::new("taskset")
            .args(["-p", "1", &tid.to_string()])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(pinned, "taskset {tid}");
    }
    std::thread::sleep(Duration::from_secs(3));
    let t0 = ticks();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let used = ticks() - t0;
    let cpu = used as f64 / TICKS_PER_SECOND as f64 / started.elapsed().as_secs_f64() * 100.0;
    let _ = worker.join();
    cpu
}

fn out_dir() -> std::path::PathBuf {
    let d = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/out");
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
#[ignore = "a benchmark: run bench/check-scale"]
fn checkers_at_10000_real_servers() {
    assert!(netlab::privileged("checkers_at_10000_real_servers"));
    let n: u16 = std::env::var("CHECK_SCALE_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let secs = 10;
    let (n_tcp, n_http) = (n / 2, n - n / 2);
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let wires: &[Wire] = if cores >= 2 {
        &[Wire::Veth, Wire::Nic]
    } else {
        &[Wire::Veth]
    };
    let mut table = format!(
        "{n} real servers ({n_tcp} TCP_CHECK, {n_http} HTTP_GET), delay_loop 1, one checker process, over {secs} s\n\n| wire | CPU (% of a core) | of which user | RSS | peak RSS | checks/s | interval between two checks of one server: min / p1 / p50 / p99 / max (ms) | healthy |\n|---|---:|---:|---:|---:|---:|---|---:|\n"
    );
    let mut floors = String::new();
    for &wire in wires {
        let f = floor(wire, n_tcp, n_http, secs);
        let _ = writeln!(floors, "| {} | {f:.1}% |", wire.name());
        let r = run(wire, n_tcp, n_http, secs);
        let _ = writeln!(
            table,
            "| {} | {:.1}% | {:.1}% | {:.1} MiB | {:.1} MiB | {:.0} | {} / {} / {} / {} / {} | {}/{} |",
            r.wire.name(),
            r.cpu,
            r.user,
            r.rss_mib,
            r.hwm_mib,
            r.per_second,
            r.spread[0],
            r.spread[1],
            r.spread[2],
            r.spread[3],
            r.spread[4],
            r.healthy.0,
            r.healthy.1
        );
    }
    let _ = write!(
        table,
        "\nThe floor: the same connects and requests from one thread with blocking sockets and nothing else (no runtime, no timers, no verdicts), 100 servers every 10 ms:\n\n| wire | CPU (% of a core) |\n|---|---:|\n{floors}"
    );
    println!("\n{table}");
    std::fs::write(out_dir().join("check-scale.md"), &table).unwrap();
}
