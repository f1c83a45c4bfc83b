//! Any bytes as the start of an HTTP response: the head parser never panics,
//! never reads past MAX_HEAD, and whatever it accepts is internally sound.

#![no_main]

use check::http::{parse_head, MAX_HEAD, MAX_HEADERS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((head, n))) = parse_head(data) {
        assert!(n <= data.len() && n <= MAX_HEAD);
        assert!((100..=999).contains(&head.status));
        assert!(head.headers.len() <= MAX_HEADERS);
    }
    // Fed byte by byte, the answer never changes once decided.
    let whole = parse_head(data);
    if let Ok(Some((_, n))) = whole {
        assert_eq!(parse_head(&data[..n]).map(|r| r.map(|(_, k)| k)), Ok(Some(n)));
    }
});
