//! The IPVS data plane's socket: generic netlink to the kernel's IPVS
//! (`lb::ipvs` builds the messages), for kernels that have it. This
//! kernel does not (`/proc/net/ip_vs` is absent), so it is exercised only
//! by a test that skips here with its reason.

use netlink_sys::{protocols::NETLINK_GENERIC, Socket, SocketAddr};

/// A generic netlink socket bound to the IPVS family.
#[derive(Debug)]
pub struct Ipvs {
    socket: Socket,
    family: u16,
    seq: u32,
    buf: Vec<u8>,
}

/// Why IPVS cannot be used, in words an operator can act on.
pub fn unavailable() -> Option<String> {
    (!std::path::Path::new("/proc/net/ip_vs").exists()).then(|| {
        "this kernel has no IPVS (/proc/net/ip_vs is absent; `modprobe ip_vs` loads it where it is built)".to_owned()
    })
}

impl Ipvs {
    /// Opens the socket and looks the IPVS family up.
    pub fn open() -> Result<Self, String> {
        if let Some(why) = unavailable() {
            return Err(why);
        }
        let mut socket =
            Socket::new(NETLINK_GENERIC).map_err(|e| format!("generic netlink: {e}"))?;
        socket
            .bind_auto()
            .map_err(|e| format!("generic netlink: {e}"))?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(|e| format!("generic netlink: {e}"))?;
        let mut me = Self {
            socket,
            family: 0,
            seq: 1,
            buf: Vec::with_capacity(16 * 1024),
        };
        me.socket
            .send(&lb::ipvs::get_family(me.seq), 0)
            .map_err(|e| format!("generic netlink: {e}"))?;
        me.buf.clear();
        me.socket
            .recv(&mut me.buf, 0)
            .map_err(|e| format!("generic netlink: {e}"))?;
        me.family = lb::ipvs::parse_family(&me.buf)
            .map_err(|e| format!("the kernel has no IPVS family (error {e})"))?;
        Ok(me)
    }

    /// Sends one command and waits for its acknowledgement.
    pub fn send(&mut self, cmd: u8, attrs: &[u8]) -> Result<(), String> {
        self.seq = self.seq.wrapping_add(1);
        let msg = lb::ipvs::message(self.family, self.seq, cmd, attrs);
        self.socket
            .send(&msg, 0)
            .map_err(|e| format!("IPVS: {e}"))?;
        // The answer to this command (anything older queued is skipped).
        loop {
            self.buf.clear();
            self.socket
                .recv(&mut self.buf, 0)
                .map_err(|e| format!("IPVS: {e}"))?;
            if let Some(answer) = ack(&self.buf, self.seq) {
                return answer.map_err(|e| format!("IPVS refused command {cmd}: {e}"));
            }
        }
    }
}

/// What the kernel said to request `seq` in `buf`: `None` if `buf`
/// answers another request; `Ok` for the acknowledgement (NLMSG_ERROR with
/// 0); else the error it carries, or that it is no acknowledgement.
pub fn ack(buf: &[u8], seq: u32) -> Option<Result<(), String>> {
    if lb::ipvs::seq_of(buf) != seq {
        return None;
    }
    Some(match buf.get(16..20) {
        Some(b) if buf.get(4..6) == Some(&2u16.to_ne_bytes()) => {
            let e = i32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
            if e == 0 {
                Ok(())
            } else {
                Err(std::io::Error::from_raw_os_error(e.saturating_neg()).to_string())
            }
        }
        _ => Err("no acknowledgement".into()),
    })
}

/// The IPVS data plane: the kernel's IPVS table, changed by the diff of
/// what we last applied and what is wanted.
#[derive(Debug)]
pub struct Plane {
    socket: Ipvs,
    applied: Option<Vec<lb::ipvs::Service>>,
}

impl Plane {
    pub fn open() -> Result<Self, String> {
        Ok(Self {
            socket: Ipvs::open()?,
            applied: None,
        })
    }
}

/// IPVS's form of a desired service.
pub fn service(s: &lb::nft::Service) -> lb::ipvs::Service {
    use lb::nft::{Kind, Proto};
    let forward = match s.kind {
        Kind::Dr => lb::ipvs::Forward::Route,
        Kind::Nat => lb::ipvs::Forward::Masq,
    };
    lb::ipvs::Service {
        key: lb::ipvs::ServiceKey {
            addr: s.vip,
            fwmark: s.fwmark,
            protocol: match s.proto {
                Proto::Tcp => 6,
                Proto::Udp => 17,
            },
            port: s.port,
        },
        scheduler: s.algo.name().to_owned(),
        persistence: s
            .persistence
            .map(|(t, p)| (u32::try_from(t.as_secs()).unwrap_or(u32::MAX), p)),
        dests: s
            .reals
            .iter()
            .map(|r| lb::ipvs::Dest {
                addr: r.addr,
                port: r.port,
                forward,
                weight: r.weight,
                upper: 0,
                lower: 0,
            })
            .collect(),
    }
}

impl lb::DataPlane for Plane {
    fn name(&self) -> &'static str {
        "IPVS"
    }

    fn apply(&mut self, desired: &lb::nft::Desired) -> Result<bool, String> {
        let want: Vec<lb::ipvs::Service> = desired.services.iter().map(service).collect();
        let old = match &self.applied {
            Some(old) if *old == want => return Ok(false),
            Some(old) => old.clone(),
            None => {
                // A previous run's services of ours: gone first (an absent
                // one is not an error).
                for s in &want {
                    let _ = self
                        .socket
                        .send(lb::ipvs::cmd::DEL_SERVICE, &lb::ipvs::service_key(&s.key));
                }
                Vec::new()
            }
        };
        for (cmd, attrs) in lb::ipvs::diff(&old, &want) {
            if let Err(e) = self.socket.send(cmd, &attrs) {
                // Half applied: the next call deletes ours and rebuilds.
                self.applied = None;
                return Err(e);
            }
        }
        self.applied = Some(want);
        Ok(true)
    }

    fn clear(&mut self) -> Result<(), String> {
        if let Some(old) = self.applied.take() {
            for (cmd, attrs) in lb::ipvs::diff(&old, &[]) {
                self.socket.send(cmd, &attrs)?;
            }
        }
        Ok(())
    }
}
