//! Sans-IO BFD (RFC 5880, single-hop RFC 5881, multihop RFC 5883).
//!
//! This crate has no sockets and no clock, like `vrrp`: the daemon's
//! driver owns the UDP sockets (3784/4784, TTL 255) and the timers.
//! - [`wire`]: the control packet as a checked view over bytes, and its
//!   parsed form;
//! - [`session`]: one session's state machine (asynchronous mode), its
//!   timers, jitter and poll sequence.

#![forbid(unsafe_code)]

pub mod session;
pub mod wire;

pub use session::{Config, Output, Refused, Session};
pub use wire::{Control, Diag, State};
