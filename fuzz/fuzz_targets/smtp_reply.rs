//! Any bytes as an SMTP server's side of SMTP_CHECK's conversation: the
//! status parser reads exactly keepalived's `NNN` / `NNN ` form, and the
//! whole conversation (greeting 220, HELO → 250, QUIT → any line, each line
//! at most 512 bytes) succeeds exactly when a reference model of it says so.

#![no_main]

use std::sync::OnceLock;

use check::smtp::{check, status, MAX_LINE};
use libfuzzer_sys::fuzz_target;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap_or_else(|e| panic!("no runtime: {e}"))
    })
}

/// The model: the first three lines, each ending in `\n` within
/// MAX_LINE bytes.
fn model(data: &[u8]) -> bool {
    let mut rest = data;
    let mut lines = Vec::new();
    for _ in 0..3 {
        let Some(end) = rest.iter().take(MAX_LINE).position(|&b| b == b'\n') else {
            return false;
        };
        lines.push(&rest[..=end]);
        rest = &rest[end + 1..];
    }
    status(lines[0]) == Some(220) && status(lines[1]) == Some(250)
}

fuzz_target!(|data: &[u8]| {
    if let Some(code) = status(data) {
        assert!(code <= 999);
        assert!(data[..3].iter().all(u8::is_ascii_digit));
        assert!(matches!(data.get(3), None | Some(b' ' | b'\r' | b'\n')));
        assert_eq!(
            std::str::from_utf8(&data[..3])
                .ok()
                .and_then(|s| s.parse().ok()),
            Some(code)
        );
    }
    let mut server = tokio::io::join(data, tokio::io::sink());
    let got = runtime().block_on(check(&mut server, "fuzz.example"));
    assert_eq!(got.is_ok(), model(data), "{got:?}");
});
