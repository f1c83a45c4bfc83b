//! Relaying one TCP connection without a buffer of its own. Bulk bytes
//! move by splice(2), socket → pipe → socket inside the kernel, never
//! through user space (nix's safe wrappers; no `unsafe`). Small messages
//! go through one scratch buffer per thread, written on at once (see
//! [`one_way`]).
//!
//! A connection holds no pipe while it is idle: a direction takes one
//! from its thread's pool when it has bytes the other socket cannot take
//! yet (or when it splices) and gives it back once the pipe is drained.
//! So idle connections cost their sockets and their task and nothing
//! more, and the pipes in use at once are the directions with bytes in
//! flight.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::fcntl::{splice, SpliceFFlags};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// The most bytes one splice moves, and each pipe's capacity: a bulk
/// transfer moves in a quarter of the calls a default 64 KiB pipe takes
/// (the pages are the sockets' own, referenced, not copied).
const CHUNK: usize = 256 * 1024;

/// Empty pipes kept per thread for the next direction that needs one.
const POOL: usize = 64;

/// A pipe: its read and write ends, both non-blocking.
#[derive(Debug)]
struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
}

/// The scratch buffer small messages are copied through.
const SMALL: usize = 16 * 1024;

thread_local! {
    static PIPES: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
    /// One per thread, shared by all its connections: a message is read
    /// and written on in one go, nothing stays in it between calls.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SMALL].into_boxed_slice());
}

/// An empty pipe: from this thread's pool, else a new one.
fn take() -> io::Result<Pipe> {
    if let Some(p) = PIPES.with(|p| p.borrow_mut().pop()) {
        return Ok(p);
    }
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(io::Error::from)?;
    // A smaller pipe (the kernel's pipe-max-size) still works.
    let _ = nix::fcntl::fcntl(
        &w,
        nix::fcntl::FcntlArg::F_SETPIPE_SZ(i32::try_from(CHUNK).unwrap_or(i32::MAX)),
    );
    Ok(Pipe { r, w })
}

/// Gives back a pipe that is empty (one with bytes left in it is closed
/// by dropping it instead).
fn give(p: Pipe) {
    PIPES.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < POOL {
            pool.push(p);
        }
    });
}

fn flags() -> SpliceFFlags {
    SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK
}

/// One read(2) of `from` by `op` (at most `max` bytes). A short read
/// emptied the socket's queue (TCP copies until the queue or the buffer
/// ends): its readiness is cleared then as well, as nginx
/// does, sparing the read that would only say EAGAIN (edge-triggered
/// epoll reports bytes that come later anew).
fn drain_read(
    from: &TcpStream,
    mut op: impl FnMut(std::os::fd::BorrowedFd<'_>) -> io::Result<usize>,
    max: usize,
) -> io::Result<usize> {
    let mut short = None;
    let got = from.try_io(Interest::READABLE, || {
        let n = op(from.as_fd())?;
        if n > 0 && n < max {
            short = Some(n);
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    });
    match short {
        Some(n) => Ok(n),
        None => got,
    }
}

/// What one read through the thread's scratch buffer did.
enum Copied {
    /// Nothing to read now.
    Nothing,
    /// The end of the stream.
    End,
    /// `n` bytes read, all written on, `full`: they filled the buffer.
    All { n: usize, full: bool },
    /// `n` bytes read, the last `left` of them put in `pipe` (the other
    /// socket took no more).
    Some { n: usize, left: usize, pipe: Pipe },
}

/// Reads once from `from` into the thread's scratch buffer and writes the
/// bytes on to `to`; what `to` does not take now goes into a pipe.
fn copy_once(from: &TcpStream, to: &TcpStream) -> io::Result<Copied> {
    SCRATCH.with(|buf| {
        let mut buf = buf.borrow_mut();
        let n = match drain_read(
            from,
            |fd| nix::unistd::read(fd, &mut buf[..]).map_err(io::Error::from),
            SMALL,
        ) {
            Ok(0) => return Ok(Copied::End),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Copied::Nothing),
            Err(e) => return Err(e),
        };
        let written = match to.try_write(&buf[..n]) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err(e),
        };
        if written == n {
            return Ok(Copied::All {
                n,
                full: n == buf.len(),
            });
        }
        // An empty pipe holds far more than the buffer: one write.
        let pipe = take()?;
        let put = nix::unistd::write(&pipe.w, &buf[written..n]).map_err(io::Error::from)?;
        if put != n - written {
            return Err(io::Error::other("short write into an empty pipe"));
        }
        Ok(Copied::Some {
            n,
            left: n - written,
            pipe,
        })
    })
}

/// Moves bytes from `from` to `to` until `from` ends (then half-closes
/// `to`: the other side sees the end, its own direction goes on), adding
/// the bytes moved to `total`; the first error ends it.
///
/// Small messages (requests, answers) are copied through the thread's
/// 16 KiB buffer — for a few hundred bytes that is cheaper than two
/// splices; once a read fills the buffer the direction is a bulk one and
/// splices from then on.
async fn one_way(
    from: &TcpStream,
    to: &TcpStream,
    total: &AtomicU64,
    ended: &std::sync::atomic::AtomicBool,
    seen: &Seen,
) -> io::Result<()> {
    let mut bulk = false;
    loop {
        from.readable().await?;
        let (n, left, pipe) = if bulk {
            let pipe = take()?;
            // No short-read shortcut here: a splice also stops short when
            // the pipe runs out of slots (one per segment), with bytes
            // still queued — only EAGAIN says the socket is empty.
            let got = from.try_io(Interest::READABLE, || {
                splice(from.as_fd(), None, pipe.w.as_fd(), None, CHUNK, flags())
                    .map_err(io::Error::from)
            });
            match got {
                Ok(0) => {
                    give(pipe);
                    end(to, ended);
                    return Ok(());
                }
                Ok(n) => (n, n, pipe),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    give(pipe);
                    continue;
                }
                Err(e) => {
                    give(pipe);
                    return Err(e);
                }
            }
        } else {
            match copy_once(from, to)? {
                Copied::Nothing => continue,
                Copied::End => {
                    end(to, ended);
                    return Ok(());
                }
                Copied::All { n, full } => {
                    bulk = full;
                    total.fetch_add(n as u64, Ordering::Relaxed);
                    seen.touch();
                    continue;
                }
                Copied::Some { n, left, pipe } => (n, left, pipe),
            }
        };
        let mut left = left;
        while left > 0 {
            // An error here drops the pipe with its bytes: it is closed.
            to.writable().await?;
            match to.try_io(Interest::WRITABLE, || {
                splice(pipe.r.as_fd(), None, to.as_fd(), None, left, flags())
                    .map_err(io::Error::from)
            }) {
                Ok(m) => {
                    left -= m;
                    seen.touch();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        give(pipe);
        total.fetch_add(n as u64, Ordering::Relaxed);
        seen.touch();
    }
}

/// Passes the end of one direction on as a half-close — unless the other
/// direction has ended already: both sockets are closed next anyway.
/// (The peer may be gone already; its end is then moot.)
fn end(to: &TcpStream, ended: &std::sync::atomic::AtomicBool) {
    if !ended.swap(true, Ordering::Relaxed) {
        let _ = socket2::SockRef::from(to).shutdown(std::net::Shutdown::Write);
    }
}

/// When a relay last moved bytes (either way), for its idle timeout.
struct Seen {
    start: tokio::time::Instant,
    /// Milliseconds after `start`.
    last_ms: AtomicU64,
}

impl Seen {
    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Returns once no byte has moved for `idle` (one timer per
    /// connection, re-armed only when it fires: traffic costs a store).
    async fn idle_for(&self, idle: std::time::Duration) {
        loop {
            let last = std::time::Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = self.start + last + idle;
            if tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// Relays `a` ⇄ `b` until both directions have ended, or either fails
/// (then both sockets are left to be closed); the bytes moved in all.
pub async fn relay(a: &TcpStream, b: &TcpStream) -> u64 {
    relay_idle(a, b, None).await.0
}

/// [`relay`], ended early when no byte has moved either way for `idle`
/// (nginx's `proxy_timeout`); the bytes moved, and whether it idled out.
pub async fn relay_idle(
    a: &TcpStream,
    b: &TcpStream,
    idle: Option<std::time::Duration>,
) -> (u64, bool) {
    // Each direction's count, kept when the other one fails.
    let (ab, ba) = (AtomicU64::new(0), AtomicU64::new(0));
    let ended = std::sync::atomic::AtomicBool::new(false);
    let seen = Seen {
        start: tokio::time::Instant::now(),
        last_ms: AtomicU64::new(0),
    };
    let both = async {
        let _ = tokio::try_join!(
            one_way(a, b, &ab, &ended, &seen),
            one_way(b, a, &ba, &ended, &seen)
        );
    };
    let idled = match idle {
        None => {
            both.await;
            false
        }
        Some(idle) => tokio::select! {
            () = both => false,
            () = seen.idle_for(idle) => true,
        },
    };
    (ab.into_inner() + ba.into_inner(), idled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// `proxy_timeout`: a relay that moves no byte for its idle time ends
    /// (and says so); traffic keeps it going past that time.
    #[test]
    fn an_idle_relay_ends_after_its_timeout() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("runtime: {e}"));
        rt.block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .unwrap_or_else(|e| panic!("bind: {e}"));
            let addr = l.local_addr().unwrap_or_else(|e| panic!("addr: {e}"));
            let pair = || async {
                let (c, s) = tokio::join!(TcpStream::connect(addr), l.accept());
                (
                    c.unwrap_or_else(|e| panic!("connect: {e}")),
                    s.unwrap_or_else(|e| panic!("accept: {e}")).0,
                )
            };
            let (mut client, front) = pair().await;
            let (back, mut server) = pair().await;
            let idle = std::time::Duration::from_millis(300);
            let t0 = tokio::time::Instant::now();
            let relay = tokio::spawn(async move { relay_idle(&front, &back, Some(idle)).await });
            // A byte every 100 ms for 600 ms: twice the idle time, alive.
            for _ in 0..6 {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                client
                    .write_all(b"x")
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                let mut b = [0u8; 1];
                server
                    .read_exact(&mut b)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
            }
            let active = t0.elapsed();
            let (moved, idled) = relay.await.unwrap_or_else(|e| panic!("{e}"));
            let ended = t0.elapsed();
            assert!(idled, "ended by the idle timeout");
            assert_eq!(moved, 6);
            assert!(
                ended >= active + idle && ended < active + idle * 3,
                "ended {ended:?} after {active:?} of traffic"
            );
            // Both sockets are closed: each end reads the end of stream.
            let mut rest = Vec::new();
            let n = client.read_to_end(&mut rest).await.unwrap_or(0);
            assert_eq!(n, 0);
        });
    }

    /// A relay between two loopback pairs carries a megabyte each way and
    /// passes the half-close on.
    #[test]
    fn bytes_and_half_close_cross_the_relay() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("runtime: {e}"));
        rt.block_on(async {
            let pair = || async {
                let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .unwrap_or_else(|e| panic!("bind: {e}"));
                let addr = l.local_addr().unwrap_or_else(|e| panic!("addr: {e}"));
                let (c, s) = tokio::join!(TcpStream::connect(addr), l.accept());
                (
                    c.unwrap_or_else(|e| panic!("connect: {e}")),
                    s.unwrap_or_else(|e| panic!("accept: {e}")).0,
                )
            };
            let (mut client, front) = pair().await;
            let (back, mut server) = pair().await;
            let relay = tokio::spawn(async move { relay(&front, &back).await });
            let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
            let sent = data.clone();
            let writer = tokio::spawn(async move {
                client
                    .write_all(&sent)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                client.shutdown().await.unwrap_or_else(|e| panic!("{e}"));
                let mut back = Vec::new();
                client
                    .read_to_end(&mut back)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                back
            });
            let mut got = Vec::new();
            server
                .read_to_end(&mut got)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(got, data, "client → server intact, ended by the half-close");
            server
                .write_all(b"answer after the half-close")
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            drop(server);
            let back = writer.await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(back, b"answer after the half-close");
            let moved = relay.await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(moved, 1_000_000 + 27);
            let pooled = PIPES.with(|p| p.borrow().len());
            assert!(
                (1..=2).contains(&pooled),
                "the pipes went back to the pool: {pooled}"
            );
        });
    }
}
