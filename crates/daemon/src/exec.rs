//! Running a configured command (a tracked script, a notify script) with a
//! timeout: the one place that spawns them, waits, and kills stragglers.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

/// Runs `argv` (program and arguments) with no stdin/stdout/stderr and waits
/// at most `timeout`.
pub fn run(argv: &[String], timeout: Duration) -> Exit {
    let Some((program, args)) = argv.split_first() else {
        return Exit::NotStarted(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "empty command",
        ));
    };
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
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
                let _ = child.kill();
                let _ = child.wait();
                return Exit::Failure;
            }
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Exit::TimedOut;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
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
        assert!(matches!(run(&argv(&["true"]), t), Exit::Success));
        assert!(matches!(run(&argv(&["false"]), t), Exit::Failure));
        assert!(matches!(
            run(&argv(&["/nonexistent/x"]), t),
            Exit::NotStarted(_)
        ));
        assert!(matches!(run(&[], t), Exit::NotStarted(_)));
        let start = Instant::now();
        assert!(matches!(
            run(&argv(&["sleep", "5"]), Duration::from_millis(100)),
            Exit::TimedOut
        ));
        assert!(start.elapsed() < Duration::from_secs(2));
    }
}
