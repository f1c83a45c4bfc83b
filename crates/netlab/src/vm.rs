//! A real kernel for the tests this machine's kernel cannot run (IPVS).
//!
//! [`Vm`] boots Debian's kernel (`linux-image-amd64`) under qemu with
//! virtme-ng, always in software emulation (TCG: nested KVM hangs on the
//! machines this project runs on). The guest sees this machine's
//! filesystem read-only, with overlays on `/tmp`, `/etc`, `/var` and the
//! like, and one writable folder of the guest's own ([`Vm::out`]), so it
//! runs the very binaries the host built: ours, keepalived, ipvsadm, nft,
//! ip. A guard: dropped — also while a test panics or times out — it kills
//! qemu and everything virtme-ng started, and removes its folder.
//!
//! Tests that need the kernel are written as ordinary `#[test]`s marked
//! `#[ignore = "…"]` in one test binary; one non-ignored test of that
//! binary calls [`run_ignored_here`], which boots one VM and runs the
//! binary's ignored tests inside it (one boot for many checks), prints
//! their output, and fails unless every one passed. Booting takes ~25 s;
//! TCG is ~10× slower than the host, so the tests inside check function,
//! never speed.

use std::fmt::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Error;

/// What a VM needs from this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    /// `/boot/vmlinuz-VERSION`.
    pub image: PathBuf,
    pub version: String,
}

/// Why no VM can boot here.
#[derive(Debug, thiserror::Error)]
pub enum NoVm {
    #[error("it must run as root")]
    NotRoot,
    #[error("`{program}` is not installed: {package}")]
    Missing {
        program: &'static str,
        package: &'static str,
    },
    #[error("/boot: {0}")]
    Boot(#[source] std::io::Error),
    #[error("no kernel with IPVS modules in /boot (apt install linux-image-amd64)")]
    NoKernel,
}

/// The kernel to boot, or why there is none: `NETLAB_VM_KERNEL` (a
/// `vmlinuz` path), else the newest `/boot/vmlinuz-*` whose modules
/// include IPVS; `vng` and `qemu-system-x86_64` must be installed.
pub fn kernel() -> Result<Kernel, NoVm> {
    if !nix::unistd::geteuid().is_root() {
        return Err(NoVm::NotRoot);
    }
    for (program, package) in [
        ("vng", "virtme-ng (pip install virtme-ng)"),
        ("qemu-system-x86_64", "qemu-system-x86 (apt)"),
        // virtme-ng builds the guest's initramfs from a static busybox.
        ("busybox", "busybox-static (apt)"),
    ] {
        if !on_path(program) {
            return Err(NoVm::Missing { program, package });
        }
    }
    let candidates: Vec<PathBuf> = if let Some(p) = std::env::var_os("NETLAB_VM_KERNEL") {
        vec![PathBuf::from(p)]
    } else {
        {
            let mut v: Vec<PathBuf> = std::fs::read_dir("/boot")
                .map_err(NoVm::Boot)?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("vmlinuz-"))
                })
                .collect();
            v.sort();
            v.reverse();
            v
        }
    };
    for image in candidates {
        let Some(version) = image
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("vmlinuz-"))
            .map(str::to_owned)
        else {
            continue;
        };
        let ipvs = Path::new("/lib/modules")
            .join(&version)
            .join("kernel/net/netfilter/ipvs/ip_vs.ko");
        if image.is_file() && ipvs.exists() {
            return Ok(Kernel { image, version });
        }
    }
    Err(NoVm::NoKernel)
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|d| {
            let p = d.join(program);
            p.is_file()
        })
    })
}

/// Returns the kernel when test `name` can boot a VM. Otherwise: under
/// `CI=true` it panics (the test fails); elsewhere it prints why it
/// skips and returns `None`.
pub fn available(name: &str) -> Option<Kernel> {
    match kernel() {
        Ok(k) => Some(k),
        Err(why) => {
            assert!(
                !crate::in_ci(),
                "{name}: cannot run under CI because {why}; CI installs linux-image-amd64, qemu-system-x86 and virtme-ng (scripts/dev.sh)"
            );
            crate::skipped(
                name,
                &format!("{why} (this test boots a VM with a kernel that has IPVS)"),
            );
            None
        }
    }
}

/// Whether this process runs inside a VM that [`Vm`] booted.
pub fn inside() -> bool {
    std::env::var_os("NETLAB_IN_VM").is_some()
}

/// A booted VM running one shell command; killed and cleaned up on drop.
#[derive(Debug)]
pub struct Vm {
    child: Option<Child>,
    out: PathBuf,
    started: Instant,
}

/// How a VM's command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// The command's exit status inside the guest (`None`: it never
    /// reported one — the guest crashed or was killed).
    pub status: Option<i32>,
    /// What the command wrote (stdout and stderr).
    pub output: String,
    /// What qemu printed (the guest's console), for a guest that died.
    pub console: String,
    pub took: Duration,
}

/// `s` as one word of a POSIX shell command.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl Vm {
    /// Boots `kernel` and runs `script` (a shell command) in it, in the
    /// current directory, with `env` set; `modules` are loaded first.
    pub fn boot(
        kernel: &Kernel,
        modules: &[&str],
        env: &[(&str, &str)],
        script: &str,
    ) -> Result<Self, Error> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let out = std::env::temp_dir().join(format!(
            "{}{}-vm{n}",
            crate::NAME_PREFIX,
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(&out)?;
        let o = shell_quote(&out.to_string_lossy());
        let mut inner = String::new();
        for m in modules {
            let _ = write!(inner, "modprobe {} 2>>{o}/output; ", shell_quote(m));
        }
        inner.push_str("export NETLAB_IN_VM=1; ");
        for (k, v) in env {
            let _ = write!(inner, "export {k}={}; ", shell_quote(v));
        }
        let _ = write!(
            inner,
            "( {script} ) >>{o}/output 2>&1; echo $? >{o}/status; sync"
        );
        let mut cmd = Command::new("vng");
        cmd.arg("--disable-kvm")
            .arg("-r")
            .arg(&kernel.image)
            .args(["--memory", "2G", "--cpus", "2"])
            .arg(format!("--rwdir={}", out.display()))
            .arg("--")
            .arg(&inner)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(out.join("console"))?)
            .stderr(std::fs::File::create(out.join("console.err"))?);
        // Its own process group: qemu and its helpers die with it.
        cmd.process_group(0);
        let child = cmd.spawn().map_err(|source| Error::Spawn {
            command: "vng".into(),
            source,
        })?;
        Ok(Self {
            child: Some(child),
            out,
            started: Instant::now(),
        })
    }

    /// The guest's writable folder (the same path inside and out).
    pub fn out(&self) -> &Path {
        &self.out
    }

    /// Waits until the guest powers off, at most `timeout` from boot.
    pub fn wait(mut self, timeout: Duration) -> Result<Finished, Error> {
        let Some(child) = self.child.as_mut() else {
            return Err(Error::Timeout(Duration::ZERO));
        };
        loop {
            if child.try_wait()?.is_some() {
                break;
            }
            if self.started.elapsed() >= timeout {
                self.kill();
                return Err(Error::Timeout(timeout));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        self.child = None;
        let read = |f: &str| std::fs::read_to_string(self.out.join(f)).unwrap_or_default();
        let console = read("console") + &read("console.err");
        Ok(Finished {
            status: read("status").trim().parse().ok(),
            output: read("output"),
            console,
            took: self.started.elapsed(),
        })
    }

    /// [`Vm::wait`], writing the command's output to `sink` as it
    /// comes (whole lines); ends early, killing the guest, once `stop`
    /// is set.
    pub fn follow(
        mut self,
        timeout: Duration,
        stop: &std::sync::atomic::AtomicBool,
        sink: &mut dyn std::io::Write,
    ) -> Result<Finished, Error> {
        let path = self.out.join("output");
        let mut shown = 0usize;
        let mut flush = |all: bool| {
            let Ok(bytes) = std::fs::read(&path) else {
                return;
            };
            let upto = if all {
                bytes.len()
            } else {
                bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1)
            };
            if upto > shown {
                let _ = sink.write_all(bytes.get(shown..upto).unwrap_or_default());
                let _ = sink.flush();
                shown = upto;
            }
        };
        loop {
            let Some(child) = self.child.as_mut() else {
                return Err(Error::Timeout(Duration::ZERO));
            };
            if child.try_wait()?.is_some() {
                break;
            }
            flush(false);
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                self.kill();
                return Err(Error::Timeout(self.started.elapsed()));
            }
            if self.started.elapsed() >= timeout {
                self.kill();
                return Err(Error::Timeout(timeout));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        flush(true);
        self.wait(timeout)
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(pid) = i32::try_from(child.id()) {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.out);
    }
}

/// Boots one VM that runs this test binary's ignored tests (the ones that
/// need its kernel), prints what they printed, and panics unless all of
/// them ran and passed. `name` is the calling test's (for its skip
/// message); `modules` are loaded before the tests start; `env` is passed
/// in (with `CI` and `RUST_BACKTRACE` when set here).
pub fn run_ignored_here(name: &str, modules: &[&str], env: &[(&str, &str)], timeout: Duration) {
    let Some(kernel) = available(name) else {
        return;
    };
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => panic!("{name}: this test binary's path: {e}"),
    };
    let mut pass: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    for k in ["CI", "RUST_BACKTRACE", "RUST_LOG", "KEEPALIVED_RS_BIN"] {
        if let Ok(v) = std::env::var(k) {
            pass.push((k.to_owned(), v));
        }
    }
    let pass_ref: Vec<(&str, &str)> = pass.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    // Extra arguments after `--` of the outer run (a filter) are not
    // seen here; NETLAB_VM_FILTER narrows the tests inside.
    let filter = std::env::var("NETLAB_VM_FILTER").unwrap_or_default();
    let script = format!(
        "{} --ignored --test-threads=1 --nocapture {}",
        shell_quote(&exe.to_string_lossy()),
        if filter.is_empty() {
            String::new()
        } else {
            shell_quote(&filter)
        }
    );
    let vm = match Vm::boot(&kernel, modules, &pass_ref, &script) {
        Ok(vm) => vm,
        Err(e) => panic!("{name}: booting {}: {e}", kernel.image.display()),
    };
    eprintln!(
        "{name}: booted {} under TCG; running the tests that need its kernel",
        kernel.version
    );
    let done = match vm.wait(timeout) {
        Ok(d) => d,
        Err(e) => panic!("{name}: the VM did not finish: {e}"),
    };
    eprintln!(
        "----- inside the VM ({:.1} s) -----\n{}\n----- end of the VM's output -----",
        done.took.as_secs_f64(),
        done.output
    );
    assert!(
        done.status.is_some(),
        "{name}: the VM's tests never reported an exit status; its console:\n{}",
        done.console
    );
    let summary = done
        .output
        .lines()
        .rev()
        .find(|l| l.starts_with("test result:"))
        .unwrap_or("");
    let passed: u32 = summary
        .split_whitespace()
        .skip_while(|w| *w != "ok." && *w != "FAILED.")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert_eq!(
        done.status,
        Some(0),
        "{name}: tests inside the VM failed: {summary}"
    );
    assert!(
        passed > 0,
        "{name}: no test ran inside the VM ({summary:?})"
    );
    eprintln!(
        "{name}: {passed} tests passed inside the VM in {:.1} s",
        done.took.as_secs_f64()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
