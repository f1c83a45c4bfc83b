//! Regenerates `tests/data/*.pcap`: adverts from the real keepalived (Debian's
//! 2.2.7), captured with tcpdump in network namespaces. Not a test: run it by
//! hand when the data should change (root, keepalived and tcpdump needed):
//!
//! ```sh
//! cargo test -p vrrp --test capture -- --ignored --nocapture
//! ```

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use netlab::Lab;

struct Case {
    name: &'static str,
    /// The vrrp_instance body.
    body: &'static str,
    /// Stop keepalived gracefully before the capture ends (priority 0 advert).
    stop: bool,
}

const CASES: &[Case] = &[
    Case {
        name: "keepalived-2.2.7-v2-ipv4-pass",
        body: "state MASTER\n interface eth0\n virtual_router_id 51\n priority 100\n advert_int 1\n authentication {\n auth_type PASS\n auth_pass 1111\n }\n virtual_ipaddress {\n 198.51.100.250/24\n }\n",
        stop: true,
    },
    Case {
        name: "keepalived-2.2.7-v2-ipv4-two-vips",
        body: "state MASTER\n interface eth0\n virtual_router_id 52\n priority 150\n advert_int 1\n virtual_ipaddress {\n 198.51.100.250/24\n 198.51.100.251/24\n }\n",
        stop: false,
    },
    Case {
        name: "keepalived-2.2.7-v3-ipv4",
        body: "state MASTER\n version 3\n interface eth0\n virtual_router_id 53\n priority 120\n advert_int 0.5\n virtual_ipaddress {\n 198.51.100.250/24\n }\n",
        stop: true,
    },
    Case {
        name: "keepalived-2.2.7-v3-ipv6",
        body: "state MASTER\n version 3\n interface eth0\n virtual_router_id 54\n priority 110\n advert_int 0.25\n virtual_ipaddress {\n 2001:db8:100::250/64\n }\n",
        stop: true,
    },
    Case {
        name: "keepalived-2.2.7-v2-unicast",
        body: "state MASTER\n interface eth0\n virtual_router_id 55\n priority 100\n advert_int 1\n unicast_src_ip 198.51.100.22\n unicast_peer {\n 198.51.100.40\n }\n virtual_ipaddress {\n 198.51.100.250/24\n }\n",
        stop: false,
    },
];

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

#[test]
#[ignore = "regenerates test data from the real keepalived; run by hand"]
fn capture_keepalived_adverts() {
    assert!(netlab::privileged("capture_keepalived_adverts"));
    for case in CASES {
        capture(case);
    }
}

fn capture(case: &Case) {
    let lab = Lab::star(&[
        ("lb1", &["198.51.100.22/24", "2001:db8:100::22/64"]),
        ("lb2", &["198.51.100.40/24", "2001:db8:100::40/64"]),
    ])
    .unwrap();
    let (lb1, lb2) = (lab.node("lb1").unwrap(), lab.node("lb2").unwrap());
    let work =
        std::env::temp_dir().join(format!("krs-capture-{}-{}", std::process::id(), case.name));
    std::fs::create_dir_all(&work).unwrap();
    let conf = work.join("keepalived.conf");
    std::fs::write(
        &conf,
        format!(
            "global_defs {{\n router_id CAPTURE\n}}\nvrrp_instance VI_1 {{\n {}}}\n",
            case.body
        ),
    )
    .unwrap();
    let pcap = work.join("out.pcap");
    let mut dump = Command::new("tcpdump");
    dump.args(["-i", "eth0", "-U", "-w"])
        .arg(&pcap)
        .arg("ip proto 112 or ip6 proto 112");
    let mut tcpdump = lb2.spawn_logged(&dump, None).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let mut ka = Command::new("keepalived");
    ka.args(["-n", "-l", "-P", "-f"]).arg(&conf);
    for (flag, file) in [("-p", "k.pid"), ("-r", "v.pid"), ("-c", "c.pid")] {
        ka.arg(flag).arg(work.join(file));
    }
    let mut keepalived = lb1.spawn_logged(&ka, None).unwrap();
    std::thread::sleep(Duration::from_secs(7));
    if case.stop {
        keepalived
            .signal(nix::sys::signal::Signal::SIGTERM)
            .unwrap();
        keepalived.wait_timeout(Duration::from_secs(5)).unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }
    tcpdump.signal(nix::sys::signal::Signal::SIGINT).unwrap();
    tcpdump.wait_timeout(Duration::from_secs(5)).unwrap();
    let out = data_dir().join(format!("{}.pcap", case.name));
    std::fs::copy(&pcap, &out).unwrap();
    println!(
        "{}: {} bytes",
        out.display(),
        std::fs::metadata(&out).unwrap().len()
    );
    drop(keepalived);
    std::fs::remove_dir_all(&work).unwrap();
}
