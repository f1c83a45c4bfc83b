//! Why a check failed, typed: what the log says on each transition, what
//! `status` shows per real server, and a metric label.

use std::time::Duration;

/// Why one check failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// No connection within the check's timeout.
    ConnectTimeout(Duration),
    /// The server answered the connect with a reset.
    Refused,
    /// Another connect error (unreachable, no route, a bind failure).
    Connect(String),
    /// Connected, but no complete answer within the timeout.
    Timeout(Duration),
    /// An HTTP status outside the accepted codes.
    HttpStatus { got: u16, expected: String },
    /// The body's MD5 is not the configured `digest`.
    Digest,
    /// The body did not match `regex` (or matched with `regex_no_match`).
    Regex { no_match: bool },
    /// Another HTTP failure (a malformed answer, a closed connection).
    Http(String),
    /// The TLS handshake failed.
    Tls(String),
    /// The DNS answer was not NOERROR, or did not come.
    Dns(String),
    /// The SMTP dialogue failed.
    Smtp(String),
    /// A `MISC_CHECK` script exited with this status.
    ScriptExit(i32),
    /// A `MISC_CHECK` script was killed by a signal.
    ScriptSignal,
    /// A `MISC_CHECK` script ran past its timeout (and was killed).
    ScriptTimeout(Duration),
    /// No echo reply (`PING_CHECK`) or no UDP reply (`UDP_CHECK`).
    NoReply(Duration),
    /// A UDP reply of the wrong length or content, or an ICMP error.
    Reply(String),
    /// Anything else.
    Other(String),
}

impl Reason {
    /// A short, stable name for the kind (a metric label).
    pub fn kind(&self) -> &'static str {
        match self {
            Reason::ConnectTimeout(_) => "connect_timeout",
            Reason::Refused => "refused",
            Reason::Connect(_) => "connect",
            Reason::Timeout(_) => "timeout",
            Reason::HttpStatus { .. } => "http_status",
            Reason::Digest => "digest",
            Reason::Regex { .. } => "regex",
            Reason::Http(_) => "http",
            Reason::Tls(_) => "tls",
            Reason::Dns(_) => "dns",
            Reason::Smtp(_) => "smtp",
            Reason::ScriptExit(_) => "script_exit",
            Reason::ScriptSignal => "script_signal",
            Reason::ScriptTimeout(_) => "script_timeout",
            Reason::NoReply(_) => "no_reply",
            Reason::Reply(_) => "reply",
            Reason::Other(_) => "other",
        }
    }
}

/// At most this many characters of a failure's text are shown.
const SHOWN: usize = 200;

/// `text` as one log line: control characters replaced, at most [`SHOWN`]
/// characters (a server's words must not forge log lines or flood them).
fn clean(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(SHOWN)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.chars().count() > SHOWN {
        out.push('…');
    }
    out
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::ConnectTimeout(d) => write!(f, "connect timeout after {}", secs(*d)),
            Reason::Refused => f.write_str("connection refused"),
            Reason::Connect(e) => write!(f, "connect: {}", clean(e)),
            Reason::Timeout(d) => write!(f, "no answer within {}", secs(*d)),
            Reason::HttpStatus { got, expected } => write!(f, "HTTP {got}, expected {expected}"),
            Reason::Digest => f.write_str("digest mismatch"),
            Reason::Regex { no_match: false } => f.write_str("regex did not match"),
            Reason::Regex { no_match: true } => f.write_str("regex matched (regex_no_match)"),
            Reason::Http(e) => write!(f, "HTTP: {}", clean(e)),
            Reason::Tls(e) => write!(f, "TLS: {}", clean(e)),
            // An rcode reads "DNS SERVFAIL"; an error "DNS: reading …".
            Reason::Dns(e) if e.bytes().all(|b| b.is_ascii_uppercase()) => write!(f, "DNS {e}"),
            Reason::Dns(e) => write!(f, "DNS: {}", clean(e)),
            Reason::Smtp(e) => write!(f, "SMTP: {}", clean(e)),
            Reason::ScriptExit(n) => write!(f, "script exit {n}"),
            Reason::ScriptSignal => f.write_str("script killed by a signal"),
            Reason::ScriptTimeout(d) => write!(f, "script timed out after {}", secs(*d)),
            Reason::NoReply(d) => write!(f, "no reply within {}", secs(*d)),
            Reason::Reply(e) => write!(f, "reply: {}", clean(e)),
            Reason::Other(e) => f.write_str(&clean(e)),
        }
    }
}

impl From<String> for Reason {
    fn from(s: String) -> Self {
        Reason::Other(s)
    }
}

impl From<&str> for Reason {
    fn from(s: &str) -> Self {
        Reason::Other(s.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_read_as_the_operator_needs_them() {
        let cases = [
            (
                Reason::ConnectTimeout(Duration::from_secs(3)),
                "connect timeout after 3.0 s",
            ),
            (Reason::Refused, "connection refused"),
            (
                Reason::HttpStatus {
                    got: 503,
                    expected: "200-299".into(),
                },
                "HTTP 503, expected 200-299",
            ),
            (Reason::Digest, "digest mismatch"),
            (
                Reason::Tls("handshake: bad record".into()),
                "TLS: handshake: bad record",
            ),
            (Reason::Dns("SERVFAIL".into()), "DNS SERVFAIL"),
            (Reason::ScriptExit(2), "script exit 2"),
            (
                Reason::NoReply(Duration::from_millis(1500)),
                "no reply within 1.5 s",
            ),
        ];
        for (r, text) in cases {
            assert_eq!(r.to_string(), text);
        }
        assert_eq!(Reason::Refused.kind(), "refused");
        // A server's words cannot forge log lines or flood them.
        let long = Reason::Smtp(format!("bad\nINFO forged{}", "x".repeat(500))).to_string();
        assert!(
            !long.contains('\n') && long.chars().count() <= 6 + SHOWN + 1,
            "{long}"
        );
        assert_eq!(
            Reason::Dns("reading the answer: refused".into()).to_string(),
            "DNS: reading the answer: refused"
        );
    }
}
