//! Any bytes as a BFD control packet: parsing never panics, and what
//! parses is written back to the same bytes up to its Length.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = bfd::wire::Control::parse(data) {
        let n = usize::from(data[3]);
        assert_eq!(&c.emit()[..], &data[..n]);
    }
});
