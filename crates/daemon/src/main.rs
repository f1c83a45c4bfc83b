//! `keepalived-rs`: the daemon binary and its subcommands.

use keepalived_rs::{
    checks, cli, control, log_diagnostics, logging, metrics, reload, sdnotify, status, vrrp,
};
use std::process::ExitCode;

use std::io::Write as _;

use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Status { json, ref control }) => status::run(control, json).map(|()| 0),
        Some(Command::Reload { ref control }) => status::reload(control),
        #[cfg(feature = "lab")]
        Some(Command::Lab {
            scenario,
            hold,
            dataplane,
            keepalived,
        }) => lab::run(
            scenario,
            std::time::Duration::from_secs(hold),
            lab::Options {
                dataplane,
                keepalived,
            },
        ),
        None if cli.config_test => config_test(&cli),
        None => daemon(&cli),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("keepalived-rs: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// `-t`: load the configuration and report every problem; exit 1 on errors.
fn config_test(cli: &Cli) -> anyhow::Result<u8> {
    use std::io::IsTerminal as _;
    let loaded = load_config(cli);
    let mut err = std::io::stderr().lock();
    for line in loaded.rendered() {
        writeln!(err, "{line}")?;
    }
    // Said on a terminal, as `nginx -t` says it; silent in scripts, as
    // keepalived's `-t` is.
    if err.is_terminal() {
        let path = cli.config.display();
        if loaded.has_errors() {
            writeln!(err, "keepalived-rs: configuration file {path} test failed")?;
        } else {
            let warnings = loaded.rendered().len();
            writeln!(
                err,
                "keepalived-rs: configuration file {path} test is successful ({warnings} warning{})",
                if warnings == 1 { "" } else { "s" }
            )?;
        }
    }
    Ok(u8::from(loaded.has_errors()))
}

/// Reads the configuration named on the command line.
fn load_config(cli: &Cli) -> kaconf::Loaded {
    keepalived_rs::preflight::load(&cli.config, cli.config_id.clone())
}

/// Lifts the soft limit on open files to the hard one: a proxied
/// connection holds two sockets, and 1,024 would cap the proxy at ~500
/// connections (keepalived raises its limit for its checkers likewise).
fn raise_file_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!("cannot raise the open-file limit from {soft} to {hard}: {e}");
            }
        }
        _ => {}
    }
}

/// The main thread after start: reloads on SIGHUP (and, when VRRP does
/// not run, pets systemd's watchdog) until a stop, or until the VRRP
/// thread or the checkers end.
fn supervise<T, U>(
    vrrp_thread: Option<&std::thread::JoinHandle<T>>,
    checks: Option<&std::thread::JoinHandle<U>>,
    bfd: Option<&std::thread::JoinHandle<()>>,
    stop: &std::sync::atomic::AtomicBool,
    hup: &std::sync::atomic::AtomicBool,
    reloader: &reload::Reloader,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let watchdog = sdnotify::watchdog().map(|d| d / 2);
    let mut petted = std::time::Instant::now();
    loop {
        // Either part ending ends the daemon: a checker thread that died
        // must not leave VRRP running while systemd's watchdog is petted.
        let ended = (vrrp_thread.is_none() && checks.is_none() && bfd.is_none())
            || vrrp_thread.is_some_and(std::thread::JoinHandle::is_finished)
            || checks.is_some_and(std::thread::JoinHandle::is_finished)
            || bfd.is_some_and(std::thread::JoinHandle::is_finished);
        if ended || stop.load(Relaxed) {
            return;
        }
        if hup.swap(false, Relaxed) {
            let _ = reloader.reload();
        }
        // With VRRP running, its own loop pets the watchdog (it is what
        // the watchdog vouches for); without it, the checkers being alive.
        if let Some(every) = watchdog.filter(|_| vrrp_thread.is_none()) {
            if petted.elapsed() >= every {
                sdnotify::notify("WATCHDOG=1");
                petted = std::time::Instant::now();
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Waits for the threads to end, removes the pid file and says how it
/// went.
fn finish(
    vrrp_thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
    checks: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
    notifier: keepalived_rs::notify::Notifier,
    mut followers: Followers,
    stop: &std::sync::atomic::AtomicBool,
    pid_file: Option<&std::path::Path>,
) -> u8 {
    // Whichever part ended (a stop, or a thread that died), every part
    // stops now: VRRP sends priority 0 and removes its VIPs, the checkers
    // end and the data planes remove their tables, before the pid file goes.
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut result = vrrp_thread.map_or(Ok(()), |v| {
        v.join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the VRRP thread panicked")))
    });
    if let Some(t) = checks {
        let r = t
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the checker thread panicked")));
        if result.is_ok() {
            result = r;
        }
    }
    // IPVS's sync daemons and conntrackd stop once VRRP has (its senders
    // are gone); the BFD sessions say AdminDown.
    if let Some(t) = followers.bfd.take() {
        let _ = t.join();
    }
    drop(followers);
    // The parts' last notifications (STOP lines, notify_stop) are done
    // before the pid file goes.
    notifier.finish();
    if let Some(p) = &pid_file {
        let _ = std::fs::remove_file(p);
    }
    match result {
        Ok(()) => {
            tracing::info!("Stopped Keepalived-rs v{}", env!("CARGO_PKG_VERSION"));
            0
        }
        Err(e) => {
            tracing::error!("{e:#}");
            1
        }
    }
}

/// What follows the VRRP instances' states: IPVS's sync daemon and
/// conntrackd. Dropped, they stop (once the VRRP thread has let go).
struct Followers {
    syncd: keepalived_rs::syncd::Follower,
    ctsync: Option<keepalived_rs::syncd::Follower>,
    flowsync: Option<keepalived_rs::syncd::Follower>,
    /// The BFD sessions' thread, and what it tells the VRRP thread.
    bfd: Option<std::thread::JoinHandle<()>>,
    hub: std::sync::Arc<keepalived_rs::bfdd::Hub>,
}

impl Followers {
    fn start(
        cli: &Cli,
        config: &kaconf::Config,
        (run_vrrp, run_checks): (bool, bool),
        status: &control::Shared,
        reloader: &reload::Reloader,
        stop: &std::sync::Arc<std::sync::atomic::AtomicBool>,
        notifier: &keepalived_rs::notify::Notifier,
    ) -> anyhow::Result<Self> {
        // BFD first: the VRRP thread and the checkers read its sessions.
        let hub = std::sync::Arc::new(keepalived_rs::bfdd::Hub::default());
        let bfd = keepalived_rs::bfdd::start(
            config,
            hub.clone(),
            stop.clone(),
            status.clone(),
            reloader.subscribe(),
            run_vrrp.then(|| notifier.sender(keepalived_rs::notify::Source::Vrrp)),
        )?;
        let parts = keepalived_rs::syncd::Parts {
            vrrp: run_vrrp,
            checks: run_checks,
        };
        // IPVS's connection sync daemon, following the instance it names.
        let syncd =
            keepalived_rs::syncd::start(config, parts, status.clone(), reloader.subscribe())?;
        // The nftables DR flows, sent or taken as the instance says.
        let flowsync =
            keepalived_rs::flowsync::start(config, parts, status.clone(), reloader.subscribe())?;
        // conntrackd for the nftables planes: the VIPs are held from here
        // on, before the VRRP thread can add them.
        let ctsync = match keepalived_rs::ctsync::spec(config).filter(|_| run_vrrp) {
            Some(spec) => Some(keepalived_rs::ctsync::start(
                spec,
                cli.control.clone(),
                status.clone(),
            )?),
            None => None,
        };
        Ok(Self {
            syncd,
            ctsync,
            flowsync,
            bfd,
            hub,
        })
    }

    fn senders(&self) -> Vec<std::sync::mpsc::Sender<keepalived_rs::syncd::Msg>> {
        [
            self.syncd.sender(),
            self.ctsync
                .as_ref()
                .and_then(keepalived_rs::syncd::Follower::sender),
            self.flowsync
                .as_ref()
                .and_then(keepalived_rs::syncd::Follower::sender),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// Opens the control socket and, with `metrics_listen`, the metrics
/// endpoint.
fn serve(
    cli: &Cli,
    config: &kaconf::Config,
    status: &control::Shared,
    reloader: &std::sync::Arc<reload::Reloader>,
) -> anyhow::Result<control::Server> {
    let r = reloader.clone();
    let server = control::serve(
        &cli.control,
        status.clone(),
        Some(std::sync::Arc::new(move || r.reload())),
        control::Access::from_config(config.globals().control_socket_group.as_deref()),
    )
    .map_err(|e| anyhow::anyhow!("control socket {}: {e}", cli.control.display()))?;
    if let Some(ep) = config.globals().metrics_listen {
        let addr = std::net::SocketAddr::new(ep.addr, ep.port.unwrap_or(9650));
        metrics::serve(addr, status.clone())
            .map_err(|e| anyhow::anyhow!("metrics_listen {addr}: {e}"))?;
    }
    Ok(server)
}

/// Which parts run (VRRP, the checkers); `None`, said, when nothing
/// would (no instance, no virtual server, no BFD session).
fn parts(cli: &Cli, config: &kaconf::Config) -> Option<(bool, bool)> {
    let run_vrrp = !cli.check_only && !config.instances.is_empty();
    let run_checks = !cli.vrrp_only && !config.virtual_servers.is_empty();
    if !run_vrrp && !run_checks && config.bfd_instances.is_empty() {
        tracing::error!(
            "nothing to run: no vrrp_instance (or -C), no virtual_server (or -P), no bfd_instance"
        );
        return None;
    }
    Some((run_vrrp, run_checks))
}

/// Runs the daemon: the VRRP thread and the checkers' thread (with the data
/// planes), or one of them with `-P` / `-C`.
fn daemon(cli: &Cli) -> anyhow::Result<u8> {
    let target = if cli.log_console {
        logging::Target::Console
    } else {
        logging::Target::Syslog
    };
    logging::init(target, cli.log_detail);
    tracing::info!("Starting Keepalived-rs v{}", env!("CARGO_PKG_VERSION"));
    let loaded = load_config(cli);
    log_diagnostics(&loaded);
    if loaded.has_errors() {
        tracing::error!("configuration has errors; not starting");
        return Ok(1);
    }
    let Some((run_vrrp, run_checks)) = parts(cli, &loaded.config) else {
        return Ok(1);
    };
    if !cli.dont_fork {
        tracing::warn!("keepalived-rs does not fork yet; running in the foreground");
    }
    raise_file_limit();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone())?;
    }
    let pid_file = cli.pid_file.clone();
    // Never through a symlink planted at the path (O_NOFOLLOW).
    if let Some(p) = &pid_file {
        keepalived_rs::pidfile::write(p)
            .map_err(|e| anyhow::anyhow!("pid file {}: {e}", p.display()))?;
    }
    let status = control::Shared::default();
    let reloader = std::sync::Arc::new(reload::Reloader::new(
        cli.config.clone(),
        cli.config_id.clone(),
    ));
    let _control = serve(cli, &loaded.config, &status, &reloader)?;
    let hup = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())?;
    let config = std::sync::Arc::new(loaded.config);
    // One notifier for both parts (scripts, FIFOs, mail); it outlives them.
    let notifier = keepalived_rs::notify::for_config(&config, run_vrrp, run_checks)?;
    let parts = (run_vrrp, run_checks);
    let followers = Followers::start(cli, &config, parts, &status, &reloader, &stop, &notifier)?;
    // The health checkers on a thread (and runtime) of their own; the VRRP
    // thread never waits for them.
    let checks = if run_checks {
        let (config, stop, status) = (config.clone(), stop.clone(), status.clone());
        let reloads = reloader.subscribe();
        let notify = notifier.sender(keepalived_rs::notify::Source::Checkers);
        Some(
            std::thread::Builder::new()
                .name("check".into())
                .spawn(move || checks::run(&config, &stop, &status, reloads, notify))?,
        )
    } else {
        None
    };
    let vrrp_thread = if run_vrrp {
        let (config, stop2, status) = (config.clone(), stop.clone(), status.clone());
        let reloads = reloader.subscribe();
        let notify = notifier.sender(keepalived_rs::notify::Source::Vrrp);
        let sync = followers.senders();
        let hub = followers.hub.clone();
        match std::thread::Builder::new()
            .name("vrrp".into())
            .spawn(move || vrrp::run(&config, &stop2, &status, &reloads, notify, sync, hub))
        {
            Ok(t) => Some(t),
            Err(e) => {
                // The checkers (and their data planes) are running: stop
                // them as on any stop, then fail.
                tracing::error!("cannot start the VRRP thread: {e}");
                let code = finish(
                    None,
                    checks,
                    notifier,
                    followers,
                    &stop,
                    pid_file.as_deref(),
                );
                return Ok(code.max(1));
            }
        }
    } else {
        None
    };
    sdnotify::notify("READY=1");
    supervise(
        vrrp_thread.as_ref(),
        checks.as_ref(),
        followers.bfd.as_ref(),
        &stop,
        &hup,
        &reloader,
    );
    sdnotify::notify("STOPPING=1");
    Ok(finish(
        vrrp_thread,
        checks,
        notifier,
        followers,
        &stop,
        pid_file.as_deref(),
    ))
}
