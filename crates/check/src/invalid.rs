//! A checker setting that cannot be used, and what it must be (shown at
//! the setting's `file:line` by the daemon's preflight).

/// A checker setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("DNS type `{0}`: one of A, NS, CNAME, SOA, MX, TXT, AAAA")]
    DnsType(String),
    #[error("DNS name `{name}`: {why}")]
    DnsName { name: String, why: String },
    #[error("status_code `{0}`: 100-599")]
    StatusCode(String),
    #[error("status_code `{0}`: the range is backwards")]
    StatusRange(String),
    #[error("status_code needs at least one code")]
    NoStatusCode,
    #[error("unknown regex_options `{0}`")]
    RegexOption(String),
    #[error("regex `{pattern}`: {why}")]
    Regex { pattern: String, why: String },
    #[error("digest `{0}`: 32 hex digits")]
    Digest(String),
    #[error("http_protocol `{0}`: one of 1.0, 1.0C, 1.1")]
    HttpVersion(String),
    #[error("HTTP_GET needs at least one url {{ path … }}")]
    NoUrl,
}
