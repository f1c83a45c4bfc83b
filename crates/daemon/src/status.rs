//! `keepalived-rs status`: ask the running daemon over its control socket.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

/// Sends one request line and prints the daemon's answer.
pub fn run(control: &Path, json: bool) -> Result<()> {
    let mut stream = UnixStream::connect(control).with_context(|| {
        format!(
            "cannot reach keepalived-rs at {} (is the daemon running? --control names another socket)",
            control.display()
        )
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let request = if json { "status json\n" } else { "status\n" };
    stream.write_all(request.as_bytes())?;
    let mut out = std::io::stdout().lock();
    for line in BufReader::new(stream).lines() {
        writeln!(out, "{}", line.context("reading the daemon's answer")?)?;
    }
    Ok(())
}
