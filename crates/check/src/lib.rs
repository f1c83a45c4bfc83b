//! Health checkers (TCP, HTTP, HTTPS, ping, UDP, MISC, DNS, SMTP, FILE) and the
//! check scheduler (issue #7). So far the pure parts: one checker's up/down
//! rules as keepalived applies them, and a bounded HTTP response-head parser.

pub mod http;
pub mod ping;
pub mod run;
pub mod state;
