//! Any bytes as keepalived.conf: reading must never panic, and whatever is
//! read must write out and read back without panicking either.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let opts = kaconf::Options::default();
    let loaded = kaconf::parse_str(Path::new("fuzz.conf"), &text, &opts);
    let again = kaconf::to_text(&loaded.config);
    let _ = kaconf::parse_str(Path::new("again.conf"), &again, &opts);
});
