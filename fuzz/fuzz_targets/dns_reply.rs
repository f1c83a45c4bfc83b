//! Any bytes as the answer to a DNS_CHECK query: the verdict never panics,
//! is decided by the 12-byte header alone (id, QR bit, rcode — as
//! keepalived's check_dns.c), and passes only a response to our id with
//! rcode NOERROR.

#![no_main]

use check::dns::verdict;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let id = data
        .get(..2)
        .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
    // Our id (the answer's own) and another.
    for want in [id, id.wrapping_add(1)] {
        let v = verdict(want, data);
        match &v {
            None => {}
            Some(r) => {
                assert!(data.len() >= 12, "a verdict on {} bytes", data.len());
                assert_eq!(want, id, "a verdict for another id");
                assert!(data[2] & 0x80 != 0, "a verdict on a query");
                assert_eq!(r.is_ok(), data[3] & 0x0f == 0, "rcode {}", data[3] & 0x0f);
            }
        }
        // Nothing after the header changes the verdict.
        if data.len() > 12 {
            assert_eq!(v, verdict(want, &data[..12]));
        }
    }
});
