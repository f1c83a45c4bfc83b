//! The L4 proxy data plane (`lb_dataplane proxy`, the nginx `stream` role)
//! through the daemon, in namespaces: alternation, weights, a connect that
//! fails retried on the next server without the client noticing,
//! `max_fails` / `fail_timeout` without an active checker, a half-close
//! passed on, and a UDP round trip.

#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use netlab::http::WebServer;
use netlab::{Lab, Process};

const BIN: &str = env!("CARGO_BIN_EXE_keepalived-rs");
const YY: &str = "this is yy web!";
const CC: &str = "this is cc web!";

struct Setup {
    lab: Lab,
    dir: std::path::PathBuf,
    _daemon: Process,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// client, lb1 (the proxy, VIP .250) and web1/web2; `vs` is the
/// configuration's virtual_server blocks.
fn setup(vs: &str) -> Setup {
    let lab = Lab::star(&[
        ("client", &["198.51.100.100/24"]),
        ("lb1", &["198.51.100.22/24", "198.51.100.250/24"]),
        ("web1", &["198.51.100.50/24"]),
        ("web2", &["198.51.100.51/24"]),
    ])
    .unwrap();
    let dir = std::env::temp_dir().join(format!("{}proxy", lab.prefix()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("proxy.conf");
    std::fs::write(&conf, vs).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["-n", "-l", "-f"])
        .arg(&conf)
        .arg("--control")
        .arg(dir.join("c.sock"));
    let log = std::fs::File::create(dir.join("lb1.log")).unwrap();
    let daemon = lab
        .node("lb1")
        .unwrap()
        .spawn_logged(&cmd, Some(log))
        .unwrap();
    Setup {
        lab,
        dir,
        _daemon: daemon,
    }
}

impl Setup {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("lb1.log")).unwrap_or_default()
    }

    fn get(&self, port: u16) -> Option<String> {
        let vip = SocketAddr::from(([198, 51, 100, 250], port));
        netlab::http::get(
            self.lab.node("client").unwrap(),
            vip,
            "/",
            Duration::from_secs(2),
        )
        .ok()
        .map(|r| r.body.trim_end().to_owned())
    }

    /// Waits until the proxy answers on `port`.
    fn ready(&self, port: u16) {
        let start = Instant::now();
        while self.get(port).is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "no answer\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn web(lab: &Lab, name: &str, port: u16, body: &str) -> WebServer {
    let last = if name == "web1" { 50 } else { 51 };
    WebServer::start(
        lab.node(name).unwrap(),
        SocketAddr::from(([198, 51, 100, last], port)),
        body,
    )
    .unwrap()
}

fn vs(port: u16, algo: &str, reals: &[(&str, u16, &str)]) -> String {
    let mut s = format!(
        "virtual_server 198.51.100.250 {port} {{\n lb_dataplane proxy\n lb_algo {algo}\n delay_loop 1\n"
    );
    for (addr, rport, extra) in reals {
        let _ = write!(s, " real_server {addr} {rport} {{\n{extra} }}\n");
    }
    s.push_str("}\n");
    s
}

#[test]
fn proxy_alternates_honours_weights_and_retries_a_refused_connect() {
    if !netlab::privileged("proxy_alternates_honours_weights_and_retries_a_refused_connect") {
        return;
    }
    // :9527 rr over web1, web2 and a server that refuses (web1:81, no
    // checker: only the proxy can see it fail); :9528 wrr 3:1.
    let conf = format!(
        "{}{}",
        vs(
            9527,
            "rr",
            &[
                ("198.51.100.50", 80, ""),
                ("198.51.100.50", 81, " max_fails 1\n fail_timeout 30\n"),
                ("198.51.100.51", 80, ""),
            ]
        ),
        vs(
            9528,
            "wrr",
            &[
                ("198.51.100.50", 80, " weight 3\n"),
                ("198.51.100.51", 80, " weight 1\n")
            ]
        )
    );
    let s = setup(&conf);
    let _w1 = web(&s.lab, "web1", 80, YY);
    let _w2 = web(&s.lab, "web2", 80, CC);
    s.ready(9527);
    let got: Vec<Option<String>> = (0..30).map(|_| s.get(9527)).collect();
    assert!(
        got.iter().all(Option::is_some),
        "a refused connect reached the client: {got:?}\n{}",
        s.log()
    );
    let yy = got.iter().filter(|b| b.as_deref() == Some(YY)).count();
    assert!((14..=16).contains(&yy), "{yy} of 30 to web1: {got:?}");
    assert!(got.windows(2).skip(2).all(|w| w[0] != w[1]), "{got:?}");
    // wrr 3:1 over 400 connections.
    let n = 400;
    let got: Vec<Option<String>> = (0..n).map(|_| s.get(9528)).collect();
    let yy = got.iter().filter(|b| b.as_deref() == Some(YY)).count();
    eprintln!("proxy wrr 3:1: {yy} of {n} to web1");
    assert!(got.iter().all(Option::is_some));
    assert!((285..=315).contains(&yy), "{yy} of {n}");
}

#[test]
fn max_fails_and_fail_timeout_without_an_active_checker() {
    if !netlab::privileged("max_fails_and_fail_timeout_without_an_active_checker") {
        return;
    }
    let passive = " max_fails 1\n fail_timeout 2\n";
    let s = setup(&vs(
        9527,
        "rr",
        &[
            ("198.51.100.50", 80, passive),
            ("198.51.100.51", 80, passive),
        ],
    ));
    let w1 = web(&s.lab, "web1", 80, YY);
    let _w2 = web(&s.lab, "web2", 80, CC);
    s.ready(9527);
    // web1 refuses: every request still answered (by web2), and web1 is
    // out of rotation after its first refusal.
    w1.stop();
    let stopped = Instant::now();
    let got: Vec<Option<String>> = (0..10).map(|_| s.get(9527)).collect();
    assert!(
        got.iter().all(|b| b.as_deref() == Some(CC)),
        "{got:?}\n{}",
        s.log()
    );
    // Back up; after fail_timeout (2 s) it is tried again and rotates in.
    let _w1 = web(&s.lab, "web1", 80, YY);
    let start = Instant::now();
    while s.get(9527).as_deref() != Some(YY) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "web1 never came back\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let back = stopped.elapsed();
    eprintln!("proxy: web1 back in rotation {back:?} after it was taken out (fail_timeout 2 s)");
    assert!(
        back >= Duration::from_millis(1_900),
        "{back:?}: before fail_timeout"
    );
}

#[test]
fn a_half_close_is_passed_on_and_udp_round_trips() {
    if !netlab::privileged("a_half_close_is_passed_on_and_udp_round_trips") {
        return;
    }
    let conf = format!(
        "{}virtual_server 198.51.100.250 5300 {{\n lb_dataplane proxy\n protocol UDP\n real_server 198.51.100.50 5300 {{\n }}\n}}\n",
        vs(7000, "rr", &[("198.51.100.50", 7000, "")])
    );
    let lab_setup = setup(&conf);
    // web1:7000 reads until the client's half-close, then answers with
    // the byte count; web1:5300 echoes datagrams.
    let listener = lab_setup
        .lab
        .node("web1")
        .unwrap()
        .run(|| std::net::TcpListener::bind("198.51.100.50:7000"))
        .unwrap()
        .unwrap();
    std::thread::spawn(move || {
        for mut c in listener.incoming().flatten() {
            let mut all = Vec::new();
            let _ = c.read_to_end(&mut all);
            let _ = write!(c, "got {} bytes", all.len());
        }
    });
    let udp = lab_setup
        .lab
        .node("web1")
        .unwrap()
        .run(|| std::net::UdpSocket::bind("198.51.100.50:5300"))
        .unwrap()
        .unwrap();
    std::thread::spawn(move || {
        let mut b = [0u8; 512];
        while let Ok((n, from)) = udp.recv_from(&mut b) {
            let _ = udp.send_to(&b[..n], from);
        }
    });
    std::thread::sleep(Duration::from_secs(2));
    let answer = lab_setup
        .lab
        .node("client")
        .unwrap()
        .run(|| {
            let mut c = TcpStream::connect_timeout(
                &SocketAddr::from(([198, 51, 100, 250], 7000)),
                Duration::from_secs(2),
            )?;
            c.set_read_timeout(Some(Duration::from_secs(3)))?;
            c.write_all(&vec![b'x'; 100_000])?;
            c.shutdown(std::net::Shutdown::Write)?;
            let mut out = String::new();
            c.read_to_string(&mut out)?;
            Ok::<_, std::io::Error>(out)
        })
        .unwrap()
        .unwrap();
    assert_eq!(answer, "got 100000 bytes", "\n{}", lab_setup.log());
    let echoed = lab_setup
        .lab
        .node("client")
        .unwrap()
        .run(|| {
            let u = std::net::UdpSocket::bind("198.51.100.100:0")?;
            u.set_read_timeout(Some(Duration::from_secs(2)))?;
            u.send_to(b"ping through the proxy", "198.51.100.250:5300")?;
            let mut b = [0u8; 512];
            let (n, from) = u.recv_from(&mut b)?;
            Ok::<_, std::io::Error>((b[..n].to_vec(), from))
        })
        .unwrap()
        .unwrap();
    assert_eq!(echoed.0, b"ping through the proxy");
    assert_eq!(
        echoed.1,
        SocketAddr::from(([198, 51, 100, 250], 5300)),
        "answered from the VIP"
    );
}
