//! Connection state for the nftables planes (`conntrack_sync`, our
//! extension): conntrackd, from conntrack-tools, run by the daemon and
//! driven on the named VRRP instance's transitions the way conntrack-tools'
//! `primary-backup.sh` drives it — MASTER: commit the external cache into
//! the kernel, flush, resync, send a bulk update; BACKUP: shorten the
//! kernel's timers, ask the master for a resync; FAULT: shorten the timers.
//!
//! keepalived leaves a race open here: its VIPs come up, and the first
//! packets of established connections arrive, before the notify script has
//! committed the connections, so conntrack takes them for new ones and
//! they are reset. Here the instance's VIPs are held — an nftables rule
//! ahead of conntrack drops what is addressed to them (the client's TCP
//! retransmits it) — from the start and whenever the instance is not
//! MASTER, and released only once the commit has finished.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::syncd::Msg;

/// conntrackd's default UDP port.
const PORT: u16 = 3780;
/// How long one conntrackd command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// The table that holds the VIPs' traffic while a commit has not finished.
const HOLD_TABLE: &str = "keepalived_rs_hold";

/// How often conntrackd's counters are read for `status`.
const STATS_EVERY: Duration = Duration::from_secs(5);

/// `conntrack_sync` as read from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub instance: String,
    pub interface: String,
    pub source: IpAddr,
    pub peer: IpAddr,
    pub port: u16,
    /// The operator's conntrackd.conf (`None`: ours, written next to the
    /// control socket).
    pub config: Option<PathBuf>,
    pub conntrackd: String,
    /// The instance's VIPs (held until a commit has finished).
    pub vips: Vec<IpAddr>,
}

/// The first address of `interface` in `peer`'s family.
fn first_address(interface: &str, peer: IpAddr) -> Option<IpAddr> {
    nix::ifaddrs::getifaddrs().ok()?.find_map(|i| {
        if i.interface_name != interface {
            return None;
        }
        let a = i.address?;
        let ip = if let Some(v4) = a.as_sockaddr_in() {
            IpAddr::V4(v4.ip())
        } else {
            IpAddr::V6(a.as_sockaddr_in6()?.ip())
        };
        (ip.is_ipv4() == peer.is_ipv4() && !ip.is_loopback()).then_some(ip)
    })
}

/// `conntrack_sync { … }` read, each missing or wrong part logged (then
/// nothing runs).
pub fn spec(config: &kaconf::Config) -> Option<Spec> {
    let c = config.globals().conntrack_sync.clone()?;
    let c = &c.0;
    let bad = |why: &str| {
        tracing::error!("conntrack_sync: {why}; conntrackd is not run");
        None
    };
    let Some(instance) = c.instance.clone() else {
        return bad("no `instance`");
    };
    let Some(inst) = config.instances.iter().find(|i| i.name == instance) else {
        return bad(&format!("no vrrp_instance {instance}"));
    };
    let Some(interface) = c.interface.clone() else {
        return bad("no `interface`");
    };
    let Some(peer) = c.peer else {
        return bad("no `peer`");
    };
    let source = match c.source.or_else(|| first_address(&interface, peer)) {
        Some(s) if s.is_ipv4() == peer.is_ipv4() => s,
        Some(s) => return bad(&format!("source {s} and peer {peer} differ in family")),
        None => return bad(&format!("no address of {interface} to send from")),
    };
    let vips = inst
        .body
        .virtual_ipaddress
        .iter()
        .flat_map(|l| l.0.iter().map(|v| v.addr.addr))
        .collect();
    Some(Spec {
        instance,
        interface,
        source,
        peer,
        port: c
            .port
            .and_then(|p| u16::try_from(p.get()).ok())
            .filter(|p| *p != 0)
            .unwrap_or(PORT),
        config: c.config.as_ref().map(PathBuf::from),
        conntrackd: c.conntrackd.clone().unwrap_or_else(|| "conntrackd".into()),
        vips,
    })
}

/// Our conntrackd.conf: FTFW over unicast UDP to the peer, an external
/// cache (committed on takeover), its control socket and lock at `base`.
pub fn render_config(s: &Spec, base: &Path) -> String {
    let b = base.display();
    let (addr, dest) = if s.source.is_ipv4() {
        ("IPv4_address", "IPv4_Destination_Address")
    } else {
        ("IPv6_address", "IPv6_Destination_Address")
    };
    let ignore = |a: IpAddr| {
        if a.is_ipv4() {
            format!("IPv4_address {a}")
        } else {
            format!("IPv6_address {a}")
        }
    };
    format!(
        "# Written by keepalived-rs (conntrack_sync); rewritten at each start.
Sync {{
    Mode FTFW {{
        DisableExternalCache Off
        CommitTimeout 1800
        PurgeTimeout 5
    }}
    UDP {{
        {addr} {source}
        {dest} {peer}
        Port {port}
        Interface {interface}
        SndSocketBuffer 1249280
        RcvSocketBuffer 1249280
        Checksum on
    }}
}}
General {{
    HashSize 32768
    HashLimit 131072
    LogFile {b}.log
    Syslog off
    LockFile {b}.lock
    UNIX {{
        Path {b}.ctl
    }}
    NetlinkBufferSize 2097152
    NetlinkBufferSizeMaxGrowth 8388608
    Filter From Userspace {{
        Protocol Accept {{
            TCP
            UDP
        }}
        Address Ignore {{
            IPv4_address 127.0.0.1
            IPv6_address ::1
            {ignore_source}
            {ignore_peer}
        }}
    }}
}}
",
        source = s.source,
        peer = s.peer,
        port = s.port,
        interface = s.interface,
        ignore_source = ignore(s.source),
        ignore_peer = ignore(s.peer),
    )
}

/// The nftables transaction that holds `vips` (drops what is addressed to
/// them, ahead of conntrack), or releases them.
pub fn hold_transaction(vips: &[IpAddr], hold: bool) -> String {
    let mut t = format!("add table inet {HOLD_TABLE}\ndelete table inet {HOLD_TABLE}\n");
    if !hold {
        return t;
    }
    let _ = writeln!(
        t,
        "add table inet {HOLD_TABLE}\nadd chain inet {HOLD_TABLE} hold {{ type filter hook prerouting priority -300; policy accept; }}"
    );
    for v in vips {
        let fam = if v.is_ipv4() { "ip" } else { "ip6" };
        let _ = writeln!(t, "add rule inet {HOLD_TABLE} hold {fam} daddr {v} drop");
    }
    t
}

/// What `conntrackd -s` says about the sync: entries in the internal
/// cache (this node's, sent) and the external one (the peer's, kept for
/// a commit), datagrams each way, and messages lost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub local: u64,
    pub peer: u64,
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
}

/// Reads `conntrackd -s` output (conntrack-tools 1.4); `None` when it is
/// not that.
pub fn parse_stats(text: &str) -> Option<Stats> {
    let mut st = Stats::default();
    let mut cache = "";
    let mut seen = 0;
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with("cache internal") {
            cache = "internal";
        } else if l.starts_with("cache external") {
            cache = "external";
        } else if let Some(n) = l.strip_prefix("current active connections:") {
            let n = n.trim().parse().ok()?;
            match cache {
                "internal" => st.local = n,
                "external" => st.peer = n,
                _ => {}
            }
            seen += 1;
        } else if l.ends_with("Pckts recv") {
            let w: Vec<&str> = l.split_whitespace().collect();
            st.sent = w.first()?.parse().ok()?;
            st.received = w.get(3)?.parse().ok()?;
            seen += 1;
        } else if l.ends_with("Lost msgs") {
            let w: Vec<&str> = l.split_whitespace().collect();
            st.lost = w.get(3)?.parse().ok()?;
        }
    }
    (seen >= 2).then_some(st)
}

/// What conntrackd is told on entering a state (primary-backup.sh).
pub fn commands(master: bool) -> &'static [&'static str] {
    if master {
        &["-c", "-f", "-R", "-B"]
    } else {
        &["-t", "-n"]
    }
}

/// Holds the VIPs (before any VRRP instance can add them), starts
/// conntrackd and the thread that drives it. `base`: where our
/// conntrackd.conf and its socket and lock go.
pub fn start(
    spec: Spec,
    base: PathBuf,
    status: crate::control::Shared,
) -> std::io::Result<crate::syncd::Follower> {
    if let Err(e) = lb::nft::apply(&hold_transaction(&spec.vips, true)) {
        tracing::error!("conntrack_sync: cannot hold the VIPs' traffic: {e}");
    }
    // Dropped, it stops conntrackd and releases the hold.
    crate::syncd::Follower::spawn("conntrackd", "conntrack_sync", move |rx| {
        run(&spec, &base, &rx, &status);
    })
}

struct Driver<'a> {
    spec: &'a Spec,
    conf: PathBuf,
    child: Option<std::process::Child>,
    view: crate::control::ConntrackStatus,
}

impl Driver<'_> {
    fn launch(&mut self, base: &Path) {
        if self.spec.config.is_none() {
            let _ = std::fs::remove_file(base.with_extension("conntrackd.lock"));
        }
        let child = std::process::Command::new(&self.spec.conntrackd)
            .arg("-C")
            .arg(&self.conf)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        match child {
            Ok(c) => {
                tracing::info!("conntrack_sync: conntrackd started (pid {})", c.id());
                self.child = Some(c);
                self.view.error = None;
            }
            Err(e) => self.fail(format!("cannot start {}: {e}", self.spec.conntrackd)),
        }
    }

    fn fail(&mut self, why: String) {
        if self.view.error.as_deref() != Some(why.as_str()) {
            tracing::error!("conntrack_sync: {why}");
        }
        self.view.error = Some(why);
    }

    /// Whether conntrackd still runs (a dead one is reported).
    fn alive(&mut self) -> bool {
        let gone = match self.child.as_mut().map(std::process::Child::try_wait) {
            Some(Ok(Some(status))) => Some(format!("conntrackd ended ({status})")),
            Some(Err(e)) => Some(format!("conntrackd: {e}")),
            Some(Ok(None)) => None,
            None => return false,
        };
        if let Some(why) = gone {
            self.child = None;
            self.fail(why);
            return false;
        }
        true
    }

    /// One conntrackd command.
    fn command(&mut self, op: &str) -> bool {
        let argv = [
            self.spec.conntrackd.clone(),
            "-C".into(),
            self.conf.display().to_string(),
            op.into(),
        ];
        match crate::exec::run(&argv, COMMAND_TIMEOUT, None) {
            crate::exec::Exit::Success => true,
            other => {
                self.fail(format!("conntrackd {op}: {other:?}"));
                false
            }
        }
    }

    /// Asks conntrackd for its counters into the view: at most half a
    /// second, so a takeover queued meanwhile waits no longer.
    fn stats(&mut self) {
        let conf = self.conf.display().to_string();
        let Ok(out) = lb::nft::run_program(
            &self.spec.conntrackd,
            &["-C", &conf, "-s"],
            "",
            Duration::from_millis(500),
        ) else {
            return;
        };
        let text = String::from_utf8_lossy(&out.stdout);
        if let Some(st) = parse_stats(&text) {
            self.view.local_entries = st.local;
            self.view.peer_entries = st.peer;
            self.view.packets_sent = st.sent;
            self.view.packets_received = st.received;
            self.view.lost = st.lost;
        }
    }

    /// Waits (at most `limit`) until conntrackd answers on its socket.
    fn wait_ready(&mut self, limit: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            let argv = [
                self.spec.conntrackd.clone(),
                "-C".into(),
                self.conf.display().to_string(),
                "-s".into(),
            ];
            if matches!(
                crate::exec::run(&argv, Duration::from_secs(2), None),
                crate::exec::Exit::Success
            ) {
                return true;
            }
            if !self.alive() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// The instance entered MASTER (`true`) or left it.
    fn follow(&mut self, master: bool, status: &crate::control::Shared) {
        if master {
            let started = Instant::now();
            let mut ok = true;
            for op in commands(true) {
                ok &= self.command(op);
            }
            let took = started.elapsed();
            // Released even after a failed commit: holding the VIPs for
            // good would be worse than the resets it prevents.
            if let Err(e) = lb::nft::apply(&hold_transaction(&self.spec.vips, false)) {
                self.fail(format!("cannot release the VIPs' traffic: {e}"));
            }
            tracing::info!(
                "conntrack_sync: ({}) committed the peer's connections in {} ms{}; VIPs released",
                self.spec.instance,
                took.as_millis(),
                if ok { "" } else { " (with errors)" }
            );
            self.view.role = "master".into();
            self.view.commits += 1;
            self.view.last_commit_ms = Some(u64::try_from(took.as_millis()).unwrap_or(u64::MAX));
            self.view.last_takeover_unix = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .ok()
                .map(|d| d.as_secs());
        } else {
            if let Err(e) = lb::nft::apply(&hold_transaction(&self.spec.vips, true)) {
                self.fail(format!("cannot hold the VIPs' traffic: {e}"));
            }
            for op in commands(false) {
                self.command(op);
            }
            self.view.role = "backup".into();
        }
        self.publish(status);
    }

    fn publish(&mut self, status: &crate::control::Shared) {
        self.view.running = self.alive();
        if let Ok(mut s) = status.lock() {
            s.conntrack_sync = Some(self.view.clone());
        }
    }
}

fn run(spec: &Spec, base: &Path, rx: &Receiver<Msg>, status: &crate::control::Shared) {
    let conf = spec
        .config
        .clone()
        .unwrap_or_else(|| base.with_extension("conntrackd.conf"));
    if spec.config.is_none() {
        let text = render_config(spec, &base.with_extension("conntrackd"));
        if let Err(e) = std::fs::write(&conf, text) {
            tracing::error!("conntrack_sync: cannot write {}: {e}", conf.display());
        }
    }
    let mut d = Driver {
        spec,
        conf,
        child: None,
        view: crate::control::ConntrackStatus {
            instance: spec.instance.clone(),
            peer: spec.peer.to_string(),
            role: "backup".into(),
            ..crate::control::ConntrackStatus::default()
        },
    };
    d.launch(base);
    if !d.wait_ready(Duration::from_secs(10)) {
        d.fail("conntrackd does not answer on its socket".into());
    }
    d.publish(status);
    let mut master = false;
    let mut asked = Instant::now();
    loop {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(Msg::State {
                instance,
                master: m,
            }) if instance == spec.instance => {
                // The newest state counts (taken before acting).
                let mut now = m;
                while let Ok(Msg::State { instance, master }) = rx.try_recv() {
                    if instance == spec.instance {
                        now = master;
                    }
                }
                if now != master {
                    master = now;
                    d.follow(master, status);
                }
            }
            Ok(Msg::State { .. }) | Err(RecvTimeoutError::Timeout) => {
                if !d.alive() && d.child.is_none() {
                    // Died: start it again (it resyncs from the peer).
                    d.launch(base);
                }
                if asked.elapsed() >= STATS_EVERY && d.child.is_some() {
                    d.stats();
                    asked = Instant::now();
                }
                d.publish(status);
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    if let Some(mut c) = d.child.take() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(c.id()).unwrap_or(0)),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && matches!(c.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
    if let Err(e) = lb::nft::apply(&hold_transaction(&spec.vips, false)) {
        tracing::warn!("conntrack_sync: removing the hold table: {e}");
    }
    d.view.running = false;
    if let Ok(mut s) = status.lock() {
        s.conntrack_sync = Some(d.view);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conntrackd_s_output_is_read() {
        let text = "cache internal:\ncurrent active connections:\t          12\nconnections created:\t\t 0\tfailed:\t 0\n\ncache external:\ncurrent active connections:\t          34\n\ntraffic processed:\n                   0 Bytes                         0 Pckts\n\nUDP traffic (active device=eth0):\n                 800 Bytes sent                  900 Bytes recv\n                   7 Pckts sent                    9 Pckts recv\n                   0 Error send                    0 Error recv\n\nmessage tracking:\n                   0 Malformed msgs                    2 Lost msgs\n";
        assert_eq!(
            parse_stats(text),
            Some(Stats {
                local: 12,
                peer: 34,
                sent: 7,
                received: 9,
                lost: 2
            })
        );
        assert_eq!(parse_stats("Error: cannot connect"), None);
        assert_eq!(parse_stats("current active connections: x\n"), None);
    }

    fn spec_of(block: &str) -> Option<Spec> {
        let text = format!(
            "global_defs {{\n conntrack_sync {{\n{block}\n }}\n}}\nvrrp_instance VI_1 {{\n interface eth0\n virtual_router_id 51\n priority 100\n virtual_ipaddress {{\n 203.0.113.250/24 dev eth1\n 198.51.100.254/24\n }}\n}}\n"
        );
        let c = kaconf::parse_str(Path::new("t.conf"), &text, &kaconf::Options::default()).config;
        spec(&c)
    }

    #[test]
    fn conntrack_sync_is_read_with_its_defaults_and_refused_when_incomplete() {
        let s = spec_of("instance VI_1\ninterface eth0\nsource 198.51.100.22\npeer 198.51.100.40")
            .unwrap();
        assert_eq!(s.port, 3780);
        assert_eq!(s.conntrackd, "conntrackd");
        assert_eq!(s.config, None);
        assert_eq!(
            s.vips,
            [
                "203.0.113.250".parse::<IpAddr>().unwrap(),
                "198.51.100.254".parse().unwrap()
            ]
        );
        assert!(
            spec_of("interface eth0\npeer 198.51.100.40").is_none(),
            "no instance"
        );
        assert!(spec_of("instance VI_9\ninterface eth0\npeer 198.51.100.40").is_none());
        assert!(
            spec_of("instance VI_1\ninterface eth0").is_none(),
            "no peer"
        );
        assert!(
            spec_of("instance VI_1\ninterface eth0\nsource 2001:db8::1\npeer 198.51.100.40")
                .is_none(),
            "mixed families"
        );
        let own = spec_of("instance VI_1\ninterface eth0\nsource 198.51.100.22\npeer 198.51.100.40\nport 3781\nconfig /etc/conntrackd/conntrackd.conf")
            .unwrap();
        assert_eq!(own.port, 3781);
        assert_eq!(
            own.config.as_deref(),
            Some(Path::new("/etc/conntrackd/conntrackd.conf"))
        );
    }

    #[test]
    fn our_conntrackd_conf_syncs_to_the_peer_with_an_external_cache() {
        let s = spec_of("instance VI_1\ninterface eth0\nsource 198.51.100.22\npeer 198.51.100.40")
            .unwrap();
        let c = render_config(&s, Path::new("/run/krs/ctl.conntrackd"));
        for want in [
            "Mode FTFW {",
            "DisableExternalCache Off",
            "IPv4_address 198.51.100.22",
            "IPv4_Destination_Address 198.51.100.40",
            "Port 3780",
            "Interface eth0",
            "LockFile /run/krs/ctl.conntrackd.lock",
            "Path /run/krs/ctl.conntrackd.ctl",
            "IPv4_address 198.51.100.40",
        ] {
            assert!(c.contains(want), "missing {want}:\n{c}");
        }
        assert_eq!(c.matches('{').count(), c.matches('}').count());
    }

    /// The hold drops the VIPs' packets ahead of conntrack (priority -300
    /// < -200); a release removes the table whether or not it exists.
    #[test]
    fn the_hold_drops_the_vips_ahead_of_conntrack() {
        let vips: Vec<IpAddr> = vec![
            "203.0.113.250".parse().unwrap(),
            "2001:db8::250".parse().unwrap(),
        ];
        let t = hold_transaction(&vips, true);
        assert!(
            t.contains("type filter hook prerouting priority -300;"),
            "{t}"
        );
        assert!(
            t.contains("add rule inet keepalived_rs_hold hold ip daddr 203.0.113.250 drop"),
            "{t}"
        );
        assert!(
            t.contains("add rule inet keepalived_rs_hold hold ip6 daddr 2001:db8::250 drop"),
            "{t}"
        );
        let r = hold_transaction(&vips, false);
        assert_eq!(
            r,
            "add table inet keepalived_rs_hold\ndelete table inet keepalived_rs_hold\n"
        );
        assert_eq!(commands(true), ["-c", "-f", "-R", "-B"]);
        assert_eq!(commands(false), ["-t", "-n"]);
    }
}
