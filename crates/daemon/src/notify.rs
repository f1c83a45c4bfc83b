//! The notifier: one thread for both subsystems (VRRP and the checkers)
//! that runs notify scripts (`notify_master`, `notify_backup`,
//! `notify_fault`, `notify_stop`, `notify` with keepalived's four
//! arguments, the checkers' `notify_up` / `notify_down` / `quorum_*`),
//! writes FIFO lines and sends e-mail alerts. Each part's jobs run in
//! order on a queue of its own, each script with a timeout: neither part
//! waits for a job, nor for the other part's jobs.

use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender};
use std::time::Duration;

use vrrp::StateName;

use crate::exec::{Policy, RunAs, Script};

/// How long a notify script may run before it is killed.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The commands an instance notifies with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scripts {
    pub master: Option<Script>,
    pub backup: Option<Script>,
    pub fault: Option<Script>,
    pub stop: Option<Script>,
    /// `notify`: called for every state with `INSTANCE NAME STATE PRIORITY`.
    pub any: Option<Script>,
}

impl Scripts {
    /// The command lines to run when instance `name` enters `state`.
    pub fn for_state(&self, name: &str, state: StateName, priority: u8) -> Vec<Script> {
        let specific = match state {
            StateName::Master => &self.master,
            StateName::Backup => &self.backup,
            StateName::Fault => &self.fault,
            StateName::Stop => &self.stop,
            StateName::Init => &None,
        };
        let mut out: Vec<Script> = specific.iter().cloned().collect();
        if let Some(any) = &self.any {
            out.push(any.with_args([
                "INSTANCE".to_owned(),
                name.to_owned(),
                state.to_string(),
                priority.to_string(),
            ]));
        }
        out
    }
}

/// Work for the notifier thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// Run this script (as its user, if the policy admits it).
    Run(Script),
    /// Run this script off the notifier's queue (it may take `timeout`),
    /// unless the last one with the same `key` is still running.
    Once {
        key: String,
        script: Script,
        timeout: Duration,
    },
    /// Write this line to the notify FIFOs that carry `Source`'s lines.
    Fifo(Source, String),
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

/// Whose line a FIFO line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// An instance's state (`INSTANCE "VI_1" MASTER 100`).
    Vrrp,
    /// A real or virtual server's (`RS …`, `VS …`).
    Checkers,
}

/// A notify FIFO (`notify_fifo`, `vrrp_notify_fifo`, `lvs_notify_fifo`)
/// and the script that reads it (`notify_fifo_script`…).
#[derive(Debug, Clone)]
pub struct Fifo {
    pub path: PathBuf,
    /// `notify_fifo PATH [USER [GROUP]]`: the FIFO's user, who may own it.
    pub user: Option<Vec<String>>,
    pub script: Option<Script>,
    /// Whose lines it carries (`None`: everyone's, `notify_fifo`).
    pub source: Option<Source>,
}

impl Fifo {
    /// `notify_fifo PATH [USER [GROUP]]` with its script, if a FIFO is set.
    pub fn from_config(
        fifo: Option<&kaconf::value::At<kaconf::value::Words>>,
        script: Option<&kaconf::value::Script>,
        source: Option<Source>,
    ) -> Option<Self> {
        let words = &fifo?.0;
        Some(Self {
            path: PathBuf::from(words.first()?),
            user: (words.len() > 1).then(|| words[1..].to_vec()),
            script: script.map(Script::from_config),
            source,
        })
    }

    /// keepalived's three: `notify_fifo` (every line), `vrrp_notify_fifo`
    /// (the instances'), `lvs_notify_fifo` (the checkers'), each with its
    /// reader script.
    pub fn all_of(g: &kaconf::model::GlobalDefs) -> Vec<Self> {
        [
            (&g.notify_fifo, &g.notify_fifo_script, None),
            (
                &g.vrrp_notify_fifo,
                &g.vrrp_notify_fifo_script,
                Some(Source::Vrrp),
            ),
            (
                &g.lvs_notify_fifo,
                &g.lvs_notify_fifo_script,
                Some(Source::Checkers),
            ),
        ]
        .into_iter()
        .filter_map(|(fifo, script, source)| {
            Self::from_config(fifo.as_ref(), script.as_ref(), source)
        })
        .collect()
    }
}

/// Why a FIFO cannot be used.
#[derive(Debug)]
pub enum FifoError {
    Create(nix::errno::Errno),
    Open(std::io::Error),
    Symlink,
    NotFifo(&'static str),
    Owner(u32),
}

impl std::fmt::Display for FifoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Create(e) => write!(f, "cannot create it: {e}"),
            Self::Open(e) => write!(f, "cannot open it: {e}"),
            Self::Symlink => write!(f, "it is a symbolic link, which is not followed"),
            Self::NotFifo(kind) => write!(f, "it is a {kind}, not a FIFO"),
            Self::Owner(uid) => write!(
                f,
                "it is owned by uid {uid}, neither us nor the FIFO's user"
            ),
        }
    }
}

impl std::error::Error for FifoError {}

fn kind(t: std::fs::FileType) -> &'static str {
    if t.is_symlink() {
        "symbolic link"
    } else if t.is_dir() {
        "directory"
    } else if t.is_file() {
        "regular file"
    } else if t.is_char_device() || t.is_block_device() {
        "device"
    } else if t.is_socket() {
        "socket"
    } else {
        "special file"
    }
}

/// Opens notify FIFO `path` read-write and non-blocking (writing never
/// waits for a reader), creating it (0644, as keepalived) if missing. It
/// is never reached through a symbolic link, and anything but a FIFO
/// owned by us or by `owner` (the FIFO's user) is refused unopened, so a
/// planted file, device or link is neither written nor opened.
pub fn open_fifo(path: &Path, owner: Option<u32>) -> Result<std::fs::File, FifoError> {
    match nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o644)) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
        Err(e) => return Err(FifoError::Create(e)),
    }
    let check = |m: &std::fs::Metadata| {
        let t = m.file_type();
        if t.is_symlink() {
            return Err(FifoError::Symlink);
        }
        if !t.is_fifo() {
            return Err(FifoError::NotFifo(kind(t)));
        }
        let us = nix::unistd::geteuid().as_raw();
        if m.uid() != us && Some(m.uid()) != owner {
            return Err(FifoError::Owner(m.uid()));
        }
        Ok(())
    };
    // Looked at before it is opened (opening a device can act), and again
    // through the descriptor (the path may have changed in between).
    check(&std::fs::symlink_metadata(path).map_err(FifoError::Open)?)?;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags((nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_NOFOLLOW).bits())
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(nix::libc::ELOOP) {
                FifoError::Symlink
            } else {
                FifoError::Open(e)
            }
        })?;
    check(&f.metadata().map_err(FifoError::Open)?)?;
    Ok(f)
}

/// Whether `run_as` (else root) can open `meta`'s file for reading by its
/// mode bits. Scripts run with no supplementary groups (the standard
/// library drops them when it switches user), so the primary group is
/// the only one that counts.
pub fn readable_by(meta: &std::fs::Metadata, run_as: Option<&RunAs>) -> bool {
    let (uid, gid) = run_as.map_or((0, 0), |u| (u.uid, u.gid));
    let bit = if meta.uid() == uid {
        0o400
    } else if meta.gid() == gid {
        0o040
    } else {
        0o004
    };
    meta.mode() & bit != 0
}

/// Starts a FIFO's reader script as keepalived does: `SCRIPT FIFO`, running
/// until we stop, as its user, if the policy admits it and that user can
/// read the FIFO.
fn start_reader(
    script: &Script,
    fifo: &Path,
    meta: &std::fs::Metadata,
    policy: &Policy,
) -> Option<std::process::Child> {
    let argv = &script.argv;
    let run_as = match policy.admit(script) {
        Ok(u) => u,
        Err(why) => {
            tracing::error!("Not running notify FIFO script {argv:?}: {why}");
            return None;
        }
    };
    if !readable_by(meta, run_as.as_ref()) {
        tracing::error!(
            "Not running notify FIFO script {argv:?}: it runs as {} and cannot read {} \
             (mode {:o}, owner {}:{})",
            run_as.as_ref().map_or("root", |u| u.name.as_str()),
            fifo.display(),
            meta.mode() & 0o7777,
            meta.uid(),
            meta.gid()
        );
        return None;
    }
    let (program, args) = argv.split_first()?;
    let mut cmd = std::process::Command::new(program);
    cmd.args(args)
        .arg(fifo)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if let Some(u) = &run_as {
        std::os::unix::process::CommandExt::uid(&mut cmd, u.uid);
        std::os::unix::process::CommandExt::gid(&mut cmd, u.gid);
    }
    match cmd.spawn() {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::error!("Cannot start notify FIFO script {argv:?}: {e}");
            None
        }
    }
}

/// The FIFOs the notifier writes, each with whose lines it carries.
type Fifos = std::sync::Arc<std::sync::Mutex<Vec<(std::fs::File, Option<Source>)>>>;

/// One part's queue: its jobs in order on a thread of its own, so that a
/// slow checker script or mail server never delays VRRP's notifications,
/// nor the other way round.
#[derive(Debug)]
struct Queue {
    tx: Option<Sender<Job>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

/// The notifier: the FIFOs (each opened once) and their readers, and a
/// queue for each part that runs. [`Notifier::finish`] waits for what is
/// queued; dropped without it, it only closes its senders.
#[derive(Debug)]
pub struct Notifier {
    vrrp: Option<Queue>,
    checkers: Option<Queue>,
    readers: Vec<std::process::Child>,
}

impl Notifier {
    /// Where `source`'s part sends its jobs (a closed channel for a part
    /// that does not run).
    pub fn sender(&self, source: Source) -> Sender<Job> {
        let queue = match source {
            Source::Vrrp => &self.vrrp,
            Source::Checkers => &self.checkers,
        };
        match queue.as_ref().and_then(|q| q.tx.as_ref()) {
            Some(tx) => tx.clone(),
            None => std::sync::mpsc::channel().0,
        }
    }

    /// Once the parts have let go of their senders: waits until every job
    /// queued is done (the STOP notifications), gives the FIFO readers a
    /// moment to take the last lines, then ends them.
    pub fn finish(mut self) {
        for q in [self.vrrp.as_mut(), self.checkers.as_mut()]
            .into_iter()
            .flatten()
        {
            q.tx = None;
            if let Some(h) = q.handle.take() {
                if h.join().is_err() {
                    tracing::error!("a notifier thread panicked");
                }
            }
        }
        // The FIFOs' write ends are closed now: a reader that reads to the
        // end takes the last lines (the STOP notifications) and ends by
        // itself; it gets 2 s, then SIGTERM and 0.5 s, then (in `drop`)
        // SIGKILL.
        self.readers_end_within(std::time::Duration::from_secs(2));
        for r in &mut self.readers {
            if r.try_wait().ok().flatten().is_none() {
                if let Ok(pid) = i32::try_from(r.id()) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGTERM,
                    );
                }
            }
        }
        self.readers_end_within(std::time::Duration::from_millis(500));
    }

    fn readers_end_within(&mut self, limit: std::time::Duration) {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline
            && self
                .readers
                .iter_mut()
                .any(|r| r.try_wait().ok().flatten().is_none())
        {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        for q in [self.vrrp.as_mut(), self.checkers.as_mut()]
            .into_iter()
            .flatten()
        {
            q.tx = None;
        }
        for r in &mut self.readers {
            let _ = r.kill();
            let _ = r.wait();
        }
    }
}

/// Starts the notifier for `config`: the FIFOs of the parts that run
/// (`vrrp`, `checkers`), the mail server, the script policy.
pub fn for_config(
    config: &kaconf::Config,
    vrrp: bool,
    checkers: bool,
) -> std::io::Result<Notifier> {
    let g = config.globals();
    let fifos = Fifo::all_of(&g)
        .into_iter()
        .filter(|f| match f.source {
            Some(Source::Vrrp) => vrrp,
            Some(Source::Checkers) => checkers,
            None => true,
        })
        .collect();
    start(
        fifos,
        crate::vrrp::spec::smtp(&g).as_ref(),
        &Policy::from_globals(&g),
        [(Source::Vrrp, vrrp), (Source::Checkers, checkers)]
            .into_iter()
            .filter_map(|(s, runs)| runs.then_some(s))
            .collect(),
    )
}

/// Starts the notifier: FIFO lines go to each of `fifos` (created if
/// missing) whose readers it starts; a FIFO that cannot be used is logged
/// and left out, the rest still work. A queue for each of `parts`.
pub fn start(
    fifos: Vec<Fifo>,
    smtp: Option<&Smtp>,
    policy: &Policy,
    parts: Vec<Source>,
) -> std::io::Result<Notifier> {
    let mut opened = Vec::new();
    let mut readers = Vec::new();
    for Fifo {
        path,
        user,
        script,
        source,
    } in fifos
    {
        let owner = match &user {
            Some(w) => crate::exec::user(w).ok().map(|u| u.uid),
            None => policy.default_user().ok().flatten().map(|u| u.uid),
        };
        let f = match open_fifo(&path, owner) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!("notify FIFO {}: {e}; not using it", path.display());
                continue;
            }
        };
        if let (Some(script), Ok(meta)) = (script, f.metadata()) {
            readers.extend(start_reader(&script, &path, &meta, policy));
        }
        opened.push((f, source));
    }
    let fifos: Fifos = std::sync::Arc::new(std::sync::Mutex::new(opened));
    let mut notifier = Notifier {
        vrrp: None,
        checkers: None,
        readers,
    };
    for part in parts {
        let (tx, rx) = std::sync::mpsc::channel();
        let (fifos, smtp, policy) = (fifos.clone(), smtp.cloned(), policy.clone());
        let name = match part {
            Source::Vrrp => "notify",
            Source::Checkers => "notify-check",
        };
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || run_all(&rx, &fifos, smtp.as_ref(), &policy))?;
        let queue = Some(Queue {
            tx: Some(tx),
            handle: Some(handle),
        });
        match part {
            Source::Vrrp => notifier.vrrp = queue,
            Source::Checkers => notifier.checkers = queue,
        }
    }
    Ok(notifier)
}

/// Runs `script` on a thread of its own unless a run under `key` is still
/// going (then logs that it is not started again).
#[allow(clippy::needless_pass_by_value)]
fn once(
    running: &std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    key: String,
    script: Script,
    timeout: Duration,
    policy: &Policy,
) {
    let argv = script.argv.clone();
    let run_as = match policy.admit(&script) {
        Ok(u) => u,
        Err(why) => {
            tracing::error!("Not running {key} script {argv:?}: {why}");
            return;
        }
    };
    let fresh = running.lock().is_ok_and(|mut r| r.insert(key.clone()));
    if !fresh {
        tracing::warn!("{key}: the last run of {argv:?} has not ended; not starting another");
        return;
    }
    let running = running.clone();
    let name = key.split(' ').next().unwrap_or("script").to_owned();
    let spawned = std::thread::Builder::new().name(name).spawn(move || {
        match crate::exec::run(&argv, timeout, run_as.as_ref()) {
            crate::exec::Exit::Success | crate::exec::Exit::Failure => {}
            crate::exec::Exit::TimedOut => {
                tracing::warn!("{key} script {argv:?} still running after {timeout:?}; killed");
            }
            crate::exec::Exit::NotStarted(e) => {
                tracing::error!("Cannot start {key} script {argv:?}: {e}");
            }
        }
        if let Ok(mut r) = running.lock() {
            r.remove(&key);
        }
    });
    if let Err(e) = spawned {
        tracing::error!("cannot start a thread for a script: {e}");
    }
}

fn run_all(rx: &Receiver<Job>, fifos: &Fifos, smtp: Option<&Smtp>, policy: &crate::exec::Policy) {
    let running: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>> =
        std::sync::Arc::default();
    while let Ok(job) = rx.recv() {
        let script = match job {
            Job::Run(script) => script,
            Job::Once {
                key,
                script,
                timeout,
            } => {
                once(&running, key, script, timeout, policy);
                continue;
            }
            Job::Mail(alert) => {
                if let Some(smtp) = smtp {
                    mail(smtp, &alert);
                }
                continue;
            }
            Job::Fifo(from, line) => {
                // A queue that panicked while writing leaves the FIFOs
                // as they were: the other part goes on using them.
                let mut fifos = fifos
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                for (f, _) in fifos
                    .iter_mut()
                    .filter(|(_, carries)| carries.is_none_or(|c| c == from))
                {
                    if let Err(e) = std::io::Write::write_all(f, line.as_bytes()) {
                        tracing::warn!("notify fifo: {e}");
                    }
                }
                continue;
            }
        };
        let argv = &script.argv;
        let run_as = match policy.admit(&script) {
            Ok(u) => u,
            Err(why) => {
                tracing::error!("Not running notify script {argv:?}: {why}");
                continue;
            }
        };
        match crate::exec::run(argv, TIMEOUT, run_as.as_ref()) {
            crate::exec::Exit::Success | crate::exec::Exit::Failure => {}
            crate::exec::Exit::TimedOut => {
                tracing::warn!("notify script {argv:?} still running after {TIMEOUT:?}; killed");
            }
            crate::exec::Exit::NotStarted(e) => {
                tracing::error!("Cannot start notify script {argv:?}: {e}");
            }
        }
    }
}

#[cfg(test)]
#[path = "notify_tests.rs"]
mod tests;
