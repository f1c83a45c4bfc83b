//! The health checkers on real servers in namespaces: `keepalived-rs -C`
//! marks a real server down when its TCP port stops answering, within
//! delay_loop + retry × delay_before_retry + connect_timeout, and up again
//! when it answers, as `status --json` shows.

#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use netlab::http::WebServer;
use netlab::Lab;

const BIN: &str = env!("CARGO_BIN_EXE_keepalived-rs");

/// `keepalived-rs -C -f conf` in lb1, logging to `dir/rs.log`; the process
/// and its control socket.
fn checker(
    lab: &Lab,
    dir: &std::path::Path,
    conf: &std::path::Path,
) -> (netlab::Process, std::path::PathBuf) {
    let control = dir.join("c.sock");
    let mut cmd = Command::new(BIN);
    cmd.args(["-n", "-l", "-C", "-f"])
        .arg(conf)
        .arg("--control")
        .arg(&control);
    let log = std::fs::File::create(dir.join("rs.log")).unwrap();
    let daemon = lab
        .node("lb1")
        .unwrap()
        .spawn_logged(&cmd, Some(log))
        .unwrap();
    (daemon, control)
}

/// Each real server's `healthy`, in config order.
fn health(control: &std::path::Path) -> Option<Vec<bool>> {
    let out = Command::new(BIN)
        .args(["status", "--json", "--control"])
        .arg(control)
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v["virtual_servers"][0]["real_servers"]
        .as_array()?
        .iter()
        .map(|r| r["healthy"].as_bool())
        .collect()
}

/// How long until the health reads `want`; panics after `limit`.
fn wait_health(control: &std::path::Path, want: &[bool], limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if health(control).as_deref() == Some(want) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "health is {:?}, not {want:?}, after {limit:?}",
            health(control)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn tcp_check_follows_a_real_server_down_and_up() {
    if !netlab::privileged("tcp_check_follows_a_real_server_down_and_up") {
        return;
    }
    let lab = Lab::star(&[
        ("lb1", &["198.51.100.22/24"]),
        ("web1", &["198.51.100.50/24"]),
        ("web2", &["198.51.100.51/24"]),
    ])
    .unwrap();
    let dir = std::env::temp_dir().join(format!("{}checks", lab.prefix()));
    std::fs::create_dir_all(&dir).unwrap();
    let web1 = lab.node("web1").unwrap();
    let server =
        WebServer::start(web1, "198.51.100.50:80".parse().unwrap(), "this is yy web!").unwrap();
    // web2 serves nothing: down from its first check.
    // notify_up / notify_down append to a file (keepalived passes no arguments).
    let seen = dir.join("notified");
    let script = |name: &str, word: &str| {
        let p = dir.join(name);
        std::fs::write(
            &p,
            format!("#!/bin/sh\necho {word} >> {}\n", seen.display()),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        p
    };
    let (up, down) = (script("up.sh", "up"), script("down.sh", "down"));
    let conf = dir.join("checks.conf");
    std::fs::write(
        &conf,
        format!("virtual_server 198.51.100.250 80 {{\n delay_loop 1\n lb_algo rr\n lb_kind DR\n protocol TCP\n real_server 198.51.100.50 80 {{\n weight 1\n notify_up {}\n notify_down {}\n TCP_CHECK {{\n connect_timeout 1\n retry 1\n delay_before_retry 1\n }}\n }}\n real_server 198.51.100.51 80 {{\n weight 1\n TCP_CHECK {{\n connect_timeout 1\n retry 1\n delay_before_retry 1\n }}\n }}\n}}\n", up.display(), down.display()),
    )
    .unwrap();
    let (mut daemon, control) = checker(&lab, &dir, &conf);
    let logs = || std::fs::read_to_string(dir.join("rs.log")).unwrap_or_default();
    // First checks: 1 s + up to warmup (= delay_loop, 1 s) after start.
    wait_health(&control, &[true, false], Duration::from_secs(5));
    // web1 stops answering: refused connections, down within
    // delay_loop (1) + retry (1) × delay_before_retry (1) + connect_timeout (1).
    server.stop();
    let took = wait_health(&control, &[false, false], Duration::from_secs(6));
    eprintln!("TCP_CHECK: down {took:?} after the server stopped");
    assert!(took <= Duration::from_millis(3_200), "{took:?}\n{}", logs());
    // Back: up at the next check (delay_loop).
    let _server =
        WebServer::start(web1, "198.51.100.50:80".parse().unwrap(), "this is yy web!").unwrap();
    let took = wait_health(&control, &[true, false], Duration::from_secs(4));
    eprintln!("TCP_CHECK: up {took:?} after the server came back");
    assert!(took <= Duration::from_millis(1_200), "{took:?}\n{}", logs());
    assert!(
        logs().contains("Removing service [198.51.100.50]:tcp:80"),
        "{}",
        logs()
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        std::fs::read_to_string(&seen).unwrap_or_default(),
        "down\nup\n",
        "notify_down then notify_up, once each\n{}",
        logs()
    );
    daemon.signal(nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(
        daemon
            .wait_timeout(Duration::from_secs(5))
            .unwrap()
            .success(),
        "{}",
        logs()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn http_get_follows_status_codes_and_digests() {
    if !netlab::privileged("http_get_follows_status_codes_and_digests") {
        return;
    }
    let lab = Lab::star(&[
        ("lb1", &["198.51.100.22/24"]),
        ("web1", &["198.51.100.50/24"]),
    ])
    .unwrap();
    let dir = std::env::temp_dir().join(format!("{}http", lab.prefix()));
    std::fs::create_dir_all(&dir).unwrap();
    let web1 = lab.node("web1").unwrap();
    let server =
        WebServer::start(web1, "198.51.100.50:80".parse().unwrap(), "this is yy web!").unwrap();
    // The body's MD5, as the server sends it.
    let body = netlab::http::get(
        lab.node("lb1").unwrap(),
        "198.51.100.50:80".parse().unwrap(),
        "/",
        Duration::from_secs(2),
    )
    .unwrap()
    .body;
    let mut md5sum = Command::new("md5sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(md5sum.stdin.as_mut().unwrap(), body.as_bytes()).unwrap();
    let out = md5sum.wait_with_output().unwrap();
    let digest = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    // Three real servers on the same backend (ports 80 via connect_port):
    // the default codes (200-299), 200-399 with the right digest, and a
    // wrong digest.
    let rs = |n: u8, url: &str| {
        format!(" real_server 198.51.100.{n} 80 {{\n HTTP_GET {{\n connect_ip 198.51.100.50\n connect_timeout 1\n retry 1\n delay_before_retry 1\n url {{\n path /\n{url} }}\n }}\n }}\n")
    };
    let conf = dir.join("http.conf");
    std::fs::write(
        &conf,
        format!(
            "virtual_server 198.51.100.250 80 {{\n delay_loop 1\n{}{}{}{}{}}}\n",
            rs(60, ""),
            rs(61, &format!(" status_code 200-399\n digest {digest}\n")),
            rs(62, " digest 00000000000000000000000000000000\n"),
            // keepalived's regex on the body, and regex_no_match.
            rs(63, " regex \"this is (yy|cc) web\"\n"),
            rs(64, " regex yy\n regex_no_match\n"),
        ),
    )
    .unwrap();
    let (mut daemon, control) = checker(&lab, &dir, &conf);
    wait_health(
        &control,
        &[true, true, false, true, false],
        Duration::from_secs(5),
    );
    // 301: healthy only where 200-399 is accepted.
    server.set_status(301);
    wait_health(
        &control,
        &[false, true, false, false, false],
        Duration::from_secs(5),
    );
    // 404: down everywhere; 200: back.
    server.set_status(404);
    wait_health(
        &control,
        &[false, false, false, false, false],
        Duration::from_secs(5),
    );
    server.set_status(200);
    wait_health(
        &control,
        &[true, true, false, true, false],
        Duration::from_secs(5),
    );
    // 500: down everywhere; 200 again: back.
    server.set_status(500);
    wait_health(
        &control,
        &[false, false, false, false, false],
        Duration::from_secs(5),
    );
    server.set_status(200);
    wait_health(
        &control,
        &[true, true, false, true, false],
        Duration::from_secs(5),
    );
    daemon.signal(nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(daemon
        .wait_timeout(Duration::from_secs(5))
        .unwrap()
        .success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Each real server's (healthy, weight), in config order.
fn health_and_weight(control: &std::path::Path) -> Option<Vec<(bool, u64)>> {
    let out = Command::new(BIN)
        .args(["status", "--json", "--control"])
        .arg(control)
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v["virtual_servers"][0]["real_servers"]
        .as_array()?
        .iter()
        .map(|r| Some((r["healthy"].as_bool()?, r["weight"].as_u64()?)))
        .collect()
}

#[test]
fn misc_check_with_misc_dynamic_sets_health_and_weight() {
    if !netlab::privileged("misc_check_with_misc_dynamic_sets_health_and_weight") {
        return;
    }
    let lab = Lab::star(&[("lb1", &["198.51.100.22/24"])]).unwrap();
    let dir = std::env::temp_dir().join(format!("{}misc", lab.prefix()));
    std::fs::create_dir_all(&dir).unwrap();
    let code = dir.join("code");
    std::fs::write(&code, "0").unwrap();
    let script = dir.join("check.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\nexit $(cat {})\n", code.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let conf = dir.join("misc.conf");
    std::fs::write(
        &conf,
        format!(
            "virtual_server 198.51.100.250 80 {{\n delay_loop 1\n real_server 198.51.100.50 80 {{\n weight 5\n MISC_CHECK {{\n misc_path {}\n misc_timeout 2\n misc_dynamic\n }}\n }}\n}}\n",
            script.display()
        ),
    )
    .unwrap();
    let (mut daemon, control) = checker(&lab, &dir, &conf);
    let wait = |want: (bool, u64)| {
        let start = Instant::now();
        while health_and_weight(&control).as_deref() != Some(&[want][..]) {
            assert!(
                start.elapsed() < Duration::from_secs(6),
                "{:?}, not {want:?}\n{}",
                health_and_weight(&control),
                std::fs::read_to_string(dir.join("rs.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // Exit 0: up at the configured weight; 10: up at weight 8 (keepalived's
    // code, exit − 2); 1: down, the dynamic weight dropped; 0: up at 5.
    wait((true, 5));
    std::fs::write(&code, "10").unwrap();
    wait((true, 8));
    std::fs::write(&code, "1").unwrap();
    wait((false, 5));
    std::fs::write(&code, "0").unwrap();
    wait((true, 5));
    daemon.signal(nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(daemon
        .wait_timeout(Duration::from_secs(5))
        .unwrap()
        .success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn udp_check_needs_a_matching_reply_or_no_icmp_error() {
    if !netlab::privileged("udp_check_needs_a_matching_reply_or_no_icmp_error") {
        return;
    }
    let lab = Lab::star(&[
        ("lb1", &["198.51.100.22/24"]),
        ("web1", &["198.51.100.50/24"]),
    ])
    .unwrap();
    let dir = std::env::temp_dir().join(format!("{}udp", lab.prefix()));
    std::fs::create_dir_all(&dir).unwrap();
    // A UDP echo service on web1:5353 (a thread inside its namespace).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let echo = {
        let stop = stop.clone();
        lab.node("web1")
            .unwrap()
            .thread(move || {
                let s = std::net::UdpSocket::bind("198.51.100.50:5353").unwrap();
                s.set_read_timeout(Some(Duration::from_millis(100)))
                    .unwrap();
                let mut b = [0u8; 512];
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Ok((n, from)) = s.recv_from(&mut b) {
                        let _ = s.send_to(&b[..n], from);
                    }
                }
            })
            .unwrap()
    };
    std::thread::sleep(Duration::from_millis(200));
    // 1: echo with the right reply; 2: echo with a reply that never comes
    // back that way; 3: a closed port (ICMP port unreachable).
    let rs = |port: u16, extra: &str| {
        format!(" real_server 198.51.100.50 {port} {{\n UDP_CHECK {{\n connect_timeout 1\n retry 1\n delay_before_retry 1\n payload 6b 72 73\n{extra} }}\n }}\n")
    };
    let conf = dir.join("udp.conf");
    std::fs::write(
        &conf,
        format!(
            "virtual_server 198.51.100.250 53 {{\n delay_loop 1\n protocol UDP\n{}{}{}}}\n",
            rs(5353, " require_reply 6b72\n"),
            rs(5353, " require_reply 0000\n"),
            rs(5354, ""),
        ),
    )
    .unwrap();
    let (mut daemon, control) = checker(&lab, &dir, &conf);
    wait_health(&control, &[true, false, false], Duration::from_secs(6));
    // Stays so.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(health(&control).unwrap(), [true, false, false]);
    daemon.signal(nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(daemon
        .wait_timeout(Duration::from_secs(5))
        .unwrap()
        .success());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = echo.join();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ping_check_over_ipv4_and_ipv6_follows_the_link() {
    if !netlab::privileged("ping_check_over_ipv4_and_ipv6_follows_the_link") {
        return;
    }
    let lab = Lab::star(&[
        ("lb1", &["198.51.100.22/24", "2001:db8:100::22/64"]),
        ("web1", &["198.51.100.50/24", "2001:db8:100::50/64"]),
    ])
    .unwrap();
    let dir = std::env::temp_dir().join(format!("{}ping", lab.prefix()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("ping.conf");
    std::fs::write(
        &conf,
        "virtual_server 198.51.100.250 80 {\n delay_loop 1\n real_server 198.51.100.50 80 {\n PING_CHECK {\n connect_timeout 1\n retry 1\n delay_before_retry 1\n }\n }\n real_server 2001:db8:100::50 80 {\n PING_CHECK {\n connect_timeout 1\n retry 1\n delay_before_retry 1\n }\n }\n real_server 198.51.100.77 80 {\n PING_CHECK {\n connect_timeout 1\n }\n }\n}\n",
    )
    .unwrap();
    let (mut daemon, control) = checker(&lab, &dir, &conf);
    // web1 answers both families; .77 is nobody.
    wait_health(&control, &[true, true, false], Duration::from_secs(6));
    // web1's cable is cut silently: both go down within delay_loop +
    // retry × delay_before_retry + (retry + 1) × connect_timeout = 4 s
    // (each unanswered echo waits the whole timeout).
    let link = lab.link("web1", "eth0").unwrap().clone();
    lab.cut(&link).unwrap();
    let took = wait_health(&control, &[false, false, false], Duration::from_secs(6));
    eprintln!("PING_CHECK: down {took:?} after the link was cut");
    assert!(took <= Duration::from_millis(4_300), "{took:?}");
    lab.restore(&link).unwrap();
    wait_health(&control, &[true, true, false], Duration::from_secs(4));
    daemon.signal(nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(daemon
        .wait_timeout(Duration::from_secs(5))
        .unwrap()
        .success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The daemon's `status --json`.
fn status(control: &std::path::Path) -> Option<serde_json::Value> {
    let out = Command::new(BIN)
        .args(["status", "--json", "--control"])
        .arg(control)
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

/// How long until `status` satisfies `want`; panics after `limit`, with
/// the status and the daemon's log.
fn wait_status(
    control: &std::path::Path,
    dir: &std::path::Path,
    what: &str,
    want: impl Fn(&serde_json::Value) -> bool,
    limit: Duration,
) -> Duration {
    let start = Instant::now();
    loop {
        if status(control).is_some_and(|s| want(&s)) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "not {what} after {limit:?}: {:?}\n{}",
            status(control),
            std::fs::read_to_string(dir.join("rs.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stop_daemon(mut daemon: netlab::Process, dir: &std::path::Path) {
    daemon.signal(nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(
        daemon
            .wait_timeout(Duration::from_secs(5))
            .unwrap()
            .success(),
        "{}",
        std::fs::read_to_string(dir.join("rs.log")).unwrap_or_default()
    );
}

#[test]
fn ssl_get_checks_a_tls_server_with_a_self_signed_certificate() {
    if !netlab::privileged("ssl_get_checks_a_tls_server_with_a_self_signed_certificate") {
        return;
    }
    let lab = Lab::star(&[
        ("lb1", &["198.51.100.22/24"]),
        ("web1", &["198.51.100.50/24"]),
        ("web2", &["198.51.100.51/24"]),
    ])
    .unwrap();
    let dir = std::env::temp_dir().join(format!("{}ssl", lab.prefix()));
    let www = dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    // A self-signed certificate, and openssl's own TLS web server serving
    // files from www/ (it answers 200 even for a missing file, with an
    // error text: the check's digest tells them apart).
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args([
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=web1.example",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    std::fs::write(www.join("ok.html"), "this is yy web!\n").unwrap();
    let md5 = Command::new("md5sum")
        .arg(www.join("ok.html"))
        .output()
        .unwrap();
    let digest = String::from_utf8_lossy(&md5.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let mut s_server = Command::new("openssl");
    s_server
        .args(["s_server", "-quiet", "-accept", "443", "-WWW", "-cert"])
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .current_dir(&www);
    let _tls = lab
        .node("web1")
        .unwrap()
        .spawn_logged(&s_server, None)
        .unwrap();
    // web2 speaks plain HTTP on 443: the TLS handshake fails.
    let _plain = WebServer::start(
        lab.node("web2").unwrap(),
        "198.51.100.51:443".parse().unwrap(),
        "plain",
    )
    .unwrap();
    let rs = |n: u8| {
        format!(" real_server 198.51.100.{n} 443 {{\n SSL_GET {{\n connect_timeout 1\n retry 1\n delay_before_retry 1\n url {{\n path /ok.html\n digest {digest}\n }}\n }}\n }}\n")
    };
    let conf = dir.join("ssl.conf");
    std::fs::write(
        &conf,
        format!(
            "virtual_server 198.51.100.250 443 {{\n delay_loop 1\n{}{}}}\n",
            rs(50),
            rs(51)
        ),
    )
    .unwrap();
    let (daemon, control) = checker(&lab, &dir, &conf);
    wait_health(&control, &[true, false], Duration::from_secs(6));
    // The page goes away (another body, the digest no longer matches):
    // down within delay_loop + retry × dbr + connect_timeout.
    std::fs::rename(www.join("ok.html"), www.join("gone.html")).unwrap();
    let took = wait_health(&control, &[false, false], Duration::from_secs(6));
    eprintln!("SSL_GET: down {took:?} after the page went (digest mismatch)");
    assert!(took <= Duration::from_millis(3_200), "{took:?}");
    std::fs::rename(www.join("gone.html"), www.join("ok.html")).unwrap();
    let took = wait_health(&control, &[true, false], Duration::from_secs(4));
    eprintln!("SSL_GET: up {took:?} after it came back");
    stop_daemon(daemon, &dir);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn dns_check_follows_the_responders_rcode_and_silence() {
    if !netlab::privileged("dns_check_follows_the_responders_rcode_and_silence") {
        return;
    }
    let lab = Lab::star(&[
        ("lb1", &["198.51.100.22/24"]),
        ("web1", &["198.51.100.50/24"]),
    ])
    .unwrap();
    let dir = std::env::temp_dir().join(format!("{}dns", lab.prefix()));
    std::fs::create_dir_all(&dir).unwrap();
    let dns = netlab::dns::DnsServer::start(
        lab.node("web1").unwrap(),
        "198.51.100.50:53".parse().unwrap(),
    )
    .unwrap();
    let conf = dir.join("dns.conf");
    std::fs::write(
        &conf,
        "virtual_server 198.51.100.250 53 {\n delay_loop 1\n protocol UDP\n real_server 198.51.100.50 53 {\n DNS_CHECK {\n type A\n name web1.example\n connect_timeout 1\n retry 1\n delay_before_retry 1\n }\n }\n}\n",
    )
    .unwrap();
    let (daemon, control) = checker(&lab, &dir, &conf);
    wait_health(&control, &[true], Duration::from_secs(6));
    // SERVFAIL: down within delay_loop + retry × dbr (+ one exchange).
    dns.set_rcode(2);
    let took = wait_health(&control, &[false], Duration::from_secs(6));
    eprintln!("DNS_CHECK: down {took:?} after SERVFAIL");
    assert!(took <= Duration::from_millis(2_500), "{took:?}");
    dns.set_rcode(0);
    wait_health(&control, &[true], Duration::from_secs(4));
    // Silence: every attempt waits its connect_timeout.
    dns.set_silent(true);
    let took = wait_health(&control, &[false], Duration::from_secs(8));
    eprintln!("DNS_CHECK: down {took:?} after the responder fell silent");
    assert!(took <= Duration::from_millis(4_200), "{took:?}");
    dns.set_silent(false);
    wait_health(&control, &[true], Duration::from_secs(4));
    stop_daemon(daemon, &dir);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn smtp_check_follows_the_greeting_on_every_host() {
    if !netlab::privileged("smtp_check_follows_the_greeting_on_every_host") {
        return;
    }
    let lab = Lab::star(&[
        ("lb1", &["198.51.100.22/24"]),
        ("web1", &["198.51.100.50/24"]),
        ("web2", &["198.51.100.51/24"]),
    ])
    .unwrap();
    let dir = std::env::temp_dir().join(format!("{}smtp", lab.prefix()));
    std::fs::create_dir_all(&dir).unwrap();
    let mta = netlab::smtp::SmtpServer::start(
        lab.node("web1").unwrap(),
        "198.51.100.50:25".parse().unwrap(),
    )
    .unwrap();
    // Real server 1: its own address. Real server 2: two hosts, web1's
    // and web2's (nothing listens there): all must pass, so it is down.
    let conf = dir.join("smtp.conf");
    std::fs::write(
        &conf,
        "virtual_server 198.51.100.250 25 {\n delay_loop 1\n real_server 198.51.100.50 25 {\n SMTP_CHECK {\n helo_name lb1.example\n connect_timeout 1\n retry 1\n delay_before_retry 1\n }\n }\n real_server 198.51.100.60 25 {\n SMTP_CHECK {\n connect_timeout 1\n retry 1\n delay_before_retry 1\n host {\n connect_ip 198.51.100.50\n }\n host {\n connect_ip 198.51.100.51\n }\n }\n }\n}\n",
    )
    .unwrap();
    let (daemon, control) = checker(&lab, &dir, &conf);
    wait_health(&control, &[true, false], Duration::from_secs(8));
    // A 554 greeting: keepalived's SMTP counting retries once even from up
    // (retry 1, 1 s apart), then down.
    mta.set_greeting(554);
    let took = wait_health(&control, &[false, false], Duration::from_secs(6));
    eprintln!("SMTP_CHECK: down {took:?} after a 554 greeting");
    assert!(took <= Duration::from_millis(3_200), "{took:?}");
    mta.set_greeting(220);
    wait_health(&control, &[true, false], Duration::from_secs(5));
    stop_daemon(daemon, &dir);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn file_check_sets_weight_and_health_from_the_file() {
    if !netlab::privileged("file_check_sets_weight_and_health_from_the_file") {
        return;
    }
    let lab = Lab::star(&[("lb1", &["198.51.100.22/24"])]).unwrap();
    let dir = std::env::temp_dir().join(format!("{}file", lab.prefix()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("weight");
    std::fs::write(&file, "0\n").unwrap();
    let conf = dir.join("file.conf");
    // Real server 1: weight 5, the file's value × 10 added. Real server 2:
    // weight 0, so any non-zero value takes it down.
    std::fs::write(
        &conf,
        format!(
            "track_file tf {{\n file {}\n weight 10\n}}\nvirtual_server 198.51.100.250 80 {{\n real_server 198.51.100.50 80 {{\n weight 5\n FILE_CHECK {{\n track_file tf\n }}\n }}\n real_server 198.51.100.51 80 {{\n FILE_CHECK {{\n track_file tf\n weight 0\n }}\n }}\n}}\n",
            file.display()
        ),
    )
    .unwrap();
    let (daemon, control) = checker(&lab, &dir, &conf);
    let wait = |want: [(bool, u64); 2]| {
        let start = Instant::now();
        while health_and_weight(&control).as_deref() != Some(&want[..]) {
            assert!(
                start.elapsed() < Duration::from_secs(3),
                "{:?}, not {want:?}\n{}",
                health_and_weight(&control),
                std::fs::read_to_string(dir.join("rs.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        start.elapsed()
    };
    wait([(true, 5), (true, 1)]);
    std::fs::write(&file, "2\n").unwrap();
    let took = wait([(true, 25), (false, 1)]);
    eprintln!("FILE_CHECK: weight and health followed the file in {took:?}");
    assert!(took <= Duration::from_millis(500), "{took:?}");
    // 5 − 10: never below 0; the server stays up at weight 0.
    std::fs::write(&file, "-1\n").unwrap();
    wait([(true, 0), (false, 1)]);
    // The bottom of the range is keepalived's FAULT: down.
    std::fs::write(&file, "-2147483648\n").unwrap();
    wait([(false, 5), (false, 1)]);
    std::fs::write(&file, "0x0\n").unwrap();
    wait([(true, 5), (true, 1)]);
    stop_daemon(daemon, &dir);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[allow(clippy::too_many_lines)] // one story: down, quorum lost, back, and what it told
fn quorum_sorry_server_scripts_fifo_and_alerts_follow_the_real_servers() {
    if !netlab::privileged("quorum_sorry_server_scripts_fifo_and_alerts_follow_the_real_servers") {
        return;
    }
    let lab = Lab::star(&[
        ("lb1", &["198.51.100.22/24"]),
        ("web1", &["198.51.100.50/24"]),
        ("web2", &["198.51.100.51/24"]),
    ])
    .unwrap();
    let dir = std::env::temp_dir().join(format!("{}quorum", lab.prefix()));
    std::fs::create_dir_all(&dir).unwrap();
    let addr = |n: u8| format!("198.51.100.{n}:80").parse().unwrap();
    let _web1 = WebServer::start(lab.node("web1").unwrap(), addr(50), "this is yy web!").unwrap();
    let web2 = WebServer::start(lab.node("web2").unwrap(), addr(51), "this is cc web!").unwrap();
    let sink = netlab::smtp::SmtpServer::start(
        lab.node("lb1").unwrap(),
        "127.0.0.1:2525".parse().unwrap(),
    )
    .unwrap();
    let seen = dir.join("quorum");
    let script = |name: &str, body: &str| {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        p
    };
    let up = script("up.sh", &format!("echo up >> {}", seen.display()));
    let down = script("down.sh", &format!("echo down >> {}", seen.display()));
    let fifo_out = dir.join("fifo.out");
    let reader = script(
        "reader.sh",
        &format!("exec cat \"$1\" >> {}", fifo_out.display()),
    );
    let conf = dir.join("quorum.conf");
    std::fs::write(
        &conf,
        format!(
            "global_defs {{\n router_id lb1\n notification_email {{\n ops@example.com\n }}\n notification_email_from lb1@example.com\n smtp_server 127.0.0.1 2525\n smtp_connect_timeout 5\n lvs_notify_fifo {}\n lvs_notify_fifo_script {}\n}}\nvirtual_server 198.51.100.250 80 {{\n delay_loop 1\n quorum 2\n quorum_up {}\n quorum_down {}\n sorry_server 198.51.100.60 80\n smtp_alert\n omega\n real_server 198.51.100.50 80 {{\n TCP_CHECK {{\n connect_timeout 1\n retry 0\n }}\n }}\n real_server 198.51.100.51 80 {{\n TCP_CHECK {{\n connect_timeout 1\n retry 0\n }}\n }}\n}}\n",
            dir.join("lvs.fifo").display(),
            reader.display(),
            up.display(),
            down.display()
        ),
    )
    .unwrap();
    let (daemon, control) = checker(&lab, &dir, &conf);
    let vs = |s: &serde_json::Value, key: &str| s["virtual_servers"][0][key].clone();
    wait_status(
        &control,
        &dir,
        "quorum up",
        |s| vs(s, "quorum_up") == true && vs(s, "sorry_server_active") == false,
        Duration::from_secs(3),
    );
    std::thread::sleep(Duration::from_secs(2));
    // One of two servers down: weight 1 < quorum 2, the sorry server steps in.
    web2.stop();
    let took = wait_status(
        &control,
        &dir,
        "quorum lost",
        |s| vs(s, "quorum_up") == false && vs(s, "sorry_server_active") == true,
        Duration::from_secs(4),
    );
    eprintln!("quorum lost {took:?} after a real server stopped");
    assert_eq!(
        status(&control).unwrap()["virtual_servers"][0]["sorry_server"],
        "[198.51.100.60]:tcp:80"
    );
    let _web2 = WebServer::start(lab.node("web2").unwrap(), addr(51), "this is cc web!").unwrap();
    wait_status(
        &control,
        &dir,
        "quorum back",
        |s| vs(s, "quorum_up") == true && vs(s, "sorry_server_active") == false,
        Duration::from_secs(4),
    );
    // The scripts, FIFO lines and mails have their own threads: give them
    // a moment.
    let start = Instant::now();
    while sink.mails().len() < 4 && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = std::fs::read_to_string(dir.join("rs.log")).unwrap_or_default();
    assert_eq!(
        std::fs::read_to_string(&seen).unwrap_or_default(),
        "down\nup\n",
        "quorum_down then quorum_up\n{log}"
    );
    assert!(
        log.contains("Lost quorum 2-0=2 > 1 for VS [198.51.100.250]:tcp:80"),
        "{log}"
    );
    assert!(
        log.contains("Adding sorry server [198.51.100.60]:tcp:80"),
        "{log}"
    );
    assert!(log.contains("Gained quorum 2+0=2 <= 2"), "{log}");
    assert_eq!(
        std::fs::read_to_string(&fifo_out).unwrap_or_default(),
        "RS [198.51.100.51]:tcp:80 [198.51.100.250]:tcp:80 DOWN\nVS [198.51.100.250]:tcp:80 DOWN\nRS [198.51.100.51]:tcp:80 [198.51.100.250]:tcp:80 UP\nVS [198.51.100.250]:tcp:80 UP\n"
    );
    let mails = sink.mails();
    // Headers unfolded (a long subject is folded onto two lines).
    let unfolded: Vec<String> = mails.iter().map(|m| m.replace("\r\n ", " ")).collect();
    let subjects: Vec<&str> = unfolded
        .iter()
        .filter_map(|m| m.lines().find(|l| l.starts_with("Subject: ")))
        .collect();
    assert_eq!(
        subjects,
        [
            "Subject: [lb1] Realserver [198.51.100.51]:tcp:80 of virtual server [198.51.100.250]:tcp:80 - DOWN",
            "Subject: [lb1] Virtualserver [198.51.100.250]:tcp:80 - DOWN",
            "Subject: [lb1] Realserver [198.51.100.51]:tcp:80 of virtual server [198.51.100.250]:tcp:80 - UP",
            "Subject: [lb1] Virtualserver [198.51.100.250]:tcp:80 - UP",
        ],
        "{mails:?}"
    );
    assert!(
        unfolded[1].contains("=> Lost quorum 2+0=2 <= 1 <="),
        "{mails:?}"
    );
    // omega: stopping runs the down notifications of the live servers and
    // of the quorum.
    stop_daemon(daemon, &dir);
    assert_eq!(
        std::fs::read_to_string(&seen).unwrap_or_default(),
        "down\nup\ndown\n",
        "quorum_down at shutdown (omega)"
    );
    let fifo = std::fs::read_to_string(&fifo_out).unwrap_or_default();
    assert!(
        fifo.ends_with("RS [198.51.100.50]:tcp:80 [198.51.100.250]:tcp:80 DOWN\nRS [198.51.100.51]:tcp:80 [198.51.100.250]:tcp:80 DOWN\nVS [198.51.100.250]:tcp:80 DOWN\n"),
        "{fifo}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Why a real server is down reaches `status --json` (`reason`) and the
/// log, for each kind of failure: connect timeout, refused, an HTTP status,
/// a digest, TLS, DNS, a script's exit.
#[test]
#[allow(clippy::too_many_lines)]
fn every_failure_says_why_in_status_and_the_log() {
    if !netlab::privileged("every_failure_says_why_in_status_and_the_log") {
        return;
    }
    let lab = Lab::star(&[
        ("lb1", &["198.51.100.22/24"]),
        ("web1", &["198.51.100.50/24"]),
    ])
    .unwrap();
    let dir = std::env::temp_dir().join(format!("{}why", lab.prefix()));
    std::fs::create_dir_all(&dir).unwrap();
    let web1 = lab.node("web1").unwrap();
    let plain =
        WebServer::start(web1, "198.51.100.50:80".parse().unwrap(), "this is yy web!").unwrap();
    let busy = WebServer::start(web1, "198.51.100.50:8503".parse().unwrap(), "busy").unwrap();
    busy.set_status(503);
    let dns = netlab::dns::DnsServer::start(web1, "198.51.100.50:53".parse().unwrap()).unwrap();
    dns.set_rcode(2);
    // Not TLS: whatever connects gets an HTTP error at once.
    let not_tls = web1
        .run(|| std::net::TcpListener::bind("198.51.100.50:8443"))
        .unwrap()
        .unwrap();
    std::thread::spawn(move || {
        for mut c in not_tls.incoming().flatten() {
            let _ = std::io::Write::write_all(&mut c, b"HTTP/1.0 400 Bad Request\r\n\r\n");
        }
    });
    let script = dir.join("exit2.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 2\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let timing = " connect_timeout 1\n retry 0\n delay_before_retry 1\n";
    let rs = |addr: &str, port: u16, check: &str| {
        format!(" real_server {addr} {port} {{\n weight 1\n{check} }}\n")
    };
    let servers = [
        // Nobody at .77: the connect never completes.
        rs("198.51.100.77", 80, &format!(" TCP_CHECK {{\n{timing} }}\n")),
        // Nothing listens on :81.
        rs("198.51.100.50", 81, &format!(" TCP_CHECK {{\n{timing} }}\n")),
        rs(
            "198.51.100.50",
            8503,
            &format!(" HTTP_GET {{\n url {{\n path /\n }}\n{timing} }}\n"),
        ),
        rs(
            "198.51.100.50",
            80,
            &format!(" HTTP_GET {{\n url {{\n path /\n digest 00000000000000000000000000000000\n }}\n{timing} }}\n"),
        ),
        // A plain HTTP server answering a TLS handshake.
        rs(
            "198.51.100.50",
            8443,
            &format!(" SSL_GET {{\n url {{\n path /\n }}\n{timing} }}\n"),
        ),
        rs(
            "198.51.100.50",
            53,
            &format!(" DNS_CHECK {{\n type A\n name web1.example\n{timing} }}\n"),
        ),
        rs(
            "198.51.100.50",
            9,
            &format!(
                " MISC_CHECK {{\n misc_path {}\n misc_timeout 2\n retry 0\n delay_before_retry 1\n }}\n",
                script.display()
            ),
        ),
    ]
    .concat();
    let conf = dir.join("why.conf");
    std::fs::write(
        &conf,
        format!("virtual_server 198.51.100.250 80 {{\n delay_loop 1\n lb_algo rr\n lb_kind DR\n protocol TCP\n{servers}}}\n"),
    )
    .unwrap();
    let (daemon, control) = checker(&lab, &dir, &conf);
    let want = [
        "TCP_CHECK: connect timeout after 1.0 s",
        "TCP_CHECK: connection refused",
        "HTTP_GET: HTTP 503, expected 200-299",
        "HTTP_GET: digest mismatch",
        "SSL_GET: TLS: ",
        "DNS_CHECK: DNS SERVFAIL",
        "MISC_CHECK: script exit 2",
    ];
    let reasons = |s: &serde_json::Value| -> Vec<String> {
        s["virtual_servers"][0]["real_servers"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|r| r["reason"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    wait_status(
        &control,
        &dir,
        "every server down with its reason",
        |s| {
            let got = reasons(s);
            got.len() == want.len() && got.iter().zip(want).all(|(g, w)| g.starts_with(w))
        },
        Duration::from_secs(15),
    );
    let shown = status(&control).map(|s| reasons(&s)).unwrap_or_default();
    eprintln!("reasons in status --json:\n  {}", shown.join("\n  "));
    // Each with its kind, the metric's label.
    let kinds: Vec<String> = status(&control)
        .and_then(|s| {
            s["virtual_servers"][0]["real_servers"].as_array().map(|a| {
                a.iter()
                    .map(|r| r["reason_kind"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
        })
        .unwrap_or_default();
    assert_eq!(
        kinds,
        [
            "connect_timeout",
            "refused",
            "http_status",
            "digest",
            "tls",
            "dns",
            "script_exit"
        ],
        "{shown:?}"
    );
    let log = std::fs::read_to_string(dir.join("rs.log")).unwrap_or_default();
    for (addr, line) in [
        (
            "[198.51.100.77]:tcp:80",
            "TCP_CHECK of [198.51.100.77]:tcp:80 failed: connect timeout after 1.0 s",
        ),
        (
            "[198.51.100.50]:tcp:81",
            "TCP_CHECK of [198.51.100.50]:tcp:81 failed: connection refused",
        ),
        (
            "[198.51.100.50]:tcp:8503",
            "HTTP_GET of [198.51.100.50]:tcp:8503 failed: HTTP 503, expected 200-299",
        ),
        (
            "[198.51.100.50]:tcp:80",
            "HTTP_GET of [198.51.100.50]:tcp:80 failed: digest mismatch",
        ),
        (
            "[198.51.100.50]:tcp:8443",
            "SSL_GET of [198.51.100.50]:tcp:8443 failed: TLS: ",
        ),
        (
            "[198.51.100.50]:tcp:53",
            "DNS_CHECK of [198.51.100.50]:tcp:53 failed: DNS SERVFAIL",
        ),
        (
            "[198.51.100.50]:tcp:9",
            "MISC_CHECK of [198.51.100.50]:tcp:9 failed: script exit 2",
        ),
    ] {
        assert!(log.contains(line), "{addr}: no `{line}` in the log:\n{log}");
    }
    // A server that comes back: its reason goes.
    busy.set_status(200);
    wait_status(
        &control,
        &dir,
        "the 503 server healthy again, without a reason",
        |s| {
            let r = &s["virtual_servers"][0]["real_servers"][2];
            r["healthy"].as_bool() == Some(true) && r.get("reason").is_none()
        },
        Duration::from_secs(6),
    );
    stop_daemon(daemon, &dir);
    drop((plain, busy, dns));
    let _ = std::fs::remove_dir_all(&dir);
}
