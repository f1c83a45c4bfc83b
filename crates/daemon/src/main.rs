//! `keepalived-rs`: the daemon binary and its subcommands.

mod cli;
mod lab;
mod logging;
mod status;

use std::process::ExitCode;
use std::time::Duration;

use std::io::Write as _;

use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Status { json, ref control }) => status::run(control, json).map(|()| 0),
        Some(Command::Lab { scenario, hold }) => lab::run(scenario, Duration::from_secs(hold)),
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
    let loaded = load_config(cli);
    let mut err = std::io::stderr().lock();
    for line in loaded.rendered() {
        writeln!(err, "{line}")?;
    }
    Ok(u8::from(loaded.has_errors()))
}

/// Reads the configuration named on the command line.
fn load_config(cli: &Cli) -> kaconf::Loaded {
    let opts = kaconf::Options {
        config_id: cli.config_id.clone().or_else(kaconf::default_config_id),
        check_interfaces: true,
    };
    kaconf::load(&cli.config, &opts)
}

/// Runs the daemon.
#[allow(clippy::unnecessary_wraps)] // same shape as the other commands; fallible once it runs
fn daemon(cli: &Cli) -> anyhow::Result<u8> {
    let target = if cli.log_console {
        logging::Target::Console
    } else {
        logging::Target::Syslog
    };
    logging::init(target, cli.log_detail);
    tracing::info!("Starting Keepalived-rs v{}", env!("CARGO_PKG_VERSION"));
    if let Err(e) = std::fs::metadata(&cli.config) {
        tracing::error!(
            "Configuration file '{}' is not readable: {e}",
            cli.config.display()
        );
        return Ok(1);
    }
    tracing::error!("the VRRP engine and the checkers are not built yet; nothing to run");
    Ok(1)
}
