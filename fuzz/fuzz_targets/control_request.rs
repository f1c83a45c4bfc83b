//! Any bytes as what a client sends the control socket: the request reader
//! never takes more than MAX_REQUEST bytes or past the first newline, the
//! parser never panics, names a known request only for its exact line, and
//! an unknown request's echo is bounded.

#![no_main]

use keepalived_rs::control::{parse_request, read_request, Request, MAX_REQUEST};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut cursor = std::io::Cursor::new(data);
    let line = read_request(&mut cursor).unwrap_or_else(|e| panic!("reading from memory: {e}"));
    assert!(line.len() <= MAX_REQUEST);
    assert_eq!(
        line.as_slice(),
        &data[..line.len()],
        "the line is the input's start"
    );
    assert_eq!(
        cursor.position() as usize,
        line.len(),
        "nothing read past the line"
    );
    if let Some(nl) = line.iter().position(|&b| b == b'\n') {
        assert_eq!(nl, line.len() - 1, "the line ends at its first newline");
    }
    let request = parse_request(&line);
    match &request {
        Request::Unknown(text) => {
            assert!(text.chars().count() <= 64);
            assert!(!matches!(
                text.as_str(),
                "status" | "status json" | "reload"
            ));
        }
        known => {
            let text = String::from_utf8_lossy(&line);
            assert_eq!(text.trim(), known.line());
            // Its own line, as a client sends it, reads back the same.
            assert_eq!(
                &parse_request(format!("{}\n", known.line()).as_bytes()),
                known
            );
        }
    }
});
