//! The command line: keepalived's flags (same letters, same long names, same
//! wording) plus our subcommands `status` and `lab`. README.md, "Command line", lists them.

use std::path::PathBuf;

use clap::{ArgAction, Parser, Subcommand};

/// The default configuration file, as keepalived's.
pub const DEFAULT_CONFIG: &str = "/etc/keepalived/keepalived.conf";
/// The default control socket.
pub const DEFAULT_CONTROL: &str = "/run/keepalived-rs.sock";

/// Where the packaged systemd unit puts it (its runtime directory: the unit
/// keeps the rest of /run read-only); `status` and `reload` look there when
/// the default is absent.
pub const UNIT_CONTROL: &str = "/run/keepalived-rs/control.sock";

#[derive(Debug, Parser)]
#[command(
    name = "keepalived-rs",
    version,
    about = "A memory-safe keepalived: VRRP failover, health checks and load balancing.",
    disable_version_flag = true,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// Use the specified configuration file
    #[arg(short = 'f', long = "use-file", value_name = "FILE", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,

    /// Only run with VRRP subsystem
    #[arg(short = 'P', long = "vrrp", conflicts_with = "check_only")]
    pub vrrp_only: bool,

    /// Only run with Health-checker subsystem
    #[arg(short = 'C', long = "check")]
    pub check_only: bool,

    /// Log messages to local console
    #[arg(short = 'l', long = "log-console")]
    pub log_console: bool,

    /// Detailed log messages
    #[arg(short = 'D', long = "log-detail")]
    pub log_detail: bool,

    /// Don't fork the daemon process
    #[arg(short = 'n', long = "dont-fork")]
    pub dont_fork: bool,

    /// Use specified pidfile for parent process
    #[arg(short = 'p', long = "pid", value_name = "FILE")]
    pub pid_file: Option<PathBuf>,

    /// Check the configuration for obvious errors
    #[arg(short = 't', long = "config-test")]
    pub config_test: bool,

    /// Use the specified config-id for `@ID` lines (default: the host name)
    #[arg(short = 'i', long = "config-id", value_name = "ID")]
    pub config_id: Option<String>,

    /// The control socket `status` reads (an extension of keepalived-rs)
    #[arg(long = "control", value_name = "PATH", default_value = DEFAULT_CONTROL)]
    pub control: PathBuf,

    /// Display the version number
    #[arg(short = 'v', long = "version", action = ArgAction::Version)]
    pub version: Option<bool>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the running daemon's state, read over its control socket
    Status {
        /// Print one JSON object instead of text
        #[arg(long)]
        json: bool,
        /// The daemon's control socket
        #[arg(long = "control", value_name = "PATH", default_value = DEFAULT_CONTROL)]
        control: PathBuf,
    },
    /// Make the running daemon reload its configuration (as SIGHUP does);
    /// prints the errors and exits 1 if it refused the new one
    Reload {
        /// The daemon's control socket
        #[arg(long = "control", value_name = "PATH", default_value = DEFAULT_CONTROL)]
        control: PathBuf,
    },
    /// Run the experiments of the article the project started from, in
    /// network namespaces (needs root)
    #[cfg(feature = "lab")]
    Lab {
        /// Which experiment
        #[arg(value_enum, default_value_t = Scenario::LvsDr)]
        scenario: Scenario,
        /// Keep the lab up this many seconds after the run, to look around
        /// (`ip netns exec krs-…-client …`); Ctrl-C ends it early
        #[arg(long, value_name = "SECONDS", default_value_t = 0)]
        hold: u64,
        /// `lvs-dr`'s data plane: `nftables` (the default where the kernel
        /// has no IPVS) or `ipvs` — on a kernel without IPVS, the run boots
        /// Debian's kernel in a VM (virtme-ng, qemu) and runs there
        #[arg(long, value_enum, value_name = "PLANE")]
        dataplane: Option<LabPlane>,
        /// `lvs-dr` on IPVS: run keepalived (the distribution's) on this
        /// director instead of keepalived-rs, to pair the two
        #[arg(long, value_enum, value_name = "DIRECTOR")]
        keepalived: Option<Director>,
    },
}

#[cfg(feature = "lab")]
pub use lab::{Director, LabPlane, Scenario};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalived_flags_parse_as_keepalived_reads_them() {
        let cli = Cli::try_parse_from([
            "keepalived-rs",
            "-n",
            "-l",
            "-D",
            "-f",
            "/tmp/k.conf",
            "-p",
            "/run/k.pid",
            "-P",
        ])
        .unwrap();
        assert!(cli.dont_fork && cli.log_console && cli.log_detail && cli.vrrp_only);
        assert_eq!(cli.config, PathBuf::from("/tmp/k.conf"));
        assert_eq!(cli.pid_file, Some(PathBuf::from("/run/k.pid")));
        assert!(cli.command.is_none());
    }

    #[test]
    fn long_names_are_keepalived_s() {
        let cli = Cli::try_parse_from([
            "keepalived-rs",
            "--use-file=/x",
            "--dont-fork",
            "--log-console",
            "--config-test",
        ])
        .unwrap();
        assert_eq!(cli.config, PathBuf::from("/x"));
        assert!(cli.dont_fork && cli.log_console && cli.config_test);
    }

    #[test]
    fn defaults_match_the_contract() {
        let cli = Cli::try_parse_from(["keepalived-rs"]).unwrap();
        assert_eq!(cli.config, PathBuf::from(DEFAULT_CONFIG));
        assert_eq!(cli.control, PathBuf::from(DEFAULT_CONTROL));
    }

    #[test]
    fn vrrp_only_and_check_only_exclude_each_other() {
        assert!(Cli::try_parse_from(["keepalived-rs", "-P", "-C"]).is_err());
    }

    #[test]
    #[cfg(feature = "lab")]
    fn subcommands_parse() {
        let cli = Cli::try_parse_from(["keepalived-rs", "status", "--json"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Status { json: true, .. })
        ));
        let cli = Cli::try_parse_from(["keepalived-rs", "lab"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Lab {
                scenario: Scenario::LvsDr,
                hold: 0,
                dataplane: None,
                keepalived: None,
            })
        ));
        let cli =
            Cli::try_parse_from(["keepalived-rs", "lab", "split-brain", "--hold", "5"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Lab {
                scenario: Scenario::SplitBrain,
                hold: 5,
                ..
            })
        ));
        let cli = Cli::try_parse_from([
            "keepalived-rs",
            "lab",
            "lvs-dr",
            "--dataplane",
            "ipvs",
            "--keepalived",
            "lb2",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Lab {
                dataplane: Some(LabPlane::Ipvs),
                keepalived: Some(Director::Lb2),
                ..
            })
        ));
        assert!(Cli::try_parse_from(["keepalived-rs", "lab", "nonsense"]).is_err());
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
