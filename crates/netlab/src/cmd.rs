//! Running iproute2 and friends, with errors that carry the command line and stderr.

use std::process::{Command, Output};

use crate::Error;

/// Runs `program args…` and returns its output; a non-zero exit is an error.
pub fn run(program: &str, args: &[&str]) -> Result<Output, Error> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| Error::Spawn {
            command: command_line(program, args),
            source,
        })?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(Error::Command {
            command: command_line(program, args),
            status: output.status.code(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// `ip ARGS…`.
pub fn ip(args: &[&str]) -> Result<Output, Error> {
    run("ip", args)
}

/// `ip -n NS ARGS…`: iproute2 inside a namespace.
pub fn ip_in(ns: &str, args: &[&str]) -> Result<Output, Error> {
    let mut full = vec!["-n", ns];
    full.extend_from_slice(args);
    run("ip", &full)
}

/// `ip netns exec NS ARGS…`.
pub fn exec_in(ns: &str, args: &[&str]) -> Result<Output, Error> {
    let mut full = vec!["netns", "exec", ns];
    full.extend_from_slice(args);
    run("ip", &full)
}

/// The names of all named network namespaces (`ip netns list`).
pub fn list_namespaces() -> Result<Vec<String>, Error> {
    let out = ip(&["netns", "list"])?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

/// Kills every process inside namespace `ns` and deletes the namespace.
/// Deleting a namespace also deletes its interfaces, addresses, routes and
/// nftables tables. Errors are ignored on purpose: this runs from `Drop`.
pub fn destroy_namespace(ns: &str) {
    for _ in 0..3 {
        let pids = match ip(&["netns", "pids", ns]) {
            Ok(out) => String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
                .collect::<Vec<_>>(),
            Err(_) => Vec::new(),
        };
        if pids.is_empty() {
            break;
        }
        for pid in &pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = ip(&["netns", "del", ns]);
}

fn command_line(program: &str, args: &[&str]) -> String {
    let mut s = program.to_owned();
    for a in args {
        s.push(' ');
        s.push_str(a);
    }
    s
}
