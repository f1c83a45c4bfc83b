//! The pid file (`-p PIDFILE`), written as keepalived writes it:
//! `O_NOFOLLOW | O_CREAT`, mode 0644, never through a symlink. Whatever
//! else sits at the path — a symlink, a hard link to another file, a FIFO —
//! is unlinked (never followed or written through) and the file created
//! anew with `O_EXCL`.

use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::Path;

use nix::fcntl::OFlag;

/// Writes our pid to `path`.
pub fn write(path: &Path) -> std::io::Result<()> {
    write_pid(path, std::process::id())
}

/// Writes `pid` to `path` (see the module's comment).
pub fn write_pid(path: &Path, pid: u32) -> std::io::Result<()> {
    let open = |exclusive: bool| {
        let mut o = std::fs::OpenOptions::new();
        o.write(true)
            .mode(0o644)
            .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).bits());
        if exclusive {
            o.create_new(true);
        } else {
            o.create(true);
        }
        o.open(path)
    };
    let mut file = match open(false) {
        // A plain file of ours (one link, regular, owned by us and written
        // by nobody else): reuse it. Someone else's file is replaced, so
        // that nobody who created it first can write another pid in it.
        Ok(f)
            if f.metadata().is_ok_and(|m| {
                m.is_file()
                    && m.nlink() == 1
                    && m.uid() == nix::unistd::geteuid().as_raw()
                    && m.mode() & 0o022 == 0
            }) =>
        {
            f
        }
        // A symlink (ELOOP), or something that is not our file.
        Ok(_) | Err(_) if std::fs::symlink_metadata(path).is_ok() => {
            tracing::warn!(
                "pid file {}: not a plain file of ours (a symlink, a link, a special file, or owned or writable by another user); replacing it",
                path.display()
            );
            std::fs::remove_file(path)?;
            open(true)?
        }
        Ok(_) => open(true)?,
        Err(e) => return Err(e),
    };
    file.set_len(0)?;
    writeln!(file, "{pid}")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("ka-pid-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Issue 26 item 9: a symlink planted at the pid file's path is not
    /// followed: its target keeps its bytes, the path becomes our file.
    #[test]
    fn a_planted_symlink_is_not_followed() {
        let d = scratch("symlink");
        let victim = d.join("victim");
        std::fs::write(&victim, "precious\n").unwrap();
        let pid = d.join("keepalived.pid");
        std::os::unix::fs::symlink(&victim, &pid).unwrap();
        write_pid(&pid, 4242).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
        let m = std::fs::symlink_metadata(&pid).unwrap();
        assert!(m.file_type().is_file(), "the symlink was replaced");
        assert_eq!(std::fs::read_to_string(&pid).unwrap(), "4242\n");
        // A dangling symlink (to where the attacker wants a file) likewise.
        let pid2 = d.join("other.pid");
        std::os::unix::fs::symlink(d.join("created-by-us"), &pid2).unwrap();
        write_pid(&pid2, 7).unwrap();
        assert!(
            !d.join("created-by-us").exists(),
            "nothing created through the link"
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_hard_link_is_replaced_and_an_old_file_rewritten() {
        let d = scratch("hardlink");
        let victim = d.join("victim");
        std::fs::write(&victim, "precious\n").unwrap();
        let pid = d.join("keepalived.pid");
        std::fs::hard_link(&victim, &pid).unwrap();
        write_pid(&pid, 99).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
        assert_eq!(std::fs::read_to_string(&pid).unwrap(), "99\n");
        // A stale pid file of ours, longer than the new pid: rewritten whole.
        std::fs::write(&pid, "1234567\n").unwrap();
        write_pid(&pid, 5).unwrap();
        assert_eq!(std::fs::read_to_string(&pid).unwrap(), "5\n");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_file_another_user_owns_or_can_write_is_replaced() {
        use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
        let d = scratch("foreign");
        let pid = d.join("keepalived.pid");
        // Planted first and kept open by its owner, who could write into
        // it after us if we reused it.
        std::fs::write(&pid, "1\n").unwrap();
        std::fs::set_permissions(&pid, std::fs::Permissions::from_mode(0o666)).unwrap();
        let planted = std::fs::metadata(&pid).unwrap().ino();
        write_pid(&pid, 42).unwrap();
        let m = std::fs::metadata(&pid).unwrap();
        assert_ne!(m.ino(), planted, "the planted file was reused");
        assert_eq!(m.mode() & 0o022, 0);
        assert_eq!(std::fs::read_to_string(&pid).unwrap(), "42\n");
        let _ = std::fs::remove_dir_all(&d);
    }
}
