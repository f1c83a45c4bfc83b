//! One total deadline per request on the local endpoints (control socket,
//! metrics): a stream wrapper that, before each read or write, shortens the
//! socket's timeout to the time left, so a client that trickles a byte
//! every second cannot hold the serving thread past the deadline (a
//! per-call timeout restarts on every byte).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// How long one request may take, from accept to the last byte written.
pub const REQUEST: Duration = Duration::from_secs(2);

/// A stream with per-call timeouts.
pub trait Timeouts {
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()>;
    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()>;
}

impl Timeouts for UnixStream {
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        UnixStream::set_read_timeout(self, t)
    }
    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        UnixStream::set_write_timeout(self, t)
    }
}

impl Timeouts for TcpStream {
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, t)
    }
    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        TcpStream::set_write_timeout(self, t)
    }
}

/// `stream`, every read and write of which ends by `until`.
#[derive(Debug)]
pub struct Bounded<'a, S> {
    stream: &'a S,
    until: Instant,
}

impl<'a, S> Bounded<'a, S> {
    pub fn new(stream: &'a S, until: Instant) -> Self {
        Self { stream, until }
    }

    /// The time left, or a `TimedOut` error once there is none.
    fn left(&self) -> io::Result<Duration> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the request's deadline passed",
            ));
        }
        Ok(left)
    }
}

impl<S: Timeouts> Read for Bounded<'_, S>
where
    for<'s> &'s S: Read,
{
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.set_read_timeout(Some(self.left()?))?;
        let mut s = self.stream;
        s.read(buf)
    }
}

impl<S: Timeouts> Write for Bounded<'_, S>
where
    for<'s> &'s S: Write,
{
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.set_write_timeout(Some(self.left()?))?;
        let mut s = self.stream;
        s.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        let mut s = self.stream;
        s.flush()
    }
}
