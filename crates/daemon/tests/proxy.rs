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
    // status: the proxy's connections and bytes per real server.
    std::thread::sleep(Duration::from_millis(600));
    let out = Command::new(BIN)
        .args(["status", "--json", "--control"])
        .arg(s.dir.join("c.sock"))
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let of = |vs: &str, rs: &str| {
        v["proxy"]
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find(|c| c["virtual_server"] == vs && c["real_server"] == rs)
                    .cloned()
            })
            .unwrap_or_default()
    };
    let web1 = of("198.51.100.250:9528", "198.51.100.50:80");
    assert_eq!(web1["active_connections"], 0, "{v}");
    // 300 answers of about 110 bytes each, plus their requests.
    assert!(web1["bytes"].as_u64().unwrap_or(0) > 300 * 100, "{v}");
    assert!(
        of("198.51.100.250:9527", "198.51.100.50:81")["bytes"] == 0,
        "{v}"
    );
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

/// `wrk` from the client: requests per second and bytes per second.
fn wrk(lab: &Lab, url: &str, conns: u32, close: bool, secs: u32) -> (f64, f64) {
    let mut args = vec![
        "wrk".to_owned(),
        "-t2".into(),
        format!("-c{conns}"),
        format!("-d{secs}s"),
    ];
    if close {
        args.extend(["-H".into(), "Connection: close".into()]);
    }
    args.push(url.into());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = lab.node("client").unwrap().exec(&argv).unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |name: &str| -> Option<&str> {
        text.lines()
            .find(|l| l.trim_start().starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
    };
    let rps = field("Requests/sec:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let bps = field("Transfer/sec:").map_or(0.0, |v| {
        let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len()));
        let n: f64 = num.parse().unwrap_or(0.0);
        n * match unit {
            "GB" => 1e9,
            "MB" => 1e6,
            "KB" => 1e3,
            _ => 1.0,
        }
    });
    (rps, bps)
}

/// The backend (nginx serving a small page and a 1 MB file on web1) and
/// the two proxies to compare with (nginx stream on :9528, haproxy on
/// :9529, on lb1).
fn peers(s: &Setup) -> Vec<Process> {
    let dir = &s.dir;
    // The backend: nginx serving a small page and a 1 MB file.
    let www = dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "this is yy web!\n").unwrap();
    std::fs::write(www.join("1m"), vec![b'x'; 1 << 20]).unwrap();
    let backend = dir.join("backend.conf");
    std::fs::write(
        &backend,
        format!(
            "daemon off;\nworker_processes 1;\npid {}/backend.pid;\nerror_log stderr;\nevents {{ worker_connections 4096; }}\nhttp {{\n access_log off;\n keepalive_requests 1000000;\n server {{\n listen 198.51.100.50:80 reuseport;\n root {};\n }}\n}}\n",
            dir.display(),
            www.display()
        ),
    )
    .unwrap();
    let web = s
        .lab
        .node("web1")
        .unwrap()
        .spawn("nginx", &["-c", backend.to_str().unwrap(), "-e", "stderr"])
        .unwrap();
    // nginx stream and haproxy in front of it, on lb1.
    let stream = dir.join("stream.conf");
    std::fs::write(
        &stream,
        format!(
            "load_module /usr/lib/nginx/modules/ngx_stream_module.so;\ndaemon off;\nworker_processes 2;\npid {}/stream.pid;\nerror_log stderr;\nevents {{ worker_connections 8192; }}\nstream {{\n upstream web {{ server 198.51.100.50:80; }}\n server {{ listen 198.51.100.250:9528 reuseport; proxy_pass web; }}\n}}\n",
            dir.display()
        ),
    )
    .unwrap();
    let nginx = s
        .lab
        .node("lb1")
        .unwrap()
        .spawn("nginx", &["-c", stream.to_str().unwrap(), "-e", "stderr"])
        .unwrap();
    let hap = dir.join("haproxy.cfg");
    std::fs::write(
        &hap,
        "global\n maxconn 4000\n nbthread 2\ndefaults\n mode tcp\n timeout connect 5s\n timeout client 60s\n timeout server 60s\nfrontend f\n bind 198.51.100.250:9529\n default_backend b\nbackend b\n server s1 198.51.100.50:80\n",
    )
    .unwrap();
    let haproxy = s
        .lab
        .node("lb1")
        .unwrap()
        .spawn("haproxy", &["-db", "-f", hap.to_str().unwrap()])
        .unwrap();
    vec![web, nginx, haproxy]
}

#[test]
#[ignore = "a benchmark: run bench/proxy"]
fn proxy_bench_against_nginx_and_haproxy() {
    assert!(netlab::privileged("proxy_bench_against_nginx_and_haproxy"));
    let secs = 3;
    let ours = vs(9527, "rr", &[("198.51.100.50", 80, "")]);
    let s = setup(&ours);
    let _peers = peers(&s);
    std::thread::sleep(Duration::from_secs(2));
    s.ready(9527);
    let targets = [
        ("direct", "198.51.100.50:80"),
        ("keepalived-rs proxy", "198.51.100.250:9527"),
        ("nginx stream", "198.51.100.250:9528"),
        ("haproxy", "198.51.100.250:9529"),
    ];
    // Medians of runs taken in turns, so drift on the shared cores hits
    // every proxy alike.
    let runs = 3;
    let mut samples: Vec<[Vec<f64>; 3]> = (0..targets.len()).map(|_| Default::default()).collect();
    for _ in 0..runs {
        for (k, (_, at)) in targets.iter().enumerate() {
            let (rps, _) = wrk(&s.lab, &format!("http://{at}/"), 50, false, secs);
            let (cps, _) = wrk(&s.lab, &format!("http://{at}/"), 50, true, secs);
            let (_, bps) = wrk(&s.lab, &format!("http://{at}/1m"), 8, false, secs);
            samples[k][0].push(rps);
            samples[k][1].push(cps);
            samples[k][2].push(bps);
        }
    }
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut rows = Vec::new();
    for (k, (name, _)) in targets.iter().enumerate() {
        let [r, c, b] = &samples[k];
        let (rps, cps, bps) = (median(r), median(c), median(b));
        eprintln!(
            "{name}: {rps:.0} req/s, {cps:.0} conn/s, {:.2} GB/s (runs: {r:?} {c:?} {b:?})",
            bps / 1e9
        );
        rows.push((*name, rps, cps, bps));
    }
    let nginx = rows[2];
    let mut table = format!(
        "wrk -t2, median of {runs} runs of {secs} s taken in turns, through each proxy to one nginx backend (namespaces, 2 cores shared by all)\n\n| path | keep-alive req/s | vs nginx | new connections/s | vs nginx | 1 MB bodies GB/s | vs nginx |\n|---|---:|---:|---:|---:|---:|---:|\n"
    );
    for (name, rps, cps, bps) in &rows {
        let _ = writeln!(
            table,
            "| {name} | {rps:.0} | {:.2}x | {cps:.0} | {:.2}x | {:.2} | {:.2}x |",
            rps / nginx.1,
            cps / nginx.2,
            bps / 1e9,
            bps / nginx.3
        );
    }
    println!("\n{table}");
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("proxy.md"), &table).unwrap();
}
