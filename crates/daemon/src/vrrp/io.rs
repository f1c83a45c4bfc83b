//! The loop's waiting and receiving: sockets and timers polled together,
//! adverts read in batches and handed to their instance's engine.

use super::{
    AsFd, Context, Driver, Duration, Input, Instant, Result, RECV_PER_STEP, UNKNOWN_VRID_LOG,
};

/// Packets for VRIDs no instance here has: counted, and logged (debug) at
/// most once per [`UNKNOWN_VRID_LOG`] with the number since the last line.
#[derive(Debug, Default)]
pub(super) struct UnknownVrid {
    total: u64,
    since_logged: u64,
    logged_at: Option<Instant>,
}

impl UnknownVrid {
    pub(super) fn count(&mut self, now: Instant, vrid: u8, src: std::net::IpAddr) {
        self.total += 1;
        self.since_logged += 1;
        if self
            .logged_at
            .is_some_and(|at| now.since(at) < UNKNOWN_VRID_LOG)
        {
            return;
        }
        tracing::debug!(
            "{} advert(s) for VRIDs not configured here (last: VRID {vrid} from {src}; {} in all)",
            self.since_logged,
            self.total
        );
        self.since_logged = 0;
        self.logged_at = Some(now);
    }
}

impl Driver {
    /// Which sockets have packets, after waiting up to `wait`.
    /// `sockets` false: wait for timers and signals only (every socket
    /// reported not ready).
    pub(super) fn wait(&self, wait: Duration, sockets: bool) -> Result<Vec<bool>> {
        let watched = if sockets { self.sockets.len() } else { 0 };
        let mut fds: Vec<nix::poll::PollFd> = self.sockets[..watched]
            .iter()
            .map(|s| nix::poll::PollFd::new(s.fd(), nix::poll::PollFlags::POLLIN))
            .collect();
        // Link events only wake the loop; `link_changes` reads them.
        if let Some(l) = &self.link_events {
            fds.push(nix::poll::PollFd::new(l.fd(), nix::poll::PollFlags::POLLIN));
        }
        if let Some(w) = &self.wake {
            fds.push(nix::poll::PollFd::new(
                w.as_fd(),
                nix::poll::PollFlags::POLLIN,
            ));
        }
        let ms = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
        // Sub-millisecond waits round up, so a timer never spins.
        let timeout = nix::poll::PollTimeout::from(if wait.is_zero() { 0 } else { ms.max(1) });
        match nix::poll::poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e).context("poll on the VRRP sockets"),
        }
        let mut ready: Vec<bool> = fds
            .iter()
            .map(|f| {
                f.revents()
                    .is_some_and(|r| r.contains(nix::poll::PollFlags::POLLIN))
            })
            .collect();
        drop(fds);
        if let Some(mut w) = self.wake.as_ref() {
            if ready.pop() == Some(true) {
                tracing::debug!("woken by a signal");
                // Drain the pipe; the signal flags say what happened.
                let mut buf = [0u8; 64];
                while std::io::Read::read(&mut w, &mut buf).is_ok_and(|n| n > 0) {}
            }
        }
        ready.truncate(watched);
        ready.resize(self.sockets.len(), false);
        Ok(ready)
    }

    /// Reads every waiting packet of socket `si` and hands each to its instance.
    pub(super) fn receive(&mut self, si: usize) {
        // At most RECV_PER_STEP packets, then the timers: a flood of
        // protocol-112 packets must not keep a master from advertising.
        for _ in 0..RECV_PER_STEP {
            let packet = match self.sockets[si].recv() {
                Ok(Some(p)) => p,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!("receiving on {}: {e}", self.sockets[si].ifname);
                    return;
                }
            };
            let bytes = self.sockets[si].payload(&packet);
            let vrid = bytes.get(1).copied().unwrap_or(0);
            let Some(&i) = self.by_vrid.get(&(si, vrid)) else {
                let now = self.now();
                self.unknown_vrid.count(now, vrid, packet.src);
                continue;
            };
            if self.group_of[i].is_some() {
                let input = Input::Packet {
                    src: packet.src,
                    dst: packet.dst,
                    ttl: packet.ttl,
                    bytes: bytes.to_vec(),
                };
                self.feed(i, input);
                continue;
            }
            // The common case without a copy: the router reads the bytes
            // where the socket received them.
            let now = self.now();
            let mut actions = std::mem::take(&mut self.actions);
            actions.clear();
            self.instances[i].router.handle_packet(
                now,
                packet.src,
                packet.dst,
                packet.ttl,
                self.sockets[si].payload(&packet),
                &mut actions,
            );
            self.after(i, &mut actions);
        }
    }
}
