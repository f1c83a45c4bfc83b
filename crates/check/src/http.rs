//! The head of an HTTP/1.x response (status line and headers), parsed from
//! the bytes received so far, within fixed bounds: a backend can make the
//! checker read at most [`MAX_HEAD`] bytes before it has an answer. Pure: the
//! caller owns the socket and the deadline.

use crate::Invalid;

/// The most a response head (status line and headers) may take.
pub const MAX_HEAD: usize = 16 * 1024;
/// The most headers a response may carry.
pub const MAX_HEADERS: usize = 100;

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// `HTTP/1.0` → (1, 0).
    pub version: (u8, u8),
    pub status: u16,
    /// Names lower-cased, values trimmed.
    pub headers: Vec<(String, String)>,
    /// `Content-Length`, if given once and valid.
    pub content_length: Option<u64>,
    /// `Transfer-Encoding: chunked`.
    pub chunked: bool,
}

impl Head {
    /// The first value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a response is not a usable HTTP/1.x answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// No status line: an HTTP/0.9 answer (just a body), or not HTTP.
    NotHttp1,
    /// The status line is not `HTTP/1.x NNN reason`.
    BadStatusLine,
    /// A header line without a colon, or with an invalid name.
    BadHeader,
    /// Longer than [`MAX_HEAD`] or more than [`MAX_HEADERS`] headers.
    TooLarge,
    /// `Content-Length` twice with different values, or not a number.
    BadLength,
}

impl std::fmt::Display for HeadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HeadError::NotHttp1 => "not an HTTP/1.x response (HTTP/0.9 or garbage)",
            HeadError::BadStatusLine => "malformed status line",
            HeadError::BadHeader => "malformed header line",
            HeadError::TooLarge => "response head too large",
            HeadError::BadLength => "invalid Content-Length",
        })
    }
}

impl std::error::Error for HeadError {}

/// Parses the head at the start of `buf`: `Ok(None)` if more bytes are
/// needed, `Ok(Some((head, n)))` with `n` the bytes it took (the body starts
/// there).
pub fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, HeadError> {
    // Decide as early as possible that this is not HTTP/1.x, so a backend
    // answering HTTP/0.9 or garbage is failed on its first bytes.
    let prefix = b"HTTP/1.";
    let n = buf.len().min(prefix.len());
    if buf[..n] != prefix[..n] {
        return Err(HeadError::NotHttp1);
    }
    let Some(end) = find_head_end(buf) else {
        return if buf.len() > MAX_HEAD {
            Err(HeadError::TooLarge)
        } else {
            Ok(None)
        };
    };
    if end > MAX_HEAD {
        return Err(HeadError::TooLarge);
    }
    let text = &buf[..end];
    let mut lines = text
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let status_line = lines.next().ok_or(HeadError::BadStatusLine)?;
    let (version, status) = status_line_parts(status_line)?;
    let mut headers = Vec::new();
    let mut content_length = None;
    let mut chunked = false;
    for line in lines.filter(|l| !l.is_empty()) {
        if headers.len() >= MAX_HEADERS {
            return Err(HeadError::TooLarge);
        }
        let colon = line
            .iter()
            .position(|b| *b == b':')
            .ok_or(HeadError::BadHeader)?;
        let name = &line[..colon];
        if name.is_empty() || !name.iter().all(|b| is_token(*b)) {
            return Err(HeadError::BadHeader);
        }
        let name = String::from_utf8_lossy(name).to_ascii_lowercase();
        let value = String::from_utf8_lossy(&line[colon + 1..])
            .trim()
            .to_owned();
        match name.as_str() {
            "content-length" => {
                let n: u64 = value.parse().map_err(|_| HeadError::BadLength)?;
                if content_length.is_some_and(|c| c != n) {
                    return Err(HeadError::BadLength);
                }
                content_length = Some(n);
            }
            "transfer-encoding" => {
                chunked |= value
                    .split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("chunked"));
            }
            _ => {}
        }
        headers.push((name, value));
    }
    Ok(Some((
        Head {
            version,
            status,
            headers,
            content_length,
            chunked,
        },
        end,
    )))
}

/// The index just past the blank line ending the head, if it has arrived.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    let limit = buf.len().min(MAX_HEAD + 4);
    let b = &buf[..limit];
    (0..b.len()).find_map(|i| {
        if b[i..].starts_with(b"\r\n\r\n") {
            Some(i + 4)
        } else if b[i..].starts_with(b"\n\n") {
            Some(i + 2)
        } else {
            None
        }
    })
}

/// `HTTP/1.1 200 OK` → ((1, 1), 200). The code must be exactly three digits.
fn status_line_parts(line: &[u8]) -> Result<((u8, u8), u16), HeadError> {
    let rest = line
        .strip_prefix(b"HTTP/1.")
        .ok_or(HeadError::BadStatusLine)?;
    let (&minor, rest) = rest.split_first().ok_or(HeadError::BadStatusLine)?;
    if !minor.is_ascii_digit() {
        return Err(HeadError::BadStatusLine);
    }
    let rest = rest.strip_prefix(b" ").ok_or(HeadError::BadStatusLine)?;
    let code = rest.get(..3).ok_or(HeadError::BadStatusLine)?;
    if !code.iter().all(u8::is_ascii_digit) || rest.get(3).is_some_and(|b| *b != b' ') {
        return Err(HeadError::BadStatusLine);
    }
    let status = code.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    if status < 100 {
        return Err(HeadError::BadStatusLine);
    }
    Ok(((1, minor - b'0'), status))
}

/// RFC 9110 token characters (header names).
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_complete_head() {
        let r = b"HTTP/1.1 301 Moved Permanently\r\nLocation: /x\r\nContent-Length: 5\r\n\r\nhello";
        let (h, n) = parse_head(r).unwrap().unwrap();
        assert_eq!((h.version, h.status), ((1, 1), 301));
        assert_eq!(h.header("location"), Some("/x"));
        assert_eq!(h.content_length, Some(5));
        assert_eq!(&r[n..], b"hello");
    }

    #[test]
    fn partial_heads_ask_for_more() {
        let r = b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\n";
        for cut in 0..r.len() {
            assert_eq!(parse_head(&r[..cut]).unwrap(), None, "cut at {cut}");
        }
        assert!(parse_head(r).unwrap().is_some());
    }

    #[test]
    fn hostile_answers_fail_fast_and_bounded() {
        // HTTP/0.9 and garbage: failed on the first differing byte.
        assert_eq!(parse_head(b"<html>"), Err(HeadError::NotHttp1));
        assert_eq!(parse_head(b"HTTX"), Err(HeadError::NotHttp1));
        assert_eq!(
            parse_head(b"HTTP/1.1 99999999999 Huge\r\n\r\n"),
            Err(HeadError::BadStatusLine)
        );
        assert_eq!(
            parse_head(b"HTTP/1.1 2000 OK\r\n\r\n"),
            Err(HeadError::BadStatusLine)
        );
        assert_eq!(
            parse_head(b"HTTP/1.1 099 x\r\n\r\n"),
            Err(HeadError::BadStatusLine)
        );
        assert_eq!(
            parse_head(b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n"),
            Err(HeadError::BadHeader)
        );
        assert_eq!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            Err(HeadError::BadLength)
        );
        // Headers that never end: refused once MAX_HEAD is passed.
        let mut big = b"HTTP/1.1 200 OK\r\n".to_vec();
        while big.len() <= MAX_HEAD {
            big.extend_from_slice(b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        assert_eq!(parse_head(&big), Err(HeadError::TooLarge));
        let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("H{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse_head(&many), Err(HeadError::TooLarge));
    }

    #[test]
    fn chunked_and_bare_newlines() {
        let (h, _) = parse_head(b"HTTP/1.1 200 OK\nTransfer-Encoding: gzip, chunked\n\n")
            .unwrap()
            .unwrap();
        assert!(h.chunked);
    }
}

/// `status_code`: the codes that count as healthy (keepalived's default is
/// 200-299).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCodes(Vec<(u16, u16)>);

impl Default for StatusCodes {
    fn default() -> Self {
        Self(vec![(200, 299)])
    }
}

impl std::fmt::Display for StatusCodes {
    /// As `status_code` takes it: `200-299`, `200 301-302`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (a, b)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            if a == b {
                write!(f, "{a}")?;
            } else {
                write!(f, "{a}-{b}")?;
            }
        }
        Ok(())
    }
}

impl StatusCodes {
    /// `200`, `200-299`, several of either (100–599, as keepalived).
    pub fn parse(words: &[String]) -> Result<Self, Invalid> {
        let code = |s: &str| {
            s.parse::<u16>()
                .ok()
                .filter(|c| (100..=599).contains(c))
                .ok_or_else(|| Invalid::StatusCode(s.to_owned()))
        };
        let mut ranges = Vec::new();
        for w in words {
            let (lo, hi) = match w.split_once('-') {
                Some((a, b)) => (code(a)?, code(b)?),
                None => (code(w)?, code(w)?),
            };
            if lo > hi {
                return Err(Invalid::StatusRange(w.clone()));
            }
            ranges.push((lo, hi));
        }
        if ranges.is_empty() {
            return Err(Invalid::NoStatusCode);
        }
        Ok(Self(ranges))
    }

    pub fn contains(&self, code: u16) -> bool {
        self.0.iter().any(|(lo, hi)| (*lo..=*hi).contains(&code))
    }
}

/// One `url { … }` of an HTTP check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub path: String,
    /// `http_protocol`.
    pub version: Version,
    /// `Host:` (`virtualhost`), else the target address.
    pub host: Option<String>,
    pub codes: StatusCodes,
    /// MD5 of the body (`digest`), which is then read and hashed as it
    /// arrives, never kept.
    pub digest: Option<[u8; 16]>,
    /// `regex` (with `regex_no_match`: passes when it does not match),
    /// looked for in the first [`MAX_REGEX_BODY`] bytes of the body.
    pub regex: Option<BodyRegex>,
}

/// The most of a body `regex` looks at (kept while the body is read).
pub const MAX_REGEX_BODY: usize = 1 << 20;

/// A `regex` of a `url`, compiled.
#[derive(Debug, Clone)]
pub struct BodyRegex {
    pub regex: regex::bytes::Regex,
    /// `regex_no_match`.
    pub no_match: bool,
}

impl PartialEq for BodyRegex {
    fn eq(&self, other: &Self) -> bool {
        self.regex.as_str() == other.regex.as_str() && self.no_match == other.no_match
    }
}

impl Eq for BodyRegex {}

impl BodyRegex {
    /// `regex` with keepalived's `regex_options` (PCRE2's names: those
    /// with a meaning here — caseless, multiline, dotall, extended,
    /// ungreedy — are applied, the other PCRE2 switches change nothing in
    /// this engine and are accepted). PCRE-only syntax (back references,
    /// look-around) is refused with the reason.
    pub fn new(pattern: &str, options: &[String], no_match: bool) -> Result<Self, Invalid> {
        let mut b = regex::bytes::RegexBuilder::new(pattern);
        b.size_limit(1 << 20).unicode(false);
        for o in options {
            match o.as_str() {
                "caseless" => b.case_insensitive(true),
                "multiline" => b.multi_line(true),
                "dotall" => b.dot_matches_new_line(true),
                "extended" => b.ignore_whitespace(true),
                "ungreedy" => b.swap_greed(true),
                "utf" | "ucp" => b.unicode(true),
                "allow_empty_class"
                | "alt_bsux"
                | "auto_callout"
                | "dollar_endonly"
                | "dupnames"
                | "firstline"
                | "match_unset_backref"
                | "never_ucp"
                | "never_utf"
                | "no_auto_capture"
                | "no_auto_possess"
                | "no_dotstar_anchor"
                | "no_start_optimize"
                | "never_backslash_c"
                | "alt_circumflex"
                | "alt_verbnames"
                | "use_offset_limit" => &mut b,
                other => return Err(Invalid::RegexOption(other.to_owned())),
            };
        }
        let regex = b.build().map_err(|e| Invalid::Regex {
            pattern: pattern.to_owned(),
            why: e.to_string(),
        })?;
        Ok(Self { regex, no_match })
    }

    /// Whether a body starting with `seen` passes.
    pub fn passes(&self, seen: &[u8]) -> bool {
        self.regex.is_match(seen) != self.no_match
    }
}

/// The most body hashed for `digest` (a backend sending more fails).
pub const MAX_BODY: u64 = 64 * 1024 * 1024;

/// `digest` as written: 32 hex digits.
pub fn parse_digest(text: &str) -> Result<[u8; 16], Invalid> {
    let bad = || Invalid::Digest(text.to_owned());
    let t = text.trim().as_bytes();
    if t.len() != 32 {
        return Err(bad());
    }
    // Byte by byte: a string of 32 bytes may hold multi-byte characters,
    // and `u8::from_str_radix` would take a leading `+`.
    let nibble = |b: u8| {
        char::from(b)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let mut out = [0u8; 16];
    for (o, pair) in out.iter_mut().zip(t.chunks_exact(2)) {
        let (hi, lo) = (
            nibble(pair[0]).ok_or_else(bad)?,
            nibble(pair[1]).ok_or_else(bad)?,
        );
        *o = hi << 4 | lo;
    }
    Ok(out)
}

/// `http_protocol`: the request line's version and whether `Connection:
/// close` is sent (keepalived: `1.0` — the default — without it, `1.0C`
/// and `1.1` with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Version {
    #[default]
    Http10,
    Http10Close,
    Http11,
}

impl Version {
    /// keepalived's words for it.
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        match text {
            "1.0" => Ok(Self::Http10),
            "1.0C" | "1.0c" => Ok(Self::Http10Close),
            "1.1" => Ok(Self::Http11),
            _ => Err(Invalid::HttpVersion(text.to_owned())),
        }
    }
}

/// The request keepalived sends for `url` to `host`.
pub fn request(url: &Url, host: &str) -> String {
    let (version, close) = match url.version {
        Version::Http10 => ("1.0", ""),
        Version::Http10Close => ("1.0", "Connection: close\r\n"),
        Version::Http11 => ("1.1", "Connection: close\r\n"),
    };
    format!(
        "GET {} HTTP/{version}\r\nUser-Agent: KeepAliveClient\r\n{close}Host: {host}\r\n\r\n",
        url.path
    )
}

/// One GET of `url` on `stream` (the request as keepalived sends it): `Ok`
/// if the status is accepted and the digest (if any) matches; the answer
/// ends where `Content-Length` says or at the close. No deadline here: the
/// caller bounds the whole check.
pub async fn get<S>(
    stream: &mut S,
    url: &Url,
    default_host: &str,
) -> Result<(), crate::reason::Reason>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use crate::reason::Reason;
    use md5::Digest as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let host = url.host.as_deref().unwrap_or(default_host);
    let request = request(url, host);
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| Reason::Http(format!("sending the request: {e}")))?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let (head, used) = loop {
        if let Some(done) = parse_head(&buf).map_err(|e| Reason::Http(e.to_string()))? {
            break done;
        }
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| Reason::Http(format!("reading the answer: {e}")))?;
        if n == 0 {
            return Err(Reason::Http(
                "connection closed before the response head".into(),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    if !url.codes.contains(head.status) {
        return Err(Reason::HttpStatus {
            got: head.status,
            expected: url.codes.to_string(),
        });
    }
    if url.digest.is_none() && url.regex.is_none() {
        return Ok(());
    }
    let mut md5 = md5::Md5::new();
    // What the regex looks at: the body's start, bounded.
    let mut seen: Vec<u8> = Vec::new();
    let keep = |bytes: &[u8], seen: &mut Vec<u8>| {
        if url.regex.is_some() {
            let room = MAX_REGEX_BODY.saturating_sub(seen.len());
            seen.extend_from_slice(&bytes[..bytes.len().min(room)]);
        }
    };
    let mut total = u64::try_from(buf.len() - used).unwrap_or(u64::MAX);
    md5.update(&buf[used..]);
    keep(&buf[used..], &mut seen);
    loop {
        if head.content_length.is_some_and(|l| total >= l) {
            break;
        }
        // A regex alone looks at the first MiB: no need to read on.
        if url.digest.is_none() && seen.len() >= MAX_REGEX_BODY {
            break;
        }
        let n = match stream.read(&mut chunk).await {
            Ok(n) => n,
            // A TLS server that closes without close_notify: the end of
            // the body all the same (an HTTP/1.0 answer ends at the close).
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
            Err(e) => return Err(Reason::Http(format!("reading the body: {e}"))),
        };
        if n == 0 {
            break;
        }
        total += u64::try_from(n).unwrap_or(u64::MAX);
        if total > MAX_BODY {
            return Err(Reason::Http(format!("body larger than {MAX_BODY} bytes")));
        }
        md5.update(&chunk[..n]);
        keep(&chunk[..n], &mut seen);
    }
    let got: [u8; 16] = md5.finalize().into();
    if url.digest.is_some_and(|want| got != want) {
        return Err(Reason::Digest);
    }
    match &url.regex {
        Some(r) if !r.passes(&seen) => Err(Reason::Regex {
            no_match: r.no_match,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod get_tests {
    use super::*;

    #[test]
    fn regexes_with_keepalived_s_options() {
        let r = BodyRegex::new("this is (yy|cc) web", &[], false).unwrap_or_else(|e| panic!("{e}"));
        assert!(r.passes(b"<p>this is yy web!</p>"));
        assert!(!r.passes(b"<p>THIS IS YY WEB!</p>"));
        let r = BodyRegex::new("this is yy web", &["caseless".into()], false)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(r.passes(b"THIS IS YY WEB"));
        let r = BodyRegex::new("maintenance", &[], true).unwrap_or_else(|e| panic!("{e}"));
        assert!(r.passes(b"all good"), "no_match: passes when absent");
        assert!(!r.passes(b"down for maintenance"));
        assert!(
            BodyRegex::new("(a)\\1", &[], false).is_err(),
            "back references are PCRE's"
        );
        assert!(BodyRegex::new("a", &["nonsense".into()], false).is_err());
        assert!(BodyRegex::new("a", &["no_auto_capture".into()], false).is_ok());
    }

    #[test]
    fn requests_as_keepalived_sends_them() {
        let mut u = url(&[], None);
        u.path = "/health".into();
        assert_eq!(
            request(&u, "198.51.100.50:80"),
            "GET /health HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\nHost: 198.51.100.50:80\r\n\r\n"
        );
        u.version = Version::parse("1.0C").unwrap_or_default();
        assert!(request(&u, "h").starts_with("GET /health HTTP/1.0\r\n"));
        assert!(request(&u, "h").contains("Connection: close\r\n"));
        u.version = Version::parse("1.1").unwrap_or_default();
        assert!(request(&u, "h").starts_with("GET /health HTTP/1.1\r\n"));
        assert!(request(&u, "h").contains("Connection: close\r\n"));
        assert!(Version::parse("2").is_err());
    }

    fn url(codes: &[&str], digest: Option<&str>) -> Url {
        Url {
            path: "/".into(),
            version: Version::default(),
            regex: None,
            host: None,
            codes: if codes.is_empty() {
                StatusCodes::default()
            } else {
                StatusCodes::parse(&codes.iter().map(|c| (*c).to_owned()).collect::<Vec<_>>())
                    .unwrap()
            },
            digest: digest.map(|d| parse_digest(d).unwrap()),
        }
    }

    /// `answer` served to one GET over an in-memory pipe.
    fn ask(answer: &'static [u8], u: &Url) -> Result<(), crate::reason::Reason> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        rt.block_on(async {
            let (mut client, mut server) = tokio::io::duplex(64 * 1024);
            let serve = tokio::spawn(async move {
                use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                let mut req = [0u8; 1024];
                let _ = server.read(&mut req).await;
                let _ = server.write_all(answer).await;
            });
            let r = get(&mut client, u, "198.51.100.50").await;
            let _ = serve.await;
            r
        })
    }

    #[test]
    fn status_codes_as_keepalived_reads_them() {
        assert!(ask(b"HTTP/1.1 200 OK\r\n\r\n", &url(&[], None)).is_ok());
        assert!(
            ask(b"HTTP/1.1 301 Moved\r\n\r\n", &url(&[], None)).is_err(),
            "default 200-299"
        );
        assert!(ask(b"HTTP/1.1 301 Moved\r\n\r\n", &url(&["200-399"], None)).is_ok());
        assert!(ask(b"HTTP/1.1 404 Not Found\r\n\r\n", &url(&["200-399"], None)).is_err());
        assert!(ask(b"HTTP/1.0 500 Oops\r\n\r\n", &url(&["200", "500"], None)).is_ok());
        assert_eq!(
            ask(
                b"HTTP/1.1 503 Busy\r\n\r\n",
                &url(&["200", "300-301"], None)
            ),
            Err(crate::reason::Reason::HttpStatus {
                got: 503,
                expected: "200 300-301".into()
            })
        );
        assert!(StatusCodes::parse(&["99".into()]).is_err());
        assert!(StatusCodes::parse(&["300-200".into()]).is_err());
    }

    #[test]
    fn digests_are_checked_as_the_body_streams() {
        // MD5("hello") = 5d41402abc4b2a76b9719d911017c592
        let good = "5d41402abc4b2a76b9719d911017c592";
        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert!(ask(answer, &url(&[], Some(good))).is_ok());
        let bad = "00000000000000000000000000000000";
        assert_eq!(
            ask(answer, &url(&[], Some(bad))),
            Err(crate::reason::Reason::Digest)
        );
        // Without Content-Length: to the end of the stream.
        assert!(ask(b"HTTP/1.0 200 OK\r\n\r\nhello", &url(&[], Some(good))).is_ok());
        assert!(parse_digest("xyz").is_err());
    }

    #[test]
    fn hostile_answers_are_failures() {
        let u = url(&[], None);
        assert!(
            ask(b"<html>hello</html>", &u)
                .unwrap_err()
                .to_string()
                .contains("HTTP/1.x"),
            "HTTP/0.9"
        );
        assert!(ask(b"HTTP/1.1 99999999999 Big\r\n\r\n", &u).is_err());
        assert!(ask(b"garbage\r\n\r\n", &u).is_err());
        assert!(ask(b"HTTP/1.1 200 OK\r\nContent-", &u)
            .unwrap_err()
            .to_string()
            .contains("closed"));
    }

    #[test]
    fn a_digest_of_multibyte_characters_is_an_error_not_a_panic() {
        // 32 bytes, 17 characters: byte offsets 2, 4, … fall inside them.
        let text = format!("a{}b", "é".repeat(15));
        assert_eq!(text.len(), 32);
        assert!(parse_digest(&text).is_err());
        assert!(parse_digest("+1234567890abcdef1234567890abcde").is_err());
        assert!(parse_digest(" 0123456789abcdef0123456789ABCDEF ").is_ok());
    }
}
