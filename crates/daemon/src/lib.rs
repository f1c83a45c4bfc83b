//! `keepalived-rs` as a library: the daemon's parts, so that the binary
//! (`src/main.rs`), the fuzz targets and the tests share one conversion of
//! a configuration into what runs.

pub mod bfdd;
pub mod change;
pub mod checks;
pub mod cli;
pub mod control;
pub mod ctsync;
pub mod dataplane;
pub mod deadline;
pub mod exec;
pub mod flowsync;
pub mod logging;
pub mod metrics;
pub mod netlink;
pub mod notify;
pub mod pidfile;
pub mod preflight;
pub mod reload;
pub mod sdnotify;
pub mod status;
pub mod syncd;
mod track;
pub mod vrrp;
mod witness;

/// Logs what loading the configuration found, each with its file:line.
pub fn log_diagnostics(loaded: &kaconf::Loaded) {
    for d in &loaded.diagnostics {
        let line = d.render(&loaded.sources);
        match d.severity {
            kaconf::Severity::Error => tracing::error!("{line}"),
            kaconf::Severity::Warning => tracing::warn!("{line}"),
        }
    }
}
