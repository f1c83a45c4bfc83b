//! A tiny HTTP/1.0 server and client that run inside a namespace: the lab's web
//! servers ("this is yy web!") and its `curl`, with no python, nginx or curl needed.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{Error, Node};

const MAX_REQUEST: usize = 8192;
const MAX_RESPONSE: usize = 1 << 20;

/// A web server answering every GET with a fixed body; stopped on drop.
#[derive(Debug)]
pub struct WebServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    status: Arc<AtomicU16>,
    hits: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl WebServer {
    /// Listens on `addr` inside `node` and answers `200 OK` with `body` + "\n".
    pub fn start(node: &Node, addr: SocketAddr, body: &str) -> Result<Self, Error> {
        let listener = node.run(move || TcpListener::bind(addr))??;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let status = Arc::new(AtomicU16::new(200));
        let hits = Arc::new(AtomicU64::new(0));
        let body = Arc::<str>::from(format!("{body}\n"));
        let thread = {
            let (stop, status, hits) = (stop.clone(), status.clone(), hits.clone());
            std::thread::Builder::new()
                .name(format!("web-{addr}"))
                .spawn(move || accept_loop(&listener, &stop, &status, &hits, &body))?
        };
        Ok(Self {
            addr,
            stop,
            status,
            hits,
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Makes every later answer carry `code` (e.g. 503 to fail an HTTP check).
    pub fn set_status(&self, code: u16) {
        self.status.store(code, Ordering::Relaxed);
    }

    /// How many requests were read and answered (counted before the answer is sent).
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Stops listening; established connections finish on their own.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn accept_loop(
    listener: &TcpListener,
    stop: &AtomicBool,
    status: &Arc<AtomicU16>,
    hits: &Arc<AtomicU64>,
    body: &Arc<str>,
) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let (status, hits, body) = (status.clone(), hits.clone(), body.clone());
                let _ = std::thread::Builder::new()
                    .name("web-conn".into())
                    .spawn(move || {
                        let _ = answer(stream, status.load(Ordering::Relaxed), &body, &hits);
                    });
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Reads one request and answers it. The hit is counted before the response
/// goes out, so a client that has its answer always sees the count include it.
fn answer(mut stream: TcpStream, status: u16, body: &str, hits: &AtomicU64) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut request = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < MAX_REQUEST {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    };
    hits.fetch_add(1, Ordering::Relaxed);
    let head = format!(
        "HTTP/1.0 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    if !request.starts_with(b"HEAD ") {
        stream.write_all(body.as_bytes())?;
    }
    stream.flush()?;
    let _ = stream.shutdown(Shutdown::Write);
    Ok(())
}

/// An HTTP response as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: String,
    /// From connect to the last byte.
    pub elapsed: Duration,
}

/// `GET path` from inside `node` to `addr`, all of it within `timeout`.
pub fn get(
    node: &Node,
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<Response, Error> {
    let path = path.to_owned();
    node.run(move || fetch(addr, &path, timeout))?
}

fn fetch(addr: SocketAddr, path: &str, timeout: Duration) -> Result<Response, Error> {
    let start = Instant::now();
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    let left = timeout
        .saturating_sub(start.elapsed())
        .max(Duration::from_millis(1));
    stream.set_read_timeout(Some(left))?;
    stream.set_write_timeout(Some(left))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: keepalived-rs-lab\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.take(MAX_RESPONSE as u64).read_to_end(&mut raw)?;
    let elapsed = start.elapsed();
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            Error::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("no HTTP status line from {addr}"),
            ))
        })?;
    Ok(Response {
        status,
        body: body.to_owned(),
        elapsed,
    })
}
