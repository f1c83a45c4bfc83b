//! Reload (#11): SIGHUP and `keepalived-rs reload` apply a new
//! configuration without a flap on the wire, and refuse a broken one.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Read as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use netlab::{Lab, Process};
use nix::sys::signal::Signal;

const BIN: &str = env!("CARGO_BIN_EXE_keepalived-rs");

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

struct Rig {
    lab: Lab,
    dir: PathBuf,
    daemons: Vec<(String, Process)>,
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.daemons.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Rig {
    fn new(tag: &str, hosts: &[(&str, &[&str])]) -> Self {
        let lab = Lab::star(hosts).unwrap();
        let dir = std::env::temp_dir().join(format!("{}{tag}", lab.prefix()));
        std::fs::create_dir_all(&dir).unwrap();
        Self {
            lab,
            dir,
            daemons: Vec::new(),
        }
    }

    fn conf(&self, node: &str) -> PathBuf {
        self.dir.join(format!("{node}.conf"))
    }

    fn start(&mut self, node: &str, text: &str) {
        std::fs::write(self.conf(node), text).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.args(["-n", "-l", "-f"])
            .arg(self.conf(node))
            .arg("--control")
            .arg(self.dir.join(format!("{node}.sock")));
        let log = std::fs::File::create(self.dir.join(format!("{node}.log"))).unwrap();
        let p = self
            .lab
            .node(node)
            .unwrap()
            .spawn_logged(&cmd, Some(log))
            .unwrap();
        self.daemons.push((node.to_owned(), p));
    }

    fn hup(&self, node: &str) {
        let (_, p) = self.daemons.iter().find(|(n, _)| n == node).unwrap();
        p.signal(Signal::SIGHUP).unwrap();
    }

    fn log(&self, node: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{node}.log"))).unwrap_or_default()
    }

    fn status(&self, node: &str) -> serde_json::Value {
        let out = Command::new(BIN)
            .args(["status", "--json", "--control"])
            .arg(self.dir.join(format!("{node}.sock")))
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    }

    fn wait_log(&self, node: &str, needle: &str, within: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < within {
            if self.log(node).contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

fn instance(priority: u8, vips: &[&str]) -> String {
    common::Instance {
        priority,
        advert: "0.1".into(),
        vips: vips.iter().map(|v| format!("{v}/24")).collect(),
        ..common::Instance::default()
    }
    .text()
}

type Counted = std::thread::JoinHandle<Result<std::io::Result<(u32, u32)>, netlab::Error>>;

/// Counts the adverts `node` hears, and those of priority 0, until `done`.
fn count_adverts(node: &netlab::Node, done: Arc<AtomicBool>) -> Counted {
    node.thread(move || {
        let mut s = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::RAW,
            Some(socket2::Protocol::from(112)),
        )?;
        s.set_read_timeout(Some(Duration::from_millis(50)))?;
        let (mut adverts, mut zero) = (0u32, 0u32);
        let mut buf = [0u8; 1500];
        while !done.load(Ordering::Relaxed) {
            if let Ok(n) = s.read(&mut buf) {
                let ihl = usize::from(buf[0] & 0x0f) * 4;
                if n > ihl + 2 {
                    adverts += 1;
                    if buf[ihl + 2] == 0 {
                        zero += 1;
                    }
                }
            }
        }
        Ok::<_, std::io::Error>((adverts, zero))
    })
    .unwrap()
}

/// Samples whether 198.51.100.250 is on `node` about every millisecond
/// until `done`: (samples, samples without it).
fn sample_vip(node: &netlab::Node, done: Arc<AtomicBool>) -> Counted {
    node.thread(move || {
        let (mut samples, mut gaps) = (0u32, 0u32);
        let vip = SocketAddr::from(([198, 51, 100, 250], 0));
        while !done.load(Ordering::Relaxed) {
            samples += 1;
            if std::net::UdpSocket::bind(vip).is_err() {
                gaps += 1;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok::<_, std::io::Error>((samples, gaps))
    })
    .unwrap()
}

#[test]
fn sighup_adds_a_vip_without_a_gap_and_refuses_a_broken_config() {
    if !netlab::privileged("sighup_adds_a_vip_without_a_gap_and_refuses_a_broken_config") {
        return;
    }
    let mut rig = Rig::new(
        "reload",
        &[
            ("lb1", &["198.51.100.21/24"]),
            ("lb2", &["198.51.100.22/24"]),
        ],
    );
    rig.start("lb1", &instance(100, &["198.51.100.250"]));
    rig.start("lb2", &instance(90, &["198.51.100.250"]));
    let lb1 = rig.lab.node("lb1").unwrap().clone();
    lb1.wait_for_address(ip("198.51.100.250"), Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("no master: {e}\n{}", rig.log("lb1")));
    // Both started together may both be MASTER for an advert: settle.
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(rig.status("lb2")["vrrp"][0]["state"], "BACKUP");
    let became = rig.status("lb2")["vrrp"][0]["became_master"].clone();
    // lb2 hears every advert: a priority-0 one would be a flap.
    let done = Arc::new(AtomicBool::new(false));
    let sniff = count_adverts(rig.lab.node("lb2").unwrap(), done.clone());
    // lb1's old VIP, sampled every millisecond or so across the reload.
    let sampler = sample_vip(&lb1, done.clone());
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(
        rig.conf("lb1"),
        instance(100, &["198.51.100.250", "198.51.100.251"]),
    )
    .unwrap();
    let t = Instant::now();
    rig.hup("lb1");
    let added = lb1.wait_for_address(ip("198.51.100.251"), Duration::from_secs(3));
    eprintln!("reload: the added VIP is up {:?} after SIGHUP", t.elapsed());
    std::thread::sleep(Duration::from_millis(500));
    // A broken configuration: refused, with its file:line; all stays.
    let broken = instance(100, &["198.51.100.250"]).replace("priority 100", "priority 300");
    let line = 1 + broken
        .lines()
        .position(|l| l.contains("priority 300"))
        .unwrap();
    std::fs::write(rig.conf("lb1"), &broken).unwrap();
    rig.hup("lb1");
    let refused = rig.wait_log("lb1", "reload refused", Duration::from_secs(3));
    // The same through the control socket: exit 1, the errors printed.
    let via_control = Command::new(BIN)
        .args(["reload", "--control"])
        .arg(rig.dir.join("lb1.sock"))
        .output()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    done.store(true, Ordering::Relaxed);
    let (samples, gaps) = sampler.join().unwrap().unwrap().unwrap();
    let (adverts, zero) = sniff.join().unwrap().unwrap().unwrap();
    let log = rig.log("lb1");
    eprintln!(
        "reload: {samples} samples of the old VIP, {gaps} missing; lb2 heard {adverts} adverts, {zero} of priority 0"
    );
    assert!(added.is_ok(), "the new VIP never came\n{log}");
    assert!(samples > 300, "sampled {samples} times");
    assert_eq!(gaps, 0, "the old VIP went away during the reload\n{log}");
    assert!(adverts > 10, "lb2 heard {adverts} adverts");
    assert_eq!(zero, 0, "a priority-0 advert went out\n{log}");
    let s2 = rig.status("lb2");
    assert_eq!(s2["vrrp"][0]["state"], "BACKUP", "{s2}");
    assert_eq!(s2["vrrp"][0]["became_master"], became, "lb2 changed state");
    assert!(
        !rig.log("lb2").contains("Entering MASTER STATE")
            || rig.log("lb2").matches("Entering MASTER STATE").count()
                == usize::try_from(became.as_u64().unwrap_or(0)).unwrap_or(0),
        "{}",
        rig.log("lb2")
    );
    assert!(log.contains("(VI_1) reloaded in place"), "{log}");
    assert!(refused, "{log}");
    assert!(
        log.contains(&format!("lb1.conf:{line}:")) && log.contains("priority"),
        "the error's file:line is logged\n{log}"
    );
    assert_eq!(
        via_control.status.code(),
        Some(1),
        "reload over the control socket"
    );
    let said = String::from_utf8_lossy(&via_control.stdout);
    assert!(
        said.contains("refused") && said.contains(&format!("lb1.conf:{line}:")),
        "{said}"
    );
    // Still MASTER with both VIPs after the refused reload.
    let s1 = rig.status("lb1");
    assert_eq!(s1["vrrp"][0]["state"], "MASTER", "{s1}");
    assert!(lb1.has_address(ip("198.51.100.251")).unwrap());
}

/// wrk's count of failed requests: socket errors and non-2xx/3xx answers.
fn wrk_failures(text: &str) -> (u64, u64) {
    let mut failed = 0;
    for line in text.lines() {
        let l = line.trim();
        if let Some(rest) = l.strip_prefix("Socket errors:") {
            failed += rest
                .split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                .sum::<u64>();
        }
        if let Some(rest) = l.strip_prefix("Non-2xx or 3xx responses:") {
            failed += rest.trim().parse::<u64>().unwrap_or(0);
        }
    }
    let total = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    (total, failed)
}

fn proxied(weight1: u32) -> String {
    format!(
        "virtual_server 198.51.100.250 9527 {{\n delay_loop 1\n lb_algo wrr\n lb_dataplane proxy\n protocol TCP\n \
         real_server 198.51.100.50 80 {{\n  weight {weight1}\n  TCP_CHECK {{\n   connect_timeout 1\n  }}\n }}\n \
         real_server 198.51.100.51 80 {{\n  weight 1\n  TCP_CHECK {{\n   connect_timeout 1\n  }}\n }}\n}}\n"
    )
}

#[test]
fn twenty_reloads_under_proxy_load_fail_no_request() {
    if !netlab::privileged("twenty_reloads_under_proxy_load_fail_no_request") {
        return;
    }
    let have_wrk = Command::new("wrk").arg("--version").output().is_ok();
    if !have_wrk {
        assert!(!netlab::in_ci(), "wrk is not installed; CI must install it");
        netlab::skipped(
            "twenty_reloads_under_proxy_load_fail_no_request",
            "wrk is not installed",
        );
        return;
    }
    let mut rig = Rig::new(
        "reloadload",
        &[
            ("client", &["198.51.100.100/24"]),
            ("lb1", &["198.51.100.21/24", "198.51.100.250/24"]),
            ("web1", &["198.51.100.50/24"]),
            ("web2", &["198.51.100.51/24"]),
        ],
    );
    let _w1 = netlab::http::WebServer::start(
        rig.lab.node("web1").unwrap(),
        SocketAddr::from(([198, 51, 100, 50], 80)),
        "this is yy web!",
    )
    .unwrap();
    let _w2 = netlab::http::WebServer::start(
        rig.lab.node("web2").unwrap(),
        SocketAddr::from(([198, 51, 100, 51], 80)),
        "this is cc web!",
    )
    .unwrap();
    rig.start("lb1", &proxied(1));
    let start = Instant::now();
    while netlab::http::get(
        rig.lab.node("client").unwrap(),
        SocketAddr::from(([198, 51, 100, 250], 9527)),
        "/",
        Duration::from_secs(1),
    )
    .is_err()
    {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{}",
            rig.log("lb1")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // wrk with a new connection per request, 6 s; 20 reloads meanwhile,
    // alternating two weights.
    let client = rig.lab.node("client").unwrap().clone();
    let wrk = std::thread::spawn(move || {
        let out = client
            .exec(&[
                "wrk",
                "-t1",
                "-c8",
                "-d6s",
                "-H",
                "Connection: close",
                "http://198.51.100.250:9527/",
            ])
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    });
    std::thread::sleep(Duration::from_millis(500));
    for k in 0..20u32 {
        std::fs::write(rig.conf("lb1"), proxied(1 + k % 2 * 2)).unwrap();
        rig.hup("lb1");
        std::thread::sleep(Duration::from_millis(250));
    }
    let text = wrk.join().unwrap();
    let (total, failed) = wrk_failures(&text);
    let reloads = rig.log("lb1").matches("reload: ").count();
    eprintln!("reload under load: {total} requests, {failed} failed, over 20 SIGHUPs ({reloads} reload lines logged)");
    assert!(total > 1000, "{text}");
    assert_eq!(failed, 0, "{text}\n{}", rig.log("lb1"));
    assert!(
        rig.log("lb1").matches("health checkers,").count() >= 20,
        "every reload applied\n{}",
        rig.log("lb1")
    );
    assert!(!rig.log("lb1").contains("no longer listening"));
}

/// `GET path` on `addr` from inside `node`: the whole answer.
fn http_get(node: &netlab::Node, addr: SocketAddr, path: &str) -> String {
    let path = path.to_owned();
    node.run(move || {
        let mut c = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        c.set_read_timeout(Some(Duration::from_secs(2)))?;
        std::io::Write::write_all(
            &mut c,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        )?;
        let mut out = String::new();
        c.read_to_string(&mut out)?;
        Ok::<_, std::io::Error>(out)
    })
    .unwrap()
    .unwrap_or_default()
}

/// The value of the sample line starting with `prefix` (name and labels).
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn metrics_follow_a_failover() {
    if !netlab::privileged("metrics_follow_a_failover") {
        return;
    }
    let mut rig = Rig::new(
        "metrics",
        &[
            ("lb1", &["198.51.100.21/24"]),
            ("lb2", &["198.51.100.22/24"]),
        ],
    );
    let with_metrics = |me: &str, prio| {
        format!(
            "global_defs {{\n metrics_listen {me}:9650\n}}\n{}",
            instance(prio, &["198.51.100.250"])
        )
    };
    rig.start("lb1", &with_metrics("198.51.100.21", 100));
    rig.start("lb2", &with_metrics("198.51.100.22", 90));
    let lb2 = rig.lab.node("lb2").unwrap().clone();
    rig.lab
        .node("lb1")
        .unwrap()
        .wait_for_address(ip("198.51.100.250"), Duration::from_secs(5))
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let at = SocketAddr::from(([198, 51, 100, 22], 9650));
    let labels = r#"{iname="VI_1",intf="eth0",vrid="51"}"#;
    let state = format!("keepalived_vrrp_state{labels}");
    let received = format!("keepalived_vrrp_advertisements_received_total{labels}");
    let became = format!("keepalived_vrrp_become_master_total{labels}");
    let sent = format!("keepalived_vrrp_advertisements_sent_total{labels}");
    let before = http_get(&lb2, at, "/metrics");
    assert!(before.starts_with("HTTP/1.1 200"), "{before}");
    assert!(before.contains("application/openmetrics-text"), "{before}");
    assert_eq!(sample(&before, &state), Some(1.0), "BACKUP\n{before}");
    std::thread::sleep(Duration::from_millis(1200));
    let later = http_get(&lb2, at, "/metrics");
    let (r0, r1) = (sample(&before, &received), sample(&later, &received));
    assert!(r1 > r0, "adverts received move: {r0:?} → {r1:?}");
    let became0 = sample(&later, &became).unwrap_or(-1.0);
    // lb1 crashes: lb2 takes over, and its metrics say so.
    let (_, p) = rig.daemons.iter().find(|(n, _)| n == "lb1").unwrap();
    p.signal(Signal::SIGKILL).unwrap();
    lb2.wait_for_address(ip("198.51.100.250"), Duration::from_secs(3))
        .unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    let after = http_get(&lb2, at, "/metrics");
    eprintln!(
        "metrics on lb2: state {:?} → {:?}, adverts received {r0:?} → {r1:?}, become master {became0} → {:?}, sent {:?}",
        sample(&before, &state),
        sample(&after, &state),
        sample(&after, &became),
        sample(&after, &sent)
    );
    assert_eq!(sample(&after, &state), Some(2.0), "MASTER\n{after}");
    assert_eq!(sample(&after, &became), Some(became0 + 1.0), "{after}");
    assert!(sample(&after, &sent).unwrap_or(0.0) > 0.0, "{after}");
    assert!(http_get(&lb2, at, "/nope").starts_with("HTTP/1.1 404"));
}

fn instance_named(name: &str, vrid: u8, vip: &str) -> String {
    common::Instance {
        name: name.into(),
        vrid,
        advert: "0.1".into(),
        vips: vec![format!("{vip}/24")],
        ..common::Instance::default()
    }
    .text()
}

#[test]
fn reload_starts_added_instances_and_stops_removed_ones() {
    if !netlab::privileged("reload_starts_added_instances_and_stops_removed_ones") {
        return;
    }
    let mut rig = Rig::new("reloadset", &[("lb1", &["198.51.100.21/24"])]);
    let one = instance_named("VI_1", 51, "198.51.100.250");
    let two = instance_named("VI_2", 52, "198.51.100.252");
    rig.start("lb1", &one);
    let lb1 = rig.lab.node("lb1").unwrap().clone();
    lb1.wait_for_address(ip("198.51.100.250"), Duration::from_secs(5))
        .unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let sampler = sample_vip(&lb1, done.clone());
    std::fs::write(rig.conf("lb1"), format!("{one}{two}")).unwrap();
    rig.hup("lb1");
    let started = lb1.wait_for_address(ip("198.51.100.252"), Duration::from_secs(5));
    done.store(true, Ordering::Relaxed);
    let (samples, gaps) = sampler.join().unwrap().unwrap().unwrap();
    let names = |s: &serde_json::Value| -> Vec<String> {
        s["vrrp"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|i| i["name"].as_str().unwrap_or("").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    std::thread::sleep(Duration::from_millis(1100));
    let both = rig.status("lb1");
    // VI_1 removed: it stops and releases its VIP; VI_2 runs on.
    std::fs::write(rig.conf("lb1"), &two).unwrap();
    rig.hup("lb1");
    let released = lb1.wait_for_address_gone(ip("198.51.100.250"), Duration::from_secs(3));
    std::thread::sleep(Duration::from_millis(1100));
    let after = rig.status("lb1");
    let log = rig.log("lb1");
    eprintln!(
        "reload: VI_2 added → its VIP in {started:?} (VI_1's VIP {gaps} missing of {samples} samples); \
         VI_1 removed → its VIP gone in {released:?}; instances {:?} → {:?}",
        names(&both),
        names(&after)
    );
    assert!(
        started.is_ok(),
        "the added instance never took its VIP\n{log}"
    );
    assert_eq!(gaps, 0, "the kept instance's VIP went away\n{log}");
    assert_eq!(names(&both), ["VI_1", "VI_2"], "{both}");
    assert!(released.is_ok(), "the removed instance kept its VIP\n{log}");
    assert_eq!(names(&after), ["VI_2"], "{after}");
    assert_eq!(after["vrrp"][0]["state"], "MASTER", "{after}");
    assert!(lb1.has_address(ip("198.51.100.252")).unwrap());
    assert!(
        log.contains("(VI_1) reload: removed from the configuration; stopping"),
        "{log}"
    );
    assert!(
        log.contains("(VI_2) reload: new instance; starting"),
        "{log}"
    );
    // Renamed (same VRID): the old name stops, the new one starts on it.
    std::fs::write(rig.conf("lb1"), two.replace("VI_2", "VI_9")).unwrap();
    rig.hup("lb1");
    std::thread::sleep(Duration::from_millis(1500));
    let renamed = rig.status("lb1");
    assert_eq!(names(&renamed), ["VI_9"], "{renamed}\n{}", rig.log("lb1"));
    assert_eq!(renamed["vrrp"][0]["state"], "MASTER", "{renamed}");
    assert!(lb1.has_address(ip("198.51.100.252")).unwrap());
}

#[test]
fn a_server_down_at_a_reload_comes_back_after_it() {
    if !netlab::privileged("a_server_down_at_a_reload_comes_back_after_it") {
        return;
    }
    let mut rig = Rig::new(
        "reloadcheck",
        &[
            ("lb1", &["198.51.100.21/24", "198.51.100.250/24"]),
            ("web1", &["198.51.100.50/24"]),
            ("web2", &["198.51.100.51/24"]),
        ],
    );
    rig.start("lb1", &proxied(1));
    let web = |name: &str, last: u8, body: &str| {
        netlab::http::WebServer::start(
            rig.lab.node(name).unwrap(),
            SocketAddr::from(([198, 51, 100, last], 80)),
            body,
        )
        .unwrap()
    };
    let w1 = web("web1", 50, "this is yy web!");
    let _w2 = web("web2", 51, "this is cc web!");
    let healthy = |rig: &Rig| -> Option<bool> {
        rig.status("lb1")["virtual_servers"][0]["real_servers"]
            .as_array()?
            .iter()
            .find(|r| r["address"] == "198.51.100.50")?["healthy"]
            .as_bool()
    };
    let wait = |rig: &Rig, want: bool, within: Duration| -> Option<Duration> {
        let start = Instant::now();
        while start.elapsed() < within {
            if healthy(rig) == Some(want) {
                return Some(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    };
    assert!(
        wait(&rig, true, Duration::from_secs(5)).is_some(),
        "{}",
        rig.log("lb1")
    );
    drop(w1);
    assert!(
        wait(&rig, false, Duration::from_secs(5)).is_some(),
        "{}",
        rig.log("lb1")
    );
    // Reloaded while web1 is down (the same file), then web1 comes back.
    rig.hup("lb1");
    assert!(rig.wait_log("lb1", "kept with their state", Duration::from_secs(3)));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(healthy(&rig), Some(false), "still down after the reload");
    let _w1 = web("web1", 50, "this is yy web!");
    let back = wait(&rig, true, Duration::from_secs(5));
    eprintln!("reload: web1, down at the reload, healthy again {back:?} after it came back");
    assert!(
        back.is_some(),
        "web1 never came back after the reload\n{}",
        rig.log("lb1")
    );
}
