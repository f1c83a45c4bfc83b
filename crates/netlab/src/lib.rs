//! A network-namespace harness for integration tests, benchmarks and `keepalived-rs lab`.
//!
//! A [`Lab`] owns a set of namespaces whose names share one unique prefix
//! (`krs-<pid>-<n>-`), so tests and labs run in parallel without clashing. Hosts
//! ([`Node`]) are plugged into switches (a Linux bridge that lives in a namespace of
//! its own) with veth pairs created directly inside the namespaces: nothing is
//! ever added to the root namespace. Dropping the `Lab` — also while a test
//! panics — kills every process in its namespaces and deletes them, which takes
//! their interfaces, addresses, routes and nftables tables along. Namespaces left
//! behind by a process that was SIGKILLed are swept by the next `Lab::new`.
//!
//! Everything is done with iproute2 (see `docs/decisions.md`); code that must run
//! *inside* a namespace (a web server, an HTTP client, waiting for an address)
//! runs on a thread that has entered it with `setns(2)`.

pub mod cmd;
pub mod dns;
pub mod echo;
pub mod http;
mod privilege;
pub mod procstat;
pub mod smtp;
pub mod vm;

use std::fs::File;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use privilege::{in_ci, missing, privileged, skipped, Missing};

/// What can go wrong while building or driving a lab.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("`{command}` failed (exit {status:?}): {stderr}")]
    Command {
        command: String,
        status: Option<i32>,
        stderr: String,
    },
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("cannot enter namespace {ns}: {reason}")]
    Enter { ns: String, reason: String },
    #[error("no node or switch called `{0}` in this lab")]
    Unknown(String),
    #[error("invalid address `{0}` (expected ADDRESS/PREFIX)")]
    Address(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("thread inside namespace {0} panicked")]
    Panicked(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Every namespace name made by netlab starts with this.
pub const NAME_PREFIX: &str = "krs-";

static NEXT_LAB: AtomicU32 = AtomicU32::new(0);

/// A set of namespaces with a common unique prefix, removed on drop.
#[derive(Debug)]
pub struct Lab {
    prefix: String,
    nodes: Vec<Node>,
    switches: Vec<Node>,
    links: Vec<Link>,
}

/// One host (or switch): a named network namespace.
#[derive(Debug, Clone)]
pub struct Node {
    name: String,
    ns: String,
}

/// A veth link between a node and a switch port.
#[derive(Debug, Clone)]
pub struct Link {
    /// The node's namespace name.
    pub node_ns: String,
    /// The interface name inside the node (e.g. `eth0`).
    pub ifname: String,
    /// The switch's namespace name.
    pub switch_ns: String,
    /// The port's name on the switch (`p<N>`).
    pub port: String,
}

impl Lab {
    /// Creates an empty lab with a fresh prefix, sweeping namespaces that dead
    /// netlab processes left behind.
    pub fn new() -> Result<Self, Error> {
        sweep_stale();
        let n = NEXT_LAB.fetch_add(1, Ordering::Relaxed);
        Ok(Self {
            prefix: format!("{NAME_PREFIX}{}-{n}-", std::process::id()),
            nodes: Vec::new(),
            switches: Vec::new(),
            links: Vec::new(),
        })
    }

    /// The prefix every namespace of this lab carries.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Adds a switch: a namespace holding bridge `br0` (no STP, no multicast
    /// snooping, so VRRP multicast is flooded like on a dumb switch). Bridged
    /// frames skip iptables/nftables (`nf_call_*tables 0`): a switch does
    /// not filter, and with `br_netfilter` loaded on the host (Docker loads
    /// it) those hooks were half the kernel's work per forwarded frame,
    /// charged to whichever process sent it.
    pub fn add_switch(&mut self, name: &str) -> Result<Node, Error> {
        let node = self.create_namespace(name)?;
        self.switches.push(node.clone());
        let ns = node.ns.as_str();
        cmd::ip_in(
            ns,
            &[
                "link",
                "add",
                "br0",
                "type",
                "bridge",
                "stp_state",
                "0",
                "mcast_snooping",
                "0",
                "nf_call_iptables",
                "0",
                "nf_call_ip6tables",
                "0",
                "nf_call_arptables",
                "0",
            ],
        )?;
        cmd::ip_in(ns, &["link", "set", "br0", "up"])?;
        // With br_netfilter loaded, its per-namespace switches must be off
        // too (they exist only then; nothing to do without the module).
        for key in [
            "net.bridge.bridge-nf-call-iptables",
            "net.bridge.bridge-nf-call-ip6tables",
            "net.bridge.bridge-nf-call-arptables",
        ] {
            let _ = node.sysctl(key, "0");
        }
        Ok(node)
    }

    /// Adds a host: a namespace with `lo` up and IPv6 DAD off.
    pub fn add_node(&mut self, name: &str) -> Result<Node, Error> {
        let node = self.create_namespace(name)?;
        self.nodes.push(node.clone());
        Ok(node)
    }

    /// Plugs `node` into `switch` with a veth pair: `ifname` on the node, `p<N>`
    /// on the bridge, and gives the node's end the addresses in `addrs`
    /// (`ADDRESS/PREFIX`, IPv4 or IPv6).
    pub fn connect(
        &mut self,
        node: &Node,
        switch: &Node,
        ifname: &str,
        addrs: &[&str],
    ) -> Result<Link, Error> {
        let port = format!("p{}", self.links.len());
        cmd::ip_in(
            &switch.ns,
            &[
                "link", "add", &port, "type", "veth", "peer", "name", ifname, "netns", &node.ns,
            ],
        )?;
        cmd::ip_in(&switch.ns, &["link", "set", &port, "master", "br0", "up"])?;
        for addr in addrs {
            node.add_address(ifname, addr)?;
        }
        cmd::ip_in(&node.ns, &["link", "set", ifname, "up"])?;
        let link = Link {
            node_ns: node.ns.clone(),
            ifname: ifname.to_owned(),
            switch_ns: switch.ns.clone(),
            port,
        };
        self.links.push(link.clone());
        Ok(link)
    }

    /// Cuts a link the way a broken switch port does: the node keeps its
    /// carrier, but nothing it sends arrives anywhere and nothing reaches it.
    pub fn cut(&self, link: &Link) -> Result<(), Error> {
        cmd::ip_in(&link.switch_ns, &["link", "set", &link.port, "nomaster"])?;
        Ok(())
    }

    /// Undoes [`Lab::cut`].
    pub fn restore(&self, link: &Link) -> Result<(), Error> {
        cmd::ip_in(
            &link.switch_ns,
            &["link", "set", &link.port, "master", "br0"],
        )?;
        cmd::ip_in(&link.switch_ns, &["link", "set", &link.port, "up"])?;
        Ok(())
    }

    /// Pulls (`false`) or plugs back (`true`) the cable: the node's interface
    /// loses or regains its carrier.
    pub fn set_carrier(&self, link: &Link, up: bool) -> Result<(), Error> {
        let state = if up { "up" } else { "down" };
        cmd::ip_in(&link.switch_ns, &["link", "set", &link.port, state])?;
        Ok(())
    }

    /// A lab with one switch (`sw0`) and one host per `(name, addresses)`,
    /// each plugged in as `eth0`: the shape most tests want.
    pub fn star(hosts: &[(&str, &[&str])]) -> Result<Self, Error> {
        let mut lab = Self::new()?;
        let switch = lab.add_switch("sw0")?;
        for (name, addrs) in hosts {
            let node = lab.add_node(name)?;
            lab.connect(&node, &switch, "eth0", addrs)?;
        }
        Ok(lab)
    }

    /// The link that plugs host `name` in as `ifname`.
    pub fn link(&self, name: &str, ifname: &str) -> Result<&Link, Error> {
        let node = self.node(name)?;
        self.links
            .iter()
            .find(|l| l.node_ns == node.ns && l.ifname == ifname)
            .ok_or_else(|| Error::Unknown(format!("{name}:{ifname}")))
    }

    /// The node or switch called `name`.
    pub fn node(&self, name: &str) -> Result<&Node, Error> {
        self.nodes
            .iter()
            .chain(&self.switches)
            .find(|n| n.name == name)
            .ok_or_else(|| Error::Unknown(name.to_owned()))
    }

    /// All hosts, in the order they were added.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// All links, in the order they were made.
    pub fn links(&self) -> &[Link] {
        &self.links
    }

    /// The namespaces of this lab that currently exist.
    pub fn live_namespaces(&self) -> Result<Vec<String>, Error> {
        Ok(cmd::list_namespaces()?
            .into_iter()
            .filter(|n| n.starts_with(&self.prefix))
            .collect())
    }

    fn create_namespace(&self, name: &str) -> Result<Node, Error> {
        let ns = format!("{}{name}", self.prefix);
        cmd::ip(&["netns", "add", &ns])?;
        let node = Node {
            name: name.to_owned(),
            ns,
        };
        cmd::ip_in(&node.ns, &["link", "set", "lo", "up"])?;
        node.sysctl("net.ipv6.conf.all.accept_dad", "0")?;
        node.sysctl("net.ipv6.conf.default.accept_dad", "0")?;
        Ok(node)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for node in self.nodes.iter().chain(&self.switches) {
            cmd::destroy_namespace(&node.ns);
        }
        // Anything created under our prefix that we lost track of (a panic
        // between `netns add` and the push) goes too.
        if let Ok(names) = cmd::list_namespaces() {
            for ns in names.iter().filter(|n| n.starts_with(&self.prefix)) {
                cmd::destroy_namespace(ns);
            }
        }
    }
}

/// Deletes every netlab namespace whose creating process no longer exists.
pub fn sweep_stale() {
    let Ok(names) = cmd::list_namespaces() else {
        return;
    };
    for ns in names {
        if let Some(pid) = owner_pid(&ns) {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                cmd::destroy_namespace(&ns);
            }
        }
    }
}

/// Removes every namespace whose name starts with `prefix` (for a signal
/// handler that cannot reach the `Lab`).
pub fn destroy_prefix(prefix: &str) {
    if let Ok(names) = cmd::list_namespaces() {
        for ns in names.iter().filter(|n| n.starts_with(prefix)) {
            cmd::destroy_namespace(ns);
        }
    }
}

fn owner_pid(ns: &str) -> Option<u32> {
    ns.strip_prefix(NAME_PREFIX)?
        .split('-')
        .next()?
        .parse()
        .ok()
}

impl Node {
    /// The short name given to `add_node` (`lb1`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace's full name (`krs-4242-0-lb1`), for `ip netns exec`.
    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// Adds `ADDRESS/PREFIX` to `ifname` (IPv6 without DAD).
    pub fn add_address(&self, ifname: &str, cidr: &str) -> Result<(), Error> {
        parse_cidr(cidr)?;
        let mut args = vec!["addr", "add", cidr, "dev", ifname];
        if cidr.contains(':') {
            args.push("nodad");
        }
        cmd::ip_in(&self.ns, &args)?;
        Ok(())
    }

    /// Makes this host a real server of an LVS-DR virtual IP, as the seed
    /// does it: `vip` on `lo`, and ARP neither answered for it
    /// (`arp_ignore 1`) nor sent from it (`arp_announce 2`).
    pub fn dr_real_server(&self, vip: IpAddr) -> Result<(), Error> {
        let cidr = match vip {
            IpAddr::V4(a) => format!("{a}/32"),
            IpAddr::V6(a) => format!("{a}/128"),
        };
        for (key, value) in [
            ("net.ipv4.conf.all.arp_ignore", "1"),
            ("net.ipv4.conf.all.arp_announce", "2"),
            ("net.ipv4.conf.lo.arp_ignore", "1"),
            ("net.ipv4.conf.lo.arp_announce", "2"),
        ] {
            self.sysctl(key, value)?;
        }
        self.add_address("lo", &cidr)
    }

    /// Sets a sysctl inside this namespace.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<(), Error> {
        cmd::exec_in(&self.ns, &["sysctl", "-q", "-w", &format!("{key}={value}")])?;
        Ok(())
    }

    /// Runs a command inside the namespace and waits for it; non-zero exit is an error.
    pub fn exec(&self, args: &[&str]) -> Result<std::process::Output, Error> {
        cmd::exec_in(&self.ns, args)
    }

    /// Runs a command inside the namespace and returns only whether it succeeded.
    pub fn succeeds(&self, args: &[&str]) -> bool {
        cmd::exec_in(&self.ns, args).is_ok()
    }

    /// One ICMP echo to `addr`, waiting at most `timeout` (whole seconds, at least 1).
    pub fn ping(&self, addr: IpAddr, timeout: Duration) -> bool {
        let wait = timeout.as_secs().max(1).to_string();
        self.succeeds(&[
            "ping",
            "-n",
            "-q",
            "-c",
            "1",
            "-W",
            &wait,
            &addr.to_string(),
        ])
    }

    /// Starts a long-running process inside the namespace, its stdout discarded
    /// and stderr inherited. The returned guard kills it when dropped; dropping
    /// the `Lab` kills it too.
    pub fn spawn(&self, program: &str, args: &[&str]) -> Result<Process, Error> {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.ns, program])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        Process::start(command, format!("{program} in {}", self.ns))
    }

    /// Like [`Node::spawn`] with the program, arguments, environment and
    /// directory of `command`, run under `ip netns exec`; its stderr goes to
    /// `log` when given (else inherited), its stdout nowhere.
    pub fn spawn_logged(&self, command: &Command, log: Option<File>) -> Result<Process, Error> {
        let mut wrapped = self.wrap(command);
        wrapped.stdin(Stdio::null()).stdout(Stdio::null());
        if let Some(log) = log {
            wrapped.stderr(log);
        }
        Process::start(
            wrapped,
            format!("{} in {}", command.get_program().to_string_lossy(), self.ns),
        )
    }

    /// Like [`Node::spawn_logged`], with stderr a pipe the caller reads
    /// (`Process::child_mut().stderr`), e.g. to time each line as it comes.
    pub fn spawn_piped(&self, command: &Command) -> Result<Process, Error> {
        let mut wrapped = self.wrap(command);
        wrapped
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        Process::start(
            wrapped,
            format!("{} in {}", command.get_program().to_string_lossy(), self.ns),
        )
    }

    /// Like [`Node::spawn`] with the program, arguments, environment and
    /// directory of `command` (its stdio settings are not carried over: use
    /// [`Node::spawn_logged`] to capture output), run under `ip netns exec`.
    pub fn spawn_command(&self, command: &Command) -> Result<Process, Error> {
        let wrapped = self.wrap(command);
        Process::start(
            wrapped,
            format!("{} in {}", command.get_program().to_string_lossy(), self.ns),
        )
    }

    fn wrap(&self, command: &Command) -> Command {
        let mut wrapped = Command::new("ip");
        wrapped
            .args(["netns", "exec", &self.ns])
            .arg(command.get_program())
            .args(command.get_args());
        for (k, v) in command.get_envs() {
            match v {
                Some(v) => wrapped.env(k, v),
                None => wrapped.env_remove(k),
            };
        }
        if let Some(dir) = command.get_current_dir() {
            wrapped.current_dir(dir);
        }
        wrapped
    }

    /// The processes running in this namespace.
    pub fn pids(&self) -> Vec<i32> {
        cmd::ip(&["netns", "pids", &self.ns])
            .map(|out| {
                String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Crashes every process in the namespace at once: SIGSTOP all, then
    /// SIGKILL all, so no process can react to another's death (keepalived's
    /// children would otherwise send a priority-0 advert when their parent dies).
    pub fn crash_all(&self) {
        let pids = self.pids();
        for sig in [
            nix::sys::signal::Signal::SIGSTOP,
            nix::sys::signal::Signal::SIGKILL,
        ] {
            for p in &pids {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*p), sig);
            }
        }
    }

    /// Runs `f` on a new thread that lives inside this namespace. Sockets made
    /// there belong to the namespace for good, whichever thread uses them later.
    pub fn thread<T, F>(&self, f: F) -> Result<JoinHandle<Result<T, Error>>, Error>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let ns = self.ns.clone();
        let handle = std::thread::Builder::new()
            .name(format!("ns-{}", self.name))
            .spawn(move || {
                enter(&ns)?;
                Ok(f())
            })?;
        Ok(handle)
    }

    /// Runs `f` inside this namespace and waits for its result.
    pub fn run<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        self.thread(f)?
            .join()
            .map_err(|_| Error::Panicked(self.ns.clone()))?
    }

    /// Waits until `addr` is a local address of this namespace (polling every
    /// millisecond) and returns how long that took.
    pub fn wait_for_address(&self, addr: IpAddr, timeout: Duration) -> Result<Duration, Error> {
        self.poll_address(addr, timeout, true)
    }

    /// Waits until `addr` is no longer a local address of this namespace.
    pub fn wait_for_address_gone(
        &self,
        addr: IpAddr,
        timeout: Duration,
    ) -> Result<Duration, Error> {
        self.poll_address(addr, timeout, false)
    }

    /// Whether `addr` is a local (bindable) address in this namespace right now.
    pub fn has_address(&self, addr: IpAddr) -> Result<bool, Error> {
        self.run(move || is_local(addr))
    }

    fn poll_address(&self, addr: IpAddr, timeout: Duration, want: bool) -> Result<Duration, Error> {
        self.run(move || {
            let start = Instant::now();
            loop {
                if is_local(addr) == want {
                    return Ok(start.elapsed());
                }
                if start.elapsed() >= timeout {
                    return Err(Error::Timeout(timeout));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })?
    }
}

/// An address is local exactly when a socket can bind to it.
fn is_local(addr: IpAddr) -> bool {
    UdpSocket::bind(SocketAddr::new(addr, 0)).is_ok()
}

/// Moves the calling thread into namespace `ns`.
fn enter(ns: &str) -> Result<(), Error> {
    let file = File::open(format!("/run/netns/{ns}")).map_err(|e| Error::Enter {
        ns: ns.to_owned(),
        reason: e.to_string(),
    })?;
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| Error::Enter {
        ns: ns.to_owned(),
        reason: e.to_string(),
    })
}

/// Splits `ADDRESS/PREFIX` and checks both halves.
pub fn parse_cidr(cidr: &str) -> Result<(IpAddr, u8), Error> {
    let bad = || Error::Address(cidr.to_owned());
    let (addr, len) = cidr.split_once('/').ok_or_else(bad)?;
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let len: u8 = len.parse().map_err(|_| bad())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if len > max {
        return Err(bad());
    }
    Ok((addr, len))
}

/// A process running inside a namespace; killed and reaped on drop.
#[derive(Debug)]
pub struct Process {
    child: Child,
    what: String,
}

impl Process {
    fn start(mut command: Command, what: String) -> Result<Self, Error> {
        let child = command.spawn().map_err(|source| Error::Spawn {
            command: what.clone(),
            source,
        })?;
        Ok(Self { child, what })
    }

    /// The process id (of the program itself: `ip netns exec` execs it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: nix::sys::signal::Signal) -> Result<(), Error> {
        #[allow(clippy::cast_possible_wrap)]
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).map_err(|e| Error::Io(e.into()))
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<ExitStatus, Error> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if start.elapsed() >= timeout {
                return Err(Error::Timeout(timeout));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The underlying child, for its stdout/stderr pipes.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// What this process is, for messages.
    pub fn describe(&self) -> &str {
        &self.what
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pid_reads_our_names_only() {
        assert_eq!(owner_pid("krs-4242-0-lb1"), Some(4242));
        assert_eq!(owner_pid("krs-x-0-lb1"), None);
        assert_eq!(owner_pid("other-4242"), None);
    }

    #[test]
    fn cidr_checks_both_halves() {
        assert!(parse_cidr("198.51.100.1/24").is_ok());
        assert!(parse_cidr("2001:db8::1/64").is_ok());
        assert!(parse_cidr("198.51.100.1").is_err());
        assert!(parse_cidr("198.51.100.1/33").is_err());
        assert!(parse_cidr("2001:db8::1/129").is_err());
        assert!(parse_cidr("nonsense/8").is_err());
    }
}
