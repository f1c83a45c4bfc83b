//! Whether this process may build namespaces, and what a test does when it may not.
//!
//! Outside CI a test that lacks root or iproute2 skips with a clear message; under
//! `CI=true` it fails, so a CI run can never pass by skipping everything.

use std::process::Command;

/// Why a privileged test cannot run here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    /// Not running as root (namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN).
    Root,
    /// A program the harness runs is not installed.
    Program(&'static str),
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Missing::Root => write!(f, "it must run as root"),
            Missing::Program(p) => write!(f, "`{p}` is not installed"),
        }
    }
}

/// What is missing for namespace tests, if anything.
pub fn missing() -> Option<Missing> {
    if !nix::unistd::geteuid().is_root() {
        return Some(Missing::Root);
    }
    for program in ["ip", "sysctl"] {
        let found = Command::new(program)
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Some(Missing::Program(program));
        }
    }
    None
}

/// Returns `true` when test `name` can use namespaces. Otherwise: under
/// `CI=true` it panics (the test fails); elsewhere it prints why it skips and
/// returns `false`.
pub fn privileged(name: &str) -> bool {
    match missing() {
        None => true,
        Some(why) => {
            assert!(
                !in_ci(),
                "{name}: cannot run under CI because {why}; CI must run as root with iproute2 installed"
            );
            skipped(name, &format!("{why} (this test needs network namespaces)"));
            false
        }
    }
}

/// Says that test `name` skips and why: on stderr (captured with the
/// test's output), and as a line of the file `$KRS_SKIPPED` names, which
/// the test command prints at its end (`scripts/dev.sh test`), so that a
/// skip is never mistaken for a pass.
pub fn skipped(name: &str, why: &str) {
    eprintln!("SKIPPED {name}: {why}");
    if let Some(path) = std::env::var_os("KRS_SKIPPED") {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
        {
            let _ = std::io::Write::write_all(&mut f, format!("{name}: {why}\n").as_bytes());
        }
    }
}

/// Whether we run under CI (`CI=true`), where skipping is failing.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}
