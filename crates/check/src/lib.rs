//! Health checkers (TCP, HTTP, HTTPS, ping, UDP, MISC, DNS, SMTP, FILE) and the
//! check scheduler (issue #7). The pure parts — one checker's up/down rules
//! (`state`), a virtual server's quorum (`quorum`), tracked-file values
//! (`file`), the bounded HTTP head parser (`http`) — and the probes that do
//! only I/O, run by `run`.

pub mod bfd;
pub mod dns;
pub mod fault;
pub mod file;
pub mod http;
pub mod invalid;
pub mod ping;
pub mod quorum;
pub mod reason;
pub mod run;
pub mod smtp;
pub mod state;
pub mod tls;

pub use invalid::Invalid;
pub use reason::Reason;
