//! Why each VRRP instance is in its state, in `status --json` (`reason`)
//! and in the log at each transition: a BACKUP names the master and both
//! priorities, a MASTER says no higher priority is heard, a FAULT names
//! the failing tracker (a script, an interface).
//!
//! ```text
//!   c0 ──sw0── eth0 [lb] eth1 (down)
//!   198.51.100.99 sends adverts at priority 150 for VRID 51
//! ```

#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use netlab::Lab;

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_keepalived-rs");

/// VRRPv2 adverts for VRID 51 at priority 150 from `c0`, once a second.
fn forged_master(c0: &netlab::Node, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let (socket, to) = c0.run(common::advert_socket).unwrap().unwrap();
    std::thread::spawn(move || {
        let p = common::forged_advert(51, 150, &["198.51.100.250"]);
        while !stop.load(Ordering::Relaxed) {
            let _ = socket.send_to(&p, &to);
            std::thread::sleep(Duration::from_millis(500));
        }
    })
}

#[test]
#[allow(clippy::too_many_lines)]
fn every_instance_says_why_it_is_in_its_state() {
    if !netlab::privileged("every_instance_says_why_it_is_in_its_state") {
        return;
    }
    let mut lab = Lab::new().unwrap();
    let sw0 = lab.add_switch("sw0").unwrap();
    let sw1 = lab.add_switch("sw1").unwrap();
    let lb = lab.add_node("lb").unwrap();
    let c0 = lab.add_node("c0").unwrap();
    lab.connect(&lb, &sw0, "eth0", &["198.51.100.22/24"])
        .unwrap();
    lab.connect(&lb, &sw1, "eth1", &["203.0.113.22/24"])
        .unwrap();
    lab.connect(&c0, &sw0, "eth0", &["198.51.100.99/24"])
        .unwrap();
    lb.exec(&["ip", "link", "set", "eth1", "down"]).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let forger = forged_master(&c0, stop.clone());
    let dir = std::env::temp_dir().join(format!("{}why", lab.prefix()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("why.conf");
    let inst = |name: &str, vrid: u8, vip: &str, extra: &str| {
        format!("vrrp_instance {name} {{\n interface eth0\n virtual_router_id {vrid}\n priority 100\n advert_int 1\n virtual_ipaddress {{\n {vip}\n }}\n{extra}}}\n")
    };
    std::fs::write(
        &conf,
        [
            "vrrp_script chk {\n script \"/bin/false\"\n interval 1\n fall 1\n rise 1\n}\n"
                .to_owned(),
            inst("VI_B", 51, "198.51.100.250", ""),
            inst("VI_M", 52, "198.51.100.251", ""),
            inst("VI_S", 53, "198.51.100.252", " track_script {\n chk\n }\n"),
            inst(
                "VI_I",
                54,
                "198.51.100.253",
                " track_interface {\n eth1\n }\n",
            ),
        ]
        .concat(),
    )
    .unwrap();
    let control = dir.join("c.sock");
    let mut cmd = Command::new(BIN);
    cmd.args(["-n", "-l", "-P", "-f"])
        .arg(&conf)
        .arg("--control")
        .arg(&control);
    let log_path = dir.join("lb.log");
    let daemon = lb
        .spawn_logged(&cmd, Some(std::fs::File::create(&log_path).unwrap()))
        .unwrap();
    let want = [
        (
            "VI_B",
            "BACKUP: master 198.51.100.99 priority 150 > ours 100",
        ),
        ("VI_M", "MASTER: no higher priority heard (ours 100)"),
        ("VI_S", "FAULT: track_script chk failed"),
        ("VI_I", "FAULT: interface eth1 down"),
    ];
    let reasons = || -> Vec<(String, String)> {
        let out = Command::new(BIN)
            .args(["status", "--json", "--control"])
            .arg(&control)
            .output()
            .ok();
        let v: serde_json::Value = out
            .and_then(|o| serde_json::from_slice(&o.stdout).ok())
            .unwrap_or_default();
        v["vrrp"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|i| {
                        (
                            i["name"].as_str().unwrap_or_default().to_owned(),
                            i["reason"].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let start = Instant::now();
    let got = loop {
        let got = reasons();
        if want
            .iter()
            .all(|(n, r)| got.iter().any(|(gn, gr)| gn == n && gr == r))
        {
            break got;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "reasons: {got:?}\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!("reasons in status --json: {got:?}");
    stop.store(true, Ordering::Relaxed);
    let _ = forger.join();
    drop(daemon);
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    // At each transition the log says why (VI_B entered BACKUP before
    // the master was first heard: it says so).
    for line in [
        "(VI_B) BACKUP: no master heard yet; waiting for the master down timer",
        "(VI_M) MASTER: no higher priority heard (ours 100)",
        "(VI_S) FAULT: track_script chk failed",
        "(VI_I) FAULT: interface eth1 down",
    ] {
        assert!(log.contains(line), "no `{line}` in the log:\n{log}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
