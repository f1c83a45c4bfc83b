//! Running checkers: one task per checker on a tokio runtime (its timer
//! wheel holds every checker's next deadline), verdicts kept by
//! [`crate::state::Checker`], transitions reported to the caller.
//!
//! `TCP_CHECK`, `HTTP_GET`, `SSL_GET`, `UDP_CHECK`, `PING_CHECK`,
//! `MISC_CHECK`, `DNS_CHECK`, `SMTP_CHECK` and `FILE_CHECK`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::reason::Reason;
use crate::state::{Checker, Timing, Transition};

/// What one checker does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// Connect to `target` (from `bind`, if set); success once connected.
    Tcp {
        target: SocketAddr,
        bind: Option<SocketAddr>,
    },
    /// GET each URL in turn; all must pass. `tls`: `SSL_GET`.
    Http {
        target: SocketAddr,
        bind: Option<SocketAddr>,
        urls: Vec<crate::http::Url>,
        tls: Option<Tls>,
    },
    /// `UDP_CHECK`: send `payload`; an ICMP unreachable fails it. With
    /// `reply`, an answer within the timeout is required, of a length in
    /// `min_len..=max_len`, starting with `reply`'s bytes (as many as both
    /// have); without, silence until the timeout passes.
    Udp {
        target: SocketAddr,
        bind: Option<SocketAddr>,
        payload: Vec<u8>,
        reply: Option<Vec<u8>>,
        min_len: usize,
        max_len: usize,
    },
    /// `PING_CHECK`: an ICMP / ICMPv6 echo request; the matching reply
    /// within the timeout passes.
    Ping { target: std::net::IpAddr },
    /// `MISC_CHECK`: run `argv` (as `user`, uid and gid); exit 0 passes.
    /// With `dynamic`, exit 2–255 passes too and sets the weight to
    /// exit − 2 (keepalived's `misc_dynamic`); exit 1 fails.
    Misc {
        argv: Vec<String>,
        user: Option<(u32, u32)>,
        dynamic: bool,
    },
    /// `DNS_CHECK`: one query for `name` / `qtype`; a NOERROR answer passes.
    Dns {
        target: SocketAddr,
        bind: Option<SocketAddr>,
        name: hickory_proto::rr::Name,
        qtype: hickory_proto::rr::RecordType,
    },
    /// `SMTP_CHECK` (one `host`): greeting 220, `HELO` answered 250, `QUIT`.
    Smtp {
        target: SocketAddr,
        bind: Option<SocketAddr>,
        helo: String,
    },
    /// `FILE_CHECK`: the number in `path` (read every [`FILE_POLL`]) takes
    /// the server down or changes its weight ([`crate::file::effect`]).
    File {
        path: std::path::PathBuf,
        weight: i64,
        reverse: bool,
    },
    /// `BFD_CHECK`: up while the named `bfd_instance` session is Up
    /// ([`crate::bfd`]); no probe of its own.
    Bfd { name: String },
}

impl Probe {
    /// keepalived's name for the checker.
    pub fn keyword(&self) -> &'static str {
        match self {
            Probe::Tcp { .. } => "TCP_CHECK",
            Probe::Http { tls: None, .. } => "HTTP_GET",
            Probe::Http { tls: Some(_), .. } => "SSL_GET",
            Probe::Udp { .. } => "UDP_CHECK",
            Probe::Ping { .. } => "PING_CHECK",
            Probe::Misc { .. } => "MISC_CHECK",
            Probe::Dns { .. } => "DNS_CHECK",
            Probe::Smtp { .. } => "SMTP_CHECK",
            Probe::File { .. } => "FILE_CHECK",
            Probe::Bfd { .. } => "BFD_CHECK",
        }
    }
}

/// How often a `FILE_CHECK`'s file is read (keepalived watches it with
/// inotify; a read every 100 ms is as prompt for a health decision).
pub const FILE_POLL: Duration = Duration::from_millis(100);

/// How an `SSL_GET` talks TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tls {
    /// `enable_sni`: send each URL's `virtualhost` as the server name.
    pub sni: bool,
}

/// One checker, ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// The caller's name for it (reported with each transition).
    pub id: usize,
    pub probe: Probe,
    pub timing: Timing,
    /// Bounds the whole check (connect, and later TLS, request, response).
    pub connect_timeout: Duration,
    /// The first check runs 1 s + up to `warmup` after start (spread so
    /// thousands of checkers do not fire together).
    pub warmup: Duration,
    pub alpha: bool,
    /// `SMTP_CHECK`'s counting: `retry` retries in every cycle
    /// ([`Checker::per_cycle`]).
    pub retry_each_cycle: bool,
    /// A reload's checker that carries on its predecessor's verdict
    /// (`alpha`: down): it counts retries as a checker that has run, where
    /// a new one goes down at its first failure (keepalived's start).
    pub resumed: bool,
}

/// A checker's verdict changed (or was confirmed on its first run), or a
/// `misc_dynamic` script set a new weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    State {
        id: usize,
        transition: Transition,
        /// Why, for a check that went down (`None` when up).
        reason: Option<Reason>,
    },
    /// `None`: back to the configured weight.
    Weight { id: usize, weight: Option<u32> },
    /// A `FILE_CHECK` adds `delta` to its server's weight (replacing its
    /// previous delta).
    Offset { id: usize, delta: i64 },
}

/// A TCP connection to `target` (from `bind`, if set).
async fn connect(
    target: SocketAddr,
    bind: Option<SocketAddr>,
) -> Result<tokio::net::TcpStream, Reason> {
    let socket = if target.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(|e| Reason::Connect(e.to_string()))?;
    if let Some(b) = bind {
        socket
            .bind(b)
            .map_err(|e| Reason::Connect(format!("bind {b}: {e}")))?;
    }
    socket.connect(target).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::ConnectionRefused {
            Reason::Refused
        } else {
            Reason::Connect(e.to_string())
        }
    })
}

/// A UDP socket connected to `target` (from `bind`, else any address of
/// its family): an ICMP error for what it sends comes back on its reads.
pub(crate) async fn udp_to(
    target: SocketAddr,
    bind: Option<SocketAddr>,
) -> Result<tokio::net::UdpSocket, Reason> {
    let local = bind.unwrap_or_else(|| {
        if target.is_ipv4() {
            SocketAddr::from(([0, 0, 0, 0], 0))
        } else {
            SocketAddr::from(([0u16; 8], 0))
        }
    });
    let socket = tokio::net::UdpSocket::bind(local)
        .await
        .map_err(|e| Reason::Connect(format!("bind {local}: {e}")))?;
    socket
        .connect(target)
        .await
        .map_err(|e| Reason::Connect(e.to_string()))?;
    Ok(socket)
}

/// One TCP connect, bounded by `timeout`.
pub async fn tcp_connect(
    target: SocketAddr,
    bind: Option<SocketAddr>,
    timeout: Duration,
) -> Result<(), Reason> {
    check_once(&Probe::Tcp { target, bind }, timeout).await
}

/// One check of `probe`. `timeout` bounds all of it — connect, request and
/// response together (keepalived restarts its timer on every read, so a
/// backend dripping a byte a second holds its check open for ever; here
/// it fails at the deadline).
pub async fn check_once(probe: &Probe, timeout: Duration) -> Result<(), Reason> {
    check_weighted(probe, timeout).await.map(|_| ())
}

/// [`check_once`], with the weight a `misc_dynamic` script asked for.
pub async fn check_weighted(probe: &Probe, timeout: Duration) -> Result<Option<u32>, Reason> {
    if let Probe::Misc {
        argv,
        user,
        dynamic,
    } = probe
    {
        return misc(argv, *user, *dynamic, timeout).await;
    }
    if let Probe::Udp { .. } = probe {
        return udp(probe, timeout).await.map(|()| None);
    }
    if let Probe::Ping { target } = probe {
        return match tokio::time::timeout(timeout, crate::ping::echo(*target)).await {
            Ok(r) => r.map(|()| None),
            Err(_) => Err(Reason::NoReply(timeout)),
        };
    }
    // Whether the connection was made when the deadline struck.
    let connected = std::sync::atomic::AtomicBool::new(false);
    let up = || connected.store(true, std::sync::atomic::Ordering::Relaxed);
    let work = async {
        match probe {
            // Connected is healthy; the connection ends with a reset, as
            // haproxy's checks end theirs: no FIN exchange and no TIME_WAIT
            // left on either side for every check of every server.
            Probe::Tcp { target, bind } => {
                let stream = connect(*target, *bind).await?;
                let _ = stream.set_zero_linger();
                Ok::<(), Reason>(())
            }
            Probe::Http {
                target,
                bind,
                urls,
                tls,
            } => {
                // keepalived's default Host: `ip:port` (`[ip]:port`).
                let host = target.to_string();
                for url in urls {
                    connected.store(false, std::sync::atomic::Ordering::Relaxed);
                    let stream = connect(*target, *bind).await?;
                    up();
                    match tls {
                        None => crate::http::get(&mut { stream }, url, &host).await?,
                        Some(t) => {
                            let sni = url.host.as_deref().filter(|_| t.sni);
                            let mut tls = crate::tls::connect(stream, sni, target.ip())
                                .await
                                .map_err(Reason::Tls)?;
                            crate::http::get(&mut tls, url, &host).await?;
                        }
                    }
                }
                Ok(())
            }
            Probe::Dns {
                target,
                bind,
                name,
                qtype,
            } => {
                up();
                crate::dns::check(*target, *bind, name, *qtype).await
            }
            Probe::Smtp { target, bind, helo } => {
                let mut stream = connect(*target, *bind).await?;
                up();
                crate::smtp::check(&mut stream, helo).await
            }
            Probe::File { .. } => Err(Reason::from("FILE_CHECK is not a probe")),
            Probe::Bfd { .. } => Err(Reason::from("BFD_CHECK is not a probe")),
            Probe::Misc { .. } | Probe::Udp { .. } | Probe::Ping { .. } => Ok(()),
        }
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r.map(|()| None),
        Err(_) if connected.load(std::sync::atomic::Ordering::Relaxed) => {
            Err(Reason::Timeout(timeout))
        }
        Err(_) => Err(Reason::ConnectTimeout(timeout)),
    }
}

/// One `UDP_CHECK` exchange (keepalived's rules: silence is success
/// unless a reply is required).
async fn udp(probe: &Probe, timeout: Duration) -> Result<(), Reason> {
    let Probe::Udp {
        target,
        bind,
        payload,
        reply,
        min_len,
        max_len,
    } = probe
    else {
        return Err(Reason::from("not a UDP probe"));
    };
    let socket = udp_to(*target, *bind).await?;
    socket
        .send(payload)
        .await
        .map_err(|e| Reason::Connect(format!("sending: {e}")))?;
    let mut buf = vec![0u8; max_len.saturating_add(1).min(65_536)];
    match tokio::time::timeout(timeout, socket.recv(&mut buf)).await {
        // An ICMP port/host unreachable comes back as an error here.
        Ok(Err(e)) => Err(Reason::Reply(e.to_string())),
        Ok(Ok(n)) => match reply {
            None => Ok(()),
            Some(want) => {
                let got = &buf[..n];
                let k = want.len().min(n);
                if n < *min_len || n > *max_len {
                    Err(Reason::Reply(format!(
                        "{n} bytes, not {min_len}..={max_len}"
                    )))
                } else if got[..k] != want[..k] {
                    Err(Reason::Reply("does not match".into()))
                } else {
                    Ok(())
                }
            }
        },
        Err(_) if reply.is_none() => Ok(()),
        Err(_) => Err(Reason::NoReply(timeout)),
    }
}

/// Runs a `MISC_CHECK` script in its own process group; at the timeout the
/// whole group is killed.
async fn misc(
    argv: &[String],
    user: Option<(u32, u32)>,
    dynamic: bool,
    timeout: Duration,
) -> Result<Option<u32>, Reason> {
    let (program, args) = argv.split_first().ok_or(Reason::from("empty misc_path"))?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| Reason::Other(format!("{program}: {e}")))?;
    let pid = child.id();
    let Ok(waited) = tokio::time::timeout(timeout, child.wait()).await else {
        if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = child.wait().await;
        return Err(Reason::ScriptTimeout(timeout));
    };
    let status = waited.map_err(|e| Reason::Other(e.to_string()))?;
    match status.code() {
        Some(0) => Ok(None),
        Some(n @ 2..=255) if dynamic => Ok(Some(u32::try_from(n - 2).unwrap_or(0))),
        Some(n) => Err(Reason::ScriptExit(n)),
        None => Err(Reason::ScriptSignal),
    }
}

/// A spread of the first check over `[0, warmup]`, fixed per checker (no
/// randomness needed: ids are spread by a multiplicative hash).
fn jitter(id: usize, warmup: Duration) -> Duration {
    let h = u64::try_from(id)
        .unwrap_or(u64::MAX)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        >> 11;
    // Millionths of the warmup: an exact integer below 2^20.
    let millionths = u32::try_from(h % 1_000_000).unwrap_or(0);
    warmup.mul_f64(f64::from(millionths) / 1_000_000.0)
}

/// A `FILE_CHECK`: no probe and no retries — the file's value decides at
/// once (keepalived: "we know the state of the checker immediately").
async fn file(
    id: usize,
    path: &std::path::Path,
    weight: i64,
    reverse: bool,
    tx: &tokio::sync::mpsc::UnboundedSender<Event>,
) {
    let mut last: Option<Option<i64>> = None;
    let mut refused = None;
    loop {
        let read = crate::file::read_value(path);
        match &read {
            Err(why) if refused.as_ref() != Some(why) => {
                tracing::error!("FILE_CHECK {}: {why}", path.display());
                refused = Some(why.clone());
            }
            Err(_) => {}
            Ok(_) => refused = None,
        }
        // Out of range (or refused): keepalived ignores the new value.
        if let Ok(Some(value)) = read {
            let effect = crate::file::effect(value, weight, reverse);
            if last != Some(effect) {
                let was_up = last.map(|e| e.is_some());
                let delta = effect.unwrap_or(0);
                if (last.is_none() || last.flatten().unwrap_or(0) != delta)
                    && tx.send(Event::Offset { id, delta }).is_err()
                {
                    return;
                }
                if was_up != Some(effect.is_some()) {
                    let transition = if effect.is_some() {
                        Transition::Up
                    } else {
                        Transition::Down
                    };
                    let reason = (transition == Transition::Down)
                        .then(|| Reason::Other(format!("{} reads {value}", path.display())));
                    if tx
                        .send(Event::State {
                            id,
                            transition,
                            reason,
                        })
                        .is_err()
                    {
                        return;
                    }
                }
                last = Some(effect);
            }
        }
        tokio::time::sleep(FILE_POLL).await;
    }
}

/// A `BFD_CHECK`: each change of its session's state, as it happens. A
/// session not yet decided changes nothing (the server keeps its start
/// state, down with `alpha`).
async fn bfd(id: usize, name: &str, tx: &tokio::sync::mpsc::UnboundedSender<Event>) {
    let mut rx = crate::bfd::watch();
    let mut last: Option<bool> = None;
    loop {
        let now = rx.borrow_and_update().get(name).copied().flatten();
        if let Some(up) = now {
            if last != Some(up) {
                let (transition, reason) = if up {
                    (Transition::Up, None)
                } else {
                    (
                        Transition::Down,
                        Some(Reason::Other(format!("BFD session {name} is down"))),
                    )
                };
                if tx
                    .send(Event::State {
                        id,
                        transition,
                        reason,
                    })
                    .is_err()
                {
                    return;
                }
                last = Some(up);
            }
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

async fn one(spec: Spec, tx: tokio::sync::mpsc::UnboundedSender<Event>) {
    if let Probe::Bfd { name } = &spec.probe {
        return bfd(spec.id, name, &tx).await;
    }
    if let Probe::File {
        path,
        weight,
        reverse,
    } = &spec.probe
    {
        return file(spec.id, path, *weight, *reverse, &tx).await;
    }
    let mut checker = if spec.retry_each_cycle {
        Checker::per_cycle(spec.timing, spec.alpha)
    } else {
        Checker::new(spec.timing, spec.alpha)
    };
    if spec.resumed {
        checker.resume();
    }
    let mut last_weight = None;
    tokio::time::sleep(Duration::from_secs(1) + jitter(spec.id, spec.warmup)).await;
    loop {
        // Boxed: the check's state (buffers included) exists only while it
        // runs, so a sleeping checker's task stays small.
        let result = Box::pin(check_weighted(&spec.probe, spec.connect_timeout)).await;
        // A failure drops a dynamic weight too (keepalived takes it off the
        // server's weight when the server goes down).
        let weight = result.as_ref().ok().copied().flatten();
        if weight != last_weight {
            last_weight = weight;
            if tx
                .send(Event::Weight {
                    id: spec.id,
                    weight,
                })
                .is_err()
            {
                return;
            }
        }
        crate::fault::at("check-task");
        let (change, next) = checker.result(result.is_ok());
        if let Some(transition) = change {
            let reason = result.as_ref().err().cloned();
            if tx
                .send(Event::State {
                    id: spec.id,
                    transition,
                    reason,
                })
                .is_err()
            {
                return;
            }
        }
        tokio::time::sleep(next).await;
    }
}

/// Runs `specs` until `stop` is set, calling `on_event` for each
/// transition. Blocks the calling thread (its own single-threaded runtime).
pub fn run(
    specs: Vec<Spec>,
    stop: &Arc<AtomicBool>,
    mut on_event: impl FnMut(Event),
) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut tasks: Vec<_> = specs
            .into_iter()
            .map(|s| tokio::spawn(one(s, tx.clone())))
            .collect();
        drop(tx);
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        // Until `stop`, also with no checker at all (a virtual server whose
        // real servers have none still has to be served).
        let mut open = true;
        let mut died = None;
        while !stop.load(Ordering::Relaxed) {
            tokio::select! {
                ev = rx.recv(), if open => match ev {
                    Some(ev) => on_event(ev),
                    None => open = false,
                },
                _ = tick.tick() => {
                    // A checker runs until it is aborted: one that ended
                    // panicked, and its server's verdict would stay as it
                    // is for ever. That ends the round, with an error.
                    died = tasks.iter().position(tokio::task::JoinHandle::is_finished);
                    if died.is_some() {
                        break;
                    }
                }
            }
        }
        for t in &tasks {
            t.abort();
        }
        match died {
            Some(i) => {
                let why = match tasks.swap_remove(i).await {
                    Err(e) if e.is_panic() => "it panicked".to_owned(),
                    Err(e) => e.to_string(),
                    Ok(()) => "it ended".to_owned(),
                };
                Err(std::io::Error::other(format!(
                    "health checker {i} stopped ({why}); the checkers cannot go on"
                )))
            }
            None => Ok(()),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn misc_run(script: &str, dynamic: bool, timeout: Duration) -> Result<Option<u32>, Reason> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let probe = Probe::Misc {
            argv: vec!["sh".into(), "-c".into(), script.into()],
            user: None,
            dynamic,
        };
        rt.block_on(check_weighted(&probe, timeout))
    }

    #[test]
    fn misc_check_exit_codes_and_dynamic_weights() {
        let t = Duration::from_secs(2);
        assert_eq!(misc_run("exit 0", false, t), Ok(None));
        assert_eq!(misc_run("exit 1", false, t), Err(Reason::ScriptExit(1)));
        assert_eq!(
            misc_run("exit 7", false, t),
            Err(Reason::ScriptExit(7)),
            "non-zero fails without misc_dynamic"
        );
        // misc_dynamic: 0 configured weight, 1 down, 2-255 weight exit-2.
        assert_eq!(misc_run("exit 0", true, t), Ok(None));
        assert!(misc_run("exit 1", true, t).is_err());
        assert_eq!(misc_run("exit 10", true, t), Ok(Some(8)));
        assert_eq!(misc_run("exit 255", true, t), Ok(Some(253)));
        // A script that hangs: killed at the timeout, with what it started.
        let start = std::time::Instant::now();
        assert_eq!(
            misc_run("sleep 30 & sleep 30", false, Duration::from_millis(200)),
            Err(Reason::ScriptTimeout(Duration::from_millis(200)))
        );
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn udp_check_rules_on_loopback() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        rt.block_on(async {
            let echo = tokio::net::UdpSocket::bind("127.0.0.1:0")
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let echo_addr = echo.local_addr().unwrap_or_else(|e| panic!("{e}"));
            tokio::spawn(async move {
                let mut b = [0u8; 512];
                while let Ok((n, from)) = echo.recv_from(&mut b).await {
                    let _ = echo.send_to(&b[..n], from).await;
                }
            });
            let closed = {
                let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
                s.local_addr().unwrap_or_else(|e| panic!("{e}"))
            };
            let probe = |target, reply: Option<&[u8]>| Probe::Udp {
                target,
                bind: None,
                payload: b"ping".to_vec(),
                reply: reply.map(<[u8]>::to_vec),
                min_len: 0,
                max_len: 255,
            };
            let t = Duration::from_millis(300);
            assert!(udp(&probe(echo_addr, Some(b"pi")), t).await.is_ok());
            assert!(
                udp(&probe(echo_addr, Some(b"pong")), t).await.is_err(),
                "mismatch"
            );
            assert!(udp(&probe(echo_addr, None), t).await.is_ok());
            assert!(
                udp(&probe(closed, None), t).await.is_err(),
                "port unreachable"
            );
            assert!(udp(&probe(closed, Some(b"x")), t).await.is_err());
        });
    }

    #[test]
    fn jitter_spreads_over_the_warmup() {
        let w = Duration::from_secs(10);
        let spread: Vec<Duration> = (0..1000).map(|i| jitter(i, w)).collect();
        assert!(spread.iter().all(|d| *d <= w));
        let early = spread
            .iter()
            .filter(|d| **d < Duration::from_secs(5))
            .count();
        assert!(
            (400..600).contains(&early),
            "{early} of 1000 in the first half"
        );
        assert_eq!(jitter(7, Duration::ZERO), Duration::ZERO);
    }

    /// A loopback server that accepts and then does `behave` with each
    /// connection; the HTTP check of it must fail within the deadline + 100 ms.
    fn hostile(behave: fn(std::net::TcpStream)) {
        hostile_over(behave, None);
    }

    fn hostile_over(behave: fn(std::net::TcpStream), tls: Option<Tls>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let addr = l.local_addr().unwrap_or_else(|e| panic!("{e}"));
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                std::thread::spawn(move || behave(s));
            }
        });
        let probe = Probe::Http {
            target: addr,
            bind: None,
            urls: vec![crate::http::Url {
                path: "/".into(),
                version: crate::http::Version::default(),
                regex: None,
                host: None,
                codes: crate::http::StatusCodes::default(),
                digest: Some([0; 16]),
            }],
            tls,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let timeout = Duration::from_millis(500);
        let start = std::time::Instant::now();
        let r = rt.block_on(check_once(&probe, timeout));
        let took = start.elapsed();
        assert!(r.is_err(), "a hostile backend passed");
        assert!(
            took <= timeout + Duration::from_millis(100),
            "took {took:?}"
        );
    }

    #[test]
    fn hostile_backends_fail_within_the_deadline() {
        use std::io::{Read as _, Write as _};
        // Accepts and never answers.
        hostile(|s| {
            std::thread::sleep(Duration::from_secs(5));
            drop(s);
        });
        // Drips one byte every 200 ms (keepalived would wait for ever).
        hostile(|mut s| {
            let mut req = [0u8; 512];
            let _ = s.read(&mut req);
            for b in b"HTTP/1.1 200 OK\r\nX: y\r\n\r\nbody" {
                if s.write_all(&[*b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        // A body without end for the digest: a 10 GB stream.
        hostile(|mut s| {
            let mut req = [0u8; 512];
            let _ = s.read(&mut req);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10000000000\r\n\r\n");
            let block = vec![b'x'; 65536];
            while s.write_all(&block).is_ok() {}
        });
        // A garbage status line, a status of 99999999999, an HTTP/0.9
        // answer (no head at all): refused on their first bytes.
        hostile(|mut s| {
            let mut req = [0u8; 512];
            let _ = s.read(&mut req);
            let _ = s.write_all(b"\x16\x03\x01garbage\r\n\r\n");
            std::thread::sleep(Duration::from_secs(5));
        });
        hostile(|mut s| {
            let mut req = [0u8; 512];
            let _ = s.read(&mut req);
            let _ = s.write_all(b"HTTP/1.1 99999999999 OK\r\n\r\n");
            std::thread::sleep(Duration::from_secs(5));
        });
        hostile(|mut s| {
            let mut req = [0u8; 512];
            let _ = s.read(&mut req);
            let _ = s.write_all(b"<html>this is yy web!</html>\n");
            std::thread::sleep(Duration::from_secs(5));
        });
        // Resets mid-response.
        hostile(|mut s| {
            let mut req = [0u8; 512];
            let _ = s.read(&mut req);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Le");
            let _ = s.shutdown(std::net::Shutdown::Both);
        });
    }

    #[test]
    fn hostile_tls_backends_fail_within_the_deadline() {
        use std::io::{Read as _, Write as _};
        let tls = Some(Tls::default());
        // Accepts and never answers the ClientHello: a stalled handshake.
        hostile_over(
            |s| {
                std::thread::sleep(Duration::from_secs(5));
                drop(s);
            },
            tls,
        );
        // Reads the ClientHello, then drips bytes of a record that never
        // completes.
        hostile_over(
            |mut s| {
                let mut hello = [0u8; 2048];
                let _ = s.read(&mut hello);
                for b in [0x16u8, 0x03, 0x03, 0x40, 0x00] {
                    if s.write_all(&[b]).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                std::thread::sleep(Duration::from_secs(5));
            },
            tls,
        );
        // Answers TLS with plain HTTP.
        hostile_over(
            |mut s| {
                let mut hello = [0u8; 2048];
                let _ = s.read(&mut hello);
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\n");
            },
            tls,
        );
    }

    #[test]
    fn tcp_connects_and_refusals_on_loopback() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        rt.block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let addr = l.local_addr().unwrap_or_else(|e| panic!("{e}"));
            assert!(tcp_connect(addr, None, Duration::from_secs(1))
                .await
                .is_ok());
            drop(l);
            assert!(tcp_connect(addr, None, Duration::from_secs(1))
                .await
                .is_err());
        });
    }
}
