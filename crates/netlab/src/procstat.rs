//! CPU time and memory of processes, from /proc: what the benchmarks
//! measure daemons with.

/// utime + stime of the processes, in clock ticks.
pub fn cpu_ticks(pids: &[u32]) -> u64 {
    pids.iter().map(|&p| stat_fields(p, &[11, 12])).sum()
}

/// utime + stime of the processes and of their children they have
/// waited for (cutime + cstime), in clock ticks.
pub fn cpu_ticks_with_children(pids: &[u32]) -> u64 {
    pids.iter()
        .map(|&p| stat_fields(p, &[11, 12, 13, 14]))
        .sum()
}

/// utime alone, in clock ticks.
pub fn user_ticks(pids: &[u32]) -> u64 {
    pids.iter().map(|&p| stat_fields(p, &[11])).sum()
}

/// The sum of fields `at` (counted after the command name) of
/// /proc/PID/stat; 0 for a process that is gone.
fn stat_fields(pid: u32, at: &[usize]) -> u64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    let after = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    at.iter()
        .filter_map(|&i| f.get(i).and_then(|u| u.parse::<u64>().ok()))
        .sum()
}

/// A /proc/PID/status field in KiB (`VmRSS`, `VmHWM`), summed.
pub fn status_kib(pids: &[u32], field: &str) -> u64 {
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
        .filter_map(|s| {
            s.lines()
                .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .sum()
}

/// VmRSS of the processes, in KiB.
pub fn rss_kib(pids: &[u32]) -> u64 {
    status_kib(pids, "VmRSS")
}

/// Clock ticks per second in /proc (USER_HZ: 100 on every Linux).
pub const TICKS_PER_SECOND: u64 = 100;

/// Where the kernel's work of delivering a packet into the peer's
/// namespace is done, and so who is charged for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// As veth does by default: in the sender's system call, charged to the
    /// sender (a real NIC hands the frame over and the receiver pays).
    Veth,
    /// Like a NIC: the switch ports' receive work goes to core 1 (RPS), both
    /// daemons run on core 0, so each is charged for its own work only.
    Nic,
}

impl Wire {
    pub fn name(self) -> &'static str {
        match self {
            Wire::Veth => "veth (peer's receive charged to the sender)",
            Wire::Nic => "NIC-like (receive work on the other core)",
        }
    }

    /// Applies the mode to `lab` and the daemons `pids`.
    pub fn apply(self, lab: &crate::Lab, pids: &[u32]) -> Result<(), WireError> {
        if self == Wire::Veth {
            return Ok(());
        }
        for link in lab.links() {
            let path = format!("/sys/class/net/{}/queues/rx-0/rps_cpus", link.port);
            let ok = std::process::Command::new("ip")
                .args(["netns", "exec", &link.switch_ns, "sh", "-c"])
                .arg(format!("echo 2 > {path}"))
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                return Err(WireError::Rps {
                    path,
                    ns: link.switch_ns.clone(),
                });
            }
        }
        for pid in pids {
            let ok = std::process::Command::new("taskset")
                .args(["-a", "-p", "1", &pid.to_string()])
                .output()
                .is_ok_and(|o| o.status.success());
            if !ok {
                return Err(WireError::Taskset(*pid));
            }
        }
        Ok(())
    }
}

/// Why a wire mode could not be set.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("cannot set {path} in {ns}")]
    Rps { path: String, ns: String },
    #[error("taskset {0}")]
    Taskset(u32),
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_process_has_cpu_and_memory() {
        let me = std::process::id();
        assert!(super::rss_kib(&[me]) > 0);
        assert!(super::status_kib(&[me], "VmHWM") >= super::rss_kib(&[me]) / 2);
        let _ = (0..2_000_000u64).fold(0u64, u64::wrapping_add);
        assert_eq!(super::cpu_ticks(&[u32::MAX]), 0, "a process that is gone");
    }
}
