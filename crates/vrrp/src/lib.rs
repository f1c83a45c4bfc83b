//! Sans-IO VRRP: RFC 3768 (v2) and RFC 9568 (v3), IPv4 and IPv6.
//!
//! No sockets, no clock, no async. The driver owns those; this crate owns every
//! decision:
//! - [`wire`]: advertisements as bytes ([`wire::Packet`]) and parsed
//!   ([`wire::Advert`]), with checksums;
//! - [`router`]: one virtual router's state machine — `handle(now, input)`
//!   returns [`router::Action`]s, `poll_at()` says when to come back;
//! - [`sync`]: sync groups, whose members change state together;
//! - [`guard`]: the split-brain guard's decisions (extension);
//! - [`time`]: the [`time::Instant`] the driver passes in.

#![forbid(unsafe_code)]

pub mod auth_hmac;
pub mod guard;
pub mod router;
pub mod sync;
pub mod time;
pub mod wire;

pub use router::{Action, Config, Counters, Dest, Drop, InitialState, Input, Router, StateName};
pub use time::{Deadlines, Instant};
pub use wire::{Advert, Auth, Family, Version};
