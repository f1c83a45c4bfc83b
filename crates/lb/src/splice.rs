//! Zero-copy relaying of one TCP connection with splice(2): each
//! direction moves its bytes socket → pipe → socket inside the kernel,
//! never through a user-space buffer (nix's safe wrappers; no `unsafe`).
//!
//! A connection holds no pipe while it is idle: a direction takes one
//! from its thread's pool when its socket turns readable and gives it back
//! once the pipe is drained into the other socket. So 10,000 idle
//! connections cost their sockets and nothing more, and the pipes in use
//! at once are the directions with bytes in flight.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::fcntl::{splice, SpliceFFlags};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// The most bytes one splice moves: a pipe's default capacity.
const CHUNK: usize = 64 * 1024;

/// Empty pipes kept per thread for the next direction that needs one.
const POOL: usize = 64;

/// A pipe: its read and write ends, both non-blocking.
#[derive(Debug)]
struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
}

thread_local! {
    static PIPES: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
}

/// An empty pipe: from this thread's pool, else a new one.
fn take() -> io::Result<Pipe> {
    if let Some(p) = PIPES.with(|p| p.borrow_mut().pop()) {
        return Ok(p);
    }
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(io::Error::from)?;
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

/// Moves bytes from `from` to `to` until `from` ends (then half-closes
/// `to`: the other side sees the end, its own direction goes on), adding
/// the bytes moved to `total`; the first error ends it.
async fn one_way(from: &TcpStream, to: &TcpStream, total: &AtomicU64) -> io::Result<()> {
    loop {
        from.readable().await?;
        let pipe = take()?;
        let got = from.try_io(Interest::READABLE, || {
            splice(from.as_fd(), None, pipe.w.as_fd(), None, CHUNK, flags())
                .map_err(io::Error::from)
        });
        let n = match got {
            Ok(0) => {
                give(pipe);
                // The peer may be gone already; its end is then moot.
                let _ = socket2::SockRef::from(to).shutdown(std::net::Shutdown::Write);
                return Ok(());
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                give(pipe);
                continue;
            }
            Err(e) => {
                give(pipe);
                return Err(e);
            }
        };
        let mut left = n;
        while left > 0 {
            // An error here drops the pipe with its bytes: it is closed.
            to.writable().await?;
            match to.try_io(Interest::WRITABLE, || {
                splice(pipe.r.as_fd(), None, to.as_fd(), None, left, flags())
                    .map_err(io::Error::from)
            }) {
                Ok(m) => left -= m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        give(pipe);
        total.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Relays `a` ⇄ `b` until both directions have ended, or either fails
/// (then both sockets are left to be closed); the bytes moved in all.
pub async fn relay(a: &TcpStream, b: &TcpStream) -> u64 {
    // Each direction's count, kept when the other one fails.
    let (ab, ba) = (AtomicU64::new(0), AtomicU64::new(0));
    let _ = tokio::try_join!(one_way(a, b, &ab), one_way(b, a, &ba));
    ab.into_inner() + ba.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
