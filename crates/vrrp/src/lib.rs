//! Sans-IO VRRP (RFC 3768 v2, RFC 9568 v3): wire format and state machine.
//!
//! No sockets, no clock, no async: time and packets come in as arguments and
//! actions come out. The engine itself arrives with issue #5; this crate exists
//! now so that the workspace has its final shape from the first commit.
