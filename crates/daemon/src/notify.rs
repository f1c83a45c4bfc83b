//! Notify scripts (`notify_master`, `notify_backup`, `notify_fault`,
//! `notify_stop`, and `notify` with keepalived's four arguments: `INSTANCE`,
//! the name, the state and the priority). They run in order on a thread of
//! their own, each with a timeout, so the VRRP thread never waits for one.

use std::process::{Command, Stdio};
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

/// How long a notify script may run before it is killed.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The commands an instance notifies with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scripts {
    pub master: Option<Vec<String>>,
    pub backup: Option<Vec<String>>,
    pub fault: Option<Vec<String>>,
    pub stop: Option<Vec<String>>,
    /// `notify`: called for every state with `INSTANCE NAME STATE PRIORITY`.
    pub any: Option<Vec<String>>,
}

impl Scripts {
    /// The command lines to run when instance `name` enters `state`.
    pub fn for_state(&self, name: &str, state: &str, priority: u8) -> Vec<Vec<String>> {
        let specific = match state {
            "MASTER" => &self.master,
            "BACKUP" => &self.backup,
            "FAULT" => &self.fault,
            "STOP" => &self.stop,
            _ => &None,
        };
        let mut out: Vec<Vec<String>> = specific.iter().cloned().collect();
        if let Some(any) = &self.any {
            let mut argv = any.clone();
            argv.extend([
                "INSTANCE".to_owned(),
                name.to_owned(),
                state.to_owned(),
                priority.to_string(),
            ]);
            out.push(argv);
        }
        out
    }
}

/// Work for the notifier thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// Run this command line.
    Run(Vec<String>),
    /// Write this line to the notify FIFO(s).
    Fifo(String),
}

/// keepalived's FIFO line for an instance: `INSTANCE "VI_1" MASTER 100`.
pub fn fifo_line(name: &str, state: &str, priority: u8) -> String {
    format!("INSTANCE \"{name}\" {state} {priority}\n")
}

/// Starts the notifier thread, writing FIFO lines to each of `fifos`
/// (`notify_fifo`, `vrrp_notify_fifo`; created if missing).
pub fn start(
    fifos: Vec<std::path::PathBuf>,
) -> std::io::Result<(Sender<Job>, std::thread::JoinHandle<()>)> {
    let mut opened = Vec::new();
    for path in fifos {
        if !path.exists() {
            nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
                .map_err(std::io::Error::from)?;
        }
        // Read-write and non-blocking: writing never waits for a reader.
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
            .open(&path)?;
        opened.push(f);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("notify".into())
        .spawn(move || run_all(&rx, &mut opened))?;
    Ok((tx, handle))
}

use std::os::unix::fs::OpenOptionsExt as _;

fn run_all(rx: &Receiver<Job>, fifos: &mut [std::fs::File]) {
    while let Ok(job) = rx.recv() {
        let argv = match job {
            Job::Run(argv) => argv,
            Job::Fifo(line) => {
                for f in fifos.iter_mut() {
                    if let Err(e) = std::io::Write::write_all(f, line.as_bytes()) {
                        tracing::warn!("notify fifo: {e}");
                    }
                }
                continue;
            }
        };
        let Some((program, args)) = argv.split_first() else {
            continue;
        };
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("cannot run notify script {program}: {e}");
                continue;
            }
        };
        let deadline = Instant::now() + TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= deadline => {
                    tracing::warn!(
                        "notify script {program} still running after {TIMEOUT:?}; killed"
                    );
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_lines_are_keepalived_s() {
        assert_eq!(
            fifo_line("VI_1", "MASTER", 100),
            "INSTANCE \"VI_1\" MASTER 100\n"
        );
    }

    #[test]
    fn notify_gets_keepalived_s_four_arguments() {
        let s = Scripts {
            master: Some(vec!["/etc/keepalived/master.sh".into()]),
            any: Some(vec!["/etc/keepalived/notify.sh".into(), "extra".into()]),
            ..Scripts::default()
        };
        assert_eq!(
            s.for_state("VI_1", "MASTER", 100),
            vec![
                vec!["/etc/keepalived/master.sh".to_owned()],
                [
                    "/etc/keepalived/notify.sh",
                    "extra",
                    "INSTANCE",
                    "VI_1",
                    "MASTER",
                    "100"
                ]
                .map(str::to_owned)
                .to_vec(),
            ]
        );
        assert_eq!(s.for_state("VI_1", "BACKUP", 90).len(), 1);
    }
}
