//! The IPVS data plane's socket: generic netlink to the kernel's IPVS
//! (`lb::ipvs` builds the messages), for kernels that have it. This
//! kernel does not (`/proc/net/ip_vs` is absent), so it is exercised only
//! by a test that skips here with its reason.

use netlink_sys::{protocols::NETLINK_GENERIC, Socket, SocketAddr};

/// A generic netlink socket bound to the IPVS family.
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
        self.buf.clear();
        self.socket
            .recv(&mut self.buf, 0)
            .map_err(|e| format!("IPVS: {e}"))?;
        // NLMSG_ERROR with 0 is the acknowledgement.
        match self.buf.get(16..20) {
            Some(b) if self.buf.get(4..6) == Some(&2u16.to_ne_bytes()) => {
                let e = i32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
                if e == 0 {
                    Ok(())
                } else {
                    Err(format!(
                        "IPVS refused command {cmd}: {}",
                        std::io::Error::from_raw_os_error(-e)
                    ))
                }
            }
            _ => Err("IPVS: no acknowledgement".into()),
        }
    }

    /// Applies the commands that turn `old` into `new`.
    pub fn apply(
        &mut self,
        old: &[lb::ipvs::Service],
        new: &[lb::ipvs::Service],
    ) -> Result<(), String> {
        for (cmd, attrs) in lb::ipvs::diff(old, new) {
            self.send(cmd, &attrs)?;
        }
        Ok(())
    }
}
