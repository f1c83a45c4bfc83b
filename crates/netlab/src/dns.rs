//! A DNS responder inside a namespace, for `DNS_CHECK` tests: it answers
//! every query with the question echoed back and the response code set
//! with [`DnsServer::set_rcode`] (or not at all after
//! [`DnsServer::set_silent`]). Stopped on drop.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::{Error, Node};

#[derive(Debug)]
pub struct DnsServer {
    stop: Arc<AtomicBool>,
    silent: Arc<AtomicBool>,
    rcode: Arc<AtomicU8>,
    thread: Option<JoinHandle<()>>,
}

/// The answer to `query` with `rcode`: same id and question, QR and RA
/// set, no records. `None` for what is not a query.
pub fn answer(query: &[u8], rcode: u8) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 {
        return None;
    }
    let mut out = query.to_vec();
    out[2] |= 0x80; // QR: a response (opcode and RD kept)
    out[3] = 0x80 | (rcode & 0x0f); // RA, rcode
                                    // An answer, authority and additional count of 0.
    out[6..12].fill(0);
    Some(out)
}

impl DnsServer {
    /// Listens on UDP `addr` inside `node`; answers NOERROR.
    pub fn start(node: &Node, addr: SocketAddr) -> Result<Self, Error> {
        let socket = node.run(move || UdpSocket::bind(addr))??;
        socket.set_read_timeout(Some(Duration::from_millis(50)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let silent = Arc::new(AtomicBool::new(false));
        let rcode = Arc::new(AtomicU8::new(0));
        let thread = {
            let (stop, silent, rcode) = (stop.clone(), silent.clone(), rcode.clone());
            std::thread::Builder::new()
                .name(format!("dns-{addr}"))
                .spawn(move || {
                    let mut buf = [0u8; 512];
                    while !stop.load(Ordering::Relaxed) {
                        let Ok((n, from)) = socket.recv_from(&mut buf) else {
                            continue;
                        };
                        if silent.load(Ordering::Relaxed) {
                            continue;
                        }
                        if let Some(a) = answer(&buf[..n], rcode.load(Ordering::Relaxed)) {
                            let _ = socket.send_to(&a, from);
                        }
                    }
                })?
        };
        Ok(Self {
            stop,
            silent,
            rcode,
            thread: Some(thread),
        })
    }

    /// Later answers carry `rcode` (0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN…).
    pub fn set_rcode(&self, rcode: u8) {
        self.rcode.store(rcode, Ordering::Relaxed);
    }

    /// Stops answering (queries are read and dropped), or starts again.
    pub fn set_silent(&self, silent: bool) {
        self.silent.store(silent, Ordering::Relaxed);
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn answers_echo_the_question_with_the_rcode() {
        let q = [
            0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 6, 0, 1,
        ];
        let a = super::answer(&q, 2).unwrap_or_default();
        assert_eq!(&a[..2], &[0x12, 0x34]);
        assert_eq!(a[2], 0x81);
        assert_eq!(a[3] & 0x0f, 2);
        assert_eq!(&a[12..], &q[12..]);
        assert_eq!(super::answer(&a, 0), None, "a response is not answered");
        assert_eq!(super::answer(&q[..5], 0), None);
    }
}
