//! A small SMTP server inside a namespace: a mail sink for alert tests
//! (it keeps every message's DATA) and a peer for `SMTP_CHECK` (its greeting
//! code can be changed to make the check fail). Stopped on drop.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::{Error, Node};

/// The messages a server received, each its DATA as text.
pub type Mails = Arc<Mutex<Vec<String>>>;

#[derive(Debug)]
pub struct SmtpServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    greeting: Arc<AtomicU16>,
    mails: Mails,
    thread: Option<JoinHandle<()>>,
}

impl SmtpServer {
    /// Listens on `addr` inside `node`; greets with 220.
    pub fn start(node: &Node, addr: SocketAddr) -> Result<Self, Error> {
        let listener = node.run(move || TcpListener::bind(addr))??;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let greeting = Arc::new(AtomicU16::new(220));
        let mails = Mails::default();
        let thread = {
            let (stop, greeting, mails) = (stop.clone(), greeting.clone(), mails.clone());
            std::thread::Builder::new()
                .name(format!("smtp-{addr}"))
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match listener.accept() {
                            Ok((conn, _)) => {
                                let (greeting, mails) = (greeting.clone(), mails.clone());
                                std::thread::spawn(move || {
                                    let code = greeting.load(Ordering::Relaxed);
                                    let _ = converse(conn, code, &mails);
                                });
                            }
                            Err(_) => std::thread::sleep(Duration::from_millis(2)),
                        }
                    }
                })?
        };
        Ok(Self {
            addr,
            stop,
            greeting,
            mails,
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Greets later connections with `code` (e.g. 554 to fail a check).
    pub fn set_greeting(&self, code: u16) {
        self.greeting.store(code, Ordering::Relaxed);
    }

    /// Every message received so far.
    pub fn mails(&self) -> Vec<String> {
        self.mails.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn converse(conn: TcpStream, greeting: u16, mails: &Mails) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut w = conn.try_clone()?;
    let mut r = BufReader::new(conn);
    write!(w, "{greeting} netlab ESMTP\r\n")?;
    if greeting != 220 {
        return Ok(());
    }
    let mut data: Option<String> = None;
    let mut line = String::new();
    while r.read_line(&mut line)? > 0 {
        if let Some(d) = data.as_mut() {
            if line == ".\r\n" {
                if let Ok(mut m) = mails.lock() {
                    m.push(data.take().unwrap_or_default());
                }
                w.write_all(b"250 queued\r\n")?;
            } else {
                d.push_str(&line);
            }
        } else {
            let cmd = line.to_ascii_uppercase();
            let reply: &[u8] = if cmd.starts_with("EHLO") || cmd.starts_with("HELO") {
                b"250 netlab\r\n"
            } else if cmd.starts_with("DATA") {
                data = Some(String::new());
                b"354 go ahead\r\n"
            } else if cmd.starts_with("QUIT") {
                w.write_all(b"221 bye\r\n")?;
                return Ok(());
            } else {
                b"250 ok\r\n"
            };
            w.write_all(reply)?;
        }
        line.clear();
    }
    Ok(())
}
