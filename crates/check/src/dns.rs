//! `DNS_CHECK`: one query over UDP, messages built and read with
//! hickory-proto. As keepalived (check_dns.c): recursion desired; answers
//! with another id, or that are not responses, are ignored (the check waits
//! on until its deadline); a response with any RCODE but NOERROR fails it;
//! NOERROR passes, whatever the answer section holds.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};

use hickory_proto::op::{Header, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use hickory_proto::serialize::binary::BinDecodable as _;

use crate::{Invalid, Reason};

/// keepalived's defaults: type SOA, the root name.
pub const DEFAULT_TYPE: RecordType = RecordType::SOA;

/// A query `type` as keepalived names them (A, NS, CNAME, SOA, MX, TXT, AAAA,
/// any case).
pub fn parse_type(text: &str) -> Result<RecordType, Invalid> {
    let t = text.to_ascii_uppercase();
    match t.as_str() {
        "A" | "NS" | "CNAME" | "SOA" | "MX" | "TXT" | "AAAA" => t
            .parse::<RecordType>()
            .map_err(|_| Invalid::DnsType(text.to_owned())),
        _ => Err(Invalid::DnsType(text.to_owned())),
    }
}

/// A query name (`""` or `.`: the root).
pub fn parse_name(text: &str) -> Result<Name, Invalid> {
    if text.is_empty() || text == "." {
        return Ok(Name::root());
    }
    Name::from_ascii(text).map_err(|e| Invalid::DnsName {
        name: text.to_owned(),
        why: e.to_string(),
    })
}

/// A fresh query id: ids differ from one query to the next and between
/// runs (seeded from the clock), which is all a health check needs.
fn next_id() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mix = u16::try_from(seed >> 8 & 0xffff).unwrap_or(0);
    NEXT.fetch_add(0x9e37, Ordering::Relaxed) ^ mix
}

/// The bytes of a query for `name` / `qtype` with id `id`.
pub fn query_bytes(id: u16, name: &Name, qtype: RecordType) -> Result<Vec<u8>, Reason> {
    let mut m = Message::new();
    m.set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(name.clone(), qtype));
    m.to_vec()
        .map_err(|e| Reason::Dns(format!("building the query: {e}")))
}

/// What an answer to query `id` says: `None` to keep waiting (too short,
/// another id, not a response), else the verdict.
pub fn verdict(id: u16, answer: &[u8]) -> Option<Result<(), Reason>> {
    let header = Header::from_bytes(answer.get(..12)?).ok()?;
    if header.id() != id || header.message_type() != MessageType::Response {
        return None;
    }
    Some(match header.response_code() {
        ResponseCode::NoError => Ok(()),
        rc => Err(Reason::Dns(match u16::from(rc) {
            1 => "FORMERR".to_owned(),
            2 => "SERVFAIL".to_owned(),
            3 => "NXDOMAIN".to_owned(),
            4 => "NOTIMP".to_owned(),
            5 => "REFUSED".to_owned(),
            n => format!("rcode {n}"),
        })),
    })
}

/// One query to `target` (from `bind`); no deadline here (the caller bounds
/// the whole check).
pub async fn check(
    target: SocketAddr,
    bind: Option<SocketAddr>,
    name: &Name,
    qtype: RecordType,
) -> Result<(), Reason> {
    // A socket that cannot be made is said as DNS's own failure.
    let socket = crate::run::udp_to(target, bind)
        .await
        .map_err(|e| match e {
            Reason::Connect(why) => Reason::Dns(why),
            other => other,
        })?;
    let id = next_id();
    socket
        .send(&query_bytes(id, name, qtype)?)
        .await
        .map_err(|e| Reason::Dns(format!("sending the query: {e}")))?;
    let mut buf = [0u8; 512];
    loop {
        let n = socket
            .recv(&mut buf)
            .await
            .map_err(|e| Reason::Dns(format!("reading the answer: {e}")))?;
        if let Some(v) = verdict(id, &buf[..n]) {
            return v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(id: u16, rcode: ResponseCode, response: bool) -> Vec<u8> {
        let mut m = Message::new();
        m.set_id(id)
            .set_message_type(if response {
                MessageType::Response
            } else {
                MessageType::Query
            })
            .set_response_code(rcode);
        m.to_vec().unwrap_or_default()
    }

    #[test]
    fn only_a_noerror_response_to_our_id_passes() {
        assert_eq!(
            verdict(7, &answer(7, ResponseCode::NoError, true)),
            Some(Ok(()))
        );
        assert!(matches!(
            verdict(7, &answer(7, ResponseCode::ServFail, true)),
            Some(Err(_))
        ));
        assert!(matches!(
            verdict(7, &answer(7, ResponseCode::NXDomain, true)),
            Some(Err(_))
        ));
        assert_eq!(verdict(7, &answer(8, ResponseCode::NoError, true)), None);
        assert_eq!(verdict(7, &answer(7, ResponseCode::NoError, false)), None);
        assert_eq!(verdict(7, &[0u8; 11]), None);
    }

    #[test]
    fn the_query_asks_with_recursion_for_the_name_and_type() {
        let name = parse_name("example.com").unwrap_or_else(|_| Name::root());
        let bytes = query_bytes(0x1234, &name, RecordType::A).unwrap_or_default();
        let m = Message::from_vec(&bytes).expect("our query parses");
        assert_eq!(m.id(), 0x1234);
        assert!(m.recursion_desired());
        assert_eq!(m.queries()[0].query_type(), RecordType::A);
        assert_eq!(m.queries()[0].name().to_ascii(), "example.com.");
    }

    #[test]
    fn keepalived_s_type_names_and_the_root() {
        assert_eq!(parse_type("soa"), Ok(RecordType::SOA));
        assert_eq!(parse_type("AAAA"), Ok(RecordType::AAAA));
        assert!(parse_type("PTR").is_err());
        assert_eq!(parse_name(""), Ok(Name::root()));
        assert_eq!(parse_name("."), Ok(Name::root()));
        assert!(parse_name("a..b").is_err());
    }
}
