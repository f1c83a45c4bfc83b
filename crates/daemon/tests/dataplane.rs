//! The nftables data plane through the daemon, in namespaces: LVS-DR as
//! the seed runs it (one switch, the VIP on the real servers' `lo`) and
//! NAT (the director between a client network and a server network).
//! Round robin seen by a client, a failed server out of rotation within
//! the checker's bound, weights, persistence, and connections that stay on
//! their server when the server set changes.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use netlab::http::WebServer;
use netlab::{Lab, Process};

const BIN: &str = env!("CARGO_BIN_EXE_keepalived-rs");
const YY: &str = "this is yy web!";
const CC: &str = "this is cc web!";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// `keepalived-rs -n -l -f conf` in `node`, logging to `dir/NODE.log`.
fn daemon(lab: &Lab, node: &str, dir: &std::path::Path, conf: &str) -> Process {
    let path = dir.join(format!("{node}.conf"));
    std::fs::write(&path, conf).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["-n", "-l", "-f"])
        .arg(&path)
        .arg("--control")
        .arg(dir.join(format!("{node}.sock")));
    let log = std::fs::File::create(dir.join(format!("{node}.log"))).unwrap();
    lab.node(node)
        .unwrap()
        .spawn_logged(&cmd, Some(log))
        .unwrap()
}

fn log(dir: &std::path::Path, node: &str) -> String {
    std::fs::read_to_string(dir.join(format!("{node}.log"))).unwrap_or_default()
}

/// One GET of the VIP from the client: the body, or `None` if it failed.
fn get(lab: &Lab, vip: SocketAddr) -> Option<String> {
    netlab::http::get(
        lab.node("client").unwrap(),
        vip,
        "/",
        Duration::from_secs(2),
    )
    .ok()
    .map(|r| r.body.trim_end().to_owned())
}

/// Waits until `n` answers in a row satisfy `ok`; how long that took.
fn until_steady(
    lab: &Lab,
    vip: SocketAddr,
    n: usize,
    limit: Duration,
    ok: impl Fn(&[Option<String>]) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        let got: Vec<Option<String>> = (0..n).map(|_| get(lab, vip)).collect();
        if ok(&got) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "not steady after {limit:?}: {got:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn alternating(got: &[Option<String>]) -> bool {
    got.iter().all(Option::is_some) && got.windows(2).all(|w| w[0] != w[1])
}

/// A TCP service on `addr` inside `node` that answers each line with
/// `name:line` — to see which server a long-lived connection is on.
fn echo(node: &netlab::Node, addr: SocketAddr, name: &'static str) -> Arc<AtomicBool> {
    let l = node.run(move || TcpListener::bind(addr)).unwrap().unwrap();
    l.set_nonblocking(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    std::thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            if let Ok((c, _)) = l.accept() {
                std::thread::spawn(move || {
                    let _ = c.set_nonblocking(false);
                    let mut w = c.try_clone().unwrap();
                    for line in BufReader::new(c).lines() {
                        let Ok(line) = line else { return };
                        if writeln!(w, "{name}:{line}").is_err() {
                            return;
                        }
                    }
                });
            } else {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    });
    stop
}

/// A connection from the client to `vip`; `ask` sends a line and returns
/// the answer.
struct Conn(TcpStream, BufReader<TcpStream>);

impl Conn {
    fn open(lab: &Lab, vip: SocketAddr) -> Self {
        let s = lab
            .node("client")
            .unwrap()
            .run(move || TcpStream::connect_timeout(&vip, Duration::from_secs(2)))
            .unwrap()
            .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let r = BufReader::new(s.try_clone().unwrap());
        Conn(s, r)
    }

    fn ask(&mut self, line: &str) -> Option<String> {
        writeln!(self.0, "{line}").ok()?;
        let mut out = String::new();
        self.1.read_line(&mut out).ok()?;
        (!out.is_empty()).then(|| out.trim_end().to_owned())
    }
}

/// With the echo service of web2 down (so every connection goes to web1):
/// 8 connections to `vip7`, web2 comes up and takes new connections, and
/// every connection made before is still answered by web1.
fn connections_stay_put(
    lab: &Lab,
    dir: &std::path::Path,
    echoes: &mut [Arc<AtomicBool>],
    vip7: SocketAddr,
) {
    std::thread::sleep(Duration::from_secs(3));
    let mut conns: Vec<Conn> = (0..8).map(|_| Conn::open(lab, vip7)).collect();
    for (i, c) in conns.iter_mut().enumerate() {
        assert_eq!(
            c.ask(&format!("a{i}")).as_deref(),
            Some(format!("web1:a{i}").as_str()),
            "\n{}",
            log(dir, "lb1")
        );
    }
    // web2 comes up: the set grows to {web1, web2}.
    echoes[1] = echo(
        lab.node("web2").unwrap(),
        "0.0.0.0:7".parse().unwrap(),
        "web2",
    );
    let start = Instant::now();
    loop {
        let mut c = Conn::open(lab, vip7);
        if c.ask("probe").as_deref() == Some("web2:probe") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "web2 never joined\n{}",
            log(dir, "lb1")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for (i, c) in conns.iter_mut().enumerate() {
        assert_eq!(
            c.ask(&format!("b{i}")).as_deref(),
            Some(format!("web1:b{i}").as_str())
        );
    }
}

fn check(port: u16) -> String {
    format!("TCP_CHECK {{\n connect_port {port}\n connect_timeout 1\n retry 0\n }}")
}

/// The seed's LVS-DR lab: client, director(s), web1 and web2 with the VIP
/// on `lo`, each serving the web page on :80 and an echo service on :7.
fn dr_lab(
    directors: &[(&str, &str)],
) -> (
    Lab,
    std::path::PathBuf,
    Vec<WebServer>,
    Vec<Arc<AtomicBool>>,
) {
    let mut hosts: Vec<(&str, &[&str])> = vec![
        ("client", &["198.51.100.100/24"]),
        ("web1", &["198.51.100.50/24"]),
        ("web2", &["198.51.100.51/24"]),
    ];
    let dirs: Vec<(&str, [&str; 1])> = directors.iter().map(|(n, a)| (*n, [*a])).collect();
    for (n, a) in &dirs {
        hosts.push((n, a));
    }
    let lab = Lab::star(&hosts).unwrap();
    let dir = std::env::temp_dir().join(format!("{}dp", lab.prefix()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut webs = Vec::new();
    let mut echoes = Vec::new();
    for (name, body, tag) in [("web1", YY, "web1"), ("web2", CC, "web2")] {
        let node = lab.node(name).unwrap();
        node.dr_real_server(ip("198.51.100.250")).unwrap();
        webs.push(WebServer::start(node, "0.0.0.0:80".parse().unwrap(), body).unwrap());
        echoes.push(echo(node, "0.0.0.0:7".parse().unwrap(), tag));
    }
    (lab, dir, webs, echoes)
}

/// A director's configuration: the VIP by VRRP, and `vs` (virtual_server
/// blocks).
fn director(state: &str, priority: u8, vs: &str) -> String {
    format!(
        "vrrp_instance VI_1 {{\n state {state}\n interface eth0\n virtual_router_id 51\n priority {priority}\n version 3\n advert_int 0.1\n virtual_ipaddress {{\n 198.51.100.250/24\n }}\n}}\n{vs}"
    )
}

fn dr_vs(port: u16, algo: &str, extra: &str, weights: [u32; 2]) -> String {
    format!(
        "virtual_server 198.51.100.250 {port} {{\n delay_loop 1\n lb_algo {algo}\n lb_kind DR\n protocol TCP\n{extra}\n real_server 198.51.100.50 {port} {{\n weight {}\n {}\n }}\n real_server 198.51.100.51 {port} {{\n weight {}\n {}\n }}\n}}\n",
        weights[0],
        check(port),
        weights[1],
        check(port)
    )
}

fn vip80() -> SocketAddr {
    "198.51.100.250:80".parse().unwrap()
}

#[test]
fn dr_round_robin_alternates_and_a_failed_server_leaves_rotation() {
    if !netlab::privileged("dr_round_robin_alternates_and_a_failed_server_leaves_rotation") {
        return;
    }
    let (lab, dir, mut webs, _e) = dr_lab(&[("lb1", "198.51.100.22/24")]);
    let _d = daemon(
        &lab,
        "lb1",
        &dir,
        &director("MASTER", 100, &dr_vs(80, "rr", "", [1, 1])),
    );
    lab.node("lb1")
        .unwrap()
        .wait_for_address(ip("198.51.100.250"), Duration::from_secs(5))
        .unwrap();
    let took = until_steady(&lab, vip80(), 10, Duration::from_secs(10), alternating);
    eprintln!("DR rr: alternating {took:?} after the VIP came up");
    let got: Vec<_> = (0..20).filter_map(|_| get(&lab, vip80())).collect();
    assert_eq!(got.iter().filter(|b| *b == YY).count(), 10, "{got:?}");
    assert_eq!(got.iter().filter(|b| *b == CC).count(), 10, "{got:?}");
    // web1 stops: out of rotation within delay_loop (1) + connect (refused
    // at once) + the data plane's step.
    webs.remove(0).stop();
    let start = Instant::now();
    let took = until_steady(&lab, vip80(), 10, Duration::from_secs(6), |g| {
        g.iter().all(|b| b.as_deref() == Some(CC))
    });
    eprintln!("DR: web1 out of rotation {took:?} after it stopped");
    assert!(
        start.elapsed() <= Duration::from_millis(2_500),
        "{:?}\n{}",
        start.elapsed(),
        log(&dir, "lb1")
    );
    // Back: alternation again.
    webs.insert(
        0,
        WebServer::start(lab.node("web1").unwrap(), "0.0.0.0:80".parse().unwrap(), YY).unwrap(),
    );
    let took = until_steady(&lab, vip80(), 10, Duration::from_secs(6), alternating);
    eprintln!("DR: web1 back in rotation {took:?} after it came back");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn dr_weights_and_persistence() {
    if !netlab::privileged("dr_weights_and_persistence") {
        return;
    }
    let (lab, dir, _w, _e) = dr_lab(&[("lb1", "198.51.100.22/24")]);
    // The same pages on :81, for a second virtual server: rr with
    // persistence.
    let _w81: Vec<WebServer> = [("web1", YY), ("web2", CC)]
        .iter()
        .map(|(n, b)| {
            WebServer::start(lab.node(n).unwrap(), "0.0.0.0:81".parse().unwrap(), b).unwrap()
        })
        .collect();
    let vs = format!(
        "{}{}",
        dr_vs(80, "wrr", "", [3, 1]),
        dr_vs(81, "rr", " persistence_timeout 30", [1, 1])
    );
    let _d = daemon(&lab, "lb1", &dir, &director("MASTER", 100, &vs));
    lab.node("lb1")
        .unwrap()
        .wait_for_address(ip("198.51.100.250"), Duration::from_secs(5))
        .unwrap();
    until_steady(&lab, vip80(), 4, Duration::from_secs(10), |g| {
        g.iter().all(Option::is_some) && g.iter().any(|b| b.as_deref() == Some(CC))
    });
    let n = 1000;
    let got: Vec<_> = (0..n).filter_map(|_| get(&lab, vip80())).collect();
    let yy = got.iter().filter(|b| *b == YY).count();
    eprintln!(
        "DR wrr 3:1: {yy} of {} to web1 ({} failed)",
        got.len(),
        n - got.len()
    );
    assert_eq!(got.len(), n, "every request answered");
    // Within ±5% of the weights' share (750 of 1000).
    assert!(
        (713..=787).contains(&yy),
        "{yy} of {n} to web1\n{}",
        log(&dir, "lb1")
    );
    // Persistence: the same client keeps its server, connection after
    // connection (without it, rr alternates: the test above).
    let vip81: SocketAddr = "198.51.100.250:81".parse().unwrap();
    let got: Vec<_> = (0..20).map(|_| get(&lab, vip81)).collect();
    assert!(got.iter().all(|b| b.is_some() && *b == got[0]), "{got:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn dr_connections_stay_on_their_server_when_the_server_set_changes() {
    if !netlab::privileged("dr_connections_stay_on_their_server_when_the_server_set_changes") {
        return;
    }
    let (lab, dir, _w, mut echoes) = dr_lab(&[("lb1", "198.51.100.22/24")]);
    // web2's echo service is down at first: the set is {web1}.
    echoes[1].store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(50));
    let _d = daemon(
        &lab,
        "lb1",
        &dir,
        &director("MASTER", 100, &dr_vs(7, "rr", "", [1, 1])),
    );
    lab.node("lb1")
        .unwrap()
        .wait_for_address(ip("198.51.100.250"), Duration::from_secs(5))
        .unwrap();
    connections_stay_put(&lab, &dir, &mut echoes, "198.51.100.250:7".parse().unwrap());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn dr_with_maglev_connections_survive_a_director_failover() {
    if !netlab::privileged("dr_with_maglev_connections_survive_a_director_failover") {
        return;
    }
    let (lab, dir, _w, _e) = dr_lab(&[("lb1", "198.51.100.22/24"), ("lb2", "198.51.100.40/24")]);
    let vs = dr_vs(7, "mh", "", [1, 1]);
    let master = daemon(&lab, "lb1", &dir, &director("MASTER", 100, &vs));
    let _backup = daemon(&lab, "lb2", &dir, &director("BACKUP", 90, &vs));
    lab.node("lb1")
        .unwrap()
        .wait_for_address(ip("198.51.100.250"), Duration::from_secs(5))
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let vip7: SocketAddr = "198.51.100.250:7".parse().unwrap();
    let mut conns: Vec<Conn> = (0..8).map(|_| Conn::open(&lab, vip7)).collect();
    let before: Vec<String> = conns
        .iter_mut()
        .map(|c| c.ask("x").unwrap_or_default())
        .collect();
    assert!(before.iter().all(|b| b.ends_with(":x")), "{before:?}");
    // The master dies; the backup takes the VIP (and the client's ARP
    // entry with its gratuitous ARP).
    master.signal(nix::sys::signal::Signal::SIGKILL).unwrap();
    // A director that is gone leaves no VIP (nor rules) behind.
    lab.cut(lab.link("lb1", "eth0").unwrap()).unwrap();
    lab.node("lb2")
        .unwrap()
        .wait_for_address(ip("198.51.100.250"), Duration::from_secs(5))
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // Maglev over the same servers gives both directors the same table, so
    // every connection lands where it was.
    let after: Vec<String> = conns
        .iter_mut()
        .map(|c| c.ask("x").unwrap_or_default())
        .collect();
    let rules = lab
        .node("lb2")
        .unwrap()
        .exec(&["nft", "list", "ruleset"])
        .unwrap();
    let neigh = lab.node("client").unwrap().exec(&["ip", "neigh"]).unwrap();
    assert_eq!(
        before,
        after,
        "\n{}\n{}\n{}",
        log(&dir, "lb2"),
        String::from_utf8_lossy(&rules.stdout),
        String::from_utf8_lossy(&neigh.stdout)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// LVS-NAT: the director between the client's network (203.0.113.0/24,
/// VIP .250) and the servers' (198.51.100.0/24), the servers' gateway.
fn nat_lab() -> (
    Lab,
    std::path::PathBuf,
    Vec<WebServer>,
    Vec<Arc<AtomicBool>>,
) {
    let mut lab = Lab::new().unwrap();
    let front = lab.add_switch("front").unwrap();
    let back = lab.add_switch("back").unwrap();
    let client = lab.add_node("client").unwrap();
    lab.connect(&client, &front, "eth0", &["203.0.113.100/24"])
        .unwrap();
    let lb1 = lab.add_node("lb1").unwrap();
    lab.connect(&lb1, &back, "eth0", &["198.51.100.22/24"])
        .unwrap();
    lab.connect(&lb1, &front, "eth1", &["203.0.113.1/24"])
        .unwrap();
    lb1.sysctl("net.ipv4.ip_forward", "1").unwrap();
    let mut webs = Vec::new();
    let mut echoes = Vec::new();
    for (name, addr, body) in [
        ("web1", "198.51.100.50/24", YY),
        ("web2", "198.51.100.51/24", CC),
    ] {
        let node = lab.add_node(name).unwrap();
        lab.connect(&node, &back, "eth0", &[addr]).unwrap();
        node.exec(&["ip", "route", "add", "default", "via", "198.51.100.22"])
            .unwrap();
        webs.push(WebServer::start(&node, "0.0.0.0:80".parse().unwrap(), body).unwrap());
        echoes.push(echo(&node, "0.0.0.0:7".parse().unwrap(), name));
    }
    let dir = std::env::temp_dir().join(format!("{}nat", lab.prefix()));
    std::fs::create_dir_all(&dir).unwrap();
    (lab, dir, webs, echoes)
}

fn nat_conf(vs: &str) -> String {
    format!(
        "vrrp_instance VI_1 {{\n state MASTER\n interface eth1\n virtual_router_id 52\n priority 100\n version 3\n advert_int 0.1\n virtual_ipaddress {{\n 203.0.113.250/24\n }}\n}}\n{vs}"
    )
}

fn nat_vs(port: u16, algo: &str, extra: &str, weights: [u32; 2]) -> String {
    dr_vs(port, algo, extra, weights)
        .replace("198.51.100.250", "203.0.113.250")
        .replace("lb_kind DR", "lb_kind NAT")
}

#[test]
fn nat_round_robin_weights_persistence_and_a_failed_server() {
    if !netlab::privileged("nat_round_robin_weights_persistence_and_a_failed_server") {
        return;
    }
    let (lab, dir, mut webs, _e) = nat_lab();
    let _w81: Vec<WebServer> = [("web1", YY), ("web2", CC)]
        .iter()
        .map(|(n, b)| {
            WebServer::start(lab.node(n).unwrap(), "0.0.0.0:81".parse().unwrap(), b).unwrap()
        })
        .collect();
    let _w82: Vec<WebServer> = [("web1", YY), ("web2", CC)]
        .iter()
        .map(|(n, b)| {
            WebServer::start(lab.node(n).unwrap(), "0.0.0.0:82".parse().unwrap(), b).unwrap()
        })
        .collect();
    let vs = format!(
        "{}{}{}",
        nat_vs(80, "rr", "", [1, 1]),
        nat_vs(81, "wrr", "", [3, 1]),
        nat_vs(82, "rr", " persistence_timeout 30", [1, 1])
    );
    let _d = daemon(&lab, "lb1", &dir, &nat_conf(&vs));
    lab.node("lb1")
        .unwrap()
        .wait_for_address(ip("203.0.113.250"), Duration::from_secs(5))
        .unwrap();
    let vip = |p: u16| SocketAddr::new(ip("203.0.113.250"), p);
    let took = until_steady(&lab, vip(80), 10, Duration::from_secs(10), alternating);
    eprintln!("NAT rr: alternating {took:?} after the VIP came up");
    // wrr 3:1 over 1,000 requests.
    let n = 1000;
    let got: Vec<_> = (0..n).filter_map(|_| get(&lab, vip(81))).collect();
    let yy = got.iter().filter(|b| *b == YY).count();
    eprintln!("NAT wrr 3:1: {yy} of {} to web1", got.len());
    assert_eq!(got.len(), n);
    assert!((713..=787).contains(&yy), "{yy}\n{}", log(&dir, "lb1"));
    // Persistence.
    let got: Vec<_> = (0..20).map(|_| get(&lab, vip(82))).collect();
    assert!(got.iter().all(|b| b.is_some() && *b == got[0]), "{got:?}");
    // web1 stops: out of rotation within the checker's bound.
    webs.remove(0).stop();
    let start = Instant::now();
    until_steady(&lab, vip(80), 10, Duration::from_secs(6), |g| {
        g.iter().all(|b| b.as_deref() == Some(CC))
    });
    eprintln!(
        "NAT: web1 out of rotation {:?} after it stopped",
        start.elapsed()
    );
    assert!(
        start.elapsed() <= Duration::from_millis(2_500),
        "{:?}",
        start.elapsed()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn nat_connections_stay_on_their_server_when_the_server_set_changes() {
    if !netlab::privileged("nat_connections_stay_on_their_server_when_the_server_set_changes") {
        return;
    }
    let (lab, dir, _w, mut echoes) = nat_lab();
    echoes[1].store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(50));
    let _d = daemon(&lab, "lb1", &dir, &nat_conf(&nat_vs(7, "rr", "", [1, 1])));
    lab.node("lb1")
        .unwrap()
        .wait_for_address(ip("203.0.113.250"), Duration::from_secs(5))
        .unwrap();
    connections_stay_put(
        &lab,
        &dir,
        &mut echoes,
        SocketAddr::new(ip("203.0.113.250"), 7),
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// iperf3 from the client to `to` for `secs`: received bits per second.
fn iperf(lab: &Lab, to: IpAddr, secs: u32) -> f64 {
    let out = lab
        .node("client")
        .unwrap()
        .exec(&[
            "iperf3",
            "-J",
            "-c",
            &to.to_string(),
            "-t",
            &secs.to_string(),
        ])
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0)
}

/// The median of `runs` alternating measurements of `a` and `b` (so
/// that drift on a shared machine hits both alike).
fn medians(runs: usize, mut a: impl FnMut() -> f64, mut b: impl FnMut() -> f64) -> (f64, f64) {
    let (mut xa, mut xb) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        xa.push(a());
        xb.push(b());
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    (med(&mut xa), med(&mut xb))
}

/// DR throughput with the flow memory synced to a backup
/// (`lvs_sync_daemon`; the master reads its map and sends it once a
/// second meanwhile): (direct, through DR), medians.
fn dr_synced_throughput(
    lab: &Lab,
    dir: &std::path::Path,
    vs: &str,
    runs: usize,
    secs: u32,
) -> (f64, f64) {
    let sync = "global_defs {\n lvs_sync_daemon eth0 VI_1\n}\n";
    let d1 = daemon(
        lab,
        "lb1",
        dir,
        &format!("{sync}{}", director("MASTER", 100, vs)),
    );
    let d2 = daemon(
        lab,
        "lb2",
        dir,
        &format!("{sync}{}", director("BACKUP", 90, vs)),
    );
    lab.node("lb1")
        .unwrap()
        .wait_for_address(ip("198.51.100.250"), Duration::from_secs(5))
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let (direct2, synced) = medians(
        runs,
        || iperf(lab, ip("198.51.100.50"), secs),
        || iperf(lab, ip("198.51.100.250"), secs),
    );
    // The backup wrote the iperf3 connections it was sent.
    let status = Command::new(BIN)
        .args(["status", "--json", "--control"])
        .arg(dir.join("lb2.sock"))
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap_or_default();
    drop((d1, d2));
    assert!(
        status["flow_sync"]["written"].as_u64().unwrap_or(0) >= 1,
        "lb2 took none of lb1's flows: {status}"
    );
    (direct2, synced)
}

#[test]
#[ignore = "a benchmark: run bench/dataplane-throughput"]
fn throughput_through_dr_and_nat_against_direct() {
    assert!(netlab::privileged(
        "throughput_through_dr_and_nat_against_direct"
    ));
    let (secs, runs) = (3, 5);
    let vs = |lb: &str, vip: &str| {
        format!(
            "virtual_server {vip} 5201 {{\n delay_loop 1\n lb_algo rr\n lb_kind {lb}\n real_server 198.51.100.50 5201 {{\n {}\n }}\n}}\n",
            check(5201)
        )
    };
    // DR: one switch, the VIP on web1's lo; direct is client → web1's own
    // address on the same switch.
    let (lab, dir, _w, _e) = dr_lab(&[("lb1", "198.51.100.22/24"), ("lb2", "198.51.100.40/24")]);
    let _srv = lab.node("web1").unwrap().spawn("iperf3", &["-s"]).unwrap();
    let d = daemon(
        &lab,
        "lb1",
        &dir,
        &director("MASTER", 100, &vs("DR", "198.51.100.250")),
    );
    lab.node("lb1")
        .unwrap()
        .wait_for_address(ip("198.51.100.250"), Duration::from_secs(5))
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let (direct, dr) = medians(
        runs,
        || iperf(&lab, ip("198.51.100.50"), secs),
        || iperf(&lab, ip("198.51.100.250"), secs),
    );
    drop(d);
    let (direct2, synced) =
        dr_synced_throughput(&lab, &dir, &vs("DR", "198.51.100.250"), runs, secs);
    drop(lab);
    // NAT: the director between the two networks; the baseline is the same
    // path routed (no DNAT) to web1's own address.
    let (lab, dir2, _w, _e) = nat_lab();
    lab.node("client")
        .unwrap()
        .exec(&[
            "ip",
            "route",
            "add",
            "198.51.100.0/24",
            "via",
            "203.0.113.1",
        ])
        .unwrap();
    let _srv = lab.node("web1").unwrap().spawn("iperf3", &["-s"]).unwrap();
    let _d = daemon(&lab, "lb1", &dir2, &nat_conf(&vs("NAT", "203.0.113.250")));
    lab.node("lb1")
        .unwrap()
        .wait_for_address(ip("203.0.113.250"), Duration::from_secs(5))
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let (routed, nat) = medians(
        runs,
        || iperf(&lab, ip("198.51.100.50"), secs),
        || iperf(&lab, ip("203.0.113.250"), secs),
    );
    let gb = |b: f64| b / 1e9;
    let table = format!(
        "iperf3, one TCP stream client → web1, median of {runs} runs of {secs} s taken in turns\n\n| path | Gbit/s | vs direct |\n|---|---:|---:|\n| direct (client and web1 on one switch) | {:.2} | 1.00x |\n| LVS-DR through the nftables data plane | {:.2} | {:.2}x |\n| routed through the director (no NAT) | {:.2} | {:.2}x |\n| LVS-NAT through the nftables data plane | {:.2} | {:.2}x ({:.2}x of routed) |\n",
        gb(direct),
        gb(dr),
        dr / direct,
        gb(routed),
        routed / direct,
        gb(nat),
        nat / direct,
        nat / routed
    );
    let table = format!(
        "{table}\nWith lvs_sync_daemon (the flow memory sent to a backup once a second), in a run of its own:\n\n| path | Gbit/s | vs direct |\n|---|---:|---:|\n| direct | {:.2} | 1.00x |\n| LVS-DR through the nftables data plane, flows synced | {:.2} | {:.2}x |\n",
        gb(direct2),
        gb(synced),
        synced / direct2
    );
    println!("\n{table}");
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("dataplane-throughput.md"), &table).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&dir2);
}

#[test]
fn nat_carries_a_virtual_server_group_a_fwmark_service_and_the_sorry_server() {
    if !netlab::privileged(
        "nat_carries_a_virtual_server_group_a_fwmark_service_and_the_sorry_server",
    ) {
        return;
    }
    let (lab, dir, _w, _e) = nat_lab();
    // A sorry server on web2:8080 for a VS on :81 whose only real server
    // (web1:81) does not answer: quorum lost from the first check.
    let _sorry = WebServer::start(
        lab.node("web2").unwrap(),
        "198.51.100.51:8080".parse().unwrap(),
        "sorry",
    )
    .unwrap();
    // The director marks what the client sends to .252:80 with 7.
    let lb1 = lab.node("lb1").unwrap();
    lb1.exec(&["nft", "add", "table", "ip", "marks"]).unwrap();
    lb1.exec(&[
        "nft",
        "add",
        "chain",
        "ip",
        "marks",
        "pre",
        "{ type filter hook prerouting priority mangle; }",
    ])
    .unwrap();
    lb1.exec(&[
        "nft",
        "add",
        "rule",
        "ip",
        "marks",
        "pre",
        "ip",
        "daddr",
        "203.0.113.252",
        "tcp",
        "dport",
        "80",
        "meta",
        "mark",
        "set",
        "7",
    ])
    .unwrap();
    let reals = format!(
        " real_server 198.51.100.50 80 {{\n {}\n }}\n real_server 198.51.100.51 80 {{\n {}\n }}\n",
        check(80),
        check(80)
    );
    let conf = format!(
        "vrrp_instance VI_1 {{\n state MASTER\n interface eth1\n virtual_router_id 52\n priority 100\n version 3\n advert_int 0.1\n virtual_ipaddress {{\n 203.0.113.250/24\n 203.0.113.251/24\n 203.0.113.252/24\n }}\n}}\nvirtual_server_group pair {{\n 203.0.113.250-251 80\n}}\nvirtual_server group pair {{\n delay_loop 1\n lb_algo rr\n lb_kind NAT\n{reals}}}\nvirtual_server fwmark 7 {{\n delay_loop 1\n lb_algo rr\n lb_kind NAT\n{reals}}}\nvirtual_server 203.0.113.250 81 {{\n delay_loop 1\n lb_algo rr\n lb_kind NAT\n sorry_server 198.51.100.51 8080\n real_server 198.51.100.50 81 {{\n {}\n }}\n}}\n",
        check(81)
    );
    let _d = daemon(&lab, "lb1", &dir, &conf);
    lab.node("lb1")
        .unwrap()
        .wait_for_address(ip("203.0.113.252"), Duration::from_secs(5))
        .unwrap();
    for vip in ["203.0.113.250", "203.0.113.251", "203.0.113.252"] {
        let took = until_steady(
            &lab,
            SocketAddr::new(ip(vip), 80),
            6,
            Duration::from_secs(10),
            alternating,
        );
        eprintln!("NAT {vip}:80 (group / fwmark): alternating after {took:?}");
    }
    let took = until_steady(
        &lab,
        SocketAddr::new(ip("203.0.113.250"), 81),
        4,
        Duration::from_secs(10),
        |g| g.iter().all(|b| b.as_deref() == Some("sorry")),
    );
    eprintln!("NAT :81: the sorry server answers {took:?} after start\n");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn nat_with_lb_snat_needs_no_route_back_through_the_director() {
    if !netlab::privileged("nat_with_lb_snat_needs_no_route_back_through_the_director") {
        return;
    }
    let (lab, dir, _w, _e) = nat_lab();
    // The real servers forget their way back to the client's network.
    for web in ["web1", "web2"] {
        lab.node(web)
            .unwrap()
            .exec(&["ip", "route", "del", "default"])
            .unwrap();
    }
    let conf = nat_conf(&format!(
        "{}{}",
        nat_vs(80, "rr", " lb_snat", [1, 1]),
        nat_vs(81, "rr", "", [1, 1])
    ));
    let _w81: Vec<WebServer> = [("web1", YY), ("web2", CC)]
        .iter()
        .map(|(n, b)| {
            WebServer::start(lab.node(n).unwrap(), "0.0.0.0:81".parse().unwrap(), b).unwrap()
        })
        .collect();
    let _d = daemon(&lab, "lb1", &dir, &conf);
    lab.node("lb1")
        .unwrap()
        .wait_for_address(ip("203.0.113.250"), Duration::from_secs(5))
        .unwrap();
    let vip = |p: u16| SocketAddr::new(ip("203.0.113.250"), p);
    // With lb_snat: answered, alternating.
    until_steady(&lab, vip(80), 6, Duration::from_secs(10), alternating);
    // Without it the answers have no way back.
    assert_eq!(get(&lab, vip(81)), None, "\n{}", log(&dir, "lb1"));
    let _ = std::fs::remove_dir_all(&dir);
}
