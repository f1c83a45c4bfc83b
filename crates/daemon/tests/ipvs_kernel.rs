//! IPVS in the kernel, where the kernel has it: `lb_dataplane ipvs` puts
//! the virtual server and its healthy real servers into the kernel's IPVS
//! table over generic netlink (as `/proc/net/ip_vs` shows), and takes them
//! out when the daemon stops. The one test allowed to skip even under CI
//! (DESIGN.md): this kernel has no IPVS, and no test can give it one.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

#[test]
fn ipvs_carries_a_virtual_server_over_generic_netlink() {
    if !std::path::Path::new("/proc/net/ip_vs").exists() {
        eprintln!(
            "SKIPPED: this kernel has no IPVS (/proc/net/ip_vs is absent), so the IPVS data plane cannot be exercised here"
        );
        return;
    }
    if !netlab::privileged("ipvs_carries_a_virtual_server_over_generic_netlink") {
        return;
    }
    let lab = netlab::Lab::star(&[
        ("lb1", &["198.51.100.22/24"]),
        ("web1", &["198.51.100.50/24"]),
    ])
    .unwrap();
    let _web = netlab::http::WebServer::start(
        lab.node("web1").unwrap(),
        "198.51.100.50:80".parse().unwrap(),
        "this is yy web!",
    )
    .unwrap();
    let dir = std::env::temp_dir().join(format!("{}ipvs", lab.prefix()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("ipvs.conf");
    std::fs::write(
        &conf,
        "virtual_server 198.51.100.250 80 {\n delay_loop 1\n lb_algo rr\n lb_kind DR\n lb_dataplane ipvs\n real_server 198.51.100.50 80 {\n TCP_CHECK {\n connect_timeout 1\n }\n }\n}\n",
    )
    .unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_keepalived-rs"));
    cmd.args(["-n", "-l", "-C", "-f"])
        .arg(&conf)
        .arg("--control")
        .arg(dir.join("c.sock"));
    let mut daemon = lab.node("lb1").unwrap().spawn_logged(&cmd, None).unwrap();
    let table = || {
        let out = lab
            .node("lb1")
            .unwrap()
            .exec(&["cat", "/proc/net/ip_vs"])
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // 198.51.100.250:80 is C63364FA:0050; 198.51.100.50:80 is C6336432:0050.
    let start = Instant::now();
    while !(table().contains("C63364FA:0050 rr") && table().contains("C6336432:0050 Route")) {
        assert!(start.elapsed() < Duration::from_secs(5), "{}", table());
        std::thread::sleep(Duration::from_millis(50));
    }
    daemon.signal(nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(daemon
        .wait_timeout(Duration::from_secs(5))
        .unwrap()
        .success());
    assert!(!table().contains("C63364FA"), "{}", table());
    let _ = std::fs::remove_dir_all(&dir);
}
