//! `SMTP_CHECK`'s conversation, as keepalived has it (check_smtp.c): the
//! greeting must be `220`, `HELO name` must get `250`, then `QUIT` and any
//! line back. Each reply is one line, read bounded (keepalived's 512-byte
//! buffer); the caller's deadline bounds the whole exchange.

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use crate::Reason;

/// keepalived's default `helo_name`.
pub const DEFAULT_HELO: &str = "smtpchecker.keepalived.org";

/// The longest reply line read (keepalived's SMTP_BUFF_MAX).
pub const MAX_LINE: usize = 512;

/// A reply line's status as keepalived reads it: exactly three digits,
/// then the end or a space (a `220-` continuation line is not a status).
pub fn status(line: &[u8]) -> Option<u16> {
    let digits = line.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    match line.get(3) {
        None | Some(b' ' | b'\r' | b'\n') => {}
        Some(_) => return None,
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Reads the next line (to `\n`, at most [`MAX_LINE`] bytes) into `line`;
/// `pending` keeps what came after it (a server may send several lines in
/// one segment).
async fn line<S: AsyncRead + Unpin>(
    stream: &mut S,
    pending: &mut Vec<u8>,
    line: &mut Vec<u8>,
) -> Result<(), Reason> {
    let mut chunk = [0u8; 256];
    loop {
        if let Some(end) = pending.iter().position(|&b| b == b'\n') {
            line.clear();
            line.extend(pending.drain(..=end));
            return Ok(());
        }
        if pending.len() >= MAX_LINE {
            return Err(Reason::Smtp(format!(
                "a reply line longer than {MAX_LINE} bytes"
            )));
        }
        let room = (MAX_LINE - pending.len()).min(chunk.len());
        let n = stream
            .read(&mut chunk[..room])
            .await
            .map_err(|e| Reason::Smtp(format!("reading: {e}")))?;
        if n == 0 {
            return Err(Reason::Smtp("connection closed by the server".into()));
        }
        pending.extend_from_slice(&chunk[..n]);
    }
}

/// The whole conversation on `stream`.
pub async fn check<S>(stream: &mut S, helo: &str) -> Result<(), Reason>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut pending, mut buf) = (Vec::with_capacity(MAX_LINE), Vec::new());
    line(stream, &mut pending, &mut buf).await?;
    if status(&buf) != Some(220) {
        return Err(Reason::Smtp(format!(
            "bad greeting {:?}",
            String::from_utf8_lossy(&buf)
        )));
    }
    let write = |e: std::io::Error| Reason::Smtp(format!("writing: {e}"));
    stream
        .write_all(format!("HELO {helo}\r\n").as_bytes())
        .await
        .map_err(write)?;
    line(stream, &mut pending, &mut buf).await?;
    if status(&buf) != Some(250) {
        return Err(Reason::Smtp(format!(
            "bad HELO response {:?}",
            String::from_utf8_lossy(&buf)
        )));
    }
    stream.write_all(b"QUIT\r\n").await.map_err(write)?;
    line(stream, &mut pending, &mut buf).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_three_digits_then_space_or_end() {
        assert_eq!(status(b"220 mail.example ESMTP\r\n"), Some(220));
        assert_eq!(status(b"250\r\n"), Some(250));
        assert_eq!(status(b"220-first of many\r\n"), None);
        assert_eq!(status(b"2200 x"), None);
        assert_eq!(status(b"22"), None);
        assert_eq!(status(b"abc "), None);
    }

    fn converse(script: &'static [u8]) -> (Result<(), Reason>, Vec<u8>) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        rt.block_on(async {
            let (mut ours, mut theirs) = tokio::io::duplex(4096);
            let server = tokio::spawn(async move {
                let _ = theirs.write_all(script).await;
                let _ = theirs.shutdown().await;
                let mut heard = Vec::new();
                let _ = theirs.read_to_end(&mut heard).await;
                heard
            });
            let r = check(&mut ours, "me.example").await;
            drop(ours);
            (r, server.await.unwrap_or_default())
        })
    }

    #[test]
    fn a_good_server_hears_helo_and_quit() {
        let (r, heard) = converse(b"220 hi\r\n250 hello\r\n221 bye\r\n");
        assert_eq!(r, Ok(()));
        assert_eq!(heard, b"HELO me.example\r\nQUIT\r\n");
    }

    #[test]
    fn bad_greetings_and_helo_answers_fail() {
        // Each failure is an SMTP reason (the log and status say "SMTP: …").
        assert!(matches!(
            converse(b"554 go away\r\n").0,
            Err(Reason::Smtp(e)) if e.starts_with("bad greeting")
        ));
        assert!(converse(b"220 hi\r\n501 who?\r\n").0.is_err());
        assert!(
            converse(b"220 hi\r\n").0.is_err(),
            "closed before HELO's answer"
        );
        let long: &'static [u8] = Box::leak(vec![b'2'; 2000].into_boxed_slice());
        assert!(converse(long).0.is_err());
    }
}
