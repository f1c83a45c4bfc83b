//! Notify scripts (`notify_master`, `notify_backup`, `notify_fault`,
//! `notify_stop`, and `notify` with keepalived's four arguments: `INSTANCE`,
//! the name, the state and the priority). They run in order on a thread of
//! their own, each with a timeout, so the VRRP thread never waits for one.

use std::sync::mpsc::{Receiver, Sender};
use std::time::Duration;

use vrrp::StateName;

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
    pub fn for_state(&self, name: &str, state: StateName, priority: u8) -> Vec<Vec<String>> {
        let specific = match state {
            StateName::Master => &self.master,
            StateName::Backup => &self.backup,
            StateName::Fault => &self.fault,
            StateName::Stop => &self.stop,
            StateName::Init => &None,
        };
        let mut out: Vec<Vec<String>> = specific.iter().cloned().collect();
        if let Some(any) = &self.any {
            let mut argv = any.clone();
            argv.extend([
                "INSTANCE".to_owned(),
                name.to_owned(),
                state.to_string(),
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
    /// Send this alert by e-mail.
    Mail(Alert),
}

/// Where and how alerts are mailed (`smtp_server`, `notification_email`…).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Smtp {
    pub server: String,
    pub port: u16,
    pub timeout: Duration,
    pub from: String,
    pub to: Vec<String>,
    pub helo: Option<String>,
}

/// One e-mail alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub subject: String,
    pub body: String,
}

/// keepalived's alert for an instance's transition.
pub fn vrrp_alert(router_id: &str, name: &str, state: StateName) -> Alert {
    let body = match state {
        StateName::Master => "=> VRRP Instance is now owning VRRP VIPs <=",
        StateName::Backup => "=> VRRP Instance is nolonger owning VRRP VIPs <=",
        StateName::Fault => "=> VRRP Instance is in FAULT state <=",
        StateName::Stop | StateName::Init => "=> VRRP Instance is stopping <=",
    };
    Alert {
        subject: format!("[{router_id}] VRRP Instance {name} - Entering {state} state"),
        body: format!("{body}\r\n"),
    }
}

/// Sends `alert` through `smtp` (errors are logged, never fatal).
fn mail(smtp: &Smtp, alert: &Alert) {
    use lettre::Transport as _;
    let build = || -> Result<(), String> {
        let mut msg = lettre::Message::builder()
            .from(
                smtp.from
                    .parse()
                    .map_err(|e| format!("from {}: {e}", smtp.from))?,
            )
            .subject(alert.subject.clone());
        for to in &smtp.to {
            msg = msg.to(to.parse().map_err(|e| format!("to {to}: {e}"))?);
        }
        let msg = msg.body(alert.body.clone()).map_err(|e| e.to_string())?;
        let mut transport = lettre::SmtpTransport::builder_dangerous(smtp.server.as_str())
            .port(smtp.port)
            .timeout(Some(smtp.timeout));
        if let Some(h) = &smtp.helo {
            transport = transport.hello_name(lettre::transport::smtp::extension::ClientId::Domain(
                h.clone(),
            ));
        }
        transport.build().send(&msg).map_err(|e| e.to_string())?;
        Ok(())
    };
    match build() {
        Ok(()) => tracing::info!(
            "Remote SMTP server [{}]:{} connected, alert sent",
            smtp.server,
            smtp.port
        ),
        Err(e) => tracing::warn!(
            "Error sending an e-mail alert through {}:{}: {e}",
            smtp.server,
            smtp.port
        ),
    }
}

/// keepalived's FIFO line for an instance: `INSTANCE "VI_1" MASTER 100`.
pub fn fifo_line(name: &str, state: StateName, priority: u8) -> String {
    format!("INSTANCE \"{name}\" {state} {priority}\n")
}

/// A notify FIFO (`notify_fifo`, `vrrp_notify_fifo`) and the script that
/// reads it (`notify_fifo_script`, `vrrp_notify_fifo_script`).
#[derive(Debug, Clone)]
pub struct Fifo {
    pub path: std::path::PathBuf,
    pub script: Option<Vec<String>>,
}

/// Starts a FIFO's reader script as keepalived does: `SCRIPT FIFO`, running
/// until we stop.
fn start_reader(
    argv: &[String],
    fifo: &std::path::Path,
    policy: &crate::exec::Policy,
) -> Option<std::process::Child> {
    let run_as = policy.default_user();
    if let Some(why) = policy.refuses(argv, run_as) {
        tracing::warn!("Not running notify FIFO script {argv:?} since it is insecure: {why}");
        return None;
    }
    let (program, args) = argv.split_first()?;
    let mut cmd = std::process::Command::new(program);
    cmd.args(args)
        .arg(fifo)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if let Some(u) = run_as {
        std::os::unix::process::CommandExt::uid(&mut cmd, u.uid);
        std::os::unix::process::CommandExt::gid(&mut cmd, u.gid);
    }
    match cmd.spawn() {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!("cannot start notify FIFO script {argv:?}: {e}");
            None
        }
    }
}

/// Starts the notifier thread, writing FIFO lines to each of `fifos`
/// (created if missing) and running their reader scripts.
pub fn start(
    fifos: Vec<Fifo>,
    smtp: Option<Smtp>,
    policy: crate::exec::Policy,
) -> std::io::Result<(Sender<Job>, std::thread::JoinHandle<()>)> {
    let mut opened = Vec::new();
    let mut readers = Vec::new();
    for Fifo { path, script } in fifos {
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
        if let Some(argv) = script {
            readers.extend(start_reader(&argv, &path, &policy));
        }
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("notify".into())
        .spawn(move || {
            run_all(&rx, &mut opened, smtp.as_ref(), &policy);
            // The last lines (the STOP notifications) are in the FIFO: give
            // the readers a moment to take them, then end them.
            std::thread::sleep(std::time::Duration::from_millis(200));
            for mut r in readers {
                let _ = r.kill();
                let _ = r.wait();
            }
        })?;
    Ok((tx, handle))
}

use std::os::unix::fs::OpenOptionsExt as _;

fn run_all(
    rx: &Receiver<Job>,
    fifos: &mut [std::fs::File],
    smtp: Option<&Smtp>,
    policy: &crate::exec::Policy,
) {
    while let Ok(job) = rx.recv() {
        let argv = match job {
            Job::Run(argv) => argv,
            Job::Mail(alert) => {
                if let Some(smtp) = smtp {
                    mail(smtp, &alert);
                }
                continue;
            }
            Job::Fifo(line) => {
                for f in fifos.iter_mut() {
                    if let Err(e) = std::io::Write::write_all(f, line.as_bytes()) {
                        tracing::warn!("notify fifo: {e}");
                    }
                }
                continue;
            }
        };
        let run_as = policy.default_user();
        if let Some(why) = policy.refuses(&argv, run_as) {
            tracing::warn!("Not running notify script {argv:?} since it is insecure: {why}");
            continue;
        }
        match crate::exec::run(&argv, TIMEOUT, run_as) {
            crate::exec::Exit::Success | crate::exec::Exit::Failure => {}
            crate::exec::Exit::TimedOut => {
                tracing::warn!("notify script {argv:?} still running after {TIMEOUT:?}; killed");
            }
            crate::exec::Exit::NotStarted(e) => {
                tracing::warn!("cannot run notify script {argv:?}: {e}");
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
            fifo_line("VI_1", StateName::Master, 100),
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
            s.for_state("VI_1", StateName::Master, 100),
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
        assert_eq!(s.for_state("VI_1", StateName::Backup, 90).len(), 1);
    }
}
