//! `keepalived-rs lab`: the seed article's experiments, on one machine, in
//! network namespaces (README.md, "The lab").
//!
//! The seed's 192.168.88.0/24 moves to TEST-NET-2 (198.51.100.0/24) and its IPv6
//! twin 2001:db8:100::/64: `gw` .1, `lb1` .22 (MASTER), `lb2` .40 (BACKUP),
//! `web1` .50, `web2` .51, `client` .100, VIP .250, all on one switch. Everything
//! is torn down when the run ends, fails, or is interrupted with Ctrl-C.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use netlab::{http, Lab};

mod dr;
mod sb;

use clap::ValueEnum;

/// One host of the seed's lab.
struct Host {
    name: &'static str,
    role: &'static str,
    /// Last octet in 198.51.100.0/24 and last group in 2001:db8:100::/64.
    octet: u8,
}

const HOSTS: &[Host] = &[
    Host {
        name: "gw",
        role: "gateway",
        octet: 1,
    },
    Host {
        name: "lb1",
        role: "load balancer, MASTER",
        octet: 22,
    },
    Host {
        name: "lb2",
        role: "load balancer, BACKUP",
        octet: 40,
    },
    Host {
        name: "web1",
        role: "real server \"this is yy web!\"",
        octet: 50,
    },
    Host {
        name: "web2",
        role: "real server \"this is cc web!\"",
        octet: 51,
    },
    Host {
        name: "client",
        role: "client",
        octet: 100,
    },
];

/// The VIP's last octet (198.51.100.250).
pub const VIP_OCTET: u8 = 250;
const WEBS: &[(&str, &str)] = &[("web1", "this is yy web!"), ("web2", "this is cc web!")];

pub(crate) fn v4(octet: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 51, 100, octet))
}

/// The IPv6 twin of `v4(octet)`: the octet's decimal digits read as hex, so
/// .22 is 2001:db8:100::22 and the VIP .250 is 2001:db8:100::250.
fn v6(octet: u8) -> IpAddr {
    let group = u16::from_str_radix(&octet.to_string(), 16).unwrap_or(u16::from(octet));
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, group))
}

fn octet_of(name: &str) -> Result<u8> {
    HOSTS
        .iter()
        .find(|h| h.name == name)
        .map(|h| h.octet)
        .with_context(|| format!("no host {name} in the address plan"))
}

/// Prints lines with the time since the run started.
pub(crate) struct Timeline {
    start: Instant,
}

impl Timeline {
    pub(crate) fn say(&self, what: &str) {
        println!(
            "[{:>7.1} ms] {what}",
            self.start.elapsed().as_secs_f64() * 1000.0
        );
    }
}

/// How `lab lvs-dr` runs: its data plane and who directs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// `None`: the daemon's default (IPVS where the kernel has it).
    pub dataplane: Option<LabPlane>,
    /// The director that runs keepalived instead of keepalived-rs.
    pub keepalived: Option<Director>,
}

/// The modules `lab lvs-dr --dataplane ipvs` loads in its VM.
const VM_MODULES: &[&str] = &["ip_vs", "ip_vs_rr"];

/// Whether this kernel carries IPVS (loading its module if it can).
fn kernel_has_ipvs() -> bool {
    let proc = std::path::Path::new("/proc/net/ip_vs");
    if !proc.exists() {
        let _ = std::process::Command::new("modprobe")
            .arg("ip_vs")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
    proc.exists()
}

fn check_options(scenario: Scenario, opts: Options) -> Result<()> {
    if scenario != Scenario::LvsDr && (opts.dataplane.is_some() || opts.keepalived.is_some()) {
        bail!("--dataplane and --keepalived apply to `lab lvs-dr` only");
    }
    if opts.keepalived.is_some() && opts.dataplane != Some(LabPlane::Ipvs) {
        bail!("--keepalived needs --dataplane ipvs: keepalived has no nftables data plane");
    }
    Ok(())
}

/// Runs this same command in a VM with Debian's kernel (it has IPVS),
/// printing what it prints; its exit code.
fn in_vm(stop: &AtomicBool) -> Result<u8> {
    let kernel = netlab::vm::kernel()
        .map_err(|why| anyhow::anyhow!("this kernel has no IPVS and a VM cannot boot: {why}"))?;
    let exe = std::env::current_exe().context("own executable")?;
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let exe = exe
        .to_str()
        .context("this executable's path is not UTF-8; the VM's shell cannot run it")?;
    let mut script = quote(exe);
    for arg in std::env::args_os().skip(1) {
        let arg = arg
            .to_str()
            .context("an argument is not UTF-8; the VM's shell cannot pass it")?;
        script.push(' ');
        script.push_str(&quote(arg));
    }
    println!(
        "keepalived-rs lab: this kernel has no IPVS; booting {} under qemu (TCG, ~30 s) and running there",
        kernel.version
    );
    let vm = netlab::vm::Vm::boot(&kernel, VM_MODULES, &[], &script)
        .with_context(|| format!("booting {}", kernel.image.display()))?;
    let done = match vm.follow(Duration::from_secs(20 * 60), stop, &mut std::io::stdout()) {
        Ok(done) => done,
        Err(_) if stop.load(Ordering::Relaxed) => {
            println!("interrupted; the VM is stopped");
            return Ok(130);
        }
        Err(e) => return Err(e).context("the VM did not finish"),
    };
    let Some(code) = done.status else {
        println!(
            "keepalived-rs lab: the VM died; its console:\n{}",
            done.console
        );
        return Ok(1);
    };
    println!(
        "keepalived-rs lab: the VM ran for {:.0} s",
        done.took.as_secs_f64()
    );
    Ok(u8::try_from(code).unwrap_or(1))
}

/// Runs one scenario; returns the process exit code (0 ok, 1 failed, 130 interrupted).
pub fn run(scenario: Scenario, hold: Duration, opts: Options) -> Result<u8> {
    check_options(scenario, opts)?;
    if let Some(why) = netlab::missing() {
        bail!("the lab builds network namespaces, and {why}");
    }
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).context("install signal handler")?;
    }
    if opts.dataplane == Some(LabPlane::Ipvs) && !kernel_has_ipvs() {
        if netlab::vm::inside() {
            bail!("the VM's kernel has no IPVS (modprobe ip_vs failed)");
        }
        return in_vm(&stop);
    }
    if opts.keepalived.is_some() && !crate::dr::keepalived_installed() {
        bail!("--keepalived runs the distribution's keepalived, which is not installed (apt install keepalived)");
    }
    let timeline = Timeline {
        start: Instant::now(),
    };
    println!("keepalived-rs lab: scenario {scenario}");
    let outcome = build(&timeline, scenario).and_then(|lab| {
        let prefix = lab.prefix().to_owned();
        let outcome = experiment(&lab, scenario, hold, opts, &stop, &timeline);
        timeline.say("tearing down");
        drop(lab);
        let left = netlab::cmd::list_namespaces()?
            .into_iter()
            .filter(|n| n.starts_with(&prefix))
            .count();
        if left == 0 {
            timeline.say("all namespaces removed");
        } else {
            timeline.say(&format!("{left} namespaces could not be removed"));
        }
        outcome
    });
    match outcome {
        Ok(()) => Ok(0),
        Err(e) if stop.load(Ordering::Relaxed) => {
            println!("interrupted ({e:#}); cleaned up");
            Ok(130)
        }
        Err(e) => {
            println!("lab failed: {e:#}");
            Ok(1)
        }
    }
}

fn build(timeline: &Timeline, scenario: Scenario) -> Result<Lab> {
    let mut lab = Lab::new()?;
    let switch = lab.add_switch("sw0")?;
    for host in HOSTS {
        let node = lab.add_node(host.name)?;
        let a4 = format!("{}/24", v4(host.octet));
        let a6 = format!("{}/64", v6(host.octet));
        lab.connect(&node, &switch, "eth0", &[&a4, &a6])?;
    }
    if scenario == Scenario::SplitBrain {
        crate::sb::wire(&mut lab)?;
        timeline.say("lb1 and lb2 also on a heartbeat switch sw1 (eth1, 203.0.113.22 and .40)");
    }
    timeline.say(&format!(
        "built {} hosts on switch sw0 (namespaces {}*)",
        HOSTS.len(),
        lab.prefix()
    ));
    println!();
    println!("  {:<7} {:<16} {:<20} role", "host", "IPv4", "IPv6");
    for host in HOSTS {
        println!(
            "  {:<7} {:<16} {:<20} {}",
            host.name,
            v4(host.octet).to_string(),
            v6(host.octet).to_string(),
            host.role
        );
    }
    println!(
        "  {:<7} {:<16} {:<20} virtual IP",
        "VIP",
        v4(VIP_OCTET).to_string(),
        v6(VIP_OCTET).to_string()
    );
    println!();
    Ok(lab)
}

fn experiment(
    lab: &Lab,
    scenario: Scenario,
    hold: Duration,
    opts: Options,
    stop: &AtomicBool,
    timeline: &Timeline,
) -> Result<()> {
    let mut servers = Vec::new();
    let mut direct = Vec::new();
    for (name, body) in WEBS {
        let node = lab.node(name)?;
        let octet = octet_of(name)?;
        // IPv4 on every address: the real address and, in LVS-DR, the VIP
        // on `lo`.
        servers.push(http::WebServer::start(
            node,
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 80),
            body,
        )?);
        servers.push(http::WebServer::start(
            node,
            SocketAddr::new(v6(octet), 80),
            body,
        )?);
        direct.push(SocketAddr::new(v4(octet), 80));
        direct.push(SocketAddr::new(v6(octet), 80));
    }
    timeline.say("web servers up on web1 and web2, port 80 (IPv4 and IPv6)");
    check_interrupt(stop)?;

    let client = lab.node("client")?;
    let mut failures = 0;
    for addr in direct {
        check_interrupt(stop)?;
        match http::get(client, addr, "/", Duration::from_secs(3)) {
            Ok(r) => timeline.say(&format!(
                "client: curl http://{addr}/ -> {} {:?} in {:.1} ms",
                r.status,
                r.body.trim_end(),
                r.elapsed.as_secs_f64() * 1000.0
            )),
            Err(e) => {
                failures += 1;
                timeline.say(&format!("client: curl http://{addr}/ failed: {e}"));
            }
        }
    }
    if failures > 0 {
        bail!("{failures} of 4 requests from client failed");
    }
    let mode = match scenario {
        Scenario::LvsDr => Some(crate::dr::Mode::LvsDr),
        Scenario::Proxy => Some(crate::dr::Mode::Proxy),
        Scenario::SplitBrain => None, // handled above
    };
    if scenario == Scenario::SplitBrain {
        crate::sb::run(lab, stop, timeline)?;
        timeline.say(&format!("{scenario}: every step behaved"));
        return hold_for(lab, hold, stop, timeline);
    }
    if let Some(mode) = mode {
        let web1 = servers.remove(0);
        crate::dr::run(lab, stop, timeline, web1, mode, opts)?;
        timeline.say(&format!("{scenario}: every step behaved"));
        hold_for(lab, hold, stop, timeline)?;
        return Ok(());
    }
    println!();
    println!(
        "  The {scenario} scenario's VRRP failover, data plane and failure timeline are not \
         built yet; this run shows the topology and the real servers only."
    );
    println!();
    hold_for(lab, hold, stop, timeline)
}

/// With `--hold N`, keeps the lab up N seconds (Ctrl-C ends it early).
fn hold_for(lab: &Lab, hold: Duration, stop: &AtomicBool, timeline: &Timeline) -> Result<()> {
    if !hold.is_zero() {
        timeline.say(&format!(
            "holding the lab for {} s (Ctrl-C ends it): try `ip netns exec {}client ping {}`",
            hold.as_secs(),
            lab.prefix(),
            v4(octet_of("web1")?)
        ));
        let until = Instant::now() + hold;
        while Instant::now() < until {
            check_interrupt(stop)?;
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

pub(crate) fn check_interrupt(stop: &AtomicBool) -> Result<()> {
    if stop.load(Ordering::Relaxed) {
        bail!("stopped by signal");
    }
    Ok(())
}

/// The data plane of `lab lvs-dr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LabPlane {
    Nftables,
    Ipvs,
}

/// One of the lab's two directors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Director {
    Lb1,
    Lb2,
}

impl std::fmt::Display for Director {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Director::Lb1 => "lb1",
            Director::Lb2 => "lb2",
        })
    }
}

/// The lab's experiments (README.md, "The lab").
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// keepalived + LVS direct routing: the seed's first experiment
    LvsDr,
    /// keepalived + an L4 proxy, the nginx `stream` setup of the seed
    Proxy,
    /// the link between the two balancers breaks
    SplitBrain,
}

impl std::fmt::Display for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Scenario::LvsDr => "lvs-dr",
            Scenario::Proxy => "proxy",
            Scenario::SplitBrain => "split-brain",
        })
    }
}
