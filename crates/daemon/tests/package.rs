//! Packaging (#11): the .deb builds, installs (into an empty root with
//! dpkg) side by side with keepalived, its man pages render, its unit says
//! what the daemon needs; the daemon reaches systemd's READY (and
//! RELOADING, STOPPING) over `$NOTIFY_SOCKET`, and runs as master with only
//! the unit's capabilities (read from the unit file), with which scripts
//! also run as their `script_user` and are killed at their timeout.

#![allow(clippy::unwrap_used)]

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use netlab::Lab;
use nix::sys::signal::Signal;

const BIN: &str = env!("CARGO_BIN_EXE_keepalived-rs");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let d = std::env::temp_dir().join(format!("krs-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Self(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The packaged unit's `CapabilityBoundingSet` (`CAP_NET_ADMIN`…).
fn unit_capabilities() -> Vec<String> {
    let unit = std::fs::read_to_string(repo().join("packaging/keepalived-rs.service")).unwrap();
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("the unit sets CapabilityBoundingSet");
    line.split_whitespace().map(str::to_owned).collect()
}

/// Whether the packaged unit sets `NoNewPrivileges=yes`.
fn unit_no_new_privileges() -> bool {
    std::fs::read_to_string(repo().join("packaging/keepalived-rs.service"))
        .unwrap()
        .lines()
        .any(|l| l == "NoNewPrivileges=yes")
}

/// `setpriv` arguments that run a command as the unit runs the daemon:
/// root with only the unit's capabilities (and no new privileges if the
/// unit says so).
fn as_the_unit() -> Vec<String> {
    let caps: Vec<String> = unit_capabilities()
        .iter()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    let mut args = vec![
        format!("--bounding-set=-all,{}", caps.join(",")),
        "--inh-caps=-all".to_owned(),
    ];
    if unit_no_new_privileges() {
        args.push("--no-new-privs".to_owned());
    }
    args
}

/// The unit's capabilities as `/proc/PID/status`'s `CapBnd` mask.
fn unit_capability_mask() -> u64 {
    unit_capabilities()
        .iter()
        .map(|c| {
            // linux/capability.h
            let bit = match c.as_str() {
                "CAP_KILL" => 5,
                "CAP_SETGID" => 6,
                "CAP_SETUID" => 7,
                "CAP_NET_BIND_SERVICE" => 10,
                "CAP_NET_ADMIN" => 12,
                "CAP_NET_RAW" => 13,
                other => panic!("add {other}'s number to unit_capability_mask"),
            };
            1u64 << bit
        })
        .sum()
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn the_deb_installs_beside_keepalived_and_its_man_pages_render() {
    if !have("dpkg-deb") || !have("man") {
        assert!(!netlab::in_ci(), "dpkg-deb and man are needed under CI");
        netlab::skipped(
            "the_deb_installs_beside_keepalived_and_its_man_pages_render",
            "dpkg-deb or man missing",
        );
        return;
    }
    let tmp = TempDir::new("deb");
    let out = Command::new(repo().join("packaging/build-deb"))
        .arg(BIN)
        .arg(&tmp.0)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deb = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let listing = Command::new("dpkg-deb")
        .arg("--contents")
        .arg(&deb)
        .output()
        .unwrap();
    let files: Vec<String> = String::from_utf8_lossy(&listing.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .map(|p| p.trim_start_matches('.').to_owned())
        .filter(|p| !p.ends_with('/'))
        .collect();
    for want in [
        "/usr/sbin/keepalived-rs",
        "/lib/systemd/system/keepalived-rs.service",
        "/usr/share/man/man8/keepalived-rs.8.gz",
        "/usr/share/man/man5/keepalived-rs.conf.5.gz",
        "/etc/keepalived-rs/keepalived.conf",
    ] {
        assert!(files.iter().any(|f| f == want), "{want} not in {files:?}");
    }
    // Side by side: none of its files is one of keepalived's.
    if let Ok(o) = Command::new("dpkg").args(["-L", "keepalived"]).output() {
        let theirs = String::from_utf8_lossy(&o.stdout);
        let clash: Vec<&String> = files
            .iter()
            .filter(|f| theirs.lines().any(|t| t == *f))
            .collect();
        assert!(clash.is_empty(), "files keepalived owns: {clash:?}");
    }
    // Installed with dpkg into an empty root.
    let root = tmp.0.join("root");
    for d in ["var/lib/dpkg/updates", "var/lib/dpkg/info"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    let inst = Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args([
            "--force-script-chrootless",
            "--force-depends",
            "--log=/dev/null",
            "-i",
        ])
        .arg(&deb)
        .output()
        .unwrap();
    assert!(
        inst.status.success(),
        "{}",
        String::from_utf8_lossy(&inst.stderr)
    );
    let installed = root.join("usr/sbin/keepalived-rs");
    let check = Command::new(&installed)
        .args(["-t", "-f"])
        .arg(root.join("etc/keepalived-rs/keepalived.conf"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "the example configuration: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    // The pages as packaged (dpkg may be told to skip /usr/share/man, as
    // in Debian's container images; dpkg-deb -x never is).
    let unpacked = tmp.0.join("unpacked");
    let x = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&unpacked)
        .status()
        .unwrap();
    assert!(x.success());
    depends_on_the_glibc_it_needs(&deb, &unpacked);
    man_pages_render(&unpacked);
    packaged_as_a_sysadmin_expects(&unpacked, &String::from_utf8_lossy(&listing.stdout));
    unit_says_what_the_daemon_needs(&root);
}

/// The package depends on the glibc its binary needs (2.36 once it has
/// packed relocations: an older one cannot start it).
fn depends_on_the_glibc_it_needs(deb: &std::path::Path, unpacked: &std::path::Path) {
    let depends = Command::new("dpkg-deb")
        .args(["--field"])
        .arg(deb)
        .arg("Depends")
        .output()
        .unwrap();
    let depends = String::from_utf8_lossy(&depends.stdout).trim().to_owned();
    let dynamic = Command::new("readelf")
        .arg("-d")
        .arg(unpacked.join("usr/sbin/keepalived-rs"))
        .output()
        .unwrap();
    let relr = String::from_utf8_lossy(&dynamic.stdout).contains("(RELR)");
    let want = if relr {
        "libc6 (>= 2.36)"
    } else {
        "libc6 (>= 2.34)"
    };
    assert!(depends.contains(want), "Depends: {depends} (RELR: {relr})");
}

/// The binary is stripped (no .debug_info), the directories 0755 (the
/// root entry too), and the README's links land on shipped pages.
fn packaged_as_a_sysadmin_expects(unpacked: &Path, listing: &str) {
    let shipped = unpacked.join("usr/sbin/keepalived-rs");
    let sections = Command::new("readelf")
        .arg("-S")
        .arg(&shipped)
        .output()
        .unwrap();
    let sections = String::from_utf8_lossy(&sections.stdout);
    assert!(sections.contains(".text"), "{sections}");
    assert!(
        !sections.contains(".debug_info"),
        "the packaged binary keeps its debug info"
    );
    let size = std::fs::metadata(&shipped).unwrap().len();
    eprintln!(
        "packaged binary: {}.{} MB stripped",
        size / 1_000_000,
        size / 100_000 % 10
    );
    for line in listing.lines().filter(|l| l.starts_with('d')) {
        assert!(
            line.starts_with("drwxr-xr-x"),
            "a directory not 0755: {line}"
        );
    }
    let readme =
        std::fs::read_to_string(unpacked.join("usr/share/doc/keepalived-rs/README.md")).unwrap();
    for link in readme
        .split("](")
        .skip(1)
        .filter_map(|r| r.split(')').next())
        // A link to a heading lands on its page.
        .map(|l| l.split('#').next().unwrap_or(l))
    {
        if link.starts_with("http") || link.starts_with('#') {
            continue;
        }
        assert!(
            unpacked
                .join("usr/share/doc/keepalived-rs")
                .join(link)
                .exists(),
            "the README links to {link}, which the package does not ship"
        );
    }
}

/// The installed man pages render, with their key words.
fn man_pages_render(root: &Path) {
    for (page, words) in [
        (
            "usr/share/man/man8/keepalived-rs.8.gz",
            ["SIGHUP", "SYNOPSIS", "reload"],
        ),
        (
            "usr/share/man/man5/keepalived-rs.conf.5.gz",
            ["split_brain_guard", "heartbeat_path", "proxy_protocol"],
        ),
    ] {
        let r = Command::new("man")
            .arg("-l")
            .arg(root.join(page))
            .env("MANWIDTH", "80")
            .env("MANPAGER", "cat")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&r.stdout);
        for w in words {
            assert!(text.contains(w), "{page} renders without `{w}`:\n{text}");
        }
    }
}

/// The unit: notify, reload by SIGHUP, the capabilities (those the tests
/// run the daemon with), a read-only system, the packaged binary.
fn unit_says_what_the_daemon_needs(root: &Path) {
    let unit =
        std::fs::read_to_string(root.join("lib/systemd/system/keepalived-rs.service")).unwrap();
    let caps = format!("CapabilityBoundingSet={}", unit_capabilities().join(" "));
    for cap in [
        "CAP_NET_ADMIN",
        "CAP_NET_RAW",
        "CAP_SETUID",
        "CAP_SETGID",
        "CAP_KILL",
    ] {
        assert!(caps.contains(cap), "the unit lacks {cap}: {caps}");
    }
    for line in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        caps.as_str(),
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/run/keepalived-rs",
        "WatchdogSec=10s",
    ] {
        assert!(unit.lines().any(|l| l == line), "unit lacks `{line}`");
    }
    assert!(
        unit.contains("ExecStart=/usr/sbin/keepalived-rs "),
        "{unit}"
    );
}

/// Reads `NOTIFY_SOCKET` datagrams until one starting with `want` (or 10 s).
fn wait_notify(sock: &UnixDatagram, want: &str, seen: &mut Vec<String>) -> bool {
    let start = Instant::now();
    let mut buf = [0u8; 512];
    while start.elapsed() < Duration::from_secs(10) {
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            seen.push(msg.clone());
            if msg.starts_with(want) {
                return true;
            }
        }
    }
    false
}

#[test]
fn readiness_reload_and_stop_reach_systemd_and_the_unit_s_capabilities_suffice() {
    if !netlab::privileged(
        "readiness_reload_and_stop_reach_systemd_and_the_unit_s_capabilities_suffice",
    ) {
        return;
    }
    if !have("setpriv") {
        assert!(!netlab::in_ci(), "setpriv (util-linux) is needed under CI");
        netlab::skipped("package (a setpriv test)", "setpriv missing (util-linux)");
        return;
    }
    let lab = Lab::star(&[("lb1", &["198.51.100.21/24"])]).unwrap();
    let tmp = TempDir::new("notify");
    let conf = tmp.0.join("k.conf");
    std::fs::write(
        &conf,
        "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 51\n priority 100\n version 3\n advert_int 0.1\n virtual_ipaddress {\n  198.51.100.250/24\n }\n}\n",
    )
    .unwrap();
    let sock_path = tmp.0.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // As the unit runs it: root with only its capabilities.
    let mut cmd = Command::new("setpriv");
    cmd.args(as_the_unit())
        .args([BIN, "-n", "-l", "-f"])
        .arg(&conf)
        .arg("--control")
        .arg(tmp.0.join("c.sock"))
        .env("NOTIFY_SOCKET", &sock_path);
    let log = std::fs::File::create(tmp.0.join("log")).unwrap();
    let node = lab.node("lb1").unwrap();
    let daemon = node.spawn_logged(&cmd, Some(log)).unwrap();
    let logs = || std::fs::read_to_string(tmp.0.join("log")).unwrap_or_default();
    let mut seen = Vec::new();
    assert!(
        wait_notify(&sock, "READY=1", &mut seen),
        "{seen:?}\n{}",
        logs()
    );
    node.wait_for_address("198.51.100.250".parse().unwrap(), Duration::from_secs(3))
        .unwrap_or_else(|e| panic!("no VIP with the unit's capabilities: {e}\n{}", logs()));
    let caps = std::fs::read_to_string(format!("/proc/{}/status", daemon.pid())).unwrap();
    let bnd = caps
        .lines()
        .find(|l| l.starts_with("CapBnd:"))
        .unwrap_or_default()
        .to_owned();
    let want = format!("{:016x}", unit_capability_mask());
    assert!(bnd.ends_with(&want), "{bnd}, want {want}");
    daemon.signal(Signal::SIGHUP).unwrap();
    assert!(wait_notify(&sock, "RELOADING=1", &mut seen), "{seen:?}");
    assert!(
        seen.last().is_some_and(|m| m.contains("MONOTONIC_USEC=")),
        "{seen:?}"
    );
    assert!(wait_notify(&sock, "READY=1", &mut seen), "{seen:?}");
    daemon.signal(Signal::SIGTERM).unwrap();
    assert!(wait_notify(&sock, "STOPPING=1", &mut seen), "{seen:?}");
    eprintln!("sd_notify: {seen:?}; {bnd}");
}

/// Whether process `pid` is gone (or a zombie nobody has reaped yet).
fn gone(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
        s.rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z'))
    })
}

#[test]
fn scripts_run_as_script_user_and_are_killed_at_their_timeout_with_the_unit_s_capabilities() {
    let name =
        "scripts_run_as_script_user_and_are_killed_at_their_timeout_with_the_unit_s_capabilities";
    if !netlab::privileged(name) {
        return;
    }
    if !have("setpriv") {
        assert!(!netlab::in_ci(), "setpriv (util-linux) is needed under CI");
        netlab::skipped("package (a setpriv test)", "setpriv missing (util-linux)");
        return;
    }
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let lab = Lab::star(&[("lb1", &["198.51.100.21/24"])]).unwrap();
    let tmp = TempDir::new("scriptuser");
    // The scripts are root's (enable_script_security is satisfied); what
    // they write goes to a directory `nobody` may write.
    let out = tmp.0.join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::set_permissions(&out, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let script = |file: &str, body: &str| {
        let p = tmp.0.join(file);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        p
    };
    let o = out.display();
    let whoami = script(
        "whoami.sh",
        &format!("id -u > {o}/uid.new && mv {o}/uid.new {o}/uid"),
    );
    let slow = script("slow.sh", &format!("echo $$ > {o}/slow.pid\nexec sleep 30"));
    let conf = tmp.0.join("k.conf");
    std::fs::write(
        &conf,
        format!(
            "global_defs {{\n script_user nobody\n enable_script_security\n}}\n\
             vrrp_script whoami {{\n script {}\n interval 1\n timeout 2\n}}\n\
             vrrp_script slow {{\n script {}\n interval 5\n timeout 1\n weight -10\n}}\n\
             vrrp_instance VI_1 {{\n interface eth0\n virtual_router_id 51\n priority 100\n \
             version 3\n advert_int 0.1\n track_script {{\n  whoami\n  slow\n }}\n \
             virtual_ipaddress {{\n  198.51.100.250/24\n }}\n}}\n",
            whoami.display(),
            slow.display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new("setpriv");
    cmd.args(as_the_unit())
        .args([BIN, "-n", "-l", "-f"])
        .arg(&conf)
        .arg("--control")
        .arg(tmp.0.join("c.sock"));
    let log = std::fs::File::create(tmp.0.join("log")).unwrap();
    let node = lab.node("lb1").unwrap();
    let daemon = node.spawn_logged(&cmd, Some(log)).unwrap();
    let logs = || std::fs::read_to_string(tmp.0.join("log")).unwrap_or_default();
    let wait_for = |path: &Path| {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if let Ok(s) = std::fs::read_to_string(path) {
                if !s.trim().is_empty() {
                    return s.trim().to_owned();
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("{} never written\n{}", path.display(), logs());
    };
    let uid = wait_for(&out.join("uid"));
    assert_eq!(
        uid,
        nobody.uid.to_string(),
        "the tracked script's uid\n{}",
        logs()
    );
    let pid: i32 = wait_for(&out.join("slow.pid")).parse().unwrap();
    let started = Instant::now();
    while !gone(pid) && started.elapsed() < Duration::from_secs(4) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let alive = !gone(pid);
    if alive {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
    }
    assert!(
        !alive,
        "the timed-out script (pid {pid}, running as nobody) was not killed\n{}",
        logs()
    );
    let killed_after = started.elapsed();
    // The tracker logs the timeout once it has reaped the script, a
    // moment after the process is gone (seen racing under CI).
    let said = Instant::now();
    while !logs().contains("Script `slow` timed out") && said.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let log_text = logs();
    assert!(log_text.contains("Script `slow` timed out"), "{log_text}");
    assert!(!log_text.contains("cannot be started"), "{log_text}");
    daemon.signal(Signal::SIGTERM).unwrap();
    eprintln!("uid {uid}; timed-out script gone {killed_after:?} after its pid was written");
}
