//! Tests of `netlink`.

use super::*;

fn vip() -> Address {
    Address {
        addr: "198.51.100.250".parse().unwrap(),
        prefix_len: 24,
        ifindex: 7,
        label: Some("eth0:vip".into()),
        scope: None,
        broadcast: Some(Ipv4Addr::new(198, 51, 100, 255)),
    }
}

#[test]
fn an_added_address_carries_our_protocol_and_options() {
    let m = address_message(&vip(), true);
    assert_eq!(m.header.prefix_len, 24);
    assert_eq!(m.header.index, 7);
    assert!(m
        .attributes
        .contains(&AddressAttribute::Label("eth0:vip".into())));
    assert!(m
        .attributes
        .contains(&AddressAttribute::Protocol(AddressProtocol::from(
            ADDRESS_PROTOCOL
        ))));
    let p = present(&m).unwrap();
    assert_eq!(p.protocol, Some(ADDRESS_PROTOCOL));
    assert_eq!(p.addr, vip().addr);
}

#[test]
fn ipv6_addresses_skip_dad_and_have_no_peer_attribute() {
    let a = Address {
        addr: "2001:db8::250".parse().unwrap(),
        prefix_len: 64,
        broadcast: None,
        label: None,
        ..vip()
    };
    let m = address_message(&a, true);
    assert!(m
        .attributes
        .contains(&AddressAttribute::Flags(AddressFlags::Nodad)));
    assert!(!m
        .attributes
        .iter()
        .any(|x| matches!(x, AddressAttribute::Address(_))));
}

/// fuzz/netlink_reply's first find: an NLMSG_ERROR with errno
/// i32::MIN panicked (negation overflow) in the kernel-answer reader.
#[test]
fn an_error_code_of_i32_min_is_an_error_not_a_panic() {
    let mut m = vec![0u8; 36];
    m[0..4].copy_from_slice(&36u32.to_ne_bytes());
    m[4..6].copy_from_slice(&2u16.to_ne_bytes());
    m[8..12].copy_from_slice(&7u32.to_ne_bytes());
    m[16..20].copy_from_slice(&i32::MIN.to_ne_bytes());
    let r = read_answer(&m, 7, &mut |_| {});
    assert!(r.is_err(), "{r:?}");
    m[16..20].copy_from_slice(&(-17i32).to_ne_bytes());
    let r = read_answer(&m, 7, &mut |_| {});
    assert_eq!(r.map_err(|e| e.raw_os_error()), Err(Some(17)), "EEXIST");
    m[16..20].copy_from_slice(&0i32.to_ne_bytes());
    assert_eq!(
        read_answer(&m, 7, &mut |_| {}).ok(),
        Some(Answer::Done),
        "an ack"
    );
}

#[test]
fn a_removal_names_only_the_address() {
    let m = address_message(&vip(), false);
    assert_eq!(m.attributes.len(), 2, "{:?}", m.attributes);
}
