//! Long-lived TCP connections that echo, for counting which connections
//! survive a failover: an echo server, and a client holding `n`
//! connections that each send a line every `every` and wait for it back.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{Error, Node};

/// Echoes every line back on each connection; stopped on drop.
#[derive(Debug)]
pub struct EchoServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EchoServer {
    /// Listens on `addr` inside `node`.
    pub fn start(node: &Node, addr: SocketAddr) -> Result<Self, Error> {
        let listener = node.run(move || TcpListener::bind(addr))??;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("echo-{addr}"))
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((conn, _)) => {
                            let s = s.clone();
                            let _ = std::thread::Builder::new()
                                .name("echo-conn".into())
                                .spawn(move || echo(conn, &s));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

fn echo(conn: TcpStream, stop: &AtomicBool) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    while !stop.load(Ordering::Relaxed) {
        match reader.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) => {
                if out.write_all(line.as_bytes()).is_err() {
                    return;
                }
                line.clear();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What one echoing connection saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// Lines sent and got back.
    pub echoes: u64,
    /// When the last line came back.
    pub last: Option<Instant>,
    /// The longest time between two lines coming back.
    pub longest_gap: Duration,
    /// Why it ended (reset, closed), if it did.
    pub ended: Option<String>,
}

impl Connection {
    /// Whether it still echoes: not ended, and a line came back since `t`.
    pub fn alive_since(&self, t: Instant) -> bool {
        self.ended.is_none() && self.last.is_some_and(|l| l >= t)
    }
}

/// `n` connections to `target`, each echoing a line every `every`; they
/// stop on drop.
#[derive(Debug)]
pub struct Echoers {
    stop: Arc<AtomicBool>,
    seen: Vec<Arc<Mutex<Connection>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Echoers {
    /// Opens the `n` connections from inside `node` (each must connect
    /// within `connect_timeout`), then starts echoing.
    pub fn start(
        node: &Node,
        target: SocketAddr,
        n: usize,
        every: Duration,
        connect_timeout: Duration,
    ) -> Result<Self, Error> {
        let streams = node.run(move || {
            (0..n)
                .map(|_| TcpStream::connect_timeout(&target, connect_timeout))
                .collect::<std::io::Result<Vec<_>>>()
        })??;
        let stop = Arc::new(AtomicBool::new(false));
        let (mut seen, mut threads) = (Vec::new(), Vec::new());
        for (i, s) in streams.into_iter().enumerate() {
            let state = Arc::new(Mutex::new(Connection {
                echoes: 0,
                last: None,
                longest_gap: Duration::ZERO,
                ended: None,
            }));
            let (st, stop) = (state.clone(), stop.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("echoer-{i}"))
                    .spawn(move || echo_loop(s, every, &st, &stop))?,
            );
            seen.push(state);
        }
        Ok(Self {
            stop,
            seen,
            threads,
        })
    }

    /// What each connection saw so far.
    pub fn report(&self) -> Vec<Connection> {
        self.seen
            .iter()
            .map(|s| {
                s.lock()
                    .map_or_else(|e| e.into_inner().clone(), |c| c.clone())
            })
            .collect()
    }
}

fn echo_loop(s: TcpStream, every: Duration, seen: &Mutex<Connection>, stop: &AtomicBool) {
    let end = |why: String| {
        if let Ok(mut c) = seen.lock() {
            c.ended = Some(why);
        }
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
    let _ = s.set_nodelay(true);
    let Ok(mut out) = s.try_clone() else {
        return end("cannot clone the socket".into());
    };
    let mut reader = BufReader::new(s);
    let mut line = String::new();
    let mut seq = 0u64;
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        if let Err(e) = out.write_all(format!("{seq}\n").as_bytes()) {
            return end(format!("write: {e}"));
        }
        // Wait for this line back (TCP retransmits while the path heals).
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            match reader.read_line(&mut line) {
                Ok(0) => return end("closed by the peer".into()),
                Ok(_) if line.ends_with('\n') => {
                    let got = line.trim_end() == seq.to_string();
                    line.clear();
                    if got {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return end(format!("read: {e}")),
            }
        }
        let now = Instant::now();
        if let Ok(mut c) = seen.lock() {
            if let Some(last) = c.last {
                c.longest_gap = c.longest_gap.max(now - last);
            }
            c.last = Some(now);
            c.echoes += 1;
        }
        next += every;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
}

impl Drop for Echoers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// How many of `conns` still echo since `t`, and the longest gap any of
/// those saw.
pub fn survivors(conns: &[Connection], t: Instant) -> (usize, Duration) {
    let alive: Vec<&Connection> = conns.iter().filter(|c| c.alive_since(t)).collect();
    let gap = alive
        .iter()
        .map(|c| c.longest_gap)
        .max()
        .unwrap_or_default();
    (alive.len(), gap)
}

/// New short connections at a steady rate: each connects, sends a line,
/// waits for it back and closes. What they saw is counted.
#[derive(Debug)]
pub struct Churn {
    stop: Arc<AtomicBool>,
    counts: Arc<ChurnCounts>,
    threads: Vec<JoinHandle<Result<(), Error>>>,
}

/// What [`Churn`]'s connections saw.
#[derive(Debug, Default)]
pub struct ChurnCounts {
    /// Connections tried.
    pub tried: std::sync::atomic::AtomicU64,
    /// Echoed and closed cleanly.
    pub done: std::sync::atomic::AtomicU64,
    /// Reset (refused, or reset once open).
    pub reset: std::sync::atomic::AtomicU64,
    /// Timed out or failed otherwise.
    pub failed: std::sync::atomic::AtomicU64,
}

/// A snapshot of [`ChurnCounts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChurnReport {
    pub tried: u64,
    pub done: u64,
    pub reset: u64,
    pub failed: u64,
}

impl Churn {
    /// `per_sec` new connections a second to `target` from inside
    /// `node`, spread over `workers` threads.
    pub fn start(
        node: &Node,
        target: SocketAddr,
        per_sec: u32,
        workers: u32,
    ) -> Result<Self, Error> {
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(ChurnCounts::default());
        let every = Duration::from_secs(1) * workers.max(1) / per_sec.max(1);
        let mut threads = Vec::new();
        for _ in 0..workers.max(1) {
            let (stop, counts) = (stop.clone(), counts.clone());
            threads.push(node.thread(move || churn_loop(target, every, &stop, &counts))?);
        }
        Ok(Self {
            stop,
            counts,
            threads,
        })
    }

    /// What the connections saw so far.
    pub fn report(&self) -> ChurnReport {
        let c = &self.counts;
        ChurnReport {
            tried: c.tried.load(Ordering::Relaxed),
            done: c.done.load(Ordering::Relaxed),
            reset: c.reset.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
        }
    }
}

fn churn_one(target: SocketAddr) -> std::io::Result<()> {
    let mut s = TcpStream::connect_timeout(&target, Duration::from_millis(300))?;
    s.set_read_timeout(Some(Duration::from_secs(1)))?;
    s.set_write_timeout(Some(Duration::from_secs(1)))?;
    s.write_all(b"churn\n")?;
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line)?;
    if line == "churn\n" {
        Ok(())
    } else {
        Err(std::io::Error::other("no echo"))
    }
}

fn churn_loop(target: SocketAddr, every: Duration, stop: &AtomicBool, counts: &ChurnCounts) {
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        counts.tried.fetch_add(1, Ordering::Relaxed);
        let counter = match churn_one(target) {
            Ok(()) => &counts.done,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                &counts.reset
            }
            Err(_) => &counts.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        next += every;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else if now - next > Duration::from_secs(1) {
            // Far behind (an outage): no burst to catch up.
            next = now;
        }
    }
}

impl Drop for Churn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
