//! Sans-IO BFD (RFC 5880, single-hop RFC 5881, multihop RFC 5883).
//!
//! This crate has no sockets and no clock, like `vrrp`: the daemon's
//! driver owns the UDP sockets (3784/4784, TTL 255) and the timers.
//! So far it holds the wire format ([`wire`]): the control packet as a
//! checked view over bytes, and its parsed form. The session state
//! machine comes next (issue #21).

pub mod wire;
