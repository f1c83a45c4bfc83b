//! Any bytes as a datagram the kernel sends the daemon over netlink: the
//! rtnetlink answer reader (addresses, links, acks, errors), the link-event
//! reader and the IPVS (generic netlink) family and acknowledgement readers
//! never panic; what they report comes from inside the datagram.

#![no_main]

use lb::ipvs::plane::ack;
use keepalived_rs::netlink::{link, link_events, present, read_answer, Answer};
use libfuzzer_sys::fuzz_target;
use netlink_packet_route::RouteNetlinkMessage;

fuzz_target!(|data: &[u8]| {
    let seq = data
        .get(8..12)
        .map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    let mut messages = 0usize;
    let mut addresses = Vec::new();
    let mut links = Vec::new();
    let answer = read_answer(data, seq, &mut |m| {
        messages += 1;
        match m {
            RouteNetlinkMessage::NewAddress(a) => addresses.extend(present(&a)),
            RouteNetlinkMessage::NewLink(l) => links.extend(link(&l)),
            _ => {}
        }
    });
    // Every message is at least a 16-byte header: no more than fit.
    assert!(messages <= data.len() / 16);
    if answer.as_ref().is_ok_and(|a| *a == Answer::More) {
        assert!(data.len() >= 16 || data.is_empty());
    }
    if data.is_empty() {
        assert!(matches!(answer, Ok(Answer::More)));
    }
    for l in &links {
        assert!(
            l.name.len() < data.len(),
            "a link name longer than the datagram"
        );
    }
    let events = link_events(data);
    assert!(events.len() <= data.len() / 16);
    // The IPVS readers.
    match ack(data, seq) {
        Some(Ok(())) => {
            assert_eq!(data.get(4..6), Some(&2u16.to_ne_bytes()[..]));
            assert_eq!(data.get(16..20), Some(&[0u8; 4][..]));
        }
        Some(Err(_)) => {}
        None => assert_ne!(lb::ipvs::seq_of(data), seq),
    }
    assert!(ack(data, lb::ipvs::seq_of(data).wrapping_add(1)).is_none());
    let _ = lb::ipvs::parse_family(data);
});
