//! Helpers the daemon's integration tests share (each test file that
//! needs them says `mod common;`; not every file uses every helper).

#![allow(dead_code)]

/// The daemon under test: this build's, or another one
/// (`KEEPALIVED_RS_BIN`, e.g. an older build, to see a test fail there).
pub fn bin() -> String {
    std::env::var("KEEPALIVED_RS_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_keepalived-rs").into())
}

/// Which daemon a test runs: ours or keepalived (Debian's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Daemon {
    Ours,
    Keepalived,
}

impl Daemon {
    /// A short tag for file names: `rs`, `ka`.
    pub fn name(self) -> &'static str {
        match self {
            Daemon::Ours => "rs",
            Daemon::Keepalived => "ka",
        }
    }
}

/// The text of a caught panic (`std::panic::catch_unwind`'s error).
pub fn panic_text(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}
