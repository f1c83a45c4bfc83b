//! Running a configured command (a tracked script, a notify script) with a
//! timeout: the one place that spawns them, waits, and kills stragglers; and
//! keepalived's rules for who runs them (`script_user`, `user`) and which may
//! run as root (`enable_script_security`).

use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The user (and group) a script runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// `USER [GROUP]` as keepalived's `script_user` / `user` take it.
pub fn user(words: &[String]) -> Result<RunAs, String> {
    let name = words.first().ok_or("a user name is needed")?;
    let u = nix::unistd::User::from_name(name)
        .map_err(|e| format!("looking up user {name}: {e}"))?
        .ok_or_else(|| format!("no user {name}"))?;
    let gid = match words.get(1) {
        None => u.gid.as_raw(),
        Some(g) => nix::unistd::Group::from_name(g)
            .map_err(|e| format!("looking up group {g}: {e}"))?
            .ok_or_else(|| format!("no group {g}"))?
            .gid
            .as_raw(),
    };
    Ok(RunAs {
        name: name.clone(),
        uid: u.uid.as_raw(),
        gid,
    })
}

/// A configured script: its command line and the `USER [GROUP]` it names,
/// if any (notify keywords: `notify_master SCRIPT [USER [GROUP]]`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Script {
    pub argv: Vec<String>,
    pub user: Option<Vec<String>>,
}

impl Script {
    /// A notify keyword's value.
    pub fn from_config(s: &kaconf::value::Script) -> Self {
        Self {
            argv: s.command.0.to_vec(),
            user: s
                .user
                .as_ref()
                .map(|u| std::iter::once(u.clone()).chain(s.group.clone()).collect()),
        }
    }

    /// The same script with `args` appended (keepalived's extra arguments).
    #[must_use]
    pub fn with_args(&self, args: impl IntoIterator<Item = String>) -> Self {
        let mut s = self.clone();
        s.argv.extend(args);
        s
    }
}

/// Who runs scripts that name no user, and whether root may run insecure
/// ones: from `global_defs`.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// `script_user`'s words (`None`: try `keepalived_script`).
    script_user: Option<Vec<String>>,
    /// The user that resolves to, looked up on first use: the lookup goes
    /// through NSS, which loads shared libraries (about 1 MiB of RSS) that a
    /// configuration without scripts never needs.
    resolved: std::sync::OnceLock<Result<Option<RunAs>, String>>,
    /// `enable_script_security`.
    pub security: bool,
}

impl Policy {
    pub fn from_globals(g: &kaconf::model::GlobalDefs) -> Self {
        Self {
            script_user: g.script_user.as_ref().map(|w| w.0.clone()),
            resolved: std::sync::OnceLock::new(),
            security: g.enable_script_security,
        }
    }

    /// `script_user`, else `keepalived_script` if that user exists, else
    /// root (`Ok(None)`). A `script_user` that does not exist is an error
    /// (`-t` reports it): scripts then do not run at all, rather than as
    /// root.
    pub fn default_user(&self) -> Result<Option<&RunAs>, String> {
        self.resolved
            .get_or_init(|| match &self.script_user {
                Some(w) => user(w).map(Some).map_err(|e| format!("script_user: {e}")),
                None => Ok(user(&["keepalived_script".to_owned()]).ok()),
            })
            .as_ref()
            .map(Option::as_ref)
            .map_err(Clone::clone)
    }

    /// Who runs a script that names `words` (`USER [GROUP]`) or none.
    pub fn run_as(&self, words: Option<&[String]>) -> Result<Option<RunAs>, String> {
        match words {
            Some(w) => user(w).map(Some),
            None => self.default_user().map(Option::<&RunAs>::cloned),
        }
    }

    /// The one gate every script passes: who runs it, and whether
    /// `enable_script_security` lets it run. `Err`: why it may not run.
    pub fn admit(&self, script: &Script) -> Result<Option<RunAs>, String> {
        let run_as = self.run_as(script.user.as_deref())?;
        if let Some(why) = self.refuses(&script.argv, run_as.as_ref()) {
            return Err(format!("it is insecure: {why}"));
        }
        Ok(run_as)
    }

    /// Whether `argv` may run as `run_as`: with `enable_script_security`, a
    /// script run as root must not be writable by anyone but root (the
    /// reason it may not, if so). keepalived disables such scripts.
    pub fn refuses(&self, argv: &[String], run_as: Option<&RunAs>) -> Option<String> {
        if !self.security {
            return None;
        }
        let program = argv.first()?;
        let Some(path) = find_program(program) else {
            return Some(format!("{program} not found"));
        };
        // As keepalived: the check applies to scripts run as root, with
        // group root, or that are set-user/group-id root themselves.
        let as_root = run_as.is_none_or(|u| u.uid == 0 || u.gid == 0);
        let set_id_root = std::fs::metadata(&path).is_ok_and(|m| {
            (m.mode() & 0o4000 != 0 && m.uid() == 0) || (m.mode() & 0o2000 != 0 && m.gid() == 0)
        });
        if !as_root && !set_id_root {
            return None;
        }
        insecure(&path)
    }
}

/// `program` as a path: itself if it has a slash, else the first match in
/// `PATH`.
pub fn find_program(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Why `path` is unsafe to run as root, keepalived's rule: every component
/// from `/` down must be owned by root, and neither the file nor a directory
/// without the sticky bit may be writable by a non-root group or by others.
/// A symbolic link (whose own mode means nothing) must be owned by root; the
/// path it resolves to is then checked the same way.
pub fn insecure(path: &Path) -> Option<String> {
    if let Some(why) = insecure_components(path) {
        return Some(why);
    }
    match std::fs::canonicalize(path) {
        Ok(real) if real != path => insecure_components(&real),
        Ok(_) => None,
        Err(e) => Some(format!("{}: {e}", path.display())),
    }
}

fn insecure_components(path: &Path) -> Option<String> {
    let mut prefix = PathBuf::new();
    for part in path.components() {
        prefix.push(part);
        let meta = match std::fs::symlink_metadata(&prefix) {
            Ok(m) => m,
            Err(e) => return Some(format!("{}: {e}", prefix.display())),
        };
        if meta.uid() != 0 {
            return Some(format!("{} is not owned by root", prefix.display()));
        }
        if meta.file_type().is_symlink() {
            // What it points to is checked on the resolved path.
            continue;
        }
        let mode = meta.mode();
        let sticky_dir = meta.is_dir() && mode & 0o1000 != 0;
        let group_write = meta.gid() != 0 && mode & 0o020 != 0;
        let other_write = mode & 0o002 != 0;
        if !sticky_dir && (group_write || other_write) {
            return Some(format!(
                "{} is writable by non-root users",
                prefix.display()
            ));
        }
    }
    None
}

/// How a command ended.
#[derive(Debug)]
pub enum Exit {
    /// Exit status 0.
    Success,
    /// Any other exit status, or killed by a signal.
    Failure,
    /// Still running at the timeout; it was killed.
    TimedOut,
    /// It could not be started (missing program, no permission…).
    NotStarted(std::io::Error),
}

/// Runs `argv` (program and arguments) as `run_as` (else as we are) with no
/// stdin/stdout/stderr and waits at most `timeout`.
pub fn run(argv: &[String], timeout: Duration, run_as: Option<&RunAs>) -> Exit {
    let Some((program, args)) = argv.split_first() else {
        return Exit::NotStarted(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "empty command",
        ));
    };
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(u) = run_as {
        command.uid(u.uid).gid(u.gid);
    }
    // Its own process group, so a timeout ends whatever it started too.
    command.process_group(0);
    let child = command.spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return Exit::NotStarted(e),
    };
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Exit::Success,
            Ok(Some(_)) => return Exit::Failure,
            // The child's state is unknown: make sure it neither runs on
            // nor stays a zombie.
            Err(_) => {
                kill_group(&mut child);
                return Exit::Failure;
            }
            Ok(None) if Instant::now() >= deadline => {
                kill_group(&mut child);
                return Exit::TimedOut;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Kills `child`'s process group (it leads one) and reaps the child. A
/// script run as another user can only be killed with `CAP_KILL`; without
/// it the kill fails, loudly, and the wait lasts as long as the script.
fn kill_group(child: &mut std::process::Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let killed = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        if let Err(e @ nix::errno::Errno::EPERM) = killed {
            tracing::error!("cannot kill script process group {pid}: {e} (is CAP_KILL missing?)");
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn outcomes() {
        let t = Duration::from_secs(2);
        assert!(matches!(run(&argv(&["true"]), t, None), Exit::Success));
        assert!(matches!(run(&argv(&["false"]), t, None), Exit::Failure));
        assert!(matches!(
            run(&argv(&["/nonexistent/x"]), t, None),
            Exit::NotStarted(_)
        ));
        assert!(matches!(run(&[], t, None), Exit::NotStarted(_)));
        let start = Instant::now();
        assert!(matches!(
            run(&argv(&["sleep", "5"]), Duration::from_millis(100), None),
            Exit::TimedOut
        ));
        assert!(start.elapsed() < Duration::from_secs(2));
        // A timeout ends the grandchildren too (its whole process group).
        // An unusual duration marks our grandchild for pgrep.
        let marker = format!("sleep 3{}", std::process::id() % 1000 + 1000);
        let script = format!("{marker} & wait");
        assert!(matches!(
            run(
                &argv(&["sh", "-c", &script]),
                Duration::from_millis(200),
                None
            ),
            Exit::TimedOut
        ));
        std::thread::sleep(Duration::from_millis(100));
        let left = std::process::Command::new("pgrep")
            .args(["-f", &marker])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(!left, "a process of the timed-out script survived");
    }

    #[test]
    fn scripts_run_as_their_user() {
        if !nix::unistd::geteuid().is_root() {
            assert!(
                !netlab::in_ci(),
                "scripts_run_as_their_user needs root under CI"
            );
            netlab::skipped("scripts_run_as_their_user", "needs root to switch users");
            return;
        }
        let nobody = user(&argv(&["nobody"])).unwrap();
        let t = Duration::from_secs(2);
        let check = |uid: u32| argv(&["sh", "-c", &format!("test \"$(id -u)\" = {uid}")]);
        assert!(matches!(
            run(&check(nobody.uid), t, Some(&nobody)),
            Exit::Success
        ));
        assert!(matches!(run(&check(0), t, Some(&nobody)), Exit::Failure));
        assert!(user(&argv(&["no-such-user-krs"])).is_err());
    }

    #[test]
    fn keepalived_script_security_rules() {
        if !nix::unistd::geteuid().is_root() {
            assert!(
                !netlab::in_ci(),
                "keepalived_script_security_rules needs root under CI"
            );
            netlab::skipped("keepalived_script_security_rules", "needs root-owned files");
            return;
        }
        // A private root-owned directory (not under /tmp's sticky bit rules).
        let dir = std::env::temp_dir().join(format!("krs-exec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let set = |p: &Path, mode: u32| {
            std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(mode))
                .unwrap();
        };
        set(&dir, 0o755);
        let script = dir.join("check.sh");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        set(&script, 0o755);
        assert_eq!(insecure(&script), None);
        set(&script, 0o757);
        assert!(insecure(&script).unwrap().contains("writable"));
        set(&script, 0o755);
        set(&dir, 0o777);
        assert!(
            insecure(&script).unwrap().contains("writable"),
            "a world-writable directory"
        );
        set(&dir, 0o1777);
        assert_eq!(insecure(&script), None, "a sticky directory is fine");
        set(&dir, 0o755);
        std::os::unix::fs::chown(&script, Some(65534), None).unwrap();
        assert!(insecure(&script).unwrap().contains("not owned by root"));
        // The policy: only with enable_script_security, only for root.
        let argv1 = vec![script.display().to_string()];
        let off = Policy::default();
        assert_eq!(off.refuses(&argv1, None), None);
        let on = Policy {
            security: true,
            ..Policy::default()
        };
        assert!(on.refuses(&argv1, None).is_some());
        let nobody = user(&argv(&["nobody"])).unwrap();
        assert_eq!(on.refuses(&argv1, Some(&nobody)), None, "not run as root");
        assert_eq!(
            on.refuses(&argv(&["true"]), None),
            None,
            "found in PATH, root-owned"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
