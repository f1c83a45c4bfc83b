//! Any bytes as a flow-sync datagram: decoding never panics, what decodes
//! encodes back to the same bytes, and writing it into a table never
//! writes an entry for a map or server the table does not have.

#![no_main]

use libfuzzer_sys::fuzz_target;
use lb::flows::{decode, encode, restore, Flow, Overwrite, Table};

fuzz_target!(|data: &[u8]| {
    let Ok((id, flows)) = decode(data) else { return };
    if !flows.is_empty() {
        let again = encode(id, &flows, usize::MAX);
        assert_eq!(again.len(), 1);
        assert_eq!(&again[0][..], data);
    }
    let mut table = Table::default();
    let known: Option<&Flow> = flows.first();
    if let Some(f) = known {
        table.live.insert(f.map, [f.mac].into_iter().collect());
        table.v4.insert(f.map, f.client.is_ipv4());
    }
    for overwrite in [Overwrite::Theirs, Overwrite::Ours] {
        let r = restore(&table, &flows, overwrite);
        let allowed = flows
            .iter()
            .filter(|f| table.admits(f))
            .count();
        assert!(r.written <= allowed);
        assert_eq!(r.refused, flows.len() - allowed);
    }
});
