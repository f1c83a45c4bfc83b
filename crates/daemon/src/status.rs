//! `keepalived-rs status`: ask the running daemon over its control socket.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

/// Sends one request line and prints the daemon's answer.
pub fn run(control: &Path, json: bool) -> Result<()> {
    request(control, if json { "status json\n" } else { "status\n" }).map(|_| ())
}

/// `keepalived-rs reload`: exit 1 when the daemon refused the new
/// configuration (its errors are printed).
pub fn reload(control: &Path) -> Result<u8> {
    let answer = request(control, "reload\n")?;
    Ok(u8::from(!answer.starts_with("reloaded")))
}

/// Sends `line`, prints the answer and returns it.
fn request(control: &Path, line: &str) -> Result<String> {
    // The default socket, else the packaged unit's.
    let unit = Path::new(crate::cli::UNIT_CONTROL);
    let control = if control == Path::new(crate::cli::DEFAULT_CONTROL)
        && !control.exists()
        && unit.exists()
    {
        unit
    } else {
        control
    };
    let mut stream = UnixStream::connect(control).with_context(|| {
        format!(
            "cannot reach keepalived-rs at {} (is the daemon running? --control names another socket)",
            control.display()
        )
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(line.as_bytes())?;
    let mut out = std::io::stdout().lock();
    let mut all = String::new();
    for line in BufReader::new(stream).lines() {
        let line = line.context("reading the daemon's answer")?;
        writeln!(out, "{line}")?;
        all.push_str(&line);
        all.push('\n');
    }
    Ok(all)
}
