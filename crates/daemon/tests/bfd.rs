//! BFD in network namespaces: keepalived-rs against keepalived 2.2.7's
//! BFD and FRR's bfdd, both ways; detection times measured from the kill
//! to the state change, ours and keepalived's in the same run; `track_bfd`
//! and `BFD_CHECK` acting; no false Downs under CPU load.
//!
//! The tests of this file run one at a time (a lock): their numbers are
//! timings, and the hogs test would disturb the others.

#![allow(
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::many_single_char_names,
    clippy::too_many_lines
)]

use std::fmt::Write as _;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use netlab::{Lab, Node, Process};

const BIN: &str = env!("CARGO_BIN_EXE_keepalived-rs");

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Root and namespaces, and each program in `needs`; under CI a missing
/// one fails.
fn ready(name: &str, needs: &[&str]) -> bool {
    if !netlab::privileged(name) {
        return false;
    }
    for prog in needs {
        let have = Path::new(prog).is_absolute() && Path::new(prog).exists()
            || Command::new("which")
                .arg(prog)
                .output()
                .is_ok_and(|o| o.status.success());
        if !have {
            assert!(
                !netlab::in_ci(),
                "{name}: {prog} is not installed; CI must install it"
            );
            netlab::skipped(name, &format!("{prog} is not installed"));
            return false;
        }
    }
    true
}

/// A process whose stderr lines are kept with the instant each arrived.
struct Watched {
    proc: Option<Process>,
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
    what: String,
}

impl Watched {
    fn spawn(node: &Node, cmd: &Command, what: &str) -> Self {
        let mut proc = node.spawn_piped(cmd).unwrap();
        let lines: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
        let err = proc.child_mut().stderr.take().unwrap();
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                l.lock().unwrap().push((Instant::now(), line));
            }
        });
        Self {
            proc: Some(proc),
            lines,
            what: what.into(),
        }
    }

    /// The first line after `after` that contains `needle`, waiting up to
    /// `limit` for it.
    fn wait(&self, needle: &str, after: Instant, limit: Duration) -> Option<Instant> {
        let start = Instant::now();
        loop {
            if let Some(t) = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .find(|(t, l)| *t >= after && l.contains(needle))
                .map(|(t, _)| *t)
            {
                return Some(t);
            }
            if start.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn count(&self, needle: &str) -> usize {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, l)| l.contains(needle))
            .count()
    }

    fn text(&self) -> String {
        let lines = self.lines.lock().unwrap();
        let mut out = format!("--- {}\n", self.what);
        for (_, l) in lines.iter().rev().take(60).rev() {
            out.push_str(l);
            out.push('\n');
        }
        out
    }

    fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            let _ = p.signal(nix::sys::signal::Signal::SIGTERM);
            let _ = p.wait_timeout(Duration::from_secs(5));
        }
    }
}

struct Bench {
    lab: Lab,
    dir: PathBuf,
}

impl Bench {
    fn new(tag: &str, hosts: &[(&str, &[&str])]) -> Self {
        let lab = Lab::star(hosts).unwrap();
        let dir = std::env::temp_dir().join(format!("{}{tag}", lab.prefix()));
        std::fs::create_dir_all(&dir).unwrap();
        Self { lab, dir }
    }

    fn node(&self, n: &str) -> &Node {
        self.lab.node(n).unwrap()
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// keepalived-rs in `node` with `conf`.
    fn ours(&self, node: &str, conf: &str) -> Watched {
        let path = self.write(&format!("{node}-rs.conf"), conf);
        let mut cmd = Command::new(BIN);
        cmd.arg("--control")
            .arg(self.dir.join(format!("{node}.sock")))
            .args(["-n", "-l", "-D", "-f"])
            .arg(&path)
            .arg("-p")
            .arg(self.dir.join(format!("{node}-rs.pid")));
        Watched::spawn(self.node(node), &cmd, &format!("ours in {node}"))
    }

    /// keepalived 2.2.7 in `node` with `conf`.
    fn keepalived(&self, node: &str, conf: &str) -> Watched {
        // A killed keepalived leaves its pid files; the next would refuse.
        for f in ["k", "v", "c", "b"] {
            let _ = std::fs::remove_file(self.dir.join(format!("{node}-{f}.pid")));
        }
        let path = self.write(&format!("{node}-ka.conf"), conf);
        let mut cmd = Command::new("keepalived");
        cmd.args(["-n", "-l", "-D", "-f"]).arg(&path);
        for (flag, file) in [("-p", "k"), ("-r", "v"), ("-c", "c")] {
            cmd.arg(flag)
                .arg(self.dir.join(format!("{node}-{file}.pid")));
        }
        cmd.arg(format!(
            "--bfd_pid={}",
            self.dir.join(format!("{node}-b.pid")).display()
        ));
        Watched::spawn(self.node(node), &cmd, &format!("keepalived in {node}"))
    }

    fn status(&self, node: &str) -> serde_json::Value {
        Command::new(BIN)
            .args(["status", "--json", "--control"])
            .arg(self.dir.join(format!("{node}.sock")))
            .output()
            .ok()
            .and_then(|o| serde_json::from_slice(&o.stdout).ok())
            .unwrap_or_default()
    }
}

impl Bench {
    /// `status` once `done` holds (or after 5 s, as it then is).
    fn status_until(
        &self,
        node: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let start = Instant::now();
        loop {
            let s = self.status(node);
            if done(&s) || start.elapsed() > Duration::from_secs(5) {
                return s;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        for n in self.lab.nodes() {
            n.crash_all();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn bfd_block(name: &str, neighbor: &str, source: &str, extra: &str) -> String {
    format!(
        "bfd_instance {name} {{\n neighbor_ip {neighbor}\n source_ip {source}\n min_tx 10\n min_rx 10\n multiplier 3\n{extra}}}\n"
    )
}

/// Freezes then kills every process in `node`, and says when: the pids
/// are listed first (a subprocess), so the instant is the signals'.
fn crash(node: &Node) -> Instant {
    let pids = node.pids();
    let t = Instant::now();
    for sig in [
        nix::sys::signal::Signal::SIGSTOP,
        nix::sys::signal::Signal::SIGKILL,
    ] {
        for p in &pids {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*p), sig);
        }
    }
    t
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Ours in `a`, keepalived in `k`: both come Up; keepalived's death is
/// Down here (by detection time), its return Up again; our death is Down
/// there, our return Up there.
#[test]
fn keepalived_and_ours_come_up_and_detect_each_other_both_ways() {
    let name = "keepalived_and_ours_come_up_and_detect_each_other_both_ways";
    if !ready(name, &["keepalived"]) {
        return;
    }
    let _g = serial();
    let b = Bench::new(
        "kb",
        &[("a", &["198.51.100.1/24"]), ("k", &["198.51.100.2/24"])],
    );
    let ours_conf = bfd_block("k", "198.51.100.2", "198.51.100.1", "");
    let ka_conf = bfd_block("a", "198.51.100.1", "198.51.100.2", "");
    let mut ours = b.ours("a", &ours_conf);
    let mut ka = b.keepalived("k", &ka_conf);
    let t0 = Instant::now();
    let logs = |o: &Watched, k: &Watched| format!("{}{}", o.text(), k.text());
    let up = ours
        .wait("BFD k: Init -> Up", t0, Duration::from_secs(10))
        .or_else(|| ours.wait("BFD k: Down -> Up", t0, Duration::from_secs(1)));
    assert!(up.is_some(), "ours never came Up\n{}", logs(&ours, &ka));
    assert!(
        ka.wait("(a) Entering Up state", t0, Duration::from_secs(5))
            .is_some(),
        "keepalived never came Up\n{}",
        logs(&ours, &ka)
    );
    // Up at 10 ms both ways once the poll sequence is done.
    let s = b.status_until("a", |s| s["bfd"][0]["detection_time_us"] == 30_000);
    assert_eq!(s["bfd"][0]["state"], "Up", "{s}");
    assert_eq!(s["bfd"][0]["tx_interval_us"], 10_000, "{s}");

    // keepalived dies (frozen, then killed): Down here by detection.
    let kill = crash(b.node("k"));
    let down = ours
        .wait(
            "BFD k: Up -> Down (DetectionTimeExpired)",
            kill,
            Duration::from_secs(2),
        )
        .unwrap_or_else(|| panic!("ours never saw keepalived die\n{}", logs(&ours, &ka)));
    println!(
        "ours detected keepalived's death in {:.1} ms",
        ms(down - kill)
    );
    // keepalived back: Up again.
    ka = b.keepalived("k", &ka_conf);
    let again = Instant::now();
    assert!(
        ours.wait("-> Up", again, Duration::from_secs(10)).is_some(),
        "not Up again after keepalived's restart\n{}",
        logs(&ours, &ka)
    );
    assert!(ka
        .wait("(a) Entering Up state", again, Duration::from_secs(5))
        .is_some());
    std::thread::sleep(Duration::from_millis(300));

    // We die: keepalived sees it by detection time.
    let kill = crash(b.node("a"));
    let seen = ka
        .wait("(a) Entering Down state", kill, Duration::from_secs(2))
        .unwrap_or_else(|| panic!("keepalived never saw us die\n{}", logs(&ours, &ka)));
    println!("keepalived detected our death in {:.1} ms", ms(seen - kill));
    assert!(ka.count("Expired after") >= 1, "{}", ka.text());
    ours = b.ours("a", &ours_conf);
    let back = Instant::now();
    assert!(
        ka.wait("(a) Entering Up state", back, Duration::from_secs(10))
            .is_some(),
        "keepalived not Up again after our restart\n{}",
        logs(&ours, &ka)
    );
    // A graceful stop is AdminDown, not a timeout: keepalived goes Down at once.
    std::thread::sleep(Duration::from_millis(300));
    let stop = Instant::now();
    ours.stop();
    let gone = ka
        .wait("(a) Entering Down state", stop, Duration::from_secs(2))
        .unwrap_or_else(|| panic!("keepalived kept us Up after our stop\n{}", ka.text()));
    println!("keepalived saw our AdminDown in {:.1} ms", ms(gone - stop));
    ka.stop();
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

/// A victim (keepalived 2.2.7 with two sessions) is killed 20 times; ours
/// (in `a`) and keepalived's (in `k`) detection times are measured from
/// the kill to each one's state change, in the same runs.
#[test]
fn detection_time_at_10ms_x3_over_20_runs_vs_keepalived() {
    let name = "detection_time_at_10ms_x3_over_20_runs_vs_keepalived";
    if !ready(name, &["keepalived"]) {
        return;
    }
    let _g = serial();
    let runs: usize = std::env::var("BFD_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let b = Bench::new(
        "dt",
        &[
            ("a", &["198.51.100.1/24"]),
            ("k", &["198.51.100.2/24"]),
            ("v", &["198.51.100.3/24"]),
        ],
    );
    let ours = b.ours("a", &bfd_block("v", "198.51.100.3", "198.51.100.1", ""));
    let ka = b.keepalived("k", &bfd_block("v", "198.51.100.3", "198.51.100.2", ""));
    let victim_conf = format!(
        "{}{}",
        bfd_block("a", "198.51.100.1", "198.51.100.3", ""),
        bfd_block("k", "198.51.100.2", "198.51.100.3", "")
    );
    let (mut mine, mut theirs) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let start = Instant::now();
        let v = b.keepalived("v", &victim_conf);
        let logs = || format!("{}{}{}", ours.text(), ka.text(), v.text());
        assert!(
            ours.wait("BFD v: ", start, Duration::from_secs(10))
                .is_some()
                && ours.wait("-> Up", start, Duration::from_secs(10)).is_some(),
            "run {run}: ours never Up\n{}",
            logs()
        );
        assert!(
            ka.wait("(v) Entering Up state", start, Duration::from_secs(10))
                .is_some(),
            "run {run}: keepalived never Up\n{}",
            logs()
        );
        // Let both poll sequences finish (10 ms each way), and a little
        // more so the kill falls anywhere in the send interval.
        std::thread::sleep(Duration::from_millis(300 + (run as u64 * 7) % 10));
        let kill = crash(b.node("v"));
        let o = ours
            .wait(
                "BFD v: Up -> Down (DetectionTimeExpired)",
                kill,
                Duration::from_secs(2),
            )
            .unwrap_or_else(|| panic!("run {run}: ours did not go Down\n{}", logs()));
        let k = ka
            .wait("(v) Entering Down state", kill, Duration::from_secs(2))
            .unwrap_or_else(|| panic!("run {run}: keepalived did not go Down\n{}", logs()));
        mine.push(ms(o - kill));
        theirs.push(ms(k - kill));
        // Both back to Down before the next victim starts.
        std::thread::sleep(Duration::from_millis(100));
    }
    let table: Vec<String> = mine
        .iter()
        .zip(&theirs)
        .enumerate()
        .map(|(i, (m, t))| format!("run {i:2}: ours {m:5.1} ms  keepalived {t:5.1} ms"))
        .collect();
    println!("{}", table.join("\n"));
    let (mut m, mut t) = (mine.clone(), theirs.clone());
    let (m50, m_max) = (percentile(&mut m, 0.5), percentile(&mut m, 1.0));
    let (t50, t_max) = (percentile(&mut t, 0.5), percentile(&mut t, 1.0));
    let m95 = percentile(&mut m, 0.95);
    let m_min = m[0];
    let t_min = t[0];
    println!(
        "detection over {runs} runs at 10 ms x3: ours min {m_min:.1} median {m50:.1} max {m_max:.1} ms; \
         keepalived min {t_min:.1} median {t50:.1} max {t_max:.1} ms"
    );
    // Goal: at most 3 x 10 ms + 2 ms, and not slower than keepalived.
    // The worst run may carry the test's own noise (the kill instant
    // precedes the signals; the log line crosses a pipe): 95% must meet
    // the goal, and none may miss it by more than 3 ms.
    println!(
        "ours 95th percentile {m95:.1} ms; the 32 ms goal {}",
        if m_max <= 32.0 {
            "met by every run"
        } else {
            "missed by the worst run"
        }
    );
    assert!(
        m95 <= 32.0,
        "ours p95 {m95:.1} ms > 32 ms\n{}",
        table.join("\n")
    );
    assert!(
        m_max <= 35.0,
        "ours worst {m_max:.1} ms\n{}",
        table.join("\n")
    );
    assert!(
        m50 <= t50 + 1.0,
        "ours median {m50:.1} ms slower than keepalived's {t50:.1} ms"
    );
    // Detection cannot come before 3 x 10 ms less one interval (20 ms).
    assert!(
        m_min >= 19.0,
        "ours {m_min:.1} ms: too early to be detection"
    );
}

const BFDD: &str = "/usr/lib/frr/bfdd";

impl Bench {
    /// FRR's bfdd in `node` with a `bfd { peer … }` block, its state
    /// changes logged (`debug bfd peer`) to stderr.
    fn bfdd(&self, node: &str, peer: &str, local: &str) -> Watched {
        let dir = self.dir.join(format!("{node}-frr"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // bfdd drops to the frr user: its directory must be frr's.
        let _ = Command::new("chown").arg("frr:frr").arg(&dir).status();
        let conf = dir.join("bfdd.conf");
        std::fs::write(
            &conf,
            format!(
                "debug bfd peer\nbfd\n peer {peer} local-address {local}\n  receive-interval 10\n  transmit-interval 10\n  detect-multiplier 3\n !\n!\n"
            ),
        )
        .unwrap();
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg("exec \"$0\" \"$@\" 1>&2")
            .arg(BFDD)
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(dir.join("bfdd.pid"))
            .arg("--vty_socket")
            .arg(&dir)
            .arg("-z")
            .arg(dir.join("zserv.api"))
            .arg("--bfdctl")
            .arg(dir.join("bfdd.sock"))
            .args(["--log", "stdout", "--log-level", "debug"]);
        Watched::spawn(self.node(node), &cmd, &format!("bfdd in {node}"))
    }
}

/// Ours in `a`, FRR's bfdd in `f`: both come Up at 10 ms x3; bfdd's death
/// is Down here, its return Up; our death is Down in bfdd, our return Up.
#[test]
fn frr_bfdd_and_ours_come_up_and_detect_each_other_both_ways() {
    let name = "frr_bfdd_and_ours_come_up_and_detect_each_other_both_ways";
    if !ready(name, &[BFDD]) {
        return;
    }
    let _g = serial();
    let b = Bench::new(
        "fb",
        &[("a", &["198.51.100.1/24"]), ("f", &["198.51.100.4/24"])],
    );
    let ours_conf = bfd_block("f", "198.51.100.4", "198.51.100.1", "");
    let mut ours = b.ours("a", &ours_conf);
    let mut frr = b.bfdd("f", "198.51.100.1", "198.51.100.4");
    let t0 = Instant::now();
    let logs = |o: &Watched, f: &Watched| format!("{}{}", o.text(), f.text());
    assert!(
        ours.wait("-> Up", t0, Duration::from_secs(15)).is_some(),
        "ours never came Up with bfdd\n{}",
        logs(&ours, &frr)
    );
    assert!(
        frr.wait("-> up", t0, Duration::from_secs(5)).is_some(),
        "bfdd never came Up\n{}",
        logs(&ours, &frr)
    );
    let s = b.status_until("a", |s| s["bfd"][0]["detection_time_us"] == 30_000);
    assert_eq!(s["bfd"][0]["state"], "Up", "{s}");

    let kill = crash(b.node("f"));
    let down = ours
        .wait(
            "BFD f: Up -> Down (DetectionTimeExpired)",
            kill,
            Duration::from_secs(2),
        )
        .unwrap_or_else(|| panic!("ours never saw bfdd die\n{}", logs(&ours, &frr)));
    println!("ours detected bfdd's death in {:.1} ms", ms(down - kill));
    assert!(ms(down - kill) <= 32.0, "{:.1} ms", ms(down - kill));
    frr = b.bfdd("f", "198.51.100.1", "198.51.100.4");
    let again = Instant::now();
    assert!(
        ours.wait("-> Up", again, Duration::from_secs(15)).is_some(),
        "not Up again after bfdd's restart\n{}",
        logs(&ours, &frr)
    );
    assert!(frr.wait("-> up", again, Duration::from_secs(5)).is_some());
    std::thread::sleep(Duration::from_millis(300));

    let kill = crash(b.node("a"));
    let seen = frr
        .wait(
            "up -> down reason:control-expired",
            kill,
            Duration::from_secs(2),
        )
        .unwrap_or_else(|| panic!("bfdd never saw us die\n{}", logs(&ours, &frr)));
    println!("bfdd detected our death in {:.1} ms", ms(seen - kill));
    ours = b.ours("a", &ours_conf);
    let back = Instant::now();
    assert!(
        frr.wait("-> up", back, Duration::from_secs(15)).is_some(),
        "bfdd not Up again after our restart\n{}",
        logs(&ours, &frr)
    );
    std::thread::sleep(Duration::from_millis(300));
    let stop = Instant::now();
    ours.stop();
    let gone = frr
        .wait(
            "up -> down reason:neighbor-down",
            stop,
            Duration::from_secs(2),
        )
        .unwrap_or_else(|| panic!("bfdd did not take our AdminDown\n{}", frr.text()));
    println!("bfdd saw our AdminDown in {:.1} ms", ms(gone - stop));
    frr.stop();
}

const VIP: &str = "198.51.100.250";

/// lb1 (MASTER) tracks its BFD session to the router r (keepalived
/// 2.2.7); r dies: lb1 goes FAULT within the detection time and lb2
/// (BACKUP) is MASTER within the detection time plus one advert.
#[test]
fn track_bfd_master_gives_up_within_detection_plus_one_advert() {
    let name = "track_bfd_master_gives_up_within_detection_plus_one_advert";
    if !ready(name, &["keepalived"]) {
        return;
    }
    let _g = serial();
    let b = Bench::new(
        "tb",
        &[
            ("lb1", &["198.51.100.11/24"]),
            ("lb2", &["198.51.100.12/24"]),
            ("r", &["198.51.100.1/24"]),
        ],
    );
    let instance = |state: &str, prio: u8, track: &str| {
        format!(
            "vrrp_instance VI_1 {{\n state {state}\n interface eth0\n virtual_router_id 51\n priority {prio}\n version 3\n advert_int 1\n{track} virtual_ipaddress {{\n  {VIP}/24\n }}\n}}\n"
        )
    };
    // Its notify FIFO gets BFD lines (ours) beside keepalived's.
    let fifo = b.dir.join("notify.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let mut reader = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
            .open(&fifo)
            .unwrap()
    };
    let lb1_conf = format!(
        "global_defs {{\n notify_fifo {}\n}}\n{}{}",
        fifo.display(),
        bfd_block("gw", "198.51.100.1", "198.51.100.11", ""),
        instance("MASTER", 100, " track_bfd {\n  gw\n }\n")
    );
    let lb1 = b.ours("lb1", &lb1_conf);
    let lb2 = b.ours("lb2", &instance("BACKUP", 90, ""));
    let r = b.keepalived("r", &bfd_block("lb1", "198.51.100.11", "198.51.100.1", ""));
    let logs = || format!("{}{}{}", lb1.text(), lb2.text(), r.text());
    let vip: std::net::IpAddr = VIP.parse().unwrap();
    // lb1 is FAULT until its session is Up (keepalived's rule for an
    // unweighted track_bfd), then MASTER.
    b.node("lb1")
        .wait_for_address(vip, Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("lb1 never MASTER: {e}\n{}", logs()));
    let s = b.status_until("lb1", |s| s["bfd"][0]["detection_time_us"] == 30_000);
    assert_eq!(s["bfd"][0]["state"], "Up", "{s}");
    std::thread::sleep(Duration::from_secs(2));
    assert!(!b.node("lb2").has_address(vip).unwrap());

    let kill = crash(b.node("r"));
    let fault = lb1
        .wait("(VI_1) Entering FAULT STATE", kill, Duration::from_secs(3))
        .unwrap_or_else(|| panic!("lb1 never gave up\n{}", logs()));
    let master = lb2
        .wait("(VI_1) Entering MASTER STATE", kill, Duration::from_secs(5))
        .unwrap_or_else(|| panic!("lb2 never took over\n{}", logs()));
    let (f, m) = (ms(fault - kill), ms(master - kill));
    println!("track_bfd: r killed; lb1 FAULT after {f:.1} ms, lb2 MASTER after {m:.1} ms");
    // Detection is at most 30 ms (+2 for the timer); lb2 takes over on
    // lb1's priority-0 advert after its skew time (0.65 s at advert_int 1),
    // within one advert.
    assert!(f <= 32.0, "lb1 gave up after {f:.1} ms\n{}", logs());
    assert!(
        m <= 32.0 + 1000.0,
        "lb2 took over after {m:.1} ms\n{}",
        logs()
    );
    assert!(
        b.node("lb2")
            .wait_for_address(vip, Duration::from_secs(1))
            .is_ok(),
        "{}",
        logs()
    );
    assert!(!b.node("lb1").has_address(vip).unwrap(), "{}", logs());
    // The reason is in lb1's status.
    let s = b.status_until("lb1", |s| s["vrrp"][0]["state"] == "FAULT");
    let why = s["vrrp"][0].to_string();
    assert!(why.contains("track_bfd gw down"), "{s}");
    let mut text = String::new();
    let _ = std::io::Read::read_to_string(&mut reader, &mut text);
    let lines: Vec<&str> = text.lines().collect();
    let up = lines.iter().position(|l| *l == "BFD \"gw\" UP");
    let down = lines.iter().position(|l| *l == "BFD \"gw\" DOWN");
    let fault = lines
        .iter()
        .position(|l| l.starts_with("INSTANCE \"VI_1\" FAULT"));
    assert!(up.is_some() && down > up && fault.is_some(), "{lines:?}");
}

/// A director checks real server rs1 with `BFD_CHECK` (its BFD peer is
/// keepalived 2.2.7 on rs1); rs1 dies: it leaves rotation within the
/// detection time, and comes back when its BFD does.
#[test]
fn bfd_check_takes_a_real_server_out_within_the_detection_time() {
    let name = "bfd_check_takes_a_real_server_out_within_the_detection_time";
    if !ready(name, &["keepalived", "nft"]) {
        return;
    }
    let _g = serial();
    let b = Bench::new(
        "bc",
        &[
            ("lb", &["198.51.100.10/24"]),
            ("rs1", &["198.51.100.21/24"]),
            ("rs2", &["198.51.100.22/24"]),
        ],
    );
    let conf = format!(
        "{}virtual_server {VIP} 80 {{\n delay_loop 1\n lb_algo rr\n lb_kind NAT\n protocol TCP\n real_server 198.51.100.21 80 {{\n  BFD_CHECK {{\n   name rs1\n  }}\n }}\n real_server 198.51.100.22 80 {{\n }}\n}}\n",
        bfd_block("rs1", "198.51.100.21", "198.51.100.10", "")
    );
    b.node("lb")
        .add_address("eth0", &format!("{VIP}/24"))
        .unwrap();
    let lb = b.ours("lb", &conf);
    let rs1_conf = bfd_block("lb", "198.51.100.10", "198.51.100.21", "");
    let mut rs1 = b.keepalived("rs1", &rs1_conf);
    let logs = |l: &Watched, r: &Watched| format!("{}{}", l.text(), r.text());
    let healthy = |s: &serde_json::Value| {
        s["virtual_servers"][0]["real_servers"]
            .as_array()
            .map(|a| a.iter().map(|r| r["healthy"] == true).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    let s = b.status_until("lb", |s| {
        s["bfd"][0]["detection_time_us"] == 30_000 && healthy(s) == [true, true]
    });
    assert_eq!(healthy(&s), [true, true], "{s}\n{}", logs(&lb, &rs1));
    std::thread::sleep(Duration::from_millis(300));

    let kill = crash(b.node("rs1"));
    let out = lb
        .wait(
            "Removing service [198.51.100.21]:tcp:80",
            kill,
            Duration::from_secs(3),
        )
        .unwrap_or_else(|| panic!("rs1 never left rotation\n{}", logs(&lb, &rs1)));
    let took = ms(out - kill);
    println!("BFD_CHECK: rs1 out of rotation {took:.1} ms after its death");
    assert!(took <= 35.0, "{took:.1} ms\n{}", logs(&lb, &rs1));
    let s = b.status_until("lb", |s| healthy(s) == [false, true]);
    assert_eq!(healthy(&s), [false, true], "{s}");
    let why = s["virtual_servers"][0]["real_servers"][0].to_string();
    assert!(why.contains("BFD session rs1 is down"), "{why}");
    // Back with its BFD.
    rs1 = b.keepalived("rs1", &rs1_conf);
    let back = Instant::now();
    assert!(
        lb.wait(
            "Adding service [198.51.100.21]:tcp:80",
            back,
            Duration::from_secs(10)
        )
        .is_some(),
        "rs1 never came back\n{}",
        logs(&lb, &rs1)
    );
}

/// Ours and keepalived at 10 ms x3 for 60 s (`BFD_HOG_SECS`) while 8
/// busy loops compete for the 2 cores: no false Down on our side.
/// keepalived's count is printed beside ours.
#[test]
fn no_false_downs_at_10ms_x3_under_8_cpu_hogs() {
    let name = "no_false_downs_at_10ms_x3_under_8_cpu_hogs";
    if !ready(name, &["keepalived"]) {
        return;
    }
    let _g = serial();
    let secs: u64 = std::env::var("BFD_HOG_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let b = Bench::new(
        "hg",
        &[
            ("a", &["198.51.100.1/24"]),
            ("k", &["198.51.100.2/24"]),
            ("h", &["198.51.100.9/24"]),
        ],
    );
    let ours = b.ours("a", &bfd_block("k", "198.51.100.2", "198.51.100.1", ""));
    let ka = b.keepalived("k", &bfd_block("a", "198.51.100.1", "198.51.100.2", ""));
    let s = b.status_until("a", |s| s["bfd"][0]["detection_time_us"] == 30_000);
    assert_eq!(
        s["bfd"][0]["state"],
        "Up",
        "{s}\n{}{}",
        ours.text(),
        ka.text()
    );
    std::thread::sleep(Duration::from_millis(500));
    let base = b.status("a")["bfd"][0].clone();
    let ka_downs_before = ka.count("Entering Down state");
    let hogs: Vec<Process> = (0..8)
        .map(|_| {
            b.node("h")
                .spawn("sh", &["-c", "while :; do :; done"])
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_secs(secs));
    drop(hogs);
    b.node("h").crash_all();
    let s = b.status("a")["bfd"][0].clone();
    let ours_downs = s["downs"].as_u64().unwrap() - base["downs"].as_u64().unwrap();
    let received = s["received"].as_u64().unwrap() - base["received"].as_u64().unwrap();
    let ka_downs = ka.count("Entering Down state") - ka_downs_before;
    println!(
        "{secs} s under 8 hogs at 10 ms x3: ours {ours_downs} false Downs ({received} packets received, {:.0}/s), keepalived {ka_downs}",
        received as f64 / secs as f64
    );
    assert_eq!(ours_downs, 0, "{}\n{}", ours.text(), ka.text());
    assert_eq!(s["state"], "Up", "{s}");
}

/// UDP datagrams received and sent so far in `node`'s namespace.
fn udp_datagrams(node: &Node) -> (u64, u64) {
    let out = node.exec(&["cat", "/proc/net/snmp"]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("Udp:")).collect();
    let (Some(head), Some(vals)) = (rows.first(), rows.get(1)) else {
        return (0, 0);
    };
    let find = |k: &str| -> u64 {
        head.split_whitespace()
            .position(|h| h == k)
            .and_then(|i| vals.split_whitespace().nth(i))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (find("InDatagrams"), find("OutDatagrams"))
}

/// A lab of two nodes with `n` sessions' addresses each: x holds
/// 198.51.100.1..n, y 203.0.113.1..n, each with a route to the other.
fn pair_lab(tag: &str, n: usize) -> Bench {
    let b = Bench::new(
        tag,
        &[("x", &["198.51.100.254/24"]), ("y", &["203.0.113.254/24"])],
    );
    for (node, net, other) in [
        ("x", "198.51.100", "203.0.113"),
        ("y", "203.0.113", "198.51.100"),
    ] {
        let mut cmds = String::new();
        for i in 1..=n {
            let _ = writeln!(cmds, "address add {net}.{i}/32 dev eth0");
        }
        let _ = writeln!(cmds, "route add {other}.0/24 dev eth0");
        let f = b.write(&format!("{node}.batch"), &cmds);
        assert!(b
            .node(node)
            .succeeds(&["ip", "-batch", f.to_str().unwrap()]));
    }
    b
}

/// The two sides' `bfd_instance` blocks for `n` sessions.
fn pair_confs(n: usize) -> (String, String) {
    let (mut x, mut y) = (String::new(), String::new());
    for i in 1..=n {
        x.push_str(&bfd_block(
            &format!("s{i}"),
            &format!("203.0.113.{i}"),
            &format!("198.51.100.{i}"),
            "",
        ));
        y.push_str(&bfd_block(
            &format!("s{i}"),
            &format!("198.51.100.{i}"),
            &format!("203.0.113.{i}"),
            "",
        ));
    }
    (x, y)
}

/// A benchmark (`bench/bfd-sessions`): `BFD_SESSIONS` (200) sessions at
/// 10 ms x3 between two keepalived-rs, then in the same run between two
/// keepalived 2.2.7 (one pair after the other, so neither takes the
/// other's CPU); each session on its own pair of addresses. Over
/// `BFD_CPU_SECS` (20) each: one side's CPU (keepalived's BFD child), the
/// UDP datagrams that side handled, and its Downs. (keepalived against
/// ours flaps from about 50 sessions up, as it does against itself: each
/// is measured against its own kind.)
#[test]
#[ignore = "a benchmark: bench/bfd-sessions"]
fn bfd_sessions_cpu_vs_keepalived() {
    let name = "bfd_sessions_cpu_vs_keepalived";
    if !ready(name, &["keepalived"]) {
        return;
    }
    let _g = serial();
    let n: usize = std::env::var("BFD_SESSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let secs: u64 = std::env::var("BFD_CPU_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    assert!(n <= 250);
    let (x_conf, y_conf) = pair_confs(n);
    let pct = |t: u64, el: f64| t as f64 / 100.0 / el * 100.0;
    let rate = |a: (u64, u64), b: (u64, u64), el: f64| {
        format!(
            "{:.0} in, {:.0} out",
            (b.0 - a.0) as f64 / el,
            (b.1 - a.1) as f64 / el
        )
    };
    // Ours.
    let (ours_pct, ours_rate, our_downs) = {
        let rs = pair_lab("cr", n);
        let ours_x = rs.ours("x", &x_conf);
        let _ours_y = rs.ours("y", &y_conf);
        let up = |s: &serde_json::Value| {
            s["bfd"].as_array().map_or(0, |a| {
                a.iter()
                    .filter(|x| x["state"] == "Up" && x["detection_time_us"] == 30_000)
                    .count()
            })
        };
        let start = Instant::now();
        while up(&rs.status("x")) < n && start.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(200));
        }
        assert_eq!(up(&rs.status("x")), n, "{}", ours_x.text());
        std::thread::sleep(Duration::from_secs(2));
        let pid = ours_x.proc.as_ref().unwrap().pid();
        let before = rs.status("x");
        let (c0, u0, t0) = (
            netlab::procstat::cpu_ticks(&[pid]),
            udp_datagrams(rs.node("x")),
            Instant::now(),
        );
        std::thread::sleep(Duration::from_secs(secs));
        let (c1, u1, el) = (
            netlab::procstat::cpu_ticks(&[pid]),
            udp_datagrams(rs.node("x")),
            t0.elapsed().as_secs_f64(),
        );
        let after = rs.status("x");
        let sum = |s: &serde_json::Value, k: &str| {
            s["bfd"]
                .as_array()
                .map_or(0, |a| a.iter().filter_map(|x| x[k].as_u64()).sum::<u64>())
        };
        (
            pct(c1 - c0, el),
            rate(u0, u1, el),
            sum(&after, "downs") - sum(&before, "downs"),
        )
    };
    // keepalived, which logs every packet it discards: to files.
    // BFD_WITH_KEEPALIVED=0 measures ours only.
    let with_ka = std::env::var("BFD_WITH_KEEPALIVED").map_or(true, |v| v != "0");
    let (ka_pct, ka_rate, ka_downs) = if with_ka {
        let ka = pair_lab("ck", n);
        let run = |node: &str, conf: &str| {
            let path = ka.write(&format!("{node}-ka.conf"), conf);
            let mut cmd = Command::new("keepalived");
            cmd.args(["-n", "-l", "-D", "-f"]).arg(&path);
            for (flag, file) in [("-p", "k"), ("-r", "v"), ("-c", "c")] {
                cmd.arg(flag).arg(ka.dir.join(format!("{node}-{file}.pid")));
            }
            cmd.arg(format!(
                "--bfd_pid={}",
                ka.dir.join(format!("{node}-b.pid")).display()
            ));
            let log = std::fs::File::create(ka.dir.join(format!("{node}-ka.log"))).unwrap();
            ka.node(node).spawn_logged(&cmd, Some(log)).unwrap()
        };
        let downs = || {
            std::fs::read_to_string(ka.dir.join("x-ka.log"))
                .unwrap_or_default()
                .matches("Entering Down state")
                .count()
        };
        let _x = run("x", &x_conf);
        let _y = run("y", &y_conf);
        std::thread::sleep(Duration::from_secs(10));
        let pid: u32 = std::fs::read_to_string(ka.dir.join("x-b.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let (d0, c0, u0, t0) = (
            downs(),
            netlab::procstat::cpu_ticks(&[pid]),
            udp_datagrams(ka.node("x")),
            Instant::now(),
        );
        std::thread::sleep(Duration::from_secs(secs));
        let (c1, u1, el) = (
            netlab::procstat::cpu_ticks(&[pid]),
            udp_datagrams(ka.node("x")),
            t0.elapsed().as_secs_f64(),
        );
        (pct(c1 - c0, el), rate(u0, u1, el), downs() - d0)
    } else {
        (0.0, String::from("-"), 0)
    };
    println!("| sessions at 10 ms x3 | seconds | daemon | CPU (one side) | UDP datagrams/s (one side) | Downs (one side) |");
    println!("|---|---|---|---|---|---|");
    println!("| {n} | {secs} | keepalived-rs | {ours_pct:.1}% | {ours_rate} | {our_downs} |");
    println!(
        "| {n} | {secs} | keepalived 2.2.7 (BFD child) | {ka_pct:.1}% | {ka_rate} | {ka_downs} |"
    );
    println!(
        "| | | ratio | {:.2} | | |",
        if ka_pct > 0.0 {
            ours_pct / ka_pct
        } else {
            f64::NAN
        }
    );
    assert_eq!(our_downs, 0);
}

/// A reload (SIGHUP) with one session unchanged and one with new timers:
/// neither goes Down on either side; the unchanged one keeps its
/// discriminator, the changed one runs the new interval; a removed one
/// says AdminDown and an added one comes Up.
#[test]
fn a_reload_keeps_sessions_up() {
    let name = "a_reload_keeps_sessions_up";
    if !ready(name, &["keepalived"]) {
        return;
    }
    let _g = serial();
    let b = Bench::new(
        "rl",
        &[
            (
                "a",
                &["198.51.100.1/24", "198.51.100.11/24", "198.51.100.21/24"],
            ),
            ("k", &["198.51.100.2/24"]),
        ],
    );
    let first = format!(
        "{}{}{}",
        bfd_block("same", "198.51.100.2", "198.51.100.1", ""),
        bfd_block("timers", "198.51.100.2", "198.51.100.11", ""),
        bfd_block("gone", "198.51.100.2", "198.51.100.21", "")
    );
    let ka = b.keepalived(
        "k",
        &format!(
            "{}{}{}",
            bfd_block("same", "198.51.100.1", "198.51.100.2", ""),
            bfd_block("timers", "198.51.100.11", "198.51.100.2", ""),
            bfd_block("gone", "198.51.100.21", "198.51.100.2", "")
        ),
    );
    let ours = b.ours("a", &first);
    let all_up = |s: &serde_json::Value| {
        s["bfd"]
            .as_array()
            .is_some_and(|a| a.len() == 3 && a.iter().all(|x| x["detection_time_us"] == 30_000))
    };
    let s = b.status_until("a", all_up);
    assert!(all_up(&s), "{s}\n{}{}", ours.text(), ka.text());
    let disc = s["bfd"][0]["local_discriminator"].clone();
    std::thread::sleep(Duration::from_millis(500));
    // "gone" becomes "new" on the same addresses; "timers" goes to 20 ms.
    let second = format!(
        "{}{}{}",
        bfd_block("same", "198.51.100.2", "198.51.100.1", ""),
        bfd_block("timers", "198.51.100.2", "198.51.100.11", "").replace("min_tx 10", "min_tx 20"),
        bfd_block("new", "198.51.100.2", "198.51.100.21", "")
    );
    b.write("a-rs.conf", &second);
    let hup = Instant::now();
    ours.proc
        .as_ref()
        .unwrap()
        .signal(nix::sys::signal::Signal::SIGHUP)
        .unwrap();
    let s = b.status_until("a", |s| {
        s["bfd"].as_array().is_some_and(|a| {
            a.iter()
                .any(|x| x["name"] == "timers" && x["tx_interval_us"] == 20_000)
                && a.iter().any(|x| x["name"] == "new" && x["state"] == "Up")
        })
    });
    std::thread::sleep(Duration::from_secs(1));
    let logs = format!("{}{}", ours.text(), ka.text());
    let find = |s: &serde_json::Value, n: &str| {
        s["bfd"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["name"] == n).cloned())
            .unwrap_or_default()
    };
    assert_eq!(find(&s, "same")["local_discriminator"], disc, "{s}");
    assert_eq!(find(&s, "timers")["tx_interval_us"], 20_000, "{s}\n{logs}");
    assert_eq!(find(&s, "new")["state"], "Up", "{s}\n{logs}");
    assert!(find(&s, "gone").is_null(), "{s}");
    // No Down of a kept session on either side after the reload.
    let downs_after = |w: &Watched, needle: &str| {
        w.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, l)| *t >= hup && l.contains(needle))
            .count()
    };
    for kept in ["same", "timers"] {
        assert_eq!(
            downs_after(&ours, &format!("BFD {kept}: Up -> Down")),
            0,
            "{logs}"
        );
        assert_eq!(
            downs_after(&ka, &format!("({kept}) Entering Down state")),
            0,
            "{logs}"
        );
    }
    // The removed one said AdminDown: keepalived saw it go at once.
    assert_eq!(downs_after(&ka, "(gone) Entering Down state"), 1, "{logs}");
}
