//! Any bytes as what a raw ICMP / ICMPv6 socket gives PING_CHECK and the
//! split-brain witness probes: the echo-reply parser never panics, reads
//! only inside the packet (the payload is a sub-slice, the IPv4 source the
//! header's), accepts an IPv4 reply only with a checksum that checks, and a
//! parsed reply answers a probe only with the probe's id, sequence and
//! nonce, from the target.

#![no_main]

use std::net::IpAddr;

use check::ping::{checksum, parse_reply, Probe, NONCE_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let target: IpAddr = [198, 51, 100, 50].into();
    let other: IpAddr = [198, 51, 100, 66].into();
    for v6 in [false, true] {
        let Some(r) = parse_reply(v6, data) else {
            continue;
        };
        let (start, end) = (data.as_ptr() as usize, data.as_ptr() as usize + data.len());
        let p = r.payload.as_ptr() as usize;
        assert!(
            p >= start && p + r.payload.len() <= end,
            "payload outside the packet"
        );
        assert!(r.payload.len() + 8 <= data.len());
        if v6 {
            assert_eq!(r.source, None);
            assert_eq!(data[0], 129);
        } else {
            let ihl = usize::from(data[0] & 0x0f) * 4;
            assert!(ihl >= 20 && data[0] >> 4 == 4);
            assert_eq!(
                r.source,
                Some(IpAddr::from([data[12], data[13], data[14], data[15]]))
            );
            let icmp_end = p + r.payload.len() - start;
            assert_eq!(checksum(&data[ihl..icmp_end]), 0);
        }
        // The probe this reply claims to answer.
        let mut nonce = [0u8; NONCE_LEN];
        let n = r.payload.len().saturating_sub(13).min(NONCE_LEN);
        nonce[..n].copy_from_slice(&r.payload[r.payload.len() - n..]);
        let probe = Probe {
            id: r.id,
            seq: r.seq,
            nonce,
        };
        let from = r.source.unwrap_or(target);
        let ok = probe.answered_by(&r, from, from);
        if ok {
            assert_eq!(r.payload.len(), 13 + NONCE_LEN);
            assert_eq!(&r.payload[..13], b"keepalived-rs");
        }
        assert!(
            !probe.answered_by(&r, other, target),
            "a reply from elsewhere"
        );
        let mut wrong = probe;
        wrong.nonce[0] ^= 1;
        assert!(
            !wrong.answered_by(&r, from, from),
            "a reply with another nonce"
        );
        let mut wrong = probe;
        wrong.seq = wrong.seq.wrapping_add(1);
        assert!(
            !wrong.answered_by(&r, from, from),
            "a reply with another sequence"
        );
    }
});
