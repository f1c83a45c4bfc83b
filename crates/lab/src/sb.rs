//! `keepalived-rs lab split-brain`: the seed article's last experiment —
//! the link between the balancers breaks and both take the VIP — run with
//! the split-brain guard. lb1 and lb2 also share a heartbeat link (sw1,
//! 203.0.113.0/24); the gateway (.1) is the witness. The steps: VRRP lost
//! on the main link (heard over the heartbeat link: one master), lb1 cut
//! off from both switches with its carrier up (it gives the VIP up, lb2
//! takes it), everything healed (one master again), with times in ms.

use std::net::IpAddr;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use netlab::Lab;

use crate::{check_interrupt, v4, Timeline, VIP_OCTET};

/// The heartbeat link's addresses: lb1 .22, lb2 .40 (as on the main one).
fn hb(octet: u8) -> IpAddr {
    IpAddr::from([203, 0, 113, octet])
}

/// Adds the heartbeat switch and plugs lb1 and lb2 into it as eth1.
pub fn wire(lab: &mut Lab) -> Result<()> {
    let sw1 = lab.add_switch("sw1")?;
    for (name, octet) in [("lb1", 22), ("lb2", 40)] {
        let node = lab.node(name)?.clone();
        lab.connect(&node, &sw1, "eth1", &[&format!("{}/24", hb(octet))])?;
    }
    Ok(())
}

fn config(router: &str, priority: u8, peer: IpAddr) -> String {
    let vip = v4(VIP_OCTET);
    format!(
        "global_defs {{\n router_id {router}\n}}\n\
         vrrp_instance VI_1 {{\n state BACKUP\n interface eth0\n virtual_router_id 51\n version 3\n \
         priority {priority}\n advert_int 0.2\n virtual_ipaddress {{\n  {vip}/24\n }}\n \
         split_brain_guard {{\n  heartbeat_path eth1 {peer}\n  witness {}\n }}\n}}\n",
        v4(1)
    )
}

fn holders(lab: &Lab) -> Vec<&'static str> {
    ["lb1", "lb2"]
        .into_iter()
        .filter(|n| {
            lab.node(n)
                .ok()
                .and_then(|node| node.has_address(v4(VIP_OCTET)).ok())
                .unwrap_or(false)
        })
        .collect()
}

fn show(v: &[&str]) -> String {
    if v.is_empty() {
        "nobody".into()
    } else {
        v.join(" and ")
    }
}

/// Waits until exactly `who` holds the VIP; how long it took.
fn settle(lab: &Lab, who: &str, within: Duration, stop: &AtomicBool) -> Result<Duration> {
    let start = Instant::now();
    while start.elapsed() < within {
        check_interrupt(stop)?;
        if holders(lab) == [who] {
            return Ok(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    bail!(
        "after {within:?} the VIP is on {}, not on {who} alone",
        show(&holders(lab))
    )
}

/// Drops (or stops dropping) VRRP arriving on eth0 in both directors.
fn drop_vrrp_on_eth0(lab: &Lab, drop: bool) -> Result<()> {
    for n in ["lb1", "lb2"] {
        let node = lab.node(n)?;
        let out = if drop {
            node.exec(&["nft", "add", "table", "inet", "krs_lab_sb"])?;
            node.exec(&[
                "nft",
                "add chain inet krs_lab_sb input { type filter hook input priority 0 ; policy accept ; }",
            ])?;
            node.exec(&[
                "nft",
                "add rule inet krs_lab_sb input iifname eth0 ip protocol vrrp drop",
            ])?
        } else {
            node.exec(&["nft", "delete", "table", "inet", "krs_lab_sb"])?
        };
        if !out.status.success() {
            bail!(
                "nft in {n}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    Ok(())
}

pub fn run(lab: &Lab, stop: &AtomicBool, timeline: &Timeline) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("{}lab", lab.prefix()));
    std::fs::create_dir_all(&dir)?;
    let daemons = crate::dr::start_directors(
        lab,
        &dir,
        &[
            ("lb1", config("LVS_01", 100, hb(40))),
            ("lb2", config("LVS_02", 90, hb(22))),
        ],
    )?;
    timeline.say(
        "keepalived-rs on lb1 (priority 100) and lb2 (90), VRRPv3 every 200 ms, a heartbeat link \
         sw1 (203.0.113.0/24) and the gateway 198.51.100.1 as witness",
    );
    let outcome = steps(lab, stop, timeline);
    crate::dr::stop_directors(daemons, &dir, outcome.is_err());
    outcome
}

fn steps(lab: &Lab, stop: &AtomicBool, timeline: &Timeline) -> Result<()> {
    let t = settle(lab, "lb1", Duration::from_secs(10), stop)?;
    timeline.say(&format!(
        "lb1 holds the VIP alone ({} ms after start)",
        t.as_millis()
    ));
    // The seed's split brain: the balancers stop hearing each other on
    // the main link.
    drop_vrrp_on_eth0(lab, true)?;
    timeline.say("VRRP dropped on the main link in both directors (nftables)");
    std::thread::sleep(Duration::from_secs(3));
    let h = holders(lab);
    timeline.say(&format!(
        "3 s later the VIP is on {} (keepalived without a second path: on both)",
        show(&h)
    ));
    if h != ["lb1"] {
        bail!("two masters or none with the heartbeat path up");
    }
    drop_vrrp_on_eth0(lab, false)?;
    timeline.say("main link healed");
    // lb1 cut off from both switches, its carrier up.
    let links = [
        lab.link("lb1", "eth0")?.clone(),
        lab.link("lb1", "eth1")?.clone(),
    ];
    for l in &links {
        lab.cut(l)?;
    }
    timeline.say("lb1 cut off from both switches (carrier up)");
    let took = settle(lab, "lb2", Duration::from_secs(5), stop)?;
    timeline.say(&format!(
        "lb1 reached no witness and gave the VIP up; lb2 alone holds it {} ms after the cut \
         (keepalived: both would)",
        took.as_millis()
    ));
    for l in &links {
        lab.restore(l)?;
    }
    timeline.say("lb1 plugged back in");
    let healed = settle(lab, "lb1", Duration::from_secs(5), stop)?;
    timeline.say(&format!(
        "one master again: lb1 (higher priority) holds the VIP alone {} ms later",
        healed.as_millis()
    ));
    Ok(())
}
